//! The silent correlated-OT generator, one direction: [`CotSender`] holds the global `Δ`,
//! [`CotReceiver`] the choice bits. Single-point COTs by GGM trees and the bootstrap from
//! reserved outputs as in Ferret (Yang–Weng–Lan–Zhang–Wang, CCS'20, semi-honest, regular
//! noise); the compression is dual LPN with the expand-convolute code ([`lpn`]), which needs
//! no length-`k` base vector, so one small iteration already pays for itself.
//!
//! ## Functionality
//! Random correlated OT over GF(2)^128 with a 127-bit `Δ` (lowest bit 0): the sender gets
//! `K_i`, the receiver gets uniform bits `b_i` and `M_i = K_i ⊕ b_i·Δ`, for a fixed uniform
//! `Δ` known to the sender only. Correlations are buffered and handed out in order
//! ([`CotSender::take`], [`CotReceiver::take`]), each with a global index both sides agree on
//! (hash tweaks).
//!
//! ## Flow
//! * **Bootstrap** (first refill): `SET.base_cots()` = 3,432 raw IKNP correlations (IKNP's
//!   `q_i = t_i ⊕ r_i·Δ` is exactly this correlation with the IKNP sender's `Δ`; both sides
//!   clear the lowest bit, so the generator's `Δ` is the IKNP `Δ` with that bit cleared).
//! * **Iteration** ([`lpn::SET`]: `t` trees of depth `h`): consumes `t·h` reserved
//!   correlations, one per tree level. For each tree the sender expands a fresh random root
//!   ([`ggm`]); for level `i` it sends `c_i^0 = K_i^0 ⊕ H(K'_i)` and
//!   `c_i^1 = K_i^1 ⊕ H(K'_i ⊕ Δ)` with the level's reserved COT `K'_i`, and once per tree
//!   `c = Δ ⊕ ⊕_j v_j`. The receiver's noise position in the tree is given by its reserved
//!   choice bits, `α_i = ¬b'_i` (uniform, so no choice has to be sent): it learns
//!   `K_i^{b'_i} = K_i^{¬α_i}`, rebuilds every leaf but `α`, and sets
//!   `w_α = c ⊕ ⊕_{j≠α} w_j = v_α ⊕ Δ`. So `w = v ⊕ e·Δ` with `e` one-hot per tree (regular
//!   noise). Both sides lay the leaves out interleaved and compress with the code `G`
//!   ([`lpn::Compressor`]): sender `y = G·v`, receiver `z = G·w` with `x = G·e` carried in
//!   the lowest bit, and `z = y ⊕ x·Δ`. The first `SET.base_cots()` outputs are reserved for
//!   the next iteration, the rest go to the buffer. One flight, sender → receiver, opened by
//!   an 8-byte tag.
//!
//! ## Bytes (sender → receiver unless said)
//! | step | bytes | COTs gained |
//! |---|---|---|
//! | bootstrap IKNP (receiver → sender) | 8 + 2048·⌈3,432/128⌉ = 55,304 | 3,432 (reserve) |
//! | iteration | 8 + 264·(32·13 + 16) = 114,056 | 1,077,912 |
//! So the first 1,077,912 COTs of a direction cost 169,360 bytes (0.157 B per COT) and every
//! further 1,077,912 cost 114,056 bytes (0.106 B, 0.85 bit, per COT). A refill runs the
//! iterations its need asks for and, once the direction is busy, up to [`MAX_AHEAD`] = 4
//! ([`refill_iterations`]), so a long inference pays the refill's flights a quarter as often.
//!
//! ## Compute (why IKNP is faster on an unshaped link)
//! Per iteration and party: the GGM trees cost 264 · 8,191 · 2 ≈ 4.3 M fixed-key AES calls
//! (4 per output COT; 11–20 ms on 2 threads here), the code's dual encoding of 2,162,688
//! blocks 115–190 ms on one thread (a random 7-sparse expander, memory-bound, and the
//! 24-wide accumulator twice). IKNP spends one PRG AES call per OT and party plus its share
//! of the 128×128 transposes. So IKNP produces COTs 2–3× faster on loopback, where bytes are
//! free; the silent generator wins once the link carries less than IKNP's 16 B per OT at
//! that rate (≈ 1–1.5 Gbit/s on this machine).
//!
//! ## Security (semi-honest)
//! Receiver's view: per level it sees `c^{¬b'}` masked by `H(K' ⊕ ¬b'·Δ)`-style pads it cannot
//! compute (tweakable correlation robustness of the fixed-key hash with unique tweaks and a
//! 127-bit uniform `Δ`, as in IKNP), and the sums it can open are those of a GGM tree
//! punctured at `α`, whose leaf `v_α` stays pseudorandom (GGM with the ideal-permutation PRG);
//! `c` is masked by `v_α`. So `Δ` and `v_α` stay hidden, and outputs `(x, z)` are those of the
//! ideal functionality. Sender's view: it receives nothing in an iteration (the noise
//! positions come from choice bits it never sees), so its view is its own randomness and the
//! IKNP bootstrap's (secure as IKNP). Pseudorandomness of the receiver's bits `x = G·e` is the
//! dual LPN assumption for the expand-convolute code with regular noise of weight 264
//! ([`lpn`]). The reserved outputs are only ever used as base COTs of the next iteration,
//! never handed out, so no correlation is used twice.

use rand::Rng;
use rayon::prelude::*;

use super::ggm::TreePrg;
use super::lpn::{Compressor, LpnParams, HIGH_BITS, SET};
use super::prg::{Crh, DOMAIN_GGM};
use super::session::OtSession;
use crate::error::{Error, Result};
use crate::net::Channel;

/// Tag opening every iteration's message: tree depth in the low byte, iteration number above.
fn iteration_tag(iter: u64, p: &LpnParams) -> u64 {
    iter << 8 | (p.h as u64)
}

/// Tweak of the hash of tree COT number `idx` (per direction, counted across iterations).
fn tree_tweak(idx: u64) -> u128 {
    DOMAIN_GGM | idx as u128
}

/// State shared by both ends: how many iterations ran and how many correlations were used.
#[derive(Debug, Default)]
struct Progress {
    iter: u64,
    tree_cots: u64,
    handed_out: u64,
}

/// Most iterations one refill runs ahead of its need (≈ 69 MiB of buffer per direction).
pub const MAX_AHEAD: u64 = 4;

/// Iterations one refill runs when `need` correlations are asked for, `have` are buffered and
/// `iter` iterations already ran: enough to cover the need, and once a direction is busy up
/// to [`MAX_AHEAD`] at a time (half the iterations so far), so a long run pays the refill's
/// two extra flights less often. Both ends compute the same plan from the same counters.
pub fn refill_iterations(iter: u64, have: usize, need: usize) -> u64 {
    if have >= need {
        return 0;
    }
    let cover = (need - have).div_ceil(SET.net_outputs()) as u64;
    cover.max((iter / 2).clamp(1, MAX_AHEAD))
}

/// Bytes of the refill [`refill_iterations`] plans (for cost tables and tests): the IKNP
/// bootstrap on a direction's first refill, then one tree message per iteration.
pub fn refill_bytes(iter: u64, have: usize, need: usize) -> u64 {
    let k = refill_iterations(iter, have, need);
    let bootstrap = if iter == 0 && k > 0 { 8 + 2048 * SET.base_cots().div_ceil(128) as u64 } else { 0 };
    bootstrap + k * (8 + SET.iteration_bytes())
}

/// Leaves laid out tree after tree (`t` runs of `2^h`) → interleaved (`leaf·t + tree`).
fn interleave(p: &LpnParams, by_tree: &[u128], out: &mut [u128]) {
    const LEAVES: usize = 64;
    let (t, bin) = (p.t, p.bin());
    out.par_chunks_mut(t * LEAVES).enumerate().for_each(|(c, rows)| {
        let l0 = c * LEAVES;
        for tree in 0..t {
            let src = &by_tree[tree * bin + l0..tree * bin + l0 + rows.len() / t];
            for (l, &x) in src.iter().enumerate() {
                rows[l * t + tree] = x;
            }
        }
    });
}

/// Copy the first `SET.base_cots()` entries of `fresh` into `reserve`, the rest after the
/// unread part of `buf` (the vectors keep their capacity from one iteration to the next).
fn split_reserve<T: Copy>(fresh: &[T], reserve: &mut Vec<T>, buf: &mut Vec<T>, pos: usize) {
    let (r, rest) = fresh.split_at(SET.base_cots());
    reserve.clear();
    reserve.extend_from_slice(r);
    buf.drain(..pos);
    buf.extend_from_slice(rest);
}

/// Working vectors of one iteration, kept between iterations (fresh ones would cost a page
/// fault per 4 KiB every time): leaves tree by tree, and the interleaved code input.
#[derive(Default)]
struct Scratch {
    by_tree: Vec<u128>,
    code: Vec<u128>,
}

impl Scratch {
    fn sized(&mut self, p: &LpnParams) -> (&mut [u128], &mut Vec<u128>) {
        self.by_tree.resize(p.code_len(), 0);
        self.code.resize(p.code_len(), 0);
        (&mut self.by_tree, &mut self.code)
    }
}

/// What both ends of a direction keep: the reserve for the next iteration's trees, the
/// buffer with its read position, the shared counters and the fixed primitives.
struct End {
    reserve: Vec<u128>,
    buf: Vec<u128>,
    pos: usize,
    progress: Progress,
    prg: TreePrg,
    crh: Crh,
    code: Compressor,
    scratch: Scratch,
}

impl End {
    fn new() -> End {
        End {
            reserve: Vec::new(),
            buf: Vec::new(),
            pos: 0,
            progress: Progress::default(),
            prg: TreePrg::default(),
            crh: Crh::default(),
            code: Compressor::new(&SET),
            scratch: Scratch::default(),
        }
    }

    fn available(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Iterations this end must run before `m` correlations are buffered.
    fn plan(&self, m: usize) -> u64 {
        refill_iterations(self.progress.iter, self.available(), m)
    }

    /// Mark the next `m` buffered correlations handed out; returns their positions in the
    /// buffer and the global index of the first.
    fn hand_out(&mut self, m: usize) -> Result<(std::ops::Range<usize>, u64)> {
        if self.available() < m {
            return Err(Error::Ot(format!("silent OT: {m} correlations requested, {} buffered", self.available())));
        }
        let first = self.progress.handed_out;
        self.progress.handed_out += m as u64;
        self.pos += m;
        Ok((self.pos - m..self.pos, first))
    }

    /// Check the reserve holds one iteration's tree COTs.
    fn check_reserve(&self, p: &LpnParams, bits: Option<usize>) -> Result<()> {
        if self.reserve.len() != p.base_cots() || bits.is_some_and(|b| b != p.base_cots()) {
            return Err(Error::Ot(format!("silent OT: {} reserved correlations, the iteration needs {}", self.reserve.len(), p.base_cots())));
        }
        Ok(())
    }

    /// Count one finished iteration.
    fn finish_iteration(&mut self, p: &LpnParams) {
        self.progress.tree_cots += p.base_cots() as u64;
        self.progress.iter += 1;
    }
}

/// The Δ-holding end of one direction.
pub struct CotSender {
    delta: u128,
    end: End,
}

/// The choice-bit end of one direction.
pub struct CotReceiver {
    reserve_bits: Vec<bool>,
    buf_bits: Vec<bool>,
    end: End,
}

impl CotSender {
    /// `iknp_delta` must be the IKNP sender's `Δ` of the session used for the bootstrap; the
    /// generator's `Δ` is it with the lowest bit cleared.
    pub fn new(iknp_delta: u128) -> CotSender {
        CotSender { delta: iknp_delta & HIGH_BITS, end: End::new() }
    }

    pub fn delta(&self) -> u128 {
        self.delta
    }

    pub fn available(&self) -> usize {
        self.end.available()
    }

    /// Iterations run so far.
    pub fn iterations(&self) -> u64 {
        self.end.progress.iter
    }

    /// Run the iterations [`refill_iterations`] plans, so at least `m` correlations are buffered.
    pub fn ensure(&mut self, ch: &mut dyn Channel, iknp: &mut OtSession, m: usize) -> Result<()> {
        for _ in 0..self.end.plan(m) {
            ch.set_phase("silent OT iteration (sender)");
            if self.end.progress.iter == 0 {
                let (rows, delta) = iknp.raw_cots_send(ch, SET.base_cots())?;
                if delta & HIGH_BITS != self.delta {
                    return Err(Error::Ot("silent OT: bootstrap Δ differs from the generator's".into()));
                }
                self.end.reserve = rows.into_iter().map(|k| k & HIGH_BITS).collect();
            }
            self.iterate(ch)?;
        }
        Ok(())
    }

    fn iterate(&mut self, ch: &mut dyn Channel) -> Result<()> {
        let p = SET;
        let (delta, end) = (self.delta, &mut self.end);
        end.check_reserve(&p, None)?;
        let (by_tree, v) = end.scratch.sized(&p);
        let roots: Vec<u128> = (0..p.t).map(|_| rand::rng().random()).collect();
        let (prg, crh, first, tree_cots) = (&end.prg, &end.crh, end.progress.tree_cots, &end.reserve);
        // Per tree: 2h masked level sums and the leaf-sum correction.
        let mut msg = vec![0u128; p.t * (2 * p.h + 1)];
        let pairs = by_tree.par_chunks_mut(p.bin()).zip(msg.par_chunks_mut(2 * p.h + 1)).enumerate();
        pairs.for_each_init(|| vec![0u128; p.bin()], |scratch, (tree, (leaves, out))| {
            let sums = prg.expand_full(roots[tree], p.h, leaves, scratch);
            let cots = &tree_cots[tree * p.h..(tree + 1) * p.h];
            let mut pads: Vec<u128> = cots.iter().flat_map(|&k| [k, k ^ delta]).collect();
            crh.hash_in_place(&mut pads, |j| tree_tweak(first + (tree * p.h + j / 2) as u64));
            for i in 0..p.h {
                out[2 * i] = sums[i][0] ^ pads[2 * i];
                out[2 * i + 1] = sums[i][1] ^ pads[2 * i + 1];
            }
            out[2 * p.h] = leaves.iter().fold(delta, |a, &x| a ^ x);
        });
        ch.send_u64(iteration_tag(end.progress.iter, &p))?;
        ch.send_bytes(&blocks_to_bytes(&msg))?;
        interleave(&p, by_tree, v);
        end.code.compress(v)?;
        v.par_iter_mut().for_each(|y| *y &= HIGH_BITS);
        split_reserve(v, &mut end.reserve, &mut end.buf, end.pos);
        end.pos = 0;
        end.finish_iteration(&p);
        Ok(())
    }

    /// Hand out the next `m` correlations `K_i` (call [`Self::ensure`] first) and the global
    /// index of the first.
    pub fn take(&mut self, m: usize) -> Result<(&[u128], u64)> {
        let (range, first) = self.end.hand_out(m)?;
        Ok((&self.end.buf[range], first))
    }
}

impl CotReceiver {
    pub fn new() -> CotReceiver {
        CotReceiver { reserve_bits: Vec::new(), buf_bits: Vec::new(), end: End::new() }
    }

    pub fn available(&self) -> usize {
        self.end.available()
    }

    pub fn iterations(&self) -> u64 {
        self.end.progress.iter
    }

    /// Run the iterations [`refill_iterations`] plans, so at least `m` correlations are buffered.
    pub fn ensure(&mut self, ch: &mut dyn Channel, iknp: &mut OtSession, m: usize) -> Result<()> {
        for _ in 0..self.end.plan(m) {
            ch.set_phase("silent OT iteration (receiver)");
            if self.end.progress.iter == 0 {
                let mut rng = rand::rng();
                let bits: Vec<bool> = (0..SET.base_cots()).map(|_| rng.random()).collect();
                self.end.reserve = iknp.raw_cots_recv(ch, &bits)?.into_iter().map(|m| m & HIGH_BITS).collect();
                self.reserve_bits = bits;
            }
            self.iterate(ch)?;
        }
        Ok(())
    }

    fn iterate(&mut self, ch: &mut dyn Channel) -> Result<()> {
        let p = SET;
        let end = &mut self.end;
        end.check_reserve(&p, Some(self.reserve_bits.len()))?;
        let tag = ch.recv_u64()?;
        let want = iteration_tag(end.progress.iter, &p);
        if tag != want {
            return Err(Error::protocol("silent OT iteration", format!("the peer opened iteration tag {tag:#x}, expected {want:#x} (the two ends are out of step)")));
        }
        let per_tree = 2 * p.h + 1;
        let mut raw = vec![0u8; p.t * per_tree * 16];
        ch.recv_bytes(&mut raw)?;
        let msg = bytes_to_blocks(&raw);
        drop(raw);
        let (by_tree, w) = end.scratch.sized(&p);
        let (prg, crh, first) = (&end.prg, &end.crh, end.progress.tree_cots);
        let (tree_cots, tree_bits) = (&end.reserve, &self.reserve_bits);
        let alphas: Vec<usize> = by_tree
            .par_chunks_mut(p.bin())
            .enumerate()
            .map_init(|| vec![0u128; p.bin()], |scratch, (tree, leaves)| {
                let cots = &tree_cots[tree * p.h..(tree + 1) * p.h];
                let bits = &tree_bits[tree * p.h..(tree + 1) * p.h];
                let mut pads = cots.to_vec();
                crh.hash_in_place(&mut pads, |i| tree_tweak(first + (tree * p.h + i) as u64));
                let m = &msg[tree * per_tree..(tree + 1) * per_tree];
                // α_i = ¬b'_i; the receiver learns the sum on side b'_i = ¬α_i.
                let off_path: Vec<u128> = (0..p.h).map(|i| m[2 * i + bits[i] as usize] ^ pads[i]).collect();
                let alpha = bits.iter().fold(0usize, |a, &b| a << 1 | (!b) as usize);
                prg.expand_punctured(alpha, p.h, &off_path, leaves, scratch);
                leaves[alpha] = leaves.iter().fold(m[2 * p.h], |a, &x| a ^ x);
                alpha
            })
            .collect();
        interleave(&p, by_tree, w);
        // The noise vector rides in the lowest bit (Δ's lowest bit is 0, so w's is free).
        w.par_iter_mut().for_each(|x| *x &= HIGH_BITS);
        for (tree, &alpha) in alphas.iter().enumerate() {
            w[p.position(tree, alpha)] |= 1;
        }
        end.code.compress(w)?;
        let bits: Vec<bool> = w.par_iter().map(|&z| z & 1 == 1).collect();
        w.par_iter_mut().for_each(|z| *z &= HIGH_BITS);
        split_reserve(w, &mut end.reserve, &mut end.buf, end.pos);
        split_reserve(&bits, &mut self.reserve_bits, &mut self.buf_bits, end.pos);
        end.pos = 0;
        end.finish_iteration(&p);
        Ok(())
    }

    /// Hand out the next `m` correlations `(b_i, M_i)` and the global index of the first.
    pub fn take(&mut self, m: usize) -> Result<(&[bool], &[u128], u64)> {
        let (range, first) = self.end.hand_out(m)?;
        Ok((&self.buf_bits[range.clone()], &self.end.buf[range], first))
    }
}

impl Default for CotReceiver {
    fn default() -> Self {
        CotReceiver::new()
    }
}

pub fn blocks_to_bytes(blocks: &[u128]) -> Vec<u8> {
    blocks.iter().flat_map(|b| b.to_le_bytes()).collect()
}

pub fn bytes_to_blocks(bytes: &[u8]) -> Vec<u128> {
    bytes
        .chunks_exact(16)
        .map(|c| {
            let mut w = [0u8; 16];
            w.copy_from_slice(c);
            u128::from_le_bytes(w)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::run_pair;
    use crate::share::Role;

    /// Both ends of one direction (server holds Δ) after refilling to `m`; returns the sender's
    /// `(Δ, K)` and the receiver's `(b, M)` for the first `m` correlations, and the stats.
    fn generate(m: usize) -> ((u128, Vec<u128>, u64), (Vec<bool>, Vec<u128>, u64), u64) {
        let out = run_pair(
            |ch| {
                let mut iknp = OtSession::setup_iknp(ch, Role::Server)?;
                let mut s = CotSender::new(iknp.sender_delta());
                let before = ch.stats();
                s.ensure(ch, &mut iknp, m)?;
                let delta = s.delta();
                let (k, first) = s.take(m)?;
                Ok((delta, k.to_vec(), first, ch.stats().since(&before)))
            },
            |ch| {
                let mut iknp = OtSession::setup_iknp(ch, Role::Client)?;
                let mut r = CotReceiver::new();
                r.ensure(ch, &mut iknp, m)?;
                let (b, mm, first) = r.take(m)?;
                Ok((b.to_vec(), mm.to_vec(), first))
            },
        )
        .unwrap();
        let (delta, k, f, stats) = out.server;
        ((delta, k, f), out.client, stats.total_bytes())
    }

    #[test]
    fn one_iteration_yields_correlated_ots_at_the_documented_cost() {
        let m = SET.net_outputs();
        let ((delta, k, f0), (b, mm, f1), bytes) = generate(m);
        assert_eq!((f0, f1), (0, 0));
        assert_eq!(delta & 1, 0);
        for i in 0..m {
            assert_eq!(mm[i], k[i] ^ if b[i] { delta } else { 0 }, "COT {i}");
        }
        let ones = b.iter().filter(|&&x| x).count();
        assert!((ones as f64 / m as f64 - 0.5).abs() < 0.01, "choice bits biased: {ones}/{m}");
        assert_eq!(bytes, refill_bytes(0, 0, m));
        assert_eq!(refill_bytes(0, 0, m), 55_304 + 114_056);
        assert_eq!(refill_bytes(0, 0, m + 1), 55_304 + 2 * 114_056);
    }

    #[test]
    fn later_iterations_run_on_the_reserve_and_stay_correlated() {
        let m = 2 * SET.net_outputs() + 1;
        let ((delta, k, _), (b, mm, _), bytes) = generate(m);
        assert_eq!(bytes, refill_bytes(0, 0, m));
        let bad = (0..k.len()).filter(|&i| mm[i] != k[i] ^ if b[i] { delta } else { 0 }).count();
        assert_eq!(bad, 0);
    }

    #[test]
    fn refills_run_ahead_once_a_direction_is_busy() {
        let n = SET.net_outputs();
        assert_eq!(refill_iterations(0, 0, 1), 1);
        assert_eq!(refill_iterations(0, 0, n + 1), 2);
        assert_eq!(refill_iterations(3, 5, 6), 1);
        assert_eq!(refill_iterations(4, 0, 1), 2);
        assert_eq!(refill_iterations(8, 0, 1), MAX_AHEAD);
        assert_eq!(refill_iterations(100, 0, 10 * n), 10);
        assert_eq!(refill_iterations(100, 7, 7), 0);
        assert_eq!(refill_bytes(4, 0, 1), 2 * 114_056);
    }

    #[test]
    fn both_ends_follow_the_same_run_ahead_plan() {
        // Five refills of one correlation, each after draining the buffer: 1, 1, 1, 1 and then
        // 2 iterations (the fifth runs ahead); the last batch still correlates.
        let out = run_pair(
            |ch| {
                let mut iknp = OtSession::setup_iknp(ch, Role::Server)?;
                let mut s = CotSender::new(iknp.sender_delta());
                let mut last = Vec::new();
                for _ in 0..5 {
                    s.ensure(ch, &mut iknp, 1)?;
                    last = s.take(s.available())?.0.to_vec();
                }
                Ok((s.iterations(), s.delta(), last))
            },
            |ch| {
                let mut iknp = OtSession::setup_iknp(ch, Role::Client)?;
                let mut r = CotReceiver::new();
                let mut last = (Vec::new(), Vec::new());
                for _ in 0..5 {
                    r.ensure(ch, &mut iknp, 1)?;
                    let (b, m, _) = r.take(r.available())?;
                    last = (b.to_vec(), m.to_vec());
                }
                Ok((r.iterations(), last))
            },
        )
        .unwrap();
        let (s_iter, delta, k) = out.server;
        let (r_iter, (b, m)) = out.client;
        assert_eq!((s_iter, r_iter), (6, 6));
        assert_eq!(k.len(), 2 * SET.net_outputs());
        assert!((0..k.len()).all(|i| m[i] == k[i] ^ if b[i] { delta } else { 0 }));
    }

    #[test]
    fn take_beyond_the_buffer_is_an_error() {
        let mut s = CotSender::new(1);
        assert!(s.take(1).is_err());
        let mut r = CotReceiver::new();
        assert!(r.take(1).is_err());
    }
}
