//! The real `pullthrough` binary: the webhook on its embedded defaults with a self-signed
//! certificate, a refused configuration file, graceful shutdown on SIGTERM with a request in
//! flight, and `preview`.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs::{self, File};
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::http::{self, Client, H1, Proto};
use common::{check_envelope, fixture, fixture_json, images, install_provider, pairs, patched_pod};
use k8s_openapi::api::core::v1::Pod;
use pullthrough::server::MUTATE_PATH;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use tempfile::TempDir;

const HOST: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
/// How long the binary gets to start serving.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// The binary, with a clean environment for its flags (no `PULLTHROUGH_*`, no `AWS_REGION`).
fn pullthrough() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pullthrough"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PULLTHROUGH_") {
            cmd.env_remove(key);
        }
    }
    cmd.env_remove("AWS_REGION").env("RUST_LOG", "info");
    cmd
}

/// A loopback address with a port that was free a moment ago.
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Waits for the process to exit, up to `within`.
async fn wait_exit(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A running `pullthrough webhook`, killed on drop if still running.
struct Webhook {
    child: Child,
    dir: TempDir,
    listen: SocketAddr,
    admin: SocketAddr,
}

impl Webhook {
    /// Starts the webhook on free loopback ports with a self-signed certificate written to
    /// `<dir>/tls`, and waits until `/readyz` answers 200.
    async fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (listen, admin) = (free_addr(), free_addr());
        let tls_dir = dir.path().join("tls");
        let child = pullthrough()
            .arg("webhook")
            .args(["--listen", &listen.to_string()])
            .args(["--admin-listen", &admin.to_string()])
            .arg("--self-signed-dir")
            .arg(&tls_dir)
            .args(["--region", "eu-west-1"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(File::create(dir.path().join("stdout.log")).unwrap())
            .stderr(File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        let mut webhook = Self {
            child,
            dir,
            listen,
            admin,
        };
        webhook.wait_ready().await;
        webhook
    }

    fn logs(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!(
            "--- stdout\n{}--- stderr\n{}",
            read("stdout.log"),
            read("stderr.log")
        )
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("webhook exited early with {status}\n{}", self.logs());
            }
            if let Ok(r) = http::plain_get(self.admin, "/readyz").await
                && r.status == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "webhook not ready in time\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn ca_path(&self) -> PathBuf {
        self.dir.path().join("tls/ca.crt")
    }

    fn connector(&self, proto: Proto) -> tokio_rustls::TlsConnector {
        let ca = CertificateDer::from_pem_file(self.ca_path()).unwrap();
        http::connector(ca, &[proto.alpn()])
    }

    fn signal_term(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed");
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn assert_simple_fixture_rewritten(resp: &http::Response) {
    let request = fixture_json("pod-create-simple.json");
    let response = check_envelope(&request, resp);
    assert_eq!(response["allowed"], true);
    assert_eq!(
        images(&patched_pod(&request, &response)).main,
        pairs(&[("app", &format!("{HOST}/docker-hub/library/nginx:1.27"))])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_on_embedded_defaults_writes_its_ca_and_answers_a_fixture_over_tls() {
    install_provider();
    let mut webhook = Webhook::start(&["--shutdown-delay", "0s"]).await;
    for file in ["ca.crt", "tls.crt", "tls.key"] {
        assert!(
            webhook.dir.path().join("tls").join(file).is_file(),
            "{file} not written"
        );
    }
    for proto in Proto::ALL {
        let mut client = Client::connect(&webhook.connector(proto), webhook.listen, proto)
            .await
            .unwrap();
        let body = fixture("pod-create-simple.json");
        assert_simple_fixture_rewritten(&client.post(MUTATE_PATH, &body).await);
        assert_simple_fixture_rewritten(&client.post(MUTATE_PATH, &body).await);
    }

    webhook.signal_term();
    let status = wait_exit(&mut webhook.child, Duration::from_secs(10)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "exit: {status:?}\n{}",
        webhook.logs()
    );
    assert!(
        webhook.logs().contains("self-signed"),
        "the log says a self-signed certificate is served\n{}",
        webhook.logs()
    );
    // The example account's rules are never read: the log says so once, and nothing about
    // ECR or AWS credentials follows.
    let logs = webhook.logs();
    assert_eq!(logs.matches("rule check off").count(), 1, "{logs}");
    assert!(!logs.contains("cannot read ECR rules"), "{logs}");
    assert!(!logs.to_lowercase().contains("credential"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_file_makes_webhook_exit_non_zero_naming_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pullthrough.yaml");
    fs::write(
        &config,
        "accountId: \"123456789012\"\nregion: eu-west-1\nregistrys:\n  docker.io: docker-hub\n",
    )
    .unwrap();
    let stderr = dir.path().join("stderr.log");
    let mut child = pullthrough()
        .arg("webhook")
        .arg("--config")
        .arg(&config)
        .args(["--listen", &free_addr().to_string()])
        .args(["--admin-listen", &free_addr().to_string()])
        .arg("--self-signed-dir")
        .arg(dir.path().join("tls"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = wait_exit(&mut child, Duration::from_secs(10)).await;
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stderr = fs::read_to_string(&stderr).unwrap();
    let status = status.unwrap_or_else(|| panic!("webhook did not exit\n{stderr}"));
    assert!(!status.success(), "{status}\n{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        stderr.contains(&config.display().to_string()),
        "the message names the file:\n{stderr}"
    );
    assert!(
        stderr.contains("line 3"),
        "the message names the line:\n{stderr}"
    );
    assert!(stderr.contains("registrys"), "and the key:\n{stderr}");
    assert!(
        !dir.path().join("tls").exists(),
        "nothing is written before the configuration is valid"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_request_in_flight_fails_readiness_then_drains_it_and_exits_zero() {
    install_provider();
    let mut webhook = Webhook::start(&[
        "--shutdown-delay",
        "1s",
        "--drain-timeout",
        "10s",
        "--request-timeout",
        "20s",
    ])
    .await;

    // Headers and half of the body, with the full Content-Length.
    let stream = http::connect_tls(
        &webhook.connector(Proto::Http1),
        webhook.listen,
        "localhost",
    )
    .await
    .unwrap();
    let mut conn = H1::new(stream);
    let body = fixture("pod-create-simple.json");
    let half = body.len() / 2;
    let mut first = http::h1_head(
        "POST",
        MUTATE_PATH,
        &[("content-type", "application/json")],
        body.len(),
    );
    first.extend_from_slice(&body[..half]);
    conn.write_raw(&first).await.unwrap();

    webhook.signal_term();
    let signalled = Instant::now();

    // Readiness fails at once, during the shutdown delay.
    loop {
        let r = http::plain_get(webhook.admin, "/readyz").await.unwrap();
        if r.status == 503 {
            break;
        }
        assert_eq!(r.status, 200);
        assert!(
            signalled.elapsed() < Duration::from_millis(900),
            "readiness still passing {:?} after SIGTERM",
            signalled.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The webhook keeps accepting until the delay is over, then stops accepting.
    let refused_after = loop {
        if tokio::net::TcpStream::connect(webhook.listen)
            .await
            .is_err()
        {
            break signalled.elapsed();
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(5),
            "the webhook still accepts connections\n{}",
            webhook.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        refused_after >= Duration::from_millis(800),
        "stopped accepting {refused_after:?} after SIGTERM, before the 1s delay"
    );
    assert!(
        webhook.child.try_wait().unwrap().is_none(),
        "the process must wait for the request in flight"
    );

    // The rest of the body: the request is answered in full.
    conn.write_raw(&body[half..]).await.unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), conn.read_response())
        .await
        .expect("no answer to the request in flight")
        .unwrap();
    assert_simple_fixture_rewritten(&resp);
    drop(conn);

    let status = wait_exit(&mut webhook.child, Duration::from_secs(5)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "exit: {status:?}\n{}",
        webhook.logs()
    );
}

/// An HTTP/2 request whose body is half sent: finish it with `rest`, then read the answer.
struct H2InFlight {
    body_tx: tokio::sync::mpsc::Sender<Result<hyper::body::Frame<bytes::Bytes>, std::io::Error>>,
    response: tokio::task::JoinHandle<hyper::Result<hyper::Response<hyper::body::Incoming>>>,
    _conn: tokio::task::JoinHandle<()>,
}

impl H2InFlight {
    async fn start(connector: &tokio_rustls::TlsConnector, addr: SocketAddr, first: &[u8]) -> Self {
        use http_body_util::BodyExt as _;
        let stream = http::connect_tls(connector, addr, "localhost")
            .await
            .unwrap();
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        let (body_tx, mut rx) = tokio::sync::mpsc::channel(4);
        body_tx
            .send(Ok(hyper::body::Frame::data(bytes::Bytes::copy_from_slice(
                first,
            ))))
            .await
            .unwrap();
        let body =
            http_body_util::StreamBody::new(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)));
        let request = hyper::Request::post(format!("https://localhost{MUTATE_PATH}"))
            .header("content-type", "application/json")
            .body(body.boxed())
            .unwrap();
        sender.ready().await.unwrap();
        let response = tokio::spawn(sender.send_request(request));
        Self {
            body_tx,
            response,
            _conn: conn,
        }
    }

    async fn finish(self, rest: &[u8]) -> http::Response {
        use http_body_util::BodyExt as _;
        self.body_tx
            .send(Ok(hyper::body::Frame::data(bytes::Bytes::copy_from_slice(
                rest,
            ))))
            .await
            .unwrap();
        drop(self.body_tx);
        let response = tokio::time::timeout(Duration::from_secs(5), self.response)
            .await
            .expect("no answer to the HTTP/2 request in flight")
            .unwrap()
            .unwrap();
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let body = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        http::Response {
            status,
            headers,
            body,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_every_request_in_flight_and_every_request_sent_before_the_listener_closes()
 {
    install_provider();
    let mut webhook = Webhook::start(&[
        "--shutdown-delay",
        "1500ms",
        "--drain-timeout",
        "10s",
        "--request-timeout",
        "20s",
    ])
    .await;
    let body = fixture("pod-create-simple.json");
    let half = body.len() / 2;

    // Requests in flight at SIGTERM: three over HTTP/1.1, three over HTTP/2, each with half
    // of its body sent.
    let mut h1_in_flight = Vec::new();
    for _ in 0..3 {
        let stream = http::connect_tls(
            &webhook.connector(Proto::Http1),
            webhook.listen,
            "localhost",
        )
        .await
        .unwrap();
        let mut conn = H1::new(stream);
        let mut first = http::h1_head(
            "POST",
            MUTATE_PATH,
            &[("content-type", "application/json")],
            body.len(),
        );
        first.extend_from_slice(&body[..half]);
        conn.write_raw(&first).await.unwrap();
        h1_in_flight.push(conn);
    }
    let mut h2_in_flight = Vec::new();
    for _ in 0..3 {
        h2_in_flight.push(
            H2InFlight::start(
                &webhook.connector(Proto::Http2),
                webhook.listen,
                &body[..half],
            )
            .await,
        );
    }
    // Kept-alive connections that were used before SIGTERM and are used again during the delay.
    let mut kept = Vec::new();
    for proto in Proto::ALL {
        let mut c = Client::connect(&webhook.connector(proto), webhook.listen, proto)
            .await
            .unwrap();
        assert_simple_fixture_rewritten(&c.post(MUTATE_PATH, &body).await);
        kept.push(c);
    }

    webhook.signal_term();
    let signalled = Instant::now();

    // During the shutdown delay, new and kept-alive connections are served in full.
    let mut served = 0;
    while signalled.elapsed() < Duration::from_millis(700) {
        for proto in Proto::ALL {
            let mut fresh = Client::connect(&webhook.connector(proto), webhook.listen, proto)
                .await
                .unwrap_or_else(|e| {
                    panic!("refused during the shutdown delay: {e}\n{}", webhook.logs())
                });
            assert_simple_fixture_rewritten(&fresh.post(MUTATE_PATH, &body).await);
            served += 1;
        }
        for c in &mut kept {
            assert_simple_fixture_rewritten(&c.post(MUTATE_PATH, &body).await);
            served += 1;
        }
    }
    assert!(served >= 4, "{served}");
    drop(kept);

    // Then the listener closes, while the requests in flight wait for the rest of their body.
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(webhook.listen).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "still accepting\n{}",
            webhook.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        webhook.child.try_wait().unwrap().is_none(),
        "exited with requests in flight"
    );

    for mut conn in h1_in_flight {
        conn.write_raw(&body[half..]).await.unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(5), conn.read_response())
            .await
            .expect("no answer to an HTTP/1.1 request in flight")
            .unwrap();
        assert_simple_fixture_rewritten(&resp);
    }
    for r in h2_in_flight {
        assert_simple_fixture_rewritten(&r.finish(&body[half..]).await);
    }

    let status = wait_exit(&mut webhook.child, Duration::from_secs(5)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "exit: {status:?}\n{}",
        webhook.logs()
    );
}

const MANIFESTS: &str = r"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      initContainers:
        - name: init
          image: busybox:1.36
      containers:
        - name: web
          image: nginx:1.27
        - name: internal
          image: registry.example/team/app:2
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly
spec:
  schedule: '0 3 * * *'
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
            - name: job
              image: quay.io/prometheus/busybox:latest
";

/// Runs `preview` with `args`, feeding `stdin`; returns stdout, after checking success.
fn preview(args: &[&str], stdin: &str, dir: &Path) -> String {
    let mut child = pullthrough()
        .arg("preview")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stdout}\n{stderr}", out.status);
    stdout
}

#[test]
fn preview_prints_a_table_of_the_rewritten_images_of_a_multi_document_file() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("app.yaml"), MANIFESTS).unwrap();
    let table = preview(
        &["-f", "app.yaml", "-o", "table", "--region", "eu-west-1"],
        "",
        dir.path(),
    );
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAMESPACE"), "{table}");
    for column in ["OBJECT", "CONTAINER", "IMAGE", "NEW IMAGE", "REASON"] {
        assert!(lines[0].contains(column), "{table}");
    }
    assert_eq!(
        lines.len(),
        5,
        "a header and one row per container:\n{table}"
    );
    let row = |object: &str, container: &str| {
        lines
            .iter()
            .find(|l| {
                let cells: Vec<&str> = l.split_whitespace().collect();
                // No namespace in these manifests: the first column says `-`.
                cells.first() == Some(&"-")
                    && cells.get(1) == Some(&object)
                    && cells.get(2) == Some(&container)
            })
            .unwrap_or_else(|| panic!("no row for {object} {container}:\n{table}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        row("Deployment/web", "init")[3..5],
        [
            "busybox:1.36",
            &format!("{HOST}/docker-hub/library/busybox:1.36")
        ]
    );
    assert_eq!(
        row("Deployment/web", "web")[3..5],
        [
            "nginx:1.27",
            &format!("{HOST}/docker-hub/library/nginx:1.27")
        ]
    );
    let internal = row("Deployment/web", "internal");
    assert_eq!(internal[3..5], ["registry.example/team/app:2", "-"]);
    assert!(internal.join(" ").contains("no pull-through cache rule"));
    assert_eq!(
        row("CronJob/nightly", "job")[3..5],
        [
            "quay.io/prometheus/busybox:latest",
            &format!("{HOST}/quay/prometheus/busybox:latest")
        ]
    );
    assert!(!table.contains("Service/web"), "{table}");
}

#[test]
fn preview_reads_stdin_and_prints_the_rewritten_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n    - name: app\n      image: ghcr.io/org/app:1.2.3\n    - name: web\n      image: nginx\n";
    let yaml = preview(&["--region", "eu-west-1"], pod, dir.path());
    let pod: Pod = serde_yaml_ng::from_str(&yaml).unwrap_or_else(|e| panic!("{e}:\n{yaml}"));
    assert_eq!(
        images(&pod).main,
        pairs(&[
            ("app", &format!("{HOST}/github/org/app:1.2.3")),
            ("web", &format!("{HOST}/docker-hub/library/nginx")),
        ])
    );
    let originals = pod
        .metadata
        .annotations
        .unwrap_or_default()
        .remove("pullthrough.dev/original-images")
        .expect("the originals record is written");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&originals).unwrap(),
        serde_json::json!({"app": "ghcr.io/org/app:1.2.3", "web": "nginx"})
    );
}

#[test]
fn reconciler_without_a_cluster_exits_two_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let out = pullthrough()
        .args(["reconciler", "--admin-listen", &free_addr().to_string()])
        .env("KUBECONFIG", dir.path().join("missing-kubeconfig"))
        .env("HOME", dir.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot configure the Kubernetes client"),
        "{stderr}"
    );
}

#[test]
fn reconciler_rejects_a_bad_config_before_anything_else() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pullthrough.yaml");
    fs::write(
        &config,
        "accountId: \"123456789012\"\nruleCheck:\n  interval: 1s\n",
    )
    .unwrap();
    let out = pullthrough()
        .arg("reconciler")
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");
}
