//! Value ranges of a real checkpoint's activations, measured with the f32 forward pass: the
//! inputs the private protocols must accept (LayerNorm variances for rsqrt, SoftMax scores and
//! row sums for exp and the reciprocal, GeLU inputs, LayerNorm outputs, pooled norms). No
//! cryptography: the caller compares the ranges with the protocols' documented domains.

use ndarray::{s, Array2, Array3, Axis};
use serde::{Deserialize, Serialize};

use super::config::PoolingMode;
use super::forward::{embed, embedding_sum, gelu_inplace, layer_norm, linear, masked_softmax, mean_pool, relative_position_bias};
use super::tokenize::Tokenized;
use super::weights::{EncoderLayer, LayerNorm, Model};

use crate::Result;

/// The sentences used to probe ranges when no data set is given (varied length and style).
pub const PROBE_SENTENCES: [&str; 20] = [
    "The new movie is awesome",
    "A man is eating food.",
    "I would not recommend this phone to anyone, the battery died after two days.",
    "What time does the museum open on Sundays?",
    "Quantum computers exploit superposition and entanglement to solve certain problems faster.",
    "She sells sea shells by the sea shore.",
    "The service was slow but the pasta made up for it!",
    "Don't forget to water the plants while I'm away.",
    "In 1969, Apollo 11 landed on the Moon.",
    "Worst. Film. Ever.",
    "The committee postponed its decision until further evidence could be gathered and reviewed.",
    "Can you recommend a good book about the history of mathematics?",
    "It's raining cats and dogs outside, so bring an umbrella.",
    "The stock market fell sharply after the central bank raised interest rates by half a point.",
    "Honestly, the sequel was better than the original.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "My grandmother's recipe calls for three eggs, a cup of sugar and a pinch of salt.",
    "Error 404: the page you requested could not be found.",
    "Yes.",
    "Although the hotel looked nothing like the pictures, the staff were friendly and the breakfast was excellent.",
];

/// Minimum and maximum of a stream of values, and how many were seen.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub min: f64,
    pub max: f64,
    pub count: u64,
}

impl Default for Span {
    fn default() -> Self {
        Span { min: f64::INFINITY, max: f64::NEG_INFINITY, count: 0 }
    }
}

impl Span {
    pub fn add(&mut self, v: f64) {
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.count += 1;
    }
    fn add_abs_max(&mut self, vals: impl Iterator<Item = f32>) {
        for v in vals {
            self.add((v as f64).abs());
        }
    }
}

/// Everything measured over a set of sentences.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ActivationRanges {
    pub sentences: usize,
    /// Row variance σ² at the input of every encoder LayerNorm (the private ones).
    pub layernorm_variance: Span,
    /// The same for the embedding LayerNorm (computed by the client in the clear).
    pub embedding_layernorm_variance: Span,
    /// |LayerNorm output| (γ(x−μ)/σ + β) of the encoder LayerNorms.
    pub layernorm_output_abs: Span,
    /// |attention score| after scaling and the relative bias (SoftMax input).
    pub score_abs: Span,
    /// Σ_j e^(s_j − max s) per SoftMax row (the reciprocal's input), in [1, n].
    pub softmax_row_sum: Span,
    /// |FFN up-projection output| (GeLU input).
    pub gelu_input_abs: Span,
    /// |any hidden activation| (residual sums, projections, FFN outputs).
    pub activation_abs: Span,
    /// Norm of the mean-pooled vector before L2 normalisation.
    pub pooled_norm: Span,
}

fn row_variances(x: &Array2<f32>) -> impl Iterator<Item = f64> + '_ {
    x.axis_iter(Axis(0)).map(|row| {
        let n = row.len() as f64;
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
        row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n
    })
}

impl ActivationRanges {
    fn norm(&mut self, x: &Array2<f32>, ln: &LayerNorm) -> Array2<f32> {
        for v in row_variances(x) {
            self.layernorm_variance.add(v);
        }
        let out = layer_norm(x, ln);
        self.layernorm_output_abs.add_abs_max(out.iter().copied());
        out
    }

    fn attention(&mut self, layer: &EncoderLayer, model: &Model, x: &Array2<f32>, mask: &[u32], bias: Option<&Array3<f32>>) -> Array2<f32> {
        let cfg = &model.public.config;
        let (q, k, v) = (linear(x, &layer.query), linear(x, &layer.key), linear(x, &layer.value));
        for m in [&q, &k, &v] {
            self.activation_abs.add_abs_max(m.iter().copied());
        }
        let d = cfg.head_dim();
        let scale = 1.0 / (d as f32).sqrt();
        let mut context = Array2::<f32>::zeros(x.raw_dim());
        for head in 0..cfg.num_attention_heads {
            let cols = s![.., head * d..(head + 1) * d];
            let mut scores = q.slice(cols).dot(&k.slice(cols).t()) * scale;
            if let Some(b) = bias {
                scores += &b.index_axis(Axis(0), head);
            }
            for row in scores.axis_iter(Axis(0)) {
                let live: Vec<f32> = row.iter().zip(mask).filter(|(_, &m)| m != 0).map(|(&s, _)| s).collect();
                let max = live.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                self.softmax_row_sum.add(live.iter().map(|&s| ((s - max) as f64).exp()).sum());
                self.score_abs.add_abs_max(live.iter().copied());
            }
            let probs = masked_softmax(&scores, mask);
            context.slice_mut(cols).assign(&probs.dot(&v.slice(cols)));
        }
        linear(&context, &layer.attn_out)
    }

    /// Runs the model on one tokenised sentence and folds its values in.
    pub fn observe(&mut self, model: &Model, tok: &Tokenized) -> Result<()> {
        let cfg = &model.public.config;
        let raw = embedding_sum(&model.public, tok)?;
        for v in row_variances(&raw) {
            self.embedding_layernorm_variance.add(v);
        }
        let mut h = embed(&model.public, tok)?;
        let bias = relative_position_bias(&model.server, cfg, tok.len())?;
        for layer in &model.server.layers {
            let a = self.attention(layer, model, &h, &tok.attention_mask, bias.as_ref());
            let sum = &h + &a;
            self.activation_abs.add_abs_max(sum.iter().copied());
            let h1 = self.norm(&sum, &layer.attn_norm);
            let mut up = linear(&h1, &layer.ffn_in);
            self.gelu_input_abs.add_abs_max(up.iter().copied());
            gelu_inplace(&mut up);
            let f = linear(&up, &layer.ffn_out);
            let sum = &h1 + &f;
            self.activation_abs.add_abs_max(sum.iter().copied());
            h = self.norm(&sum, &layer.out_norm);
        }
        if let PoolingMode::Mean { .. } = model.public.pooling {
            let m = mean_pool(h.view(), &tok.attention_mask)?;
            self.pooled_norm.add(m.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt());
        }
        self.sentences += 1;
        Ok(())
    }
}

/// Ranges over `texts` (tokenised with truncation at `max_len`).
pub fn measure(model: &Model, texts: &[&str], max_len: usize) -> Result<ActivationRanges> {
    let mut r = ActivationRanges::default();
    for t in texts {
        let tok = model.public.tokenizer.encode(t, max_len, true)?;
        r.observe(model, &tok)?;
    }
    Ok(r)
}
