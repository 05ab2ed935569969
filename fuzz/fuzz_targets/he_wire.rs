//! Ciphertext wire formats: seeded uploads and full ciphertexts at every level, raw and
//! spliced into a real encoding (exact size, so the coefficient checks are reached).
#![no_main]
use std::sync::OnceLock;

use fastlmpi::he::wire::{decode_full, decode_seeded, encode_full, encode_seeded};
use libfuzzer_sys::fuzz_target;

/// Real encodings: a seeded upload, then a full ciphertext at each level.
fn real() -> &'static (Vec<u8>, Vec<Vec<u8>>) {
    static REAL: OnceLock<(Vec<u8>, Vec<Vec<u8>>)> = OnceLock::new();
    REAL.get_or_init(|| {
        let ctx = fastlmpi_fuzz::he_ctx();
        let mut rng = rand::rng();
        let keys = fastlmpi::he::ClientKeys::generate(ctx, &[], &mut rng).unwrap();
        let seeded = keys.encrypt_seeded(ctx, &[1, 2, 3], &mut rng).unwrap();
        let bytes = encode_seeded(&seeded);
        let ct = decode_seeded(ctx, &bytes).unwrap();
        let full = (0..=ctx.max_level())
            .map(|level| {
                let mut c = ct.clone();
                c.switch_to_level(level).unwrap();
                encode_full(ctx, &c, level).unwrap()
            })
            .collect();
        (bytes, full)
    })
}

fuzz_target!(|data: &[u8]| {
    let ctx = fastlmpi_fuzz::he_ctx();
    let (seeded, full) = real();
    let (mode, param, rest) = fastlmpi_fuzz::header(data);
    let level = (mode as usize >> 2) % full.len();
    let _ = match mode % 4 {
        0 => decode_seeded(ctx, rest).map(|_| ()),
        1 => decode_seeded(ctx, &fastlmpi_fuzz::splice(seeded, param, rest)).map(|_| ()),
        2 => decode_full(ctx, level, rest).map(|_| ()),
        _ => decode_full(ctx, level, &fastlmpi_fuzz::splice(&full[level], param, rest)).map(|_| ()),
    };
});
