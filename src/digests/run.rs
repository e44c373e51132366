//! The background digest checker: takes the digests the webhook could not answer for, asks ECR
//! `DescribeImages` about them at a bounded rate, and publishes what it learns as a new
//! [`DigestSnapshot`]. The webhook hands digests over with [`DigestRequests::ask`], which never
//! waits.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{
    Answer, CheckQueue, DigestKey, DigestSnapshot, Failure, Knowledge, Pause, Policy, RateLimit,
};
use crate::config::Config;
use crate::ecr::{ErrorKind, ImageSource};

/// Digests waiting to be taken by the checker; beyond this the webhook's requests are dropped
/// (and asked again by the next Pod that needs them).
pub const REQUEST_CAPACITY: usize = 4096;
/// Digests queued for a check at once.
const QUEUE_CAPACITY: usize = 1024;
/// How often the checker looks for answers that are out of date.
const RESCAN: Duration = Duration::from_secs(1);

/// Metrics of the digest checks.
#[derive(Clone)]
pub struct DigestMetrics {
    /// Digests remembered.
    pub known: IntGauge,
    /// `DescribeImages` checks by result (`cached`, `not_cached`, `throttled`, `access_denied`,
    /// `error`).
    pub checks: IntCounterVec,
    /// Requests from the webhook dropped because the checker was behind.
    pub dropped: IntCounter,
}

impl DigestMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            known: IntGauge::new(
                "digest_cache_entries",
                "Pinned digests whose presence in the pull-through cache is remembered",
            )?,
            checks: IntCounterVec::new(
                Opts::new(
                    "digest_checks_total",
                    "DescribeImages checks of pinned digests, by result",
                ),
                &["result"],
            )?,
            dropped: IntCounter::new(
                "digest_check_requests_dropped_total",
                "Digests the webhook could not hand to the checker because it was behind",
            )?,
        };
        registry.register(Box::new(m.known.clone()))?;
        registry.register(Box::new(m.checks.clone()))?;
        registry.register(Box::new(m.dropped.clone()))?;
        Ok(m)
    }
}

/// The webhook's end of the checker: hands over digests without waiting.
#[derive(Clone)]
pub struct DigestRequests {
    tx: mpsc::Sender<DigestKey>,
    dropped: IntCounter,
}

impl DigestRequests {
    /// Asks for `key` to be checked; false (and counted) when the checker is behind.
    pub fn ask(&self, key: DigestKey) -> bool {
        let sent = self.tx.try_send(key).is_ok();
        if !sent {
            self.dropped.inc();
        }
        sent
    }
}

/// A request channel of [`REQUEST_CAPACITY`].
pub fn channel(metrics: &DigestMetrics) -> (DigestRequests, mpsc::Receiver<DigestKey>) {
    let (tx, rx) = mpsc::channel(REQUEST_CAPACITY);
    (
        DigestRequests {
            tx,
            dropped: metrics.dropped.clone(),
        },
        rx,
    )
}

fn failure(kind: ErrorKind) -> Failure {
    match kind {
        ErrorKind::Throttled => Failure::Throttled,
        ErrorKind::AccessDenied => Failure::AccessDenied,
        ErrorKind::Credentials | ErrorKind::Service | ErrorKind::Network => Failure::Other,
    }
}

/// Asks ECR once about `key`.
pub async fn check<S: ImageSource>(source: &S, key: &DigestKey) -> Answer {
    match source.describe_digest(&key.repository, &key.digest).await {
        Ok(Some(_)) => Answer::Cached,
        Ok(None) => Answer::NotCached,
        Err(e) => {
            debug!(digest = %key, error = %e, "cannot check a pinned digest");
            Answer::Failed(failure(e.kind()))
        }
    }
}

/// The checker: runs until `shutdown` resolves, under the configuration in force at each step.
pub async fn run<S: ImageSource>(
    source: S,
    config: Arc<ArcSwap<Config>>,
    target: Arc<ArcSwap<DigestSnapshot>>,
    metrics: DigestMetrics,
    mut requests: mpsc::Receiver<DigestKey>,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut cfg = config.load_full();
    let mut knowledge = Knowledge::new(Policy::of(&cfg));
    let mut queue = CheckQueue::new(QUEUE_CAPACITY);
    let mut rate = RateLimit::new(cfg.digest_check.checks_per_second, Instant::now());
    let mut pause = Pause::default();
    let mut open = true;
    loop {
        let latest = config.load_full();
        if !Arc::ptr_eq(&latest, &cfg) {
            cfg = latest;
            if Policy::of(&cfg) != knowledge.policy() {
                knowledge.set_policy(Policy::of(&cfg));
                rate = RateLimit::new(cfg.digest_check.checks_per_second, Instant::now());
            }
        }
        let now = Instant::now();
        while let Ok(key) = requests.try_recv() {
            if knowledge.want(&key, now) {
                queue.push(key);
            }
        }
        if queue.is_empty() {
            for key in knowledge.due(now, QUEUE_CAPACITY) {
                queue.push(key);
            }
        }
        metrics
            .known
            .set(i64::try_from(knowledge.len()).unwrap_or(i64::MAX));
        if queue.is_empty() {
            tokio::select! {
                () = &mut shutdown => break,
                key = requests.recv(), if open => match key {
                    Some(key) => if knowledge.want(&key, Instant::now()) {
                        queue.push(key);
                    },
                    None => open = false,
                },
                () = tokio::time::sleep(RESCAN) => {}
            }
            continue;
        }
        let wait = pause.remaining(now).or_else(|| rate.take(now).err());
        if let Some(wait) = wait {
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        let Some(key) = queue.pop() else { continue };
        let answer = check(&source, &key).await;
        metrics.checks.with_label_values(&[answer.label()]).inc();
        let now = Instant::now();
        match answer {
            Answer::Failed(f) => {
                if let Some(delay) = pause.on_failure(f, now) {
                    warn!(
                        result = answer.label(),
                        pause = ?delay,
                        "ECR refused DescribeImages; pausing digest checks (the webhook needs ecr:DescribeImages on the cache repositories)"
                    );
                }
            }
            Answer::Cached | Answer::NotCached => {
                if pause.remaining(now).is_none() {
                    pause.on_answer();
                }
            }
        }
        if knowledge.record(&key, answer, now) {
            info!(digest = %key, state = knowledge.state(&key).as_str(), "pinned digest checked");
            target.store(Arc::new(knowledge.snapshot()));
        }
    }
}
