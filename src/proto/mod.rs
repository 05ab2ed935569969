//! Two-party protocols on additive shares. Every protocol module's doc header states: paper
//! reference, functionality, message flow, valid input domain, error bound, bytes per element
//! and a semi-honest security argument. Every protocol is tested as a real two-party run
//! (`net::run_pair`) against a cleartext fixed-point reference.
//!
//! # Layout
//!
//! * [`ctx`]: the protocol context every protocol takes ([`ctx::Party`]), OT call log, costs.
//! * [`toolkit`]: the OT-based building blocks on ring and field shares — comparison, bits and
//!   AND, B2A, MUX, truncation, OT products, ring↔field conversions. Uses `ctx` only.
//! * [`linear`]: the HE products — linear layers (RFCP, BSGS), the attention products, HE
//!   share×share products (`hemul`) and polynomial evaluation under HE (`hepoly`). Uses
//!   `toolkit` for the conversions around them.
//! * [`nonlinear`]: FASTLMPI's non-linear layers — GeLU, SoftMax, LayerNorm, reciprocal and
//!   rsqrt, L2 normalisation. Uses `toolkit` and `linear`.
//! * [`bolt`]: the baseline's protocols (BOLT's GeLU, tanh and exp), beside ours, not mixed
//!   into them. Uses `toolkit` and `nonlinear`.
//!
//! # Conventions of the non-linear toolkit (`ctx` and `toolkit`)
//!
//! * Every protocol takes a [`ctx::Party`] (role, channel, OT session, local randomness).
//!   Both parties call the same function with the same public arguments and vectors of the
//!   same length; each passes its own share and receives its own share.
//! * **Arithmetic shares** over `Ring` Z_{2^ℓ}: `Vec<u64>` in canonical form `[0, 2^ℓ)`,
//!   `x = x_S + x_C mod 2^ℓ`, signed values in two's complement (`Ring::to_signed`).
//! * **Field shares** over `Field` Z_p: `Vec<u64>` in `[0, p)`, `x = x_S + x_C mod p`,
//!   signed values centred in `(-p/2, p/2]`.
//! * **Boolean shares** ([`toolkit::bits::BitShare`] = `Vec<u8>`): one byte per bit, value 0 or 1,
//!   `b = b_S XOR b_C`. They are bit-packed (8 per byte) on the wire.
//! * In every OT the **server is the first sender** unless a module says otherwise; both
//!   parties derive the same call sequence from public arguments only.
//! * Batches larger than [`ctx::CHUNK`] elements are processed in chunks of `CHUNK` elements
//!   to bound memory; rounds then scale with the number of chunks, bytes do not.

pub mod bolt;
pub mod ctx;
pub mod linear;
pub mod nonlinear;
pub mod toolkit;
