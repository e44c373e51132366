//! `AwsEcr` and the real SDK client (serialization, signing, pagination, retries, error parsing)
//! against a local stand-in of the ECR JSON API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ecr_support;

use std::time::{Duration, Instant};

use ecr_support::{DESCRIBE, Script, StandIn, VALIDATE, docker_hub_json, rule_json, sdk_client};
use pullthrough::ecr::{AwsEcr, CacheRule, CacheRuleSource as _, EcrError, ErrorKind, Validation};
use serde_json::json;

async fn start(script: Script) -> (StandIn, AwsEcr) {
    let standin = StandIn::start(script).await;
    let ecr = AwsEcr::new(sdk_client(&standin.url()), Some("123456789012".into()));
    (standin, ecr)
}

#[tokio::test]
async fn rules_are_listed_and_the_request_is_well_formed() {
    let (standin, ecr) = start(Script {
        rules: vec![
            docker_hub_json(),
            json!({
                "ecrRepositoryPrefix": "team-a",
                "upstreamRegistryUrl": "210987654321.dkr.ecr.eu-west-1.amazonaws.com",
                "upstreamRegistry": "ecr",
                "upstreamRepositoryPrefix": "team-a",
                "customRoleArn": "arn:aws:iam::123456789012:role/ecr-pull",
                "createdAt": 1.7E9,
            }),
            rule_json("quay", "quay.io"),
        ],
        ..Script::default()
    })
    .await;

    let rules = ecr.list_rules().await.unwrap();

    assert_eq!(
        rules,
        vec![
            CacheRule {
                prefix: "docker-hub".into(),
                upstream_url: "registry-1.docker.io".into(),
                upstream_registry: Some("docker-hub".into()),
                credential_arn: Some(
                    "arn:aws:secretsmanager:eu-west-1:123456789012:secret:ecr-pullthroughcache/docker-hub-AbCdEf"
                        .into()
                ),
                upstream_repository_prefix: None,
            },
            CacheRule {
                prefix: "team-a".into(),
                upstream_url: "210987654321.dkr.ecr.eu-west-1.amazonaws.com".into(),
                upstream_registry: Some("ecr".into()),
                credential_arn: None,
                upstream_repository_prefix: Some("team-a".into()),
            },
            CacheRule {
                prefix: "quay".into(),
                upstream_url: "quay.io".into(),
                upstream_registry: None,
                credential_arn: None,
                upstream_repository_prefix: None,
            },
        ]
    );
    let seen = standin.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, DESCRIBE);
    assert_eq!(
        seen[0].content_type.as_deref(),
        Some("application/x-amz-json-1.1")
    );
    assert_eq!(
        seen[0].body,
        json!({ "registryId": "123456789012", "maxResults": 1000 })
    );
    let auth = seen[0].authorization.as_deref().unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDSTANDIN/"),
        "{auth}"
    );
    assert!(auth.contains("/eu-west-1/ecr/aws4_request"), "{auth}");
}

#[tokio::test]
async fn no_registry_id_when_none() {
    let standin = StandIn::start(Script::default()).await;
    let ecr = AwsEcr::new(sdk_client(&standin.url()), None);

    assert_eq!(ecr.list_rules().await.unwrap(), Vec::new());
    assert_eq!(standin.seen()[0].body, json!({ "maxResults": 1000 }));
}

#[tokio::test]
async fn unknown_upstream_registry_values_pass_through() {
    let (_standin, ecr) = start(Script {
        rules: vec![json!({
            "ecrRepositoryPrefix": "future",
            "upstreamRegistryUrl": "registry.example.com",
            "upstreamRegistry": "some-registry-ecr-added-later",
        })],
        ..Script::default()
    })
    .await;

    let rules = ecr.list_rules().await.unwrap();

    assert_eq!(
        rules[0].upstream_registry.as_deref(),
        Some("some-registry-ecr-added-later")
    );
}

#[tokio::test]
async fn thousands_of_rules_arrive_across_pages() {
    let all: Vec<_> = (0..2500)
        .map(|i| {
            rule_json(
                &format!("prefix-{i:04}"),
                &format!("registry-{i}.example.com"),
            )
        })
        .collect();
    let (standin, ecr) = start(Script {
        rules: all,
        page_size: 1000,
        ..Script::default()
    })
    .await;

    let rules = ecr.list_rules().await.unwrap();

    assert_eq!(rules.len(), 2500);
    for (i, rule) in rules.iter().enumerate() {
        assert_eq!(rule.prefix, format!("prefix-{i:04}"));
        assert_eq!(rule.upstream_url, format!("registry-{i}.example.com"));
    }
    let seen = standin.seen();
    assert_eq!(seen.len(), 3);
    let tokens: Vec<_> = seen
        .iter()
        .map(|s| {
            s.body
                .get("nextToken")
                .and_then(|t| t.as_str())
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        tokens,
        [
            None,
            Some("tok-1000".to_owned()),
            Some("tok-2000".to_owned())
        ]
    );
    assert!(seen.iter().all(|s| s.body["maxResults"] == 1000));
    assert!(seen.iter().all(|s| s.body["registryId"] == "123456789012"));
}

#[tokio::test]
async fn small_server_pages_are_followed_too() {
    let (standin, ecr) = start(Script {
        rules: (0..7)
            .map(|i| rule_json(&format!("p{i}"), "example.com"))
            .collect(),
        page_size: 3,
        ..Script::default()
    })
    .await;

    assert_eq!(ecr.list_rules().await.unwrap().len(), 7);
    assert_eq!(standin.count(DESCRIBE), 3);
}

#[tokio::test]
async fn transient_throttling_is_retried_by_the_sdk() {
    let (standin, ecr) = start(Script {
        rules: vec![docker_hub_json()],
        throttle_first: 2,
        ..Script::default()
    })
    .await;

    let rules = ecr.list_rules().await.unwrap();

    assert_eq!(rules.len(), 1);
    assert_eq!(standin.count(DESCRIBE), 3);
}

#[tokio::test]
async fn persistent_throttling_is_classified_throttled() {
    let (standin, ecr) = start(Script {
        throttle_first: usize::MAX,
        ..Script::default()
    })
    .await;

    let err = ecr.list_rules().await.unwrap_err();

    assert!(
        matches!(
            &err,
            EcrError::ListCacheRules { code, kind: ErrorKind::Throttled, .. }
                if code == "ThrottlingException"
        ),
        "{err:?}"
    );
    // The configured 3 attempts, no more.
    assert_eq!(standin.count(DESCRIBE), 3);
}

#[tokio::test]
async fn error_code_in_the_header_is_understood() {
    let (_standin, ecr) = start(Script {
        throttle_first: usize::MAX,
        error_code_in_header: true,
        ..Script::default()
    })
    .await;

    let err = ecr.list_rules().await.unwrap_err();

    assert!(
        matches!(
            &err,
            EcrError::ListCacheRules { code, kind: ErrorKind::Throttled, .. }
                if code == "ThrottlingException"
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn access_denied_is_not_retried_and_is_classified() {
    let (standin, ecr) = start(Script {
        fail_with: Some((
            400,
            json!({
                "__type": "AccessDeniedException",
                "message": "User: arn:aws:sts::123456789012:assumed-role/x is not authorized to perform: ecr:DescribePullThroughCacheRules",
            })
            .to_string(),
        )),
        ..Script::default()
    })
    .await;

    let err = ecr.list_rules().await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::AccessDenied);
    assert_eq!(standin.count(DESCRIBE), 1);
}

#[tokio::test]
async fn bad_signatures_are_credential_errors() {
    for code in ["UnrecognizedClientException", "InvalidSignatureException"] {
        let (_standin, ecr) = start(Script {
            fail_with: Some((
                400,
                json!({ "__type": code, "message": "nope" }).to_string(),
            )),
            ..Script::default()
        })
        .await;

        let err = ecr.list_rules().await.unwrap_err();

        assert_eq!(err.kind(), ErrorKind::Credentials, "{code}: {err:?}");
    }
}

#[tokio::test]
async fn server_exceptions_are_retried_then_classified_service() {
    let (standin, ecr) = start(Script {
        fail_with: Some((
            500,
            json!({ "__type": "ServerException", "message": "internal" }).to_string(),
        )),
        ..Script::default()
    })
    .await;

    let err = ecr.list_rules().await.unwrap_err();

    assert!(
        matches!(
            &err,
            EcrError::ListCacheRules { code, kind: ErrorKind::Service, .. }
                if code == "ServerException"
        ),
        "{err:?}"
    );
    assert_eq!(standin.count(DESCRIBE), 3, "5xx is transient: retried");
}

#[tokio::test]
async fn plain_text_500s_are_classified_service() {
    let (standin, ecr) = start(Script {
        fail_with: Some((500, "Internal Server Error".into())),
        ..Script::default()
    })
    .await;

    let err = ecr.list_rules().await.unwrap_err();

    // No JSON and no x-amzn-errortype: the SDK yields an unhandled service error without a code.
    assert!(
        matches!(
            &err,
            EcrError::ListCacheRules { code, kind: ErrorKind::Service, .. } if code == "Unknown"
        ),
        "{err:?}"
    );
    assert_eq!(standin.count(DESCRIBE), 3);
}

#[tokio::test]
async fn unparsable_success_bodies_are_classified_service() {
    let (_standin, ecr) = start(Script {
        fail_with: Some((200, "{\"pullThroughCacheRules\": 42".into())),
        ..Script::default()
    })
    .await;

    let err = ecr.list_rules().await.unwrap_err();

    // A 200 the SDK cannot deserialize surfaces as an unhandled service error without a code.
    assert!(
        matches!(
            &err,
            EcrError::ListCacheRules { code, kind: ErrorKind::Service, .. } if code == "Unknown"
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn validate_rule_round_trips() {
    let (standin, ecr) = start(Script {
        rules: vec![
            docker_hub_json(),
            json!({
                "ecrRepositoryPrefix": "ghcr",
                "upstreamRegistryUrl": "ghcr.io",
                "upstreamRegistry": "github-container-registry",
                "credentialArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:ecr-pullthroughcache/ghcr-XyZ",
            }),
        ],
        validations: [(
            "ghcr".to_owned(),
            (
                false,
                Some("Unable to access the secret".to_owned()),
            ),
        )]
        .into(),
        ..Script::default()
    })
    .await;

    assert_eq!(
        ecr.validate_rule("docker-hub").await.unwrap(),
        Validation {
            is_valid: true,
            failure: None,
        }
    );
    assert_eq!(
        ecr.validate_rule("ghcr").await.unwrap(),
        Validation {
            is_valid: false,
            failure: Some("Unable to access the secret".into()),
        }
    );
    let seen = standin.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.target == VALIDATE));
    assert_eq!(
        seen[0].body,
        json!({ "ecrRepositoryPrefix": "docker-hub", "registryId": "123456789012" })
    );
    assert_eq!(seen[1].body["ecrRepositoryPrefix"], "ghcr");
}

#[tokio::test]
async fn validate_rule_for_a_missing_rule_is_a_service_error() {
    let (standin, ecr) = start(Script::default()).await;

    let err = ecr.validate_rule("nope").await.unwrap_err();

    match &err {
        EcrError::ValidateCacheRule {
            prefix, code, kind, ..
        } => {
            assert_eq!(prefix, "nope");
            assert_eq!(code, "PullThroughCacheRuleNotFoundException");
            assert_eq!(*kind, ErrorKind::Service);
        }
        other @ (EcrError::ListCacheRules { .. } | EcrError::Image { .. }) => {
            panic!("wrong variant: {other:?}")
        }
    }
    assert_eq!(standin.count(VALIDATE), 1, "a modeled 4xx is not retried");
}

#[tokio::test]
async fn validate_rule_throttling_is_retried_then_classified() {
    let (standin, ecr) = start(Script {
        rules: vec![docker_hub_json()],
        throttle_first: 1,
        ..Script::default()
    })
    .await;
    assert!(ecr.validate_rule("docker-hub").await.unwrap().is_valid);
    assert_eq!(standin.count(VALIDATE), 2);

    standin.script(|s| s.throttle_first = usize::MAX);
    let err = ecr.validate_rule("docker-hub").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Throttled);
}

#[tokio::test]
async fn a_closed_port_is_a_network_error() {
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let ecr = AwsEcr::new(sdk_client(&format!("http://{addr}")), None);
    let started = Instant::now();

    let err = ecr.list_rules().await.unwrap_err();

    assert!(
        matches!(
            &err,
            EcrError::ListCacheRules { code, kind: ErrorKind::Network, .. }
                if code == "DispatchFailure"
        ),
        "{err:?}"
    );
    let err = ecr.validate_rule("docker-hub").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Network, "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_silent_server_is_a_network_error() {
    let (standin, ecr) = start(Script {
        delay: Some(Duration::from_secs(30)),
        ..Script::default()
    })
    .await;
    let started = Instant::now();

    let err = ecr.list_rules().await.unwrap_err();

    // The 500 ms attempt timeout fires on each of the 3 attempts.
    assert!(
        matches!(
            &err,
            EcrError::ListCacheRules { code, kind: ErrorKind::Network, .. } if code == "Timeout"
        ),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(standin.count(DESCRIBE) >= 1);
}

#[tokio::test]
async fn a_client_without_credentials_is_a_credentials_error() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let standin = StandIn::start(Script::default()).await;
    let config = aws_sdk_ecr::Config::builder()
        .behavior_version(aws_sdk_ecr::config::BehaviorVersion::latest())
        .region(aws_sdk_ecr::config::Region::new("eu-west-1"))
        .endpoint_url(standin.url())
        .retry_config(ecr_support::fast_retry())
        .timeout_config(ecr_support::short_timeouts())
        .build();
    let ecr = AwsEcr::new(aws_sdk_ecr::Client::from_conf(config), None);

    let err = ecr.list_rules().await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Credentials, "{err:?}");
    assert_eq!(standin.seen().len(), 0, "nothing is sent unsigned");
}
