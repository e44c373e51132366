//! Re-reads the configuration file when it changes on disk.
//!
//! A ConfigMap volume swaps a `..data` symlink rather than writing the file in place, so the
//! file is polled through its path and its content compared; inotify on the path would miss it.
//! A file that fails validation is refused (logged and counted once) and the configuration in
//! force stays.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tracing::{info, warn};

use crate::config::{Config, Overrides};
use crate::metrics::{ConfigMetrics, ReloadResult, unix_now};

/// What one poll did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigPoll {
    /// The file is as it was (or as it was when last refused).
    Unchanged,
    /// A new configuration is in force.
    Reloaded,
    /// The new content was refused; the previous configuration stays.
    Refused,
}

/// Polls a configuration file and swaps valid new versions into `target`.
pub struct ConfigReloader {
    path: PathBuf,
    overrides: Overrides,
    target: Arc<ArcSwap<Config>>,
    metrics: ConfigMetrics,
    last_seen: Option<Vec<u8>>,
}

impl ConfigReloader {
    /// A reloader whose last-seen content is `initial` (the content already in force).
    pub fn new(
        path: PathBuf,
        overrides: Overrides,
        target: Arc<ArcSwap<Config>>,
        metrics: ConfigMetrics,
        initial: Vec<u8>,
    ) -> Self {
        metrics.last_success_seconds.set(unix_now());
        Self {
            path,
            overrides,
            target,
            metrics,
            last_seen: Some(initial),
        }
    }

    /// Reads the file once and acts on a change.
    pub fn poll_once(&mut self) -> ConfigPoll {
        let content = match std::fs::read(&self.path) {
            Ok(c) => c,
            Err(e) => {
                // A missing file mid-swap is transient; report it once, keep the config.
                if self.last_seen.is_some() {
                    warn!(path = %self.path.display(), error = %e, "cannot read the configuration file; keeping the configuration in force");
                    self.metrics.reload(ReloadResult::Failure);
                    self.last_seen = None;
                    return ConfigPoll::Refused;
                }
                return ConfigPoll::Unchanged;
            }
        };
        if self.last_seen.as_deref() == Some(content.as_slice()) {
            return ConfigPoll::Unchanged;
        }
        let outcome = match std::str::from_utf8(&content)
            .map_err(|e| e.to_string())
            .and_then(|s| Config::load(s, &self.overrides).map_err(|e| e.to_string()))
        {
            Ok(config) => {
                if **self.target.load() != config {
                    info!(
                        path = %self.path.display(),
                        registries = config.registries.len(),
                        registry_host = %config.registry_host,
                        "configuration reloaded"
                    );
                }
                self.target.store(Arc::new(config));
                self.metrics.reload(ReloadResult::Success);
                self.metrics.last_success_seconds.set(unix_now());
                ConfigPoll::Reloaded
            }
            Err(e) => {
                warn!(path = %self.path.display(), error = %e, "configuration file refused; keeping the configuration in force");
                self.metrics.reload(ReloadResult::Failure);
                ConfigPoll::Refused
            }
        };
        self.last_seen = Some(content);
        outcome
    }

    /// Polls every `interval` until `shutdown` resolves. Never fails.
    pub async fn run(mut self, interval: Duration, shutdown: impl Future<Output = ()>) {
        let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                _ = ticker.tick() => { self.poll_once(); }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn a_bad_file_is_refused_once_and_the_good_config_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        let good = "accountId: \"111111111111\"\nregion: eu-west-1\n";
        std::fs::write(&path, good).unwrap();
        let config = Config::load(good, &Overrides::default()).unwrap();
        let target = Arc::new(ArcSwap::from_pointee(config.clone()));
        let metrics = Metrics::new().unwrap().config;
        let mut reloader = ConfigReloader::new(
            path.clone(),
            Overrides::default(),
            target.clone(),
            metrics.clone(),
            good.as_bytes().to_vec(),
        );
        assert_eq!(reloader.poll_once(), ConfigPoll::Unchanged);

        std::fs::write(&path, "accountId: \"111111111111\"\nregion: nowhere\n").unwrap();
        assert_eq!(reloader.poll_once(), ConfigPoll::Refused);
        assert_eq!(reloader.poll_once(), ConfigPoll::Unchanged);
        assert_eq!(**target.load(), config);
        assert_eq!(metrics.reloads.with_label_values(&["failure"]).get(), 1);

        std::fs::write(&path, "accountId: \"222222222222\"\nregion: eu-west-1\n").unwrap();
        assert_eq!(reloader.poll_once(), ConfigPoll::Reloaded);
        assert_eq!(target.load().account_id, "222222222222");
        assert_eq!(metrics.reloads.with_label_values(&["success"]).get(), 1);
    }

    #[test]
    fn a_vanished_file_keeps_the_config_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        let good = "region: eu-west-1\n";
        std::fs::write(&path, good).unwrap();
        let config = Config::load(good, &Overrides::default()).unwrap();
        let target = Arc::new(ArcSwap::from_pointee(config.clone()));
        let metrics = Metrics::new().unwrap().config;
        let mut reloader = ConfigReloader::new(
            path.clone(),
            Overrides::default(),
            target.clone(),
            metrics,
            good.as_bytes().to_vec(),
        );
        std::fs::remove_file(&path).unwrap();
        assert_eq!(reloader.poll_once(), ConfigPoll::Refused);
        assert_eq!(reloader.poll_once(), ConfigPoll::Unchanged);
        std::fs::write(&path, "region: us-west-2\n").unwrap();
        assert_eq!(reloader.poll_once(), ConfigPoll::Reloaded);
        assert_eq!(target.load().region, "us-west-2");
    }
}
