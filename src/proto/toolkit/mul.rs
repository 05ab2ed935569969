//! Element-wise product of two shared ring vectors (OT-based), squaring, and product with
//! truncation.
//!
//! **Reference.** Gilboa (CRYPTO'99) multiplication via correlated OT on the bits of one
//! operand, as used for ring products in CrypTFlow2 (CCS'20) §4 and SIRNN (S&P'21) §3. The
//! OT-free alternative (Beaver triples generated with HE, Cheetah/BOLT style) lives in the HE
//! layer; the engine picks whichever is faster.
//!
//! **Functionality.** [`mul`]: shares of `x·y mod 2^ℓ`; [`square`]: of `x² mod 2^ℓ`;
//! [`mul_trunc`]: of `⌊x·y / 2^s⌋` (fixed-point product; see `trunc` for the modes).
//!
//! **Message flow.** `x·y = x_S y_S + x_C y_C + x_S y_C + x_C y_S`. A cross term `a·b` (a held
//! by the sender, b by the receiver) uses ℓ correlated OTs, the one for bit `j` of `b` over
//! Z_{2^(ℓ−j)} with correlation `a mod 2^(ℓ−j)` (one batch of decreasing widths,
//! `Ot::send_correlated_staircase`): the receiver (choice `b_j`) gets `r_j + b_j a` there, and
//! `Σ_j 2^j·(·)` mod 2^ℓ gives `r + a·b` with `r = Σ_j 2^j r_j` known to the sender, who keeps
//! `−r` (2^j·(v mod 2^(ℓ−j)) = 2^j·v mod 2^ℓ, so the narrower OTs lose nothing).
//! [`mul`]: two cross terms (server sends first, then the client) = 2 OT batches.
//! [`square`]: `x² = x_S² + x_C² + 2·x_S x_C`, one cross term = 1 OT batch.
//!
//! **Domain / error.** Any ring elements; `mul` and `square` are exact mod 2^ℓ (signed
//! fixed-point products are correct as long as `|x·y| < 2^(ℓ−1)`). `mul_trunc` additionally
//! needs `|x·y| < 2^(ℓ−2)` and has the error of the chosen truncation mode.
//!
//! **Bytes per element.** A cross term is ℓ random OTs plus ℓ(ℓ+1)/2 payload bits (instead of
//! ℓ² at uniform width): `mul` two cross terms, `square` one; `mul_trunc` adds the
//! truncation cost. Flights per chunk of `CHUNK` elements: `mul` 3, `square` 2. With IKNP
//! (16 bytes per random OT) a 37-bit product is 2·(37·16 + 37·38/16) ≈ 1.36 KB, with silent
//! OT ≈ 2·(37·0.23 + 87.9) ≈ 193 B.
//!
//! **Security (semi-honest).** Each party sees only COT outputs as receiver, each masked by
//! the sender's fresh uniform `r_j`; as sender it sees nothing (receiver privacy). The output
//! shares are uniform subject to their sum.

use rayon::prelude::*;

use crate::proto::ctx::{same_len, Cost, Party, Step, CHUNK};
use super::trunc::{trunc, trunc_cost, TruncMode};
use crate::error::Result;
use crate::share::Ring;

/// Σ_j 2^j·v_j mod 2^ℓ over one element's ℓ staircase outputs (v_j mod 2^(ℓ−j)).
fn weighted_sum(ring: Ring, v: &[u64]) -> u64 {
    v.iter().enumerate().fold(0, |acc, (j, &x)| ring.add(acc, ring.reduce(x << j)))
}

/// Sender side of a Gilboa cross term: returns the sender's share `−Σ_j 2^j r_j` of `a·b`.
/// The OT for bit j carries `a mod 2^(ℓ−j)` at ℓ − j bits (its output is scaled by 2^j).
pub(crate) fn cross_send(p: &mut Party, ring: Ring, a: &[u64]) -> Result<Vec<u64>> {
    let l = ring.bits() as usize;
    let deltas: Vec<u64> = a.par_iter().flat_map_iter(|&v| (0..l).map(move |_| v)).collect();
    let r = p.cot_send_staircase(&deltas, ring.bits())?;
    Ok(r.chunks(l.max(1)).map(|c| ring.neg(weighted_sum(ring, c))).collect())
}

/// Receiver side of a Gilboa cross term: returns the receiver's share `Σ_j 2^j (r_j + b_j a)`.
pub(crate) fn cross_recv(p: &mut Party, ring: Ring, b: &[u64]) -> Result<Vec<u64>> {
    let l = ring.bits() as usize;
    let choices: Vec<u8> = b.iter().flat_map(|&v| (0..l).map(move |j| ((v >> j) & 1) as u8)).collect();
    let t = p.cot_recv_staircase(&choices, ring.bits())?;
    Ok(t.chunks(l.max(1)).map(|c| weighted_sum(ring, c)).collect())
}

/// Shares of `x·y mod 2^ℓ` (element-wise).
pub fn mul(p: &mut Party, ring: Ring, x: &[u64], y: &[u64]) -> Result<Vec<u64>> {
    same_len("multiplication", x.len(), y.len())?;
    p.ch.set_phase("multiplication");
    let mut out = Vec::with_capacity(x.len());
    for (xc, yc) in x.chunks(CHUNK).zip(y.chunks(CHUNK)) {
        let (first, second) = if p.is_server() {
            let a = cross_send(p, ring, xc)?; // x_S · y_C
            let b = cross_recv(p, ring, yc)?; // x_C · y_S
            (a, b)
        } else {
            let b = cross_recv(p, ring, yc)?;
            let a = cross_send(p, ring, xc)?;
            (a, b)
        };
        out.extend((0..xc.len()).map(|i| {
            let local = ring.mul(xc[i], yc[i]);
            ring.add(local, ring.add(first[i], second[i]))
        }));
    }
    Ok(out)
}

/// Shares of `x² mod 2^ℓ` (one cross term instead of two).
pub fn square(p: &mut Party, ring: Ring, x: &[u64]) -> Result<Vec<u64>> {
    p.ch.set_phase("square");
    let mut out = Vec::with_capacity(x.len());
    for xc in x.chunks(CHUNK) {
        let cross = if p.is_server() { cross_send(p, ring, xc)? } else { cross_recv(p, ring, xc)? };
        out.extend(xc.iter().zip(&cross).map(|(&v, &c)| ring.add(ring.mul(v, v), ring.mul(2, c))));
    }
    Ok(out)
}

/// Shares of the fixed-point product `⌊x·y / 2^s⌋` (needs `|x·y| < 2^(ℓ−2)`).
pub fn mul_trunc(p: &mut Party, ring: Ring, x: &[u64], y: &[u64], s: u32, mode: TruncMode) -> Result<Vec<u64>> {
    let prod = mul(p, ring, x, y)?;
    trunc(p, ring, &prod, s, mode)
}

/// Documented cost of [`mul`] on `n` elements.
pub fn mul_cost(n: usize, ring: Ring) -> Cost {
    let chunks = n.div_ceil(CHUNK);
    let steps: Vec<Step> = (0..chunks).flat_map(|_| [Step::OtServerSends, Step::OtClientSends]).collect();
    Cost::staircase(ring.bits(), 2 * ring.bits() as usize * n).then(&steps)
}

/// Documented cost of [`square`] on `n` elements.
pub fn square_cost(n: usize, ring: Ring) -> Cost {
    let steps = vec![Step::OtServerSends; n.div_ceil(CHUNK)];
    Cost::staircase(ring.bits(), ring.bits() as usize * n).then(&steps)
}

/// Documented cost of [`mul_trunc`] on `n` elements.
pub fn mul_trunc_cost(n: usize, ring: Ring, s: u32, mode: TruncMode) -> Cost {
    mul_cost(n, ring) + trunc_cost(n, ring, s, mode)
}
