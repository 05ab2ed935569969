//! `fastlmpi train-head`: fit the 2-class sentiment head on plaintext pooled embeddings of the
//! training split (even-numbered sentences) and report train and held-out (odd-numbered) accuracy.
//! The head goes to `MODEL_DIR/head.safetensors`, its training record to `MODEL_DIR/head.json`.

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::data::embed::{progress_bar, PlainEncoder};
use crate::data::eval::accuracy;
use crate::data::head::head_paths;
use crate::data::{train_logistic_head, DataSource, Example, HeadMetadata, LinearHead, Split, TrainConfig};
use crate::model::resolve;
use crate::{Error, Result};

#[derive(clap::Args, Debug, Clone)]
pub struct TrainHeadArgs {
    /// Model name (minilm-l6, mpnet-base, bert-base) or a checkpoint folder.
    #[arg(long, default_value = "minilm-l6")]
    pub model: String,
    /// Do not download a known model when it is missing.
    #[arg(long)]
    pub no_fetch: bool,
    /// `uci` (scripts/fetch-data.sh) or a labelled file (JSONL {"text","label"} or CSV label,text).
    #[arg(long, default_value = "uci")]
    pub data: String,
    /// Maximum number of full-batch L-BFGS iterations.
    #[arg(long, default_value_t = 500)]
    pub epochs: usize,
    /// L2 regularisation on the summed logistic loss (scikit-learn's 1/C).
    #[arg(long, default_value_t = 0.1)]
    pub l2: f64,
    /// Seed of the initial weights.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Use at most N sentences of each split (quick runs).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Write the head to this file instead of MODEL_DIR/head.safetensors (metadata: same name, .json).
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// What a training run produced.
#[derive(Debug, Clone)]
pub struct TrainHeadOutcome {
    pub head: LinearHead,
    pub metadata: HeadMetadata,
    pub head_path: PathBuf,
    pub metadata_path: PathBuf,
    pub seconds: f64,
}

/// Train, save and print a summary.
pub fn run(args: &TrainHeadArgs) -> Result<()> {
    let out = train_head(args)?;
    let m = &out.metadata;
    println!("model {} (hidden {}), data {}", m.model, m.hidden, m.data);
    println!("train accuracy    {:.4} ({} sentences)", m.train_accuracy, m.train_sentences);
    println!("held-out accuracy {:.4} ({} sentences)", m.test_accuracy, m.test_sentences);
    println!(
        "L-BFGS: {} iterations, loss {:.6}, {}",
        m.iterations,
        m.final_loss,
        if m.converged { "converged" } else { "stopped at --epochs" }
    );
    println!("head written to {} (metadata {})", out.head_path.display(), out.metadata_path.display());
    println!("wall time {:.1} s", out.seconds);
    Ok(())
}

/// Train and save a head; returns it with its metadata (no printing besides the progress bar).
pub fn train_head(args: &TrainHeadArgs) -> Result<TrainHeadOutcome> {
    let start = Instant::now();
    if args.epochs == 0 {
        return Err(Error::Config("--epochs must be at least 1".into()));
    }
    let resolved = resolve(&args.model, !args.no_fetch)?;
    if let Some(note) = &resolved.note {
        eprintln!("note: {note}");
    }
    let source = DataSource::parse(&args.data)?;
    let dataset = source.load()?;
    let train = dataset.select(Split::Train, args.limit);
    let test = dataset.select(Split::Test, args.limit);
    let encoder = PlainEncoder::load(&resolved.dir)?;

    let texts: Vec<&str> = train.iter().chain(&test).map(|(_, e)| e.text.as_str()).collect();
    let bar = progress_bar(texts.len(), "embedding");
    let mut features = encoder.pooled_all(&texts, &bar)?;
    bar.finish_and_clear();
    let test_features = features.split_off(train.len());
    let train_labels = labels(&train);
    let test_labels = labels(&test);

    let cfg = TrainConfig { max_iterations: args.epochs, l2: args.l2, seed: args.seed, ..TrainConfig::default() };
    let (head, report) = train_logistic_head(&features, &train_labels, &cfg)?;
    let metadata = HeadMetadata {
        model: resolved.name.clone(),
        hidden: head.hidden(),
        data: source.describe(),
        split: format!(
            "train = even-numbered sentences, held-out = odd-numbered{}",
            args.limit.map(|n| format!(", first {n} of each")).unwrap_or_default()
        ),
        train_sentences: train.len(),
        test_sentences: test.len(),
        train_accuracy: accuracy(&head, &features, &train_labels)?,
        test_accuracy: accuracy(&head, &test_features, &test_labels)?,
        seed: args.seed,
        l2: args.l2,
        iterations: report.iterations,
        max_iterations: args.epochs,
        converged: report.converged,
        final_loss: report.final_loss,
        method: "binary logistic regression (L-BFGS, full batch) on mean-pooled embeddings, \
                 written as 2 logits [-w/2; w/2]"
            .into(),
        created_unix: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
    };
    let (head_path, metadata_path) = match &args.output {
        Some(p) => (p.clone(), p.with_extension("json")),
        None => head_paths(&resolved.dir),
    };
    head.save(&head_path)?;
    metadata.save(&metadata_path)?;
    Ok(TrainHeadOutcome { head, metadata, head_path, metadata_path, seconds: start.elapsed().as_secs_f64() })
}

fn labels(rows: &[(usize, &Example)]) -> Vec<u8> {
    rows.iter().map(|(_, e)| e.label).collect()
}
