//! HE products: the linear layers Y = X·W + b (SIMD BFV over a prime field, RFCP or BSGS
//! packing, [`simd`]; or coefficient packing over the ring Z_2^ℓ, [`coeff`]), the attention products Q·Kᵀ and P·V ([`attention`]), share×share
//! products under HE ([`hemul`]) and polynomial evaluation under HE without ct×ct products
//! ([`hepoly`]). May use `he`, `ot`, `net`, `share` and the toolkit's conversions; never the
//! non-linear layers.

pub mod attention;
pub mod coeff;
pub mod hemul;
pub mod hepoly;
pub mod simd;

pub use simd::{
    client_recv, client_send, encoded_poly_bytes, linear_client, linear_server, server_recv, server_send, EncodedLinear,
    LinearPlan, LinearShape, Packing, Stack, DEFAULT_WEIGHT_CACHE_BYTES,
};
