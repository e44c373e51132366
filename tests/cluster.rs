//! Installs the chart into a real cluster and checks that Pods are rewritten there. Opt-in:
//!
//! ```sh
//! PULLTHROUGH_E2E_IMAGE=123456789012.dkr.ecr.eu-west-1.amazonaws.com/pullthrough:0.1.0 \
//!   cargo test --test cluster -- --ignored
//! ```
//!
//! It uses the current kubectl context, `helm` from `$HELM` or `PATH`, and the image given
//! (pushed where the cluster's nodes can pull it). The release goes to the namespace
//! `pullthrough-e2e`, the test Pods to `pullthrough-e2e-apps` and `pullthrough-e2e-off`; all
//! three are deleted afterwards. The rule check is off, so no cache rule and no IAM role is
//! needed: only the admission path is under test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::process::{Command, Stdio};

use serde_json::Value;

const RELEASE_NAMESPACE: &str = "pullthrough-e2e";
const OPTED_IN: &str = "pullthrough-e2e-apps";
const OPTED_OUT: &str = "pullthrough-e2e-off";
const ACCOUNT: &str = "123456789012";
const REGION: &str = "eu-west-1";

fn run(program: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The image of the Pod the API server would create in `namespace`.
fn dry_run_image(namespace: &str) -> String {
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: e2e, namespace: {namespace}}}\n\
         spec: {{containers: [{{name: web, image: 'nginx:1.27'}}]}}\n"
    );
    let created: Value = serde_json::from_str(&run(
        "kubectl",
        &["apply", "--dry-run=server", "-o", "json", "-f", "-"],
        Some(&pod),
    ))
    .unwrap();
    created["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_owned()
}

struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Best effort: leave the cluster as it was even when an assertion failed.
        let _ = Command::new(&self.0)
            .args([
                "uninstall",
                "pullthrough",
                "-n",
                RELEASE_NAMESPACE,
                "--wait",
            ])
            .status();
        let _ = Command::new("kubectl")
            .args([
                "delete",
                "namespace",
                RELEASE_NAMESPACE,
                OPTED_IN,
                OPTED_OUT,
            ])
            .args(["--ignore-not-found", "--wait=false"])
            .status();
    }
}

#[test]
#[ignore = "needs a cluster and a pushed image (PULLTHROUGH_E2E_IMAGE)"]
fn pods_in_an_opted_in_namespace_are_rewritten_in_a_real_cluster() {
    let image = std::env::var("PULLTHROUGH_E2E_IMAGE")
        .expect("set PULLTHROUGH_E2E_IMAGE to the pullthrough image the nodes can pull");
    let (repository, tag) = image
        .rsplit_once(':')
        .filter(|(_, tag)| !tag.contains('/'))
        .expect("PULLTHROUGH_E2E_IMAGE must be repository:tag");
    let helm = std::env::var("HELM").unwrap_or_else(|_| "helm".to_owned());
    let _cleanup = Cleanup(helm.clone());
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/pullthrough");
    let repository_arg = format!("image.repository={repository}");
    let tag_arg = format!("image.tag={tag}");
    run(
        &helm,
        &[
            "upgrade",
            "--install",
            "pullthrough",
            chart,
            "--namespace",
            RELEASE_NAMESPACE,
            "--create-namespace",
            "--set",
            &repository_arg,
            "--set-string",
            &tag_arg,
            "--set-string",
            &format!("config.accountId={ACCOUNT}"),
            "--set",
            &format!("config.region={REGION}"),
            "--set",
            "config.ruleCheck.enabled=false",
            "--set",
            "reconciler.enabled=false",
            "--wait",
            "--timeout",
            "5m",
        ],
        None,
    );
    for namespace in [OPTED_IN, OPTED_OUT] {
        run("kubectl", &["create", "namespace", namespace], None);
    }
    run(
        "kubectl",
        &[
            "label",
            "namespace",
            OPTED_IN,
            "pullthrough.dev/enabled=true",
        ],
        None,
    );

    // Certificates from cert-manager or the chart may take a moment to be trusted.
    let expected =
        format!("{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/docker-hub/library/nginx:1.27");
    let mut image = String::new();
    for _ in 0..30 {
        image = dry_run_image(OPTED_IN);
        if image == expected {
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
    assert_eq!(image, expected);
    assert_eq!(dry_run_image(OPTED_OUT), "nginx:1.27");
}
