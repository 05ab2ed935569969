//! `fit-approx` driven through its clap arguments and `run` (the subcommand itself is wired
//! by the CLI module; the file is included here so it is compiled and tested on its own).

use clap::Parser;
#[allow(unused_imports)]
use fastlmpi::{approx, Error, Result};

#[path = "../src/cli/fit_approx.rs"]
#[allow(dead_code)]
mod fit_approx;

use fit_approx::FitApproxArgs;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: FitApproxArgs,
}

fn parse(line: &str) -> FitApproxArgs {
    let words = std::iter::once("fit-approx").chain(line.split_whitespace());
    Cli::try_parse_from(words).unwrap().args
}

#[test]
#[ignore = "exploration helper: prints tables for several settings"]
fn explore() {
    let line = std::env::var("FIT_ARGS").unwrap_or_else(|_| "gelu".into());
    let file = fit_approx::build_file(&parse(&line)).unwrap();
    print!("{}", fit_approx::format_table(&file));
}
