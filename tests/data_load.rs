//! Loaders for user files (JSONL, JSON array, CSV) and the UCI layout, on small files written here.

use std::path::PathBuf;

use fastlmpi::data::load::{load_file, load_uci, parse_csv, parse_jsonl, MAX_FILE_BYTES, UCI_SOURCES};
use fastlmpi::data::{DataSource, Example, Split};
use fastlmpi::Error;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fastlmpi-data-load-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ex(text: &str, label: u8) -> Example {
    Example { text: text.into(), label }
}

fn input_error(r: fastlmpi::Result<Vec<Example>>) -> String {
    match r {
        Err(Error::Input(msg)) => msg,
        other => panic!("expected an input error, got {other:?}"),
    }
}

#[test]
fn jsonl_accepts_numeric_and_named_labels() {
    let text = "{\"text\": \"Great  phone!\", \"label\": 1}\n\n{\"text\": \"meh\", \"label\": \"Negative\"}\r\n\
                {\"label\": \"positive\", \"text\": \" ok\\tfine \"}\n{\"text\": \"x\", \"label\": \"0\"}\n";
    let rows = parse_jsonl(text).unwrap();
    assert_eq!(rows, vec![ex("Great phone!", 1), ex("meh", 0), ex("ok fine", 1), ex("x", 0)]);
}

#[test]
fn jsonl_errors_name_the_line() {
    let cases = [
        ("{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\", \"label\": 2}\n", "line 2", "label 2"),
        ("{\"text\": \"a\", \"label\": 1}\n\n{\"text\": \"b\", \"label\": \"\"}\n", "line 3", "empty label"),
        ("{\"text\": \"a\"}\n", "line 1", "missing \"label\""),
        ("{\"text\": \"a\", \"label\": null}\n", "line 1", "missing \"label\""),
        ("{\"label\": 1}\n", "line 1", "missing \"text\""),
        ("{\"text\": 5, \"label\": 1}\n", "line 1", "must be a string"),
        ("{\"text\": \"   \", \"label\": 1}\n", "line 1", "empty text"),
        ("{\"text\": \"a\", \"label\": 1}\n{\"text\": \"a\", \"label\": 1\n", "line 2", "not valid JSON"),
        ("[1, 2]\n", "line 1", "expected an object"),
        ("{\"text\": \"a\", \"label\": 0.5}\n", "line 1", "label 0.5"),
        ("{\"text\": \"a\", \"label\": \"neutral\"}\n", "line 1", "neutral"),
    ];
    for (text, line, what) in cases {
        let msg = input_error(parse_jsonl(text));
        assert!(msg.starts_with(&format!("{line}:")) && msg.contains(what), "{text:?} gave {msg:?}");
    }
}

#[test]
fn csv_handles_quotes_commas_header_and_crlf() {
    let text = "\u{feff}label,text\r\n\
                1,\"Great, really \"\"great\"\" phone\"\r\n\
                0,unquoted, with a comma and a \"quote\"\n\
                \n\
                \"negative\",\"spans\ntwo lines\"\n\
                positive , plain \n\
                1,\"\"\"quoted\"\" start\"   \n";
    let rows = parse_csv(text).unwrap();
    assert_eq!(
        rows,
        vec![
            ex("Great, really \"great\" phone", 1),
            ex("unquoted, with a comma and a \"quote\"", 0),
            ex("spans two lines", 0),
            ex("plain", 1),
            ex("\"quoted\" start", 1),
        ]
    );
}

#[test]
fn csv_errors_name_the_line() {
    let cases = [
        ("1,fine\n2,bad label\n", "line 2", "label 2"),
        ("1,fine\n,no label\n", "line 2", "empty label"),
        ("1,fine\n\n1\n", "line 3", "no comma"),
        ("1,fine\n0,\n", "line 2", "empty text"),
        ("1,\"never closed\n0,next\n", "line 1", "unterminated"),
        ("1,\"a\nb\" trailing\n", "line 2", "after the closing quote"),
        ("1,ok\n\"1\"x,text\n", "line 2", "no comma"),
    ];
    for (text, line, what) in cases {
        let msg = input_error(parse_csv(text));
        assert!(msg.starts_with(&format!("{line}:")) && msg.contains(what), "{text:?} gave {msg:?}");
    }
}

#[test]
fn files_are_detected_by_extension_or_content() {
    let dir = scratch("detect");
    let jsonl = dir.join("mine.jsonl");
    std::fs::write(&jsonl, "{\"text\": \"good\", \"label\": 1}\n").unwrap();
    let sniffed = dir.join("mine.txt");
    std::fs::write(&sniffed, "\n  {\"text\": \"bad\", \"label\": 0}\n").unwrap();
    let array = dir.join("arr.json");
    std::fs::write(&array, "[{\"text\": \"a\", \"label\": 1},\n{\"text\": \"b\", \"label\": 0}]").unwrap();
    let csv = dir.join("mine.csv");
    std::fs::write(&csv, "0,\"bad, very\"\n").unwrap();
    assert_eq!(load_file(&jsonl).unwrap().examples, vec![ex("good", 1)]);
    assert_eq!(load_file(&sniffed).unwrap().examples, vec![ex("bad", 0)]);
    assert_eq!(load_file(&array).unwrap().examples, vec![ex("a", 1), ex("b", 0)]);
    let ds = DataSource::parse(csv.to_str().unwrap()).unwrap().load().unwrap();
    assert_eq!((ds.name.as_str(), ds.examples.clone()), ("mine", vec![ex("bad, very", 0)]));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn file_errors_name_the_file_and_record() {
    let dir = scratch("errors");
    let bad = dir.join("bad.csv");
    std::fs::write(&bad, "1,ok\nx,bad\n").unwrap();
    let msg = match load_file(&bad) {
        Err(Error::Input(m)) => m,
        other => panic!("{other:?}"),
    };
    assert!(msg.contains("bad.csv") && msg.contains("line 2"), "{msg}");

    let arr = dir.join("arr.json");
    std::fs::write(&arr, "[{\"text\": \"a\", \"label\": 1}, {\"text\": \"\", \"label\": null}]").unwrap();
    assert!(matches!(load_file(&arr), Err(Error::Input(m)) if m.contains("record 2")));

    let empty = dir.join("empty.csv");
    std::fs::write(&empty, "label,text\n\n").unwrap();
    assert!(matches!(load_file(&empty), Err(Error::Input(m)) if m.contains("no labelled sentences")));

    let binary = dir.join("bin.csv");
    std::fs::write(&binary, [b'1', b',', 0xff, 0xfe, b'\n']).unwrap();
    assert!(matches!(load_file(&binary), Err(Error::Input(m)) if m.contains("UTF-8")));

    let huge = dir.join("huge.csv");
    let f = std::fs::File::create(&huge).unwrap();
    f.set_len(MAX_FILE_BYTES + 1).unwrap(); // sparse: no real disk use
    assert!(matches!(load_file(&huge), Err(Error::Input(m)) if m.contains("limit")));

    assert!(matches!(load_file(&dir.join("missing.csv")), Err(Error::Io { .. })));
    assert!(matches!(DataSource::parse("  "), Err(Error::Input(_))));
    assert_eq!(DataSource::parse("UCI").unwrap(), DataSource::Uci);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn uci_layout_concatenates_sources_in_order() {
    let dir = scratch("uci");
    let missing = load_uci(&dir).unwrap_err();
    assert!(matches!(&missing, Error::Input(m) if m.contains("fetch-data.sh")), "{missing}");
    std::fs::create_dir_all(dir.join("uci")).unwrap();
    for (k, source) in UCI_SOURCES.iter().enumerate() {
        let rows: Vec<String> =
            (0..3).map(|i| format!("{{\"text\": \"{source} {i}\", \"label\": {}}}", (i + k) % 2)).collect();
        std::fs::write(dir.join("uci").join(format!("{source}.json")), format!("[{}]", rows.join(",\n"))).unwrap();
    }
    let ds = load_uci(&dir).unwrap();
    assert_eq!(ds.len(), 9);
    assert_eq!(ds.examples[3], ex("imdb 0", 1));
    assert_eq!(ds.origin_of(8), "yelp");
    let test: Vec<usize> = ds.select(Split::Test, None).iter().map(|(i, _)| *i).collect();
    assert_eq!(test, vec![1, 3, 5, 7]);
    std::fs::remove_dir_all(&dir).unwrap();
}
