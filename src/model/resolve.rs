//! Turning a `--model` argument (a known name or a folder) into a checkpoint folder.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Error, Result};

/// Names `resolve` understands. `bert-base` is the paper's shape; see [`resolve`].
pub const KNOWN_MODELS: &[&str] = &["minilm-l6", "mpnet-base", "bert-base"];

/// Model used when the user names none: small, real and quick to fetch.
pub const DEFAULT_MODEL: &str = "minilm-l6";

/// Files without which a folder is not a loadable checkpoint.
pub const CHECKPOINT_FILES: &[&str] = &["config.json", "model.safetensors", "tokenizer.json"];

/// The fetch script, located through the source tree this crate was built from.
pub fn fetch_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts").join("fetch-models.sh")
}

/// Where named models live: `$FASTLMPI_MODELS_DIR`, else `<repo>/models`.
pub fn models_dir() -> PathBuf {
    match std::env::var_os("FASTLMPI_MODELS_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("models"),
    }
}

/// The outcome of resolving a `--model` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    /// The known name, or the folder's name for a path.
    pub name: String,
    /// The checkpoint folder (config.json, model.safetensors, tokenizer.json).
    pub dir: PathBuf,
    /// Something the user should be told, e.g. which weights stand in for `bert-base`.
    pub note: Option<String>,
}

/// Resolve a model name or folder path against [`models_dir`]. See [`resolve_in`].
pub fn resolve(name_or_path: &str, fetch_if_missing: bool) -> Result<ResolvedModel> {
    resolve_in(&models_dir(), name_or_path, fetch_if_missing)
}

/// Resolve against an explicit models folder.
///
/// * a path (contains a separator, starts with `.` or `~`, or names an existing folder) → that folder
///   (known names win over a same-named folder in the working directory: write `./NAME` for the folder);
/// * `minilm-l6`, `mpnet-base` → `MODELS/NAME/`, fetched with the fetch script when absent and allowed;
/// * `bert-base` → `MODELS/bert-base/` if a user placed a checkpoint there, otherwise the `mpnet-base`
///   weights (same 12×768 shape), with a note saying so;
/// * anything else → `Error::Input` listing the known names.
pub fn resolve_in(models: &Path, name_or_path: &str, fetch_if_missing: bool) -> Result<ResolvedModel> {
    let arg = name_or_path.trim();
    if arg.is_empty() {
        return Err(Error::Input(format!("empty model name; known models: {}", KNOWN_MODELS.join(", "))));
    }
    if !KNOWN_MODELS.contains(&arg) && looks_like_path(arg) {
        return resolve_path(Path::new(arg));
    }
    match arg {
        "minilm-l6" | "mpnet-base" => resolve_named(models, arg, fetch_if_missing, None),
        "bert-base" => {
            let own = models.join("bert-base");
            if is_checkpoint(&own) {
                return Ok(ResolvedModel { name: arg.to_string(), dir: own, note: None });
            }
            let note = format!(
                "no checkpoint in {}; `bert-base` uses the all-mpnet-base-v2 weights (mpnet-base: same \
                 12 layers x 768 hidden x 12 heads x FFN 3072 shape, plus a relative position bias)",
                own.display()
            );
            resolve_named(models, "mpnet-base", fetch_if_missing, Some(note))
        }
        _ => Err(Error::Input(format!(
            "unknown model `{arg}`; known models: {} (or give the path of a Hugging Face BERT/MPNet folder)",
            KNOWN_MODELS.join(", ")
        ))),
    }
}

fn looks_like_path(arg: &str) -> bool {
    arg.contains(std::path::MAIN_SEPARATOR)
        || arg.contains('/')
        || arg.starts_with('.')
        || arg.starts_with('~')
        || Path::new(arg).is_dir()
}

fn resolve_path(dir: &Path) -> Result<ResolvedModel> {
    if !dir.is_dir() {
        return Err(Error::Model(format!("model folder {} does not exist", dir.display())));
    }
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| dir.display().to_string());
    Ok(ResolvedModel { name, dir: dir.to_path_buf(), note: None })
}

/// True when `dir` holds every file of [`CHECKPOINT_FILES`].
pub fn is_checkpoint(dir: &Path) -> bool {
    CHECKPOINT_FILES.iter().all(|f| dir.join(f).is_file())
}

fn resolve_named(models: &Path, name: &str, fetch_if_missing: bool, note: Option<String>) -> Result<ResolvedModel> {
    let dir = models.join(name);
    if !is_checkpoint(&dir) {
        if !fetch_if_missing {
            return Err(Error::Model(format!(
                "model `{name}` is not in {}; fetch it with `{} {name}`",
                dir.display(),
                fetch_script().display()
            )));
        }
        run_fetch_script(models, name)?;
        if !is_checkpoint(&dir) {
            return Err(Error::Model(format!(
                "fetching `{name}` finished but {} still lacks one of {}",
                dir.display(),
                CHECKPOINT_FILES.join(", ")
            )));
        }
    }
    Ok(ResolvedModel { name: name.to_string(), dir, note })
}

fn run_fetch_script(models: &Path, name: &str) -> Result<()> {
    let script = fetch_script();
    if !script.is_file() {
        return Err(Error::Model(format!(
            "model `{name}` is missing and the fetch script {} is not available",
            script.display()
        )));
    }
    eprintln!("model `{name}` not found in {}; fetching it with {} {name}", models.display(), script.display());
    let status = Command::new("bash")
        .arg(&script)
        .arg(name)
        .env("FASTLMPI_MODELS_DIR", models)
        .status()
        .map_err(|e| Error::io(&script, e))?;
    if !status.success() {
        return Err(Error::Model(format!(
            "fetching model `{name}` failed ({status}); see the messages above, or run `{} {name}` by hand",
            script.display()
        )));
    }
    Ok(())
}
