//! The ECR API, narrowed to what pullthrough needs and returning its own types. The only
//! module that touches `aws_sdk_ecr`.
//!
//! Credentials and region come from the SDK's default chain (IRSA, EKS Pod Identity,
//! environment), and `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_ECR` point the client at any
//! ECR-compatible endpoint.

use std::future::Future;
use std::time::{Duration, SystemTime};

use aws_sdk_ecr::error::{ProvideErrorMetadata, SdkError};
use rand::Rng as _;
use thiserror::Error;

/// One pull-through cache rule of the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRule {
    /// `ecrRepositoryPrefix` (`docker-hub`, or `ROOT`).
    pub prefix: String,
    /// `upstreamRegistryUrl` (`registry-1.docker.io`).
    pub upstream_url: String,
    /// `upstreamRegistry` (`docker-hub`), when ECR reports it.
    pub upstream_registry: Option<String>,
    /// `credentialArn`, for rules with upstream credentials.
    pub credential_arn: Option<String>,
    /// `upstreamRepositoryPrefix`, for ECR-to-ECR rules.
    pub upstream_repository_prefix: Option<String>,
    /// `createdAt`: since when images of the rule's registry can be rewritten.
    pub created_at: Option<SystemTime>,
}

impl CacheRule {
    /// A rule with a prefix and an upstream URL, and nothing else.
    pub fn new(prefix: impl Into<String>, upstream_url: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            upstream_url: upstream_url.into(),
            upstream_registry: None,
            credential_arn: None,
            upstream_repository_prefix: None,
            created_at: None,
        }
    }
}

/// The answer of `ValidatePullThroughCacheRule`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    /// Whether ECR could reach the upstream with the rule's credentials.
    pub is_valid: bool,
    /// ECR's reason when not valid.
    pub failure: Option<String>,
}

/// A failed ECR call.
#[derive(Debug, Error)]
pub enum EcrError {
    /// `DescribePullThroughCacheRules` failed.
    #[error("failed to list pull-through cache rules ({code})")]
    ListCacheRules {
        /// ECR's error code, or the kind of transport failure.
        code: String,
        /// Bounded classification.
        kind: ErrorKind,
        /// The SDK error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `ValidatePullThroughCacheRule` failed.
    #[error("failed to validate pull-through cache rule {prefix} ({code})")]
    ValidateCacheRule {
        /// The rule's prefix.
        prefix: String,
        /// ECR's error code, or the kind of transport failure.
        code: String,
        /// Bounded classification.
        kind: ErrorKind,
        /// The SDK error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A read of what the cache holds (`DescribeRepositories`, `DescribeImages`,
    /// `DescribeRepositoryCreationTemplates`) failed.
    #[error("failed to read {operation} ({code})")]
    ReadCache {
        /// The ECR operation.
        operation: &'static str,
        /// ECR's error code, or the kind of transport failure.
        code: String,
        /// Bounded classification.
        kind: ErrorKind,
        /// The SDK error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `DescribeImages` or `BatchGetImage` failed for an image of the cache.
    #[error("{operation} failed for {repository} ({code})")]
    Image {
        /// `DescribeImages` or `BatchGetImage`.
        operation: &'static str,
        /// The cache repository.
        repository: String,
        /// ECR's error or failure code, or the kind of transport failure.
        code: String,
        /// Bounded classification.
        kind: ErrorKind,
        /// The SDK error, or ECR's failure reason.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A bounded classification of ECR failures, for metrics and back-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Throttled or rate-limited.
    Throttled,
    /// Missing permissions.
    AccessDenied,
    /// No credentials could be found or used.
    Credentials,
    /// The service answered with another error.
    Service,
    /// No answer: network, DNS, TLS, timeout.
    Network,
}

impl ErrorKind {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Throttled => "throttled",
            Self::AccessDenied => "access_denied",
            Self::Credentials => "credentials",
            Self::Service => "service",
            Self::Network => "network",
        }
    }
}

impl EcrError {
    /// The bounded classification.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::ListCacheRules { kind, .. }
            | Self::ValidateCacheRule { kind, .. }
            | Self::ReadCache { kind, .. }
            | Self::Image { kind, .. } => *kind,
        }
    }
}

/// The ECR calls pullthrough makes.
pub trait CacheRuleSource: Send + Sync {
    /// Every pull-through cache rule of the registry (all pages).
    fn list_rules(&self) -> impl Future<Output = Result<Vec<CacheRule>, EcrError>> + Send;
    /// Checks a credentialed rule's upstream access.
    fn validate_rule(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Validation, EcrError>> + Send;
}

/// An image in a cache repository, as ECR describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedImage {
    /// The manifest digest (`sha256:…`).
    pub digest: String,
    /// The tags that point at it in the cache.
    pub tags: Vec<String>,
}

/// The ECR calls that read, and fill, the pull-through cache by image.
pub trait ImageSource: Send + Sync {
    /// `DescribeImages` by digest: the image when the cache repository holds it; `None` when
    /// the repository or the image does not exist. Read-only.
    fn describe_digest(
        &self,
        repository: &str,
        digest: &str,
    ) -> impl Future<Output = Result<Option<CachedImage>, EcrError>> + Send;
    /// `DescribeImages` by tag: what the cache holds under the tag now, if anything. Read-only.
    fn describe_tag(
        &self,
        repository: &str,
        tag: &str,
    ) -> impl Future<Output = Result<Option<CachedImage>, EcrError>> + Send;
    /// `BatchGetImage` by tag through the cache rule: ECR imports the image from the upstream
    /// (creating the repository on first use) and answers its digest; `None` when the upstream
    /// has no such tag.
    fn fetch_tag(
        &self,
        repository: &str,
        tag: &str,
    ) -> impl Future<Output = Result<Option<String>, EcrError>> + Send;
}

/// Manifest types a pull through the cache may answer with: an index for multi-architecture
/// images (what a `tag@digest` usually pins), or a single manifest.
const MEDIA_TYPES: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];
/// [`CacheRuleSource`] over the AWS SDK.
#[derive(Debug, Clone)]
pub struct AwsEcr {
    client: aws_sdk_ecr::Client,
    registry_id: Option<String>,
}

impl AwsEcr {
    /// A client from the SDK's default chain for `region`; `registry_id` is the account
    /// (the caller's own when `None`).
    pub async fn from_env(region: &str, registry_id: Option<String>) -> Self {
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_owned()))
            .load()
            .await;
        Self::new(aws_sdk_ecr::Client::new(&shared), registry_id)
    }

    /// Wraps an existing client (tests build one against a mock or a local endpoint).
    pub fn new(client: aws_sdk_ecr::Client, registry_id: Option<String>) -> Self {
        Self {
            client,
            registry_id,
        }
    }
}

fn classify<E, R>(err: &SdkError<E, R>) -> (ErrorKind, String)
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("Unknown").to_owned();
            let kind = match code.as_str() {
                "ThrottlingException"
                | "Throttling"
                | "TooManyRequestsException"
                | "RequestLimitExceeded"
                | "LimitExceededException" => ErrorKind::Throttled,
                "AccessDeniedException" | "AccessDenied" | "UnauthorizedOperation" => {
                    ErrorKind::AccessDenied
                }
                "UnrecognizedClientException"
                | "InvalidSignatureException"
                | "ExpiredTokenException" => ErrorKind::Credentials,
                _ => ErrorKind::Service,
            };
            (kind, code)
        }
        SdkError::ConstructionFailure(_) => (ErrorKind::Credentials, "ConstructionFailure".into()),
        SdkError::TimeoutError(_) => (ErrorKind::Network, "Timeout".into()),
        // Only I/O and timeouts are the network's fault; the SDK also reports credentials that
        // cannot be loaded (a broken IRSA or Pod Identity setup) as a dispatch failure.
        SdkError::DispatchFailure(d)
            if d.as_connector_error()
                .is_some_and(|c| c.is_io() || c.is_timeout()) =>
        {
            (ErrorKind::Network, "DispatchFailure".into())
        }
        SdkError::DispatchFailure(_) => (ErrorKind::Credentials, "DispatchFailure".into()),
        SdkError::ResponseError(_) => (ErrorKind::Service, "ResponseError".into()),
        _ => (ErrorKind::Service, "Unknown".into()),
    }
}

impl CacheRuleSource for AwsEcr {
    async fn list_rules(&self) -> Result<Vec<CacheRule>, EcrError> {
        let mut pages = self
            .client
            .describe_pull_through_cache_rules()
            .set_registry_id(self.registry_id.clone())
            .max_results(1000)
            .into_paginator()
            .send();
        let mut rules = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                let (kind, code) = classify(&e);
                EcrError::ListCacheRules {
                    code,
                    kind,
                    source: Box::new(e),
                }
            })?;
            for rule in page.pull_through_cache_rules() {
                rules.push(CacheRule {
                    prefix: rule.ecr_repository_prefix().unwrap_or_default().to_owned(),
                    upstream_url: rule.upstream_registry_url().unwrap_or_default().to_owned(),
                    upstream_registry: rule.upstream_registry().map(|u| u.as_str().to_owned()),
                    credential_arn: rule.credential_arn().map(str::to_owned),
                    upstream_repository_prefix: rule
                        .upstream_repository_prefix()
                        .map(str::to_owned),
                    created_at: rule
                        .created_at()
                        .and_then(|t| SystemTime::try_from(*t).ok()),
                });
            }
        }
        Ok(rules)
    }

    async fn validate_rule(&self, prefix: &str) -> Result<Validation, EcrError> {
        let out = self
            .client
            .validate_pull_through_cache_rule()
            .ecr_repository_prefix(prefix)
            .set_registry_id(self.registry_id.clone())
            .send()
            .await
            .map_err(|e| {
                let (kind, code) = classify(&e);
                EcrError::ValidateCacheRule {
                    prefix: prefix.to_owned(),
                    code,
                    kind,
                    source: Box::new(e),
                }
            })?;
        Ok(Validation {
            is_valid: out.is_valid(),
            failure: out.failure().map(str::to_owned),
        })
    }
}

// === Cache contents: repositories, images and repository creation templates ===

/// One repository of the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    /// `repositoryName` (`docker-hub/library/nginx`).
    pub name: String,
}

/// Where an image is stored, as `imageStatus` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageStorage {
    /// Standard storage (`ACTIVE`, or no status reported): billed at the standard rate.
    Standard,
    /// Archived (`ARCHIVED`) or being restored from the archive (`ACTIVATING`).
    Archive,
}

/// One image of a repository, as `DescribeImages` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    /// `imageDigest`.
    pub digest: String,
    /// `imageSizeInBytes` (0 when not reported).
    pub bytes: u64,
    /// `imagePushedAt`, as Unix seconds: for a cache repository, when ECR first pulled it.
    pub pushed_at: Option<i64>,
    /// `lastRecordedPullTime`, as Unix seconds.
    pub last_pulled_at: Option<i64>,
    /// `imageStatus`.
    pub storage: ImageStorage,
}

/// One page of a listing, and the token that asks for the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// `nextToken`; `None` on the last page.
    pub next_token: Option<String>,
}

/// A repository creation template: the settings ECR gives a repository it creates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreationTemplate {
    /// `prefix` (`docker-hub`, or `ROOT` for every repository no other template matches).
    pub prefix: String,
    /// `appliedFor` (`PULL_THROUGH_CACHE`, `REPLICATION`, `CREATE_ON_PUSH`).
    pub applied_for: Vec<String>,
    /// `lifecyclePolicy`, the policy text.
    pub lifecycle_policy: Option<String>,
    /// `imageTagMutability`.
    pub image_tag_mutability: Option<String>,
    /// `resourceTags`, as key and value.
    pub resource_tags: Vec<(String, String)>,
}

/// The ECR reads behind `pullthrough cache` and the cache metrics, one page per call so that
/// the caller bounds the work and backs off between pages.
pub trait CacheContentSource: Send + Sync {
    /// One page of `DescribeRepositories`.
    fn repositories_page(
        &self,
        next_token: Option<String>,
    ) -> impl Future<Output = Result<Page<Repository>, EcrError>> + Send;
    /// One page of `DescribeImages` of one repository.
    fn images_page(
        &self,
        repository: &str,
        next_token: Option<String>,
    ) -> impl Future<Output = Result<Page<ImageSummary>, EcrError>> + Send;
    /// One page of `DescribeRepositoryCreationTemplates`.
    fn creation_templates_page(
        &self,
        next_token: Option<String>,
    ) -> impl Future<Output = Result<Page<CreationTemplate>, EcrError>> + Send;
}

fn read_cache_error<E, R>(operation: &'static str, e: SdkError<E, R>) -> EcrError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let (kind, code) = classify(&e);
    EcrError::ReadCache {
        operation,
        code,
        kind,
        source: Box::new(e),
    }
}

fn unix_seconds(t: Option<&aws_sdk_ecr::primitives::DateTime>) -> Option<i64> {
    t.map(aws_sdk_ecr::primitives::DateTime::secs)
}

impl CacheContentSource for AwsEcr {
    async fn repositories_page(
        &self,
        next_token: Option<String>,
    ) -> Result<Page<Repository>, EcrError> {
        let out = self
            .client
            .describe_repositories()
            .set_registry_id(self.registry_id.clone())
            .max_results(1000)
            .set_next_token(next_token)
            .send()
            .await
            .map_err(|e| read_cache_error("DescribeRepositories", e))?;
        Ok(Page {
            items: out
                .repositories()
                .iter()
                .filter_map(|r| {
                    r.repository_name().map(|name| Repository {
                        name: name.to_owned(),
                    })
                })
                .collect(),
            next_token: out.next_token().map(str::to_owned),
        })
    }

    async fn images_page(
        &self,
        repository: &str,
        next_token: Option<String>,
    ) -> Result<Page<ImageSummary>, EcrError> {
        let out = self
            .client
            .describe_images()
            .set_registry_id(self.registry_id.clone())
            .repository_name(repository)
            .max_results(1000)
            .set_next_token(next_token)
            .send()
            .await
            .map_err(|e| read_cache_error("DescribeImages", e))?;
        Ok(Page {
            items: out
                .image_details()
                .iter()
                .map(|i| ImageSummary {
                    digest: i.image_digest().unwrap_or_default().to_owned(),
                    bytes: i
                        .image_size_in_bytes()
                        .and_then(|b| u64::try_from(b).ok())
                        .unwrap_or(0),
                    pushed_at: unix_seconds(i.image_pushed_at()),
                    last_pulled_at: unix_seconds(i.last_recorded_pull_time()),
                    storage: match i
                        .image_status()
                        .map(aws_sdk_ecr::types::ImageStatus::as_str)
                    {
                        Some("ARCHIVED" | "ACTIVATING") => ImageStorage::Archive,
                        _ => ImageStorage::Standard,
                    },
                })
                .collect(),
            next_token: out.next_token().map(str::to_owned),
        })
    }

    async fn creation_templates_page(
        &self,
        next_token: Option<String>,
    ) -> Result<Page<CreationTemplate>, EcrError> {
        let out = self
            .client
            .describe_repository_creation_templates()
            .max_results(1000)
            .set_next_token(next_token)
            .send()
            .await
            .map_err(|e| read_cache_error("DescribeRepositoryCreationTemplates", e))?;
        Ok(Page {
            items: out
                .repository_creation_templates()
                .iter()
                .map(|t| CreationTemplate {
                    prefix: t.prefix().unwrap_or_default().to_owned(),
                    applied_for: t
                        .applied_for()
                        .iter()
                        .map(|a| a.as_str().to_owned())
                        .collect(),
                    lifecycle_policy: t
                        .lifecycle_policy()
                        .filter(|p| !p.trim().is_empty())
                        .map(str::to_owned),
                    image_tag_mutability: t.image_tag_mutability().map(|m| m.as_str().to_owned()),
                    resource_tags: t
                        .resource_tags()
                        .iter()
                        .map(|tag| (tag.key().to_owned(), tag.value().to_owned()))
                        .collect(),
                })
                .collect(),
            next_token: out.next_token().map(str::to_owned),
        })
    }
}

// === end of cache contents ===

impl AwsEcr {
    async fn describe(
        &self,
        repository: &str,
        id: aws_sdk_ecr::types::ImageIdentifier,
    ) -> Result<Option<CachedImage>, EcrError> {
        let out = self
            .client
            .describe_images()
            .set_registry_id(self.registry_id.clone())
            .repository_name(repository)
            .image_ids(id)
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                let (kind, code) = classify(&e);
                // Neither the repository nor the image: the cache does not hold it (yet).
                if matches!(
                    code.as_str(),
                    "RepositoryNotFoundException" | "ImageNotFoundException"
                ) {
                    return Ok(None);
                }
                return Err(EcrError::Image {
                    operation: "DescribeImages",
                    repository: repository.to_owned(),
                    code,
                    kind,
                    source: Box::new(e),
                });
            }
        };
        Ok(out.image_details().first().and_then(|d| {
            Some(CachedImage {
                digest: d.image_digest()?.to_owned(),
                tags: d.image_tags().to_vec(),
            })
        }))
    }
}

impl ImageSource for AwsEcr {
    async fn describe_digest(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<Option<CachedImage>, EcrError> {
        let id = aws_sdk_ecr::types::ImageIdentifier::builder()
            .image_digest(digest)
            .build();
        self.describe(repository, id).await
    }

    async fn describe_tag(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<Option<CachedImage>, EcrError> {
        let id = aws_sdk_ecr::types::ImageIdentifier::builder()
            .image_tag(tag)
            .build();
        self.describe(repository, id).await
    }

    async fn fetch_tag(&self, repository: &str, tag: &str) -> Result<Option<String>, EcrError> {
        let error = |code: String, kind, source: Box<dyn std::error::Error + Send + Sync>| {
            EcrError::Image {
                operation: "BatchGetImage",
                repository: repository.to_owned(),
                code,
                kind,
                source,
            }
        };
        let out = self
            .client
            .batch_get_image()
            .set_registry_id(self.registry_id.clone())
            .repository_name(repository)
            .image_ids(
                aws_sdk_ecr::types::ImageIdentifier::builder()
                    .image_tag(tag)
                    .build(),
            )
            .set_accepted_media_types(Some(MEDIA_TYPES.map(str::to_owned).to_vec()))
            .send()
            .await
            .map_err(|e| {
                let (kind, code) = classify(&e);
                error(code, kind, Box::new(e))
            })?;
        if let Some(digest) = out
            .images()
            .iter()
            .find_map(|i| i.image_id().and_then(|id| id.image_digest()))
        {
            return Ok(Some(digest.to_owned()));
        }
        let Some(failure) = out.failures().first() else {
            return Ok(None);
        };
        let code = failure
            .failure_code()
            .map_or("Unknown", |c| c.as_str())
            .to_owned();
        let reason = failure
            .failure_reason()
            .unwrap_or("no reason given")
            .to_owned();
        let kind = match code.as_str() {
            "ImageNotFound" => return Ok(None),
            // The upstream's rate limit is respected like ECR's own.
            "UpstreamTooManyRequests" => ErrorKind::Throttled,
            // Refused by the upstream (the rule's credentials), not by ECR: ECR is readable.
            _ => ErrorKind::Service,
        };
        Err(error(code, kind, reason.into()))
    }
}
/// Exponential back-off with full jitter: each delay is uniform in `[0, min(cap, base * 2^n)]`,
/// so many replicas retrying after one outage spread out.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// A back-off starting at `base` and never above `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32.checked_shl(self.attempt).unwrap_or(u32::MAX))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1).min(31);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        for _ in 0..40 {
            assert!(b.next_delay() <= Duration::from_secs(2));
        }
        assert_eq!(b.attempt, 31);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
