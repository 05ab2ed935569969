//! Process-level tests of the two-party runtime: `serve` and `client` as separate processes,
//! `run`, handshake mismatches, misbehaving peers and bad input. They need the small real
//! model (`scripts/fetch-models.sh minilm-l6`, which `.ci/run` does first).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_fastlmpi");

fn models_dir() -> PathBuf {
    std::env::var_os("FASTLMPI_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models"))
}

fn minilm() -> PathBuf {
    let dir = models_dir().join("minilm-l6");
    assert!(
        dir.join("model.safetensors").exists(),
        "models/minilm-l6 is missing: run `bash scripts/fetch-models.sh minilm-l6` first"
    );
    dir
}

/// The client's report shows agreement with the f32 model: the pooled embedding's cosine when
/// that is opened, or the logits' error when the checkpoint has a trained head (after the
/// README's first command, `train-head`, it does).
fn agrees_with_f32(stdout: &str) -> bool {
    let logits_error = stdout
        .lines()
        .find(|l| l.starts_with("logits: private"))
        .and_then(|l| l.rsplit_once("max abs error "))
        .and_then(|(_, e)| e.trim_end_matches(')').trim().parse::<f64>().ok());
    stdout.contains("agreement with the plaintext f32 model: cosine 0.99") || logits_error.is_some_and(|e| e < 0.05)
}

fn fastlmpi(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).stdin(Stdio::null());
    c
}

fn run_to_end(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if t0.elapsed() > limit {
            child.kill().unwrap();
            panic!("command did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Start `serve --once --announce --allow-partial` (the tests run one layer) and return the
/// child and its address.
fn start_server(model: &Path, extra: &[&str]) -> (Child, String) {
    let mut child = fastlmpi(&["serve", "--once", "--announce", "--allow-partial", "--no-fetch", "--listen", "127.0.0.1:0"])
        .args(["--model", model.to_str().unwrap(), "--accept-timeout", "30"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("server printed nothing").unwrap();
    let addr = first.strip_prefix("LISTENING ").expect("no LISTENING line").trim().to_string();
    // Keep draining stdout in the background so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

fn wait_child(mut child: Child, limit: Duration) -> (bool, String) {
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                e.read_to_string(&mut err).unwrap();
            }
            return (status.success(), err);
        }
        if t0.elapsed() > limit {
            child.kill().unwrap();
            panic!("server did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serve_and_client_run_as_separate_processes() {
    let model = minilm();
    let (server, addr) = start_server(&model, &[]);
    let out = run_to_end(
        fastlmpi(&["client", "--no-fetch", "--layers", "1", "--connect", &addr, "--input", "Private inference over TCP."])
            .args(["--model", model.to_str().unwrap()]),
        Duration::from_secs(600),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "client failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("channel check: ok"), "{stdout}");
    assert!(agrees_with_f32(&stdout), "{stdout}");
    assert!(stdout.contains("gelu"), "per-operator table missing: {stdout}");
    let (ok, err) = wait_child(server, Duration::from_secs(30));
    assert!(ok, "server failed: {err}");
}

#[test]
fn run_spawns_and_reaps_the_server() {
    let model = minilm();
    let out = run_to_end(
        fastlmpi(&["run", "--no-fetch", "--json", "--layers", "1", "--weight-cache-mib", "512", "--input", "The new movie is awesome"])
            .args(["--model", model.to_str().unwrap()]),
        Duration::from_secs(600),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["client"]["comm"]["bytes_sent"], v["server"]["comm"]["bytes_recv"]);
    assert_eq!(v["client"]["comm"]["bytes_recv"], v["server"]["comm"]["bytes_sent"]);
    assert_eq!(v["client"]["comm"]["rounds"], v["server"]["comm"]["rounds"]);
    let cos = v["agreement"]["pooled_cosine"].as_f64().unwrap();
    assert!(cos > 0.999, "private vs plaintext cosine {cos}");
    assert_eq!(v["layers"], 1);
    // The server warmed its weight cache during setup (one layer's matrices fit in 512 MiB).
    assert!(v["server"]["weight_cache_bytes"].as_u64().unwrap() > 0, "{}", v["server"]);
    let n = v["seq_len"].as_u64().unwrap();
    assert_eq!(v["elements_per_layer"]["gelu"].as_u64().unwrap(), n * 1536);
    assert_eq!(v["elements_per_layer"]["softmax"].as_u64().unwrap(), 12 * n * n);
}

/// A server process killed when the test ends, also when an assertion fails first.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `serve --announce` (many clients) and return the child and its address.
fn start_long_server(model: &Path, extra: &[&str]) -> (KillOnDrop, String) {
    let mut child = fastlmpi(&["serve", "--announce", "--no-fetch", "--listen", "127.0.0.1:0"])
        .args(["--model", model.to_str().unwrap()])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("server printed nothing").unwrap();
    let addr = first.strip_prefix("LISTENING ").expect("no LISTENING line").trim().to_string();
    std::thread::spawn(move || for _ in lines {});
    (KillOnDrop(child), addr)
}

/// The server drops its first connection after its 40th message (inside the first layer, at
/// a fixed point instead of a kill after a guessed sleep): the client reports the disconnect
/// in the private layers, and the same server process answers the next client.
#[test]
fn client_reports_a_server_that_drops_the_connection_in_the_private_layers() {
    let model = minilm();
    let (_server, addr) = start_long_server(&model, &["--inject-fault", "close:40", "--allow-partial", "--reveal", "embedding"]);
    let client = |timeout: &str| {
        run_to_end(
            fastlmpi(&["client", "--no-fetch", "--layers", "1", "--timeout", timeout, "--connect", &addr, "--input", "hello there"])
                .args(["--model", model.to_str().unwrap()]),
            Duration::from_secs(600),
        )
    };
    let t0 = Instant::now();
    let first = client("20");
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(!first.status.success(), "client succeeded on a dropped connection");
    assert!(err.contains("peer disconnected during"), "{err}");
    for setup in ["handshake", "channel check", "session", "setup"] {
        assert!(!err.contains(setup), "the fault should hit the private layers, not `{setup}`: {err}");
    }
    assert!(t0.elapsed() < Duration::from_secs(300), "client hung after the server dropped it");
    let second = client("600");
    let out = String::from_utf8_lossy(&second.stdout);
    assert!(second.status.success(), "the server did not serve the next client: {}", String::from_utf8_lossy(&second.stderr));
    assert!(agrees_with_f32(&out), "{out}");
}

/// A copy of the MiniLM checkpoint whose config claims one layer fewer (a different shape).
fn shape_changed_model() -> PathBuf {
    let src = minilm();
    let dir = std::env::temp_dir().join(format!("fastlmpi-shape-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["tokenizer.json", "model.safetensors", "modules.json"] {
        if src.join(f).exists() && !dir.join(f).exists() {
            std::fs::copy(src.join(f), dir.join(f)).unwrap();
        }
    }
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    cfg["num_hidden_layers"] = serde_json::json!(5);
    std::fs::write(dir.join("config.json"), serde_json::to_vec(&cfg).unwrap()).unwrap();
    dir
}

#[test]
fn handshake_mismatch_stops_both_parties_with_a_message() {
    let other = shape_changed_model();
    let (server, addr) = start_server(&other, &[]);
    let out = run_to_end(
        fastlmpi(&["client", "--no-fetch", "--connect", &addr, "--input", "hello"]).args(["--model", minilm().to_str().unwrap()]),
        Duration::from_secs(60),
    );
    let client_err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success());
    assert!(client_err.contains("model shape differs"), "{client_err}");
    let (ok, server_err) = wait_child(server, Duration::from_secs(30));
    assert!(!ok);
    assert!(server_err.contains("model shape differs"), "{server_err}");
}

#[test]
fn server_rejects_garbage_and_oversized_frames() {
    let model = minilm();
    for payload in [b"GET / HTTP/1.1\r\n\r\n".to_vec(), u64::MAX.to_le_bytes().to_vec()] {
        let (server, addr) = start_server(&model, &[]);
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(&payload).unwrap();
        s.flush().unwrap();
        let (ok, err) = wait_child(server, Duration::from_secs(30));
        assert!(!ok, "server accepted garbage");
        assert!(err.contains("error:"), "{err}");
        assert!(err.contains("frame") || err.contains("handshake"), "{err}");
    }
}

#[test]
fn client_reports_a_server_that_dies_mid_exchange() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let fake = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 8];
        s.read_exact(&mut buf).unwrap(); // read the start of the hello, then die
    });
    let t0 = Instant::now();
    let out = run_to_end(
        fastlmpi(&["client", "--no-fetch", "--timeout", "20", "--connect", &addr, "--input", "hello"])
            .args(["--model", minilm().to_str().unwrap()]),
        Duration::from_secs(60),
    );
    fake.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("disconnected") || err.contains("reset"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(20));
}

#[test]
fn client_times_out_on_a_silent_server() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let silent = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        std::thread::sleep(Duration::from_secs(4));
        drop(s);
    });
    let out = run_to_end(
        fastlmpi(&["client", "--no-fetch", "--timeout", "1", "--connect", &addr, "--input", "hello"])
            .args(["--model", minilm().to_str().unwrap()]),
        Duration::from_secs(30),
    );
    silent.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("timed out"), "{err}");
}

fn expect_failure(args: &[&str], needle: &str) {
    let out = run_to_end(&mut fastlmpi(args), Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure for {args:?}");
    assert!(err.to_lowercase().contains(&needle.to_lowercase()), "for {args:?}: {err}");
}

#[test]
fn bad_input_gives_a_clear_error_and_nonzero_exit() {
    let m = minilm();
    let m = m.to_str().unwrap();
    expect_failure(&["plain", "--model", "no-such-model", "--input", "x"], "unknown model");
    expect_failure(&["plain", "--model", "/nonexistent/folder", "--input", "x"], "/nonexistent/folder");
    expect_failure(&["plain", "--no-fetch", "--model", m, "--input", "   "], "empty");
    let long = "word ".repeat(50);
    expect_failure(&["plain", "--no-fetch", "--model", m, "--max-len", "16", "--input", &long], "16");
    expect_failure(&["run", "--no-fetch", "--model", m, "--max-len", "16", "--input", &long], "16");
    expect_failure(&["plain", "--bogus-flag"], "bogus");
    let ok = run_to_end(
        &mut fastlmpi(&["plain", "--no-fetch", "--model", m, "--max-len", "16", "--truncate", "--input", &long]),
        Duration::from_secs(60),
    );
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
}

#[cfg(unix)]
#[test]
fn non_utf8_input_is_rejected() {
    use std::os::unix::ffi::OsStrExt;
    let m = minilm();
    let bad = std::ffi::OsStr::from_bytes(&[0x66, 0x6f, 0xff, 0xfe]);
    let out = run_to_end(
        Command::new(BIN).args(["plain", "--no-fetch", "--model", m.to_str().unwrap(), "--input"]).arg(bad),
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("UTF-8"), "{}", String::from_utf8_lossy(&out.stderr));
}
