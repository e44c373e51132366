//! `digests:` and `digestCheck:` in the file: what happens to digest-pinned images, and how pullthrough learns which pinned digests the cache holds.

use serde::Deserialize;

/// What to do with digest-pinned images.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DigestPolicy {
    /// Rewrite them, keeping tag and digest, once pullthrough knows the cache holds the digest;
    /// until then leave them on their upstream. ECR cannot fill its cache from a first pull by
    /// digest, so the cache is filled by tag (the reconciler, `pullthrough warm`).
    #[default]
    WhenCached,
    /// Leave them on their upstream.
    Skip,
    /// Rewrite them, keeping tag and digest, for users who warm their cache themselves.
    Rewrite,
}

/// `digestCheck:` in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DigestCheckFile {
    /// Most digests remembered (default 10000).
    pub cache_size: Option<usize>,
    /// How long a digest found in the cache is trusted before it is checked again (default 6h).
    #[serde(default, with = "super::duration")]
    pub cached_for: Option<std::time::Duration>,
    /// Most `DescribeImages` calls per second (default 5).
    pub checks_per_second: Option<u32>,
    /// Most images the reconciler warms at once (default 2).
    pub warm_concurrency: Option<usize>,
}

/// The validated `digestCheck`. Digests not in the cache are checked again within one
/// `ruleCheck.interval`, so that a freshly warmed image is used soon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestCheck {
    /// Most digests remembered.
    pub cache_size: usize,
    /// How long a "cached" answer holds.
    pub cached_for: std::time::Duration,
    /// Most `DescribeImages` calls per second.
    pub checks_per_second: u32,
    /// Most images warmed at once by the reconciler.
    pub warm_concurrency: usize,
}

impl Default for DigestCheck {
    fn default() -> Self {
        Self {
            cache_size: 10_000,
            cached_for: std::time::Duration::from_hours(6),
            checks_per_second: 5,
            warm_concurrency: 2,
        }
    }
}

impl DigestCheckFile {
    pub(super) fn validate(self) -> Result<DigestCheck, (&'static str, String)> {
        let default = DigestCheck::default();
        let cache_size = self.cache_size.unwrap_or(default.cache_size);
        if !(100..=1_000_000).contains(&cache_size) {
            return Err((
                "cacheSize",
                format!("{cache_size} is outside 100 to 1000000 digests"),
            ));
        }
        let cached_for = self.cached_for.unwrap_or(default.cached_for);
        if cached_for < std::time::Duration::from_mins(1)
            || cached_for > std::time::Duration::from_hours(168)
        {
            return Err((
                "cachedFor",
                format!(
                    "{} is outside 1m to 168h",
                    humantime::format_duration(cached_for)
                ),
            ));
        }
        let checks_per_second = self.checks_per_second.unwrap_or(default.checks_per_second);
        if !(1..=100).contains(&checks_per_second) {
            return Err((
                "checksPerSecond",
                format!("{checks_per_second} is outside 1 to 100; ECR throttles DescribeImages"),
            ));
        }
        let warm_concurrency = self.warm_concurrency.unwrap_or(default.warm_concurrency);
        if !(1..=16).contains(&warm_concurrency) {
            return Err((
                "warmConcurrency",
                format!("{warm_concurrency} is outside 1 to 16"),
            ));
        }
        Ok(DigestCheck {
            cache_size,
            cached_for,
            checks_per_second,
            warm_concurrency,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fixtures::load;

    #[test]
    fn pinned_digests_wait_for_the_cache_by_default() {
        assert_eq!(load("").unwrap().digests, DigestPolicy::WhenCached);
        assert_eq!(
            load("digests: whenCached\n").unwrap().digests,
            DigestPolicy::WhenCached
        );
        assert_eq!(
            load("digests: rewrite\n").unwrap().digests,
            DigestPolicy::Rewrite
        );
        let err = load("digests: whencached\n").unwrap_err();
        assert!(err.to_string().contains("whenCached"), "{err}");
    }

    #[test]
    fn digest_check_defaults_values_and_limits() {
        let c = load("").unwrap();
        assert_eq!(c.digest_check, DigestCheck::default());
        assert_eq!(c.digest_check.cache_size, 10_000);
        let c = load(
            "digestCheck:\n  cacheSize: 500\n  cachedFor: 2h\n  checksPerSecond: 2\n  warmConcurrency: 4\n",
        )
        .unwrap();
        assert_eq!(
            c.digest_check,
            DigestCheck {
                cache_size: 500,
                cached_for: std::time::Duration::from_hours(2),
                checks_per_second: 2,
                warm_concurrency: 4,
            }
        );
        for (yaml, field) in [
            ("digestCheck:\n  cacheSize: 0\n", "digestCheck.cacheSize"),
            ("digestCheck:\n  cachedFor: 1s\n", "digestCheck.cachedFor"),
            (
                "digestCheck:\n  checksPerSecond: 0\n",
                "digestCheck.checksPerSecond",
            ),
            (
                "digestCheck:\n  warmConcurrency: 100\n",
                "digestCheck.warmConcurrency",
            ),
        ] {
            let err = load(yaml).unwrap_err();
            assert!(err.to_string().contains(field), "{yaml}: {err}");
            assert_eq!(err.line(), Some(2), "{yaml}: {err}");
        }
        assert!(load("digestCheck:\n  size: 5\n").is_err());
    }
}
