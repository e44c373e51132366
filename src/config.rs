//! The configuration file: account, region, the registry-to-prefix map, digest policy,
//! exclusions and workload handling.
//!
//! [`ConfigFile`] is the on-disk YAML schema (unknown keys rejected); [`Config::load`] validates
//! it into the immutable [`Config`] the webhook shares as `Arc<Config>`. Errors name the field
//! and, where it can be found, the line.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use thiserror::Error;

use crate::reference::{DOCKER_HUB, Reference};

/// Account used when neither the file nor the flags name one, so the webhook can start on a
/// laptop with no configuration at all. It is the placeholder account of the AWS docs.
pub const EXAMPLE_ACCOUNT_ID: &str = "123456789012";
/// Region used when neither the file, the flags nor `AWS_REGION` name one.
pub const DEFAULT_REGION: &str = "us-east-1";
/// The last key of a dotted field name, to find its line.
fn field_key(field: &str) -> &str {
    field.rsplit('.').next().unwrap_or(field)
}

/// Longest ECR repository name.
pub const ECR_REPOSITORY_MAX_LEN: usize = 256;

/// The on-disk configuration, as written by users (camelCase keys, unknown keys rejected).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConfigFile {
    /// AWS account that owns the pull-through cache rules (12 digits).
    #[serde(default, deserialize_with = "string_or_number")]
    pub account_id: Option<String>,
    /// AWS region of the private registry.
    pub region: Option<String>,
    /// Registry host to rewrite to, when it is not `<account>.dkr.ecr.<region>.amazonaws.com`.
    pub registry_host: Option<String>,
    /// Upstream registry host (as in image references) to ECR repository prefix.
    pub registries: Option<BTreeMap<String, MappingFile>>,
    /// What to do with digest-pinned images.
    pub digests: Option<DigestPolicy>,
    /// Images and Pods never rewritten.
    pub exclude: Option<ExcludeFile>,
    /// What to do with the pod templates of workloads (Deployments and the like).
    pub workloads: Option<WorkloadPolicy>,
    /// How the webhook learns which ECR rules exist.
    pub rule_check: Option<RuleCheckFile>,
    /// What the cache holds: the reconciler's cache metrics and the creation templates.
    pub cache: Option<crate::cache::settings::CacheFile>,
    /// Whether the reconciler puts a container that fails to pull through the cache back on
    /// its original image.
    pub fallback: Option<FallbackFile>,
    /// How pullthrough learns which pinned digests the cache holds (`digests: whenCached`).
    pub digest_check: Option<DigestCheckFile>,
}

/// `digestCheck:` in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DigestCheckFile {
    /// Most digests remembered (default 10000).
    pub cache_size: Option<usize>,
    /// How long a digest found in the cache is trusted before it is checked again (default 6h).
    #[serde(default, with = "humantime_serde_opt")]
    pub cached_for: Option<std::time::Duration>,
    /// Most `DescribeImages` calls per second (default 5).
    pub checks_per_second: Option<u32>,
    /// Most images the reconciler warms at once (default 2).
    pub warm_concurrency: Option<usize>,
}

/// The validated `digestCheck`. Digests not in the cache are checked again within one
/// `ruleCheck.interval`, so that a freshly warmed image is used soon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestCheck {
    /// Most digests remembered.
    pub cache_size: usize,
    /// How long a "cached" answer holds.
    pub cached_for: std::time::Duration,
    /// Most `DescribeImages` calls per second.
    pub checks_per_second: u32,
    /// Most images warmed at once by the reconciler.
    pub warm_concurrency: usize,
}

impl Default for DigestCheck {
    fn default() -> Self {
        Self {
            cache_size: 10_000,
            cached_for: std::time::Duration::from_hours(6),
            checks_per_second: 5,
            warm_concurrency: 2,
        }
    }
}

impl DigestCheckFile {
    fn validate(self) -> Result<DigestCheck, (&'static str, String)> {
        let default = DigestCheck::default();
        let cache_size = self.cache_size.unwrap_or(default.cache_size);
        if !(100..=1_000_000).contains(&cache_size) {
            return Err((
                "cacheSize",
                format!("{cache_size} is outside 100 to 1000000 digests"),
            ));
        }
        let cached_for = self.cached_for.unwrap_or(default.cached_for);
        if cached_for < std::time::Duration::from_mins(1)
            || cached_for > std::time::Duration::from_hours(168)
        {
            return Err((
                "cachedFor",
                format!(
                    "{} is outside 1m to 168h",
                    humantime::format_duration(cached_for)
                ),
            ));
        }
        let checks_per_second = self.checks_per_second.unwrap_or(default.checks_per_second);
        if !(1..=100).contains(&checks_per_second) {
            return Err((
                "checksPerSecond",
                format!("{checks_per_second} is outside 1 to 100; ECR throttles DescribeImages"),
            ));
        }
        let warm_concurrency = self.warm_concurrency.unwrap_or(default.warm_concurrency);
        if !(1..=16).contains(&warm_concurrency) {
            return Err((
                "warmConcurrency",
                format!("{warm_concurrency} is outside 1 to 16"),
            ));
        }
        Ok(DigestCheck {
            cache_size,
            cached_for,
            checks_per_second,
            warm_concurrency,
        })
    }
}

/// `ruleCheck:` in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuleCheckFile {
    /// Whether to read the rules from ECR at all (default true).
    pub enabled: Option<bool>,
    /// How often to read them (default 5m).
    #[serde(default, with = "humantime_serde_opt")]
    pub interval: Option<std::time::Duration>,
    /// What to do while the rules are unknown (default trust).
    pub when_unknown: Option<UnknownRules>,
    /// Whether to validate the credentials of credentialed rules (default true).
    pub validate_credentials: Option<bool>,
}

/// What the webhook does while it does not know which rules exist (before the first
/// successful read, or with the check disabled).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum UnknownRules {
    /// Rewrite as the map says.
    #[default]
    Trust,
    /// Leave images alone until the rules are known.
    Skip,
}

/// The validated `ruleCheck`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleCheck {
    /// Whether to read the rules from ECR.
    pub enabled: bool,
    /// How often.
    pub interval: std::time::Duration,
    /// Behaviour while unknown.
    pub when_unknown: UnknownRules,
    /// Whether to call `ValidatePullThroughCacheRule` for credentialed rules.
    pub validate_credentials: bool,
}

impl RuleCheck {
    /// Longest interval accepted: the rules are read at least daily, or not at all.
    pub const MAX_INTERVAL: std::time::Duration = std::time::Duration::from_hours(24);

    /// A known snapshot is kept through failed reads for this many intervals; after that the
    /// rules count as unknown and `ruleCheck.whenUnknown` applies.
    pub const STALE_AFTER_INTERVALS: u32 = 3;

    /// How long a snapshot is trusted through failed reads: [`Self::STALE_AFTER_INTERVALS`]
    /// intervals. Saturates rather than overflowing, whatever the interval.
    pub fn stale_after(&self) -> std::time::Duration {
        self.interval.saturating_mul(Self::STALE_AFTER_INTERVALS)
    }
}

impl Default for RuleCheck {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: std::time::Duration::from_mins(5),
            when_unknown: UnknownRules::Trust,
            validate_credentials: true,
        }
    }
}

/// `fallback:` in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FallbackFile {
    /// Whether the reconciler falls back at all (default false).
    pub enabled: Option<bool>,
    /// How long a rewritten image must have failed to pull first (default 2m).
    #[serde(default, with = "humantime_serde_opt")]
    pub after: Option<std::time::Duration>,
}

/// The validated `fallback`: the reconciler sets a container whose rewritten image has failed
/// to pull for `after` back to its original image, once, on that Pod only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fallback {
    /// Whether to fall back.
    pub enabled: bool,
    /// How long a pull must have been failing.
    pub after: std::time::Duration,
}

impl Fallback {
    /// Shortest `after`: the kubelet's first retries come 10 and 20 seconds apart, and a
    /// failure that heals on its own should not cost the cache.
    pub const MIN_AFTER: std::time::Duration = std::time::Duration::from_secs(30);
    /// Longest `after`.
    pub const MAX_AFTER: std::time::Duration = std::time::Duration::from_hours(24);
}

impl Default for Fallback {
    fn default() -> Self {
        Self {
            enabled: false,
            after: std::time::Duration::from_mins(2),
        }
    }
}

impl FallbackFile {
    fn validate(self) -> Result<Fallback, String> {
        let default = Fallback::default();
        let after = self.after.unwrap_or(default.after);
        if !(Fallback::MIN_AFTER..=Fallback::MAX_AFTER).contains(&after) {
            return Err(format!(
                "{} is out of range; use 30s to 24h (the kubelet retries a failed pull with a back-off of up to 5m)",
                humantime::format_duration(after)
            ));
        }
        Ok(Fallback {
            enabled: self.enabled.unwrap_or(default.enabled),
            after,
        })
    }
}

mod humantime_serde_opt {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// One entry of `registries`: a bare prefix, or the prefix with upstream details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingFile {
    /// ECR repository prefix of the pull-through cache rule (`docker-hub`, or `ROOT`).
    pub prefix: String,
    /// Upstream registry URL of the rule, when it differs from the known one.
    pub upstream_url: Option<String>,
    /// ECR `upstreamRegistry` of the rule, when the host is not a known one.
    pub upstream_registry: Option<String>,
    /// For ECR-to-ECR rules: the upstream repository prefix the rule covers.
    pub upstream_repository_prefix: Option<String>,
    /// Other hosts of the same registry (a dual-stack name, a vanity domain): their images use
    /// this mapping's prefix.
    pub aliases: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct MappingFileFull {
    prefix: String,
    upstream_url: Option<String>,
    upstream_registry: Option<String>,
    upstream_repository_prefix: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
}

impl<'de> Deserialize<'de> for MappingFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MappingVisitor;
        impl<'de> Visitor<'de> for MappingVisitor {
            type Value = MappingFile;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an ECR repository prefix, or a map with `prefix`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MappingFile, E> {
                Ok(MappingFile {
                    prefix: v.to_owned(),
                    upstream_url: None,
                    upstream_registry: None,
                    upstream_repository_prefix: None,
                    aliases: Vec::new(),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MappingFile, A::Error> {
                let full =
                    MappingFileFull::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(MappingFile {
                    prefix: full.prefix,
                    upstream_url: full.upstream_url,
                    upstream_registry: full.upstream_registry,
                    upstream_repository_prefix: full.upstream_repository_prefix,
                    aliases: full.aliases,
                })
            }
        }
        deserializer.deserialize_any(MappingVisitor)
    }
}

/// `exclude:` in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExcludeFile {
    /// Glob patterns over normalised references (`ghcr.io/cloudnative-pg/*`).
    #[serde(default)]
    pub images: Vec<String>,
    /// Pod label selectors, `key` (exists) or `key=value`.
    #[serde(default)]
    pub pod_labels: Vec<String>,
    /// Owner reference kinds whose Pods are left alone (`Cluster`, `postgresql`).
    #[serde(default)]
    pub owner_kinds: Vec<String>,
}

/// What to do with digest-pinned images.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DigestPolicy {
    /// Rewrite them, keeping tag and digest, once pullthrough knows the cache holds the digest;
    /// until then leave them on their upstream. ECR cannot fill its cache from a first pull by
    /// digest, so the cache is filled by tag (the reconciler, `pullthrough warm`).
    #[default]
    WhenCached,
    /// Leave them on their upstream.
    Skip,
    /// Rewrite them, keeping tag and digest, for users who warm their cache themselves.
    Rewrite,
}

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

/// Why a configuration was refused.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The YAML does not parse or does not fit the schema (unknown key, wrong type).
    #[error("{message}")]
    Parse {
        /// The parser's message, with line and column.
        message: String,
        /// 1-based line, when known.
        line: Option<usize>,
    },
    /// A value parsed but is not acceptable.
    #[error("{field}: {message}{}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Invalid {
        /// Dotted path of the field.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
        /// 1-based line, when it could be found.
        line: Option<usize>,
    },
}

impl ConfigError {
    /// A short, bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Parse { .. } => "parse",
            Self::Invalid { .. } => "invalid",
        }
    }

    /// The 1-based line the error points at, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Parse { line, .. } | Self::Invalid { line, .. } => *line,
        }
    }
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
    pub cache: crate::cache::settings::CacheSettings,
    /// Fallback to original images after failed pulls.
    pub fallback: Fallback,
    /// Digest checking, for `digests: whenCached`.
    pub digest_check: DigestCheck,
}

/// One upstream registry and the ECR rule that caches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// Upstream registry host as in image references (`docker.io`).
    pub registry: String,
    /// ECR repository prefix without trailing `/`; `None` for `ROOT`.
    pub prefix: Option<String>,
    /// ECR `upstreamRegistryUrl` (`registry-1.docker.io`).
    pub upstream_url: String,
    /// ECR `upstreamRegistry` (`docker-hub`).
    pub upstream_registry: String,
    /// Whether the rule needs a Secrets Manager credential.
    pub needs_credentials: bool,
    /// ECR-to-ECR only: the upstream repository prefix the rule covers; `None` for all.
    pub upstream_repository_prefix: Option<String>,
    /// Other hosts of the same registry, built-in and configured, whose images use this
    /// mapping.
    pub aliases: Vec<String>,
}

impl Mapping {
    /// The prefix as ECR spells it (`docker-hub`, or `ROOT`).
    pub fn ecr_prefix(&self) -> &str {
        self.prefix.as_deref().unwrap_or("ROOT")
    }
}

/// Images and Pods left alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exclusions {
    /// Glob patterns over normalised references.
    pub images: Vec<ImagePattern>,
    /// Pod label selectors.
    pub pod_labels: Vec<LabelMatch>,
    /// Owner reference kinds.
    pub owner_kinds: Vec<String>,
}

/// A known upstream: registry host, ECR `upstreamRegistry`, upstream URL, credentials needed.
struct Known {
    upstream_registry: &'static str,
    upstream_url: Option<&'static str>,
    needs_credentials: bool,
}

/// The default map: the prefixes AWS documents and most users create.
pub const DEFAULT_REGISTRIES: &[(&str, &str)] = &[
    ("docker.io", "docker-hub"),
    ("quay.io", "quay"),
    ("ghcr.io", "github"),
    ("registry.k8s.io", "k8s"),
    ("public.ecr.aws", "ecr-public"),
    ("registry.gitlab.com", "gitlab"),
];

fn known_upstream(host: &str) -> Option<Known> {
    let k = |upstream_registry, upstream_url, needs_credentials| Known {
        upstream_registry,
        upstream_url,
        needs_credentials,
    };
    Some(match host {
        DOCKER_HUB => k("docker-hub", Some("registry-1.docker.io"), true),
        "quay.io" => k("quay", None, false),
        "ghcr.io" => k("github-container-registry", None, true),
        "registry.k8s.io" => k("k8s", None, false),
        "public.ecr.aws" => k("ecr-public", None, false),
        "registry.gitlab.com" => k("gitlab-container-registry", None, true),
        "cgr.dev" => k("chainguard", None, true),
        h if h.ends_with(".azurecr.io") => k("azure-container-registry", None, true),
        h if is_private_ecr_host(h) => k("ecr", None, false),
        _ => return None,
    })
}

/// Hosts that name the same registry as a known one, whatever the map says about them.
fn builtin_aliases(registry: &str) -> &'static [&'static str] {
    match registry {
        DOCKER_HUB => &["registry-1.docker.io"],
        // ECR Public's dual-stack name.
        "public.ecr.aws" => &["ecr-public.aws.com"],
        _ => &[],
    }
}

/// The private ECR endpoint names and the domains they sit in: IPv4 and FIPS under
/// `amazonaws.com`, dual-stack under `on.aws`, and the China partition's pair.
const ECR_ENDPOINTS: &[(&str, &str)] = &[
    ("dkr.ecr", "amazonaws.com"),
    ("dkr.ecr-fips", "amazonaws.com"),
    ("dkr-ecr", "on.aws"),
    ("dkr-ecr-fips", "on.aws"),
    ("dkr.ecr", "amazonaws.com.cn"),
    ("dkr-ecr", "on.amazonwebservices.com.cn"),
];

/// The account and region of a private ECR registry host, in any of its endpoint forms
/// (`<account>.dkr.ecr.<region>.amazonaws.com`, `<account>.dkr-ecr.<region>.on.aws`, FIPS,
/// China).
pub fn private_ecr_endpoint(host: &str) -> Option<(&str, &str)> {
    let (account, rest) = host.split_once('.')?;
    if !is_account_id(account) {
        return None;
    }
    ECR_ENDPOINTS.iter().find_map(|(service, domain)| {
        let region = rest
            .strip_prefix(service)?
            .strip_prefix('.')?
            .strip_suffix(domain)?
            .strip_suffix('.')?;
        is_region(region).then_some((account, region))
    })
}

/// Whether `host` is a private ECR registry, in any of its endpoint forms.
pub fn is_private_ecr_host(host: &str) -> bool {
    private_ecr_endpoint(host).is_some()
}

/// Every endpoint name of an account's private registry in a region.
pub fn registry_endpoints(account_id: &str, region: &str) -> Vec<String> {
    let china = region.starts_with("cn-");
    ECR_ENDPOINTS
        .iter()
        .filter(|(_, domain)| (domain.rsplit('.').next() == Some("cn")) == china)
        .map(|(service, domain)| format!("{account_id}.{service}.{region}.{domain}"))
        .collect()
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `xx-name-N` or `xx-gov-name-N`: lowercase words and a trailing number.
fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

/// The default private registry host of an account and region.
pub fn default_registry_host(account_id: &str, region: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("{account_id}.dkr.ecr.{region}.{suffix}")
}

impl Config {
    /// Parses and validates a YAML configuration; `overrides` win over the file.
    pub fn load(source: &str, overrides: &Overrides) -> Result<Self, ConfigError> {
        let file: ConfigFile = if source.trim().is_empty() {
            ConfigFile::default()
        } else {
            serde_yaml_ng::from_str(source).map_err(|e| ConfigError::Parse {
                line: e.location().map(|l| l.line()),
                message: e.to_string(),
            })?
        };
        file.validate(overrides, Some(source))
    }

    /// The embedded default: the standard map, account and region from `overrides` or the
    /// example values.
    pub fn embedded(overrides: &Overrides) -> Result<Self, ConfigError> {
        ConfigFile::default().validate(overrides, None)
    }

    /// The mapping for a normalised registry host, or for one of its aliases.
    pub fn mapping(&self, registry: &str) -> Option<&Mapping> {
        self.registries.get(registry).or_else(|| {
            self.aliases
                .get(registry)
                .and_then(|key| self.registries.get(key))
        })
    }

    /// Whether `host` is the private registry images are rewritten to, by any of its names.
    pub fn is_own_registry(&self, host: &str) -> bool {
        host == self.registry_host || self.own_hosts.iter().any(|h| h == host)
    }
}

impl ConfigFile {
    /// Validates the file into a [`Config`]. `source`, when given, is searched to point errors
    /// at their line.
    pub fn validate(
        self,
        overrides: &Overrides,
        source: Option<&str>,
    ) -> Result<Config, ConfigError> {
        let line_of = |needle: &str| source.and_then(|s| find_line(s, needle));
        let invalid = |field: &str, message: String, needle: &str| ConfigError::Invalid {
            field: field.to_owned(),
            message,
            line: line_of(needle),
        };

        let account_id = overrides
            .account_id
            .clone()
            .or(self.account_id)
            .unwrap_or_else(|| EXAMPLE_ACCOUNT_ID.to_owned());
        if !is_account_id(&account_id) {
            return Err(invalid(
                "accountId",
                format!(
                    "{account_id:?} is not a 12-digit AWS account ID (quote it in YAML so leading zeros are kept)"
                ),
                "accountId",
            ));
        }
        let region = overrides
            .region
            .clone()
            .or(self.region)
            .or_else(|| overrides.fallback_region.clone())
            .unwrap_or_else(|| DEFAULT_REGION.to_owned());
        if !is_region(&region) {
            return Err(invalid(
                "region",
                format!("{region:?} is not an AWS region name such as eu-west-1"),
                "region",
            ));
        }
        let registry_host = match self.registry_host {
            Some(host) => {
                let host = host.trim_end_matches('/').to_owned();
                let probe = format!("{host}/x");
                if host.is_empty()
                    || host.contains('/')
                    || !Reference::parse(&probe).is_ok_and(|r| r.registry() == host)
                {
                    return Err(invalid(
                        "registryHost",
                        format!("{host:?} is not a registry host name (no scheme, no path)"),
                        "registryHost",
                    ));
                }
                host
            }
            None => default_registry_host(&account_id, &region),
        };

        let entries: Vec<(String, MappingFile)> = match self.registries {
            Some(map) => map.into_iter().collect(),
            None => DEFAULT_REGISTRIES
                .iter()
                .map(|(host, prefix)| ((*host).to_owned(), MappingFile::prefix(prefix)))
                .collect(),
        };
        let mut own_hosts = registry_endpoints(&account_id, &region);
        own_hosts.retain(|h| *h != registry_host);
        let mut registries = BTreeMap::new();
        let mut prefixes: BTreeMap<String, String> = BTreeMap::new();
        let mut user_aliases: Vec<(String, String, String)> = Vec::new();
        for (host, entry) in entries {
            let field = format!("registries.{host}");
            let aliases = entry.aliases.clone();
            let mapping = validate_mapping(&host, entry, &registry_host)
                .map_err(|message| invalid(&field, message, &host))?;
            for alias in aliases {
                user_aliases.push((host.clone(), mapping.registry.clone(), alias));
            }
            let key = mapping.ecr_prefix().to_owned();
            if let Some(other) = prefixes.insert(key.clone(), mapping.registry.clone()) {
                return Err(invalid(
                    &field,
                    format!(
                        "prefix {key:?} is already used by {other}; each rule needs its own prefix"
                    ),
                    &host,
                ));
            }
            if let Some(previous) = registries.insert(mapping.registry.clone(), mapping) {
                return Err(invalid(
                    &field,
                    format!(
                        "{host} is the same registry as an earlier entry ({})",
                        previous.registry
                    ),
                    &host,
                ));
            }
        }

        let aliases = validate_aliases(
            &mut registries,
            user_aliases,
            &registry_host,
            &own_hosts,
            |field: &str, message: String, alias: &str, host: &str| ConfigError::Invalid {
                field: field.to_owned(),
                message,
                line: line_of(alias).or_else(|| line_of(host)),
            },
        )?;

        let exclude = self.exclude.unwrap_or_default();
        let images = exclude
            .images
            .iter()
            .map(|p| ImagePattern::new(p).map_err(|m| invalid("exclude.images", m, p)))
            .collect::<Result<_, _>>()?;
        let pod_labels = exclude
            .pod_labels
            .iter()
            .map(|s| LabelMatch::parse(s).map_err(|m| invalid("exclude.podLabels", m, s)))
            .collect::<Result<_, _>>()?;
        for kind in &exclude.owner_kinds {
            if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(invalid(
                    "exclude.ownerKinds",
                    format!("{kind:?} is not a Kubernetes kind such as Cluster"),
                    kind,
                ));
            }
        }

        let rule_check = {
            let file = self.rule_check.unwrap_or_default();
            let default = RuleCheck::default();
            let interval = file.interval.unwrap_or(default.interval);
            if interval < std::time::Duration::from_secs(10) {
                return Err(invalid(
                    "ruleCheck.interval",
                    format!(
                        "{} is too often; ECR throttles, use 10s or more",
                        humantime::format_duration(interval)
                    ),
                    "interval",
                ));
            }
            if interval > RuleCheck::MAX_INTERVAL {
                return Err(invalid(
                    "ruleCheck.interval",
                    format!(
                        "{} is too long; use 24h or less, or enabled: false to stop checking",
                        humantime::format_duration(interval)
                    ),
                    "interval",
                ));
            }
            RuleCheck {
                enabled: file.enabled.unwrap_or(default.enabled),
                interval,
                when_unknown: file.when_unknown.unwrap_or(default.when_unknown),
                validate_credentials: file
                    .validate_credentials
                    .unwrap_or(default.validate_credentials),
            }
        };

        let fallback = self
            .fallback
            .unwrap_or_default()
            .validate()
            .map_err(|m| invalid("fallback.after", m, "after"))?;
        let digest_check = self
            .digest_check
            .unwrap_or_default()
            .validate()
            .map_err(|(key, message)| invalid(&format!("digestCheck.{key}"), message, key))?;

        Ok(Config {
            account_id,
            region,
            registry_host,
            registries,
            aliases,
            own_hosts,
            digests: self.digests.unwrap_or_default(),
            exclude: Exclusions {
                images,
                pod_labels,
                owner_kinds: exclude.owner_kinds,
            },
            workloads: self.workloads.unwrap_or_default(),
            rule_check,
            cache: self
                .cache
                .unwrap_or_default()
                .validate()
                .map_err(|(field, message)| invalid(field, message, field_key(field)))?,
            fallback,
            digest_check,
        })
    }
}

impl MappingFile {
    fn prefix(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            upstream_url: None,
            upstream_registry: None,
            upstream_repository_prefix: None,
            aliases: Vec::new(),
        }
    }
}

/// Checks the configured aliases and adds the built-in ones, filling each mapping's `aliases`.
/// Returns alias host to registry key. A configured alias must be a host, must not be a mapped
/// registry or the private registry, and may belong to one mapping only; a built-in alias
/// gives way to a mapping of its own.
fn validate_aliases(
    registries: &mut BTreeMap<String, Mapping>,
    configured: Vec<(String, String, String)>,
    target: &str,
    own_hosts: &[String],
    invalid: impl Fn(&str, String, &str, &str) -> ConfigError,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut aliases: BTreeMap<String, String> = BTreeMap::new();
    for (host, registry, alias) in configured {
        let field = format!("registries.{host}.aliases");
        let alias_host = alias.trim_end_matches('/');
        let is_host =
            Reference::parse(&format!("{alias_host}/x")).is_ok_and(|r| r.registry() == alias_host);
        if !is_host || alias_host.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid(
                &field,
                format!(
                    "{alias:?} is not a registry host as written in image references (lowercase, with a dot, a port or localhost)"
                ),
                &alias,
                &host,
            ));
        }
        if alias_host == target || own_hosts.iter().any(|h| h == alias_host) {
            return Err(invalid(
                &field,
                format!(
                    "{alias_host} is the registry images are rewritten to; it cannot be an alias"
                ),
                &alias,
                &host,
            ));
        }
        if alias_host == registry || registries.contains_key(alias_host) {
            return Err(invalid(
                &field,
                format!("{alias_host} is a mapped registry of its own; it cannot also be an alias"),
                &alias,
                &host,
            ));
        }
        if let Some(other) = aliases.insert(alias_host.to_owned(), registry.clone()) {
            return Err(invalid(
                &field,
                format!(
                    "{alias_host} is already an alias of {other}; an alias belongs to one registry"
                ),
                &alias,
                &host,
            ));
        }
    }
    for registry in registries.keys() {
        for alias in builtin_aliases(registry) {
            if !registries.contains_key(*alias) {
                aliases
                    .entry((*alias).to_owned())
                    .or_insert_with(|| registry.clone());
            }
        }
    }
    for (alias, registry) in &aliases {
        if let Some(mapping) = registries.get_mut(registry) {
            mapping.aliases.push(alias.clone());
        }
    }
    Ok(aliases)
}

fn validate_mapping(host: &str, entry: MappingFile, target: &str) -> Result<Mapping, String> {
    // Keys are hosts as image references spell them; `index.docker.io` is Docker Hub.
    let registry = if host == "index.docker.io" {
        DOCKER_HUB
    } else {
        host
    };
    let is_host =
        Reference::parse(&format!("{registry}/x")).is_ok_and(|r| r.registry() == registry);
    if !is_host || registry.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "{host:?} is not a registry host as written in image references (lowercase, with a dot, a port or localhost)"
        ));
    }
    let registry = registry.to_owned();
    if registry == target {
        return Err(format!(
            "{host} is the registry images are rewritten to; it cannot also be an upstream"
        ));
    }
    let prefix = validate_prefix(&entry.prefix)?;
    let known = known_upstream(&registry);
    let upstream_registry = match (entry.upstream_registry, &known) {
        (Some(u), _) => u,
        (None, Some(k)) => k.upstream_registry.to_owned(),
        (None, None) => {
            return Err(format!(
                "{registry} is not a registry ECR pull-through cache knows; set upstreamRegistry"
            ));
        }
    };
    let upstream_url = entry
        .upstream_url
        .or_else(|| {
            known
                .as_ref()
                .and_then(|k| k.upstream_url.map(str::to_owned))
        })
        .unwrap_or_else(|| registry.clone());
    let upstream_repository_prefix = match entry.upstream_repository_prefix {
        None => None,
        Some(p) if p == "ROOT" => None,
        Some(p) => {
            let trimmed = p.trim_end_matches('/');
            if trimmed.is_empty() || !trimmed.split('/').all(is_prefix_segment) {
                return Err(format!(
                    "upstreamRepositoryPrefix {p:?} is not a repository path"
                ));
            }
            Some(trimmed.to_owned())
        }
    };
    Ok(Mapping {
        registry,
        prefix,
        upstream_url,
        needs_credentials: known.is_some_and(|k| k.needs_credentials),
        upstream_registry,
        upstream_repository_prefix,
        aliases: Vec::new(),
    })
}

/// ECR's rule for `ecrRepositoryPrefix`: 2 to 30 characters of lowercase path segments with an
/// optional trailing `/`, or `ROOT`.
fn validate_prefix(prefix: &str) -> Result<Option<String>, String> {
    if prefix == "ROOT" {
        return Ok(None);
    }
    if !(2..=30).contains(&prefix.len()) {
        return Err(format!(
            "prefix {prefix:?} must be 2 to 30 characters long (or ROOT)"
        ));
    }
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    if !trimmed.split('/').all(is_prefix_segment) {
        return Err(format!(
            "prefix {prefix:?} must be lowercase path segments of letters, digits and . _ - (or ROOT)"
        ));
    }
    Ok(Some(trimmed.to_owned()))
}

/// `[a-z0-9]+([._-][a-z0-9]+)*`
fn is_prefix_segment(s: &str) -> bool {
    !s.is_empty()
        && s.split(['.', '_', '-']).all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

fn find_line(source: &str, needle: &str) -> Option<usize> {
    source
        .lines()
        .position(|l| {
            let l = l.trim_start().trim_start_matches("- ");
            let l = l.trim_start_matches(['"', '\'']);
            l.starts_with(needle)
        })
        .map(|i| i + 1)
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a 12-digit account ID")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// A glob over normalised references: `*` matches any run of characters (`/` included), `?`
/// one character. A pattern matches a reference when it matches its name
/// (`docker.io/library/nginx`) or its full form (`docker.io/library/nginx:1.27`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePattern(String);

impl ImagePattern {
    /// Checks and keeps a pattern.
    pub fn new(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() || pattern.chars().any(char::is_whitespace) {
            return Err(format!("{pattern:?} is not an image pattern"));
        }
        Ok(Self(pattern.to_owned()))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the pattern matches this reference.
    pub fn matches(&self, reference: &Reference) -> bool {
        let name = format!("{}/{}", reference.registry(), reference.repository());
        if glob(self.0.as_bytes(), name.as_bytes()) {
            return true;
        }
        let full = format!("{name}{}", reference.suffix());
        glob(self.0.as_bytes(), full.as_bytes())
    }
}

/// Iterative glob matching with single-star backtracking: linear in practice, never exponential.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// A Pod label selector: `key` (the label exists) or `key=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMatch {
    /// Label key.
    pub key: String,
    /// Required value; `None` means any value.
    pub value: Option<String>,
}

impl LabelMatch {
    /// Parses `key` or `key=value`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (key, value) = match s.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim().to_owned())),
            None => (s.trim(), None),
        };
        let key_ok = !key.is_empty()
            && key.len() <= 317
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
        if !key_ok {
            return Err(format!("{s:?} is not a label selector (key or key=value)"));
        }
        Ok(Self {
            key: key.to_owned(),
            value,
        })
    }

    /// Whether a label set matches.
    pub fn matches<'a>(&self, mut labels: impl Iterator<Item = (&'a str, &'a str)>) -> bool {
        labels.any(|(k, v)| k == self.key && self.value.as_deref().is_none_or(|want| want == v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn load(yaml: &str) -> Result<Config, ConfigError> {
        Config::load(yaml, &Overrides::default())
    }

    #[test]
    fn embedded_default_has_the_documented_map() {
        let c = Config::embedded(&Overrides::default()).unwrap();
        assert_eq!(
            c.registry_host,
            "123456789012.dkr.ecr.us-east-1.amazonaws.com"
        );
        let pairs: Vec<(&str, &str)> = c
            .registries
            .values()
            .map(|m| (m.registry.as_str(), m.ecr_prefix()))
            .collect();
        for (host, prefix) in DEFAULT_REGISTRIES {
            assert!(pairs.contains(&(host, prefix)), "{host} missing");
        }
        let hub = c.mapping("docker.io").unwrap();
        assert_eq!(hub.upstream_url, "registry-1.docker.io");
        assert_eq!(hub.upstream_registry, "docker-hub");
        assert!(hub.needs_credentials);
        assert!(!c.mapping("quay.io").unwrap().needs_credentials);
    }

    #[test]
    fn loads_the_documented_example() {
        let c = load(
            "accountId: \"123456789012\"\nregion: eu-west-1\nregistries:\n  docker.io: docker-hub\n  quay.io: quay\ndigests: skip\n",
        )
        .unwrap();
        assert_eq!(c.registries.len(), 2);
        assert_eq!(c.digests, DigestPolicy::Skip);
        assert_eq!(
            c.registry_host,
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
        );
    }

    #[test]
    fn china_regions_use_the_cn_domain() {
        let c = load("region: cn-north-1\n").unwrap();
        assert_eq!(
            c.registry_host,
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"
        );
    }

    #[test]
    fn flags_override_the_file() {
        let c = Config::load(
            "accountId: \"111111111111\"\nregion: eu-west-1\n",
            &Overrides {
                account_id: Some("222222222222".into()),
                region: Some("us-west-2".into()),
                fallback_region: None,
            },
        )
        .unwrap();
        assert_eq!(
            c.registry_host,
            "222222222222.dkr.ecr.us-west-2.amazonaws.com"
        );
    }

    #[test]
    fn aws_region_only_fills_a_missing_region() {
        let env = Overrides {
            fallback_region: Some("ap-south-1".into()),
            ..Overrides::default()
        };
        assert_eq!(
            Config::load("region: eu-west-1\n", &env).unwrap().region,
            "eu-west-1"
        );
        assert_eq!(Config::load("", &env).unwrap().region, "ap-south-1");
    }

    #[test]
    fn explicit_registry_host_wins() {
        let c = load("registryHost: 123456789012.dkr-ecr.eu-west-1.on.aws\n").unwrap();
        assert_eq!(c.registry_host, "123456789012.dkr-ecr.eu-west-1.on.aws");
        assert!(load("registryHost: https://x.example/path\n").is_err());
    }

    #[test]
    fn unknown_key_is_rejected_with_its_line_and_the_expected_keys() {
        let err = load("accountId: \"123456789012\"\nregsitries:\n  docker.io: hub\n").unwrap_err();
        assert_eq!(err.line(), Some(2));
        let msg = err.to_string();
        assert!(msg.contains("regsitries"), "{msg}");
        assert!(msg.contains("registries"), "{msg}");
    }

    #[test]
    fn unknown_key_inside_a_mapping_is_rejected() {
        let err =
            load("registries:\n  docker.io:\n    prefix: docker-hub\n    prefx: x\n").unwrap_err();
        assert_eq!(err.line(), Some(4), "{err}");
    }

    #[test]
    fn invalid_prefix_names_the_field_and_line() {
        let err = load("region: eu-west-1\nregistries:\n  quay.io: Quay_Cache\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("registries.quay.io"), "{msg}");
        assert_eq!(err.line(), Some(3), "{msg}");
    }

    #[rstest]
    #[case::too_short("q")]
    #[case::too_long("abcdefghijklmnopqrstuvwxyz01234")]
    #[case::uppercase("Quay")]
    #[case::empty_segment("a//b")]
    #[case::leading_separator("-quay")]
    fn rejects_bad_prefixes(#[case] prefix: &str) {
        assert!(validate_prefix(prefix).is_err(), "{prefix}");
    }

    #[rstest]
    #[case::plain("quay", Some("quay"))]
    #[case::trailing_slash("cache/quay/", Some("cache/quay"))]
    #[case::root("ROOT", None)]
    fn accepts_good_prefixes(#[case] prefix: &str, #[case] want: Option<&str>) {
        assert_eq!(validate_prefix(prefix).unwrap().as_deref(), want);
    }

    #[test]
    fn numeric_account_id_loses_leading_zero_and_is_rejected() {
        let err = load("accountId: 12345678901\n").unwrap_err();
        assert!(err.to_string().contains("quote"), "{err}");
        assert!(load("accountId: 123456789012\n").is_ok());
    }

    #[test]
    fn duplicate_prefix_is_rejected() {
        let err = load("registries:\n  quay.io: cache\n  ghcr.io: cache\n").unwrap_err();
        assert!(err.to_string().contains("already used"), "{err}");
    }

    #[test]
    fn legacy_hub_key_is_folded_and_duplicate_detected() {
        let err = load("registries:\n  docker.io: hub\n  index.docker.io: hub2\n").unwrap_err();
        assert!(err.to_string().contains("same registry"), "{err}");
    }

    #[test]
    fn unknown_registry_needs_upstream_registry() {
        let err = load("registries:\n  registry.example.com: example\n").unwrap_err();
        assert!(err.to_string().contains("upstreamRegistry"), "{err}");
        let c = load(
            "registries:\n  myacr.azurecr.io: azure\n  cgr.dev: chainguard\n  registry.example.com:\n    prefix: example\n    upstreamRegistry: custom\n",
        )
        .unwrap();
        assert_eq!(
            c.mapping("myacr.azurecr.io").unwrap().upstream_registry,
            "azure-container-registry"
        );
        assert_eq!(
            c.mapping("registry.example.com").unwrap().upstream_registry,
            "custom"
        );
    }

    #[test]
    fn ecr_to_ecr_mapping_keeps_upstream_repository_prefix() {
        let c = load(
            "registries:\n  111122223333.dkr.ecr.us-east-1.amazonaws.com:\n    prefix: ecr-east\n    upstreamRepositoryPrefix: team/\n",
        )
        .unwrap();
        let m = c
            .mapping("111122223333.dkr.ecr.us-east-1.amazonaws.com")
            .unwrap();
        assert_eq!(m.upstream_registry, "ecr");
        assert_eq!(m.upstream_repository_prefix.as_deref(), Some("team"));
    }

    #[test]
    fn mapping_the_target_registry_is_rejected() {
        let err = load("registries:\n  123456789012.dkr.ecr.us-east-1.amazonaws.com: self\n")
            .unwrap_err();
        assert!(err.to_string().contains("rewritten to"), "{err}");
    }

    #[test]
    fn bad_region_and_policy_values_are_rejected() {
        assert!(load("region: Europe\n").is_err());
        let err = load("digests: sometimes\n").unwrap_err();
        assert_eq!(err.line(), Some(1));
        assert!(err.to_string().contains("skip"), "{err}");
    }

    #[test]
    fn fallback_is_off_by_default_and_validated() {
        let c = load("").unwrap();
        assert_eq!(c.fallback, Fallback::default());
        assert!(!c.fallback.enabled);
        assert_eq!(c.fallback.after, std::time::Duration::from_mins(2));
        let c = load("fallback:\n  enabled: true\n  after: 5m\n").unwrap();
        assert!(c.fallback.enabled);
        assert_eq!(c.fallback.after, std::time::Duration::from_mins(5));
        let err = load("fallback:\n  enabled: true\n  after: 5s\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("fallback.after: 5s is out of range"),
            "{err}"
        );
        assert_eq!(err.line(), Some(3), "{err}");
        assert!(load("fallback:\n  after: 25h\n").is_err());
        assert!(load("fallback:\n  after: later\n").is_err());
        let err = load("fallback:\n  enable: true\n").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn pinned_digests_wait_for_the_cache_by_default() {
        assert_eq!(load("").unwrap().digests, DigestPolicy::WhenCached);
        assert_eq!(
            load("digests: whenCached\n").unwrap().digests,
            DigestPolicy::WhenCached
        );
        assert_eq!(
            load("digests: rewrite\n").unwrap().digests,
            DigestPolicy::Rewrite
        );
        let err = load("digests: whencached\n").unwrap_err();
        assert!(err.to_string().contains("whenCached"), "{err}");
    }

    #[test]
    fn digest_check_defaults_values_and_limits() {
        let c = load("").unwrap();
        assert_eq!(c.digest_check, DigestCheck::default());
        assert_eq!(c.digest_check.cache_size, 10_000);
        let c = load(
            "digestCheck:\n  cacheSize: 500\n  cachedFor: 2h\n  checksPerSecond: 2\n  warmConcurrency: 4\n",
        )
        .unwrap();
        assert_eq!(
            c.digest_check,
            DigestCheck {
                cache_size: 500,
                cached_for: std::time::Duration::from_hours(2),
                checks_per_second: 2,
                warm_concurrency: 4,
            }
        );
        for (yaml, field) in [
            ("digestCheck:\n  cacheSize: 0\n", "digestCheck.cacheSize"),
            ("digestCheck:\n  cachedFor: 1s\n", "digestCheck.cachedFor"),
            (
                "digestCheck:\n  checksPerSecond: 0\n",
                "digestCheck.checksPerSecond",
            ),
            (
                "digestCheck:\n  warmConcurrency: 100\n",
                "digestCheck.warmConcurrency",
            ),
        ] {
            let err = load(yaml).unwrap_err();
            assert!(err.to_string().contains(field), "{yaml}: {err}");
            assert_eq!(err.line(), Some(2), "{yaml}: {err}");
        }
        assert!(load("digestCheck:\n  size: 5\n").is_err());
    }

    #[test]
    fn rule_check_defaults_and_values() {
        let c = load("").unwrap();
        assert_eq!(c.rule_check, RuleCheck::default());
        let c =
            load("ruleCheck:\n  interval: 1m\n  whenUnknown: skip\n  validateCredentials: false\n")
                .unwrap();
        assert_eq!(c.rule_check.interval, std::time::Duration::from_mins(1));
        assert_eq!(c.rule_check.when_unknown, UnknownRules::Skip);
        assert!(!c.rule_check.validate_credentials);
        let err = load("ruleCheck:\n  interval: 1s\n").unwrap_err();
        assert_eq!(err.line(), Some(2), "{err}");
        assert!(load("ruleCheck:\n  interval: soon\n").is_err());
    }

    #[test]
    fn lone_carriage_returns_are_line_breaks_for_error_lines() {
        // Found by fuzzing: YAML breaks lines at a lone CR (and NEL, U+2028, U+2029) as well,
        // so the line an error names counts those too, as an editor that shows them does.
        let err =
            load("accountId: \"123456789012\"\rregion: eu-west-1\rregistries\r\r").unwrap_err();
        let line = err.line().unwrap();
        assert!(line >= 3, "{err}");
        assert!(line <= 5, "{err}");
        assert!(load("accountId: \"123456789012\"\r\nregion: eu-west-1\r\n").is_ok());
        // So does the Unicode line separator inside a quoted scalar left open.
        let err = load("accountId: \"1\u{2028}2\u{2028}3").unwrap_err();
        assert_eq!(err.line(), Some(3), "{err}");
    }

    #[test]
    fn an_interval_beyond_a_day_is_refused_and_staleness_never_overflows() {
        // 200 billion years parses as a Duration; three of them overflowed the staleness limit
        // and ended the refresh task with a panic.
        let err = load("ruleCheck:\n  interval: 200000000000y\n").unwrap_err();
        assert!(err.to_string().contains("24h or less"), "{err}");
        assert_eq!(err.line(), Some(2), "{err}");
        assert!(load("ruleCheck:\n  interval: 24h\n").is_ok());
        assert!(load("ruleCheck:\n  interval: 25h\n").is_err());
        let huge = RuleCheck {
            interval: std::time::Duration::MAX,
            ..RuleCheck::default()
        };
        assert_eq!(huge.stale_after(), std::time::Duration::MAX);
        assert_eq!(
            RuleCheck::default().stale_after(),
            std::time::Duration::from_mins(15)
        );
    }

    #[test]
    fn exclusions_are_parsed() {
        let c = load(
            "exclude:\n  images: [\"ghcr.io/cloudnative-pg/*\"]\n  podLabels: [\"cnpg.io/cluster\", \"app=db\"]\n  ownerKinds: [Cluster]\n",
        )
        .unwrap();
        assert_eq!(c.exclude.images.len(), 1);
        assert_eq!(c.exclude.pod_labels[1].value.as_deref(), Some("db"));
        assert!(load("exclude:\n  podLabels: [\"bad key\"]\n").is_err());
        assert!(load("exclude:\n  ownerKinds: [\"apps/v1\"]\n").is_err());
    }

    #[rstest]
    #[case::star_matches_all(
        "ghcr.io/cloudnative-pg/*",
        "ghcr.io/cloudnative-pg/postgresql:16",
        true
    )]
    #[case::name_only("docker.io/library/nginx", "nginx:1.27", true)]
    #[case::tag_pattern("docker.io/library/nginx:1.*", "nginx:1.27", true)]
    #[case::other_repo("ghcr.io/cloudnative-pg/*", "ghcr.io/other/x", false)]
    #[case::question("quay.io/?/x", "quay.io/a/x", true)]
    #[case::star_middle("*/bitnami/*", "bitnami/redis:7", true)]
    fn image_patterns(#[case] pattern: &str, #[case] image: &str, #[case] want: bool) {
        let p = ImagePattern::new(pattern).unwrap();
        assert_eq!(p.matches(&Reference::parse(image).unwrap()), want);
    }

    #[test]
    fn glob_is_not_exponential() {
        let text = "a".repeat(200);
        assert!(!glob(b"*a*a*a*a*a*a*a*a*b", text.as_bytes()));
    }

    #[test]
    fn label_match() {
        let exists = LabelMatch::parse("cnpg.io/cluster").unwrap();
        let eq = LabelMatch::parse("app=db").unwrap();
        let labels = [("cnpg.io/cluster", "pg"), ("app", "web")];
        assert!(exists.matches(labels.iter().copied()));
        assert!(!eq.matches(labels.iter().copied()));
    }

    #[test]
    fn built_in_aliases_name_ecr_public_dual_stack_and_docker_hub_registry() {
        let c = Config::embedded(&Overrides::default()).unwrap();
        assert_eq!(
            c.mapping("ecr-public.aws.com").map(Mapping::ecr_prefix),
            Some("ecr-public")
        );
        assert_eq!(
            c.mapping("registry-1.docker.io").map(Mapping::ecr_prefix),
            Some("docker-hub")
        );
        assert_eq!(
            c.registries["public.ecr.aws"].aliases,
            ["ecr-public.aws.com"]
        );
        assert!(c.mapping("ecr-public.aws.com.evil.example").is_none());
    }

    #[test]
    fn configured_aliases_join_the_built_in_ones() {
        let c = load(
            "registries:\n  public.ecr.aws:\n    prefix: ecr-public\n    aliases: [\"mirror.example.com\"]\n  ghcr.io:\n    prefix: github\n    aliases:\n      - images.example.com\n",
        )
        .unwrap();
        assert_eq!(
            c.registries["public.ecr.aws"].aliases,
            ["ecr-public.aws.com", "mirror.example.com"]
        );
        assert_eq!(c.mapping("images.example.com").unwrap().registry, "ghcr.io");
    }

    #[test]
    fn a_registry_mapped_on_its_own_keeps_its_mapping_over_a_built_in_alias() {
        let c = load("registries:\n  public.ecr.aws: ecr-public\n  ecr-public.aws.com:\n    prefix: ecr-public-v6\n    upstreamRegistry: ecr-public\n").unwrap();
        assert_eq!(
            c.mapping("ecr-public.aws.com").unwrap().ecr_prefix(),
            "ecr-public-v6"
        );
        assert!(c.registries["public.ecr.aws"].aliases.is_empty());
    }

    #[rstest]
    #[case::used_twice(
        "registries:\n  ghcr.io:\n    prefix: github\n    aliases: [images.example.com]\n  quay.io:\n    prefix: quay\n    aliases:\n      - images.example.com\n",
        "already an alias of ghcr.io",
        Some(8)
    )]
    #[case::a_mapped_registry(
        "registries:\n  ghcr.io:\n    prefix: github\n    aliases:\n      - quay.io\n  quay.io: quay\n",
        "mapped registry of its own",
        Some(5)
    )]
    #[case::the_private_registry(
        "accountId: \"123456789012\"\nregion: eu-west-1\nregistries:\n  ghcr.io:\n    prefix: github\n    aliases:\n      - 123456789012.dkr-ecr.eu-west-1.on.aws\n",
        "rewritten to",
        Some(7)
    )]
    #[case::not_a_host(
        "registries:\n  ghcr.io:\n    prefix: github\n    aliases:\n      - https://x.example\n",
        "not a registry host",
        Some(5)
    )]
    fn bad_aliases_are_refused_with_the_line(
        #[case] yaml: &str,
        #[case] message: &str,
        #[case] line: Option<usize>,
    ) {
        let err = load(yaml).unwrap_err();
        assert!(err.to_string().contains(message), "{err}");
        assert!(err.to_string().contains(".aliases"), "{err}");
        assert_eq!(err.line(), line, "{err}");
    }

    #[test]
    fn private_endpoints_are_recognised_in_every_form() {
        for (host, want) in [
            (
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
                Some(("123456789012", "eu-west-1")),
            ),
            (
                "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com",
                Some(("123456789012", "us-east-1")),
            ),
            (
                "123456789012.dkr-ecr.eu-west-1.on.aws",
                Some(("123456789012", "eu-west-1")),
            ),
            (
                "123456789012.dkr-ecr-fips.us-gov-west-1.on.aws",
                Some(("123456789012", "us-gov-west-1")),
            ),
            (
                "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
                Some(("123456789012", "cn-north-1")),
            ),
            (
                "123456789012.dkr-ecr.cn-north-1.on.amazonwebservices.com.cn",
                Some(("123456789012", "cn-north-1")),
            ),
            ("123456789012.dkr.ecr.eu-west-1.on.aws", None),
            ("12345678901.dkr.ecr.eu-west-1.amazonaws.com", None),
            (
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com.evil.example",
                None,
            ),
        ] {
            assert_eq!(private_ecr_endpoint(host), want, "{host}");
        }
        let c = load("accountId: \"123456789012\"\nregion: eu-west-1\n").unwrap();
        assert!(c.is_own_registry("123456789012.dkr-ecr-fips.eu-west-1.on.aws"));
        assert!(!c.is_own_registry("123456789012.dkr-ecr.eu-west-2.on.aws"));
    }
}
