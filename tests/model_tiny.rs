//! Forward-pass structure on tiny random checkpoints (no download): shapes, masking, pooling, head,
//! fixed-point agreement and the shape fingerprint.

use std::path::PathBuf;

use fastlmpi::model::tiny::{write_tiny_checkpoint, TinySpec};
use fastlmpi::model::{classifier_head, cosine, forward_f32, forward_fixed, Arch, FixedConfig, Model, PoolingMode};

fn tiny(name: &str, spec: &TinySpec) -> Model {
    let dir: PathBuf = std::env::temp_dir().join(format!("fastlmpi-model-tiny-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    write_tiny_checkpoint(&dir, spec).unwrap();
    Model::load(&dir).unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn bert_forward_shapes_pooler_and_head() {
    let spec = TinySpec { classifier_labels: Some(2), ..TinySpec::bert() };
    let model = tiny("bert-head", &spec);
    assert_eq!(model.public.pooling, PoolingMode::Pooler);
    let tok = model.public.encode("the new movie is great!", 32, false).unwrap();
    let out = forward_f32(&model, &tok).unwrap();
    assert_eq!(out.last_hidden.dim(), (tok.len(), spec.hidden));
    assert_eq!(out.pooled.len(), spec.hidden);
    assert!(out.pooled.iter().all(|v| v.abs() < 1.0), "tanh pooler output out of range");
    let logits = out.logits.clone().expect("head present");
    assert_eq!(logits.len(), 2);
    let expected = classifier_head(model.server.classifier.as_ref().unwrap(), &out.pooled);
    assert_eq!(logits, expected);
    // Each LayerNorm output row has mean ≈ mean(beta) when gamma ≈ 1: a cheap sanity check that the
    // final block is a LayerNorm.
    assert!(out.last_hidden.iter().all(|v| v.is_finite()));
}

#[test]
fn mpnet_forward_normalised_and_mask_honoured() {
    let spec = TinySpec::mpnet();
    let model = tiny("mpnet", &spec);
    assert_eq!(model.public.config.arch, Arch::MPNet);
    assert_eq!(model.public.pooling, PoolingMode::Mean { normalize: true });
    let tok = model.public.encode("a man is eating food.", 32, false).unwrap();
    assert_eq!(tok.ids.first(), Some(&0), "MPNet sentences start with <s>");
    let out = forward_f32(&model, &tok).unwrap();
    let norm: f32 = out.pooled.iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "pooled norm {norm}");
    // Padding (mask 0) must not move the real tokens' outputs or the pooled vector.
    let padded = model.public.encode_padded("a man is eating food.", 32, false, Some(20)).unwrap();
    let out_p = forward_f32(&model, &padded).unwrap();
    assert!(max_abs_diff(out.pooled.as_slice().unwrap(), out_p.pooled.as_slice().unwrap()) < 1e-5);
    let n = tok.len();
    let real_rows = out_p.last_hidden.slice(ndarray::s![..n, ..]).to_owned();
    assert!(max_abs_diff(out.last_hidden.as_slice().unwrap(), real_rows.as_slice().unwrap()) < 1e-5);
}

#[test]
fn bert_padding_does_not_change_real_rows() {
    let model = tiny("bert-pad", &TinySpec { sentence_transformer: true, ..TinySpec::bert() });
    let tok = model.public.encode("good food, bad movie", 32, false).unwrap();
    let padded = model.public.encode_padded("good food, bad movie", 32, false, Some(32)).unwrap();
    let (a, b) = (forward_f32(&model, &tok).unwrap(), forward_f32(&model, &padded).unwrap());
    assert!(max_abs_diff(a.pooled.as_slice().unwrap(), b.pooled.as_slice().unwrap()) < 1e-5);
    // And dropping the mask (treating pads as real tokens) does change it: the test can fail.
    let mut unmasked = padded.clone();
    unmasked.attention_mask = vec![1; unmasked.len()];
    let c = forward_f32(&model, &unmasked).unwrap();
    assert!(max_abs_diff(a.pooled.as_slice().unwrap(), c.pooled.as_slice().unwrap()) > 1e-3);
}

#[test]
fn fixed_point_agrees_on_tiny_models() {
    for (name, spec) in
        [("fx-bert", TinySpec { classifier_labels: Some(3), ..TinySpec::bert() }), ("fx-mpnet", TinySpec::mpnet())]
    {
        let model = tiny(name, &spec);
        let tok = model.public.encode_padded("the man is eating good food", 32, false, Some(16)).unwrap();
        let reference = forward_f32(&model, &tok).unwrap();
        let fixed = forward_fixed(&model, &tok, &FixedConfig::default()).unwrap();
        let c = cosine(reference.pooled.as_slice().unwrap(), fixed.pooled.as_slice().unwrap());
        assert!(c > 0.9999, "{name}: pooled cosine {c}");
        if let (Some(a), Some(b)) = (&reference.logits, &fixed.logits) {
            assert!(max_abs_diff(a.as_slice().unwrap(), b.as_slice().unwrap()) < 0.02, "{name}: logits {a} vs {b}");
        }
        assert_eq!(reference.logits.is_some(), fixed.logits.is_some());
    }
}

#[test]
fn shape_fingerprint_is_stable_and_discriminating() {
    let a = tiny("fp-a", &TinySpec::bert());
    let b = tiny("fp-b", &TinySpec { seed: 99, ..TinySpec::bert() });
    let m = tiny("fp-m", &TinySpec::mpnet());
    assert_eq!(a.shape_fingerprint(), b.shape_fingerprint(), "weights must not affect the shape fingerprint");
    assert_ne!(a.shape_fingerprint(), m.shape_fingerprint());
    assert_ne!(a.shape_fingerprint(), a.clone().truncated(1).unwrap().shape_fingerprint());
}

#[test]
fn quantising_with_release_gives_the_same_fixed_model_and_blocks_the_f32_pass() {
    use fastlmpi::model::QuantizedWeights;
    for spec in [TinySpec::bert(), TinySpec::mpnet()] {
        let model = tiny(if spec.arch == Arch::Bert { "release-bert" } else { "release-mpnet" }, &spec);
        let tok = model.public.encode("the new movie is great!", 32, false).unwrap();
        let cfg = FixedConfig::default();
        let expected = fastlmpi::model::FixedModel::new(&model, cfg).unwrap().forward(&tok).unwrap();
        let mut released = model.clone();
        let q = QuantizedWeights::quantize_releasing(&mut released, cfg).unwrap();
        assert!(released.server.layers.iter().all(|l| l.query.w.is_empty() && l.ffn_out.w.is_empty()), "f32 matrices released");
        let got = fastlmpi::model::FixedModel::with_quantized(&released, cfg, q).unwrap().forward(&tok).unwrap();
        assert_eq!(got.pooled, expected.pooled);
        assert!(forward_f32(&released, &tok).is_err(), "the f32 pass refuses a released model");
        let short = QuantizedWeights { layers: vec![], pooler: None, classifier: None };
        assert!(fastlmpi::model::FixedModel::with_quantized(&model, cfg, short).is_err());
    }
}
