//! `AwsEcr::from_env` against the local ECR stand-in, configured only through environment
//! variables (`AWS_ENDPOINT_URL_ECR`, `AWS_ACCESS_KEY_ID`, ...).
//!
//! The environment is never changed in this process (that needs `unsafe` in edition 2024, which
//! the crate forbids): each test re-runs itself, this same test binary, as a child process with a
//! clean, hermetic environment, while the parent serves the stand-in and checks what it saw.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ecr_support;

use std::process::Command;

use ecr_support::{DESCRIBE, Script, StandIn, VALIDATE, docker_hub_json};
use pullthrough::ecr::{AwsEcr, CacheRuleSource as _, ErrorKind};

/// Set in the child; names the test it runs.
const CHILD: &str = "PULLTHROUGH_ECR_ENV_CHILD";

/// Runs `test` in a child process with only `vars` (plus hermetic AWS settings) in its
/// environment, and fails with the child's output when it fails.
async fn run_child(test: &str, vars: &[(&str, String)]) {
    let home = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([
        test,
        "--exact",
        "--nocapture",
        "--include-ignored",
        "--test-threads=1",
    ])
    .env_clear()
    .env(CHILD, test)
    .env("HOME", home.path())
    // No profile files, no instance metadata: only what the test sets.
    .env("AWS_CONFIG_FILE", home.path().join("config"))
    .env(
        "AWS_SHARED_CREDENTIALS_FILE",
        home.path().join("credentials"),
    )
    .env("AWS_EC2_METADATA_DISABLED", "true")
    .env("AWS_MAX_ATTEMPTS", "2")
    .env("AWS_RETRY_MODE", "standard");
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child {test} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
}

fn is_child(test: &str) -> bool {
    std::env::var(CHILD).is_ok_and(|v| v == test)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_env_uses_endpoint_and_credentials_from_the_environment() {
    const NAME: &str = "from_env_uses_endpoint_and_credentials_from_the_environment";
    if is_child(NAME) {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let ecr = AwsEcr::from_env("eu-west-1", Some("123456789012".into())).await;
        let rules = ecr.list_rules().await.unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].prefix, "docker-hub");
        assert_eq!(rules[0].upstream_url, "registry-1.docker.io");
        assert!(ecr.validate_rule("docker-hub").await.unwrap().is_valid);
        return;
    }

    let standin = StandIn::start(Script {
        rules: vec![docker_hub_json()],
        // One throttled answer: the env-configured retry (AWS_MAX_ATTEMPTS=2) absorbs it.
        throttle_first: 1,
        ..Script::default()
    })
    .await;
    run_child(
        NAME,
        &[
            ("AWS_ENDPOINT_URL_ECR", standin.url()),
            ("AWS_ACCESS_KEY_ID", "AKIDFROMENV".into()),
            ("AWS_SECRET_ACCESS_KEY", "secret-from-env".into()),
        ],
    )
    .await;

    assert_eq!(standin.count(DESCRIBE), 2, "throttled once, then answered");
    assert_eq!(standin.count(VALIDATE), 1);
    for seen in standin.seen() {
        let auth = seen.authorization.unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDFROMENV/"),
            "{auth}"
        );
        assert!(auth.contains("/eu-west-1/ecr/aws4_request"), "{auth}");
        assert_eq!(seen.body["registryId"], "123456789012");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_env_without_credentials_is_a_credentials_error() {
    const NAME: &str = "from_env_without_credentials_is_a_credentials_error";
    if is_child(NAME) {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let ecr = AwsEcr::from_env("eu-west-1", None).await;
        let err = ecr.list_rules().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Credentials, "{err:?}");
        return;
    }

    let standin = StandIn::start(Script::default()).await;
    run_child(NAME, &[("AWS_ENDPOINT_URL_ECR", standin.url())]).await;
    assert_eq!(
        standin.seen().len(),
        0,
        "nothing is sent without credentials"
    );
}
