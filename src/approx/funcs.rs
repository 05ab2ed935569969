//! Reference functions (f64, accurate to ~1e-14) and the fitting recipe of each: domain,
//! symmetry, asymptotic tails and the knots suggested by the derivative structure.

use std::f64::consts::{FRAC_2_SQRT_PI, LN_2, SQRT_2};

use crate::{Error, Result};

/// erf(x) with absolute error below 1e-14 on the whole real line.
///
/// Uses the everywhere-convergent series of positive terms
/// erf(x) = 2/√π · e^(−x²) · Σ_n 2ⁿ x^(2n+1) / (1·3·5⋯(2n+1)),
/// which has no cancellation (each term is positive), so the relative rounding error is
/// a few ulps times the number of terms. For |x| ≥ 6, 1 − erf(|x|) < 2.2e-17.
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    let ax = x.abs();
    if ax >= 6.0 {
        return x.signum();
    }
    let x2 = ax * ax;
    let mut term = ax;
    let mut sum = ax;
    let mut n = 0.0;
    loop {
        term *= 2.0 * x2 / (2.0 * n + 3.0);
        sum += term;
        n += 1.0;
        if term <= sum * 1e-17 {
            break;
        }
    }
    (FRAC_2_SQRT_PI * (-x2).exp() * sum).copysign(x)
}

/// Standard normal CDF Φ(x).
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * (1.0 + erf(x / SQRT_2))
}

fn normal_pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// Exact (erf-based) GeLU: x·Φ(x).
pub fn gelu(x: f64) -> f64 {
    x * normal_cdf(x)
}

fn gelu_derivative(x: f64) -> f64 {
    normal_cdf(x) + x * normal_pdf(x)
}

pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

fn sigmoid_derivative(x: f64) -> f64 {
    let s = sigmoid(x);
    s * (1.0 - s)
}

fn tanh_derivative(x: f64) -> f64 {
    let t = x.tanh();
    1.0 - t * t
}

pub fn rsqrt(x: f64) -> f64 {
    1.0 / x.sqrt()
}

fn rsqrt_derivative(x: f64) -> f64 {
    -0.5 / (x * x.sqrt())
}

pub fn reciprocal(x: f64) -> f64 {
    1.0 / x
}

fn reciprocal_derivative(x: f64) -> f64 {
    -1.0 / (x * x)
}

/// A linear function a + b·x (used for symmetry offsets and tail asymptotes).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Linear {
    pub a: f64,
    pub b: f64,
}

impl Linear {
    pub const ZERO: Linear = Linear { a: 0.0, b: 0.0 };
    pub const IDENTITY: Linear = Linear { a: 0.0, b: 1.0 };

    pub fn constant(a: f64) -> Self {
        Linear { a, b: 0.0 }
    }

    pub fn eval(&self, x: f64) -> f64 {
        self.a + self.b * x
    }
}

/// f(x) = offset(x) + h(x) with h even (odd = false) or odd (odd = true). Used to fit the
/// right half only and mirror it: GeLU (x/2 + even), tanh (odd), sigmoid (1/2 + odd).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Parity {
    pub odd: bool,
    pub offset: Linear,
}

impl Parity {
    /// +1 for an even remainder, −1 for an odd one.
    pub fn sign(&self) -> f64 {
        if self.odd {
            -1.0
        } else {
            1.0
        }
    }

    /// The value at −x implied by the value `fx` at x.
    pub fn mirror_value(&self, x: f64, fx: f64) -> f64 {
        self.offset.eval(-x) + self.sign() * (fx - self.offset.eval(x))
    }

    /// The asymptote on the left implied by the asymptote `right` on the right.
    pub fn mirror_linear(&self, right: Linear) -> Linear {
        // f(x) = ℓ(x) + σ(A(−x) − ℓ(−x)) for x < 0.
        let s = self.sign();
        let l = self.offset;
        Linear { a: l.a + s * (right.a - l.a), b: l.b + s * (l.b - right.b) }
    }
}

/// Everything the fitter needs to know about one function.
#[derive(Clone, Debug)]
pub struct FunctionSpec {
    pub name: &'static str,
    pub f: fn(f64) -> f64,
    pub df: fn(f64) -> f64,
    /// Default error-evaluation range (inputs the protocol may feed).
    pub range: (f64, f64),
    /// Where the polynomial part must stay accurate when there is no tail on that side
    /// (e.g. exp's right end 0, the normalised mantissa interval of reciprocal).
    pub domain: (f64, f64),
    pub parity: Option<Parity>,
    /// Asymptote replacing the function left of the first knot (Const or Identity only).
    pub left_tail: Option<Linear>,
    /// Asymptote replacing the function right of the last knot (Const or Identity only).
    pub right_tail: Option<Linear>,
    /// Knots suggested by the derivative structure (for a symmetric function: the positive
    /// ones only). Further knots are added by subdividing, then all are searched.
    pub structural_knots: Vec<f64>,
    /// Default number of segments (tails included) and degree of the checked-in set.
    pub default_segments: usize,
    pub default_degree: usize,
    /// Why the range is what it is; copied into the JSON file.
    pub note: &'static str,
}

/// Names accepted by [`function_spec`].
pub const FUNCTION_NAMES: [&str; 7] = ["gelu", "exp", "exp-rr", "tanh", "sigmoid", "rsqrt", "reciprocal"];

/// The fitting recipe for a named function.
pub fn function_spec(name: &str) -> Result<FunctionSpec> {
    let spec = match name {
        "gelu" => FunctionSpec {
            name: "gelu",
            f: gelu,
            df: gelu_derivative,
            range: (-8.0, 8.0),
            domain: (-8.0, 8.0),
            parity: Some(Parity { odd: false, offset: Linear { a: 0.0, b: 0.5 } }),
            left_tail: Some(Linear::ZERO),
            right_tail: Some(Linear::IDENTITY),
            // GeLU''(x) = φ(x)(2 − x²) vanishes at ±√2 (inflection points).
            structural_knots: vec![SQRT_2],
            default_segments: 7,
            default_degree: 3,
            note: "exact erf-based GeLU; GeLU(x) - x/2 is even: the right half is fitted and \
                   mirrored; tails 0 and x",
        },
        "exp" => FunctionSpec {
            name: "exp",
            f: f64::exp,
            df: f64::exp,
            range: (-16.0, 0.0),
            domain: (-16.0, 0.0),
            parity: None,
            left_tail: Some(Linear::ZERO),
            right_tail: None,
            structural_knots: vec![],
            default_segments: 6,
            default_degree: 3,
            note: "exp on x <= 0 (SoftMax after max subtraction, no range reduction); the tail \
                   knot -T is searched starting where exp(-T) < 2^-frac; inputs > 0 are outside \
                   the domain",
        },
        "exp-rr" => FunctionSpec {
            name: "exp-rr",
            f: f64::exp,
            df: f64::exp,
            range: (-LN_2, 0.0),
            domain: (-LN_2, 0.0),
            parity: None,
            left_tail: None,
            right_tail: None,
            structural_knots: vec![],
            default_segments: 1,
            default_degree: 3,
            note: "exp(r) on r in [-ln 2, 0] for range reduction exp(x) = 2^-k * exp(r), \
                   x = -k ln 2 + r (the protocol computes k and applies the shift)",
        },
        "tanh" => FunctionSpec {
            name: "tanh",
            f: f64::tanh,
            df: tanh_derivative,
            range: (-8.0, 8.0),
            domain: (-8.0, 8.0),
            parity: Some(Parity { odd: true, offset: Linear::ZERO }),
            left_tail: Some(Linear::constant(-1.0)),
            right_tail: Some(Linear::constant(1.0)),
            // tanh''' = 0 at ±atanh(1/√3): maximum curvature.
            structural_knots: vec![(1.0 / 3f64.sqrt()).atanh()],
            default_segments: 9,
            default_degree: 3,
            note: "tanh (BERT pooler); odd: the right half is fitted and mirrored; tails -1 and 1",
        },
        "sigmoid" => FunctionSpec {
            name: "sigmoid",
            f: sigmoid,
            df: sigmoid_derivative,
            range: (-16.0, 16.0),
            domain: (-16.0, 16.0),
            parity: Some(Parity { odd: true, offset: Linear::constant(0.5) }),
            left_tail: Some(Linear::ZERO),
            right_tail: Some(Linear::constant(1.0)),
            // σ''' = 0 at ±ln(2 + √3).
            structural_knots: vec![(2.0 + 3f64.sqrt()).ln()],
            default_segments: 9,
            default_degree: 3,
            note: "sigmoid; sigmoid(-x) = 1 - sigmoid(x): the right half is fitted and mirrored; \
                   tails 0 and 1",
        },
        "rsqrt" => FunctionSpec {
            name: "rsqrt",
            f: rsqrt,
            df: rsqrt_derivative,
            range: (1.0, 4.0),
            domain: (1.0, 4.0),
            parity: None,
            left_tail: None,
            right_tail: None,
            structural_knots: vec![],
            default_segments: 3,
            default_degree: 3,
            note: "1/sqrt(m) on the normalised interval m in [1, 4): LayerNorm's variance v is \
                   written v = 4^e * m (e from the position of the leading bit), then \
                   1/sqrt(v) = 2^-e / sqrt(m). Conservative default until activation ranges \
                   are measured on the real checkpoints; other ranges via --range",
        },
        "reciprocal" => FunctionSpec {
            name: "reciprocal",
            f: reciprocal,
            df: reciprocal_derivative,
            range: (1.0, 2.0),
            domain: (1.0, 2.0),
            parity: None,
            left_tail: None,
            right_tail: None,
            structural_knots: vec![],
            default_segments: 2,
            default_degree: 3,
            note: "1/m on the normalised interval m in [1, 2): a SoftMax row sum s in [1, n] \
                   (n = sequence length, the row maximum contributes exp(0) = 1) is written \
                   s = 2^e * m, then 1/s = 2^-e / m. Conservative default until activation \
                   ranges are measured on the real checkpoints; other ranges via --range",
        },
        other => {
            return Err(Error::Input(format!(
                "unknown function `{other}` (expected one of {})",
                FUNCTION_NAMES.join(", ")
            )))
        }
    };
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_tabulated_values() {
        // Values from Abramowitz & Stegun / high-precision tables.
        let table = [
            (0.1, 0.112_462_916_018_284_9),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (3.0, 0.999_977_909_503_001_4),
            (4.5, 0.999_999_999_803_383_9),
        ];
        for (x, want) in table {
            assert!((erf(x) - want).abs() < 1e-14, "erf({x}) = {}", erf(x));
            assert!((erf(-x) + want).abs() < 1e-14);
        }
        assert_eq!(erf(0.0), 0.0);
    }

    #[test]
    fn mirrored_tails_match_the_functions() {
        for name in ["gelu", "tanh", "sigmoid"] {
            let s = function_spec(name).unwrap();
            let p = s.parity.unwrap();
            let left = p.mirror_linear(s.right_tail.unwrap());
            assert_eq!(left, s.left_tail.unwrap(), "{name}");
            for x in [0.3, 1.7, 4.0] {
                let mirrored = p.mirror_value(x, (s.f)(x));
                assert!((mirrored - (s.f)(-x)).abs() < 1e-14, "{name} at {x}");
            }
        }
    }
}
