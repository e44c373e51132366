//! `pullthrough policy`: prints the MutatingAdmissionPolicy and its binding for the current
//! configuration, from the rule status in ECR with `--check`.

use std::io::Write as _;

use anyhow::Context as _;
use clap::{Args, ValueEnum};

use serde_json::json;

use super::{DEFAULT_MAX_DIGESTS, DEFAULT_NAME, FailurePolicy, Options, Plan, plan};
use crate::args::ConfigArgs;
use crate::digests::DigestSnapshot;
use crate::ecr::AwsEcr;
use crate::refresh;
use crate::rules::RuleSnapshot;

/// Output format of `pullthrough policy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum PolicyOutput {
    /// The objects as YAML documents, for `kubectl apply -f -` or a GitOps repository.
    #[default]
    Yaml,
    /// A `v1` `List` of the objects.
    Json,
}

/// `pullthrough policy`.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = PolicyOutput::Yaml)]
    pub output: PolicyOutput,
    /// Read the rules from ECR, so that only registries whose rule is usable are rewritten
    /// (without it, `ruleCheck.whenUnknown` decides, as in the webhook before its first read).
    #[arg(long)]
    pub check: bool,
    /// Label selector of the opted-in namespaces.
    #[arg(
        long,
        env = "PULLTHROUGH_NAMESPACE_SELECTOR",
        default_value = "pullthrough.dev/enabled=true"
    )]
    pub namespace_selector: String,
    /// pullthrough's own namespace, never rewritten (nor is kube-system).
    #[arg(long, env = "POD_NAMESPACE", default_value = "pullthrough")]
    pub release_namespace: String,
    /// What the API server does when the policy cannot be evaluated.
    #[arg(long, value_enum, default_value_t = FailurePolicy::Ignore)]
    pub failure_policy: FailurePolicy,
    /// Name of the policy and its binding.
    #[arg(long, default_value = DEFAULT_NAME)]
    pub name: String,
    /// Most confirmed digests the policy carries.
    #[arg(long, default_value_t = DEFAULT_MAX_DIGESTS)]
    pub max_digests: usize,
}

impl PolicyArgs {
    /// The planning options these flags give.
    pub fn options(&self) -> Options {
        Options {
            name: self.name.clone(),
            namespace_selector: self.namespace_selector.clone(),
            excluded_namespaces: vec![self.release_namespace.clone()],
            failure_policy: self.failure_policy,
            max_digests: self.max_digests,
        }
    }
}

/// Runs `policy`.
pub async fn run(args: &PolicyArgs) -> anyhow::Result<bool> {
    let (config, _) = args.config.load()?;
    let rules = if args.check {
        let ecr = AwsEcr::from_env(&config.region, Some(config.account_id.clone())).await;
        refresh::fetch(&ecr, &config)
            .await
            .context("cannot read the pull-through cache rules from ECR")?
    } else {
        RuleSnapshot::unknown()
    };
    let planned = plan(&config, &rules, &DigestSnapshot::EMPTY, &args.options())?;
    if planned.registries.is_empty() {
        eprintln!("pullthrough: the policy rewrites no registry: no rule is usable");
    }
    let text = render(&planned, args.output)?;
    std::io::stdout()
        .write_all(text.as_bytes())
        .context("cannot write to standard output")?;
    Ok(true)
}

/// The objects as text: YAML documents, or a JSON `List`.
pub fn render(plan: &Plan, output: PolicyOutput) -> Result<String, serde_json::Error> {
    let objects = [&plan.policy, &plan.binding];
    match output {
        PolicyOutput::Json => {
            let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
            let mut text = serde_json::to_string_pretty(&list)?;
            text.push('\n');
            Ok(text)
        }
        PolicyOutput::Yaml => {
            let mut text = String::new();
            for object in objects {
                text.push_str("---\n");
                text.push_str(
                    &serde_yaml_ng::to_string(object).map_err(serde::ser::Error::custom)?,
                );
            }
            Ok(text)
        }
    }
}
