//! Error measurement, the published GeLU approximations used for comparison, and the JSON
//! file the engine loads.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::fit::{Continuity, Method};
use super::fixed::{pow2, AccumulatorProfile, FixedEvalSpec, QuantizedPiecewise};
use super::piecewise::{recentre, PiecewisePoly, SegmentKind};
use crate::{Error, Result};

/// Max and mean absolute error over a grid, and where the max is.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorStats {
    pub max_abs: f64,
    pub mean_abs: f64,
    pub argmax: f64,
    pub points: usize,
}

/// Errors of one approximation against the reference function.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorReport {
    /// f64 evaluation of the (rounded) coefficients.
    pub f64: ErrorStats,
    /// Exact-accumulator fixed-point evaluation (what the protocol computes).
    pub fixed: ErrorStats,
    /// BOLT-style Horner evaluation at in_frac (truncation after every product).
    pub horner: ErrorStats,
}

/// Error of one segment (f64 and fixed point) over its part of the range.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegmentError {
    pub index: usize,
    pub lo: Option<f64>,
    pub hi: Option<f64>,
    pub f64_max_abs: f64,
    pub fixed_max_abs: f64,
}

/// Most grid points measured; beyond this the representable inputs are subsampled evenly.
const MAX_POINTS: i64 = 1 << 21;

struct Accumulator {
    max: f64,
    sum: f64,
    argmax: f64,
    n: usize,
}

impl Accumulator {
    fn new() -> Self {
        Accumulator { max: 0.0, sum: 0.0, argmax: f64::NAN, n: 0 }
    }
    fn add(&mut self, x: f64, err: f64) {
        let e = err.abs();
        if e > self.max || self.n == 0 {
            self.max = e;
            self.argmax = x;
        }
        self.sum += e;
        self.n += 1;
    }
    fn stats(&self) -> ErrorStats {
        ErrorStats {
            max_abs: self.max,
            mean_abs: self.sum / self.n.max(1) as f64,
            argmax: self.argmax,
            points: self.n,
        }
    }
}

/// Every representable input at in_frac over `range` (evenly subsampled past 2^21 points).
pub fn input_grid(spec: FixedEvalSpec, range: (f64, f64)) -> Result<Vec<i64>> {
    let scale = pow2(spec.in_frac as i32);
    let lo = (range.0 * scale).ceil();
    let hi = (range.1 * scale).floor();
    if !(lo <= hi) || hi - lo > 1e15 {
        return Err(Error::Input(format!("invalid range {range:?}")));
    }
    let (lo, hi) = (lo as i64, hi as i64);
    let stride = ((hi - lo) / MAX_POINTS + 1).max(1);
    Ok((lo..=hi).step_by(stride as usize).collect())
}

/// Errors of `poly` against `f` on the representable inputs of `range`.
pub fn measure(
    poly: &PiecewisePoly,
    quantized: &QuantizedPiecewise,
    f: fn(f64) -> f64,
    range: (f64, f64),
) -> Result<(ErrorReport, Vec<SegmentError>)> {
    let spec = quantized.spec;
    let in_scale = pow2(spec.in_frac as i32);
    let out_scale = pow2(spec.out_frac as i32);
    let (mut e64, mut efix, mut ehorner) = (Accumulator::new(), Accumulator::new(), Accumulator::new());
    let mut per_segment: Vec<(f64, f64)> = vec![(0.0, 0.0); poly.segments.len()];
    for xi in input_grid(spec, range)? {
        let x = xi as f64 / in_scale;
        let want = f(x);
        let d64 = poly.eval(x) - want;
        let dfix = quantized.eval(xi)? as f64 / out_scale - want;
        let dh = poly.eval_fixed_horner(xi, spec.in_frac)? as f64 / in_scale - want;
        e64.add(x, d64);
        efix.add(x, dfix);
        ehorner.add(x, dh);
        let s = &mut per_segment[quantized.segment_index(xi)];
        s.0 = s.0.max(d64.abs());
        s.1 = s.1.max(dfix.abs());
    }
    let segments = poly
        .segments
        .iter()
        .zip(per_segment)
        .enumerate()
        .map(|(index, (s, (a, b)))| SegmentError {
            index,
            lo: s.lo,
            hi: s.hi,
            f64_max_abs: a,
            fixed_max_abs: b,
        })
        .collect();
    Ok((ErrorReport { f64: e64.stats(), fixed: efix.stats(), horner: ehorner.stats() }, segments))
}

/// One row of the `--compare` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComparisonRow {
    pub name: String,
    pub segments: usize,
    pub degree: usize,
    /// The spec used for its fixed-point column (acc_frac raised to degree·in_frac if needed).
    pub spec: FixedEvalSpec,
    pub errors: ErrorReport,
    pub accumulator: AccumulatorProfile,
}

/// Everything written to results/approx/FUNC.json; the engine loads `quantized`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApproxFile {
    pub function: String,
    /// The exact command that produced this file.
    pub command: String,
    pub note: String,
    pub method: Method,
    pub continuity: Continuity,
    pub degree: usize,
    pub segments: usize,
    /// Range the error was minimised and measured over.
    pub range: (f64, f64),
    pub spec: FixedEvalSpec,
    pub poly: PiecewisePoly,
    pub quantized: QuantizedPiecewise,
    pub errors: ErrorReport,
    pub segment_errors: Vec<SegmentError>,
    pub accumulator: AccumulatorProfile,
    /// Published approximations measured the same way (gelu --compare only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub comparison: Vec<ComparisonRow>,
}

impl ApproxFile {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parse and validate a set from JSON text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let file: ApproxFile = serde_json::from_str(text).map_err(|e| Error::Config(format!("{origin}: {e}")))?;
        file.poly.validate()?;
        if file.quantized.spec != file.spec || file.quantized.segments.len() != file.quantized.knots.len() + 1 {
            return Err(Error::Config(format!("{origin}: inconsistent quantized set")));
        }
        Ok(file)
    }

    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| Error::Config(format!("JSON encoding: {e}")))
    }
}

/// A published polynomial given in powers of x on [lo, hi], re-expanded around the
/// segment's midpoint (snapped to 2^-12) so that its fixed-point evaluation is as accurate as
/// ours (the function itself is unchanged).
fn centred(lo: f64, hi: f64, coeffs_in_x: &[f64]) -> SegmentKind {
    let centre = (((lo + hi) / 2.0) * 4096.0).round() / 4096.0;
    SegmentKind::Poly { centre, coeffs: recentre(coeffs_in_x, centre) }
}

/// FASTLMPI's 5-segment GeLU (authors' code `gelu_test.cpp`).
pub fn fastlmpi_gelu() -> Result<PiecewisePoly> {
    PiecewisePoly::new(
        vec![-5.075, -1.414, 1.414, 5.075],
        vec![
            SegmentKind::Const(0.0),
            centred(-5.075, -1.414, &[-0.568686678, -0.529288810, -0.183509590, -0.028070202, -0.001597741]),
            centred(-1.414, 1.414, &[0.001193207, 0.5, 0.385858026, 0.0, -0.045101361]),
            centred(1.414, 5.075, &[-0.438406187, 1.340789252, -0.087184212, 0.007334718]),
            SegmentKind::Identity,
        ],
    )
}

/// BOLT's GeLU: 0.5x + p(|x|) on [−2.7, 2.7] (degree 4), ReLU outside.
pub fn bolt_gelu() -> Result<PiecewisePoly> {
    let p = [
        0.001620808531841547,
        -0.03798164612714154,
        0.5410550166368381,
        -0.18352506127082727,
        0.020848611754127593,
    ];
    // p(|x|) + x/2 written as a polynomial in x on each side of 0.
    let right = [p[0], p[1] + 0.5, p[2], p[3], p[4]];
    let left = [p[0], -p[1] + 0.5, p[2], -p[3], p[4]];
    PiecewisePoly::new(
        vec![-2.7, 0.0, 2.7],
        vec![
            SegmentKind::Const(0.0),
            centred(-2.7, 0.0, &left),
            centred(0.0, 2.7, &right),
            SegmentKind::Identity,
        ],
    )
}

/// BumbleBee's GeLU (degree 3 and 6 pieces, ∓1e-4 tails).
pub fn bumblebee_gelu() -> Result<PiecewisePoly> {
    PiecewisePoly::new(
        vec![-5.0, -1.97, 3.0],
        vec![
            SegmentKind::Const(-1e-4),
            centred(
                -5.0,
                -1.97,
                &[-0.5054031199708174, -0.4222658115198386, -0.1180761295118195, -0.0110341340306157],
            ),
            centred(
                -1.97,
                3.0,
                &[
                    0.0085263215410380,
                    0.5,
                    0.360329269278962,
                    0.0,
                    -0.037688200365904,
                    0.0,
                    0.0018067462606141,
                ],
            ),
            SegmentKind::Poly { centre: 0.0, coeffs: vec![-1e-4, 1.0] },
        ],
    )
}

/// Measures a published approximation at `spec` (acc_frac raised to degree·in_frac + 8 if
/// its degree needs it).
pub fn compare_row(
    name: &str,
    poly: &PiecewisePoly,
    f: fn(f64) -> f64,
    spec: FixedEvalSpec,
    range: (f64, f64),
) -> Result<ComparisonRow> {
    let degree = poly.degree();
    // Same headroom as our default (8 bits above degree·in_frac) for the top coefficient.
    let acc_frac = spec.acc_frac.max(degree as u32 * spec.in_frac + 8);
    let spec = FixedEvalSpec { acc_frac, ..spec };
    let quantized = poly.quantize(spec)?;
    let (errors, _) = measure(poly, &quantized, f, range)?;
    Ok(ComparisonRow {
        name: name.to_string(),
        segments: poly.segments.len(),
        degree,
        spec,
        errors,
        accumulator: quantized.accumulator_profile(range)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approx::funcs::gelu;

    fn f64_max_error(p: &PiecewisePoly) -> f64 {
        (0..=160_000).map(|i| -8.0 + i as f64 * 1e-4).fold(0.0f64, |m, x| m.max((p.eval(x) - gelu(x)).abs()))
    }

    #[test]
    fn published_gelu_errors_match_the_reference_table() {
        // paper-and-protocols.md §3: 4.33e-3, 9.36e-3, 3.33e-2 on [−8, 8].
        assert!((f64_max_error(&fastlmpi_gelu().unwrap()) - 4.33e-3).abs() < 0.05e-3);
        assert!((f64_max_error(&bolt_gelu().unwrap()) - 9.36e-3).abs() < 0.05e-3);
        assert!((f64_max_error(&bumblebee_gelu().unwrap()) - 3.33e-2).abs() < 0.05e-2);
    }
}
