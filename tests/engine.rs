//! The private engine against its fixed-point simulation (bit-exact) and the f32 model.
//!
//! Tiny random checkpoints run in seconds; the real `minilm-l6` cases need the model
//! (`scripts/fetch-models.sh minilm-l6`, which `.ci/run` does); the full 6-layer run on 20
//! sentences is `#[ignore]` (`cargo test --release --test engine -- --ignored --nocapture`).

use std::path::Path;
use std::time::Instant;

use fastlmpi::engine::{client_inference, server_inference, simulate, ClientOutcome, InferenceRequest, Profile, ServerModel};
use fastlmpi::model::{cosine, forward_f32, resolve, tiny, Model, Tokenized};
use fastlmpi::net::run_pair;

fn request(tok: &Tokenized, layers: usize) -> InferenceRequest {
    InferenceRequest { seq_len: tok.len(), mask: tok.attention_mask.clone(), layers, reveal_embedding: true }
}

/// Runs both parties over loopback TCP; returns the client's outcome.
fn private_run(model: &Model, tok: &Tokenized, profile: &Profile, layers: usize) -> ClientOutcome {
    let req = request(tok, layers);
    let sm = ServerModel::new(model, profile).unwrap();
    let out = run_pair(
        |ch| server_inference(ch, &sm, profile, &req),
        |ch| client_inference(ch, &model.public, profile, tok, &req, false),
    )
    .unwrap();
    out.client
}

fn assert_matches_simulation(model: &Model, tok: &Tokenized, profile: &Profile) -> ClientOutcome {
    let layers = model.config().num_hidden_layers;
    let got = private_run(model, tok, profile, layers);
    let sim = simulate(model, tok, profile).unwrap();
    assert_eq!(got.pooled.as_deref().unwrap(), sim.pooled.as_slice().unwrap(), "pooled embedding differs from the simulation");
    match (&got.logits, &sim.logits) {
        (Some(a), Some(b)) => assert_eq!(a.as_slice(), b.as_slice().unwrap(), "logits differ from the simulation"),
        (None, None) => {}
        other => panic!("logits presence differs: {other:?}"),
    }
    got
}

fn tiny_model(dir: &Path, spec: &tiny::TinySpec) -> Model {
    tiny::write_tiny_checkpoint(dir, spec).unwrap();
    Model::load(dir).unwrap()
}

#[test]
fn tiny_mpnet_with_head_matches_simulation_bit_for_bit() {
    let dir = tempfile_dir("engine-tiny-mpnet");
    let spec = tiny::TinySpec { classifier_labels: Some(2), ..tiny::TinySpec::mpnet() };
    let model = tiny_model(&dir, &spec);
    let tok = model.public.tokenizer.encode_padded("the cat sat", 16, true, Some(12)).unwrap();
    let out = assert_matches_simulation(&model, &tok, &Profile::fastlmpi());
    let plain = forward_f32(&model, &tok).unwrap();
    let cos = cosine(out.pooled.as_deref().unwrap(), plain.pooled.as_slice().unwrap());
    assert!(cos > 0.999, "cosine vs f32 {cos}");
    assert!(out.records.records.iter().any(|r| r.op == "gelu" && r.comm.bytes_sent > 0));
}

fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn minilm() -> Model {
    let dir = match resolve("minilm-l6", false) {
        Ok(r) => r.dir,
        Err(e) => panic!("model `minilm-l6` is not available ({e}); fetch it with `scripts/fetch-models.sh minilm-l6`"),
    };
    Model::load(&dir).unwrap()
}

#[test]
fn minilm_one_layer_matches_simulation_bit_for_bit() {
    let model = minilm().truncated(1).unwrap();
    let tok = model.public.tokenizer.encode("A man is eating food.", 128, true).unwrap();
    let t0 = Instant::now();
    let out = assert_matches_simulation(&model, &tok, &Profile::fastlmpi());
    let plain = forward_f32(&model, &tok).unwrap();
    let cos = cosine(out.pooled.as_deref().unwrap(), plain.pooled.as_slice().unwrap());
    println!("minilm-l6, 1 layer, {} tokens: cosine vs f32 {cos:.6}, {:.1} s", tok.len(), t0.elapsed().as_secs_f64());
    assert!(cos > 0.999, "cosine vs f32 {cos}");
}
