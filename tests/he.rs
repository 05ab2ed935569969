//! Two-party tests of the HE layer: key setup, S2H/H2S, circuit privacy (flooding width and
//! exactness), rotation direction, and rejection of malformed peer data.

use fastlmpi::he::privacy::{flood_bits, mask_and_flood, private_return, return_level, ReturnKey, KEY_BUDGET_BITS};
use fastlmpi::he::{client_setup, convert, server_setup, wire, ClientKeys, HeContext, HePreset};
use fastlmpi::net::run_pair;
use fastlmpi::Error;
use fhe::bfv::Ciphertext;
use fhe_traits::FheEncrypter;

fn random_field(ctx: &HeContext, n: usize) -> Vec<u64> {
    let f = ctx.field();
    let mut rng = rand::rng();
    (0..n).map(|_| f.random(&mut rng)).collect()
}

#[test]
fn s2h_then_h2s_reconstructs_exactly() {
    let ctx = HeContext::new(&HePreset::small_test()).unwrap();
    let f = ctx.field();
    let n = ctx.slots() + 17; // two ciphertexts, second one partial
    let (xc, xs) = (random_field(&ctx, n), random_field(&ctx, n));
    let v = ctx.fresh_noise();
    let out = run_pair(
        |ch| {
            let keys = server_setup(ch, &ctx, &[])?;
            let cts = convert::s2h_server(ch, &ctx, &xs)?;
            convert::h2s_server(ch, &ctx, &keys, cts, n, v)
        },
        |ch| {
            let keys = client_setup(ch, &ctx, &[], &mut rand::rng())?;
            convert::s2h_client(ch, &ctx, &keys, &xc, &mut rand::rng())?;
            convert::h2s_client(ch, &ctx, &keys, n, 0, v)
        },
    )
    .unwrap();
    let expect: Vec<u64> = xc.iter().zip(&xs).map(|(&a, &b)| f.add(a, b)).collect();
    assert_eq!(f.reconstruct(&out.server, &out.client), expect);
    // Fresh shares are uniform: the server's share must differ from -x almost everywhere.
    assert!(out.server.iter().zip(&expect).filter(|(s, x)| f.add(**s, **x) == 0).count() < 3);
}

#[test]
fn flooding_width_is_at_least_intended_and_decryption_stays_exact() {
    let ctx = HeContext::new(&HePreset::small_test()).unwrap();
    let f = ctx.field();
    let mut rng = rand::rng();
    let keys = ClientKeys::generate(&ctx, &[], &mut rng).unwrap();
    let x = random_field(&ctx, ctx.slots());
    let v = 1e3; // pretend data-dependent bound: 2^10
    let fb = flood_bits(&ctx, v);
    assert_eq!(fb, 10 + 40 + KEY_BUDGET_BITS + 12); // 2^40 · B · N · v with N = 2^12, B returns per key

    // Before switching: the measured noise is the flooding width itself.
    let mut ct: Ciphertext = keys.sk.try_encrypt(&ctx.plaintext(&x, 0).unwrap(), &mut rng).unwrap();
    let fresh = unsafe { keys.sk.measure_noise(&ct).unwrap() };
    let share = mask_and_flood(&ctx, &keys.pk, &mut ct, v, &mut rng).unwrap();
    let flooded = unsafe { keys.sk.measure_noise(&ct).unwrap() };
    assert!(fresh < 10, "fresh noise {fresh} bits");
    assert!(flooded as u32 >= fb, "flooded noise {flooded} bits < intended {fb}");
    assert!(flooded as u32 <= fb + 1, "flooded noise {flooded} bits, far above {fb}");
    let got = ctx.decrypt(&keys.sk, &ct).unwrap();
    assert_eq!(f.reconstruct(&got, &share), x);

    // After the full return: switched to the deepest safe level, noise scaled by q_L/Q.
    let ct: Ciphertext = keys.sk.try_encrypt(&ctx.plaintext(&x, 0).unwrap(), &mut rng).unwrap();
    let (ret, share) = private_return(&ctx, &ReturnKey::new(&ctx, &keys.pk).unwrap(), ct, v, &mut rng).unwrap();
    let lvl = return_level(&ctx, 0, v).unwrap();
    assert_eq!(lvl, ctx.max_level());
    assert_eq!(ctx.params().level_of_context(ret[0].ctx()).unwrap(), lvl);
    let scaled = fb as f64 + ctx.log_q_at(lvl) - ctx.log_q_at(0);
    let measured = unsafe { keys.sk.measure_noise(&ret).unwrap() } as f64;
    assert!(measured >= scaled.floor() - 1.0, "returned noise {measured} < scaled flooding {scaled}");
    let got = ctx.decrypt(&keys.sk, &ret).unwrap();
    assert_eq!(f.reconstruct(&got, &share), x);
}

#[test]
fn planner_rejects_flooding_that_does_not_fit() {
    let ctx = HeContext::new(&HePreset::small_test()).unwrap();
    // 2^60 data noise needs log Q > 20 + 112 + ... on a 109-bit modulus: refused.
    assert!(matches!(return_level(&ctx, 0, 2f64.powi(60)), Err(Error::He(_))));
}

#[test]
fn malformed_ciphertexts_from_the_peer_are_errors() {
    let ctx = HeContext::new(&HePreset::small_test()).unwrap();
    let size = wire::seeded_len(&ctx).unwrap();
    // All-ones residues are ≥ q_i: rejected.
    let r = run_pair(|ch| wire::recv_seeded(ch, &ctx, 1).map(|_| ()), |ch| ch.send_bytes(&vec![0xFF; size]));
    assert!(matches!(r, Err(Error::Protocol { .. })), "{r:?}");
    // Wrong sizes never reach the parser.
    assert!(wire::decode_seeded(&ctx, &vec![0u8; size - 1]).is_err());
    assert!(wire::decode_full(&ctx, 1, &vec![0u8; 7]).is_err());
    // Random bytes of the right size parse (or fail) without panicking.
    let junk: Vec<u8> = (0..wire::full_len(&ctx, 1).unwrap()).map(|i| (i * 131 % 251) as u8).collect();
    let _ = wire::decode_full(&ctx, 1, &junk);
    // A garbage public key is an error, not a panic.
    let r = run_pair(
        |ch| server_setup(ch, &ctx, &[]).map(|_| ()),
        |ch| {
            let keys = ClientKeys::generate(&ctx, &[], &mut rand::rng())?;
            let len = fhe_traits::Serialize::to_bytes(&keys.pk).len();
            ch.send_frame(&vec![0xAB; len])
        },
    );
    assert!(matches!(r, Err(Error::Protocol { .. })), "{r:?}");
}

#[test]
fn wire_round_trip_and_column_rotation_direction() {
    let ctx = HeContext::new(&HePreset::small_test()).unwrap();
    let mut rng = rand::rng();
    let keys = ClientKeys::generate(&ctx, &[3], &mut rng).unwrap();
    let x: Vec<u64> = (0..ctx.slots() as u64).collect();
    let up = keys.encrypt_seeded(&ctx, &x, &mut rng).unwrap();
    let ct = wire::decode_seeded(&ctx, &wire::encode_seeded(&up)).unwrap();
    assert_eq!(ctx.decrypt(&keys.sk, &ct).unwrap(), x);
    let rot = keys.ek.as_ref().unwrap().rotates_columns_by(&ct, 3).unwrap();
    let got = ctx.decrypt(&keys.sk, &rot).unwrap();
    let half = ctx.slots() / 2;
    for i in 0..ctx.slots() {
        let (row, j) = (i / half, i % half);
        assert_eq!(got[i], x[row * half + (j + 3) % half], "slot {i}");
    }
    let bytes = wire::encode_full(&ctx, &rot, 0).unwrap();
    assert_eq!(bytes.len(), wire::full_len(&ctx, 0).unwrap());
    assert_eq!(ctx.decrypt(&keys.sk, &wire::decode_full(&ctx, 0, &bytes).unwrap()).unwrap(), got);
}

#[test]
fn wide_flooding_above_128_bits_is_sampled_correctly() {
    let ctx = HeContext::new(&HePreset::linear()).unwrap();
    let f = ctx.field();
    let mut rng = rand::rng();
    let keys = ClientKeys::generate(&ctx, &[], &mut rng).unwrap();
    let x = random_field(&ctx, ctx.slots());
    let v = 2f64.powi(81);
    let fb = flood_bits(&ctx, v);
    assert_eq!(fb, 81 + 40 + KEY_BUDGET_BITS + 13);
    let mut ct: Ciphertext = keys.sk.try_encrypt(&ctx.plaintext(&x, 0).unwrap(), &mut rng).unwrap();
    let share = mask_and_flood(&ctx, &keys.pk, &mut ct, v, &mut rng).unwrap();
    let flooded = unsafe { keys.sk.measure_noise(&ct).unwrap() } as u32;
    assert!(flooded == fb || flooded == fb + 1, "flooded noise {flooded} bits, intended {fb}");
    assert_eq!(f.reconstruct(&ctx.decrypt(&keys.sk, &ct).unwrap(), &share), x);
}

/// The per-key flooding (16 more bits than per-ciphertext flooding) still fits every
/// BERT-base linear layer at 128 tokens, in both packings, under the linear preset.
#[test]
fn per_key_flooding_fits_the_bert_base_linear_layers() {
    use fastlmpi::proto::linear::{LinearPlan, LinearShape, Packing};
    let ctx = HeContext::new(&HePreset::linear()).unwrap();
    for (d_in, d_out) in [(768, 768), (768, 3072), (3072, 768)] {
        for packing in [Packing::Bsgs, Packing::Rfcp] {
            let plan = LinearPlan::new(&ctx, LinearShape { n: 128, d_in, d_out }, packing);
            assert!(plan.is_ok(), "{d_in}x{d_out} {packing:?}: {:?}", plan.err());
        }
    }
}
