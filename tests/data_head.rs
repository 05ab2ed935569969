//! The logistic-regression trainer, the head file format, and `train-head` / `eval` end to end on a
//! tiny random checkpoint (fast; accuracy on it is meaningless, the plumbing is what is checked).

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use fastlmpi::cli::eval::{run as eval_run, run_with, EvalArgs, PrivateRun};
use fastlmpi::cli::{EngineArgs, NetArgs};
use fastlmpi::cli::train_head::{train_head, TrainHeadArgs};
use fastlmpi::data::embed::PlainEncoder;
use fastlmpi::data::eval::{accuracy, PrivateResult};
use fastlmpi::data::head::{head_paths, BIAS_NAME, WEIGHT_NAME};
use fastlmpi::data::{train_logistic_head, HeadMetadata, LinearHead, Split, TrainConfig};
use fastlmpi::model::tiny::{write_tiny_checkpoint, TinySpec};
use fastlmpi::Error;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fastlmpi-data-head-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Linearly separable points with a margin: label = [w*·x + 0.3 > 0], |w*·x + 0.3| ≥ 0.2.
fn separable(n: usize, dim: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<u8>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let w: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    while xs.len() < n {
        let x: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
        let s: f32 = w.iter().zip(&x).map(|(a, b)| a * b).sum::<f32>() + 0.3;
        if s.abs() >= 0.2 {
            ys.push(u8::from(s > 0.0));
            xs.push(x);
        }
    }
    (xs, ys)
}

#[test]
fn trainer_separates_separable_data_deterministically() {
    let (xs, ys) = separable(300, 24, 5);
    assert!(ys.contains(&0) && ys.contains(&1));
    let cfg = TrainConfig { l2: 1e-3, ..TrainConfig::default() };
    let (head, report) = train_logistic_head(&xs, &ys, &cfg).unwrap();
    assert_eq!(accuracy(&head, &xs, &ys).unwrap(), 1.0, "report {report:?}");
    assert_eq!(head.hidden(), 24);
    // Same data and seed: bit-identical weights.
    let (again, _) = train_logistic_head(&xs, &ys, &cfg).unwrap();
    assert_eq!(head, again);
    // The two logits are antisymmetric (binary logistic regression as 2 logits).
    let w = head.weight();
    assert!(w[..24].iter().zip(&w[24..]).all(|(a, b)| *a == -*b));
    assert_eq!(head.bias()[0], -head.bias()[1]);
}

#[test]
fn seed_changes_only_the_start_point() {
    let (xs, ys) = separable(200, 8, 9);
    let cfg = |seed| TrainConfig { l2: 1.0, seed, ..TrainConfig::default() };
    let (a, ra) = train_logistic_head(&xs, &ys, &cfg(1)).unwrap();
    let (b, rb) = train_logistic_head(&xs, &ys, &cfg(2)).unwrap();
    assert!(ra.converged && rb.converged, "{ra:?} {rb:?}");
    assert_ne!(a, b, "different seeds start from different points");
    // Strictly convex objective: both runs reach the same optimum.
    let gap = a.weight().iter().zip(b.weight()).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(gap < 1e-4, "weights differ by {gap}");
}

#[test]
fn stronger_l2_gives_smaller_weights() {
    let (xs, ys) = separable(200, 8, 3);
    let norm = |l2| {
        let (h, _) = train_logistic_head(&xs, &ys, &TrainConfig { l2, ..TrainConfig::default() }).unwrap();
        h.weight().iter().map(|v| v * v).sum::<f32>().sqrt()
    };
    assert!(norm(100.0) < norm(1.0));
}

#[test]
fn head_file_round_trip_uses_hf_names() {
    let dir = scratch("roundtrip");
    let head = LinearHead::new(3, vec![0.5, -1.25, 2.0, -0.5, 1.25, -2.0], [0.125, -0.125]).unwrap();
    let (path, _) = head_paths(&dir);
    head.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor(WEIGHT_NAME).unwrap().shape(), &[2, 3]);
    assert_eq!(st.tensor(BIAS_NAME).unwrap().shape(), &[2]);
    assert_eq!(st.tensor(WEIGHT_NAME).unwrap().dtype(), safetensors::Dtype::F32);
    assert_eq!(LinearHead::load(&path).unwrap(), head);
    // Truncated file → model error, not a panic.
    std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
    assert!(matches!(LinearHead::load(&path), Err(Error::Model(_))));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn tiny_setup(name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = scratch(name);
    let model_dir = dir.join("tiny");
    let spec = TinySpec { sentence_transformer: true, pooler: false, ..TinySpec::bert() };
    write_tiny_checkpoint(&model_dir, &spec).unwrap();
    let data = dir.join("sentences.csv");
    let words = ["the movie is great", "the food is bad", "a good man", "the new movie is awesome", "bad food"];
    let mut csv = String::from("label,text\n");
    for i in 0..40 {
        let text = words[i % words.len()];
        let label = u8::from(text.contains("great") || text.contains("good") || text.contains("awesome"));
        csv.push_str(&format!("{label},\"{text}, {}\"\n", "a".repeat(1 + i % 3)));
    }
    std::fs::write(&data, csv).unwrap();
    (dir, model_dir, data)
}

fn train_args(model_dir: &Path, data: &Path) -> TrainHeadArgs {
    TrainHeadArgs {
        model: model_dir.display().to_string(),
        no_fetch: true,
        data: data.display().to_string(),
        epochs: 200,
        l2: 0.1,
        seed: 7,
        limit: None,
        output: None,
    }
}

fn eval_args(model_dir: &Path, data: &Path, output: PathBuf) -> EvalArgs {
    EvalArgs {
        model: model_dir.display().to_string(),
        no_fetch: true,
        data: data.display().to_string(),
        split: Split::Test,
        limit: Some(15),
        private: false,
        json: false,
        head: None,
        output: Some(output),
        engine: EngineArgs { profile: "fastlmpi".into(), layers: None, threads: None, ot: None, linear_trunc: None },
        net: NetArgs { timeout: 120, net: "local".into() },
        weight_cache_mib: 0,
        seed: fastlmpi::data::sample::DEFAULT_SEED,
    }
}

#[test]
fn train_head_and_eval_end_to_end_on_tiny_model() {
    let (dir, model_dir, data) = tiny_setup("e2e");
    let eval = eval_args(&model_dir, &data, dir.join("results").join("eval.json"));
    // No head yet: a clear error pointing at train-head.
    assert!(matches!(run_with(&eval, None), Err(Error::Model(m)) if m.contains("train-head")));

    let out = train_head(&train_args(&model_dir, &data)).unwrap();
    assert_eq!(out.head_path, model_dir.join("head.safetensors"));
    let meta = HeadMetadata::load(&out.metadata_path).unwrap();
    assert_eq!((meta.train_sentences, meta.test_sentences, meta.hidden, meta.seed), (20, 20, 16, 7));
    assert!((0.0..=1.0).contains(&meta.test_accuracy));
    assert_eq!(LinearHead::load(&out.head_path).unwrap(), out.head);
    // Deterministic end to end.
    let again = train_head(&train_args(&model_dir, &data)).unwrap();
    assert_eq!(again.head, out.head);

    let (report, path) = run_with(&eval, None).unwrap();
    assert_eq!(report.records.len(), 15);
    assert!(report.records.iter().all(|r| r.index % 2 == 1 && r.private.is_none()));
    assert!(report.summary.private.is_none());
    let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(written["records"].as_array().unwrap().len(), 15);
    assert_eq!(written["split"], "test");

    // The plaintext labels on held-out sentences agree with applying the head by hand.
    let encoder = PlainEncoder::load(&model_dir).unwrap();
    for r in &report.records {
        let pooled = encoder.pooled(&r.text).unwrap();
        assert_eq!(out.head.predict(&pooled).unwrap().label, r.plain_label);
    }

    // `--private`: a real two-party run per sentence (server as a child process), one setup.
    std::env::set_var("FASTLMPI_SERVER_BIN", env!("CARGO_BIN_EXE_fastlmpi"));
    let private = EvalArgs { private: true, limit: Some(4), weight_cache_mib: 256, output: Some(dir.join("results").join("eval-private.json")), ..eval.clone() };
    eval_run(&private).unwrap();
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results").join("eval-private.json")).unwrap()).unwrap();
    let p = &written["summary"]["private"];
    assert_eq!(p["agreement"].as_f64().unwrap(), 1.0, "{p}");
    assert!(p["worst_pooled_cosine"].as_f64().unwrap() > 0.999, "{p}");
    assert!(written["private_setup_bytes"].as_u64().unwrap() > 0);
    assert!(written["records"].as_array().unwrap().iter().all(|r| r["private"]["bytes"].as_u64().unwrap() > 0));
    // Each party's peak memory, measured in its own process (the server's sent at session close).
    for party in ["client", "server"] {
        assert!(written["peak_rss_bytes"][party].as_u64().is_some_and(|b| b > 1 << 20), "{party}: {}", written["peak_rss_bytes"]);
    }
    assert!(written["provenance"]["commit"].as_str().is_some());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn eval_private_hook_compares_with_plaintext() {
    let (dir, model_dir, data) = tiny_setup("hook");
    let out = train_head(&train_args(&model_dir, &data)).unwrap();
    let encoder = PlainEncoder::load(&model_dir).unwrap();
    let head = out.head.clone();
    // Stand-in for the engine: plaintext pooled vector with a deterministic perturbation on sentences
    // containing "bad", and the negative-class logit forced on "awesome" sentences (a label flip).
    let mut seen: Vec<String> = Vec::new();
    let mut fake = |text: &str| {
        seen.push(text.to_string());
        let mut pooled = encoder.pooled(text)?;
        if text.contains("bad") {
            pooled[0] += 0.01;
        }
        let mut logits = head.logits(&pooled)?;
        if text.contains("awesome") {
            logits = [logits[1].max(logits[0]) + 1.0, logits[1].min(logits[0])];
        }
        Ok(PrivateResult { pooled, logits, seconds: 0.5, bytes: 1000, tokens: 4, padded_to: 8 })
    };
    let eval = EvalArgs { limit: Some(10), ..eval_args(&model_dir, &data, dir.join("eval.json")) };
    let (report, _) =
        run_with(&eval, Some(PrivateRun { classify: &mut fake, setup_seconds: 3.0, setup_bytes: 42, order: (0..10).rev().collect() }))
            .unwrap();
    // Run in the given order, recorded in selection order, each record with its own result.
    assert_eq!(seen.len(), 10);
    let texts: Vec<String> = report.records.iter().map(|r| r.text.clone()).collect();
    assert_eq!(seen.iter().rev().cloned().collect::<Vec<_>>(), texts);
    assert!(report.records.windows(2).all(|w| w[0].index < w[1].index));
    for r in &report.records {
        let cos = r.private.as_ref().unwrap().pooled_cosine;
        assert_eq!(cos < 1.0 - 1e-9, r.text.contains("bad"), "{}: cosine {cos}", r.text);
    }
    let p = report.summary.private.clone().unwrap();
    let flipped = report
        .records
        .iter()
        .filter(|r| r.text.contains("awesome") && r.plain_label == 1)
        .count();
    assert!((p.agreement - (1.0 - flipped as f64 / 10.0)).abs() < 1e-12, "{p:?}");
    assert!(p.worst_pooled_cosine < 1.0 && p.worst_pooled_cosine > 0.99, "{p:?}");
    assert_eq!((report.private_setup_seconds, report.private_setup_bytes), (Some(3.0), Some(42)));
    assert!((p.mean_seconds - 0.5).abs() < 1e-12);
    std::fs::remove_dir_all(&dir).unwrap();
}
