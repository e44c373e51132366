//! The real `pullthrough reconciler` binary against an API server and an ECR endpoint on
//! loopback: the mocked API server over plain HTTP (reached through a kubeconfig) and the ECR
//! stand-in (reached through `AWS_ENDPOINT_URL_ECR`). Everything is configured the way a
//! Deployment configures it: flags, the downward-API variables and the AWS environment.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ecr_support;
mod kube_support;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ecr_support::{Script, StandIn, rule_json};
use kube_support::{Cluster, LEASE, OWN_NAMESPACE, namespace, pod, serve_http};

const CACHE: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A plain HTTP/1.0 GET; returns the status line and body.
fn get(addr: SocketAddr, path: &str) -> Option<(String, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_owned(), body.to_owned()))
}

struct Reconciler(Child);

impl Drop for Reconciler {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warns_within_one_refresh_and_releases_the_lease_on_sigterm() {
    let ecr = StandIn::start(Script {
        rules: vec![rule_json("quay", "quay.io")],
        ..Script::default()
    })
    .await;
    let cluster = Arc::new(Mutex::new(Cluster {
        namespaces: vec![namespace("shop")],
        pods: vec![pod(
            "shop",
            "web",
            "uid-web",
            &[&format!("{CACHE}/docker-hub/library/nginx:1.27")],
        )],
        deployment_uid: Some("uid-deployment".into()),
        ..Cluster::default()
    }));
    let api = serve_http(cluster.clone()).await;

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: http://{api}\nusers:\n- name: local\n  user: {{}}\ncontexts:\n- name: local\n  context:\n    cluster: local\n    user: local\n    namespace: default\ncurrent-context: local\n"
        ),
    )
    .unwrap();
    let config = dir.path().join("pullthrough.yaml");
    std::fs::write(
        &config,
        "accountId: \"123456789012\"\nregion: eu-west-1\nregistries:\n  docker.io: docker-hub\n  quay.io: quay\nruleCheck:\n  interval: 10s\n",
    )
    .unwrap();
    let admin = free_addr();
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_pullthrough"))
        .env_clear()
        .env("HOME", dir.path())
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAME", "reconciler-0")
        .env("POD_NAMESPACE", OWN_NAMESPACE)
        .env("PULLTHROUGH_DEPLOYMENT_NAME", "pullthrough-reconciler")
        .env("AWS_ACCESS_KEY_ID", "AKIDSTANDIN")
        .env("AWS_SECRET_ACCESS_KEY", "SECRET")
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_ENDPOINT_URL_ECR", ecr.url())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", dir.path().join("aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.path().join("aws-credentials"),
        )
        .args(["reconciler", "--config"])
        .arg(&config)
        .args(["--admin-listen", &admin.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    let mut reconciler = Reconciler(child);
    let logs = || std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();

    // The Warning arrives within one refresh interval (10 s).
    let event = loop {
        let found = cluster
            .lock()
            .unwrap()
            .seen
            .iter()
            .find(|s| s.method == "POST" && s.body["regarding"]["uid"] == "uid-web")
            .cloned();
        if let Some(e) = found {
            break e;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no Event within one refresh interval\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "Event after {:?}: {} {} on {}/{}: {}",
        started.elapsed(),
        event.body["type"],
        event.body["reason"],
        event.body["regarding"]["namespace"],
        event.body["regarding"]["name"],
        event.body["note"]
    );
    assert_eq!(event.path, "/apis/events.k8s.io/v1/namespaces/shop/events");
    assert_eq!(event.body["reason"], "PullThroughCacheRuleMissing");
    assert_eq!(event.body["reportingInstance"], "reconciler-0");
    assert!(
        event.body["note"]
            .as_str()
            .unwrap()
            .contains("aws ecr create-pull-through-cache-rule")
    );
    assert!(ecr.count(ecr_support::DESCRIBE) >= 1);
    let lease = cluster
        .lock()
        .unwrap()
        .lease
        .clone()
        .expect("Lease created");
    assert_eq!(lease["spec"]["holderIdentity"], "reconciler-0");
    assert_eq!(lease["metadata"]["name"], LEASE);
    let lease_created_in = cluster
        .lock()
        .unwrap()
        .seen
        .iter()
        .find(|s| s.method == "POST" && s.path.ends_with("/leases"))
        .map(|s| s.path.clone());
    assert_eq!(
        lease_created_in.as_deref(),
        Some(format!("/apis/coordination.k8s.io/v1/namespaces/{OWN_NAMESPACE}/leases").as_str())
    );

    let (status, _) = get(admin, "/readyz").expect("admin port answers");
    assert!(status.contains("200"), "{status}");
    // The summary is published right after the Pod's Warning.
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = get(admin, "/metrics").unwrap().1;
        if metrics.contains("pullthrough_events_total{reason=\"PullThroughCacheRulesUnusable\"} 1")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for needle in [
        "pullthrough_events_total{reason=\"PullThroughCacheRuleMissing\"} 1",
        "pullthrough_events_total{reason=\"PullThroughCacheRulesUnusable\"} 1",
        "pullthrough_rule_status{prefix=\"docker-hub\",registry=\"docker.io\",state=\"missing\"} 1",
        "pullthrough_reconciler_leader 1",
        "pullthrough_reconciler_pods 1",
    ] {
        assert!(metrics.contains(needle), "{needle} not in\n{metrics}");
    }

    // SIGTERM: exits 0 and hands the Lease back.
    let status = Command::new("kill")
        .args(["-TERM", &reconciler.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = reconciler.0.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "did not stop\n{}", logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit}\n{}", logs());
    let lease = cluster.lock().unwrap().lease.clone().unwrap();
    assert!(
        lease["spec"].get("holderIdentity").is_none(),
        "Lease released: {lease}"
    );
}
