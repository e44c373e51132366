//! Repository creation templates: whether one gives a rule's cache repositories their
//! settings (lifecycle policy above all), and the template pullthrough proposes. Pure.
//!
//! ECR applies a template only when it creates a repository, so a rule without one fills its
//! prefix with repositories that are mutable, untagged and never expire.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::config::Lifecycle;
use crate::config::{Config, Mapping};
use crate::ecr::CreationTemplate;

/// `appliedFor` value of templates that shape pull-through cache repositories.
pub const PULL_THROUGH_CACHE: &str = "PULL_THROUGH_CACHE";
/// The template prefix that matches every repository no other template matches.
pub const ROOT: &str = "ROOT";
/// Resource tag key that marks a repository as part of pullthrough's cache; its value is the
/// rule's ECR prefix.
pub const CACHE_TAG_KEY: &str = "pullthrough.dev/cache";

/// What the templates say about one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coverage {
    /// A template with this prefix shapes the rule's repositories.
    Covered {
        /// The template's prefix (the rule's own, a shorter one, or `ROOT`).
        template: String,
        /// Whether the template carries a lifecycle policy.
        lifecycle: bool,
    },
    /// No template applies: new repositories never expire.
    Missing,
}

impl Coverage {
    /// A short, bounded description for tables.
    pub fn describe(&self) -> String {
        match self {
            Self::Covered {
                template,
                lifecycle: true,
            } => format!("template {template}, lifecycle policy"),
            Self::Covered {
                template,
                lifecycle: false,
            } => format!("template {template}, no lifecycle policy"),
            Self::Missing => "no template".to_owned(),
        }
    }

    /// Whether a template applies.
    pub fn is_present(&self) -> bool {
        matches!(self, Self::Covered { .. })
    }
}

/// The template ECR applies to the repositories a mapping's rule creates: among those applied
/// to pull-through cache repositories, the one with the longest prefix that the rule's prefix
/// equals or sits under, else `ROOT`.
pub fn template_for<'t>(
    mapping: &Mapping,
    templates: &'t [CreationTemplate],
) -> Option<&'t CreationTemplate> {
    let for_cache = || {
        templates
            .iter()
            .filter(|t| t.applied_for.iter().any(|a| a == PULL_THROUGH_CACHE))
    };
    let rule = mapping.prefix.as_deref();
    let specific = for_cache()
        .filter(|t| {
            let prefix = t.prefix.trim_end_matches('/');
            prefix != ROOT
                && rule.is_some_and(|r| {
                    r == prefix
                        || r.strip_prefix(prefix)
                            .is_some_and(|rest| rest.starts_with('/'))
                })
        })
        .max_by_key(|t| t.prefix.len());
    specific.or_else(|| for_cache().find(|t| t.prefix == ROOT))
}

/// Whether a template covers the mapping's rule, and with a lifecycle policy.
pub fn coverage(mapping: &Mapping, templates: &[CreationTemplate]) -> Coverage {
    match template_for(mapping, templates) {
        Some(t) => Coverage::Covered {
            template: t.prefix.clone(),
            lifecycle: t.lifecycle_policy.is_some(),
        },
        None => Coverage::Missing,
    }
}

/// The lifecycle policy pullthrough proposes: expire images not pulled for N days (tagged
/// and untagged alike), then keep at most M images per repository. `None` when both are off.
///
/// ECR evaluates a `tagStatus: any` rule last and allows it only at the highest priority, so
/// the age rules select tagged (every tag) and untagged images apart.
pub fn lifecycle_policy(lifecycle: &Lifecycle) -> Option<Value> {
    let mut rules = Vec::new();
    if let Some(days) = lifecycle.expire_unpulled_after_days {
        rules.push(json!({
            "rulePriority": 1,
            "description": format!("Expire tagged images not pulled for {days} days"),
            "selection": {
                "tagStatus": "tagged",
                "tagPatternList": ["*"],
                "countType": "sinceImagePulled",
                "countUnit": "days",
                "countNumber": days,
            },
            "action": { "type": "expire" },
        }));
        rules.push(json!({
            "rulePriority": 2,
            "description": format!("Expire untagged images not pulled for {days} days"),
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePulled",
                "countUnit": "days",
                "countNumber": days,
            },
            "action": { "type": "expire" },
        }));
    }
    if let Some(keep) = lifecycle.keep_images {
        rules.push(json!({
            "rulePriority": 10,
            "description": format!("Keep at most {keep} images per repository"),
            "selection": {
                "tagStatus": "any",
                "countType": "imageCountMoreThan",
                "countNumber": keep,
            },
            "action": { "type": "expire" },
        }));
    }
    (!rules.is_empty()).then(|| json!({ "rules": rules }))
}

/// [`lifecycle_policy`] as the compact text ECR stores.
pub fn lifecycle_policy_text(lifecycle: &Lifecycle) -> Option<String> {
    lifecycle_policy(lifecycle).map(|p| p.to_string())
}

/// The template's description.
pub fn description(mapping: &Mapping) -> String {
    format!("pullthrough cache of {}", mapping.registry)
}

/// The resource tags of the repositories the template creates.
pub fn resource_tags(mapping: &Mapping) -> Vec<(&'static str, String)> {
    vec![(CACHE_TAG_KEY, mapping.ecr_prefix().to_owned())]
}

/// The shell assignment of `LIFECYCLE_POLICY`, which [`create_command`] reads; `None` when no
/// lifecycle policy is configured.
pub fn lifecycle_assignment(config: &Config) -> Option<String> {
    lifecycle_policy_text(&config.cache.lifecycle).map(|p| format!("LIFECYCLE_POLICY='{p}'"))
}

/// The `aws ecr create-repository-creation-template` command for a mapping's rule; the
/// lifecycle policy comes from the shell variable set by [`lifecycle_assignment`].
pub fn create_command(config: &Config, mapping: &Mapping) -> String {
    let mut cmd = format!(
        "aws ecr create-repository-creation-template --region {} --prefix {} --applied-for {PULL_THROUGH_CACHE} --image-tag-mutability MUTABLE --description '{}'",
        config.region,
        mapping.ecr_prefix(),
        description(mapping),
    );
    if lifecycle_policy(&config.cache.lifecycle).is_some() {
        cmd.push_str(" --lifecycle-policy \"$LIFECYCLE_POLICY\"");
    }
    for (key, value) in resource_tags(mapping) {
        let _ = write!(cmd, " --resource-tags Key={key},Value={value}");
    }
    cmd
}

/// A few words on the configured lifecycle policy.
pub fn describe_lifecycle(lifecycle: &Lifecycle) -> String {
    match (lifecycle.expire_unpulled_after_days, lifecycle.keep_images) {
        (Some(d), Some(n)) => {
            format!("expire images not pulled for {d} days, keep at most {n} per repository")
        }
        (Some(d), None) => format!("expire images not pulled for {d} days"),
        (None, Some(n)) => format!("keep at most {n} images per repository"),
        (None, None) => "no lifecycle policy (cache.lifecycle turns both rules off)".to_owned(),
    }
}

/// The creation-template part of `pullthrough rules`: with `templates` (from `--check`), each
/// rule's coverage and the commands for the rules without a template; without, the commands
/// for every rule. A missing template is advice, never a failure.
pub fn render_section(
    config: &Config,
    templates: Option<Result<&Vec<CreationTemplate>, String>>,
) -> String {
    let mut out = String::from(
        "\nRepository creation templates (ECR gives a cache repository its settings, lifecycle policy included, only when it creates it):\n\n",
    );
    let mut missing: Vec<&Mapping> = Vec::new();
    match templates {
        Some(Ok(templates)) => {
            let mut rows = vec![[
                "REGISTRY".to_owned(),
                "PREFIX".to_owned(),
                "TEMPLATE".to_owned(),
            ]];
            for m in config.registries.values() {
                let c = coverage(m, templates);
                if !c.is_present() {
                    missing.push(m);
                }
                rows.push([m.registry.clone(), m.ecr_prefix().to_owned(), c.describe()]);
            }
            let mut widths = [0usize; 3];
            for row in &rows {
                for (w, cell) in widths.iter_mut().zip(row) {
                    *w = (*w).max(cell.len());
                }
            }
            for row in &rows {
                let line = format!(
                    "{:<w0$}   {:<w1$}   {}",
                    row[0],
                    row[1],
                    row[2],
                    w0 = widths[0],
                    w1 = widths[1]
                );
                out.push_str(line.trim_end());
                out.push('\n');
            }
            if missing.is_empty() {
                return out;
            }
            out.push_str("\nWithout a template, new cache repositories are mutable, untagged and never expire. Create the missing templates");
        }
        Some(Err(e)) => {
            let _ = write!(
                out,
                "cannot read them ({e}); reading them needs ecr:DescribeRepositoryCreationTemplates.\n\nCommands that create them"
            );
            missing.extend(config.registries.values());
        }
        None => {
            out.push_str("Commands that create them");
            missing.extend(config.registries.values());
        }
    }
    let _ = write!(
        out,
        " ({}):\n\n",
        describe_lifecycle(&config.cache.lifecycle)
    );
    if let Some(assignment) = lifecycle_assignment(config) {
        out.push_str(&assignment);
        out.push_str("\n\n");
    }
    for m in missing {
        out.push_str(&create_command(config, m));
        out.push_str("\n\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;

    fn config(extra: &str) -> Config {
        Config::load(
            &format!(
                "accountId: \"123456789012\"\nregion: eu-west-1\nregistries:\n  docker.io: docker-hub\n  quay.io: quay\n  registry.k8s.io: k8s/upstream\n{extra}"
            ),
            &Overrides::default(),
        )
        .unwrap()
    }

    fn template(prefix: &str, applied_for: &[&str], lifecycle: bool) -> CreationTemplate {
        CreationTemplate {
            prefix: prefix.to_owned(),
            applied_for: applied_for.iter().map(|a| (*a).to_owned()).collect(),
            lifecycle_policy: lifecycle.then(|| "{\"rules\":[]}".to_owned()),
            ..CreationTemplate::default()
        }
    }

    #[test]
    fn the_most_specific_cache_template_applies() {
        let c = config("");
        let templates = [
            template("docker-hub", &[PULL_THROUGH_CACHE], true),
            template("quay", &["REPLICATION"], true),
            template("k8s", &[PULL_THROUGH_CACHE, "REPLICATION"], false),
            template("k8s/upstream", &[PULL_THROUGH_CACHE], true),
        ];
        let hub = c.mapping("docker.io").unwrap();
        assert_eq!(
            coverage(hub, &templates),
            Coverage::Covered {
                template: "docker-hub".into(),
                lifecycle: true
            }
        );
        // A replication template does not shape cache repositories.
        assert_eq!(
            coverage(c.mapping("quay.io").unwrap(), &templates),
            Coverage::Missing
        );
        assert_eq!(
            template_for(c.mapping("registry.k8s.io").unwrap(), &templates)
                .unwrap()
                .prefix,
            "k8s/upstream"
        );
    }

    #[test]
    fn a_shorter_prefix_covers_on_path_boundaries_only_and_root_covers_the_rest() {
        let c = config("");
        let templates = [
            template("k8s", &[PULL_THROUGH_CACHE], false),
            template("dock", &[PULL_THROUGH_CACHE], true),
        ];
        assert_eq!(
            coverage(c.mapping("registry.k8s.io").unwrap(), &templates),
            Coverage::Covered {
                template: "k8s".into(),
                lifecycle: false
            }
        );
        assert_eq!(
            coverage(c.mapping("docker.io").unwrap(), &templates),
            Coverage::Missing
        );
        let with_root = [template("ROOT", &[PULL_THROUGH_CACHE], true)];
        assert_eq!(
            coverage(c.mapping("docker.io").unwrap(), &with_root),
            Coverage::Covered {
                template: "ROOT".into(),
                lifecycle: true
            }
        );
    }

    #[test]
    fn the_default_lifecycle_expires_unpulled_images_and_caps_the_count() {
        let c = config("");
        let policy = lifecycle_policy(&c.cache.lifecycle).unwrap();
        let rules = policy["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[0]["selection"]["countType"], "sinceImagePulled");
        assert_eq!(rules[0]["selection"]["countNumber"], 90);
        assert_eq!(rules[0]["selection"]["tagStatus"], "tagged");
        assert_eq!(rules[1]["selection"]["tagStatus"], "untagged");
        // The `any` rule comes last, at the highest priority.
        assert_eq!(rules[2]["selection"]["tagStatus"], "any");
        assert_eq!(rules[2]["selection"]["countType"], "imageCountMoreThan");
        assert_eq!(rules[2]["selection"]["countNumber"], 10);
        let priorities: Vec<_> = rules.iter().map(|r| r["rulePriority"].as_u64()).collect();
        assert!(priorities.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn the_lifecycle_is_configurable_and_each_rule_can_be_left_out() {
        let c =
            config("cache:\n  lifecycle:\n    expireUnpulledAfterDays: 30\n    keepImages: 0\n");
        let policy = lifecycle_policy(&c.cache.lifecycle).unwrap();
        let rules = policy["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0]["selection"]["countNumber"], 30);
        let none =
            config("cache:\n  lifecycle:\n    expireUnpulledAfterDays: 0\n    keepImages: 0\n");
        assert_eq!(lifecycle_policy(&none.cache.lifecycle), None);
        assert!(
            !create_command(&none, none.mapping("quay.io").unwrap()).contains("--lifecycle-policy")
        );
    }

    #[test]
    fn the_rules_section_names_the_prefixes_without_a_template() {
        let c = config("");
        let templates = vec![template("docker-hub", &[PULL_THROUGH_CACHE], true)];
        let out = render_section(&c, Some(Ok(&templates)));
        let quay = out.lines().find(|l| l.starts_with("quay.io")).unwrap();
        assert!(quay.ends_with("no template"), "{quay}");
        let hub = out.lines().find(|l| l.starts_with("docker.io")).unwrap();
        assert!(
            hub.ends_with("template docker-hub, lifecycle policy"),
            "{hub}"
        );
        assert!(out.contains("--prefix quay "));
        assert!(out.contains("--prefix k8s/upstream "));
        assert!(!out.contains("--prefix docker-hub "));
        let all = vec![template("ROOT", &[PULL_THROUGH_CACHE], true)];
        assert!(!render_section(&c, Some(Ok(&all))).contains("aws ecr"));
        let unchecked = render_section(&c, None);
        assert_eq!(
            unchecked
                .matches("aws ecr create-repository-creation-template")
                .count(),
            3
        );
        let denied = render_section(&c, Some(Err("AccessDeniedException".into())));
        assert!(denied.contains("ecr:DescribeRepositoryCreationTemplates"));
    }

    #[test]
    fn the_command_names_prefix_cache_use_lifecycle_and_tag() {
        let c = config("");
        let cmd = create_command(&c, c.mapping("docker.io").unwrap());
        assert!(cmd.contains("--lifecycle-policy \"$LIFECYCLE_POLICY\""));
        let cmd = lifecycle_assignment(&c).unwrap() + "\n" + &cmd;
        assert!(cmd.contains("aws ecr create-repository-creation-template --region eu-west-1 --prefix docker-hub --applied-for PULL_THROUGH_CACHE"));
        assert!(cmd.starts_with("LIFECYCLE_POLICY='{"));
        assert!(cmd.contains("--image-tag-mutability MUTABLE"));
        assert!(cmd.contains("--resource-tags Key=pullthrough.dev/cache,Value=docker-hub"));
        let start = cmd.find("LIFECYCLE_POLICY='").unwrap() + "LIFECYCLE_POLICY='".len();
        let end = start + cmd[start..].find('\'').unwrap();
        let policy: Value = serde_json::from_str(&cmd[start..end]).unwrap();
        assert_eq!(policy, lifecycle_policy(&c.cache.lifecycle).unwrap());
    }
}
