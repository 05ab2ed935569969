//! The per-party state of a private inference, shared by the session driver
//! ([`super::session`]) and the block functions ([`super::blocks`]): this party's HE keys
//! ([`HeSide`]), the public protocol parameters ([`Specs`]), the HE layouts ([`Plans`]) and
//! the state of one inference ([`Sess`]). It depends on neither of its two users.

use std::collections::BTreeMap;

use indicatif::ProgressBar;
use rand_chacha::ChaCha20Rng;

use super::report::{Mark, Phase, Recorder};
use super::weights::WeightCache;
use super::{Profile, ProfileKind};
use crate::approx::{ApproxFile, QuantizedPiecewise};
use crate::error::{Error, Result};
use crate::he::{client_setup, server_setup, ClientKeys, HeContext, ServerKeys};
use crate::model::{BertConfig, PoolingMode};
use crate::net::Channel;
use crate::proto::bolt::{bolt_activation, BoltSpec};
use crate::proto::ctx::Party;
use crate::proto::linear::attention::{MatmulShape, SharedMatmulPlan};
use crate::proto::linear::hemul::HeParty;
use crate::proto::linear::coeff::{CoeffPlan, MODEL_WEIGHT_BITS};
use crate::proto::linear::{LinearPlan, LinearShape};
use crate::proto::nonlinear::gelu::{gelu, reference_gelu, reference_gelu_carried, GeluSpec};
use crate::proto::nonlinear::layernorm::LayerNormSpec;
use crate::proto::nonlinear::softmax::SoftmaxSpec;
use crate::proto::toolkit::trunc::TruncMode;
use crate::share::{Field, Ring, Role};

/// A party's keys for one HE context.
pub enum SideKeys {
    Server(ServerKeys),
    Client(ClientKeys),
}

/// One HE context and this party's keys for it.
pub struct HeSide {
    pub ctx: HeContext,
    pub keys: SideKeys,
}

impl HeSide {
    pub(super) fn setup(ch: &mut dyn Channel, role: Role, ctx: HeContext, rotations: &[usize], rng: &mut ChaCha20Rng) -> Result<HeSide> {
        let keys = match role {
            Role::Server => SideKeys::Server(server_setup(ch, &ctx, rotations)?),
            Role::Client => SideKeys::Client(client_setup(ch, &ctx, rotations, rng)?),
        };
        Ok(HeSide { ctx, keys })
    }

    pub fn party(&self) -> HeParty<'_> {
        match &self.keys {
            SideKeys::Server(k) => HeParty::server(&self.ctx, k),
            SideKeys::Client(k) => HeParty::client(&self.ctx, k),
        }
    }
}

/// The public parameters of every protocol of a profile, derived identically by both parties.
#[derive(Clone, Debug)]
pub struct Specs {
    pub ring: Ring,
    pub frac: u32,
    pub softmax: SoftmaxSpec,
    pub gelu: Activation,
    /// The BERT pooler's tanh.
    pub tanh: Activation,
    pub layernorm: LayerNormSpec,
    /// `round(2^frac / √head_dim)`.
    pub score_scale: i64,
}

/// The activations the `fastlmpi` profile evaluates with the segmented protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentedActivation {
    /// The encoder's GeLU: truncates its accumulator like the products around it (a carry
    /// site of the simulation).
    Gelu,
    /// The BERT pooler's tanh: faithful truncation.
    PoolerTanh,
}

impl SegmentedActivation {
    pub fn name(self) -> &'static str {
        match self {
            SegmentedActivation::Gelu => "GeLU",
            SegmentedActivation::PoolerTanh => "tanh",
        }
    }
}

/// The segmented protocol's spec for the quantised set `q` as the engine runs `which` under
/// `profile` (also what `fit-approx` prices its candidates by).
pub fn segmented_spec(profile: &Profile, which: SegmentedActivation, q: &QuantizedPiecewise, nl_field: Field) -> Result<GeluSpec> {
    let fixed = profile.fixed;
    let spec = GeluSpec::from_quantized(q, nl_field, fixed.ring_bits, fixed.frac_bits + 7)?;
    let out_trunc = match which {
        SegmentedActivation::Gelu => profile.linear_trunc,
        SegmentedActivation::PoolerTanh => TruncMode::Faithful,
    };
    // An approximate out_trunc also makes the knot floor approximate, which lets a piece
    // reach past its knot: its accumulator bound is checked again.
    let spec = GeluSpec { out_trunc, ..spec };
    spec.validate(nl_field)?;
    Ok(spec)
}

impl Specs {
    pub fn new(profile: &Profile, cfg: &BertConfig, nl_field: Field) -> Result<Specs> {
        let fixed = profile.fixed;
        fixed.validate()?;
        let ring = Ring::new(fixed.ring_bits)?;
        let frac = fixed.frac_bits;
        let ln = LayerNormSpec::new(ring, frac, cfg.layer_norm_eps);
        let (softmax, gelu, tanh, layernorm) = match profile.kind {
            ProfileKind::Bolt => (
                SoftmaxSpec::ibert(ring, frac)?,
                Activation::Bolt(BoltSpec::gelu(ring, frac)?),
                Activation::Bolt(BoltSpec::tanh(ring, frac)?),
                // γ·√d at 10 bits keeps |LayerNorm output| < 128 inside BOLT's 37-bit ring.
                LayerNormSpec { gamma_frac: frac - 2, ..ln },
            ),
            ProfileKind::Fastlmpi => {
                let segmented = |set: ApproxFile, which: SegmentedActivation| -> Result<Activation> {
                    if set.spec.in_frac != frac {
                        return Err(Error::Config(format!("the {} set is fitted for {} fraction bits, not {frac}", which.name(), set.spec.in_frac)));
                    }
                    Ok(Activation::Segmented(segmented_spec(profile, which, &set.quantized, nl_field)?))
                };
                (
                    SoftmaxSpec { he_products: true, trunc: profile.linear_trunc, ..SoftmaxSpec::new(ring, frac)? },
                    segmented(profile.gelu_set()?, SegmentedActivation::Gelu)?,
                    segmented(profile.tanh_set()?, SegmentedActivation::PoolerTanh)?,
                    // FASTLMPI: the per-row rescaling A·(1/σ) is an HE product.
                    LayerNormSpec { he_product: true, trunc: profile.linear_trunc, ..ln },
                )
            }
        };
        Ok(Specs { ring, frac, softmax, gelu, tanh, layernorm, score_scale: fixed.activation().encode(1.0 / (cfg.head_dim() as f64).sqrt()) })
    }
}

/// An element-wise activation as a profile evaluates it.
#[derive(Clone, Debug)]
pub enum Activation {
    /// FASTLMPI: segment selection by OT, polynomials under HE (`proto::nonlinear::gelu`).
    Segmented(GeluSpec),
    /// BOLT: an even polynomial in |x| with OT products (`proto::bolt`).
    Bolt(BoltSpec),
}

impl Activation {
    pub fn eval(&self, p: &mut Party, he: &HeParty, x: &[u64]) -> Result<Vec<u64>> {
        match self {
            Activation::Segmented(spec) => gelu(p, he, x, spec),
            Activation::Bolt(spec) => bolt_activation(p, spec, x),
        }
    }

    /// The bit-exact cleartext mirror of [`Activation::eval`].
    pub fn reference(&self, x: &[i64]) -> Result<Vec<i64>> {
        match self {
            Activation::Segmented(spec) => Ok(reference_gelu(x, spec)),
            Activation::Bolt(spec) => crate::proto::bolt::reference(spec, x),
        }
    }

    /// [`Activation::reference`] of a run whose segment selection missed the carries `knot`
    /// (the segmented activation with an approximate knot floor; others have none).
    pub fn reference_carried(&self, x: &[i64], knot: &[u8]) -> Result<Vec<i64>> {
        match self {
            Activation::Segmented(spec) => Ok(reference_gelu_carried(x, spec, knot)),
            Activation::Bolt(_) => Err(Error::Config("BOLT's activation has no knot carries".into())),
        }
    }

    /// Largest |input| (real value) the protocol accepts.
    pub fn input_bound(&self, frac: u32) -> f64 {
        match self {
            Activation::Segmented(spec) => ((spec.input_bits as i32 - frac as i32) as f64).exp2(),
            Activation::Bolt(spec) => spec.input_bound(),
        }
    }
}

/// HE layouts of every linear layer and attention product of one request.
pub struct Plans {
    linear: BTreeMap<(usize, usize, usize), LinearPlan>,
    /// The linear layers' plans under the coefficient backend (then `linear` is empty).
    coeff: BTreeMap<(usize, usize, usize), CoeffPlan>,
    /// The attention cross terms' plans under `LinearBackend::CoeffAll` (then the field
    /// attention plans below are unused and need no Galois keys).
    coeff_shared: BTreeMap<(usize, usize, usize), CoeffPlan>,
    pub scores: SharedMatmulPlan,
    pub context: SharedMatmulPlan,
}

impl Plans {
    /// `coeff_ctx` is the coefficient context when the profile's backend is `Coeff`.
    pub(super) fn new(
        ctx: &HeContext,
        coeff_ctx: Option<&HeContext>,
        profile: &Profile,
        cfg: &BertConfig,
        n: usize,
        pooling: PoolingMode,
        labels: usize,
    ) -> Result<Plans> {
        let packing = profile.linear.field_packing();
        let (h, i, d, heads) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim(), cfg.num_attention_heads);
        let mut shapes = vec![(n, h, h), (n, h, i), (n, i, h)];
        if pooling == PoolingMode::Pooler {
            // The BERT pooler's dense layer on the first token.
            shapes.push((1, h, h));
        }
        if labels > 0 {
            shapes.push((1, h, labels));
        }
        let (mut linear, mut coeff) = (BTreeMap::new(), BTreeMap::new());
        for (n, d_in, d_out) in shapes {
            let shape = LinearShape { n, d_in, d_out };
            match (profile.linear.coeff_linear(), coeff_ctx) {
                (false, _) => {
                    linear.insert((n, d_in, d_out), LinearPlan::new(ctx, shape, packing)?);
                }
                (true, Some(cc)) => {
                    // The token rows' hidden × hidden shape serves Q, K, V (one upload) and the
                    // attention output; every other shape one call with one weight set.
                    let uses: &[usize] = if (d_in, d_out) == (h, h) && n > 1 { &[3, 1] } else { &[1] };
                    coeff.insert((n, d_in, d_out), CoeffPlan::for_uses(cc, shape, MODEL_WEIGHT_BITS, uses)?);
                }
                (true, None) => return Err(Error::Config("the coefficient backend needs its HE context".into())),
            }
        }
        // Attention cross terms A_c·B_s and B_cᵀ·A_sᵀ: plaintexts are uniform ring shares.
        let mut coeff_shared = BTreeMap::new();
        if let (true, Some(cc)) = (profile.linear.coeff_attention(), coeff_ctx) {
            let share_bits = profile.fixed.ring_bits - 1;
            for (a, k, b) in [(n, d, n), (n, n, d), (d, n, n)] {
                coeff_shared.insert((a, k, b), CoeffPlan::new(cc, LinearShape { n: a, d_in: k, d_out: b }, share_bits)?);
            }
        }
        Ok(Plans {
            linear,
            coeff,
            coeff_shared,
            scores: SharedMatmulPlan::new(ctx, MatmulShape { n, k: d, m: n }, heads, packing)?,
            context: SharedMatmulPlan::new(ctx, MatmulShape { n, k: n, m: d }, heads, packing)?,
        })
    }

    pub fn linear(&self, n: usize, d_in: usize, d_out: usize) -> Result<LinearPlan> {
        self.linear
            .get(&(n, d_in, d_out))
            .cloned()
            .ok_or_else(|| Error::Config(format!("no linear plan for {n}×{d_in}·{d_in}×{d_out}")))
    }

    pub fn coeff(&self, n: usize, d_in: usize, d_out: usize) -> Result<CoeffPlan> {
        self.coeff
            .get(&(n, d_in, d_out))
            .cloned()
            .ok_or_else(|| Error::Config(format!("no coefficient plan for {n}×{d_in}·{d_in}×{d_out}")))
    }

    /// The plan of a cross term X (rows × k, a client share) · W (k × cols, a server share).
    pub fn coeff_shared(&self, rows: usize, k: usize, cols: usize) -> Result<CoeffPlan> {
        self.coeff_shared
            .get(&(rows, k, cols))
            .cloned()
            .ok_or_else(|| Error::Config(format!("no coefficient plan for the product {rows}×{k}·{k}×{cols}")))
    }

    pub(super) fn rotations(&self) -> Vec<usize> {
        let mut r: Vec<usize> = self.linear.values().flat_map(|p| p.rotations()).collect();
        if self.coeff_shared.is_empty() {
            r.extend(self.scores.rotations());
            r.extend(self.context.rotations());
        }
        r.sort_unstable();
        r.dedup();
        r
    }
}

/// One party's state during one inference.
pub struct Sess<'a> {
    pub p: Party<'a>,
    pub lin: &'a HeSide,
    /// The coefficient-packing context of the linear layers (`LinearBackend::Coeff` only).
    pub coeff: Option<&'a HeSide>,
    pub nl: &'a HeSide,
    pub specs: &'a Specs,
    pub profile: Profile,
    pub plans: &'a Plans,
    pub rec: Recorder,
    pub rng: &'a mut ChaCha20Rng,
    /// The server's encoded weights kept between inferences (`None` on the client).
    pub weights: Option<&'a WeightCache>,
    /// The cache's clock when this inference started: it never evicts entries used since.
    pub weights_since: u64,
    pub(super) layer: Option<usize>,
    /// Open measurements with the OT log's length at their start.
    pub(super) open: Vec<(Mark, usize)>,
    pub(super) progress: Option<ProgressBar>,
}

impl Sess<'_> {
    /// Start measuring operator `op` of the current layer.
    pub fn begin(&mut self, op: &str) {
        if let Some(pb) = &self.progress {
            pb.set_message(op.to_string());
        }
        let mark = self.rec.start(&mut *self.p.ch, self.layer, op, Phase::Online);
        self.open.push((mark, self.p.ot_log().len()));
    }

    /// Finish the innermost measurement.
    pub fn end(&mut self) {
        if let Some((mark, log_at)) = self.open.pop() {
            let ots = self.p.ot_equivalents_since(log_at);
            self.rec.finish_counted(&*self.p.ch, mark, ots);
        }
    }
}

