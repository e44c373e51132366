//! Keeps the rule snapshot current: reads the ECR rules in the background on an interval and
//! swaps in a new [`RuleSnapshot`]. Never on the request path; errors back off with jitter and
//! never end the task.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::ecr::{Backoff, CacheRuleSource, EcrError, ErrorKind};
use crate::metrics::{ReloadResult, RuleMetrics, unix_now};
use crate::rules::{self, RuleSnapshot, RuleState};

/// Reads the rules once and compares them with the map. Credentialed rules that exist are
/// validated when `ruleCheck.validateCredentials` is on; a validation that cannot be made
/// (no permission, throttled) leaves the rule counted as present.
pub async fn fetch<S: CacheRuleSource>(
    source: &S,
    config: &Config,
) -> Result<RuleSnapshot, EcrError> {
    let found = source.list_rules().await?;
    let mut validations = BTreeMap::new();
    if config.rule_check.validate_credentials {
        for mapping in config.registries.values().filter(|m| m.needs_credentials) {
            if rules::state_of(mapping, &found, None) != RuleState::Present {
                continue;
            }
            match source.validate_rule(mapping.ecr_prefix()).await {
                Ok(v) => {
                    validations.insert(mapping.ecr_prefix().to_owned(), v);
                }
                Err(e) => debug!(prefix = mapping.ecr_prefix(), error = %e, "cannot validate rule"),
            }
        }
    }
    Ok(rules::snapshot(
        config,
        &found,
        &validations,
        SystemTime::now(),
    ))
}

/// Publishes the states as gauges.
pub fn record_states(metrics: &RuleMetrics, config: &Config, snapshot: &RuleSnapshot) {
    const STATES: [&str; 4] = [
        "present",
        "missing",
        "wrong_upstream",
        "credentials_failing",
    ];
    metrics.status.reset();
    for (registry, state) in snapshot.iter() {
        let prefix = config.mapping(registry).map_or("", |m| m.ecr_prefix());
        for s in STATES {
            metrics
                .status
                .with_label_values(&[registry, prefix, s])
                .set(i64::from(state.kind() == s));
        }
    }
}

fn log_changes(before: &RuleSnapshot, after: &RuleSnapshot) {
    for (registry, state) in after.iter() {
        if before.state(registry) == Some(state) {
            continue;
        }
        if state.is_usable() {
            info!(registry, "pull-through cache rule present");
        } else {
            warn!(registry, state = %state, "pull-through cache rule not usable; images of this registry are left on their upstream");
        }
    }
}

/// The refresh loop: reads the rules every `ruleCheck.interval` (from the configuration in
/// force at each round) until `shutdown` resolves.
pub async fn run<S: CacheRuleSource>(
    source: S,
    config: Arc<ArcSwap<Config>>,
    target: Arc<ArcSwap<RuleSnapshot>>,
    metrics: RuleMetrics,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_mins(5));
    let mut failing_since: Option<SystemTime> = None;
    loop {
        let cfg = config.load_full();
        let delay = if cfg.rule_check.enabled {
            match fetch(&source, &cfg).await {
                Ok(snapshot) => {
                    log_changes(&target.load(), &snapshot);
                    record_states(&metrics, &cfg, &snapshot);
                    metrics
                        .refreshes
                        .with_label_values(&[ReloadResult::Success.as_str()])
                        .inc();
                    metrics.last_success_seconds.set(unix_now());
                    if failing_since.take().is_some() {
                        info!("ECR rules readable again");
                    }
                    target.store(Arc::new(snapshot));
                    backoff.reset();
                    cfg.rule_check.interval
                }
                Err(e) => {
                    metrics
                        .refreshes
                        .with_label_values(&[ReloadResult::Failure.as_str()])
                        .inc();
                    metrics
                        .failures
                        .with_label_values(&[e.kind().as_str()])
                        .inc();
                    if failing_since.is_none() {
                        warn!(error = %e, kind = e.kind().as_str(), "cannot read ECR rules; retrying with back-off");
                        failing_since = Some(SystemTime::now());
                    } else {
                        debug!(error = %e, "cannot read ECR rules");
                    }
                    expire(&target, &cfg);
                    let delay = backoff.next_delay();
                    // Throttling is a reason to slow down, never to hammer: wait at least a second.
                    if e.kind() == ErrorKind::Throttled {
                        delay.max(Duration::from_secs(1))
                    } else {
                        delay
                    }
                }
            }
        } else {
            if target.load().is_known() {
                target.store(Arc::new(RuleSnapshot::unknown()));
                metrics.status.reset();
            }
            cfg.rule_check.interval
        };
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Forgets a snapshot that is too old to trust.
fn expire(target: &ArcSwap<RuleSnapshot>, config: &Config) {
    let Some(fetched) = target.load().fetched_at else {
        return;
    };
    let limit = config.rule_check.stale_after();
    if fetched.elapsed().is_ok_and(|age| age > limit) {
        warn!(
            age_limit = ?limit,
            "ECR rules unknown for too long; following ruleCheck.whenUnknown"
        );
        target.store(Arc::new(RuleSnapshot::unknown()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;
    use crate::ecr::{CacheRule, Validation};
    use crate::metrics::Metrics;
    use std::sync::Mutex;

    /// A scripted source: each `list_rules` call takes the next answer.
    struct Scripted {
        answers: Mutex<Vec<Result<Vec<CacheRule>, ErrorKind>>>,
        valid: bool,
    }

    impl CacheRuleSource for Scripted {
        async fn list_rules(&self) -> Result<Vec<CacheRule>, EcrError> {
            let next = self.answers.lock().unwrap().remove(0);
            next.map_err(|kind| EcrError::ListCacheRules {
                code: "Scripted".into(),
                kind,
                source: "scripted failure".into(),
            })
        }
        async fn validate_rule(&self, _prefix: &str) -> Result<Validation, EcrError> {
            Ok(Validation {
                is_valid: self.valid,
                failure: (!self.valid).then(|| "bad token".to_owned()),
            })
        }
    }

    fn rule(prefix: &str, url: &str) -> CacheRule {
        CacheRule::new(prefix, url)
    }

    fn config() -> Config {
        Config::load(
            "region: eu-west-1\nregistries:\n  docker.io: docker-hub\n  quay.io: quay\nruleCheck:\n  interval: 10s\n",
            &Overrides::default(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn fetch_validates_credentialed_rules_that_exist() {
        let source = Scripted {
            answers: Mutex::new(vec![Ok(vec![rule("docker-hub", "registry-1.docker.io")])]),
            valid: false,
        };
        let s = fetch(&source, &config()).await.unwrap();
        assert!(matches!(
            s.state("docker.io"),
            Some(RuleState::CredentialsFailing { .. })
        ));
        assert_eq!(s.state("quay.io"), Some(&RuleState::Missing));
    }

    #[tokio::test(start_paused = true)]
    async fn refresh_swaps_in_snapshots_and_survives_failures() {
        let source = Scripted {
            answers: Mutex::new(vec![
                Err(ErrorKind::Throttled),
                Ok(vec![rule("quay", "quay.io")]),
                Err(ErrorKind::Network),
                Ok(vec![
                    rule("quay", "quay.io"),
                    rule("docker-hub", "registry-1.docker.io"),
                ]),
                Ok(vec![]),
                Ok(vec![]),
                Ok(vec![]),
            ]),
            valid: true,
        };
        let config = Arc::new(ArcSwap::from_pointee(config()));
        let target = Arc::new(ArcSwap::from_pointee(RuleSnapshot::unknown()));
        let metrics = Metrics::new().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(
            source,
            config,
            target.clone(),
            metrics.rules.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        // Throttled first: still unknown.
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!target.load().is_known());
        // After the back-off, the second answer lands.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(target.load().state("docker.io"), Some(&RuleState::Missing));
        assert_eq!(target.load().state("quay.io"), Some(&RuleState::Present));
        // A failed read keeps the known snapshot.
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(target.load().state("quay.io"), Some(&RuleState::Present));
        // The rule that appears is used after the next read (at most 1 s of back-off later).
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(target.load().state("docker.io"), Some(&RuleState::Present));
        let gauge = metrics
            .rules
            .status
            .with_label_values(&["docker.io", "docker-hub", "present"])
            .get();
        assert_eq!(gauge, 1);
        assert_eq!(
            metrics
                .rules
                .failures
                .with_label_values(&["throttled"])
                .get(),
            1
        );
        assert_eq!(
            metrics.rules.failures.with_label_values(&["network"]).get(),
            1
        );
        stop.send(()).unwrap();
        task.await.unwrap();
    }

    #[test]
    fn stale_snapshots_expire() {
        let c = config();
        let old = rules::snapshot(
            &c,
            &[],
            &BTreeMap::new(),
            SystemTime::now() - Duration::from_secs(31),
        );
        let target = ArcSwap::from_pointee(old);
        expire(&target, &c);
        assert!(!target.load().is_known());
    }
}
