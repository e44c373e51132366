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
            .filter(|s| s.path.starts_with("/apis/events.k8s.io/") && s.method != Method::GET)
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
        panic!("reconciler made no progress\n{}", self.metrics.render());
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
    start_on(
        Arc::new(Mutex::new(cluster)),
        rules,
        leader,
        IDENTITY,
        |_| {},
    )
}

/// Starts a reconciler replica named `identity` over a cluster that others may share, with its
/// options changed by `tweak`.
fn start_on(
    cluster: Arc<Mutex<Cluster>>,
    rules: RuleSnapshot,
    leader: Leader,
    identity: &str,
    tweak: impl FnOnce(&mut Options),
) -> Running {
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
                    identity: identity.into(),
                    duration: Duration::from_secs(15),
                },
                reconciler_metrics.clone(),
                stopped.clone(),
            )
            .0
        }
    };
    let mut options = Options {
        namespace_selector: "pullthrough.dev/enabled=true".into(),
        own_namespace: OWN_NAMESPACE.into(),
        deployment: Some(DEPLOYMENT.into()),
        resend_interval: Duration::from_mins(30),
        tick: Duration::from_millis(25),
        event_rate: 10.0,
        event_burst: 50,
    };
    tweak(&mut options);
    let reconciler = Reconciler {
        client,
        config: Arc::new(ArcSwap::from_pointee(config())),
        rules: rules.clone(),
        metrics: reconciler_metrics.clone(),
        options,
        reporter: Reporter {
            controller: "pullthrough".into(),
            instance: Some(identity.into()),
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
                    &format!("{CACHE}/quay/prometheus/node-exporter:v1.8.0"),
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

/// A namespace opted in by `kubectl label` at `opted_in`, as its managed fields tell.
fn labelled_namespace(name: &str, opted_in: &str) -> Value {
    let mut ns = namespace(name);
    ns["metadata"]["managedFields"] = json!([
        {"manager": "kubectl-create", "operation": "Update", "apiVersion": "v1",
         "time": "2026-01-05T10:00:00Z", "fieldsType": "FieldsV1",
         "fieldsV1": {"f:status": {"f:phase": {}}}},
        {"manager": "kubectl-label", "operation": "Update", "apiVersion": "v1",
         "time": opted_in, "fieldsType": "FieldsV1",
         "fieldsV1": {"f:metadata": {"f:labels": {"f:pullthrough.dev/enabled": {}}}}}
    ]);
    ns
}

/// A Pod of Deployment `web`, created at `created`, with its ReplicaSet as owner.
fn dated_deployment_pod(name: &str, uid: &str, created: &str, images: &[&str]) -> Value {
    let mut p = pod("shop", name, uid, images);
    p["metadata"]["creationTimestamp"] = json!(created);
    p["metadata"]["labels"] = json!({"app": "web", "pod-template-hash": "7d4b9c"});
    p["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9c",
        "uid": "uid-rs", "controller": true, "blockOwnerDeletion": true
    }]);
    p
}

/// A Pod of the Deployment `deployment`, through its ReplicaSet, as the Deployment controller
/// makes them.
fn deployment_pod(namespace: &str, deployment: &str, index: usize, image: &str) -> Value {
    let hash = "5d8f9c7b4";
    let mut p = pod(
        namespace,
        &format!("{deployment}-{hash}-{index:05}"),
        &format!("uid-{deployment}-{index}"),
        &[image],
    );
    p["metadata"]["labels"] = json!({"app": deployment, "pod-template-hash": hash});
    p["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{deployment}-{hash}"),
        "uid": format!("uid-rs-{deployment}"), "controller": true, "blockOwnerDeletion": true,
    }]);
    p
}

#[tokio::test]
async fn warns_on_a_pod_that_bypasses_the_cache() {
    let cluster = Cluster {
        namespaces: vec![labelled_namespace("shop", "2026-03-01T12:00:00Z")],
        pods: vec![
            // Created before the namespace was opted in: still on Docker Hub.
            dated_deployment_pod(
                "web-7d4b9c-aaaaa",
                "uid-old",
                "2026-02-01T09:00:00Z",
                &["nginx:1.27", &format!("{CACHE}/quay/org/tool:2")],
            ),
            // Created after, and rewritten: nothing to say.
            dated_deployment_pod(
                "web-7d4b9c-bbbbb",
                "uid-new",
                "2026-03-02T09:00:00Z",
                &[&format!("{CACHE}/docker-hub/library/nginx:1.27")],
            ),
            // Opted out: its upstream image is what it asked for.
            {
                let mut p = pod("shop", "debug", "uid-skip", &["busybox:1.36"]);
                p["metadata"]["annotations"] = json!({"pullthrough.dev/skip": "true"});
                p
            },
            // Put back on its original by the fallback: not a bypass either.
            {
                let mut p = pod("shop", "batch", "uid-fallback", &["redis:7"]);
                p["metadata"]["annotations"] = json!({"pullthrough.dev/fallback": "[\"c0\"]"});
                p
            },
        ],
        deployment_uid: Some("uid-deployment".into()),
        ..Cluster::default()
    };
    let r = start(cluster, all_present(), Leader::Held);
    r.wait_for_events(2).await;
    r.settle().await;
    // One Event on the Deployment, and, while it has few affected Pods, one on the Pod.
    let events = r.events();
    assert_eq!(events.len(), 2, "{events:#?}");
    let on_deployment = events
        .iter()
        .find(|e| e.body["regarding"]["kind"] == "Deployment")
        .expect("an Event on the Deployment");
    assert_eq!(on_deployment.body["regarding"]["name"], "web");
    assert_eq!(
        on_deployment.body["reason"],
        "ImageBypassesPullThroughCache"
    );
    let event = events
        .iter()
        .find(|e| e.body["regarding"]["kind"] == "Pod")
        .expect("an Event on the Pod");
    assert_eq!(event.method, Method::POST);
    assert_eq!(event.path, "/apis/events.k8s.io/v1/namespaces/shop/events");
    let body = &event.body;
    assert_eq!(body["type"], "Warning");
    assert_eq!(body["reason"], "ImageBypassesPullThroughCache");
    assert_eq!(body["regarding"]["kind"], "Pod");
    assert_eq!(body["regarding"]["uid"], "uid-old");
    let note = body["note"].as_str().unwrap();
    for needle in [
        "Pods of Deployment web run docker.io images from the upstream registry",
        "rule docker-hub (account 123456789012, region eu-west-1)",
        "kubectl rollout restart deployment/web -n shop",
        "container c0 runs nginx:1.27 (would be 123456789012.dkr.ecr.eu-west-1.amazonaws.com/docker-hub/library/nginx:1.27)",
        "created before its namespace was opted in (2026-03-01T12:00:00Z)",
    ] {
        assert!(note.contains(needle), "{needle:?} not in {note:?}");
    }
    assert!(note.len() <= 1024);
    let metrics = r.metrics.render();
    assert!(
        metrics.contains("pullthrough_bypassing_containers{registry=\"docker.io\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pullthrough_bypassing_containers{registry=\"quay.io\"} 0"),
        "{metrics}"
    );
    // The same Pods by state: what `pullthrough coverage` would print.
    for line in [
        "pullthrough_containers{registry=\"docker.io\",state=\"bypassing\"} 1",
        "pullthrough_containers{registry=\"docker.io\",state=\"cached\"} 1",
        "pullthrough_containers{registry=\"docker.io\",state=\"excluded\"} 2",
        "pullthrough_containers{registry=\"quay.io\",state=\"cached\"} 1",
        "pullthrough_containers{registry=\"other\",state=\"uncacheable\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} not in {metrics}");
    }
    r.stop().await;
}

#[tokio::test]
async fn a_bypass_is_neither_published_nor_counted_without_the_lease() {
    let cluster = Cluster {
        namespaces: vec![namespace("shop")],
        pods: vec![pod("shop", "web", "uid-web", &["nginx:1.27"])],
        ..Cluster::default()
    };
    let (_give, leader) = watch::channel(false);
    let r = start(cluster, all_present(), Leader::Given(leader));
    r.wait_ready().await;
    r.settle().await;
    assert!(r.events().is_empty(), "{:#?}", r.events());
    assert!(
        !r.metrics
            .render()
            .contains("pullthrough_bypassing_containers{")
    );
    assert!(!r.metrics.render().contains("pullthrough_containers{"));
    r.stop().await;
}

#[tokio::test]
async fn a_pod_older_than_its_rule_is_told_so() {
    let cluster = Cluster {
        namespaces: vec![labelled_namespace("shop", "2026-01-10T08:00:00Z")],
        pods: vec![dated_deployment_pod(
            "web-7d4b9c-aaaaa",
            "uid-old",
            "2026-02-01T09:00:00Z",
            &["nginx:1.27"],
        )],
        ..Cluster::default()
    };
    // The Docker Hub rule was created on 15 February, after the Pod.
    let created = humantime::parse_rfc3339("2026-02-15T00:00:00Z").unwrap();
    let rules = snapshot(&[
        CacheRule {
            created_at: Some(created),
            ..rule("docker-hub", "registry-1.docker.io")
        },
        rule("quay", "quay.io"),
    ]);
    let r = start(cluster, rules, Leader::Held);
    let events = r.wait_for_events(1).await;
    let note = events[0].body["note"].as_str().unwrap();
    assert_eq!(events[0].body["reason"], "ImageBypassesPullThroughCache");
    assert!(
        note.contains(
            "created before the pull-through cache rule existed or was usable (2026-02-15T00:00:00Z)"
        ),
        "{note}"
    );
    r.stop().await;
}

fn posts(r: &Running) -> Vec<Seen> {
    r.events()
        .into_iter()
        .filter(|s| s.method == Method::POST)
        .collect()
}

fn patches(r: &Running) -> Vec<Seen> {
    r.events()
        .into_iter()
        .filter(|s| s.method == Method::PATCH)
        .collect()
}

fn event_lists(cluster: &Arc<Mutex<Cluster>>) -> usize {
    cluster
        .lock()
        .unwrap()
        .seen
        .iter()
        .filter(|s| s.method == Method::GET && s.path == "/apis/events.k8s.io/v1/events")
        .count()
}

#[tokio::test]
async fn a_deployments_pods_get_one_event_on_the_deployment() {
    let image = format!("{CACHE}/docker-hub/library/nginx:1.27");
    let mut cluster = Cluster {
        namespaces: vec![namespace("shop"), namespace(OWN_NAMESPACE)],
        deployment_uid: Some("uid-deployment".into()),
        ..Cluster::default()
    };
    cluster.deployments = vec![json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "uid": "uid-web-deployment"},
    })];
    cluster.pods = (0..12)
        .map(|i| deployment_pod("shop", "web", i, &image))
        .chain((0..2).map(|i| deployment_pod("shop", "api", i, &image)))
        .collect();
    let r = start(cluster, docker_hub_missing(), Leader::Held);
    // web: one Event; api (two Pods): one Event and one on each Pod; the summary.
    let events = r.wait_for_events(5).await;
    r.settle().await;
    assert_eq!(r.events().len(), 5, "{:#?}", r.events());
    let on_web: Vec<&Seen> = events
        .iter()
        .filter(|e| e.body["regarding"]["name"] == "web")
        .collect();
    assert_eq!(on_web.len(), 1, "{on_web:#?}");
    let web = &on_web[0];
    assert_eq!(web.method, Method::POST);
    assert_eq!(web.path, "/apis/events.k8s.io/v1/namespaces/shop/events");
    assert_eq!(web.body["regarding"]["kind"], "Deployment");
    assert_eq!(web.body["regarding"]["apiVersion"], "apps/v1");
    // Read once, so that kubectl describe deployment shows the Event.
    assert_eq!(web.body["regarding"]["uid"], "uid-web-deployment");
    let api_event = events
        .iter()
        .find(|e| e.body["regarding"]["name"] == "api")
        .unwrap();
    assert!(
        api_event.body["regarding"].get("uid").is_none(),
        "a Deployment that cannot be read: the Event goes out without its UID"
    );
    assert_eq!(web.body["reason"], "PullThroughCacheRuleMissing");
    assert_eq!(web.body["type"], "Warning");
    assert_eq!(web.body["action"], "CheckPullThroughCacheRules");
    assert_eq!(web.body["reportingController"], "pullthrough");
    assert_eq!(web.body["reportingInstance"], IDENTITY);
    assert_eq!(
        web.body["metadata"]["annotations"]["pullthrough.dev/cause"],
        "docker.io"
    );
    let note = web.body["note"].as_str().unwrap();
    assert!(
        note.contains("12 of the 12 Pods of Deployment web are affected: web-5d8f9c7b4-00000: Container c0 cannot pull"),
        "{note}"
    );
    assert!(
        note.contains("aws ecr create-pull-through-cache-rule"),
        "{note}"
    );
    assert!(note.len() <= 1024);
    assert!(
        !events.iter().any(|e| e.body["regarding"]["kind"] == "Pod"
            && e.body["regarding"]["name"]
                .as_str()
                .unwrap()
                .starts_with("web-")),
        "no Event on each of web's twelve Pods"
    );
    let on_api_pods = events
        .iter()
        .filter(|e| {
            e.body["regarding"]["kind"] == "Pod"
                && e.body["regarding"]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("api-")
        })
        .count();
    assert_eq!(
        on_api_pods, 2,
        "a workload with few Pods: each gets its own"
    );
    let summary = events
        .iter()
        .find(|e| e.body["reason"] == "PullThroughCacheRulesUnusable")
        .unwrap();
    assert!(
        summary.body["note"]
            .as_str()
            .unwrap()
            .contains("docker-hub (docker.io) missing, 14 Pods"),
        "{}",
        summary.body["note"]
    );
    r.stop().await;
}

#[tokio::test]
async fn a_replica_that_takes_over_the_lease_repeats_nothing_and_continues_the_series() {
    let cluster = Arc::new(Mutex::new(shop()));
    let (lease_a, held_a) = watch::channel(true);
    let a = start_on(
        cluster.clone(),
        docker_hub_missing(),
        Leader::Given(held_a),
        "reconciler-0",
        |_| {},
    );
    a.wait_for_events(2).await;
    let first = posts(&a);
    // The other replica watches meanwhile, with a short resend interval so that the repeat
    // comes within the test.
    let (lease_b, held_b) = watch::channel(false);
    let b = start_on(
        cluster.clone(),
        docker_hub_missing(),
        Leader::Given(held_b),
        "reconciler-1",
        |o| o.resend_interval = Duration::from_secs(1),
    );
    b.wait_ready().await;
    // The holder stops; the other takes the Lease.
    lease_a.send(false).unwrap();
    a.stop().await;
    let lists_before = event_lists(&cluster);
    lease_b.send(true).unwrap();
    for _ in 0..200 {
        if event_lists(&cluster) > lists_before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        event_lists(&cluster) > lists_before,
        "the new holder lists the Events"
    );
    let list = cluster
        .lock()
        .unwrap()
        .seen
        .iter()
        .rev()
        .find(|s| s.path == "/apis/events.k8s.io/v1/events")
        .cloned()
        .unwrap();
    assert!(
        list.query
            .contains("fieldSelector=reportingController%3Dpullthrough"),
        "{}",
        list.query
    );
    b.settle().await;
    assert_eq!(
        posts(&b).len(),
        2,
        "nothing new was created: {:#?}",
        b.events()
    );
    // After the resend interval, the standing Events are repeated as series of the same objects.
    for _ in 0..200 {
        if patches(&b).len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let repeats = patches(&b);
    assert_eq!(repeats.len(), 2, "{:#?}", b.events());
    for (repeat, created) in repeats.iter().zip(&first) {
        let name = created.body["metadata"]["name"].as_str().unwrap();
        assert!(
            repeat.path.ends_with(&format!("/events/{name}")),
            "{}",
            repeat.path
        );
        assert_eq!(repeat.body["series"]["count"], 2);
        assert!(repeat.body["series"]["lastObservedTime"].is_string());
        assert!(
            repeat.body.get("reportingInstance").is_none(),
            "only the series changes"
        );
    }
    assert_eq!(posts(&b).len(), 2, "{:#?}", b.events());
    let stored = cluster.lock().unwrap().events.clone();
    assert_eq!(
        stored.len(),
        2,
        "one object per Pod and cause, and the summary"
    );
    assert!(
        stored
            .iter()
            .all(|e| e["reportingInstance"] == "reconciler-0")
    );
    drop(lease_b);
    b.stop().await;
}

#[tokio::test]
async fn a_restarted_reconciler_repeats_nothing() {
    let cluster = Arc::new(Mutex::new(shop()));
    let first = start_on(
        cluster.clone(),
        docker_hub_missing(),
        Leader::Held,
        IDENTITY,
        |_| {},
    );
    first.wait_for_events(2).await;
    first.stop().await;
    let again = start_on(
        cluster.clone(),
        docker_hub_missing(),
        Leader::Held,
        IDENTITY,
        |_| {},
    );
    again.wait_ready().await;
    again.wait_passes(1).await;
    again.settle().await;
    assert_eq!(again.events().len(), 2, "{:#?}", again.events());
    assert!(
        again
            .metrics
            .render()
            .contains("pullthrough_reconciler_standing_warnings 2")
    );
    again.stop().await;
}

#[tokio::test]
async fn a_cause_that_ended_while_nobody_held_the_lease_gets_its_resolution() {
    let cluster = Arc::new(Mutex::new(shop()));
    let first = start_on(
        cluster.clone(),
        docker_hub_missing(),
        Leader::Held,
        IDENTITY,
        |_| {},
    );
    first.wait_for_events(2).await;
    first.stop().await;
    // The rule was created while no reconciler ran.
    let next = start_on(
        cluster.clone(),
        all_present(),
        Leader::Held,
        "reconciler-1",
        |_| {},
    );
    let events = next.wait_for_events(4).await;
    next.settle().await;
    assert_eq!(next.events().len(), 4, "{:#?}", next.events());
    let restored = events
        .iter()
        .find(|e| is_pod_event(e, "uid-web") && e.body["type"] == "Normal")
        .expect("Normal event on shop/web");
    assert_eq!(restored.method, Method::POST);
    assert_eq!(restored.body["reason"], "PullThroughCacheRuleRestored");
    assert_eq!(
        restored.body["metadata"]["annotations"]["pullthrough.dev/resolves"],
        "PullThroughCacheRuleMissing"
    );
    assert!(
        restored.body["note"]
            .as_str()
            .unwrap()
            .contains("docker.io is usable again")
    );
    assert!(
        events
            .iter()
            .any(|e| e.body["reason"] == "PullThroughCacheRulesReady")
    );
    // And a third start finds nothing standing.
    next.stop().await;
    let third = start_on(
        cluster.clone(),
        all_present(),
        Leader::Held,
        IDENTITY,
        |_| {},
    );
    third.wait_ready().await;
    third.wait_passes(1).await;
    third.settle().await;
    assert_eq!(third.events().len(), 4, "{:#?}", third.events());
    third.stop().await;
}

#[tokio::test]
async fn nothing_is_published_until_the_published_events_are_known() {
    let mut cluster = shop();
    cluster.failing_event_lists = 1;
    let r = start(cluster, docker_hub_missing(), Leader::Held);
    r.wait_ready().await;
    for _ in 0..200 {
        if r.metrics.render().contains("kind=\"event_list\"} 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(r.events().is_empty(), "{:#?}", r.events());
    // The list is retried after a back-off of at least a second; then the Warnings go out.
    let events = r.wait_for_events(2).await;
    assert_eq!(events.len(), 2);
    r.stop().await;
}

#[tokio::test]
async fn the_rate_limit_holds_events_back_for_later_passes() {
    let mut cluster = shop();
    for i in 0..6 {
        cluster.pods.push(pod(
            "shop",
            &format!("job-{i}"),
            &format!("uid-job-{i}"),
            &["redis:7"],
        ));
    }
    let r = start_on(
        Arc::new(Mutex::new(cluster)),
        docker_hub_missing(),
        Leader::Held,
        IDENTITY,
        |o| {
            o.event_rate = 20.0;
            o.event_burst = 2;
        },
    );
    // Seven bare Pods and the summary: eight Events, two at once, the rest as tokens come.
    let events = r.wait_for_events(8).await;
    r.settle().await;
    assert_eq!(r.events().len(), 8, "{events:#?}");
    let rendered = r.metrics.render();
    let held: u64 = rendered
        .lines()
        .find_map(|l| l.strip_prefix("pullthrough_events_rate_limited_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(held >= 6, "{rendered}");
    r.stop().await;
}
