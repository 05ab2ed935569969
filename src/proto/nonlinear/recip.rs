//! Two-party fixed-point reciprocal `1/s` and reciprocal square root `1/√v` of positive shared
//! values with a wide dynamic range.
//!
//! **Paper reference.** FASTLMPI (arXiv 2412.16537) needs a reciprocal for the SoftMax
//! denominator (§2.2 of the protocol notes) and a reciprocal square root for LayerNorm (§2.3).
//! The prototype's SoftMax "reciprocal" is a *modular* inverse mod p of a (multiplicatively
//! masked) row sum, which is not a fixed-point reciprocal at all; its LayerNorm calls SIRNN's
//! OT/LUT rsqrt. Here both are one protocol: normalisation by a secret power of two found with
//! threshold comparisons, a linear initial guess, Newton iterations with secure products and
//! faithful truncations, and denormalisation by a secret power of two (SIRNN, S&P'21 §4 uses
//! the same normalise–iterate–denormalise structure with a LUT initial guess).
//!
//! **Functionality.** Input: ring shares of an integer `v` (the fixed-point value `v / 2^fi`,
//! `fi = frac_in`). Output: ring shares of
//! * [`RecipKind::Recip`]: `≈ 2^fo · 2^fi / v` (i.e. `1/(v/2^fi)` at `fo = frac_out` bits),
//! * [`RecipKind::Rsqrt`]: `≈ 2^fo · 2^(fi/2) / √v` (i.e. `1/√(v/2^fi)` at `fo` bits),
//! bit-for-bit equal to [`reference`] (and its wrappers [`reference_recip`],
//! [`reference_rsqrt`]).
//!
//! **Arithmetic** (all truncations faithful floors; `Q = min(30, ⌊(ℓ−4)/2⌋)` internal bits):
//! 1. `c_i = [v < 2^i]` for `i = lo ..= hi` (one batched [`lt_public`] on `hi + 2` bits),
//!    B2A. The leading-bit one-hot `o_p` (`p = lo..=hi`, `v ∈ [2^p, 2^(p+1))`, clamped) is the
//!    telescoping difference of the monotone `c_i`, so a public table `T_p` is selected
//!    locally: `Σ_p o_p T_p = T_hi + Σ_i c_i (T_(i−1) − T_i)`.
//! 2. `m = ⌊v · 2^(Q+G−p) / 2^G⌋ ∈ [2^Q, 2^(Q+1))` (`G = max(0, hi − Q)`): one product with
//!    the selected power of two, one truncation.
//! 3. Initial guess `y = A − ⌊m·B / 2^Q⌋`: recip `A, B = 24/17, 8/17` (relative error
//!    ≤ 1/17); rsqrt `A, B = 1.2012, 0.2386` (≤ 0.0374), both at `Q` bits.
//! 4. Newton, `iters` times. Recip: `e = ⌊m y/2^Q⌋`, `y ← ⌊y (2^(Q+1) − e)/2^Q⌋` (2 products).
//!    Rsqrt: `s = ⌊y²/2^Q⌋`, `e = ⌊m s/2^Q⌋`, `y ← ⌊y (3·2^Q − e)/2^(Q+1)⌋` (3 products).
//!    Relative error after k iterations from ε₀: recip ε₀^(2^k) (1/17 → 1.4e-10 at k = 3),
//!    rsqrt ≈ 1.5 ε² per step (0.0374 → 6.5e-11 at k = 3), then bounded by the Q-bit rounding.
//! 5. Denormalise: `out = ⌊y · D_p / 2^G2⌋` with `D_p = round(2^(E_p + G2))`,
//!    `E_p = fo + fi − Q − p` (recip) or `fo + (fi − p)/2 − Q` (rsqrt); `G2` is the largest
//!    shift keeping `y · D_p < 2^(ℓ−3)`. For recip every `D_p` is an exact power of two.
//!
//! **Message flow.** `lt_public` (millionaire on `hi+1` bits, `hi−lo` thresholds) → B2A
//! (one COT batch) → `mul` + `trunc` (normalise) → `trunc` (initial guess) → per Newton step
//! 2 (recip) or 3 (rsqrt) sequential `mul`/`square` + `trunc` → `mul` + `trunc`
//! (denormalise). Everything is OT-based (see `cmp`, `b2a`, `mul`, `trunc`).
//!
//! **Valid input domain.** `v < 2^(hi+1)` (integer representation). Values below `2^lo`
//! (including 0 and negatives down to `−2^(hi+1)`) are clamped to `2^lo` (one extra threshold
//! and a `mux` set `m = 2^Q`), so e.g. a zero LayerNorm variance yields `f(2^lo)`;
//! `hi + 2 ≤ ℓ`, `2Q + 4 ≤ ℓ`.
//! [`RecipSpec::new`] checks every headroom condition and returns `Error::Config` otherwise.
//!
//! **Error bound.** Protocol = reference exactly (faithful truncations, exact products).
//! Reference vs the exact function for `v ∈ [2^lo, 2^(hi+1))`: relative error ≤ `2^(3−Q)`
//! from the Q-bit iteration plus ±1 unit of the output (final floor) plus the rounding of
//! `D_p` (≤ 2^−(G2+min E) relative, rsqrt only); tested at ≤ 2^(4−Q) relative + 2 units.
//!
//! **Bytes per element** (n values, t = hi − lo thresholds, ℓ-bit ring):
//! `t·M(hi+1) + t·C_cot(ℓ) + (2 + 2·iters [recip] or 2 + 3·iters [rsqrt]) · P + 2 trunc`
//! where `M(w)` is the millionaire cost, `P = 2ℓ·C_cot(ℓ) + M(s) + 2·C_cot(ℓ)` a product with
//! faithful truncation (square: `ℓ·C_cot(ℓ)` instead of `2ℓ`). Rounds: a constant
//! ≈ 10 + 7·(#products) flights, independent of n. Meant for the ~1–2k row values per layer.
//!
//! **Security (semi-honest).** A composition of the toolkit's comparison, B2A, product and
//! truncation protocols, each of which outputs fresh uniform shares over the whole ring; all
//! public tables depend only on public parameters; nothing is ever opened.

use crate::proto::toolkit::b2a::b2a_ring;
use crate::proto::toolkit::bits::BitShare;
use crate::proto::toolkit::mux::mux;
use crate::proto::toolkit::cmp::lt_public;
use crate::proto::ctx::Party;
use crate::proto::toolkit::mul::{mul, mul_trunc, square};
use crate::proto::toolkit::trunc::{trunc, TruncMode};
use crate::error::{Error, Result};
use crate::share::Ring;

const MODE: TruncMode = TruncMode::Faithful;

/// Which function to compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecipKind {
    /// `1/x`.
    Recip,
    /// `1/√x`.
    Rsqrt,
}

/// Public parameters of one reciprocal / rsqrt call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecipSpec {
    pub ring: Ring,
    pub kind: RecipKind,
    /// Fraction bits of the input.
    pub frac_in: u32,
    /// Fraction bits of the output.
    pub frac_out: u32,
    /// Inputs are expected in `[2^lo_bit, 2^(hi_bit+1))` (integer representation).
    pub lo_bit: u32,
    pub hi_bit: u32,
    /// Newton iterations.
    pub iters: u32,
}

/// Everything derived from a [`RecipSpec`]: internal precision, shifts and public tables.
#[derive(Clone, Debug, PartialEq)]
pub struct RecipPlan {
    pub q: u32,
    /// Shift after normalisation.
    pub g_norm: u32,
    /// `2^(Q+G−p)` for `p = lo..=hi`.
    pub norm_table: Vec<i64>,
    /// Shift after denormalisation.
    pub g_out: u32,
    /// `D_p` for `p = lo..=hi`.
    pub out_table: Vec<i64>,
    /// Initial guess `A − ⌊m·B/2^Q⌋` at Q bits.
    pub init_a: i64,
    pub init_b: i64,
}

impl RecipSpec {
    /// A spec with 3 Newton iterations; checks all headroom conditions.
    pub fn new(ring: Ring, kind: RecipKind, frac_in: u32, frac_out: u32, lo_bit: u32, hi_bit: u32) -> Result<RecipSpec> {
        let spec = RecipSpec { ring, kind, frac_in, frac_out, lo_bit, hi_bit, iters: 3 };
        spec.plan()?;
        Ok(spec)
    }

    /// Internal precision Q.
    pub fn q(&self) -> u32 {
        ((self.ring.bits().saturating_sub(4)) / 2).min(30)
    }

    /// Derive the tables; `Error::Config` when a product could leave the truncation domain.
    pub fn plan(&self) -> Result<RecipPlan> {
        let l = self.ring.bits();
        let q = self.q();
        let (lo, hi) = (self.lo_bit, self.hi_bit);
        let cfg = |msg: String| Err(Error::Config(format!("reciprocal spec {self:?}: {msg}")));
        if q < 8 {
            return cfg("ring too narrow (needs ℓ ≥ 20)".into());
        }
        if lo > hi || hi + 2 > l {
            return cfg("needs lo ≤ hi and hi + 2 ≤ ℓ".into());
        }
        let g_norm = hi.saturating_sub(q);
        if q + g_norm + 1 > l - 2 {
            return cfg("normalisation product exceeds 2^(ℓ−2)".into());
        }
        let norm_table = (lo..=hi).map(|p| 1i64 << (q + g_norm - p)).collect();
        let exps: Vec<f64> = (lo..=hi).map(|p| self.out_exponent(p, q)).collect();
        let max_e = exps.iter().cloned().fold(f64::MIN, f64::max).ceil() as i64;
        let g_out = l as i64 - 3 - q as i64 - max_e;
        if g_out < 0 {
            return cfg("frac_out too large for the ring".into());
        }
        let g_out = g_out.min(62) as u32;
        let out_table: Vec<i64> = exps.iter().map(|&e| (e + g_out as f64).exp2().round() as i64).collect();
        if out_table.iter().any(|&d| d < 1 << 8) {
            return cfg("denormalisation constants below 8 bits (range too wide for ℓ)".into());
        }
        let (a, b) = match self.kind {
            RecipKind::Recip => (24.0 / 17.0, 8.0 / 17.0),
            RecipKind::Rsqrt => (1.2012, 0.2386),
        };
        let scale = (q as f64).exp2();
        Ok(RecipPlan { q, g_norm, norm_table, g_out, out_table, init_a: (a * scale).round() as i64, init_b: (b * scale).round() as i64 })
    }

    /// `E_p`: log2 of the factor turning `y` (Q bits) into the output for leading bit `p`.
    fn out_exponent(&self, p: u32, q: u32) -> f64 {
        let (fi, fo, p, q) = (self.frac_in as f64, self.frac_out as f64, p as f64, q as f64);
        match self.kind {
            RecipKind::Recip => fo + fi - q - p,
            RecipKind::Rsqrt => fo + (fi - p) / 2.0 - q,
        }
    }
}

// ---------------------------------------------------------------- local share arithmetic

/// Shares of `x + c` for a public `c` (the server adds it).
pub(crate) fn add_public(p: &Party, ring: Ring, x: &[u64], c: i64) -> Vec<u64> {
    let c = if p.is_server() { ring.from_signed(c) } else { 0 };
    x.iter().map(|&v| ring.add(v, c)).collect()
}

/// Shares of `c − x` for a public `c`.
pub(crate) fn public_minus(p: &Party, ring: Ring, c: i64, x: &[u64]) -> Vec<u64> {
    let c = if p.is_server() { ring.from_signed(c) } else { 0 };
    x.iter().map(|&v| ring.sub(c, v)).collect()
}

/// Shares of `c · x` for a public `c`.
pub(crate) fn scale_public(ring: Ring, x: &[u64], c: i64) -> Vec<u64> {
    let c = ring.from_signed(c);
    x.iter().map(|&v| ring.mul(v, c)).collect()
}

/// Element-wise `a − b` of shares.
pub(crate) fn sub_shares(ring: Ring, a: &[u64], b: &[u64]) -> Vec<u64> {
    a.iter().zip(b).map(|(&x, &y)| ring.sub(x, y)).collect()
}

/// Element-wise `a + b` of shares.
pub(crate) fn add_shares(ring: Ring, a: &[u64], b: &[u64]) -> Vec<u64> {
    a.iter().zip(b).map(|(&x, &y)| ring.add(x, y)).collect()
}

/// Select a public table entry per element from monotone indicator shares:
/// `c[i]` (arithmetic, for threshold `i = 1..=t`) and `table[0..=t]`:
/// `table[t] + Σ_i c_i (table[i−1] − table[i])`.
pub(crate) fn select_by_thresholds(p: &Party, ring: Ring, c: &[Vec<u64>], table: &[i64], n: usize) -> Vec<u64> {
    let top = table[table.len() - 1];
    let mut out = add_public(p, ring, &vec![0; n], top);
    for (i, ci) in c.iter().enumerate() {
        let w = ring.from_signed(table[i] - table[i + 1]);
        for (o, &v) in out.iter_mut().zip(ci) {
            *o = ring.add(*o, ring.mul(v, w));
        }
    }
    out
}

// ---------------------------------------------------------------- protocol

/// Two-party reciprocal or reciprocal square root (per [`RecipSpec::kind`]) of shared `v`.
pub fn reciprocal(p: &mut Party, spec: &RecipSpec, v: &[u64]) -> Result<Vec<u64>> {
    let plan = spec.plan()?;
    let ring = spec.ring;
    let q = plan.q;
    let n = v.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let (below, indicators) = leading_bit_indicators(p, spec, v)?;

    let norm = select_by_thresholds(p, ring, &indicators, &plan.norm_table, n);
    let m = mul_trunc(p, ring, v, &norm, plan.g_norm, MODE)?;
    // Inputs below 2^lo are clamped to 2^lo: m ← 2^Q there.
    let fix = mux(p, ring, &below, &public_minus(p, ring, 1i64 << q, &m))?;
    let m = add_shares(ring, &m, &fix);

    let mb = trunc(p, ring, &scale_public(ring, &m, plan.init_b), q, MODE)?;
    let mut y = public_minus(p, ring, plan.init_a, &mb);
    for _ in 0..spec.iters {
        y = match spec.kind {
            RecipKind::Recip => {
                let e = mul_trunc(p, ring, &m, &y, q, MODE)?;
                let t = public_minus(p, ring, 1i64 << (q + 1), &e);
                mul_trunc(p, ring, &y, &t, q, MODE)?
            }
            RecipKind::Rsqrt => {
                let y2 = square(p, ring, &y)?;
                let s = trunc(p, ring, &y2, q, MODE)?;
                let e = mul_trunc(p, ring, &m, &s, q, MODE)?;
                let t = public_minus(p, ring, 3i64 << q, &e);
                mul_trunc(p, ring, &y, &t, q + 1, MODE)?
            }
        };
    }
    let scale = select_by_thresholds(p, ring, &indicators, &plan.out_table, n);
    let out = mul(p, ring, &y, &scale)?;
    trunc(p, ring, &out, plan.g_out, MODE)
}

/// Boolean shares of `[v < 2^lo]` and arithmetic shares of `[v < 2^i]` for
/// `i = lo+1 ..= hi` (one vector per threshold); one comparison batch, one B2A batch.
fn leading_bit_indicators(p: &mut Party, spec: &RecipSpec, v: &[u64]) -> Result<(BitShare, Vec<Vec<u64>>)> {
    let thresholds: Vec<i64> = (spec.lo_bit..=spec.hi_bit).map(|i| 1i64 << i).collect();
    let mut bits = lt_public(p, spec.ring, v, &thresholds, spec.hi_bit + 2, 0)?;
    let below = bits.remove(0);
    if bits.is_empty() {
        return Ok((below, Vec::new()));
    }
    let arith = b2a_ring(p, spec.ring, &bits.concat())?;
    Ok((below, arith.chunks(v.len()).map(|c| c.to_vec()).collect()))
}

// ---------------------------------------------------------------- cleartext mirror

/// Cleartext mirror of [`reciprocal`] on one integer input (bit-exact for inputs in the
/// domain). Uses i128 so that the mirror itself never overflows.
pub fn reference(spec: &RecipSpec, v: i64) -> Result<i64> {
    let plan = spec.plan()?;
    let q = plan.q;
    let v = v as i128;
    let lead = if v <= 0 { 0 } else { 127 - v.leading_zeros() };
    let idx = (lead.clamp(spec.lo_bit, spec.hi_bit) - spec.lo_bit) as usize;
    let m = if v < 1i128 << spec.lo_bit { 1i128 << q } else { (v * plan.norm_table[idx] as i128) >> plan.g_norm };
    let mut y = plan.init_a as i128 - ((m * plan.init_b as i128) >> q);
    for _ in 0..spec.iters {
        y = match spec.kind {
            RecipKind::Recip => {
                let e = (m * y) >> q;
                (y * ((1i128 << (q + 1)) - e)) >> q
            }
            RecipKind::Rsqrt => {
                let s = (y * y) >> q;
                let e = (m * s) >> q;
                (y * ((3i128 << q) - e)) >> (q + 1)
            }
        };
    }
    let out = (y * plan.out_table[idx] as i128) >> plan.g_out;
    i64::try_from(out).map_err(|_| Error::Input(format!("reciprocal of {v} overflows i64")))
}

/// `≈ 2^(frac_in+frac_out) / v`, bit-exact mirror of the protocol with `kind = Recip`.
pub fn reference_recip(spec: &RecipSpec, v: &[i64]) -> Result<Vec<i64>> {
    let spec = RecipSpec { kind: RecipKind::Recip, ..*spec };
    v.iter().map(|&x| reference(&spec, x)).collect()
}

/// `≈ 2^frac_out · 2^(frac_in/2) / √v`, bit-exact mirror of the protocol with `kind = Rsqrt`.
pub fn reference_rsqrt(spec: &RecipSpec, v: &[i64]) -> Result<Vec<i64>> {
    let spec = RecipSpec { kind: RecipKind::Rsqrt, ..*spec };
    v.iter().map(|&x| reference(&spec, x)).collect()
}

/// The exact function value (f64) the protocol approximates, in output units.
pub fn exact(spec: &RecipSpec, v: i64) -> f64 {
    let x = v as f64 / (spec.frac_in as f64).exp2();
    let f = match spec.kind {
        RecipKind::Recip => 1.0 / x,
        RecipKind::Rsqrt => 1.0 / x.sqrt(),
    };
    f * (spec.frac_out as f64).exp2()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_accuracy(spec: &RecipSpec) {
        let q = spec.q();
        let mut worst: f64 = 0.0;
        for lead in spec.lo_bit..=spec.hi_bit {
            for k in 0..64u64 {
                let v = (1i64 << lead) + (k.wrapping_mul(0x9E37_79B9_7F4A_7C15u64) >> (64 - lead.max(1))) as i64 % (1i64 << lead);
                let got = reference(spec, v).unwrap() as f64;
                let want = exact(spec, v);
                let err = (got - want).abs() - 2.0;
                worst = worst.max(err / want);
            }
        }
        let plan = spec.plan().unwrap();
        let d_min = *plan.out_table.iter().min().unwrap() as f64;
        let bound = (4.0 - q as f64).exp2() + 0.5 / d_min;
        assert!(worst <= bound, "{spec:?}: relative error {worst} > {bound}");
    }

    #[test]
    fn reference_is_accurate_over_the_documented_range() {
        let r40 = Ring::new(40).unwrap();
        let r64 = Ring::new(64).unwrap();
        check_accuracy(&RecipSpec::new(r40, RecipKind::Recip, 12, 24, 11, 20).unwrap());
        check_accuracy(&RecipSpec::new(r40, RecipKind::Rsqrt, 12, 20, 6, 26).unwrap());
        check_accuracy(&RecipSpec::new(r64, RecipKind::Rsqrt, 0, 56, 30, 61).unwrap());
        check_accuracy(&RecipSpec::new(r64, RecipKind::Recip, 12, 30, 20, 40).unwrap());
    }

    #[test]
    fn bad_specs_are_config_errors() {
        let r40 = Ring::new(40).unwrap();
        assert!(RecipSpec::new(r40, RecipKind::Recip, 12, 24, 11, 39).is_err());
        assert!(RecipSpec::new(r40, RecipKind::Recip, 12, 60, 11, 20).is_err());
        assert!(RecipSpec::new(Ring::new(16).unwrap(), RecipKind::Recip, 4, 4, 0, 8).is_err());
    }
}
