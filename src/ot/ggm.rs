//! GGM trees for the single-point correlated OTs of the silent generator. IO-free.
//!
//! Length-doubling PRG from fixed-key AES: `G(s) = (π_L(s) ⊕ s, π_R(s) ⊕ s)` with two public
//! keys; in the ideal-permutation model each half is pseudorandom for a uniform unknown `s`
//! (the same construction as the reference implementations of Ferret). The sender expands a
//! random root into `2^h` leaves and reports, per level `i`, the XOR of the left children
//! (`K_i^0`) and of the right children (`K_i^1`). A receiver given `K_i^{¬α_i}` for every
//! level recovers every leaf except leaf `α` ("punctured" at `α`), and nothing about it.

use aes::Aes128;

use super::prg::{aes_in_place, cipher_from_seed};

/// The two public keys of the tree PRG (arbitrary fixed constants, distinct from the hash key).
const LEFT_KEY: u128 = 0x6767_6d2d_6c65_6674_0000_0000_0000_0001;
const RIGHT_KEY: u128 = 0x6767_6d2d_7269_6768_7400_0000_0000_0002;

/// The tree PRG's two permutations.
pub struct TreePrg {
    left: Aes128,
    right: Aes128,
}

impl Default for TreePrg {
    fn default() -> Self {
        TreePrg { left: cipher_from_seed(LEFT_KEY), right: cipher_from_seed(RIGHT_KEY) }
    }
}

impl TreePrg {
    /// One level down, in place: `nodes[..parents]` holds the parents; afterwards
    /// `nodes[..2·parents]` holds the children, child `2j + s` = `π_s(p_j) ⊕ p_j`. `scratch`
    /// (at least `2·parents` long, reused across levels and trees) takes the AES outputs.
    fn expand_level(&self, nodes: &mut [u128], parents: usize, scratch: &mut [u128]) {
        let (l, r) = scratch[..2 * parents].split_at_mut(parents);
        l.copy_from_slice(&nodes[..parents]);
        r.copy_from_slice(&nodes[..parents]);
        aes_in_place(&self.left, l);
        aes_in_place(&self.right, r);
        // Backwards, so parent j is read before children 2j, 2j + 1 (≥ j) are written.
        for j in (0..parents).rev() {
            let p = nodes[j];
            nodes[2 * j + 1] = r[j] ^ p;
            nodes[2 * j] = l[j] ^ p;
        }
    }

    /// Sender: the `2^h` leaves of the tree rooted at `root` (written to `leaves`) and the
    /// per-level sums `[K_i^0, K_i^1]` for levels `1..=h`. `scratch` must hold `2^h` blocks.
    pub fn expand_full(&self, root: u128, h: usize, leaves: &mut [u128], scratch: &mut [u128]) -> Vec<[u128; 2]> {
        debug_assert_eq!(leaves.len(), 1 << h);
        let mut sums = Vec::with_capacity(h);
        leaves[0] = root;
        for i in 1..=h {
            self.expand_level(leaves, 1 << (i - 1), scratch);
            sums.push(level_sums(&leaves[..1 << i]));
        }
        sums
    }

    /// Receiver: the leaves of the tree punctured at `alpha` (MSB-first path bits), given the
    /// level sums on the side off the path, `off_path[i-1] = K_i^{¬α_i}`. Leaf `alpha` is
    /// set to 0. `scratch` must hold `2^h` blocks.
    pub fn expand_punctured(&self, alpha: usize, h: usize, off_path: &[u128], leaves: &mut [u128], scratch: &mut [u128]) {
        debug_assert_eq!(leaves.len(), 1 << h);
        debug_assert_eq!(off_path.len(), h);
        leaves[0] = 0;
        for i in 1..=h {
            // The path's parent is unknown (0): its two children are overwritten below.
            self.expand_level(leaves, 1 << (i - 1), scratch);
            let next = &mut leaves[..1 << i];
            let path = alpha >> (h - i);
            let sibling = path ^ 1;
            next[path] = 0;
            next[sibling] = 0;
            let side = sibling & 1;
            let known: u128 = next.iter().skip(side).step_by(2).fold(0, |a, &x| a ^ x);
            next[sibling] = off_path[i - 1] ^ known;
        }
    }
}

/// `[⊕ even-index nodes, ⊕ odd-index nodes]` of one level.
fn level_sums(nodes: &[u128]) -> [u128; 2] {
    let mut s = [0u128; 2];
    for (j, &x) in nodes.iter().enumerate() {
        s[j & 1] ^= x;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn punctured_tree_matches_everywhere_but_alpha() {
        let prg = TreePrg::default();
        for h in [1usize, 2, 5, 9] {
            for alpha in [0usize, 1, (1 << h) - 1, (1 << h) / 3] {
                let mut full = vec![0u128; 1 << h];
                let mut scratch = vec![0u128; 1 << h];
                let sums = prg.expand_full(0x1234_5678 + h as u128, h, &mut full, &mut scratch);
                let off: Vec<u128> = (1..=h).map(|i| sums[i - 1][1 - ((alpha >> (h - i)) & 1)]).collect();
                let mut punct = vec![0u128; 1 << h];
                prg.expand_punctured(alpha, h, &off, &mut punct, &mut scratch);
                for j in 0..1 << h {
                    if j == alpha {
                        assert_eq!(punct[j], 0);
                    } else {
                        assert_eq!(punct[j], full[j], "h={h} alpha={alpha} leaf {j}");
                    }
                }
            }
        }
    }
}
