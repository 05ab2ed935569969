//! Plaintext f32 forward pass, one function per block so that the private engine can mirror it.
//!
//! embeddings → N × [self-attention → add&norm → FFN → add&norm] → pooling → optional head.
//! The attention mask is honoured in the softmax (padded keys get weight 0) and in mean pooling.

use ndarray::{s, Array1, Array2, Array3, ArrayView1, ArrayView2, Axis};
use rayon::prelude::*;

use super::config::{Arch, BertConfig, PoolingMode, RELATIVE_ATTENTION_MAX_DISTANCE};
use super::tokenize::Tokenized;
use super::weights::{EncoderLayer, LayerNorm, Linear, Model, PublicModel, ServerWeights};
use crate::{Error, Result};

/// Result of a forward pass.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelOutput {
    /// `[n, hidden]`, one row per token (padding rows included; they carry no meaning).
    pub last_hidden: Array2<f32>,
    /// The sentence vector (mean-pooled + L2-normalised for sentence-transformer checkpoints).
    pub pooled: Array1<f32>,
    /// Classifier output on `pooled`, when the model has a head.
    pub logits: Option<Array1<f32>>,
}

/// Full f32 forward pass.
pub fn forward_f32(model: &Model, tok: &Tokenized) -> Result<ModelOutput> {
    let cfg = &model.public.config;
    let mut h = embed(&model.public, tok)?;
    let bias = relative_position_bias(&model.server, cfg, tok.len())?;
    for layer in &model.server.layers {
        if layer.query.w.is_empty() {
            return Err(Error::Model("the f32 dense weights of this model were released after quantisation".into()));
        }
        h = encoder_layer(layer, cfg, &h, &tok.attention_mask, bias.as_ref());
    }
    let pooled = pool(model.public.pooling, model.server.pooler.as_ref(), &h, &tok.attention_mask)?;
    let logits = model.server.classifier.as_ref().map(|c| classifier_head(c, &pooled));
    Ok(ModelOutput { last_hidden: h, pooled, logits })
}

/// Check a tokenized input against the model: lengths, id ranges, at least one attended token.
pub fn check_input(public: &PublicModel, tok: &Tokenized) -> Result<()> {
    tok.validate()?;
    let cfg = &public.config;
    if tok.len() > cfg.max_seq_len() {
        return Err(Error::Input(format!("input has {} tokens, the model allows {}", tok.len(), cfg.max_seq_len())));
    }
    if let Some(&id) = tok.ids.iter().find(|&&id| id as usize >= cfg.vocab_size) {
        return Err(Error::Input(format!("token id {id} is outside the vocabulary ({} entries)", cfg.vocab_size)));
    }
    if cfg.arch == Arch::Bert {
        if let Some(&t) = tok.type_ids.iter().find(|&&t| t as usize >= cfg.type_vocab_size) {
            return Err(Error::Input(format!("token type {t} >= type_vocab_size {}", cfg.type_vocab_size)));
        }
    }
    Ok(())
}

/// Position ids. BERT: 0, 1, 2, … MPNet (Hugging Face `create_position_ids_from_input_ids`): non-pad
/// tokens get `pad + 1, pad + 2, …` counted over non-pad tokens only; pad tokens get `pad`.
pub fn position_ids(cfg: &BertConfig, ids: &[u32]) -> Vec<usize> {
    match cfg.arch {
        Arch::Bert => (0..ids.len()).collect(),
        Arch::MPNet => {
            let pad = cfg.pad_token_id;
            let mut seen = 0usize;
            ids.iter()
                .map(|&id| {
                    if id == pad {
                        pad as usize
                    } else {
                        seen += 1;
                        pad as usize + seen
                    }
                })
                .collect()
        }
    }
}

/// Embedding block (the client's part): word + position (+ token type) embeddings, then LayerNorm.
pub fn embed(public: &PublicModel, tok: &Tokenized) -> Result<Array2<f32>> {
    Ok(layer_norm(&embedding_sum(public, tok)?, &public.embedding_norm))
}

/// Word + position (+ token type) embeddings, before the embedding LayerNorm.
pub fn embedding_sum(public: &PublicModel, tok: &Tokenized) -> Result<Array2<f32>> {
    check_input(public, tok)?;
    let cfg = &public.config;
    let positions = position_ids(cfg, &tok.ids);
    let mut x = Array2::<f32>::zeros((tok.len(), cfg.hidden_size));
    for (i, mut row) in x.axis_iter_mut(Axis(0)).enumerate() {
        row += &public.word_embeddings.row(tok.ids[i] as usize);
        row += &public.position_embeddings.row(positions[i]);
        if let Some(tt) = &public.token_type_embeddings {
            row += &tt.row(tok.type_ids[i] as usize);
        }
    }
    Ok(x)
}

/// `x · w + b` for every row of `x`.
pub fn linear(x: &Array2<f32>, lin: &Linear) -> Array2<f32> {
    x.dot(&lin.w) + &lin.b
}

/// Row-wise LayerNorm (statistics in f64 for stability).
pub fn layer_norm(x: &Array2<f32>, ln: &LayerNorm) -> Array2<f32> {
    let mut out = x.clone();
    for mut row in out.axis_iter_mut(Axis(0)) {
        let normed = layer_norm_row(row.view(), ln);
        row.assign(&normed);
    }
    out
}

/// LayerNorm of one row.
pub fn layer_norm_row(row: ArrayView1<f32>, ln: &LayerNorm) -> Array1<f32> {
    let n = row.len() as f64;
    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let inv = 1.0 / (var + ln.eps).sqrt();
    Array1::from_iter(
        row.iter()
            .zip(ln.gamma.iter().zip(ln.beta.iter()))
            .map(|(&v, (&g, &b))| ((v as f64 - mean) * inv * g as f64 + b as f64) as f32),
    )
}

/// One encoder layer (post-LN): `h1 = LN(x + Attn(x))`, `out = LN(h1 + FFN(h1))`.
pub fn encoder_layer(
    layer: &EncoderLayer,
    cfg: &BertConfig,
    x: &Array2<f32>,
    mask: &[u32],
    bias: Option<&Array3<f32>>,
) -> Array2<f32> {
    let attn = self_attention(layer, cfg, x, mask, bias);
    let h1 = add_norm(x, &attn, &layer.attn_norm);
    let f = ffn(layer, &h1);
    add_norm(&h1, &f, &layer.out_norm)
}

/// Multi-head self-attention including the output projection (before the residual).
pub fn self_attention(
    layer: &EncoderLayer,
    cfg: &BertConfig,
    x: &Array2<f32>,
    mask: &[u32],
    bias: Option<&Array3<f32>>,
) -> Array2<f32> {
    let q = linear(x, &layer.query);
    let k = linear(x, &layer.key);
    let v = linear(x, &layer.value);
    let d = cfg.head_dim();
    let scale = 1.0 / (d as f32).sqrt();
    let heads: Vec<Array2<f32>> = (0..cfg.num_attention_heads)
        .into_par_iter()
        .map(|head| {
            let cols = s![.., head * d..(head + 1) * d];
            let mut scores = q.slice(cols).dot(&k.slice(cols).t()) * scale;
            if let Some(b) = bias {
                scores += &b.index_axis(Axis(0), head);
            }
            let probs = masked_softmax(&scores, mask);
            probs.dot(&v.slice(cols))
        })
        .collect();
    let mut context = Array2::<f32>::zeros(x.raw_dim());
    for (head, ctx) in heads.iter().enumerate() {
        context.slice_mut(s![.., head * d..(head + 1) * d]).assign(ctx);
    }
    linear(&context, &layer.attn_out)
}

/// Row-wise softmax over the keys whose mask is 1; masked keys get probability exactly 0.
pub fn masked_softmax(scores: &Array2<f32>, mask: &[u32]) -> Array2<f32> {
    let mut out = Array2::<f32>::zeros(scores.raw_dim());
    for (row, mut dst) in scores.axis_iter(Axis(0)).zip(out.axis_iter_mut(Axis(0))) {
        let max = row.iter().zip(mask).filter(|(_, &m)| m != 0).map(|(&v, _)| v).fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f64;
        for ((&v, &m), o) in row.iter().zip(mask).zip(dst.iter_mut()) {
            if m != 0 {
                let e = ((v - max) as f64).exp();
                *o = e as f32;
                sum += e;
            }
        }
        dst.mapv_inplace(|e| (e as f64 / sum) as f32);
    }
    out
}

/// Residual add then LayerNorm.
pub fn add_norm(x: &Array2<f32>, y: &Array2<f32>, ln: &LayerNorm) -> Array2<f32> {
    layer_norm(&(x + y), ln)
}

/// Feed-forward block: `GeLU(x · W1 + b1) · W2 + b2`.
pub fn ffn(layer: &EncoderLayer, x: &Array2<f32>) -> Array2<f32> {
    let mut up = linear(x, &layer.ffn_in);
    gelu_inplace(&mut up);
    linear(&up, &layer.ffn_out)
}

/// Exact GeLU on every element, rows in parallel.
pub fn gelu_inplace(x: &mut Array2<f32>) {
    let cols = x.ncols().max(1);
    match x.as_slice_mut() {
        Some(flat) => {
            flat.par_chunks_mut(cols).for_each(|row| row.iter_mut().for_each(|v| *v = gelu(*v as f64) as f32))
        }
        None => x.mapv_inplace(|v| gelu(v as f64) as f32),
    }
}

/// Exact GeLU: `x · Φ(x) = x/2 · (1 + erf(x/√2))`.
pub fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + erf(x * std::f64::consts::FRAC_1_SQRT_2))
}

/// Error function, absolute error below 1e-14: Maclaurin series for |x| < 3, a continued fraction for
/// erfc beyond.
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    let a = x.abs();
    let r = if a < 3.0 { erf_series(a) } else { 1.0 - erfc_continued_fraction(a) };
    r.copysign(x)
}

/// `erf(x) = 2/√π Σ (-1)^n x^(2n+1) / (n! (2n+1))`; the terms peak near 170 at x = 3, so f64 keeps
/// ~1e-14 absolute accuracy.
fn erf_series(x: f64) -> f64 {
    let x2 = x * x;
    let mut term = x; // (-1)^n x^(2n+1) / n!
    let mut sum = x;
    for n in 1..200 {
        term *= -x2 / n as f64;
        let add = term / (2 * n + 1) as f64;
        sum += add;
        if add.abs() < 1e-17 {
            break;
        }
    }
    sum * std::f64::consts::FRAC_2_SQRT_PI
}

/// `erfc(x) = e^{-x²}/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …))))`, evaluated backwards; for x ≥ 3
/// sixty terms reach machine precision.
fn erfc_continued_fraction(x: f64) -> f64 {
    let mut tail = 0.0;
    for k in (1..=60).rev() {
        tail = (k as f64 / 2.0) / (x + tail);
    }
    (-x * x).exp() / (std::f64::consts::PI.sqrt() * (x + tail))
}

/// Hugging Face `MPNetEncoder.relative_position_bucket` (T5-style, bidirectional) for
/// `relative = key_position - query_position`.
///
/// Half the buckets per direction; the first half of those are exact distances, the rest logarithmic
/// up to `max_distance`. The logarithm's argument is `2 log2`-exact at the bucket edges (n = 16, 32, 64
/// for 32 buckets), where float rounding could land either side; a 1e-9 nudge makes those edges exact.
pub fn relative_position_bucket(relative: i64, num_buckets: usize, max_distance: usize) -> usize {
    let half = (num_buckets / 2) as i64;
    let n = -relative;
    let mut bucket = if n < 0 { half } else { 0 };
    let n = n.abs();
    let max_exact = half / 2;
    if n < max_exact {
        bucket += n;
    } else {
        let ratio = (n as f64 / max_exact as f64).ln() / (max_distance as f64 / max_exact as f64).ln();
        let large = max_exact + (ratio * (half - max_exact) as f64 + 1e-9).floor() as i64;
        bucket += large.min(half - 1);
    }
    bucket as usize
}

/// MPNet's additive attention bias `[heads, n, n]`: `bias[h, i, j] = table[bucket(j - i), h]`. `None` for
/// BERT.
pub fn relative_position_bias(server: &ServerWeights, cfg: &BertConfig, n: usize) -> Result<Option<Array3<f32>>> {
    let Some(table) = &server.relative_attention_bias else {
        return match cfg.arch {
            Arch::MPNet => Err(Error::Model("MPNet model without relative_attention_bias".into())),
            Arch::Bert => Ok(None),
        };
    };
    let heads = cfg.num_attention_heads;
    let expected = [cfg.relative_attention_num_buckets, heads];
    if table.shape() != expected {
        return Err(Error::Shape {
            tensor: "encoder.relative_attention_bias.weight".into(),
            expected: expected.to_vec(),
            got: table.shape().to_vec(),
        });
    }
    let mut bias = Array3::<f32>::zeros((heads, n, n));
    for i in 0..n {
        for j in 0..n {
            let b = relative_position_bucket(
                j as i64 - i as i64,
                cfg.relative_attention_num_buckets,
                RELATIVE_ATTENTION_MAX_DISTANCE,
            );
            for h in 0..heads {
                bias[[h, i, j]] = table[[b, h]];
            }
        }
    }
    Ok(Some(bias))
}

/// Sentence vector from the last hidden state.
pub fn pool(mode: PoolingMode, pooler: Option<&Linear>, hidden: &Array2<f32>, mask: &[u32]) -> Result<Array1<f32>> {
    match mode {
        PoolingMode::Mean { normalize } => {
            let v = mean_pool(hidden.view(), mask)?;
            Ok(if normalize { l2_normalize(&v) } else { v })
        }
        PoolingMode::Cls { normalize } => {
            let v = hidden.row(0).to_owned();
            Ok(if normalize { l2_normalize(&v) } else { v })
        }
        PoolingMode::Pooler => {
            let lin =
                pooler.ok_or_else(|| Error::Model("pooler pooling requested but the model has no pooler".into()))?;
            Ok(bert_pooler(lin, hidden.row(0)))
        }
    }
}

/// Average of the rows whose mask is 1.
pub fn mean_pool(hidden: ArrayView2<f32>, mask: &[u32]) -> Result<Array1<f32>> {
    let count = mask.iter().filter(|&&m| m != 0).count();
    if count == 0 {
        return Err(Error::Input("mean pooling over an input with no attended tokens".into()));
    }
    let mut sum = Array1::<f32>::zeros(hidden.ncols());
    for (row, &m) in hidden.axis_iter(Axis(0)).zip(mask) {
        if m != 0 {
            sum += &row;
        }
    }
    Ok(sum / count as f32)
}

/// `v / max(‖v‖, 1e-12)` as sentence-transformers' Normalize does.
pub fn l2_normalize(v: &Array1<f32>) -> Array1<f32> {
    let norm = v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt().max(1e-12);
    v.mapv(|x| (x as f64 / norm) as f32)
}

/// BERT pooler: `tanh(W · h[CLS] + b)`.
pub fn bert_pooler(lin: &Linear, cls: ArrayView1<f32>) -> Array1<f32> {
    (cls.dot(&lin.w) + &lin.b).mapv(f32::tanh)
}

/// Classifier head on the pooled vector.
pub fn classifier_head(lin: &Linear, pooled: &Array1<f32>) -> Array1<f32> {
    pooled.dot(&lin.w) + &lin.b
}

/// Cosine similarity (0 when either vector is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let na: f64 = a.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_reference_values() {
        let cases = [
            (0.0, 0.0),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (2.9, 0.999_958_902_121_900_2),
            (3.0, 0.999_977_909_503_001_4),
            (-1.5, -0.966_105_146_475_310_7),
        ];
        for (x, want) in cases {
            assert!((erf(x) - want).abs() < 1e-13, "erf({x}) = {} want {want}", erf(x));
        }
        assert!((erfc_continued_fraction(5.0) / 1.537_459_794_428_034_8e-12 - 1.0).abs() < 1e-12);
        assert!((erfc_continued_fraction(3.0) / 2.209_049_699_858_544e-5 - 1.0).abs() < 1e-12);
        assert_eq!(erf(40.0), 1.0);
    }

    #[test]
    fn gelu_landmarks() {
        assert_eq!(gelu(0.0), 0.0);
        assert!((gelu(1.0) - 0.841_344_746_068_542_9).abs() < 1e-13);
        assert!((gelu(-1.0) + 0.158_655_253_931_457_05).abs() < 1e-13);
        assert!((gelu(-10.0)).abs() < 1e-20);
    }

    #[test]
    fn buckets_match_hugging_face_formula() {
        // Values of MPNetEncoder.relative_position_bucket(num_buckets=32, max_distance=128).
        let cases = [
            (0, 0),
            (-1, 1),
            (-7, 7),
            (-8, 8),
            (-15, 9),
            (-16, 10),
            (-31, 11),
            (-32, 12),
            (-64, 14),
            (-127, 15),
            (-500, 15),
            (1, 17),
            (7, 23),
            (8, 24),
            (16, 26),
            (64, 30),
            (1000, 31),
        ];
        for (rel, want) in cases {
            assert_eq!(relative_position_bucket(rel, 32, 128), want, "relative {rel}");
        }
    }

    #[test]
    fn masked_softmax_ignores_padding() {
        let scores = Array2::from_shape_vec((1, 3), vec![1.0f32, 2.0, 100.0]).unwrap();
        let p = masked_softmax(&scores, &[1, 1, 0]);
        assert_eq!(p[[0, 2]], 0.0);
        let e = (1.0f64).exp();
        assert!((p[[0, 1]] as f64 - e / (1.0 + e)).abs() < 1e-6);
    }

    #[test]
    fn mpnet_positions_skip_padding() {
        let cfg = BertConfig::from_json(
            r#"{"model_type": "mpnet", "vocab_size": 10, "hidden_size": 4, "num_attention_heads": 2,
                "num_hidden_layers": 1, "intermediate_size": 8, "max_position_embeddings": 20, "pad_token_id": 1}"#,
        )
        .unwrap();
        assert_eq!(position_ids(&cfg, &[0, 5, 2, 1, 1]), vec![2, 3, 4, 1, 1]);
    }
}
