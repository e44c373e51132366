//! Memory of pull failures across reconcile passes: when each was first seen, which Events stand, which containers fell back.
//!
//! The check in the parent module sees one Pod as it is now; the fallback needs to know how
//! long a container has been failing, the recovery needs to know that it failed before, and
//! an `ImagePullBackOff` message without the error (Kubernetes before 1.30) is best read as
//! the `ErrImagePull` that came before it. Only the Lease holder plans, so only it remembers.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use super::fallback::{self, FallbackPlan};
use super::{
    Cause, Failure, REASON_FALLBACK, REASON_PULL_FAILING, REASON_PULL_RECOVERED, failures,
};
use crate::config::Config;
use crate::notice::Severity;
use crate::notice::bounded;
use crate::pod::PodRecord;
use crate::rules::RuleSnapshot;

type ContainerKey = (String, String);

#[derive(Debug, Clone)]
struct Seen {
    since: Instant,
    cause: Cause,
    /// Whether it may fall back at all (not ephemeral, not listed already).
    eligible: bool,
}

#[derive(Debug, Clone)]
struct Standing {
    at: Instant,
    containers: BTreeSet<String>,
}

/// The Pod an Event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodTarget {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
}

impl PodTarget {
    fn of(pod: &PodRecord) -> Self {
        Self {
            namespace: pod.namespace.to_string(),
            name: pod.name.clone(),
            uid: pod.uid.clone(),
        }
    }
}

/// One Event about pull failures of one Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullEvent {
    /// The Pod.
    pub pod: PodTarget,
    /// Warning while failing, Normal once recovered.
    pub severity: Severity,
    /// `PullThroughCachePullFailing` or `PullThroughCachePullRecovered`.
    pub reason: &'static str,
    /// The note, at most [`NOTE_MAX_LEN`](crate::notice::NOTE_MAX_LEN) bytes.
    pub note: String,
    /// The cause label it is about.
    pub cause: &'static str,
    containers: BTreeSet<String>,
}

/// What one pass plans.
#[derive(Debug, Default)]
pub struct PullPlan {
    /// Events to publish.
    pub events: Vec<PullEvent>,
    /// Fallbacks to patch.
    pub fallbacks: Vec<FallbackPlan>,
    /// Failures seen for the first time (or with a new cause), by cause label: the counter.
    pub new_failures: Vec<&'static str>,
}

/// Remembers pull failures between passes.
#[derive(Debug)]
pub struct PullTracker {
    resend: Duration,
    seen: HashMap<ContainerKey, Seen>,
    standing: HashMap<(String, &'static str), Standing>,
    fell_back: HashSet<ContainerKey>,
    /// Fallback Events of patches that succeeded, until published.
    owed: Vec<PullEvent>,
}

fn key(uid: &str, container: &str) -> ContainerKey {
    (uid.to_owned(), container.to_owned())
}

impl PullTracker {
    /// A tracker that re-sends a standing Warning every `resend`.
    pub fn new(resend: Duration) -> Self {
        Self {
            resend,
            seen: HashMap::new(),
            standing: HashMap::new(),
            fell_back: HashSet::new(),
            owed: Vec::new(),
        }
    }

    /// Containers seen failing now.
    pub fn failing(&self) -> usize {
        self.seen.len()
    }

    /// Whether a fallback comes due by `now`, so that the reconciler looks again even when
    /// nothing changed.
    pub fn due(&self, config: &Config, now: Instant) -> bool {
        config.fallback.enabled
            && self.seen.iter().any(|(k, s)| {
                s.eligible
                    && !self.fell_back.contains(k)
                    && now.duration_since(s.since) >= config.fallback.after
            })
    }

    /// The Events and fallbacks due now for `pods`. Nothing is remembered as published until
    /// [`PullTracker::published`] and [`PullTracker::fell_back`] say so.
    pub fn plan(
        &mut self,
        config: &Config,
        rules: &RuleSnapshot,
        pods: &[&PodRecord],
        now: Instant,
    ) -> PullPlan {
        let mut out = PullPlan {
            events: self.owed.clone(),
            ..PullPlan::default()
        };
        let mut seen = HashMap::new();
        let mut current: HashSet<(&str, &'static str)> = HashSet::new();
        let mut alive: HashMap<&str, &PodRecord> = HashMap::new();
        for pod in pods {
            alive.insert(pod.uid.as_str(), pod);
            let mut found = failures(config, rules, pod);
            if found.is_empty() {
                continue;
            }
            for f in &mut found {
                let k = key(&pod.uid, &f.pending.container);
                let before = self.seen.get(&k);
                // A bare back-off message says nothing new: keep what the pull error said.
                if f.cause == Cause::Unknown
                    && let Some(b) = before
                {
                    f.cause = b.cause.clone();
                }
                if before.is_none_or(|b| b.cause.label() != f.cause.label()) {
                    out.new_failures.push(f.cause.label());
                }
                seen.insert(
                    k,
                    Seen {
                        since: before.map_or(now, |b| b.since),
                        cause: f.cause.clone(),
                        eligible: fallback::eligible(pod, f),
                    },
                );
            }
            let mut by_cause: BTreeMap<&'static str, Vec<&Failure<'_>>> = BTreeMap::new();
            for f in &found {
                by_cause.entry(f.cause.label()).or_default().push(f);
            }
            for (label, group) in by_cause {
                current.insert((pod.uid.as_str(), label));
                let containers: BTreeSet<String> =
                    group.iter().map(|f| f.pending.container.clone()).collect();
                let due = self
                    .standing
                    .get(&(pod.uid.clone(), label))
                    .is_none_or(|s| {
                        s.containers != containers || now.duration_since(s.at) >= self.resend
                    });
                if due {
                    let mut note = super::explain(config, &group[0].cause, group[0].mapping);
                    for f in &group {
                        note.push(' ');
                        note.push_str(&super::detail(f));
                        note.push('.');
                    }
                    out.events.push(PullEvent {
                        pod: PodTarget::of(pod),
                        severity: Severity::Warning,
                        reason: REASON_PULL_FAILING,
                        note: bounded(note),
                        cause: label,
                        containers,
                    });
                }
            }
            let since = |container: &str| {
                seen.get(&key(&pod.uid, container))
                    .map(|s: &Seen| now.duration_since(s.since))
            };
            let done = |container: &str| self.fell_back.contains(&key(&pod.uid, container));
            if let Some(p) = fallback::plan(&config.fallback, pod, &found, since, done) {
                out.fallbacks.push(p);
            }
        }
        self.seen = seen;

        // Warnings that no longer stand: recovered once every container they named has
        // started; dropped silently when the Pod is gone or fails for another cause now.
        let mut stale = Vec::new();
        for ((uid, label), standing) in &self.standing {
            if current.contains(&(uid.as_str(), *label)) {
                continue;
            }
            let Some(pod) = alive.get(uid.as_str()) else {
                stale.push((uid.clone(), *label));
                continue;
            };
            if standing
                .containers
                .iter()
                .any(|c| self.seen.contains_key(&key(uid, c)))
            {
                stale.push((uid.clone(), *label));
                continue;
            }
            if !standing.containers.iter().all(|c| pod.pull.started(c)) {
                continue;
            }
            let parts: Vec<String> = standing
                .containers
                .iter()
                .map(|c| {
                    let image = pod
                        .containers
                        .iter()
                        .find(|i| &i.container == c)
                        .map_or("its image", |i| i.image.as_str());
                    if self.fell_back.contains(&key(uid, c)) {
                        format!("{c} started on its original image {image} after the fallback")
                    } else {
                        format!("{c} pulled {image} and started")
                    }
                })
                .collect();
            out.events.push(PullEvent {
                pod: PodTarget::of(pod),
                severity: Severity::Normal,
                reason: REASON_PULL_RECOVERED,
                note: bounded(format!(
                    "The pull failure is over: container {}.",
                    parts.join("; container ")
                )),
                cause: label,
                containers: standing.containers.clone(),
            });
        }
        for k in stale {
            self.standing.remove(&k);
        }
        out
    }

    /// Records that `event` was accepted by the API server.
    pub fn published(&mut self, event: &PullEvent, now: Instant) {
        if event.reason == REASON_FALLBACK {
            self.owed.retain(|e| e != event);
            return;
        }
        let k = (event.pod.uid.clone(), event.cause);
        match event.severity {
            Severity::Warning => {
                self.standing.insert(
                    k,
                    Standing {
                        at: now,
                        containers: event.containers.clone(),
                    },
                );
            }
            Severity::Normal => {
                self.standing.remove(&k);
            }
        }
    }

    /// Records that the containers of `plan` fell back, or must not be tried again (the patch
    /// found the Pod changed): never twice.
    pub fn fell_back(&mut self, plan: &FallbackPlan) {
        for s in &plan.switches {
            self.fell_back.insert(key(&plan.uid, &s.container));
        }
    }

    /// Records that the fallback `plan` was patched, and returns its Event, owed until
    /// [`PullTracker::published`] says it was accepted.
    pub fn switched(&mut self, plan: &FallbackPlan) -> PullEvent {
        self.fell_back(plan);
        let event = PullEvent {
            pod: PodTarget {
                namespace: plan.namespace.clone(),
                name: plan.name.clone(),
                uid: plan.uid.clone(),
            },
            severity: Severity::Warning,
            reason: REASON_FALLBACK,
            note: bounded(plan.note()),
            cause: plan.switches.first().map_or("unknown", |s| s.cause.label()),
            containers: plan.switches.iter().map(|s| s.container.clone()).collect(),
        };
        self.owed.push(event.clone());
        event
    }

    /// Forgets a Pod that was deleted.
    pub fn forget(&mut self, uid: &str) {
        self.owed.retain(|e| e.pod.uid != uid);
        self.seen.retain(|(u, _), _| u != uid);
        self.standing.retain(|(u, _), _| u != uid);
        self.fell_back.retain(|(u, _)| u != uid);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::notice::NOTE_MAX_LEN;

    use super::super::fixtures::*;
    use super::*;

    fn publish_all(t: &mut PullTracker, plan: &PullPlan, now: Instant) {
        for e in &plan.events {
            t.published(e, now);
        }
        for f in &plan.fallbacks {
            t.fell_back(f);
        }
    }

    #[test]
    fn one_warning_per_pod_and_cause_then_a_recovery_when_the_container_starts() {
        let c = config("");
        let rules = all_rules(&c);
        let mut t = PullTracker::new(Duration::from_mins(30));
        let t0 = Instant::now();
        let failing = record(&pod_json(&json!([
            waiting("app", "ErrImagePull", DENIED),
            running("side")
        ])));
        let plan = t.plan(&c, &rules, &[&failing], t0);
        assert_eq!(plan.events.len(), 1);
        assert_eq!(plan.new_failures, ["node_role_permission"]);
        let e = &plan.events[0];
        assert_eq!(e.reason, REASON_PULL_FAILING);
        assert!(
            e.note.contains("ecr:BatchImportUpstreamImage"),
            "{}",
            e.note
        );
        assert!(e.note.len() <= NOTE_MAX_LEN);
        publish_all(&mut t, &plan, t0);

        // The back-off that follows, in the old short form: nothing new, same cause.
        let backing_off = record(&pod_json(&json!([
            waiting("app", "ImagePullBackOff", "Back-off pulling image \"x\""),
            running("side")
        ])));
        let plan = t.plan(&c, &rules, &[&backing_off], t0 + Duration::from_secs(20));
        assert!(plan.events.is_empty(), "{:#?}", plan.events);
        assert!(plan.new_failures.is_empty());
        // Re-sent after the interval.
        let plan = t.plan(&c, &rules, &[&backing_off], t0 + Duration::from_mins(30));
        assert_eq!(plan.events.len(), 1);
        publish_all(&mut t, &plan, t0 + Duration::from_mins(30));

        // Pulled, being created: no recovery yet.
        let creating = record(&pod_json(&json!([
            waiting("app", "ContainerCreating", ""),
            running("side")
        ])));
        let plan = t.plan(&c, &rules, &[&creating], t0 + Duration::from_mins(31));
        assert!(plan.events.is_empty(), "{:#?}", plan.events);

        let started = record(&pod_json(&json!([running("app"), running("side")])));
        let plan = t.plan(&c, &rules, &[&started], t0 + Duration::from_mins(32));
        assert_eq!(plan.events.len(), 1, "{:#?}", plan.events);
        assert_eq!(plan.events[0].reason, REASON_PULL_RECOVERED);
        assert_eq!(plan.events[0].severity, Severity::Normal);
        assert!(
            plan.events[0].note.contains("app pulled"),
            "{}",
            plan.events[0].note
        );
        publish_all(&mut t, &plan, t0 + Duration::from_mins(32));
        assert!(
            t.plan(&c, &rules, &[&started], t0 + Duration::from_mins(33))
                .events
                .is_empty()
        );
    }

    #[test]
    fn a_failed_publication_is_planned_again_and_a_deleted_pod_forgotten() {
        let c = config("");
        let rules = all_rules(&c);
        let mut t = PullTracker::new(Duration::from_mins(30));
        let now = Instant::now();
        let failing = record(&pod_json(&json!([
            waiting("app", "ErrImagePull", DENIED),
            running("side")
        ])));
        assert_eq!(t.plan(&c, &rules, &[&failing], now).events.len(), 1);
        let plan = t.plan(&c, &rules, &[&failing], now);
        assert_eq!(plan.events.len(), 1);
        publish_all(&mut t, &plan, now);
        assert_eq!(t.failing(), 1);
        // Gone: nothing, not even a recovery.
        assert!(t.plan(&c, &rules, &[], now).events.is_empty());
        assert_eq!(t.failing(), 0);
        t.forget("u1");
        assert!(t.standing.is_empty());
    }

    #[test]
    fn a_new_cause_replaces_the_old_warning_without_a_false_recovery() {
        let c = config("");
        let rules = all_rules(&c);
        let mut t = PullTracker::new(Duration::from_mins(30));
        let now = Instant::now();
        let denied = record(&pod_json(&json!([
            waiting("app", "ErrImagePull", DENIED),
            running("side")
        ])));
        let plan = t.plan(&c, &rules, &[&denied], now);
        publish_all(&mut t, &plan, now);
        let limited = record(&pod_json(&json!([
            waiting(
                "app",
                "ErrImagePull",
                "429 Too Many Requests - Server message: toomanyrequests: You have reached your pull rate limit."
            ),
            running("side")
        ])));
        let plan = t.plan(&c, &rules, &[&limited], now);
        assert_eq!(plan.events.len(), 1, "{:#?}", plan.events);
        assert_eq!(plan.events[0].cause, "upstream_rate_limit");
        assert_eq!(plan.new_failures, ["upstream_rate_limit"]);
    }

    #[test]
    fn fallbacks_come_due_after_the_configured_time_once() {
        let c = config("fallback:\n  enabled: true\n  after: 2m\n");
        let rules = all_rules(&c);
        let mut t = PullTracker::new(Duration::from_mins(30));
        let t0 = Instant::now();
        let failing = record(&pod_json(&json!([
            waiting("app", "ErrImagePull", DENIED),
            running("side")
        ])));
        let plan = t.plan(&c, &rules, &[&failing], t0);
        assert!(plan.fallbacks.is_empty());
        publish_all(&mut t, &plan, t0);
        assert!(!t.due(&c, t0 + Duration::from_secs(119)));
        assert!(t.due(&c, t0 + Duration::from_mins(2)));
        let plan = t.plan(&c, &rules, &[&failing], t0 + Duration::from_mins(2));
        assert_eq!(plan.fallbacks.len(), 1);
        assert_eq!(plan.fallbacks[0].switches[0].container, "app");
        publish_all(&mut t, &plan, t0 + Duration::from_mins(2));
        // The watch has not shown the patched Pod yet: never a second patch.
        assert!(!t.due(&c, t0 + Duration::from_mins(3)));
        let plan = t.plan(&c, &rules, &[&failing], t0 + Duration::from_mins(3));
        assert!(plan.fallbacks.is_empty());

        // Disabled: never due.
        let off = config("");
        let mut t = PullTracker::new(Duration::from_mins(30));
        let plan = t.plan(&off, &rules, &[&failing], t0);
        publish_all(&mut t, &plan, t0);
        assert!(!t.due(&off, t0 + Duration::from_hours(1)));
        assert!(
            t.plan(&off, &rules, &[&failing], t0 + Duration::from_hours(1))
                .fallbacks
                .is_empty()
        );
    }

    #[test]
    fn a_fallback_event_is_owed_until_published() {
        let c = config("fallback:\n  enabled: true\n  after: 2m\n");
        let rules = all_rules(&c);
        let mut t = PullTracker::new(Duration::from_mins(30));
        let t0 = Instant::now();
        let failing = record(&pod_json(&json!([
            waiting("app", "ErrImagePull", DENIED),
            running("side")
        ])));
        let plan = t.plan(&c, &rules, &[&failing], t0);
        publish_all(&mut t, &plan, t0);
        let plan = t.plan(&c, &rules, &[&failing], t0 + Duration::from_mins(3));
        let event = t.switched(&plan.fallbacks[0]);
        assert_eq!(event.reason, REASON_FALLBACK);
        assert!(
            event.note.starts_with("Switched container app"),
            "{}",
            event.note
        );
        // Its publication failed: the next pass plans it again, and no second patch.
        let plan = t.plan(&c, &rules, &[&failing], t0 + Duration::from_mins(4));
        assert!(plan.fallbacks.is_empty());
        assert_eq!(plan.events, std::slice::from_ref(&event));
        t.published(&event, t0 + Duration::from_mins(4));
        assert!(
            t.plan(&c, &rules, &[&failing], t0 + Duration::from_mins(5))
                .events
                .is_empty()
        );
    }

    #[test]
    fn the_fallen_back_container_recovers_on_its_original_image() {
        let c = config("fallback:\n  enabled: true\n  after: 2m\n");
        let rules = all_rules(&c);
        let mut t = PullTracker::new(Duration::from_mins(30));
        let t0 = Instant::now();
        let failing = record(&pod_json(&json!([
            waiting("app", "ErrImagePull", DENIED),
            running("side")
        ])));
        let plan = t.plan(&c, &rules, &[&failing], t0);
        publish_all(&mut t, &plan, t0);
        let plan = t.plan(&c, &rules, &[&failing], t0 + Duration::from_mins(3));
        publish_all(&mut t, &plan, t0 + Duration::from_mins(3));
        let mut after = pod_json(&json!([running("app"), running("side")]));
        after["spec"]["containers"][0]["image"] = json!("nginx:1.27");
        after["metadata"]["annotations"]["pullthrough.dev/fallback"] = json!("[\"app\"]");
        let after = record(&after);
        let plan = t.plan(&c, &rules, &[&after], t0 + Duration::from_mins(4));
        assert_eq!(plan.events.len(), 1, "{:#?}", plan.events);
        assert!(
            plan.events[0]
                .note
                .contains("app started on its original image nginx:1.27 after the fallback"),
            "{}",
            plan.events[0].note
        );
    }
}
