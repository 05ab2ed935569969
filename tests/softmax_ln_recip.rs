//! Two-party tests of `proto::nonlinear::recip`, `proto::nonlinear::softmax` and `proto::nonlinear::layernorm`: both parties run
//! over loopback TCP (`net::run_pair`); outputs are reconstructed and compared bit-for-bit with
//! the modules' cleartext references, and with the exact f64 functions within the stated
//! tolerances. OT: an ideal (insecure) stand-in defined below until the OT layer lands.

use fastlmpi::net::{run_pair, Channel, CommStats};
use fastlmpi::ot::Ot;
use fastlmpi::proto::ctx::{OtCall, OtKind, Party};
use fastlmpi::proto::nonlinear::layernorm::{layer_norm, reference_layernorm, LayerNormSpec, LnParams};
use fastlmpi::proto::nonlinear::recip::{self, reciprocal, RecipKind, RecipSpec};
use fastlmpi::proto::nonlinear::softmax::{reference_softmax, softmax, SoftmaxSpec};
use fastlmpi::share::{Ring, Role};
use fastlmpi::Result;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

mod ideal {
    //! Test-only OT stand-in: the sender sends every message in the clear.
    use super::*;
    pub struct IdealOt {
        rng: ChaCha20Rng,
    }
    impl IdealOt {
        pub fn new() -> Self {
            IdealOt { rng: ChaCha20Rng::from_os_rng() }
        }
    }
    fn mask(bits: u32) -> u64 {
        if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 }
    }
    impl Ot for IdealOt {
        fn send_chosen(&mut self, ch: &mut dyn Channel, msgs: &[[u64; 2]], bits: u32) -> Result<()> {
            let flat: Vec<u64> = msgs.iter().flat_map(|m| [m[0], m[1]]).collect();
            ch.send_packed(&flat, bits)
        }
        fn recv_chosen(&mut self, ch: &mut dyn Channel, choices: &[bool], bits: u32) -> Result<Vec<u64>> {
            let flat = ch.recv_packed(2 * choices.len(), bits)?;
            Ok(choices.iter().enumerate().map(|(i, &c)| flat[2 * i + c as usize]).collect())
        }
        fn send_correlated(&mut self, ch: &mut dyn Channel, deltas: &[u64], bits: u32) -> Result<Vec<u64>> {
            let x: Vec<u64> = deltas.iter().map(|_| self.rng.next_u64() & mask(bits)).collect();
            let flat: Vec<u64> = x.iter().zip(deltas).flat_map(|(&x, &d)| [x, x.wrapping_add(d) & mask(bits)]).collect();
            ch.send_packed(&flat, bits)?;
            Ok(x)
        }
        fn recv_correlated(&mut self, ch: &mut dyn Channel, choices: &[bool], bits: u32) -> Result<Vec<u64>> {
            self.recv_chosen(ch, choices, bits)
        }
        fn send_1_of_n(&mut self, ch: &mut dyn Channel, msgs: &[u64], _n: usize, bits: u32) -> Result<()> {
            ch.send_packed(msgs, bits)
        }
        fn recv_1_of_n(&mut self, ch: &mut dyn Channel, choices: &[u8], n: usize, bits: u32) -> Result<Vec<u64>> {
            let flat = ch.recv_packed(n * choices.len(), bits)?;
            Ok(choices.iter().enumerate().map(|(i, &c)| flat[i * n + c as usize]).collect())
        }
    }
}

struct Side<T> {
    out: T,
    stats: CommStats,
    log: Vec<OtCall>,
}

fn side<T>(ch: &mut dyn Channel, role: Role, f: &(dyn Fn(&mut Party) -> Result<T> + Sync)) -> Result<Side<T>> {
    let mut ot = ideal::IdealOt::new();
    let mut p = Party::new(role, ch, &mut ot);
    let before = p.stats();
    let out = f(&mut p)?;
    Ok(Side { out, stats: p.stats().since(&before), log: p.ot_log().to_vec() })
}

fn run<T: Send>(f: impl Fn(&mut Party) -> Result<T> + Sync) -> (Side<T>, Side<T>) {
    let out = run_pair(|ch| side(ch, Role::Server, &f), |ch| side(ch, Role::Client, &f)).unwrap();
    (out.server, out.client)
}

/// Share `vals` (signed) into (server, client) ring shares.
fn share(ring: Ring, vals: &[i64], rng: &mut ChaCha20Rng) -> (Vec<u64>, Vec<u64>) {
    let enc: Vec<u64> = vals.iter().map(|&v| ring.from_signed(v)).collect();
    ring.share_vec(&enc, rng)
}

fn open(ring: Ring, s: &[u64], c: &[u64]) -> Vec<i64> {
    ring.reconstruct(s, c).iter().map(|&v| ring.to_signed(v)).collect()
}

/// Two-party run of `f(party, own share)`, returning the opened output and both sides.
fn two_party<F>(ring: Ring, vals: &[i64], seed: u64, f: F) -> (Vec<i64>, Side<Vec<u64>>, Side<Vec<u64>>)
where
    F: Fn(&mut Party, &[u64]) -> Result<Vec<u64>> + Sync,
{
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let (xs, xc) = share(ring, vals, &mut rng);
    let (s, c) = run(|p| {
        let own = if p.is_server() { &xs } else { &xc };
        f(p, own)
    });
    (open(ring, &s.out, &c.out), s, c)
}

fn report(name: &str, n: usize, s: &Side<Vec<u64>>) {
    let ots: usize = s.log.iter().map(|c| c.count).sum();
    let cots: usize = s.log.iter().filter(|c| c.kind == OtKind::Correlated).map(|c| c.count).sum();
    eprintln!(
        "{name}: {n} elements, {} B sent + {} B received (ideal OT), {} rounds, {ots} OTs ({cots} correlated)",
        s.stats.bytes_sent, s.stats.bytes_recv, s.stats.rounds
    );
}

// ------------------------------------------------------------------------------ recip

fn recip_inputs(lo: u32, hi: u32, rng: &mut ChaCha20Rng, n: usize) -> Vec<i64> {
    let mut v: Vec<i64> = vec![0, 1, (1i64 << lo) - 1, 1i64 << lo, (1i64 << lo) + 1, (1i64 << (hi + 1)) - 1, 1i64 << hi, (1i64 << (lo + 1)) - 1];
    for _ in 0..n {
        let lead = rng.random_range(lo..=hi);
        v.push((1i64 << lead) + (rng.next_u64() % (1u64 << lead)) as i64);
    }
    v
}

fn check_recip(spec: RecipSpec, seed: u64) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let vals = recip_inputs(spec.lo_bit, spec.hi_bit, &mut rng, 40);
    let (got, s, _) = two_party(spec.ring, &vals, seed, |p, x| reciprocal(p, &spec, x));
    report(&format!("{:?} ℓ={}", spec.kind, spec.ring.bits()), vals.len(), &s);
    let plan = spec.plan().unwrap();
    let d_min = *plan.out_table.iter().min().unwrap() as f64;
    let rel = (4.0 - plan.q as f64).exp2() + 0.5 / d_min;
    for (&v, &g) in vals.iter().zip(&got) {
        assert_eq!(g, recip::reference(&spec, v).unwrap(), "{:?} of {v}", spec.kind);
        if v < 1i64 << spec.lo_bit {
            continue; // clamped to 2^lo (checked bit-exactly above)
        }
        let want = recip::exact(&spec, v);
        assert!((g as f64 - want).abs() <= 2.0 + rel * want, "{:?} of {v}: {g} vs {want}", spec.kind);
    }
}

#[test]
fn reciprocal_of_softmax_row_sums() {
    let ring = Ring::new(40).unwrap();
    check_recip(RecipSpec::new(ring, RecipKind::Recip, 12, 24, 11, 19).unwrap(), 1);
}

#[test]
fn rsqrt_wide_range_in_40_and_64_bit_rings() {
    check_recip(RecipSpec::new(Ring::new(40).unwrap(), RecipKind::Rsqrt, 12, 20, 6, 26).unwrap(), 2);
    check_recip(RecipSpec::new(Ring::new(64).unwrap(), RecipKind::Rsqrt, 0, 60, 22, 61).unwrap(), 3);
}

// ------------------------------------------------------------------------------ softmax

fn exact_softmax(row: &[i64], mask: &[u32], frac: u32) -> Vec<f64> {
    let sc = (frac as f64).exp2();
    let max = row.iter().zip(mask).filter(|(_, &m)| m != 0).map(|(&v, _)| v).max().unwrap() as f64 / sc;
    let e: Vec<f64> = row.iter().zip(mask).map(|(&v, &m)| if m != 0 { (v as f64 / sc - max).exp() } else { 0.0 }).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

fn check_softmax(spec: SoftmaxSpec, scores: &[i64], rows: usize, cols: usize, mask: &[u32], seed: u64) -> Side<Vec<u64>> {
    let (got, s, _) = two_party(spec.ring, scores, seed, |p, x| softmax(p, None, &spec, x, rows, cols, mask));
    let lsb = (spec.frac as f64).exp2();
    for i in 0..rows {
        let row = &scores[i * cols..(i + 1) * cols];
        let m = if mask.len() == cols { mask } else { &mask[i * cols..(i + 1) * cols] };
        let want = reference_softmax(row, m, &spec).unwrap();
        assert_eq!(&got[i * cols..(i + 1) * cols], &want[..], "row {i}");
        for (j, e) in exact_softmax(row, m, spec.frac).iter().enumerate() {
            let g = got[i * cols + j];
            if m[j] == 0 {
                assert_eq!(g, 0, "masked key {j} of row {i}");
            }
            assert!((g as f64 / lsb - e).abs() <= 4.0 / lsb, "row {i} key {j}: {g} vs {e}");
        }
    }
    s
}

#[test]
fn softmax_random_and_edge_rows() {
    let ring = Ring::new(40).unwrap();
    let spec = SoftmaxSpec::new(ring, 12).unwrap();
    let (rows, cols) = (5, 16);
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let lim = (1i64 << spec.score_bits) - 1;
    let mut scores = Vec::new();
    // random rows
    for _ in 0..2 * cols {
        scores.push(rng.random_range(-8 * 4096..8 * 4096));
    }
    // all-equal row
    scores.extend(std::iter::repeat_n(-12345, cols));
    // one huge logit among very negative ones (domain limits)
    let mut huge = vec![-lim; cols];
    huge[7] = lim;
    scores.extend(huge);
    // spread over the exp segments and the tail, with ties
    scores.extend((0..cols as i64).map(|j| -j * 2800));
    let mut mask = vec![1u32; rows * cols];
    mask[3] = 0; // one masked key in row 0
    for j in 0..cols {
        mask[cols + j] = (j == 5) as u32; // row 1: fully masked but one
    }
    let s = check_softmax(spec, &scores, rows, cols, &mask, 5);
    report("softmax 5x16", rows * cols, &s);
    // per-key mask shared by all rows
    let key_mask: Vec<u32> = (0..cols).map(|j| (j < 11) as u32).collect();
    check_softmax(spec, &scores, rows, cols, &key_mask, 6);
}

#[test]
fn softmax_rejects_rows_without_keys() {
    let ring = Ring::new(40).unwrap();
    let spec = SoftmaxSpec::new(ring, 12).unwrap();
    let res = run_pair(
        |ch| side(ch, Role::Server, &|p| softmax(p, None, &spec, &[0; 4], 2, 2, &[1, 1, 0, 0])),
        |ch| side(ch, Role::Client, &|p| softmax(p, None, &spec, &[0; 4], 2, 2, &[1, 1, 0, 0])),
    );
    assert!(res.is_err());
}

// ------------------------------------------------------------------------------ layernorm

fn exact_layernorm(row: &[i64], gamma: &[f32], beta: &[f32], eps: f64, frac: u32) -> Vec<f64> {
    let sc = (frac as f64).exp2();
    let x: Vec<f64> = row.iter().map(|&v| v as f64 / sc).collect();
    let d = x.len() as f64;
    let mu = x.iter().sum::<f64>() / d;
    let var = x.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / d;
    x.iter().zip(gamma.iter().zip(beta)).map(|(v, (&g, &b))| (v - mu) / (var + eps).sqrt() * g as f64 + b as f64).collect()
}

fn check_layernorm(spec: LayerNormSpec, x: &[i64], rows: usize, d: usize, gamma: &[f32], beta: &[f32], seed: u64) -> Side<Vec<u64>> {
    let params = LnParams { gamma, beta };
    let (got, s, _) = two_party(spec.ring, x, seed, |p, xs| {
        let prm = p.is_server().then_some(&params);
        layer_norm(p, None, &spec, xs, rows, d, prm)
    });
    let lsb = (spec.frac as f64).exp2();
    for i in 0..rows {
        let row = &x[i * d..(i + 1) * d];
        let want = reference_layernorm(row, gamma, beta, spec.eps, &spec).unwrap();
        assert_eq!(&got[i * d..(i + 1) * d], &want[..], "row {i}");
        for (j, e) in exact_layernorm(row, gamma, beta, spec.eps, spec.frac).iter().enumerate() {
            let g = got[i * d + j] as f64 / lsb;
            assert!((g - e).abs() <= 4.0 / lsb + e.abs() / 256.0, "row {i} elem {j}: {g} vs {e}");
        }
    }
    s
}

#[test]
fn layernorm_random_and_extreme_variances() {
    let ring = Ring::new(40).unwrap();
    let spec = LayerNormSpec::new(ring, 12, 1e-5);
    let (rows, d) = (5, 16);
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let mut x = Vec::new();
    for _ in 0..d {
        x.push(rng.random_range(-3 * 4096..3 * 4096)); // moderate
    }
    for _ in 0..d {
        x.push(5 * 4096 + rng.random_range(-80..80)); // variance ≈ 4e-4 around a large mean
    }
    for _ in 0..d {
        x.push(rng.random_range(-200 * 4096..200 * 4096)); // variance ≈ 1.3e4
    }
    let mut outlier = vec![100; d];
    outlier[9] = 90 * 4096; // one outlier
    x.extend(outlier);
    x.extend(std::iter::repeat_n(777, d)); // constant row: variance 0, output = β
    let gamma: Vec<f32> = (0..d).map(|j| 0.3 + 0.1 * j as f32).collect();
    let beta: Vec<f32> = (0..d).map(|j| 0.05 * j as f32 - 0.4).collect();
    let s = check_layernorm(spec, &x, rows, d, &gamma, &beta, 8);
    report("layernorm 5x16", rows * d, &s);
}

// ------------------------------------------------------------------------------ BERT-base sizes

/// SoftMax on 12 heads × 128×128 and LayerNorm on 128×768 (BERT-base). Minutes in debug; run
/// with `cargo test --release --test softmax_ln_recip -- --ignored --nocapture`.
#[test]
#[ignore]
fn bert_base_sizes() {
    let ring = Ring::new(40).unwrap();
    let spec = SoftmaxSpec::new(ring, 12).unwrap();
    let (heads, n) = (12, 128);
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let scores: Vec<i64> = (0..heads * n * n).map(|_| rng.random_range(-6 * 4096..6 * 4096)).collect();
    let mask = vec![1u32; n];
    let t = std::time::Instant::now();
    let (got, s, _) = two_party(ring, &scores, 10, |p, x| softmax(p, None, &spec, x, heads * n, n, &mask));
    eprintln!("softmax 12x128x128: {:.1} s", t.elapsed().as_secs_f64());
    report("softmax 12x128x128", scores.len(), &s);
    for i in (0..heads * n).step_by(97) {
        assert_eq!(&got[i * n..(i + 1) * n], &reference_softmax(&scores[i * n..(i + 1) * n], &mask, &spec).unwrap()[..]);
    }

    let ln = LayerNormSpec::new(ring, 12, 1e-12);
    let d = 768;
    let x: Vec<i64> = (0..n * d).map(|_| rng.random_range(-4 * 4096..4 * 4096)).collect();
    let gamma: Vec<f32> = (0..d).map(|j| 0.8 + (j % 7) as f32 * 0.05).collect();
    let beta: Vec<f32> = (0..d).map(|j| (j % 5) as f32 * 0.01).collect();
    let t = std::time::Instant::now();
    let params = LnParams { gamma: &gamma, beta: &beta };
    let (got, s, _) = two_party(ring, &x, 11, |p, xs| layer_norm(p, None, &ln, xs, n, d, p.is_server().then_some(&params)));
    eprintln!("layernorm 128x768: {:.1} s", t.elapsed().as_secs_f64());
    report("layernorm 128x768", x.len(), &s);
    for i in (0..n).step_by(17) {
        assert_eq!(&got[i * d..(i + 1) * d], &reference_layernorm(&x[i * d..(i + 1) * d], &gamma, &beta, 1e-12, &ln).unwrap()[..]);
    }
}
