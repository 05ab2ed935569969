//! Helpers shared by the OT test files.

use fastlmpi::net::{Channel, CommStats};

/// What a party sees of a protocol: every byte it receives, recorded.
pub struct RecordingChannel<'a> {
    pub inner: &'a mut dyn Channel,
    pub seen: Vec<u8>,
}

impl Channel for RecordingChannel<'_> {
    fn send_bytes(&mut self, data: &[u8]) -> fastlmpi::Result<()> {
        self.inner.send_bytes(data)
    }
    fn recv_bytes(&mut self, buf: &mut [u8]) -> fastlmpi::Result<()> {
        self.inner.recv_bytes(buf)?;
        self.seen.extend_from_slice(buf);
        Ok(())
    }
    fn flush(&mut self) -> fastlmpi::Result<()> {
        self.inner.flush()
    }
    fn stats(&self) -> CommStats {
        self.inner.stats()
    }
    fn max_frame(&self) -> usize {
        self.inner.max_frame()
    }
    fn set_phase(&mut self, phase: &str) {
        self.inner.set_phase(phase)
    }
}
