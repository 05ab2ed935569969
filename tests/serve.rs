//! `fastlmpi serve` as a server left running: output policy, many clients at once, "busy"
//! beyond `--max-sessions`, graceful SIGTERM, TLS. Needs the real MiniLM checkpoint
//! (`scripts/fetch-models.sh minilm-l6`). The 4-client run is `#[ignore]` (several minutes
//! on a shared 2-core machine):
//! `cargo test --release --test serve -- --ignored --nocapture`.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_fastlmpi");

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fastlmpi-serve-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn minilm() -> PathBuf {
    let dir = std::env::var_os("FASTLMPI_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models"))
        .join("minilm-l6");
    assert!(dir.join("model.safetensors").exists(), "models/minilm-l6 is missing: run `bash scripts/fetch-models.sh minilm-l6` first");
    dir
}

/// MiniLM with a 2-label head (fixed small weights) next to links to the real files.
fn minilm_with_head() -> PathBuf {
    let src = minilm();
    let dir = scratch("head-model");
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "head.safetensors" {
            std::os::unix::fs::symlink(entry.path(), dir.join(entry.file_name())).unwrap();
        }
    }
    let hidden = 384;
    let weight: Vec<f32> = (0..2 * hidden).map(|i| ((i * 37 % 101) as f32 - 50.0) / 500.0).collect();
    fastlmpi::data::head::LinearHead::new(hidden, weight, [0.1, -0.1]).unwrap().save(&dir.join("head.safetensors")).unwrap();
    dir
}

fn fastlmpi(args: &[&str], results: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).env("FASTLMPI_RESULTS_DIR", results).stdin(Stdio::null());
    c
}

/// A long-running `serve` with its stderr in a file (the session log).
struct Server {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Server {
    fn start(model: &Path, extra: &[&str], dir: &Path) -> Server {
        let log = dir.join("server.log");
        let mut child = fastlmpi(&["serve", "--announce", "--no-fetch", "--listen", "127.0.0.1:0", "--model", model.to_str().unwrap()], dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("server printed nothing").unwrap();
        let addr = first.strip_prefix("LISTENING ").expect("no LISTENING line").trim().to_string();
        std::thread::spawn(move || for _ in lines {});
        Server { child, addr, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait for the exit status.
    fn terminate(mut self, limit: Duration) -> (bool, String) {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.success(), self.log());
            }
            if t0.elapsed() > limit {
                let _ = self.child.kill();
                panic!("server did not exit within {limit:?} of SIGTERM; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client(addr: &str, model: &Path, input: &str, extra: &[&str], results: &Path) -> Command {
    let mut c = fastlmpi(&["client", "--no-fetch", "--json", "--connect", addr, "--input", input, "--model", model.to_str().unwrap()], results);
    c.args(extra).stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

fn finish(child: Child, limit: Duration) -> Output {
    let t0 = Instant::now();
    let mut child = child;
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("client did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn json_of(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "client failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn partial_depth_is_refused_without_allow_partial() {
    let dir = scratch("partial");
    let model = minilm();
    let server = Server::start(&model, &[], &dir);
    let t0 = Instant::now();
    let out = finish(client(&server.addr, &model, "hello", &["--layers", "2"], &dir).spawn().unwrap(), Duration::from_secs(300));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("refused") && err.contains("--allow-partial"), "{err}");
    // Refused before any private layer runs.
    assert!(t0.elapsed() < Duration::from_secs(240));
    let (ok, log) = server.terminate(Duration::from_secs(30));
    assert!(ok, "{log}");
    assert!(log.contains("outcome: failed: the server refused"), "{log}");
}

#[test]
fn a_client_beyond_max_sessions_is_told_busy_and_sigterm_exits_cleanly() {
    let dir = scratch("busy");
    let model = minilm();
    let server = Server::start(&model, &["--max-sessions", "1", "--grace-secs", "1"], &dir);
    // A peer that connects and says nothing holds the only session.
    let _silent = TcpStream::connect(&server.addr).unwrap();
    let t0 = Instant::now();
    while !server.log().contains("session 1 from") {
        assert!(t0.elapsed() < Duration::from_secs(30), "the server never took the first connection");
        std::thread::sleep(Duration::from_millis(50));
    }
    let t0 = Instant::now();
    let out = finish(client(&server.addr, &model, "hello", &["--timeout", "20"], &dir).spawn().unwrap(), Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("server busy") && err.contains("retry later"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(20), "busy must come at once, not after a timeout");
    // SIGTERM with a stalled session: stop accepting, wait the grace period, exit 0.
    let t0 = Instant::now();
    let (ok, log) = server.terminate(Duration::from_secs(30));
    assert!(ok, "{log}");
    assert!(log.contains("shutting down") && log.contains("refused, 1 sessions running (server busy)"), "{log}");
    assert!(t0.elapsed() < Duration::from_secs(15));
}

#[test]
fn tls_session_end_to_end_and_a_wrong_ca_is_refused() {
    let dir = scratch("tls");
    let model = minilm();
    let made = |sub: &str| {
        let out = fastlmpi(&["keygen-tls", "--out", dir.join(sub).to_str().unwrap()], &dir).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        dir.join(sub)
    };
    let (good, other) = (made("good"), made("other"));
    let cert = good.join("cert.pem");
    let key = good.join("key.pem");
    let server = Server::start(&model, &["--allow-partial", "--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()], &dir);

    let wrong_ca = other.join("ca.pem");
    let out = finish(client(&server.addr, &model, "hello", &["--layers", "1", "--tls-ca", wrong_ca.to_str().unwrap()], &dir).spawn().unwrap(), Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("TLS handshake") && err.contains("--tls-ca"), "{err}");

    let ca = good.join("ca.pem");
    let out = finish(client(&server.addr, &model, "Private inference over TLS.", &["--layers", "1", "--tls-ca", ca.to_str().unwrap()], &dir).spawn().unwrap(), Duration::from_secs(900));
    let v = json_of(&out);
    let protocol = v["total_bytes"].as_u64().unwrap();
    let wire = v["tls_wire_bytes"].as_u64().unwrap();
    assert!(wire > protocol, "TLS adds records and a handshake: {wire} vs {protocol}");
    assert!(wire < protocol + protocol / 20, "TLS overhead above 5%: {wire} vs {protocol}");
    // The pooled embedding's cosine, or the logits' error when the checkpoint has a trained head
    // (then the server opens the logits, not the embedding).
    let a = &v["agreement"];
    let agrees = a["pooled_cosine"].as_f64().is_some_and(|c| c > 0.999) || a["logits_max_abs_error"].as_f64().is_some_and(|e| e < 0.05);
    assert!(agrees, "private output far from f32: {a}");
    eprintln!("TLS: {protocol} protocol bytes, {wire} bytes on the wire ({:+.3}%)", 100.0 * (wire as f64 / protocol as f64 - 1.0));
    let (ok, log) = server.terminate(Duration::from_secs(30));
    assert!(ok, "{log}");
    assert!(log.contains("bytes with TLS"), "{log}");
}

/// `[   12.3 s] session N from …: started` / `…: model …` (the end line): (N, time).
fn session_times(log: &str, end: bool) -> Vec<(u64, f64)> {
    log.lines()
        .filter(|l| if end { l.contains("outcome:") } else { l.ends_with(": started") })
        .filter_map(|l| {
            let t: f64 = l.strip_prefix('[')?.split(" s]").next()?.trim().parse().ok()?;
            let id: u64 = l.split("session ").nth(1)?.split(' ').next()?.parse().ok()?;
            Some((id, t))
        })
        .collect()
}

const SENTENCES: [&str; 4] = ["The new movie is awesome", "A man is eating food.", "What a dull evening.", "Thanks, that helped!"];

#[test]
#[ignore = "several minutes: 4 + 4 + 2 one-layer MiniLM inferences"]
fn four_clients_at_once_match_their_single_client_results() {
    let dir = scratch("four");
    let model = minilm_with_head();
    // Default reveal (logits); a 1-layer run: the point is concurrency, not depth.
    let server = Server::start(&model, &["--allow-partial", "--max-sessions", "4"], &dir);
    let args = ["--layers", "1", "--threads", "1"];
    let limit = Duration::from_secs(1800);
    let single: Vec<serde_json::Value> = SENTENCES
        .iter()
        .map(|s| json_of(&finish(client(&server.addr, &model, s, &args, &dir).spawn().unwrap(), limit)))
        .collect();
    for v in &single {
        assert!(v["pooled"].is_null(), "the embedding was opened although the server's policy is logits");
        assert_eq!(v["logits"].as_array().unwrap().len(), 2);
    }

    let before = session_times(&server.log(), false).len();
    let t0 = Instant::now();
    let four: Vec<Child> = SENTENCES.iter().map(|s| client(&server.addr, &model, s, &args, &dir).spawn().unwrap()).collect();
    while session_times(&server.log(), false).len() < before + 4 {
        assert!(t0.elapsed() < Duration::from_secs(120), "the four sessions did not all start:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let t5 = Instant::now();
    let fifth = finish(client(&server.addr, &model, "one too many", &args, &dir).spawn().unwrap(), Duration::from_secs(60));
    let err = String::from_utf8_lossy(&fifth.stderr);
    assert!(!fifth.status.success() && err.contains("server busy"), "{err}");
    let busy_secs = t5.elapsed().as_secs_f64();
    let outs: Vec<serde_json::Value> = four.into_iter().map(|c| json_of(&finish(c, limit))).collect();
    let concurrent_secs = t0.elapsed().as_secs_f64();
    for ((s, a), b) in SENTENCES.iter().zip(&outs).zip(&single) {
        assert_eq!(a["logits"], b["logits"], "{s}: concurrent result differs from the single-client one");
    }
    let log = server.log();
    let starts = session_times(&log, false);
    let ends = session_times(&log, true);
    let last_start = starts[before..before + 4].iter().map(|&(_, t)| t).fold(0.0, f64::max);
    let ends_of_four: Vec<f64> = ends.iter().filter(|(id, _)| starts[before..before + 4].iter().any(|(s, _)| s == id)).map(|&(_, t)| t).collect();
    assert_eq!(ends_of_four.len(), 4, "{log}");
    let first_end = ends_of_four.iter().copied().fold(f64::MAX, f64::min);
    assert!(last_start < first_end, "the four sessions did not overlap:\n{log}");

    // A client killed mid-inference: the session next to it still gives its exact result.
    let survivor = client(&server.addr, &model, SENTENCES[0], &args, &dir).spawn().unwrap();
    let mut victim = client(&server.addr, &model, SENTENCES[1], &args, &dir).spawn().unwrap();
    // Half of its single-client time: well inside the private layers.
    std::thread::sleep(Duration::from_secs_f64(single[1]["total_wall_secs"].as_f64().unwrap() / 2.0));
    assert!(victim.try_wait().unwrap().is_none(), "the client to kill finished too early");
    victim.kill().unwrap();
    let _ = victim.wait();
    let kept = json_of(&finish(survivor, limit));
    assert_eq!(kept["logits"], single[0]["logits"]);
    let (ok, log) = server.terminate(Duration::from_secs(60));
    assert!(ok, "{log}");
    assert!(log.contains("outcome: failed: peer disconnected"), "{log}");
    eprintln!("{log}");
    eprintln!("four clients: {concurrent_secs:.1} s together; the fifth was told busy in {busy_secs:.2} s");
}
