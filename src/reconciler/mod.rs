//! The reconciler: tells people, through Kubernetes Events, what its checks find about the Pods of opted-in namespaces.
//!
//! This module is the pure part: what the reconciler keeps of a Pod ([`PodRecord`]), the checks
//! that turn a Pod into [`notice::Notice`]s ([`CHECKS`]), and the Event layer that groups them by
//! workload and decides what to publish ([`plan::Tracker`]). The watchers, the Lease and the
//! Events API live in [`run`] and [`writer`].

#[cfg(test)]
mod fixtures;
pub mod plan;
pub mod rate;
pub mod rule_check;
pub mod run;
pub mod standing;
pub mod writer;

use crate::config::Config;
use crate::rules::RuleSnapshot;

pub use crate::notice::{self, ACTION, NOTE_MAX_LEN, Severity, bounded};
pub use crate::pod::{ContainerImage, Containers, Interner, PodRecord};
pub use plan::{PodRef, Publish, Target, Tracker, WorkloadRef};
pub use rule_check::{Cause, Finding, findings, pod_note};

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

/// One check of the reconciler: a pure function from what it knows to notices about one Pod.
/// Adding a check is one line in [`CHECKS`].
pub struct Check {
    /// Short name, for logs.
    pub name: &'static str,
    /// Every reason its notices carry. While the check cannot judge, Events with these reasons
    /// are neither re-sent nor resolved; after a takeover, listed Events with these reasons are
    /// taken as standing.
    pub reasons: &'static [&'static str],
    /// Every reason of the resolutions its notices carry.
    pub resolutions: &'static [&'static str],
    /// Whether the check can judge now (its inputs are known).
    pub ready: fn(&World<'_>) -> bool,
    /// The notices about one Pod.
    pub run: fn(&World<'_>, &PodRecord) -> Vec<notice::Notice>,
}

/// The checks the reconciler runs over every Pod in scope.
pub const CHECKS: &[Check] = &[
    Check {
        name: "rules",
        reasons: rule_check::REASONS,
        resolutions: &[REASON_RESTORED],
        ready: rule_check::ready,
        run: rule_check::notices,
    },
    Check {
        name: "bypass",
        reasons: &[crate::audit::REASON_BYPASS],
        resolutions: &[],
        ready: |w| w.rules.is_known(),
        run: |w, p| crate::audit::notices(w.config, w.rules, w.audit, p),
    },
    Check {
        name: "pulls",
        reasons: &[crate::pullfail::REASON_PULL_FAILING],
        resolutions: &[crate::pullfail::REASON_PULL_RECOVERED],
        ready: |_| true,
        run: |w, p| crate::pullfail::notices(w.config, w.rules, p),
    },
    Check {
        name: "digests",
        reasons: &[crate::warm::REASON_DIGEST_UNAVAILABLE],
        resolutions: &[],
        ready: |_| true,
        run: |w, p| crate::warm::notices(w.unavailable, p),
    },
];

/// The Pods in scope and what is known of the rules, as of one reconcile.
pub struct World<'a> {
    /// The configuration in force.
    pub config: &'a Config,
    /// The rule snapshot.
    pub rules: &'a RuleSnapshot,
    /// The Pods of opted-in namespaces.
    pub pods: &'a [&'a PodRecord],
    /// What is known of namespace opt-in and rule history, for the bypass check.
    pub audit: &'a crate::audit::Facts,
    /// Pinned digests the cache cannot have (their tag moved upstream), from warming.
    pub unavailable: &'a crate::warm::Unavailable,
}
