//! Circuit-private return of a server-computed ciphertext as additive shares (H2S).
//!
//! A result ciphertext computed by the server from client ciphertexts and server plaintexts
//! leaks the server's plaintexts through (a) its c1 part (c1 = Σ a_k·w_k with the a_k known to
//! the client) and (b) its noise (Σ e_k·w_k with the e_k known to the client). Before any such
//! ciphertext leaves the server, [`private_return`]:
//! 1. adds a uniform mask R ∈ Z_t^N (the server keeps −R as its share),
//! 2. adds a fresh public-key encryption of zero under the client's key (re-randomises c1),
//! 3. adds to c0 uniform flooding noise in [−F, F) with F = 2^f ≥ 2^40 · B · N · V, where V
//!    is a worst-case ℓ∞ bound on the data-dependent noise supplied by the caller (see the
//!    `*_bound` helpers) and B = [`KEY_RETURN_BUDGET`]: each of the N coefficients is within
//!    statistical distance V/F of a distribution independent of the server's inputs, so a
//!    whole ciphertext is within N·V/F ≤ 2^−40/B, and the (at most) B ciphertexts returned
//!    under one client key together within 2^−40 (union bound),
//! 4. switches down to the lowest level at which decryption is still guaranteed
//!    ([`return_level`]), and only then is the ciphertext serialised.
//!
//! Steps 1–2 run in the NTT domain; the flooding of step 3 is drawn in the power basis and
//! added there, after which both parts drop their moduli without returning to the NTT domain
//! in between (the same ciphertext as flooding in the NTT domain and switching level by
//! level, with a third of the number-theoretic transforms).
//!
//! **Per-key budget.** The statistical parameter covers a key's whole life, not one
//! ciphertext: every context counts the returns made under its client key
//! ([`ReturnBudget`], one [`HeContext`] per client key in a session) and [`mask_and_flood`]
//! refuses the (B+1)-th with `Error::He`, before anything is sent. The engine checks the
//! remaining budget before each inference and has the client re-key (fresh keys, a new
//! budget) when the next inference might not fit, so a long session never reaches that
//! error. B = 2^16: a short MiniLM inference returns a few hundred ciphertexts per key, so a
//! key lasts for ~100 such inferences. The price is 16 more bits of flooding; every BERT-base
//! linear layer still plans (`tests/he.rs`), and on MiniLM (one layer, 7 tokens) the return
//! levels, hence the bytes, did not change (165 960 478 bytes before, 165 960 541 after, the
//! difference being the per-inference verdict frame).
//!
//! Noise bounds (ℓ∞, worst case, N the ring degree, e = 21 the fresh-noise bound):
//! * fresh secret-key ciphertext: e;
//! * Σ_{k<K} ct_k·p_k with plaintext polynomials of coefficients |p| ≤ B (B = ⌊t/2⌋ for any
//!   centred SIMD plaintext): K·N·B·V_in ([`ct_pt_sum_bound`]);
//! * one column rotation (BV key switching over L RNS digits, no special prime): input
//!   noise + L·N·q_max·e ([`rotation_bound`]).
//!
//! Level rule: at level ℓ with modulus q_ℓ the switched noise is at most
//! (q_ℓ/Q)(2F + V + E_pk) + N·e (rounding), and decryption is exact when it stays below
//! q_ℓ/(2t); we require a factor 4 of slack. The top-level condition is F < Q/(16t); planning
//! fails with `Error::He` when it does not hold (parameters too small for the operation).

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};

use fhe::bfv::traits::TryConvertFrom as _;
use fhe::bfv::{Ciphertext, PublicKey};
use fhe_math::rq::traits::TryConvertFrom;
use fhe_math::rq::{Poly, Representation};
use fhe_math::zq::Modulus;
use fhe_traits::FheEncrypter;
use ndarray::Array2;
use rand::{CryptoRng, RngCore};

use super::{HeContext, ERROR_VARIANCE};
use crate::error::{Error, Result};

/// Statistical security parameter of the flooding, over all returns under one key.
pub const FLOOD_STAT_BITS: u32 = 40;
/// log2 of the number of ciphertexts one client key may see returned ([`KEY_RETURN_BUDGET`]).
pub const KEY_BUDGET_BITS: u32 = 16;
/// The most circuit-private returns under one client key; the flooding width pays for them.
pub const KEY_RETURN_BUDGET: u64 = 1 << KEY_BUDGET_BITS;

/// Returns made under one client key, against a limit of at most [`KEY_RETURN_BUDGET`].
#[derive(Debug)]
pub struct ReturnBudget {
    used: AtomicU64,
    limit: AtomicU64,
}

impl Default for ReturnBudget {
    fn default() -> Self {
        ReturnBudget { used: AtomicU64::new(0), limit: AtomicU64::new(KEY_RETURN_BUDGET) }
    }
}

impl ReturnBudget {
    /// Returns made so far.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
    /// Returns still allowed.
    pub fn remaining(&self) -> u64 {
        self.limit.load(Ordering::Relaxed).saturating_sub(self.used())
    }
    /// Lower the limit (the server may re-key sooner); it can never rise above [`KEY_RETURN_BUDGET`].
    pub fn lower_limit(&self, limit: u64) {
        self.limit.fetch_min(limit, Ordering::Relaxed);
    }
    /// Take one return from the budget, or fail without taking it.
    fn take(&self) -> Result<()> {
        let limit = self.limit.load(Ordering::Relaxed);
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| (u < limit).then_some(u + 1))
            .map(|_| ())
            .map_err(|_| {
                Error::He(format!(
                    "this client key has had its {limit} ciphertexts returned (the flooding covers no more); the client must re-key"
                ))
            })
    }
}

/// Σ_{k<terms} ct_k · p_k with |p_k coefficients| ≤ `plain_bound` and input noise ≤ `input`.
pub fn ct_pt_sum_bound(ctx: &HeContext, terms: usize, plain_bound: f64, input: f64) -> f64 {
    terms as f64 * ctx.degree() as f64 * plain_bound * input
}

/// A centred SIMD plaintext has coefficients bounded by ⌊t/2⌋ whatever the slot values.
pub fn simd_plain_bound(ctx: &HeContext) -> f64 {
    (ctx.t() / 2) as f64
}

/// Noise added by one column rotation at the top level.
pub fn rotation_bound(ctx: &HeContext) -> f64 {
    let digits = ctx.params().moduli().len() as f64;
    digits * ctx.degree() as f64 * ctx.largest_modulus() as f64 * ctx.fresh_noise()
}

/// Worst-case noise of a fresh public-key encryption of zero (u, e1, e2 all |·| ≤ 20).
fn pk_zero_bound(ctx: &HeContext) -> f64 {
    2.0 * ctx.degree() as f64 * 20.0 * 20.0 + 20.0
}

/// The flooding exponent f for a data-dependent bound `v`: F = 2^f ≥ 2^40 · B · N · v.
pub fn flood_bits(ctx: &HeContext, v: f64) -> u32 {
    (v.max(1.0).log2().ceil() as u32) + FLOOD_STAT_BITS + KEY_BUDGET_BITS + ctx.degree().trailing_zeros()
}

/// Largest supported flooding exponent (the sampler draws f + 1 ≤ 192 bits).
const MAX_FLOOD_BITS: u32 = 190;

/// The lowest (deepest) level at which a ciphertext at `level` flooded for data noise `v`
/// still decrypts exactly; `Error::He` if even `level` is not enough.
pub fn return_level(ctx: &HeContext, level: usize, v: f64) -> Result<usize> {
    let f = flood_bits(ctx, v);
    if f > MAX_FLOOD_BITS {
        return Err(Error::He(format!("flooding width 2^{f} exceeds the {MAX_FLOOD_BITS}-bit sampler")));
    }
    let log_t = (ctx.t() as f64).log2();
    let log_q_top = ctx.log_q_at(level);
    let top_noise = (2.0f64).powi(f as i32 + 1) + v + pk_zero_bound(ctx);
    // Top-level condition: 4·noise < Q/(2t).
    if top_noise.log2() + 2.0 >= log_q_top - log_t - 1.0 {
        return Err(Error::He(format!(
            "parameters too small: flooding 2^{f} needs log2 Q > {:.1}, have {:.1}",
            top_noise.log2() + 3.0 + log_t,
            log_q_top
        )));
    }
    let rounding = ctx.degree() as f64 * ctx.fresh_noise();
    let mut best = level;
    for l in level..=ctx.max_level() {
        let log_q = ctx.log_q_at(l);
        let scaled = (top_noise.log2() + log_q - log_q_top).exp2() + rounding;
        if scaled.log2() + 2.0 < log_q - log_t - 1.0 {
            best = l;
        }
    }
    Ok(best)
}

/// 2^e mod q.
fn pow2_mod(e: u32, q: u64) -> u64 {
    let mut r = 1u128;
    for _ in 0..e {
        r = (r * 2) % q as u128;
    }
    r as u64
}

/// Uniform integers in [−2^f, 2^f) as a power-basis polynomial at `level`. Each sample is
/// f + 1 uniform bits u (up to three 64-bit limbs, top limb masked) minus 2^f, reduced residue
/// by residue (Horner over the limbs with a constant-time Barrett reduction of u128 values).
fn flooding_coeffs<R: RngCore + CryptoRng>(ctx: &HeContext, level: usize, f: u32, rng: &mut R) -> Result<Poly> {
    let c = ctx.params().context_at_level(level)?;
    let moduli: Vec<Modulus> = c.moduli().iter().map(|&q| Modulus::new(q)).collect::<std::result::Result<_, _>>()?;
    let n = ctx.degree();
    let bits = f + 1;
    let limbs = bits.div_ceil(64) as usize;
    let top_mask = if bits % 64 == 0 { u64::MAX } else { (1u64 << (bits % 64)) - 1 };
    let offset: Vec<u64> = c.moduli().iter().map(|&q| pow2_mod(f, q)).collect();
    let mut a = Array2::<u64>::zeros((moduli.len(), n));
    let mut u = [0u64; 3];
    for j in 0..n {
        for (k, limb) in u.iter_mut().enumerate().take(limbs) {
            *limb = rng.next_u64();
            if k + 1 == limbs {
                *limb &= top_mask;
            }
        }
        for (i, q) in moduli.iter().enumerate() {
            // r < q < 2^63, so r·2^64 + limb < 2^127 fits the reduction's input.
            let mut r = 0u64;
            for k in (0..limbs).rev() {
                r = q.reduce_u128(((r as u128) << 64) | u[k] as u128);
            }
            a[[i, j]] = q.sub(r, offset[i]);
        }
    }
    Ok(Poly::try_convert_from(a, c, false, Representation::PowerBasis)?)
}

/// Step 1 at the ciphertext's current level: add the mask R. Counts the return against the
/// key's budget. Returns the server's share −R.
fn add_mask<R: RngCore + CryptoRng>(ctx: &HeContext, ct: &mut Ciphertext, rng: &mut R) -> Result<Vec<u64>> {
    let level = ctx.params().level_of_context(ct[0].ctx())?;
    if ct.len() != 2 {
        return Err(Error::He("circuit-private return needs a 2-part ciphertext".into()));
    }
    ctx.returns().take()?;
    let field = ctx.field();
    let mask: Vec<u64> = (0..ctx.slots()).map(|_| field.random(rng)).collect();
    *ct += &ctx.plaintext(&mask, level)?;
    Ok(mask.into_iter().map(|r| field.neg(r)).collect())
}

/// Steps 1–3 at the ciphertext's current level: mask, re-randomise (the crate's public-key
/// encryption of zero), flood. Returns the server's share −R (slot values in Z_t). The
/// reference form of [`private_return`]'s first three steps.
pub fn mask_and_flood<R: RngCore + CryptoRng>(
    ctx: &HeContext,
    pk: &PublicKey,
    ct: &mut Ciphertext,
    v: f64,
    rng: &mut R,
) -> Result<Vec<u64>> {
    let share = add_mask(ctx, ct, rng)?;
    let level = ctx.params().level_of_context(ct[0].ctx())?;
    let zero = ctx.zero_plaintext(level)?;
    let enc_zero: Ciphertext = pk.try_encrypt(&zero, rng)?;
    *ct += &enc_zero;
    let mut flood = flooding_coeffs(ctx, level, flood_bits(ctx, v), rng)?;
    flood.change_representation(Representation::Ntt);
    ct[0] += &flood;
    Ok(share)
}

/// The client's public key (pk0, pk1) = (−a·s + e, a) as the return uses it: its two
/// polynomials in NTT form at the top level.
pub struct ReturnKey {
    parts: Ciphertext,
}

impl ReturnKey {
    pub fn new(ctx: &HeContext, pk: &PublicKey) -> Result<ReturnKey> {
        let proto = fhe::proto::bfv::PublicKey::from(pk);
        let c = proto.c.ok_or_else(|| Error::He("public key without its ciphertext".into()))?;
        let parts = Ciphertext::try_convert_from(&c, ctx.params())?;
        if parts.len() != 2 || ctx.params().level_of_context(parts[0].ctx())? != 0 {
            return Err(Error::He("public key is not a two-part top-level ciphertext".into()));
        }
        Ok(ReturnKey { parts })
    }

    fn at_level(&self, level: usize) -> Result<Cow<'_, Ciphertext>> {
        if level == 0 {
            return Ok(Cow::Borrowed(&self.parts));
        }
        let mut pk = self.parts.clone();
        pk.switch_to_level(level)?;
        Ok(Cow::Owned(pk))
    }
}

/// The circuit-private return: mask, re-randomise, flood, then switch down to
/// [`return_level`]. Returns the ciphertext to send and the server's share (−R).
///
/// Same distribution as [`mask_and_flood`] followed by `Ciphertext::switch_to_level`, with a
/// third of the number-theoretic transforms: the encryption of zero is (u·pk0 + e0,
/// u·pk1 + e1) with u, e0, e1 drawn as the crate draws them (centred binomial, variance
/// [`ERROR_VARIANCE`]) but only u transformed (the errors and the flooding are added in the
/// power basis), and both parts leave the NTT domain once and drop all moduli there instead of
/// one inverse and one forward transform per dropped modulus.
pub fn private_return<R: RngCore + CryptoRng>(
    ctx: &HeContext,
    key: &ReturnKey,
    ct: Ciphertext,
    v: f64,
    rng: &mut R,
) -> Result<(Ciphertext, Vec<u64>)> {
    let (mut parts, share) = private_return_parts(ctx, key, ct, v, rng)?;
    for part in parts.iter_mut() {
        part.change_representation(Representation::Ntt);
    }
    Ok((Ciphertext::new(parts.to_vec(), ctx.params())?, share))
}

/// [`private_return`] with the two parts left in the power basis at [`return_level`] (what the
/// compact transport of `wire` switches to the narrow modulus coefficient by coefficient).
pub fn private_return_parts<R: RngCore + CryptoRng>(
    ctx: &HeContext,
    key: &ReturnKey,
    mut ct: Ciphertext,
    v: f64,
    rng: &mut R,
) -> Result<([Poly; 2], Vec<u64>)> {
    let level = ctx.params().level_of_context(ct[0].ctx())?;
    let target = return_level(ctx, level, v)?;
    let share = add_mask(ctx, &mut ct, rng)?;
    let here = ctx.params().context_at_level(level)?;
    let pk = key.at_level(level)?;
    let u = Poly::small(here, Representation::Ntt, ERROR_VARIANCE, rng)?;
    let errors = [Poly::small(here, Representation::PowerBasis, ERROR_VARIANCE, rng)?, Poly::small(here, Representation::PowerBasis, ERROR_VARIANCE, rng)?];
    let flood = flooding_coeffs(ctx, level, flood_bits(ctx, v), rng)?;
    let target_ctx = ctx.params().context_at_level(target)?;
    let mut parts = [ct[0].clone(), ct[1].clone()];
    drop(ct);
    for (i, part) in parts.iter_mut().enumerate() {
        *part += &(&u * &pk[i]);
        part.change_representation(Representation::PowerBasis);
        *part += &errors[i];
        if i == 0 {
            *part += &flood;
        }
        part.switch_down_to(target_ctx)?;
    }
    Ok((parts, share))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::he::HePreset;

    #[test]
    fn a_key_refuses_returns_beyond_its_budget() {
        let ctx = HeContext::new(&HePreset::small_test()).unwrap();
        assert_eq!(ctx.returns().remaining(), KEY_RETURN_BUDGET);
        ctx.returns().lower_limit(3);
        ctx.returns().lower_limit(1 << 40); // can never rise again
        assert_eq!(ctx.returns().remaining(), 3);
        let mut rng = rand::rng();
        let sk = fhe::bfv::SecretKey::random(ctx.params(), &mut rng);
        let pk = PublicKey::new(&sk, &mut rng);
        let zero = ctx.zero_plaintext(0).unwrap();
        let fresh = || -> Ciphertext { sk.try_encrypt(&zero, &mut rand::rng()).unwrap() };
        for _ in 0..3 {
            private_return(&ctx, &ReturnKey::new(&ctx, &pk).unwrap(), fresh(), ctx.fresh_noise(), &mut rng).unwrap();
        }
        assert_eq!(ctx.returns().used(), 3);
        let err = private_return(&ctx, &ReturnKey::new(&ctx, &pk).unwrap(), fresh(), ctx.fresh_noise(), &mut rng).unwrap_err().to_string();
        assert!(err.contains("re-key"), "{err}");
        assert_eq!(ctx.returns().used(), 3, "a refused return is not counted");
    }

    /// The return re-randomises c1 with the client's public key: the same ciphertext returned
    /// twice gives unrelated c1 parts, and both still decrypt to the masked message.
    #[test]
    fn returns_of_one_ciphertext_have_fresh_c1_parts() {
        let ctx = HeContext::coefficient(&HePreset::coefficient(40)).unwrap();
        let mut rng = rand::rng();
        let sk = fhe::bfv::SecretKey::random(ctx.params(), &mut rng);
        let key = ReturnKey::new(&ctx, &PublicKey::new(&sk, &mut rng)).unwrap();
        let f = ctx.field();
        let x: Vec<u64> = (0..ctx.degree()).map(|_| f.random(&mut rng)).collect();
        let ct: Ciphertext = sk.try_encrypt(&ctx.plaintext(&x, 0).unwrap(), &mut rng).unwrap();
        let (a, share_a) = private_return(&ctx, &key, ct.clone(), ctx.fresh_noise(), &mut rng).unwrap();
        let (b, share_b) = private_return(&ctx, &key, ct.clone(), ctx.fresh_noise(), &mut rng).unwrap();
        let mut plain = ct;
        plain.switch_to_level(ctx.max_level()).unwrap();
        assert_ne!(a[1], b[1]);
        assert_ne!(a[1], plain[1]);
        for (ret, share) in [(&a, &share_a), (&b, &share_b)] {
            assert_eq!(f.reconstruct(&ctx.decrypt(&sk, ret).unwrap(), share), x);
        }
    }

    #[test]
    fn the_flooding_width_pays_for_the_whole_key_budget() {
        let ctx = HeContext::new(&HePreset::small_test()).unwrap();
        let v = 1u64 << 20;
        // F ≥ 2^40 · B · N · v: 40 statistical bits for all B returns of one key together.
        assert_eq!(flood_bits(&ctx, v as f64), 20 + FLOOD_STAT_BITS + KEY_BUDGET_BITS + 12);
    }
}
