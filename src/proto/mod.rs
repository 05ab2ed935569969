//! Two-party protocols on additive shares. Every protocol module's doc header states: paper
//! reference, functionality, message flow, valid input domain, error bound, bytes per element
//! and a semi-honest security argument. Every protocol is tested as a real two-party run
//! (`net::run_pair`) against a cleartext fixed-point reference.
//!
//! # Conventions of the non-linear toolkit (`ctx`, `bits`, `cmp`, `b2a`, `mux`, `trunc`,
//! `convert`, `mul`)
//!
//! * Every protocol takes a [`ctx::Party`] (role, channel, OT session, local randomness).
//!   Both parties call the same function with the same public arguments and vectors of the
//!   same length; each passes its own share and receives its own share.
//! * **Arithmetic shares** over `Ring` Z_{2^ℓ}: `Vec<u64>` in canonical form `[0, 2^ℓ)`,
//!   `x = x_S + x_C mod 2^ℓ`, signed values in two's complement (`Ring::to_signed`).
//! * **Field shares** over `Field` Z_p: `Vec<u64>` in `[0, p)`, `x = x_S + x_C mod p`,
//!   signed values centred in `(-p/2, p/2]`.
//! * **Boolean shares** ([`bits::BitShare`] = `Vec<u8>`): one byte per bit, value 0 or 1,
//!   `b = b_S XOR b_C`. They are bit-packed (8 per byte) on the wire.
//! * In every OT the **server is the first sender** unless a module says otherwise; both
//!   parties derive the same call sequence from public arguments only.
//! * Batches larger than [`ctx::CHUNK`] elements are processed in chunks of `CHUNK` elements
//!   to bound memory; rounds then scale with the number of chunks, bytes do not.

pub mod attention;
pub mod b2a;
pub mod bits;
pub mod cmp;
pub mod convert;
pub mod ctx;
pub mod linear;
pub mod mul;
pub mod mux;
pub mod trunc;
pub mod recip;
pub mod softmax;
pub mod layernorm;
