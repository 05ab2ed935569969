//! Piecewise polynomials with constant/identity tails, evaluated in f64.
//!
//! Segment i covers [knots[i−1], knots[i]) (the first one starts at −∞, the last one ends at
//! +∞): an input exactly on a knot belongs to the segment on its right. The fixed-point
//! evaluation in [`crate::approx::fixed`] uses the same convention on the integer knots.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What a segment computes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SegmentKind {
    /// Σ_k coeffs[k]·(x − centre)^k. Centring keeps the coefficients small and makes the
    /// fixed-point evaluation accurate.
    Poly { centre: f64, coeffs: Vec<f64> },
    /// A constant (e.g. GeLU's 0 for very negative inputs).
    Const(f64),
    /// The input itself (e.g. GeLU's x for large inputs).
    Identity,
}

/// One segment with its bounds (`None` = unbounded).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub lo: Option<f64>,
    pub hi: Option<f64>,
    pub kind: SegmentKind,
}

/// An ordered list of segments separated by strictly increasing knots.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PiecewisePoly {
    pub knots: Vec<f64>,
    pub segments: Vec<Segment>,
}

impl PiecewisePoly {
    /// Builds the segments' bounds from the knots; `kinds.len()` must be `knots.len() + 1`.
    pub fn new(knots: Vec<f64>, kinds: Vec<SegmentKind>) -> Result<Self> {
        if kinds.len() != knots.len() + 1 {
            return Err(Error::Config(format!(
                "{} segments need {} knots, got {}",
                kinds.len(),
                kinds.len().saturating_sub(1),
                knots.len()
            )));
        }
        let segments = kinds
            .into_iter()
            .enumerate()
            .map(|(i, kind)| Segment {
                lo: if i == 0 { None } else { Some(knots[i - 1]) },
                hi: knots.get(i).copied(),
                kind,
            })
            .collect();
        let poly = PiecewisePoly { knots, segments };
        poly.validate()?;
        Ok(poly)
    }

    /// Checks the invariants (a deserialised file may violate them).
    pub fn validate(&self) -> Result<()> {
        if self.segments.len() != self.knots.len() + 1 {
            return Err(Error::Config("segment count must be knot count + 1".into()));
        }
        if self.knots.iter().any(|k| !k.is_finite()) {
            return Err(Error::Config("knots must be finite".into()));
        }
        if self.knots.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::Config("knots must be strictly increasing".into()));
        }
        for (i, s) in self.segments.iter().enumerate() {
            let lo = if i == 0 { None } else { Some(self.knots[i - 1]) };
            let hi = self.knots.get(i).copied();
            if s.lo != lo || s.hi != hi {
                return Err(Error::Config(format!("segment {i} bounds disagree with the knots")));
            }
            if let SegmentKind::Poly { centre, coeffs } = &s.kind {
                if coeffs.is_empty() || !centre.is_finite() || coeffs.iter().any(|c| !c.is_finite()) {
                    return Err(Error::Config(format!("segment {i} has an invalid polynomial")));
                }
            }
            if let SegmentKind::Const(c) = s.kind {
                if !c.is_finite() {
                    return Err(Error::Config(format!("segment {i} has an invalid constant")));
                }
            }
        }
        Ok(())
    }

    /// Index of the segment that contains x (knots[i−1] <= x < knots[i]).
    pub fn segment_index(&self, x: f64) -> usize {
        self.knots.partition_point(|&k| k <= x)
    }

    /// f64 value (NaN if the layout is invalid; see [`PiecewisePoly::validate`]).
    pub fn eval(&self, x: f64) -> f64 {
        self.segments.get(self.segment_index(x)).map_or(f64::NAN, |s| s.kind.eval(x))
    }

    /// Largest polynomial degree over the segments (0 if there is none).
    pub fn degree(&self) -> usize {
        self.segments
            .iter()
            .filter_map(|s| match &s.kind {
                SegmentKind::Poly { coeffs, .. } => Some(coeffs.len().saturating_sub(1)),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }
}

impl SegmentKind {
    pub fn eval(&self, x: f64) -> f64 {
        match self {
            SegmentKind::Poly { centre, coeffs } => horner(coeffs, x - centre),
            SegmentKind::Const(c) => *c,
            SegmentKind::Identity => x,
        }
    }
}

/// Σ coeffs[k]·u^k.
pub fn horner(coeffs: &[f64], u: f64) -> f64 {
    coeffs.iter().rev().fold(0.0, |acc, &c| acc * u + c)
}

/// Coefficients of the same polynomial expanded around `centre + shift` instead of `centre`
/// (exact Taylor shift: q(v) = p(v + shift)).
pub fn taylor_shift(coeffs: &[f64], shift: f64) -> Vec<f64> {
    let mut q = coeffs.to_vec();
    let n = q.len();
    // Repeated synthetic division by (v − (−shift)) … evaluated as Horner-style updates.
    for i in 0..n {
        for j in (i..n.saturating_sub(1)).rev() {
            q[j] += shift * q[j + 1];
        }
    }
    q
}

/// Monomial coefficients in x (centre 0) re-expanded around `centre`.
pub fn recentre(coeffs_in_x: &[f64], centre: f64) -> Vec<f64> {
    taylor_shift(coeffs_in_x, centre)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taylor_shift_preserves_the_polynomial() {
        let p = [0.3, -1.2, 0.5, 0.25, -0.01];
        let shifted = taylor_shift(&p, 1.75);
        for v in [-2.0, -0.3, 0.0, 0.9, 3.0] {
            assert!((horner(&shifted, v) - horner(&p, v + 1.75)).abs() < 1e-12);
        }
    }

    #[test]
    fn knot_belongs_to_the_segment_on_its_right() {
        let p = PiecewisePoly::new(
            vec![-1.0, 1.0],
            vec![SegmentKind::Const(0.0), SegmentKind::Const(5.0), SegmentKind::Identity],
        )
        .unwrap();
        assert_eq!(p.eval(-1.0), 5.0);
        assert_eq!(p.eval(-1.0 - 1e-9), 0.0);
        assert_eq!(p.eval(1.0), 1.0);
        assert_eq!(p.eval(0.99), 5.0);
    }

    #[test]
    fn invalid_layouts_are_rejected() {
        assert!(PiecewisePoly::new(vec![1.0, 1.0], vec![SegmentKind::Identity; 3]).is_err());
        assert!(PiecewisePoly::new(vec![1.0], vec![SegmentKind::Identity; 3]).is_err());
    }
}
