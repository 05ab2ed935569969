//! Link simulation: a bandwidth limit (token bucket) and a one-way latency per flight.
//!
//! `Link::Unlimited` adds nothing. A shaped link paces writes to the configured bandwidth and
//! delays the end of every flight (the flush before the sender starts reading) by the one-way
//! latency, so a protocol with `r` flights pays `r × latency` in total, i.e. `rounds × RTT / 2`.

use std::io;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::Transport;
use crate::error::{Error, Result};

/// A network link profile.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Link {
    Unlimited,
    Shaped { bits_per_sec: f64, rtt_ms: f64 },
}

impl Link {
    /// BOLT's LAN setting: 3 Gbps, 0.8 ms RTT.
    pub const LAN: Link = Link::Shaped { bits_per_sec: 3e9, rtt_ms: 0.8 };
    /// BOLT's WAN setting: 200 Mbps, 40 ms RTT.
    pub const WAN: Link = Link::Shaped { bits_per_sec: 200e6, rtt_ms: 40.0 };

    /// Parse `local`, `lan`, `wan` or `BW,RTT` (e.g. `1gbit,10ms`, `500mbit,2.5ms`, `1e9,10`).
    pub fn parse(s: &str) -> Result<Link> {
        match s.trim().to_ascii_lowercase().as_str() {
            "local" | "none" | "unlimited" => return Ok(Link::Unlimited),
            "lan" => return Ok(Link::LAN),
            "wan" => return Ok(Link::WAN),
            _ => {}
        }
        let (bw, rtt) = s
            .split_once(',')
            .ok_or_else(|| Error::Input(format!("link `{s}`: expected local|lan|wan|BW,RTT")))?;
        let bits_per_sec = parse_rate(bw.trim())?;
        let rtt_ms = rtt
            .trim()
            .trim_end_matches("ms")
            .parse::<f64>()
            .map_err(|_| Error::Input(format!("link `{s}`: bad RTT `{rtt}` (milliseconds)")))?;
        if !(bits_per_sec > 0.0) || !(rtt_ms >= 0.0) {
            return Err(Error::Input(format!("link `{s}`: bandwidth must be > 0 and RTT >= 0")));
        }
        Ok(Link::Shaped { bits_per_sec, rtt_ms })
    }
}

fn parse_rate(s: &str) -> Result<f64> {
    let lower = s.to_ascii_lowercase();
    let (num, mult) = [("gbps", 1e9), ("gbit", 1e9), ("mbps", 1e6), ("mbit", 1e6), ("kbps", 1e3), ("kbit", 1e3)]
        .iter()
        .find_map(|(suf, m)| lower.strip_suffix(suf).map(|n| (n.to_string(), *m)))
        .unwrap_or((lower.clone(), 1.0));
    num.trim()
        .parse::<f64>()
        .map(|v| v * mult)
        .map_err(|_| Error::Input(format!("bad bandwidth `{s}` (e.g. 3gbit, 200mbit, 1e9)")))
}

/// A transport wrapped in a link simulation.
pub struct Shaped<T: Transport> {
    inner: T,
    link: Link,
    bucket_start: Option<Instant>,
    bucket_bytes: f64,
    wrote_since_flush: bool,
}

impl<T: Transport> Shaped<T> {
    pub fn new(inner: T, link: Link) -> Self {
        Shaped { inner, link, bucket_start: None, bucket_bytes: 0.0, wrote_since_flush: false }
    }
    fn pace(&mut self, n: usize) {
        let Link::Shaped { bits_per_sec, .. } = self.link else { return };
        let now = Instant::now();
        let start = *self.bucket_start.get_or_insert(now);
        self.bucket_bytes += n as f64;
        let due = start + Duration::from_secs_f64(self.bucket_bytes * 8.0 / bits_per_sec);
        if due > now {
            std::thread::sleep(due - now);
        } else if now.duration_since(due) > Duration::from_millis(50) {
            // The link was idle: restart the bucket so idle time is not banked as credit.
            self.bucket_start = Some(now);
            self.bucket_bytes = 0.0;
        }
    }
}

impl<T: Transport> Transport for Shaped<T> {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        // Pace in slices so a large write is spread over time like on a real link.
        for chunk in data.chunks(64 * 1024) {
            self.pace(chunk.len());
            self.inner.write_all(chunk)?;
        }
        self.wrote_since_flush = true;
        Ok(())
    }
    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_exact(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()?;
        if let Link::Shaped { rtt_ms, .. } = self.link {
            if self.wrote_since_flush && rtt_ms > 0.0 {
                std::thread::sleep(Duration::from_secs_f64(rtt_ms / 2000.0));
            }
        }
        self.wrote_since_flush = false;
        Ok(())
    }
    fn timeout_secs(&self) -> u64 {
        self.inner.timeout_secs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parses_link_profiles() {
        assert_eq!(Link::parse("local").unwrap(), Link::Unlimited);
        assert_eq!(Link::parse("LAN").unwrap(), Link::LAN);
        assert_eq!(Link::parse("1gbit,10ms").unwrap(), Link::Shaped { bits_per_sec: 1e9, rtt_ms: 10.0 });
        assert!(Link::parse("fast").is_err());
        assert!(Link::parse("0,1").is_err());
    }
}
