//! The reconciler against a mocked Kubernetes API server (a `tower-test` service behind a real
//! `kube::Client`): each test is one scenario, and asserts the requests the reconciler made.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ecr_support;
mod kube_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use http::Method;
use kube::runtime::events::Reporter;
use pullthrough::config::{Config, Overrides};
use pullthrough::ecr::{AwsEcr, CacheRule};
use pullthrough::metrics::Metrics;
use pullthrough::reconciler::run::{LeaseOptions, Options, Reconciler, ReconcilerMetrics, elect};
use pullthrough::rules::{self, RuleSnapshot};
use serde_json::{Value, json};
use tokio::sync::watch;

use kube_support::{Cluster, DEPLOYMENT, LEASE, OWN_NAMESPACE, Seen, namespace, pod, tower_client};

const ACCOUNT: &str = "123456789012";
const REGION: &str = "eu-west-1";
const CACHE: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
const IDENTITY: &str = "reconciler-0";

fn config() -> Config {
    Config::load(
        &format!(
            "accountId: \"{ACCOUNT}\"\nregion: {REGION}\nregistries:\n  docker.io: docker-hub\n  quay.io: quay\n"
        ),
        &Overrides::default(),
    )
    .unwrap()
}

fn rule(prefix: &str, url: &str) -> CacheRule {
    CacheRule::new(prefix, url)
}

/// A snapshot as a fetch of `rules` would give it.
fn snapshot(rules: &[CacheRule]) -> RuleSnapshot {
    rules::snapshot(&config(), rules, &BTreeMap::new(), SystemTime::now())
}

fn all_present() -> RuleSnapshot {
    snapshot(&[
        rule("docker-hub", "registry-1.docker.io"),
        rule("quay", "quay.io"),
    ])
}

fn docker_hub_missing() -> RuleSnapshot {
    snapshot(&[rule("quay", "quay.io")])
}

struct Running {
    cluster: Arc<Mutex<Cluster>>,
    rules: Arc<ArcSwap<RuleSnapshot>>,
    metrics: Metrics,
    reconciler_metrics: ReconcilerMetrics,
    ready: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn events(&self) -> Vec<Seen> {
        self.cluster
            .lock()
            .unwrap()
            .seen
            .iter()
            .filter(|s| s.path.starts_with("/apis/events.k8s.io/"))
            .cloned()
            .collect()
    }

    async fn wait_for_events(&self, n: usize) -> Vec<Seen> {
        for _ in 0..200 {
            let events = self.events();
            if events.len() >= n {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("expected {n} event writes, saw {:#?}", self.events());
    }

    async fn wait_ready(&self) {
        for _ in 0..200 {
            if self.ready.load(Ordering::Acquire) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("reconciler never became ready");
    }

    /// Gives the loop a dozen ticks to do anything more it would do.
    async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    /// Waits until the reconciler has made `passes` passes in all, so that "nothing happened"
    /// is a real observation.
    async fn wait_passes(&self, passes: u64) {
        for _ in 0..200 {
            if self.reconciler_metrics.runs.get() >= passes {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("reconciler made no progress");
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("reconciler stops")
            .unwrap();
    }
}

/// Who holds the Lease in a scenario.
enum Leader {
    /// This replica, throughout.
    Held,
    /// As the test's channel says.
    Given(watch::Receiver<bool>),
    /// A real election against the mocked API server's Lease.
    Elected,
}

/// Starts the reconciler over `cluster` with `rules`.
fn start(cluster: Cluster, rules: RuleSnapshot, leader: Leader) -> Running {
    let cluster = Arc::new(Mutex::new(cluster));
    let client = tower_client(cluster.clone());
    let metrics = Metrics::new().unwrap();
    let reconciler_metrics = ReconcilerMetrics::register(metrics.registry()).unwrap();
    let rules = Arc::new(ArcSwap::from_pointee(rules));
    let ready = Arc::new(AtomicBool::new(false));
    let (stop, stopped) = watch::channel(false);
    let leader = match leader {
        Leader::Held => watch::channel(true).1,
        Leader::Given(rx) => rx,
        Leader::Elected => {
            elect(
                client.clone(),
                LeaseOptions {
                    name: LEASE.into(),
                    namespace: OWN_NAMESPACE.into(),
                    identity: IDENTITY.into(),
                    duration: Duration::from_secs(15),
                },
                reconciler_metrics.clone(),
                stopped.clone(),
            )
            .0
        }
    };
    let reconciler = Reconciler {
        client,
        config: Arc::new(ArcSwap::from_pointee(config())),
        rules: rules.clone(),
        metrics: reconciler_metrics.clone(),
        options: Options {
            namespace_selector: "pullthrough.dev/enabled=true".into(),
            own_namespace: OWN_NAMESPACE.into(),
            deployment: Some(DEPLOYMENT.into()),
            resend_interval: Duration::from_mins(30),
            tick: Duration::from_millis(25),
        },
        reporter: Reporter {
            controller: "pullthrough".into(),
            instance: Some(IDENTITY.into()),
        },
        ready: ready.clone(),
        warmer: None,
    };
    let task = tokio::spawn(reconciler.run(leader, stopped));
    Running {
        cluster,
        rules,
        metrics,
        reconciler_metrics,
        ready,
        stop,
        task,
    }
}

/// Pods in an opted-in namespace, an unlabelled one, and the reconciler's own.
fn shop() -> Cluster {
    Cluster {
        namespaces: vec![namespace("shop"), namespace(OWN_NAMESPACE)],
        pods: vec![
            pod(
                "shop",
                "web",
                "uid-web",
                &[
                    &format!("{CACHE}/docker-hub/library/nginx:1.27"),
                    "quay.io/prometheus/node-exporter:v1.8.0",
                ],
            ),
            pod(
                "shop",
                "api",
                "uid-api",
                &[&format!("{CACHE}/quay/org/api:2")],
            ),
            pod(
                "other",
                "web",
                "uid-other",
                &[&format!("{CACHE}/docker-hub/library/nginx:1.27")],
            ),
            pod(
                OWN_NAMESPACE,
                "self",
                "uid-self",
                &[&format!("{CACHE}/docker-hub/library/redis:7")],
            ),
        ],
        deployment_uid: Some("uid-deployment".into()),
        ..Cluster::default()
    }
}

fn is_pod_event(seen: &Seen, uid: &str) -> bool {
    seen.body["regarding"]["uid"] == uid
}

#[tokio::test]
async fn warns_on_an_opted_in_pod_whose_rule_is_missing() {
    let r = start(shop(), docker_hub_missing(), Leader::Held);
    let events = r.wait_for_events(2).await;
    r.settle().await;
    let events_after = r.events();
    assert_eq!(
        events_after.len(),
        2,
        "one Pod Warning and one summary, nothing more: {events_after:#?}"
    );

    let pod_event = events
        .iter()
        .find(|e| is_pod_event(e, "uid-web"))
        .expect("event on shop/web");
    assert_eq!(pod_event.method, Method::POST);
    assert_eq!(
        pod_event.path,
        "/apis/events.k8s.io/v1/namespaces/shop/events"
    );
    let body = &pod_event.body;
    assert_eq!(body["type"], "Warning");
    assert_eq!(body["reason"], "PullThroughCacheRuleMissing");
    assert_eq!(body["reportingController"], "pullthrough");
    assert_eq!(body["reportingInstance"], IDENTITY);
    assert_eq!(body["regarding"]["kind"], "Pod");
    assert_eq!(body["regarding"]["name"], "web");
    let note = body["note"].as_str().unwrap();
    for needle in [
        "docker-hub",
        ACCOUNT,
        REGION,
        "library/nginx:1.27",
        "aws ecr create-pull-through-cache-rule",
        "--upstream-registry-url registry-1.docker.io",
    ] {
        assert!(note.contains(needle), "{needle:?} not in {note:?}");
    }
    assert!(note.len() <= 1024);
    assert!(
        !note.contains("node-exporter"),
        "the quay rule exists: {note}"
    );

    let summary = events
        .iter()
        .find(|e| e.body["regarding"]["kind"] == "Deployment")
        .expect("summary on the Deployment");
    assert_eq!(
        summary.path,
        format!("/apis/events.k8s.io/v1/namespaces/{OWN_NAMESPACE}/events")
    );
    assert_eq!(summary.body["reason"], "PullThroughCacheRulesUnusable");
    assert_eq!(summary.body["regarding"]["uid"], "uid-deployment");
    let note = summary.body["note"].as_str().unwrap();
    assert!(
        note.contains("docker-hub (docker.io) missing, 1 Pod"),
        "{note}"
    );

    // The Pods outside opted-in namespaces got nothing.
    assert!(
        !events_after
            .iter()
            .any(|e| is_pod_event(e, "uid-other") || is_pod_event(e, "uid-self"))
    );
    let rendered = r.metrics.render();
    assert!(
        rendered.contains("pullthrough_events_total{reason=\"PullThroughCacheRuleMissing\"} 1"),
        "{rendered}"
    );
    assert!(
        rendered.contains("pullthrough_reconciler_pods 2"),
        "{rendered}"
    );
    assert!(rendered.contains("pullthrough_reconciler_leader 1"));

    // Both watchers listed and watched, pods without finished ones.
    let seen = r.cluster.lock().unwrap().seen.clone();
    let pod_list = seen
        .iter()
        .find(|s| s.path == "/api/v1/pods" && !s.query.contains("watch=true"))
        .unwrap();
    assert!(
        pod_list.query.contains("fieldSelector=status.phase"),
        "{}",
        pod_list.query
    );
    let ns_list = seen
        .iter()
        .find(|s| s.path == "/api/v1/namespaces")
        .unwrap();
    assert!(
        ns_list
            .query
            .contains("labelSelector=pullthrough.dev%2Fenabled%3Dtrue"),
        "{}",
        ns_list.query
    );
    assert!(
        seen.iter()
            .any(|s| s.path == "/api/v1/pods" && s.query.contains("watch=true"))
    );
    r.stop().await;
}

#[tokio::test]
async fn no_event_when_every_rule_exists() {
    let r = start(shop(), all_present(), Leader::Held);
    r.wait_ready().await;
    r.wait_passes(1).await;
    // Changing nothing but the snapshot makes the reconciler look again.
    r.rules.store(Arc::new(all_present()));
    r.wait_passes(2).await;
    assert!(r.events().is_empty(), "{:#?}", r.events());
    assert!(r.metrics.render().contains("pullthrough_reconciler_pods 2"));
    r.stop().await;
}

#[tokio::test]
async fn normal_events_when_the_rule_comes_back() {
    let r = start(shop(), docker_hub_missing(), Leader::Held);
    r.wait_for_events(2).await;
    r.rules.store(Arc::new(all_present()));
    let events = r.wait_for_events(4).await;
    r.settle().await;
    assert_eq!(r.events().len(), 4, "{:#?}", r.events());

    let restored = events
        .iter()
        .find(|e| is_pod_event(e, "uid-web") && e.body["type"] == "Normal")
        .expect("Normal event on shop/web");
    assert_eq!(restored.method, Method::POST);
    assert_eq!(restored.body["reason"], "PullThroughCacheRuleRestored");
    assert!(
        restored.body["note"]
            .as_str()
            .unwrap()
            .contains("docker.io")
    );
    let ready = events
        .iter()
        .find(|e| e.body["regarding"]["kind"] == "Deployment" && e.body["type"] == "Normal")
        .expect("Normal summary");
    assert_eq!(ready.body["reason"], "PullThroughCacheRulesReady");

    // And when it goes missing again, a new Warning.
    r.rules.store(Arc::new(docker_hub_missing()));
    let events = r.wait_for_events(6).await;
    let warnings = events
        .iter()
        .filter(|e| is_pod_event(e, "uid-web") && e.body["type"] == "Warning")
        .count();
    assert_eq!(warnings, 2);
    r.stop().await;
}

#[tokio::test]
async fn nothing_is_published_without_the_lease() {
    let mut cluster = shop();
    let renew = now_rfc3339();
    cluster.lease = Some(json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": LEASE, "namespace": OWN_NAMESPACE, "resourceVersion": "7"},
        "spec": {"holderIdentity": "reconciler-1", "leaseDurationSeconds": 3600,
                 "acquireTime": renew, "renewTime": renew},
    }));
    let r = start(cluster, docker_hub_missing(), Leader::Elected);
    r.wait_ready().await;
    // Wait until the election has read the Lease, then give the loop time to act.
    for _ in 0..200 {
        if r.cluster
            .lock()
            .unwrap()
            .seen
            .iter()
            .any(|s| s.path.ends_with(&format!("/leases/{LEASE}")))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(r.events().is_empty(), "{:#?}", r.events());
    assert!(
        r.metrics
            .render()
            .contains("pullthrough_reconciler_leader 0")
    );
    let lease_writes = r
        .cluster
        .lock()
        .unwrap()
        .seen
        .iter()
        .filter(|s| s.path.contains("/leases") && s.method != Method::GET)
        .count();
    assert_eq!(lease_writes, 0, "another replica holds the Lease");
    r.stop().await;
}

#[tokio::test]
async fn takes_a_free_lease_and_publishes() {
    let r = start(shop(), docker_hub_missing(), Leader::Elected);
    r.wait_for_events(2).await;
    let lease = r.cluster.lock().unwrap().lease.clone();
    let lease = lease.expect("the Lease was created");
    assert_eq!(lease["spec"]["holderIdentity"], IDENTITY);
    assert!(
        r.metrics
            .render()
            .contains("pullthrough_reconciler_leader 1")
    );
    let shared = r.cluster.clone();
    r.stop().await;
    // Stopping releases the Lease, so another replica takes over at once.
    for _ in 0..100 {
        if shared
            .lock()
            .unwrap()
            .lease
            .as_ref()
            .is_some_and(|l| l["spec"].get("holderIdentity").is_none())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "the Lease was not released: {:?}",
        shared.lock().unwrap().lease
    );
}

#[tokio::test]
async fn failed_publications_are_retried_without_duplicates() {
    let mut cluster = shop();
    cluster.reject_events = Some(500);
    let r = start(cluster, docker_hub_missing(), Leader::Held);
    r.wait_for_events(1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Backed off: one attempt, not one per tick.
    assert_eq!(r.events().len(), 1, "{:#?}", r.events());
    assert!(
        r.metrics
            .render()
            .contains("pullthrough_reconcile_failures_total{kind=\"event_publish\"} 1")
    );
    r.cluster.lock().unwrap().reject_events = None;
    let events = r.wait_for_events(3).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let accepted = r.events().len() - 1;
    assert_eq!(accepted, 2, "{events:#?}");
    r.stop().await;
}

/// The whole path: the real SDK client reads the rules from the ECR stand-in, the refresh
/// loop swaps in the snapshot, the reconciler warns, and the webhook stops rewriting.
#[tokio::test]
async fn ecr_standin_to_event_and_webhook() {
    use ecr_support::{Script, StandIn, rule_json};
    use pullthrough::refresh;
    let ecr = StandIn::start(Script {
        rules: vec![rule_json("quay", "quay.io")],
        ..Script::default()
    })
    .await;
    let r = start(shop(), RuleSnapshot::unknown(), Leader::Held);
    let config = Arc::new(ArcSwap::from_pointee(config()));
    let (stop_refresh, refresh_stopped) = watch::channel(false);
    let refresher = tokio::spawn(refresh::run(
        AwsEcr::new(ecr_support::sdk_client(&ecr.url()), Some(ACCOUNT.into())),
        config.clone(),
        r.rules.clone(),
        r.metrics.rules.clone(),
        async move {
            let mut rx = refresh_stopped;
            let _ = rx.wait_for(|s| *s).await;
        },
    ));
    let events = r.wait_for_events(2).await;
    assert!(
        events.iter().any(
            |e| is_pod_event(e, "uid-web") && e.body["reason"] == "PullThroughCacheRuleMissing"
        )
    );
    let rendered = r.metrics.render();
    assert!(
        rendered.contains(
            "pullthrough_rule_status{prefix=\"docker-hub\",registry=\"docker.io\",state=\"missing\"} 1"
        ),
        "{rendered}"
    );
    assert!(rendered.contains(
        "pullthrough_rule_status{prefix=\"quay\",registry=\"quay.io\",state=\"present\"} 1"
    ));
    let body = std::fs::read("tests/fixtures/admission/pod-create-simple.json").unwrap();
    let (cfg, snap) = (config.load_full(), r.rules.load_full());
    let reviewed = pullthrough::admission::review(&cfg, &snap, &body).unwrap();
    let out = reviewed.response.into_review().to_vec();
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert!(
        out["response"].get("patch").is_none(),
        "nothing is rewritten to a missing rule: {out}"
    );
    let warnings = out["response"]["warnings"].to_string();
    assert!(warnings.contains("docker-hub"), "{warnings}");
    let _ = stop_refresh.send(true);
    refresher.await.unwrap();
    r.stop().await;
}

fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

#[tokio::test]
async fn api_errors_and_closed_watches_are_survived_without_duplicates() {
    let mut cluster = shop();
    cluster.failing_pod_lists = 1;
    cluster.close_watches = true;
    let r = start(cluster, docker_hub_missing(), Leader::Held);
    r.wait_for_events(2).await;
    // Closed watches are opened again, Pods are listed again; no Event is repeated.
    for _ in 0..200 {
        let watches = r
            .cluster
            .lock()
            .unwrap()
            .seen
            .iter()
            .filter(|s| s.path == "/api/v1/pods" && s.query.contains("watch=true"))
            .count();
        if watches >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    r.settle().await;
    assert_eq!(r.events().len(), 2, "{:#?}", r.events());
    let rendered = r.metrics.render();
    assert!(
        rendered.contains("pullthrough_reconcile_failures_total{kind=\"pod_watch\"} 1"),
        "{rendered}"
    );
    r.stop().await;
}

#[tokio::test]
async fn losing_and_regaining_the_lease_repeats_nothing() {
    let (lease, held) = watch::channel(true);
    let r = start(shop(), docker_hub_missing(), Leader::Given(held));
    r.wait_for_events(2).await;
    lease.send(false).unwrap();
    r.settle().await;
    assert!(
        r.metrics
            .render()
            .contains("pullthrough_reconciler_leader 0")
    );
    // While another replica holds it, the rule comes back and goes again: nothing from us.
    r.rules.store(Arc::new(all_present()));
    r.settle().await;
    r.rules.store(Arc::new(docker_hub_missing()));
    r.settle().await;
    assert_eq!(r.events().len(), 2);
    lease.send(true).unwrap();
    r.settle().await;
    assert_eq!(r.events().len(), 2, "{:#?}", r.events());
    assert!(
        r.metrics
            .render()
            .contains("pullthrough_reconciler_leader 1")
    );
    r.stop().await;
}
