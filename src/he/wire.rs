//! Compact ciphertext transport with strict validation.
//!
//! Format (no headers: the receiver always knows the shape it expects from the public plan):
//! * seeded upload (client → server, top level): 32-byte seed ‖ c0;
//! * full ciphertext (server → client, at the return level): c0 ‖ c1;
//! * compact result (server → client, coefficient encoding): c1 ‖ c0 at the public list of
//!   coefficients the client reads, switched to the narrow modulus q' of [`super::narrow`] and
//!   bit-packed to ⌈log2 q'⌉ bits;
//!
//! where each polynomial is sent in coefficient form, residue by residue, each residue
//! bit-packed to ⌈log2 q_i⌉ bits. A batch of ciphertexts is one message of
//! `count × size` bytes; the size is computed locally, never read from the peer.
//! Decoding rejects (with `Error::Protocol`) any residue ≥ q_i, so nothing malformed reaches
//! the crate's arithmetic.

use fhe::bfv::Ciphertext;
use fhe_math::rq::traits::TryConvertFrom;
use fhe_math::rq::{Poly, Representation};
use rayon::prelude::*;

use super::HeContext;
use crate::error::{Error, Result};
use crate::net::{pack_bits, packed_len, unpack_bits, Channel};

/// A fresh secret-key ciphertext whose c1 is regenerated from `seed`.
pub struct SeededCt {
    pub seed: [u8; 32],
    pub c0: Poly,
}

const SEED_LEN: usize = 32;
/// Batches are cut into messages of at most this many bytes (bounds peak buffer memory).
const CHUNK_BYTES: usize = 64 << 20;

fn moduli_at(ctx: &HeContext, level: usize) -> Result<&[u64]> {
    let all = ctx.params().moduli();
    if level > ctx.max_level() {
        return Err(Error::He(format!("level {level} above the maximum {}", ctx.max_level())));
    }
    Ok(&all[..all.len() - level])
}

fn bits_of(q: u64) -> u32 {
    64 - q.leading_zeros()
}

/// Bytes of one polynomial at `level`.
pub fn poly_len(ctx: &HeContext, level: usize) -> Result<usize> {
    Ok(moduli_at(ctx, level)?.iter().map(|&q| packed_len(ctx.degree(), bits_of(q))).sum())
}
/// Bytes of one seeded upload (top level).
pub fn seeded_len(ctx: &HeContext) -> Result<usize> {
    Ok(SEED_LEN + poly_len(ctx, 0)?)
}
/// Bytes of one two-part ciphertext at `level`.
pub fn full_len(ctx: &HeContext, level: usize) -> Result<usize> {
    Ok(2 * poly_len(ctx, level)?)
}

fn encode_poly(p: &Poly, out: &mut Vec<u8>) {
    let mut c = p.clone();
    c.change_representation(Representation::PowerBasis);
    for (row, &q) in c.coefficients().outer_iter().zip(p.ctx().moduli()) {
        let v: Vec<u64> = row.iter().copied().collect();
        out.extend_from_slice(&pack_bits(&v, bits_of(q)));
    }
}

fn decode_poly(ctx: &HeContext, level: usize, bytes: &[u8]) -> Result<Poly> {
    let moduli = moduli_at(ctx, level)?;
    let n = ctx.degree();
    if bytes.len() != poly_len(ctx, level)? {
        return Err(Error::protocol("ciphertext", "polynomial of the wrong size"));
    }
    let mut coeffs = Vec::with_capacity(n * moduli.len());
    let mut off = 0;
    for &q in moduli {
        let len = packed_len(n, bits_of(q));
        let row = unpack_bits(&bytes[off..off + len], n, bits_of(q));
        if row.iter().any(|&c| c >= q) {
            return Err(Error::protocol("ciphertext", "coefficient outside [0, q_i)"));
        }
        coeffs.extend_from_slice(&row);
        off += len;
    }
    let mut p = Poly::try_convert_from(coeffs, ctx.params().context_at_level(level)?, false, Representation::PowerBasis)?;
    p.change_representation(Representation::Ntt);
    Ok(p)
}

pub fn encode_seeded(ct: &SeededCt) -> Vec<u8> {
    let mut out = Vec::with_capacity(SEED_LEN + ct.c0.coefficients().len() * 8);
    out.extend_from_slice(&ct.seed);
    encode_poly(&ct.c0, &mut out);
    out
}

pub fn decode_seeded(ctx: &HeContext, bytes: &[u8]) -> Result<Ciphertext> {
    if bytes.len() != seeded_len(ctx)? {
        return Err(Error::protocol("ciphertext", format!("seeded upload of {} bytes", bytes.len())));
    }
    let mut seed = [0u8; SEED_LEN];
    seed.copy_from_slice(&bytes[..SEED_LEN]);
    let c0 = decode_poly(ctx, 0, &bytes[SEED_LEN..])?;
    let c1 = Poly::random_from_seed(ctx.params().context_at_level(0)?, Representation::Ntt, seed);
    Ok(Ciphertext::new(vec![c0, c1], ctx.params())?)
}

/// Encode a two-part ciphertext; errors if it is not at `level` or has more parts.
pub fn encode_full(ctx: &HeContext, ct: &Ciphertext, level: usize) -> Result<Vec<u8>> {
    if ct.len() != 2 || ctx.params().level_of_context(ct[0].ctx())? != level {
        return Err(Error::He(format!("expected a 2-part ciphertext at level {level}")));
    }
    let mut out = Vec::with_capacity(full_len(ctx, level)?);
    encode_poly(&ct[0], &mut out);
    encode_poly(&ct[1], &mut out);
    Ok(out)
}

pub fn decode_full(ctx: &HeContext, level: usize, bytes: &[u8]) -> Result<Ciphertext> {
    let half = poly_len(ctx, level)?;
    if bytes.len() != 2 * half {
        return Err(Error::protocol("ciphertext", format!("ciphertext of {} bytes, expected {}", bytes.len(), 2 * half)));
    }
    let c0 = decode_poly(ctx, level, &bytes[..half])?;
    let c1 = decode_poly(ctx, level, &bytes[half..])?;
    Ok(Ciphertext::new(vec![c0, c1], ctx.params())?)
}

/// Bytes of one compact result carrying `positions` coefficients of c0 (both parts at the
/// narrow modulus of [`super::narrow`]).
pub fn compact_len(ctx: &HeContext, positions: usize) -> Result<usize> {
    let bits = ctx.narrow()?.bits();
    Ok(packed_len(ctx.degree(), bits) + packed_len(positions, bits))
}

/// A returned result ready for the wire: c1 in full and c0 at the positions the client reads,
/// both switched to the narrow modulus q'.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactResult {
    c1: Vec<u64>,
    c0: Vec<u64>,
}

/// Switch a returned ciphertext (its two parts in the power basis at the single return
/// modulus, as `privacy::private_return_parts` leaves them) to q', keeping c0 at `positions`.
pub fn compact_result(ctx: &HeContext, parts: &[Poly; 2], positions: &[usize]) -> Result<CompactResult> {
    let nm = ctx.narrow()?;
    if parts.iter().any(|p| *p.representation() != Representation::PowerBasis || p.ctx().moduli() != [nm.return_modulus()]) {
        return Err(Error::He("compact results start from power-basis parts at the return modulus".into()));
    }
    let c1 = parts[1].coefficients().row(0).iter().map(|&c| nm.switch(c)).collect();
    let row = parts[0].coefficients();
    let c0 = positions
        .iter()
        .map(|&p| row.get((0, p)).map(|&c| nm.switch(c)).ok_or_else(|| Error::He(format!("coefficient {p} outside the ring degree"))))
        .collect::<Result<_>>()?;
    Ok(CompactResult { c1, c0 })
}

/// c1 ‖ c0, each bit-packed at the narrow modulus's width.
pub fn encode_compact(ctx: &HeContext, r: &CompactResult) -> Result<Vec<u8>> {
    let bits = ctx.narrow()?.bits();
    if r.c1.len() != ctx.degree() {
        return Err(Error::He("compact result of the wrong degree".into()));
    }
    let mut out = pack_bits(&r.c1, bits);
    out.extend_from_slice(&pack_bits(&r.c0, bits));
    Ok(out)
}

/// A compact result as received: c1 (NTT form at the narrow modulus) and c0 at the public
/// positions only.
pub struct CompactCt {
    pub c1: Poly,
    pub c0: Vec<u64>,
}

/// Decode and validate a compact result carrying `positions` coefficients of c0.
pub fn decode_compact_parts(ctx: &HeContext, positions: usize, bytes: &[u8]) -> Result<CompactCt> {
    let want = compact_len(ctx, positions)?;
    if bytes.len() != want {
        return Err(Error::protocol("ciphertext", format!("compact ciphertext of {} bytes, expected {want}", bytes.len())));
    }
    let nm = ctx.narrow()?;
    let half = packed_len(ctx.degree(), nm.bits());
    let c1 = unpack_bits(&bytes[..half], ctx.degree(), nm.bits());
    let c0 = unpack_bits(&bytes[half..], positions, nm.bits());
    if c1.iter().chain(&c0).any(|&c| c >= nm.q()) {
        return Err(Error::protocol("ciphertext", "coefficient outside [0, q)"));
    }
    Ok(CompactCt { c1: nm.ntt_poly(c1)?, c0 })
}

/// Receive `count` compact results carrying `positions` coefficients of c0, as parts.
pub fn recv_compact_parts(ch: &mut dyn Channel, ctx: &HeContext, count: usize, positions: usize) -> Result<Vec<CompactCt>> {
    let size = compact_len(ctx, positions)?;
    recv_items(ch, count, size, |b| decode_compact_parts(ctx, positions, b))
}

/// Send compact results (one flight).
pub fn send_compact(ch: &mut dyn Channel, ctx: &HeContext, results: &[CompactResult]) -> Result<()> {
    let blobs: Result<Vec<Vec<u8>>> = results.par_iter().map(|r| encode_compact(ctx, r)).collect();
    send_blobs(ch, blobs?)
}

fn send_blobs(ch: &mut dyn Channel, blobs: Vec<Vec<u8>>) -> Result<()> {
    let mut buf = Vec::new();
    for b in blobs {
        buf.extend_from_slice(&b);
        if buf.len() >= CHUNK_BYTES {
            ch.send_bytes(&buf)?;
            buf.clear();
        }
    }
    if !buf.is_empty() {
        ch.send_bytes(&buf)?;
    }
    Ok(())
}

/// Receive `count` items of `size` bytes (chunked like [`send_blobs`]) and decode each.
fn recv_items<T: Send>(
    ch: &mut dyn Channel,
    count: usize,
    size: usize,
    decode: impl Fn(&[u8]) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let per_chunk = CHUNK_BYTES.div_ceil(size).max(1);
    let mut out = Vec::with_capacity(count);
    let mut left = count;
    while left > 0 {
        let k = left.min(per_chunk);
        let mut buf = vec![0u8; k * size];
        ch.recv_bytes(&mut buf)?;
        let items: Result<Vec<T>> = buf.par_chunks_exact(size).map(&decode).collect();
        out.extend(items?);
        left -= k;
    }
    Ok(out)
}

/// Send seeded uploads as one flight.
pub fn send_seeded(ch: &mut dyn Channel, cts: &[SeededCt]) -> Result<()> {
    let blobs: Vec<Vec<u8>> = cts.par_iter().map(encode_seeded).collect();
    send_blobs(ch, blobs)
}

pub fn recv_seeded(ch: &mut dyn Channel, ctx: &HeContext, count: usize) -> Result<Vec<Ciphertext>> {
    let size = seeded_len(ctx)?;
    recv_items(ch, count, size, |b| decode_seeded(ctx, b))
}

/// Send two-part ciphertexts, all at `level`, as one flight.
pub fn send_full(ch: &mut dyn Channel, ctx: &HeContext, cts: &[Ciphertext], level: usize) -> Result<()> {
    let blobs: Result<Vec<Vec<u8>>> = cts.par_iter().map(|c| encode_full(ctx, c, level)).collect();
    send_blobs(ch, blobs?)
}

pub fn recv_full(ch: &mut dyn Channel, ctx: &HeContext, count: usize, level: usize) -> Result<Vec<Ciphertext>> {
    let size = full_len(ctx, level)?;
    recv_items(ch, count, size, |b| decode_full(ctx, level, b))
}
