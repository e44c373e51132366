//! Offline preview: what the webhook would do to the Pods of a set of manifests.
//!
//! Reads YAML or JSON (several documents, `List` objects) of Pods and workloads, runs the same
//! planning code as the webhook, and returns the input with the images rewritten in place and
//! one row per image. Pod templates are always rewritten here, whatever the `workloads` policy:
//! the question a preview answers is what the Pods will pull.
//!
//! The output is the input text with only the image scalars (and the record of originals)
//! changed, so it means to Kubernetes what the input meant: no YAML library rewrites `no`,
//! `on` or `0755` into something else, and comments, order, quoting and anchors stay.

mod edit;

use std::fmt::Write as _;

use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

use json_patch::PatchOperation;

use crate::admission::{
    ORIGINAL_IMAGES_ANNOTATION, ObjectView, PodPlan, Scope, TargetKind, plan_object,
};
use crate::config::{Config, UnknownRules, WorkloadPolicy};
use crate::rewrite::Decision;
use crate::rules::RuleSnapshot;

/// Why manifests could not be previewed.
#[derive(Debug, Error)]
pub enum PreviewError {
    /// A document is not valid YAML or JSON.
    #[error("{source_name}: document {document}: {message}")]
    Parse {
        /// File name, or `-` for standard input.
        source_name: String,
        /// 1-based document number.
        document: usize,
        /// Parser message, with line and column.
        message: String,
    },
    /// The text could not be indexed for editing in place.
    #[error("{source_name}: {message}")]
    Edit {
        /// File name, or `-` for standard input.
        source_name: String,
        /// Parser message.
        message: String,
    },
    /// A workload's pod spec does not have the shape Kubernetes gives it.
    #[error("{source_name}: {object}: {source}")]
    Shape {
        /// File name, or `-` for standard input.
        source_name: String,
        /// `Kind/name` of the object.
        object: String,
        /// Why it does not fit.
        #[source]
        source: serde_json::Error,
    },
}

/// One image of one object (a container's, or an image volume's), and what happens to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Namespace of the object, empty when the manifest names none.
    pub namespace: String,
    /// `Kind/name` of the object.
    pub object: String,
    /// Container name, or `volume/<name>` for an image volume.
    pub container: String,
    /// The image in the manifest.
    pub image: String,
    /// The rewritten image, when it changes.
    pub new_image: Option<String>,
    /// `rewritten`, or why the image is left alone.
    pub reason: String,
}

/// The result of previewing one input.
#[derive(Debug, Default)]
pub struct Preview {
    /// Every document, rewritten where the webhook would rewrite it.
    pub documents: Vec<Value>,
    /// One row per image of a supported kind.
    pub rows: Vec<Row>,
    /// The input text with the rewrites made in place.
    pub text: String,
    /// Lines for standard error: objects of kinds not previewed, rewrites not placed.
    pub notes: Vec<String>,
}

/// Where a document's changes go while it is planned.
struct Pending<'p> {
    document: usize,
    changes: &'p mut Vec<edit::Change>,
    /// What each change is, for the note when it cannot be placed.
    origins: &'p mut Vec<Origin>,
    notes: &'p mut Vec<String>,
}

/// The object a change belongs to, and whether it writes an image or the record of originals.
struct Origin {
    object: String,
    record: bool,
}

/// Previews every document of `input` (YAML or JSON). `source_name` names it in errors.
pub fn preview(config: &Config, input: &str, source_name: &str) -> Result<Preview, PreviewError> {
    // Offline, nothing is known of the rules: show what the map asks for.
    let mut config = config.clone();
    config.workloads = WorkloadPolicy::Rewrite;
    config.rule_check.when_unknown = UnknownRules::Trust;
    let mut out = Preview::default();
    let mut changes = Vec::new();
    let mut origins = Vec::new();
    for (i, document) in serde_yaml_ng::Deserializer::from_str(input).enumerate() {
        let value = Value::deserialize(document).map_err(|e| PreviewError::Parse {
            source_name: source_name.to_owned(),
            document: i + 1,
            message: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        let mut pending = Pending {
            document: i,
            changes: &mut changes,
            origins: &mut origins,
            notes: &mut out.notes,
        };
        let value = preview_value(&config, value, source_name, "", &mut out.rows, &mut pending)?;
        out.documents.push(value);
    }
    let edited = edit::apply(input, &changes).map_err(|message| PreviewError::Edit {
        source_name: source_name.to_owned(),
        message,
    })?;
    out.text = edited.text;
    out.notes.extend(edited.unplaced.into_iter().map(|u| {
        let why = u.why;
        match origins.get(u.change) {
            // The images were written: the output would run, but nothing would say where
            // they came from.
            Some(Origin {
                object,
                record: true,
            }) => format!(
                "{source_name}: {object}: rewritten, but the record of the original images ({ORIGINAL_IMAGES_ANNOTATION}) could not be written: {why}"
            ),
            Some(Origin { object, .. }) => {
                format!("{source_name}: {object}: image left as it is in the output: {why}")
            }
            None => format!("{source_name}: left as it is in the output: {why}"),
        }
    }));
    Ok(out)
}

/// The kind of pod template holder `preview` reads: the webhook's kinds, and kinds only seen
/// in manifests that carry a plain pod template at `spec.template`.
fn target_of(api_version: &str, kind: &str) -> Option<TargetKind> {
    TargetKind::from_api_version_kind(api_version, kind).or_else(|| {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        match (group, kind) {
            ("argoproj.io", "Rollout") | ("", "ReplicationController") => {
                Some(TargetKind::Workload)
            }
            _ => None,
        }
    })
}

/// Whether a value holds container images anywhere (`containers` lists or `image` strings).
fn holds_images(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.iter().any(|(k, v)| {
            (k == "containers" && v.is_array())
                || (k == "image" && v.is_string())
                || holds_images(v)
        }),
        Value::Array(items) => items.iter().any(holds_images),
        _ => false,
    }
}

fn preview_value(
    config: &Config,
    mut value: Value,
    source_name: &str,
    prefix: &str,
    rows: &mut Vec<Row>,
    pending: &mut Pending<'_>,
) -> Result<Value, PreviewError> {
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind == "List" || kind.ends_with("List") && value.get("items").is_some_and(Value::is_array) {
        if let Some(Value::Array(items)) = value.get_mut("items") {
            for (n, item) in items.iter_mut().enumerate() {
                let taken = std::mem::take(item);
                let prefix = format!("{prefix}/items/{n}");
                *item = preview_value(config, taken, source_name, &prefix, rows, pending)?;
            }
        }
        return Ok(value);
    }
    let name = value
        .pointer("/metadata/name")
        .or_else(|| value.pointer("/metadata/generateName"))
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>");
    let object = format!("{kind}/{name}");
    let Some(target) = target_of(api_version, kind) else {
        if holds_images(&value) {
            pending.notes.push(format!(
                "{source_name}: {object}: {api_version} {kind} is not previewed; its images are left as they are"
            ));
        }
        return Ok(value);
    };
    let namespace = value
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let operations = {
        let view = ObjectView::from_value(&value).map_err(|source| PreviewError::Shape {
            source_name: source_name.to_owned(),
            object: object.clone(),
            source,
        })?;
        let plan = plan_object(
            config,
            &RuleSnapshot::unknown(),
            &crate::digests::DigestSnapshot::EMPTY,
            target,
            &view,
            None,
            Scope::Create,
        );
        rows.extend(rows_of(&namespace, &object, &plan));
        plan.operations()
    };
    for op in &operations {
        let (path, new, expect) = match op {
            PatchOperation::Replace(r) => (
                &r.path,
                &r.value,
                value.pointer(r.path.as_str()).and_then(Value::as_str),
            ),
            PatchOperation::Add(a) => (&a.path, &a.value, None),
            _ => continue,
        };
        pending.changes.push(edit::Change {
            document: pending.document,
            pointer: format!("{prefix}{path}"),
            value: new.clone(),
            expect: expect.map(str::to_owned),
        });
        pending.origins.push(Origin {
            object: object.clone(),
            record: matches!(op, PatchOperation::Add(_)),
        });
    }
    // The operations were planned on this very value, so they apply.
    if let Err(e) = json_patch::patch(&mut value, &operations) {
        tracing::warn!(%object, error = %e, "cannot apply the planned rewrite");
    }
    Ok(value)
}

fn rows_of(namespace: &str, object: &str, plan: &PodPlan<'_>) -> Vec<Row> {
    if let Some(skip) = &plan.skipped {
        return vec![Row {
            namespace: namespace.to_owned(),
            object: object.to_owned(),
            container: "*".to_owned(),
            image: String::new(),
            new_image: None,
            reason: skip.to_string(),
        }];
    }
    plan.images
        .iter()
        .map(|i| {
            let (new_image, reason) = match &i.decision {
                Decision::Rewrite(to) => (Some(to.clone()), "rewritten".to_owned()),
                Decision::Skip(reason) => (None, reason.offline().to_string()),
            };
            Row {
                namespace: namespace.to_owned(),
                object: object.to_owned(),
                container: i.kind.record_key(&i.container).into_owned(),
                image: i.image.to_string(),
                new_image,
                reason,
            }
        })
        .collect()
}

/// Joins the rewritten texts of several inputs into one YAML stream.
pub fn render_yaml<'t>(texts: impl IntoIterator<Item = &'t str>) -> String {
    let mut out = String::new();
    for text in texts {
        if !out.is_empty() && !text.trim_start().starts_with("---") {
            out.push_str("---\n");
        }
        out.push_str(text);
        if !text.is_empty() && !text.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// A unified diff of an input and its rewritten text, with three lines of context; empty
/// when nothing changes.
pub fn render_diff(name: &str, input: &str, output: &str) -> String {
    if input == output {
        return String::new();
    }
    similar::TextDiff::from_lines(input, output)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{name}"), &format!("b/{name}"))
        .to_string()
}

/// Renders rows as an aligned table with a header.
pub fn render_table(rows: &[Row]) -> String {
    let header = [
        "NAMESPACE",
        "OBJECT",
        "CONTAINER",
        "IMAGE",
        "NEW IMAGE",
        "REASON",
    ];
    let cells: Vec<[&str; 6]> = rows
        .iter()
        .map(|r| {
            [
                if r.namespace.is_empty() {
                    "-"
                } else {
                    r.namespace.as_str()
                },
                r.object.as_str(),
                r.container.as_str(),
                r.image.as_str(),
                r.new_image.as_deref().unwrap_or("-"),
                r.reason.as_str(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(cells.iter()) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}   ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;

    const HOST: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

    fn config() -> Config {
        Config::load("region: eu-west-1\n", &Overrides::default()).unwrap()
    }

    const MANIFESTS: &str = r"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    metadata:
      labels: {app: web}
    spec:
      initContainers:
        - name: init
          image: busybox:1.36
      containers:
        - name: web
          image: nginx:1.27
        - name: internal
          image: registry.example/team/app:2
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports: [{port: 80}]
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly
spec:
  schedule: '0 3 * * *'
  jobTemplate:
    spec:
      template:
        spec:
          containers:
            - name: job
              image: quay.io/prometheus/busybox
";

    #[test]
    fn rewrites_every_workload_kind_and_passes_other_documents_through() {
        let p = preview(&config(), MANIFESTS, "-").unwrap();
        assert_eq!(p.documents.len(), 3);
        let d = &p.documents[0];
        assert_eq!(
            d["spec"]["template"]["spec"]["initContainers"][0]["image"],
            format!("{HOST}/docker-hub/library/busybox:1.36")
        );
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["image"],
            format!("{HOST}/docker-hub/library/nginx:1.27")
        );
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][1]["image"],
            "registry.example/team/app:2"
        );
        assert_eq!(p.documents[1]["kind"], "Service");
        assert_eq!(
            p.documents[2]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"],
            format!("{HOST}/quay/prometheus/busybox")
        );
        assert_eq!(p.rows.len(), 4);
        assert_eq!(p.rows[2].new_image, None);
        assert!(p.rows[2].reason.contains("no pull-through cache rule"));
    }

    #[test]
    fn yaml_output_is_the_input_with_only_the_images_and_the_record_changed() {
        let input = include_str!("../../tests/fixtures/preview/tricky.yaml");
        let p = preview(&config(), input, "tricky.yaml").unwrap();
        let record = r#"'{"init":"busybox:1.36","web":"nginx:1.27","volume/models":"quay.io/example/models:v3"}'"#;
        let expected = input
            .replace(
                "image: \"busybox:1.36\"   # quoted",
                &format!("image: \"{HOST}/docker-hub/library/busybox:1.36\"   # quoted"),
            )
            .replace(
                "- name: web\n          image: nginx:1.27",
                &format!("- name: web\n          image: {HOST}/docker-hub/library/nginx:1.27"),
            )
            .replace(
                "reference: quay.io/example/models:v3",
                &format!("reference: {HOST}/quay/example/models:v3"),
            )
            .replace(
                "image: 'ghcr.io/org/task:1'",
                &format!("image: '{HOST}/github/org/task:1'"),
            )
            .replace(
                "    metadata:\n      labels: *labels",
                &format!("    metadata:\n      annotations:\n        pullthrough.dev/original-images: {record}\n      labels: *labels"),
            )
            .replace(
                "metadata: {name: one-off",
                r#"metadata: {"annotations": {"pullthrough.dev/original-images":"{\"task\":\"ghcr.io/org/task:1\"}"}, name: one-off"#,
            );
        assert_eq!(p.text, expected);
        assert!(
            p.notes.iter().any(|n| n.contains("PodTemplate/kept")),
            "{:?}",
            p.notes
        );
        assert_eq!(p.notes.len(), 1, "{:?}", p.notes);
        let rows: Vec<_> = p
            .rows
            .iter()
            .map(|r| (r.namespace.as_str(), r.container.as_str()))
            .collect();
        assert_eq!(
            rows,
            [
                ("shop", "init"),
                ("shop", "web"),
                ("shop", "sidecar"),
                ("shop", "volume/models"),
                ("jobs", "task")
            ]
        );
        // A second pass over its own output changes nothing more.
        let again = preview(&config(), &p.text, "again.yaml").unwrap();
        assert_eq!(again.text, p.text);
    }

    #[test]
    fn json_input_stays_json() {
        let input = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"a","image":"nginx"}]}}"#;
        let p = preview(&config(), input, "p.json").unwrap();
        let value: Value = serde_json::from_str(&p.text).unwrap();
        assert_eq!(
            value["spec"]["containers"][0]["image"],
            format!("{HOST}/docker-hub/library/nginx")
        );
        assert_eq!(
            value["metadata"]["annotations"]["pullthrough.dev/original-images"],
            r#"{"a":"nginx"}"#
        );
    }

    #[test]
    fn argo_rollouts_and_replication_controllers_are_previewed() {
        let input = "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: r}\nspec:\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      containers:\n      - name: a\n        image: nginx\n---\napiVersion: v1\nkind: ReplicationController\nmetadata: {name: rc}\nspec:\n  template:\n    spec:\n      containers:\n      - name: a\n        image: quay.io/x/y\n---\napiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: k}\nspec:\n  template:\n    spec:\n      containers:\n      - image: nginx\n";
        let p = preview(&config(), input, "-").unwrap();
        let objects: Vec<_> = p.rows.iter().map(|r| r.object.as_str()).collect();
        assert_eq!(objects, ["Rollout/r", "ReplicationController/rc"]);
        assert!(
            p.text
                .contains(&format!("image: {HOST}/docker-hub/library/nginx\n"))
        );
        assert!(p.text.contains(&format!("image: {HOST}/quay/x/y\n")));
        assert!(p.text.ends_with("      - image: nginx\n"));
        assert_eq!(p.notes.len(), 1);
        assert!(p.notes[0].contains("Service/k"), "{:?}", p.notes);
    }

    #[test]
    fn diff_shows_only_the_rewrites() {
        let input = "kind: Pod\napiVersion: v1\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: a\n    image: nginx\n";
        let p = preview(&config(), input, "-").unwrap();
        let diff = render_diff("p.yaml", input, &p.text);
        assert!(diff.starts_with("--- a/p.yaml\n+++ b/p.yaml\n"), "{diff}");
        assert!(diff.contains("\n-    image: nginx\n"), "{diff}");
        assert!(
            diff.contains(&format!("\n+    image: {HOST}/docker-hub/library/nginx\n")),
            "{diff}"
        );
        assert_eq!(render_diff("same", input, input), "");
    }

    #[test]
    fn reads_json_lists() {
        let list = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"a","image":"ghcr.io/org/app:1"}]}}]}"#;
        let p = preview(&config(), list, "list.json").unwrap();
        assert_eq!(
            p.documents[0]["items"][0]["spec"]["containers"][0]["image"],
            format!("{HOST}/github/org/app:1")
        );
        assert_eq!(p.rows[0].object, "Pod/p");
        let text: Value = serde_json::from_str(&p.text).unwrap();
        assert_eq!(text, p.documents[0]);
    }

    #[test]
    fn table_is_aligned() {
        let p = preview(&config(), MANIFESTS, "-").unwrap();
        let table = render_table(&p.rows);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("NAMESPACE   OBJECT"));
        let col = lines[0].find("IMAGE").unwrap();
        assert_eq!(&lines[1][col..col + 7], "busybox");
    }

    #[test]
    fn bad_yaml_names_the_document() {
        let err = preview(&config(), "kind: Pod\n---\n: : :\n  - [\n", "in.yaml").unwrap_err();
        assert!(err.to_string().starts_with("in.yaml: document 2:"), "{err}");
    }

    #[test]
    fn wrong_shape_is_an_error_not_a_panic() {
        let err = preview(
            &config(),
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: 3}\n",
            "-",
        )
        .unwrap_err();
        assert!(err.to_string().contains("Pod/p"), "{err}");
    }

    /// The kinds previewed, and the indentation of their pod (template) under `spec`.
    const KINDS: [(&str, &str); 7] = [
        ("v1", "Pod"),
        ("apps/v1", "Deployment"),
        ("apps/v1", "StatefulSet"),
        ("apps/v1", "DaemonSet"),
        ("apps/v1", "ReplicaSet"),
        ("batch/v1", "Job"),
        ("batch/v1", "CronJob"),
    ];

    /// How a chart may leave a mapping out: the text after `key:`.
    const NULLS: [&str; 3] = ["", " ~", " null"];

    /// A manifest of `kind` whose pod (the Pod itself, or its template) has the metadata lines
    /// `metadata`, written at the pod's indentation.
    fn manifest(api_version: &str, kind: &str, metadata: &str) -> String {
        let pod = format!(
            "{metadata}spec:\n  containers:\n    - name: web\n      image: nginx:1.27\n    - name: side\n      image: quay.io/org/side:1\n"
        );
        let at = |n: usize| {
            pod.lines().fold(String::new(), |mut out, l| {
                out.push_str(&" ".repeat(n));
                out.push_str(l);
                out.push('\n');
                out
            })
        };
        let head = format!("apiVersion: {api_version}\nkind: {kind}\n");
        match kind {
            "Pod" => format!("{head}{}", at(0)),
            "CronJob" => format!(
                "{head}metadata:\n  name: c\nspec:\n  schedule: '0 3 * * *'\n  jobTemplate:\n    spec:\n      template:\n{}",
                at(8)
            ),
            _ => format!(
                "{head}metadata:\n  name: w\nspec:\n  selector: {{matchLabels: {{app: w}}}}\n  template:\n{}",
                at(4)
            ),
        }
    }

    /// The pod metadata of `kind` with its `annotations` written as `annotations`.
    fn with_annotations(kind: &str, annotations: &str) -> String {
        let name = if kind == "Pod" { "  name: p\n" } else { "" };
        format!("metadata:\n{name}  labels: {{app: w}}\n  annotations:{annotations}\n")
    }

    fn pod_of<'v>(kind: &str, value: &'v Value) -> &'v Value {
        match kind {
            "Pod" => value,
            "CronJob" => &value["spec"]["jobTemplate"]["spec"]["template"],
            _ => &value["spec"]["template"],
        }
    }

    /// Previews `input` and checks that its text reads back as the documents the webhook's
    /// patch makes, with no note; returns that document.
    fn previewed(input: &str) -> Value {
        let p = preview(&config(), input, "-").unwrap();
        assert!(p.notes.is_empty(), "{input}\n{:?}", p.notes);
        let read: Value = serde_yaml_ng::from_str(&p.text).unwrap();
        assert_eq!(read, p.documents[0], "{}", p.text);
        read
    }

    #[test]
    fn a_null_where_the_record_goes_is_filled_with_what_the_webhook_writes() {
        let record = r#"{"web":"nginx:1.27","side":"quay.io/org/side:1"}"#;
        for (api_version, kind) in KINDS {
            let written_out =
                previewed(&manifest(api_version, kind, &with_annotations(kind, " {}")));
            let no_metadata = previewed(&manifest(api_version, kind, ""));
            for null in NULLS {
                for (input, like) in [
                    (
                        manifest(api_version, kind, &with_annotations(kind, null)),
                        &written_out,
                    ),
                    (
                        manifest(api_version, kind, &format!("metadata:{null}\n")),
                        &no_metadata,
                    ),
                ] {
                    let yaml = previewed(&input);
                    assert_eq!(&yaml, like, "{input}");
                    let pod = pod_of(kind, &yaml);
                    assert_eq!(
                        pod["metadata"]["annotations"][ORIGINAL_IMAGES_ANNOTATION], record,
                        "{input}"
                    );
                    assert_eq!(
                        pod["spec"]["containers"][0]["image"],
                        format!("{HOST}/docker-hub/library/nginx:1.27")
                    );
                    // The same manifest as JSON stays JSON, and means the same.
                    let value: Value = serde_yaml_ng::from_str(&input).unwrap();
                    let json = serde_json::to_string_pretty(&value).unwrap();
                    assert!(json.contains(": null"), "{json}");
                    let p = preview(&config(), &json, "-").unwrap();
                    assert!(p.notes.is_empty(), "{json}\n{:?}", p.notes);
                    let read: Value = serde_json::from_str(&p.text).unwrap();
                    assert_eq!(&read, like, "{}", p.text);
                }
            }
        }
    }

    #[test]
    fn a_record_that_cannot_be_written_is_said_so_and_the_images_are_not_called_left_alone() {
        // The template's metadata is the object's own, by alias: it is not written out there.
        let input = "apiVersion: apps/v1\nkind: Deployment\nmetadata: &meta\n  name: d\nspec:\n  template:\n    metadata: *meta\n    spec:\n      containers:\n        - name: web\n          image: nginx:1.27\n";
        let p = preview(&config(), input, "in.yaml").unwrap();
        assert!(
            p.text
                .contains(&format!("image: {HOST}/docker-hub/library/nginx:1.27\n")),
            "{}",
            p.text
        );
        assert_eq!(p.notes.len(), 1, "{:?}", p.notes);
        let note = &p.notes[0];
        assert!(
            note.starts_with(
                "in.yaml: Deployment/d: rewritten, but the record of the original images (pullthrough.dev/original-images) could not be written: document 1: /spec/template/metadata/annotations: "
            ),
            "{note}"
        );
        assert!(!note.contains("left as it is"), "{note}");
    }

    #[test]
    fn a_pinned_digest_is_said_to_be_unknown_offline_not_checked_in_the_background() {
        let sha = format!("sha256:{}", "0123456789abcdef".repeat(4));
        let input = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n    - name: a\n      image: nginx:1.27@{sha}\n    - name: b\n      image: nginx@{sha}\n"
        );
        let p = preview(&config(), &input, "-").unwrap();
        assert_eq!(p.text, input);
        let reasons: Vec<_> = p.rows.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "pinned by digest; rewritten once the cache holds sha256:0123456789ab, which preview does not know (ask pullthrough warm --check)",
                "pinned by digest alone, which cannot be warmed; rewritten once the cache holds sha256:0123456789ab, which preview does not know (ask pullthrough warm --check)",
            ]
        );
    }
}
