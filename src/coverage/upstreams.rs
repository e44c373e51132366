//! The registries ECR pull-through cache cannot cache (no upstream exists for them, as of 2026), and the map line that adds one it can.

use crate::config::{Config, DEFAULT_REGISTRIES, upstream_type};

/// When the list of registries below was last checked against the upstreams ECR documents.
pub const AS_OF: &str = "2026";

/// Registries with no ECR pull-through cache upstream: a host, or `*` and the end of a host.
/// Earlier entries win, so the former Kubernetes registry is named before the rest of gcr.io.
pub const UNCACHEABLE: &[(&str, &str)] = &[
    (
        "k8s.gcr.io",
        "the former Kubernetes registry (frozen; its images are on registry.k8s.io, which ECR can cache)",
    ),
    ("gcr.io", "Google Container Registry"),
    ("*.gcr.io", "Google Container Registry"),
    ("*-docker.pkg.dev", "Google Artifact Registry"),
    ("*.pkg.dev", "Google Artifact Registry"),
    ("mcr.microsoft.com", "Microsoft Artifact Registry"),
    ("nvcr.io", "NVIDIA NGC"),
    ("docker.elastic.co", "Elastic's registry"),
    ("dhi.io", "Docker Hardened Images"),
    ("registry.redhat.io", "the Red Hat registry"),
    ("registry.access.redhat.com", "the Red Hat registry"),
    (
        "registry.connect.redhat.com",
        "the Red Hat partner registry",
    ),
    ("icr.io", "IBM Cloud Container Registry"),
    ("*.icr.io", "IBM Cloud Container Registry"),
    ("container-registry.oracle.com", "the Oracle registry"),
    ("*.ocir.io", "Oracle Cloud Infrastructure Registry"),
    ("registry.suse.com", "the SUSE registry"),
];

/// The name of a registry ECR pull-through cache is known to have no upstream for.
pub fn uncacheable(host: &str) -> Option<&'static str> {
    UNCACHEABLE.iter().find_map(|(pattern, name)| {
        let matches = match pattern.strip_prefix('*') {
            Some(tail) => host.len() > tail.len() && host.ends_with(tail),
            None => host == *pattern,
        };
        matches.then_some(*name)
    })
}

/// What ECR needs to cache an unmapped registry: its upstream type, whether the rule needs a
/// credential, and the line to add under `registries:`. `None` when ECR cannot cache it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suggestion {
    /// ECR `upstreamRegistry`.
    pub upstream: &'static str,
    /// Whether the rule needs a Secrets Manager credential.
    pub needs_credentials: bool,
    /// `host: prefix`, for the `registries:` map.
    pub map_line: String,
}

/// How `host`, which the map of `config` lacks, could be cached.
pub fn suggestion(config: &Config, host: &str) -> Option<Suggestion> {
    let kind = upstream_type(host)?;
    let base = DEFAULT_REGISTRIES
        .iter()
        .find(|(h, _)| *h == host)
        .map_or_else(|| prefix_for(kind.name, host), |(_, p)| (*p).to_owned());
    // A prefix belongs to one rule: one already in use gets a number.
    let taken = |p: &str| config.registries.values().any(|m| m.ecr_prefix() == p);
    let mut prefix = base.clone();
    let mut n = 2;
    while taken(&prefix) {
        prefix = format!("{base}-{n}");
        n += 1;
    }
    Some(Suggestion {
        upstream: kind.name,
        needs_credentials: kind.needs_credentials,
        map_line: format!("{host}: {prefix}"),
    })
}

/// A prefix for an upstream type ECR's examples have none for.
fn prefix_for(upstream: &str, host: &str) -> String {
    let name = match upstream {
        "azure-container-registry" => {
            // One rule per Azure registry: the prefix carries the registry's own name.
            let label: String = host
                .split('.')
                .next()
                .unwrap_or_default()
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .map(|c| c.to_ascii_lowercase())
                .take(24)
                .collect();
            if label.is_empty() {
                "azure".to_owned()
            } else {
                format!("azure-{label}")
            }
        }
        "github-container-registry" => "github".to_owned(),
        "gitlab-container-registry" => "gitlab".to_owned(),
        other => other.to_owned(),
    };
    name.chars().take(30).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;

    #[test]
    fn registries_without_an_upstream_are_named() {
        for (host, name) in [
            ("gcr.io", "Google Container Registry"),
            ("eu.gcr.io", "Google Container Registry"),
            ("europe-west1-docker.pkg.dev", "Google Artifact Registry"),
            ("mcr.microsoft.com", "Microsoft Artifact Registry"),
            ("nvcr.io", "NVIDIA NGC"),
            ("docker.elastic.co", "Elastic's registry"),
            ("dhi.io", "Docker Hardened Images"),
            ("registry.redhat.io", "the Red Hat registry"),
        ] {
            assert_eq!(uncacheable(host), Some(name), "{host}");
        }
        assert!(uncacheable("k8s.gcr.io").is_some_and(|n| n.contains("registry.k8s.io")));
        for host in ["docker.io", "quay.io", "pkg.dev", "cgr.dev", "notgcr.io"] {
            assert_eq!(uncacheable(host), None, "{host}");
        }
    }

    #[test]
    fn a_registry_ecr_can_cache_gets_its_upstream_type_and_map_line() {
        let config = Config::load(
            "registries:\n  docker.io: docker-hub\n  quay.io: chainguard\n",
            &Overrides::default(),
        )
        .unwrap();
        let ghcr = suggestion(&config, "ghcr.io").unwrap();
        assert_eq!(ghcr.upstream, "github-container-registry");
        assert!(ghcr.needs_credentials);
        assert_eq!(ghcr.map_line, "ghcr.io: github");
        assert_eq!(
            suggestion(&config, "registry.k8s.io").unwrap().map_line,
            "registry.k8s.io: k8s"
        );
        // quay.io already holds the chainguard prefix.
        assert_eq!(
            suggestion(&config, "cgr.dev").unwrap().map_line,
            "cgr.dev: chainguard-2"
        );
        let acr = suggestion(&config, "myteam.azurecr.io").unwrap();
        assert_eq!(acr.upstream, "azure-container-registry");
        assert_eq!(acr.map_line, "myteam.azurecr.io: azure-myteam");
        assert_eq!(suggestion(&config, "mcr.microsoft.com"), None);
        assert_eq!(suggestion(&config, "registry.example.com"), None);
    }
}
