//! Two-party LayerNorm over the rows of an activation matrix (FASTLMPI's fine-grained flow).
//!
//! **Paper reference.** FASTLMPI (arXiv 2412.16537), LayerNorm (§2.3 of the protocol notes):
//! local mean-centring `A = d·x − Σx`, squares of A, row sums, a two-party reciprocal square
//! root, and γ/β applied by the server. The prototype computes `A·K^(−1/2)` with
//! `K = Σ A² = d³σ²` and so outputs `(x−μ)/(√d·σ)`: it omits the `√d` factor and ε. Fixed here:
//! `out = A·√d / √(Σ A² + ε·d³)·γ + β = γ·(x−μ)/√(σ² + ε) + β`, with every scale documented.
//! The squares use the OT-based toolkit (`mul`); the per-row rescaling `A·r` is either an OT
//! product in Z_2^64 (`he_product = false`, the `bolt` profile) or one HE product (`hemul`,
//! `he_product = true`, the `fastlmpi` profile: the paper's fine-grained HE step).
//!
//! **Functionality.** Input: ring shares (ℓ bits, f = frac) of `x` (rows × d); the server
//! additionally holds γ, β (plaintext). Output: shares of LayerNorm(x) at f bits, bit-equal to
//! [`reference_layernorm`].
//!
//! **Arithmetic** (truncations faithful floors; [`LayerNormSpec::trunc`] = `Approx`, the
//! `fastlmpi` profile's default, makes those of steps 5 and 6 approximate: ⌊·⌋ − c, c ∈ {0, 1}
//! the dropped carry, one (R−Z)-bit and one (G+Z−f)-bit COT per element instead of a
//! millionaire and two COTs each, ≈ 12 flights fewer; the run equals
//! [`reference_layernorm_carried`] given the carries, and the output moves by at most two
//! units against the faithful one, tested in `tests/he_products.rs`; measured in the engine on
//! mpnet-base, 128 × 768, `run --layers 1`: 2,488 B per element and 168 flights with IKNP,
//! 535 B and 172 flights with silent OT (2,515 B and 562 B while the client still uploaded its
//! own share of the HE product), since the Gilboa products send bit j's OT at ℓ − j
//! bits (2,871 B and 920 B before; 4,222 B and 204 flights with faithful truncations)):
//! 1. `A = d·x − Σ_j x_j` (local, exact).
//! 2. `A_h = ⌊A / 2^h⌋` (ring ℓ), `h = max(0, ⌈(3 log2 d + v_max + 2f − 61)/2⌉)` so that
//!    `Σ A_h² < 2^62` for variances up to `2^v_max`.
//! 3. Lift `A_h` exactly to Z_2^64 (one COT per element), square there (one Gilboa cross
//!    term), `V = Σ_j A_h² + ⌊ε·d³·2^(2f−2h)⌉` (local sums; the server adds the ε term).
//! 4. `r = rsqrt(V) ≈ 2^R/√V` (`recip`, ring 64, `R = 60`, or `R = 46` with the HE product;
//!    input range from `v_min, v_max`).
//! 5. `z = ⌊A_h · r / 2^(R−Z)⌋` (`|A_h·r| ≤ 2^R(1 + 2^−26)` since `A_h² ≤ V`), `Z = f + 6`,
//!    i.e. `z ≈ (x−μ)/(σ√d) · 2^Z`. OT variant: Gilboa product in Z_2^64. HE variant: A_h
//!    (ring ℓ) and r (reduced locally to a `bits(t)`-bit ring, r < 2^47) move to Z_t
//!    (`ring_to_field`), one `hemul::mul_rows`, the exact product (< 2^47 < t/4) returns to
//!    Z_2^64 (`field_to_ring`). Then a faithful truncation by `R − Z` and a local reduction to ℓ.
//! 6. `out = ⌊g ⊙ z / 2^(G+Z−f)⌋ + b` with the server's plaintext `g_j = ⌊γ_j √d·2^G⌉`
//!    (`G = gamma_frac`) applied by one Gilboa cross term (server = COT sender), and
//!    `b_j = ⌊β_j 2^f⌉` added to the server's share.
//!
//! **Message flow.** trunc (ℓ) → lift (1 COT batch) → square (1 COT batch) → rsqrt on the row
//! values (`recip`) → product (OT: 2 COT batches; HE: 2 ring→field OT batches, upload + return
//! flight, field→ring) → trunc (64) → γ product (1 COT batch) → trunc (ℓ).
//!
//! **Valid input domain.** `|d·(x_j − μ)|·2^f < 2^(ℓ−2)`, row variance in
//! `[2^v_min, 2^v_max]` (defaults 2^−14 ≈ 6e−5 .. 2^14 ≈ 1.6e4), `|γ (x−μ)/σ| < 2^(ℓ−2−G−Z)`
//! (= 256 for ℓ = 40, f = G = 12), `d ≥ 2`.
//!
//! **Error bound.** Protocol = reference exactly. Reference vs exact f64 LayerNorm (on the same
//! fixed-point input): rsqrt relative error ≤ 2^−26 + D-table rounding, `A_h` floor (relative
//! ≤ 2^h/|A|), z floor (2^−Z), γ quantisation (2^−G relative) and the final floor; tested
//! ≤ 2^−f·(4 + 2^−8·|out|·2^f) absolute.
//!
//! **Bytes per element** (d per row), with `S(b)` a Gilboa cross term (b random OTs and
//! b(b+1)/2 payload bits, `toolkit::mul`): `M(h) + 2C(ℓ)` (trunc) `+ C(64)` (lift) `+ S(64)`
//! (square) `+ 2S(64)` (OT product) or `C_ot(bits t) + (2·seeded + full)/N + M(w) + C(64)`
//! (HE product: ring→field, `hemul::mul`, field→ring) `+ M(R−Z) + 2C(64)` (trunc)
//! `+ S(ℓ) + M(G+Z−f) + 2C(ℓ)`
//! (γ, trunc), where `C(b)` is one b-bit correlated OT and `M(w)` the millionaire on w bits; plus
//! the rsqrt on one value per row. Rounds: constant (≈ 40 flights + the rsqrt's).
//!
//! **Security (semi-honest).** Composition of toolkit protocols returning fresh uniform shares
//! over the whole ring; the lift and the γ product are correlated-OT protocols whose receiver
//! outputs are masked by the sender's uniform pads. γ and β never leave the server (they only
//! appear as COT correlations and in the server's own share); nothing is opened.
//!
//! With the HE product the server additionally sees only fresh ciphertexts under the client's
//! key and returns masked, flooded ciphertexts (`hemul`).
//!
//! **Not done.** The squares stay OT products in Z_2^64 (Σ A_h² needs up to 62 bits, more than
//! the 52-bit plaintext field holds); the output is not kept encrypted for the next linear layer.

use crate::proto::toolkit::convert::{field_to_ring, ring_to_field};
use crate::proto::ctx::Party;
use crate::proto::linear::hemul::{broadcast_rows, mul_rows, HeParty};
use crate::proto::toolkit::mul::{cross_recv, cross_send, mul, square};
use super::recip::{add_public, add_shares, reciprocal, RecipKind, RecipSpec};
use crate::proto::toolkit::trunc::{and_arith, or_from_product, trunc, TruncMode};
use crate::error::{Error, Result};
use crate::share::Ring;

const MODE: TruncMode = TruncMode::Faithful;
/// Fraction bits of the rsqrt output (OT product in Z_2^64).
const RSQRT_FRAC: u32 = 60;
/// Fraction bits of the rsqrt output when `A_h·r` (≤ 2^46·(1 + 2^−20)) is an HE product in a
/// field of at least 49 bits.
const RSQRT_FRAC_HE: u32 = 46;

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
    /// Compute `A_h · r` with one HE product (`hemul::mul_rows`) instead of the 64-bit OT
    /// product; the rsqrt then has `RSQRT_FRAC_HE` fraction bits so that the product fits Z_t.
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
    pub h: u32,
    pub eps_term: i64,
    pub rsqrt: RecipSpec,
    pub z_frac: u32,
}

impl LayerNormSpec {
    pub fn new(ring: Ring, frac: u32, eps: f64) -> LayerNormSpec {
        LayerNormSpec { ring, frac, var_min_log2: -14, var_max_log2: 14, gamma_frac: frac, eps, he_product: false, trunc: TruncMode::Faithful }
    }

    fn rsqrt_frac(&self) -> u32 {
        if self.he_product {
            RSQRT_FRAC_HE
        } else {
            RSQRT_FRAC
        }
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
        let h = ((log_d3 + self.var_max_log2 as f64 + 2.0 * f - 61.0) / 2.0).ceil().max(0.0) as u32;
        let log_v = |v: i32| log_d3 + v as f64 + 2.0 * f - 2.0 * h as f64;
        let lo = log_v(self.var_min_log2).floor().max(0.0) as u32;
        let hi = 61u32;
        if log_v(self.var_max_log2) > hi as f64 + 0.5 {
            return cfg("variance bound exceeds the 64-bit ring");
        }
        let eps_term = (self.eps * (log_d3 + 2.0 * f - 2.0 * h as f64).exp2()).round();
        if eps_term >= (hi as f64).exp2() {
            return cfg("ε term too large");
        }
        let rsqrt = RecipSpec::new(Ring::new(64)?, RecipKind::Rsqrt, 0, self.rsqrt_frac(), lo, hi)?;
        Ok(LnPlan { d, h, eps_term: eps_term as i64, rsqrt, z_frac })
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
    let a64 = lift_to_64(p, ring, &a_h)?;
    p.ch.set_phase("layernorm-square");
    let sq = square(p, wide, &a64)?;
    let sums: Vec<u64> = sq.chunks(d).map(|r| r.iter().fold(0, |acc, &v| wide.add(acc, v))).collect();
    let v = add_public(p, wide, &sums, plan.eps_term);
    p.ch.set_phase("layernorm-rsqrt");
    let r = reciprocal(p, &plan.rsqrt, &v)?;
    p.ch.set_phase("layernorm-scale");
    let shift_z = spec.rsqrt_frac() - plan.z_frac;
    let z64 = match he {
        Some(he) => he_scale(p, he, ring, &a_h, &r, d)?,
        None => mul(p, wide, &a64, &broadcast_rows(&r, d))?,
    };
    let z64 = trunc(p, wide, &z64, shift_z, spec.trunc)?;
    let z: Vec<u64> = z64.iter().map(|&v| ring.reduce(v)).collect();
    let g_all: Vec<i64> = if p.is_server() { (0..rows).flat_map(|_| g_row.iter().copied()).collect() } else { Vec::new() };
    let gz = server_plain_mul(p, ring, p.is_server().then_some(&g_all[..]), &z)?;
    let out = trunc(p, ring, &gz, spec.gamma_frac + plan.z_frac - spec.frac, spec.trunc)?;
    if p.is_server() {
        let b_all: Vec<u64> = (0..rows).flat_map(|_| b_row.iter().map(|&b| ring.from_signed(b))).collect();
        Ok(add_shares(ring, &out, &b_all))
    } else {
        Ok(out)
    }
}

/// Shares over Z_2^64 of `A_h ⊙ r` (r per row) by one HE product: both factors move to Z_t
/// (A_h from ring ℓ, r after a local reduction to a `bits(t)`-bit ring, since r < 2^47), the
/// exact product (< 2^47 < t/4) returns to Z_2^64.
fn he_scale(p: &mut Party, he: &HeParty, ring: Ring, a_h: &[u64], r: &[u64], d: usize) -> Result<Vec<u64>> {
    let field = he.ctx.field();
    let narrow = Ring::new(field.bits())?;
    if field.bits() < RSQRT_FRAC_HE + 3 {
        return Err(Error::Config(format!("LayerNorm HE product needs a plaintext modulus of ≥ {} bits", RSQRT_FRAC_HE + 3)));
    }
    let a_f = ring_to_field(p, ring, field, a_h)?;
    let r_narrow: Vec<u64> = r.iter().map(|&v| narrow.reduce(v)).collect();
    let r_f = ring_to_field(p, narrow, field, &r_narrow)?;
    let prod = mul_rows(p, he, &r_f, &a_f, d)?;
    field_to_ring(p, field, Ring::new(64)?, &prod, RSQRT_FRAC_HE + 1)
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
    let v = a_h.iter().map(|a| a * a).sum::<i128>() + plan.eps_term as i128;
    let v = i64::try_from(v).map_err(|_| Error::Input("LayerNorm variance outside the documented range".into()))?;
    let r = super::recip::reference(&plan.rsqrt, v)? as i128;
    let shift_z = spec.rsqrt_frac() - plan.z_frac;
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
        let spec = LayerNormSpec::new(Ring::new(40).unwrap(), 12, 1e-5);
        let d = 64;
        let gamma: Vec<f32> = (0..d).map(|j| 0.5 + j as f32 / 64.0).collect();
        let beta: Vec<f32> = (0..d).map(|j| j as f32 / 128.0 - 0.25).collect();
        for scale in [0.01f64, 1.0, 50.0] {
            let row: Vec<i64> = (0..d).map(|j| (((j * 37 % 23) as f64 - 11.0) * scale * 4096.0 / 7.0).round() as i64 + 999).collect();
            let got = reference_layernorm(&row, &gamma, &beta, 1e-5, &spec).unwrap();
            let x: Vec<f64> = row.iter().map(|&v| v as f64 / 4096.0).collect();
            let mu = x.iter().sum::<f64>() / d as f64;
            let var = x.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / d as f64;
            for j in 0..d {
                let want = (x[j] - mu) / (var + 1e-5).sqrt() * gamma[j] as f64 + beta[j] as f64;
                let err = (got[j] as f64 / 4096.0 - want).abs();
                assert!(err <= 4.0 / 4096.0 + want.abs() / 256.0, "scale {scale} j {j}: {err}");
            }
        }
    }
}
