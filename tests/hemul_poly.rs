//! Two-party tests of `proto::linear::hepoly`: several centred polynomials on one field-shared input,
//! exact equality mod t with cleartext evaluation, and the documented byte count; the same
//! polynomials selected by XOR-shared bits.

use fastlmpi::he::{client_setup, server_setup, HeContext, HePreset};
use fastlmpi::net::run_pair;
use fastlmpi::ot::session::OtSession;
use fastlmpi::proto::ctx::{Cost, Party};
use fastlmpi::proto::linear::hemul::HeParty;
use fastlmpi::proto::linear::hepoly::{eval_polys, eval_polys_selected, eval_polys_selected_cost, poly_bytes, CentredPoly};
use fastlmpi::ot::OtBackend;
use fastlmpi::share::Role;
use rand::Rng;

#[test]
fn polynomials_are_exact_mod_t() {
    let ctx = HeContext::new(&HePreset::simd(8192, 52)).unwrap();
    let f = ctx.field();
    let mut rng = rand::rng();
    // Arbitrary polynomials (random coefficients, one of lower degree, one with a huge
    // centre), evaluated on uniform field elements: the result must match mod t.
    let polys = vec![
        CentredPoly { centre: 0, coeffs: (0..5).map(|_| rng.random_range(-(1i64 << 40)..(1i64 << 40))).collect() },
        CentredPoly { centre: -12345, coeffs: vec![7, -3, 1] },
        CentredPoly { centre: 1 << 50, coeffs: (0..4).map(|_| rng.random_range(-1000..1000)).collect() },
    ];
    let n = ctx.slots() + 45;
    let t = f.modulus();
    let mut x: Vec<u64> = vec![0, 1, t - 1, t / 2, t / 2 + 1];
    x.extend((x.len()..n).map(|_| f.random(&mut rng)));
    let (xs, xc) = f.share_vec(&x, &mut rng);
    let out = run_pair(
        |ch| {
            let keys = server_setup(ch, &ctx, &[])?;
            let mut ot = OtSession::setup(ch, Role::Server)?;
            let mut p = Party::new(Role::Server, ch, &mut ot);
            let before = p.stats();
            let v = eval_polys(&mut p, &HeParty::server(&ctx, &keys), &xs, &polys)?;
            Ok((v, p.stats().since(&before).total_bytes()))
        },
        |ch| {
            let keys = client_setup(ch, &ctx, &[], &mut rand::rng())?;
            let mut ot = OtSession::setup(ch, Role::Client)?;
            let mut p = Party::new(Role::Client, ch, &mut ot);
            eval_polys(&mut p, &HeParty::client(&ctx, &keys), &xc, &polys)
        },
    )
    .unwrap();
    let (vs, bytes) = out.server;
    for (i, poly) in polys.iter().enumerate() {
        let got = f.reconstruct(&vs[i], &out.client[i]);
        let expect: Vec<u64> = x.iter().map(|&v| poly.eval_field(f, v)).collect();
        assert_eq!(got, expect, "polynomial {i}");
    }
    assert_eq!(bytes, poly_bytes(&ctx, n, &polys).unwrap());
    println!("hepoly: {n} inputs, {} polynomials, {bytes} B = {:.1} B/input", polys.len(), bytes as f64 / n as f64);
}

#[test]
fn small_signed_inputs_give_integer_values() {
    let ctx = HeContext::new(&HePreset::simd(8192, 52)).unwrap();
    let f = ctx.field();
    let poly = CentredPoly { centre: 100, coeffs: vec![-5, 3, 0, 2] };
    let vals: Vec<i64> = (-150..150).collect();
    let x: Vec<u64> = vals.iter().map(|&v| f.from_signed(v)).collect();
    let (xs, xc) = f.share_vec(&x, &mut rand::rng());
    let polys = vec![poly.clone()];
    let out = run_pair(
        |ch| {
            let keys = server_setup(ch, &ctx, &[])?;
            let mut ot = OtSession::setup(ch, Role::Server)?;
            let mut p = Party::new(Role::Server, ch, &mut ot);
            eval_polys(&mut p, &HeParty::server(&ctx, &keys), &xs, &polys)
        },
        |ch| {
            let keys = client_setup(ch, &ctx, &[], &mut rand::rng())?;
            let mut ot = OtSession::setup(ch, Role::Client)?;
            let mut p = Party::new(Role::Client, ch, &mut ot);
            eval_polys(&mut p, &HeParty::client(&ctx, &keys), &xc, &polys)
        },
    )
    .unwrap();
    let got = f.reconstruct(&out.server[0], &out.client[0]);
    for (v, g) in vals.iter().zip(got) {
        assert_eq!(f.to_signed(g) as i128, poly.eval_exact(*v).unwrap());
    }
}

/// `eval_polys_selected` returns shares of `Σ_i b_i·P_i(x)` mod t for arbitrary XOR-shared
/// bits (not only one-hot: none, one and several set per element, every combination of the
/// two parties' shares), across two HE blocks, and costs what its cost function documents.
#[test]
fn selected_polynomials_are_exact_mod_t() {
    let ctx = HeContext::new(&HePreset::simd(8192, 52)).unwrap();
    let f = ctx.field();
    let mut rng = rand::rng();
    let polys = vec![
        CentredPoly { centre: 3, coeffs: (0..4).map(|_| rng.random_range(-(1i64 << 40)..(1i64 << 40))).collect() },
        CentredPoly { centre: -12345, coeffs: vec![7, -3, 1] },
        CentredPoly { centre: 1 << 50, coeffs: (0..4).map(|_| rng.random_range(-1000..1000)).collect() },
    ];
    let n = ctx.slots() + 77;
    let t = f.modulus();
    let mut x: Vec<u64> = vec![0, 1, t - 1, t / 2, t / 2 + 1];
    x.extend((x.len()..n).map(|_| f.random(&mut rng)));
    let (xs, xc) = f.share_vec(&x, &mut rng);
    // Element e's bits: pattern e mod 8 (3 polynomials), shares split at random.
    let bits: Vec<Vec<u8>> = (0..polys.len()).map(|i| (0..n).map(|e| ((e % 8) >> i) as u8 & 1).collect()).collect();
    let server_bits: Vec<Vec<u8>> = bits.iter().map(|b| b.iter().map(|_| rng.random_range(0..2u8)).collect()).collect();
    let client_bits: Vec<Vec<u8>> = bits.iter().zip(&server_bits).map(|(b, s)| b.iter().zip(s).map(|(b, s)| b ^ s).collect()).collect();
    let out = run_pair(
        |ch| {
            let keys = server_setup(ch, &ctx, &[])?;
            let mut ot = OtSession::setup(ch, Role::Server)?;
            let mut p = Party::new(Role::Server, ch, &mut ot);
            let before = p.stats();
            let own: Vec<&[u8]> = server_bits.iter().map(Vec::as_slice).collect();
            let v = eval_polys_selected(&mut p, &HeParty::server(&ctx, &keys), &xs, &polys, &own)?;
            Ok((v, Cost::observed(p.ot_log(), p.stats().since(&before))))
        },
        |ch| {
            let keys = client_setup(ch, &ctx, &[], &mut rand::rng())?;
            let mut ot = OtSession::setup(ch, Role::Client)?;
            let mut p = Party::new(Role::Client, ch, &mut ot);
            let own: Vec<&[u8]> = client_bits.iter().map(Vec::as_slice).collect();
            eval_polys_selected(&mut p, &HeParty::client(&ctx, &keys), &xc, &polys, &own)
        },
    )
    .unwrap();
    let (vs, observed) = out.server;
    let got = f.reconstruct(&vs, &out.client);
    for e in 0..n {
        let expect = polys.iter().enumerate().filter(|(i, _)| bits[*i][e] == 1).fold(0, |acc, (_, poly)| f.add(acc, poly.eval_field(f, x[e])));
        assert_eq!(got[e], expect, "element {e} (bits {:03b})", e % 8);
    }
    // Exactly the documented OTs and non-OT (HE) bytes: one more return than `eval_polys`,
    // one correlated OT mod t per polynomial and element.
    let documented = eval_polys_selected_cost(&ctx, n, &polys).unwrap();
    assert_eq!(observed.without_steps(), documented.without_steps());
    assert!(documented.own_bytes > poly_bytes(&ctx, n, &polys).unwrap());
    assert_eq!(documented.correlated.values().sum::<usize>(), n * polys.len());
    let bytes = documented.bytes_on(OtBackend::Iknp);
    println!("hepoly selected: {n} inputs, {} polynomials, {bytes} B = {:.1} B/input", polys.len(), bytes as f64 / n as f64);
}

#[test]
fn selection_rejects_mismatched_bits() {
    let ctx = HeContext::new(&HePreset::simd(8192, 52)).unwrap();
    let polys = vec![CentredPoly { centre: 0, coeffs: vec![1, 2] }];
    let x = vec![5u64; 10];
    let short = vec![0u8; 9];
    let out = run_pair(
        |ch| {
            let keys = server_setup(ch, &ctx, &[])?;
            let mut ot = OtSession::setup(ch, Role::Server)?;
            let mut p = Party::new(Role::Server, ch, &mut ot);
            Ok(eval_polys_selected(&mut p, &HeParty::server(&ctx, &keys), &x, &polys, &[&short]).is_err())
        },
        |ch| {
            let keys = client_setup(ch, &ctx, &[], &mut rand::rng())?;
            let mut ot = OtSession::setup(ch, Role::Client)?;
            let mut p = Party::new(Role::Client, ch, &mut ot);
            Ok(eval_polys_selected(&mut p, &HeParty::client(&ctx, &keys), &x, &polys, &[]).is_err())
        },
    )
    .unwrap();
    assert!(out.server && out.client, "a bit vector of the wrong length or count is refused before any message");
}
