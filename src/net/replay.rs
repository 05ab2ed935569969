//! An in-memory [`Channel`]: the peer's bytes come from a buffer, what we send is kept.
//!
//! It lets any receiving code run on recorded or arbitrary bytes without a socket: the fuzz
//! targets feed it the fuzzer's input, and the seed-corpus test records real messages with it.
//! Running out of input behaves like a peer that hung up ([`Error::PeerDisconnected`]).

use super::{Channel, CommStats, DEFAULT_MAX_FRAME};
use crate::error::{Error, Result};

pub struct ReplayChannel<'a> {
    input: &'a [u8],
    pos: usize,
    sent: Vec<u8>,
    stats: CommStats,
    max_frame: usize,
    phase: String,
}

impl<'a> ReplayChannel<'a> {
    pub fn new(input: &'a [u8]) -> Self {
        ReplayChannel { input, pos: 0, sent: Vec::new(), stats: CommStats::default(), max_frame: DEFAULT_MAX_FRAME, phase: "setup".into() }
    }
    pub fn with_max_frame(mut self, max_frame: usize) -> Self {
        self.max_frame = max_frame;
        self
    }
    /// Everything sent so far.
    pub fn sent(&self) -> &[u8] {
        &self.sent
    }
    /// Input bytes not consumed yet.
    pub fn remaining(&self) -> usize {
        self.input.len() - self.pos
    }
}

impl Channel for ReplayChannel<'_> {
    fn send_bytes(&mut self, data: &[u8]) -> Result<()> {
        // Keep at most one frame's worth: a long run must not grow without bound.
        if self.sent.len() + data.len() <= self.max_frame {
            self.sent.extend_from_slice(data);
        }
        self.stats.bytes_sent += data.len() as u64;
        self.stats.messages_sent += 1;
        Ok(())
    }
    fn recv_bytes(&mut self, buf: &mut [u8]) -> Result<()> {
        let end = self.pos.checked_add(buf.len()).filter(|&e| e <= self.input.len());
        let Some(end) = end else {
            self.pos = self.input.len();
            return Err(Error::PeerDisconnected(format!("{} (recv: end of recorded input)", self.phase)));
        };
        buf.copy_from_slice(&self.input[self.pos..end]);
        self.pos = end;
        self.stats.bytes_recv += buf.len() as u64;
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_input_and_reports_its_end_as_a_disconnect() {
        let mut input = 5u64.to_le_bytes().to_vec();
        input.extend_from_slice(b"hello");
        input.extend_from_slice(&3u64.to_le_bytes());
        let mut ch = ReplayChannel::new(&input);
        assert_eq!(ch.recv_frame().unwrap(), b"hello");
        ch.set_phase("tail");
        ch.send_u64(9).unwrap();
        assert_eq!(ch.sent(), 9u64.to_le_bytes());
        let err = ch.recv_frame().unwrap_err().to_string();
        assert!(err.contains("disconnected during tail"), "{err}");
        assert_eq!(ch.remaining(), 0);
    }
}
