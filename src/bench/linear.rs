//! Linear-layer micro-benchmark table (filled below).
