//! AES-128 primitives of the OT extension: a counter-mode PRG keyed by a base-OT seed, and a
//! tweakable correlation-robust hash built from fixed-key AES.
//!
//! * PRG: `G_k(ctr) = AES_k(ctr)`, one 128-bit block per counter value. Each base-OT seed
//!   keys one PRG; the session advances the counter across batches, so no block is reused.
//! * Hash: `H(x, tw) = π(π(x) ⊕ tw) ⊕ π(x)` with `π` = AES-128 under a fixed public key (the
//!   "TMMO" construction of Guo–Katz–Wang–Yu, S&P 2020). It is tweakable circular
//!   correlation robust when `π` is modelled as an ideal permutation; every call of the OT
//!   layer uses a distinct tweak (the global OT index and a domain tag).

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::{Aes128, Block};

/// Blocks handed to AES at once (lets the AES-NI backend pipeline).
const CHUNK: usize = 64;

/// Encrypt every block of `blocks` in place with `cipher`.
pub fn aes_in_place(cipher: &Aes128, blocks: &mut [u128]) {
    let mut buf = [Block::default(); CHUNK];
    for chunk in blocks.chunks_mut(CHUNK) {
        let buf = &mut buf[..chunk.len()];
        for (b, x) in buf.iter_mut().zip(chunk.iter()) {
            b.copy_from_slice(&x.to_le_bytes());
        }
        cipher.encrypt_blocks(buf);
        for (b, x) in buf.iter().zip(chunk.iter_mut()) {
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(b);
            *x = u128::from_le_bytes(bytes);
        }
    }
}

/// AES-128 keyed by a 128-bit seed.
pub fn cipher_from_seed(seed: u128) -> Aes128 {
    Aes128::new(&seed.to_le_bytes().into())
}

/// Counter-mode PRG output: blocks `AES_k(first + b)` for `b` in `0..out.len()`.
pub fn prg_fill(cipher: &Aes128, first: u64, out: &mut [u128]) {
    for (b, x) in out.iter_mut().enumerate() {
        *x = (first + b as u64) as u128;
    }
    aes_in_place(cipher, out);
}

/// The public fixed key of the hash's permutation π (any fixed key will do; this one is the
/// first 16 bytes of the binary expansion of π, a nothing-up-my-sleeve constant).
const FIXED_KEY: u128 = 0x243f_6a88_85a3_08d3_1319_8a2e_0370_7344;

/// Domain tags placed in the top byte of a tweak, so different uses never share a tweak.
pub const DOMAIN_OT: u128 = 1 << 120;
pub const DOMAIN_ONE_OF_N: u128 = 2 << 120;
pub const DOMAIN_GGM: u128 = 3 << 120;
pub const DOMAIN_SILENT: u128 = 4 << 120;
pub const DOMAIN_SILENT_ONE_OF_N: u128 = 5 << 120;
pub const DOMAIN_KK13_INNER: u128 = 6 << 120;
pub const DOMAIN_KK13_OUTER: u128 = 7 << 120;

/// The fixed-key correlation-robust hash.
pub struct Crh {
    pi: Aes128,
}

impl Default for Crh {
    fn default() -> Self {
        Crh { pi: cipher_from_seed(FIXED_KEY) }
    }
}

impl Crh {
    /// `xs[i] ← H(xs[i], tweaks(i))` for the whole slice.
    pub fn hash_in_place(&self, xs: &mut [u128], tweak: impl Fn(usize) -> u128) {
        let mut p = xs.to_vec();
        aes_in_place(&self.pi, &mut p);
        for (i, (x, &pi_x)) in xs.iter_mut().zip(p.iter()).enumerate() {
            *x = pi_x ^ tweak(i);
        }
        aes_in_place(&self.pi, xs);
        for (x, pi_x) in xs.iter_mut().zip(p) {
            *x ^= pi_x;
        }
    }

    /// One hash (for tests and small inputs).
    pub fn hash(&self, x: u128, tweak: u128) -> u128 {
        let mut v = [x];
        self.hash_in_place(&mut v, |_| tweak);
        v[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prg_is_deterministic_and_counter_separated() {
        let c = cipher_from_seed(7);
        let mut a = vec![0u128; 10];
        let mut b = vec![0u128; 5];
        prg_fill(&c, 0, &mut a);
        prg_fill(&c, 5, &mut b);
        assert_eq!(&a[5..], &b[..]);
        assert_ne!(a[0], a[1]);
    }

    #[test]
    fn hash_depends_on_input_and_tweak() {
        let h = Crh::default();
        assert_ne!(h.hash(1, 0), h.hash(1, 1));
        assert_ne!(h.hash(1, 0), h.hash(2, 0));
        let mut v = vec![1u128, 2, 3];
        h.hash_in_place(&mut v, |i| i as u128);
        assert_eq!(v[2], h.hash(3, 2));
    }
}
