//! The Lease: which replica publishes Events, held through a Lease manager that is set up again whenever it fails.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::metrics::ReconcilerMetrics;
use super::stop::stopped;
use crate::ecr::Backoff;

/// Where and as whom to hold the Lease.
#[derive(Debug, Clone)]
pub struct LeaseOptions {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This replica's identity (its Pod name).
    pub identity: String,
    /// How long the Lease holds without renewal.
    pub duration: Duration,
}

/// Takes part in the election for the Lease in the background. The channel says whether this
/// replica holds it (false until it does); errors back off and never end the election. When
/// `stop` turns true the Lease is released, so another replica takes over at once.
pub fn elect(
    client: Client,
    lease: LeaseOptions,
    metrics: ReconcilerMetrics,
    mut stop: watch::Receiver<bool>,
) -> (watch::Receiver<bool>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let (duration, grace) = timing(lease.duration);
        loop {
            let built = LeaseManagerBuilder::new(client.clone(), &lease.name)
                .with_namespace(&lease.namespace)
                .with_identity(&lease.identity)
                .with_duration(duration)
                .with_grace(grace)
                .build();
            let manager = tokio::select! {
                () = stopped(&mut stop) => return,
                built = built => built,
            };
            let manager = match manager {
                Ok(m) => m,
                Err(e) => {
                    metrics.failure("lease");
                    let delay = backoff.next_delay();
                    warn!(error = %e, retry_in = ?delay, "cannot set up the Lease");
                    tokio::select! {
                        () = stopped(&mut stop) => return,
                        () = tokio::time::sleep(delay) => continue,
                    }
                }
            };
            backoff.reset();
            let (mut held, handle) = manager.watch().await;
            loop {
                let holds = *held.borrow_and_update();
                if *tx.borrow() != holds {
                    if holds {
                        info!(lease = %lease.name, identity = %lease.identity, "holding the Lease; publishing Events");
                    } else {
                        info!(lease = %lease.name, "not holding the Lease; another replica publishes Events");
                    }
                    let _ = tx.send(holds);
                }
                tokio::select! {
                    () = stopped(&mut stop) => {
                        // Dropping the receiver makes the manager release the Lease.
                        drop(held);
                        let _ = tx.send(false);
                        let _ = tokio::time::timeout(Duration::from_secs(5), handle).await;
                        return;
                    }
                    changed = held.changed() => if changed.is_err() { break },
                }
            }
            // The manager's task ended: treat the Lease as lost and start again.
            let _ = tx.send(false);
            metrics.failure("lease");
            warn!("the Lease manager stopped; starting again");
            let _ = handle.await;
            tokio::time::sleep(backoff.next_delay()).await;
        }
    });
    (rx, task)
}

/// The Lease's duration and grace in whole seconds: at least two seconds, renewed a third of
/// the way before expiry, so that clock skew and API latency stay inside it.
fn timing(duration: Duration) -> (u64, u64) {
    let duration = duration.as_secs().max(2);
    (duration, (duration / 3).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_is_renewed_a_third_before_it_expires_and_never_too_tightly() {
        assert_eq!(timing(Duration::from_secs(15)), (15, 5));
        assert_eq!(timing(Duration::from_secs(3)), (3, 1));
        assert_eq!(timing(Duration::from_millis(500)), (2, 1));
    }
}
