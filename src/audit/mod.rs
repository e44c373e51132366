//! Pods that bypass the pull-through cache: containers the webhook would rewrite today that still run their upstream image.
//!
//! This module is pure: which containers of a Pod bypass the cache ([`bypasses`], the same
//! engine and exclusions as the webhook), the likely reason ([`LikelyCause`]), the fix, and the
//! reconciler's [`Notice`]s about them ([`notices`]). The `pullthrough audit` command lives in
//! [`command`]; its output in [`report`]. Nothing here restarts or deletes anything: the fix is
//! a command for a person to run.

pub mod command;
pub mod report;
pub mod selector;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::time::SystemTime;

use k8s_openapi::api::core::v1::Namespace;

use crate::config::Config;
use crate::notice::{Notice, Severity};
use crate::pod::Owner;
use crate::pod::PodRecord;
use crate::rewrite::{Decision, decide};
use crate::rules::RuleSnapshot;

use selector::Selector;

/// Warning on a workload whose containers run upstream images the webhook would rewrite.
pub const REASON_BYPASS: &str = "ImageBypassesPullThroughCache";

/// One container that bypasses the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bypass {
    /// Container name.
    pub container: String,
    /// The upstream image it runs.
    pub image: String,
    /// The image in the cache the webhook would give it.
    pub would_be: String,
    /// The upstream registry, as in the map.
    pub registry: String,
    /// The ECR repository prefix of the rule.
    pub prefix: String,
}

/// The containers of `pod` that the webhook, under `config` and `rules`, would rewrite but that
/// still run their upstream image. A Pod the webhook leaves alone as a whole (skip annotation or
/// label, excluded labels or owner kinds) bypasses nothing, and neither does a container the
/// reconciler put back on its original image (listed in the fallback annotation).
pub fn bypasses(config: &Config, rules: &RuleSnapshot, pod: &PodRecord) -> Vec<Bypass> {
    if pod.webhook_skip(config).is_some() {
        return Vec::new();
    }
    // Containers put back on their original image are left alone on purpose.
    let fallen_back = pod.pull.fallen_back().unwrap_or_default();
    let mut out = Vec::new();
    for c in &pod.containers {
        if fallen_back.contains(&c.container) {
            continue;
        }
        let verdict = decide(config, rules, &c.image);
        let (Decision::Rewrite(would_be), Some(mapping)) = (verdict.decision, verdict.mapping)
        else {
            continue;
        };
        out.push(Bypass {
            container: c.container.clone(),
            image: c.image.clone(),
            would_be,
            registry: mapping.registry.clone(),
            prefix: mapping.ecr_prefix().to_owned(),
        });
    }
    out
}

/// Bypassing containers per registry, over `pods`: the `bypassing_containers` gauge.
pub fn count_by_registry<'p>(
    config: &Config,
    rules: &RuleSnapshot,
    pods: impl IntoIterator<Item = &'p PodRecord>,
) -> BTreeMap<String, usize> {
    let mut out: BTreeMap<String, usize> =
        config.registries.keys().map(|r| (r.clone(), 0)).collect();
    for pod in pods {
        for b in bypasses(config, rules, pod) {
            *out.entry(b.registry).or_default() += 1;
        }
    }
    out
}

/// What is known about the past, to tell why a Pod bypasses the cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// Opted-in namespace to when its opt-in labels were set, where its `managedFields` say.
    pub opted_in_at: BTreeMap<String, SystemTime>,
    /// Namespaces looked at that are not opted in (the audit's `--all-namespaces`).
    pub not_opted_in: BTreeSet<String>,
    /// Registry to since when its rule is usable: the rule's `createdAt`, or when it was first
    /// seen usable after being seen missing or broken.
    pub rule_usable_since: BTreeMap<String, SystemTime>,
}

/// Nothing known about the past.
pub static NO_FACTS: Facts = Facts {
    opted_in_at: BTreeMap::new(),
    not_opted_in: BTreeSet::new(),
    rule_usable_since: BTreeMap::new(),
};

/// Why a container is likely to bypass the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LikelyCause {
    /// Its namespace is not opted in (only the audit looks at such namespaces).
    NamespaceNotOptedIn,
    /// The Pod was created before its namespace was opted in.
    BeforeNamespaceOptIn {
        /// When the namespace's opt-in label was set.
        opted_in: SystemTime,
    },
    /// The Pod was created before the rule existed (or was usable).
    BeforeRule {
        /// Since when the rule is usable.
        usable_since: SystemTime,
    },
    /// Nothing else explains it: the Pod was admitted while the webhook was unreachable or not
    /// registered (`failurePolicy: Ignore` lets it through), or under an earlier configuration.
    WebhookUnreachable,
}

impl LikelyCause {
    /// Infers the cause for one registry's containers of `pod`.
    pub fn infer(facts: &Facts, pod: &PodRecord, registry: &str) -> Self {
        if facts.not_opted_in.contains(&*pod.namespace) {
            return Self::NamespaceNotOptedIn;
        }
        let Some(created) = pod.created else {
            return Self::WebhookUnreachable;
        };
        if let Some(&opted_in) = facts.opted_in_at.get(&*pod.namespace)
            && created < opted_in
        {
            return Self::BeforeNamespaceOptIn { opted_in };
        }
        if let Some(&usable_since) = facts.rule_usable_since.get(registry)
            && created < usable_since
        {
            return Self::BeforeRule { usable_since };
        }
        Self::WebhookUnreachable
    }

    /// A stable name, for JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Self::NamespaceNotOptedIn => "namespaceNotOptedIn",
            Self::BeforeNamespaceOptIn { .. } => "beforeNamespaceOptIn",
            Self::BeforeRule { .. } => "beforeRule",
            Self::WebhookUnreachable => "webhookUnreachable",
        }
    }

    /// When the thing the Pod predates happened, for the causes that have one.
    pub fn since(self) -> Option<SystemTime> {
        match self {
            Self::BeforeNamespaceOptIn { opted_in } => Some(opted_in),
            Self::BeforeRule { usable_since } => Some(usable_since),
            Self::NamespaceNotOptedIn | Self::WebhookUnreachable => None,
        }
    }

    /// A few words for a table column.
    pub fn short(self) -> String {
        match self {
            Self::NamespaceNotOptedIn => "namespace not opted in".to_owned(),
            Self::BeforeNamespaceOptIn { opted_in } => {
                format!("created before namespace opt-in ({})", rfc3339(opted_in))
            }
            Self::BeforeRule { usable_since } => {
                format!("created before the rule ({})", rfc3339(usable_since))
            }
            Self::WebhookUnreachable => "admitted without the webhook".to_owned(),
        }
    }
}

impl fmt::Display for LikelyCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NamespaceNotOptedIn => f.write_str(
                "its namespace is not opted in, so the webhook does not see its Pods",
            ),
            Self::BeforeNamespaceOptIn { opted_in } => write!(
                f,
                "it was created before its namespace was opted in ({})",
                rfc3339(*opted_in)
            ),
            Self::BeforeRule { usable_since } => write!(
                f,
                "it was created before the pull-through cache rule existed or was usable ({})",
                rfc3339(*usable_since)
            ),
            Self::WebhookUnreachable => f.write_str(
                "it was admitted while the webhook was unreachable or not registered (failurePolicy: Ignore lets Pods through), or under an earlier configuration",
            ),
        }
    }
}

/// A time as RFC 3339, to the second.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// How to move a Pod's containers onto the cache: a restart of its workload, or a new Pod.
/// Never run by pullthrough.
pub fn fix(namespace: &str, pod: &str, owner: Option<&Owner>, cause: LikelyCause) -> String {
    let mut out = String::new();
    if cause == LikelyCause::NamespaceNotOptedIn {
        let _ = write!(
            out,
            "Opt the namespace in (label it to match the webhook's namespaceSelector; by default kubectl label namespace {namespace} pullthrough.dev/enabled=true), then: "
        );
    }
    match owner {
        Some(o) if matches!(o.kind.as_str(), "Deployment" | "StatefulSet" | "DaemonSet") => {
            let _ = write!(
                out,
                "kubectl rollout restart {}/{} -n {namespace}",
                o.kind.to_ascii_lowercase(),
                o.name
            );
        }
        Some(o) if o.kind == "CronJob" => {
            let _ = write!(
                out,
                "the next Jobs of CronJob {} are rewritten; to move a running one now, delete its Pods (kubectl delete pod <pod> -n {namespace})",
                o.name
            );
        }
        Some(o) if o.kind == "Job" => {
            let _ = write!(
                out,
                "delete the Job's running Pods (kubectl delete pod -n {namespace} -l batch.kubernetes.io/job-name={}); the Job replaces them, and a deleted Pod may count against its backoffLimit",
                o.name
            );
        }
        Some(o) => {
            let _ = write!(
                out,
                "delete its Pods one at a time (kubectl delete pod <pod> -n {namespace}); {} {} creates them again",
                o.kind, o.name
            );
        }
        None => {
            let _ = write!(
                out,
                "delete the Pod and create it again from its manifest (kubectl delete pod {pod} -n {namespace})"
            );
        }
    }
    out
}

/// The workload a notice is about, in words, with its verb.
fn subject(pod: &PodRecord) -> String {
    match &pod.owner {
        Some(o) => format!("Pods of {} {} run", o.kind, o.name),
        None => format!("Pod {} runs", pod.name),
    }
}

/// The reconciler's check: one Warning notice per registry whose images `pod` runs from their
/// upstream though the webhook would rewrite them.
pub fn notices(
    config: &Config,
    rules: &RuleSnapshot,
    facts: &Facts,
    pod: &PodRecord,
) -> Vec<Notice> {
    let mut by_registry: BTreeMap<&str, Vec<Bypass>> = BTreeMap::new();
    let found = bypasses(config, rules, pod);
    for b in &found {
        by_registry.entry(&b.registry).or_default().push(b.clone());
    }
    let mut out = Vec::with_capacity(by_registry.len());
    for (registry, items) in by_registry {
        let prefix = items.first().map_or("", |b| b.prefix.as_str());
        // The fix is the workload's; a cause that only the audit sees does not occur here.
        let message = format!(
            "{} {registry} images from the upstream registry, not through the ECR pull-through cache rule {prefix} (account {}, region {}): the webhook would rewrite them now. Restart them to move them onto the cache: {}. pullthrough restarts nothing itself.",
            subject(pod),
            config.account_id,
            config.region,
            fix(
                &pod.namespace,
                &pod.name,
                pod.owner.as_deref(),
                LikelyCause::WebhookUnreachable
            ),
        );
        let cause = LikelyCause::infer(facts, pod, registry);
        let mut detail = format!("Pod {}:", pod.name);
        for (i, b) in items.iter().enumerate() {
            let _ = write!(
                detail,
                "{} container {} runs {} (would be {})",
                if i == 0 { "" } else { ";" },
                b.container,
                b.image,
                b.would_be
            );
        }
        let _ = write!(detail, ". Likely cause: {cause}.");
        out.push(Notice {
            reason: REASON_BYPASS,
            severity: Severity::Warning,
            cause: registry.to_owned(),
            message,
            detail,
            resolution: None,
        });
    }
    out
}

/// When a namespace's opt-in labels were set: the latest time among the `managedFields`
/// entries that set a label `selector` selects on. An entry's time is when its manager last
/// changed any of its fields, so this is the latest the label can have been set. `None` when
/// no entry tells (managed fields stripped, or labels set before server-side field tracking).
pub fn opted_in_at(namespace: &Namespace, selector: &Selector) -> Option<SystemTime> {
    let entries = namespace
        .metadata
        .managed_fields
        .as_deref()
        .unwrap_or_default();
    let mut latest: Option<SystemTime> = None;
    for key in selector.selecting_keys() {
        let field = format!("f:{key}");
        // Several managers may share a label; it was set when the first of them set it.
        let set_at = entries
            .iter()
            .filter(|e| {
                e.fields_v1.as_ref().is_some_and(|f| {
                    f.0.get("f:metadata")
                        .and_then(|m| m.get("f:labels"))
                        .and_then(|l| l.get(&field))
                        .is_some()
                })
            })
            .filter_map(|e| e.time.as_ref().map(|t| SystemTime::from(t.0)))
            .min();
        if let Some(t) = set_at {
            latest = Some(latest.map_or(t, |l| l.max(t)));
        }
    }
    latest
}

/// Since when each rule is usable, as far as the reconciler has seen: a rule seen missing or
/// broken and later usable became usable between those two reads.
#[derive(Debug, Clone, Default)]
pub struct RuleHistory {
    unusable: BTreeSet<String>,
    usable_since: BTreeMap<String, SystemTime>,
}

impl RuleHistory {
    /// Takes in one snapshot; unknown snapshots tell nothing.
    pub fn observe(&mut self, rules: &RuleSnapshot) {
        let Some(at) = rules.fetched_at else { return };
        for (registry, state) in rules.iter() {
            if state.is_usable() {
                if self.unusable.remove(registry) {
                    self.usable_since.insert(registry.to_owned(), at);
                }
            } else {
                self.unusable.insert(registry.to_owned());
                self.usable_since.remove(registry);
            }
        }
    }

    /// Registry to since when its rule is usable: the later of the rule's `createdAt` and
    /// when it was seen becoming usable.
    pub fn usable_since(&self, rules: &RuleSnapshot) -> BTreeMap<String, SystemTime> {
        rules
            .iter()
            .filter(|(_, s)| s.is_usable())
            .filter_map(|(registry, _)| {
                let seen = self.usable_since.get(registry).copied();
                let since = match (rules.created_at(registry), seen) {
                    (Some(a), Some(b)) => a.max(b),
                    (a, b) => a.or(b)?,
                };
                Some((registry.to_owned(), since))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Overrides;
    use crate::ecr::CacheRule;
    use crate::pod::ContainerImage;
    use crate::rules;

    const CACHE: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

    fn config() -> Config {
        Config::load(
            "accountId: \"123456789012\"\nregion: eu-west-1\nregistries:\n  docker.io: docker-hub\n  quay.io: quay\nexclude:\n  images: [\"quay.io/excluded/*\"]\n  podLabels: [app=postgres]\n  ownerKinds: [Cluster]\n",
            &Overrides::default(),
        )
        .unwrap()
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn rule(prefix: &str, url: &str, created: Option<u64>) -> CacheRule {
        CacheRule {
            created_at: created.map(at),
            ..CacheRule::new(prefix, url)
        }
    }

    fn present() -> RuleSnapshot {
        rules::snapshot(
            &config(),
            &[
                rule("docker-hub", "registry-1.docker.io", Some(1_000)),
                rule("quay", "quay.io", Some(5_000)),
            ],
            &BTreeMap::new(),
            at(10_000),
        )
    }

    fn pod(images: &[(&str, &str)]) -> PodRecord {
        PodRecord {
            namespace: "shop".into(),
            name: "web-7d4b9c-x2x9z".into(),
            uid: "u1".into(),
            labels: std::sync::Arc::default(),
            owner_kinds: vec!["ReplicaSet".to_owned()].into(),
            owner: Some(std::sync::Arc::new(Owner {
                kind: "Deployment".into(),
                name: "web".into(),
            })),
            owner_uid: None,
            opted_out: false,
            containers: images
                .iter()
                .map(|(name, image)| ContainerImage {
                    container: (*name).to_owned(),
                    image: (*image).to_owned(),
                    original: None,
                })
                .collect(),
            created: Some(at(3_000)),
            pull: crate::pod::PullRecord::default(),
        }
    }

    fn names(found: &[Bypass]) -> Vec<&str> {
        found.iter().map(|b| b.container.as_str()).collect()
    }

    #[test]
    fn an_upstream_image_the_webhook_would_rewrite_bypasses() {
        let found = bypasses(
            &config(),
            &present(),
            &pod(&[("app", "nginx:1.27"), ("init", "quay.io/org/tool:2")]),
        );
        assert_eq!(
            found,
            vec![
                Bypass {
                    container: "app".into(),
                    image: "nginx:1.27".into(),
                    would_be: format!("{CACHE}/docker-hub/library/nginx:1.27"),
                    registry: "docker.io".into(),
                    prefix: "docker-hub".into(),
                },
                Bypass {
                    container: "init".into(),
                    image: "quay.io/org/tool:2".into(),
                    would_be: format!("{CACHE}/quay/org/tool:2"),
                    registry: "quay.io".into(),
                    prefix: "quay".into(),
                },
            ]
        );
    }

    #[test]
    fn images_the_webhook_leaves_alone_do_not_bypass() {
        let sha = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let found = bypasses(
            &config(),
            &present(),
            &pod(&[
                (
                    "rewritten",
                    &format!("{CACHE}/docker-hub/library/nginx:1.27"),
                ),
                ("unmapped", "registry.example.com/team/app:1"),
                ("excluded", "quay.io/excluded/thing:1"),
                ("pinned", &format!("nginx@{sha}")),
                ("invalid", "NOT A REFERENCE"),
                ("bypassing", "redis:7"),
            ]),
        );
        assert_eq!(names(&found), ["bypassing"]);
    }

    #[test]
    fn a_missing_or_broken_rule_means_the_webhook_would_not_rewrite_either() {
        let c = config();
        let quay_only = rules::snapshot(
            &c,
            &[rule("quay", "quay.io", None)],
            &BTreeMap::new(),
            at(10),
        );
        let p = pod(&[("app", "nginx:1.27"), ("tool", "quay.io/org/tool:2")]);
        assert_eq!(names(&bypasses(&c, &quay_only, &p)), ["tool"]);
        let elsewhere = rules::snapshot(
            &c,
            &[rule("docker-hub", "mirror.example.com", None)],
            &BTreeMap::new(),
            at(10),
        );
        assert!(bypasses(&c, &elsewhere, &pod(&[("app", "nginx:1.27")])).is_empty());
    }

    #[test]
    fn pods_the_webhook_leaves_alone_bypass_nothing() {
        let (c, r) = (config(), present());
        let mut opted_out = pod(&[("app", "nginx:1.27")]);
        opted_out.opted_out = true;
        assert!(bypasses(&c, &r, &opted_out).is_empty());
        let mut skip_label = pod(&[("app", "nginx:1.27")]);
        std::sync::Arc::make_mut(&mut skip_label.labels)
            .insert("pullthrough.dev/skip".into(), "true".into());
        assert!(bypasses(&c, &r, &skip_label).is_empty());
        let mut labelled = pod(&[("app", "nginx:1.27")]);
        std::sync::Arc::make_mut(&mut labelled.labels).insert("app".into(), "postgres".into());
        assert!(bypasses(&c, &r, &labelled).is_empty());
        let mut other_label = pod(&[("app", "nginx:1.27")]);
        std::sync::Arc::make_mut(&mut other_label.labels).insert("app".into(), "web".into());
        assert_eq!(bypasses(&c, &r, &other_label).len(), 1);
        let mut owned = pod(&[("app", "nginx:1.27")]);
        owned.owner_kinds = vec!["Cluster".to_owned()].into();
        assert!(bypasses(&c, &r, &owned).is_empty());
    }

    #[test]
    fn containers_put_back_by_the_fallback_do_not_bypass() {
        let mut p = pod(&[("app", "nginx:1.27"), ("sidecar", "redis:7")]);
        p.pull.fallback = Some("[\"app\"]".into());
        assert_eq!(names(&bypasses(&config(), &present(), &p)), ["sidecar"]);
    }

    #[test]
    fn each_cause_is_inferred_from_the_times() {
        let p = pod(&[("app", "nginx:1.27")]);
        let mut facts = Facts::default();
        assert_eq!(
            LikelyCause::infer(&facts, &p, "docker.io"),
            LikelyCause::WebhookUnreachable
        );

        // The namespace was opted in after the Pod was created.
        facts.opted_in_at.insert("shop".into(), at(4_000));
        assert_eq!(
            LikelyCause::infer(&facts, &p, "docker.io"),
            LikelyCause::BeforeNamespaceOptIn {
                opted_in: at(4_000)
            }
        );

        // Opted in earlier; the rule came later.
        facts.opted_in_at.insert("shop".into(), at(2_000));
        facts
            .rule_usable_since
            .insert("docker.io".into(), at(3_500));
        assert_eq!(
            LikelyCause::infer(&facts, &p, "docker.io"),
            LikelyCause::BeforeRule {
                usable_since: at(3_500)
            }
        );
        assert_eq!(
            LikelyCause::infer(&facts, &p, "quay.io"),
            LikelyCause::WebhookUnreachable
        );

        // Everything was in place before the Pod: the webhook did not see it.
        facts
            .rule_usable_since
            .insert("docker.io".into(), at(1_000));
        assert_eq!(
            LikelyCause::infer(&facts, &p, "docker.io"),
            LikelyCause::WebhookUnreachable
        );

        facts.not_opted_in.insert("shop".into());
        assert_eq!(
            LikelyCause::infer(&facts, &p, "docker.io"),
            LikelyCause::NamespaceNotOptedIn
        );
    }

    #[test]
    fn fixes_restart_the_top_level_owner_or_recreate_a_bare_pod() {
        let owner = |kind: &str, name: &str| Owner {
            kind: kind.into(),
            name: name.into(),
        };
        let w = LikelyCause::WebhookUnreachable;
        assert_eq!(
            fix("shop", "p", Some(&owner("Deployment", "web")), w),
            "kubectl rollout restart deployment/web -n shop"
        );
        assert_eq!(
            fix("shop", "p", Some(&owner("StatefulSet", "db")), w),
            "kubectl rollout restart statefulset/db -n shop"
        );
        assert!(fix("shop", "p", Some(&owner("Job", "load")), w).contains("job-name=load"));
        assert!(fix("shop", "p", Some(&owner("CronJob", "nightly")), w).contains("next Jobs"));
        assert!(
            fix("shop", "p", Some(&owner("Rollout", "api")), w)
                .contains("Rollout api creates them again")
        );
        assert!(fix("shop", "p", None, w).contains("kubectl delete pod p -n shop"));
        assert!(
            fix(
                "dev",
                "p",
                Some(&owner("Deployment", "web")),
                LikelyCause::NamespaceNotOptedIn
            )
            .ends_with(
                "by default kubectl label namespace dev pullthrough.dev/enabled=true), then: kubectl rollout restart deployment/web -n dev"
            )
        );
    }

    #[test]
    fn one_warning_notice_per_registry_with_the_fix_and_the_cause() {
        let mut facts = Facts::default();
        facts.opted_in_at.insert("shop".into(), at(4_000));
        let p = pod(&[
            ("app", "nginx:1.27"),
            ("init", "busybox:1.36"),
            ("tool", "quay.io/org/tool:2"),
        ]);
        let found = notices(&config(), &present(), &facts, &p);
        assert_eq!(found.len(), 2);
        let hub = &found[0];
        assert_eq!(hub.reason, REASON_BYPASS);
        assert_eq!(hub.severity, Severity::Warning);
        assert_eq!(hub.cause, "docker.io");
        assert_eq!(hub.resolution, None);
        assert!(
            hub.message.starts_with("Pods of Deployment web run docker.io images from the upstream registry, not through the ECR pull-through cache rule docker-hub (account 123456789012, region eu-west-1)"),
            "{}",
            hub.message
        );
        assert!(
            hub.message
                .contains("kubectl rollout restart deployment/web -n shop")
        );
        assert!(
            !hub.message.contains("x2x9z"),
            "the message is the workload's"
        );
        assert_eq!(
            hub.detail,
            format!(
                "Pod web-7d4b9c-x2x9z: container app runs nginx:1.27 (would be {CACHE}/docker-hub/library/nginx:1.27); container init runs busybox:1.36 (would be {CACHE}/docker-hub/library/busybox:1.36). Likely cause: it was created before its namespace was opted in (1970-01-01T01:06:40Z)."
            )
        );
        assert_eq!(found[1].cause, "quay.io");
        assert!(
            found[1]
                .detail
                .contains("container tool runs quay.io/org/tool:2")
        );

        let nothing = pod(&[("app", &format!("{CACHE}/docker-hub/library/nginx:1.27"))]);
        assert!(notices(&config(), &present(), &facts, &nothing).is_empty());
    }

    #[test]
    fn a_bare_pod_is_named_and_recreated() {
        let mut p = pod(&[("app", "nginx:1.27")]);
        p.owner = None;
        p.owner_kinds = Vec::new().into();
        let found = notices(&config(), &present(), &Facts::default(), &p);
        assert!(
            found[0]
                .message
                .starts_with("Pod web-7d4b9c-x2x9z runs docker.io images")
        );
        assert!(
            found[0]
                .message
                .contains("kubectl delete pod web-7d4b9c-x2x9z -n shop")
        );
        assert!(found[0].detail.contains("unreachable"));
    }

    #[test]
    fn the_gauge_counts_containers_per_mapped_registry() {
        let a = pod(&[("app", "nginx:1.27"), ("tool", "quay.io/org/tool:2")]);
        let b = pod(&[("app", "redis:7")]);
        let counts = count_by_registry(&config(), &present(), [&a, &b]);
        assert_eq!(counts["docker.io"], 2);
        assert_eq!(counts["quay.io"], 1);
        let none = count_by_registry(&config(), &present(), []);
        assert_eq!(none.values().sum::<usize>(), 0);
        assert_eq!(
            none.len(),
            2,
            "every mapped registry is reported, zero or not"
        );
    }

    #[test]
    fn the_opt_in_time_comes_from_the_managed_fields_that_set_the_label() {
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "shop",
                "labels": {"pullthrough.dev/enabled": "true", "team": "a"},
                "managedFields": [
                    {"manager": "kubectl-create", "operation": "Update", "apiVersion": "v1",
                     "time": "2026-11-01T08:00:00Z", "fieldsType": "FieldsV1",
                     "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:team": {}}}}},
                    {"manager": "kubectl-label", "operation": "Update", "apiVersion": "v1",
                     "time": "2026-11-20T09:30:00Z", "fieldsType": "FieldsV1",
                     "fieldsV1": {"f:metadata": {"f:labels": {"f:pullthrough.dev/enabled": {}}}}}
                ]
            }
        }))
        .unwrap();
        let default = Selector::parse("pullthrough.dev/enabled=true").unwrap();
        assert_eq!(
            opted_in_at(&ns, &default).map(rfc3339).as_deref(),
            Some("2026-11-20T09:30:00Z")
        );
        let by_team = Selector::parse("team in (a,b)").unwrap();
        assert_eq!(
            opted_in_at(&ns, &by_team).map(rfc3339).as_deref(),
            Some("2026-11-01T08:00:00Z")
        );
        let both = Selector::parse("team=a,pullthrough.dev/enabled=true").unwrap();
        assert_eq!(
            opted_in_at(&ns, &both).map(rfc3339).as_deref(),
            Some("2026-11-20T09:30:00Z")
        );
        let unknown = Selector::parse("other=x").unwrap();
        assert_eq!(opted_in_at(&ns, &unknown), None);
    }

    #[test]
    fn rule_history_remembers_when_a_rule_became_usable() {
        let c = config();
        let snap =
            |rules: &[CacheRule], t: u64| rules::snapshot(&c, rules, &BTreeMap::new(), at(t));
        let mut h = RuleHistory::default();
        // Usable at the first read, without createdAt: nothing is known.
        let first = snap(&[rule("quay", "quay.io", None)], 100);
        h.observe(&first);
        assert!(h.usable_since(&first).is_empty());
        // docker-hub appears later (ECR gives no createdAt here): seen usable at 200.
        let second = snap(
            &[
                rule("quay", "quay.io", None),
                rule("docker-hub", "registry-1.docker.io", None),
            ],
            200,
        );
        h.observe(&RuleSnapshot::unknown());
        h.observe(&second);
        assert_eq!(h.usable_since(&second)["docker.io"], at(200));
        assert!(!h.usable_since(&second).contains_key("quay.io"));
        // createdAt later than what was seen wins; an unusable rule has no such time.
        let created = snap(
            &[
                rule("quay", "quay.io", Some(300)),
                rule("docker-hub", "registry-1.docker.io", Some(150)),
            ],
            400,
        );
        h.observe(&created);
        let since = h.usable_since(&created);
        assert_eq!(since["docker.io"], at(200));
        assert_eq!(since["quay.io"], at(300));
        let gone = snap(&[rule("quay", "quay.io", Some(300))], 500);
        h.observe(&gone);
        assert!(!h.usable_since(&gone).contains_key("docker.io"));
    }
}
