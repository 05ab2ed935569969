//! [`OtSession`]: base OTs in both directions once, then IKNP batches on demand; the thin
//! drivers that move the cores' messages over the [`Channel`]. Costs are in the module
//! header of [`crate::ot`].

use rand::Rng;
use rayon::prelude::*;

use super::base::{self, BaseSender, POINT_BYTES};
use super::header::{check_choices, mask, rows_of, BatchHeader, OtKind, Widths};
use super::iknp::{blocks_for, hash_rows, ExtReceiver, ExtSender, BLOCK_BYTES, KAPPA};
use super::kk13::{self, KkReceiver, KkSender, Row, CODE_BITS, ROW_BYTES};
use super::prg::{Crh, DOMAIN_ONE_OF_N};
use super::Ot;
use crate::error::{Error, Result};
use crate::net::Channel;
use crate::share::Role;

/// Direction tags of the base-OT key derivation (which party is the base-OT sender).
const TAG_SERVER_IS_BASE_SENDER: u8 = 1;
const TAG_CLIENT_IS_BASE_SENDER: u8 = 2;

/// One party's OT endpoint: extension sender toward the peer and extension receiver from it,
/// for IKNP and (unless set up without it) for KK13's 1-of-N OTs.
pub struct OtSession {
    role: Role,
    sender: ExtSender,
    receiver: ExtReceiver,
    kk: Option<(KkSender, KkReceiver)>,
    crh: Crh,
}

/// Bytes and flights of the base OTs, per party (each party sends 32 + 128·32 bytes).
pub const BASE_SETUP_BYTES_SENT: u64 = (POINT_BYTES + KAPPA * POINT_BYTES) as u64;
pub const BASE_SETUP_ROUNDS: u64 = 3;
/// Bytes and flights of the whole setup, per party: the base OTs, then the 256 random OTs of
/// the KK13 base (an 8-byte header and two 128-OT IKNP blocks), which add one flight.
pub const SETUP_BYTES_SENT: u64 = BASE_SETUP_BYTES_SENT + 8 + 2 * BLOCK_BYTES as u64;
pub const SETUP_ROUNDS: u64 = BASE_SETUP_ROUNDS + 1;

fn random_delta() -> (u128, Vec<bool>) {
    let delta: u128 = rand::rng().random();
    (delta, (0..KAPPA).map(|j| (delta >> j) & 1 == 1).collect())
}

fn recv_exact(ch: &mut dyn Channel, n: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    ch.recv_bytes(&mut buf)?;
    Ok(buf)
}

impl OtSession {
    /// Run the 2 × 128 base OTs, then the KK13 base: 256 random OTs each way on IKNP. Both
    /// parties call this at the same point with their own role.
    ///
    /// Flights: server → client `A_s`; client → server `A_c, B_c[128]`; server → client
    /// `B_s[128]` and its random-OT matrix; client → server its random-OT matrix.
    pub fn setup(ch: &mut dyn Channel, role: Role) -> Result<OtSession> {
        let mut session = OtSession::setup_iknp(ch, role)?;
        session.setup_kk13(ch)?;
        Ok(session)
    }

    /// The base OTs only: IKNP works, 1-of-N OTs for N ≥ 5 do not (the silent backend's
    /// bootstrap, which derives its own 1-of-N).
    pub fn setup_iknp(ch: &mut dyn Channel, role: Role) -> Result<OtSession> {
        ch.set_phase("OT setup (base OTs)");
        let (delta, delta_bits) = random_delta();
        let crh = Crh::default();
        let (receiver, sender) = match role {
            Role::Server => {
                let (base_sender, a_s) = BaseSender::start(TAG_SERVER_IS_BASE_SENDER);
                ch.send_bytes(&a_s)?;
                let a_c = recv_exact(ch, POINT_BYTES)?;
                let b_c = recv_exact(ch, KAPPA * POINT_BYTES)?;
                let (b_s, seeds) = base::receive(TAG_CLIENT_IS_BASE_SENDER, &a_c, &delta_bits)?;
                ch.send_bytes(&b_s)?;
                let pairs = base_sender.finish(&b_c, KAPPA)?;
                (ExtReceiver::new(&pairs)?, ExtSender::new(delta, &seeds)?)
            }
            Role::Client => {
                let a_s = recv_exact(ch, POINT_BYTES)?;
                let (b_c, seeds) = base::receive(TAG_SERVER_IS_BASE_SENDER, &a_s, &delta_bits)?;
                let (base_sender, a_c) = BaseSender::start(TAG_CLIENT_IS_BASE_SENDER);
                ch.send_bytes(&a_c)?;
                ch.send_bytes(&b_c)?;
                let b_s = recv_exact(ch, KAPPA * POINT_BYTES)?;
                let pairs = base_sender.finish(&b_s, KAPPA)?;
                (ExtReceiver::new(&pairs)?, ExtSender::new(delta, &seeds)?)
            }
        };
        Ok(OtSession { role, sender, receiver, kk: None, crh })
    }

    /// KK13's base OTs from IKNP: in each direction the KK13 sender receives 256 random OTs
    /// with a uniform choice vector `s`. The server's matrix joins its last base-OT flight.
    fn setup_kk13(&mut self, ch: &mut dyn Channel) -> Result<()> {
        ch.set_phase("OT setup (KK13 base OTs)");
        let s: Row = [rand::rng().random(), rand::rng().random()];
        let s_bits: Vec<bool> = (0..CODE_BITS).map(|j| (s[j / 128] >> (j % 128)) & 1 == 1).collect();
        let (keys, pairs) = if self.role.is_server() {
            let keys = self.recv_random(ch, &s_bits)?;
            (keys, self.send_random(ch, CODE_BITS)?)
        } else {
            let pairs = self.send_random(ch, CODE_BITS)?;
            (self.recv_random(ch, &s_bits)?, pairs)
        };
        self.kk = Some((KkSender::new(s, &keys)?, KkReceiver::new(&pairs)?));
        Ok(())
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Receiver half of one extension: announce, send `u`, return rows `t_i` and the first index.
    fn extend_as_receiver(&mut self, ch: &mut dyn Channel, header: BatchHeader, bits: &[bool]) -> Result<(Vec<u128>, u64)> {
        header.send(ch)?;
        let batch = self.receiver.extend(bits);
        ch.send_bytes(&batch.u_bytes)?;
        Ok((batch.t_rows, batch.first))
    }

    /// Sender half: check the announcement, read `u` for `m` OTs, return rows `q_i`.
    fn extend_as_sender(&mut self, ch: &mut dyn Channel, header: BatchHeader, m: usize) -> Result<(Vec<u128>, u64)> {
        header.expect(ch)?;
        let u = recv_exact(ch, blocks_for(m) * BLOCK_BYTES)?;
        self.sender.extend(&u, m)
    }

    /// The sender's two hashed messages of every row.
    fn sender_pads(&self, q: &[u128], m: usize, first: u64) -> (Vec<u128>, Vec<u128>) {
        let mut h0 = q[..m].to_vec();
        let mut h1 = q[..m].to_vec();
        hash_rows(&self.crh, &mut h0, 0, first);
        hash_rows(&self.crh, &mut h1, self.sender.delta(), first);
        (h0, h1)
    }

    fn receiver_pads(&self, t: &[u128], m: usize, first: u64) -> Vec<u128> {
        let mut h = t[..m].to_vec();
        hash_rows(&self.crh, &mut h, 0, first);
        h
    }

    /// Random OT, sender side: `n` pairs of uniform 128-bit messages. One flight (receiver → sender).
    pub fn send_random(&mut self, ch: &mut dyn Channel, n: usize) -> Result<Vec<[u128; 2]>> {
        let header = BatchHeader::new(OtKind::Random, 64, 2, n)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        ch.set_phase("random OT (sender)");
        let (q, first) = self.extend_as_sender(ch, header, n)?;
        let (h0, h1) = self.sender_pads(&q, n, first);
        Ok(h0.into_iter().zip(h1).map(|(a, b)| [a, b]).collect())
    }

    /// Random OT, receiver side: the message of each pair selected by `choices`.
    pub fn recv_random(&mut self, ch: &mut dyn Channel, choices: &[bool]) -> Result<Vec<u128>> {
        let header = BatchHeader::new(OtKind::Random, 64, 2, choices.len())?;
        if choices.is_empty() {
            return Ok(Vec::new());
        }
        ch.set_phase("random OT (receiver)");
        let (t, first) = self.extend_as_receiver(ch, header, choices)?;
        Ok(self.receiver_pads(&t, choices.len(), first))
    }
}

impl OtSession {
    /// Raw IKNP correlations for the silent generator's bootstrap, sender side: rows `q_i`
    /// with `q_i = t_i ⊕ r_i·Δ`, and this session's `Δ`. The rows are never hashed here, so
    /// they are fresh correlations for the caller.
    pub(crate) fn raw_cots_send(&mut self, ch: &mut dyn Channel, m: usize) -> Result<(Vec<u128>, u128)> {
        let header = BatchHeader::new(OtKind::RawCots, 64, 2, m)?;
        let (mut q, _) = self.extend_as_sender(ch, header, m)?;
        q.truncate(m);
        Ok((q, self.sender.delta()))
    }

    /// Receiver side of [`Self::raw_cots_send`]: rows `t_i` for the given choice bits.
    pub(crate) fn raw_cots_recv(&mut self, ch: &mut dyn Channel, choices: &[bool]) -> Result<Vec<u128>> {
        let header = BatchHeader::new(OtKind::RawCots, 64, 2, choices.len())?;
        let (mut t, _) = self.extend_as_receiver(ch, header, choices)?;
        t.truncate(choices.len());
        Ok(t)
    }

    /// This party's `Δ` as extension sender (the silent generator reuses it).
    pub(crate) fn sender_delta(&self) -> u128 {
        self.sender.delta()
    }
}

/// Pads hashed per rayon task in the 1-of-N sender.
const ONE_OF_N_TASK_BLOCKS: usize = 1 << 12;

/// Rows hashed per parallel task.
const HASH_TASK: usize = 1 << 12;

/// `rows[i] ← H(rows[i], tweak(i))`, in parallel (both OT sessions' derived pads).
pub(crate) fn hash_par(crh: &Crh, rows: &mut [u128], tweak: impl Fn(usize) -> u128 + Sync) {
    rows.par_chunks_mut(HASH_TASK).enumerate().for_each(|(c, chunk)| {
        let base = c * HASH_TASK;
        crh.hash_in_place(chunk, |i| tweak(base + i));
    });
}

/// The sender's masked 1-of-N table: entry `(i, v)` is `msgs[i·n + v] ⊕ H(⊕_j K_{i,j}^{v_j}, tweak(i, v))`
/// (low bits under `m`), where `K^0 = k0`, `K^1 = k1` hold `l = ⌈log2 n⌉` keys per row. Shared
/// by the IKNP and silent sessions.
pub(crate) fn mask_one_of_n(crh: &Crh, msgs: &[u64], n: usize, m: u64, k0: &[u128], k1: &[u128], tweak: impl Fn(usize, usize) -> u128 + Sync) -> Vec<u64> {
    let l = choice_bits(n);
    let mut y = vec![0u64; msgs.len()];
    // Rows are processed in groups so that each AES call sees a long run of blocks.
    let rows_per_task = (ONE_OF_N_TASK_BLOCKS / n).max(1);
    y.par_chunks_mut(rows_per_task * n).enumerate().for_each(|(task, out)| {
        let row0 = task * rows_per_task;
        let mut pads: Vec<u128> = (0..out.len())
            .map(|k| {
                let (i, v) = (row0 + k / n, k % n);
                (0..l).fold(0u128, |x, j| x ^ if (v >> j) & 1 == 1 { k1[i * l + j] } else { k0[i * l + j] })
            })
            .collect();
        crh.hash_in_place(&mut pads, |k| tweak(row0 + k / n, k % n));
        for (k, (o, pad)) in out.iter_mut().zip(pads).enumerate() {
            *o = (msgs[row0 * n + k] ^ pad as u64) & m;
        }
    });
    y
}

/// ⌈log2 n⌉ for n ≥ 2: the number of 1-of-2 OTs behind one 1-of-n OT.
pub fn choice_bits(n: usize) -> usize {
    (usize::BITS - (n - 1).leading_zeros()) as usize
}

/// The 1-of-N pad of row `i` for index `v`: tweak separates the domain, the OT and `v`.
fn one_of_n_tweak(first_sub_ot: u64, v: usize) -> u128 {
    DOMAIN_ONE_OF_N | (first_sub_ot as u128) << 9 | v as u128
}

impl OtSession {
    /// Correlated OT with the widths `w`: y = x + δ − H(q ⊕ Δ) per instance; the receiver with
    /// c = 1 adds it to H(q ⊕ Δ) and gets x + δ.
    fn send_cot(&mut self, ch: &mut dyn Channel, deltas: &[u64], w: Widths) -> Result<Vec<u64>> {
        let n = deltas.len();
        let header = w.header(n)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        ch.set_phase("correlated OT (sender)");
        let (q, first) = self.extend_as_sender(ch, header, n)?;
        let (h0, h1) = self.sender_pads(&q, n, first);
        let (xs, y) = w.correlate(&h0, &h1, deltas);
        w.send(ch, &y)?;
        Ok(xs)
    }

    fn recv_cot(&mut self, ch: &mut dyn Channel, choices: &[bool], w: Widths) -> Result<Vec<u64>> {
        let n = choices.len();
        let header = w.header(n)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        ch.set_phase("correlated OT (receiver)");
        let (t, first) = self.extend_as_receiver(ch, header, choices)?;
        let h = self.receiver_pads(&t, n, first);
        let y = w.recv(ch, n)?;
        Ok(w.decorrelate(&h, &y, choices))
    }
}

impl OtSession {
    fn kk13(&mut self) -> Result<&mut (KkSender, KkReceiver)> {
        self.kk.as_mut().ok_or_else(|| Error::Ot("1-of-N OT for N ≥ 5 needs a session set up with its KK13 base OTs".into()))
    }

    /// KK13 sender: check the announcement, read the receiver's rows, send the table masked
    /// with the N pads of every row.
    fn send_1_of_n_kk13(&mut self, ch: &mut dyn Channel, header: BatchHeader, msgs: &[u64], n: usize, bits: u32) -> Result<()> {
        let len = header.len;
        self.kk13()?;
        header.expect(ch)?;
        let u = recv_exact(ch, len * ROW_BYTES)?;
        let (sender, _) = self.kk13()?;
        let (q, first) = sender.extend(&u, len)?;
        let offsets = sender.offsets(n);
        let m = mask(bits);
        let crh = &self.crh;
        let mut y = vec![0u64; len * n];
        y.par_chunks_mut(ONE_OF_N_TASK_BLOCKS / n * n).enumerate().for_each(|(task, out)| {
            let row0 = task * (ONE_OF_N_TASK_BLOCKS / n);
            let inputs: Vec<Row> = (0..out.len()).map(|k| {
                let (row, v) = (q[row0 + k / n], offsets[k % n]);
                [row[0] ^ v[0], row[1] ^ v[1]]
            }).collect();
            let pads = kk13::hash_rows(crh, &inputs, |k| first + (row0 + k / n) as u64, |k| k % n);
            for (k, (o, pad)) in out.iter_mut().zip(pads).enumerate() {
                *o = (msgs[row0 * n + k] ^ pad as u64) & m;
            }
        });
        ch.send_packed(&y, bits)
    }

    /// KK13 receiver: announce, send the rows for its choices, unmask its entry of each row.
    fn recv_1_of_n_kk13(&mut self, ch: &mut dyn Channel, header: BatchHeader, choices: &[u8], n: usize, bits: u32) -> Result<Vec<u64>> {
        let len = choices.len();
        let (_, receiver) = self.kk13()?;
        let batch = receiver.extend(choices);
        header.send(ch)?;
        ch.send_bytes(&batch.u_bytes)?;
        let first = batch.first;
        let pads = kk13::hash_rows(&self.crh, &batch.t_rows, |i| first + i as u64, |i| choices[i] as usize);
        let y = ch.recv_packed(len * n, bits)?;
        let m = mask(bits);
        Ok((0..len).map(|i| (y[i * n + choices[i] as usize] ^ pads[i] as u64) & m).collect())
    }
}

impl Ot for OtSession {
    fn send_chosen(&mut self, ch: &mut dyn Channel, msgs: &[[u64; 2]], bits: u32) -> Result<()> {
        let n = msgs.len();
        let header = BatchHeader::new(OtKind::Chosen, bits, 2, n)?;
        if n == 0 {
            return Ok(());
        }
        ch.set_phase("chosen OT (sender)");
        let (q, first) = self.extend_as_sender(ch, header, n)?;
        let (h0, h1) = self.sender_pads(&q, n, first);
        let m = mask(bits);
        let y: Vec<u64> = (0..n).flat_map(|i| [(msgs[i][0] ^ h0[i] as u64) & m, (msgs[i][1] ^ h1[i] as u64) & m]).collect();
        ch.send_packed(&y, bits)
    }

    fn recv_chosen(&mut self, ch: &mut dyn Channel, choices: &[bool], bits: u32) -> Result<Vec<u64>> {
        let n = choices.len();
        let header = BatchHeader::new(OtKind::Chosen, bits, 2, n)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        ch.set_phase("chosen OT (receiver)");
        let (t, first) = self.extend_as_receiver(ch, header, choices)?;
        let h = self.receiver_pads(&t, n, first);
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
        ch.set_phase("1-of-N OT (sender)");
        if kk13::runs_on_kk13(n) {
            return self.send_1_of_n_kk13(ch, header, msgs, n, bits);
        }
        let l = choice_bits(n);
        let (q, first) = self.extend_as_sender(ch, header, len * l)?;
        let (k0, k1) = self.sender_pads(&q, len * l, first);
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
        ch.set_phase("1-of-N OT (receiver)");
        if kk13::runs_on_kk13(n) {
            return self.recv_1_of_n_kk13(ch, header, choices, n, bits);
        }
        let l = choice_bits(n);
        let sub_choices: Vec<bool> = choices.iter().flat_map(|&c| (0..l).map(move |j| (c >> j) & 1 == 1)).collect();
        let (t, first) = self.extend_as_receiver(ch, header, &sub_choices)?;
        let keys = self.receiver_pads(&t, len * l, first);
        let mut pads: Vec<u128> = (0..len).map(|i| keys[i * l..(i + 1) * l].iter().fold(0, |x, k| x ^ k)).collect();
        hash_par(&self.crh, &mut pads, |i| one_of_n_tweak(first + (i * l) as u64, choices[i] as usize));
        let y = ch.recv_packed(len * n, bits)?;
        let m = mask(bits);
        Ok((0..len).map(|i| (y[i * n + choices[i] as usize] ^ pads[i] as u64) & m).collect())
    }
}
