//! Command-line interface (clap). No protocol logic lives here: each subcommand parses its
//! flags, resolves the model and calls into the library.

pub mod bench;
pub mod budgets;
pub mod eval;
pub mod fit_approx;
pub mod make_model;
pub mod party;
pub mod ranges;
pub mod report;
pub mod scale;
pub mod serve;
pub mod train_head;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::error::{Error, Result};
use crate::net::shaping::Link;

#[derive(Parser, Debug)]
#[command(name = "fastlmpi", version, about = "Two-party private BERT inference (FASTLMPI vs BOLT)")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a private inference: starts the server as a child process on 127.0.0.1 and runs the client.
    Run(RunArgs),
    /// Run the server party (holds the weights) and wait for a client.
    Serve(ServeArgs),
    /// Run the client party (holds the text and the public embeddings) against a server.
    Client(ClientArgs),
    /// Plaintext f32 (and fixed-point simulation) forward pass, no cryptography.
    Plain(PlainArgs),
    /// Fit a segmented polynomial approximation (gelu, exp, tanh, sigmoid, rsqrt, reciprocal).
    FitApprox(fit_approx::FitApproxArgs),
    /// Micro-benchmarks of the building blocks (OT, non-linear toolkit, HE linear layers).
    Bench(bench::BenchArgs),
    /// Train the sentiment head (logistic regression on pooled embeddings).
    TrainHead(train_head::TrainHeadArgs),
    /// Accuracy on labelled sentences, plaintext and (`--private`) through the private engine.
    Eval(eval::EvalArgs),
    /// Measure a checkpoint's activation ranges and check them against the protocols' domains.
    Ranges(ranges::RangesArgs),
    /// Write a random checkpoint of a full BERT shape (bert-base, bert-large) in the Hugging Face layout.
    MakeModel(make_model::MakeModelArgs),
    /// Write the README's "Measured" section from the records in results/recorded/.
    Report(report::ReportArgs),
    /// Make a local CA and a server certificate signed by it, for `serve --tls-cert/--tls-key`
    /// and `client --tls-ca` (testing and local use only).
    KeygenTls(serve::KeygenTlsArgs),
}

/// Flags shared by every command that loads a model and tokenizes text.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model name (minilm-l6, mpnet-base, bert-base) or a path to a Hugging Face checkpoint folder.
    #[arg(long, default_value = "minilm-l6")]
    pub model: String,
    /// Do not download a known model when it is missing.
    #[arg(long)]
    pub no_fetch: bool,
}

#[derive(Args, Debug, Clone)]
pub struct TextArgs {
    /// The input sentence.
    #[arg(long)]
    pub input: String,
    /// Maximum number of tokens (special tokens included).
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    /// Truncate over-long text to --max-len instead of failing.
    #[arg(long)]
    pub truncate: bool,
}

#[derive(Args, Debug, Clone)]
pub struct NetArgs {
    /// Socket timeout in seconds (a silent peer is an error after this long).
    #[arg(long, default_value_t = crate::net::DEFAULT_TIMEOUT_SECS)]
    pub timeout: u64,
    /// Simulated link: local, lan (3 Gbps, 0.8 ms), wan (200 Mbps, 40 ms) or BW,RTT.
    #[arg(long, default_value = "local")]
    pub net: String,
}

impl NetArgs {
    pub fn link(&self) -> Result<Link> {
        Link::parse(&self.net)
    }
}

/// Flags of the private engine shared by `run`, `serve` and `client`.
#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    /// Protocol profile: fastlmpi or bolt (both parties must agree).
    #[arg(long, default_value = "fastlmpi")]
    pub profile: String,
    /// Run only the first L encoder layers (default: all).
    #[arg(long)]
    pub layers: Option<usize>,
    /// Worker threads for the local computation (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// OT backend: iknp or silent (default: the profile's, silent for fastlmpi, iknp for bolt;
    /// both parties must agree, checked in the handshake).
    #[arg(long)]
    pub ot: Option<String>,
    /// Truncation after the encoder's linear layers and attention products, of GeLU's
    /// accumulator, SoftMax's exp and normalisation and LayerNorm's rescaling: approx (⌊·⌋ or
    /// one less, the fastlmpi default) or faithful (exact, the bolt default); both parties
    /// must agree.
    #[arg(long)]
    pub linear_trunc: Option<String>,
}

impl EngineArgs {
    pub fn profile(&self) -> Result<crate::engine::Profile> {
        let mut profile = crate::engine::Profile::parse(&self.profile)?;
        if let Some(ot) = &self.ot {
            profile = profile.with_ot(crate::ot::OtBackend::parse(ot)?);
        }
        if let Some(mode) = &self.linear_trunc {
            profile.linear_trunc = crate::proto::toolkit::trunc::TruncMode::parse(mode)?;
        }
        if profile.linear_trunc == crate::proto::toolkit::trunc::TruncMode::Approx && !profile.linear.coeff_attention() {
            // The carry model (and its tests) covers the ring truncations of the coefficient
            // backend; the field backends truncate inside their field→ring conversion.
            return Err(Error::Input(format!("--linear-trunc approx needs the coefficient-packed products of the fastlmpi profile, not {}", profile.name())));
        }
        Ok(profile)
    }

    /// Size the global thread pool once, before any parallel work.
    pub fn apply_threads(&self) -> Result<()> {
        if let Some(t) = self.threads {
            if t == 0 {
                return Err(Error::Input("--threads must be at least 1".into()));
            }
            // A second call (e.g. in tests) fails harmlessly: the pool already exists.
            let _ = rayon::ThreadPoolBuilder::new().num_threads(t).build_global();
        }
        Ok(())
    }
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub text: TextArgs,
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Pad the input to this many tokens (e.g. 128, BOLT's benchmark length); default: the token count.
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// MiB of encoded weights the server prepares during setup (0: encode them per call in the
    /// online phase). A budget that holds the whole model (MiniLM ≈ 1.7 GiB at 7 tokens) measures
    /// the online time of a long-running server whose cache is warm.
    #[arg(long, default_value_t = 0)]
    pub weight_cache_mib: usize,
    /// Print the full record as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub net: NetArgs,
    /// Protocol profile: fastlmpi or bolt (the client must ask for the same).
    #[arg(long, default_value = "fastlmpi")]
    pub profile: String,
    /// OT backend: iknp or silent (default: the profile's; the client must use the same).
    #[arg(long)]
    pub ot: Option<String>,
    /// Truncation after the encoder's products: approx or faithful (default: the profile's; the
    /// client must use the same).
    #[arg(long)]
    pub linear_trunc: Option<String>,
    /// Worker threads for the local computation (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7000")]
    pub listen: String,
    /// Serve one client, then exit.
    #[arg(long)]
    pub once: bool,
    /// Print `LISTENING <addr>` on stdout once bound and the report as `REPORT <json>` (used by `run`).
    #[arg(long, hide = true)]
    pub announce: bool,
    /// Give up if no client connects within this many seconds (0: wait forever).
    #[arg(long, default_value_t = 0)]
    pub accept_timeout: u64,
    /// Keep up to this many MiB of encoded weight plaintexts between inferences, least recently
    /// used evicted (0: encode per call). Pays off when one session runs many inferences of the
    /// same padded length (`eval --private`).
    #[arg(long, default_value_t = 0)]
    pub weight_cache_mib: usize,
    #[command(flatten)]
    pub policy: serve::PolicyArgs,
    #[command(flatten)]
    pub sessions: serve::SessionArgs,
    /// TLS certificate chain (PEM) to serve under; needs --tls-key (`fastlmpi keygen-tls` makes a local pair).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Test only: break the first connection at a chosen message (close:K, truncate:K, corrupt:K,
    /// stall:K:SECS; see `net::fault`).
    #[arg(long, hide = true)]
    pub inject_fault: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub text: TextArgs,
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:7000")]
    pub connect: String,
    /// The most to ask the server to open: label, logits or embedding (it opens the lesser of
    /// this and its own --reveal).
    #[arg(long, default_value = "embedding")]
    pub reveal: String,
    /// Connect over TLS, trusting the CA certificate(s) in this PEM file.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    #[arg(long)]
    pub seq_len: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct PlainArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub text: TextArgs,
    /// Print JSON (full pooled embedding, logits when a head exists).
    #[arg(long)]
    pub json: bool,
    /// Also run the fixed-point simulation and report its agreement with f32.
    #[arg(long)]
    pub fixed: bool,
}

/// Parse and run. Errors are returned to `main`, which prints them and exits non-zero.
pub fn main_with_args<I, T>(args: I) -> Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) if e.use_stderr() => return Err(Error::Input(e.to_string().trim_end().to_string())),
        Err(e) => {
            // --help / --version: print and succeed.
            print!("{e}");
            return Ok(());
        }
    };
    match cli.command {
        Command::Run(a) => party::run(&a),
        Command::Serve(a) => serve::serve(&a),
        Command::Client(a) => party::client(&a).map(|_| ()),
        Command::Plain(a) => party::plain(&a),
        Command::FitApprox(a) => fit_approx::run(&a),
        Command::Bench(a) => bench::run(&a),
        Command::TrainHead(a) => train_head::run(&a),
        Command::Eval(a) => eval::run(&a),
        Command::Ranges(a) => ranges::run(&a),
        Command::Report(a) => report::run(&a),
        Command::MakeModel(a) => make_model::run(&a),
        Command::KeygenTls(a) => serve::keygen_tls(&a),
    }
}

/// Where results are written (`results/` under the current directory unless overridden).
pub fn results_dir() -> PathBuf {
    std::env::var_os("FASTLMPI_RESULTS_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("results"))
}
