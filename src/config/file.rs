//! The configuration file as users write it ([`ConfigFile`], unknown keys rejected), its validation into a [`Config`], and errors that name the field and the line.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};
use thiserror::Error;

use super::cache::CacheFile;
use super::digests::{DigestCheckFile, DigestPolicy};
use super::endpoints::{default_registry_host, is_account_id, is_region, registry_endpoints};
use super::exclusion::ExcludeFile;
use super::fallback::FallbackFile;
use super::registry::{DEFAULT_REGISTRIES, MappingFile, validate_aliases, validate_mapping};
use super::rule_check::RuleCheckFile;
use super::{Config, DEFAULT_REGION, EXAMPLE_ACCOUNT_ID, Overrides, WorkloadPolicy};
use crate::reference::Reference;

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
    pub cache: Option<CacheFile>,
    /// Whether the reconciler puts a container that fails to pull through the cache back on
    /// its original image.
    pub fallback: Option<FallbackFile>,
    /// How pullthrough learns which pinned digests the cache holds (`digests: whenCached`).
    pub digest_check: Option<DigestCheckFile>,
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

/// The last key of a dotted field name, to find its line.
fn field_key(field: &str) -> &str {
    field.rsplit('.').next().unwrap_or(field)
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

        let exclude = self
            .exclude
            .unwrap_or_default()
            .validate()
            .map_err(|(field, message, value)| invalid(field, message, &value))?;

        let rule_check = self
            .rule_check
            .unwrap_or_default()
            .validate()
            .map_err(|m| invalid("ruleCheck.interval", m, "interval"))?;

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
            exclude,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fixtures::load;

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
    fn numeric_account_id_loses_leading_zero_and_is_rejected() {
        let err = load("accountId: 12345678901\n").unwrap_err();
        assert!(err.to_string().contains("quote"), "{err}");
        assert!(load("accountId: 123456789012\n").is_ok());
    }

    #[test]
    fn bad_region_and_policy_values_are_rejected() {
        assert!(load("region: Europe\n").is_err());
        let err = load("digests: sometimes\n").unwrap_err();
        assert_eq!(err.line(), Some(1));
        assert!(err.to_string().contains("skip"), "{err}");
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
}
