//! The client's public and Galois keys as the server parses them, raw and spliced into real
//! encodings (exact size, so the crate's parser is reached).
#![no_main]
use fastlmpi::he::{decode_galois_keys, decode_public_key};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fastlmpi_fuzz::tolerate_panics_inside_the_he_crate();
    let ctx = fastlmpi_fuzz::he_ctx();
    let (pk, ek) = fastlmpi_fuzz::real_keys();
    let (mode, param, rest) = fastlmpi_fuzz::header(data);
    let _ = match mode % 4 {
        0 => decode_public_key(ctx, rest, pk.len()).map(|_| ()),
        1 => decode_public_key(ctx, &fastlmpi_fuzz::splice(pk, param, rest), pk.len()).map(|_| ()),
        2 => decode_galois_keys(ctx, rest, ek.len(), &[1]).map(|_| ()),
        _ => decode_galois_keys(ctx, &fastlmpi_fuzz::splice(ek, param, rest), ek.len(), &[1]).map(|_| ()),
    };
});
