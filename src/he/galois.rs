//! Packing coefficient-encoded result ciphertexts: automorphisms with hybrid key switching and
//! the tree that merges g results whose wanted coefficients sit in one residue class mod g
//! into one ciphertext whose every coefficient is wanted.
//!
//! **Paper reference.** Chen, Dai, Kim, Song, "Efficient Homomorphic Conversion Between (Ring)
//! LWE Ciphertexts" (ACNS 2021), Algorithm 2 (PackLWEs) and the field trace, here over the
//! subring Z[X^g] instead of Z; Cheetah (USENIX Security 2022) §4.1 applies the same packing
//! to the outputs of its coefficient-encoded matrix products. Key switching with one special
//! prime P: Gentry, Halevi, Smart (CRYPTO 2012) §3.
//!
//! **Functionality.** Input: g = 2^L ciphertexts ct_0..ct_{g−1} under the client's key (some
//! may be absent, i.e. zero) and a public offset c; the wanted coefficients of each are those
//! at positions ≡ c (mod g). Output: one ciphertext whose coefficient at position j·g + ρ(r) is
//! ct_r's coefficient at position j·g + c, for every j and r, where ρ is the L-bit reversal.
//! Exact on the phase (mod Q): the data noise passes unchanged; only key switching adds noise.
//!
//! **How.** Each input is multiplied by g^{−1}·X^{−c} mod Q (the factor g^{−1} exists because Q
//! is odd; it undoes the factor g the trace introduces, so this works for t = 2^ℓ). Then L
//! levels: at level l (1..L) nodes pair up as (a, b) ↦ a + X^s·b + σ(a − X^s·b) with s = g/2^l
//! and σ: X ↦ X^(N/2^(L−l)+1). On a polynomial whose data sits at positions ≡ 0 (mod 2s),
//! σ fixes positions ≡ 0 (mod 2s), negates positions ≡ s (mod 2s) and maps every residue class
//! mod g to itself, so a + σ(a) doubles a's class-0 part and zeroes its class-s part while the
//! shifted b lands on class s: after L levels the data of ct_r is at class ρ(r), times g, and
//! everything else has cancelled. g − 1 automorphisms per g inputs (when all are present).
//!
//! **Key switching.** σ(c0 + c1·s) = σ(c0) + σ(c1)·σ(s); the key for σ holds, for each RNS
//! digit i of Q = q_0·…·q_{k−1}, b_i = −a_i·s + e_i + P·[σ(s)]_{q_i-only} over QP with a_i
//! from a 32-byte seed. Switching σ(c1) = Σ d_i·g_i (d_i its residue mod q_i) gives
//! (Σ d_i·b_i, Σ d_i·a_i) over QP, divided by P with rounding: noise at most
//! E = (Σ q_i)·N·20/P + (N+1)/2 (|e_i| ≤ 20, ternary s). Tree noise: a node's deviation is at
//! most 2·(its children's) + E, so the output adds E·(4^L − 1)/3 to the inputs' data noise.
//!
//! **Parameters.** P is a 36-bit prime ≡ 1 (mod 2N), so log2(QP) ≤ 182 + 36 = 218, the 128-bit
//! bound for N = 8192 (HomomorphicEncryption.org standard, Table 1; checked at construction):
//! the keys are RLWE samples at that modulus. With Q of 182 bits, E ≈ 2^44.9 and for g = 64
//! the packing adds ≈ 2^55.3, inside the flooding budget of every coefficient plan.
//!
//! **Bytes.** Setup only: per automorphism k·(32 + N·Σ⌈log2 q⌉/8) bytes (k = 3 digits:
//! 3·(32 + 8192·218/8) = 669,792 bytes), log2 of the largest pack factor keys
//! ([`MAX_PACK_BITS`] = 6: 4.0 MB, once per client key).
//!
//! **Security.** The keys are RLWE encryptions of multiples of σ(s) under s at a modulus
//! within the 128-bit table (the usual circular-security assumption of every Galois key).
//! Packing runs on the server before the circuit-private return of `he::privacy`, which masks
//! every coefficient of the packed ciphertext with a uniform value, re-randomises it and floods
//! its noise (including the key-switching noise, counted in the bound) by 2^40·N·B, so the
//! client's view is the same as for unpacked results; the server only ever sees ciphertexts.

use std::sync::Arc;

use fhe::bfv::{Ciphertext, SecretKey};
use fhe_math::rq::traits::TryConvertFrom;
use fhe_math::rq::{Context, Poly, Representation, SubstitutionExponent};
use fhe_math::zq::primes::generate_prime;
use fhe_math::zq::Modulus;
use ndarray::Array2;
use rand::{CryptoRng, RngCore};
use rayon::prelude::*;

use super::{max_log_q_128, HeContext, ERROR_VARIANCE};
use crate::error::{Error, Result};
use crate::net::{pack_bits, packed_len, unpack_bits};

/// log2 of the largest pack factor keys are made for (g ≤ 64).
pub const MAX_PACK_BITS: u32 = 6;
const SEED_LEN: usize = 32;
/// Bound on |e| of the keys' centred binomial errors (variance 10).
const KEY_ERROR: f64 = 20.0;

/// The special prime P of a coefficient context: the largest prime ≡ 1 (mod 2N) with
/// log2(Q·P) inside the 128-bit bound.
fn special_prime(ctx: &HeContext) -> Result<u64> {
    let n = ctx.degree();
    let max = max_log_q_128(n).ok_or_else(|| Error::Config(format!("degree {n} not in the security table")))? as usize;
    let used = ctx.preset().log_q_bound() as usize;
    let bits = max.checked_sub(used).filter(|b| (20..=62).contains(b)).ok_or_else(|| Error::Config(format!("no room for a special prime: log2 Q bound {used} of {max}")))?;
    let p = generate_prime(bits, 2 * n as u64, 1u64 << bits).ok_or_else(|| Error::Config(format!("no {bits}-bit prime ≡ 1 mod {}", 2 * n)))?;
    if ctx.params().moduli().contains(&p) {
        return Err(Error::Config("special prime equals a ciphertext modulus".into()));
    }
    Ok(p)
}

/// The exponent of the automorphism for key index `j`: X ↦ X^(N/2^j + 1).
fn exponent(degree: usize, j: usize) -> usize {
    degree / (1 << j) + 1
}

/// Bit reversal of `r` on `bits` bits: the residue class input r of a g = 2^bits pack lands on.
pub fn class_of(r: usize, bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        r.reverse_bits() >> (usize::BITS - bits)
    }
}

/// Worst-case noise added by one key switch.
pub fn switch_noise(ctx: &HeContext) -> Result<f64> {
    let p = special_prime(ctx)? as f64;
    let sum_q: f64 = ctx.params().moduli().iter().map(|&q| q as f64).sum();
    let n = ctx.degree() as f64;
    Ok(sum_q * n * KEY_ERROR / p + (n + 1.0) / 2.0)
}

/// Noise of a pack of 2^`bits` ciphertexts whose data noise is at most `v`.
pub fn pack_noise(ctx: &HeContext, bits: u32, v: f64) -> Result<f64> {
    Ok(v + switch_noise(ctx)? * ((4f64).powi(bits as i32) - 1.0) / 3.0)
}

/// The key-switching modulus QP and the digit layout, shared by both parties.
struct Basis {
    qp: Arc<Context>,
    digits: usize,
}

/// The key-switching moduli: Q's then the special prime P (last, so dividing by P is the
/// crate's switch down).
fn qp_moduli(ctx: &HeContext) -> Result<Vec<u64>> {
    let mut moduli = ctx.params().moduli().to_vec();
    moduli.push(special_prime(ctx)?);
    Ok(moduli)
}

/// Bits of each key-switching modulus, as the keys are packed on the wire.
fn widths(moduli: &[u64]) -> Vec<u32> {
    moduli.iter().map(|&q| 64 - q.leading_zeros()).collect()
}

/// Bytes of one digit of one key: its seed and b_i bit-packed residue by residue.
fn digit_len(moduli: &[u64], degree: usize) -> usize {
    SEED_LEN + widths(moduli).iter().map(|&b| packed_len(degree, b)).sum::<usize>()
}

impl Basis {
    fn new(ctx: &HeContext) -> Result<Basis> {
        let moduli = qp_moduli(ctx)?;
        Ok(Basis { qp: Context::new_arc(&moduli, ctx.degree())?, digits: moduli.len() - 1 })
    }
    fn bits(&self) -> Vec<u32> {
        widths(self.qp.moduli())
    }
}

/// Bytes of the packing keys of a coefficient context.
pub fn keys_len(ctx: &HeContext) -> Result<usize> {
    let moduli = qp_moduli(ctx)?;
    Ok(MAX_PACK_BITS as usize * (moduli.len() - 1) * digit_len(&moduli, ctx.degree()))
}

/// Key generation (client): the wire form of the keys for X ↦ X^(N/2^j + 1), j < [`MAX_PACK_BITS`].
pub fn generate_keys<R: RngCore + CryptoRng>(ctx: &HeContext, sk: &SecretKey, rng: &mut R) -> Result<Vec<u8>> {
    let basis = Basis::new(ctx)?;
    let n = ctx.degree();
    let secret = fhe::proto::bfv::SecretKey::from(sk).coeffs;
    if secret.len() != n {
        return Err(Error::He("secret key of the wrong degree".into()));
    }
    let mut s = Poly::try_convert_from(&secret[..], &basis.qp, false, Representation::PowerBasis)?;
    let s_power = s.clone();
    s.change_representation(Representation::Ntt);
    let special = *basis.qp.moduli().last().ok_or_else(|| Error::He("empty key basis".into()))?;
    let bits = basis.bits();
    let mut out = Vec::with_capacity(keys_len(ctx)?);
    for j in 0..MAX_PACK_BITS as usize {
        let sigma_s = s_power.substitute(&SubstitutionExponent::new(&basis.qp, exponent(n, j))?)?;
        for i in 0..basis.digits {
            let mut seed = [0u8; SEED_LEN];
            rng.fill_bytes(&mut seed);
            let a = Poly::random_from_seed(&basis.qp, Representation::Ntt, seed);
            let mut b = -&(&a * &s);
            b.change_representation(Representation::PowerBasis);
            b += &Poly::small(&basis.qp, Representation::PowerBasis, ERROR_VARIANCE, rng)?;
            // + P·σ(s) on digit i's residue only (the CRT gadget of Q, scaled by P).
            let mut gadget = Array2::<u64>::zeros((basis.qp.moduli().len(), n));
            let qi = Modulus::new(basis.qp.moduli()[i])?;
            let p_mod = qi.reduce(special);
            for (g, &v) in gadget.row_mut(i).iter_mut().zip(sigma_s.coefficients().row(i)) {
                *g = qi.mul(v, p_mod);
            }
            b += &Poly::try_convert_from(gadget, &basis.qp, false, Representation::PowerBasis)?;
            out.extend_from_slice(&seed);
            for (row, &w) in b.coefficients().outer_iter().zip(&bits) {
                out.extend_from_slice(&pack_bits(&row.to_vec(), w));
            }
        }
    }
    Ok(out)
}

/// One automorphism's key: per digit (b_i, a_i) in NTT–Shoup form over QP.
struct AutoKey {
    exponent: usize,
    b: Vec<Poly>,
    a: Vec<Poly>,
}

/// The server's packing keys.
pub struct PackingKeys {
    basis: Basis,
    keys: Vec<AutoKey>,
}

impl PackingKeys {
    /// Parse the client's keys (peer bytes): exact length, every residue below its modulus.
    pub fn decode(ctx: &HeContext, bytes: &[u8]) -> Result<PackingKeys> {
        let want = keys_len(ctx)?;
        if bytes.len() != want {
            return Err(Error::protocol("he-setup", format!("packing keys: {} bytes, expected {want}", bytes.len())));
        }
        let basis = Basis::new(ctx)?;
        let n = ctx.degree();
        let bits = basis.bits();
        let per_digit = digit_len(basis.qp.moduli(), n);
        let keys = (0..MAX_PACK_BITS as usize)
            .map(|j| {
                let (mut b, mut a) = (Vec::with_capacity(basis.digits), Vec::with_capacity(basis.digits));
                for i in 0..basis.digits {
                    let blob = &bytes[(j * basis.digits + i) * per_digit..(j * basis.digits + i + 1) * per_digit];
                    let seed: [u8; SEED_LEN] = blob[..SEED_LEN].try_into().map_err(|_| Error::He("seed length".into()))?;
                    let mut coeffs = Array2::<u64>::zeros((bits.len(), n));
                    let mut off = SEED_LEN;
                    for ((mut row, &w), &q) in coeffs.outer_iter_mut().zip(&bits).zip(basis.qp.moduli()) {
                        let len = packed_len(n, w);
                        let vals = unpack_bits(&blob[off..off + len], n, w);
                        if vals.iter().any(|&v| v >= q) {
                            return Err(Error::protocol("he-setup", "packing key coefficient outside [0, q)"));
                        }
                        row.iter_mut().zip(vals).for_each(|(r, v)| *r = v);
                        off += len;
                    }
                    let mut bi = Poly::try_convert_from(coeffs, &basis.qp, false, Representation::PowerBasis)?;
                    bi.change_representation(Representation::NttShoup);
                    b.push(bi);
                    a.push(Poly::random_from_seed(&basis.qp, Representation::NttShoup, seed));
                }
                Ok(AutoKey { exponent: exponent(n, j), b, a })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(PackingKeys { basis, keys })
    }

    /// σ_j of a ciphertext given as its two parts in the power basis at the top level.
    fn automorphism(&self, ctx: &HeContext, ct: &Parts, j: usize) -> Result<Parts> {
        let key = self.keys.get(j).ok_or_else(|| Error::He(format!("no packing key {j}")))?;
        let q_ctx = ctx.params().context_at_level(0)?;
        let c0 = substituted(q_ctx, &ct[0], key.exponent)?;
        let c1 = substituted(q_ctx, &ct[1], key.exponent)?;
        let mut u0 = Poly::zero(&self.basis.qp, Representation::Ntt);
        let mut u1 = Poly::zero(&self.basis.qp, Representation::Ntt);
        let digits = c1.coefficients();
        let ops = self.basis.qp.moduli_operators();
        for (i, (b, a)) in key.b.iter().zip(&key.a).enumerate() {
            // Digit i (residues mod q_i, < q_i) lifted to QP and transformed.
            let row = digits.row(i);
            let mut lifted = Array2::<u64>::zeros((ops.len(), row.len()));
            for (mut out, m) in lifted.outer_iter_mut().zip(ops) {
                out.iter_mut().zip(row.iter()).for_each(|(o, &v)| *o = m.reduce(v));
            }
            let mut d = Poly::try_convert_from(lifted, &self.basis.qp, false, Representation::PowerBasis)?;
            d.change_representation(Representation::Ntt);
            u0 += &(&d * b);
            u1 += &(&d * a);
        }
        let down = |mut u: Poly| -> Result<Poly> {
            u.change_representation(Representation::PowerBasis);
            u.switch_down()?;
            Ok(Poly::try_convert_from(u.coefficients().to_owned(), q_ctx, false, Representation::PowerBasis)?)
        };
        Ok([&c0 + &down(u0)?, down(u1)?])
    }

    /// Pack `cts` (NTT form at the top level; length g = 2^bits ≤ 2^[`MAX_PACK_BITS`];
    /// `None` = zero) whose data sits at positions ≡ `offset` (mod g), as in the module header.
    /// The result is in NTT form at the top level.
    pub fn pack(&self, ctx: &HeContext, cts: Vec<Option<Ciphertext>>, offset: usize) -> Result<Ciphertext> {
        let g = cts.len();
        let bits = g.trailing_zeros();
        if !g.is_power_of_two() || bits > MAX_PACK_BITS || offset >= ctx.degree() {
            return Err(Error::He(format!("cannot pack {g} ciphertexts (at most 2^{MAX_PACK_BITS}, a power of two)")));
        }
        let mut nodes: Vec<Option<Parts>> = cts
            .into_par_iter()
            .map(|c| c.map(|c| scaled_parts(ctx, &c, g, offset)).transpose())
            .collect::<Result<_>>()?;
        for level in 1..=bits {
            let shift = g >> level;
            let j = (bits - level) as usize;
            let pairs: Vec<(Option<Parts>, Option<Parts>)> = {
                let mut it = nodes.into_iter();
                std::iter::from_fn(|| it.next().map(|a| (a, it.next().flatten()))).collect()
            };
            nodes = pairs
                .into_par_iter()
                .map(|(a, b)| -> Result<Option<Parts>> {
                    let b = b.map(|b| shifted(ctx, &b, shift)).transpose()?;
                    let (sum, diff) = match (a, b) {
                        (None, None) => return Ok(None),
                        (Some(a), None) => (a.clone(), a),
                        (None, Some(b)) => (b.clone(), [-&b[0], -&b[1]]),
                        (Some(a), Some(b)) => ([&a[0] + &b[0], &a[1] + &b[1]], [&a[0] - &b[0], &a[1] - &b[1]]),
                    };
                    let rot = self.automorphism(ctx, &diff, j)?;
                    Ok(Some([&sum[0] + &rot[0], &sum[1] + &rot[1]]))
                })
                .collect::<Result<_>>()?;
        }
        let [mut c0, mut c1] = nodes.pop().flatten().ok_or_else(|| Error::He("nothing to pack".into()))?;
        c0.change_representation(Representation::Ntt);
        c1.change_representation(Representation::Ntt);
        Ok(Ciphertext::new(vec![c0, c1], ctx.params())?)
    }
}

/// A ciphertext's two parts in the power basis at the top level.
type Parts = [Poly; 2];

/// g^{−1}·X^{−offset}·ct, in the power basis.
fn scaled_parts(ctx: &HeContext, ct: &Ciphertext, g: usize, offset: usize) -> Result<Parts> {
    let q_ctx = ctx.params().context_at_level(0)?;
    let n = ctx.degree();
    let part = |i: usize| -> Result<Poly> {
        let mut p = ct[i].clone();
        p.change_representation(Representation::PowerBasis);
        map_rows(q_ctx, &p, |m, src, dst| {
            let inv = m.inv(m.reduce(g as u64)).ok_or_else(|| Error::He("pack factor not invertible mod q".into()))?;
            // X^{−c}: coefficient k moves to k − c, wrapping to k − c + N with a sign change.
            let scaled: Vec<u64> = src.iter().map(|&v| m.mul(v, inv)).collect();
            dst[..n - offset].copy_from_slice(&scaled[offset..]);
            dst[n - offset..].copy_from_slice(&scaled[..offset]);
            dst[n - offset..].iter_mut().for_each(|v| *v = m.neg(*v));
            Ok(())
        })
    };
    Ok([part(0)?, part(1)?])
}

/// X^s·ct (0 ≤ s < N), in the power basis.
fn shifted(ctx: &HeContext, ct: &Parts, s: usize) -> Result<Parts> {
    let q_ctx = ctx.params().context_at_level(0)?;
    let n = ctx.degree();
    let part = |p: &Poly| {
        map_rows(q_ctx, p, |m, src, dst| {
            dst[s..].copy_from_slice(&src[..n - s]);
            dst[..s].copy_from_slice(&src[n - s..]);
            dst[..s].iter_mut().for_each(|v| *v = m.neg(*v));
            Ok(())
        })
    };
    Ok([part(&ct[0])?, part(&ct[1])?])
}

/// σ: X ↦ X^e on a power-basis polynomial: coefficient k moves to k·e mod 2N, negated past N.
fn substituted(q_ctx: &Arc<Context>, p: &Poly, e: usize) -> Result<Poly> {
    let n = q_ctx_degree(p);
    map_rows(q_ctx, p, |m, src, dst| {
        let mut pos = 0usize;
        for &v in src {
            if pos < n {
                dst[pos] = v;
            } else {
                dst[pos - n] = m.neg(v);
            }
            pos = (pos + e) % (2 * n);
        }
        Ok(())
    })
}

fn q_ctx_degree(p: &Poly) -> usize {
    p.coefficients().ncols()
}

/// A new power-basis polynomial over `q_ctx` whose residue rows are `f(modulus, row of p, out)`.
fn map_rows(q_ctx: &Arc<Context>, p: &Poly, f: impl Fn(&Modulus, &[u64], &mut [u64]) -> Result<()>) -> Result<Poly> {
    let src = p.coefficients();
    let mut out = Array2::<u64>::zeros(src.dim());
    for ((mut o, s), m) in out.outer_iter_mut().zip(src.outer_iter()).zip(q_ctx.moduli_operators()) {
        let (o, s) = (o.as_slice_mut(), s.as_slice());
        match (o, s) {
            (Some(o), Some(s)) => f(m, s, o)?,
            _ => return Err(Error::He("non-contiguous residues".into())),
        }
    }
    Ok(Poly::try_convert_from(out, q_ctx, false, Representation::PowerBasis)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::he::{ClientKeys, HePreset};
    use fhe_traits::FheEncrypter;

    /// Packing g ciphertexts puts input r's class-`offset` coefficients on class ρ(r), exactly,
    /// for full and partial groups, on the real parameters (t = 2^40, N = 8192).
    #[test]
    fn packing_moves_each_inputs_class_onto_its_own_class() {
        let ctx = HeContext::coefficient(&HePreset::coefficient(40)).unwrap();
        let f = ctx.field();
        let n = ctx.degree();
        let mut rng = rand::rng();
        let keys = ClientKeys::generate(&ctx, &[], &mut rng).unwrap();
        let wire = generate_keys(&ctx, &keys.sk, &mut rng).unwrap();
        assert_eq!(wire.len(), keys_len(&ctx).unwrap());
        let packing = PackingKeys::decode(&ctx, &wire).unwrap();
        for (g, offset, present) in [(8usize, 7usize, vec![true; 8]), (4, 0, vec![true, false, true, true]), (2, 1, vec![false, true])] {
            let bits = g.trailing_zeros();
            let msgs: Vec<Vec<u64>> = (0..g).map(|_| (0..n).map(|_| f.random(&mut rng)).collect()).collect();
            let cts: Vec<Option<Ciphertext>> = msgs
                .iter()
                .zip(&present)
                .map(|(m, &p)| p.then(|| keys.sk.try_encrypt(&ctx.plaintext(m, 0).unwrap(), &mut rng).unwrap()))
                .collect();
            let packed = packing.pack(&ctx, cts, offset).unwrap();
            let out = ctx.decrypt(&keys.sk, &packed).unwrap();
            for r in 0..g {
                for j in 0..n / g {
                    let want = if present[r] { msgs[r][j * g + offset] } else { 0 };
                    assert_eq!(out[j * g + class_of(r, bits)], want, "g {g} input {r} row {j}");
                }
            }
        }
        assert!(pack_noise(&ctx, MAX_PACK_BITS, 0.0).unwrap().log2() < 56.0);
        assert!(PackingKeys::decode(&ctx, &wire[1..]).is_err());
    }
}
/// The unit costs of `proto::linear::coeff`'s block rule, on one core:
/// `RAYON_NUM_THREADS=1 cargo test --release --lib unit_costs -- --ignored --nocapture`.
#[cfg(test)]
mod unit_costs {
    use super::*;
    use crate::he::{ClientKeys, HePreset};
    use fhe_traits::FheEncrypter;
    #[test]
    #[ignore]
    fn measure_unit_costs_of_the_block_rule() {
        let ctx = HeContext::coefficient(&HePreset::coefficient(40)).unwrap();
        let mut rng = rand::rng();
        let keys = ClientKeys::generate(&ctx, &[], &mut rng).unwrap();
        let t0 = std::time::Instant::now();
        let wire = generate_keys(&ctx, &keys.sk, &mut rng).unwrap();
        eprintln!("packing key generation {:?}", t0.elapsed());
        let t0 = std::time::Instant::now();
        let packing = PackingKeys::decode(&ctx, &wire).unwrap();
        eprintln!("packing key decoding {:?}", t0.elapsed());
        let ct: Ciphertext = keys.sk.try_encrypt(&ctx.plaintext(&[1, 2, 3], 0).unwrap(), &mut rng).unwrap();
        let t0 = std::time::Instant::now();
        let parts = scaled_parts(&ctx, &ct, 1, 0).unwrap();
        for _ in 0..20 {
            packing.automorphism(&ctx, &parts, 0).unwrap();
        }
        eprintln!("key switch (SWITCH_MS) {:?}", t0.elapsed() / 20);
        for g in [8usize, 64] {
            let cts: Vec<Option<Ciphertext>> = (0..g).map(|_| Some(ct.clone())).collect();
            let t0 = std::time::Instant::now();
            packing.pack(&ctx, cts, 0).unwrap();
            eprintln!("pack of {g}: {:?} per member (SWITCH_MS + PACK_MEMBER_MS)", t0.elapsed() / g as u32);
        }
        let key = crate::he::privacy::ReturnKey::new(&ctx, &keys.pk).unwrap();
        let positions: Vec<usize> = (0..1024).map(|i| i * 8).collect();
        let t0 = std::time::Instant::now();
        let mut last = None;
        for _ in 0..20 {
            let (parts, _) = crate::he::privacy::private_return_parts(&ctx, &key, ct.clone(), 2f64.powi(50), &mut rng).unwrap();
            last = Some(crate::he::wire::compact_result(&ctx, &parts, &positions).unwrap());
        }
        eprintln!("private return + compaction {:?}", t0.elapsed() / 20);
        let bytes = crate::he::wire::encode_compact(&ctx, &last.unwrap()).unwrap();
        let t0 = std::time::Instant::now();
        for _ in 0..20 {
            let c = crate::he::wire::decode_compact_parts(&ctx, positions.len(), &bytes).unwrap();
            keys.decrypt_compact(&ctx, &c, &positions).unwrap();
        }
        eprintln!("client decode + decryption {:?} (with the return: OUTPUT_MS)", t0.elapsed() / 20);
        let t0 = std::time::Instant::now();
        for _ in 0..20 {
            let s = keys.encrypt_seeded(&ctx, &[1, 2, 3], &mut rng).unwrap();
            let b = crate::he::wire::encode_seeded(&s);
            crate::he::wire::decode_seeded(&ctx, &b).unwrap();
        }
        eprintln!("seeded upload, encrypt + decode (UPLOAD_MS) {:?}", t0.elapsed() / 20);
    }
}
