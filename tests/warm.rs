//! Warming the pull-through cache by tag: `pullthrough warm` (the library and the binary) and
//! the reconciler's warming, against the local ECR stand-in and a mocked API server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ecr_support;
mod kube_support;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use ecr_support::{
    BATCH_GET_IMAGE, DESCRIBE_IMAGES, Script, StandIn, digest, rule_json, sdk_client,
};
use kube::runtime::events::Reporter;
use kube_support::{Cluster, DEPLOYMENT, OWN_NAMESPACE, namespace, pod, tower_client};
use pullthrough::config::{Config, Overrides};
use pullthrough::ecr::{AwsEcr, CacheRule};
use pullthrough::metrics::Metrics;
use pullthrough::reconciler::run::{Options, Reconciler, ReconcilerMetrics};
use pullthrough::rules;
use pullthrough::warm::run::{WarmMetrics, Warmer, warm};
use pullthrough::warm::{Outcome, REASON_DIGEST_UNAVAILABLE, exit_code};
use tokio::sync::watch;

const ACCOUNT: &str = "123456789012";
const NGINX: &str = "docker-hub/library/nginx";
const API: &str = "quay/org/api";

fn config() -> Config {
    Config::load(
        "accountId: \"123456789012\"\nregion: eu-west-1\nregistries:\n  docker.io: docker-hub\n  quay.io: quay\n",
        &Overrides::default(),
    )
    .unwrap()
}

/// Upstream: `nginx:1.27` is `a`, `busybox:1.36` is `e`; `quay.io/org/api:2` was `b` when it
/// was pinned and is `c` now.
async fn stand_in() -> StandIn {
    let upstream = |tag: &str, hex| [(tag.to_owned(), digest(hex))].into();
    StandIn::start(Script {
        rules: vec![
            rule_json("docker-hub", "registry-1.docker.io"),
            rule_json("quay", "quay.io"),
        ],
        upstream: [
            (NGINX.to_owned(), upstream("1.27", 'a')),
            (API.to_owned(), upstream("2", 'c')),
            (
                "docker-hub/library/busybox".to_owned(),
                upstream("1.36", 'e'),
            ),
        ]
        .into(),
        ..Script::default()
    })
    .await
}

fn ecr(s: &StandIn) -> AwsEcr {
    AwsEcr::new(sdk_client(&s.url()), Some(ACCOUNT.into()))
}

fn manifest() -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      containers:
      - name: app
        image: nginx:1.27@{a}
      - name: api
        image: quay.io/org/api:2@{b}
      initContainers:
      - name: init
        image: busybox:1.36
---
apiVersion: batch/v1
kind: Job
metadata:
  name: once
spec:
  template:
    spec:
      containers:
      - name: run
        image: nginx:1.27@{a}
      - name: local
        image: registry.example/app:1
",
        a = digest('a'),
        b = digest('b'),
    )
}

fn outcome_of<'r>(reports: &'r [pullthrough::warm::Report], image: &str) -> &'r Outcome {
    &reports
        .iter()
        .find(|r| r.image.starts_with(image))
        .unwrap_or_else(|| panic!("no report for {image}: {reports:#?}"))
        .outcome
}

#[tokio::test]
async fn warm_fills_the_cache_by_tag_confirms_pins_and_fails_for_a_moved_tag() {
    let s = stand_in().await;
    let e = ecr(&s);
    let inputs = vec![("deploy.yaml".to_owned(), manifest())];

    // --check first: nothing is cached, and nothing is fetched.
    let checked = warm(&e, &config(), &inputs, true).await.unwrap();
    assert_eq!(checked.len(), 3, "each routed image once: {checked:#?}");
    assert!(checked.iter().all(|r| r.outcome == Outcome::NotCached));
    assert_eq!(
        exit_code(
            &checked
                .iter()
                .map(|r| r.outcome.clone())
                .collect::<Vec<_>>()
        ),
        1
    );
    assert_eq!(s.count(BATCH_GET_IMAGE), 0);

    let reports = warm(&e, &config(), &inputs, false).await.unwrap();
    assert_eq!(
        outcome_of(&reports, "nginx:1.27@"),
        &Outcome::DigestConfirmed {
            digest: digest('a'),
            warmed: true
        }
    );
    let nginx = reports
        .iter()
        .find(|r| r.image.starts_with("nginx"))
        .unwrap();
    assert_eq!(nginx.used_by, ["Deployment/web app", "Job/once run"]);
    assert_eq!(nginx.repository, NGINX);
    assert_eq!(
        outcome_of(&reports, "busybox:1.36"),
        &Outcome::Warmed {
            digest: digest('e')
        }
    );
    assert_eq!(
        outcome_of(&reports, "quay.io/org/api:2@"),
        &Outcome::DigestUnavailable {
            tag: "2".into(),
            pinned: digest('b'),
            current: digest('c'),
        }
    );
    let outcomes: Vec<Outcome> = reports.iter().map(|r| r.outcome.clone()).collect();
    assert_eq!(exit_code(&outcomes), 1, "the moved tag could not be warmed");
    assert_eq!(s.cached(NGINX), Some(vec![digest('a')]));
    assert_eq!(s.cached(API), Some(vec![digest('c')]));

    // Again: already there, nothing fetched.
    let fetched = s.count(BATCH_GET_IMAGE);
    let again = warm(&e, &config(), &inputs, false).await.unwrap();
    assert_eq!(
        outcome_of(&again, "nginx:1.27@"),
        &Outcome::DigestConfirmed {
            digest: digest('a'),
            warmed: false
        }
    );
    assert_eq!(
        outcome_of(&again, "busybox"),
        &Outcome::AlreadyCached {
            digest: digest('e')
        }
    );
    assert_eq!(
        s.count(BATCH_GET_IMAGE),
        fetched + 1,
        "only the moved tag again"
    );
}

#[tokio::test]
async fn warm_reports_an_unreadable_ecr_apart_from_unavailable_images() {
    let s = stand_in().await;
    s.script(|script| script.deny = vec![DESCRIBE_IMAGES.to_owned()]);
    let reports = warm(&ecr(&s), &config(), &[("-".into(), manifest())], false)
        .await
        .unwrap();
    let outcomes: Vec<Outcome> = reports.iter().map(|r| r.outcome.clone()).collect();
    assert!(
        outcomes.iter().all(|o| matches!(
            o,
            Outcome::Failed {
                unreadable: true,
                ..
            }
        )),
        "{outcomes:#?}"
    );
    assert_eq!(exit_code(&outcomes), 2);
}

/// `pullthrough warm` itself, configured like a pipeline would: the endpoint and credentials in
/// the environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_warm_command_warms_from_a_shell_and_exits_by_outcome() {
    let s = stand_in().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("deploy.yaml");
    std::fs::write(&file, manifest()).unwrap();
    let run = |args: Vec<String>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pullthrough"));
        cmd.args(args)
            .env_clear()
            .env("HOME", dir.path())
            .env("AWS_CONFIG_FILE", dir.path().join("none"))
            .env("AWS_SHARED_CREDENTIALS_FILE", dir.path().join("none"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ENDPOINT_URL", s.url())
            .env("AWS_ACCESS_KEY_ID", "AKIDSTANDIN")
            .env("AWS_SECRET_ACCESS_KEY", "SECRET")
            .env("AWS_MAX_ATTEMPTS", "1");
        async move {
            tokio::task::spawn_blocking(move || cmd.output().unwrap())
                .await
                .unwrap()
        }
    };
    let base = |extra: &[&str]| {
        let mut args: Vec<String> = [
            "warm",
            "-f",
            file.to_str().unwrap(),
            "--account-id",
            ACCOUNT,
            "--region",
            "eu-west-1",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    };

    let out = run(base(&[])).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("IMAGE"), "{stdout}");
    let line = |needle: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(needle))
            .unwrap_or_else(|| panic!("no {needle} in {stdout}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(
        line("nginx:1.27@").ends_with(
            "pinned digest confirmed cache holds sha256:aaaaaaaaaaaa (warmed by tag) Deployment/web app, Job/once run"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("tag 2 moved upstream: it is sha256:cccccccccccc now, not the pinned sha256:bbbbbbbbbbbb"),
        "{stdout}"
    );

    let out = run(base(&["--check", "-o", "json"])).await;
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results: Vec<&str> = reports
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"]["result"].as_str().unwrap())
        .collect();
    assert_eq!(
        results,
        ["alreadyCached", "digestConfirmed", "notCached"],
        "{reports:#}"
    );
    assert_eq!(out.status.code(), Some(1));

    s.script(|script| script.deny = vec![DESCRIBE_IMAGES.to_owned()]);
    let out = run(base(&["--check"])).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ECR cannot be read"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// === the reconciler ===

#[tokio::test]
async fn the_reconciler_warms_a_pods_pinned_image_and_warns_when_its_tag_moved() {
    let s = stand_in().await;
    let cluster = Arc::new(Mutex::new(Cluster {
        namespaces: vec![namespace("shop"), namespace(OWN_NAMESPACE)],
        pods: vec![
            pod(
                "shop",
                "web-1",
                "uid-web",
                &[&format!("nginx:1.27@{}", digest('a'))],
            ),
            pod(
                "shop",
                "api-1",
                "uid-api",
                &[&format!("quay.io/org/api:2@{}", digest('b'))],
            ),
        ],
        deployment_uid: Some("uid-deployment".into()),
        ..Cluster::default()
    }));
    let client = tower_client(cluster.clone());
    let metrics = Metrics::new().unwrap();
    let reconciler_metrics = ReconcilerMetrics::register(metrics.registry()).unwrap();
    let warmer = Warmer::new(ecr(&s), WarmMetrics::register(metrics.registry()).unwrap());
    let warms = warmer.metrics.clone();
    let present = rules::snapshot(
        &config(),
        &[
            CacheRule::new("docker-hub", "registry-1.docker.io"),
            CacheRule::new("quay", "quay.io"),
        ],
        &BTreeMap::new(),
        SystemTime::now(),
    );
    let (stop, stopped) = watch::channel(false);
    let reconciler = Reconciler {
        client,
        config: Arc::new(ArcSwap::from_pointee(config())),
        rules: Arc::new(ArcSwap::from_pointee(present)),
        metrics: reconciler_metrics,
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
            instance: Some("reconciler-0".into()),
        },
        ready: Arc::new(AtomicBool::new(false)),
        warmer: Some(warmer),
    };
    let task = tokio::spawn(reconciler.run(watch::channel(true).1, stopped));

    let events = || {
        cluster
            .lock()
            .unwrap()
            .seen
            .iter()
            // Published Events, not the list of those already published.
            .filter(|s| s.method == "POST" && s.path.starts_with("/apis/events.k8s.io/"))
            .cloned()
            .collect::<Vec<_>>()
    };
    let mut found = Vec::new();
    for _ in 0..400 {
        found = events();
        let settled = warms.warms.with_label_values(&["digest_confirmed"]).get()
            + warms.warms.with_label_values(&["digest_unavailable"]).get();
        if !found.is_empty() && settled == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // The cache now holds both tags, as pulled through the rules.
    assert_eq!(s.cached(NGINX), Some(vec![digest('a')]));
    assert_eq!(s.cached(API), Some(vec![digest('c')]));
    assert_eq!(
        warms.warms.with_label_values(&["digest_confirmed"]).get(),
        1
    );
    assert_eq!(
        warms.warms.with_label_values(&["digest_unavailable"]).get(),
        1
    );

    assert_eq!(found.len(), 1, "{found:#?}\n{:#?}", s.seen());
    let event = &found[0];
    assert_eq!(event.body["reason"], REASON_DIGEST_UNAVAILABLE);
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(event.body["regarding"]["uid"], "uid-api");
    let note = event.body["note"].as_str().unwrap();
    assert!(
        note.contains(
            "tag 2 is sha256:cccccccccccc upstream now, not the pinned sha256:bbbbbbbbbbbb"
        ),
        "{note}"
    );
    // Once per image: later passes neither warm again nor repeat the Event.
    let fetched = s.count(BATCH_GET_IMAGE);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(s.count(BATCH_GET_IMAGE), fetched);
    assert_eq!(events().len(), 1);

    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}
