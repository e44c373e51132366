//! The record of original images kept in the pod's annotation, and where it goes.

use serde_json::Value;

use super::ORIGINAL_IMAGES_ANNOTATION;
use super::kind::ContainerKind;
use super::outcome::ImageOutcome;
use super::view::ObjectView;
use crate::json;
use crate::rewrite::Decision;

/// The record of original images, and where it goes: the Pod may have no metadata, or
/// metadata without annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    pub(super) at: RecordAt,
    /// The annotation's value (a JSON object of container names to images, as text), written
    /// as the JSON string that goes into the patch.
    pub(super) literal: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RecordAt {
    /// `add /metadata {"annotations": {record}}`
    Metadata,
    /// `add /metadata/annotations {record}`
    Annotations,
    /// `add /metadata/annotations/<record>`
    Annotation,
}

/// The record of original images for the images `images` rewrites, merged into what earlier
/// passes recorded (an update, or a reinvocation after another webhook); `None` when nothing is
/// rewritten.
pub(super) fn record(pod: &ObjectView<'_>, images: &[ImageOutcome<'_>]) -> Option<Record> {
    let volume_keys: Vec<String> = images
        .iter()
        .filter(|i| {
            i.kind == ContainerKind::ImageVolume && matches!(i.decision, Decision::Rewrite(_))
        })
        .map(|i| i.kind.record_key(&i.container).into_owned())
        .collect();
    // In the Pod's order (init containers, containers, ephemeral containers, volumes), which
    // is also the order the MutatingAdmissionPolicy can write: both write the same text.
    let mut originals: Vec<(&str, &str)> = Vec::new();
    let mut volume_key = volume_keys.iter();
    for i in images {
        if matches!(i.decision, Decision::Rewrite(_)) {
            let key = if i.kind == ContainerKind::ImageVolume {
                volume_key.next().map_or("", String::as_str)
            } else {
                &i.container
            };
            if !originals.iter().any(|(k, _)| *k == key) {
                originals.push((key, &i.image));
            }
        }
    }
    if originals.is_empty() {
        return None;
    }
    let earlier = pod
        .annotation(ORIGINAL_IMAGES_ANNOTATION)
        .and_then(|s| serde_json::from_str::<serde_json::Map<String, Value>>(s).ok());
    let mut literal = Vec::new();
    match earlier {
        Some(mut record) => {
            for (name, image) in originals {
                record
                    .entry(name.to_owned())
                    .or_insert_with(|| Value::String(image.to_owned()));
            }
            json::write_string(&mut literal, &Value::Object(record).to_string());
        }
        // The common case, a first pass: the same text, without building a JSON value.
        None => write_object_literal(&mut literal, &originals),
    }
    let at = match &pod.metadata {
        None => RecordAt::Metadata,
        Some(m) if m.annotations.is_none() => RecordAt::Annotations,
        Some(_) => RecordAt::Annotation,
    };
    Some(Record { at, literal })
}

/// Pairs of strings as a JSON object, the text serde_json writes for it.
pub(super) fn object_text(map: &[(&str, &str)]) -> String {
    let mut out = Vec::with_capacity(
        map.iter()
            .map(|(k, v)| k.len() + v.len() + 6)
            .sum::<usize>()
            + 2,
    );
    json::write_object(&mut out, map.iter().map(|(k, v)| (*k, *v)));
    // Written from `&str`s and ASCII punctuation only.
    String::from_utf8(out).unwrap_or_default()
}

/// Writes the text of `map` as a JSON object ([`object_text`]), as a JSON string.
pub(super) fn write_object_literal(out: &mut Vec<u8>, map: &[(&str, &str)]) {
    if !map
        .iter()
        .all(|(k, v)| json::is_plain(k) && json::is_plain(v))
    {
        json::write_string(out, &object_text(map));
        return;
    }
    // Container names and images need no escape (as they always do in practice): the only
    // characters of the text to escape are its own quotes, so it is written escaped at once.
    out.reserve(
        map.iter()
            .map(|(k, v)| k.len() + v.len() + 12)
            .sum::<usize>()
            + 4,
    );
    out.extend_from_slice(b"\"{");
    for (n, (key, value)) in map.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"\\\"");
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\\\":\\\"");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\\\"");
    }
    out.extend_from_slice(b"}\"");
}
