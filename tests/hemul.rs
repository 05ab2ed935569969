//! Two-party tests of the ct×pt element-wise products (`proto::linear::hemul`): exact equality mod t
//! with the cleartext products, edge values, lengths that are not a multiple of N, a factor
//! reused across products, and the documented byte count.

use fastlmpi::he::{client_setup, server_setup, HeContext, HePreset};
use fastlmpi::net::{run_pair, Channel};
use fastlmpi::ot::Ot;
use fastlmpi::proto::ctx::Party;
use fastlmpi::proto::linear::hemul::{self, HeParty};
use fastlmpi::share::{Field, Role};
use fastlmpi::Result;

/// The HE products never call OT; any call is a bug.
struct NoOt;
impl Ot for NoOt {
    fn send_chosen(&mut self, _: &mut dyn Channel, _: &[[u64; 2]], _: u32) -> Result<()> {
        unreachable!()
    }
    fn recv_chosen(&mut self, _: &mut dyn Channel, _: &[bool], _: u32) -> Result<Vec<u64>> {
        unreachable!()
    }
    fn send_correlated(&mut self, _: &mut dyn Channel, _: &[u64], _: u32) -> Result<Vec<u64>> {
        unreachable!()
    }
    fn recv_correlated(&mut self, _: &mut dyn Channel, _: &[bool], _: u32) -> Result<Vec<u64>> {
        unreachable!()
    }
    fn send_1_of_n(&mut self, _: &mut dyn Channel, _: &[u64], _: usize, _: u32) -> Result<()> {
        unreachable!()
    }
    fn recv_1_of_n(&mut self, _: &mut dyn Channel, _: &[u8], _: usize, _: u32) -> Result<Vec<u64>> {
        unreachable!()
    }
}

/// Values including the field's edges (0, 1, −1, ±(t−1)/2) followed by uniform ones.
fn values_with_edges(f: Field, n: usize) -> Vec<u64> {
    let t = f.modulus();
    let edges = [0, 1, t - 1, (t - 1) / 2, (t + 1) / 2, 2, t - 2];
    let mut rng = rand::rng();
    (0..n).map(|i| if i < edges.len() { edges[i] } else { f.random(&mut rng) }).collect()
}

fn split(f: Field, x: &[u64]) -> (Vec<u64>, Vec<u64>) {
    f.share_vec(x, &mut rand::rng())
}

enum Op {
    Mul,
    Square,
    Rows(usize),
    /// `a ⊙ b` then `a ⊙ (a ⊙ b)` with `a` as one factor (uploaded once).
    FactorTwice,
}

/// Runs `op` between two parties on shares of `a`, `b`; returns the reconstructed output and
/// the total bytes both ways.
fn run(ctx: &HeContext, op: Op, a: &[u64], b: &[u64]) -> (Vec<u64>, u64) {
    let f = ctx.field();
    let (a_s, a_c) = split(f, a);
    let (b_s, b_c) = split(f, b);
    let apply = |p: &mut Party, he: &HeParty, a: &[u64], b: &[u64]| -> Result<Vec<u64>> {
        match op {
            Op::Mul => hemul::mul(p, he, a, b),
            Op::Square => hemul::square(p, he, a),
            Op::Rows(cols) => hemul::mul_rows(p, he, a, b, cols),
            Op::FactorTwice => {
                let mut fa = hemul::Factor::new(a.to_vec());
                let ab = hemul::mul_by(p, he, &mut fa, b)?;
                hemul::mul_by(p, he, &mut fa, &ab)
            }
        }
    };
    let out = run_pair(
        |ch| {
            let keys = server_setup(ch, ctx, &[])?;
            let before = ch.stats();
            let mut ot = NoOt;
            let mut p = Party::new(Role::Server, ch, &mut ot);
            let he = HeParty::server(ctx, &keys);
            let y = apply(&mut p, &he, &a_s, &b_s)?;
            Ok((y, p.stats().since(&before).total_bytes()))
        },
        |ch| {
            let keys = client_setup(ch, ctx, &[], &mut rand::rng())?;
            let mut ot = NoOt;
            let mut p = Party::new(Role::Client, ch, &mut ot);
            let he = HeParty::client(ctx, &keys);
            apply(&mut p, &he, &a_c, &b_c)
        },
    )
    .unwrap();
    (f.reconstruct(&out.server.0, &out.client), out.server.1)
}

fn preset() -> HePreset {
    HePreset::simd(8192, 52)
}

#[test]
fn product_is_exact_mod_t_over_partial_blocks() {
    let ctx = HeContext::new(&preset()).unwrap();
    let f = ctx.field();
    let n = ctx.slots() + 123; // two blocks, the second one partial
    let (a, b) = (values_with_edges(f, n), values_with_edges(f, n));
    let (y, bytes) = run(&ctx, Op::Mul, &a, &b);
    let expect: Vec<u64> = a.iter().zip(&b).map(|(&x, &z)| f.mul(x, z)).collect();
    assert_eq!(y, expect);
    assert_eq!(bytes, hemul::mul_bytes(&ctx, n, false).unwrap());
    println!("he-mul: {n} elements, {bytes} bytes, {:.1} B/element", bytes as f64 / n as f64);
}

#[test]
fn a_factor_is_uploaded_once_for_several_products() {
    let ctx = HeContext::new(&preset()).unwrap();
    let f = ctx.field();
    let n = ctx.slots() + 5;
    let (a, b) = (values_with_edges(f, n), values_with_edges(f, n));
    let (y, bytes) = run(&ctx, Op::FactorTwice, &a, &b);
    let expect: Vec<u64> = a.iter().zip(&b).map(|(&x, &z)| f.mul(x, f.mul(x, z))).collect();
    assert_eq!(y, expect);
    let (first, again) = (hemul::mul_bytes(&ctx, n, false).unwrap(), hemul::mul_bytes(&ctx, n, true).unwrap());
    assert_eq!(bytes, first + again);
    assert!(again < first);
    println!("he-mul by an uploaded factor: {:.1} B/element (first product {:.1})", again as f64 / n as f64, first as f64 / n as f64);
}

#[test]
fn plaintext_product_is_exact_and_needs_the_servers_vector() {
    let ctx = HeContext::new(&preset()).unwrap();
    let f = ctx.field();
    let n = ctx.slots() + 77;
    let (a, g) = (values_with_edges(f, n), values_with_edges(f, n));
    let (a_s, a_c) = split(f, &a);
    let out = run_pair(
        |ch| {
            let keys = server_setup(ch, &ctx, &[])?;
            let before = ch.stats();
            let mut ot = NoOt;
            let mut p = Party::new(Role::Server, ch, &mut ot);
            let he = HeParty::server(&ctx, &keys);
            let y = hemul::mul_plain(&mut p, &he, &a_s, Some(&g))?;
            let missing = hemul::mul_plain(&mut p, &he, &a_s, None).is_err();
            Ok((y, p.stats().since(&before).total_bytes(), missing))
        },
        |ch| {
            let keys = client_setup(ch, &ctx, &[], &mut rand::rng())?;
            let mut ot = NoOt;
            let mut p = Party::new(Role::Client, ch, &mut ot);
            let he = HeParty::client(&ctx, &keys);
            hemul::mul_plain(&mut p, &he, &a_c, None)
        },
    )
    .unwrap();
    let (y_s, bytes, missing) = out.server;
    assert_eq!(f.reconstruct(&y_s, &out.client), a.iter().zip(&g).map(|(&x, &w)| f.mul(x, w)).collect::<Vec<_>>());
    assert_eq!(bytes, hemul::mul_plain_bytes(&ctx, n).unwrap());
    assert!(missing, "a server without its vector must refuse");
    println!("he-plain: {:.1} B/element", bytes as f64 / n as f64);
}

#[test]
fn square_is_exact() {
    let ctx = HeContext::new(&preset()).unwrap();
    let f = ctx.field();
    let n = 777;
    let a = values_with_edges(f, n);
    let (y, bytes) = run(&ctx, Op::Square, &a, &[]);
    assert_eq!(y, a.iter().map(|&x| f.mul(x, x)).collect::<Vec<_>>());
    assert_eq!(bytes, hemul::square_bytes(&ctx, n).unwrap());
    println!("he-square: {n} elements, {bytes} bytes, {:.1} B/element", bytes as f64 / n as f64);
}

#[test]
fn row_broadcast_multiplies_each_row_by_its_value() {
    let ctx = HeContext::new(&preset()).unwrap();
    let f = ctx.field();
    let (rows, cols) = (13, 70);
    let a = values_with_edges(f, rows);
    let b = values_with_edges(f, rows * cols);
    let (y, bytes) = run(&ctx, Op::Rows(cols), &a, &b);
    let expect: Vec<u64> = (0..rows * cols).map(|i| f.mul(a[i / cols], b[i])).collect();
    assert_eq!(y, expect);
    assert_eq!(bytes, hemul::mul_bytes(&ctx, rows * cols, false).unwrap());
}

#[test]
fn signed_small_values_multiply_as_integers() {
    // The use in LayerNorm/SoftMax: centred signed values whose product fits t/2.
    let ctx = HeContext::new(&preset()).unwrap();
    let f = ctx.field();
    let vals: Vec<i64> = (0..300).map(|i| (i as i64 * 37 % 601) - 300).collect();
    let a: Vec<u64> = vals.iter().map(|&v| f.from_signed(v)).collect();
    let b: Vec<u64> = vals.iter().rev().map(|&v| f.from_signed(v)).collect();
    let (y, _) = run(&ctx, Op::Mul, &a, &b);
    let got: Vec<i64> = y.iter().map(|&v| f.to_signed(v)).collect();
    let expect: Vec<i64> = vals.iter().zip(vals.iter().rev()).map(|(x, z)| x * z).collect();
    assert_eq!(got, expect);
}

#[test]
fn mismatched_lengths_are_rejected() {
    let ctx = HeContext::new(&preset()).unwrap();
    let keys = fastlmpi::he::ClientKeys::generate(&ctx, &[], &mut rand::rng()).unwrap();
    let r = run_pair(
        |_ch| Ok(()),
        |ch| {
            let mut ot = NoOt;
            let mut p = Party::new(Role::Client, ch, &mut ot);
            let he = HeParty::client(&ctx, &keys);
            let e1 = hemul::mul(&mut p, &he, &[1, 2], &[3]).is_err();
            let e2 = hemul::mul_rows(&mut p, &he, &[1, 2], &[3, 4, 5], 2).is_err();
            let he_wrong = HeParty::client(&ctx, &keys);
            let mut ot2 = NoOt;
            let mut p2 = Party::new(Role::Server, p.ch, &mut ot2);
            let e3 = hemul::square(&mut p2, &he_wrong, &[1]).is_err();
            let e4 = hemul::mul_by(&mut p2, &he_wrong, &mut hemul::Factor::new(vec![1, 2]), &[3]).is_err();
            Ok(e1 && e2 && e3 && e4)
        },
    )
    .unwrap();
    assert!(r.client);
}
