//! Share × share matrix products for attention: Q·Kᵀ and P·V per head.
//!
//! **Paper reference.** FASTLMPI (Chen et al., TIFS 2025), attention products
//! (prototype `linear1_test.cpp`): each party computes its own-share product locally and the
//! cross terms go under HE.
//!
//! **Functionality.** For each head h, inputs A = A_c + A_s ∈ Z_t^{n×k} and
//! B = B_c + B_s ∈ Z_t^{k×m} (row-major, additive shares over Z_t); output additive shares of
//! A·B ∈ Z_t^{n×m}. For Q·Kᵀ pass A = Q, B = Kᵀ; for P·V pass A = P, B = V. Scales add
//! (s_A + s_B); truncation is done afterwards by the toolkit.
//!
//! **Variant (one key).** A·B = A_c·B_c + A_s·B_s + A_c·B_s + A_s·B_c. The first two are
//! local. Both cross terms are computed by the server under the *client's* key:
//! * A_c·B_s: a private linear layer (`proto::linear`) with encrypted input A_c and
//!   "weights" B_s;
//! * A_s·B_c = (B_cᵀ·A_sᵀ)ᵀ: a private linear layer with encrypted input B_cᵀ and weights A_sᵀ;
//!   both parties transpose their shares of it locally.
//!
//! All uploads of all heads travel in one flight and all results in one flight: one round
//! trip per call. The FASTLMPI prototype's both-keys pattern (each party encrypts its own
//! share under its own key, each evaluates one cross term) moves the same number of
//! ciphertexts in total and costs the same ct×pt work, but needs a second key pair, a second
//! key setup, HE evaluation and circuit privacy on the client too; the one-key variant is
//! never worse on this protocol's cost measures, so the both-keys pattern is not implemented.
//!
//! **Packing.** All heads share ciphertexts: the per-head operands are stacked along the rows
//! of one [`LinearPlan::stacked`] plan (each slot of a weight plaintext carries the matrix of its
//! head), as many heads per call as N/2 slots hold rows, so one call serves every head of BERT at
//! n ≤ 341 instead of one call per head. Either [`Packing`]; the weights here are uniform
//! shares, which does not change the noise bound (a SIMD plaintext's coefficients are bounded
//! by t/2 whatever its slots).
//!
//! **Valid input domain / error.** Exact mod t; decoded signed, exact when |A·B| < t/2
//! (t ≈ 2^54 with `HePreset::linear`: e.g. |q|,|k| < 2^20 with d_k = 64 gives < 2^46).
//!
//! **Bytes.** Per call (⌈heads / heads_per_call⌉ calls) the uploads and downloads of two
//! stacked plans, (n×k·k×m) and (m×k·k×n); see `bench::linear` for the measured table.
//!
//! **Security (semi-honest).** As for `proto::linear`: the server sees only client-key RLWE
//! ciphertexts; every returned ciphertext is masked with a uniform R, re-randomised, flooded by
//! ≥ 2^40 × the worst-case data-dependent noise and switched down, so the client learns only
//! uniformly masked values. Local products involve only a party's own shares.

use rand::{CryptoRng, RngCore};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::he::{ClientKeys, HeContext, ServerKeys};
use crate::net::Channel;
use crate::proto::linear::{self, EncodedLinear, LinearPlan, Packing, DEFAULT_WEIGHT_CACHE_BYTES};
use crate::share::Field;

/// A (n × k) · B (k × m).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulShape {
    pub n: usize,
    pub k: usize,
    pub m: usize,
}

/// The two cross-term plans of one product, each packing `heads_per_call` heads.
#[derive(Clone, Debug)]
pub struct SharedMatmulPlan {
    pub shape: MatmulShape,
    /// Heads packed into one call of each plan (the last call is padded with zero heads).
    pub heads_per_call: usize,
    /// A_c · B_s (n × m) for `heads_per_call` heads stacked along the rows.
    pub direct: LinearPlan,
    /// B_cᵀ · A_sᵀ (m × n) for `heads_per_call` heads, transposed afterwards.
    pub transposed: LinearPlan,
}

impl SharedMatmulPlan {
    /// Plans for `heads` products of `shape`: as many heads per ciphertext as its slots hold.
    pub fn new(ctx: &HeContext, shape: MatmulShape, heads: usize, packing: Packing) -> Result<SharedMatmulPlan> {
        let MatmulShape { n, k, m } = shape;
        let per_row_block = (ctx.slots() / 2) / n.max(m).max(1);
        let heads_per_call = heads.min(per_row_block).max(1);
        Ok(SharedMatmulPlan {
            shape,
            heads_per_call,
            direct: LinearPlan::stacked(ctx, heads_per_call, n, k, m, packing)?,
            transposed: LinearPlan::stacked(ctx, heads_per_call, m, k, n, packing)?,
        })
    }
    /// Galois rotations the server needs (union of both plans).
    pub fn rotations(&self) -> Vec<usize> {
        let mut r = self.direct.rotations();
        r.extend(self.transposed.rotations());
        r.sort_unstable();
        r.dedup();
        r
    }
    /// Calls of each plan needed for `heads` heads.
    pub fn calls(&self, heads: usize) -> usize {
        heads.div_ceil(self.heads_per_call)
    }
    /// Concatenate the matrices of one call, padded with zero heads to `heads_per_call`.
    fn stack(&self, mats: &[Vec<u64>], len: usize) -> Vec<u64> {
        let mut v: Vec<u64> = mats.concat();
        v.resize(self.heads_per_call * len, 0);
        v
    }
}

/// Row-major transpose of a rows × cols matrix.
pub fn transpose(v: &[u64], rows: usize, cols: usize) -> Vec<u64> {
    let mut out = vec![0u64; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = v[r * cols + c];
        }
    }
    out
}

/// A·B over Z_t for row-major A (n × k), B (k × m).
pub fn field_matmul(field: Field, a: &[u64], b: &[u64], shape: MatmulShape) -> Vec<u64> {
    let MatmulShape { n, k, m } = shape;
    let p = field.modulus() as u128;
    let mut y = vec![0u64; n * m];
    y.par_chunks_mut(m).enumerate().for_each(|(r, row)| {
        let mut acc = vec![0u128; m];
        for kk in 0..k {
            let av = a[r * k + kk] as u128;
            for (x, &bv) in acc.iter_mut().zip(&b[kk * m..(kk + 1) * m]) {
                *x = (*x + av * bv as u128 % p) % p;
            }
        }
        for (o, x) in row.iter_mut().zip(acc) {
            *o = x as u64;
        }
    });
    y
}

/// A party's share of A_h·B_h for each head of one call: its local product plus its shares of
/// the direct cross terms (stacked n × m blocks) and of the transposed ones (stacked m × n blocks).
fn push_head_shares(field: Field, shape: MatmulShape, a: &[Vec<u64>], b: &[Vec<u64>], direct: &[u64], transposed: &[u64], shares: &mut Vec<Vec<u64>>) {
    let MatmulShape { n, m, .. } = shape;
    for (h, (a, b)) in a.iter().zip(b).enumerate() {
        let mut share = field_matmul(field, a, b, shape);
        field.add_into(&mut share, &direct[h * n * m..(h + 1) * n * m]);
        field.add_into(&mut share, &transpose(&transposed[h * m * n..(h + 1) * m * n], m, n));
        shares.push(share);
    }
}

fn check_heads(shape: MatmulShape, a: &[Vec<u64>], b: &[Vec<u64>]) -> Result<()> {
    if a.len() != b.len() {
        return Err(Error::Input(format!("{} left operands for {} right operands", a.len(), b.len())));
    }
    for (x, y) in a.iter().zip(b) {
        if x.len() != shape.n * shape.k || y.len() != shape.k * shape.m {
            return Err(Error::Shape {
                tensor: "attention operand".into(),
                expected: vec![shape.n * shape.k, shape.k * shape.m],
                got: vec![x.len(), y.len()],
            });
        }
    }
    Ok(())
}

/// Server side, all heads at once: returns the server's share of A_h·B_h per head.
pub fn shared_matmul_server(
    ch: &mut dyn Channel,
    ctx: &HeContext,
    keys: &ServerKeys,
    plan: &SharedMatmulPlan,
    a_s: &[Vec<u64>],
    b_s: &[Vec<u64>],
) -> Result<Vec<Vec<u64>>> {
    let shape = plan.shape;
    let MatmulShape { n, k, m } = shape;
    check_heads(shape, a_s, b_s)?;
    let field = ctx.field();
    let calls = plan.calls(a_s.len());
    let mut uploads = Vec::with_capacity(calls);
    for _ in 0..calls {
        let direct = linear::server_recv(ch, ctx, &plan.direct)?;
        let transposed = linear::server_recv(ch, ctx, &plan.transposed)?;
        uploads.push((direct, transposed));
    }
    let mut results = Vec::with_capacity(calls);
    let mut shares = Vec::with_capacity(a_s.len());
    let chunks = a_s.chunks(plan.heads_per_call).zip(b_s.chunks(plan.heads_per_call));
    for ((a, b), (up_d, up_t)) in chunks.zip(&uploads) {
        let enc_d = EncodedLinear::from_field(ctx, plan.direct.clone(), plan.stack(b, k * m), None, DEFAULT_WEIGHT_CACHE_BYTES)?;
        let (ct_d, share_d) = enc_d.evaluate(ctx, keys, up_d, None)?;
        let a_t: Vec<Vec<u64>> = a.iter().map(|a| transpose(a, n, k)).collect();
        let enc_t = EncodedLinear::from_field(ctx, plan.transposed.clone(), plan.stack(&a_t, k * n), None, DEFAULT_WEIGHT_CACHE_BYTES)?;
        let (ct_t, share_t) = enc_t.evaluate(ctx, keys, up_t, None)?;
        push_head_shares(field, shape, a, b, &share_d, &share_t, &mut shares);
        results.push((ct_d, ct_t));
    }
    for (ct_d, ct_t) in &results {
        linear::server_send(ch, ctx, &plan.direct, ct_d)?;
        linear::server_send(ch, ctx, &plan.transposed, ct_t)?;
    }
    Ok(shares)
}

/// Client side, all heads at once: returns the client's share of A_h·B_h per head.
pub fn shared_matmul_client<R: RngCore + CryptoRng>(
    ch: &mut dyn Channel,
    ctx: &HeContext,
    keys: &ClientKeys,
    plan: &SharedMatmulPlan,
    a_c: &[Vec<u64>],
    b_c: &[Vec<u64>],
    rng: &mut R,
) -> Result<Vec<Vec<u64>>> {
    let shape = plan.shape;
    let MatmulShape { n, k, m } = shape;
    check_heads(shape, a_c, b_c)?;
    let field = ctx.field();
    let per = plan.heads_per_call;
    for (a, b) in a_c.chunks(per).zip(b_c.chunks(per)) {
        linear::client_send(ch, ctx, keys, &plan.direct, &plan.stack(a, n * k), rng)?;
        let b_t: Vec<Vec<u64>> = b.iter().map(|b| transpose(b, k, m)).collect();
        linear::client_send(ch, ctx, keys, &plan.transposed, &plan.stack(&b_t, m * k), rng)?;
    }
    let mut shares = Vec::with_capacity(a_c.len());
    for (a, b) in a_c.chunks(per).zip(b_c.chunks(per)) {
        let d = linear::client_recv(ch, ctx, keys, &plan.direct)?;
        let t = linear::client_recv(ch, ctx, keys, &plan.transposed)?;
        push_head_shares(field, shape, a, b, &d, &t, &mut shares);
    }
    Ok(shares)
}
