//! Fitter, fixed-point evaluation and checked-in coefficient sets (no network involved: the
//! approx module has no cryptography).

use std::path::PathBuf;

use fastlmpi::approx::{
    fit, function_spec, measure, taylor_shift, ApproxFile, Continuity, FitConfig, FixedEvalSpec,
    FunctionSpec, Method, PiecewisePoly, SegmentKind, FUNCTION_NAMES,
};

const SPEC_12: FixedEvalSpec = FixedEvalSpec { in_frac: 12, acc_frac: 56, out_frac: 12 };

fn config(func: &FunctionSpec, method: Method, continuity: Continuity, degree: usize) -> FitConfig {
    FitConfig {
        segments: func.default_segments,
        degree,
        method,
        continuity,
        spec: FixedEvalSpec { in_frac: 12, acc_frac: degree as u32 * 12 + 8, out_frac: 12 },
        range: func.range,
        knot_search: false,
        knot_frac: None,
    }
}

fn cubic(x: f64) -> f64 {
    0.5 - 0.25 * x + 0.125 * x * x + 0.0625 * x * x * x
}

fn cubic_slope(x: f64) -> f64 {
    -0.25 + 0.25 * x + 0.1875 * x * x
}

#[test]
fn fitter_recovers_an_exact_polynomial() {
    let func = FunctionSpec {
        name: "cubic",
        f: cubic,
        df: cubic_slope,
        range: (-2.0, 2.0),
        domain: (-2.0, 2.0),
        parity: None,
        left_tail: None,
        right_tail: None,
        structural_knots: vec![0.75],
        default_segments: 2,
        default_degree: 3,
        note: "",
    };
    for method in [Method::Lsq, Method::Minimax] {
        let poly =
            fit(&func, &FitConfig { spec: SPEC_12, ..config(&func, method, Continuity::None, 3) }).unwrap();
        assert_eq!(poly.knots, vec![0.75]);
        for seg in &poly.segments {
            let SegmentKind::Poly { centre, coeffs } = &seg.kind else { panic!("expected polynomials") };
            let truth = taylor_shift(&[0.5, -0.25, 0.125, 0.0625], *centre);
            for (got, want) in coeffs.iter().zip(&truth) {
                assert!((got - want).abs() < 1e-12, "{method:?}: {coeffs:?} vs {truth:?}");
            }
        }
        let worst = (0..=4000)
            .map(|i| -2.0 + i as f64 * 1e-3)
            .fold(0.0f64, |m, x| m.max((poly.eval(x) - cubic(x)).abs()));
        assert!(worst < 1e-12, "{method:?}: {worst}");
    }
}

#[test]
fn minimax_max_error_is_not_above_least_squares() {
    for name in FUNCTION_NAMES {
        let func = function_spec(name).unwrap();
        let errors: Vec<f64> = [Method::Lsq, Method::Minimax]
            .into_iter()
            .map(|m| {
                let cfg = config(&func, m, Continuity::None, func.default_degree);
                let poly = fit(&func, &cfg).unwrap();
                let q = poly.quantize(cfg.spec).unwrap();
                measure(&poly, &q, func.f, cfg.range).unwrap().0.f64.max_abs
            })
            .collect();
        println!("{name}: lsq {:.3e}  minimax {:.3e}", errors[0], errors[1]);
        assert!(errors[1] <= errors[0], "{name}: minimax {} > lsq {}", errors[1], errors[0]);
    }
}

/// The fixed-point output is within half an output ulp of the f64 value of the stored
/// (rounded) coefficients (the floor rounds to nearest thanks to the bias in A_0).
fn assert_fixed_matches_f64(poly: &PiecewisePoly, spec: FixedEvalSpec, range: (f64, f64), label: &str) {
    let q = poly.quantize(spec).unwrap();
    let ulp = 2f64.powi(-(spec.out_frac as i32));
    let in_scale = 2f64.powi(spec.in_frac as i32);
    let (lo, hi) = ((range.0 * in_scale).ceil() as i64, (range.1 * in_scale).floor() as i64);
    for xi in lo..=hi {
        let x = xi as f64 / in_scale;
        assert_eq!(poly.segment_index(x), q.segment_index(xi), "{label}: segment selection at {x}");
        let gap = poly.eval(x) - q.eval(xi).unwrap() as f64 * ulp;
        assert!(gap.abs() <= ulp / 2.0 + 1e-9, "{label}: x = {x}, gap = {gap}");
    }
}

#[test]
fn fixed_point_matches_f64_within_the_documented_bound() {
    for name in FUNCTION_NAMES {
        let func = function_spec(name).unwrap();
        let cfg = config(&func, Method::Minimax, Continuity::None, func.default_degree);
        let poly = fit(&func, &cfg).unwrap();
        assert_fixed_matches_f64(&poly, cfg.spec, cfg.range, name);
    }
}

fn max_jump(poly: &PiecewisePoly, derivative: bool) -> f64 {
    let h = 1e-7;
    let value = |kind: &SegmentKind, x: f64| {
        if derivative {
            (kind.eval(x + h) - kind.eval(x - h)) / (2.0 * h)
        } else {
            kind.eval(x)
        }
    };
    poly.knots
        .iter()
        .enumerate()
        .map(|(i, &k)| (value(&poly.segments[i].kind, k) - value(&poly.segments[i + 1].kind, k)).abs())
        .fold(0.0, f64::max)
}

#[test]
fn continuity_constraints_hold_when_asked() {
    for name in ["gelu", "tanh", "exp"] {
        let func = function_spec(name).unwrap();
        let jumps = |c: Continuity| {
            let poly = fit(&func, &config(&func, Method::Minimax, c, 4)).unwrap();
            (max_jump(&poly, false), max_jump(&poly, true))
        };
        let (none_value, none_slope) = jumps(Continuity::None);
        let (c0_value, _) = jumps(Continuity::C0);
        let (c1_value, c1_slope) = jumps(Continuity::C1);
        println!("{name}: jumps none {none_value:.2e}/{none_slope:.2e} c0 {c0_value:.2e} c1 {c1_value:.2e}/{c1_slope:.2e}");
        // Exact before rounding; after it, only the coefficients that could not be frozen
        // (rounded at 2^-(acc_frac - k·in_frac)) can open a jump.
        assert!(c0_value < 1e-6 && c1_value < 1e-6, "{name}: value jumps {c0_value} {c1_value}");
        assert!(c1_slope < 1e-5, "{name}: slope jump {c1_slope}");
        assert!(c1_slope < none_slope / 100.0);
        assert!(none_value > 1e-7, "{name}: unconstrained fit unexpectedly continuous");
    }
}

fn checked_in(name: &str) -> PathBuf {
    fastlmpi::approx::recorded_set_path(name)
}

#[test]
fn checked_in_gelu_meets_the_target() {
    let file = ApproxFile::load(&checked_in("gelu")).unwrap();
    assert!(file.degree <= 4 && file.poly.degree() <= 4);
    assert!(file.range.0 <= -8.0 && file.range.1 >= 8.0);
    assert_eq!(file.spec.in_frac, 12);
    assert_eq!(file.spec.out_frac, 12);
    let func = function_spec("gelu").unwrap();
    let (errors, _) = measure(&file.poly, &file.quantized, func.f, file.range).unwrap();
    assert!(errors.fixed.max_abs <= 1e-3, "fixed-point max error {}", errors.fixed.max_abs);
    assert!(errors.fixed.points >= 65_537);
    let acc = file.quantized.accumulator_profile(file.range).unwrap();
    assert!(acc.max_term_sum_bits <= 60, "accumulator needs {} bits", acc.max_term_sum_bits);
}

#[test]
fn checked_in_sets_are_consistent_with_their_polynomials() {
    for name in ["gelu", "exp", "exp-rr", "tanh", "sigmoid", "rsqrt", "reciprocal"] {
        let file = ApproxFile::load(&checked_in(name)).unwrap();
        assert_eq!(file.poly.quantize(file.spec).unwrap(), file.quantized, "{name}");
        let func = function_spec(name).unwrap();
        let (errors, segments) = measure(&file.poly, &file.quantized, func.f, file.range).unwrap();
        // Values may differ in the last bits between optimisation levels (recorded in release).
        for (got, want) in [
            (errors.f64, file.errors.f64),
            (errors.fixed, file.errors.fixed),
            (errors.horner, file.errors.horner),
        ] {
            assert_eq!(got.points, want.points, "{name}");
            assert!((got.max_abs - want.max_abs).abs() <= 1e-12, "{name}");
            assert!((got.mean_abs - want.mean_abs).abs() <= 1e-9 * want.mean_abs, "{name}");
        }
        assert_eq!(segments.len(), file.segment_errors.len(), "{name}");
        for (got, want) in segments.iter().zip(&file.segment_errors) {
            assert_eq!((got.index, got.lo, got.hi), (want.index, want.lo, want.hi), "{name}");
            // Last-bit differences between optimisation levels are tolerated.
            assert!((got.f64_max_abs - want.f64_max_abs).abs() <= 1e-12, "{name}: segment {}", got.index);
            assert!((got.fixed_max_abs - want.fixed_max_abs).abs() <= 1e-12, "{name}: segment {}", got.index);
        }
        assert_eq!(file.quantized.accumulator_profile(file.range).unwrap(), file.accumulator, "{name}");
        assert_fixed_matches_f64(&file.poly, file.spec, file.range, name);
        assert!(file.command.starts_with(&format!("fastlmpi fit-approx {name} ")), "{name}");
    }
}
