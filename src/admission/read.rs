//! The request views read with [`crate::json::Reader`] instead of serde_json.
//!
//! Each function reads exactly what the serde derive of its view reads, and gives up
//! ([`Unhandled`]) wherever the derive would refuse the input or where the input takes a path
//! this reader does not follow (a struct written as an array, a key with escapes, a duplicate
//! field). [`super::review`] then reads the body with serde_json, which answers and explains.
//! What this reader accepts, serde_json reads to an equal view; the unit tests, the property
//! tests and a fuzz target hold the two together.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::{
    ContainerView, GroupVersionKind, ImageVolumeView, MetaView, ObjectView, OwnerView, RequestView,
    ReviewView, SpecView, Text, VolumeView,
};
use crate::json::{Read, Reader, Unhandled};

/// Deepest template nesting (a CronJob's job template's pod template is 2) followed here.
const MAX_TEMPLATE_DEPTH: u32 = 8;

/// Reads a whole AdmissionReview document, or `None` to leave it to serde_json.
pub(super) fn review(text: &str) -> Option<ReviewView<'_>> {
    let mut r = Reader::new(text);
    let view = review_view(&mut r).ok()?;
    r.end().ok()?;
    Some(view)
}

/// Marks a field as read; the derive refuses a field given twice, so that is left to it.
fn first(seen: &mut u16, bit: u16) -> Read<()> {
    if *seen & bit == 0 {
        *seen |= bit;
        Ok(())
    } else {
        Err(Unhandled)
    }
}

fn opt<'a, T>(
    r: &mut Reader<'a>,
    read: impl FnOnce(&mut Reader<'a>) -> Read<T>,
) -> Read<Option<T>> {
    if r.null()? {
        Ok(None)
    } else {
        read(r).map(Some)
    }
}

fn opt_string<'a>(r: &mut Reader<'a>) -> Read<Option<Cow<'a, str>>> {
    opt(r, Reader::string)
}

fn required<T>(value: Option<T>) -> Read<T> {
    value.ok_or(Unhandled)
}

fn review_view<'a>(r: &mut Reader<'a>) -> Read<ReviewView<'a>> {
    let (mut api_version, mut kind, mut request) = (None, None, None);
    let mut seen = 0;
    r.object(|r, key| {
        match key {
            "apiVersion" => {
                first(&mut seen, 1)?;
                api_version = opt_string(r)?;
            }
            "kind" => {
                first(&mut seen, 2)?;
                kind = opt_string(r)?;
            }
            "request" => {
                first(&mut seen, 4)?;
                request = opt(r, request_view)?;
            }
            _ => r.skip()?,
        }
        Ok(())
    })?;
    Ok(ReviewView {
        api_version,
        kind,
        request,
    })
}

fn request_view<'a>(r: &mut Reader<'a>) -> Read<RequestView<'a>> {
    let (mut uid, mut kind, mut operation) = (None, None, None);
    let (mut sub_resource, mut name, mut namespace) = (None, None, None);
    let (mut dry_run, mut object, mut old_object) = (None, None, None);
    let mut seen = 0;
    r.object(|r, key| {
        match key {
            "uid" => {
                first(&mut seen, 1)?;
                uid = Some(r.string()?);
            }
            "kind" => {
                first(&mut seen, 2)?;
                kind = Some(group_version_kind(r)?);
            }
            "subResource" => {
                first(&mut seen, 4)?;
                sub_resource = opt_string(r)?;
            }
            "name" => {
                first(&mut seen, 8)?;
                name = opt_string(r)?;
            }
            "namespace" => {
                first(&mut seen, 16)?;
                namespace = opt_string(r)?;
            }
            "operation" => {
                first(&mut seen, 32)?;
                operation = Some(r.string()?);
            }
            "dryRun" => {
                first(&mut seen, 64)?;
                dry_run = opt(r, Reader::bool)?;
            }
            "object" => {
                first(&mut seen, 128)?;
                object = opt(r, |r| object_view(r, 0))?;
            }
            "oldObject" => {
                first(&mut seen, 256)?;
                old_object = opt(r, |r| object_view(r, 0))?;
            }
            _ => r.skip()?,
        }
        Ok(())
    })?;
    Ok(RequestView {
        uid: required(uid)?,
        kind: required(kind)?,
        sub_resource,
        name,
        namespace,
        operation: required(operation)?,
        dry_run,
        object,
        old_object,
    })
}

fn group_version_kind<'a>(r: &mut Reader<'a>) -> Read<GroupVersionKind<'a>> {
    let (mut group, mut version, mut kind) = (None, None, None);
    let mut seen = 0;
    r.object(|r, key| {
        match key {
            "group" => {
                first(&mut seen, 1)?;
                group = Some(r.string()?);
            }
            "version" => {
                first(&mut seen, 2)?;
                version = Some(r.string()?);
            }
            "kind" => {
                first(&mut seen, 4)?;
                kind = Some(r.string()?);
            }
            _ => r.skip()?,
        }
        Ok(())
    })?;
    Ok(GroupVersionKind {
        group: group.unwrap_or_default(),
        version: version.unwrap_or_default(),
        kind: required(kind)?,
    })
}

fn object_view<'a>(r: &mut Reader<'a>, depth: u32) -> Read<ObjectView<'a>> {
    if depth > MAX_TEMPLATE_DEPTH {
        return Err(Unhandled);
    }
    let (mut metadata, mut spec) = (None, None);
    let mut seen = 0;
    r.object(|r, key| {
        match key {
            "metadata" => {
                first(&mut seen, 1)?;
                metadata = opt(r, meta_view)?;
            }
            "spec" => {
                first(&mut seen, 2)?;
                spec = opt(r, |r| spec_view(r, depth))?;
            }
            _ => r.skip()?,
        }
        Ok(())
    })?;
    Ok(ObjectView { metadata, spec })
}

fn meta_view<'a>(r: &mut Reader<'a>) -> Read<MetaView<'a>> {
    let mut meta = MetaView::default();
    let mut seen = 0;
    r.object(|r, key| {
        match key {
            "name" => {
                first(&mut seen, 1)?;
                meta.name = opt_string(r)?;
            }
            "generateName" => {
                first(&mut seen, 2)?;
                meta.generate_name = opt_string(r)?;
            }
            "labels" => {
                first(&mut seen, 4)?;
                meta.labels = opt(r, text_map)?;
            }
            "annotations" => {
                first(&mut seen, 8)?;
                meta.annotations = opt(r, text_map)?;
            }
            "ownerReferences" => {
                first(&mut seen, 16)?;
                meta.owner_references = opt(r, |r| list(r, owner_view))?;
            }
            _ => r.skip()?,
        }
        Ok(())
    })?;
    Ok(meta)
}

/// A map of strings; a key given twice keeps its last value, as in the derive.
fn text_map<'a>(r: &mut Reader<'a>) -> Read<BTreeMap<Text<'a>, Text<'a>>> {
    let mut map = BTreeMap::new();
    r.object(|r, key| {
        map.insert(Text(Cow::Borrowed(key)), Text(r.string()?));
        Ok(())
    })?;
    Ok(map)
}

fn list<'a, T>(
    r: &mut Reader<'a>,
    mut read: impl FnMut(&mut Reader<'a>) -> Read<T>,
) -> Read<Vec<T>> {
    let mut out = Vec::new();
    r.array(|r| {
        out.push(read(r)?);
        Ok(())
    })?;
    Ok(out)
}

fn owner_view<'a>(r: &mut Reader<'a>) -> Read<OwnerView<'a>> {
    let mut kind = None;
    r.object(|r, key| {
        if key == "kind" {
            if kind.is_some() {
                return Err(Unhandled);
            }
            kind = Some(r.string()?);
            Ok(())
        } else {
            r.skip()
        }
    })?;
    Ok(OwnerView {
        kind: required(kind)?,
    })
}

fn spec_view<'a>(r: &mut Reader<'a>, depth: u32) -> Read<SpecView<'a>> {
    let mut spec = SpecView::default();
    let mut seen = 0;
    r.object(|r, key| {
        match key {
            "containers" => {
                first(&mut seen, 1)?;
                spec.containers = opt(r, |r| list(r, container_view))?;
            }
            "initContainers" => {
                first(&mut seen, 2)?;
                spec.init_containers = opt(r, |r| list(r, container_view))?;
            }
            "ephemeralContainers" => {
                first(&mut seen, 4)?;
                spec.ephemeral_containers = opt(r, |r| list(r, container_view))?;
            }
            "volumes" => {
                first(&mut seen, 32)?;
                spec.volumes = opt(r, |r| list(r, volume_view))?;
            }
            "template" => {
                first(&mut seen, 8)?;
                spec.template = opt(r, |r| object_view(r, depth + 1).map(Box::new))?;
            }
            "jobTemplate" => {
                first(&mut seen, 16)?;
                spec.job_template = opt(r, |r| object_view(r, depth + 1).map(Box::new))?;
            }
            _ => r.skip()?,
        }
        Ok(())
    })?;
    Ok(spec)
}

fn container_view<'a>(r: &mut Reader<'a>) -> Read<ContainerView<'a>> {
    let (mut name, mut image) = (None, None);
    let mut seen = 0;
    r.object(|r, key| {
        match key {
            "name" => {
                first(&mut seen, 1)?;
                name = Some(r.string()?);
            }
            "image" => {
                first(&mut seen, 2)?;
                image = opt_string(r)?;
            }
            _ => r.skip()?,
        }
        Ok(())
    })?;
    Ok(ContainerView {
        name: required(name)?,
        image,
    })
}

fn volume_view<'a>(r: &mut Reader<'a>) -> Read<VolumeView<'a>> {
    let (mut name, mut image) = (None, None);
    let mut seen = 0;
    r.object(|r, key| {
        match key {
            "name" => {
                first(&mut seen, 1)?;
                name = Some(r.string()?);
            }
            "image" => {
                first(&mut seen, 2)?;
                image = opt(r, image_volume_view)?;
            }
            _ => r.skip()?,
        }
        Ok(())
    })?;
    Ok(VolumeView {
        name: required(name)?,
        image,
    })
}

fn image_volume_view<'a>(r: &mut Reader<'a>) -> Read<ImageVolumeView<'a>> {
    let mut reference = None;
    let mut seen = 0;
    r.object(|r, key| {
        if key == "reference" {
            first(&mut seen, 1)?;
            reference = opt_string(r)?;
            Ok(())
        } else {
            r.skip()
        }
    })?;
    Ok(ImageVolumeView { reference })
}

/// Checks the reader against serde_json on one document: when the reader reads it, serde_json
/// must read the same view. `Err` describes the difference.
pub fn check(text: &str) -> Result<(), String> {
    let Some(fast) = review(text) else {
        return Ok(());
    };
    match serde_json::from_str::<ReviewView<'_>>(text) {
        Ok(slow) if slow == fast => Ok(()),
        Ok(slow) => Err(format!(
            "the views differ:\nreader: {fast:?}\nserde_json: {slow:?}"
        )),
        Err(e) => Err(format!(
            "the reader accepted what serde_json refuses ({e}): {fast:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> Vec<(String, String)> {
        let mut out = Vec::new();
        // Captured from API servers: v1.32, and v1.36 with image volumes.
        for dir in ["admission", "admission-1.36"] {
            let dir = format!("{}/tests/fixtures/{dir}", env!("CARGO_MANIFEST_DIR"));
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if let Ok(text) = std::fs::read_to_string(entry.path()) {
                    out.push((entry.file_name().to_string_lossy().into_owned(), text));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn reads_every_captured_review_as_serde_json_does() {
        let fixtures = fixtures();
        assert!(fixtures.len() >= 19, "fixtures not found");
        for (name, text) in fixtures {
            assert!(review(&text).is_some(), "{name}: left to serde_json");
            assert_eq!(check(&text), Ok(()), "{name}");
        }
    }

    #[test]
    fn leaves_to_serde_json_what_it_would_refuse_or_read_another_way() {
        let base = |request: &str| {
            format!(
                r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{request}}}"#
            )
        };
        let ok =
            r#"{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE"}"#;
        assert!(review(&base(ok)).is_some());
        for request in [
            // Required fields missing or null.
            r#"{"kind":{"kind":"Pod"},"operation":"CREATE"}"#,
            r#"{"uid":null,"kind":{"kind":"Pod"},"operation":"CREATE"}"#,
            r#"{"uid":"u","kind":{"group":null,"kind":"Pod"},"operation":"CREATE"}"#,
            // A duplicate field.
            r#"{"uid":"u","uid":"v","kind":{"kind":"Pod"},"operation":"CREATE"}"#,
            // A struct as an array, which the derive reads by position.
            r#"{"uid":"u","kind":["","v1","Pod"],"operation":"CREATE"}"#,
            // A key with escapes.
            r#"{"u\u0069d":"u","kind":{"kind":"Pod"},"operation":"CREATE"}"#,
            // Wrong types.
            r#"{"uid":"u","kind":{"kind":"Pod"},"operation":"CREATE","dryRun":"yes"}"#,
            r#"{"uid":"u","kind":{"kind":"Pod"},"operation":"CREATE","object":{"metadata":{"labels":{"a":1}}}}"#,
            r#"{"uid":"u","kind":{"kind":"Pod"},"operation":"CREATE","object":{"spec":{"containers":[null]}}}"#,
            // Invalid JSON in a part that is skipped.
            r#"{"uid":"u","kind":{"kind":"Pod"},"operation":"CREATE","userInfo":{"a":[1,]}}"#,
        ] {
            let text = base(request);
            assert!(review(&text).is_none(), "{text}");
            assert_eq!(check(&text), Ok(()));
        }
        assert!(review(&format!("{} x", base(ok))).is_none());
    }

    #[test]
    fn deep_templates_are_left_to_serde_json() {
        let mut object = r#"{"spec":{"containers":[{"name":"a","image":"b"}]}}"#.to_owned();
        for _ in 0..=MAX_TEMPLATE_DEPTH {
            object = format!(r#"{{"spec":{{"template":{object}}}}}"#);
        }
        let text = format!(
            r#"{{"request":{{"uid":"u","kind":{{"kind":"Pod"}},"operation":"CREATE","object":{object}}}}}"#
        );
        assert!(review(&text).is_none());
    }
}
