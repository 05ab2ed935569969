//! Seed corpora of the fuzz targets (`fuzz/`), made from real messages of the protocols, in
//! each target's input layout (mode byte, 16-bit parameter, peer bytes; see `fuzz/src/lib.rs`).
//!
//! The test checks that every real message is accepted by the decoder the target fuzzes (so
//! the seeds start on the success path). With `FASTLMPI_WRITE_CORPUS=1` it also writes them to
//! `fuzz/corpus/<target>/` (the committed seeds):
//! `FASTLMPI_WRITE_CORPUS=1 cargo test --test fuzz_corpus`.

use std::collections::BTreeMap;
use std::path::Path;

use fastlmpi::engine::session::{decode_inference_request, decode_session_request};
use fastlmpi::engine::{InferenceRequest, Profile, Reveal, SessionRequest};
use fastlmpi::he::wire::{decode_seeded, encode_seeded};
use fastlmpi::he::{decode_galois_keys, decode_public_key, ClientKeys, HeContext, HePreset};
use fastlmpi::model::{tiny, Model};
use fastlmpi::net::handshake::{handshake, Hello};
use fastlmpi::net::replay::ReplayChannel;
use fastlmpi::net::{pack_bits, Channel};
use fastlmpi::ot::base::{receive, BaseSender};
use fastlmpi::ot::header::{BatchHeader, OtKind};
use fastlmpi::ot::iknp::{ExtReceiver, ExtSender, KAPPA};
use fastlmpi::ot::kk13::{KkReceiver, KkSender, CODE_BITS};
use fastlmpi::share::Role;
use fhe_traits::Serialize as _;

type Corpus = BTreeMap<&'static str, Vec<Vec<u8>>>;

fn with_header(mode: u8, param: u16, body: &[u8]) -> Vec<u8> {
    let mut v = vec![mode];
    v.extend_from_slice(&param.to_le_bytes());
    v.extend_from_slice(body);
    v
}

fn frame(bytes: &[u8]) -> Vec<u8> {
    let mut v = (bytes.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(bytes);
    v
}

fn tiny_model() -> Model {
    let dir = std::env::temp_dir().join(format!("fastlmpi-corpus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    tiny::write_tiny_checkpoint(&dir, &tiny::TinySpec { layers: 1, ..tiny::TinySpec::bert() }).unwrap();
    Model::load(&dir).unwrap()
}

/// The client's hello frame as it goes on the wire, and the server's acceptance of it.
fn connection_seeds(model: &Model, profile: &Profile, c: &mut Corpus) {
    let fingerprint = model.config().shape_fingerprint();
    let mut client = ReplayChannel::new(&[]);
    let _ = handshake(&mut client, &Hello::new(Role::Client, fingerprint.clone(), profile.handshake_params()));
    let hello = client.sent().to_vec();
    let mut server = ReplayChannel::new(&hello);
    handshake(&mut server, &Hello::new(Role::Server, fingerprint, profile.handshake_params())).expect("the real hello is accepted");
    c.entry("handshake").or_default().push(hello.clone());
    let mut first_bytes = hello.clone();
    first_bytes.extend_from_slice(&[0x5a; 512]); // the start of the channel check
    c.entry("dispatch").or_default().push(first_bytes);

    let cfg = model.config();
    let session = serde_json::to_vec(&SessionRequest { seq_lens: vec![8, 16] }).unwrap();
    decode_session_request(&session, cfg).expect("real session request");
    let infer = serde_json::to_vec(&Some(InferenceRequest { seq_len: 8, mask: vec![1, 1, 1, 0, 0, 0, 0, 0], layers: 1, reveal: Reveal::Embedding })).unwrap();
    assert!(decode_inference_request(&infer, cfg).expect("real inference request").is_some());
    assert!(decode_inference_request(b"null", cfg).unwrap().is_none());
    let requests = c.entry("requests").or_default();
    requests.push(with_header(0, 0, &session));
    requests.push(with_header(1, 0, &infer));
    requests.push(with_header(1, 0, b"null"));

    let mut stream = frame(&hello[8..]);
    stream.extend_from_slice(&frame(&session));
    let frames = c.entry("frame").or_default();
    frames.push(with_header(3, 0, &stream));
    frames.push(with_header(0, 4096, &stream));
    frames.push(with_header(2, 12 << 9 | 16, &pack_bits(&(0..16).collect::<Vec<u64>>(), 13)));
}

fn he_seeds(c: &mut Corpus) {
    let ctx = HeContext::new(&HePreset::wire_test()).unwrap();
    let mut rng = rand::rng();
    let keys = ClientKeys::generate(&ctx, &[1], &mut rng).unwrap();
    let (pk, ek) = (keys.pk.to_bytes(), keys.ek.as_ref().unwrap().to_bytes());
    decode_public_key(&ctx, &pk, pk.len()).expect("real public key");
    decode_galois_keys(&ctx, &ek, ek.len(), &[1]).expect("real Galois keys");
    let seeded = encode_seeded(&keys.encrypt_seeded(&ctx, &[1, 2, 3], &mut rng).unwrap());
    decode_seeded(&ctx, &seeded).expect("real seeded upload");
    // Splice seeds: a real slice of each message written back at its own offset (a no-op
    // patch: the target starts from the real, valid message).
    let wire = c.entry("he_wire").or_default();
    wire.push(with_header(1, 32, &seeded[32..96]));
    wire.push(with_header(3, 0, &seeded[32..96]));
    wire.push(with_header(1, 100, &[0xff; 16])); // coefficients ≥ q
    let k = c.entry("he_keys").or_default();
    k.push(with_header(1, 0, &pk[..64]));
    k.push(with_header(3, 0, &ek[..64]));
    k.push(with_header(0, 0, &pk[..256]));
    // Packing keys: a short raw prefix (refused by length) and a splice into the real keys.
    let ctx = HeContext::coefficient(&HePreset::coefficient(40)).expect("coefficient context");
    let keys = ClientKeys::generate(&ctx, &[], &mut rand::rng()).expect("keys");
    let packing = fastlmpi::he::galois::generate_keys(&ctx, &keys.sk, &mut rand::rng()).expect("packing keys");
    k.push(with_header(4, 0, &packing[..64]));
    k.push(with_header(5, 7, &packing[..64]));
}

fn ot_seeds(c: &mut Corpus) {
    let (sender, a) = BaseSender::start(1);
    let (b, _) = receive(1, &a, &[true, false]).expect("real sender point");
    sender.finish(&b, 2).expect("real receiver points");
    let base = c.entry("ot_base").or_default();
    base.push(with_header(0, 0, &a));
    base.push(with_header(1, 2 | 1 << 4, &a));
    base.push(with_header(2, 2, &b));

    let pairs: Vec<[u128; 2]> = (0..KAPPA as u128).map(|j| [j, j + 1000]).collect();
    let delta = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210u128;
    let chosen: Vec<u128> = (0..KAPPA).map(|j| pairs[j][((delta >> j) & 1) as usize]).collect();
    let batch = ExtReceiver::new(&pairs).unwrap().extend(&vec![true; 130]);
    ExtSender::new(delta, &chosen).unwrap().extend(&batch.u_bytes, 130).expect("real u matrix");
    let header = BatchHeader::new(OtKind::Chosen, 1 + 11, 2, 1000).unwrap();
    header.expect(&mut ReplayChannel::new(&header.encode().to_le_bytes())).expect("real header");
    let ext = c.entry("ot_ext").or_default();
    ext.push(with_header(0, 130, &batch.u_bytes));
    ext.push(with_header(1, 11 << 10, &header.encode().to_le_bytes()));
    let mut payload = vec![3u8];
    payload.extend_from_slice(&pack_bits(&[5; 4 * 16], 12));
    ext.push(with_header(2, 11 << 8 | 14, &payload));
    let kk_pairs: Vec<[u128; 2]> = (0..CODE_BITS as u128).map(|j| [j, j + 1000]).collect();
    let s = [0x0123_4567_89ab_cdefu128, 0xfedc_ba98_7654_3210];
    let kk_chosen: Vec<u128> = (0..CODE_BITS).map(|j| kk_pairs[j][((s[j / 128] >> (j % 128)) & 1) as usize]).collect();
    let kk_batch = KkReceiver::new(&kk_pairs).unwrap().extend(&[3u8; 130]);
    KkSender::new(s, &kk_chosen).unwrap().extend(&kk_batch.u_bytes, 130).expect("real KK13 rows");
    ext.push(with_header(3, 130, &kk_batch.u_bytes));
}

#[test]
fn seed_corpora_are_real_messages_the_decoders_accept() {
    let model = tiny_model();
    let profile = Profile::fastlmpi();
    let mut corpus = Corpus::new();
    connection_seeds(&model, &profile, &mut corpus);
    he_seeds(&mut corpus);
    ot_seeds(&mut corpus);
    let targets = ["frame", "handshake", "requests", "he_wire", "he_keys", "ot_base", "ot_ext", "dispatch"];
    assert_eq!(corpus.keys().copied().collect::<Vec<_>>().len(), targets.len());
    for t in targets {
        assert!(corpus.get(t).is_some_and(|v| !v.is_empty()), "no seeds for {t}");
    }
    if std::env::var_os("FASTLMPI_WRITE_CORPUS").is_some() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        for (t, seeds) in &corpus {
            let dir = root.join(t);
            std::fs::create_dir_all(&dir).unwrap();
            for (i, s) in seeds.iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i}")), s).unwrap();
            }
        }
    }
    // The replay channel reports the end of a recording as a disconnect, never a panic.
    let mut ch = ReplayChannel::new(&[1, 2, 3]);
    assert!(ch.recv_u64().is_err());
}
