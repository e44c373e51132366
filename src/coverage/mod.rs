//! How much goes through the cache: every image of a Pod classified, by the webhook's own engine, into a closed set of [`State`]s.
//!
//! Pure. A Pod's images are decided with [`rewrite::decide_with`] under the same `Config`, rule
//! snapshot and exclusions as the webhook ([`PodRecord::webhook_skip`], shared with the audit),
//! so `bypassing` here and in `pullthrough audit` are the same containers. The
//! `pullthrough coverage` command lives in [`command`], its output in [`report`], and the
//! registries ECR cannot cache in [`upstreams`].

pub mod command;
pub mod report;
pub mod upstreams;

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::admission::PodSkip;
use crate::config::{Config, private_ecr_endpoint};
use crate::digests::DigestSnapshot;
use crate::pod::{ContainerImage, PodRecord};
use crate::reference::Parts;
use crate::rewrite::{Decision, SkipReason, decide_with};
use crate::rules::RuleSnapshot;

/// Where one image pulls from, and why. A closed set: every image is in exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// On the cache registry, by any of its endpoint names.
    Cached,
    /// An upstream image the webhook would rewrite today: the Pod predates the rule, the
    /// opt-in or the webhook.
    Bypassing,
    /// Pinned by a digest the cache is not known to hold (or `digests: skip`).
    PinnedNotCached,
    /// Left alone on purpose: the skip annotation or label, `exclude.*`, or the fallback.
    Excluded,
    /// Its registry is mapped but the rule is missing, broken or does not cover it.
    RuleMissing,
    /// ECR could cache its registry; the map lacks it.
    Unmapped,
    /// No ECR pull-through upstream exists for its registry.
    Uncacheable,
    /// In another private ECR registry.
    PrivateEcr,
    /// Not an image reference the cache could take (unparseable, or too long once rewritten).
    Invalid,
}

impl State {
    /// Every state, in the order reports list them.
    pub const ALL: [Self; 9] = [
        Self::Cached,
        Self::Bypassing,
        Self::PinnedNotCached,
        Self::Excluded,
        Self::RuleMissing,
        Self::Unmapped,
        Self::Uncacheable,
        Self::PrivateEcr,
        Self::Invalid,
    ];

    /// The state's name, as in JSON, tables and the gauge's `state` label.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cached => "cached",
            Self::Bypassing => "bypassing",
            Self::PinnedNotCached => "pinned-not-cached",
            Self::Excluded => "excluded",
            Self::RuleMissing => "rule-missing",
            Self::Unmapped => "unmapped",
            Self::Uncacheable => "uncacheable",
            Self::PrivateEcr => "private-ecr",
            Self::Invalid => "invalid",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One image of one Pod (a container, init container, ephemeral container or image volume).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Image {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Container name; `volume/<name>` for an image volume.
    pub container: String,
    /// The image the Pod runs.
    pub image: String,
    /// The upstream registry: the mapped one (an alias counts as its registry), the image's
    /// host otherwise; for a cached image, the registry it came from where that can be told.
    /// `None` for an image that does not parse.
    pub registry: Option<String>,
    /// Its state.
    pub state: State,
    /// Why, and what to do about it.
    pub detail: String,
}

impl Image {
    /// The registry as a bounded label: a mapped registry, or `other`.
    pub fn registry_label<'c>(&self, config: &'c Config) -> &'c str {
        self.registry
            .as_deref()
            .and_then(|r| config.registries.get_key_value(r))
            .map_or("other", |(k, _)| k.as_str())
    }
}

/// Images per registry label (a mapped registry, or `other`) and state over `pods`: the
/// reconciler's `containers` gauge. Every mapped registry and `other` come with every state,
/// zero or not, so that a share can be computed from the series at any time.
pub fn count_by_label<'p>(
    config: &Config,
    rules: &RuleSnapshot,
    digests: &DigestSnapshot,
    pods: impl IntoIterator<Item = &'p PodRecord>,
) -> BTreeMap<(String, State), usize> {
    let mut out = BTreeMap::new();
    for registry in config
        .registries
        .keys()
        .map(String::as_str)
        .chain(["other"])
    {
        for state in State::ALL {
            out.insert((registry.to_owned(), state), 0);
        }
    }
    for pod in pods {
        for image in classify(config, rules, digests, pod) {
            *out.entry((image.registry_label(config).to_owned(), image.state))
                .or_default() += 1;
        }
    }
    out
}

/// Classifies every image of `pod` under `config`, the rule snapshot and what is known of the
/// digests the cache holds.
pub fn classify(
    config: &Config,
    rules: &RuleSnapshot,
    digests: &DigestSnapshot,
    pod: &PodRecord,
) -> Vec<Image> {
    let skip = pod.webhook_skip(config);
    // As in the audit: an unreadable fallback annotation puts nothing back.
    let fallen_back = pod.pull.fallen_back().unwrap_or_default();
    pod.containers
        .iter()
        .map(|c| {
            let put_back = fallen_back.contains(&c.container);
            let (registry, state, detail) =
                classify_image(config, rules, digests, c, skip.as_ref(), put_back);
            Image {
                namespace: pod.namespace.to_string(),
                pod: pod.name.clone(),
                container: c.container.clone(),
                image: c.image.clone(),
                registry,
                state,
                detail,
            }
        })
        .collect()
}

/// One image: its registry, state and detail. `skip` is why the webhook leaves the whole Pod
/// alone; `put_back` whether the fallback put this container back on its original image.
fn classify_image(
    config: &Config,
    rules: &RuleSnapshot,
    digests: &DigestSnapshot,
    c: &ContainerImage,
    skip: Option<&PodSkip>,
    put_back: bool,
) -> (Option<String>, State, String) {
    let verdict = decide_with(config, rules, digests, &c.image);
    let host = Parts::parse(&c.image).ok().map(|p| p.registry().to_owned());
    let registry = verdict.mapping.map(|m| m.registry.clone()).or(host.clone());
    // What is on the cache pulls through it, whatever else is said of its Pod.
    if verdict.decision == Decision::Skip(SkipReason::AlreadyRewritten) {
        let detail = match &c.original {
            Some(original) => format!("rewritten from {original}"),
            None => "on the pull-through cache registry".to_owned(),
        };
        return (cached_registry(config, c), State::Cached, detail);
    }
    if let Some(skip) = skip {
        return (registry, State::Excluded, format!("{skip}"));
    }
    if put_back {
        return (
            registry,
            State::Excluded,
            SkipReason::FallenBack.to_string(),
        );
    }
    let reason = match verdict.decision {
        Decision::Rewrite(would_be) => {
            return (
                registry,
                State::Bypassing,
                format!(
                    "runs its upstream image; the webhook would give it {would_be}: restart it onto the cache (pullthrough audit gives the command)"
                ),
            );
        }
        Decision::Skip(reason) => reason,
    };
    let state = match &reason {
        SkipReason::AlreadyRewritten => State::Cached,
        SkipReason::DigestPinned | SkipReason::DigestNotCached { .. } => State::PinnedNotCached,
        SkipReason::Excluded { .. }
        | SkipReason::FallenBack
        | SkipReason::FallbackUnreadable
        | SkipReason::UnchangedOnUpdate => State::Excluded,
        SkipReason::RuleUnusable { .. }
        | SkipReason::RuleUnknown
        | SkipReason::OutsideUpstreamPrefix => State::RuleMissing,
        SkipReason::AlreadyInEcr => State::PrivateEcr,
        SkipReason::InvalidReference(_)
        | SkipReason::RepositoryTooLong { .. }
        | SkipReason::NameTooLong { .. } => State::Invalid,
        SkipReason::NotMapped { registry } => {
            return not_mapped(config, registry);
        }
    };
    let detail = match (&reason, state) {
        (SkipReason::AlreadyInEcr, _) => match host.as_deref().and_then(private_ecr_endpoint) {
            Some((account, region)) => format!(
                "in another private ECR registry (account {account}, region {region}): pulled from ECR, not the internet; an ECR-to-ECR rule in the map would cache it"
            ),
            None => reason.to_string(),
        },
        (_, State::RuleMissing) => {
            format!("{reason}: create or repair the rule (pullthrough rules --check)")
        }
        _ => reason.to_string(),
    };
    (registry, state, detail)
}

/// An image whose registry the map lacks: unmapped when ECR could cache it, uncacheable when
/// no ECR upstream exists for it.
fn not_mapped(config: &Config, host: &str) -> (Option<String>, State, String) {
    let registry = Some(host.to_owned());
    if let Some(s) = upstreams::suggestion(config, host) {
        let credential = if s.needs_credentials {
            ", with a Secrets Manager credential"
        } else {
            ""
        };
        return (
            registry,
            State::Unmapped,
            format!(
                "ECR can cache {host} (upstream {}{credential}); add \"{}\" under registries: and create the rule (pullthrough rules)",
                s.upstream, s.map_line
            ),
        );
    }
    let detail = match upstreams::uncacheable(host) {
        Some(name) => format!(
            "ECR pull-through cache has no upstream for {name} (as of {}): mirror the images into ECR, or accept pulls from {host}",
            upstreams::AS_OF
        ),
        None => format!(
            "{host} is not a registry ECR pull-through cache supports (as of {}): mirror the images into ECR, or accept pulls from it",
            upstreams::AS_OF
        ),
    };
    (registry, State::Uncacheable, detail)
}

/// The upstream registry of an image on the cache: from the record of originals, else from the
/// mapping whose prefix its repository starts with, else the cache registry itself.
fn cached_registry(config: &Config, c: &ContainerImage) -> Option<String> {
    if let Some(original) = &c.original
        && let Ok(parts) = Parts::parse(original)
    {
        let host = parts.registry();
        return Some(
            config
                .mapping(host)
                .map_or_else(|| host.to_owned(), |m| m.registry.clone()),
        );
    }
    let parts = Parts::parse(&c.image).ok()?;
    let (_, path) = parts.repository();
    let by_prefix = config.registries.values().find(|m| {
        m.prefix.as_deref().is_some_and(|p| {
            path.strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('/'))
        })
    });
    Some(by_prefix.map_or_else(|| parts.registry().to_owned(), |m| m.registry.clone()))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use k8s_openapi::api::core::v1::Pod;

    use super::*;
    use crate::config::Overrides;
    use crate::ecr::CacheRule;
    use crate::rules;

    const CACHE: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
    const SHA: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn config(extra: &str) -> Config {
        Config::load(
            &format!(
                "accountId: \"123456789012\"\nregion: eu-west-1\nregistries:\n  docker.io: docker-hub\n  quay.io: quay\n  registry.k8s.io: k8s\nexclude:\n  images: [\"quay.io/excluded/*\"]\n  podLabels: [app=postgres]\n  ownerKinds: [Cluster]\n{extra}"
            ),
            &Overrides::default(),
        )
        .unwrap()
    }

    /// docker-hub and quay present, k8s missing.
    fn rules(config: &Config) -> RuleSnapshot {
        rules::snapshot(
            config,
            &[
                CacheRule::new("docker-hub", "registry-1.docker.io"),
                CacheRule::new("quay", "quay.io"),
            ],
            &BTreeMap::new(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(10_000),
        )
    }

    /// A Pod of Deployment web as the API server returns it, with `spec` merged in.
    fn pod(metadata: &serde_json::Value, spec: &serde_json::Value) -> PodRecord {
        let mut meta = serde_json::json!({
            "name": "web-7d4b9c-x2x9z", "namespace": "shop", "uid": "u1",
            "creationTimestamp": "2026-11-01T08:00:00Z",
            "labels": {"app": "web", "pod-template-hash": "7d4b9c"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9c", "uid": "rs1", "controller": true}]
        });
        if let (Some(m), Some(extra)) = (meta.as_object_mut(), metadata.as_object()) {
            for (k, v) in extra {
                m.insert(k.clone(), v.clone());
            }
        }
        let pod: Pod =
            serde_json::from_value(serde_json::json!({"metadata": meta, "spec": spec})).unwrap();
        PodRecord::from_pod(&pod).unwrap()
    }

    fn one(c: &Config, image: &str) -> Image {
        let p = pod(
            &serde_json::json!({}),
            &serde_json::json!({"containers": [{"name": "app", "image": image}]}),
        );
        let mut found = classify(c, &rules(c), &DigestSnapshot::EMPTY, &p);
        assert_eq!(found.len(), 1);
        found.remove(0)
    }

    #[test]
    fn an_image_on_the_cache_is_cached_and_counted_under_its_upstream() {
        let c = config("");
        let p = pod(
            &serde_json::json!({"annotations": {"pullthrough.dev/original-images": "{\"app\":\"nginx:1.27\"}"}}),
            &serde_json::json!({
                "initContainers": [{"name": "init", "image": format!("{CACHE}/quay/org/tool:2")}],
                "containers": [{"name": "app", "image": format!("{CACHE}/docker-hub/library/nginx:1.27")}],
                "volumes": [{"name": "models", "image": {"reference": "123456789012.dkr-ecr.eu-west-1.on.aws/k8s/pause:3.10"}}]
            }),
        );
        let found = classify(&c, &rules(&c), &DigestSnapshot::EMPTY, &p);
        let got: Vec<_> = found
            .iter()
            .map(|i| (i.container.as_str(), i.state, i.registry.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("init", State::Cached, Some("quay.io")),
                ("app", State::Cached, Some("docker.io")),
                ("volume/models", State::Cached, Some("registry.k8s.io")),
            ]
        );
        assert_eq!(found[1].detail, "rewritten from nginx:1.27");
        assert_eq!(found[1].namespace, "shop");
        assert_eq!(found[1].pod, "web-7d4b9c-x2x9z");
    }

    #[test]
    fn an_upstream_image_the_webhook_would_rewrite_is_bypassing_like_the_audit_says() {
        let c = config("");
        let p = pod(
            &serde_json::json!({}),
            &serde_json::json!({
                "containers": [
                    {"name": "app", "image": "nginx:1.27"},
                    {"name": "tool", "image": "quay.io/org/tool:2"},
                    {"name": "mcr", "image": "mcr.microsoft.com/dotnet/runtime:8.0"}
                ],
                "ephemeralContainers": [{"name": "debug", "image": "busybox:1.36"}]
            }),
        );
        let r = rules(&c);
        let found = classify(&c, &r, &DigestSnapshot::EMPTY, &p);
        let bypassing: Vec<_> = found
            .iter()
            .filter(|i| i.state == State::Bypassing)
            .map(|i| i.container.as_str())
            .collect();
        assert_eq!(bypassing, ["app", "tool", "debug"]);
        let audit: Vec<_> = crate::audit::bypasses(&c, &r, &p)
            .into_iter()
            .map(|b| b.container)
            .collect();
        assert_eq!(bypassing, audit, "the audit and the coverage agree");
        assert_eq!(found[0].registry.as_deref(), Some("docker.io"));
        assert!(
            found[0]
                .detail
                .contains(&format!("{CACHE}/docker-hub/library/nginx:1.27")),
            "{}",
            found[0].detail
        );
    }

    #[test]
    fn a_pinned_digest_the_cache_is_not_known_to_hold_is_pinned_not_cached() {
        let when_cached = config("digests: whenCached\n");
        let i = one(&when_cached, &format!("redis:7@{SHA}"));
        assert_eq!(i.state, State::PinnedNotCached);
        assert_eq!(i.registry.as_deref(), Some("docker.io"));
        let skip = config("digests: skip\n");
        assert_eq!(
            one(&skip, &format!("quay.io/org/tool@{SHA}")).state,
            State::PinnedNotCached
        );
        // Pinned digests rewritten like tags are bypassing when they run upstream.
        let rewrite = config("digests: rewrite\n");
        assert_eq!(
            one(&rewrite, &format!("redis@{SHA}")).state,
            State::Bypassing
        );
    }

    #[test]
    fn pods_and_images_left_alone_on_purpose_are_excluded() {
        let c = config("");
        let r = rules(&c);
        let states = |p: &PodRecord| -> Vec<(State, String)> {
            classify(&c, &r, &DigestSnapshot::EMPTY, p)
                .into_iter()
                .map(|i| (i.state, i.detail))
                .collect()
        };
        let spec = serde_json::json!({"containers": [{"name": "app", "image": "nginx:1.27"}]});
        let annotated = pod(
            &serde_json::json!({"annotations": {"pullthrough.dev/skip": "true"}}),
            &spec,
        );
        assert_eq!(
            states(&annotated),
            [(
                State::Excluded,
                "the pod opts out with pullthrough.dev/skip".to_owned()
            )]
        );
        let labelled = pod(
            &serde_json::json!({"labels": {"pullthrough.dev/skip": "true"}}),
            &spec,
        );
        assert_eq!(states(&labelled)[0].0, State::Excluded);
        let postgres = pod(&serde_json::json!({"labels": {"app": "postgres"}}), &spec);
        assert!(states(&postgres)[0].1.contains("app=postgres"));
        let operated = pod(
            &serde_json::json!({"ownerReferences": [{"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "name": "db", "uid": "c1", "controller": true}]}),
            &spec,
        );
        assert!(states(&operated)[0].1.contains("Cluster"));
        let fallen = pod(
            &serde_json::json!({"annotations": {"pullthrough.dev/fallback": "[\"app\"]"}}),
            &spec,
        );
        assert!(
            states(&fallen)[0]
                .1
                .contains("put back on its original image")
        );
        let pattern = one(&c, "quay.io/excluded/thing:1");
        assert_eq!(pattern.state, State::Excluded);
        assert!(pattern.detail.contains("quay.io/excluded/*"));
    }

    #[test]
    fn a_mapped_registry_without_a_usable_rule_is_rule_missing() {
        let i = one(&config(""), "registry.k8s.io/pause:3.10");
        assert_eq!(i.state, State::RuleMissing);
        assert_eq!(i.registry.as_deref(), Some("registry.k8s.io"));
        assert!(i.detail.contains("\"k8s\" is missing"), "{}", i.detail);
        assert!(i.detail.contains("pullthrough rules --check"));
    }

    #[test]
    fn a_registry_ecr_could_cache_but_the_map_lacks_is_unmapped_with_the_line_to_add() {
        let c = config("");
        let ghcr = one(&c, "ghcr.io/org/app:1.4");
        assert_eq!(ghcr.state, State::Unmapped);
        assert_eq!(ghcr.registry.as_deref(), Some("ghcr.io"));
        assert!(
            ghcr.detail
                .contains("upstream github-container-registry, with a Secrets Manager credential"),
            "{}",
            ghcr.detail
        );
        assert!(
            ghcr.detail
                .contains("add \"ghcr.io: github\" under registries:")
        );
        let chainguard = one(&c, "cgr.dev/chainguard/static:latest");
        assert!(chainguard.detail.contains("upstream chainguard"));
        assert!(chainguard.detail.contains("\"cgr.dev: chainguard\""));
        let acr = one(&c, "contoso.azurecr.io/shop/api:3");
        assert!(acr.detail.contains("azure-container-registry"));
        assert_eq!(acr.registry_label(&c), "other");
    }

    #[test]
    fn a_registry_without_an_ecr_upstream_is_uncacheable() {
        let c = config("");
        for image in [
            "mcr.microsoft.com/dotnet/aspnet:8.0",
            "nvcr.io/nvidia/cuda:12.4.0-base-ubuntu22.04",
            "gcr.io/distroless/static:nonroot",
            "us-docker.pkg.dev/project/repo/app:1",
            "docker.elastic.co/elasticsearch/elasticsearch:8.15.0",
            "dhi.io/python:3.13",
            "registry.redhat.io/ubi9/ubi:9.4",
            "registry.example.com/team/app:1",
        ] {
            let i = one(&c, image);
            assert_eq!(i.state, State::Uncacheable, "{image}");
            assert!(i.detail.contains("as of 2026"), "{}", i.detail);
        }
        assert!(
            one(&c, "nvcr.io/nvidia/cuda:12.4.0-base-ubuntu22.04")
                .detail
                .contains("NVIDIA NGC")
        );
        assert_eq!(
            one(&c, "mcr.microsoft.com/dotnet/aspnet:8.0").registry_label(&c),
            "other"
        );
    }

    #[test]
    fn another_private_ecr_registry_is_private_ecr() {
        let i = one(
            &config(""),
            "111122223333.dkr.ecr.us-east-1.amazonaws.com/team/app:2",
        );
        assert_eq!(i.state, State::PrivateEcr);
        assert!(i.detail.contains("account 111122223333, region us-east-1"));
    }

    #[test]
    fn an_image_that_cannot_be_parsed_or_rewritten_is_invalid() {
        let c = config("");
        let broken = one(&c, "NOT A REFERENCE");
        assert_eq!(broken.state, State::Invalid);
        assert_eq!(broken.registry, None);
        assert_eq!(broken.registry_label(&c), "other");
        let long = format!("quay.io/{}:1", "a/".repeat(120) + "b");
        assert_eq!(one(&c, &long).state, State::Invalid);
    }

    #[test]
    fn the_gauge_counts_per_mapped_registry_or_other_and_state() {
        let c = config("");
        let r = rules(&c);
        let a = pod(
            &serde_json::json!({}),
            &serde_json::json!({"containers": [
                {"name": "app", "image": format!("{CACHE}/docker-hub/library/nginx:1.27")},
                {"name": "old", "image": "redis:7"},
                {"name": "mcr", "image": "mcr.microsoft.com/dotnet/runtime:8.0"},
                {"name": "gh", "image": "ghcr.io/org/app:1"}
            ]}),
        );
        let counts = count_by_label(&c, &r, &DigestSnapshot::EMPTY, [&a]);
        let n = |registry: &str, state| counts[&(registry.to_owned(), state)];
        assert_eq!(n("docker.io", State::Cached), 1);
        assert_eq!(n("docker.io", State::Bypassing), 1);
        assert_eq!(n("other", State::Uncacheable), 1);
        assert_eq!(n("other", State::Unmapped), 1);
        assert_eq!(n("quay.io", State::Cached), 0);
        assert_eq!(counts.len(), 4 * State::ALL.len(), "3 mapped and other");
        assert_eq!(counts.values().sum::<usize>(), 4);
    }

    #[test]
    fn the_gauge_and_the_report_count_the_same_images() {
        let c = config("digests: whenCached\n");
        let r = rules(&c);
        let spec =
            |image: &str| serde_json::json!({"containers": [{"name": "app", "image": image}]});
        let pods = [
            pod(&serde_json::json!({}), &spec("nginx:1.27")),
            pod(
                &serde_json::json!({}),
                &spec(&format!("{CACHE}/quay/org/tool:2")),
            ),
            pod(
                &serde_json::json!({}),
                &spec("nvcr.io/nvidia/cuda:12.4.0-base-ubuntu22.04"),
            ),
            pod(&serde_json::json!({}), &spec(&format!("redis@{SHA}"))),
            pod(&serde_json::json!({}), &spec("registry.k8s.io/pause:3.10")),
        ];
        let gauge = count_by_label(&c, &r, &DigestSnapshot::EMPTY, &pods);
        let mut report = report::Report::new(report::RuleSource::Live);
        for p in &pods {
            report.add(classify(&c, &r, &DigestSnapshot::EMPTY, p));
        }
        report.finish(false);
        for state in State::ALL {
            let from_gauge: usize = gauge
                .iter()
                .filter(|((_, s), _)| *s == state)
                .map(|(_, n)| n)
                .sum();
            assert_eq!(from_gauge, report.states.get(state), "{state}");
        }
        assert_eq!(report.containers, 5);
    }

    #[test]
    fn states_have_their_documented_names() {
        let names: Vec<_> = State::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                "cached",
                "bypassing",
                "pinned-not-cached",
                "excluded",
                "rule-missing",
                "unmapped",
                "uncacheable",
                "private-ecr",
                "invalid"
            ]
        );
        for s in State::ALL {
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::Value::String(s.name().into())
            );
        }
    }
}
