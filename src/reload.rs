//! One poller for the files a running process keeps in force: the configuration and the serving
//! certificate.
//!
//! The kubelet updates ConfigMap and Secret volumes by swapping a `..data` symlink rather than
//! writing the files in place, so inotify on the path would miss it: the files are read through
//! their paths on an interval and their content compared. New content that fails to load is
//! logged and counted once, and what is in force stays.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tracing::{debug, info, warn};

use crate::config::{Config, Overrides};
use crate::metrics::{ConfigMetrics, ReloadResult, unix_now};

/// Shortest poll interval: a smaller one would only spin.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// What one [`Poller::poll_once`] step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing new: the files hold what is in force, content already refused, or are being
    /// replaced right now (they are read again at the next step).
    Unchanged,
    /// New content was loaded and is in force.
    Reloaded,
    /// New content, or a new read error, was refused; what was in force stays.
    Refused,
}

/// A failed read. Failures with the same key are one failure, reported once.
#[derive(Debug, Clone)]
pub struct ReadFailed {
    /// Tells failures apart, for example the file and the I/O error kind.
    pub key: String,
    /// What happened, for the log.
    pub message: String,
}

impl PartialEq for ReadFailed {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl fmt::Display for ReadFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Files whose content a [`Poller`] keeps in force.
pub trait Watched {
    /// What the files hold, compared between steps.
    type Content: PartialEq + Clone;

    /// Reads the files; `Ok(None)` while they are being replaced.
    fn read(&self) -> Result<Option<Self::Content>, ReadFailed>;

    /// Puts new content in force (logging and counting it); an error leaves what is in force.
    fn load(&mut self, content: &Self::Content) -> Result<(), String>;

    /// Logs and counts a read that failed.
    fn read_failed(&self, failure: &ReadFailed);

    /// Logs and counts new content that was refused.
    fn refused(&self, error: &str);

    /// The files hold what is in force again, after a bad update or a read error.
    fn back_in_force(&self) {}

    /// What the poller watches, for its last log line.
    fn what(&self) -> &'static str;
}

/// What the last step saw, to act only on changes.
#[derive(Debug, PartialEq)]
enum Seen<C> {
    Content(C),
    ReadError(ReadFailed),
}

/// Polls a [`Watched`] set of files and keeps its newest good content in force.
pub struct Poller<W: Watched> {
    watched: W,
    in_force: W::Content,
    last: Seen<W::Content>,
}

impl<W: Watched> Poller<W> {
    /// A poller over `watched`, whose content `in_force` is in force now.
    pub fn watching(watched: W, in_force: W::Content) -> Self {
        Self {
            watched,
            last: Seen::Content(in_force.clone()),
            in_force,
        }
    }

    /// One step: reads the files and loads them if their content changed.
    pub fn poll_once(&mut self) -> Outcome {
        let content = match self.watched.read() {
            Ok(Some(content)) => content,
            Ok(None) => {
                debug!(
                    what = self.watched.what(),
                    "files are being replaced; reading them next time"
                );
                return Outcome::Unchanged;
            }
            Err(failure) => {
                if matches!(&self.last, Seen::ReadError(seen) if *seen == failure) {
                    return Outcome::Unchanged;
                }
                self.watched.read_failed(&failure);
                self.last = Seen::ReadError(failure);
                return Outcome::Refused;
            }
        };
        if matches!(&self.last, Seen::Content(seen) if *seen == content) {
            return Outcome::Unchanged;
        }
        if content == self.in_force {
            self.last = Seen::Content(content);
            self.watched.back_in_force();
            return Outcome::Unchanged;
        }
        let outcome = match self.watched.load(&content) {
            Ok(()) => {
                self.in_force = content.clone();
                Outcome::Reloaded
            }
            Err(e) => {
                self.watched.refused(&e);
                Outcome::Refused
            }
        };
        self.last = Seen::Content(content);
        outcome
    }

    /// Polls every `interval` (at least 10 ms) until `shutdown` resolves. Never ends on an
    /// error. The files are small and read synchronously on the calling task.
    pub async fn run(mut self, interval: Duration, shutdown: impl Future<Output = ()>) {
        let mut ticker = tokio::time::interval(interval.max(MIN_INTERVAL));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick completes at once, and the initial content is already in force.
        ticker.tick().await;
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                _ = ticker.tick() => { self.poll_once(); }
            }
        }
        debug!(what = self.watched.what(), "poller stopped");
    }
}

/// The configuration file, loaded into a shared [`Config`].
pub struct ConfigFile {
    path: PathBuf,
    overrides: Overrides,
    target: Arc<ArcSwap<Config>>,
    metrics: ConfigMetrics,
}

impl Watched for ConfigFile {
    type Content = Vec<u8>;

    fn read(&self) -> Result<Option<Vec<u8>>, ReadFailed> {
        std::fs::read(&self.path).map(Some).map_err(|e| ReadFailed {
            key: format!("{:?}", e.kind()),
            message: e.to_string(),
        })
    }

    fn load(&mut self, content: &Vec<u8>) -> Result<(), String> {
        let config = std::str::from_utf8(content)
            .map_err(|e| e.to_string())
            .and_then(|s| Config::load(s, &self.overrides).map_err(|e| e.to_string()))?;
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
        Ok(())
    }

    fn read_failed(&self, failure: &ReadFailed) {
        // A missing file mid-swap is usually transient; it is reported once.
        warn!(path = %self.path.display(), error = %failure, "cannot read the configuration file; keeping the configuration in force");
        self.metrics.reload(ReloadResult::Failure);
    }

    fn refused(&self, error: &str) {
        warn!(path = %self.path.display(), error, "configuration file refused; keeping the configuration in force");
        self.metrics.reload(ReloadResult::Failure);
    }

    fn back_in_force(&self) {
        info!(path = %self.path.display(), "the configuration file holds the configuration in force again");
    }

    fn what(&self) -> &'static str {
        "configuration"
    }
}

/// Re-reads the configuration file when it changes on disk.
pub type ConfigReloader = Poller<ConfigFile>;

impl Poller<ConfigFile> {
    /// A reloader of `path` into `target`; `initial` is the content of the configuration in
    /// force.
    pub fn new(
        path: PathBuf,
        overrides: Overrides,
        target: Arc<ArcSwap<Config>>,
        metrics: ConfigMetrics,
        initial: Vec<u8>,
    ) -> Self {
        metrics.last_success_seconds.set(unix_now());
        Self::watching(
            ConfigFile {
                path,
                overrides,
                target,
                metrics,
            },
            initial,
        )
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
        assert_eq!(reloader.poll_once(), Outcome::Unchanged);

        std::fs::write(&path, "accountId: \"111111111111\"\nregion: nowhere\n").unwrap();
        assert_eq!(reloader.poll_once(), Outcome::Refused);
        assert_eq!(reloader.poll_once(), Outcome::Unchanged);
        assert_eq!(**target.load(), config);
        assert_eq!(metrics.reloads.with_label_values(&["failure"]).get(), 1);

        std::fs::write(&path, "accountId: \"222222222222\"\nregion: eu-west-1\n").unwrap();
        assert_eq!(reloader.poll_once(), Outcome::Reloaded);
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
        assert_eq!(reloader.poll_once(), Outcome::Refused);
        assert_eq!(reloader.poll_once(), Outcome::Unchanged);
        std::fs::write(&path, "region: us-west-2\n").unwrap();
        assert_eq!(reloader.poll_once(), Outcome::Reloaded);
        assert_eq!(target.load().region, "us-west-2");
    }
}
