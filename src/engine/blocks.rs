//! The blocks of the private forward pass. Both parties call each function with the same
//! public arguments; the server additionally passes its weights (`Some`), the client `None`.
//! Every function mirrors the block of the same name in `model::fixed::FixedModel` operation
//! by operation (same products, same floors), which is what makes the private output equal the
//! fixed-point simulation.

use ndarray::Array2;

use super::state::{Sess, SideKeys};
use super::LinearBackend;
use crate::error::{Error, Result};
use crate::model::{self, BertConfig, EncoderLayer, FixedConfig, LayerNorm, PoolingMode, QLinear, QuantizedLayer, Tokenized};
use crate::proto::linear::attention::{shared_matmul_client, shared_matmul_server, transpose, SharedMatmulPlan};
use crate::proto::toolkit::convert::{field_to_ring_trunc, ring_to_field};
use crate::proto::nonlinear::l2norm::l2_normalize;
use crate::proto::nonlinear::layernorm::{layer_norm, LnParams};
use crate::proto::linear::coeff::{coeff_batch_client, coeff_batch_server, coeff_client, coeff_server, EncodedCoeff};
use crate::proto::linear::{linear_client, linear_server};
use crate::proto::nonlinear::softmax::softmax;
use crate::proto::toolkit::trunc::{trunc, TruncMode};
use crate::share::Ring;

/// The server's data for one encoder layer.
pub struct LayerWeights<'a> {
    pub quantized: &'a QuantizedLayer,
    pub float: &'a EncoderLayer,
    /// MPNet relative attention bias per head (`n × n` at `frac`), added to the server's share.
    pub relative_bias: Option<&'a [Array2<i64>]>,
}

/// The server's data after the encoder.
pub struct HeadWeights<'a> {
    pub classifier: Option<&'a QLinear>,
    /// The BERT pooler's dense layer (tanh(h_0·W + b)).
    pub pooler: Option<&'a QLinear>,
}

fn ring_add(ring: Ring, a: &[u64], b: &[u64]) -> Vec<u64> {
    a.iter().zip(b).map(|(&x, &y)| ring.add(x, y)).collect()
}

/// The client's embedding output quantised at `frac` bits (plaintext, the client's own data).
pub fn client_embedding(public: &model::PublicModel, tok: &Tokenized, cfg: &FixedConfig) -> Result<Array2<i64>> {
    let fp = cfg.activation();
    let x = model::embed(public, tok)?;
    let half = 1i64 << (cfg.ring_bits - 1);
    let q = x.mapv(|v| fp.encode(v as f64));
    if q.iter().any(|v| v.abs() >= half) {
        return Err(Error::Config(format!("embedding output does not fit a {}-bit ring", cfg.ring_bits)));
    }
    Ok(q)
}

/// Shares of the embeddings: the client's share is the value, the server's is zero (a valid
/// additive sharing; the server's share carries no information).
pub fn embedding_shares(s: &Sess, x: Option<&Array2<i64>>, len: usize) -> Result<Vec<u64>> {
    let ring = s.specs.ring;
    match (s.p.is_server(), x) {
        (true, _) => Ok(vec![0; len]),
        (false, Some(x)) if x.len() == len => Ok(x.iter().map(|&v| ring.from_signed(v)).collect()),
        (false, Some(x)) => Err(Error::Shape { tensor: "embeddings".into(), expected: vec![len], got: vec![x.len()] }),
        (false, None) => Err(Error::Config("the client must supply its embeddings".into())),
    }
}

/// `⌊(x·W + b) / 2^weight_frac⌋` on shares (`n × d_in` → `n × d_out`), or one less where `mode`
/// is `Approx`.
pub fn linear(s: &mut Sess, x: &[u64], n: usize, d_in: usize, d_out: usize, w: Option<&QLinear>, mode: TruncMode) -> Result<Vec<u64>> {
    if x.len() != n * d_in {
        return Err(Error::Shape { tensor: "linear input".into(), expected: vec![n, d_in], got: vec![x.len()] });
    }
    match s.profile.linear {
        LinearBackend::Field(_) => linear_field(s, x, n, d_in, d_out, w, mode),
        LinearBackend::Coeff(_) | LinearBackend::CoeffAll => {
            let mut ys = linear_coeff(s, x, n, d_in, d_out, w.map(|w| vec![w]), 1, mode)?;
            ys.pop().ok_or_else(|| Error::Config("linear layer: no output".into()))
        }
    }
}

/// Several layers on the same input (Q, K, V): `ws` holds one weight set per output on the
/// server, `None` on the client. The coefficient backend uploads the input once for all.
pub fn linear_sets(s: &mut Sess, x: &[u64], n: usize, d_in: usize, d_out: usize, ws: Option<Vec<&QLinear>>, sets: usize, mode: TruncMode) -> Result<Vec<Vec<u64>>> {
    if x.len() != n * d_in {
        return Err(Error::Shape { tensor: "linear input".into(), expected: vec![n, d_in], got: vec![x.len()] });
    }
    if ws.as_ref().is_some_and(|ws| ws.len() != sets) {
        return Err(Error::Config(format!("linear layers: {sets} weight sets expected")));
    }
    match s.profile.linear {
        LinearBackend::Field(_) => (0..sets).map(|i| linear_field(s, x, n, d_in, d_out, ws.as_ref().map(|ws| ws[i]), mode)).collect(),
        LinearBackend::Coeff(_) | LinearBackend::CoeffAll => linear_coeff(s, x, n, d_in, d_out, ws, sets, mode),
    }
}

/// Coefficient packing on the ring shares, then one truncation for all sets.
#[allow(clippy::too_many_arguments)]
fn linear_coeff(s: &mut Sess, x: &[u64], n: usize, d_in: usize, d_out: usize, ws: Option<Vec<&QLinear>>, sets: usize, mode: TruncMode) -> Result<Vec<Vec<u64>>> {
    let ring = s.specs.ring;
    let side = s.coeff.ok_or_else(|| Error::Config("linear layer: the session has no coefficient HE context".into()))?;
    let ctx = &side.ctx;
    if ring.bits() >= 63 || ctx.t() != 1u64 << ring.bits() {
        return Err(Error::Config("linear layer: the coefficient context's t is not the ring modulus".into()));
    }
    let plan = s.plans.coeff(n, d_in, d_out)?;
    let ys = match (&side.keys, ws) {
        (SideKeys::Server(keys), Some(ws)) => {
            let cache = s.weights.ok_or_else(|| Error::Config("linear layer: the server session has no weight store".into()))?;
            let encs: Vec<_> = ws.iter().map(|w| cache.encoded_coeff(ctx, &plan, w, s.weights_since)).collect::<Result<_>>()?;
            let refs: Vec<&EncodedCoeff> = encs.iter().map(|e| e.as_ref()).collect();
            coeff_server(&mut *s.p.ch, ctx, keys, &refs, Some(x))?
        }
        (SideKeys::Client(keys), None) => coeff_client(&mut *s.p.ch, ctx, keys, &plan, sets, x, &mut *s.rng)?,
        _ => return Err(Error::Config("linear layer: weights must be given by the server only".into())),
    };
    let all = trunc(&mut s.p, ring, &ys.concat(), s.profile.fixed.weight_frac_bits, mode)?;
    Ok(all.chunks(n * d_out).map(<[u64]>::to_vec).collect())
}

fn linear_field(s: &mut Sess, x: &[u64], n: usize, d_in: usize, d_out: usize, w: Option<&QLinear>, mode: TruncMode) -> Result<Vec<u64>> {
    let ring = s.specs.ring;
    let ctx = &s.lin.ctx;
    let field = ctx.field();
    let plan = s.plans.linear(n, d_in, d_out)?;
    let xf = ring_to_field(&mut s.p, ring, field, x)?;
    let yf = match (&s.lin.keys, w) {
        (SideKeys::Server(keys), Some(w)) => {
            // A zero-budget cache encodes per call, like an uncached layer.
            let cache = s.weights.ok_or_else(|| Error::Config("linear layer: the server session has no weight store".into()))?;
            let enc = cache.encoded(ctx, &plan, w, s.weights_since)?;
            linear_server(&mut *s.p.ch, ctx, keys, &enc, &xf)?
        }
        (SideKeys::Client(keys), None) => linear_client(&mut *s.p.ch, ctx, keys, &plan, &xf, &mut *s.rng)?,
        _ => return Err(Error::Config("linear layer: weights must be given by the server only".into())),
    };
    let bound = s.profile.fixed.ring_bits - 1;
    field_to_ring_trunc(&mut s.p, field, ring, &yf, bound, s.profile.fixed.weight_frac_bits, mode)
}

/// Share × share products per head (field shares in and out), one exchange for all heads.
fn shared_products(s: &mut Sess, plan: &SharedMatmulPlan, a: &[Vec<u64>], b: &[Vec<u64>]) -> Result<Vec<Vec<u64>>> {
    let ctx = &s.lin.ctx;
    match &s.lin.keys {
        SideKeys::Server(keys) => shared_matmul_server(&mut *s.p.ch, ctx, keys, plan, a, b),
        SideKeys::Client(keys) => shared_matmul_client(&mut *s.p.ch, ctx, keys, plan, a, b, &mut *s.rng),
    }
}

/// Columns `[h·d, (h+1)·d)` of a row-major `n × width` matrix.
fn head_columns(x: &[u64], n: usize, width: usize, h: usize, d: usize) -> Vec<u64> {
    (0..n).flat_map(|i| x[i * width + h * d..i * width + (h + 1) * d].iter().copied()).collect()
}

/// `⌊a·b / 2^f⌋` per head on ring shares, via the HE share × share products.
fn head_products(s: &mut Sess, plan: &SharedMatmulPlan, a: Vec<Vec<u64>>, b: Vec<Vec<u64>>) -> Result<Vec<u64>> {
    let ring = s.specs.ring;
    let field = s.lin.ctx.field();
    let (na, nb) = (a[0].len(), b[0].len());
    let both: Vec<u64> = a.concat().into_iter().chain(b.concat()).collect();
    let both_f = ring_to_field(&mut s.p, ring, field, &both)?;
    let (af, bf) = both_f.split_at(a.len() * na);
    let af: Vec<Vec<u64>> = af.chunks(na).map(<[u64]>::to_vec).collect();
    let bf: Vec<Vec<u64>> = bf.chunks(nb).map(<[u64]>::to_vec).collect();
    let prod = shared_products(s, plan, &af, &bf)?;
    let bound = s.profile.fixed.ring_bits - 1;
    field_to_ring_trunc(&mut s.p, field, ring, &prod.concat(), bound, s.specs.frac, s.profile.linear_trunc)
}

/// `a·b` mod 2^ℓ for row-major `a` (n × k) and `b` (k × m): a party's product of its own shares.
fn ring_matmul(ring: Ring, a: &[u64], b: &[u64], n: usize, k: usize, m: usize) -> Vec<u64> {
    let mut out = vec![0u64; n * m];
    for (i, row) in out.chunks_mut(m).enumerate() {
        for (j, &av) in a[i * k..(i + 1) * k].iter().enumerate() {
            for (o, &bv) in row.iter_mut().zip(&b[j * m..(j + 1) * m]) {
                *o = o.wrapping_add(av.wrapping_mul(bv));
            }
        }
        row.iter_mut().for_each(|v| *v = ring.reduce(*v));
    }
    out
}

/// `⌊a_h·b_h / 2^f⌋` per head on ring shares by coefficient packing: each party multiplies its
/// own shares locally; the cross terms a_c·b_s and (b_cᵀ·a_sᵀ)ᵀ = a_s·b_c run under HE with the
/// client's shares encrypted and the server's as plaintexts, all heads in one flight each way.
fn head_products_coeff(s: &mut Sess, (n, k, m): (usize, usize, usize), a: Vec<Vec<u64>>, b: Vec<Vec<u64>>) -> Result<Vec<u64>> {
    let ring = s.specs.ring;
    let side = s.coeff.ok_or_else(|| Error::Config("attention: the session has no coefficient HE context".into()))?;
    let ctx = &side.ctx;
    let direct = s.plans.coeff_shared(n, k, m)?;
    let swapped = s.plans.coeff_shared(m, k, n)?;
    let own: Vec<Vec<u64>> = a.iter().zip(&b).map(|(a, b)| ring_matmul(ring, a, b, n, k, m)).collect();
    let (ab, ba) = match &side.keys {
        SideKeys::Server(keys) => {
            let with_b: Vec<EncodedCoeff> = b.iter().map(|b| EncodedCoeff::from_ring(ctx, direct.clone(), b, 0)).collect::<Result<_>>()?;
            let ab = coeff_batch_server(&mut *s.p.ch, ctx, keys, &with_b)?;
            let with_at: Vec<EncodedCoeff> = a.iter().map(|a| EncodedCoeff::from_ring(ctx, swapped.clone(), &transpose(a, n, k), 0)).collect::<Result<_>>()?;
            (ab, coeff_batch_server(&mut *s.p.ch, ctx, keys, &with_at)?)
        }
        SideKeys::Client(keys) => {
            let ab = coeff_batch_client(&mut *s.p.ch, ctx, keys, &direct, &a)?;
            let bt: Vec<Vec<u64>> = b.iter().map(|b| transpose(b, k, m)).collect();
            (ab, coeff_batch_client(&mut *s.p.ch, ctx, keys, &swapped, &bt)?)
        }
    };
    let mut sum = Vec::with_capacity(a.len() * n * m);
    for ((own, ab), ba) in own.iter().zip(&ab).zip(&ba) {
        for i in 0..n {
            for j in 0..m {
                sum.push(ring.add(ring.add(own[i * m + j], ab[i * m + j]), ba[j * n + i]));
            }
        }
    }
    trunc(&mut s.p, ring, &sum, s.specs.frac, s.profile.linear_trunc)
}

/// Per-head products on the profile's backend.
fn attention_products(s: &mut Sess, field_plan: &SharedMatmulPlan, dims: (usize, usize, usize), a: Vec<Vec<u64>>, b: Vec<Vec<u64>>) -> Result<Vec<u64>> {
    if s.profile.linear.coeff_attention() {
        head_products_coeff(s, dims, a, b)
    } else {
        head_products(s, field_plan, a, b)
    }
}

/// Multi-head self-attention including the output projection (`FixedModel::self_attention`).
pub fn attention(s: &mut Sess, x: &[u64], mask: &[u32], cfg: &BertConfig, w: Option<&LayerWeights>) -> Result<Vec<u64>> {
    let n = mask.len();
    let hidden = cfg.hidden_size;
    let (heads, d) = (cfg.num_attention_heads, cfg.head_dim());
    let ring = s.specs.ring;
    let frac = s.specs.frac;

    s.begin("qkv");
    let qkv_w = w.map(|w| vec![&w.quantized.query, &w.quantized.key, &w.quantized.value]);
    let mut qkv = linear_sets(s, x, n, hidden, hidden, qkv_w, 3, s.profile.linear_trunc)?.into_iter();
    let (Some(q), Some(k), Some(v)) = (qkv.next(), qkv.next(), qkv.next()) else {
        return Err(Error::Config("qkv: three outputs expected".into()));
    };
    s.end();

    s.begin("scores");
    let q_heads: Vec<Vec<u64>> = (0..heads).map(|h| head_columns(&q, n, hidden, h, d)).collect();
    let kt_heads: Vec<Vec<u64>> = (0..heads).map(|h| transpose(&head_columns(&k, n, hidden, h, d), n, d)).collect();
    let plan = s.plans.scores.clone();
    let raw = attention_products(s, &plan, (n, d, n), q_heads, kt_heads)?;
    let c = ring.from_signed(s.specs.score_scale);
    let scaled: Vec<u64> = raw.iter().map(|&r| ring.mul(r, c)).collect();
    let mut scores = trunc(&mut s.p, ring, &scaled, frac, s.profile.linear_trunc)?;
    if let Some(bias) = w.and_then(|w| w.relative_bias) {
        add_relative_bias(ring, &mut scores, bias, n)?;
    }
    s.end();

    s.begin("softmax");
    let he = s.nl.party();
    let probs = softmax(&mut s.p, Some(&he), &s.specs.softmax, &scores, heads * n, n, mask)?;
    s.end();

    s.begin("context");
    let p_heads: Vec<Vec<u64>> = probs.chunks(n * n).map(<[u64]>::to_vec).collect();
    let v_heads: Vec<Vec<u64>> = (0..heads).map(|h| head_columns(&v, n, hidden, h, d)).collect();
    let plan = s.plans.context.clone();
    let ctx_heads = attention_products(s, &plan, (n, n, d), p_heads, v_heads)?;
    let mut context = vec![0u64; n * hidden];
    for (h, block) in ctx_heads.chunks(n * d).enumerate() {
        for i in 0..n {
            context[i * hidden + h * d..i * hidden + (h + 1) * d].copy_from_slice(&block[i * d..(i + 1) * d]);
        }
    }
    s.end();

    s.begin("attn-out");
    let out = linear(s, &context, n, hidden, hidden, w.map(|w| &w.quantized.attn_out), s.profile.linear_trunc)?;
    s.end();
    let _ = frac;
    Ok(out)
}

fn add_relative_bias(ring: Ring, scores: &mut [u64], bias: &[Array2<i64>], n: usize) -> Result<()> {
    for (h, b) in bias.iter().enumerate() {
        if b.dim() != (n, n) {
            return Err(Error::Shape { tensor: "relative attention bias".into(), expected: vec![n, n], got: b.shape().to_vec() });
        }
        let block = scores
            .get_mut(h * n * n..(h + 1) * n * n)
            .ok_or_else(|| Error::Config("more bias heads than attention heads".into()))?;
        for (dst, &v) in block.iter_mut().zip(b.iter()) {
            *dst = ring.add(*dst, ring.from_signed(v));
        }
    }
    Ok(())
}

/// Residual addition (local) and LayerNorm (`FixedModel::add_norm`).
pub fn add_norm(s: &mut Sess, op: &str, x: &[u64], y: &[u64], rows: usize, d: usize, ln: Option<&LayerNorm>) -> Result<Vec<u64>> {
    s.begin(op);
    let sum = ring_add(s.specs.ring, x, y);
    let params = match ln {
        Some(ln) => Some(ln_params(ln, d)?),
        None => None,
    };
    let he = s.nl.party();
    let out = layer_norm(&mut s.p, Some(&he), &s.specs.layernorm, &sum, rows, d, params.as_ref())?;
    s.end();
    Ok(out)
}

fn ln_params(ln: &LayerNorm, d: usize) -> Result<LnParams<'_>> {
    let gamma = ln.gamma.as_slice().ok_or_else(|| Error::Model("LayerNorm γ not contiguous".into()))?;
    let beta = ln.beta.as_slice().ok_or_else(|| Error::Model("LayerNorm β not contiguous".into()))?;
    if gamma.len() != d || beta.len() != d {
        return Err(Error::Shape { tensor: "LayerNorm".into(), expected: vec![d], got: vec![gamma.len(), beta.len()] });
    }
    Ok(LnParams { gamma, beta })
}

/// `GeLU(x·W1 + b1)·W2 + b2` (`FixedModel::ffn`).
pub fn ffn(s: &mut Sess, x: &[u64], n: usize, cfg: &BertConfig, w: Option<&LayerWeights>) -> Result<Vec<u64>> {
    let (hidden, inter) = (cfg.hidden_size, cfg.intermediate_size);
    s.begin("ffn-in");
    let up = linear(s, x, n, hidden, inter, w.map(|w| &w.quantized.ffn_in), s.profile.linear_trunc)?;
    s.end();
    s.begin("gelu");
    let he = s.nl.party();
    let act = s.specs.gelu.eval(&mut s.p, &he, &up)?;
    s.end();
    s.begin("ffn-out");
    let down = linear(s, &act, n, inter, hidden, w.map(|w| &w.quantized.ffn_out), s.profile.linear_trunc)?;
    s.end();
    Ok(down)
}

/// One post-LN encoder layer (`FixedModel::encoder_layer`).
pub fn encoder_layer(s: &mut Sess, x: &[u64], mask: &[u32], cfg: &BertConfig, w: Option<&LayerWeights>) -> Result<Vec<u64>> {
    let (n, hidden) = (mask.len(), cfg.hidden_size);
    let attn = attention(s, x, mask, cfg, w)?;
    let h1 = add_norm(s, "layernorm-1", x, &attn, n, hidden, w.map(|w| &w.float.attn_norm))?;
    let f = ffn(s, &h1, n, cfg, w)?;
    add_norm(s, "layernorm-2", &h1, &f, n, hidden, w.map(|w| &w.float.out_norm))
}

/// The sentence vector (`FixedModel::pool`).
pub fn pool(s: &mut Sess, h: &[u64], mask: &[u32], d: usize, pooling: PoolingMode, w: Option<&HeadWeights>) -> Result<Vec<u64>> {
    let ring = s.specs.ring;
    let frac = s.specs.frac;
    s.begin("pool");
    let (v, normalize) = match pooling {
        PoolingMode::Mean { normalize } => (mean_pool(s, h, mask, d)?, normalize),
        PoolingMode::Cls { normalize } => (h[..d].to_vec(), normalize),
        PoolingMode::Pooler => {
            let dense = linear(s, &h[..d], 1, d, d, w.and_then(|w| w.pooler), TruncMode::Faithful)?;
            let he = s.nl.party();
            let out = s.specs.tanh.eval(&mut s.p, &he, &dense)?;
            s.end();
            return Ok(out);
        }
    };
    let out = if normalize { l2_normalize(&mut s.p, ring, frac, &v, 1, d)? } else { v };
    s.end();
    Ok(out)
}

fn mean_pool(s: &mut Sess, h: &[u64], mask: &[u32], d: usize) -> Result<Vec<u64>> {
    let ring = s.specs.ring;
    let fp = s.profile.fixed.activation();
    let count = mask.iter().filter(|&&m| m != 0).count();
    if count == 0 {
        return Err(Error::Input("mean pooling over an input with no attended tokens".into()));
    }
    let inv = ring.from_signed(fp.encode(1.0 / count as f64));
    let mut sum = vec![0u64; d];
    for (row, &m) in h.chunks(d).zip(mask) {
        if m != 0 {
            sum = ring_add(ring, &sum, row);
        }
    }
    let scaled: Vec<u64> = sum.iter().map(|&v| ring.mul(v, inv)).collect();
    trunc(&mut s.p, ring, &scaled, fp.frac_bits, TruncMode::Faithful)
}

/// The classifier on the pooled vector.
pub fn head(s: &mut Sess, pooled: &[u64], d: usize, labels: usize, w: Option<&HeadWeights>) -> Result<Vec<u64>> {
    s.begin("classifier");
    let out = linear(s, pooled, 1, d, labels, w.and_then(|w| w.classifier), TruncMode::Faithful)?;
    s.end();
    Ok(out)
}

/// Open `v` to the client only: the server sends its shares, the client adds them.
pub fn reveal_to_client(s: &mut Sess, v: &[u64]) -> Result<Option<Vec<i64>>> {
    let ring = s.specs.ring;
    if s.p.is_server() {
        s.p.ch.send_u64s(v)?;
        s.p.ch.flush()?;
        Ok(None)
    } else {
        let other = s.p.ch.recv_u64s(v.len())?;
        Ok(Some(v.iter().zip(&other).map(|(&a, &b)| ring.to_signed(ring.add(a, ring.reduce(b)))).collect()))
    }
}
