//! Two-party tests of `proto::linear::hepoly`: several centred polynomials on one field-shared input,
//! exact equality mod t with cleartext evaluation, and the documented byte count; the same
//! polynomials selected by XOR-shared bits.

use fastlmpi::he::{client_setup, server_setup, HeContext, HePreset};
use fastlmpi::net::{run_pair, PairOutput};
use fastlmpi::ot::session::OtSession;
use fastlmpi::ot::OtBackend;
use fastlmpi::proto::ctx::{Cost, Party};
use fastlmpi::proto::linear::hemul::HeParty;
use fastlmpi::proto::linear::hepoly::{eval_polys, eval_polys_selected, eval_polys_selected_cost, poly_bytes, CentredPoly};
use fastlmpi::share::{Field, Role};
use fastlmpi::Result;
use rand::Rng;

fn context() -> HeContext {
    HeContext::new(&HePreset::simd(8192, 52)).unwrap()
}

/// Both parties with HE keys and an IKNP session; `server` and `client` run the protocol.
fn he_pair<S: Send, C: Send>(
    ctx: &HeContext,
    server: impl FnOnce(&mut Party, &HeParty) -> Result<S> + Send,
    client: impl FnOnce(&mut Party, &HeParty) -> Result<C> + Send,
) -> PairOutput<S, C> {
    run_pair(
        |ch| {
            let keys = server_setup(ch, ctx, &[])?;
            let mut ot = OtSession::setup(ch, Role::Server)?;
            let mut p = Party::new(Role::Server, ch, &mut ot);
            server(&mut p, &HeParty::server(ctx, &keys))
        },
        |ch| {
            let keys = client_setup(ch, ctx, &[], &mut rand::rng())?;
            let mut ot = OtSession::setup(ch, Role::Client)?;
            let mut p = Party::new(Role::Client, ch, &mut ot);
            client(&mut p, &HeParty::client(ctx, &keys))
        },
    )
    .unwrap()
}

/// Arbitrary polynomials: random coefficients, one of lower degree, one with a huge centre.
fn arbitrary_polys(rng: &mut impl Rng) -> Vec<CentredPoly> {
    vec![
        CentredPoly { centre: 0, coeffs: (0..5).map(|_| rng.random_range(-(1i64 << 40)..(1i64 << 40))).collect() },
        CentredPoly { centre: -12345, coeffs: vec![7, -3, 1] },
        CentredPoly { centre: 1 << 50, coeffs: (0..4).map(|_| rng.random_range(-1000..1000)).collect() },
    ]
}

fn slices(b: &[Vec<u8>]) -> Vec<&[u8]> {
    b.iter().map(Vec::as_slice).collect()
}

/// `n` field elements: the edges (0, 1, t − 1, around t/2), then uniform ones.
fn field_inputs(f: Field, n: usize, rng: &mut impl Rng) -> Vec<u64> {
    let t = f.modulus();
    let mut x: Vec<u64> = vec![0, 1, t - 1, t / 2, t / 2 + 1];
    x.extend((x.len()..n).map(|_| f.random(rng)));
    x
}

#[test]
fn polynomials_are_exact_mod_t() {
    let ctx = context();
    let f = ctx.field();
    let mut rng = rand::rng();
    let polys = arbitrary_polys(&mut rng);
    let n = ctx.slots() + 45;
    let x = field_inputs(f, n, &mut rng);
    let (xs, xc) = f.share_vec(&x, &mut rng);
    let out = he_pair(
        &ctx,
        |p, he| {
            let before = p.stats();
            let v = eval_polys(p, he, &xs, &polys)?;
            Ok((v, p.stats().since(&before).total_bytes()))
        },
        |p, he| eval_polys(p, he, &xc, &polys),
    );
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
    let ctx = context();
    let f = ctx.field();
    let poly = CentredPoly { centre: 100, coeffs: vec![-5, 3, 0, 2] };
    let vals: Vec<i64> = (-150..150).collect();
    let x: Vec<u64> = vals.iter().map(|&v| f.from_signed(v)).collect();
    let (xs, xc) = f.share_vec(&x, &mut rand::rng());
    let polys = vec![poly.clone()];
    let out = he_pair(&ctx, |p, he| eval_polys(p, he, &xs, &polys), |p, he| eval_polys(p, he, &xc, &polys));
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
    let ctx = context();
    let f = ctx.field();
    let mut rng = rand::rng();
    let polys = arbitrary_polys(&mut rng);
    let n = ctx.slots() + 77;
    let x = field_inputs(f, n, &mut rng);
    let (xs, xc) = f.share_vec(&x, &mut rng);
    // Element e's bits: pattern e mod 8 (3 polynomials), shares split at random.
    let bits: Vec<Vec<u8>> = (0..polys.len()).map(|i| (0..n).map(|e| ((e % 8) >> i) as u8 & 1).collect()).collect();
    let server_bits: Vec<Vec<u8>> = bits.iter().map(|b| b.iter().map(|_| rng.random_range(0..2u8)).collect()).collect();
    let client_bits: Vec<Vec<u8>> = bits.iter().zip(&server_bits).map(|(b, s)| b.iter().zip(s).map(|(b, s)| b ^ s).collect()).collect();
    let out = he_pair(
        &ctx,
        |p, he| {
            let before = p.stats();
            let v = eval_polys_selected(p, he, &xs, &polys, &slices(&server_bits))?;
            Ok((v, Cost::observed(p.ot_log(), p.stats().since(&before))))
        },
        |p, he| eval_polys_selected(p, he, &xc, &polys, &slices(&client_bits)),
    );
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
    println!("hepoly selected: {n} inputs, {} polynomials, {bytes} B = {:.1} B/input", polys.len(), bytes / n as f64);
}

#[test]
fn selection_rejects_mismatched_bits() {
    let ctx = context();
    let polys = vec![CentredPoly { centre: 0, coeffs: vec![1, 2] }];
    let x = vec![5u64; 10];
    let short = vec![0u8; 9];
    let out = he_pair(
        &ctx,
        |p, he| Ok(eval_polys_selected(p, he, &x, &polys, &[&short]).is_err()),
        |p, he| Ok(eval_polys_selected(p, he, &x, &polys, &[]).is_err()),
    );
    assert!(out.server && out.client, "a bit vector of the wrong length or count is refused before any message");
}
