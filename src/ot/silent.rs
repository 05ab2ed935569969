//! [`SilentOt`]: the [`Ot`] trait on silent correlated OTs ([`super::ferret`]), one generator
//! per direction, bootstrapped from the session's IKNP.
//!
//! ## Derandomisation (per OT, with a buffered COT `K_i` / `(b_i, M_i = K_i ⊕ b_i·Δ)`)
//! The receiver sends `d_i = c_i ⊕ b_i` (one bit); the sender's two pads are
//! `P_i^j = H(K_i ⊕ (j ⊕ d_i)·Δ, tw_i)`, and the receiver's `H(M_i, tw_i)` equals `P_i^{c_i}`.
//! * chosen 1-of-2: the sender sends `m_i^j ⊕ P_i^j` for j = 0, 1;
//! * correlated over Z_{2^ℓ}: `x_i = P_i^0`, the sender sends `x_i + δ_i − P_i^1`; over Z_p
//!   the same with both pads reduced mod p (one `bits(p)`-bit residue per OT);
//! * 1-of-N: `l = ⌈log2 N⌉` derandomised COTs give keys `P_{i,j}^{v_j}`; message `v` is masked
//!   with `H(⊕_j P_{i,j}^{v_j}, tw(i, v))` as in the IKNP session, and only the `l` correction
//!   bits and the `N` masked messages travel.
//!
//! ## Cost per call (n OTs, `bits`-bit messages, empty batches cost nothing)
//! | call | receiver → sender | sender → receiver | flights |
//! |---|---|---|---|
//! | chosen 1-of-2 | 8 + ⌈n/8⌉ | ⌈2n·bits/8⌉ | 2 |
//! | correlated (mod 2^bits or mod p) | 8 + ⌈n/8⌉ | ⌈n·bits/8⌉ | 2 |
//! | 1-of-N | 8 + ⌈n·l/8⌉ | ⌈n·N·bits/8⌉ | 2 |
//! plus, when the direction's buffer runs short, the generator's refill
//! ([`super::ferret::refill_bytes`]: 169,360 bytes for the first 1,077,912 COTs of a
//! direction, 114,056 bytes per further 1,077,912), which adds the refill's flights to that call. The
//! receiver sends the header and the corrections in one flight when no refill is due.
//!
//! ## Security (semi-honest)
//! The sender sees `d = c ⊕ b` with `b` the generator's pseudorandom choice bits (LPN), so `c`
//! is hidden. The receiver knows `M_i` only; the unchosen pad `H(K_i ⊕ (1 ⊕ b_i)·Δ) =
//! H(M_i ⊕ Δ)` is pseudorandom when `H` is tweakable correlation robust (fixed-key AES, unique
//! tweak per COT: a domain tag and the direction's global COT index), exactly as for IKNP's
//! rows, so the unchosen messages are hidden. Pads are full-width, so masked messages and
//! correlated outputs are uniform over Z_{2^bits}.


use super::ferret::{CotReceiver, CotSender};
use super::header::{check_choices, mask, rows_of, BatchHeader, OtKind, Widths};
use super::prg::{Crh, DOMAIN_SILENT, DOMAIN_SILENT_ONE_OF_N};
use super::session::{choice_bits, hash_par, mask_one_of_n, OtSession};
use super::Ot;
use crate::error::Result;
use crate::net::Channel;
use crate::share::Role;

/// One party's silent OT endpoint: COT sender toward the peer and COT receiver from it.
pub struct SilentOt {
    role: Role,
    iknp: OtSession,
    sender: CotSender,
    receiver: CotReceiver,
    crh: Crh,
}

fn cot_tweak(index: u64) -> u128 {
    DOMAIN_SILENT | index as u128
}

/// Tweak of the 1-of-N pad of the OT whose first sub-COT has index `first_sub`, for index `v`.
fn one_of_n_tweak(first_sub: u64, v: usize) -> u128 {
    DOMAIN_SILENT_ONE_OF_N | (first_sub as u128) << 9 | v as u128
}

fn bits_to_u64(bits: impl Iterator<Item = bool>) -> Vec<u64> {
    bits.map(|b| b as u64).collect()
}

impl SilentOt {
    /// Base OTs and IKNP now; the silent generators bootstrap on first use.
    pub fn setup(ch: &mut dyn Channel, role: Role) -> Result<SilentOt> {
        let iknp = OtSession::setup_iknp(ch, role)?;
        let sender = CotSender::new(iknp.sender_delta());
        Ok(SilentOt { role, iknp, sender, receiver: CotReceiver::new(), crh: Crh::default() })
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Fill both directions' buffers to at least `m` correlations now (the server's sending
    /// direction first), so later calls do not pay for refills. Both parties call it with
    /// the same `m`.
    pub fn prefill(&mut self, ch: &mut dyn Channel, m: usize) -> Result<()> {
        if self.role.is_server() {
            self.sender.ensure(ch, &mut self.iknp, m)?;
            self.receiver.ensure(ch, &mut self.iknp, m)
        } else {
            self.receiver.ensure(ch, &mut self.iknp, m)?;
            self.sender.ensure(ch, &mut self.iknp, m)
        }
    }

    /// Correlations buffered as (sender, receiver).
    pub fn buffered(&self) -> (usize, usize) {
        (self.sender.available(), self.receiver.available())
    }

    /// The next `m` random correlations of this party's sending direction, `(K_i)` with `Δ`
    /// (refilling as needed; the peer calls [`Self::random_cots_recv`] with the same `m`).
    pub fn random_cots_send(&mut self, ch: &mut dyn Channel, m: usize) -> Result<(Vec<u128>, u128)> {
        self.sender.ensure(ch, &mut self.iknp, m)?;
        let delta = self.sender.delta();
        let (k, _) = self.sender.take(m)?;
        Ok((k.to_vec(), delta))
    }

    /// The peer's side of [`Self::random_cots_send`]: `(b_i, M_i = K_i ⊕ b_i·Δ)`.
    pub fn random_cots_recv(&mut self, ch: &mut dyn Channel, m: usize) -> Result<(Vec<bool>, Vec<u128>)> {
        self.receiver.ensure(ch, &mut self.iknp, m)?;
        let (b, mm, _) = self.receiver.take(m)?;
        Ok((b.to_vec(), mm.to_vec()))
    }

    /// Receiver half: announce, refill if due, send the corrections `c ⊕ b`; returns the pads
    /// `H(M_i)` and the index of the first COT.
    fn derand_recv(&mut self, ch: &mut dyn Channel, header: BatchHeader, choices: &[bool]) -> Result<(Vec<u128>, u64)> {
        let m = choices.len();
        header.send(ch)?;
        self.receiver.ensure(ch, &mut self.iknp, m)?;
        let (b, mm, first) = self.receiver.take(m)?;
        let d = bits_to_u64(choices.iter().zip(b).map(|(&c, &b)| c ^ b));
        let mut pads = mm.to_vec();
        ch.send_packed(&d, 1)?;
        hash_par(&self.crh, &mut pads, |i| cot_tweak(first + i as u64));
        Ok((pads, first))
    }

    /// Sender half: check the announcement, refill if due, read the corrections; returns
    /// both pads of every OT and the index of the first COT.
    fn derand_send(&mut self, ch: &mut dyn Channel, header: BatchHeader, m: usize) -> Result<(Vec<u128>, Vec<u128>, u64)> {
        header.expect(ch)?;
        self.sender.ensure(ch, &mut self.iknp, m)?;
        let delta = self.sender.delta();
        let (k, first) = self.sender.take(m)?;
        let d = ch.recv_packed(m, 1)?;
        let mut p0: Vec<u128> = k.iter().zip(&d).map(|(&k, &d)| if d == 1 { k ^ delta } else { k }).collect();
        let mut p1: Vec<u128> = p0.iter().map(|&x| x ^ delta).collect();
        hash_par(&self.crh, &mut p0, |i| cot_tweak(first + i as u64));
        hash_par(&self.crh, &mut p1, |i| cot_tweak(first + i as u64));
        Ok((p0, p1, first))
    }
}

impl SilentOt {
    /// Correlated OT with the widths `w` from stored correlations: y = x + δ − P¹ per instance;
    /// the receiver with c = 1 adds it to P¹ and gets x + δ.
    fn send_cot(&mut self, ch: &mut dyn Channel, deltas: &[u64], w: Widths) -> Result<Vec<u64>> {
        let n = deltas.len();
        let header = w.header(n)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        ch.set_phase("correlated OT (silent sender)");
        let (p0, p1, _) = self.derand_send(ch, header, n)?;
        let (xs, y) = w.correlate(&p0, &p1, deltas);
        w.send(ch, &y)?;
        Ok(xs)
    }

    fn recv_cot(&mut self, ch: &mut dyn Channel, choices: &[bool], w: Widths) -> Result<Vec<u64>> {
        let n = choices.len();
        let header = w.header(n)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        ch.set_phase("correlated OT (silent receiver)");
        let (h, _) = self.derand_recv(ch, header, choices)?;
        let y = w.recv(ch, n)?;
        Ok(w.decorrelate(&h, &y, choices))
    }
}

impl Ot for SilentOt {
    fn send_chosen(&mut self, ch: &mut dyn Channel, msgs: &[[u64; 2]], bits: u32) -> Result<()> {
        let n = msgs.len();
        let header = BatchHeader::new(OtKind::Chosen, bits, 2, n)?;
        if n == 0 {
            return Ok(());
        }
        ch.set_phase("chosen OT (silent sender)");
        let (p0, p1, _) = self.derand_send(ch, header, n)?;
        let m = mask(bits);
        let y: Vec<u64> = (0..n).flat_map(|i| [(msgs[i][0] ^ p0[i] as u64) & m, (msgs[i][1] ^ p1[i] as u64) & m]).collect();
        ch.send_packed(&y, bits)
    }

    fn recv_chosen(&mut self, ch: &mut dyn Channel, choices: &[bool], bits: u32) -> Result<Vec<u64>> {
        let n = choices.len();
        let header = BatchHeader::new(OtKind::Chosen, bits, 2, n)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        ch.set_phase("chosen OT (silent receiver)");
        let (h, _) = self.derand_recv(ch, header, choices)?;
        let y = ch.recv_packed(2 * n, bits)?;
        let m = mask(bits);
        Ok((0..n).map(|i| (y[2 * i + choices[i] as usize] ^ h[i] as u64) & m).collect())
    }

    fn send_correlated(&mut self, ch: &mut dyn Channel, deltas: &[u64], bits: u32) -> Result<Vec<u64>> {
        self.send_cot(ch, deltas, Widths::Uniform(bits))
    }

    fn recv_correlated(&mut self, ch: &mut dyn Channel, choices: &[bool], bits: u32) -> Result<Vec<u64>> {
        self.recv_cot(ch, choices, Widths::Uniform(bits))
    }

    fn send_correlated_staircase(&mut self, ch: &mut dyn Channel, deltas: &[u64], bits: u32) -> Result<Vec<u64>> {
        self.send_cot(ch, deltas, Widths::Staircase(bits))
    }

    fn recv_correlated_staircase(&mut self, ch: &mut dyn Channel, choices: &[bool], bits: u32) -> Result<Vec<u64>> {
        self.recv_cot(ch, choices, Widths::Staircase(bits))
    }

    fn send_correlated_mod(&mut self, ch: &mut dyn Channel, deltas: &[u64], p: u64) -> Result<Vec<u64>> {
        self.send_cot(ch, deltas, Widths::Modulus(p))
    }

    fn recv_correlated_mod(&mut self, ch: &mut dyn Channel, choices: &[bool], p: u64) -> Result<Vec<u64>> {
        self.recv_cot(ch, choices, Widths::Modulus(p))
    }

    fn send_1_of_n(&mut self, ch: &mut dyn Channel, msgs: &[u64], n: usize, bits: u32) -> Result<()> {
        let len = rows_of(msgs, n)?;
        let header = BatchHeader::new(OtKind::OneOfN, bits, n, len)?;
        if len == 0 {
            return Ok(());
        }
        ch.set_phase("1-of-N OT (silent sender)");
        let l = choice_bits(n);
        let (k0, k1, first) = self.derand_send(ch, header, len * l)?;
        let m = mask(bits);
        let y = mask_one_of_n(&self.crh, msgs, n, m, &k0, &k1, |row, v| one_of_n_tweak(first + (row * l) as u64, v));
        ch.send_packed(&y, bits)
    }

    fn recv_1_of_n(&mut self, ch: &mut dyn Channel, choices: &[u8], n: usize, bits: u32) -> Result<Vec<u64>> {
        let len = choices.len();
        let header = BatchHeader::new(OtKind::OneOfN, bits, n, len)?;
        check_choices(choices, n)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        ch.set_phase("1-of-N OT (silent receiver)");
        let l = choice_bits(n);
        let sub: Vec<bool> = choices.iter().flat_map(|&c| (0..l).map(move |j| (c >> j) & 1 == 1)).collect();
        let (keys, first) = self.derand_recv(ch, header, &sub)?;
        let mut pads: Vec<u128> = (0..len).map(|i| keys[i * l..(i + 1) * l].iter().fold(0, |x, k| x ^ k)).collect();
        hash_par(&self.crh, &mut pads, |i| one_of_n_tweak(first + (i * l) as u64, choices[i] as usize));
        let y = ch.recv_packed(len * n, bits)?;
        let m = mask(bits);
        Ok((0..len).map(|i| (y[i * n + choices[i] as usize] ^ pads[i] as u64) & m).collect())
    }
}
