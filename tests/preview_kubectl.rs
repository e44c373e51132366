//! `preview -o yaml` output read the way the API server reads manifests (by `kubectl`, YAML
//! 1.1): the same objects as the input, but for the images and the record of originals.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const HOST: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

/// Every object of a manifest file, as `kubectl annotate --local` reads it; `None` when
/// kubectl is not installed (outside CI).
fn read_with_kubectl(file: &Path) -> Option<Vec<Value>> {
    let out = match Command::new("kubectl")
        .args(["annotate", "--local", "-o", "json", "preview-check=1", "-f"])
        .arg(file)
        .output()
    {
        Ok(out) => out,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("kubectl not run ({e}): skipped");
            return None;
        }
        Err(e) => panic!("kubectl is needed in CI: {e}"),
    };
    assert!(
        out.status.success(),
        "kubectl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    Some(
        serde_json::Deserializer::from_str(&text)
            .into_iter::<Value>()
            .map(Result::unwrap)
            .collect(),
    )
}

/// Takes every image out of an object (containers of every list, image volumes, in Pods and
/// pod templates), the record of originals and the annotation kubectl adds, returning the
/// images. Metadata and annotations left null or empty go too: to the API server they are
/// the same as none.
fn strip_images(value: &mut Value, images: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(annotations)) = map.get_mut("annotations") {
                annotations.remove("pullthrough.dev/original-images");
                annotations.remove("preview-check");
            }
            for list in ["containers", "initContainers", "ephemeralContainers"] {
                if let Some(Value::Array(items)) = map.get_mut(list) {
                    for c in items {
                        if let Some(Value::String(i)) =
                            c.as_object_mut().and_then(|c| c.remove("image"))
                        {
                            images.push(i);
                        }
                    }
                }
            }
            if let Some(Value::Array(volumes)) = map.get_mut("volumes") {
                for v in volumes {
                    if let Some(Value::String(i)) = v
                        .pointer_mut("/image")
                        .and_then(Value::as_object_mut)
                        .and_then(|i| i.remove("reference"))
                    {
                        images.push(i);
                    }
                }
            }
            for v in map.values_mut() {
                strip_images(v, images);
            }
            // After the record is gone from within.
            for key in ["annotations", "metadata"] {
                if map.get(key).is_some_and(|v| {
                    v.is_null() || v.as_object().is_some_and(serde_json::Map::is_empty)
                }) {
                    map.remove(key);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| strip_images(v, images)),
        _ => {}
    }
}

/// Runs `preview -o yaml` on `input`; returns its output and standard error.
fn preview(input: &Path) -> (Vec<u8>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pullthrough"))
        .args([
            "preview",
            "--account-id",
            "123456789012",
            "--region",
            "eu-west-1",
            "-f",
        ])
        .arg(input)
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    (out.stdout, stderr)
}

/// An input and its preview as kubectl reads them.
struct Read {
    /// The input's objects, without images, record or empty metadata ([`strip_images`]).
    before: Vec<Value>,
    /// The output's objects, the same way.
    after: Vec<Value>,
    /// The images taken out of `before`, in order.
    old: Vec<String>,
    /// The images taken out of `after`, in order.
    new: Vec<String>,
    /// The output's objects as kubectl read them.
    output: Vec<Value>,
}

/// Reads `input` and the `output` of its preview with kubectl; `None` without kubectl.
fn read_both(input: &Path, output: &[u8]) -> Option<Read> {
    let dir = tempfile::tempdir().unwrap();
    let written = dir.path().join(input.file_name()?);
    std::fs::write(&written, output).unwrap();
    let mut before = read_with_kubectl(input)?;
    let mut after = read_with_kubectl(&written)?;
    let output = after.clone();
    let (mut old, mut new) = (Vec::new(), Vec::new());
    for v in &mut before {
        strip_images(v, &mut old);
    }
    for v in &mut after {
        strip_images(v, &mut new);
    }
    Some(Read {
        before,
        after,
        old,
        new,
        output,
    })
}

/// The pod of an object: the Pod itself, or its template.
fn pod_of(object: &Value) -> &Value {
    match object["kind"].as_str() {
        Some("Pod") => object,
        Some("CronJob") => &object["spec"]["jobTemplate"]["spec"]["template"],
        _ => &object["spec"]["template"],
    }
}

#[test]
fn preview_output_means_what_its_input_meant_except_the_images() {
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/preview/tricky.yaml");
    let (stdout, stderr) = preview(&input);
    assert!(stderr.contains("PodTemplate/kept"), "{stderr}");
    let Some(read) = read_both(&input, &stdout) else {
        return;
    };

    // The input is read the YAML 1.1 way: these are what the API server sees.
    let deployment = &read.before[1]["spec"]["template"]["spec"];
    assert_eq!(deployment["volumes"][0]["configMap"]["defaultMode"], 493);
    assert_eq!(deployment["securityContext"]["runAsNonRoot"], true);
    assert_eq!(deployment["containers"][0]["env"][0]["value"], "no");
    assert_eq!(read.before[2]["spec"]["containers"][0]["stdin"], true);

    assert_eq!(read.before, read.after);
    assert_eq!(read.old.len(), read.new.len());
    let rewritten: Vec<_> = read
        .old
        .iter()
        .zip(&read.new)
        .filter(|(o, n)| o != n)
        .collect();
    assert_eq!(rewritten.len(), 4, "{rewritten:?}");
    for (o, n) in rewritten {
        assert!(n.starts_with(HOST), "{o} -> {n}");
    }
}

/// The kinds of the webhook.
const KINDS: [(&str, &str); 7] = [
    ("v1", "Pod"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet"),
    ("apps/v1", "ReplicaSet"),
    ("batch/v1", "Job"),
    ("batch/v1", "CronJob"),
];

/// A manifest of `kind` whose pod (the Pod itself, or its template) has the metadata lines
/// `metadata`, written at the pod's indentation.
fn manifest(api_version: &str, kind: &str, name: &str, metadata: &str) -> String {
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
            "{head}metadata:\n  name: {name}\nspec:\n  schedule: '0 3 * * *'\n  jobTemplate:\n    spec:\n      template:\n{}",
            at(8)
        ),
        _ => format!(
            "{head}metadata:\n  name: {name}\nspec:\n  selector: {{matchLabels: {{app: w}}}}\n  template:\n{}",
            at(4)
        ),
    }
}

/// Every kind with its pod's `annotations`, and its pod's `metadata`, left null in each of
/// the ways YAML spells it.
fn null_manifests() -> Vec<String> {
    let mut out = Vec::new();
    for (api_version, kind) in KINDS {
        for (n, null) in ["", " ~", " null"].into_iter().enumerate() {
            let name = format!("{}-{n}", kind.to_lowercase());
            let pod_name = if kind == "Pod" {
                format!("  name: {name}\n")
            } else {
                String::new()
            };
            out.push(manifest(
                api_version,
                kind,
                &name,
                &format!("metadata:\n{pod_name}  labels: {{app: w}}\n  annotations:{null}\n"),
            ));
            out.push(manifest(
                api_version,
                kind,
                &format!("{name}-m"),
                &format!("metadata:{null}\n"),
            ));
        }
    }
    out
}

/// Checks that `after` (as kubectl read it) carries `record` on the pod of every object.
fn assert_every_pod_has(after: &[Value], record: &str) {
    for object in after {
        assert_eq!(
            pod_of(object)["metadata"]["annotations"]["pullthrough.dev/original-images"],
            record,
            "{object:#}"
        );
    }
}

#[test]
fn null_annotations_and_metadata_get_the_record_and_mean_what_they_meant_in_yaml_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = null_manifests();
    let yaml = dir.path().join("nulls.yaml");
    std::fs::write(&yaml, manifests.join("---\n")).unwrap();
    // JSON spells null one way only; a List holds every kind in one file.
    let items: Vec<Value> = manifests
        .iter()
        .filter(|m| m.contains(" null\n"))
        .map(|m| serde_yaml_ng::from_str(m).unwrap())
        .collect();
    let json = dir.path().join("nulls.json");
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
    let list = serde_json::to_string_pretty(&list).unwrap();
    assert_eq!(items.len(), 2 * KINDS.len());
    assert!(list.contains("\"annotations\": null") && list.contains("\"metadata\": null"));
    std::fs::write(&json, list).unwrap();

    let record = r#"{"web":"nginx:1.27","side":"quay.io/org/side:1"}"#;
    for (input, count) in [(&yaml, manifests.len()), (&json, items.len())] {
        let (stdout, stderr) = preview(input);
        assert_eq!(stderr, "", "{}", input.display());
        if input == &json {
            let text = String::from_utf8(stdout.clone()).unwrap();
            let value: Value = serde_json::from_str(&text).expect("JSON stays JSON");
            assert_eq!(value["items"].as_array().map(Vec::len), Some(count));
        }
        let Some(read) = read_both(input, &stdout) else {
            return;
        };
        assert_eq!(read.before.len(), count);
        assert_eq!(read.after.len(), count);
        for (b, a) in read.before.iter().zip(&read.after) {
            assert_eq!(b, a, "{}", input.display());
        }
        assert_every_pod_has(&read.output, record);
        assert_eq!(read.old.len(), 2 * count);
        for (o, n) in read.old.iter().zip(&read.new) {
            assert!(
                n.starts_with(HOST) && n.ends_with(o.rsplit('/').next().unwrap()),
                "{o} -> {n}"
            );
        }
    }
}

#[test]
fn chart_templates_with_a_bare_annotations_key_get_the_record_with_no_warning() {
    let input =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/preview/loki-memcached.yaml");
    let (stdout, stderr) = preview(&input);
    assert_eq!(stderr, "");
    let text = String::from_utf8(stdout.clone()).unwrap();
    let record =
        r#"{"memcached":"memcached:1.6.23-alpine","exporter":"prom/memcached-exporter:v0.14.2"}"#;
    assert_eq!(
        text.matches(&format!(
            "      annotations:\n        pullthrough.dev/original-images: '{record}'\n    spec:\n"
        ))
        .count(),
        2,
        "{text}"
    );
    let Some(read) = read_both(&input, &stdout) else {
        return;
    };
    assert_eq!(read.before, read.after);
    let sets: Vec<Value> = read
        .output
        .into_iter()
        .filter(|o| o["kind"] == "StatefulSet")
        .collect();
    let names: Vec<_> = sets.iter().map(|o| &o["metadata"]["name"]).collect();
    assert_eq!(names, ["loki-chunks-cache", "loki-results-cache"]);
    assert_every_pod_has(&sets, record);
    assert_eq!(read.new.len(), 4);
    assert!(
        read.old
            .iter()
            .zip(&read.new)
            .all(|(o, n)| o != n && n.starts_with(HOST))
    );
}
