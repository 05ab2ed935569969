//! Evaluation records and summaries: plaintext predictions, and (when an engine is plugged in)
//! private predictions compared with them.
//!
//! The private engine enters only through [`PrivateClassify`]: anything that turns a sentence into a
//! [`PrivateResult`] (pooled vector and logits obtained privately). Metrics: accuracy of each path,
//! label agreement between them, the worst cosine between private and plaintext pooled vectors and
//! the largest logit difference.

use serde::Serialize;

use super::head::{predict_from_logits, LinearHead};
use super::load::Example;
use crate::Result;

/// Plaintext output for one sentence.
#[derive(Debug, Clone, PartialEq)]
pub struct PlainResult {
    pub pooled: Vec<f32>,
    pub logits: [f32; 2],
}

impl PlainResult {
    /// Apply `head` to a pooled vector.
    pub fn from_pooled(head: &LinearHead, pooled: Vec<f32>) -> Result<PlainResult> {
        let logits = head.logits(&pooled)?;
        Ok(PlainResult { pooled, logits })
    }
}

/// What a private run returns for one sentence.
#[derive(Debug, Clone, PartialEq)]
pub struct PrivateResult {
    /// The pooled vector revealed to the client (for the comparison with plaintext).
    pub pooled: Vec<f32>,
    pub logits: [f32; 2],
    /// Online wall time for this sentence (setup excluded).
    pub seconds: f64,
    /// Bytes both directions for this sentence (setup excluded).
    pub bytes: u64,
    /// Tokens of the sentence and the length it was padded to for the private run.
    pub tokens: usize,
    pub padded_to: usize,
}

/// The hook for the private engine: one call per sentence, over a connection set up once.
pub trait PrivateClassify {
    fn classify(&mut self, text: &str) -> Result<PrivateResult>;
}

impl<F: FnMut(&str) -> Result<PrivateResult>> PrivateClassify for F {
    fn classify(&mut self, text: &str) -> Result<PrivateResult> {
        self(text)
    }
}

/// One evaluated sentence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalRecord {
    pub index: usize,
    pub origin: String,
    pub text: String,
    pub label: u8,
    pub plain_label: u8,
    pub plain_probability: f32,
    pub plain_logits: [f32; 2],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private: Option<PrivateRecord>,
}

/// The private side of a record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrivateRecord {
    pub label: u8,
    pub probability: f32,
    pub logits: [f32; 2],
    /// Cosine between private and plaintext pooled vectors.
    pub pooled_cosine: f64,
    pub max_abs_pooled_error: f64,
    pub seconds: f64,
    pub bytes: u64,
    pub tokens: usize,
    pub padded_to: usize,
}

/// Build the record of one sentence.
pub fn make_record(index: usize, origin: &str, ex: &Example, plain: &PlainResult, private: Option<&PrivateResult>) -> EvalRecord {
    let p = predict_from_logits(plain.logits);
    EvalRecord {
        index,
        origin: origin.to_string(),
        text: ex.text.clone(),
        label: ex.label,
        plain_label: p.label,
        plain_probability: p.probability,
        plain_logits: plain.logits,
        private: private.map(|r| {
            let q = predict_from_logits(r.logits);
            PrivateRecord {
                label: q.label,
                probability: q.probability,
                logits: r.logits,
                pooled_cosine: cosine(&r.pooled, &plain.pooled),
                max_abs_pooled_error: max_abs_diff(&r.pooled, &plain.pooled),
                seconds: r.seconds,
                bytes: r.bytes,
                tokens: r.tokens,
                padded_to: r.padded_to,
            }
        }),
    }
}

/// Aggregates over a set of records.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalSummary {
    pub sentences: usize,
    pub plain_accuracy: f64,
    /// Per origin (UCI part or file), in order of first appearance.
    pub plain_accuracy_by_origin: Vec<OriginAccuracy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private: Option<PrivateSummary>,
}

/// Plaintext accuracy on the sentences of one origin.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OriginAccuracy {
    pub origin: String,
    pub sentences: usize,
    pub accuracy: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrivateSummary {
    pub accuracy: f64,
    /// Fraction of sentences where the private label equals the plaintext label.
    pub agreement: f64,
    pub worst_pooled_cosine: f64,
    pub max_abs_logit_error: f64,
    pub mean_seconds: f64,
    pub mean_bytes: f64,
}

/// Summarise records; private figures only when every record has a private side.
pub fn summarize(records: &[EvalRecord]) -> EvalSummary {
    let n = records.len();
    let frac = |count: usize| if n == 0 { 0.0 } else { count as f64 / n as f64 };
    let plain_correct = records.iter().filter(|r| r.plain_label == r.label).count();
    let privates: Vec<(&EvalRecord, &PrivateRecord)> =
        records.iter().filter_map(|r| r.private.as_ref().map(|p| (r, p))).collect();
    let private = (n > 0 && privates.len() == n).then(|| PrivateSummary {
        accuracy: frac(privates.iter().filter(|(r, p)| p.label == r.label).count()),
        agreement: frac(privates.iter().filter(|(r, p)| p.label == r.plain_label).count()),
        worst_pooled_cosine: privates.iter().map(|(_, p)| p.pooled_cosine).fold(f64::INFINITY, f64::min),
        max_abs_logit_error: privates
            .iter()
            .flat_map(|(r, p)| (0..2).map(move |k| f64::from((p.logits[k] - r.plain_logits[k]).abs())))
            .fold(0.0, f64::max),
        mean_seconds: privates.iter().map(|(_, p)| p.seconds).sum::<f64>() / n as f64,
        mean_bytes: privates.iter().map(|(_, p)| p.bytes as f64).sum::<f64>() / n as f64,
    });
    EvalSummary { sentences: n, plain_accuracy: frac(plain_correct), plain_accuracy_by_origin: by_origin(records), private }
}

fn by_origin(records: &[EvalRecord]) -> Vec<OriginAccuracy> {
    let mut out: Vec<(String, usize, usize)> = Vec::new();
    for r in records {
        let correct = usize::from(r.plain_label == r.label);
        match out.iter_mut().find(|(o, _, _)| *o == r.origin) {
            Some(entry) => {
                entry.1 += 1;
                entry.2 += correct;
            }
            None => out.push((r.origin.clone(), 1, correct)),
        }
    }
    out.into_iter()
        .map(|(origin, sentences, correct)| OriginAccuracy { origin, sentences, accuracy: correct as f64 / sentences as f64 })
        .collect()
}

/// Accuracy of a head on given features.
pub fn accuracy(head: &LinearHead, features: &[Vec<f32>], labels: &[u8]) -> Result<f64> {
    if features.is_empty() {
        return Ok(0.0);
    }
    let mut correct = 0usize;
    for (f, l) in features.iter().zip(labels) {
        correct += usize::from(head.predict(f)?.label == *l);
    }
    Ok(correct as f64 / features.len() as f64)
}

/// Cosine similarity in f64 (0 when either vector is zero or the lengths differ).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() {
        return 0.0;
    }
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa.sqrt() * bb.sqrt())
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    a.iter().zip(b).map(|(x, y)| f64::from((x - y).abs())).fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(label: u8) -> Example {
        Example { text: "t".into(), label }
    }

    #[test]
    fn summary_counts_accuracy_and_agreement() {
        let plain_pos = PlainResult { pooled: vec![1.0, 0.0], logits: [0.0, 1.0] };
        let plain_neg = PlainResult { pooled: vec![0.0, 1.0], logits: [1.0, 0.0] };
        let private_pos = PrivateResult { pooled: vec![1.0, 0.0], logits: [0.0, 1.0], seconds: 2.0, bytes: 10, tokens: 5, padded_to: 8 };
        let private_flip = PrivateResult { pooled: vec![1.0, 1.0], logits: [0.0, 1.5], seconds: 4.0, bytes: 30, tokens: 5, padded_to: 8 };
        let records = vec![
            make_record(0, "a", &ex(1), &plain_pos, Some(&private_pos)), // both right
            make_record(1, "a", &ex(0), &plain_neg, Some(&private_flip)), // plain right, private wrong
            make_record(2, "b", &ex(0), &plain_pos, Some(&private_pos)), // both wrong, agree
            make_record(3, "b", &ex(1), &plain_pos, Some(&private_pos)),
        ];
        let s = summarize(&records);
        assert_eq!(s.sentences, 4);
        assert!((s.plain_accuracy - 0.75).abs() < 1e-12);
        let by: Vec<(&str, usize, f64)> =
            s.plain_accuracy_by_origin.iter().map(|o| (o.origin.as_str(), o.sentences, o.accuracy)).collect();
        assert_eq!(by, vec![("a", 2, 1.0), ("b", 2, 0.5)]);
        let p = s.private.unwrap();
        assert!((p.accuracy - 0.5).abs() < 1e-12);
        assert!((p.agreement - 0.75).abs() < 1e-12);
        assert!((p.worst_pooled_cosine - 0.5f64.sqrt()).abs() < 1e-12);
        assert!((p.max_abs_logit_error - 1.5).abs() < 1e-6);
        assert!((p.mean_seconds - 2.5).abs() < 1e-12);
    }

    #[test]
    fn summary_without_private_side() {
        let plain = PlainResult { pooled: vec![1.0], logits: [2.0, -1.0] };
        let s = summarize(&[make_record(0, "f", &ex(0), &plain, None)]);
        assert_eq!(s.plain_accuracy, 1.0);
        assert!(s.private.is_none());
        assert!(summarize(&[]).private.is_none());
    }

    #[test]
    fn cosine_edge_cases() {
        assert!((cosine(&[1.0, 2.0], &[2.0, 4.0]) - 1.0).abs() < 1e-12);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
        assert_eq!(cosine(&[1.0], &[1.0, 0.0]), 0.0);
    }
}
