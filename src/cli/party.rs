//! The two parties as processes: `serve`, `client`, and `run` (server as a child process of
//! the same binary on an ephemeral 127.0.0.1 port, client in this process).
//!
//! What crosses the wire before the private layers start: the handshake (version, roles,
//! model *shape* fingerprint, numeric parameters), the public request (sequence length), and a
//! channel check (random bytes from the client, their SHA-256 from the server). The server
//! never sends weights; the client never sends its text.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ClientArgs, ModelArgs, NetArgs, PlainArgs, RunArgs, ServeArgs};
use crate::error::{Error, Result};
use crate::engine::report::{layer_table, mib, Phase, Recorder};
use crate::engine::{client_close, client_infer, client_open, serve_session as engine_session, ClientOutcome, Profile, ServerModel};
use crate::model;
use crate::net::handshake::{handshake, Hello};
use crate::net::shaping::Shaped;
use crate::net::{accept_with_timeout, connect_with_retry, Channel, CommStats, Metered, TcpChannel, TcpTransport};
use crate::share::Role;

/// Bytes the client sends in the channel check.
const CHANNEL_CHECK_BYTES: usize = 64 * 1024;

/// What each party reports at the end of a session.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PartyReport {
    pub role: Role,
    pub model: String,
    pub seq_len: usize,
    pub wall_secs: f64,
    pub comm: CommStats,
    pub channel_check: bool,
    pub private_inference: Option<serde_json::Value>,
}

/// Numeric parameters both parties must agree on (checked in the handshake).
fn session_params(profile: &Profile) -> BTreeMap<String, String> {
    profile.handshake_params()
}

fn resolve(args: &ModelArgs) -> Result<model::ResolvedModel> {
    let r = model::resolve(&args.model, !args.no_fetch)?;
    if let Some(note) = &r.note {
        eprintln!("note: {note}");
    }
    Ok(r)
}

fn open_channel(stream: std::net::TcpStream, net: &NetArgs) -> Result<TcpChannel> {
    let transport = TcpTransport::new(stream, Duration::from_secs(net.timeout.max(1)))?;
    Ok(Metered::new(Shaped::new(transport, net.link()?)))
}

/// `fastlmpi serve`: bind, then serve clients one at a time.
pub fn serve(args: &ServeArgs) -> Result<()> {
    let engine = super::EngineArgs { profile: args.profile.clone(), layers: None, threads: args.threads, ot: args.ot.clone() };
    engine.apply_threads()?;
    let profile = engine.profile()?;
    let resolved = resolve(&args.model)?;
    let model = model::Model::load(&resolved.dir)?;
    let server_model = ServerModel::with_weight_cache(&model, &profile, args.weight_cache_mib.saturating_mul(1 << 20))?;
    let fingerprint = model.public.config.shape_fingerprint();
    let listener = TcpListener::bind(&args.listen)
        .map_err(|e| Error::Net { context: format!("binding {}", args.listen), source: e })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Net { context: "reading the bound address".into(), source: e })?;
    if args.announce {
        println!("LISTENING {addr}");
    } else {
        eprintln!("fastlmpi server: model {} ({}), listening on {addr}", resolved.name, resolved.dir.display());
    }
    let accept_timeout = (args.accept_timeout > 0).then(|| Duration::from_secs(args.accept_timeout));
    loop {
        let stream = accept_with_timeout(&listener, accept_timeout)?;
        let mut ch = open_channel(stream, &args.net)?;
        let result = serve_session(&mut ch, &server_model, &profile, &resolved.name, &fingerprint);
        match (&result, args.once) {
            (Ok(report), _) if args.announce => {
                let json = serde_json::to_string(report).map_err(|e| Error::protocol("report", e.to_string()))?;
                println!("REPORT {json}");
            }
            (Ok(report), _) => eprintln!(
                "session done: {} bytes sent, {} received, {} rounds, {:.2} s",
                report.comm.bytes_sent, report.comm.bytes_recv, report.comm.rounds, report.wall_secs
            ),
            (Err(e), false) => eprintln!("session failed: {e}"),
            (Err(_), true) => {}
        }
        if args.once {
            return result.map(|_| ());
        }
    }
}

fn serve_session(ch: &mut TcpChannel, sm: &ServerModel, profile: &Profile, name: &str, fingerprint: &str) -> Result<PartyReport> {
    let t0 = Instant::now();
    handshake(ch, &Hello::new(Role::Server, fingerprint, session_params(profile)))?;
    channel_check_server(ch)?;
    let report = engine_session(ch, sm, profile)?;
    Ok(PartyReport {
        role: Role::Server,
        model: name.to_string(),
        seq_len: 0,
        wall_secs: t0.elapsed().as_secs_f64(),
        comm: ch.stats(),
        channel_check: true,
        private_inference: Some(serde_json::to_value(&report).map_err(|e| Error::protocol("report", e.to_string()))?),
    })
}

fn channel_check_server(ch: &mut TcpChannel) -> Result<()> {
    ch.set_phase("channel check");
    let mut probe = vec![0u8; CHANNEL_CHECK_BYTES];
    ch.recv_bytes(&mut probe)?;
    ch.send_bytes(&Sha256::digest(&probe))?;
    ch.flush()
}

/// Everything the client prepares before it connects (so bad input fails fast, offline).
struct ClientInput {
    resolved: model::ResolvedModel,
    public: model::PublicModel,
    tokens: model::Tokenized,
    profile: Profile,
    layers: usize,
}

fn prepare_client(model_args: &ModelArgs, text: &super::TextArgs, seq_len: Option<usize>, engine: &super::EngineArgs) -> Result<ClientInput> {
    engine.apply_threads()?;
    let profile = engine.profile()?;
    let resolved = resolve(model_args)?;
    let public = model::PublicModel::load(&resolved.dir)?;
    let tokens = public.tokenizer.encode_padded(&text.input, text.max_len, text.truncate, seq_len)?;
    let depth = public.config.num_hidden_layers;
    let layers = engine.layers.unwrap_or(depth);
    if layers == 0 || layers > depth {
        return Err(Error::Input(format!("--layers {layers} outside 1..={depth} for {}", resolved.name)));
    }
    Ok(ClientInput { resolved, public, tokens, profile, layers })
}

/// `fastlmpi client`: connect, handshake, run the session, print the report.
pub fn client(args: &ClientArgs) -> Result<PartyReport> {
    let input = prepare_client(&args.model, &args.text, args.seq_len, &args.engine)?;
    let stream = connect_with_retry(&args.connect, 50, Duration::from_millis(100))?;
    let mut ch = open_channel(stream, &args.net)?;
    let (report, outcome) = client_session(&mut ch, &input)?;
    drop(ch);
    finish_client(&input, &report, &outcome, None, args.json)?;
    Ok(report)
}

fn client_session(ch: &mut TcpChannel, input: &ClientInput) -> Result<(PartyReport, ClientOutcome)> {
    let t0 = Instant::now();
    client_handshake(ch, &input.public, &input.profile)?;
    let mut es = client_open(ch, &input.public, &input.profile, &[input.tokens.len()])?;
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut outcome = client_infer(ch, &mut es, &input.public, &input.tokens, input.layers, true, progress)?;
    client_close(ch)?;
    // One record set: the session's setup, then the inference.
    let mut records = es.setup.clone();
    records.records.append(&mut outcome.records.records);
    outcome.records = records;
    let report = PartyReport {
        role: Role::Client,
        model: input.resolved.name.clone(),
        seq_len: input.tokens.len(),
        wall_secs: t0.elapsed().as_secs_f64(),
        comm: ch.stats(),
        channel_check: true,
        private_inference: Some(serde_json::to_value(&outcome.records).map_err(|e| Error::protocol("report", e.to_string()))?),
    };
    Ok((report, outcome))
}

/// Random bytes out, their SHA-256 back: the link works end to end before any key material.
fn channel_check_client(ch: &mut TcpChannel) -> Result<()> {
    ch.set_phase("channel check");
    let mut probe = vec![0u8; CHANNEL_CHECK_BYTES];
    rand::rng().fill_bytes(&mut probe);
    ch.send_bytes(&probe)?;
    ch.flush()?;
    let mut digest = [0u8; 32];
    ch.recv_bytes(&mut digest)?;
    if digest[..] != Sha256::digest(&probe)[..] {
        return Err(Error::protocol("channel check", "the server's checksum does not match the bytes sent"));
    }
    Ok(())
}

/// Agreement of the private output with the f32 model (needs the weights on this machine,
/// which holds for `run`; a remote client without weights skips it).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Agreement {
    pooled_cosine: Option<f64>,
    pooled_max_abs_error: Option<f64>,
    logits_max_abs_error: Option<f64>,
    plaintext_logits: Option<Vec<f32>>,
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).abs()).fold(0.0, f64::max)
}

fn plaintext_agreement(input: &ClientInput, outcome: &ClientOutcome) -> Option<Agreement> {
    let full = model::Model::load(&input.resolved.dir).ok()?;
    let m = full.truncated(input.layers).ok()?;
    let plain = model::forward_f32(&m, &input.tokens).ok()?;
    let pooled_plain = plain.pooled.to_vec();
    let logits_plain = plain.logits.as_ref().map(|l| l.to_vec());
    Some(Agreement {
        pooled_cosine: outcome.pooled.as_ref().map(|p| model::cosine(p, &pooled_plain)),
        pooled_max_abs_error: outcome.pooled.as_ref().map(|p| max_abs_diff(p, &pooled_plain)),
        logits_max_abs_error: match (&outcome.logits, &logits_plain) {
            (Some(a), Some(b)) => Some(max_abs_diff(a, b)),
            _ => None,
        },
        plaintext_logits: logits_plain,
    })
}

/// Print the result, the agreement and the per-layer table; write the record to `results/`.
fn finish_client(input: &ClientInput, client: &PartyReport, outcome: &ClientOutcome, server: Option<&PartyReport>, json: bool) -> Result<()> {
    let agreement = plaintext_agreement(input, outcome);
    let prediction = outcome.logits.as_ref().filter(|l| l.len() == 2).map(|l| crate::data::head::predict_from_logits([l[0], l[1]]));
    let (setup_secs, setup_comm) = outcome.records.total(Phase::Setup);
    let (online_secs, online_comm) = outcome.records.total(Phase::Online);
    let record = serde_json::json!({
        "model": input.resolved.name,
        "profile": input.profile.name(),
        "ot": input.profile.ot.name(),
        "tokens": input.tokens.num_attended(),
        "seq_len": input.tokens.len(),
        "layers": input.layers,
        "layers_in_model": input.public.config.num_hidden_layers,
        "prediction": prediction.as_ref().map(|p| serde_json::json!({"label": p.name(), "probability": p.probability})),
        "logits": outcome.logits,
        "pooled": outcome.pooled,
        "agreement": agreement,
        "total_wall_secs": client.wall_secs,
        "total_bytes": client.comm.bytes_sent + client.comm.bytes_recv,
        "total_rounds": client.comm.rounds,
        "setup": {"wall_secs": setup_secs, "comm": setup_comm},
        "online": {"wall_secs": online_secs, "comm": online_comm},
        "client": client,
        "server": server,
    });
    let path = write_run_record(&input.resolved.name, input.profile.name(), &record)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&record).map_err(|e| Error::protocol("report", e.to_string()))?);
        return Ok(());
    }
    println!("model: {}  profile: {}  tokens: {} (padded to {})  layers: {}/{}", input.resolved.name, input.profile.name(), input.tokens.num_attended(), input.tokens.len(), input.layers, input.public.config.num_hidden_layers);
    println!("handshake + channel check: ok");
    match (&prediction, &outcome.pooled) {
        (Some(p), _) => println!("result: {} {:.2}", p.name(), p.probability),
        (None, Some(v)) => {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            let head: Vec<String> = v.iter().take(6).map(|x| format!("{x:+.4}")).collect();
            println!("result: pooled[0..6] = [{}]  norm {norm:.4}", head.join(", "));
        }
        (None, None) => println!("result: (nothing opened)"),
    }
    if let Some(a) = &agreement {
        if let (Some(c), Some(e)) = (a.pooled_cosine, a.pooled_max_abs_error) {
            println!("agreement with the plaintext f32 model: cosine {c:.6}, max abs error {e:.5}");
        }
        if let Some(e) = a.logits_max_abs_error {
            println!("logits: private {:?}, plaintext {:?} (max abs error {e:.5})", outcome.logits.as_deref().unwrap_or(&[]), a.plaintext_logits.as_deref().unwrap_or(&[]));
        }
    }
    println!("setup: {setup_secs:.2} s, {:.2} MiB; online: {online_secs:.2} s, {:.2} MiB, {} rounds", mib(setup_comm.bytes_sent + setup_comm.bytes_recv), mib(online_comm.bytes_sent + online_comm.bytes_recv), online_comm.rounds);
    print!("{}", layer_table(&outcome.records));
    print!("{}", op_table(&outcome.records));
    println!("record: {}", path.display());
    Ok(())
}

/// Per-operator totals (online), one line each.
pub fn op_table(rec: &Recorder) -> String {
    let mut s = String::from("operator         time (s)   sent (MiB)   recv (MiB)   rounds\n");
    for (op, t, c) in rec.per_op() {
        s.push_str(&format!("{op:<14} {t:>10.3} {:>12.2} {:>12.2} {:>8}\n", mib(c.bytes_sent), mib(c.bytes_recv), c.rounds));
    }
    s
}

fn write_run_record(model: &str, profile: &str, record: &serde_json::Value) -> Result<std::path::PathBuf> {
    let dir = super::results_dir();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let path = dir.join(format!("run-{model}-{profile}-{stamp}.json"));
    let text = serde_json::to_string_pretty(record).map_err(|e| Error::protocol("report", e.to_string()))?;
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
    Ok(path)
}

/// A child server process that is always killed and reaped, also on error or Ctrl-C.
struct ChildGuard(Arc<Mutex<Option<Child>>>);

impl ChildGuard {
    fn reap(&self) {
        if let Ok(mut slot) = self.0.lock() {
            if let Some(mut child) = slot.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.reap();
    }
}

/// A server child process (`serve --once --announce` on an ephemeral port) and its stdout lines.
pub struct LocalServer {
    guard: ChildGuard,
    lines: std::sync::mpsc::Receiver<String>,
    pub addr: String,
}

impl LocalServer {
    /// Spawn the server for the checkpoint in `model_dir`; returns once it listens.
    pub fn spawn(model_dir: &std::path::Path, net: &NetArgs, engine: &super::EngineArgs, weight_cache_mib: usize) -> Result<LocalServer> {
        let (profile, threads) = (engine.profile.as_str(), engine.threads);
        // The server is this binary; FASTLMPI_SERVER_BIN overrides it (library callers, tests).
        let exe = match std::env::var_os("FASTLMPI_SERVER_BIN") {
            Some(p) => std::path::PathBuf::from(p),
            None => std::env::current_exe().map_err(|e| Error::io("current executable", e))?,
        };
        let mut cmd = Command::new(exe);
        cmd.args(["serve", "--once", "--announce", "--listen", "127.0.0.1:0", "--accept-timeout", "60"])
            .args(["--model", &model_dir.to_string_lossy(), "--no-fetch"])
            .args(["--timeout", &net.timeout.to_string(), "--net", &net.net])
            .args(["--profile", profile, "--ot", &engine.ot, "--weight-cache-mib", &weight_cache_mib.to_string()])
            .args(threads.map(|t| vec!["--threads".to_string(), t.to_string()]).unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().map_err(|e| Error::io("spawning the server process", e))?;
        let stdout = child.stdout.take().ok_or_else(|| Error::protocol("run", "no stdout from the server process"))?;
        let guard = ChildGuard(Arc::new(Mutex::new(Some(child))));
        install_ctrlc(&guard);
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let addr = wait_for_line(&rx, "LISTENING ", Duration::from_secs(120))?;
        Ok(LocalServer { guard, lines: rx, addr })
    }

    /// Connect a client channel to it.
    pub fn connect(&self, net: &NetArgs) -> Result<TcpChannel> {
        let stream = connect_with_retry(&self.addr, 50, Duration::from_millis(100))?;
        open_channel(stream, net)
    }

    /// Wait for the server's final report, then reap the process.
    pub fn finish(self, timeout: Duration) -> Result<PartyReport> {
        let json = wait_for_line(&self.lines, "REPORT ", timeout)?;
        self.guard.reap();
        serde_json::from_str(&json).map_err(|e| Error::protocol("run", format!("unreadable server report: {e}")))
    }
}

/// The client's handshake and channel check (shared by `client`, `run` and `eval --private`).
pub fn client_handshake(ch: &mut TcpChannel, public: &model::PublicModel, profile: &Profile) -> Result<()> {
    handshake(ch, &Hello::new(Role::Client, public.config.shape_fingerprint(), session_params(profile)))?;
    channel_check_client(ch)
}

/// `fastlmpi run`: spawn `serve --once --announce` on an ephemeral port, run the client.
pub fn run(args: &RunArgs) -> Result<()> {
    // Validate input and fetch the model before spawning anything.
    let input = prepare_client(&args.model, &args.text, args.seq_len, &args.engine)?;
    let server = LocalServer::spawn(&input.resolved.dir, &args.net, &args.engine, 0)?;
    let mut ch = server.connect(&args.net)?;
    let (report, outcome) = client_session(&mut ch, &input)?;
    drop(ch);
    let server_report = server.finish(Duration::from_secs(args.net.timeout.max(1)))?;
    finish_client(&input, &report, &outcome, Some(&server_report), args.json)
}

fn wait_for_line(rx: &std::sync::mpsc::Receiver<String>, prefix: &str, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(rest) = line.strip_prefix(prefix) {
                    return Ok(rest.trim().to_string());
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                return Err(Error::Timeout { context: format!("waiting for the server's `{}`", prefix.trim()), secs: timeout.as_secs() })
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Error::PeerDisconnected("the server process exited early (see its message above)".into()))
            }
        }
    }
}

fn install_ctrlc(guard: &ChildGuard) {
    let slot = Arc::clone(&guard.0);
    // Installing twice (e.g. in tests) fails harmlessly; the guard still reaps on drop.
    let _ = ctrlc::set_handler(move || {
        if let Ok(mut s) = slot.lock() {
            if let Some(mut child) = s.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        eprintln!("interrupted");
        std::process::exit(130);
    });
}

/// `fastlmpi plain`: the plaintext model (and optionally the fixed-point simulation).
pub fn plain(args: &PlainArgs) -> Result<()> {
    let resolved = resolve(&args.model)?;
    let model = model::Model::load(&resolved.dir)?;
    let tokens = model.public.tokenizer.encode(&args.text.input, args.text.max_len, args.text.truncate)?;
    let out = model::forward_f32(&model, &tokens)?;
    let fixed = if args.fixed { Some(model::forward_fixed(&model, &tokens, &model::FixedConfig::default())?) } else { None };
    let agreement = fixed.as_ref().map(|f| crate::model::cosine(out.pooled.as_slice().unwrap_or(&[]), f.pooled.as_slice().unwrap_or(&[])));
    if args.json {
        let v = serde_json::json!({
            "model": resolved.name,
            "tokens": tokens.ids.len(),
            "pooled": out.pooled.to_vec(),
            "logits": out.logits.as_ref().map(|l| l.to_vec()),
            "fixed_point_cosine": agreement,
        });
        println!("{}", serde_json::to_string_pretty(&v).map_err(|e| Error::protocol("json", e.to_string()))?);
        return Ok(());
    }
    let norm = out.pooled.iter().map(|v| v * v).sum::<f32>().sqrt();
    let head: Vec<String> = out.pooled.iter().take(6).map(|v| format!("{v:+.4}")).collect();
    println!("model: {} ({} tokens)", resolved.name, tokens.ids.len());
    println!("pooled[0..6]: [{}]  norm {norm:.4}", head.join(", "));
    if let Some(l) = &out.logits {
        println!("logits: {l:?}");
    }
    if let Some(c) = agreement {
        println!("fixed-point simulation vs f32: cosine {c:.6}");
    }
    Ok(())
}
