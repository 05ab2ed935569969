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
pub mod bolt;
pub mod bits;
pub mod cmp;
pub mod convert;
pub mod ctx;
pub mod gelu;
pub mod hemul;
pub mod hepoly;
pub mod l2norm;
pub mod layernorm;
pub mod linear;
pub mod mul;
pub mod mux;
pub mod recip;
pub mod softmax;
pub mod trunc;

/// Fast composition test of the toolkit with the ideal OT (the per-protocol tests with the
/// real OT session are in `tests/toolkit.rs`).
#[cfg(test)]
mod composition_tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    use super::ctx::Party;
    use super::trunc::TruncMode;
    use super::{b2a, cmp, convert, mux};
    use crate::net::run_pair;
    use crate::ot::ideal::IdealOt;
    use crate::share::{Field, Ring, Role};

    /// HE output at scale 2s (field shares) → ring at scale s → ReLU by segment indicator and
    /// multiplexer → back to field shares: equals the cleartext fixed-point ReLU of ⌊x/2^s⌋.
    #[test]
    fn field_to_ring_relu_and_back() {
        let field = Field::new(1125899906842597).unwrap();
        let ring = Ring::new(37).unwrap();
        let s = 12;
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let xs: Vec<i64> = (-300i64..300).map(|i| i * 40_000_003 % (1i64 << 40)).chain([0, -1, 1, 4095, 4096, -4096]).collect();
        let enc: Vec<u64> = xs.iter().map(|&v| field.from_signed(v)).collect();
        let (a0, a1) = field.share_vec(&enc, &mut rng);
        let pipeline = |p: &mut Party, a: &[u64]| -> crate::Result<Vec<u64>> {
            let x = convert::field_to_ring_trunc(p, field, ring, a, 42, s, TruncMode::Faithful)?;
            let seg = cmp::segment_indicators(p, ring, &x, &[0], ring.bits(), 0)?;
            let relu = mux::mux(p, ring, &seg[1], &x)?;
            let positive = b2a::b2a_ring(p, ring, &seg[1])?;
            let sum: Vec<u64> = relu.iter().zip(&positive).map(|(&r, &b)| ring.add(r, b)).collect();
            convert::ring_to_field(p, ring, field, &sum)
        };
        let out = run_pair(
            |ch| {
                let mut ot = IdealOt::new();
                pipeline(&mut Party::new(Role::Server, ch, &mut ot), &a0)
            },
            |ch| {
                let mut ot = IdealOt::new();
                pipeline(&mut Party::new(Role::Client, ch, &mut ot), &a1)
            },
        )
        .unwrap();
        let got = field.reconstruct(&out.server, &out.client);
        for (i, &x) in xs.iter().enumerate() {
            let t = x >> s;
            let want = if t >= 0 { t + 1 } else { 0 };
            assert_eq!(field.to_signed(got[i]), want, "x = {x}");
        }
    }
}
