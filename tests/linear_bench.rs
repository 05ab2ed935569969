//! Writes `results/linear-bench.json`: the BERT-base linear and attention shapes at n = 128,
//! both packings. Minutes of work and GBs of traffic: run it in release only,
//! `cargo test --release --test linear_bench -- --ignored --nocapture`.

use fastlmpi::bench::linear::{bert_base_shapes, run_linear_bench};
use fastlmpi::proto::linear::Packing;

#[test]
#[ignore = "BERT-base sizes: minutes in release"]
fn bert_base_linear_table() {
    let table = run_linear_bench(&bert_base_shapes(128), &[Packing::Rfcp, Packing::Bsgs]).unwrap();
    std::fs::create_dir_all("results").unwrap();
    std::fs::write("results/linear-bench.json", serde_json::to_string_pretty(&table).unwrap()).unwrap();
    println!("{}", serde_json::to_string_pretty(&table).unwrap());
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
