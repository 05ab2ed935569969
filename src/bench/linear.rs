//! Linear-layer benchmark table: bytes each way, rounds and wall time of the private linear
//! layer and of the attention share × share products, for each packing, over real loopback
//! TCP (`net::run_pair`). Every run is also checked against the cleartext product mod t.
//!
//! Produced by [`run_linear_bench`]; `tests/linear_bench.rs` (ignored, release) writes
//! `results/linear-bench.json` for the BERT-base shapes at n = 128.

use std::time::Instant;

use rand::Rng;
use serde::Serialize;
use serde_json::json;

use crate::error::{Error, Result};
use crate::he::{client_setup, server_setup, HeContext, HePreset};
use crate::net::local::{run_pair_with, PairOptions};
use crate::net::{CommStats, PairOutput};
use crate::proto::linear::attention::{field_matmul, shared_matmul_client, shared_matmul_server, transpose, MatmulShape, SharedMatmulPlan};
use crate::proto::linear::coeff::{coeff_batch_client, coeff_batch_server, coeff_client, coeff_server, CoeffPlan, EncodedCoeff, MODEL_WEIGHT_BITS};
use crate::proto::linear::{linear_client, linear_server, EncodedLinear, LinearPlan, LinearShape, Packing};

/// Weight-cache limit used by the benchmark (768×768 fits, the FFN matrices are encoded on
/// the fly, chunk by chunk, inside the timed call).
pub const BENCH_WEIGHT_CACHE_BYTES: usize = 2_600 << 20;

/// One benchmark row's workload.
#[derive(Clone, Debug, Serialize)]
pub enum BenchKind {
    /// X (n × d_in, shared) · W (server) + b.
    Linear(LinearShape),
    /// Per-head A·B with both operands shared, all heads in one call.
    Shared { n: usize, k: usize, m: usize, heads: usize },
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchShape {
    pub name: String,
    pub kind: BenchKind,
}

/// The BERT-base shapes at sequence length `n`.
pub fn bert_base_shapes(n: usize) -> Vec<BenchShape> {
    let lin = |name: &str, d_in, d_out| BenchShape { name: name.into(), kind: BenchKind::Linear(LinearShape { n, d_in, d_out }) };
    vec![
        lin("qkv/out 768x768", 768, 768),
        lin("ffn1 768x3072", 768, 3072),
        lin("ffn2 3072x768", 3072, 768),
        BenchShape { name: "QK^T 12 heads".into(), kind: BenchKind::Shared { n, k: 64, m: n, heads: 12 } },
        BenchShape { name: "PV 12 heads".into(), kind: BenchKind::Shared { n, k: n, m: 64, heads: 12 } },
    ]
}

/// The linear layers of one BERT-base encoder layer at length `n` for the coefficient
/// backend: Q, K, V on one upload, the output projection and the two FFN matrices.
pub fn bert_base_coeff_shapes(n: usize) -> Vec<BenchShape> {
    let lin = |name: &str, d_in, d_out| BenchShape { name: name.into(), kind: BenchKind::Linear(LinearShape { n, d_in, d_out }) };
    let shared = |name: &str, k, m| BenchShape { name: name.into(), kind: BenchKind::Shared { n, k, m, heads: 12 } };
    vec![
        lin("qkv 3x768x768", 768, 768),
        lin("attn-out 768x768", 768, 768),
        lin("ffn1 768x3072", 768, 3072),
        lin("ffn2 3072x768", 3072, 768),
        shared("scores QK^T 12 heads", 64, n),
        shared("context PV 12 heads", n, 64),
    ]
}

/// CPU seconds used so far by this process (all threads, both parties), from /proc; 0 where
/// unavailable. Reported next to wall time because the machine is shared.
pub fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the parenthesised command name: utime and stime are the 12th and 13th.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Loopback run with a socket timeout long enough for on-the-fly weight encoding.
fn run_pair<S: Send, C: Send>(
    server: impl FnOnce(&mut dyn crate::net::Channel) -> Result<S> + Send,
    client: impl FnOnce(&mut dyn crate::net::Channel) -> Result<C> + Send,
) -> Result<PairOutput<S, C>> {
    let opts = PairOptions { timeout: std::time::Duration::from_secs(3600), ..Default::default() };
    run_pair_with(opts, server, client)
}

fn online(stats: CommStats, setup: CommStats) -> CommStats {
    stats - setup
}

fn random_field(ctx: &HeContext, len: usize) -> Vec<u64> {
    let f = ctx.field();
    let mut rng = rand::rng();
    (0..len).map(|_| f.random(&mut rng)).collect()
}

fn bench_linear(ctx: &HeContext, shape: LinearShape, packing: Packing) -> Result<serde_json::Value> {
    let f = ctx.field();
    let mut rng = rand::rng();
    let w: Vec<i64> = (0..shape.d_in * shape.d_out).map(|_| rng.random_range(-(1i64 << 15)..(1 << 15))).collect();
    let b: Vec<i64> = (0..shape.d_out).map(|_| rng.random_range(-(1i64 << 30)..(1 << 30))).collect();
    let (x_c, x_s) = (random_field(ctx, shape.n * shape.d_in), random_field(ctx, shape.n * shape.d_in));
    let plan = LinearPlan::new(ctx, shape, packing)?;
    let t_enc = Instant::now();
    let enc = EncodedLinear::with_cache_limit(ctx, plan.clone(), &w, Some(&b), BENCH_WEIGHT_CACHE_BYTES)?;
    let encode_s = t_enc.elapsed().as_secs_f64();
    let rot = plan.rotations();
    let cpu0 = process_cpu_seconds();
    let out = run_pair(
        |ch| {
            let keys = server_setup(ch, ctx, &rot)?;
            linear_server(ch, ctx, &keys, &enc, &x_s)
        },
        |ch| {
            let keys = client_setup(ch, ctx, &rot, &mut rand::rng())?;
            let setup = ch.stats();
            let t0 = Instant::now();
            let y = linear_client(ch, ctx, &keys, &plan, &x_c, &mut rand::rng())?;
            Ok((y, setup, t0.elapsed().as_secs_f64()))
        },
    )?;
    let cpu_s = process_cpu_seconds() - cpu0;
    let (y_c, setup, wall) = out.client;
    // Check: reconstruction equals (x_c + x_s)·W + b mod t.
    let x: Vec<u64> = x_c.iter().zip(&x_s).map(|(&a, &c)| f.add(a, c)).collect();
    let wf: Vec<u64> = w.iter().map(|&v| f.from_signed(v)).collect();
    let mut expect = field_matmul(f, &x, &wf, MatmulShape { n: shape.n, k: shape.d_in, m: shape.d_out });
    for (i, e) in expect.iter_mut().enumerate() {
        *e = f.add(*e, f.from_signed(b[i % shape.d_out]));
    }
    let correct = f.reconstruct(&out.server, &y_c) == expect;
    if !correct {
        return Err(Error::He(format!("benchmark result mismatch for {shape:?} {packing:?}")));
    }
    let on = online(out.client_stats, setup);
    Ok(json!({
        "packing": packing.name(), "layout": plan.describe(),
        "uploads": plan.uploads(), "downloads": plan.outputs(), "ct_pt_products": plan.products(),
        "galois_keys": rot.len(), "weights_cached": enc.is_cached(),
        "weight_encode_s": if enc.is_cached() { json!(encode_s) } else { json!(null) },
        "weight_encode_ms_per_poly": encode_ms_per_poly(ctx, &enc)?,
        "weight_polys": enc.weight_polys(),
        "setup_bytes_client_to_server": setup.bytes_sent,
        "online_bytes_client_to_server": on.bytes_sent, "online_bytes_server_to_client": on.bytes_recv,
        "rounds_total_client_view": out.client_stats.rounds, "online_wall_s": wall, "cpu_s_both_parties_incl_setup": cpu_s, "correct": correct,
        "return_level": plan.return_level, "flood_bits": crate::he::privacy::flood_bits(ctx, plan.noise_bound),
    }))
}

/// Encoding cost per weight polynomial (timed on up to 64 polynomials), so that the
/// on-the-fly encoding inside uncached calls can be told apart from the HE work.
fn encode_ms_per_poly(ctx: &HeContext, enc: &EncodedLinear) -> Result<f64> {
    let count = 64;
    let t0 = Instant::now();
    enc.encode_sample(ctx, count)?;
    Ok(t0.elapsed().as_secs_f64() * 1e3 / count as f64)
}

fn bench_shared(ctx: &HeContext, shape: MatmulShape, heads: usize, packing: Packing) -> Result<serde_json::Value> {
    let f = ctx.field();
    let gen = |len| (0..heads).map(|_| random_field(ctx, len)).collect::<Vec<_>>();
    let (a_c, a_s, b_c, b_s) = (gen(shape.n * shape.k), gen(shape.n * shape.k), gen(shape.k * shape.m), gen(shape.k * shape.m));
    let plan = SharedMatmulPlan::new(ctx, shape, heads, packing)?;
    let rot = plan.rotations();
    let cpu0 = process_cpu_seconds();
    let out = run_pair(
        |ch| {
            let keys = server_setup(ch, ctx, &rot)?;
            shared_matmul_server(ch, ctx, &keys, &plan, &a_s, &b_s)
        },
        |ch| {
            let keys = client_setup(ch, ctx, &rot, &mut rand::rng())?;
            let setup = ch.stats();
            let t0 = Instant::now();
            let y = shared_matmul_client(ch, ctx, &keys, &plan, &a_c, &b_c, &mut rand::rng())?;
            Ok((y, setup, t0.elapsed().as_secs_f64()))
        },
    )?;
    let cpu_s = process_cpu_seconds() - cpu0;
    let (y_c, setup, wall) = out.client;
    let mut correct = true;
    for h in 0..heads {
        let a: Vec<u64> = a_c[h].iter().zip(&a_s[h]).map(|(&x, &y)| f.add(x, y)).collect();
        let b: Vec<u64> = b_c[h].iter().zip(&b_s[h]).map(|(&x, &y)| f.add(x, y)).collect();
        correct &= f.reconstruct(&out.server[h], &y_c[h]) == field_matmul(f, &a, &b, shape);
    }
    if !correct {
        return Err(Error::He(format!("benchmark result mismatch for {shape:?} {packing:?}")));
    }
    let on = online(out.client_stats, setup);
    Ok(json!({
        "packing": packing.name(),
        "layout": format!("{} | {}", plan.direct.describe(), plan.transposed.describe()),
        "heads_per_call": plan.heads_per_call,
        "uploads": plan.calls(heads) * (plan.direct.uploads() + plan.transposed.uploads()),
        "downloads": plan.calls(heads) * (plan.direct.outputs() + plan.transposed.outputs()),
        "ct_pt_products": plan.calls(heads) * (plan.direct.products() + plan.transposed.products()),
        "galois_keys": rot.len(), "weights_cached": true, "weight_encode_s": 0.0,
        "setup_bytes_client_to_server": setup.bytes_sent,
        "online_bytes_client_to_server": on.bytes_sent, "online_bytes_server_to_client": on.bytes_recv,
        "rounds_total_client_view": out.client_stats.rounds, "online_wall_s": wall, "cpu_s_both_parties_incl_setup": cpu_s, "correct": correct,
        "return_level": plan.direct.return_level,
        "flood_bits": crate::he::privacy::flood_bits(ctx, plan.direct.noise_bound),
    }))
}

/// The coefficient backend on one linear shape over Z_2^`ring_bits` (X shared, `sets` weight
/// sets on one upload, as for Q, K and V), checked against the cleartext ring product.
fn bench_coeff(ctx: &HeContext, shape: LinearShape, sets: usize) -> Result<serde_json::Value> {
    let f = ctx.field();
    let mut rng = rand::rng();
    let ws: Vec<Vec<i64>> = (0..sets).map(|_| (0..shape.d_in * shape.d_out).map(|_| rng.random_range(-(1i64 << 15)..(1 << 15))).collect()).collect();
    let b: Vec<i64> = (0..shape.d_out).map(|_| rng.random_range(-(1i64 << 30)..(1 << 30))).collect();
    let (x_c, x_s) = (random_field(ctx, shape.n * shape.d_in), random_field(ctx, shape.n * shape.d_in));
    // The engine plans the hidden × hidden shape for Q, K, V on one upload plus the attention
    // output; every other shape for one call.
    let uses: &[usize] = if shape.d_in == shape.d_out && shape.n > 1 { &[3, 1] } else { &[1] };
    let plan = CoeffPlan::for_uses(ctx, shape, MODEL_WEIGHT_BITS, uses)?;
    let t_enc = Instant::now();
    let encs: Vec<EncodedCoeff> = ws.iter().map(|w| EncodedCoeff::new(ctx, plan.clone(), w, Some(&b), BENCH_WEIGHT_CACHE_BYTES)).collect::<Result<_>>()?;
    let encode_s = t_enc.elapsed().as_secs_f64();
    let cpu0 = process_cpu_seconds();
    let out = run_pair(
        |ch| {
            let keys = server_setup(ch, ctx, &[])?;
            let refs: Vec<&EncodedCoeff> = encs.iter().collect();
            coeff_server(ch, ctx, &keys, &refs, Some(&x_s))
        },
        |ch| {
            let keys = client_setup(ch, ctx, &[], &mut rand::rng())?;
            let setup = ch.stats();
            let t0 = Instant::now();
            let y = coeff_client(ch, ctx, &keys, &plan, sets, &x_c, &mut rand::rng())?;
            Ok((y, setup, t0.elapsed().as_secs_f64()))
        },
    )?;
    let cpu_s = process_cpu_seconds() - cpu0;
    let (y_c, setup, wall) = out.client;
    let x: Vec<u64> = x_c.iter().zip(&x_s).map(|(&a, &c)| f.add(a, c)).collect();
    for (i, w) in ws.iter().enumerate() {
        let wf: Vec<u64> = w.iter().map(|&v| f.from_signed(v)).collect();
        let mut expect = field_matmul(f, &x, &wf, MatmulShape { n: shape.n, k: shape.d_in, m: shape.d_out });
        for (j, e) in expect.iter_mut().enumerate() {
            *e = f.add(*e, f.from_signed(b[j % shape.d_out]));
        }
        if f.reconstruct(&out.server[i], &y_c[i]) != expect {
            return Err(Error::He(format!("benchmark result mismatch for {shape:?} coeff set {i}")));
        }
    }
    let on = online(out.client_stats, setup);
    let cached = encs.iter().all(EncodedCoeff::is_cached);
    Ok(json!({
        "packing": "coeff", "layout": plan.describe(), "weight_sets": sets,
        "uploads": plan.uploads(), "downloads": sets * plan.outputs(), "ct_pt_products": sets * plan.products(),
        "pack": plan.pack(), "packing_keys_bytes": crate::he::galois::keys_len(ctx)?, "weights_cached": cached,
        "weight_encode_s": if cached { json!(encode_s) } else { json!(null) },
        "weight_polys": sets * plan.weight_polys(),
        "weight_cache_bytes": if cached { sets * plan.weight_bytes(ctx) } else { 0 },
        "setup_bytes_client_to_server": setup.bytes_sent,
        "online_bytes_client_to_server": on.bytes_sent, "online_bytes_server_to_client": on.bytes_recv,
        "rounds_total_client_view": out.client_stats.rounds, "online_wall_s": wall, "cpu_s_both_parties_incl_setup": cpu_s, "correct": true,
        "return_level": plan.return_level, "flood_bits": crate::he::privacy::flood_bits(ctx, plan.noise_bound),
    }))
}

/// The attention products on the coefficient backend as the engine runs them: per head the
/// cross terms A_c·B_s and B_cᵀ·A_sᵀ in two batched calls (every head in one flight each way,
/// the server's shares as ring-share "weights"), plus each party's own product; checked
/// against the cleartext ring product.
fn bench_coeff_shared(ctx: &HeContext, shape: MatmulShape, heads: usize) -> Result<serde_json::Value> {
    let f = ctx.field();
    let MatmulShape { n, k, m } = shape;
    let gen = |len| (0..heads).map(|_| random_field(ctx, len)).collect::<Vec<_>>();
    let (a_c, a_s, b_c, b_s) = (gen(n * k), gen(n * k), gen(k * m), gen(k * m));
    let share_bits = ctx.preset().t_bits - 1;
    let direct = CoeffPlan::new(ctx, LinearShape { n, d_in: k, d_out: m }, share_bits)?;
    let swapped = CoeffPlan::new(ctx, LinearShape { n: m, d_in: k, d_out: n }, share_bits)?;
    let own = |a: &[Vec<u64>], b: &[Vec<u64>], ab: &[Vec<u64>], ba: &[Vec<u64>]| -> Vec<Vec<u64>> {
        (0..heads)
            .map(|h| {
                let mut y = field_matmul(f, &a[h], &b[h], shape);
                let ba_t = transpose(&ba[h], m, n);
                y.iter_mut().zip(&ab[h]).zip(&ba_t).for_each(|((y, &p), &q)| *y = f.add(f.add(*y, p), q));
                y
            })
            .collect()
    };
    let cpu0 = process_cpu_seconds();
    let out = run_pair(
        |ch| {
            let keys = server_setup(ch, ctx, &[])?;
            let with_b: Vec<EncodedCoeff> = b_s.iter().map(|b| EncodedCoeff::from_ring(ctx, direct.clone(), b, 0)).collect::<Result<_>>()?;
            let ab = coeff_batch_server(ch, ctx, &keys, &with_b)?;
            let with_at: Vec<EncodedCoeff> = a_s.iter().map(|a| EncodedCoeff::from_ring(ctx, swapped.clone(), &transpose(a, n, k), 0)).collect::<Result<_>>()?;
            let ba = coeff_batch_server(ch, ctx, &keys, &with_at)?;
            Ok(own(&a_s, &b_s, &ab, &ba))
        },
        |ch| {
            let keys = client_setup(ch, ctx, &[], &mut rand::rng())?;
            let setup = ch.stats();
            let t0 = Instant::now();
            let ab = coeff_batch_client(ch, ctx, &keys, &direct, &a_c)?;
            let bt: Vec<Vec<u64>> = b_c.iter().map(|b| transpose(b, k, m)).collect();
            let ba = coeff_batch_client(ch, ctx, &keys, &swapped, &bt)?;
            Ok((own(&a_c, &b_c, &ab, &ba), setup, t0.elapsed().as_secs_f64()))
        },
    )?;
    let cpu_s = process_cpu_seconds() - cpu0;
    let (y_c, setup, wall) = out.client;
    for h in 0..heads {
        let a: Vec<u64> = a_c[h].iter().zip(&a_s[h]).map(|(&x, &y)| f.add(x, y)).collect();
        let b: Vec<u64> = b_c[h].iter().zip(&b_s[h]).map(|(&x, &y)| f.add(x, y)).collect();
        if f.reconstruct(&out.server[h], &y_c[h]) != field_matmul(f, &a, &b, shape) {
            return Err(Error::He(format!("benchmark result mismatch for {shape:?} coeff head {h}")));
        }
    }
    let on = online(out.client_stats, setup);
    Ok(json!({
        "packing": "coeff", "layout": format!("{} | {}", direct.describe(), swapped.describe()),
        "heads_per_call": heads,
        "uploads": heads * (direct.uploads() + swapped.uploads()),
        "downloads": heads * (direct.outputs() + swapped.outputs()),
        "ct_pt_products": heads * (direct.products() + swapped.products()),
        "packing_keys_bytes": crate::he::galois::keys_len(ctx)?, "weights_cached": false,
        "setup_bytes_client_to_server": setup.bytes_sent,
        "online_bytes_client_to_server": on.bytes_sent, "online_bytes_server_to_client": on.bytes_recv,
        "rounds_total_client_view": out.client_stats.rounds, "online_wall_s": wall, "cpu_s_both_parties_incl_setup": cpu_s, "correct": true,
        "return_level": direct.return_level, "flood_bits": crate::he::privacy::flood_bits(ctx, direct.noise_bound.max(swapped.noise_bound)),
    }))
}

/// The coefficient backend ([`HePreset::coefficient`] over Z_2^`ring_bits`) on `shapes`: the
/// linear shapes (a shape named `qkv…` runs three weight sets on one upload) and the share ×
/// share attention products.
pub fn run_coeff_bench(shapes: &[BenchShape], ring_bits: u32) -> Result<serde_json::Value> {
    let ctx = HeContext::coefficient(&HePreset::coefficient(ring_bits))?;
    let mut rows = Vec::new();
    for s in shapes {
        let mut row = match s.kind {
            BenchKind::Linear(shape) => {
                let sets = if s.name.starts_with("qkv") { 3 } else { 1 };
                let mut row = bench_coeff(&ctx, shape, sets)?;
                row["n"] = json!(shape.n);
                row
            }
            BenchKind::Shared { n, k, m, heads } => {
                let mut row = bench_coeff_shared(&ctx, MatmulShape { n, k, m }, heads)?;
                row["n"] = json!(n);
                row
            }
        };
        row["shape"] = json!(s.name);
        rows.push(row);
    }
    Ok(json!({
        "preset": ctx.preset(), "t": ctx.t(), "moduli": ctx.params().moduli(),
        "threads": rayon::current_num_threads(), "rows": rows,
    }))
}

/// Run every (shape, packing) pair with [`HePreset::linear`] and return the table as JSON:
/// `{ preset, threads, rows: [ {shape, packing, …bytes, rounds, wall…} ], best: {shape: packing} }`.
/// Online figures exclude the key setup (reported separately) and the one-off weight encoding
/// when the weights fit the cache. Rounds are the client's flights including setup: the key
/// setup and the uploads share the first flight, the returns form the second, so a call is
/// one round trip.
pub fn run_linear_bench(shapes: &[BenchShape], packings: &[Packing]) -> Result<serde_json::Value> {
    let ctx = HeContext::new(&HePreset::linear())?;
    let mut rows = Vec::new();
    let mut best = serde_json::Map::new();
    for s in shapes {
        let mut best_here: Option<(f64, Packing)> = None;
        for &p in packings {
            let mut row = match s.kind {
                BenchKind::Linear(shape) => bench_linear(&ctx, shape, p)?,
                BenchKind::Shared { n, k, m, heads } => bench_shared(&ctx, MatmulShape { n, k, m }, heads, p)?,
            };
            let wall = row["online_wall_s"].as_f64().unwrap_or(f64::INFINITY);
            if best_here.is_none_or(|(w, _)| wall < w) {
                best_here = Some((wall, p));
            }
            row["shape"] = json!(s.name);
            rows.push(row);
        }
        if let Some((_, p)) = best_here {
            best.insert(s.name.clone(), json!(p.name()));
        }
    }
    Ok(json!({
        "preset": ctx.preset(), "t": ctx.t(), "moduli": ctx.params().moduli(),
        "threads": rayon::current_num_threads(), "rows": rows, "best_by_wall_time": best,
    }))
}
