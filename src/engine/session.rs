//! One private inference session: key and OT setup, the per-layer loop, the opening of the
//! result, and the records.

use std::collections::BTreeMap;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use super::blocks::{self, HeadWeights, LayerWeights};
use super::output::open_outputs;
use super::policy::{Opened, Reveal, ServePolicy, Verdict};
use super::report::{Phase, Recorder};
use super::state::{HeSide, Plans, Sess, Specs};
use super::weights::WeightCache;
use super::Profile;
use crate::error::{Error, Result};
use crate::he::HeContext;
use crate::model::{BertConfig, FixedModel, Model, PoolingMode, PublicModel, QLinear, QuantizedWeights, Tokenized};
use crate::net::Channel;
use crate::ot::Ot;
use crate::proto::ctx::Party;
use crate::share::Role;

/// What the client asks for; everything in it is public to both parties.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InferenceRequest {
    /// Padded sequence length n.
    pub seq_len: usize,
    /// The padding mask (1 = real token); its length is `seq_len`.
    pub mask: Vec<u32>,
    /// Number of encoder layers to run (the first `layers`).
    pub layers: usize,
    /// The most the client wants opened; the server opens the lesser of this and its policy.
    pub reveal: Reveal,
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
    /// The predicted label, when the server opens only that.
    pub label: Option<usize>,
    pub records: Recorder,
}

/// The server's model with its weights quantised once for any number of sessions, the
/// encoded weight plaintexts it keeps between inferences (shared by concurrent sessions), and
/// the operator's output policy.
pub struct ServerModel<'m> {
    pub model: &'m Model,
    pub fixed: FixedModel<'m>,
    pub weights: WeightCache,
    pub policy: ServePolicy,
}

impl<'m> ServerModel<'m> {
    /// No weight cache: every linear layer encodes its weights per call.
    pub fn new(model: &'m Model, profile: &Profile) -> Result<ServerModel<'m>> {
        Self::with_weight_cache(model, profile, 0)
    }

    /// Keep up to `budget` bytes of encoded weights between inferences.
    pub fn with_weight_cache(model: &'m Model, profile: &Profile, budget: usize) -> Result<ServerModel<'m>> {
        let policy = ServePolicy::default();
        Ok(ServerModel { model, fixed: FixedModel::new(model, profile.fixed)?, weights: WeightCache::new(budget), policy })
    }

    /// As [`ServerModel::with_weight_cache`] over weights quantised beforehand (`serve` releases
    /// each layer's f32 matrices as it quantises them, see `QuantizedWeights::quantize_releasing`).
    pub fn with_quantized(model: &'m Model, profile: &Profile, budget: usize, q: QuantizedWeights) -> Result<ServerModel<'m>> {
        let policy = ServePolicy::default();
        Ok(ServerModel { model, fixed: FixedModel::with_quantized(model, profile.fixed, q)?, weights: WeightCache::new(budget), policy })
    }

    /// Serve under `policy` instead of the default (logits only, every layer).
    pub fn with_policy(mut self, policy: ServePolicy) -> ServerModel<'m> {
        self.policy = policy;
        self
    }

    /// Every linear layer of the model with its shape, in the order the forward pass uses them.
    fn linear_layers(&self, labels: usize) -> Vec<(&QLinear, usize, usize, usize)> {
        let cfg = &self.model.public.config;
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let mut out = Vec::new();
        for q in &self.fixed.layers {
            for w in [&q.query, &q.key, &q.value, &q.attn_out] {
                out.push((w, 0, h, h));
            }
            out.push((&q.ffn_in, 0, h, i));
            out.push((&q.ffn_out, 0, i, h));
        }
        if let Some(p) = self.fixed.pooler.as_ref().filter(|_| self.model.public.pooling == PoolingMode::Pooler) {
            out.push((p, 1, h, h));
        }
        if let Some(c) = self.fixed.classifier.as_ref().filter(|_| labels > 0) {
            out.push((c, 1, h, labels));
        }
        out
    }

    /// Fill the weight cache for the session's padded lengths, in the order given, until its
    /// budget is spent (returns the bytes held).
    fn warm(&self, es: &EngineSession, seq_lens: &[usize]) -> Result<usize> {
        if self.weights.budget() == 0 {
            return Ok(0);
        }
        let since = self.weights.clock();
        for &n in seq_lens {
            let plans = es.plans.get(&n).ok_or_else(|| Error::Config(format!("no plans for length {n}")))?;
            for (w, rows, d_in, d_out) in self.linear_layers(es.labels) {
                // rows 0: the token rows (n); 1: the pooled vector.
                let m = if rows == 0 { n } else { rows };
                if let Some(side) = es.coeff.as_ref() {
                    let plan = plans.coeff(m, d_in, d_out)?;
                    if self.weights.used() + plan.weight_bytes(&side.ctx) > self.weights.budget() {
                        return Ok(self.weights.used());
                    }
                    self.weights.encoded_coeff(&side.ctx, &plan, w, since)?;
                    continue;
                }
                let plan = plans.linear(m, d_in, d_out)?;
                if !self.weights.has_room_for(&es.lin.ctx, &plan) {
                    return Ok(self.weights.used());
                }
                self.weights.encoded(&es.lin.ctx, &plan, w, since)?;
            }
        }
        Ok(self.weights.used())
    }
}

/// What the client asks for when it opens a session (public).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionRequest {
    /// Every padded sequence length the session will use (keys are made for all of them).
    pub seq_lens: Vec<usize>,
}

/// At most this many distinct sequence lengths per session (bounded key material).
pub const MAX_SESSION_LENGTHS: usize = 8;
/// Largest frame a party accepts for a request.
const MAX_REQUEST_FRAME: usize = 64 * 1024;

impl SessionRequest {
    fn validate(&self, cfg: &BertConfig) -> Result<()> {
        if self.seq_lens.is_empty() || self.seq_lens.len() > MAX_SESSION_LENGTHS {
            return Err(Error::Input(format!("a session needs 1..={MAX_SESSION_LENGTHS} sequence lengths")));
        }
        if let Some(&n) = self.seq_lens.iter().find(|&&n| n == 0 || n > cfg.max_position_embeddings) {
            return Err(Error::Input(format!("sequence length {n} outside 1..={}", cfg.max_position_embeddings)));
        }
        Ok(())
    }
}

/// Keys, OTs and layouts of one session, reused by every inference in it.
pub struct EngineSession {
    role: Role,
    profile: Profile,
    lin: HeSide,
    coeff: Option<HeSide>,
    nl: HeSide,
    specs: Specs,
    plans: BTreeMap<usize, Plans>,
    ot: Box<dyn Ot>,
    rng: ChaCha20Rng,
    labels: usize,
    /// Most ciphertexts one inference has returned so far, per key (linear, non-linear): the
    /// server re-keys before an inference when a key's remaining budget is below it.
    most_returns: [u64; 3],
    /// The setup's cost (keys, base OTs, and any re-keying).
    pub setup: Recorder,
}

impl EngineSession {
    fn open(ch: &mut dyn Channel, role: Role, profile: &Profile, public: &PublicModel, req: &SessionRequest, labels: usize) -> Result<EngineSession> {
        let cfg = &public.config;
        req.validate(cfg)?;
        let mut setup = Recorder::new();
        let mark = setup.start(ch, None, "setup", Phase::Setup);
        let mut rng = ChaCha20Rng::from_os_rng();
        let lin_ctx = HeContext::new(&profile.linear_preset())?;
        let nl_ctx = HeContext::new(&profile.nonlinear_preset())?;
        let coeff_ctx = profile.coefficient_preset().map(|p| HeContext::coefficient(&p)).transpose()?;
        let specs = Specs::new(profile, cfg, nl_ctx.field())?;
        let mut plans = BTreeMap::new();
        for &n in &req.seq_lens {
            plans.insert(n, Plans::new(&lin_ctx, coeff_ctx.as_ref(), profile, cfg, n, public.pooling, labels)?);
        }
        let mut rotations: Vec<usize> = plans.values().flat_map(Plans::rotations).collect();
        rotations.sort_unstable();
        rotations.dedup();
        let lin = HeSide::setup(ch, role, lin_ctx, &rotations, &mut rng)?;
        let nl = HeSide::setup(ch, role, nl_ctx, &[], &mut rng)?;
        let coeff = coeff_ctx.map(|c| HeSide::setup(ch, role, c, &[], &mut rng)).transpose()?;
        let ot = profile.ot.setup(ch, role)?;
        setup.finish(ch, mark);
        Ok(EngineSession { role, profile: *profile, lin, coeff, nl, specs, plans, ot, rng, labels, most_returns: [0; 3], setup })
    }

    /// Fresh keys and OTs for the same lengths, keeping the records and the per-inference
    /// return counts (both parties call it when the server's verdict says so).
    fn rekey(&mut self, ch: &mut dyn Channel, public: &PublicModel) -> Result<()> {
        let req = SessionRequest { seq_lens: self.seq_lens() };
        let mut fresh = EngineSession::open(ch, self.role, &self.profile, public, &req, self.labels)?;
        let mut setup = std::mem::take(&mut self.setup);
        setup.records.append(&mut fresh.setup.records);
        fresh.setup = setup;
        fresh.most_returns = self.most_returns;
        *self = fresh;
        Ok(())
    }

    /// Ciphertexts returned so far under each of the client's keys (server side).
    fn returns_used(&self) -> [u64; 3] {
        self.key_sides().map(|side| side.map_or(0, |s| s.ctx.returns().used()))
    }

    /// The HE contexts under the client's keys: linear (SIMD), non-linear, coefficient (if any).
    fn key_sides(&self) -> [Option<&HeSide>; 3] {
        [Some(&self.lin), Some(&self.nl), self.coeff.as_ref()]
    }

    /// Record one inference's returns (counted from `before`).
    fn note_returns(&mut self, before: [u64; 3]) {
        let now = self.returns_used();
        for ((most, now), was) in self.most_returns.iter_mut().zip(now).zip(before) {
            *most = (*most).max(now - was);
        }
    }

    /// Whether the next inference might exceed a key's return budget.
    fn needs_rekey(&self) -> bool {
        self.key_sides().iter().zip(self.most_returns).any(|(side, most)| side.is_some_and(|s| s.ctx.returns().remaining() < most))
    }

    /// Lower every key's return budget (never above the flooding's).
    fn lower_return_budget(&self, limit: u64) {
        for side in self.key_sides().into_iter().flatten() {
            side.ctx.returns().lower_limit(limit);
        }
    }

    /// Classifier labels of the server's model (0: none).
    pub fn labels(&self) -> usize {
        self.labels
    }

    /// The padded lengths this session supports.
    pub fn seq_lens(&self) -> Vec<usize> {
        self.plans.keys().copied().collect()
    }

    fn sess<'a>(&'a mut self, ch: &'a mut dyn Channel, progress: Option<ProgressBar>, n: usize) -> Result<Sess<'a>> {
        let plans = self.plans.get(&n).ok_or_else(|| Error::Input(format!("sequence length {n} was not set up for this session (have {:?})", self.plans.keys().collect::<Vec<_>>())))?;
        Ok(Sess {
            p: Party::new(self.role, ch, &mut *self.ot),
            lin: &self.lin,
            coeff: self.coeff.as_ref(),
            nl: &self.nl,
            specs: &self.specs,
            profile: self.profile,
            plans,
            rec: Recorder::new(),
            rng: &mut self.rng,
            weights: None,
            weights_since: u64::MAX,
            layer: None,
            open: Vec::new(),
            progress,
        })
    }
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
    let hw = server.map(|sm| HeadWeights { classifier: sm.fixed.classifier.as_ref(), pooler: sm.fixed.pooler.as_ref() });
    let pooled = blocks::pool(s, &h, &req.mask, cfg.hidden_size, pooling, hw.as_ref())?;
    let logits = if labels > 0 {
        Some(blocks::head(s, &pooled, cfg.hidden_size, labels, hw.as_ref())?)
    } else {
        None
    };
    Ok((pooled, logits))
}

/// What the server measured over a whole session.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ServerSessionReport {
    pub setup: Recorder,
    pub inferences: Vec<Recorder>,
    /// The server process's peak resident memory at the end of the session (also sent to the client).
    pub peak_rss_bytes: Option<u64>,
    /// Times the client was asked to set up fresh keys (per-key return budget).
    #[serde(default)]
    pub rekeys: usize,
    /// Most ciphertexts one inference returned under each key (linear, non-linear, coefficient).
    #[serde(default)]
    pub most_returns: [u64; 3],
}

/// The server's reading of a session request frame from the peer: parsed and validated.
pub fn decode_session_request(frame: &[u8], cfg: &BertConfig) -> Result<SessionRequest> {
    let req: SessionRequest =
        serde_json::from_slice(frame).map_err(|e| Error::protocol("session request", format!("unreadable: {e}")))?;
    req.validate(cfg)?;
    Ok(req)
}

/// The server's reading of an inference request frame: `None` closes the session.
pub fn decode_inference_request(frame: &[u8], cfg: &BertConfig) -> Result<Option<InferenceRequest>> {
    let next: Option<InferenceRequest> =
        serde_json::from_slice(frame).map_err(|e| Error::protocol("inference request", format!("unreadable: {e}")))?;
    if let Some(req) = &next {
        req.validate(cfg)?;
    }
    Ok(next)
}

/// Server side of a session: the session request, the setup, then inferences until the client
/// closes the session.
pub fn serve_session(ch: &mut dyn Channel, sm: &ServerModel, profile: &Profile) -> Result<ServerSessionReport> {
    let mut report = ServerSessionReport::default();
    serve_session_into(ch, sm, profile, &mut report)?;
    Ok(report)
}

/// [`serve_session`], filling `report` as it goes (so a failed session still tells how far it got).
pub fn serve_session_into(ch: &mut dyn Channel, sm: &ServerModel, profile: &Profile, report: &mut ServerSessionReport) -> Result<()> {
    let cfg = &sm.model.public.config;
    ch.set_phase("session request");
    let req = decode_session_request(&ch.recv_frame_limited(MAX_REQUEST_FRAME)?, cfg)?;
    let labels = sm.fixed.classifier.as_ref().map_or(0, |c| c.b.len());
    ch.send_u64(labels as u64)?;
    ch.flush()?;
    let mut es = EngineSession::open(ch, Role::Server, profile, &sm.model.public, &req, labels)?;
    es.lower_return_budget(sm.policy.key_returns);
    // Weight encoding before the first inference (still setup); then tell the client.
    let mark = es.setup.start(ch, None, "weight cache", Phase::Setup);
    sm.warm(&es, &req.seq_lens)?;
    ch.send_u64(SESSION_READY)?;
    ch.flush()?;
    es.setup.finish(ch, mark);
    report.setup = es.setup.clone();
    let (started, at_start) = (Instant::now(), ch.stats());
    loop {
        ch.set_phase("inference request");
        let Some(req) = decode_inference_request(&ch.recv_frame_limited(MAX_REQUEST_FRAME)?, cfg)? else { break };
        let admitted = sm.policy.admit(req.layers, cfg.num_hidden_layers, report.inferences.len() as u64, ch.stats().since(&at_start), started.elapsed());
        if let Err(reason) = admitted {
            send_verdict(ch, &Verdict::Refuse(reason.clone()))?;
            return Err(Error::Refused(reason));
        }
        if es.needs_rekey() {
            send_verdict(ch, &Verdict::Rekey)?;
            es.rekey(ch, &sm.model.public)?;
            es.lower_return_budget(sm.policy.key_returns);
            report.setup = es.setup.clone();
            report.rekeys += 1;
        }
        let opened = Opened::decide(sm.policy.reveal, req.reveal, labels);
        send_verdict(ch, &Verdict::Accept(opened))?;
        let before = es.returns_used();
        let mut s = es.sess(ch, None, req.seq_len)?;
        s.weights = Some(&sm.weights);
        s.weights_since = sm.weights.clock();
        let x0 = blocks::embedding_shares(&s, None, req.seq_len * cfg.hidden_size)?;
        let (pooled, logits) = forward(&mut s, x0, &req, cfg, sm.model.public.pooling, labels, Some(sm))?;
        open_outputs(&mut s, &pooled, logits.as_deref(), opened)?;
        report.inferences.push(s.rec);
        es.note_returns(before);
        report.most_returns = es.most_returns;
        super::report::release_free_heap();
    }
    // The server's own peak memory closes the session (0: unknown), so the client's record has both parties'.
    report.peak_rss_bytes = super::report::peak_rss_bytes();
    ch.set_phase("close session");
    ch.send_u64(report.peak_rss_bytes.unwrap_or(0))?;
    ch.flush()?;
    Ok(())
}

fn send_verdict(ch: &mut dyn Channel, v: &Verdict) -> Result<()> {
    ch.set_phase("verdict");
    ch.send_frame(&serde_json::to_vec(v).map_err(|e| Error::protocol("verdict", e.to_string()))?)?;
    ch.flush()
}

/// The server's verdict on an inference request: go ahead with these outputs (after re-keying
/// as often as it asks), or its refusal as an error.
fn await_verdict(ch: &mut dyn Channel, es: &mut EngineSession, public: &PublicModel) -> Result<Opened> {
    loop {
        ch.set_phase("verdict");
        let v: Verdict = serde_json::from_slice(&ch.recv_frame_limited(MAX_REQUEST_FRAME)?)
            .map_err(|e| Error::protocol("verdict", format!("unreadable: {e}")))?;
        match v {
            Verdict::Accept(opened) => return Ok(opened),
            Verdict::Rekey => es.rekey(ch, public)?,
            Verdict::Refuse(reason) => return Err(Error::Refused(reason)),
        }
    }
}

/// Upper bound on the number of classifier labels a server may announce.
const MAX_LABELS: u64 = 1 << 16;

/// Client side: open a session for the given padded lengths (the server fills its weight
/// cache in this order, so put the most used length first).
pub fn client_open(ch: &mut dyn Channel, public: &PublicModel, profile: &Profile, seq_lens: &[usize]) -> Result<EngineSession> {
    let req = SessionRequest { seq_lens: seq_lens.to_vec() };
    req.validate(&public.config)?;
    ch.set_phase("session request");
    ch.send_frame(&serde_json::to_vec(&req).map_err(|e| Error::protocol("session request", e.to_string()))?)?;
    ch.flush()?;
    let labels = ch.recv_u64()?;
    if labels > MAX_LABELS {
        return Err(Error::protocol("setup", format!("the server announced {labels} labels")));
    }
    let mut es = EngineSession::open(ch, Role::Client, profile, public, &req, labels as usize)?;
    let mark = es.setup.start(ch, None, "weight cache", Phase::Setup);
    ch.set_phase("session ready");
    let ready = ch.recv_u64()?;
    if ready != SESSION_READY {
        return Err(Error::protocol("setup", format!("expected the server's ready signal, got {ready}")));
    }
    es.setup.finish(ch, mark);
    Ok(es)
}

/// What the server sends when its session setup (including the weight cache) is done.
const SESSION_READY: u64 = 0x5245_4144_59;

/// Client side: one private inference in an open session.
pub fn client_infer(ch: &mut dyn Channel, es: &mut EngineSession, public: &PublicModel, tok: &Tokenized, layers: usize, reveal: Reveal, show_progress: bool) -> Result<ClientOutcome> {
    let cfg = &public.config;
    let req = InferenceRequest { seq_len: tok.len(), mask: tok.attention_mask.clone(), layers, reveal };
    req.validate(cfg)?;
    let profile = es.profile;
    let x: Array2<i64> = blocks::client_embedding(public, tok, &profile.fixed)?;
    if !es.plans.contains_key(&req.seq_len) {
        return Err(Error::Input(format!("sequence length {} was not set up for this session", req.seq_len)));
    }
    ch.set_phase("inference request");
    ch.send_frame(&serde_json::to_vec(&Some(&req)).map_err(|e| Error::protocol("inference request", e.to_string()))?)?;
    let opened = await_verdict(ch, es, public)?;
    let labels = es.labels;
    let mut s = es.sess(ch, show_progress.then(|| progress_bar(layers)), req.seq_len)?;
    let x0 = blocks::embedding_shares(&s, Some(&x), req.seq_len * cfg.hidden_size)?;
    let (pooled, logits) = forward(&mut s, x0, &req, cfg, public.pooling, labels, None)?;
    let out = open_outputs(&mut s, &pooled, logits.as_deref(), opened)?;
    let (pooled_fixed, logits_fixed) = (out.pooled, out.logits);
    if let Some(pb) = &s.progress {
        pb.finish_and_clear();
    }
    let fp = profile.fixed.activation();
    let decode = |v: &Vec<i64>| v.iter().map(|&x| fp.decode(x) as f32).collect::<Vec<f32>>();
    super::report::release_free_heap();
    Ok(ClientOutcome {
        pooled: pooled_fixed.as_ref().map(decode),
        logits: logits_fixed.as_ref().map(decode),
        pooled_fixed,
        logits_fixed,
        label: out.label,
        records: s.rec,
    })
}

/// Client side: end the session (the server's loop returns); returns the server process's peak
/// resident memory in bytes as it reports it (`None`: the server could not measure it).
pub fn client_close(ch: &mut dyn Channel) -> Result<Option<u64>> {
    ch.set_phase("close session");
    ch.send_frame(b"null")?;
    ch.flush()?;
    let peak = ch.recv_u64()?;
    Ok((peak > 0).then_some(peak))
}
