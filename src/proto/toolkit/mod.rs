//! The non-linear toolkit: OT-based building blocks on additive shares over the ring Z_2^ℓ,
//! the field Z_p and boolean shares (conventions in [`crate::proto`]). Every protocol of
//! `linear`, `nonlinear` and `bolt` is built from these; the toolkit itself uses only
//! [`crate::proto::ctx`], `ot` and `net`, never the HE products or the non-linear layers.

pub mod b2a;
pub mod bits;
pub mod cmp;
pub mod convert;
pub mod mul;
pub mod mux;
pub mod trunc;

/// Fast composition test of the toolkit with the ideal OT (the per-protocol tests with the
/// real OT session are in `tests/toolkit.rs`).
#[cfg(test)]
mod composition_tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    use crate::proto::ctx::Party;
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
