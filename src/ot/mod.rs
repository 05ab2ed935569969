//! Oblivious transfer: base OT, IKNP OT extension, 1-out-of-N OT.
//!
//! The interface every higher protocol uses is the [`Ot`] trait: one party's endpoint of an
//! established OT session that can act as sender or as receiver (both directions are set up
//! once, at session start, with base OTs). Messages are at most 64 bits, which covers ring
//! elements of Z_{2^ℓ} (ℓ ≤ 64) and field elements of Z_p (p < 2^62).
//!
//! Both parties must call matching methods in the same order (sender side on one party,
//! receiver side on the other), with equal batch lengths, `n` and `bits`.

pub mod header;
#[cfg(any(test, feature = "insecure-test-doubles"))]
pub mod ideal;

use crate::error::Result;
use crate::net::Channel;

/// One party's endpoint of an OT session.
pub trait Ot: Send {
    /// Chosen-message 1-out-of-2 OT: the receiver with choice `c_i` learns `msgs[i][c_i]`.
    /// Only the low `bits` bits of each message are transferred.
    fn send_chosen(&mut self, ch: &mut dyn Channel, msgs: &[[u64; 2]], bits: u32) -> Result<()>;
    fn recv_chosen(&mut self, ch: &mut dyn Channel, choices: &[bool], bits: u32) -> Result<Vec<u64>>;

    /// Correlated OT over Z_{2^bits}: the sender obtains uniform `x_i` (returned) and the
    /// receiver obtains `x_i + c_i * delta_i mod 2^bits`.
    fn send_correlated(&mut self, ch: &mut dyn Channel, deltas: &[u64], bits: u32) -> Result<Vec<u64>>;
    fn recv_correlated(&mut self, ch: &mut dyn Channel, choices: &[bool], bits: u32) -> Result<Vec<u64>>;

    /// Chosen-message 1-out-of-N OT with short messages. `msgs` is row-major, `msgs.len()`
    /// = batch × n; the receiver with choice `c_i < n` learns `msgs[i * n + c_i]`.
    fn send_1_of_n(&mut self, ch: &mut dyn Channel, msgs: &[u64], n: usize, bits: u32) -> Result<()>;
    fn recv_1_of_n(&mut self, ch: &mut dyn Channel, choices: &[u8], n: usize, bits: u32) -> Result<Vec<u64>>;
}
