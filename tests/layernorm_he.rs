//! LayerNorm with the per-row rescaling as an HE product (the FASTLMPI profile's variant), run
//! by both parties over loopback TCP with the real OT session and real BFV keys: bit-equal to
//! the cleartext reference and within the documented bound of the exact LayerNorm, on rows of
//! moderate, tiny, huge and zero variance.

use fastlmpi::he::{client_setup, server_setup, HeContext, HePreset};
use fastlmpi::net::run_pair;
use fastlmpi::ot::OtSession;
use fastlmpi::proto::ctx::Party;
use fastlmpi::proto::hemul::HeParty;
use fastlmpi::proto::layernorm::{layer_norm, reference_layernorm, LayerNormSpec, LnParams};
use fastlmpi::share::{Ring, Role};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

fn rows_of_every_kind(d: usize) -> Vec<i64> {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let mut x: Vec<i64> = (0..d).map(|_| rng.random_range(-3 * 4096..3 * 4096)).collect();
    x.extend((0..d).map(|_| 5 * 4096 + rng.random_range(-80..80)));
    x.extend((0..d).map(|_| rng.random_range(-200 * 4096..200 * 4096)));
    let mut outlier = vec![100; d];
    outlier[9] = 90 * 4096;
    x.extend(outlier);
    x.extend(std::iter::repeat_n(777, d));
    x
}

#[test]
fn layernorm_with_he_rescaling_matches_reference() {
    let ring = Ring::new(40).unwrap();
    let spec = LayerNormSpec { he_product: true, ..LayerNormSpec::new(ring, 12, 1e-5) };
    let (rows, d) = (5, 16);
    let x = rows_of_every_kind(d);
    let gamma: Vec<f32> = (0..d).map(|j| 0.3 + 0.1 * j as f32).collect();
    let beta: Vec<f32> = (0..d).map(|j| 0.05 * j as f32 - 0.4).collect();
    let ctx = HeContext::new(&HePreset::simd(8192, 52)).unwrap();
    let enc: Vec<u64> = x.iter().map(|&v| ring.from_signed(v)).collect();
    let (xs, xc) = ring.share_vec(&enc, &mut ChaCha20Rng::seed_from_u64(3));
    let params = LnParams { gamma: &gamma, beta: &beta };
    let out = run_pair(
        |ch| {
            let keys = server_setup(ch, &ctx, &[])?;
            let mut ot = OtSession::setup(ch, Role::Server)?;
            let mut p = Party::new(Role::Server, ch, &mut ot);
            layer_norm(&mut p, Some(&HeParty::server(&ctx, &keys)), &spec, &xs, rows, d, Some(&params))
        },
        |ch| {
            let keys = client_setup(ch, &ctx, &[], &mut rand::rng())?;
            let mut ot = OtSession::setup(ch, Role::Client)?;
            let mut p = Party::new(Role::Client, ch, &mut ot);
            layer_norm(&mut p, Some(&HeParty::client(&ctx, &keys)), &spec, &xc, rows, d, None)
        },
    )
    .unwrap();
    let got: Vec<i64> = ring.reconstruct(&out.server, &out.client).iter().map(|&v| ring.to_signed(v)).collect();
    let lsb = 4096.0;
    for i in 0..rows {
        let row = &x[i * d..(i + 1) * d];
        let want = reference_layernorm(row, &gamma, &beta, spec.eps, &spec).unwrap();
        assert_eq!(&got[i * d..(i + 1) * d], &want[..], "row {i}");
        let xf: Vec<f64> = row.iter().map(|&v| v as f64 / lsb).collect();
        let mu = xf.iter().sum::<f64>() / d as f64;
        let var = xf.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / d as f64;
        for j in 0..d {
            let e = (xf[j] - mu) / (var + spec.eps).sqrt() * gamma[j] as f64 + beta[j] as f64;
            let g = got[i * d + j] as f64 / lsb;
            assert!((g - e).abs() <= 4.0 / lsb + e.abs() / 256.0, "row {i} elem {j}: {g} vs {e}");
        }
    }
}
