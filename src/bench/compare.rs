//! `bench --compare bolt`: the FASTLMPI and BOLT profiles of the same engine, on the same
//! machine, model and input, side by side per operator; BOLT's and FASTLMPI's published figures
//! beside them (labelled as published); optional link simulation and an analytic estimate.
//!
//! With `--layers L` fewer than the model's depth, each per-layer operator's measured time,
//! bytes and rounds are multiplied by depth / L ("extrapolated"); pooling, head and setup are
//! counted once. Both directions' bytes are counted (what one party sends plus receives).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::engine::report::{mib, Phase, Recorder};
use crate::engine::{client_close, client_infer, client_open, serve_session, Profile, Reveal, ServePolicy, ServerModel};
use crate::error::{Error, Result};
use crate::model::{cosine, forward_f32, Model, Tokenized};
use crate::net::local::{run_pair_with, PairOptions};
use crate::net::shaping::Link;
use crate::net::CommStats;

/// Time, bytes (both directions) and rounds of one operator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    pub secs: f64,
    pub bytes: u64,
    pub rounds: u64,
}

impl Cost {
    fn from_comm(secs: f64, c: CommStats) -> Cost {
        Cost { secs, bytes: c.bytes_sent + c.bytes_recv, rounds: c.rounds }
    }
    fn scaled(self, k: f64) -> Cost {
        Cost { secs: self.secs * k, bytes: (self.bytes as f64 * k).round() as u64, rounds: (self.rounds as f64 * k).round() as u64 }
    }
    fn add(self, o: Cost) -> Cost {
        Cost { secs: self.secs + o.secs, bytes: self.bytes + o.bytes, rounds: self.rounds + o.rounds }
    }
}

/// One profile's measured run, and its extrapolation to the model's depth.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProfileRun {
    pub profile: String,
    pub layers_run: usize,
    pub layers_model: usize,
    pub extrapolated: bool,
    /// Per operator, extrapolated to the full depth (online phase).
    pub ops: Vec<(String, Cost)>,
    pub setup: Cost,
    /// Online totals as measured (first `layers_run` layers).
    pub measured_online: Cost,
    /// Online totals extrapolated to the full depth.
    pub online: Cost,
    /// Pooled-embedding cosine of the private output against the f32 model of the same depth.
    pub cosine_vs_plaintext: f64,
    /// Wall time of the whole pair run (both parties, this machine).
    pub wall_secs: f64,
    pub client_records: Recorder,
}

/// Runs one profile: a server thread and a client thread over loopback TCP with `link`.
pub fn run_profile(model: &Model, tok: &Tokenized, profile: &Profile, layers: usize, link: Link, timeout: Duration) -> Result<ProfileRun> {
    let depth = model.config().num_hidden_layers;
    if layers == 0 || layers > depth {
        return Err(Error::Input(format!("--layers {layers} outside 1..={depth}")));
    }
    let sm = ServerModel::new(model, profile)?.with_policy(ServePolicy::benchmark());
    let t0 = Instant::now();
    let opts = PairOptions { timeout, link, ..PairOptions::default() };
    let out = run_pair_with(
        opts,
        |ch| serve_session(ch, &sm, profile),
        |ch| {
            let mut es = client_open(ch, &model.public, profile, &[tok.len()])?;
            let outcome = client_infer(ch, &mut es, &model.public, tok, layers, Reveal::Embedding, false)?;
            client_close(ch)?;
            Ok((es.setup, outcome))
        },
    )?;
    let wall_secs = t0.elapsed().as_secs_f64();
    let (setup, outcome) = out.client;
    let plain = forward_f32(&model.clone().truncated(layers)?, tok)?;
    let pooled = outcome.pooled.as_deref().ok_or_else(|| Error::protocol("bench", "no embedding opened"))?;
    let cos = cosine(pooled, plain.pooled.as_slice().unwrap_or(&[]));
    let k = depth as f64 / layers as f64;
    let ops = extrapolate(&outcome.records, k);
    let (st, sc) = setup.total(Phase::Setup);
    let (mt, mc) = outcome.records.total(Phase::Online);
    let online = ops.iter().fold(Cost::default(), |acc, (_, c)| acc.add(*c));
    Ok(ProfileRun {
        profile: profile.name().to_string(),
        layers_run: layers,
        layers_model: depth,
        extrapolated: layers < depth,
        ops,
        setup: Cost::from_comm(st, sc),
        measured_online: Cost::from_comm(mt, mc),
        online,
        cosine_vs_plaintext: cos,
        wall_secs,
        client_records: outcome.records,
    })
}

/// Per-operator totals; operators inside encoder layers are scaled by `k` (= depth / layers run).
pub fn extrapolate(rec: &Recorder, k: f64) -> Vec<(String, Cost)> {
    let mut out: Vec<(String, Cost)> = Vec::new();
    for r in rec.records.iter().filter(|r| r.phase == Phase::Online) {
        let c = Cost::from_comm(r.wall_secs, r.comm);
        let c = if r.layer.is_some() { c.scaled(k) } else { c };
        match out.iter_mut().find(|(op, _)| *op == r.op) {
            Some((_, acc)) => *acc = acc.add(c),
            None => out.push((r.op.clone(), c)),
        }
    }
    out
}

/// `compute + bytes / bandwidth + rounds × RTT/2` (one one-way latency per flight, as the link
/// simulator charges it), with the compute time taken from the unshaped measurement.
pub fn analytic_secs(c: &Cost, link: Link) -> f64 {
    match link {
        Link::Unlimited => c.secs,
        Link::Shaped { bits_per_sec, rtt_ms } => c.secs + c.bytes as f64 * 8.0 / bits_per_sec + c.rounds as f64 * rtt_ms / 2000.0,
    }
}

/// BOLT's and FASTLMPI's published figures for BERT-base at 128 tokens (not measured here).
#[derive(Clone, Debug, Serialize)]
pub struct Published {
    pub source: &'static str,
    pub bolt_without_we: (f64, f64),
    pub bolt_with_we: (f64, f64),
    pub bolt_ops_gib: Vec<(&'static str, f64)>,
    pub bolt_this_machine: (f64, f64),
    pub fastlmpi_claims: &'static str,
}

pub fn published() -> Published {
    Published {
        source: "BOLT (S&P'24) via CipherPrune Table 1 (16 cores); per-operator bytes and the 2-core run from BOLT's public code (shared reference, peers-and-bolt.md §5)",
        bolt_without_we: (484.5, 59.6),
        bolt_with_we: (245.4, 25.7),
        bolt_ops_gib: vec![
            ("GeLU", 18.52),
            ("SoftMax", 18.22),
            ("LayerNorm (2×)", 15.10),
            ("gt_sub field→ring", 6.76),
            ("shift (truncation)", 4.21),
            ("pooler/classifier", 0.62),
            ("HE linear (incl. softmax·V)", 0.57),
        ],
        bolt_this_machine: (3749.0, 59.61),
        fastlmpi_claims: "FASTLMPI (arXiv 2412.16537): 54–64% less runtime and 72.2% less communication than BOLT",
    }
}

/// The comparison table as text.
pub fn table(runs: &[ProfileRun], link: Link) -> String {
    let mut s = String::new();
    let names: Vec<&str> = runs.iter().map(|r| r.profile.as_str()).collect();
    let extrap = runs.iter().any(|r| r.extrapolated);
    s.push_str(&format!(
        "per operator, online{}: time (s) / MiB / rounds\n",
        if extrap { format!(", EXTRAPOLATED from {} of {} layers", runs[0].layers_run, runs[0].layers_model) } else { String::new() }
    ));
    s.push_str(&format!("{:<14}", "operator"));
    for n in &names {
        s.push_str(&format!(" {:>32}", n));
    }
    if runs.len() == 2 {
        s.push_str(&format!(" {:>16}", "ratio t / bytes"));
    }
    s.push('\n');
    let mut ops: Vec<String> = Vec::new();
    for r in runs {
        for (op, _) in &r.ops {
            if !ops.contains(op) {
                ops.push(op.clone());
            }
        }
    }
    let cost_of = |r: &ProfileRun, op: &str| r.ops.iter().find(|(o, _)| o == op).map(|(_, c)| *c).unwrap_or_default();
    for op in &ops {
        s.push_str(&format!("{op:<14}"));
        for r in runs {
            let c = cost_of(r, op);
            s.push_str(&format!(" {:>10.1} {:>12.1} {:>8}", c.secs, mib(c.bytes), c.rounds));
        }
        if runs.len() == 2 {
            let (a, b) = (cost_of(&runs[0], op), cost_of(&runs[1], op));
            s.push_str(&format!(" {:>7} {:>8}", ratio(a.secs, b.secs), ratio(a.bytes as f64, b.bytes as f64)));
        }
        s.push('\n');
    }
    s.push_str(&format!("{:<14}", "TOTAL online"));
    for r in runs {
        s.push_str(&format!(" {:>10.1} {:>12.1} {:>8}", r.online.secs, mib(r.online.bytes), r.online.rounds));
    }
    if runs.len() == 2 {
        s.push_str(&format!(" {:>7} {:>8}", ratio(runs[0].online.secs, runs[1].online.secs), ratio(runs[0].online.bytes as f64, runs[1].online.bytes as f64)));
    }
    s.push('\n');
    for r in runs {
        s.push_str(&format!(
            "{}: setup {:.1} s / {:.1} MiB; online {:.1} s, {:.2} GiB ({:.2} GB), {} rounds{}; cosine vs f32 {:.6}\n",
            r.profile,
            r.setup.secs,
            mib(r.setup.bytes),
            r.online.secs,
            r.online.bytes as f64 / (1u64 << 30) as f64,
            r.online.bytes as f64 / 1e9,
            r.online.rounds,
            if r.extrapolated { " [extrapolated]" } else { "" },
            r.cosine_vs_plaintext
        ));
        for (name, l) in [("LAN 3 Gbps/0.8 ms", Link::LAN), ("WAN 200 Mbps/40 ms", Link::WAN)] {
            s.push_str(&format!("    analytic estimate on {name}: {:.1} s\n", analytic_secs(&r.online, l)));
        }
        if let Link::Shaped { .. } = link {
            s.push_str("    (measured figures above already include the simulated link)\n");
        }
    }
    let p = published();
    s.push_str(&format!(
        "published (not measured here): BOLT w/o W.E. {} s, {} GB; BOLT with W.E. {} s, {} GB (16 cores); BOLT's code on 2 cores: {} s, {} GiB\n",
        p.bolt_without_we.0, p.bolt_without_we.1, p.bolt_with_we.0, p.bolt_with_we.1, p.bolt_this_machine.0, p.bolt_this_machine.1
    ));
    s.push_str(&format!("published BOLT bytes per operator (GiB): {}\n", p.bolt_ops_gib.iter().map(|(o, g)| format!("{o} {g}")).collect::<Vec<_>>().join(", ")));
    s.push_str(&format!("published: {}\n", p.fastlmpi_claims));
    s
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "-".to_string()
    }
}

/// Grouped bars per operator: time (top) and MiB (bottom), one colour per profile.
pub fn write_svg(path: &Path, runs: &[ProfileRun]) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| Error::Config(format!("plotting failed: {e}"));
    let mut ops: Vec<String> = Vec::new();
    for r in runs {
        for (op, _) in &r.ops {
            if !ops.contains(op) {
                ops.push(op.clone());
            }
        }
    }
    let root = SVGBackend::new(path, (1100, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let panels = root.split_evenly((2, 1));
    let colours = [RGBColor(200, 60, 40), RGBColor(40, 90, 200)];
    for (panel, (title, value)) in panels.iter().zip([
        ("time per operator (s)", Box::new(|c: &Cost| c.secs) as Box<dyn Fn(&Cost) -> f64>),
        ("communication per operator (MiB)", Box::new(|c: &Cost| mib(c.bytes))),
    ]) {
        let max = runs.iter().flat_map(|r| r.ops.iter().map(|(_, c)| value(c))).fold(1e-9, f64::max) * 1.1;
        let n = ops.len().max(1);
        let mut chart = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..n as f64, 0f64..max)
            .map_err(|e| err(&e))?;
        let labels = ops.clone();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|x| labels.get(x.floor() as usize).cloned().unwrap_or_default())
            .draw()
            .map_err(|e| err(&e))?;
        let width = 0.8 / runs.len().max(1) as f64;
        for (ri, r) in runs.iter().enumerate() {
            let colour = colours[ri % colours.len()];
            let bars = ops.iter().enumerate().map(|(i, op)| {
                let v = r.ops.iter().find(|(o, _)| o == op).map(|(_, c)| value(c)).unwrap_or(0.0);
                let x0 = i as f64 + 0.1 + ri as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width, v)], colour.filled())
            });
            chart
                .draw_series(bars)
                .map_err(|e| err(&e))?
                .label(format!("{}{}", r.profile, if r.extrapolated { " (extrapolated)" } else { "" }))
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled()));
        }
        chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw().map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))
}

/// Everything one `bench --compare` invocation produced.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub model: String,
    pub seq_len: usize,
    pub tokens: usize,
    pub net: String,
    pub runs: Vec<ProfileRun>,
    pub published: Published,
    pub command: String,
}

/// Writes `results/bench-<stamp>.json` and `.svg`; returns both paths.
pub fn write_results(dir: &Path, stamp: &str, cmp: &Comparison) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let json = dir.join(format!("bench-{stamp}.json"));
    let text = serde_json::to_string_pretty(cmp).map_err(|e| Error::protocol("json", e.to_string()))?;
    std::fs::write(&json, text).map_err(|e| Error::io(&json, e))?;
    let svg = dir.join(format!("bench-{stamp}.svg"));
    write_svg(&svg, &cmp.runs)?;
    Ok((json, svg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::report::OpRecord;

    fn rec(layer: Option<usize>, op: &str, secs: f64, bytes: u64) -> OpRecord {
        OpRecord { layer, op: op.into(), phase: Phase::Online, wall_secs: secs, comm: CommStats { bytes_sent: bytes, bytes_recv: 0, rounds: 2, messages_sent: 1 } }
    }

    #[test]
    fn extrapolation_scales_layer_operators_only() {
        let r = Recorder { records: vec![rec(Some(0), "gelu", 1.0, 100), rec(Some(1), "gelu", 3.0, 100), rec(None, "pool", 0.5, 10)] };
        let ops = extrapolate(&r, 6.0);
        assert_eq!(ops[0], ("gelu".to_string(), Cost { secs: 24.0, bytes: 1200, rounds: 24 }));
        assert_eq!(ops[1], ("pool".to_string(), Cost { secs: 0.5, bytes: 10, rounds: 2 }));
    }

    #[test]
    fn analytic_estimate_adds_transfer_and_latency() {
        let c = Cost { secs: 10.0, bytes: 375_000_000, rounds: 100 };
        assert_eq!(analytic_secs(&c, Link::Unlimited), 10.0);
        let t = analytic_secs(&c, Link::Shaped { bits_per_sec: 3e9, rtt_ms: 0.8 });
        assert!((t - (10.0 + 1.0 + 0.04)).abs() < 1e-9, "{t}");
    }
}
