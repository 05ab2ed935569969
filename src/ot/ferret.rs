//! The silent correlated-OT generator (Ferret, Yang–Weng–Lan–Zhang–Wang, CCS'20, semi-honest
//! variant with regular noise), one direction: [`CotSender`] holds the global `Δ`,
//! [`CotReceiver`] the choice bits.
//!
//! ## Functionality
//! Random correlated OT over GF(2)^128: the sender gets uniform `K_i`, the receiver gets
//! uniform bits `b_i` and `M_i = K_i ⊕ b_i·Δ`, for a fixed uniform `Δ` known to the sender
//! only. Correlations are buffered and handed out in order ([`CotSender::take`],
//! [`CotReceiver::take`]), each with a global index both sides agree on (hash tweaks).
//!
//! ## Flow
//! * **Bootstrap** (first refill): `SETUP_SET.base_cots()` = 47,709 raw IKNP correlations
//!   (IKNP's `q_i = t_i ⊕ r_i·Δ` is exactly this correlation with the IKNP sender's `Δ`),
//!   then one iteration of [`lpn::SETUP_SET`].
//! * **Iteration** with set `P = (n, k, t, h)`: consumes `P.base_cots()` reserved correlations:
//!   `k` for the LPN code and `h` per tree. For each of the `t` bins the sender expands a GGM
//!   tree from a fresh random root ([`ggm`]); for level `i` it sends
//!   `c_i^0 = K_i^0 ⊕ H(K'_i)` and `c_i^1 = K_i^1 ⊕ H(K'_i ⊕ Δ)` with the level's reserved COT
//!   `K'_i`, and once per tree `c = Δ ⊕ ⊕_j v_j`. The receiver's noise position in the bin is
//!   given by its reserved choice bits, `α_i = ¬b'_i` (uniform, so no choice has to be sent):
//!   it learns `K_i^{b'_i} = K_i^{¬α_i}`, rebuilds every leaf but `α`, and sets
//!   `w_α = c ⊕ ⊕_{j≠α} w_j = v_α ⊕ Δ`. So `w = v ⊕ e·Δ` with `e` one-hot per bin (regular
//!   noise). Both sides then apply the LPN code `A` ([`lpn::encode`]): sender `y = v ⊕ K·A`,
//!   receiver `z = w ⊕ M·A`, bits `x = e ⊕ b·A`, and `z = y ⊕ x·Δ`. The first
//!   `MAIN_SET.base_cots()` outputs are reserved for the next iteration (always [`lpn::MAIN_SET`]),
//!   the rest go to the buffer. One flight, sender → receiver, opened by an 8-byte tag.
//!
//! ## Bytes (sender → receiver unless said)
//! | step | bytes | COTs gained |
//! |---|---|---|
//! | bootstrap IKNP (receiver → sender) | 8 + 2048·⌈47,709/128⌉ = 763,912 | 47,709 |
//! | setup iteration | 8 + 1,269·(32·9 + 16) = 385,784 | 649,728 − 606,659 reserved = 43,069 |
//! | main iteration | 8 + 1,295·(32·13 + 16) = 559,448 | 10,001,981 |
//! So the first 43,069 COTs of a direction cost 1.15 MB, and every further 10,001,981 cost
//! 559,448 bytes (0.056 B, 0.45 bit, per COT).
//!
//! ## Security (semi-honest)
//! Receiver's view: per level it sees `c^{¬b'}` masked by `H(K' ⊕ ¬b'·Δ)`-style pads it cannot
//! compute (tweakable correlation robustness of the fixed-key hash with unique tweaks, as in
//! IKNP), and the sums it can open are those of a GGM tree punctured at `α`, whose leaf `v_α`
//! stays pseudorandom (GGM with the ideal-permutation PRG); `c` is masked by `v_α`. So `Δ`
//! and `v_α` stay hidden, and outputs `(x, z)` are those of the ideal functionality. Sender's
//! view: it receives nothing in an iteration (the noise positions come from choice bits it
//! never sees), so its view is its own randomness and the IKNP bootstrap's (secure as IKNP).
//! Pseudorandomness of the receiver's bits `x = e ⊕ b·A` (and hence of what the sender can
//! infer about them: nothing) is the regular-noise primal LPN assumption with Ferret's
//! 128-bit parameter sets ([`lpn`]). The reserved outputs are only ever used as base COTs of
//! the next iteration, never handed out, so no correlation is used twice.

use rand::Rng;
use rayon::prelude::*;

use super::ggm::TreePrg;
use super::lpn::{self, LpnParams, MAIN_SET, SETUP_SET};
use super::prg::{Crh, DOMAIN_GGM};
use super::session::OtSession;
use crate::error::{Error, Result};
use crate::net::Channel;

/// Tag opening every iteration's message: set id in the low byte, iteration number above.
fn iteration_tag(iter: u64, p: &LpnParams) -> u64 {
    iter << 8 | (p.h as u64)
}

/// Tweak of the hash of tree COT number `idx` (per direction, counted across iterations).
fn tree_tweak(idx: u64) -> u128 {
    DOMAIN_GGM | idx as u128
}

/// State shared by both ends: which set runs next and how many correlations were used.
#[derive(Debug, Default)]
struct Progress {
    iter: u64,
    tree_cots: u64,
    handed_out: u64,
}

impl Progress {
    fn next_set(&self) -> LpnParams {
        if self.iter == 0 {
            SETUP_SET
        } else {
            MAIN_SET
        }
    }
}

/// Bytes one refill of at least `need` more correlations costs, given `have` already buffered
/// and `iter` iterations already run (for cost tables and tests).
pub fn refill_bytes(mut iter: u64, mut have: usize, need: usize) -> u64 {
    let mut bytes = 0;
    while have < need {
        if iter == 0 {
            bytes += 8 + 2048 * SETUP_SET.base_cots().div_ceil(128) as u64;
        }
        let p = if iter == 0 { SETUP_SET } else { MAIN_SET };
        bytes += 8 + p.iteration_bytes();
        have += p.n - MAIN_SET.base_cots();
        iter += 1;
    }
    bytes
}

/// The Δ-holding end of one direction.
pub struct CotSender {
    delta: u128,
    reserve: Vec<u128>,
    buf: Vec<u128>,
    pos: usize,
    progress: Progress,
    prg: TreePrg,
    crh: Crh,
}

/// The choice-bit end of one direction.
pub struct CotReceiver {
    reserve: Vec<u128>,
    reserve_bits: Vec<bool>,
    buf: Vec<u128>,
    buf_bits: Vec<bool>,
    pos: usize,
    progress: Progress,
    prg: TreePrg,
    crh: Crh,
}

impl CotSender {
    /// `delta` must be the IKNP sender's `Δ` of the session used for the bootstrap.
    pub fn new(delta: u128) -> CotSender {
        CotSender { delta, reserve: Vec::new(), buf: Vec::new(), pos: 0, progress: Progress::default(), prg: TreePrg::default(), crh: Crh::default() }
    }

    pub fn delta(&self) -> u128 {
        self.delta
    }

    pub fn available(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Iterations run so far.
    pub fn iterations(&self) -> u64 {
        self.progress.iter
    }

    /// Run iterations until at least `m` correlations are buffered.
    pub fn ensure(&mut self, ch: &mut dyn Channel, iknp: &mut OtSession, m: usize) -> Result<()> {
        while self.available() < m {
            ch.set_phase("silent OT iteration (sender)");
            if self.progress.iter == 0 {
                let (rows, delta) = iknp.raw_cots_send(ch, SETUP_SET.base_cots())?;
                if delta != self.delta {
                    return Err(Error::Ot("silent OT: bootstrap Δ differs from the generator's".into()));
                }
                self.reserve = rows;
            }
            self.iterate(ch)?;
        }
        Ok(())
    }

    fn iterate(&mut self, ch: &mut dyn Channel) -> Result<()> {
        let p = self.progress.next_set();
        if self.reserve.len() != p.base_cots() {
            return Err(Error::Ot(format!("silent OT: {} reserved correlations, the iteration needs {}", self.reserve.len(), p.base_cots())));
        }
        let bin = p.bin();
        let mut v = vec![0u128; p.n];
        let roots: Vec<u128> = (0..p.t).map(|_| rand::rng().random()).collect();
        let (base, tree_cots) = self.reserve.split_at(p.k);
        let (prg, crh, delta, first) = (&self.prg, &self.crh, self.delta, self.progress.tree_cots);
        // Per tree: 2h masked level sums and the leaf-sum correction.
        let mut msg = vec![0u128; p.t * (2 * p.h + 1)];
        v.par_chunks_mut(bin).zip(msg.par_chunks_mut(2 * p.h + 1)).enumerate().for_each(|(tree, (leaves, out))| {
            let sums = prg.expand_full(roots[tree], p.h, leaves);
            let cots = &tree_cots[tree * p.h..(tree + 1) * p.h];
            let mut pads: Vec<u128> = cots.iter().flat_map(|&k| [k, k ^ delta]).collect();
            crh.hash_in_place(&mut pads, |j| tree_tweak(first + (tree * p.h + j / 2) as u64));
            for i in 0..p.h {
                out[2 * i] = sums[i][0] ^ pads[2 * i];
                out[2 * i + 1] = sums[i][1] ^ pads[2 * i + 1];
            }
            out[2 * p.h] = leaves.iter().fold(delta, |a, &x| a ^ x);
        });
        ch.send_u64(iteration_tag(self.progress.iter, &p))?;
        ch.send_bytes(&blocks_to_bytes(&msg))?;
        lpn::encode(self.progress.iter, &p, base, None, &mut v, None);
        self.progress.tree_cots += (p.t * p.h) as u64;
        self.progress.iter += 1;
        let reserve: Vec<u128> = v.drain(..MAIN_SET.base_cots()).collect();
        self.reserve = reserve;
        self.buf.drain(..self.pos);
        self.pos = 0;
        self.buf.append(&mut v);
        Ok(())
    }

    /// Hand out the next `m` correlations `K_i` (call [`Self::ensure`] first) and the global
    /// index of the first.
    pub fn take(&mut self, m: usize) -> Result<(&[u128], u64)> {
        if self.available() < m {
            return Err(Error::Ot(format!("silent OT: {m} correlations requested, {} buffered", self.available())));
        }
        let first = self.progress.handed_out;
        self.progress.handed_out += m as u64;
        self.pos += m;
        Ok((&self.buf[self.pos - m..self.pos], first))
    }
}

impl CotReceiver {
    pub fn new() -> CotReceiver {
        CotReceiver {
            reserve: Vec::new(),
            reserve_bits: Vec::new(),
            buf: Vec::new(),
            buf_bits: Vec::new(),
            pos: 0,
            progress: Progress::default(),
            prg: TreePrg::default(),
            crh: Crh::default(),
        }
    }

    pub fn available(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn iterations(&self) -> u64 {
        self.progress.iter
    }

    /// Run iterations until at least `m` correlations are buffered.
    pub fn ensure(&mut self, ch: &mut dyn Channel, iknp: &mut OtSession, m: usize) -> Result<()> {
        while self.available() < m {
            ch.set_phase("silent OT iteration (receiver)");
            if self.progress.iter == 0 {
                let mut rng = rand::rng();
                let bits: Vec<bool> = (0..SETUP_SET.base_cots()).map(|_| rng.random()).collect();
                self.reserve = iknp.raw_cots_recv(ch, &bits)?;
                self.reserve_bits = bits;
            }
            self.iterate(ch)?;
        }
        Ok(())
    }

    fn iterate(&mut self, ch: &mut dyn Channel) -> Result<()> {
        let p = self.progress.next_set();
        if self.reserve.len() != p.base_cots() || self.reserve_bits.len() != p.base_cots() {
            return Err(Error::Ot(format!("silent OT: {} reserved correlations, the iteration needs {}", self.reserve.len(), p.base_cots())));
        }
        let tag = ch.recv_u64()?;
        let want = iteration_tag(self.progress.iter, &p);
        if tag != want {
            return Err(Error::protocol("silent OT iteration", format!("the peer opened iteration tag {tag:#x}, expected {want:#x} (the two ends are out of step)")));
        }
        let per_tree = 2 * p.h + 1;
        let mut raw = vec![0u8; p.t * per_tree * 16];
        ch.recv_bytes(&mut raw)?;
        let msg = bytes_to_blocks(&raw);
        let bin = p.bin();
        let mut w = vec![0u128; p.n];
        let mut e = vec![false; p.n];
        let (base, tree_cots) = self.reserve.split_at(p.k);
        let (base_bits, tree_bits) = self.reserve_bits.split_at(p.k);
        let (prg, crh, first) = (&self.prg, &self.crh, self.progress.tree_cots);
        w.par_chunks_mut(bin).zip(e.par_chunks_mut(bin)).enumerate().for_each(|(tree, (leaves, noise))| {
            let cots = &tree_cots[tree * p.h..(tree + 1) * p.h];
            let bits = &tree_bits[tree * p.h..(tree + 1) * p.h];
            let mut pads = cots.to_vec();
            crh.hash_in_place(&mut pads, |i| tree_tweak(first + (tree * p.h + i) as u64));
            let m = &msg[tree * per_tree..(tree + 1) * per_tree];
            // α_i = ¬b'_i; the receiver learns the sum on side b'_i = ¬α_i.
            let off_path: Vec<u128> = (0..p.h).map(|i| m[2 * i + bits[i] as usize] ^ pads[i]).collect();
            let alpha = bits.iter().fold(0usize, |a, &b| a << 1 | (!b) as usize);
            prg.expand_punctured(alpha, p.h, &off_path, leaves);
            leaves[alpha] = leaves.iter().fold(m[2 * p.h], |a, &x| a ^ x);
            noise[alpha] = true;
        });
        lpn::encode(self.progress.iter, &p, base, Some(base_bits), &mut w, Some(&mut e));
        self.progress.tree_cots += (p.t * p.h) as u64;
        self.progress.iter += 1;
        let keep = MAIN_SET.base_cots();
        self.reserve = w.drain(..keep).collect();
        self.reserve_bits = e.drain(..keep).collect();
        self.buf.drain(..self.pos);
        self.buf_bits.drain(..self.pos);
        self.pos = 0;
        self.buf.append(&mut w);
        self.buf_bits.append(&mut e);
        Ok(())
    }

    /// Hand out the next `m` correlations `(b_i, M_i)` and the global index of the first.
    pub fn take(&mut self, m: usize) -> Result<(&[bool], &[u128], u64)> {
        if self.available() < m {
            return Err(Error::Ot(format!("silent OT: {m} correlations requested, {} buffered", self.available())));
        }
        let first = self.progress.handed_out;
        self.progress.handed_out += m as u64;
        self.pos += m;
        Ok((&self.buf_bits[self.pos - m..self.pos], &self.buf[self.pos - m..self.pos], first))
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
                let mut iknp = OtSession::setup(ch, Role::Server)?;
                let mut s = CotSender::new(iknp.sender_delta());
                let before = ch.stats();
                s.ensure(ch, &mut iknp, m)?;
                let delta = s.delta();
                let (k, first) = s.take(m)?;
                Ok((delta, k.to_vec(), first, ch.stats().since(&before)))
            },
            |ch| {
                let mut iknp = OtSession::setup(ch, Role::Client)?;
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
    fn setup_iteration_yields_correlated_ots_at_the_documented_cost() {
        let m = SETUP_SET.n - MAIN_SET.base_cots();
        let ((delta, k, f0), (b, mm, f1), bytes) = generate(m);
        assert_eq!((f0, f1), (0, 0));
        for i in 0..m {
            assert_eq!(mm[i], k[i] ^ if b[i] { delta } else { 0 }, "COT {i}");
        }
        let ones = b.iter().filter(|&&x| x).count();
        assert!((ones as f64 / m as f64 - 0.5).abs() < 0.01, "choice bits biased: {ones}/{m}");
        assert_eq!(bytes, refill_bytes(0, 0, m));
        assert_eq!(refill_bytes(0, 0, m), 763_912 + 385_784);
        assert_eq!(refill_bytes(0, 0, m + 1), 763_912 + 385_784 + 559_448);
    }

    #[test]
    fn main_iteration_yields_correlated_ots() {
        let m = SETUP_SET.n - MAIN_SET.base_cots() + 1;
        let ((delta, k, _), (b, mm, _), bytes) = generate(m + 100_000);
        assert_eq!(bytes, refill_bytes(0, 0, m));
        let bad = (0..k.len()).filter(|&i| mm[i] != k[i] ^ if b[i] { delta } else { 0 }).count();
        assert_eq!(bad, 0);
    }

    #[test]
    fn take_beyond_the_buffer_is_an_error() {
        let mut s = CotSender::new(1);
        assert!(s.take(1).is_err());
        let mut r = CotReceiver::new();
        assert!(r.take(1).is_err());
    }
}
