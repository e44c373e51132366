//! The reconciler's metrics: passes, failures by kind, Events by reason, the Lease, the Pods watched and what the checks count.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Metrics of the reconciler.
#[derive(Clone)]
pub struct ReconcilerMetrics {
    /// Reconcile passes that planned Events.
    pub runs: IntCounter,
    /// Failures by kind (`pod_watch`, `namespace_watch`, `event_list`, `event_publish`,
    /// `lease`).
    pub failures: IntCounterVec,
    /// Events published, by reason.
    pub events: IntCounterVec,
    /// 1 while this replica holds the Lease and publishes Events.
    pub leader: IntGauge,
    /// Pods in opted-in namespaces being watched.
    pub pods: IntGauge,
    /// Warnings standing (published and not yet resolved).
    pub standing: IntGauge,
    /// Publications the rate limit held back for a later pass.
    pub rate_limited: IntCounter,
    /// Containers running upstream images the webhook would rewrite, by registry.
    pub bypassing: IntGaugeVec,
    /// Images of the Pods in scope, by registry (mapped, or `other`) and coverage state.
    pub containers: IntGaugeVec,
    /// Pull failures and fallbacks.
    pub pulls: crate::pullfail::run::PullMetrics,
}

impl ReconcilerMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            runs: IntCounter::new(
                "reconcile_runs_total",
                "Reconcile passes over the opted-in Pods",
            )?,
            failures: IntCounterVec::new(
                Opts::new(
                    "reconcile_failures_total",
                    "Reconciler failures, by kind (pod_watch, namespace_watch, event_list, event_publish, lease)",
                ),
                &["kind"],
            )?,
            events: IntCounterVec::new(
                Opts::new("events_total", "Kubernetes Events published, by reason"),
                &["reason"],
            )?,
            leader: IntGauge::new(
                "reconciler_leader",
                "1 while this replica holds the Lease and publishes Events",
            )?,
            pods: IntGauge::new(
                "reconciler_pods",
                "Pods in opted-in namespaces seen by the reconciler",
            )?,
            standing: IntGauge::new(
                "reconciler_standing_warnings",
                "Warnings published and not yet resolved",
            )?,
            rate_limited: IntCounter::new(
                "events_rate_limited_total",
                "Event publications the rate limit held back for a later pass",
            )?,
            bypassing: IntGaugeVec::new(
                Opts::new(
                    "bypassing_containers",
                    "Containers of opted-in Pods that run upstream images the webhook would rewrite, by registry (set by the Lease holder)",
                ),
                &["registry"],
            )?,
            containers: IntGaugeVec::new(
                Opts::new(
                    "containers",
                    "Images of opted-in Pods (containers, init and ephemeral containers, image volumes), by registry (mapped, or other) and state (cached, bypassing, pinned-not-cached, excluded, rule-missing, unmapped, uncacheable, private-ecr, invalid); set by the Lease holder",
                ),
                &["registry", "state"],
            )?,
            pulls: crate::pullfail::run::PullMetrics::register(registry)?,
        };
        registry.register(Box::new(m.runs.clone()))?;
        registry.register(Box::new(m.failures.clone()))?;
        registry.register(Box::new(m.events.clone()))?;
        registry.register(Box::new(m.leader.clone()))?;
        registry.register(Box::new(m.pods.clone()))?;
        registry.register(Box::new(m.standing.clone()))?;
        registry.register(Box::new(m.rate_limited.clone()))?;
        registry.register(Box::new(m.bypassing.clone()))?;
        registry.register(Box::new(m.containers.clone()))?;
        Ok(m)
    }

    pub(super) fn failure(&self, kind: &str) {
        self.failures.with_label_values(&[kind]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_registered_once() {
        let registry = Registry::new();
        let metrics = ReconcilerMetrics::register(&registry).unwrap();
        metrics.failure("lease");
        metrics
            .events
            .with_label_values(&["PullThroughCacheRuleMissing"])
            .inc();
        metrics.bypassing.with_label_values(&["docker.io"]).set(1);
        metrics
            .containers
            .with_label_values(&["docker.io", "cached"])
            .set(1);
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        for name in [
            "reconcile_runs_total",
            "reconcile_failures_total",
            "events_total",
            "reconciler_leader",
            "reconciler_pods",
            "reconciler_standing_warnings",
            "events_rate_limited_total",
            "bypassing_containers",
            "containers",
        ] {
            assert!(
                names.iter().any(|n| n == name),
                "{name} missing from {names:?}"
            );
        }
        assert_eq!(metrics.failures.with_label_values(&["lease"]).get(), 1);
        assert!(
            ReconcilerMetrics::register(&registry).is_err(),
            "registered twice"
        );
    }
}
