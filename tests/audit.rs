//! The real `pullthrough audit` binary against a small API server on loopback (reached through
//! a kubeconfig, as kubectl reaches a cluster) answering with real Pod, Namespace, ReplicaSet and
//! Job objects, and the ECR stand-in for the live rule status: its exit codes, its table and its
//! JSON.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ecr_support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ecr_support::{Script, StandIn, rule_json};
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const CACHE: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

/// Path to answer; anything else is a 404 Status.
#[derive(Default)]
struct Api {
    routes: BTreeMap<String, (u16, Value)>,
    /// Method, path and query of every request.
    seen: Vec<(String, String, String)>,
}

impl Api {
    fn at(&mut self, path: &str, body: Value) {
        self.routes.insert(path.to_owned(), (200, body));
    }
}

async fn serve(api: Arc<Mutex<Api>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let api = api.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let api = api.clone();
                        async move {
                            let mut api = api.lock().unwrap();
                            let path = req.uri().path().to_owned();
                            api.seen.push((
                                req.method().to_string(),
                                path.clone(),
                                req.uri().query().unwrap_or_default().to_owned(),
                            ));
                            let (status, body) = api.routes.get(&path).cloned().unwrap_or_else(|| {
                            (
                                404,
                                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                       "reason": "NotFound", "code": 404,
                                       "message": format!("{path} not found")}),
                            )
                        });
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(body.to_string())))
                                    .unwrap(),
                            )
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn list(kind: &str, items: &[Value]) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "10"}, "items": items})
}

fn namespace(name: &str, labels: Value, managed: Value) -> Value {
    let mut ns = json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "uid": format!("ns-{name}"),
                     "creationTimestamp": "2026-01-05T10:00:00Z"},
    });
    ns["metadata"]["labels"] = labels;
    ns["metadata"]["managedFields"] = managed;
    ns
}

fn pod(
    ns: &str,
    name: &str,
    created: &str,
    owner: Option<(&str, &str, &str)>,
    images: &[&str],
) -> Value {
    let containers: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, image)| json!({"name": format!("c{i}"), "image": image}))
        .collect();
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"),
                     "creationTimestamp": created, "labels": {"app": name}},
        "spec": {"containers": containers},
        "status": {"phase": "Running"},
    });
    if let Some((api_version, kind, owner)) = owner {
        p["metadata"]["ownerReferences"] = json!([{
            "apiVersion": api_version, "kind": kind, "name": owner,
            "uid": format!("uid-{owner}"), "controller": true
        }]);
    }
    p
}

fn owned(api_version: &str, kind: &str, ns: &str, name: &str, owner: (&str, &str, &str)) -> Value {
    json!({
        "apiVersion": api_version, "kind": kind,
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"),
                     "ownerReferences": [{"apiVersion": owner.0, "kind": owner.1, "name": owner.2,
                                          "uid": format!("uid-{}", owner.2), "controller": true}]},
    })
}

/// A cluster with an opted-in namespace `shop` (labelled on 1 March 2026), a namespace `dev`
/// that is not opted in, and kube-system.
fn cluster() -> Api {
    let mut api = Api::default();
    let shop = namespace(
        "shop",
        json!({"pullthrough.dev/enabled": "true", "kubernetes.io/metadata.name": "shop"}),
        json!([{"manager": "kubectl-label", "operation": "Update", "apiVersion": "v1",
                "time": "2026-03-01T12:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {"f:pullthrough.dev/enabled": {}}}}}]),
    );
    let dev = namespace(
        "dev",
        json!({"kubernetes.io/metadata.name": "dev"}),
        json!([]),
    );
    let system = namespace(
        "kube-system",
        json!({"kubernetes.io/metadata.name": "kube-system"}),
        json!([]),
    );
    api.at(
        "/api/v1/namespaces",
        list("NamespaceList", &[shop.clone(), dev.clone(), system]),
    );
    api.at("/api/v1/namespaces/shop", shop);
    api.at("/api/v1/namespaces/dev", dev);
    let pods = [
        // Before the namespace was opted in: Deployment web, through its ReplicaSet.
        pod(
            "shop",
            "web-7d4b9c-aaaaa",
            "2026-02-01T09:00:00Z",
            Some(("apps/v1", "ReplicaSet", "web-7d4b9c")),
            &["nginx:1.27", &format!("{CACHE}/quay/org/tool:2")],
        ),
        // After everything: admitted without the webhook. CronJob nightly, through its Job.
        pod(
            "shop",
            "nightly-29000000-xyz",
            "2026-03-05T02:00:00Z",
            Some(("batch/v1", "Job", "nightly-29000000")),
            &["quay.io/org/report:3"],
        ),
        // Rewritten: fine.
        pod(
            "shop",
            "api-5f6c7d-bbbbb",
            "2026-03-02T09:00:00Z",
            Some(("apps/v1", "ReplicaSet", "api-5f6c7d")),
            &[&format!("{CACHE}/docker-hub/library/redis:7")],
        ),
        // Not opted in.
        pod(
            "dev",
            "scratch",
            "2026-03-03T09:00:00Z",
            None,
            &["busybox:1.36"],
        ),
        // Never looked at.
        pod(
            "kube-system",
            "coredns",
            "2026-01-05T10:00:00Z",
            None,
            &["registry.k8s.io/coredns/coredns:v1.11.1"],
        ),
    ];
    api.at("/api/v1/pods", list("PodList", &pods));
    api.at("/api/v1/namespaces/shop/pods", list("PodList", &pods[..3]));
    api.at("/api/v1/namespaces/dev/pods", list("PodList", &pods[3..4]));
    api.at(
        "/apis/apps/v1/namespaces/shop/replicasets/web-7d4b9c",
        owned(
            "apps/v1",
            "ReplicaSet",
            "shop",
            "web-7d4b9c",
            ("apps/v1", "Deployment", "web"),
        ),
    );
    api.at(
        "/apis/batch/v1/namespaces/shop/jobs/nightly-29000000",
        owned(
            "batch/v1",
            "Job",
            "shop",
            "nightly-29000000",
            ("batch/v1", "CronJob", "nightly"),
        ),
    );
    api
}

/// A kubeconfig whose current context points at a closed port; context `local` at `api`.
fn kubeconfig(dir: &Path, api: SocketAddr) -> std::path::PathBuf {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: http://{api}\n- name: gone\n  cluster:\n    server: http://{closed}\nusers:\n- name: me\n  user: {{}}\ncontexts:\n- name: local\n  context:\n    cluster: local\n    user: me\n- name: gone\n  context:\n    cluster: gone\n    user: me\ncurrent-context: gone\n"
        ),
    )
    .unwrap();
    path
}

/// Runs `pullthrough audit <args>` with the AWS environment pointed at `ecr`.
async fn audit(dir: &Path, ecr: &str, args: &[&str]) -> Output {
    let config = dir.join("pullthrough.yaml");
    std::fs::write(
        &config,
        "accountId: \"123456789012\"\nregion: eu-west-1\nregistries:\n  docker.io: docker-hub\n  quay.io: quay\n",
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pullthrough"));
    cmd.env_clear()
        .env("HOME", dir)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("KUBECONFIG", dir.join("kubeconfig"))
        .env("AWS_ACCESS_KEY_ID", "AKIDSTANDIN")
        .env("AWS_SECRET_ACCESS_KEY", "SECRET")
        .env("AWS_ENDPOINT_URL_ECR", ecr)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("AWS_CONFIG_FILE", dir.join("aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("aws-credentials"))
        .arg("audit")
        .arg("--config")
        .arg(&config)
        .args(args)
        .stdin(Stdio::null());
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn standin() -> StandIn {
    StandIn::start(Script {
        rules: vec![
            rule_json("docker-hub", "registry-1.docker.io"),
            rule_json("quay", "quay.io"),
        ],
        ..Script::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypassing_containers_exit_1_with_a_table_of_workloads_and_fixes() {
    let api = Arc::new(Mutex::new(cluster()));
    let addr = serve(api.clone()).await;
    let ecr = standin().await;
    let dir = tempfile::tempdir().unwrap();
    kubeconfig(dir.path(), addr);

    let out = audit(dir.path(), &ecr.url(), &["--context", "local"]).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("NAMESPACE  OWNER"), "{stdout}");
    assert!(lines[0].ends_with("REASON"), "{stdout}");
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("shop ")).count(),
        2,
        "{stdout}"
    );
    let web = lines
        .iter()
        .find(|l| l.contains("web-7d4b9c-aaaaa"))
        .unwrap();
    for needle in [
        "Deployment/web",
        " c0 ",
        "nginx:1.27",
        &format!("{CACHE}/docker-hub/library/nginx:1.27"),
        "created before namespace opt-in (2026-03-01T12:00:00Z)",
    ] {
        assert!(web.contains(needle), "{needle:?} not in {web:?}");
    }
    let nightly = lines
        .iter()
        .find(|l| l.contains("nightly-29000000-xyz"))
        .unwrap();
    assert!(nightly.contains("CronJob/nightly"), "{nightly}");
    assert!(
        nightly.contains(&format!("{CACHE}/quay/org/report:3")),
        "{nightly}"
    );
    assert!(
        nightly.ends_with("admitted without the webhook"),
        "{nightly}"
    );
    assert!(
        !stdout.contains("scratch")
            && !stdout.contains("coredns")
            && !stdout.contains("api-5f6c7d"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 containers in 2 of 3 Pods bypass the pull-through cache"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\n  kubectl rollout restart deployment/web -n shop\n"),
        "{stdout}"
    );
    assert!(
        !stderr.contains("cannot read the pull-through cache rules"),
        "{stderr}"
    );

    // Read-only: GETs and nothing else; Pods listed without the finished ones.
    let seen = api.lock().unwrap().seen.clone();
    assert!(seen.iter().all(|(m, _, _)| m == "GET"), "{seen:?}");
    let pods = seen.iter().find(|(_, p, _)| p == "/api/v1/pods").unwrap();
    assert!(pods.2.contains("fieldSelector=status.phase"), "{pods:?}");
    assert!(ecr.count(ecr_support::DESCRIBE) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_output_has_a_stable_shape_and_all_namespaces_adds_the_rest() {
    let addr = serve(Arc::new(Mutex::new(cluster()))).await;
    let ecr = standin().await;
    let dir = tempfile::tempdir().unwrap();
    kubeconfig(dir.path(), addr);

    let out = audit(
        dir.path(),
        &ecr.url(),
        &["--context", "local", "-o", "json", "--all-namespaces"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["apiVersion"], "pullthrough.dev/v1alpha1");
    assert_eq!(report["kind"], "BypassAudit");
    assert_eq!(report["rules"], "live");
    assert_eq!(
        report["namespaces"], 2,
        "kube-system is never audited unless named"
    );
    assert_eq!(report["pods"], 4);
    let rows = report["bypassing"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{rows:#?}");
    assert_eq!(
        rows[0],
        json!({
            "namespace": "dev",
            "owner": null,
            "pod": "scratch",
            "container": "c0",
            "image": "busybox:1.36",
            "wouldBe": format!("{CACHE}/docker-hub/library/busybox:1.36"),
            "registry": "docker.io",
            "prefix": "docker-hub",
            "reason": "namespaceNotOptedIn",
            "since": null,
            "explanation": "its namespace is not opted in, so the webhook does not see its Pods",
            "fix": "Opt the namespace in (label it to match the webhook's namespaceSelector; by default kubectl label namespace dev pullthrough.dev/enabled=true), then: delete the Pod and create it again from its manifest (kubectl delete pod scratch -n dev)"
        })
    );
    assert_eq!(
        rows[1]["owner"],
        json!({"kind": "CronJob", "name": "nightly"})
    );
    assert_eq!(rows[1]["reason"], "webhookUnreachable");
    assert_eq!(
        rows[2]["owner"],
        json!({"kind": "Deployment", "name": "web"})
    );
    assert_eq!(rows[2]["reason"], "beforeNamespaceOptIn");
    assert_eq!(rows[2]["since"], "2026-03-01T12:00:00Z");
    assert_eq!(
        rows[2]["fix"],
        "kubectl rollout restart deployment/web -n shop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_bypassing_exits_0() {
    let addr = serve(Arc::new(Mutex::new(cluster()))).await;
    let ecr = standin().await;
    let dir = tempfile::tempdir().unwrap();
    kubeconfig(dir.path(), addr);

    // dev is not opted in: the webhook leaves it alone, so nothing there bypasses it.
    let out = audit(
        dir.path(),
        &ecr.url(),
        &["--context", "local", "--namespace", "dev"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "No container bypasses the pull-through cache (0 Pods in 0 namespaces checked).\n"
    );
    assert!(
        text(&out.stderr).contains("namespace dev does not match \"pullthrough.dev/enabled=true\"")
    );

    // A Pod on rewritten images and on an image whose rule is missing: the webhook would not
    // rewrite that one either, so nothing bypasses.
    let mut api = cluster();
    let only_fine = list(
        "PodList",
        &[pod(
            "shop",
            "report",
            "2026-03-05T02:00:00Z",
            None,
            &[
                "quay.io/org/report:3",
                &format!("{CACHE}/docker-hub/library/redis:7"),
            ],
        )],
    );
    api.at("/api/v1/namespaces/shop/pods", only_fine);
    let addr = serve(Arc::new(Mutex::new(api))).await;
    kubeconfig(dir.path(), addr);
    let quay_missing = StandIn::start(Script {
        rules: vec![rule_json("docker-hub", "registry-1.docker.io")],
        ..Script::default()
    })
    .await;
    let out = audit(
        dir.path(),
        &quay_missing.url(),
        &["--context", "local", "-n", "shop", "-o", "json"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["bypassing"], json!([]));
    assert_eq!(report["pods"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ecr_the_map_decides_and_stderr_says_so() {
    let addr = serve(Arc::new(Mutex::new(cluster()))).await;
    let dir = tempfile::tempdir().unwrap();
    kubeconfig(dir.path(), addr);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();

    let out = audit(
        dir.path(),
        &format!("http://{closed}"),
        &["--context", "local", "-o", "json"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cannot read the pull-through cache rules from ECR"),
        "{}",
        text(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["rules"], "unavailable");
    assert_eq!(report["bypassing"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_cannot_be_read_exits_2() {
    let ecr = standin().await;
    let dir = tempfile::tempdir().unwrap();

    // The current context's API server is down.
    let addr = serve(Arc::new(Mutex::new(cluster()))).await;
    kubeconfig(dir.path(), addr);
    let out = audit(dir.path(), &ecr.url(), &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("cannot list namespaces"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());

    // Pods may not be listed.
    let mut api = cluster();
    api.routes.insert(
        "/api/v1/pods".into(),
        (
            403,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
                   "message": "pods is forbidden: User \"dev\" cannot list resource \"pods\" at the cluster scope"}),
        ),
    );
    let addr = serve(Arc::new(Mutex::new(api))).await;
    kubeconfig(dir.path(), addr);
    let out = audit(dir.path(), &ecr.url(), &["--context", "local"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot list Pods") && stderr.contains("forbidden"),
        "{stderr}"
    );

    // An unknown context.
    let out = audit(dir.path(), &ecr.url(), &["--context", "nowhere"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("nowhere"),
        "{}",
        text(&out.stderr)
    );
}
