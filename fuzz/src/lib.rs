//! Shared fixtures of the fuzz targets: built once per process, from the library's own
//! constructors (a tiny random checkpoint, the smallest HE preset, real encoded keys).
//!
//! Input layouts (the seed-corpus test in `tests/fuzz_corpus.rs` writes the same ones): most
//! targets read a mode byte, sometimes a 16-bit little-endian parameter, then the bytes a
//! peer would send. "Splice" modes overwrite part of a real encoded message with the fuzzer's
//! bytes, so that well-formed prefixes and exact sizes are reached often.

use std::sync::OnceLock;

use fastlmpi::engine::{Profile, ServerModel};
use fastlmpi::he::{ClientKeys, HeContext, HePreset};
use fastlmpi::model::{tiny, Model};

/// Split `data` into (mode byte, 16-bit parameter, rest); short inputs give zeros.
pub fn header(data: &[u8]) -> (u8, u16, &[u8]) {
    let mode = data.first().copied().unwrap_or(0);
    let param = u16::from_le_bytes([data.get(1).copied().unwrap_or(0), data.get(2).copied().unwrap_or(0)]);
    (mode, param, data.get(3..).unwrap_or(&[]))
}

/// A copy of `base` with `patch` written at `offset` (wrapping), same length as `base`.
pub fn splice(base: &[u8], offset: u16, patch: &[u8]) -> Vec<u8> {
    let mut out = base.to_vec();
    if out.is_empty() {
        return out;
    }
    let start = offset as usize % out.len();
    for (i, &b) in patch.iter().enumerate() {
        let at = (start + i) % out.len();
        out[at] = b;
    }
    out
}

/// The smallest HE context (N = 2048, one modulus): the real decoders on small messages.
pub fn he_ctx() -> &'static HeContext {
    static CTX: OnceLock<HeContext> = OnceLock::new();
    CTX.get_or_init(|| HeContext::new(&HePreset::wire_test()).expect("wire-test HE preset"))
}

/// Real encoded client keys for [`he_ctx`]: (public key, Galois keys for rotation by 1).
pub fn real_keys() -> &'static (Vec<u8>, Vec<u8>) {
    static KEYS: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    KEYS.get_or_init(|| {
        use fhe_traits::Serialize;
        let keys = ClientKeys::generate(he_ctx(), &[1], &mut rand::rng()).expect("key generation");
        let ek = keys.ek.as_ref().expect("Galois keys").to_bytes();
        (keys.pk.to_bytes(), ek)
    })
}

/// The coefficient context of the FASTLMPI profile (N = 8192, t = 2^40), whose setup carries
/// packing keys ([`fastlmpi::he::galois`]).
pub fn coeff_ctx() -> &'static HeContext {
    static CTX: OnceLock<HeContext> = OnceLock::new();
    CTX.get_or_init(|| HeContext::coefficient(&HePreset::coefficient(40)).expect("coefficient HE preset"))
}

/// Real encoded packing keys for [`coeff_ctx`].
pub fn real_packing_keys() -> &'static Vec<u8> {
    static KEYS: OnceLock<Vec<u8>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let keys = ClientKeys::generate(coeff_ctx(), &[], &mut rand::rng()).expect("key generation");
        fastlmpi::he::galois::generate_keys(coeff_ctx(), &keys.sk, &mut rand::rng()).expect("packing keys")
    })
}

/// A tiny random BERT served with the default profile.
pub struct TinyServer {
    pub model: &'static Model,
    pub server: ServerModel<'static>,
    pub profile: Profile,
}

pub fn tiny_server() -> &'static TinyServer {
    static SERVER: OnceLock<TinyServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("fastlmpi-fuzz-tiny-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        tiny::write_tiny_checkpoint(&dir, &tiny::TinySpec { layers: 1, ..tiny::TinySpec::bert() }).expect("tiny checkpoint");
        let model: &'static Model = Box::leak(Box::new(Model::load(&dir).expect("tiny model")));
        let profile = Profile::fastlmpi();
        let server = ServerModel::new(model, &profile).expect("server model");
        TinyServer { model, server, profile }
    })
}

/// Panics raised inside the HE crate while it parses peer bytes are caught by the library
/// (`he::guarded` turns them into protocol errors), but libFuzzer's hook aborts on every
/// panic. Let those through; any other panic still aborts and counts as a crash.
pub fn tolerate_panics_inside_the_he_crate() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let abort_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let inside = info.location().is_some_and(|l| l.file().contains("/fhe-") || l.file().contains("/prost-"));
            if !inside {
                abort_hook(info);
            }
        }));
    });
}
