//! Keeping the policy in step: when to apply it again, and what to tell people when it changes
//! or is refused. Pure: the reconciler's policy task asks and does what it is told.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Never more than one apply in this time, whatever changes.
pub const MIN_INTERVAL: Duration = Duration::from_secs(5);
/// Longest wait after failed applies.
const MAX_BACKOFF: Duration = Duration::from_mins(5);

/// How an apply ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The API server took it.
    Accepted,
    /// The API server refused it (a type-check or cost error, a denied request): nothing is
    /// retried until the policy changes.
    Refused(String),
    /// It could not be sent or the server failed: retried with back-off.
    Failed(String),
}

impl Applied {
    /// The `result` label of `pullthrough_policy_applies_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Accepted => "applied",
            Self::Refused(_) => "refused",
            Self::Failed(_) => "error",
        }
    }
}

/// Something to tell people, as an Event on the reconciler's Deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The set of rewritten registries changed.
    Registries {
        /// Rewritten now.
        now: Vec<String>,
        /// Added since the last apply.
        added: Vec<String>,
        /// Removed since the last apply.
        removed: Vec<String>,
    },
    /// The API server refused the policy.
    Refused(String),
}

/// Event reason: the policy now rewrites another set of registries.
pub const CHANGED_REASON: &str = "PullThroughPolicyChanged";
/// Event reason: the API server refused the policy.
pub const REFUSED_REASON: &str = "PullThroughPolicyRefused";

impl Notice {
    /// The Event's reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Registries { .. } => CHANGED_REASON,
            Self::Refused(_) => REFUSED_REASON,
        }
    }

    /// The Event's note.
    pub fn note(&self, name: &str) -> String {
        let list = |l: &[String]| {
            if l.is_empty() {
                "none".to_owned()
            } else {
                l.join(", ")
            }
        };
        match self {
            Self::Registries {
                now,
                added,
                removed,
            } => {
                let mut note = format!(
                    "The MutatingAdmissionPolicy {name} now rewrites images of {} in the API server",
                    list(now)
                );
                if !added.is_empty() {
                    let _ = write!(note, "; added {}", list(added));
                }
                if !removed.is_empty() {
                    let _ = write!(
                        note,
                        "; removed {} (its rule is not usable; the webhook, where it runs, decides)",
                        list(removed)
                    );
                }
                note
            }
            Self::Refused(message) => format!(
                "The API server refused the MutatingAdmissionPolicy {name}; the policy in the cluster stays as last applied: {message}"
            ),
        }
    }
}

/// What the keeper knows of the policy in the cluster.
#[derive(Debug)]
pub struct Keeper {
    /// Least time between applies.
    min_interval: Duration,
    /// The fingerprint of the policy last accepted, and its registries; `None` until this
    /// replica knows.
    accepted: Option<(String, Vec<String>)>,
    /// The fingerprint of the policy last refused, so that it is not sent again.
    refused: Option<String>,
    last_attempt: Option<Instant>,
    failures: u32,
}

impl Default for Keeper {
    fn default() -> Self {
        Self::new(MIN_INTERVAL)
    }
}

impl Keeper {
    /// A keeper that knows nothing yet and applies at most once every `min_interval`.
    pub fn new(min_interval: Duration) -> Self {
        Self {
            min_interval,
            accepted: None,
            refused: None,
            last_attempt: None,
            failures: 0,
        }
    }

    /// Seeds what the cluster holds (read when this replica gains the Lease): an identical
    /// plan is then not applied again, and the registries compare with what it rewrote.
    pub fn seed(&mut self, policy: Option<(String, Vec<String>)>) {
        self.accepted = policy;
    }

    /// The Lease is lost: another replica keeps the policy, and this one must look again when
    /// it gains the Lease back.
    pub fn forget(&mut self) {
        *self = Self::new(self.min_interval);
    }

    /// Whether the policy of this fingerprint should be applied now.
    pub fn due(&self, policy: &str, now: Instant) -> bool {
        if self.accepted.as_ref().is_some_and(|(p, _)| p == policy)
            || self.refused.as_deref() == Some(policy)
        {
            return false;
        }
        let wait = if self.failures == 0 {
            self.min_interval
        } else {
            self.min_interval
                .saturating_mul(1 << self.failures.min(6))
                .min(MAX_BACKOFF)
        };
        self.last_attempt
            .is_none_or(|t| now.saturating_duration_since(t) >= wait)
    }

    /// Records how applying `policy` (which rewrites `registries`) ended, and what to tell.
    pub fn applied(
        &mut self,
        policy: &str,
        registries: &[String],
        result: &Applied,
        now: Instant,
    ) -> Option<Notice> {
        self.last_attempt = Some(now);
        match result {
            Applied::Accepted => {
                self.failures = 0;
                self.refused = None;
                let before = self.accepted.take().map(|(_, r)| r);
                self.accepted = Some((policy.to_owned(), registries.to_vec()));
                let before = before?;
                (before != registries).then(|| Notice::Registries {
                    now: registries.to_vec(),
                    added: registries
                        .iter()
                        .filter(|r| !before.contains(r))
                        .cloned()
                        .collect(),
                    removed: before
                        .iter()
                        .filter(|r| !registries.contains(r))
                        .cloned()
                        .collect(),
                })
            }
            Applied::Refused(message) => {
                self.failures = 0;
                self.refused = Some(policy.to_owned());
                Some(Notice::Refused(message.clone()))
            }
            Applied::Failed(_) => {
                self.failures = self.failures.saturating_add(1);
                None
            }
        }
    }
}

/// The fingerprint and the registries a policy in the cluster carries (its annotations).
pub fn seed_of(policy: &serde_json::Value) -> Option<(String, Vec<String>)> {
    let fingerprint = policy["metadata"]["annotations"][super::FINGERPRINT_ANNOTATION].as_str()?;
    Some((fingerprint.to_owned(), registries_of(policy)))
}

/// The registries a policy in the cluster says it rewrites (its annotation).
pub fn registries_of(policy: &serde_json::Value) -> Vec<String> {
    policy["metadata"]["annotations"]["pullthrough.dev/registries"]
        .as_str()
        .map(|s| {
            s.split(',')
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn regs(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_new_policy_is_applied_at_once_and_an_unchanged_one_never() {
        let mut k = Keeper::default();
        let t = Instant::now();
        let p = "a";
        assert!(k.due(p, t));
        assert_eq!(
            k.applied(p, &regs(&["quay.io"]), &Applied::Accepted, t),
            None
        );
        assert!(!k.due(p, t + Duration::from_mins(10)));
    }

    #[test]
    fn changes_are_debounced() {
        let mut k = Keeper::default();
        let t = Instant::now();
        k.applied("1", &[], &Applied::Accepted, t);
        assert!(!k.due("2", t + Duration::from_secs(1)));
        assert!(k.due("2", t + MIN_INTERVAL));
    }

    #[test]
    fn a_change_of_registries_is_told_with_what_came_and_went() {
        let mut k = Keeper::default();
        let t = Instant::now();
        k.seed(Some(("0".to_owned(), regs(&["docker.io", "quay.io"]))));
        let notice = k.applied("1", &regs(&["docker.io", "ghcr.io"]), &Applied::Accepted, t);
        let Some(notice) = notice else {
            panic!("no notice");
        };
        assert_eq!(notice.reason(), CHANGED_REASON);
        assert_eq!(
            notice.note("pullthrough"),
            "The MutatingAdmissionPolicy pullthrough now rewrites images of docker.io, ghcr.io in the API server; added ghcr.io; removed quay.io (its rule is not usable; the webhook, where it runs, decides)"
        );
        // The same registries again: nothing to tell.
        assert_eq!(
            k.applied("2", &regs(&["docker.io", "ghcr.io"]), &Applied::Accepted, t),
            None
        );
    }

    #[test]
    fn a_refused_policy_is_told_once_and_not_sent_again_until_it_changes() {
        let mut k = Keeper::default();
        let t = Instant::now();
        let p = "bad";
        let notice = k.applied(p, &[], &Applied::Refused("no such key".into()), t);
        assert_eq!(notice.map(|n| n.reason()), Some(REFUSED_REASON));
        assert!(!k.due(p, t + Duration::from_hours(1)));
        assert!(k.due("good", t + MIN_INTERVAL));
    }

    #[test]
    fn failures_back_off_and_losing_the_lease_forgets() {
        let mut k = Keeper::default();
        let t = Instant::now();
        let p = "1";
        k.applied(p, &[], &Applied::Failed("timeout".into()), t);
        assert!(!k.due(p, t + MIN_INTERVAL));
        assert!(k.due(p, t + MIN_INTERVAL * 2));
        k.applied(p, &[], &Applied::Accepted, t);
        k.forget();
        assert!(k.due(p, t));
    }

    #[test]
    fn the_registries_annotation_is_read_back() {
        let p = json!({"metadata": {"annotations": {"pullthrough.dev/registries": "docker.io,quay.io"}}});
        assert_eq!(registries_of(&p), regs(&["docker.io", "quay.io"]));
        assert!(registries_of(&json!({})).is_empty());
        assert_eq!(seed_of(&p), None);
    }
}
