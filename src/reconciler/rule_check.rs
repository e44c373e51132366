//! The rule check: which images of a Pod depend on a pull-through cache rule that is missing or broken, as notices, and the summary on the reconciler's Deployment.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::world::World;
use crate::config::{Config, Mapping};
use crate::notice::{Notice, Resolution, Severity, bounded};
use crate::pod::PodRecord;
use crate::reference::Reference;
use crate::rewrite::{Decision, SkipReason, decide};
use crate::rules::{self, RuleSnapshot, RuleState};

/// Warning on a workload whose images need a rule that does not exist.
pub const REASON_MISSING: &str = "PullThroughCacheRuleMissing";
/// Warning on a workload whose images need a rule that caches another upstream.
pub const REASON_WRONG_UPSTREAM: &str = "PullThroughCacheRuleWrongUpstream";
/// Warning on a workload whose images need a rule whose upstream credentials fail validation.
pub const REASON_CREDENTIALS_FAILING: &str = "PullThroughCacheRuleCredentialsFailing";
/// Normal event on a workload once the rule it needed is usable again.
pub const REASON_RESTORED: &str = "PullThroughCacheRuleRestored";
/// Warning on the reconciler's Deployment: the rules that are not usable, with Pod counts.
pub const REASON_SUMMARY: &str = "PullThroughCacheRulesUnusable";
/// Normal event on the reconciler's Deployment once every rule is usable again.
pub const REASON_SUMMARY_READY: &str = "PullThroughCacheRulesReady";

/// Why a rule cannot be used; one Event reason each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cause {
    /// No rule has the prefix.
    Missing,
    /// The rule caches another upstream.
    WrongUpstream,
    /// The rule's upstream credentials fail validation.
    CredentialsFailing,
}

impl Cause {
    /// The cause of a rule state; `None` for a usable rule.
    pub fn of(state: &RuleState) -> Option<Self> {
        match state {
            RuleState::Present => None,
            RuleState::Missing => Some(Self::Missing),
            RuleState::WrongUpstream { .. } => Some(Self::WrongUpstream),
            RuleState::CredentialsFailing { .. } => Some(Self::CredentialsFailing),
        }
    }

    /// The Event reason.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => REASON_MISSING,
            Self::WrongUpstream => REASON_WRONG_UPSTREAM,
            Self::CredentialsFailing => REASON_CREDENTIALS_FAILING,
        }
    }
}

/// One image that depends on an unusable rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Container name.
    pub container: String,
    /// The image the Pod runs.
    pub image: String,
    /// The image before the webhook rewrote it, when it was.
    pub original: Option<String>,
    /// Whether the image points at the cache (and so cannot be pulled), rather than being
    /// left on its upstream by the webhook.
    pub rewritten: bool,
    /// The mapped registry.
    pub registry: String,
    /// The ECR repository prefix of the rule.
    pub prefix: String,
    /// What is wrong with the rule.
    pub state: RuleState,
}

/// The images of `pod` that depend on a rule that `rules` knows to be unusable, grouped by
/// cause. Images already in the cache are checked whatever the Pod's exclusions say (they
/// cannot be pulled); images on their upstream only when the webhook would have rewritten
/// them but for the rule.
pub fn findings(
    config: &Config,
    rules: &RuleSnapshot,
    pod: &PodRecord,
) -> BTreeMap<Cause, Vec<Finding>> {
    let mut out: BTreeMap<Cause, Vec<Finding>> = BTreeMap::new();
    let exempt = pod.exempt(config);
    for c in &pod.containers {
        let Ok(reference) = Reference::parse(&c.image) else {
            continue;
        };
        let (mapping, rewritten) = if config.is_own_registry(reference.registry()) {
            (config.mapping_of_cached(reference.repository()), true)
        } else if exempt {
            (None, false)
        } else {
            let verdict = decide(config, rules, &c.image);
            match verdict.decision {
                Decision::Skip(SkipReason::RuleUnusable { .. }) => (verdict.mapping, false),
                _ => (None, false),
            }
        };
        let Some(mapping) = mapping else { continue };
        let Some(state) = rules.state(&mapping.registry) else {
            continue;
        };
        let Some(cause) = Cause::of(state) else {
            continue;
        };
        out.entry(cause).or_default().push(Finding {
            container: c.container.clone(),
            image: c.image.clone(),
            original: c.original.clone(),
            rewritten,
            registry: mapping.registry.clone(),
            prefix: mapping.ecr_prefix().to_owned(),
            state: state.clone(),
        });
    }
    out
}

/// The fix for an unusable rule, in one sentence with the command.
fn fix(config: &Config, mapping: Option<&Mapping>, state: &RuleState) -> String {
    let Some(mapping) = mapping else {
        return "Run `pullthrough rules --check` for the fix.".to_owned();
    };
    match state {
        RuleState::Present => String::new(),
        RuleState::Missing => {
            let secret = if mapping.needs_credentials {
                format!(
                    " after storing the upstream credentials in Secrets Manager as {}",
                    rules::secret_name(mapping)
                )
            } else {
                String::new()
            };
            format!(
                "Create it{secret}: {}",
                rules::create_command(config, mapping)
            )
        }
        RuleState::WrongUpstream { .. } => format!(
            "Delete it (aws ecr delete-pull-through-cache-rule --region {} --ecr-repository-prefix {}) and create it again: {}",
            config.region,
            mapping.ecr_prefix(),
            rules::create_command(config, mapping)
        ),
        RuleState::CredentialsFailing { .. } => format!(
            "Put a valid username and accessToken in the secret {} (aws secretsmanager put-secret-value), then run aws ecr validate-pull-through-cache-rule --region {} --ecr-repository-prefix {}.",
            rules::secret_name(mapping),
            config.region,
            mapping.ecr_prefix()
        ),
    }
}

fn describe_rule(config: &Config, f: &Finding) -> String {
    let what = match &f.state {
        RuleState::Present => "is present".to_owned(),
        RuleState::Missing => "does not exist".to_owned(),
        RuleState::WrongUpstream { actual } => format!("caches {actual}, not {}", f.registry),
        RuleState::CredentialsFailing { failure } => {
            format!("fails validation of its upstream credentials ({failure})")
        }
    };
    format!(
        "The ECR pull-through cache rule {} for {} {what} in account {}, region {}.",
        f.prefix, f.registry, config.account_id, config.region
    )
}

/// The note of a Pod's Warning for one cause: each rule, each image, and the fix.
pub fn pod_note(config: &Config, found: &[Finding]) -> String {
    let mut note = String::new();
    let mut by_rule: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
    for f in found {
        by_rule.entry(f.prefix.as_str()).or_default().push(f);
    }
    for images in by_rule.values() {
        let first = images[0];
        if !note.is_empty() {
            note.push(' ');
        }
        note.push_str(&describe_rule(config, first));
        for f in images {
            if f.rewritten {
                let _ = write!(note, " Container {} cannot pull {}", f.container, f.image);
                if let Some(original) = &f.original {
                    let _ = write!(note, " (rewritten from {original})");
                }
                note.push('.');
            } else {
                let _ = write!(
                    note,
                    " Container {} pulls {} from its upstream, not through the cache.",
                    f.container, f.image
                );
            }
        }
        let _ = write!(
            note,
            " {}",
            fix(config, config.mapping(&first.registry), &first.state)
        );
    }
    bounded(note)
}

/// What one rule check says about a Pod: one notice per unusable rule its images depend on.
/// The cause is the registry, so that a workload gets one Event per broken rule; the message
/// names the rule and the fix, the detail this Pod's containers and images.
pub fn notices(world: &World<'_>, pod: &PodRecord) -> Vec<Notice> {
    let config = world.config;
    let mut by_registry: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
    let found = findings(config, world.rules, pod);
    for f in found.values().flatten() {
        by_registry.entry(f.registry.as_str()).or_default().push(f);
    }
    let mut out = Vec::with_capacity(by_registry.len());
    for (registry, images) in by_registry {
        let first = images[0];
        let Some(cause) = Cause::of(&first.state) else {
            continue;
        };
        let mut detail = String::new();
        for f in &images {
            if !detail.is_empty() {
                detail.push(' ');
            }
            container_line(&mut detail, f);
        }
        out.push(Notice {
            reason: cause.reason(),
            severity: Severity::Warning,
            cause: registry.to_owned(),
            message: format!(
                "{} {}",
                describe_rule(config, first),
                fix(config, config.mapping(registry), &first.state)
            ),
            detail,
            resolution: Some(Resolution {
                reason: REASON_RESTORED,
                note: bounded(format!(
                    "The ECR pull-through cache rule for {registry} is usable again in account {}, region {}; these images can be pulled through the cache.",
                    config.account_id, config.region
                )),
            }),
        });
    }
    out
}

/// Whether the rule check can judge: nothing is said, and nothing resolved, while the rules
/// are unknown (before the first read of ECR, or after reads failed for too long).
pub fn ready(world: &World<'_>) -> bool {
    world.rules.is_known()
}

/// Every reason the rule check gives its notices.
pub const REASONS: &[&str] = &[
    REASON_MISSING,
    REASON_WRONG_UPSTREAM,
    REASON_CREDENTIALS_FAILING,
];

fn container_line(out: &mut String, f: &Finding) {
    if f.rewritten {
        let _ = write!(out, "Container {} cannot pull {}", f.container, f.image);
        if let Some(original) = &f.original {
            let _ = write!(out, " (rewritten from {original})");
        }
        out.push('.');
    } else {
        let _ = write!(
            out,
            "Container {} pulls {} from its upstream, not through the cache.",
            f.container, f.image
        );
    }
}

/// The note of the Normal summary, once every rule is usable.
pub fn ready_note(config: &Config) -> String {
    format!(
        "Every pull-through cache rule the map needs is usable in account {}, region {}.",
        config.account_id, config.region
    )
}

/// The summary on the reconciler's Deployment: the Warning listing every unusable rule with how
/// many Pods depend on it, or the Normal Event once all are usable. `None` when the rules are
/// unknown. `pods_per_registry` counts the Pods with a rule notice, by registry.
pub fn summary(
    config: &Config,
    rules: &RuleSnapshot,
    pods_per_registry: &BTreeMap<String, usize>,
) -> Option<(Severity, &'static str, String)> {
    if !rules.is_known() {
        return None;
    }
    let unusable: Vec<(&str, &RuleState)> = rules.iter().filter(|(_, s)| !s.is_usable()).collect();
    if unusable.is_empty() {
        return Some((Severity::Normal, REASON_SUMMARY_READY, ready_note(config)));
    }
    let mut note = format!(
        "{} of {} pull-through cache rules the map needs are not usable in account {}, region {}:",
        unusable.len(),
        rules.iter().count(),
        config.account_id,
        config.region
    );
    for (i, (registry, state)) in unusable.iter().enumerate() {
        let prefix = config.mapping(registry).map_or("?", Mapping::ecr_prefix);
        let pods = pods_per_registry.get(*registry).copied().unwrap_or(0);
        let _ = write!(
            note,
            "{} {prefix} ({registry}) {state}, {pods} Pod{}",
            if i == 0 { "" } else { ";" },
            if pods == 1 { "" } else { "s" }
        );
    }
    note.push_str(". Run `pullthrough rules --check` for the commands that fix them.");
    Some((Severity::Warning, REASON_SUMMARY, bounded(note)))
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconciler::fixtures::{CACHE, config, record, rule, snapshot};

    #[test]
    fn findings_cover_cached_images_and_upstream_images_left_alone() {
        let c = config();
        let rules = snapshot(&[rule("quay", "quay.io"), rule("github/mirror", "ghcr.io")]);
        let pod = record(
            "u",
            &[
                &format!("{CACHE}/docker-hub/library/nginx:1.27"),
                "redis:7",
                &format!("{CACHE}/quay/org/app:1"),
                &format!("{CACHE}/github/mirror/org/tool:2"),
                "registry.example.com/x:1",
                "NOT A REFERENCE",
            ],
        );
        let found = findings(&c, &rules, &pod);
        assert_eq!(found.len(), 1);
        let missing = &found[&Cause::Missing];
        assert_eq!(missing.len(), 2);
        assert!(missing[0].rewritten);
        assert_eq!(missing[0].prefix, "docker-hub");
        assert!(!missing[1].rewritten);
        assert_eq!(missing[1].image, "redis:7");
    }

    #[test]
    fn the_longest_prefix_names_the_rule() {
        let c = config();
        let rules = snapshot(&[
            rule("docker-hub", "registry-1.docker.io"),
            rule("quay", "quay.io"),
        ]);
        // github/mirror is missing; an image under it must not be taken for another prefix.
        let pod = record("u", &[&format!("{CACHE}/github/mirror/org/tool:2")]);
        let found = findings(&c, &rules, &pod);
        assert_eq!(found[&Cause::Missing][0].registry, "ghcr.io");
    }

    #[test]
    fn excluded_pods_are_checked_only_for_images_already_in_the_cache() {
        let c = config();
        let rules = snapshot(&[]);
        let pod = record(
            "u",
            &["redis:7", &format!("{CACHE}/docker-hub/library/redis:7")],
        )
        .labelled("app", "postgres");
        let found = findings(&c, &rules, &pod);
        assert_eq!(found[&Cause::Missing].len(), 1);
        assert!(found[&Cause::Missing][0].rewritten);
        let owned = record("v", &["redis:7"]).owned_by("Cluster", "db");
        assert!(findings(&c, &rules, &owned).is_empty());
        let mut opted = record("w", &["redis:7"]);
        opted.opted_out = true;
        assert!(findings(&c, &rules, &opted).is_empty());
    }

    #[test]
    fn notes_name_rule_image_account_region_and_fix() {
        let c = config();
        let rules = snapshot(&[]);
        let pod = record("u", &[&format!("{CACHE}/docker-hub/library/nginx:1.27")])
            .rewritten_from(0, "nginx:1.27");
        let found = findings(&c, &rules, &pod);
        let note = pod_note(&c, &found[&Cause::Missing]);
        assert!(note.starts_with("The ECR pull-through cache rule docker-hub for docker.io does not exist in account 123456789012, region eu-west-1."), "{note}");
        assert!(note.contains("Container c0 cannot pull 123456789012.dkr.ecr.eu-west-1.amazonaws.com/docker-hub/library/nginx:1.27 (rewritten from nginx:1.27)."));
        assert!(note.contains("ecr-pullthroughcache/docker-hub"));
        assert!(note.contains("aws ecr create-pull-through-cache-rule --region eu-west-1"));

        let wrong = snapshot(&[rule("quay", "quay.example.com")]);
        let pod = record("v", &["quay.io/org/app:1"]);
        let found = findings(&c, &wrong, &pod);
        let note = pod_note(&c, &found[&Cause::WrongUpstream]);
        assert!(
            note.contains("caches quay.example.com, not quay.io"),
            "{note}"
        );
        assert!(note.contains("pulls quay.io/org/app:1 from its upstream"));
        assert!(note.contains("delete-pull-through-cache-rule"));
    }

    #[test]
    fn notices_are_one_per_broken_rule_with_the_fix_in_the_message_and_images_in_the_detail() {
        let c = config();
        let rules = snapshot(&[rule("quay", "quay.example.com")]);
        let pod = record(
            "u",
            &[
                &format!("{CACHE}/docker-hub/library/nginx:1.27"),
                "redis:7",
                "quay.io/org/app:1",
            ],
        )
        .rewritten_from(0, "nginx:1.27");
        let pods = [&pod];
        let world = World {
            config: &c,
            rules: &rules,
            pods: &pods,
            audit: &crate::audit::NO_FACTS,
            unavailable: &crate::warm::NO_UNAVAILABLE,
        };
        let found = notices(&world, &pod);
        assert_eq!(found.len(), 2, "{found:#?}");
        let missing = &found[0];
        assert_eq!(missing.reason, REASON_MISSING);
        assert_eq!(missing.cause, "docker.io");
        assert!(missing.message.starts_with(
            "The ECR pull-through cache rule docker-hub for docker.io does not exist"
        ));
        assert!(
            missing
                .message
                .contains("aws ecr create-pull-through-cache-rule")
        );
        assert!(
            !missing.message.contains("nginx"),
            "the message is the workload's"
        );
        assert_eq!(
            missing.detail,
            format!(
                "Container c0 cannot pull {CACHE}/docker-hub/library/nginx:1.27 (rewritten from nginx:1.27). Container c1 pulls redis:7 from its upstream, not through the cache."
            )
        );
        let restored = missing.resolution.as_ref().unwrap();
        assert_eq!(restored.reason, REASON_RESTORED);
        assert!(restored.note.contains("docker.io is usable again"));
        assert_eq!(found[1].reason, REASON_WRONG_UPSTREAM);
        assert_eq!(found[1].cause, "quay.io");

        let unknown = RuleSnapshot::unknown();
        assert!(!ready(&World {
            rules: &unknown,
            ..world
        }));
    }

    #[test]
    fn the_summary_counts_pods_per_broken_rule_and_says_when_all_are_usable() {
        let c = config();
        let per_registry = BTreeMap::from([("docker.io".to_owned(), 3)]);
        let (severity, reason, note) =
            summary(&c, &snapshot(&[rule("quay", "quay.io")]), &per_registry).unwrap();
        assert_eq!((severity, reason), (Severity::Warning, REASON_SUMMARY));
        assert!(
            note.contains("docker-hub (docker.io) missing, 3 Pods;"),
            "{note}"
        );
        assert!(
            note.contains("github/mirror (ghcr.io) missing, 0 Pods"),
            "{note}"
        );
        let rules = crate::reconciler::fixtures::all_present();
        let (severity, reason, _) = summary(&c, &rules, &per_registry).unwrap();
        assert_eq!((severity, reason), (Severity::Normal, REASON_SUMMARY_READY));
        assert!(summary(&c, &RuleSnapshot::unknown(), &per_registry).is_none());
    }
}
