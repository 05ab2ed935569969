//! Release-mode benchmark of the non-linear toolkit; writes `results/toolkit-bench.json`.
//! Run with `cargo test --release --test toolkit_bench -- --ignored --nocapture`.

#[test]
#[ignore] // minutes of OT traffic for 2^20-element batches: release builds only
fn toolkit_bench_writes_results() {
    let sizes = [1usize << 16, 1 << 20];
    let v = fastlmpi::bench::toolkit::run_toolkit_bench(&sizes).unwrap();
    std::fs::create_dir_all("results").unwrap();
    std::fs::write("results/toolkit-bench.json", serde_json::to_string_pretty(&v).unwrap()).unwrap();
    println!("{}", fastlmpi::bench::toolkit::table(&v));
}
