//! The sentiment head: `logits = W·pooled + b` with `W` of shape `[2, hidden]`, stored as
//! `head.safetensors` (F32 tensors `classifier.weight` `[2, hidden]` and `classifier.bias` `[2]`,
//! the Hugging Face `…ForSequenceClassification` names) plus a JSON sidecar `head.json` describing
//! how it was trained. Row 0 scores `negative`, row 1 `positive`.
//!
//! The head is exactly this affine map: no standardisation or other preprocessing, so the private
//! engine can apply it as one more linear layer on the pooled vector.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Tensor names (Hugging Face classifier convention).
pub const WEIGHT_NAME: &str = "classifier.weight";
pub const BIAS_NAME: &str = "classifier.bias";
/// File names inside a model folder.
pub const HEAD_FILE: &str = "head.safetensors";
pub const METADATA_FILE: &str = "head.json";
/// Class names by label.
pub const LABEL_NAMES: [&str; 2] = ["negative", "positive"];

/// A 2-class linear head.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearHead {
    hidden: usize,
    /// Row-major `[2, hidden]`.
    weight: Vec<f32>,
    bias: [f32; 2],
}

/// A label with its softmax probability.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Prediction {
    pub label: u8,
    pub probability: f32,
}

impl Prediction {
    pub fn name(&self) -> &'static str {
        LABEL_NAMES[usize::from(self.label.min(1))]
    }
}

impl LinearHead {
    /// `weight` row-major `[2, hidden]`; all values finite.
    pub fn new(hidden: usize, weight: Vec<f32>, bias: [f32; 2]) -> Result<LinearHead> {
        if hidden == 0 || weight.len() != 2 * hidden {
            return Err(Error::Shape { tensor: WEIGHT_NAME.into(), expected: vec![2, hidden], got: vec![weight.len()] });
        }
        if weight.iter().chain(bias.iter()).any(|v| !v.is_finite()) {
            return Err(Error::Model("classifier head has non-finite values".into()));
        }
        Ok(LinearHead { hidden, weight, bias })
    }

    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Row-major `[2, hidden]`.
    pub fn weight(&self) -> &[f32] {
        &self.weight
    }

    pub fn bias(&self) -> [f32; 2] {
        self.bias
    }

    /// `W·pooled + b` (accumulated in f64).
    pub fn logits(&self, pooled: &[f32]) -> Result<[f32; 2]> {
        if pooled.len() != self.hidden {
            return Err(Error::Shape { tensor: "pooled".into(), expected: vec![self.hidden], got: vec![pooled.len()] });
        }
        let row = |r: usize| {
            let w = &self.weight[r * self.hidden..(r + 1) * self.hidden];
            let dot: f64 = w.iter().zip(pooled).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
            (dot + f64::from(self.bias[r])) as f32
        };
        Ok([row(0), row(1)])
    }

    pub fn predict(&self, pooled: &[f32]) -> Result<Prediction> {
        Ok(predict_from_logits(self.logits(pooled)?))
    }

    /// The safetensors file contents.
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let w_bytes = f32_bytes(&self.weight);
        let b_bytes = f32_bytes(&self.bias);
        let w = TensorView::new(Dtype::F32, vec![2, self.hidden], &w_bytes).map_err(st_err)?;
        let b = TensorView::new(Dtype::F32, vec![2], &b_bytes).map_err(st_err)?;
        let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
        safetensors::serialize([(WEIGHT_NAME, w), (BIAS_NAME, b)], Some(meta)).map_err(st_err)
    }

    /// Parse a safetensors file holding `classifier.weight` `[2, hidden]` and `classifier.bias` `[2]` (F32).
    pub fn from_safetensors(bytes: &[u8], what: &str) -> Result<LinearHead> {
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| Error::Model(format!("{what} is not a valid safetensors file: {e}")))?;
        let weight = st
            .tensor(WEIGHT_NAME)
            .map_err(|_| Error::Model(format!("tensor `{WEIGHT_NAME}` not found in {what}")))?;
        let bias = st
            .tensor(BIAS_NAME)
            .map_err(|_| Error::Model(format!("tensor `{BIAS_NAME}` not found in {what}")))?;
        let shape = weight.shape().to_vec();
        if shape.len() != 2 || shape[0] != 2 || shape[1] == 0 {
            return Err(Error::Shape { tensor: WEIGHT_NAME.into(), expected: vec![2, shape.get(1).copied().unwrap_or(0)], got: shape });
        }
        if bias.shape() != [2] {
            return Err(Error::Shape { tensor: BIAS_NAME.into(), expected: vec![2], got: bias.shape().to_vec() });
        }
        let w = read_f32(&weight, WEIGHT_NAME)?;
        let b = read_f32(&bias, BIAS_NAME)?;
        LinearHead::new(shape[1], w, [b[0], b[1]])
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomically(path, &self.to_safetensors()?)
    }

    pub fn load(path: &Path) -> Result<LinearHead> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        LinearHead::from_safetensors(&bytes, &path.display().to_string())
    }
}

/// The arg-max label and its softmax probability (ties go to `negative`).
pub fn predict_from_logits(logits: [f32; 2]) -> Prediction {
    let p = softmax2(logits);
    let label = u8::from(logits[1] > logits[0]);
    Prediction { label, probability: p[usize::from(label)] }
}

/// Numerically stable two-class softmax.
pub fn softmax2(logits: [f32; 2]) -> [f32; 2] {
    let m = logits[0].max(logits[1]);
    let e0 = f64::from(logits[0] - m).exp();
    let e1 = f64::from(logits[1] - m).exp();
    let s = e0 + e1;
    [(e0 / s) as f32, (e1 / s) as f32]
}

/// Training record written next to the head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadMetadata {
    pub model: String,
    pub hidden: usize,
    pub data: String,
    /// How the training sentences were chosen.
    pub split: String,
    pub train_sentences: usize,
    pub test_sentences: usize,
    pub train_accuracy: f64,
    pub test_accuracy: f64,
    pub seed: u64,
    pub l2: f64,
    pub iterations: usize,
    pub max_iterations: usize,
    pub converged: bool,
    pub final_loss: f64,
    pub method: String,
    pub created_unix: u64,
}

impl HeadMetadata {
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Model(format!("cannot serialise head metadata: {e}")))?;
        text.push('\n');
        write_atomically(path, text.as_bytes())
    }

    pub fn load(path: &Path) -> Result<HeadMetadata> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::Model(format!("{} is not valid head metadata: {e}", path.display())))
    }
}

/// `DIR/head.safetensors` and `DIR/head.json`.
pub fn head_paths(model_dir: &Path) -> (PathBuf, PathBuf) {
    (model_dir.join(HEAD_FILE), model_dir.join(METADATA_FILE))
}

/// Write to `path.tmp` then rename, so a reader never sees a half-written head.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn read_f32(view: &TensorView<'_>, name: &str) -> Result<Vec<f32>> {
    if view.dtype() != Dtype::F32 {
        return Err(Error::Model(format!("tensor `{name}` has dtype {:?}, expected F32", view.dtype())));
    }
    Ok(view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

fn st_err(e: safetensors::SafeTensorError) -> Error {
    Error::Model(format!("safetensors: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logits_are_affine() {
        let head = LinearHead::new(2, vec![1.0, 2.0, -1.0, 0.5], [0.25, -0.5]).unwrap();
        assert_eq!(head.logits(&[3.0, 4.0]).unwrap(), [11.25, -1.5]);
        assert!(matches!(head.logits(&[1.0]), Err(Error::Shape { .. })));
    }

    #[test]
    fn prediction_picks_larger_logit() {
        let p = predict_from_logits([0.0, (9.0f32).ln()]);
        assert_eq!(p.label, 1);
        assert!((p.probability - 0.9).abs() < 1e-6);
        assert_eq!(predict_from_logits([1.0, 1.0]).label, 0);
        let big = softmax2([1000.0, -1000.0]);
        assert_eq!(big, [1.0, 0.0]);
    }

    #[test]
    fn rejects_bad_shapes_and_values() {
        assert!(LinearHead::new(3, vec![0.0; 5], [0.0; 2]).is_err());
        assert!(LinearHead::new(1, vec![f32::NAN, 0.0], [0.0; 2]).is_err());
        assert!(LinearHead::from_safetensors(b"junk", "x").is_err());
    }
}
