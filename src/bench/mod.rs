//! Benchmarks and reports: per-layer / per-operator records, JSON and SVG output.

pub mod toolkit;
