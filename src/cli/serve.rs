//! `fastlmpi serve`: a server to leave running.
//!
//! * One session per connection, each on its own thread, at most `--max-sessions` at once; a
//!   client beyond that gets "server busy, retry later" at once (no queueing past the accept
//!   backlog). The model, its quantised weights and the encoded-weight cache are shared
//!   read-only (the cache behind its lock); nothing else is shared, so one client's stall,
//!   garbage or disconnect ends only its own session.
//! * The output policy (`--reveal`, `--allow-partial`) and the per-session limits are the
//!   operator's ([`crate::engine::policy`]).
//! * SIGINT/SIGTERM: stop accepting, let running sessions finish for up to `--grace-secs`,
//!   exit 0 (a second signal exits at once, status 130).
//! * One log line per session on stderr when it starts and when it ends: peer, model,
//!   inferences, bytes, time, outcome (times since the server started, so overlapping
//!   sessions show).
//!
//! `--once` serves a single session in the calling thread (what `run` and `eval --private`
//! spawn) and exits with its result.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;

use super::party::{open_channel, serve_session, PartyReport, TlsSide};
use super::ServeArgs;
use crate::engine::{Profile, Reveal, ServePolicy, ServerModel, ServerSessionReport, SessionLimits};
use crate::error::{Error, Result};
use crate::net::fault::{Fault, Faulty};
use crate::model;
use crate::net::{accept_with_timeout, handshake, tls, Channel};

/// The operator's output policy.
#[derive(Args, Debug, Clone)]
pub struct PolicyArgs {
    /// The most a client may learn: label, logits or embedding (embedding = the pooled
    /// embedding and the logits). A model without a classifier head opens its embedding.
    #[arg(long, default_value = "logits")]
    pub reveal: String,
    /// Let clients run only the first layers (`client --layers`), a benchmarking mode.
    #[arg(long)]
    pub allow_partial: bool,
    /// Per-session cap on inferences.
    #[arg(long, default_value_t = SessionLimits::default().max_inferences)]
    pub max_inferences: u64,
    /// Per-session cap on bytes on the wire, in GiB.
    #[arg(long, default_value_t = SessionLimits::default().max_bytes >> 30)]
    pub max_session_gib: u64,
    /// Per-session cap on wall time, in seconds.
    #[arg(long, default_value_t = SessionLimits::default().max_wall.as_secs())]
    pub max_session_secs: u64,
}

impl PolicyArgs {
    pub fn policy(&self) -> Result<ServePolicy> {
        Ok(ServePolicy {
            reveal: Reveal::parse(&self.reveal)?,
            allow_partial: self.allow_partial,
            limits: SessionLimits {
                max_inferences: self.max_inferences,
                max_bytes: self.max_session_gib.saturating_mul(1 << 30),
                max_wall: Duration::from_secs(self.max_session_secs),
            },
            ..ServePolicy::default()
        })
    }
}

/// Concurrency and shutdown.
#[derive(Args, Debug, Clone)]
pub struct SessionArgs {
    /// Sessions served at once (default: from the cores and the available memory); a client
    /// beyond it is told the server is busy.
    #[arg(long)]
    pub max_sessions: Option<usize>,
    /// On SIGINT/SIGTERM, wait this long for running sessions before exiting.
    #[arg(long, default_value_t = 30)]
    pub grace_secs: u64,
}

/// Memory a MiniLM session at short lengths needs on the server (keys, plans, activations),
/// rounded up; BERT-base at 128 tokens stays within the project's 4 GB per party.
const SESSION_MEMORY_BYTES: u64 = 2 << 30;

/// Default `--max-sessions`: two per core (sessions wait on the network part of the time),
/// as many as the available memory holds, at least one.
fn default_max_sessions() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let by_memory = available_memory().map_or(usize::MAX, |m| (m / SESSION_MEMORY_BYTES) as usize);
    (2 * cores).min(by_memory).max(1)
}

/// `MemAvailable` from /proc/meminfo (Linux), in bytes.
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// What every session of this server shares.
struct Shared {
    sm: ServerModel<'static>,
    profile: Profile,
    name: String,
    fingerprint: String,
    net: super::NetArgs,
    tls: Option<TlsSide>,
    started: Instant,
    /// Test only (hidden `--inject-fault`): the fault for the first connection.
    fault: Mutex<Option<Fault>>,
}

impl Shared {
    fn log(&self, msg: &str) {
        eprintln!("[{:>8.1} s] {msg}", self.started.elapsed().as_secs_f64());
    }
}

pub fn serve(args: &ServeArgs) -> Result<()> {
    let engine = super::EngineArgs { profile: args.profile.clone(), layers: None, threads: args.threads, ot: args.ot.clone(), linear_trunc: args.linear_trunc.clone() };
    engine.apply_threads()?;
    let profile = engine.profile()?;
    let policy = args.policy.policy()?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsSide::Server(tls::server_config(cert, key)?)),
        _ => None,
    };
    let max_sessions = args.sessions.max_sessions.unwrap_or_else(default_max_sessions);
    if max_sessions == 0 {
        return Err(Error::Input("--max-sessions must be at least 1".into()));
    }
    let resolved = model::resolve(&args.model.model, !args.model.no_fetch)?;
    if let Some(note) = &resolved.note {
        eprintln!("note: {note}");
    }
    // The model lives as long as the server process; sessions on their threads borrow it.
    // Each layer's f32 matrices are released once quantised: the server holds one copy of them.
    let mut loaded = model::Model::load(&resolved.dir)?;
    let quantized = model::QuantizedWeights::quantize_releasing(&mut loaded, profile.fixed)?;
    let model: &'static model::Model = Box::leak(Box::new(loaded));
    let sm = ServerModel::with_quantized(model, &profile, args.weight_cache_mib.saturating_mul(1 << 20), quantized)?.with_policy(policy);
    let shared = Arc::new(Shared {
        sm,
        profile,
        name: resolved.name.clone(),
        fingerprint: model.public.config.shape_fingerprint(),
        net: args.net.clone(),
        tls,
        started: Instant::now(),
        fault: Mutex::new(args.inject_fault.as_deref().map(Fault::parse).transpose()?),
    });
    let listener = TcpListener::bind(&args.listen).map_err(|e| Error::Net { context: format!("binding {}", args.listen), source: e })?;
    let addr = listener.local_addr().map_err(|e| Error::Net { context: "reading the bound address".into(), source: e })?;
    if args.announce {
        println!("LISTENING {addr}");
    }
    let transport = if shared.tls.is_some() { "TLS" } else { "plain TCP" };
    eprintln!(
        "fastlmpi server: model {} ({}), listening on {addr} ({transport}); reveal {}, partial depth {}, up to {max_sessions} sessions",
        resolved.name,
        resolved.dir.display(),
        policy.reveal.name(),
        if policy.allow_partial { "allowed" } else { "refused" },
    );
    if args.once {
        let accept_timeout = (args.accept_timeout > 0).then(|| Duration::from_secs(args.accept_timeout));
        let stream = accept_with_timeout(&listener, accept_timeout)?;
        return serve_once(&shared, stream, args.announce);
    }
    serve_forever(&shared, &listener, max_sessions, Duration::from_secs(args.sessions.grace_secs))
}

/// `--once`: one session here, its report on stdout with `--announce`, its result as ours.
fn serve_once(shared: &Shared, stream: TcpStream, announce: bool) -> Result<()> {
    let peer = stream.peer_addr().ok();
    let report = run_session(shared, stream, peer, 1)?;
    if announce {
        let json = serde_json::to_string(&report).map_err(|e| Error::protocol("report", e.to_string()))?;
        println!("REPORT {json}");
    }
    Ok(())
}

/// Decrements the running-session count when a session thread ends, however it ends.
struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Connections being told "busy" at once; beyond this they are closed unanswered.
const MAX_REFUSING: usize = 64;
/// How long a refused client has to send its hello.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(10);

fn serve_forever(shared: &Arc<Shared>, listener: &TcpListener, max_sessions: usize, grace: Duration) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    // The first signal starts the graceful shutdown; a second one ends the process at once.
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    })
        .map_err(|e| Error::Config(format!("installing the SIGINT/SIGTERM handler: {e}")))?;
    listener.set_nonblocking(true).map_err(|e| Error::Net { context: "configuring the listener".into(), source: e })?;
    let running = Arc::new(AtomicUsize::new(0));
    let refusing = Arc::new(AtomicUsize::new(0));
    let mut next_id = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let (stream, peer) = match listener.accept() {
            Ok(conn) => conn,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) => {
                // Out of descriptors and the like: say so, keep serving the others.
                shared.log(&format!("accept failed: {e}"));
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        next_id += 1;
        if stream.set_nonblocking(false).is_err() {
            continue;
        }
        if running.load(Ordering::SeqCst) >= max_sessions {
            refuse_busy(shared, stream, peer, next_id, max_sessions, &refusing);
            continue;
        }
        running.fetch_add(1, Ordering::SeqCst);
        let guard = Running(Arc::clone(&running));
        let shared = Arc::clone(shared);
        let id = next_id;
        let spawned = std::thread::Builder::new().name(format!("session-{id}")).spawn(move || {
            let _guard = guard;
            let _ = run_session(&shared, stream, Some(peer), id);
        });
        if let Err(e) = spawned {
            // The closure, and with it the guard, is dropped: the count is already back.
            eprintln!("could not start a session thread: {e}");
        }
    }
    shared.log(&format!("shutting down: no new sessions; waiting up to {} s for {} running", grace.as_secs(), running.load(Ordering::SeqCst)));
    let deadline = Instant::now() + grace;
    while running.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = running.load(Ordering::SeqCst);
    shared.log(&if left == 0 { "all sessions finished; bye".to_string() } else { format!("grace period over, leaving {left} session(s) unfinished; bye") });
    Ok(())
}

/// Tell a client beyond `--max-sessions` that the server is busy (on a short-lived thread, so a
/// slow client never holds up the accept loop).
fn refuse_busy(shared: &Arc<Shared>, stream: TcpStream, peer: SocketAddr, id: u64, max_sessions: usize, refusing: &Arc<AtomicUsize>) {
    shared.log(&format!("session {id} from {peer}: refused, {max_sessions} sessions running (server busy)"));
    if refusing.fetch_add(1, Ordering::SeqCst) >= MAX_REFUSING {
        refusing.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    let (shared, count) = (Arc::clone(shared), Arc::clone(refusing));
    let spawned = std::thread::Builder::new().name(format!("refuse-{id}")).spawn(move || {
        let net = super::NetArgs { timeout: REFUSAL_TIMEOUT.as_secs(), net: "local".into() };
        if let Ok((mut ch, _)) = open_channel(stream, &net, shared.tls.as_ref()) {
            let _ = handshake::refuse(&mut ch, &format!("server busy ({max_sessions} sessions running), retry later"));
        }
        count.fetch_sub(1, Ordering::SeqCst);
    });
    if spawned.is_err() {
        refusing.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One session from accept to its log line.
fn run_session(shared: &Shared, stream: TcpStream, peer: Option<SocketAddr>, id: u64) -> Result<PartyReport> {
    let peer = peer.map_or_else(|| "unknown peer".to_string(), |p| p.to_string());
    shared.log(&format!("session {id} from {peer}: started"));
    let t0 = Instant::now();
    let mut engine = ServerSessionReport::default();
    let mut wire = None;
    let mut stats = None;
    let result = open_channel(stream, &shared.net, shared.tls.as_ref()).and_then(|(ch, w)| {
        wire = w;
        let fault = shared.fault.lock().ok().and_then(|mut f| f.take());
        let mut ch = Faulty::new(ch, fault);
        let r = serve_session(&mut ch, &shared.sm, &shared.profile, &shared.name, &shared.fingerprint, &mut engine);
        stats = Some(ch.stats());
        r
    });
    let result = result.map(|mut r| {
        r.tls_wire_bytes = wire.as_ref().map(|w| w.sent() + w.recv());
        r
    });
    let protocol_bytes = stats.map_or(0, |s| s.total_bytes());
    let tls_note = wire.map(|w| format!(", {} bytes with TLS", w.sent() + w.recv())).unwrap_or_default();
    let outcome = match &result {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("failed: {e}"),
    };
    shared.log(&format!(
        "session {id} from {peer}: model {}, {} inferences, {protocol_bytes} bytes{tls_note}, {:.1} s, outcome: {outcome}",
        shared.name,
        engine.inferences.len(),
        t0.elapsed().as_secs_f64()
    ));
    result
}

#[derive(Args, Debug, Clone)]
pub struct KeygenTlsArgs {
    /// Folder for ca.pem, cert.pem and key.pem.
    #[arg(long, default_value = "tls")]
    pub out: PathBuf,
    /// Names the server certificate is valid for (DNS names or IP addresses).
    #[arg(long = "name", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
    pub names: Vec<String>,
}

/// `fastlmpi keygen-tls`: a local CA and a server certificate signed by it.
pub fn keygen_tls(args: &KeygenTlsArgs) -> Result<()> {
    let pair = tls::write_local_pair(&args.out, &args.names)?;
    println!("CA certificate:     {}  (client --tls-ca)", pair.ca.display());
    println!("server certificate: {}  (serve --tls-cert), valid for {}", pair.cert.display(), args.names.join(", "));
    println!("server key:         {}  (serve --tls-key)", pair.key.display());
    Ok(())
}
