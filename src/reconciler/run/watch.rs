//! The watchers: Pods of every namespace (finished ones left out) and the opted-in namespaces, fed into the shared inventory.

use futures::{Stream, StreamExt as _};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Api;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::inventory::{NamespaceFeed, PodFeed, Shared, lock};
use super::metrics::ReconcilerMetrics;
use super::stop::stopped;

/// Pods per page of a list.
const PAGE: u32 = 500;

/// Feeds a watcher's events into the inventory through `apply`, until `stop`.
pub(super) async fn drive<K, S>(
    stream: S,
    what: &'static str,
    metrics: &ReconcilerMetrics,
    mut stop: watch::Receiver<bool>,
    mut apply: impl FnMut(watcher::Event<K>),
) where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    let mut failing = false;
    loop {
        let item = tokio::select! {
            () = stopped(&mut stop) => break,
            item = stream.next() => item,
        };
        match item {
            Some(Ok(event)) => {
                if std::mem::take(&mut failing) {
                    info!(what, "watch recovered");
                }
                apply(event);
            }
            Some(Err(e)) => {
                metrics.failure(what);
                if failing {
                    debug!(what, error = %e, "watch failing");
                } else {
                    warn!(what, error = %e, "watch failed; retrying with back-off");
                    failing = true;
                }
            }
            None => break,
        }
    }
}

pub(super) async fn watch_pods(
    api: Api<Pod>,
    inventory: Shared,
    metrics: ReconcilerMetrics,
    stop: watch::Receiver<bool>,
) {
    // Finished Pods pull nothing more. Lists are paged (not served whole from the API server's
    // cache), so that no more than a page of full Pods is held while their records are made.
    let config = watcher::Config::default()
        .fields("status.phase!=Succeeded,status.phase!=Failed")
        .page_size(PAGE);
    let stream = watcher(api, config).default_backoff();
    let mut feed = PodFeed::default();
    drive(stream, "pod_watch", &metrics, stop, |event| {
        feed.apply(&mut lock(&inventory), event);
    })
    .await;
}

pub(super) async fn watch_namespaces(
    api: Api<Namespace>,
    selector: String,
    inventory: Shared,
    metrics: ReconcilerMetrics,
    stop: watch::Receiver<bool>,
) {
    let stream = watcher(api, watcher::Config::default().labels(&selector)).default_backoff();
    let mut feed = NamespaceFeed::new(&selector);
    drive(stream, "namespace_watch", &metrics, stop, |event| {
        feed.apply(&mut lock(&inventory), event);
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failing_watch_is_counted_and_its_events_still_applied() {
        let metrics = ReconcilerMetrics::register(&prometheus::Registry::new()).unwrap();
        let (_tx, stop) = watch::channel(false);
        let items: Vec<Result<watcher::Event<Namespace>, watcher::Error>> = vec![
            Ok(watcher::Event::Init),
            Err(watcher::Error::NoResourceVersion),
            Err(watcher::Error::NoResourceVersion),
            Ok(watcher::Event::InitDone),
        ];
        let mut applied = 0;
        drive(
            futures::stream::iter(items),
            "namespace_watch",
            &metrics,
            stop,
            |_| {
                applied += 1;
            },
        )
        .await;
        assert_eq!(applied, 2);
        assert_eq!(
            metrics
                .failures
                .with_label_values(&["namespace_watch"])
                .get(),
            2
        );
    }

    #[tokio::test]
    async fn a_watch_ends_when_told_to_stop() {
        let metrics = ReconcilerMetrics::register(&prometheus::Registry::new()).unwrap();
        let (tx, stop) = watch::channel(false);
        tx.send(true).unwrap();
        let mut applied = 0;
        drive(
            futures::stream::pending::<Result<watcher::Event<Pod>, watcher::Error>>(),
            "pod_watch",
            &metrics,
            stop,
            |_| applied += 1,
        )
        .await;
        assert_eq!(applied, 0);
    }
}
