//! `reconciler --manage-policy` against a mocked API server: the policy task applies the
//! MutatingAdmissionPolicy at start (server-side apply, field manager `pullthrough`), applies it
//! again when a rule goes missing and when it comes back, does nothing while another replica
//! holds the Lease, and reports a policy the API server refuses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod kube_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use kube::runtime::events::Reporter;
use kube_support::{Cluster, DEPLOYMENT, OWN_NAMESPACE, POLICIES, Seen, tower_client};
use pullthrough::config::{Config, Overrides};
use pullthrough::digests::DigestSnapshot;
use pullthrough::ecr::CacheRule;
use pullthrough::metrics::Metrics;
use pullthrough::policy::Options;
use pullthrough::policy::apply::{FIELD_MANAGER, PolicyMetrics, PolicyTask};
use pullthrough::reconciler::writer::EventWriter;
use pullthrough::rules::{self, RuleSnapshot};
use serde_json::Value;
use tokio::sync::watch;

fn config() -> Config {
    Config::load(
        "accountId: \"123456789012\"\nregion: eu-west-1\n",
        &Overrides::default(),
    )
    .unwrap()
}

/// Every default rule present, or all but Docker Hub's.
fn rules(docker_hub: bool) -> RuleSnapshot {
    let mut present = vec![
        CacheRule::new("quay", "quay.io"),
        CacheRule::new("github", "ghcr.io"),
        CacheRule::new("k8s", "registry.k8s.io"),
        CacheRule::new("ecr-public", "public.ecr.aws"),
        CacheRule::new("gitlab", "registry.gitlab.com"),
    ];
    if docker_hub {
        present.push(CacheRule::new("docker-hub", "registry-1.docker.io"));
    }
    rules::snapshot(
        &config(),
        &present,
        &std::collections::BTreeMap::new(),
        SystemTime::now(),
    )
}

struct Running {
    cluster: Arc<Mutex<Cluster>>,
    rules: Arc<ArcSwap<RuleSnapshot>>,
    leader: watch::Sender<bool>,
    stop: watch::Sender<bool>,
    metrics: Metrics,
    task: tokio::task::JoinHandle<()>,
}

fn start(cluster: Cluster, leading: bool, rules_now: RuleSnapshot) -> Running {
    let cluster = Arc::new(Mutex::new(cluster));
    let client = tower_client(cluster.clone());
    let metrics = Metrics::new().unwrap();
    let rules = Arc::new(ArcSwap::from_pointee(rules_now));
    let (leader, leader_rx) = watch::channel(leading);
    let (stop, stop_rx) = watch::channel(false);
    let task = PolicyTask {
        client: client.clone(),
        config: Arc::new(ArcSwap::from_pointee(config())),
        rules: rules.clone(),
        digests: Arc::new(ArcSwap::from_pointee(DigestSnapshot::EMPTY)),
        options: Options::default(),
        events: EventWriter::new(
            client,
            Reporter {
                controller: "pullthrough".to_owned(),
                instance: Some("test".to_owned()),
            },
        ),
        deployment: Some((OWN_NAMESPACE.to_owned(), DEPLOYMENT.to_owned())),
        metrics: PolicyMetrics::register(metrics.registry()).unwrap(),
        tick: Duration::from_millis(20),
        min_interval: Duration::from_millis(100),
    };
    let task = tokio::spawn(task.run(leader_rx, stop_rx));
    Running {
        cluster,
        rules,
        leader,
        stop,
        metrics,
        task,
    }
}

impl Running {
    fn applies(&self) -> Vec<Seen> {
        self.cluster
            .lock()
            .unwrap()
            .seen
            .iter()
            .filter(|s| s.method == "PATCH" && s.path.starts_with(POLICIES))
            .cloned()
            .collect()
    }

    fn events(&self) -> Vec<Value> {
        self.cluster.lock().unwrap().events.clone()
    }

    async fn until(&self, what: &str, done: impl Fn(&Self) -> bool) {
        for _ in 0..250 {
            if done(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{what} never happened\n{}", self.metrics.render());
    }

    fn stored_registries(&self) -> String {
        self.cluster.lock().unwrap().policies[0]["metadata"]["annotations"]
            ["pullthrough.dev/registries"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the task stops")
            .unwrap();
    }
}

fn shop() -> Cluster {
    Cluster {
        deployment_uid: Some("deploy-uid".to_owned()),
        ..Cluster::default()
    }
}

#[tokio::test]
async fn applies_the_policy_at_start_with_server_side_apply() {
    let r = start(shop(), true, rules(true));
    r.until("an apply", |r| !r.applies().is_empty()).await;
    let apply = &r.applies()[0];
    assert!(
        apply
            .query
            .contains(&format!("fieldManager={FIELD_MANAGER}")),
        "{}",
        apply.query
    );
    assert!(apply.query.contains("force=true"), "{}", apply.query);
    assert_eq!(apply.path, format!("{POLICIES}/pullthrough"));
    assert_eq!(apply.body["kind"], "MutatingAdmissionPolicy");
    // Only the policy: the chart owns the binding.
    assert!(
        r.cluster
            .lock()
            .unwrap()
            .seen
            .iter()
            .all(|s| !s.path.contains("mutatingadmissionpolicybindings"))
    );
    r.until("the metrics", |r| {
        r.metrics
            .render()
            .contains("pullthrough_policy_applies_total{result=\"applied\"} 1")
    })
    .await;
    assert!(
        r.metrics
            .render()
            .contains("pullthrough_policy_registries 6")
    );
    // Nothing changes: nothing is applied again.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(r.applies().len(), 1);
    r.stop().await;
}

#[tokio::test]
async fn a_missing_rule_leaves_the_policy_and_returns_with_it() {
    let r = start(shop(), true, rules(true));
    r.until("the first apply", |r| r.applies().len() == 1).await;
    assert!(r.stored_registries().contains("docker.io"));

    r.rules.store(Arc::new(rules(false)));
    r.until("the apply without Docker Hub", |r| r.applies().len() == 2)
        .await;
    assert_eq!(
        r.stored_registries(),
        "ghcr.io,public.ecr.aws,quay.io,registry.gitlab.com,registry.k8s.io"
    );
    r.until("the Event", |r| !r.events().is_empty()).await;
    let event = &r.events()[0];
    assert_eq!(event["reason"], "PullThroughPolicyChanged");
    assert_eq!(event["type"], "Normal");
    assert_eq!(event["regarding"]["name"], DEPLOYMENT);
    assert!(
        event["note"]
            .as_str()
            .unwrap()
            .contains("removed docker.io"),
        "{event}"
    );
    assert!(
        r.metrics
            .render()
            .contains("pullthrough_policy_registries 5")
    );

    r.rules.store(Arc::new(rules(true)));
    r.until("the apply with Docker Hub", |r| r.applies().len() == 3)
        .await;
    assert!(r.stored_registries().contains("docker.io"));
    r.until("the second Event", |r| r.events().len() == 2).await;
    assert!(
        r.events()[1]["note"]
            .as_str()
            .unwrap()
            .contains("added docker.io")
    );
    r.stop().await;
}

#[tokio::test]
async fn does_nothing_without_the_lease_and_takes_over_what_is_there() {
    let r = start(shop(), false, rules(true));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        r.cluster.lock().unwrap().seen.is_empty(),
        "no request at all without the Lease"
    );
    // Another replica applied the same policy: gaining the Lease reads it and applies nothing.
    let planned = pullthrough::policy::plan(
        &config(),
        &rules(true),
        &DigestSnapshot::EMPTY,
        &Options::default(),
    )
    .unwrap();
    r.cluster
        .lock()
        .unwrap()
        .policies
        .push(planned.policy.clone());
    r.leader.send(true).unwrap();
    r.until("the read", |r| {
        r.cluster
            .lock()
            .unwrap()
            .seen
            .iter()
            .any(|s| s.method == "GET" && s.path.starts_with(POLICIES))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        r.applies().is_empty(),
        "the policy in place is the one it would apply"
    );
    // A change is applied by the new holder, and told against what was there.
    r.rules.store(Arc::new(rules(false)));
    r.until("the apply", |r| r.applies().len() == 1).await;
    r.until("the Event", |r| !r.events().is_empty()).await;
    r.stop().await;
}

#[tokio::test]
async fn a_refused_policy_is_reported_once_and_not_sent_again() {
    let mut cluster = shop();
    cluster.refuse_policy = Some((
        422,
        "MutatingAdmissionPolicy.admissionregistration.k8s.io \"pullthrough\" is invalid: spec.variables[2].expression: Invalid value: estimated cost exceeds budget".to_owned(),
    ));
    let r = start(cluster, true, rules(true));
    r.until("the Warning", |r| !r.events().is_empty()).await;
    let event = &r.events()[0];
    assert_eq!(event["reason"], "PullThroughPolicyRefused");
    assert_eq!(event["type"], "Warning");
    assert!(
        event["note"]
            .as_str()
            .unwrap()
            .contains("estimated cost exceeds budget"),
        "{event}"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(r.applies().len(), 1, "a refused policy is not sent again");
    assert_eq!(r.events().len(), 1);
    assert!(
        r.metrics
            .render()
            .contains("pullthrough_policy_applies_total{result=\"refused\"} 1")
    );
    // The next change is tried.
    r.cluster.lock().unwrap().refuse_policy = None;
    r.rules.store(Arc::new(rules(false)));
    r.until("the apply", |r| r.applies().len() == 2).await;
    r.stop().await;
}
