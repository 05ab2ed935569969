//! Element-wise products of field-shared vectors with ciphertext × plaintext operations only.
//!
//! **Paper reference.** FASTLMPI (arXiv 2412.16537), the "fine-grained" HE part of LayerNorm and
//! SoftMax (§2.2–2.3 of the prototype notes): products of secret-shared values are computed by
//! the server under the client's key. The prototype multiplies two ciphertexts (ct × ct,
//! relinearisation keys); here the client uploads its own product instead, so the server only
//! needs ct × pt, no evaluation keys, and the result has fresh-level noise.
//!
//! **Functionality.** Inputs `a = a_c + a_s`, `b = b_c + b_s` over Z_t (`HeContext::field`);
//! output fresh additive shares over Z_t of `a ⊙ b` ([`mul`]), `a ⊙ a` ([`square`]) or
//! `g ⊙ a` for a plaintext vector `g` of the server's ([`mul_plain`]).
//! [`mul_rows`] multiplies every element of row `r` of `b` (rows × cols, row-major) by the
//! per-row value `a[r]` (e.g. a row reciprocal). A [`Factor`] is a multiplier whose client
//! share is uploaded once and then serves several products ([`mul_by`]: a Horner scheme's
//! `u`). Exact mod t.
//!
//! **Message flow** (one upload flight, one return flight; blocks of N slots):
//! ```text
//!   client                                         server
//!   Enc(a_c), Enc(b_c)               ───────────▶  (seeded, SIMD blocks)
//!                                                   C = b_s⊙Enc(a_c) + a_s⊙Enc(b_c) + a_s⊙b_s
//!                                                   (C', −R) = private_return(C)
//!   y_c = Dec(C') + a_c⊙b_c          ◀───────────  C'           y_s = −R
//! ```
//! The client's own product `a_c⊙b_c` never leaves it. With a [`Factor`] `a`, `Enc(a_c)`
//! travels with the first product's upload only; later products upload `Enc(b_c)` alone.
//! Square: the client sends Enc(a_c); the server computes `(2a_s)⊙Enc(a_c) + a_s²` and the
//! client adds `a_c²`. Plaintext product: the client sends Enc(a_c), the server returns
//! `g⊙Enc(a_c) + g⊙a_s`. Row broadcast: both parties replicate their per-row share over the
//! row's columns (local), then [`mul`].
//!
//! **Domain / error.** Any field elements; exact mod t.
//!
//! **Noise and flooding.** Every plaintext multiplier is a centred SIMD plaintext (coefficients
//! ≤ t/2 whatever the slots), so with K ct×pt terms (K = 2 for a product, 1 for a square or a
//! plaintext product) the
//! data-dependent noise is at most `K·N·(t/2)·e_fresh` ([`noise_bound`]); `private_return`
//! floods with ≥ 2^40 times that and switches down to the lowest level that still decrypts.
//!
//! **Bytes per element** (N slots, `seeded` = 32 + ⌈log Q⌉·N/8, `full(ℓ)` = 2·⌈log q_ℓ⌉·N/8
//! at the return level): product `(2·seeded + full)/N` (`(seeded + full)/N` by a factor
//! already uploaded), square and plaintext product `(seeded + full)/N`, each block rounded up to a whole ciphertext
//! ([`mul_bytes`], [`square_bytes`]). With `HePreset::simd(8192, 52)` (Q = 218 bits) that is
//! ≈ 82 B per product element (≈ 55 B by an uploaded factor; 109 B when the client also
//! uploaded its own product, as before).
//! Rounds: 2 flights (client → server, server → client).
//!
//! **Security (semi-honest).** The server sees only fresh RLWE ciphertexts under the client's
//! key (IND-CPA); a factor's ciphertexts are used in several products, each of whose results is
//! returned only through `private_return`. Every ciphertext it returns is masked with a uniform
//! R ∈ Z_t^N, re-randomised with a fresh Enc_pk(0), flooded with ≥ 2^40 × the worst-case noise
//! and switched down, so the client's view (x + R) is uniform and statistically independent
//! (≤ N·2^−40 per ciphertext) of the server's shares. The server never decrypts; its output
//! share is −R. The client's local term `a_c⊙b_c` involves its own data only.

use fhe::bfv::Ciphertext;
use fhe_math::rq::{dot_product, Poly};
use rayon::prelude::*;

use crate::proto::toolkit::convert::{field_to_ring_trunc, ring_to_field};
use crate::proto::ctx::{same_len, Party};
use crate::proto::toolkit::trunc::TruncMode;
use crate::error::{Error, Result};
use crate::he::privacy::{ct_pt_sum_bound, private_return, return_level, simd_plain_bound};
use crate::he::{wire, ClientKeys, HeContext, ServerKeys};
use crate::share::{Field, Ring};

/// This party's HE key material.
#[derive(Clone, Copy)]
pub enum HeKeys<'a> {
    Server(&'a ServerKeys),
    Client(&'a ClientKeys),
}

/// The HE context and this party's keys: what every HE-backed protocol needs besides `Party`.
#[derive(Clone, Copy)]
pub struct HeParty<'a> {
    pub ctx: &'a HeContext,
    pub keys: HeKeys<'a>,
}

impl<'a> HeParty<'a> {
    pub fn server(ctx: &'a HeContext, keys: &'a ServerKeys) -> HeParty<'a> {
        HeParty { ctx, keys: HeKeys::Server(keys) }
    }
    pub fn client(ctx: &'a HeContext, keys: &'a ClientKeys) -> HeParty<'a> {
        HeParty { ctx, keys: HeKeys::Client(keys) }
    }
    fn server_keys(&self) -> Result<&'a ServerKeys> {
        match self.keys {
            HeKeys::Server(k) => Ok(k),
            HeKeys::Client(_) => Err(Error::Config("server-side HE step called with client keys".into())),
        }
    }
    fn client_keys(&self) -> Result<&'a ClientKeys> {
        match self.keys {
            HeKeys::Client(k) => Ok(k),
            HeKeys::Server(_) => Err(Error::Config("client-side HE step called with server keys".into())),
        }
    }
    /// Errors unless the keys match the party's role.
    pub(crate) fn check_role(&self, p: &Party) -> Result<()> {
        if p.is_server() {
            self.server_keys().map(|_| ())
        } else {
            self.client_keys().map(|_| ())
        }
    }
}

/// One output ciphertext of a block: `Σ mults[j].1 ⊙ Enc(upload mults[j].0) + constant`
/// (slot vectors mod t, at most N long).
pub(crate) struct LinComb {
    pub mults: Vec<(usize, Vec<u64>)>,
    pub constant: Vec<u64>,
}

/// Number of N-slot blocks for `len` elements.
pub fn block_count(ctx: &HeContext, len: usize) -> usize {
    len.div_ceil(ctx.slots())
}

/// Worst-case data-dependent noise of a sum of `terms` ct×pt products of fresh ciphertexts
/// with arbitrary SIMD plaintexts.
pub fn noise_bound(ctx: &HeContext, terms: usize) -> f64 {
    ct_pt_sum_bound(ctx, terms, simd_plain_bound(ctx), ctx.fresh_noise())
}

/// Bytes (both directions) of a batch of `len` elements with `uploads` client ciphertexts and
/// `outputs` returned ciphertexts per block, returned for a `terms`-term noise bound.
pub fn he_bytes(ctx: &HeContext, len: usize, uploads: usize, outputs: usize, terms: usize) -> Result<u64> {
    let blocks = block_count(ctx, len) as u64;
    let level = return_level(ctx, 0, noise_bound(ctx, terms))?;
    Ok(blocks * (uploads as u64 * wire::seeded_len(ctx)? as u64 + outputs as u64 * wire::full_len(ctx, level)? as u64))
}

/// Documented bytes of [`mul`] / [`mul_rows`] on `len` output elements (of [`mul_by`] by a
/// factor already uploaded when `factor_uploaded`).
pub fn mul_bytes(ctx: &HeContext, len: usize, factor_uploaded: bool) -> Result<u64> {
    he_bytes(ctx, len, if factor_uploaded { 1 } else { 2 }, 1, 2)
}

/// Documented bytes of [`mul_plain`] on `len` elements (the same as [`square`]).
pub fn mul_plain_bytes(ctx: &HeContext, len: usize) -> Result<u64> {
    he_bytes(ctx, len, 1, 1, 1)
}

/// Documented bytes of [`square`] on `len` elements.
pub fn square_bytes(ctx: &HeContext, len: usize) -> Result<u64> {
    he_bytes(ctx, len, 1, 1, 1)
}

/// Client: encrypt `vectors` (all of length `len`) block by block and send them in one
/// flight; block `b` carries the ciphertexts of every vector in order.
pub(crate) fn client_upload(p: &mut Party, he: &HeParty, vectors: &[Vec<u64>], len: usize) -> Result<()> {
    let keys = he.client_keys()?;
    let ctx = he.ctx;
    let n = ctx.slots();
    let jobs: Vec<(usize, usize)> =
        (0..block_count(ctx, len)).flat_map(|b| (0..vectors.len()).map(move |j| (b, j))).collect();
    let cts: Result<Vec<wire::SeededCt>> = jobs
        .par_iter()
        .map(|&(b, j)| {
            let end = ((b + 1) * n).min(len);
            keys.encrypt_seeded(ctx, &vectors[j][b * n..end], &mut rand::rng())
        })
        .collect();
    wire::send_seeded(p.ch, &cts?)
}

/// Server: receive `uploads` ciphertexts per block; returns them grouped by block.
pub(crate) fn server_receive(p: &mut Party, he: &HeParty, uploads: usize, len: usize) -> Result<Vec<Vec<Ciphertext>>> {
    he.server_keys()?;
    let blocks = block_count(he.ctx, len);
    let all = wire::recv_seeded(p.ch, he.ctx, blocks * uploads)?;
    let mut it = all.into_iter();
    Ok((0..blocks).map(|_| it.by_ref().take(uploads).collect()).collect())
}

fn evaluate(ctx: &HeContext, ups: &[&Ciphertext], comb: &LinComb) -> Result<Ciphertext> {
    if comb.mults.is_empty() {
        return Err(Error::He("linear combination without ciphertext terms".into()));
    }
    let polys: Result<Vec<Poly>> = comb.mults.iter().map(|(_, m)| ctx.simd_poly(m, 0)).collect();
    let polys = polys?;
    let mut parts = Vec::with_capacity(2);
    for part in 0..2 {
        let cts: Result<Vec<&Poly>> = comb
            .mults
            .iter()
            .map(|(j, _)| ups.get(*j).map(|c| &c[part]).ok_or_else(|| Error::He(format!("no upload {j}"))))
            .collect();
        parts.push(dot_product(cts?.into_iter(), polys.iter())?);
    }
    let mut ct = Ciphertext::new(parts, ctx.params())?;
    ct += &ctx.plaintext(&comb.constant, 0)?;
    Ok(ct)
}

/// Server: evaluate `outputs` linear combinations per block (built by `combos(block)`),
/// return them circuit-privately in one flight. Returns, per output, the server's shares of
/// all `len` elements.
pub(crate) fn server_evaluate_return<F>(
    p: &mut Party,
    he: &HeParty,
    ups: &[Vec<&Ciphertext>],
    len: usize,
    outputs: usize,
    terms: usize,
    combos: F,
) -> Result<Vec<Vec<u64>>>
where
    F: Fn(usize) -> Result<Vec<LinComb>> + Sync,
{
    let keys = he.server_keys()?;
    let ctx = he.ctx;
    let v = noise_bound(ctx, terms);
    let level = return_level(ctx, 0, v)?;
    let per_block: Result<Vec<Vec<(Ciphertext, Vec<u64>)>>> = ups
        .par_iter()
        .enumerate()
        .map(|(b, block_ups)| {
            let combs = combos(b)?;
            if combs.len() != outputs {
                return Err(Error::He(format!("{} outputs built, {outputs} expected", combs.len())));
            }
            combs
                .iter()
                .map(|c| {
                    let ct = evaluate(ctx, block_ups, c)?;
                    private_return(ctx, &keys.ret, ct, v, &mut rand::rng())
                })
                .collect()
        })
        .collect();
    let per_block = per_block?;
    let cts: Vec<Ciphertext> = per_block.iter().flat_map(|blk| blk.iter().map(|(c, _)| c.clone())).collect();
    wire::send_full(p.ch, ctx, &cts, level)?;
    Ok(gather_shares(per_block.into_iter().map(|blk| blk.into_iter().map(|(_, s)| s).collect()).collect(), outputs, len))
}

/// Client: receive `outputs` ciphertexts per block and decrypt them into its shares.
pub(crate) fn client_receive(p: &mut Party, he: &HeParty, len: usize, outputs: usize, terms: usize) -> Result<Vec<Vec<u64>>> {
    let keys = he.client_keys()?;
    let ctx = he.ctx;
    let level = return_level(ctx, 0, noise_bound(ctx, terms))?;
    let blocks = block_count(ctx, len);
    let cts = wire::recv_full(p.ch, ctx, blocks * outputs, level)?;
    let dec: Result<Vec<Vec<u64>>> = cts.par_iter().map(|ct| ctx.decrypt(&keys.sk, ct)).collect();
    let dec = dec?;
    let mut it = dec.into_iter();
    let grouped: Vec<Vec<Vec<u64>>> = (0..blocks).map(|_| it.by_ref().take(outputs).collect()).collect();
    Ok(gather_shares(grouped, outputs, len))
}

/// Block-major slot vectors → one vector of `len` elements per output.
fn gather_shares(blocks: Vec<Vec<Vec<u64>>>, outputs: usize, len: usize) -> Vec<Vec<u64>> {
    let mut out: Vec<Vec<u64>> = (0..outputs).map(|_| Vec::with_capacity(len)).collect();
    for blk in blocks {
        for (o, slots) in blk.into_iter().enumerate() {
            let take = len - out[o].len();
            out[o].extend(slots.into_iter().take(take));
        }
    }
    out
}

/// The slots of block `b` of `v` (the last block may be short).
pub(crate) fn block_slice<'v>(ctx: &HeContext, v: &'v [u64], b: usize) -> &'v [u64] {
    let n = ctx.slots();
    let start = (b * n).min(v.len());
    &v[start..((b + 1) * n).min(v.len())]
}

fn elementwise(field: Field, a: &[u64], b: &[u64]) -> Vec<u64> {
    a.iter().zip(b).map(|(&x, &y)| field.mul(x, y)).collect()
}

fn add_to(field: Field, mut v: Vec<u64>, w: &[u64]) -> Vec<u64> {
    for (x, &y) in v.iter_mut().zip(w) {
        *x = field.add(*x, y);
    }
    v
}

/// A field-shared multiplier for several products: both parties keep their share; the
/// server also keeps the client's share encrypted once the first [`mul_by`] has uploaded it.
/// Both parties must pass the same sequence of products (the upload is implied by the order).
pub struct Factor {
    share: Vec<u64>,
    uploaded: bool,
    /// Server: Enc(client share), one ciphertext per block.
    enc: Vec<Ciphertext>,
}

impl Factor {
    pub fn new(share: Vec<u64>) -> Factor {
        Factor { share, uploaded: false, enc: Vec::new() }
    }
    pub fn len(&self) -> usize {
        self.share.len()
    }
    pub fn is_empty(&self) -> bool {
        self.share.is_empty()
    }
}

/// Shares of `f ⊙ b`; uploads the factor's client share with the first product.
pub fn mul_by(p: &mut Party, he: &HeParty, f: &mut Factor, b: &[u64]) -> Result<Vec<u64>> {
    same_len("HE product", f.len(), b.len())?;
    he.check_role(p)?;
    let len = b.len();
    if len == 0 {
        return Ok(Vec::new());
    }
    let field = he.ctx.field();
    p.ch.set_phase("he-mul");
    let first = !f.uploaded;
    f.uploaded = true;
    if p.is_server() {
        let mut ups = server_receive(p, he, 1 + usize::from(first), len)?;
        if first {
            f.enc = ups.iter_mut().map(|blk| blk.remove(0)).collect();
        }
        let refs: Vec<Vec<&Ciphertext>> = f.enc.iter().zip(&ups).map(|(fc, blk)| vec![fc, &blk[0]]).collect();
        let ctx = he.ctx;
        let a = &f.share;
        let mut out = server_evaluate_return(p, he, &refs, len, 1, 2, |blk| {
            let (a_s, b_s) = (block_slice(ctx, a, blk), block_slice(ctx, b, blk));
            Ok(vec![LinComb { mults: vec![(0, b_s.to_vec()), (1, a_s.to_vec())], constant: elementwise(field, a_s, b_s) }])
        })?;
        out.pop().ok_or_else(|| Error::He("no output".into()))
    } else {
        let uploads = if first { vec![f.share.clone(), b.to_vec()] } else { vec![b.to_vec()] };
        client_upload(p, he, &uploads, len)?;
        let mut out = client_receive(p, he, len, 1, 2)?;
        let cross = out.pop().ok_or_else(|| Error::He("no output".into()))?;
        Ok(add_to(field, cross, &elementwise(field, &f.share, b)))
    }
}

/// Shares of `a ⊙ b`. Both parties pass their shares.
pub fn mul(p: &mut Party, he: &HeParty, a: &[u64], b: &[u64]) -> Result<Vec<u64>> {
    same_len("HE product", a.len(), b.len())?;
    mul_by(p, he, &mut Factor::new(a.to_vec()), b)
}

/// Shares of `a ⊙ a`.
pub fn square(p: &mut Party, he: &HeParty, a: &[u64]) -> Result<Vec<u64>> {
    let field = he.ctx.field();
    p.ch.set_phase("he-square");
    let own = (!p.is_server()).then(|| elementwise(field, a, a));
    single_term(p, he, a, own, |a_s, _| (a_s.iter().map(|&x| field.add(x, x)).collect(), elementwise(field, a_s, a_s)))
}

/// Shares of `g ⊙ x` for the server's plaintext vector `g` over Z_t (the server passes
/// `Some(g)`, the client `None`): one upload of Enc(x_c), one ct×pt term.
pub fn mul_plain(p: &mut Party, he: &HeParty, x: &[u64], g: Option<&[u64]>) -> Result<Vec<u64>> {
    let field = he.ctx.field();
    p.ch.set_phase("he-plain");
    let g = match (p.is_server(), g) {
        (true, None) => return Err(Error::Config("server-plaintext HE product needs the server's vector".into())),
        (true, Some(g)) => {
            same_len("HE plaintext product", x.len(), g.len())?;
            g
        }
        (false, _) => &[][..], // the client builds no terms
    };
    let ctx = he.ctx;
    single_term(p, he, x, None, |x_s, blk| {
        let g_b = block_slice(ctx, g, blk);
        (g_b.to_vec(), elementwise(field, x_s, g_b))
    })
}

/// One upload of Enc(x_c) and one returned ciphertext `m ⊙ Enc(x_c) + k` per block, where the
/// server's `terms(x_s block, block index)` gives (m, k); the client adds `own` (its local
/// term, if any) to its decryption.
fn single_term<F>(p: &mut Party, he: &HeParty, x: &[u64], own: Option<Vec<u64>>, terms: F) -> Result<Vec<u64>>
where
    F: Fn(&[u64], usize) -> (Vec<u64>, Vec<u64>) + Sync,
{
    he.check_role(p)?;
    let len = x.len();
    if len == 0 {
        return Ok(Vec::new());
    }
    let out = if p.is_server() {
        let ups = server_receive(p, he, 1, len)?;
        let refs: Vec<Vec<&Ciphertext>> = ups.iter().map(|blk| blk.iter().collect()).collect();
        let ctx = he.ctx;
        server_evaluate_return(p, he, &refs, len, 1, 1, |blk| {
            let (m, k) = terms(block_slice(ctx, x, blk), blk);
            Ok(vec![LinComb { mults: vec![(0, m)], constant: k }])
        })?
    } else {
        client_upload(p, he, &[x.to_vec()], len)?;
        client_receive(p, he, len, 1, 1)?
    };
    let y = out.into_iter().next().ok_or_else(|| Error::He("no output".into()))?;
    Ok(match own {
        Some(own) => add_to(he.ctx.field(), y, &own),
        None => y,
    })
}

/// Replicate a per-row value over its `cols` columns (row-major layout).
pub fn broadcast_rows(per_row: &[u64], cols: usize) -> Vec<u64> {
    per_row.iter().flat_map(|&v| std::iter::repeat_n(v, cols)).collect()
}

/// Shares of `out[r·cols + c] = a[r] · b[r·cols + c]`: `a` has one share per row, `b` is
/// rows × cols row-major.
pub fn mul_rows(p: &mut Party, he: &HeParty, a: &[u64], b: &[u64], cols: usize) -> Result<Vec<u64>> {
    if cols == 0 || a.len().checked_mul(cols) != Some(b.len()) {
        return Err(Error::Input(format!("row broadcast: {} rows × {cols} columns vs {} elements", a.len(), b.len())));
    }
    mul(p, he, &broadcast_rows(a, cols), b)
}

/// A ring-shared multiplier moved to Z_t (`convert::ring_to_field`) as a [`Factor`] for
/// [`he_mul_trunc_by`]; `|x| < 2^(ℓ−2)`.
pub fn ring_factor(p: &mut Party, he: &HeParty, ring: Ring, x: &[u64]) -> Result<Factor> {
    Ok(Factor::new(ring_to_field(p, ring, he.ctx.field(), x)?))
}

/// Ring shares of `⌊x·y / 2^s⌋` (faithful floor, or one less with `TruncMode::Approx`; `s = 0`
/// gives the exact product) for ring shares `x, y` with `|x|, |y| < 2^(ℓ−2)` and
/// `|x·y| < 2^bound_bits`: both move to Z_t (`convert::ring_to_field`), one HE product, back
/// with `convert::field_to_ring_trunc`.
/// Needs `ℓ ≤ bits(t)`, `bound_bits + 2 ≤ ℓ + s ≤ 64` and `2^bound_bits < t/2`.
#[allow(clippy::too_many_arguments)]
pub fn he_mul_trunc(p: &mut Party, he: &HeParty, ring: Ring, x: &[u64], y: &[u64], s: u32, bound_bits: u32, mode: TruncMode) -> Result<Vec<u64>> {
    same_len("HE product", x.len(), y.len())?;
    let mut f = ring_factor(p, he, ring, x)?;
    he_mul_trunc_by(p, he, ring, &mut f, y, s, bound_bits, mode)
}

/// [`he_mul_trunc`] with `x` given as a [`Factor`] (from [`ring_factor`]), so that several
/// products by the same `x` convert and upload it once.
#[allow(clippy::too_many_arguments)]
pub fn he_mul_trunc_by(p: &mut Party, he: &HeParty, ring: Ring, x: &mut Factor, y: &[u64], s: u32, bound_bits: u32, mode: TruncMode) -> Result<Vec<u64>> {
    let field = he.ctx.field();
    if bound_bits + 2 > field.bits() {
        return Err(Error::Config(format!("HE product bound 2^{bound_bits} does not fit Z_t ({} bits)", field.bits())));
    }
    same_len("HE product", x.len(), y.len())?;
    let yf = ring_to_field(p, ring, field, y)?;
    let prod = mul_by(p, he, x, &yf)?;
    field_to_ring_trunc(p, field, ring, &prod, bound_bits, s, mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_gathered_in_block_order() {
        let blocks = vec![vec![vec![1, 2, 3], vec![10, 20, 30]], vec![vec![4, 5, 6], vec![40, 50, 60]]];
        let out = gather_shares(blocks, 2, 5);
        assert_eq!(out, vec![vec![1, 2, 3, 4, 5], vec![10, 20, 30, 40, 50]]);
    }

    #[test]
    fn rows_are_broadcast_over_columns() {
        assert_eq!(broadcast_rows(&[7, 9], 3), vec![7, 7, 7, 9, 9, 9]);
    }
}
