//! FASTLMPI GeLU: segment selection by comparisons, segment polynomials under HE, one
//! truncation, multiplexer assembly.
//!
//! **Paper reference.** FASTLMPI (arXiv 2412.16537) GeLU with its segmented approximation
//! (prototype `gelu_test.cpp`, notes §2.4 and §3). What is fixed relative to the prototype:
//! * the one-hot indicators are derived from `[x < K_i]` for every knot (the prototype's
//!   `gt_zero = msb AND 0` made the outer segments fire for negative inputs);
//! * no ct × ct and no "rescaling" by (2^s)^−1 mod p under HE: the polynomial is evaluated as
//!   an exact integer accumulator (`hepoly`), the scale is removed by one faithful truncation
//!   on shares;
//! * the accumulator is checked to fit the plaintext modulus (x⁴ at 4 × 12 fraction bits does
//!   not fit a 29-bit t): the polynomial input is rounded to `poly_frac` fraction bits and t is
//!   a ~60-bit prime; [`GeluSpec::quantize`] picks the largest accumulator scale that fits and
//!   fails with `Error::Config` otherwise.
//!
//! **Functionality.** Ring shares over Z_{2^ℓ} of `x` (signed fixed point, `frac` bits) ↦
//! ring shares of `y = G(x)` where `G` is the quantised piecewise function of the spec:
//! knots `K_0 < … < K_{m−1}` (at `frac`), pieces `0..=m` (piece i covers `[K_{i−1}, K_i)`),
//! each `Const(c)`, `Identity` or `Poly(P)`. A `Poly` piece computes
//! `⌊P(x_p − M) / 2^(S − frac)⌋` with `x_p = ⌊(x + 2^(h−1)) / 2^h⌋`, `h = frac − poly_frac`
//! (round to nearest), integer coefficients `A_k` at scale `S − k·poly_frac`. The output stays
//! as ring shares. (Keeping it encrypted for FFN2 would save the return + conversion, but the
//! linear layer would have to accept client-encrypted inputs in the packing of this module's
//! SIMD blocks instead of its own upload layout: future work.)
//!
//! **Message flow** (all batched over the whole vector):
//! ```text
//!  1. lt_public_coarse(x, K_0..K_{m−1}, s, k − s), k = input_bits + 2, s = knot_shift [OT]
//!     (knots on a grid of 2^s units: the carry of the low s bits once, then the m
//!     comparisons on ⌊x/2^s⌋ in Z_{2^(k−s)}; s = 0 is the plain k-bit lt_public;
//!     with an approximate out_trunc the floor takes no carry at all, see below)
//!     one-hot b_0 = lt_0, b_i = lt_i ⊕ lt_{i−1}, b_m = ¬lt_{m−1}              (local)
//!  2. x_p = trunc(x + 2^(h−1), h) (faithful)                                   [OT]
//!  3. ring_to_field(x_p)                                                       [OT]
//!  4. hepoly::eval_polys_selected: client uploads Enc(x_c^j), j ≤ d; with        [HE, 2 flights]
//!     b_i = b_i^S + (1 − 2b_i^S)·b_i^C the server returns Enc(U_i = (1 − 2b_i^S)·V_i)
//!     for the P poly pieces and Enc(W = Σ_i b_i^S·V_i), all masked
//!  5. Σ = W + Σ_i b_i^C·U_i in Z_t: the client's bit times its own share of U_i
//!     locally, times the server's share by one chosen OT per piece            [OT]
//!  6. field_to_ring(Σ) into Z_{2^64} (bound 2^acc_bits); trunc by S − frac            [OT]
//!     (`out_trunc`: faithful, or approximate: one COT per element); mod 2^ℓ
//!  7. + mux(b_id, x) for the identity piece, + c·B2A(b_c) for non-zero constants [OT]
//! ```
//! Selecting in Z_t before the conversion (step 5) replaces P conversions and P 64-bit
//! multiplexers by one conversion; the unselected accumulators may wrap mod t and are
//! multiplied by 0 in Z_t, the selected one is below 2^acc_bits < t/4. Folding the server's
//! indicator bits into the HE evaluation (step 4) leaves one OT per piece instead of a field
//! multiplexer's two, for one more returned ciphertext; every OT over Z_t (these and the
//! ring→field conversion) is a correlated OT mod t, one message instead of a chosen OT's two.
//! Documented cost on mpnet-base's 393,216 GeLU inputs (equal to the measured one in the
//! two-party tests): 1,351 → 1,234 B per element with IKNP and 500 → 461 B with silent OT by
//! the folding (54 → 49 OT equivalents), then 1,195 and 422 B with the modular OTs, then
//! 891 B with IKNP once its 1-of-16 OTs (3 leaf OTs, 6 for the AND triples) ran on KK13 (32 B
//! instead of 64 B each; measured, 2 layers of mpnet-base).
//!
//! **Valid input domain.** `|x| < 2^input_bits` (at `frac`), with `input_bits + 3 ≤ ℓ`.
//! The comparison of step 1 is exact there: `|x − K| < 2^(k−1)`, so
//! `−2^(k−s−1) ≤ ⌊x/2^s⌋ − K/2^s < 2^(k−s−1)` (see `cmp`, coarse thresholds).
//!
//! **Approximate knot floor** (with an approximate `out_trunc`, [`GeluSpec::knot_carry_bits`]):
//! step 1 uses `⌊x/2^s⌋ − γ` from the shares' high bits alone (no millionaire, no COT), γ the
//! carry of their low s bits, so an input less than `2^s` units above a knot (1/16 with the
//! checked-in set) may take the piece below it; each accumulator bound covers that reach
//! (`validate`). The simulation takes γ from the trace (carry site `GeluKnot`, before the
//! accumulator's) and mirrors it exactly ([`reference_gelu_carried`]); with γ = 1 on every
//! input the checked-in set stays within 1.5e-3 of the erf-GeLU on [−8, 8] (5.8e-4 exact;
//! tested). Measured on mpnet-base (128 tokens, 393,216 elements per layer): 1,558 → 1,370 B
//! per element with IKNP, 518 → 504 with silent OT, 135 → 109 flights.
//!
//! **Error.** Versus [`reference_gelu`]: exact (bit for bit) on the whole domain with a
//! faithful `out_trunc`; with an approximate one the output is `reference − c`, c ∈ {0, 1}
//! the carry of the low `S − frac` bits of the two shares of Σ that step 6 dropped (one ulp
//! at most, on every piece alike since Σ = 0 off the polynomial pieces; `trunc::trace`
//! recovers each c, so a simulation given them is exact again). Otherwise the
//! comparisons, conversions and truncations are exact, and for the selected piece
//! `|V| < 2^acc_bits < t/4` (checked at quantisation on every segment's input range; other
//! pieces' accumulators may wrap mod t and are multiplied by 0). Versus the exact erf-GeLU:
//! the fit's error plus input rounding (≤ 2^−(poly_frac+1)·max|P'|), coefficient rounding and
//! the final floor (< 2^−frac); the test prints the measured maximum.
//!
//! **Bytes per element** ([`gelu_cost`]): with m knots, P poly pieces of max degree d, I
//! identity and C non-zero constant pieces, `M(·)` the millionaire cost and `C_cot(b)`,
//! `C_ot(b)` the OT layer's per-OT costs:
//! `M(s) + C_cot(k−s) + M_m(k−s−1)` (m comparisons sharing leaf OTs, see `cmp`; the first
//! two terms vanish with the approximate knot floor)
//! + `[h>0]·(M(h) + 2C_cot(ℓ))` + `C_ot(bits t)` + HE `(d·seeded + (P + 1)·full)/N`
//! + `P·C_ot(bits t)` + `M(w) + C_cot(64)` (w = wrap-comparison width, 1–3 bits)
//! + `M(S−frac) + 2C_cot(64)` (approximate `out_trunc`: `C_cot(S−frac)`) + `I·2C_cot(ℓ)`
//! + `C·C_cot(ℓ)`.
//!
//! Rounds: the sum of the steps' flights (two HE flights plus the OT batches and AND levels).
//!
//! **Parameters and measured cost.** HE preset `HePreset::simd(8192, 52)`: N = 8192,
//! Q = 55 + 55 + 54 + 54 = 218 bits (128-bit security), t a 52-bit prime (every modulus must
//! exceed t); accumulators must stay below 2^50 (checked). Noise bound d·N·(t/2)·21 ⇒ flooding
//! 2^40·N times that (statistical distance ≤ 2^-40 per ciphertext). The cost figures below were
//! measured with a 60-bit t and 3 × 62-bit moduli before the flooding width gained the factor N;
//! the byte counts per element change by the ratio of the ciphertext sizes (218/186). With the checked-in 7-segment degree-3 set
//! (`src/approx/sets/gelu.json`, acc_frac 44, max |V| < 2^46) and ℓ = 40, frac = 12,
//! |x| < 2^19: one BERT-base FFN batch (128 × 3072 = 393 216 values, release, real OT, loopback,
//! 2 shared cores) took 140 s and 1.96 GB in total, of which 96 MB HE (+ openings), the rest
//! OT (57 M OTs, dominated by the 6 knot comparisons and the 64-bit conversions and
//! multiplexers of the 5 polynomial pieces); 805 flights. The engine's set now
//! (`src/approx/sets/gelu.json`) has its knots on a 2^-4 grid, so step 1 compares 13 bits
//! after an 8-bit carry (≈ 0.87 kB instead of ≈ 1.48 kB per element with IKNP), and the pieces
//! are selected in Z_t (5 × 58 B + one conversion instead of 5 × 140 B); the faithful
//! truncation by S − frac = 32 bits (≈ 1 kB) was then the largest OT item, which the
//! approximate `out_trunc` of the `fastlmpi` profile replaces by one 32-bit COT.
//!
//! **Security (semi-honest).** A sequential composition of protocols that each output fresh
//! uniform shares (comparison, truncation, conversions, multiplexers, B2A: see their modules)
//! and of `hepoly`, whose returns are masked with uniform R over Z_t, re-randomised and
//! flooded with ≥ 40 bits; the spec (knots, coefficients) is public. No value is opened, the
//! server never decrypts, the client decrypts only masked values.

use crate::proto::toolkit::b2a::{b2a_ring, b2a_ring_cost};
use crate::proto::toolkit::bits::{self, BitShare};
use crate::proto::toolkit::cmp::{lt_public_coarse_partial, lt_public_coarse_partial_cost};
use crate::proto::toolkit::convert::{field_to_ring, field_to_ring_cost, field_wrap_width, ring_to_field, ring_to_field_cost};
use crate::proto::ctx::{Cost, Party};
use crate::proto::linear::hemul::HeParty;
use crate::proto::linear::hepoly::{self, CentredPoly};
use crate::proto::toolkit::mux::{mux, mux_cost};
use crate::proto::toolkit::trunc::{trunc, trunc_cost, TruncMode};
use crate::approx::{QuantizedPiecewise, QuantizedSegment};
use crate::error::{Error, Result};
use crate::he::HeContext;
use crate::share::{Field, Ring};

/// A piece of the piecewise function before quantisation (real coefficients).
#[derive(Clone, Debug, PartialEq)]
pub enum FloatPiece {
    Const(f64),
    Identity,
    /// `Σ coeffs[k] (x − centre)^k`.
    Poly { centre: f64, coeffs: Vec<f64> },
}

/// Knots (increasing) and `knots.len() + 1` pieces, piece i covering `[knot_{i−1}, knot_i)`.
#[derive(Clone, Debug, PartialEq)]
pub struct FloatPiecewise {
    pub knots: Vec<f64>,
    pub pieces: Vec<FloatPiece>,
}

/// A quantised piece.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// A constant at `frac` fraction bits.
    Const(i64),
    Identity,
    /// Integer accumulator polynomial in `x_p − centre` (both at `poly_frac`).
    Poly(CentredPoly),
}

/// Everything both parties must agree on (public).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeluSpec {
    /// Ring width ℓ and fraction bits of input and output.
    pub ring_bits: u32,
    pub frac: u32,
    /// Valid inputs: `|x| < 2^input_bits`.
    pub input_bits: u32,
    /// Fraction bits of the polynomial input (≤ frac).
    pub poly_frac: u32,
    /// Accumulator scale S.
    pub acc_scale: u32,
    /// In-segment accumulators satisfy `|V| < 2^acc_bits`.
    pub acc_bits: u32,
    /// Knots at `frac`, strictly increasing.
    pub knots: Vec<i64>,
    pub pieces: Vec<Piece>,
    /// The final truncation by `S − frac` (step 6): `Faithful` is the floor of
    /// [`reference_gelu`]; `Approx` may drop its carry (output `reference − c`, c ∈ {0, 1},
    /// the same c on every piece, see `trunc`) for one COT per element instead of a
    /// millionaire and two. The `fastlmpi` profile follows its `linear_trunc`.
    pub out_trunc: TruncMode,
}

/// Round-to-nearest (ties up) of `x` at `frac` down to `frac − h` bits.
fn round_shift(x: i64, h: u32) -> i64 {
    if h == 0 {
        x
    } else {
        (x + (1i64 << (h - 1))) >> h
    }
}

fn floor_shift_i128(v: i128, s: u32) -> i128 {
    v >> s
}

/// Coefficients of `p(c + δ + u)` in `u` given those of `p(c + v)` in `v`.
fn recentre(coeffs: &[f64], delta: f64) -> Vec<f64> {
    let d = coeffs.len();
    let mut out = vec![0.0; d];
    for (k, &a) in coeffs.iter().enumerate() {
        let mut binom = 1.0;
        for (j, o) in out.iter_mut().enumerate().take(k + 1) {
            // binom(k, j) δ^(k−j)
            *o += a * binom * delta.powi((k - j) as i32);
            binom = binom * (k - j) as f64 / (j + 1) as f64;
        }
    }
    out
}

impl GeluSpec {
    fn shift_in(&self) -> u32 {
        self.frac - self.poly_frac
    }
    fn shift_out(&self) -> u32 {
        self.acc_scale - self.frac
    }
    fn cmp_width(&self) -> u32 {
        self.input_bits + 2
    }
    /// The largest `s ≤ frac` (leaving at least 2 comparison bits) with every knot a multiple
    /// of `2^s`: the knot comparisons then run on `⌊x/2^s⌋` (`cmp::lt_public_coarse`).
    pub fn knot_shift(&self) -> u32 {
        let common = self.knots.iter().fold(0u64, |acc, &k| acc | k.unsigned_abs());
        let s = if common == 0 { self.frac } else { common.trailing_zeros().min(self.frac) };
        s.min(self.cmp_width().saturating_sub(2))
    }

    /// Carry bits of the knot comparisons' floor `⌊x/2^s⌋`: all `s` (exact) with a faithful
    /// `out_trunc`; none with an approximate one, whose carry site then also holds the floor's
    /// missed carries γ: an input less than `2^s` units above a knot may take the piece below
    /// it (the fit's pieces agree at their knots, and every accumulator bound covers that
    /// reach).
    pub fn knot_carry_bits(&self) -> u32 {
        match self.out_trunc {
            TruncMode::Faithful => self.knot_shift(),
            TruncMode::Approx => 0,
        }
    }

    /// Low bits of `x` whose carry the knot floor ignores (`knot_shift − knot_carry_bits`).
    fn knot_missed_bits(&self) -> u32 {
        self.knot_shift() - self.knot_carry_bits()
    }

    /// How far above its upper knot a piece can be evaluated: `2^s − 1` units with an
    /// approximate knot floor, else 0.
    fn knot_reach(&self) -> i64 {
        let missed = self.knot_missed_bits();
        if missed == 0 {
            0
        } else {
            (1i64 << missed) - 1
        }
    }

    /// Quantise `pw` for ring shares (ℓ = `ring_bits`, `frac`) and the HE field `field`,
    /// choosing the largest accumulator scale S for which every poly piece's accumulator
    /// stays below 2^(bits(t) − 2) on its segment.
    pub fn quantize(pw: &FloatPiecewise, field: Field, ring_bits: u32, frac: u32, poly_frac: u32, input_bits: u32) -> Result<GeluSpec> {
        let acc_bits = field.bits() - 2;
        let knots: Vec<i64> = pw.knots.iter().map(|&k| (k * (1u64 << frac) as f64).round() as i64).collect();
        let max_degree = pw
            .pieces
            .iter()
            .map(|p| if let FloatPiece::Poly { coeffs, .. } = p { coeffs.len().saturating_sub(1) } else { 0 })
            .max()
            .unwrap_or(0) as u32;
        let lowest = (max_degree * poly_frac).max(frac);
        for s in (lowest..=acc_bits).rev() {
            let spec = GeluSpec {
                ring_bits,
                frac,
                input_bits,
                poly_frac,
                acc_scale: s,
                acc_bits,
                knots: knots.clone(),
                pieces: Self::quantize_pieces(pw, frac, poly_frac, s)?,
                out_trunc: TruncMode::Faithful,
            };
            if spec.validate(field).is_ok() {
                return Ok(spec);
            }
        }
        // Report why the smallest scale fails (domain errors are independent of the scale).
        let smallest = GeluSpec {
            ring_bits,
            frac,
            input_bits,
            poly_frac,
            acc_scale: lowest,
            acc_bits,
            knots,
            pieces: Self::quantize_pieces(pw, frac, poly_frac, lowest)?,
            out_trunc: TruncMode::Faithful,
        };
        smallest.validate(field)?;
        Err(Error::Config(format!("GeLU polynomials do not fit a {}-bit plaintext modulus", field.bits())))
    }

    /// The spec for a set quantised by `approx` (e.g. the checked-in
    /// `src/approx/sets/gelu.json`): its knots, centres and coefficients are used as they are
    /// (input and polynomial at `in_frac`, accumulator at `acc_frac`, output at `out_frac`,
    /// which must equal `in_frac`), so [`reference_gelu`] equals `QuantizedPiecewise::eval`.
    /// Fails with `Error::Config` if an accumulator can reach 2^(bits(t) − 2) on `|x| <
    /// 2^input_bits`.
    pub fn from_quantized(q: &QuantizedPiecewise, field: Field, ring_bits: u32, input_bits: u32) -> Result<GeluSpec> {
        let s = q.spec;
        if s.out_frac != s.in_frac {
            return Err(Error::Config(format!("GeLU needs out_frac = in_frac (got {} and {})", s.out_frac, s.in_frac)));
        }
        let pieces = q
            .segments
            .iter()
            .map(|seg| match seg {
                QuantizedSegment::Const(c) => Ok(Piece::Const(*c)),
                QuantizedSegment::Identity => Ok(Piece::Identity),
                QuantizedSegment::Poly { centre, coeffs } => {
                    let c: Result<Vec<i64>> = coeffs
                        .iter()
                        .map(|&a| i64::try_from(a).map_err(|_| Error::Config("GeLU coefficient exceeds 63 bits".into())))
                        .collect();
                    Ok(Piece::Poly(CentredPoly { centre: *centre, coeffs: c? }))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let spec = GeluSpec {
            ring_bits,
            frac: s.in_frac,
            input_bits,
            poly_frac: s.in_frac,
            acc_scale: s.acc_frac,
            acc_bits: field.bits() - 2,
            knots: q.knots.clone(),
            pieces,
            out_trunc: TruncMode::Faithful,
        };
        spec.validate(field)?;
        Ok(spec)
    }

    fn quantize_pieces(pw: &FloatPiecewise, frac: u32, poly_frac: u32, s: u32) -> Result<Vec<Piece>> {
        pw.pieces
            .iter()
            .map(|p| match p {
                FloatPiece::Const(c) => Ok(Piece::Const((c * (1u64 << frac) as f64).round() as i64)),
                FloatPiece::Identity => Ok(Piece::Identity),
                FloatPiece::Poly { centre, coeffs } => {
                    let m = (centre * (1u64 << poly_frac) as f64).round() as i64;
                    let delta = m as f64 / (1u64 << poly_frac) as f64 - centre;
                    let a = recentre(coeffs, delta);
                    let q: Vec<i64> = a
                        .iter()
                        .enumerate()
                        .map(|(k, &ak)| (ak * (2f64).powi(s as i32 - (k as u32 * poly_frac) as i32)).round() as i64)
                        .collect();
                    Ok(Piece::Poly(CentredPoly { centre: m, coeffs: q }))
                }
            })
            .collect()
    }

    /// Checks the spec against the domain rules and the plaintext field.
    pub fn validate(&self, field: Field) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("GeLU spec: {m}")));
        if self.pieces.len() != self.knots.len() + 1 || self.knots.is_empty() {
            return bad(format!("{} pieces for {} knots", self.pieces.len(), self.knots.len()));
        }
        if self.knots.windows(2).any(|w| w[0] >= w[1]) {
            return bad("knots not strictly increasing".into());
        }
        if self.input_bits + 3 > self.ring_bits || self.ring_bits > 62 || self.poly_frac > self.frac {
            return bad(format!("input 2^{} / ring ℓ = {} / poly_frac {}", self.input_bits, self.ring_bits, self.poly_frac));
        }
        let lim = 1i64 << self.input_bits;
        if self.knots.iter().any(|k| k.abs() >= lim) {
            return bad("knot outside the input domain".into());
        }
        if self.ring_bits > field.bits() || self.acc_bits > field.bits() - 2 || self.acc_scale < self.frac {
            return bad(format!("field of {} bits too small", field.bits()));
        }
        field_wrap_width(field, self.acc_bits)?;
        // The output ⌊V / 2^(S−frac)⌋ must fit the ring with room for the sum of pieces.
        if self.acc_bits - self.shift_out() + 2 > self.ring_bits {
            return bad("poly output does not fit the ring".into());
        }
        for (i, piece) in self.pieces.iter().enumerate() {
            if let Piece::Poly(p) = piece {
                if p.degree() as u32 * self.poly_frac > self.acc_scale {
                    return bad("coefficient scale S − k·poly_frac negative".into());
                }
                let bound = self.accumulator_bound(i, p).ok_or_else(|| Error::Config("accumulator overflows i128".into()))?;
                if bound >= 1i128 << self.acc_bits {
                    return bad(format!("piece {i}: accumulator bound 2^{:.1} ≥ 2^{}", (bound as f64).log2(), self.acc_bits));
                }
            }
        }
        Ok(())
    }

    /// Σ_k |A_k|·U^k with U the largest |x_p − M| on piece `i`'s input range.
    fn accumulator_bound(&self, i: usize, p: &CentredPoly) -> Option<i128> {
        let lim = (1i64 << self.input_bits) - 1;
        let lo = if i == 0 { -lim } else { self.knots[i - 1] };
        let hi = if i == self.knots.len() { lim } else { (self.knots[i] - 1 + self.knot_reach()).min(lim) };
        let h = self.shift_in();
        let u = (round_shift(lo, h) - p.centre).abs().max((round_shift(hi, h) - p.centre).abs()) as i128;
        let mut total: i128 = 0;
        let mut pw: i128 = 1;
        for &a in &p.coeffs {
            total = total.checked_add((a as i128).abs().checked_mul(pw)?)?;
            pw = pw.checked_mul(u)?;
        }
        Some(total)
    }

    fn piece_of(&self, x: i64) -> usize {
        self.knots.iter().take_while(|&&k| k <= x).count()
    }

    /// The distinct kinds of pieces, for cost accounting.
    fn counts(&self) -> (usize, usize, usize, usize) {
        let polys = self.pieces.iter().filter(|p| matches!(p, Piece::Poly(_))).count();
        let ids = self.pieces.iter().filter(|p| matches!(p, Piece::Identity)).count();
        let consts = self.pieces.iter().filter(|p| matches!(p, Piece::Const(c) if *c != 0)).count();
        let degree = self.polys().iter().map(CentredPoly::degree).max().unwrap_or(0);
        (polys, ids, consts, degree)
    }

    fn polys(&self) -> Vec<CentredPoly> {
        self.pieces.iter().filter_map(|p| if let Piece::Poly(q) = p { Some(q.clone()) } else { None }).collect()
    }
}

/// Cleartext mirror of [`gelu`] on signed fixed-point inputs (`|x| < 2^input_bits`) with a
/// faithful `out_trunc` (an approximate run is mirrored by [`reference_gelu_carried`]).
pub fn reference_gelu(x: &[i64], spec: &GeluSpec) -> Vec<i64> {
    reference_gelu_carried(x, spec, &[])
}

/// [`reference_gelu`] for a run whose knot floor missed the carries `knot` (one per element,
/// 0/1; missing entries count as 0, so `&[]` for an exact floor): element v takes the piece of `v − γ·2^s`. The output
/// truncation's carries are subtracted by the caller (`trunc::trace`).
pub fn reference_gelu_carried(x: &[i64], spec: &GeluSpec, knot: &[u8]) -> Vec<i64> {
    let missed = spec.knot_missed_bits();
    x.iter()
        .zip(knot.iter().chain(std::iter::repeat(&0)))
        .map(|(&v, &gamma)| match &spec.pieces[spec.piece_of(v - (i64::from(gamma) << missed))] {
            Piece::Const(c) => *c,
            Piece::Identity => v,
            Piece::Poly(p) => {
                let acc = p.eval_exact(round_shift(v, spec.shift_in())).unwrap_or(0);
                floor_shift_i128(acc, spec.shift_out()) as i64
            }
        })
        .collect()
}

/// One-hot shares of the piece of each element from `lt[i] = [x < K_i]`.
fn one_hot(p: &Party, lt: &[BitShare]) -> Vec<BitShare> {
    let m = lt.len();
    let mut out = Vec::with_capacity(m + 1);
    out.push(lt[0].clone());
    for i in 1..m {
        out.push(bits::xor(&lt[i], &lt[i - 1]));
    }
    out.push(bits::not(p, &lt[m - 1]));
    out
}

fn ring64() -> Result<Ring> {
    Ring::new(64)
}

/// Ring shares of `G(x)`; both parties call it with their shares of `x`.
pub fn gelu(p: &mut Party, he: &HeParty, x: &[u64], spec: &GeluSpec) -> Result<Vec<u64>> {
    let field = he.ctx.field();
    spec.validate(field)?;
    he.check_role(p)?;
    let ring = Ring::new(spec.ring_bits)?;
    let n = x.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let s = spec.knot_shift();
    let lt = lt_public_coarse_partial(p, ring, x, &spec.knots, s, spec.knot_carry_bits(), spec.cmp_width() - s)?;
    let onehot = one_hot(p, &lt);
    let mut y = vec![0u64; n];
    let poly_ix: Vec<usize> = (0..spec.pieces.len()).filter(|&i| matches!(spec.pieces[i], Piece::Poly(_))).collect();
    if !poly_ix.is_empty() {
        let part = poly_part(p, he, ring, x, spec, &onehot, &poly_ix)?;
        ring.add_into(&mut y, &part);
    }
    for (i, piece) in spec.pieces.iter().enumerate() {
        match piece {
            Piece::Identity => {
                let part = mux(p, ring, &onehot[i], x)?;
                ring.add_into(&mut y, &part);
            }
            Piece::Const(c) if *c != 0 => {
                let b = b2a_ring(p, ring, &onehot[i])?;
                let cr = ring.from_signed(*c);
                let part: Vec<u64> = b.iter().map(|&v| ring.mul(v, cr)).collect();
                ring.add_into(&mut y, &part);
            }
            _ => {}
        }
    }
    Ok(y)
}

/// Σ_{poly pieces i} b_i · ⌊P_i / 2^(S−frac)⌋ (one truncation of the selected accumulator).
fn poly_part(p: &mut Party, he: &HeParty, ring: Ring, x: &[u64], spec: &GeluSpec, onehot: &[BitShare], poly_ix: &[usize]) -> Result<Vec<u64>> {
    let field = he.ctx.field();
    let h = spec.shift_in();
    let x_p = if h > 0 {
        let half = if p.is_server() { 1u64 << (h - 1) } else { 0 };
        let shifted: Vec<u64> = x.iter().map(|&v| ring.add(v, half)).collect();
        trunc(p, ring, &shifted, h, TruncMode::Faithful)?
    } else {
        x.to_vec()
    };
    let x_f = ring_to_field(p, ring, field, &x_p)?;
    // Select in Z_t (the other pieces' accumulators may have wrapped mod t; they are multiplied
    // by 0), then one conversion of the selected accumulator, |V| < 2^acc_bits.
    let sel: Vec<&[u8]> = poly_ix.iter().map(|&i| onehot[i].as_slice()).collect();
    let sum = hepoly::eval_polys_selected(p, he, &x_f, &spec.polys(), &sel)?;
    let wide = ring64()?;
    let v_ring = field_to_ring(p, field, wide, &sum, spec.acc_bits)?;
    let out = trunc(p, wide, &v_ring, spec.shift_out(), spec.out_trunc)?;
    Ok(out.iter().map(|&v| ring.reduce(v)).collect())
}

/// Documented OT cost of [`gelu`] on `n` elements, plus the HE bytes as `own_bytes` (the
/// toolkit's own opening bytes are included by the component costs).
pub fn gelu_cost(n: usize, ctx: &HeContext, spec: &GeluSpec) -> Result<Cost> {
    let field = ctx.field();
    let ring = Ring::new(spec.ring_bits)?;
    let wide = ring64()?;
    let (polys, ids, consts, _) = spec.counts();
    let s = spec.knot_shift();
    let mut cost = lt_public_coarse_partial_cost(n, spec.knots.len(), s, spec.knot_carry_bits(), spec.cmp_width() - s);
    if polys > 0 {
        if spec.shift_in() > 0 {
            cost = cost + trunc_cost(n, ring, spec.shift_in(), TruncMode::Faithful);
        }
        cost = cost
            + ring_to_field_cost(n, field)
            + hepoly::eval_polys_selected_cost(ctx, n, &spec.polys())?
            + field_to_ring_cost(n, field, wide, spec.acc_bits)?
            + trunc_cost(n, wide, spec.shift_out(), spec.out_trunc);
    }
    cost = cost + mux_cost(n * ids, ring) + b2a_ring_cost(n * consts, ring);
    Ok(cost)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recentring_preserves_the_polynomial() {
        let c = [0.3, -1.2, 0.5, 0.01];
        let r = recentre(&c, 0.25);
        let eval = |co: &[f64], v: f64| co.iter().rev().fold(0.0, |a, &k| a * v + k);
        for u in [-1.0, 0.0, 0.7] {
            assert!((eval(&r, u) - eval(&c, u + 0.25)).abs() < 1e-12);
        }
    }

    #[test]
    fn rounding_shift_rounds_to_nearest() {
        assert_eq!(round_shift(5, 2), 1); // 1.25 → 1
        assert_eq!(round_shift(6, 2), 2); // 1.5 → 2
        assert_eq!(round_shift(-6, 2), -1); // −1.5 → −1 (ties up)
        assert_eq!(round_shift(-7, 2), -2);
    }
}
