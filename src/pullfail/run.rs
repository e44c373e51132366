//! The I/O of pull failures: the counter, publishing the planned Events, and the fallback patch.

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client};
use prometheus::{IntCounterVec, Opts, Registry};
use tracing::{info, warn};

use super::Cause;
use super::REASON_FALLBACK;
use super::fallback::FallbackPlan;
use super::track::{PodTarget, PullEvent, PullPlan, PullTracker};
use crate::notice::ACTION;
use crate::notice::Severity;

/// The `action` of the fallback Event.
pub const FALLBACK_ACTION: &str = "FallBackToOriginalImage";
/// Field manager of the fallback patch.
pub const FIELD_MANAGER: &str = "pullthrough-reconciler";

/// Metrics of pull failures and fallbacks.
#[derive(Clone)]
pub struct PullMetrics {
    /// Containers seen failing to pull a rewritten image, by likely cause.
    pub failures: IntCounterVec,
    /// Fallback patches, by result (`done`, `conflict`, `error`).
    pub fallbacks: IntCounterVec,
}

impl PullMetrics {
    /// Creates the metrics, every label at zero, and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            failures: IntCounterVec::new(
                Opts::new(
                    "pull_failures_total",
                    "Containers seen failing to pull an image rewritten to the pull-through cache, by likely cause",
                ),
                &["cause"],
            )?,
            fallbacks: IntCounterVec::new(
                Opts::new(
                    "fallbacks_total",
                    "Pods whose failing containers were put back on their original images, by result (done, conflict, error)",
                ),
                &["result"],
            )?,
        };
        for cause in Cause::LABELS {
            m.failures.with_label_values(&[cause]);
        }
        for result in ["done", "conflict", "error"] {
            m.fallbacks.with_label_values(&[result]);
        }
        registry.register(Box::new(m.failures.clone()))?;
        registry.register(Box::new(m.fallbacks.clone()))?;
        Ok(m)
    }

    /// Counts the failures `plan` saw for the first time: at once, whatever becomes of its
    /// Events, since the tracker will not report them again.
    pub fn count(&self, plan: &PullPlan) {
        for cause in &plan.new_failures {
            self.failures.with_label_values(&[cause]).inc();
        }
    }
}

fn pod_reference(pod: &PodTarget) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(pod.name.clone()),
        namespace: Some(pod.namespace.clone()),
        uid: Some(pod.uid.clone()),
        ..ObjectReference::default()
    }
}

async fn publish(recorder: &Recorder, event: &PullEvent) -> Result<(), kube::Error> {
    let action = if event.reason == REASON_FALLBACK {
        FALLBACK_ACTION
    } else {
        ACTION
    };
    recorder
        .publish(
            &Event {
                type_: match event.severity {
                    Severity::Normal => EventType::Normal,
                    Severity::Warning => EventType::Warning,
                },
                reason: event.reason.to_owned(),
                note: Some(event.note.clone()),
                action: action.to_owned(),
                secondary: None,
            },
            &pod_reference(&event.pod),
        )
        .await
}

/// Publishes the Events of `plan` and patches its fallbacks, recording each success in
/// `tracker`. Stops at the first API error, which the caller backs off on; what was not done
/// is planned again on the next pass. `events` counts published Events by reason; failures
/// are counted when planned ([`PullMetrics::count`]).
pub async fn act(
    client: &Client,
    recorder: &Recorder,
    tracker: &mut PullTracker,
    plan: PullPlan,
    metrics: &PullMetrics,
    events: &IntCounterVec,
) -> Result<(), kube::Error> {
    for event in &plan.events {
        publish(recorder, event).await?;
        tracker.published(event, std::time::Instant::now());
        events.with_label_values(&[event.reason]).inc();
        info!(reason = event.reason, cause = event.cause, namespace = %event.pod.namespace, pod = %event.pod.name, "event published");
    }
    for fallback in &plan.fallbacks {
        match patch(client, fallback).await {
            Ok(()) => {
                // Owed until published: a failed publication is retried on the next pass.
                let event = tracker.switched(fallback);
                metrics.fallbacks.with_label_values(&["done"]).inc();
                info!(namespace = %fallback.namespace, pod = %fallback.name, containers = fallback.switches.len(), "fell back to original images");
                publish(recorder, &event).await?;
                tracker.published(&event, std::time::Instant::now());
                events.with_label_values(&[REASON_FALLBACK]).inc();
            }
            // The Pod changed under the plan (a test failed), or is gone: never try again;
            // the next pass sees the Pod as it is now.
            Err(kube::Error::Api(e)) if matches!(e.code, 400 | 404 | 409 | 422) => {
                tracker.fell_back(fallback);
                metrics.fallbacks.with_label_values(&["conflict"]).inc();
                warn!(namespace = %fallback.namespace, pod = %fallback.name, error = %e.message, "the Pod changed before its fallback; left as it is");
            }
            Err(e) => {
                metrics.fallbacks.with_label_values(&["error"]).inc();
                return Err(e);
            }
        }
    }
    Ok(())
}

/// The fallback patch: images and annotation at once, on that Pod only.
async fn patch(client: &Client, fallback: &FallbackPlan) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &fallback.namespace);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    api.patch(
        &fallback.name,
        &params,
        &Patch::Json::<()>(fallback.patch()),
    )
    .await
    .map(drop)
}
