//! `ruleCheck:` in the file: how the webhook and the reconciler learn which ECR rules exist, and what the webhook does while it does not know.

use serde::Deserialize;

/// `ruleCheck:` in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuleCheckFile {
    /// Whether to read the rules from ECR at all (default true).
    pub enabled: Option<bool>,
    /// How often to read them (default 5m).
    #[serde(default, with = "super::duration")]
    pub interval: Option<std::time::Duration>,
    /// What to do while the rules are unknown (default trust).
    pub when_unknown: Option<UnknownRules>,
    /// Whether to validate the credentials of credentialed rules (default true).
    pub validate_credentials: Option<bool>,
}

/// What the webhook does while it does not know which rules exist (before the first
/// successful read, or with the check disabled).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum UnknownRules {
    /// Rewrite as the map says.
    #[default]
    Trust,
    /// Leave images alone until the rules are known.
    Skip,
}

/// The validated `ruleCheck`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleCheck {
    /// Whether to read the rules from ECR.
    pub enabled: bool,
    /// How often.
    pub interval: std::time::Duration,
    /// Behaviour while unknown.
    pub when_unknown: UnknownRules,
    /// Whether to call `ValidatePullThroughCacheRule` for credentialed rules.
    pub validate_credentials: bool,
}

impl RuleCheck {
    /// Longest interval accepted: the rules are read at least daily, or not at all.
    pub const MAX_INTERVAL: std::time::Duration = std::time::Duration::from_hours(24);

    /// A known snapshot is kept through failed reads for this many intervals; after that the
    /// rules count as unknown and `ruleCheck.whenUnknown` applies.
    pub const STALE_AFTER_INTERVALS: u32 = 3;

    /// How long a snapshot is trusted through failed reads: [`Self::STALE_AFTER_INTERVALS`]
    /// intervals. Saturates rather than overflowing, whatever the interval.
    pub fn stale_after(&self) -> std::time::Duration {
        self.interval.saturating_mul(Self::STALE_AFTER_INTERVALS)
    }
}

impl Default for RuleCheck {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: std::time::Duration::from_mins(5),
            when_unknown: UnknownRules::Trust,
            validate_credentials: true,
        }
    }
}

impl RuleCheckFile {
    /// Validates `ruleCheck`; an error is about its interval.
    pub(super) fn validate(self) -> Result<RuleCheck, String> {
        let default = RuleCheck::default();
        let interval = self.interval.unwrap_or(default.interval);
        if interval < std::time::Duration::from_secs(10) {
            return Err(format!(
                "{} is too often; ECR throttles, use 10s or more",
                humantime::format_duration(interval)
            ));
        }
        if interval > RuleCheck::MAX_INTERVAL {
            return Err(format!(
                "{} is too long; use 24h or less, or enabled: false to stop checking",
                humantime::format_duration(interval)
            ));
        }
        Ok(RuleCheck {
            enabled: self.enabled.unwrap_or(default.enabled),
            interval,
            when_unknown: self.when_unknown.unwrap_or(default.when_unknown),
            validate_credentials: self
                .validate_credentials
                .unwrap_or(default.validate_credentials),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fixtures::load;

    #[test]
    fn rule_check_defaults_and_values() {
        let c = load("").unwrap();
        assert_eq!(c.rule_check, RuleCheck::default());
        let c =
            load("ruleCheck:\n  interval: 1m\n  whenUnknown: skip\n  validateCredentials: false\n")
                .unwrap();
        assert_eq!(c.rule_check.interval, std::time::Duration::from_mins(1));
        assert_eq!(c.rule_check.when_unknown, UnknownRules::Skip);
        assert!(!c.rule_check.validate_credentials);
        let err = load("ruleCheck:\n  interval: 1s\n").unwrap_err();
        assert_eq!(err.line(), Some(2), "{err}");
        assert!(load("ruleCheck:\n  interval: soon\n").is_err());
    }

    #[test]
    fn an_interval_beyond_a_day_is_refused_and_staleness_never_overflows() {
        // 200 billion years parses as a Duration; three of them overflowed the staleness limit
        // and ended the refresh task with a panic.
        let err = load("ruleCheck:\n  interval: 200000000000y\n").unwrap_err();
        assert!(err.to_string().contains("24h or less"), "{err}");
        assert_eq!(err.line(), Some(2), "{err}");
        assert!(load("ruleCheck:\n  interval: 24h\n").is_ok());
        assert!(load("ruleCheck:\n  interval: 25h\n").is_err());
        let huge = RuleCheck {
            interval: std::time::Duration::MAX,
            ..RuleCheck::default()
        };
        assert_eq!(huge.stale_after(), std::time::Duration::MAX);
        assert_eq!(
            RuleCheck::default().stale_after(),
            std::time::Duration::from_mins(15)
        );
    }
}
