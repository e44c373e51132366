//! What pullthrough knows of pinned digests in the pull-through cache, and when to ask ECR again.
//!
//! This module is pure: the webhook reads a [`DigestSnapshot`] (never waits, never calls ECR);
//! the background checker in [`run`] owns the bounded [`Knowledge`], a de-duplicated
//! [`CheckQueue`], a [`RateLimit`] and a [`Pause`] for throttling and missing permissions, and
//! publishes a new snapshot when an answer changes what is known. Digests are immutable, so a
//! "cached" answer holds for hours (lifecycle policies and archiving can still remove an image);
//! a "not cached" one is asked again within one `ruleCheck.interval`, so a freshly warmed image
//! is used soon.

pub mod run;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use crate::config::Config;

/// Hex digits of a digest shown in warnings, Events and reports.
pub const SHORT_DIGEST_HEX: usize = 12;

/// A digest as people read it: the algorithm and the first [`SHORT_DIGEST_HEX`] hex digits.
pub fn short(digest: &str) -> &str {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return digest;
    };
    let keep = algorithm.len() + 1 + hex.len().min(SHORT_DIGEST_HEX);
    digest.get(..keep).unwrap_or(digest)
}

/// One digest in one cache repository: what ECR's `DescribeImages` is asked about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DigestKey {
    /// The ECR repository in the cache (`docker-hub/library/nginx`).
    pub repository: String,
    /// The pinned digest (`sha256:…`).
    pub digest: String,
}

impl DigestKey {
    /// A key.
    pub fn new(repository: impl Into<String>, digest: impl Into<String>) -> Self {
        Self {
            repository: repository.into(),
            digest: digest.into(),
        }
    }

    /// The key of an image already rewritten to `registry_host`
    /// (`<host>/<repository>[:tag]@<digest>`); `None` when it is not on that host or has no
    /// digest.
    pub fn of_rewritten(registry_host: &str, image: &str) -> Option<Self> {
        let rest = image.strip_prefix(registry_host)?.strip_prefix('/')?;
        let (name, digest) = rest.split_once('@')?;
        // A tag's `:` comes after the last `/`; a port cannot, since the host is gone.
        let slash = name.rfind('/').map_or(0, |i| i + 1);
        let repository = match name[slash..].find(':') {
            Some(colon) => &name[..slash + colon],
            None => name,
        };
        (!repository.is_empty() && !digest.is_empty()).then(|| Self::new(repository, digest))
    }
}

impl fmt::Display for DigestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.repository, short(&self.digest))
    }
}

/// What is known of one digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestState {
    /// ECR said the cache repository holds it.
    Cached,
    /// ECR said it does not (or the repository does not exist).
    NotCached,
    /// Not asked yet, or no answer yet.
    Unknown,
}

impl DigestState {
    /// A short, bounded label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cached => "cached",
            Self::NotCached => "not_cached",
            Self::Unknown => "unknown",
        }
    }
}

/// The read-only view the webhook decides with: digests with an answer. Anything absent is
/// [`DigestState::Unknown`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestSnapshot {
    /// Digest -> (repository, cached?). A digest is almost always in one repository, so the
    /// lookup borrows the request's strings and allocates nothing.
    by_digest: BTreeMap<String, Vec<(String, bool)>>,
    len: usize,
}

impl DigestSnapshot {
    /// A snapshot that knows nothing.
    pub const EMPTY: Self = Self {
        by_digest: BTreeMap::new(),
        len: 0,
    };

    /// A snapshot of these answers.
    pub fn from_answers<'a>(answers: impl IntoIterator<Item = (&'a DigestKey, bool)>) -> Self {
        let mut out = Self::EMPTY;
        for (key, cached) in answers {
            let list = out.by_digest.entry(key.digest.clone()).or_default();
            if let Some(entry) = list.iter_mut().find(|(r, _)| *r == key.repository) {
                entry.1 = cached;
            } else {
                list.push((key.repository.clone(), cached));
                out.len += 1;
            }
        }
        out
    }

    /// What is known of `digest` in `repository`.
    pub fn state(&self, repository: &str, digest: &str) -> DigestState {
        match self
            .by_digest
            .get(digest)
            .and_then(|list| list.iter().find(|(r, _)| r == repository))
        {
            Some((_, true)) => DigestState::Cached,
            Some((_, false)) => DigestState::NotCached,
            None => DigestState::Unknown,
        }
    }

    /// Every `(repository, digest)` the cache is known to hold.
    pub fn cached(&self) -> impl Iterator<Item = (&str, &str)> {
        self.by_digest.iter().flat_map(|(digest, list)| {
            list.iter()
                .filter(|(_, cached)| *cached)
                .map(move |(repository, _)| (repository.as_str(), digest.as_str()))
        })
    }

    /// Digests with an answer.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is known.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Why a check got no answer; each slows the checker down differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// ECR throttled the call: every check waits.
    Throttled,
    /// The role may not call `DescribeImages`: every check waits, for longer.
    AccessDenied,
    /// Anything else (network, service): this digest waits.
    Other,
}

/// The answer to one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The cache holds the digest.
    Cached,
    /// It does not.
    NotCached,
    /// No answer.
    Failed(Failure),
}

impl Answer {
    /// The `result` label of the checks counter.
    pub fn label(self) -> &'static str {
        match self {
            Self::Cached => "cached",
            Self::NotCached => "not_cached",
            Self::Failed(Failure::Throttled) => "throttled",
            Self::Failed(Failure::AccessDenied) => "access_denied",
            Self::Failed(Failure::Other) => "error",
        }
    }
}

/// How long answers hold and how much is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Most digests remembered.
    pub capacity: usize,
    /// How long a "cached" answer holds.
    pub cached_for: Duration,
    /// How long a "not cached" answer holds: one `ruleCheck.interval`.
    pub not_cached_for: Duration,
    /// Most checks per second.
    pub per_second: u32,
}

impl Policy {
    /// The policy a configuration asks for.
    pub fn of(config: &Config) -> Self {
        Self {
            capacity: config.digest_check.cache_size,
            cached_for: config.digest_check.cached_for,
            not_cached_for: config.rule_check.interval,
            per_second: config.digest_check.checks_per_second,
        }
    }

    /// How long a digest whose checks keep failing waits before the next: doubling from 5 s,
    /// never beyond one "not cached" interval, so a flaky network costs little.
    fn retry_after(&self, failures: u32) -> Duration {
        Duration::from_secs(5)
            .saturating_mul(1u32.checked_shl(failures.min(16)).unwrap_or(u32::MAX))
            .min(self.not_cached_for)
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    state: DigestState,
    /// When it is worth asking again.
    next_check: Instant,
    /// When someone last needed the answer; the least recently needed is forgotten first.
    wanted_at: Instant,
    failures: u32,
}

/// Everything the checker knows, bounded by [`Policy::capacity`].
#[derive(Debug)]
pub struct Knowledge {
    policy: Policy,
    entries: HashMap<DigestKey, Entry>,
}

impl Knowledge {
    /// Knows nothing yet.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            entries: HashMap::new(),
        }
    }

    /// Takes a new policy (after a configuration reload); the smaller capacity applies at the
    /// next insertion.
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    /// The policy in force.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Someone needs the answer for `key` at `now`. Returns whether it should be checked now:
    /// never asked, or its answer is out of date.
    pub fn want(&mut self, key: &DigestKey, now: Instant) -> bool {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.wanted_at = now;
            return entry.next_check <= now;
        }
        self.make_room();
        self.entries.insert(
            key.clone(),
            Entry {
                state: DigestState::Unknown,
                next_check: now,
                wanted_at: now,
                failures: 0,
            },
        );
        true
    }

    fn make_room(&mut self) {
        while self.entries.len() >= self.policy.capacity.max(1) {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.wanted_at)
                .map(|(k, _)| k.clone())
            else {
                return;
            };
            self.entries.remove(&oldest);
        }
    }

    /// Records the answer for `key`; returns whether what the webhook sees changed. A failure
    /// keeps the previous answer: a known digest does not become unknown because ECR is down.
    pub fn record(&mut self, key: &DigestKey, answer: Answer, now: Instant) -> bool {
        let policy = self.policy;
        if !self.entries.contains_key(key) {
            self.make_room();
        }
        let entry = self.entries.entry(key.clone()).or_insert(Entry {
            state: DigestState::Unknown,
            next_check: now,
            wanted_at: now,
            failures: 0,
        });
        let before = entry.state;
        match answer {
            Answer::Cached => {
                entry.state = DigestState::Cached;
                entry.failures = 0;
                entry.next_check = now + policy.cached_for;
            }
            Answer::NotCached => {
                entry.state = DigestState::NotCached;
                entry.failures = 0;
                entry.next_check = now + policy.not_cached_for;
            }
            // The checker pauses everything; the digest is due again once it resumes.
            Answer::Failed(Failure::Throttled | Failure::AccessDenied) => entry.next_check = now,
            Answer::Failed(Failure::Other) => {
                entry.next_check = now + policy.retry_after(entry.failures);
                entry.failures = entry.failures.saturating_add(1);
            }
        }
        entry.state != before
    }

    /// Keys due for a check at `now` that someone needed within the last "cached" interval,
    /// oldest due first, at most `limit`. Digests nobody needs any more are not checked again.
    pub fn due(&self, now: Instant, limit: usize) -> Vec<DigestKey> {
        let recent = self.policy.cached_for;
        let mut due: Vec<(&DigestKey, Instant)> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                e.next_check <= now && now.saturating_duration_since(e.wanted_at) <= recent
            })
            .map(|(k, e)| (k, e.next_check))
            .collect();
        due.sort_by_key(|(_, at)| *at);
        due.into_iter()
            .take(limit)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// What is known of `key`.
    pub fn state(&self, key: &DigestKey) -> DigestState {
        self.entries
            .get(key)
            .map_or(DigestState::Unknown, |e| e.state)
    }

    /// Digests remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The webhook's view: every digest with an answer.
    pub fn snapshot(&self) -> DigestSnapshot {
        DigestSnapshot::from_answers(self.entries.iter().filter_map(|(k, e)| match e.state {
            DigestState::Cached => Some((k, true)),
            DigestState::NotCached => Some((k, false)),
            DigestState::Unknown => None,
        }))
    }
}

/// A bounded first-in first-out queue that holds each key once.
#[derive(Debug)]
pub struct CheckQueue {
    order: VecDeque<DigestKey>,
    queued: HashSet<DigestKey>,
    capacity: usize,
}

impl CheckQueue {
    /// A queue of at most `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        Self {
            order: VecDeque::new(),
            queued: HashSet::new(),
            capacity: capacity.max(1),
        }
    }

    /// Queues `key`; false when it is already queued or the queue is full.
    pub fn push(&mut self, key: DigestKey) -> bool {
        if self.order.len() >= self.capacity || self.queued.contains(&key) {
            return false;
        }
        self.queued.insert(key.clone());
        self.order.push_back(key);
        true
    }

    /// The oldest key.
    pub fn pop(&mut self) -> Option<DigestKey> {
        let key = self.order.pop_front()?;
        self.queued.remove(&key);
        Some(key)
    }

    /// Keys queued.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// A token bucket: `per_second` checks a second on average, bursts of at most that many.
#[derive(Debug)]
pub struct RateLimit {
    per_second: u32,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    /// A full bucket at `now`.
    pub fn new(per_second: u32, now: Instant) -> Self {
        let per_second = per_second.max(1);
        Self {
            per_second,
            tokens: f64::from(per_second),
            last: now,
        }
    }

    /// Takes a token at `now`, or says how long until one is there.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let rate = f64::from(self.per_second);
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }
}

/// Whether the checker waits, after throttling or a refusal, before any further check.
#[derive(Debug, Default)]
pub struct Pause {
    until: Option<Instant>,
    throttled: u32,
    denied: u32,
}

impl Pause {
    /// Throttling waits from 1 s, doubling to 5 minutes; a refusal (missing
    /// `ecr:DescribeImages`) from 1 minute, doubling to 30: permissions are not fixed in
    /// seconds, and asking in a loop only fills CloudTrail.
    pub fn on_failure(&mut self, failure: Failure, now: Instant) -> Option<Duration> {
        let delay = match failure {
            Failure::Throttled => {
                self.throttled = self.throttled.saturating_add(1);
                Duration::from_secs(1)
                    .saturating_mul(1 << (self.throttled - 1).min(9))
                    .min(Duration::from_mins(5))
            }
            Failure::AccessDenied => {
                self.denied = self.denied.saturating_add(1);
                Duration::from_mins(1)
                    .saturating_mul(1 << (self.denied - 1).min(5))
                    .min(Duration::from_mins(30))
            }
            Failure::Other => return None,
        };
        self.until = Some(now + delay);
        Some(delay)
    }

    /// An answer came: the next failure starts over.
    pub fn on_answer(&mut self) {
        self.throttled = 0;
        self.denied = 0;
        self.until = None;
    }

    /// How long to wait at `now` before the next check, if at all.
    pub fn remaining(&self, now: Instant) -> Option<Duration> {
        self.until
            .map(|t| t.saturating_duration_since(now))
            .filter(|d| !d.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const HOST: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

    fn policy() -> Policy {
        Policy {
            capacity: 3,
            cached_for: Duration::from_hours(6),
            not_cached_for: Duration::from_mins(5),
            per_second: 2,
        }
    }

    fn key(n: u8) -> DigestKey {
        DigestKey::new(format!("docker-hub/library/app{n}"), DIGEST)
    }

    #[test]
    fn digests_are_shown_with_twelve_hex_digits() {
        assert_eq!(short(DIGEST), "sha256:0123456789ab");
        assert_eq!(short("sha256:abc"), "sha256:abc");
        assert_eq!(short("nonsense"), "nonsense");
        assert_eq!(
            key(1).to_string(),
            "docker-hub/library/app1@sha256:0123456789ab"
        );
    }

    #[test]
    fn keys_are_read_back_from_rewritten_images() {
        let k = |image: &str| DigestKey::of_rewritten(HOST, image);
        assert_eq!(
            k(&format!("{HOST}/docker-hub/library/nginx:1.27@{DIGEST}")),
            Some(DigestKey::new("docker-hub/library/nginx", DIGEST))
        );
        assert_eq!(
            k(&format!("{HOST}/quay/a/b@{DIGEST}")),
            Some(DigestKey::new("quay/a/b", DIGEST))
        );
        assert_eq!(k(&format!("{HOST}/quay/a/b:1")), None);
        assert_eq!(k(&format!("quay.io/a/b@{DIGEST}")), None);
        assert_eq!(k(&format!("{HOST}x/a@{DIGEST}")), None);
    }

    #[test]
    fn the_snapshot_answers_by_repository_and_digest() {
        let a = key(1);
        let b = key(2);
        let s = DigestSnapshot::from_answers([(&a, true), (&b, false)]);
        assert_eq!(s.state(&a.repository, DIGEST), DigestState::Cached);
        assert_eq!(s.state(&b.repository, DIGEST), DigestState::NotCached);
        assert_eq!(
            s.state("docker-hub/library/other", DIGEST),
            DigestState::Unknown
        );
        assert_eq!(s.state(&a.repository, "sha256:ff"), DigestState::Unknown);
        assert_eq!(s.len(), 2);
        assert!(DigestSnapshot::EMPTY.is_empty());
    }

    #[test]
    fn an_unseen_digest_is_due_at_once_and_not_again_until_its_answer_ages() {
        let t0 = Instant::now();
        let mut k = Knowledge::new(policy());
        assert!(k.want(&key(1), t0));
        assert_eq!(k.state(&key(1)), DigestState::Unknown);
        assert!(k.record(&key(1), Answer::NotCached, t0));
        assert!(!k.want(&key(1), t0 + Duration::from_mins(4)));
        // Negative answers are asked again within one rule interval.
        assert!(k.want(&key(1), t0 + Duration::from_mins(5)));
        assert!(k.record(&key(1), Answer::Cached, t0 + Duration::from_mins(5)));
        assert!(!k.record(&key(1), Answer::Cached, t0 + Duration::from_mins(5)));
        // Positive answers hold for hours.
        assert!(!k.want(&key(1), t0 + Duration::from_hours(5)));
        assert!(k.want(&key(1), t0 + Duration::from_hours(7)));
        assert_eq!(
            k.snapshot().state(&key(1).repository, DIGEST),
            DigestState::Cached
        );
    }

    #[test]
    fn failures_keep_what_was_known_and_back_off_per_digest() {
        let t0 = Instant::now();
        let mut k = Knowledge::new(policy());
        k.record(&key(1), Answer::Cached, t0);
        let t1 = t0 + Duration::from_hours(7);
        assert!(k.want(&key(1), t1));
        assert!(!k.record(&key(1), Answer::Failed(Failure::Other), t1));
        assert_eq!(k.state(&key(1)), DigestState::Cached);
        assert!(!k.want(&key(1), t1 + Duration::from_secs(4)));
        assert!(k.want(&key(1), t1 + Duration::from_secs(5)));
        k.record(
            &key(1),
            Answer::Failed(Failure::Other),
            t1 + Duration::from_secs(5),
        );
        assert!(!k.want(&key(1), t1 + Duration::from_secs(14)));
        assert!(k.want(&key(1), t1 + Duration::from_secs(15)));
        // Never longer than the negative interval.
        for _ in 0..40 {
            k.record(&key(1), Answer::Failed(Failure::Other), t1);
        }
        assert!(k.want(&key(1), t1 + Duration::from_mins(5)));
    }

    #[test]
    fn the_least_recently_wanted_digest_is_forgotten_first() {
        let t0 = Instant::now();
        let mut k = Knowledge::new(policy());
        for n in 1..=3 {
            k.want(&key(n), t0 + Duration::from_secs(u64::from(n)));
            k.record(
                &key(n),
                Answer::Cached,
                t0 + Duration::from_secs(u64::from(n)),
            );
        }
        // key(1) is needed again, so key(2) is now the least recently wanted.
        k.want(&key(1), t0 + Duration::from_secs(10));
        k.want(&key(4), t0 + Duration::from_secs(11));
        assert_eq!(k.len(), 3);
        assert_eq!(k.state(&key(2)), DigestState::Unknown);
        assert_eq!(k.state(&key(1)), DigestState::Cached);
        assert_eq!(k.state(&key(3)), DigestState::Cached);
    }

    #[test]
    fn due_lists_stale_answers_someone_still_needs() {
        let t0 = Instant::now();
        let mut k = Knowledge::new(Policy {
            capacity: 10,
            ..policy()
        });
        k.want(&key(1), t0);
        k.record(&key(1), Answer::NotCached, t0);
        k.want(&key(2), t0);
        k.record(&key(2), Answer::Cached, t0);
        assert!(k.due(t0 + Duration::from_mins(1), 10).is_empty());
        assert_eq!(k.due(t0 + Duration::from_mins(5), 10), vec![key(1)]);
        // Nobody asked for key(1) for longer than the cached interval: it is left alone.
        assert!(k.due(t0 + Duration::from_hours(7), 10).is_empty());
        k.want(&key(2), t0 + Duration::from_hours(7));
        assert_eq!(k.due(t0 + Duration::from_hours(7), 10), vec![key(2)]);
        assert!(k.due(t0 + Duration::from_hours(7), 0).is_empty());
    }

    #[test]
    fn the_queue_is_bounded_and_holds_each_key_once() {
        let mut q = CheckQueue::new(2);
        assert!(q.push(key(1)));
        assert!(!q.push(key(1)));
        assert!(q.push(key(2)));
        assert!(!q.push(key(3)));
        assert_eq!(q.pop(), Some(key(1)));
        assert!(q.push(key(1)));
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop(), Some(key(2)));
        assert_eq!(q.pop(), Some(key(1)));
        assert!(q.is_empty());
    }

    #[test]
    fn checks_are_rate_limited() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(2, t0);
        assert!(r.take(t0).is_ok());
        assert!(r.take(t0).is_ok());
        let wait = r.take(t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(r.take(t0 + Duration::from_millis(499)).is_err());
        assert!(r.take(t0 + Duration::from_secs(1)).is_ok());
        // Idle time refills the bucket only up to its size.
        let later = t0 + Duration::from_hours(1);
        assert!(r.take(later).is_ok());
        assert!(r.take(later).is_ok());
        assert!(r.take(later).is_err());
    }

    #[test]
    fn throttling_and_refusals_pause_every_check_and_grow() {
        let t0 = Instant::now();
        let mut p = Pause::default();
        assert_eq!(p.remaining(t0), None);
        assert_eq!(p.on_failure(Failure::Other, t0), None);
        assert_eq!(
            p.on_failure(Failure::Throttled, t0),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            p.on_failure(Failure::Throttled, t0),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            p.remaining(t0 + Duration::from_secs(1)),
            Some(Duration::from_secs(1))
        );
        for _ in 0..20 {
            p.on_failure(Failure::Throttled, t0);
        }
        assert_eq!(p.remaining(t0), Some(Duration::from_mins(5)));
        assert_eq!(
            p.on_failure(Failure::AccessDenied, t0),
            Some(Duration::from_mins(1))
        );
        assert_eq!(
            p.on_failure(Failure::AccessDenied, t0),
            Some(Duration::from_mins(2))
        );
        p.on_answer();
        assert_eq!(p.remaining(t0), None);
        assert_eq!(
            p.on_failure(Failure::Throttled, t0),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn the_policy_follows_the_configuration() {
        let c = Config::load(
            "ruleCheck:\n  interval: 2m\ndigestCheck:\n  cacheSize: 200\n  cachedFor: 3h\n",
            &crate::config::Overrides::default(),
        )
        .unwrap();
        let p = Policy::of(&c);
        assert_eq!(p.capacity, 200);
        assert_eq!(p.cached_for, Duration::from_hours(3));
        assert_eq!(p.not_cached_for, Duration::from_mins(2));
    }
}
