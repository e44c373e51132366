//! In-place edits of YAML or JSON text: values found by JSON Pointer, replaced or added where
//! they stand, everything else left byte for byte.
//!
//! A null where a mapping is to go (`annotations:` with nothing after it, `~`, `null`) is a
//! mapping not written yet, as JSON Patch's `add` takes it: the mapping is written in its place.
//!
//! Rewriting a manifest through a YAML library changes what it means to Kubernetes, which
//! reads YAML 1.1 (`no` is false, `0755` is 493): only the edited scalars are written here.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle};
use serde_json::Value;

/// Where a scalar value stands in the text.
#[derive(Debug, Clone, Copy)]
struct ScalarAt {
    start: usize,
    end: usize,
    style: ScalarStyle,
    /// Reads as null (plain and empty, `~` or `null`).
    null: bool,
    /// Carries an anchor or a tag, which a mapping written in its place would lose or break.
    marked: bool,
}

/// Where a mapping stands: its first byte, whether it is a flow mapping (`{…}`), and the
/// first byte and column of its first key.
#[derive(Debug, Clone, Copy)]
struct MappingAt {
    start: usize,
    flow: bool,
    first_key: Option<(usize, usize)>,
}

/// The scalars and mappings of one document, by JSON Pointer.
#[derive(Debug, Default)]
struct Document {
    scalars: HashMap<String, ScalarAt>,
    mappings: HashMap<String, MappingAt>,
}

/// One change to a document: the value at `pointer` becomes `value` (replaced, or added to
/// the parent mapping when it is not there). `expect` is the text a replaced scalar must
/// hold, so that nothing but the intended value is ever changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// 0-based document of the stream.
    pub document: usize,
    /// JSON Pointer from the document root.
    pub pointer: String,
    /// The new value: a string, or an object of them.
    pub value: Value,
    /// The value a replaced scalar must have now.
    pub expect: Option<String>,
}

enum Frame {
    Map {
        pointer: String,
        key: Option<String>,
        at: MappingAt,
    },
    Seq {
        pointer: String,
        index: usize,
    },
    /// A complex mapping key, skipped.
    Skip,
}

/// Indexes every document of `text`. `Err` carries the parser's message.
fn index(text: &str) -> Result<Vec<Document>, String> {
    // Markers count characters; edits need bytes.
    let offsets: Option<Vec<usize>> = (!text.is_ascii()).then(|| {
        text.char_indices()
            .map(|(b, _)| b)
            .chain(std::iter::once(text.len()))
            .collect()
    });
    let byte = |chars: usize| match &offsets {
        Some(o) => o.get(chars).copied().unwrap_or(text.len()),
        None => chars.min(text.len()),
    };
    let mut docs = Vec::new();
    let mut doc = Document::default();
    let mut stack: Vec<Frame> = Vec::new();
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| e.to_string())?;
        let (start, end) = (byte(span.start.index()), byte(span.end.index()));
        match event {
            Event::DocumentStart(_) => {
                doc = Document::default();
                stack.clear();
            }
            Event::DocumentEnd => docs.push(std::mem::take(&mut doc)),
            Event::Scalar(value, style, anchor, tag) => {
                if let Some(Frame::Map { key, at, .. }) = stack.last_mut()
                    && key.is_none()
                {
                    if at.first_key.is_none() {
                        at.first_key = Some((start, span.start.col()));
                    }
                    *key = Some(value.into_owned());
                    continue;
                }
                if let Some(p) = place_of(&mut stack) {
                    // An empty scalar's span may run on over the `, ` after a flow key.
                    let end = if value.is_empty() && style == ScalarStyle::Plain {
                        start
                    } else {
                        scalar_end(text, start, end, style)
                    };
                    let null = style == ScalarStyle::Plain
                        && matches!(&*value, "" | "~" | "null" | "Null" | "NULL");
                    let marked = anchor != 0 || tag.is_some();
                    doc.scalars.insert(
                        p,
                        ScalarAt {
                            start,
                            end,
                            style,
                            null,
                            marked,
                        },
                    );
                }
            }
            Event::Alias(_) => {
                if let Some(Frame::Map { key, .. }) = stack.last_mut()
                    && key.is_none()
                {
                    *key = Some(String::from("\u{0}alias"));
                    continue;
                }
                place_of(&mut stack);
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_key = matches!(stack.last(), Some(Frame::Map { key: None, .. }));
                let frame = if is_key {
                    Frame::Skip
                } else {
                    match place_of(&mut stack) {
                        None => Frame::Skip,
                        Some(pointer) => {
                            if matches!(event, Event::MappingStart(..)) {
                                let flow = text.as_bytes().get(start) == Some(&b'{');
                                Frame::Map {
                                    pointer,
                                    key: None,
                                    at: MappingAt {
                                        start,
                                        flow,
                                        first_key: None,
                                    },
                                }
                            } else {
                                Frame::Seq { pointer, index: 0 }
                            }
                        }
                    }
                };
                stack.push(frame);
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let frame = stack.pop();
                let was_key = matches!(frame, Some(Frame::Skip));
                if let Some(Frame::Map { pointer, at, .. }) = frame {
                    doc.mappings.insert(pointer, at);
                }
                // A complex key was read: its value comes next, under a key no pointer names.
                if was_key
                    && let Some(Frame::Map { key, .. }) = stack.last_mut()
                    && key.is_none()
                {
                    *key = Some(String::from("\u{0}complex"));
                }
            }
            _ => {}
        }
    }
    Ok(docs)
}

/// The pointer of the node an event starts under the top of `stack`, advancing a sequence;
/// `None` under a complex key.
fn place_of(stack: &mut [Frame]) -> Option<String> {
    match stack.last_mut() {
        None => Some(String::new()),
        Some(Frame::Seq { pointer, index }) => {
            let p = format!("{pointer}/{index}");
            *index += 1;
            Some(p)
        }
        Some(Frame::Map { pointer, key, .. }) => {
            key.take().map(|k| format!("{pointer}/{}", escape(&k)))
        }
        Some(Frame::Skip) => None,
    }
}

/// Where a scalar's own text ends: the parser's span of a quoted scalar may run on over the
/// spaces and comment after it, and a plain one over trailing spaces.
fn scalar_end(text: &str, start: usize, end: usize, style: ScalarStyle) -> usize {
    let bytes = text.as_bytes();
    let end = end.min(bytes.len());
    match style {
        ScalarStyle::DoubleQuoted => {
            let mut i = start + 1;
            while i < end {
                match bytes[i] {
                    b'\\' => i += 2,
                    b'"' => return i + 1,
                    _ => i += 1,
                }
            }
            end
        }
        ScalarStyle::SingleQuoted => {
            let mut i = start + 1;
            while i < end {
                if bytes[i] == b'\'' {
                    if bytes.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    return i + 1;
                }
                i += 1;
            }
            end
        }
        ScalarStyle::Plain => start + text[start..end].trim_end().len(),
        _ => end,
    }
}

/// A JSON Pointer token for `key`.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The result of [`apply`]: the edited text, and what could not be placed.
#[derive(Debug, Default)]
pub struct Edited {
    /// The text with every change that could be placed.
    pub text: String,
    /// Every change left out.
    pub unplaced: Vec<Unplaced>,
}

/// A change [`apply`] left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unplaced {
    /// Its index in the changes given to [`apply`].
    pub change: usize,
    /// Where it was to go and why it could not: `document 2: /spec/…: why`.
    pub why: String,
}

/// Applies `changes` to `text`, leaving every other byte as it is.
pub fn apply(text: &str, changes: &[Change]) -> Result<Edited, String> {
    if changes.is_empty() {
        return Ok(Edited {
            text: text.to_owned(),
            unplaced: Vec::new(),
        });
    }
    let docs = index(text)?;
    let mut splices: Vec<(usize, usize, String, usize)> = Vec::new();
    let mut unplaced = Vec::new();
    let mut leave_out = |change: usize, why: &str| {
        let c = &changes[change];
        unplaced.push(Unplaced {
            change,
            why: format!("document {}: {}: {why}", c.document + 1, c.pointer),
        });
    };
    for (n, change) in changes.iter().enumerate() {
        let Some(doc) = docs.get(change.document) else {
            leave_out(n, "document not found");
            continue;
        };
        match place(text, doc, change) {
            Ok((start, end, new)) => splices.push((start, end, new, n)),
            Err(why) => leave_out(n, &why),
        }
    }
    // From the end, so that earlier offsets stay valid.
    splices.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    let mut out = text.to_owned();
    let mut limit = usize::MAX;
    for (start, end, new, n) in splices {
        if end > limit {
            leave_out(n, &format!("overlaps another change at byte {start}"));
            continue;
        }
        out.replace_range(start..end, &new);
        limit = start;
    }
    Ok(Edited {
        text: out,
        unplaced,
    })
}

/// The splice that makes one change.
fn place(text: &str, doc: &Document, change: &Change) -> Result<(usize, usize, String), String> {
    if let Some(at) = doc.scalars.get(&change.pointer) {
        let Value::String(new) = &change.value else {
            return match (at.null, at.marked) {
                (true, false) if change.expect.is_none() => fill_null(text, doc, change, at),
                (true, true) => {
                    Err("a null with an anchor or a tag stands where a mapping goes".to_owned())
                }
                _ => Err("a scalar stands where a mapping goes".to_owned()),
            };
        };
        let source = &text[at.start..at.end];
        if let Some(expect) = &change.expect
            && unquote(source, at.style).as_deref() != Some(expect.as_str())
        {
            return Err(format!("the text {source:?} is not the value read"));
        }
        let written = match at.style {
            ScalarStyle::Plain if plain_safe(new) => new.clone(),
            ScalarStyle::SingleQuoted => format!("'{}'", new.replace('\'', "''")),
            ScalarStyle::Plain | ScalarStyle::DoubleQuoted => json_string(new),
            _ => return Err("a block scalar is not rewritten in place".to_owned()),
        };
        return Ok((at.start, at.end, written));
    }
    if change.expect.is_some() {
        return Err("the value is not written out here (an alias or a merge key?)".to_owned());
    }
    let (parent, key) = change
        .pointer
        .rsplit_once('/')
        .ok_or_else(|| "no parent mapping".to_owned())?;
    let key = key.replace("~1", "/").replace("~0", "~");
    let at = doc
        .mappings
        .get(parent)
        .ok_or_else(|| "its parent mapping is not written out here".to_owned())?;
    if at.flow {
        let open = at.start + 1;
        let empty = text[open..].trim_start().starts_with('}');
        let entry = format!(
            "{}: {}{}",
            json_string(&key),
            change.value,
            if empty { "" } else { ", " }
        );
        return Ok((open, open, entry));
    }
    let (first, col) = at
        .first_key
        .ok_or_else(|| "its parent mapping has no key to line up with".to_owned())?;
    let mut entry = String::new();
    block_entry(&mut entry, &key, &change.value, col);
    entry.push('\n');
    entry.push_str(&" ".repeat(col));
    Ok((first, first, entry))
}

/// The splice that writes the mapping of `change` where the null `at` stands. Under a key of a
/// block mapping, with the null on the key's line, the mapping goes in block style below the
/// key (after its comment), as an added one would; anywhere else it goes as a flow mapping in
/// JSON, which stands wherever a scalar does, in YAML and in JSON.
fn fill_null(
    text: &str,
    doc: &Document,
    change: &Change,
    at: &ScalarAt,
) -> Result<(usize, usize, String), String> {
    let bytes = text.as_bytes();
    // An empty null's span starts at its key's colon, or, in a flow mapping, where a key
    // written without one ends.
    let colon = if at.start == at.end {
        (bytes.get(at.start) == Some(&b':')).then_some(at.start)
    } else {
        let before = text[..at.start].trim_end_matches([' ', '\t']);
        before.ends_with(':').then(|| before.len() - 1)
    };
    let parent = change
        .pointer
        .rsplit_once('/')
        .and_then(|(parent, _)| doc.mappings.get(parent));
    let flow = change.value.to_string();
    match (parent, colon) {
        (
            Some(MappingAt {
                flow: false,
                first_key: Some((_, col)),
                ..
            }),
            Some(colon),
        ) => {
            let line_end = text[colon..].find('\n').map_or(text.len(), |n| colon + n);
            let kept_from = if at.start == at.end {
                colon + 1
            } else {
                at.end
            };
            let mut new = text[kept_from..line_end].to_owned();
            block_value(&mut new, &change.value, *col);
            Ok((colon + 1, line_end, new))
        }
        _ if at.start != at.end => Ok((at.start, at.end, flow)),
        (Some(MappingAt { flow: true, .. }), Some(colon)) => {
            Ok((colon + 1, colon + 1, format!(" {flow}")))
        }
        (Some(MappingAt { flow: true, .. }), None) => Ok((at.start, at.start, format!(": {flow}"))),
        _ => Err("the null is not under a key it can be written after".to_owned()),
    }
}

/// `key: value` in block style at column `col` (the first line's indentation is the caller's).
fn block_entry(out: &mut String, key: &str, value: &Value, col: usize) {
    out.push_str(&yaml_scalar(key));
    out.push(':');
    block_value(out, value, col);
}

/// What follows `key:` in block style for a key at column `col`.
fn block_value(out: &mut String, value: &Value, col: usize) {
    match value {
        Value::Object(map) if map.is_empty() => out.push_str(" {}"),
        Value::Object(map) => {
            for (k, v) in map {
                out.push('\n');
                out.push_str(&" ".repeat(col + 2));
                block_entry(out, k, v, col + 2);
            }
        }
        Value::String(s) => {
            out.push(' ');
            out.push_str(&yaml_scalar(s));
        }
        other => {
            out.push(' ');
            out.push_str(&other.to_string());
        }
    }
}

/// A string as a YAML scalar that reads back as that string under YAML 1.1 and 1.2.
fn yaml_scalar(s: &str) -> String {
    if plain_safe(s) {
        s.to_owned()
    } else if !s.contains(['\n', '\\']) && s.chars().all(|c| !c.is_control()) {
        format!("'{}'", s.replace('\'', "''"))
    } else {
        json_string(s)
    }
}

fn json_string(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// Whether `s` can be written as a plain scalar and still read as this string: image
/// references and annotation keys, which never look like numbers, booleans or nulls.
fn plain_safe(s: &str) -> bool {
    let starts_alpha = s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic());
    // A registry host and a path (`123456789012.dkr.ecr…/x`) is no number in any YAML.
    let host_like = s.contains('/') && s.split('/').next().is_some_and(|h| h.contains('.'));
    (starts_alpha || host_like)
        && !s.ends_with(':')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:@+".contains(&b))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
        )
}

/// The string a quoted or plain scalar's text reads as, for the scalars images are written
/// in (no line breaks).
fn unquote(source: &str, style: ScalarStyle) -> Option<String> {
    match style {
        ScalarStyle::Plain => Some(source.trim().to_owned()),
        ScalarStyle::SingleQuoted => source
            .strip_prefix('\'')?
            .strip_suffix('\'')
            .map(|s| s.replace("''", "'")),
        ScalarStyle::DoubleQuoted => serde_json::from_str(source).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    fn change(document: usize, pointer: &str, value: Value, expect: Option<&str>) -> Change {
        Change {
            document,
            pointer: pointer.to_owned(),
            value,
            expect: expect.map(str::to_owned),
        }
    }

    #[test]
    fn replaces_scalars_in_their_own_quoting_and_nothing_else() {
        let text = "# top\na: no   # a comment\nb: 'nginx:1'  # why\nc: \"quay.io/x\"   # why\nd: busybox   # why\nmode: 0755\n";
        let edited = apply(
            text,
            &[
                change(0, "/b", json!("h.example/n:1"), Some("nginx:1")),
                change(0, "/c", json!("h.example/x"), Some("quay.io/x")),
                change(0, "/d", json!("h.example/busybox"), Some("busybox")),
            ],
        )
        .unwrap();
        assert!(edited.unplaced.is_empty(), "{:?}", edited.unplaced);
        assert_eq!(
            edited.text,
            "# top\na: no   # a comment\nb: 'h.example/n:1'  # why\nc: \"h.example/x\"   # why\nd: h.example/busybox   # why\nmode: 0755\n"
        );
    }

    #[test]
    fn finds_values_in_sequences_flow_mappings_and_later_documents() {
        let text = "kind: A\n---\nspec:\n  containers:\n  - name: a\n    image: x\n  - {name: b, image: \"y\"}\n";
        let edited = apply(
            text,
            &[
                change(
                    1,
                    "/spec/containers/0/image",
                    json!("h.example/x"),
                    Some("x"),
                ),
                change(
                    1,
                    "/spec/containers/1/image",
                    json!("h.example/y"),
                    Some("y"),
                ),
            ],
        )
        .unwrap();
        assert_eq!(
            edited.text,
            "kind: A\n---\nspec:\n  containers:\n  - name: a\n    image: h.example/x\n  - {name: b, image: \"h.example/y\"}\n"
        );
    }

    #[test]
    fn adds_entries_to_block_and_flow_mappings() {
        let text = "metadata:\n  name: p\n  labels: {app: p}\nspec: {}\n";
        let edited = apply(
            text,
            &[
                change(
                    0,
                    "/metadata/annotations",
                    json!({"k.io/x": "{\"a\":\"b\"}"}),
                    None,
                ),
                change(0, "/metadata/labels/tier", json!("web"), None),
            ],
        )
        .unwrap();
        assert_eq!(
            edited.text,
            "metadata:\n  annotations:\n    k.io/x: '{\"a\":\"b\"}'\n  name: p\n  labels: {\"tier\": \"web\", app: p}\nspec: {}\n"
        );
    }

    #[test]
    fn a_value_that_is_not_the_one_read_is_left_alone() {
        let text = "image: &i nginx\nother: *i\n";
        let edited = apply(
            text,
            &[
                change(0, "/image", json!("h.example/n"), Some("busybox")),
                change(0, "/other", json!("h.example/n"), Some("nginx")),
            ],
        )
        .unwrap();
        assert_eq!(edited.text, text);
        assert_eq!(edited.unplaced.len(), 2, "{:?}", edited.unplaced);
    }

    #[test]
    fn multibyte_text_is_edited_at_the_right_bytes() {
        let text = "note: \"héllo ✓\"\nimage: nginx\n";
        let edited = apply(
            text,
            &[change(0, "/image", json!("h.example/nginx"), Some("nginx"))],
        )
        .unwrap();
        assert_eq!(edited.text, "note: \"héllo ✓\"\nimage: h.example/nginx\n");
    }

    #[test]
    fn plain_scalars_are_only_written_plain_when_they_read_back_as_strings() {
        for s in ["no", "On", "null", "0755", "1.5", ""] {
            assert!(!plain_safe(s), "{s}");
            assert_eq!(yaml_scalar(s), format!("'{s}'"));
        }
        assert!(plain_safe(
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/quay/x:1"
        ));
        assert!(plain_safe("pullthrough.dev/original-images"));
    }

    #[rstest]
    #[case::bare(
        "m:\n  annotations:\n  name: p\n",
        "m:\n  annotations:\n    k.io/x: '{\"a\":1}'\n  name: p\n"
    )]
    #[case::bare_then_blank_line(
        "m:\n  annotations:\n\nspec: {}\n",
        "m:\n  annotations:\n    k.io/x: '{\"a\":1}'\n\nspec: {}\n"
    )]
    #[case::bare_with_comment(
        "m:\n  annotations:   # none yet\n  name: p\n",
        "m:\n  annotations:   # none yet\n    k.io/x: '{\"a\":1}'\n  name: p\n"
    )]
    #[case::bare_at_the_end("m:\n  annotations:", "m:\n  annotations:\n    k.io/x: '{\"a\":1}'")]
    #[case::tilde(
        "m:\n  annotations: ~\n  name: p\n",
        "m:\n  annotations:\n    k.io/x: '{\"a\":1}'\n  name: p\n"
    )]
    #[case::null_with_comment(
        "m:\n  annotations:  Null # why\n",
        "m:\n  annotations: # why\n    k.io/x: '{\"a\":1}'\n"
    )]
    #[case::on_a_line_of_its_own(
        "m:\n  annotations:\n    ~\n",
        "m:\n  annotations:\n    {\"k.io/x\":\"{\\\"a\\\":1}\"}\n"
    )]
    #[case::json(
        "{\"m\": {\"annotations\": null, \"name\": \"p\"}}",
        "{\"m\": {\"annotations\": {\"k.io/x\":\"{\\\"a\\\":1}\"}, \"name\": \"p\"}}"
    )]
    #[case::flow_with_colon(
        "m: {annotations: , name: p}\n",
        "m: {annotations: {\"k.io/x\":\"{\\\"a\\\":1}\"} , name: p}\n"
    )]
    #[case::flow_without_colon(
        "m: {annotations, name: p}\n",
        "m: {annotations: {\"k.io/x\":\"{\\\"a\\\":1}\"}, name: p}\n"
    )]
    fn a_null_where_a_mapping_goes_becomes_that_mapping(
        #[case] text: &str,
        #[case] expected: &str,
    ) {
        let value = json!({"k.io/x": "{\"a\":1}"});
        let edited = apply(text, &[change(0, "/m/annotations", value.clone(), None)]).unwrap();
        assert!(edited.unplaced.is_empty(), "{:?}", edited.unplaced);
        assert_eq!(edited.text, expected);
        let read: Value = serde_yaml_ng::from_str(&edited.text).unwrap();
        let mut want: Value = serde_yaml_ng::from_str(text).unwrap();
        want["m"]["annotations"] = value;
        assert_eq!(read, want);
    }

    #[test]
    fn a_null_metadata_gets_the_nested_mapping_lined_up_under_its_key() {
        let value = json!({"annotations": {"k.io/x": "v"}});
        let text = "spec:\n  template:\n    metadata:\n    spec: {}\n";
        let edited = apply(
            text,
            &[change(0, "/spec/template/metadata", value.clone(), None)],
        )
        .unwrap();
        assert_eq!(
            edited.text,
            "spec:\n  template:\n    metadata:\n      annotations:\n        k.io/x: v\n    spec: {}\n"
        );
        let text = "items:\n  - metadata:\n    spec: {}\n";
        let edited = apply(text, &[change(0, "/items/0/metadata", value, None)]).unwrap();
        assert_eq!(
            edited.text,
            "items:\n  - metadata:\n      annotations:\n        k.io/x: v\n    spec: {}\n"
        );
    }

    #[test]
    fn a_null_with_an_anchor_or_a_tag_and_other_scalars_are_left_alone() {
        let value = json!({"k.io/x": "v"});
        for (text, why) in [
            ("m:\n  annotations: &a ~\n  b: *a\n", "anchor or a tag"),
            ("m:\n  annotations: !!null\n", "anchor or a tag"),
            ("m:\n  annotations: ''\n", "a scalar stands"),
            ("m:\n  annotations: none\n", "a scalar stands"),
        ] {
            let edited = apply(text, &[change(0, "/m/annotations", value.clone(), None)]).unwrap();
            assert_eq!(edited.text, text);
            assert_eq!(edited.unplaced.len(), 1, "{text}");
            assert_eq!(edited.unplaced[0].change, 0);
            assert!(
                edited.unplaced[0]
                    .why
                    .starts_with("document 1: /m/annotations: ")
                    && edited.unplaced[0].why.contains(why),
                "{text}: {:?}",
                edited.unplaced
            );
        }
    }
}
