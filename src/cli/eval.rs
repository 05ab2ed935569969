//! `fastlmpi eval`: accuracy of the sentiment head on labelled sentences.
//!
//! Plaintext: pooled embeddings (parallel, with a progress bar) → head → label. Every sentence gets a
//! record in `results/eval-<model>-<UTC timestamp>.json` together with the summary.
//!
//! Private (`--private`): a local server process holds the model and its head; the client makes
//! one connection and one key/OT setup for all sentences (padded to power-of-two buckets, its cost
//! reported apart as `setup_*`) and plugs the engine into [`run_with`] through a [`PrivateRun`]: one [`PrivateClassify::classify`] call per sentence; the
//! records then carry private label, logits, pooled cosine and per-sentence time and bytes, and the
//! summary private accuracy, label agreement and the worst pooled cosine.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

pub use crate::bench::provenance::utc_timestamp;

use serde::Serialize;

use crate::data::embed::{progress_bar, PlainEncoder};
use crate::data::embed::MAX_TOKENS;
use crate::bench::provenance::Provenance;
use crate::data::sample::{stratified_sample, SampleInfo};
use crate::engine::report::peak_rss_bytes;
use crate::data::eval::{make_record, summarize, EvalRecord, EvalSummary, PlainResult, PrivateClassify, PrivateResult};
use crate::engine::{bucket_len, client_close, client_infer, client_open, Reveal};
use crate::model::PublicModel;
use crate::net::Channel;
use super::party::{client_handshake, LocalServer};
use crate::data::head::head_paths;
use crate::data::{results_dir, DataSource, LinearHead, Split};
use crate::model::resolve;
use crate::{Error, Result};

#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// Model name (minilm-l6, mpnet-base, bert-base) or a checkpoint folder.
    #[arg(long, default_value = "minilm-l6")]
    pub model: String,
    /// Do not download a known model when it is missing.
    #[arg(long)]
    pub no_fetch: bool,
    /// `uci` (scripts/fetch-data.sh) or a labelled file (JSONL {"text","label"} or CSV label,text).
    #[arg(long, default_value = "uci")]
    pub data: String,
    /// Which sentences: test = odd-numbered (held out from train-head), train = even-numbered, all.
    #[arg(long, value_enum, default_value_t = Split::Test)]
    pub split: Split,
    /// Evaluate at most N sentences of the split: a seeded sample stratified by origin and label
    /// (see --seed), recorded in the results file.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Seed of the --limit sample.
    #[arg(long, default_value_t = crate::data::sample::DEFAULT_SEED)]
    pub seed: u64,
    /// Also run every sentence through the private protocol and compare with plaintext.
    #[arg(long)]
    pub private: bool,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Head file (default: MODEL_DIR/head.safetensors, written by `fastlmpi train-head`).
    #[arg(long)]
    pub head: Option<PathBuf>,
    /// With --private: MiB of encoded weights the server keeps between sentences (filled during
    /// setup in the order the sentences run, least recently used evicted; 0 encodes them per
    /// sentence). MiniLM needs ≈ 1.7 / 3.8 / 7.6 GiB for all 6 layers at 7 / 16 / 32 tokens.
    #[arg(long, default_value_t = 3072)]
    pub weight_cache_mib: usize,
    /// Records file (default: results/eval-<model>-<timestamp>.json).
    #[arg(long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub engine: super::EngineArgs,
    #[command(flatten)]
    pub net: super::NetArgs,
}

/// A private engine ready to classify sentences, with the cost of its one-off setup.
pub struct PrivateRun<'a> {
    pub classify: &'a mut dyn PrivateClassify,
    pub setup_seconds: f64,
    pub setup_bytes: u64,
    /// The order in which to run the selected sentences (positions in the selection; records
    /// are written in selection order whatever this is). Empty: selection order.
    pub order: Vec<usize>,
}

/// Everything written to the records file.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub model: String,
    pub data: String,
    pub split: Split,
    pub limit: Option<usize>,
    /// How the --limit sentences were drawn (absent: the whole split).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample: Option<SampleInfo>,
    pub head: String,
    pub created_utc: String,
    pub plain_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_setup_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_setup_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_seconds: Option<f64>,
    /// Peak resident memory per party: `client` is this process; `server` the server process as
    /// it reported at the end of the session (private runs only).
    pub peak_rss_bytes: PeakMemory,
    pub provenance: Provenance,
    pub summary: EvalSummary,
    pub records: Vec<EvalRecord>,
}

/// Each party's peak resident memory, measured inside its own process.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PeakMemory {
    pub client: Option<u64>,
    pub server: Option<u64>,
}

/// Run the command and print the summary (text or `--json`).
pub fn run(args: &EvalArgs) -> Result<()> {
    let (report, path) = if args.private { run_private(args)? } else { run_with(args, None)? };
    print_report(&report, &path, args.json)
}

/// `--private`: a local server process, one connection and one key/OT setup for every sentence
/// (padded to power-of-two buckets), then one private inference per sentence.
fn run_private(args: &EvalArgs) -> Result<(EvalReport, PathBuf)> {
    if args.head.is_some() {
        return Err(Error::Input("--private uses the server's MODEL_DIR/head.safetensors; drop --head".into()));
    }
    args.engine.apply_threads()?;
    let profile = args.engine.profile()?;
    let resolved = resolve(&args.model, !args.no_fetch)?;
    if !head_paths(&resolved.dir).0.is_file() {
        return Err(Error::Model(format!("no sentiment head in {}; train one with `fastlmpi train-head --model {}`", resolved.dir.display(), args.model)));
    }
    let public = PublicModel::load(&resolved.dir)?;
    let max_len = MAX_TOKENS.min(public.config.max_seq_len());
    let max_pos = public.config.max_position_embeddings;
    let layers = args.engine.layers.unwrap_or(public.config.num_hidden_layers);
    let dataset = DataSource::parse(&args.data)?.load()?;
    let lengths: Vec<usize> = stratified_sample(&dataset, args.split, args.limit, args.seed)
        .0
        .iter()
        .map(|(_, e)| public.tokenizer.encode(&e.text, max_len, true).map(|t| bucket_len(t.len(), max_pos)))
        .collect::<Result<_>>()?;
    let groups = by_cache_value(&lengths);
    eprintln!("padded lengths (weight-cache order): {}", describe_groups(&groups));
    let buckets: Vec<usize> = groups.iter().map(|&(n, _)| n).collect();
    // Grouped by padded length in cache order: each group finds its weights encoded once.
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| (buckets.iter().position(|&b| b == lengths[i]), i));

    let server = LocalServer::spawn(&resolved.dir, &args.net, &args.engine, args.weight_cache_mib)?;
    let mut ch = server.connect(&args.net)?;
    let t0 = Instant::now();
    client_handshake(&mut ch, &public, &profile)?;
    let mut es = client_open(&mut ch, &public, &profile, &buckets)?;
    if es.labels() != 2 {
        return Err(Error::Model(format!("the server's model has {} labels, expected the 2-label sentiment head", es.labels())));
    }
    let setup_seconds = t0.elapsed().as_secs_f64();
    let setup_stats = ch.stats();
    let mut classify = |text: &str| -> Result<PrivateResult> {
        let t = Instant::now();
        let before = ch.stats();
        let tokens = public.tokenizer.encode(text, max_len, true)?.len();
        let padded_to = bucket_len(tokens, max_pos);
        let tok = public.tokenizer.encode_padded(text, max_len, true, Some(padded_to))?;
        let out = client_infer(&mut ch, &mut es, &public, &tok, layers, Reveal::Embedding, false)?;
        let used = ch.stats().since(&before);
        let logits = out.logits.ok_or_else(|| Error::protocol("eval", "no logits opened"))?;
        let pooled = out.pooled.ok_or_else(|| Error::protocol("eval", "no embedding opened"))?;
        Ok(PrivateResult {
            pooled,
            logits: [logits[0], logits[1]],
            seconds: t.elapsed().as_secs_f64(),
            bytes: used.bytes_sent + used.bytes_recv,
            tokens,
            padded_to,
        })
    };
    let result = run_with(
        args,
        Some(PrivateRun { classify: &mut classify, setup_seconds, setup_bytes: setup_stats.bytes_sent + setup_stats.bytes_recv, order }),
    );
    let (mut report, path) = result?;
    report.peak_rss_bytes.server = client_close(&mut ch)?;
    drop(ch);
    server.finish(Duration::from_secs(args.net.timeout.max(1)))?;
    // Again, now with the server's peak memory.
    report.peak_rss_bytes.client = peak_rss_bytes();
    write_report(&report, &path)?;
    Ok((report, path))
}

/// Evaluate and write the records file; `private` adds the private comparison.
pub fn run_with(args: &EvalArgs, mut private: Option<PrivateRun<'_>>) -> Result<(EvalReport, PathBuf)> {
    let resolved = resolve(&args.model, !args.no_fetch)?;
    if let Some(note) = &resolved.note {
        eprintln!("note: {note}");
    }
    let head_path = args.head.clone().unwrap_or_else(|| head_paths(&resolved.dir).0);
    if !head_path.is_file() {
        return Err(Error::Model(format!(
            "no sentiment head at {}; train one with `fastlmpi train-head --model {}`",
            head_path.display(),
            args.model
        )));
    }
    let head = LinearHead::load(&head_path)?;
    let source = DataSource::parse(&args.data)?;
    let dataset = source.load()?;
    let (rows, sample) = stratified_sample(&dataset, args.split, args.limit, args.seed);
    if let Some(s) = &sample {
        eprintln!("sample (seed {}): {}", s.seed, describe_strata(s));
    }
    if rows.is_empty() {
        return Err(Error::Input(format!("the {} split of {} is empty", args.split.name(), source.describe())));
    }
    let encoder = PlainEncoder::load(&resolved.dir)?;
    if encoder.hidden() != head.hidden() {
        return Err(Error::Shape { tensor: "classifier.weight".into(), expected: vec![2, encoder.hidden()], got: vec![2, head.hidden()] });
    }

    let plain_start = Instant::now();
    let texts: Vec<&str> = rows.iter().map(|(_, e)| e.text.as_str()).collect();
    let bar = progress_bar(texts.len(), "plaintext");
    let pooled = encoder.pooled_all(&texts, &bar)?;
    bar.finish_and_clear();
    let plain = pooled.into_iter().map(|p| PlainResult::from_pooled(&head, p)).collect::<Result<Vec<_>>>()?;
    let plain_seconds = plain_start.elapsed().as_secs_f64();

    let private_start = Instant::now();
    let mut records: Vec<Option<EvalRecord>> = vec![None; rows.len()];
    let bar = private.as_ref().map(|_| progress_bar(rows.len(), "private"));
    let order = match &private {
        Some(p) if !p.order.is_empty() => p.order.clone(),
        _ => (0..rows.len()).collect(),
    };
    let mut sorted = order.clone();
    sorted.sort_unstable();
    if !sorted.iter().copied().eq(0..rows.len()) {
        return Err(Error::Config("eval: the private run order is not a permutation of the sentences".into()));
    }
    for (done, &pos) in order.iter().enumerate() {
        let ((index, ex), plain) = (&rows[pos], &plain[pos]);
        let private_result = match private.as_mut() {
            Some(p) => Some(p.classify.classify(&ex.text).map_err(|e| with_sentence(*index, e))?),
            None => None,
        };
        let record = make_record(*index, dataset.origin_of(*index), ex, plain, private_result.as_ref());
        if let Some(b) = &bar {
            b.inc(1);
            if b.is_hidden() {
                log_progress(&record, done + 1, rows.len(), private_start.elapsed().as_secs_f64());
            }
        }
        records[pos] = Some(record);
    }
    // A permutation fills every slot.
    let records: Vec<EvalRecord> = records.into_iter().flatten().collect();
    if let Some(b) = bar {
        b.finish_and_clear();
    }

    let now = SystemTime::now();
    let report = EvalReport {
        model: resolved.name.clone(),
        data: source.describe(),
        split: args.split,
        limit: args.limit,
        sample,
        head: head_path.display().to_string(),
        created_utc: utc_timestamp(now, true),
        plain_seconds,
        private_setup_seconds: private.as_ref().map(|p| p.setup_seconds),
        private_setup_bytes: private.as_ref().map(|p| p.setup_bytes),
        private_seconds: private.as_ref().map(|_| private_start.elapsed().as_secs_f64()),
        peak_rss_bytes: PeakMemory { client: peak_rss_bytes(), server: None },
        provenance: Provenance::current(),
        summary: summarize(&records),
        records,
    };
    let path = match &args.output {
        Some(p) => p.clone(),
        None => results_dir().join(format!("eval-{}-{}.json", file_safe(&resolved.name), utc_timestamp(now, false))),
    };
    write_report(&report, &path)?;
    Ok((report, path))
}

/// One line per sentence when stderr is not a terminal (the progress bar is hidden there), so
/// a long run written to a log shows how far it got.
fn log_progress(r: &EvalRecord, done: usize, total: usize, elapsed: f64) {
    if let Some(p) = &r.private {
        let eta = elapsed / done as f64 * (total - done) as f64;
        eprintln!(
            "[{done}/{total}] sentence {}: {} tokens (padded {}), plaintext {} private {} ({}), {:.1} s, {:.0} MB; elapsed {:.0} s, ETA {:.0} s",
            r.index, p.tokens, p.padded_to, r.plain_label, p.label,
            if p.label == r.plain_label { "agree" } else { "DISAGREE" },
            p.seconds, p.bytes as f64 / 1e6, elapsed, eta
        );
    }
}

fn describe_strata(s: &SampleInfo) -> String {
    s.strata.iter().map(|t| format!("{} label {}: {} of {}", t.origin, t.label, t.drawn, t.available)).collect::<Vec<_>>().join(", ")
}

fn describe_groups(groups: &[(usize, usize)]) -> String {
    groups.iter().map(|&(n, count)| format!("{n} tokens × {count}")).collect::<Vec<_>>().join(", ")
}

/// The distinct values with their counts, in the order the server should fill its weight
/// cache: a length's encoded weights grow in proportion to it, and caching them saves time on
/// every sentence of that length, so the most sentences per token of length come first (ties:
/// the shorter).
fn by_cache_value(lengths: &[usize]) -> Vec<(usize, usize)> {
    let mut counts = std::collections::BTreeMap::new();
    for &n in lengths {
        *counts.entry(n).or_insert(0usize) += 1;
    }
    let mut order: Vec<(usize, usize)> = counts.into_iter().collect();
    order.sort_by(|&(n1, c1), &(n2, c2)| (c2 * n1).cmp(&(c1 * n2)).then(n1.cmp(&n2)));
    order
}

fn with_sentence(index: usize, e: Error) -> Error {
    match e {
        Error::Input(msg) => Error::Input(format!("sentence {index}: {msg}")),
        other => other,
    }
}

fn write_report(report: &EvalReport, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let text = serde_json::to_string_pretty(report).map_err(|e| Error::Input(format!("cannot serialise records: {e}")))?;
    std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
}

fn print_report(report: &EvalReport, path: &Path, json: bool) -> Result<()> {
    let s = &report.summary;
    if json {
        let doc = serde_json::json!({
            "model": report.model, "data": report.data, "split": report.split, "limit": report.limit, "sample": report.sample,
            "peak_rss_bytes": report.peak_rss_bytes,
            "plain_seconds": report.plain_seconds, "private_setup_seconds": report.private_setup_seconds,
            "private_seconds": report.private_seconds, "summary": s, "records_file": path.display().to_string(),
        });
        let text = serde_json::to_string_pretty(&doc).map_err(|e| Error::Input(format!("cannot serialise summary: {e}")))?;
        println!("{text}");
        return Ok(());
    }
    println!("model {}, data {} ({} split, {} sentences)", report.model, report.data, report.split.name(), s.sentences);
    let correct = (s.plain_accuracy * s.sentences as f64).round() as usize;
    if let Some(sample) = &report.sample {
        println!("sample (seed {}, {}): {}", sample.seed, sample.method, describe_strata(sample));
    }
    println!("plaintext accuracy {:.4} ({correct}/{})  [{:.1} s]", s.plain_accuracy, s.sentences, report.plain_seconds);
    if s.plain_accuracy_by_origin.len() > 1 {
        for o in &s.plain_accuracy_by_origin {
            println!("  {:<10} {:.4} ({})", o.origin, o.accuracy, o.sentences);
        }
    }
    if let Some(p) = &s.private {
        println!("private accuracy   {:.4}", p.accuracy);
        println!("label agreement    {:.4}", p.agreement);
        println!("worst pooled cosine {:.6}, max |logit error| {:.4}", p.worst_pooled_cosine, p.max_abs_logit_error);
        println!(
            "private: setup {:.1} s, {:.2} s and {:.1} MB per sentence",
            report.private_setup_seconds.unwrap_or(0.0),
            p.mean_seconds,
            p.mean_bytes / 1e6
        );
        let gib = |b: Option<u64>| b.map_or("not measured".to_string(), |b| format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64));
        println!("peak memory: client {}, server {}", gib(report.peak_rss_bytes.client), gib(report.peak_rss_bytes.server));
    }
    println!("records written to {}", path.display());
    Ok(())
}

/// Keep `[A-Za-z0-9._-]`, replace anything else (e.g. path separators) with `_`.
fn file_safe(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_by_sentences_per_token() {
        assert_eq!(by_cache_value(&[32, 16, 16, 64, 32, 16]), vec![(16, 3), (32, 2), (64, 1)]);
        assert_eq!(by_cache_value(&[64, 32]), vec![(32, 1), (64, 1)]);
        // 3 sentences at 32 (3/32) rank below 1 sentence at 8 (1/8), above 1 at 16.
        assert_eq!(by_cache_value(&[32, 32, 32, 8, 16]), vec![(8, 1), (32, 3), (16, 1)]);
        assert!(by_cache_value(&[]).is_empty());
    }

    #[test]
    fn file_names_are_sanitised() {
        assert_eq!(file_safe("minilm-l6"), "minilm-l6");
        assert_eq!(file_safe("my model/x"), "my_model_x");
    }
}
