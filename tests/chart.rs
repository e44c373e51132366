//! The Helm chart, rendered with `helm template` and read back into the Kubernetes API types.
//!
//! Every built-in object must deserialise into its `k8s_openapi` type and serialise back to
//! exactly what was rendered: the types ignore unknown fields, so a misspelt field shows up as a
//! difference. The tests then assert what the cluster would act on: the webhook configuration,
//! RBAC, security contexts, probes, certificates and the configuration file.
//!
//! helm is taken from `$HELM`, then `PATH`, then `target/tools/bin/helm` (where `.ci/chart.sh`
//! installs it). Without helm the tests print a notice and pass, except under `CI`, where they
//! fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use pullthrough::config::{Config, DigestPolicy, Overrides, WorkloadPolicy};
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

const RELEASE: &str = "pullthrough";
const NAMESPACE: &str = "pullthrough";
/// The image the release workflow publishes, and the chart's default.
const PUBLISHED_IMAGE: &str = "ghcr.io/pullthrough/pullthrough";
/// Where the release workflow pushes the chart.
const PUBLISHED_CHART: &str = "oci://ghcr.io/pullthrough/charts/pullthrough";

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
            .or_else(|| {
                Some(root().join("target/tools/bin/helm")).filter(|p| p.is_file())
            });
        if found.is_none() {
            assert!(
                std::env::var_os("CI").is_none(),
                "helm not found ($HELM, PATH, target/tools/bin/helm): run .ci/chart.sh first, it installs helm"
            );
            // Straight to stderr: the test harness captures eprintln! of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: helm not found ($HELM, PATH, target/tools/bin/helm); run .ci/chart.sh to install it"
            );
        }
        found
    })
    .as_deref()
}

/// Runs `helm template` with the required values plus `args`; `Err` carries helm's stderr.
fn try_render(args: &[&str]) -> Option<Result<Rendered, String>> {
    let helm = helm()?;
    let output = Command::new(helm)
        .current_dir(root())
        .args([
            "template",
            RELEASE,
            "charts/pullthrough",
            "--namespace",
            NAMESPACE,
        ])
        .args(["-f", "tests/chart/required-values.yaml"])
        .args(args)
        .output()
        .expect("run helm");
    if !output.status.success() {
        return Some(Err(String::from_utf8_lossy(&output.stderr).into_owned()));
    }
    let text = String::from_utf8(output.stdout).expect("helm prints UTF-8");
    Some(Ok(Rendered::parse(&text)))
}

/// Renders, failing the test on a helm error; `None` when helm is missing. Renderings are
/// shared between tests: generating the chart's RSA keys is the slow part.
fn render(args: &[&str]) -> Option<Arc<Rendered>> {
    static CACHE: OnceLock<Mutex<HashMap<Vec<String>, Arc<Rendered>>>> = OnceLock::new();
    let key: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let cache = CACHE.get_or_init(Mutex::default);
    if let Some(hit) = cache.lock().unwrap().get(&key) {
        return Some(hit.clone());
    }
    let rendered = Arc::new(
        try_render(args)?.unwrap_or_else(|e| panic!("helm template {args:?} failed:\n{e}")),
    );
    cache.lock().unwrap().insert(key, rendered.clone());
    Some(rendered)
}

/// The objects of one rendering.
struct Rendered {
    docs: Vec<Value>,
}

impl Rendered {
    fn parse(text: &str) -> Self {
        let docs = serde_yaml_ng::Deserializer::from_str(text)
            .map(|doc| {
                let value: Value = serde::Deserialize::deserialize(doc).expect("valid YAML");
                value
            })
            .filter(|v| !v.is_null())
            .collect();
        Self { docs }
    }

    fn kinds(&self) -> BTreeSet<String> {
        self.docs
            .iter()
            .map(|d| d["kind"].as_str().unwrap().to_owned())
            .collect()
    }

    fn all(&self, kind: &str) -> Vec<&Value> {
        self.docs.iter().filter(|d| d["kind"] == kind).collect()
    }

    fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.docs
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
    }

    fn get(&self, kind: &str, name: &str) -> &Value {
        self.find(kind, name)
            .unwrap_or_else(|| panic!("no {kind} {name}; rendered: {:?}", self.names()))
    }

    fn names(&self) -> Vec<String> {
        self.docs
            .iter()
            .map(|d| format!("{}/{}", d["kind"], d["metadata"]["name"]))
            .collect()
    }

    /// The object as its API type; it must round-trip unchanged.
    fn typed<T: DeserializeOwned + Serialize>(&self, kind: &str, name: &str) -> T {
        typed(self.get(kind, name))
    }

    fn webhook_deployment(&self) -> Deployment {
        self.typed("Deployment", "pullthrough-webhook")
    }

    fn reconciler_deployment(&self) -> Deployment {
        self.typed("Deployment", "pullthrough-reconciler")
    }

    fn webhook(&self) -> MutatingWebhook {
        let config: MutatingWebhookConfiguration =
            self.typed("MutatingWebhookConfiguration", "pullthrough");
        let mut webhooks = config.webhooks.unwrap();
        assert_eq!(webhooks.len(), 1);
        webhooks.remove(0)
    }

    fn config(&self) -> Config {
        let map: ConfigMap = self.typed("ConfigMap", "pullthrough");
        let text = &map.data.unwrap()["config.yaml"];
        Config::load(text, &Overrides::default())
            .unwrap_or_else(|e| panic!("the rendered config.yaml is refused: {e}\n{text}"))
    }
}

fn typed<T: DeserializeOwned + Serialize>(value: &Value) -> T {
    let object: T = serde_json::from_value(value.clone()).unwrap_or_else(|e| {
        panic!(
            "{} does not fit its API type: {e}",
            value["metadata"]["name"]
        )
    });
    let back = serde_json::to_value(&object).unwrap();
    assert_eq!(
        &back, value,
        "{} {} has fields its API type does not know (misspelt or misplaced)",
        value["kind"], value["metadata"]["name"]
    );
    object
}

fn pod_spec(deployment: &Deployment) -> PodSpec {
    deployment.spec.clone().unwrap().template.spec.unwrap()
}

fn container(deployment: &Deployment) -> Container {
    let mut containers = pod_spec(deployment).containers;
    assert_eq!(containers.len(), 1);
    containers.remove(0)
}

/// The value following `flag` in the container's args.
fn arg<'a>(container: &'a Container, flag: &str) -> &'a str {
    let args = container.args.as_ref().unwrap();
    let at = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} missing from {args:?}"));
    &args[at + 1]
}

fn container_port(container: &Container, name: &str) -> i32 {
    container
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .find(|p| p.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no port {name}"))
        .container_port
}

fn pod_annotation(deployment: &Deployment, key: &str) -> String {
    deployment
        .spec
        .clone()
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap()[key]
        .clone()
}

/// Rules as (apiGroup, resource, resourceNames, verbs) rows, for exact comparison.
fn rule_rows(rules: &[PolicyRule]) -> BTreeSet<(String, String, Vec<String>, Vec<String>)> {
    let mut rows = BTreeSet::new();
    for rule in rules {
        for group in rule.api_groups.clone().unwrap() {
            for resource in rule.resources.clone().unwrap() {
                let mut verbs = rule.verbs.clone();
                verbs.sort();
                rows.insert((
                    group.clone(),
                    resource,
                    rule.resource_names.clone().unwrap_or_default(),
                    verbs,
                ));
            }
        }
    }
    rows
}

fn row(
    group: &str,
    resource: &str,
    names: &[&str],
    verbs: &[&str],
) -> (String, String, Vec<String>, Vec<String>) {
    let mut verbs: Vec<String> = verbs.iter().map(|v| (*v).to_owned()).collect();
    verbs.sort();
    (
        group.to_owned(),
        resource.to_owned(),
        names.iter().map(|n| (*n).to_owned()).collect(),
        verbs,
    )
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

// === the whole rendering ===

#[test]
fn default_rendering_has_every_object_and_each_fits_its_api_type() {
    let Some(r) = render(&[]) else { return };
    let expected: BTreeSet<String> = [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "MutatingWebhookConfiguration",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Secret",
        "Service",
        "ServiceAccount",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(r.kinds(), expected, "{:?}", r.names());
    assert_eq!(r.all("Deployment").len(), 2);
    assert_eq!(r.all("ServiceAccount").len(), 2);
    assert_eq!(r.all("Service").len(), 2);
    for doc in &r.docs {
        check_typed(doc);
    }
}

/// Reads a built-in object into its API type (which checks the round trip); other kinds are
/// custom resources.
fn check_typed(doc: &Value) {
    match doc["kind"].as_str().unwrap() {
        "ClusterRole" => drop(typed::<ClusterRole>(doc)),
        "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(doc)),
        "ConfigMap" => drop(typed::<ConfigMap>(doc)),
        "Deployment" => drop(typed::<Deployment>(doc)),
        "MutatingWebhookConfiguration" => drop(typed::<MutatingWebhookConfiguration>(doc)),
        "NetworkPolicy" => drop(typed::<NetworkPolicy>(doc)),
        "PodDisruptionBudget" => drop(typed::<PodDisruptionBudget>(doc)),
        "Role" => drop(typed::<Role>(doc)),
        "RoleBinding" => drop(typed::<RoleBinding>(doc)),
        "Secret" => drop(typed::<Secret>(doc)),
        "Service" => drop(typed::<Service>(doc)),
        "ServiceAccount" => drop(typed::<ServiceAccount>(doc)),
        "ValidatingAdmissionPolicy" => drop(typed::<ValidatingAdmissionPolicy>(doc)),
        "ValidatingAdmissionPolicyBinding" => drop(typed::<ValidatingAdmissionPolicyBinding>(doc)),
        "Certificate" | "Issuer" | "ServiceMonitor" => {
            let api = doc["apiVersion"].as_str().unwrap();
            assert!(
                api == "cert-manager.io/v1" || api == "monitoring.coreos.com/v1",
                "{api}"
            );
        }
        other => panic!("unexpected kind {other}"),
    }
}

#[test]
fn every_ci_value_set_renders_objects_that_fit_their_api_types() {
    let dir = root().join("charts/pullthrough/ci");
    let mut sets: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    sets.sort();
    assert!(sets.len() >= 4, "{sets:?}");
    for set in sets {
        let Some(r) = render(&["-f", set.to_str().unwrap()]) else {
            return;
        };
        for doc in &r.docs {
            check_typed(doc);
        }
        let map: ConfigMap = typed(
            r.all("ConfigMap")
                .first()
                .unwrap_or_else(|| panic!("{} renders no ConfigMap", set.display())),
        );
        Config::load(&map.data.unwrap()["config.yaml"], &Overrides::default())
            .unwrap_or_else(|e| panic!("{}: config.yaml refused: {e}", set.display()));
    }
}

#[test]
fn chart_app_version_is_the_crate_version() {
    let chart = std::fs::read_to_string(root().join("charts/pullthrough/Chart.yaml")).unwrap();
    let chart: Value = serde_yaml_ng::from_str(&chart).unwrap();
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
    assert!(
        chart["kubeVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with(">="))
    );
}

// === the webhook configuration ===

#[test]
fn webhook_configuration_is_fail_open_short_and_side_effect_free() {
    let Some(r) = render(&[]) else { return };
    let webhook = r.webhook();
    assert_eq!(webhook.admission_review_versions, strings(&["v1"]));
    assert_eq!(webhook.side_effects, "None");
    assert_eq!(webhook.failure_policy.as_deref(), Some("Ignore"));
    assert_eq!(webhook.timeout_seconds, Some(5));
    assert_eq!(webhook.reinvocation_policy.as_deref(), Some("IfNeeded"));
    assert_eq!(webhook.match_policy.as_deref(), Some("Equivalent"));
    let service = webhook.client_config.service.unwrap();
    assert_eq!(service.name, "pullthrough-webhook");
    assert_eq!(service.namespace, NAMESPACE);
    assert_eq!(service.path.as_deref(), Some("/mutate"));
    assert_eq!(service.port, Some(443));
    assert!(webhook.client_config.url.is_none());
}

#[test]
fn webhook_rules_cover_pods_and_ephemeral_containers_and_workloads_only_when_asked() {
    let Some(r) = render(&[]) else { return };
    let rules = |w: &MutatingWebhook| -> BTreeSet<(String, String, Vec<String>)> {
        let mut set = BTreeSet::new();
        for rule in w.rules.clone().unwrap() {
            assert_eq!(rule.api_versions, Some(strings(&["v1"])));
            assert_eq!(rule.scope.as_deref(), Some("Namespaced"));
            for group in rule.api_groups.unwrap() {
                for resource in rule.resources.clone().unwrap() {
                    set.insert((group.clone(), resource, rule.operations.clone().unwrap()));
                }
            }
        }
        set
    };
    let pods: BTreeSet<_> = [
        (
            String::new(),
            "pods".to_owned(),
            strings(&["CREATE", "UPDATE"]),
        ),
        (
            String::new(),
            "pods/ephemeralcontainers".to_owned(),
            strings(&["UPDATE"]),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(rules(&r.webhook()), pods);

    let Some(r) = render(&["--set", "webhook.workloadRules=true"]) else {
        return;
    };
    let mut with_workloads = pods.clone();
    for (group, resource) in [
        ("apps", "deployments"),
        ("apps", "statefulsets"),
        ("apps", "daemonsets"),
        ("apps", "replicasets"),
        ("batch", "jobs"),
        ("batch", "cronjobs"),
    ] {
        with_workloads.insert((
            group.to_owned(),
            resource.to_owned(),
            strings(&["CREATE", "UPDATE"]),
        ));
    }
    assert_eq!(rules(&r.webhook()), with_workloads);
}

#[test]
fn namespace_selector_opts_in_by_label_and_always_excludes_kube_system_and_its_own_namespace() {
    for (namespace, extra) in [
        ("pullthrough", vec![]),
        (
            "platform",
            vec!["--set", "webhook.excludeNamespaces={kube-system,tools}"],
        ),
    ] {
        let Some(helm) = helm() else { return };
        let output = Command::new(helm)
            .current_dir(root())
            .args([
                "template",
                RELEASE,
                "charts/pullthrough",
                "--namespace",
                namespace,
            ])
            .args(["-f", "tests/chart/required-values.yaml"])
            .args(&extra)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let r = Rendered::parse(&String::from_utf8(output.stdout).unwrap());
        let selector = r.webhook().namespace_selector.unwrap();
        assert!(selector.match_labels.is_none());
        let expressions = selector.match_expressions.unwrap();
        assert_eq!(expressions.len(), 2);
        assert_eq!(expressions[0].key, "pullthrough.dev/enabled");
        assert_eq!(expressions[0].operator, "In");
        assert_eq!(expressions[0].values, Some(strings(&["true"])));
        assert_eq!(expressions[1].key, "kubernetes.io/metadata.name");
        assert_eq!(expressions[1].operator, "NotIn");
        let excluded = expressions[1].values.clone().unwrap();
        assert!(excluded.contains(&"kube-system".to_owned()), "{excluded:?}");
        assert!(excluded.contains(&namespace.to_owned()), "{excluded:?}");
        let unique: BTreeSet<_> = excluded.iter().collect();
        assert_eq!(unique.len(), excluded.len(), "duplicates in {excluded:?}");
        if !extra.is_empty() {
            assert!(excluded.contains(&"tools".to_owned()), "{excluded:?}");
        }
    }
}

#[test]
fn objects_labelled_skip_are_never_sent_to_the_webhook() {
    let Some(r) = render(&[]) else { return };
    let selector = r.webhook().object_selector.unwrap();
    let expressions = selector.match_expressions.unwrap();
    assert_eq!(expressions.len(), 1);
    assert_eq!(expressions[0].key, "pullthrough.dev/skip");
    assert_eq!(expressions[0].operator, "NotIn");
    assert_eq!(expressions[0].values, Some(strings(&["true"])));
}

#[test]
fn failure_policy_and_timeout_follow_values_and_the_server_deadline_stays_below() {
    for (timeout, policy) in [(5, "Ignore"), (10, "Fail"), (1, "Ignore"), (30, "Fail")] {
        let timeout_arg = format!("webhook.timeoutSeconds={timeout}");
        let policy_arg = format!("webhook.failurePolicy={policy}");
        let Some(r) = render(&["--set", &timeout_arg, "--set", &policy_arg]) else {
            return;
        };
        let webhook = r.webhook();
        assert_eq!(webhook.timeout_seconds, Some(timeout));
        assert_eq!(webhook.failure_policy.as_deref(), Some(policy));
        let deadline = humantime::parse_duration(arg(
            &container(&r.webhook_deployment()),
            "--request-timeout",
        ))
        .unwrap();
        let limit = Duration::from_secs(u64::try_from(timeout).unwrap());
        assert!(deadline < limit, "{deadline:?} is not below {limit:?}");
        assert!(deadline >= Duration::from_millis(500), "{deadline:?}");
    }
}

// === RBAC and ServiceAccounts ===

#[test]
fn webhook_service_account_has_no_token_and_no_permissions() {
    let Some(r) = render(&[]) else { return };
    let account: ServiceAccount = r.typed("ServiceAccount", "pullthrough-webhook");
    assert_eq!(account.automount_service_account_token, Some(false));
    let spec = pod_spec(&r.webhook_deployment());
    assert_eq!(
        spec.service_account_name.as_deref(),
        Some("pullthrough-webhook")
    );
    assert_eq!(spec.automount_service_account_token, Some(false));
    for kind in ["RoleBinding", "ClusterRoleBinding"] {
        for binding in r.all(kind) {
            for subject in binding["subjects"].as_array().unwrap() {
                assert_ne!(
                    subject["name"], "pullthrough-webhook",
                    "{kind} binds the webhook"
                );
            }
        }
    }
}

#[test]
fn reconciler_rbac_is_exactly_pods_namespaces_events_its_lease_and_its_deployment() {
    let Some(r) = render(&[]) else { return };
    let cluster_role: ClusterRole = r.typed("ClusterRole", "pullthrough-reconciler");
    let expected: BTreeSet<_> = [
        row("", "pods", &[], &["get", "list", "watch"]),
        row("", "namespaces", &[], &["get", "list", "watch"]),
        row(
            "events.k8s.io",
            "events",
            &[],
            &["create", "patch", "list", "get"],
        ),
        row("apps", "deployments", &[], &["get"]),
    ]
    .into_iter()
    .collect();
    assert_eq!(rule_rows(&cluster_role.rules.unwrap()), expected);

    let role: Role = r.typed("Role", "pullthrough-reconciler");
    assert_eq!(role.metadata.namespace.as_deref(), Some(NAMESPACE));
    let lease = "pullthrough-reconciler";
    let expected: BTreeSet<_> = [
        // create cannot be narrowed to a name
        row("coordination.k8s.io", "leases", &[], &["create"]),
        row(
            "coordination.k8s.io",
            "leases",
            &[lease],
            &["get", "update", "patch"],
        ),
        row("apps", "deployments", &["pullthrough-reconciler"], &["get"]),
    ]
    .into_iter()
    .collect();
    assert_eq!(rule_rows(&role.rules.unwrap()), expected);

    let cluster_binding: ClusterRoleBinding =
        r.typed("ClusterRoleBinding", "pullthrough-reconciler");
    let binding: RoleBinding = r.typed("RoleBinding", "pullthrough-reconciler");
    assert_eq!(cluster_binding.role_ref.kind, "ClusterRole");
    assert_eq!(cluster_binding.role_ref.name, "pullthrough-reconciler");
    assert_eq!(binding.role_ref.kind, "Role");
    assert_eq!(binding.role_ref.name, "pullthrough-reconciler");
    for subjects in [cluster_binding.subjects.unwrap(), binding.subjects.unwrap()] {
        assert_eq!(subjects.len(), 1);
        assert_eq!(subjects[0].kind, "ServiceAccount");
        assert_eq!(subjects[0].name, "pullthrough-reconciler");
        assert_eq!(subjects[0].namespace.as_deref(), Some(NAMESPACE));
    }
    assert_eq!(r.all("ClusterRole").len(), 1);
    assert_eq!(r.all("Role").len(), 1);
}

#[test]
fn reconciler_may_patch_pods_only_with_the_fallback_enabled() {
    let Some(r) = render(&[
        "--set",
        "config.fallback.enabled=true",
        "--set",
        "config.fallback.after=5m",
    ]) else {
        return;
    };
    let cluster_role: ClusterRole = r.typed("ClusterRole", "pullthrough-reconciler");
    let expected: BTreeSet<_> = [
        row("", "pods", &[], &["get", "list", "watch"]),
        row("", "pods", &[], &["patch"]),
        row("", "namespaces", &[], &["get", "list", "watch"]),
        row(
            "events.k8s.io",
            "events",
            &[],
            &["create", "get", "list", "patch"],
        ),
        row("apps", "deployments", &[], &["get"]),
    ]
    .into_iter()
    .collect();
    assert_eq!(rule_rows(&cluster_role.rules.unwrap()), expected);
    // The program reads what the chart writes.
    let loaded = r.config();
    assert!(loaded.fallback.enabled);
    assert_eq!(loaded.fallback.after, std::time::Duration::from_mins(5));

    // Disabled explicitly: no patch.
    let Some(r) = render(&["--set", "config.fallback.enabled=false"]) else {
        return;
    };
    let cluster_role: ClusterRole = r.typed("ClusterRole", "pullthrough-reconciler");
    assert!(
        !rule_rows(&cluster_role.rules.unwrap())
            .iter()
            .any(
                |(_, resource, _, verbs)| resource == "pods" && verbs.contains(&"patch".to_owned())
            )
    );
}

const VAP_API: &str = "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy";

/// The guard's policy and binding in `r`, if it has them (one of each or none).
fn fallback_guard(
    r: &Rendered,
) -> Option<(ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding)> {
    let policies = r.all("ValidatingAdmissionPolicy");
    let bindings = r.all("ValidatingAdmissionPolicyBinding");
    assert_eq!(policies.len(), bindings.len(), "{:?}", r.names());
    assert!(policies.len() <= 1, "{:?}", r.names());
    let policy: ValidatingAdmissionPolicy = typed(policies.first()?);
    let binding: ValidatingAdmissionPolicyBinding = typed(bindings[0]);
    Some((policy, binding))
}

#[test]
fn the_fallback_guard_comes_with_the_fallback_where_the_cluster_serves_admission_policies() {
    let fallback = ["--set", "config.fallback.enabled=true"];
    let Some(r) = render(&["--api-versions", VAP_API]) else {
        return;
    };
    assert!(
        fallback_guard(&r).is_none(),
        "no fallback, no patch, no guard"
    );
    // helm template's built-in versions do not include ValidatingAdmissionPolicy: offline, the
    // guard needs --api-versions, like the policy.
    let r = render(&fallback).unwrap();
    assert!(fallback_guard(&r).is_none(), "{:?}", r.names());

    let r = render(&[fallback[0], fallback[1], "--api-versions", VAP_API]).unwrap();
    let (policy, binding) = fallback_guard(&r).expect("the guard");
    let name = "pullthrough-reconciler-pods";
    assert_eq!(policy.metadata.name.as_deref(), Some(name));
    let spec = policy.spec.unwrap();
    assert_eq!(spec.failure_policy.as_deref(), Some("Fail"));
    let conditions = spec.match_conditions.unwrap();
    assert_eq!(conditions.len(), 1);
    assert_eq!(
        conditions[0].expression,
        "request.userInfo.username == 'system:serviceaccount:pullthrough:pullthrough-reconciler'"
    );
    let rules = spec.match_constraints.unwrap().resource_rules.unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].resources, Some(strings(&["pods", "pods/*"])));
    assert_eq!(rules[0].operations, Some(strings(&["*"])));
    let binding = binding.spec.unwrap();
    assert_eq!(binding.policy_name.as_deref(), Some(name));
    assert_eq!(binding.validation_actions, Some(strings(&["Deny"])));
    // Everywhere: the policy itself refuses Pods outside the opted-in namespaces.
    assert!(binding.match_resources.is_none());

    // The ServiceAccount the reconciler runs as, whatever it is named.
    let r = render(&[
        fallback[0],
        fallback[1],
        "--api-versions",
        VAP_API,
        "--set",
        "reconciler.serviceAccount.name=fallback-sa",
    ])
    .unwrap();
    let (policy, _) = fallback_guard(&r).unwrap();
    assert!(
        policy.spec.unwrap().match_conditions.unwrap()[0]
            .expression
            .ends_with("'system:serviceaccount:pullthrough:fallback-sa'")
    );
    // Turned off on purpose.
    let r = render(&[
        fallback[0],
        fallback[1],
        "--api-versions",
        VAP_API,
        "--set",
        "guard.enabled=false",
    ])
    .unwrap();
    assert!(fallback_guard(&r).is_none());
    // The policy mode adds no guard of its own (docs/security.md says why), nor takes this one.
    let with_policy = [
        "--set",
        "policy.enabled=true",
        "--api-versions",
        POLICY_API,
        "--api-versions",
        VAP_API,
    ];
    let r = render(&with_policy).unwrap();
    assert!(fallback_guard(&r).is_none());
    let r = render(&[&with_policy[..], &fallback[..]].concat()).unwrap();
    assert!(fallback_guard(&r).is_some());
}

#[test]
fn reconciler_args_agree_with_the_webhook_selector_and_its_rbac() {
    let Some(r) = render(&[
        "--set",
        "namespaceLabel.key=example.com/cache",
        "--set",
        "namespaceLabel.value=on",
        "--set",
        "reconciler.leaseName=cache-leader",
    ]) else {
        return;
    };
    let deployment = r.reconciler_deployment();
    let c = container(&deployment);
    assert_eq!(c.args.as_ref().unwrap()[0], "reconciler");
    assert_eq!(arg(&c, "--config"), "/etc/pullthrough/config.yaml");
    assert_eq!(arg(&c, "--namespace-selector"), "example.com/cache=on");
    assert_eq!(arg(&c, "--lease-name"), "cache-leader");
    assert_eq!(
        arg(&c, "--deployment-name"),
        deployment.metadata.name.as_deref().unwrap()
    );
    assert_eq!(arg(&c, "--admin-listen"), "0.0.0.0:8080");
    assert_eq!(arg(&c, "--event-rate"), "10");
    assert_eq!(arg(&c, "--event-burst"), "50");
    assert_eq!(arg(&c, "--event-resend-interval"), "30m");
    let selector = r
        .webhook()
        .namespace_selector
        .unwrap()
        .match_expressions
        .unwrap();
    assert_eq!(selector[0].key, "example.com/cache");
    assert_eq!(selector[0].values, Some(strings(&["on"])));

    let env: BTreeMap<String, String> = c
        .env
        .unwrap()
        .into_iter()
        .map(|e| {
            let value = match e.value_from {
                Some(from) => from.field_ref.unwrap().field_path,
                None => e.value.unwrap(),
            };
            (e.name, value)
        })
        .collect();
    assert_eq!(env["POD_NAME"], "metadata.name");
    assert_eq!(env["POD_NAMESPACE"], "metadata.namespace");
    assert_eq!(env["MALLOC_ARENA_MAX"], "1");

    let role: Role = r.typed("Role", "pullthrough-reconciler");
    let names: BTreeSet<String> = role
        .rules
        .unwrap()
        .into_iter()
        .flat_map(|rule| rule.resource_names.unwrap_or_default())
        .collect();
    assert!(names.contains("cache-leader"), "{names:?}");
    assert!(names.contains("pullthrough-reconciler"), "{names:?}");
    let spec = pod_spec(&deployment);
    assert_eq!(
        spec.service_account_name.as_deref(),
        Some("pullthrough-reconciler")
    );
    assert_ne!(spec.automount_service_account_token, Some(false));
}

#[test]
fn irsa_role_annotates_both_service_accounts_and_explicit_annotations_win() {
    let role = "arn:aws:iam::123456789012:role/pullthrough";
    let role_arg = format!("aws.roleArn={role}");
    let Some(r) = render(&[
        "--set",
        &role_arg,
        "--set",
        "reconciler.serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::123456789012:role/other",
    ]) else {
        return;
    };
    let webhook: ServiceAccount = r.typed("ServiceAccount", "pullthrough-webhook");
    let reconciler: ServiceAccount = r.typed("ServiceAccount", "pullthrough-reconciler");
    let key = "eks.amazonaws.com/role-arn";
    assert_eq!(webhook.metadata.annotations.unwrap()[key], role);
    assert_eq!(
        reconciler.metadata.annotations.unwrap()[key],
        "arn:aws:iam::123456789012:role/other"
    );

    let Some(r) = render(&[]) else { return };
    let webhook: ServiceAccount = r.typed("ServiceAccount", "pullthrough-webhook");
    assert!(webhook.metadata.annotations.is_none());
}

#[test]
fn reconciler_can_be_left_out_entirely() {
    let Some(r) = render(&["--set", "reconciler.enabled=false"]) else {
        return;
    };
    assert!(r.find("Deployment", "pullthrough-reconciler").is_none());
    assert!(r.all("ClusterRole").is_empty());
    assert!(r.all("Role").is_empty());
    assert!(r.all("RoleBinding").is_empty());
    assert!(r.all("ClusterRoleBinding").is_empty());
    assert_eq!(r.all("ServiceAccount").len(), 1);
}

// === Pods ===

#[test]
fn both_deployments_run_as_numeric_non_root_with_a_read_only_root_and_no_capabilities() {
    let Some(r) = render(&[]) else { return };
    for deployment in [r.webhook_deployment(), r.reconciler_deployment()] {
        let spec = pod_spec(&deployment);
        let pod = spec.security_context.unwrap();
        assert_eq!(pod.run_as_non_root, Some(true));
        assert_eq!(pod.run_as_user, Some(65532));
        assert_eq!(pod.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let c = container(&deployment);
        let sc = c.security_context.unwrap();
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.run_as_user, Some(65532));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.privileged, None);
        let caps = sc.capabilities.unwrap();
        assert_eq!(caps.drop, Some(strings(&["ALL"])));
        assert_eq!(caps.add, None);
        assert_eq!(sc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let resources = c.resources.unwrap();
        let requests = resources.requests.unwrap();
        assert!(requests.contains_key("cpu") && requests.contains_key("memory"));
        assert!(resources.limits.unwrap().contains_key("memory"));
        assert!(spec.host_network.is_none());
        assert_eq!(spec.enable_service_links, Some(false));
        assert_eq!(
            c.image.as_deref(),
            Some(format!("{PUBLISHED_IMAGE}:{}", env!("CARGO_PKG_VERSION")).as_str())
        );
    }
}

#[test]
fn probes_hit_healthz_and_readyz_on_the_admin_port() {
    let Some(r) = render(&[]) else { return };
    for deployment in [r.webhook_deployment(), r.reconciler_deployment()] {
        let c = container(&deployment);
        assert_eq!(container_port(&c, "admin"), 8080);
        assert_eq!(arg(&c, "--admin-listen"), "0.0.0.0:8080");
        for (probe, path) in [
            (c.liveness_probe.clone().unwrap(), "/healthz"),
            (c.readiness_probe.clone().unwrap(), "/readyz"),
        ] {
            let get = probe.http_get.unwrap();
            assert_eq!(get.path.as_deref(), Some(path));
            assert_eq!(get.port, IntOrString::String("admin".to_owned()));
            assert!(get.scheme.is_none_or(|s| s == "HTTP"));
        }
    }
}

#[test]
fn webhook_args_point_at_the_mounted_config_and_certificate() {
    let Some(r) = render(&[]) else { return };
    let deployment = r.webhook_deployment();
    let c = container(&deployment);
    assert_eq!(c.args.as_ref().unwrap()[0], "webhook");
    assert_eq!(arg(&c, "--listen"), "0.0.0.0:8443");
    assert_eq!(container_port(&c, "https"), 8443);

    // Every file argument resolves through a mount to a key of the ConfigMap or the Secret.
    let mounts = c.volume_mounts.clone().unwrap();
    assert_eq!(mounts.len(), 1);
    assert_eq!(mounts[0].mount_path, "/etc/pullthrough");
    assert_eq!(mounts[0].read_only, Some(true));
    assert!(
        mounts[0].sub_path.is_none(),
        "subPath mounts never see updates"
    );
    let volume = pod_spec(&deployment)
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == mounts[0].name)
        .unwrap();
    let mut files = BTreeMap::new();
    for source in volume.projected.unwrap().sources.unwrap() {
        if let Some(map) = source.config_map {
            for item in map.items.unwrap() {
                files.insert(item.path, ("ConfigMap", map.name.clone(), item.key));
            }
        }
        if let Some(secret) = source.secret {
            for item in secret.items.unwrap() {
                files.insert(item.path, ("Secret", secret.name.clone(), item.key));
            }
        }
    }
    for (flag, kind, name, key) in [
        ("--config", "ConfigMap", "pullthrough", "config.yaml"),
        (
            "--tls-cert-file",
            "Secret",
            "pullthrough-webhook-tls",
            "tls.crt",
        ),
        (
            "--tls-key-file",
            "Secret",
            "pullthrough-webhook-tls",
            "tls.key",
        ),
    ] {
        let path = arg(&c, flag).strip_prefix("/etc/pullthrough/").unwrap();
        let (k, n, item) = &files[path];
        assert_eq!((*k, n.as_str(), item.as_str()), (kind, name, key), "{flag}");
        assert!(
            r.find(kind, name).is_some(),
            "{kind} {name} is not rendered"
        );
    }
}

#[test]
fn config_checksum_changes_with_the_config_and_only_with_it() {
    let Some(base) = render(&[]) else { return };
    let Some(changed) = render(&["--set", "config.digests=rewrite"]) else {
        return;
    };
    let Some(unrelated) = render(&["--set", "webhook.replicaCount=3"]) else {
        return;
    };
    for pick in [
        Rendered::webhook_deployment,
        Rendered::reconciler_deployment,
    ] {
        let sum = pod_annotation(&pick(base.as_ref()), "checksum/config");
        assert_eq!(sum.len(), 64, "{sum}");
        assert!(sum.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(
            sum,
            pod_annotation(&pick(changed.as_ref()), "checksum/config")
        );
        assert_eq!(
            sum,
            pod_annotation(&pick(unrelated.as_ref()), "checksum/config")
        );
    }
    assert_eq!(changed.config().digests, DigestPolicy::Rewrite);
}

#[test]
fn webhook_is_highly_available_by_default() {
    let Some(r) = render(&[]) else { return };
    let deployment = r.webhook_deployment();
    let spec = deployment.spec.clone().unwrap();
    assert_eq!(spec.replicas, Some(2));
    let rolling = spec.strategy.clone().unwrap().rolling_update.unwrap();
    assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(0)));
    let selector = spec.selector.match_labels.unwrap();
    let pdb: PodDisruptionBudget = r.typed("PodDisruptionBudget", "pullthrough-webhook");
    let pdb_spec = pdb.spec.unwrap();
    assert_eq!(pdb_spec.max_unavailable, Some(IntOrString::Int(1)));
    assert_eq!(pdb_spec.selector.unwrap().match_labels.unwrap(), selector);
    let constraints = pod_spec(&deployment).topology_spread_constraints.unwrap();
    let by_host = constraints
        .iter()
        .find(|c| c.topology_key == "kubernetes.io/hostname")
        .unwrap();
    assert_eq!(by_host.when_unsatisfiable, "DoNotSchedule");
    assert_eq!(by_host.max_skew, 1);
    for c in &constraints {
        assert_eq!(
            c.label_selector.clone().unwrap().match_labels.unwrap(),
            selector
        );
    }
    let reconciler = r.reconciler_deployment().spec.unwrap();
    assert_eq!(reconciler.replicas, Some(1));
    assert_ne!(reconciler.selector.match_labels.unwrap(), selector);
}

#[test]
fn host_network_moves_the_webhook_to_its_own_node_ports() {
    let Some(r) = render(&["--set", "webhook.hostNetwork.enabled=true"]) else {
        return;
    };
    let deployment = r.webhook_deployment();
    let spec = pod_spec(&deployment);
    assert_eq!(spec.host_network, Some(true));
    assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirstWithHostNet"));
    let c = container(&deployment);
    assert_eq!(arg(&c, "--listen"), "0.0.0.0:10443");
    assert_eq!(arg(&c, "--admin-listen"), "0.0.0.0:10080");
    assert_eq!(container_port(&c, "https"), 10443);
    assert_eq!(container_port(&c, "admin"), 10080);
    // The Service and the API server follow the port by name.
    let service: Service = r.typed("Service", "pullthrough-webhook");
    let https = service
        .spec
        .unwrap()
        .ports
        .unwrap()
        .into_iter()
        .find(|p| p.name.as_deref() == Some("https"))
        .unwrap();
    assert_eq!(https.port, 443);
    assert_eq!(
        https.target_port,
        Some(IntOrString::String("https".to_owned()))
    );
    // Old Pods hold the node ports, so a rollout cannot surge.
    let rolling = deployment
        .spec
        .unwrap()
        .strategy
        .unwrap()
        .rolling_update
        .unwrap();
    assert_eq!(rolling.max_surge, Some(IntOrString::Int(0)));
    assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(1)));
    // The reconciler is never called by the control plane and stays in the Pod network.
    assert!(pod_spec(&r.reconciler_deployment()).host_network.is_none());
}

#[test]
fn ipv6_bind_address_is_bracketed() {
    let Some(r) = render(&["--set", "bindAddress=::"]) else {
        return;
    };
    let c = container(&r.webhook_deployment());
    assert_eq!(arg(&c, "--listen"), "[::]:8443");
    let listen: std::net::SocketAddr = arg(&c, "--admin-listen").parse().unwrap();
    assert!(listen.is_ipv6());
}

// === the configuration file ===

#[test]
fn config_map_is_accepted_by_the_configuration_loader() {
    let Some(r) = render(&[]) else { return };
    let config = r.config();
    assert_eq!(config.account_id, "123456789012");
    assert_eq!(config.region, "eu-west-1");
    assert_eq!(
        config.registry_host,
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    );
    assert_eq!(config.registries.len(), 6);
    assert_eq!(config.workloads, WorkloadPolicy::Preview);
    assert_eq!(config.digests, DigestPolicy::WhenCached);
}

#[test]
fn config_values_reach_the_file_and_null_removes_a_default_registry() {
    let Some(r) = render(&[
        "--set",
        "config.registries.registry\\.gitlab\\.com=null",
        "--set",
        "config.registries.myregistry\\.azurecr\\.io=azure",
        "--set",
        "config.exclude.ownerKinds={Cluster}",
        "--set",
        "config.ruleCheck.interval=2m",
    ]) else {
        return;
    };
    let config = r.config();
    assert!(config.mapping("registry.gitlab.com").is_none());
    assert_eq!(
        config
            .mapping("myregistry.azurecr.io")
            .unwrap()
            .ecr_prefix(),
        "azure"
    );
    assert_eq!(config.exclude.owner_kinds, strings(&["Cluster"]));
    assert_eq!(config.rule_check.interval, Duration::from_mins(2));
}

#[test]
fn required_values_are_named_when_missing() {
    let Some(helm) = helm() else { return };
    for (missing, message) in [
        ("image.repository", "image.repository is required"),
        (
            "config.accountId",
            "config.accountId or aws.roleArn is required: with IRSA, aws.roleArn is enough",
        ),
        ("config.region", "config.region is required"),
    ] {
        let unset = format!("{missing}=");
        let output = Command::new(helm)
            .current_dir(root())
            .args([
                "template",
                RELEASE,
                "charts/pullthrough",
                "--namespace",
                NAMESPACE,
            ])
            .args(["-f", "tests/chart/required-values.yaml", "--set", &unset])
            .output()
            .unwrap();
        assert!(!output.status.success(), "rendered without {missing}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{stderr}");
    }
}

#[test]
fn the_account_comes_from_the_role_arn_when_left_out_and_an_explicit_one_wins() {
    let role = "aws.roleArn=arn:aws:iam::012345678901:role/pullthrough";
    let Some(r) = render(&["--set", "config.accountId=", "--set", role]) else {
        return;
    };
    // Written into the ConfigMap, so that what runs can be read in the cluster.
    let map: ConfigMap = r.typed("ConfigMap", "pullthrough");
    assert!(
        map.data.unwrap()["config.yaml"].contains("accountId: \"012345678901\""),
        "the account must stay a quoted string with its leading zero"
    );
    assert_eq!(r.config().account_id, "012345678901");

    let Some(r) = render(&["--set", role]) else {
        return;
    };
    assert_eq!(r.config().account_id, "123456789012");

    // Other partitions: the account is the fifth field of any IAM role ARN.
    let Some(r) = render(&[
        "--set",
        "config.accountId=",
        "--set",
        "config.region=cn-north-1",
        "--set",
        "aws.roleArn=arn:aws-cn:iam::210987654321:role/platform/pullthrough",
    ]) else {
        return;
    };
    assert_eq!(r.config().account_id, "210987654321");
}

/// `helm install pullthrough oci://…` commands of a Markdown file, each as its arguments, with
/// continuation lines joined.
fn oci_install_commands(markdown: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        if !line
            .trim_start()
            .starts_with(&format!("helm install {RELEASE} oci://"))
        {
            continue;
        }
        let mut command = line.trim().to_owned();
        while command.ends_with('\\') {
            command.pop();
            command.push(' ');
            command.push_str(lines.next().unwrap_or_default().trim());
        }
        assert!(
            !command.contains(['"', '\'', '$', '<', '…']),
            "an install command must be runnable as written: {command}"
        );
        commands.push(command.split_whitespace().map(str::to_owned).collect());
    }
    commands
}

/// The YAML blocks of a Markdown file that open with a `# <file name>` comment, by file name.
fn named_yaml_blocks(markdown: &str) -> HashMap<String, String> {
    let mut blocks = HashMap::new();
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "```yaml" {
            continue;
        }
        let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        if let Some(name) = body.first().and_then(|l| l.strip_prefix("# ")) {
            blocks.insert(name.trim().to_owned(), body.join("\n"));
        }
    }
    blocks
}

#[test]
fn the_documented_oci_install_renders_a_complete_install_of_the_published_image() {
    let Some(helm) = helm() else { return };
    let version = env!("CARGO_PKG_VERSION");
    let files = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for doc in [
        "README.md",
        "docs/install.md",
        "charts/pullthrough/README.md",
    ] {
        let text = std::fs::read_to_string(root().join(doc)).unwrap();
        let blocks = named_yaml_blocks(&text);
        for mut command in oci_install_commands(&text) {
            // `helm install NAME CHART FLAGS…`, rendered with the chart of this checkout.
            assert_eq!(command[3], PUBLISHED_CHART, "{doc}: {command:?}");
            for at in 4..command.len() - 1 {
                match command[at].as_str() {
                    "--version" => assert_eq!(
                        command[at + 1],
                        version,
                        "{doc}: the documented chart version is not the current one"
                    ),
                    // A values file the same document shows.
                    "-f" | "--values" => {
                        let name = &command[at + 1];
                        let body = blocks.get(name).unwrap_or_else(|| {
                            panic!("{doc}: no YAML block opens with `# {name}`")
                        });
                        let path = files.path().join(name);
                        std::fs::write(&path, body).unwrap();
                        command[at + 1] = path.to_str().unwrap().to_owned();
                    }
                    _ => {}
                }
            }
            let output = Command::new(helm)
                .current_dir(root())
                .args(["template", RELEASE, "charts/pullthrough"])
                .args(&command[4..])
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{doc}: {command:?} does not render:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let r = Rendered::parse(&String::from_utf8(output.stdout).unwrap());
            for doc in &r.docs {
                check_typed(doc);
            }
            for deployment in [r.webhook_deployment(), r.reconciler_deployment()] {
                assert_eq!(
                    container(&deployment).image.unwrap(),
                    format!("{PUBLISHED_IMAGE}:{version}")
                );
            }
            let config = r.config();
            assert_eq!(config.account_id, "123456789012", "{doc}");
            assert_eq!(config.region, "eu-west-1", "{doc}");
            for name in ["pullthrough-webhook", "pullthrough-reconciler"] {
                let account: ServiceAccount = r.typed("ServiceAccount", name);
                assert_eq!(
                    account.metadata.annotations.unwrap()["eks.amazonaws.com/role-arn"],
                    "arn:aws:iam::123456789012:role/pullthrough"
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 4,
        "the READMEs and the install guide show the OCI install ({checked} commands)"
    );
}

#[test]
fn the_published_chart_and_image_belong_to_one_owner() {
    let values = std::fs::read_to_string(root().join("charts/pullthrough/values.yaml")).unwrap();
    let values: Value = serde_yaml_ng::from_str(&values).unwrap();
    assert_eq!(values["image"]["repository"], PUBLISHED_IMAGE);
    assert_eq!(values["image"]["tag"], "", "the tag follows appVersion");
    let owner = |reference: &str| reference.split('/').nth(1).map(str::to_owned);
    assert_eq!(
        owner(PUBLISHED_IMAGE),
        owner(PUBLISHED_CHART.trim_start_matches("oci://"))
    );
}

#[test]
fn schema_refuses_unknown_keys_and_wrong_types() {
    let dir = root().join("tests/chart/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 6);
    for file in files {
        let Some(result) = try_render(&["-f", file.to_str().unwrap()]) else {
            return;
        };
        let Err(stderr) = result else {
            panic!("{} was accepted", file.display());
        };
        assert!(
            stderr.contains("don't meet the specifications of the schema"),
            "{} was refused, but not by the schema: {stderr}",
            file.display()
        );
    }
}

// === certificates ===

fn pem_certs(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

#[test]
fn helm_mode_generates_a_ca_the_webhook_configuration_trusts_for_the_service_name() {
    let Some(r) = render(&["--set", "tls.mode=helm"]) else {
        return;
    };
    assert!(r.all("Certificate").is_empty());
    let ca_bundle = r.webhook().client_config.ca_bundle.unwrap().0;
    let ca: Secret = r.typed("Secret", "pullthrough-webhook-ca");
    let serving: Secret = r.typed("Secret", "pullthrough-webhook-tls");
    assert_eq!(serving.type_.as_deref(), Some("kubernetes.io/tls"));
    let ca_data = ca.data.unwrap();
    let data = serving.data.unwrap();
    assert_eq!(ca_data["tls.crt"].0, ca_bundle);
    assert_eq!(data["ca.crt"].0, ca_bundle);
    assert!(data["tls.key"].0.starts_with(b"-----BEGIN"));

    // Verified as the API server does: the Service's DNS name, chained to the caBundle.
    let cert = &data["tls.crt"].0;
    assert!(is_trusted(&ca_bundle, cert, SERVICE_NAME));
    assert!(is_trusted(
        &ca_bundle,
        cert,
        "pullthrough-webhook.pullthrough.svc.cluster.local"
    ));
    assert!(!is_trusted(&ca_bundle, cert, "other.pullthrough.svc"));
    // And the webhook itself accepts the pair it will be given.
    pullthrough::tls::load_certified_key(cert, &data["tls.key"].0)
        .unwrap_or_else(|e| panic!("the webhook refuses the chart-made pair: {e}"));
}

#[test]
fn cert_manager_mode_issues_the_serving_secret_and_injects_its_ca() {
    let Some(r) = render(&["--set", "tls.mode=certManager"]) else {
        return;
    };
    assert!(r.all("Secret").is_empty());
    let config = r.get("MutatingWebhookConfiguration", "pullthrough");
    assert_eq!(
        config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "pullthrough/pullthrough-webhook"
    );
    assert!(r.webhook().client_config.ca_bundle.is_none());

    let serving = r.get("Certificate", "pullthrough-webhook");
    assert_eq!(serving["metadata"]["namespace"], NAMESPACE);
    assert_eq!(serving["spec"]["secretName"], "pullthrough-webhook-tls");
    let names: Vec<&str> = serving["spec"]["dnsNames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"pullthrough-webhook.pullthrough.svc"),
        "{names:?}"
    );
    assert_eq!(
        serving["spec"]["issuerRef"]["name"],
        "pullthrough-webhook-ca-issuer"
    );

    // self-signed Issuer -> CA Certificate -> CA Issuer -> serving Certificate
    let ca_issuer = r.get("Issuer", "pullthrough-webhook-ca-issuer");
    let ca = r.get("Certificate", "pullthrough-webhook-ca");
    assert_eq!(ca["spec"]["isCA"], true);
    assert_eq!(
        ca_issuer["spec"]["ca"]["secretName"],
        ca["spec"]["secretName"]
    );
    let root_issuer = ca["spec"]["issuerRef"]["name"].as_str().unwrap();
    assert!(r.get("Issuer", root_issuer)["spec"]["selfSigned"].is_object());
}

#[test]
fn cert_manager_mode_can_use_an_existing_issuer() {
    let Some(r) = render(&[
        "--set",
        "tls.mode=certManager",
        "--set",
        "tls.certManager.issuerRef.name=internal-ca",
        "--set",
        "tls.certManager.issuerRef.kind=ClusterIssuer",
    ]) else {
        return;
    };
    assert!(r.all("Issuer").is_empty());
    assert_eq!(r.all("Certificate").len(), 1);
    let serving = r.get("Certificate", "pullthrough-webhook");
    assert_eq!(serving["spec"]["issuerRef"]["name"], "internal-ca");
    assert_eq!(serving["spec"]["issuerRef"]["kind"], "ClusterIssuer");
}

#[test]
fn auto_mode_uses_cert_manager_only_where_the_cluster_serves_it() {
    let Some(with) = render(&["--api-versions", "cert-manager.io/v1"]) else {
        return;
    };
    assert_eq!(with.all("Certificate").len(), 2);
    assert!(with.all("Secret").is_empty());
    let Some(without) = render(&[]) else { return };
    assert!(without.all("Certificate").is_empty());
    assert_eq!(without.all("Secret").len(), 2);
}

#[test]
fn secret_mode_mounts_the_given_secret_and_trusts_the_given_ca() {
    let bundle = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==";
    let bundle_arg = format!("tls.secret.caBundle={bundle}");
    let Some(r) = render(&[
        "--set",
        "tls.mode=secret",
        "--set",
        "tls.secret.name=corp-serving-cert",
        "--set",
        &bundle_arg,
    ]) else {
        return;
    };
    assert!(r.all("Secret").is_empty());
    assert!(r.all("Certificate").is_empty());
    let ca_bundle = r.webhook().client_config.ca_bundle.unwrap().0;
    assert_eq!(ca_bundle, b"-----BEGIN CERTIFICATE-----\n");
    let volume = pod_spec(&r.webhook_deployment()).volumes.unwrap().remove(0);
    let secret = volume
        .projected
        .unwrap()
        .sources
        .unwrap()
        .into_iter()
        .find_map(|s| s.secret)
        .unwrap();
    assert_eq!(secret.name, "corp-serving-cert");

    let Some(Err(stderr)) = try_render(&["--set", "tls.mode=secret", "--set", "tls.secret.name=x"])
    else {
        panic!("secret mode rendered without a caBundle");
    };
    assert!(
        stderr.contains("tls.secret.caBundle is required"),
        "{stderr}"
    );
}

// === optional objects ===

#[test]
fn service_monitor_scrapes_both_metrics_ports() {
    let Some(r) = render(&["--set", "serviceMonitor.enabled=true"]) else {
        return;
    };
    let monitor = r.get("ServiceMonitor", "pullthrough");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap();
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    for name in ["pullthrough-webhook", "pullthrough-reconciler"] {
        let service: Service = r.typed("Service", name);
        let labels = service.metadata.labels.unwrap();
        for (k, v) in selector {
            assert_eq!(labels.get(k).map(String::as_str), v.as_str(), "{name} {k}");
        }
        let ports = service.spec.unwrap().ports.unwrap();
        let metrics = ports
            .iter()
            .find(|p| p.name.as_deref() == Some("metrics"))
            .unwrap();
        assert_eq!(
            metrics.target_port,
            Some(IntOrString::String("admin".to_owned()))
        );
    }
}

#[test]
fn network_policies_admit_the_webhook_port_and_the_admin_ports() {
    let Some(r) = render(&["--set", "networkPolicy.enabled=true"]) else {
        return;
    };
    let webhook: NetworkPolicy = r.typed("NetworkPolicy", "pullthrough-webhook");
    let spec = webhook.spec.unwrap();
    assert_eq!(spec.policy_types, Some(strings(&["Ingress"])));
    let ports: BTreeSet<String> = spec
        .ingress
        .unwrap()
        .into_iter()
        .flat_map(|rule| rule.ports.unwrap())
        .map(|p| match p.port.unwrap() {
            IntOrString::String(s) => s,
            IntOrString::Int(i) => i.to_string(),
        })
        .collect();
    assert_eq!(
        ports,
        ["admin".to_owned(), "https".to_owned()]
            .into_iter()
            .collect()
    );
    let _: NetworkPolicy = r.typed("NetworkPolicy", "pullthrough-reconciler");
}

// === upgrades: `lookup` against a stand-in API server ===

/// A minimal Kubernetes API over plain HTTP on loopback, enough for `helm install
/// --dry-run=server`: version and discovery for the chart's kinds, objects from `objects` by
/// path, 404 for the rest. It lets the chart's `lookup` of its own Secrets be exercised as on
/// an upgrade.
struct FakeApi {
    objects: Arc<Mutex<HashMap<String, Value>>>,
    home: tempfile::TempDir,
}

impl FakeApi {
    fn start(cert_manager: bool) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let objects: Arc<Mutex<HashMap<String, Value>>> = Arc::default();
        let mut groups = vec![
            ("apps/v1", vec![("deployments", "Deployment", true)]),
            (
                "policy/v1",
                vec![("poddisruptionbudgets", "PodDisruptionBudget", true)],
            ),
            (
                "rbac.authorization.k8s.io/v1",
                vec![
                    ("clusterroles", "ClusterRole", false),
                    ("clusterrolebindings", "ClusterRoleBinding", false),
                    ("roles", "Role", true),
                    ("rolebindings", "RoleBinding", true),
                ],
            ),
            (
                "admissionregistration.k8s.io/v1",
                vec![(
                    "mutatingwebhookconfigurations",
                    "MutatingWebhookConfiguration",
                    false,
                )],
            ),
        ];
        if cert_manager {
            groups.push((
                "cert-manager.io/v1",
                vec![
                    ("certificates", "Certificate", true),
                    ("issuers", "Issuer", true),
                ],
            ));
        }
        let core = vec![
            ("secrets", "Secret", true),
            ("configmaps", "ConfigMap", true),
            ("serviceaccounts", "ServiceAccount", true),
            ("services", "Service", true),
        ];
        let resources = |group_version: &str, list: &[(&str, &str, bool)]| {
            serde_json::json!({
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": group_version,
                "resources": list.iter().map(|(name, kind, namespaced)| serde_json::json!({
                    "name": name, "singularName": "", "namespaced": namespaced, "kind": kind,
                    "verbs": ["get", "list", "create", "update", "patch", "delete"],
                })).collect::<Vec<_>>(),
            })
        };
        let mut fixed: HashMap<String, Value> = HashMap::new();
        fixed.insert(
            "/version".to_owned(),
            serde_json::json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0"}),
        );
        fixed.insert(
            "/api".to_owned(),
            serde_json::json!({"kind": "APIVersions", "versions": ["v1"]}),
        );
        fixed.insert("/api/v1".to_owned(), resources("v1", &core));
        let mut group_list = Vec::new();
        for (group_version, list) in &groups {
            let (group, version) = group_version.split_once('/').unwrap();
            let gv = serde_json::json!({"groupVersion": group_version, "version": version});
            group_list.push(serde_json::json!({
                "name": group, "versions": [gv.clone()], "preferredVersion": gv,
            }));
            fixed.insert(
                format!("/apis/{group_version}"),
                resources(group_version, list),
            );
        }
        fixed.insert(
            "/apis".to_owned(),
            serde_json::json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": group_list}),
        );

        let store = objects.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (fixed, store) = (fixed.clone(), store.clone());
                std::thread::spawn(move || serve_connection(stream, &fixed, &store));
            }
        });

        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join("kubeconfig"),
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
                 clusters: [{{name: fake, cluster: {{server: 'http://{addr}'}}}}]\n\
                 contexts: [{{name: fake, context: {{cluster: fake, user: fake}}}}]\n\
                 users: [{{name: fake, user: {{}}}}]\n"
            ),
        )
        .unwrap();
        Self { objects, home }
    }

    /// Stores a Secret where a GET finds it, owned by the release as Helm leaves it.
    fn put(&self, object: &Value) {
        assert_eq!(object["kind"], "Secret");
        let path = format!(
            "/api/v1/namespaces/{}/secrets/{}",
            object["metadata"]["namespace"].as_str().unwrap(),
            object["metadata"]["name"].as_str().unwrap()
        );
        let mut stored = object.clone();
        stored["metadata"]["annotations"] = serde_json::json!({
            "meta.helm.sh/release-name": RELEASE,
            "meta.helm.sh/release-namespace": NAMESPACE,
        });
        self.objects.lock().unwrap().insert(path, stored);
    }

    fn remove(&self, namespace: &str, name: &str) {
        let path = format!("/api/v1/namespaces/{namespace}/secrets/{name}");
        self.objects.lock().unwrap().remove(&path);
    }

    /// What `helm install --dry-run=server` (and so `helm upgrade`) would apply.
    fn install(&self, helm: &Path, args: &[&str]) -> Rendered {
        let home = self.home.path();
        let output = Command::new(helm)
            .current_dir(root())
            .env("KUBECONFIG", home.join("kubeconfig"))
            .env("KUBECACHEDIR", home.join("kube-cache"))
            .env("HELM_CACHE_HOME", home.join("helm-cache"))
            .env("HELM_CONFIG_HOME", home.join("helm-config"))
            .env("HELM_DATA_HOME", home.join("helm-data"))
            .args([
                "install",
                RELEASE,
                "charts/pullthrough",
                "--namespace",
                NAMESPACE,
            ])
            .args([
                "--dry-run=server",
                "--disable-openapi-validation",
                "-o",
                "json",
            ])
            .args(["-f", "tests/chart/required-values.yaml"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "helm install --dry-run=server: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let release: Value = serde_json::from_slice(&output.stdout).unwrap();
        Rendered::parse(release["manifest"].as_str().unwrap())
    }
}

fn serve_connection(
    stream: std::net::TcpStream,
    fixed: &HashMap<String, Value>,
    store: &Mutex<HashMap<String, Value>>,
) {
    use std::io::BufRead as _;
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut content_length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                content_length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; content_length];
        if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let path = target.split('?').next().unwrap_or("");
        let found = if method == "GET" {
            fixed
                .get(path)
                .cloned()
                .or_else(|| store.lock().unwrap().get(path).cloned())
                .or_else(|| {
                    // Helm lists its release records, kept in Secrets.
                    path.ends_with("/secrets").then(
                        || serde_json::json!({"kind": "SecretList", "apiVersion": "v1", "items": []}),
                    )
                })
        } else {
            None
        };
        let (status, body) = match found {
            Some(object) => ("200 OK", object),
            None => (
                "404 Not Found",
                serde_json::json!({
                    "kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": "NotFound", "code": 404,
                }),
            ),
        };
        let body = body.to_string();
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// Whether `cert_pem` chains to `ca_bundle` for `name`, as the API server checks it.
fn is_trusted(ca_bundle: &[u8], cert_pem: &[u8], name: &str) -> bool {
    let mut roots = rustls::RootCertStore::empty();
    for cert in pem_certs(ca_bundle) {
        roots.add(cert).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
    let chain = pem_certs(cert_pem);
    verifier
        .verify_server_cert(
            &chain[0],
            &chain[1..],
            &ServerName::try_from(name.to_owned()).unwrap(),
            &[],
            UnixTime::now(),
        )
        .is_ok()
}

fn serving_cert(secret: &Value) -> Vec<u8> {
    typed::<Secret>(secret).data.unwrap()["tls.crt"].0.clone()
}

const SERVICE_NAME: &str = "pullthrough-webhook.pullthrough.svc";

#[test]
fn helm_mode_keeps_its_ca_and_certificate_across_upgrades() {
    let Some(helm) = helm() else { return };
    let api = FakeApi::start(false);
    let args = ["--set", "tls.mode=helm"];

    // First install: nothing to read back, a new CA and certificate.
    let first = api.install(helm, &args);
    let ca = first.get("Secret", "pullthrough-webhook-ca").clone();
    let serving = first.get("Secret", "pullthrough-webhook-tls").clone();
    let bundle = first.webhook().client_config.ca_bundle.unwrap().0;
    assert!(is_trusted(&bundle, &serving_cert(&serving), SERVICE_NAME));

    // An upgrade reads both back and changes nothing.
    api.put(&ca);
    api.put(&serving);
    let second = api.install(helm, &args);
    assert_eq!(second.get("Secret", "pullthrough-webhook-ca"), &ca);
    assert_eq!(second.get("Secret", "pullthrough-webhook-tls"), &serving);
    assert_eq!(second.webhook().client_config.ca_bundle.unwrap().0, bundle);

    // Rotation: without the serving Secret, the kept CA signs a new certificate, and the
    // caBundle the API server trusts stays as it is.
    api.remove(NAMESPACE, "pullthrough-webhook-tls");
    let third = api.install(helm, &args);
    assert_eq!(third.get("Secret", "pullthrough-webhook-ca"), &ca);
    let renewed = third.get("Secret", "pullthrough-webhook-tls");
    assert_ne!(renewed["data"]["tls.key"], serving["data"]["tls.key"]);
    assert_eq!(third.webhook().client_config.ca_bundle.unwrap().0, bundle);
    assert!(is_trusted(&bundle, &serving_cert(renewed), SERVICE_NAME));
    let renewed: Secret = typed(renewed);
    let data = renewed.data.unwrap();
    pullthrough::tls::load_certified_key(&data["tls.crt"].0, &data["tls.key"].0)
        .unwrap_or_else(|e| panic!("the webhook refuses the renewed pair: {e}"));
}

#[test]
fn auto_mode_reads_the_cluster_and_keeps_chart_made_certificates() {
    let Some(helm) = helm() else { return };
    // A cluster with cert-manager: auto picks it.
    let api = FakeApi::start(true);
    let fresh = api.install(helm, &[]);
    assert_eq!(fresh.all("Certificate").len(), 2);
    assert!(fresh.all("Secret").is_empty());

    // A release installed before cert-manager keeps the certificates the chart made.
    let earlier = FakeApi::start(false).install(helm, &[]);
    assert!(earlier.all("Certificate").is_empty());
    let ca = earlier.get("Secret", "pullthrough-webhook-ca");
    api.put(ca);
    api.put(earlier.get("Secret", "pullthrough-webhook-tls"));
    let upgraded = api.install(helm, &[]);
    assert!(upgraded.all("Certificate").is_empty());
    assert_eq!(upgraded.get("Secret", "pullthrough-webhook-ca"), ca);
}

// === the chart's arguments against the program ===

/// The container's command line as `pullthrough` would receive it.
fn command_line(c: &Container) -> Vec<String> {
    std::iter::once("pullthrough".to_owned())
        .chain(c.args.clone().unwrap())
        .collect()
}

#[test]
fn webhook_args_parse_as_the_program_reads_them() {
    use clap::Parser as _;
    use pullthrough::cli::{Cli, Command as Sub};
    let Some(r) = render(&["--set", "webhook.timeoutSeconds=3"]) else {
        return;
    };
    let cli = Cli::try_parse_from(command_line(&container(&r.webhook_deployment())))
        .unwrap_or_else(|e| panic!("pullthrough refuses the chart's webhook args: {e}"));
    let Sub::Webhook(args) = cli.command else {
        panic!("not the webhook subcommand");
    };
    assert_eq!(
        args.config.config.as_deref(),
        Some(Path::new("/etc/pullthrough/config.yaml"))
    );
    assert_eq!(
        args.tls_cert_file.as_deref(),
        Some(Path::new("/etc/pullthrough/tls/tls.crt"))
    );
    assert_eq!(
        args.tls_key_file.as_deref(),
        Some(Path::new("/etc/pullthrough/tls/tls.key"))
    );
    assert_eq!(args.listen.port(), 8443);
    assert_eq!(args.admin_listen.port(), 8080);
    assert_eq!(args.request_timeout, Duration::from_secs(2));
}

#[test]
fn reconciler_args_parse_as_the_program_reads_them() {
    use clap::Parser as _;
    use pullthrough::cli::Cli;
    let Some(r) = render(&[]) else { return };
    let line = command_line(&container(&r.reconciler_deployment()));
    if let Err(e) = Cli::try_parse_from(&line) {
        panic!("pullthrough refuses the chart's reconciler args {line:?}: {e}");
    }
}

// === the modes: webhook, policy, both ===

const POLICY_API: &str = "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy";

#[test]
fn policy_mode_binds_the_reconcilers_policy_to_opted_in_pods_and_lets_it_write_only_that() {
    use clap::Parser as _;
    use pullthrough::cli::{Cli, Command as Sub};
    let Some(r) = render(&["--set", "policy.enabled=true", "--api-versions", POLICY_API]) else {
        return;
    };
    let binding = r.get("MutatingAdmissionPolicyBinding", "pullthrough");
    assert_eq!(binding["spec"]["policyName"], "pullthrough");
    let m = &binding["spec"]["matchResources"];
    assert_eq!(
        m["resourceRules"][0]["resources"],
        serde_json::json!(["pods", "pods/ephemeralcontainers"])
    );
    let selector = &m["namespaceSelector"]["matchExpressions"];
    assert_eq!(selector[0]["key"], "pullthrough.dev/enabled");
    assert_eq!(
        selector[1]["values"],
        serde_json::json!(["kube-system", NAMESPACE])
    );
    assert_eq!(
        m["objectSelector"]["matchExpressions"][0]["key"],
        "pullthrough.dev/skip"
    );
    // The binding is the chart's: the reconciler is not let near bindings.
    let role: ClusterRole = r.typed("ClusterRole", "pullthrough-reconciler");
    let rows = rule_rows(role.rules.as_deref().unwrap_or_default());
    let on_policies: Vec<_> = rows
        .iter()
        .filter(|(group, ..)| group == "admissionregistration.k8s.io")
        .collect();
    assert_eq!(on_policies.len(), 2, "{on_policies:?}");
    assert!(
        on_policies
            .iter()
            .all(|(_, resource, ..)| resource == "mutatingadmissionpolicies")
    );
    assert!(
        on_policies
            .iter()
            .any(|(_, _, names, verbs)| names == &strings(&["pullthrough"])
                && verbs == &strings(&["get", "patch"]))
    );
    // The reconciler keeps it with the chart's settings.
    let line = command_line(&container(&r.reconciler_deployment()));
    let cli = Cli::try_parse_from(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    let Sub::Reconciler(args) = cli.command else {
        panic!("not the reconciler");
    };
    assert!(args.manage_policy);
    assert_eq!(args.policy_name, "pullthrough");
    assert_eq!(args.policy_max_digests, 500);
    // The webhook is not called for Pods the policy rewrote completely.
    let webhook = r.webhook();
    let conditions = webhook.match_conditions.unwrap();
    assert_eq!(conditions.len(), 1);
    assert!(
        conditions[0]
            .expression
            .contains("'123456789012.dkr.ecr.eu-west-1.amazonaws.com/'"),
        "{}",
        conditions[0].expression
    );
}

#[test]
fn the_default_has_no_policy_and_the_webhook_is_called_for_every_pod() {
    let Some(r) = render(&[]) else { return };
    assert!(r.all("MutatingAdmissionPolicyBinding").is_empty());
    assert!(r.webhook().match_conditions.is_none());
    let role: ClusterRole = r.typed("ClusterRole", "pullthrough-reconciler");
    assert!(
        rule_rows(role.rules.as_deref().unwrap_or_default())
            .iter()
            .all(|(group, ..)| group != "admissionregistration.k8s.io")
    );
}

#[test]
fn policy_alone_is_a_lighter_install_without_webhook_service_or_certificates() {
    let Some(r) = render(&[
        "--set",
        "policy.enabled=true",
        "--set",
        "webhook.enabled=false",
        "--api-versions",
        POLICY_API,
    ]) else {
        return;
    };
    let kinds = r.kinds();
    for gone in [
        "MutatingWebhookConfiguration",
        "Secret",
        "PodDisruptionBudget",
    ] {
        assert!(!kinds.contains(gone), "{gone} in {kinds:?}");
    }
    assert!(r.find("Deployment", "pullthrough-webhook").is_none());
    assert!(r.find("Service", "pullthrough-webhook").is_none());
    assert!(r.find("Deployment", "pullthrough-reconciler").is_some());
    assert!(kinds.contains("MutatingAdmissionPolicyBinding"));
}

#[test]
fn policy_mode_refuses_to_render_where_it_cannot_work() {
    let Some(refused) = try_render(&["--set", "policy.enabled=true"]) else {
        return;
    };
    let e = refused.err().expect("rendered without the API");
    assert!(
        e.contains("admissionregistration.k8s.io/v1 MutatingAdmissionPolicy"),
        "{e}"
    );
    assert!(e.contains("--api-versions"), "{e}");
    let e = try_render(&["--set", "webhook.enabled=false"])
        .unwrap()
        .err()
        .expect("rendered with nothing to rewrite");
    assert!(e.contains("nothing would rewrite images"), "{e}");
    let e = try_render(&[
        "--set",
        "policy.enabled=true",
        "--set",
        "reconciler.enabled=false",
        "--api-versions",
        POLICY_API,
    ])
    .unwrap()
    .err()
    .expect("rendered without the reconciler");
    assert!(e.contains("needs reconciler.enabled"), "{e}");
}

/// Runs the real binary with the chart's webhook args, configuration and generated
/// certificate (paths moved to a temporary directory, loopback ports), until it is ready.
#[test]
fn webhook_starts_on_what_the_chart_gives_it() {
    let ports: Vec<u16> = (0..2)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        })
        .collect();
    let port = format!("webhook.port={}", ports[0]);
    let admin = format!("webhook.adminPort={}", ports[1]);
    let Some(r) = render(&[
        "--set",
        "tls.mode=helm",
        "--set",
        "bindAddress=127.0.0.1",
        "--set",
        &port,
        "--set",
        &admin,
        // No AWS here: the rule check would only log its failures.
        "--set",
        "config.ruleCheck.enabled=false",
    ]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tls")).unwrap();
    let map: ConfigMap = r.typed("ConfigMap", "pullthrough");
    std::fs::write(
        dir.path().join("config.yaml"),
        &map.data.unwrap()["config.yaml"],
    )
    .unwrap();
    let secret: Secret = r.typed("Secret", "pullthrough-webhook-tls");
    let data = secret.data.unwrap();
    std::fs::write(dir.path().join("tls/tls.crt"), &data["tls.crt"].0).unwrap();
    std::fs::write(dir.path().join("tls/tls.key"), &data["tls.key"].0).unwrap();

    let mount = dir.path().to_str().unwrap();
    let args: Vec<String> = container(&r.webhook_deployment())
        .args
        .unwrap()
        .into_iter()
        .map(|a| a.replace("/etc/pullthrough", mount))
        .collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pullthrough"))
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut ready = false;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
            panic!("the webhook exited ({status}) on the chart's args {args:?}:\n{stderr}");
        }
        if admin_get(ports[1], "/readyz").is_some_and(|s| s.starts_with("HTTP/1.1 200")) {
            ready = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Call it as the API server would: the Service's name, checked against the caBundle.
    let mutated = ready.then(|| {
        let ca_bundle = r.webhook().client_config.ca_bundle.unwrap().0;
        let review =
            std::fs::read(root().join("tests/fixtures/admission/pod-create-simple.json")).unwrap();
        post_mutate(ports[0], &ca_bundle, &review)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(ready, "the webhook did not become ready on {args:?}");
    let review = mutated.unwrap();
    let response = &review["response"];
    assert_eq!(response["allowed"], true, "{review}");
    assert_eq!(response["patchType"], "JSONPatch", "{review}");
    let patch = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        response["patch"].as_str().unwrap(),
    )
    .unwrap();
    let patch = String::from_utf8(patch).unwrap();
    assert!(
        patch
            .contains("123456789012.dkr.ecr.eu-west-1.amazonaws.com/docker-hub/library/nginx:1.27"),
        "{patch}"
    );
}

/// POSTs an AdmissionReview to `/mutate` over TLS, trusting only `ca_bundle` and expecting
/// the webhook Service's name, and returns the decoded answer.
fn post_mutate(port: u16, ca_bundle: &[u8], review: &[u8]) -> Value {
    use std::io::Read as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in pem_certs(ca_bundle) {
        roots.add(cert).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connection = rustls::ClientConnection::new(
        Arc::new(config),
        ServerName::try_from(SERVICE_NAME).unwrap(),
    )
    .unwrap();
    let socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(connection, socket);
    write!(
        tls,
        "POST /mutate HTTP/1.1\r\nHost: {SERVICE_NAME}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        review.len()
    )
    .unwrap();
    tls.write_all(review).unwrap();
    let mut response = Vec::new();
    // The server may close without close_notify once the response is out.
    let _ = tls.read_to_end(&mut response);
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// A plain HTTP GET on the loopback admin port; the response head, or `None`.
fn admin_get(port: u16, path: &str) -> Option<String> {
    use std::io::Read as _;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}
