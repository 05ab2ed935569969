//! Two-party SoftMax over the rows of a score matrix, honouring a public attention mask.
//!
//! **Paper reference.** FASTLMPI (arXiv 2412.16537), SoftMax of the attention block (§2.2 of
//! the protocol notes). The prototype exponentiates each party's *share* locally (e^{x_C}·e^{x_S}
//! = e^x only without wrap-around, and uniform shares cannot be exponentiated) and replaces the
//! reciprocal of the row sum by a *modular* inverse mod p; both are unsound/incorrect. Fixed
//! here: a secure row maximum, subtraction, a segmented polynomial exp selected by secure
//! comparisons, local row sums, a real fixed-point reciprocal (`recip`), and a secure product.
//!
//! **Functionality.** Scores `x` (rows × cols, ring shares, `frac` fraction bits) and a public
//! 0/1 mask (per key, or per row and key). Output: shares of
//! `softmax_i(x)_j = e_j / Σ_k e_k` over the unmasked keys, exactly 0 on masked keys, bit-equal to
//! [`reference_softmax`].
//!
//! **Arithmetic** (f = frac, truncations faithful floors unless [`SoftmaxSpec::trunc`] makes
//! the exp's and the normalisation's approximate, see "Approximate truncations" below):
//! 1. Row maximum over unmasked keys by a comparison tree (⌈log2 n⌉ levels; per level one batched
//!    `msb` of `a − b` on `score_bits + 2` bits and one `mux`). Exact.
//! 2. `z = x − max ≤ 0`.
//! 3. Exp: `m = ⌈(f+1)·ln 2⌉` unit-width segments `[K_j, K_j + 1)`, `K_j = −(m − j)`, plus the
//!    tail `z < −m` whose output is exactly 0 (`e^(−m) < 2^−(f+1)`). Per segment a degree-`d`
//!    polynomial in `u = z − K_j` (Chebyshev interpolation of `e^(K_j+u)`, coefficients at
//!    `F = f + guard` bits). Indicators `[z < K_j]`: the knots are whole units, so
//!    `[z < K_j] = [⌊z/2^f⌋ < K_j/2^f]` and one `cmp::lt_public_coarse` decides all of them on
//!    the integer part (the carry of the f fraction bits once, then the m comparisons on
//!    `k = score_bits + 3 − f` bits; BOLT's I-BERT knots are not whole units and keep the
//!    `score_bits + 3`-bit `lt_public`) → B2A → the segment's coefficients and `K_j` are selected locally
//!    (telescoping sums of public constants); Horner with secure products:
//!    `y = c_d; y = ⌊y·u/2^f⌋ + c_k (k = d−1..1); e = ⌊(y·u + c_0·2^f) / 2^(f+guard)⌋`
//!    (`c_0` includes `2^(guard−1)`, so the last floor rounds to nearest).
//! 4. `S = Σ_j e_j` (local). `r = ⌊2^(f+R)/S⌋`-style reciprocal (`recip`, `R = min(2f, ℓ−4−f)`,
//!    S in `[2^(f−1), 2^(f+⌈log2 n⌉+1))`).
//! 5. `out_j = ⌊e_j · r / 2^R⌋` (each party replicates its share of `r` over the row).
//!
//! **Message flow.** Tree levels: msb + mux (OT batches) → exp: carry of the fraction bits
//! (millionaire on f bits + one k-bit COT batch), the m narrow comparisons (shared leaf OTs),
//! B2A, d products with truncation → recip (see `recip`) → one product with truncation.
//! Masked keys are never sent.
//!
//! **Valid input domain.** `|x| < 2^score_bits` for every unmasked score (integer
//! representation; `|x| < 2^score_bits − 2^f` with approximate selection, whose tree
//! comparisons see a difference lowered by up to `2^(f+1)` units), at least one unmasked key
//! per row, `f + 1 ≤ score_bits`, `score_bits + 3 ≤ ℓ`.
//! The mask is public (it encodes padding, whose length is part of the public shape).
//!
//! **Approximate truncations** (`trunc = Approx`, the `fastlmpi` profile with its default
//! `--linear-trunc approx`):
//! * the exp's final truncation and the one after `e·(1/S)` become approximate truncations
//!   plus one unit, `⌊v⌋ + 1 − c` with c the carry of the shares' low bits, which is v rounded
//!   up with probability frac(v) (stochastic rounding: unbiased, and exact on integers, so the
//!   tail's and masked keys' zeros stay 0 except with probability 2^−s); the exp coefficients
//!   drop their rounding half accordingly;
//! * the d − 1 Horner truncations become plain approximate ones (⌊·⌋ − c at F = f + guard
//!   bits, d = 4 fixed by the carry model's sites), after one multiplexer on the tail bit
//!   `[z < K_0]` sets u = 0 there: on the tail every coefficient is 0 but u = z is unbounded,
//!   so a y of −1 left by a dropped carry must not meet it.
//!
//!
//! **Approximate selection** (same condition, [`SoftmaxSpec::approx_selection`]): comparisons
//! that ignore low bits (see `cmp`, "Partial carry"), whose missed carries γ the simulation
//! takes from the trace like the truncations' (two more carry sites, in protocol order before
//! the Horner steps):
//! * the max tree compares `⌊(a − b)/2^d⌋ − γ` with `d = f − ⌈log2 L⌉` for a row of `L =
//!   ⌈log2 n⌉` levels ([`tree_drop_bits`]: `d = 9` at n = 128, so a 12-bit millionaire instead
//!   of 21 bits): it may keep the smaller of two scores less than `2^d` units apart, so the
//!   subtracted value `m̃` satisfies `max − L·(2^d − 1) ≤ m̃ ≤ max`, less than one unit low, and
//!   `z = x − m̃ < 1`; the exp gains the segment `[0, 1)` (11 knots) and the reciprocal's
//!   input range one bit (`S < e·n·2^f`);
//! * the exp's segment floor takes the carry of the top [`EXP_CARRY_BITS`] of the f fraction
//!   bits only (one 1-out-of-8 OT instead of a 12-bit millionaire), so a z whose fraction is
//!   below 2^−3 may take the segment below with `u ∈ [1, 1 + 2^−3)`; every segment's
//!   polynomial is fitted on `[0, 1 + 2^−3]` ([`ExpFit::approximate`]: ≤ 0.25 LSB before the
//!   final truncation on everything it can be fed, unit-tested);
//! * the knot bits come from that integer part I by one tail comparison `t ≈ [I < K_0 − 4]`
//!   on `k − 3` bits (it ignores 2 low bits, so it may err only for `I ∈ [K_0 − 4, K_0)`) and
//!   one table lookup for all m (`[I < K_j] = t ∨ [(I − K_0 + 4) mod 16 < K_j − K_0 + 4]`: one
//!   1-out-of-32 OT per score with m-bit messages, `cmp::lt_small_or`) instead of m
//!   shared-leaf comparisons and their AND trees; where t may err both forms give 1, so the
//!   bits are exact and need no carry model.
//!
//! The softmax is invariant under the shift, so the output moves only by the exp's error on the
//! wider inputs; the bound below holds unchanged (tested with near-ties inside the ignored bits
//! and at the domain's edge). Per score the tree's millionaire narrows from 21 to 12 bits, the
//! exp floor's from 12 to 3 bits (one OT) and the m knot comparisons become one tail comparison
//! on 8 bits plus one lookup. Measured together with two changes below them (the field→ring
//! wraps as one-digit millionaires, `cmp`; the reciprocal converted to Z_t once per row, see
//! "Products"): 3,448 → 1,966 B per score with IKNP, 838 → 640 B with silent OT, 338 → 294
//! flights per layer with IKNP (mpnet-base, 12 heads × 128 × 128 scores, 2 cores,
//! `run --layers 1`).
//!
//! Per element the approximate truncations replace four faithful truncations (millionaires on f, f + guard and R bits
//! plus two COTs each) by four short COTs, at the price of one ℓ-bit multiplexer. The run
//! equals [`reference_softmax_carried`] given the carries (`trunc::trace`,
//! `tests/he_products.rs`). Versus the exact softmax: the Horner carries move v by less than
//! 3·2^−guard units, so each e_j moves by less than two units and the row sum by less than 2n:
//! `|out_j − p_j| ≤ (6 + 2n·p_j)·2^−f` (tested). Measured in the engine before approximate selection (mpnet-base, 12 heads ×
//! 128 × 128 scores, 2 cores, `run --layers 1`): 3,448 B per score and 338 flights per layer
//! with IKNP, 840 B and 362 flights with silent OT (3,753 B / 344 and 1,097 B / 368 when every
//! Horner product converted and uploaded u again and the client uploaded its own products;
//! 5,840 B and 486 flights with faithful truncations).
//!
//! **Error bound.** Protocol = reference exactly. Reference vs the exact softmax: exp per element
//! ≤ 0.65 LSB (fit ≤ 0.07, final rounding 0.5, Horner floors at F bits; unit-tested on every
//! input of [−14, 0]); outputs tested ≤ 4·2^−f absolute
//! (`tests/softmax_ln_recip.rs`).
//!
//! **Bytes per element** (n unmasked scores per row): tree `M(score_bits+1−d) + 2·C_cot(ℓ)`
//! (d = 0 without approximate selection), exp `M(c) + C_cot(k) + M_m(k−1) + m·C_cot(ℓ) + d·(2ℓ·C_cot(ℓ) + trunc)` (`M_m` = m comparisons
//! sharing leaf OTs, see `cmp`; before the coarse comparison `M_m(score_bits+2)`; c = f, or
//! [`EXP_CARRY_BITS`] with approximate selection), product
//! `2ℓ·C_cot(ℓ) + trunc`, plus the per-row reciprocal amortised over n. Rounds:
//! `⌈log2 n⌉·(millionaire + mux) + exp (≈ 7 flights per product) + recip + 1 product`.
//!
//! **Measured** (IKNP OT, HE products, 64 rows × 128 keys = one full ciphertext, both
//! directions; `tests/he_products.rs::softmax_bert_rows_bytes_per_score`): 5 840 B per score,
//! 248 flights. The whole-unit exp comparison saves ≈ 1.75 kB per score (3.0 → 1.3 kB) against
//! the recorded ≈ 7 590 B per score of the full-width version; what remains is mostly the five
//! HE products' faithful truncations and conversions (≈ 0.6 kB each), the max tree (≈ 0.7 kB)
//! and the exp's final truncation.
//!
//! **Security (semi-honest).** Composition of toolkit protocols (comparison, mux, B2A, product,
//! truncation) and `recip`, each returning fresh uniform ring shares; all selected constants are
//! public; the only public data used are the shape and the padding mask.
//!
//! **Products.** With `he_products` (the `fastlmpi` profile) every Horner product and the final
//! `e·(1/S)` is an HE product ([`crate::proto::linear::hemul::he_mul_trunc`]): both factors to
//! Z_t (`ring_to_field`), one HE product, back with `field_to_ring_trunc` — the same floor as
//! the OT product, so the reference is shared (bounds: Horner products < 2^(2f+guard+3),
//! final < 2^(f+R+2), both far below t/4). The Horner products all multiply by the same `u`,
//! which is converted and uploaded once ([`crate::proto::linear::hemul::Factor`]): per Horner
//! product C_ot(bits t) + (seeded + full)/N + field→ring + trunc, plus C_ot(bits t) + seeded/N
//! once for u; the final product multiplies by 1/S, which is converted to Z_t once per row and
//! repeated over the row's keys (one conversion per row, not per score):
//! C_ot(bits t)·(1 + 1/n) + (2·seeded + full)/N + field→ring + trunc
//! (instead of `2ℓ·C_cot(ℓ)` + trunc with OT). The server sees only fresh ciphertexts and
//! returns masked, flooded ones (see `hemul`).
//!
//! **Exp variants.** [`ExpKind::Segmented`] (FASTLMPI: unit-width segments, degree 4) and
//! [`ExpKind::IBert`] (BOLT: I-BERT's degree-2 i-exp, one segment per power of two).

use std::f64::consts::LN_2;

use crate::proto::toolkit::b2a::b2a_ring;
use crate::proto::toolkit::bits::BitShare;
use crate::proto::toolkit::cmp::{floor_narrow_partial, lt_public, lt_public_coarse, lt_small_or, msb_reduced, SMALL_INDEX};
use crate::proto::ctx::Party;
use crate::proto::linear::hemul::{he_mul_trunc_by, ring_factor, Factor, HeParty};
use crate::proto::toolkit::convert::ring_to_field;
use crate::proto::toolkit::mul::mul_trunc;
use crate::proto::toolkit::mux::mux;
use super::recip::{add_shares, reciprocal, scale_public, select_by_thresholds, sub_shares, RecipKind, RecipSpec};
use crate::proto::toolkit::trunc::{trace, trunc, TruncMode};
use crate::error::{Error, Result};
use crate::share::Ring;


/// Public parameters of the SoftMax protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftmaxSpec {
    pub ring: Ring,
    pub frac: u32,
    /// Unmasked scores satisfy `|x| < 2^score_bits` (integer representation).
    pub score_bits: u32,
    /// Degree of the per-segment exp polynomial.
    pub degree: usize,
    /// Extra fraction bits of the Horner accumulator.
    pub guard: u32,
    /// How exp is approximated on each segment.
    pub exp: ExpKind,
    /// Evaluate the Horner products and the final `e·(1/S)` as HE products (FASTLMPI's
    /// fine-grained HE/SS split) instead of OT products.
    pub he_products: bool,
    /// The exp's last truncation (by `f + guard`) and the normalisation's (`e·(1/S)` by `R`):
    /// `Faithful` floors, or `Approx`: the approximate truncation plus one unit,
    /// `⌊v⌋ + 1 − c` with the dropped carry c (see [`SoftmaxCarries`]), and the exp's
    /// coefficients without their rounding half. That is stochastic rounding of v
    /// (`P(⌊v⌋ + 1) = frac(v)` over the shares, so unbiased), exact where v is an integer:
    /// 0 stays 0 on the tail and on masked-out mass, so the row sum carries no drift (plain
    /// `⌊v⌋ − c` would lower every tail term by one unit and S by their number). The Horner
    /// truncations become plain approximate ones (⌊·⌋ − c at `f + guard` bits) after one
    /// multiplexer sets `u = 0` on the tail: there the polynomial is identically 0 and `u = z`
    /// is unbounded, so a dropped carry would grow through the products.
    pub trunc: TruncMode,
}

/// Horner truncations of the exp with degree-4 segments: the carry model's sites
/// (`model::CarrySite::SoftmaxHorner1..3`) fix their number, so an approximate spec needs
/// `degree = HORNER_SITES + 1`.
pub const HORNER_SITES: usize = 3;

/// The carries a SoftMax row's approximate truncations dropped, one per unmasked key in key
/// order: `horner[i]` at the exp's Horner step i (the protocol's order, highest degree first),
/// `e_j = ⌊v_j⌋ + 1 − exp[j]` and likewise the output with `out[j]`
/// (`proto::toolkit::trunc`, and [`SoftmaxSpec::trunc`] for the added unit).
#[derive(Clone, Copy, Debug)]
pub struct SoftmaxCarries<'a> {
    /// The max tree's comparisons (approximate selection): per row its carries in tree order
    /// (level by level, pairs in key order), then a 0.
    pub max: &'a [u8],
    /// The exp's segment floor (approximate selection): the carry of the fraction's low
    /// `f − EXP_CARRY_BITS` bits it ignored.
    pub knot: &'a [u8],
    pub horner: [&'a [u8]; HORNER_SITES],
    pub exp: &'a [u8],
    pub out: &'a [u8],
}

/// The exp approximation of a SoftMax spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpKind {
    /// FASTLMPI: unit-width segments, Chebyshev interpolation of degree `degree`.
    Segmented,
    /// BOLT / I-BERT: `e^z = 2^(−l)·e^p`, `z = −l·ln2 + p`, `e^p ≈ 0.3585(p + 1.353)² + 0.344`,
    /// `l ≤ 13`. Each `l` is one segment of width ln 2 with `2^(−l)` folded into its
    /// degree-2 coefficients, so the same selection-and-Horner protocol evaluates it.
    IBert,
}

/// I-BERT's i-exp: `exp(p) ≈ A(p + B)² + C` on `(−ln2, 0]`; BOLT clamps `l` at 13.
const IBERT_A: f64 = 0.3585;
const IBERT_B: f64 = 1.353;
const IBERT_C: f64 = 0.344;
const IBERT_SEGMENTS: i64 = 14;

impl SoftmaxSpec {
    /// Defaults: degree 4, 8 guard bits, scores below 2^(frac+8) (|score| < 256).
    pub fn new(ring: Ring, frac: u32) -> Result<SoftmaxSpec> {
        let s = SoftmaxSpec { ring, frac, score_bits: frac + 8, degree: 4, guard: 8, exp: ExpKind::Segmented, he_products: false, trunc: TruncMode::Faithful };
        s.check()?;
        Ok(s)
    }

    /// BOLT's SoftMax: the same max tree and reciprocal, I-BERT's degree-2 exp (6 guard bits so
    /// that BOLT's ℓ = 37 ring holds the Horner products).
    pub fn ibert(ring: Ring, frac: u32) -> Result<SoftmaxSpec> {
        let s = SoftmaxSpec { ring, frac, score_bits: frac + 8, degree: 2, guard: 6, exp: ExpKind::IBert, he_products: false, trunc: TruncMode::Faithful };
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<()> {
        let l = self.ring.bits();
        if self.degree == 0 || self.frac < 2 || self.score_bits < self.frac + 1 || self.score_bits + 3 > l {
            return Err(Error::Config(format!("softmax spec {self:?}: needs degree ≥ 1, frac+1 ≤ score_bits ≤ ℓ−3")));
        }
        // Horner products: y < 2^(F+2), u < 2^(f+1) (in-segment)
        if 2 * self.frac + self.guard + 4 > l - 2 {
            return Err(Error::Config(format!("softmax spec {self:?}: exp accumulator exceeds the ring")));
        }
        if self.trunc == TruncMode::Approx && self.degree != HORNER_SITES + 1 {
            return Err(Error::Config(format!("softmax spec {self:?}: approximate truncations are modelled for degree-{} exp segments", HORNER_SITES + 1)));
        }
        Ok(())
    }

    /// Output fraction bits of the reciprocal of the row sum.
    pub fn recip_frac(&self) -> u32 {
        (2 * self.frac).min(self.ring.bits() - 4 - self.frac)
    }

    /// The reciprocal spec for rows of `n` unmasked keys at most.
    pub fn recip_spec(&self, n: usize) -> Result<RecipSpec> {
        RecipSpec::new(self.ring, RecipKind::Recip, self.frac, self.recip_frac(), self.frac - 1, self.frac + ceil_log2(n) + self.exp_headroom())
    }

    /// Bits by which an exp value may exceed 1: with approximate selection the subtracted
    /// maximum is up to one unit low, so e^z < e < 2^2; otherwise z ≤ 0 and e ≤ 1 (+ rounding).
    fn exp_headroom(&self) -> u32 {
        u32::from(self.approx_selection())
    }

    /// The segmented exp fit (deterministic; both parties derive it from the spec). With an
    /// approximate final truncation (which rounds stochastically) the constant terms lose the
    /// half unit that makes a floor round to nearest.
    pub fn exp_fit(&self) -> ExpFit {
        match (self.exp, self.trunc) {
            (ExpKind::Segmented, TruncMode::Faithful) => ExpFit::new(self.frac, self.degree, self.guard),
            (ExpKind::Segmented, TruncMode::Approx) => ExpFit::approximate(self.frac, self.degree, self.guard),
            (ExpKind::IBert, TruncMode::Faithful) => ExpFit::ibert(self.frac, self.guard),
            (ExpKind::IBert, TruncMode::Approx) => ExpFit::ibert(self.frac, self.guard).without_rounding_half(),
        }
    }

    /// Whether the max tree and the exp's segment selection are approximate (see
    /// "Approximate selection" in the module header): the segmented exp with approximate
    /// truncations.
    pub fn approx_selection(&self) -> bool {
        self.exp == ExpKind::Segmented && self.trunc == TruncMode::Approx
    }
}

/// With approximate selection the exp's segment floor takes the carry of the top 3 of the f
/// fraction bits (one 1-out-of-8 OT), so a score may be placed one segment low when its
/// fraction is below 2^−3: every segment is fitted on `[0, 1 + 2^−3]`.
pub const EXP_CARRY_BITS: u32 = 3;

/// Low bits the max tree ignores in a row of `n` keys under approximate selection:
/// `d = f − ⌈log2 L⌉` for `L = ⌈log2 n⌉` levels, so the `L` comparisons on a path each lose
/// less than `2^d` units and the chosen maximum is less than one unit (`L·2^d ≤ 2^f`) below the
/// true one (0 for a row of one key: no comparison).
pub fn tree_drop_bits(frac: u32, n: usize) -> u32 {
    let levels = ceil_log2(n);
    frac.saturating_sub(ceil_log2(levels as usize))
}

fn ceil_log2(n: usize) -> u32 {
    usize::BITS - n.max(1).saturating_sub(1).leading_zeros()
}

/// Segmented exp on `[−m, 0]`: knots `K_j` (integers at `frac`) and coefficients at `frac+guard`.
#[derive(Clone, Debug, PartialEq)]
pub struct ExpFit {
    pub frac: u32,
    pub guard: u32,
    /// `K_0 < … < K_(m−1)`; segment j is `[K_j, K_j + 2^frac)`, the tail `z < K_0` gives 0.
    pub knots: Vec<i64>,
    /// `coeffs[j][k]`: coefficient of `u^k` (u at frac bits) at `frac + guard` bits.
    pub coeffs: Vec<Vec<i64>>,
}

impl ExpFit {
    pub fn new(frac: u32, degree: usize, guard: u32) -> ExpFit {
        Self::unit_segments(frac, degree, guard, 0, 1.0)
    }

    /// The fit of approximate selection: a further segment `[0, 1)` (the subtracted maximum may
    /// be up to one unit low), every segment fitted on `[0, 1 + 2^−EXP_CARRY_BITS]` (a
    /// segment floor that misses the carry of the low fraction bits moves `u` up by one unit),
    /// and no rounding half (the final truncation rounds stochastically).
    pub fn approximate(frac: u32, degree: usize, guard: u32) -> ExpFit {
        Self::unit_segments(frac, degree, guard, 1, 1.0 + (-(EXP_CARRY_BITS as f64)).exp2()).without_rounding_half()
    }

    /// Unit segments from `−⌈(f+1)·ln 2⌉` up to `above` units above 0, each polynomial
    /// fitted on `u ∈ [0, width]`.
    fn unit_segments(frac: u32, degree: usize, guard: u32, above: i64, width: f64) -> ExpFit {
        let segments = ((frac + 1) as f64 * LN_2).ceil() as i64;
        let one = 1i64 << frac;
        let scale = ((frac + guard) as f64).exp2();
        let knots: Vec<i64> = (-segments..above).map(|j| j * one).collect();
        let coeffs = knots
            .iter()
            .map(|&k| {
                let base = k as f64 / one as f64;
                let mut c: Vec<i64> =
                    chebyshev_fit_on(|u| (base + u).exp(), degree, width).iter().map(|a| (a * scale).round() as i64).collect();
                // Half an output LSB, so that the final floor rounds to nearest.
                c[0] += rounding_half(guard);
                c
            })
            .collect();
        ExpFit { frac, guard, knots, coeffs }
    }

    /// I-BERT's exp as segments: segment `j` is `[K_j, K_(j+1))` with `K_j = ⌊−(14 − j)·ln2⌉`,
    /// `l = 13 − j`, `p = u − ln2` for `u = z − K_j`, coefficients of `2^(−l)·(A(u − ln2 + B)² + C)`.
    pub fn ibert(frac: u32, guard: u32) -> ExpFit {
        let one = (frac as f64).exp2();
        let scale = ((frac + guard) as f64).exp2();
        let knots: Vec<i64> = (0..IBERT_SEGMENTS).map(|j| (-((IBERT_SEGMENTS - j) as f64) * LN_2 * one).round() as i64).collect();
        let shift = IBERT_B - LN_2;
        let coeffs = (0..IBERT_SEGMENTS)
            .map(|j| {
                let w = (-((IBERT_SEGMENTS - 1 - j) as f64)).exp2();
                let poly = [IBERT_A * shift * shift + IBERT_C, 2.0 * IBERT_A * shift, IBERT_A];
                let mut c: Vec<i64> = poly.iter().map(|a| (a * w * scale).round() as i64).collect();
                c[0] += rounding_half(guard);
                c
            })
            .collect();
        ExpFit { frac, guard, knots, coeffs }
    }

    /// The same fit without the half unit in each constant term (the final floor then
    /// truncates instead of rounding to nearest).
    pub fn without_rounding_half(mut self) -> ExpFit {
        for c in &mut self.coeffs {
            c[0] -= rounding_half(self.guard);
        }
        self
    }

    /// Cleartext mirror of the protocol's exp on one `z ≤ 0` (the floor of its last step).
    pub fn eval(&self, z: i64) -> i64 {
        self.eval_carried(z, &[])
    }

    /// [`ExpFit::eval`] with `horner[i]` subtracted after Horner step i (highest degree
    /// first; missing entries are 0), as an approximate run's steps drop their carries.
    pub fn eval_carried(&self, z: i64, horner: &[u8]) -> i64 {
        self.eval_selected(z, z, horner)
    }

    /// [`ExpFit::eval_carried`] with the segment chosen for `z_sel` (the value the segment
    /// floor saw: `z` less the carry it missed) and the polynomial evaluated at `z`.
    pub fn eval_selected(&self, z: i64, z_sel: i64, horner: &[u8]) -> i64 {
        let Some(j) = self.knots.iter().rposition(|&k| k <= z_sel) else { return 0 };
        let c = &self.coeffs[j];
        let u = (z - self.knots[j]) as i128;
        let f = self.frac;
        let d = c.len() - 1;
        let mut y = c[d] as i128;
        for (step, k) in (1..d).rev().enumerate() {
            let carry = horner.get(step).map_or(0, |&c| i128::from(c));
            y = ((y * u) >> f) - carry + c[k] as i128;
        }
        ((y * u + ((c[0] as i128) << f)) >> (f + self.guard)) as i64
    }
}

/// Half an output unit at `guard` extra fraction bits: added to an exp segment's constant
/// term, it makes the final floor round to nearest.
fn rounding_half(guard: u32) -> i64 {
    1i64 << guard.saturating_sub(1)
}

/// Monomial coefficients (in u ∈ [0, 1]) of the polynomial interpolating `g` at the Chebyshev
/// nodes of degree `d`.
pub(crate) fn chebyshev_fit(g: impl Fn(f64) -> f64, d: usize) -> Vec<f64> {
    chebyshev_fit_on(g, d, 1.0)
}

/// Monomial coefficients (in u ∈ [0, width]) of the polynomial interpolating `g` at the
/// Chebyshev nodes of that interval.
fn chebyshev_fit_on(g: impl Fn(f64) -> f64, d: usize, width: f64) -> Vec<f64> {
    let unit = chebyshev_fit_unit(|v| g(width * v), d);
    unit.iter().enumerate().map(|(k, a)| a / width.powi(k as i32)).collect()
}

fn chebyshev_fit_unit(g: impl Fn(f64) -> f64, d: usize) -> Vec<f64> {
    let n = d + 1;
    let nodes: Vec<f64> =
        (0..n).map(|k| 0.5 + 0.5 * ((2 * k + 1) as f64 * std::f64::consts::PI / (2 * n) as f64).cos()).collect();
    // Vandermonde system, Gaussian elimination with partial pivoting (n ≤ 8).
    let mut a: Vec<Vec<f64>> = nodes.iter().map(|&u| (0..n).map(|k| u.powi(k as i32)).chain([g(u)]).collect()).collect();
    for col in 0..n {
        let piv = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs())).unwrap_or(col);
        a.swap(col, piv);
        for row in 0..n {
            if row != col {
                let factor = a[row][col] / a[col][col];
                for k in col..=n {
                    a[row][k] -= factor * a[col][k];
                }
            }
        }
    }
    (0..n).map(|i| a[i][n] / a[i][i]).collect()
}

/// The active (unmasked) column indices of each row; `mask` has `cols` (per key) or
/// `rows·cols` entries.
fn active_columns(rows: usize, cols: usize, mask: &[u32]) -> Result<Vec<Vec<usize>>> {
    let per_row = match mask.len() {
        l if l == cols => false,
        l if l == rows * cols => true,
        l => return Err(Error::Shape { tensor: "softmax mask".into(), expected: vec![rows, cols], got: vec![l] }),
    };
    (0..rows)
        .map(|i| {
            let m = if per_row { &mask[i * cols..(i + 1) * cols] } else { mask };
            let act: Vec<usize> = (0..cols).filter(|&j| m[j] != 0).collect();
            if act.is_empty() {
                Err(Error::Input(format!("softmax row {i} has no unmasked key")))
            } else {
                Ok(act)
            }
        })
        .collect()
}

/// Two-party SoftMax of `rows × cols` scores (row-major shares). `he` is needed when
/// `spec.he_products` is set.
pub fn softmax(p: &mut Party, he: Option<&HeParty>, spec: &SoftmaxSpec, scores: &[u64], rows: usize, cols: usize, mask: &[u32]) -> Result<Vec<u64>> {
    spec.check()?;
    let mul = Products::new(spec, he)?;
    if scores.len() != rows * cols {
        return Err(Error::Shape { tensor: "softmax scores".into(), expected: vec![rows, cols], got: vec![scores.len()] });
    }
    let ring = spec.ring;
    let active = active_columns(rows, cols, mask)?;
    let row_vals: Vec<Vec<u64>> = active.iter().enumerate().map(|(i, a)| a.iter().map(|&j| scores[i * cols + j]).collect()).collect();
    p.ch.set_phase("softmax-max");
    let maxes = row_max(p, spec, row_vals.clone())?;

    let z: Vec<u64> = row_vals.iter().zip(&maxes).flat_map(|(r, &m)| r.iter().map(move |&v| ring.sub(v, m))).collect();
    p.ch.set_phase("softmax-exp");
    let e = exp_with(p, spec, &mul, &z)?;

    let mut sums = Vec::with_capacity(rows);
    let mut pos = 0;
    for r in &row_vals {
        sums.push(e[pos..pos + r.len()].iter().fold(0, |acc, &v| ring.add(acc, v)));
        pos += r.len();
    }
    p.ch.set_phase("softmax-recip");
    let longest = active.iter().map(Vec::len).max().unwrap_or(1);
    let r = reciprocal(p, &spec.recip_spec(longest)?, &sums)?;
    let lens: Vec<usize> = row_vals.iter().map(Vec::len).collect();
    p.ch.set_phase("softmax-product");
    let mut r_bcast = mul.row_factor(p, &r, &lens)?;
    let prob = mul.mul_trunc_by(p, &mut r_bcast, &e, spec.recip_frac(), spec.frac + 1 + spec.exp_headroom() + spec.recip_frac() + 1, spec.trunc)?;
    let prob = round_up_unless_carried(p, spec, prob);

    let mut out = vec![0u64; rows * cols];
    let mut it = prob.into_iter();
    for (i, a) in active.iter().enumerate() {
        for (&j, v) in a.iter().zip(&mut it) {
            out[i * cols + j] = v;
        }
    }
    Ok(out)
}

/// Row maxima by a pairwise comparison tree (all rows of a level in one batch). With
/// approximate selection each comparison ignores the low [`tree_drop_bits`] of the difference
/// (narrower millionaires; the carry it misses is traced, one call for the whole tree, row by
/// row, one entry per key: the row's comparisons in tree order, then 0).
fn row_max(p: &mut Party, spec: &SoftmaxSpec, mut rows: Vec<Vec<u64>>) -> Result<Vec<u64>> {
    let ring = spec.ring;
    let approx = spec.approx_selection();
    let drop: Vec<u32> = rows.iter().map(|r| if approx { tree_drop_bits(spec.frac, r.len()) } else { 0 }).collect();
    // Each comparison's low bits only matter to a running trace (the simulation's carry model).
    let tracing = approx && trace::is_active();
    let mut low: Vec<Vec<u64>> = rows.iter().map(|r| Vec::with_capacity(if tracing { r.len() } else { 0 })).collect();
    while rows.iter().any(|r| r.len() > 1) {
        let (mut a, mut b, mut owner) = (Vec::new(), Vec::new(), Vec::new());
        for (i, r) in rows.iter().enumerate() {
            for pair in r.chunks_exact(2) {
                a.push(pair[0]);
                b.push(pair[1]);
                owner.push(i);
            }
        }
        let diff = sub_shares(ring, &a, &b);
        let mut a_lt_b = vec![0u8; diff.len()];
        let mut ds: Vec<u32> = owner.iter().map(|&i| drop[i]).collect();
        ds.sort_unstable();
        ds.dedup();
        for d in ds {
            let at: Vec<usize> = (0..diff.len()).filter(|&k| drop[owner[k]] == d).collect();
            let part: Vec<u64> = at.iter().map(|&k| diff[k]).collect();
            let lt = msb_reduced(p, ring, &part, spec.score_bits + 2, d)?;
            for (&k, bit) in at.iter().zip(lt) {
                a_lt_b[k] = bit;
            }
        }
        if tracing {
            for (k, &i) in owner.iter().enumerate() {
                low[i].push(diff[k] & ((1u64 << drop[i]) - 1));
            }
        }
        let delta = mux(p, ring, &a_lt_b, &sub_shares(ring, &b, &a))?;
        let winners = add_shares(ring, &a, &delta);
        let mut pos = 0;
        for r in rows.iter_mut() {
            let half = r.len() / 2;
            let mut next = winners[pos..pos + half].to_vec();
            pos += half;
            if r.len() % 2 == 1 {
                next.push(r[r.len() - 1]);
            }
            *r = next;
        }
    }
    if tracing {
        // One traced call per tree; entries padded to one per key (a 0 never carries). The
        // rows of one tree share d unless their lengths differ; `record_tree` rescales each
        // row's entries to the call's shift, the largest d.
        record_tree(&drop, low);
    }
    rows.iter().map(|r| r.first().copied().ok_or_else(|| Error::protocol("softmax", "empty row"))).collect()
}

/// Traces the max tree's comparisons as one call: per row its low bits in comparison order and
/// a 0 for the last key. Rows with fewer dropped bits `d_i` than the call's shift `D` have their
/// entries scaled by `2^(D − d_i)`, which keeps each carry `[l_S + l_C ≥ 2^d_i]`.
fn record_tree(drop: &[u32], low: Vec<Vec<u64>>) {
    let shift = drop.iter().copied().max().unwrap_or(0);
    trace::record(shift, || {
        low.into_iter().zip(drop).flat_map(|(row, &d)| row.into_iter().map(move |v| v << (shift - d)).chain(std::iter::once(0))).collect()
    });
}

/// How the element-wise products of the protocol are computed.
enum Products<'h, 'a> {
    Ot(Ring),
    He(Ring, &'h HeParty<'a>),
}

impl<'h, 'a> Products<'h, 'a> {
    fn new(spec: &SoftmaxSpec, he: Option<&'h HeParty<'a>>) -> Result<Products<'h, 'a>> {
        match (spec.he_products, he) {
            (false, _) => Ok(Products::Ot(spec.ring)),
            (true, Some(he)) => Ok(Products::He(spec.ring, he)),
            (true, None) => Err(Error::Config("SoftMax with HE products needs the HE keys".into())),
        }
    }

    /// One value per row (the reciprocals), repeated over the row's `lens[i]` keys as a
    /// multiplier: with HE products each row's value is converted to Z_t once, then repeated.
    fn row_factor(&self, p: &mut Party, per_row: &[u64], lens: &[usize]) -> Result<Multiplier> {
        let repeat = |v: &[u64]| -> Vec<u64> { v.iter().zip(lens).flat_map(|(&x, &n)| std::iter::repeat_n(x, n)).collect() };
        match self {
            Products::Ot(_) => Ok(Multiplier::Ring(repeat(per_row))),
            Products::He(ring, he) => Ok(Multiplier::He(Factor::new(repeat(&ring_to_field(p, *ring, he.ctx.field(), per_row)?)))),
        }
    }

    /// `u` prepared as the common multiplier of several products ([`Self::mul_trunc_by`]):
    /// with HE products it is converted to Z_t and uploaded once, not once per product.
    fn factor(&self, p: &mut Party, u: &[u64]) -> Result<Multiplier> {
        match self {
            Products::Ot(_) => Ok(Multiplier::Ring(u.to_vec())),
            Products::He(ring, he) => Ok(Multiplier::He(ring_factor(p, he, *ring, u)?)),
        }
    }

    /// `⌊u·y / 2^s⌋` (or one less, `mode`; exact for s = 0) by a prepared multiplier, for
    /// `|u·y| < 2^bound_bits`.
    #[allow(clippy::too_many_arguments)]
    fn mul_trunc_by(&self, p: &mut Party, u: &mut Multiplier, y: &[u64], s: u32, bound_bits: u32, mode: TruncMode) -> Result<Vec<u64>> {
        match (self, u) {
            (Products::Ot(ring), Multiplier::Ring(u)) => mul_trunc(p, *ring, y, u, s, mode),
            (Products::He(ring, he), Multiplier::He(f)) => he_mul_trunc_by(p, he, *ring, f, y, s, bound_bits, mode),
            _ => Err(Error::Config("SoftMax: multiplier prepared for the other product kind".into())),
        }
    }
}

/// A multiplier shared by several products (the exp's `u`).
enum Multiplier {
    Ring(Vec<u64>),
    He(Factor),
}

/// Shares of the fitted `e^z` (at `frac`) for shared `z ≤ 0`.
pub fn exp_nonpositive(p: &mut Party, he: Option<&HeParty>, spec: &SoftmaxSpec, z: &[u64]) -> Result<Vec<u64>> {
    let mul = Products::new(spec, he)?;
    exp_with(p, spec, &mul, z)
}

fn exp_with(p: &mut Party, spec: &SoftmaxSpec, mul: &Products, z: &[u64]) -> Result<Vec<u64>> {
    let ring = spec.ring;
    let fit = spec.exp_fit();
    let n = z.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let f = spec.frac;
    let bits = match spec.exp {
        // Whole-unit knots: compare the integer part of z on k = score_bits + 3 − f bits.
        ExpKind::Segmented if spec.approx_selection() => segment_bits_by_lookup(p, spec, z, &fit.knots)?,
        ExpKind::Segmented => lt_public_coarse(p, ring, z, &fit.knots, f, spec.score_bits + 3 - f)?,
        ExpKind::IBert => lt_public(p, ring, z, &fit.knots, spec.score_bits + 3, 0)?,
    };
    let arith = b2a_ring(p, ring, &bits.concat())?;
    let ind: Vec<Vec<u64>> = arith.chunks(n).map(|c| c.to_vec()).collect();
    // Tables prefixed by the tail's value (0).
    let table = |vals: Vec<i64>| -> Vec<i64> { std::iter::once(0).chain(vals).collect() };
    let offset = select_by_thresholds(p, ring, &ind, &table(fit.knots.clone()), n);
    let d = spec.degree;
    let coeff: Vec<Vec<u64>> =
        (0..=d).map(|k| select_by_thresholds(p, ring, &ind, &table(fit.coeffs.iter().map(|c| c[k]).collect()), n)).collect();
    let mut u = sub_shares(ring, z, &offset);
    if spec.trunc == TruncMode::Approx {
        // u = 0 on the tail (z < K_0), where every coefficient is 0: the approximate Horner
        // steps may leave y = −1 there, which must not meet the unbounded u = z.
        let tail_u = mux(p, ring, &bits[0], &u)?;
        u = sub_shares(ring, &u, &tail_u);
    }
    // In-segment bounds: y < 2^(F+2), u < 2^(f+1), so every product is below 2^(F+f+3).
    let bound = f + spec.guard + f + 3;
    let mut u = mul.factor(p, &u)?;
    let mut y = coeff[d].clone();
    for k in (1..d).rev() {
        let prod = mul.mul_trunc_by(p, &mut u, &y, f, bound, spec.trunc)?;
        y = add_shares(ring, &prod, &coeff[k]);
    }
    let yu = mul.mul_trunc_by(p, &mut u, &y, 0, bound, TruncMode::Faithful)?;
    let last = add_shares(ring, &yu, &scale_public(ring, &coeff[0], 1i64 << f));
    let e = trunc(p, ring, &last, f + spec.guard, spec.trunc)?;
    Ok(round_up_unless_carried(p, spec, e))
}

/// `[z < K_j]` for the unit knots `K_0 < … < K_(m−1)` (at most 12 units apart) with
/// approximate selection: the integer part `I = ⌊z/2^f⌋` (or one less, the partial carry) in
/// `Z_{2^k}`, one cheap tail comparison and one table lookup for all the knots. With `B = K_0 −
/// 2^TAIL_DROP` the tail bit `t ≈ [I < B]` ignores the low [`TAIL_DROP`] bits of `I − B`
/// (`cmp::msb_reduced`: exact below B and from K_0 on, either value in between), and
/// `[I < K_j] = t ∨ [(I − B) mod 16 < K_j − B]`: off the tail `I − B ∈ [0, 15]`, on it every
/// bit is 1, and for `I ∈ [B, K_0)` both forms give 1, so the bits are exact whatever t says
/// there. One 1-out-of-32 OT per score carries all m bits (`cmp::lt_small_or`) instead of m
/// shared-leaf comparisons and their AND trees, and the tail comparison runs on `k − 1 −
/// TAIL_DROP` bits.
fn segment_bits_by_lookup(p: &mut Party, spec: &SoftmaxSpec, z: &[u64], knots: &[i64]) -> Result<Vec<BitShare>> {
    let f = spec.frac;
    let k = spec.score_bits + 3 - f;
    let units: Vec<i64> = knots.iter().map(|&kn| kn >> f).collect();
    let (&first, &last) = (units.first().ok_or_else(|| Error::Config("exp without knots".into()))?, units.last().unwrap_or(&0));
    let base = first - (1 << TAIL_DROP);
    if last - base >= SMALL_INDEX as i64 || knots.iter().any(|&kn| kn & ((1 << f) - 1) != 0) {
        return Err(Error::Config(format!("exp knots {units:?}: the lookup needs whole units within {} of the first", SMALL_INDEX as i64 - (1 << TAIL_DROP))));
    }
    let narrow = Ring::new(k)?;
    let high = floor_narrow_partial(p, spec.ring, z, f, EXP_CARRY_BITS, narrow)?;
    let offset = if p.is_server() { narrow.from_signed(-base) } else { 0 };
    let from_base: Vec<u64> = high.iter().map(|&v| narrow.add(v, offset)).collect();
    let tail = msb_reduced(p, narrow, &from_base, k, TAIL_DROP)?;
    let index: Vec<u8> = from_base.iter().map(|&v| (v % SMALL_INDEX as u64) as u8).collect();
    let taus: Vec<u8> = units.iter().map(|&u| (u - base) as u8).collect();
    lt_small_or(p, &index, &tail, &taus)
}

/// Low bits the exp's tail comparison ignores (see [`segment_bits_by_lookup`]): its reach of
/// 4 units below the first knot fits the 16-entry table with the 11 unit knots.
const TAIL_DROP: u32 = 2;

/// After an approximate truncation (`⌊v⌋ − c`) the server adds one unit: `⌊v⌋ + 1 − c`, v
/// rounded stochastically (see [`SoftmaxSpec::trunc`]). Faithful results pass unchanged.
fn round_up_unless_carried(p: &Party, spec: &SoftmaxSpec, mut v: Vec<u64>) -> Vec<u64> {
    if spec.trunc == TruncMode::Approx && p.is_server() {
        for x in &mut v {
            *x = spec.ring.add(*x, 1);
        }
    }
    v
}

/// Cleartext mirror of [`softmax`] on one row, masked keys giving 0: bit-exact with the
/// faithful protocol (`spec.trunc` is taken as `Faithful`; an approximate run is mirrored by
/// [`reference_softmax_carried`] given its carries).
pub fn reference_softmax(scores: &[i64], mask: &[u32], spec: &SoftmaxSpec) -> Result<Vec<i64>> {
    let faithful = SoftmaxSpec { trunc: TruncMode::Faithful, ..*spec };
    let active = mask.iter().filter(|&&m| m != 0).count();
    let zeros = vec![0u8; active];
    reference_softmax_carried(scores, mask, &faithful, SoftmaxCarries { max: &zeros, knot: &zeros, horner: [&zeros; HORNER_SITES], exp: &zeros, out: &zeros })
}

/// [`reference_softmax`] of a run under `spec` whose truncations dropped `carries` (all 0 for
/// a faithful spec); bit-exact with that run.
pub fn reference_softmax_carried(scores: &[i64], mask: &[u32], spec: &SoftmaxSpec, carries: SoftmaxCarries) -> Result<Vec<i64>> {
    spec.check()?;
    if mask.len() != scores.len() {
        return Err(Error::Shape { tensor: "softmax mask".into(), expected: vec![scores.len()], got: vec![mask.len()] });
    }
    let active: Vec<usize> = (0..scores.len()).filter(|&j| mask[j] != 0).collect();
    if active.is_empty() {
        return Err(Error::Input("softmax row has no unmasked key".into()));
    }
    let fit = spec.exp_fit();
    let c = carries;
    let lens: Vec<usize> = [&c.max, &c.knot].into_iter().chain(c.horner.iter()).chain([&c.exp, &c.out]).map(|s| s.len()).collect();
    if lens.iter().any(|&l| l != active.len()) {
        return Err(Error::Shape { tensor: "softmax carries".into(), expected: vec![active.len()], got: lens });
    }
    let vals: Vec<i64> = active.iter().map(|&j| scores[j]).collect();
    let (max, knot_drop) = if spec.approx_selection() {
        (tree_max_carried(&vals, tree_drop_bits(spec.frac, vals.len()), c.max), spec.frac - EXP_CARRY_BITS)
    } else {
        (vals.iter().copied().max().unwrap_or(0), 0)
    };
    // An approximate truncation's result is ⌊v⌋ + 1 − c (`round_up_unless_carried`).
    let dropped = |c: u8| -> i64 {
        match spec.trunc {
            TruncMode::Faithful => -i64::from(c),
            TruncMode::Approx => 1 - i64::from(c),
        }
    };
    let e: Vec<i64> = active
        .iter()
        .enumerate()
        .map(|(i, &j)| {
            let horner: Vec<u8> = c.horner.iter().map(|h| h[i]).collect();
            let z = scores[j] - max;
            fit.eval_selected(z, z - (i64::from(c.knot[i]) << knot_drop), &horner) + dropped(c.exp[i])
        })
        .collect();
    let sum: i64 = e.iter().sum();
    let r = super::recip::reference(&spec.recip_spec(active.len())?, sum)? as i128;
    let mut out = vec![0i64; scores.len()];
    for ((&j, &ej), &cj) in active.iter().zip(&e).zip(c.out) {
        out[j] = ((ej as i128 * r) >> spec.recip_frac()) as i64 + dropped(cj);
    }
    Ok(out)
}

/// The protocol's max tree on one row's values, each comparison `[a < b]` decided as
/// `[⌊(a − b)/2^d⌋ − γ < 0]` with `γ` the next of `carries` (row order of [`row_max`]).
fn tree_max_carried(vals: &[i64], d: u32, carries: &[u8]) -> i64 {
    let mut level = vals.to_vec();
    let mut next_carry = carries.iter();
    while level.len() > 1 {
        let mut next: Vec<i64> = level
            .chunks_exact(2)
            .map(|pair| {
                let gamma = i64::from(*next_carry.next().unwrap_or(&0));
                if ((pair[0] - pair[1]) >> d) - gamma < 0 {
                    pair[1]
                } else {
                    pair[0]
                }
            })
            .collect();
        if level.len() % 2 == 1 {
            next.push(level[level.len() - 1]);
        }
        level = next;
    }
    level[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_fit_is_accurate_to_a_fraction_of_an_lsb() {
        let fit = ExpFit::new(12, 4, 8);
        let lsb = 2f64.powi(-12);
        let mut worst: f64 = 0.0;
        for z in -(14 << 12)..=0i64 {
            let got = fit.eval(z) as f64 * lsb;
            let want = (z as f64 * lsb).exp();
            worst = worst.max((got - want).abs());
        }
        assert!(worst <= 0.65 * lsb, "exp fit error {worst}");
        assert_eq!(fit.eval(fit.knots[0] - 1), 0);
        assert_eq!(fit.eval(i64::MIN / 4), 0);
    }

    /// The fit of approximate selection on everything the protocol may feed it: z up to one
    /// unit above 0 (a low maximum), and each z also one segment low (a missed carry, possible
    /// when its fraction is below 2^−3): within 0.25 LSB of e^z before the final truncation,
    /// which rounds stochastically (so < 1.25 LSB after it).
    #[test]
    fn approximate_exp_fit_covers_its_wider_inputs() {
        let (f, guard) = (12, 8);
        let fit = ExpFit::approximate(f, 4, guard);
        let lsb = 2f64.powi(-(f as i32));
        let scale = 2f64.powi((f + guard) as i32);
        let mut worst: f64 = 0.0;
        for z in -(14 << f)..(1i64 << f) {
            let low = z - (1 << (f - EXP_CARRY_BITS));
            let want = (z as f64 * lsb).exp();
            for z_sel in [z, low] {
                // The value before the final floor: recompute the last step without flooring.
                let Some(j) = fit.knots.iter().rposition(|&k| k <= z_sel) else { continue };
                let c = &fit.coeffs[j];
                let u = (z - fit.knots[j]) as f64 * lsb;
                let v: f64 = c.iter().rev().fold(0.0, |acc, &ck| acc * u + ck as f64) / scale;
                worst = worst.max((v - want).abs() / lsb);
            }
        }
        assert!(worst <= 0.25, "approximate exp fit error {worst} LSB");
        assert_eq!(fit.eval(fit.knots[0] - 1), 0);
    }

    #[test]
    fn tree_drop_keeps_the_maximum_within_a_unit() {
        for n in 2..600usize {
            let levels = (n as f64).log2().ceil() as i64;
            let d = tree_drop_bits(12, n);
            assert!(levels * ((1i64 << d) - 1) < 1 << 12, "n {n}: d {d}");
        }
        assert_eq!(tree_drop_bits(12, 128), 9);
        // Comparisons lose less than 2^d each: the mirror picks within L·2^d of the maximum.
        let vals: Vec<i64> = (0..128).map(|j| (j * 37) % 511).collect();
        let max = *vals.iter().max().unwrap();
        let got = tree_max_carried(&vals, 9, &[1u8; 128]);
        assert!(got > max - 7 * 512 && got < max, "{got} vs {max}");
        assert_eq!(tree_max_carried(&vals, 9, &[0u8; 128]), max);
    }

    /// I-BERT's exp keeps its published accuracy (relative error of e^p about 0.5 %).
    #[test]
    fn ibert_exp_is_within_its_published_error() {
        let fit = ExpFit::ibert(12, 6);
        let lsb = 2f64.powi(-12);
        let mut worst: f64 = 0.0;
        for z in -(10 << 12)..=0i64 {
            let want = (z as f64 * lsb).exp();
            worst = worst.max((fit.eval(z) as f64 * lsb - want).abs());
        }
        assert!(worst < 5e-3 && worst > 1e-3, "I-BERT exp error {worst}");
        assert_eq!(fit.eval(fit.knots[0] - 1), 0);
    }

    #[test]
    fn reference_softmax_masks_and_sums_to_one() {
        let spec = SoftmaxSpec::new(Ring::new(40).unwrap(), 12).unwrap();
        let scores = [4096, -8192, 100, 7000, 0, 123456];
        let mask = [1, 1, 1, 1, 1, 0];
        let out = reference_softmax(&scores, &mask, &spec).unwrap();
        assert_eq!(out[5], 0);
        let total: i64 = out.iter().sum();
        assert!((total - 4096).abs() <= 8, "sum {total}");
        assert!(reference_softmax(&scores, &[0; 6], &spec).is_err());
    }
}
