//! IKNP OT extension (Ishai–Kilian–Nissim–Petrank, CRYPTO 2003), semi-honest, as pure state
//! machines: no IO here, the session moves the bytes.
//!
//! Setup (once per direction): the *extension sender* is the receiver of 128 base OTs with a
//! secret choice vector Δ ∈ {0,1}^128 and holds `k_j^{Δ_j}`; the *extension receiver* is the
//! base-OT sender and holds both `k_j^0, k_j^1`.
//!
//! One batch of m OTs with receiver choices r ∈ {0,1}^m (m rounded up to a multiple of 128):
//! * receiver: `t_j = G(k_j^0)`, `u_j = t_j ⊕ G(k_j^1) ⊕ r` for the 128 columns j; sends all
//!   `u_j` (16 bytes per OT);
//! * sender: `q_j = G(k_j^{Δ_j}) ⊕ Δ_j·u_j = t_j ⊕ Δ_j·r`;
//! * after the 128×m transpose, row i satisfies `q_i = t_i ⊕ r_i·Δ`, so `H(i, q_i)` and
//!   `H(i, q_i ⊕ Δ)` are the sender's two random messages and `H(i, t_i)` the receiver's.
//!
//! `G` is AES-128 in counter mode keyed by each seed; a per-session block counter advances
//! after every batch so both parties use fresh PRG output and fresh hash tweaks (the global
//! OT index) for each batch.

use aes::Aes128;
use rayon::prelude::*;

use super::prg::{cipher_from_seed, prg_fill, Crh, DOMAIN_OT};
use super::transpose::columns_to_rows;
use crate::error::{Error, Result};

/// Computational security parameter: number of base OTs and width of a row.
pub const KAPPA: usize = 128;
/// Bytes the receiver sends per 128-OT block (128 columns × 16 bytes).
pub const BLOCK_BYTES: usize = KAPPA * 16;

/// Number of 128-OT blocks needed for `m` OTs.
pub fn blocks_for(m: usize) -> usize {
    m.div_ceil(KAPPA)
}

/// Rows hashed per rayon task.
const HASH_CHUNK: usize = 1 << 12;

/// `rows[i] ← H(rows[i] ⊕ offset, DOMAIN_OT | (first + i))`, in parallel.
pub fn hash_rows(crh: &Crh, rows: &mut [u128], offset: u128, first: u64) {
    rows.par_chunks_mut(HASH_CHUNK).enumerate().for_each(|(c, chunk)| {
        let base = first + (c * HASH_CHUNK) as u64;
        for x in chunk.iter_mut() {
            *x ^= offset;
        }
        crh.hash_in_place(chunk, |i| DOMAIN_OT | (base + i as u64) as u128);
    });
}

/// Expand `blocks` PRG blocks for each seed (128 for IKNP, 256 for KK13), column-major.
pub(super) fn expand_columns(prgs: &[Aes128], first_block: u64, blocks: usize) -> Vec<u128> {
    let mut cols = vec![0u128; prgs.len() * blocks];
    if blocks > 0 {
        cols.par_chunks_mut(blocks).zip(prgs.par_iter()).for_each(|(col, prg)| prg_fill(prg, first_block, col));
    }
    cols
}

/// Pack choice bits into 128-bit words (padding with zeros).
fn pack_choices(choices: &[bool], blocks: usize) -> Vec<u128> {
    let mut r = vec![0u128; blocks];
    for (i, &c) in choices.iter().enumerate() {
        r[i / KAPPA] |= (c as u128) << (i % KAPPA);
    }
    r
}

/// The extension receiver's state (holds both seeds of every base OT).
pub struct ExtReceiver {
    prgs0: Vec<Aes128>,
    prgs1: Vec<Aes128>,
    next_block: u64,
}

/// One batch's receiver-side result.
pub struct ReceiverBatch {
    /// The message for the sender: 128 columns of `blocks` words, little-endian bytes.
    pub u_bytes: Vec<u8>,
    /// Rows `t_i` (only the first m are meaningful).
    pub t_rows: Vec<u128>,
    /// Global index of the batch's first OT (hash tweak base).
    pub first: u64,
}

impl ExtReceiver {
    pub fn new(seed_pairs: &[[u128; 2]]) -> Result<ExtReceiver> {
        if seed_pairs.len() != KAPPA {
            return Err(Error::Ot(format!("IKNP needs {KAPPA} base OTs, got {}", seed_pairs.len())));
        }
        Ok(ExtReceiver {
            prgs0: seed_pairs.iter().map(|p| cipher_from_seed(p[0])).collect(),
            prgs1: seed_pairs.iter().map(|p| cipher_from_seed(p[1])).collect(),
            next_block: 0,
        })
    }

    pub fn extend(&mut self, choices: &[bool]) -> ReceiverBatch {
        let blocks = blocks_for(choices.len());
        let first_block = self.next_block;
        self.next_block += blocks as u64;
        let t_cols = expand_columns(&self.prgs0, first_block, blocks);
        let g1_cols = expand_columns(&self.prgs1, first_block, blocks);
        let r = pack_choices(choices, blocks);
        let mut u_bytes = vec![0u8; KAPPA * blocks * 16];
        if blocks > 0 {
            u_bytes.par_chunks_mut(blocks * 16).enumerate().for_each(|(j, out)| {
                for b in 0..blocks {
                    let u = t_cols[j * blocks + b] ^ g1_cols[j * blocks + b] ^ r[b];
                    out[b * 16..b * 16 + 16].copy_from_slice(&u.to_le_bytes());
                }
            });
        }
        ReceiverBatch { u_bytes, t_rows: columns_to_rows(&t_cols, blocks), first: first_block * KAPPA as u64 }
    }
}

/// The extension sender's state (holds Δ and the seeds it chose).
pub struct ExtSender {
    delta: u128,
    prgs: Vec<Aes128>,
    next_block: u64,
}

impl ExtSender {
    /// `delta` bit j is the base-OT choice j, `seeds[j]` the key obtained with it.
    pub fn new(delta: u128, seeds: &[u128]) -> Result<ExtSender> {
        if seeds.len() != KAPPA {
            return Err(Error::Ot(format!("IKNP needs {KAPPA} base OTs, got {}", seeds.len())));
        }
        Ok(ExtSender { delta, prgs: seeds.iter().map(|&s| cipher_from_seed(s)).collect(), next_block: 0 })
    }

    pub fn delta(&self) -> u128 {
        self.delta
    }

    /// From the receiver's `u` message for `m` OTs, the rows `q_i` and the first OT index.
    pub fn extend(&mut self, u_bytes: &[u8], m: usize) -> Result<(Vec<u128>, u64)> {
        let blocks = blocks_for(m);
        if u_bytes.len() != KAPPA * blocks * 16 {
            return Err(Error::protocol("OT extension", format!("u matrix of {} bytes for {m} OTs", u_bytes.len())));
        }
        let first_block = self.next_block;
        self.next_block += blocks as u64;
        let mut q_cols = expand_columns(&self.prgs, first_block, blocks);
        let delta = self.delta;
        if blocks > 0 {
            q_cols.par_chunks_mut(blocks).enumerate().for_each(|(j, col)| {
                if (delta >> j) & 1 == 1 {
                    let src = &u_bytes[j * blocks * 16..(j + 1) * blocks * 16];
                    for (q, u) in col.iter_mut().zip(src.chunks_exact(16)) {
                        let mut w = [0u8; 16];
                        w.copy_from_slice(u);
                        *q ^= u128::from_le_bytes(w);
                    }
                }
            });
        }
        Ok((columns_to_rows(&q_cols, blocks), first_block * KAPPA as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Run the two cores against each other with base OTs done in the clear.
    #[test]
    fn extension_core_gives_correlated_rows() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let delta: u128 = rng.random();
        let pairs: Vec<[u128; 2]> = (0..KAPPA).map(|_| [rng.random(), rng.random()]).collect();
        let chosen: Vec<u128> = (0..KAPPA).map(|j| pairs[j][((delta >> j) & 1) as usize]).collect();
        let mut recv = ExtReceiver::new(&pairs).unwrap();
        let mut send = ExtSender::new(delta, &chosen).unwrap();
        for m in [1usize, 130, 0, 300] {
            let choices: Vec<bool> = (0..m).map(|_| rng.random()).collect();
            let batch = recv.extend(&choices);
            let (q, first) = send.extend(&batch.u_bytes, m).unwrap();
            assert_eq!(first, batch.first);
            for i in 0..m {
                let expect = batch.t_rows[i] ^ if choices[i] { delta } else { 0 };
                assert_eq!(q[i], expect, "m = {m}, row {i}");
            }
        }
    }
}
