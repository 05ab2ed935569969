//! Private linear layer Y = X·W + b over the ring Z_2^ℓ by coefficient packing: no rotations,
//! no ring↔field conversions.
//!
//! **Paper reference.** Cheetah (Huang et al., USENIX Security 2022) §4.1 "HomFC" (polynomial
//! encoding of matrix products); BumbleBee (Lu et al., NDSS 2025) uses the same encoding for
//! the transformer's linear layers. Used by the FASTLMPI profile in place of the SIMD packings
//! of [`super::simd`].
//!
//! **Functionality.** Inputs: the client's share X_c and the server's share X_s of
//! X ∈ Z_2^ℓ^{n×d_in} (row-major), the server's W ∈ Z^{d_in×d_out} (signed, |w| ≤ 2^wb with a
//! public bound wb, [`CoeffPlan::weight_bits`]) and b ∈ Z^{d_out}. Output: additive shares over
//! Z_2^ℓ of Y = X·W + 1·bᵀ, exact mod 2^ℓ. Several weight sets W_1..W_s of the same shape can
//! be applied to one upload of X (Q, K and V). The server may also hold no share of X
//! (`x_s = None`, for the attention cross terms, where W is the server's own share).
//!
//! **Encoding.** BFV with plaintext modulus t = 2^ℓ (the shares' ring), N = 8192. X is cut into
//! blocks of n_w × k_w, W into k_w × m_w with n_w·k_w·m_w ≤ N:
//! x̂ = Σ X[i,j]·X^(i·k_w·m_w + j), ŵ = Σ W[j,o]·X^(o·k_w + k_w − 1 − j). In x̂·ŵ mod X^N + 1,
//! coefficient i·k_w·m_w + o·k_w + k_w − 1 is Σ_j X[i,j]·W[j,o]; every other product lands at an
//! offset ≠ k_w − 1 inside some (i, o) cell (a negacyclic wrap only reaches offsets < k_w − 1
//! of cell (0, 0)), so the wanted coefficients are exact. Output block (r, b) is
//! Σ_a x̂_{r,a}·ŵ_{a,b}, one lazy dot product over the ⌈d_in/k_w⌉ input blocks.
//!
//! **Returned results are packed.** A result block's wanted coefficients all sit on one residue
//! class mod k_w (≡ k_w − 1), so for any power of two g dividing k_w (g ≤ 64) the server merges
//! g result blocks into one ciphertext before returning it ([`crate::he::galois`]: automorphisms
//! with hybrid key switching, g − 1 per g blocks; the client sends the keys once at setup).
//! Member r's class lands on class ρ(r) mod g (ρ = bit reversal), so its cell (i, o) is read at
//! i·k_w·m_w + o·k_w + ρ(r); the other coefficients of its class come along, masked like every
//! coefficient. One c1 then serves g blocks instead of one: per output element the download
//! falls from (N + n_w·m_w)·53/8 / (n_w·m_w) bytes to (N/g + n_w·m_w)·53/8 / (n_w·m_w). A block
//! with a single result is never packed (nothing to share).
//!
//! **Block rule.** [`CoeffPlan::for_uses`] takes, over n_w ∈ {⌈n/r⌉}, k_w ≤ min(d_in, N/n_w),
//! m_w = min(d_out, ⌊N/(n_w·k_w)⌋) (then balanced to ⌈d/blocks⌉, so non-power-of-two lengths
//! cost what they need) and every pack width g the blocks allow, the choice minimising the
//! estimated time of the calls that use the shape in one layer on BOLT's WAN link with this
//! machine's two cores: single-core ms / 2 + bytes / 25,000 bytes per ms (200 Mbit/s); `uses`
//! lists the weight sets per upload (BERT's hidden × hidden shape serves Q, K, V on one upload
//! plus the attention output, `[3, 1]`; every other shape `[1]`). The single-core time is
//! uploads·2.4 ms + returned ciphertexts·3.8 ms + packed results·0.9 ms + key switches·2.9 ms
//! + products·0.095 ms + weight polynomials·0.27 ms (encoded per call), unit costs measured on
//! one core of this project's 2-core machine at N = 8192 with three moduli (client encryption
//! + server decoding; circuit-private return + compaction + the client's one-modulus
//! decryption; a member's scaling and shifts in a pack; one automorphism with key switching;
//! one ct×pt term; one weight polynomial to NTT form;
//! `RAYON_NUM_THREADS=1 cargo test --release --lib unit_costs -- --ignored --nocapture`).
//! A bytes × time product, the earlier rule, picks the widest packing everywhere now that
//! returns are cheap in bytes (measured on mpnet-base at 128 tokens: 73.6 MiB but 40.3 s per
//! layer), and the same rule on BOLT's 3 Gbit/s LAN keeps twice the uploads (> 200 MiB);
//! the WAN rule measured 178 MiB and 21.2 s. For n = 128 it gives 768×768 → n_w = 64,
//! k_w = 16, m_w = 8, g = 16; 768×3072 → n_w = 32, k_w = m_w = 16, g = 16; 3072×768 →
//! n_w = 32, k_w = 64, m_w = 4, g = 64; for 7 tokens and 384×384, n_w = 7, k_w = 48, m_w = 24,
//! g = 16.
//!
//! **Message flow.** (setup, once: client → server public key; no Galois keys)
//! 1. client → server: seeded secret-key encryptions of the x̂ blocks of X_c (one flight);
//! 2. server: Y_s = X_s·W + b in the clear (mod 2^ℓ); Enc(X_c·W) by ct×pt products with
//!    *centred* weight polynomials in NTT form; the result blocks are packed g to a ciphertext
//!    and each returned ciphertext goes through the circuit-private return of `he::privacy`
//!    (uniform mask on all N coefficients, fresh Enc_pk(0), flooding, switch down to one
//!    modulus);
//! 3. server → client: per returned ciphertext c1 in full and c0 only at the g·n_w·m_w wanted coefficients,
//!    both switched from the 62-bit return modulus to the 53-bit prime of [`crate::he::narrow`]
//!    ([`crate::he::wire::compact_result`]). Each flight opens with a 16-byte (level, size)
//!    header that the receiver checks before reading. The client's share is the decryption at those
//!    coefficients ([`ClientKeys::decrypt_compact`]: one modulus, only the wanted positions), the
//!    server's Y_s − R. Two flights, one round trip, for any number of
//!    weight sets.
//!
//! **Valid input domain / error.** Exact mod 2^ℓ for any shares; the only condition is the
//! public weight bound |w| ≤ 2^wb, checked by the server (an error otherwise).
//!
//! **Noise and parameters.** A fresh encryption has noise |e| ≤ 21 (CBD, σ² = 10, plus the
//! < 1 encoding offset of (Q·m − [Q·m]_t)/t); one ct×pt with a centred plaintext of
//! coefficients ≤ 2^wb adds at most N·21·2^wb per coefficient, so a result has
//! V = ⌈d_in/k_w⌉·N·21·2^wb (independent of X: the message wraps mod t exactly because the
//! encoding scales by Q/t). A pack of g = 2^L results keeps each member's data noise and adds
//! the key switches' E·(4^L − 1)/3 with E ≈ 2^44.9 ([`crate::he::galois`]), so the bound is
//! V + E·(4^L − 1)/3 (≤ 2^55.3 + V for g = 64). Flooding is 2^f with f = ⌈log2 bound⌉ + 40 + 16
//! + log2 N (`he::privacy`: 40 statistical bits over a key's whole budget of 2^16 returns).
//! With wb = 20, d_in = 3072 and g = 64 that is f = 124; for the attention cross terms
//! (uniform shares, wb = 39, inner dimension ≤ 512) f ≤ 129. Decryption after the switch to
//! the last modulus needs log2 Q > f + 4 + ℓ, hence [`crate::he::HePreset::coefficient`]:
//! N = 8192, Q = 62 + 60 + 60 = 182 bits (≤ 218, the 128-bit bound; N = 4096 allows only 109
//! bits and cannot flood), which covers f ≤ 137, i.e. every BERT-base and BERT-large shape up
//! to 512 tokens (`tests/linear_coeff.rs` plans them all); results are switched down to the
//! 62-bit modulus and then, for the wire, to a 53-bit prime q' (`he::narrow`: the decryption
//! needs only q'/(2t) ≥ 2^12 above the scaled flooding and the switch's rounding).
//!
//! **Bytes.** Upload: N·182/8 + 32 = 186,400 bytes per x̂ block; download per returned
//! ciphertext: N·53/8 + ⌈g·n_w·m_w·53/8⌉ (c1 plus the wanted c0 coefficients at q'), 108,544
//! bytes when the g blocks fill the ring (g·n_w·m_w = N).
//! Per element of X: 186,400/(n_w·k_w); per element of Y: 108,544/N ≈ 13.3 when packed full
//! (61,056/(n_w·m_w) for one unpacked block of n_w·m_w = 1024). Setup: the packing keys,
//! 4,018,752 bytes once per client key. Measured per encoder layer of mpnet-base at 128 tokens
//! (the six products): 178 MiB and 21.2 s (248 MiB, 22.0 s unpacked).
//!
//! **Security (semi-honest).** The server sees only seeded RLWE encryptions under the client's
//! key and its packing keys (IND-CPA, with the circular-security assumption every Galois key
//! makes). The client receives, per returned ciphertext, the compaction of a ciphertext whose
//! every coefficient is a (packed) value of X_c·W plus R, R uniform over Z_2^ℓ on every
//! coefficient, re-randomised by a fresh public-key encryption of zero (hiding c1 = Σ a·ŵ and
//! the key switches' c1) and with ≥ 2^40·N × the worst-case data-dependent noise (products and
//! key switches) added to c0, then switched down; it is within statistical distance 2^−40 of a
//! simulation from uniform R alone. Dropping coefficients of c0 and the switch to q' are public functions of that ciphertext. The
//! server's share Y_s − R is independent of X_c.

use std::borrow::Cow;

use fhe::bfv::Ciphertext;
use fhe_math::rq::traits::TryConvertFrom;
use fhe_math::rq::{dot_product, Poly, Representation};
use ndarray::Array2;
use rand::{CryptoRng, RngCore};
use rayon::prelude::*;

use super::simd::LinearShape;
use crate::error::{Error, Result};
use crate::he::galois;
use crate::he::privacy::{ct_pt_sum_bound, private_return_parts, return_level};
use crate::he::{wire, ClientKeys, HeContext, ServerKeys};
use crate::net::Channel;
use crate::share::Field;

/// Public bound on |w| (fixed point) for model weights: 2^20, i.e. |w| < 256 at 12 fraction bits.
pub const MODEL_WEIGHT_BITS: u32 = 20;

/// Unit costs of the block rule (ms, one core, N = 8192 with three moduli).
const UPLOAD_MS: f64 = 2.4;
const OUTPUT_MS: f64 = 3.8;
const PRODUCT_MS: f64 = 0.095;
const ENCODE_MS: f64 = 0.27;
/// One automorphism with key switching, and the per-member scaling of a pack (`he::galois`).
const SWITCH_MS: f64 = 2.9;
const PACK_MEMBER_MS: f64 = 0.9;
/// The rule's reference link and machine: BOLT's WAN (200 Mbit/s = 25,000 bytes per ms) and
/// this project's 2 cores.
const LINK_BYTES_PER_MS: f64 = 25_000.0;
const CORES: f64 = 2.0;
/// Terms per lazy dot-product chunk (bounds transient memory when weights are encoded per call).
const CHUNK_TERMS: usize = 32;

/// Block sizes: X in n_w × k_w blocks, W in k_w × m_w blocks, n_w·k_w·m_w ≤ N.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Blocks {
    pub n_w: usize,
    pub k_w: usize,
    pub m_w: usize,
}

/// Everything both parties derive identically from the public shape.
#[derive(Clone, Debug, PartialEq)]
pub struct CoeffPlan {
    pub shape: LinearShape,
    pub blocks: Blocks,
    /// Public bound: every weight satisfies |w| ≤ 2^weight_bits.
    pub weight_bits: u32,
    /// Worst-case data-dependent noise of a result ciphertext (drives flooding).
    pub noise_bound: f64,
    /// Level at which results are returned (a single modulus).
    pub return_level: usize,
    /// Results are returned packed 2^pack_bits to a ciphertext ([`crate::he::galois`]); 0: one each.
    pub pack_bits: u32,
}

impl CoeffPlan {
    /// The plan with the blocks chosen by the rule of the module header, for a shape used by
    /// one call with one weight set.
    pub fn new(ctx: &HeContext, shape: LinearShape, weight_bits: u32) -> Result<CoeffPlan> {
        Self::for_uses(ctx, shape, weight_bits, &[1])
    }

    /// The plan for a shape used by several calls per layer, `uses[i]` weight sets sharing the
    /// upload of call i (BERT's hidden × hidden shape: Q, K and V on one upload, then the
    /// attention output: `&[3, 1]`); the rule weighs the calls' bytes and time together.
    pub fn for_uses(ctx: &HeContext, shape: LinearShape, weight_bits: u32, uses: &[usize]) -> Result<CoeffPlan> {
        check_shape(ctx, shape)?;
        let (blocks, pack_bits) = best_blocks(ctx, shape, uses)?;
        Self::with_packing(ctx, shape, blocks, pack_bits, weight_bits)
    }

    /// A plan with given blocks and the widest packing they allow (tests and benchmarks).
    pub fn with_blocks(ctx: &HeContext, shape: LinearShape, blocks: Blocks, weight_bits: u32) -> Result<CoeffPlan> {
        let results = shape.n.div_ceil(blocks.n_w.max(1)) * shape.d_out.div_ceil(blocks.m_w.max(1));
        Self::with_packing(ctx, shape, blocks, max_pack_bits(blocks, results), weight_bits)
    }

    /// A plan with given blocks returning 2^`pack_bits` results per ciphertext (2^pack_bits
    /// must divide k_w; 0: unpacked).
    pub fn with_packing(ctx: &HeContext, shape: LinearShape, blocks: Blocks, pack_bits: u32, weight_bits: u32) -> Result<CoeffPlan> {
        check_shape(ctx, shape)?;
        if !ctx.is_coefficient() {
            return Err(Error::Config("coefficient packing needs a coefficient-encoding HE context".into()));
        }
        let Blocks { n_w, k_w, m_w } = blocks;
        if n_w == 0 || k_w == 0 || m_w == 0 || n_w.saturating_mul(k_w).saturating_mul(m_w) > ctx.degree() {
            return Err(Error::Config(format!("blocks {blocks:?} do not fit N = {}", ctx.degree())));
        }
        if weight_bits >= 62 {
            return Err(Error::Config(format!("weight bound 2^{weight_bits} too large")));
        }
        let terms = shape.d_in.div_ceil(k_w);
        if pack_bits > max_pack_bits(blocks, usize::MAX) {
            return Err(Error::Config(format!("blocks {blocks:?} cannot pack 2^{pack_bits} results")));
        }
        let products = ct_pt_sum_bound(ctx, terms, (weight_bits as f64).exp2(), ctx.fresh_noise());
        let noise_bound = galois::pack_noise(ctx, pack_bits, products)?;
        let level = return_level(ctx, 0, noise_bound)?;
        if level != ctx.max_level() {
            return Err(Error::He(format!("flooding for noise 2^{:.1} leaves no single-modulus return", noise_bound.log2())));
        }
        Ok(CoeffPlan { shape, blocks, weight_bits, noise_bound, return_level: level, pack_bits })
    }

    fn row_blocks(&self) -> usize {
        self.shape.n.div_ceil(self.blocks.n_w)
    }
    fn in_blocks(&self) -> usize {
        self.shape.d_in.div_ceil(self.blocks.k_w)
    }
    fn out_blocks(&self) -> usize {
        self.shape.d_out.div_ceil(self.blocks.m_w)
    }
    /// Client uploads (seeded ciphertexts) per call.
    pub fn uploads(&self) -> usize {
        self.row_blocks() * self.in_blocks()
    }
    /// Result blocks (products before packing) per weight set.
    pub fn results(&self) -> usize {
        self.row_blocks() * self.out_blocks()
    }
    /// Results packed into one returned ciphertext.
    pub fn pack(&self) -> usize {
        1 << self.pack_bits
    }
    /// Returned ciphertexts per weight set.
    pub fn outputs(&self) -> usize {
        self.results().div_ceil(self.pack())
    }
    /// Encoded weight polynomials per weight set.
    pub fn weight_polys(&self) -> usize {
        self.in_blocks() * self.out_blocks()
    }
    /// ct×pt products per weight set.
    pub fn products(&self) -> usize {
        self.row_blocks() * self.weight_polys()
    }
    /// Bytes of one weight set's encoded polynomials (NTT form at the top level).
    pub fn weight_bytes(&self, ctx: &HeContext) -> usize {
        self.weight_polys().saturating_mul(ctx.degree() * ctx.params().moduli().len() * 8)
    }
    /// Bytes of the client's upload.
    pub fn upload_bytes(&self, ctx: &HeContext) -> Result<usize> {
        Ok(self.uploads() * wire::seeded_len(ctx)?)
    }
    /// Bytes of the results for one weight set.
    pub fn download_bytes(&self, ctx: &HeContext) -> Result<usize> {
        Ok(self.outputs() * wire::compact_len(ctx, self.positions().len())?)
    }
    pub fn describe(&self) -> String {
        let Blocks { n_w, k_w, m_w } = self.blocks;
        format!("coeff n_w={n_w} k_w={k_w} m_w={m_w} pack={}", self.pack())
    }

    /// The coefficients of a result block that hold its cells, cell (i, o) at index i·m_w + o.
    fn raw_positions(&self) -> Vec<usize> {
        let Blocks { n_w, k_w, m_w } = self.blocks;
        (0..n_w).flat_map(|i| (0..m_w).map(move |o| i * k_w * m_w + o * k_w + k_w - 1)).collect()
    }

    /// The coefficients of a returned ciphertext the client reads: unpacked, the result block's
    /// cells; packed, member r's cell (i, o) at index r·n_w·m_w + i·m_w + o, found at
    /// i·k_w·m_w + o·k_w + ρ(r) (the packing moves class k_w − 1 to class ρ(r)).
    pub fn positions(&self) -> Vec<usize> {
        if self.pack_bits == 0 {
            return self.raw_positions();
        }
        let Blocks { n_w, k_w, m_w } = self.blocks;
        let bits = self.pack_bits;
        (0..self.pack())
            .flat_map(|r| (0..n_w).flat_map(move |i| (0..m_w).map(move |o| i * k_w * m_w + o * k_w + galois::class_of(r, bits))))
            .collect()
    }

    /// Coefficients of upload `idx` = (row block r, input block a) from X (n × d_in, mod t).
    fn upload_coeffs(&self, x: &[u64], idx: usize, degree: usize) -> Vec<u64> {
        let Blocks { n_w, k_w, m_w } = self.blocks;
        let LinearShape { n, d_in, .. } = self.shape;
        let (r, a) = (idx / self.in_blocks(), idx % self.in_blocks());
        let mut c = vec![0u64; degree];
        for i in 0..n_w.min(n - r * n_w) {
            let row = (r * n_w + i) * d_in;
            for j in 0..k_w.min(d_in - a * k_w) {
                c[i * k_w * m_w + j] = x[row + a * k_w + j];
            }
        }
        c
    }

    /// The non-zero coefficients (position, centred value) of weight polynomial `widx` =
    /// (input block a, output block b): all within the first k_w·m_w positions.
    fn weight_terms<'a>(&self, w: &'a [i64], widx: usize) -> impl Iterator<Item = (usize, i64)> + 'a {
        let Blocks { k_w, m_w, .. } = self.blocks;
        let LinearShape { d_in, d_out, .. } = self.shape;
        let (a, b) = (widx / self.out_blocks(), widx % self.out_blocks());
        (0..k_w.min(d_in - a * k_w)).flat_map(move |j| {
            let row = (a * k_w + j) * d_out;
            (0..m_w.min(d_out - b * m_w)).map(move |o| (o * k_w + k_w - 1 - j, w[row + b * m_w + o]))
        })
    }

    /// Centred coefficients of weight polynomial `widx` (all N of them).
    #[cfg(test)]
    fn weight_coeffs(&self, w: &[i64], widx: usize, degree: usize) -> Vec<i64> {
        let mut c = vec![0i64; degree];
        for (pos, v) in self.weight_terms(w, widx) {
            c[pos] = v;
        }
        c
    }

    /// (index into the raw positions, row, column) of every real output of result block `o`.
    fn raw_cells(&self, o: usize) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        let Blocks { n_w, m_w, .. } = self.blocks;
        let LinearShape { n, d_out, .. } = self.shape;
        let (r, b) = (o / self.out_blocks(), o % self.out_blocks());
        (0..n_w).flat_map(move |i| (0..m_w).map(move |c| (i, c))).filter_map(move |(i, c)| {
            let (row, col) = (r * n_w + i, b * m_w + c);
            (row < n && col < d_out).then_some((i * m_w + c, row, col))
        })
    }

    /// (index into [`CoeffPlan::positions`], row, column) of every real output in returned
    /// ciphertext `k`.
    fn output_cells(&self, k: usize) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        let per = self.blocks.n_w * self.blocks.m_w;
        let g = self.pack();
        (k * g..((k + 1) * g).min(self.results())).flat_map(move |o| self.raw_cells(o).map(move |(p, row, col)| ((o % g) * per + p, row, col)))
    }

    /// The (upload, weight polynomial) pairs summed for result block `o`.
    #[cfg(test)]
    fn terms(&self, o: usize) -> Vec<(usize, usize)> {
        let (r, b) = (o / self.out_blocks(), o % self.out_blocks());
        (0..self.in_blocks()).map(|a| (r * self.in_blocks() + a, a * self.out_blocks() + b)).collect()
    }

    fn check_len(&self, what: &str, got: usize, want: usize) -> Result<()> {
        if got != want {
            return Err(Error::Shape { tensor: what.into(), expected: vec![want], got: vec![got] });
        }
        Ok(())
    }
}

fn check_shape(ctx: &HeContext, shape: LinearShape) -> Result<()> {
    if shape.n == 0 || shape.d_in == 0 || shape.d_out == 0 {
        return Err(Error::Input(format!("empty linear shape {shape:?}")));
    }
    if shape.n.max(shape.d_in).max(shape.d_out) > 1 << 20 {
        return Err(Error::Input(format!("linear shape {shape:?} too large")));
    }
    if !ctx.is_coefficient() {
        return Err(Error::Config("coefficient packing needs a coefficient-encoding HE context".into()));
    }
    Ok(())
}

/// The widest packing of `results` result blocks: 2^L must divide k_w (the wanted coefficients
/// then share one class mod 2^L) and there must be two results to share a ciphertext.
fn max_pack_bits(blocks: Blocks, results: usize) -> u32 {
    if results < 2 {
        0
    } else {
        blocks.k_w.trailing_zeros().min(galois::MAX_PACK_BITS)
    }
}

/// Key switches to pack `results` results 2^bits at a time: g − 1 per full group, and for the
/// last group of c members Σ_l ⌈c/2^l⌉.
fn switches(results: usize, bits: u32) -> usize {
    let g = 1usize << bits;
    let c = results % g;
    (results / g) * (g - 1) + (1..=bits).map(|l| c.div_ceil(1 << l)).sum::<usize>()
}

/// `count` split into the fewest blocks of at most `cap`, balanced: ⌈count / ⌈count/cap⌉⌉.
fn balanced(count: usize, cap: usize) -> usize {
    count.div_ceil(count.div_ceil(cap.max(1)))
}

/// The block rule of the module header: minimise bytes × estimated time over the calls `uses`.
fn best_blocks(ctx: &HeContext, shape: LinearShape, uses: &[usize]) -> Result<(Blocks, u32)> {
    if uses.is_empty() || uses.contains(&0) {
        return Err(Error::Config("a coefficient plan needs at least one call with one weight set".into()));
    }
    let (calls, sets) = (uses.len() as f64, uses.iter().sum::<usize>() as f64);
    let n_deg = ctx.degree();
    let up = wire::seeded_len(ctx)? as f64;
    let mut row_choices: Vec<usize> = (1..=shape.n).map(|r| shape.n.div_ceil(r)).filter(|&w| w <= n_deg).collect();
    row_choices.dedup();
    let mut best: Option<(f64, (Blocks, u32))> = None;
    for n_w in row_choices {
        for k_cap in 1..=shape.d_in.min(n_deg / n_w) {
            let k_w = balanced(shape.d_in, k_cap);
            if k_w != k_cap {
                continue; // the same block count is reached with the balanced width
            }
            let m_w = balanced(shape.d_out, n_deg / (n_w * k_w));
            let (rb, kb, mb) = (shape.n.div_ceil(n_w), shape.d_in.div_ceil(k_w), shape.d_out.div_ceil(m_w));
            let blocks = Blocks { n_w, k_w, m_w };
            let per_set = rb * mb;
            for bits in 0..=max_pack_bits(blocks, per_set) {
                let g = 1usize << bits;
                let (uploads, outputs, polys) = (calls * (rb * kb) as f64, sets * per_set.div_ceil(g) as f64, sets * (kb * mb) as f64);
                let down = wire::compact_len(ctx, g * n_w * m_w)? as f64;
                let bytes = uploads * up + outputs * down;
                let packing = if bits > 0 { sets * (per_set as f64 * PACK_MEMBER_MS + switches(per_set, bits) as f64 * SWITCH_MS) } else { 0.0 };
                let ms = uploads * UPLOAD_MS + outputs * OUTPUT_MS + packing + polys * (rb as f64 * PRODUCT_MS + ENCODE_MS);
                let cost = ms / CORES + bytes / LINK_BYTES_PER_MS;
                if best.is_none_or(|(c, _)| cost < c) {
                    best = Some((cost, (blocks, bits)));
                }
            }
        }
    }
    best.map(|(_, b)| b).ok_or_else(|| Error::Config(format!("no coefficient blocks for {shape:?}")))
}

/// Server-side weights of one plan: W (centred), b (mod t) and, when they fit the cache limit,
/// every weight polynomial pre-encoded in NTT form.
pub struct EncodedCoeff {
    pub plan: CoeffPlan,
    w: Vec<i64>,
    bias: Vec<u64>,
    cache: Option<Vec<Poly>>,
}

impl EncodedCoeff {
    /// `w` is d_in × d_out row-major signed fixed point with |w| ≤ 2^plan.weight_bits, `bias`
    /// d_out values at the output scale. Polynomials are pre-encoded when they fit `cache_bytes`.
    pub fn new(ctx: &HeContext, plan: CoeffPlan, w: &[i64], bias: Option<&[i64]>, cache_bytes: usize) -> Result<EncodedCoeff> {
        let LinearShape { d_in, d_out, .. } = plan.shape;
        plan.check_len("weights", w.len(), d_in * d_out)?;
        let limit = 1i64 << plan.weight_bits;
        if let Some(bad) = w.iter().find(|v| v.unsigned_abs() > limit as u64) {
            return Err(Error::Input(format!("weight {bad} exceeds the public bound 2^{}", plan.weight_bits)));
        }
        let field = ctx.field();
        let bias: Vec<u64> = match bias {
            Some(b) => {
                plan.check_len("bias", b.len(), d_out)?;
                b.iter().map(|&v| field.from_signed(v)).collect()
            }
            None => vec![0; d_out],
        };
        let mut enc = EncodedCoeff { plan, w: w.to_vec(), bias, cache: None };
        if enc.plan.weight_bytes(ctx) <= cache_bytes {
            let polys: Result<Vec<Poly>> = (0..enc.plan.weight_polys()).into_par_iter().map(|i| enc.encode(ctx, i)).collect();
            enc.cache = Some(polys?);
        }
        Ok(enc)
    }

    /// Weights given as ring elements mod t (a share of the other attention operand), centred.
    pub fn from_ring(ctx: &HeContext, plan: CoeffPlan, w: &[u64], cache_bytes: usize) -> Result<EncodedCoeff> {
        let field = ctx.field();
        let centred: Vec<i64> = w.iter().map(|&v| field.to_signed(v)).collect();
        Self::new(ctx, plan, &centred, None, cache_bytes)
    }

    pub fn is_cached(&self) -> bool {
        self.cache.is_some()
    }
    /// Bytes of pre-encoded polynomials held.
    pub fn cached_bytes(&self, ctx: &HeContext) -> usize {
        if self.is_cached() {
            self.plan.weight_bytes(ctx)
        } else {
            0
        }
    }
    /// Whether these are the weights `w` and bias `bias` (as given to [`EncodedCoeff::new`]).
    pub fn same_weights(&self, ctx: &HeContext, w: &[i64], bias: &[i64]) -> bool {
        let f = ctx.field();
        self.w == w && self.bias.len() == bias.len() && self.bias.iter().zip(bias).all(|(&a, &b)| a == f.from_signed(b))
    }

    /// Weight polynomial `widx` in NTT form at the top level. Its residues are written
    /// directly, only at its k_w·m_w non-zero positions, before one forward transform per
    /// modulus.
    fn encode(&self, ctx: &HeContext, widx: usize) -> Result<Poly> {
        let top = ctx.params().context_at_level(0)?;
        let moduli = top.moduli();
        let mut residues = Array2::<u64>::zeros((moduli.len(), ctx.degree()));
        for (pos, v) in self.plan.weight_terms(&self.w, widx) {
            for (row, &q) in moduli.iter().enumerate() {
                // q < 2^63, so it is a positive i64.
                residues[[row, pos]] = v.rem_euclid(q as i64) as u64;
            }
        }
        let mut p = Poly::try_convert_from(residues, top, false, Representation::PowerBasis)?;
        p.change_representation(Representation::Ntt);
        Ok(p)
    }
    fn weight(&self, ctx: &HeContext, widx: usize) -> Result<Cow<'_, Poly>> {
        match &self.cache {
            Some(c) => Ok(Cow::Borrowed(&c[widx])),
            None => Ok(Cow::Owned(self.encode(ctx, widx)?)),
        }
    }

    /// Enc(X_c·W) for result block `o`, before the circuit-private return (noise ≤ plan.noise_bound).
    pub fn raw_output(&self, ctx: &HeContext, uploads: &[Ciphertext], o: usize) -> Result<Ciphertext> {
        let (r, b) = (o / self.plan.out_blocks(), o % self.plan.out_blocks());
        self.raw_column(ctx, uploads, b)?.into_iter().nth(r).ok_or_else(|| Error::He("no such result block".into()))
    }

    /// Returned ciphertext `k` before the circuit-private return: result block k unpacked, or
    /// the pack of result blocks k·g .. k·g + g − 1 (noise ≤ plan.noise_bound either way).
    pub fn returned(&self, ctx: &HeContext, packing: Option<&galois::PackingKeys>, raw: impl Fn(usize) -> Ciphertext, k: usize) -> Result<Ciphertext> {
        let plan = &self.plan;
        if plan.pack_bits == 0 {
            return Ok(raw(k));
        }
        let packing = packing.ok_or_else(|| Error::He("packed results need the client's packing keys".into()))?;
        let members = (k * plan.pack()..(k + 1) * plan.pack()).map(|o| (o < plan.results()).then(|| raw(o))).collect();
        packing.pack(ctx, members, plan.blocks.k_w - 1)
    }

    /// Enc(X_c·W) for output column block `b` and every row block, encoding (when not
    /// cached) each weight polynomial of the column once, chunk by chunk.
    fn raw_column(&self, ctx: &HeContext, uploads: &[Ciphertext], b: usize) -> Result<Vec<Ciphertext>> {
        let (rb, kb, mb) = (self.plan.row_blocks(), self.plan.in_blocks(), self.plan.out_blocks());
        let mut acc: Vec<Option<Ciphertext>> = vec![None; rb];
        let blocks: Vec<usize> = (0..kb).collect();
        for chunk in blocks.chunks(CHUNK_TERMS) {
            let ws: Vec<Cow<'_, Poly>> = chunk.iter().map(|&a| self.weight(ctx, a * mb + b)).collect::<Result<_>>()?;
            for (r, slot) in acc.iter_mut().enumerate() {
                let part = |i: usize| dot_product(chunk.iter().map(|&a| &uploads[r * kb + a][i]), ws.iter().map(|w| w.as_ref()));
                let ct = Ciphertext::new(vec![part(0)?, part(1)?], ctx.params())?;
                *slot = Some(match slot.take() {
                    None => ct,
                    Some(prev) => &prev + &ct,
                });
            }
        }
        acc.into_iter().map(|c| c.ok_or_else(|| Error::He("empty dot product".into()))).collect()
    }

    /// X_s·W + b mod t, row-major n × d_out (t = 2^ℓ divides 2^64, so wrapping u64 arithmetic
    /// reduced at the end is exact).
    fn clear_product(&self, field: Field, x_s: &[u64]) -> Vec<u64> {
        let LinearShape { n, d_in, d_out } = self.plan.shape;
        let mut y = vec![0u64; n * d_out];
        y.par_chunks_mut(d_out).enumerate().for_each(|(r, row)| {
            row.copy_from_slice(&self.bias);
            for (k, &xv) in x_s[r * d_in..(r + 1) * d_in].iter().enumerate() {
                for (acc, &wv) in row.iter_mut().zip(&self.w[k * d_out..(k + 1) * d_out]) {
                    *acc = acc.wrapping_add(xv.wrapping_mul(wv as u64));
                }
            }
            for v in row.iter_mut() {
                *v = field.reduce(*v);
            }
        });
        y
    }

    /// Server evaluation: the result ciphertexts (masked, flooded, switched down) and the
    /// server's output share (X_s·W + b − R, or b − R without a share of X).
    pub fn evaluate(&self, ctx: &HeContext, keys: &ServerKeys, uploads: &[Ciphertext], x_s: Option<&[u64]>) -> Result<(Vec<wire::CompactResult>, Vec<u64>)> {
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
        let positions = plan.positions();
        let columns: Vec<Vec<Ciphertext>> = (0..plan.out_blocks()).into_par_iter().map(|b| self.raw_column(ctx, uploads, b)).collect::<Result<_>>()?;
        // Result block o = r·out_blocks + b; returned ciphertext k packs results k·g .. k·g + g − 1.
        let mb = plan.out_blocks();
        let outs: Result<Vec<(wire::CompactResult, Vec<u64>)>> = (0..plan.outputs())
            .into_par_iter()
            .map(|k| {
                let ct = self.returned(ctx, keys.packing.as_ref(), |o| columns[o % mb][o / mb].clone(), k)?;
                let (parts, minus_r) = private_return_parts(ctx, &keys.ret, ct, plan.noise_bound, &mut rand::rng())?;
                Ok((wire::compact_result(ctx, &parts, &positions)?, minus_r))
            })
            .collect();
        let d_out = plan.shape.d_out;
        let mut cts = Vec::with_capacity(plan.outputs());
        for (k, (ct, minus_r)) in outs?.into_iter().enumerate() {
            for (p, row, col) in plan.output_cells(k) {
                let y = &mut share[row * d_out + col];
                *y = field.add(*y, minus_r[positions[p]]);
            }
            cts.push(ct);
        }
        Ok((cts, share))
    }
}

/// Every flight starts with (level, byte count), so ciphertexts of the wrong level or size
/// from the peer are refused with a clear error before anything is read or parsed.
fn send_header(ch: &mut dyn Channel, level: usize, bytes: usize) -> Result<()> {
    ch.send_u64(level as u64)?;
    ch.send_u64(bytes as u64)
}

fn expect_header(ch: &mut dyn Channel, what: &str, level: usize, bytes: usize) -> Result<()> {
    let (got_level, got_bytes) = (ch.recv_u64()?, ch.recv_u64()?);
    if got_level != level as u64 {
        return Err(Error::protocol(what, format!("ciphertexts at level {got_level}, expected level {level}")));
    }
    if got_bytes != bytes as u64 {
        return Err(Error::protocol(what, format!("{got_bytes} bytes of ciphertexts announced, expected {bytes}")));
    }
    Ok(())
}

/// Client: encrypt its share X_c (n × d_in, mod t) in the plan's blocks and send it (one flight).
pub fn client_send(ch: &mut dyn Channel, ctx: &HeContext, keys: &ClientKeys, plan: &CoeffPlan, x_c: &[u64]) -> Result<()> {
    ch.set_phase("linear: client upload");
    plan.check_len("client share", x_c.len(), plan.shape.n * plan.shape.d_in)?;
    let cts: Result<Vec<wire::SeededCt>> = (0..plan.uploads())
        .into_par_iter()
        .map(|i| keys.encrypt_seeded(ctx, &plan.upload_coeffs(x_c, i, ctx.degree()), &mut rand::rng()))
        .collect();
    send_header(ch, 0, plan.upload_bytes(ctx)?)?;
    wire::send_seeded(ch, &cts?)?;
    ch.flush()
}

/// Server: receive the client's upload for `plan`.
pub fn server_recv(ch: &mut dyn Channel, ctx: &HeContext, plan: &CoeffPlan) -> Result<Vec<Ciphertext>> {
    ch.set_phase("linear: server receive");
    expect_header(ch, "linear upload", 0, plan.upload_bytes(ctx)?)?;
    wire::recv_seeded(ch, ctx, plan.uploads())
}

/// Server: send one weight set's results (compact form).
pub fn server_send(ch: &mut dyn Channel, ctx: &HeContext, plan: &CoeffPlan, cts: &[wire::CompactResult]) -> Result<()> {
    ch.set_phase("linear: server return");
    send_header(ch, plan.return_level, plan.download_bytes(ctx)?)?;
    wire::send_compact(ch, ctx, cts)
}

/// Client: receive one weight set's results and decrypt them into its share (n × d_out).
pub fn client_recv(ch: &mut dyn Channel, ctx: &HeContext, keys: &ClientKeys, plan: &CoeffPlan) -> Result<Vec<u64>> {
    ch.set_phase("linear: client receive");
    expect_header(ch, "linear result", plan.return_level, plan.download_bytes(ctx)?)?;
    let cts = wire::recv_compact_parts(ch, ctx, plan.outputs(), plan.positions().len())?;
    decrypt_results(ctx, keys, plan, &cts)
}

/// The client's share (n × d_out) from one weight set's result ciphertexts.
fn decrypt_results(ctx: &HeContext, keys: &ClientKeys, plan: &CoeffPlan, cts: &[wire::CompactCt]) -> Result<Vec<u64>> {
    let positions = plan.positions();
    let dec: Result<Vec<Vec<u64>>> = cts.par_iter().map(|ct| keys.decrypt_compact(ctx, ct, &positions)).collect();
    let d_out = plan.shape.d_out;
    let mut y = vec![0u64; plan.shape.n * d_out];
    for (o, coeffs) in dec?.into_iter().enumerate() {
        for (p, row, col) in plan.output_cells(o) {
            y[row * d_out + col] = coeffs[p];
        }
    }
    Ok(y)
}

/// Server side of `sets.len()` products X·W_i (+ b_i) sharing one upload of X: returns the
/// server's share of each.
pub fn coeff_server(ch: &mut dyn Channel, ctx: &HeContext, keys: &ServerKeys, sets: &[&EncodedCoeff], x_s: Option<&[u64]>) -> Result<Vec<Vec<u64>>> {
    let plan = &sets.first().ok_or_else(|| Error::Config("no weight sets".into()))?.plan;
    if sets.iter().any(|e| e.plan != *plan) {
        return Err(Error::Config("weight sets sharing an upload need the same plan".into()));
    }
    let ups = server_recv(ch, ctx, plan)?;
    let mut shares = Vec::with_capacity(sets.len());
    for enc in sets {
        let (cts, share) = enc.evaluate(ctx, keys, &ups, x_s)?;
        server_send(ch, ctx, plan, &cts)?;
        shares.push(share);
    }
    ch.flush()?;
    Ok(shares)
}

/// Client side of [`coeff_server`] with `sets` weight sets: returns its share of each product.
pub fn coeff_client<R: RngCore + CryptoRng>(
    ch: &mut dyn Channel,
    ctx: &HeContext,
    keys: &ClientKeys,
    plan: &CoeffPlan,
    sets: usize,
    x_c: &[u64],
    _rng: &mut R,
) -> Result<Vec<Vec<u64>>> {
    client_send(ch, ctx, keys, plan, x_c)?;
    (0..sets).map(|_| client_recv(ch, ctx, keys, plan)).collect()
}

/// Server side of independent products X_g·W_g, one per group, all on the same plan (the
/// attention cross terms of every head): the client's X_g arrive in one flight and the
/// results leave in one. The server holds no share of X_g, so its shares are b_g − R_g.
pub fn coeff_batch_server(ch: &mut dyn Channel, ctx: &HeContext, keys: &ServerKeys, groups: &[EncodedCoeff]) -> Result<Vec<Vec<u64>>> {
    let plan = &groups.first().ok_or_else(|| Error::Config("no product groups".into()))?.plan;
    if groups.iter().any(|e| e.plan != *plan) {
        return Err(Error::Config("batched products need the same plan".into()));
    }
    ch.set_phase("linear: server receive");
    expect_header(ch, "batched upload", 0, groups.len() * plan.upload_bytes(ctx)?)?;
    let ups = wire::recv_seeded(ch, ctx, groups.len() * plan.uploads())?;
    let mut cts = Vec::with_capacity(groups.len() * plan.outputs());
    let mut shares = Vec::with_capacity(groups.len());
    for (enc, ups) in groups.iter().zip(ups.chunks(plan.uploads())) {
        let (c, share) = enc.evaluate(ctx, keys, ups, None)?;
        cts.extend(c);
        shares.push(share);
    }
    ch.set_phase("linear: server return");
    send_header(ch, plan.return_level, groups.len() * plan.download_bytes(ctx)?)?;
    wire::send_compact(ch, ctx, &cts)?;
    ch.flush()?;
    Ok(shares)
}

/// Client side of [`coeff_batch_server`]: `xs[g]` is its X_g (n × d_in); returns its share of
/// each product.
pub fn coeff_batch_client(ch: &mut dyn Channel, ctx: &HeContext, keys: &ClientKeys, plan: &CoeffPlan, xs: &[Vec<u64>]) -> Result<Vec<Vec<u64>>> {
    ch.set_phase("linear: client upload");
    for x in xs {
        plan.check_len("client share", x.len(), plan.shape.n * plan.shape.d_in)?;
    }
    let per = plan.uploads();
    let cts: Result<Vec<wire::SeededCt>> = (0..xs.len() * per)
        .into_par_iter()
        .map(|i| keys.encrypt_seeded(ctx, &plan.upload_coeffs(&xs[i / per], i % per, ctx.degree()), &mut rand::rng()))
        .collect();
    send_header(ch, 0, xs.len() * plan.upload_bytes(ctx)?)?;
    wire::send_seeded(ch, &cts?)?;
    ch.flush()?;
    ch.set_phase("linear: client receive");
    expect_header(ch, "batched result", plan.return_level, xs.len() * plan.download_bytes(ctx)?)?;
    let cts = wire::recv_compact_parts(ch, ctx, xs.len() * plan.outputs(), plan.positions().len())?;
    cts.chunks(plan.outputs()).map(|c| decrypt_results(ctx, keys, plan, c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::he::HePreset;

    /// x̂·ŵ mod (X^N + 1, t) for a sparse ŵ, in the clear.
    fn negacyclic(x: &[u64], w: &[i64], field: Field) -> Vec<u64> {
        let n = x.len();
        let mut out = vec![0u64; n];
        for (j, &wj) in w.iter().enumerate().filter(|(_, &v)| v != 0) {
            let wv = field.from_signed(wj);
            for (i, &xi) in x.iter().enumerate() {
                let p = field.mul(xi, wv);
                let k = i + j;
                if k < n {
                    out[k] = field.add(out[k], p);
                } else {
                    out[k - n] = field.sub(out[k - n], p);
                }
            }
        }
        out
    }

    #[test]
    fn blocks_read_the_matrix_product_even_when_they_fill_the_ring() {
        let ctx = HeContext::coefficient(&HePreset::coefficient(40)).unwrap();
        let f = ctx.field();
        let mut rng = rand::rng();
        let n_deg = ctx.degree();
        for (shape, blocks) in [
            (LinearShape { n: 5, d_in: 7, d_out: 3 }, Blocks { n_w: 2, k_w: 4, m_w: 2 }),
            // n_w·k_w·m_w = N: products wrap around X^N + 1.
            (LinearShape { n: 4, d_in: 33, d_out: 70 }, Blocks { n_w: 4, k_w: 32, m_w: 64 }),
        ] {
            let plan = CoeffPlan::with_blocks(&ctx, shape, blocks, 12).unwrap();
            let x: Vec<u64> = (0..shape.n * shape.d_in).map(|_| f.random(&mut rng)).collect();
            let w: Vec<i64> = (0..shape.d_in * shape.d_out).map(|i| (i as i64 * 37 % 8191) - 4095).collect();
            let mut got = vec![0u64; shape.n * shape.d_out];
            let positions = plan.raw_positions();
            for o in 0..plan.results() {
                let mut acc = vec![0u64; n_deg];
                for (u, wi) in plan.terms(o) {
                    let prod = negacyclic(&plan.upload_coeffs(&x, u, n_deg), &plan.weight_coeffs(&w, wi, n_deg), f);
                    acc.iter_mut().zip(prod).for_each(|(a, p)| *a = f.add(*a, p));
                }
                for (p, r, c) in plan.raw_cells(o) {
                    got[r * shape.d_out + c] = acc[positions[p]];
                }
            }
            for r in 0..shape.n {
                for c in 0..shape.d_out {
                    let mut e = 0u64;
                    for k in 0..shape.d_in {
                        e = f.add(e, f.mul(x[r * shape.d_in + k], f.from_signed(w[k * shape.d_out + c])));
                    }
                    assert_eq!(got[r * shape.d_out + c], e, "{blocks:?} ({r},{c})");
                }
            }
        }
    }

    #[test]
    fn the_block_rule_fills_the_ring_for_bert_base_and_follows_short_inputs() {
        let ctx = HeContext::coefficient(&HePreset::coefficient(40)).unwrap();
        let plan = CoeffPlan::new(&ctx, LinearShape { n: 128, d_in: 768, d_out: 768 }, MODEL_WEIGHT_BITS).unwrap();
        // Large row blocks (few ciphertexts each way) that use at least half of the ring.
        assert!(plan.blocks.n_w >= 64, "{}", plan.describe());
        let used = plan.blocks.n_w * plan.blocks.k_w * plan.blocks.m_w;
        assert!(used <= ctx.degree() && 2 * used >= ctx.degree(), "{}", plan.describe());
        // A 7-token input is not padded to 8.
        let short = CoeffPlan::new(&ctx, LinearShape { n: 7, d_in: 384, d_out: 384 }, MODEL_WEIGHT_BITS).unwrap();
        assert!(short.blocks.n_w <= 7, "{}", short.describe());
        assert_eq!(short.return_level, ctx.max_level());
    }
}
