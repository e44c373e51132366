//! The publishing loop: each pass runs the checks over the Pods in scope, plans Events with the tracker, and publishes them at a bounded rate while this replica holds the Lease.
//!
//! A replica that gains the Lease, or starts, first lists the Events already published and
//! takes them as its record of standing Events, so that it repeats nothing the old holder said.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::Recorder;
use kube::{Api, Resource as _};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::inventory::{Shared, lock};
use super::options::Reconciler;
use super::stop::stopped;
use crate::audit::{self, Facts, RuleHistory};
use crate::coverage;
use crate::digests::DigestSnapshot;
use crate::ecr::Backoff;
use crate::reconciler::check::CHECKS;
use crate::reconciler::rate::TokenBucket;
use crate::reconciler::rule_check::{REASON_SUMMARY, REASON_SUMMARY_READY};
use crate::reconciler::standing::{self, Seeding};
use crate::reconciler::target::Target;
use crate::reconciler::writer::EventWriter;
use crate::reconciler::{Tracker, World};
use crate::warm;

/// However quiet things are, the reconciler looks again this often, for Warnings due to be
/// re-sent.
const RECHECK: Duration = Duration::from_mins(1);

/// What a pass depends on: the inventory's generation and the configuration, rule snapshot and
/// unavailable digests in force (by address: each reload is a new one).
type Signature = (u64, usize, usize, usize);

/// Whether a pass would find nothing new: what it depends on is as the last complete pass saw
/// it, and no Warning can be due for a resend yet.
fn unchanged(
    last: Option<Signature>,
    now: Signature,
    since_last: Duration,
    resend_interval: Duration,
) -> bool {
    last == Some(now) && since_last < RECHECK.min(resend_interval)
}

/// The reasons of every Event the reconciler publishes, and of their resolutions: a listed
/// Event with one of them is the reconciler's own.
fn reasons() -> (Vec<&'static str>, Vec<&'static str>) {
    let reasons = CHECKS
        .iter()
        .flat_map(|c| c.reasons.iter().copied())
        .chain([REASON_SUMMARY])
        .collect();
    let resolutions = CHECKS
        .iter()
        .flat_map(|c| c.resolutions.iter().copied())
        .chain([REASON_SUMMARY_READY])
        .collect();
    (reasons, resolutions)
}

impl Reconciler {
    async fn deployment_ref(&self) -> Option<ObjectReference> {
        let name = self.options.deployment.as_deref()?;
        let api: Api<Deployment> =
            Api::namespaced(self.client.clone(), &self.options.own_namespace);
        match api.get(name).await {
            Ok(d) => Some(d.object_ref(&())),
            Err(e) => {
                warn!(deployment = name, error = %e, "cannot read the reconciler's Deployment; its summary Events will not show in kubectl describe");
                Some(ObjectReference {
                    api_version: Some("apps/v1".into()),
                    kind: Some("Deployment".into()),
                    name: Some(name.to_owned()),
                    namespace: Some(self.options.own_namespace.clone()),
                    ..ObjectReference::default()
                })
            }
        }
    }

    pub(super) async fn reconcile(
        &self,
        inventory: Shared,
        leader: watch::Receiver<bool>,
        mut stop: watch::Receiver<bool>,
    ) {
        let writer = EventWriter::new(self.client.clone(), self.reporter.clone());
        let mut tracker = Tracker::new(self.options.resend_interval);
        // Pull failures and fallbacks keep their own record: a fallback acts on a Pod, and
        // its first-seen times outlive a pass.
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        let mut pulls = crate::pullfail::track::PullTracker::new(self.options.resend_interval);
        let mut rule_history = RuleHistory::default();
        let mut bucket = TokenBucket::new(
            self.options.event_rate,
            self.options.event_burst,
            Instant::now(),
        );
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_mins(5));
        let mut retry_at: Option<Instant> = None;
        let mut deployment: Option<Option<ObjectReference>> = None;
        let mut last: Option<Signature> = None;
        let mut last_run = Instant::now();
        // Whether the record of standing Events was read from the cluster since this replica
        // last gained the Lease.
        let mut seeded = false;
        let mut uids: HashMap<(String, String), Option<String>> = HashMap::new();
        let mut ticker = tokio::time::interval(self.options.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stopped(&mut stop) => break,
                _ = ticker.tick() => {}
            }
            let is_leader = *leader.borrow();
            self.metrics.leader.set(i64::from(is_leader));
            let (synced, generation, deleted) = {
                let mut inv = lock(&inventory);
                (
                    inv.pods_synced && inv.namespaces_synced,
                    inv.generation,
                    std::mem::take(&mut inv.deleted),
                )
            };
            for uid in deleted {
                tracker.forget(&uid);
                pulls.forget(&uid);
            }
            // Every replica keeps the history, so that a new Lease holder knows it too.
            rule_history.observe(&self.rules.load());
            if !is_leader {
                // Only the replica that publishes says how many containers bypass the cache.
                self.metrics.bypassing.reset();
                self.metrics.containers.reset();
                // Another replica publishes meanwhile: what this one knew goes stale.
                seeded = false;
            }
            if !synced {
                continue;
            }
            self.ready.store(true, Ordering::Release);
            let now = Instant::now();
            if !is_leader || retry_at.is_some_and(|t| now < t) {
                continue;
            }
            if deployment.is_none() {
                deployment = Some(self.deployment_ref().await);
            }
            if !seeded {
                match self.seed(&writer, &inventory).await {
                    Ok(standing) => {
                        info!(
                            standing = standing.len(),
                            "read the Events already published"
                        );
                        tracker.seed(standing);
                        uids.clear();
                        seeded = true;
                        last = None;
                    }
                    Err(e) => {
                        self.metrics.failure("event_list");
                        let delay = backoff.next_delay().max(Duration::from_secs(1));
                        warn!(error = %e, retry_in = ?delay, "cannot list the Events already published; publishing nothing until they are known");
                        retry_at = Some(Instant::now() + delay);
                        continue;
                    }
                }
            }
            let config = self.config.load_full();
            let rules = self.rules.load_full();
            let unavailable = self.warmer.as_ref().map(|w| w.unavailable.load_full());
            let signature = (
                generation,
                Arc::as_ptr(&config) as usize,
                Arc::as_ptr(&rules) as usize,
                unavailable.as_ref().map_or(0, |u| Arc::as_ptr(u) as usize),
            );
            if unchanged(
                last,
                signature,
                last_run.elapsed(),
                self.options.resend_interval,
            ) && !pulls.due(&config, now)
            {
                continue;
            }
            let summary_ref = deployment.clone().flatten();
            let planned = {
                let inv = lock(&inventory);
                let pods = inv.pods_in_scope(&self.options.own_namespace);
                self.metrics
                    .pods
                    .set(i64::try_from(pods.len()).unwrap_or(i64::MAX));
                if rules.is_known() {
                    self.metrics.bypassing.reset();
                    for (registry, n) in
                        audit::count_by_registry(&config, &rules, pods.iter().copied())
                    {
                        self.metrics
                            .bypassing
                            .with_label_values(&[registry.as_str()])
                            .set(i64::try_from(n).unwrap_or(i64::MAX));
                    }
                    // The same images, every state: what `pullthrough coverage` counts.
                    self.metrics.containers.reset();
                    for ((registry, state), n) in coverage::count_by_label(
                        &config,
                        &rules,
                        &DigestSnapshot::EMPTY,
                        pods.iter().copied(),
                    ) {
                        self.metrics
                            .containers
                            .with_label_values(&[registry.as_str(), state.name()])
                            .set(i64::try_from(n).unwrap_or(i64::MAX));
                    }
                }
                let facts = Facts {
                    opted_in_at: inv.opted_in_at.clone(),
                    rule_usable_since: rule_history.usable_since(&rules),
                    ..Facts::default()
                };
                let no_unavailable = warm::Unavailable::default();
                let world = World {
                    config: &config,
                    rules: &rules,
                    pods: &pods,
                    audit: &facts,
                    unavailable: unavailable.as_deref().unwrap_or(&no_unavailable),
                };
                (
                    tracker.plan(&world, CHECKS, summary_ref.is_some(), now),
                    pulls.plan(&config, &rules, &pods, now),
                )
            };
            let (planned, mut pull_plan) = planned;
            // Failing and recovered pulls go out through the checks above, grouped and
            // rate-limited like every Event; the pull tracker keeps the fallbacks and their Events.
            pull_plan
                .events
                .retain(|e| e.reason == crate::pullfail::REASON_FALLBACK);
            self.metrics.pulls.count(&pull_plan);
            self.metrics.runs.inc();
            let mut failed = false;
            let mut held_back = 0usize;
            for mut event in planned {
                if !bucket.try_take(Instant::now()) {
                    held_back += 1;
                    continue;
                }
                if let Target::Workload(w) = &mut event.target
                    && w.uid.is_none()
                    && w.kind == "Deployment"
                {
                    w.uid = self.deployment_uid(&mut uids, &w.namespace, &w.name).await;
                }
                match writer.write(&event, summary_ref.as_ref()).await {
                    Ok(written) => {
                        let (name, count) = written.map_or((None, 1), |w| (Some(w.name), w.count));
                        tracker.published(&event, name, count, Instant::now());
                        self.metrics.events.with_label_values(&[event.reason]).inc();
                        match &event.target {
                            Target::Pod(p) => info!(
                                reason = event.reason, namespace = %p.namespace, pod = %p.name, count,
                                "event published"
                            ),
                            Target::Workload(w) => info!(
                                reason = event.reason, namespace = %w.namespace, kind = %w.kind, name = %w.name, count,
                                "event published"
                            ),
                            Target::Deployment => {
                                info!(reason = event.reason, count, "summary event published");
                            }
                        }
                    }
                    Err(e) => {
                        self.metrics.failure("event_publish");
                        // Jittered, and never sooner than a second: the API server is in trouble.
                        let delay = backoff.next_delay().max(Duration::from_secs(1));
                        warn!(error = %e, retry_in = ?delay, "cannot publish an Event; retrying later");
                        retry_at = Some(Instant::now() + delay);
                        failed = true;
                        break;
                    }
                }
            }
            if !failed
                && let Err(e) = crate::pullfail::run::act(
                    &self.client,
                    &recorder,
                    &mut pulls,
                    pull_plan,
                    &self.metrics.pulls,
                    &self.metrics.events,
                )
                .await
            {
                self.metrics.failure("event_publish");
                let delay = backoff.next_delay().max(Duration::from_secs(1));
                warn!(error = %e, retry_in = ?delay, "cannot publish a pull-failure Event or fall back; retrying later");
                retry_at = Some(Instant::now() + delay);
                failed = true;
            }
            if held_back > 0 {
                // What the rate limit held back stays due and goes out on later passes.
                debug!(held_back, "event rate limit reached");
                self.metrics.rate_limited.inc_by(held_back as u64);
            }
            if !failed {
                backoff.reset();
                retry_at = None;
                if held_back == 0 {
                    last = Some(signature);
                    last_run = now;
                }
            }
            self.metrics
                .standing
                .set(i64::try_from(tracker.standing()).unwrap_or(i64::MAX));
        }
    }

    /// The UID of a Deployment an Event goes on, read once: a Pod names its Deployment only
    /// through its ReplicaSet, and `kubectl describe` shows only Events that carry the UID.
    /// `None` when it does not exist (the Event goes out without it); a failed read is tried
    /// again with the next Event.
    async fn deployment_uid(
        &self,
        uids: &mut HashMap<(String, String), Option<String>>,
        namespace: &str,
        name: &str,
    ) -> Option<String> {
        let key = (namespace.to_owned(), name.to_owned());
        if let Some(uid) = uids.get(&key) {
            return uid.clone();
        }
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        let uid = match api.get_metadata(name).await {
            Ok(d) => d.metadata.uid,
            Err(kube::Error::Api(status)) if status.is_not_found() => None,
            Err(e) => {
                debug!(namespace, deployment = name, error = %e, "cannot read a Deployment's UID");
                return None;
            }
        };
        uids.insert(key, uid.clone());
        uid
    }

    /// The record of standing Events, from the Events this controller already published in
    /// the opted-in namespaces and its own.
    async fn seed(
        &self,
        writer: &EventWriter,
        inventory: &Shared,
    ) -> Result<HashMap<standing::EventKey, standing::Standing>, kube::Error> {
        let events = writer.list().await?;
        let namespaces = lock(inventory).namespaces.clone();
        let (reasons, resolutions) = reasons();
        let seeding = Seeding {
            controller: writer.controller(),
            own_namespace: &self.options.own_namespace,
            deployment: self.options.deployment.as_deref(),
            namespaces: &namespaces,
            reasons: &reasons,
            resolutions: &resolutions,
        };
        Ok(standing::from_events(
            &events,
            &seeding,
            k8s_openapi::jiff::Timestamp::now(),
            Instant::now(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_is_skipped_only_while_nothing_changed_and_nothing_is_due() {
        let sig = (3, 1, 2, 0);
        let resend = Duration::from_mins(30);
        assert!(unchanged(Some(sig), sig, Duration::from_secs(10), resend));
        assert!(!unchanged(None, sig, Duration::from_secs(10), resend));
        assert!(!unchanged(
            Some((4, 1, 2, 0)),
            sig,
            Duration::from_secs(10),
            resend
        ));
        // Warnings due to be re-sent are looked for at least every minute...
        assert!(!unchanged(Some(sig), sig, RECHECK, resend));
        // ...or every resend interval, when that is shorter.
        assert!(!unchanged(
            Some(sig),
            sig,
            Duration::from_secs(10),
            Duration::from_secs(5)
        ));
    }

    #[test]
    fn every_check_reason_and_the_summary_count_as_the_reconcilers_own() {
        let (reasons, resolutions) = reasons();
        for check in CHECKS {
            for r in check.reasons {
                assert!(reasons.contains(r), "{r}");
            }
            for r in check.resolutions {
                assert!(resolutions.contains(r), "{r}");
            }
        }
        assert!(reasons.contains(&REASON_SUMMARY));
        assert!(resolutions.contains(&REASON_SUMMARY_READY));
        assert!(reasons.contains(&crate::reconciler::REASON_MISSING));
        assert!(resolutions.contains(&crate::reconciler::REASON_RESTORED));
    }
}
