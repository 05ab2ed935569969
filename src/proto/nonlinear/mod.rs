//! FASTLMPI's non-linear layers on shares: GeLU (segmented polynomials under HE,
//! [`gelu`]), SoftMax ([`softmax`]), LayerNorm ([`layernorm`]), the reciprocal and rsqrt they
//! need ([`recip`]) and the L2 normalisation of pooled embeddings ([`l2norm`]). Built from the
//! toolkit and the HE products of `linear`; the baseline's versions live in `proto::bolt`.

pub mod gelu;
pub mod l2norm;
pub mod layernorm;
pub mod recip;
pub mod softmax;
