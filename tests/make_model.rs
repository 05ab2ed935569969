//! Random checkpoints of full BERT shapes (`make-model`): the folder loads like a Hugging Face
//! checkpoint, runs the plaintext model, and its activations stay inside the protocols' domains.

use std::path::PathBuf;

use fastlmpi::cli::main_with_args;
use fastlmpi::engine::{domain_checks, Profile};
use fastlmpi::model::ranges::{measure, PROBE_SENTENCES};
use fastlmpi::model::shapes::{write_random_checkpoint, BertShape};
use fastlmpi::model::{forward_f32, Model, PoolingMode};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fastlmpi-make-model-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn small_shape() -> BertShape {
    BertShape { name: "small".into(), hidden: 32, layers: 2, heads: 2, intermediate: 64, max_positions: 64, vocab: 300 }
}

#[test]
fn small_random_shape_loads_and_runs_plain() {
    let dir = tmp("small");
    let shape = small_shape();
    let bytes = write_random_checkpoint(&dir, &shape, 5).expect("write");
    assert_eq!(bytes, std::fs::metadata(dir.join("model.safetensors")).unwrap().len());
    let model = Model::load(&dir).expect("loads as a Hugging Face BERT folder");
    let cfg = model.config();
    assert_eq!((cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size), (2, 32, 2, 64));
    assert_eq!(cfg.vocab_size, 300);
    assert_eq!(model.public.pooling, PoolingMode::Pooler);
    let tok = model.public.tokenizer.encode("the new movie is awesome", 64, false).expect("tokenize");
    let out = forward_f32(&model, &tok).expect("forward");
    assert_eq!(out.pooled.len(), 32);
    assert!(out.pooled.iter().all(|v| v.is_finite() && v.abs() < 1.0));
    main_with_args(["fastlmpi", "plain", "--model", dir.to_str().unwrap(), "--input", "the new movie is awesome", "--fixed"]).expect("plain");
    // Seeded: the same seed writes the same bytes, another seed other bytes.
    let again = tmp("small-again");
    write_random_checkpoint(&again, &shape, 5).unwrap();
    let read = |d: &PathBuf| std::fs::read(d.join("model.safetensors")).unwrap();
    assert_eq!(read(&dir), read(&again));
    write_random_checkpoint(&again, &shape, 6).unwrap();
    assert_ne!(read(&dir), read(&again));
}

#[test]
fn bert_base_shape_one_layer_stays_inside_the_domains() {
    let dir = tmp("bert-base-1");
    main_with_args(["fastlmpi", "make-model", "--shape", "bert-base", "--layers", "1", "--out", dir.to_str().unwrap()]).expect("make-model");
    let model = Model::load(&dir).expect("load");
    assert_eq!((model.config().hidden_size, model.config().num_hidden_layers, model.config().vocab_size), (768, 1, 30522));
    let ranges = measure(&model, &PROBE_SENTENCES[..4], 128).expect("ranges");
    let checks = domain_checks(&Profile::fastlmpi(), model.config(), &ranges, 128).expect("checks");
    assert!(!checks.is_empty());
    for c in &checks {
        assert!(c.ok, "{}: observed {:?} outside {:?}", c.what, c.observed, c.domain);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_arguments_are_errors() {
    let dir = tmp("bad");
    let out = dir.to_str().unwrap();
    assert!(main_with_args(["fastlmpi", "make-model", "--shape", "bert-huge", "--out", out]).is_err());
    assert!(main_with_args(["fastlmpi", "make-model", "--shape", "bert-large", "--layers", "25", "--out", out]).is_err());
    assert!(main_with_args(["fastlmpi", "make-model", "--shape", "bert-base", "--layers", "0", "--out", out]).is_err());
}
