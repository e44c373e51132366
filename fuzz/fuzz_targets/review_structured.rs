//! The admission handler on AdmissionReviews built from the captured fixtures: `arbitrary`
//! picks a fixture, then changes images, container lists, names, annotations, labels, owners,
//! the operation, the subresource, the kind (a Pod, or its spec wrapped in a Deployment or a
//! CronJob) and the envelope. The bytes are mostly well-formed reviews, so the fuzzer spends
//! its time in the rewrite and patch logic rather than in the JSON parser.
#![no_main]

use std::sync::LazyLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use pullthrough::admission::{ORIGINAL_IMAGES_ANNOTATION, SKIP_ANNOTATION};
use pullthrough::config::Config;
use pullthrough::rules::RuleSnapshot;
use pullthrough_fuzz::{check_review, config, rules};
use serde_json::{Map, Value, json};

/// Each configuration with its two rule snapshots: unknown, and every rule missing.
static SETUPS: LazyLock<Vec<(Config, [RuleSnapshot; 2])>> = LazyLock::new(|| {
    (0..pullthrough_fuzz::CONFIGS.len())
        .map(|i| {
            let c = config(i);
            let r = [rules(&c, false), rules(&c, true)];
            (c, r)
        })
        .collect()
});

const FIXTURES: &[&str] = &[
    include_str!(
        "../../tests/fixtures/admission/pod-create-by-replicaset-controller-deployment-with-sidecar.json"
    ),
    include_str!("../../tests/fixtures/admission/pod-create-dryrun-apply.json"),
    include_str!("../../tests/fixtures/admission/pod-create-dryrun-server-side-apply.json"),
    include_str!("../../tests/fixtures/admission/pod-create-generatename-ownerref-direct.json"),
    include_str!(
        "../../tests/fixtures/admission/pod-create-initcontainers-native-sidecar-multi-container.json"
    ),
    include_str!("../../tests/fixtures/admission/pod-create-kubectl-run.json"),
    include_str!("../../tests/fixtures/admission/pod-create-simple.json"),
    include_str!("../../tests/fixtures/admission/pod-update-dryrun-annotate.json"),
    include_str!(
        "../../tests/fixtures/admission/pod-update-ephemeralcontainers-kubectl-debug.json"
    ),
    include_str!("../../tests/fixtures/admission/pod-update-ephemeralcontainers-raw-put.json"),
    include_str!("../../tests/fixtures/admission/pod-update-label.json"),
];

const LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

#[derive(Debug, Arbitrary)]
enum Registry {
    Implicit,
    DockerIo,
    IndexDockerIo,
    Quay,
    Ghcr,
    K8s,
    EcrPublic,
    Gitlab,
    Target,
    OtherEcr,
    Localhost,
    Lookalike,
    Ipv6,
    Raw(String),
}

impl Registry {
    fn text(&self) -> String {
        match self {
            Self::Implicit => String::new(),
            Self::DockerIo => "docker.io/".into(),
            Self::IndexDockerIo => "index.docker.io/".into(),
            Self::Quay => "quay.io/".into(),
            Self::Ghcr => "ghcr.io/".into(),
            Self::K8s => "registry.k8s.io/".into(),
            Self::EcrPublic => "public.ecr.aws/".into(),
            Self::Gitlab => "registry.gitlab.com/".into(),
            Self::Target => format!("{}/", pullthrough_fuzz::HOST),
            Self::OtherEcr => "111122223333.dkr.ecr.us-east-1.amazonaws.com/".into(),
            Self::Localhost => "localhost:5000/".into(),
            Self::Lookalike => "docker.io.evil.example/".into(),
            Self::Ipv6 => "[::1]:5000/".into(),
            Self::Raw(s) => format!("{s}/"),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Component {
    Known(u8),
    Long(u8),
    Raw(String),
}

impl Component {
    fn text(&self) -> String {
        const KNOWN: &[&str] = &[
            "nginx",
            "library",
            "bitnami",
            "redis",
            "team",
            "app",
            "cloudnative-pg",
            "a__b",
            "x-y",
            "a.b",
            "postgresql",
            "debug",
        ];
        match self {
            Self::Known(i) => KNOWN[usize::from(*i) % KNOWN.len()].to_owned(),
            Self::Long(n) => "a".repeat(usize::from(*n)),
            Self::Raw(s) => s.clone(),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Tag {
    Known(u8),
    Long(u8),
    Raw(String),
}

#[derive(Debug, Arbitrary)]
enum Digest {
    Sha256(u8),
    Sha512(u8),
    Raw(String),
}

#[derive(Debug, Arbitrary)]
enum Image {
    Raw(String),
    Built {
        registry: Registry,
        path: Vec<Component>,
        tag: Option<Tag>,
        digest: Option<Digest>,
    },
    NotAString(i64),
    Null,
}

impl Image {
    fn value(&self) -> Value {
        match self {
            Self::Raw(s) => json!(s),
            Self::NotAString(n) => json!(n),
            Self::Null => Value::Null,
            Self::Built {
                registry,
                path,
                tag,
                digest,
            } => {
                let mut s = registry.text();
                let parts: Vec<String> = path.iter().take(8).map(Component::text).collect();
                s.push_str(&if parts.is_empty() {
                    "nginx".to_owned()
                } else {
                    parts.join("/")
                });
                if let Some(tag) = tag {
                    s.push(':');
                    match tag {
                        Tag::Known(i) => {
                            const TAGS: &[&str] = &["1.27", "latest", "v1.8.2", "debug", "_x.Y-1"];
                            s.push_str(TAGS[usize::from(*i) % TAGS.len()]);
                        }
                        Tag::Long(n) => s.push_str(&"t".repeat(usize::from(*n))),
                        Tag::Raw(t) => s.push_str(t),
                    }
                }
                if let Some(digest) = digest {
                    s.push('@');
                    match digest {
                        Digest::Sha256(b) => {
                            s.push_str(&format!("sha256:{}", format!("{b:02x}").repeat(32)))
                        }
                        Digest::Sha512(b) => {
                            s.push_str(&format!("sha512:{}", format!("{b:02x}").repeat(64)))
                        }
                        Digest::Raw(d) => s.push_str(d),
                    }
                }
                json!(s)
            }
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Name {
    Known(u8),
    Raw(String),
}

impl Name {
    fn text(&self) -> String {
        const NAMES: &[&str] = &["app", "web", "sidecar", "debugger", "init", "a/b", "~0"];
        match self {
            Self::Known(i) => NAMES[usize::from(*i) % NAMES.len()].to_owned(),
            Self::Raw(s) => s.clone(),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Edit {
    SetImage { list: u8, index: u8, image: Image },
    RemoveImage { list: u8, index: u8 },
    AddContainer { list: u8, name: Name, image: Image },
    Rename { list: u8, index: u8, name: Name },
    RemoveContainer { list: u8, index: u8 },
    RemoveList { list: u8 },
    ListIsNotAnArray { list: u8 },
    RemoveMetadata,
    RemoveAnnotations,
    Annotate { key: AnnotationKey, value: String },
    Label { key: String, value: String },
    Owner { kind: String },
    CopyToOld,
}

#[derive(Debug, Arbitrary)]
enum AnnotationKey {
    Skip,
    Originals,
    Raw(String),
}

#[derive(Debug, Arbitrary)]
enum Kind {
    Keep,
    Pod,
    Deployment,
    CronJob,
    Service,
    PodV1beta1,
}

#[derive(Debug, Arbitrary)]
enum Operation {
    Keep,
    Create,
    Update,
    Delete,
    Connect,
    Raw(String),
}

#[derive(Debug, Arbitrary)]
enum SubResource {
    Keep,
    Remove,
    Ephemeral,
    Status,
    Raw(String),
}

#[derive(Debug, Arbitrary)]
enum Envelope {
    Keep,
    V1beta1,
    NoKind,
    DropRequestField(u8),
    RequestNull,
}

#[derive(Debug, Arbitrary)]
struct Input {
    fixture: u8,
    config: u8,
    rules_missing: bool,
    edits: Vec<Edit>,
    old_edits: Vec<Edit>,
    operation: Operation,
    sub_resource: SubResource,
    kind: Kind,
    envelope: Envelope,
}

fn list_name(list: u8) -> &'static str {
    LISTS[usize::from(list) % LISTS.len()]
}

fn container(pod: &mut Value, list: u8, index: u8) -> Option<&mut Map<String, Value>> {
    let items = pod
        .get_mut("spec")?
        .get_mut(list_name(list))?
        .as_array_mut()?;
    if items.is_empty() {
        return None;
    }
    let n = items.len();
    items[usize::from(index) % n].as_object_mut()
}

fn metadata(pod: &mut Value) -> Option<&mut Map<String, Value>> {
    let obj = pod.as_object_mut()?;
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj.insert("metadata".into(), json!({}));
    }
    obj.get_mut("metadata")?.as_object_mut()
}

fn sub_map<'m>(meta: &'m mut Map<String, Value>, key: &str) -> Option<&'m mut Map<String, Value>> {
    if !meta.get(key).is_some_and(Value::is_object) {
        meta.insert(key.to_owned(), json!({}));
    }
    meta.get_mut(key)?.as_object_mut()
}

fn apply(pod: &mut Value, old: &mut Value, edit: &Edit) {
    match edit {
        Edit::SetImage { list, index, image } => {
            if let Some(c) = container(pod, *list, *index) {
                c.insert("image".into(), image.value());
            }
        }
        Edit::RemoveImage { list, index } => {
            if let Some(c) = container(pod, *list, *index) {
                c.remove("image");
            }
        }
        Edit::AddContainer { list, name, image } => {
            if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
                let entry = spec.entry(list_name(*list)).or_insert_with(|| json!([]));
                if let Some(items) = entry.as_array_mut() {
                    items.push(json!({"name": name.text(), "image": image.value()}));
                }
            }
        }
        Edit::Rename { list, index, name } => {
            if let Some(c) = container(pod, *list, *index) {
                c.insert("name".into(), json!(name.text()));
            }
        }
        Edit::RemoveContainer { list, index } => {
            if let Some(items) = pod
                .get_mut("spec")
                .and_then(|s| s.get_mut(list_name(*list)))
                .and_then(Value::as_array_mut)
                && !items.is_empty()
            {
                let n = items.len();
                items.remove(usize::from(*index) % n);
            }
        }
        Edit::RemoveList { list } => {
            if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove(list_name(*list));
            }
        }
        Edit::ListIsNotAnArray { list } => {
            if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
                spec.insert(list_name(*list).into(), json!({"name": "x"}));
            }
        }
        Edit::RemoveMetadata => {
            if let Some(obj) = pod.as_object_mut() {
                obj.remove("metadata");
            }
        }
        Edit::RemoveAnnotations => {
            if let Some(meta) = pod.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("annotations");
            }
        }
        Edit::Annotate { key, value } => {
            let key = match key {
                AnnotationKey::Skip => SKIP_ANNOTATION.to_owned(),
                AnnotationKey::Originals => ORIGINAL_IMAGES_ANNOTATION.to_owned(),
                AnnotationKey::Raw(k) => k.clone(),
            };
            if let Some(a) = metadata(pod).and_then(|m| sub_map(m, "annotations")) {
                a.insert(key, json!(value));
            }
        }
        Edit::Label { key, value } => {
            if let Some(l) = metadata(pod).and_then(|m| sub_map(m, "labels")) {
                l.insert(key.clone(), json!(value));
            }
        }
        Edit::Owner { kind } => {
            if let Some(m) = metadata(pod) {
                let owners = m.entry("ownerReferences").or_insert_with(|| json!([]));
                if let Some(o) = owners.as_array_mut() {
                    o.push(json!({"apiVersion": "v1", "kind": kind, "name": "o", "uid": "1"}));
                }
            }
        }
        Edit::CopyToOld => *old = pod.clone(),
    }
}

/// Wraps a pod in a workload of `kind`; returns the object and its (group, kind).
fn wrap(pod: Value, kind: &Kind) -> (Value, &'static str, &'static str, &'static str) {
    let mut template = pod;
    if let Some(t) = template.as_object_mut() {
        t.remove("apiVersion");
        t.remove("kind");
        t.remove("status");
    }
    match kind {
        Kind::Deployment => (
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                   "spec": {"selector": {}, "template": template}}),
            "apps",
            "v1",
            "Deployment",
        ),
        Kind::CronJob => (
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
                   "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}}}),
            "batch",
            "v1",
            "CronJob",
        ),
        Kind::Service => (
            json!({"apiVersion": "v1", "kind": "Service"}),
            "",
            "v1",
            "Service",
        ),
        _ => (template, "", "v1", "Pod"),
    }
}

fuzz_target!(|input: Input| {
    let mut review: Value =
        match serde_json::from_str(FIXTURES[usize::from(input.fixture) % FIXTURES.len()]) {
            Ok(v) => v,
            Err(e) => panic!("fixture does not parse: {e}"),
        };
    let mut pod = review["request"]["object"].take();
    let mut old = review["request"]["oldObject"].take();
    if old.is_null() {
        old = pod.clone();
    }
    for edit in input.edits.iter().take(32) {
        apply(&mut pod, &mut old, edit);
    }
    let mut scratch = Value::Null;
    for edit in input.old_edits.iter().take(8) {
        apply(&mut old, &mut scratch, edit);
    }
    let had_old = !review["request"]["oldObject"].is_null()
        || input.old_edits.iter().any(|e| matches!(e, Edit::CopyToOld));

    let request = &mut review["request"];
    match &input.kind {
        Kind::Keep | Kind::Pod => {
            request["object"] = pod;
            if had_old {
                request["oldObject"] = old;
            }
        }
        Kind::PodV1beta1 => {
            request["object"] = pod;
            request["kind"]["version"] = json!("v1beta1");
        }
        kind => {
            let (object, group, version, k) = wrap(pod, kind);
            request["object"] = object;
            if had_old {
                request["oldObject"] = wrap(old, kind).0;
            }
            request["kind"] = json!({"group": group, "version": version, "kind": k});
        }
    }
    match &input.operation {
        Operation::Keep => {}
        Operation::Create => request["operation"] = json!("CREATE"),
        Operation::Update => request["operation"] = json!("UPDATE"),
        Operation::Delete => request["operation"] = json!("DELETE"),
        Operation::Connect => request["operation"] = json!("CONNECT"),
        Operation::Raw(s) => request["operation"] = json!(s),
    }
    if let Some(r) = request.as_object_mut() {
        match &input.sub_resource {
            SubResource::Keep => {}
            SubResource::Remove => {
                r.remove("subResource");
            }
            SubResource::Ephemeral => {
                r.insert("subResource".into(), json!("ephemeralcontainers"));
            }
            SubResource::Status => {
                r.insert("subResource".into(), json!("status"));
            }
            SubResource::Raw(s) => {
                r.insert("subResource".into(), json!(s));
            }
        }
    }
    match input.envelope {
        Envelope::Keep => {}
        Envelope::V1beta1 => review["apiVersion"] = json!("admission.k8s.io/v1beta1"),
        Envelope::NoKind => {
            if let Some(o) = review.as_object_mut() {
                o.remove("kind");
            }
        }
        Envelope::DropRequestField(i) => {
            const FIELDS: &[&str] = &[
                "uid",
                "kind",
                "operation",
                "object",
                "oldObject",
                "namespace",
                "name",
            ];
            if let Some(r) = review["request"].as_object_mut() {
                r.remove(FIELDS[usize::from(i) % FIELDS.len()]);
            }
        }
        Envelope::RequestNull => review["request"] = Value::Null,
    }

    let body = match serde_json::to_vec(&review) {
        Ok(b) => b,
        Err(e) => panic!("review does not serialise: {e}"),
    };
    let (c, r) = &SETUPS[usize::from(input.config) % SETUPS.len()];
    check_review(c, &r[usize::from(input.rules_missing)], &body);
});
