//! Assembling a whole piecewise approximation: knot layout from the derivative structure,
//! per-segment fits, knot search, and mirroring for symmetric functions.
//!
//! Layout. The polynomial segments form a chain between breaks b_0 < b_1 < … < b_P:
//! * symmetric functions (see [`Parity`]): only the right half is fitted. b_0 = 0, chain
//!   segment 0 is the middle segment [−b_1, b_1] (centre 0, even or odd powers only, plus the
//!   symmetry's linear offset), chain segment i ≥ 1 is [b_i, b_{i+1}]; the left half is the
//!   mirror image. With a tail, b_P is the tail knot.
//! * other functions: chain segment i is [b_i, b_{i+1}]; b_0 (b_P) is the left (right) tail
//!   knot when there is a tail on that side, else the range end.
//!
//! Continuity is imposed by making both neighbours interpolate the function (C0) and its
//! slope (C1) at every interior knot, and the asymptote (and its slope) at a tail knot. This
//! is equivalent to joint continuity constraints with the extra condition that the common
//! value is f(knot); it decouples the segments, so each is fitted independently.
//!
//! Knot search. Each segment's max error depends only on its two breaks, grows when the
//! segment widens and shrinks when it narrows; for the minimax piecewise fit the optimal
//! breaks equalise the neighbours' errors. Coordinate descent bisects each free break on the
//! sign of err(left) − err(right) (errors measured with coefficients already rounded to the
//! fixed-point scale), sweeping until no break moves. All breaks stay on the knot grid (the
//! input grid unless `FitConfig::knot_frac` asks for a coarser one).

use super::fit::{
    fit_segment, lobatto_grid, Continuity, FitEffort, Method, PointConstraint, SegmentProblem, FINAL_EFFORT,
    SEARCH_EFFORT,
};
use super::fixed::{pow2, FixedEvalSpec};
use super::funcs::{FunctionSpec, Linear, Parity};
use super::piecewise::{PiecewisePoly, SegmentKind};
use crate::{Error, Result};

/// What to fit.
#[derive(Clone, Debug)]
pub struct FitConfig {
    /// Total number of segments, tails included (FASTLMPI's GeLU has 5).
    pub segments: usize,
    pub degree: usize,
    pub method: Method,
    pub continuity: Continuity,
    /// The fixed-point evaluation the coefficients are rounded for.
    pub spec: FixedEvalSpec,
    /// Inputs over which the error is minimised (and later measured).
    pub range: (f64, f64),
    /// Search the knot positions (otherwise keep the initial, derivative-based ones).
    pub knot_search: bool,
    /// Knots at multiples of `2^−knot_frac` (None: the input grid, `2^−in_frac`). A coarse
    /// grid lets the protocol compare only the integer part `⌊x·2^knot_frac⌋`.
    pub knot_frac: Option<u32>,
}

/// Largest number of bisection steps per knot and of sweeps over all knots.
const BISECTION_STEPS: usize = 18;
const MAX_SWEEPS: usize = 8;

/// The chain of polynomial segments to fit and how it ends.
struct Chain<'a> {
    func: &'a FunctionSpec,
    cfg: &'a FitConfig,
    parity: Option<Parity>,
    left_tail: Option<Linear>,
    right_tail: Option<Linear>,
    /// Where the left/right tails' errors are measured up to.
    range: (f64, f64),
    grid: f64,
    /// Spacing of the knot positions (≥ `grid`).
    knot_grid: f64,
}

impl<'a> Chain<'a> {
    fn new(func: &'a FunctionSpec, cfg: &'a FitConfig) -> Result<Self> {
        if cfg.degree == 0 || cfg.degree > 8 {
            return Err(Error::Config(format!("degree {} not in 1..=8", cfg.degree)));
        }
        cfg.spec.validate(cfg.degree)?;
        let (lo, hi) = cfg.range;
        if !(lo < hi) || !lo.is_finite() || !hi.is_finite() {
            return Err(Error::Config(format!("invalid range {:?}", cfg.range)));
        }
        let grid = pow2(-(cfg.spec.in_frac as i32));
        let knot_frac = cfg.knot_frac.unwrap_or(cfg.spec.in_frac);
        if knot_frac > cfg.spec.in_frac {
            return Err(Error::Config(format!("knot grid 2^-{knot_frac} is finer than the input grid 2^-{}", cfg.spec.in_frac)));
        }
        let knot_grid = pow2(-(knot_frac as i32));
        let parity = func.parity;
        if parity.is_some() && !(lo < 0.0 && hi > 0.0) {
            return Err(Error::Config("a symmetric fit needs a range around 0".into()));
        }
        let range = match parity {
            Some(_) => (-(hi.max(-lo)), hi.max(-lo)),
            None => (lo, hi),
        };
        Ok(Chain {
            func,
            cfg,
            parity,
            left_tail: if parity.is_some() { None } else { func.left_tail },
            right_tail: func.right_tail,
            range,
            grid,
            knot_grid,
        })
    }

    fn snap(&self, x: f64) -> f64 {
        (x / self.knot_grid).round() * self.knot_grid
    }

    /// Number of chain segments P from the total segment count.
    fn chain_len(&self) -> Result<usize> {
        let k = self.cfg.segments;
        let tails = self.left_tail.is_some() as usize + self.right_tail.is_some() as usize;
        match self.parity {
            Some(_) => {
                let tails = 2 * self.right_tail.is_some() as usize;
                if k <= tails || (k - tails) % 2 == 0 {
                    return Err(Error::Config(format!(
                        "{} is symmetric: --segments must be odd and > {tails} (middle + mirrored pairs + tails)",
                        self.func.name
                    )));
                }
                Ok((k - tails).div_ceil(2))
            }
            None => {
                if k <= tails {
                    return Err(Error::Config(format!("--segments must exceed the {tails} tails")));
                }
                Ok(k - tails)
            }
        }
    }

    /// Where the tail starts: scanning from the outer end inwards, the last point still within
    /// 2^-out_frac of the asymptote (refined by bisection).
    fn tail_start(&self, asymptote: Linear, inner: f64, outer: f64) -> f64 {
        let tol = pow2(-(self.cfg.spec.out_frac as i32));
        let close = |x: f64| ((self.func.f)(x) - asymptote.eval(x)).abs() < tol;
        if !close(outer) {
            return outer;
        }
        let step = (inner - outer) / 512.0;
        let mut far = outer;
        while close(far + step) && (far + step - inner) * step < 0.0 {
            far += step;
        }
        let mut near = far + step;
        for _ in 0..60 {
            let mid = (far + near) / 2.0;
            if close(mid) {
                far = mid;
            } else {
                near = mid;
            }
        }
        far
    }

    /// Initial breaks: structural knots, tail starts, then splitting the widest pieces.
    fn initial_breaks(&self) -> Result<Vec<f64>> {
        let p = self.chain_len()?;
        let (lo, hi) = match self.parity {
            Some(_) => (0.0, self.range.1),
            None => self.range,
        };
        let first = match self.left_tail {
            Some(a) => self.tail_start(a, hi, lo),
            None => lo,
        };
        let last = match self.right_tail {
            Some(a) => self.tail_start(a, first.max(lo), hi),
            None => hi,
        };
        let mut breaks = vec![first, last];
        for &k in &self.func.structural_knots {
            if breaks.len() > p {
                break;
            }
            if k > first && k < last {
                breaks.push(k);
            }
        }
        breaks.sort_by(f64::total_cmp);
        let geometric = first > 0.0;
        while breaks.len() < p + 1 {
            let widest = (0..breaks.len() - 1)
                .max_by(|&i, &j| {
                    let w = |i: usize| {
                        if geometric {
                            breaks[i + 1] / breaks[i]
                        } else {
                            breaks[i + 1] - breaks[i]
                        }
                    };
                    w(i).total_cmp(&w(j))
                })
                .unwrap_or(0);
            let mid = if geometric {
                (breaks[widest] * breaks[widest + 1]).sqrt()
            } else {
                (breaks[widest] + breaks[widest + 1]) / 2.0
            };
            breaks.insert(widest + 1, mid);
        }
        let snapped: Vec<f64> = breaks.iter().map(|&b| self.snap(b)).collect();
        if snapped.windows(2).any(|w| w[1] - w[0] < 4.0 * self.grid) {
            return Err(Error::Config("segments too narrow for the input grid".into()));
        }
        Ok(snapped)
    }

    /// Constraints at a chain break: interior → f, tail knot → asymptote, else none.
    fn constraints_at(&self, breaks: &[f64], j: usize) -> Vec<PointConstraint> {
        let x = breaks[j];
        let last = breaks.len() - 1;
        let target: Option<(fn(f64) -> f64, Option<Linear>)> = if j == 0 {
            match (self.parity, self.left_tail) {
                (Some(_), _) => None,
                (None, Some(a)) => Some((self.func.f, Some(a))),
                (None, None) => None,
            }
        } else if j == last {
            self.right_tail.map(|a| (self.func.f, Some(a)))
        } else {
            Some((self.func.f, None))
        };
        let Some((f, asymptote)) = target else { return Vec::new() };
        let value = asymptote.map_or_else(|| f(x), |a| a.eval(x));
        let slope = asymptote.map_or_else(|| (self.func.df)(x), |a| a.b);
        let mut out = Vec::new();
        if self.cfg.continuity != Continuity::None {
            out.push(PointConstraint { x, derivative: false, value });
        }
        if self.cfg.continuity == Continuity::C1 {
            out.push(PointConstraint { x, derivative: true, value: slope });
        }
        out
    }

    fn problem(&self, breaks: &[f64], i: usize) -> SegmentProblem {
        let d = self.cfg.degree;
        let mut constraints = self.constraints_at(breaks, i + 1);
        match (i, self.parity) {
            (0, Some(par)) => SegmentProblem {
                f: self.func.f,
                lo: 0.0,
                hi: breaks[1],
                centre: 0.0,
                offset: par.offset,
                degrees: (0..=d).filter(|k| (k % 2 == 1) == par.odd).collect(),
                constraints,
            },
            _ => {
                constraints.extend(self.constraints_at(breaks, i));
                SegmentProblem {
                    f: self.func.f,
                    lo: breaks[i],
                    hi: breaks[i + 1],
                    centre: self.snap((breaks[i] + breaks[i + 1]) / 2.0),
                    offset: Linear::ZERO,
                    degrees: (0..=d).collect(),
                    constraints,
                }
            }
        }
    }

    fn fit(&self, breaks: &[f64], i: usize, effort: FitEffort) -> Result<(f64, Vec<f64>)> {
        let problem = self.problem(breaks, i);
        let fit = fit_segment(&problem, self.cfg.method, Some(self.cfg.spec), self.cfg.degree, effort)?;
        Ok((fit.max_err, fit.coeffs))
    }

    /// Max |f − asymptote| over a tail.
    fn tail_error(&self, asymptote: Linear, from: f64, to: f64) -> f64 {
        lobatto_grid(from.min(to), from.max(to), 64)
            .into_iter()
            .fold(0.0f64, |acc, x| acc.max(((self.func.f)(x) - asymptote.eval(x)).abs()))
    }

    /// Error of element e: −1 = left tail, 0..P−1 = chain segments, P = right tail.
    fn element_error(&self, breaks: &[f64], e: isize) -> Result<f64> {
        let p = breaks.len() - 1;
        if e < 0 {
            Ok(self.left_tail.map_or(0.0, |a| self.tail_error(a, self.range.0, breaks[0])))
        } else if e as usize >= p {
            Ok(self.right_tail.map_or(0.0, |a| self.tail_error(a, breaks[p], self.range.1)))
        } else {
            Ok(self.fit(breaks, e as usize, SEARCH_EFFORT)?.0)
        }
    }

    fn is_free(&self, breaks: &[f64], j: usize) -> bool {
        let p = breaks.len() - 1;
        if j == 0 {
            self.parity.is_none() && self.left_tail.is_some()
        } else if j == p {
            self.right_tail.is_some()
        } else {
            true
        }
    }

    fn overall_error(&self, breaks: &[f64]) -> Result<f64> {
        let p = breaks.len() as isize - 1;
        let mut worst = 0.0f64;
        for e in -1..=p {
            worst = worst.max(self.element_error(breaks, e)?);
        }
        Ok(worst)
    }

    /// Moves break j to equalise the errors of its two neighbours.
    fn balance_break(&self, breaks: &mut [f64], j: usize) -> Result<()> {
        let p = breaks.len() - 1;
        let min_width = 8.0 * self.grid;
        let lower = if j == 0 { self.range.0 } else { breaks[j - 1] } + min_width;
        let upper = if j == p { self.range.1 } else { breaks[j + 1] } - min_width;
        if lower >= upper {
            return Ok(());
        }
        let (left, right) = (j as isize - 1, j as isize);
        let errors_at = |breaks: &mut [f64], x: f64| -> Result<(f64, f64)> {
            breaks[j] = x;
            Ok((self.element_error(breaks, left)?, self.element_error(breaks, right)?))
        };
        let (mut lo, mut hi) = (lower, upper);
        for _ in 0..BISECTION_STEPS {
            if hi - lo <= 2.0 * self.knot_grid {
                break;
            }
            let mid = self.snap((lo + hi) / 2.0);
            let (el, er) = errors_at(breaks, mid)?;
            if el > er {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        let mut best = (f64::INFINITY, breaks[j]);
        for x in [self.snap(lo), self.snap(hi)] {
            if x < lower || x > upper {
                continue;
            }
            let (el, er) = errors_at(breaks, x)?;
            if el.max(er) < best.0 {
                best = (el.max(er), x);
            }
        }
        breaks[j] = best.1;
        Ok(())
    }

    fn search(&self, mut breaks: Vec<f64>) -> Result<Vec<f64>> {
        let mut best = (self.overall_error(&breaks)?, breaks.clone());
        for _ in 0..MAX_SWEEPS {
            let before = breaks.clone();
            for j in 0..breaks.len() {
                if self.is_free(&breaks, j) {
                    self.balance_break(&mut breaks, j)?;
                }
            }
            let err = self.overall_error(&breaks)?;
            if err < best.0 {
                best = (err, breaks.clone());
            }
            let moved = before.iter().zip(&breaks).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
            if moved <= 2.0 * self.knot_grid {
                break;
            }
        }
        Ok(best.1)
    }

    fn tail_kind(asymptote: Linear) -> Result<SegmentKind> {
        if asymptote.b == 0.0 {
            Ok(SegmentKind::Const(asymptote.a))
        } else if asymptote.a == 0.0 && asymptote.b == 1.0 {
            Ok(SegmentKind::Identity)
        } else {
            Err(Error::Config(format!("tail {asymptote:?} is neither a constant nor the identity")))
        }
    }

    /// Final fits and the assembled piecewise polynomial.
    fn assemble(&self, breaks: &[f64]) -> Result<PiecewisePoly> {
        let p = breaks.len() - 1;
        let fits = (0..p).map(|i| self.fit(breaks, i, FINAL_EFFORT)).collect::<Result<Vec<_>>>()?;
        let poly = |i: usize| SegmentKind::Poly {
            centre: self.problem(breaks, i).centre,
            coeffs: fits[i].1.clone(),
        };
        let mut knots = Vec::new();
        let mut kinds = Vec::new();
        match self.parity {
            Some(par) => {
                if let Some(a) = self.right_tail {
                    kinds.push(Self::tail_kind(par.mirror_linear(a))?);
                    knots.push(-breaks[p]);
                }
                for i in (1..p).rev() {
                    kinds.push(mirror(par, &poly(i)));
                    knots.push(-breaks[i]);
                }
                kinds.push(poly(0));
                for i in 1..p {
                    knots.push(breaks[i]);
                    kinds.push(poly(i));
                }
            }
            None => {
                if let Some(a) = self.left_tail {
                    kinds.push(Self::tail_kind(a)?);
                    knots.push(breaks[0]);
                }
                kinds.push(poly(0));
                for i in 1..p {
                    knots.push(breaks[i]);
                    kinds.push(poly(i));
                }
            }
        }
        if let Some(a) = self.right_tail {
            knots.push(breaks[p]);
            kinds.push(Self::tail_kind(a)?);
        }
        PiecewisePoly::new(knots, kinds)
    }
}

/// The left-half segment implied by a right-half polynomial p around c: with u' = x + c,
/// q(u') = ℓ(u' − c) + σ·(p(−u') − ℓ(c − u')).
fn mirror(par: Parity, kind: &SegmentKind) -> SegmentKind {
    let SegmentKind::Poly { centre, coeffs } = kind else { return kind.clone() };
    let (s, l, c) = (par.sign(), par.offset, *centre);
    let mut q: Vec<f64> =
        coeffs.iter().enumerate().map(|(k, &a)| if k % 2 == 0 { s * a } else { -s * a }).collect();
    q[0] += (l.a - l.b * c) - s * (l.a + l.b * c);
    if q.len() > 1 {
        q[1] += l.b * (1.0 + s);
    }
    SegmentKind::Poly { centre: -c, coeffs: q }
}

/// Fits `func` with `cfg`: derivative-based initial knots, optional knot search, final fits
/// with coefficients rounded for `cfg.spec`.
pub fn fit(func: &FunctionSpec, cfg: &FitConfig) -> Result<PiecewisePoly> {
    let chain = Chain::new(func, cfg)?;
    let initial = chain.initial_breaks()?;
    let breaks = if cfg.knot_search { chain.search(initial)? } else { initial };
    chain.assemble(&breaks)
}
