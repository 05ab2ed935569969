//! Segmented polynomial approximations of non-linear functions (no cryptography).
//!
//! FASTLMPI (Chen et al., IEEE TIFS 2025, "precise segmented approximation technique") replaces
//! GeLU and other non-linear functions by low-degree polynomials on segments whose knots come
//! from the function's derivative structure (GeLU's inflection points ±√2, tails where the
//! function is within 2^-frac of its asymptote). This module fits such approximations and
//! evaluates them exactly as the private protocol will.
//!
//! * [`PiecewisePoly`]: knots plus segments (centred polynomial, constant or identity tail),
//!   f64 evaluation, serde JSON.
//! * [`FixedEvalSpec`], [`QuantizedPiecewise`]: the integer form the protocol consumes and its
//!   bit-exact evaluation (one floor truncation of an exact accumulator), plus a BOLT-style
//!   Horner evaluation with a truncation after every product ([`eval_fixed_horner`]).
//! * [`fit`]: least squares or minimax per segment, optional C0/C1 continuity, symmetry,
//!   knot search, coefficients rounded to the fixed-point scale before errors are measured.
//! * [`function_spec`]: the functions (gelu, exp, exp-rr, tanh, sigmoid, rsqrt, reciprocal)
//!   with their documented input ranges.
//! * [`ApproxFile`]: results/approx/FUNC.json, written by `fastlmpi fit-approx`; the sets the
//!   engine compiles in live apart, in src/approx/sets/ ([`INSTALLED_SETS_DIR`]), and change
//!   only through `fit-approx --install`. Protocol code never hard-codes coefficients.

/// The sets the engine compiles in (`include_str!`); `fit-approx FUNC --install` replaces one.
pub const INSTALLED_SETS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/approx/sets");
/// Where `fit-approx` writes its output (JSON and SVG) unless told otherwise.
pub const FIT_OUTPUT_DIR: &str = "results/approx";

/// The recorded set of a function: the installed one when the engine uses it, else the
/// fitter's checked-in output under results/approx.
pub fn recorded_set_path(name: &str) -> std::path::PathBuf {
    let installed = std::path::Path::new(INSTALLED_SETS_DIR).join(format!("{name}.json"));
    if installed.is_file() {
        installed
    } else {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(FIT_OUTPUT_DIR).join(format!("{name}.json"))
    }
}

mod build;
mod fit;
mod fixed;
mod funcs;
mod linalg;
mod piecewise;
mod plot;
mod report;

pub use build::{fit, FitConfig};
pub use fit::{Continuity, Method};
pub use fixed::{
    eval_fixed_horner, rounding_bias, AccumulatorProfile, FixedEvalSpec, QuantizedPiecewise, QuantizedSegment,
};
pub use funcs::{
    erf, function_spec, gelu, normal_cdf, sigmoid, FunctionSpec, Linear, Parity, FUNCTION_NAMES,
};
pub use piecewise::{horner, taylor_shift, PiecewisePoly, Segment, SegmentKind};
pub use plot::{write_svg, PlotCurve};
pub use report::{
    bolt_gelu, bumblebee_gelu, compare_row, fastlmpi_gelu, input_grid, measure, ApproxFile, ComparisonRow,
    ErrorReport, ErrorStats, SegmentError,
};
