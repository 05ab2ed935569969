//! The module layering of `docs/DESIGN.md`, checked on the source: every `crate::…` path in a
//! module names only modules of its own layer or of the layers below it, `approx` and `model`
//! name no cryptography, and inside `engine` the per-party state depends on neither the block
//! functions nor the session driver (no import circle).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The layer a source file belongs to: the top-level module, or `proto::<sub>` inside `proto`.
fn layer_of(rel: &Path) -> String {
    let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
    match parts.as_slice() {
        [top, sub, ..] if top == "proto" && sub != "mod" => format!("proto::{sub}"),
        [top, ..] => top.clone(),
        [] => String::new(),
    }
}

/// What each layer may name (besides itself).
fn allowed(layer: &str) -> Option<&'static [&'static str]> {
    const BASE: &[&str] = &["error", "share"];
    Some(match layer {
        "error" | "lib" | "main" => &[],
        "share" => &["error"],
        "net" => BASE,
        "he" | "ot" => &["error", "share", "net"],
        "approx" => &["error"],
        "model" => &["error", "share", "approx"],
        "data" => &["error", "share", "approx", "model"],
        "proto" | "proto::ctx" => &["error", "share", "net", "ot", "proto::ctx", "proto::toolkit"],
        "proto::toolkit" => &["error", "share", "net", "ot", "proto::ctx"],
        "proto::linear" => &["error", "share", "net", "ot", "he", "proto::ctx", "proto::toolkit"],
        "proto::nonlinear" => &["error", "share", "net", "ot", "he", "approx", "model", "proto::ctx", "proto::toolkit", "proto::linear"],
        "proto::bolt" => &["error", "share", "net", "ot", "he", "approx", "model", "proto::ctx", "proto::toolkit", "proto::nonlinear"],
        "engine" => &[
            "error", "share", "net", "ot", "he", "approx", "model", "proto", "proto::ctx", "proto::toolkit", "proto::linear",
            "proto::nonlinear", "proto::bolt",
        ],
        "bench" => &[
            "error", "share", "net", "ot", "he", "approx", "model", "data", "proto", "proto::ctx", "proto::toolkit",
            "proto::linear", "proto::nonlinear", "proto::bolt", "engine",
        ],
        "cli" => &[
            "error", "share", "net", "ot", "he", "approx", "model", "data", "proto", "proto::ctx", "proto::toolkit",
            "proto::linear", "proto::nonlinear", "proto::bolt", "engine", "bench",
        ],
        _ => return None,
    })
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("readable source folder") {
        let path = entry.expect("readable entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without line comments (doc comments mention higher layers freely).
fn code_of(path: &Path) -> String {
    let text = fs::read_to_string(path).expect("readable source file");
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// The layers named by `crate::…` paths in `code` (`crate::proto::x` → `proto::x`).
fn named_layers(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let ident = |s: &str| s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
        let top = ident(rest);
        if top == "proto" {
            let after = &rest[top.len()..];
            let sub = after.strip_prefix("::").map(ident).unwrap_or_default();
            found.insert(if sub.is_empty() || sub.chars().next().is_some_and(|c| c.is_uppercase()) { top } else { format!("proto::{sub}") });
        } else if !top.is_empty() && top.chars().next().is_some_and(|c| c.is_lowercase()) {
            found.insert(top);
        }
    }
    found
}

#[test]
fn every_module_names_only_its_own_and_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 50, "found only {} source files", files.len());
    let mut violations = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).expect("file under src");
        let layer = layer_of(rel);
        let Some(ok) = allowed(&layer) else {
            violations.push(format!("{}: layer `{layer}` is not in the layer table", rel.display()));
            continue;
        };
        for named in named_layers(&code_of(file)) {
            if named != layer && !ok.contains(&named.as_str()) {
                violations.push(format!("{}: `{layer}` names `crate::{named}`", rel.display()));
            }
        }
    }
    assert!(violations.is_empty(), "layering violations:\n{}", violations.join("\n"));
}

#[test]
fn the_engine_state_uses_neither_blocks_nor_session() {
    let engine = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/engine");
    let state = code_of(&engine.join("state.rs"));
    let blocks = code_of(&engine.join("blocks.rs"));
    for needle in ["super::session", "super::blocks", "engine::session", "engine::blocks"] {
        assert!(!state.contains(needle), "engine/state.rs uses {needle}");
    }
    for needle in ["super::session", "engine::session"] {
        assert!(!blocks.contains(needle), "engine/blocks.rs uses {needle}");
    }
}

#[test]
fn the_layer_check_sees_a_violation() {
    // The checker itself must be able to fail: a toolkit file naming a non-linear layer.
    let named = named_layers("use crate::proto::nonlinear::gelu::gelu;\nuse crate::proto::ctx::Party;");
    let ok = allowed("proto::toolkit").expect("toolkit is in the table");
    assert!(named.iter().any(|n| !ok.contains(&n.as_str())));
    assert_eq!(layer_of(Path::new("proto/toolkit/cmp.rs")), "proto::toolkit");
    assert_eq!(layer_of(Path::new("proto/bolt.rs")), "proto::bolt");
    assert_eq!(layer_of(Path::new("engine/state.rs")), "engine");
}
