//! Builders shared by the reconciler's unit tests: a configuration, rule snapshots and Pod records.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::config::{Config, Overrides};
use crate::ecr::CacheRule;
pub use crate::pod::fixtures::record;
use crate::rules::{self, RuleSnapshot};

pub const CACHE: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

pub fn config() -> Config {
    Config::load(
        "accountId: \"123456789012\"\nregion: eu-west-1\nregistries:\n  docker.io: docker-hub\n  quay.io: quay\n  ghcr.io: github/mirror\nexclude:\n  podLabels: [app=postgres]\n  ownerKinds: [Cluster]\n",
        &Overrides::default(),
    )
    .unwrap()
}

pub fn rule(prefix: &str, url: &str) -> CacheRule {
    CacheRule::new(prefix, url)
}

pub fn snapshot(rules: &[CacheRule]) -> RuleSnapshot {
    rules::snapshot(&config(), rules, &BTreeMap::new(), SystemTime::now())
}

/// Every rule of [`config`] present.
pub fn all_present() -> RuleSnapshot {
    snapshot(&[
        rule("docker-hub", "registry-1.docker.io"),
        rule("quay", "quay.io"),
        rule("github/mirror", "ghcr.io"),
    ])
}

/// Merges `patch` into `target` the JSON-merge way (null removes a key).
pub fn merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
    match (target, patch) {
        (serde_json::Value::Object(t), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(serde_json::Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}
