//! `bench --scale`: how the cost of one private inference grows with the sequence length n.
//!
//! Attention's products and SoftMax are quadratic in n, the linear layers, LayerNorm and GeLU
//! linear; a user choosing a system needs the measured growth, not one point. Each length is one
//! real private inference (both parties over loopback TCP, the server in its own process so each
//! party's peak memory is its own), per-layer operators extrapolated to the model's depth exactly
//! as `bench --compare` does ([`super::compare::extrapolate`]). Per operator, a growth exponent is
//! fitted by least squares of ln(cost) on ln(n), for time and for bytes.
//!
//! The protocols are data-oblivious: messages, sizes and rounds depend only on the public shape
//! and length, so a random checkpoint of a shape (`make-model`) gives that shape's real cost.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::compare::{gib, Cost};
use super::plot::{write_loglog_panels, LinePanel, PlotLine};
use super::provenance::Provenance;
use crate::engine::report::mib;
use crate::error::{Error, Result};

/// The encoder-layer operators, in the order a layer runs them.
pub const LAYER_OPERATORS: [&str; 10] =
    ["qkv", "scores", "softmax", "context", "attn-out", "layernorm-1", "ffn-in", "gelu", "ffn-out", "layernorm-2"];

/// The lengths the issue asks for (mpnet-base).
pub const DEFAULT_LENGTHS: [usize; 7] = [8, 16, 32, 64, 128, 256, 512];

/// What the record says about random weights and extrapolation.
pub const OBLIVIOUS_NOTE: &str = "the protocols are data-oblivious (messages, sizes and rounds depend only on the public \
shape and length), so costs measured on random weights of a shape are the real costs of that shape";

/// One length: one private inference.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScalePoint {
    /// Padded length n (every position a real token).
    pub seq_len: usize,
    pub layers_run: usize,
    pub layers_model: usize,
    /// True when `layers_run` < `layers_model`: per-layer operators are scaled by their ratio.
    pub extrapolated: bool,
    /// Online cost per operator at the model's full depth (extrapolated when marked).
    pub ops: Vec<(String, Cost)>,
    /// Online total at full depth (extrapolated when marked).
    pub online: Cost,
    /// Online total as measured on `layers_run` layers.
    pub measured_online: Cost,
    /// Session setup (keys, base OTs), once per session.
    pub setup: Cost,
    /// Client's peak resident memory during this inference (its own process, VmHWM reset first).
    pub client_peak_rss_bytes: Option<u64>,
    /// Server's peak resident memory (its own process, a fresh one per length).
    pub server_peak_rss_bytes: Option<u64>,
    /// Pooled-output cosine against the f32 model of the same depth (a check the run was right).
    pub cosine_vs_plaintext: Option<f64>,
    /// Wall time of the session as the client saw it (setup included).
    pub wall_secs: f64,
}

/// The fitted growth of one operator: cost ∝ n^exponent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exponent {
    pub op: String,
    pub time: Option<f64>,
    pub bytes: Option<f64>,
    /// Lengths the fit used.
    pub points: usize,
}

/// Everything one `bench --scale` writes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScaleRecord {
    pub model: String,
    /// Layers × hidden, heads, FFN, as in config.json.
    pub shape: String,
    /// True for a `make-model` checkpoint.
    pub random_weights: bool,
    pub note: String,
    pub profile: String,
    pub ot: String,
    /// Server's encoded-weight cache budget (MiB; 0 = encode per call, `serve`'s default).
    pub weight_cache_mib: usize,
    pub points: Vec<ScalePoint>,
    pub exponents: Vec<Exponent>,
    pub command: String,
    pub provenance: Provenance,
}

/// Least-squares slope of ln(y) on ln(x); `None` with fewer than two distinct x or a y ≤ 0.
pub fn fit_exponent(points: &[(f64, f64)]) -> Option<f64> {
    if points.iter().any(|&(x, y)| !(x > 0.0 && y > 0.0 && x.is_finite() && y.is_finite())) {
        return None;
    }
    let logs: Vec<(f64, f64)> = points.iter().map(|&(x, y)| (x.ln(), y.ln())).collect();
    let k = logs.len() as f64;
    let (mx, my) = (logs.iter().map(|p| p.0).sum::<f64>() / k, logs.iter().map(|p| p.1).sum::<f64>() / k);
    let sxx: f64 = logs.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if logs.len() < 2 || sxx < 1e-12 {
        return None;
    }
    let sxy: f64 = logs.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    Some(sxy / sxx)
}

/// An operator's cost at one point (zero when absent).
pub fn op_cost(p: &ScalePoint, op: &str) -> Cost {
    if op == "all" {
        return p.online;
    }
    p.ops.iter().find(|(o, _)| o == op).map(|(_, c)| *c).unwrap_or_default()
}

/// The operators present in the points: the layer operators in layer order, then the rest, then "all".
pub fn operators(points: &[ScalePoint]) -> Vec<String> {
    let mut ops: Vec<String> = LAYER_OPERATORS.iter().map(|s| s.to_string()).filter(|o| points.iter().any(|p| p.ops.iter().any(|(x, _)| x == o))).collect();
    for p in points {
        for (o, _) in &p.ops {
            if !ops.contains(o) {
                ops.push(o.clone());
            }
        }
    }
    ops.push("all".into());
    ops
}

/// Growth exponents per operator (time and bytes against n).
pub fn exponents(points: &[ScalePoint]) -> Vec<Exponent> {
    operators(points)
        .into_iter()
        .map(|op| {
            let series = |f: &dyn Fn(&Cost) -> f64| -> Vec<(f64, f64)> { points.iter().map(|p| (p.seq_len as f64, f(&op_cost(p, &op)))).collect() };
            Exponent { time: fit_exponent(&series(&|c| c.secs)), bytes: fit_exponent(&series(&|c| c.bytes as f64)), points: points.len(), op }
        })
        .collect()
}

fn fmt_exp(e: Option<f64>) -> String {
    e.map_or("-".to_string(), |v| format!("{v:.2}"))
}

/// A peak-memory figure in GiB with two decimals, or "not measured".
pub fn fmt_gib(b: Option<u64>) -> String {
    b.map_or("not measured".to_string(), |b| format!("{:.2}", gib(b)))
}

/// The per-length table, the per-operator exponents and the memory, as text.
pub fn table(r: &ScaleRecord) -> String {
    let mut s = String::new();
    let Some(first) = r.points.first() else { return "no lengths measured\n".into() };
    s.push_str(&format!("model {} ({}), profile {}, OT {}, server weight cache {} MiB\n", r.model, r.shape, r.profile, r.ot, r.weight_cache_mib));
    if first.extrapolated {
        s.push_str(&format!("EXTRAPOLATED: {} of {} layers run, per-layer operators scaled by {}/{}\n", first.layers_run, first.layers_model, first.layers_model, first.layers_run));
    }
    s.push_str(&format!("note: {}\n", r.note));
    s.push_str("     n   online (s)        GiB    rounds   setup (s)   client peak GiB   server peak GiB   cosine\n");
    for p in &r.points {
        s.push_str(&format!(
            "{:>6} {:>12.1} {:>10.2} {:>9} {:>11.1} {:>17} {:>17} {:>8}\n",
            p.seq_len,
            p.online.secs,
            gib(p.online.bytes),
            p.online.rounds,
            p.setup.secs,
            fmt_gib(p.client_peak_rss_bytes),
            fmt_gib(p.server_peak_rss_bytes),
            p.cosine_vs_plaintext.map_or("-".into(), |c| format!("{c:.5}"))
        ));
    }
    s.push_str("per operator (full depth): time (s) / MiB / rounds per length; growth exponent of time and bytes in n\n");
    s.push_str(&format!("{:<12}", "operator"));
    for p in &r.points {
        s.push_str(&format!(" {:>26}", format!("n = {}", p.seq_len)));
    }
    s.push_str(&format!(" {:>7} {:>7}\n", "t ~ n^", "B ~ n^"));
    for e in &r.exponents {
        s.push_str(&format!("{:<12}", e.op));
        for p in &r.points {
            let c = op_cost(p, &e.op);
            s.push_str(&format!(" {:>9.1} {:>9.1} {:>6}", c.secs, mib(c.bytes), c.rounds));
        }
        s.push_str(&format!(" {:>7} {:>7}\n", fmt_exp(e.time), fmt_exp(e.bytes)));
    }
    s
}

/// Log–log lines, one per operator (and the total): time (left) and MiB (right) against n.
pub fn write_svg(path: &Path, r: &ScaleRecord) -> Result<()> {
    let ops = operators(&r.points);
    let series = |f: &dyn Fn(&Cost) -> f64| -> Vec<PlotLine> {
        ops.iter().map(|op| PlotLine { name: op.clone(), points: r.points.iter().map(|p| (p.seq_len as f64, f(&op_cost(p, op)))).collect() }).collect()
    };
    let extrap = if r.points.first().is_some_and(|p| p.extrapolated) { ", extrapolated to full depth" } else { "" };
    let panels = [
        LinePanel { title: format!("{}: online time (s){extrap}", r.model), x_label: "sequence length n".into(), series: series(&|c| c.secs) },
        LinePanel { title: "communication (MiB, both directions)".into(), x_label: "sequence length n".into(), series: series(&|c| mib(c.bytes)) },
    ];
    write_loglog_panels(path, &panels)
}

/// Writes `scale-<model>.json` and `.svg` into `dir`; returns both paths.
pub fn write_results(dir: &Path, r: &ScaleRecord) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let json = dir.join(format!("scale-{}.json", r.model));
    let text = serde_json::to_string_pretty(r).map_err(|e| Error::protocol("json", e.to_string()))?;
    std::fs::write(&json, text).map_err(|e| Error::io(&json, e))?;
    let svg = json.with_extension("svg");
    write_svg(&svg, r)?;
    Ok((json, svg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(n: usize, secs: f64, bytes: u64) -> ScalePoint {
        let c = Cost { secs, bytes, rounds: 10 };
        ScalePoint {
            seq_len: n,
            layers_run: 1,
            layers_model: 12,
            extrapolated: true,
            ops: vec![("softmax".into(), c), ("qkv".into(), Cost { secs: n as f64, bytes: 1000 * n as u64, rounds: 4 })],
            online: c,
            measured_online: c,
            setup: Cost::default(),
            client_peak_rss_bytes: Some(1 << 30),
            server_peak_rss_bytes: None,
            cosine_vs_plaintext: Some(0.999),
            wall_secs: 1.0,
        }
    }

    #[test]
    fn exponent_of_a_power_law_is_its_power() {
        let pts: Vec<(f64, f64)> = [8.0, 16.0, 64.0, 512.0].iter().map(|&n: &f64| (n, 3.0 * n.powf(1.7))).collect();
        assert!((fit_exponent(&pts).unwrap() - 1.7).abs() < 1e-9);
        assert_eq!(fit_exponent(&[(8.0, 1.0)]), None);
        assert_eq!(fit_exponent(&[(8.0, 1.0), (8.0, 2.0)]), None);
        assert_eq!(fit_exponent(&[(8.0, 1.0), (16.0, 0.0)]), None);
    }

    #[test]
    fn exponents_per_operator_in_layer_order_then_total() {
        let pts: Vec<ScalePoint> = [8usize, 16, 32].iter().map(|&n| point(n, (n * n) as f64, (n * n) as u64)).collect();
        let e = exponents(&pts);
        let names: Vec<&str> = e.iter().map(|x| x.op.as_str()).collect();
        assert_eq!(names, ["qkv", "softmax", "all"]);
        assert!((e[0].time.unwrap() - 1.0).abs() < 1e-9 && (e[0].bytes.unwrap() - 1.0).abs() < 1e-9);
        assert!((e[1].time.unwrap() - 2.0).abs() < 1e-9 && (e[1].bytes.unwrap() - 2.0).abs() < 1e-9);
        let rec = ScaleRecord {
            model: "m".into(),
            shape: "s".into(),
            random_weights: true,
            note: OBLIVIOUS_NOTE.into(),
            profile: "fastlmpi".into(),
            ot: "iknp".into(),
            weight_cache_mib: 0,
            points: pts,
            exponents: e,
            command: String::new(),
            provenance: Provenance::current(),
        };
        let t = table(&rec);
        assert!(t.contains("EXTRAPOLATED") && t.contains("data-oblivious") && t.contains("not measured") && t.contains("2.00"), "{t}");
    }
}
