//! Micro-benchmark of the non-linear toolkit (`proto::toolkit::{cmp, trunc, b2a, mux, mul, convert}`):
//! wall time, bytes per element and rounds for batches of the given sizes, both parties over
//! loopback TCP with the real OT sessions, once per OT backend (IKNP, silent). Setup (base OTs;
//! for the silent backend also its bootstrap and first iteration in both directions) is
//! excluded from each figure and its time reported separately; refills during an operation
//! are included.

use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde_json::{json, Value};

use crate::error::Result;
use crate::net::{run_pair, Channel, CommStats};
use crate::ot::Ot;
use crate::proto::ctx::{Cost, Party};
use crate::proto::toolkit::trunc::TruncMode;
use crate::proto::toolkit::{b2a, cmp, convert, mul, mux, trunc};
use crate::share::{Field, Ring, Role};

/// Builds one party's OT session on a fresh channel.
pub type OtFactory = fn(&mut dyn Channel, Role) -> Result<Box<dyn Ot>>;

/// The HE plaintext prime used for the conversion figures: the largest prime below 2^50.
pub const BENCH_PRIME: u64 = 1125899906842597;

/// One measured operation.
struct Measured {
    secs: f64,
    setup_secs: f64,
    server: CommStats,
    cost: Cost,
}

/// Inputs both parties need for one benchmark run (shares of random values).
struct Inputs {
    server: Vec<u64>,
    client: Vec<u64>,
    server2: Vec<u64>,
    client2: Vec<u64>,
}

fn ring_inputs(ring: Ring, n: usize, magnitude_bits: u32, seed: u64) -> Inputs {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let lim = 1i64 << magnitude_bits;
    let vals = |rng: &mut ChaCha20Rng| -> Vec<u64> {
        (0..n).map(|_| ring.from_signed((rand::RngCore::next_u64(rng) as i64).rem_euclid(2 * lim) - lim)).collect()
    };
    let x = vals(&mut rng);
    let y = vals(&mut rng);
    let (server, client) = ring.share_vec(&x, &mut rng);
    let (server2, client2) = ring.share_vec(&y, &mut rng);
    Inputs { server, client, server2, client2 }
}

fn field_inputs(field: Field, n: usize, magnitude_bits: u32, seed: u64) -> Inputs {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let lim = 1i64 << magnitude_bits;
    let x: Vec<u64> =
        (0..n).map(|_| field.from_signed((rand::RngCore::next_u64(&mut rng) as i64).rem_euclid(2 * lim) - lim)).collect();
    let (server, client) = field.share_vec(&x, &mut rng);
    Inputs { server, client, server2: Vec::new(), client2: Vec::new() }
}

/// Run `op` as both parties; time and meter the op only (after OT setup).
/// One benchmarked operation: runs on a party with its two input shares.
type BenchOp<'a> = dyn Fn(&mut Party, &[u64], &[u64]) -> Result<()> + Sync + 'a;

fn measure(make_ot: OtFactory, inputs: &Inputs, op: &BenchOp) -> Result<Measured> {
    let side = |ch: &mut dyn Channel, role: Role| -> Result<(f64, f64, CommStats, Cost)> {
        let t0 = Instant::now();
        let mut ot = make_ot(ch, role)?;
        // Whoever sent last in the setup, one byte from the server settles the direction, so
        // the operation's first flight counts as a round on both sides whatever the backend.
        if role.is_server() {
            ch.send_bytes(&[0])?;
        } else {
            ch.recv_bytes(&mut [0u8])?;
        }
        let setup = t0.elapsed().as_secs_f64();
        let mut p = Party::new(role, ch, &mut *ot);
        let (a, b) = if role.is_server() { (&inputs.server, &inputs.server2) } else { (&inputs.client, &inputs.client2) };
        let before = p.stats();
        let t1 = Instant::now();
        op(&mut p, a, b)?;
        p.ch.flush()?;
        let secs = t1.elapsed().as_secs_f64();
        let stats = p.stats().since(&before);
        Ok((secs, setup, stats, Cost::observed(p.ot_log(), stats)))
    };
    let out = run_pair(|ch| side(ch, Role::Server), |ch| side(ch, Role::Client))?;
    let (s_secs, s_setup, s_stats, cost) = out.server;
    let (c_secs, c_setup, _, _) = out.client;
    Ok(Measured { secs: s_secs.max(c_secs), setup_secs: s_setup.max(c_setup), server: s_stats, cost })
}

fn record(name: &str, params: Value, n: usize, m: &Measured) -> Value {
    let bytes = m.server.total_bytes();
    json!({
        "op": name,
        "params": params,
        "n": n,
        "seconds": m.secs,
        "us_per_element": m.secs * 1e6 / n as f64,
        "bytes_total": bytes,
        "bytes_per_element": bytes as f64 / n as f64,
        "rounds": m.server.rounds,
        "ots": m.cost.ot_count(),
        "ots_per_element": m.cost.ot_count() as f64 / n as f64,
        "own_bytes_per_element": m.cost.own_bytes as f64 / n as f64,
        "ot_setup_seconds": m.setup_secs,
    })
}

/// Benchmark every toolkit operation for each batch size on both OT backends
/// ([`crate::ot::OtSession`]: base OTs, then IKNP extension; [`crate::ot::SilentOt`]).
pub fn run_toolkit_bench(sizes: &[usize]) -> Result<Value> {
    let mut rows = Vec::new();
    for (name, make_ot) in [("iknp", iknp_ot as OtFactory), ("silent", silent_ot as OtFactory)] {
        let v = run_toolkit_bench_with(sizes, make_ot)?;
        for mut row in v["rows"].as_array().cloned().unwrap_or_default() {
            row["ot"] = json!(name);
            rows.push(row);
        }
    }
    Ok(json!({
        "benchmark": "toolkit",
        "threads": rayon::current_num_threads(),
        "note": "bytes are both directions as seen by the server; seconds and bytes exclude the OT setup (silent: base OTs, bootstrap and one iteration per direction); later refills are included",
        "rows": rows,
    }))
}

fn iknp_ot(ch: &mut dyn Channel, role: Role) -> Result<Box<dyn Ot>> {
    Ok(Box::new(crate::ot::OtSession::setup(ch, role)?))
}

/// The silent session with one iteration per direction already run.
fn silent_ot(ch: &mut dyn Channel, role: Role) -> Result<Box<dyn Ot>> {
    let mut s = crate::ot::SilentOt::setup(ch, role)?;
    s.prefill(ch, crate::ot::lpn::SET.net_outputs())?;
    Ok(Box::new(s))
}

/// Benchmark every toolkit operation for each batch size, with the OT sessions `make_ot` builds.
pub fn run_toolkit_bench_with(sizes: &[usize], make_ot: OtFactory) -> Result<Value> {
    let r37 = Ring::new(37)?;
    let r12 = Ring::new(12)?;
    let field = Field::new(BENCH_PRIME)?;
    let s = 12u32;
    let mut rows = Vec::new();
    for &n in sizes {
        let in37 = ring_inputs(r37, n, 30, 1);
        let in12 = ring_inputs(r12, n, 10, 2);
        let small = ring_inputs(r37, n, 17, 3);
        let mul_in = ring_inputs(r37, n, 16, 4);
        let f_in = field_inputs(field, n, 36, 5);
        let f_wide = field_inputs(field, n, 44, 6);
        let bits_in = ring_inputs(Ring::new(1)?, n, 0, 7);
        let bits_of = |v: &[u64]| -> Vec<u8> { v.iter().map(|&x| (x & 1) as u8).collect() };

        let m = measure(make_ot, &in37, &|p, x, _| cmp::lt_const(p, r37, x, 4096).map(|_| ()))?;
        rows.push(record("compare_lt_public", json!({"ell": 37}), n, &m));
        let m = measure(make_ot, &in12, &|p, x, _| cmp::lt_const(p, r12, x, 1024).map(|_| ()))?;
        rows.push(record("compare_lt_public", json!({"ell": 12}), n, &m));
        let m = measure(make_ot, &small, &|p, x, _| cmp::lt_public(p, r37, x, &[20800], 20, 6).map(|_| ()))?;
        rows.push(record("compare_lt_public_reduced", json!({"ell": 37, "k": 20, "d": 6}), n, &m));
        let m = measure(make_ot, &in37, &|p, x, _| trunc::trunc(p, r37, x, s, TruncMode::Faithful).map(|_| ()))?;
        rows.push(record("trunc_faithful", json!({"ell": 37, "s": s}), n, &m));
        let m = measure(make_ot, &in37, &|p, x, _| trunc::trunc(p, r37, x, s, TruncMode::Approx).map(|_| ()))?;
        rows.push(record("trunc_approx", json!({"ell": 37, "s": s}), n, &m));
        let m = measure(make_ot, &bits_in, &|p, b, _| b2a::b2a_ring(p, r37, &bits_of(b)).map(|_| ()))?;
        rows.push(record("b2a_ring", json!({"ell": 37}), n, &m));
        let m = measure(make_ot, &bits_in, &|p, b, _| b2a::b2a_field(p, field, &bits_of(b)).map(|_| ()))?;
        rows.push(record("b2a_field", json!({"p_bits": field.bits()}), n, &m));
        let m = measure(make_ot, &in37, &|p, x, _| mux::mux(p, r37, &bits_of(x), x).map(|_| ()))?;
        rows.push(record("mux", json!({"ell": 37}), n, &m));
        let m = measure(make_ot, &mul_in, &|p, x, y| mul::mul(p, r37, x, y).map(|_| ()))?;
        rows.push(record("mul", json!({"ell": 37}), n, &m));
        let m = measure(make_ot, &mul_in, &|p, x, y| mul::mul_trunc(p, r37, x, y, s, TruncMode::Faithful).map(|_| ()))?;
        rows.push(record("mul_trunc_faithful", json!({"ell": 37, "s": s}), n, &m));
        let m = measure(make_ot, &f_in, &|p, a, _| convert::field_to_ring(p, field, r37, a, 36).map(|_| ()))?;
        rows.push(record("field_to_ring", json!({"p_bits": field.bits(), "ell": 37, "bound_bits": 36}), n, &m));
        let m = measure(make_ot, &f_wide, &|p, a, _| {
            convert::field_to_ring_trunc(p, field, r37, a, 44, s, TruncMode::Faithful).map(|_| ())
        })?;
        rows.push(record("field_to_ring_trunc_faithful", json!({"p_bits": field.bits(), "ell": 37, "bound_bits": 44, "s": s}), n, &m));
        let m = measure(make_ot, &in37, &|p, x, _| convert::ring_to_field(p, r37, field, x).map(|_| ()))?;
        rows.push(record("ring_to_field", json!({"p_bits": field.bits(), "ell": 37}), n, &m));
    }
    Ok(json!({
        "benchmark": "toolkit",
        "threads": rayon::current_num_threads(),
        "note": "bytes are both directions as seen by the server; seconds exclude OT base setup",
        "rows": rows,
    }))
}

/// A Markdown table of a [`run_toolkit_bench_with`] result.
pub fn table(v: &Value) -> String {
    let mut out = String::from("| op | params | OT | n | µs/elem | bytes/elem | OTs/elem | rounds | total s |\n|---|---|---|---|---|---|---|---|---|\n");
    for row in v["rows"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.3} | {:.1} | {:.1} | {} | {:.2} |\n",
            row["op"].as_str().unwrap_or("?"),
            row["params"],
            row["ot"].as_str().unwrap_or("iknp"),
            row["n"],
            row["us_per_element"].as_f64().unwrap_or(f64::NAN),
            row["bytes_per_element"].as_f64().unwrap_or(f64::NAN),
            row["ots_per_element"].as_f64().unwrap_or(f64::NAN),
            row["rounds"],
            row["seconds"].as_f64().unwrap_or(f64::NAN),
        ));
    }
    out
}
