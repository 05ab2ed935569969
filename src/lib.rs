//! # fastlmpi — two-party private transformer inference
//!
//! A client holds a sentence, a server holds a BERT model's weights. They run a semi-honest
//! two-party protocol so that the client learns the model's output and nothing else, and the
//! server learns nothing. Linear algebra runs under BFV homomorphic encryption (crate `fhe`),
//! non-linear layers on additive secret shares with oblivious transfer, following FASTLMPI
//! (Chen et al., IEEE TIFS 2025, arXiv 2412.16537); BOLT (IEEE S&P 2024) is a profile of the
//! same engine.
//!
//! Module layering (each uses only those above it in this list):
//! `error`, `share` → `net` → `he`, `ot` → `proto` → `engine` → `bench`, `cli`.
//! `approx` (segmented polynomial fits) and `model` (config, weights, tokenizer, plaintext and
//! fixed-point reference) know no cryptography.

#![deny(unsafe_code)]

pub mod approx;
pub mod bench;
pub mod cli;
pub mod data;
pub mod engine;
pub mod error;
pub mod he;
pub mod model;
pub mod net;
pub mod ot;
pub mod proto;
pub mod share;

pub use error::{Error, Result};
