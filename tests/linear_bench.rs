//! Writes `results/linear-bench.json`: the BERT-base linear and attention shapes at n = 128,
//! both packings. Minutes of work and GBs of traffic: run it in release only,
//! `cargo test --release --test linear_bench -- --ignored --nocapture`.

use fastlmpi::bench::linear::{bert_base_shapes, run_linear_bench};
use fastlmpi::proto::linear::Packing;

#[test]
#[ignore = "BERT-base sizes: minutes in release"]
fn bert_base_linear_table() {
    // One shape at a time so partial results are on disk early. FASTLMPI_BENCH_ONLY=<substring>
    // re-runs only the matching shapes into results/linear-bench-rerun.json.
    std::fs::create_dir_all("results").unwrap();
    let only = std::env::var("FASTLMPI_BENCH_ONLY").ok();
    let path = if only.is_some() { "results/linear-bench-rerun.json" } else { "results/linear-bench.json" };
    let mut table = serde_json::Value::Null;
    for shape in bert_base_shapes(128) {
        if only.as_ref().is_some_and(|o| !shape.name.contains(o.as_str())) {
            continue;
        }
        let t = run_linear_bench(std::slice::from_ref(&shape), &[Packing::Rfcp, Packing::Bsgs]).unwrap();
        println!("{}", serde_json::to_string(&t["rows"]).unwrap());
        if table.is_null() {
            table = t;
        } else {
            let rows = t["rows"].as_array().unwrap().clone();
            table["rows"].as_array_mut().unwrap().extend(rows);
            let best = t["best_by_wall_time"].as_object().unwrap().clone();
            table["best_by_wall_time"].as_object_mut().unwrap().extend(best);
        }
        std::fs::write(path, serde_json::to_string_pretty(&table).unwrap()).unwrap();
    }
}

#[test]
fn small_table_is_produced_and_checked() {
    use fastlmpi::bench::linear::{BenchKind, BenchShape};
    use fastlmpi::proto::linear::LinearShape;
    let shapes = vec![
        BenchShape { name: "lin".into(), kind: BenchKind::Linear(LinearShape { n: 8, d_in: 16, d_out: 8 }) },
        BenchShape { name: "qk".into(), kind: BenchKind::Shared { n: 4, k: 4, m: 4, heads: 2 } },
    ];
    let t = run_linear_bench(&shapes, &[Packing::Rfcp, Packing::Bsgs]).unwrap();
    let rows = t["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for r in rows {
        assert_eq!(r["correct"], true);
        assert_eq!(r["rounds_total_client_view"], 2); // [setup + upload] flight, return flight
        assert!(r["online_bytes_client_to_server"].as_u64().unwrap() > 0);
    }
}

/// Writes `results/linear-coeff-bench.json`: the coefficient backend on one BERT-base
/// encoder layer's linear shapes at n = 128 and n = 8 (release only:
/// `cargo test --release --test linear_bench coeff -- --ignored --nocapture`).
#[test]
#[ignore = "BERT-base sizes: minutes in release"]
fn bert_base_coeff_table() {
    use fastlmpi::bench::linear::{bert_base_coeff_shapes, run_coeff_bench};
    std::fs::create_dir_all("results").unwrap();
    let only = std::env::var("FASTLMPI_BENCH_ONLY").ok();
    let shapes: Vec<_> = bert_base_coeff_shapes(128)
        .into_iter()
        .chain(bert_base_coeff_shapes(8))
        .filter(|s| only.as_ref().is_none_or(|o| s.name.contains(o.as_str())))
        .collect();
    let mut table = serde_json::Value::Null;
    for shape in shapes {
        let t = run_coeff_bench(std::slice::from_ref(&shape), 40).unwrap();
        println!("{}", serde_json::to_string(&t["rows"]).unwrap());
        if table.is_null() {
            table = t;
        } else {
            let rows = t["rows"].as_array().unwrap().clone();
            table["rows"].as_array_mut().unwrap().extend(rows);
        }
        std::fs::write("results/linear-coeff-bench.json", serde_json::to_string_pretty(&table).unwrap()).unwrap();
    }
}

#[test]
fn small_coeff_table_is_produced_and_checked() {
    use fastlmpi::bench::linear::{run_coeff_bench, BenchKind, BenchShape};
    use fastlmpi::proto::linear::LinearShape;
    let shapes = vec![
        BenchShape { name: "qkv small".into(), kind: BenchKind::Linear(LinearShape { n: 5, d_in: 16, d_out: 8 }) },
        BenchShape { name: "lin".into(), kind: BenchKind::Linear(LinearShape { n: 3, d_in: 9, d_out: 4 }) },
        BenchShape { name: "scores".into(), kind: BenchKind::Shared { n: 6, k: 8, m: 6, heads: 3 } },
    ];
    let t = run_coeff_bench(&shapes, 40).unwrap();
    let rows = t["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["weight_sets"], 3);
    for r in rows {
        assert_eq!(r["correct"], true);
        assert!(r["online_bytes_server_to_client"].as_u64().unwrap() > 0);
    }
    // One round trip per call: the linear rows make one call, the attention row two (A_c·B_s,
    // then B_cᵀ·A_sᵀ), the key setup sharing the first flight.
    assert_eq!(rows[0]["rounds_total_client_view"], 2);
    assert_eq!(rows[1]["rounds_total_client_view"], 2);
    assert_eq!(rows[2]["rounds_total_client_view"], 4);
}
