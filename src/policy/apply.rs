//! The reconciler's policy task: applies the MutatingAdmissionPolicy with server-side apply
//! while this replica holds the Lease, again whenever the configuration, the rule status or the
//! confirmed digests change it, and tells people through Events on its Deployment.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client, Resource as _};
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use tokio::sync::watch;
use tracing::{info, warn};

use super::keep::{Applied, Keeper, Notice, seed_of};
use super::{Options, plan};
use crate::config::Config;
use crate::digests::DigestSnapshot;
use crate::reconciler::writer::EventWriter;
use crate::reconciler::{Publish, Severity, Target, bounded};
use crate::rules::RuleSnapshot;

/// The field manager of every apply.
pub const FIELD_MANAGER: &str = "pullthrough";
/// How often the task looks for a change.
pub const TICK: Duration = Duration::from_secs(1);

/// The policy task's metrics.
#[derive(Clone)]
pub struct PolicyMetrics {
    /// `pullthrough_policy_applies_total{result}`.
    pub applies: IntCounterVec,
    /// `pullthrough_policy_registries`.
    pub registries: IntGauge,
}

impl PolicyMetrics {
    /// Registers the metrics.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            applies: IntCounterVec::new(
                Opts::new(
                    "policy_applies_total",
                    "Server-side applies of the MutatingAdmissionPolicy, by result (applied, refused, error)",
                ),
                &["result"],
            )?,
            registries: IntGauge::new(
                "policy_registries",
                "Registries the MutatingAdmissionPolicy rewrites as last applied",
            )?,
        };
        registry.register(Box::new(m.applies.clone()))?;
        registry.register(Box::new(m.registries.clone()))?;
        for result in ["applied", "refused", "error"] {
            m.applies.with_label_values(&[result]);
        }
        Ok(m)
    }
}

/// The resource of `MutatingAdmissionPolicy`, `admissionregistration.k8s.io/v1`.
pub fn resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            "admissionregistration.k8s.io",
            "v1",
            "MutatingAdmissionPolicy",
        ),
        "mutatingadmissionpolicies",
    )
}

/// Keeps the policy applied.
pub struct PolicyTask {
    /// Kubernetes client.
    pub client: Client,
    /// Configuration in force.
    pub config: Arc<ArcSwap<Config>>,
    /// Rule status.
    pub rules: Arc<ArcSwap<RuleSnapshot>>,
    /// Digests confirmed in the cache.
    pub digests: Arc<ArcSwap<DigestSnapshot>>,
    /// How the policy is made.
    pub options: Options,
    /// Writes the Events.
    pub events: EventWriter,
    /// The reconciler's namespace and Deployment, which get the Events.
    pub deployment: Option<(String, String)>,
    /// Metrics.
    pub metrics: PolicyMetrics,
    /// How often it looks for a change ([`TICK`]).
    pub tick: Duration,
    /// Least time between applies ([`super::keep::MIN_INTERVAL`]).
    pub min_interval: Duration,
}

impl PolicyTask {
    /// Runs until `stop`; applies only while `leader` is true.
    pub async fn run(self, leader: watch::Receiver<bool>, mut stop: watch::Receiver<bool>) {
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource());
        let mut keeper = Keeper::new(self.min_interval);
        let mut seeded = false;
        let mut regarding: Option<ObjectReference> = None;
        let mut ticker = tokio::time::interval(self.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                _ = ticker.tick() => {}
            }
            if !*leader.borrow() {
                if seeded {
                    keeper.forget();
                    seeded = false;
                }
                continue;
            }
            let planned = match plan(
                &self.config.load(),
                &self.rules.load(),
                &self.digests.load(),
                &self.options,
            ) {
                Ok(p) => p,
                Err(e) => {
                    warn!(error = %e, "cannot plan the MutatingAdmissionPolicy");
                    continue;
                }
            };
            if !keeper.due(planned.fingerprint(), Instant::now()) {
                continue;
            }
            if !seeded {
                // What the cluster holds: an identical policy is not applied again, and a
                // change of registries is told against what it rewrote.
                match api.get_opt(&self.options.name).await {
                    Ok(existing) => {
                        let existing = existing.and_then(|o| serde_json::to_value(o).ok());
                        keeper.seed(existing.as_ref().and_then(seed_of));
                        seeded = true;
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot read the MutatingAdmissionPolicy");
                        self.metrics.applies.with_label_values(&["error"]).inc();
                        keeper.applied(
                            planned.fingerprint(),
                            &planned.registries,
                            &Applied::Failed(e.to_string()),
                            Instant::now(),
                        );
                        continue;
                    }
                }
                self.metrics.registries.set(gauge(planned.registries.len()));
            }
            if !keeper.due(planned.fingerprint(), Instant::now()) {
                continue;
            }
            let result = match api
                .patch(
                    &self.options.name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&planned.policy),
                )
                .await
            {
                Ok(_) => Applied::Accepted,
                Err(kube::Error::Api(status))
                    if (400..500).contains(&status.code)
                        && !matches!(status.code, 408 | 409 | 429) =>
                {
                    Applied::Refused(status.message.clone())
                }
                Err(e) => Applied::Failed(e.to_string()),
            };
            self.metrics
                .applies
                .with_label_values(&[result.label()])
                .inc();
            match &result {
                Applied::Accepted => {
                    self.metrics.registries.set(gauge(planned.registries.len()));
                    info!(
                        policy = %self.options.name,
                        registries = %planned.registries.join(","),
                        digests = planned.digests,
                        digests_left_out = planned.digests_left_out,
                        "MutatingAdmissionPolicy applied"
                    );
                }
                Applied::Refused(message) => {
                    warn!(policy = %self.options.name, %message, "the API server refused the MutatingAdmissionPolicy");
                }
                Applied::Failed(message) => {
                    warn!(policy = %self.options.name, %message, "cannot apply the MutatingAdmissionPolicy; retrying");
                }
            }
            if let Some(notice) = keeper.applied(
                planned.fingerprint(),
                &planned.registries,
                &result,
                Instant::now(),
            ) {
                if regarding.is_none() {
                    regarding = self.deployment_ref().await;
                }
                self.tell(&notice, regarding.as_ref()).await;
            }
        }
    }

    async fn tell(&self, notice: &Notice, regarding: Option<&ObjectReference>) {
        let event = Publish {
            target: Target::Deployment,
            severity: match notice {
                Notice::Registries { .. } => Severity::Normal,
                Notice::Refused(_) => Severity::Warning,
            },
            reason: notice.reason(),
            cause: self.options.name.clone(),
            note: bounded(notice.note(&self.options.name)),
            series: None,
            resolution: None,
            resolves: None,
        };
        if let Err(e) = self.events.write(&event, regarding).await {
            warn!(error = %e, reason = notice.reason(), "cannot publish the policy Event");
        }
    }

    async fn deployment_ref(&self) -> Option<ObjectReference> {
        let (namespace, name) = self.deployment.as_ref()?;
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        match api.get(name).await {
            Ok(d) => Some(d.object_ref(&())),
            Err(e) => {
                warn!(deployment = %name, error = %e, "cannot read the reconciler's Deployment for the policy Events");
                None
            }
        }
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
