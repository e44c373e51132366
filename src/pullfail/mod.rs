//! Pull failures of rewritten images: what the reconciler keeps of them, their likely cause, and the notices about them.
//!
//! A container whose image the webhook rewrote (the Pod's `pullthrough.dev/original-images`
//! record says so) and that waits with `ErrImagePull` or `ImagePullBackOff` gets a Warning
//! `PullThroughCachePullFailing` naming the image and the likely cause ([`classify`]), and a
//! Normal `PullThroughCachePullRecovered` once it starts. With `fallback.enabled`, a container
//! failing for longer than `fallback.after` is put back on its original image ([`fallback`]).
//! This module and its children are pure; [`run`] makes the API calls.

pub mod classify;
pub mod fallback;
pub mod run;
pub mod track;

use std::fmt::Write as _;

use crate::config::{Config, Mapping};
use crate::notice::{Notice, Resolution, Severity};
use crate::pod::PodRecord;
use crate::reference::Reference;
use crate::rules::{self, RuleSnapshot};

pub use crate::pod::{Pending, PullRecord, PullWait};
pub use classify::{Cause, classify};

/// Warning on a workload whose rewritten image fails to pull through the cache.
pub const REASON_PULL_FAILING: &str = "PullThroughCachePullFailing";
/// Normal event once the containers that failed to pull have started.
pub const REASON_PULL_RECOVERED: &str = "PullThroughCachePullRecovered";
/// Warning on a Pod whose containers were put back on their original images.
pub const REASON_FALLBACK: &str = "PullThroughCacheFallback";
/// How much of the kubelet's message a note quotes.
const QUOTE_MAX_LEN: usize = 320;

/// One container of a Pod failing to pull its rewritten image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure<'p> {
    /// The container, as pending.
    pub pending: &'p Pending,
    /// The image it fails to pull (in the cache registry).
    pub image: &'p str,
    /// The image before the webhook rewrote it.
    pub original: &'p str,
    /// The kubelet's message.
    pub message: &'p str,
    /// The mapping whose rule the image is pulled through, when one matches.
    pub mapping: Option<&'p Mapping>,
    /// The likely cause.
    pub cause: Cause,
}

/// The containers of `pod` that fail to pull an image the webhook rewrote, with their likely
/// cause. Images the Pod's record does not list as rewritten, or no longer in the cache
/// registry (changed since, or fallen back), are not pullthrough's to diagnose.
pub fn failures<'p>(
    config: &'p Config,
    rules: &RuleSnapshot,
    pod: &'p PodRecord,
) -> Vec<Failure<'p>> {
    let mut out = Vec::new();
    for pending in &pod.pull.pending {
        let Some((_, message)) = &pending.pull else {
            continue;
        };
        let Some(c) = pod
            .containers
            .iter()
            .find(|c| c.container == pending.container)
        else {
            continue;
        };
        let Some(original) = c.original.as_deref() else {
            continue;
        };
        let Ok(reference) = Reference::parse(&c.image) else {
            continue;
        };
        if !config.is_own_registry(reference.registry()) {
            continue;
        }
        let mapping = config.mapping_of_cached(reference.repository());
        let state = mapping.and_then(|m| rules.state(&m.registry));
        out.push(Failure {
            pending,
            image: &c.image,
            original,
            message,
            mapping,
            cause: classify(message, state),
        });
    }
    out
}

/// What a cause means and how to fix it, the same for every Pod of a workload.
pub fn explain(config: &Config, cause: &Cause, mapping: Option<&Mapping>) -> String {
    let prefix = mapping.map_or("<prefix>", Mapping::ecr_prefix);
    let fix = match (cause, mapping) {
        (Cause::RuleMissing, Some(m)) => {
            let secret = if m.needs_credentials {
                format!(
                    " after storing the upstream credentials in Secrets Manager as {}",
                    rules::secret_name(m)
                )
            } else {
                String::new()
            };
            format!(
                "Create the rule {prefix} for {}{secret}: {}",
                m.registry,
                rules::create_command(config, m)
            )
        }
        (Cause::RuleWrongUpstream, Some(m)) => format!(
            "Delete the rule (aws ecr delete-pull-through-cache-rule --region {} --ecr-repository-prefix {prefix}) and create it again: {}",
            config.region,
            rules::create_command(config, m)
        ),
        (Cause::UpstreamCredentials, Some(m)) => format!(
            "Put a valid username and accessToken in the secret {} (aws secretsmanager put-secret-value), then run aws ecr validate-pull-through-cache-rule --region {} --ecr-repository-prefix {prefix}.",
            rules::secret_name(m),
            config.region
        ),
        (Cause::RuleMissing | Cause::RuleWrongUpstream | Cause::UpstreamCredentials, None) => {
            "Run `pullthrough rules --check` for the fix.".to_owned()
        }
        (Cause::NodeRolePermission { action }, _) => {
            let named = action.as_deref().map_or_else(
                || "ecr:BatchImportUpstreamImage and ecr:CreateRepository".to_owned(),
                |a| format!("{a} (and ecr:BatchImportUpstreamImage and ecr:CreateRepository if it lacks them)"),
            );
            format!(
                "Allow the node IAM role {named} on arn:aws:ecr:{}:{}:repository/{prefix}/*; the AWS managed AmazonEC2ContainerRegistryReadOnly policy has neither (docs/iam.md).",
                config.region, config.account_id
            )
        }
        (Cause::ImageNotFound, _) => {
            "Check that the original image exists upstream: the tag may be mistyped or deleted, and the cache only holds what the upstream has. If it does, check the rule with `pullthrough rules --check`.".to_owned()
        }
        (Cause::UpstreamRateLimit, _) => format!(
            "Wait for the limit to reset, or give the rule {prefix} credentials with a higher limit (Docker Hub: a paid account's access token in its ecr-pullthroughcache/ secret)."
        ),
        (Cause::EcrThrottling, _) => {
            "The kubelet retries with back-off; if it lasts, ask for a higher ECR quota for BatchImportUpstreamImage in Service Quotas, or spread out first pulls of new images.".to_owned()
        }
        (Cause::Unknown, _) => {
            "Read the kubelet's message and docs/troubleshooting.md.".to_owned()
        }
    };
    format!(
        "Pulls through the ECR pull-through cache (account {}, region {}) fail: {cause}. {fix}",
        config.account_id, config.region
    )
}

/// This Pod's part of a failure: the container, the images and the kubelet's words.
pub fn detail(failure: &Failure<'_>) -> String {
    let mut out = format!(
        "{} {} cannot pull {} (rewritten from {})",
        failure.pending.kind.noun(),
        failure.pending.container,
        failure.image,
        failure.original,
    );
    let _ = write!(
        out,
        "; the kubelet says: \"{}\"",
        classify::shorten(classify::essence(failure.message), QUOTE_MAX_LEN)
    );
    out
}

/// The resolution of a pull failure: the container started.
pub fn recovered() -> Resolution {
    Resolution {
        reason: REASON_PULL_RECOVERED,
        note: "The containers that failed to pull through the ECR pull-through cache have started."
            .to_owned(),
    }
}

/// The notice about one failure.
pub fn notice(config: &Config, failure: &Failure<'_>) -> Notice {
    Notice {
        reason: REASON_PULL_FAILING,
        severity: Severity::Warning,
        cause: failure.cause.label().to_owned(),
        message: explain(config, &failure.cause, failure.mapping),
        detail: detail(failure),
        resolution: Some(recovered()),
    }
}

/// The reconciler check: a Warning `PullThroughCachePullFailing` per container of `pod` that
/// fails to pull its rewritten image, resolved by `PullThroughCachePullRecovered`.
pub fn notices(config: &Config, rules: &RuleSnapshot, pod: &PodRecord) -> Vec<Notice> {
    failures(config, rules, pod)
        .iter()
        .map(|f| notice(config, f))
        .collect()
}

#[cfg(test)]
pub(crate) mod fixtures {
    use std::collections::BTreeMap;
    use std::time::SystemTime;

    use serde_json::{Value, json};

    use super::*;
    use crate::config::Overrides;
    use k8s_openapi::api::core::v1::Pod;

    use crate::ecr::CacheRule;
    pub use crate::pod::pull::fixtures::{running, waiting};

    pub const CACHE: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

    pub fn config(extra: &str) -> Config {
        Config::load(
            &format!(
                "accountId: \"123456789012\"\nregion: eu-west-1\nregistries:\n  docker.io: docker-hub\n  quay.io: quay\n{extra}"
            ),
            &Overrides::default(),
        )
        .unwrap()
    }

    pub fn snapshot(config: &Config, present: &[(&str, &str)]) -> RuleSnapshot {
        let rules: Vec<CacheRule> = present.iter().map(|&(p, u)| CacheRule::new(p, u)).collect();
        rules::snapshot(config, &rules, &BTreeMap::new(), SystemTime::now())
    }

    pub fn all_rules(config: &Config) -> RuleSnapshot {
        snapshot(
            config,
            &[("docker-hub", "registry-1.docker.io"), ("quay", "quay.io")],
        )
    }

    /// A rewritten Pod: `app` on nginx through the cache, `side` on quay through the cache,
    /// with the statuses given.
    pub fn pod_json(statuses: &Value) -> Value {
        json!({
            "metadata": {
                "name": "web-1", "namespace": "shop", "uid": "u1",
                "annotations": {
                    "pullthrough.dev/original-images": "{\"app\":\"nginx:1.27\",\"side\":\"quay.io/org/side:2\"}"
                }
            },
            "spec": {
                "containers": [
                    {"name": "app", "image": format!("{CACHE}/docker-hub/library/nginx:1.27")},
                    {"name": "side", "image": format!("{CACHE}/quay/org/side:2")}
                ],
                "ephemeralContainers": [{"name": "debug", "image": format!("{CACHE}/docker-hub/library/busybox:1")}]
            },
            "status": {"containerStatuses": statuses}
        })
    }

    pub fn record(pod: &Value) -> PodRecord {
        let pod: Pod = serde_json::from_value(pod.clone()).unwrap();
        PodRecord::from_pod(&pod).unwrap()
    }

    pub const DENIED: &str = "rpc error: code = Unknown desc = failed to pull and unpack image \"123456789012.dkr.ecr.eu-west-1.amazonaws.com/docker-hub/library/nginx:1.27\": failed to resolve reference: pull access denied, repository does not exist or may require authorization: server message: denied: User: arn:aws:sts::123456789012:assumed-role/eks-node/i-0abc is not authorized to perform: ecr:BatchImportUpstreamImage on resource: arn:aws:ecr:eu-west-1:123456789012:repository/docker-hub/library/nginx";
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::fixtures::*;
    use super::*;

    #[test]
    fn only_rewritten_images_in_the_cache_count() {
        let c = config("");
        let rules = all_rules(&c);
        let mut pod = pod_json(&json!([
            waiting("app", "ErrImagePull", DENIED),
            waiting("side", "ErrImagePull", "not found"),
        ]));
        // side was changed by hand to an upstream image since: not ours.
        pod["spec"]["containers"][1]["image"] = json!("quay.io/org/other:3");
        let r = record(&pod);
        let found = failures(&c, &rules, &r);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].pending.container, "app");
        assert_eq!(found[0].original, "nginx:1.27");
        assert_eq!(found[0].mapping.unwrap().registry, "docker.io");

        // Without the record, nothing is pullthrough's.
        pod["metadata"]["annotations"] = json!({});
        assert!(failures(&c, &rules, &record(&pod)).is_empty());
    }

    #[test]
    fn a_notice_names_the_image_the_cause_and_the_fix() {
        let c = config("");
        let pod = pod_json(&json!([
            waiting("app", "ErrImagePull", DENIED),
            running("side")
        ]));
        let r = record(&pod);
        let notes = notices(&c, &all_rules(&c), &r);
        assert_eq!(notes.len(), 1);
        let n = &notes[0];
        assert_eq!(n.reason, REASON_PULL_FAILING);
        assert_eq!(n.severity, Severity::Warning);
        assert_eq!(n.cause, "node_role_permission");
        assert!(
            n.message
                .contains("the node's IAM role is not allowed ecr:BatchImportUpstreamImage"),
            "{}",
            n.message
        );
        assert!(
            n.message
                .contains("arn:aws:ecr:eu-west-1:123456789012:repository/docker-hub/*"),
            "{}",
            n.message
        );
        assert!(
            n.detail.starts_with(&format!(
                "container app cannot pull {CACHE}/docker-hub/library/nginx:1.27 (rewritten from nginx:1.27)"
            )),
            "{}",
            n.detail
        );
        assert!(n.detail.contains("is not authorized to perform"));
        assert_eq!(n.resolution.as_ref().unwrap().reason, REASON_PULL_RECOVERED);
    }

    #[test]
    fn a_missing_rule_is_explained_with_its_create_command() {
        let c = config("");
        let rules = snapshot(&c, &[("quay", "quay.io")]);
        let pod = pod_json(&json!([
            waiting("app", "ImagePullBackOff", "Back-off pulling image \"x\""),
            running("side")
        ]));
        let n = &notices(&c, &rules, &record(&pod))[0];
        assert_eq!(n.cause, "rule_missing");
        assert!(
            n.message.contains("aws ecr create-pull-through-cache-rule"),
            "{}",
            n.message
        );
        assert!(n.message.contains("ecr-pullthroughcache/docker-hub"));
    }

    #[test]
    fn an_unknown_cause_quotes_the_message_shortened() {
        let c = config("");
        let long = format!("dial tcp 10.0.0.1:443: i/o timeout {}", "x".repeat(2000));
        let pod = pod_json(&json!([
            waiting("app", "ErrImagePull", &long),
            running("side")
        ]));
        let n = &notices(&c, &all_rules(&c), &record(&pod))[0];
        assert_eq!(n.cause, "unknown");
        assert!(n.detail.contains("dial tcp 10.0.0.1:443: i/o timeout"));
        assert!(n.detail.len() < 600, "{}", n.detail.len());
        assert!(n.message.contains("does not tell"), "{}", n.message);
    }
}
