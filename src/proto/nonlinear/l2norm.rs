//! Two-party L2 normalisation `x / ‖x‖` of shared vectors (the `Normalize` step of
//! sentence-transformer checkpoints, applied to the pooled embedding).
//!
//! **Paper reference.** Not part of FASTLMPI or BOLT (their BERT models end with a pooler and a
//! classifier); it reuses FASTLMPI's LayerNorm structure (§2.3 of the protocol notes: squares,
//! a row sum, a two-party reciprocal square root, one product) without the centring and γ/β.
//!
//! **Functionality.** Ring shares (ℓ bits, `f = frac`) of `rows × d` values `x` ↦ ring shares of
//! `⌊x_j · r / 2^R⌋` per row, where `r = rsqrt(Σ_j x_j²)` at `R = 40` fraction bits (`recip`),
//! i.e. `x/‖x‖` at `f` bits; bit-equal to [`reference_l2_normalize`].
//!
//! **Arithmetic.** 1. Lift `x` exactly to Z_2^64 (`layernorm::lift_to_64`, one COT each).
//! 2. `S = Σ_j x_j²` (one Gilboa square per element, local sums; exact, scale 2f).
//! 3. `r ≈ 2^R · 2^f / √S` (`recip`, `Rsqrt`, `frac_in = 2f`, inputs in `[2^(2f−8), 2^(2f+17))`,
//!    i.e. `‖x‖ ∈ [2^−4, 2^8.5)`; smaller norms are clamped as `recip` documents).
//! 4. `z_j = ⌊x_j · r / 2^R⌋` (one product and one faithful truncation in Z_2^64), reduced to ℓ.
//!
//! **Message flow.** lift (COT) → square (COT) → rsqrt (`recip`: comparisons, B2A, Newton
//! products) → product (COT) → truncation (millionaire + COT).
//!
//! **Valid input domain.** `|x_j| < 2^(ℓ−2)` (integer representation), `Σ x_j² < 2^62`,
//! `‖x‖` inside the rsqrt range above. **Error.** Protocol = reference exactly; reference vs
//! exact `x/‖x‖`: the rsqrt's relative error (≤ 2^(4−30)) plus one unit of the final floor.
//!
//! **Bytes per element** (d per row): `C(64)` (lift) `+ 64·C(64)` (square) `+ 128·C(64)`
//! (product) `+ M(R) + 2·C(64)` (truncation), plus one rsqrt per row (`recip`), where `C(b)` is
//! one b-bit correlated OT and `M(w)` a millionaire on w bits. Rounds: constant.
//!
//! **Security (semi-honest).** A sequential composition of toolkit protocols (lift, Gilboa
//! products, `recip`, truncation), each returning fresh uniform shares over the whole ring;
//! nothing is opened and no public value depends on the data.

use crate::proto::ctx::Party;
use super::layernorm::lift_to_64;
use crate::proto::toolkit::mul::{mul, square};
use super::recip::{self, reciprocal, RecipKind, RecipSpec};
use crate::proto::toolkit::trunc::{trunc, TruncMode};
use crate::error::{Error, Result};
use crate::share::Ring;

/// Fraction bits of the reciprocal square root.
const RSQRT_FRAC: u32 = 40;

/// The rsqrt step's public parameters for activations with `frac` fraction bits.
pub fn rsqrt_spec(frac: u32) -> Result<RecipSpec> {
    let fi = 2 * frac;
    RecipSpec::new(Ring::new(64)?, RecipKind::Rsqrt, fi, RSQRT_FRAC, fi.saturating_sub(8), fi + 16)
}

fn check_shape(len: usize, rows: usize, d: usize) -> Result<()> {
    if len != rows * d || d == 0 {
        return Err(Error::Shape { tensor: "L2 normalisation input".into(), expected: vec![rows, d], got: vec![len] });
    }
    Ok(())
}

/// Shares of `x/‖x‖` per row of `rows × d` shares at `frac` bits.
pub fn l2_normalize(p: &mut Party, ring: Ring, frac: u32, x: &[u64], rows: usize, d: usize) -> Result<Vec<u64>> {
    check_shape(x.len(), rows, d)?;
    let wide = Ring::new(64)?;
    let spec = rsqrt_spec(frac)?;
    let x64 = lift_to_64(p, ring, x)?;
    let sq = square(p, wide, &x64)?;
    let sums: Vec<u64> = sq.chunks(d).map(|r| r.iter().fold(0, |a, &v| wide.add(a, v))).collect();
    let r = reciprocal(p, &spec, &sums)?;
    let r_rows: Vec<u64> = r.iter().flat_map(|&v| std::iter::repeat_n(v, d)).collect();
    let prod = mul(p, wide, &x64, &r_rows)?;
    let z = trunc(p, wide, &prod, RSQRT_FRAC, TruncMode::Faithful)?;
    Ok(z.iter().map(|&v| ring.reduce(v)).collect())
}

/// Cleartext mirror of [`l2_normalize`] on one row (bit-exact).
pub fn reference_l2_normalize(x: &[i64], frac: u32) -> Result<Vec<i64>> {
    let spec = rsqrt_spec(frac)?;
    let sum: i128 = x.iter().map(|&v| v as i128 * v as i128).sum();
    let sum = i64::try_from(sum).map_err(|_| Error::Input("L2 normalisation: sum of squares overflows".into()))?;
    let r = recip::reference(&spec, sum)? as i128;
    Ok(x.iter().map(|&v| ((v as i128 * r) >> RSQRT_FRAC) as i64).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::run_pair;
    use crate::ot::OtSession;
    use crate::share::Role;

    #[test]
    fn reference_is_close_to_exact_normalisation() {
        let frac = 12;
        for row in [vec![4096i64, 0, -4096], vec![100, 200, 300, 400, 500], vec![300_000, -7, 12_345, 99]] {
            let out = reference_l2_normalize(&row, frac).unwrap();
            let norm = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
            for (&o, &x) in out.iter().zip(&row) {
                let want = x as f64 / norm * 4096.0;
                assert!((o as f64 - want).abs() <= 2.0, "{o} vs {want} for {row:?}");
            }
        }
    }

    #[test]
    fn protocol_matches_reference() {
        let ring = Ring::new(40).unwrap();
        let frac = 12;
        let (rows, d) = (3, 7);
        let vals: Vec<i64> = (0..rows * d).map(|i| ((i as i64 * 7919) % 20001) - 10000).collect();
        let enc: Vec<u64> = vals.iter().map(|&v| ring.from_signed(v)).collect();
        let (xs, xc) = ring.share_vec(&enc, &mut rand::rng());
        let out = run_pair(
            |ch| {
                let mut ot = OtSession::setup(ch, Role::Server)?;
                let mut p = Party::new(Role::Server, ch, &mut ot);
                l2_normalize(&mut p, ring, frac, &xs, rows, d)
            },
            |ch| {
                let mut ot = OtSession::setup(ch, Role::Client)?;
                let mut p = Party::new(Role::Client, ch, &mut ot);
                l2_normalize(&mut p, ring, frac, &xc, rows, d)
            },
        )
        .unwrap();
        let got: Vec<i64> = out.server.iter().zip(&out.client).map(|(&a, &b)| ring.to_signed(ring.add(a, b))).collect();
        let want: Vec<i64> = vals.chunks(d).flat_map(|r| reference_l2_normalize(r, frac).unwrap()).collect();
        assert_eq!(got, want);
    }
}
