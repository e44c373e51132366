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
/// pod templates) and the record of originals, returning the images.
fn strip_images(value: &mut Value, images: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(annotations)) = map.get_mut("annotations") {
                annotations.remove("pullthrough.dev/original-images");
                if annotations.is_empty() {
                    map.remove("annotations");
                }
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
        }
        Value::Array(items) => items.iter_mut().for_each(|v| strip_images(v, images)),
        _ => {}
    }
}

#[test]
fn preview_output_means_what_its_input_meant_except_the_images() {
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/preview/tricky.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_pullthrough"))
        .args([
            "preview",
            "--account-id",
            "123456789012",
            "--region",
            "eu-west-1",
            "-f",
        ])
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PodTemplate/kept"), "{stderr}");
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.yaml");
    std::fs::write(&output, &out.stdout).unwrap();

    let Some(mut before) = read_with_kubectl(&input) else {
        return;
    };
    let mut after = read_with_kubectl(&output).unwrap();

    // The input is read the YAML 1.1 way: these are what the API server sees.
    let deployment = &before[1]["spec"]["template"]["spec"];
    assert_eq!(deployment["volumes"][0]["configMap"]["defaultMode"], 493);
    assert_eq!(deployment["securityContext"]["runAsNonRoot"], true);
    assert_eq!(deployment["containers"][0]["env"][0]["value"], "no");
    assert_eq!(before[2]["spec"]["containers"][0]["stdin"], true);

    let (mut old, mut new) = (Vec::new(), Vec::new());
    for v in &mut before {
        strip_images(v, &mut old);
    }
    for v in &mut after {
        strip_images(v, &mut new);
    }
    assert_eq!(before, after);
    assert_eq!(old.len(), new.len());
    let rewritten: Vec<_> = old.iter().zip(&new).filter(|(o, n)| o != n).collect();
    assert_eq!(rewritten.len(), 4, "{rewritten:?}");
    for (o, n) in rewritten {
        assert!(n.starts_with(HOST), "{o} -> {n}");
    }
}
