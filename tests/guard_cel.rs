//! The chart's guard on the reconciler (templates/reconciler-guard.yaml) evaluated offline: the
//! fallback patch the reconciler really sends is admitted, every other request of its
//! ServiceAccount on Pods is refused with a reason, and other users' requests are not evaluated.
//!
//! The guard comes from `helm template`, found as tests/chart.rs finds helm; without helm the
//! tests print a notice and pass, except under `CI`. With `PULLTHROUGH_APISERVER_KUBECONFIG`
//! naming an admin kubeconfig, one more test sends the same requests to that API server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cel_support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use cel_support::{Compiled, Request};
use k8s_openapi::api::core::v1::Pod;
use pullthrough::config::{Config, Fallback, Overrides};
use pullthrough::ecr::CacheRule;
use pullthrough::pod::PodRecord;
use pullthrough::pullfail::{self, fallback};
use pullthrough::rules::{self, RuleSnapshot};
use serde_json::{Value, json};

const CACHE: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
const RECONCILER: &str = "system:serviceaccount:pullthrough:pullthrough-reconciler";
const VAP_API: &str = "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy";
const DENIED: &str = "failed to pull and unpack image: pull access denied, repository does not exist or may require authorization: server message: denied: not authorized to perform: ecr:BatchImportUpstreamImage";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The helm binary, or `None` (after a notice) when there is none outside CI.
fn helm() -> Option<&'static Path> {
    static HELM: OnceLock<Option<PathBuf>> = OnceLock::new();
    HELM.get_or_init(|| {
        let found = std::env::var_os("HELM")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("PATH").and_then(|path| {
                    std::env::split_paths(&path)
                        .map(|dir| dir.join("helm"))
                        .find(|p| p.is_file())
                })
            })
            .or_else(|| Some(root().join("target/tools/bin/helm")).filter(|p| p.is_file()));
        if found.is_none() {
            assert!(
                std::env::var_os("CI").is_none(),
                "helm not found ($HELM, PATH, target/tools/bin/helm): run .ci/chart.sh first, it installs helm"
            );
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: helm not found ($HELM, PATH, target/tools/bin/helm); run .ci/chart.sh to install it"
            );
        }
        found
    })
    .as_deref()
}

/// The chart's objects for `args`, as JSON.
fn render(release: &str, namespace: &str, args: &[&str]) -> Option<Vec<Value>> {
    let helm = helm()?;
    let output = Command::new(helm)
        .current_dir(root())
        .args([
            "template",
            release,
            "charts/pullthrough",
            "--namespace",
            namespace,
        ])
        .args(["-f", "tests/chart/required-values.yaml"])
        .args(args)
        .output()
        .expect("run helm");
    assert!(
        output.status.success(),
        "helm template {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    Some(
        serde_yaml_ng::Deserializer::from_str(&text)
            .map(|doc| {
                let value: Value = serde::Deserialize::deserialize(doc).unwrap();
                value
            })
            .filter(|v| !v.is_null())
            .collect(),
    )
}

/// The guard and its binding, as the chart renders them with the fallback on.
struct Guard {
    policy: Value,
    binding: Value,
    compiled: Compiled,
}

fn guard() -> Option<&'static Guard> {
    static GUARD: OnceLock<Option<Guard>> = OnceLock::new();
    GUARD
        .get_or_init(|| {
            let docs = render(
                "pullthrough",
                "pullthrough",
                &[
                    "--set",
                    "config.fallback.enabled=true",
                    "--api-versions",
                    VAP_API,
                ],
            )?;
            let one = |kind: &str| {
                let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
                assert_eq!(found.len(), 1, "one {kind}");
                found[0].clone()
            };
            let policy = one("ValidatingAdmissionPolicy");
            let binding = one("ValidatingAdmissionPolicyBinding");
            let compiled = Compiled::validating(&policy);
            Some(Guard {
                policy,
                binding,
                compiled,
            })
        })
        .as_ref()
}

fn config() -> Config {
    Config::load(
        "accountId: \"123456789012\"\nregion: eu-west-1\nregistries:\n  docker.io: docker-hub\n  quay.io: quay\n",
        &Overrides::default(),
    )
    .unwrap()
}

fn all_rules(config: &Config) -> RuleSnapshot {
    let rules = [
        CacheRule::new("docker-hub", "registry-1.docker.io"),
        CacheRule::new("quay", "quay.io"),
    ];
    rules::snapshot(
        config,
        &rules,
        &std::collections::BTreeMap::new(),
        std::time::SystemTime::now(),
    )
}

/// A Pod as submitted: two containers and an init container through the cache, one container
/// (`plain`) on a registry the map does not name.
fn submitted() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-1", "namespace": "shop", "uid": "u1",
            "labels": {"app": "web"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "rs1", "controller": true}],
        },
        "spec": {
            "initContainers": [{"name": "init", "image": "busybox:1"}],
            "containers": [
                {"name": "app", "image": "nginx:1.27", "env": [{"name": "MODE", "value": "prod"}]},
                {"name": "side", "image": "quay.io/org/side:2"},
                {"name": "plain", "image": "registry.example/plain:1"},
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
    })
}

/// The Pod as the webhook admitted it, record included.
fn rewritten() -> Value {
    let c = config();
    let pod = submitted();
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "operation": "CREATE",
            "object": pod,
        },
    });
    let body = serde_json::to_vec(&review).unwrap();
    let reviewed = pullthrough::admission::review_with(
        &c,
        &all_rules(&c),
        &pullthrough::digests::DigestSnapshot::EMPTY,
        &body,
    )
    .unwrap();
    let review: Value = serde_json::from_slice(&reviewed.response.into_review().to_vec()).unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(review["response"]["patch"].as_str().unwrap())
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
    let mut pod = pod;
    json_patch::patch(&mut pod, &patch).unwrap();
    assert_eq!(
        pod["spec"]["containers"][0]["image"],
        format!("{CACHE}/docker-hub/library/nginx:1.27")
    );
    pod
}

fn waiting(name: &str) -> Value {
    json!({"name": name, "image": "x", "imageID": "", "ready": false, "restartCount": 0,
           "state": {"waiting": {"reason": "ErrImagePull", "message": DENIED}}})
}

/// `pod` with the pulls of `failing` failing, and the reconciler's fallback patch for them.
fn fallback_of(mut pod: Value, failing: &[&str]) -> (Value, json_patch::Patch) {
    let init: Vec<Value> = failing
        .iter()
        .filter(|n| **n == "init")
        .map(|n| waiting(n))
        .collect();
    let main: Vec<Value> = failing
        .iter()
        .filter(|n| **n != "init")
        .map(|n| waiting(n))
        .collect();
    pod["status"] =
        json!({"phase": "Pending", "initContainerStatuses": init, "containerStatuses": main});
    let c = config();
    let rules = all_rules(&c);
    let typed: Pod = serde_json::from_value(pod.clone()).unwrap();
    let record = PodRecord::from_pod(&typed).unwrap();
    let found = pullfail::failures(&c, &rules, &record);
    let policy = Fallback {
        enabled: true,
        after: Duration::from_mins(2),
    };
    let plan = fallback::plan(
        &policy,
        &record,
        &found,
        |_| Some(Duration::from_mins(5)),
        |_| false,
    )
    .unwrap_or_else(|| panic!("no fallback of {failing:?}"));
    (pod, plan.patch())
}

fn patched(pod: &Value, patch: &json_patch::Patch) -> Value {
    let mut after = pod.clone();
    json_patch::patch(&mut after, patch).unwrap();
    after
}

fn opted_in(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": name, "labels": {"pullthrough.dev/enabled": "true"}}})
}

/// An update by the reconciler in an opted-in namespace.
fn by_reconciler(old: &Value, new: &Value) -> Request {
    Request::update(old.clone(), new.clone())
        .by(RECONCILER)
        .in_namespace(opted_in("shop"))
}

fn admitted(request: &Request) {
    let guard = guard().unwrap();
    match guard.compiled.validate(request) {
        Ok(Some(Ok(()))) => {}
        other => panic!("not admitted: {other:?}"),
    }
}

/// Refused, with a message containing `reason`; and the same request by anyone else is not
/// evaluated at all.
fn refused(request: &Request, reason: &str) {
    let guard = guard().unwrap();
    match guard.compiled.validate(request) {
        Ok(Some(Err(message))) => assert!(
            message.contains(reason),
            "refused for another reason: {message:?}, expected {reason:?}"
        ),
        other => panic!("not refused ({reason}): {other:?}"),
    }
    for other in [
        "alice",
        "system:serviceaccount:pullthrough:pullthrough-webhook",
    ] {
        assert_eq!(
            guard.compiled.validate(&request.clone().by(other)).unwrap(),
            None,
            "{other}'s request was evaluated"
        );
    }
}

/// The Pod after a fallback of `app`, and the fallback of `side` on it.
fn after_first_fallback() -> (Value, json_patch::Patch) {
    let (pod, patch) = fallback_of(rewritten(), &["app"]);
    let mut pod = patched(&pod, &patch);
    pod["status"] = Value::Null;
    fallback_of(pod, &["side"])
}

// === what the reconciler really sends ===

#[test]
fn the_reconcilers_fallback_patch_is_admitted() {
    if guard().is_none() {
        return;
    }
    let (old, patch) = fallback_of(rewritten(), &["app", "side", "init"]);
    let new = patched(&old, &patch);
    assert_eq!(new["spec"]["containers"][0]["image"], "nginx:1.27");
    assert_eq!(new["spec"]["initContainers"][0]["image"], "busybox:1");
    assert_eq!(
        new["metadata"]["annotations"]["pullthrough.dev/fallback"],
        "[\"init\",\"app\",\"side\"]"
    );
    admitted(&by_reconciler(&old, &new));

    // One at a time: the second extends the annotation the first wrote.
    let (old, patch) = fallback_of(rewritten(), &["app"]);
    admitted(&by_reconciler(&old, &patched(&old, &patch)));
    let (old, patch) = after_first_fallback();
    let new = patched(&old, &patch);
    assert_eq!(
        new["metadata"]["annotations"]["pullthrough.dev/fallback"],
        "[\"app\",\"side\"]"
    );
    admitted(&by_reconciler(&old, &new));
}

#[test]
fn the_guard_fails_closed_evaluates_only_the_reconciler_and_binds_everywhere() {
    let Some(guard) = guard() else { return };
    let spec = &guard.policy["spec"];
    assert_eq!(spec["failurePolicy"], "Fail");
    assert_eq!(
        spec["matchConditions"],
        json!([{"name": "reconciler", "expression": format!("request.userInfo.username == '{RECONCILER}'")}])
    );
    let rule = &spec["matchConstraints"]["resourceRules"][0];
    assert_eq!(rule["apiGroups"], json!([""]));
    assert_eq!(rule["operations"], json!(["*"]));
    assert_eq!(rule["resources"], json!(["pods", "pods/*"]));
    assert!(
        spec["validations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["message"].as_str().is_some_and(|m| !m.contains('\n')))
    );
    let b = &guard.binding["spec"];
    assert_eq!(b["policyName"], guard.policy["metadata"]["name"]);
    assert_eq!(b["validationActions"], json!(["Deny"]));
    // No selector on the binding: outside the opted-in namespaces the guard must still run, and
    // refuse (the harness does not evaluate selectors; the policy reads namespaceObject).
    assert!(b.get("matchResources").is_none(), "{b}");
}

// === hostile requests of the reconciler's ServiceAccount ===

#[test]
fn another_image_is_refused() {
    if guard().is_none() {
        return;
    }
    let (old, patch) = fallback_of(rewritten(), &["app"]);
    let mut new = patched(&old, &patch);
    new["spec"]["containers"][0]["image"] = json!("evil.example/nginx:1.27");
    refused(
        &by_reconciler(&old, &new),
        "record names for that container",
    );
    // The original of another container is not this one's.
    new["spec"]["containers"][0]["image"] = json!("quay.io/org/side:2");
    refused(
        &by_reconciler(&old, &new),
        "record names for that container",
    );
}

#[test]
fn a_container_the_record_does_not_name_is_refused() {
    if guard().is_none() {
        return;
    }
    let old = rewritten();
    let mut new = old.clone();
    assert_eq!(new["spec"]["containers"][2]["name"], "plain");
    new["spec"]["containers"][2]["image"] = json!("registry.example/plain:2");
    new["metadata"]["annotations"]["pullthrough.dev/fallback"] = json!("[\"plain\"]");
    refused(
        &by_reconciler(&old, &new),
        "record names for that container",
    );
}

#[test]
fn a_record_brought_by_the_request_is_not_believed() {
    if guard().is_none() {
        return;
    }
    let (old, patch) = fallback_of(rewritten(), &["app"]);
    let mut new = patched(&old, &patch);
    new["spec"]["containers"][0]["image"] = json!("evil.example/x:1");
    new["metadata"]["annotations"]["pullthrough.dev/original-images"] =
        json!("{\"app\":\"evil.example/x:1\"}");
    refused(
        &by_reconciler(&old, &new),
        "record names for that container",
    );
    // A Pod the webhook never rewrote has nothing to fall back to.
    let old = submitted();
    let mut new = old.clone();
    new["spec"]["containers"][0]["image"] = json!("nginx:1.28");
    refused(
        &by_reconciler(&old, &new),
        "has no pullthrough.dev/original-images",
    );
}

#[test]
fn a_label_or_another_annotation_is_refused() {
    if guard().is_none() {
        return;
    }
    let (old, patch) = fallback_of(rewritten(), &["app"]);
    let fallen = patched(&old, &patch);
    let mut new = fallen.clone();
    new["metadata"]["labels"]["app"] = json!("db");
    refused(&by_reconciler(&old, &new), "labels, owner references");
    let mut new = fallen.clone();
    new["metadata"]["ownerReferences"] = json!([]);
    refused(&by_reconciler(&old, &new), "labels, owner references");
    let mut new = fallen.clone();
    new["metadata"]["annotations"]["x"] = json!("y");
    refused(&by_reconciler(&old, &new), "annotations other than");
    // Alone, with no image falling back, a label change is no fallback at all.
    let old = rewritten();
    let mut new = old.clone();
    new["metadata"]["labels"]["app"] = json!("db");
    refused(&by_reconciler(&old, &new), "at least one container");
}

#[test]
fn anything_else_in_the_spec_is_refused() {
    if guard().is_none() {
        return;
    }
    let (old, patch) = fallback_of(rewritten(), &["app"]);
    let fallen = patched(&old, &patch);
    let mut new = fallen.clone();
    new["spec"]["containers"][0]["env"][0]["value"] = json!("debug");
    refused(
        &by_reconciler(&old, &new),
        "every other field of every container",
    );
    let mut new = fallen.clone();
    new["spec"]["containers"][0]["command"] = json!(["sh"]);
    refused(
        &by_reconciler(&old, &new),
        "every other field of every container",
    );
    let mut new = fallen.clone();
    new["spec"]["tolerations"] = json!([{"key": "k", "operator": "Exists"}]);
    refused(&by_reconciler(&old, &new), "nothing else in the Pod's spec");
    let mut new = fallen;
    new["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "extra", "image": "evil.example/x:1"}));
    // A new container is a changed image the record cannot name.
    refused(
        &by_reconciler(&old, &new),
        "record names for that container",
    );
}

#[test]
fn ephemeral_containers_and_image_volumes_are_refused() {
    if guard().is_none() {
        return;
    }
    let mut old = rewritten();
    old["spec"]["ephemeralContainers"] =
        json!([{"name": "debug", "image": format!("{CACHE}/docker-hub/library/busybox:1")}]);
    old["spec"]["volumes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "models", "image": {"reference": format!("{CACHE}/docker-hub/org/models:1")}}));
    old["metadata"]["annotations"]["pullthrough.dev/original-images"] = json!(
        "{\"init\":\"busybox:1\",\"app\":\"nginx:1.27\",\"side\":\"quay.io/org/side:2\",\"debug\":\"busybox:1\",\"volume/models\":\"org/models:1\"}"
    );
    let mut new = old.clone();
    new["spec"]["ephemeralContainers"][0]["image"] = json!("busybox:1");
    new["metadata"]["annotations"]["pullthrough.dev/fallback"] = json!("[\"debug\"]");
    refused(&by_reconciler(&old, &new), "at least one container");
    refused(
        &by_reconciler(&old, &new).on("ephemeralcontainers"),
        "no Pod subresource",
    );
    // Alongside a real fallback, too.
    new["spec"]["containers"][0]["image"] = json!("nginx:1.27");
    new["metadata"]["annotations"]["pullthrough.dev/fallback"] = json!("[\"app\"]");
    refused(&by_reconciler(&old, &new), "ephemeral containers");
    let mut new = old.clone();
    new["spec"]["containers"][0]["image"] = json!("nginx:1.27");
    new["metadata"]["annotations"]["pullthrough.dev/fallback"] = json!("[\"app\"]");
    admitted(&by_reconciler(&old, &new));
    new["spec"]["volumes"][1]["image"]["reference"] = json!("org/models:1");
    refused(&by_reconciler(&old, &new), "image volumes");
}

#[test]
fn a_pod_outside_the_opted_in_namespaces_is_refused() {
    if guard().is_none() {
        return;
    }
    let (old, patch) = fallback_of(rewritten(), &["app"]);
    let new = patched(&old, &patch);
    let plain = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}});
    refused(
        &by_reconciler(&old, &new).in_namespace(plain),
        "only in namespaces labelled pullthrough.dev/enabled=true",
    );
    let mut other_value = opted_in("shop");
    other_value["metadata"]["labels"]["pullthrough.dev/enabled"] = json!("false");
    refused(
        &by_reconciler(&old, &new).in_namespace(other_value),
        "only in namespaces labelled",
    );
    // Labelled, but never rewritten there.
    for never in ["kube-system", "pullthrough"] {
        refused(
            &by_reconciler(&old, &new).in_namespace(opted_in(never)),
            "never in kube-system, pullthrough",
        );
    }
}

#[test]
fn create_delete_and_subresources_are_refused() {
    if guard().is_none() {
        return;
    }
    let pod = rewritten();
    refused(
        &Request::create(pod.clone())
            .by(RECONCILER)
            .in_namespace(opted_in("shop")),
        "may only update Pods",
    );
    refused(
        &Request::delete(pod.clone())
            .by(RECONCILER)
            .in_namespace(opted_in("shop")),
        "may only update Pods",
    );
    let (old, patch) = fallback_of(pod, &["app"]);
    let new = patched(&old, &patch);
    for sub in ["status", "resize", "binding"] {
        refused(&by_reconciler(&old, &new).on(sub), "no Pod subresource");
    }
}

#[test]
fn the_fallback_annotation_may_only_grow_by_the_containers_falling_back() {
    if guard().is_none() {
        return;
    }
    let (old, patch) = fallback_of(rewritten(), &["app"]);
    let fallen = patched(&old, &patch);
    for list in [
        "[\"app\",\"side\"]",
        "[\"app\",\"evil\"]",
        "[]",
        "[\"app\"",
        "[ \"app\" ]",
        "\"app\"",
    ] {
        let mut new = fallen.clone();
        new["metadata"]["annotations"]["pullthrough.dev/fallback"] = json!(list);
        refused(&by_reconciler(&old, &new), "may only grow");
    }
    let mut new = fallen;
    new["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("pullthrough.dev/fallback");
    refused(&by_reconciler(&old, &new), "may only grow");

    // A second fallback keeps what the first listed.
    let (old, patch) = after_first_fallback();
    let mut new = patched(&old, &patch);
    new["metadata"]["annotations"]["pullthrough.dev/fallback"] = json!("[\"side\"]");
    refused(&by_reconciler(&old, &new), "may only grow");
    // And a container listed already never falls back again.
    let mut old = old;
    old["spec"]["containers"][0]["image"] = json!(format!("{CACHE}/docker-hub/library/nginx:1.27"));
    let mut new = old.clone();
    new["spec"]["containers"][0]["image"] = json!("nginx:1.27");
    refused(&by_reconciler(&old, &new), "falls back only once");
}

// === on a real API server ===

/// kubectl with the admin kubeconfig, optionally as the reconciler; the output, or the error.
struct Kubectl {
    kubeconfig: String,
    reconciler: Option<(String, String)>,
}

impl Kubectl {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        let mut command = Command::new("kubectl");
        command.arg("--kubeconfig").arg(&self.kubeconfig);
        if let Some((user, namespace)) = &self.reconciler {
            command
                .arg(format!("--as={user}"))
                .arg("--as-group=system:serviceaccounts")
                .arg(format!("--as-group=system:serviceaccounts:{namespace}"))
                .arg("--as-group=system:authenticated");
        }
        command.args(args);
        command.stdin(std::process::Stdio::piped());
        command.stdout(std::process::Stdio::piped());
        command.stderr(std::process::Stdio::piped());
        let mut child = command.spawn().map_err(|e| format!("run kubectl: {e}"))?;
        if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
            input
                .write_all(text.as_bytes())
                .map_err(|e| format!("write to kubectl: {e}"))?;
        }
        drop(child.stdin.take());
        let output = child
            .wait_with_output()
            .map_err(|e| format!("wait for kubectl: {e}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    fn json_patch(&self, namespace: &str, pod: &str, patch: &Value) -> Result<String, String> {
        self.run(
            &[
                "-n",
                namespace,
                "patch",
                "pod",
                pod,
                "--type=json",
                "-p",
                &patch.to_string(),
            ],
            None,
        )
    }
}

/// A JSON Patch from old to new, without tests: what another client could send.
fn diff(old: &Value, new: &Value) -> Value {
    serde_json::to_value(json_patch::diff(old, new)).unwrap()
}

#[test]
fn the_guard_holds_on_a_real_api_server() {
    let Some(kubeconfig) = std::env::var_os("PULLTHROUGH_APISERVER_KUBECONFIG") else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: PULLTHROUGH_APISERVER_KUBECONFIG does not name an admin kubeconfig"
        );
        return;
    };
    // Names of this run only, so that a shared API server is not disturbed.
    let release = format!("guard{}", std::process::id());
    let shop = format!("{release}-shop");
    let plain = format!("{release}-plain");
    let Some(docs) = render(
        &release,
        &release,
        &[
            "--set",
            "config.fallback.enabled=true",
            "--api-versions",
            VAP_API,
            "--show-only",
            "templates/reconciler-rbac.yaml",
            "--show-only",
            "templates/reconciler-guard.yaml",
        ],
    ) else {
        return;
    };
    let manifest = json!({"apiVersion": "v1", "kind": "List", "items": docs}).to_string();
    let admin = Kubectl {
        kubeconfig: kubeconfig.to_string_lossy().into_owned(),
        reconciler: None,
    };
    let reconciler = Kubectl {
        kubeconfig: admin.kubeconfig.clone(),
        reconciler: Some((
            format!("system:serviceaccount:{release}:{release}-pullthrough-reconciler"),
            release.clone(),
        )),
    };
    let _cleanup = Cleanup {
        admin: &admin,
        namespaces: vec![shop.clone(), plain.clone(), release.clone()],
        manifest: &manifest,
    };
    for ns in [&release, &shop, &plain] {
        admin.run(&["create", "namespace", ns], None).unwrap();
    }
    admin
        .run(
            &["label", "namespace", &shop, "pullthrough.dev/enabled=true"],
            None,
        )
        .unwrap();
    // Where no controller manager runs, nobody else creates them.
    for ns in [&shop, &plain] {
        let _ = admin.run(&["-n", ns, "create", "serviceaccount", "default"], None);
    }
    admin.run(&["apply", "-f", "-"], Some(&manifest)).unwrap();

    let mut pod = rewritten();
    let meta = pod["metadata"].as_object_mut().unwrap();
    meta.remove("uid");
    meta.remove("ownerReferences");
    let create = |ns: &str| {
        let mut p = pod.clone();
        p["metadata"]["namespace"] = json!(ns);
        admin
            .run(&["create", "-f", "-"], Some(&p.to_string()))
            .unwrap();
        serde_json::from_str::<Value>(
            &admin
                .run(&["-n", ns, "get", "pod", "web-1", "-o", "json"], None)
                .unwrap(),
        )
        .unwrap()
    };
    let stored = create(&shop);
    let stored_plain = create(&plain);
    let mut relabelled = stored.clone();
    relabelled["metadata"]["labels"]["app"] = json!("db");
    let label_change = diff(&stored, &relabelled);

    // The policy takes effect once the API server has read it.
    let mut waited = 0;
    let refusal = loop {
        match reconciler.json_patch(&shop, "web-1", &label_change) {
            Err(e) if e.contains("ValidatingAdmissionPolicy") => break e,
            other => {
                assert!(waited < 60, "the guard never took effect: {other:?}");
                waited += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    };
    let mut printed = vec![format!("label change (reconciler): {}", refusal.trim())];
    assert!(refusal.contains("at least one container"), "{refusal}");

    let (old, patch) = fallback_of(stored.clone(), &["app", "side", "init"]);
    let fallen = patched(&old, &patch);
    let mut evil = fallen.clone();
    evil["spec"]["containers"][0]["image"] = json!("evil.example/nginx:1.27");
    let another_image = diff(&stored, &evil);
    let (_, patch_plain) = fallback_of(stored_plain, &["app"]);
    let hostile: [(&str, &str, Value, &str); 2] = [
        (
            "another image",
            &shop,
            another_image,
            "record names for that container",
        ),
        (
            "fallback outside the opted-in namespaces",
            &plain,
            serde_json::to_value(&patch_plain).unwrap(),
            "only in namespaces labelled",
        ),
    ];
    for (what, ns, patch, reason) in &hostile {
        let e = reconciler.json_patch(ns, "web-1", patch).unwrap_err();
        printed.push(format!("{what} (reconciler): {}", e.trim()));
        assert!(e.contains(reason), "{what}: {e}");
    }
    let e = reconciler
        .run(
            &["-n", &shop, "delete", "pod", "web-1", "--wait=false"],
            None,
        )
        .unwrap_err();
    printed.push(format!("delete (reconciler): {}", e.trim()));
    assert!(
        e.contains("forbidden") || e.contains("may only update Pods"),
        "{e}"
    );

    let ok = reconciler
        .json_patch(&shop, "web-1", &serde_json::to_value(&patch).unwrap())
        .unwrap_or_else(|e| panic!("the reconciler's fallback patch was refused: {e}"));
    printed.push(format!("fallback patch (reconciler): {}", ok.trim()));
    let now: Value = serde_json::from_str(
        &admin
            .run(&["-n", &shop, "get", "pod", "web-1", "-o", "json"], None)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(now["spec"]["containers"][0]["image"], "nginx:1.27");
    assert_eq!(now["spec"]["containers"][1]["image"], "quay.io/org/side:2");
    assert_eq!(now["spec"]["initContainers"][0]["image"], "busybox:1");
    assert_eq!(
        now["metadata"]["annotations"]["pullthrough.dev/fallback"],
        "[\"init\",\"app\",\"side\"]"
    );

    // Anyone else is not evaluated: the same label change by the admin goes through.
    let mut relabelled = now.clone();
    relabelled["metadata"]["labels"]["app"] = json!("db");
    let ok = admin
        .json_patch(&shop, "web-1", &diff(&now, &relabelled))
        .unwrap_or_else(|e| panic!("another user's request was refused: {e}"));
    printed.push(format!("label change (admin): {}", ok.trim()));
    let _ = writeln!(std::io::stderr(), "{}", printed.join("\n"));
}

/// Removes what the test made, passed or failed.
struct Cleanup<'a> {
    admin: &'a Kubectl,
    namespaces: Vec<String>,
    manifest: &'a str,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = self
                .admin
                .run(&["delete", "namespace", ns, "--wait=false"], None);
        }
        let _ = self.admin.run(
            &["delete", "-f", "-", "--ignore-not-found", "--wait=false"],
            Some(self.manifest),
        );
    }
}
