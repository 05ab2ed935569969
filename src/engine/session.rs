//! One private inference session: key and OT setup, the per-layer loop, the opening of the
//! result, and the records.

use std::collections::BTreeMap;

use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use super::blocks::{self, HeadWeights, LayerWeights};
use super::report::{Mark, Phase, Recorder};
use super::{LinearBackend, Profile, ProfileKind};
use crate::error::{Error, Result};
use crate::he::{client_setup, server_setup, ClientKeys, HeContext, ServerKeys};
use crate::model::{BertConfig, FixedModel, Model, PoolingMode, PublicModel, Tokenized};
use crate::net::Channel;
use crate::ot::OtSession;
use crate::proto::attention::{MatmulShape, SharedMatmulPlan};
use crate::proto::ctx::Party;
use crate::proto::gelu::GeluSpec;
use crate::proto::hemul::HeParty;
use crate::proto::layernorm::LayerNormSpec;
use crate::proto::linear::{LinearPlan, LinearShape};
use crate::proto::softmax::SoftmaxSpec;
use crate::share::{Field, Ring, Role};

/// What the client asks for; everything in it is public to both parties.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InferenceRequest {
    /// Padded sequence length n.
    pub seq_len: usize,
    /// The padding mask (1 = real token); its length is `seq_len`.
    pub mask: Vec<u32>,
    /// Number of encoder layers to run (the first `layers`).
    pub layers: usize,
    /// Open the pooled embedding to the client (always, when the model has no classifier).
    pub reveal_embedding: bool,
}

impl InferenceRequest {
    /// Checks a request against the model (the server runs this on what it received).
    pub fn validate(&self, cfg: &BertConfig) -> Result<()> {
        let bad = |m: String| Err(Error::Input(format!("inference request: {m}")));
        if self.seq_len == 0 || self.seq_len > cfg.max_position_embeddings {
            return bad(format!("sequence length {} outside 1..={}", self.seq_len, cfg.max_position_embeddings));
        }
        if self.mask.len() != self.seq_len || self.mask.iter().any(|&m| m > 1) {
            return bad("the mask must hold seq_len values of 0 or 1".into());
        }
        if !self.mask.contains(&1) {
            return bad("the mask has no real token".into());
        }
        if self.layers == 0 || self.layers > cfg.num_hidden_layers {
            return bad(format!("layers {} outside 1..={}", self.layers, cfg.num_hidden_layers));
        }
        Ok(())
    }
}

/// The client's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClientOutcome {
    /// Pooled embedding at `frac` bits (when opened).
    pub pooled_fixed: Option<Vec<i64>>,
    /// Classifier logits at `frac` bits (when the model has a classifier).
    pub logits_fixed: Option<Vec<i64>>,
    pub pooled: Option<Vec<f32>>,
    pub logits: Option<Vec<f32>>,
    pub records: Recorder,
}

/// The server's model with its weights quantised once for any number of sessions.
pub struct ServerModel<'m> {
    pub model: &'m Model,
    pub fixed: FixedModel<'m>,
}

impl<'m> ServerModel<'m> {
    pub fn new(model: &'m Model, profile: &Profile) -> Result<ServerModel<'m>> {
        Ok(ServerModel { model, fixed: FixedModel::new(model, profile.fixed)? })
    }
}

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
    fn setup(ch: &mut dyn Channel, role: Role, ctx: HeContext, rotations: &[usize], rng: &mut ChaCha20Rng) -> Result<HeSide> {
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
    pub gelu: GeluSpec,
    pub layernorm: LayerNormSpec,
    /// `round(2^frac / √head_dim)`.
    pub score_scale: i64,
}

impl Specs {
    pub fn new(profile: &Profile, cfg: &BertConfig, nl_field: Field) -> Result<Specs> {
        if profile.kind == ProfileKind::Bolt {
            return Err(Error::Config("the bolt profile's protocols are not available in this build".into()));
        }
        let fixed = profile.fixed;
        fixed.validate()?;
        let ring = Ring::new(fixed.ring_bits)?;
        let frac = fixed.frac_bits;
        let gelu_set = profile.gelu_set()?;
        if gelu_set.spec.in_frac != frac {
            return Err(Error::Config(format!("the GeLU set is fitted for {} fraction bits, not {frac}", gelu_set.spec.in_frac)));
        }
        Ok(Specs {
            ring,
            frac,
            softmax: SoftmaxSpec::new(ring, frac)?,
            gelu: GeluSpec::from_quantized(&gelu_set.quantized, nl_field, fixed.ring_bits, frac + 7)?,
            layernorm: LayerNormSpec::new(ring, frac, cfg.layer_norm_eps),
            score_scale: fixed.activation().encode(1.0 / (cfg.head_dim() as f64).sqrt()),
        })
    }
}

/// HE layouts of every linear layer and attention product of one request.
pub struct Plans {
    linear: BTreeMap<(usize, usize, usize), LinearPlan>,
    pub scores: SharedMatmulPlan,
    pub context: SharedMatmulPlan,
}

impl Plans {
    fn new(ctx: &HeContext, profile: &Profile, cfg: &BertConfig, n: usize, labels: usize) -> Result<Plans> {
        let LinearBackend::Field(packing) = profile.linear;
        let (h, i, d) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim());
        let mut shapes = vec![(n, h, h), (n, h, i), (n, i, h)];
        if labels > 0 {
            shapes.push((1, h, labels));
        }
        let mut linear = BTreeMap::new();
        for (n, d_in, d_out) in shapes {
            linear.insert((n, d_in, d_out), LinearPlan::new(ctx, LinearShape { n, d_in, d_out }, packing)?);
        }
        Ok(Plans {
            linear,
            scores: SharedMatmulPlan::new(ctx, MatmulShape { n, k: d, m: n }, packing)?,
            context: SharedMatmulPlan::new(ctx, MatmulShape { n, k: n, m: d }, packing)?,
        })
    }

    pub fn linear(&self, n: usize, d_in: usize, d_out: usize) -> Result<LinearPlan> {
        self.linear
            .get(&(n, d_in, d_out))
            .cloned()
            .ok_or_else(|| Error::Config(format!("no linear plan for {n}×{d_in}·{d_in}×{d_out}")))
    }

    fn rotations(&self) -> Vec<usize> {
        let mut r: Vec<usize> = self.linear.values().flat_map(|p| p.rotations()).collect();
        r.extend(self.scores.rotations());
        r.extend(self.context.rotations());
        r.sort_unstable();
        r.dedup();
        r
    }
}

/// One party's state during the online phase.
pub struct Sess<'a> {
    pub p: Party<'a>,
    pub lin: HeSide,
    pub nl: HeSide,
    pub specs: Specs,
    pub profile: Profile,
    pub plans: Plans,
    pub rec: Recorder,
    pub rng: ChaCha20Rng,
    layer: Option<usize>,
    open: Vec<Mark>,
    progress: Option<ProgressBar>,
}

impl Sess<'_> {
    /// Start measuring operator `op` of the current layer.
    pub fn begin(&mut self, op: &str) {
        if let Some(pb) = &self.progress {
            pb.set_message(op.to_string());
        }
        let mark = self.rec.start(&mut *self.p.ch, self.layer, op, Phase::Online);
        self.open.push(mark);
    }

    /// Finish the innermost measurement.
    pub fn end(&mut self) {
        if let Some(mark) = self.open.pop() {
            self.rec.finish(&*self.p.ch, mark);
        }
    }
}

/// Keys, OTs and layouts, identical on both sides but for the role.
struct Setup {
    lin: HeSide,
    nl: HeSide,
    specs: Specs,
    plans: Plans,
    rng: ChaCha20Rng,
}

fn setup(ch: &mut dyn Channel, role: Role, profile: &Profile, cfg: &BertConfig, req: &InferenceRequest, labels: usize) -> Result<(Setup, OtSession)> {
    let mut rng = ChaCha20Rng::from_os_rng();
    let lin_ctx = HeContext::new(&profile.linear_preset())?;
    let nl_ctx = HeContext::new(&profile.nonlinear_preset())?;
    let specs = Specs::new(profile, cfg, nl_ctx.field())?;
    let plans = Plans::new(&lin_ctx, profile, cfg, req.seq_len, labels)?;
    let lin = HeSide::setup(ch, role, lin_ctx, &plans.rotations(), &mut rng)?;
    let nl = HeSide::setup(ch, role, nl_ctx, &[], &mut rng)?;
    let ot = OtSession::setup(ch, role)?;
    Ok((Setup { lin, nl, specs, plans, rng }, ot))
}

fn progress_bar(layers: usize) -> ProgressBar {
    let pb = ProgressBar::new(layers as u64);
    if let Ok(style) = ProgressStyle::with_template("{prefix} [{bar:30}] layer {pos}/{len} {msg} · {elapsed_precise} elapsed, ETA {eta}") {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_prefix("private inference");
    pb
}

/// The forward pass shared by both roles. `server` is `Some` on the server.
fn forward(s: &mut Sess, x0: Vec<u64>, req: &InferenceRequest, cfg: &BertConfig, pooling: PoolingMode, labels: usize, server: Option<&ServerModel>) -> Result<(Vec<u64>, Option<Vec<u64>>)> {
    let n = req.seq_len;
    let bias = match server {
        Some(sm) => sm.fixed.relative_bias(n)?,
        None => None,
    };
    let mut h = x0;
    for l in 0..req.layers {
        s.layer = Some(l);
        let w = match server {
            Some(sm) => Some(LayerWeights {
                quantized: sm.fixed.layers.get(l).ok_or_else(|| Error::Config(format!("no layer {l}")))?,
                float: sm.model.server.layers.get(l).ok_or_else(|| Error::Config(format!("no layer {l}")))?,
                relative_bias: bias.as_deref(),
            }),
            None => None,
        };
        h = blocks::encoder_layer(s, &h, &req.mask, cfg, w.as_ref())?;
        if let Some(pb) = &s.progress {
            pb.inc(1);
        }
    }
    s.layer = None;
    let pooled = blocks::pool(s, &h, &req.mask, cfg.hidden_size, pooling)?;
    let logits = if labels > 0 {
        let hw = server.map(|sm| HeadWeights { classifier: sm.fixed.classifier.as_ref() });
        Some(blocks::head(s, &pooled, cfg.hidden_size, labels, hw.as_ref())?)
    } else {
        None
    };
    Ok((pooled, logits))
}

fn open_outputs(s: &mut Sess, pooled: &[u64], logits: Option<&[u64]>, reveal_embedding: bool) -> Result<(Option<Vec<i64>>, Option<Vec<i64>>)> {
    s.begin("open output");
    let pooled = if reveal_embedding || logits.is_none() { blocks::reveal_to_client(s, pooled)? } else { None };
    let logits = match logits {
        Some(l) => blocks::reveal_to_client(s, l)?,
        None => None,
    };
    s.end();
    Ok((pooled, logits))
}

/// Server side of one inference. The request has been received (and is validated here).
pub fn server_inference(ch: &mut dyn Channel, sm: &ServerModel, profile: &Profile, req: &InferenceRequest) -> Result<Recorder> {
    let cfg = &sm.model.public.config;
    req.validate(cfg)?;
    let labels = sm.fixed.classifier.as_ref().map_or(0, |c| c.b.len());
    let mut rec = Recorder::new();
    let mark = rec.start(ch, None, "setup", Phase::Setup);
    ch.send_u64(labels as u64)?;
    ch.flush()?;
    let (st, mut ot) = setup(ch, Role::Server, profile, cfg, req, labels)?;
    rec.finish(ch, mark);
    let mut s = Sess {
        p: Party::new(Role::Server, ch, &mut ot),
        lin: st.lin,
        nl: st.nl,
        specs: st.specs,
        profile: *profile,
        plans: st.plans,
        rec,
        rng: st.rng,
        layer: None,
        open: Vec::new(),
        progress: None,
    };
    let x0 = blocks::embedding_shares(&s, None, req.seq_len * cfg.hidden_size)?;
    let (pooled, logits) = forward(&mut s, x0, req, cfg, sm.model.public.pooling, labels, Some(sm))?;
    open_outputs(&mut s, &pooled, logits.as_deref(), req.reveal_embedding)?;
    Ok(s.rec)
}

/// Upper bound on the number of classifier labels a server may announce.
const MAX_LABELS: u64 = 1 << 16;

/// Client side of one inference (after the handshake and the request).
pub fn client_inference(ch: &mut dyn Channel, public: &PublicModel, profile: &Profile, tok: &Tokenized, req: &InferenceRequest, show_progress: bool) -> Result<ClientOutcome> {
    let cfg = &public.config;
    req.validate(cfg)?;
    if tok.attention_mask != req.mask {
        return Err(Error::Input("the request's mask differs from the tokenised input".into()));
    }
    let x: Array2<i64> = blocks::client_embedding(public, tok, &profile.fixed)?;
    let mut rec = Recorder::new();
    let mark = rec.start(ch, None, "setup", Phase::Setup);
    let labels = ch.recv_u64()?;
    if labels > MAX_LABELS {
        return Err(Error::protocol("setup", format!("the server announced {labels} labels")));
    }
    let labels = labels as usize;
    let (st, mut ot) = setup(ch, Role::Client, profile, cfg, req, labels)?;
    rec.finish(ch, mark);
    let mut s = Sess {
        p: Party::new(Role::Client, ch, &mut ot),
        lin: st.lin,
        nl: st.nl,
        specs: st.specs,
        profile: *profile,
        plans: st.plans,
        rec,
        rng: st.rng,
        layer: None,
        open: Vec::new(),
        progress: show_progress.then(|| progress_bar(req.layers)),
    };
    let x0 = blocks::embedding_shares(&s, Some(&x), req.seq_len * cfg.hidden_size)?;
    let (pooled, logits) = forward(&mut s, x0, req, cfg, public.pooling, labels, None)?;
    let (pooled_fixed, logits_fixed) = open_outputs(&mut s, &pooled, logits.as_deref(), req.reveal_embedding)?;
    if let Some(pb) = &s.progress {
        pb.finish_and_clear();
    }
    let fp = profile.fixed.activation();
    let decode = |v: &Vec<i64>| v.iter().map(|&x| fp.decode(x) as f32).collect::<Vec<f32>>();
    Ok(ClientOutcome {
        pooled: pooled_fixed.as_ref().map(decode),
        logits: logits_fixed.as_ref().map(decode),
        pooled_fixed,
        logits_fixed,
        records: s.rec,
    })
}
