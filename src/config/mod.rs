//! The configuration file: account, region, the registry-to-prefix map, digest policy,
//! exclusions and workload handling.
//!
//! [`ConfigFile`] is the on-disk YAML schema (unknown keys rejected); [`Config::load`] validates
//! it into the immutable [`Config`] the webhook shares as `Arc<Config>`. Errors name the field
//! and, where it can be found, the line. Each feature's settings have a file of their own here,
//! below every room that reads them.

pub mod cache;
pub mod digests;
mod duration;
pub mod endpoints;
pub mod exclusion;
pub mod fallback;
pub mod file;
pub mod registry;
pub mod rule_check;

use std::collections::BTreeMap;

use serde::Deserialize;

pub use cache::{CacheFile, CacheSettings, Lifecycle, LifecycleFile};
pub use digests::{DigestCheck, DigestCheckFile, DigestPolicy};
pub use endpoints::{
    default_registry_host, is_private_ecr_host, private_ecr_endpoint, registry_endpoints,
};
pub use exclusion::{ExcludeFile, Exclusions, ImagePattern, LabelMatch};
pub use fallback::{Fallback, FallbackFile};
pub use file::{ConfigError, ConfigFile};
pub use registry::{
    DEFAULT_REGISTRIES, ECR_REPOSITORY_MAX_LEN, Mapping, MappingFile, UpstreamType, upstream_type,
};
pub use rule_check::{RuleCheck, RuleCheckFile, UnknownRules};

/// Account used when neither the file nor the flags name one, so the webhook can start on a
/// laptop with no configuration at all. It is the placeholder account of the AWS docs.
pub const EXAMPLE_ACCOUNT_ID: &str = "123456789012";
/// Region used when neither the file, the flags nor `AWS_REGION` name one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// What to do with pod templates of workloads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WorkloadPolicy {
    /// Answer with warnings that say what their Pods will get; do not patch (no GitOps drift).
    #[default]
    Preview,
    /// Patch the pod template too.
    Rewrite,
}

/// Values given on the command line or in the environment; they win over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--account-id`.
    pub account_id: Option<String>,
    /// `--region`.
    pub region: Option<String>,
    /// `AWS_REGION`: used only when neither the flag nor the file names a region.
    pub fallback_region: Option<String>,
}

/// A validated, immutable configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// AWS account that owns the rules.
    pub account_id: String,
    /// AWS region of the private registry.
    pub region: String,
    /// Registry host images are rewritten to.
    pub registry_host: String,
    /// Mappings, keyed by normalised upstream registry host.
    pub registries: BTreeMap<String, Mapping>,
    /// Alias host to the registry key of its mapping (built-in and configured aliases).
    pub aliases: BTreeMap<String, String>,
    /// Every endpoint name of the private registry images are rewritten to: the registry host
    /// and the account's dual-stack, FIPS and China names in the region.
    pub own_hosts: Vec<String>,
    /// Digest policy.
    pub digests: DigestPolicy,
    /// Exclusions.
    pub exclude: Exclusions,
    /// Workload policy.
    pub workloads: WorkloadPolicy,
    /// Rule checking.
    pub rule_check: RuleCheck,
    /// Cache contents and repository creation templates.
    pub cache: CacheSettings,
    /// Fallback to original images after failed pulls.
    pub fallback: Fallback,
    /// Digest checking, for `digests: whenCached`.
    pub digest_check: DigestCheck,
}

impl Config {
    /// The mapping for a normalised registry host, or for one of its aliases.
    pub fn mapping(&self, registry: &str) -> Option<&Mapping> {
        self.registries.get(registry).or_else(|| {
            self.aliases
                .get(registry)
                .and_then(|key| self.registries.get(key))
        })
    }

    /// The mapping whose rule serves `repository` in the cache registry (an image pulled
    /// through it): the longest configured prefix that starts it, else the `ROOT` mapping.
    pub fn mapping_of_cached(&self, repository: &str) -> Option<&Mapping> {
        let prefixed = self
            .registries
            .values()
            .filter(|m| {
                m.prefix
                    .as_deref()
                    .and_then(|p| repository.strip_prefix(p))
                    .is_some_and(|rest| rest.starts_with('/'))
            })
            .max_by_key(|m| m.prefix.as_deref().map_or(0, str::len));
        prefixed.or_else(|| self.registries.values().find(|m| m.prefix.is_none()))
    }

    /// Whether `host` is the private registry images are rewritten to, by any of its names.
    pub fn is_own_registry(&self, host: &str) -> bool {
        host == self.registry_host || self.own_hosts.iter().any(|h| h == host)
    }
}

#[cfg(test)]
mod fixtures {
    use super::{Config, ConfigError, Overrides};

    /// A configuration from YAML, without overrides.
    pub fn load(yaml: &str) -> Result<Config, ConfigError> {
        Config::load(yaml, &Overrides::default())
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::load;

    #[test]
    fn a_cached_image_belongs_to_the_longest_prefix_that_starts_its_repository() {
        let c = load(
            "registries:\n  docker.io: docker-hub\n  ghcr.io: docker-hub/ghcr\n  quay.io: quay\n",
        )
        .unwrap();
        let registry = |repo: &str| c.mapping_of_cached(repo).map(|m| m.registry.as_str());
        assert_eq!(registry("docker-hub/library/nginx"), Some("docker.io"));
        assert_eq!(registry("docker-hub/ghcr/org/app"), Some("ghcr.io"));
        // A prefix ends at a path separator.
        assert_eq!(registry("quayside/x"), None);
        let root = load("registries:\n  docker.io: ROOT\n  quay.io: quay\n").unwrap();
        assert_eq!(
            root.mapping_of_cached("library/nginx")
                .map(|m| m.registry.as_str()),
            Some("docker.io")
        );
        assert_eq!(
            root.mapping_of_cached("quay/org/x")
                .map(|m| m.registry.as_str()),
            Some("quay.io")
        );
    }
}
