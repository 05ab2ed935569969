//! Per-operator and per-layer records: wall time, bytes each way, rounds, setup vs online.
//!
//! Protocol code never formats units; it hands `CommStats` snapshots to a [`Recorder`], and
//! this module turns them into tables and JSON.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::net::{Channel, CommStats};

/// Setup work (keys, base OTs, weight encoding) is reported apart from the online inference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Setup,
    Online,
}

/// One measured region of one party's run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OpRecord {
    /// Encoder layer index, or `None` for work outside the layers (embeddings, pooler, setup).
    pub layer: Option<usize>,
    pub op: String,
    pub phase: Phase,
    pub wall_secs: f64,
    pub comm: CommStats,
    /// The region's OTs as 1-of-2 random OTs (a 1-of-N OT counts ⌈log2 N⌉): what the bytes
    /// would be on any OT backend is this times its per-OT cost plus the non-OT bytes. 0 where
    /// not counted (setup regions, older records).
    #[serde(default)]
    pub ot_equivalents: u64,
}

/// One operator's online totals over all layers ([`Recorder::per_op`]).
#[derive(Clone, Debug, PartialEq)]
pub struct OpTotal {
    pub op: String,
    pub wall_secs: f64,
    pub comm: CommStats,
    pub ot_equivalents: u64,
}

/// A started measurement; hand it back to [`Recorder::finish`].
#[must_use]
pub struct Mark {
    layer: Option<usize>,
    op: String,
    phase: Phase,
    t0: Instant,
    stats0: CommStats,
}

/// Collects [`OpRecord`]s for one party.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Recorder {
    pub records: Vec<OpRecord>,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder::default()
    }
    /// Start measuring a region; also names the channel phase so errors say where they happened.
    pub fn start(&self, ch: &mut dyn Channel, layer: Option<usize>, op: &str, phase: Phase) -> Mark {
        let label = match layer {
            Some(l) => format!("layer {l} / {op}"),
            None => op.to_string(),
        };
        ch.set_phase(&label);
        Mark { layer, op: op.to_string(), phase, t0: Instant::now(), stats0: ch.stats() }
    }
    pub fn finish(&mut self, ch: &dyn Channel, mark: Mark) {
        self.finish_counted(ch, mark, 0);
    }
    /// [`Recorder::finish`] with the region's OT count (1-of-2 equivalents).
    pub fn finish_counted(&mut self, ch: &dyn Channel, mark: Mark, ot_equivalents: u64) {
        self.records.push(OpRecord {
            layer: mark.layer,
            op: mark.op,
            phase: mark.phase,
            wall_secs: mark.t0.elapsed().as_secs_f64(),
            comm: ch.stats().since(&mark.stats0),
            ot_equivalents,
        });
    }
    /// Totals over all records of one phase.
    pub fn total(&self, phase: Phase) -> (f64, CommStats) {
        self.records
            .iter()
            .filter(|r| r.phase == phase)
            .fold((0.0, CommStats::default()), |(t, c), r| (t + r.wall_secs, c + r.comm))
    }
    /// Records summed per layer (online only), in layer order.
    pub fn per_layer(&self) -> Vec<(usize, f64, CommStats)> {
        let mut out: Vec<(usize, f64, CommStats)> = Vec::new();
        for r in self.records.iter().filter(|r| r.phase == Phase::Online) {
            let Some(l) = r.layer else { continue };
            match out.iter_mut().find(|(x, _, _)| *x == l) {
                Some(e) => {
                    e.1 += r.wall_secs;
                    e.2 = e.2 + r.comm;
                }
                None => out.push((l, r.wall_secs, r.comm)),
            }
        }
        out.sort_by_key(|e| e.0);
        out
    }
    /// Records summed per operator name (online only), in first-seen order.
    pub fn per_op(&self) -> Vec<OpTotal> {
        let mut out: Vec<OpTotal> = Vec::new();
        for r in self.records.iter().filter(|r| r.phase == Phase::Online) {
            match out.iter_mut().find(|t| t.op == r.op) {
                Some(t) => {
                    t.wall_secs += r.wall_secs;
                    t.comm = t.comm + r.comm;
                    t.ot_equivalents += r.ot_equivalents;
                }
                None => out.push(OpTotal { op: r.op.clone(), wall_secs: r.wall_secs, comm: r.comm, ot_equivalents: r.ot_equivalents }),
            }
        }
        out
    }
}

/// Peak resident memory of this process so far, in bytes (Linux: `VmHWM` in /proc/self/status;
/// `None` elsewhere or when unreadable). Each party measures its own process.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

/// Reset this process's peak resident memory to its current resident memory (Linux: writes `5`
/// to /proc/self/clear_refs), so a later [`peak_rss_bytes`] covers only what ran in between (one
/// inference of many in one process). False where the kernel does not allow it.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Hand the heap's free pages back to the operating system. glibc keeps the blocks freed in its
/// per-thread arenas mapped, so over many inferences (each allocating and freeing hundreds of
/// MiB: ciphertexts, OT buffers, cache entries of another padded length) the resident size
/// ratchets up with fragmentation rather than with live data. Called between inferences, it
/// keeps a long-running party's resident size at what it uses. A no-op off glibc.
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    trim_glibc_heap();
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim_glibc_heap() {
    // SAFETY: `malloc_trim` takes no pointers; it only walks glibc's own arenas under their locks
    // and returns whole free pages to the kernel, so it cannot affect live allocations.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Keep freed ciphertext-sized blocks in the heap during an inference. With glibc's defaults
/// a block above the (dynamic) mmap threshold is mapped and unmapped on every allocation,
/// and a free at the top of the heap above 128 KiB is handed back at once; a private
/// inference allocates and frees ciphertexts (192–400 KiB each) and OT buffers millions of
/// times, so it spent a fifth of its HE time in page faults and zeroing fresh pages. Blocks
/// below 64 MiB now come from the heap, and up to 512 MiB of free heap top is kept;
/// [`release_free_heap`] still returns everything between inferences. A no-op off glibc.
pub fn tune_heap_for_inference() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tune_glibc_heap();
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn tune_glibc_heap() {
    // SAFETY: `mallopt` only sets allocator parameters; it takes no pointers and is called
    // before the command starts allocating in earnest. A refused setting (return 0) only
    // leaves glibc's default in place.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}

/// The `VmHWM:  N kB` line of a /proc status file, in bytes.
fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse().ok()?;
    kib.checked_mul(1024)
}

/// Bytes as MiB with two decimals (the unit BOLT calls "MB"/"GB" is binary).
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A plain-text table: one row per layer with time, MiB each way and rounds.
pub fn layer_table(rec: &Recorder) -> String {
    let mut s = String::from("layer      time (s)   sent (MiB)   recv (MiB)   rounds\n");
    for (l, t, c) in rec.per_layer() {
        s.push_str(&format!("{l:>5} {t:>13.3} {:>12.2} {:>12.2} {:>8}\n", mib(c.bytes_sent), mib(c.bytes_recv), c.rounds));
    }
    let (t, c) = rec.total(Phase::Online);
    s.push_str(&format!("total {t:>13.3} {:>12.2} {:>12.2} {:>8}\n", mib(c.bytes_sent), mib(c.bytes_recv), c.rounds));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::run_pair;

    #[test]
    fn peak_memory_is_read_from_the_status_file() {
        assert_eq!(parse_vm_hwm("Name:\tx\nVmHWM:\t   2048 kB\nVmRSS:\t 10 kB\n"), Some(2048 * 1024));
        assert_eq!(parse_vm_hwm("VmRSS: 10 kB\n"), None);
        assert_eq!(parse_vm_hwm("VmHWM: lots kB\n"), None);
        if cfg!(target_os = "linux") {
            assert!(peak_rss_bytes().is_some_and(|b| b > 1 << 20), "a running test uses more than 1 MiB");
        }
    }

    #[test]
    fn recorder_meters_each_region_and_sums_per_layer() {
        let out = run_pair(
            |ch| {
                let mut rec = Recorder::new();
                for layer in 0..2 {
                    let m = rec.start(ch, Some(layer), "ping", Phase::Online);
                    ch.send_u64s(&[0; 10])?;
                    let _ = ch.recv_u64()?;
                    rec.finish(ch, m);
                }
                Ok(rec)
            },
            |ch| {
                for _ in 0..2 {
                    let _ = ch.recv_u64s(10)?;
                    ch.send_u64(1)?;
                }
                Ok(())
            },
        )
        .unwrap();
        let rec = out.server;
        let layers = rec.per_layer();
        assert_eq!(layers.len(), 2);
        for (_, _, c) in &layers {
            assert_eq!(c.bytes_sent, 80);
            assert_eq!(c.bytes_recv, 8);
            assert_eq!(c.rounds, 2);
        }
        assert_eq!(rec.total(Phase::Online).1.bytes_sent, 160);
        assert!(layer_table(&rec).contains("total"));
    }
}
