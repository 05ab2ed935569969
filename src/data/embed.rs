//! Plaintext pooled embeddings of many sentences (the features the head is trained and evaluated on).
//!
//! Sentences are tokenized with the model's own tokenizer (at most [`MAX_TOKENS`] tokens, longer text
//! truncated keeping the final special token) and run through [`forward_f32`]; the pooled vector is
//! what the private engine reveals to the client before the head. Sentences are processed in parallel
//! (rayon); each is independent, so the result does not depend on the thread count.

use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use crate::model::{forward_f32, Model};
use crate::{Error, Result};

/// Token limit (special tokens included; lowered to the model's own limit when smaller); the
/// engine's default sequence length. No UCI sentence
/// exceeds 100 tokens with either tokenizer.
pub const MAX_TOKENS: usize = 128;

/// A loaded model used only for plaintext pooled embeddings.
pub struct PlainEncoder {
    model: Model,
}

impl PlainEncoder {
    pub fn load(dir: &Path) -> Result<PlainEncoder> {
        Ok(PlainEncoder { model: Model::load(dir)? })
    }

    pub fn from_model(model: Model) -> PlainEncoder {
        PlainEncoder { model }
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn hidden(&self) -> usize {
        self.model.config().hidden_size
    }

    /// The pooled vector of one sentence.
    pub fn pooled(&self, text: &str) -> Result<Vec<f32>> {
        let max_len = MAX_TOKENS.min(self.model.config().max_seq_len());
        let tok = self.model.public.encode(text, max_len, true)?;
        Ok(forward_f32(&self.model, &tok)?.pooled.to_vec())
    }

    /// Pooled vectors of many sentences, in order, advancing `progress` by one per sentence.
    /// An error names the (0-based) position of the failing sentence.
    pub fn pooled_all(&self, texts: &[&str], progress: &ProgressBar) -> Result<Vec<Vec<f32>>> {
        texts
            .par_iter()
            .enumerate()
            .map(|(i, text)| {
                let v = self.pooled(text).map_err(|e| Error::Input(format!("sentence {i} ({text:?}): {e}")));
                progress.inc(1);
                v
            })
            .collect()
    }
}

/// A progress bar on stderr with position, rate and ETA (hidden when stderr is not a terminal).
pub fn progress_bar(len: usize, message: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({per_sec}, elapsed {elapsed}, ETA {eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(500));
    bar
}
