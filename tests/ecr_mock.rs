//! `AwsEcr` against `aws-smithy-mocks`: modeled outputs and errors injected by an interceptor,
//! no network at all.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use aws_sdk_ecr::Client;
use aws_sdk_ecr::config::retry::RetryConfig;
use aws_sdk_ecr::error::ErrorMetadata;
use aws_sdk_ecr::operation::describe_pull_through_cache_rules::{
    DescribePullThroughCacheRulesError, DescribePullThroughCacheRulesOutput,
};
use aws_sdk_ecr::operation::validate_pull_through_cache_rule::{
    ValidatePullThroughCacheRuleError, ValidatePullThroughCacheRuleOutput,
};
use aws_sdk_ecr::types::error::{PullThroughCacheRuleNotFoundException, ServerException};
use aws_sdk_ecr::types::{PullThroughCacheRule, UpstreamRegistry};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use pullthrough::ecr::{AwsEcr, CacheRule, CacheRuleSource as _, EcrError, ErrorKind, Validation};

/// A client whose retries are fast (1 ms) so retry paths stay quick.
fn client(rules: &[&Rule]) -> Client {
    mock_client!(aws_sdk_ecr, RuleMode::Sequential, rules, |c| c
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(1))
                .with_max_backoff(Duration::from_millis(5))
        ))
}

/// A client that never retries, so one mocked error is the whole story.
fn client_no_retry(rules: &[&Rule]) -> Client {
    mock_client!(aws_sdk_ecr, RuleMode::Sequential, rules, |c| c
        .retry_config(RetryConfig::disabled()))
}

fn docker_hub() -> PullThroughCacheRule {
    PullThroughCacheRule::builder()
        .ecr_repository_prefix("docker-hub")
        .upstream_registry_url("registry-1.docker.io")
        .upstream_registry(UpstreamRegistry::DockerHub)
        .credential_arn("arn:aws:secretsmanager:eu-west-1:123456789012:secret:ecr-pullthroughcache/docker-hub-AbCdEf")
        .registry_id("123456789012")
        .build()
}

fn rule_named(prefix: &str) -> PullThroughCacheRule {
    PullThroughCacheRule::builder()
        .ecr_repository_prefix(prefix)
        .upstream_registry_url(format!("{prefix}.example.com"))
        .build()
}

fn code_error(code: &str, message: &str) -> ErrorMetadata {
    ErrorMetadata::builder().code(code).message(message).build()
}

#[tokio::test]
async fn rules_are_mapped_to_cache_rule_fields() {
    let ecr_to_ecr = PullThroughCacheRule::builder()
        .ecr_repository_prefix("other-account")
        .upstream_registry_url("210987654321.dkr.ecr.eu-west-1.amazonaws.com")
        .upstream_registry(UpstreamRegistry::Ecr)
        .upstream_repository_prefix("team-a")
        .custom_role_arn("arn:aws:iam::123456789012:role/ecr-pull")
        .build();
    let quay = PullThroughCacheRule::builder()
        .ecr_repository_prefix("quay")
        .upstream_registry_url("quay.io")
        .build();
    let bare = PullThroughCacheRule::builder().build();
    let rule = mock!(Client::describe_pull_through_cache_rules)
        .match_requests(|req| {
            req.registry_id() == Some("123456789012")
                && req.max_results() == Some(1000)
                && req.next_token().is_none()
        })
        .then_output(move || {
            DescribePullThroughCacheRulesOutput::builder()
                .pull_through_cache_rules(docker_hub())
                .pull_through_cache_rules(ecr_to_ecr.clone())
                .pull_through_cache_rules(quay.clone())
                .pull_through_cache_rules(bare.clone())
                .build()
        });
    let ecr = AwsEcr::new(client(&[&rule]), Some("123456789012".into()));

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
                prefix: "other-account".into(),
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
            // Missing fields become empty strings rather than an error.
            CacheRule {
                prefix: String::new(),
                upstream_url: String::new(),
                upstream_registry: None,
                credential_arn: None,
                upstream_repository_prefix: None,
            },
        ]
    );
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn no_registry_id_is_sent_when_none() {
    let rule = mock!(Client::describe_pull_through_cache_rules)
        .match_requests(|req| req.registry_id().is_none())
        .then_output(|| DescribePullThroughCacheRulesOutput::builder().build());
    let ecr = AwsEcr::new(client(&[&rule]), None);

    assert_eq!(ecr.list_rules().await.unwrap(), Vec::new());
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn every_page_is_collected() {
    let page1 = mock!(Client::describe_pull_through_cache_rules)
        .match_requests(|req| req.next_token().is_none())
        .then_output(|| {
            DescribePullThroughCacheRulesOutput::builder()
                .pull_through_cache_rules(rule_named("a"))
                .pull_through_cache_rules(rule_named("b"))
                .next_token("page-2")
                .build()
        });
    let page2 = mock!(Client::describe_pull_through_cache_rules)
        .match_requests(|req| req.next_token() == Some("page-2") && req.max_results() == Some(1000))
        .then_output(|| {
            DescribePullThroughCacheRulesOutput::builder()
                .pull_through_cache_rules(rule_named("c"))
                .next_token("page-3")
                .build()
        });
    let page3 = mock!(Client::describe_pull_through_cache_rules)
        .match_requests(|req| req.next_token() == Some("page-3"))
        .then_output(|| {
            DescribePullThroughCacheRulesOutput::builder()
                .pull_through_cache_rules(rule_named("d"))
                .build()
        });
    let ecr = AwsEcr::new(client(&[&page1, &page2, &page3]), None);

    let prefixes: Vec<String> = ecr
        .list_rules()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.prefix)
        .collect();

    assert_eq!(prefixes, ["a", "b", "c", "d"]);
    assert_eq!(
        (page1.num_calls(), page2.num_calls(), page3.num_calls()),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn an_error_on_a_later_page_fails_the_whole_list() {
    let page1 = mock!(Client::describe_pull_through_cache_rules).then_output(|| {
        DescribePullThroughCacheRulesOutput::builder()
            .pull_through_cache_rules(rule_named("a"))
            .next_token("page-2")
            .build()
    });
    let page2 = mock!(Client::describe_pull_through_cache_rules).then_error(|| {
        DescribePullThroughCacheRulesError::generic(code_error(
            "AccessDeniedException",
            "not authorized",
        ))
    });
    let ecr = AwsEcr::new(client_no_retry(&[&page1, &page2]), None);

    let err = ecr.list_rules().await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::AccessDenied);
    assert_eq!(page2.num_calls(), 1);
}

#[tokio::test]
async fn access_denied_is_classified() {
    let rule = mock!(Client::describe_pull_through_cache_rules).then_error(|| {
        DescribePullThroughCacheRulesError::generic(code_error(
            "AccessDeniedException",
            "User is not authorized to perform: ecr:DescribePullThroughCacheRules",
        ))
    });
    let ecr = AwsEcr::new(client_no_retry(&[&rule]), None);

    let err = ecr.list_rules().await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::AccessDenied);
    match &err {
        EcrError::ListCacheRules { code, kind, .. } => {
            assert_eq!(code, "AccessDeniedException");
            assert_eq!(*kind, ErrorKind::AccessDenied);
        }
        other @ (EcrError::ValidateCacheRule { .. } | EcrError::Image { .. }) => {
            panic!("wrong variant: {other:?}")
        }
    }
    assert!(err.to_string().contains("AccessDeniedException"), "{err}");
    assert!(std::error::Error::source(&err).is_some());
    assert_eq!(err.kind().as_str(), "access_denied");
}

#[tokio::test]
async fn throttling_is_classified() {
    let rule = mock!(Client::describe_pull_through_cache_rules).then_error(|| {
        DescribePullThroughCacheRulesError::generic(code_error(
            "ThrottlingException",
            "Rate exceeded",
        ))
    });
    let ecr = AwsEcr::new(client_no_retry(&[&rule]), None);

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
async fn throttling_is_retried_by_the_sdk_then_succeeds() {
    let rule = mock!(Client::describe_pull_through_cache_rules)
        .sequence()
        .error(|| {
            DescribePullThroughCacheRulesError::generic(code_error(
                "ThrottlingException",
                "Rate exceeded",
            ))
        })
        .times(2)
        .output(|| {
            DescribePullThroughCacheRulesOutput::builder()
                .pull_through_cache_rules(docker_hub())
                .build()
        })
        .build();
    let ecr = AwsEcr::new(client(&[&rule]), None);

    let rules = ecr.list_rules().await.unwrap();

    assert_eq!(rules.len(), 1);
    assert_eq!(rule.num_calls(), 3);
}

#[tokio::test]
async fn other_modeled_errors_are_service_errors() {
    let rule = mock!(Client::describe_pull_through_cache_rules).then_error(|| {
        DescribePullThroughCacheRulesError::ServerException(
            ServerException::builder()
                .message("internal")
                .meta(code_error("ServerException", "internal"))
                .build(),
        )
    });
    let ecr = AwsEcr::new(client_no_retry(&[&rule]), None);

    let err = ecr.list_rules().await.unwrap_err();

    assert!(
        matches!(
            &err,
            EcrError::ListCacheRules { code, kind: ErrorKind::Service, .. }
                if code == "ServerException"
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn expired_credentials_are_classified() {
    let rule = mock!(Client::describe_pull_through_cache_rules).then_error(|| {
        DescribePullThroughCacheRulesError::generic(code_error(
            "ExpiredTokenException",
            "The security token included in the request is expired",
        ))
    });
    let ecr = AwsEcr::new(client_no_retry(&[&rule]), None);

    assert_eq!(
        ecr.list_rules().await.unwrap_err().kind(),
        ErrorKind::Credentials
    );
}

#[tokio::test]
async fn validate_rule_reports_is_valid_and_failure() {
    let valid = mock!(Client::validate_pull_through_cache_rule)
        .match_requests(|req| {
            req.ecr_repository_prefix() == Some("docker-hub")
                && req.registry_id() == Some("123456789012")
        })
        .then_output(|| {
            ValidatePullThroughCacheRuleOutput::builder()
                .ecr_repository_prefix("docker-hub")
                .is_valid(true)
                .build()
        });
    let failing = mock!(Client::validate_pull_through_cache_rule)
        .match_requests(|req| req.ecr_repository_prefix() == Some("ghcr"))
        .then_output(|| {
            ValidatePullThroughCacheRuleOutput::builder()
                .ecr_repository_prefix("ghcr")
                .is_valid(false)
                .failure("Unable to access the secret")
                .build()
        });
    let ecr = AwsEcr::new(client(&[&valid, &failing]), Some("123456789012".into()));

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
    assert_eq!((valid.num_calls(), failing.num_calls()), (1, 1));
}

#[tokio::test]
async fn validate_rule_errors_carry_the_prefix_and_kind() {
    let not_found = mock!(Client::validate_pull_through_cache_rule).then_error(|| {
        ValidatePullThroughCacheRuleError::PullThroughCacheRuleNotFoundException(
            PullThroughCacheRuleNotFoundException::builder()
                .message("no rule")
                .meta(code_error(
                    "PullThroughCacheRuleNotFoundException",
                    "no rule",
                ))
                .build(),
        )
    });
    let denied = mock!(Client::validate_pull_through_cache_rule).then_error(|| {
        ValidatePullThroughCacheRuleError::generic(code_error(
            "AccessDeniedException",
            "not authorized",
        ))
    });
    let throttled = mock!(Client::validate_pull_through_cache_rule).then_error(|| {
        ValidatePullThroughCacheRuleError::generic(code_error(
            "ThrottlingException",
            "Rate exceeded",
        ))
    });
    let ecr = AwsEcr::new(client_no_retry(&[&not_found, &denied, &throttled]), None);

    let err = ecr.validate_rule("gone").await.unwrap_err();
    match &err {
        EcrError::ValidateCacheRule {
            prefix, code, kind, ..
        } => {
            assert_eq!(prefix, "gone");
            assert_eq!(code, "PullThroughCacheRuleNotFoundException");
            assert_eq!(*kind, ErrorKind::Service);
        }
        other @ (EcrError::ListCacheRules { .. } | EcrError::Image { .. }) => {
            panic!("wrong variant: {other:?}")
        }
    }
    assert!(err.to_string().contains("gone"), "{err}");

    let err = ecr.validate_rule("docker-hub").await.unwrap_err();
    assert!(
        matches!(&err, EcrError::ValidateCacheRule { prefix, kind: ErrorKind::AccessDenied, .. } if prefix == "docker-hub"),
        "{err:?}"
    );

    let err = ecr.validate_rule("ghcr").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Throttled);
}
