//! OT micro-benchmark: IKNP extension throughput (random, correlated ℓ = 37, chosen ℓ = 37)
//! and 1-of-16 OT (ℓ = 8, the millionaire protocol's digit OTs), both parties over loopback
//! TCP in one process (they share the machine's cores).

use std::time::Instant;

use rand::Rng;
use serde_json::{json, Value};

use crate::net::{run_pair, Channel, CommStats};
use crate::ot::{Ot, OtSession};
use crate::share::Role;

/// Message width of the correlated and chosen runs (the comparison ring of the paper).
const RING_BITS: u32 = 37;
/// N and message width of the 1-of-N run.
const DIGITS_N: usize = 16;
const DIGIT_MSG_BITS: u32 = 8;

/// Time one operation on both parties after a fresh setup; returns (seconds, the receiver's
/// byte counters for the operation).
fn measure<FS, FC>(server: FS, client: FC) -> crate::Result<(f64, CommStats)>
where
    FS: FnOnce(&mut OtSession, &mut dyn Channel) -> crate::Result<()> + Send,
    FC: FnOnce(&mut OtSession, &mut dyn Channel) -> crate::Result<()> + Send,
{
    let out = run_pair(
        |ch| {
            let mut ot = OtSession::setup(ch, Role::Server)?;
            ch.send_u64(0)?; // barrier: both sessions ready before the clock starts
            let _ = ch.recv_u64()?;
            server(&mut ot, ch)?;
            ch.send_u64(0)?; // end marker so the client measures the full exchange
            Ok(())
        },
        |ch| {
            let mut ot = OtSession::setup(ch, Role::Client)?;
            let _ = ch.recv_u64()?;
            ch.send_u64(0)?;
            let before = ch.stats();
            let t0 = Instant::now();
            client(&mut ot, ch)?;
            let _ = ch.recv_u64()?;
            let secs = t0.elapsed().as_secs_f64();
            let mut stats = ch.stats().since(&before);
            stats.bytes_recv -= 8;
            Ok((secs, stats))
        },
    )?;
    Ok(out.client)
}

fn record(kind: &str, n: usize, secs: f64, stats: CommStats) -> Value {
    json!({
        "kind": kind,
        "batch": n,
        "seconds": secs,
        "ots_per_sec": n as f64 / secs,
        "us_per_ot": secs * 1e6 / n as f64,
        "bytes_total": stats.total_bytes(),
        "bytes_per_ot": stats.total_bytes() as f64 / n as f64,
    })
}

/// Run the OT benchmark for each batch size; returns a JSON object with one record per
/// (kind, batch).
pub fn run_ot_bench(batches: &[usize]) -> crate::Result<Value> {
    let mut rows = Vec::new();
    // Warm-up (thread pool, page faults) so the first measured batch is not penalised.
    let warm: Vec<bool> = vec![true; 1 << 14];
    measure(|ot, ch| ot.send_random(ch, 1 << 14).map(|_| ()), move |ot, ch| ot.recv_random(ch, &warm).map(|_| ()))?;
    for &n in batches {
        let mut rng = rand::rng();
        let choices: Vec<bool> = (0..n).map(|_| rng.random()).collect();
        let deltas: Vec<u64> = (0..n).map(|_| rng.random::<u64>() & ((1 << RING_BITS) - 1)).collect();
        let pairs: Vec<[u64; 2]> = (0..n).map(|_| [rng.random(), rng.random()]).collect();
        let digits: Vec<u8> = (0..n).map(|_| rng.random_range(0..DIGITS_N as u8)).collect();
        let table: Vec<u64> = (0..n * DIGITS_N).map(|_| rng.random::<u64>() & 0xff).collect();

        let c = choices.clone();
        let (s, st) = measure(move |ot, ch| ot.send_random(ch, n).map(|_| ()), move |ot, ch| ot.recv_random(ch, &c).map(|_| ()))?;
        rows.push(record("random", n, s, st));

        let c = choices.clone();
        let (s, st) = measure(
            move |ot, ch| ot.send_correlated(ch, &deltas, RING_BITS).map(|_| ()),
            move |ot, ch| ot.recv_correlated(ch, &c, RING_BITS).map(|_| ()),
        )?;
        rows.push(record("correlated_l37", n, s, st));

        let c = choices.clone();
        let (s, st) = measure(
            move |ot, ch| ot.send_chosen(ch, &pairs, RING_BITS),
            move |ot, ch| ot.recv_chosen(ch, &c, RING_BITS).map(|_| ()),
        )?;
        rows.push(record("chosen_l37", n, s, st));

        let (s, st) = measure(
            move |ot, ch| ot.send_1_of_n(ch, &table, DIGITS_N, DIGIT_MSG_BITS),
            move |ot, ch| ot.recv_1_of_n(ch, &digits, DIGITS_N, DIGIT_MSG_BITS).map(|_| ()),
        )?;
        rows.push(record("1_of_16_msg8", n, s, st));
    }
    Ok(json!({
        "benchmark": "ot",
        "threads": rayon::current_num_threads(),
        "note": "both parties in one process over loopback TCP, sharing the cores; time measured by the receiver from its first message to the sender's last; bytes are both directions, base-OT setup excluded; flights: 1 for random OT, 2 for the others",
        "records": rows,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ot_bench_runs_on_a_small_batch() {
        let v = run_ot_bench(&[300]).unwrap();
        let recs = v["records"].as_array().unwrap();
        assert_eq!(recs.len(), 4);
        // random OT: 8-byte header + 3 blocks of 2048 bytes.
        assert_eq!(recs[0]["bytes_total"], 8 + 3 * 2048);
    }

    /// Release-mode benchmark for 2^16 and 2^20 OTs (slow in debug builds): writes
    /// results/ot-bench.json. Run with `cargo test --release --lib -- --ignored bench_ot`.
    #[test]
    #[ignore]
    fn bench_ot_writes_results() {
        let v = run_ot_bench(&[1 << 16, 1 << 20]).unwrap();
        std::fs::create_dir_all("results").unwrap();
        std::fs::write("results/ot-bench.json", serde_json::to_string_pretty(&v).unwrap()).unwrap();
        println!("{}", serde_json::to_string_pretty(&v).unwrap());
    }
}
