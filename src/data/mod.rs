//! Labelled sentence data sets (UCI Sentiment Labelled Sentences, user files) and the sentiment head.
//!
//! * [`load`]: the UCI sentences fetched by `scripts/fetch-data.sh` and user files (JSONL, JSON array,
//!   CSV `label,text`), with the fixed even/odd train/test split.
//! * [`head`]: the 2 × hidden linear classifier applied to the pooled sentence vector
//!   (`logits = W·pooled + b`), stored as `head.safetensors` with Hugging Face names.
//! * [`train`]: deterministic L2-regularised logistic regression producing such a head.
//! * [`embed`]: plaintext pooled embeddings of many sentences with a progress bar.
//! * [`eval`]: per-sentence records and accuracy / agreement summaries, with a slot for the private
//!   engine ([`eval::PrivateClassify`]).
//!
//! Labels are `0 = negative`, `1 = positive` throughout.

pub mod embed;
pub mod eval;
pub mod head;
pub mod load;
pub mod sample;
pub mod train;

pub use head::{HeadMetadata, LinearHead, LABEL_NAMES};
pub use load::{DataSource, Dataset, Example, Split};
pub use train::{train_logistic_head, TrainConfig, TrainReport};

use std::path::{Path, PathBuf};

/// Where data sets live: `$FASTLMPI_DATA_DIR`, else `<repo>/data`.
pub fn data_dir() -> PathBuf {
    dir_from_env("FASTLMPI_DATA_DIR", "data")
}

/// Where `eval` writes its per-sentence records: `$FASTLMPI_RESULTS_DIR`, else `<repo>/results`.
pub fn results_dir() -> PathBuf {
    dir_from_env("FASTLMPI_RESULTS_DIR", "results")
}

fn dir_from_env(var: &str, default_child: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join(default_child),
    }
}
