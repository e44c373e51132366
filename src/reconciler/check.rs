//! The checks the reconciler runs over every Pod in scope, each a pure function from the [`World`] to notices; adding a check is one entry in [`CHECKS`].

use super::rule_check::{self, REASON_RESTORED};
use super::world::World;
use crate::notice::Notice;
use crate::pod::PodRecord;

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
    pub run: fn(&World<'_>, &PodRecord) -> Vec<Notice>,
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
