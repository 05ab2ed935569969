//! Oblivious transfer: base OT, IKNP OT extension, KK13 and log-construction 1-out-of-N OT.
//!
//! The interface every higher protocol uses is the [`Ot`] trait: one party's endpoint of an
//! established OT session that can act as sender or as receiver (both directions are set up
//! once, at session start, with base OTs). Messages are at most 64 bits, which covers ring
//! elements of Z_{2^ℓ} (ℓ ≤ 64) and field elements of Z_p (p < 2^62).
//!
//! Both parties must call matching methods in the same order (sender side on one party,
//! receiver side on the other), with equal batch lengths, `n` and `bits`. The receiver opens
//! every non-empty batch with an 8-byte header that the sender checks, so a mismatched call
//! fails with a clear error instead of silently returning garbage.
//!
//! ## Construction ([`OtSession`])
//! * **Base OT** ([`base`]): Chou–Orlandi "simplest OT" over Ristretto255, 128 OTs in each
//!   direction, keys from SHA-256 with domain separation (direction tag, OT index, transcript).
//! * **Extension** ([`iknp`]): IKNP with AES-128 counter-mode PRG, 128×128 block transposes
//!   ([`transpose`]) and the fixed-key AES hash `H(x, tw) = π(π(x) ⊕ tw) ⊕ π(x)` ([`prg`]).
//!   Chosen-message OT masks the messages with the two hashed rows; correlated OT sends
//!   `y = x + δ − H(q ⊕ Δ)` with `x = H(q)` (over Z_{2^bits}, or over Z_p with both hashes
//!   reduced mod p: a 128-bit hash mod p < 2^62 is uniform up to 2^-66, so `x` and `y` are
//!   uniform residues); both use the receiver's real choices directly in the extension
//!   matrix (no separate derandomisation round).
//! * **1-out-of-N**, N ≤ 4: the log2-construction (as in Naor–Pinkas and SCI's split OT):
//!   `l = ⌈log2 N⌉` random 1-of-2 OTs with keys `K_j^0, K_j^1`; message `v` is masked with
//!   `H(K_1^{v_1} ⊕ … ⊕ K_l^{v_l}, tw(i, v))`. The receiver knows only the keys of its own
//!   choice, so every other `v` differs from it by at least one unknown key: 16·l bytes per
//!   OT on the IKNP matrix.
//! * **1-out-of-N**, 5 ≤ N ≤ 256 ([`kk13`]): KK13 with the 256-bit Walsh–Hadamard code, one
//!   32-byte row per OT whatever N (half the log construction's 64 bytes at N = 16). Its 256
//!   base OTs per direction are random OTs on the IKNP extension, run once at setup.
//!
//! ## Cost per call (n OTs, messages of `bits` bits, empty batches cost nothing)
//! Let `B(m) = 2048·⌈m/128⌉` (the IKNP matrix, 16 bytes per OT rounded to 128-OT blocks).
//!
//! | call | receiver → sender | sender → receiver | flights |
//! |---|---|---|---|
//! | setup | 32 + 4096 + 8 + 4096 each way (4 flights: S, C, S, C) | | 4 |
//! | random OT (`send_random`) | 8 + B(n) | – | 1 |
//! | chosen 1-of-2 | 8 + B(n) | ⌈2n·bits/8⌉ | 2 |
//! | correlated | 8 + B(n) | ⌈n·bits/8⌉ | 2 |
//! | correlated mod p | 8 + B(n) | ⌈n·bits(p)/8⌉ | 2 |
//! | 1-of-N, N ≤ 4 | 8 + B(n·⌈log2 N⌉) | ⌈n·N·bits/8⌉ | 2 |
//! | 1-of-N, N ≥ 5 (KK13) | 8 + 32·n | ⌈n·N·bits/8⌉ | 2 |
//!
//! A batch of calls in the same direction that do not depend on each other's outputs could be
//! merged by the caller into one call to save flights.
//!
//! ## Security (semi-honest)
//! Base OT: CDH in Ristretto255 with SHA-256 as a random oracle (see [`base`]). IKNP: the
//! sender sees `u_j = G(k_j^0) ⊕ G(k_j^1) ⊕ r`, pseudorandom because it does not know
//! `k_j^{1−Δ_j}` (PRG security of AES-CTR); the receiver's rows `t_i` and the sender's
//! `q_i ⊕ (1−r_i)·Δ` differ by the unknown uniform Δ, so the unchosen pad `H(i, t_i ⊕ Δ)`
//! is pseudorandom when `H` is (tweakable) correlation robust — here fixed-key AES modelled
//! as an ideal permutation (Guo–Katz–Wang–Yu 2020), with a unique tweak per OT (global
//! counter, domain tag). Every output is a full-width pseudorandom pad, so the masked
//! messages and the correlated OT's `x` are uniform over Z_{2^bits}. The log-construction's
//! 1-of-N pads additionally rely on `H` hiding linear XOR combinations of independent unknown
//! keys (same ideal-permutation model); KK13's argument is in [`kk13`]. Its base OTs are
//! random OTs of this extension, whose unchosen outputs are pseudorandom by the argument above.
//!
//! ## Silent backend ([`SilentOt`])
//! [`ferret`] generates random correlated OTs from regular noise: Ferret's GGM-tree
//! single-point COTs ([`ggm`]) compressed by dual LPN with the expand-convolute code
//! ([`lpn`]), bootstrapped from the IKNP session above; [`silent`] derandomises them into the
//! same trait (one correction bit per 1-of-2 OT, `l` per 1-of-N, plus the payload). About
//! 0.85 bit of generation per COT in iterations of 1,077,912; the cost tables are in those
//! modules. Selected per run with
//! [`OtBackend`] (`--ot iknp|silent`).

pub mod base;
pub mod ferret;
pub mod ggm;
pub mod header;
#[cfg(any(test, feature = "insecure-test-doubles"))]
pub mod ideal;
pub mod iknp;
pub mod kk13;
pub mod lpn;
pub mod prg;
pub mod session;
pub mod silent;
pub mod transpose;

pub use session::OtSession;
pub use silent::SilentOt;

use header::mask;

use crate::error::{Error, Result};
use crate::net::Channel;
use crate::share::Role;

/// Which OT construction a session runs on (both parties must agree).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OtBackend {
    /// Base OTs + IKNP extension (16 bytes per OT; 1-of-N OTs for N ≥ 5 on KK13, 32 bytes).
    #[default]
    Iknp,
    /// Silent correlated OT (GGM single-point COTs, dual LPN) bootstrapped from IKNP (≈ 0.85 bit per OT in bulk).
    Silent,
}

impl OtBackend {
    pub fn name(self) -> &'static str {
        match self {
            OtBackend::Iknp => "iknp",
            OtBackend::Silent => "silent",
        }
    }

    pub fn parse(s: &str) -> Result<OtBackend> {
        match s {
            "iknp" => Ok(OtBackend::Iknp),
            "silent" => Ok(OtBackend::Silent),
            _ => Err(Error::Input(format!("unknown OT backend `{s}` (expected iknp or silent)"))),
        }
    }

    /// Amortised bytes (both directions) of one OT built from `random_ots` 1-of-2 random OTs
    /// (1 for chosen and correlated OT, `⌈log2 N⌉` for 1-of-N) that masks `payload_bits` bits
    /// of messages, from the cost tables above and in [`silent`] (batch headers left out; the
    /// silent figure includes the generator's bytes per correlation in bulk).
    pub fn bytes_per_ot(self, random_ots: u32, payload_bits: u64) -> f64 {
        let per_random_ot = match self {
            OtBackend::Iknp => 16.0,
            OtBackend::Silent => 0.125 + lpn::SET.iteration_bytes() as f64 / lpn::SET.net_outputs() as f64,
        };
        random_ots as f64 * per_random_ot + payload_bits as f64 / 8.0
    }

    /// Amortised bytes (both directions) of one 1-out-of-`n` OT with `payload_bits` bits of
    /// messages: on IKNP a KK13 row of 32 bytes from N = 5 on ([`kk13::runs_on_kk13`]), else
    /// `⌈log2 N⌉` random OTs as [`Self::bytes_per_ot`].
    pub fn bytes_per_one_of_n(self, n: usize, payload_bits: u64) -> f64 {
        if self == OtBackend::Iknp && kk13::runs_on_kk13(n) {
            return kk13::ROW_BYTES as f64 + payload_bits as f64 / 8.0;
        }
        self.bytes_per_ot(session::choice_bits(n) as u32, payload_bits)
    }

    /// Run the chosen backend's setup; both parties call it at the same point.
    pub fn setup(self, ch: &mut dyn Channel, role: Role) -> Result<Box<dyn Ot>> {
        Ok(match self {
            OtBackend::Iknp => Box::new(OtSession::setup(ch, role)?),
            OtBackend::Silent => Box::new(SilentOt::setup(ch, role)?),
        })
    }
}

/// Width of instance `i` of a staircase batch with top width `bits`: bits − (i mod bits).
pub fn staircase_width(bits: u32, i: usize) -> u32 {
    bits - (i % bits as usize) as u32
}

/// Payload bits of a staircase batch of `n` instances (n a multiple of `bits`).
pub fn staircase_payload_bits(n: usize, bits: u32) -> usize {
    (n / bits as usize) * (bits as usize * (bits as usize + 1) / 2)
}

/// A staircase batch is whole groups of `bits` instances.
pub fn check_staircase(n: usize, bits: u32) -> Result<()> {
    if bits == 0 || bits > 64 || n % bits as usize != 0 {
        return Err(Error::Ot(format!("decreasing-width correlated OT: {n} instances are not whole groups of {bits}")));
    }
    Ok(())
}

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

    /// Correlated OT whose i-th instance works over Z_{2^w_i} with w_i = [`staircase_width`]`(bits, i)`
    /// = bits − (i mod bits): in a Gilboa product the OT for bit j of the multiplier only needs
    /// its low bits − j bits (its output is multiplied by 2^j mod 2^bits), so a batch of
    /// `bits`-OT groups sends bits·(bits + 1)/2 payload bits per group instead of bits².
    /// `deltas.len()` must be a multiple of `bits`. The default runs the uniform-width COT and
    /// reduces (same functionality, no saving); the real backends send only the needed bits.
    fn send_correlated_staircase(&mut self, ch: &mut dyn Channel, deltas: &[u64], bits: u32) -> Result<Vec<u64>> {
        check_staircase(deltas.len(), bits)?;
        let x = self.send_correlated(ch, deltas, bits)?;
        Ok(x.iter().enumerate().map(|(i, &v)| v & mask(staircase_width(bits, i))).collect())
    }
    fn recv_correlated_staircase(&mut self, ch: &mut dyn Channel, choices: &[bool], bits: u32) -> Result<Vec<u64>> {
        check_staircase(choices.len(), bits)?;
        let t = self.recv_correlated(ch, choices, bits)?;
        Ok(t.iter().enumerate().map(|(i, &v)| v & mask(staircase_width(bits, i))).collect())
    }

    /// Correlated OT over Z_p (2 ≤ p ≤ 2^62, e.g. the HE plaintext prime): the sender obtains
    /// uniform `x_i ∈ Z_p` (returned) and the receiver `x_i + c_i·δ_i mod p`. The default runs
    /// a chosen OT of `(x_i, x_i + δ_i)` (same functionality, both messages sent); the real
    /// backends send one `⌈log2 p⌉`-bit message, `x + δ − H(pad¹) mod p` with `x = H(pad⁰) mod p`.
    fn send_correlated_mod(&mut self, ch: &mut dyn Channel, deltas: &[u64], p: u64) -> Result<Vec<u64>> {
        header::Widths::Modulus(p).header(deltas.len())?;
        let mut rng = rand::rng();
        let xs: Vec<u64> = deltas.iter().map(|_| rand::Rng::random_range(&mut rng, 0..p)).collect();
        let msgs: Vec<[u64; 2]> = xs.iter().zip(deltas).map(|(&x, &d)| [x, (x + d % p) % p]).collect();
        self.send_chosen(ch, &msgs, header::modulus_bits(p))?;
        Ok(xs)
    }
    fn recv_correlated_mod(&mut self, ch: &mut dyn Channel, choices: &[bool], p: u64) -> Result<Vec<u64>> {
        header::Widths::Modulus(p).header(choices.len())?;
        Ok(self.recv_chosen(ch, choices, header::modulus_bits(p))?.iter().map(|&v| v % p).collect())
    }

    /// Chosen-message 1-out-of-N OT with short messages. `msgs` is row-major, `msgs.len()`
    /// = batch × n; the receiver with choice `c_i < n` learns `msgs[i * n + c_i]`.
    fn send_1_of_n(&mut self, ch: &mut dyn Channel, msgs: &[u64], n: usize, bits: u32) -> Result<()>;
    fn recv_1_of_n(&mut self, ch: &mut dyn Channel, choices: &[u8], n: usize, bits: u32) -> Result<Vec<u64>>;
}
