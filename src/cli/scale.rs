//! `fastlmpi bench --scale`: one real private inference per sequence length (server in its own
//! process, client in this one), per-operator costs extrapolated to the model's depth, growth
//! exponents, `results/scale-<model>.json` and `.svg` (see `bench::scale`).

use std::path::Path;

use super::bench::{BenchArgs, BENCH_PASSAGE};
use super::party::{run_local, ClientInput};
use super::{EngineArgs, NetArgs};
use crate::bench::compare::{extrapolate, Cost};
use crate::bench::provenance::Provenance;
use crate::bench::scale::{self, ScalePoint, ScaleRecord, DEFAULT_LENGTHS, OBLIVIOUS_NOTE};
use crate::engine::report::Phase;
use crate::engine::Reveal;
use crate::error::{Error, Result};
use crate::model::shapes::{write_random_checkpoint, BertShape};
use crate::model::{self, Tokenized};

/// Folder (under the models folder) of the random BERT-large checkpoint `--large` uses.
pub const LARGE_DIR: &str = "bert-large-random";

/// Seed of that checkpoint (any seed gives the same costs).
const LARGE_SEED: u64 = 1;

/// The model `--scale` runs: `--large` → the random BERT-large checkpoint (written on first use),
/// otherwise `--model`.
pub(super) fn scale_model(args: &BenchArgs) -> Result<model::ResolvedModel> {
    if !args.large {
        let r = model::resolve(&args.model, !args.no_fetch)?;
        if let Some(note) = &r.note {
            eprintln!("note: {note}");
        }
        return Ok(r);
    }
    let dir = model::models_dir().join(LARGE_DIR);
    if !model::is_checkpoint(&dir) {
        eprintln!("bench: writing a random BERT-large checkpoint (24 × 1024, 1.25 GiB) to {}", dir.display());
        write_random_checkpoint(&dir, &BertShape::bert_large(), LARGE_SEED)?;
    }
    Ok(model::ResolvedModel { name: "bert-large".into(), dir, note: None })
}

/// A text of at least `n` real tokens: the benchmark passage repeated.
pub(super) fn tokens_for(public: &model::PublicModel, n: usize) -> Result<Tokenized> {
    let text = vec![BENCH_PASSAGE; 1 + n / 64].join(" ");
    let tok = public.tokenizer.encode_padded(&text, n, true, Some(n))?;
    if tok.num_attended() != n {
        return Err(Error::Input(format!("the benchmark passage gives {} real tokens, not {n}", tok.num_attended())));
    }
    Ok(tok)
}

fn is_random_checkpoint(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("config.json")).is_ok_and(|t| t.contains("fastlmpi_random_weights"))
}

fn point_from(run: &super::party::LocalRun, n: usize, layers: usize, depth: usize) -> ScalePoint {
    let rec = &run.outcome.records;
    let ops = extrapolate(rec, depth as f64 / layers as f64);
    let online = ops.iter().fold(Cost::default(), |acc, (_, c)| Cost { secs: acc.secs + c.secs, bytes: acc.bytes + c.bytes, rounds: acc.rounds + c.rounds });
    let total = |phase| {
        let (t, c) = rec.total(phase);
        Cost { secs: t, bytes: c.bytes_sent + c.bytes_recv, rounds: c.rounds }
    };
    ScalePoint {
        seq_len: n,
        layers_run: layers,
        layers_model: depth,
        extrapolated: layers < depth,
        ops,
        online,
        measured_online: total(Phase::Online),
        setup: total(Phase::Setup),
        client_peak_rss_bytes: run.client.peak_rss_bytes,
        server_peak_rss_bytes: run.server.peak_rss_bytes.or(run.client.peer_peak_rss_bytes),
        cosine_vs_plaintext: None,
        wall_secs: run.client.wall_secs,
    }
}

/// Cosine of each length's private pooled output against the f32 model of the same depth
/// (loaded after every inference, so it does not count in the client's peak memory).
fn fill_cosines(dir: &Path, layers: usize, points: &mut [ScalePoint], runs: &[(Tokenized, Option<Vec<f32>>)]) -> Result<()> {
    let m = model::Model::load(dir)?.truncated(layers)?;
    for (p, (tok, pooled)) in points.iter_mut().zip(runs) {
        if let Some(pooled) = pooled {
            let plain = model::forward_f32(&m, tok)?;
            p.cosine_vs_plaintext = Some(model::cosine(pooled, plain.pooled.as_slice().unwrap_or(&[])));
        }
    }
    Ok(())
}

pub fn run_scale(args: &BenchArgs) -> Result<()> {
    let resolved = scale_model(args)?;
    let public = model::PublicModel::load(&resolved.dir)?;
    let cfg = public.config.clone();
    let depth = cfg.num_hidden_layers;
    let layers = args.layers.unwrap_or(1);
    if layers == 0 || layers > depth {
        return Err(Error::Input(format!("--layers {layers} outside 1..={depth} for {}", resolved.name)));
    }
    let lengths = match &args.lengths {
        Some(l) => l.clone(),
        None if args.large => vec![128],
        None => DEFAULT_LENGTHS.to_vec(),
    };
    if lengths.is_empty() || lengths.contains(&0) {
        return Err(Error::Input("--lengths needs positive lengths".into()));
    }
    // Every length is checked before the first (possibly long) inference starts.
    if let Some(n) = lengths.iter().find(|&&n| n > cfg.max_seq_len()) {
        return Err(Error::Input(format!("length {n} exceeds {}'s limit of {} tokens", resolved.name, cfg.max_seq_len())));
    }
    let engine = EngineArgs { profile: "fastlmpi".into(), layers: Some(layers), threads: None, ot: args.ot.clone(), linear_trunc: None };
    let profile = engine.profile()?;
    let net = NetArgs { timeout: args.timeout, net: args.net.clone() };
    let mut record = ScaleRecord {
        model: resolved.name.clone(),
        shape: format!("{} layers × {}, {} heads, FFN {}", depth, cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size),
        random_weights: is_random_checkpoint(&resolved.dir),
        note: OBLIVIOUS_NOTE.to_string(),
        profile: profile.name().to_string(),
        ot: profile.ot.name().to_string(),
        weight_cache_mib: args.weight_cache_mib,
        points: Vec::new(),
        exponents: Vec::new(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        provenance: Provenance::current(),
    };
    let tokens = tokens_for(&public, lengths[0])?;
    let mut input = ClientInput { resolved: resolved.clone(), public, tokens, profile, layers, reveal: Reveal::Embedding };
    let mut outputs = Vec::new();
    let dir = super::results_dir();
    for &n in &lengths {
        input.tokens = tokens_for(&input.public, n)?;
        eprintln!("bench --scale: {} n = {n} ({layers} of {depth} layers)", resolved.name);
        let run = run_local(&input, &net, &engine, args.weight_cache_mib)?;
        let p = point_from(&run, n, layers, depth);
        eprintln!(
            "bench --scale: n = {n}: online {:.1} s, {:.2} GiB, {} rounds (full depth{}); wall {:.1} s",
            p.online.secs,
            crate::bench::compare::gib(p.online.bytes),
            p.online.rounds,
            if p.extrapolated { ", extrapolated" } else { "" },
            run.client.wall_secs
        );
        record.points.push(p);
        record.exponents = scale::exponents(&record.points);
        outputs.push((input.tokens.clone(), run.outcome.pooled.clone()));
        // Written after every length: a long sweep stopped early keeps what it measured.
        scale::write_results(&dir, &record)?;
    }
    fill_cosines(&resolved.dir, layers, &mut record.points, &outputs)?;
    let (json, svg) = scale::write_results(&dir, &record)?;
    print!("{}", scale::table(&record));
    eprintln!("wrote {} and {}", json.display(), svg.display());
    Ok(())
}
