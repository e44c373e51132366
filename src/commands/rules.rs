//! `pullthrough rules`: the rules the map needs, their live status, and the commands or code that create them.

use std::fmt::Write as _;
use std::io::Write as _;

use anyhow::{Context as _, bail};

use crate::cli::RulesArgs;
use crate::ecr::AwsEcr;
use crate::refresh;
use crate::rules::{self, RuleState};

/// Runs `rules`: prints the rules the map needs, their status with `--check`, and the commands
/// that create the missing ones. Returns whether every needed rule is usable (always true
/// without `--check`).
pub async fn run_rules(args: &RulesArgs) -> anyhow::Result<bool> {
    let (config, _) = args.config.load()?;
    if let Some(code) = crate::iac::render(&config, args.output) {
        if args.check {
            bail!("--check reads ECR and prints AWS CLI commands: use it without -o");
        }
        std::io::stdout()
            .write_all(code.as_bytes())
            .context("cannot write to standard output")?;
        return Ok(true);
    }
    let mut templates = None;
    let snapshot = if args.check {
        let ecr = AwsEcr::from_env(&config.region, Some(config.account_id.clone())).await;
        templates = Some(crate::cache::run::read_templates(&ecr).await);
        Some(
            refresh::fetch(&ecr, &config)
                .await
                .context("cannot read the pull-through cache rules from ECR")?,
        )
    } else {
        None
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Pull-through cache rules for {} (account {}, region {}):\n",
        config.registry_host, config.account_id, config.region
    );
    let mut rows = vec![[
        "REGISTRY".to_owned(),
        "ALIASES".to_owned(),
        "PREFIX".to_owned(),
        "UPSTREAM URL".to_owned(),
        "UPSTREAM REGISTRY".to_owned(),
        "CREDENTIALS".to_owned(),
        "STATUS".to_owned(),
    ]];
    let mut to_create = Vec::new();
    for m in config.registries.values() {
        let state = snapshot.as_ref().and_then(|s| s.state(&m.registry));
        let status = match state {
            Some(s) => s.to_string(),
            None => "not checked".to_owned(),
        };
        if state.is_none_or(|s| *s == RuleState::Missing) {
            to_create.push(m);
        }
        rows.push([
            m.registry.clone(),
            if m.aliases.is_empty() {
                "-".to_owned()
            } else {
                m.aliases.join(",")
            },
            m.ecr_prefix().to_owned(),
            m.upstream_url.clone(),
            m.upstream_registry.clone(),
            if m.needs_credentials {
                "Secrets Manager"
            } else {
                "none"
            }
            .to_owned(),
            status,
        ]);
    }
    out.push_str(&align(&rows));
    let usable = snapshot
        .as_ref()
        .is_none_or(|s| s.iter().all(|(_, state)| state.is_usable()));
    if !to_create.is_empty() {
        let _ = writeln!(
            out,
            "\n{}:\n",
            if args.check {
                "Create the missing rules"
            } else {
                "Commands that create them"
            }
        );
        for m in to_create {
            if let Some(secret) = rules::secret_command(&config, m) {
                let _ = writeln!(
                    out,
                    "# {}: store a read-only access token in Secrets Manager first\n{secret}",
                    m.registry
                );
            }
            let _ = writeln!(out, "{}\n", rules::create_command(&config, m));
        }
    }
    out.push_str(&crate::cache::template::render_section(
        &config,
        templates
            .as_ref()
            .map(|t| t.as_ref().map_err(ToString::to_string)),
    ));
    if let Some(s) = &snapshot {
        for (registry, state) in s.iter() {
            match state {
                RuleState::WrongUpstream { .. } => {
                    let _ = writeln!(
                        out,
                        "{registry}: the rule caches another upstream; delete it (aws ecr delete-pull-through-cache-rule) and create it again as above."
                    );
                }
                RuleState::CredentialsFailing { .. } => {
                    let _ = writeln!(
                        out,
                        "{registry}: update the rule's Secrets Manager secret with a valid username and accessToken (aws secretsmanager put-secret-value), then aws ecr validate-pull-through-cache-rule."
                    );
                }
                _ => {}
            }
        }
    }
    std::io::stdout()
        .write_all(out.as_bytes())
        .context("cannot write to standard output")?;
    Ok(usable)
}

fn align(rows: &[[String; 7]]) -> String {
    let mut widths = [0usize; 7];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(widths) {
            let _ = write!(line, "{cell:<w$}   ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
