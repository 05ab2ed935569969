//! Share ↔ HE conversions over Z_t, and signed re-centring helpers.
//!
//! * **S2H** (shares → ciphertext at the server): the client encrypts its share x_c (seeded
//!   secret-key upload, ⌈len/N⌉ ciphertexts, one flight); the server adds its plaintext share
//!   x_s and holds Enc(x_c + x_s). Security: the server only sees fresh RLWE ciphertexts.
//! * **H2S** (ciphertext at the server → shares): the circuit-private return of
//!   [`super::privacy::private_return`]: the client decrypts x + R, the server keeps −R, with R
//!   uniform over Z_t, so each share alone is uniform. One flight server → client.
//!
//! Both sides must pass the same `len` and the same public noise bound `v` (they derive it
//! from the public shape of the computation), which fixes the return level and frame sizes.

use fhe::bfv::Ciphertext;
use rand::{CryptoRng, RngCore};
use rayon::prelude::*;

use super::privacy::private_return;
use super::wire;
use super::{ClientKeys, HeContext, ServerKeys};
use crate::error::{Error, Result};
use crate::net::Channel;
use crate::share::Field;

/// Centred signed values of field elements, in (−t/2, t/2].
pub fn to_signed_vec(field: Field, v: &[u64]) -> Vec<i64> {
    v.iter().map(|&x| field.to_signed(x)).collect()
}
/// Field elements of signed values (|x| < t/2 for a faithful round trip).
pub fn from_signed_vec(field: Field, v: &[i64]) -> Vec<u64> {
    v.iter().map(|&x| field.from_signed(x)).collect()
}

fn ct_count(ctx: &HeContext, len: usize) -> usize {
    len.div_ceil(ctx.slots()).max(1)
}

/// S2H, client side: upload Enc(x_c).
pub fn s2h_client<R: RngCore + CryptoRng>(
    ch: &mut dyn Channel,
    ctx: &HeContext,
    keys: &ClientKeys,
    share: &[u64],
    rng: &mut R,
) -> Result<()> {
    ch.set_phase("s2h");
    let cts: Result<Vec<wire::SeededCt>> =
        share.chunks(ctx.slots()).map(|chunk| keys.encrypt_seeded(ctx, chunk, rng)).collect();
    let mut cts = cts?;
    if cts.is_empty() {
        cts.push(keys.encrypt_seeded(ctx, &[], rng)?);
    }
    wire::send_seeded(ch, &cts)
}

/// S2H, server side: receive Enc(x_c) and add x_s; slot i of ciphertext j holds element
/// j·N + i.
pub fn s2h_server(ch: &mut dyn Channel, ctx: &HeContext, share: &[u64]) -> Result<Vec<Ciphertext>> {
    ch.set_phase("s2h");
    let count = ct_count(ctx, share.len());
    let mut cts = wire::recv_seeded(ch, ctx, count)?;
    for (ct, chunk) in cts.iter_mut().zip(share.chunks(ctx.slots())) {
        *ct += &ctx.plaintext(chunk, 0)?;
    }
    Ok(cts)
}

/// H2S, server side: circuit-private return of `cts` (data-noise bound `v`); returns the
/// server's shares of the first `len` slots.
pub fn h2s_server(
    ch: &mut dyn Channel,
    ctx: &HeContext,
    keys: &ServerKeys,
    cts: Vec<Ciphertext>,
    len: usize,
    v: f64,
) -> Result<Vec<u64>> {
    ch.set_phase("h2s");
    if cts.len() != ct_count(ctx, len) {
        return Err(Error::He(format!("{} ciphertexts for {len} values", cts.len())));
    }
    let level = ctx.params().level_of_context(cts[0][0].ctx())?;
    let out: Result<Vec<(Ciphertext, Vec<u64>)>> =
        cts.into_par_iter().map(|ct| private_return(ctx, &keys.ret, ct, v, &mut rand::rng())).collect();
    let (ret, shares): (Vec<Ciphertext>, Vec<Vec<u64>>) = out?.into_iter().unzip();
    let ret_level = super::privacy::return_level(ctx, level, v)?;
    wire::send_full(ch, ctx, &ret, ret_level)?;
    Ok(shares.into_iter().flatten().take(len).collect())
}

/// H2S, client side: receive and decrypt; `level` is the level the server computed at
/// (0 for everything in this crate).
pub fn h2s_client(
    ch: &mut dyn Channel,
    ctx: &HeContext,
    keys: &ClientKeys,
    len: usize,
    level: usize,
    v: f64,
) -> Result<Vec<u64>> {
    ch.set_phase("h2s");
    let ret_level = super::privacy::return_level(ctx, level, v)?;
    let cts = wire::recv_full(ch, ctx, ct_count(ctx, len), ret_level)?;
    let dec: Result<Vec<Vec<u64>>> = cts.par_iter().map(|ct| ctx.decrypt(&keys.sk, ct)).collect();
    Ok(dec?.into_iter().flatten().take(len).collect())
}
