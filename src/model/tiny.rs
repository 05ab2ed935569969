//! Tiny random checkpoints written to disk in the exact Hugging Face layout (config.json,
//! model.safetensors, tokenizer.json, optionally sentence-transformer files and a head).
//!
//! For tests that need a loadable model without a download: loader error paths, forward-pass shapes,
//! and private-vs-plaintext equality on a network small enough for debug builds. The weights are random
//! (seeded), so outputs carry no meaning.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use super::config::Arch;
use super::weights::HEAD_FILE;
use crate::{Error, Result};

/// Shape and options of a tiny model.
#[derive(Debug, Clone, PartialEq)]
pub struct TinySpec {
    pub arch: Arch,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub max_positions: usize,
    /// Write `modules.json` + `1_Pooling/config.json` (mean pooling + Normalize).
    pub sentence_transformer: bool,
    /// Include `pooler.dense` (BERT style).
    pub pooler: bool,
    /// Write a `head.safetensors` with this many labels.
    pub classifier_labels: Option<usize>,
    /// Nest tensors under `bert.` (as `BertFor…` exports do).
    pub bert_prefix: bool,
    pub seed: u64,
}

impl TinySpec {
    /// 2-layer BERT, hidden 16, 2 heads, FFN 32, BERT pooler.
    pub fn bert() -> TinySpec {
        TinySpec {
            arch: Arch::Bert,
            hidden: 16,
            layers: 2,
            heads: 2,
            intermediate: 32,
            max_positions: 64,
            sentence_transformer: false,
            pooler: true,
            classifier_labels: None,
            bert_prefix: false,
            seed: 7,
        }
    }

    /// 2-layer MPNet, hidden 16, 2 heads, FFN 32, sentence-transformer pooling.
    pub fn mpnet() -> TinySpec {
        TinySpec { arch: Arch::MPNet, sentence_transformer: true, pooler: false, seed: 11, ..TinySpec::bert() }
    }
}

/// A tensor in Hugging Face layout (linear weights `[out, in]`).
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Special tokens, then a few words, punctuation and single letters (with `##` continuations) so that
/// any lower-case ASCII text tokenizes without `[UNK]`.
pub fn tiny_vocab(arch: Arch) -> Vec<String> {
    let specials: &[&str] = match arch {
        Arch::Bert => &["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
        Arch::MPNet => &["<s>", "<pad>", "</s>", "[UNK]", "<mask>"],
    };
    let words = ["the", "a", "is", "movie", "new", "great", "good", "bad", "man", "food", "eating", "awesome"];
    let punct = [".", ",", "!", "?", "'"];
    let mut vocab: Vec<String> =
        specials.iter().chain(words.iter()).chain(punct.iter()).map(|s| s.to_string()).collect();
    for c in ('a'..='z').chain('0'..='9') {
        if !vocab.contains(&c.to_string()) {
            vocab.push(c.to_string());
        }
        vocab.push(format!("##{c}"));
    }
    vocab
}

fn special_ids(arch: Arch) -> (&'static str, &'static str, &'static str, u32) {
    // (begin, end, pad, pad_id)
    match arch {
        Arch::Bert => ("[CLS]", "[SEP]", "[PAD]", 0),
        Arch::MPNet => ("<s>", "</s>", "<pad>", 1),
    }
}

/// The random tensors of a tiny model, HF names and layout.
pub fn tiny_tensors(spec: &TinySpec) -> Vec<NamedTensor> {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let vocab = tiny_vocab(spec.arch).len();
    let (h, f) = (spec.hidden, spec.intermediate);
    let p = if spec.bert_prefix { "bert." } else { "" };
    let mut out = Vec::new();
    let mut push = |name: String, shape: Vec<usize>, scale: f32, offset: f32, rng: &mut ChaCha8Rng| {
        let n = shape.iter().product();
        let data = (0..n).map(|_| offset + scale * rng.random_range(-1.0f32..1.0)).collect();
        out.push(NamedTensor { name, shape, data });
    };
    let positions = match spec.arch {
        Arch::Bert => spec.max_positions,
        Arch::MPNet => spec.max_positions + 2,
    };
    push(format!("{p}embeddings.word_embeddings.weight"), vec![vocab, h], 1.0, 0.0, &mut rng);
    push(format!("{p}embeddings.position_embeddings.weight"), vec![positions, h], 0.5, 0.0, &mut rng);
    if spec.arch == Arch::Bert {
        push(format!("{p}embeddings.token_type_embeddings.weight"), vec![2, h], 0.2, 0.0, &mut rng);
    }
    push(format!("{p}embeddings.LayerNorm.weight"), vec![h], 0.1, 1.0, &mut rng);
    push(format!("{p}embeddings.LayerNorm.bias"), vec![h], 0.1, 0.0, &mut rng);
    let (q, k, v, o, attn_ln) = match spec.arch {
        Arch::Bert => (
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
            "attention.output.LayerNorm",
        ),
        Arch::MPNet => {
            ("attention.attn.q", "attention.attn.k", "attention.attn.v", "attention.attn.o", "attention.LayerNorm")
        }
    };
    let lin_scale = |fan_in: usize| 1.5 / (fan_in as f32).sqrt();
    for i in 0..spec.layers {
        let base = format!("{p}encoder.layer.{i}");
        for (name, out_dim, in_dim) in
            [(q, h, h), (k, h, h), (v, h, h), (o, h, h), ("intermediate.dense", f, h), ("output.dense", h, f)]
        {
            push(format!("{base}.{name}.weight"), vec![out_dim, in_dim], lin_scale(in_dim), 0.0, &mut rng);
            push(format!("{base}.{name}.bias"), vec![out_dim], 0.1, 0.0, &mut rng);
        }
        for ln in [attn_ln, "output.LayerNorm"] {
            push(format!("{base}.{ln}.weight"), vec![h], 0.1, 1.0, &mut rng);
            push(format!("{base}.{ln}.bias"), vec![h], 0.1, 0.0, &mut rng);
        }
    }
    if spec.arch == Arch::MPNet {
        push(format!("{p}encoder.relative_attention_bias.weight"), vec![32, spec.heads], 0.5, 0.0, &mut rng);
    }
    if spec.pooler {
        push(format!("{p}pooler.dense.weight"), vec![h, h], lin_scale(h), 0.0, &mut rng);
        push(format!("{p}pooler.dense.bias"), vec![h], 0.1, 0.0, &mut rng);
    }
    out
}

/// Random classifier tensors `classifier.weight [labels, hidden]`, `classifier.bias [labels]`.
pub fn tiny_head(spec: &TinySpec, labels: usize) -> Vec<NamedTensor> {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed ^ 0x4ead);
    let mut gen = |n: usize| (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect::<Vec<_>>();
    vec![
        NamedTensor {
            name: "classifier.weight".into(),
            shape: vec![labels, spec.hidden],
            data: gen(labels * spec.hidden),
        },
        NamedTensor { name: "classifier.bias".into(), shape: vec![labels], data: gen(labels) },
    ]
}

/// Write F32 tensors to a safetensors file.
pub fn write_safetensors(path: &Path, tensors: &[NamedTensor]) -> Result<()> {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|t| t.data.iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, t.shape.clone(), b)
                .map(|v| (t.name.clone(), v))
                .map_err(|e| Error::Model(format!("tensor `{}`: {e}", t.name)))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize_to_file(views, None, path)
        .map_err(|e| Error::Model(format!("writing {}: {e}", path.display())))
}

/// Write a complete tiny checkpoint into `dir` (created if needed).
pub fn write_tiny_checkpoint(dir: &Path, spec: &TinySpec) -> Result<()> {
    write_tiny_checkpoint_with(dir, spec, &tiny_tensors(spec))
}

/// As [`write_tiny_checkpoint`] with caller-supplied tensors (e.g. one removed or reshaped).
pub fn write_tiny_checkpoint_with(dir: &Path, spec: &TinySpec, tensors: &[NamedTensor]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    write_json(&dir.join("config.json"), &config_json(spec, tiny_vocab(spec.arch).len()))?;
    write_json(&dir.join("tokenizer.json"), &tokenizer_json(spec.arch, &tiny_vocab(spec.arch)))?;
    write_safetensors(&dir.join("model.safetensors"), tensors)?;
    if let Some(labels) = spec.classifier_labels {
        write_safetensors(&dir.join(HEAD_FILE), &tiny_head(spec, labels))?;
    }
    if spec.sentence_transformer {
        write_json(
            &dir.join("modules.json"),
            &json!([
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
            ]),
        )?;
        let pool_dir = dir.join("1_Pooling");
        std::fs::create_dir_all(&pool_dir).map_err(|e| Error::io(&pool_dir, e))?;
        write_json(
            &pool_dir.join("config.json"),
            &json!({"word_embedding_dimension": spec.hidden, "pooling_mode_cls_token": false,
                    "pooling_mode_mean_tokens": true, "pooling_mode_max_tokens": false,
                    "pooling_mode_mean_sqrt_len_tokens": false}),
        )?;
    }
    Ok(())
}

pub(super) fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Model(e.to_string()))?;
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// `config.json` of `spec`'s shape with a vocabulary of `vocab` tokens.
pub(super) fn config_json(spec: &TinySpec, vocab: usize) -> serde_json::Value {
    match spec.arch {
        Arch::Bert => json!({
            "architectures": ["BertModel"], "model_type": "bert", "hidden_act": "gelu",
            "hidden_size": spec.hidden, "num_hidden_layers": spec.layers, "num_attention_heads": spec.heads,
            "intermediate_size": spec.intermediate, "max_position_embeddings": spec.max_positions,
            "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0, "vocab_size": vocab,
            "position_embedding_type": "absolute"
        }),
        Arch::MPNet => json!({
            "architectures": ["MPNetForMaskedLM"], "model_type": "mpnet", "hidden_act": "gelu",
            "hidden_size": spec.hidden, "num_hidden_layers": spec.layers, "num_attention_heads": spec.heads,
            "intermediate_size": spec.intermediate, "max_position_embeddings": spec.max_positions + 2,
            "layer_norm_eps": 1e-5, "pad_token_id": 1, "vocab_size": vocab, "relative_attention_num_buckets": 32
        }),
    }
}

/// A BERT-style WordPiece `tokenizer.json` over `vocab` (which starts with the five special tokens
/// of [`tiny_vocab`]), with the same 128-token padding and truncation the released files carry
/// (the loader must switch them off).
pub(super) fn tokenizer_json(arch: Arch, vocab: &[String]) -> serde_json::Value {
    let (begin, end, pad, pad_id) = special_ids(arch);
    let id = |t: &str| vocab.iter().position(|v| v == t).unwrap_or(0) as u32;
    let vocab_map: serde_json::Map<String, serde_json::Value> =
        vocab.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect();
    let added: Vec<serde_json::Value> = vocab[..5]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"id": i, "special": true, "content": t, "single_word": false, "lstrip": false,
                             "rstrip": false, "normalized": false})
        })
        .collect();
    json!({
        "version": "1.0",
        "truncation": {"direction": "Right", "max_length": 128, "strategy": "LongestFirst", "stride": 0},
        "padding": {"strategy": {"Fixed": 128}, "direction": "Right", "pad_to_multiple_of": null,
                    "pad_id": pad_id, "pad_type_id": 0, "pad_token": pad},
        "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                       "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": begin, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": end, "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": begin, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": end, "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": end, "type_id": 1}}],
            "special_tokens": {
                begin: {"id": begin, "ids": [id(begin)], "tokens": [begin]},
                end: {"id": end, "ids": [id(end)], "tokens": [end]}
            }
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab_map}
    })
}
