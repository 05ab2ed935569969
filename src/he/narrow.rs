//! The narrow return modulus of a coefficient context: results leave the server at a prime
//! q' of ℓ + 13 bits instead of the 62-bit modulus they are switched down to.
//!
//! **Why.** A coefficient-packed result is sent as c1 in full plus c0 at the wanted positions
//! ([`super::wire`]); c1 is nine tenths of it. After the circuit-private return the ciphertext
//! at the single 62-bit modulus q has far more room than the decryption needs, so the server
//! switches it once more, to a prime q' < 2^(ℓ+13) that is not in the chain: each coefficient
//! c becomes ⌊c·q'/q⌉ mod q'. With ℓ = 40 that is 53 bits per coefficient instead of 62.
//!
//! **Correctness.** After the switch, c0' + c1'·s = (q'/q)(c0 + c1·s) + r0 + r1·s (mod q'),
//! with |r0|, |r1_j| ≤ 1/2. The client's decryption ⌊t·[c0' + c1'·s]_{q'}/q'⌉ mod t is exact
//! while the noise stays below q'/(2t) − 1 ≥ 2^11 (q' > 2^(ℓ+12)). The noise has two parts:
//! * the noise at q scaled by q'/q: `privacy::return_level` only returns at q when four times
//!   the noise there is below q/(2t), i.e. below 2^19 for q ≈ 2^62, so below 2^10 at q'
//!   (q'/q < 2^−9);
//! * the rounding r1·s: per output coefficient a sum of N terms ±r1_j·s_k with r1_j the
//!   rounding residue of a coefficient of c1, which is uniform modulo q after the
//!   re-randomisation by a fresh encryption of zero. Hoeffding's bound with the secret's
//!   Σ s_k² ≤ 2·N·σ² = 163,840 (σ² = 10; exceeded with negligible probability) gives
//!   P(|r1·s| ≥ 3,000) ≤ 2·exp(−2·3,000²/163,840) < 2^−157 per coefficient, and
//!   2^10 + 3,000 + 1/2 < 2^12 − 1 ≤ q'/(2t) − 1.
//!
//! A worst-case bound on the rounding (N·20/2 ≈ 2^16.3) would need q' ≥ 2^(ℓ+18); the tail
//! bound above is the usual one for modulus switching (the switch to q inside
//! `privacy::private_return` rests on the same argument).
//!
//! **Security.** The switch is a public function of the ciphertext the client would otherwise
//! receive, computed after masking, re-randomisation and flooding; it gives the client nothing
//! it could not compute itself.

use std::sync::Arc;

use fhe_math::rq::traits::TryConvertFrom;
use fhe_math::rq::{Context, Poly, Representation};
use fhe_math::zq::primes::generate_prime;

use crate::error::{Error, Result};

/// Bits of q' above ℓ: q' ∈ (2^(ℓ+12), 2^(ℓ+13)).
pub const NARROW_EXTRA_BITS: u32 = 13;

/// The prime q' and the switch from the return modulus q to it.
#[derive(Debug)]
pub struct NarrowModulus {
    q: u64,
    from: u64,
    /// ⌊q'·2^64/q⌋: a quotient estimate that is low by at most one.
    ratio: u64,
    ctx: Arc<Context>,
}

impl NarrowModulus {
    /// The largest prime q' < 2^(t_bits + 13) with q' ≡ 1 mod 2N, for results switched down to
    /// the single modulus `from`.
    pub fn new(from: u64, t_bits: u32, degree: usize) -> Result<NarrowModulus> {
        let bits = t_bits + NARROW_EXTRA_BITS;
        if bits >= 64 - from.leading_zeros() || bits > 62 {
            return Err(Error::Config(format!("a narrow return modulus of {bits} bits needs a wider return modulus than {from}")));
        }
        let two_n = 2 * degree as u64;
        let q = generate_prime(bits as usize, two_n, 1u64 << bits)
            .ok_or_else(|| Error::Config(format!("no {bits}-bit prime ≡ 1 mod {two_n}")))?;
        if q <= 1u64 << (bits - 1) {
            return Err(Error::Config(format!("no {bits}-bit prime ≡ 1 mod {two_n} above 2^{}", bits - 1)));
        }
        let ratio = (((q as u128) << 64) / from as u128) as u64;
        Ok(NarrowModulus { q, from, ratio, ctx: Arc::new(Context::new(&[q], degree)?) })
    }

    pub fn q(&self) -> u64 {
        self.q
    }
    /// The return modulus q the results are switched from.
    pub fn return_modulus(&self) -> u64 {
        self.from
    }
    /// Bits per transmitted coefficient.
    pub fn bits(&self) -> u32 {
        64 - self.q.leading_zeros()
    }
    /// The one-modulus ring context of q' (for the client's NTT products).
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// ⌊c·q'/q⌉ mod q' for a residue c ∈ [0, q).
    pub fn switch(&self, c: u64) -> u64 {
        let num = c as u128 * self.q as u128 + (self.from / 2) as u128;
        let mut quo = ((c as u128 * self.ratio as u128) >> 64) as u64;
        let mut rem = num - quo as u128 * self.from as u128;
        while rem >= self.from as u128 {
            quo += 1;
            rem -= self.from as u128;
        }
        if quo >= self.q {
            quo - self.q
        } else {
            quo
        }
    }

    /// Power-basis coefficients at q' as an NTT polynomial of [`Self::context`]; every value
    /// must already be below q'.
    pub fn ntt_poly(&self, coeffs: Vec<u64>) -> Result<Poly> {
        let mut p = Poly::try_convert_from(coeffs, &self.ctx, false, Representation::PowerBasis)?;
        p.change_representation(Representation::Ntt);
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn the_switch_rounds_like_exact_division() {
        let from = generate_prime(62, 16384, 1 << 62).unwrap();
        let nm = NarrowModulus::new(from, 40, 8192).unwrap();
        assert_eq!(nm.bits(), 53);
        assert_eq!(nm.q() % 16384, 1);
        let mut rng = rand::rng();
        let exact = |c: u64| -> u64 { ((c as u128 * nm.q() as u128 + (from / 2) as u128) / from as u128 % nm.q() as u128) as u64 };
        for c in [0, 1, from / 2, from / 2 + 1, from - 2, from - 1].into_iter().chain((0..20_000).map(|_| rng.random_range(0..from))) {
            assert_eq!(nm.switch(c), exact(c), "c = {c}");
        }
        assert!(NarrowModulus::new(from, 50, 8192).is_err(), "63 bits do not fit below a 62-bit modulus");
    }
}
