//! Segmented polynomial approximations of non-linear functions (no cryptography).
