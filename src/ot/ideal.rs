//! **INSECURE** ideal OT test double. Compiled only for tests or with the
//! `insecure-test-doubles` feature; never used by the binary.
//!
//! Functionality: the same as [`Ot`] (chosen 1-of-2, correlated over Z_{2^bits}, chosen
//! 1-of-N), but the sender simply sends *all* messages in the clear and the receiver picks
//! the one it chose. The receiver's choices stay local, but the receiver learns every
//! message: there is no sender privacy at all. It exists so that protocols built on [`Ot`]
//! can be composed and tested quickly, without base OTs or OT extension.
//!
//! Message flow (the same flights, in the same directions, as the real
//! [`OtSession`](super::OtSession), so deadlocks or mis-ordered calls show up with either):
//! 1. receiver → sender: the 8-byte batch header (kind, bits, N, length), checked by the
//!    sender;
//! 2. sender → receiver: all messages, bit-packed at `bits` bits (chosen: 2 per OT;
//!    correlated: `x` and `x + delta` per OT, `x` uniform; 1-of-N: N per OT).
//!
//! Empty batches exchange nothing. Rounds per call: 2. Bytes per call:
//! 8 + ⌈len·k·bits/8⌉ with k = 2 (chosen, correlated) or N (1-of-N).
//!
//! Security: none (sender privacy is void by construction). Do not use outside tests.

use rand::Rng;

use super::header::{check_choices, mask, rows_of, BatchHeader, OtKind};
use super::Ot;
use crate::error::Result;
use crate::net::Channel;

/// The insecure ideal OT endpoint. Stateless; either party may act as sender or receiver.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdealOt;

impl IdealOt {
    pub fn new() -> IdealOt {
        IdealOt
    }

    /// Sender: check the receiver's header, then send all rows in the clear.
    fn send_rows(ch: &mut dyn Channel, header: BatchHeader, rows: &[u64]) -> Result<()> {
        if header.len == 0 {
            return Ok(());
        }
        header.expect(ch)?;
        ch.send_packed(rows, header.bits)
    }

    /// Receiver: announce the batch, receive all rows, keep the chosen entry of each.
    fn recv_rows(ch: &mut dyn Channel, header: BatchHeader, choice: impl Fn(usize) -> usize) -> Result<Vec<u64>> {
        if header.len == 0 {
            return Ok(Vec::new());
        }
        header.send(ch)?;
        let all = ch.recv_packed(header.len * header.arity, header.bits)?;
        Ok((0..header.len).map(|i| all[i * header.arity + choice(i)]).collect())
    }
}

impl Ot for IdealOt {
    fn send_chosen(&mut self, ch: &mut dyn Channel, msgs: &[[u64; 2]], bits: u32) -> Result<()> {
        let header = BatchHeader::new(OtKind::Chosen, bits, 2, msgs.len())?;
        let rows: Vec<u64> = msgs.iter().flat_map(|m| m.iter().copied()).collect();
        Self::send_rows(ch, header, &rows)
    }

    fn recv_chosen(&mut self, ch: &mut dyn Channel, choices: &[bool], bits: u32) -> Result<Vec<u64>> {
        let header = BatchHeader::new(OtKind::Chosen, bits, 2, choices.len())?;
        Self::recv_rows(ch, header, |i| choices[i] as usize)
    }

    fn send_correlated(&mut self, ch: &mut dyn Channel, deltas: &[u64], bits: u32) -> Result<Vec<u64>> {
        let header = BatchHeader::new(OtKind::Correlated, bits, 2, deltas.len())?;
        let m = mask(bits);
        let mut rng = rand::rng();
        let xs: Vec<u64> = deltas.iter().map(|_| rng.random::<u64>() & m).collect();
        let rows: Vec<u64> = xs.iter().zip(deltas).flat_map(|(&x, &d)| [x, x.wrapping_add(d) & m]).collect();
        Self::send_rows(ch, header, &rows)?;
        Ok(xs)
    }

    fn recv_correlated(&mut self, ch: &mut dyn Channel, choices: &[bool], bits: u32) -> Result<Vec<u64>> {
        let header = BatchHeader::new(OtKind::Correlated, bits, 2, choices.len())?;
        Self::recv_rows(ch, header, |i| choices[i] as usize)
    }

    fn send_1_of_n(&mut self, ch: &mut dyn Channel, msgs: &[u64], n: usize, bits: u32) -> Result<()> {
        let len = rows_of(msgs, n)?;
        let header = BatchHeader::new(OtKind::OneOfN, bits, n, len)?;
        Self::send_rows(ch, header, msgs)
    }

    fn recv_1_of_n(&mut self, ch: &mut dyn Channel, choices: &[u8], n: usize, bits: u32) -> Result<Vec<u64>> {
        let header = BatchHeader::new(OtKind::OneOfN, bits, n, choices.len())?;
        check_choices(choices, n)?;
        Self::recv_rows(ch, header, |i| choices[i] as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::net::run_pair;

    fn test_rng() -> rand_chacha::ChaCha20Rng {
        use rand::SeedableRng;
        rand_chacha::ChaCha20Rng::seed_from_u64(5)
    }

    #[test]
    fn ideal_ot_delivers_chosen_correlated_and_1_of_n() {
        let mut rng = test_rng();
        let len = 129;
        let bits = 37;
        let m = mask(bits);
        let msgs: Vec<[u64; 2]> = (0..len).map(|_| [rng.random::<u64>() & m, rng.random::<u64>() & m]).collect();
        let choices: Vec<bool> = (0..len).map(|_| rng.random()).collect();
        let deltas: Vec<u64> = (0..len).map(|_| rng.random::<u64>() & m).collect();
        let n = 16;
        let rows: Vec<u64> = (0..len * n).map(|_| rng.random::<u64>() & m).collect();
        let digits: Vec<u8> = (0..len).map(|_| rng.random_range(0..n as u8)).collect();

        let (msgs2, deltas2, rows2, choices2, digits2) =
            (msgs.clone(), deltas.clone(), rows.clone(), choices.clone(), digits.clone());
        let out = run_pair(
            move |ch| {
                let mut ot = IdealOt::new();
                ot.send_chosen(ch, &msgs2, bits)?;
                let xs = ot.send_correlated(ch, &deltas2, bits)?;
                ot.send_1_of_n(ch, &rows2, n, bits)?;
                // Roles swap: the server now receives.
                let back = ot.recv_chosen(ch, &[true, false], 64)?;
                Ok((xs, back))
            },
            move |ch| {
                let mut ot = IdealOt::new();
                let got = ot.recv_chosen(ch, &choices2, bits)?;
                let cot = ot.recv_correlated(ch, &choices2, bits)?;
                let picked = ot.recv_1_of_n(ch, &digits2, n, bits)?;
                ot.send_chosen(ch, &[[1, u64::MAX], [3, 4]], 64)?;
                Ok((got, cot, picked))
            },
        )
        .unwrap();
        let (xs, back) = out.server;
        let (got, cot, picked) = out.client;
        assert_eq!(back, vec![u64::MAX, 3]);
        for i in 0..len {
            assert_eq!(got[i], msgs[i][choices[i] as usize]);
            let expect = if choices[i] { xs[i].wrapping_add(deltas[i]) & m } else { xs[i] };
            assert_eq!(cot[i], expect);
            assert_eq!(picked[i], rows[i * n + digits[i] as usize]);
        }
        // Two flights per call (receiver's header, sender's messages); the server's last send
        // and its header for the swapped call form one flight: 2 + 2 + 2 + 1.
        assert_eq!(out.server_stats.rounds, 7);
    }

    #[test]
    fn ideal_ot_detects_mismatched_calls() {
        let res = run_pair(
            |ch| IdealOt.send_chosen(ch, &[[1, 2]; 3], 8),
            |ch| IdealOt.recv_chosen(ch, &[true; 4], 8),
        );
        assert!(matches!(res, Err(Error::Protocol { .. })), "{res:?}");
    }
}
