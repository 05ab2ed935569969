//! Fixed-point evaluation that mirrors, bit for bit, what the private protocol computes.
//!
//! # Exact-accumulator mode (FASTLMPI-style, [`QuantizedPiecewise::eval`])
//! * The input X is an integer at `in_frac` fraction bits (x = X / 2^in_frac).
//! * Knots are encoded as K_i = round(k_i · 2^in_frac). Segment i is selected iff
//!   K_{i−1} <= X < K_i (segment 0: X < K_0; the last segment: X >= K_last).
//! * Poly segment: M = round(centre · 2^in_frac), U = X − M, coefficients
//!   A_k = round(a_k · 2^(acc_frac − k·in_frac)), so every term A_k·U^k sits at acc_frac
//!   fraction bits and V = Σ_k A_k·U^k is an exact integer. Then ONE floor truncation:
//!   Y = floor(V / 2^(acc_frac − out_frac)). If the centre is not on the input grid the
//!   polynomial is first re-expanded (exactly) around M / 2^in_frac.
//! * A_0 additionally carries +2^(acc_frac − out_frac − 1) (half an output ulp), so the
//!   protocol's single floor rounds to nearest. This is data only: the protocol still computes
//!   exactly the floor above.
//! * Const(c): Y = round(c · 2^out_frac). Identity: X moved from in_frac to out_frac (floor).
//! * Rounding is half away from zero (f64::round) everywhere.
//!
//! Error bound: with p_q the polynomial with the dequantised coefficients A_k / 2^(acc−k·in)
//! (A_0 without the half-ulp) around M / 2^in, −2^−(out_frac+1) <= p_q(x) − Y / 2^out_frac
//! < 2^−(out_frac+1): the final truncation is the only rounding after the coefficients.
//! Const segments obey the same bound; Identity is exact when out_frac >= in_frac.
//!
//! # Horner mode (BOLT-style, [`QuantizedPiecewise`] not needed: [`eval_fixed_horner`])
//! Coefficients and input at `frac`; y = A_D; for k = D−1..0: y = floor(y·U / 2^frac) + A_k.
//! One truncation per multiplication, as in a 2PC evaluation with truncation after every
//! product.

use serde::{Deserialize, Serialize};

use super::piecewise::{taylor_shift, PiecewisePoly, SegmentKind};
use crate::{Error, Result};

/// Scales of the exact-accumulator evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixedEvalSpec {
    /// Fraction bits of the input X (and of the knots and centres).
    pub in_frac: u32,
    /// Fraction bits of the accumulator V; must be >= degree·in_frac and >= out_frac.
    pub acc_frac: u32,
    /// Fraction bits of the output Y.
    pub out_frac: u32,
}

impl FixedEvalSpec {
    /// Checks the spec against a polynomial degree.
    pub fn validate(&self, degree: usize) -> Result<()> {
        let needed = degree as u64 * self.in_frac as u64;
        if (self.acc_frac as u64) < needed {
            return Err(Error::Config(format!(
                "acc_frac {} < degree {} × in_frac {}: coefficient scales would be negative",
                self.acc_frac, degree, self.in_frac
            )));
        }
        if self.acc_frac < self.out_frac {
            return Err(Error::Config(format!("acc_frac {} < out_frac {}", self.acc_frac, self.out_frac)));
        }
        if self.acc_frac > 120 || self.in_frac > 40 || self.out_frac > 60 {
            return Err(Error::Config(format!("fixed-point spec out of range: {self:?}")));
        }
        Ok(())
    }

    /// Scale exponent of coefficient k: A_k = round(a_k · 2^(acc_frac − k·in_frac)).
    pub fn coeff_shift(&self, k: usize) -> i32 {
        self.acc_frac as i32 - (k as i32) * self.in_frac as i32
    }

    /// The value a coefficient takes after quantisation at degree k.
    pub fn quantize_coeff(&self, a: f64, k: usize) -> f64 {
        let s = self.coeff_shift(k);
        (a * pow2(s)).round() / pow2(s)
    }

    /// Snaps a real to the input grid (what the protocol does to knots and centres).
    pub fn snap_input(&self, x: f64) -> f64 {
        (x * pow2(self.in_frac as i32)).round() / pow2(self.in_frac as i32)
    }
}

pub(crate) fn pow2(e: i32) -> f64 {
    2f64.powi(e)
}

/// Integer form of one segment, as the protocol consumes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QuantizedSegment {
    /// Y = floor(Σ_k coeffs[k]·(X − centre)^k / 2^(acc_frac − out_frac)).
    /// Coefficients are i128 because A_0 sits at acc_frac bits (> 63 bits for degree-6 sets).
    Poly { centre: i64, coeffs: Vec<i128> },
    /// Y = value (already at out_frac).
    Const(i64),
    /// Y = X moved from in_frac to out_frac (floor).
    Identity,
}

/// The integer knots, centres and coefficients the protocol consumes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuantizedPiecewise {
    pub spec: FixedEvalSpec,
    /// K_i at in_frac, strictly increasing; segment i iff K_{i−1} <= X < K_i.
    pub knots: Vec<i64>,
    pub segments: Vec<QuantizedSegment>,
}

fn to_i128(v: f64, what: &str) -> Result<i128> {
    let r = v.round();
    if !r.is_finite() || r.abs() >= 1.0e36 {
        return Err(Error::Config(format!("{what} = {v} does not fit 120 bits")));
    }
    Ok(r as i128)
}

fn to_i64(v: f64, what: &str) -> Result<i64> {
    let r = v.round();
    if !r.is_finite() || r.abs() >= 9.0e18 {
        return Err(Error::Config(format!("{what} = {v} does not fit 63 bits")));
    }
    Ok(r as i64)
}

impl PiecewisePoly {
    /// Integer knots, centres and coefficients at `spec` (see the module doc).
    pub fn quantize(&self, spec: FixedEvalSpec) -> Result<QuantizedPiecewise> {
        self.validate()?;
        spec.validate(self.degree())?;
        let in_scale = pow2(spec.in_frac as i32);
        let knots = self.knots.iter().map(|k| to_i64(k * in_scale, "knot")).collect::<Result<Vec<_>>>()?;
        if knots.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::Config(format!("two knots collide at in_frac = {}", spec.in_frac)));
        }
        let segments =
            self.segments.iter().map(|s| quantize_segment(&s.kind, spec)).collect::<Result<Vec<_>>>()?;
        Ok(QuantizedPiecewise { spec, knots, segments })
    }

    /// Fixed-point output for input X (see the module doc). Errors only on overflow.
    pub fn eval_fixed(&self, x: i64, spec: FixedEvalSpec) -> Result<i64> {
        self.quantize(spec)?.eval(x)
    }

    /// BOLT-style Horner evaluation with a truncation after every multiplication.
    pub fn eval_fixed_horner(&self, x: i64, frac: u32) -> Result<i64> {
        eval_fixed_horner(self, x, frac)
    }

    /// Bits of the largest |V| over the representable inputs of `domain` that fall in Poly
    /// segments (the protocol checks it fits the HE plaintext modulus).
    pub fn max_accumulator_bits(&self, spec: FixedEvalSpec, domain: (f64, f64)) -> Result<u32> {
        Ok(self.quantize(spec)?.accumulator_profile(domain)?.max_v_bits)
    }
}

fn quantize_segment(kind: &SegmentKind, spec: FixedEvalSpec) -> Result<QuantizedSegment> {
    Ok(match kind {
        SegmentKind::Poly { centre, coeffs } => {
            let m = to_i64(centre * pow2(spec.in_frac as i32), "centre")?;
            let snapped = m as f64 / pow2(spec.in_frac as i32);
            let coeffs =
                if snapped == *centre { coeffs.clone() } else { taylor_shift(coeffs, snapped - centre) };
            let mut ints = coeffs
                .iter()
                .enumerate()
                .map(|(k, a)| to_i128(a * pow2(spec.coeff_shift(k)), "coefficient"))
                .collect::<Result<Vec<_>>>()?;
            ints[0] += rounding_bias(spec);
            QuantizedSegment::Poly { centre: m, coeffs: ints }
        }
        SegmentKind::Const(c) => QuantizedSegment::Const(to_i64(c * pow2(spec.out_frac as i32), "constant")?),
        SegmentKind::Identity => QuantizedSegment::Identity,
    })
}

/// Half an output ulp at the accumulator scale: turns the protocol's floor into rounding.
pub fn rounding_bias(spec: FixedEvalSpec) -> i128 {
    match spec.acc_frac.checked_sub(spec.out_frac + 1) {
        Some(shift) if shift < 126 => 1i128 << shift,
        _ => 0,
    }
}

/// The final right shift acc_frac − out_frac, checked (a loaded file may carry any spec).
fn output_shift(spec: FixedEvalSpec) -> Result<u32> {
    match spec.acc_frac.checked_sub(spec.out_frac) {
        Some(s) if s < 127 => Ok(s),
        _ => Err(Error::Config(format!("invalid fixed-point spec {spec:?}"))),
    }
}

fn overflow() -> Error {
    Error::Input("fixed-point evaluation overflows 127 bits (input far outside the domain)".into())
}

/// V = Σ A_k U^k with overflow checks, plus Σ |A_k U^k| (the bound on every partial sum).
fn accumulate(coeffs: &[i128], u: i128) -> Result<(i128, i128)> {
    let mut power: i128 = 1;
    let mut v: i128 = 0;
    let mut abs_sum: i128 = 0;
    for (k, &a) in coeffs.iter().enumerate() {
        if k > 0 {
            power = power.checked_mul(u).ok_or_else(overflow)?;
        }
        let term = a.checked_mul(power).ok_or_else(overflow)?;
        v = v.checked_add(term).ok_or_else(overflow)?;
        abs_sum = abs_sum.checked_add(term.checked_abs().ok_or_else(overflow)?).ok_or_else(overflow)?;
    }
    Ok((v, abs_sum))
}

fn shift_frac(x: i64, from: u32, to: u32) -> Result<i64> {
    if to >= from {
        let factor = 1i64.checked_shl(to - from).filter(|f| *f > 0).ok_or_else(overflow)?;
        x.checked_mul(factor).ok_or_else(overflow)
    } else {
        Ok(x.checked_shr(from - to).unwrap_or(if x < 0 { -1 } else { 0 }))
    }
}

/// Largest magnitudes met by the exact-accumulator evaluation over a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccumulatorProfile {
    /// Bits of max |V| (magnitude, sign excluded).
    pub max_v_bits: u32,
    /// Bits of max Σ_k |A_k U^k|: bounds every partial sum, whatever the summation order.
    pub max_term_sum_bits: u32,
    /// Bits of max |U|^degree (the largest power the protocol forms).
    pub max_power_bits: u32,
}

fn bits(v: i128) -> u32 {
    128 - v.unsigned_abs().leading_zeros()
}

/// Most inputs a domain scan will visit (keeps a mistaken range from hanging).
const MAX_SCAN: i64 = 1 << 26;

impl QuantizedPiecewise {
    pub fn segment_index(&self, x: i64) -> usize {
        self.knots.partition_point(|&k| k <= x)
    }

    /// Y at out_frac for input X at in_frac.
    fn segment(&self, x: i64) -> Result<&QuantizedSegment> {
        self.segments
            .get(self.segment_index(x))
            .ok_or_else(|| Error::Config("quantized set has fewer segments than knots + 1".into()))
    }

    pub fn eval(&self, x: i64) -> Result<i64> {
        let spec = self.spec;
        match self.segment(x)? {
            QuantizedSegment::Poly { centre, coeffs } => {
                let u = x as i128 - *centre as i128;
                let (v, _) = accumulate(coeffs, u)?;
                let y = v >> output_shift(spec)?;
                i64::try_from(y).map_err(|_| overflow())
            }
            QuantizedSegment::Const(c) => Ok(*c),
            QuantizedSegment::Identity => shift_frac(x, spec.in_frac, spec.out_frac),
        }
    }

    /// Integer inputs X covering `domain` at in_frac.
    pub fn input_range(&self, domain: (f64, f64)) -> Result<std::ops::RangeInclusive<i64>> {
        let scale = pow2(self.spec.in_frac as i32);
        let lo = to_i64((domain.0 * scale).ceil(), "domain start")?;
        let hi = to_i64((domain.1 * scale).floor(), "domain end")?;
        if hi < lo || hi - lo > MAX_SCAN {
            return Err(Error::Input(format!(
                "domain {domain:?} is empty or has more than 2^26 inputs at in_frac {}",
                self.spec.in_frac
            )));
        }
        Ok(lo..=hi)
    }

    /// Largest |V|, Σ|A_k U^k| and |U|^degree over every representable input of `domain`.
    pub fn accumulator_profile(&self, domain: (f64, f64)) -> Result<AccumulatorProfile> {
        let mut max_v: i128 = 0;
        let mut max_sum: i128 = 0;
        let mut max_power: i128 = 0;
        for x in self.input_range(domain)? {
            if let QuantizedSegment::Poly { centre, coeffs } = self.segment(x)? {
                let u = x as i128 - *centre as i128;
                let (v, sum) = accumulate(coeffs, u)?;
                let degree = coeffs.len().saturating_sub(1) as u32;
                let power = u.unsigned_abs().checked_pow(degree).ok_or_else(overflow)?;
                max_v = max_v.max(v.abs());
                max_sum = max_sum.max(sum);
                max_power = max_power.max(i128::try_from(power).map_err(|_| overflow())?);
            }
        }
        Ok(AccumulatorProfile {
            max_v_bits: bits(max_v),
            max_term_sum_bits: bits(max_sum),
            max_power_bits: bits(max_power),
        })
    }
}

/// BOLT-style evaluation: input, coefficients and output at `frac`; Horner in U = X − M
/// with floor(·/2^frac) after every multiplication. Knots and centres at `frac`.
pub fn eval_fixed_horner(poly: &PiecewisePoly, x: i64, frac: u32) -> Result<i64> {
    if frac > 40 {
        return Err(Error::Config(format!("frac {frac} too large")));
    }
    let scale = pow2(frac as i32);
    let idx = poly
        .knots
        .iter()
        .map(|k| to_i64(k * scale, "knot"))
        .collect::<Result<Vec<_>>>()?
        .partition_point(|&k| k <= x);
    let segment =
        poly.segments.get(idx).ok_or_else(|| Error::Config("segments and knots disagree".into()))?;
    match &segment.kind {
        SegmentKind::Poly { centre, coeffs } => {
            let m = to_i64(centre * scale, "centre")?;
            let coeffs =
                coeffs.iter().map(|a| to_i64(a * scale, "coefficient")).collect::<Result<Vec<_>>>()?;
            let u = x as i128 - m as i128;
            let mut y: i128 = *coeffs.last().unwrap_or(&0) as i128;
            for &a in coeffs.iter().rev().skip(1) {
                y = (y.checked_mul(u).ok_or_else(overflow)? >> frac) + a as i128;
            }
            i64::try_from(y).map_err(|_| overflow())
        }
        SegmentKind::Const(c) => to_i64(c * scale, "constant"),
        SegmentKind::Identity => Ok(x),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approx::piecewise::SegmentKind;

    fn sample() -> PiecewisePoly {
        PiecewisePoly::new(
            vec![-2.0, 2.0],
            vec![
                SegmentKind::Const(0.0),
                SegmentKind::Poly { centre: 0.0, coeffs: vec![0.25, 0.5, 0.125, -0.01] },
                SegmentKind::Identity,
            ],
        )
        .unwrap()
    }

    #[test]
    fn floor_bound_holds_against_dequantised_polynomial() {
        let spec = FixedEvalSpec { in_frac: 8, acc_frac: 40, out_frac: 10 };
        let p = sample();
        let q = p.quantize(spec).unwrap();
        let QuantizedSegment::Poly { coeffs, .. } = &q.segments[1] else { panic!() };
        let deq: Vec<f64> = coeffs
            .iter()
            .enumerate()
            .map(|(k, &a)| {
                let unbiased = if k == 0 { a - rounding_bias(spec) } else { a };
                unbiased as f64 / pow2(spec.coeff_shift(k))
            })
            .collect();
        let half_ulp = 0.5 / 1024.0;
        let mut worst = 0.0f64;
        for x in -512..512 {
            let y = q.eval(x).unwrap() as f64 / 1024.0;
            let exact = crate::approx::piecewise::horner(&deq, x as f64 / 256.0);
            let gap = exact - y;
            worst = worst.max(gap.abs());
            assert!((-half_ulp - 1e-12..half_ulp + 1e-12).contains(&gap), "x={x} gap={gap}");
        }
        // The output ulp is visible: the bound is tight, not vacuous.
        assert!(worst > 0.25 / 1024.0);
    }

    #[test]
    fn tails_and_segment_selection_follow_the_convention() {
        let spec = FixedEvalSpec { in_frac: 8, acc_frac: 40, out_frac: 10 };
        let q = sample().quantize(spec).unwrap();
        assert_eq!(q.eval(-513).unwrap(), 0);
        assert_eq!(q.segment_index(-512), 1);
        assert_eq!(q.eval(512).unwrap(), 512 * 4);
        // Identity floors when the output has fewer fraction bits.
        let narrow = FixedEvalSpec { in_frac: 8, acc_frac: 40, out_frac: 6 };
        assert_eq!(sample().quantize(narrow).unwrap().eval(1000).unwrap(), 1000 >> 2);
        assert_eq!(sample().quantize(narrow).unwrap().eval(1001).unwrap(), 250);
    }

    #[test]
    fn off_grid_centre_is_reexpanded_exactly() {
        let p = PiecewisePoly::new(
            vec![],
            vec![SegmentKind::Poly { centre: 0.3, coeffs: vec![1.0, -0.5, 0.25] }],
        )
        .unwrap();
        let spec = FixedEvalSpec { in_frac: 10, acc_frac: 50, out_frac: 20 };
        for x in [-700i64, 0, 307, 900] {
            let y = p.eval_fixed(x, spec).unwrap() as f64 / pow2(20);
            assert!((y - p.eval(x as f64 / 1024.0)).abs() < 2e-6);
        }
    }

    #[test]
    fn spec_requires_enough_accumulator_bits() {
        // Degree 3 at in_frac 12 needs acc_frac >= 36.
        let short = FixedEvalSpec { in_frac: 12, acc_frac: 35, out_frac: 12 };
        assert!(sample().quantize(short).is_err());
        assert!(sample().quantize(FixedEvalSpec { acc_frac: 36, ..short }).is_ok());
    }

    #[test]
    fn horner_mode_truncates_after_each_product() {
        let p = sample();
        // 0.25 + 0.5u + 0.125u² − 0.01u³ at frac 8, u = 1.5: A = [64, 128, 32, -3]
        let x = 384;
        let mut y: i128 = -3;
        for a in [32i128, 128, 64] {
            y = ((y * 384) >> 8) + a;
        }
        assert_eq!(p.eval_fixed_horner(x, 8).unwrap() as i128, y);
    }

    #[test]
    fn overflow_is_an_error_not_a_panic() {
        let p = PiecewisePoly::new(
            vec![],
            vec![SegmentKind::Poly { centre: 0.0, coeffs: vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0] }],
        )
        .unwrap();
        let spec = FixedEvalSpec { in_frac: 12, acc_frac: 72, out_frac: 12 };
        assert!(p.eval_fixed(i64::MAX / 2, spec).is_err());
    }
}
