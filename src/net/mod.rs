//! Networking: one metered, framed, blocking byte channel between the two parties.
//!
//! * [`Transport`] is a raw reliable byte pipe (TCP, optionally shaped to a simulated link).
//! * [`Metered`] wraps a transport and is the only [`Channel`] implementation used by the
//!   product: it counts every byte sent and received and the number of rounds (a round is a
//!   maximal run of operations in one direction; both parties of a ping-pong agree on it).
//! * [`local::run_pair`] runs both parties of any protocol over real loopback TCP; every
//!   protocol test uses it.
//! * [`handshake`] checks that both parties agree on version, roles, model shape and numeric
//!   parameters before any protocol message is exchanged.
//!
//! Safety properties: frame lengths are checked against a limit *before* allocating; socket
//! reads and writes have timeouts; a closed socket or a timeout becomes a clear [`Error`].

pub mod fault;
pub mod handshake;
pub mod local;
pub mod replay;
pub mod shaping;
pub mod tcp;
pub mod tls;

use std::io;
use std::ops::Sub;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use local::{run_pair, PairOutput};
pub use tcp::{accept_with_timeout, connect_with_retry, TcpTransport};

/// Default upper bound on one length-prefixed frame (1 GiB).
pub const DEFAULT_MAX_FRAME: usize = 1 << 30;
/// Default socket timeout in seconds. Long enough for the heaviest server-side HE step
/// between two messages on a slow machine, short enough that a stalled peer is noticed.
pub const DEFAULT_TIMEOUT_SECS: u64 = 600;

/// Byte and round counters. Subtract two snapshots to meter a code region.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommStats {
    pub bytes_sent: u64,
    pub bytes_recv: u64,
    /// Number of maximal same-direction runs of operations (flights) seen by this party.
    pub rounds: u64,
    pub messages_sent: u64,
}

impl CommStats {
    pub fn total_bytes(&self) -> u64 {
        self.bytes_sent + self.bytes_recv
    }
    /// Figures accumulated since an earlier snapshot of the same channel.
    pub fn since(&self, earlier: &CommStats) -> CommStats {
        *self - *earlier
    }
}

impl Sub for CommStats {
    type Output = CommStats;
    fn sub(self, o: CommStats) -> CommStats {
        CommStats {
            bytes_sent: self.bytes_sent - o.bytes_sent,
            bytes_recv: self.bytes_recv - o.bytes_recv,
            rounds: self.rounds - o.rounds,
            messages_sent: self.messages_sent - o.messages_sent,
        }
    }
}

impl std::ops::Add for CommStats {
    type Output = CommStats;
    fn add(self, o: CommStats) -> CommStats {
        CommStats {
            bytes_sent: self.bytes_sent + o.bytes_sent,
            bytes_recv: self.bytes_recv + o.bytes_recv,
            rounds: self.rounds + o.rounds,
            messages_sent: self.messages_sent + o.messages_sent,
        }
    }
}

/// A raw, reliable, ordered byte pipe to the peer.
pub trait Transport: Send {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()>;
    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()>;
    fn flush(&mut self) -> io::Result<()>;
    /// The configured read timeout, for error messages.
    fn timeout_secs(&self) -> u64;
}

/// A blocking channel to the peer. Protocol code takes `&mut dyn Channel`.
///
/// The required methods move raw bytes; the provided methods add framing and typed vectors.
/// Receivers always know how much they expect (`recv_u64s(n)`), or read a length prefix that
/// is checked against [`Channel::max_frame`] before any allocation.
pub trait Channel: Send {
    fn send_bytes(&mut self, data: &[u8]) -> Result<()>;
    fn recv_bytes(&mut self, buf: &mut [u8]) -> Result<()>;
    fn flush(&mut self) -> Result<()>;
    fn stats(&self) -> CommStats;
    fn max_frame(&self) -> usize;
    /// Name the protocol step in progress; errors then say where they happened.
    fn set_phase(&mut self, phase: &str);

    fn send_u64(&mut self, x: u64) -> Result<()> {
        self.send_bytes(&x.to_le_bytes())
    }
    fn recv_u64(&mut self) -> Result<u64> {
        let mut b = [0u8; 8];
        self.recv_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    /// Send a length-prefixed frame (u64 little-endian length, then the bytes).
    fn send_frame(&mut self, data: &[u8]) -> Result<()> {
        self.send_u64(data.len() as u64)?;
        self.send_bytes(data)
    }
    /// Receive a length-prefixed frame, rejecting lengths above `max_frame()` before allocating.
    fn recv_frame(&mut self) -> Result<Vec<u8>> {
        let limit = self.max_frame();
        self.recv_frame_limited(limit)
    }
    fn recv_frame_limited(&mut self, limit: usize) -> Result<Vec<u8>> {
        let len = self.recv_u64()?;
        if len > limit as u64 {
            return Err(Error::protocol(
                "frame",
                format!("peer announced a {len}-byte frame, above the {limit}-byte limit"),
            ));
        }
        let mut buf = vec![0u8; len as usize];
        self.recv_bytes(&mut buf)?;
        Ok(buf)
    }
    /// Send a vector of u64 as 8 little-endian bytes each (the receiver knows the length).
    fn send_u64s(&mut self, v: &[u64]) -> Result<()> {
        let mut buf = Vec::with_capacity(v.len() * 8);
        for x in v {
            buf.extend_from_slice(&x.to_le_bytes());
        }
        self.send_bytes(&buf)
    }
    fn recv_u64s(&mut self, n: usize) -> Result<Vec<u64>> {
        let mut buf = vec![0u8; n * 8];
        self.recv_bytes(&mut buf)?;
        Ok(buf.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect())
    }
    /// Send values of `bits` bits each, bit-packed (what ring elements of Z_{2^bits} cost).
    fn send_packed(&mut self, v: &[u64], bits: u32) -> Result<()> {
        self.send_bytes(&pack_bits(v, bits))
    }
    fn recv_packed(&mut self, n: usize, bits: u32) -> Result<Vec<u64>> {
        let mut buf = vec![0u8; packed_len(n, bits)];
        self.recv_bytes(&mut buf)?;
        Ok(unpack_bits(&buf, n, bits))
    }
}

/// Bytes needed to bit-pack `n` values of `bits` bits.
pub fn packed_len(n: usize, bits: u32) -> usize {
    (n * bits as usize).div_ceil(8)
}

/// Bit-pack values (only the low `bits` bits of each value are kept): value i occupies bits
/// i·bits .. (i+1)·bits of the stream, least significant first, byte k holding stream bits
/// 8k .. 8k+7. Words of 64 bits at a time through a 128-bit accumulator.
pub fn pack_bits(v: &[u64], bits: u32) -> Vec<u8> {
    pack_with(v, packed_len(v.len(), bits), |_| bits)
}

/// Inverse of [`pack_bits`] (bytes beyond the end of `buf` read as zero).
pub fn unpack_bits(buf: &[u8], n: usize, bits: u32) -> Vec<u64> {
    unpack_widths(buf, n, |_| bits)
}

/// [`pack_bits`] with value i kept at `width(i)` bits (1..=64), one after the other.
pub fn pack_widths(v: &[u64], width: impl Fn(usize) -> u32) -> Vec<u8> {
    let total: usize = (0..v.len()).map(|i| width(i) as usize).sum();
    pack_with(v, total.div_ceil(8), width)
}

fn pack_with(v: &[u64], len: usize, width: impl Fn(usize) -> u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let (mut acc, mut held) = (0u128, 0u32);
    for (i, &x) in v.iter().enumerate() {
        let bits = width(i);
        let mask = if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 };
        acc |= ((x & mask) as u128) << held;
        held += bits;
        if held >= 64 {
            out.extend_from_slice(&(acc as u64).to_le_bytes());
            acc >>= 64;
            held -= 64;
        }
    }
    out.extend_from_slice(&(acc as u64).to_le_bytes());
    out.truncate(len);
    out
}

/// Inverse of [`pack_widths`] (bytes beyond the end of `buf` read as zero).
pub fn unpack_widths(buf: &[u8], n: usize, width: impl Fn(usize) -> u32) -> Vec<u64> {
    let mut out = Vec::with_capacity(n);
    let (mut acc, mut held, mut next) = (0u128, 0u32, 0usize);
    for i in 0..n {
        let bits = width(i);
        let mask = if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 };
        if held < bits {
            let mut word = [0u8; 8];
            if let Some(rest) = buf.get(next..) {
                let avail = rest.len().min(8);
                word[..avail].copy_from_slice(&rest[..avail]);
            }
            next += 8;
            acc |= (u64::from_le_bytes(word) as u128) << held;
            held += 64;
        }
        out.push(acc as u64 & mask);
        acc >>= bits;
        held -= bits;
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    None,
    Send,
    Recv,
}

/// The metered channel: counts bytes and rounds, flushes before every read, maps socket
/// errors to clear [`Error`]s naming the current phase.
pub struct Metered<T: Transport> {
    inner: T,
    stats: CommStats,
    last: Dir,
    max_frame: usize,
    phase: String,
}

impl<T: Transport> Metered<T> {
    pub fn new(inner: T) -> Self {
        Metered { inner, stats: CommStats::default(), last: Dir::None, max_frame: DEFAULT_MAX_FRAME, phase: "setup".into() }
    }
    pub fn with_max_frame(mut self, max_frame: usize) -> Self {
        self.max_frame = max_frame;
        self
    }
    pub fn into_inner(self) -> T {
        self.inner
    }
    fn map_err(&self, e: io::Error, op: &str) -> Error {
        let context = format!("{} ({op})", self.phase);
        match e.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Error::PeerDisconnected(context),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                Error::Timeout { context, secs: self.inner.timeout_secs() }
            }
            _ => Error::Net { context, source: e },
        }
    }
    fn note(&mut self, d: Dir) {
        if self.last != d {
            self.stats.rounds += 1;
            self.last = d;
        }
    }
}

impl<T: Transport> Channel for Metered<T> {
    fn send_bytes(&mut self, data: &[u8]) -> Result<()> {
        self.note(Dir::Send);
        self.stats.bytes_sent += data.len() as u64;
        self.stats.messages_sent += 1;
        self.inner.write_all(data).map_err(|e| self.map_err(e, "send"))
    }
    fn recv_bytes(&mut self, buf: &mut [u8]) -> Result<()> {
        if self.last == Dir::Send {
            self.inner.flush().map_err(|e| self.map_err(e, "flush"))?;
        }
        self.note(Dir::Recv);
        self.inner.read_exact(buf).map_err(|e| self.map_err(e, "recv"))?;
        self.stats.bytes_recv += buf.len() as u64;
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        self.inner.flush().map_err(|e| self.map_err(e, "flush"))
    }
    fn stats(&self) -> CommStats {
        self.stats
    }
    fn max_frame(&self) -> usize {
        self.max_frame
    }
    fn set_phase(&mut self, phase: &str) {
        self.phase.clear();
        self.phase.push_str(phase);
    }
}

/// The channel type used between two real processes.
pub type TcpChannel = Metered<shaping::Shaped<TcpTransport>>;

/// Plain TCP or TLS: what `serve` and `client` speak.
pub enum PartyTransport {
    Tcp(TcpTransport),
    Tls(tls::TlsTransport),
}

impl Transport for PartyTransport {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            PartyTransport::Tcp(t) => t.write_all(data),
            PartyTransport::Tls(t) => t.write_all(data),
        }
    }
    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        match self {
            PartyTransport::Tcp(t) => t.read_exact(buf),
            PartyTransport::Tls(t) => t.read_exact(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            PartyTransport::Tcp(t) => t.flush(),
            PartyTransport::Tls(t) => t.flush(),
        }
    }
    fn timeout_secs(&self) -> u64 {
        match self {
            PartyTransport::Tcp(t) => t.timeout_secs(),
            PartyTransport::Tls(t) => t.timeout_secs(),
        }
    }
}

/// The channel between two processes, over TCP or TLS.
pub type PartyChannel = Metered<shaping::Shaped<PartyTransport>>;

#[cfg(test)]
mod tests {
    /// Bit i of value j is stream bit j·bits + i, LSB first: the format [`pack_bits`] keeps.
    fn pack_bit_by_bit(v: &[u64], bits: u32) -> Vec<u8> {
        let mut out = vec![0u8; packed_len(v.len(), bits)];
        for (j, &x) in v.iter().enumerate() {
            for i in 0..bits as usize {
                let pos = j * bits as usize + i;
                out[pos / 8] |= (((x >> i) & 1) as u8) << (pos % 8);
            }
        }
        out
    }

    #[test]
    fn word_packing_keeps_the_bit_stream_format() {
        use rand::RngCore;
        let mut rng = rand::rng();
        for bits in 0..=64u32 {
            for n in [0usize, 1, 2, 7, 8, 9, 63, 64, 65, 200] {
                let v: Vec<u64> = (0..n).map(|_| rng.next_u64()).collect();
                let mask = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
                let packed = pack_bits(&v, bits);
                assert_eq!(packed, pack_bit_by_bit(&v, bits), "bits {bits}, n {n}");
                let back = unpack_bits(&packed, n, bits);
                assert_eq!(back, v.iter().map(|x| x & mask).collect::<Vec<_>>(), "bits {bits}, n {n}");
                // A short buffer reads as zeros instead of panicking.
                let short = unpack_bits(&packed[..packed.len() / 2], n, bits);
                assert_eq!(short.len(), n);
            }
        }
    }

    use super::*;

    #[test]
    fn width_packing_round_trips_and_matches_uniform_packing() {
        let v: Vec<u64> = (0..200u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
        let width = |i: usize| 64 - (i % 64) as u32;
        let bytes = pack_widths(&v, width);
        assert_eq!(bytes.len(), (0..200).map(|i| width(i) as usize).sum::<usize>().div_ceil(8));
        let back = unpack_widths(&bytes, v.len(), width);
        for (i, (&a, &b)) in v.iter().zip(&back).enumerate() {
            let m = if width(i) == 64 { u64::MAX } else { (1u64 << width(i)) - 1 };
            assert_eq!(a & m, b, "value {i}");
        }
        assert_eq!(pack_widths(&v, |_| 37), pack_bits(&v, 37));
    }

    #[test]
    fn bit_packing_round_trips() {
        for bits in [1u32, 7, 12, 37, 63, 64] {
            let mask = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
            let v: Vec<u64> = (0..101u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) & mask).collect();
            let p = pack_bits(&v, bits);
            assert_eq!(p.len(), packed_len(v.len(), bits));
            assert_eq!(unpack_bits(&p, v.len(), bits), v);
        }
    }
}
