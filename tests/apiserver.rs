//! The MutatingAdmissionPolicy on a real kube-apiserver (1.36 or later), with no webhook:
//! `pullthrough policy` applied with kubectl, then Pods created, updated and debugged in an
//! opted-in namespace come back exactly as the engine rewrites them (or unchanged), with the
//! same record of originals, over the corpus of real references; other namespaces, opted-out
//! Pods and images already in the cache are left alone.
//!
//! `reconciler --manage-policy`, reading its rules from the ECR stand-in, applies the policy
//! there and keeps it in step as a rule goes missing and comes back.
//!
//! Needs `PULLTHROUGH_APISERVER_KUBECONFIG`, an admin kubeconfig of a running API server, and
//! kubectl on the PATH; skipped, saying so, without them. Everything it creates is named after
//! its process id and deleted at the end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ecr_support;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use pullthrough::config::{Config, Overrides};
use pullthrough::rules::RuleSnapshot;
use serde_json::{Value, json};

const ACCOUNT: &str = "123456789012";
const REGION: &str = "eu-west-1";
const HOST: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

/// Tells the tests' objects apart within one run.
static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

struct Cluster {
    kubeconfig: PathBuf,
    id: String,
}

impl Cluster {
    fn get() -> Option<Self> {
        let Some(kubeconfig) = std::env::var_os("PULLTHROUGH_APISERVER_KUBECONFIG") else {
            eprintln!(
                "SKIPPED: PULLTHROUGH_APISERVER_KUBECONFIG is not set (an admin kubeconfig of a kube-apiserver 1.36 or later)"
            );
            return None;
        };
        Some(Self {
            kubeconfig: kubeconfig.into(),
            id: format!(
                "pt-e2e-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ),
        })
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        if let Some(text) = stdin {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The Pod as the API server would store it (`--dry-run=server`).
    fn dry_run(&self, namespace: &str, pod: &Value) -> Value {
        let text = self.ok(
            &[
                "create",
                "--dry-run=server",
                "-o",
                "json",
                "-n",
                namespace,
                "-f",
                "-",
            ],
            Some(&pod.to_string()),
        );
        serde_json::from_str(&text).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args, None)).unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let id = self.id.as_str();
        let (off, both, alone) = (
            format!("{id}-off"),
            format!("{id}-both"),
            format!("{id}-webhook"),
        );
        for args in [
            vec!["delete", "mutatingwebhookconfiguration", id],
            vec!["delete", "mutatingadmissionpolicybinding", id],
            vec!["delete", "mutatingadmissionpolicy", id],
            vec!["delete", "namespace", id, "--wait=false"],
            vec!["delete", "namespace", off.as_str(), "--wait=false"],
            vec!["delete", "namespace", both.as_str(), "--wait=false"],
            vec!["delete", "namespace", alone.as_str(), "--wait=false"],
        ] {
            let _ = self.kubectl(&args, None);
        }
    }
}

fn config() -> Config {
    Config::load(
        &format!("accountId: \"{ACCOUNT}\"\nregion: {REGION}\n"),
        &Overrides::default(),
    )
    .unwrap()
}

/// The object after the webhook's engine: what `pullthrough preview` and the webhook make.
fn engine(config: &Config, operation: &str, object: &Value, old: Option<&Value>) -> Value {
    let mut review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": object["metadata"]["namespace"],
            "operation": operation,
            "object": object,
        },
    });
    if let Some(old) = old {
        review["request"]["oldObject"] = old.clone();
    }
    let body = serde_json::to_vec(&review).unwrap();
    let reviewed = pullthrough::admission::review(config, &RuleSnapshot::unknown(), &body).unwrap();
    let response: Value =
        serde_json::from_slice(&reviewed.response.into_review().to_vec()).unwrap();
    let mut out = object.clone();
    if let Some(b64) = response["response"]["patch"].as_str() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        json_patch::patch(&mut out, &patch).unwrap();
    }
    out
}

fn images(pod: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for field in ["initContainers", "containers", "ephemeralContainers"] {
        for c in pod["spec"][field].as_array().into_iter().flatten() {
            out.push(c["image"].as_str().unwrap().to_owned());
        }
    }
    for v in pod["spec"]["volumes"].as_array().into_iter().flatten() {
        if let Some(r) = v["image"]["reference"].as_str() {
            out.push(r.to_owned());
        }
    }
    out
}

fn record(pod: &Value) -> Option<String> {
    pod["metadata"]["annotations"]["pullthrough.dev/original-images"]
        .as_str()
        .map(str::to_owned)
}

fn corpus() -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/references.txt");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

fn pod(name: &str, images: &[&str]) -> Value {
    let containers: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, image)| json!({"name": format!("c{i}"), "image": image}))
        .collect();
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": containers}})
}

#[test]
fn the_policy_alone_rewrites_in_the_api_server_as_the_engine_does() {
    let Some(cluster) = Cluster::get() else {
        return;
    };
    let c = config();
    let id = cluster.id.clone();
    let off = format!("{id}-off");

    // The policy, bound to namespaces with this run's label.
    let out = Command::new(env!("CARGO_BIN_EXE_pullthrough"))
        .args(["policy", "--account-id", ACCOUNT, "--region", REGION])
        .args(["--name", &id, "--namespace-selector", &format!("{id}=true")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let applied = cluster.ok(
        &["apply", "-f", "-"],
        Some(&String::from_utf8(out.stdout).unwrap()),
    );
    assert!(
        applied.contains("created") || applied.contains("configured"),
        "{applied}"
    );
    for ns in [&id, &off] {
        cluster.ok(&["create", "namespace", ns], None);
        // Without a service-account controller, Pods need the default account made by hand.
        let _ = cluster.kubectl(&["create", "serviceaccount", "default", "-n", ns], None);
    }
    cluster.ok(&["label", "namespace", &id, &format!("{id}=true")], None);
    // The binding reaches the namespace once the API server's informers have seen the label.
    let probe = pod("probe", &["nginx:1.27"]);
    let mut ready = false;
    for _ in 0..50 {
        if images(&cluster.dry_run(&id, &probe))[0].starts_with(HOST) {
            ready = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(ready, "the policy never rewrote a Pod in {id}");

    // The corpus, 60 containers to a Pod: exactly the engine's rewrite and record.
    let references = corpus();
    assert!(references.len() >= 200, "{}", references.len());
    let (mut same, mut rewritten) = (0, 0);
    for (n, chunk) in references.chunks(60).enumerate() {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let mut p = pod(&format!("corpus-{n}"), &refs);
        p["metadata"]["namespace"] = json!(id);
        let by_policy = cluster.dry_run(&id, &p);
        let by_engine = engine(&c, "CREATE", &p, None);
        let (got, want) = (images(&by_policy), images(&by_engine));
        for ((original, policy), engine) in refs.iter().zip(&got).zip(&want) {
            assert!(
                policy == original || policy == engine,
                "{original} became {policy}; the engine makes {engine}"
            );
            if policy == engine {
                same += 1;
            }
            if policy != original {
                rewritten += 1;
            }
        }
        assert_eq!(got, want, "Pod {n}: the policy and the engine differ");
        assert_eq!(
            record(&by_policy),
            record(&by_engine),
            "Pod {n}: the record"
        );
    }
    eprintln!(
        "{} references: {same} as the engine makes them, {rewritten} rewritten",
        references.len()
    );
    assert_eq!(same, references.len());

    // Image volumes and native sidecars.
    let mut v = pod("volumes", &["nginx:1.27"]);
    v["spec"]["initContainers"] =
        json!([{"name": "sidecar", "image": "quay.io/a/b:1", "restartPolicy": "Always"}]);
    v["spec"]["volumes"] =
        json!([{"name": "models", "image": {"reference": "ghcr.io/org/models:v1"}}]);
    v["metadata"]["namespace"] = json!(id);
    let by_policy = cluster.dry_run(&id, &v);
    let by_engine = engine(&c, "CREATE", &v, None);
    assert_eq!(images(&by_policy), images(&by_engine));
    assert_eq!(record(&by_policy), record(&by_engine));

    // Left alone: other namespaces, opted-out Pods, images already in the cache.
    let upstream = pod("alone", &["nginx:1.27", "quay.io/a/b:1"]);
    assert_eq!(images(&cluster.dry_run(&off, &upstream)), images(&upstream));
    let mut skip = upstream.clone();
    skip["metadata"]["annotations"] = json!({"pullthrough.dev/skip": "true"});
    let by_policy = cluster.dry_run(&id, &skip);
    assert_eq!(images(&by_policy), images(&upstream));
    assert_eq!(record(&by_policy), None);
    let cached = pod(
        "cached",
        &[&format!("{HOST}/docker-hub/library/nginx:1.27")],
    );
    let by_policy = cluster.dry_run(&id, &cached);
    assert_eq!(images(&by_policy), images(&cached));
    assert_eq!(record(&by_policy), None);

    // A real Pod: created, updated, debugged.
    let mut real = pod("real", &["nginx:1.27", "registry.example/x:1"]);
    real["metadata"]["namespace"] = json!(id);
    let stored: Value = serde_json::from_str(&cluster.ok(
        &["create", "-o", "json", "-n", &id, "-f", "-"],
        Some(&real.to_string()),
    ))
    .unwrap();
    assert_eq!(
        images(&stored)[0],
        format!("{HOST}/docker-hub/library/nginx:1.27")
    );
    // An update that leaves the images alone changes none.
    let labelled = cluster.json(&["label", "pod", "real", "-n", &id, "x=y", "-o", "json"]);
    assert_eq!(images(&labelled), images(&stored));
    // An update of one image rewrites that one, as the engine does, and records it.
    let before = cluster.json(&["get", "pod", "real", "-n", &id, "-o", "json"]);
    let updated = cluster.json(&[
        "set",
        "image",
        "pod/real",
        "-n",
        &id,
        "c1=quay.io/org/app:2",
        "-o",
        "json",
    ]);
    let mut asked = before.clone();
    asked["spec"]["containers"][1]["image"] = json!("quay.io/org/app:2");
    let by_engine = engine(&c, "UPDATE", &asked, Some(&before));
    assert_eq!(images(&updated), images(&by_engine));
    assert_eq!(images(&updated)[1], format!("{HOST}/quay/org/app:2"));
    assert_eq!(record(&updated), record(&by_engine));
    // kubectl debug adds an ephemeral container through its subresource: rewritten, no record.
    cluster.ok(
        &[
            "debug",
            "real",
            "-n",
            &id,
            "--image=busybox:1.36",
            "-c",
            "dbg",
            "--attach=false",
        ],
        None,
    );
    let debugged = cluster.json(&["get", "pod", "real", "-n", &id, "-o", "json"]);
    assert_eq!(
        debugged["spec"]["ephemeralContainers"][0]["image"],
        format!("{HOST}/docker-hub/library/busybox:1.36")
    );
    assert_eq!(record(&debugged), record(&updated));
}

/// Applies `pullthrough policy` named after the run, bound to namespaces labelled `label=true`.
fn apply_policy(cluster: &Cluster, label: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_pullthrough"))
        .args(["policy", "--account-id", ACCOUNT, "--region", REGION])
        .args([
            "--name",
            &cluster.id,
            "--namespace-selector",
            &format!("{label}=true"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cluster.ok(
        &["apply", "-f", "-"],
        Some(&String::from_utf8(out.stdout).unwrap()),
    );
}

fn namespace(cluster: &Cluster, name: &str, labels: &[&str]) {
    cluster.ok(&["create", "namespace", name], None);
    let _ = cluster.kubectl(&["create", "serviceaccount", "default", "-n", name], None);
    for label in labels {
        cluster.ok(
            &["label", "namespace", name, &format!("{label}=true")],
            None,
        );
    }
}

/// Waits until a Pod in `namespace` comes back rewritten.
fn wait_rewritten(cluster: &Cluster, namespace: &str) {
    let probe = pod("probe", &["nginx:1.27"]);
    for _ in 0..50 {
        if images(&cluster.dry_run(namespace, &probe))[0].starts_with(HOST) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!("no Pod in {namespace} was ever rewritten");
}

/// The real webhook on a loopback port with a self-signed certificate, killed on drop.
struct Webhook {
    child: std::process::Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Webhook {
    fn start() -> Self {
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let (port, admin) = (free(), free());
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_pullthrough"))
            .args(["webhook", "--account-id", ACCOUNT, "--region", REGION])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .arg("--self-signed-dir")
            .arg(dir.path().join("tls"))
            // No AWS here: the rules stay unknown and the map is trusted, as in the policy.
            .env("AWS_ACCESS_KEY_ID", "none")
            .env("AWS_SECRET_ACCESS_KEY", "none")
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..200 {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", admin)) {
                use std::io::{Read as _, Write as _};
                let _ =
                    s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut head = String::new();
                let _ = s.read_to_string(&mut head);
                if head.starts_with("HTTP/1.1 200") {
                    return Self { child, dir, port };
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the webhook never became ready");
    }

    fn ca_bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD
            .encode(std::fs::read(self.dir.path().join("tls/ca.crt")).unwrap())
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_policy_and_the_webhook_together_make_what_the_webhook_makes_alone() {
    let Some(cluster) = Cluster::get() else {
        return;
    };
    let id = cluster.id.clone();
    let (both, alone) = (format!("{id}-both"), format!("{id}-webhook"));
    let (policy_label, webhook_label) = (format!("{id}-p"), format!("{id}-w"));
    apply_policy(&cluster, &policy_label);
    let webhook = Webhook::start();
    let host = format!("'{HOST}/'");
    let all_cached = |list: &str| {
        format!(
            "{list}.all(c, has(c.image) && c.image.startsWith({host}) && !c.image.contains('@'))"
        )
    };
    let skip_condition = format!(
        "request.resource.resource != 'pods' || !{} || (has(object.spec.initContainers) && !{}) || (has(object.spec.ephemeralContainers) && !{}) || (has(object.spec.volumes) && !object.spec.volumes.all(v, !has(v.image) || (has(v.image.reference) && v.image.reference.startsWith({host}) && !v.image.reference.contains('@'))))",
        all_cached("object.spec.containers"),
        all_cached("object.spec.initContainers"),
        all_cached("object.spec.ephemeralContainers"),
    );
    let configuration = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": id},
        "webhooks": [{
            "name": "pods.pullthrough.dev",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Ignore",
            "timeoutSeconds": 5,
            "reinvocationPolicy": "IfNeeded",
            "clientConfig": {
                "url": format!("https://localhost:{}/mutate", webhook.port),
                "caBundle": webhook.ca_bundle(),
            },
            "rules": [
                {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["pods"]},
                {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["pods/ephemeralcontainers"]},
            ],
            "namespaceSelector": {"matchLabels": {webhook_label.clone(): "true"}},
            "matchConditions": [{"name": "not-rewritten-by-the-policy", "expression": skip_condition}],
        }],
    });
    cluster.ok(&["apply", "-f", "-"], Some(&configuration.to_string()));
    namespace(&cluster, &both, &[&policy_label, &webhook_label]);
    namespace(&cluster, &alone, &[&webhook_label]);
    wait_rewritten(&cluster, &both);
    wait_rewritten(&cluster, &alone);

    let references = corpus();
    let mut compared = 0;
    for (n, chunk) in references.chunks(60).enumerate() {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let p = pod(&format!("corpus-{n}"), &refs);
        let (by_both, by_webhook) = (cluster.dry_run(&both, &p), cluster.dry_run(&alone, &p));
        assert_eq!(images(&by_both), images(&by_webhook), "Pod {n}");
        assert_eq!(record(&by_both), record(&by_webhook), "Pod {n}: the record");
        compared += refs.len();
    }
    eprintln!(
        "{compared} references: the policy and the webhook together make what the webhook makes alone"
    );

    // The webhook goes away: the policy still rewrites, as the engine does.
    drop(webhook);
    let c = config();
    let p = pod(
        "after",
        &["nginx:1.27", "quay.io/a/b:1", "registry.example/x:1"],
    );
    let mut want = p.clone();
    want["metadata"]["namespace"] = json!(both);
    let by_policy = cluster.dry_run(&both, &p);
    assert_eq!(
        images(&by_policy),
        images(&engine(&c, "CREATE", &want, None))
    );
    assert_eq!(
        images(&cluster.dry_run(&alone, &p)),
        images(&p),
        "the webhook is gone"
    );
}

/// The registries the policy named `name` rewrites, as its annotation says; `None` before it
/// exists.
fn policy_registries(cluster: &Cluster, name: &str) -> Option<String> {
    let out = cluster.kubectl(
        &["get", "mutatingadmissionpolicy", name, "-o", "json"],
        None,
    );
    if !out.status.success() {
        return None;
    }
    let policy: Value = serde_json::from_slice(&out.stdout).unwrap();
    policy["metadata"]["annotations"]["pullthrough.dev/registries"]
        .as_str()
        .map(str::to_owned)
}

/// The images of `p` dry-run in `namespace` once `done` holds: the API server's admission picks a
/// changed policy up from its informer a moment after it is written.
fn settled(
    cluster: &Cluster,
    namespace: &str,
    p: &Value,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let mut got = images(&cluster.dry_run(namespace, p));
    for _ in 0..50 {
        if done(&got) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        got = images(&cluster.dry_run(namespace, p));
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconciler_keeps_the_policy_in_step_with_the_rules() {
    use ecr_support::{Script, StandIn, docker_hub_json, rule_json};
    let Some(cluster) = Cluster::get() else {
        return;
    };
    let id = cluster.id.clone();
    let own = format!("{id}-off");
    let ecr = StandIn::start(Script {
        rules: vec![docker_hub_json(), rule_json("quay", "quay.io")],
        ..Script::default()
    })
    .await;
    namespace(&cluster, &id, &[&id]);
    namespace(&cluster, &own, &[]);
    // The binding, as the chart owns it; the reconciler writes the policy it names.
    let out = Command::new(env!("CARGO_BIN_EXE_pullthrough"))
        .args([
            "policy",
            "--account-id",
            ACCOUNT,
            "--region",
            REGION,
            "-o",
            "json",
        ])
        .args(["--name", &id, "--namespace-selector", &format!("{id}=true")])
        .output()
        .unwrap();
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    cluster.ok(&["apply", "-f", "-"], Some(&list["items"][1].to_string()));

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pullthrough.yaml");
    std::fs::write(
        &config,
        format!("accountId: \"{ACCOUNT}\"\nregion: {REGION}\nregistries:\n  docker.io: docker-hub\n  quay.io: quay\nruleCheck:\n  interval: 10s\n"),
    )
    .unwrap();
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pullthrough"))
        .env_clear()
        .env("HOME", dir.path())
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("POD_NAME", "reconciler-0")
        .env("POD_NAMESPACE", &own)
        .env("AWS_ACCESS_KEY_ID", "AKIDSTANDIN")
        .env("AWS_SECRET_ACCESS_KEY", "SECRET")
        .env("AWS_REGION", REGION)
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
        .args(["--manage-policy", "--policy-name", &id])
        .args(["--namespace-selector", &format!("{id}=true")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    let logs = || std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
    let wait_for = |want: &str| {
        let started = std::time::Instant::now();
        loop {
            if policy_registries(&cluster, &id).as_deref() == Some(want) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(40),
                "the policy never rewrote {want:?}: {:?}\n{}",
                policy_registries(&cluster, &id),
                logs()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    let both = "docker.io,quay.io";
    let took = wait_for(both);
    eprintln!("applied, rewriting {both}, after {took:?}");
    wait_rewritten(&cluster, &id);

    // Docker Hub's rule goes: its registry leaves the policy within one interval.
    ecr.script(|s| s.rules = vec![rule_json("quay", "quay.io")]);
    let took = wait_for("quay.io");
    eprintln!("Docker Hub's rule removed: the policy rewrites quay.io only after {took:?}");
    let p = pod("two", &["nginx:1.27", "quay.io/a/b:1"]);
    let got = settled(&cluster, &id, &p, |got| got[0] == "nginx:1.27");
    assert_eq!(got[0], "nginx:1.27");
    assert_eq!(got[1], format!("{HOST}/quay/a/b:1"));

    // And comes back with the rule.
    ecr.script(|s| s.rules = vec![docker_hub_json(), rule_json("quay", "quay.io")]);
    let took = wait_for(both);
    eprintln!("the rule is back: the policy rewrites {both} again after {took:?}");

    // With the reconciler gone, the policy stays as last applied and Pods are still rewritten.
    let _ = child.kill();
    let _ = child.wait();
    let got = settled(&cluster, &id, &p, |got| got[0] != "nginx:1.27");
    assert_eq!(
        got[0],
        format!("{HOST}/docker-hub/library/nginx:1.27"),
        "{}",
        logs()
    );
    let _ = cluster.kubectl(&["delete", "lease", "--all", "-n", &own], None);
}
