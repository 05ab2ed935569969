//! BOLT's GeLU and tanh, rebuilt on this crate's OT toolkit (the `bolt` profile).
//!
//! **Paper reference.** BOLT (Pang, Zhu, Möllering, Zheng, Schneider; IEEE S&P 2024), as
//! implemented in its public code (`gelu_approx`, `tanh_approx` in `fp-math.cpp`, branch
//! `bert`): an even polynomial in `|x|` on a central interval and the exact asymptote outside.
//! Both are evaluated with OT-based secret-sharing multiplications only (no HE), which is the
//! design point FASTLMPI's HE-evaluated segments are measured against.
//!
//! **Functionality.** Input: ring shares (ℓ bits, `frac` = f fraction bits) of `x`. Output:
//! shares of
//! * GeLU: `ReLU(x)` if `|x| ≥ 2.7`, else `x/2 + p(|x|)` with BOLT's degree-4
//!   `p(y) = a·((z + y − c₂)(z + c₃) + c₄)`, `z = y(y − c₁)` (two products);
//! * tanh: `sign(x)` if `|x| ≥ 2.855`, else `sign(x)·q(|x|)` with a degree-5 `q` (Chebyshev
//!   interpolation of tanh on [0, 2.855], Horner, five products),
//!
//! bit-equal to [`reference`].
//!
//! **Arithmetic** (every truncation a faithful floor):
//! 1. `s = DReLU(x)`; `r = s·x` (one mux) is ReLU(x); `y = 2r − x = |x|` (local).
//! 2. `inside = [y < T]` (one exact comparison on ℓ bits).
//! 3. GeLU: `z = ⌊y(y − C₁)/2^f⌋`, `w = ⌊(z + y − C₂)(z + C₃)/2^f⌋`,
//!    `g = ⌊(A·(w + C₄) − y·2^(a−1)) / 2^a⌋` (= p(y) − y/2; A = ⌊a·2^(f+a)⌉ with a = 4 extra
//!    bits), `out = r + inside·g` (one mux), since `x/2 + p(y) = ReLU(x) + p(y) − |x|/2`.
//! 4. tanh: Horner at `F = f + 7` bits, `h = c₅; h = ⌊h·y/2^f⌋ + c_k` (k = 4..0),
//!    `h' = ⌊h/2^7⌋`, `t = 2^f + inside·(h' − 2^f)`,
//!    `out = s·2t − t` (two muxes).
//!
//! **Message flow.** msb (millionaire) → mux → millionaire (threshold) → products with
//! truncation (2 for GeLU, 5 for tanh) → trunc → mux (GeLU) / 2 muxes (tanh). All OT batches.
//!
//! **Valid input domain.** `|x| < 2^(ℓ−3)` (integer representation). Outside the central
//! interval the products act on large `y` and may wrap; their result is discarded exactly by the
//! multiplexer, so the output is still the asymptote.
//!
//! **Error bound.** Protocol = reference exactly. Reference vs the exact function: GeLU ≤ 9.4e−3
//! (BOLT's approximation error) + 4·2^−f rounding; tanh ≤ 7e−3 (the jump at 2.855) + 8·2^−f.
//! Tested in `tests/bolt.rs`.
//!
//! **Bytes per element.** GeLU: `M(ℓ)` (msb) + `2C(ℓ)` (mux) + `M(ℓ)` (threshold) + 2 products
//! (`2ℓ·C(ℓ)` + trunc each) + trunc + `2C(ℓ)` (mux); about 4 kB at ℓ = 37. tanh: three more
//! products and one more mux.
//!
//! **Security (semi-honest).** A composition of the toolkit's comparison, mux, product and
//! truncation protocols, each returning fresh uniform shares over Z_2^ℓ; all constants are
//! public; nothing is opened.

use super::toolkit::cmp::{drelu, lt_const};
use super::ctx::Party;
use super::toolkit::mul::mul_trunc;
use super::toolkit::mux::mux;
use super::nonlinear::recip::{add_public, add_shares, scale_public, sub_shares};
use super::toolkit::trunc::{trunc, TruncMode};
use crate::error::{Error, Result};
use crate::share::Ring;

const MODE: TruncMode = TruncMode::Faithful;
/// Extra fraction bits of GeLU's outer constant `a`.
const A_EXTRA: u32 = 4;
/// BOLT's GeLU: the polynomial covers `|x| < 2.7`.
const GELU_CUT: f64 = 2.7;
const GELU_C1: f64 = 4.90137;
const GELU_C2: f64 = 24.8227;
const GELU_C3: f64 = 31.6522;
const GELU_C4: f64 = 785.7725;
const GELU_A: f64 = 0.020849;
/// BOLT's tanh: the polynomial covers `|x| < 2.855`.
const TANH_CUT: f64 = 2.855;
const TANH_DEGREE: usize = 5;
/// Extra fraction bits of tanh's Horner accumulator (coefficients at `f + 7`; their rounding at
/// `f` bits alone would cost up to `2^−(f+1)·2.855^5 ≈ 0.02`).
const TANH_GUARD: u32 = 7;

/// Which function the spec evaluates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoltFn {
    Gelu,
    Tanh,
}

/// Public parameters: the function, ring and fraction bits, and the derived fixed-point constants.
#[derive(Clone, Debug, PartialEq)]
pub struct BoltSpec {
    pub function: BoltFn,
    pub ring: Ring,
    pub frac: u32,
    /// The central interval is `|x| < cut` (integer representation).
    pub cut: i64,
    /// GeLU: `[C₁, C₂, C₃, C₄ at f, A at f + A_EXTRA]`; tanh: `c₀..c₅` at `f + TANH_GUARD`.
    pub constants: Vec<i64>,
}

impl BoltSpec {
    pub fn gelu(ring: Ring, frac: u32) -> Result<BoltSpec> {
        let q = |v: f64, bits: u32| (v * (bits as f64).exp2()).round() as i64;
        let constants = vec![q(GELU_C1, frac), q(GELU_C2, frac), q(GELU_C3, frac), q(GELU_C4, frac), q(GELU_A, frac + A_EXTRA)];
        BoltSpec { function: BoltFn::Gelu, ring, frac, cut: q(GELU_CUT, frac), constants }.checked()
    }

    pub fn tanh(ring: Ring, frac: u32) -> Result<BoltSpec> {
        let scale = ((frac + TANH_GUARD) as f64).exp2();
        let unit = super::nonlinear::softmax::chebyshev_fit(|u| (TANH_CUT * u).tanh(), TANH_DEGREE);
        // Coefficients in y = TANH_CUT·u.
        let constants = unit.iter().enumerate().map(|(k, c)| (c / TANH_CUT.powi(k as i32) * scale).round() as i64).collect();
        BoltSpec { function: BoltFn::Tanh, ring, frac, cut: (TANH_CUT * (frac as f64).exp2()).round() as i64, constants }.checked()
    }

    /// Products inside the central interval stay below `2^(ℓ−2)`: the largest are GeLU's
    /// `(z + y − C₂)(z + C₃)`, both factors below `32·2^f`, and tanh's Horner step
    /// `h·y < 2^(f+7+1)·2^(f+2)`.
    fn checked(self) -> Result<BoltSpec> {
        let l = self.ring.bits();
        let need = 2 * self.frac + 10.max(TANH_GUARD + 3);
        if self.frac < A_EXTRA || need > l - 2 {
            return Err(Error::Config(format!("BOLT {:?} needs ℓ − 2 ≥ {need} (ℓ = {l}, frac = {})", self.function, self.frac)));
        }
        Ok(self)
    }

    /// Largest |x| (real value) the protocol accepts.
    pub fn input_bound(&self) -> f64 {
        ((self.ring.bits() - 3) as f64 - self.frac as f64).exp2()
    }
}

/// Two-party evaluation of the spec's function on shares `x`.
pub fn bolt_activation(p: &mut Party, spec: &BoltSpec, x: &[u64]) -> Result<Vec<u64>> {
    let ring = spec.ring;
    if x.is_empty() {
        return Ok(Vec::new());
    }
    p.ch.set_phase("bolt-sign");
    let s = drelu(p, ring, x)?;
    let relu = mux(p, ring, &s, x)?;
    let abs = sub_shares(ring, &scale_public(ring, &relu, 2), x);
    let inside = lt_const(p, ring, &abs, spec.cut)?;
    p.ch.set_phase("bolt-poly");
    match spec.function {
        BoltFn::Gelu => {
            let g = gelu_inner(p, spec, &abs)?;
            let sel = mux(p, ring, &inside, &g)?;
            Ok(add_shares(ring, &relu, &sel))
        }
        BoltFn::Tanh => {
            let h = horner(p, spec, &abs)?;
            let one = 1i64 << spec.frac;
            let dev = mux(p, ring, &inside, &add_public(p, ring, &h, -one))?;
            let t = add_public(p, ring, &dev, one);
            let signed = mux(p, ring, &s, &scale_public(ring, &t, 2))?;
            Ok(sub_shares(ring, &signed, &t))
        }
    }
}

/// `p(y) − y/2` at f bits (step 3).
fn gelu_inner(p: &mut Party, spec: &BoltSpec, y: &[u64]) -> Result<Vec<u64>> {
    let ring = spec.ring;
    let f = spec.frac;
    let [c1, c2, c3, c4, a] = gelu_constants(spec)?;
    let z = mul_trunc(p, ring, y, &add_public(p, ring, y, -c1), f, MODE)?;
    let left = add_public(p, ring, &add_shares(ring, &z, y), -c2);
    let right = add_public(p, ring, &z, c3);
    let w = mul_trunc(p, ring, &left, &right, f, MODE)?;
    // a·(w + C₄) − y/2 at 2f + A_EXTRA bits.
    let outer = scale_public(ring, &add_public(p, ring, &w, c4), a);
    let half_y = scale_public(ring, y, 1i64 << (f + A_EXTRA - 1));
    trunc(p, ring, &sub_shares(ring, &outer, &half_y), f + A_EXTRA, MODE)
}

fn gelu_constants(spec: &BoltSpec) -> Result<[i64; 5]> {
    spec.constants.as_slice().try_into().map_err(|_| Error::Config("BOLT GeLU needs five constants".into()))
}

/// Horner's rule at f bits on shares (step 4).
fn horner(p: &mut Party, spec: &BoltSpec, y: &[u64]) -> Result<Vec<u64>> {
    let ring = spec.ring;
    let c = &spec.constants;
    let top = *c.last().ok_or_else(|| Error::Config("BOLT tanh has no coefficients".into()))?;
    let mut h = add_public(p, ring, &vec![0; y.len()], top);
    for &ck in c[..c.len() - 1].iter().rev() {
        let hy = mul_trunc(p, ring, &h, y, spec.frac, MODE)?;
        h = add_public(p, ring, &hy, ck);
    }
    trunc(p, ring, &h, TANH_GUARD, MODE)
}

/// Cleartext mirror of [`bolt_activation`] (bit-exact).
pub fn reference(spec: &BoltSpec, x: &[i64]) -> Result<Vec<i64>> {
    let f = spec.frac;
    match spec.function {
        BoltFn::Gelu => {
            let [c1, c2, c3, c4, a] = gelu_constants(spec)?;
            Ok(x.iter()
                .map(|&x| {
                    let relu = x.max(0);
                    let y = x.abs();
                    if y >= spec.cut {
                        return relu;
                    }
                    let z = (y * (y - c1)) >> f;
                    let w = ((z + y - c2) * (z + c3)) >> f;
                    relu + ((a * (w + c4) - (y << (f + A_EXTRA - 1))) >> (f + A_EXTRA))
                })
                .collect())
        }
        BoltFn::Tanh => {
            let one = 1i64 << f;
            Ok(x.iter()
                .map(|&x| {
                    let y = x.abs();
                    let t = if y >= spec.cut {
                        one
                    } else {
                        let c = &spec.constants;
                        c[..c.len() - 1].iter().rev().fold(c[c.len() - 1], |h, &ck| ((h * y) >> f) + ck) >> TANH_GUARD
                    };
                    if x >= 0 {
                        t
                    } else {
                        -t
                    }
                })
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worst_error(spec: &BoltSpec, exact: impl Fn(f64) -> f64, range: f64) -> f64 {
        let scale = (spec.frac as f64).exp2();
        let xs: Vec<i64> = ((-range * scale) as i64..=(range * scale) as i64).collect();
        let got = reference(spec, &xs).unwrap();
        xs.iter().zip(&got).map(|(&x, &g)| (g as f64 / scale - exact(x as f64 / scale)).abs()).fold(0.0, f64::max)
    }

    fn gelu_exact(x: f64) -> f64 {
        0.5 * x * (1.0 + crate::model::erf(x / std::f64::consts::SQRT_2))
    }

    #[test]
    fn bolt_gelu_reference_has_bolts_published_error() {
        let spec = BoltSpec::gelu(Ring::new(37).unwrap(), 12).unwrap();
        let err = worst_error(&spec, gelu_exact, 8.0);
        assert!(err < 9.4e-3 + 4.0 / 4096.0 && err > 5e-3, "GeLU error {err}");
    }

    #[test]
    fn bolt_tanh_reference_is_within_its_bound() {
        let spec = BoltSpec::tanh(Ring::new(37).unwrap(), 12).unwrap();
        let err = worst_error(&spec, f64::tanh, 8.0);
        assert!(err < 7e-3 + 8.0 / 4096.0, "tanh error {err}");
    }

    #[test]
    fn narrow_rings_are_rejected() {
        assert!(BoltSpec::gelu(Ring::new(30).unwrap(), 12).is_err());
    }
}
