//! Bad models and bad input get clear errors. Uses tiny random checkpoints written in-test (no download).

use std::path::{Path, PathBuf};

use fastlmpi::model::tiny::{tiny_tensors, write_tiny_checkpoint, write_tiny_checkpoint_with, NamedTensor, TinySpec};
use fastlmpi::model::{resolve, resolve_in, Model, HEAD_FILE};
use fastlmpi::Error;

/// A fresh, empty folder unique to this test process and `name`.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fastlmpi-model-errors-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Serialise tensors with the safetensors crate directly (independently of the library's writer).
fn write_tensors(path: &Path, tensors: &[NamedTensor]) {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|t| t.data.iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            (t.name.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, t.shape.clone(), b).unwrap())
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

fn tiny_model(name: &str) -> Model {
    let dir = scratch(name);
    write_tiny_checkpoint(&dir, &TinySpec::bert()).unwrap();
    Model::load(&dir).unwrap()
}

#[test]
fn missing_model_folder() {
    let missing = std::env::temp_dir().join("fastlmpi-definitely-missing-model-folder");
    let arg = missing.to_str().unwrap();
    let err = resolve(arg, false).unwrap_err();
    assert!(matches!(&err, Error::Model(m) if m.contains("does not exist") && m.contains(arg)), "{err}");
    let err = Model::load(&missing).unwrap_err();
    assert!(matches!(&err, Error::Model(m) if m.contains("does not exist")), "{err}");
    // A folder that exists but holds no checkpoint.
    let empty = scratch("empty");
    let err = Model::load(&empty).unwrap_err();
    assert!(matches!(&err, Error::Model(m) if m.contains("config.json")), "{err}");
}

#[test]
fn known_model_absent_without_fetch_names_the_script() {
    let models = scratch("models-empty");
    let err = resolve_in(&models, "minilm-l6", false).unwrap_err();
    assert!(matches!(&err, Error::Model(m) if m.contains("fetch-models.sh minilm-l6")), "{err}");
}

#[test]
fn unknown_model_name_lists_known_names() {
    let err = resolve("bert-gigantic", false).unwrap_err();
    assert!(
        matches!(&err, Error::Input(m) if m.contains("bert-gigantic") && m.contains("minilm-l6") && m.contains("mpnet-base")
            && m.contains("bert-base")),
        "{err}"
    );
}

#[test]
fn bert_base_falls_back_to_mpnet_with_a_note() {
    let models = scratch("models-bert-base");
    write_tiny_checkpoint(&models.join("mpnet-base"), &TinySpec::mpnet()).unwrap();
    let r = resolve_in(&models, "bert-base", false).unwrap();
    assert_eq!(r.dir, models.join("mpnet-base"));
    assert!(r.note.as_deref().is_some_and(|n| n.contains("mpnet")), "{:?}", r.note);
    // A user-supplied bert-base checkpoint wins, without a note.
    write_tiny_checkpoint(&models.join("bert-base"), &TinySpec::bert()).unwrap();
    let r = resolve_in(&models, "bert-base", false).unwrap();
    assert_eq!((r.dir, r.note), (models.join("bert-base"), None));
}

#[test]
fn missing_tensor_is_named() {
    let dir = scratch("missing-tensor");
    let spec = TinySpec::bert();
    let mut tensors = tiny_tensors(&spec);
    let victim = "encoder.layer.1.output.dense.weight";
    tensors.retain(|t| t.name != victim);
    write_tiny_checkpoint(&dir, &spec).unwrap();
    write_tensors(&dir.join("model.safetensors"), &tensors);
    let err = Model::load(&dir).unwrap_err();
    assert!(matches!(&err, Error::Model(m) if m.contains(victim) && m.contains("not found")), "{err}");
}

#[test]
fn wrong_tensor_shape_reports_expected_and_actual() {
    let dir = scratch("wrong-shape");
    let spec = TinySpec::bert();
    let mut tensors = tiny_tensors(&spec);
    let victim = "encoder.layer.0.attention.self.query.weight";
    let t = tensors.iter_mut().find(|t| t.name == victim).unwrap();
    t.shape = vec![16, 8];
    t.data.truncate(16 * 8);
    write_tiny_checkpoint(&dir, &spec).unwrap();
    write_tensors(&dir.join("model.safetensors"), &tensors);
    match Model::load(&dir).unwrap_err() {
        Error::Shape { tensor, expected, got } => {
            assert_eq!((tensor.as_str(), expected, got), (victim, vec![16, 16], vec![16, 8]));
        }
        other => panic!("expected a shape error, got {other}"),
    }
}

#[test]
fn wrong_head_shape_and_bad_config_are_rejected() {
    let dir = scratch("bad-head");
    let spec = TinySpec::bert();
    write_tiny_checkpoint(&dir, &spec).unwrap();
    let head = vec![
        NamedTensor { name: "classifier.weight".into(), shape: vec![2, 7], data: vec![0.0; 14] },
        NamedTensor { name: "classifier.bias".into(), shape: vec![2], data: vec![0.0; 2] },
    ];
    write_tensors(&dir.join(HEAD_FILE), &head);
    let err = Model::load(&dir).unwrap_err();
    assert!(
        matches!(&err, Error::Shape { tensor, got, .. } if tensor == "classifier.weight" && *got == vec![2, 7]),
        "{err}"
    );

    std::fs::remove_file(dir.join(HEAD_FILE)).unwrap();
    std::fs::write(dir.join("config.json"), "{ not json").unwrap();
    let err = Model::load(&dir).unwrap_err();
    assert!(matches!(&err, Error::Model(m) if m.contains("config.json")), "{err}");
}

#[test]
fn bert_prefix_is_accepted() {
    let plain_dir = scratch("prefix-plain");
    let prefixed_dir = scratch("prefix-bert");
    let spec = TinySpec::bert();
    write_tiny_checkpoint(&plain_dir, &spec).unwrap();
    write_tiny_checkpoint_with(
        &prefixed_dir,
        &TinySpec { bert_prefix: true, ..spec.clone() },
        &tiny_tensors(&TinySpec { bert_prefix: true, ..spec }),
    )
    .unwrap();
    let a = Model::load(&plain_dir).unwrap();
    let b = Model::load(&prefixed_dir).unwrap();
    assert_eq!(a.server, b.server);
    assert_eq!(a.public.word_embeddings, b.public.word_embeddings);
}

#[test]
fn non_utf8_input() {
    let model = tiny_model("utf8");
    let err = model.public.tokenizer.encode_bytes(&[b'a', 0xff, b'b'], 32, false).unwrap_err();
    assert!(matches!(&err, Error::Input(m) if m.contains("UTF-8")), "{err}");
    // Valid UTF-8 bytes go through.
    assert!(model.public.tokenizer.encode_bytes("good movie".as_bytes(), 32, false).is_ok());
}

#[test]
fn empty_input() {
    let model = tiny_model("empty-input");
    for text in ["", "   ", "\n\t "] {
        let err = model.public.encode(text, 32, false).unwrap_err();
        assert!(matches!(&err, Error::Input(m) if m.contains("empty")), "{text:?}: {err}");
    }
}

#[test]
fn over_long_input_errors_or_truncates() {
    let model = tiny_model("long-input");
    let text = "the movie is good the man is eating food";
    let full = model.public.encode(text, 64, false).unwrap();
    assert_eq!(full.len(), 11, "{:?}", full.tokens);
    // The shipped tokenizer.json asks for padding to 128: it must be switched off.
    assert_eq!(full.num_attended(), full.len());

    let err = model.public.encode(text, 8, false).unwrap_err();
    assert!(matches!(&err, Error::Input(m) if m.contains("11 tokens") && m.contains("8")), "{err}");

    let cut = model.public.encode(text, 8, true).unwrap();
    assert_eq!(cut.len(), 8);
    assert_eq!(cut.ids[..7], full.ids[..7]);
    assert_eq!(cut.tokens.last().map(String::as_str), Some("[SEP]"));
    assert!(fastlmpi::model::forward_f32(&model, &cut).is_ok());

    // Beyond the position table is an error even when the tokenizer limit would allow it.
    let err = model.public.encode(text, 1000, false).unwrap_err();
    assert!(matches!(&err, Error::Input(m) if m.contains("limit")), "{err}");
}

#[test]
fn bad_token_ids_are_rejected_by_the_forward_pass() {
    let model = tiny_model("bad-ids");
    let mut tok = model.public.encode("good movie", 32, false).unwrap();
    tok.ids[1] = 1_000_000;
    let err = fastlmpi::model::forward_f32(&model, &tok).unwrap_err();
    assert!(matches!(&err, Error::Input(m) if m.contains("1000000")), "{err}");
    let mut tok = model.public.encode("good movie", 32, false).unwrap();
    tok.attention_mask = vec![0; tok.len()];
    assert!(matches!(fastlmpi::model::forward_f32(&model, &tok), Err(Error::Input(_))));
}

#[test]
fn a_path_resolves_to_that_folder() {
    let dir = scratch("by-path");
    write_tiny_checkpoint(&dir, &TinySpec::bert()).unwrap();
    let r = resolve(dir.to_str().unwrap(), false).unwrap();
    assert_eq!((r.dir.as_path(), r.note), (dir.as_path(), None));
    assert!(Model::load(&r.dir).is_ok());
}
