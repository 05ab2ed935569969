//! `bench --scale` end to end on a tiny random checkpoint (seconds): one private inference per
//! length with the server in its own process, per-operator costs and growth exponents, both
//! parties' peak memory, JSON + SVG; bad lengths fail before anything runs.

use std::process::{Command, Stdio};

use fastlmpi::model::tiny;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_fastlmpi");

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fastlmpi-scale-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn num(v: &Value, path: &str) -> f64 {
    v.pointer(path).and_then(Value::as_f64).unwrap_or_else(|| panic!("no number at {path}"))
}

#[test]
fn scale_on_the_tiny_checkpoint_measures_every_length() {
    let (model, results) = (temp_dir("model"), temp_dir("results"));
    tiny::write_tiny_checkpoint(&model, &tiny::TinySpec::mpnet()).unwrap();
    // IKNP: its bytes are per OT, so a tiny model's SoftMax growth shows; silent OT's fixed-size
    // iterations land in whichever operator triggers a refill and blur it at this size.
    let out = Command::new(BIN)
        .args(["bench", "--scale", "--no-fetch", "--ot", "iknp", "--lengths", "8,16", "--timeout", "120", "--model"])
        .arg(&model)
        .env("FASTLMPI_RESULTS_DIR", &results)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "bench --scale failed:\n{stderr}");
    assert!(stdout.contains("data-oblivious") && stdout.contains("EXTRAPOLATED: 1 of 2 layers"), "{stdout}");

    let name = model.file_name().unwrap().to_string_lossy().into_owned();
    let json_path = results.join(format!("scale-{name}.json"));
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert!(std::fs::read_to_string(json_path.with_extension("svg")).unwrap().starts_with("<svg"));
    assert!(json.pointer("/provenance/commit").and_then(Value::as_str).is_some_and(|c| !c.is_empty()));
    assert_eq!(json["ot"], "iknp");
    let points = json["points"].as_array().expect("points");
    assert_eq!(points.iter().map(|p| p["seq_len"].as_u64().unwrap()).collect::<Vec<_>>(), [8, 16]);
    for p in points {
        assert_eq!(p["extrapolated"], true);
        assert!(num(p, "/online/secs") > 0.0 && num(p, "/online/bytes") > 0.0 && num(p, "/online/rounds") > 0.0);
        assert!(num(p, "/client_peak_rss_bytes") > 0.0 && num(p, "/server_peak_rss_bytes") > 0.0, "both peaks measured");
        assert!(num(p, "/cosine_vs_plaintext") > 0.99, "private output far from f32");
        let ops: Vec<&str> = p["ops"].as_array().unwrap().iter().map(|o| o[0].as_str().unwrap()).collect();
        for op in ["qkv", "scores", "softmax", "context", "attn-out", "layernorm-1", "ffn-in", "gelu", "ffn-out", "layernorm-2"] {
            assert!(ops.contains(&op), "operator {op} missing: {ops:?}");
        }
    }
    // One layer of two was run: the per-layer operators are doubled, the measured total is not.
    assert!(num(&points[0], "/online/bytes") > 1.5 * num(&points[0], "/measured_online/bytes"));
    let exps = json["exponents"].as_array().expect("exponents");
    let softmax = exps.iter().find(|e| e["op"] == "softmax").expect("softmax exponent");
    // Its OT part grows as n² but its HE part is one ciphertext for all heads' scores at both
    // lengths, which on the tiny model outweighs the (approximate-truncation) OT bytes: the
    // exponent is deterministic (0.36 at 8 → 16 tokens), well above 0 but far below 2.
    assert!(num(softmax, "/bytes") > 0.25, "SoftMax bytes grow with n: {softmax}");
    assert!(exps.iter().any(|e| e["op"] == "all"));
}

#[test]
fn bad_lengths_fail_before_anything_runs() {
    let (model, results) = (temp_dir("bad-model"), temp_dir("bad-results"));
    tiny::write_tiny_checkpoint(&model, &tiny::TinySpec::mpnet()).unwrap();
    for lengths in ["0", "8,100000"] {
        let out = Command::new(BIN)
            .args(["bench", "--scale", "--no-fetch", "--lengths", lengths, "--model"])
            .arg(&model)
            .env("FASTLMPI_RESULTS_DIR", &results)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "--lengths {lengths} accepted");
        assert!(String::from_utf8_lossy(&out.stderr).contains("error:"));
    }
}

#[test]
fn cache_budgets_measure_time_against_memory_with_equal_outputs() {
    let (model, results) = (temp_dir("budget-model"), temp_dir("budget-results"));
    tiny::write_tiny_checkpoint(&model, &tiny::TinySpec::mpnet()).unwrap();
    let run = |extra: &[&str]| {
        Command::new(BIN)
            .args(["bench", "--scale", "--no-fetch", "--lengths", "8", "--timeout", "120"])
            .args(extra)
            .arg("--model")
            .arg(&model)
            .env("FASTLMPI_RESULTS_DIR", &results)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(&["--cache-budgets", "0,1024", "--repeat", "2"]);
    assert!(out.status.success(), "bench --cache-budgets failed:\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("bytes and opened outputs equal under every budget: true"));
    let name = model.file_name().unwrap().to_string_lossy().into_owned();
    let json: Value = serde_json::from_str(&std::fs::read_to_string(results.join(format!("cache-budgets-{name}.json"))).unwrap()).unwrap();
    assert_eq!(json["same_bytes_and_outputs"], true);
    assert!(json.pointer("/provenance/commit").and_then(Value::as_str).is_some_and(|c| !c.is_empty()));
    let points = json["points"].as_array().expect("points");
    assert_eq!(points.iter().map(|p| p["budget_mib"].as_u64().unwrap()).collect::<Vec<_>>(), [0, 1024]);
    for p in points {
        assert_eq!(p["inference_secs"].as_array().unwrap().len(), 2);
        assert!(num(p, "/warm_secs") > 0.0 && num(p, "/server_peak_rss_bytes") > 0.0 && num(p, "/client_peak_rss_bytes") > 0.0);
    }
    // Nothing kept without a budget; the whole tiny model's weights within 1 GiB.
    assert_eq!(num(&points[0], "/server_cache_bytes"), 0.0);
    assert!(num(&points[1], "/server_cache_bytes") > 0.0);

    let out = run(&["--cache-budgets", "0", "--repeat", "1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--repeat must be at least 2"));
}
