//! The reconciler's I/O, one task a file: the watchers on opted-in namespaces and their Pods (`watch`), the Lease that decides which replica publishes ([`lease`]), the publishing loop with its rate limit (`publish`), and, beside them, the warming of the cache for pinned images.

mod inventory;
pub mod lease;
pub mod metrics;
pub mod options;
mod publish;
mod stop;
mod watch;

use kube::Api;
use tokio::sync::watch as channel;

use self::inventory::{Shared, lock};
use crate::config::Config;
use crate::pod::PodRecord;
use crate::warm;

pub use lease::{LeaseOptions, elect};
pub use metrics::ReconcilerMetrics;
pub use options::{Options, Reconciler};

impl Reconciler {
    /// Runs until `stop` turns true. Publishes only while `leader` is true.
    pub async fn run(self, leader: channel::Receiver<bool>, stop: channel::Receiver<bool>) {
        let inventory = Shared::default();
        let pods = watch::watch_pods(
            Api::all(self.client.clone()),
            inventory.clone(),
            self.metrics.clone(),
            stop.clone(),
        );
        let namespaces = watch::watch_namespaces(
            Api::all(self.client.clone()),
            self.options.namespace_selector.clone(),
            inventory.clone(),
            self.metrics.clone(),
            stop.clone(),
        );
        let warm = async {
            if let Some(warmer) = &self.warmer {
                let inventory = inventory.clone();
                let own = self.options.own_namespace.clone();
                let wanted = move |config: &Config| {
                    let inv = lock(&inventory);
                    let pods: Vec<&PodRecord> = inv
                        .pods_in_scope(&own)
                        .into_iter()
                        .filter(|p| !p.exempt(config))
                        .collect();
                    warm::wanted(config, &pods)
                };
                warmer
                    .run(self.config.clone(), wanted, leader.clone(), stop.clone())
                    .await;
            }
        };
        let reconcile = self.reconcile(inventory.clone(), leader.clone(), stop.clone());
        tokio::join!(pods, namespaces, reconcile, warm);
    }
}
