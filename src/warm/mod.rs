//! Warming the pull-through cache by tag, and confirming pinned digests: what to warm, what the
//! answers mean, the bounds of the reconciler's warming, and the Event when a pinned digest
//! cannot be had through the cache.
//!
//! ECR's pull-through cache cannot fill itself from a pull by digest, but an image it holds can
//! be pulled by digest. So an image is fetched by tag through the cache rule (`BatchGetImage`),
//! which imports it from the upstream, and its pinned digest is then confirmed with
//! `DescribeImages`. This module is pure; [`run`] makes the calls, for `pullthrough warm` and for
//! the reconciler.

pub mod run;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{Config, DigestPolicy};
use crate::digests::{self, DigestKey};
use crate::notice::{Notice, Severity};
use crate::pod::PodRecord;
use crate::reference::Reference;
use crate::rewrite::{Decision, decide};
use crate::rules::RuleSnapshot;

/// Warning on a workload whose image is pinned `tag@digest` while the tag has moved upstream:
/// the pinned digest cannot be had through the cache.
pub const REASON_DIGEST_UNAVAILABLE: &str = "PullThroughCacheDigestUnavailable";

/// One image to warm, as it will be pulled through the cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Target {
    /// The image as the manifest or Pod names it.
    pub image: String,
    /// The cache repository (`docker-hub/library/nginx`).
    pub repository: String,
    /// The tag, if any.
    pub tag: Option<String>,
    /// The pinned digest, if any.
    pub digest: Option<String>,
}

impl Target {
    /// The image through the cache, if the map routes it there: any digest policy, since
    /// warming is what makes pinned images usable.
    pub fn of(config: &Config, image: &str) -> Option<Self> {
        let Decision::Rewrite(cached) = decide(config, &RuleSnapshot::unknown(), image).decision
        else {
            return None;
        };
        let parsed = Reference::parse(&cached).ok()?;
        Some(Self {
            image: image.to_owned(),
            repository: parsed.repository().to_owned(),
            tag: parsed.tag().map(str::to_owned),
            digest: parsed.digest().map(str::to_owned),
        })
    }

    /// The tag to fetch: the image's, or `latest` as runtimes read an image with neither tag
    /// nor digest.
    pub fn fetch_tag(&self) -> Option<&str> {
        match (&self.tag, &self.digest) {
            (Some(tag), _) => Some(tag),
            (None, None) => Some("latest"),
            (None, Some(_)) => None,
        }
    }

    /// The key of its pinned digest.
    pub fn key(&self) -> Option<DigestKey> {
        self.digest
            .as_ref()
            .map(|d| DigestKey::new(self.repository.clone(), d.clone()))
    }
}

/// A copy of `config` under which every pinned image is routed through the cache, to find what
/// to warm.
pub fn routing(config: &Config) -> Config {
    let mut c = config.clone();
    c.digests = DigestPolicy::Rewrite;
    c
}

/// What warming (or checking) one image found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum Outcome {
    /// Fetched by tag through the cache, which did not hold it before.
    Warmed {
        /// The digest the cache now holds under the tag.
        digest: String,
    },
    /// The cache already held the tag.
    AlreadyCached {
        /// Its digest.
        digest: String,
    },
    /// The cache holds the pinned digest (after warming, when `warmed`).
    DigestConfirmed {
        /// The pinned digest.
        digest: String,
        /// Whether this run fetched it.
        warmed: bool,
    },
    /// The tag now points at another digest upstream: the pinned one cannot be pulled through
    /// the cache.
    DigestUnavailable {
        /// The tag.
        tag: String,
        /// The pinned digest.
        pinned: String,
        /// The digest the tag has now.
        current: String,
    },
    /// `--check`: the cache does not hold it.
    NotCached,
    /// It could not be warmed.
    Failed {
        /// Why, for people.
        reason: String,
        /// Whether ECR itself could not be read (permissions, credentials, network), rather
        /// than this image being unavailable.
        unreadable: bool,
    },
}

impl Outcome {
    /// The result as reported.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Warmed { .. } => "warmed",
            Self::AlreadyCached { .. } => "already cached",
            Self::DigestConfirmed { .. } => "pinned digest confirmed",
            Self::DigestUnavailable { .. } => "pinned digest unavailable",
            Self::NotCached => "not cached",
            Self::Failed { .. } => "failed",
        }
    }

    /// The bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Warmed { .. } => "warmed",
            Self::AlreadyCached { .. } => "already_cached",
            Self::DigestConfirmed { .. } => "digest_confirmed",
            Self::DigestUnavailable { .. } => "digest_unavailable",
            Self::NotCached => "not_cached",
            Self::Failed { .. } => "failed",
        }
    }

    /// Whether the image can now be pulled through the cache as pinned.
    pub fn usable(&self) -> bool {
        matches!(
            self,
            Self::Warmed { .. } | Self::AlreadyCached { .. } | Self::DigestConfirmed { .. }
        )
    }

    /// Whether the answer is final for this image (until it changes): anything but a failure.
    pub fn settled(&self) -> bool {
        !matches!(self, Self::Failed { .. } | Self::NotCached)
    }

    /// Details for people; digests shortened.
    pub fn detail(&self) -> String {
        match self {
            Self::Warmed { digest } => format!("cache now holds {}", digests::short(digest)),
            Self::AlreadyCached { digest } => format!("cache holds {}", digests::short(digest)),
            Self::DigestConfirmed { digest, warmed } => format!(
                "cache holds {}{}",
                digests::short(digest),
                if *warmed { " (warmed by tag)" } else { "" }
            ),
            Self::DigestUnavailable {
                tag,
                pinned,
                current,
            } => format!(
                "tag {tag} moved upstream: it is {} now, not the pinned {}",
                digests::short(current),
                digests::short(pinned)
            ),
            Self::NotCached => "cache does not hold it".to_owned(),
            Self::Failed { reason, .. } => reason.clone(),
        }
    }
}

/// The exit code of `pullthrough warm`: 2 when ECR cannot be read, 1 when an image is not
/// (with `--check`: not cached; without: could not be warmed or confirmed), 0 otherwise.
pub fn exit_code(outcomes: &[Outcome]) -> u8 {
    if outcomes.iter().any(|o| {
        matches!(
            o,
            Outcome::Failed {
                unreadable: true,
                ..
            }
        )
    }) {
        2
    } else {
        u8::from(!outcomes.iter().all(Outcome::usable))
    }
}

/// One reported row: an image, where it appears, and what was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The image.
    pub image: String,
    /// Objects and containers that name it (`Deployment/web app`).
    pub used_by: Vec<String>,
    /// The cache repository.
    pub repository: String,
    /// What was found.
    pub outcome: Outcome,
}

/// The images of preview rows that the map routes through the cache, each once, with the
/// objects that use it. `rows` are `(object, container, image)`.
pub fn plan<'r>(
    config: &Config,
    rows: impl IntoIterator<Item = (&'r str, &'r str, &'r str)>,
) -> Vec<(Target, Vec<String>)> {
    let routing = routing(config);
    let mut out: BTreeMap<Target, Vec<String>> = BTreeMap::new();
    for (object, container, image) in rows {
        if let Some(target) = Target::of(&routing, image) {
            out.entry(target)
                .or_default()
                .push(format!("{object} {container}"));
        }
    }
    out.into_iter().collect()
}

/// Renders reports as an aligned table.
pub fn render_table(reports: &[Report]) -> String {
    let mut rows = vec![[
        "IMAGE".to_owned(),
        "RESULT".to_owned(),
        "DETAIL".to_owned(),
        "USED BY".to_owned(),
    ]];
    for r in reports {
        rows.push([
            r.image.clone(),
            r.outcome.label().to_owned(),
            r.outcome.detail(),
            r.used_by.join(", "),
        ]);
    }
    let mut widths = [0usize; 4];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(widths) {
            let _ = write!(line, "{cell:<w$}   ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The reconciler's warming targets: images of opted-in Pods pinned `tag@digest` that the
/// webhook left on their upstream, each once. A bare `@digest` cannot be warmed.
pub fn wanted(config: &Config, pods: &[&PodRecord]) -> Vec<Target> {
    if config.digests != DigestPolicy::WhenCached {
        return Vec::new();
    }
    let routing = routing(config);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for pod in pods {
        for c in &pod.containers {
            if !c.image.contains('@') || !seen.insert(c.image.as_str()) {
                continue;
            }
            if let Some(t) = Target::of(&routing, &c.image)
                && t.tag.is_some()
            {
                out.push(t);
            }
        }
    }
    out
}

/// How the reconciler's warming is bounded: each image once until its reference changes, a
/// few at a time, failures retried with a growing delay.
#[derive(Debug)]
pub struct Warming {
    concurrency: usize,
    capacity: usize,
    in_flight: HashSet<Target>,
    done: HashMap<Target, (Outcome, Instant)>,
    failures: HashMap<Target, (u32, Instant)>,
    /// Nothing is started before this: the upstream or ECR asked to slow down.
    paused_until: Option<Instant>,
}

impl Warming {
    /// At most `concurrency` at once; `capacity` answers remembered.
    pub fn new(concurrency: usize, capacity: usize) -> Self {
        Self {
            concurrency: concurrency.max(1),
            capacity: capacity.max(1),
            in_flight: HashSet::new(),
            done: HashMap::new(),
            failures: HashMap::new(),
            paused_until: None,
        }
    }

    /// Changes the concurrency (after a configuration reload).
    pub fn set_concurrency(&mut self, concurrency: usize) {
        self.concurrency = concurrency.max(1);
    }

    /// Which of `wanted` to start at `now`.
    pub fn start(&mut self, wanted: &[Target], now: Instant) -> Vec<Target> {
        if self.paused_until.is_some_and(|t| now < t) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for t in wanted {
            if self.in_flight.len() >= self.concurrency {
                break;
            }
            if self.done.contains_key(t)
                || self.in_flight.contains(t)
                || self.failures.get(t).is_some_and(|(_, at)| now < *at)
            {
                continue;
            }
            self.in_flight.insert(t.clone());
            out.push(t.clone());
        }
        out
    }

    /// Records how `target` ended. A failure is retried after 30 s, doubling to an hour; a
    /// throttled upstream or ECR pauses every warming for as long.
    pub fn finish(&mut self, target: &Target, outcome: Outcome, throttled: bool, now: Instant) {
        self.in_flight.remove(target);
        if outcome.settled() {
            self.failures.remove(target);
            if self.done.len() >= self.capacity
                && let Some(oldest) = self
                    .done
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(t, _)| t.clone())
            {
                self.done.remove(&oldest);
            }
            self.done.insert(target.clone(), (outcome, now));
            return;
        }
        let failures = self.failures.get(target).map_or(0, |(n, _)| *n);
        let delay = Duration::from_secs(30)
            .saturating_mul(1 << failures.min(7))
            .min(Duration::from_hours(1));
        self.failures
            .insert(target.clone(), (failures.saturating_add(1), now + delay));
        if throttled {
            self.paused_until = Some(now + delay);
        }
    }

    /// Forgets what is no longer wanted, so memory follows the Pods.
    pub fn retain(&mut self, wanted: &[Target]) {
        let keep: HashSet<&Target> = wanted.iter().collect();
        self.done.retain(|t, _| keep.contains(t));
        self.failures.retain(|t, _| keep.contains(t));
    }

    /// Images whose pinned digest cannot be had through the cache, by image reference.
    pub fn unavailable(&self) -> Unavailable {
        Unavailable(
            self.done
                .iter()
                .filter_map(|(t, (o, _))| match o {
                    Outcome::DigestUnavailable {
                        tag,
                        pinned,
                        current,
                    } => Some((
                        t.image.clone(),
                        (tag.clone(), pinned.clone(), current.clone()),
                    )),
                    _ => None,
                })
                .collect(),
        )
    }

    /// The pinned digests confirmed in the cache, as the digest snapshot the policy reads.
    pub fn confirmed(&self) -> crate::digests::DigestSnapshot {
        let mut keys: Vec<crate::digests::DigestKey> =
            self.done
                .iter()
                .filter_map(|(t, (o, _))| match o {
                    Outcome::DigestConfirmed { digest, .. } => Some(
                        crate::digests::DigestKey::new(t.repository.clone(), digest.clone()),
                    ),
                    _ => None,
                })
                .collect();
        keys.sort();
        crate::digests::DigestSnapshot::from_answers(keys.iter().map(|k| (k, true)))
    }

    /// Images being warmed now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

/// Images pinned to a digest the cache cannot have: image -> (tag, pinned, current).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unavailable(pub BTreeMap<String, (String, String, String)>);

/// No pinned digest known to be unavailable.
pub static NO_UNAVAILABLE: Unavailable = Unavailable(BTreeMap::new());

/// The check for [`REASON_DIGEST_UNAVAILABLE`]: one notice per Pod whose images are pinned to
/// a digest the cache cannot have, naming tag, pinned digest and the digest the tag has now.
pub fn notices(unavailable: &Unavailable, pod: &PodRecord) -> Vec<Notice> {
    let mut detail = String::new();
    for c in &pod.containers {
        let Some((tag, pinned, current)) = unavailable.0.get(&c.image) else {
            continue;
        };
        if !detail.is_empty() {
            detail.push_str("; ");
        }
        let _ = write!(
            detail,
            "container {} image {}: tag {tag} is {} upstream now, not the pinned {}",
            c.container,
            c.image.split('@').next().unwrap_or(&c.image),
            digests::short(current),
            digests::short(pinned),
        );
    }
    if detail.is_empty() {
        return Vec::new();
    }
    vec![Notice {
        reason: REASON_DIGEST_UNAVAILABLE,
        severity: Severity::Warning,
        cause: "tag_moved".to_owned(),
        message: "Images pinned tag@digest whose tag has moved upstream: the ECR pull-through cache fills by tag only, so the pinned digest cannot be had through it and these images keep pulling from their upstream registry. Pin the digest the tag has now, or a tag that still has the pinned digest.".to_owned(),
        detail,
        resolution: None,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;
    use crate::pod::fixtures::record;

    fn d(hex: char) -> String {
        format!("sha256:{}", hex.to_string().repeat(64))
    }

    fn config(extra: &str) -> Config {
        Config::load(
            &format!("accountId: \"123456789012\"\nregion: eu-west-1\n{extra}"),
            &Overrides::default(),
        )
        .unwrap()
    }

    fn pod(images: &[&str]) -> PodRecord {
        PodRecord {
            name: "web-1".into(),
            ..record("u1", images)
        }
    }

    #[test]
    fn targets_are_the_images_through_the_cache_whatever_the_digest_policy() {
        let c = config("digests: skip\n");
        let pinned = format!("nginx:1.27@{}", d('a'));
        assert_eq!(
            Target::of(&routing(&c), &pinned),
            Some(Target {
                image: pinned.clone(),
                repository: "docker-hub/library/nginx".into(),
                tag: Some("1.27".into()),
                digest: Some(d('a')),
            })
        );
        assert_eq!(Target::of(&routing(&c), "registry.example/app:1"), None);
        let plain = Target::of(&c, "quay.io/a/b").unwrap();
        assert_eq!(plain.fetch_tag(), Some("latest"));
        let bare = Target::of(&routing(&c), &format!("nginx@{}", d('a'))).unwrap();
        assert_eq!(bare.fetch_tag(), None);
    }

    #[test]
    fn the_plan_lists_each_image_once_with_its_users() {
        let c = config("");
        let pinned = format!("nginx:1.27@{}", d('a'));
        let rows = [
            ("Deployment/web", "app", pinned.as_str()),
            ("Deployment/api", "app", pinned.as_str()),
            ("Deployment/api", "side", "registry.example/x:1"),
            ("Job/once", "run", "quay.io/a/b:2"),
        ];
        let plan = plan(&c, rows);
        assert_eq!(plan.len(), 2);
        let (nginx, users) = plan.iter().find(|(t, _)| t.image == pinned).unwrap();
        assert_eq!(nginx.repository, "docker-hub/library/nginx");
        assert_eq!(users, &["Deployment/web app", "Deployment/api app"]);
    }

    #[test]
    fn exit_codes_follow_the_worst_outcome() {
        let ok = Outcome::Warmed { digest: d('a') };
        let moved = Outcome::DigestUnavailable {
            tag: "1".into(),
            pinned: d('a'),
            current: d('b'),
        };
        let denied = Outcome::Failed {
            reason: "AccessDenied".into(),
            unreadable: true,
        };
        assert_eq!(exit_code(std::slice::from_ref(&ok)), 0);
        assert_eq!(exit_code(&[]), 0);
        assert_eq!(exit_code(&[ok.clone(), moved.clone()]), 1);
        assert_eq!(exit_code(&[ok.clone(), Outcome::NotCached]), 1);
        assert_eq!(exit_code(&[ok, moved, denied]), 2);
        assert_eq!(
            Outcome::DigestUnavailable {
                tag: "1.27".into(),
                pinned: d('a'),
                current: d('b')
            }
            .detail(),
            "tag 1.27 moved upstream: it is sha256:bbbbbbbbbbbb now, not the pinned sha256:aaaaaaaaaaaa"
        );
    }

    #[test]
    fn the_table_names_results_and_shortened_digests() {
        let table = render_table(&[Report {
            image: "nginx:1.27".into(),
            used_by: vec!["Deployment/web app".into()],
            repository: "docker-hub/library/nginx".into(),
            outcome: Outcome::Warmed { digest: d('a') },
        }]);
        assert!(table.starts_with("IMAGE"), "{table}");
        assert!(table.contains("warmed"), "{table}");
        assert!(
            table.contains("cache now holds sha256:aaaaaaaaaaaa   Deployment/web app"),
            "{table}"
        );
        assert!(!table.contains(&d('a')), "{table}");
    }

    #[test]
    fn the_reconciler_warms_pinned_tags_only_under_when_cached() {
        let pinned = format!("nginx:1.27@{}", d('a'));
        let bare = format!("nginx@{}", d('b'));
        let cached = format!(
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/docker-hub/library/nginx:1.27@{}",
            d('a')
        );
        let p = pod(&[&pinned, &bare, "nginx:1.27", &cached, &pinned]);
        let wanted = wanted(&config(""), &[&p]);
        assert_eq!(wanted.len(), 1);
        assert_eq!(wanted[0].image, pinned);
        assert!(super::wanted(&config("digests: skip\n"), &[&p]).is_empty());
    }

    #[test]
    fn warming_is_bounded_once_per_image_and_backs_off() {
        let c = config("");
        let t = |hex| Target::of(&routing(&c), &format!("nginx:1.27@{}", d(hex))).unwrap();
        let wanted = vec![t('a'), t('b'), t('c')];
        let t0 = Instant::now();
        let mut w = Warming::new(2, 100);
        assert_eq!(w.start(&wanted, t0), vec![t('a'), t('b')]);
        assert!(w.start(&wanted, t0).is_empty(), "two at a time");
        w.finish(
            &t('a'),
            Outcome::DigestConfirmed {
                digest: d('a'),
                warmed: true,
            },
            false,
            t0,
        );
        assert_eq!(w.start(&wanted, t0), vec![t('c')]);
        let failed = Outcome::Failed {
            reason: "network".into(),
            unreadable: false,
        };
        w.finish(&t('b'), failed.clone(), false, t0);
        w.finish(&t('c'), failed.clone(), false, t0);
        // Done once, and failures wait.
        assert!(w.start(&wanted, t0 + Duration::from_secs(29)).is_empty());
        assert_eq!(
            w.start(&wanted, t0 + Duration::from_secs(30)),
            vec![t('b'), t('c')]
        );
        w.finish(&t('b'), failed.clone(), false, t0 + Duration::from_secs(30));
        w.finish(&t('c'), failed, true, t0 + Duration::from_secs(30));
        // The second failure waits twice as long, and throttling pauses everything.
        assert!(w.start(&wanted, t0 + Duration::from_secs(89)).is_empty());
        assert_eq!(w.start(&wanted, t0 + Duration::from_secs(90)).len(), 2);
        let later = t0 + Duration::from_secs(90);
        for hex in ['b', 'c'] {
            let done = Outcome::DigestConfirmed {
                digest: d(hex),
                warmed: true,
            };
            w.finish(&t(hex), done, false, later);
        }
        assert!(w.start(&wanted, later).is_empty(), "each image once");
        assert_eq!(w.in_flight(), 0);
        // Images no Pod runs any more are forgotten; a new pin is a new image.
        w.retain(&[t('d')]);
        assert_eq!(w.start(&[t('b'), t('d')], later), vec![t('b'), t('d')]);
    }

    #[test]
    fn a_moved_tag_becomes_a_notice_naming_tag_and_both_digests() {
        let c = config("");
        let pinned = format!("nginx:1.27@{}", d('a'));
        let target = Target::of(&routing(&c), &pinned).unwrap();
        let mut w = Warming::new(1, 10);
        let t0 = Instant::now();
        w.start(std::slice::from_ref(&target), t0);
        w.finish(
            &target,
            Outcome::DigestUnavailable {
                tag: "1.27".into(),
                pinned: d('a'),
                current: d('b'),
            },
            false,
            t0,
        );
        let unavailable = w.unavailable();
        let found = notices(&unavailable, &pod(&["busybox", &pinned]));
        assert_eq!(found.len(), 1);
        let n = &found[0];
        assert_eq!(n.reason, REASON_DIGEST_UNAVAILABLE);
        assert_eq!(n.severity, Severity::Warning);
        assert_eq!(n.cause, "tag_moved");
        assert_eq!(
            n.detail,
            "container c1 image nginx:1.27: tag 1.27 is sha256:bbbbbbbbbbbb upstream now, not the pinned sha256:aaaaaaaaaaaa"
        );
        assert!(notices(&unavailable, &pod(&["nginx:1.27"])).is_empty());
        assert!(notices(&Unavailable::default(), &pod(&[&pinned])).is_empty());
    }
}
