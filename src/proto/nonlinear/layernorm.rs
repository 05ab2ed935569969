//! Two-party LayerNorm over the rows of an activation matrix (FASTLMPI's fine-grained flow).
//!
//! **Paper reference.** FASTLMPI (arXiv 2412.16537), LayerNorm (§2.3 of the protocol notes):
//! local mean-centring `A = d·x − Σx`, squares of A, row sums, a two-party reciprocal square
//! root, and γ/β applied by the server. The prototype computes `A·K^(−1/2)` with
//! `K = Σ A² = d³σ²` and so outputs `(x−μ)/(√d·σ)`: it omits the `√d` factor and ε. Fixed here:
//! `out = A·√d / √(Σ A² + ε·d³)·γ + β = γ·(x−μ)/√(σ² + ε) + β`, with every scale documented.
//! Two variants: `he_product = false` (the `bolt` profile) squares, rescales and applies γ with
//! OT products in Z_2^64 / Z_2^ℓ; `he_product = true` (the `fastlmpi` profile: the paper's
//! fine-grained HE steps) takes the variance from HE squares summed in Z_t, the rescaling
//! `A·r` as one HE product and γ as one HE plaintext product (`hemul`).
//!
//! **Functionality.** Input: ring shares (ℓ bits, f = frac) of `x` (rows × d); the server
//! additionally holds γ, β (plaintext). Output: shares of LayerNorm(x) at f bits, bit-equal to
//! [`reference_layernorm`].
//!
//! **Arithmetic** (truncations faithful floors; [`LayerNormSpec::trunc`] = `Approx`, the
//! `fastlmpi` profile's default, makes those of steps 5 and 6 approximate: ⌊·⌋ − c, c ∈ {0, 1}
//! the dropped carry, one short COT per element instead of a millionaire and two COTs each;
//! the run equals [`reference_layernorm_carried`] given the carries, and the output moves by at
//! most two units against the faithful one, tested in `tests/he_products.rs`). Z = f + 6,
//! G = gamma_frac, `v_max`, `v_min` the variance range of the spec.
//! 1. `A = d·x − Σ_j x_j` (local, exact).
//! 2. `A_h = ⌊A / 2^h⌋` (ring ℓ). OT variant: `h = max(0, ⌈(3 log2 d + v_max + 2f − 61)/2⌉)` so
//!    that `Σ A_h² < 2^62`. HE variant: h = 0 (A_h = A).
//! 3. The row value V. OT variant: lift `A_h` exactly to Z_2^64 (one COT per element), square
//!    there (one Gilboa cross term), `V = Σ_j A_h² + ⌊ε·d³·2^(2f−2h)⌉` (local sums; the server
//!    adds the ε term). HE variant: `A_v = ⌊(A_h + 2^(k−1)) / 2^k⌋` (A rounded to k fewer bits,
//!    faithful truncation of the server-biased share), `k = ⌈(3 log2 d + v_max + 2f − 47)/2⌉`
//!    so that `V = Σ_j A_v² + ⌊ε·d³·2^(2f−2k)⌉ < 2^48`; A_v moves to Z_t (`ring_to_field`),
//!    one HE square (`hemul::square`: the client keeps its own square), the row sums are taken
//!    in Z_t (exact, V < t/2) and converted to Z_2^64 once per row (`field_to_ring`).
//! 4. `r = rsqrt(V) ≈ 2^R/√V` (`recip`, ring 64, input range from `v_min, v_max`). OT variant
//!    R = 60; HE variant R = 48 − k (so that `|A·r| < 2^48`, see 5).
//! 5. `z = ⌊A_h · r / 2^(R+k−Z)⌋` (k = 0 in the OT variant), i.e. `z ≈ (x−μ)/(σ√d) · 2^Z`.
//!    OT variant: Gilboa product in Z_2^64 (`|A_h·r| ≤ 2^R(1 + 2^−26)` since `A_h² ≤ V`). HE
//!    variant: `|A| ≤ 2^k(|A_v| + ½) ≤ 2^k(√V + ½)`, so `|A·r| < 2^(R+k+0.01) = 2^48.01`; A and r
//!    (reduced locally to a `bits(t)`-bit ring) move to Z_t, one `hemul::mul_rows`, the exact
//!    product returns to Z_2^64 (`field_to_ring`). Then the truncation and a local reduction to ℓ.
//! 6. `out = ⌊g ⊙ z / 2^(G+Z−f)⌋ + b` with the server's plaintext `g_j = ⌊γ_j √d·2^G⌉` and
//!    `b_j = ⌊β_j 2^f⌉` added to the server's share. OT variant: one Gilboa cross term (server =
//!    COT sender) and a truncation. HE variant: z moves to Z_t, one HE plaintext product
//!    (`hemul::mul_plain`: Enc(z_c) times g), back with `field_to_ring_trunc` (|g·z| < 2^(ℓ−2)
//!    by the domain).
//!
//! **Message flow.** OT variant: trunc (ℓ) → lift (1 COT batch) → square (1 COT batch) → rsqrt
//! on the row values (`recip`) → product (2 COT batches) → trunc (64) → γ product (1 COT
//! batch) → trunc (ℓ). HE variant: trunc (k) → ring→field → HE square (upload + return) →
//! field→ring per row → rsqrt → ring→field (A, r) → HE product (upload + return) → field→ring →
//! trunc (64) → ring→field (z) → HE plaintext product (upload + return) → field→ring + trunc.
//!
//! **Valid input domain.** `|d·(x_j − μ)|·2^f < 2^(ℓ−2)`, row variance in
//! `[2^v_min, 2^v_max]` (defaults 2^−14 ≈ 6e−5 .. 2^14 ≈ 1.6e4; measured on the real models'
//! encoder LayerNorms: 0.013 .. 2,394, `results/ranges-*.json`), `|γ (x−μ)/σ| < 2^(ℓ−2−G−Z)`
//! (= 256 for ℓ = 40, f = G = 12), `d ≥ 2`.
//!
//! **Error bound.** Protocol = reference exactly. Reference vs exact f64 LayerNorm (on the same
//! fixed-point input): rsqrt relative error ≤ 2^−26 + D-table rounding, the `A_h` floor
//! (absolute ≤ |γ|·2^h/(d·σ·2^f)), z floor (2^−Z), γ quantisation (2^−G relative) and the final
//! floor; in the HE variant also the rounding of A_v: `|ΔV|/V ≤ e + e²/4` with
//! `e = 2^k/(d·σ·2^f)` (Cauchy–Schwarz on Σ|A|), so `|out − β|·(e/2 + e²/2)` (worst case; the
//! rounding errors average out over a row, e.g. 5.7 units at σ ≈ 0.1, d = 768, against e/2 ≈
//! 1.8 %). Tested: ≤ 2^−f·4 + |out|/256 + the two terms, d = 64 and 768, σ from 0.01 to 50.
//!
//! **Bytes per element** (d per row), with `S(b)` a Gilboa cross term (b random OTs and
//! b(b+1)/2 payload bits, `toolkit::mul`), `C(b)` one b-bit correlated OT, `M(w)` the
//! millionaire on w bits, `H1 = (seeded + full)/N` and `H2 = (2·seeded + full)/N` (`hemul`):
//! OT variant `M(h) + 2C(ℓ) + C(64) + S(64) + 2S(64) + M(R−Z) + 2C(64) + S(ℓ) + M(G+Z−f) + 2C(ℓ)`;
//! HE variant `M(k) + 2C(ℓ)` (A_v) `+ 3·C_ot(bits t)` (A_v, A, z to Z_t) `+ H1` (square)
//! `+ H2` (product) `+ H1` (γ) `+ M(w) + C(64)` (product back) `+ C(R+k−Z)` (approximate trunc)
//! `+ M(w') + C(ℓ+G+Z−f) + C(G+Z−f)` (γ product back, approximate trunc), plus per row the
//! variance's conversion and the rsqrt. Measured in the engine (mpnet-base, 128 × 768,
//! `run --layers 1`, approximate truncations): HE variant 889 B per element and 184 flights
//! with IKNP, 303 B with silent OT (before: OT square and γ product, 2,488 B / 168 flights and
//! 535 B; 4,222 B and 204 flights with faithful truncations).
//!
//! **Security (semi-honest).** Composition of toolkit protocols returning fresh uniform shares
//! over the whole ring; the lift and the γ product are correlated-OT protocols whose receiver
//! outputs are masked by the sender's uniform pads. γ and β never leave the server (they only
//! appear as COT correlations, as HE plaintext multipliers hidden by the circuit-private
//! return, and in the server's own share); nothing is opened. In the HE variant the server
//! sees only fresh ciphertexts under the client's key and returns masked, flooded ciphertexts
//! (`hemul`); the client decrypts only values masked by uniform R.
//!
//! **Not done.** The output is not kept encrypted for the next linear layer; A_v's truncation
//! stays faithful (an approximate one would need a carry site in the simulation).

use crate::proto::toolkit::convert::{field_to_ring, field_to_ring_trunc, ring_to_field};
use crate::proto::ctx::Party;
use crate::proto::linear::hemul::{broadcast_rows, mul_plain, mul_rows, square as he_square, HeParty};
use crate::proto::toolkit::mul::{cross_recv, cross_send, mul, square};
use super::recip::{add_public, add_shares, reciprocal, RecipKind, RecipSpec};
use crate::proto::toolkit::trunc::{and_arith, or_from_product, trunc, TruncMode};
use crate::error::{Error, Result};
use crate::share::{Field, Ring};

const MODE: TruncMode = TruncMode::Faithful;
/// Fraction bits of the rsqrt output (OT product in Z_2^64).
const RSQRT_FRAC: u32 = 60;
/// With the HE variant: the row sums `V = Σ A_v²` stay below 2^(HE_VAR_HI + 1) (exact in Z_t, t > 2^51)…
const HE_VAR_HI: u32 = 47;
/// …and the product `A·r` below 2^(HE_PRODUCT_BITS + 0.01), so it is exact in Z_t as well.
const HE_PRODUCT_BITS: u32 = 48;

/// Public parameters of the LayerNorm protocol.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerNormSpec {
    pub ring: Ring,
    pub frac: u32,
    /// Row variances lie in `[2^var_min_log2, 2^var_max_log2]`.
    pub var_min_log2: i32,
    pub var_max_log2: i32,
    /// Fraction bits of the server's `γ·√d`.
    pub gamma_frac: u32,
    pub eps: f64,
    /// The HE variant (the `fastlmpi` profile): the variance from HE squares of a rounded
    /// `A_v` summed in Z_t, and `A · r` as one HE product (`hemul`), instead of the lift to
    /// Z_2^64, the 64-bit OT square and the 64-bit OT product.
    pub he_product: bool,
    /// The truncations of `A_h·r` (by `R − Z`) and of `g ⊙ z` (by `G + Z − f`): `Faithful`, or
    /// `Approx` (each may drop its carry, see [`LnCarries`]). `A_h`'s own truncation stays
    /// faithful (it is skipped when h = 0, which would leave a carry site without a call).
    pub trunc: TruncMode,
}

/// The carries a LayerNorm row's approximate truncations dropped, one per element: `z[j]`
/// lowers `z_j` by one unit (at `Z` fraction bits), `out[j]` the output.
#[derive(Clone, Copy, Debug)]
pub struct LnCarries<'a> {
    pub z: &'a [u8],
    pub out: &'a [u8],
}

/// The server's plaintext parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct LnParams<'a> {
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
}

/// Everything derived from a spec and the row length `d`.
#[derive(Clone, Debug, PartialEq)]
pub struct LnPlan {
    pub d: usize,
    /// `A_h = ⌊A/2^h⌋` is the factor of the rescaling (h = 0 in the HE variant).
    pub h: u32,
    /// HE variant: the variance is taken of `A_v = ⌊(A_h + 2^(k−1)) / 2^k⌋` (k = var_shift;
    /// 0 in the OT variant, where A_v = A_h).
    pub var_shift: u32,
    /// `z = ⌊A_h·r / 2^shift_z⌋` (= R + k − Z).
    pub shift_z: u32,
    pub eps_term: i64,
    pub rsqrt: RecipSpec,
    pub z_frac: u32,
}

impl LayerNormSpec {
    pub fn new(ring: Ring, frac: u32, eps: f64) -> LayerNormSpec {
        LayerNormSpec { ring, frac, var_min_log2: -14, var_max_log2: 14, gamma_frac: frac, eps, he_product: false, trunc: TruncMode::Faithful }
    }

    pub fn plan(&self, d: usize) -> Result<LnPlan> {
        let cfg = |m: &str| Err(Error::Config(format!("layernorm spec {self:?}, d = {d}: {m}")));
        if d < 2 || self.var_min_log2 > self.var_max_log2 || !(self.eps >= 0.0) {
            return cfg("needs d ≥ 2, v_min ≤ v_max, ε ≥ 0");
        }
        let z_frac = self.frac + 6;
        if self.gamma_frac + z_frac + 4 > self.ring.bits() {
            return cfg("ring too narrow for the γ product");
        }
        let f = self.frac as f64;
        let log_d3 = 3.0 * (d as f64).log2();
        // Shift that brings Σ A² (≤ 2^(log d³ + v_max + 2f)) below 2^hi.
        let shift_for = |hi: u32| ((log_d3 + self.var_max_log2 as f64 + 2.0 * f - hi as f64) / 2.0).ceil().max(0.0) as u32;
        // (h, k, hi, R): the OT variant squares A_h in Z_2^64; the HE variant keeps A whole for
        // the product and squares the rounded A_v in Z_t, with R + k = HE_PRODUCT_BITS.
        let (h, k, hi, rsqrt_frac) = if self.he_product {
            let k = shift_for(HE_VAR_HI);
            if k >= HE_PRODUCT_BITS {
                return cfg("variance range too wide for the HE variant");
            }
            (0, k, HE_VAR_HI, HE_PRODUCT_BITS - k)
        } else {
            (shift_for(61), 0, 61, RSQRT_FRAC)
        };
        let log_v = |v: i32| log_d3 + v as f64 + 2.0 * f - 2.0 * (h + k) as f64;
        let lo = log_v(self.var_min_log2).floor().max(0.0) as u32;
        if log_v(self.var_max_log2) > hi as f64 + 0.5 {
            return cfg("variance bound exceeds the ring");
        }
        let eps_term = (self.eps * (log_d3 + 2.0 * f - 2.0 * (h + k) as f64).exp2()).round();
        if eps_term >= (hi as f64).exp2() {
            return cfg("ε term too large");
        }
        if rsqrt_frac + k < z_frac {
            return cfg("rsqrt precision below the output's");
        }
        let rsqrt = RecipSpec::new(Ring::new(64)?, RecipKind::Rsqrt, 0, rsqrt_frac, lo, hi)?;
        Ok(LnPlan { d, h, var_shift: k, shift_z: rsqrt_frac + k - z_frac, eps_term: eps_term as i64, rsqrt, z_frac })
    }

    /// `g_j = ⌊γ_j √d 2^G⌉` and `b_j = ⌊β_j 2^f⌉`.
    fn quantize(&self, d: usize, params: &LnParams) -> Result<(Vec<i64>, Vec<i64>)> {
        if params.gamma.len() != d || params.beta.len() != d {
            return Err(Error::Shape { tensor: "LayerNorm γ/β".into(), expected: vec![d], got: vec![params.gamma.len(), params.beta.len()] });
        }
        let gs = (d as f64).sqrt() * (self.gamma_frac as f64).exp2();
        let bs = (self.frac as f64).exp2();
        Ok((params.gamma.iter().map(|&g| (g as f64 * gs).round() as i64).collect(), params.beta.iter().map(|&b| (b as f64 * bs).round() as i64).collect()))
    }
}

/// Shares over Z_2^64 of `x ∈ [−2^(ℓ−2), 2^(ℓ−2))` given over Z_2^ℓ (one COT per element):
/// with `y = x + 2^(ℓ−2)` (MSB 0) the wrap is `msb(y_S) ∨ msb(y_C)`.
pub fn lift_to_64(p: &mut Party, ring: Ring, x: &[u64]) -> Result<Vec<u64>> {
    let wide = Ring::new(64)?;
    let l = ring.bits();
    if l < 2 || l >= 64 {
        return Ok(x.to_vec());
    }
    let bias = 1u64 << (l - 2);
    let y: Vec<u64> = if p.is_server() { x.iter().map(|&v| ring.add(v, bias)).collect() } else { x.iter().map(|&v| ring.reduce(v)).collect() };
    let msbs: Vec<u8> = y.iter().map(|&v| ring.msb(v) as u8).collect();
    let raw = and_arith(p, wide, &msbs)?;
    let shift = if p.is_server() { bias } else { 0 };
    Ok((0..x.len())
        .map(|i| {
            let w = or_from_product(p, wide, msbs[i], raw[i]);
            wide.sub(wide.sub(y[i], w.wrapping_shl(l)), shift)
        })
        .collect())
}

/// Shares of `g ⊙ x` where only the server knows `g` (one Gilboa cross term, server = sender).
pub fn server_plain_mul(p: &mut Party, ring: Ring, g: Option<&[i64]>, x: &[u64]) -> Result<Vec<u64>> {
    if p.is_server() {
        let g = g.ok_or_else(|| Error::Config("server-plaintext product needs the server's vector".into()))?;
        if g.len() != x.len() {
            return Err(Error::Input(format!("server-plaintext product: {} multipliers for {} values", g.len(), x.len())));
        }
        let g: Vec<u64> = g.iter().map(|&gj| ring.from_signed(gj)).collect();
        let cross = cross_send(p, ring, &g)?;
        Ok(x.iter().zip(&g).zip(cross).map(|((&xs, &gj), c)| ring.add(ring.mul(xs, gj), c)).collect())
    } else {
        cross_recv(p, ring, x)
    }
}

/// Two-party LayerNorm of `rows × d` shares (row-major). The server passes `Some(params)`, the
/// client `None`.
/// `he` is needed when `spec.he_product` is set.
pub fn layer_norm(p: &mut Party, he: Option<&HeParty>, spec: &LayerNormSpec, x: &[u64], rows: usize, d: usize, params: Option<&LnParams>) -> Result<Vec<u64>> {
    if x.len() != rows * d {
        return Err(Error::Shape { tensor: "LayerNorm input".into(), expected: vec![rows, d], got: vec![x.len()] });
    }
    let plan = spec.plan(d)?;
    let he = match (spec.he_product, he) {
        (true, None) => return Err(Error::Config("LayerNorm with HE products needs the HE keys".into())),
        (true, Some(he)) => Some(he),
        (false, _) => None,
    };
    let ring = spec.ring;
    let wide = Ring::new(64)?;
    let (g_row, b_row) = match (p.is_server(), params) {
        (true, Some(pr)) => spec.quantize(d, pr)?,
        (true, None) => return Err(Error::Config("LayerNorm: the server needs γ and β".into())),
        (false, _) => (Vec::new(), Vec::new()),
    };
    p.ch.set_phase("layernorm-centre");
    let a: Vec<u64> = x
        .chunks(d)
        .flat_map(|row| {
            let s = row.iter().fold(0, |acc, &v| ring.add(acc, v));
            row.iter().map(move |&v| ring.sub(ring.mul(v, d as u64), s))
        })
        .collect();
    let a_h = trunc(p, ring, &a, plan.h, MODE)?;
    let z64 = match he {
        Some(he) => {
            let v = he_variance(p, he, ring, &a_h, &plan)?;
            let r = row_rsqrt(p, &plan, &v)?;
            he_scale(p, he, ring, &a_h, &r, d)?
        }
        None => {
            let a64 = lift_to_64(p, ring, &a_h)?;
            p.ch.set_phase("layernorm-square");
            let sq = square(p, wide, &a64)?;
            let sums: Vec<u64> = sq.chunks(d).map(|r| r.iter().fold(0, |acc, &v| wide.add(acc, v))).collect();
            let v = add_public(p, wide, &sums, plan.eps_term);
            let r = row_rsqrt(p, &plan, &v)?;
            mul(p, wide, &a64, &broadcast_rows(&r, d))?
        }
    };
    let z64 = trunc(p, wide, &z64, plan.shift_z, spec.trunc)?;
    let z: Vec<u64> = z64.iter().map(|&v| ring.reduce(v)).collect();
    let g_all: Vec<i64> = if p.is_server() { (0..rows).flat_map(|_| g_row.iter().copied()).collect() } else { Vec::new() };
    let shift_out = spec.gamma_frac + plan.z_frac - spec.frac;
    let g_all = p.is_server().then_some(&g_all[..]);
    let out = match he {
        Some(he) => he_gamma(p, he, ring, &z, g_all, shift_out, spec.trunc)?,
        None => {
            let gz = server_plain_mul(p, ring, g_all, &z)?;
            trunc(p, ring, &gz, shift_out, spec.trunc)?
        }
    };
    if p.is_server() {
        let b_all: Vec<u64> = (0..rows).flat_map(|_| b_row.iter().map(|&b| ring.from_signed(b))).collect();
        Ok(add_shares(ring, &out, &b_all))
    } else {
        Ok(out)
    }
}

/// `r = rsqrt(V)` per row (both variants), then the phase of the rescaling.
fn row_rsqrt(p: &mut Party, plan: &LnPlan, v: &[u64]) -> Result<Vec<u64>> {
    p.ch.set_phase("layernorm-rsqrt");
    let r = reciprocal(p, &plan.rsqrt, v)?;
    p.ch.set_phase("layernorm-scale");
    Ok(r)
}

/// The HE variant needs a plaintext field of more than HE_PRODUCT_BITS + 2 bits.
fn check_he_field(he: &HeParty) -> Result<Field> {
    let field = he.ctx.field();
    if field.bits() < HE_PRODUCT_BITS + 3 {
        return Err(Error::Config(format!("LayerNorm's HE variant needs a plaintext modulus of ≥ {} bits", HE_PRODUCT_BITS + 3)));
    }
    Ok(field)
}

/// Shares over Z_2^64 of the row values `V = Σ_j A_v,j² + ε-term` with
/// `A_v = ⌊(A_h + 2^(k−1)) / 2^k⌋` (faithful truncation of the server-biased share): A_v moves
/// to Z_t, one HE square, local row sums in Z_t (V < 2^(HE_VAR_HI+1) < t/2, exact), one
/// field→ring conversion per row.
fn he_variance(p: &mut Party, he: &HeParty, ring: Ring, a_h: &[u64], plan: &LnPlan) -> Result<Vec<u64>> {
    let field = check_he_field(he)?;
    let k = plan.var_shift;
    let half = if p.is_server() && k > 0 { 1u64 << (k - 1) } else { 0 };
    let biased: Vec<u64> = a_h.iter().map(|&v| ring.add(v, half)).collect();
    let a_v = trunc(p, ring, &biased, k, MODE)?;
    let a_f = ring_to_field(p, ring, field, &a_v)?;
    p.ch.set_phase("layernorm-square");
    let sq = he_square(p, he, &a_f)?;
    let sums: Vec<u64> = sq.chunks(plan.d).map(|r| r.iter().fold(0, |acc, &v| field.add(acc, v))).collect();
    let wide = Ring::new(64)?;
    let v = field_to_ring(p, field, wide, &sums, HE_VAR_HI + 2)?;
    Ok(add_public(p, wide, &v, plan.eps_term))
}

/// Shares over Z_2^64 of `A_h ⊙ r` (r per row) by one HE product: both factors move to Z_t
/// (A_h from ring ℓ, r after a local reduction to a `bits(t)`-bit ring, since r < 2^R), the
/// exact product (< 2^(HE_PRODUCT_BITS + 0.01) < t/4) returns to Z_2^64.
fn he_scale(p: &mut Party, he: &HeParty, ring: Ring, a_h: &[u64], r: &[u64], d: usize) -> Result<Vec<u64>> {
    let field = check_he_field(he)?;
    let narrow = Ring::new(field.bits())?;
    let a_f = ring_to_field(p, ring, field, a_h)?;
    let r_narrow: Vec<u64> = r.iter().map(|&v| narrow.reduce(v)).collect();
    let r_f = ring_to_field(p, narrow, field, &r_narrow)?;
    let prod = mul_rows(p, he, &r_f, &a_f, d)?;
    field_to_ring(p, field, Ring::new(64)?, &prod, HE_PRODUCT_BITS + 1)
}

/// Shares over Z_2^ℓ of `⌊g ⊙ z / 2^s⌋` (or one less, `mode`) for the server's `g` by one HE
/// plaintext product: z moves to Z_t, the server multiplies Enc(z_c) by g, and the product
/// (|g·z| < 2^(ℓ−1) by the valid domain) returns with `field_to_ring_trunc`.
fn he_gamma(p: &mut Party, he: &HeParty, ring: Ring, z: &[u64], g: Option<&[i64]>, s: u32, mode: TruncMode) -> Result<Vec<u64>> {
    let field = check_he_field(he)?;
    let z_f = ring_to_field(p, ring, field, z)?;
    let g_f: Option<Vec<u64>> = g.map(|g| g.iter().map(|&v| field.from_signed(v)).collect());
    let gz = mul_plain(p, he, &z_f, g_f.as_deref())?;
    field_to_ring_trunc(p, field, ring, &gz, ring.bits() - 1, s, mode)
}

/// Cleartext mirror of [`layer_norm`] on one row (bit-exact).
pub fn reference_layernorm(row: &[i64], gamma: &[f32], beta: &[f32], eps: f64, spec: &LayerNormSpec) -> Result<Vec<i64>> {
    let zeros = vec![0u8; row.len()];
    reference_layernorm_carried(row, gamma, beta, eps, spec, LnCarries { z: &zeros, out: &zeros })
}

/// [`reference_layernorm`] of a run whose approximate truncations dropped `carries` (all 0: no
/// carry dropped, the faithful run); bit-exact with that run.
pub fn reference_layernorm_carried(row: &[i64], gamma: &[f32], beta: &[f32], eps: f64, spec: &LayerNormSpec, carries: LnCarries) -> Result<Vec<i64>> {
    let spec = LayerNormSpec { eps, ..*spec };
    let c = carries;
    if c.z.len() != row.len() || c.out.len() != row.len() {
        return Err(Error::Shape { tensor: "LayerNorm carries".into(), expected: vec![row.len()], got: vec![c.z.len(), c.out.len()] });
    }
    let d = row.len();
    let plan = spec.plan(d)?;
    let (g, b) = spec.quantize(d, &LnParams { gamma, beta })?;
    let s: i128 = row.iter().map(|&v| v as i128).sum();
    let a_h: Vec<i128> = row.iter().map(|&v| (d as i128 * v as i128 - s) >> plan.h).collect();
    let k = plan.var_shift;
    let half = if k > 0 { 1i128 << (k - 1) } else { 0 };
    let v = a_h.iter().map(|a| ((a + half) >> k).pow(2)).sum::<i128>() + plan.eps_term as i128;
    let v = i64::try_from(v).map_err(|_| Error::Input("LayerNorm variance outside the documented range".into()))?;
    let r = super::recip::reference(&plan.rsqrt, v)? as i128;
    let shift_z = plan.shift_z;
    let shift_out = spec.gamma_frac + plan.z_frac - spec.frac;
    Ok(a_h
        .iter()
        .zip(g.iter().zip(&b))
        .zip(c.z.iter().zip(c.out))
        .map(|((&a, (&gj, &bj)), (&cz, &co))| {
            let z = ((a * r) >> shift_z) - i128::from(cz);
            (((gj as i128 * z) >> shift_out) - i128::from(co) + bj as i128) as i64
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_matches_f64_layernorm() {
        let ot = LayerNormSpec::new(Ring::new(40).unwrap(), 12, 1e-5);
        for spec in [ot, LayerNormSpec { he_product: true, ..ot }] {
            reference_matches_f64_for(&spec, 64);
            reference_matches_f64_for(&spec, 768);
        }
    }

    /// The documented bound: 4 ulp + |out|/256 (rsqrt, γ quantisation, floors), plus the A_h
    /// floor, at most |γ|·2^h/(d·σ·2^f), plus the rounding of A_v in the variance (HE variant):
    /// |ΔV|/V ≤ e + e²/4 with e = 2^k/(d·σ·2^f), so |out − β|·(e/2 + e²/2).
    fn reference_matches_f64_for(spec: &LayerNormSpec, d: usize) {
        let spec = *spec;
        let plan = spec.plan(d).unwrap();
        let gamma: Vec<f32> = (0..d).map(|j| 0.5 + j as f32 / 64.0).collect();
        let beta: Vec<f32> = (0..d).map(|j| j as f32 / 128.0 - 0.25).collect();
        // σ from ≈ 0.01 (σ² ≈ 2^−13.6, near v_min) to ≈ 50 (σ² ≈ 2^11.1).
        for scale in [0.01f64, 0.1, 1.0, 50.0] {
            let row: Vec<i64> = (0..d).map(|j| (((j * 37 % 23) as f64 - 11.0) * scale * 4096.0 / 7.0).round() as i64 + 999).collect();
            let got = reference_layernorm(&row, &gamma, &beta, 1e-5, &spec).unwrap();
            let x: Vec<f64> = row.iter().map(|&v| v as f64 / 4096.0).collect();
            let mu = x.iter().sum::<f64>() / d as f64;
            let var = x.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / d as f64;
            let unit = d as f64 * var.sqrt() * 4096.0;
            let e = (plan.var_shift as f64).exp2() / unit;
            let mut worst = 0f64;
            for j in 0..d {
                let want = (x[j] - mu) / (var + 1e-5).sqrt() * gamma[j] as f64 + beta[j] as f64;
                let err = (got[j] as f64 / 4096.0 - want).abs();
                let floor_a = gamma[j] as f64 * (plan.h as f64).exp2() / unit;
                let bound = 4.0 / 4096.0 + want.abs() / 256.0 + floor_a + (want - beta[j] as f64).abs() * (e / 2.0 + e * e / 2.0);
                assert!(err <= bound, "{spec:?} d {d} scale {scale} j {j}: {err} > {bound}");
                worst = worst.max(err * 4096.0);
            }
            println!("he_product {} d {d} σ ≈ {:.3}: worst error {worst:.2} ulp", spec.he_product, var.sqrt());
        }
    }
}
