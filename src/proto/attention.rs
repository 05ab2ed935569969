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
//! **Packing.** Either [`Packing`]; the weights here are uniform shares, which does not change
//! the noise bound (a SIMD plaintext's coefficients are bounded by t/2 whatever its slots).
//!
//! **Valid input domain / error.** Exact mod t; decoded signed, exact when |A·B| < t/2
//! (t ≈ 2^54 with `HePreset::linear`: e.g. |q|,|k| < 2^20 with d_k = 64 gives < 2^46).
//!
//! **Bytes.** Per head the uploads and downloads of two linear plans:
//! (n×k·k×m) and (m×k·k×n); see `bench::linear` for the measured table.
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
use crate::proto::linear::{self, EncodedLinear, LinearPlan, LinearShape, Packing, DEFAULT_WEIGHT_CACHE_BYTES};
use crate::share::Field;

/// A (n × k) · B (k × m).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulShape {
    pub n: usize,
    pub k: usize,
    pub m: usize,
}

/// The two cross-term plans of one product.
#[derive(Clone, Debug)]
pub struct SharedMatmulPlan {
    pub shape: MatmulShape,
    /// A_c · B_s (n × m).
    pub direct: LinearPlan,
    /// B_cᵀ · A_sᵀ (m × n), transposed afterwards.
    pub transposed: LinearPlan,
}

impl SharedMatmulPlan {
    pub fn new(ctx: &HeContext, shape: MatmulShape, packing: Packing) -> Result<SharedMatmulPlan> {
        let MatmulShape { n, k, m } = shape;
        Ok(SharedMatmulPlan {
            shape,
            direct: LinearPlan::new(ctx, LinearShape { n, d_in: k, d_out: m }, packing)?,
            transposed: LinearPlan::new(ctx, LinearShape { n: m, d_in: k, d_out: n }, packing)?,
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

fn add_into(field: Field, acc: &mut [u64], other: &[u64]) {
    for (a, &b) in acc.iter_mut().zip(other) {
        *a = field.add(*a, b);
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
    check_heads(shape, a_s, b_s)?;
    let field = ctx.field();
    let mut uploads = Vec::with_capacity(a_s.len());
    for _ in 0..a_s.len() {
        let direct = linear::server_recv(ch, ctx, &plan.direct)?;
        let transposed = linear::server_recv(ch, ctx, &plan.transposed)?;
        uploads.push((direct, transposed));
    }
    let mut results = Vec::with_capacity(a_s.len());
    let mut shares = Vec::with_capacity(a_s.len());
    for ((a, b), (up_d, up_t)) in a_s.iter().zip(b_s).zip(&uploads) {
        let enc_d = EncodedLinear::from_field(ctx, plan.direct.clone(), b.clone(), None, DEFAULT_WEIGHT_CACHE_BYTES)?;
        let (ct_d, share_d) = enc_d.evaluate(ctx, keys, up_d, None)?;
        let a_t = transpose(a, shape.n, shape.k);
        let enc_t = EncodedLinear::from_field(ctx, plan.transposed.clone(), a_t, None, DEFAULT_WEIGHT_CACHE_BYTES)?;
        let (ct_t, share_t) = enc_t.evaluate(ctx, keys, up_t, None)?;
        let mut share = field_matmul(field, a, b, shape);
        add_into(field, &mut share, &share_d);
        add_into(field, &mut share, &transpose(&share_t, shape.m, shape.n));
        results.push((ct_d, ct_t));
        shares.push(share);
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
    check_heads(shape, a_c, b_c)?;
    let field = ctx.field();
    for (a, b) in a_c.iter().zip(b_c) {
        linear::client_send(ch, ctx, keys, &plan.direct, a, rng)?;
        linear::client_send(ch, ctx, keys, &plan.transposed, &transpose(b, shape.k, shape.m), rng)?;
    }
    let mut shares = Vec::with_capacity(a_c.len());
    for (a, b) in a_c.iter().zip(b_c) {
        let d = linear::client_recv(ch, ctx, keys, &plan.direct)?;
        let t = linear::client_recv(ch, ctx, keys, &plan.transposed)?;
        let mut share = field_matmul(field, a, b, shape);
        add_into(field, &mut share, &d);
        add_into(field, &mut share, &transpose(&t, shape.m, shape.n));
        shares.push(share);
    }
    Ok(shares)
}
