//! What every recorded result carries about how it was made: the commit, the command line, the
//! machine (cores, memory, CPU) and the date, so a figure can be traced and remade
//! (`scripts/record.sh` remakes the files under `results/recorded/` from these command lines).

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The machine a record was measured on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Cores available to this process.
    pub cores: usize,
    /// Physical memory (MemTotal of /proc/meminfo), bytes.
    pub memory_bytes: Option<u64>,
    /// CPU model name (/proc/cpuinfo).
    pub cpu: Option<String>,
}

/// Commit, command, machine and date of one record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// `git rev-parse HEAD` (or `FASTLMPI_COMMIT`), with `-dirty` when the tree had changes.
    pub commit: String,
    /// The command line as typed (program name shortened to `fastlmpi`).
    pub command: String,
    /// `release` or `debug` (timings of a debug build are not comparable).
    pub build: String,
    pub machine: Machine,
    pub date_utc: String,
    /// Other work on the machine, as the recording said (`FASTLMPI_MACHINE_NOTE`, e.g. "shared").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Provenance {
    /// The provenance of the running command.
    pub fn current() -> Provenance {
        let mut args = std::env::args();
        let program = args.next().map(|_| "fastlmpi".to_string()).unwrap_or_default();
        let command = std::iter::once(program).chain(args.map(|a| shell_word(&a))).collect::<Vec<_>>().join(" ");
        Provenance {
            commit: commit(),
            command,
            build: if cfg!(debug_assertions) { "debug" } else { "release" }.to_string(),
            machine: machine(),
            date_utc: utc_timestamp(SystemTime::now(), true),
            note: std::env::var("FASTLMPI_MACHINE_NOTE").ok().filter(|n| !n.trim().is_empty()),
        }
    }

    /// One line for text output: `commit … · release · 2 cores, 23.4 GiB · date · note`.
    pub fn line(&self) -> String {
        let mem = self.machine.memory_bytes.map(|b| format!(", {:.1} GiB", b as f64 / (1u64 << 30) as f64)).unwrap_or_default();
        let note = self.note.as_deref().map(|n| format!(" · {n}")).unwrap_or_default();
        format!("commit {} · {} build · {} cores{mem} · {}{note}", self.commit, self.build, self.machine.cores, self.date_utc)
    }
}

/// Quote a word that the shell would split or expand.
fn shell_word(w: &str) -> String {
    if !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_./,:=@%+".contains(c)) {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn commit() -> String {
    if let Some(c) = std::env::var("FASTLMPI_COMMIT").ok().filter(|c| !c.trim().is_empty()) {
        return c.trim().to_string();
    }
    match git(&["rev-parse", "HEAD"]) {
        Some(head) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{head}-dirty")
            } else {
                head
            }
        }
        None => "unknown".to_string(),
    }
}

fn machine() -> Machine {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    Machine {
        cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        memory_bytes: kib_field(&meminfo, "MemTotal:"),
        cpu: cpuinfo.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string()),
    }
}

/// `NAME  N kB` of a /proc file, in bytes.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
    kib.checked_mul(1024)
}

/// `2026-11-23T21:50:00Z` (`pretty`) or `20261123T215000Z`.
pub fn utc_timestamp(t: SystemTime, pretty: bool) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
    if pretty {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
    } else {
        format!("{y:04}{m:02}{d:02}T{hh:02}{mm:02}{ss:02}Z")
    }
}

/// Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps() {
        assert_eq!(utc_timestamp(UNIX_EPOCH, true), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_470_600); // 2026-11-23 21:50:00 UTC
        assert_eq!(utc_timestamp(t, false), "20261123T215000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(utc_timestamp(leap, true), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn machine_and_command_are_recorded() {
        let p = Provenance::current();
        assert!(p.machine.cores >= 1);
        assert!(p.command.starts_with("fastlmpi"));
        assert!(!p.commit.is_empty() && !p.date_utc.is_empty());
        assert_eq!(kib_field("MemTotal:   1024 kB\n", "MemTotal:"), Some(1 << 20));
        assert_eq!(shell_word("--net"), "--net");
        assert_eq!(shell_word("a b's"), "'a b'\\''s'");
    }
}
