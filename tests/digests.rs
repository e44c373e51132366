//! Pinned images through the cache: the ECR image calls against the local stand-in of ECR's
//! pull-through semantics, and the webhook learning in the background which pinned digests the
//! cache holds, never on the request path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ecr_support;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use base64::Engine as _;
use ecr_support::{
    BATCH_GET_IMAGE, DESCRIBE_IMAGES, Script, StandIn, digest, rule_json, sdk_client,
};
use http::Request;
use http_body_util::BodyExt as _;
use pullthrough::config::{Config, Overrides};
use pullthrough::digests::DigestSnapshot;
use pullthrough::digests::run::{self as checker, DigestMetrics};
use pullthrough::ecr::{AwsEcr, ErrorKind, ImageSource as _};
use pullthrough::metrics::Metrics;
use pullthrough::server::{self, AppState, Limits};
use serde_json::{Value, json};
use tokio::sync::watch;
use tower::ServiceExt as _;

const HOST: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
const NGINX: &str = "docker-hub/library/nginx";

fn config() -> Config {
    Config::load(
        "accountId: \"123456789012\"\nregion: eu-west-1\n",
        &Overrides::default(),
    )
    .unwrap()
}

/// A stand-in whose Docker Hub rule caches an upstream where `nginx:1.27` is digest `a`.
async fn stand_in() -> StandIn {
    StandIn::start(Script {
        rules: vec![rule_json("docker-hub", "registry-1.docker.io")],
        upstream: [(NGINX.to_owned(), [("1.27".to_owned(), digest('a'))].into())].into(),
        ..Script::default()
    })
    .await
}

fn ecr(s: &StandIn) -> AwsEcr {
    AwsEcr::new(sdk_client(&s.url()), Some("123456789012".into()))
}

// === the ECR calls against the stand-in ===

#[tokio::test]
async fn describe_by_digest_says_not_cached_for_a_missing_repository_or_image() {
    let s = stand_in().await;
    let e = ecr(&s);
    assert_eq!(e.describe_digest(NGINX, &digest('a')).await.unwrap(), None);
    s.seed(NGINX, &digest('b'), &["1.26"]);
    assert_eq!(e.describe_digest(NGINX, &digest('a')).await.unwrap(), None);
    let found = e
        .describe_digest(NGINX, &digest('b'))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.digest, digest('b'));
    assert_eq!(found.tags, vec!["1.26".to_owned()]);
    let by_tag = e.describe_tag(NGINX, "1.26").await.unwrap().unwrap();
    assert_eq!(by_tag.digest, digest('b'));
    let seen = s.seen();
    let call = seen.iter().find(|c| c.target == DESCRIBE_IMAGES).unwrap();
    assert_eq!(call.body["repositoryName"], NGINX);
    assert_eq!(call.body["registryId"], "123456789012");
    assert_eq!(
        call.body["imageIds"],
        json!([{ "imageDigest": digest('a') }])
    );
}

#[tokio::test]
async fn a_fetch_by_tag_fills_the_cache_and_a_fetch_by_digest_does_not() {
    let s = stand_in().await;
    let e = ecr(&s);
    assert_eq!(s.cached(NGINX), None);
    // By digest from a cold cache: nothing, as with ECR.
    assert!(
        e.describe_digest(NGINX, &digest('a'))
            .await
            .unwrap()
            .is_none()
    );
    // By tag: imported from the upstream, the repository created on first use.
    assert_eq!(e.fetch_tag(NGINX, "1.27").await.unwrap(), Some(digest('a')));
    assert_eq!(s.cached(NGINX), Some(vec![digest('a')]));
    assert!(
        e.describe_digest(NGINX, &digest('a'))
            .await
            .unwrap()
            .is_some()
    );
    let call = s
        .seen()
        .into_iter()
        .find(|c| c.target == BATCH_GET_IMAGE)
        .unwrap();
    assert_eq!(call.body["imageIds"], json!([{ "imageTag": "1.27" }]));
    assert!(
        call.body["acceptedMediaTypes"]
            .as_array()
            .unwrap()
            .contains(&json!("application/vnd.oci.image.index.v1+json"))
    );
    // A tag the upstream does not have, and a repository no rule covers.
    assert_eq!(e.fetch_tag(NGINX, "0.0-none").await.unwrap(), None);
    let err = e.fetch_tag("elsewhere/app", "1").await.unwrap_err();
    assert!(
        err.to_string().contains("RepositoryNotFoundException"),
        "{err}"
    );
}

#[tokio::test]
async fn a_moved_tag_brings_the_new_digest_and_leaves_the_pinned_one_out() {
    let s = stand_in().await;
    let e = ecr(&s);
    s.script(|script| {
        script
            .upstream
            .get_mut(NGINX)
            .unwrap()
            .insert("1.27".into(), digest('c'));
    });
    assert_eq!(e.fetch_tag(NGINX, "1.27").await.unwrap(), Some(digest('c')));
    assert!(
        e.describe_digest(NGINX, &digest('a'))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn throttling_and_refusals_are_classified() {
    let s = stand_in().await;
    let e = ecr(&s);
    s.script(|script| script.throttle_first = 100);
    let err = e.describe_digest(NGINX, &digest('a')).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Throttled);
    s.script(|script| {
        script.throttle_first = 0;
        script.deny = vec![DESCRIBE_IMAGES.to_owned(), BATCH_GET_IMAGE.to_owned()];
    });
    let err = e.describe_digest(NGINX, &digest('a')).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AccessDenied);
    assert!(err.to_string().contains("DescribeImages"), "{err}");
    let err = e.fetch_tag(NGINX, "1.27").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AccessDenied);
}

// === the webhook ===

struct Webhook {
    state: AppState,
    metrics: DigestMetrics,
    stop: watch::Sender<bool>,
}

/// A webhook state with its digest checker running against `s`.
fn webhook(s: &StandIn) -> Webhook {
    let metrics = Metrics::new().unwrap();
    let digest_metrics = DigestMetrics::register(metrics.registry()).unwrap();
    let mut state = AppState::new(config(), metrics);
    let (requests, rx) = checker::channel(&digest_metrics);
    state.digest_requests = Some(requests);
    let (stop, mut stopped) = watch::channel(false);
    tokio::spawn(checker::run(
        ecr(s),
        state.config.clone(),
        state.digests.clone(),
        digest_metrics.clone(),
        rx,
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        },
    ));
    Webhook {
        state,
        metrics: digest_metrics,
        stop,
    }
}

fn pod_review(uid: &str, image: &str) -> Value {
    let mut review: Value = serde_json::from_slice(
        &std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/admission/pod-create-simple.json"),
        )
        .unwrap(),
    )
    .unwrap();
    review["request"]["uid"] = json!(uid);
    review["request"]["object"]["spec"]["containers"][0]["image"] = json!(image);
    review
}

/// Admits a Pod running `image`; returns the image it gets and the warnings.
async fn admit(state: &AppState, uid: &str, image: &str) -> (String, Vec<String>) {
    let review = pod_review(uid, image);
    let response = server::webhook_router(state.clone(), Limits::default())
        .oneshot(
            Request::post(server::MUTATE_PATH)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&review).unwrap()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let answer: Value = serde_json::from_slice(&body).unwrap();
    let response = &answer["response"];
    assert_eq!(response["uid"], uid);
    assert_eq!(response["allowed"], true);
    let mut object = review["request"]["object"].clone();
    if let Some(patch) = response["patch"].as_str() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        json_patch::patch(&mut object, &patch).unwrap();
    }
    let warnings = response["warnings"]
        .as_array()
        .map(|w| w.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    (
        object["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .to_owned(),
        warnings,
    )
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn an_unknown_pinned_image_is_left_alone_then_rewritten_once_the_cache_is_known_to_hold_it() {
    let s = stand_in().await;
    s.seed(NGINX, &digest('a'), &["1.27"]);
    let hook = webhook(&s);
    let pinned = format!("nginx:1.27@{}", digest('a'));

    // ECR answers nothing while the first Pod is admitted: had the webhook waited on it, the
    // admission would never end.
    s.script(|script| script.hold = true);
    let (image, warnings) =
        tokio::time::timeout(Duration::from_secs(5), admit(&hook.state, "first", &pinned))
            .await
            .expect("admission answered without waiting on ECR");
    assert_eq!(image, pinned, "left on its upstream while unknown");
    assert_eq!(s.answered(DESCRIBE_IMAGES), 0);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("not known yet"), "{warnings:?}");
    assert!(
        warnings[0].ends_with("cache holds sha256:aaaaaaaaaaaa (checked in the background)"),
        "{warnings:?}"
    );
    // The digest went to the checker, which asks ECR in the background.
    wait_until("the checker asks", || s.count(DESCRIBE_IMAGES) == 1).await;
    s.script(|script| script.hold = false);
    wait_until("the snapshot knows", || {
        hook.state.digests.load().state(NGINX, &digest('a'))
            == pullthrough::digests::DigestState::Cached
    })
    .await;

    // The next Pod is rewritten, tag and digest byte for byte.
    let before = s.count(DESCRIBE_IMAGES);
    let (image, warnings) = admit(&hook.state, "second", &pinned).await;
    assert_eq!(image, format!("{HOST}/{NGINX}:1.27@{}", digest('a')));
    assert!(
        warnings[0].contains("the pull-through cache holds its digest"),
        "{warnings:?}"
    );
    assert_eq!(
        s.count(DESCRIBE_IMAGES),
        before,
        "no call for a known digest"
    );
    assert_eq!(hook.metrics.checks.with_label_values(&["cached"]).get(), 1);
    assert_eq!(hook.metrics.known.get(), 1);
    let _ = hook.stop.send(true);
}

#[tokio::test]
async fn a_digest_not_in_the_cache_stays_on_its_upstream_and_is_asked_about_once() {
    let s = stand_in().await;
    let hook = webhook(&s);
    let pinned = format!("nginx:1.27@{}", digest('a'));
    for uid in ["a", "b", "c"] {
        let (image, _) = admit(&hook.state, uid, &pinned).await;
        assert_eq!(image, pinned);
    }
    wait_until("the checker answers", || {
        hook.metrics.checks.with_label_values(&["not_cached"]).get() == 1
    })
    .await;
    let (image, warnings) = admit(&hook.state, "d", &pinned).await;
    assert_eq!(image, pinned);
    assert!(
        warnings[0]
            .ends_with("does not hold sha256:aaaaaaaaaaaa yet (warmed by tag, later Pods use it)"),
        "{warnings:?}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Four admissions, one check: the answer holds for one rule interval.
    assert_eq!(s.count(DESCRIBE_IMAGES), 1);
    let _ = hook.stop.send(true);
}

#[tokio::test]
async fn a_bare_digest_is_said_to_be_unwarmable_and_a_refusal_pauses_the_checks() {
    let s = stand_in().await;
    s.script(|script| script.deny = vec![DESCRIBE_IMAGES.to_owned()]);
    let hook = webhook(&s);
    let bare = format!("nginx@{}", digest('a'));
    let (image, warnings) = admit(&hook.state, "a", &bare).await;
    assert_eq!(image, bare);
    assert!(
        warnings[0].ends_with(
            "cannot be warmed; rewritten once the cache holds sha256:aaaaaaaaaaaa (pull it by tag)"
        ),
        "{warnings:?}"
    );
    wait_until("the refusal is counted", || {
        hook.metrics
            .checks
            .with_label_values(&["access_denied"])
            .get()
            == 1
    })
    .await;
    // Another digest while paused: queued, not asked.
    admit(&hook.state, "b", &format!("nginx@{}", digest('b'))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        s.count(DESCRIBE_IMAGES),
        1,
        "no retry loop after AccessDenied"
    );
    assert_eq!(*hook.state.digests.load().as_ref(), DigestSnapshot::EMPTY);
    let _ = Arc::clone(&hook.state.digests);
    let _ = hook.stop.send(true);
}
