//! `fastlmpi fit-approx FUNC`: fits a segmented approximation, prints its segments,
//! coefficients and errors, and writes results/approx/FUNC.json and results/approx/FUNC.svg.
//! The engine's own sets (src/approx/sets/, compiled in and fingerprinted in the handshake)
//! change only with `--install`, so an experiment never alters the next build's protocol.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::approx::{
    bolt_gelu, bumblebee_gelu, compare_row, fastlmpi_gelu, fit, function_spec, measure, write_svg,
    ApproxFile, ComparisonRow, Continuity, FitConfig, FixedEvalSpec, Method, PlotCurve, SegmentKind,
};
use crate::approx::QuantizedPiecewise;
use crate::engine::state::{segmented_spec, SegmentedActivation};
use crate::engine::Profile;
use crate::he::HeContext;
use crate::ot::OtBackend;
use crate::proto::nonlinear::gelu::{gelu_cost, reference_gelu_carried, GeluSpec};
use crate::proto::toolkit::trunc::TruncMode;
use crate::{Error, Result};

/// Batch the cost table is computed for: one BERT-base FFN activation (128 tokens × 3072).
const COST_BATCH: usize = 128 * 3072;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ContinuityArg {
    None,
    C0,
    C1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodArg {
    Lsq,
    Minimax,
}

/// Fit a segmented polynomial approximation of a non-linear function.
#[derive(clap::Args, Clone, Debug)]
pub struct FitApproxArgs {
    /// Function: gelu, exp, exp-rr, tanh, sigmoid, rsqrt or reciprocal.
    pub func: String,
    /// Total number of segments, tails included (default: the checked-in set's).
    #[arg(long)]
    pub segments: Option<usize>,
    /// Polynomial degree (default: the checked-in set's).
    #[arg(long)]
    pub degree: Option<usize>,
    /// Input range A,B over which the error is minimised and measured.
    #[arg(long, allow_hyphen_values = true, value_name = "A,B")]
    pub range: Option<String>,
    /// Fraction bits of the input (and of the output unless --out-frac is given).
    #[arg(long, default_value_t = 12)]
    pub frac_bits: u32,
    /// Fraction bits of the output (default: --frac-bits).
    #[arg(long)]
    pub out_frac: Option<u32>,
    /// Fraction bits of the exact accumulator (default: degree × frac-bits + 8).
    #[arg(long)]
    pub acc_frac: Option<u32>,
    #[arg(long, value_enum, default_value = "none")]
    pub continuity: ContinuityArg,
    #[arg(long, value_enum, default_value = "minimax")]
    pub method: MethodArg,
    /// Keep the derivative-based initial knots instead of searching.
    #[arg(long)]
    pub no_knot_search: bool,
    /// Put the knots at multiples of 2^-K (cheaper comparisons on the integer part of x·2^K).
    #[arg(long, value_name = "K")]
    pub knot_frac: Option<u32>,
    /// Print the JSON file to stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Instead of one fit, fit every candidate of the search grid (segments 5/7/9, degree
    /// 2/3/4, knots free or on a 2^-3 / 2^-4 grid; the other options as given) and print each
    /// one's error and protocol cost, marking the candidates no other beats on both. Writes
    /// nothing. gelu and tanh only (the functions the segmented protocol evaluates).
    #[arg(long, conflicts_with_all = ["json", "install", "compare", "segments", "degree", "knot_frac"])]
    pub search: bool,
    /// Add BOLT's, BumbleBee's and FASTLMPI's published approximations (gelu only).
    #[arg(long)]
    pub compare: bool,
    #[arg(long, default_value = crate::approx::FIT_OUTPUT_DIR)]
    pub out_dir: PathBuf,
    /// Also install the JSON as the engine's set (src/approx/sets/FUNC.json): the next build
    /// compiles it in, and its handshake no longer matches binaries built with the old set.
    #[arg(long)]
    pub install: bool,
    /// Where --install writes (the engine's sets).
    #[arg(long, hide = true, default_value = crate::approx::INSTALLED_SETS_DIR)]
    pub sets_dir: PathBuf,
}

fn parse_range(text: &str) -> Result<(f64, f64)> {
    let parts: Vec<&str> = text.split(',').collect();
    let parse = |s: &str| s.trim().parse::<f64>().map_err(|_| Error::Input(format!("bad --range `{text}`")));
    match parts.as_slice() {
        [a, b] => {
            let (a, b) = (parse(a)?, parse(b)?);
            if a < b && a.is_finite() && b.is_finite() {
                Ok((a, b))
            } else {
                Err(Error::Input(format!("--range needs A < B, got `{text}`")))
            }
        }
        _ => Err(Error::Input(format!("--range expects A,B, got `{text}`"))),
    }
}

/// The fully resolved settings (defaults filled in).
struct Resolved {
    config: FitConfig,
    command: String,
}

fn resolve(args: &FitApproxArgs) -> Result<Resolved> {
    let func = function_spec(&args.func)?;
    let segments = args.segments.unwrap_or(func.default_segments);
    let degree = args.degree.unwrap_or(func.default_degree);
    let range = match &args.range {
        Some(r) => parse_range(r)?,
        None => func.range,
    };
    let in_frac = args.frac_bits;
    let out_frac = args.out_frac.unwrap_or(in_frac);
    let acc_frac = args.acc_frac.unwrap_or(degree as u32 * in_frac + 8);
    let method = match args.method {
        MethodArg::Lsq => Method::Lsq,
        MethodArg::Minimax => Method::Minimax,
    };
    let continuity = match args.continuity {
        ContinuityArg::None => Continuity::None,
        ContinuityArg::C0 => Continuity::C0,
        ContinuityArg::C1 => Continuity::C1,
    };
    let mut command = format!(
        "fastlmpi fit-approx {} --segments {segments} --degree {degree} --range {},{} --frac-bits {in_frac} \
         --out-frac {out_frac} --acc-frac {acc_frac} --continuity {} --method {}",
        func.name,
        range.0,
        range.1,
        format!("{continuity:?}").to_lowercase(),
        format!("{method:?}").to_lowercase(),
    );
    if args.no_knot_search {
        command.push_str(" --no-knot-search");
    }
    if let Some(k) = args.knot_frac {
        command.push_str(&format!(" --knot-frac {k}"));
    }
    if args.compare {
        command.push_str(" --compare");
    }
    Ok(Resolved {
        config: FitConfig {
            segments,
            degree,
            method,
            continuity,
            spec: FixedEvalSpec { in_frac, acc_frac, out_frac },
            range,
            knot_search: !args.no_knot_search,
            knot_frac: args.knot_frac,
        },
        command,
    })
}

/// Fits and measures; no file is written (used by `run` and by tests).
pub fn build_file(args: &FitApproxArgs) -> Result<ApproxFile> {
    let func = function_spec(&args.func)?;
    let Resolved { config, command } = resolve(args)?;
    let poly = fit(&func, &config)?;
    let quantized = poly.quantize(config.spec)?;
    let (errors, segment_errors) = measure(&poly, &quantized, func.f, config.range)?;
    let accumulator = quantized.accumulator_profile(config.range)?;
    let comparison = if args.compare {
        if func.name != "gelu" {
            return Err(Error::Input("--compare is only available for gelu".into()));
        }
        vec![
            compare_row("FASTLMPI (published)", &fastlmpi_gelu()?, func.f, config.spec, config.range)?,
            compare_row("BOLT (published)", &bolt_gelu()?, func.f, config.spec, config.range)?,
            compare_row("BumbleBee (published)", &bumblebee_gelu()?, func.f, config.spec, config.range)?,
        ]
    } else {
        Vec::new()
    };
    Ok(ApproxFile {
        function: func.name.to_string(),
        command,
        note: func.note.split_whitespace().collect::<Vec<_>>().join(" "),
        method: config.method,
        continuity: config.continuity,
        degree: config.degree,
        segments: config.segments,
        range: config.range,
        spec: config.spec,
        poly,
        quantized,
        errors,
        segment_errors,
        accumulator,
        comparison,
    })
}

fn bound(b: Option<f64>, inf: &str) -> String {
    b.map_or(inf.to_string(), |v| format!("{v:.6}"))
}

/// Human-readable summary: segments, coefficients, errors and the comparison table.
pub fn format_table(file: &ApproxFile) -> String {
    let mut out = String::new();
    let s = file.spec;
    let _ = writeln!(out, "{}", file.command);
    let _ = writeln!(
        out,
        "{}: {} segments, degree {}, {:?}, continuity {:?}, range [{}, {}], in_frac {}, acc_frac {}, out_frac {}",
        file.function, file.segments, file.degree, file.method, file.continuity, file.range.0, file.range.1,
        s.in_frac, s.acc_frac, s.out_frac
    );
    let _ = writeln!(
        out,
        "{:>3}  {:>12} {:>12}  {:>10} {:>10}  kind / coefficients in u = x - centre",
        "seg", "from", "to", "max f64", "max fixed"
    );
    for (seg, err) in file.poly.segments.iter().zip(&file.segment_errors) {
        let kind = match &seg.kind {
            SegmentKind::Poly { centre, coeffs } => format!(
                "poly centre {centre}: [{}]",
                coeffs.iter().map(|c| format!("{c:.10e}")).collect::<Vec<_>>().join(", ")
            ),
            SegmentKind::Const(c) => format!("const {c}"),
            SegmentKind::Identity => "identity".to_string(),
        };
        let _ = writeln!(
            out,
            "{:>3}  {:>12} {:>12}  {:>10.3e} {:>10.3e}  {kind}",
            err.index,
            bound(seg.lo, "-inf"),
            bound(seg.hi, "+inf"),
            err.f64_max_abs,
            err.fixed_max_abs
        );
    }
    let a = file.accumulator;
    let _ = writeln!(
        out,
        "accumulator: max |V| {} bits, max sum |A_k U^k| {} bits, max |U|^deg {} bits (sign excluded)",
        a.max_v_bits, a.max_term_sum_bits, a.max_power_bits
    );
    let _ = writeln!(
        out,
        "\n{:<24} {:>4} {:>4} {:>10} {:>10} {:>10} {:>10} {:>11} {:>8}",
        "approximation",
        "seg",
        "deg",
        "max f64",
        "mean f64",
        "max fixed",
        "mean fixed",
        "max horner",
        "V bits"
    );
    let row = |out: &mut String,
               name: &str,
               segs: usize,
               deg: usize,
               e: &crate::approx::ErrorReport,
               bits: u32,
               acc: u32| {
        let _ = writeln!(
            out,
            "{name:<24} {segs:>4} {deg:>4} {:>10.3e} {:>10.3e} {:>10.3e} {:>10.3e} {:>11.3e} {:>5} @{acc}",
            e.f64.max_abs, e.f64.mean_abs, e.fixed.max_abs, e.fixed.mean_abs, e.horner.max_abs, bits
        );
    };
    row(&mut out, "this fit", file.segments, file.degree, &file.errors, a.max_v_bits, s.acc_frac);
    for c in &file.comparison {
        row(&mut out, &c.name, c.segments, c.degree, &c.errors, c.accumulator.max_v_bits, c.spec.acc_frac);
    }
    let _ = writeln!(
        out,
        "(errors on every input at 2^-{} in the range; fixed = exact accumulator, one floor; horner = truncation after every product at 2^-{})",
        s.in_frac, s.in_frac
    );
    out
}

/// Whether the engine evaluates `func` with the segmented protocol, so its sets can be priced.
fn priced_by_protocol(func: &str) -> bool {
    matches!(func, "gelu" | "tanh")
}

/// Per-element cost of one candidate set in the engine's segmented-activation protocol, and
/// its error as the engine computes it.
struct SetCost {
    random_ots: f64,
    iknp_bytes: f64,
    silent_bytes: f64,
    rounds: u64,
    engine_error: f64,
}

/// The segmented protocol's spec for `q` as the `fastlmpi` engine runs `func` (gelu: the
/// encoder's GeLU, approximate truncation; tanh: the pooler's, faithful).
fn engine_spec(func: &str, q: &QuantizedPiecewise, ctx: &HeContext) -> Result<GeluSpec> {
    let which = if func == "gelu" { SegmentedActivation::Gelu } else { SegmentedActivation::PoolerTanh };
    segmented_spec(&Profile::fastlmpi(), which, q, ctx.field())
}

/// Max |output − f(x)| over every input of `range` at the spec's 2^-frac, as the engine may compute it:
/// with an approximate truncation, over both values of each dropped carry (the knot floor's γ
/// and the output's ulp), which the two-party run may take.
fn engine_error(spec: &GeluSpec, f: fn(f64) -> f64, range: (f64, f64)) -> f64 {
    let scale = (1u64 << spec.frac) as f64;
    let xs: Vec<i64> = ((range.0 * scale).ceil() as i64..=(range.1 * scale).floor() as i64).collect();
    let approx = spec.out_trunc == TruncMode::Approx;
    let carries: &[u8] = if approx { &[0, 1] } else { &[0] };
    let mut worst = 0.0f64;
    for &gamma in carries {
        let ys = reference_gelu_carried(&xs, spec, &vec![gamma; xs.len()]);
        for (&x, &y) in xs.iter().zip(&ys) {
            let want = f(x as f64 / scale);
            for &c in carries {
                worst = worst.max(((y - i64::from(c)) as f64 / scale - want).abs());
            }
        }
    }
    worst
}

/// The cost of evaluating `q` for `func` with the `fastlmpi` profile's segmented-activation
/// protocol (`proto::nonlinear::gelu`, also used for tanh) as the engine configures it, on
/// [`COST_BATCH`] values, from the protocols' cost tables (the same tables the two-party tests
/// check byte for byte), and its error over `range` as the engine computes it.
fn set_cost(func: &str, q: &QuantizedPiecewise, range: (f64, f64), ctx: &HeContext) -> Result<SetCost> {
    let spec = engine_spec(func, q, ctx)?;
    let cost = gelu_cost(COST_BATCH, ctx, &spec)?;
    let per = |x: f64| x / COST_BATCH as f64;
    Ok(SetCost {
        random_ots: per(cost.random_ot_equivalents() as f64),
        iknp_bytes: per(cost.bytes_on(OtBackend::Iknp)),
        silent_bytes: per(cost.bytes_on(OtBackend::Silent)),
        rounds: cost.rounds(),
        engine_error: engine_error(&spec, function_spec(func)?.f, range),
    })
}

/// The protocol-cost table of the fit and of each quantised comparison set (gelu and tanh,
/// the functions the engine evaluates with the segmented protocol; empty for the others).
pub fn format_costs(file: &ApproxFile, compared: &[(String, QuantizedPiecewise)]) -> Result<String> {
    if !priced_by_protocol(&file.function) {
        return Ok(String::new());
    }
    let ctx = HeContext::new(&Profile::fastlmpi().nonlinear_preset())?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nprotocol cost per element ({} values, segmented protocol of the fastlmpi profile, ℓ = {}):",
        COST_BATCH,
        Profile::fastlmpi().fixed.ring_bits
    );
    let _ = writeln!(out, "{:<24} {:>11} {:>12} {:>12} {:>7} {:>11}", "approximation", "random OTs", "bytes IKNP", "bytes silent", "rounds", "max engine");
    let rows = std::iter::once(("this fit".to_string(), &file.quantized)).chain(compared.iter().map(|(n, q)| (n.clone(), q)));
    for (name, q) in rows {
        match set_cost(&file.function, q, file.range, &ctx) {
            Ok(c) => {
                let _ = writeln!(out, "{name:<24} {:>11.1} {:>12.1} {:>12.1} {:>7} {:>11.3e}", c.random_ots, c.iknp_bytes, c.silent_bytes, c.rounds, c.engine_error);
            }
            Err(e) => {
                let _ = writeln!(out, "{name:<24} not evaluable by the protocol: {e}");
            }
        }
    }
    let _ = writeln!(out, "(random OTs: 1-of-2 OT equivalents, a 1-of-N OT counting log2 N; bytes both directions incl. HE, batch headers left out; priced and erring as the engine runs {}: {}; max engine = max |output − f| on the range over the carries a run may drop)", file.function, if file.function == "gelu" { "approximate output truncation and knot floor" } else { "faithful truncations" });
    Ok(out)
}

/// The grid `--search` fits: segments, degrees and knot grids.
const SEARCH_SEGMENTS: [usize; 3] = [5, 7, 9];
const SEARCH_DEGREES: [usize; 3] = [2, 3, 4];
const SEARCH_KNOT_GRIDS: [Option<u32>; 3] = [None, Some(3), Some(4)];

/// One candidate of `--search`: its shape, its fixed-point error and its cost (or why not).
struct Candidate {
    segments: usize,
    degree: usize,
    knot_frac: Option<u32>,
    outcome: std::result::Result<(f64, SetCost), String>,
}

/// Whether `a` is beaten by `b` on the engine's error and silent bytes (at least as good on
/// both, better on one).
fn dominated(a: &SetCost, b: &SetCost) -> bool {
    b.engine_error <= a.engine_error && b.silent_bytes <= a.silent_bytes && (b.engine_error < a.engine_error || b.silent_bytes < a.silent_bytes)
}

/// `fit-approx --search`: the error/cost table of every candidate of the grid.
pub fn search(args: &FitApproxArgs) -> Result<String> {
    if !priced_by_protocol(&args.func) {
        return Err(Error::Input(format!("--search prices candidates by the segmented protocol, which evaluates gelu and tanh, not {}", args.func)));
    }
    let ctx = HeContext::new(&Profile::fastlmpi().nonlinear_preset())?;
    let mut rows = Vec::new();
    for segments in SEARCH_SEGMENTS {
        for degree in SEARCH_DEGREES {
            for knot_frac in SEARCH_KNOT_GRIDS {
                let candidate = FitApproxArgs { segments: Some(segments), degree: Some(degree), knot_frac, acc_frac: None, search: false, ..args.clone() };
                let outcome = build_file(&candidate)
                    .and_then(|file| Ok((file.errors.fixed.max_abs, set_cost(&args.func, &file.quantized, file.range, &ctx)?)))
                    .map_err(|e| e.to_string());
                rows.push(Candidate { segments, degree, knot_frac, outcome });
            }
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} candidates for {} (errors on the range: max fixed = |fixed − f| with exact floors, max engine = |output − f| over the carries the engine's run may drop; cost per element of {} values, segmented protocol as the fastlmpi engine runs it)",
        rows.len(),
        args.func,
        COST_BATCH
    );
    let _ = writeln!(out, "{:>4} {:>4} {:>6}  {:>10} {:>10} {:>11} {:>11} {:>12} {:>7}  best", "seg", "deg", "knots", "max fixed", "max engine", "random OTs", "bytes IKNP", "bytes silent", "rounds");
    for row in &rows {
        let knots = row.knot_frac.map_or("free".to_string(), |k| format!("2^-{k}"));
        match &row.outcome {
            Ok((err, c)) => {
                let best = !rows.iter().any(|o| matches!(&o.outcome, Ok((_, c2)) if dominated(c, c2)));
                let _ = writeln!(
                    out,
                    "{:>4} {:>4} {:>6}  {:>10.3e} {:>10.3e} {:>11.1} {:>11.1} {:>12.1} {:>7}  {}",
                    row.segments, row.degree, knots, err, c.engine_error, c.random_ots, c.iknp_bytes, c.silent_bytes, c.rounds, if best { "*" } else { "" }
                );
            }
            Err(e) => {
                let _ = writeln!(out, "{:>4} {:>4} {:>6}  not usable: {e}", row.segments, row.degree, knots);
            }
        }
    }
    let _ = writeln!(out, "(* = no other candidate has both a smaller or equal engine error and fewer or equal bytes on silent OT)");
    Ok(out)
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// Runs `fit-approx`: prints the table (or the JSON with --json) and writes FUNC.json and
/// FUNC.svg into --out-dir.
pub fn run(args: &FitApproxArgs) -> Result<()> {
    if args.search {
        print!("{}", search(args)?);
        return Ok(());
    }
    let file = build_file(args)?;
    let json = file.to_json()?;
    std::fs::create_dir_all(&args.out_dir).map_err(|e| Error::io(&args.out_dir, e))?;
    let json_path = args.out_dir.join(format!("{}.json", file.function));
    let svg_path = args.out_dir.join(format!("{}.svg", file.function));
    write(&json_path, &format!("{json}\n"))?;
    let func = function_spec(&file.function)?;
    let published: Vec<(String, crate::approx::PiecewisePoly)> = if args.compare {
        vec![
            ("FASTLMPI".into(), fastlmpi_gelu()?),
            ("BOLT".into(), bolt_gelu()?),
            ("BumbleBee".into(), bumblebee_gelu()?),
        ]
    } else {
        Vec::new()
    };
    let quantized_published = published
        .iter()
        .zip(&file.comparison)
        .map(|((_, p), row): (&(String, _), &ComparisonRow)| p.quantize(row.spec))
        .collect::<Result<Vec<_>>>()?;
    let mut curves =
        vec![PlotCurve { label: "this fit".into(), poly: &file.poly, quantized: &file.quantized }];
    for ((label, p), q) in published.iter().zip(&quantized_published) {
        curves.push(PlotCurve { label: label.clone(), poly: p, quantized: q });
    }
    let title = format!("{}: {} segments, degree {}", file.function, file.segments, file.degree);
    write_svg(&svg_path, &title, func.f, file.range, &curves)?;
    let installed = args.sets_dir.join(format!("{}.json", file.function));
    if args.install {
        std::fs::create_dir_all(&args.sets_dir).map_err(|e| Error::io(&args.sets_dir, e))?;
        write(&installed, &format!("{json}\n"))?;
    }
    if args.json {
        println!("{json}");
    } else {
        print!("{}", format_table(&file));
        let compared: Vec<(String, QuantizedPiecewise)> =
            file.comparison.iter().map(|r| r.name.clone()).zip(quantized_published.iter().cloned()).collect();
        print!("{}", format_costs(&file, &compared)?);
        println!("wrote {} and {}", json_path.display(), svg_path.display());
        if args.install {
            println!("installed {}: rebuild to use it (the handshake then rejects binaries built with the old set)", installed.display());
        } else {
            println!("the engine's set ({}) is unchanged; add --install to replace it", installed.display());
        }
    }
    Ok(())
}
