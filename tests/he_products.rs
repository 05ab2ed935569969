//! The FASTLMPI profile's HE-product variants of LayerNorm (per-row rescaling) and SoftMax
//! (Horner products and the final normalisation), run by both parties over loopback TCP with
//! the real OT session and real BFV keys: bit-equal to the cleartext references (which are the
//! same as for the OT variants) and within the documented bounds of the exact functions.

use fastlmpi::he::{client_setup, server_setup, HeContext, HePreset};
use fastlmpi::net::{run_pair, CommStats};
use fastlmpi::ot::OtSession;
use fastlmpi::proto::ctx::Party;
use fastlmpi::proto::linear::hemul::HeParty;
use fastlmpi::proto::nonlinear::layernorm::{layer_norm, reference_layernorm, reference_layernorm_carried, LayerNormSpec, LnCarries, LnParams};
use fastlmpi::proto::nonlinear::softmax::{reference_softmax, reference_softmax_carried, softmax, SoftmaxCarries, SoftmaxSpec};
use fastlmpi::proto::toolkit::trunc::{trace, TruncMode};
use fastlmpi::Result;
use fastlmpi::share::{Ring, Role};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// Both parties with real keys and OT; returns the opened output.
fn two_party(ring: Ring, x: &[i64], f: impl Fn(&mut Party, &HeParty, &[u64]) -> Result<Vec<u64>> + Sync) -> Vec<i64> {
    two_party_traced(ring, x, f).0
}

/// [`two_party`] with both parties tracing their approximate truncations: the opened output,
/// the server's traffic during `f` (both directions, flights), and the carries each
/// approximate truncation call dropped (none for faithful protocols).
fn two_party_traced(ring: Ring, x: &[i64], f: impl Fn(&mut Party, &HeParty, &[u64]) -> Result<Vec<u64>> + Sync) -> (Vec<i64>, CommStats, Vec<Vec<u8>>) {
    let ctx = HeContext::new(&HePreset::simd(8192, 52)).unwrap();
    let enc: Vec<u64> = x.iter().map(|&v| ring.from_signed(v)).collect();
    let (xs, xc) = ring.share_vec(&enc, &mut ChaCha20Rng::seed_from_u64(3));
    let out = run_pair(
        |ch| {
            let keys = server_setup(ch, &ctx, &[])?;
            let mut ot = OtSession::setup(ch, Role::Server)?;
            let mut p = Party::new(Role::Server, ch, &mut ot);
            let before = p.stats();
            trace::start();
            let out = f(&mut p, &HeParty::server(&ctx, &keys), &xs);
            let low = trace::finish();
            Ok((out?, p.stats().since(&before), low))
        },
        |ch| {
            let keys = client_setup(ch, &ctx, &[], &mut rand::rng())?;
            let mut ot = OtSession::setup(ch, Role::Client)?;
            let mut p = Party::new(Role::Client, ch, &mut ot);
            trace::start();
            let out = f(&mut p, &HeParty::client(&ctx, &keys), &xc);
            let low = trace::finish();
            Ok((out?, low))
        },
    )
    .unwrap();
    let opened = ring.reconstruct(&out.server.0, &out.client.0).iter().map(|&v| ring.to_signed(v)).collect();
    let carries = trace::carries(&out.server.2, &out.client.1).unwrap();
    (opened, out.server.1, carries)
}

fn count_ones(c: &[u8]) -> usize {
    c.iter().filter(|&&v| v == 1).count()
}

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
    let params = LnParams { gamma: &gamma, beta: &beta };
    let got = two_party(ring, &x, |p, he, own| layer_norm(p, Some(he), &spec, own, rows, d, p.is_server().then_some(&params)));
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

#[test]
fn softmax_with_he_products_matches_reference() {
    let ring = Ring::new(40).unwrap();
    let spec = SoftmaxSpec { he_products: true, ..SoftmaxSpec::new(ring, 12).unwrap() };
    let (rows, cols) = (4, 16);
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    // The domain's edge under approximate selection: |x| < 2^score_bits − 2^f.
    let lim = (1i64 << spec.score_bits) - (1 << spec.frac) - 1;
    let mut scores: Vec<i64> = (0..2 * cols).map(|_| rng.random_range(-8 * 4096..8 * 4096)).collect();
    let mut huge = vec![-lim; cols];
    huge[7] = lim;
    scores.extend(huge);
    scores.extend((0..cols as i64).map(|j| -j * 2800));
    let mask: Vec<u32> = (0..rows * cols).map(|k| (k % cols != 3) as u32).collect();
    let got = two_party(ring, &scores, |p, he, own| softmax(p, Some(he), &spec, own, rows, cols, &mask));
    let lsb = 4096.0;
    for i in 0..rows {
        let row = &scores[i * cols..(i + 1) * cols];
        let m = &mask[i * cols..(i + 1) * cols];
        assert_eq!(&got[i * cols..(i + 1) * cols], &reference_softmax(row, m, &spec).unwrap()[..], "row {i}");
        let max = row.iter().zip(m).filter(|(_, &k)| k != 0).map(|(&v, _)| v).max().unwrap() as f64 / lsb;
        let e: Vec<f64> = row.iter().zip(m).map(|(&v, &k)| if k != 0 { (v as f64 / lsb - max).exp() } else { 0.0 }).collect();
        let sum: f64 = e.iter().sum();
        for j in 0..cols {
            assert!((got[i * cols + j] as f64 / lsb - e[j] / sum).abs() <= 4.0 / lsb, "row {i} key {j}");
        }
    }
}

/// Rows of 128 keys (BERT's attention rows) with mpnet-base-like scores (|score| ≤ 28 measured)
/// plus a row at the domain edges: bit-equal to the reference, and the exact traffic per score
/// (both directions, real IKNP OT) stays below the figure stated in `softmax`'s header.
#[test]
fn softmax_bert_rows_bytes_per_score() {
    let ring = Ring::new(40).unwrap();
    let spec = SoftmaxSpec { he_products: true, ..SoftmaxSpec::new(ring, 12).unwrap() };
    // 64 rows fill one ciphertext (N = 8192 slots), as BERT's 12 × 128 × 128 scores do.
    let (rows, cols) = (64, 128);
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let lim = (1i64 << spec.score_bits) - 1;
    let mut scores: Vec<i64> = (0..(rows - 1) * cols).map(|_| rng.random_range(-28 * 4096..28 * 4096)).collect();
    // Domain edges and every knot of the exp (z = −j units and one below) in the last row.
    scores.extend((0..cols as i64).map(|j| match j {
        0 => lim,
        1 => -lim,
        j if j % 2 == 0 => lim - (j / 2) * 4096,
        j => lim - (j / 2) * 4096 - 1,
    }));
    let mask = vec![1u32; cols];
    let (got, stats, _) = two_party_traced(ring, &scores, |p, he, own| softmax(p, Some(he), &spec, own, rows, cols, &mask));
    for i in 0..rows {
        let row = &scores[i * cols..(i + 1) * cols];
        assert_eq!(&got[i * cols..(i + 1) * cols], &reference_softmax(row, &mask, &spec).unwrap()[..], "row {i}");
    }
    let per = stats.total_bytes() as f64 / (rows * cols) as f64;
    eprintln!("softmax {rows}x{cols}: {per:.0} B per score, {} flights", stats.rounds);
    // 5 840 B and 248 flights measured with the coarse exp comparison (≈ 7 600 B before).
    assert!(per < 6_000.0, "{per:.0} B per score");
    assert!(stats.rounds <= 260, "{} flights", stats.rounds);
}

/// Approximate truncations in LayerNorm (the rescaling by `R − Z` and the γ product by
/// `G + Z − f`): the private output equals the reference given the two calls' carries, bit for
/// bit, and stays within one more unit of the exact LayerNorm than the faithful bound; the
/// run needs fewer bytes and flights than the faithful one.
#[test]
fn layernorm_with_approximate_truncations_matches_its_carries() {
    let ring = Ring::new(40).unwrap();
    let faithful = LayerNormSpec { he_product: true, ..LayerNormSpec::new(ring, 12, 1e-5) };
    let spec = LayerNormSpec { trunc: TruncMode::Approx, ..faithful };
    let (rows, d) = (5, 16);
    let x = rows_of_every_kind(d);
    let gamma: Vec<f32> = (0..d).map(|j| 0.3 + 0.1 * j as f32).collect();
    let beta: Vec<f32> = (0..d).map(|j| 0.05 * j as f32 - 0.4).collect();
    let params = LnParams { gamma: &gamma, beta: &beta };
    let run = |spec: LayerNormSpec| two_party_traced(ring, &x, |p, he, own| layer_norm(p, Some(he), &spec, own, rows, d, p.is_server().then_some(&params)));
    let (got, stats, calls) = run(spec);
    let (_, faithful_stats, none) = run(faithful);
    assert!(none.is_empty(), "a faithful LayerNorm traced {} approximate truncations", none.len());
    assert_eq!(calls.len(), 2, "the rescaling's and the γ product's truncations");
    assert!(calls.iter().all(|c| c.len() == rows * d));
    assert!(calls.iter().all(|c| count_ones(c) > 0 && count_ones(c) < rows * d), "carries of one value only: the test would not see a dropped or a kept carry");
    let lsb = 4096.0;
    for i in 0..rows {
        let row = &x[i * d..(i + 1) * d];
        let cut = |c: &[u8]| c[i * d..(i + 1) * d].to_vec();
        let (z, out) = (cut(&calls[0]), cut(&calls[1]));
        let want = reference_layernorm_carried(row, &gamma, &beta, spec.eps, &spec, LnCarries { z: &z, out: &out }).unwrap();
        assert_eq!(&got[i * d..(i + 1) * d], &want[..], "row {i}");
        let floor = reference_layernorm(row, &gamma, &beta, spec.eps, &faithful).unwrap();
        let xf: Vec<f64> = row.iter().map(|&v| v as f64 / lsb).collect();
        let mu = xf.iter().sum::<f64>() / d as f64;
        let var = xf.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / d as f64;
        for j in 0..d {
            // Each dropped carry costs at most one unit of its own result; z's unit (2^−Z) is
            // below an output unit after the γ product, so the output moves by at most 2.
            assert!((got[i * d + j] - floor[j]).abs() <= 2, "row {i} elem {j}: {} vs faithful {}", got[i * d + j], floor[j]);
            let e = (xf[j] - mu) / (var + spec.eps).sqrt() * gamma[j] as f64 + beta[j] as f64;
            let g = got[i * d + j] as f64 / lsb;
            assert!((g - e).abs() <= 6.0 / lsb + e.abs() / 256.0, "row {i} elem {j}: {g} vs {e}");
        }
    }
    println!(
        "layernorm {rows}x{d}: {} B and {} flights approximate, {} B and {} flights faithful",
        stats.total_bytes(),
        stats.rounds,
        faithful_stats.total_bytes(),
        faithful_stats.rounds
    );
    assert!(stats.total_bytes() < faithful_stats.total_bytes() && stats.rounds < faithful_stats.rounds);
}

/// SoftMax with approximate truncations (the exp's three Horner steps, ⌊·⌋ − c at f + guard
/// bits, and its last truncation and the normalisation's, each rounding stochastically:
/// ⌊v⌋ + 1 − c): bit-equal to the reference given the carries, exact zeros below the exp's
/// tail, and within the stated bound of the exact softmax: |out − p| ≤ (6 + 2n·p)·2^−f for n
/// unmasked keys (the Horner carries move v by less than 3·2^−guard units, so each e_j moves
/// by less than two units and the row sum by less than 2n).
#[test]
fn softmax_with_approximate_truncations_matches_its_carries() {
    let ring = Ring::new(40).unwrap();
    let faithful = SoftmaxSpec { he_products: true, ..SoftmaxSpec::new(ring, 12).unwrap() };
    let spec = SoftmaxSpec { trunc: TruncMode::Approx, ..faithful };
    let (rows, cols) = (7, 16);
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    // The domain's edge under approximate selection: |x| < 2^score_bits − 2^f.
    let lim = (1i64 << spec.score_bits) - (1 << spec.frac) - 1;
    let mut scores: Vec<i64> = (0..2 * cols).map(|_| rng.random_range(-8 * 4096..8 * 4096)).collect();
    let mut huge = vec![-lim; cols];
    huge[7] = lim;
    scores.extend(huge);
    scores.extend((0..cols as i64).map(|j| -j * 2800));
    // A row whose scores sit on the exp's knots (whole units below the maximum) and one below.
    scores.extend((0..cols as i64).map(|j| -(j / 2) * 4096 - (j % 2)));
    scores.extend((0..cols as i64).map(|j| 3 * 4096 - j * 9000));
    // Near-ties within the max tree's ignored low bits (2^10 units for 16 keys).
    scores.extend((0..cols as i64).map(|j| 5 * 4096 + (j * 377) % 1000));
    let mask: Vec<u32> = (0..rows * cols).map(|k| (k % cols != 3 || k / cols == 4) as u32).collect();
    let run = |spec: SoftmaxSpec| two_party_traced(ring, &scores, |p, he, own| softmax(p, Some(he), &spec, own, rows, cols, &mask));
    let (got, stats, calls) = run(spec);
    let (_, faithful_stats, none) = run(faithful);
    assert!(none.is_empty());
    let active: usize = mask.iter().filter(|&&m| m != 0).count();
    assert_eq!(calls.len(), 7, "the max tree, the exp's segment floor, three Horner steps and last truncation, the normalisation");
    assert!(calls.iter().all(|c| c.len() == active));
    assert!(calls.iter().all(|c| count_ones(c) > 0 && count_ones(c) < active));
    let lsb = 4096.0;
    let mut at = 0;
    for i in 0..rows {
        let row = &scores[i * cols..(i + 1) * cols];
        let m = &mask[i * cols..(i + 1) * cols];
        let n = m.iter().filter(|&&k| k != 0).count();
        let cut = |c: &Vec<u8>| c[at..at + n].to_vec();
        let [max, knot, h1, h2, h3, exp, out] = [0, 1, 2, 3, 4, 5, 6].map(|k| cut(&calls[k]));
        let carries = SoftmaxCarries { max: &max, knot: &knot, horner: [&h1, &h2, &h3], exp: &exp, out: &out };
        at += n;
        assert_eq!(&got[i * cols..(i + 1) * cols], &reference_softmax_carried(row, m, &spec, carries).unwrap()[..], "row {i}");
        let max = row.iter().zip(m).filter(|(_, &k)| k != 0).map(|(&v, _)| v).max().unwrap() as f64 / lsb;
        let e: Vec<f64> = row.iter().zip(m).map(|(&v, &k)| if k != 0 { (v as f64 / lsb - max).exp() } else { 0.0 }).collect();
        let sum: f64 = e.iter().sum();
        for j in 0..cols {
            let p = e[j] / sum;
            let bound = (6.0 + 2.0 * n as f64 * p) / lsb;
            assert!((got[i * cols + j] as f64 / lsb - p).abs() <= bound, "row {i} key {j}: {} vs {p}", got[i * cols + j] as f64 / lsb);
            // Far below the maximum (the exp's tail) the output stays exactly 0, as do masked keys.
            if m[j] == 0 || row[j] as f64 / lsb - max < -12.0 {
                assert_eq!(got[i * cols + j], 0, "row {i} key {j}");
            }
        }
    }
    println!(
        "softmax {rows}x{cols}: {} B and {} flights approximate, {} B and {} flights faithful",
        stats.total_bytes(),
        stats.rounds,
        faithful_stats.total_bytes(),
        faithful_stats.rounds
    );
    assert!(stats.total_bytes() < faithful_stats.total_bytes() && stats.rounds < faithful_stats.rounds);
}
