//! What the checks read, as of one reconcile: the configuration, the rules, the Pods in scope and the facts of each check.

use crate::config::Config;
use crate::pod::PodRecord;
use crate::rules::RuleSnapshot;

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
