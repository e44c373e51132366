//! The MutatingAdmissionPolicy that makes the API server do pullthrough's rewrite, planned
//! purely from the configuration, the rule status and the digests confirmed in the cache.
//!
//! The policy carries everything it knows in its own text (no parameter object): the routes of
//! the registries whose rule is usable, the exclusions, and a bounded set of confirmed digests.
//! The binding, which bounds whatever the policy says (Pods and their ephemeral containers, in
//! opted-in namespaces, never `kube-system` or pullthrough's own), is planned here too; in a
//! cluster the chart owns it and the reconciler writes only the policy.

pub mod apply;
pub mod cel;
pub mod command;
pub mod keep;

use serde_json::{Value, json};

use crate::config::{Config, DigestPolicy, UnknownRules};
use crate::digests::DigestSnapshot;
use crate::reference::{DOCKER_HUB, Parts};
use crate::rules::RuleSnapshot;

use cel::{Knowledge, Route};

/// Annotation of the policy: a fingerprint of its spec, so that a replica that gains the Lease
/// knows whether the policy in the cluster is already the one it would apply.
pub const FINGERPRINT_ANNOTATION: &str = "pullthrough.dev/fingerprint";
/// Annotation of the policy: the registries it rewrites, comma-separated.
pub const REGISTRIES_ANNOTATION: &str = "pullthrough.dev/registries";

/// The API group and version of the objects.
pub const API_VERSION: &str = "admissionregistration.k8s.io/v1";
/// The policy's and the binding's default name.
pub const DEFAULT_NAME: &str = "pullthrough";
/// Most confirmed digests the policy carries: each costs about 110 bytes of the object and one
/// map entry the API server builds per request. Past it, the keys that sort last are left out
/// (a stable choice, so that the policy does not churn) and the webhook, which knows them all,
/// rewrites those pinned images when it runs.
pub const DEFAULT_MAX_DIGESTS: usize = 500;

/// What the objects are made with, besides the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Name of the policy and of its binding.
    pub name: String,
    /// Opt-in namespace selector, `key=value[,key=value]` or `key` (exists).
    pub namespace_selector: String,
    /// Namespaces never touched besides `kube-system`: pullthrough's own.
    pub excluded_namespaces: Vec<String>,
    /// `Ignore` (an error in the policy never blocks a Pod) or `Fail`.
    pub failure_policy: FailurePolicy,
    /// Bound on the confirmed digests carried.
    pub max_digests: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            name: DEFAULT_NAME.to_owned(),
            namespace_selector: "pullthrough.dev/enabled=true".to_owned(),
            excluded_namespaces: vec!["pullthrough".to_owned()],
            failure_policy: FailurePolicy::Ignore,
            max_digests: DEFAULT_MAX_DIGESTS,
        }
    }
}

/// The policy's `failurePolicy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum FailurePolicy {
    /// Admit the Pod unchanged when the policy cannot be evaluated.
    #[default]
    Ignore,
    /// Refuse the Pod when the policy cannot be evaluated.
    Fail,
}

impl FailurePolicy {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ignore => "Ignore",
            Self::Fail => "Fail",
        }
    }
}

/// The planned objects and what they say, for people and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The `MutatingAdmissionPolicy`.
    pub policy: Value,
    /// The `MutatingAdmissionPolicyBinding`.
    pub binding: Value,
    /// Mapped registries the policy rewrites now (their rule is usable), sorted.
    pub registries: Vec<String>,
    /// Confirmed digests carried.
    pub digests: usize,
    /// Confirmed digests left out by the bound.
    pub digests_left_out: usize,
}

impl Plan {
    /// The policy's fingerprint.
    pub fn fingerprint(&self) -> &str {
        self.policy["metadata"]["annotations"][FINGERPRINT_ANNOTATION]
            .as_str()
            .unwrap_or_default()
    }
}

/// An invalid `--namespace-selector`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a namespace label selector (key=value or key, comma-separated)")]
pub struct SelectorError(String);

/// Checks a namespace selector the way [`plan`] reads it.
pub fn check_selector(text: &str) -> Result<(), SelectorError> {
    namespace_selector(text, &[]).map(|_| ())
}

/// Plans the policy and its binding.
pub fn plan(
    config: &Config,
    rules: &RuleSnapshot,
    digests: &DigestSnapshot,
    options: &Options,
) -> Result<Plan, SelectorError> {
    let selector = namespace_selector(&options.namespace_selector, &options.excluded_namespaces)?;
    let (knowledge, registries, left_out) = knowledge(config, rules, digests, options.max_digests);
    let compiled = knowledge.compile();
    let resource_rules = json!([{
        "apiGroups": [""],
        "apiVersions": ["v1"],
        "operations": ["CREATE", "UPDATE"],
        "resources": ["pods", "pods/ephemeralcontainers"],
    }]);
    let named = |n: &[cel::Named]| -> Vec<Value> {
        n.iter()
            .map(|v| json!({"name": v.name, "expression": v.expression}))
            .collect()
    };
    let labels = json!({
        "app.kubernetes.io/name": "pullthrough",
        "app.kubernetes.io/managed-by": "pullthrough",
    });
    let spec = json!({
            "failurePolicy": options.failure_policy.as_str(),
            "reinvocationPolicy": "IfNeeded",
            "matchConstraints": {
                "namespaceSelector": selector,
                "resourceRules": resource_rules,
            },
            "matchConditions": named(&compiled.match_conditions),
            "variables": named(&compiled.variables),
            "mutations": [{
                "patchType": "JSONPatch",
                "jsonPatch": {"expression": compiled.patch},
            }],
    });
    let policy = json!({
        "apiVersion": API_VERSION,
        "kind": "MutatingAdmissionPolicy",
        "metadata": {
            "name": options.name,
            "labels": labels,
            "annotations": {
                REGISTRIES_ANNOTATION: registries.join(","),
                "pullthrough.dev/digests": knowledge.cached.len().to_string(),
                FINGERPRINT_ANNOTATION: fingerprint(&spec),
            },
        },
        "spec": spec,
    });
    let binding = json!({
        "apiVersion": API_VERSION,
        "kind": "MutatingAdmissionPolicyBinding",
        "metadata": {"name": options.name, "labels": labels},
        "spec": {
            "policyName": options.name,
            "matchResources": {
                "namespaceSelector": selector,
                "resourceRules": resource_rules,
            },
        },
    });
    Ok(Plan {
        policy,
        binding,
        registries,
        digests: knowledge.cached.len(),
        digests_left_out: left_out,
    })
}

/// FNV-1a over the spec's JSON text: stable across builds and platforms, which a fingerprint
/// compared between replicas and releases must be.
fn fingerprint(spec: &Value) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in spec.to_string().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// What the CEL is compiled from: the usable routes, the exclusions, the carried digests.
/// Returns the registries rewritten and the digests left out by the bound.
fn knowledge(
    config: &Config,
    rules: &RuleSnapshot,
    digests: &DigestSnapshot,
    max_digests: usize,
) -> (Knowledge, Vec<String>, usize) {
    let mut routes = Vec::new();
    let mut registries = Vec::new();
    for mapping in config.registries.values() {
        let usable = match rules.state(&mapping.registry) {
            Some(state) => state.is_usable(),
            None => config.rule_check.when_unknown == UnknownRules::Trust,
        };
        if !usable {
            continue;
        }
        let docker_hub = mapping.registry == DOCKER_HUB;
        let names = std::iter::once(mapping.registry.as_str())
            .chain(mapping.aliases.iter().map(String::as_str))
            .chain(docker_hub.then_some("index.docker.io"));
        let mut any = false;
        for host in names {
            // Only a name the engine reads as a registry host and as this very mapping's
            // (Docker Hub's legacy name is docker.io to it), never the cache's own.
            let parsed = format!("{host}/x");
            let normalised = Parts::parse(&parsed).map(|p| p.registry().to_owned());
            let reads_as = if host == "index.docker.io" {
                DOCKER_HUB
            } else {
                host
            };
            if normalised.as_deref() != Ok(reads_as)
                || !(host.contains('.') || host.contains(':'))
                || config.is_own_registry(host)
            {
                continue;
            }
            routes.push(Route {
                host: host.to_owned(),
                docker_hub,
                prefix: mapping
                    .prefix
                    .as_ref()
                    .map_or_else(String::new, |p| format!("{p}/")),
                upstream: mapping
                    .upstream_repository_prefix
                    .as_ref()
                    .map_or_else(String::new, |u| format!("{u}/")),
            });
            any = true;
        }
        if any {
            registries.push(mapping.registry.clone());
        }
    }
    routes.sort_by(|a, b| a.host.cmp(&b.host));
    registries.sort();

    let mut cached: Vec<String> = if config.digests == DigestPolicy::WhenCached {
        digests
            .cached()
            .map(|(repository, digest)| format!("{repository}@{digest}"))
            .collect()
    } else {
        Vec::new()
    };
    cached.sort();
    cached.dedup();
    let left_out = cached.len().saturating_sub(max_digests);
    cached.truncate(max_digests);

    let knowledge = Knowledge {
        registry_host: config.registry_host.clone(),
        routes,
        exclude_images: config
            .exclude
            .images
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect(),
        exclude_labels: config.exclude.pod_labels.clone(),
        exclude_owner_kinds: config.exclude.owner_kinds.clone(),
        digests: config.digests,
        cached,
    };
    (knowledge, registries, left_out)
}

/// The binding's namespace selector: the opt-in labels, and never `kube-system` or the
/// excluded namespaces.
fn namespace_selector(text: &str, excluded: &[String]) -> Result<Value, SelectorError> {
    let invalid = || SelectorError(text.to_owned());
    let mut labels = serde_json::Map::new();
    let mut expressions = Vec::new();
    for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let valid_key = |k: &str| {
            !k.is_empty()
                && k.len() <= 317
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
        };
        if let Some((key, value)) = term.split_once("!=") {
            let key = key.trim();
            if !valid_key(key) {
                return Err(invalid());
            }
            expressions.push(json!({"key": key, "operator": "NotIn", "values": [value.trim()]}));
        } else if let Some((key, value)) = term.split_once('=') {
            let key = key.trim();
            let value = value.trim_start_matches('=').trim();
            if !valid_key(key) {
                return Err(invalid());
            }
            labels.insert(key.to_owned(), Value::String(value.to_owned()));
        } else if let Some(key) = term.strip_prefix('!') {
            if !valid_key(key.trim()) {
                return Err(invalid());
            }
            expressions.push(json!({"key": key.trim(), "operator": "DoesNotExist"}));
        } else {
            if !valid_key(term) {
                return Err(invalid());
            }
            expressions.push(json!({"key": term, "operator": "Exists"}));
        }
    }
    if labels.is_empty() && expressions.is_empty() {
        return Err(invalid());
    }
    let mut never: Vec<String> = std::iter::once("kube-system".to_owned())
        .chain(excluded.iter().cloned())
        .collect();
    never.sort();
    never.dedup();
    expressions.push(json!({
        "key": "kubernetes.io/metadata.name",
        "operator": "NotIn",
        "values": never,
    }));
    let mut selector = serde_json::Map::new();
    if !labels.is_empty() {
        selector.insert("matchLabels".to_owned(), Value::Object(labels));
    }
    selector.insert("matchExpressions".to_owned(), Value::Array(expressions));
    Ok(Value::Object(selector))
}

#[cfg(test)]
mod tests;
