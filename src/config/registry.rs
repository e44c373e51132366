//! The registry map: `registries:` in the file, each upstream's ECR rule and prefix, the known upstreams, and the aliases a registry is also known by.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::endpoints::is_private_ecr_host;
use crate::reference::{DOCKER_HUB, Reference};

/// Longest ECR repository name.
pub const ECR_REPOSITORY_MAX_LEN: usize = 256;

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

/// An upstream ECR pull-through cache can cache, as a rule names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamType {
    /// ECR `upstreamRegistry` (`docker-hub`, `chainguard`, `azure-container-registry`).
    pub name: &'static str,
    /// Whether its rule needs a Secrets Manager credential.
    pub needs_credentials: bool,
}

/// The ECR upstream type of a registry host, when ECR pull-through cache can cache it: what
/// `pullthrough coverage` offers for a registry the map lacks.
pub fn upstream_type(host: &str) -> Option<UpstreamType> {
    known_upstream(host).map(|k| UpstreamType {
        name: k.upstream_registry,
        needs_credentials: k.needs_credentials,
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

impl MappingFile {
    pub(super) fn prefix(prefix: &str) -> Self {
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
pub(super) fn validate_aliases<E>(
    registries: &mut BTreeMap<String, Mapping>,
    configured: Vec<(String, String, String)>,
    target: &str,
    own_hosts: &[String],
    invalid: impl Fn(&str, String, &str, &str) -> E,
) -> Result<BTreeMap<String, String>, E> {
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

pub(super) fn validate_mapping(
    host: &str,
    entry: MappingFile,
    target: &str,
) -> Result<Mapping, String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fixtures::load;
    use crate::config::{Config, Overrides};
    use rstest::rstest;

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
}
