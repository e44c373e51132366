//! `fallback:` in the file: whether the reconciler puts a container whose rewritten image fails to pull back on its original image, and after how long.

use serde::Deserialize;

/// `fallback:` in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FallbackFile {
    /// Whether the reconciler falls back at all (default false).
    pub enabled: Option<bool>,
    /// How long a rewritten image must have failed to pull first (default 2m).
    #[serde(default, with = "super::duration")]
    pub after: Option<std::time::Duration>,
}

/// The validated `fallback`: the reconciler sets a container whose rewritten image has failed
/// to pull for `after` back to its original image, once, on that Pod only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fallback {
    /// Whether to fall back.
    pub enabled: bool,
    /// How long a pull must have been failing.
    pub after: std::time::Duration,
}

impl Fallback {
    /// Shortest `after`: the kubelet's first retries come 10 and 20 seconds apart, and a
    /// failure that heals on its own should not cost the cache.
    pub const MIN_AFTER: std::time::Duration = std::time::Duration::from_secs(30);
    /// Longest `after`.
    pub const MAX_AFTER: std::time::Duration = std::time::Duration::from_hours(24);
}

impl Default for Fallback {
    fn default() -> Self {
        Self {
            enabled: false,
            after: std::time::Duration::from_mins(2),
        }
    }
}

impl FallbackFile {
    pub(super) fn validate(self) -> Result<Fallback, String> {
        let default = Fallback::default();
        let after = self.after.unwrap_or(default.after);
        if !(Fallback::MIN_AFTER..=Fallback::MAX_AFTER).contains(&after) {
            return Err(format!(
                "{} is out of range; use 30s to 24h (the kubelet retries a failed pull with a back-off of up to 5m)",
                humantime::format_duration(after)
            ));
        }
        Ok(Fallback {
            enabled: self.enabled.unwrap_or(default.enabled),
            after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fixtures::load;

    #[test]
    fn fallback_is_off_by_default_and_validated() {
        let c = load("").unwrap();
        assert_eq!(c.fallback, Fallback::default());
        assert!(!c.fallback.enabled);
        assert_eq!(c.fallback.after, std::time::Duration::from_mins(2));
        let c = load("fallback:\n  enabled: true\n  after: 5m\n").unwrap();
        assert!(c.fallback.enabled);
        assert_eq!(c.fallback.after, std::time::Duration::from_mins(5));
        let err = load("fallback:\n  enabled: true\n  after: 5s\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("fallback.after: 5s is out of range"),
            "{err}"
        );
        assert_eq!(err.line(), Some(3), "{err}");
        assert!(load("fallback:\n  after: 25h\n").is_err());
        assert!(load("fallback:\n  after: later\n").is_err());
        let err = load("fallback:\n  enable: true\n").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
