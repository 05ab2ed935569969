//! Private BERT inference: one function per block, calling the protocols of `proto` through a
//! [`Profile`] that chooses the protocol per operator.
//!
//! **Roles.** The client holds the text (and so the token ids, the embeddings and the public
//! padding mask); the server holds every encoder, pooler and classifier weight. Both run the
//! same block functions ([`blocks`]) in the same order with the same public arguments; each
//! passes its own share and, on the server, the weights.
//!
//! **Data flow** (per encoder layer, activations as additive shares over Z_2^ℓ with `f`
//! fraction bits, `profile.fixed`):
//! ```text
//!  client: embeddings (plaintext) ──► shares (x, 0)
//!  Q, K, V = linear(x)                      HE linear layers, exact mod t / 2^ℓ, one truncation
//!  S_h = ⌊⌊Q_h·K_hᵀ⌋_f · c⌋_f (+ rel. bias)  HE share×share products, public 1/√d constant c
//!  P = softmax(S, mask)                      proto::nonlinear::softmax (or the profile's)
//!  C_h = ⌊P_h·V_h⌋_f ; A = linear(C)        HE share×share products, output projection
//!  h1 = LayerNorm(x + A)                     proto::nonlinear::layernorm
//!  F = linear(GeLU(linear(h1)))              proto::nonlinear::gelu on the FFN activations
//!  x' = LayerNorm(h1 + F)
//! ```
//! then pooling (mean with a public 1/count, optional L2 normalisation; or CLS; or the BERT
//! pooler), the classifier when the checkpoint has one, and the opening of the result to the
//! client only. The truncations after the encoder's linear layers and attention products, and
//! GeLU's final one, SoftMax's exp and normalisation and LayerNorm's rescaling and γ product
//! follow [`Profile::linear_trunc`] (the non-linear protocols' other truncations are
//! faithful): faithful (`bolt`), or approximate (`fastlmpi`: ⌊·⌋ − c with the dropped carry
//! c ∈ {0, 1}, ⌊·⌋ + 1 − c in SoftMax, one short COT per value instead of a comparison). So
//! the private output equals the fixed-point simulation (`model::fixed` with the profile's
//! reference functions) bit for bit: [`simulate`] when every truncation is faithful,
//! [`simulate_with_carries`] given the carries the run dropped otherwise (a test traces both
//! parties to get them, `model::CarrySite` lists the twenty sites per layer). SoftMax's max tree
//! and exp segment floor and GeLU's knot floor ignore low bits in the same way (their carries
//! decide near-ties and knot-adjacent inputs, and are sites of the tape too).
//!
//! **Leakage.** Public: the model's shape, the sequence length, the padding mask (the number
//! of real tokens), the number of layers run, the profile. The client learns what the server's
//! [`policy`] opens (the label, the logits, or the pooled embedding and the logits; the
//! embedding when there is no head); the server learns nothing.

pub mod blocks;
pub mod output;
pub mod policy;
pub mod report;
pub mod session;
pub mod sim;
pub mod state;
pub mod weights;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::approx::ApproxFile;
use crate::error::{Error, Result};
use crate::he::HePreset;
use crate::model::FixedConfig;
use crate::ot::OtBackend;
use crate::proto::linear::Packing;
use crate::proto::toolkit::trunc::TruncMode;

pub use session::{
    client_close, client_infer, client_open, serve_session, ClientOutcome, EngineSession, InferenceRequest, ServerModel,
    ServerSessionReport, SessionRequest,
};
pub use policy::{Opened, Reveal, ServePolicy, SessionLimits, Verdict};
pub use sim::{simulate, simulate_with_carries, ProfileNonLinear};

/// Which protocol family runs the non-linear operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProfileKind {
    /// FASTLMPI's protocols as implemented in `proto` (sound versions).
    Fastlmpi,
    /// BOLT's protocol choices (`proto::bolt`).
    Bolt,
}

/// How the linear layers and the attention products are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinearBackend {
    /// SIMD BFV over a prime field with the given packing; ring↔field conversions around it.
    Field(Packing),
    /// Coefficient packing over the shares' ring Z_2^ℓ for the linear layers
    /// (`proto::linear::coeff`: no rotations, no conversions); the attention products use the
    /// field backend with the given packing.
    Coeff(Packing),
    /// Coefficient packing for the linear layers and the attention products (each party's
    /// own product locally, the two cross terms under HE, all heads in one flight each way).
    CoeffAll,
}

impl LinearBackend {
    /// The packing of the field-backend products (all of them, or the attention products).
    pub fn field_packing(self) -> Packing {
        match self {
            LinearBackend::Field(p) | LinearBackend::Coeff(p) => p,
            LinearBackend::CoeffAll => Packing::Bsgs,
        }
    }
    /// Whether the linear layers use coefficient packing.
    pub fn coeff_linear(self) -> bool {
        !matches!(self, LinearBackend::Field(_))
    }
    /// Whether the attention products use coefficient packing.
    pub fn coeff_attention(self) -> bool {
        matches!(self, LinearBackend::CoeffAll)
    }
}

/// The protocol choices of one private run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub kind: ProfileKind,
    pub fixed: FixedConfig,
    pub linear: LinearBackend,
    /// The OT construction under the non-linear protocols (`--ot`).
    #[serde(default)]
    pub ot: OtBackend,
    /// The truncation after each linear layer and attention product of an encoder layer, of the
    /// segmented GeLU's accumulator, SoftMax's exp and normalisation and LayerNorm's rescaling
    /// and γ product (`Approx`: ⌊·⌋ or one less, SoftMax ⌊·⌋ + 1 − c, a single short COT per
    /// element; the simulation models it by the carries, see `engine::simulate_with_carries`).
    #[serde(default = "faithful")]
    pub linear_trunc: TruncMode,
}

fn faithful() -> TruncMode {
    TruncMode::Faithful
}

/// The GeLU segments the FASTLMPI profile evaluates (installed by `fastlmpi fit-approx gelu
/// --install`; fit-approx's ordinary output in results/approx/ does not change the engine).
const GELU_SET: &str = include_str!("../approx/sets/gelu.json");
/// The tanh segments of the BERT pooler (installed by `fastlmpi fit-approx tanh --install`).
const TANH_SET: &str = include_str!("../approx/sets/tanh.json");

impl Profile {
    pub fn fastlmpi() -> Profile {
        Profile {
            kind: ProfileKind::Fastlmpi,
            fixed: FixedConfig { frac_bits: 12, weight_frac_bits: 12, ring_bits: 40 },
            // Coefficient packing over the ring for the linear layers and the attention
            // products: no conversions, no rotations (`results/linear-coeff-bench.json`).
            linear: LinearBackend::CoeffAll,
            // Silent OT under the non-linear protocols: ≈ 3–4× fewer bytes than IKNP, paid for
            // in CPU (≈ 2 M correlations/s on 2 cores): on a loopback link IKNP is faster
            // (results/recorded/run-*-ot-{iknp,silent}.json), on slow links silent wins.
            ot: OtBackend::Silent,
            // The products' own truncations drop the carry of the low 12 bits (error −1 or 0
            // at 2^−12): a faithful one costs a 12-bit millionaire per element on top.
            linear_trunc: TruncMode::Approx,
        }
    }

    /// BOLT's widths (ℓ = 37, scale 12) and packing (BSGS).
    pub fn bolt() -> Profile {
        Profile {
            kind: ProfileKind::Bolt,
            fixed: FixedConfig { frac_bits: 12, weight_frac_bits: 12, ring_bits: 37 },
            linear: LinearBackend::Field(Packing::Bsgs),
            // BOLT's code runs IKNP (SCI's emp-ot copy) and KK13 for its 1-of-N OTs, not silent OT.
            ot: OtBackend::Iknp,
            linear_trunc: TruncMode::Faithful,
        }
    }

    pub fn parse(name: &str) -> Result<Profile> {
        match name {
            "fastlmpi" => Ok(Profile::fastlmpi()),
            "bolt" => Ok(Profile::bolt()),
            other => Err(Error::Config(format!("unknown profile `{other}` (expected fastlmpi or bolt)"))),
        }
    }

    /// The same profile on another OT backend.
    pub fn with_ot(self, ot: OtBackend) -> Profile {
        Profile { ot, ..self }
    }

    pub fn name(&self) -> &'static str {
        match self.kind {
            ProfileKind::Fastlmpi => "fastlmpi",
            ProfileKind::Bolt => "bolt",
        }
    }

    /// HE parameters of the linear layers and attention products.
    pub fn linear_preset(&self) -> HePreset {
        HePreset::linear()
    }

    /// HE parameters of the coefficient-packed linear layers, when the profile uses them.
    pub fn coefficient_preset(&self) -> Option<HePreset> {
        self.linear.coeff_linear().then(|| HePreset::coefficient(self.fixed.ring_bits))
    }

    /// HE parameters of the non-linear protocols' HE steps (GeLU polynomials, products).
    pub fn nonlinear_preset(&self) -> HePreset {
        HePreset::simd(8192, 52)
    }

    /// The checked-in GeLU approximation set.
    pub fn gelu_set(&self) -> Result<ApproxFile> {
        ApproxFile::parse(GELU_SET, "src/approx/sets/gelu.json")
    }

    /// The checked-in tanh approximation set (BERT pooler).
    pub fn tanh_set(&self) -> Result<ApproxFile> {
        ApproxFile::parse(TANH_SET, "src/approx/sets/tanh.json")
    }

    /// Everything both parties must agree on, for the handshake.
    pub fn handshake_params(&self) -> BTreeMap<String, String> {
        let f = &self.fixed;
        BTreeMap::from([
            ("profile".to_string(), self.name().to_string()),
            ("fixed".to_string(), format!("{}/{}/{}", f.frac_bits, f.weight_frac_bits, f.ring_bits)),
            ("linear".to_string(), format!("{:?}", self.linear)),
            ("ot".to_string(), self.ot.name().to_string()),
            ("linear_trunc".to_string(), format!("{:?}", self.linear_trunc)),
            ("gelu_set".to_string(), format!("{:016x}", fnv1a(GELU_SET.as_bytes()))),
            ("tanh_set".to_string(), format!("{:016x}", fnv1a(TANH_SET.as_bytes()))),
        ])
    }
}

/// A short stable digest (agreement check, not a security function).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// The padded length used for a sentence of `tokens` tokens when one session serves many
/// sentences: the next power of two (at least 8), so a handful of key sets covers any input.
pub fn bucket_len(tokens: usize, max_positions: usize) -> usize {
    tokens.max(8).next_power_of_two().min(max_positions.max(tokens))
}

/// One measured range against the domain a protocol of the profile accepts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DomainCheck {
    pub what: String,
    /// Observed interval (min, max) on the real activations.
    pub observed: (f64, f64),
    /// Interval the protocol accepts.
    pub domain: (f64, f64),
    pub ok: bool,
}

/// Compare measured activation ranges with the domains of the profile's protocols.
pub fn domain_checks(profile: &Profile, cfg: &crate::model::BertConfig, r: &crate::model::ranges::ActivationRanges, max_tokens: usize) -> Result<Vec<DomainCheck>> {
    let nl = crate::he::HeContext::new(&profile.nonlinear_preset())?;
    let specs = state::Specs::new(profile, cfg, nl.field())?;
    let f = specs.frac as i32;
    let l = profile.fixed.ring_bits as i32;
    let p2 = |e: i32| 2f64.powi(e);
    let ln = &specs.layernorm;
    let ln_plan = ln.plan(cfg.hidden_size)?;
    let ln_out = p2(l - 2 - ln.gamma_frac as i32 - ln_plan.z_frac as i32);
    let check = |what: &str, span: &crate::model::ranges::Span, lo: f64, hi: f64| DomainCheck {
        what: what.to_string(),
        observed: (span.min, span.max),
        domain: (lo, hi),
        ok: span.count > 0 && span.min >= lo && span.max < hi,
    };
    let score_hi = p2(specs.softmax.score_bits as i32 - f);
    let gelu_hi = specs.gelu.input_bound(specs.frac);
    let recip = specs.softmax.recip_spec(max_tokens)?;
    let mut checks = vec![
        check("LayerNorm variance σ² (rsqrt input)", &r.layernorm_variance, p2(ln.var_min_log2), p2(ln.var_max_log2)),
        check("|LayerNorm output|", &r.layernorm_output_abs, 0.0, ln_out),
        check("|attention score| (SoftMax input)", &r.score_abs, 0.0, score_hi),
        check("SoftMax row sum (reciprocal input)", &r.softmax_row_sum, p2(recip.lo_bit as i32 - f), p2(recip.hi_bit as i32 + 1 - f)),
        check("|GeLU input|", &r.gelu_input_abs, 0.0, gelu_hi),
        check("|activation| (products stay below 2^(ℓ−2) at 2f bits)", &r.activation_abs, 0.0, p2(l - 2 - 2 * f)),
    ];
    // Only L2-normalised (sentence-transformer) pooling runs this rsqrt; a checkpoint with the
    // tanh pooler records no pooled norm, and an empty span would read as a failed check.
    if r.pooled_norm.count > 0 {
        checks.push(check("pooled norm (L2 normalisation rsqrt input)", &r.pooled_norm, p2(-4), p2(8) * 2f64.sqrt()));
    }
    Ok(checks)
}
