//! The server's output policy and per-session limits: what a client may learn and for how long
//! it may keep asking.
//!
//! The server decides; the client's request may ask for less, never for more.
//! * [`Reveal`] orders what can be opened: the label (argmax of the logits) < the logits < the
//!   pooled embedding and the logits. A model without a classifier head has only its pooled
//!   embedding to give, so that is what it opens whatever the setting.
//! * Partial-depth runs (the first L < depth layers) are a benchmarking mode: refused unless
//!   the operator allows them, because the outputs of truncated models, layer by layer, are a
//!   strong aid to model extraction.
//! * [`SessionLimits`] caps one session's inferences, bytes and wall time; the client asks for
//!   each inference and the server answers with a [`Verdict`] before any private work, so a
//!   refusal is a clear message, never a dropped connection.
//! * Each client key may see at most [`crate::he::privacy::KEY_RETURN_BUDGET`] returned
//!   ciphertexts; before an inference that might not fit, the verdict is [`Verdict::Rekey`]
//!   and both parties set up fresh keys inside the same session.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::he::privacy::KEY_RETURN_BUDGET;
use crate::net::CommStats;

/// What the client may learn, from least to most.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reveal {
    /// The predicted label only (index of the largest logit).
    Label,
    /// The classifier's logits.
    Logits,
    /// The pooled embedding and the logits.
    Embedding,
}

impl Reveal {
    pub fn parse(s: &str) -> Result<Reveal> {
        match s {
            "label" => Ok(Reveal::Label),
            "logits" => Ok(Reveal::Logits),
            "embedding" => Ok(Reveal::Embedding),
            other => Err(Error::Input(format!("--reveal `{other}`: expected label, logits or embedding"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Reveal::Label => "label",
            Reveal::Logits => "logits",
            Reveal::Embedding => "embedding",
        }
    }
}

/// The outputs one inference opens to the client (decided by the server, public to both).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opened {
    pub embedding: bool,
    pub logits: bool,
    pub label: bool,
}

impl Opened {
    /// The lesser of what the server allows and what the client asked for, on a model with
    /// `labels` classifier outputs (0: no head, so the embedding is the only output).
    pub fn decide(allowed: Reveal, asked: Reveal, labels: usize) -> Opened {
        if labels == 0 {
            return Opened { embedding: true, logits: false, label: false };
        }
        let r = allowed.min(asked);
        Opened { embedding: r == Reveal::Embedding, logits: r >= Reveal::Logits, label: r == Reveal::Label }
    }
}

/// Per-session caps, each refused with a message naming the serve flag that sets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    pub max_inferences: u64,
    pub max_bytes: u64,
    pub max_wall: Duration,
}

impl Default for SessionLimits {
    /// A day of work: ample for `eval --private` on a few hundred sentences of MiniLM
    /// (≈ 1 GiB and ≈ 1 min each), small enough that a forgotten client is cut off.
    fn default() -> Self {
        SessionLimits { max_inferences: 10_000, max_bytes: 4 << 40, max_wall: Duration::from_secs(24 * 3600) }
    }
}

/// The operator's decisions for every session of a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServePolicy {
    /// The most a client may learn ([`Opened::decide`]).
    pub reveal: Reveal,
    /// Whether a client may run only the first layers (benchmarking).
    pub allow_partial: bool,
    pub limits: SessionLimits,
    /// Ciphertexts returned under one client key before the server asks for fresh keys: at
    /// most [`KEY_RETURN_BUDGET`], which the flooding width covers; lower only re-keys sooner.
    pub key_returns: u64,
}

impl Default for ServePolicy {
    /// What `serve` does without flags: logits only (the embedding when there is no head),
    /// every layer.
    fn default() -> Self {
        ServePolicy { reveal: Reveal::Logits, allow_partial: false, limits: SessionLimits::default(), key_returns: KEY_RETURN_BUDGET }
    }
}

impl ServePolicy {
    /// For in-process benchmarks and tests that compare the embedding layer by layer.
    pub fn benchmark() -> Self {
        ServePolicy { reveal: Reveal::Embedding, allow_partial: true, ..ServePolicy::default() }
    }

    /// Whether the next inference may run: `Err` carries the refusal sent to the client.
    pub fn admit(&self, layers: usize, depth: usize, done: u64, used: CommStats, elapsed: Duration) -> std::result::Result<(), String> {
        if layers != depth && !self.allow_partial {
            return Err(format!(
                "this server runs all {depth} layers; a partial-depth run ({layers} layers) needs the server to be started with --allow-partial"
            ));
        }
        let l = &self.limits;
        if done >= l.max_inferences {
            return Err(format!("the session reached its {} inferences (serve --max-inferences); open a new session", l.max_inferences));
        }
        if used.total_bytes() >= l.max_bytes {
            return Err(format!("the session reached its {} bytes on the wire (serve --max-session-gib); open a new session", l.max_bytes));
        }
        if elapsed >= l.max_wall {
            return Err(format!("the session reached its {} s of wall time (serve --max-session-secs); open a new session", l.max_wall.as_secs()));
        }
        Ok(())
    }
}

/// The server's answer to an inference request, sent before any private work.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Go ahead; these outputs will be opened.
    Accept(Opened),
    /// Set up fresh keys first (the current keys' return budget might not cover it).
    Rekey,
    /// Refused, with the reason; the server ends the session.
    Refuse(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_may_ask_for_less_never_for_more() {
        let all = [Reveal::Label, Reveal::Logits, Reveal::Embedding];
        for allowed in all {
            for asked in all {
                let o = Opened::decide(allowed, asked, 2);
                assert!(!o.embedding || (allowed == Reveal::Embedding && asked == Reveal::Embedding));
                assert!(!o.logits || allowed.min(asked) >= Reveal::Logits);
                assert_eq!(o.label, allowed.min(asked) == Reveal::Label);
                // Exactly one of label / logits is opened on a model with a head.
                assert!(o.label ^ o.logits);
            }
            // Without a head the embedding is the model's only output.
            assert_eq!(Opened::decide(allowed, Reveal::Label, 0), Opened { embedding: true, logits: false, label: false });
        }
        assert_eq!(Opened::decide(Reveal::Logits, Reveal::Embedding, 2), Opened { embedding: false, logits: true, label: false });
    }

    #[test]
    fn partial_depth_and_limits_are_refused_with_the_flag_to_use() {
        let p = ServePolicy::default();
        let fresh = CommStats::default();
        assert!(p.admit(6, 6, 0, fresh, Duration::ZERO).is_ok());
        let msg = p.admit(2, 6, 0, fresh, Duration::ZERO).unwrap_err();
        assert!(msg.contains("--allow-partial"), "{msg}");
        assert!(ServePolicy::benchmark().admit(2, 6, 0, fresh, Duration::ZERO).is_ok());
        let tight = ServePolicy { limits: SessionLimits { max_inferences: 2, max_bytes: 100, max_wall: Duration::from_secs(5) }, ..p };
        assert!(tight.admit(6, 6, 2, fresh, Duration::ZERO).unwrap_err().contains("--max-inferences"));
        let heavy = CommStats { bytes_sent: 60, bytes_recv: 40, ..fresh };
        assert!(tight.admit(6, 6, 1, heavy, Duration::ZERO).unwrap_err().contains("--max-session-gib"));
        assert!(tight.admit(6, 6, 1, fresh, Duration::from_secs(5)).unwrap_err().contains("--max-session-secs"));
    }
}
