//! Bit-matrix transposition for the OT extension, in 128×128 blocks.
//!
//! The extension works on 128 columns of m bits (one per base OT) but hashes m rows of 128
//! bits (one per OT). Each 128×128 block is transposed in place with the recursive
//! block-swap method (7 passes of 64 word swaps) instead of bit-by-bit loops.

/// Transpose a 128×128 bit matrix in place: on entry bit `c` of `a[r]` is entry (r, c); on
/// exit bit `r` of `a[c]` is that entry.
pub fn transpose_128(a: &mut [u128; 128]) {
    let mut width = 64usize;
    let mut mask: u128 = u64::MAX as u128;
    while width != 0 {
        let mut k = 0usize;
        while k < 128 {
            // Swap the high `width` bits of each 2·width group in row k with the low bits
            // of the same group in row k + width: the off-diagonal sub-blocks change place.
            let t = ((a[k] >> width) ^ a[k + width]) & mask;
            a[k + width] ^= t;
            a[k] ^= t << width;
            k = (k + width + 1) & !width;
        }
        width >>= 1;
        mask ^= mask << width;
    }
}

/// Transpose 128 columns of `blocks` 128-bit words (column-major: `cols[j * blocks + b]`)
/// into `128 * blocks` rows of 128 bits (bit j of row i = bit i of column j).
pub fn columns_to_rows(cols: &[u128], blocks: usize) -> Vec<u128> {
    use rayon::prelude::*;
    let mut rows = vec![0u128; 128 * blocks];
    rows.par_chunks_mut(128).enumerate().for_each(|(b, out)| {
        let mut m = [0u128; 128];
        for (j, x) in m.iter_mut().enumerate() {
            *x = cols[j * blocks + b];
        }
        transpose_128(&mut m);
        out.copy_from_slice(&m);
    });
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn transpose_matches_bitwise_reference() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let mut a = [0u128; 128];
        for x in a.iter_mut() {
            *x = rng.random();
        }
        let orig = a;
        transpose_128(&mut a);
        for r in 0..128 {
            for c in 0..128 {
                assert_eq!((orig[r] >> c) & 1, (a[c] >> r) & 1, "entry ({r}, {c})");
            }
        }
    }

    #[test]
    fn columns_to_rows_handles_several_blocks() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
        let blocks = 3;
        let cols: Vec<u128> = (0..128 * blocks).map(|_| rng.random()).collect();
        let rows = columns_to_rows(&cols, blocks);
        for i in [0usize, 1, 127, 128, 200, 383] {
            for j in [0usize, 5, 127] {
                let col_bit = (cols[j * blocks + i / 128] >> (i % 128)) & 1;
                assert_eq!((rows[i] >> j) & 1, col_bit);
            }
        }
    }
}
