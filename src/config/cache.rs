//! `cache:` in the configuration file: how often the reconciler reads what the cache holds,
//! how much it reads, and the lifecycle policy proposed for new cache repositories. Pure.

use serde::Deserialize;

/// `cache:` in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CacheFile {
    /// How often the reconciler reads what the cache holds for its metrics (default 1h;
    /// `0s` turns the reads off).
    #[serde(default, with = "super::duration")]
    pub refresh_interval: Option<std::time::Duration>,
    /// Most repositories read in one pass (default 10000).
    pub max_repositories: Option<usize>,
    /// The lifecycle policy of the repository creation templates `rules` prints.
    pub lifecycle: Option<LifecycleFile>,
}

/// `cache.lifecycle:` in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LifecycleFile {
    /// Expire images not pulled for this many days (default 90; 0 leaves the rule out).
    pub expire_unpulled_after_days: Option<u32>,
    /// Keep at most this many images per repository (default 10; 0 leaves the rule out).
    pub keep_images: Option<u32>,
}

/// The validated `cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// How often the reconciler reads the cache; `None` when it does not.
    pub refresh_interval: Option<std::time::Duration>,
    /// Most repositories read in one pass.
    pub max_repositories: usize,
    /// The default lifecycle policy of new cache repositories.
    pub lifecycle: Lifecycle,
}

/// The lifecycle policy pullthrough proposes for cache repositories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    /// Expire images not pulled for this many days.
    pub expire_unpulled_after_days: Option<u32>,
    /// Keep at most this many images per repository.
    pub keep_images: Option<u32>,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            refresh_interval: Some(std::time::Duration::from_hours(1)),
            max_repositories: 10_000,
            lifecycle: Lifecycle {
                expire_unpulled_after_days: Some(90),
                keep_images: Some(10),
            },
        }
    }
}

impl CacheFile {
    /// Validates `cache:`; errors name the field.
    pub(crate) fn validate(self) -> Result<CacheSettings, (&'static str, String)> {
        let default = CacheSettings::default();
        let refresh_interval = match self.refresh_interval {
            None => default.refresh_interval,
            Some(i) if i.is_zero() => None,
            Some(i) if i < std::time::Duration::from_mins(1) => {
                return Err((
                    "cache.refreshInterval",
                    format!(
                        "{} is too often; each read lists every repository and image, use 1m or more (0s turns it off)",
                        humantime::format_duration(i)
                    ),
                ));
            }
            Some(i) => Some(i),
        };
        let max_repositories = self.max_repositories.unwrap_or(default.max_repositories);
        if max_repositories == 0 {
            return Err(("cache.maxRepositories", "must be at least 1".to_owned()));
        }
        let file = self.lifecycle.unwrap_or_default();
        let pick = |value: Option<u32>, default: Option<u32>| match value {
            Some(0) => None,
            Some(n) => Some(n),
            None => default,
        };
        let lifecycle = Lifecycle {
            expire_unpulled_after_days: pick(
                file.expire_unpulled_after_days,
                default.lifecycle.expire_unpulled_after_days,
            ),
            keep_images: pick(file.keep_images, default.lifecycle.keep_images),
        };
        Ok(CacheSettings {
            refresh_interval,
            max_repositories,
            lifecycle,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError, Overrides};

    fn load(cache: &str) -> Result<Config, ConfigError> {
        Config::load(&format!("cache:\n{cache}"), &Overrides::default())
    }

    #[test]
    fn cache_defaults_read_hourly_and_propose_a_lifecycle() {
        let c = Config::load("", &Overrides::default()).unwrap().cache;
        assert_eq!(c.refresh_interval, Some(std::time::Duration::from_hours(1)));
        assert_eq!(c.max_repositories, 10_000);
        assert_eq!(c.lifecycle.expire_unpulled_after_days, Some(90));
        assert_eq!(c.lifecycle.keep_images, Some(10));
    }

    #[test]
    fn cache_keys_are_validated_with_their_field_and_line() {
        let off = load("  refreshInterval: 0s\n").unwrap().cache;
        assert_eq!(off.refresh_interval, None);
        let err = load("  refreshInterval: 30s\n").unwrap_err();
        assert!(err.to_string().contains("cache.refreshInterval"), "{err}");
        assert_eq!(err.line(), Some(2));
        let err = load("  maxRepositories: 0\n").unwrap_err();
        assert!(err.to_string().contains("cache.maxRepositories"), "{err}");
        assert!(load("  lifecycle:\n    keepImage: 3\n").is_err());
        let c = load("  lifecycle:\n    keepImages: 0\n").unwrap().cache;
        assert_eq!(c.lifecycle.keep_images, None);
        assert_eq!(c.lifecycle.expire_unpulled_after_days, Some(90));
    }
}
