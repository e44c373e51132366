//! What the reconciler runs with: its options and the handles it is given.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use arc_swap::ArcSwap;
use kube::Client;
use kube::runtime::events::Reporter;

use super::metrics::ReconcilerMetrics;
use crate::config::Config;
use crate::rules::RuleSnapshot;
use crate::warm::run::Warmer;

/// How the reconciler runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Label selector of the opted-in namespaces.
    pub namespace_selector: String,
    /// The reconciler's own namespace: never looked at, and home of its Deployment.
    pub own_namespace: String,
    /// The reconciler's Deployment, which gets the summary Events; `None` for none.
    pub deployment: Option<String>,
    /// How often a standing Warning is re-sent.
    pub resend_interval: Duration,
    /// How often the reconcile loop wakes up to look for changes.
    pub tick: Duration,
    /// Events published per second, on average.
    pub event_rate: f64,
    /// Events published at once before the rate applies.
    pub event_burst: u32,
}

/// The reconciler, ready to run.
pub struct Reconciler {
    /// Kubernetes client.
    pub client: Client,
    /// Configuration in force (reloaded elsewhere).
    pub config: Arc<ArcSwap<Config>>,
    /// Rule snapshot (refreshed elsewhere).
    pub rules: Arc<ArcSwap<RuleSnapshot>>,
    /// Metrics.
    pub metrics: ReconcilerMetrics,
    /// Options.
    pub options: Options,
    /// Who publishes the Events.
    pub reporter: Reporter,
    /// Set once both watchers have listed everything.
    pub ready: Arc<AtomicBool>,
    /// Warms the cache for Pods' pinned images (`digests: whenCached`); `None` for no warming.
    pub warmer: Option<Warmer>,
}
