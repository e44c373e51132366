//! `pullthrough rules -o aws|terraform|pulumi|cloudformation`: golden outputs of the four forms
//! for one configuration (regenerate with `UPDATE_GOLDEN=1`); `.ci/iac.sh` runs the real
//! validators (python-hcl2, Python's compiler and pulumi_aws, cfn-lint) over the same files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

/// A map with every kind of rule: credentialed, open, nested prefix and ECR to ECR.
const CONFIG: &str = "accountId: \"123456789012\"\nregion: eu-west-1\nregistries:\n  docker.io: docker-hub\n  quay.io: quay\n  ghcr.io: github\n  registry.k8s.io: k8s/upstream\n  111122223333.dkr.ecr.us-east-1.amazonaws.com:\n    prefix: ecr-east\n    upstreamRepositoryPrefix: team\n";

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/rules")
        .join(name)
}

fn rules(output: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pullthrough.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pullthrough"))
        .args(["rules", "--config"])
        .arg(&config)
        .args(["-o", output])
        .env_clear()
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn check(output: &str, file: &str) -> String {
    let text = rules(output);
    let path = golden(file);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert!(
        text == want,
        "{file} differs from `pullthrough rules -o {output}`; rerun with UPDATE_GOLDEN=1 and review the diff"
    );
    text
}

#[test]
fn aws_commands_match_their_golden_file() {
    let text = check("aws", "rules.sh.txt");
    assert!(text.contains("aws ecr create-pull-through-cache-rule"));
    assert!(text.contains("aws ecr create-repository-creation-template"));
}

#[test]
fn terraform_matches_its_golden_file() {
    let text = check("terraform", "main.tf");
    for resource in [
        "resource \"aws_ecr_pull_through_cache_rule\" \"docker_hub\"",
        "resource \"aws_secretsmanager_secret\" \"docker_hub\"",
        "resource \"aws_ecr_repository_creation_template\" \"k8s_upstream\"",
    ] {
        assert!(text.contains(resource), "{resource}");
    }
    assert!(text.contains("upstream_repository_prefix = \"team\""));
    assert!(!text.contains("resource \"aws_secretsmanager_secret\" \"quay\""));
}

#[test]
fn pulumi_matches_its_golden_file() {
    let text = check("pulumi", "__main__.py");
    assert!(text.contains("aws.ecr.PullThroughCacheRule("));
    assert!(text.contains("aws.ecr.RepositoryCreationTemplate("));
    assert!(text.contains("aws.secretsmanager.Secret("));
    assert!(text.contains("credential_arn=github_secret.arn"));
}

#[test]
fn cloudformation_matches_its_golden_file() {
    let text = check("cloudformation", "template.yaml");
    assert!(text.contains("Type: AWS::ECR::PullThroughCacheRule"));
    assert!(text.contains("Type: AWS::ECR::RepositoryCreationTemplate"));
    assert!(text.contains("Type: AWS::SecretsManager::Secret"));
    assert!(text.contains("CredentialArn: !Ref DockerHubSecret"));
    // Every secret value comes from a NoEcho parameter.
    assert_eq!(text.matches("NoEcho: true").count(), 2);
}

#[test]
fn code_forms_refuse_check() {
    let out = Command::new(env!("CARGO_BIN_EXE_pullthrough"))
        .args(["rules", "--check", "-o", "terraform"])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--check"));
}
