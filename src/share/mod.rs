//! Fixed-point encoding and additive secret sharing over Z_{2^ℓ} (`Ring`) and Z_p (`Field`).
//!
//! Values are stored as `u64` in canonical form (`[0, 2^ℓ)` or `[0, p)`). Signed values are
//! represented in two's-complement style: `x < 0` is stored as `modulus + x`, and decoded back
//! into the centred interval `[-m/2, m/2)`.
//!
//! A share is uniform over the *whole* ring/field: `share()` draws the mask with
//! `Ring::random` / `Field::random`, never from a smaller range.

use rand::{CryptoRng, Rng, RngCore};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which party a piece of code runs as. The server holds the weights, the client the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    Server,
    Client,
}

impl Role {
    pub fn other(self) -> Role {
        match self {
            Role::Server => Role::Client,
            Role::Client => Role::Server,
        }
    }
    pub fn is_server(self) -> bool {
        self == Role::Server
    }
}

/// The ring Z_{2^bits}, 1 <= bits <= 64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ring {
    bits: u32,
}

impl Ring {
    pub fn new(bits: u32) -> Result<Ring> {
        if bits == 0 || bits > 64 {
            return Err(Error::Config(format!("ring bit width {bits} outside 1..=64")));
        }
        Ok(Ring { bits })
    }
    pub const fn bits(self) -> u32 {
        self.bits
    }
    /// All-ones mask of `bits` bits.
    #[inline]
    pub const fn mask(self) -> u64 {
        if self.bits == 64 {
            u64::MAX
        } else {
            (1u64 << self.bits) - 1
        }
    }
    #[inline]
    pub fn reduce(self, x: u64) -> u64 {
        x & self.mask()
    }
    #[inline]
    pub fn add(self, a: u64, b: u64) -> u64 {
        a.wrapping_add(b) & self.mask()
    }
    /// `acc[i] += other[i]` for every i (the shorter length).
    pub fn add_into(self, acc: &mut [u64], other: &[u64]) {
        for (a, &b) in acc.iter_mut().zip(other) {
            *a = self.add(*a, b);
        }
    }
    #[inline]
    pub fn sub(self, a: u64, b: u64) -> u64 {
        a.wrapping_sub(b) & self.mask()
    }
    #[inline]
    pub fn neg(self, a: u64) -> u64 {
        a.wrapping_neg() & self.mask()
    }
    #[inline]
    pub fn mul(self, a: u64, b: u64) -> u64 {
        a.wrapping_mul(b) & self.mask()
    }
    /// Embed a signed integer.
    #[inline]
    pub fn from_signed(self, x: i64) -> u64 {
        (x as u64) & self.mask()
    }
    /// Decode into the centred range `[-2^(bits-1), 2^(bits-1))`.
    #[inline]
    pub fn to_signed(self, x: u64) -> i64 {
        // Sign-extend from bit `bits − 1` (no intermediate 2^bits, which overflows at 63 bits).
        let unused = 64 - self.bits;
        ((x << unused) as i64) >> unused
    }
    /// Most significant bit (the sign bit of the centred encoding).
    #[inline]
    pub fn msb(self, x: u64) -> u64 {
        (x >> (self.bits - 1)) & 1
    }
    /// A uniformly random ring element.
    #[inline]
    pub fn random<R: RngCore + ?Sized>(self, rng: &mut R) -> u64 {
        rng.next_u64() & self.mask()
    }
    /// Split `x` into two additive shares `(a, x - a)` with `a` uniform over the ring.
    pub fn share<R: RngCore + CryptoRng + ?Sized>(self, x: u64, rng: &mut R) -> (u64, u64) {
        let a = self.random(rng);
        (a, self.sub(x, a))
    }
    pub fn share_vec<R: RngCore + CryptoRng + ?Sized>(self, xs: &[u64], rng: &mut R) -> (Vec<u64>, Vec<u64>) {
        xs.iter().map(|&x| self.share(x, rng)).unzip()
    }
    pub fn reconstruct(self, a: &[u64], b: &[u64]) -> Vec<u64> {
        a.iter().zip(b).map(|(&x, &y)| self.add(x, y)).collect()
    }
    /// Number of bytes needed to send one element (bit-packed senders use `bits` exactly).
    pub fn byte_len(self) -> usize {
        self.bits.div_ceil(8) as usize
    }
}

/// The prime field Z_p with p < 2^62 (so sums of two elements fit in a u64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    p: u64,
}

impl Field {
    pub fn new(p: u64) -> Result<Field> {
        if p < 3 || p >= 1 << 62 {
            return Err(Error::Config(format!("field modulus {p} outside 3..2^62")));
        }
        Ok(Field { p })
    }
    pub const fn modulus(self) -> u64 {
        self.p
    }
    /// Number of bits of p.
    pub fn bits(self) -> u32 {
        64 - self.p.leading_zeros()
    }
    #[inline]
    pub fn reduce(self, x: u64) -> u64 {
        x % self.p
    }
    #[inline]
    pub fn add(self, a: u64, b: u64) -> u64 {
        let s = a + b;
        if s >= self.p {
            s - self.p
        } else {
            s
        }
    }
    /// `acc[i] += other[i] mod p` for every i (the shorter length).
    pub fn add_into(self, acc: &mut [u64], other: &[u64]) {
        for (a, &b) in acc.iter_mut().zip(other) {
            *a = self.add(*a, b);
        }
    }
    #[inline]
    pub fn sub(self, a: u64, b: u64) -> u64 {
        if a >= b {
            a - b
        } else {
            a + self.p - b
        }
    }
    #[inline]
    pub fn neg(self, a: u64) -> u64 {
        if a == 0 {
            0
        } else {
            self.p - a
        }
    }
    #[inline]
    pub fn mul(self, a: u64, b: u64) -> u64 {
        ((a as u128 * b as u128) % self.p as u128) as u64
    }
    /// Embed a signed integer (|x| < p/2 for a faithful round trip).
    #[inline]
    pub fn from_signed(self, x: i64) -> u64 {
        let r = x.rem_euclid(self.p as i64);
        r as u64
    }
    /// Decode into the centred range `(-p/2, p/2]`.
    #[inline]
    pub fn to_signed(self, x: u64) -> i64 {
        let x = x % self.p;
        if x > self.p / 2 {
            x as i64 - self.p as i64
        } else {
            x as i64
        }
    }
    /// A uniformly random field element (rejection sampling, no modulo bias).
    #[inline]
    pub fn random<R: RngCore + ?Sized>(self, rng: &mut R) -> u64 {
        let bits = self.bits();
        let mask = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
        loop {
            let v = rng.next_u64() & mask;
            if v < self.p {
                return v;
            }
        }
    }
    pub fn share<R: RngCore + CryptoRng + ?Sized>(self, x: u64, rng: &mut R) -> (u64, u64) {
        let a = self.random(rng);
        (a, self.sub(x, a))
    }
    pub fn share_vec<R: RngCore + CryptoRng + ?Sized>(self, xs: &[u64], rng: &mut R) -> (Vec<u64>, Vec<u64>) {
        xs.iter().map(|&x| self.share(x, rng)).unzip()
    }
    pub fn reconstruct(self, a: &[u64], b: &[u64]) -> Vec<u64> {
        a.iter().zip(b).map(|(&x, &y)| self.add(x, y)).collect()
    }
    /// Modular inverse by Fermat (p prime). Returns an error for 0.
    pub fn inv(self, a: u64) -> Result<u64> {
        if a % self.p == 0 {
            return Err(Error::Config("inverse of zero".into()));
        }
        Ok(self.pow(a, self.p - 2))
    }
    pub fn pow(self, mut a: u64, mut e: u64) -> u64 {
        let mut r = 1u64;
        a %= self.p;
        while e > 0 {
            if e & 1 == 1 {
                r = self.mul(r, a);
            }
            a = self.mul(a, a);
            e >>= 1;
        }
        r
    }
}

/// Fixed-point format: a real `v` is represented by the integer `round(v * 2^frac_bits)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixedPoint {
    pub frac_bits: u32,
}

impl FixedPoint {
    pub const fn new(frac_bits: u32) -> FixedPoint {
        FixedPoint { frac_bits }
    }
    pub fn scale(self) -> f64 {
        (self.frac_bits as f64).exp2()
    }
    /// Round-to-nearest encoding.
    #[inline]
    pub fn encode(self, v: f64) -> i64 {
        (v * self.scale()).round() as i64
    }
    #[inline]
    pub fn decode(self, x: i64) -> f64 {
        x as f64 / self.scale()
    }
    pub fn encode_vec(self, v: &[f32]) -> Vec<i64> {
        v.iter().map(|&x| self.encode(x as f64)).collect()
    }
    pub fn decode_vec(self, x: &[i64]) -> Vec<f32> {
        x.iter().map(|&v| self.decode(v) as f32).collect()
    }
}

/// Arithmetic shift right with floor semantics (what a faithful truncation computes).
#[inline]
pub fn floor_shift(x: i64, s: u32) -> i64 {
    x >> s
}

/// Draw a uniformly random vector over the ring.
pub fn random_ring_vec<R: Rng + ?Sized>(ring: Ring, n: usize, rng: &mut R) -> Vec<u64> {
    (0..n).map(|_| ring.random(rng)).collect()
}

/// Draw a uniformly random vector over the field.
pub fn random_field_vec<R: Rng + ?Sized>(field: Field, n: usize, rng: &mut R) -> Vec<u64> {
    (0..n).map(|_| field.random(rng)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn ring_signed_round_trip_and_sharing() {
        let ring = Ring::new(37).unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        for x in [0i64, -1, 1, (1 << 36) - 1, -(1 << 36), 12345, -98765] {
            let e = ring.from_signed(x);
            assert_eq!(ring.to_signed(e), x);
            let (a, b) = ring.share(e, &mut rng);
            assert_eq!(ring.to_signed(ring.add(a, b)), x);
        }
        assert_eq!(ring.msb(ring.from_signed(-1)), 1);
        assert_eq!(ring.msb(ring.from_signed(5)), 0);
        let r64 = Ring::new(64).unwrap();
        assert_eq!(r64.to_signed(r64.from_signed(i64::MIN)), i64::MIN);
        assert!(Ring::new(0).is_err() && Ring::new(65).is_err());
    }

    #[test]
    fn field_arithmetic_and_sharing() {
        let f = Field::new(536903681).unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        for x in [0i64, -1, 1, 268451840, -268451840, 777] {
            let e = f.from_signed(x);
            assert_eq!(f.to_signed(e), x);
            let (a, b) = f.share(e, &mut rng);
            assert!(a < f.modulus() && b < f.modulus());
            assert_eq!(f.to_signed(f.add(a, b)), x);
        }
        let a = 123456789 % f.modulus();
        assert_eq!(f.mul(a, f.inv(a).unwrap()), 1);
        assert!(f.inv(0).is_err());
    }

    #[test]
    fn fixed_point_encoding() {
        let fp = FixedPoint::new(12);
        assert_eq!(fp.encode(1.0), 4096);
        assert_eq!(fp.encode(-0.5), -2048);
        assert!((fp.decode(fp.encode(3.14159)) - 3.14159).abs() < 1.0 / 4096.0);
        assert_eq!(floor_shift(-1, 3), -1);
        assert_eq!(floor_shift(17, 3), 2);
    }
}
