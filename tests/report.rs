//! The README's "Measured" section is what `fastlmpi report` makes of `results/recorded/`:
//! nobody types figures into it by hand.

use std::process::{Command, Stdio};

#[test]
fn readme_measured_section_matches_the_records() {
    let out = Command::new(env!("CARGO_BIN_EXE_fastlmpi"))
        .args(["report", "--check"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
