//! Soak run: one session, many private inferences of varied length on a real checkpoint,
//! resident memory of both processes after every inference, results checked against the
//! fixed-point simulation (what a single-shot run returns bit for bit).
//!
//! ```text
//! cargo build --release --bin fastlmpi --example soak
//! FASTLMPI_SERVER_BIN=target/release/fastlmpi target/release/examples/soak [COUNT] [MODEL] [LAYERS]
//! cargo run --example soak -- --plot          # results/soak.svg from results/soak.json
//! ```
//!
//! Writes `results/soak.json` after every inference (a cut-short run still leaves a record)
//! and `results/soak.svg` (the memory curves) at the end. Growth is measured against the
//! largest resident size over the first ten inferences, by which caches and pools have reached
//! their working size.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fastlmpi::cli::party::{client_handshake, LocalServer};
use fastlmpi::cli::{EngineArgs, NetArgs};
use fastlmpi::engine::{bucket_len, client_close, client_infer, client_open, simulate, ClientOutcome, Profile, Reveal};
use fastlmpi::model::{resolve, Model, PublicModel, Tokenized};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

const WORDS: &[&str] = &[
    "the", "movie", "was", "surprisingly", "good", "and", "the", "acting", "felt", "honest", "but", "the",
    "ending", "dragged", "on", "for", "far", "too", "long", "while", "the", "music", "stayed", "lovely",
];
/// Growth allowed after the first ten inferences.
const GROWTH_LIMIT: f64 = 0.05;
const WARM_UP: usize = 10;

/// The i-th sentence: 2 to 14 words, so the padded length alternates between buckets.
fn sentence(i: usize) -> String {
    let words = 2 + (i * 7) % 13;
    (0..words).map(|k| WORDS[(i * 5 + k) % WORDS.len()]).collect::<Vec<_>>().join(" ")
}

#[derive(Serialize, Deserialize)]
struct Point {
    index: usize,
    tokens: usize,
    seq_len: usize,
    wall_secs: f64,
    bytes: u64,
    client_rss_mib: f64,
    server_rss_mib: f64,
}

#[derive(Serialize)]
struct Growth {
    /// Largest resident size over the first `WARM_UP` inferences (the baseline: the working
    /// size once caches and pools are full; inferences of different padded lengths leave
    /// different cache contents, so a single reading would depend on which came last).
    baseline_mib: f64,
    /// Largest resident size after the baseline, relative to it.
    max_growth: f64,
    /// Last resident size relative to the baseline.
    final_growth: f64,
}

#[derive(Serialize)]
struct SoakRecord {
    model: String,
    profile: String,
    layers: usize,
    requested: usize,
    completed: usize,
    session_lengths: Vec<usize>,
    command: String,
    machine: String,
    points: Vec<Point>,
    client_growth: Option<Growth>,
    server_growth: Option<Growth>,
    growth_limit: f64,
    growth_ok: Option<bool>,
    /// Inferences whose opened outputs equal the fixed-point simulation bit for bit.
    matches_single_shot: Option<usize>,
    mismatches: Vec<usize>,
}

/// Wait (up to 2 s) until every thread of `pid` has been off the CPU for a few polls in a row:
/// the server answers the last message of an inference before it finishes its bookkeeping
/// and trims its heap, so a reading taken at once would race with that.
fn wait_quiescent(pid: &str) {
    let running = || -> bool {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
        tasks.flatten().any(|t| {
            std::fs::read_to_string(t.path().join("stat")).ok().and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('R'))).unwrap_or(false)
        })
    };
    let mut idle = 0;
    for _ in 0..200 {
        idle = if running() { 0 } else { idle + 1 };
        if idle >= 3 {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Resident set size of a process in MiB, from /proc.
fn rss_mib(pid: &str) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS line")?;
    Ok(kib / 1024.0)
}

fn growth(series: &[f64]) -> Option<Growth> {
    let baseline = series.get(..WARM_UP)?.iter().copied().fold(0.0, f64::max);
    let after = &series[WARM_UP..];
    if after.is_empty() {
        return None;
    }
    let max = after.iter().copied().fold(baseline, f64::max);
    Some(Growth { baseline_mib: baseline, max_growth: max / baseline - 1.0, final_growth: after[after.len() - 1] / baseline - 1.0 })
}

fn write_json(path: &Path, rec: &SoakRecord) -> Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(rec)?).with_context(|| format!("writing {}", path.display()))
}

fn plot(path: &Path, points: &[Point]) -> Result<()> {
    let top = points.iter().map(|p| p.client_rss_mib.max(p.server_rss_mib)).fold(1.0, f64::max) * 1.15;
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("soak: resident memory per party after each inference (one session)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0usize..points.len().max(2), 0.0..top)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart.configure_mesh().x_desc("inference").y_desc("RSS (MiB)").draw().map_err(|e| anyhow::anyhow!("{e}"))?;
    for (label, colour, pick) in [("server", RED, 0usize), ("client", BLUE, 1)] {
        let series = points.iter().map(|p| (p.index, if pick == 0 { p.server_rss_mib } else { p.client_rss_mib }));
        chart
            .draw_series(LineSeries::new(series, colour.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// Bit-exact comparison of the opened outputs with the simulation of the same input.
fn matches_simulation(model: &Model, tok: &Tokenized, profile: &Profile, out: &ClientOutcome) -> Result<bool> {
    let sim = simulate(model, tok, profile)?;
    let pooled_ok = out.pooled.as_deref().is_none_or(|p| Some(p) == sim.pooled.as_slice());
    let logits_ok = match (&out.logits, &sim.logits) {
        (Some(a), Some(b)) => Some(a.as_slice()) == b.as_slice(),
        (None, _) => true,
        (Some(_), None) => false,
    };
    Ok(pooled_ok && logits_ok)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    let (json_path, svg_path) = (results.join("soak.json"), results.join("soak.svg"));
    if args.get(1).map(String::as_str) == Some("--plot") {
        let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(&json_path).context("reading results/soak.json")?)?;
        let points: Vec<Point> = serde_json::from_value(rec["points"].clone())?;
        return plot(&svg_path, &points);
    }
    let count: usize = args.get(1).map(|s| s.parse()).transpose().context("COUNT must be a number")?.unwrap_or(100);
    let model_name = args.get(2).cloned().unwrap_or_else(|| "minilm-l6".into());
    let layers: Option<usize> = args.get(3).map(|s| s.parse()).transpose().context("LAYERS must be a number")?;
    if count <= WARM_UP {
        bail!("COUNT must exceed {WARM_UP} (the warm-up the growth is measured against)");
    }
    let resolved = resolve(&model_name, false)?;
    let public = PublicModel::load(&resolved.dir)?;
    // Faithful truncations after the products, so every output can be checked against the
    // carry-free simulation exactly.
    let profile = Profile { linear_trunc: fastlmpi::proto::toolkit::trunc::TruncMode::Faithful, ..Profile::fastlmpi() };
    let layers = layers.unwrap_or(public.config.num_hidden_layers);
    let (max_len, max_pos) = (64, public.config.max_position_embeddings);
    let toks: Vec<Tokenized> = (0..count)
        .map(|i| {
            let text = sentence(i);
            let n = bucket_len(public.tokenizer.encode(&text, max_len, true)?.len(), max_pos);
            public.tokenizer.encode_padded(&text, max_len, true, Some(n))
        })
        .collect::<fastlmpi::Result<_>>()?;
    let mut lens: Vec<usize> = toks.iter().map(Tokenized::len).collect();
    lens.sort_unstable();
    lens.dedup();

    let net = NetArgs { timeout: 600, net: "local".into() };
    let server = LocalServer::spawn(&resolved.dir, &net, &EngineArgs { profile: profile.name().into(), layers: None, threads: None, ot: Some(profile.ot.name().into()), linear_trunc: Some(profile.linear_trunc.name().into()) }, 256)?;
    let server_pid = server.pid().context("server process already gone")?.to_string();
    let mut ch = server.connect(&net)?;
    client_handshake(&mut ch, &public, &profile)?;
    let mut es = client_open(&mut ch, &public, &profile, &lens)?;

    std::fs::create_dir_all(&results)?;
    let mut rec = SoakRecord {
        model: resolved.name.clone(),
        profile: profile.name().into(),
        requested: count,
        completed: 0,
        session_lengths: lens.clone(),
        layers,
        command: format!("FASTLMPI_SERVER_BIN=target/release/fastlmpi target/release/examples/soak {count} {model_name} {layers}"),
        machine: "2 cores shared with other jobs (timings are indicative only)".into(),
        points: Vec::new(),
        client_growth: None,
        server_growth: None,
        growth_limit: GROWTH_LIMIT,
        growth_ok: None,
        matches_single_shot: None,
        mismatches: Vec::new(),
    };
    let mut outcomes = Vec::with_capacity(count);
    for (index, tok) in toks.iter().enumerate() {
        let t0 = Instant::now();
        let before = fastlmpi::net::Channel::stats(&ch);
        let out = client_infer(&mut ch, &mut es, &public, tok, layers, Reveal::Embedding, false)?;
        let used = fastlmpi::net::Channel::stats(&ch).since(&before);
        let point = Point {
            index,
            tokens: tok.num_attended(),
            seq_len: tok.len(),
            wall_secs: t0.elapsed().as_secs_f64(),
            bytes: used.total_bytes(),
            client_rss_mib: rss_mib("self")?,
            server_rss_mib: {
                wait_quiescent(&server_pid);
                rss_mib(&server_pid)?
            },
        };
        eprintln!(
            "soak {index:>3}: {} tokens (padded {}), {:.1} s, client {:.1} MiB, server {:.1} MiB",
            point.tokens, point.seq_len, point.wall_secs, point.client_rss_mib, point.server_rss_mib
        );
        rec.points.push(point);
        rec.completed = index + 1;
        rec.client_growth = growth(&rec.points.iter().map(|p| p.client_rss_mib).collect::<Vec<_>>());
        rec.server_growth = growth(&rec.points.iter().map(|p| p.server_rss_mib).collect::<Vec<_>>());
        rec.growth_ok = match (&rec.client_growth, &rec.server_growth) {
            (Some(c), Some(s)) => Some(c.max_growth <= GROWTH_LIMIT && s.max_growth <= GROWTH_LIMIT),
            _ => None,
        };
        write_json(&json_path, &rec)?;
        plot(&svg_path, &rec.points)?;
        outcomes.push(out);
    }
    client_close(&mut ch)?;
    drop(ch);
    server.finish(Duration::from_secs(600))?;

    // The weights are loaded only now, so they do not count in the client's curve.
    let model = Model::load(&resolved.dir)?.truncated(layers)?;
    for (i, (tok, out)) in toks.iter().zip(&outcomes).enumerate() {
        if !matches_simulation(&model, tok, &profile, out)? {
            rec.mismatches.push(i);
        }
    }
    rec.matches_single_shot = Some(count - rec.mismatches.len());
    write_json(&json_path, &rec)?;
    println!("soak: {} inferences, growth ok: {:?}, equal to single-shot: {}/{count}", rec.completed, rec.growth_ok, count - rec.mismatches.len());
    if rec.growth_ok != Some(true) || !rec.mismatches.is_empty() {
        bail!("soak failed: growth {:?}, mismatches {:?}", rec.growth_ok, rec.mismatches);
    }
    Ok(())
}
