//! Two-party tests of the `bolt` profile's protocols (`proto::bolt` GeLU and tanh, SoftMax with
//! I-BERT's exp) with the real OT session over loopback TCP: reconstructed outputs equal the
//! cleartext references bit for bit, and the exact functions within the documented bounds.

use fastlmpi::net::{run_pair, CommStats};
use fastlmpi::ot::OtSession;
use fastlmpi::proto::bolt::{bolt_activation, reference, BoltSpec};
use fastlmpi::proto::ctx::Party;
use fastlmpi::proto::nonlinear::softmax::{reference_softmax, softmax, SoftmaxSpec};
use fastlmpi::share::{Ring, Role};
use fastlmpi::Result;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

const FRAC: u32 = 12;

fn ring() -> Ring {
    Ring::new(37).unwrap()
}

/// Runs `f` on both parties' shares of `vals`; returns the opened output and the server's traffic.
fn two_party(vals: &[i64], f: impl Fn(&mut Party, &[u64]) -> Result<Vec<u64>> + Sync) -> (Vec<i64>, CommStats) {
    let ring = ring();
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let enc: Vec<u64> = vals.iter().map(|&v| ring.from_signed(v)).collect();
    let (xs, xc) = ring.share_vec(&enc, &mut rng);
    let side = |ch: &mut dyn fastlmpi::net::Channel, role: Role, own: &[u64]| -> Result<(Vec<u64>, CommStats)> {
        let mut ot = OtSession::setup(ch, role)?;
        let mut p = Party::new(role, ch, &mut ot);
        let before = p.stats();
        let out = f(&mut p, own)?;
        Ok((out, p.stats().since(&before)))
    };
    let out = run_pair(|ch| side(ch, Role::Server, &xs), |ch| side(ch, Role::Client, &xc)).unwrap();
    let opened = ring.reconstruct(&out.server.0, &out.client.0).iter().map(|&v| ring.to_signed(v)).collect();
    (opened, out.server.1)
}

/// Inputs across the central interval, its edges and far outside it.
fn activation_inputs(cut: i64) -> Vec<i64> {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let mut xs: Vec<i64> = (0..400).map(|_| rng.random_range(-5 * 4096..5 * 4096)).collect();
    xs.extend([0, 1, -1, cut - 1, cut, cut + 1, -cut + 1, -cut, -cut - 1, 200 * 4096, -200 * 4096, (1 << 33) - 1, -(1 << 33)]);
    xs
}

fn check_activation(spec: &BoltSpec, exact: impl Fn(f64) -> f64, tolerance: f64) {
    let xs = activation_inputs(spec.cut);
    let (got, stats) = two_party(&xs, |p, x| bolt_activation(p, spec, x));
    assert_eq!(got, reference(spec, &xs).unwrap(), "{:?}: protocol differs from its reference", spec.function);
    let lsb = (FRAC as f64).exp2();
    for (&x, &g) in xs.iter().zip(&got) {
        let want = exact(x as f64 / lsb);
        assert!((g as f64 / lsb - want).abs() <= tolerance, "{:?}({}) = {} vs {want}", spec.function, x as f64 / lsb, g as f64 / lsb);
    }
    eprintln!("{:?}: {} elements, {} B sent by the server, {} rounds", spec.function, xs.len(), stats.bytes_sent, stats.rounds);
}

#[test]
fn bolt_gelu_matches_reference_and_gelu() {
    let spec = BoltSpec::gelu(ring(), FRAC).unwrap();
    check_activation(&spec, |x| 0.5 * x * (1.0 + fastlmpi::model::erf(x / std::f64::consts::SQRT_2)), 9.4e-3 + 4.0 / 4096.0);
}

#[test]
fn bolt_tanh_matches_reference_and_tanh() {
    let spec = BoltSpec::tanh(ring(), FRAC).unwrap();
    check_activation(&spec, f64::tanh, 7e-3 + 8.0 / 4096.0);
}

#[test]
fn ibert_softmax_matches_reference_and_softmax() {
    let spec = SoftmaxSpec::ibert(ring(), FRAC).unwrap();
    let (rows, cols) = (4, 16);
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let mut scores: Vec<i64> = (0..2 * cols).map(|_| rng.random_range(-8 * 4096..8 * 4096)).collect();
    scores.extend(std::iter::repeat_n(-777, cols));
    scores.extend((0..cols as i64).map(|j| -j * 2900));
    let mask: Vec<u32> = (0..cols).map(|j| (j != 3) as u32).collect();
    let (got, _) = two_party(&scores, |p, x| softmax(p, None, &spec, x, rows, cols, &mask));
    let lsb = (FRAC as f64).exp2();
    for i in 0..rows {
        let row = &scores[i * cols..(i + 1) * cols];
        assert_eq!(&got[i * cols..(i + 1) * cols], &reference_softmax(row, &mask, &spec).unwrap()[..], "row {i}");
        let max = row.iter().zip(&mask).filter(|(_, &m)| m != 0).map(|(&v, _)| v).max().unwrap() as f64 / lsb;
        let e: Vec<f64> = row.iter().zip(&mask).map(|(&v, &m)| if m != 0 { (v as f64 / lsb - max).exp() } else { 0.0 }).collect();
        let sum: f64 = e.iter().sum();
        for j in 0..cols {
            // I-BERT's exp is within 0.5 % of e^p; the ratio keeps that relative error.
            let want = e[j] / sum;
            assert!((got[i * cols + j] as f64 / lsb - want).abs() <= 0.01 * want + 4.0 / lsb, "row {i} key {j}");
        }
    }
}
