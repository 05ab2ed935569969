//! The crate-wide error type. Library code returns `Result<T>`; only `main.rs` uses `anyhow`.

use std::io;

/// Everything that can go wrong in fastlmpi, with enough context to tell the user what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Socket-level failure (connect, read, write).
    #[error("network error during {context}: {source}")]
    Net {
        context: String,
        #[source]
        source: io::Error,
    },
    /// The peer closed the connection while we expected more data.
    #[error("peer disconnected during {0}")]
    PeerDisconnected(String),
    /// The peer did not answer within the configured timeout.
    #[error("peer timed out after {secs} s during {context}")]
    Timeout { context: String, secs: u64 },
    /// The peer sent something that violates the protocol (bad length, bad tag, bad encoding).
    #[error("protocol violation in {step}: {detail}")]
    Protocol { step: String, detail: String },
    /// The two parties disagree on parameters, model shape or versions.
    #[error("handshake mismatch: {0}")]
    Handshake(String),
    /// The server declined the request (policy, limits, busy); the message says why.
    #[error("the server refused: {0}")]
    Refused(String),
    /// Missing or malformed model files, tensors or configs.
    #[error("model error: {0}")]
    Model(String),
    /// A tensor has an unexpected shape.
    #[error("tensor `{tensor}` has shape {got:?}, expected {expected:?}")]
    Shape {
        tensor: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    /// Bad user input (text, flags, files).
    #[error("invalid input: {0}")]
    Input(String),
    /// Homomorphic-encryption failures (parameters, keys, noise budget).
    #[error("HE error: {0}")]
    He(String),
    /// Oblivious-transfer failures.
    #[error("OT error: {0}")]
    Ot(String),
    /// Invalid configuration or parameter choice.
    #[error("configuration error: {0}")]
    Config(String),
    /// Plain file-system errors with the path involved.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn protocol(step: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Protocol { step: step.into(), detail: detail.into() }
    }
    pub fn io(path: impl AsRef<std::path::Path>, source: io::Error) -> Self {
        Error::Io { path: path.as_ref().display().to_string(), source }
    }
}

impl From<fhe::Error> for Error {
    fn from(e: fhe::Error) -> Self {
        Error::He(e.to_string())
    }
}

impl From<fhe_math::Error> for Error {
    fn from(e: fhe_math::Error) -> Self {
        Error::He(e.to_string())
    }
}
