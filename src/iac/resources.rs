//! Everything one mapping needs from ECR, named for code, and the small text helpers every form of the rules as code shares.

use crate::cache::template;
use crate::config::{Config, Mapping};
use crate::rules;

/// The placeholder value of a credential secret, in the shape ECR reads.
pub const SECRET_PLACEHOLDER: &str =
    "{\"username\":\"<user>\",\"accessToken\":\"<read-only access token>\"}";

/// Everything one mapping needs, named for code.
#[derive(Debug, Clone)]
pub struct Resource<'c> {
    /// The mapping.
    pub mapping: &'c Mapping,
    /// A `snake_case` identifier unique within the output (`docker_hub`).
    pub ident: String,
    /// A `PascalCase` identifier unique within the output (`DockerHub`).
    pub logical: String,
    /// The credential secret's name, for credentialed upstreams.
    pub secret_name: Option<String>,
}

/// The resources of every mapping, in prefix order, with identifiers made unique.
pub fn resources(config: &Config) -> Vec<Resource<'_>> {
    let mut mappings: Vec<&Mapping> = config.registries.values().collect();
    mappings.sort_by(|a, b| a.ecr_prefix().cmp(b.ecr_prefix()));
    let mut out: Vec<Resource<'_>> = Vec::new();
    for m in mappings {
        let mut ident = snake(m.ecr_prefix());
        let mut logical = pascal(m.ecr_prefix());
        // `team-a` and `team/a` would meet; number the later one.
        let mut n = 2;
        while out.iter().any(|r| r.ident == ident || r.logical == logical) {
            ident = format!("{}_{n}", snake(m.ecr_prefix()));
            logical = format!("{}{n}", pascal(m.ecr_prefix()));
            n += 1;
        }
        out.push(Resource {
            mapping: m,
            ident,
            logical,
            secret_name: m.needs_credentials.then(|| rules::secret_name(m)),
        });
    }
    out
}

/// `docker-hub` -> `docker_hub`; identifiers never start with a digit.
pub fn snake(prefix: &str) -> String {
    let mut s: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if !s.starts_with(|c: char| c.is_ascii_alphabetic()) {
        s.insert_str(0, "p_");
    }
    s
}

/// `docker-hub` -> `DockerHub`, `k8s/upstream` -> `K8sUpstream`.
pub fn pascal(prefix: &str) -> String {
    let mut s: String = prefix
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| !p.is_empty())
        .map(|p| {
            let lower = p.to_ascii_lowercase();
            let mut chars = lower.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect();
    if !s.starts_with(|c: char| c.is_ascii_alphabetic()) {
        s.insert(0, 'P');
    }
    s
}

/// The lifecycle policy of the templates, pretty-printed, when one is configured.
pub fn lifecycle_json(config: &Config) -> Option<String> {
    template::lifecycle_policy(&config.cache.lifecycle)
        .and_then(|p| serde_json::to_string_pretty(&p).ok())
}

/// A string as a JSON string literal (also valid in Python and YAML).
pub fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}
