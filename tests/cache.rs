//! `pullthrough cache` and the cache reads against the local ECR stand-in: hundreds of
//! repositories over several pages, their images, creation templates, throttling, and the
//! binary's JSON and exit status.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ecr_support;

use std::process::Command;

use ecr_support::{
    DESCRIBE_IMAGES, DESCRIBE_REPOSITORIES, DESCRIBE_TEMPLATES, Script, StandIn, image_json,
    repository_json, sdk_client, template_json,
};
use pullthrough::cache::run::{cache_report, read_inventory, read_templates};
use pullthrough::cache::template::{Coverage, PULL_THROUGH_CACHE, coverage};
use pullthrough::cache::{Pricing, days};
use pullthrough::config::{Config, Overrides};
use pullthrough::ecr::{AwsEcr, ErrorKind};
use serde_json::{Value, json};

const DAY: f64 = 86_400.0;

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        .floor()
}

fn config() -> Config {
    Config::load(
        "accountId: \"123456789012\"\nregion: eu-west-1\nregistries:\n  docker.io: docker-hub\n  quay.io: quay\n  ghcr.io: github\n",
        &Overrides::default(),
    )
    .unwrap()
}

/// 300 Docker Hub repositories (two images each: 100 MB pulled yesterday, 50 MB not pulled
/// for 60 days), 40 Quay repositories (one 1 GB image with no recorded pull, pushed 10 days
/// ago), and 60 repositories of the team's own. 400 in all, 100 per page.
fn big_registry() -> Script {
    let t = now();
    let mut script = Script {
        page_size: 100,
        ..Script::default()
    };
    for i in 0..300 {
        let name = format!("docker-hub/library/app{i}");
        script.images.insert(
            name.clone(),
            vec![
                image_json(&name, 2 * i, 100_000_000, t - 90.0 * DAY, Some(t - DAY)),
                image_json(
                    &name,
                    2 * i + 1,
                    50_000_000,
                    t - 90.0 * DAY,
                    Some(t - 60.0 * DAY),
                ),
            ],
        );
        script.repositories.push(repository_json(&name));
    }
    for i in 0..40 {
        let name = format!("quay/org/tool{i}");
        script.images.insert(
            name.clone(),
            vec![image_json(
                &name,
                10_000 + i,
                1_000_000_000,
                t - 10.0 * DAY,
                None,
            )],
        );
        script.repositories.push(repository_json(&name));
        if i % 7 == 0 {
            script
                .repositories
                .push(repository_json(&format!("team/own{i}")));
        }
    }
    for i in 0..54 {
        script
            .repositories
            .push(repository_json(&format!("team/svc{i}")));
    }
    script
}

async fn start(script: Script) -> (StandIn, AwsEcr) {
    let standin = StandIn::start(script).await;
    let ecr = AwsEcr::new(sdk_client(&standin.url()), Some("123456789012".into()));
    (standin, ecr)
}

#[tokio::test]
async fn hundreds_of_repositories_over_several_pages_are_summed_per_prefix() {
    let (standin, ecr) = start(big_registry()).await;
    let report = cache_report(&ecr, &config(), Pricing::default(), 10_000)
        .await
        .unwrap();

    assert!(!report.truncated);
    let hub = report
        .prefixes
        .iter()
        .find(|p| p.prefix == "docker-hub")
        .unwrap();
    assert_eq!(hub.registry, "docker.io");
    assert_eq!(hub.repositories, 300);
    assert_eq!(hub.images, 600);
    assert_eq!(hub.bytes, 45_000_000_000);
    assert!((hub.monthly_cost - 4.5).abs() < 1e-9);
    assert_eq!(hub.stale_images, 300);
    assert_eq!(hub.stale_bytes, 15_000_000_000);
    let quay = report.prefixes.iter().find(|p| p.prefix == "quay").unwrap();
    assert_eq!((quay.repositories, quay.images), (40, 40));
    assert_eq!(quay.bytes, 40_000_000_000);
    // No recorded pull, pushed 10 days ago: not stale at 30 days.
    assert_eq!(quay.stale_images, 0);
    let github = report
        .prefixes
        .iter()
        .find(|p| p.prefix == "github")
        .unwrap();
    assert_eq!(github.repositories, 0);

    // Every page of repositories, and images only of the mapped ones.
    assert_eq!(standin.count(DESCRIBE_REPOSITORIES), 4);
    assert_eq!(standin.count(DESCRIBE_IMAGES), 340);
    let seen = standin.seen();
    let pages: Vec<&Value> = seen
        .iter()
        .filter(|s| s.target == DESCRIBE_REPOSITORIES)
        .map(|s| &s.body)
        .collect();
    assert_eq!(
        *pages[0],
        json!({ "registryId": "123456789012", "maxResults": 1000 })
    );
    assert_eq!(pages[3]["nextToken"], "repositories-300");
    assert!(
        seen.iter()
            .filter(|s| s.target == DESCRIBE_IMAGES)
            .all(|s| !s.body["repositoryName"]
                .as_str()
                .unwrap()
                .starts_with("team/"))
    );
}

#[tokio::test]
async fn a_shorter_staleness_and_another_price_change_the_figures() {
    let (_standin, ecr) = start(big_registry()).await;
    let report = cache_report(
        &ecr,
        &config(),
        Pricing {
            price_per_gb: 0.11,
            stale_after: days(7),
        },
        10_000,
    )
    .await
    .unwrap();
    let quay = report.prefixes.iter().find(|p| p.prefix == "quay").unwrap();
    assert_eq!(quay.stale_images, 40);
    assert!((quay.monthly_cost - 4.4).abs() < 1e-9);
    assert_eq!(report.stale_after_days, 7);
}

#[tokio::test]
async fn the_repository_limit_bounds_the_reads_and_is_reported() {
    let (standin, ecr) = start(big_registry()).await;
    let inventory = read_inventory(&ecr, &config(), 150).await.unwrap();
    assert!(inventory.truncated);
    assert_eq!(standin.count(DESCRIBE_REPOSITORIES), 2);
    let described: usize = inventory
        .prefixes
        .values()
        .map(|p| p.repositories.len())
        .sum();
    assert_eq!(described, 150);
}

#[tokio::test]
async fn images_of_one_repository_are_read_over_every_page() {
    let t = now();
    let mut script = Script {
        page_size: 100,
        ..Script::default()
    };
    let name = "docker-hub/library/busy";
    script.repositories.push(repository_json(name));
    script.images.insert(
        name.into(),
        (0..250)
            .map(|i| image_json(name, i, 1_000, t, Some(t)))
            .collect(),
    );
    let (standin, ecr) = start(script).await;
    let inventory = read_inventory(&ecr, &config(), 10).await.unwrap();
    assert_eq!(
        inventory.prefixes["docker-hub"].repositories[name].len(),
        250
    );
    assert_eq!(standin.count(DESCRIBE_IMAGES), 3);
}

#[tokio::test]
async fn throttling_is_retried_with_back_off() {
    let mut script = big_registry();
    // The SDK retries 3 times itself (fast_retry); the pager retries the page after that.
    script.throttle_first = 4;
    let (_standin, ecr) = start(script).await;
    let report = cache_report(&ecr, &config(), Pricing::default(), 10_000)
        .await
        .unwrap();
    assert_eq!(
        report.prefixes.iter().map(|p| p.repositories).sum::<u64>(),
        340
    );
}

#[tokio::test]
async fn access_denied_is_an_error_with_its_kind() {
    let (_standin, ecr) = start(Script {
        fail_with: Some((
            400,
            json!({"__type": "AccessDeniedException", "message": "not authorized to perform: ecr:DescribeRepositories"}).to_string(),
        )),
        ..Script::default()
    })
    .await;
    let err = cache_report(&ecr, &config(), Pricing::default(), 10)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AccessDenied);
    assert!(err.to_string().contains("DescribeRepositories"), "{err}");
}

#[tokio::test]
async fn creation_templates_are_read_over_pages_and_matched_to_rules() {
    let mut templates = vec![
        template_json("docker-hub", &[PULL_THROUGH_CACHE], Some("{\"rules\":[]}")),
        template_json("quay", &["REPLICATION"], None),
    ];
    for i in 0..5 {
        templates.push(template_json(
            &format!("team{i}"),
            &["CREATE_ON_PUSH"],
            None,
        ));
    }
    let (standin, ecr) = start(Script {
        page_size: 2,
        templates,
        ..Script::default()
    })
    .await;
    let found = read_templates(&ecr).await.unwrap();
    assert_eq!(found.len(), 7);
    assert_eq!(standin.count(DESCRIBE_TEMPLATES), 4);
    assert_eq!(found[0].applied_for, [PULL_THROUGH_CACHE]);
    assert_eq!(
        found[0].resource_tags,
        [("team".to_owned(), "platform".to_owned())]
    );
    let c = config();
    assert_eq!(
        coverage(c.mapping("docker.io").unwrap(), &found),
        Coverage::Covered {
            template: "docker-hub".into(),
            lifecycle: true
        }
    );
    assert_eq!(
        coverage(c.mapping("quay.io").unwrap(), &found),
        Coverage::Missing
    );
}

/// Runs the binary with only the stand-in and static credentials in its AWS environment.
async fn run_binary(endpoint: String, args: &[&str]) -> std::process::Output {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pullthrough"));
    cmd.args(args)
        .env_clear()
        .env("HOME", home.path())
        .env("AWS_CONFIG_FILE", home.path().join("config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            home.path().join("credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_MAX_ATTEMPTS", "2")
        .env("AWS_ENDPOINT_URL_ECR", endpoint)
        .env("AWS_ACCESS_KEY_ID", "AKIDSTANDIN")
        .env("AWS_SECRET_ACCESS_KEY", "secret");
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    drop(home);
    out
}

#[tokio::test]
async fn the_command_prints_the_documented_json() {
    let standin = StandIn::start(big_registry()).await;
    let out = run_binary(
        standin.url(),
        &[
            "cache",
            "--account-id",
            "123456789012",
            "--region",
            "eu-west-1",
            "-o",
            "json",
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["pricePerGb"], 0.1);
    assert_eq!(v["staleAfterDays"], 30);
    let hub = v["prefixes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["prefix"] == "docker-hub")
        .unwrap();
    assert_eq!(
        *hub,
        json!({
            "prefix": "docker-hub",
            "registry": "docker.io",
            "repositories": 300,
            "images": 600,
            "bytes": 45_000_000_000_u64,
            "monthlyCost": 4.5,
            "staleImages": 300,
            "staleBytes": 15_000_000_000_u64,
            "staleMonthlyCost": 1.5,
        })
    );
    let total = &v["total"];
    let sum = |key: &str| -> u64 {
        v["prefixes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[key].as_u64().unwrap())
            .sum()
    };
    for key in [
        "repositories",
        "images",
        "bytes",
        "staleImages",
        "staleBytes",
    ] {
        assert_eq!(total[key].as_u64(), Some(sum(key)), "{key}");
    }
    assert!(total["monthlyCost"].as_f64().unwrap() >= 4.5);
    assert!(total["staleMonthlyCost"].as_f64().unwrap() >= 1.5);
}

#[tokio::test]
async fn the_table_and_the_limit_warning() {
    let standin = StandIn::start(big_registry()).await;
    let out = run_binary(
        standin.url(),
        &[
            "cache",
            "--region",
            "eu-west-1",
            "--max-repositories",
            "100",
        ],
    )
    .await;
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Shown with --nocapture: what an operator reads.
    eprintln!("{stdout}");
    assert!(stdout.starts_with("PREFIX"), "{stdout}");
    assert!(stdout.contains("TOTAL"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("stopped at 100 repositories"), "{stderr}");
}

#[tokio::test]
async fn the_command_exits_2_when_ecr_cannot_be_read() {
    let standin = StandIn::start(Script {
        fail_with: Some((
            400,
            json!({"__type": "AccessDeniedException", "message": "denied"}).to_string(),
        )),
        ..Script::default()
    })
    .await;
    let out = run_binary(standin.url(), &["cache", "--region", "eu-west-1"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot read the cache repositories from ECR"),
        "{stderr}"
    );
}

#[tokio::test]
async fn rules_check_names_the_prefixes_without_a_template_and_keeps_its_exit_status() {
    let standin = StandIn::start(Script {
        rules: vec![
            ecr_support::docker_hub_json(),
            ecr_support::rule_json("quay", "quay.io"),
            ecr_support::rule_json("github", "ghcr.io"),
        ],
        templates: vec![
            template_json("docker-hub", &[PULL_THROUGH_CACHE], Some("{\"rules\":[]}")),
            template_json("github", &[PULL_THROUGH_CACHE], None),
            template_json("quay", &["REPLICATION"], None),
        ],
        ..Script::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pullthrough.yaml");
    std::fs::write(
        &config,
        "accountId: \"123456789012\"\nregion: eu-west-1\nregistries:\n  docker.io: docker-hub\n  quay.io: quay\n  ghcr.io: github\n",
    )
    .unwrap();
    let out = run_binary(
        standin.url(),
        &["rules", "--check", "--config", config.to_str().unwrap()],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Every rule is present: a missing template does not change the exit status.
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let row = |registry: &str| {
        stdout
            .lines()
            .rfind(|l| l.starts_with(registry))
            .unwrap()
            .to_owned()
    };
    assert!(row("docker.io").ends_with("template docker-hub, lifecycle policy"));
    assert!(row("ghcr.io").ends_with("template github, no lifecycle policy"));
    assert!(row("quay.io").ends_with("no template"));
    assert!(stdout.contains(
        "aws ecr create-repository-creation-template --region eu-west-1 --prefix quay --applied-for PULL_THROUGH_CACHE"
    ));
    assert!(
        !stdout
            .contains("create-repository-creation-template --region eu-west-1 --prefix docker-hub")
    );
    assert!(stdout.contains("LIFECYCLE_POLICY='{\"rules\":["));
    assert_eq!(standin.count(DESCRIBE_TEMPLATES), 1);
}

#[tokio::test]
async fn archived_images_are_read_but_not_counted() {
    let t = now();
    let name = "quay/org/tool";
    let mut archived = image_json(
        name,
        2,
        7_000_000_000,
        t - 400.0 * DAY,
        Some(t - 300.0 * DAY),
    );
    archived["imageStatus"] = json!("ARCHIVED");
    let mut activating = image_json(
        name,
        3,
        5_000_000_000,
        t - 400.0 * DAY,
        Some(t - 300.0 * DAY),
    );
    activating["imageStatus"] = json!("ACTIVATING");
    let mut script = Script::default();
    script.repositories.push(repository_json(name));
    script.images.insert(
        name.into(),
        vec![
            image_json(name, 1, 1_000_000_000, t - 5.0 * DAY, Some(t - DAY)),
            archived,
            activating,
        ],
    );
    let (_standin, ecr) = start(script).await;
    let report = cache_report(&ecr, &config(), Pricing::default(), 10)
        .await
        .unwrap();
    let quay = report.prefixes.iter().find(|p| p.prefix == "quay").unwrap();
    assert_eq!((quay.repositories, quay.images), (1, 1));
    assert_eq!(quay.bytes, 1_000_000_000);
    assert_eq!(quay.stale_images, 0);
}
