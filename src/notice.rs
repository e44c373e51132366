//! What one check says about one Pod ([`Notice`]), before the reconciler groups notices into Events.
//!
//! Every check (rules, bypass, pull failures, fallback, pinned digests) is a pure function from
//! what the reconciler knows to [`Notice`]s about a Pod. The Event layer groups notices by the
//! Pod's top-level owner, reason and cause, publishes one Event per group at a bounded rate,
//! continues an existing Event's series on a repeat, and publishes the resolution when a cause
//! ends while its Pods still run. Checks never publish anything themselves.

/// Kind of Event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// Normal: something got better, or an action was taken as configured.
    Normal,
    /// Warning: something needs a person.
    Warning,
}

/// The Normal Event published on a workload when every notice of its group is gone while some
/// of its Pods still run (a rule came back, a pull recovered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// Event reason, for example `PullThroughCachePullRecovered`.
    pub reason: &'static str,
    /// Event note.
    pub note: String,
}

/// One finding of one check about one Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Event reason, for example `ImageBypassesPullThroughCache`.
    pub reason: &'static str,
    /// Warning or Normal.
    pub severity: Severity,
    /// Tells causes apart under one reason: notices of one workload with the same reason and
    /// cause become one Event (for example the registry, or the classified pull-failure cause).
    /// Bounded: never a Pod name or an image.
    pub cause: String,
    /// What is wrong and how to fix it, the same for every Pod of the workload with this cause:
    /// the workload's Event note is this text and the count of affected Pods.
    pub message: String,
    /// This Pod's part, naming containers and images: listed on the workload's Event, or on the
    /// Pod's own Event, while the workload has few Pods.
    pub detail: String,
    /// Published when the group ends while Pods of the workload still run; `None` for notices
    /// that end silently.
    pub resolution: Option<Resolution>,
}

/// The `action` of every Event the reconciler publishes.
pub const ACTION: &str = "CheckPullThroughCacheRules";
/// Longest note the Events API accepts.
pub const NOTE_MAX_LEN: usize = 1024;

/// Cuts `note` to the Events API's limit, on a character boundary.
pub fn bounded(mut note: String) -> String {
    if note.len() > NOTE_MAX_LEN {
        let mut end = NOTE_MAX_LEN - '…'.len_utf8();
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push('…');
    }
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_cut_to_the_api_limit_on_a_character_boundary() {
        let long = "é".repeat(2000);
        let cut = bounded(long);
        assert!(cut.len() <= NOTE_MAX_LEN);
        assert!(cut.ends_with('…'));
        assert_eq!(bounded("short".into()), "short");
    }
}
