//! Loading labelled sentences: the UCI set and user files.
//!
//! Split rule (all sources): sentence `i` of the loaded order is in the training split when `i` is
//! even and in the held-out test split when `i` is odd. For `uci` the order is amazon, imdb, yelp,
//! each file in its original order, so the split is fixed and reproducible.
//!
//! User files are read whole after a size check ([`MAX_FILE_BYTES`]) and may hold at most
//! [`MAX_ROWS`] sentences; formats:
//! * JSONL (`.jsonl`/`.ndjson`, or first non-blank character `{`): `{"text": "...", "label": L}` per line;
//! * JSON array (`.json`, or first non-blank character `[`): `[{"text": "...", "label": L}, ...]`
//!   (the format `scripts/fetch-data.sh` writes);
//! * CSV (anything else): `label,text` per record, RFC 4180 quoting; an unquoted text runs to the end
//!   of the line (so it may contain commas); a header `label,text` is skipped.
//!
//! `L` is `0`/`1` or `"negative"`/`"positive"` (also `"0"`/`"1"`). Texts have their whitespace
//! collapsed. Errors are `Error::Input` naming the file and the line (or record) at fault.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::{Error, Result};

/// Largest user file accepted, to bound memory.
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// Most sentences accepted from one source.
pub const MAX_ROWS: usize = 1_000_000;
/// The UCI files, in the order that defines sentence indices.
pub const UCI_SOURCES: [&str; 3] = ["amazon", "imdb", "yelp"];

/// One labelled sentence (`label`: 0 = negative, 1 = positive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Example {
    pub text: String,
    pub label: u8,
}

/// Which sentences of a data set to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Even-numbered sentences.
    Train,
    /// Odd-numbered sentences (held out from head training).
    Test,
    /// Every sentence.
    All,
}

impl Split {
    /// Whether sentence `index` belongs to this split.
    pub fn contains(self, index: usize) -> bool {
        match self {
            Split::Train => index % 2 == 0,
            Split::Test => index % 2 == 1,
            Split::All => true,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
            Split::All => "all",
        }
    }
}

/// A `--data` argument: the bundled UCI set or a user file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// `DATA/uci/{amazon,imdb,yelp}.json` under [`super::data_dir`].
    Uci,
    File(PathBuf),
}

impl DataSource {
    /// `uci` (any case) or a file path.
    pub fn parse(arg: &str) -> Result<DataSource> {
        let arg = arg.trim();
        if arg.is_empty() {
            return Err(Error::Input("empty --data; give `uci` or the path of a JSONL/CSV file".into()));
        }
        if arg.eq_ignore_ascii_case("uci") {
            Ok(DataSource::Uci)
        } else {
            Ok(DataSource::File(PathBuf::from(arg)))
        }
    }

    /// Short name used in metadata and result files.
    pub fn describe(&self) -> String {
        match self {
            DataSource::Uci => "uci".to_string(),
            DataSource::File(p) => p.display().to_string(),
        }
    }

    /// Load the sentences (UCI from [`super::data_dir`]).
    pub fn load(&self) -> Result<Dataset> {
        match self {
            DataSource::Uci => load_uci(&super::data_dir()),
            DataSource::File(p) => load_file(p),
        }
    }
}

/// Sentences in their defining order, with the origin (file or UCI part) of each contiguous range.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub name: String,
    pub examples: Vec<Example>,
    /// `(origin, number of sentences)` in order; the counts sum to `examples.len()`.
    pub parts: Vec<(String, usize)>,
}

impl Dataset {
    /// A data set with a single origin.
    pub fn single(name: impl Into<String>, examples: Vec<Example>) -> Dataset {
        let name = name.into();
        let parts = vec![(name.clone(), examples.len())];
        Dataset { name, examples, parts }
    }

    pub fn len(&self) -> usize {
        self.examples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// `(index, sentence)` pairs of a split, in order, at most `limit` of them.
    pub fn select(&self, split: Split, limit: Option<usize>) -> Vec<(usize, &Example)> {
        self.examples
            .iter()
            .enumerate()
            .filter(|(i, _)| split.contains(*i))
            .take(limit.unwrap_or(usize::MAX))
            .collect()
    }

    /// The origin (UCI part or file name) of sentence `index`.
    pub fn origin_of(&self, index: usize) -> &str {
        let mut end = 0;
        for (name, count) in &self.parts {
            end += count;
            if index < end {
                return name;
            }
        }
        &self.name
    }
}

/// Load `DATA/uci/{amazon,imdb,yelp}.json` in that order.
pub fn load_uci(data_dir: &Path) -> Result<Dataset> {
    let mut examples = Vec::new();
    let mut parts = Vec::new();
    for source in UCI_SOURCES {
        let path = data_dir.join("uci").join(format!("{source}.json"));
        if !path.is_file() {
            return Err(Error::Input(format!(
                "UCI data file {} is missing; fetch it with `scripts/fetch-data.sh` (or set FASTLMPI_DATA_DIR)",
                path.display()
            )));
        }
        let part = load_file(&path)?;
        parts.push((source.to_string(), part.len()));
        examples.extend(part.examples);
    }
    Ok(Dataset { name: "uci".into(), examples, parts })
}

/// File formats of [`load_file`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    JsonLines,
    JsonArray,
    Csv,
}

/// Load a user file, choosing the format from the extension or the first non-blank character.
pub fn load_file(path: &Path) -> Result<Dataset> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::Input(format!("data path {} is not a file", path.display())));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(Error::Input(format!(
            "data file {} is {} bytes, more than the limit of {} bytes",
            path.display(),
            meta.len(),
            MAX_FILE_BYTES
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::Input(format!(
            "data file {} is not valid UTF-8 (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })?;
    let examples = parse_text(&text, detect_format(path, &text))
        .map_err(|e| Error::Input(format!("{}: {}", path.display(), strip_input_prefix(e))))?;
    if examples.is_empty() {
        return Err(Error::Input(format!("data file {} holds no labelled sentences", path.display())));
    }
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
    Ok(Dataset::single(name, examples))
}

fn strip_input_prefix(e: Error) -> String {
    match e {
        Error::Input(msg) => msg,
        other => other.to_string(),
    }
}

/// The format of a file: extension first, then the first non-blank character.
pub fn detect_format(path: &Path, text: &str) -> FileFormat {
    let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "jsonl" | "ndjson" => return FileFormat::JsonLines,
        "json" => return FileFormat::JsonArray,
        "csv" => return FileFormat::Csv,
        _ => {}
    }
    match strip_bom(text).trim_start().chars().next() {
        Some('{') => FileFormat::JsonLines,
        Some('[') => FileFormat::JsonArray,
        _ => FileFormat::Csv,
    }
}

/// Parse file contents in a given format (pure; errors name the line or record).
pub fn parse_text(text: &str, format: FileFormat) -> Result<Vec<Example>> {
    let text = strip_bom(text);
    match format {
        FileFormat::JsonLines => parse_jsonl(text),
        FileFormat::JsonArray => parse_json_array(text),
        FileFormat::Csv => parse_csv(text),
    }
}

fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Collapse runs of whitespace to one space and trim.
pub fn normalize_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// JSONL: one `{"text", "label"}` object per non-blank line.
pub fn parse_jsonl(text: &str) -> Result<Vec<Example>> {
    let text = strip_bom(text);
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("line {}", i + 1);
        let value: Value =
            serde_json::from_str(line).map_err(|e| Error::Input(format!("{at}: not valid JSON ({e})")))?;
        push_row(&mut out, example_from_json(&value, &at)?, &at)?;
    }
    Ok(out)
}

/// A JSON array of `{"text", "label"}` objects.
pub fn parse_json_array(text: &str) -> Result<Vec<Example>> {
    let text = strip_bom(text);
    let value: Value = serde_json::from_str(text).map_err(|e| Error::Input(format!("not valid JSON ({e})")))?;
    let rows = value
        .as_array()
        .ok_or_else(|| Error::Input("expected a JSON array of {\"text\", \"label\"} objects".into()))?;
    if rows.len() > MAX_ROWS {
        return Err(too_many_rows());
    }
    let mut out = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let at = format!("record {}", i + 1);
        push_row(&mut out, example_from_json(row, &at)?, &at)?;
    }
    Ok(out)
}

fn example_from_json(value: &Value, at: &str) -> Result<Example> {
    let obj = value
        .as_object()
        .ok_or_else(|| Error::Input(format!("{at}: expected an object {{\"text\": ..., \"label\": ...}}")))?;
    let text = match obj.get("text") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(Error::Input(format!("{at}: \"text\" must be a string"))),
        None => return Err(Error::Input(format!("{at}: missing \"text\""))),
    };
    let label = match obj.get("label") {
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v @ (0 | 1)) => v as u8,
            _ => return Err(bad_label(at, &n.to_string())),
        },
        Some(Value::String(s)) => parse_label(s, at)?,
        Some(Value::Null) | None => return Err(Error::Input(format!("{at}: missing \"label\""))),
        Some(other) => return Err(bad_label(at, &other.to_string())),
    };
    Ok(Example { text: normalize_whitespace(text), label })
}

/// `0`/`1`/`negative`/`positive` (case-insensitive, surrounding spaces ignored).
pub fn parse_label(raw: &str, at: &str) -> Result<u8> {
    let label = raw.trim();
    if label.is_empty() {
        return Err(Error::Input(format!("{at}: empty label (expected 0/1 or negative/positive)")));
    }
    match label.to_ascii_lowercase().as_str() {
        "0" | "negative" => Ok(0),
        "1" | "positive" => Ok(1),
        _ => Err(bad_label(at, label)),
    }
}

fn bad_label(at: &str, got: &str) -> Error {
    Error::Input(format!("{at}: label {got} is not one of 0, 1, \"negative\", \"positive\""))
}

fn too_many_rows() -> Error {
    Error::Input(format!("more than {MAX_ROWS} sentences; split the file"))
}

fn push_row(out: &mut Vec<Example>, ex: Example, at: &str) -> Result<()> {
    if ex.text.is_empty() {
        return Err(Error::Input(format!("{at}: empty text")));
    }
    if out.len() >= MAX_ROWS {
        return Err(too_many_rows());
    }
    out.push(ex);
    Ok(())
}

/// CSV `label,text` (see the module doc for the quoting rules).
pub fn parse_csv(text: &str) -> Result<Vec<Example>> {
    let text = strip_bom(text);
    let mut reader = CsvReader { rest: text, line: 1 };
    let mut out = Vec::new();
    let mut first = true;
    while let Some((line, fields)) = reader.next_record()? {
        let at = format!("line {line}");
        let [label, text] = fields;
        let is_header = first && label.trim().eq_ignore_ascii_case("label") && text.trim().eq_ignore_ascii_case("text");
        first = false;
        if is_header {
            continue;
        }
        let ex = Example { text: normalize_whitespace(&text), label: parse_label(&label, &at)? };
        push_row(&mut out, ex, &at)?;
    }
    Ok(out)
}

/// A minimal reader for two-field CSV records; tracks 1-based line numbers for messages.
struct CsvReader<'a> {
    rest: &'a str,
    line: usize,
}

impl<'a> CsvReader<'a> {
    /// The next non-blank record as `(starting line, [label, text])`, or `None` at the end.
    fn next_record(&mut self) -> Result<Option<(usize, [String; 2])>> {
        loop {
            if self.rest.is_empty() {
                return Ok(None);
            }
            let (head, _) = split_line(self.rest);
            if head.trim().is_empty() {
                self.skip_line();
                continue;
            }
            let start = self.line;
            let at = format!("line {start}");
            let label = self.field_up_to_comma(&at)?;
            let text = self.last_field(&at)?;
            return Ok(Some((start, [label, text])));
        }
    }

    fn skip_line(&mut self) {
        let (_, rest) = split_line(self.rest);
        self.rest = rest;
        self.line += 1;
    }

    /// First field: quoted or up to the first comma, which must follow.
    fn field_up_to_comma(&mut self, at: &str) -> Result<String> {
        let field = if self.rest.trim_start_matches([' ', '\t']).starts_with('"') {
            self.rest = self.rest.trim_start_matches([' ', '\t']);
            let f = self.quoted(at)?;
            self.rest = self.rest.trim_start_matches([' ', '\t']);
            f
        } else {
            let (line, _) = split_line(self.rest);
            let end = line.find(',').unwrap_or(line.len());
            let f = line[..end].to_string();
            self.rest = &self.rest[end..];
            f
        };
        match self.rest.strip_prefix(',') {
            Some(rest) => {
                self.rest = rest;
                Ok(field)
            }
            None => Err(Error::Input(format!("{at}: expected `label,text` (no comma after the label)"))),
        }
    }

    /// Second field: quoted (then only blanks may follow on its line) or the rest of the line verbatim.
    fn last_field(&mut self, at: &str) -> Result<String> {
        let trimmed = self.rest.trim_start_matches([' ', '\t']);
        if trimmed.starts_with('"') {
            self.rest = trimmed;
            let field = self.quoted(at)?;
            let (tail, _) = split_line(self.rest);
            if !tail.trim().is_empty() {
                return Err(Error::Input(format!(
                    "line {}: unexpected text after the closing quote of the text field",
                    self.line
                )));
            }
            self.skip_line();
            Ok(field)
        } else {
            let (line, _) = split_line(self.rest);
            let field = line.to_string();
            self.skip_line();
            Ok(field)
        }
    }

    /// A quoted field starting at `"`: `""` is a literal quote; newlines inside are kept.
    fn quoted(&mut self, at: &str) -> Result<String> {
        let body = &self.rest[1..];
        let mut out = String::new();
        let mut chars = body.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' if matches!(chars.peek(), Some((_, '"'))) => {
                    out.push('"');
                    chars.next();
                }
                '"' => {
                    self.rest = &body[i + 1..];
                    return Ok(out);
                }
                '\n' => {
                    self.line += 1;
                    out.push('\n');
                }
                _ => out.push(c),
            }
        }
        Err(Error::Input(format!("{at}: unterminated quoted field")))
    }
}

/// Split off the first line (without its `\n` or `\r\n`); the rest starts after the newline.
fn split_line(s: &str) -> (&str, &str) {
    match s.find('\n') {
        Some(i) => (s[..i].strip_suffix('\r').unwrap_or(&s[..i]), &s[i + 1..]),
        None => (s.strip_suffix('\r').unwrap_or(s), ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_rule_is_even_train_odd_test() {
        let ds = Dataset::single("t", (0..5).map(|i| Example { text: format!("s{i}"), label: (i % 2) as u8 }).collect());
        let idx = |s, l| ds.select(s, l).iter().map(|(i, _)| *i).collect::<Vec<_>>();
        assert_eq!(idx(Split::Train, None), vec![0, 2, 4]);
        assert_eq!(idx(Split::Test, None), vec![1, 3]);
        assert_eq!(idx(Split::All, Some(2)), vec![0, 1]);
    }

    #[test]
    fn origin_follows_parts() {
        let ex = Example { text: "x".into(), label: 0 };
        let ds = Dataset { name: "uci".into(), examples: vec![ex; 5], parts: vec![("a".into(), 2), ("b".into(), 3)] };
        assert_eq!((ds.origin_of(1), ds.origin_of(2), ds.origin_of(4)), ("a", "b", "b"));
    }

    #[test]
    fn split_line_handles_crlf() {
        assert_eq!(split_line("a,b\r\nc"), ("a,b", "c"));
        assert_eq!(split_line("last\r"), ("last", ""));
    }
}
