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
use super::track::{PodTarget, PullPlan, PullTracker};
use crate::reconciler::ACTION;
use crate::reconciler::notice::Severity;

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

async fn publish(
    recorder: &Recorder,
    pod: &PodTarget,
    severity: Severity,
    reason: &str,
    note: &str,
) -> Result<(), kube::Error> {
    recorder
        .publish(
            &Event {
                type_: match severity {
                    Severity::Normal => EventType::Normal,
                    Severity::Warning => EventType::Warning,
                },
                reason: reason.to_owned(),
                note: Some(note.to_owned()),
                action: ACTION.to_owned(),
                secondary: None,
            },
            &pod_reference(pod),
        )
        .await
}

/// Publishes the Events of `plan` and patches its fallbacks, recording each success in
/// `tracker`. Stops at the first API error, which the caller backs off on; what was not done
/// is planned again on the next pass. `events` counts published Events by reason.
pub async fn act(
    client: &Client,
    recorder: &Recorder,
    tracker: &mut PullTracker,
    plan: PullPlan,
    metrics: &PullMetrics,
    events: &IntCounterVec,
) -> Result<(), kube::Error> {
    for cause in &plan.new_failures {
        metrics.failures.with_label_values(&[cause]).inc();
    }
    for event in &plan.events {
        publish(
            recorder,
            &event.pod,
            event.severity,
            event.reason,
            &event.note,
        )
        .await?;
        tracker.published(event, std::time::Instant::now());
        events.with_label_values(&[event.reason]).inc();
        info!(reason = event.reason, cause = event.cause, namespace = %event.pod.namespace, pod = %event.pod.name, "event published");
    }
    for fallback in &plan.fallbacks {
        match patch(client, fallback).await {
            Ok(()) => {
                tracker.fell_back(fallback);
                metrics.fallbacks.with_label_values(&["done"]).inc();
                let target = PodTarget {
                    namespace: fallback.namespace.clone(),
                    name: fallback.name.clone(),
                    uid: fallback.uid.clone(),
                };
                info!(namespace = %fallback.namespace, pod = %fallback.name, containers = fallback.switches.len(), "fell back to original images");
                publish(
                    recorder,
                    &target,
                    Severity::Warning,
                    REASON_FALLBACK,
                    &fallback.note(),
                )
                .await?;
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
