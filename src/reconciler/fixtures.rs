//! Builders shared by the reconciler's unit tests: a configuration, rule snapshots and Pod records.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use crate::config::{Config, Overrides};
use crate::ecr::CacheRule;
use crate::pod::{ContainerImage, Owner, PodRecord};
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

/// A bare Pod `pod-<uid>` in `shop` with containers `c0`, `c1`, … running `images`.
pub fn record(uid: &str, images: &[&str]) -> PodRecord {
    PodRecord {
        namespace: "shop".into(),
        name: format!("pod-{uid}"),
        uid: uid.into(),
        labels: Arc::default(),
        owner_kinds: Arc::from(Vec::new()),
        owner: None,
        owner_uid: None,
        opted_out: false,
        created: None,
        pull: crate::pod::PullRecord::default(),
        containers: images
            .iter()
            .enumerate()
            .map(|(i, image)| ContainerImage {
                container: format!("c{i}"),
                image: (*image).to_owned(),
                original: None,
            })
            .collect(),
    }
}

impl PodRecord {
    /// Owned by the workload `kind`/`name`, and named after it.
    #[must_use]
    pub fn owned_by(mut self, kind: &str, name: &str) -> Self {
        self.owner = Some(Arc::new(Owner {
            kind: kind.into(),
            name: name.into(),
        }));
        self.owner_kinds = Arc::from(vec![kind.to_owned()]);
        self.name = format!("{name}-{}", self.uid);
        self
    }

    /// With a label.
    #[must_use]
    pub fn labelled(mut self, key: &str, value: &str) -> Self {
        Arc::make_mut(&mut self.labels).insert(key.into(), value.into());
        self
    }

    /// With container `index` rewritten from `original`.
    #[must_use]
    pub fn rewritten_from(mut self, index: usize, original: &str) -> Self {
        let mut containers = self.containers.to_vec();
        containers[index].original = Some(original.into());
        self.containers = containers.into();
        self
    }
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
