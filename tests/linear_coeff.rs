//! Two-party tests of the coefficient-packed linear layer over Z_2^40 (`proto::linear::coeff`)
//! against the cleartext ring product: exact equality after reconstruction, several weight
//! sets on one upload, weights that are ring shares, the noise bound the flooding is computed
//! from, and malformed traffic on both sides.

use fastlmpi::he::{client_setup, galois, server_setup, wire, HeContext, HePreset};
use fastlmpi::net::run_pair;
use fastlmpi::proto::linear::coeff::{client_recv, client_send, coeff_client, coeff_server, server_recv, Blocks, CoeffPlan, EncodedCoeff, MODEL_WEIGHT_BITS};
use fastlmpi::proto::linear::LinearShape;
use fastlmpi::share::Field;
use rand::Rng;

const RING_BITS: u32 = 40;

fn ctx() -> HeContext {
    HeContext::coefficient(&HePreset::coefficient(RING_BITS)).unwrap()
}

/// X·W + b mod 2^40 with X as ring elements and W, b signed.
fn reference(f: Field, shape: LinearShape, x: &[u64], w: &[i64], b: Option<&[i64]>) -> Vec<u64> {
    let mut y = vec![0u64; shape.n * shape.d_out];
    for r in 0..shape.n {
        for c in 0..shape.d_out {
            let mut acc = b.map_or(0, |b| f.from_signed(b[c]));
            for k in 0..shape.d_in {
                acc = f.add(acc, f.mul(x[r * shape.d_in + k], f.from_signed(w[k * shape.d_out + c])));
            }
            y[r * shape.d_out + c] = acc;
        }
    }
    y
}

fn random_weights(len: usize, bits: u32) -> Vec<i64> {
    let mut rng = rand::rng();
    let max = 1i64 << bits;
    (0..len).map(|_| rng.random_range(-max..=max)).collect()
}

/// Run `sets` weight sets on one shared input; returns the reconstructed outputs.
fn run_sets(ctx: &HeContext, plan: &CoeffPlan, x: &[u64], ws: &[Vec<i64>], bs: &[Vec<i64>], cache: usize) -> Vec<Vec<u64>> {
    let f = ctx.field();
    let mut rng = rand::rng();
    let (x_c, x_s) = f.share_vec(x, &mut rng);
    let encs: Vec<EncodedCoeff> = ws.iter().zip(bs).map(|(w, b)| EncodedCoeff::new(ctx, plan.clone(), w, Some(b), cache).unwrap()).collect();
    let out = run_pair(
        |ch| {
            let keys = server_setup(ch, ctx, &[])?;
            let refs: Vec<&EncodedCoeff> = encs.iter().collect();
            coeff_server(ch, ctx, &keys, &refs, Some(&x_s))
        },
        |ch| {
            let keys = client_setup(ch, ctx, &[], &mut rand::rng())?;
            coeff_client(ch, ctx, &keys, plan, ws.len(), &x_c, &mut rand::rng())
        },
    )
    .unwrap();
    out.server.iter().zip(&out.client).map(|(s, c)| f.reconstruct(s, c)).collect()
}

#[test]
fn coefficient_layer_is_exact_mod_2_40_on_odd_shapes() {
    let ctx = ctx();
    let f = ctx.field();
    let mut rng = rand::rng();
    for (shape, blocks) in [
        (LinearShape { n: 3, d_in: 10, d_out: 7 }, None),
        // Blocks that fill the ring exactly (negacyclic wrap) and leave partial edge blocks.
        (LinearShape { n: 5, d_in: 70, d_out: 33 }, Some(Blocks { n_w: 4, k_w: 32, m_w: 64 })),
    ] {
        let plan = match blocks {
            Some(b) => CoeffPlan::with_blocks(&ctx, shape, b, MODEL_WEIGHT_BITS).unwrap(),
            None => CoeffPlan::new(&ctx, shape, MODEL_WEIGHT_BITS).unwrap(),
        };
        let x: Vec<u64> = (0..shape.n * shape.d_in).map(|_| f.random(&mut rng)).collect();
        let w = random_weights(shape.d_in * shape.d_out, MODEL_WEIGHT_BITS);
        let b = random_weights(shape.d_out, 39);
        let got = run_sets(&ctx, &plan, &x, std::slice::from_ref(&w), std::slice::from_ref(&b), usize::MAX);
        assert_eq!(got[0], reference(f, shape, &x, &w, Some(&b)), "{}", plan.describe());
    }
}

/// Packed returns ([`fastlmpi::he::galois`]) give the same exact products as one ciphertext per
/// result, for every pack width up to the largest k_w allows — including widths below k_w
/// (the member's other coefficients of its class ride along, masked) and a last group with
/// fewer members than the width — and fewer result bytes.
#[test]
fn packed_results_are_exact_for_every_pack_width_and_partial_groups() {
    let ctx = ctx();
    let f = ctx.field();
    let mut rng = rand::rng();
    // 9 rows in blocks of 2 (5 row blocks) × 40 outputs in blocks of 8 (5 column blocks):
    // 25 results, so every width leaves a partial last group; k_w = 12 allows widths 1, 2, 4.
    let shape = LinearShape { n: 9, d_in: 30, d_out: 40 };
    let blocks = Blocks { n_w: 2, k_w: 12, m_w: 8 };
    let x: Vec<u64> = (0..shape.n * shape.d_in).map(|_| f.random(&mut rng)).collect();
    let w = random_weights(shape.d_in * shape.d_out, MODEL_WEIGHT_BITS);
    let b = random_weights(shape.d_out, 39);
    let want = reference(f, shape, &x, &w, Some(&b));
    let mut downloads = Vec::new();
    for bits in 0..=2 {
        let plan = CoeffPlan::with_packing(&ctx, shape, blocks, bits, MODEL_WEIGHT_BITS).unwrap();
        assert_eq!(plan.results(), 25);
        assert_eq!(plan.outputs(), 25usize.div_ceil(1 << bits));
        let got = run_sets(&ctx, &plan, &x, std::slice::from_ref(&w), std::slice::from_ref(&b), usize::MAX);
        assert_eq!(got[0], want, "{}", plan.describe());
        downloads.push(plan.download_bytes(&ctx).unwrap());
    }
    assert!(downloads[2] < downloads[1] && downloads[1] < downloads[0], "{downloads:?}");
    // 8 does not divide k_w = 12: refused.
    assert!(CoeffPlan::with_packing(&ctx, shape, blocks, 3, MODEL_WEIGHT_BITS).is_err());
}

#[test]
fn three_weight_sets_share_one_upload_cached_or_not() {
    let ctx = ctx();
    let f = ctx.field();
    let mut rng = rand::rng();
    let shape = LinearShape { n: 6, d_in: 24, d_out: 20 };
    let plan = CoeffPlan::new(&ctx, shape, MODEL_WEIGHT_BITS).unwrap();
    let x: Vec<u64> = (0..shape.n * shape.d_in).map(|_| f.random(&mut rng)).collect();
    let ws: Vec<Vec<i64>> = (0..3).map(|_| random_weights(shape.d_in * shape.d_out, 12)).collect();
    let bs: Vec<Vec<i64>> = (0..3).map(|_| random_weights(shape.d_out, 30)).collect();
    for cache in [0, usize::MAX] {
        let got = run_sets(&ctx, &plan, &x, &ws, &bs, cache);
        for i in 0..3 {
            assert_eq!(got[i], reference(f, shape, &x, &ws[i], Some(&bs[i])), "set {i}, cache {cache}");
        }
    }
}

#[test]
fn ring_share_weights_without_a_server_input_share() {
    // The attention cross term X_c·W_s: W is a uniform ring share (centred, |w| ≤ 2^39).
    let ctx = ctx();
    let f = ctx.field();
    let mut rng = rand::rng();
    let shape = LinearShape { n: 8, d_in: 64, d_out: 8 };
    let plan = CoeffPlan::new(&ctx, shape, RING_BITS - 1).unwrap();
    let x_c: Vec<u64> = (0..shape.n * shape.d_in).map(|_| f.random(&mut rng)).collect();
    let w: Vec<u64> = (0..shape.d_in * shape.d_out).map(|_| f.random(&mut rng)).collect();
    let enc = EncodedCoeff::from_ring(&ctx, plan.clone(), &w, 0).unwrap();
    let out = run_pair(
        |ch| {
            let keys = server_setup(ch, &ctx, &[])?;
            coeff_server(ch, &ctx, &keys, &[&enc], None)
        },
        |ch| {
            let keys = client_setup(ch, &ctx, &[], &mut rand::rng())?;
            coeff_client(ch, &ctx, &keys, &plan, 1, &x_c, &mut rand::rng())
        },
    )
    .unwrap();
    let signed: Vec<i64> = w.iter().map(|&v| f.to_signed(v)).collect();
    assert_eq!(f.reconstruct(&out.server[0], &out.client[0]), reference(f, shape, &x_c, &signed, None));
}

#[test]
fn weights_above_the_public_bound_are_refused() {
    let ctx = ctx();
    let shape = LinearShape { n: 2, d_in: 3, d_out: 2 };
    let plan = CoeffPlan::new(&ctx, shape, 10).unwrap();
    let mut w = vec![0i64; 6];
    w[4] = 1 << 11;
    assert!(EncodedCoeff::new(&ctx, plan.clone(), &w, None, 0).is_err());
    assert!(EncodedCoeff::new(&ctx, plan, &[0; 5], None, 0).is_err(), "wrong weight count");
}

/// The decrypted noise of a result before flooding stays below the bound flooding is sized
/// from, with every weight at the bound (the worst case; the noise does not depend on X).
#[test]
fn result_noise_stays_below_the_flooding_bound() {
    let ctx = ctx();
    let f = ctx.field();
    let mut rng = rand::rng();
    let shape = LinearShape { n: 4, d_in: 768, d_out: 16 };
    let plan = CoeffPlan::new(&ctx, shape, MODEL_WEIGHT_BITS).unwrap();
    let max = 1i64 << MODEL_WEIGHT_BITS;
    let w: Vec<i64> = (0..shape.d_in * shape.d_out).map(|i| if i % 3 == 0 { -max } else { max }).collect();
    let enc = EncodedCoeff::new(&ctx, plan.clone(), &w, None, 0).unwrap();
    // Worst-case input: every share coefficient at t − 1.
    let x_c = vec![f.modulus() - 1; shape.n * shape.d_in];
    let keys = fastlmpi::he::ClientKeys::generate(&ctx, &[], &mut rng).unwrap();
    let seeded: Vec<_> = (0..plan.uploads())
        .map(|i| {
            let coeffs = upload_coeffs_for_test(&plan, &x_c, i, ctx.degree());
            keys.encrypt_seeded(&ctx, &coeffs, &mut rng).unwrap()
        })
        .collect();
    let ups: Vec<_> = seeded.iter().map(|s| wire::decode_seeded(&ctx, &wire::encode_seeded(s)).unwrap()).collect();
    let bound_bits = plan.noise_bound.log2();
    assert!(plan.pack_bits > 0, "{}", plan.describe());
    let packing = galois::PackingKeys::decode(&ctx, &galois::generate_keys(&ctx, &keys.sk, &mut rng).unwrap()).unwrap();
    for k in 0..plan.outputs() {
        let ct = enc.returned(&ctx, Some(&packing), |o| enc.raw_output(&ctx, &ups, o).unwrap(), k).unwrap();
        let noise = unsafe { keys.sk.measure_noise(&ct) }.unwrap() as f64;
        assert!(noise <= bound_bits, "packed noise 2^{noise} above the bound 2^{bound_bits:.1}");
    }
    for o in 0..plan.results() {
        let ct = enc.raw_output(&ctx, &ups, o).unwrap();
        let noise = unsafe { keys.sk.measure_noise(&ct) }.unwrap() as f64;
        assert!(noise <= bound_bits, "noise 2^{noise} above the bound 2^{bound_bits:.1}");
    }
}

/// The plan's upload layout (x̂ = Σ X[i,j]·X^(i·k_w·m_w + j)), restated for the noise test.
fn upload_coeffs_for_test(plan: &CoeffPlan, x: &[u64], idx: usize, degree: usize) -> Vec<u64> {
    let Blocks { n_w, k_w, m_w } = plan.blocks;
    let LinearShape { n, d_in, .. } = plan.shape;
    let kb = d_in.div_ceil(k_w);
    let (r, a) = (idx / kb, idx % kb);
    let mut c = vec![0u64; degree];
    for i in 0..n_w.min(n - r * n_w) {
        for j in 0..k_w.min(d_in - a * k_w) {
            c[i * k_w * m_w + j] = x[(r * n_w + i) * d_in + a * k_w + j];
        }
    }
    c
}

#[test]
fn a_truncated_upload_is_an_error_on_the_server() {
    let ctx = ctx();
    let shape = LinearShape { n: 4, d_in: 16, d_out: 4 };
    let plan = CoeffPlan::new(&ctx, shape, MODEL_WEIGHT_BITS).unwrap();
    let full = plan.upload_bytes(&ctx).unwrap();
    let out = run_pair(
        |ch| {
            let _keys = server_setup(ch, &ctx, &[])?;
            Ok(server_recv(ch, &ctx, &plan).map(|_| ()))
        },
        |ch| {
            let _keys = client_setup(ch, &ctx, &[], &mut rand::rng())?;
            ch.send_u64(0)?;
            ch.send_u64(full as u64)?;
            ch.send_bytes(&vec![0u8; full / 2])?;
            ch.flush()?;
            Ok(())
        },
    );
    let server = out.map(|o| o.server);
    assert!(matches!(server, Ok(Err(_)) | Err(_)), "a truncated upload must fail");
}

#[test]
fn an_upload_with_out_of_range_coefficients_is_an_error() {
    let ctx = ctx();
    let shape = LinearShape { n: 2, d_in: 8, d_out: 4 };
    let plan = CoeffPlan::new(&ctx, shape, MODEL_WEIGHT_BITS).unwrap();
    let full = plan.upload_bytes(&ctx).unwrap();
    let out = run_pair(
        |ch| {
            let _keys = server_setup(ch, &ctx, &[])?;
            Ok(server_recv(ch, &ctx, &plan).map(|_| ()))
        },
        |ch| {
            let _keys = client_setup(ch, &ctx, &[], &mut rand::rng())?;
            // All-ones bytes: every packed residue is 2^bits − 1 ≥ q_i.
            ch.send_u64(0)?;
            ch.send_u64(full as u64)?;
            ch.send_bytes(&vec![0xffu8; full])?;
            ch.flush()?;
            Ok(())
        },
    )
    .unwrap();
    assert!(out.server.is_err());
}

#[test]
fn a_result_of_the_wrong_size_or_level_is_an_error_on_the_client() {
    let ctx = ctx();
    let shape = LinearShape { n: 2, d_in: 8, d_out: 4 };
    let plan = CoeffPlan::new(&ctx, shape, MODEL_WEIGHT_BITS).unwrap();
    let x_c = vec![1u64; shape.n * shape.d_in];
    let right = plan.download_bytes(&ctx).unwrap();
    // (announced level, announced size, bytes actually sent)
    let top_level = wire::full_len(&ctx, 0).unwrap() * plan.outputs();
    for (level, size, sent) in [(0, top_level, top_level), (plan.return_level, right - 1, right - 1), (plan.return_level, right, right / 2)] {
        let out = run_pair(
            |ch| {
                let _keys = server_setup(ch, &ctx, &[])?;
                server_recv(ch, &ctx, &plan)?;
                ch.send_u64(level as u64)?;
                ch.send_u64(size as u64)?;
                ch.send_bytes(&vec![0u8; sent])?;
                ch.flush()?;
                Ok(())
            },
            |ch| {
                let keys = client_setup(ch, &ctx, &[], &mut rand::rng())?;
                client_send(ch, &ctx, &keys, &plan, &x_c)?;
                Ok(client_recv(ch, &ctx, &keys, &plan).map(|_| ()))
            },
        );
        let client = out.map(|o| o.client);
        assert!(matches!(client, Ok(Err(_)) | Err(_)), "level {level}, {size} bytes announced, {sent} sent: must fail");
    }
}

/// The flooding (40 bits over a key's whole return budget) fits the coefficient preset for every
/// linear layer and attention cross term of BERT-base and BERT-large up to 512 tokens.
#[test]
fn every_bert_shape_up_to_512_tokens_plans() {
    let ctx = ctx();
    let share_bits = RING_BITS - 1;
    // (hidden, FFN, head dim): BERT-base and BERT-large.
    for (h, i, d) in [(768, 3072, 64), (1024, 4096, 64)] {
        for n in [1, 8, 16, 32, 64, 128, 256, 512] {
            for (a, k, b) in [(n, h, h), (n, h, i), (n, i, h)] {
                let plan = CoeffPlan::new(&ctx, LinearShape { n: a, d_in: k, d_out: b }, MODEL_WEIGHT_BITS);
                assert!(plan.is_ok(), "linear {a}×{k}·{k}×{b}: {:?}", plan.err());
            }
            for (a, k, b) in [(n, d, n), (n, n, d), (d, n, n)] {
                let plan = CoeffPlan::new(&ctx, LinearShape { n: a, d_in: k, d_out: b }, share_bits);
                assert!(plan.is_ok(), "cross term {a}×{k}·{k}×{b}: {:?}", plan.err());
            }
        }
    }
}
