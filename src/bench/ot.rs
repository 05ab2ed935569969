//! OT micro-benchmark, both backends side by side (IKNP and silent): random correlated OTs
//! with the whole setup included (amortised bytes per COT), then per-call throughput and
//! bytes of correlated (ℓ = 37), chosen (ℓ = 37) and 1-of-16 OT (2- and 8-bit messages, the
//! comparison's digit OTs). Both parties run over loopback TCP in one process (they share the
//! machine's cores).

use std::time::Instant;

use rand::Rng;
use serde_json::{json, Value};

use crate::net::{run_pair, Channel, CommStats};
use crate::ot::ferret::refill_bytes;
use crate::ot::{Ot, OtBackend, OtSession, SilentOt};
use crate::share::Role;

/// Message width of the correlated and chosen runs (the comparison ring of the paper).
const RING_BITS: u32 = 37;
/// N of the 1-of-N runs and their message widths.
const DIGITS_N: usize = 16;
const DIGIT_MSG_BITS: [u32; 2] = [2, 8];
/// Random COTs are taken from the generators in slices of this size (bounds memory).
const COT_SLICE: usize = 1 << 20;

/// One party's session for the per-call runs; the silent one is filled with `prefill`
/// correlations per direction before the clock starts (its refill cost is reported apart).
fn session(ch: &mut dyn Channel, role: Role, backend: OtBackend, prefill: usize) -> crate::Result<Box<dyn Ot>> {
    Ok(match backend {
        OtBackend::Iknp => Box::new(OtSession::setup(ch, role)?),
        OtBackend::Silent => {
            let mut s = SilentOt::setup(ch, role)?;
            s.prefill(ch, prefill)?;
            Box::new(s)
        }
    })
}

/// Time one operation on both parties after a fresh setup; returns (seconds, the receiver's
/// byte counters for the operation).
fn measure<FS, FC>(backend: OtBackend, prefill: usize, server: FS, client: FC) -> crate::Result<(f64, CommStats)>
where
    FS: FnOnce(&mut dyn Ot, &mut dyn Channel) -> crate::Result<()> + Send,
    FC: FnOnce(&mut dyn Ot, &mut dyn Channel) -> crate::Result<()> + Send,
{
    let out = run_pair(
        |ch| {
            let mut ot = session(ch, Role::Server, backend, prefill)?;
            ch.send_u64(0)?; // barrier: both sessions ready before the clock starts
            let _ = ch.recv_u64()?;
            server(&mut *ot, ch)?;
            ch.send_u64(0)?; // end marker so the client measures the full exchange
            Ok(())
        },
        |ch| {
            let mut ot = session(ch, Role::Client, backend, prefill)?;
            let _ = ch.recv_u64()?;
            ch.send_u64(0)?;
            let before = ch.stats();
            let t0 = Instant::now();
            client(&mut *ot, ch)?;
            let _ = ch.recv_u64()?;
            let secs = t0.elapsed().as_secs_f64();
            let mut stats = ch.stats().since(&before);
            stats.bytes_recv -= 8;
            Ok((secs, stats))
        },
    )?;
    Ok(out.client)
}

/// `n` random COTs in one direction (server holds Δ), everything from the first base-OT
/// message on: seconds (receiver's clock) and all bytes both ways.
fn measure_cots(backend: OtBackend, n: usize) -> crate::Result<(f64, CommStats)> {
    let slices = move || (0..n.div_ceil(COT_SLICE)).map(move |i| COT_SLICE.min(n - i * COT_SLICE));
    let out = run_pair(
        move |ch| {
            let mut sink = 0u128;
            match backend {
                OtBackend::Iknp => {
                    let mut ot = OtSession::setup_iknp(ch, Role::Server)?;
                    for m in slices() {
                        sink ^= ot.raw_cots_send(ch, m)?.0[m - 1];
                    }
                }
                OtBackend::Silent => {
                    let mut ot = SilentOt::setup(ch, Role::Server)?;
                    for m in slices() {
                        sink ^= ot.random_cots_send(ch, m)?.0[m - 1];
                    }
                }
            }
            ch.send_u64(sink as u64)?;
            Ok(())
        },
        move |ch| {
            let t0 = Instant::now();
            let mut rng = rand::rng();
            let mut sink = 0u128;
            match backend {
                OtBackend::Iknp => {
                    let mut ot = OtSession::setup_iknp(ch, Role::Client)?;
                    for m in slices() {
                        let choices: Vec<bool> = (0..m).map(|_| rng.random()).collect();
                        sink ^= ot.raw_cots_recv(ch, &choices)?[m - 1];
                    }
                }
                OtBackend::Silent => {
                    let mut ot = SilentOt::setup(ch, Role::Client)?;
                    for m in slices() {
                        sink ^= ot.random_cots_recv(ch, m)?.1[m - 1];
                    }
                }
            }
            let _ = ch.recv_u64()? ^ sink as u64;
            let secs = t0.elapsed().as_secs_f64();
            let mut stats = ch.stats();
            stats.bytes_recv -= 8;
            Ok((secs, stats))
        },
    )?;
    Ok(out.client)
}

fn record(backend: OtBackend, kind: &str, n: usize, secs: f64, stats: CommStats) -> Value {
    json!({
        "ot": backend.name(),
        "kind": kind,
        "batch": n,
        "seconds": secs,
        "ots_per_sec": n as f64 / secs,
        "us_per_ot": secs * 1e6 / n as f64,
        "bytes_total": stats.total_bytes(),
        "bytes_per_ot": stats.total_bytes() as f64 / n as f64,
    })
}

/// Random COTs with setup included, for each size and both backends.
pub fn run_cot_bench(sizes: &[usize]) -> crate::Result<Vec<Value>> {
    let mut rows = Vec::new();
    for &n in sizes {
        for backend in [OtBackend::Iknp, OtBackend::Silent] {
            let (s, st) = measure_cots(backend, n)?;
            rows.push(record(backend, "random_cot_with_setup", n, s, st));
        }
    }
    Ok(rows)
}

/// Per-call runs for each batch size and both backends.
pub fn run_call_bench(batches: &[usize]) -> crate::Result<Vec<Value>> {
    let mut rows = Vec::new();
    for &n in batches {
        let mut rng = rand::rng();
        let choices: Vec<bool> = (0..n).map(|_| rng.random()).collect();
        let deltas: Vec<u64> = (0..n).map(|_| rng.random::<u64>() & ((1 << RING_BITS) - 1)).collect();
        let pairs: Vec<[u64; 2]> = (0..n).map(|_| [rng.random::<u64>() & ((1 << RING_BITS) - 1), rng.random::<u64>() & ((1 << RING_BITS) - 1)]).collect();
        let digits: Vec<u8> = (0..n).map(|_| rng.random_range(0..DIGITS_N as u8)).collect();
        for backend in [OtBackend::Iknp, OtBackend::Silent] {
            // The silent runs start from full buffers (the largest call takes 4n COTs).
            let prefill = 4 * n;
            let (c, d) = (choices.clone(), deltas.clone());
            let (s, st) = measure(
                backend,
                prefill,
                move |ot, ch| ot.send_correlated(ch, &d, RING_BITS).map(|_| ()),
                move |ot, ch| ot.recv_correlated(ch, &c, RING_BITS).map(|_| ()),
            )?;
            rows.push(record(backend, "correlated_l37", n, s, st));

            let (c, p) = (choices.clone(), pairs.clone());
            let (s, st) = measure(backend, prefill, move |ot, ch| ot.send_chosen(ch, &p, RING_BITS), move |ot, ch| ot.recv_chosen(ch, &c, RING_BITS).map(|_| ()))?;
            rows.push(record(backend, "chosen_l37", n, s, st));

            for bits in DIGIT_MSG_BITS {
                let table: Vec<u64> = (0..n * DIGITS_N).map(|_| rng.random::<u64>() & ((1 << bits) - 1)).collect();
                let d = digits.clone();
                let (s, st) = measure(
                    backend,
                    prefill,
                    move |ot, ch| ot.send_1_of_n(ch, &table, DIGITS_N, bits),
                    move |ot, ch| ot.recv_1_of_n(ch, &d, DIGITS_N, bits).map(|_| ()),
                )?;
                rows.push(record(backend, &format!("1_of_16_msg{bits}"), n, s, st));
            }
        }
    }
    Ok(rows)
}

/// The OT benchmark: random COTs with setup at `cot_sizes`, per-call runs at `batches`.
pub fn run_ot_bench(cot_sizes: &[usize], batches: &[usize]) -> crate::Result<Value> {
    // Warm-up (thread pool, page faults) so the first measured batch is not penalised.
    measure_cots(OtBackend::Iknp, 1 << 14)?;
    let mut rows = run_cot_bench(cot_sizes)?;
    rows.extend(run_call_bench(batches)?);
    Ok(json!({
        "benchmark": "ot",
        "threads": rayon::current_num_threads(),
        "note": "both parties in one process over loopback TCP, sharing the cores; time measured by the receiver. random_cot_with_setup: raw correlated OTs in one direction, everything included (base OTs, IKNP, for silent the bootstrap and every iteration). Per-call kinds: bytes both directions after setup; the silent sessions are prefilled with 4·batch COTs per direction before the clock (that refill is amortised in random_cot_with_setup and in silent_refill_bytes_per_cot)",
        "silent_refill_bytes_per_cot": batches.iter().map(|&n| json!({"cots": 4 * n, "bytes_per_cot": refill_bytes(0, 0, 4 * n) as f64 / (4 * n) as f64})).collect::<Vec<_>>(),
        "records": rows,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ot_bench_runs_on_a_small_batch() {
        let v = run_ot_bench(&[300], &[300]).unwrap();
        let recs = v["records"].as_array().unwrap();
        assert_eq!(recs.len(), 2 + 2 * 4);
        // IKNP random COTs: base OTs both ways (2 × 4128), header + 3 blocks of 2048 bytes.
        assert_eq!(recs[0]["bytes_total"], 2 * 4128 + 8 + 3 * 2048);
        // Silent: base OTs, the bootstrap and the first iteration of one direction.
        assert_eq!(recs[1]["bytes_total"], 2 * 4128 + refill_bytes(0, 0, 300));
        // Silent correlated OT: header + 300 correction bits, 300 × 37-bit payload.
        let silent_cot = recs.iter().find(|r| r["ot"] == "silent" && r["kind"] == "correlated_l37").unwrap();
        assert_eq!(silent_cot["bytes_total"], 8 + 38 + (300 * 37u64).div_ceil(8));
    }
}
