//! `fastlmpi make-model`: a random checkpoint of a full BERT shape (see `model::shapes`), usable
//! with `--model DIR` by every command. Cost figures measured on it are the real costs of the
//! shape, because the protocols are data-oblivious.

use std::path::PathBuf;

use clap::Args;

use crate::error::Result;
use crate::model::shapes::{write_random_checkpoint, BertShape, INITIALIZER_RANGE};

#[derive(Args, Debug, Clone)]
pub struct MakeModelArgs {
    /// Shape: bert-base (12 × 768, 12 heads, FFN 3072) or bert-large (24 × 1024, 16 heads, FFN 4096).
    #[arg(long)]
    pub shape: String,
    /// Write only the first L encoder layers (config.json then says L layers).
    #[arg(long)]
    pub layers: Option<usize>,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Folder to write (created if needed; existing files of the same names are replaced).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: &MakeModelArgs) -> Result<()> {
    let mut shape = BertShape::parse(&args.shape)?;
    if let Some(l) = args.layers {
        shape = shape.with_layers(l)?;
    }
    let t0 = std::time::Instant::now();
    let bytes = write_random_checkpoint(&args.out, &shape, args.seed)?;
    println!(
        "wrote {} ({} layers × {}, {} heads, FFN {}, {} positions, vocabulary {}; {} parameters, {:.2} GiB) in {:.1} s",
        args.out.display(),
        shape.layers,
        shape.hidden,
        shape.heads,
        shape.intermediate,
        shape.max_positions,
        shape.vocab,
        shape.parameters(),
        bytes as f64 / (1u64 << 30) as f64,
        t0.elapsed().as_secs_f64()
    );
    println!(
        "random weights (normal, std {INITIALIZER_RANGE}; zero biases; LayerNorm γ = 1, β = 0; seed {}): outputs mean nothing, \
         but the protocols are data-oblivious, so time, bytes and rounds measured on this folder are the real costs of the shape",
        args.seed
    );
    Ok(())
}
