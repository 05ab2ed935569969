//! Boolean-to-arithmetic conversion (B2A) of XOR-shared bits, into Z_{2^ℓ} or into Z_p.
//!
//! **Reference.** CrypTFlow2 (Rathee et al., CCS'20) §3 / SIRNN (S&P'21) §3: B2A with one
//! correlated OT per bit; the field variant uses one chosen-message OT (Z_p is not a power
//! of two, so the Z_{2^ℓ} correlation of the OT layer does not apply).
//!
//! **Functionality.** `[b]^B ↦ [b]^A`: arithmetic shares of the bit `b = b_S ⊕ b_C ∈ {0,1}`.
//!
//! **Message flow.** One batch of OTs, server = sender.
//! * Ring ([`b2a_ring`]): `b = b_S + b_C − 2 b_S b_C`. Correlated OT with `Δ = b_S`, choice
//!   `b_C`: the server gets uniform `r`, the client `r + b_S b_C`. Shares: server
//!   `b_S + 2r`, client `b_C − 2(r + b_S b_C)`.
//! * Field ([`b2a_field`]): the server draws uniform `r ∈ Z_p` and offers
//!   `(r + b_S, r + 1 − b_S)`; the client with choice `b_C` learns `r + (b_S ⊕ b_C)`.
//!   Shares: server `−r`, client the received value.
//!
//! **Domain / error.** Any bits; exact.
//!
//! **Bytes per element.** Ring: `C_cot(ℓ)` (one ℓ-bit correlated OT). Field: `C_ot(⌈log2 p⌉)`
//! (one chosen OT with `bits(p)`-bit messages). No other traffic. Flights: 2 (one OT batch).
//!
//! **Security (semi-honest).** The client's view is one OT output, uniform because `r` is
//! uniform over the whole ring/field; the server learns nothing (OT receiver privacy).
//! The output shares are uniform subject to summing to `b`.

use rand::RngCore;

use super::bits::BitShare;
use crate::proto::ctx::{Cost, Party, Step};
use crate::error::Result;
use crate::share::{Field, Ring};

/// Arithmetic shares over Z_{2^ℓ} of XOR-shared bits.
pub fn b2a_ring(p: &mut Party, ring: Ring, b: &[u8]) -> Result<Vec<u64>> {
    p.ch.set_phase("b2a");
    if p.is_server() {
        let deltas: Vec<u64> = b.iter().map(|&x| (x & 1) as u64).collect();
        let r = p.cot_send(&deltas, ring.bits())?;
        Ok(deltas.iter().zip(&r).map(|(&bs, &r)| ring.add(bs, ring.mul(2, r))).collect())
    } else {
        let t = p.cot_recv(b, ring.bits())?;
        Ok(b.iter().zip(&t).map(|(&bc, &t)| ring.sub((bc & 1) as u64, ring.mul(2, t))).collect())
    }
}

/// Arithmetic shares over Z_p of XOR-shared bits.
pub fn b2a_field(p: &mut Party, field: Field, b: &[u8]) -> Result<Vec<u64>> {
    p.ch.set_phase("b2a-field");
    if p.is_server() {
        let r: Vec<u64> = (0..b.len()).map(|_| field.random(p.rng())).collect();
        let msgs: Vec<[u64; 2]> =
            b.iter().zip(&r).map(|(&bs, &r)| {
                let bs = (bs & 1) as u64;
                [field.add(r, bs), field.add(r, 1 - bs)]
            }).collect();
        p.ot_send(&msgs, field.bits())?;
        Ok(r.iter().map(|&r| field.neg(r)).collect())
    } else {
        let got = p.ot_recv(b, field.bits())?;
        Ok(got.iter().map(|&v| field.reduce(v)).collect())
    }
}

/// Documented cost of [`b2a_ring`] on `n` bits.
pub fn b2a_ring_cost(n: usize, ring: Ring) -> Cost {
    Cost::cot(ring.bits(), n).then(&[Step::OtServerSends])
}

/// Documented cost of [`b2a_field`] on `n` bits.
pub fn b2a_field_cost(n: usize, field: Field) -> Cost {
    Cost::chosen(field.bits(), n).then(&[Step::OtServerSends])
}

/// Uniformly random bits, one per byte (used by tests and benchmarks of boolean protocols).
pub fn random_bit_share<R: RngCore + ?Sized>(rng: &mut R, n: usize) -> BitShare {
    let mut bytes = vec![0u8; n];
    rng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| b & 1).collect()
}
