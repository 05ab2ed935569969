//! The two parties as processes: `serve`, `client`, and `run` (server as a child process of
//! the same binary on an ephemeral 127.0.0.1 port, client in this process).
//!
//! What crosses the wire before the private layers start: the handshake (version, roles,
//! model *shape* fingerprint, numeric parameters), the public request (sequence length), and a
//! channel check (random bytes from the client, their SHA-256 from the server). The server
//! never sends weights; the client never sends its text.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ClientArgs, ModelArgs, NetArgs, PlainArgs, RunArgs};
use crate::error::{Error, Result};
use crate::bench::plot::write_run_svg;
use crate::bench::provenance::Provenance;
use crate::engine::report::{layer_table, mib, peak_rss_bytes, Phase, Recorder};
use crate::engine::session::serve_session_into;
use crate::engine::{client_close, client_infer, client_open, ClientOutcome, Profile, Reveal, ServerModel, ServerSessionReport};
use crate::model;
use crate::net::handshake::{handshake, Hello};
use crate::net::shaping::Shaped;
use crate::net::tls::{self, WireCounter};
use crate::net::{connect_with_retry, Channel, CommStats, Metered, PartyChannel, PartyTransport, TcpTransport};
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
    /// This party's peak resident memory (its own process, /proc/self/status VmHWM).
    #[serde(default)]
    pub peak_rss_bytes: Option<u64>,
    /// The other party's, as it reported at the end of the session (the client gets the server's).
    #[serde(default)]
    pub peer_peak_rss_bytes: Option<u64>,
    /// Bytes that crossed the socket under TLS (records, handshake), when TLS was on; `comm`
    /// counts the protocol's bytes, the same with or without TLS.
    #[serde(default)]
    pub tls_wire_bytes: Option<u64>,
    /// Bytes of encoded weight plaintexts the server's cache held at the end (server only).
    #[serde(default)]
    pub weight_cache_bytes: Option<u64>,
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

/// TLS on one side of a connection: the server's configuration, or the client's with the
/// name the server's certificate must carry.
pub(super) enum TlsSide {
    Server(Arc<rustls::ServerConfig>),
    Client(Arc<rustls::ClientConfig>, String),
}

/// The metered channel over a connected socket (TLS when `tls` is set; its socket counter too).
pub(super) fn open_channel(stream: std::net::TcpStream, net: &NetArgs, tls: Option<&TlsSide>) -> Result<(PartyChannel, Option<Arc<WireCounter>>)> {
    let timeout = Duration::from_secs(net.timeout.max(1));
    let (transport, wire) = match tls {
        None => (PartyTransport::Tcp(TcpTransport::new(stream, timeout)?), None),
        Some(TlsSide::Server(cfg)) => {
            let (t, w) = tls::accept(stream, Arc::clone(cfg), timeout)?;
            (PartyTransport::Tls(t), Some(w))
        }
        Some(TlsSide::Client(cfg, host)) => {
            let (t, w) = tls::connect(stream, Arc::clone(cfg), host, timeout)?;
            (PartyTransport::Tls(t), Some(w))
        }
    };
    Ok((Metered::new(Shaped::new(transport, net.link()?)), wire))
}

/// One session on the server; `report` holds what was done even when it fails.
pub fn serve_session(ch: &mut dyn Channel, sm: &ServerModel, profile: &Profile, name: &str, fingerprint: &str, report: &mut ServerSessionReport) -> Result<PartyReport> {
    let t0 = Instant::now();
    handshake(ch, &Hello::new(Role::Server, fingerprint, session_params(profile)))?;
    channel_check_server(ch)?;
    serve_session_into(ch, sm, profile, report)?;
    Ok(PartyReport {
        role: Role::Server,
        model: name.to_string(),
        seq_len: 0,
        wall_secs: t0.elapsed().as_secs_f64(),
        comm: ch.stats(),
        channel_check: true,
        peak_rss_bytes: report.peak_rss_bytes,
        peer_peak_rss_bytes: None,
        private_inference: Some(serde_json::to_value(&*report).map_err(|e| Error::protocol("report", e.to_string()))?),
        tls_wire_bytes: None,
        weight_cache_bytes: Some(sm.weights.used() as u64),
    })
}

fn channel_check_server(ch: &mut dyn Channel) -> Result<()> {
    ch.set_phase("channel check");
    let mut probe = vec![0u8; CHANNEL_CHECK_BYTES];
    ch.recv_bytes(&mut probe)?;
    ch.send_bytes(&Sha256::digest(&probe))?;
    ch.flush()
}

/// Everything the client prepares before it connects (so bad input fails fast, offline).
pub(super) struct ClientInput {
    pub(super) resolved: model::ResolvedModel,
    pub(super) public: model::PublicModel,
    pub(super) tokens: model::Tokenized,
    pub(super) profile: Profile,
    pub(super) layers: usize,
    /// The most the client asks the server to open.
    pub(super) reveal: Reveal,
}

/// One session against a fresh local server process: both parties' reports and the outcome.
pub(super) struct LocalRun {
    pub(super) client: PartyReport,
    pub(super) server: PartyReport,
    pub(super) outcome: ClientOutcome,
}

/// Spawn `serve --once` for `input`'s model, run one inference as the client in this process and
/// collect the server's report. This process's peak-memory mark is reset first, so the client's
/// figure covers this inference only (the server's is its own fresh process's). Used by
/// `bench --scale`, which runs one such session per length.
pub(super) fn run_local(input: &ClientInput, net: &NetArgs, engine: &super::EngineArgs, weight_cache_mib: usize) -> Result<LocalRun> {
    let server = LocalServer::spawn(&input.resolved.dir, net, engine, weight_cache_mib)?;
    let mut ch = server.connect(net)?;
    crate::engine::report::reset_peak_rss();
    let (client, outcome) = client_session(&mut ch, input)?;
    drop(ch);
    let server = server.finish(Duration::from_secs(net.timeout.max(1)))?;
    Ok(LocalRun { client, server, outcome })
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
    Ok(ClientInput { resolved, public, tokens, profile, layers, reveal: Reveal::Embedding })
}

/// `fastlmpi client`: connect, handshake, run the session, print the report.
pub fn client(args: &ClientArgs) -> Result<PartyReport> {
    let mut input = prepare_client(&args.model, &args.text, args.seq_len, &args.engine)?;
    input.reveal = Reveal::parse(&args.reveal)?;
    let tls = match &args.tls_ca {
        Some(ca) => Some(TlsSide::Client(tls::client_config(ca)?, host_of(&args.connect)?)),
        None => None,
    };
    let stream = connect_with_retry(&args.connect, 50, Duration::from_millis(100))?;
    let (mut ch, wire) = open_channel(stream, &args.net, tls.as_ref())?;
    let (mut report, outcome) = client_session(&mut ch, &input)?;
    drop(ch);
    report.tls_wire_bytes = wire.map(|w| w.sent() + w.recv());
    finish_client(&input, &report, &outcome, None, args.json)?;
    Ok(report)
}

/// The host part of `host:port` (`[v6]:port` too): the name the server's certificate must carry.
fn host_of(addr: &str) -> Result<String> {
    let (host, _) = addr.rsplit_once(':').ok_or_else(|| Error::Input(format!("--connect `{addr}`: expected HOST:PORT")))?;
    Ok(host.trim_start_matches('[').trim_end_matches(']').to_string())
}

fn client_session(ch: &mut PartyChannel, input: &ClientInput) -> Result<(PartyReport, ClientOutcome)> {
    let t0 = Instant::now();
    client_handshake(ch, &input.public, &input.profile)?;
    let mut es = client_open(ch, &input.public, &input.profile, &[input.tokens.len()])?;
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut outcome = client_infer(ch, &mut es, &input.public, &input.tokens, input.layers, input.reveal, progress)?;
    let server_peak = client_close(ch)?;
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
        // Before the plaintext agreement check loads the full model into this process.
        peak_rss_bytes: peak_rss_bytes(),
        peer_peak_rss_bytes: server_peak,
        tls_wire_bytes: None,
        weight_cache_bytes: None,
    };
    Ok((report, outcome))
}

/// Random bytes out, their SHA-256 back: the link works end to end before any key material.
fn channel_check_client(ch: &mut PartyChannel) -> Result<()> {
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

/// Values each non-linear operator of one encoder layer processes at `n` padded tokens (so a
/// record's bytes can be read per element): SoftMax scores, GeLU inputs, LayerNorm entries.
fn elements_per_layer(cfg: &model::BertConfig, n: usize) -> serde_json::Value {
    serde_json::json!({
        "softmax": cfg.num_attention_heads * n * n,
        "gelu": n * cfg.intermediate_size,
        "layernorm": n * cfg.hidden_size,
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
        "linear_trunc": input.profile.linear_trunc.name(),
        "tokens": input.tokens.num_attended(),
        "seq_len": input.tokens.len(),
        "layers": input.layers,
        "layers_in_model": input.public.config.num_hidden_layers,
        "elements_per_layer": elements_per_layer(&input.public.config, input.tokens.len()),
        "prediction": prediction.as_ref().map(|p| serde_json::json!({"label": p.name(), "probability": p.probability})),
        "label": outcome.label,
        "logits": outcome.logits,
        "pooled": outcome.pooled,
        "agreement": agreement,
        "total_wall_secs": client.wall_secs,
        "total_bytes": client.comm.bytes_sent + client.comm.bytes_recv,
        "tls_wire_bytes": client.tls_wire_bytes,
        "total_rounds": client.comm.rounds,
        "setup": {"wall_secs": setup_secs, "comm": setup_comm},
        "online": {"wall_secs": online_secs, "comm": online_comm},
        "peak_rss_bytes": {"client": client.peak_rss_bytes, "server": client.peer_peak_rss_bytes},
        "provenance": Provenance::current(),
        "client": client,
        "server": server,
    });
    let path = write_run_record(&input.resolved.name, input.profile.name(), &record)?;
    let svg = path.with_extension("svg");
    let title = format!("{} {} ({} tokens)", input.resolved.name, input.profile.name(), input.tokens.len());
    write_run_svg(&svg, &outcome.records, &title)?;
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
        (None, None) => match outcome.label {
            Some(l) => println!("result: label {l} (the server opens only the label)"),
            None => println!("result: (nothing opened)"),
        },
    }
    if let Some(w) = client.tls_wire_bytes {
        println!("TLS: {:.2} MiB on the wire for {:.2} MiB of protocol bytes", mib(w), mib(client.comm.total_bytes()));
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
    let gib = |b: Option<u64>| b.map_or("not measured".to_string(), |b| format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64));
    println!("peak memory: client {}, server {} (each measured in its own process)", gib(client.peak_rss_bytes), gib(client.peer_peak_rss_bytes));
    println!("record: {} (figure: {})", path.display(), svg.display());
    Ok(())
}

/// Per-operator totals (online), one line each; the OTs as 1-of-2 equivalents (backend-free).
pub fn op_table(rec: &Recorder) -> String {
    let mut s = String::from("operator         time (s)   sent (MiB)   recv (MiB)   rounds   OTs (1-of-2)\n");
    for t in rec.per_op() {
        let c = t.comm;
        s.push_str(&format!("{:<14} {:>10.3} {:>12.2} {:>12.2} {:>8} {:>14}\n", t.op, t.wall_secs, mib(c.bytes_sent), mib(c.bytes_recv), c.rounds, t.ot_equivalents));
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
        // The local user owns the model: open the embedding, allow partial depth (`--layers`).
        cmd.args(["serve", "--once", "--announce", "--listen", "127.0.0.1:0", "--accept-timeout", "60"])
            .args(["--reveal", "embedding", "--allow-partial"])
            .args(["--model", &model_dir.to_string_lossy(), "--no-fetch"])
            .args(["--timeout", &net.timeout.to_string(), "--net", &net.net])
            .args(["--profile", profile, "--ot", engine.profile()?.ot.name(), "--weight-cache-mib", &weight_cache_mib.to_string()])
            .args(["--linear-trunc", engine.profile()?.linear_trunc.name()])
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

    /// The server process's id (None once it has been reaped).
    pub fn pid(&self) -> Option<u32> {
        self.guard.0.lock().ok()?.as_ref().map(Child::id)
    }

    /// Connect a client channel to it.
    pub fn connect(&self, net: &NetArgs) -> Result<PartyChannel> {
        let stream = connect_with_retry(&self.addr, 50, Duration::from_millis(100))?;
        Ok(open_channel(stream, net, None)?.0)
    }

    /// Wait for the server's final report, then reap the process.
    pub fn finish(self, timeout: Duration) -> Result<PartyReport> {
        let json = wait_for_line(&self.lines, "REPORT ", timeout)?;
        self.guard.reap();
        serde_json::from_str(&json).map_err(|e| Error::protocol("run", format!("unreadable server report: {e}")))
    }
}

/// The client's handshake and channel check (shared by `client`, `run` and `eval --private`).
pub fn client_handshake(ch: &mut PartyChannel, public: &model::PublicModel, profile: &Profile) -> Result<()> {
    handshake(ch, &Hello::new(Role::Client, public.config.shape_fingerprint(), session_params(profile)))?;
    channel_check_client(ch)
}

/// `fastlmpi run`: spawn `serve --once --announce` on an ephemeral port, run the client.
pub fn run(args: &RunArgs) -> Result<()> {
    // Validate input and fetch the model before spawning anything.
    let input = prepare_client(&args.model, &args.text, args.seq_len, &args.engine)?;
    let server = LocalServer::spawn(&input.resolved.dir, &args.net, &args.engine, args.weight_cache_mib)?;
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
