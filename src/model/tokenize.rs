//! Tokenization from a Hugging Face `tokenizer.json`, with the shipped padding and truncation switched off.
//!
//! The released MiniLM and MPNet files pad every input to 128 tokens and truncate at 128. Left on, that
//! silently changes unmasked computations; here lengths are exact and padding is explicit (`pad_to`).

use std::path::Path;

use crate::{Error, Result};

/// One tokenized sentence. All four vectors have the same length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokenized {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<u32>,
    pub tokens: Vec<String>,
}

impl Tokenized {
    /// Total length, padding included.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Number of attended (non-padding) tokens.
    pub fn num_attended(&self) -> usize {
        self.attention_mask.iter().filter(|&&m| m != 0).count()
    }

    /// Pad on the right to exactly `n` tokens with `pad_id` (mask 0, type 0). Error if already longer.
    pub fn pad_to(mut self, n: usize, pad_id: u32, pad_token: &str) -> Result<Tokenized> {
        if self.len() > n {
            return Err(Error::Input(format!("input has {} tokens, more than the padded length {n}", self.len())));
        }
        let extra = n - self.len();
        self.ids.extend(std::iter::repeat_n(pad_id, extra));
        self.type_ids.extend(std::iter::repeat_n(0, extra));
        self.attention_mask.extend(std::iter::repeat_n(0, extra));
        self.tokens.extend(std::iter::repeat_n(pad_token.to_string(), extra));
        Ok(self)
    }

    /// Internal consistency: equal lengths, a 0/1 mask and at least one attended token.
    pub fn validate(&self) -> Result<()> {
        let n = self.ids.len();
        if self.type_ids.len() != n || self.attention_mask.len() != n || self.tokens.len() != n {
            return Err(Error::Input("tokenized input has inconsistent lengths".into()));
        }
        if self.attention_mask.iter().any(|&m| m > 1) {
            return Err(Error::Input("attention mask must be 0 or 1".into()));
        }
        if self.num_attended() == 0 {
            return Err(Error::Input("input has no attended tokens".into()));
        }
        Ok(())
    }
}

/// A `tokenizers::Tokenizer` with padding and truncation disabled.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    pad_id: u32,
}

impl TextTokenizer {
    /// Load `tokenizer.json`; `pad_id` is the model's `pad_token_id`.
    pub fn from_file(path: &Path, pad_id: u32) -> Result<TextTokenizer> {
        let mut inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| Error::Model(format!("cannot load tokenizer {}: {e}", path.display())))?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| Error::Model(format!("cannot disable truncation in {}: {e}", path.display())))?;
        Ok(TextTokenizer { inner, pad_id })
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The pad token's text (for display), e.g. `[PAD]` or `<pad>`.
    pub fn pad_token(&self) -> String {
        self.inner.id_to_token(self.pad_id).unwrap_or_else(|| "[PAD]".to_string())
    }

    /// Tokenize one sentence with the model's special tokens.
    ///
    /// Errors (`Error::Input`): empty or whitespace-only text, text that yields no word tokens, and text
    /// longer than `max_len` tokens (special tokens included) unless `truncate`, which keeps the first
    /// `max_len - 1` tokens and the final special token.
    pub fn encode(&self, text: &str, max_len: usize, truncate: bool) -> Result<Tokenized> {
        if text.trim().is_empty() {
            return Err(Error::Input("input text is empty".into()));
        }
        if max_len < 2 {
            return Err(Error::Input(format!("max length {max_len} is too small (at least 2 tokens)")));
        }
        let enc = self.inner.encode(text, true).map_err(|e| Error::Input(format!("cannot tokenize input: {e}")))?;
        if enc.get_special_tokens_mask().iter().all(|&s| s != 0) {
            return Err(Error::Input("input text contains no tokens the model knows (only special tokens)".into()));
        }
        let mut tok = Tokenized {
            ids: enc.get_ids().to_vec(),
            type_ids: enc.get_type_ids().to_vec(),
            attention_mask: enc.get_attention_mask().to_vec(),
            tokens: enc.get_tokens().to_vec(),
        };
        if tok.len() > max_len {
            if !truncate {
                return Err(Error::Input(format!(
                    "input is {} tokens long, more than the maximum of {max_len} (raise --max-len or pass --truncate)",
                    tok.len()
                )));
            }
            tok = keep_head_and_last(tok, max_len);
        }
        Ok(tok)
    }

    /// As [`Self::encode`] for raw bytes, which must be UTF-8.
    pub fn encode_bytes(&self, bytes: &[u8], max_len: usize, truncate: bool) -> Result<Tokenized> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            Error::Input(format!("input is not valid UTF-8 (invalid byte at offset {})", e.valid_up_to()))
        })?;
        self.encode(text, max_len, truncate)
    }

    /// As [`Self::encode`], then pad to `pad_to` tokens when given.
    pub fn encode_padded(&self, text: &str, max_len: usize, truncate: bool, pad_to: Option<usize>) -> Result<Tokenized> {
        let tok = self.encode(text, max_len, truncate)?;
        match pad_to {
            Some(n) => tok.pad_to(n, self.pad_id, &self.pad_token()),
            None => Ok(tok),
        }
    }
}

/// Truncate to `max_len` tokens keeping the closing special token (`[SEP]` / `</s>`).
fn keep_head_and_last(tok: Tokenized, max_len: usize) -> Tokenized {
    fn cut<T: Clone>(v: &[T], max_len: usize) -> Vec<T> {
        let mut out = v[..max_len - 1].to_vec();
        out.push(v[v.len() - 1].clone());
        out
    }
    Tokenized {
        ids: cut(&tok.ids, max_len),
        type_ids: cut(&tok.type_ids, max_len),
        attention_mask: cut(&tok.attention_mask, max_len),
        tokens: cut(&tok.tokens, max_len),
    }
}
