//! Boolean (XOR) shares and the bit-AND protocol.
//!
//! **Reference.** Beaver multiplication triples (CRYPTO'91) over Z_2, generated with
//! oblivious transfer as in CrypTFlow2 (Rathee et al., CCS'20, §3, "F_AND" from OT) —
//! here from two batches of 1-bit correlated OTs (one in each direction).
//!
//! **Representation.** A [`BitShare`] is a `Vec<u8>` holding one bit (0 or 1) per byte; the
//! shared bit is `b = b_S ⊕ b_C`. On the wire bits are packed 8 per byte ([`pack`]).
//!
//! **Functionality.** [`and`]: `[x] , [y] ↦ [x ∧ y]` element-wise. [`bit_triples`] produces
//! random triples `[a],[b],[c]` with `c = a ∧ b`; [`and_with`] consumes them.
//!
//! **Message flow.**
//! * Triples for `m` ANDs: correlated OT over Z_2 with the server as sender (Δ = a_S, choice
//!   b_C), then with the client as sender (Δ = a_C, choice b_S): 2m one-bit COTs.
//!   `c_P = a_P b_P ⊕ (own COT outputs)` — the cross terms `a_S b_C ⊕ a_C b_S` cancel in pairs.
//! * Online: each party sends `d = x ⊕ a`, `e = y ⊕ b` (packed, `⌈2m/8⌉` bytes), the server
//!   first, then the client. `z = c ⊕ D·b ⊕ E·a (⊕ D·E on the server)`.
//!
//! **Domain / error.** Any bits; exact.
//!
//! **Cost per AND.** 2 correlated OTs of 1 bit + 2 bits sent by each party (own messages:
//! `2·⌈2m/8⌉` bytes in total for a batch of `m`). Flights: 5 for [`and`] (2 COT batches, 1
//! exchange, adjacent same-direction flights merged).
//!
//! **Security (semi-honest).** The COT outputs of a party are uniform and independent of the
//! peer's bits (COT security), so triples are uniformly random shares. The opened `d, e` are
//! the inputs one-time-padded with the uniform triple bits `a, b`, used once, so each view is
//! simulatable from the party's own input and output.

use rand::RngCore;

use super::ctx::{same_len, Cost, Party, Step};
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

/// Generate `m` random bit triples (2m one-bit correlated OTs).
pub fn bit_triples(p: &mut Party, m: usize) -> Result<BitTriples> {
    let a = random_bits(p, m);
    let b = random_bits(p, m);
    let a_u64: Vec<u64> = a.iter().map(|&x| x as u64).collect();
    let (first, second) = if p.is_server() {
        let x = p.cot_send(&a_u64, 1)?;
        let y = p.cot_recv(&b, 1)?;
        (x, y)
    } else {
        let y = p.cot_recv(&b, 1)?;
        let x = p.cot_send(&a_u64, 1)?;
        (x, y)
    };
    let c = (0..m).map(|i| (a[i] & b[i]) ^ (first[i] as u8 & 1) ^ (second[i] as u8 & 1)).collect();
    Ok(BitTriples { a, b, c, used: 0 })
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
    (Cost::cot(1, 2 * m) + Cost::own(and_exchange_bytes(m))).then(&[Step::OtServerSends, Step::OtClientSends, Step::Exchange])
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
