//! Multiplexer: `[b]^B · [x]^A` (a shared bit times a shared ring element).
//!
//! **Reference.** CrypTFlow2 (Rathee et al., CCS'20) §3, "F_MUX" with two correlated OTs.
//!
//! **Functionality.** Shares over Z_{2^ℓ} of `b·x` where `b = b_S ⊕ b_C`, `x = x_S + x_C`.
//!
//! **Message flow.** `b·x = (b_S ⊕ b_C)·x_S + (b_S ⊕ b_C)·x_C`. For the first term the server
//! is the COT sender with `Δ = (1 − 2b_S)·x_S` and the client chooses with `b_C`: the server
//! gets uniform `s`, the client `s + b_C(1 − 2b_S)x_S`; since
//! `(b_S ⊕ b_C)x_S = b_S x_S + b_C(1 − 2b_S)x_S`, the server keeps `b_S x_S − s` and the client
//! `s + …`. The second term is symmetric with the client as sender. Two OT batches.
//!
//! **Domain / error.** Any `x ∈ Z_{2^ℓ}`, any bit; exact.
//!
//! **Bytes per element.** `2·C_cot(ℓ)`. Flights: 3 (two OT batches in opposite directions share
//! one flight).
//!
//! **Security (semi-honest).** Each party sees only the output of one correlated OT as
//! receiver, which is masked by the sender's uniform `s`; as sender it sees nothing (OT
//! receiver privacy). Outputs are fresh uniform shares of `b·x`.

use super::bits::BitShare;
use crate::proto::ctx::{same_len, Cost, Party, Step};
use crate::error::Result;
use crate::share::Ring;

/// `(1 − 2b)·x mod 2^ℓ`: the correlation that turns `b_peer` into `(b ⊕ b_peer)·x`.
fn mux_delta(ring: Ring, b: u8, x: u64) -> u64 {
    if b & 1 == 1 {
        ring.neg(x)
    } else {
        x
    }
}

/// One party's part of `(b_S ⊕ b_C)·x_own` as COT sender.
fn send_term(p: &mut Party, ring: Ring, b: &[u8], x: &[u64]) -> Result<Vec<u64>> {
    let deltas: Vec<u64> = b.iter().zip(x).map(|(&b, &x)| mux_delta(ring, b, x)).collect();
    let s = p.cot_send(&deltas, ring.bits())?;
    Ok(b.iter().zip(x).zip(&s).map(|((&b, &x), &s)| ring.sub(ring.mul((b & 1) as u64, x), s)).collect())
}

/// Shares of `b · x` over Z_{2^ℓ}.
pub fn mux(p: &mut Party, ring: Ring, b: &BitShare, x: &[u64]) -> Result<Vec<u64>> {
    same_len("multiplexer", b.len(), x.len())?;
    p.ch.set_phase("mux");
    let (own, peer) = if p.is_server() {
        let own = send_term(p, ring, b, x)?;
        let peer = p.cot_recv(b, ring.bits())?;
        (own, peer)
    } else {
        let peer = p.cot_recv(b, ring.bits())?;
        let own = send_term(p, ring, b, x)?;
        (own, peer)
    };
    Ok(own.iter().zip(&peer).map(|(&a, &c)| ring.add(a, c)).collect())
}

/// Documented cost of [`mux`] on `n` elements.
pub fn mux_cost(n: usize, ring: Ring) -> Cost {
    Cost::cot(ring.bits(), 2 * n).then(&[Step::OtServerSends, Step::OtClientSends])
}
