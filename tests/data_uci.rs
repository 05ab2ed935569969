//! Plaintext sentiment accuracy on the UCI sentences with real checkpoints.
//!
//! Needs `data/uci` (`scripts/fetch-data.sh`) and `models/minilm-l6` (`scripts/fetch-models.sh
//! minilm-l6`). The suite runs a subset (first SUBSET sentences of each split, all from the Amazon
//! part); the full 1500/1500 runs are ignored by default because embedding 3000 sentences takes
//! minutes in a debug build. Run them in release:
//!
//! ```text
//! cargo test --release --test data_uci -- --ignored --nocapture minilm_full
//! cargo test --release --test data_uci -- --ignored --nocapture mpnet_full
//! ```
//!
//! The full runs write the head to `models/NAME/head.safetensors` (+ `head.json`) exactly as
//! `fastlmpi train-head --model NAME` does (deterministic, so re-running rewrites the same file), and
//! the held-out records to `results/eval-NAME-<timestamp>.json` as `fastlmpi eval` does.

use std::time::Instant;

use fastlmpi::cli::eval::{run_with, EvalArgs};
use fastlmpi::cli::{EngineArgs, NetArgs};
use fastlmpi::cli::train_head::{train_head, TrainHeadArgs};
use fastlmpi::data::embed::{progress_bar, PlainEncoder};
use fastlmpi::data::eval::accuracy;
use fastlmpi::data::{train_logistic_head, DataSource, Split, TrainConfig};
use fastlmpi::model::resolve;

const SUBSET: usize = 120;

fn require_model(name: &str) -> std::path::PathBuf {
    match resolve(name, false) {
        Ok(r) => r.dir,
        Err(e) => panic!("model `{name}` is not available ({e}); fetch it with `scripts/fetch-models.sh {name}`"),
    }
}

fn require_uci() -> fastlmpi::data::Dataset {
    match DataSource::Uci.load() {
        Ok(d) => d,
        Err(e) => panic!("UCI data is not available ({e}); fetch it with `scripts/fetch-data.sh`"),
    }
}

/// Subset check in the default suite: 120 training and 120 held-out Amazon sentences (about 20 s
/// of embedding in a debug build).
/// Threshold 0.80: with 120 training sentences the head is weaker than with 1500, and 120 test
/// sentences give a standard error of about 3 points (measured: 0.892 held-out, 1.000 train; 13 s
/// of embedding in a debug build on a loaded 2-core machine).
#[test]
fn minilm_subset_heldout_accuracy() {
    let data = require_uci();
    assert_eq!(data.len(), 3000, "expected 3 x 1000 UCI sentences");
    assert_eq!(data.examples.iter().filter(|e| e.label == 1).count(), 1500);
    let encoder = PlainEncoder::load(&require_model("minilm-l6")).unwrap();
    let train = data.select(Split::Train, Some(SUBSET));
    let test = data.select(Split::Test, Some(SUBSET));
    let t = Instant::now();
    let texts: Vec<&str> = train.iter().chain(&test).map(|(_, e)| e.text.as_str()).collect();
    let mut feats = encoder.pooled_all(&texts, &progress_bar(texts.len(), "embedding")).unwrap();
    let embed_time = t.elapsed();
    let test_feats = feats.split_off(SUBSET);
    let train_labels: Vec<u8> = train.iter().map(|(_, e)| e.label).collect();
    let test_labels: Vec<u8> = test.iter().map(|(_, e)| e.label).collect();
    let (head, report) = train_logistic_head(&feats, &train_labels, &TrainConfig::default()).unwrap();
    let train_acc = accuracy(&head, &feats, &train_labels).unwrap();
    let test_acc = accuracy(&head, &test_feats, &test_labels).unwrap();
    eprintln!(
        "minilm-l6 subset: {} sentences embedded in {embed_time:?}; train {train_acc:.4}, held-out {test_acc:.4}; {report:?}",
        texts.len()
    );
    assert!(report.converged, "{report:?}");
    assert!(test_acc >= 0.80, "held-out accuracy {test_acc:.4} on {SUBSET} sentences, expected >= 0.80");
    assert!(train_acc >= test_acc - 0.02);
}

fn full_run(name: &str, min_accuracy: f64, also_eval: bool) {
    require_uci();
    require_model(name);
    let t = Instant::now();
    let args = TrainHeadArgs {
        model: name.into(),
        no_fetch: true,
        data: "uci".into(),
        epochs: 500,
        l2: 0.1,
        seed: 42,
        limit: None,
        output: None,
    };
    let out = train_head(&args).unwrap();
    let m = &out.metadata;
    eprintln!(
        "{name} train-head: train {:.4} ({}), held-out {:.4} ({}), {} iterations, converged {}, {:.1} s; head {}",
        m.train_accuracy,
        m.train_sentences,
        m.test_accuracy,
        m.test_sentences,
        m.iterations,
        m.converged,
        out.seconds,
        out.head_path.display()
    );
    assert_eq!((m.train_sentences, m.test_sentences), (1500, 1500));
    assert!(m.test_accuracy >= min_accuracy, "{name} held-out accuracy {:.4} < {min_accuracy}", m.test_accuracy);
    if !also_eval {
        return;
    }
    let eval = heldout_eval_args(name);
    let (report, path) = run_with(&eval, None).unwrap();
    let s = &report.summary;
    eprintln!(
        "{name} eval: held-out {:.4} on {} sentences {:?} in {:.1} s; records {}; total {:.1} s",
        s.plain_accuracy,
        s.sentences,
        s.plain_accuracy_by_origin,
        report.plain_seconds,
        path.display(),
        t.elapsed().as_secs_f64()
    );
    assert_eq!(s.sentences, 1500);
    assert!((s.plain_accuracy - m.test_accuracy).abs() < 1e-12, "eval and train-head disagree");
}

/// Full split, MiniLM (reference 0.888 from an independent numpy + scikit-learn run, C = 10).
#[test]
#[ignore = "embeds 3000 sentences: minutes in debug; run in release (see module doc)"]
fn minilm_full_uci_heldout_accuracy() {
    full_run("minilm-l6", 0.87, true);
}

/// Full split, MPNet (reference 0.933). Training only: `train-head` already measures the held-out
/// split, and a second pass over it through `eval` would double an already long run.
#[test]
#[ignore = "needs the 440 MB mpnet-base checkpoint and ~10 min of CPU; run in release (see module doc)"]
fn mpnet_full_uci_heldout_accuracy() {
    full_run("mpnet-base", 0.915, false);
}

/// Held-out evaluation of an existing MPNet head (written by `mpnet_full_uci_heldout_accuracy` or
/// `fastlmpi train-head --model mpnet-base`): per-part accuracy and the records file.
#[test]
#[ignore = "needs mpnet-base and its trained head; ~10 min of CPU; run in release (see module doc)"]
fn mpnet_eval_existing_head() {
    require_uci();
    require_model("mpnet-base");
    let eval = heldout_eval_args("mpnet-base");
    let (report, path) = run_with(&eval, None).unwrap();
    let s = &report.summary;
    eprintln!(
        "mpnet-base eval: held-out {:.4} on {} sentences {:?} in {:.1} s; records {}",
        s.plain_accuracy,
        s.sentences,
        s.plain_accuracy_by_origin,
        report.plain_seconds,
        path.display()
    );
    assert_eq!(s.sentences, 1500);
    assert!(s.plain_accuracy >= 0.915, "held-out accuracy {:.4}", s.plain_accuracy);
}

/// Plaintext evaluation of `name` on the whole held-out split with its trained head.
fn heldout_eval_args(name: &str) -> EvalArgs {
    EvalArgs {
        model: name.into(),
        no_fetch: true,
        data: "uci".into(),
        split: Split::Test,
        limit: None,
        private: false,
        json: false,
        head: None,
        output: None,
        engine: EngineArgs { profile: "fastlmpi".into(), layers: None, threads: None, ot: None, linear_trunc: None },
        net: NetArgs { timeout: 120, net: "local".into() },
        weight_cache_mib: 0,
        seed: fastlmpi::data::sample::DEFAULT_SEED,
    }
}
