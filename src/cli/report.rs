//! `fastlmpi report`: writes the README's "Measured" section from the records under
//! `results/recorded/` (or checks that it is up to date).

use std::path::PathBuf;

use crate::approx::{recorded_set_path, ApproxFile};
use crate::bench::readme::{render, splice, BEGIN, END, FULL, QUICK};
use crate::{Error, Result};

/// The approximation sets the section shows (GeLU and tanh are the engine's; exp for SoftMax).
const SETS: [&str; 3] = ["gelu", "tanh", "exp"];

#[derive(clap::Args, Debug, Clone)]
pub struct ReportArgs {
    /// Folder of the records (default: results/recorded, or results/quick with --quick).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The records `scripts/record.sh --quick` writes (cheap settings) instead of the full ones.
    #[arg(long)]
    pub quick: bool,
    /// README to update between its measured:begin / measured:end markers.
    #[arg(long, default_value = "README.md")]
    pub readme: PathBuf,
    /// Write the section (with its markers) to this file instead of the README.
    #[arg(long, conflicts_with = "check")]
    pub out: Option<PathBuf>,
    /// Change nothing; fail if the README's section differs from what the records give.
    #[arg(long)]
    pub check: bool,
}

pub fn run(args: &ReportArgs) -> Result<()> {
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(if args.quick { "results/quick" } else { "results/recorded" }));
    if !dir.is_dir() {
        return Err(Error::Input(format!("no records folder {}", dir.display())));
    }
    let sets = SETS.iter().map(|&n| ApproxFile::load(&recorded_set_path(n)).map(|f| (n, f))).collect::<Result<Vec<_>>>()?;
    let section = render(&dir, if args.quick { &QUICK } else { &FULL }, &sets)?;
    if let Some(out) = &args.out {
        std::fs::write(out, format!("{BEGIN}\n{section}{END}\n")).map_err(|e| Error::io(out, e))?;
        println!("{section}");
        eprintln!("wrote {}", out.display());
        return Ok(());
    }
    let readme = std::fs::read_to_string(&args.readme).map_err(|e| Error::io(&args.readme, e))?;
    let updated = splice(&readme, &section)?;
    if args.check {
        if updated != readme {
            return Err(Error::Input(format!(
                "{}'s measured section differs from the records in {}; run `fastlmpi report`",
                args.readme.display(),
                dir.display()
            )));
        }
        eprintln!("{} is up to date with {}", args.readme.display(), dir.display());
        return Ok(());
    }
    std::fs::write(&args.readme, updated).map_err(|e| Error::io(&args.readme, e))?;
    print!("{section}");
    eprintln!("updated {}", args.readme.display());
    Ok(())
}
