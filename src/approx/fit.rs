//! Fitting one polynomial segment: least squares or minimax (Lawson's iteratively reweighted
//! least squares), with point constraints (continuity) and quantisation-aware refitting.
//!
//! * Basis: Chebyshev polynomials T_j(u/h), u = x − centre, h = the segment's half-width; this
//!   keeps the least-squares problem well conditioned. Coefficients are converted to monomials
//!   in u at the end.
//! * Least squares: Householder QR on the Chebyshev design matrix (no normal equations).
//! * Minimax: Lawson's algorithm. Each iteration solves a weighted least-squares problem and
//!   multiplies each weight by |residual|. With weights summing to 1, √(Σ w r²) of the weighted
//!   solution is a lower bound of the minimax error on the grid, and the max |r| of any iterate
//!   an upper bound; we stop when they agree within `tol` (near-equioscillation certificate)
//!   and keep the best iterate, whose max error is therefore never above least squares'
//!   (the first iterate is the least-squares solution).
//! * Constraints C·c = d are eliminated by parametrising c = c₀ + N·z (QR of Cᵀ).
//! * Quantisation-aware refit: from the highest degree down, each monomial coefficient is
//!   rounded to its fixed-point scale and frozen (an extra equality constraint), and the
//!   lower ones are refitted, so they absorb most of the rounding error. Without continuity
//!   constraints the result is compared with plain rounding of the first fit and the better
//!   one is kept; with constraints the refit is always kept (it preserves them).

use serde::{Deserialize, Serialize};

use super::fixed::FixedEvalSpec;
use super::funcs::Linear;
use super::linalg::{dot, least_squares, solve_constraints, Matrix};
use super::piecewise::horner;
use crate::{Error, Result};

/// Fitting criterion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Least squares on the fitting grid.
    Lsq,
    /// Minimax (smallest maximum error) on the fitting grid.
    Minimax,
}

/// Continuity imposed at the knots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Continuity {
    None,
    /// Value continuity.
    C0,
    /// Value and first-derivative continuity.
    C1,
}

/// Precision of one fit: grid density and Lawson's stopping rule.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FitEffort {
    pub points_per_coeff: usize,
    pub tol: f64,
    pub max_iter: usize,
}

pub(crate) const SEARCH_EFFORT: FitEffort = FitEffort { points_per_coeff: 24, tol: 1e-2, max_iter: 60 };
pub(crate) const FINAL_EFFORT: FitEffort = FitEffort { points_per_coeff: 64, tol: 1e-4, max_iter: 400 };

/// The polynomial must take `value` (derivative = false) or have slope `value` at `x`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PointConstraint {
    pub x: f64,
    pub derivative: bool,
    pub value: f64,
}

/// One segment to fit: f ≈ offset + Σ_{k ∈ degrees} c_k (x − centre)^k on [lo, hi].
#[derive(Clone, Debug)]
pub(crate) struct SegmentProblem {
    pub f: fn(f64) -> f64,
    pub lo: f64,
    pub hi: f64,
    pub centre: f64,
    /// Known linear part (symmetry offset), added back to the fitted remainder.
    pub offset: Linear,
    /// Powers the remainder may use (all of 0..=D, or only the even/odd ones).
    pub degrees: Vec<usize>,
    /// Constraints on the full polynomial (offset included).
    pub constraints: Vec<PointConstraint>,
}

/// A fitted segment.
#[derive(Clone, Debug)]
pub(crate) struct SegmentFit {
    /// Monomial coefficients in u = x − centre (offset included), already rounded to the
    /// fixed-point scale when a spec was given.
    pub coeffs: Vec<f64>,
    /// Max |f − p| on the fitting grid, with the rounded coefficients.
    pub max_err: f64,
}

/// Monomial coefficients (in t) of T_0..T_n.
fn chebyshev_monomials(n: usize) -> Vec<Vec<f64>> {
    let mut t: Vec<Vec<f64>> = vec![vec![1.0]];
    if n >= 1 {
        t.push(vec![0.0, 1.0]);
    }
    for j in 2..=n {
        let mut next = vec![0.0; j + 1];
        for (k, &c) in t[j - 1].iter().enumerate() {
            next[k + 1] += 2.0 * c;
        }
        for (k, &c) in t[j - 2].iter().enumerate() {
            next[k] -= c;
        }
        t.push(next);
    }
    t
}

/// (T_0..T_n)(t) and their derivatives.
fn chebyshev_values(n: usize, t: f64) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0.0; n + 1];
    let mut d = vec![0.0; n + 1];
    v[0] = 1.0;
    if n >= 1 {
        v[1] = t;
        d[1] = 1.0;
    }
    for j in 2..=n {
        v[j] = 2.0 * t * v[j - 1] - v[j - 2];
        d[j] = 2.0 * v[j - 1] + 2.0 * t * d[j - 1] - d[j - 2];
    }
    (v, d)
}

/// Chebyshev–Lobatto points of [lo, hi] (dense near the ends, where minimax errors peak).
pub(crate) fn lobatto_grid(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let n = n.max(2);
    let (mid, half) = ((lo + hi) / 2.0, (hi - lo) / 2.0);
    (0..n).map(|i| mid - half * (std::f64::consts::PI * i as f64 / (n - 1) as f64).cos()).collect()
}

/// The linear algebra of one segment problem, in the Chebyshev basis.
struct Basis {
    centre: f64,
    half_width: f64,
    degrees: Vec<usize>,
    cheb: Vec<Vec<f64>>,
}

impl Basis {
    fn new(p: &SegmentProblem) -> Self {
        let half_width = (p.hi - p.centre).abs().max((p.centre - p.lo).abs()).max(1e-300);
        let max_deg = p.degrees.iter().copied().max().unwrap_or(0);
        Basis { centre: p.centre, half_width, degrees: p.degrees.clone(), cheb: chebyshev_monomials(max_deg) }
    }

    fn len(&self) -> usize {
        self.degrees.len()
    }

    fn row(&self, x: f64, derivative: bool) -> Vec<f64> {
        let max_deg = self.cheb.len() - 1;
        let (v, d) = chebyshev_values(max_deg, (x - self.centre) / self.half_width);
        self.degrees.iter().map(|&j| if derivative { d[j] / self.half_width } else { v[j] }).collect()
    }

    /// Row giving the monomial coefficient of u^k from the Chebyshev coefficients.
    fn monomial_row(&self, k: usize) -> Vec<f64> {
        let scale = self.half_width.powi(k as i32);
        self.degrees.iter().map(|&j| self.cheb[j].get(k).copied().unwrap_or(0.0) / scale).collect()
    }

    fn to_monomials(&self, c: &[f64], degree: usize) -> Vec<f64> {
        (0..=degree).map(|k| dot(&self.monomial_row(k), c)).collect()
    }
}

/// The offset a + b·x written in u = x − centre.
fn offset_monomials(offset: Linear, centre: f64, degree: usize) -> Vec<f64> {
    let mut m = vec![0.0; degree + 1];
    m[0] = offset.a + offset.b * centre;
    if degree >= 1 {
        m[1] = offset.b;
    }
    m
}

/// Solves the (weighted) problem on the affine set of constraint solutions.
fn solve(
    design: &Matrix,
    target: &[f64],
    cons: &Matrix,
    rhs: &[f64],
    method: Method,
    effort: FitEffort,
) -> Option<Vec<f64>> {
    let n = design.cols;
    let sub = solve_constraints(cons, rhs, n)?;
    let free = sub.basis.cols;
    let shifted: Vec<f64> = target.iter().zip(design.mul_vec(&sub.origin)).map(|(y, a)| y - a).collect();
    let z = if free == 0 {
        Vec::new()
    } else {
        let reduced = design.mul(&sub.basis);
        match method {
            Method::Lsq => least_squares(&reduced, &shifted)?,
            Method::Minimax => lawson(&reduced, &shifted, effort)?,
        }
    };
    let bz = sub.basis.mul_vec(&z);
    Some(sub.origin.iter().zip(bz).map(|(o, b)| o + b).collect())
}

/// Discrete minimax by Lawson's algorithm (see the module doc).
pub(crate) fn lawson(a: &Matrix, y: &[f64], effort: FitEffort) -> Option<Vec<f64>> {
    let m = a.rows;
    let mut w = vec![1.0 / m as f64; m];
    let mut best: Option<(f64, Vec<f64>)> = None;
    let mut scaled = a.clone();
    for _ in 0..effort.max_iter {
        let mut rhs = vec![0.0; m];
        for i in 0..m {
            let s = w[i].sqrt();
            for j in 0..a.cols {
                scaled.set(i, j, a.get(i, j) * s);
            }
            rhs[i] = y[i] * s;
        }
        let Some(z) = least_squares(&scaled, &rhs) else { break };
        let r: Vec<f64> = y.iter().zip(a.mul_vec(&z)).map(|(yi, ai)| yi - ai).collect();
        let max_r = r.iter().fold(0.0f64, |acc, v| acc.max(v.abs()));
        let lower = w.iter().zip(&r).map(|(wi, ri)| wi * ri * ri).sum::<f64>().sqrt();
        if best.as_ref().is_none_or(|(b, _)| max_r < *b) {
            best = Some((max_r, z));
        }
        if max_r <= lower * (1.0 + effort.tol) || max_r == 0.0 {
            break;
        }
        for (wi, ri) in w.iter_mut().zip(&r) {
            *wi *= ri.abs();
        }
        let total: f64 = w.iter().sum();
        let floor = 1e-14 * w.iter().fold(0.0f64, |acc, &v| acc.max(v)) / total;
        for wi in w.iter_mut() {
            *wi = (*wi / total).max(floor);
        }
        let renorm: f64 = w.iter().sum();
        w.iter_mut().for_each(|wi| *wi /= renorm);
    }
    best.map(|(_, z)| z)
}

fn max_error(f: fn(f64) -> f64, centre: f64, coeffs: &[f64], grid: &[f64]) -> f64 {
    grid.iter().fold(0.0f64, |acc, &x| acc.max((f(x) - horner(coeffs, x - centre)).abs()))
}

fn round_all(coeffs: &[f64], spec: Option<FixedEvalSpec>) -> Vec<f64> {
    match spec {
        Some(s) => coeffs.iter().enumerate().map(|(k, &a)| s.quantize_coeff(a, k)).collect(),
        None => coeffs.to_vec(),
    }
}

/// Fits one segment; with `spec`, the coefficients are rounded (quantisation-aware) before
/// the error is measured.
pub(crate) fn fit_segment(
    p: &SegmentProblem,
    method: Method,
    spec: Option<FixedEvalSpec>,
    degree: usize,
    effort: FitEffort,
) -> Result<SegmentFit> {
    let basis = Basis::new(p);
    let n = basis.len();
    let grid = lobatto_grid(p.lo, p.hi, effort.points_per_coeff * n);
    let mut design = Matrix::zeros(grid.len(), n);
    let mut target = Vec::with_capacity(grid.len());
    for (i, &x) in grid.iter().enumerate() {
        for (j, v) in basis.row(x, false).into_iter().enumerate() {
            design.set(i, j, v);
        }
        target.push((p.f)(x) - p.offset.eval(x));
    }
    let mut rows: Vec<Vec<f64>> = Vec::new();
    let mut rhs: Vec<f64> = Vec::new();
    for c in &p.constraints {
        rows.push(basis.row(c.x, c.derivative));
        rhs.push(c.value - if c.derivative { p.offset.b } else { p.offset.eval(c.x) });
    }
    let as_matrix = |rows: &[Vec<f64>]| {
        let mut m = Matrix::zeros(rows.len(), n);
        for (i, r) in rows.iter().enumerate() {
            for (j, &v) in r.iter().enumerate() {
                m.set(i, j, v);
            }
        }
        m
    };
    let offset = offset_monomials(p.offset, p.centre, degree);
    let full = |c: &[f64]| -> Vec<f64> {
        basis.to_monomials(c, degree).iter().zip(&offset).map(|(a, o)| a + o).collect()
    };
    let first = solve(&design, &target, &as_matrix(&rows), &rhs, method, effort).ok_or_else(|| {
        Error::Config(format!(
            "segment [{:.4}, {:.4}]: {} constraints cannot be met with powers {:?}",
            p.lo,
            p.hi,
            p.constraints.len(),
            p.degrees
        ))
    })?;
    let plain = round_all(&full(&first), spec);
    let plain_err = max_error(p.f, p.centre, &plain, &grid);
    let Some(spec) = spec else {
        return Ok(SegmentFit { coeffs: plain, max_err: plain_err });
    };
    // Freeze coefficients from the highest power down, refitting the lower ones each time.
    let mut current = first;
    for &k in basis.degrees.iter().rev().filter(|&&k| k >= 1) {
        if rows.len() + 1 > n {
            break;
        }
        let frozen = spec.quantize_coeff(full(&current)[k], k);
        rows.push(basis.monomial_row(k));
        rhs.push(frozen - offset[k]);
        match solve(&design, &target, &as_matrix(&rows), &rhs, method, effort) {
            Some(c) => current = c,
            None => {
                rows.pop();
                rhs.pop();
                break;
            }
        }
    }
    let refit = round_all(&full(&current), Some(spec));
    let refit_err = max_error(p.f, p.centre, &refit, &grid);
    // With continuity constraints only the refit keeps them (up to the tiny quanta of the
    // coefficients left free); plain rounding would open jumps at the knots.
    Ok(if refit_err <= plain_err || !p.constraints.is_empty() {
        SegmentFit { coeffs: refit, max_err: refit_err }
    } else {
        SegmentFit { coeffs: plain, max_err: plain_err }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chebyshev_tables_agree_with_recurrence() {
        let table = chebyshev_monomials(5);
        for t in [-0.9, -0.2, 0.4, 1.0] {
            let (v, _) = chebyshev_values(5, t);
            for j in 0..=5 {
                assert!((horner(&table[j], t) - v[j]).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn lawson_reaches_the_known_minimax_line() {
        // Best line for x² on [0, 1]: x − 1/8, error 1/8.
        let grid = lobatto_grid(0.0, 1.0, 101);
        let mut a = Matrix::zeros(grid.len(), 2);
        for (i, &x) in grid.iter().enumerate() {
            a.set(i, 0, 1.0);
            a.set(i, 1, x);
        }
        let y: Vec<f64> = grid.iter().map(|x| x * x).collect();
        let z = lawson(&a, &y, FitEffort { points_per_coeff: 0, tol: 1e-6, max_iter: 2000 }).unwrap();
        assert!((z[0] + 0.125).abs() < 1e-3 && (z[1] - 1.0).abs() < 1e-3, "{z:?}");
    }
}
