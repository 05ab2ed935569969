//! Secure comparison: millionaire, MSB / DReLU of an arithmetic share, comparison with public
//! thresholds, and the reduced-bit-width comparison.
//!
//! **Reference.** CrypTFlow2 (Rathee et al., CCS'20) §3.1, Algorithm 1 (millionaire with
//! 1-out-of-2^m OT on m-bit digits, m = 4, and a log-depth tree combining `lt/eq` bits) and
//! §3.2 (DReLU from the millionaire on the low ℓ−1 bits); SIRNN (Rathee et al., S&P'21) for
//! the MSB-to-wrap relations; Cheetah (Huang et al., USENIX Sec'22) §5 for comparing only the
//! bits that matter.
//!
//! **Functionality.**
//! * [`millionaire_gt`]: the client holds `x`, the server `y` (both `< 2^w`); output
//!   boolean shares of `[x > y]`.
//! * [`msb`] / [`drelu`]: for `x = x_S + x_C mod 2^ℓ`, shares of `msb(x)` (= `[x < 0]`) and
//!   of `1 ⊕ msb(x)`: `msb(x) = msb(x_S) ⊕ msb(x_C) ⊕ carry`, `carry = [x'_S + x'_C ≥ 2^(ℓ−1)]`
//!   with `x'` the low ℓ−1 bits, i.e. the millionaire `[x'_C > 2^(ℓ−1) − 1 − x'_S]`.
//! * [`lt_public`]: shares of `[x < T]` for public thresholds `T` (one batched MSB of `x − T`).
//! * [`msb_reduced`] / reduced `lt_public`: MSB using only bits `d .. k−1` of the shares.
//! * [`lt_small_or`]: shares of `[t ∨ (j < τ)]` for an index `j` shared mod 16, a shared bit
//!   `t` and public thresholds τ: one 1-out-of-32 OT per element (a table lookup; SoftMax's
//!   exp segments).
//!
//! The comparisons that ignore low bits (reduced width, partial carry below) compute an
//! approximate functionality whose result depends on the carry γ ∈ {0, 1} of the shares' low
//! bits, exactly as `trunc`'s approximate truncation (Cheetah, §5.2) does: γ is never opened,
//! each party keeps its own low bits, and only a test that runs both parties can rebuild it.
//!
//! **Message flow (millionaire on w bits, q = ⌈w/4⌉ digits, batch n).**
//! 1. One batch of `n·q + ⌈n·A(q)/2⌉` 1-out-of-16 OTs with 2-bit messages, server = sender:
//!    * leaves: for each digit `y_j` and every possible client digit `v`, the server offers
//!      `(gt_S ⊕ [v > y_j], eq_S ⊕ [v = y_j])` with fresh random `gt_S, eq_S`;
//!    * the `n·A(q)` bit triples of the tree, two per OT (see `bits`).
//! 3. Tree: `L = ⌈log2 q⌉` levels; a level combines adjacent nodes (hi, lo) into
//!    `gt = gt_hi ⊕ (eq_hi ∧ gt_lo)`, `eq = eq_hi ∧ eq_lo` (the two terms of the XOR are
//!    mutually exclusive); the `eq` of the node holding digit 0 is never needed and not
//!    computed. All ANDs of a level are one [`super::bits::and_with`] exchange.
//!
//! `A(q)` = [`millionaire_and_count`]`(q)` = 2(q−1) − L (q ≥ 2), e.g. A(10) = 14 (ℓ = 37 MSB:
//! w = 36, q = 9, A = 12). Bytes per element: `(q + A/2)·C16 + 2·(2A)/8` where `C16` is the
//! OT layer's cost of one 1-out-of-16 OT with 2-bit messages (the last term is the toolkit's
//! own opening traffic, bit-packed per level; exact totals: [`millionaire_cost`]). With the
//! IKNP session's log2 1-of-16 (C16 = 64 + 4 bytes) this was 1026 B per comparison at ℓ = 37
//! and 273 B at ℓ = 12; its KK13 1-of-16 (C16 = 32 + 4 bytes) makes it ≈ 546 B at ℓ = 37
//! (`results/toolkit-bench.json` has the measured figures). Flights (each OT batch = receiver flight + sender flight; counted by
//! [`crate::proto::ctx::flights`] from the step list of [`millionaire_cost`]): `2L + 1` for `q ≥ 2`,
//! 2 for `q = 1`, per chunk of `CHUNK` inputs (ℓ = 37 MSB: q = 9, L = 4, 9 flights).
//!
//! **One digit (w ≤ 4).** With a single digit there is no tree and only the `gt` leaf is
//! needed, so the comparison is one 1-out-of-2^w OT with 1-bit messages ([`millionaire_cost`]):
//! with IKNP `w·16` B (32 B by KK13 for w ≥ 3) plus `2^w` bits instead of a 1-of-16 OT with
//! 2-bit messages and its ANDs (the field→ring wraps of 2–3 bits, the partial carries of 4 bits).
//!
//! **Many thresholds ([`lt_public`] with t ≥ 2).** `x − T_τ` differs between thresholds only in
//! the server's share, so the client's millionaire input (its low bits) is the same for every τ.
//! One 1-out-of-16 OT per client digit then carries the `(gt, eq)` leaf bits of all t
//! comparisons (2t-bit messages, t ≤ 32 per batch); the trees run on all t·n comparisons with
//! bit triples from a second OT batch ([`millionaire_gt_shared`], [`millionaire_shared_cost`]).
//! Bytes per element: `q·C16(2t) + ⌈t·A/2⌉·C16(2) + 2·(2tA)/8` instead of
//! `t·(q + A/2)·C16(2) + …` (GeLU's 8 knots on 20 bits: ≈ 1.9 kB instead of ≈ 4.1 kB); flights
//! `2L + 3` (one more OT batch) per chunk of `CHUNK` client inputs (not `CHUNK/t`: SoftMax's
//! 10 knots over 196 608 scores took 60 chunks, i.e. 540 flights, before). Security: the leaf messages are one-time padded by the server's
//! fresh masks exactly as for one threshold.
//!
//! **Domains and exactness.**
//! * `msb`, `drelu`: exact for every ring element (two's complement sign).
//! * `lt_public(x, T)` with `k = ℓ, d = 0`: exact iff `x − T` does not overflow, i.e.
//!   `−2^(ℓ−1) ≤ x − T < 2^(ℓ−1)`.
//! * **Reduced width** (`k < ℓ`, `d > 0`): the shares are reduced mod 2^k (a ring
//!   homomorphism) and the low `d` bits of each share's low part are dropped, so the
//!   millionaire runs on `w = k−1−d` bits instead of ℓ−1. Writing `z = x − T` and
//!   `e = (x_S mod 2^d) + (x_C mod 2^d) ∈ [0, 2^(d+1) − 2]` (random, from the shares), the
//!   output is exactly `[z − e < 0]` provided `−2^(k−1) + e ≤ z < 2^(k−1)`. Hence the result
//!   equals `[x < T]` **exactly** whenever `−2^(k−1) + 2^(d+1) − 2 ≤ x − T < 0` or
//!   `2^(d+1) − 2 ≤ x − T < 2^(k−1)`; inside the window `0 ≤ x − T < 2^(d+1) − 2` it may
//!   report `x < T` (an input at most `2^(d+1)−3` units above the threshold can be classified
//!   below it). With `d = 0` the window is empty and the reduced comparison is exact on
//!   `|x − T| < 2^(k−1)`. For GeLU segment selection at s fraction bits, `d` bits dropped
//!   move the breakpoint by less than `2^(d+1−s)`, and `k` only needs to cover the input range.
//!
//! **Coarse thresholds ([`lt_public_coarse`]).** When every threshold is a multiple of `2^s`
//! (SoftMax's exp knots at whole units, GeLU knots on a grid), `[x < T] = [⌊x/2^s⌋ < T/2^s]`
//! exactly. The low `s` bits of `x − T` are then the same for every threshold, so their carry
//! is computed once ([`floor_narrow`]: a millionaire on `s` bits and one `k`-bit correlated
//! OT give shares of `⌊x/2^s⌋ mod 2^k`) and the t comparisons run on `k` bits in `Z_{2^k}`:
//! `M(s) + C_cot(k) + q_k·C16(2t) + ⌈t·A(q_k)/2⌉·C16(2) + …` instead of the same with
//! `q_(k+s)` digits, i.e. the t-fold tree work on the `s` low bits is done once. Exact on
//! `|⌊x/2^s⌋ − T/2^s| < 2^(k−1)`; flights: those of the s-bit millionaire and one COT batch
//! more than the k-bit comparison. Security: as for `lt_public`; the carry's B2A is a COT with a
//! uniform pad over Z_{2^k}, so the output shares mod 2^k are uniform.
//! SoftMax's 10 exp knots on a 40-bit ring with 12 fraction bits: ≈ 1.3 kB instead of ≈ 3.0 kB.
//!
//! **Partial carry ([`lt_public_coarse_partial`], [`floor_narrow_partial`]).** The carry of the
//! low `s` bits may be taken from their top `c` bits only (a millionaire on `c` bits; none for
//! `c = 0`): the floor is then `⌊(x − γ·2^d)/2^s⌋`, `d = s − c`, `γ = [l_S + l_C ≥ 2^d]` the
//! carry of the shares' low `d` bits, i.e. `⌊x/2^s⌋` or one less, the latter only when
//! `x mod 2^s < 2^d`. Every comparison then sees `x − γ·2^d`: an input less than `2^d` units
//! above a threshold may be classified below it. γ depends only on the random shares; each
//! party's low `d` bits go to `trunc::trace`, so a simulation given γ is exact again. Cost
//! `M(c) + C_cot(k)` (0 for `c = 0`) instead of `M(s) + C_cot(k)`. The same holds for
//! [`msb_reduced`] with `d > 0`: its output is `[⌊x/2^d⌋ − γ < 0]`.
//!
//! **Security (semi-honest).** The server's OT messages are one-time-padded with its fresh
//! random `gt_S, eq_S`, so the client's outputs are uniform; the server learns nothing from
//! OT (receiver privacy). The tree uses the AND protocol (simulatable, see `bits`). Outputs
//! are fresh XOR shares; neither party sees anything but uniform bits and its own input.

use rand::RngCore;
use rayon::prelude::*;

use super::bits::{self, and_with, BitShare};
use super::trunc::trace;
use crate::proto::ctx::{Cost, Party, Step, CHUNK};
use crate::error::{Error, Result};
use crate::share::Ring;

/// Digit width of the millionaire (1-out-of-16 OT).
pub const DIGIT_BITS: u32 = 4;
const RADIX: usize = 1 << DIGIT_BITS;

/// Number of 4-bit digits for a `w`-bit comparison.
pub fn digit_count(w: u32) -> usize {
    w.div_ceil(DIGIT_BITS) as usize
}

/// Number of tree levels for `q` digits.
pub fn tree_levels(q: usize) -> usize {
    let mut levels = 0;
    let mut nodes = q;
    while nodes > 1 {
        nodes = nodes.div_ceil(2);
        levels += 1;
    }
    levels
}

/// ANDs per element of the combining tree for `q` digits: per level, 2 per pair, minus one for
/// the pair holding digit 0 (its `eq` is never needed).
pub fn millionaire_and_count(q: usize) -> usize {
    let mut nodes = q;
    let mut ands = 0;
    while nodes > 1 {
        ands += 2 * (nodes / 2) - 1;
        nodes = nodes.div_ceil(2);
    }
    ands
}

/// Split a `w`-bit value into q digits, least significant first.
fn digit(v: u64, j: usize) -> u8 {
    ((v >> (DIGIT_BITS as usize * j)) & (RADIX as u64 - 1)) as u8
}

/// The server's 1-out-of-16 messages for one digit: 2-bit `(gt, eq)` masked by its shares.
fn leaf_messages(y_digit: u8, gt_mask: u8, eq_mask: u8, out: &mut [u64]) {
    for (v, m) in out.iter_mut().enumerate() {
        let gt = (v as u8 > y_digit) as u8 ^ gt_mask;
        let eq = (v as u8 == y_digit) as u8 ^ eq_mask;
        *m = (gt | (eq << 1)) as u64;
    }
}

/// One node of the combining tree: shares of `[x > y]` and `[x = y]` on a digit range.
struct Node {
    gt: BitShare,
    eq: Option<BitShare>,
}

/// Boolean shares of `[x_client > y_server]` for inputs `< 2^bits` (each party passes its own
/// input; `bits ≤ 64`).
pub fn millionaire_gt(p: &mut Party, input: &[u64], bits: u32) -> Result<BitShare> {
    if bits > 64 {
        return Err(Error::Config(format!("millionaire on {bits} bits (max 64)")));
    }
    let mut out = Vec::with_capacity(input.len());
    for chunk in input.chunks(CHUNK) {
        out.extend(millionaire_chunk(p, chunk, bits)?);
    }
    Ok(out)
}

fn millionaire_chunk(p: &mut Party, input: &[u64], bits: u32) -> Result<BitShare> {
    let n = input.len();
    let q = digit_count(bits);
    if q == 0 || n == 0 {
        return Ok(vec![0; n]);
    }
    p.ch.set_phase("millionaire");
    if q == 1 {
        return single_digit(p, input, bits);
    }
    let (leaves, mut triples) = leaves_and_triples(p, input, q, n * millionaire_and_count(q))?;
    combine_tree(p, &leaves, n, q, &mut triples)
}

/// A millionaire on `w ≤ 4` bits: no tree, so the leaf needs only its `gt` bit, and the OT
/// only `2^w` messages: one 1-out-of-2^w OT with 1-bit messages per comparison (the server
/// offers `[v > y] ⊕ r` for every client value v, keeps r) instead of a 1-out-of-16 OT with
/// 2-bit messages (IKNP: w·16 B + 2^w bits instead of 64 B + 4 B).
fn single_digit(p: &mut Party, input: &[u64], w: u32) -> Result<BitShare> {
    let arity = 1usize << w;
    if p.is_server() {
        let mut masks = vec![0u8; input.len()];
        p.rng().fill_bytes(&mut masks);
        masks.iter_mut().for_each(|m| *m &= 1);
        let msgs: Vec<u64> = input
            .iter()
            .zip(&masks)
            .flat_map(|(&y, &r)| (0..arity as u64).map(move |v| u64::from(v > (y & (arity as u64 - 1))) ^ u64::from(r)))
            .collect();
        p.ot_n_send(&msgs, arity, 1)?;
        Ok(masks)
    } else {
        let choices: Vec<u8> = input.iter().map(|&x| (x & (arity as u64 - 1)) as u8).collect();
        Ok(p.ot_n_recv(&choices, arity, 1)?.iter().map(|&b| (b & 1) as u8).collect())
    }
}

/// The `gt` shares of `n` comparisons from their 2-bit leaves (`leaves[e·q + j]` for digit j).
fn combine_tree(p: &mut Party, leaves: &[u8], n: usize, q: usize, triples: &mut bits::BitTriples) -> Result<BitShare> {
    let mut nodes: Vec<Node> = (0..q)
        .map(|j| Node {
            gt: (0..n).map(|i| leaves[i * q + j] & 1).collect(),
            eq: (j > 0).then(|| (0..n).map(|i| (leaves[i * q + j] >> 1) & 1).collect()),
        })
        .collect();
    while nodes.len() > 1 {
        nodes = combine_level(p, nodes, triples)?;
    }
    nodes.pop().map(|node| node.gt).ok_or_else(|| Error::protocol("millionaire", "empty tree"))
}

/// Leaf shares as 2-bit values `gt | eq << 1`, element-major (`i * q + j`), and `ands` bit
/// triples, all from one batch of 1-out-of-16 OTs (leaf rows first, then triple rows).
fn leaves_and_triples(p: &mut Party, input: &[u64], q: usize, ands: usize) -> Result<(Vec<u8>, bits::BitTriples)> {
    let n = input.len();
    if p.is_server() {
        let mut masks = vec![0u8; n * q];
        p.rng().fill_bytes(&mut masks);
        masks.iter_mut().for_each(|m| *m &= 3);
        let mut msgs = vec![0u64; n * q * RADIX];
        msgs.par_chunks_mut(q * RADIX).enumerate().for_each(|(i, row)| {
            for (j, slot) in row.chunks_mut(RADIX).enumerate() {
                let m = masks[i * q + j];
                leaf_messages(digit(input[i], j), m & 1, m >> 1, slot);
            }
        });
        let (triple_msgs, triples) = bits::triple_offer(p, ands);
        msgs.extend_from_slice(&triple_msgs);
        p.ot_n_send(&msgs, RADIX, 2)?;
        Ok((masks, triples))
    } else {
        let mut choices: Vec<u8> = (0..n * q).map(|k| digit(input[k / q], k % q)).collect();
        let (triple_choices, a, b) = bits::triple_choices(p, ands);
        choices.extend_from_slice(&triple_choices);
        let got = p.ot_n_recv(&choices, RADIX, 2)?;
        let (leaf, rest) = got.split_at(n * q);
        Ok((leaf.iter().map(|&v| (v & 3) as u8).collect(), bits::triples_received(a, b, rest)))
    }
}

/// Combine adjacent (lo, hi) nodes; one AND exchange for the whole level.
fn combine_level(p: &mut Party, nodes: Vec<Node>, triples: &mut bits::BitTriples) -> Result<Vec<Node>> {
    let pairs = nodes.len() / 2;
    let mut left = Vec::new();
    let mut right = Vec::new();
    for k in 0..pairs {
        let (lo, hi) = (&nodes[2 * k], &nodes[2 * k + 1]);
        let eq_hi = hi.eq.as_ref().ok_or_else(|| Error::protocol("millionaire", "missing eq share"))?;
        left.extend_from_slice(eq_hi);
        right.extend_from_slice(&lo.gt);
        if let Some(eq_lo) = &lo.eq {
            left.extend_from_slice(eq_hi);
            right.extend_from_slice(eq_lo);
        }
    }
    let prod = and_with(p, &left, &right, triples)?;
    let mut pos = 0;
    let mut next = Vec::with_capacity(nodes.len().div_ceil(2));
    let mut iter = nodes.into_iter();
    for _ in 0..pairs {
        let (lo, hi) = match (iter.next(), iter.next()) {
            (Some(lo), Some(hi)) => (lo, hi),
            _ => return Err(Error::protocol("millionaire", "tree shape")),
        };
        let n = lo.gt.len();
        let gt = bits::xor(&hi.gt, &prod[pos..pos + n]);
        pos += n;
        let eq = match lo.eq {
            Some(_) => {
                let e = prod[pos..pos + n].to_vec();
                pos += n;
                Some(e)
            }
            None => None,
        };
        next.push(Node { gt, eq });
    }
    next.extend(iter);
    Ok(next)
}

/// Shares of `msb(x)` (= `[x < 0]` in two's complement) for ring shares `x`.
pub fn msb(p: &mut Party, ring: Ring, x: &[u64]) -> Result<BitShare> {
    msb_reduced(p, ring, x, ring.bits(), 0)
}

/// Shares of `DReLU(x) = [x ≥ 0] = 1 ⊕ msb(x)`.
pub fn drelu(p: &mut Party, ring: Ring, x: &[u64]) -> Result<BitShare> {
    let m = msb(p, ring, x)?;
    Ok(bits::not(p, &m))
}

/// MSB of `x mod 2^k`, ignoring the low `d` bits of each share (see the module header for the
/// exact condition); `k = ℓ, d = 0` is the exact [`msb`].
pub fn msb_reduced(p: &mut Party, ring: Ring, x: &[u64], k: u32, d: u32) -> Result<BitShare> {
    check_reduced(ring, k, d)?;
    let top: Vec<u8> = x.iter().map(|&v| ((v >> (k - 1)) & 1) as u8).collect();
    let (mill_in, w) = carry_inputs(p, x, k, d);
    let carry = millionaire_gt(p, &mill_in, w)?;
    Ok(bits::xor(&top, &carry))
}

/// Each party's millionaire input for the carry of the low bits `d .. k−1` of its shares, and
/// the comparison width `w = k − 1 − d`:
/// `carry = [low_S + low_C ≥ 2^w] = [low_C > 2^w − 1 − low_S]`.
fn carry_inputs(p: &Party, x: &[u64], k: u32, d: u32) -> (Vec<u64>, u32) {
    let w = k - 1 - d;
    let low_mask = if w == 0 { 0 } else { (1u64 << w) - 1 };
    let low = x.iter().map(|&v| (v >> d) & low_mask);
    let mill_in = if p.is_server() { low.map(|l| low_mask - l).collect() } else { low.collect() };
    (mill_in, w)
}

fn check_reduced(ring: Ring, k: u32, d: u32) -> Result<()> {
    if k == 0 || k > ring.bits() || d >= k {
        return Err(Error::Config(format!("reduced comparison needs 1 ≤ k ≤ ℓ = {} and d < k (k = {k}, d = {d})", ring.bits())));
    }
    Ok(())
}

/// Shares of `[x < T]` for each public threshold `T` (one batched comparison). The result
/// holds one `BitShare` per threshold. `k`, `d` select the reduced width (`ring.bits(), 0`
/// for the exact comparison); see the module header for the exact domain.
pub fn lt_public(p: &mut Party, ring: Ring, x: &[u64], thresholds: &[i64], k: u32, d: u32) -> Result<Vec<BitShare>> {
    check_reduced(ring, k, d)?;
    let n = x.len();
    if n == 0 {
        return Ok(vec![Vec::new(); thresholds.len()]);
    }
    let shifted: Vec<u64> = thresholds
        .iter()
        .flat_map(|&t| {
            let t_enc = if p.is_server() { ring.from_signed(t) } else { 0 };
            x.iter().map(move |&v| ring.sub(v, t_enc))
        })
        .collect();
    if thresholds.len() < 2 {
        let all = msb_reduced(p, ring, &shifted, k, d)?;
        return Ok(all.chunks(n.max(1)).take(thresholds.len()).map(|c| c.to_vec()).collect());
    }
    // The client's share of x − T is x_C for every T: one set of leaf OTs serves them all.
    let mut out = Vec::with_capacity(thresholds.len());
    for group in shifted.chunks(n * MAX_SHARED_THRESHOLDS) {
        let t = group.len() / n.max(1);
        let own: &[u64] = if p.is_server() { group } else { &group[..n] };
        let all = msb_reduced_shared(p, ring, own, t, k, d)?;
        out.extend(all.chunks(n.max(1)).map(|c| c.to_vec()));
    }
    Ok(out)
}

/// Thresholds per shared-leaf batch: each leaf OT carries 2 bits per threshold in a 64-bit message.
pub const MAX_SHARED_THRESHOLDS: usize = 32;

/// [`msb_reduced`] of `x − T_τ` for `t` thresholds when the client's share is the same for all
/// of them: the server passes `t·n` shares (threshold-major), the client its `n` shares.
fn msb_reduced_shared(p: &mut Party, ring: Ring, x: &[u64], t: usize, k: u32, d: u32) -> Result<BitShare> {
    check_reduced(ring, k, d)?;
    let (mill_in, w) = carry_inputs(p, x, k, d);
    let carry = millionaire_gt_shared(p, &mill_in, t, w)?;
    let n = carry.len() / t.max(1);
    let top: Vec<u8> = (0..t * n).map(|e| ((x[if p.is_server() { e } else { e % n.max(1) }] >> (k - 1)) & 1) as u8).collect();
    Ok(bits::xor(&top, &carry))
}

/// `[x_client > y_τ]` for `t` server inputs per client input (server: `t·n` values,
/// threshold-major; client: `n` values); output threshold-major. The leaf OTs are shared: one
/// 1-out-of-16 OT per client digit whose message carries the `(gt, eq)` bits of all `t`
/// comparisons; the tree runs on all `t·n` comparisons with triples from a separate batch.
pub fn millionaire_gt_shared(p: &mut Party, input: &[u64], t: usize, bits: u32) -> Result<BitShare> {
    if bits > 64 || t == 0 || t > MAX_SHARED_THRESHOLDS {
        return Err(Error::Config(format!("shared millionaire on {bits} bits with {t} thresholds (max 64 bits, {MAX_SHARED_THRESHOLDS} thresholds)")));
    }
    let n = if p.is_server() { input.len() / t } else { input.len() };
    if p.is_server() && input.len() != n * t {
        return Err(Error::Input(format!("shared millionaire: {} server inputs for {t} thresholds", input.len())));
    }
    // CHUNK client inputs per batch whatever t (memory O(t·CHUNK·q) bytes, t ≤ 32): the
    // flights do not grow with the number of thresholds.
    let per_chunk = CHUNK;
    let mut parts: Vec<BitShare> = Vec::new();
    for start in (0..n).step_by(per_chunk) {
        let c = per_chunk.min(n - start);
        let own: Vec<u64> = if p.is_server() {
            (0..t).flat_map(|tau| input[tau * n + start..tau * n + start + c].iter().copied()).collect()
        } else {
            input[start..start + c].to_vec()
        };
        parts.push(millionaire_shared_chunk(p, &own, t, c, bits)?);
    }
    // Chunks are threshold-major inside; reassemble threshold-major over all n.
    let mut out = vec![0u8; t * n];
    let mut start = 0;
    for part in &parts {
        let c = part.len() / t;
        for tau in 0..t {
            out[tau * n + start..tau * n + start + c].copy_from_slice(&part[tau * c..(tau + 1) * c]);
        }
        start += c;
    }
    Ok(out)
}

fn millionaire_shared_chunk(p: &mut Party, input: &[u64], t: usize, c: usize, bits: u32) -> Result<BitShare> {
    let q = digit_count(bits);
    if q == 0 || c == 0 {
        return Ok(vec![0; t * c]);
    }
    p.ch.set_phase("millionaire");
    let width = 2 * t as u32;
    // leaves[(tau·c + i)·q + j]: 2-bit (gt, eq) share of comparison (tau, i) on digit j.
    let mut leaves = vec![0u8; t * c * q];
    if p.is_server() {
        let mut masks = vec![0u8; t * c * q];
        p.rng().fill_bytes(&mut masks);
        masks.iter_mut().for_each(|m| *m &= 3);
        let mut msgs = vec![0u64; c * q * RADIX];
        msgs.par_chunks_mut(q * RADIX).enumerate().for_each(|(i, row)| {
            for (j, slot) in row.chunks_mut(RADIX).enumerate() {
                for (v, m) in slot.iter_mut().enumerate() {
                    *m = (0..t).fold(0u64, |acc, tau| {
                        let e = tau * c + i;
                        let y = digit(input[e], j);
                        let mask = masks[e * q + j];
                        let gt = (v as u8 > y) as u8 ^ (mask & 1);
                        let eq = (v as u8 == y) as u8 ^ (mask >> 1);
                        acc | (((gt | (eq << 1)) as u64) << (2 * tau))
                    });
                }
            }
        });
        p.ot_n_send(&msgs, RADIX, width)?;
        leaves.copy_from_slice(&masks);
    } else {
        let choices: Vec<u8> = (0..c * q).map(|k| digit(input[k / q], k % q)).collect();
        let got = p.ot_n_recv(&choices, RADIX, width)?;
        for tau in 0..t {
            for k in 0..c * q {
                leaves[tau * c * q + k] = ((got[k] >> (2 * tau)) & 3) as u8;
            }
        }
    }
    let mut triples = bits::bit_triples(p, t * c * millionaire_and_count(q))?;
    combine_tree(p, &leaves, t * c, q, &mut triples)
}

/// Shares of `[x < T]` for public thresholds that are all multiples of `2^s`, decided on the
/// integer part `⌊x / 2^s⌋` only (see "Coarse thresholds" in the module header): exact for
/// `|⌊x/2^s⌋ − T/2^s| < 2^(k−1)` and `k + s ≤ ℓ`.
pub fn lt_public_coarse(p: &mut Party, ring: Ring, x: &[u64], thresholds: &[i64], s: u32, k: u32) -> Result<Vec<BitShare>> {
    lt_public_coarse_partial(p, ring, x, thresholds, s, s, k)
}

/// [`lt_public_coarse`] on the integer part as [`floor_narrow_partial`] computes it from the
/// top `carry_bits` of the `s` low bits: the result is `[x − γ·2^d < T]` with `d = s −
/// carry_bits` and `γ ∈ {0, 1}` the carry of the shares' low `d` bits (traced), i.e. an input at
/// most `2^d − 1` units above a threshold may be classified below it. Exact for
/// `carry_bits = s`; same domain.
pub fn lt_public_coarse_partial(p: &mut Party, ring: Ring, x: &[u64], thresholds: &[i64], s: u32, carry_bits: u32, k: u32) -> Result<Vec<BitShare>> {
    check_coarse(ring, thresholds, s, k)?;
    if x.is_empty() {
        return Ok(vec![Vec::new(); thresholds.len()]);
    }
    if s == 0 {
        return lt_public(p, ring, x, thresholds, k, 0);
    }
    let narrow = Ring::new(k)?;
    let high = floor_narrow_partial(p, ring, x, s, carry_bits, narrow)?;
    let coarse: Vec<i64> = thresholds.iter().map(|&t| t >> s).collect();
    lt_public(p, narrow, &high, &coarse, k, 0)
}

fn check_coarse(ring: Ring, thresholds: &[i64], s: u32, k: u32) -> Result<()> {
    if k < 2 || s >= 63 || k + s > ring.bits() {
        return Err(Error::Config(format!("coarse comparison needs 2 ≤ k and k + s ≤ ℓ = {} (k = {k}, s = {s})", ring.bits())));
    }
    if thresholds.iter().any(|&t| t.rem_euclid(1i64 << s) != 0) {
        return Err(Error::Config(format!("coarse comparison needs thresholds that are multiples of 2^{s}")));
    }
    Ok(())
}

/// Shares over `narrow = Z_{2^k}` of `⌊x / 2^s⌋ mod 2^k` (`k + s ≤ ℓ`): each party's high bits
/// plus the carry `[l_S + l_C ≥ 2^s]` of the low `s` bits (a millionaire on `s` bits, then one
/// `k`-bit correlated OT for its B2A). Exact for every ring element: the wrap of the shares
/// moves the sum by `2^(ℓ−s)`, a multiple of `2^k`.
pub fn floor_narrow(p: &mut Party, ring: Ring, x: &[u64], s: u32, narrow: Ring) -> Result<Vec<u64>> {
    floor_narrow_partial(p, ring, x, s, s, narrow)
}

/// [`floor_narrow`] with the carry of only the top `carry_bits ≤ s` of the low `s` bits (a
/// millionaire on `carry_bits` bits; none for 0): shares of `⌊(x − γ·2^d) / 2^s⌋ mod 2^k`,
/// `d = s − carry_bits`, where `γ = [l_S + l_C ≥ 2^d]` is the carry of the shares' low `d`
/// bits that this floor ignores, so the result is `⌊x/2^s⌋` or one less, the latter only if
/// `x mod 2^s < 2^d`. Each party's low `d` bits go to `trunc::trace` (a simulation rebuilds γ).
pub fn floor_narrow_partial(p: &mut Party, ring: Ring, x: &[u64], s: u32, carry_bits: u32, narrow: Ring) -> Result<Vec<u64>> {
    if s == 0 || carry_bits > s || s + narrow.bits() > ring.bits() {
        return Err(Error::Config(format!(
            "narrow floor needs 1 ≤ s, carry_bits ≤ s and s + k ≤ ℓ (s = {s}, carry_bits = {carry_bits}, k = {}, ℓ = {})",
            narrow.bits(),
            ring.bits()
        )));
    }
    let d = s - carry_bits;
    if d > 0 {
        trace::record(d, || x.iter().map(|&v| v & ((1u64 << d) - 1)).collect());
    }
    if carry_bits == 0 {
        return Ok(x.iter().map(|&v| narrow.reduce(v >> s)).collect());
    }
    let mask = (1u64 << carry_bits) - 1;
    let mill_in: Vec<u64> =
        x.iter().map(|&v| if p.is_server() { mask - ((v >> d) & mask) } else { (v >> d) & mask }).collect();
    let carry = millionaire_gt(p, &mill_in, carry_bits)?;
    let carry = super::b2a::b2a_ring(p, narrow, &carry)?;
    Ok(x.iter().zip(&carry).map(|(&v, &c)| narrow.add(narrow.reduce(v >> s), c)).collect())
}

/// Documented cost of [`floor_narrow`] on `n` elements into `Z_{2^k}`.
pub fn floor_narrow_cost(n: usize, s: u32, k: u32) -> Cost {
    floor_narrow_partial_cost(n, s, k)
}

/// Documented cost of [`floor_narrow_partial`] with `carry_bits` on `n` elements into `Z_{2^k}`.
pub fn floor_narrow_partial_cost(n: usize, carry_bits: u32, k: u32) -> Cost {
    if carry_bits == 0 {
        return Cost::default();
    }
    millionaire_cost(n, carry_bits) + Cost::cot(k, n).then(&[Step::OtServerSends])
}

/// Documented cost of [`lt_public_coarse`] with `t` thresholds.
pub fn lt_public_coarse_cost(n: usize, t: usize, s: u32, k: u32) -> Cost {
    lt_public_coarse_partial_cost(n, t, s, s, k)
}

/// Documented cost of [`lt_public_coarse_partial`] with `t` thresholds.
pub fn lt_public_coarse_partial_cost(n: usize, t: usize, s: u32, carry_bits: u32, k: u32) -> Cost {
    if s == 0 {
        return lt_public_cost(n, t, k, 0);
    }
    floor_narrow_partial_cost(n, carry_bits, k) + lt_public_cost(n, t, k, 0)
}

/// Index range of [`lt_small_or`]: indices are shared mod 16.
pub const SMALL_INDEX: usize = 16;

/// Shares of `[t ∨ (j < τ)]` for each public `τ ∈ taus` (`τ ≤ 16`, at most 64 of them), where
/// `j = (j_S + j_C) mod 16` is additively shared (each party's `j_P` below 16) and
/// `t = t_S ⊕ t_C` is a shared bit: one 1-out-of-32 OT per element, server sender, client
/// choice `(t_C, j_C)`, `|taus|`-bit messages. The server's message for choice `(a, v)` is
/// `([t_S ⊕ a] ∨ [(j_S + v) mod 16 < τ]) ⊕ r_τ` over all τ, with `r` uniform: its output
/// share is `r`, the client's is what it receives. One result `BitShare` per τ.
/// Security: the client sees one of 32 one-time-padded messages (sender privacy of the OT),
/// the server nothing (receiver privacy).
pub fn lt_small_or(p: &mut Party, j: &[u8], t: &[u8], taus: &[u8]) -> Result<Vec<BitShare>> {
    if j.len() != t.len() || taus.is_empty() || taus.len() > 64 || taus.iter().any(|&tau| tau as usize > SMALL_INDEX) {
        return Err(Error::Config(format!("small comparison: {} indices, {} bits, {} thresholds (1–64, each ≤ 16)", j.len(), t.len(), taus.len())));
    }
    let (n, width) = (j.len(), taus.len() as u32);
    let choices = 2 * SMALL_INDEX;
    let mut packed = vec![0u64; n];
    if n == 0 {
        return Ok(vec![Vec::new(); taus.len()]);
    }
    p.ch.set_phase("small comparison");
    for (start, part) in (0..n).step_by(CHUNK).zip(packed.chunks_mut(CHUNK)) {
        let c = part.len();
        if p.is_server() {
            let mut masks = vec![0u64; c];
            let keep = if width == 64 { u64::MAX } else { (1u64 << width) - 1 };
            masks.iter_mut().for_each(|m| *m = p.rng().next_u64() & keep);
            let mut msgs = vec![0u64; c * choices];
            msgs.par_chunks_mut(choices).enumerate().for_each(|(i, row)| {
                let (js, ts) = (j[start + i] as usize, t[start + i] & 1);
                for (choice, m) in row.iter_mut().enumerate() {
                    let tail = ts ^ (choice / SMALL_INDEX) as u8 == 1;
                    let idx = (js + choice % SMALL_INDEX) % SMALL_INDEX;
                    let bits = taus.iter().enumerate().fold(0u64, |acc, (k, &tau)| acc | (u64::from(tail || idx < tau as usize) << k));
                    *m = bits ^ masks[i];
                }
            });
            p.ot_n_send(&msgs, choices, width)?;
            part.copy_from_slice(&masks);
        } else {
            let sel: Vec<u8> = (start..start + c).map(|i| ((t[i] & 1) << 4) | (j[i] % SMALL_INDEX as u8)).collect();
            part.copy_from_slice(&p.ot_n_recv(&sel, choices, width)?);
        }
    }
    Ok((0..taus.len()).map(|k| packed.iter().map(|&v| ((v >> k) & 1) as u8).collect()).collect())
}

/// Documented cost of [`lt_small_or`] on `n` elements with `t` thresholds.
pub fn lt_small_or_cost(n: usize, t: usize) -> Cost {
    let mut cost = Cost::default();
    for start in (0..n).step_by(CHUNK) {
        cost = cost + Cost::one_of_n(2 * SMALL_INDEX, t as u32, (n - start).min(CHUNK)).then(&[Step::OtServerSends]);
    }
    cost
}

/// Shares of `[x < T]` for one public threshold, exact on `−2^(ℓ−1) ≤ x − T < 2^(ℓ−1)`.
pub fn lt_const(p: &mut Party, ring: Ring, x: &[u64], t: i64) -> Result<BitShare> {
    let mut v = lt_public(p, ring, x, &[t], ring.bits(), 0)?;
    v.pop().ok_or_else(|| Error::protocol("comparison", "no output"))
}

/// One-hot segment indicators for sorted public breakpoints `T_0 < … < T_{m−1}`: returns
/// `m + 1` shares, `b_0 = [x < T_0]`, `b_i = [T_{i−1} ≤ x < T_i]`, `b_m = [x ≥ T_{m−1}]`.
/// One batched comparison; the indicators are XORs of adjacent `[x < T_i]` bits (monotone in
/// `i`), so no AND is needed. With a reduced width (`d > 0`) every comparison sees the same
/// share-dependent offset `e` **if every `T_i` is a multiple of `2^d`**; the indicators are
/// then exactly one-hot for the shifted input `x − e`, `0 ≤ e ≤ 2^(d+1) − 2` (the breakpoints
/// move by less than `2^(d+1)` units). Otherwise an error is returned for `d > 0`.
pub fn segment_indicators(p: &mut Party, ring: Ring, x: &[u64], breakpoints: &[i64], k: u32, d: u32) -> Result<Vec<BitShare>> {
    if breakpoints.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Error::Config("segment breakpoints must be strictly increasing".into()));
    }
    if d > 0 && breakpoints.iter().any(|&t| t.rem_euclid(1i64 << d) != 0) {
        return Err(Error::Config(format!("reduced segment selection needs breakpoints that are multiples of 2^{d}")));
    }
    let lt = lt_public(p, ring, x, breakpoints, k, d)?;
    let mut out = Vec::with_capacity(lt.len() + 1);
    let mut prev: Option<&BitShare> = None;
    for cur in &lt {
        out.push(match prev {
            None => cur.clone(),
            Some(prev) => bits::xor(cur, prev),
        });
        prev = Some(cur);
    }
    match lt.last() {
        Some(last) => out.push(bits::not(p, last)),
        None => out.push(bits::public(p, &vec![1; x.len()])),
    }
    Ok(out)
}

/// Documented cost of [`millionaire_gt`] on `n` inputs of `w` bits (chunked by `CHUNK`).
pub fn millionaire_cost(n: usize, w: u32) -> Cost {
    let q = digit_count(w);
    let mut cost = Cost::default();
    if q == 0 {
        return cost;
    }
    let mut left = n;
    while left > 0 {
        let c = left.min(CHUNK);
        left -= c;
        if q == 1 {
            cost = cost + Cost::one_of_n(1 << w, 1, c).then(&[Step::OtServerSends]);
            continue;
        }
        let triple_ots = bits::triple_ot_count(c * millionaire_and_count(q));
        cost = cost + Cost::one_of_n(RADIX, 2, c * q + triple_ots).then(&[Step::OtServerSends]) + tree_exchange_cost(c, q);
    }
    cost
}

/// Documented cost of [`msb_reduced`] (and of [`msb`] with `k = ℓ, d = 0`).
pub fn msb_cost(n: usize, k: u32, d: u32) -> Cost {
    millionaire_cost(n, k - 1 - d)
}

/// Documented cost of [`lt_public`] with `t` thresholds.
pub fn lt_public_cost(n: usize, t: usize, k: u32, d: u32) -> Cost {
    if t < 2 {
        return millionaire_cost(n * t, k - 1 - d);
    }
    let mut cost = Cost::default();
    let mut left = t;
    while left > 0 {
        let g = left.min(MAX_SHARED_THRESHOLDS);
        left -= g;
        cost = cost + millionaire_shared_cost(n, g, k - 1 - d);
    }
    cost
}

/// Documented cost of [`millionaire_gt_shared`] on `n` client inputs and `t` thresholds.
pub fn millionaire_shared_cost(n: usize, t: usize, w: u32) -> Cost {
    let q = digit_count(w);
    let mut cost = Cost::default();
    if q == 0 || t == 0 {
        return cost;
    }
    let per_chunk = CHUNK;
    let mut left = n;
    while left > 0 {
        let c = left.min(per_chunk);
        left -= c;
        let ands = t * c * millionaire_and_count(q);
        cost = cost + Cost::one_of_n(RADIX, 2 * t as u32, c * q).then(&[Step::OtServerSends]);
        if ands > 0 {
            cost = cost + Cost::one_of_n(RADIX, 2, bits::triple_ot_count(ands)).then(&[Step::OtServerSends]);
        }
        cost = cost + tree_exchange_cost(t * c, q);
    }
    cost
}

/// The AND exchanges of the combining trees of `m` comparisons on `q` digits (one per level).
fn tree_exchange_cost(m: usize, q: usize) -> Cost {
    let mut cost = Cost::default();
    let mut nodes = q;
    while nodes > 1 {
        let ands_in_level = 2 * (nodes / 2) - 1;
        cost = cost + Cost::own(bits::and_exchange_bytes(m * ands_in_level)).then(&[Step::Exchange]);
        nodes = nodes.div_ceil(2);
    }
    cost
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn and_counts_match_tree_shape() {
        assert_eq!(millionaire_and_count(1), 0);
        assert_eq!(millionaire_and_count(2), 1);
        assert_eq!(millionaire_and_count(3), 1 + 1);
        assert_eq!(millionaire_and_count(9), 2 * 8 - 4);
        assert_eq!(millionaire_and_count(10), 2 * 9 - 4);
        assert_eq!(tree_levels(9), 4);
        assert_eq!(tree_levels(1), 0);
    }

    #[test]
    fn documented_round_counts() {
        use crate::proto::toolkit::trunc::{trunc_cost, TruncMode};
        let ring = Ring::new(37).unwrap();
        assert_eq!(millionaire_cost(10, 36).rounds(), 2 * 4 + 1);
        assert_eq!(millionaire_cost(10, 4).rounds(), 2);
        assert_eq!(trunc_cost(10, ring, 12, TruncMode::Faithful).rounds(), 6);
        assert_eq!(trunc_cost(10, ring, 4, TruncMode::Faithful).rounds(), 4);
        assert_eq!(trunc_cost(10, ring, 12, TruncMode::Approx).rounds(), 2);
        // Two chunks repeat the step list.
        assert_eq!(millionaire_cost(CHUNK + 1, 36).rounds(), 2 * (2 * 4 + 1) - 1);
    }

    #[test]
    fn leaf_messages_encode_gt_and_eq() {
        let mut out = [0u64; 16];
        leaf_messages(5, 0, 0, &mut out);
        for v in 0..16u64 {
            assert_eq!(out[v as usize] & 1, (v > 5) as u64);
            assert_eq!(out[v as usize] >> 1, (v == 5) as u64);
        }
    }
}
