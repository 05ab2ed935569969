//! Boolean-to-arithmetic conversion (B2A) of XOR-shared bits, into Z_{2^ℓ} or into Z_p.
//!
//! **Reference.** CrypTFlow2 (Rathee et al., CCS'20) §3 / SIRNN (S&P'21) §3: B2A with one
//! correlated OT per bit; the field variant uses one correlated OT over Z_p
//! (`Ot::send_correlated_mod`).
//!
//! **Functionality.** `[b]^B ↦ [b]^A`: arithmetic shares of the bit `b = b_S ⊕ b_C ∈ {0,1}`.
//!
//! **Message flow.** One batch of OTs, server = sender.
//! * Ring ([`b2a_ring`]): `b = b_S + b_C − 2 b_S b_C`. Correlated OT with `Δ = b_S`, choice
//!   `b_C`: the server gets uniform `r`, the client `r + b_S b_C`. Shares: server
//!   `b_S + 2r`, client `b_C − 2(r + b_S b_C)`.
//! * Field ([`b2a_field`]): `b = b_S + (1 − 2b_S)·b_C`. Correlated OT mod p with
//!   `Δ = 1 − 2b_S`, choice `b_C`: the server gets uniform `x ∈ Z_p`, the client
//!   `x + (1 − 2b_S)·b_C`. Shares: server `b_S − x`, client the received value.
//!
//! **Domain / error.** Any bits; exact.
//!
//! **Bytes per element.** Ring: `C_cot(ℓ)` (one ℓ-bit correlated OT). Field: `C_cot(bits(p))`
//! (one correlated OT mod p, one `bits(p)`-bit message). No other traffic. Flights: 2 (one OT
//! batch).
//!
//! **Security (semi-honest).** The client's view is one OT output, uniform because the
//! sender's `r` / `x` is uniform over the whole ring/field; the server learns nothing (OT
//! receiver privacy).
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
        let deltas: Vec<u64> = b.iter().map(|&bs| 1 - 2 * (bs & 1) as i64).map(|d| field.from_signed(d)).collect();
        let x = p.cot_send_mod(&deltas, field.modulus())?;
        Ok(b.iter().zip(&x).map(|(&bs, &x)| field.sub((bs & 1) as u64, x)).collect())
    } else {
        p.cot_recv_mod(b, field.modulus())
    }
}

/// Documented cost of [`b2a_ring`] on `n` bits.
pub fn b2a_ring_cost(n: usize, ring: Ring) -> Cost {
    Cost::cot(ring.bits(), n).then(&[Step::OtServerSends])
}

/// Documented cost of [`b2a_field`] on `n` bits.
pub fn b2a_field_cost(n: usize, field: Field) -> Cost {
    Cost::cot(field.bits(), n).then(&[Step::OtServerSends])
}

/// Uniformly random bits, one per byte (used by tests and benchmarks of boolean protocols).
pub fn random_bit_share<R: RngCore + ?Sized>(rng: &mut R, n: usize) -> BitShare {
    let mut bytes = vec![0u8; n];
    rng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| b & 1).collect()
}
