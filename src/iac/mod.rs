//! The rules as code: what the map needs from ECR (pull-through cache rules, the Secrets
//! Manager secrets of credentialed upstreams, repository creation templates) as a Terraform
//! configuration, a Pulumi Python program or a CloudFormation template. Pure: each form is a
//! function from the configuration to text.
//!
//! The AWS CLI form stays in the `rules` command itself, which can also check what exists.

pub mod cloudformation;
pub mod pulumi;
pub mod resources;
pub mod terraform;

use clap::ValueEnum;

use crate::config::Config;

pub use resources::{
    Resource, SECRET_PLACEHOLDER, lifecycle_json, pascal, quoted, resources, snake,
};

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
