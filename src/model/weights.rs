//! Shape-checked weight loading from safetensors, split into the client's public part and the server's
//! secret part.
//!
//! As in BOLT, the embedding tables (word, position, token type and the embedding LayerNorm) are public:
//! the client embeds its own tokens. Everything from the first attention block on is the server's.

use std::path::Path;

use ndarray::{Array1, Array2};
use safetensors::{Dtype, SafeTensors};

use super::config::{short_hash, Arch, BertConfig, PoolingMode};
use super::tokenize::TextTokenizer;
use crate::{Error, Result};

/// A dense layer `y = x · w + b`, with `w` stored `[in, out]` (Hugging Face stores `[out, in]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    pub w: Array2<f32>,
    pub b: Array1<f32>,
}

impl Linear {
    pub fn in_dim(&self) -> usize {
        self.w.nrows()
    }
    pub fn out_dim(&self) -> usize {
        self.w.ncols()
    }
}

/// Per-row LayerNorm parameters: `gamma · (x - mean) / sqrt(var + eps) + beta`.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerNorm {
    pub gamma: Array1<f32>,
    pub beta: Array1<f32>,
    pub eps: f64,
}

/// One post-LN encoder block.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderLayer {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    /// Attention output projection.
    pub attn_out: Linear,
    /// LayerNorm after the attention residual.
    pub attn_norm: LayerNorm,
    /// FFN up-projection (`intermediate.dense`, hidden → intermediate).
    pub ffn_in: Linear,
    /// FFN down-projection (`output.dense`, intermediate → hidden).
    pub ffn_out: Linear,
    /// LayerNorm after the FFN residual.
    pub out_norm: LayerNorm,
}

/// What the client holds: shape, tokenizer and the embedding tables.
#[derive(Debug, Clone)]
pub struct PublicModel {
    pub config: BertConfig,
    pub tokenizer: TextTokenizer,
    pub pooling: PoolingMode,
    /// `[vocab, hidden]`
    pub word_embeddings: Array2<f32>,
    /// `[max_positions, hidden]`
    pub position_embeddings: Array2<f32>,
    /// `[type_vocab, hidden]`; `None` for MPNet.
    pub token_type_embeddings: Option<Array2<f32>>,
    pub embedding_norm: LayerNorm,
}

/// What the server holds: every weight after the embeddings.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerWeights {
    pub layers: Vec<EncoderLayer>,
    /// MPNet: `[num_buckets, heads]`, shared by all layers.
    pub relative_attention_bias: Option<Array2<f32>>,
    /// BERT pooler dense (`[hidden, hidden]`), used only with [`PoolingMode::Pooler`].
    pub pooler: Option<Linear>,
    /// Classification head on the pooled vector (`[hidden, labels]`).
    pub classifier: Option<Linear>,
}

/// A full checkpoint: both parties' parts.
#[derive(Debug, Clone)]
pub struct Model {
    pub public: PublicModel,
    pub server: ServerWeights,
}

/// Optional classifier file next to `model.safetensors`, with HF names `classifier.{weight,bias}`.
pub const HEAD_FILE: &str = "head.safetensors";

/// Prefixes under which a Hugging Face export may nest the encoder (`BertFor…` models use `bert.`).
const PREFIXES: &[&str] = &["", "bert.", "mpnet.", "model."];

/// Read access to one safetensors file with shape checks and float conversion.
pub struct TensorSource<'a> {
    st: SafeTensors<'a>,
    file: String,
}

impl<'a> TensorSource<'a> {
    /// Parse the header of an in-memory safetensors file (`file` is only used in messages).
    pub fn new(bytes: &'a [u8], file: &Path) -> Result<TensorSource<'a>> {
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| Error::Model(format!("{} is not a valid safetensors file: {e}", file.display())))?;
        Ok(TensorSource { st, file: file.display().to_string() })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.st.tensor(name).is_ok()
    }

    /// Shape of a tensor, or `Error::Model` naming it when absent.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.view(name)?.shape().to_vec())
    }

    fn view(&self, name: &str) -> Result<safetensors::tensor::TensorView<'_>> {
        self.st
            .tensor(name)
            .map_err(|_| Error::Model(format!("tensor `{name}` not found in {}", self.file)))
    }

    /// The tensor's values as f32 (F32, F64, F16 and BF16 accepted), after checking its shape.
    pub fn get(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let view = self.view(name)?;
        if view.shape() != expected {
            return Err(Error::Shape { tensor: name.to_string(), expected: expected.to_vec(), got: view.shape().to_vec() });
        }
        decode_floats(view.dtype(), view.data())
            .ok_or_else(|| Error::Model(format!("tensor `{name}` in {} has unsupported dtype {:?}", self.file, view.dtype())))
    }

    pub fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Array2<f32>> {
        let data = self.get(name, &[rows, cols])?;
        Array2::from_shape_vec((rows, cols), data).map_err(|e| Error::Model(format!("tensor `{name}`: {e}")))
    }

    pub fn vector(&self, name: &str, len: usize) -> Result<Array1<f32>> {
        Ok(Array1::from(self.get(name, &[len])?))
    }

    /// `BASE.weight` (`[out, in]`, transposed here to `[in, out]`) and `BASE.bias` (`[out]`).
    pub fn linear(&self, base: &str, in_dim: usize, out_dim: usize) -> Result<Linear> {
        let w_hf = self.matrix(&format!("{base}.weight"), out_dim, in_dim)?;
        let w = w_hf.t().as_standard_layout().into_owned();
        let b = self.vector(&format!("{base}.bias"), out_dim)?;
        Ok(Linear { w, b })
    }

    /// `BASE.{weight,bias}`, or the old TensorFlow-era names `BASE.{gamma,beta}`.
    pub fn layer_norm(&self, base: &str, dim: usize, eps: f64) -> Result<LayerNorm> {
        let (g, b) = if !self.contains(&format!("{base}.weight")) && self.contains(&format!("{base}.gamma")) {
            ("gamma", "beta")
        } else {
            ("weight", "bias")
        };
        Ok(LayerNorm { gamma: self.vector(&format!("{base}.{g}"), dim)?, beta: self.vector(&format!("{base}.{b}"), dim)?, eps })
    }

    /// The prefix under which this file stores the encoder.
    pub fn detect_prefix(&self) -> Result<&'static str> {
        PREFIXES
            .iter()
            .copied()
            .find(|p| self.contains(&format!("{p}embeddings.word_embeddings.weight")))
            .ok_or_else(|| {
                Error::Model(format!(
                    "tensor `embeddings.word_embeddings.weight` not found in {} (also tried prefixes {})",
                    self.file,
                    PREFIXES[1..].join(", ")
                ))
            })
    }
}

/// Little-endian float data to f32; `None` for non-float dtypes. Works on unaligned bytes.
fn decode_floats(dtype: Dtype, data: &[u8]) -> Option<Vec<f32>> {
    let out = match dtype {
        Dtype::F32 => data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        Dtype::BF16 => data.chunks_exact(2).map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16)).collect(),
        Dtype::F16 => data.chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect(),
        _ => return None,
    };
    Some(out)
}

/// IEEE binary16 → binary32, exact (including subnormals, infinities and NaN).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f32;
    match exp {
        0 => sign * frac * (-24f32).exp2(),
        31 if frac == 0.0 => sign * f32::INFINITY,
        31 => f32::NAN,
        _ => sign * (1.0 + frac / 1024.0) * ((exp - 15) as f32).exp2(),
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::Model(format!("{} not found", path.display())),
        _ => Error::io(path, e),
    })
}

impl PublicModel {
    /// Load config, tokenizer and embedding tables from a checkpoint folder.
    pub fn load(dir: &Path) -> Result<PublicModel> {
        let config = BertConfig::from_dir(dir)?;
        let path = dir.join("model.safetensors");
        let bytes = read_file(&path)?;
        let src = TensorSource::new(&bytes, &path)?;
        Self::from_source(dir, config, &src)
    }

    fn from_source(dir: &Path, config: BertConfig, src: &TensorSource) -> Result<PublicModel> {
        let p = src.detect_prefix()?;
        let h = config.hidden_size;
        let has_pooler = src.contains(&format!("{p}pooler.dense.weight"));
        let pooling = PoolingMode::detect(dir, has_pooler)?;
        let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"), config.pad_token_id)?;
        let word_embeddings = src.matrix(&format!("{p}embeddings.word_embeddings.weight"), config.vocab_size, h)?;
        let position_embeddings =
            src.matrix(&format!("{p}embeddings.position_embeddings.weight"), config.max_position_embeddings, h)?;
        let token_type_embeddings = match config.arch {
            Arch::Bert => Some(src.matrix(&format!("{p}embeddings.token_type_embeddings.weight"), config.type_vocab_size, h)?),
            Arch::MPNet => None,
        };
        let embedding_norm = src.layer_norm(&format!("{p}embeddings.LayerNorm"), h, config.layer_norm_eps)?;
        Ok(PublicModel { config, tokenizer, pooling, word_embeddings, position_embeddings, token_type_embeddings, embedding_norm })
    }

    /// Short stable hash of the config shape, the pooling mode and the public tensor shapes: two parties
    /// with equal fingerprints agree on every dimension of the computation.
    pub fn shape_fingerprint(&self) -> String {
        let tt = self.token_type_embeddings.as_ref().map(|t| t.shape().to_vec());
        short_hash(&format!(
            "{};pooling={:?};word={:?};pos={:?};types={:?};ln={};tokenizer_vocab={}",
            self.config.shape_descriptor(),
            self.pooling,
            self.word_embeddings.shape(),
            self.position_embeddings.shape(),
            tt,
            self.embedding_norm.gamma.len(),
            self.tokenizer.vocab_size()
        ))
    }

    /// Tokenize with the model's position limit enforced (see [`TextTokenizer::encode`]).
    pub fn encode(&self, text: &str, max_len: usize, truncate: bool) -> Result<super::Tokenized> {
        self.tokenizer.encode(text, self.checked_max_len(max_len)?, truncate)
    }

    /// As [`Self::encode`], then pad to `pad_to` tokens when given.
    pub fn encode_padded(&self, text: &str, max_len: usize, truncate: bool, pad_to: Option<usize>) -> Result<super::Tokenized> {
        let tok = self.encode(text, max_len, truncate)?;
        match pad_to {
            Some(n) => tok.pad_to(self.checked_max_len(n)?, self.config.pad_token_id, &self.tokenizer.pad_token()),
            None => Ok(tok),
        }
    }

    fn checked_max_len(&self, n: usize) -> Result<usize> {
        let limit = self.config.max_seq_len();
        if n > limit {
            return Err(Error::Input(format!("sequence length {n} exceeds the model's limit of {limit} tokens")));
        }
        Ok(n)
    }
}

impl ServerWeights {
    /// Load every post-embedding weight, plus an optional classifier head.
    pub fn load(dir: &Path, config: &BertConfig) -> Result<ServerWeights> {
        let path = dir.join("model.safetensors");
        let bytes = read_file(&path)?;
        let src = TensorSource::new(&bytes, &path)?;
        Self::from_source(dir, config, &src)
    }

    fn from_source(dir: &Path, config: &BertConfig, src: &TensorSource) -> Result<ServerWeights> {
        let p = src.detect_prefix()?;
        let h = config.hidden_size;
        let layers = (0..config.num_hidden_layers)
            .map(|i| load_layer(src, config, &format!("{p}encoder.layer.{i}")))
            .collect::<Result<Vec<_>>>()?;
        let relative_attention_bias = match config.arch {
            Arch::MPNet => Some(src.matrix(
                &format!("{p}encoder.relative_attention_bias.weight"),
                config.relative_attention_num_buckets,
                config.num_attention_heads,
            )?),
            Arch::Bert => None,
        };
        let pooler_name = format!("{p}pooler.dense");
        let pooler = if src.contains(&format!("{pooler_name}.weight")) { Some(src.linear(&pooler_name, h, h)?) } else { None };
        let classifier = load_classifier(dir, src, h)?;
        Ok(ServerWeights { layers, relative_attention_bias, pooler, classifier })
    }
}

fn load_layer(src: &TensorSource, c: &BertConfig, base: &str) -> Result<EncoderLayer> {
    let (h, f, eps) = (c.hidden_size, c.intermediate_size, c.layer_norm_eps);
    let (q, k, v, o, attn_ln) = match c.arch {
        Arch::Bert => (
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
            "attention.output.LayerNorm",
        ),
        Arch::MPNet => ("attention.attn.q", "attention.attn.k", "attention.attn.v", "attention.attn.o", "attention.LayerNorm"),
    };
    Ok(EncoderLayer {
        query: src.linear(&format!("{base}.{q}"), h, h)?,
        key: src.linear(&format!("{base}.{k}"), h, h)?,
        value: src.linear(&format!("{base}.{v}"), h, h)?,
        attn_out: src.linear(&format!("{base}.{o}"), h, h)?,
        attn_norm: src.layer_norm(&format!("{base}.{attn_ln}"), h, eps)?,
        ffn_in: src.linear(&format!("{base}.intermediate.dense"), h, f)?,
        ffn_out: src.linear(&format!("{base}.output.dense"), f, h)?,
        out_norm: src.layer_norm(&format!("{base}.output.LayerNorm"), h, eps)?,
    })
}

/// `head.safetensors` wins over a `classifier.*` inside `model.safetensors`; the label count comes from
/// the weight's first dimension.
fn load_classifier(dir: &Path, main: &TensorSource, hidden: usize) -> Result<Option<Linear>> {
    let head_path = dir.join(HEAD_FILE);
    if head_path.is_file() {
        let bytes = read_file(&head_path)?;
        let src = TensorSource::new(&bytes, &head_path)?;
        return classifier_from(&src, hidden).map(Some);
    }
    if main.contains("classifier.weight") {
        return classifier_from(main, hidden).map(Some);
    }
    Ok(None)
}

fn classifier_from(src: &TensorSource, hidden: usize) -> Result<Linear> {
    let shape = src.shape("classifier.weight")?;
    let labels = match shape.as_slice() {
        [labels, h] if *h == hidden && *labels >= 1 => *labels,
        _ => {
            return Err(Error::Shape { tensor: "classifier.weight".into(), expected: vec![2, hidden], got: shape })
        }
    };
    src.linear("classifier", hidden, labels)
}

impl Model {
    /// Load a checkpoint folder (reads `model.safetensors` once for both parts).
    pub fn load(dir: &Path) -> Result<Model> {
        if !dir.is_dir() {
            return Err(Error::Model(format!("model folder {} does not exist", dir.display())));
        }
        let config = BertConfig::from_dir(dir)?;
        let path = dir.join("model.safetensors");
        let bytes = read_file(&path)?;
        let src = TensorSource::new(&bytes, &path)?;
        let server = ServerWeights::from_source(dir, &config, &src)?;
        let public = PublicModel::from_source(dir, config, &src)?;
        if public.pooling == PoolingMode::Pooler && server.pooler.is_none() {
            return Err(Error::Model("pooler pooling selected but no pooler weights".into()));
        }
        Ok(public.into_model(server))
    }

    /// Keep only the first `k` encoder layers (real weights, smaller network: for quick tests).
    pub fn truncated(mut self, k: usize) -> Result<Model> {
        if k == 0 || k > self.server.layers.len() {
            return Err(Error::Config(format!("cannot keep {k} of {} layers", self.server.layers.len())));
        }
        self.server.layers.truncate(k);
        self.public.config.num_hidden_layers = k;
        Ok(self)
    }

    pub fn config(&self) -> &BertConfig {
        &self.public.config
    }

    /// See [`PublicModel::shape_fingerprint`].
    pub fn shape_fingerprint(&self) -> String {
        self.public.shape_fingerprint()
    }
}

impl PublicModel {
    fn into_model(self, server: ServerWeights) -> Model {
        Model { public: self, server }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_conversion_is_exact_on_landmarks() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn bf16_and_f32_decode() {
        let bf = 1.5f32.to_bits() >> 16;
        assert_eq!(decode_floats(Dtype::BF16, &(bf as u16).to_le_bytes()).unwrap(), vec![1.5]);
        assert_eq!(decode_floats(Dtype::F32, &(-0.25f32).to_le_bytes()).unwrap(), vec![-0.25]);
        assert!(decode_floats(Dtype::I64, &[0; 8]).is_none());
    }
}
