//! The private engine against its fixed-point simulation (bit-exact) and the f32 model.
//!
//! The `fastlmpi` profile truncates the encoder's products approximately (⌊·⌋ or one less, the
//! carry the protocol drops): each run is traced (`proto::toolkit::trunc::trace`) and compared
//! bit for bit with the simulation given the carries that run dropped; the simulation with no
//! carries is then within the dropped ulps' effect, which the tests report.
//!
//! Tiny random checkpoints run in seconds; the real `minilm-l6` cases need the model
//! (`scripts/fetch-models.sh minilm-l6`, which `.ci/run` does); the full 6-layer run on 20
//! sentences is `#[ignore]` (`cargo test --release --test engine -- --ignored --nocapture`).

use std::path::Path;
use std::time::Instant;

use fastlmpi::engine::{bucket_len, client_close, client_infer, client_open, serve_session, simulate, simulate_with_carries, ClientOutcome, Profile, Reveal, ServePolicy, ServerModel};
use fastlmpi::model::{cosine, forward_f32, resolve, tiny, CarrySite, CarryTape, Model, ModelOutput, Tokenized};
use fastlmpi::net::run_pair;
use fastlmpi::proto::toolkit::trunc::{trace, TruncMode};

/// Runs both parties over loopback TCP (one session, one inference per input, each party's
/// approximate truncations traced); returns the client's outcomes, each with the carries its
/// inference dropped.
fn private_runs(model: &Model, toks: &[Tokenized], profile: &Profile, layers: usize) -> Vec<(ClientOutcome, CarryTape)> {
    let sm = ServerModel::new(model, profile).unwrap().with_policy(ServePolicy::benchmark());
    let mut lens: Vec<usize> = toks.iter().map(Tokenized::len).collect();
    lens.sort_unstable();
    lens.dedup();
    let out = run_pair(
        |ch| {
            trace::start();
            let report = serve_session(ch, &sm, profile);
            Ok((report?, trace::finish()))
        },
        |ch| {
            trace::start();
            let mut es = client_open(ch, &model.public, profile, &lens)?;
            let outs = toks
                .iter()
                .map(|t| client_infer(ch, &mut es, &model.public, t, layers, Reveal::Embedding, false))
                .collect::<fastlmpi::Result<Vec<_>>>()?;
            client_close(ch)?;
            Ok((outs, trace::finish()))
        },
    )
    .unwrap();
    let ((report, server_low), (outs, client_low)) = (out.server, out.client);
    assert_eq!(report.inferences.len(), toks.len());
    let calls = trace::carries(&server_low, &client_low).unwrap();
    let per = match profile.linear_trunc {
        TruncMode::Approx => layers * CarrySite::COUNT,
        TruncMode::Faithful => 0,
    };
    assert_eq!(calls.len(), per * toks.len(), "approximate truncations per inference");
    let mut calls = calls.into_iter();
    outs.into_iter().map(|o| (o, CarryTape::new(calls.by_ref().take(per).collect()).unwrap())).collect()
}

fn private_run(model: &Model, tok: &Tokenized, profile: &Profile, layers: usize) -> (ClientOutcome, CarryTape) {
    private_runs(model, std::slice::from_ref(tok), profile, layers).remove(0)
}

/// The private output equals the simulation given the run's carries, bit for bit.
fn assert_equals(got: &ClientOutcome, sim: &ModelOutput) {
    assert_eq!(got.pooled.as_deref().unwrap(), sim.pooled.as_slice().unwrap(), "pooled embedding differs from the simulation");
    match (&got.logits, &sim.logits) {
        (Some(a), Some(b)) => assert_eq!(a.as_slice(), b.as_slice().unwrap(), "logits differ from the simulation"),
        (None, None) => {}
        other => panic!("logits presence differs: {other:?}"),
    }
}

/// Largest |a − b| over the pooled embeddings.
fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn assert_matches_simulation(model: &Model, tok: &Tokenized, profile: &Profile) -> ClientOutcome {
    let layers = model.config().num_hidden_layers;
    let (got, carries) = private_run(model, tok, profile, layers);
    let ones = carries.ones();
    let sim = match profile.linear_trunc {
        TruncMode::Approx => simulate_with_carries(model, tok, profile, carries).unwrap(),
        TruncMode::Faithful => simulate(model, tok, profile).unwrap(),
    };
    assert_equals(&got, &sim);
    let nominal = simulate(model, tok, profile).unwrap();
    let drift = max_diff(got.pooled.as_deref().unwrap(), nominal.pooled.as_slice().unwrap());
    println!("{} carries dropped; pooled vs the carry-free simulation: max |Δ| {drift:.2e}", ones);
    if profile.linear_trunc == TruncMode::Approx {
        assert!(ones > 0, "an approximate run that never dropped a carry");
    } else {
        assert_eq!(drift, 0.0);
    }
    got
}

fn tiny_model(dir: &Path, spec: &tiny::TinySpec) -> Model {
    tiny::write_tiny_checkpoint(dir, spec).unwrap();
    Model::load(dir).unwrap()
}

#[test]
fn tiny_mpnet_with_head_matches_simulation_bit_for_bit() {
    let dir = tempfile_dir("engine-tiny-mpnet");
    let spec = tiny::TinySpec { classifier_labels: Some(2), ..tiny::TinySpec::mpnet() };
    let model = tiny_model(&dir, &spec);
    let tok = model.public.tokenizer.encode_padded("the cat sat", 16, true, Some(12)).unwrap();
    let out = assert_matches_simulation(&model, &tok, &Profile::fastlmpi());
    let plain = forward_f32(&model, &tok).unwrap();
    let cos = cosine(out.pooled.as_deref().unwrap(), plain.pooled.as_slice().unwrap());
    assert!(cos > 0.999, "cosine vs f32 {cos}");
    assert!(out.records.records.iter().any(|r| r.op == "gelu" && r.comm.bytes_sent > 0));
}

/// Each online operator records its OTs as 1-of-2 equivalents, the same on both OT backends
/// (the count does not depend on how the OTs are made), and SoftMax and GeLU run some.
#[test]
fn operators_record_backend_free_ot_counts() {
    let dir = tempfile_dir("engine-tiny-ots");
    let model = tiny_model(&dir, &tiny::TinySpec::mpnet());
    let tok = model.public.tokenizer.encode_padded("the cat sat", 16, true, Some(12)).unwrap();
    let layers = model.config().num_hidden_layers;
    let counts = |ot: fastlmpi::ot::OtBackend| -> Vec<(String, u64)> {
        let (out, _) = private_run(&model, &tok, &Profile::fastlmpi().with_ot(ot), layers);
        out.records.records.iter().filter(|r| r.phase == fastlmpi::engine::report::Phase::Online).map(|r| (r.op.clone(), r.ot_equivalents)).collect()
    };
    let (iknp, silent) = (counts(fastlmpi::ot::OtBackend::Iknp), counts(fastlmpi::ot::OtBackend::Silent));
    assert_eq!(iknp, silent);
    for op in ["softmax", "gelu", "layernorm-1"] {
        assert!(iknp.iter().any(|(o, n)| o == op && *n > 0), "{op} recorded no OTs: {iknp:?}");
    }
}

/// A BERT-style checkpoint: the pooler (dense + tanh on the first token) runs privately and
/// matches the simulation bit for bit; the segmented tanh keeps it close to the f32 model.
#[test]
fn tiny_bert_with_pooler_matches_simulation_bit_for_bit() {
    let dir = tempfile_dir("engine-tiny-bert");
    let model = tiny_model(&dir, &tiny::TinySpec::bert());
    let tok = model.public.tokenizer.encode_padded("a cat, a dog", 16, true, Some(16)).unwrap();
    let out = assert_matches_simulation(&model, &tok, &Profile::fastlmpi());
    let plain = forward_f32(&model, &tok).unwrap();
    let pooled = out.pooled.as_deref().unwrap();
    assert!(pooled.iter().all(|v| v.abs() <= 1.0 + 1e-3), "tanh output outside [-1, 1]: {pooled:?}");
    let cos = cosine(pooled, plain.pooled.as_slice().unwrap());
    assert!(cos > 0.999, "cosine vs f32 {cos}");
    assert!(out.records.records.iter().any(|r| r.op == "pool" && r.comm.bytes_sent > 0));
}

/// The `bolt` profile (BOLT's GeLU, I-BERT exp, 37-bit ring) through the same engine: bit-exact
/// against its own simulation, on MPNet (relative attention bias, mean pooling, head) and BERT
/// (pooler tanh) shapes.
#[test]
fn tiny_models_under_the_bolt_profile_match_their_simulation() {
    let dir = tempfile_dir("engine-tiny-bolt");
    for (name, spec) in [("mpnet", tiny::TinySpec { classifier_labels: Some(2), ..tiny::TinySpec::mpnet() }), ("bert", tiny::TinySpec::bert())] {
        let model = tiny_model(&dir.join(name), &spec);
        let tok = model.public.tokenizer.encode_padded("the cat sat", 16, true, Some(12)).unwrap();
        let out = assert_matches_simulation(&model, &tok, &Profile::bolt());
        let plain = forward_f32(&model, &tok).unwrap();
        let cos = cosine(out.pooled.as_deref().unwrap(), plain.pooled.as_slice().unwrap());
        assert!(cos > 0.995, "{name}: cosine vs f32 {cos}");
    }
}

fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn minilm() -> Model {
    let dir = match resolve("minilm-l6", false) {
        Ok(r) => r.dir,
        Err(e) => panic!("model `minilm-l6` is not available ({e}); fetch it with `scripts/fetch-models.sh minilm-l6`"),
    };
    Model::load(&dir).unwrap()
}

#[test]
fn minilm_one_layer_matches_simulation_bit_for_bit() {
    let model = minilm().truncated(1).unwrap();
    let tok = model.public.tokenizer.encode("A man is eating food.", 128, true).unwrap();
    let t0 = Instant::now();
    let out = assert_matches_simulation(&model, &tok, &Profile::fastlmpi());
    let plain = forward_f32(&model, &tok).unwrap();
    let cos = cosine(out.pooled.as_deref().unwrap(), plain.pooled.as_slice().unwrap());
    println!("minilm-l6, 1 layer, {} tokens: cosine vs f32 {cos:.6}, {:.1} s", tok.len(), t0.elapsed().as_secs_f64());
    assert!(cos > 0.999, "cosine vs f32 {cos}");
}

const SENTENCES: [&str; 20] = [
    "The new movie is awesome",
    "A man is eating food.",
    "I would not recommend this phone to anyone, the battery died after two days.",
    "What time does the museum open on Sundays?",
    "Quantum computers exploit superposition and entanglement to solve certain problems faster.",
    "She sells sea shells by the sea shore.",
    "The service was slow but the pasta made up for it!",
    "Don't forget to water the plants while I'm away.",
    "In 1969, Apollo 11 landed on the Moon.",
    "Worst. Film. Ever.",
    "The committee postponed its decision until further evidence could be gathered and reviewed.",
    "Can you recommend a good book about the history of mathematics?",
    "It's raining cats and dogs outside, so bring an umbrella.",
    "The stock market fell sharply after the central bank raised interest rates by half a point.",
    "Honestly, the sequel was better than the original.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "My grandmother's recipe calls for three eggs, a cup of sugar and a pinch of salt.",
    "Error 404: the page you requested could not be found.",
    "Yes.",
    "Although the hotel looked nothing like the pictures, the staff were friendly and the breakfast was excellent.",
];

/// All 6 layers of MiniLM on 20 real sentences in one session: bit-exact with the simulation
/// and pooled cosine ≥ 0.999 against f32 on every sentence. Slow (minutes in release). On the
/// profile's OT backend (silent); `FASTLMPI_TEST_OT=iknp` runs it on IKNP (KK13 1-of-N).
#[test]
#[ignore]
fn minilm_six_layers_on_twenty_sentences() {
    let model = minilm();
    let profile = match std::env::var("FASTLMPI_TEST_OT").ok().as_deref() {
        Some(ot) => Profile::fastlmpi().with_ot(fastlmpi::ot::OtBackend::parse(ot).unwrap()),
        None => Profile::fastlmpi(),
    };
    println!("OT backend: {}", profile.ot.name());
    let max_pos = model.config().max_position_embeddings;
    let toks: Vec<Tokenized> = SENTENCES
        .iter()
        .map(|s| {
            let t = model.public.tokenizer.encode(s, 128, true).unwrap();
            let n = bucket_len(t.len(), max_pos);
            model.public.tokenizer.encode_padded(s, 128, true, Some(n)).unwrap()
        })
        .collect();
    let t0 = Instant::now();
    let outs = private_runs(&model, &toks, &profile, model.config().num_hidden_layers);
    println!("20 sentences, 6 layers: {:.1} s in one session", t0.elapsed().as_secs_f64());
    let mut worst = 1.0f64;
    for ((s, tok), (out, carries)) in SENTENCES.iter().zip(&toks).zip(outs) {
        let sim = simulate_with_carries(&model, tok, &profile, carries).unwrap();
        assert_eq!(out.pooled.as_deref().unwrap(), sim.pooled.as_slice().unwrap(), "{s}: differs from the simulation");
        let plain = forward_f32(&model, tok).unwrap();
        let cos = cosine(out.pooled.as_deref().unwrap(), plain.pooled.as_slice().unwrap());
        println!("{cos:.6}  {s}");
        worst = worst.min(cos);
    }
    println!("worst pooled cosine vs f32: {worst:.6}");
    assert!(worst >= 0.999, "worst cosine {worst}");
}

/// The `fastlmpi` profile's fixed-point simulation (which the private run equals bit for bit
/// given its carries, see the tests above) keeps pooled cosine ≥ 0.999 against f32 on the 20 sentences; the
/// quick counterpart of `minilm_six_layers_on_twenty_sentences` (no cryptography).
#[test]
fn minilm_simulation_tracks_f32_on_twenty_sentences() {
    let model = minilm();
    let profile = Profile::fastlmpi();
    let max_pos = model.config().max_position_embeddings;
    let mut worst = 1.0f64;
    for s in SENTENCES {
        let n = bucket_len(model.public.tokenizer.encode(s, 128, true).unwrap().len(), max_pos);
        let tok = model.public.tokenizer.encode_padded(s, 128, true, Some(n)).unwrap();
        let sim = simulate(&model, &tok, &profile).unwrap();
        let plain = forward_f32(&model, &tok).unwrap();
        worst = worst.min(cosine(sim.pooled.as_slice().unwrap(), plain.pooled.as_slice().unwrap()));
    }
    println!("fastlmpi simulation, 6 layers, 20 sentences: worst pooled cosine vs f32 {worst:.6}");
    assert!(worst >= 0.999, "worst cosine {worst}");
}
