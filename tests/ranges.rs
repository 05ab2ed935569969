//! Activation ranges of the real checkpoints lie inside the private protocols' domains
//! (`fastlmpi ranges`; recorded in `results/ranges-<model>.json`).

use fastlmpi::cli::ranges::ranges_report;
use fastlmpi::model::{resolve, Model};

fn load(name: &str) -> Model {
    let dir = match resolve(name, false) {
        Ok(r) => r.dir,
        Err(e) => panic!("model `{name}` is not available ({e}); fetch it with `scripts/fetch-models.sh {name}`"),
    };
    Model::load(&dir).unwrap()
}

fn assert_inside(name: &str) {
    let model = load(name);
    let report = ranges_report(name, &model, None, 0).unwrap();
    for c in &report.checks {
        println!("{:<58} observed [{:.4e}, {:.4e}] domain [{:.4e}, {:.4e})", c.what, c.observed.0, c.observed.1, c.domain.0, c.domain.1);
    }
    assert_eq!(report.ranges.sentences, 20);
    let bad: Vec<_> = report.checks.iter().filter(|c| !c.ok).collect();
    assert!(bad.is_empty(), "outside the protocol domains: {bad:?}");
    // The measured values are real measurements, not the domain bounds themselves.
    assert!(report.ranges.layernorm_variance.max > report.ranges.layernorm_variance.min);
    assert!(report.ranges.softmax_row_sum.min >= 1.0 - 1e-9);
}

#[test]
fn minilm_ranges_are_inside_the_protocol_domains() {
    assert_inside("minilm-l6");
}

/// MPNet (BERT-base shape): ~1 min in debug.
#[test]
#[ignore]
fn mpnet_ranges_are_inside_the_protocol_domains() {
    assert_inside("mpnet-base");
}
