//! `fastlmpi ranges`: measure the activation ranges of a real checkpoint (f32 forward pass on
//! probe sentences and optionally a data set) and check them against the domains of the
//! private protocols; writes `results/ranges-<model>.json`.

use clap::Args;
use serde::Serialize;

use crate::data::DataSource;
use crate::engine::{domain_checks, DomainCheck, Profile};
use crate::error::{Error, Result};
use crate::model::ranges::{measure, ActivationRanges, PROBE_SENTENCES};
use crate::model::{resolve, Model};

#[derive(Args, Debug, Clone)]
pub struct RangesArgs {
    /// Model name or checkpoint folder.
    #[arg(long, default_value = "minilm-l6")]
    pub model: String,
    /// Do not download a known model when it is missing.
    #[arg(long)]
    pub no_fetch: bool,
    /// Also run the first --limit sentences of a data set (`uci` or a labelled file).
    #[arg(long)]
    pub data: Option<String>,
    /// Sentences taken from --data.
    #[arg(long, default_value_t = 200)]
    pub limit: usize,
    /// Print the record as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The record written to `results/ranges-<model>.json`.
#[derive(Debug, Clone, Serialize)]
pub struct RangesReport {
    pub model: String,
    pub sources: String,
    pub ranges: ActivationRanges,
    pub checks: Vec<DomainCheck>,
}

const MAX_TOKENS: usize = 128;

/// Measure and check (no files written).
pub fn ranges_report(model_name: &str, model: &Model, data: Option<&str>, limit: usize) -> Result<RangesReport> {
    let mut texts: Vec<String> = PROBE_SENTENCES.iter().map(|s| s.to_string()).collect();
    let mut sources = format!("{} probe sentences", PROBE_SENTENCES.len());
    if let Some(d) = data {
        let source = DataSource::parse(d)?;
        let set = source.load()?;
        let extra: Vec<String> = set.examples.iter().take(limit).map(|e| e.text.clone()).collect();
        sources.push_str(&format!(" + the first {} sentences of {}", extra.len(), source.describe()));
        texts.extend(extra);
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let ranges = measure(model, &refs, MAX_TOKENS.min(model.config().max_seq_len()))?;
    let checks = domain_checks(&Profile::fastlmpi(), model.config(), &ranges, MAX_TOKENS)?;
    Ok(RangesReport { model: model_name.to_string(), sources, ranges, checks })
}

pub fn run(args: &RangesArgs) -> Result<()> {
    let resolved = resolve(&args.model, !args.no_fetch)?;
    let model = Model::load(&resolved.dir)?;
    let report = ranges_report(&resolved.name, &model, args.data.as_deref(), args.limit)?;
    let dir = super::results_dir();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let path = dir.join(format!("ranges-{}.json", resolved.name));
    let text = serde_json::to_string_pretty(&report).map_err(|e| Error::protocol("json", e.to_string()))?;
    std::fs::write(&path, &text).map_err(|e| Error::io(&path, e))?;
    if args.json {
        println!("{text}");
    } else {
        println!("model {} — {}", report.model, report.sources);
        println!("{:<58} {:>24} {:>26}  ok", "quantity", "observed", "protocol domain");
        for c in &report.checks {
            println!(
                "{:<58} [{:>10.4e}, {:>10.4e}] [{:>10.4e}, {:>10.4e})  {}",
                c.what, c.observed.0, c.observed.1, c.domain.0, c.domain.1, if c.ok { "yes" } else { "NO" }
            );
        }
        let e = &report.ranges.embedding_layernorm_variance;
        println!("embedding LayerNorm variance (client, plaintext): [{:.4e}, {:.4e}]", e.min, e.max);
        println!("wrote {}", path.display());
    }
    if report.checks.iter().any(|c| !c.ok) {
        return Err(Error::Config("a measured range lies outside a protocol domain (see the table)".into()));
    }
    Ok(())
}
