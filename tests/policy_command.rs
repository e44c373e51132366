//! `pullthrough policy`: golden outputs for the default configuration and for one with
//! aliases, exclusions and `digests: rewrite` (regenerate with `UPDATE_GOLDEN=1` and review the
//! diff), and the JSON form.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

const CUSTOM: &str = "accountId: \"123456789012\"\nregion: eu-west-1\ndigests: rewrite\nregistries:\n  docker.io: {prefix: docker-hub, aliases: [mirror.gcr.io]}\n  quay.io: quay\n  ghcr.io: github\nexclude:\n  images: [\"quay.io/cilium/*\", \"docker.io/library/postgres*\"]\n  podLabels: [\"cnpg.io/cluster\", \"app.kubernetes.io/managed-by=zalando\"]\n  ownerKinds: [\"Cluster\"]\n";

fn policy(config: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_pullthrough"));
    command.arg("policy").env_clear();
    match config {
        Some(text) => {
            let path = dir.path().join("pullthrough.yaml");
            std::fs::write(&path, text).unwrap();
            command.arg("--config").arg(path);
        }
        None => {
            command.args(["--account-id", "123456789012", "--region", "eu-west-1"]);
        }
    }
    let out = command.args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn check(config: Option<&str>, file: &str) -> String {
    let (ok, text, stderr) = policy(config, &[]);
    assert!(ok, "{stderr}");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/policy")
        .join(file);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert!(
        text == want,
        "{file} differs from `pullthrough policy`; rerun with UPDATE_GOLDEN=1 and review the diff"
    );
    text
}

/// The YAML documents, read back as the API server reads them.
fn documents(text: &str) -> Vec<serde_json::Value> {
    text.split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_yaml_ng::from_str(d).unwrap())
        .collect()
}

#[test]
fn the_default_policy_matches_its_golden_file() {
    let text = check(None, "default.yaml");
    let docs = documents(&text);
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0]["kind"], "MutatingAdmissionPolicy");
    assert_eq!(docs[1]["kind"], "MutatingAdmissionPolicyBinding");
    assert_eq!(docs[1]["spec"]["policyName"], docs[0]["metadata"]["name"]);
}

#[test]
fn a_policy_with_aliases_exclusions_and_pinned_rewrites_matches_its_golden_file() {
    let text = check(Some(CUSTOM), "custom.yaml");
    let docs = documents(&text);
    let conditions: Vec<&str> = docs[0]["spec"]["matchConditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        conditions,
        [
            "not-opted-out",
            "not-excluded-by-label",
            "not-excluded-by-owner"
        ]
    );
    assert!(text.contains("mirror.gcr.io"));
}

#[test]
fn json_output_is_a_list_of_the_same_objects() {
    let (ok, yaml, _) = policy(None, &[]);
    assert!(ok);
    let (ok, json, _) = policy(None, &["-o", "json"]);
    assert!(ok);
    let list: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().unwrap(), &documents(&yaml));
}

#[test]
fn flags_shape_the_binding_and_bad_selectors_are_refused() {
    let (ok, text, _) = policy(
        None,
        &[
            "--namespace-selector",
            "team=web",
            "--release-namespace",
            "ops",
            "--failure-policy",
            "fail",
            "--name",
            "cache",
        ],
    );
    assert!(ok);
    let docs = documents(&text);
    assert_eq!(docs[0]["metadata"]["name"], "cache");
    assert_eq!(docs[0]["spec"]["failurePolicy"], "Fail");
    let selector = &docs[1]["spec"]["matchResources"]["namespaceSelector"];
    assert_eq!(selector["matchLabels"]["team"], "web");
    assert_eq!(
        selector["matchExpressions"][0]["values"],
        serde_json::json!(["kube-system", "ops"])
    );
    let (ok, _, stderr) = policy(None, &["--namespace-selector", "not a selector"]);
    assert!(!ok);
    assert!(
        stderr.contains("not a namespace label selector"),
        "{stderr}"
    );
}
