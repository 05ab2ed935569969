//! Benchmarks and reports: per-layer / per-operator records, JSON and SVG output.

pub mod linear;
// pending-merge pub mod ot;
pub mod report;
// pending-merge pub mod toolkit;
