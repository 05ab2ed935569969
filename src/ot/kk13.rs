//! KK13 1-out-of-N OT extension (Kolesnikov–Kumaresan, CRYPTO 2013) with the 256-bit
//! Walsh–Hadamard code, semi-honest, as pure state machines: no IO here, the session moves
//! the bytes (see [`super::session`]).
//!
//! **Functionality.** A batch of `m` random 1-out-of-N OTs (2 ≤ N ≤ 256): for row `i` the
//! sender obtains N pads `P_i(v)`, `v ∈ [N]`, and the receiver with choice `r_i ∈ [N]` obtains
//! `P_i(r_i)` and nothing about the others. The session masks the sender's N messages with them.
//!
//! **Domain and error.** 2 ≤ N ≤ 256 (the session uses KK13 from N = 5), every choice below
//! N, messages of at most 64 bits (masked with the low bits of the pads); exact: the receiver
//! obtains the chosen message bit for bit.
//!
//! **Code.** `C(v)_j = parity(v ∧ j)` for `j ∈ [256]`, the first-order Walsh–Hadamard code of
//! dimension 8: any two distinct codewords differ in exactly 128 of the 256 positions, so
//! the code has the distance κ = 128 that KK13 asks for.
//!
//! **Setup** (once per direction, driven by the session): 256 random 1-of-2 OTs from the
//! IKNP extension running the other way. The KK13 sender is their receiver, with a uniform
//! choice vector `s ∈ {0,1}^256`, and holds `k_j^{s_j}`; the KK13 receiver holds both keys.
//!
//! **One batch** (one flight receiver → sender, 32 bytes per OT, no padding):
//! * receiver: PRG columns `t_j = G(k_j^0)`, `g_j = G(k_j^1)` (AES-128 in counter mode,
//!   128-row blocks), transposed to rows; it sends the rows `u_i = t_i ⊕ g_i ⊕ C(r_i)`;
//! * sender: its PRG column j is `t_j` or `g_j` by `s_j`, so after the transpose
//!   `q_i = G(k^s)_i ⊕ (u_i ∧ s) = t_i ⊕ (C(r_i) ∧ s)`;
//! * `q_i ⊕ (C(v) ∧ s) = t_i ⊕ ((C(r_i) ⊕ C(v)) ∧ s)`: equal to `t_i` for `v = r_i`, and
//!   offset by 128 bits of `s` for every other `v`. The pads are
//!   `P_i(v) = H2(q_i ⊕ (C(v) ∧ s), i, v)` and the receiver's `H2(t_i, i, r_i)`.
//!
//! **Hash of a 256-bit row.** `H2((a, b), i, v) = H(H(a, τ_in) ⊕ b, τ_out)`, with `H` the
//! fixed-key TMMO hash of [`super::prg`] and two tweaks that each hold a domain tag, the
//! global OT index and `v`, so no tweak repeats across rows, values or batches.
//!
//! **Security (semi-honest).** *Receiver's choices:* the sender sees `u_i = t_i ⊕ g_i ⊕ C(r_i)`
//! where, in every column j, it lacks the seed `k_j^{1−s_j}` of one of `t_j`, `g_j`: each
//! column is masked by AES-CTR output it cannot compute, as in IKNP. *Sender's messages:* the
//! receiver knows `t_i = (a, b)`; for `v ≠ r_i` the pad input is `(a ⊕ δ_a, b ⊕ δ_b)` with
//! `(δ_a, δ_b) = D ∧ s`, `D = C(r_i) ⊕ C(v)` of weight 128, so `(δ_a, δ_b)` carries 128
//! uniform bits of `s`, which the base OTs hide from the receiver. With π (fixed-key AES)
//! modelled as an ideal permutation, the outer TMMO output `π(π(z) ⊕ τ_out) ⊕ π(z)` is uniform
//! unless the adversary evaluates π at `z = H(a ⊕ δ_a, τ_in) ⊕ b ⊕ δ_b` (or at `π(z) ⊕ τ_out`).
//! If it never evaluated π at `a ⊕ δ_a`, `z` is uniform to it; if it did, it guessed `δ_a`,
//! and hitting `z` as well means guessing `δ_b`: any one pair of evaluations succeeds with
//! probability 2^-128 over `s`. A union bound over pairs of the adversary's `q` evaluations
//! and the protocol's `Q` pads gives an advantage of order `(q + Q)²/2^128`, the order of the
//! TMMO hash's own bound (Guo–Katz–Wang–Yu, S&P 2020). This is the C-correlation robustness
//! KK13 assumes of its hash, argued here for `H2`. The unchosen masked messages are thus
//! one-time-padded.

use aes::Aes128;
use rayon::prelude::*;

use super::iknp::{blocks_for, expand_columns, KAPPA};
use super::prg::{cipher_from_seed, Crh, DOMAIN_KK13_INNER, DOMAIN_KK13_OUTER};
use super::transpose::columns_to_rows;
use crate::error::{Error, Result};

/// Code length = number of base OTs per direction.
pub const CODE_BITS: usize = 256;
/// Bytes the receiver sends per OT (one 256-bit row).
pub const ROW_BYTES: usize = CODE_BITS / 8;
/// Largest N (the code has 2^8 codewords).
pub const MAX_N: usize = 256;

/// A 256-bit row as (low 128 bits, high 128 bits).
pub type Row = [u128; 2];

/// Whether a 1-of-N OT runs on KK13: its 32 bytes per OT beat the ⌈log2 N⌉ IKNP OTs (16 bytes
/// each) of the log construction from N = 5 (⌈log2 N⌉ ≥ 3); at N ≤ 4 they cost the same or less.
pub fn runs_on_kk13(n: usize) -> bool {
    (5..=MAX_N).contains(&n)
}

/// The Walsh–Hadamard codeword of `v`: bit j is the parity of `v ∧ j`.
pub fn codeword(v: u8) -> Row {
    let half = |offset: u32| (0..128u32).fold(0u128, |w, j| w | (((v as u32 & (j + offset)).count_ones() & 1) as u128) << j);
    [half(0), half(128)]
}

fn xor(a: Row, b: Row) -> Row {
    [a[0] ^ b[0], a[1] ^ b[1]]
}

fn and(a: Row, b: Row) -> Row {
    [a[0] & b[0], a[1] & b[1]]
}

/// Transpose 256 PRG columns of `blocks` words into `128·blocks` rows of 256 bits.
fn columns_to_wide_rows(cols: &[u128], blocks: usize) -> Vec<Row> {
    let (lo, hi) = cols.split_at(KAPPA * blocks);
    let (lo, hi) = rayon::join(|| columns_to_rows(lo, blocks), || columns_to_rows(hi, blocks));
    lo.into_iter().zip(hi).map(|(a, b)| [a, b]).collect()
}

fn row_to_bytes(r: Row, out: &mut [u8]) {
    out[..16].copy_from_slice(&r[0].to_le_bytes());
    out[16..32].copy_from_slice(&r[1].to_le_bytes());
}

fn row_from_bytes(b: &[u8]) -> Row {
    let word = |s: &[u8]| {
        let mut w = [0u8; 16];
        w.copy_from_slice(s);
        u128::from_le_bytes(w)
    };
    [word(&b[..16]), word(&b[16..32])]
}

/// Tweak of a pad: domain, global OT index, value.
fn tweak(domain: u128, ot: u64, v: usize) -> u128 {
    domain | (ot as u128) << 9 | v as u128
}

/// `H2(rows[k], ot(k), v(k))` for every row (see the module header).
pub fn hash_rows(crh: &Crh, rows: &[Row], ot: impl Fn(usize) -> u64 + Sync, v: impl Fn(usize) -> usize + Sync) -> Vec<u128> {
    const TASK: usize = 1 << 12;
    let mut out = vec![0u128; rows.len()];
    out.par_chunks_mut(TASK).zip(rows.par_chunks(TASK)).enumerate().for_each(|(c, (o, r))| {
        let base = c * TASK;
        for (x, row) in o.iter_mut().zip(r) {
            *x = row[0];
        }
        crh.hash_in_place(o, |k| tweak(DOMAIN_KK13_INNER, ot(base + k), v(base + k)));
        for (x, row) in o.iter_mut().zip(r) {
            *x ^= row[1];
        }
        crh.hash_in_place(o, |k| tweak(DOMAIN_KK13_OUTER, ot(base + k), v(base + k)));
    });
    out
}

/// The KK13 receiver's state (both seeds of every base OT).
pub struct KkReceiver {
    prgs0: Vec<Aes128>,
    prgs1: Vec<Aes128>,
    next_block: u64,
}

/// One batch's receiver-side result.
pub struct KkReceiverBatch {
    /// The message for the sender: `m` rows of 32 bytes.
    pub u_bytes: Vec<u8>,
    /// The rows `t_i` (`m` of them).
    pub t_rows: Vec<Row>,
    /// Global index of the batch's first OT (hash tweak base).
    pub first: u64,
}

impl KkReceiver {
    pub fn new(seed_pairs: &[[u128; 2]]) -> Result<KkReceiver> {
        if seed_pairs.len() != CODE_BITS {
            return Err(Error::Ot(format!("KK13 needs {CODE_BITS} base OTs, got {}", seed_pairs.len())));
        }
        Ok(KkReceiver {
            prgs0: seed_pairs.iter().map(|p| cipher_from_seed(p[0])).collect(),
            prgs1: seed_pairs.iter().map(|p| cipher_from_seed(p[1])).collect(),
            next_block: 0,
        })
    }

    /// Rows for the choices (each below [`MAX_N`]).
    pub fn extend(&mut self, choices: &[u8]) -> KkReceiverBatch {
        let m = choices.len();
        let blocks = blocks_for(m);
        let first_block = self.next_block;
        self.next_block += blocks as u64;
        let (t_cols, g_cols) = rayon::join(|| expand_columns(&self.prgs0, first_block, blocks), || expand_columns(&self.prgs1, first_block, blocks));
        let (mut t_rows, g_rows) = rayon::join(|| columns_to_wide_rows(&t_cols, blocks), || columns_to_wide_rows(&g_cols, blocks));
        t_rows.truncate(m);
        let words: Vec<Row> = (0..=255u8).map(codeword).collect();
        let mut u_bytes = vec![0u8; m * ROW_BYTES];
        u_bytes.par_chunks_mut(ROW_BYTES).enumerate().for_each(|(i, out)| {
            row_to_bytes(xor(xor(t_rows[i], g_rows[i]), words[choices[i] as usize]), out);
        });
        KkReceiverBatch { u_bytes, t_rows, first: first_block * KAPPA as u64 }
    }
}

/// The KK13 sender's state: the secret `s` and the seeds it chose with it.
pub struct KkSender {
    s: Row,
    prgs: Vec<Aes128>,
    next_block: u64,
}

impl KkSender {
    /// Bit j of `s` (j < 128 in `s[0]`, else in `s[1]`) is base-OT choice j, `seeds[j]` its key.
    pub fn new(s: Row, seeds: &[u128]) -> Result<KkSender> {
        if seeds.len() != CODE_BITS {
            return Err(Error::Ot(format!("KK13 needs {CODE_BITS} base OTs, got {}", seeds.len())));
        }
        Ok(KkSender { s, prgs: seeds.iter().map(|&k| cipher_from_seed(k)).collect(), next_block: 0 })
    }

    /// From the receiver's rows for `m` OTs, the rows `q_i` and the first OT index.
    pub fn extend(&mut self, u_bytes: &[u8], m: usize) -> Result<(Vec<Row>, u64)> {
        if u_bytes.len() != m * ROW_BYTES {
            return Err(Error::protocol("KK13 OT extension", format!("{} bytes of rows for {m} OTs", u_bytes.len())));
        }
        let blocks = blocks_for(m);
        let first_block = self.next_block;
        self.next_block += blocks as u64;
        let mut q = columns_to_wide_rows(&expand_columns(&self.prgs, first_block, blocks), blocks);
        q.truncate(m);
        let s = self.s;
        q.par_iter_mut().zip(u_bytes.par_chunks(ROW_BYTES)).for_each(|(q, u)| *q = xor(*q, and(row_from_bytes(u), s)));
        Ok((q, first_block * KAPPA as u64))
    }

    /// `C(v) ∧ s` for v < n: the offsets of the sender's N pad inputs.
    pub fn offsets(&self, n: usize) -> Vec<Row> {
        (0..n).map(|v| and(codeword(v as u8), self.s)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn codewords_are_pairwise_128_apart() {
        let words: Vec<Row> = (0..=255u8).map(codeword).collect();
        for a in 0..256 {
            for b in a + 1..256 {
                let d = xor(words[a], words[b]);
                assert_eq!(d[0].count_ones() + d[1].count_ones(), 128, "{a} vs {b}");
            }
        }
        assert_eq!(codeword(0), [0, 0]);
        // Bit j of C(v) is parity(v ∧ j): spot-check j = 255 and j = 3.
        assert_eq!(codeword(0b1000_0001)[1] >> 127, 0); // parity(0b1000_0001 ∧ 255) = 0
        assert_eq!((codeword(0b01)[0] >> 3) & 1, 1);
    }

    /// The two cores against each other with the base OTs done in the clear.
    #[test]
    fn extension_core_gives_the_chosen_pad_only() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
        let s: Row = [rng.random(), rng.random()];
        let pairs: Vec<[u128; 2]> = (0..CODE_BITS).map(|_| [rng.random(), rng.random()]).collect();
        let chosen: Vec<u128> = (0..CODE_BITS).map(|j| pairs[j][((s[j / 128] >> (j % 128)) & 1) as usize]).collect();
        let mut recv = KkReceiver::new(&pairs).unwrap();
        let mut send = KkSender::new(s, &chosen).unwrap();
        let crh = Crh::default();
        for (m, n) in [(1usize, 16usize), (130, 256), (0, 5), (300, 16)] {
            let choices: Vec<u8> = (0..m).map(|_| rng.random_range(0..n) as u8).collect();
            let batch = recv.extend(&choices);
            assert_eq!(batch.u_bytes.len(), m * ROW_BYTES);
            let (q, first) = send.extend(&batch.u_bytes, m).unwrap();
            assert_eq!(first, batch.first);
            let got = hash_rows(&crh, &batch.t_rows, |i| first + i as u64, |i| choices[i] as usize);
            let offsets = send.offsets(n);
            for i in 0..m {
                assert_eq!(xor(q[i], offsets[choices[i] as usize]), batch.t_rows[i], "m = {m}, row {i}");
                for v in 0..n {
                    let pad = hash_rows(&crh, &[xor(q[i], offsets[v])], |_| first + i as u64, |_| v)[0];
                    assert_eq!(pad == got[i], v == choices[i] as usize, "m = {m}, row {i}, v = {v}");
                }
            }
        }
        assert!(send.extend(&[0u8; 31], 1).is_err());
        assert!(KkReceiver::new(&pairs[..128]).is_err());
    }
}
