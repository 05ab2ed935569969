//! `bench --compare bolt` end to end on a tiny random checkpoint (seconds): both profiles are
//! measured, the JSON has the fields the records and `fastlmpi report` rely on, and the LAN/WAN
//! estimates come from an unshaped run, not from the shaped one.

use std::path::Path;
use std::process::{Command, Stdio};

use fastlmpi::model::tiny;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_fastlmpi");

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fastlmpi-compare-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn only_file(dir: &Path, ext: &str) -> std::path::PathBuf {
    let files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == ext)).collect();
    assert_eq!(files.len(), 1, "one .{ext} in {}: {files:?}", dir.display());
    files[0].clone()
}

fn num(v: &Value, path: &str) -> f64 {
    v.pointer(path).and_then(Value::as_f64).unwrap_or_else(|| panic!("no number at {path}"))
}

#[test]
fn compare_bolt_on_the_tiny_checkpoint_measures_both_profiles() {
    let (model, results) = (temp_dir("model"), temp_dir("results"));
    tiny::write_tiny_checkpoint(&model, &tiny::TinySpec::mpnet()).unwrap();
    let out = Command::new(BIN)
        .args(["bench", "--compare", "bolt", "--no-fetch", "--seq-len", "8", "--layers", "1", "--net", "lan", "--timeout", "120", "--model"])
        .arg(&model)
        .env("FASTLMPI_RESULTS_DIR", &results)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "bench --compare failed:\n{stderr}");
    assert!(stdout.contains("ESTIMATE (analytic, not measured) on LAN"), "{stdout}");
    assert!(stdout.contains("BOLT's code, measured on a 2-core machine") && stdout.contains("GB = 10^9 bytes"), "{stdout}");

    let json: Value = serde_json::from_str(&std::fs::read_to_string(only_file(&results, "json")).unwrap()).unwrap();
    assert!(std::fs::read_to_string(only_file(&results, "svg")).unwrap().starts_with("<svg"));
    assert_eq!(json["net"], "lan");
    assert_eq!(json["seq_len"], 8);
    assert_eq!(json["runs"][0]["extrapolated"], true, "1 of 2 layers run");
    assert!(json.pointer("/provenance/commit").and_then(Value::as_str).is_some_and(|c| !c.is_empty()));
    assert!(num(&json, "/provenance/machine/cores") >= 1.0);
    assert!(json["published"]["bolt_code_2_cores"].as_array().is_some_and(|r| r.len() == 2));
    let runs = json["runs"].as_array().expect("runs");
    let profiles: Vec<&str> = runs.iter().map(|r| r["profile"].as_str().unwrap()).collect();
    assert_eq!(profiles, ["fastlmpi", "bolt"]);
    for r in runs {
        let name = r["profile"].as_str().unwrap();
        assert!(num(r, "/online/secs") > 0.0 && num(r, "/online/bytes") > 0.0 && num(r, "/online/rounds") > 0.0, "{name} not measured");
        assert!(num(r, "/cosine_vs_plaintext") > 0.99, "{name}: private output far from f32");
        let ops: Vec<&str> = r["ops"].as_array().unwrap().iter().map(|o| o[0].as_str().unwrap()).collect();
        for op in ["qkv", "scores", "softmax", "context", "attn-out", "layernorm-1", "ffn-in", "gelu", "ffn-out", "layernorm-2"] {
            assert!(ops.contains(&op), "{name}: operator {op} missing from {ops:?}");
        }
        // The compute term comes from the unshaped run: same bytes and rounds, and the LAN
        // estimate is that time plus the link model, which the shaped time already contains.
        assert_eq!(r["compute"]["bytes"], r["online"]["bytes"], "{name}");
        assert!(r["compute_source"].as_str().unwrap().contains("unshaped"), "{name}");
        let compute = num(r, "/compute/secs");
        let link = num(r, "/online/bytes") * 8.0 / 3e9 + num(r, "/online/rounds") * 0.4e-3;
        let lan = &r["estimates"][0];
        assert!(lan["link"].as_str().unwrap().starts_with("LAN"));
        assert!((lan["estimated_secs"].as_f64().unwrap() - (compute + link)).abs() < 1e-6, "{name}: {lan}");
    }
    assert_ne!(runs[0]["online"]["bytes"], runs[1]["online"]["bytes"], "the profiles run different protocols");
    for dir in [model, results] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}
