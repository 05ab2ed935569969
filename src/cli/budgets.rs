//! `fastlmpi bench --scale --cache-budgets 0,256,…`: what the server's encoded-weight cache
//! trades. For each budget, one fresh server process and one session of `--repeat` inferences of
//! the same length: the first inference encodes the weights, the later ones find what the
//! budget kept. Records each budget's inference times, the server's peak memory and cache size,
//! and checks that bytes and opened outputs do not depend on the budget (the cache changes only
//! the server's local work). Writes `results/cache-budgets-<model>.json`.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::bench::BenchArgs;
use super::party::{client_handshake, LocalServer};
use super::scale::{scale_model, tokens_for};
use super::{EngineArgs, NetArgs};
use crate::bench::provenance::Provenance;
use crate::bench::scale::fmt_gib;
use crate::engine::report::mib;
use crate::engine::{client_close, client_infer, client_open, Reveal};
use crate::error::{Error, Result};
use crate::model;
use crate::net::Channel;

/// One budget's session.
#[derive(Serialize)]
pub struct BudgetPoint {
    pub budget_mib: usize,
    /// Wall time of each inference of the session, in order (the first encodes the weights).
    pub inference_secs: Vec<f64>,
    /// Mean of the inferences after the first.
    pub warm_secs: Option<f64>,
    /// Bytes (both directions) of each inference.
    pub inference_bytes: Vec<u64>,
    pub server_peak_rss_bytes: Option<u64>,
    pub client_peak_rss_bytes: Option<u64>,
    /// Encoded weights the server's cache held at the end of the session.
    pub server_cache_bytes: Option<u64>,
}

#[derive(Serialize)]
pub struct BudgetRecord {
    pub model: String,
    pub seq_len: usize,
    pub layers_run: usize,
    pub layers_model: usize,
    pub profile: String,
    pub ot: String,
    pub note: String,
    pub points: Vec<BudgetPoint>,
    /// Every budget sent the same bytes and opened the same outputs, inference by inference.
    pub same_bytes_and_outputs: bool,
    pub command: String,
    pub provenance: Provenance,
}

/// The table `bench` prints: one row per budget.
pub fn table(r: &BudgetRecord) -> String {
    let mut s = format!(
        "model {}, {} tokens, {} of {} layers, profile {}, OT {}\n{}\n budget MiB   first (s)   later (s)   cache held MiB   server peak GiB   client peak GiB\n",
        r.model, r.seq_len, r.layers_run, r.layers_model, r.profile, r.ot, r.note
    );
    for p in &r.points {
        s.push_str(&format!(
            "{:>11} {:>11.1} {:>11} {:>16} {:>17} {:>17}\n",
            p.budget_mib,
            p.inference_secs.first().copied().unwrap_or(0.0),
            p.warm_secs.map_or("-".into(), |w| format!("{w:.1}")),
            p.server_cache_bytes.map_or("-".into(), |b| format!("{:.0}", mib(b))),
            fmt_gib(p.server_peak_rss_bytes),
            fmt_gib(p.client_peak_rss_bytes),
        ));
    }
    s.push_str(&format!("bytes and opened outputs equal under every budget: {}\n", r.same_bytes_and_outputs));
    s
}

/// One session of `repeat` inferences against a fresh server holding `budget_mib` of cache;
/// also returns each inference's pooled output.
fn budget_session(
    resolved: &model::ResolvedModel,
    public: &model::PublicModel,
    tok: &model::Tokenized,
    engine: &EngineArgs,
    net: &NetArgs,
    budget_mib: usize,
    repeat: usize,
) -> Result<(BudgetPoint, Vec<Option<Vec<f32>>>)> {
    let profile = engine.profile()?;
    let layers = engine.layers.unwrap_or(public.config.num_hidden_layers);
    let server = LocalServer::spawn(&resolved.dir, net, engine, budget_mib)?;
    let mut ch = server.connect(net)?;
    crate::engine::report::reset_peak_rss();
    client_handshake(&mut ch, public, &profile)?;
    let mut es = client_open(&mut ch, public, &profile, &[tok.len()])?;
    let (mut secs, mut bytes, mut outputs) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..repeat {
        let (t0, before) = (Instant::now(), ch.stats());
        let out = client_infer(&mut ch, &mut es, public, tok, layers, Reveal::Embedding, false)?;
        secs.push(t0.elapsed().as_secs_f64());
        bytes.push(ch.stats().since(&before).total_bytes());
        eprintln!("bench --cache-budgets: {budget_mib} MiB, inference {}: {:.1} s", i + 1, secs[i]);
        outputs.push(out.pooled);
    }
    let peer_peak = client_close(&mut ch)?;
    let client_peak = crate::engine::report::peak_rss_bytes();
    drop(ch);
    let report = server.finish(Duration::from_secs(net.timeout.max(1)))?;
    let warm = (secs.len() > 1).then(|| secs[1..].iter().sum::<f64>() / (secs.len() - 1) as f64);
    let point = BudgetPoint {
        budget_mib,
        inference_secs: secs,
        warm_secs: warm,
        inference_bytes: bytes,
        server_peak_rss_bytes: report.peak_rss_bytes.or(peer_peak),
        client_peak_rss_bytes: client_peak,
        server_cache_bytes: report.weight_cache_bytes,
    };
    Ok((point, outputs))
}

pub fn run_budgets(args: &BenchArgs, budgets: &[usize]) -> Result<()> {
    if budgets.is_empty() {
        return Err(Error::Input("--cache-budgets needs at least one budget (MiB)".into()));
    }
    if args.repeat < 2 {
        return Err(Error::Input("--repeat must be at least 2 (the first inference fills the cache)".into()));
    }
    let resolved = scale_model(args)?;
    let public = model::PublicModel::load(&resolved.dir)?;
    let depth = public.config.num_hidden_layers;
    let layers = args.layers.unwrap_or(1);
    if layers == 0 || layers > depth {
        return Err(Error::Input(format!("--layers {layers} outside 1..={depth} for {}", resolved.name)));
    }
    let n = args.lengths.as_ref().and_then(|l| l.first().copied()).unwrap_or(128);
    if n == 0 || n > public.config.max_seq_len() {
        return Err(Error::Input(format!("length {n} outside 1..={} for {}", public.config.max_seq_len(), resolved.name)));
    }
    let tok = tokens_for(&public, n)?;
    // Faithful truncations: the outputs are then a function of the input alone, so every
    // budget's outputs can be compared exactly (an approximate run drops random carries).
    let engine = EngineArgs { profile: "fastlmpi".into(), layers: Some(layers), threads: None, ot: args.ot.clone(), linear_trunc: Some("faithful".into()) };
    let profile = engine.profile()?;
    let net = NetArgs { timeout: args.timeout, net: args.net.clone() };
    let mut record = BudgetRecord {
        model: resolved.name.clone(),
        seq_len: n,
        layers_run: layers,
        layers_model: depth,
        profile: profile.name().into(),
        ot: profile.ot.name().into(),
        note: format!(
            "{layers} of {depth} layers run: the cache a full-depth server needs for the same hit rate is {depth}/{layers} × the cache held here; times and memory are this machine's; faithful truncations after the products, so that outputs compare exactly"
        ),
        points: Vec::new(),
        same_bytes_and_outputs: true,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        provenance: Provenance::current(),
    };
    let dir = super::results_dir();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let path = dir.join(format!("cache-budgets-{}.json", resolved.name));
    let mut reference: Option<(Vec<u64>, Vec<Option<Vec<f32>>>)> = None;
    for &budget in budgets {
        let (point, outputs) = budget_session(&resolved, &public, &tok, &engine, &net, budget, args.repeat)?;
        match &reference {
            None => reference = Some((point.inference_bytes.clone(), outputs)),
            Some((b, o)) => record.same_bytes_and_outputs &= *b == point.inference_bytes && *o == outputs,
        }
        record.points.push(point);
        let text = serde_json::to_string_pretty(&record).map_err(|e| Error::protocol("json", e.to_string()))?;
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
    }
    print!("{}", table(&record));
    eprintln!("wrote {}", path.display());
    if !record.same_bytes_and_outputs {
        return Err(Error::protocol("bench", "the weight-cache budget changed the bytes or the opened outputs"));
    }
    Ok(())
}
