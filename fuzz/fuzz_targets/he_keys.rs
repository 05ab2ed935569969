//! The client's public, Galois and packing keys as the server parses them, raw and spliced
//! into real encodings (exact size, so the crate's parser is reached).
#![no_main]
use fastlmpi::he::galois::PackingKeys;
use fastlmpi::he::{decode_galois_keys, decode_public_key};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fastlmpi_fuzz::tolerate_panics_inside_the_he_crate();
    let ctx = fastlmpi_fuzz::he_ctx();
    let (pk, ek) = fastlmpi_fuzz::real_keys();
    let (mode, param, rest) = fastlmpi_fuzz::header(data);
    let _ = match mode % 6 {
        0 => decode_public_key(ctx, rest, pk.len()).map(|_| ()),
        1 => decode_public_key(ctx, &fastlmpi_fuzz::splice(pk, param, rest), pk.len()).map(|_| ()),
        2 => decode_galois_keys(ctx, rest, ek.len(), &[1]).map(|_| ()),
        3 => decode_galois_keys(ctx, &fastlmpi_fuzz::splice(ek, param, rest), ek.len(), &[1]).map(|_| ()),
        4 => PackingKeys::decode(fastlmpi_fuzz::coeff_ctx(), rest).map(|_| ()),
        _ => {
            // Splice at a 64-byte-granular offset so the parameter reaches the whole 4 MB encoding.
            let keys = fastlmpi_fuzz::real_packing_keys();
            let mut patched = keys.clone();
            let start = param as usize * 64 % keys.len();
            for (i, &b) in rest.iter().enumerate() {
                patched[(start + i) % keys.len()] = b;
            }
            PackingKeys::decode(fastlmpi_fuzz::coeff_ctx(), &patched).map(|_| ())
        }
    };
});
