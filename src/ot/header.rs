//! The 8-byte batch header every OT call starts with, and argument validation shared by the
//! real session and the ideal test double.
//!
//! The receiver opens every batch by sending `kind | bits | arity | len` in one little-endian
//! u64; the sender compares it with its own call and fails with a clear error on any mismatch
//! (a desynchronised caller would otherwise silently produce garbage). Empty batches send
//! nothing at all.

use crate::error::{Error, Result};
use crate::net::Channel;

/// Which OT functionality a batch runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtKind {
    Chosen = 1,
    Correlated = 2,
    OneOfN = 3,
    Random = 4,
    /// Raw correlated OTs that bootstrap the silent generator.
    RawCots = 5,
    /// Correlated OTs whose widths step down from `bits` to 1 (a Gilboa product's bits).
    CorrelatedStaircase = 6,
    /// Correlated OTs over Z_p for a modulus p both parties know (`bits` = bits of p).
    CorrelatedMod = 7,
}

impl OtKind {
    fn name(self) -> &'static str {
        match self {
            OtKind::Chosen => "chosen 1-of-2 OT",
            OtKind::Correlated => "correlated OT",
            OtKind::OneOfN => "1-of-N OT",
            OtKind::Random => "random OT",
            OtKind::RawCots => "silent OT bootstrap",
            OtKind::CorrelatedStaircase => "correlated OT (decreasing widths)",
            OtKind::CorrelatedMod => "correlated OT mod p",
        }
    }
}

/// The message widths of a correlated-OT batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Widths {
    /// Every instance over Z_{2^bits}.
    Uniform(u32),
    /// Instance i over Z_{2^(bits − i mod bits)} (see `Ot::send_correlated_staircase`).
    Staircase(u32),
    /// Every instance over Z_p, p the modulus (see `Ot::send_correlated_mod`).
    Modulus(u64),
}

/// Largest modulus of a correlated OT mod p (a sum of two residues must fit a u64).
pub const MAX_MODULUS: u64 = 1 << 62;

/// Bits a residue mod `p` is sent in (those of p, as `share::Field::bits`).
pub fn modulus_bits(p: u64) -> u32 {
    64 - p.leading_zeros()
}

impl Widths {
    /// Width of instance `i`.
    pub fn of(self, i: usize) -> u32 {
        match self {
            Widths::Uniform(b) => b,
            Widths::Staircase(b) => super::staircase_width(b, i),
            Widths::Modulus(p) => modulus_bits(p),
        }
    }
    pub fn mask(self, i: usize) -> u64 {
        mask(self.of(i))
    }
    /// The batch header of `n` instances (a staircase must be whole groups).
    pub fn header(self, n: usize) -> Result<BatchHeader> {
        match self {
            Widths::Uniform(b) => BatchHeader::new(OtKind::Correlated, b, 2, n),
            Widths::Staircase(b) => {
                super::check_staircase(n, b)?;
                BatchHeader::new(OtKind::CorrelatedStaircase, b, 2, n)
            }
            Widths::Modulus(p) => {
                if !(2..=MAX_MODULUS).contains(&p) {
                    return Err(Error::Ot(format!("correlated OT mod p: modulus {p} outside 2..=2^62")));
                }
                BatchHeader::new(OtKind::CorrelatedMod, modulus_bits(p), 2, n)
            }
        }
    }
    /// Sender of a correlated OT from its two pads per instance: x_i = pad0_i and the message
    /// y_i = x_i + δ_i − pad1_i, both at instance i's width (the receiver with c_i = 1 adds y_i
    /// to pad1_i and gets x_i + δ_i). Returns (x, y).
    pub fn correlate(self, pad0: &[u128], pad1: &[u128], deltas: &[u64]) -> (Vec<u64>, Vec<u64>) {
        if let Widths::Modulus(p) = self {
            // A 128-bit pad reduced mod p < 2^62 is uniform up to 2^-66.
            let xs: Vec<u64> = pad0.iter().map(|&h| (h % p as u128) as u64).collect();
            let y = (0..deltas.len()).map(|i| (xs[i] + deltas[i] % p + (p - (pad1[i] % p as u128) as u64)) % p).collect();
            return (xs, y);
        }
        let xs: Vec<u64> = pad0.iter().enumerate().map(|(i, &h)| h as u64 & self.mask(i)).collect();
        let y = (0..deltas.len()).map(|i| xs[i].wrapping_add(deltas[i]).wrapping_sub(pad1[i] as u64) & self.mask(i)).collect();
        (xs, y)
    }
    /// Receiver of a correlated OT: its pad h_i, plus y_i when c_i = 1, at instance i's width.
    pub fn decorrelate(self, h: &[u128], y: &[u64], choices: &[bool]) -> Vec<u64> {
        if let Widths::Modulus(p) = self {
            let pad = |i: usize| (h[i] % p as u128) as u64;
            return (0..choices.len()).map(|i| if choices[i] { (pad(i) + y[i] % p) % p } else { pad(i) }).collect();
        }
        (0..choices.len()).map(|i| if choices[i] { (h[i] as u64).wrapping_add(y[i]) & self.mask(i) } else { h[i] as u64 & self.mask(i) }).collect()
    }
    /// Send the masked messages, each at its width, as one message.
    pub fn send(self, ch: &mut dyn Channel, y: &[u64]) -> Result<()> {
        match self {
            Widths::Uniform(b) => ch.send_packed(y, b),
            Widths::Modulus(p) => ch.send_packed(y, modulus_bits(p)),
            Widths::Staircase(_) => ch.send_bytes(&crate::net::pack_widths(y, |i| self.of(i))),
        }
    }
    /// Receive `n` messages sent by [`Widths::send`].
    pub fn recv(self, ch: &mut dyn Channel, n: usize) -> Result<Vec<u64>> {
        match self {
            Widths::Uniform(b) => ch.recv_packed(n, b),
            // A residue ≥ p from the peer is reduced on use (decorrelate), never trusted as one.
            Widths::Modulus(p) => ch.recv_packed(n, modulus_bits(p)),
            Widths::Staircase(b) => {
                let mut buf = vec![0u8; super::staircase_payload_bits(n, b).div_ceil(8)];
                ch.recv_bytes(&mut buf)?;
                Ok(crate::net::unpack_widths(&buf, n, |i| self.of(i)))
            }
        }
    }
}

/// Largest batch one call may carry (the header stores the length in 32 bits).
pub const MAX_BATCH: usize = u32::MAX as usize;
/// Largest N of the 1-out-of-N OT.
pub const MAX_N: usize = 256;

/// The parameters of one batch, as both parties must agree on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub kind: OtKind,
    pub bits: u32,
    pub arity: usize,
    pub len: usize,
}

impl BatchHeader {
    /// Validate the caller's arguments and build the header.
    pub fn new(kind: OtKind, bits: u32, arity: usize, len: usize) -> Result<BatchHeader> {
        if bits == 0 || bits > 64 {
            return Err(Error::Ot(format!("{}: message width {bits} bits outside 1..=64", kind.name())));
        }
        if !(2..=MAX_N).contains(&arity) {
            return Err(Error::Ot(format!("{}: N = {arity} outside 2..={MAX_N}", kind.name())));
        }
        if len > MAX_BATCH {
            return Err(Error::Ot(format!("{}: batch of {len} above the {MAX_BATCH} limit", kind.name())));
        }
        Ok(BatchHeader { kind, bits, arity, len })
    }

    pub fn encode(&self) -> u64 {
        (self.kind as u64) | (self.bits as u64) << 8 | ((self.arity - 1) as u64) << 16 | (self.len as u64) << 32
    }

    /// Receiver side: announce the batch.
    pub fn send(&self, ch: &mut dyn Channel) -> Result<()> {
        ch.send_u64(self.encode())
    }

    /// Sender side: read the receiver's announcement and check it matches this call.
    pub fn expect(&self, ch: &mut dyn Channel) -> Result<()> {
        let got = ch.recv_u64()?;
        if got != self.encode() {
            return Err(Error::protocol(
                self.kind.name(),
                format!(
                    "the peer's batch (kind {}, {} bits, N = {}, {} OTs) does not match ours ({:?}, {} bits, N = {}, {} OTs)",
                    got & 0xff,
                    (got >> 8) & 0xff,
                    ((got >> 16) & 0xffff) + 1,
                    got >> 32,
                    self.kind,
                    self.bits,
                    self.arity,
                    self.len
                ),
            ));
        }
        Ok(())
    }
}

/// All-ones mask of `bits` bits (1..=64).
#[inline]
pub fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// Check that `msgs` is a whole number of rows of `n` messages; returns the batch length.
pub fn rows_of(msgs: &[u64], n: usize) -> Result<usize> {
    if n == 0 || msgs.len() % n != 0 {
        return Err(Error::Ot(format!("1-of-N OT: {} messages is not a multiple of N = {n}", msgs.len())));
    }
    Ok(msgs.len() / n)
}

/// Check every 1-of-N choice is below `n`.
pub fn check_choices(choices: &[u8], n: usize) -> Result<()> {
    match choices.iter().position(|&c| c as usize >= n) {
        Some(i) => Err(Error::Ot(format!("1-of-N OT: choice {} at index {i} is not below N = {n}", choices[i]))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_rejects_bad_arguments() {
        assert!(BatchHeader::new(OtKind::Chosen, 0, 2, 1).is_err());
        assert!(BatchHeader::new(OtKind::Chosen, 65, 2, 1).is_err());
        assert!(BatchHeader::new(OtKind::OneOfN, 8, 1, 1).is_err());
        assert!(BatchHeader::new(OtKind::OneOfN, 8, 257, 1).is_err());
        let h = BatchHeader::new(OtKind::OneOfN, 64, 256, 7).unwrap();
        assert_eq!(h.encode() >> 32, 7);
        assert!(check_choices(&[0, 15, 16], 16).is_err());
        assert!(rows_of(&[1, 2, 3], 2).is_err());
    }
}
