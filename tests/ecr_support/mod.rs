//! A small local stand-in of the ECR JSON API (awsJson1_1 over plain HTTP on loopback), scriptable
//! per test, and a real `aws_sdk_ecr::Client` pointed at it.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// The `X-Amz-Target` prefix of every ECR operation.
pub const TARGET_PREFIX: &str = "AmazonEC2ContainerRegistry_V20150921.";
/// `DescribePullThroughCacheRules`.
pub const DESCRIBE: &str = "AmazonEC2ContainerRegistry_V20150921.DescribePullThroughCacheRules";
/// `ValidatePullThroughCacheRule`.
pub const VALIDATE: &str = "AmazonEC2ContainerRegistry_V20150921.ValidatePullThroughCacheRule";
/// `DescribeRepositories`.
pub const DESCRIBE_REPOSITORIES: &str = "AmazonEC2ContainerRegistry_V20150921.DescribeRepositories";
/// `DescribeImages`.
pub const DESCRIBE_IMAGES: &str = "AmazonEC2ContainerRegistry_V20150921.DescribeImages";
/// `DescribeRepositoryCreationTemplates`.
pub const DESCRIBE_TEMPLATES: &str =
    "AmazonEC2ContainerRegistry_V20150921.DescribeRepositoryCreationTemplates";
/// `BatchGetImage`.
pub const BATCH_GET_IMAGE: &str = "AmazonEC2ContainerRegistry_V20150921.BatchGetImage";

/// A digest made of one repeated hex digit, for readable tests.
pub fn digest(hex: char) -> String {
    format!("sha256:{}", hex.to_string().repeat(64))
}

/// How the stand-in answers; set before starting, adjustable afterwards via [`StandIn::script`].
#[derive(Debug, Clone)]
pub struct Script {
    /// The registry's rules, as ECR's JSON objects.
    pub rules: Vec<Value>,
    /// The stand-in's own page size (the effective one is `min(page_size, maxResults)`).
    pub page_size: usize,
    /// How many requests (of any operation) are answered with `ThrottlingException` first.
    pub throttle_first: usize,
    /// Name the error in the `x-amzn-errortype` header instead of `__type` in the body.
    pub error_code_in_header: bool,
    /// Answer every request with this HTTP status and raw body.
    pub fail_with: Option<(u16, String)>,
    /// Per-prefix answer of `ValidatePullThroughCacheRule` (`(isValid, failure)`); prefixes
    /// with a rule but no entry are valid.
    pub validations: BTreeMap<String, (bool, Option<String>)>,
    /// Answer nothing for this long before responding (to exercise client timeouts).
    pub delay: Option<Duration>,
    /// The registry's repositories, as ECR's JSON objects (see [`repository_json`]).
    pub repositories: Vec<Value>,
    /// Each repository's images, as ECR's `imageDetails` objects (see [`image_json`]).
    pub images: BTreeMap<String, Vec<Value>>,
    /// Repository creation templates, as ECR's JSON objects (see [`template_json`]).
    pub templates: Vec<Value>,
    /// The upstream registries behind the pull-through cache rules: cache repository
    /// (`docker-hub/library/nginx`) -> tag -> the digest the tag has upstream now. Change it to
    /// move a tag.
    pub upstream: BTreeMap<String, BTreeMap<String, String>>,
    /// Operations (`X-Amz-Target`) answered with `AccessDeniedException`.
    pub deny: Vec<String>,
    /// While true, requests are recorded but not answered.
    pub hold: bool,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            page_size: 1000,
            throttle_first: 0,
            error_code_in_header: false,
            fail_with: None,
            validations: BTreeMap::new(),
            delay: None,
            repositories: Vec::new(),
            images: BTreeMap::new(),
            templates: Vec::new(),
            upstream: BTreeMap::new(),
            deny: Vec::new(),
            hold: false,
        }
    }
}

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `X-Amz-Target`.
    pub target: String,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Authorization` (SigV4).
    pub authorization: Option<String>,
    /// The JSON body (`Value::Null` when not JSON).
    pub body: Value,
}

#[derive(Debug, Default)]
struct State {
    script: Script,
    seen: Vec<Seen>,
    /// What the cache holds: repository -> digest -> tags. A repository exists once listed.
    cache: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// Requests answered so far, by target.
    answered: Vec<String>,
}

/// A running stand-in; it lives as long as the Tokio runtime that started it.
#[derive(Debug, Clone)]
pub struct StandIn {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl StandIn {
    /// Binds 127.0.0.1:0 and serves `script` on the current runtime.
    pub async fn start(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            script,
            ..State::default()
        }));
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(Arc::clone(&state), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, state }
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// How many requests of `target` arrived.
    pub fn count(&self, target: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .seen
            .iter()
            .filter(|s| s.target == target)
            .count()
    }

    /// How many requests of `target` were answered (not merely received).
    pub fn answered(&self, target: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .answered
            .iter()
            .filter(|t| *t == target)
            .count()
    }

    /// Puts an image in the cache, as an earlier pull through it would have.
    pub fn seed(&self, repository: &str, digest: &str, tags: &[&str]) {
        let mut state = self.state.lock().unwrap();
        let repo = state.cache.entry(repository.to_owned()).or_default();
        for held in repo.values_mut() {
            held.retain(|t| !tags.contains(&t.as_str()));
        }
        repo.entry(digest.to_owned())
            .or_default()
            .extend(tags.iter().map(|t| (*t).to_owned()));
    }

    /// The digests the cache holds in `repository` (`None` when the repository does not exist).
    pub fn cached(&self, repository: &str) -> Option<Vec<String>> {
        self.state
            .lock()
            .unwrap()
            .cache
            .get(repository)
            .map(|r| r.keys().cloned().collect())
    }

    /// Changes the script of a running stand-in.
    pub fn script(&self, change: impl FnOnce(&mut Script)) {
        change(&mut self.state.lock().unwrap().script);
    }
}

fn json_response(status: u16, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amzn-requestid", "00000000-0000-0000-0000-000000000000")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn error_response(
    script: &Script,
    status: u16,
    code: &str,
    message: &str,
) -> Response<Full<Bytes>> {
    if script.error_code_in_header {
        let mut response = json_response(status, &json!({ "message": message }));
        response.headers_mut().insert(
            "x-amzn-errortype",
            format!("{code}:http://internal.amazon.com/coral/com.amazon.coral.availability/")
                .parse()
                .unwrap(),
        );
        response
    } else {
        json_response(status, &json!({ "__type": code, "message": message }))
    }
}

async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let target = header("x-amz-target").unwrap_or_default();
    let content_type = header("content-type");
    let authorization = header("authorization");
    let bytes = req.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);

    {
        state.lock().unwrap().seen.push(Seen {
            target: target.clone(),
            content_type,
            authorization,
            body: body.clone(),
        });
    }
    while state.lock().unwrap().script.hold {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Decide under the lock, sleep (if asked) outside it.
    let (response, delay) = {
        let mut state = state.lock().unwrap();
        state.answered.push(target.clone());
        let attempt = state.seen.len();
        let state = &mut *state;
        let script = &state.script;
        let response = if let Some((status, raw)) = &script.fail_with {
            Response::builder()
                .status(StatusCode::from_u16(*status).unwrap())
                .body(Full::new(Bytes::from(raw.clone())))
                .unwrap()
        } else if attempt <= script.throttle_first {
            error_response(script, 400, "ThrottlingException", "Rate exceeded")
        } else if script.deny.contains(&target) {
            let operation = target.strip_prefix(TARGET_PREFIX).unwrap_or(&target);
            error_response(
                script,
                400,
                "AccessDeniedException",
                &format!(
                    "User: arn:aws:sts::123456789012:assumed-role/pullthrough/x is not authorized to perform: ecr:{operation}"
                ),
            )
        } else if target == DESCRIBE {
            describe(script, &body)
        } else if target == VALIDATE {
            validate(script, &body)
        } else if target == DESCRIBE_REPOSITORIES {
            page_of(script, &body, &script.repositories, "repositories")
        } else if target == DESCRIBE_IMAGES && body.get("imageIds").is_none() {
            // A listing of a repository (the cache report); by id, the pull-through cache below.
            list_images(script, &body)
        } else if target == DESCRIBE_TEMPLATES {
            page_of(
                script,
                &body,
                &script.templates,
                "repositoryCreationTemplates",
            )
        } else if target == DESCRIBE_IMAGES {
            describe_images(script, &state.cache, &body)
        } else if target == BATCH_GET_IMAGE {
            batch_get_image(script, &mut state.cache, &body)
        } else {
            error_response(
                script,
                400,
                "UnknownOperationException",
                &format!("unknown target {target:?}"),
            )
        };
        (response, script.delay)
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    Ok(response)
}

fn describe(script: &Script, body: &Value) -> Response<Full<Bytes>> {
    let max_results = match body.get("maxResults") {
        None => 100,
        Some(n) => match n.as_u64() {
            Some(n @ 1..=1000) => usize::try_from(n).unwrap(),
            _ => {
                return error_response(
                    script,
                    400,
                    "InvalidParameterException",
                    "maxResults must be between 1 and 1000",
                );
            }
        },
    };
    let start = match body.get("nextToken").and_then(Value::as_str) {
        None => 0,
        Some(token) => match token.strip_prefix("tok-").and_then(|n| n.parse().ok()) {
            Some(n) => n,
            None => {
                return error_response(script, 400, "InvalidParameterException", "bad nextToken");
            }
        },
    };
    let registry_id = body
        .get("registryId")
        .and_then(Value::as_str)
        .unwrap_or("123456789012");
    let end = (start + script.page_size.min(max_results)).min(script.rules.len());
    let page: Vec<Value> = script.rules[start.min(end)..end]
        .iter()
        .map(|rule| {
            let mut rule = rule.clone();
            rule.as_object_mut()
                .unwrap()
                .entry("registryId")
                .or_insert_with(|| json!(registry_id));
            rule
        })
        .collect();
    let mut answer = json!({ "pullThroughCacheRules": page });
    if end < script.rules.len() {
        answer["nextToken"] = json!(format!("tok-{end}"));
    }
    json_response(200, &answer)
}

fn validate(script: &Script, body: &Value) -> Response<Full<Bytes>> {
    let Some(prefix) = body.get("ecrRepositoryPrefix").and_then(Value::as_str) else {
        return error_response(
            script,
            400,
            "ValidationException",
            "ecrRepositoryPrefix is required",
        );
    };
    let Some(rule) = script
        .rules
        .iter()
        .find(|r| r["ecrRepositoryPrefix"] == prefix)
    else {
        return error_response(
            script,
            400,
            "PullThroughCacheRuleNotFoundException",
            &format!("no pull through cache rule with prefix {prefix}"),
        );
    };
    let (is_valid, failure) = script
        .validations
        .get(prefix)
        .cloned()
        .unwrap_or((true, None));
    let mut answer = json!({
        "ecrRepositoryPrefix": prefix,
        "registryId": body.get("registryId").and_then(Value::as_str).unwrap_or("123456789012"),
        "upstreamRegistryUrl": rule["upstreamRegistryUrl"],
        "isValid": is_valid,
    });
    if let Some(arn) = rule.get("credentialArn") {
        answer["credentialArn"] = arn.clone();
    }
    if let Some(failure) = failure {
        answer["failure"] = json!(failure);
    }
    json_response(200, &answer)
}

/// The one image id of a request's `imageIds`: (digest, tag).
fn image_id(body: &Value) -> (Option<String>, Option<String>) {
    let id = &body["imageIds"][0];
    (
        id["imageDigest"].as_str().map(str::to_owned),
        id["imageTag"].as_str().map(str::to_owned),
    )
}

fn repository_not_found(script: &Script, repository: &str) -> Response<Full<Bytes>> {
    error_response(
        script,
        400,
        "RepositoryNotFoundException",
        &format!(
            "The repository with name '{repository}' does not exist in the registry with id '123456789012'"
        ),
    )
}

type Cache = BTreeMap<String, BTreeMap<String, Vec<String>>>;

/// `DescribeImages` with one image id, by digest or by tag.
fn describe_images(script: &Script, cache: &Cache, body: &Value) -> Response<Full<Bytes>> {
    let repository = body["repositoryName"].as_str().unwrap_or_default();
    let Some(repo) = cache.get(repository) else {
        return repository_not_found(script, repository);
    };
    let (digest, tag) = image_id(body);
    let found = repo.iter().find(|(d, tags)| {
        digest.as_ref().is_none_or(|want| want == *d)
            && tag.as_ref().is_none_or(|want| tags.contains(want))
            && (digest.is_some() || tag.is_some())
    });
    let Some((d, tags)) = found else {
        return error_response(
            script,
            400,
            "ImageNotFoundException",
            &format!(
                "The image with imageId {{imageDigest:'{}', imageTag:'{}'}} does not exist within the repository with name '{repository}'",
                digest.unwrap_or_default(),
                tag.unwrap_or_default()
            ),
        );
    };
    let mut detail = json!({
        "registryId": "123456789012",
        "repositoryName": repository,
        "imageDigest": d,
        "imageSizeInBytes": 1234,
        "imagePushedAt": 1.7E9,
        "imageManifestMediaType": "application/vnd.oci.image.index.v1+json",
    });
    if !tags.is_empty() {
        detail["imageTags"] = json!(tags);
    }
    json_response(200, &json!({ "imageDetails": [detail] }))
}

/// `BatchGetImage` through the pull-through cache: by tag it imports what the upstream has
/// under the tag now (creating the repository on first use, moving the tag in the cache); by
/// digest it answers only for an image the cache holds, as ECR cannot fill its cache from a
/// pull by digest.
fn batch_get_image(script: &Script, cache: &mut Cache, body: &Value) -> Response<Full<Bytes>> {
    let repository = body["repositoryName"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let covered = script.rules.iter().any(|r| {
        r["ecrRepositoryPrefix"]
            .as_str()
            .is_some_and(|p| p == "ROOT" || repository.starts_with(&format!("{p}/")))
    });
    if !covered && !cache.contains_key(&repository) {
        return repository_not_found(script, &repository);
    }
    let (digest, tag) = image_id(body);
    let image = |d: &str, t: Option<&str>| {
        let mut id = json!({ "imageDigest": d });
        if let Some(t) = t {
            id["imageTag"] = json!(t);
        }
        json!({
            "registryId": "123456789012",
            "repositoryName": repository,
            "imageId": id,
            "imageManifest": "{\"schemaVersion\":2}",
            "imageManifestMediaType": "application/vnd.oci.image.index.v1+json",
        })
    };
    let not_found = |id: Value| {
        json_response(
            200,
            &json!({
                "images": [],
                "failures": [{
                    "imageId": id,
                    "failureCode": "ImageNotFound",
                    "failureReason": "Requested image not found",
                }],
            }),
        )
    };
    if let Some(tag) = tag {
        let upstream = script.upstream.get(&repository).and_then(|t| t.get(&tag));
        let Some(upstream) = upstream else {
            return not_found(json!({ "imageTag": tag }));
        };
        let repo = cache.entry(repository.clone()).or_default();
        for tags in repo.values_mut() {
            tags.retain(|t| *t != tag);
        }
        repo.entry(upstream.clone()).or_default().push(tag.clone());
        return json_response(
            200,
            &json!({ "images": [image(upstream, Some(&tag))], "failures": [] }),
        );
    }
    let Some(digest) = digest else {
        return json_response(
            200,
            &json!({ "images": [], "failures": [{ "imageId": {}, "failureCode": "MissingDigestAndTag", "failureReason": "no digest and no tag" }] }),
        );
    };
    if cache
        .get(&repository)
        .is_some_and(|r| r.contains_key(&digest))
    {
        json_response(
            200,
            &json!({ "images": [image(&digest, None)], "failures": [] }),
        )
    } else {
        not_found(json!({ "imageDigest": digest }))
    }
}

/// A rule as ECR returns it.
pub fn rule_json(prefix: &str, upstream_url: &str) -> Value {
    json!({
        "ecrRepositoryPrefix": prefix,
        "upstreamRegistryUrl": upstream_url,
        "createdAt": 1.7E9,
        "updatedAt": 1.7E9,
    })
}

/// The Docker Hub rule with credentials, as ECR returns it.
pub fn docker_hub_json() -> Value {
    json!({
        "ecrRepositoryPrefix": "docker-hub",
        "upstreamRegistryUrl": "registry-1.docker.io",
        "upstreamRegistry": "docker-hub",
        "credentialArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:ecr-pullthroughcache/docker-hub-AbCdEf",
        "createdAt": 1.7E9,
    })
}

/// Fast retries (3 attempts, 1 ms back-off) and short timeouts, so a whole file runs in seconds.
pub fn fast_retry() -> aws_sdk_ecr::config::retry::RetryConfig {
    aws_sdk_ecr::config::retry::RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(1))
        .with_max_backoff(Duration::from_millis(10))
}

/// Short timeouts.
pub fn short_timeouts() -> aws_sdk_ecr::config::timeout::TimeoutConfig {
    aws_sdk_ecr::config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_millis(500))
        .operation_timeout(Duration::from_secs(3))
        .build()
}

/// The real SDK client, static test credentials, pointed at `endpoint`.
pub fn sdk_client(endpoint: &str) -> aws_sdk_ecr::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let config = aws_sdk_ecr::Config::builder()
        .behavior_version(aws_sdk_ecr::config::BehaviorVersion::latest())
        .region(aws_sdk_ecr::config::Region::new("eu-west-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_ecr::config::Credentials::new(
            "AKIDSTANDIN",
            "SECRET",
            None,
            None,
            "test",
        ))
        .retry_config(fast_retry())
        .timeout_config(short_timeouts())
        .build();
    aws_sdk_ecr::Client::from_conf(config)
}

// === Cache contents: repositories, images, creation templates ===

/// One page of `items` under `key`, paged like ECR: `maxResults` 1..=1000 (default 100),
/// capped by the script's page size, and an opaque `nextToken`.
fn page_of(script: &Script, body: &Value, items: &[Value], key: &str) -> Response<Full<Bytes>> {
    let max_results = match body.get("maxResults") {
        None => 100,
        Some(n) => match n.as_u64() {
            Some(n @ 1..=1000) => usize::try_from(n).unwrap(),
            _ => {
                return error_response(
                    script,
                    400,
                    "InvalidParameterException",
                    "maxResults must be between 1 and 1000",
                );
            }
        },
    };
    let start = match body.get("nextToken").and_then(Value::as_str) {
        None => 0,
        Some(token) => match token
            .strip_prefix(&format!("{key}-"))
            .and_then(|n| n.parse().ok())
        {
            Some(n) => n,
            None => {
                return error_response(script, 400, "InvalidParameterException", "bad nextToken");
            }
        },
    };
    let end = (start + script.page_size.min(max_results)).min(items.len());
    let mut answer = json!({ key: items[start.min(end)..end].to_vec() });
    if end < items.len() {
        answer["nextToken"] = json!(format!("{key}-{end}"));
    }
    json_response(200, &answer)
}

fn list_images(script: &Script, body: &Value) -> Response<Full<Bytes>> {
    let Some(name) = body.get("repositoryName").and_then(Value::as_str) else {
        return error_response(
            script,
            400,
            "InvalidParameterException",
            "repositoryName is required",
        );
    };
    if !script
        .repositories
        .iter()
        .any(|r| r["repositoryName"] == name)
    {
        return error_response(
            script,
            400,
            "RepositoryNotFoundException",
            &format!("The repository with name '{name}' does not exist in the registry"),
        );
    }
    let images = script.images.get(name).cloned().unwrap_or_default();
    page_of(script, body, &images, "imageDetails")
}

/// A repository as `DescribeRepositories` returns it.
pub fn repository_json(name: &str) -> Value {
    json!({
        "repositoryArn": format!("arn:aws:ecr:eu-west-1:123456789012:repository/{name}"),
        "registryId": "123456789012",
        "repositoryName": name,
        "repositoryUri": format!("123456789012.dkr.ecr.eu-west-1.amazonaws.com/{name}"),
        "createdAt": 1.7E9,
        "imageTagMutability": "MUTABLE",
        "imageScanningConfiguration": { "scanOnPush": false },
        "encryptionConfiguration": { "encryptionType": "AES256" },
    })
}

/// An image as `DescribeImages` returns it; `last_pulled` and `pushed` are Unix seconds.
pub fn image_json(
    repository: &str,
    n: u64,
    bytes: u64,
    pushed: f64,
    last_pulled: Option<f64>,
) -> Value {
    let mut image = json!({
        "registryId": "123456789012",
        "repositoryName": repository,
        "imageDigest": format!("sha256:{n:064x}"),
        "imageTags": [format!("v{n}")],
        "imageSizeInBytes": bytes,
        "imagePushedAt": pushed,
        "imageManifestMediaType": "application/vnd.oci.image.index.v1+json",
        "imageStatus": "ACTIVE",
    });
    if let Some(t) = last_pulled {
        image["lastRecordedPullTime"] = json!(t);
    }
    image
}

/// A repository creation template as `DescribeRepositoryCreationTemplates` returns it.
pub fn template_json(prefix: &str, applied_for: &[&str], lifecycle_policy: Option<&str>) -> Value {
    let mut t = json!({
        "prefix": prefix,
        "appliedFor": applied_for,
        "imageTagMutability": "MUTABLE",
        "encryptionConfiguration": { "encryptionType": "AES256" },
        "resourceTags": [{ "Key": "team", "Value": "platform" }],
        "createdAt": 1.7E9,
        "updatedAt": 1.7E9,
    });
    if let Some(p) = lifecycle_policy {
        t["lifecyclePolicy"] = json!(p);
    }
    t
}
