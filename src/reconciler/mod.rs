//! The reconciler: tells people, through Kubernetes Events, which Pods depend on a pull-through
//! cache rule that is missing or broken.
//!
//! This module is the pure part: what the reconciler keeps of a Pod ([`PodRecord`]), which of
//! its images depend on an unusable rule ([`findings`]), and which Events to publish so that each
//! Pod gets one Event per cause, re-sent no more often than an interval ([`Tracker`]). The
//! watchers, the Lease and the Recorder live in [`run`].

pub mod notice;
pub mod run;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::admission::{ORIGINAL_IMAGES_ANNOTATION, SKIP_ANNOTATION};
use crate::config::{Config, Mapping};
use crate::reference::Reference;
use crate::rewrite::{Decision, SkipReason, decide};
use crate::rules::{self, RuleSnapshot, RuleState};

/// Warning on a Pod whose images need a rule that does not exist.
pub const REASON_MISSING: &str = "PullThroughCacheRuleMissing";
/// Warning on a Pod whose images need a rule that caches another upstream.
pub const REASON_WRONG_UPSTREAM: &str = "PullThroughCacheRuleWrongUpstream";
/// Warning on a Pod whose images need a rule whose upstream credentials fail validation.
pub const REASON_CREDENTIALS_FAILING: &str = "PullThroughCacheRuleCredentialsFailing";
/// Normal event on a Pod once the rules it needed are usable again.
pub const REASON_RESTORED: &str = "PullThroughCacheRuleRestored";
/// Warning on the reconciler's Deployment: the rules that are not usable, with Pod counts.
pub const REASON_SUMMARY: &str = "PullThroughCacheRulesUnusable";
/// Normal event on the reconciler's Deployment once every rule is usable again.
pub const REASON_SUMMARY_READY: &str = "PullThroughCacheRulesReady";
/// The `action` of every Event the reconciler publishes.
pub const ACTION: &str = "CheckPullThroughCacheRules";
/// Longest note the Events API accepts.
pub const NOTE_MAX_LEN: usize = 1024;

/// Why a rule cannot be used; one Event reason each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cause {
    /// No rule has the prefix.
    Missing,
    /// The rule caches another upstream.
    WrongUpstream,
    /// The rule's upstream credentials fail validation.
    CredentialsFailing,
}

impl Cause {
    /// The cause of a rule state; `None` for a usable rule.
    pub fn of(state: &RuleState) -> Option<Self> {
        match state {
            RuleState::Present => None,
            RuleState::Missing => Some(Self::Missing),
            RuleState::WrongUpstream { .. } => Some(Self::WrongUpstream),
            RuleState::CredentialsFailing { .. } => Some(Self::CredentialsFailing),
        }
    }

    /// The Event reason.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => REASON_MISSING,
            Self::WrongUpstream => REASON_WRONG_UPSTREAM,
            Self::CredentialsFailing => REASON_CREDENTIALS_FAILING,
        }
    }
}

/// One container image of a Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerImage {
    /// Container name.
    pub container: String,
    /// The image the Pod runs.
    pub image: String,
    /// The image before the webhook rewrote it, from the Pod's annotation.
    pub original: Option<String>,
}

/// What the reconciler keeps of a Pod: little, so that watching every Pod stays cheap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRecord {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID, which Events reference.
    pub uid: String,
    /// Labels, for the configured Pod-label exclusions.
    pub labels: BTreeMap<String, String>,
    /// Kinds of the Pod's owners, for the owner-kind exclusions.
    pub owner_kinds: Vec<String>,
    /// The workload the Pod belongs to; `None` for a bare Pod.
    pub owner: Option<notice::Owner>,
    /// Whether the Pod opts out with the skip annotation.
    pub opted_out: bool,
    /// Every container, init container and ephemeral container.
    pub containers: Vec<ContainerImage>,
}

impl PodRecord {
    /// Keeps what the reconciler needs of a Pod; `None` when it has no namespace, name or UID.
    pub fn from_pod(pod: &Pod) -> Option<Self> {
        let meta = &pod.metadata;
        let annotations = meta.annotations.as_ref();
        let originals: BTreeMap<String, String> = annotations
            .and_then(|a| a.get(ORIGINAL_IMAGES_ANNOTATION))
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        let mut containers = Vec::new();
        if let Some(spec) = &pod.spec {
            let plain = spec
                .init_containers
                .iter()
                .flatten()
                .chain(&spec.containers)
                .map(|c: &Container| (&c.name, c.image.as_ref()));
            let ephemeral = spec
                .ephemeral_containers
                .iter()
                .flatten()
                .map(|c| (&c.name, c.image.as_ref()));
            for (name, image) in plain.chain(ephemeral) {
                let Some(image) = image else { continue };
                containers.push(ContainerImage {
                    container: name.clone(),
                    image: image.clone(),
                    original: originals.get(name).filter(|o| *o != image).cloned(),
                });
            }
        }
        Some(Self {
            namespace: meta.namespace.clone()?,
            name: meta.name.clone()?,
            uid: meta.uid.clone()?,
            labels: meta.labels.clone().unwrap_or_default(),
            owner_kinds: meta
                .owner_references
                .iter()
                .flatten()
                .map(|o| o.kind.clone())
                .collect(),
            owner: notice::Owner::of_pod(
                meta.owner_references.as_deref().unwrap_or_default(),
                meta.labels.as_ref(),
            ),
            opted_out: annotations
                .and_then(|a| a.get(SKIP_ANNOTATION))
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
            containers,
        })
    }

    /// Whether the webhook leaves this Pod alone under `config`.
    pub(crate) fn exempt(&self, config: &Config) -> bool {
        self.opted_out
            || config
                .exclude
                .pod_labels
                .iter()
                .any(|sel| sel.matches(self.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
            || self
                .owner_kinds
                .iter()
                .any(|kind| config.exclude.owner_kinds.contains(kind))
    }
}

/// One image that depends on an unusable rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Container name.
    pub container: String,
    /// The image the Pod runs.
    pub image: String,
    /// The image before the webhook rewrote it, when it was.
    pub original: Option<String>,
    /// Whether the image points at the cache (and so cannot be pulled), rather than being
    /// left on its upstream by the webhook.
    pub rewritten: bool,
    /// The mapped registry.
    pub registry: String,
    /// The ECR repository prefix of the rule.
    pub prefix: String,
    /// What is wrong with the rule.
    pub state: RuleState,
}

/// The mapping whose rule an image in the cache registry was pulled through: the longest
/// configured prefix that starts its repository, else the `ROOT` mapping.
fn mapping_of_cached<'c>(config: &'c Config, repository: &str) -> Option<&'c Mapping> {
    let prefixed = config
        .registries
        .values()
        .filter(|m| {
            m.prefix.as_deref().is_some_and(|p| {
                repository
                    .strip_prefix(p)
                    .is_some_and(|rest| rest.starts_with('/'))
            })
        })
        .max_by_key(|m| m.prefix.as_deref().map_or(0, str::len));
    prefixed.or_else(|| config.registries.values().find(|m| m.prefix.is_none()))
}

/// The images of `pod` that depend on a rule that `rules` knows to be unusable, grouped by
/// cause. Images already in the cache are checked whatever the Pod's exclusions say (they
/// cannot be pulled); images on their upstream only when the webhook would have rewritten
/// them but for the rule.
pub fn findings(
    config: &Config,
    rules: &RuleSnapshot,
    pod: &PodRecord,
) -> BTreeMap<Cause, Vec<Finding>> {
    let mut out: BTreeMap<Cause, Vec<Finding>> = BTreeMap::new();
    let exempt = pod.exempt(config);
    for c in &pod.containers {
        let Ok(reference) = Reference::parse(&c.image) else {
            continue;
        };
        let (mapping, rewritten) = if reference.registry() == config.registry_host {
            (mapping_of_cached(config, reference.repository()), true)
        } else if exempt {
            (None, false)
        } else {
            let verdict = decide(config, rules, &c.image);
            match verdict.decision {
                Decision::Skip(SkipReason::RuleUnusable { .. }) => (verdict.mapping, false),
                _ => (None, false),
            }
        };
        let Some(mapping) = mapping else { continue };
        let Some(state) = rules.state(&mapping.registry) else {
            continue;
        };
        let Some(cause) = Cause::of(state) else {
            continue;
        };
        out.entry(cause).or_default().push(Finding {
            container: c.container.clone(),
            image: c.image.clone(),
            original: c.original.clone(),
            rewritten,
            registry: mapping.registry.clone(),
            prefix: mapping.ecr_prefix().to_owned(),
            state: state.clone(),
        });
    }
    out
}

/// The fix for an unusable rule, in one sentence with the command.
fn fix(config: &Config, mapping: Option<&Mapping>, state: &RuleState) -> String {
    let Some(mapping) = mapping else {
        return "Run `pullthrough rules --check` for the fix.".to_owned();
    };
    match state {
        RuleState::Present => String::new(),
        RuleState::Missing => {
            let secret = if mapping.needs_credentials {
                format!(
                    " after storing the upstream credentials in Secrets Manager as {}",
                    rules::secret_name(mapping)
                )
            } else {
                String::new()
            };
            format!(
                "Create it{secret}: {}",
                rules::create_command(config, mapping)
            )
        }
        RuleState::WrongUpstream { .. } => format!(
            "Delete it (aws ecr delete-pull-through-cache-rule --region {} --ecr-repository-prefix {}) and create it again: {}",
            config.region,
            mapping.ecr_prefix(),
            rules::create_command(config, mapping)
        ),
        RuleState::CredentialsFailing { .. } => format!(
            "Put a valid username and accessToken in the secret {} (aws secretsmanager put-secret-value), then run aws ecr validate-pull-through-cache-rule --region {} --ecr-repository-prefix {}.",
            rules::secret_name(mapping),
            config.region,
            mapping.ecr_prefix()
        ),
    }
}

fn describe_rule(config: &Config, f: &Finding) -> String {
    let what = match &f.state {
        RuleState::Present => "is present".to_owned(),
        RuleState::Missing => "does not exist".to_owned(),
        RuleState::WrongUpstream { actual } => format!("caches {actual}, not {}", f.registry),
        RuleState::CredentialsFailing { failure } => {
            format!("fails validation of its upstream credentials ({failure})")
        }
    };
    format!(
        "The ECR pull-through cache rule {} for {} {what} in account {}, region {}.",
        f.prefix, f.registry, config.account_id, config.region
    )
}

/// Cuts `note` to the Events API's limit, on a character boundary.
fn bounded(mut note: String) -> String {
    if note.len() > NOTE_MAX_LEN {
        let mut end = NOTE_MAX_LEN - '…'.len_utf8();
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push('…');
    }
    note
}

/// The note of a Pod's Warning for one cause: each rule, each image, and the fix.
pub fn pod_note(config: &Config, found: &[Finding]) -> String {
    let mut note = String::new();
    let mut by_rule: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
    for f in found {
        by_rule.entry(f.prefix.as_str()).or_default().push(f);
    }
    for images in by_rule.values() {
        let first = images[0];
        if !note.is_empty() {
            note.push(' ');
        }
        note.push_str(&describe_rule(config, first));
        for f in images {
            if f.rewritten {
                let _ = write!(note, " Container {} cannot pull {}", f.container, f.image);
                if let Some(original) = &f.original {
                    let _ = write!(note, " (rewritten from {original})");
                }
                note.push('.');
            } else {
                let _ = write!(
                    note,
                    " Container {} pulls {} from its upstream, not through the cache.",
                    f.container, f.image
                );
            }
        }
        let _ = write!(
            note,
            " {}",
            fix(config, config.mapping(&first.registry), &first.state)
        );
    }
    bounded(note)
}

/// A Pod an Event is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
}

impl PodRef {
    fn of(pod: &PodRecord) -> Self {
        Self {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            uid: pod.uid.clone(),
        }
    }
}

/// What an Event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A Pod.
    Pod(PodRef),
    /// The reconciler's own Deployment.
    Deployment,
}

/// Severity of an Event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Something is back to normal.
    Normal,
    /// Something needs a person.
    Warning,
}

/// One Event to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// What it is about.
    pub target: Target,
    /// Severity.
    pub severity: Severity,
    /// Reason, one of the `REASON_*` constants.
    pub reason: &'static str,
    /// Human-readable note, at most [`NOTE_MAX_LEN`] bytes.
    pub note: String,
    key: Key,
    registries: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Pod(String, Cause),
    /// A notice of another check: Pod UID, reason, cause.
    Notice(String, &'static str, String),
    Restored(String, Cause),
    Summary,
}

#[derive(Debug, Clone)]
struct Sent {
    at: Instant,
    note: String,
    pod: Option<PodRef>,
    /// Registries whose rules were unusable when the Warning was sent.
    registries: BTreeSet<String>,
}

/// The Pods in scope and what is known of the rules, as of one reconcile.
pub struct World<'a> {
    /// The configuration in force.
    pub config: &'a Config,
    /// The rule snapshot; must be known (fetched) for anything to be planned.
    pub rules: &'a RuleSnapshot,
    /// The Pods of opted-in namespaces.
    pub pods: &'a [&'a PodRecord],
}

/// Remembers which Events were published, so that each Pod gets one per cause, re-sent no more
/// often than `resend`, and a Normal event once its rules are back.
#[derive(Debug)]
pub struct Tracker {
    resend: Duration,
    sent: HashMap<Key, Sent>,
}

impl Tracker {
    /// A tracker that re-sends a standing Warning every `resend`.
    pub fn new(resend: Duration) -> Self {
        Self {
            resend,
            sent: HashMap::new(),
        }
    }

    /// How many Warnings stand (sent and not yet resolved), the summary included.
    pub fn standing(&self) -> usize {
        self.sent.len()
    }

    fn due(&self, key: &Key, note: &str, now: Instant) -> bool {
        self.sent
            .get(key)
            .is_none_or(|s| s.note != note || now.duration_since(s.at) >= self.resend)
    }

    /// The Events to publish now. Nothing is remembered until [`Tracker::published`] says the
    /// Event was accepted, so a failed publication is planned again next time.
    pub fn plan(&mut self, world: &World<'_>, summary: bool, now: Instant) -> Vec<Publish> {
        let mut out = Vec::new();
        if !world.rules.is_known() {
            // Nothing can be said, and nothing resolved, without the rules.
            return out;
        }
        let config = world.config;
        let mut current: HashSet<Key> = HashSet::new();
        let mut alive: HashMap<&str, &PodRecord> = HashMap::new();
        let mut pods_per_registry: BTreeMap<&str, usize> = BTreeMap::new();
        for pod in world.pods {
            alive.insert(pod.uid.as_str(), pod);
            let found = findings(config, world.rules, pod);
            let mut registries = BTreeSet::new();
            for (cause, images) in &found {
                let key = Key::Pod(pod.uid.clone(), *cause);
                let note = pod_note(config, images);
                registries.extend(images.iter().map(|f| f.registry.clone()));
                if self.due(&key, &note, now) {
                    out.push(Publish {
                        target: Target::Pod(PodRef::of(pod)),
                        severity: Severity::Warning,
                        reason: cause.reason(),
                        note,
                        key: key.clone(),
                        registries: images.iter().map(|f| f.registry.clone()).collect(),
                    });
                }
                current.insert(key);
            }
            for r in &registries {
                if let Some(m) = config.mapping(r) {
                    *pods_per_registry.entry(m.registry.as_str()).or_default() += 1;
                }
            }
        }
        // Warnings that no longer stand: a Normal event when the Pod is still there and its
        // rules are usable now; forgotten silently when the Pod is gone.
        let mut stale: Vec<Key> = Vec::new();
        for (key, sent) in &self.sent {
            let Key::Pod(uid, cause) = key else { continue };
            if current.contains(key) {
                continue;
            }
            let restored = alive.get(uid.as_str()).is_some_and(|_| {
                sent.registries
                    .iter()
                    .all(|r| world.rules.state(r).is_some_and(RuleState::is_usable))
            });
            match (restored, &sent.pod) {
                (true, Some(pod)) => out.push(Publish {
                    target: Target::Pod(pod.clone()),
                    severity: Severity::Normal,
                    reason: REASON_RESTORED,
                    note: bounded(format!(
                        "The ECR pull-through cache rule{} for {} {} usable again in account {}, region {}; this Pod's images can be pulled through the cache.",
                        if sent.registries.len() == 1 { "" } else { "s" },
                        sent.registries.iter().cloned().collect::<Vec<_>>().join(", "),
                        if sent.registries.len() == 1 { "is" } else { "are" },
                        config.account_id,
                        config.region,
                    )),
                    key: Key::Restored(uid.clone(), *cause),
                    registries: sent.registries.clone(),
                }),
                _ => stale.push(key.clone()),
            }
        }
        for key in stale {
            self.sent.remove(&key);
        }
        if summary {
            out.extend(self.plan_summary(world, &pods_per_registry, now));
        }
        out
    }

    fn plan_summary(
        &self,
        world: &World<'_>,
        pods_per_registry: &BTreeMap<&str, usize>,
        now: Instant,
    ) -> Option<Publish> {
        let config = world.config;
        let unusable: Vec<(&str, &RuleState)> =
            world.rules.iter().filter(|(_, s)| !s.is_usable()).collect();
        if unusable.is_empty() {
            return self.sent.contains_key(&Key::Summary).then(|| Publish {
                target: Target::Deployment,
                severity: Severity::Normal,
                reason: REASON_SUMMARY_READY,
                note: format!(
                    "Every pull-through cache rule the map needs is usable in account {}, region {}.",
                    config.account_id, config.region
                ),
                key: Key::Summary,
                registries: BTreeSet::new(),
            });
        }
        let mut note = format!(
            "{} of {} pull-through cache rules the map needs are not usable in account {}, region {}:",
            unusable.len(),
            world.rules.iter().count(),
            config.account_id,
            config.region
        );
        for (i, (registry, state)) in unusable.iter().enumerate() {
            let prefix = config.mapping(registry).map_or("?", Mapping::ecr_prefix);
            let pods = pods_per_registry.get(registry).copied().unwrap_or(0);
            let _ = write!(
                note,
                "{} {prefix} ({registry}) {state}, {pods} Pod{}",
                if i == 0 { "" } else { ";" },
                if pods == 1 { "" } else { "s" }
            );
        }
        note.push_str(". Run `pullthrough rules --check` for the commands that fix them.");
        let note = bounded(note);
        self.due(&Key::Summary, &note, now).then(|| Publish {
            target: Target::Deployment,
            severity: Severity::Warning,
            reason: REASON_SUMMARY,
            note,
            key: Key::Summary,
            registries: unusable.iter().map(|(r, _)| (*r).to_owned()).collect(),
        })
    }

    /// Records that `event` was accepted by the API server.
    pub fn published(&mut self, event: &Publish, now: Instant) {
        let sent = Sent {
            at: now,
            note: event.note.clone(),
            pod: match &event.target {
                Target::Pod(p) => Some(p.clone()),
                Target::Deployment => None,
            },
            registries: event.registries.clone(),
        };
        match &event.key {
            Key::Restored(uid, cause) => {
                self.sent.remove(&Key::Pod(uid.clone(), *cause));
            }
            Key::Summary if event.severity == Severity::Normal => {
                self.sent.remove(&Key::Summary);
            }
            key => {
                self.sent.insert(key.clone(), sent);
            }
        }
    }

    /// Forgets a Pod that was deleted.
    pub fn forget(&mut self, uid: &str) {
        self.sent.retain(|k, _| {
            !matches!(k, Key::Pod(u, _) | Key::Restored(u, _) | Key::Notice(u, _, _) if u == uid)
        });
    }

    /// The Events for what `check` says about each of `pods`: one per Pod, reason and cause,
    /// re-sent no more often than the rule Warnings; a notice that ends is forgotten.
    pub fn plan_notices(
        &mut self,
        pods: &[&PodRecord],
        check: impl Fn(&PodRecord) -> Vec<notice::Notice>,
        now: Instant,
    ) -> Vec<Publish> {
        let mut out = Vec::new();
        let mut current = HashSet::new();
        for pod in pods {
            for n in check(pod) {
                let key = Key::Notice(pod.uid.clone(), n.reason, n.cause.clone());
                let note = bounded(format!("{} {}.", n.message, n.detail));
                if self.due(&key, &note, now) {
                    out.push(Publish {
                        target: Target::Pod(PodRef::of(pod)),
                        severity: match n.severity {
                            notice::Severity::Normal => Severity::Normal,
                            notice::Severity::Warning => Severity::Warning,
                        },
                        reason: n.reason,
                        note,
                        key: key.clone(),
                        registries: BTreeSet::new(),
                    });
                }
                current.insert(key);
            }
        }
        self.sent
            .retain(|k, _| !matches!(k, Key::Notice(..)) || current.contains(k));
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::config::Overrides;
    use crate::ecr::CacheRule;

    const CACHE: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

    fn config() -> Config {
        Config::load(
            "accountId: \"123456789012\"\nregion: eu-west-1\nregistries:\n  docker.io: docker-hub\n  quay.io: quay\n  ghcr.io: github/mirror\nexclude:\n  podLabels: [app=postgres]\n  ownerKinds: [Cluster]\n",
            &Overrides::default(),
        )
        .unwrap()
    }

    fn rule(prefix: &str, url: &str) -> CacheRule {
        CacheRule::new(prefix, url)
    }

    fn snapshot(rules: &[CacheRule]) -> RuleSnapshot {
        rules::snapshot(&config(), rules, &BTreeMap::new(), SystemTime::now())
    }

    fn record(uid: &str, images: &[&str]) -> PodRecord {
        PodRecord {
            namespace: "shop".into(),
            name: format!("pod-{uid}"),
            uid: uid.into(),
            labels: BTreeMap::new(),
            owner_kinds: Vec::new(),
            owner: None,
            opted_out: false,
            containers: images
                .iter()
                .enumerate()
                .map(|(i, image)| ContainerImage {
                    container: format!("c{i}"),
                    image: (*image).to_owned(),
                    original: None,
                })
                .collect(),
        }
    }

    #[test]
    fn pod_records_keep_images_originals_and_exclusion_inputs() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "web", "namespace": "shop", "uid": "u1",
                "labels": {"app": "web"},
                "annotations": {
                    "pullthrough.dev/original-images": "{\"app\":\"nginx:1.27\",\"init\":\"busybox\"}",
                    "pullthrough.dev/skip": "TRUE"
                },
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "rs"}]
            },
            "spec": {
                "initContainers": [{"name": "init", "image": "busybox"}],
                "containers": [{"name": "app", "image": format!("{CACHE}/docker-hub/library/nginx:1.27")}],
                "ephemeralContainers": [{"name": "debug", "image": "quay.io/x/y:1"}]
            }
        }))
        .unwrap();
        let r = PodRecord::from_pod(&pod).unwrap();
        assert_eq!(r.uid, "u1");
        assert!(r.opted_out);
        assert_eq!(r.owner_kinds, vec!["ReplicaSet".to_owned()]);
        let names: Vec<_> = r.containers.iter().map(|c| c.container.as_str()).collect();
        assert_eq!(names, ["init", "app", "debug"]);
        assert_eq!(r.containers[1].original.as_deref(), Some("nginx:1.27"));
        // An original equal to the current image was not rewritten.
        assert_eq!(r.containers[0].original, None);
        let mut no_uid = pod;
        no_uid.metadata.uid = None;
        assert!(PodRecord::from_pod(&no_uid).is_none());
    }

    #[test]
    fn findings_cover_cached_images_and_upstream_images_left_alone() {
        let c = config();
        let rules = snapshot(&[rule("quay", "quay.io"), rule("github/mirror", "ghcr.io")]);
        let pod = record(
            "u",
            &[
                &format!("{CACHE}/docker-hub/library/nginx:1.27"),
                "redis:7",
                &format!("{CACHE}/quay/org/app:1"),
                &format!("{CACHE}/github/mirror/org/tool:2"),
                "registry.example.com/x:1",
                "NOT A REFERENCE",
            ],
        );
        let found = findings(&c, &rules, &pod);
        assert_eq!(found.len(), 1);
        let missing = &found[&Cause::Missing];
        assert_eq!(missing.len(), 2);
        assert!(missing[0].rewritten);
        assert_eq!(missing[0].prefix, "docker-hub");
        assert!(!missing[1].rewritten);
        assert_eq!(missing[1].image, "redis:7");
    }

    #[test]
    fn the_longest_prefix_names_the_rule() {
        let c = config();
        let rules = snapshot(&[
            rule("docker-hub", "registry-1.docker.io"),
            rule("quay", "quay.io"),
        ]);
        // github/mirror is missing; an image under it must not be taken for another prefix.
        let pod = record("u", &[&format!("{CACHE}/github/mirror/org/tool:2")]);
        let found = findings(&c, &rules, &pod);
        assert_eq!(found[&Cause::Missing][0].registry, "ghcr.io");
    }

    #[test]
    fn excluded_pods_are_checked_only_for_images_already_in_the_cache() {
        let c = config();
        let rules = snapshot(&[]);
        let mut pod = record(
            "u",
            &["redis:7", &format!("{CACHE}/docker-hub/library/redis:7")],
        );
        pod.labels.insert("app".into(), "postgres".into());
        let found = findings(&c, &rules, &pod);
        assert_eq!(found[&Cause::Missing].len(), 1);
        assert!(found[&Cause::Missing][0].rewritten);
        let mut owned = record("v", &["redis:7"]);
        owned.owner_kinds.push("Cluster".into());
        assert!(findings(&c, &rules, &owned).is_empty());
        let mut opted = record("w", &["redis:7"]);
        opted.opted_out = true;
        assert!(findings(&c, &rules, &opted).is_empty());
    }

    #[test]
    fn notes_name_rule_image_account_region_and_fix() {
        let c = config();
        let rules = snapshot(&[]);
        let mut pod = record("u", &[&format!("{CACHE}/docker-hub/library/nginx:1.27")]);
        pod.containers[0].original = Some("nginx:1.27".into());
        let found = findings(&c, &rules, &pod);
        let note = pod_note(&c, &found[&Cause::Missing]);
        assert!(note.starts_with("The ECR pull-through cache rule docker-hub for docker.io does not exist in account 123456789012, region eu-west-1."), "{note}");
        assert!(note.contains("Container c0 cannot pull 123456789012.dkr.ecr.eu-west-1.amazonaws.com/docker-hub/library/nginx:1.27 (rewritten from nginx:1.27)."));
        assert!(note.contains("ecr-pullthroughcache/docker-hub"));
        assert!(note.contains("aws ecr create-pull-through-cache-rule --region eu-west-1"));

        let wrong = snapshot(&[rule("quay", "quay.example.com")]);
        let pod = record("v", &["quay.io/org/app:1"]);
        let found = findings(&c, &wrong, &pod);
        let note = pod_note(&c, &found[&Cause::WrongUpstream]);
        assert!(
            note.contains("caches quay.example.com, not quay.io"),
            "{note}"
        );
        assert!(note.contains("pulls quay.io/org/app:1 from its upstream"));
        assert!(note.contains("delete-pull-through-cache-rule"));
    }

    #[test]
    fn notes_are_cut_to_the_api_limit_on_a_character_boundary() {
        let long = "é".repeat(2000);
        let cut = bounded(long);
        assert!(cut.len() <= NOTE_MAX_LEN);
        assert!(cut.ends_with('…'));
        assert_eq!(bounded("short".into()), "short");
    }

    fn world<'a>(c: &'a Config, rules: &'a RuleSnapshot, pods: &'a [&'a PodRecord]) -> World<'a> {
        World {
            config: c,
            rules,
            pods,
        }
    }

    fn publish_all(t: &mut Tracker, events: &[Publish], now: Instant) {
        for e in events {
            t.published(e, now);
        }
    }

    #[test]
    fn one_warning_per_pod_and_cause_then_resent_after_the_interval() {
        let c = config();
        let missing = snapshot(&[]);
        let pod = record("u", &["redis:7", "nginx:1", "quay.io/a/b:1"]);
        let pods = [&pod];
        let mut t = Tracker::new(Duration::from_mins(30));
        let t0 = Instant::now();
        let first = t.plan(&world(&c, &missing, &pods), true, t0);
        assert_eq!(first.len(), 2, "{first:#?}");
        assert_eq!(first[0].reason, REASON_MISSING);
        assert_eq!(first[0].severity, Severity::Warning);
        assert_eq!(first[1].target, Target::Deployment);
        assert!(
            first[1].note.starts_with("3 of 3 pull-through cache rules"),
            "{}",
            first[1].note
        );
        assert!(
            first[1]
                .note
                .contains("docker-hub (docker.io) missing, 1 Pod;")
        );
        publish_all(&mut t, &first, t0);
        assert!(
            t.plan(
                &world(&c, &missing, &pods),
                true,
                t0 + Duration::from_mins(29)
            )
            .is_empty()
        );
        let again = t.plan(
            &world(&c, &missing, &pods),
            true,
            t0 + Duration::from_mins(30),
        );
        assert_eq!(again.len(), 2);
    }

    #[test]
    fn a_failed_publication_is_planned_again() {
        let c = config();
        let missing = snapshot(&[]);
        let pod = record("u", &["redis:7"]);
        let pods = [&pod];
        let mut t = Tracker::new(Duration::from_mins(30));
        let now = Instant::now();
        assert_eq!(t.plan(&world(&c, &missing, &pods), false, now).len(), 1);
        assert_eq!(t.plan(&world(&c, &missing, &pods), false, now).len(), 1);
    }

    #[test]
    fn restored_rules_give_a_normal_event_and_deleted_pods_none() {
        let c = config();
        let missing = snapshot(&[]);
        let present = snapshot(&[
            rule("docker-hub", "registry-1.docker.io"),
            rule("quay", "quay.io"),
            rule("github/mirror", "ghcr.io"),
        ]);
        let a = record("a", &["redis:7"]);
        let b = record("b", &["nginx:1"]);
        let mut t = Tracker::new(Duration::from_mins(30));
        let now = Instant::now();
        let events = t.plan(&world(&c, &missing, &[&a, &b]), true, now);
        publish_all(&mut t, &events, now);
        assert_eq!(t.standing(), 3);

        // b is deleted; the rules come back.
        t.forget("b");
        let events = t.plan(&world(&c, &present, &[&a]), true, now);
        assert_eq!(events.len(), 2, "{events:#?}");
        assert_eq!(events[0].reason, REASON_RESTORED);
        assert_eq!(events[0].severity, Severity::Normal);
        assert!(
            events[0].note.contains("docker.io is usable again"),
            "{}",
            events[0].note
        );
        assert_eq!(events[1].reason, REASON_SUMMARY_READY);
        publish_all(&mut t, &events, now);
        assert_eq!(t.standing(), 0);
        assert!(t.plan(&world(&c, &present, &[&a]), true, now).is_empty());
    }

    #[test]
    fn unknown_rules_plan_nothing_and_resolve_nothing() {
        let c = config();
        let missing = snapshot(&[]);
        let pod = record("u", &["redis:7"]);
        let mut t = Tracker::new(Duration::from_mins(30));
        let now = Instant::now();
        let events = t.plan(&world(&c, &missing, &[&pod]), true, now);
        publish_all(&mut t, &events, now);
        let unknown = RuleSnapshot::unknown();
        assert!(t.plan(&world(&c, &unknown, &[&pod]), true, now).is_empty());
        assert_eq!(t.standing(), 2);
    }

    #[test]
    fn a_changed_cause_is_a_new_warning_without_a_false_restore() {
        let c = config();
        let missing = snapshot(&[]);
        let wrong = snapshot(&[rule("docker-hub", "mirror.example.com")]);
        let pod = record("u", &["redis:7"]);
        let mut t = Tracker::new(Duration::from_mins(30));
        let now = Instant::now();
        let events = t.plan(&world(&c, &missing, &[&pod]), false, now);
        publish_all(&mut t, &events, now);
        let events = t.plan(&world(&c, &wrong, &[&pod]), false, now);
        assert_eq!(events.len(), 1, "{events:#?}");
        assert_eq!(events[0].reason, REASON_WRONG_UPSTREAM);
    }

    #[test]
    fn notices_of_other_checks_become_pod_events_once_until_they_change_or_end() {
        let check = |pod: &PodRecord| -> Vec<notice::Notice> {
            pod.containers
                .iter()
                .filter(|c| c.image.contains('@'))
                .map(|c| notice::Notice {
                    reason: "PullThroughCacheDigestUnavailable",
                    severity: notice::Severity::Warning,
                    cause: "tag_moved".into(),
                    message: "The tag moved.".into(),
                    detail: format!("container {}", c.container),
                    resolution: None,
                })
                .collect()
        };
        let pinned = record("u1", &["nginx:1.27@sha256:aa"]);
        let plain = record("u2", &["nginx:1.27"]);
        let mut t = Tracker::new(Duration::from_mins(30));
        let now = Instant::now();
        let events = t.plan_notices(&[&pinned, &plain], check, now);
        assert_eq!(events.len(), 1, "{events:#?}");
        assert_eq!(events[0].reason, "PullThroughCacheDigestUnavailable");
        assert_eq!(events[0].severity, Severity::Warning);
        assert_eq!(events[0].note, "The tag moved. container c0.");
        assert!(matches!(&events[0].target, Target::Pod(p) if p.uid == "u1"));
        t.published(&events[0], now);
        assert!(t.plan_notices(&[&pinned, &plain], check, now).is_empty());
        assert_eq!(
            t.plan_notices(&[&pinned], check, now + Duration::from_mins(30))
                .len(),
            1,
            "re-sent after the interval"
        );
        // Gone: forgotten, and a new one is sent at once.
        assert!(t.plan_notices(&[&plain], check, now).is_empty());
        assert_eq!(t.standing(), 0);
        assert_eq!(t.plan_notices(&[&pinned], check, now).len(), 1);
    }
}
