//! Handshake: both parties exchange a [`Hello`] and check that they agree before any protocol
//! message. Both sides hold both hellos, so both detect a mismatch and both fail with a message
//! that names it. Nothing private is exchanged: the model fingerprint covers only the public
//! shape (config and public tensors), never weights, and the client sends no text.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Channel;
use crate::error::{Error, Result};
use crate::share::Role;

pub const PROTOCOL_MAGIC: &str = "fastlmpi";
pub const PROTOCOL_VERSION: u32 = 2;
const MAX_HELLO_BYTES: usize = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub magic: String,
    pub version: u32,
    pub role: Role,
    /// Fingerprint of the public model shape (config + public tensors' shapes).
    pub model_fingerprint: String,
    /// Numeric parameters both sides must share: scale, HE preset, profile, sequence length, …
    pub params: BTreeMap<String, String>,
}

impl Hello {
    pub fn new(role: Role, model_fingerprint: impl Into<String>, params: BTreeMap<String, String>) -> Hello {
        Hello {
            magic: PROTOCOL_MAGIC.into(),
            version: PROTOCOL_VERSION,
            role,
            model_fingerprint: model_fingerprint.into(),
            params,
        }
    }
}

/// What a server that will not take the session (busy, shutting down) sends instead of its hello.
#[derive(Serialize, Deserialize)]
struct Refusal {
    refused: String,
}

/// Server side: read the client's hello, answer with a refusal naming `reason`, so the client
/// reports it instead of a dropped connection.
pub fn refuse(ch: &mut dyn Channel, reason: &str) -> Result<()> {
    ch.set_phase("handshake");
    ch.recv_frame_limited(MAX_HELLO_BYTES)?;
    let bytes = serde_json::to_vec(&Refusal { refused: reason.into() }).map_err(|e| Error::protocol("handshake", e.to_string()))?;
    ch.send_frame(&bytes)?;
    ch.flush()
}

/// Send our hello, receive the peer's, and check agreement. Returns the peer's hello.
pub fn handshake(ch: &mut dyn Channel, mine: &Hello) -> Result<Hello> {
    ch.set_phase("handshake");
    let bytes = serde_json::to_vec(mine).map_err(|e| Error::protocol("handshake", e.to_string()))?;
    // The client speaks first, so flights alternate and both parties count the same rounds.
    let theirs_bytes = if mine.role == Role::Client {
        ch.send_frame(&bytes)?;
        ch.recv_frame_limited(MAX_HELLO_BYTES)?
    } else {
        let theirs = ch.recv_frame_limited(MAX_HELLO_BYTES)?;
        ch.send_frame(&bytes)?;
        ch.flush()?;
        theirs
    };
    let theirs: Hello = match serde_json::from_slice(&theirs_bytes) {
        Ok(h) => h,
        Err(e) => {
            if let Ok(r) = serde_json::from_slice::<Refusal>(&theirs_bytes) {
                return Err(Error::Refused(r.refused));
            }
            return Err(Error::protocol("handshake", format!("peer sent an unreadable hello: {e}")));
        }
    };
    check_agreement(mine, &theirs)?;
    Ok(theirs)
}

/// All mismatches between two hellos, in a stable order.
pub fn check_agreement(mine: &Hello, theirs: &Hello) -> Result<()> {
    let mut problems = Vec::new();
    if theirs.magic != PROTOCOL_MAGIC {
        problems.push(format!("peer is not a fastlmpi party (magic `{}`)", theirs.magic));
    }
    if theirs.version != mine.version {
        problems.push(format!("protocol version: ours {}, peer {}", mine.version, theirs.version));
    }
    if theirs.role == mine.role {
        problems.push(format!("both parties claim the role {:?}", mine.role));
    }
    if theirs.model_fingerprint != mine.model_fingerprint {
        problems.push(format!(
            "model shape differs: ours {}, peer {}",
            mine.model_fingerprint, theirs.model_fingerprint
        ));
    }
    let keys: std::collections::BTreeSet<&String> = mine.params.keys().chain(theirs.params.keys()).collect();
    for k in keys {
        let (a, b) = (mine.params.get(k), theirs.params.get(k));
        if a != b {
            problems.push(format!(
                "parameter `{k}`: ours {}, peer {}",
                a.map(String::as_str).unwrap_or("<unset>"),
                b.map(String::as_str).unwrap_or("<unset>")
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Handshake(problems.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::run_pair;

    fn params(scale: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("frac_bits".to_string(), scale.to_string()), ("profile".into(), "fastlmpi".into())])
    }

    #[test]
    fn matching_hellos_pass() {
        let out = run_pair(
            |ch| handshake(ch, &Hello::new(Role::Server, "bert:6x384", params("12"))),
            |ch| handshake(ch, &Hello::new(Role::Client, "bert:6x384", params("12"))),
        )
        .unwrap();
        assert_eq!(out.server.role, Role::Client);
        assert_eq!(out.client.role, Role::Server);
    }

    #[test]
    fn a_refusal_reaches_the_client_as_its_reason() {
        let out = run_pair(
            |ch| refuse(ch, "server busy, retry later"),
            |ch| Ok(handshake(ch, &Hello::new(Role::Client, "bert:6x384", params("12"))).unwrap_err().to_string()),
        )
        .unwrap();
        assert!(out.client.contains("refused: server busy, retry later"), "{}", out.client);
    }

    #[test]
    fn both_sides_name_the_mismatch() {
        let out = crate::net::local::loopback_pair(Default::default()).unwrap();
        let (mut s, mut c) = out;
        let (rs, rc) = std::thread::scope(|sc| {
            let a = sc.spawn(|| handshake(&mut s, &Hello::new(Role::Server, "bert:6x384", params("12"))));
            let b = sc.spawn(|| handshake(&mut c, &Hello::new(Role::Client, "bert:12x768", params("13"))));
            (a.join().unwrap(), b.join().unwrap())
        });
        for r in [rs, rc] {
            let msg = r.unwrap_err().to_string();
            assert!(msg.contains("model shape differs"), "{msg}");
            assert!(msg.contains("frac_bits"), "{msg}");
        }
    }
}
