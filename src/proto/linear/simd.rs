//! Private linear layer Y = X·W + b with X additively shared over Z_t and W, b held in the
//! clear by the server.
//!
//! **Paper reference.** FASTLMPI (Chen et al., TIFS 2025) §"Π_matmul", rotation-free
//! column-replicated packing ("RFCP"); BOLT (Pang et al., S&P 2024) diagonal packing with
//! baby-step/giant-step rotations ("BSGS"). Both are selectable per call ([`Packing`]).
//!
//! **Functionality.** Inputs: the client's share X_c and the server's share X_s of
//! X ∈ Z_t^{n×d_in} (row-major), the server's W ∈ Z^{d_in×d_out} and b ∈ Z^{d_out} (signed
//! fixed point; b must already be at the output scale). Output: additive shares over Z_t of
//! Y = X·W + 1·bᵀ, row-major n×d_out, at scale s_x + s_w. Truncation back to s_x happens
//! afterwards in the field→ring conversion of the non-linear toolkit.
//!
//! **Message flow.** (setup, once: client → server public key, plus Galois keys for BSGS)
//! 1. client → server: seeded secret-key encryptions of X_c in the packing's layout;
//! 2. server: Y_s = X_s·W + b in the clear (mod t); Enc(X_c·W) homomorphically; every result
//!    ciphertext goes through the circuit-private return (`he::privacy`);
//! 3. server → client: the masked, flooded, switched-down ciphertexts. The client's share is
//!    the decryption, the server's share is Y_s − R. Two flights, one round trip.
//!
//! **Packings.** With N slots (two rows of N/2):
//! * RFCP: per input column k (and row block), one ciphertext holding X_c[:,k] with each
//!   entry replicated over the m_b = N/n output columns of a block; the server computes
//!   Σ_k ct_k ⊙ tile(W[k, block]) with lazy dot products — no rotations. Uploads: d_in·⌈n/N⌉,
//!   downloads ⌈d_out/m_b⌉·⌈n/N⌉.
//! * BSGS: slots are G groups of T ≥ n tokens per row; a ciphertext holds 2G input features
//!   (G per row). Output group h of block b gets Σ_r diag_r ⊙ rot_r(x) (generalised diagonals
//!   over groups). Baby steps rot_{r1} (r1 < n1) are **encrypted by the client** (fresh
//!   encryptions of the rotated input) rather than computed by the server: with `fhe` 0.1.1's
//!   BV key switching (no special prime) a rotation adds ≈ N·q_i noise, and multiplying that by
//!   a SIMD weight plaintext (coefficients up to t/2) would not leave room for 40-bit flooding.
//!   Giant steps rot_{n1·r2} are applied by the server to products, where their key-switching
//!   noise only adds. Each output row of a ciphertext carries a partial sum over the features
//!   of that row; both parties add the two rows of their shares locally (free).
//!   Uploads: ⌈d_in/2G⌉·n1 per row block, downloads ⌈d_out/G⌉, rotations (n2−1) per download.
//!
//! **Valid input domain / error.** Exact (no approximation): the reconstructed output equals
//! X·W + b mod t. Decoded signed, it is the integer result whenever |X·W + b| < t/2; with
//! [`crate::he::HePreset::linear`] (t ≈ 2^54) and activations |x| < 2^22 (2^10 at 12 fraction
//! bits), weights |w| < 2^16 (2^4 at 12 bits), d_in ≤ 3072: |y| < 2^50 + |b| < 2^53.
//!
//! **Bytes.** Per upload one seeded ciphertext (N·log2 Q/8 + 32 bytes, 223 KB at N = 8192),
//! per download one two-part ciphertext at the return level (2·N·log2 q_L/8, 225 KB with two
//! moduli). Measured at n = 128 (`results/linear-bench.json`): 768×768 RFCP 171.5 MB up /
//! 2.7 MB down, BSGS 21.4 MB up / 5.4 MB down; 3072×768 RFCP 686 MB / 2.7 MB, BSGS 42.9 MB /
//! 5.4 MB. BSGS is the recommended default ([`Packing::recommended`]).
//!
//! **Security (semi-honest).** The server sees only RLWE ciphertexts under the client's key
//! (IND-CPA). The client sees, per returned ciphertext, Enc(X_c·W + R) re-randomised with a
//! fresh public-key encryption of zero and noise flooded by ≥ 2^40 × the worst-case
//! data-dependent noise, so its view is simulatable from uniform R alone (statistical distance
//! ≤ N·2^−40 per ciphertext); the decrypted values are uniform because R is uniform over Z_t.
//! The server's share Y_s − R is independent of X_c.

use std::borrow::Cow;

use fhe::bfv::Ciphertext;
use fhe_math::rq::{dot_product, Poly};
use rand::{CryptoRng, RngCore};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::he::privacy::{ct_pt_sum_bound, private_return, return_level, rotation_bound, simd_plain_bound};
use crate::he::{wire, ClientKeys, HeContext, ServerKeys};
use crate::net::Channel;
use crate::share::Field;

/// Which packing the linear layers use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Packing {
    /// FASTLMPI's rotation-free column-replicated SIMD packing.
    Rfcp,
    /// BOLT's diagonal packing with baby-step/giant-step rotations.
    Bsgs,
}

impl Packing {
    /// The packing the FASTLMPI profile should use by default: BSGS. Measured at n = 128 on the
    /// shared 2-core machine (`results/linear-bench.json`), BSGS moves 2.8–16× fewer bytes than
    /// RFCP (which uploads one ciphertext per input column) and is 1.5–4× faster on 768×768,
    /// 3072×768, Q·Kᵀ and P·V. The exception is 768×3072, where RFCP took ~10% less time in two
    /// runs (both are dominated by on-the-fly weight encoding) at 2.8× the bytes.
    pub fn recommended() -> Packing {
        Packing::Bsgs
    }
    pub fn name(self) -> &'static str {
        match self {
            Packing::Rfcp => "rfcp",
            Packing::Bsgs => "bsgs",
        }
    }
    pub fn parse(s: &str) -> Result<Packing> {
        match s {
            "rfcp" => Ok(Packing::Rfcp),
            "bsgs" => Ok(Packing::Bsgs),
            _ => Err(Error::Config(format!("unknown packing `{s}` (rfcp|bsgs)"))),
        }
    }
}

/// X (n × d_in) · W (d_in × d_out).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LinearShape {
    pub n: usize,
    pub d_in: usize,
    pub d_out: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// `rows` rows per block, `cols` output columns per block.
    Rfcp { rows: usize, cols: usize, row_blocks: usize, col_blocks: usize },
    /// `tokens` slots per group, `groups` groups per row, `n1 · n2 = groups`.
    Bsgs { tokens: usize, groups: usize, row_blocks: usize, in_blocks: usize, out_blocks: usize, n1: usize, n2: usize },
}

/// Everything both parties derive identically from the public shape and packing.
#[derive(Clone, Debug)]
pub struct LinearPlan {
    pub shape: LinearShape,
    pub packing: Packing,
    layout: Layout,
    /// Worst-case data-dependent noise of a result ciphertext (drives flooding).
    pub noise_bound: f64,
    /// Level at which results are returned.
    pub return_level: usize,
    /// Distinct weight matrices stacked along the rows (1 for an ordinary layer).
    pub stack: Stack,
}

/// Several independent products X_j·W_j (same d_in × d_out, `rows_each` rows each) laid out as
/// one plan: X is the row-wise concatenation of the X_j, W the concatenation of the W_j, and
/// every slot of a weight plaintext carries the matrix of the row it meets. The attention
/// products use it to pack all heads into one set of ciphertexts instead of one set per head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Stack {
    pub matrices: usize,
    pub rows_each: usize,
}

impl Stack {
    /// Which weight matrix row `r` uses (`None` past the last one).
    fn matrix_of(&self, r: usize) -> Option<usize> {
        let m = r / self.rows_each.max(1);
        (m < self.matrices).then_some(m)
    }
}

/// Rough single-thread costs (ms) used to pick the baby-step count: one client upload
/// (encrypt + transfer + decode) and one server rotation at N = 8192.
const UPLOAD_COST_MS: f64 = 4.0;
const ROTATION_COST_MS: f64 = 5.0;

impl LinearPlan {
    pub fn new(ctx: &HeContext, shape: LinearShape, packing: Packing) -> Result<LinearPlan> {
        Self::build(ctx, shape, packing, None)
    }
    /// BSGS with a forced baby-step count `n1` (a power of two dividing the group count).
    pub fn bsgs_with_baby_steps(ctx: &HeContext, shape: LinearShape, n1: usize) -> Result<LinearPlan> {
        Self::build(ctx, shape, Packing::Bsgs, Some(n1))
    }

    /// `matrices` products of `rows_each × d_in` by `d_in × d_out`, stacked along the rows;
    /// all rows must fit one row block (`matrices · rows_each` ≤ N/2).
    pub fn stacked(ctx: &HeContext, matrices: usize, rows_each: usize, d_in: usize, d_out: usize, packing: Packing) -> Result<LinearPlan> {
        let shape = LinearShape { n: matrices * rows_each, d_in, d_out };
        let mut plan = Self::build(ctx, shape, packing, None)?;
        if matrices > 1 && plan.row_blocks() != 1 {
            return Err(Error::Config(format!("{matrices} stacked matrices of {rows_each} rows do not fit one ciphertext row block")));
        }
        plan.stack = Stack { matrices, rows_each };
        Ok(plan)
    }

    fn row_blocks(&self) -> usize {
        match self.layout {
            Layout::Rfcp { row_blocks, .. } | Layout::Bsgs { row_blocks, .. } => row_blocks,
        }
    }

    fn build(ctx: &HeContext, shape: LinearShape, packing: Packing, n1: Option<usize>) -> Result<LinearPlan> {
        if shape.n == 0 || shape.d_in == 0 || shape.d_out == 0 {
            return Err(Error::Input(format!("empty linear shape {shape:?}")));
        }
        let n_slots = ctx.slots();
        let plain = simd_plain_bound(ctx);
        let fresh = ctx.fresh_noise();
        let (layout, noise) = match packing {
            Packing::Rfcp => {
                let rows = shape.n.min(n_slots);
                let cols = shape.d_out.min(n_slots / rows).max(1);
                let layout = Layout::Rfcp {
                    rows,
                    cols,
                    row_blocks: shape.n.div_ceil(rows),
                    col_blocks: shape.d_out.div_ceil(cols),
                };
                (layout, ct_pt_sum_bound(ctx, shape.d_in, plain, fresh))
            }
            Packing::Bsgs => {
                let half = n_slots / 2;
                let min_tokens = shape.n.next_power_of_two().min(half);
                let want_groups = shape.d_in.div_ceil(2).max(shape.d_out).next_power_of_two();
                let groups = want_groups.min(half / min_tokens).max(1);
                let tokens = half / groups;
                let in_blocks = shape.d_in.div_ceil(2 * groups);
                let out_blocks = shape.d_out.div_ceil(groups);
                let row_blocks = shape.n.div_ceil(tokens);
                let n1 = match n1 {
                    Some(n1) if n1.is_power_of_two() && groups % n1 == 0 => n1,
                    Some(n1) => return Err(Error::Config(format!("baby steps {n1} must be a power of two dividing {groups}"))),
                    None => best_baby_steps(groups, in_blocks, out_blocks),
                };
                let n2 = groups / n1;
                let layout = Layout::Bsgs { tokens, groups, row_blocks, in_blocks, out_blocks, n1, n2 };
                let inner = ct_pt_sum_bound(ctx, in_blocks * n1, plain, fresh);
                (layout, n2 as f64 * inner + (n2 - 1) as f64 * rotation_bound(ctx))
            }
        };
        let return_level = return_level(ctx, 0, noise)?;
        let stack = Stack { matrices: 1, rows_each: shape.n };
        Ok(LinearPlan { shape, packing, layout, noise_bound: noise, return_level, stack })
    }

    /// Number of client uploads (seeded ciphertexts).
    pub fn uploads(&self) -> usize {
        match self.layout {
            Layout::Rfcp { row_blocks, .. } => row_blocks * self.shape.d_in,
            Layout::Bsgs { row_blocks, in_blocks, n1, .. } => row_blocks * in_blocks * n1,
        }
    }
    /// Number of returned ciphertexts.
    pub fn outputs(&self) -> usize {
        match self.layout {
            Layout::Rfcp { row_blocks, col_blocks, .. } => row_blocks * col_blocks,
            Layout::Bsgs { row_blocks, out_blocks, .. } => row_blocks * out_blocks,
        }
    }
    /// Column-rotation amounts (in slots) the server needs Galois keys for.
    pub fn rotations(&self) -> Vec<usize> {
        match self.layout {
            Layout::Rfcp { .. } => vec![],
            Layout::Bsgs { tokens, n1, n2, .. } => (1..n2).map(|r2| r2 * n1 * tokens).collect(),
        }
    }
    /// Server-side ct×pt products per call.
    pub fn products(&self) -> usize {
        self.outputs() * self.terms_per_output()
    }
    fn terms_per_output(&self) -> usize {
        match self.layout {
            Layout::Rfcp { .. } => self.shape.d_in,
            Layout::Bsgs { in_blocks, groups, .. } => in_blocks * groups,
        }
    }
    /// Number of weight plaintexts a server encodes for this plan.
    pub fn weight_polys(&self) -> usize {
        let (blocks, per_block) = self.weight_blocks();
        blocks * per_block
    }
    /// Bytes of this plan's weight plaintexts once encoded.
    pub fn weight_bytes(&self, ctx: &HeContext) -> usize {
        self.weight_polys().saturating_mul(encoded_poly_bytes(ctx))
    }
    /// Number of encoded weight polynomials and how many belong to one output column block.
    fn weight_blocks(&self) -> (usize, usize) {
        match self.layout {
            Layout::Rfcp { col_blocks, .. } => (col_blocks, self.shape.d_in),
            Layout::Bsgs { out_blocks, in_blocks, groups, .. } => (out_blocks, in_blocks * groups),
        }
    }
    /// Human-readable layout parameters (for reports).
    pub fn describe(&self) -> String {
        match self.layout {
            Layout::Rfcp { rows, cols, .. } => format!("rfcp rows/block={rows} cols/block={cols}{}", self.stack_note()),
            Layout::Bsgs { tokens, groups, n1, n2, .. } => format!("bsgs T={tokens} G={groups} n1={n1} n2={n2}{}", self.stack_note()),
        }
    }
    fn stack_note(&self) -> String {
        match self.stack.matrices {
            1 => String::new(),
            m => format!(" stack={m}×{}", self.stack.rows_each),
        }
    }
    /// Field elements of W the plan expects (all stacked matrices).
    pub fn weight_len(&self) -> usize {
        self.stack.matrices * self.shape.d_in * self.shape.d_out
    }

    fn check_len(&self, what: &str, got: usize, want: usize) -> Result<()> {
        if got != want {
            return Err(Error::Shape { tensor: what.into(), expected: vec![want], got: vec![got] });
        }
        Ok(())
    }

    /// Slot values of upload `idx` from X (field elements, n × d_in row-major).
    fn upload_slots(&self, x: &[u64], idx: usize, n_slots: usize) -> Vec<u64> {
        let LinearShape { n, d_in, .. } = self.shape;
        let mut s = vec![0u64; n_slots];
        match self.layout {
            Layout::Rfcp { rows, cols, .. } => {
                let (rb, k) = (idx / d_in, idx % d_in);
                for i in 0..rows.min(n - rb * rows) {
                    let v = x[(rb * rows + i) * d_in + k];
                    s[i * cols..(i + 1) * cols].fill(v);
                }
            }
            Layout::Bsgs { tokens, groups, in_blocks, n1, .. } => {
                let (rb, rest) = (idx / (in_blocks * n1), idx % (in_blocks * n1));
                let (a, r1) = (rest / n1, rest % n1);
                let half = n_slots / 2;
                for rho in 0..2 {
                    for g in 0..groups {
                        let feat = a * 2 * groups + rho * groups + (g + r1) % groups;
                        if feat >= d_in {
                            continue;
                        }
                        for i in 0..tokens.min(n.saturating_sub(rb * tokens)) {
                            s[rho * half + g * tokens + i] = x[(rb * tokens + i) * d_in + feat];
                        }
                    }
                }
            }
        }
        s
    }

    /// Slot values of weight polynomial `widx` from W (field elements, d_in × d_out).
    fn weight_slots(&self, w: &[u64], widx: usize, n_slots: usize) -> Vec<u64> {
        let LinearShape { d_in, d_out, .. } = self.shape;
        let mut s = vec![0u64; n_slots];
        match self.layout {
            Layout::Rfcp { rows, cols, .. } => {
                let (cb, k) = (widx / d_in, widx % d_in);
                let width = cols.min(d_out - cb * cols);
                for i in 0..rows {
                    let Some(m) = self.stack.matrix_of(i) else { continue };
                    let at = m * d_in * d_out + k * d_out + cb * cols;
                    s[i * cols..i * cols + width].copy_from_slice(&w[at..at + width]);
                }
            }
            Layout::Bsgs { tokens, groups, in_blocks, n1, n2, .. } => {
                // widx = ((b·n2 + r2)·in_blocks + a)·n1 + r1
                let r1 = widx % n1;
                let a = (widx / n1) % in_blocks;
                let r2 = (widx / (n1 * in_blocks)) % n2;
                let b = widx / (n1 * in_blocks * n2);
                let half = n_slots / 2;
                for rho in 0..2 {
                    for g in 0..groups {
                        let feat = a * 2 * groups + rho * groups + (g + r1) % groups;
                        let out = b * groups + (g + groups - (n1 * r2) % groups) % groups;
                        if feat >= d_in || out >= d_out {
                            continue;
                        }
                        let base = rho * half + g * tokens;
                        if self.stack.matrices == 1 {
                            s[base..base + tokens].fill(w[feat * d_out + out]);
                            continue;
                        }
                        // Stacked plans have one row block: token i is row i.
                        for i in 0..tokens {
                            if let Some(m) = self.stack.matrix_of(i) {
                                s[base + i] = w[m * d_in * d_out + feat * d_out + out];
                            }
                        }
                    }
                }
            }
        }
        s
    }

    /// For output ciphertext `o`: (slot, row, col) for every slot that carries an output.
    fn output_positions(&self, o: usize, n_slots: usize) -> Vec<(usize, usize, usize)> {
        let LinearShape { n, d_out, .. } = self.shape;
        let mut out = Vec::new();
        match self.layout {
            Layout::Rfcp { rows, cols, col_blocks, .. } => {
                let (rb, cb) = (o / col_blocks, o % col_blocks);
                for i in 0..rows {
                    for j in 0..cols {
                        let (r, c) = (rb * rows + i, cb * cols + j);
                        if r < n && c < d_out {
                            out.push((i * cols + j, r, c));
                        }
                    }
                }
            }
            Layout::Bsgs { tokens, groups, out_blocks, .. } => {
                let (rb, b) = (o / out_blocks, o % out_blocks);
                let half = n_slots / 2;
                for rho in 0..2 {
                    for h in 0..groups {
                        for i in 0..tokens {
                            let (r, c) = (rb * tokens + i, b * groups + h);
                            if r < n && c < d_out {
                                out.push((rho * half + h * tokens + i, r, c));
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// The (upload index, weight index) pairs summed for output `o`, one list per giant step.
    fn terms(&self, o: usize) -> Vec<Vec<(usize, usize)>> {
        match self.layout {
            Layout::Rfcp { col_blocks, .. } => {
                let d_in = self.shape.d_in;
                let (rb, cb) = (o / col_blocks, o % col_blocks);
                vec![(0..d_in).map(|k| (rb * d_in + k, cb * d_in + k)).collect()]
            }
            Layout::Bsgs { in_blocks, out_blocks, n1, n2, .. } => {
                let (rb, b) = (o / out_blocks, o % out_blocks);
                (0..n2)
                    .map(|r2| {
                        let mut v = Vec::with_capacity(in_blocks * n1);
                        for a in 0..in_blocks {
                            for r1 in 0..n1 {
                                let up = (rb * in_blocks + a) * n1 + r1;
                                let wi = ((b * n2 + r2) * in_blocks + a) * n1 + r1;
                                v.push((up, wi));
                            }
                        }
                        v
                    })
                    .collect()
            }
        }
    }

    fn giant_step(&self, r2: usize) -> usize {
        match self.layout {
            Layout::Rfcp { .. } => 0,
            Layout::Bsgs { tokens, n1, .. } => r2 * n1 * tokens,
        }
    }
}

/// Minimise uploads·cost + rotations·cost over powers of two n1 | groups.
fn best_baby_steps(groups: usize, in_blocks: usize, out_blocks: usize) -> usize {
    let mut best = (f64::INFINITY, 1);
    let mut n1 = 1;
    while n1 <= groups {
        let n2 = groups / n1;
        let cost = (in_blocks * n1) as f64 * UPLOAD_COST_MS + (out_blocks * (n2 - 1)) as f64 * ROTATION_COST_MS;
        if cost < best.0 {
            best = (cost, n1);
        }
        n1 *= 2;
    }
    best.1
}

/// Bytes of one encoded weight plaintext (NTT form over every ciphertext modulus).
pub fn encoded_poly_bytes(ctx: &HeContext) -> usize {
    ctx.slots() * ctx.params().moduli().len() * 8
}

/// Default cap on the memory used to cache encoded weights; larger matrices are encoded
/// on the fly, chunk by chunk, during each call.
pub const DEFAULT_WEIGHT_CACHE_BYTES: usize = 1 << 30;
/// Terms per lazily encoded chunk (bounds transient memory).
const CHUNK_TERMS: usize = 64;

/// Server-side weights for one plan: W and b as field elements, and (when they fit the cache
/// limit) all weight plaintexts pre-encoded once as centred NTT polynomials.
pub struct EncodedLinear {
    pub plan: LinearPlan,
    w: Vec<u64>,
    bias: Vec<u64>,
    cache: Option<Vec<Poly>>,
}

impl EncodedLinear {
    /// `w` is d_in × d_out row-major signed fixed point, `bias` d_out values at the output scale.
    pub fn new(ctx: &HeContext, plan: LinearPlan, w: &[i64], bias: Option<&[i64]>) -> Result<EncodedLinear> {
        Self::with_cache_limit(ctx, plan, w, bias, DEFAULT_WEIGHT_CACHE_BYTES)
    }
    pub fn with_cache_limit(
        ctx: &HeContext,
        plan: LinearPlan,
        w: &[i64],
        bias: Option<&[i64]>,
        cache_bytes: usize,
    ) -> Result<EncodedLinear> {
        let f = ctx.field();
        let wf: Vec<u64> = w.iter().map(|&x| f.from_signed(x)).collect();
        let bf: Option<Vec<u64>> = bias.map(|b| b.iter().map(|&x| f.from_signed(x)).collect());
        Self::from_field(ctx, plan, wf, bf, cache_bytes)
    }
    /// Weights already in Z_t (e.g. a share of the other attention operand).
    pub fn from_field(
        ctx: &HeContext,
        plan: LinearPlan,
        w: Vec<u64>,
        bias: Option<Vec<u64>>,
        cache_bytes: usize,
    ) -> Result<EncodedLinear> {
        let d_out = plan.shape.d_out;
        plan.check_len("weights", w.len(), plan.weight_len())?;
        let bias = bias.unwrap_or_else(|| vec![0; d_out]);
        plan.check_len("bias", bias.len(), d_out)?;
        let count = plan.weight_polys();
        let fits = plan.weight_bytes(ctx) <= cache_bytes;
        let mut enc = EncodedLinear { plan, w, bias, cache: None };
        if fits {
            let polys: Result<Vec<Poly>> = (0..count).into_par_iter().map(|i| enc.encode(ctx, i)).collect();
            enc.cache = Some(polys?);
        }
        Ok(enc)
    }
    pub fn is_cached(&self) -> bool {
        self.cache.is_some()
    }
    /// Bytes of pre-encoded polynomials held (0 when encoded per call).
    pub fn cached_bytes(&self, ctx: &HeContext) -> usize {
        self.cache.as_ref().map_or(0, |c| c.len() * encoded_poly_bytes(ctx))
    }
    /// Whether these are the weights `w` and bias `bias` (signed fixed point, as in [`EncodedLinear::new`]).
    pub fn same_weights(&self, ctx: &HeContext, w: &[i64], bias: &[i64]) -> bool {
        let f = ctx.field();
        self.w.len() == w.len()
            && self.bias.len() == bias.len()
            && self.w.iter().zip(w).all(|(&a, &b)| a == f.from_signed(b))
            && self.bias.iter().zip(bias).all(|(&a, &b)| a == f.from_signed(b))
    }
    /// Encode (and drop) the first `count` weight polynomials on this thread: a timing probe.
    pub fn encode_sample(&self, ctx: &HeContext, count: usize) -> Result<()> {
        for i in 0..count.min(self.plan.weight_polys()) {
            self.encode(ctx, i)?;
        }
        Ok(())
    }
    /// Number of weight polynomials one call multiplies with (cached or not).
    pub fn weight_polys(&self) -> usize {
        self.plan.weight_polys()
    }
    fn encode(&self, ctx: &HeContext, widx: usize) -> Result<Poly> {
        ctx.simd_poly(&self.plan.weight_slots(&self.w, widx, ctx.slots()), 0)
    }
    fn weight(&self, ctx: &HeContext, widx: usize) -> Result<Cow<'_, Poly>> {
        match &self.cache {
            Some(c) => Ok(Cow::Borrowed(&c[widx])),
            None => Ok(Cow::Owned(self.encode(ctx, widx)?)),
        }
    }

    /// Σ ups[u] ⊙ w[wi] over `terms`, with lazy u128 accumulation per chunk.
    fn sum_products(&self, ctx: &HeContext, ups: &[Ciphertext], terms: &[(usize, usize)]) -> Result<Ciphertext> {
        let mut acc: Option<Ciphertext> = None;
        for chunk in terms.chunks(CHUNK_TERMS) {
            let ws: Result<Vec<Cow<'_, Poly>>> = chunk.iter().map(|&(_, wi)| self.weight(ctx, wi)).collect();
            let ws = ws?;
            let part = |i: usize| dot_product(chunk.iter().map(|&(u, _)| &ups[u][i]), ws.iter().map(|w| w.as_ref()));
            let parts = vec![part(0)?, part(1)?];
            let ct = Ciphertext::new(parts, ctx.params())?;
            acc = Some(match acc {
                None => ct,
                Some(a) => &a + &ct,
            });
        }
        acc.ok_or_else(|| Error::He("empty dot product".into()))
    }

    /// Enc(X_c·W) for output `o` (before masking).
    fn eval_output(&self, ctx: &HeContext, keys: &ServerKeys, ups: &[Ciphertext], o: usize) -> Result<Ciphertext> {
        let mut acc: Option<Ciphertext> = None;
        for (r2, terms) in self.plan.terms(o).iter().enumerate() {
            let mut part = self.sum_products(ctx, ups, terms)?;
            let step = self.plan.giant_step(r2);
            if step > 0 {
                let ek = keys.ek.as_ref().ok_or_else(|| Error::He("BSGS needs Galois keys".into()))?;
                part = ek.rotates_columns_by(&part, step)?;
            }
            acc = Some(match acc {
                None => part,
                Some(a) => &a + &part,
            });
        }
        acc.ok_or_else(|| Error::He("no terms".into()))
    }

    /// X_s·W + b over Z_t, row-major n × d_out.
    fn clear_product(&self, field: Field, x_s: &[u64]) -> Vec<u64> {
        let LinearShape { n, d_in, d_out } = self.plan.shape;
        let p = field.modulus() as u128;
        let mut y = vec![0u64; n * d_out];
        y.par_chunks_mut(d_out).enumerate().for_each(|(r, row)| {
            let mut acc = vec![0u128; d_out];
            let xr = &x_s[r * d_in..(r + 1) * d_in];
            let base = self.plan.stack.matrix_of(r).unwrap_or(0) * d_in * d_out;
            for (k, &xv) in xr.iter().enumerate() {
                let wr = &self.w[base + k * d_out..base + (k + 1) * d_out];
                for (a, &wv) in acc.iter_mut().zip(wr) {
                    // t < 2^62: each product < 2^124, so reduce before adding.
                    *a = (*a + (xv as u128 * wv as u128) % p) % p;
                }
            }
            for ((o, a), &b) in row.iter_mut().zip(acc).zip(&self.bias) {
                *o = ((a + b as u128) % p) as u64;
            }
        });
        y
    }

    /// Server evaluation: returns the circuit-private result ciphertexts (ready to send) and
    /// the server's output share. `x_s = None` means the server holds no share of the input
    /// (the encrypted operand is the client's alone); its share is then b − R.
    pub fn evaluate(
        &self,
        ctx: &HeContext,
        keys: &ServerKeys,
        uploads: &[Ciphertext],
        x_s: Option<&[u64]>,
    ) -> Result<(Vec<Ciphertext>, Vec<u64>)> {
        let plan = &self.plan;
        plan.check_len("uploads", uploads.len(), plan.uploads())?;
        let field = ctx.field();
        let mut share = match x_s {
            Some(x_s) => {
                plan.check_len("server share", x_s.len(), plan.shape.n * plan.shape.d_in)?;
                self.clear_product(field, x_s)
            }
            None => self.bias.repeat(plan.shape.n),
        };
        let outs: Result<Vec<(Ciphertext, Vec<u64>)>> = (0..plan.outputs())
            .into_par_iter()
            .map(|o| {
                let ct = self.eval_output(ctx, keys, uploads, o)?;
                private_return(ctx, &keys.ret, ct, plan.noise_bound, &mut rand::rng())
            })
            .collect();
        let outs = outs?;
        let d_out = plan.shape.d_out;
        let mut cts = Vec::with_capacity(outs.len());
        for (o, (ct, mask_share)) in outs.into_iter().enumerate() {
            for (slot, r, c) in plan.output_positions(o, ctx.slots()) {
                let y = &mut share[r * d_out + c];
                *y = field.add(*y, mask_share[slot]);
            }
            cts.push(ct);
        }
        Ok((cts, share))
    }
}

/// Client: encrypt and send its share in the plan's layout (one flight).
pub fn client_send<R: RngCore + CryptoRng>(
    ch: &mut dyn Channel,
    ctx: &HeContext,
    keys: &ClientKeys,
    plan: &LinearPlan,
    x_c: &[u64],
    _rng: &mut R,
) -> Result<()> {
    ch.set_phase("linear: client upload");
    plan.check_len("client share", x_c.len(), plan.shape.n * plan.shape.d_in)?;
    let cts: Result<Vec<wire::SeededCt>> = (0..plan.uploads())
        .into_par_iter()
        .map(|i| keys.encrypt_seeded(ctx, &plan.upload_slots(x_c, i, ctx.slots()), &mut rand::rng()))
        .collect();
    wire::send_seeded(ch, &cts?)
}

/// Server: receive the client's uploads for `plan`.
pub fn server_recv(ch: &mut dyn Channel, ctx: &HeContext, plan: &LinearPlan) -> Result<Vec<Ciphertext>> {
    ch.set_phase("linear: server receive");
    wire::recv_seeded(ch, ctx, plan.uploads())
}

/// Server: send evaluated results (one flight).
pub fn server_send(ch: &mut dyn Channel, ctx: &HeContext, plan: &LinearPlan, cts: &[Ciphertext]) -> Result<()> {
    ch.set_phase("linear: server return");
    wire::send_full(ch, ctx, cts, plan.return_level)
}

/// Client: receive and decrypt the results into its output share (n × d_out).
pub fn client_recv(ch: &mut dyn Channel, ctx: &HeContext, keys: &ClientKeys, plan: &LinearPlan) -> Result<Vec<u64>> {
    ch.set_phase("linear: client receive");
    let cts = wire::recv_full(ch, ctx, plan.outputs(), plan.return_level)?;
    let dec: Result<Vec<Vec<u64>>> = cts.par_iter().map(|ct| ctx.decrypt(&keys.sk, ct)).collect();
    let field = ctx.field();
    let d_out = plan.shape.d_out;
    let mut y = vec![0u64; plan.shape.n * d_out];
    for (o, slots) in dec?.into_iter().enumerate() {
        for (slot, r, c) in plan.output_positions(o, ctx.slots()) {
            y[r * d_out + c] = field.add(y[r * d_out + c], slots[slot]);
        }
    }
    Ok(y)
}

/// The whole linear layer, server side: returns the server's share of X·W + b.
pub fn linear_server(
    ch: &mut dyn Channel,
    ctx: &HeContext,
    keys: &ServerKeys,
    enc: &EncodedLinear,
    x_s: &[u64],
) -> Result<Vec<u64>> {
    let ups = server_recv(ch, ctx, &enc.plan)?;
    let (cts, share) = enc.evaluate(ctx, keys, &ups, Some(x_s))?;
    server_send(ch, ctx, &enc.plan, &cts)?;
    Ok(share)
}

/// The whole linear layer, client side: returns the client's share of X·W + b.
pub fn linear_client<R: RngCore + CryptoRng>(
    ch: &mut dyn Channel,
    ctx: &HeContext,
    keys: &ClientKeys,
    plan: &LinearPlan,
    x_c: &[u64],
    rng: &mut R,
) -> Result<Vec<u64>> {
    client_send(ch, ctx, keys, plan, x_c, rng)?;
    client_recv(ch, ctx, keys, plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::he::HePreset;

    /// Pure layout check without HE: simulate slot-wise products with the plan's own maps.
    fn simulate(plan: &LinearPlan, x: &[u64], w: &[u64], field: Field, n_slots: usize) -> Vec<u64> {
        let rotate = |v: &[u64], s: usize| -> Vec<u64> {
            let half = n_slots / 2;
            (0..n_slots).map(|i| v[(i / half) * half + (i % half + s) % half]).collect()
        };
        let mut y = vec![0u64; plan.shape.n * plan.shape.d_out];
        for o in 0..plan.outputs() {
            let mut acc = vec![0u64; n_slots];
            for (r2, terms) in plan.terms(o).iter().enumerate() {
                let mut part = vec![0u64; n_slots];
                for &(u, wi) in terms {
                    let us = plan.upload_slots(x, u, n_slots);
                    let ws = plan.weight_slots(w, wi, n_slots);
                    for i in 0..n_slots {
                        part[i] = field.add(part[i], field.mul(us[i], ws[i]));
                    }
                }
                let part = rotate(&part, plan.giant_step(r2));
                for i in 0..n_slots {
                    acc[i] = field.add(acc[i], part[i]);
                }
            }
            for (slot, r, c) in plan.output_positions(o, n_slots) {
                let d = plan.shape.d_out;
                y[r * d + c] = field.add(y[r * d + c], acc[slot]);
            }
        }
        y
    }

    #[test]
    fn layouts_compute_the_matrix_product() {
        let ctx = HeContext::new(&HePreset::linear()).unwrap();
        let f = ctx.field();
        let mut rng = rand::rng();
        for shape in [
            LinearShape { n: 4, d_in: 8, d_out: 5 },
            LinearShape { n: 3, d_in: 70, d_out: 9 },
            LinearShape { n: 40, d_in: 33, d_out: 130 },
        ] {
            let x: Vec<u64> = (0..shape.n * shape.d_in).map(|_| f.random(&mut rng)).collect();
            let w: Vec<u64> = (0..shape.d_in * shape.d_out).map(|_| f.random(&mut rng)).collect();
            let mut expect = vec![0u64; shape.n * shape.d_out];
            for r in 0..shape.n {
                for k in 0..shape.d_in {
                    for c in 0..shape.d_out {
                        let e = &mut expect[r * shape.d_out + c];
                        *e = f.add(*e, f.mul(x[r * shape.d_in + k], w[k * shape.d_out + c]));
                    }
                }
            }
            let mut plans = vec![
                LinearPlan { shape, packing: Packing::Rfcp, layout: LinearPlan::new(&ctx, shape, Packing::Rfcp).unwrap().layout, noise_bound: 0.0, return_level: 0, stack: Stack { matrices: 1, rows_each: shape.n } },
            ];
            // BSGS layouts with every baby-step split (noise is irrelevant here).
            let half = ctx.slots() / 2;
            let tokens_min = shape.n.next_power_of_two();
            let groups = shape.d_in.div_ceil(2).max(shape.d_out).next_power_of_two().min(half / tokens_min);
            let mut n1 = 1;
            while n1 <= groups {
                let tokens = half / groups;
                let layout = Layout::Bsgs {
                    tokens,
                    groups,
                    row_blocks: shape.n.div_ceil(tokens),
                    in_blocks: shape.d_in.div_ceil(2 * groups),
                    out_blocks: shape.d_out.div_ceil(groups),
                    n1,
                    n2: groups / n1,
                };
                plans.push(LinearPlan { shape, packing: Packing::Bsgs, layout, noise_bound: 0.0, return_level: 0, stack: Stack { matrices: 1, rows_each: shape.n } });
                n1 *= 2;
            }
            for plan in &plans {
                assert_eq!(simulate(plan, &x, &w, f, ctx.slots()), expect, "{}", plan.describe());
            }
        }
    }

    #[test]
    fn stacked_layouts_use_each_rows_own_matrix() {
        let ctx = HeContext::new(&HePreset::linear()).unwrap();
        let f = ctx.field();
        let mut rng = rand::rng();
        let (matrices, rows_each, d_in, d_out) = (3, 5, 7, 6);
        let n = matrices * rows_each;
        let x: Vec<u64> = (0..n * d_in).map(|_| f.random(&mut rng)).collect();
        let w: Vec<u64> = (0..matrices * d_in * d_out).map(|_| f.random(&mut rng)).collect();
        let mut expect = vec![0u64; n * d_out];
        for r in 0..n {
            let base = (r / rows_each) * d_in * d_out;
            for k in 0..d_in {
                for c in 0..d_out {
                    let e = &mut expect[r * d_out + c];
                    *e = f.add(*e, f.mul(x[r * d_in + k], w[base + k * d_out + c]));
                }
            }
        }
        for packing in [Packing::Rfcp, Packing::Bsgs] {
            let plan = LinearPlan::stacked(&ctx, matrices, rows_each, d_in, d_out, packing).unwrap();
            assert_eq!(plan.weight_len(), w.len());
            assert_eq!(simulate(&plan, &x, &w, f, ctx.slots()), expect, "{}", plan.describe());
        }
        // Too many rows for one row block is refused, not silently mis-packed.
        assert!(LinearPlan::stacked(&ctx, 3, ctx.slots(), 2, 2, Packing::Bsgs).is_err());
    }
}
