//! Two-party tests of the private linear layer against a cleartext integer reference:
//! exact equality after reconstruction mod t, both packings, random and edge inputs.

use fastlmpi::he::{client_setup, convert, server_setup, HeContext, HePreset};
use fastlmpi::net::run_pair;
use fastlmpi::proto::linear::{linear_client, linear_server, EncodedLinear, LinearPlan, LinearShape, Packing};
use rand::Rng;

/// Documented domain of `HePreset::linear`: |x| < 2^22, |w| < 2^16, d_in ≤ 3072.
const X_MAX: i64 = (1 << 22) - 1;
const W_MAX: i64 = (1 << 16) - 1;

fn reference(shape: LinearShape, x: &[i64], w: &[i64], b: &[i64]) -> Vec<i64> {
    let mut y = vec![0i64; shape.n * shape.d_out];
    for r in 0..shape.n {
        for c in 0..shape.d_out {
            let mut acc = b[c] as i128;
            for k in 0..shape.d_in {
                acc += x[r * shape.d_in + k] as i128 * w[k * shape.d_out + c] as i128;
            }
            y[r * shape.d_out + c] = acc as i64;
        }
    }
    y
}

/// Share X, run the two-party layer, reconstruct and decode signed.
fn run_linear(ctx: &HeContext, shape: LinearShape, packing: Packing, x: &[i64], w: &[i64], b: &[i64]) -> Vec<i64> {
    let f = ctx.field();
    let mut rng = rand::rng();
    let (x_c, x_s) = f.share_vec(&convert::from_signed_vec(f, x), &mut rng);
    let plan = LinearPlan::new(ctx, shape, packing).unwrap();
    let enc = EncodedLinear::new(ctx, plan.clone(), w, Some(b)).unwrap();
    let rot = plan.rotations();
    let out = run_pair(
        |ch| {
            let keys = server_setup(ch, ctx, &rot)?;
            linear_server(ch, ctx, &keys, &enc, &x_s)
        },
        |ch| {
            let keys = client_setup(ch, ctx, &rot, &mut rand::rng())?;
            linear_client(ch, ctx, &keys, &plan, &x_c, &mut rand::rng())
        },
    )
    .unwrap();
    // Each share alone is uniform-looking: not equal to the result.
    assert_ne!(out.client, convert::from_signed_vec(f, &reference(shape, x, w, b)));
    convert::to_signed_vec(f, &f.reconstruct(&out.server, &out.client))
}

fn random_case(shape: LinearShape, xmax: i64, wmax: i64) -> (Vec<i64>, Vec<i64>, Vec<i64>) {
    let mut rng = rand::rng();
    let x = (0..shape.n * shape.d_in).map(|_| rng.random_range(-xmax..=xmax)).collect();
    let w = (0..shape.d_in * shape.d_out).map(|_| rng.random_range(-wmax..=wmax)).collect();
    let b = (0..shape.d_out).map(|_| rng.random_range(-(1i64 << 40)..=(1 << 40))).collect();
    (x, w, b)
}

fn check_random(shape: LinearShape, packing: Packing) {
    let ctx = HeContext::new(&HePreset::linear()).unwrap();
    let (x, w, b) = random_case(shape, X_MAX, W_MAX);
    assert_eq!(run_linear(&ctx, shape, packing, &x, &w, &b), reference(shape, &x, &w, &b), "{packing:?} {shape:?}");
}

#[test]
fn rfcp_small_random_shapes_are_exact() {
    check_random(LinearShape { n: 4, d_in: 8, d_out: 5 }, Packing::Rfcp);
    check_random(LinearShape { n: 16, d_in: 64, d_out: 32 }, Packing::Rfcp);
}

#[test]
fn bsgs_small_random_shapes_are_exact() {
    check_random(LinearShape { n: 4, d_in: 8, d_out: 5 }, Packing::Bsgs);
    check_random(LinearShape { n: 16, d_in: 64, d_out: 32 }, Packing::Bsgs);
}

#[test]
fn bsgs_with_rotations_is_exact() {
    // Wide enough that the planner uses giant-step rotations.
    let ctx = HeContext::new(&HePreset::linear()).unwrap();
    let shape = LinearShape { n: 32, d_in: 96, d_out: 200 };
    let plan = LinearPlan::new(&ctx, shape, Packing::Bsgs).unwrap();
    assert!(!plan.rotations().is_empty(), "{}", plan.describe());
    check_random(shape, Packing::Bsgs);
}

#[test]
fn edge_values_both_packings() {
    let ctx = HeContext::new(&HePreset::linear()).unwrap();
    let shape = LinearShape { n: 4, d_in: 48, d_out: 6 };
    let (n, di, d) = (shape.n, shape.d_in, shape.d_out);
    // Row 0 zeros, row 1 +max, row 2 −max, row 3 all-negative mixed; weights ±max.
    let mut x = vec![0i64; n * di];
    for k in 0..di {
        x[di + k] = X_MAX;
        x[2 * di + k] = -X_MAX;
        x[3 * di + k] = -1 - (k as i64 * 7919) % X_MAX;
    }
    let w: Vec<i64> = (0..di * d).map(|i| if i % 3 == 0 { -W_MAX } else { W_MAX }).collect();
    let b: Vec<i64> = (0..d).map(|c| if c % 2 == 0 { -(1i64 << 45) } else { 0 }).collect();
    let expect = reference(shape, &x, &w, &b);
    for packing in [Packing::Rfcp, Packing::Bsgs] {
        assert_eq!(run_linear(&ctx, shape, packing, &x, &w, &b), expect, "{packing:?}");
    }
}

#[test]
fn uncached_weights_give_the_same_result() {
    let ctx = HeContext::new(&HePreset::linear()).unwrap();
    let f = ctx.field();
    let shape = LinearShape { n: 8, d_in: 70, d_out: 9 };
    let (x, w, b) = random_case(shape, X_MAX, W_MAX);
    let mut rng = rand::rng();
    let (x_c, x_s) = f.share_vec(&convert::from_signed_vec(f, &x), &mut rng);
    let plan = LinearPlan::new(&ctx, shape, Packing::Rfcp).unwrap();
    let enc = EncodedLinear::with_cache_limit(&ctx, plan.clone(), &w, Some(&b), 0).unwrap();
    assert!(!enc.is_cached());
    let out = run_pair(
        |ch| {
            let keys = server_setup(ch, &ctx, &[])?;
            linear_server(ch, &ctx, &keys, &enc, &x_s)
        },
        |ch| {
            let keys = client_setup(ch, &ctx, &[], &mut rand::rng())?;
            linear_client(ch, &ctx, &keys, &plan, &x_c, &mut rand::rng())
        },
    )
    .unwrap();
    assert_eq!(convert::to_signed_vec(f, &f.reconstruct(&out.server, &out.client)), reference(shape, &x, &w, &b));
}
