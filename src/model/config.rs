//! `config.json` of a BERT-family checkpoint and the pooling declared by sentence-transformer files.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Encoder architecture. Both are post-LN transformer encoders with erf-GeLU FFNs; MPNet adds a shared
/// relative position bias, offsets position ids by `pad + 1` and has no token-type embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Arch {
    Bert,
    MPNet,
}

/// The model's shape and constants, validated. Field names follow Hugging Face's `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    pub arch: Arch,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    /// 0 for MPNet (no token-type embedding).
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub pad_token_id: u32,
    /// MPNet only (0 for BERT).
    pub relative_attention_num_buckets: usize,
}

/// MPNet's bucketing saturates at this distance (fixed in Hugging Face's implementation).
pub const RELATIVE_ATTENTION_MAX_DISTANCE: usize = 128;

/// `config.json` as written by Hugging Face; everything optional so that missing keys get clear errors.
#[derive(Debug, Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    intermediate_size: Option<usize>,
    max_position_embeddings: Option<usize>,
    type_vocab_size: Option<usize>,
    layer_norm_eps: Option<f64>,
    pad_token_id: Option<u32>,
    relative_attention_num_buckets: Option<usize>,
    hidden_act: Option<String>,
    position_embedding_type: Option<String>,
}

impl BertConfig {
    /// Read and validate `DIR/config.json`.
    pub fn from_dir(dir: &Path) -> Result<BertConfig> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::Model(format!("cannot read {}: {e} (is {} a model folder?)", path.display(), dir.display()))
        })?;
        Self::from_json(&text).map_err(|e| match e {
            Error::Model(m) => Error::Model(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Parse and validate the text of a `config.json`.
    pub fn from_json(text: &str) -> Result<BertConfig> {
        let raw: RawConfig =
            serde_json::from_str(text).map_err(|e| Error::Model(format!("malformed config.json: {e}")))?;
        let arch = detect_arch(&raw)?;
        if let Some(act) = raw.hidden_act.as_deref() {
            if act != "gelu" {
                return Err(Error::Model(format!("hidden_act `{act}` is not supported (only exact `gelu`)")));
            }
        }
        if let Some(kind) = raw.position_embedding_type.as_deref() {
            if kind != "absolute" {
                return Err(Error::Model(format!("position_embedding_type `{kind}` is not supported")));
            }
        }
        let need = |v: Option<usize>, key: &str| v.ok_or_else(|| Error::Model(format!("config.json lacks `{key}`")));
        let config = BertConfig {
            arch,
            vocab_size: need(raw.vocab_size, "vocab_size")?,
            hidden_size: need(raw.hidden_size, "hidden_size")?,
            num_hidden_layers: need(raw.num_hidden_layers, "num_hidden_layers")?,
            num_attention_heads: need(raw.num_attention_heads, "num_attention_heads")?,
            intermediate_size: need(raw.intermediate_size, "intermediate_size")?,
            max_position_embeddings: need(raw.max_position_embeddings, "max_position_embeddings")?,
            type_vocab_size: match arch {
                Arch::Bert => raw.type_vocab_size.unwrap_or(2),
                Arch::MPNet => 0,
            },
            layer_norm_eps: raw.layer_norm_eps.unwrap_or(match arch {
                Arch::Bert => 1e-12,
                Arch::MPNet => 1e-5,
            }),
            pad_token_id: raw.pad_token_id.unwrap_or(match arch {
                Arch::Bert => 0,
                Arch::MPNet => 1,
            }),
            relative_attention_num_buckets: match arch {
                Arch::Bert => 0,
                Arch::MPNet => raw.relative_attention_num_buckets.unwrap_or(32),
            },
        };
        config.validate()?;
        Ok(config)
    }

    /// Reject shapes the forward pass cannot run.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(Error::Model(format!("config `{key}` must be positive")));
            }
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return Err(Error::Model(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps < 1.0) {
            return Err(Error::Model(format!("layer_norm_eps {} out of range (0, 1)", self.layer_norm_eps)));
        }
        if self.pad_token_id as usize >= self.vocab_size {
            return Err(Error::Model(format!("pad_token_id {} >= vocab_size {}", self.pad_token_id, self.vocab_size)));
        }
        match self.arch {
            Arch::Bert if self.type_vocab_size == 0 => {
                Err(Error::Model("BERT config needs type_vocab_size >= 1".into()))
            }
            Arch::MPNet if self.relative_attention_num_buckets < 4 || self.relative_attention_num_buckets % 2 != 0 => {
                Err(Error::Model(format!(
                    "relative_attention_num_buckets {} must be even and >= 4",
                    self.relative_attention_num_buckets
                )))
            }
            Arch::MPNet if self.max_position_embeddings <= self.pad_token_id as usize + 1 => Err(Error::Model(
                "max_position_embeddings leaves no room after the pad offset".into(),
            )),
            _ => Ok(()),
        }
    }

    /// Size of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Longest input (special tokens included) the position table can embed.
    pub fn max_seq_len(&self) -> usize {
        match self.arch {
            Arch::Bert => self.max_position_embeddings,
            Arch::MPNet => self.max_position_embeddings - (self.pad_token_id as usize + 1),
        }
    }

    /// The fields that fix every tensor shape and constant, in a stable textual form.
    pub fn shape_descriptor(&self) -> String {
        format!(
            "arch={:?};vocab={};hidden={};layers={};heads={};ffn={};maxpos={};types={};eps={:e};pad={};buckets={}",
            self.arch,
            self.vocab_size,
            self.hidden_size,
            self.num_hidden_layers,
            self.num_attention_heads,
            self.intermediate_size,
            self.max_position_embeddings,
            self.type_vocab_size,
            self.layer_norm_eps,
            self.pad_token_id,
            self.relative_attention_num_buckets
        )
    }

    /// Short stable hash of [`Self::shape_descriptor`].
    pub fn shape_fingerprint(&self) -> String {
        short_hash(&self.shape_descriptor())
    }
}

/// First 16 hex digits of SHA-256: enough to tell shapes apart in a handshake.
pub(crate) fn short_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn detect_arch(raw: &RawConfig) -> Result<Arch> {
    match raw.model_type.as_deref() {
        Some("bert") => return Ok(Arch::Bert),
        Some("mpnet") => return Ok(Arch::MPNet),
        _ => {}
    }
    for a in &raw.architectures {
        if a.starts_with("MPNet") {
            return Ok(Arch::MPNet);
        }
        if a.starts_with("Bert") {
            return Ok(Arch::Bert);
        }
    }
    Err(Error::Model(format!(
        "unsupported model (model_type {:?}, architectures {:?}); supported: bert, mpnet",
        raw.model_type, raw.architectures
    )))
}

/// How the per-token outputs become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PoolingMode {
    /// Average over attended tokens (sentence-transformers), optionally L2-normalised.
    Mean { normalize: bool },
    /// The `[CLS]` row as is (sentence-transformers CLS pooling), optionally L2-normalised.
    Cls { normalize: bool },
    /// BERT's pooler: `tanh(W · h[CLS] + b)`.
    Pooler,
}

#[derive(Debug, Deserialize)]
struct StModule {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
}

#[derive(Debug, Deserialize)]
struct StPooling {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

impl PoolingMode {
    /// Read `modules.json` (+ the pooling module's `config.json`) when present. Without them the checkpoint
    /// is a plain Hugging Face model: the BERT pooler when its weights exist, otherwise unnormalised mean
    /// pooling (MPNet checkpoints without a pooler).
    pub fn detect(dir: &Path, has_pooler_weights: bool) -> Result<PoolingMode> {
        let modules_path = dir.join("modules.json");
        if !modules_path.is_file() {
            return Ok(if has_pooler_weights { PoolingMode::Pooler } else { PoolingMode::Mean { normalize: false } });
        }
        let text = std::fs::read_to_string(&modules_path).map_err(|e| Error::io(&modules_path, e))?;
        let modules: Vec<StModule> = serde_json::from_str(&text)
            .map_err(|e| Error::Model(format!("malformed {}: {e}", modules_path.display())))?;
        let normalize = modules.iter().any(|m| m.kind.ends_with(".Normalize"));
        let Some(pool) = modules.iter().find(|m| m.kind.ends_with(".Pooling")) else {
            return Err(Error::Model(format!("{} declares no Pooling module", modules_path.display())));
        };
        let pool_path = dir.join(&pool.path).join("config.json");
        let pooling: StPooling = match std::fs::read_to_string(&pool_path) {
            Ok(t) => serde_json::from_str(&t)
                .map_err(|e| Error::Model(format!("malformed {}: {e}", pool_path.display())))?,
            // sentence-transformers defaults to mean pooling.
            Err(_) => StPooling {
                pooling_mode_cls_token: false,
                pooling_mode_mean_tokens: true,
                pooling_mode_max_tokens: false,
                pooling_mode_mean_sqrt_len_tokens: false,
            },
        };
        let modes = [
            pooling.pooling_mode_cls_token,
            pooling.pooling_mode_mean_tokens,
            pooling.pooling_mode_max_tokens,
            pooling.pooling_mode_mean_sqrt_len_tokens,
        ];
        match modes {
            [false, true, false, false] => Ok(PoolingMode::Mean { normalize }),
            [true, false, false, false] => Ok(PoolingMode::Cls { normalize }),
            _ => Err(Error::Model(format!(
                "{}: only a single mean or CLS pooling mode is supported",
                pool_path.display()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minilm_config_parses() {
        let c = BertConfig::from_json(
            r#"{"architectures": ["BertModel"], "hidden_act": "gelu", "hidden_size": 384,
                "intermediate_size": 1536, "layer_norm_eps": 1e-12, "max_position_embeddings": 512,
                "model_type": "bert", "num_attention_heads": 12, "num_hidden_layers": 6, "pad_token_id": 0,
                "position_embedding_type": "absolute", "type_vocab_size": 2, "vocab_size": 30522}"#,
        )
        .unwrap();
        assert_eq!(c.arch, Arch::Bert);
        assert_eq!(c.head_dim(), 32);
        assert_eq!(c.max_seq_len(), 512);
    }

    #[test]
    fn mpnet_config_parses_with_defaults() {
        let c = BertConfig::from_json(
            r#"{"architectures": ["MPNetForMaskedLM"], "hidden_size": 768, "intermediate_size": 3072,
                "max_position_embeddings": 514, "model_type": "mpnet", "num_attention_heads": 12,
                "num_hidden_layers": 12, "pad_token_id": 1, "vocab_size": 30527}"#,
        )
        .unwrap();
        assert_eq!(c.arch, Arch::MPNet);
        assert_eq!(c.relative_attention_num_buckets, 32);
        assert_eq!(c.layer_norm_eps, 1e-5);
        assert_eq!(c.type_vocab_size, 0);
        assert_eq!(c.max_seq_len(), 512);
    }

    #[test]
    fn bad_configs_are_rejected() {
        let base = r#""model_type": "bert", "vocab_size": 10, "intermediate_size": 8, "max_position_embeddings": 8,
                      "num_hidden_layers": 1"#;
        let heads = BertConfig::from_json(&format!(r#"{{{base}, "hidden_size": 10, "num_attention_heads": 3}}"#));
        assert!(matches!(heads, Err(Error::Model(m)) if m.contains("multiple")));
        let missing = BertConfig::from_json(&format!(r#"{{{base}, "num_attention_heads": 2}}"#));
        assert!(matches!(missing, Err(Error::Model(m)) if m.contains("hidden_size")));
        let act = BertConfig::from_json(&format!(
            r#"{{{base}, "hidden_size": 4, "num_attention_heads": 2, "hidden_act": "relu"}}"#
        ));
        assert!(matches!(act, Err(Error::Model(m)) if m.contains("relu")));
        let arch = BertConfig::from_json(r#"{"model_type": "gpt2"}"#);
        assert!(matches!(arch, Err(Error::Model(m)) if m.contains("gpt2")));
    }

    #[test]
    fn fingerprint_is_stable_and_shape_sensitive() {
        let json = r#"{"model_type": "bert", "vocab_size": 10, "intermediate_size": 8,
                       "max_position_embeddings": 8, "num_hidden_layers": 1, "hidden_size": 4,
                       "num_attention_heads": 2}"#;
        let a = BertConfig::from_json(json).unwrap();
        let mut b = a.clone();
        assert_eq!(a.shape_fingerprint(), b.shape_fingerprint());
        assert_eq!(a.shape_fingerprint().len(), 16);
        b.num_hidden_layers = 2;
        assert_ne!(a.shape_fingerprint(), b.shape_fingerprint());
    }
}
