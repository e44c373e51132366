//! The admission reader against serde_json on captured AdmissionReviews changed at random:
//! whatever the reader reads, serde_json reads to the same view (and the reader never accepts
//! what serde_json refuses).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use pullthrough::admission::check_reader;
use serde_json::{Map, Value};

fn fixtures() -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    // Captured from API servers: v1.32, and v1.36 with image volumes.
    let mut names: Vec<_> = ["tests/fixtures/admission", "tests/fixtures/admission-1.36"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(root.join(dir)).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// Keys the views read, so that generated objects hit them often.
const KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "request",
    "uid",
    "group",
    "version",
    "operation",
    "subResource",
    "name",
    "namespace",
    "dryRun",
    "object",
    "oldObject",
    "metadata",
    "generateName",
    "labels",
    "annotations",
    "ownerReferences",
    "spec",
    "containers",
    "initContainers",
    "ephemeralContainers",
    "template",
    "jobTemplate",
    "image",
    "other",
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9./:-]{0,12}",
        Just(String::new()),
        "[\\x00-\\x7f]{0,6}",
        "[\"\\\\/\u{8}\u{c}\n\r\t\u{0}\u{1f}]{1,4}",
        "[é日😀\u{2028}\u{7f}]{1,4}",
    ]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..4).prop_map(|members| {
                Value::Object(
                    members
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

/// Replaces the value at a path chosen by `steps` (each picks a member or element).
fn replace(value: &mut Value, steps: &[usize], with: Value) {
    let next = match (value, steps.split_first()) {
        (Value::Object(m), Some((&step, rest))) if !m.is_empty() => {
            let i = step % m.len();
            m.values_mut().nth(i).map(|v| (v, rest))
        }
        (Value::Array(a), Some((&step, rest))) if !a.is_empty() => {
            let i = step % a.len();
            a.get_mut(i).map(|v| (v, rest))
        }
        (value, _) => {
            *value = with;
            return;
        }
    };
    if let Some((inner, rest)) = next {
        replace(inner, rest, with);
    }
}

/// Text snippets that break the document, or add what the derive refuses (duplicate fields).
const SNIPPETS: &[&str] = &[
    "\"uid\":\"x\",",
    "\"name\":\"x\",",
    "\"image\":null,",
    "\"kind\":{\"kind\":\"Pod\"},",
    "\"k\\u0041\":1,",
    "\"\\ud800\"",
    "\"\\u00e9\"",
    ",",
    ":",
    "{",
    "}",
    "[",
    "]",
    "\"",
    "\\",
    "null",
    "-",
    "0",
    "01",
    "1e",
    ".",
    " ",
    "\u{1}",
    "\u{a0}",
];

/// Raw values, valid and not, to put where a value goes.
const RAW: &[&str] = &[
    "01",
    "-01",
    "1.",
    ".5",
    "-",
    "+1",
    "1e",
    "1e+",
    "1E-7",
    "0x1",
    "-0",
    "1.5e+3",
    "0.0",
    "tru",
    "nul",
    "falsey",
    "true",
    "null",
    "NaN",
    "Infinity",
    r#""\x""#,
    "\"\t\"",
    r#""\u12""#,
    r#""\ud800""#,
    r#""\uD83D\uDE00""#,
    r#""\u0000""#,
    r#""\/\b\f""#,
    "\"\u{7f}\"",
    "[1,]",
    "[,]",
    "{,}",
    r#"{"a":1,}"#,
    r#"{"a"}"#,
    r#"{"a":1 "b":2}"#,
    "[1 2]",
    "[]",
    "{}",
    r#"[[[]],{"a":[{}]}]"#,
    r#"{"k\u0041":1}"#,
    r#"{"kind":"A","kind":"B"}"#,
    r#"{"name":"a","name":"b"}"#,
    r#"{"a":"1","a":"2"}"#,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_review_with_a_raw_value_put_in_reads_the_same(
        which in any::<prop::sample::Index>(),
        steps in prop::collection::vec(any::<usize>(), 0..8),
        raw in prop::sample::select(RAW),
        pretty in any::<bool>(),
    ) {
        const MARK: &str = "\u{1}mark\u{1}";
        let fixtures = fixtures();
        let mut value: Value = serde_json::from_str(which.get(&fixtures).as_str()).unwrap();
        replace(&mut value, &steps, Value::String(MARK.to_owned()));
        let text = if pretty {
            serde_json::to_string_pretty(&value).unwrap()
        } else {
            serde_json::to_string(&value).unwrap()
        };
        let text = text.replace(&serde_json::to_string(MARK).unwrap(), raw);
        prop_assert_eq!(check_reader(&text), Ok(()));
    }

    #[test]
    fn a_review_changed_as_json_reads_the_same(
        which in any::<prop::sample::Index>(),
        steps in prop::collection::vec(any::<usize>(), 0..8),
        with in json(),
        pretty in any::<bool>(),
    ) {
        let fixtures = fixtures();
        let mut value: Value = serde_json::from_str(which.get(&fixtures).as_str()).unwrap();
        replace(&mut value, &steps, with);
        let text = if pretty {
            serde_json::to_string_pretty(&value).unwrap()
        } else {
            serde_json::to_string(&value).unwrap()
        };
        prop_assert_eq!(check_reader(&text), Ok(()));
    }

    #[test]
    fn a_review_changed_as_text_reads_the_same_or_is_left_to_serde_json(
        which in any::<prop::sample::Index>(),
        edits in prop::collection::vec(
            (any::<prop::sample::Index>(), prop::sample::select(SNIPPETS), 0usize..4),
            1..4,
        ),
    ) {
        let fixtures = fixtures();
        let mut text = which.get(&fixtures).clone();
        for (at, snippet, cut) in edits {
            // Edit on a character boundary: the reader only ever sees UTF-8.
            let mut i = at.index(text.len() + 1);
            while !text.is_char_boundary(i) {
                i -= 1;
            }
            let mut end = (i + cut).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            text.replace_range(i..end, snippet);
        }
        prop_assert_eq!(check_reader(&text), Ok(()));
    }
}

#[test]
fn every_captured_review_is_read_the_same() {
    for text in fixtures() {
        assert_eq!(check_reader(&text), Ok(()));
    }
}
