//! The Event layer's plan: the checks' notices grouped by workload, reason and cause, and which Events to publish, repeat or resolve now.
//!
//! A workload (Deployment, StatefulSet, DaemonSet, Job, CronJob or another controller) gets one
//! Event per reason and cause, whatever the number of its Pods, noting how many are affected;
//! its Pods get their own Events too while at most [`PER_POD_MAX`] of them are. A bare Pod is
//! its own group. A standing Event is repeated every resend interval, as a series of the same
//! object when its note is unchanged; a new note (the Events API keeps notes immutable) is a new
//! object. When a group ends while its workload still runs, its resolution is published.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::standing::{EventKey, Standing};
use super::target::{About, PodRef, Target, WorkloadRef};
use super::{
    Check, NOTE_MAX_LEN, PodRecord, REASON_SUMMARY, REASON_SUMMARY_READY, World, bounded,
    rule_check,
};
use crate::notice::{Resolution, Severity};

/// A workload's Pods get Events of their own, besides the workload's, while at most this many
/// of them are affected.
pub const PER_POD_MAX: usize = 5;

/// An existing Event whose series a repeat continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    /// The Event object's name.
    pub name: String,
    /// The series count after this repeat.
    pub count: i32,
}

/// One Event to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// What it is about.
    pub target: Target,
    /// Severity.
    pub severity: Severity,
    /// Reason.
    pub reason: &'static str,
    /// The cause that tells groups apart under one reason.
    pub cause: String,
    /// Human-readable note, at most [`NOTE_MAX_LEN`] bytes.
    pub note: String,
    /// `Some` to continue this existing Event's series instead of creating an Event.
    pub series: Option<Series>,
    /// What to publish when this Event's cause ends.
    pub resolution: Option<Resolution>,
    /// For a resolution: the reason of the Event it ends.
    pub resolves: Option<&'static str>,
}

impl Publish {
    /// The identity of the Event this publication creates, repeats or (for a resolution) ends.
    pub fn key(&self) -> EventKey {
        EventKey {
            about: self.target.about(),
            reason: self.resolves.unwrap_or(self.reason),
            cause: self.cause.clone(),
        }
    }
}

/// The notices of one workload (or bare Pod) with one reason and cause.
struct Group<'w> {
    target: Target,
    severity: Severity,
    message: String,
    resolution: Option<Resolution>,
    pods: Vec<(&'w PodRecord, String)>,
}

/// Remembers which Events stand, so that each group gets one Event, repeated no more often
/// than `resend`, and a resolution when it ends.
#[derive(Debug)]
pub struct Tracker {
    resend: Duration,
    standing: HashMap<EventKey, Standing>,
}

impl Tracker {
    /// A tracker that repeats a standing Event every `resend`.
    pub fn new(resend: Duration) -> Self {
        Self {
            resend,
            standing: HashMap::new(),
        }
    }

    /// How many Warnings stand (published and not yet resolved), the summary included.
    pub fn standing(&self) -> usize {
        self.standing
            .values()
            .filter(|s| s.severity == Severity::Warning)
            .count()
    }

    /// Replaces the record with what the Events already in the cluster say (after gaining the
    /// Lease, or at start).
    pub fn seed(&mut self, standing: HashMap<EventKey, Standing>) {
        self.standing = standing;
    }

    /// Forgets a Pod that was deleted.
    pub fn forget(&mut self, uid: &str) {
        self.standing
            .retain(|k, _| !matches!(&k.about, About::Pod(u) if u == uid));
    }

    /// Records that `event` was accepted by the API server as the object `name`, whose series
    /// is now at `count`.
    pub fn published(&mut self, event: &Publish, name: Option<String>, count: i32, now: Instant) {
        let key = event.key();
        if event.resolves.is_some() {
            self.standing.remove(&key);
            return;
        }
        self.standing.insert(
            key,
            Standing {
                target: event.target.clone(),
                severity: event.severity,
                note: event.note.clone(),
                at: now,
                name,
                count,
                resolution: event.resolution.clone(),
            },
        );
    }

    /// Queues `event` when it is due: new or changed at once, unchanged after the resend
    /// interval (as a series of the same object when its note is the same). `substance` is the
    /// part of the note whose change is news; the rest (counts, Pod names) waits for the repeat.
    fn consider(
        &self,
        key: &EventKey,
        mut event: Publish,
        substance: &str,
        now: Instant,
        fresh: &mut Vec<Publish>,
        repeats: &mut Vec<Publish>,
    ) {
        match self.standing.get(key) {
            None => fresh.push(event),
            Some(s) if s.note != event.note && !s.note.starts_with(substance) => fresh.push(event),
            Some(s) if now.saturating_duration_since(s.at) >= self.resend => {
                if s.note == event.note {
                    event.series = s.name.clone().map(|name| Series {
                        name,
                        count: s.count.saturating_add(1),
                    });
                }
                repeats.push(event);
            }
            Some(_) => {}
        }
    }

    /// The Events to publish now, most urgent first: new and changed Events, resolutions, the
    /// summary, then repeats. Nothing is remembered until [`Tracker::published`] says the Event
    /// was accepted, so a publication that failed or was held back by the rate limit is
    /// planned again next time. `summary` says whether the reconciler's Deployment is known.
    pub fn plan(
        &mut self,
        world: &World<'_>,
        checks: &[Check],
        summary: bool,
        now: Instant,
    ) -> Vec<Publish> {
        let ready: Vec<bool> = checks.iter().map(|c| (c.ready)(world)).collect();
        let mut groups: BTreeMap<(About, &'static str, String), Group<'_>> = BTreeMap::new();
        let mut pods_per_owner: HashMap<About, usize> = HashMap::new();
        let mut alive: HashSet<About> = HashSet::new();
        let mut pods_per_registry: BTreeMap<String, usize> = BTreeMap::new();
        for pod in world.pods {
            let (owner, target) = owner_of(pod);
            *pods_per_owner.entry(owner.clone()).or_default() += 1;
            alive.insert(About::Pod(pod.uid.clone()));
            alive.insert(owner.clone());
            let mut registries: BTreeSet<String> = BTreeSet::new();
            for (check, _) in checks.iter().zip(&ready).filter(|(_, r)| **r) {
                for n in (check.run)(world, pod) {
                    if rule_check::REASONS.contains(&n.reason) {
                        registries.insert(n.cause.clone());
                    }
                    groups
                        .entry((owner.clone(), n.reason, n.cause))
                        .or_insert_with(|| Group {
                            target: target.clone(),
                            severity: n.severity,
                            message: n.message,
                            resolution: n.resolution,
                            pods: Vec::new(),
                        })
                        .pods
                        .push((pod, n.detail));
                }
            }
            for r in registries {
                *pods_per_registry.entry(r).or_default() += 1;
            }
        }

        let mut fresh = Vec::new();
        let mut repeats = Vec::new();
        let mut current: HashSet<EventKey> = HashSet::new();
        // A resolution is published only when nothing of the same cause with the same
        // resolution stands any more: a rule that went from missing to pointing elsewhere is not
        // restored.
        let mut blocking: HashSet<(About, String, &'static str)> = HashSet::new();
        for ((about, reason, cause), mut group) in groups {
            group.pods.sort_by(|a, b| a.0.name.cmp(&b.0.name));
            let publish = |target: Target, note: String| Publish {
                target,
                severity: group.severity,
                reason,
                cause: cause.clone(),
                note,
                series: None,
                resolution: group.resolution.clone(),
                resolves: None,
            };
            let mut keep = |key: EventKey| {
                if let Some(r) = &group.resolution {
                    blocking.insert((key.about.clone(), key.cause.clone(), r.reason));
                }
                current.insert(key);
            };
            let key = EventKey {
                about: about.clone(),
                reason,
                cause: cause.clone(),
            };
            if let Target::Workload(w) = &group.target {
                let total = pods_per_owner.get(&about).copied().unwrap_or(0);
                let note = group_note(&group, &w.kind, &w.name, total);
                let event = publish(group.target.clone(), note);
                self.consider(&key, event, &group.message, now, &mut fresh, &mut repeats);
                keep(key);
                for (pod, detail) in &group.pods {
                    let key = EventKey {
                        about: About::Pod(pod.uid.clone()),
                        reason,
                        cause: cause.clone(),
                    };
                    // Pods beyond the limit keep what they had, unrepeated and unresolved.
                    if group.pods.len() <= PER_POD_MAX {
                        let note = bounded(format!("{} {detail}", group.message));
                        let event = publish(Target::Pod(PodRef::of(pod)), note.clone());
                        self.consider(&key, event, &note, now, &mut fresh, &mut repeats);
                    }
                    keep(key);
                }
            } else {
                let detail = group.pods.first().map_or("", |(_, d)| d.as_str());
                let note = bounded(format!("{} {detail}", group.message));
                let event = publish(group.target.clone(), note.clone());
                self.consider(&key, event, &note, now, &mut fresh, &mut repeats);
                keep(key);
            }
        }

        let mut resolutions = Vec::new();
        let mut gone = Vec::new();
        for (key, s) in &self.standing {
            if key.about == About::Reconciler || current.contains(key) {
                continue;
            }
            match checks.iter().position(|c| c.reasons.contains(&key.reason)) {
                // The check cannot judge now: a cause is never resolved by an outage.
                Some(i) if !ready[i] => continue,
                Some(_) => {}
                None => {
                    gone.push(key.clone());
                    continue;
                }
            }
            let resolution = s
                .resolution
                .as_ref()
                .filter(|_| s.severity == Severity::Warning && alive.contains(&key.about))
                .filter(|r| !blocking.contains(&(key.about.clone(), key.cause.clone(), r.reason)));
            match resolution {
                Some(r) => resolutions.push(Publish {
                    target: s.target.clone(),
                    severity: Severity::Normal,
                    reason: r.reason,
                    cause: key.cause.clone(),
                    note: r.note.clone(),
                    series: None,
                    resolution: None,
                    resolves: Some(key.reason),
                }),
                // Ended with its workload, or ends silently.
                None => gone.push(key.clone()),
            }
        }
        for key in gone {
            self.standing.remove(&key);
        }
        resolutions.sort_by_key(Publish::key);

        let mut out = fresh;
        out.append(&mut resolutions);
        if summary {
            self.plan_summary(world, &pods_per_registry, now, &mut out, &mut repeats);
        }
        out.append(&mut repeats);
        out
    }

    fn plan_summary(
        &self,
        world: &World<'_>,
        pods_per_registry: &BTreeMap<String, usize>,
        now: Instant,
        out: &mut Vec<Publish>,
        repeats: &mut Vec<Publish>,
    ) {
        let Some((severity, reason, note)) =
            rule_check::summary(world.config, world.rules, pods_per_registry)
        else {
            return;
        };
        let key = EventKey {
            about: About::Reconciler,
            reason: REASON_SUMMARY,
            cause: String::new(),
        };
        let event = Publish {
            target: Target::Deployment,
            severity,
            reason,
            cause: String::new(),
            note,
            series: None,
            resolution: None,
            resolves: None,
        };
        if severity == Severity::Normal {
            if self.standing.contains_key(&key) {
                out.push(Publish {
                    resolves: Some(REASON_SUMMARY),
                    ..event
                });
            }
            return;
        }
        let event = Publish {
            resolution: Some(Resolution {
                reason: REASON_SUMMARY_READY,
                note: rule_check::ready_note(world.config),
            }),
            ..event
        };
        let note = event.note.clone();
        self.consider(&key, event, &note, now, out, repeats);
    }
}

/// The group a Pod's notices go into: its workload, or the Pod itself.
fn owner_of(pod: &PodRecord) -> (About, Target) {
    match &pod.owner {
        Some(o) => (
            About::Workload {
                namespace: pod.namespace.to_string(),
                kind: o.kind.clone(),
                name: o.name.clone(),
            },
            Target::Workload(WorkloadRef {
                namespace: pod.namespace.to_string(),
                kind: o.kind.clone(),
                name: o.name.clone(),
                uid: pod.owner_uid.as_deref().map(str::to_owned),
            }),
        ),
        None => (About::Pod(pod.uid.clone()), Target::Pod(PodRef::of(pod))),
    }
}

/// A workload's note: the message, how many of its Pods are affected, and each one's detail
/// while the note has room.
fn group_note(group: &Group<'_>, kind: &str, name: &str, total: usize) -> String {
    let n = group.pods.len();
    let mut note = format!(
        "{} {n} of the {total} Pod{} of {kind} {name} {} affected:",
        group.message,
        if total == 1 { "" } else { "s" },
        if n == 1 { "is" } else { "are" },
    );
    for (i, (pod, detail)) in group.pods.iter().enumerate() {
        if note.len() > NOTE_MAX_LEN {
            let _ = write!(note, " and {} more.", n - i);
            break;
        }
        let _ = write!(note, " {}: {detail}", pod.name);
    }
    bounded(note)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use k8s_openapi::api::events::v1::Event as K8sEvent;
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::config::Config;
    use crate::reconciler::fixtures::{CACHE, all_present, config, record, rule, snapshot};
    use crate::reconciler::standing::{Seeding, from_events};
    use crate::reconciler::{
        CHECKS as ALL_CHECKS, REASON_MISSING, REASON_RESTORED, REASON_WRONG_UPSTREAM,
    };
    // The grouping is tested on the rule check alone; the other checks have tests of their own.
    const CHECKS: &[crate::reconciler::Check] = ALL_CHECKS.split_at(1).0;
    use crate::rules::RuleSnapshot;

    const RESEND: Duration = Duration::from_mins(30);

    fn world<'a>(c: &'a Config, rules: &'a RuleSnapshot, pods: &'a [&'a PodRecord]) -> World<'a> {
        World {
            config: c,
            rules,
            pods,
            audit: &crate::audit::NO_FACTS,
            unavailable: &crate::warm::NO_UNAVAILABLE,
        }
    }

    fn plan(
        t: &mut Tracker,
        rules: &RuleSnapshot,
        pods: &[&PodRecord],
        now: Instant,
    ) -> Vec<Publish> {
        let c = config();
        t.plan(&world(&c, rules, pods), CHECKS, true, now)
    }

    /// Publishes `events` as the API server would: new objects named after their target.
    fn publish_all(t: &mut Tracker, events: &[Publish], now: Instant) {
        for e in events {
            let (name, count) = match &e.series {
                Some(s) => (s.name.clone(), s.count),
                None => (format!("{:?}.{}", e.target.about(), e.reason), 1),
            };
            t.published(e, Some(name), count, now);
        }
    }

    fn deployment(name: &str, pods: usize, image: &str) -> Vec<PodRecord> {
        (0..pods)
            .map(|i| record(&format!("{i}"), &[image]).owned_by("Deployment", name))
            .collect()
    }

    #[test]
    fn a_deployments_pods_make_one_event_on_the_deployment() {
        let missing = snapshot(&[]);
        let pods = deployment("web", 7, "redis:7");
        let refs: Vec<&PodRecord> = pods.iter().collect();
        let mut t = Tracker::new(RESEND);
        let events = plan(&mut t, &missing, &refs, Instant::now());
        assert_eq!(
            events.len(),
            2,
            "one on the Deployment and the summary: {events:#?}"
        );
        let e = &events[0];
        assert_eq!(
            e.target,
            Target::Workload(WorkloadRef {
                namespace: "shop".into(),
                kind: "Deployment".into(),
                name: "web".into(),
                uid: None,
            })
        );
        assert_eq!(e.reason, REASON_MISSING);
        assert_eq!(e.cause, "docker.io");
        assert!(
            e.note.starts_with(
                "The ECR pull-through cache rule docker-hub for docker.io does not exist"
            ),
            "{}",
            e.note
        );
        assert!(e.note.contains("7 of the 7 Pods of Deployment web are affected: web-0: Container c0 pulls redis:7 from its upstream"), "{}", e.note);
        assert!(e.note.len() <= NOTE_MAX_LEN);
        assert_eq!(events[1].target, Target::Deployment);
        assert!(
            events[1]
                .note
                .contains("docker-hub (docker.io) missing, 7 Pods"),
            "{}",
            events[1].note
        );
    }

    #[test]
    fn a_few_affected_pods_get_their_own_events_too() {
        let missing = snapshot(&[]);
        let mut pods = deployment("web", 3, "redis:7");
        pods.push(record("9", &["registry.example.com/ok:1"]).owned_by("Deployment", "web"));
        let refs: Vec<&PodRecord> = pods.iter().collect();
        let mut t = Tracker::new(RESEND);
        let events = plan(&mut t, &missing, &refs, Instant::now());
        let on_pods: Vec<&str> = events
            .iter()
            .filter_map(|e| match &e.target {
                Target::Pod(p) => Some(p.name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(on_pods, ["web-0", "web-1", "web-2"]);
        assert!(
            events[0]
                .note
                .contains("3 of the 4 Pods of Deployment web are affected"),
            "{}",
            events[0].note
        );
        let pod_note = &events[1].note;
        assert!(pod_note.starts_with("The ECR pull-through cache rule docker-hub"));
        assert!(
            pod_note
                .ends_with("Container c0 pulls redis:7 from its upstream, not through the cache."),
            "{pod_note}"
        );
        assert_eq!(events.len(), 5, "{events:#?}");
    }

    #[test]
    fn workloads_of_other_kinds_and_namespaces_are_groups_of_their_own() {
        let missing = snapshot(&[]);
        let a = record("a", &["redis:7"]).owned_by("StatefulSet", "db");
        let b = record("b", &["redis:7"]).owned_by("DaemonSet", "db");
        let mut c = record("c", &["redis:7"]).owned_by("StatefulSet", "db");
        c.namespace = "other".into();
        let bare = record("d", &["redis:7"]);
        let mut t = Tracker::new(RESEND);
        let events = plan(&mut t, &missing, &[&a, &b, &c, &bare], Instant::now());
        let workloads = events
            .iter()
            .filter(|e| matches!(e.target, Target::Workload(_)))
            .count();
        let pods = events
            .iter()
            .filter(|e| matches!(e.target, Target::Pod(_)))
            .count();
        assert_eq!((workloads, pods), (3, 4), "{events:#?}");
    }

    #[test]
    fn a_standing_event_is_repeated_after_the_interval_as_a_series() {
        let missing = snapshot(&[]);
        let pods = deployment("web", 7, "redis:7");
        let refs: Vec<&PodRecord> = pods.iter().collect();
        let mut t = Tracker::new(RESEND);
        let t0 = Instant::now();
        let first = plan(&mut t, &missing, &refs, t0);
        publish_all(&mut t, &first, t0);
        assert_eq!(t.standing(), 2);
        assert!(plan(&mut t, &missing, &refs, t0 + Duration::from_mins(29)).is_empty());
        let again = plan(&mut t, &missing, &refs, t0 + RESEND);
        assert_eq!(again.len(), 2);
        let series = again[0]
            .series
            .as_ref()
            .expect("a repeat continues the series");
        assert_eq!(series.count, 2);
        assert_eq!(
            series.name,
            format!("{:?}.{}", again[0].target.about(), REASON_MISSING)
        );
        publish_all(&mut t, &again, t0 + RESEND);
        let third = plan(&mut t, &missing, &refs, t0 + RESEND * 2);
        assert_eq!(third[0].series.as_ref().unwrap().count, 3);
    }

    #[test]
    fn a_new_count_waits_for_the_repeat_and_is_then_a_new_event() {
        let missing = snapshot(&[]);
        let pods = deployment("web", 7, "redis:7");
        let refs: Vec<&PodRecord> = pods.iter().collect();
        let mut t = Tracker::new(RESEND);
        let t0 = Instant::now();
        let first = plan(&mut t, &missing, &refs, t0);
        publish_all(&mut t, &first, t0);
        // A rollout: one Pod fewer. Nothing at once (and the summary's count is news).
        let fewer = &refs[..6];
        let events = plan(&mut t, &missing, fewer, t0 + Duration::from_mins(1));
        assert!(
            events.iter().all(|e| e.target == Target::Deployment),
            "{events:#?}"
        );
        let events = plan(&mut t, &missing, fewer, t0 + RESEND);
        let on_web = events
            .iter()
            .find(|e| matches!(e.target, Target::Workload(_)))
            .unwrap();
        assert!(on_web.note.contains("6 of the 6 Pods"), "{}", on_web.note);
        assert_eq!(
            on_web.series, None,
            "notes are immutable: a new note is a new object"
        );
    }

    #[test]
    fn a_failed_publication_is_planned_again() {
        let missing = snapshot(&[]);
        let pod = record("u", &["redis:7"]);
        let mut t = Tracker::new(RESEND);
        let now = Instant::now();
        assert_eq!(plan(&mut t, &missing, &[&pod], now).len(), 2);
        assert_eq!(plan(&mut t, &missing, &[&pod], now).len(), 2);
    }

    #[test]
    fn restored_rules_give_a_normal_event_per_group_and_deleted_pods_none() {
        let missing = snapshot(&[]);
        let present = all_present();
        let a = record("a", &["redis:7"]);
        let b = record("b", &["nginx:1"]);
        let web = deployment("web", 7, "quay.io/org/web:1");
        let mut pods: Vec<&PodRecord> = web.iter().collect();
        pods.extend([&a, &b]);
        let mut t = Tracker::new(RESEND);
        let now = Instant::now();
        let events = plan(&mut t, &missing, &pods, now);
        publish_all(&mut t, &events, now);
        assert_eq!(t.standing(), 4);

        // b is deleted, one Pod of web too; the rules come back.
        t.forget("b");
        let pods: Vec<&PodRecord> = web[1..].iter().chain([&a]).collect();
        let events = plan(&mut t, &present, &pods, now);
        let reasons: Vec<(&str, &Target)> = events.iter().map(|e| (e.reason, &e.target)).collect();
        assert_eq!(events.len(), 3, "{reasons:#?}");
        assert_eq!(events[0].reason, REASON_RESTORED);
        assert!(matches!(events[0].target, Target::Workload(_)));
        assert!(
            events[0].note.contains("quay.io is usable again"),
            "{}",
            events[0].note
        );
        assert_eq!(events[0].resolves, Some(REASON_MISSING));
        assert_eq!(events[1].reason, REASON_RESTORED);
        assert!(matches!(&events[1].target, Target::Pod(p) if p.uid == "a"));
        assert_eq!(events[2].reason, REASON_SUMMARY_READY);
        publish_all(&mut t, &events, now);
        assert_eq!(t.standing(), 0);
        assert!(plan(&mut t, &present, &pods, now).is_empty());
    }

    #[test]
    fn unknown_rules_plan_nothing_and_resolve_nothing() {
        let missing = snapshot(&[]);
        let pod = record("u", &["redis:7"]);
        let mut t = Tracker::new(RESEND);
        let now = Instant::now();
        let events = plan(&mut t, &missing, &[&pod], now);
        publish_all(&mut t, &events, now);
        let unknown = RuleSnapshot::unknown();
        assert!(plan(&mut t, &unknown, &[&pod], now + RESEND).is_empty());
        assert_eq!(t.standing(), 2);
    }

    #[test]
    fn a_changed_cause_is_a_new_warning_without_a_false_restore() {
        let c = config();
        let missing = snapshot(&[]);
        let wrong = snapshot(&[rule("docker-hub", "mirror.example.com")]);
        let pod = record("u", &["redis:7"]);
        let mut t = Tracker::new(RESEND);
        let now = Instant::now();
        let events = t.plan(&world(&c, &missing, &[&pod]), CHECKS, false, now);
        publish_all(&mut t, &events, now);
        let events = t.plan(&world(&c, &wrong, &[&pod]), CHECKS, false, now);
        assert_eq!(events.len(), 1, "{events:#?}");
        assert_eq!(events[0].reason, REASON_WRONG_UPSTREAM);
    }

    #[test]
    fn pods_beyond_the_limit_keep_their_events_unresolved_and_unrepeated() {
        let missing = snapshot(&[]);
        let web = deployment("web", 8, "redis:7");
        let mut t = Tracker::new(RESEND);
        let t0 = Instant::now();
        let few: Vec<&PodRecord> = web[..2].iter().collect();
        let events = plan(&mut t, &missing, &few, t0);
        publish_all(&mut t, &events, t0);
        assert_eq!(t.standing(), 4, "web, two Pods, the summary");
        let all: Vec<&PodRecord> = web.iter().collect();
        let events = plan(&mut t, &missing, &all, t0 + RESEND);
        assert!(
            events.iter().all(|e| !matches!(e.target, Target::Pod(_))),
            "{events:#?}"
        );
        assert_eq!(t.standing(), 4);
    }

    fn listed(value: serde_json::Value) -> K8sEvent {
        serde_json::from_value(value).unwrap()
    }

    #[allow(clippy::needless_pass_by_value)]
    fn event_on_web(reason: &str, note: &str, at: Timestamp, extra: serde_json::Value) -> K8sEvent {
        let mut e = serde_json::json!({
            "metadata": {"name": "web.17f0", "namespace": "shop",
                         "annotations": {"pullthrough.dev/cause": "docker.io",
                                         "pullthrough.dev/resolution": "PullThroughCacheRuleRestored",
                                         "pullthrough.dev/resolution-note": "back"}},
            "eventTime": at.to_string(),
            "reportingController": "pullthrough", "reportingInstance": "reconciler-1",
            "action": "CheckPullThroughCacheRules", "reason": reason, "type": "Warning", "note": note,
            "regarding": {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "shop", "name": "web"},
        });
        crate::reconciler::fixtures::merge(&mut e, &extra);
        listed(e)
    }

    fn seed(events: &[K8sEvent], now: Instant) -> HashMap<EventKey, Standing> {
        let namespaces = BTreeSet::from(["shop".to_owned()]);
        let seeding = Seeding {
            controller: "pullthrough",
            own_namespace: "pullthrough",
            deployment: Some("pullthrough-reconciler"),
            namespaces: &namespaces,
            reasons: &[REASON_MISSING, REASON_WRONG_UPSTREAM, REASON_SUMMARY],
            resolutions: &[REASON_RESTORED, REASON_SUMMARY_READY],
        };
        from_events(events, &seeding, Timestamp::now(), now)
    }

    #[test]
    fn a_replica_that_takes_over_repeats_nothing_and_continues_the_series() {
        let missing = snapshot(&[]);
        let pods = deployment("web", 7, "redis:7");
        let refs: Vec<&PodRecord> = pods.iter().collect();
        // What the old holder published, ten minutes ago.
        let mut old = Tracker::new(RESEND);
        let first = plan(&mut old, &missing, &refs, Instant::now());
        let at = Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_mins(10);
        let listed: Vec<K8sEvent> = vec![event_on_web(
            REASON_MISSING,
            &first[0].note,
            at,
            serde_json::json!({"series": {"count": 3, "lastObservedTime": at.to_string()}}),
        )];
        let now = Instant::now();
        let mut t = Tracker::new(RESEND);
        t.seed(seed(&listed, now));
        let c = config();
        // Without the summary, which has no Event listed here.
        let events = t.plan(&world(&c, &missing, &refs), CHECKS, false, now);
        assert!(events.is_empty(), "{events:#?}");
        let events = t.plan(
            &world(&c, &missing, &refs),
            CHECKS,
            false,
            now + Duration::from_mins(20),
        );
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0].series,
            Some(Series {
                name: "web.17f0".into(),
                count: 4
            })
        );
    }

    #[test]
    fn a_cause_that_ended_in_the_gap_is_resolved_from_what_the_event_recorded() {
        let present = all_present();
        let pods = deployment("web", 7, "redis:7");
        let refs: Vec<&PodRecord> = pods.iter().collect();
        let listed = vec![event_on_web(
            REASON_MISSING,
            "gone",
            Timestamp::now(),
            serde_json::json!({}),
        )];
        let mut t = Tracker::new(RESEND);
        t.seed(seed(&listed, Instant::now()));
        let c = config();
        let events = t.plan(&world(&c, &present, &refs), CHECKS, false, Instant::now());
        assert_eq!(events.len(), 1, "{events:#?}");
        assert_eq!(events[0].reason, REASON_RESTORED);
        assert_eq!(events[0].note, "back");
        assert_eq!(events[0].severity, Severity::Normal);
        assert_eq!(events[0].resolves, Some(REASON_MISSING));
        // Once its workload is gone, a cause ends silently.
        let mut t = Tracker::new(RESEND);
        t.seed(seed(&listed, Instant::now()));
        assert!(
            t.plan(&world(&c, &present, &[]), CHECKS, false, Instant::now())
                .is_empty()
        );
        assert_eq!(t.standing(), 0);
    }

    #[test]
    fn seeding_keeps_the_latest_unresolved_events_of_this_controller_in_scope() {
        let now = Timestamp::now();
        let earlier = now - k8s_openapi::jiff::SignedDuration::from_mins(5);
        let events = vec![
            // An older duplicate, from before this fix: the latest wins.
            event_on_web(
                REASON_MISSING,
                "old",
                earlier,
                serde_json::json!({"metadata": {"name": "web.1"}}),
            ),
            event_on_web(
                REASON_MISSING,
                "new",
                now,
                serde_json::json!({"metadata": {"name": "web.2"}}),
            ),
            // Resolved after it was published.
            event_on_web(
                REASON_WRONG_UPSTREAM,
                "w",
                earlier,
                serde_json::json!({"metadata": {"name": "web.3"}}),
            ),
            event_on_web(
                "PullThroughCacheRuleRestored",
                "back",
                now,
                serde_json::json!({
                "metadata": {"name": "web.4", "annotations": {"pullthrough.dev/resolves": "PullThroughCacheRuleWrongUpstream"}},
                "type": "Normal"}),
            ),
            // Another controller, a namespace out of scope, no cause, an unknown reason.
            event_on_web(
                REASON_MISSING,
                "x",
                now,
                serde_json::json!({"reportingController": "other",
                "regarding": {"name": "a"}}),
            ),
            event_on_web(
                REASON_MISSING,
                "x",
                now,
                serde_json::json!({"metadata": {"namespace": "elsewhere"},
                "regarding": {"name": "b"}}),
            ),
            event_on_web(
                REASON_MISSING,
                "x",
                now,
                serde_json::json!({"metadata": {"annotations": {"pullthrough.dev/cause": null}},
                "regarding": {"name": "c"}}),
            ),
            event_on_web(
                "SomethingElse",
                "x",
                now,
                serde_json::json!({"regarding": {"name": "d"}}),
            ),
            // The summary on the reconciler's Deployment, which has no cause.
            listed(serde_json::json!({
                "metadata": {"name": "s.1", "namespace": "pullthrough"},
                "eventTime": now.to_string(), "reportingController": "pullthrough",
                "reason": REASON_SUMMARY, "type": "Warning", "note": "2 of 6",
                "regarding": {"kind": "Deployment", "namespace": "pullthrough", "name": "pullthrough-reconciler", "uid": "d"}})),
        ];
        let standing = seed(&events, Instant::now());
        let mut keys: Vec<(&About, &str, &str)> = standing
            .iter()
            .map(|(k, s)| (&k.about, k.reason, s.name.as_deref().unwrap()))
            .collect();
        keys.sort();
        let web = About::Workload {
            namespace: "shop".into(),
            kind: "Deployment".into(),
            name: "web".into(),
        };
        assert_eq!(
            keys,
            [
                (&web, REASON_MISSING, "web.2"),
                (&About::Reconciler, REASON_SUMMARY, "s.1")
            ]
        );
        let s = &standing[&EventKey {
            about: web,
            reason: REASON_MISSING,
            cause: "docker.io".into(),
        }];
        assert_eq!(s.note, "new");
        assert_eq!(
            s.resolution.as_ref().map(|r| r.reason),
            Some(REASON_RESTORED)
        );
        assert_eq!(s.count, 1);
    }

    #[test]
    fn images_in_the_cache_of_a_deleted_rule_and_a_deployment_in_several_namespaces() {
        let missing = snapshot(&[rule("quay", "quay.io")]);
        let mut other = deployment("web", 1, &format!("{CACHE}/docker-hub/library/nginx:1"));
        other[0].namespace = "other".into();
        let shop = deployment("web", 1, &format!("{CACHE}/docker-hub/library/nginx:1"));
        let mut t = Tracker::new(RESEND);
        let pods = [&other[0], &shop[0]];
        let events = plan(&mut t, &missing, &pods, Instant::now());
        let namespaces: BTreeSet<&str> = events
            .iter()
            .filter_map(|e| match &e.target {
                Target::Workload(w) => Some(w.namespace.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(namespaces, BTreeSet::from(["other", "shop"]));
        assert!(events[0].note.contains("cannot pull"), "{}", events[0].note);
    }
}
