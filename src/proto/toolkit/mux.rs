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
//! **Field variant ([`mux_field`]).** The same split over Z_p with correlated OTs mod p
//! (`Ot::send_correlated_mod`: one `bits(p)`-bit message per OT).
//! Bytes per element `2·C_cot(bits(p))`, flights 3. [`client_bit_times_server_field`] is its
//! server-sending half alone (`b_C · x_S`, one `C_cot(bits(p))`, 2 flights): GeLU's selection of
//! HE results (`hepoly::eval_polys_selected`) folds the server's bits into the HE evaluation and
//! needs only that half.
//!
//! **Security (semi-honest).** Each party sees only the output of one correlated OT (over
//! Z_{2^ℓ} or Z_p) as receiver, which is masked by the sender's uniform `s` (uniform over the
//! whole ring or field); as sender it sees nothing (OT receiver privacy). Outputs are fresh uniform shares
//! of `b·x`.

use super::bits::BitShare;
use crate::proto::ctx::{same_len, Cost, Party, Step};
use crate::error::Result;
use crate::share::{Field, Ring};

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

/// One party's part of `(b_S ⊕ b_C)·x_own` over Z_p as sender of a correlated OT mod p
/// (`Δ = (1 − 2b_own)·x_own`, the peer chooses with its bit); returns `b_own·x_own − r`.
fn send_term_field(p: &mut Party, field: Field, b: &[u8], x: &[u64]) -> Result<Vec<u64>> {
    let deltas: Vec<u64> = b.iter().zip(x).map(|(&b, &x)| if b & 1 == 1 { field.neg(field.reduce(x)) } else { field.reduce(x) }).collect();
    let r = p.cot_send_mod(&deltas, field.modulus())?;
    Ok(b.iter().zip(x).zip(&r).map(|((&b, &x), &r)| field.sub(if b & 1 == 1 { field.reduce(x) } else { 0 }, r)).collect())
}

/// Shares of `b · x` over Z_p (two batches of correlated OTs mod p in opposite directions).
pub fn mux_field(p: &mut Party, field: Field, b: &BitShare, x: &[u64]) -> Result<Vec<u64>> {
    same_len("field multiplexer", b.len(), x.len())?;
    p.ch.set_phase("mux-field");
    let recv = |p: &mut Party| -> Result<Vec<u64>> { p.cot_recv_mod(b, field.modulus()) };
    let (own, peer) = if p.is_server() {
        let own = send_term_field(p, field, b, x)?;
        (own, recv(p)?)
    } else {
        let peer = recv(p)?;
        (send_term_field(p, field, b, x)?, peer)
    };
    Ok(own.iter().zip(&peer).map(|(&a, &c)| field.add(a, c)).collect())
}

/// Shares over Z_p of `b_C · x_S`: the client's bit times the server's value, one batch of
/// correlated OTs mod p with the server sending (`Δ = x_S`; the half of [`mux_field`] whose
/// server bit is 0). The client passes its bits (`x` empty), the server its values (`b` empty).
pub fn client_bit_times_server_field(p: &mut Party, field: Field, b: &BitShare, x: &[u64]) -> Result<Vec<u64>> {
    p.ch.set_phase("bit-times-field");
    if p.is_server() {
        let r = p.cot_send_mod(x, field.modulus())?;
        Ok(r.iter().map(|&r| field.neg(r)).collect())
    } else {
        p.cot_recv_mod(b, field.modulus())
    }
}

/// Documented cost of [`client_bit_times_server_field`] on `n` elements.
pub fn client_bit_times_server_field_cost(n: usize, field: Field) -> Cost {
    Cost::cot(field.bits(), n).then(&[Step::OtServerSends])
}

/// Documented cost of [`mux_field`] on `n` elements.
pub fn mux_field_cost(n: usize, field: Field) -> Cost {
    Cost::cot(field.bits(), 2 * n).then(&[Step::OtServerSends, Step::OtClientSends])
}
