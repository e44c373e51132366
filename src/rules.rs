//! Rule status: the registry's pull-through cache rules compared with the map. Pure; the
//! webhook, the reconciler and the `rules` command all read the same [`RuleSnapshot`].

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use crate::config::{Config, Mapping};
use crate::ecr::{CacheRule, Validation};

/// What ECR says about the rule one mapping needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleState {
    /// The rule exists and points at the mapped upstream.
    Present,
    /// No rule has the mapping's prefix.
    Missing,
    /// A rule has the prefix but caches another upstream (or another repository prefix).
    WrongUpstream {
        /// The upstream the rule caches.
        actual: String,
    },
    /// The rule exists but ECR cannot reach the upstream with its credentials.
    CredentialsFailing {
        /// ECR's reason.
        failure: String,
    },
}

impl RuleState {
    /// Whether images may be rewritten to this rule.
    pub fn is_usable(&self) -> bool {
        matches!(self, Self::Present)
    }

    /// A short, bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Present => "present",
            Self::Missing => "missing",
            Self::WrongUpstream { .. } => "wrong_upstream",
            Self::CredentialsFailing { .. } => "credentials_failing",
        }
    }
}

impl fmt::Display for RuleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Present => f.write_str("present"),
            Self::Missing => f.write_str("missing"),
            Self::WrongUpstream { actual } => write!(f, "points at {actual}"),
            Self::CredentialsFailing { failure } => {
                write!(f, "upstream credentials failing: {failure}")
            }
        }
    }
}

/// The state of every mapped registry's rule, as of one fetch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSnapshot {
    /// Registry host to state; empty until the first successful fetch.
    states: BTreeMap<String, RuleState>,
    /// When the rules were fetched; `None` before the first success.
    pub fetched_at: Option<SystemTime>,
    /// Registry host to the `createdAt` of its rule, where ECR reports it.
    created: BTreeMap<String, SystemTime>,
}

impl RuleSnapshot {
    /// The snapshot before anything is known.
    pub fn unknown() -> Self {
        Self::default()
    }

    /// Whether rules have been fetched at least once.
    pub fn is_known(&self) -> bool {
        self.fetched_at.is_some()
    }

    /// The state of a registry's rule, `None` when unknown.
    pub fn state(&self, registry: &str) -> Option<&RuleState> {
        self.states.get(registry)
    }

    /// When the rule of a registry was created, where ECR reports it.
    pub fn created_at(&self, registry: &str) -> Option<SystemTime> {
        self.created.get(registry).copied()
    }

    /// Every registry and its state.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &RuleState)> {
        self.states.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// Normalises an upstream URL for comparison: no scheme, no trailing `/`, lowercase.
fn normalise_url(url: &str) -> String {
    let url = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    url.trim_end_matches('/').to_ascii_lowercase()
}

fn normalise_prefix(prefix: &str) -> &str {
    prefix.strip_suffix('/').unwrap_or(prefix)
}

/// The rule a mapping needs among `rules`, if one has its prefix.
pub fn rule_for<'r>(mapping: &Mapping, rules: &'r [CacheRule]) -> Option<&'r CacheRule> {
    rules
        .iter()
        .find(|r| normalise_prefix(&r.prefix) == mapping.ecr_prefix())
}

/// Compares one mapping with the registry's rules. `validation` is the answer of
/// `ValidatePullThroughCacheRule` for the rule, when it was asked.
pub fn state_of(
    mapping: &Mapping,
    rules: &[CacheRule],
    validation: Option<&Validation>,
) -> RuleState {
    let Some(rule) = rule_for(mapping, rules) else {
        return RuleState::Missing;
    };
    if normalise_url(&rule.upstream_url) != normalise_url(&mapping.upstream_url) {
        return RuleState::WrongUpstream {
            actual: rule.upstream_url.clone(),
        };
    }
    let rule_upstream_prefix = rule
        .upstream_repository_prefix
        .as_deref()
        .map(normalise_prefix)
        .filter(|p| *p != "ROOT");
    if rule_upstream_prefix != mapping.upstream_repository_prefix.as_deref() {
        return RuleState::WrongUpstream {
            actual: format!(
                "{}/{}",
                rule.upstream_url,
                rule_upstream_prefix.unwrap_or("ROOT")
            ),
        };
    }
    match validation {
        Some(v) if !v.is_valid => RuleState::CredentialsFailing {
            failure: v
                .failure
                .clone()
                .unwrap_or_else(|| "no reason given".to_owned()),
        },
        _ => RuleState::Present,
    }
}

/// Builds a snapshot from one successful fetch. `validations` holds, by ECR prefix, the
/// answers for the rules that were validated.
pub fn snapshot(
    config: &Config,
    rules: &[CacheRule],
    validations: &BTreeMap<String, Validation>,
    fetched_at: SystemTime,
) -> RuleSnapshot {
    let states = config
        .registries
        .values()
        .map(|m| {
            let v = validations.get(m.ecr_prefix());
            (m.registry.clone(), state_of(m, rules, v))
        })
        .collect();
    let created = config
        .registries
        .values()
        .filter_map(|m| Some((m.registry.clone(), rule_for(m, rules)?.created_at?)))
        .collect();
    RuleSnapshot {
        states,
        fetched_at: Some(fetched_at),
        created,
    }
}

/// The `aws ecr create-pull-through-cache-rule` command that creates a mapping's rule.
pub fn create_command(config: &Config, mapping: &Mapping) -> String {
    let mut cmd = format!(
        "aws ecr create-pull-through-cache-rule --region {} --registry-id {} --ecr-repository-prefix {} --upstream-registry-url {} --upstream-registry {}",
        config.region,
        config.account_id,
        mapping.ecr_prefix(),
        mapping.upstream_url,
        mapping.upstream_registry,
    );
    if let Some(prefix) = &mapping.upstream_repository_prefix {
        cmd.push_str(" --upstream-repository-prefix ");
        cmd.push_str(prefix);
    }
    if mapping.needs_credentials {
        // Secrets Manager ARNs end in a random suffix: take it from `secret_command`.
        cmd.push_str(" --credential-arn \"$SECRET_ARN\"");
    }
    cmd
}

/// For credentialed upstreams: the command that stores the upstream credentials in Secrets
/// Manager under the name ECR requires and sets `SECRET_ARN` for [`create_command`].
pub fn secret_command(config: &Config, mapping: &Mapping) -> Option<String> {
    mapping.needs_credentials.then(|| {
        format!(
            "SECRET_ARN=$(aws secretsmanager create-secret --region {} --name {} --secret-string '{{\"username\":\"<user>\",\"accessToken\":\"<read-only access token>\"}}' --query ARN --output text)",
            config.region,
            secret_name(mapping)
        )
    })
}

/// The Secrets Manager secret name a credentialed rule uses (ECR requires the
/// `ecr-pullthroughcache/` prefix).
pub fn secret_name(mapping: &Mapping) -> String {
    format!(
        "ecr-pullthroughcache/{}",
        mapping.ecr_prefix().replace('/', "-")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;

    fn config() -> Config {
        Config::load(
            "accountId: \"123456789012\"\nregion: eu-west-1\nregistries:\n  docker.io: docker-hub\n  quay.io: quay\n  ghcr.io: github\n  111122223333.dkr.ecr.us-east-1.amazonaws.com:\n    prefix: ecr-east\n    upstreamRepositoryPrefix: team\n",
            &Overrides::default(),
        )
        .unwrap()
    }

    fn rule(prefix: &str, url: &str) -> CacheRule {
        CacheRule::new(prefix, url)
    }

    #[test]
    fn compares_rules_with_the_map() {
        let c = config();
        let mut ecr = rule("ecr-east", "111122223333.dkr.ecr.us-east-1.amazonaws.com");
        ecr.upstream_repository_prefix = Some("team".into());
        let rules = vec![
            rule("docker-hub", "registry-1.docker.io"),
            rule("quay/", "https://quay.io/"),
            rule("github", "ghcr.io.example"),
            ecr,
        ];
        let mut validations = BTreeMap::new();
        validations.insert(
            "docker-hub".to_owned(),
            Validation {
                is_valid: false,
                failure: Some("invalid credentials".into()),
            },
        );
        let s = snapshot(&c, &rules, &validations, SystemTime::UNIX_EPOCH);
        assert_eq!(
            s.state("docker.io"),
            Some(&RuleState::CredentialsFailing {
                failure: "invalid credentials".into()
            })
        );
        assert_eq!(s.state("quay.io"), Some(&RuleState::Present));
        assert_eq!(
            s.state("ghcr.io"),
            Some(&RuleState::WrongUpstream {
                actual: "ghcr.io.example".into()
            })
        );
        assert_eq!(
            s.state("111122223333.dkr.ecr.us-east-1.amazonaws.com"),
            Some(&RuleState::Present)
        );
        assert!(s.is_known());
    }

    #[test]
    fn missing_rules_and_other_upstream_prefix() {
        let c = config();
        let rules = vec![CacheRule {
            upstream_repository_prefix: Some("ROOT".into()),
            ..rule("ecr-east", "111122223333.dkr.ecr.us-east-1.amazonaws.com")
        }];
        let s = snapshot(&c, &rules, &BTreeMap::new(), SystemTime::UNIX_EPOCH);
        assert_eq!(s.state("docker.io"), Some(&RuleState::Missing));
        assert!(matches!(
            s.state("111122223333.dkr.ecr.us-east-1.amazonaws.com"),
            Some(RuleState::WrongUpstream { .. })
        ));
    }

    #[test]
    fn unknown_snapshot_knows_nothing() {
        let s = RuleSnapshot::unknown();
        assert!(!s.is_known());
        assert_eq!(s.state("docker.io"), None);
    }

    #[test]
    fn create_commands_name_prefix_upstream_and_secret() {
        let c = config();
        let hub = c.mapping("docker.io").unwrap();
        let cmd = create_command(&c, hub);
        assert!(cmd.contains("--ecr-repository-prefix docker-hub"));
        assert!(cmd.contains("--upstream-registry-url registry-1.docker.io"));
        assert!(cmd.contains("--upstream-registry docker-hub"));
        assert!(cmd.contains("--credential-arn \"$SECRET_ARN\""));
        let secret = secret_command(&c, hub).unwrap();
        assert!(secret.starts_with("SECRET_ARN=$(aws secretsmanager create-secret --region eu-west-1 --name ecr-pullthroughcache/docker-hub"));
        assert!(secret.contains("accessToken"));
        assert!(secret_command(&c, c.mapping("quay.io").unwrap()).is_none());
        let quay = create_command(&c, c.mapping("quay.io").unwrap());
        assert!(!quay.contains("credential"));
        let ecr = create_command(
            &c,
            c.mapping("111122223333.dkr.ecr.us-east-1.amazonaws.com")
                .unwrap(),
        );
        assert!(ecr.contains("--upstream-repository-prefix team"));
    }
}
