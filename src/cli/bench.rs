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
    /// Which micro-benchmark suite to run (or use --compare).
    #[arg(long, value_enum, required_unless_present_any = ["compare", "scale"])]
    pub suite: Option<Suite>,
    /// Private BERT under the fastlmpi profile and this one (`bolt`), side by side.
    #[arg(long, conflicts_with = "suite")]
    pub compare: Option<String>,
    /// Cost against the sequence length: one private inference per --lengths value (server in its
    /// own process), per-operator growth exponents, results/scale-<model>.json and .svg.
    #[arg(long, conflicts_with_all = ["suite", "compare"])]
    pub scale: bool,
    /// Lengths for --scale (default 8,16,32,64,128,256,512; 128 with --large).
    #[arg(long, value_delimiter = ',')]
    pub lengths: Option<Vec<usize>>,
    /// --scale on a random BERT-large checkpoint (24 × 1024, 16 heads, FFN 4096; written to
    /// <models>/bert-large-random on first use) instead of --model.
    #[arg(long, requires = "scale")]
    pub large: bool,
    /// Server's encoded-weight cache for --scale, MiB (0 = encode per call, as `serve` by default).
    #[arg(long, default_value_t = 0)]
    pub weight_cache_mib: usize,
    /// With --scale: instead of the length sweep, one session of --repeat inferences at the first
    /// --lengths value (default 128) per server cache budget (MiB), e.g. 0,256,1024: time against
    /// memory, results/cache-budgets-<model>.json.
    #[arg(long, value_delimiter = ',', requires = "scale")]
    pub cache_budgets: Option<Vec<usize>>,
    /// Inferences per session for --cache-budgets (the first fills the cache).
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Model for --compare (minilm-l6, mpnet-base, bert-base = the BERT-base shape, or a folder).
    #[arg(long, default_value = "mpnet-base")]
    pub model: String,
    /// Do not download a known model when it is missing.
    #[arg(long)]
    pub no_fetch: bool,
    /// Padded sequence length for --compare (BOLT's benchmark uses 128).
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
    /// Run only the first L layers and extrapolate to the model's depth (marked as extrapolated;
    /// --scale defaults to 1).
    #[arg(long)]
    pub layers: Option<usize>,
    /// Simulated link for --compare: local, lan, wan or BW,RTT.
    #[arg(long, default_value = "local")]
    pub net: String,
    /// Socket timeout in seconds for --compare.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Batch sizes (OT and toolkit suites), e.g. 65536,1048576.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1usize << 16, 1 << 20])]
    pub sizes: Vec<usize>,
    /// Random-COT counts of the OT suite's setup-included runs (both backends).
    #[arg(long, value_delimiter = ',', default_values_t = vec![1usize << 20, 1 << 24])]
    pub cot_sizes: Vec<usize>,
    /// OT backend of --compare for both profiles: iknp or silent (default: each profile's own,
    /// silent for fastlmpi, iknp for bolt as BOLT's code; the OT and toolkit suites run both).
    #[arg(long)]
    pub ot: Option<String>,
    /// Print the JSON record to stdout as well.
    #[arg(long)]
    pub json: bool,
}

/// The sentence every --compare run uses (padded to --seq-len).
/// A passage longer than 128 tokens, truncated to `--seq-len`: every position is a real token, so
/// no attention key is masked and the SoftMax does the full `n × n` work of BOLT's benchmark.
pub(super) const BENCH_PASSAGE: &str = "The committee postponed its decision until further evidence could be gathered and reviewed. \
Members of the public who attended the hearing were told that the new report, commissioned last spring from an \
independent panel of engineers, economists and environmental scientists, would not be ready before the end of the \
year. Several speakers argued that the delay would raise the cost of the bridge, while others welcomed the chance \
to study the alternatives more carefully, including a tunnel under the river, an expanded ferry service and a \
smaller crossing further upstream. The chair promised that every written submission would be published online, \
that the panel would hold two more open meetings in the spring, and that the final vote would take place only \
after the council had debated the report in full session.";

fn run_compare(args: &BenchArgs, other: &str) -> Result<()> {
    use crate::bench::compare;
    let mut profiles = [crate::engine::Profile::fastlmpi(), crate::engine::Profile::parse(other)?];
    if let Some(ot) = &args.ot {
        let ot = crate::ot::OtBackend::parse(ot)?;
        profiles = profiles.map(|p| p.with_ot(ot));
    }
    let resolved = crate::model::resolve(&args.model, !args.no_fetch)?;
    if let Some(note) = &resolved.note {
        eprintln!("note: {note}");
    }
    let model = crate::model::Model::load(&resolved.dir)?;
    let tok = model.public.tokenizer.encode_padded(BENCH_PASSAGE, args.seq_len.max(1), true, Some(args.seq_len))?;
    let depth = model.config().num_hidden_layers;
    let layers = args.layers.unwrap_or(depth);
    let link = crate::net::shaping::Link::parse(&args.net)?;
    let mut runs = Vec::new();
    for p in &profiles {
        eprintln!("bench: profile {} on {} ({} of {} layers, {} tokens, net {})", p.name(), resolved.name, layers, depth, tok.len(), args.net);
        let r = compare::run_profile(&model, &tok, p, layers, link, std::time::Duration::from_secs(args.timeout.max(1)))?;
        eprintln!("bench: {} done in {:.1} s", p.name(), r.wall_secs);
        runs.push(r);
    }
    let cmp = compare::Comparison {
        model: resolved.name.clone(),
        seq_len: tok.len(),
        tokens: tok.num_attended(),
        net: args.net.clone(),
        runs,
        published: compare::published(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        provenance: crate::bench::provenance::Provenance::current(),
        process_peak_rss_bytes: crate::engine::report::peak_rss_bytes(),
    };
    let stamp = crate::bench::provenance::utc_timestamp(std::time::SystemTime::now(), false);
    let (json, svg) = compare::write_results(&super::results_dir(), &stamp, &cmp)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&cmp).map_err(|e| Error::protocol("json", e.to_string()))?);
    } else {
        println!("model {} ({} tokens padded to {}), net {}", cmp.model, cmp.tokens, cmp.seq_len, cmp.net);
        print!("{}", compare::table(&cmp.runs, link));
    }
    eprintln!("wrote {} and {}", json.display(), svg.display());
    Ok(())
}

pub fn run(args: &BenchArgs) -> Result<()> {
    if let Some(budgets) = &args.cache_budgets {
        return super::budgets::run_budgets(args, budgets);
    }
    if args.scale {
        return super::scale::run_scale(args);
    }
    if let Some(other) = &args.compare {
        return run_compare(args, other);
    }
    let suite = args.suite.ok_or_else(|| Error::Input("bench needs --suite, --compare or --scale".into()))?;
    let (name, record) = match suite {
        Suite::Ot => ("ot-bench", crate::bench::ot::run_ot_bench(&args.cot_sizes, &args.sizes)?),
        Suite::Toolkit => ("toolkit-bench", crate::bench::toolkit::run_toolkit_bench(&args.sizes)?),
        Suite::Linear => {
            use crate::bench::linear::{bert_base_coeff_shapes, bert_base_shapes, run_coeff_bench, run_linear_bench};
            let mut record = run_linear_bench(&bert_base_shapes(128), &[Packing::Rfcp, Packing::Bsgs])?;
            let coeff_shapes: Vec<_> = bert_base_coeff_shapes(128).into_iter().chain(bert_base_coeff_shapes(8)).collect();
            record["coeff"] = run_coeff_bench(&coeff_shapes, 40)?;
            ("linear-bench", record)
        }
    };
    let dir = super::results_dir();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let path = dir.join(format!("{name}.json"));
    let mut record = record;
    if let Some(map) = record.as_object_mut() {
        let stamp = serde_json::to_value(crate::bench::provenance::Provenance::current()).map_err(|e| Error::protocol("json", e.to_string()))?;
        map.insert("provenance".into(), stamp);
    }
    let text = serde_json::to_string_pretty(&record).map_err(|e| Error::protocol("json", e.to_string()))?;
    std::fs::write(&path, &text).map_err(|e| Error::io(&path, e))?;
    if args.json {
        println!("{text}");
    }
    eprintln!("wrote {}", path.display());
    Ok(())
}
