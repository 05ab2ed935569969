//! The execution context of the non-linear toolkit: one party's role, channel, OT session and
//! local randomness, plus an account of every OT call (for cost reports and tests).
//!
//! All OT traffic of the toolkit goes through the `Party::cot_*`, `Party::ot_*` and
//! `Party::ot16_*`-style wrappers below, which forward to the [`Ot`] session and record the
//! call (kind, count, message bits, bytes and rounds seen on the channel during the call).
//! The toolkit's own messages (opening masked bits in [`super::toolkit::bits`]) go directly over the
//! channel. The recorded log lets a test check the exact number of OTs each protocol uses and
//! that every other byte on the wire is accounted for by the documented formula.
//!
//! Randomness: each party draws masks from a ChaCha20 generator seeded from the operating
//! system, so masks are uniform over the whole ring/field.

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::error::{Error, Result};
use crate::net::{Channel, CommStats};
use crate::ot::session::choice_bits;
use crate::ot::header::modulus_bits;
use crate::ot::{Ot, OtBackend};
use crate::share::Role;

/// Largest batch processed in one go; longer vectors are split (bounds the memory of the
/// 1-out-of-16 OT messages and of the bit decompositions in multiplication).
pub const CHUNK: usize = 1 << 15;

/// The kind of an OT call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OtKind {
    /// Correlated 1-out-of-2 OT over Z_{2^bits}.
    Correlated,
    /// Correlated OTs in groups of `bits` whose widths step down from `bits` to 1
    /// (`Ot::send_correlated_staircase`; a Gilboa product's bits).
    Staircase,
    /// Chosen-message 1-out-of-2 OT with `bits`-bit messages.
    Chosen,
    /// Chosen-message 1-out-of-N OT (N given) with `bits`-bit messages.
    OneOfN(usize),
}

/// One recorded OT call, as seen by this party.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OtCall {
    pub kind: OtKind,
    /// Whether this party was the OT sender.
    pub sender: bool,
    /// Number of OTs in the batch.
    pub count: usize,
    /// Message length in bits.
    pub bits: u32,
    /// Channel traffic during the call (bytes and flights).
    pub stats: CommStats,
}

/// One party's handle on a two-party computation.
pub struct Party<'a> {
    pub role: Role,
    pub ch: &'a mut dyn Channel,
    pub ot: &'a mut dyn Ot,
    rng: ChaCha20Rng,
    log: Vec<OtCall>,
}

impl<'a> Party<'a> {
    /// A party with randomness seeded from the operating system.
    pub fn new(role: Role, ch: &'a mut dyn Channel, ot: &'a mut dyn Ot) -> Party<'a> {
        Party { role, ch, ot, rng: ChaCha20Rng::from_os_rng(), log: Vec::new() }
    }

    pub fn is_server(&self) -> bool {
        self.role.is_server()
    }

    /// This party's mask generator (cryptographically secure).
    pub fn rng(&mut self) -> &mut ChaCha20Rng {
        &mut self.rng
    }

    pub fn stats(&self) -> CommStats {
        self.ch.stats()
    }

    /// Every OT call made so far.
    pub fn ot_log(&self) -> &[OtCall] {
        &self.log
    }

    /// The OTs this party's calls from log position `from` on ran, as 1-of-2 random OTs
    /// ([`Cost::random_ot_equivalents`]: a backend-free count; 0 if the log was cleared since).
    pub fn ot_equivalents_since(&self, from: usize) -> u64 {
        let mut c = Cost::default();
        for call in self.log.get(from..).unwrap_or(&[]) {
            c.add_ot(call.kind, call.bits, call.count);
        }
        c.random_ot_equivalents()
    }

    /// Forget the OT log (e.g. after a setup phase).
    pub fn clear_ot_log(&mut self) {
        self.log.clear();
    }

    fn record<T>(&mut self, kind: OtKind, sender: bool, count: usize, bits: u32, f: impl FnOnce(&mut dyn Ot, &mut dyn Channel) -> Result<T>) -> Result<T> {
        let before = self.ch.stats();
        let out = f(&mut *self.ot, &mut *self.ch)?;
        let stats = self.ch.stats().since(&before);
        self.log.push(OtCall { kind, sender, count, bits, stats });
        Ok(out)
    }

    /// Correlated OT, sender side: returns the uniform `x_i`; the receiver gets `x_i + c_i·Δ_i`.
    pub fn cot_send(&mut self, deltas: &[u64], bits: u32) -> Result<Vec<u64>> {
        self.batch("correlated OT (sender)", OtKind::Correlated, true, deltas.len(), bits, |ot, ch| ot.send_correlated(ch, deltas, bits))
    }

    /// Correlated OT, receiver side, with 0/1 choice bytes.
    pub fn cot_recv(&mut self, choices: &[u8], bits: u32) -> Result<Vec<u64>> {
        let c = to_bools(choices);
        self.batch("correlated OT (receiver)", OtKind::Correlated, false, c.len(), bits, |ot, ch| ot.recv_correlated(ch, &c, bits))
    }

    /// Correlated OT over Z_p, sender side: uniform `x_i ∈ Z_p`; the receiver gets
    /// `x_i + c_i·Δ_i mod p`. Costed as a correlated OT of `bits(p)` bits (one random OT
    /// plus one message of that width).
    pub fn cot_send_mod(&mut self, deltas: &[u64], p: u64) -> Result<Vec<u64>> {
        self.batch("correlated OT mod p (sender)", OtKind::Correlated, true, deltas.len(), modulus_bits(p), |ot, ch| ot.send_correlated_mod(ch, deltas, p))
    }

    /// Correlated OT over Z_p, receiver side, with 0/1 choice bytes.
    pub fn cot_recv_mod(&mut self, choices: &[u8], p: u64) -> Result<Vec<u64>> {
        let c = to_bools(choices);
        self.batch("correlated OT mod p (receiver)", OtKind::Correlated, false, c.len(), modulus_bits(p), |ot, ch| ot.recv_correlated_mod(ch, &c, p))
    }

    /// Correlated OT with decreasing widths, sender side: instance i over Z_{2^(bits − i mod bits)}.
    pub fn cot_send_staircase(&mut self, deltas: &[u64], bits: u32) -> Result<Vec<u64>> {
        self.batch("correlated OT (sender)", OtKind::Staircase, true, deltas.len(), bits, |ot, ch| ot.send_correlated_staircase(ch, deltas, bits))
    }

    /// Correlated OT with decreasing widths, receiver side, with 0/1 choice bytes.
    pub fn cot_recv_staircase(&mut self, choices: &[u8], bits: u32) -> Result<Vec<u64>> {
        let c = to_bools(choices);
        self.batch("correlated OT (receiver)", OtKind::Staircase, false, c.len(), bits, |ot, ch| ot.recv_correlated_staircase(ch, &c, bits))
    }

    /// One recorded OT call with one output per instance: an empty batch sends nothing, and
    /// the OT layer's output length is checked (`what` names the call in the error).
    fn batch(&mut self, what: &str, kind: OtKind, sender: bool, len: usize, bits: u32, f: impl FnOnce(&mut dyn Ot, &mut dyn Channel) -> Result<Vec<u64>>) -> Result<Vec<u64>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let out = self.record(kind, sender, len, bits, f)?;
        expect_len(what, &out, len)?;
        Ok(out)
    }

    /// Chosen-message 1-out-of-2 OT, sender side.
    pub fn ot_send(&mut self, msgs: &[[u64; 2]], bits: u32) -> Result<()> {
        if msgs.is_empty() {
            return Ok(());
        }
        self.record(OtKind::Chosen, true, msgs.len(), bits, |ot, ch| ot.send_chosen(ch, msgs, bits))
    }

    /// Chosen-message 1-out-of-2 OT, receiver side, with 0/1 choice bytes.
    pub fn ot_recv(&mut self, choices: &[u8], bits: u32) -> Result<Vec<u64>> {
        let c = to_bools(choices);
        self.batch("chosen OT (receiver)", OtKind::Chosen, false, c.len(), bits, |ot, ch| ot.recv_chosen(ch, &c, bits))
    }

    /// 1-out-of-`n` OT, sender side (`msgs` row-major, `batch × n`).
    pub fn ot_n_send(&mut self, msgs: &[u64], n: usize, bits: u32) -> Result<()> {
        if msgs.is_empty() {
            return Ok(());
        }
        let count = msgs.len() / n.max(1);
        self.record(OtKind::OneOfN(n), true, count, bits, |ot, ch| ot.send_1_of_n(ch, msgs, n, bits))
    }

    /// 1-out-of-`n` OT, receiver side.
    pub fn ot_n_recv(&mut self, choices: &[u8], n: usize, bits: u32) -> Result<Vec<u64>> {
        self.batch("1-out-of-N OT (receiver)", OtKind::OneOfN(n), false, choices.len(), bits, |ot, ch| ot.recv_1_of_n(ch, choices, n, bits))
    }
}

fn to_bools(bits: &[u8]) -> Vec<bool> {
    bits.iter().map(|&b| b & 1 == 1).collect()
}

fn expect_len(step: &str, got: &[u64], want: usize) -> Result<()> {
    if got.len() != want {
        return Err(Error::protocol(step, format!("OT returned {} values for a batch of {want}", got.len())));
    }
    Ok(())
}

/// Check that two input vectors of one protocol call have the same length.
pub(crate) fn same_len(step: &str, a: usize, b: usize) -> Result<()> {
    if a != b {
        return Err(Error::Input(format!("{step}: operand lengths differ ({a} vs {b})")));
    }
    Ok(())
}

/// Sum of the OT calls of one kind in a log: (number of OTs, bytes sent + received).
pub fn ot_totals(log: &[OtCall], kind: OtKind, bits: u32) -> (usize, u64) {
    log.iter()
        .filter(|c| c.kind == kind && c.bits == bits)
        .fold((0, 0), |(n, b), c| (n + c.count, b + c.stats.total_bytes()))
}

/// Total channel traffic spent inside OT calls.
pub fn ot_bytes(log: &[OtCall]) -> u64 {
    log.iter().map(|c| c.stats.total_bytes()).sum()
}

/// The documented cost of a protocol call: OTs by kind and message width, plus the toolkit's
/// own (non-OT) bytes, counted in both directions. Byte cost of the OTs themselves is whatever
/// the OT layer charges per OT (measured in the benchmark).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// (bits → number of OTs) of 1-out-of-2 correlated OTs.
    pub correlated: std::collections::BTreeMap<u32, usize>,
    /// (top bits → number of OTs) of decreasing-width correlated OTs (whole groups of `bits`).
    pub staircase: std::collections::BTreeMap<u32, usize>,
    /// (bits → number of OTs) of chosen-message 1-out-of-2 OTs.
    pub chosen: std::collections::BTreeMap<u32, usize>,
    /// ((N, bits) → number of OTs) of 1-out-of-N OTs.
    pub one_of_n: std::collections::BTreeMap<(usize, u32), usize>,
    /// Bytes of the toolkit's own messages (both directions).
    pub own_bytes: u64,
    /// The sequence of communication steps (documented costs only; empty when observed).
    pub steps: Vec<Step>,
}

/// One sequential communication step of a protocol, for counting rounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// An OT batch with the server as sender (receiver's flight, then the sender's).
    OtServerSends,
    /// An OT batch with the client as sender.
    OtClientSends,
    /// An opening exchange: the server sends, then the client.
    Exchange,
}

impl Step {
    /// The server's flight directions (`true` = send) in this step.
    fn server_dirs(self) -> [bool; 2] {
        match self {
            Step::OtServerSends => [false, true],
            Step::OtClientSends | Step::Exchange => [true, false],
        }
    }
}

/// Flights (maximal same-direction runs) of a step sequence, counted from a fresh channel.
/// The client's count is the same (its directions are the mirror image). This assumes the OT
/// layer's two-flight pattern per batch: receiver → sender, then sender → receiver.
pub fn flights(steps: &[Step]) -> u64 {
    let mut last = None;
    let mut n = 0;
    for dir in steps.iter().flat_map(|s| s.server_dirs()) {
        if last != Some(dir) {
            n += 1;
            last = Some(dir);
        }
    }
    n
}

impl Cost {
    pub fn cot(bits: u32, count: usize) -> Cost {
        let mut c = Cost::default();
        c.add_ot(OtKind::Correlated, bits, count);
        c
    }
    /// `count` decreasing-width correlated OTs in groups of `bits` (a Gilboa product's bits).
    pub fn staircase(bits: u32, count: usize) -> Cost {
        let mut c = Cost::default();
        c.add_ot(OtKind::Staircase, bits, count);
        c
    }
    pub fn chosen(bits: u32, count: usize) -> Cost {
        let mut c = Cost::default();
        c.add_ot(OtKind::Chosen, bits, count);
        c
    }
    pub fn one_of_n(n: usize, bits: u32, count: usize) -> Cost {
        let mut c = Cost::default();
        c.add_ot(OtKind::OneOfN(n), bits, count);
        c
    }
    pub fn own(bytes: u64) -> Cost {
        Cost { own_bytes: bytes, ..Cost::default() }
    }
    fn add_ot(&mut self, kind: OtKind, bits: u32, count: usize) {
        if count == 0 {
            return;
        }
        match kind {
            OtKind::Correlated => *self.correlated.entry(bits).or_default() += count,
            OtKind::Staircase => *self.staircase.entry(bits).or_default() += count,
            OtKind::Chosen => *self.chosen.entry(bits).or_default() += count,
            OtKind::OneOfN(n) => *self.one_of_n.entry((n, bits)).or_default() += count,
        }
    }
    /// What one party observed: its OT log and its total traffic over the same region.
    pub fn observed(log: &[OtCall], total: CommStats) -> Cost {
        let mut c = Cost::own(total.total_bytes() - ot_bytes(log));
        for call in log {
            c.add_ot(call.kind, call.bits, call.count);
        }
        c
    }
    /// Append communication steps (for the round count).
    pub fn then(mut self, steps: &[Step]) -> Cost {
        self.steps.extend_from_slice(steps);
        self
    }
    /// Documented number of flights (see [`flights`]).
    pub fn rounds(&self) -> u64 {
        flights(&self.steps)
    }
    /// The same cost without its step list (to compare with an observed cost).
    pub fn without_steps(&self) -> Cost {
        Cost { steps: Vec::new(), ..self.clone() }
    }
    /// Total number of OTs of all kinds.
    pub fn ot_count(&self) -> usize {
        self.correlated.values().chain(self.staircase.values()).chain(self.chosen.values()).chain(self.one_of_n.values()).sum()
    }

    /// The OTs as 1-of-2 random OTs (a 1-of-N OT counts `⌈log2 N⌉`): a backend-free measure.
    pub fn random_ot_equivalents(&self) -> u64 {
        let one_of_n: u64 = self.one_of_n.iter().map(|(&(k, _), &n)| choice_bits(k) as u64 * n as u64).sum();
        (self.correlated.values().chain(self.staircase.values()).chain(self.chosen.values()).sum::<usize>()) as u64 + one_of_n
    }

    /// Bytes (both directions) on an OT backend by its cost table: the toolkit's own bytes plus
    /// every OT at [`OtBackend::bytes_per_ot`] (batch headers left out).
    pub fn bytes_on(&self, backend: OtBackend) -> f64 {
        let correlated: f64 = self.correlated.iter().map(|(&b, &n)| n as f64 * backend.bytes_per_ot(1, b as u64)).sum();
        // A staircase group of b OTs carries b(b + 1)/2 payload bits.
        let staircase: f64 = self.staircase.iter().map(|(&b, &n)| n as f64 * backend.bytes_per_ot(1, 0) + crate::ot::staircase_payload_bits(n, b) as f64 / 8.0).sum();
        let chosen: f64 = self.chosen.iter().map(|(&b, &n)| n as f64 * backend.bytes_per_ot(1, 2 * b as u64)).sum();
        let one_of_n: f64 = self.one_of_n.iter().map(|(&(k, b), &n)| n as f64 * backend.bytes_per_one_of_n(k, (k as u64) * b as u64)).sum();
        self.own_bytes as f64 + correlated + staircase + chosen + one_of_n
    }
}

impl std::ops::Add for Cost {
    type Output = Cost;
    fn add(mut self, o: Cost) -> Cost {
        for (&b, &n) in &o.correlated {
            self.add_ot(OtKind::Correlated, b, n);
        }
        for (&b, &n) in &o.staircase {
            self.add_ot(OtKind::Staircase, b, n);
        }
        for (&b, &n) in &o.chosen {
            self.add_ot(OtKind::Chosen, b, n);
        }
        for (&(k, b), &n) in &o.one_of_n {
            self.add_ot(OtKind::OneOfN(k), b, n);
        }
        self.own_bytes += o.own_bytes;
        self.steps.extend(o.steps);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_on_a_backend_follow_the_per_ot_tables() {
        // The OT benchmark's per-OT figures (results/recorded/ot-bench.json): IKNP correlated
        // ℓ = 37 is 16 + 37/8 B, a 1-of-16 OT with 2-bit messages a KK13 row and the table,
        // 32 + 16·2/8 = 36 B, a 1-of-4 OT with 1-bit messages 2·16 + 4/8 = 32.5 B.
        let c = Cost::cot(37, 1000) + Cost::one_of_n(16, 2, 10) + Cost::own(5);
        assert_eq!(c.bytes_on(OtBackend::Iknp), 5.0 + 1000.0 * (16.0 + 37.0 / 8.0) + 10.0 * 36.0);
        assert_eq!((Cost::one_of_n(4, 1, 2) + Cost::one_of_n(5, 1, 2)).bytes_on(OtBackend::Iknp), 2.0 * 32.5 + 2.0 * (32.0 + 5.0 / 8.0));
        assert_eq!(c.random_ot_equivalents(), 1000 + 10 * 4);
        // Silent: one correction bit and the generator's share per random OT, then the payload.
        let gen = 0.125 + 114_048.0 / 1_077_912.0;
        let want = 5.0 + 1000.0 * (gen + 37.0 / 8.0) + 10.0 * (4.0 * gen + 4.0);
        assert!((c.bytes_on(OtBackend::Silent) - want).abs() < 1e-6);
        assert_eq!(choice_bits(16), 4);
        assert_eq!(choice_bits(17), 5);
    }
}
