//! The record of standing Events: what the reconciler published and when, and how a replica that takes over rebuilds it from the Events already in the cluster.
//!
//! Each Event carries, in annotations, what the Events API has no field for: the cause that
//! tells groups apart under one reason, the resolution to publish when the cause ends, and, on a
//! resolution, the reason it resolves. So the listed Events say everything the old leader knew.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::jiff::Timestamp;

use super::target::{About, PodRef, Target, WorkloadRef};
use crate::notice::{Resolution, Severity};

/// Annotation of every Event: the cause that tells groups apart under one reason.
pub const CAUSE_ANNOTATION: &str = "pullthrough.dev/cause";
/// Annotation of a Warning: the reason of the Normal Event published when it ends.
pub const RESOLUTION_ANNOTATION: &str = "pullthrough.dev/resolution";
/// Annotation of a Warning: the note of the Normal Event published when it ends.
pub const RESOLUTION_NOTE_ANNOTATION: &str = "pullthrough.dev/resolution-note";
/// Annotation of a resolution: the reason of the Warning it ends.
pub const RESOLVES_ANNOTATION: &str = "pullthrough.dev/resolves";

/// The identity of an Event: one object per (regarding, reason, cause) while it stands.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventKey {
    /// What the Event is about.
    pub about: About,
    /// Its reason.
    pub reason: &'static str,
    /// Its cause (empty for the summary).
    pub cause: String,
}

/// A published Event that still stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// Where it is published.
    pub target: Target,
    /// Warning or Normal.
    pub severity: Severity,
    /// Its note (immutable in the Events API: a new note needs a new object).
    pub note: String,
    /// When it was last published or repeated.
    pub at: Instant,
    /// The Event object's name, so that a repeat continues its series.
    pub name: Option<String>,
    /// Its series count so far (1 for a single occurrence).
    pub count: i32,
    /// The Normal Event to publish when it ends.
    pub resolution: Option<Resolution>,
}

/// What the listed Events are read against.
pub struct Seeding<'a> {
    /// The reconciler's reporting controller.
    pub controller: &'a str,
    /// The reconciler's namespace, where its Deployment's summary lives.
    pub own_namespace: &'a str,
    /// The reconciler's Deployment.
    pub deployment: Option<&'a str>,
    /// The opted-in namespaces.
    pub namespaces: &'a BTreeSet<String>,
    /// Every reason a standing Event may have; Events with other reasons are ignored.
    pub reasons: &'a [&'static str],
    /// Every reason a resolution may have.
    pub resolutions: &'a [&'static str],
}

fn known(list: &[&'static str], reason: &str) -> Option<&'static str> {
    list.iter().copied().find(|r| *r == reason)
}

/// The record of standing Events that `events` (as listed from the API) describe, as of
/// `wall_now` and `now`: for each (regarding, reason, cause) the latest Event, unless a later
/// resolution ended it. Events of other controllers, of namespaces out of scope, without a
/// cause annotation (written before causes were recorded) or with unknown reasons are ignored.
pub fn from_events(
    events: &[K8sEvent],
    seeding: &Seeding<'_>,
    wall_now: Timestamp,
    now: Instant,
) -> HashMap<EventKey, Standing> {
    let mut latest: HashMap<EventKey, (Timestamp, &K8sEvent)> = HashMap::new();
    let mut resolved: HashMap<EventKey, Timestamp> = HashMap::new();
    for event in events {
        if event.reporting_controller.as_deref() != Some(seeding.controller) {
            continue;
        }
        let Some(namespace) = event.metadata.namespace.as_deref() else {
            continue;
        };
        if namespace != seeding.own_namespace && !seeding.namespaces.contains(namespace) {
            continue;
        }
        let Some((about, _)) = regarding(event, seeding) else {
            continue;
        };
        let annotations = event.metadata.annotations.as_ref();
        let cause = annotations.and_then(|a| a.get(CAUSE_ANNOTATION)).cloned();
        let cause = match (cause, &about) {
            (Some(c), _) => c,
            (None, About::Reconciler) => String::new(),
            (None, _) => continue,
        };
        let Some(at) = last_time(event) else {
            continue;
        };
        if let Some(resolves) = annotations.and_then(|a| a.get(RESOLVES_ANNOTATION)) {
            let Some(reason) = known(seeding.reasons, resolves) else {
                continue;
            };
            let key = EventKey {
                about,
                reason,
                cause,
            };
            let entry = resolved.entry(key).or_insert(at);
            *entry = (*entry).max(at);
            continue;
        }
        let Some(reason) = event
            .reason
            .as_deref()
            .and_then(|r| known(seeding.reasons, r))
        else {
            continue;
        };
        let key = EventKey {
            about,
            reason,
            cause,
        };
        match latest.get(&key) {
            Some((t, _)) if *t >= at => {}
            _ => {
                latest.insert(key, (at, event));
            }
        }
    }
    latest
        .into_iter()
        .filter(|(key, (at, _))| resolved.get(key).is_none_or(|r| r < at))
        .filter_map(|(key, (at, event))| {
            let (_, target) = regarding(event, seeding)?;
            let annotations = event.metadata.annotations.as_ref();
            let resolution = annotations
                .and_then(|a| a.get(RESOLUTION_ANNOTATION))
                .and_then(|r| known(seeding.resolutions, r))
                .map(|reason| Resolution {
                    reason,
                    note: annotations
                        .and_then(|a| a.get(RESOLUTION_NOTE_ANNOTATION))
                        .cloned()
                        .unwrap_or_default(),
                });
            let age = wall_now.duration_since(at);
            let age = if age.is_negative() {
                Duration::ZERO
            } else {
                age.unsigned_abs()
            };
            let standing = Standing {
                target,
                severity: if event.type_.as_deref() == Some("Normal") {
                    Severity::Normal
                } else {
                    Severity::Warning
                },
                note: event.note.clone().unwrap_or_default(),
                // An instant before the machine started cannot be told: then the Event counts
                // as just published, so it is repeated late rather than twice.
                at: now.checked_sub(age).unwrap_or(now),
                name: event.metadata.name.clone(),
                count: event.series.as_ref().map_or(1, |s| s.count),
                resolution,
            };
            Some((key, standing))
        })
        .collect()
}

/// When an Event last happened: its series' last observation, else its own time.
fn last_time(event: &K8sEvent) -> Option<Timestamp> {
    event
        .series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn regarding(event: &K8sEvent, seeding: &Seeding<'_>) -> Option<(About, Target)> {
    let r = event.regarding.as_ref()?;
    let namespace = r.namespace.clone()?;
    let kind = r.kind.clone()?;
    let name = r.name.clone()?;
    if kind == "Pod" {
        let uid = r.uid.clone()?;
        return Some((
            About::Pod(uid.clone()),
            Target::Pod(PodRef {
                namespace,
                name,
                uid,
            }),
        ));
    }
    if kind == "Deployment"
        && namespace == seeding.own_namespace
        && seeding.deployment == Some(name.as_str())
    {
        return Some((About::Reconciler, Target::Deployment));
    }
    Some((
        About::Workload {
            namespace: namespace.clone(),
            kind: kind.clone(),
            name: name.clone(),
        },
        Target::Workload(WorkloadRef {
            namespace,
            kind,
            name,
            uid: r.uid.clone(),
        }),
    ))
}
