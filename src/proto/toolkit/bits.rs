//! Boolean (XOR) shares and the bit-AND protocol.
//!
//! **Reference.** Beaver multiplication triples (CRYPTO'91) over Z_2, generated with
//! oblivious transfer as in CrypTFlow2 (Rathee et al., CCS'20, §3.1.1): two triples from one
//! 1-out-of-16 OT with 2-bit messages.
//!
//! **Representation.** A [`BitShare`] is a `Vec<u8>` holding one bit (0 or 1) per byte; the
//! shared bit is `b = b_S ⊕ b_C`. On the wire bits are packed 8 per byte ([`pack`]).
//!
//! **Functionality.** [`and`]: `[x] , [y] ↦ [x ∧ y]` element-wise. [`bit_triples`] produces
//! random triples `[a],[b],[c]` with `c = a ∧ b`; [`and_with`] consumes them.
//!
//! **Message flow.**
//! * Triples for `m` ANDs: `⌈m/2⌉` 1-out-of-16 OTs, server = sender. Both parties draw random
//!   `a_P, b_P`; the server also draws its `c_S`. The client chooses with its four bits
//!   `(a_C, b_C)` of two triples and learns `c_C = c_S ⊕ (a_S ⊕ a_C)(b_S ⊕ b_C)` for each.
//! * Online: each party sends `d = x ⊕ a`, `e = y ⊕ b` (packed, `⌈2m/8⌉` bytes), the server
//!   first, then the client. `z = c ⊕ D·b ⊕ E·a (⊕ D·E on the server)`.
//!
//! **Domain / error.** Any bits; exact.
//!
//! **Cost per AND.** ½ 1-out-of-16 OT (2-bit messages) + 2 bits sent by each party (own
//! messages: `2·⌈2m/8⌉` bytes in total for a batch of `m`). Flights: 3 for [`and`] (one OT
//! batch, then one exchange whose first flight merges with the OT's last).
//!
//! **Security (semi-honest).** The client's OT outputs are one-time-padded by the server's
//! uniform `c_S`; the server learns nothing about the client's choice (OT security), so
//! triples are uniformly random shares. The opened `d, e` are
//! the inputs one-time-padded with the uniform triple bits `a, b`, used once, so each view is
//! simulatable from the party's own input and output.

use rand::RngCore;

use crate::proto::ctx::{same_len, Cost, Party, Step};
use crate::error::{Error, Result};

/// XOR share of a bit vector, one bit (0/1) per byte.
pub type BitShare = Vec<u8>;

/// Pack 0/1 bytes 8 per byte (little-endian bit order).
pub fn pack(bits: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; bits.len().div_ceil(8)];
    for (i, &b) in bits.iter().enumerate() {
        out[i / 8] |= (b & 1) << (i % 8);
    }
    out
}

/// Inverse of [`pack`] for `n` bits.
pub fn unpack(bytes: &[u8], n: usize) -> Vec<u8> {
    (0..n).map(|i| bytes.get(i / 8).map_or(0, |byte| (byte >> (i % 8)) & 1)).collect()
}

/// Element-wise XOR of two shares (a local operation).
pub fn xor(a: &[u8], b: &[u8]) -> BitShare {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// Share of `NOT b`: the server flips its share.
pub fn not(p: &Party, b: &[u8]) -> BitShare {
    let flip = p.is_server() as u8;
    b.iter().map(|x| x ^ flip).collect()
}

/// Share of a public bit vector (the server holds it, the client holds zeros).
pub fn public(p: &Party, b: &[u8]) -> BitShare {
    if p.is_server() {
        b.to_vec()
    } else {
        vec![0; b.len()]
    }
}

/// A batch of random bit triples held by one party.
#[derive(Clone, Debug, Default)]
pub struct BitTriples {
    a: Vec<u8>,
    b: Vec<u8>,
    c: Vec<u8>,
    used: usize,
}

impl BitTriples {
    pub fn remaining(&self) -> usize {
        self.a.len() - self.used
    }
    /// Take the next `m` triples.
    fn take(&mut self, m: usize) -> Result<(&[u8], &[u8], &[u8])> {
        if m > self.remaining() {
            return Err(Error::protocol("bit-AND", format!("needs {m} triples, {} left", self.remaining())));
        }
        let r = self.used..self.used + m;
        self.used += m;
        Ok((&self.a[r.clone()], &self.b[r.clone()], &self.c[r]))
    }
}

fn random_bits(p: &mut Party, n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n.div_ceil(8)];
    p.rng().fill_bytes(&mut bytes);
    unpack(&bytes, n)
}

/// Number of 1-out-of-16 OTs that produce `m` bit triples (two per OT).
pub fn triple_ot_count(m: usize) -> usize {
    m.div_ceil(TRIPLES_PER_OT)
}

/// Bit triples produced by one 1-out-of-16 OT.
pub const TRIPLES_PER_OT: usize = 2;

/// The server's 16 two-bit messages for the triple pair `(a_k, b_k, c_k)`, `k = 0, 1`: for
/// the client's choice `v = a'_0 | b'_0 << 1 | a'_1 << 2 | b'_1 << 3`, bit `k` of the message
/// is `c_k ⊕ (a_k ⊕ a'_k)(b_k ⊕ b'_k)`.
fn triple_messages(a: [u8; 2], b: [u8; 2], c: [u8; 2], out: &mut [u64]) {
    for (v, m) in out.iter_mut().enumerate() {
        let v = v as u8;
        let t0 = c[0] ^ ((a[0] ^ (v & 1)) & (b[0] ^ ((v >> 1) & 1)));
        let t1 = c[1] ^ ((a[1] ^ ((v >> 2) & 1)) & (b[1] ^ ((v >> 3) & 1)));
        *m = (t0 | (t1 << 1)) as u64;
    }
}

/// Server side of triple generation for `m` triples: random shares and the OT messages
/// (`triple_ot_count(m)` rows of 16 two-bit messages).
pub(crate) fn triple_offer(p: &mut Party, m: usize) -> (Vec<u64>, BitTriples) {
    let k = triple_ot_count(m);
    let (a, b, c) = (random_bits(p, 2 * k), random_bits(p, 2 * k), random_bits(p, 2 * k));
    let mut msgs = vec![0u64; 16 * k];
    for (o, row) in msgs.chunks_mut(16).enumerate() {
        let (i, j) = (2 * o, 2 * o + 1);
        triple_messages([a[i], a[j]], [b[i], b[j]], [c[i], c[j]], row);
    }
    (msgs, BitTriples { a, b, c, used: 0 })
}

/// Client side of triple generation: random shares `a, b` and the OT choices.
pub(crate) fn triple_choices(p: &mut Party, m: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let k = triple_ot_count(m);
    let (a, b) = (random_bits(p, 2 * k), random_bits(p, 2 * k));
    let choices = (0..k).map(|o| a[2 * o] | b[2 * o] << 1 | a[2 * o + 1] << 2 | b[2 * o + 1] << 3).collect();
    (choices, a, b)
}

/// Client side: the triples from the received OT messages.
pub(crate) fn triples_received(a: Vec<u8>, b: Vec<u8>, got: &[u64]) -> BitTriples {
    let c = got.iter().flat_map(|&v| [(v & 1) as u8, ((v >> 1) & 1) as u8]).collect();
    BitTriples { a, b, c, used: 0 }
}

/// Generate `m` random bit triples (`⌈m/2⌉` 1-out-of-16 OTs with 2-bit messages).
pub fn bit_triples(p: &mut Party, m: usize) -> Result<BitTriples> {
    if p.is_server() {
        let (msgs, triples) = triple_offer(p, m);
        p.ot_n_send(&msgs, 16, 2)?;
        Ok(triples)
    } else {
        let (choices, a, b) = triple_choices(p, m);
        let got = p.ot_n_recv(&choices, 16, 2)?;
        Ok(triples_received(a, b, &got))
    }
}

/// Open a bit vector: the server sends first, then the client; returns the peer's bits.
pub fn exchange_bits(p: &mut Party, mine: &[u8]) -> Result<Vec<u8>> {
    let n = mine.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let packed = pack(mine);
    let theirs = if p.is_server() {
        p.ch.send_bytes(&packed)?;
        let mut buf = vec![0u8; packed.len()];
        p.ch.recv_bytes(&mut buf)?;
        buf
    } else {
        let mut buf = vec![0u8; packed.len()];
        p.ch.recv_bytes(&mut buf)?;
        p.ch.send_bytes(&packed)?;
        buf
    };
    Ok(unpack(&theirs, n))
}

/// `[x ∧ y]` using triples from `triples` (one online exchange).
pub fn and_with(p: &mut Party, x: &[u8], y: &[u8], triples: &mut BitTriples) -> Result<BitShare> {
    same_len("bit-AND", x.len(), y.len())?;
    let m = x.len();
    let server = p.is_server() as u8;
    let (a, b, c) = triples.take(m)?;
    let (a, b, c) = (a.to_vec(), b.to_vec(), c.to_vec());
    let mut de: Vec<u8> = Vec::with_capacity(2 * m);
    de.extend(x.iter().zip(&a).map(|(x, a)| (x ^ a) & 1));
    de.extend(y.iter().zip(&b).map(|(y, b)| (y ^ b) & 1));
    let peer = exchange_bits(p, &de)?;
    Ok((0..m)
        .map(|i| {
            let d = de[i] ^ peer[i];
            let e = de[m + i] ^ peer[m + i];
            c[i] ^ (d & b[i]) ^ (e & a[i]) ^ (server & d & e)
        })
        .collect())
}

/// `[x ∧ y]` element-wise (generates its own triples).
pub fn and(p: &mut Party, x: &[u8], y: &[u8]) -> Result<BitShare> {
    same_len("bit-AND", x.len(), y.len())?;
    let mut t = bit_triples(p, x.len())?;
    and_with(p, x, y, &mut t)
}

/// Own-message bytes (both directions) of one [`and_with`] call on `m` pairs.
pub fn and_exchange_bytes(m: usize) -> u64 {
    2 * (2 * m).div_ceil(8) as u64
}

/// Documented cost of [`and`] on `m` pairs: 2m one-bit COTs + the opening exchange.
pub fn and_cost(m: usize) -> Cost {
    if m == 0 {
        return Cost::default();
    }
    (Cost::one_of_n(16, 2, triple_ot_count(m)) + Cost::own(and_exchange_bytes(m))).then(&[Step::OtServerSends, Step::Exchange])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips() {
        for n in [0usize, 1, 7, 8, 9, 100] {
            let v: Vec<u8> = (0..n).map(|i| ((i * 7 + 3) % 5 % 2) as u8).collect();
            let p = pack(&v);
            assert_eq!(p.len(), n.div_ceil(8));
            assert_eq!(unpack(&p, n), v);
        }
    }
}

#[cfg(test)]
mod triple_tests {
    use super::*;

    #[test]
    fn triple_messages_give_products() {
        for bits in 0u8..64 {
            let (a, b, c) = ([bits & 1, (bits >> 1) & 1], [(bits >> 2) & 1, (bits >> 3) & 1], [(bits >> 4) & 1, (bits >> 5) & 1]);
            let mut row = [0u64; 16];
            triple_messages(a, b, c, &mut row);
            for v in 0..16u8 {
                let ac = [v & 1, (v >> 2) & 1];
                let bc = [(v >> 1) & 1, (v >> 3) & 1];
                for k in 0..2 {
                    let c_client = ((row[v as usize] >> k) & 1) as u8;
                    assert_eq!(c[k] ^ c_client, (a[k] ^ ac[k]) & (b[k] ^ bc[k]));
                }
            }
        }
    }
}
