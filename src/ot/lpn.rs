//! Regular-noise LPN parameters and the local linear code of the silent OT generator
//! ([`super::ferret`]). IO-free.
//!
//! The code is Ferret's primal construction (Yang–Weng–Lan–Zhang–Wang, CCS'20): a public
//! `k × n` matrix `A` whose every column has [`D`] = 10 uniformly drawn non-zero rows, so each
//! output is the XOR of ten positions of the length-`k` input. The positions come from a
//! public AES-CTR stream keyed by the iteration number (both parties derive them locally).
//! Positions are drawn as `⌊w·k / 2^32⌋` from 32-bit words, as the reference implementation
//! does (its relative bias of at most `k/2^32` < 2^-12 per position is public and immaterial
//! to the LPN assumption, which is stated for a random code of this shape).
//!
//! Parameter sets (regular noise: the `n` outputs are cut into `t` bins of `2^h` and each
//! bin holds exactly one noisy position): the two 128-bit rows of Ferret's regular-LPN
//! parameter table, as used unchanged by the authors' code (emp-ot, `ferret/constants.h`):
//! | set | n | k | t | bin | 128-bit per Ferret |
//! |---|---|---|---|---|---|
//! | [`SETUP_SET`] | 649,728 | 36,288 | 1,269 | 2^9 | yes |
//! | [`MAIN_SET`] | 10,608,640 | 589,824 | 1,295 | 2^13 | yes |
//! Silver codes are not used (they are broken).

use aes::Aes128;
use rayon::prelude::*;

use super::prg::{cipher_from_seed, prg_fill};

/// Non-zero entries per column of the LPN matrix.
pub const D: usize = 10;
/// 128-bit blocks of index stream per output (10 × 32-bit words fit in 3 blocks).
const BLOCKS_PER_OUTPUT: usize = 3;
/// Outputs encoded per rayon task.
const TASK: usize = 1 << 14;

/// One regular-LPN parameter set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LpnParams {
    /// Outputs of one iteration.
    pub n: usize,
    /// LPN dimension (base COTs the code reads).
    pub k: usize,
    /// Noise weight = number of bins = number of GGM trees.
    pub t: usize,
    /// log2 of the bin size (depth of each GGM tree).
    pub h: usize,
}

impl LpnParams {
    /// Base COTs one iteration consumes: `k` for the code plus `h` per tree.
    pub const fn base_cots(&self) -> usize {
        self.k + self.t * self.h
    }

    /// Bytes the COT sender sends per iteration: per tree two 16-byte level sums per level
    /// and one 16-byte correction for the punctured leaf.
    pub const fn iteration_bytes(&self) -> u64 {
        (self.t * (32 * self.h + 16)) as u64
    }

    pub const fn bin(&self) -> usize {
        1 << self.h
    }
}

/// Ferret's small set: bootstraps the main set from IKNP COTs.
pub const SETUP_SET: LpnParams = LpnParams { n: 649_728, k: 36_288, t: 1_269, h: 9 };
/// Ferret's main set: each iteration yields `n − MAIN_SET.base_cots()` = 10,001,981 COTs.
pub const MAIN_SET: LpnParams = LpnParams { n: 10_608_640, k: 589_824, t: 1_295, h: 13 };

/// Public key of the index stream of iteration `iter` (any fixed derivation both parties share).
fn index_cipher(iter: u64, p: &LpnParams) -> Aes128 {
    cipher_from_seed(0x6c70_6e2d_636f_6465_u128 << 64 ^ (iter as u128) << 32 ^ p.k as u128)
}

/// The [`D`] positions of output `j`, from its three stream blocks.
#[inline]
fn positions(blocks: &[u128], k: usize) -> [usize; D] {
    let mut out = [0usize; D];
    for (d, o) in out.iter_mut().enumerate() {
        let w = (blocks[d / 4] >> (32 * (d % 4))) as u32;
        *o = ((w as u64 * k as u64) >> 32) as usize;
    }
    out
}

/// `out[j] ^= ⊕_{l} base[pos(j, l)]` for every output, and, when `bits` is given (the
/// receiver's choice bits), `bits_out[j] ^= ⊕_l bits[pos(j, l)]` alongside.
pub fn encode(iter: u64, p: &LpnParams, base: &[u128], base_bits: Option<&[bool]>, out: &mut [u128], out_bits: Option<&mut [bool]>) {
    let cipher = index_cipher(iter, p);
    let k = p.k;
    debug_assert_eq!(base.len(), k);
    let run = |c: usize, chunk: &mut [u128], bits_chunk: Option<&mut [bool]>| {
        let j0 = c * TASK;
        let mut stream = vec![0u128; chunk.len() * BLOCKS_PER_OUTPUT];
        prg_fill(&cipher, (j0 * BLOCKS_PER_OUTPUT) as u64, &mut stream);
        match (bits_chunk, base_bits) {
            (Some(bc), Some(bb)) => {
                for (i, (x, b)) in chunk.iter_mut().zip(bc.iter_mut()).enumerate() {
                    for pos in positions(&stream[i * BLOCKS_PER_OUTPUT..], k) {
                        *x ^= base[pos];
                        *b ^= bb[pos];
                    }
                }
            }
            _ => {
                for (i, x) in chunk.iter_mut().enumerate() {
                    for pos in positions(&stream[i * BLOCKS_PER_OUTPUT..], k) {
                        *x ^= base[pos];
                    }
                }
            }
        }
    };
    match out_bits {
        Some(ob) => out.par_chunks_mut(TASK).zip(ob.par_chunks_mut(TASK)).enumerate().for_each(|(c, (x, b))| run(c, x, Some(b))),
        None => out.par_chunks_mut(TASK).enumerate().for_each(|(c, x)| run(c, x, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_sets_chain() {
        // The setup set's output covers the main set's base COTs; bins tile the output.
        assert!(SETUP_SET.n >= MAIN_SET.base_cots());
        assert_eq!(SETUP_SET.t * SETUP_SET.bin(), SETUP_SET.n);
        assert_eq!(MAIN_SET.t * MAIN_SET.bin(), MAIN_SET.n);
        assert_eq!(MAIN_SET.n - MAIN_SET.base_cots(), 10_001_981);
    }

    #[test]
    fn encoding_is_linear_and_reads_ten_positions() {
        let p = LpnParams { n: 1000, k: 64, t: 1, h: 0 };
        let base: Vec<u128> = (0..64).map(|i| 1u128 << i).collect();
        let mut out = vec![0u128; 1000];
        encode(5, &p, &base, None, &mut out, None);
        // Each output is a XOR of 10 unit vectors: odd/even multiplicities cancel, never more than 10 bits.
        assert!(out.iter().all(|x| x.count_ones() <= 10 && x.count_ones() % 2 == 0));
        assert!(out.iter().filter(|x| x.count_ones() == 10).count() > 400);
        let mut again = vec![0u128; 1000];
        encode(5, &p, &base, None, &mut again, None);
        assert_eq!(out, again);
        let mut other = vec![0u128; 1000];
        encode(6, &p, &base, None, &mut other, None);
        assert_ne!(out, other);
    }
}
