//! Random checkpoints of full BERT shapes (`bert-base`, `bert-large`) in the Hugging Face layout
//! (config.json, model.safetensors, tokenizer.json), written by `fastlmpi make-model`.
//!
//! Why: the private protocols are data-oblivious (every message, its size and the number of rounds
//! depend only on the public shape and length), so the cost of a shape can be measured on random
//! weights without a trained checkpoint of that shape. The weights follow Hugging Face's
//! initialisation (normal with std `initializer_range` = 0.02 for dense layers and embeddings,
//! zero biases, LayerNorm γ = 1 and β = 0), which keeps every activation in the ranges a trained
//! BERT has and therefore inside the protocols' domains (`fastlmpi ranges` checks it).
//!
//! BERT-large is ≈ 335 M parameters (1.3 GB of f32): the file is streamed, one tensor in memory at
//! a time, each tensor drawn from its own seeded stream so the bytes do not depend on write order.

use std::io::{BufWriter, Write};
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::config::Arch;
use super::tiny::{config_json, tiny_vocab, tokenizer_json, write_json, TinySpec};
use crate::{Error, Result};

/// Hugging Face's `initializer_range` for BERT: the std of every dense and embedding weight.
pub const INITIALIZER_RANGE: f32 = 0.02;

/// BERT's WordPiece vocabulary size (bert-base-uncased, bert-large-uncased).
pub const BERT_VOCAB: usize = 30522;

/// Names `make-model --shape` accepts.
pub const SHAPES: &[&str] = &["bert-base", "bert-large"];

/// A BERT shape: widths, depth and table sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BertShape {
    pub name: String,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub max_positions: usize,
    pub vocab: usize,
}

impl BertShape {
    /// 12 layers × 768, 12 heads, FFN 3072, 512 positions.
    pub fn bert_base() -> BertShape {
        BertShape { name: "bert-base".into(), hidden: 768, layers: 12, heads: 12, intermediate: 3072, max_positions: 512, vocab: BERT_VOCAB }
    }

    /// 24 layers × 1024, 16 heads, FFN 4096, 512 positions.
    pub fn bert_large() -> BertShape {
        BertShape { name: "bert-large".into(), hidden: 1024, layers: 24, heads: 16, intermediate: 4096, max_positions: 512, vocab: BERT_VOCAB }
    }

    /// A shape by name (see [`SHAPES`]).
    pub fn parse(name: &str) -> Result<BertShape> {
        match name.trim() {
            "bert-base" => Ok(Self::bert_base()),
            "bert-large" => Ok(Self::bert_large()),
            other => Err(Error::Input(format!("unknown shape `{other}`; known shapes: {}", SHAPES.join(", ")))),
        }
    }

    /// The same shape with only `layers` encoder layers (a smaller file whose config says so:
    /// the depth in config.json and in the shape fingerprint is the depth actually written).
    pub fn with_layers(mut self, layers: usize) -> Result<BertShape> {
        if layers == 0 || layers > self.layers {
            return Err(Error::Input(format!("--layers {layers} outside 1..={} for {}", self.layers, self.name)));
        }
        self.layers = layers;
        Ok(self)
    }

    /// Parameters of the encoder, embeddings and pooler (what model.safetensors holds).
    pub fn parameters(&self) -> u64 {
        tensor_specs(self).iter().map(|t| t.shape.iter().product::<usize>() as u64).sum()
    }

    fn tiny_spec(&self, seed: u64) -> TinySpec {
        TinySpec {
            arch: Arch::Bert,
            hidden: self.hidden,
            layers: self.layers,
            heads: self.heads,
            intermediate: self.intermediate,
            max_positions: self.max_positions,
            sentence_transformer: false,
            pooler: true,
            classifier_labels: None,
            bert_prefix: false,
            seed,
        }
    }
}

/// How a tensor's values are drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Normal with mean 0 and this std.
    Normal(f32),
    /// Every value equal to this constant.
    Const(f32),
}

/// One tensor of the checkpoint before its values exist.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub init: Init,
}

/// The tensors of a `BertModel` of `shape`, in Hugging Face names and layout (linear `[out, in]`).
pub fn tensor_specs(shape: &BertShape) -> Vec<TensorSpec> {
    let (h, f) = (shape.hidden, shape.intermediate);
    let w = Init::Normal(INITIALIZER_RANGE);
    let mut out = Vec::new();
    let mut push = |name: String, dims: Vec<usize>, init: Init| out.push(TensorSpec { name, shape: dims, init });
    push("embeddings.word_embeddings.weight".into(), vec![shape.vocab, h], w);
    push("embeddings.position_embeddings.weight".into(), vec![shape.max_positions, h], w);
    push("embeddings.token_type_embeddings.weight".into(), vec![2, h], w);
    push("embeddings.LayerNorm.weight".into(), vec![h], Init::Const(1.0));
    push("embeddings.LayerNorm.bias".into(), vec![h], Init::Const(0.0));
    let dense = [
        ("attention.self.query", h, h),
        ("attention.self.key", h, h),
        ("attention.self.value", h, h),
        ("attention.output.dense", h, h),
        ("intermediate.dense", f, h),
        ("output.dense", h, f),
    ];
    for i in 0..shape.layers {
        let base = format!("encoder.layer.{i}");
        for (name, out_dim, in_dim) in dense {
            push(format!("{base}.{name}.weight"), vec![out_dim, in_dim], w);
            push(format!("{base}.{name}.bias"), vec![out_dim], Init::Const(0.0));
        }
        for ln in ["attention.output.LayerNorm", "output.LayerNorm"] {
            push(format!("{base}.{ln}.weight"), vec![h], Init::Const(1.0));
            push(format!("{base}.{ln}.bias"), vec![h], Init::Const(0.0));
        }
    }
    push("pooler.dense.weight".into(), vec![h, h], w);
    push("pooler.dense.bias".into(), vec![h], Init::Const(0.0));
    out
}

/// The vocabulary: [`tiny_vocab`]'s specials, words and WordPiece letters (any lower-case ASCII
/// text tokenizes without `[UNK]`), padded with `[unusedN]` entries to `size` so the embedding
/// table has BERT's real size.
pub fn padded_vocab(size: usize) -> Result<Vec<String>> {
    let mut vocab = tiny_vocab(Arch::Bert);
    if size < vocab.len() {
        return Err(Error::Input(format!("vocabulary of {size} tokens is smaller than the {} the tokenizer needs", vocab.len())));
    }
    let base = vocab.len();
    vocab.extend((0..size - base).map(|i| format!("[unused{i}]")));
    Ok(vocab)
}

/// Write config.json, tokenizer.json and model.safetensors of a random `shape` into `dir`
/// (created if needed). Returns the size of model.safetensors in bytes.
pub fn write_random_checkpoint(dir: &Path, shape: &BertShape, seed: u64) -> Result<u64> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let vocab = padded_vocab(shape.vocab)?;
    let mut config = config_json(&shape.tiny_spec(seed), vocab.len());
    if let Some(map) = config.as_object_mut() {
        map.insert("initializer_range".into(), json!(INITIALIZER_RANGE));
        map.insert("fastlmpi_random_weights".into(), json!({"shape": shape.name, "seed": seed}));
    }
    write_json(&dir.join("config.json"), &config)?;
    write_json(&dir.join("tokenizer.json"), &tokenizer_json(Arch::Bert, &vocab))?;
    let metadata = [("format", "pt".to_string()), ("fastlmpi_random_weights", format!("shape {}, seed {seed}, std {INITIALIZER_RANGE}", shape.name))];
    write_streamed_safetensors(&dir.join("model.safetensors"), &tensor_specs(shape), &metadata, seed)
}

/// A safetensors file written tensor by tensor: the header (offsets known from the shapes), then
/// each tensor's F32 little-endian values drawn and written before the next is drawn.
pub fn write_streamed_safetensors(path: &Path, specs: &[TensorSpec], metadata: &[(&str, String)], seed: u64) -> Result<u64> {
    let header = safetensors_header(specs, metadata)?;
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let io = |e| Error::io(path, e);
    out.write_all(&(header.len() as u64).to_le_bytes()).map_err(io)?;
    out.write_all(&header).map_err(io)?;
    let mut written = 8 + header.len() as u64;
    for spec in specs {
        let values = draw(spec, seed);
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        out.write_all(&bytes).map_err(io)?;
        written += bytes.len() as u64;
    }
    out.flush().map_err(io)?;
    Ok(written)
}

/// The JSON header, padded with spaces to a multiple of 8 bytes (the alignment the safetensors
/// crate itself writes).
fn safetensors_header(specs: &[TensorSpec], metadata: &[(&str, String)]) -> Result<Vec<u8>> {
    let mut map = serde_json::Map::new();
    let meta: serde_json::Map<String, serde_json::Value> = metadata.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    map.insert("__metadata__".into(), serde_json::Value::Object(meta));
    let mut offset = 0u64;
    for spec in specs {
        let len = spec.shape.iter().product::<usize>() as u64 * 4;
        if map.contains_key(&spec.name) {
            return Err(Error::Model(format!("tensor `{}` listed twice", spec.name)));
        }
        map.insert(spec.name.clone(), json!({"dtype": "F32", "shape": spec.shape, "data_offsets": [offset, offset + len]}));
        offset += len;
    }
    let mut header = serde_json::to_vec(&serde_json::Value::Object(map)).map_err(|e| Error::Model(e.to_string()))?;
    while header.len() % 8 != 0 {
        header.push(b' ');
    }
    Ok(header)
}

/// The values of one tensor, from a stream seeded by (seed, tensor name).
fn draw(spec: &TensorSpec, seed: u64) -> Vec<f32> {
    let n = spec.shape.iter().product::<usize>();
    match spec.init {
        Init::Const(c) => vec![c; n],
        Init::Normal(std) => {
            let mut rng = ChaCha8Rng::from_seed(tensor_seed(seed, &spec.name));
            (0..n).map(|_| std * standard_normal(&mut rng)).collect()
        }
    }
}

fn tensor_seed(seed: u64, name: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(name.as_bytes());
    h.finalize().into()
}

/// One standard normal draw (Box–Muller; the crate has no `rand_distr`).
fn standard_normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]: ln is finite
    let u2: f64 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_have_the_published_sizes() {
        let large = BertShape::bert_large();
        assert_eq!((large.layers, large.hidden, large.heads, large.intermediate, large.max_positions), (24, 1024, 16, 4096, 512));
        // Hugging Face's BertModel counts for bert-large-uncased and bert-base-uncased.
        assert_eq!(large.parameters(), 335_141_888);
        let base = BertShape::bert_base();
        assert_eq!(base.parameters(), 109_482_240);
        assert!(BertShape::parse("bert-huge").is_err());
        assert!(BertShape::bert_base().with_layers(0).is_err());
        assert!(BertShape::bert_base().with_layers(13).is_err());
    }

    #[test]
    fn normal_draws_have_the_initializer_std() {
        let spec = TensorSpec { name: "x".into(), shape: vec![200, 100], init: Init::Normal(INITIALIZER_RANGE) };
        let v = draw(&spec, 3);
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let std = (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        assert!(mean.abs() < 1e-3, "mean {mean}");
        assert!((std - 0.02).abs() < 5e-4, "std {std}");
        assert_eq!(v, draw(&spec, 3), "seeded");
        assert_ne!(v, draw(&spec, 4));
    }

    #[test]
    fn padded_vocab_has_the_requested_size() {
        let v = padded_vocab(BERT_VOCAB).expect("vocab");
        assert_eq!(v.len(), BERT_VOCAB);
        assert_eq!(v[0], "[PAD]");
        assert!(padded_vocab(10).is_err());
    }
}
