//! `bench --compare bolt`: the FASTLMPI and BOLT profiles of the same engine, on the same
//! machine, model and input, side by side per operator; BOLT's and FASTLMPI's published figures
//! and BOLT's code measured on a 2-core machine beside them, each labelled with its source;
//! optional link simulation and an analytic LAN/WAN estimate.
//!
//! With `--layers L` fewer than the model's depth, each per-layer operator's measured time,
//! bytes and rounds are multiplied by depth / L ("extrapolated"); pooling, head and setup are
//! counted once. Both directions' bytes are counted (what one party sends plus receives).
//!
//! The LAN/WAN estimate is `compute + bytes / bandwidth + rounds × RTT/2`, where `compute` is
//! the online time on an **unshaped** link: the run itself with `--net local`, otherwise a second
//! run of the same profile without shaping (a shaped run's time already contains the link, and
//! adding the link to it would count it twice).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::plot::{write_bar_panels, BarPanel, Series};
use super::provenance::Provenance;
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
    /// Online totals (extrapolated) on an unshaped link: the compute term of the estimates.
    #[serde(default)]
    pub compute: Cost,
    /// Where `compute` comes from (this run, or a second run without link shaping).
    #[serde(default)]
    pub compute_source: String,
    /// Analytic estimates from `compute`, bytes and rounds (not measured).
    #[serde(default)]
    pub estimates: Vec<LinkEstimate>,
    pub client_records: Recorder,
}

/// An analytic estimate of the online time on one link.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinkEstimate {
    pub link: String,
    pub estimated_secs: f64,
}

/// The links the estimates are made for (BOLT's LAN and WAN settings).
pub const ESTIMATE_LINKS: [(&str, Link); 2] = [("LAN 3 Gbps / 0.8 ms", Link::LAN), ("WAN 200 Mbps / 40 ms", Link::WAN)];

/// Runs one profile on `link` and fills in the unshaped compute time and the LAN/WAN estimates
/// (with a shaped `link`, the profile runs twice: once without shaping for the compute term).
pub fn run_profile(model: &Model, tok: &Tokenized, profile: &Profile, layers: usize, link: Link, timeout: Duration) -> Result<ProfileRun> {
    let (compute, source) = match link {
        Link::Unlimited => (None, "this run (unshaped link)"),
        Link::Shaped { .. } => {
            let unshaped = measure_profile(model, tok, profile, layers, Link::Unlimited, timeout)?;
            (Some(unshaped.online), "a second run of the same profile on an unshaped link")
        }
    };
    let mut run = measure_profile(model, tok, profile, layers, link, timeout)?;
    run.compute = compute.unwrap_or(run.online);
    run.compute_source = source.to_string();
    run.estimates = estimates(&run);
    Ok(run)
}

/// The LAN and WAN estimates: the unshaped compute time plus this run's bytes and rounds on the link.
pub fn estimates(run: &ProfileRun) -> Vec<LinkEstimate> {
    let c = Cost { secs: run.compute.secs, ..run.online };
    ESTIMATE_LINKS.iter().map(|(name, l)| LinkEstimate { link: name.to_string(), estimated_secs: analytic_secs(&c, *l) }).collect()
}

/// One measured run of a profile: a server thread and a client thread over loopback TCP with `link`.
fn measure_profile(model: &Model, tok: &Tokenized, profile: &Profile, layers: usize, link: Link, timeout: Duration) -> Result<ProfileRun> {
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
        compute: Cost::default(),
        compute_source: String::new(),
        estimates: Vec::new(),
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
/// simulator charges it). `c.secs` must be a time measured **without** link shaping.
pub fn analytic_secs(c: &Cost, link: Link) -> f64 {
    match link {
        Link::Unlimited => c.secs,
        Link::Shaped { bits_per_sec, rtt_ms } => c.secs + c.bytes as f64 * 8.0 / bits_per_sec + c.rounds as f64 * rtt_ms / 2000.0,
    }
}

/// A figure from elsewhere: seconds and bytes (exact count; printed as GiB and GB), with its source.
#[derive(Clone, Debug, Serialize)]
pub struct Reference {
    pub label: &'static str,
    pub source: &'static str,
    pub secs: f64,
    pub bytes: u64,
    /// The unit the source printed its bytes in, when that is not exact.
    pub unit_note: &'static str,
}

/// Figures not measured by this command: BOLT's published numbers, BOLT's code measured on a
/// 2-core machine, and FASTLMPI's published claims (BERT-base, 128 tokens).
#[derive(Clone, Debug, Serialize)]
pub struct Published {
    pub bolt_published: Vec<Reference>,
    pub bolt_code_2_cores: Vec<Reference>,
    /// BOLT's code on 2 cores, bytes per operator (both directions, w/o word elimination), in GB = 10^9 bytes.
    pub bolt_code_ops_gb: Vec<(&'static str, f64)>,
    pub fastlmpi_claims: &'static str,
}

const CIPHERPRUNE_T1: &str = "CipherPrune (ICLR'25) Table 1, BERT-base 128 tokens, 16-core AMD 3955WX (shared reference peers-and-bolt.md §2)";
const BOLT_2_CORES: &str = "BOLT's code (Clive2312/EzPC, branch bert), measured on a 2-core 24 GiB machine, client wall time (shared reference peers-and-bolt.md §5)";
/// The paper's "GB" next to the 2-core count of the same configuration.
const PAPER_GB: &str = "the paper's \"GB\" (59.6 matches the 2-core count's 59.61 GiB: they are GiB)";

pub fn published() -> Published {
    let from_gib = |g: f64| (g * (1u64 << 30) as f64).round() as u64;
    Published {
        bolt_published: vec![
            Reference { label: "BOLT w/o W.E.", source: CIPHERPRUNE_T1, secs: 484.5, bytes: from_gib(59.6), unit_note: PAPER_GB },
            Reference { label: "BOLT with W.E.", source: CIPHERPRUNE_T1, secs: 245.4, bytes: from_gib(25.7), unit_note: "the paper's \"GB\", taken as GiB like the row above" },
        ],
        bolt_code_2_cores: vec![
            Reference { label: "BOLT w/o W.E.", source: BOLT_2_CORES, secs: 3749.0, bytes: from_gib(59.61), unit_note: "64.00 GB counted (= 59.61 GiB)" },
            Reference { label: "BOLT with W.E.", source: BOLT_2_CORES, secs: 1594.0, bytes: from_gib(26.05), unit_note: "27.98 GB counted (= 26.05 GiB)" },
        ],
        bolt_code_ops_gb: vec![
            ("GeLU", 18.52),
            ("SoftMax", 18.22),
            ("LayerNorm (2×)", 15.10),
            ("gt_sub field→ring", 6.76),
            ("shift (truncation)", 4.21),
            ("pooler/classifier", 0.62),
            ("HE linear (incl. softmax·V)", 0.57),
        ],
        fastlmpi_claims: "FASTLMPI (arXiv 2412.16537, abstract): 54–64% less runtime and 72.2% less communication than BOLT",
    }
}

/// Bytes as GiB (2^30).
pub fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// The published and 2-core figures as text, each with its unit and source.
fn published_text(p: &Published) -> String {
    let mut s = String::new();
    for (title, refs) in [("published (not measured here)", &p.bolt_published), ("BOLT's code, measured on a 2-core machine", &p.bolt_code_2_cores)] {
        for r in refs.iter() {
            s.push_str(&format!("{title}: {} {} s, {:.2} GiB ({}); source: {}\n", r.label, r.secs, gib(r.bytes), r.unit_note, r.source));
        }
    }
    let sum: f64 = p.bolt_code_ops_gb.iter().map(|(_, g)| g).sum();
    s.push_str(&format!(
        "BOLT's code on 2 cores, bytes per operator in GB = 10^9 bytes (sum {sum:.2} GB): {}\n",
        p.bolt_code_ops_gb.iter().map(|(o, g)| format!("{o} {g}")).collect::<Vec<_>>().join(", ")
    ));
    s.push_str(&format!("published claim: {}\n", p.fastlmpi_claims));
    s
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
            gib(r.online.bytes),
            r.online.bytes as f64 / 1e9,
            r.online.rounds,
            if r.extrapolated { " [extrapolated]" } else { "" },
            r.cosine_vs_plaintext
        ));
        for e in &r.estimates {
            s.push_str(&format!(
                "    ESTIMATE (analytic, not measured) on {}: {:.1} s = compute {:.1} s on an unshaped link ({}) + bytes / bandwidth + rounds × RTT/2\n",
                e.link, e.estimated_secs, r.compute.secs, r.compute_source
            ));
        }
        if let Link::Shaped { .. } = link {
            s.push_str("    (the measured figures above include the simulated link)\n");
        }
    }
    s.push_str(&published_text(&published()));
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
    let mut ops: Vec<String> = Vec::new();
    for r in runs {
        for (op, _) in &r.ops {
            if !ops.contains(op) {
                ops.push(op.clone());
            }
        }
    }
    let series = |value: &dyn Fn(&Cost) -> f64| -> Vec<Series> {
        runs.iter()
            .map(|r| Series {
                name: format!("{}{}", r.profile, if r.extrapolated { " (extrapolated)" } else { "" }),
                values: ops.iter().map(|op| r.ops.iter().find(|(o, _)| o == op).map_or(0.0, |(_, c)| value(c))).collect(),
            })
            .collect()
    };
    let panels = [
        BarPanel { title: "time per operator (s)".into(), labels: ops.clone(), series: series(&|c| c.secs) },
        BarPanel { title: "communication per operator (MiB)".into(), labels: ops.clone(), series: series(&|c| mib(c.bytes)) },
    ];
    write_bar_panels(path, 1, &panels)
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
    /// Commit, command line, machine and date.
    pub provenance: Provenance,
    /// Peak resident memory of this process, which holds both parties of both profiles.
    pub process_peak_rss_bytes: Option<u64>,
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
        OpRecord { layer, op: op.into(), phase: Phase::Online, wall_secs: secs, comm: CommStats { bytes_sent: bytes, bytes_recv: 0, rounds: 2, messages_sent: 1 }, ot_equivalents: 0 }
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

    #[test]
    fn estimates_take_the_unshaped_compute_time_not_the_shaped_run() {
        let shaped = Cost { secs: 50.0, bytes: 375_000_000, rounds: 100 };
        let run = ProfileRun {
            profile: "fastlmpi".into(),
            layers_run: 1,
            layers_model: 1,
            extrapolated: false,
            ops: vec![],
            setup: Cost::default(),
            measured_online: shaped,
            online: shaped,
            cosine_vs_plaintext: 1.0,
            wall_secs: 50.0,
            compute: Cost { secs: 10.0, ..shaped },
            compute_source: String::new(),
            estimates: vec![],
            client_records: Recorder::default(),
        };
        let e = estimates(&run);
        assert_eq!(e.len(), 2);
        assert!((e[0].estimated_secs - 11.04).abs() < 1e-9, "LAN: {:?}", e[0]);
        assert!((e[1].estimated_secs - (10.0 + 15.0 + 2.0)).abs() < 1e-9, "WAN: {:?}", e[1]);
    }

    #[test]
    fn published_bytes_carry_their_units() {
        let p = published();
        let sum: f64 = p.bolt_code_ops_gb.iter().map(|(_, g)| g).sum();
        assert!((sum - 64.0).abs() < 0.01, "the per-operator GB add up to the 64.00 GB total");
        assert!((gib(p.bolt_code_2_cores[0].bytes) - 59.61).abs() < 0.01);
        let text = published_text(&p);
        assert!(text.contains("GB = 10^9 bytes") && text.contains("measured on a 2-core machine") && text.contains("Table 1"));
    }
}
