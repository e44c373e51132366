//! In-place edits of YAML or JSON text: values found by JSON Pointer, replaced or added where
//! they stand, everything else left byte for byte.
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
            Event::Scalar(value, style, _, _) => {
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
                    let end = scalar_end(text, start, end, style);
                    doc.scalars.insert(p, ScalarAt { start, end, style });
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
    /// One line per change left out, with the pointer and why.
    pub unplaced: Vec<String>,
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
    let mut splices: Vec<(usize, usize, String)> = Vec::new();
    let mut unplaced = Vec::new();
    for change in changes {
        let Some(doc) = docs.get(change.document) else {
            unplaced.push(format!("{}: document not found", change.pointer));
            continue;
        };
        match place(text, doc, change) {
            Ok(splice) => splices.push(splice),
            Err(why) => unplaced.push(format!(
                "document {}: {}: {why}",
                change.document + 1,
                change.pointer
            )),
        }
    }
    // From the end, so that earlier offsets stay valid.
    splices.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    let mut out = text.to_owned();
    let mut limit = usize::MAX;
    for (start, end, new) in splices {
        if end > limit {
            unplaced.push(format!("overlapping change at byte {start}"));
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
            return Err("a scalar stands where a mapping goes".to_owned());
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

/// `key: value` in block style at column `col` (the first line's indentation is the caller's).
fn block_entry(out: &mut String, key: &str, value: &Value, col: usize) {
    out.push_str(&yaml_scalar(key));
    out.push(':');
    match value {
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
}
