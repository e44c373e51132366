//! The rules as code: what the map needs from ECR (pull-through cache rules, the Secrets
//! Manager secrets of credentialed upstreams, repository creation templates) as a Terraform
//! configuration, a Pulumi Python program or a CloudFormation template. Pure: each form is a
//! function from the configuration to text.
//!
//! The AWS CLI form stays in the `rules` command itself, which can also check what exists.

pub mod cloudformation;
pub mod pulumi;
pub mod terraform;

use clap::ValueEnum;

use crate::cache::template;
use crate::config::{Config, Mapping};
use crate::rules;

/// Output of `pullthrough rules`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum RulesOutput {
    /// A table and the AWS CLI commands that create what is missing.
    #[default]
    Aws,
    /// A Terraform configuration (hashicorp/aws provider).
    Terraform,
    /// A Pulumi program in Python (pulumi_aws).
    Pulumi,
    /// A CloudFormation template (YAML).
    Cloudformation,
}

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

/// The code of one form.
pub fn render(config: &Config, output: RulesOutput) -> Option<String> {
    match output {
        RulesOutput::Aws => None,
        RulesOutput::Terraform => Some(terraform::render(config)),
        RulesOutput::Pulumi => Some(pulumi::render(config)),
        RulesOutput::Cloudformation => Some(cloudformation::render(config)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;

    #[test]
    fn identifiers_are_valid_and_unique() {
        assert_eq!(snake("docker-hub"), "docker_hub");
        assert_eq!(snake("k8s/upstream"), "k8s_upstream");
        assert_eq!(snake("ROOT"), "root");
        assert_eq!(snake("2fa"), "p_2fa");
        assert_eq!(pascal("docker-hub"), "DockerHub");
        assert_eq!(pascal("k8s/upstream"), "K8sUpstream");
        assert_eq!(pascal("ROOT"), "Root");
        assert_eq!(pascal("2fa"), "P2fa");
        let c = Config::load(
            "registries:\n  docker.io: team-a\n  quay.io: team/a\n",
            &Overrides::default(),
        )
        .unwrap();
        let r = resources(&c);
        assert_eq!(r.len(), 2);
        assert_ne!(r[0].ident, r[1].ident);
        assert_ne!(r[0].logical, r[1].logical);
    }
}
