//! Fault injection: a [`Channel`] wrapper that misbehaves at a chosen message, so robustness
//! tests hit every protocol step deterministically instead of killing a process at a guessed
//! time.
//!
//! Messages are counted as `send_bytes` calls of the wrapped party. A fault `after k` lets the
//! first `k` messages through untouched, then:
//! * [`FaultKind::Close`]: at the next operation of any kind, flushes and drops the connection;
//! * [`FaultKind::Stall`]: at the next operation, goes silent for the given time (the peer's
//!   timeout should fire first), then drops the connection;
//! * [`FaultKind::Truncate`]: sends only the first half of message `k + 1`, then drops;
//! * [`FaultKind::Corrupt`]: flips bits in one byte of message `k + 1` and carries on.
//!
//! The faulty party itself fails with an error naming the phase it was in (except after a
//! corruption, which it cannot notice). Only the wrapped party's own connection is affected,
//! so the wrapper is harmless in a product build; `serve` exposes it through a hidden option
//! for process-level tests.

use std::io;
use std::time::Duration;

use super::{Channel, CommStats};
use crate::error::{Error, Result};

/// What goes wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    Close,
    Stall(Duration),
    Truncate,
    Corrupt,
}

/// A fault and the number of messages let through before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub after: u64,
}

impl Fault {
    /// Parse `close:K`, `truncate:K`, `corrupt:K` or `stall:K:SECS`.
    pub fn parse(s: &str) -> Result<Fault> {
        let bad = || Error::Input(format!("fault `{s}`: expected close:K, truncate:K, corrupt:K or stall:K:SECS"));
        let mut parts = s.split(':');
        let kind = parts.next().ok_or_else(bad)?;
        let after: u64 = parts.next().and_then(|k| k.parse().ok()).ok_or_else(bad)?;
        let kind = match (kind, parts.next()) {
            ("close", None) => FaultKind::Close,
            ("truncate", None) => FaultKind::Truncate,
            ("corrupt", None) => FaultKind::Corrupt,
            ("stall", Some(secs)) => FaultKind::Stall(Duration::from_secs_f64(secs.parse::<f64>().ok().filter(|v| *v >= 0.0 && v.is_finite()).ok_or_else(bad)?)),
            _ => return Err(bad()),
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Fault { kind, after })
    }
}

/// A channel that injects one [`Fault`] (or none: then it only remembers the phase).
pub struct Faulty<C: Channel> {
    inner: Option<C>,
    fault: Option<Fault>,
    sent: u64,
    fired: bool,
    phase: String,
    last_stats: CommStats,
    max_frame: usize,
}

impl<C: Channel> Faulty<C> {
    pub fn new(inner: C, fault: Option<Fault>) -> Self {
        let (last_stats, max_frame) = (inner.stats(), inner.max_frame());
        Faulty { inner: Some(inner), fault, sent: 0, fired: false, phase: "setup".into(), last_stats, max_frame }
    }

    /// The phase named last (what an error at this point should mention).
    pub fn phase(&self) -> &str {
        &self.phase
    }

    /// Whether the fault has been injected.
    pub fn fired(&self) -> bool {
        self.fired
    }

    /// Messages sent through the wrapper so far.
    pub fn messages(&self) -> u64 {
        self.sent
    }

    fn injected(&self, what: &str) -> Error {
        Error::Net {
            context: format!("{} (injected fault)", self.phase),
            source: io::Error::new(io::ErrorKind::ConnectionAborted, format!("{what} after message {}", self.sent)),
        }
    }

    /// Flush what was sent so far, then close the connection.
    fn hang_up(&mut self) {
        if let Some(mut ch) = self.inner.take() {
            let _ = ch.flush();
            self.last_stats = ch.stats();
        }
    }

    /// Fire a connection-level fault due before this operation; errors once the link is gone.
    fn before_op(&mut self) -> Result<&mut C> {
        if let Some(f) = self.fault.filter(|f| !self.fired && self.sent >= f.after) {
            match f.kind {
                FaultKind::Close => {
                    self.fired = true;
                    self.hang_up();
                    return Err(self.injected("connection closed"));
                }
                FaultKind::Stall(d) => {
                    self.fired = true;
                    std::thread::sleep(d);
                    self.inner = None; // no flush: a stalled party sends nothing more
                    return Err(self.injected("stalled, then closed"));
                }
                FaultKind::Truncate | FaultKind::Corrupt => {}
            }
        }
        self.link()
    }

    /// The connection, or an error once a fault has dropped it.
    fn link(&mut self) -> Result<&mut C> {
        let phase = &self.phase;
        self.inner.as_mut().ok_or_else(|| Error::PeerDisconnected(format!("{phase} (connection closed by an injected fault)")))
    }
}

impl<C: Channel> Channel for Faulty<C> {
    fn send_bytes(&mut self, data: &[u8]) -> Result<()> {
        let due = self.fault.filter(|f| !self.fired && self.sent == f.after).map(|f| f.kind);
        self.before_op()?;
        self.sent += 1;
        match due {
            Some(FaultKind::Truncate) => {
                self.fired = true;
                let sent = self.link()?.send_bytes(&data[..data.len() / 2]);
                self.hang_up();
                sent?;
                Err(self.injected("message truncated, connection closed"))
            }
            Some(FaultKind::Corrupt) if !data.is_empty() => {
                self.fired = true;
                let mut bad = data.to_vec();
                let at = bad.len() / 2;
                bad[at] ^= 0xA5;
                self.link()?.send_bytes(&bad)
            }
            _ => self.link()?.send_bytes(data),
        }
    }
    fn recv_bytes(&mut self, buf: &mut [u8]) -> Result<()> {
        self.before_op()?.recv_bytes(buf)
    }
    fn flush(&mut self) -> Result<()> {
        self.before_op()?.flush()
    }
    fn stats(&self) -> CommStats {
        self.inner.as_ref().map_or(self.last_stats, Channel::stats)
    }
    fn max_frame(&self) -> usize {
        self.inner.as_ref().map_or(self.max_frame, Channel::max_frame)
    }
    fn set_phase(&mut self, phase: &str) {
        self.phase.clear();
        self.phase.push_str(phase);
        if let Some(ch) = self.inner.as_mut() {
            ch.set_phase(phase);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::local::loopback_pair;

    #[test]
    fn parses_every_kind_and_rejects_garbage() {
        assert_eq!(Fault::parse("close:3").unwrap(), Fault { kind: FaultKind::Close, after: 3 });
        assert_eq!(Fault::parse("stall:0:1.5").unwrap().kind, FaultKind::Stall(Duration::from_millis(1500)));
        assert_eq!(Fault::parse("truncate:7").unwrap().kind, FaultKind::Truncate);
        assert_eq!(Fault::parse("corrupt:0").unwrap().kind, FaultKind::Corrupt);
        for bad in ["", "close", "close:x", "stall:1", "stall:1:-2", "boom:1", "close:1:2"] {
            assert!(Fault::parse(bad).is_err(), "{bad}");
        }
    }

    /// The peer of a truncating party sees a disconnect in the phase it was in.
    #[test]
    fn truncation_is_seen_by_the_peer_as_a_disconnect_naming_the_phase() {
        let (s, mut c) = loopback_pair(Default::default()).unwrap();
        let mut s = Faulty::new(s, Some(Fault { kind: FaultKind::Truncate, after: 1 }));
        let (rs, rc) = std::thread::scope(|sc| {
            let a = sc.spawn(|| {
                s.set_phase("step one");
                s.send_u64s(&[1, 2])?;
                s.set_phase("step two");
                s.send_u64s(&[3, 4])
            });
            let b = sc.spawn(|| {
                c.set_phase("receiving");
                let first = c.recv_u64s(2)?;
                c.recv_u64s(2).map(|second| (first, second))
            });
            (a.join().unwrap(), b.join().unwrap())
        });
        let own = rs.unwrap_err().to_string();
        assert!(own.contains("step two") && own.contains("injected"), "{own}");
        let peer = rc.unwrap_err().to_string();
        assert!(peer.contains("disconnected") && peer.contains("receiving"), "{peer}");
    }

    #[test]
    fn corruption_flips_one_byte_of_the_chosen_message_only() {
        let (s, mut c) = loopback_pair(Default::default()).unwrap();
        let mut s = Faulty::new(s, Some(Fault { kind: FaultKind::Corrupt, after: 1 }));
        let got = std::thread::scope(|sc| {
            let a = sc.spawn(|| {
                for v in [[1u64, 2], [3, 4], [5, 6]] {
                    s.send_u64s(&v)?;
                }
                s.flush()
            });
            let b = sc.spawn(|| (0..3).map(|_| c.recv_u64s(2)).collect::<Result<Vec<_>>>());
            a.join().unwrap().unwrap();
            b.join().unwrap().unwrap()
        });
        assert_eq!(got[0], vec![1, 2]);
        assert_ne!(got[1], vec![3, 4]);
        assert_eq!(got[2], vec![5, 6]);
    }
}
