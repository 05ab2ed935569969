//! The server's output policy, per-session limits and per-key re-keying, as real two-party
//! runs over loopback TCP on a tiny random checkpoint with a 2-label head (seconds each).

use std::path::PathBuf;

use fastlmpi::engine::{client_close, client_infer, client_open, serve_session, simulate, ClientOutcome, Profile, Reveal, ServePolicy, ServerModel, ServerSessionReport, SessionLimits};
use fastlmpi::model::{tiny, Model, Tokenized};
use fastlmpi::net::run_pair;
use fastlmpi::proto::toolkit::trunc::TruncMode;

fn tiny_with_head(tag: &str) -> Model {
    let dir: PathBuf = std::env::temp_dir().join(format!("fastlmpi-policy-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let spec = tiny::TinySpec { classifier_labels: Some(2), ..tiny::TinySpec::mpnet() };
    tiny::write_tiny_checkpoint(&dir, &spec).unwrap();
    Model::load(&dir).unwrap()
}

fn tokens(model: &Model, text: &str) -> Tokenized {
    model.public.tokenizer.encode_padded(text, 16, true, Some(12)).unwrap()
}

/// One session of `toks.len()` inferences under `policy`; each side's result (errors as text).
/// The `fastlmpi` profile with faithful truncations after the products, so that a run equals
/// the carry-free simulation bit for bit (these tests are about what is opened; the
/// approximate truncation is checked against its carries in `tests/engine.rs`).
fn exact_profile() -> Profile {
    Profile { linear_trunc: TruncMode::Faithful, ..Profile::fastlmpi() }
}

fn session(model: &Model, policy: ServePolicy, toks: &[Tokenized], layers: usize, ask: Reveal) -> (Result<ServerSessionReport, String>, Result<Vec<ClientOutcome>, String>) {
    let profile = exact_profile();
    let sm = ServerModel::new(model, &profile).unwrap().with_policy(policy);
    let out = run_pair(
        |ch| Ok(serve_session(ch, &sm, &profile).map_err(|e| e.to_string())),
        |ch| {
            let mut run = || -> fastlmpi::Result<Vec<ClientOutcome>> {
                let mut es = client_open(ch, &model.public, &profile, &[toks[0].len()])?;
                let outs = toks.iter().map(|t| client_infer(ch, &mut es, &model.public, t, layers, ask, false)).collect::<fastlmpi::Result<Vec<_>>>()?;
                client_close(ch)?;
                Ok(outs)
            };
            Ok(run().map_err(|e| e.to_string()))
        },
    )
    .unwrap();
    (out.server, out.client)
}

#[test]
fn a_client_asking_for_the_embedding_gets_what_the_server_allows() {
    let model = tiny_with_head("reveal");
    let depth = model.config().num_hidden_layers;
    let tok = tokens(&model, "the cat sat");
    let sim = simulate(&model, &tok, &exact_profile()).unwrap();
    let sim_logits = sim.logits.as_ref().unwrap().to_vec();

    // Default policy: logits only, whatever the client asks.
    let (_, client) = session(&model, ServePolicy::default(), std::slice::from_ref(&tok), depth, Reveal::Embedding);
    let out = client.unwrap().remove(0);
    assert!(out.pooled.is_none(), "the embedding was opened against the server's policy");
    assert_eq!(out.logits.as_deref().unwrap(), sim_logits.as_slice());

    // The operator's --reveal embedding, and a client that asks for less.
    let open_all = ServePolicy { reveal: Reveal::Embedding, ..ServePolicy::default() };
    let (_, client) = session(&model, open_all, std::slice::from_ref(&tok), depth, Reveal::Embedding);
    let out = client.unwrap().remove(0);
    assert_eq!(out.pooled.as_deref().unwrap(), sim.pooled.as_slice().unwrap());
    assert!(out.logits.is_some());
    let (_, client) = session(&model, open_all, std::slice::from_ref(&tok), depth, Reveal::Logits);
    assert!(client.unwrap()[0].pooled.is_none(), "the client asked for less");

    // Label only: the argmax of the logits (first on ties), nothing else.
    let label_only = ServePolicy { reveal: Reveal::Label, ..ServePolicy::default() };
    let (_, client) = session(&model, label_only, std::slice::from_ref(&tok), depth, Reveal::Embedding);
    let out = client.unwrap().remove(0);
    assert!(out.pooled.is_none() && out.logits.is_none());
    let expected = usize::from(sim_logits[1] > sim_logits[0]);
    assert_eq!(out.label, Some(expected), "logits {sim_logits:?}");
}

#[test]
fn partial_depth_needs_allow_partial_and_limits_are_refused_clearly() {
    let model = tiny_with_head("partial");
    let depth = model.config().num_hidden_layers;
    assert!(depth >= 2, "the tiny model needs two layers for this test");
    let tok = tokens(&model, "the cat sat");
    let (server, client) = session(&model, ServePolicy::default(), std::slice::from_ref(&tok), 1, Reveal::Logits);
    let err = client.unwrap_err();
    assert!(err.contains("--allow-partial"), "{err}");
    assert!(server.unwrap_err().contains("--allow-partial"));
    let partial = ServePolicy { allow_partial: true, ..ServePolicy::default() };
    let (_, client) = session(&model, partial, std::slice::from_ref(&tok), 1, Reveal::Logits);
    assert!(client.unwrap()[0].logits.is_some());

    // At most one inference per session: the second is refused with the flag that sets it.
    let one = ServePolicy { limits: SessionLimits { max_inferences: 1, ..SessionLimits::default() }, ..ServePolicy::default() };
    let (_, client) = session(&model, one, &[tok.clone(), tok.clone()], depth, Reveal::Logits);
    let err = client.unwrap_err();
    assert!(err.contains("--max-inferences"), "{err}");
}

#[test]
fn a_spent_key_budget_makes_the_client_rekey_and_results_stay_exact() {
    let model = tiny_with_head("rekey");
    let depth = model.config().num_hidden_layers;
    let toks: Vec<Tokenized> = ["the cat sat", "a dog ran", "the cat sat"].iter().map(|t| tokens(&model, t)).collect();
    let (server, client) = session(&model, ServePolicy::default(), &toks, depth, Reveal::Logits);
    let (server, reference) = (server.unwrap(), client.unwrap());
    assert_eq!(server.rekeys, 0);
    let per_inference = server.most_returns.iter().copied().max().unwrap();
    assert!(per_inference > 0, "the linear layers return ciphertexts");

    // A budget of exactly one inference per key: a re-key before each later inference.
    let tight = ServePolicy { key_returns: per_inference, ..ServePolicy::default() };
    let (server, client) = session(&model, tight, &toks, depth, Reveal::Logits);
    let (server, outs) = (server.unwrap(), client.unwrap());
    assert_eq!(server.rekeys, toks.len() - 1);
    for (a, b) in outs.iter().zip(&reference) {
        assert_eq!(a.logits, b.logits, "re-keying changed a result");
    }

    // A budget below one inference: the server refuses the return rather than exceed it.
    let too_small = ServePolicy { key_returns: per_inference - 1, ..ServePolicy::default() };
    let (server, _) = session(&model, too_small, &toks[..1], depth, Reveal::Logits);
    let err = server.unwrap_err();
    assert!(err.contains("re-key"), "{err}");
}
