//! Offline preview: what the webhook would do to the Pods of a set of manifests.
//!
//! Reads YAML or JSON (several documents, `List` objects) of Pods and workloads, runs the same
//! planning code as the webhook, and returns the rewritten documents and one row per container.
//! Pod templates are always rewritten here, whatever the `workloads` policy: the question a
//! preview answers is what the Pods will pull.

use std::fmt::Write as _;

use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

use crate::admission::{ObjectView, PodPlan, Scope, TargetKind, plan_object};
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

/// One container of one object, and what happens to its image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// `Kind/name` of the object.
    pub object: String,
    /// Container name.
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
    /// One row per container of a supported kind.
    pub rows: Vec<Row>,
}

/// Previews every document of `input` (YAML or JSON). `source_name` names it in errors.
pub fn preview(config: &Config, input: &str, source_name: &str) -> Result<Preview, PreviewError> {
    // Offline, nothing is known of the rules: show what the map asks for.
    let mut config = config.clone();
    config.workloads = WorkloadPolicy::Rewrite;
    config.rule_check.when_unknown = UnknownRules::Trust;
    let mut out = Preview::default();
    for (i, document) in serde_yaml_ng::Deserializer::from_str(input).enumerate() {
        let value = Value::deserialize(document).map_err(|e| PreviewError::Parse {
            source_name: source_name.to_owned(),
            document: i + 1,
            message: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        let value = preview_value(&config, value, source_name, &mut out.rows)?;
        out.documents.push(value);
    }
    Ok(out)
}

fn preview_value(
    config: &Config,
    mut value: Value,
    source_name: &str,
    rows: &mut Vec<Row>,
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
            for item in items.iter_mut() {
                let taken = std::mem::take(item);
                *item = preview_value(config, taken, source_name, rows)?;
            }
        }
        return Ok(value);
    }
    let Some(target) = TargetKind::from_api_version_kind(api_version, kind) else {
        return Ok(value);
    };
    let name = value
        .pointer("/metadata/name")
        .or_else(|| value.pointer("/metadata/generateName"))
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>");
    let object = format!("{kind}/{name}");
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
        rows.extend(rows_of(&object, &plan));
        plan.operations()
    };
    // The operations were planned on this very value, so they apply.
    if let Err(e) = json_patch::patch(&mut value, &operations) {
        tracing::warn!(%object, error = %e, "cannot apply the planned rewrite");
    }
    Ok(value)
}

fn rows_of(object: &str, plan: &PodPlan<'_>) -> Vec<Row> {
    if let Some(skip) = &plan.skipped {
        return vec![Row {
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
                Decision::Skip(reason) => (None, reason.to_string()),
            };
            Row {
                object: object.to_owned(),
                container: i.container.to_string(),
                image: i.image.to_string(),
                new_image,
                reason,
            }
        })
        .collect()
}

/// Renders documents as a YAML stream.
pub fn render_yaml(documents: &[Value]) -> Result<String, serde_yaml_ng::Error> {
    let mut out = String::new();
    for (i, doc) in documents.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_yaml_ng::to_string(doc)?);
    }
    Ok(out)
}

/// Renders rows as an aligned table with a header.
pub fn render_table(rows: &[Row]) -> String {
    let header = ["OBJECT", "CONTAINER", "IMAGE", "NEW IMAGE", "REASON"];
    let cells: Vec<[&str; 5]> = rows
        .iter()
        .map(|r| {
            [
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
    fn yaml_output_keeps_key_order() {
        let p = preview(&config(), MANIFESTS, "-").unwrap();
        let yaml = render_yaml(&p.documents).unwrap();
        assert!(
            yaml.starts_with("apiVersion: apps/v1\nkind: Deployment\nmetadata:"),
            "{yaml}"
        );
        assert_eq!(yaml.matches("---\n").count(), 2);
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
    }

    #[test]
    fn table_is_aligned() {
        let p = preview(&config(), MANIFESTS, "-").unwrap();
        let table = render_table(&p.rows);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("OBJECT"));
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
}
