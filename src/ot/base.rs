//! Base OT: Chou–Orlandi "simplest OT" (LATINCRYPT 2015) over the Ristretto group, batched.
//!
//! Functionality: `k` random 1-out-of-2 OTs of 128-bit keys; the receiver chooses bit `c_i`
//! and learns `K_i^{c_i}`, the sender learns both `K_i^0, K_i^1`.
//!
//! Message flow (pure state machines here; the session drives them):
//! 1. sender → receiver: `A = a·G` (32 bytes);
//! 2. receiver → sender: `B_i = b_i·G + c_i·A` for every i (32 bytes each);
//! 3. sender: `K_i^0 = KDF(i, A, B_i, a·B_i)`, `K_i^1 = KDF(i, A, B_i, a·(B_i − A))`;
//!    receiver: `K_i^{c_i} = KDF(i, A, B_i, b_i·A)`.
//!
//! KDF = SHA-256 over a domain string, a direction tag (which party is the base sender), the
//! index `i`, the transcript points and the shared point, truncated to 128 bits.
//!
//! Security (semi-honest): `B_i` is a uniform group element whatever `c_i` is, so the sender
//! learns nothing about the choices. The receiver knows `b_i·A`; the other key needs
//! `a·(B_i ∓ A)` = `a·b_i·G ∓ a²·G`, which is infeasible to compute under the computational
//! Diffie–Hellman assumption in Ristretto (≈ 126-bit security), with SHA-256 as random oracle.
//! Scalars are drawn from the operating-system seeded CSPRNG (`rand::rng()`), reduced from
//! 512 bits. Received points must decode and must not be the identity, else the run fails.

use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use rand::RngCore;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Bytes of one encoded group element.
pub const POINT_BYTES: usize = 32;

/// A uniform scalar from 64 bytes of CSPRNG output (negligible modular bias).
fn random_scalar() -> Scalar {
    let mut wide = [0u8; 64];
    rand::rng().fill_bytes(&mut wide);
    Scalar::from_bytes_mod_order_wide(&wide)
}

/// Decode a peer's point, rejecting invalid encodings and the identity.
pub fn decode_point(bytes: &[u8], what: &str) -> Result<RistrettoPoint> {
    let arr: [u8; POINT_BYTES] = bytes
        .try_into()
        .map_err(|_| Error::protocol("base OT", format!("{what}: expected {POINT_BYTES} bytes")))?;
    let p = CompressedRistretto(arr)
        .decompress()
        .ok_or_else(|| Error::protocol("base OT", format!("{what} is not a valid Ristretto point")))?;
    if p.is_identity() {
        return Err(Error::protocol("base OT", format!("{what} is the identity element")));
    }
    Ok(p)
}

fn kdf(tag: u8, index: usize, a: &[u8; 32], b: &[u8; 32], shared: &RistrettoPoint) -> u128 {
    let mut h = Sha256::new();
    h.update(b"fastlmpi/ot/base/v1");
    h.update([tag]);
    h.update((index as u64).to_le_bytes());
    h.update(a);
    h.update(b);
    h.update(shared.compress().as_bytes());
    let d = h.finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    u128::from_le_bytes(k)
}

/// Base-OT sender state after step 1.
pub struct BaseSender {
    a: Scalar,
    big_a: RistrettoPoint,
    a_bytes: [u8; 32],
    tag: u8,
}

impl BaseSender {
    /// Step 1: draw `a`, return the state and the message `A`.
    pub fn start(tag: u8) -> (BaseSender, [u8; 32]) {
        let a = random_scalar();
        let big_a = RistrettoPoint::mul_base(&a);
        let a_bytes = big_a.compress().to_bytes();
        (BaseSender { a, big_a, a_bytes, tag }, a_bytes)
    }

    /// Step 3: both keys of every OT from the receiver's points (`32·k` bytes).
    pub fn finish(&self, msg: &[u8], k: usize) -> Result<Vec<[u128; 2]>> {
        if msg.len() != k * POINT_BYTES {
            return Err(Error::protocol("base OT", format!("expected {} bytes of points, got {}", k * POINT_BYTES, msg.len())));
        }
        let a_times_a = self.a * self.big_a;
        msg.par_chunks(POINT_BYTES)
            .enumerate()
            .map(|(i, chunk)| {
                let b = decode_point(chunk, &format!("receiver point {i}"))?;
                let b_bytes: [u8; 32] = chunk.try_into().map_err(|_| Error::protocol("base OT", "point size"))?;
                let ab = self.a * b;
                let k0 = kdf(self.tag, i, &self.a_bytes, &b_bytes, &ab);
                let k1 = kdf(self.tag, i, &self.a_bytes, &b_bytes, &(ab - a_times_a));
                Ok([k0, k1])
            })
            .collect()
    }
}

/// Step 2 for the receiver: from the sender's `A` and the choice bits, return the message
/// (`32·k` bytes) and the chosen keys.
pub fn receive(tag: u8, a_msg: &[u8], choices: &[bool]) -> Result<(Vec<u8>, Vec<u128>)> {
    let big_a = decode_point(a_msg, "sender point A")?;
    let a_bytes: [u8; 32] = a_msg.try_into().map_err(|_| Error::protocol("base OT", "point size"))?;
    let per_ot: Vec<([u8; 32], u128)> = choices
        .par_iter()
        .enumerate()
        .map(|(i, &c)| {
            let b = random_scalar();
            let mut big_b = RistrettoPoint::mul_base(&b);
            if c {
                big_b += big_a;
            }
            let b_bytes = big_b.compress().to_bytes();
            (b_bytes, kdf(tag, i, &a_bytes, &b_bytes, &(b * big_a)))
        })
        .collect();
    let mut msg = Vec::with_capacity(choices.len() * POINT_BYTES);
    let mut keys = Vec::with_capacity(choices.len());
    for (b_bytes, key) in per_ot {
        msg.extend_from_slice(&b_bytes);
        keys.push(key);
    }
    Ok((msg, keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_ot_core_delivers_the_chosen_key_only() {
        let choices: Vec<bool> = (0..16).map(|i| i % 3 == 0).collect();
        let (sender, a_msg) = BaseSender::start(9);
        let (b_msg, got) = receive(9, &a_msg, &choices).unwrap();
        let keys = sender.finish(&b_msg, choices.len()).unwrap();
        for i in 0..choices.len() {
            assert_eq!(got[i], keys[i][choices[i] as usize]);
            assert_ne!(got[i], keys[i][!choices[i] as usize]);
        }
    }

    #[test]
    fn garbage_points_are_rejected() {
        assert!(matches!(receive(0, &[0u8; 32], &[true]), Err(Error::Protocol { .. }))); // identity
        assert!(matches!(receive(0, &[0xffu8; 32], &[true]), Err(Error::Protocol { .. }))); // not canonical
        let (sender, _) = BaseSender::start(0);
        assert!(sender.finish(&[0xffu8; 32], 1).is_err());
        assert!(sender.finish(&[0u8; 31], 1).is_err());
    }
}
