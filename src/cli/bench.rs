//! `fastlmpi bench`: building-block micro-benchmarks, each writing JSON under `results/`.

use clap::{Args, ValueEnum};

use crate::error::{Error, Result};
use crate::proto::linear::Packing;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Suite {
    /// OT extension throughput (random, correlated, chosen, 1-of-16).
    Ot,
    /// Comparison, truncation, B2A, multiplication, field→ring.
    Toolkit,
    /// HE linear layers and attention products on the BERT-base shapes, both packings.
    Linear,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Which micro-benchmark suite to run.
    #[arg(long, value_enum)]
    pub suite: Suite,
    /// Batch sizes (OT and toolkit suites), e.g. 65536,1048576.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1usize << 16, 1 << 20])]
    pub sizes: Vec<usize>,
    /// Print the JSON record to stdout as well.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &BenchArgs) -> Result<()> {
    let (name, record) = match args.suite {
        Suite::Ot => ("ot-bench", crate::bench::ot::run_ot_bench(&args.sizes)?),
        Suite::Toolkit => ("toolkit-bench", crate::bench::toolkit::run_toolkit_bench(&args.sizes)?),
        Suite::Linear => ("linear-bench", crate::bench::linear::run_linear_bench(&crate::bench::linear::bert_base_shapes(128), &[Packing::Rfcp, Packing::Bsgs])?),
    };
    let dir = super::results_dir();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let path = dir.join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(&record).map_err(|e| Error::protocol("json", e.to_string()))?;
    std::fs::write(&path, &text).map_err(|e| Error::io(&path, e))?;
    if args.json {
        println!("{text}");
    }
    eprintln!("wrote {}", path.display());
    Ok(())
}
