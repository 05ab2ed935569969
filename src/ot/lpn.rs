//! Dual-LPN compression of the silent OT generator ([`super::ferret`]): the parameter set and
//! the local linear map. IO-free.
//!
//! ## Construction
//! One iteration produces a length-`N` vector with regular noise: `t` GGM trees of `2^h`
//! leaves, `N = t·2^h`, one noisy position per tree. Tree `j`'s leaf `l` sits at position
//! `l·t + j` (the trees are interleaved, the layout the expand-convolute code is used with in
//! its authors' and CryProt's implementations). Both parties then apply the public linear map
//! `G: F^N → F^{N/2}` of the expand-convolute code (Raghuraman–Rindal–Tanguy, "Expand-Convolute
//! Codes for Pseudorandom Correlation Generators from LPN", CRYPTO'23, ePrint 2023/882) at
//! rate 1/2: the sender to its leaves `v`, the receiver to `w = v ⊕ e·Δ` and to its noise
//! vector `e`. Linearity gives `G·w = G·v ⊕ (G·e)·Δ`, i.e. `N/2` correlated OTs whose choice
//! bits `x = G·e` are pseudorandom under the dual (syndrome-decoding) LPN assumption for this
//! code with regular noise of weight `t`.
//!
//! The code is the crate `cryprot-codes` (MIT, an IO-free encoder, used unchanged as a
//! dependency): expander weight 7 with a regular expander, convolution (accumulator) width 24
//! applied twice, the crate's fixed public seed. Writing the encoder here again would add
//! nothing: it is a public, deterministic map both parties must compute identically.
//!
//! ## Parameters ([`SET`]: t = 264, h = 13)
//! The noise weight follows the linear-test bound of RRT23's security analysis as libOTe and
//! CryProt apply it to this code: a code of relative minimum distance `δ` leaves linear tests a
//! bias of at most `(1 − 2δ)^t`, and both implementations take `δ = 0.15` for the weight-7 /
//! width-24 code at rate 1/2. `t ≥ 128 / −log2(0.7) = 248.7` gives bias ≤ 2^-128; we take
//! `t = 264` (bias 2^-135.9), the next size for which one iteration also covers 2^20 outputs
//! after its reserve.
//! | | value |
//! |---|---|
//! | code length `N = t·2^13` | 2,162,688 |
//! | outputs per iteration `N/2` | 1,081,344 |
//! | reserved for the next iteration's trees (`t·h`) | 3,432 |
//! | handed out per iteration | 1,077,912 |
//! | bytes per iteration (sender → receiver) | 8 + 264·(32·13 + 16) = 114,056 (0.106 B per COT) |
//! Silver codes are not used (they are broken).
//!
//! ## Choice bits in the low bit
//! The generator's `Δ` has its lowest bit cleared, and so has every stored correlation. The
//! receiver places `e` in the lowest bit of `w` before encoding, so one encoding of 16-byte
//! blocks yields both `G·w` (upper 127 bits) and `x = G·e` (lowest bit); the code acts on each
//! bit lane separately. `Δ` keeps 127 uniform bits (as in libOTe and CryProt).

use cryprot_codes::{ExConvCode, ExConvCodeConfig};
use cryprot_core::Block;

use crate::error::{Error, Result};

/// One dual-LPN parameter set: `t` trees of depth `h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LpnParams {
    /// Noise weight = number of GGM trees.
    pub t: usize,
    /// Depth of each tree.
    pub h: usize,
}

impl LpnParams {
    /// Length of the noisy vector (all leaves of all trees).
    pub const fn code_len(&self) -> usize {
        self.t << self.h
    }

    /// Correlations one iteration yields (before its reserve is taken out).
    pub const fn outputs(&self) -> usize {
        self.code_len() / 2
    }

    /// Base COTs one iteration consumes: one per tree level.
    pub const fn base_cots(&self) -> usize {
        self.t * self.h
    }

    /// Correlations one iteration adds to the buffer (its outputs less the next reserve).
    pub const fn net_outputs(&self) -> usize {
        self.outputs() - self.base_cots()
    }

    /// Bytes the COT sender sends per iteration: per tree two 16-byte level sums per level
    /// and one 16-byte correction for the punctured leaf.
    pub const fn iteration_bytes(&self) -> u64 {
        (self.t * (32 * self.h + 16)) as u64
    }

    pub const fn bin(&self) -> usize {
        1 << self.h
    }

    /// Position of leaf `leaf` of tree `tree` in the noisy vector.
    pub const fn position(&self, tree: usize, leaf: usize) -> usize {
        leaf * self.t + tree
    }
}

/// The one parameter set of the generator (see the module header).
pub const SET: LpnParams = LpnParams { t: 264, h: 13 };

/// Mask clearing the lowest bit of a block.
pub const HIGH_BITS: u128 = !1;

/// The expand-convolute code for a parameter set.
pub struct Compressor {
    code: ExConvCode,
}

impl Compressor {
    pub fn new(p: &LpnParams) -> Compressor {
        let conf = ExConvCodeConfig { code_size: p.code_len(), expander_weight: 7, accumulator_size: 24, acc_twice: true, regular_expander: true, ..Default::default() };
        Compressor { code: ExConvCode::new_with_conf(p.outputs(), conf) }
    }

    /// Replace the length-`N` vector `v` by `G·v` (its length halves).
    pub fn compress(&self, v: &mut Vec<u128>) -> Result<()> {
        if v.len() != self.code.code_size() {
            return Err(Error::Ot(format!("silent OT: {} leaves to compress, the code takes {}", v.len(), self.code.code_size())));
        }
        let blocks: &mut [Block] = bytemuck::try_cast_slice_mut(v.as_mut_slice()).map_err(|e| Error::Ot(format!("silent OT: leaf buffer not block-aligned ({e})")))?;
        self.code.dual_encode(blocks);
        v.truncate(self.code.message_size());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_meets_the_linear_test_bound_and_covers_a_million() {
        let bias_log2 = SET.t as f64 * (1.0f64 - 2.0 * 0.15).log2();
        assert!(bias_log2 <= -128.0, "bias 2^{bias_log2}");
        assert!(SET.net_outputs() >= 1 << 20);
        assert_eq!(SET.net_outputs(), 1_077_912);
        assert_eq!(8 + SET.iteration_bytes(), 114_056);
    }

    #[test]
    fn compression_is_linear_bitwise_and_halves_the_length() {
        let p = LpnParams { t: 8, h: 6 };
        let c = Compressor::new(&p);
        let a: Vec<u128> = (0..p.code_len() as u128).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)).collect();
        let b: Vec<u128> = (0..p.code_len() as u128).map(|i| (i * i) << 3 | i).collect();
        let mut sum: Vec<u128> = a.iter().zip(&b).map(|(x, y)| x ^ y).collect();
        let (mut ga, mut gb) = (a.clone(), b.clone());
        c.compress(&mut ga).unwrap();
        c.compress(&mut gb).unwrap();
        c.compress(&mut sum).unwrap();
        assert_eq!(sum.len(), p.outputs());
        assert!(sum.iter().zip(ga.iter().zip(&gb)).all(|(s, (x, y))| *s == x ^ y));
        // One unit vector spreads over many outputs (the code mixes), and lanes stay apart.
        let mut unit = vec![0u128; p.code_len()];
        unit[p.code_len() - 1] = 1;
        c.compress(&mut unit).unwrap();
        assert!(unit.iter().all(|&x| x <= 1));
        assert!(unit.iter().filter(|&&x| x == 1).count() > 8);
        assert!(c.compress(&mut vec![0u128; 3]).is_err());
    }
}
