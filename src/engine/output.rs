//! Opening the result to the client: the shares the server's policy lets it see, nothing else.
//!
//! **Functionality.** Given shares of the pooled embedding and (with a head) of the logits,
//! and the public [`Opened`] the server decided, the client learns exactly the opened values:
//! the embedding, the logits, or only `argmax(logits)` (first index on ties, as
//! `data::head::predict_from_logits`).
//!
//! **Message flow.** Opening a vector: the server sends its shares (ℓ-bit ring elements as
//! u64, 8 bytes each), the client adds its own. The label: a running maximum over the
//! logits, `k − 1` steps of one [`msb`] (`[best < l_j]`, exact on every ring element) and one
//! [`mux`] on the pair `(l_j − best, j − idx)`, then the index share is opened as above
//! (8 bytes). Nothing flows to the server.
//!
//! **Domain / error.** Exact: the logits are ℓ-bit ring values at `frac` bits far from the
//! ring's edge, so `best − l_j` does not wrap.
//!
//! **Security (semi-honest).** The server receives nothing beyond the comparison and
//! multiplexer protocols' own messages, which are simulatable from its shares; the client
//! receives uniform fresh shares from those protocols and the server's share of each opened
//! value, which together with its own share reveals only that value.

use super::blocks::reveal_to_client;
use super::policy::Opened;
use super::state::Sess;
use crate::error::{Error, Result};
use crate::proto::toolkit::cmp::msb;
use crate::proto::toolkit::mux::mux;

/// Shares of the index of the largest logit (first on ties).
fn argmax_share(s: &mut Sess, logits: &[u64]) -> Result<u64> {
    let ring = s.specs.ring;
    let first = *logits.first().ok_or_else(|| Error::protocol("open label", "no logits"))?;
    let (mut best, mut idx) = (first, 0u64);
    for (j, &l) in logits.iter().enumerate().skip(1) {
        let below = msb(&mut s.p, ring, &[ring.sub(best, l)])?;
        // The public index j enters through the server's share only.
        let j_share = if s.p.is_server() { ring.reduce(j as u64) } else { 0 };
        let both = vec![below[0]; 2];
        let moved = mux(&mut s.p, ring, &both, &[ring.sub(l, best), ring.sub(j_share, idx)])?;
        best = ring.add(best, moved[0]);
        idx = ring.add(idx, moved[1]);
    }
    Ok(idx)
}

/// What the client learns from one inference.
#[derive(Default)]
pub struct OpenedValues {
    pub pooled: Option<Vec<i64>>,
    pub logits: Option<Vec<i64>>,
    pub label: Option<usize>,
}

/// Open what `what` names (both parties call it with the same `what`).
pub fn open_outputs(s: &mut Sess, pooled: &[u64], logits: Option<&[u64]>, what: Opened) -> Result<OpenedValues> {
    s.begin("open output");
    let mut out = OpenedValues::default();
    if what.embedding {
        out.pooled = reveal_to_client(s, pooled)?;
    }
    if let Some(l) = logits {
        if what.logits {
            out.logits = reveal_to_client(s, l)?;
        }
        if what.label {
            let idx = argmax_share(s, l)?;
            if let Some(v) = reveal_to_client(s, &[idx])? {
                let label = v.first().copied().filter(|&i| i >= 0 && (i as usize) < l.len());
                out.label = Some(label.ok_or_else(|| Error::protocol("open label", format!("label index {v:?} outside 0..{}", l.len())))? as usize);
            }
        }
    }
    s.end();
    Ok(out)
}
