//! Benchmarks and reports: per-layer / per-operator records, JSON and SVG output.

pub mod compare;
pub mod linear;
pub mod ot;
pub mod plot;
pub mod provenance;
pub mod readme;
pub mod scale;
pub use crate::engine::report;
pub mod toolkit;
