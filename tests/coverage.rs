//! The real `pullthrough coverage` binary against the mocked API server on loopback (reached
//! through a kubeconfig) and the ECR stand-in for the live rule status: the table, the JSON,
//! `--min-share` and the exit code when the cluster cannot be read.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ecr_support;
mod kube_support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use ecr_support::{Script, StandIn, rule_json};
use kube_support::{Cluster, namespace, pod, serve_http};
use serde_json::{Value, json};

const CACHE: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
const SHA: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Two opted-in namespaces, a Pod for every state: 14 images, 5 of them on the cache.
fn cluster() -> Cluster {
    let mut skipped = pod("shop", "db-0", "u-db", &["postgres:16"]);
    skipped["metadata"]["annotations"] = json!({"pullthrough.dev/skip": "true"});
    Cluster {
        namespaces: vec![namespace("shop"), namespace("ml")],
        pods: vec![
            pod(
                "shop",
                "web-1",
                "u-web-1",
                &[
                    &format!("{CACHE}/docker-hub/library/nginx:1.27"),
                    &format!("{CACHE}/quay/org/tool:2"),
                ],
            ),
            pod(
                "shop",
                "web-2",
                "u-web-2",
                &[
                    &format!("{CACHE}/docker-hub/library/nginx:1.27"),
                    &format!("{CACHE}/docker-hub/library/redis:7"),
                    &format!("{CACHE}/quay/org/tool:2"),
                ],
            ),
            pod("shop", "old", "u-old", &["nginx:1.27"]),
            pod("shop", "pause", "u-pause", &["registry.k8s.io/pause:3.10"]),
            skipped,
            pod(
                "ml",
                "train",
                "u-train",
                &[
                    "nvcr.io/nvidia/cuda:12.4.0-base-ubuntu22.04",
                    "mcr.microsoft.com/dotnet/runtime:8.0",
                ],
            ),
            pod("ml", "tool", "u-tool", &["ghcr.io/org/app:1.4"]),
            pod("ml", "pinned", "u-pinned", &[&format!("redis@{SHA}")]),
            pod(
                "ml",
                "mirror",
                "u-mirror",
                &["111122223333.dkr.ecr.us-east-1.amazonaws.com/team/app:2"],
            ),
            pod("ml", "broken", "u-broken", &["NOT A REFERENCE"]),
        ],
        ..Cluster::default()
    }
}

/// A kubeconfig whose current context is `local` (the mocked API server); `gone` points at a
/// closed port.
fn kubeconfig(dir: &Path, api: SocketAddr) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    std::fs::write(
        dir.join("kubeconfig"),
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: http://{api}\n- name: gone\n  cluster:\n    server: http://{closed}\nusers:\n- name: me\n  user: {{}}\ncontexts:\n- name: local\n  context:\n    cluster: local\n    user: me\n- name: gone\n  context:\n    cluster: gone\n    user: me\ncurrent-context: local\n"
        ),
    )
    .unwrap();
}

/// Runs `pullthrough coverage <args>` with the AWS environment pointed at `ecr`.
async fn coverage(dir: &Path, ecr: &str, args: &[&str]) -> Output {
    run(Path::new(env!("CARGO_BIN_EXE_pullthrough")), dir, ecr, args).await
}

/// Runs `<program> coverage <args>`, `KUBECONFIG` naming `dir/kubeconfig`.
async fn run(program: &Path, dir: &Path, ecr: &str, args: &[&str]) -> Output {
    let config = dir.join("pullthrough.yaml");
    std::fs::write(
        &config,
        "accountId: \"123456789012\"\nregion: eu-west-1\ndigests: whenCached\nregistries:\n  docker.io: docker-hub\n  quay.io: quay\n  registry.k8s.io: k8s\n",
    )
    .unwrap();
    let mut cmd = Command::new(program);
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
        .arg("coverage")
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

/// The API server, the ECR stand-in (docker-hub and quay present, k8s missing) and a kubeconfig.
async fn setup() -> (StandIn, tempfile::TempDir) {
    let addr = serve_http(Arc::new(Mutex::new(cluster()))).await;
    let ecr = StandIn::start(Script {
        rules: vec![
            rule_json("docker-hub", "registry-1.docker.io"),
            rule_json("quay", "quay.io"),
        ],
        ..Script::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    kubeconfig(dir.path(), addr);
    (ecr, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_gives_the_share_and_every_state_per_registry() {
    let (ecr, dir) = setup().await;
    let out = coverage(dir.path(), &ecr.url(), &[]).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("REGISTRY") && lines[0].ends_with("STATES"),
        "{stdout}"
    );
    let row = |registry: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(&format!("{registry} ")))
            .copied()
            .unwrap_or_else(|| panic!("no row for {registry} in {stdout}"))
    };
    assert!(
        row("docker.io").contains("cached 3, bypassing 1, pinned-not-cached 1, excluded 1"),
        "{stdout}"
    );
    assert!(row("quay.io").contains("100.0%"), "{stdout}");
    assert!(
        row("registry.k8s.io").contains("rule-missing 1"),
        "{stdout}"
    );
    assert!(row("ghcr.io").contains("unmapped 1"), "{stdout}");
    assert!(row("nvcr.io").contains("uncacheable 1"), "{stdout}");
    assert!(
        row("mcr.microsoft.com").contains("uncacheable 1"),
        "{stdout}"
    );
    assert!(
        row("111122223333.dkr.ecr.us-east-1.amazonaws.com").contains("private-ecr 1"),
        "{stdout}"
    );
    assert!(row("-").contains("invalid 1"), "{stdout}");
    assert!(
        stdout.contains(
            "\n5 of 14 containers (35.7%) pull through the cache, in 10 Pods of 2 namespaces.\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("unmapped ghcr.io (1): ECR can cache ghcr.io (upstream github-container-registry, with a Secrets Manager credential); add \"ghcr.io: github\" under registries:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("uncacheable nvcr.io (1): ECR pull-through cache has no upstream for NVIDIA NGC (as of 2026)"),
        "{stdout}"
    );
    assert!(!stdout.contains("NAMESPACE"), "{stdout}");

    let detailed = coverage(dir.path(), &ecr.url(), &["--details"]).await;
    let stdout = text(&detailed.stdout);
    assert_eq!(detailed.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("\nNAMESPACE  POD"), "{stdout}");
    let tool = stdout
        .lines()
        .find(|l| l.starts_with("ml ") && l.contains(" tool "))
        .unwrap();
    assert!(
        tool.contains("ghcr.io/org/app:1.4") && tool.contains(" unmapped "),
        "{tool}"
    );
    assert!(stdout.contains("\nshop "), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_has_the_same_numbers_and_rows_with_details() {
    let (ecr, dir) = setup().await;
    let out = coverage(dir.path(), &ecr.url(), &["-o", "json", "--details"]).await;
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    let json: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["kind"], "Coverage");
    assert_eq!(json["rules"], "live");
    assert_eq!(json["namespaces"], 2);
    assert_eq!(json["pods"], 10);
    assert_eq!(json["containers"], 14);
    assert_eq!(json["cached"], 5);
    assert_eq!(json["share"], 35.7);
    assert_eq!(
        json["states"],
        json!({
            "cached": 5, "bypassing": 1, "pinned-not-cached": 1, "excluded": 1,
            "rule-missing": 1, "unmapped": 1, "uncacheable": 2, "private-ecr": 1, "invalid": 1
        })
    );
    let docker = json["registries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["registry"] == "docker.io")
        .unwrap();
    assert_eq!(docker["containers"], 6);
    assert_eq!(docker["share"], 50.0);
    let rows = json["images"].as_array().unwrap();
    assert_eq!(rows.len(), 14);
    let old = rows.iter().find(|r| r["pod"] == "old").unwrap();
    assert_eq!(old["namespace"], "shop");
    assert_eq!(old["container"], "c0");
    assert_eq!(old["image"], "nginx:1.27");
    assert_eq!(old["registry"], "docker.io");
    assert_eq!(old["state"], "bypassing");
    assert!(
        old["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("{CACHE}/docker-hub/library/nginx:1.27"))
    );
    let broken = rows.iter().find(|r| r["pod"] == "broken").unwrap();
    assert_eq!(broken["registry"], Value::Null);
    assert_eq!(broken["state"], "invalid");

    let plain = coverage(dir.path(), &ecr.url(), &["-o", "json"]).await;
    let plain: Value = serde_json::from_slice(&plain.stdout).unwrap();
    assert_eq!(plain.get("images"), None);
    assert_eq!(plain["states"], json["states"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_share_gates_and_an_unreadable_cluster_exits_2() {
    let (ecr, dir) = setup().await;
    let pass = coverage(dir.path(), &ecr.url(), &["--min-share", "35"]).await;
    assert_eq!(pass.status.code(), Some(0), "{}", text(&pass.stderr));
    let fail = coverage(dir.path(), &ecr.url(), &["--min-share", "35.8"]).await;
    assert_eq!(fail.status.code(), Some(1), "{}", text(&fail.stderr));
    assert!(
        text(&fail.stdout).contains("(35.7%)"),
        "the report still prints"
    );
    let bad = coverage(dir.path(), &ecr.url(), &["--min-share", "120"]).await;
    assert_eq!(bad.status.code(), Some(2));

    let gone = coverage(dir.path(), &ecr.url(), &["--context", "gone"]).await;
    assert_eq!(gone.status.code(), Some(2), "{}", text(&gone.stdout));
    assert!(
        text(&gone.stderr).contains("cannot list namespaces"),
        "{}",
        text(&gone.stderr)
    );
    assert!(gone.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_as_kubectl_pullthrough_it_answers_like_pullthrough_with_kubectl_flags() {
    let (ecr, dir) = setup().await;
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let plugin = bin.join("kubectl-pullthrough");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_pullthrough"), &plugin).unwrap();
    // kubectl's own flag, with KUBECONFIG pointing elsewhere: the flag wins.
    std::fs::rename(
        dir.path().join("kubeconfig"),
        dir.path().join("cluster.yaml"),
    )
    .unwrap();
    let kubeconfig = dir.path().join("cluster.yaml");
    let kubeconfig = kubeconfig.to_str().unwrap();

    let as_plugin = run(
        &plugin,
        dir.path(),
        &ecr.url(),
        &[
            "--kubeconfig",
            kubeconfig,
            "--context",
            "local",
            "-A",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(
        as_plugin.status.code(),
        Some(0),
        "{}",
        text(&as_plugin.stderr)
    );
    let direct = coverage(
        dir.path(),
        &ecr.url(),
        &["--kubeconfig", kubeconfig, "-A", "-o", "json"],
    )
    .await;
    assert_eq!(direct.status.code(), Some(0), "{}", text(&direct.stderr));
    let a: Value = serde_json::from_slice(&as_plugin.stdout).unwrap();
    let b: Value = serde_json::from_slice(&direct.stdout).unwrap();
    assert_eq!(a, b);
    assert_eq!(a["containers"], 14);

    // Without the flag the missing KUBECONFIG is used, and the cluster cannot be read.
    let lost = run(&plugin, dir.path(), &ecr.url(), &[]).await;
    assert_eq!(lost.status.code(), Some(2));

    let help = std::process::Command::new(&plugin)
        .args(["coverage", "--help"])
        .output()
        .unwrap();
    let help = text(&help.stdout);
    assert!(
        help.contains("Usage: kubectl pullthrough coverage"),
        "{help}"
    );
    let bad = std::process::Command::new(&plugin)
        .args(["coverage", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("kubectl pullthrough coverage"));
}
