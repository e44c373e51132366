//! Pull failures of rewritten images against a mocked Kubernetes API server (a `tower-test`
//! service behind a real `kube::Client`): the Warning per cause, the recovery, the fallback
//! patch with its annotation and Event, and silence without the Lease.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod kube_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use http::Method;
use kube::runtime::events::Reporter;
use pullthrough::config::{Config, Fallback, Overrides};
use pullthrough::ecr::CacheRule;
use pullthrough::metrics::Metrics;
use pullthrough::reconciler::run::{LeaseOptions, Options, Reconciler, ReconcilerMetrics, elect};
use pullthrough::rules::{self, RuleSnapshot};
use serde_json::{Value, json};
use tokio::sync::watch;

use kube_support::{Cluster, DEPLOYMENT, LEASE, OWN_NAMESPACE, Seen, namespace, tower_client};

const ACCOUNT: &str = "123456789012";
const REGION: &str = "eu-west-1";
const CACHE: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
const IDENTITY: &str = "reconciler-0";

fn config() -> Config {
    Config::load(
        &format!(
            "accountId: \"{ACCOUNT}\"\nregion: {REGION}\nregistries:\n  docker.io: docker-hub\n  quay.io: quay\n  ghcr.io: github\n"
        ),
        &Overrides::default(),
    )
    .unwrap()
}

/// Fallback on, after a fraction of a second: the file's lower bound (30s) keeps people from
/// falling back on a transient failure, and is no use to a test.
fn fallback_config() -> Config {
    let mut c = config();
    c.fallback = Fallback {
        enabled: true,
        after: Duration::from_millis(300),
    };
    c
}

fn snapshot(present: &[(&str, &str)]) -> RuleSnapshot {
    let rules: Vec<CacheRule> = present.iter().map(|&(p, u)| CacheRule::new(p, u)).collect();
    rules::snapshot(&config(), &rules, &BTreeMap::new(), SystemTime::now())
}

fn all_present() -> RuleSnapshot {
    snapshot(&[
        ("docker-hub", "registry-1.docker.io"),
        ("quay", "quay.io"),
        ("github", "ghcr.io"),
    ])
}

/// A Pod whose container `app` was rewritten from `original` to `image`, in the given state.
fn pod(name: &str, original: &str, image: &str, state: &Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name, "namespace": "shop", "uid": format!("uid-{name}"), "resourceVersion": "5",
            "annotations": {
                "pullthrough.dev/original-images": json!({"app": original}).to_string()
            },
        },
        "spec": {"containers": [{"name": "app", "image": image}]},
        "status": {"phase": "Pending", "containerStatuses": [{
            "name": "app", "image": image, "imageID": "", "ready": false, "restartCount": 0,
            "state": state,
        }]},
    })
}

fn waiting(reason: &str, message: &str) -> Value {
    json!({"waiting": {"reason": reason, "message": message}})
}

fn running() -> Value {
    json!({"running": {"startedAt": "2026-12-02T07:00:00Z"}})
}

/// The kubelet's ErrImagePull message for `image`, ending in containerd's error `tail`.
fn pull_error(image: &str, tail: &str) -> String {
    format!(
        "rpc error: code = Unknown desc = failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": {tail}"
    )
}

fn nginx() -> String {
    format!("{CACHE}/docker-hub/library/nginx:1.27")
}

const IMPORT_DENIED: &str = "pull access denied, repository does not exist or may require authorization: server message: denied: User: arn:aws:sts::123456789012:assumed-role/eks-node-group/i-0abc12345 is not authorized to perform: ecr:BatchImportUpstreamImage on resource: arn:aws:ecr:eu-west-1:123456789012:repository/docker-hub/library/nginx because no identity-based policy allows the ecr:BatchImportUpstreamImage action";

struct Running {
    cluster: Arc<Mutex<Cluster>>,
    config: Arc<ArcSwap<Config>>,
    metrics: Metrics,
    ready: Arc<AtomicBool>,
    runs: ReconcilerMetrics,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

enum Leader {
    Held,
    Elected,
}

fn start(pods: Vec<Value>, rules: RuleSnapshot, config: Config, leader: &Leader) -> Running {
    start_in(
        Cluster {
            namespaces: vec![namespace("shop"), namespace(OWN_NAMESPACE)],
            pods,
            deployment_uid: Some("uid-deployment".into()),
            ..Cluster::default()
        },
        rules,
        config,
        leader,
    )
}

fn start_in(cluster: Cluster, rules: RuleSnapshot, config: Config, leader: &Leader) -> Running {
    let cluster = Arc::new(Mutex::new(cluster));
    let client = tower_client(cluster.clone());
    let metrics = Metrics::new().unwrap();
    let runs = ReconcilerMetrics::register(metrics.registry()).unwrap();
    let ready = Arc::new(AtomicBool::new(false));
    let (stop, stopped) = watch::channel(false);
    let leader = match leader {
        Leader::Held => watch::channel(true).1,
        Leader::Elected => {
            elect(
                client.clone(),
                LeaseOptions {
                    name: LEASE.into(),
                    namespace: OWN_NAMESPACE.into(),
                    identity: IDENTITY.into(),
                    duration: Duration::from_secs(15),
                },
                runs.clone(),
                stopped.clone(),
            )
            .0
        }
    };
    let config = Arc::new(ArcSwap::from_pointee(config));
    let reconciler = Reconciler {
        client,
        config: config.clone(),
        rules: Arc::new(ArcSwap::from_pointee(rules)),
        metrics: runs.clone(),
        options: Options {
            namespace_selector: "pullthrough.dev/enabled=true".into(),
            own_namespace: OWN_NAMESPACE.into(),
            deployment: Some(DEPLOYMENT.into()),
            resend_interval: Duration::from_mins(30),
            tick: Duration::from_millis(25),
            event_rate: 1000.0,
            event_burst: 1000,
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
        config,
        metrics,
        ready,
        runs,
        stop,
        task,
    }
}

impl Running {
    fn seen(&self) -> Vec<Seen> {
        self.cluster.lock().unwrap().seen.clone()
    }

    fn events(&self, reason: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.path.starts_with("/apis/events.k8s.io/") && s.body["reason"] == reason)
            .collect()
    }

    fn pod_patches(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == Method::PATCH && s.path.contains("/pods/"))
            .collect()
    }

    async fn wait_for(&self, what: &str, done: impl Fn(&Self) -> bool) {
        for _ in 0..250 {
            if done(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{what} never happened; requests: {:#?}", self.seen());
    }

    async fn wait_for_events(&self, reason: &str, n: usize) -> Vec<Seen> {
        self.wait_for(&format!("{n} {reason} events"), |r| {
            r.events(reason).len() >= n
        })
        .await;
        self.events(reason)
    }

    /// Makes the reconciler look again `n` times (a reloaded, equal configuration is a reason
    /// to), so that "nothing more happened" is an observation.
    async fn more_passes(&self, n: usize) {
        for _ in 0..n {
            let before = self.runs.runs.get();
            self.config
                .store(Arc::new(Config::clone(&self.config.load_full())));
            self.wait_for("a reconcile pass", |r| r.runs.runs.get() > before)
                .await;
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("reconciler stops")
            .unwrap();
    }
}

fn regarding<'s>(events: &'s [Seen], pod: &str) -> &'s Seen {
    events
        .iter()
        .find(|e| e.body["regarding"]["name"] == pod)
        .unwrap_or_else(|| panic!("no event on {pod}: {events:#?}"))
}

#[tokio::test]
async fn each_cause_gets_its_warning_and_its_count() {
    let quay = format!("{CACHE}/quay/org/app:2");
    let ghcr = format!("{CACHE}/github/org/tool:1");
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "denied",
            pod(
                "denied",
                "nginx:1.27",
                &nginx(),
                &waiting("ErrImagePull", &pull_error(&nginx(), IMPORT_DENIED)),
            ),
            "node_role_permission",
            "the node's IAM role is not allowed ecr:BatchImportUpstreamImage",
        ),
        (
            "create",
            pod(
                "create",
                "nginx:1.27",
                &nginx(),
                &waiting(
                    "ImagePullBackOff",
                    &format!(
                        "Back-off pulling image \"{}\": ErrImagePull: {}",
                        nginx(),
                        pull_error(
                            &nginx(),
                            "unexpected status from GET request to https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/v2/docker-hub/library/nginx/manifests/1.27: 403 Forbidden - Server message: denied: User: arn:aws:sts::123456789012:assumed-role/eks-node/i-0abc is not authorized to perform: ecr:CreateRepository on resource: arn:aws:ecr:eu-west-1:123456789012:repository/docker-hub/library/nginx"
                        )
                    ),
                ),
            ),
            "node_role_permission",
            "is not allowed ecr:CreateRepository",
        ),
        (
            "forbidden",
            pod(
                "forbidden",
                "nginx:1.27",
                &nginx(),
                &waiting(
                    "ErrImagePull",
                    &pull_error(
                        &nginx(),
                        "unexpected status from HEAD request to https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/v2/docker-hub/library/nginx/manifests/1.27: 403 Forbidden",
                    ),
                ),
            ),
            "node_role_permission",
            "likely lacks ecr:BatchImportUpstreamImage or ecr:CreateRepository",
        ),
        (
            "limited",
            pod(
                "limited",
                "nginx:1.27",
                &nginx(),
                &waiting(
                    "ErrImagePull",
                    &pull_error(
                        &nginx(),
                        "unexpected status from GET request to https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/v2/docker-hub/library/nginx/manifests/1.27: 429 Too Many Requests - Server message: toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit",
                    ),
                ),
            ),
            "upstream_rate_limit",
            "the upstream registry rate-limits the pulls",
        ),
        (
            "throttled",
            pod(
                "throttled",
                "nginx:1.27",
                &nginx(),
                &waiting(
                    "ErrImagePull",
                    &pull_error(
                        &nginx(),
                        "unexpected status from HEAD request to https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/v2/docker-hub/library/nginx/manifests/1.27: 429 Too Many Requests - Server message: toomanyrequests: Rate exceeded",
                    ),
                ),
            ),
            "ecr_throttling",
            "ECR throttles the account's requests",
        ),
        (
            "missing-tag",
            pod(
                "missing-tag",
                "quay.io/org/app:2",
                &quay,
                &waiting(
                    "ErrImagePull",
                    &format!(
                        "rpc error: code = NotFound desc = failed to pull and unpack image \"{quay}\": failed to resolve reference \"{quay}\": {quay}: not found"
                    ),
                ),
            ),
            "image_not_found",
            "the image or tag does not exist upstream",
        ),
        (
            "credentials",
            pod(
                "credentials",
                "ghcr.io/org/tool:1",
                &ghcr,
                &waiting(
                    "ErrImagePull",
                    &pull_error(
                        &ghcr,
                        "pull access denied, repository does not exist or may require authorization: server message: denied: The authentication to the upstream registry failed. Verify that the credentials are valid and try again.",
                    ),
                ),
            ),
            "upstream_credentials",
            "ecr-pullthroughcache/github",
        ),
        (
            "timeout",
            pod(
                "timeout",
                "nginx:1.27",
                &nginx(),
                &waiting(
                    "ErrImagePull",
                    &pull_error(
                        &nginx(),
                        "failed to do request: Head \"https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/v2/docker-hub/library/nginx/manifests/1.27\": dial tcp 10.0.3.17:443: i/o timeout",
                    ),
                ),
            ),
            "unknown",
            "dial tcp 10.0.3.17:443: i/o timeout",
        ),
    ];
    let pods: Vec<Value> = cases.iter().map(|c| c.1.clone()).collect();
    let r = start(pods, all_present(), config(), &Leader::Held);
    let events = r
        .wait_for_events("PullThroughCachePullFailing", cases.len())
        .await;
    for (name, _, _, needle) in &cases {
        let e = regarding(&events, name);
        assert_eq!(e.method, Method::POST);
        assert_eq!(e.path, "/apis/events.k8s.io/v1/namespaces/shop/events");
        assert_eq!(e.body["type"], "Warning");
        assert_eq!(e.body["regarding"]["kind"], "Pod");
        assert_eq!(e.body["regarding"]["uid"], format!("uid-{name}"));
        let note = e.body["note"].as_str().unwrap();
        assert!(note.contains(needle), "{name}: {needle:?} not in {note:?}");
        assert!(note.contains("container app cannot pull"), "{name}: {note}");
        assert!(note.len() <= 1024);
    }
    let rendered = r.metrics.render();
    for (cause, n) in [
        ("node_role_permission", 3),
        ("upstream_rate_limit", 1),
        ("ecr_throttling", 1),
        ("image_not_found", 1),
        ("upstream_credentials", 1),
        ("unknown", 1),
        ("rule_missing", 0),
        ("rule_wrong_upstream", 0),
    ] {
        let line = format!("pullthrough_pull_failures_total{{cause=\"{cause}\"}} {n}");
        assert!(rendered.contains(&line), "{line} not in {rendered}");
    }
    // Nothing more: no repeats, no patches (the fallback is off).
    r.more_passes(3).await;
    assert_eq!(r.events("PullThroughCachePullFailing").len(), cases.len());
    assert!(r.pod_patches().is_empty());
    r.stop().await;
}

#[tokio::test]
async fn the_rule_snapshot_names_a_missing_or_misdirected_rule() {
    let quay = format!("{CACHE}/quay/org/app:2");
    let not_found = |image: &str| {
        waiting(
            "ErrImagePull",
            &format!(
                "rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": {image}: not found"
            ),
        )
    };
    let pods = vec![
        pod("hub", "nginx:1.27", &nginx(), &not_found(&nginx())),
        pod("quay", "quay.io/org/app:2", &quay, &not_found(&quay)),
    ];
    // docker-hub missing, quay caching another upstream.
    let rules = snapshot(&[("quay", "quay.example.com"), ("github", "ghcr.io")]);
    let r = start(pods, rules, config(), &Leader::Held);
    let events = r.wait_for_events("PullThroughCachePullFailing", 2).await;
    let hub = regarding(&events, "hub").body["note"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        hub.contains("the pull-through cache rule does not exist"),
        "{hub}"
    );
    assert!(
        hub.contains("aws ecr create-pull-through-cache-rule --region eu-west-1"),
        "{hub}"
    );
    let quay = regarding(&events, "quay").body["note"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(quay.contains("caches another upstream registry"), "{quay}");
    assert!(quay.contains("delete-pull-through-cache-rule"), "{quay}");
    let rendered = r.metrics.render();
    assert!(rendered.contains("pullthrough_pull_failures_total{cause=\"rule_missing\"} 1"));
    assert!(rendered.contains("pullthrough_pull_failures_total{cause=\"rule_wrong_upstream\"} 1"));
    r.stop().await;
}

#[tokio::test]
async fn a_recovered_pull_gets_a_normal_event_once_the_container_starts() {
    let failing = pod(
        "web",
        "nginx:1.27",
        &nginx(),
        &waiting("ErrImagePull", &pull_error(&nginx(), IMPORT_DENIED)),
    );
    // An image the webhook did not rewrite fails too: not pullthrough's to report.
    let mut foreign = pod(
        "foreign",
        "nginx:1.27",
        "registry.example.com/app:1",
        &waiting("ErrImagePull", "not found"),
    );
    foreign["metadata"]["annotations"] = json!({});
    let r = start(
        vec![failing.clone(), foreign],
        all_present(),
        config(),
        &Leader::Held,
    );
    r.wait_for_events("PullThroughCachePullFailing", 1).await;

    let mut started = failing.clone();
    started["status"]["containerStatuses"][0]["state"] = running();
    started["status"]["containerStatuses"][0]["started"] = json!(true);
    r.cluster.lock().unwrap().update_pod(started);
    let recovered = r.wait_for_events("PullThroughCachePullRecovered", 1).await;
    let e = regarding(&recovered, "web");
    assert_eq!(e.body["type"], "Normal");
    let note = e.body["note"].as_str().unwrap();
    // Published by the grouped Event layer as the resolution of the Pod's Warning.
    assert!(
        note.contains("failed to pull through the ECR pull-through cache have started"),
        "{note}"
    );
    r.more_passes(3).await;
    assert_eq!(r.events("PullThroughCachePullFailing").len(), 1);
    assert_eq!(r.events("PullThroughCachePullRecovered").len(), 1);
    assert!(
        r.seen()
            .iter()
            .all(|s| s.body["regarding"]["name"] != "foreign")
    );
    r.stop().await;
}

#[tokio::test]
async fn a_failing_container_falls_back_once_with_its_annotation_and_event() {
    let failing = pod(
        "web",
        "nginx:1.27",
        &nginx(),
        &waiting("ImagePullBackOff", &pull_error(&nginx(), IMPORT_DENIED)),
    );
    let r = start(
        vec![failing],
        all_present(),
        fallback_config(),
        &Leader::Held,
    );
    r.wait_for_events("PullThroughCachePullFailing", 1).await;
    let fallback = r.wait_for_events("PullThroughCacheFallback", 1).await;

    let patches = r.pod_patches();
    assert_eq!(patches.len(), 1, "{patches:#?}");
    assert_eq!(patches[0].path, "/api/v1/namespaces/shop/pods/web");
    let ops = patches[0].body.as_array().unwrap();
    let ops: Vec<(String, String)> = ops
        .iter()
        .map(|o| {
            (
                o["op"].as_str().unwrap().to_owned(),
                o["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        ops,
        [
            ("test".into(), "/metadata/uid".into()),
            ("test".into(), "/spec/containers/0/image".into()),
            ("replace".into(), "/spec/containers/0/image".into()),
            (
                "add".into(),
                "/metadata/annotations/pullthrough.dev~1fallback".into()
            ),
        ]
    );
    let stored = r.cluster.lock().unwrap().pods[0].clone();
    assert_eq!(stored["spec"]["containers"][0]["image"], "nginx:1.27");
    assert_eq!(
        stored["metadata"]["annotations"]["pullthrough.dev/fallback"],
        "[\"app\"]"
    );

    let e = regarding(&fallback, "web");
    assert_eq!(e.body["type"], "Warning");
    assert_eq!(e.body["action"], "FallBackToOriginalImage");
    let note = e.body["note"].as_str().unwrap();
    assert!(
        note.contains(&format!(
            "container app from {} back to nginx:1.27",
            nginx()
        )),
        "{note}"
    );
    assert!(note.contains("ecr:BatchImportUpstreamImage"), "{note}");

    // The kubelet keeps reporting the old failure for a while: never a second patch.
    r.more_passes(3).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(r.pod_patches().len(), 1);
    assert_eq!(r.events("PullThroughCacheFallback").len(), 1);
    let rendered = r.metrics.render();
    assert!(
        rendered.contains("pullthrough_fallbacks_total{result=\"done\"} 1"),
        "{rendered}"
    );
    assert!(rendered.contains("pullthrough_events_total{reason=\"PullThroughCacheFallback\"} 1"));

    // The container starts on its original image: the warning is resolved.
    let mut started = r.cluster.lock().unwrap().pods[0].clone();
    started["status"]["containerStatuses"][0]["state"] = running();
    r.cluster.lock().unwrap().update_pod(started);
    let recovered = r.wait_for_events("PullThroughCachePullRecovered", 1).await;
    let note = recovered[0].body["note"].as_str().unwrap();
    assert!(
        note.contains("failed to pull through the ECR pull-through cache have started"),
        "{note}"
    );
    r.stop().await;
}

#[tokio::test]
async fn a_pod_changed_meanwhile_is_not_overwritten() {
    let failing = pod(
        "web",
        "nginx:1.27",
        &nginx(),
        &waiting("ErrImagePull", &pull_error(&nginx(), IMPORT_DENIED)),
    );
    let r = start(
        vec![failing.clone()],
        all_present(),
        fallback_config(),
        &Leader::Held,
    );
    r.wait_for_events("PullThroughCachePullFailing", 1).await;
    // Someone sets another image on the stored Pod without the watch hearing of it yet.
    r.cluster.lock().unwrap().pods[0]["spec"]["containers"][0]["image"] = json!("nginx:1.28");
    r.wait_for("a fallback attempt", |r| !r.pod_patches().is_empty())
        .await;
    r.more_passes(3).await;
    assert_eq!(r.pod_patches().len(), 1, "tried once, not again");
    assert_eq!(
        r.cluster.lock().unwrap().pods[0]["spec"]["containers"][0]["image"],
        "nginx:1.28"
    );
    assert!(r.events("PullThroughCacheFallback").is_empty());
    assert!(
        r.metrics
            .render()
            .contains("pullthrough_fallbacks_total{result=\"conflict\"} 1")
    );
    r.stop().await;
}

#[tokio::test]
async fn nothing_is_published_or_patched_without_the_lease() {
    let failing = pod(
        "web",
        "nginx:1.27",
        &nginx(),
        &waiting("ErrImagePull", &pull_error(&nginx(), IMPORT_DENIED)),
    );
    let renew = k8s_openapi::jiff::Timestamp::now().to_string();
    let cluster = Cluster {
        namespaces: vec![namespace("shop"), namespace(OWN_NAMESPACE)],
        pods: vec![failing],
        deployment_uid: Some("uid-deployment".into()),
        lease: Some(json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE, "namespace": OWN_NAMESPACE, "resourceVersion": "7"},
            "spec": {"holderIdentity": "reconciler-1", "leaseDurationSeconds": 3600,
                     "acquireTime": renew, "renewTime": renew},
        })),
        ..Cluster::default()
    };
    let r = start_in(cluster, all_present(), fallback_config(), &Leader::Elected);
    r.wait_for("readiness", |r| r.ready.load(Ordering::Acquire))
        .await;
    r.wait_for("the Lease read", |r| {
        r.seen()
            .iter()
            .any(|s| s.path.ends_with(&format!("/leases/{LEASE}")))
    })
    .await;
    // Longer than the fallback delay, with the loop ticking all along.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let writes: Vec<Seen> = r
        .seen()
        .into_iter()
        .filter(|s| s.path.starts_with("/apis/events.k8s.io/") || s.path.contains("/pods/"))
        .collect();
    assert!(writes.is_empty(), "{writes:#?}");
    assert!(
        r.metrics
            .render()
            .contains("pullthrough_reconciler_leader 0")
    );
    r.stop().await;
}
