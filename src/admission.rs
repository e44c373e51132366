//! AdmissionReview in, AdmissionReview out: pure, given a configuration snapshot.
//!
//! The request is read into narrow borrowed views (only uid, kind, operation, metadata and the
//! container lists), so a large Pod costs little more than the bytes it takes to skip it. The
//! answer is one RFC 6902 JSON Patch that replaces only the images that change and records the
//! originals in the [`ORIGINAL_IMAGES_ANNOTATION`], plus a warning per image left alone.

use std::borrow::Cow;
use std::collections::BTreeMap;

use json_patch::jsonptr::{PointerBuf, Token};
use json_patch::{AddOperation, PatchOperation, ReplaceOperation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{Config, DigestPolicy, WorkloadPolicy};
use crate::digests::DigestSnapshot;
use crate::json;
use crate::rewrite::{Decision, SkipReason, Verdict, decide_with};
use crate::rules::RuleSnapshot;

mod read;

#[doc(hidden)]
pub use read::check as check_reader;

/// The only AdmissionReview version served.
pub const ADMISSION_API_VERSION: &str = "admission.k8s.io/v1";
/// Pod annotation that opts a Pod (or pod template) out: `pullthrough.dev/skip: "true"`.
pub const SKIP_ANNOTATION: &str = "pullthrough.dev/skip";
/// Pod annotation recording replaced images: JSON, container name to original image.
pub const ORIGINAL_IMAGES_ANNOTATION: &str = "pullthrough.dev/original-images";
/// Longest warning the API server passes on untruncated.
const WARNING_MAX_LEN: usize = 256;

// === Input views ===

/// A string of the request, borrowed from the body unless it holds escapes.
///
/// serde borrows a `Cow<str>` field only when the field is exactly that type: inside an
/// `Option` or a map it copies every string into a new `String`. This type borrows wherever it
/// sits, and reads as a `String` does otherwise (same accepted input, same errors).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Text<'a>(Cow<'a, str>);

impl std::borrow::Borrow<str> for Text<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a str>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = Text<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }

            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                match std::str::from_utf8(v) {
                    Ok(s) => Ok(Text(Cow::Owned(s.to_owned()))),
                    Err(_) => Err(E::invalid_value(serde::de::Unexpected::Bytes(v), &self)),
                }
            }
        }
        deserializer.deserialize_string(Visitor(std::marker::PhantomData))
    }
}

/// An optional string, borrowed from the body where it can be (see [`Text`]).
fn borrowed<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Cow<'de, str>>, D::Error> {
    Ok(Option::<Text<'de>>::deserialize(deserializer)?.map(|t| t.0))
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewView<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed")]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    request: Option<RequestView<'a>>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestView<'a> {
    #[serde(borrow)]
    uid: Cow<'a, str>,
    #[serde(borrow)]
    kind: GroupVersionKind<'a>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    sub_resource: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    namespace: Option<Cow<'a, str>>,
    #[serde(borrow)]
    operation: Cow<'a, str>,
    #[serde(default)]
    dry_run: Option<bool>,
    #[serde(borrow, default)]
    object: Option<ObjectView<'a>>,
    #[serde(borrow, default)]
    old_object: Option<ObjectView<'a>>,
}

#[derive(Debug, PartialEq, Deserialize)]
struct GroupVersionKind<'a> {
    #[serde(borrow, default)]
    group: Cow<'a, str>,
    #[serde(borrow, default)]
    version: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
}

/// The parts of a Kubernetes object the rewrite reads: metadata and the pod spec or template.
#[derive(Debug, Default, PartialEq, Deserialize)]
pub struct ObjectView<'a> {
    #[serde(borrow, default)]
    metadata: Option<MetaView<'a>>,
    #[serde(borrow, default)]
    spec: Option<SpecView<'a>>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetaView<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed")]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    generate_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    labels: Option<BTreeMap<Text<'a>, Text<'a>>>,
    #[serde(borrow, default)]
    annotations: Option<BTreeMap<Text<'a>, Text<'a>>>,
    #[serde(borrow, default)]
    owner_references: Option<Vec<OwnerView<'a>>>,
}

#[derive(Debug, PartialEq, Deserialize)]
struct OwnerView<'a> {
    #[serde(borrow)]
    kind: Cow<'a, str>,
}

/// A pod spec, or a workload spec holding a pod template (or a job template).
#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecView<'a> {
    #[serde(borrow, default)]
    containers: Option<Vec<ContainerView<'a>>>,
    #[serde(borrow, default)]
    init_containers: Option<Vec<ContainerView<'a>>>,
    #[serde(borrow, default)]
    ephemeral_containers: Option<Vec<ContainerView<'a>>>,
    #[serde(borrow, default)]
    template: Option<Box<ObjectView<'a>>>,
    #[serde(borrow, default)]
    job_template: Option<Box<ObjectView<'a>>>,
}

#[derive(Debug, PartialEq, Deserialize)]
struct ContainerView<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    image: Option<Cow<'a, str>>,
}

impl<'a> ObjectView<'a> {
    /// Reads the view out of a parsed document (used by `preview`).
    pub fn from_value(value: &'a Value) -> Result<Self, serde_json::Error> {
        Self::deserialize(value)
    }

    fn spec(&self) -> Option<&SpecView<'a>> {
        self.spec.as_ref()
    }

    fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata
            .as_ref()?
            .annotations
            .as_ref()?
            .get(key)
            .map(|v| &*v.0)
    }
}

// === Kinds and containers ===

/// The list a container sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ContainerKind {
    /// `initContainers` (native sidecars included).
    Init,
    /// `containers`.
    Main,
    /// `ephemeralContainers`.
    Ephemeral,
}

impl ContainerKind {
    /// The field name in a pod spec.
    pub fn field(self) -> &'static str {
        match self {
            Self::Init => "initContainers",
            Self::Main => "containers",
            Self::Ephemeral => "ephemeralContainers",
        }
    }

    /// How the kind is named to people.
    pub fn noun(self) -> &'static str {
        match self {
            Self::Init => "init container",
            Self::Main => "container",
            Self::Ephemeral => "ephemeral container",
        }
    }
}

impl<'a> SpecView<'a> {
    fn list(&self, kind: ContainerKind) -> &[ContainerView<'a>] {
        let list = match kind {
            ContainerKind::Init => &self.init_containers,
            ContainerKind::Main => &self.containers,
            ContainerKind::Ephemeral => &self.ephemeral_containers,
        };
        list.as_deref().unwrap_or_default()
    }

    /// Every container of the given kinds, with its list and index.
    fn containers<'s>(
        &'s self,
        kinds: &'s [ContainerKind],
    ) -> impl Iterator<Item = (ContainerKind, usize, &'s ContainerView<'a>)> + 's {
        kinds.iter().flat_map(move |&kind| {
            self.list(kind)
                .iter()
                .enumerate()
                .map(move |(i, c)| (kind, i, c))
        })
    }
}

/// The kinds of object whose pods the webhook and `preview` understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// `v1/Pod`.
    Pod,
    /// Deployment, StatefulSet, DaemonSet, ReplicaSet or Job: `spec.template`.
    Workload,
    /// CronJob: `spec.jobTemplate.spec.template`.
    CronJob,
}

impl TargetKind {
    /// Classifies an API group and kind.
    pub fn from_group_kind(group: &str, kind: &str) -> Option<Self> {
        match (group, kind) {
            ("" | "core", "Pod") => Some(Self::Pod),
            ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
            | ("batch", "Job") => Some(Self::Workload),
            ("batch", "CronJob") => Some(Self::CronJob),
            _ => None,
        }
    }

    /// Classifies an `apiVersion` (`apps/v1`) and kind.
    pub fn from_api_version_kind(api_version: &str, kind: &str) -> Option<Self> {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        Self::from_group_kind(group, kind)
    }

    /// JSON Pointer tokens from the object to its pod (template).
    fn pod_path(self) -> &'static [&'static str] {
        match self {
            Self::Pod => &[],
            Self::Workload => &["spec", "template"],
            Self::CronJob => &["spec", "jobTemplate", "spec", "template"],
        }
    }
}

/// Which containers of a pod may be changed by this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A new Pod or pod template: every container list.
    Create,
    /// A Pod or template update: images that the update changes, in `containers` and
    /// `initContainers`.
    Update,
    /// An update of the `pods/ephemeralcontainers` subresource: new ephemeral containers only.
    EphemeralContainers,
}

impl Scope {
    fn kinds(self) -> &'static [ContainerKind] {
        match self {
            Self::Create => &[
                ContainerKind::Init,
                ContainerKind::Main,
                ContainerKind::Ephemeral,
            ],
            Self::Update => &[ContainerKind::Init, ContainerKind::Main],
            Self::EphemeralContainers => &[ContainerKind::Ephemeral],
        }
    }
}

// === Plans ===

/// Why a whole pod is left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodSkip {
    /// The pod (or its template, or the workload) carries `pullthrough.dev/skip: "true"`.
    OptedOut,
    /// An `exclude.podLabels` selector matches.
    LabelExcluded(String),
    /// An owner reference's kind is in `exclude.ownerKinds`.
    OwnerExcluded(String),
}

impl PodSkip {
    /// A short, bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::OptedOut => "opted_out",
            Self::LabelExcluded(_) => "label_excluded",
            Self::OwnerExcluded(_) => "owner_excluded",
        }
    }
}

impl std::fmt::Display for PodSkip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OptedOut => write!(f, "the pod opts out with {SKIP_ANNOTATION}"),
            Self::LabelExcluded(sel) => write!(f, "the pod label selector {sel:?} is excluded"),
            Self::OwnerExcluded(kind) => write!(f, "pods owned by a {kind} are excluded"),
        }
    }
}

/// The decision for one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageOutcome<'c> {
    /// Which list the container is in.
    pub kind: ContainerKind,
    /// Index in that list.
    pub index: usize,
    /// Container name, borrowed from the request where it can be.
    pub container: Cow<'c, str>,
    /// The image as the request has it.
    pub image: Cow<'c, str>,
    /// What happens to it.
    pub decision: Decision,
    /// Metrics label: configured upstream registry or `other`.
    pub registry: &'c str,
}

/// What a request does to one pod (or pod template).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodPlan<'c> {
    /// Set when the whole pod is left alone.
    pub skipped: Option<PodSkip>,
    /// One entry per container considered.
    pub images: Vec<ImageOutcome<'c>>,
    /// JSON Pointer tokens from the object to its pod (template).
    base: &'static [&'static str],
    /// The record of original images to write, when images are rewritten and it is kept.
    record: Option<Record>,
    /// The digest policy the plan was made under, for the warnings.
    digests: DigestPolicy,
}

/// The record of original images, and where it goes: the Pod may have no metadata, or
/// metadata without annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    at: RecordAt,
    /// The annotation's value (a JSON object of container names to images, as text), written
    /// as the JSON string that goes into the patch.
    literal: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordAt {
    /// `add /metadata {"annotations": {record}}`
    Metadata,
    /// `add /metadata/annotations {record}`
    Annotations,
    /// `add /metadata/annotations/<record>`
    Annotation,
}

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
    fn write_patch(&self, out: &mut Vec<u8>) {
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

    /// Whether the plan changes anything.
    pub fn changes(&self) -> bool {
        self.images
            .iter()
            .any(|i| matches!(i.decision, Decision::Rewrite(_)))
    }

    /// Number of images rewritten.
    pub fn rewritten(&self) -> usize {
        self.images
            .iter()
            .filter(|i| matches!(i.decision, Decision::Rewrite(_)))
            .count()
    }

    /// Warnings for people: one per image left alone for a reason they should know, one per
    /// digest-pinned image rewritten anyway, and one when the whole pod is skipped.
    pub fn warnings(&self, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(skip) = &self.skipped {
            out.push(truncate(format!(
                "pullthrough: {prefix}images left unchanged: {skip}"
            )));
        }
        for i in &self.images {
            let text = match &i.decision {
                Decision::Skip(reason) if reason.is_notable() => format!(
                    "pullthrough: {prefix}{} {:?} image {:?} left unchanged: {reason}",
                    i.kind.noun(),
                    i.container,
                    i.image
                ),
                Decision::Rewrite(_) if i.image.contains('@') => format!(
                    "pullthrough: {prefix}{} {:?} image {:?} is pinned by digest and rewritten: {}",
                    i.kind.noun(),
                    i.container,
                    i.image,
                    if self.digests == DigestPolicy::WhenCached {
                        "the pull-through cache holds its digest"
                    } else {
                        "the cache must already hold it"
                    }
                ),
                _ => continue,
            };
            out.push(truncate(text));
        }
        out
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > WARNING_MAX_LEN {
        let mut cut = WARNING_MAX_LEN - 3;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// Plans the rewrite of one object of a known kind. `old` is the object before an update.
pub fn plan_object<'c>(
    config: &'c Config,
    rules: &RuleSnapshot,
    digests: &DigestSnapshot,
    target: TargetKind,
    object: &ObjectView<'c>,
    old: Option<&ObjectView<'c>>,
    scope: Scope,
) -> PodPlan<'c> {
    let (pod, old_pod) = match target {
        TargetKind::Pod => (Some(object), old),
        TargetKind::Workload => (template(object), old.and_then(template)),
        TargetKind::CronJob => (job_template(object), old.and_then(job_template)),
    };
    let Some(pod) = pod else {
        return PodPlan::default();
    };

    if let Some(skip) = pod_skip(config, object, pod) {
        return PodPlan {
            skipped: Some(skip),
            ..PodPlan::default()
        };
    }
    let Some(spec) = pod.spec() else {
        return PodPlan::default();
    };
    let old_spec = old_pod.and_then(ObjectView::spec);

    let mut images = Vec::with_capacity(scope.kinds().iter().map(|&k| spec.list(k).len()).sum());
    for (kind, index, container) in spec.containers(scope.kinds()) {
        let Some(image_text) = container.image.as_ref() else {
            continue;
        };
        let image = &**image_text;
        let Verdict {
            mut decision,
            mapping,
        } = decide_with(config, rules, digests, image);
        // An update is about what it changes: an image it leaves as it was is neither
        // rewritten (that would restart the container) nor reported again.
        if scope != Scope::Create {
            let unchanged = old_spec.is_some_and(|old| {
                old.list(kind)
                    .iter()
                    .any(|c| c.name == container.name && c.image.as_deref() == Some(image))
            });
            if unchanged {
                decision = Decision::Skip(SkipReason::UnchangedOnUpdate);
            }
        }
        images.push(ImageOutcome {
            kind,
            index,
            container: container.name.clone(),
            image: image_text.clone(),
            decision,
            registry: mapping.map_or("other", |m| m.registry.as_str()),
        });
    }

    // The ephemeral containers subresource ignores metadata changes, so the record of
    // originals is only written where it will be kept.
    let annotate = scope != Scope::EphemeralContainers;
    let record = if annotate { record(pod, &images) } else { None };
    PodPlan {
        skipped: None,
        images,
        base: target.pod_path(),
        record,
        digests: config.digests,
    }
}

fn template<'o, 'a>(object: &'o ObjectView<'a>) -> Option<&'o ObjectView<'a>> {
    object.spec.as_ref()?.template.as_deref()
}

fn job_template<'o, 'a>(object: &'o ObjectView<'a>) -> Option<&'o ObjectView<'a>> {
    template(object.spec.as_ref()?.job_template.as_deref()?)
}

fn pod_skip(config: &Config, object: &ObjectView<'_>, pod: &ObjectView<'_>) -> Option<PodSkip> {
    let opted_out = |o: &ObjectView<'_>| {
        o.annotation(SKIP_ANNOTATION)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    };
    if opted_out(pod) || opted_out(object) {
        return Some(PodSkip::OptedOut);
    }
    if let Some(labels) = pod.metadata.as_ref().and_then(|m| m.labels.as_ref()) {
        let pairs = || labels.iter().map(|(k, v)| (&*k.0, &*v.0));
        if let Some(sel) = config
            .exclude
            .pod_labels
            .iter()
            .find(|sel| sel.matches(pairs()))
        {
            let text = match &sel.value {
                Some(v) => format!("{}={v}", sel.key),
                None => sel.key.clone(),
            };
            return Some(PodSkip::LabelExcluded(text));
        }
    }
    let owners = object
        .metadata
        .as_ref()
        .and_then(|m| m.owner_references.as_deref())
        .unwrap_or_default();
    owners
        .iter()
        .find(|o| config.exclude.owner_kinds.iter().any(|k| *k == o.kind))
        .map(|o| PodSkip::OwnerExcluded(o.kind.clone().into_owned()))
}

fn pointer(base: &[&str], rest: &[Token<'_>]) -> PointerBuf {
    PointerBuf::from_tokens(
        base.iter()
            .map(|t| Token::new(*t))
            .chain(rest.iter().cloned()),
    )
}

/// `/<base>/spec/<list>/<index>/image`. Every token is a plain word or a number, so the pointer
/// is written out whole rather than token by token (one allocation, not one per token).
fn image_pointer(base: &[&str], kind: ContainerKind, index: usize) -> PointerBuf {
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
            ],
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

/// Appends `/<base>/spec/<list>/<index>/image`.
fn push_image_path(path: &mut String, base: &[&str], kind: ContainerKind, index: usize) {
    push_tokens(path, base);
    path.push_str("/spec/");
    path.push_str(kind.field());
    path.push('/');
    push_decimal(path, index);
    path.push_str("/image");
}

/// Appends `n` in decimal, without the formatting machinery (measurable once per image).
fn push_decimal(out: &mut String, mut n: usize) {
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
fn record_pointer(base: &[&str]) -> PointerBuf {
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

/// The record of original images for the images `images` rewrites, merged into what earlier
/// passes recorded (an update, or a reinvocation after another webhook); `None` when nothing is
/// rewritten.
fn record(pod: &ObjectView<'_>, images: &[ImageOutcome<'_>]) -> Option<Record> {
    let mut originals: BTreeMap<&str, &str> = BTreeMap::new();
    for i in images {
        if matches!(i.decision, Decision::Rewrite(_)) {
            originals.insert(&i.container, &i.image);
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

// === Responses ===

/// An `admission.k8s.io/v1` AdmissionReview carrying a response, in the documented wire form
/// (`patch` as a base64 string).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewResponse {
    api_version: &'static str,
    kind: &'static str,
    /// The response.
    pub response: AdmissionResponse,
}

/// The `response` of an AdmissionReview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionResponse {
    /// The request's uid.
    pub uid: String,
    /// Whether the request is admitted.
    pub allowed: bool,
    /// `JSONPatch` when a patch is present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
    /// The base64-encoded JSON Patch.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_base64"
    )]
    pub patch: Option<String>,
    /// Why the request was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Messages shown to the client.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Audit annotations (the API server prefixes the webhook name).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub audit_annotations: BTreeMap<String, String>,
}

/// Writes a base64 string as it is: its alphabet never needs JSON escaping, and checking the
/// largest field of the response byte by byte for characters to escape is measurable.
#[allow(
    clippy::ref_option,
    reason = "serde's serialize_with hands the field over by reference"
)]
fn serialize_base64<S: serde::Serializer>(patch: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::Error as _;
    match patch {
        Some(p) => serde_json::value::RawValue::from_string(format!("\"{p}\""))
            .map_err(S::Error::custom)?
            .serialize(s),
        None => s.serialize_none(),
    }
}

/// A `metav1.Status` for refused requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    #[serde(rename = "status")]
    state: &'static str,
    /// Human-readable reason.
    pub message: String,
    reason: &'static str,
    /// HTTP-like code.
    pub code: u16,
}

impl AdmissionResponse {
    fn allow(uid: &str) -> Self {
        Self {
            uid: uid.to_owned(),
            allowed: true,
            patch_type: None,
            patch: None,
            status: None,
            warnings: Vec::new(),
            audit_annotations: BTreeMap::new(),
        }
    }

    /// A refusal of a request that cannot be read (kube's "invalid" response).
    pub fn invalid(uid: &str, message: impl Into<String>) -> Self {
        Self {
            allowed: false,
            status: Some(Status {
                state: "Failure",
                message: message.into(),
                reason: "BadRequest",
                code: 400,
            }),
            ..Self::allow(uid)
        }
    }

    /// Wraps the response in an AdmissionReview.
    pub fn into_review(self) -> ReviewResponse {
        ReviewResponse {
            api_version: ADMISSION_API_VERSION,
            kind: "AdmissionReview",
            response: self,
        }
    }
}

impl ReviewResponse {
    /// Serialises the review: the same bytes as its `Serialize` form, written field by field.
    pub fn to_vec(&self) -> Vec<u8> {
        let r = &self.response;
        let patch = r.patch.as_ref().map_or(0, String::len);
        let mut out = Vec::with_capacity(512 + patch);
        out.extend_from_slice(b"{\"apiVersion\":");
        json::write_string(&mut out, self.api_version);
        out.extend_from_slice(b",\"kind\":");
        json::write_string(&mut out, self.kind);
        out.extend_from_slice(b",\"response\":{\"uid\":");
        json::write_string(&mut out, &r.uid);
        out.extend_from_slice(if r.allowed {
            b",\"allowed\":true"
        } else {
            b",\"allowed\":false"
        });
        if let Some(patch_type) = r.patch_type {
            out.extend_from_slice(b",\"patchType\":");
            json::write_string(&mut out, patch_type);
        }
        if let Some(patch) = &r.patch {
            out.extend_from_slice(b",\"patch\":");
            json::write_string(&mut out, patch);
        }
        if let Some(status) = &r.status {
            out.extend_from_slice(b",\"status\":");
            write_json(&mut out, status);
        }
        if !r.warnings.is_empty() {
            out.extend_from_slice(b",\"warnings\":[");
            for (n, warning) in r.warnings.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                json::write_string(&mut out, warning);
            }
            out.push(b']');
        }
        if !r.audit_annotations.is_empty() {
            out.extend_from_slice(b",\"auditAnnotations\":");
            json::write_object(
                &mut out,
                r.audit_annotations
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            );
        }
        out.extend_from_slice(b"}}");
        out
    }
}

/// A map of strings as a JSON object, the text serde_json writes for it.
fn object_text(map: &BTreeMap<&str, &str>) -> String {
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
fn write_object_literal(out: &mut Vec<u8>, map: &BTreeMap<&str, &str>) {
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

/// Writes a value with serde_json. Strings, numbers and maps of them cannot fail to serialise.
fn write_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let _ = serde_json::to_writer(out, value);
}

/// How the request ended, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed with a patch.
    Patched,
    /// Allowed without a patch.
    Allowed,
    /// Refused as unreadable.
    Invalid,
}

impl Outcome {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Patched => "patched",
            Self::Allowed => "allowed",
            Self::Invalid => "invalid",
        }
    }
}

/// What the webhook made of one request: the response and what to count and log.
#[derive(Debug)]
pub struct Reviewed<'c> {
    /// The response to send.
    pub response: AdmissionResponse,
    /// How it ended.
    pub outcome: Outcome,
    /// The plan, when the request was about a pod or pod template.
    pub plan: PodPlan<'c>,
    /// Namespace of the object.
    pub namespace: String,
    /// Name (or generateName) of the object.
    pub name: String,
    /// Whether the request is a dry run.
    pub dry_run: bool,
}

/// The answer to a body that is not an AdmissionReview at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unreadable(pub String);

/// Reviews a raw AdmissionReview body. `Err` means no uid could be read, so no AdmissionReview
/// answer is possible (the server replies HTTP 400). The answer borrows container names and
/// images from `body`.
pub fn review<'c>(
    config: &'c Config,
    rules: &RuleSnapshot,
    body: &'c [u8],
) -> Result<Reviewed<'c>, Unreadable> {
    review_with(config, rules, &DigestSnapshot::EMPTY, body)
}

/// [`review`], given what is known of the pinned digests the cache holds.
pub fn review_with<'c>(
    config: &'c Config,
    rules: &RuleSnapshot,
    digests: &DigestSnapshot,
    body: &'c [u8],
) -> Result<Reviewed<'c>, Unreadable> {
    // Checking the whole body as UTF-8 once is cheaper than checking every string as it is read;
    // a body that is not UTF-8 is read as bytes, for the same error as before.
    let parsed = match std::str::from_utf8(body) {
        // The reader leaves to serde_json what it does not read, and serde_json then answers.
        Ok(text) => read::review(text).map_or_else(|| serde_json::from_str(text), Ok),
        Err(_) => serde_json::from_slice(body),
    };
    let parsed: ReviewView<'_> = match parsed {
        Ok(v) => v,
        Err(e) => {
            return match read_uid(body) {
                Some(uid) => Ok(invalid(
                    &uid,
                    format!("cannot read the AdmissionReview: {e}"),
                )),
                None => Err(Unreadable(format!("body is not an AdmissionReview: {e}"))),
            };
        }
    };
    let Some(request) = parsed.request else {
        return Err(Unreadable("AdmissionReview has no request".to_owned()));
    };
    if parsed.api_version.as_deref() != Some(ADMISSION_API_VERSION)
        || parsed.kind.as_deref() != Some("AdmissionReview")
    {
        return Ok(invalid(
            &request.uid,
            format!(
                "expected an {ADMISSION_API_VERSION} AdmissionReview, got {} {}",
                parsed.api_version.as_deref().unwrap_or("no apiVersion"),
                parsed.kind.as_deref().unwrap_or("no kind"),
            ),
        ));
    }
    Ok(review_request(config, rules, digests, &request))
}

fn invalid(uid: &str, message: String) -> Reviewed<'static> {
    Reviewed {
        response: AdmissionResponse::invalid(uid, message),
        outcome: Outcome::Invalid,
        plan: PodPlan::default(),
        namespace: String::new(),
        name: String::new(),
        dry_run: false,
    }
}

fn read_uid(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Outer {
        request: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        uid: String,
    }
    // Only a syntactically valid document with a string uid is answered with a review.
    let value: Value = serde_json::from_slice(body).ok()?;
    let outer: Outer = serde_json::from_value(value).ok()?;
    Some(outer.request.uid)
}

fn review_request<'c>(
    config: &'c Config,
    rules: &RuleSnapshot,
    digests: &DigestSnapshot,
    request: &RequestView<'c>,
) -> Reviewed<'c> {
    let object_name = request
        .object
        .as_ref()
        .and_then(|o| o.metadata.as_ref())
        .and_then(|m| m.name.as_deref().or(m.generate_name.as_deref()));
    let name = request
        .name
        .as_deref()
        .or(object_name)
        .unwrap_or_default()
        .to_owned();
    let mut reviewed = Reviewed {
        response: AdmissionResponse::allow(&request.uid),
        outcome: Outcome::Allowed,
        plan: PodPlan::default(),
        namespace: request.namespace.as_deref().unwrap_or_default().to_owned(),
        name,
        dry_run: request.dry_run.unwrap_or(false),
    };

    let target = TargetKind::from_group_kind(&request.kind.group, &request.kind.kind)
        .filter(|_| request.kind.version == "v1");
    let scope = match (request.operation.as_ref(), request.sub_resource.as_deref()) {
        ("CREATE", None | Some("")) => Scope::Create,
        ("UPDATE", None | Some("")) => Scope::Update,
        ("UPDATE", Some("ephemeralcontainers")) if target == Some(TargetKind::Pod) => {
            Scope::EphemeralContainers
        }
        _ => return reviewed,
    };
    let (Some(target), Some(object)) = (target, request.object.as_ref()) else {
        return reviewed;
    };

    let plan = plan_object(
        config,
        rules,
        digests,
        target,
        object,
        request.old_object.as_ref(),
        scope,
    );
    let response = &mut reviewed.response;
    let preview_only = target != TargetKind::Pod && config.workloads == WorkloadPolicy::Preview;
    if preview_only {
        response.warnings = workload_preview_warnings(&plan);
    } else {
        response.warnings = plan.warnings("");
        if plan.changes() {
            // An empty patch would be a no-op.
            let mut bytes = Vec::with_capacity(160 * (plan.images.len() + 1));
            plan.write_patch(&mut bytes);
            response.patch_type = Some("JSONPatch");
            response.patch = Some(base64_simd::STANDARD.encode_to_string(&bytes));
            response
                .audit_annotations
                .insert("rewritten-images".to_owned(), plan.rewritten().to_string());
            reviewed.outcome = Outcome::Patched;
        }
    }
    reviewed.plan = plan;
    reviewed
}

fn workload_preview_warnings(plan: &PodPlan<'_>) -> Vec<String> {
    let mut out = plan.warnings("pod template ");
    for i in &plan.images {
        if let Decision::Rewrite(new) = &i.decision {
            out.push(truncate(format!(
                "pullthrough: pod template {} {:?}: Pods will pull {:?} as {:?}",
                i.kind.noun(),
                i.container,
                i.image,
                new
            )));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::needless_pass_by_value)]
mod tests {
    use super::*;
    use crate::config::Overrides;
    use base64::Engine as _;
    use serde_json::json;

    const HOST: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

    fn config(extra: &str) -> Config {
        Config::load(
            &format!("accountId: \"123456789012\"\nregion: eu-west-1\n{extra}"),
            &Overrides::default(),
        )
        .unwrap()
    }

    fn review_json(operation: &str, kind: (&str, &str), object: Value, old: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "kind": {"group": kind.0, "version": "v1", "kind": kind.1},
                "resource": {"group": kind.0, "version": "v1", "resource": "x"},
                "namespace": "shop",
                "operation": operation,
                "object": object,
                "oldObject": old,
            }
        }))
        .unwrap()
    }

    fn pod(containers: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": containers}})
    }

    /// Applies the response's patch to `object` and returns the result.
    fn patched(response: &AdmissionResponse, mut object: Value) -> Value {
        if let Some(p) = &response.patch {
            let bytes = base64::engine::general_purpose::STANDARD.decode(p).unwrap();
            let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
            json_patch::patch(&mut object, &patch).unwrap();
        }
        object
    }

    #[test]
    fn object_text_is_what_serde_json_writes() {
        let cases: [&[(&str, &str)]; 4] = [
            &[],
            &[("app", "nginx:1.27")],
            &[
                ("b", "quay.io/x:1"),
                ("a", "ghcr.io/y@sha256:00"),
                ("c", "z"),
            ],
            &[
                ("q\"uote", "back\\slash"),
                ("ctl\u{1}", "tab\t"),
                ("é", "日本"),
            ],
        ];
        for pairs in cases {
            let map: BTreeMap<&str, &str> = pairs.iter().copied().collect();
            let text = serde_json::to_string(&map).unwrap();
            assert_eq!(object_text(&map), text);
            let mut literal = Vec::new();
            write_object_literal(&mut literal, &map);
            assert_eq!(literal, serde_json::to_vec(&text).unwrap(), "{text}");
        }
    }

    #[test]
    fn rewrites_pod_images_and_records_originals() {
        let c = config("");
        let object = pod(
            json!([{"name": "web", "image": "nginx:1.27"}, {"name": "x", "image": "registry.example/x:1"}]),
        );
        let body = review_json("CREATE", ("", "Pod"), object.clone(), Value::Null);
        let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
        assert_eq!(r.outcome, Outcome::Patched);
        assert_eq!(r.response.patch_type, Some("JSONPatch"));
        let after = patched(&r.response, object);
        assert_eq!(
            after["spec"]["containers"][0]["image"],
            format!("{HOST}/docker-hub/library/nginx:1.27")
        );
        assert_eq!(
            after["spec"]["containers"][1]["image"],
            "registry.example/x:1"
        );
        let record: Value = serde_json::from_str(
            after["metadata"]["annotations"][ORIGINAL_IMAGES_ANNOTATION]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(record, json!({"web": "nginx:1.27"}));
        assert_eq!(r.response.warnings.len(), 1);
        assert!(
            r.response.warnings[0].contains("\"x\""),
            "{:?}",
            r.response.warnings
        );
        assert!(r.response.warnings[0].contains("no pull-through cache rule"));
    }

    #[test]
    fn second_pass_changes_nothing() {
        let c = config("");
        let object = pod(json!([{"name": "web", "image": "nginx:1.27"}]));
        let body = review_json("CREATE", ("", "Pod"), object.clone(), Value::Null);
        let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
        let once = patched(&r.response, object);
        let body = review_json("CREATE", ("", "Pod"), once, Value::Null);
        let again = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
        assert_eq!(again.outcome, Outcome::Allowed);
        assert!(again.response.patch.is_none());
        assert!(again.response.warnings.is_empty());
    }

    #[test]
    fn skip_annotation_opts_a_pod_out() {
        let c = config("");
        let mut object = pod(json!([{"name": "web", "image": "nginx:1.27"}]));
        object["metadata"]["annotations"] = json!({SKIP_ANNOTATION: "true"});
        let body = review_json("CREATE", ("", "Pod"), object, Value::Null);
        let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
        assert!(r.response.patch.is_none());
        assert_eq!(r.plan.skipped, Some(PodSkip::OptedOut));
    }

    #[test]
    fn excluded_labels_and_owner_kinds_leave_the_pod_alone() {
        let c =
            config("exclude:\n  podLabels: [\"cnpg.io/cluster\"]\n  ownerKinds: [postgresql]\n");
        let mut object = pod(json!([{"name": "db", "image": "postgres:16"}]));
        object["metadata"]["labels"] = json!({"cnpg.io/cluster": "main"});
        let body = review_json("CREATE", ("", "Pod"), object, Value::Null);
        let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
        assert_eq!(
            r.plan.skipped,
            Some(PodSkip::LabelExcluded("cnpg.io/cluster".into()))
        );

        let mut object = pod(json!([{"name": "db", "image": "postgres:16"}]));
        object["metadata"]["ownerReferences"] = json!([{"apiVersion": "acid.zalan.do/v1", "kind": "postgresql", "name": "x", "uid": "1"}]);
        let body = review_json("CREATE", ("", "Pod"), object, Value::Null);
        let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
        assert_eq!(
            r.plan.skipped,
            Some(PodSkip::OwnerExcluded("postgresql".into()))
        );
        assert!(r.response.patch.is_none());
        assert_eq!(r.response.warnings.len(), 1);
    }

    #[test]
    fn update_rewrites_only_images_the_update_changes() {
        let c = config("");
        let old =
            pod(json!([{"name": "a", "image": "nginx:1.27"}, {"name": "b", "image": "redis:7"}]));
        let new =
            pod(json!([{"name": "a", "image": "nginx:1.27"}, {"name": "b", "image": "redis:8"}]));
        let body = review_json("UPDATE", ("", "Pod"), new.clone(), old);
        let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
        let after = patched(&r.response, new);
        assert_eq!(after["spec"]["containers"][0]["image"], "nginx:1.27");
        assert_eq!(
            after["spec"]["containers"][1]["image"],
            format!("{HOST}/docker-hub/library/redis:8")
        );
        assert!(r.response.warnings.is_empty(), "{:?}", r.response.warnings);
    }

    #[test]
    fn update_that_leaves_images_alone_is_silent() {
        let c = config("");
        let old = pod(json!([{"name": "a", "image": "registry.example/x:1"}]));
        let mut new = old.clone();
        new["metadata"]["labels"] = json!({"team": "shop"});
        let body = review_json("UPDATE", ("", "Pod"), new, old);
        let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
        assert!(r.response.patch.is_none());
        assert!(r.response.warnings.is_empty(), "{:?}", r.response.warnings);
    }

    #[test]
    fn update_merges_the_original_images_record() {
        let c = config("");
        let mut old = pod(
            json!([{"name": "a", "image": format!("{HOST}/docker-hub/library/nginx:1.27")}, {"name": "b", "image": "redis:7"}]),
        );
        old["metadata"]["annotations"] =
            json!({ORIGINAL_IMAGES_ANNOTATION: "{\"a\":\"nginx:1.27\"}"});
        let mut new = old.clone();
        new["spec"]["containers"][1]["image"] = json!("redis:8");
        let body = review_json("UPDATE", ("", "Pod"), new.clone(), old);
        let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
        let after = patched(&r.response, new);
        let record: Value = serde_json::from_str(
            after["metadata"]["annotations"][ORIGINAL_IMAGES_ANNOTATION]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(record, json!({"a": "nginx:1.27", "b": "redis:8"}));
    }

    #[test]
    fn workloads_get_a_preview_by_default_and_a_patch_when_asked() {
        let deploy = json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}
        });
        let body = review_json(
            "CREATE",
            ("apps", "Deployment"),
            deploy.clone(),
            Value::Null,
        );
        let c = config("");
        let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
        assert!(r.response.patch.is_none());
        assert!(
            r.response
                .warnings
                .iter()
                .any(|w| w.contains(&format!("{HOST}/docker-hub/library/nginx:1.27"))),
            "{:?}",
            r.response.warnings
        );

        let c = config("workloads: rewrite\n");
        let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
        let after = patched(&r.response, deploy);
        assert_eq!(
            after["spec"]["template"]["spec"]["containers"][0]["image"],
            format!("{HOST}/docker-hub/library/nginx:1.27")
        );
        assert!(
            after["spec"]["template"]["metadata"]["annotations"][ORIGINAL_IMAGES_ANNOTATION]
                .is_string()
        );
    }

    #[test]
    fn cronjob_template_without_metadata_gets_one() {
        let cj = json!({
            "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
            "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "job", "image": "busybox:1.36"}]}}}}}
        });
        let body = review_json("CREATE", ("batch", "CronJob"), cj.clone(), Value::Null);
        let c = config("workloads: rewrite\n");
        let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
        let after = patched(&r.response, cj);
        let tpl = &after["spec"]["jobTemplate"]["spec"]["template"];
        assert_eq!(
            tpl["spec"]["containers"][0]["image"],
            format!("{HOST}/docker-hub/library/busybox:1.36")
        );
        assert!(tpl["metadata"]["annotations"][ORIGINAL_IMAGES_ANNOTATION].is_string());
    }

    #[test]
    fn other_kinds_and_operations_are_allowed_untouched() {
        let c = config("");
        let body = review_json(
            "CREATE",
            ("", "Service"),
            json!({"metadata": {}}),
            Value::Null,
        );
        let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
        assert_eq!(r.outcome, Outcome::Allowed);
        let body = review_json("DELETE", ("", "Pod"), Value::Null, pod(json!([])));
        assert_eq!(
            review(&c, &RuleSnapshot::unknown(), &body).unwrap().outcome,
            Outcome::Allowed
        );
    }

    #[test]
    fn unreadable_bodies() {
        let c = config("");
        assert!(review(&c, &RuleSnapshot::unknown(), b"not json").is_err());
        assert!(review(&c, &RuleSnapshot::unknown(), b"{}").is_err());
        // A uid can be read, but the object has the wrong shape: an invalid response.
        let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u-2", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": "CREATE",
                "object": {"spec": {"containers": 7}}}});
        let body = serde_json::to_vec(&body).unwrap();
        let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
        assert_eq!(r.outcome, Outcome::Invalid);
        assert_eq!(r.response.uid, "u-2");
        assert!(!r.response.allowed);
        assert_eq!(r.response.status.as_ref().unwrap().code, 400);
    }

    #[test]
    fn v1beta1_reviews_are_refused() {
        let mut body: Value = serde_json::from_slice(&review_json(
            "CREATE",
            ("", "Pod"),
            pod(json!([])),
            Value::Null,
        ))
        .unwrap();
        body["apiVersion"] = json!("admission.k8s.io/v1beta1");
        let c = config("");
        let body = serde_json::to_vec(&body).unwrap();
        let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
        assert_eq!(r.outcome, Outcome::Invalid);
    }

    #[test]
    fn response_uses_the_documented_wire_form() {
        let c = config("");
        let body = review_json(
            "CREATE",
            ("", "Pod"),
            pod(json!([{"name": "a", "image": "nginx"}])),
            Value::Null,
        );
        let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
        let wire: Value = serde_json::from_slice(&r.response.into_review().to_vec()).unwrap();
        assert_eq!(wire["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(wire["kind"], "AdmissionReview");
        assert_eq!(wire["response"]["uid"], "u-1");
        assert_eq!(wire["response"]["allowed"], true);
        assert_eq!(wire["response"]["patchType"], "JSONPatch");
        assert!(wire["response"]["patch"].is_string());
    }

    #[test]
    fn a_missing_rule_leaves_the_image_with_a_warning_until_it_appears() {
        use crate::ecr::CacheRule;
        use std::time::SystemTime;
        let c = config("registries:\n  docker.io: docker-hub\n");
        let body = review_json(
            "CREATE",
            ("", "Pod"),
            pod(json!([{"name": "web", "image": "nginx:1.27"}])),
            Value::Null,
        );
        let missing = crate::rules::snapshot(&c, &[], &BTreeMap::new(), SystemTime::now());
        let r = review(&c, &missing, &body).unwrap();
        assert!(r.response.patch.is_none());
        assert_eq!(r.response.warnings.len(), 1);
        assert!(
            r.response.warnings[0].contains("rule \"docker-hub\" is missing"),
            "{:?}",
            r.response.warnings
        );

        let present = crate::rules::snapshot(
            &c,
            &[CacheRule {
                prefix: "docker-hub".into(),
                upstream_url: "registry-1.docker.io".into(),
                upstream_registry: Some("docker-hub".into()),
                credential_arn: None,
                upstream_repository_prefix: None,
            }],
            &BTreeMap::new(),
            SystemTime::now(),
        );
        let r = review(&c, &present, &body).unwrap();
        assert_eq!(r.outcome, Outcome::Patched);
    }

    #[test]
    fn refusals_never_echo_pod_env_or_annotation_values() {
        let c = config("");
        let secret = "s3cr3t-hunter2";
        let object = json!({"metadata": {"name": "p", "annotations": {"note": secret}},
            "spec": {"containers": [{"name": "a", "image": "nginx", "env": [{"name": "PASSWORD", "value": secret}]}]}});
        let mut broken: Vec<Value> = Vec::new();
        // uid readable: an invalid response; then no uid: HTTP 400. Each body is malformed
        // somewhere other than the secret.
        for (field, value) in [
            ("dryRun", json!("yes")),
            ("operation", json!(7)),
            ("kind", json!("Pod")),
            ("uid", json!(42)),
        ] {
            let mut body: Value = serde_json::from_slice(&review_json(
                "CREATE",
                ("", "Pod"),
                object.clone(),
                Value::Null,
            ))
            .unwrap();
            body["request"][field] = value;
            broken.push(body);
        }
        let mut wrong_image = object.clone();
        wrong_image["spec"]["containers"][0]["image"] = json!({"ref": secret});
        broken.push(
            serde_json::from_slice(&review_json(
                "CREATE",
                ("", "Pod"),
                wrong_image,
                Value::Null,
            ))
            .unwrap(),
        );
        for body in broken {
            let text = match review(
                &c,
                &RuleSnapshot::unknown(),
                &serde_json::to_vec(&body).unwrap(),
            ) {
                Ok(r) => {
                    assert_eq!(r.outcome, Outcome::Invalid, "{body}");
                    r.response.status.unwrap().message
                }
                Err(e) => e.to_string(),
            };
            assert!(!text.contains(secret), "{text}");
        }
    }

    #[test]
    fn image_pointers_match_the_token_by_token_form() {
        for target in [TargetKind::Pod, TargetKind::Workload, TargetKind::CronJob] {
            for kind in [
                ContainerKind::Init,
                ContainerKind::Main,
                ContainerKind::Ephemeral,
            ] {
                for index in [0, 7, 12] {
                    let tokens = [
                        Token::new("spec"),
                        Token::new(kind.field()),
                        Token::from(index),
                        Token::new("image"),
                    ];
                    assert_eq!(
                        image_pointer(target.pod_path(), kind, index),
                        pointer(target.pod_path(), &tokens)
                    );
                }
            }
        }
    }

    #[test]
    fn record_pointers_and_indexes_match_the_token_by_token_form() {
        for target in [TargetKind::Pod, TargetKind::Workload, TargetKind::CronJob] {
            let tokens = [
                Token::new("metadata"),
                Token::new("annotations"),
                Token::new(ORIGINAL_IMAGES_ANNOTATION),
            ];
            assert_eq!(
                record_pointer(target.pod_path()),
                pointer(target.pod_path(), &tokens)
            );
        }
        for n in [0, 1, 9, 10, 99, 100, 12_345, usize::MAX] {
            let mut s = String::new();
            push_decimal(&mut s, n);
            assert_eq!(s, n.to_string());
        }
    }

    #[test]
    fn unread_fields_with_invalid_utf8_do_not_stop_the_rewrite() {
        // Found by fuzzing: serde skips the fields the handler does not read without checking
        // their UTF-8, so such a body is answered like any other (the API server never sends
        // one). A bad byte in a field that is read makes the request unreadable instead.
        let c = config("");
        let mut body = review_json(
            "CREATE",
            ("", "Pod"),
            json!({"metadata": {"name": "p", "managedFields": [{"manager": "XX"}]},
                   "spec": {"containers": [{"name": "a", "image": "nginx"}]}}),
            Value::Null,
        );
        let at = body.windows(2).position(|w| w == b"XX").unwrap();
        body[at] = 0x92;
        let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
        assert_eq!(r.outcome, Outcome::Patched);

        let mut body = review_json(
            "CREATE",
            ("", "Pod"),
            pod(json!([{"name": "a", "image": "ngXnx"}])),
            Value::Null,
        );
        let at = body.windows(4).position(|w| w == b"ngXn").unwrap();
        body[at + 2] = 0x92;
        assert!(review(&c, &RuleSnapshot::unknown(), &body).is_err());
    }

    #[test]
    fn hand_written_json_is_what_serde_writes() {
        let mut response = AdmissionResponse::allow("u-\"1\"\u{1}");
        let plain = response.clone().into_review();
        assert_eq!(plain.to_vec(), serde_json::to_vec(&plain).unwrap());
        response.patch_type = Some("JSONPatch");
        response.patch = Some("W3sib3AiOiJhZGQifV0=".to_owned());
        response.warnings = vec!["a \"quoted\" \\ warning\n".to_owned(), "é plain".to_owned()];
        response
            .audit_annotations
            .insert("rewritten-images".to_owned(), "4".to_owned());
        response
            .audit_annotations
            .insert("a\tb".to_owned(), "\u{7f}".to_owned());
        let full = response.into_review();
        let want = serde_json::to_vec(&full).unwrap();
        // The derived form writes the patch through a raw value: the same text.
        assert_eq!(full.to_vec(), want);
        let refused = AdmissionResponse::invalid("u", "bad \"body\"").into_review();
        assert_eq!(refused.to_vec(), serde_json::to_vec(&refused).unwrap());
    }

    #[test]
    fn the_written_patch_is_what_serde_writes_for_the_operations() {
        let c = config("workloads: rewrite\ndigests: rewrite\n");
        let containers = json!([
            {"name": "a", "image": "nginx:1.27"},
            {"name": "we\"ird\\", "image": "quay.io/x/y:1"},
            {"name": "c", "image": "ghcr.io/o/p:2@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
        ]);
        let pods = [
            json!({"spec": {"containers": containers.clone()}}),
            json!({"metadata": {"name": "p"}, "spec": {"containers": containers.clone()}}),
            json!({"metadata": {"annotations": {"x": "y"}}, "spec": {"containers": containers.clone()}}),
            json!({"metadata": {"annotations": {ORIGINAL_IMAGES_ANNOTATION: "{\"old\":\"busybox\"}"}},
                   "spec": {"initContainers": containers.clone(), "containers": containers.clone()}}),
            json!({"spec": {"containers": [{"name": "a", "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/x:1"}]}}),
        ];
        let mut planned = 0;
        for pod in pods {
            for (target, object) in [
                (TargetKind::Pod, pod.clone()),
                (
                    TargetKind::Workload,
                    json!({"spec": {"template": pod.clone()}}),
                ),
                (
                    TargetKind::CronJob,
                    json!({"spec": {"jobTemplate": {"spec": {"template": pod.clone()}}}}),
                ),
            ] {
                let text = object.to_string();
                let view: ObjectView<'_> = serde_json::from_str(&text).unwrap();
                for scope in [Scope::Create, Scope::EphemeralContainers] {
                    let plan = plan_object(
                        &c,
                        &RuleSnapshot::unknown(),
                        &DigestSnapshot::EMPTY,
                        target,
                        &view,
                        None,
                        scope,
                    );
                    let operations = plan.operations();
                    let mut bytes = Vec::new();
                    plan.write_patch(&mut bytes);
                    assert_eq!(
                        String::from_utf8(bytes).unwrap(),
                        serde_json::to_string(&operations).unwrap(),
                        "{target:?} {scope:?} {text}"
                    );
                    assert_eq!(plan.changes(), !operations.is_empty());
                    planned += operations.len();
                }
            }
        }
        assert!(planned > 20, "the cases must rewrite: {planned} operations");
    }

    #[test]
    fn patch_encoding_is_standard_base64() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state.to_le_bytes()[0]
                })
                .collect();
            assert_eq!(
                base64_simd::STANDARD.encode_to_string(&bytes),
                base64::engine::general_purpose::STANDARD.encode(&bytes)
            );
        }
    }

    #[test]
    fn optional_strings_are_borrowed_unless_escaped() {
        let meta: MetaView<'_> = serde_json::from_str(
            r#"{"name": "p", "generateName": "p-\u0041", "labels": {"a": "b"}, "annotations": {"k\n": "v"}}"#,
        )
        .unwrap();
        assert!(matches!(meta.name, Some(Cow::Borrowed("p"))));
        assert!(matches!(meta.generate_name.as_ref(), Some(Cow::Owned(s)) if s == "p-A"));
        let labels = meta.labels.unwrap();
        assert!(matches!(labels.get("a"), Some(Text(Cow::Borrowed("b")))));
        assert_eq!(
            meta.annotations.unwrap().get("k\n").map(|v| &*v.0),
            Some("v")
        );
        let err = serde_json::from_str::<MetaView<'_>>(r#"{"name": 7}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid type: integer `7`, expected a string at line 1 column 10"
        );
    }

    #[test]
    fn long_warnings_are_truncated() {
        let s = truncate("é".repeat(300));
        assert!(s.len() <= WARNING_MAX_LEN);
        assert!(s.ends_with("..."));
    }
}
