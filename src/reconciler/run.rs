//! The reconciler's I/O: watchers on opted-in namespaces and their Pods, the Event writer with its rate limit, and the Lease that decides which replica publishes.
//!
//! A replica that gains the Lease, or starts, first lists the Events already published and
//! takes them as its record of standing Events, so that it repeats nothing the old holder said.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use futures::{Stream, StreamExt as _};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, ObjectReference, Pod};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client, Resource as _};
use kube_lease_manager::LeaseManagerBuilder;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::rate::TokenBucket;
use super::standing::{self, Seeding};
use super::writer::EventWriter;
use super::{
    CHECKS, Interner, PodRecord, REASON_SUMMARY, REASON_SUMMARY_READY, Target, Tracker, World,
};
use crate::audit::selector::Selector;
use crate::audit::{self, Facts, RuleHistory};
use crate::config::Config;
use crate::ecr::Backoff;
use crate::rules::RuleSnapshot;
use crate::warm::{self, run::Warmer};

/// Namespaces whose Pods are never looked at, whatever their labels say (the webhook's
/// configuration excludes them too).
const ALWAYS_EXCLUDED: &str = "kube-system";
/// However quiet things are, the reconciler looks again this often, for Warnings due to be
/// re-sent.
const RECHECK: Duration = Duration::from_mins(1);
/// Pods per page of a list.
const PAGE: u32 = 500;
/// The interner drops what no Pod uses any more after this many deletions.
const PRUNE_EVERY: u64 = 1024;

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
        Ok(m)
    }

    fn failure(&self, kind: &str) {
        self.failures.with_label_values(&[kind]).inc();
    }
}

/// How the reconciler runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Label selector of the opted-in namespaces.
    pub namespace_selector: String,
    /// The reconciler's own namespace: never looked at, and home of its Deployment.
    pub own_namespace: String,
    /// The reconciler's Deployment, which gets the summary Events; `None` for none.
    pub deployment: Option<String>,
    /// How often a standing Warning is re-sent.
    pub resend_interval: Duration,
    /// How often the reconcile loop wakes up to look for changes.
    pub tick: Duration,
    /// Events published per second, on average.
    pub event_rate: f64,
    /// Events published at once before the rate applies.
    pub event_burst: u32,
}

#[derive(Default)]
struct Inventory {
    pods: HashMap<String, PodRecord>,
    interner: Interner,
    pods_synced: bool,
    namespaces: BTreeSet<String>,
    namespaces_synced: bool,
    /// Bumped on every change, so the loop knows when to look again.
    generation: u64,
    /// UIDs of Pods deleted since the loop last looked.
    deleted: Vec<String>,
    /// Pods deleted since the start, to prune the interner now and then.
    removed: u64,
    /// When each opted-in namespace was opted in, where its managed fields tell.
    opted_in_at: BTreeMap<String, SystemTime>,
}

type Shared = Arc<Mutex<Inventory>>;

fn lock(inventory: &Shared) -> std::sync::MutexGuard<'_, Inventory> {
    // The inventory is plain data: a panic elsewhere cannot leave it half-updated in a way
    // that matters more than stopping would.
    inventory.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The reconciler, ready to run.
pub struct Reconciler {
    /// Kubernetes client.
    pub client: Client,
    /// Configuration in force (reloaded elsewhere).
    pub config: Arc<ArcSwap<Config>>,
    /// Rule snapshot (refreshed elsewhere).
    pub rules: Arc<ArcSwap<RuleSnapshot>>,
    /// Metrics.
    pub metrics: ReconcilerMetrics,
    /// Options.
    pub options: Options,
    /// Who publishes the Events.
    pub reporter: Reporter,
    /// Set once both watchers have listed everything.
    pub ready: Arc<AtomicBool>,
    /// Warms the cache for Pods' pinned images (`digests: whenCached`); `None` for no warming.
    pub warmer: Option<Warmer>,
}

impl Reconciler {
    /// Runs until `stop` turns true. Publishes only while `leader` is true.
    pub async fn run(self, leader: watch::Receiver<bool>, stop: watch::Receiver<bool>) {
        let inventory = Shared::default();
        let pods = watch_pods(
            Api::all(self.client.clone()),
            inventory.clone(),
            self.metrics.clone(),
            stop.clone(),
        );
        let namespaces = watch_namespaces(
            Api::all(self.client.clone()),
            self.options.namespace_selector.clone(),
            inventory.clone(),
            self.metrics.clone(),
            stop.clone(),
        );
        let warm = async {
            if let Some(warmer) = &self.warmer {
                let inventory = inventory.clone();
                let own = self.options.own_namespace.clone();
                let wanted = move |config: &Config| {
                    let inv = lock(&inventory);
                    let pods: Vec<&PodRecord> = inv
                        .pods
                        .values()
                        .filter(|p| in_scope(&inv, p, &own) && !p.exempt(config))
                        .collect();
                    warm::wanted(config, &pods)
                };
                warmer
                    .run(self.config.clone(), wanted, leader.clone(), stop.clone())
                    .await;
            }
        };
        let reconcile = self.reconcile(inventory.clone(), leader.clone(), stop.clone());
        tokio::join!(pods, namespaces, reconcile, warm);
    }

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

    async fn reconcile(
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
        let mut last: Option<(u64, usize, usize, usize)> = None;
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
            if last == Some(signature)
                && last_run.elapsed() < RECHECK.min(self.options.resend_interval)
                && !pulls.due(&config, now)
            {
                continue;
            }
            let summary_ref = deployment.clone().flatten();
            let planned = {
                let inv = lock(&inventory);
                let pods: Vec<&PodRecord> = inv
                    .pods
                    .values()
                    .filter(|p| in_scope(&inv, p, &self.options.own_namespace))
                    .collect();
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
        let reasons: Vec<&'static str> = CHECKS
            .iter()
            .flat_map(|c| c.reasons.iter().copied())
            .chain([REASON_SUMMARY])
            .collect();
        let resolutions: Vec<&'static str> = CHECKS
            .iter()
            .flat_map(|c| c.resolutions.iter().copied())
            .chain([REASON_SUMMARY_READY])
            .collect();
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

/// Resolves once `stop` turns true (or its sender is gone).
/// Whether the reconciler looks at `pod`: in an opted-in namespace, neither its own nor
/// kube-system.
fn in_scope(inv: &Inventory, pod: &PodRecord, own_namespace: &str) -> bool {
    inv.namespaces.contains(&*pod.namespace)
        && *pod.namespace != *own_namespace
        && &*pod.namespace != ALWAYS_EXCLUDED
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Feeds a watcher's events into the inventory through `apply`, until `stop`.
async fn drive<K, S>(
    stream: S,
    what: &'static str,
    metrics: &ReconcilerMetrics,
    mut stop: watch::Receiver<bool>,
    mut apply: impl FnMut(watcher::Event<K>),
) where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    let mut failing = false;
    loop {
        let item = tokio::select! {
            () = stopped(&mut stop) => break,
            item = stream.next() => item,
        };
        match item {
            Some(Ok(event)) => {
                if std::mem::take(&mut failing) {
                    info!(what, "watch recovered");
                }
                apply(event);
            }
            Some(Err(e)) => {
                metrics.failure(what);
                if failing {
                    debug!(what, error = %e, "watch failing");
                } else {
                    warn!(what, error = %e, "watch failed; retrying with back-off");
                    failing = true;
                }
            }
            None => break,
        }
    }
}

async fn watch_pods(
    api: Api<Pod>,
    inventory: Shared,
    metrics: ReconcilerMetrics,
    stop: watch::Receiver<bool>,
) {
    // Finished Pods pull nothing more. Lists are paged (not served whole from the API server's
    // cache), so that no more than a page of full Pods is held while their records are made.
    let config = watcher::Config::default()
        .fields("status.phase!=Succeeded,status.phase!=Failed")
        .page_size(PAGE);
    let stream = watcher(api, config).default_backoff();
    let mut fresh: Option<HashMap<String, PodRecord>> = None;
    drive(stream, "pod_watch", &metrics, stop, |event| {
        let mut inv = lock(&inventory);
        match event {
            watcher::Event::Init => fresh = Some(HashMap::new()),
            watcher::Event::InitApply(pod) => {
                if let Some(fresh) = fresh.as_mut()
                    && let Some(record) = PodRecord::interned(&pod, &mut inv.interner)
                {
                    fresh.insert(record.uid.clone(), record);
                }
            }
            watcher::Event::InitDone => {
                let fresh = fresh.take().unwrap_or_default();
                let gone: Vec<String> = inv
                    .pods
                    .keys()
                    .filter(|uid| !fresh.contains_key(*uid))
                    .cloned()
                    .collect();
                inv.deleted.extend(gone);
                inv.pods = fresh;
                inv.interner.prune();
                inv.pods_synced = true;
                inv.generation += 1;
            }
            watcher::Event::Apply(pod) => {
                if let Some(record) = PodRecord::interned(&pod, &mut inv.interner)
                    && inv.pods.get(&record.uid) != Some(&record)
                {
                    inv.pods.insert(record.uid.clone(), record);
                    inv.generation += 1;
                }
            }
            watcher::Event::Delete(pod) => {
                if let Some(uid) = pod.metadata.uid
                    && inv.pods.remove(&uid).is_some()
                {
                    inv.deleted.push(uid);
                    inv.generation += 1;
                    inv.removed += 1;
                    if inv.removed.is_multiple_of(PRUNE_EVERY) {
                        inv.interner.prune();
                    }
                }
            }
        }
    })
    .await;
}

async fn watch_namespaces(
    api: Api<Namespace>,
    selector: String,
    inventory: Shared,
    metrics: ReconcilerMetrics,
    stop: watch::Receiver<bool>,
) {
    let stream = watcher(api, watcher::Config::default().labels(&selector)).default_backoff();
    // The API server checks the selector; this copy only finds when its labels were set.
    let parsed = Selector::parse(&selector).unwrap_or_default();
    let mut fresh: Option<BTreeSet<String>> = None;
    let mut fresh_opted_in: BTreeMap<String, SystemTime> = BTreeMap::new();
    drive(stream, "namespace_watch", &metrics, stop, |event| {
        let mut inv = lock(&inventory);
        match event {
            watcher::Event::Init => {
                fresh = Some(BTreeSet::new());
                fresh_opted_in.clear();
            }
            watcher::Event::InitApply(ns) => {
                let opted_in = audit::opted_in_at(&ns, &parsed);
                if let (Some(fresh), Some(name)) = (fresh.as_mut(), ns.metadata.name) {
                    if let Some(t) = opted_in {
                        fresh_opted_in.insert(name.clone(), t);
                    }
                    fresh.insert(name);
                }
            }
            watcher::Event::InitDone => {
                inv.namespaces = fresh.take().unwrap_or_default();
                inv.opted_in_at = std::mem::take(&mut fresh_opted_in);
                inv.namespaces_synced = true;
                inv.generation += 1;
            }
            watcher::Event::Apply(ns) => {
                let opted_in = audit::opted_in_at(&ns, &parsed);
                if let Some(name) = ns.metadata.name {
                    let changed = match opted_in {
                        Some(t) => inv.opted_in_at.insert(name.clone(), t) != Some(t),
                        None => inv.opted_in_at.remove(&name).is_some(),
                    };
                    if inv.namespaces.insert(name) || changed {
                        inv.generation += 1;
                    }
                }
            }
            watcher::Event::Delete(ns) => {
                if let Some(name) = ns.metadata.name
                    && inv.namespaces.remove(&name)
                {
                    inv.opted_in_at.remove(&name);
                    inv.generation += 1;
                }
            }
        }
    })
    .await;
}

/// Where and as whom to hold the Lease.
#[derive(Debug, Clone)]
pub struct LeaseOptions {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This replica's identity (its Pod name).
    pub identity: String,
    /// How long the Lease holds without renewal.
    pub duration: Duration,
}

/// Takes part in the election for the Lease in the background. The channel says whether this
/// replica holds it (false until it does); errors back off and never end the election. When
/// `stop` turns true the Lease is released, so another replica takes over at once.
pub fn elect(
    client: Client,
    lease: LeaseOptions,
    metrics: ReconcilerMetrics,
    mut stop: watch::Receiver<bool>,
) -> (watch::Receiver<bool>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let duration = lease.duration.as_secs().max(2);
        // Renew a third of the way before expiry: clock skew and API latency stay inside it.
        let grace = (duration / 3).max(1);
        loop {
            let built = LeaseManagerBuilder::new(client.clone(), &lease.name)
                .with_namespace(&lease.namespace)
                .with_identity(&lease.identity)
                .with_duration(duration)
                .with_grace(grace)
                .build();
            let manager = tokio::select! {
                () = stopped(&mut stop) => return,
                built = built => built,
            };
            let manager = match manager {
                Ok(m) => m,
                Err(e) => {
                    metrics.failure("lease");
                    let delay = backoff.next_delay();
                    warn!(error = %e, retry_in = ?delay, "cannot set up the Lease");
                    tokio::select! {
                        () = stopped(&mut stop) => return,
                        () = tokio::time::sleep(delay) => continue,
                    }
                }
            };
            backoff.reset();
            let (mut held, handle) = manager.watch().await;
            loop {
                let holds = *held.borrow_and_update();
                if *tx.borrow() != holds {
                    if holds {
                        info!(lease = %lease.name, identity = %lease.identity, "holding the Lease; publishing Events");
                    } else {
                        info!(lease = %lease.name, "not holding the Lease; another replica publishes Events");
                    }
                    let _ = tx.send(holds);
                }
                tokio::select! {
                    () = stopped(&mut stop) => {
                        // Dropping the receiver makes the manager release the Lease.
                        drop(held);
                        let _ = tx.send(false);
                        let _ = tokio::time::timeout(Duration::from_secs(5), handle).await;
                        return;
                    }
                    changed = held.changed() => if changed.is_err() { break },
                }
            }
            // The manager's task ended: treat the Lease as lost and start again.
            let _ = tx.send(false);
            metrics.failure("lease");
            warn!("the Lease manager stopped; starting again");
            let _ = handle.await;
            tokio::time::sleep(backoff.next_delay()).await;
        }
    });
    (rx, task)
}
