//! The plan written as an RFC 6902 JSON Patch: as operations, and straight to bytes.

use json_patch::jsonptr::{PointerBuf, Token};
use json_patch::{AddOperation, PatchOperation, ReplaceOperation};
use serde_json::Value;

use super::ORIGINAL_IMAGES_ANNOTATION;
use super::kind::ContainerKind;
use super::plan::PodPlan;
use super::record::RecordAt;
use crate::json;
use crate::rewrite::Decision;

impl PodPlan<'_> {
    /// The JSON Patch that applies the plan: a `replace` per rewritten image, then an `add` of
    /// the record of originals. Empty when nothing changes.
    pub fn operations(&self) -> Vec<PatchOperation> {
        let mut ops = Vec::with_capacity(self.images.len() + 1);
        for i in &self.images {
            if let Decision::Rewrite(new) = &i.decision {
                ops.push(PatchOperation::Replace(ReplaceOperation {
                    path: image_pointer(self.base, i.kind, i.index),
                    value: Value::String(new.clone()),
                }));
            }
        }
        if let Some(record) = &self.record {
            // Written by this module from a `String`: it reads back.
            let text = Value::String(serde_json::from_slice(&record.literal).unwrap_or_default());
            let one = |key: &str, value: Value| {
                let mut map = serde_json::Map::new();
                map.insert(key.to_owned(), value);
                Value::Object(map)
            };
            let (path, value) = match record.at {
                RecordAt::Metadata => (
                    pointer(self.base, &[Token::new("metadata")]),
                    one("annotations", one(ORIGINAL_IMAGES_ANNOTATION, text)),
                ),
                RecordAt::Annotations => (
                    pointer(
                        self.base,
                        &[Token::new("metadata"), Token::new("annotations")],
                    ),
                    one(ORIGINAL_IMAGES_ANNOTATION, text),
                ),
                RecordAt::Annotation => (record_pointer(self.base), text),
            };
            ops.push(PatchOperation::Add(AddOperation { path, value }));
        }
        ops
    }

    /// Writes [`Self::operations`] as JSON, the same bytes serde_json writes for them, without
    /// building them: the pointers and values are written straight from the plan.
    pub(super) fn write_patch(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        let mut first = true;
        let mut path = String::with_capacity(80);
        for i in &self.images {
            if let Decision::Rewrite(new) = &i.decision {
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(b"{\"op\":\"replace\",\"path\":");
                path.clear();
                push_image_path(&mut path, self.base, i.kind, i.index);
                json::write_string(out, &path);
                out.extend_from_slice(b",\"value\":");
                json::write_string(out, new);
                out.push(b'}');
            }
        }
        if let Some(record) = &self.record {
            if !first {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"op\":\"add\",\"path\":");
            path.clear();
            push_tokens(&mut path, self.base);
            path.push_str(match record.at {
                RecordAt::Metadata => "/metadata",
                RecordAt::Annotations => "/metadata/annotations",
                RecordAt::Annotation => "/metadata/annotations/",
            });
            if record.at == RecordAt::Annotation {
                path.push_str(ORIGINAL_IMAGES_TOKEN);
            }
            json::write_string(out, &path);
            out.extend_from_slice(b",\"value\":");
            let open: &[u8] = match record.at {
                RecordAt::Metadata => b"{\"annotations\":{\"pullthrough.dev/original-images\":",
                RecordAt::Annotations => b"{\"pullthrough.dev/original-images\":",
                RecordAt::Annotation => b"",
            };
            out.extend_from_slice(open);
            out.extend_from_slice(&record.literal);
            out.extend_from_slice(match record.at {
                RecordAt::Metadata => b"}}",
                RecordAt::Annotations => b"}",
                RecordAt::Annotation => b"",
            });
            out.push(b'}');
        }
        out.push(b']');
    }
}

pub(super) fn pointer(base: &[&str], rest: &[Token<'_>]) -> PointerBuf {
    PointerBuf::from_tokens(
        base.iter()
            .map(|t| Token::new(*t))
            .chain(rest.iter().cloned()),
    )
}

/// `/<base>/spec/<list>/<index>/image`. Every token is a plain word or a number, so the pointer
/// is written out whole rather than token by token (one allocation, not one per token).
pub(super) fn image_pointer(base: &[&str], kind: ContainerKind, index: usize) -> PointerBuf {
    let mut path = String::with_capacity(48);
    push_image_path(&mut path, base, kind, index);
    PointerBuf::parse(path).unwrap_or_else(|_| {
        pointer(
            base,
            &[
                Token::new("spec"),
                Token::new(kind.field()),
                Token::from(index),
                Token::new("image"),
            ]
            .into_iter()
            .chain((kind == ContainerKind::ImageVolume).then(|| Token::new("reference")))
            .collect::<Vec<_>>(),
        )
    })
}

/// Appends `/<base>`: tokens that are plain words, which need no escaping.
fn push_tokens(path: &mut String, base: &[&str]) {
    for token in base {
        path.push('/');
        path.push_str(token);
    }
}

/// Appends `/<base>/spec/<list>/<index>/image`, and `/reference` for an image volume.
fn push_image_path(path: &mut String, base: &[&str], kind: ContainerKind, index: usize) {
    push_tokens(path, base);
    path.push_str("/spec/");
    path.push_str(kind.field());
    path.push('/');
    push_decimal(path, index);
    path.push_str(if kind == ContainerKind::ImageVolume {
        "/image/reference"
    } else {
        "/image"
    });
}

/// Appends `n` in decimal, without the formatting machinery (measurable once per image).
pub(super) fn push_decimal(out: &mut String, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b"0123456789"[n % 10];
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[at..].iter().map(|&d| char::from(d)));
}

/// [`ORIGINAL_IMAGES_ANNOTATION`] as a JSON Pointer token: its `/` escaped as `~1`.
const ORIGINAL_IMAGES_TOKEN: &str = "pullthrough.dev~1original-images";

/// `/<base>/metadata/annotations/<record>`, written out whole like [`image_pointer`].
pub(super) fn record_pointer(base: &[&str]) -> PointerBuf {
    let mut path = String::with_capacity(80);
    push_tokens(&mut path, base);
    path.push_str("/metadata/annotations/");
    path.push_str(ORIGINAL_IMAGES_TOKEN);
    PointerBuf::parse(path).unwrap_or_else(|_| {
        pointer(
            base,
            &[
                Token::new("metadata"),
                Token::new("annotations"),
                Token::new(ORIGINAL_IMAGES_ANNOTATION),
            ],
        )
    })
}
