//! The admission hot path in process: parsing one image reference, deciding one rewrite, and the
//! whole admission of captured AdmissionReview requests, from request bytes to the response bytes
//! the server sends.
//!
//! `cargo bench --bench admission` measures; `cargo test --all-targets` runs each benchmark once.
#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented public items"
)]
#![allow(
    clippy::expect_used,
    reason = "a benchmark without its fixtures cannot run at all"
)]

use std::hint::black_box;
use std::path::Path;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pullthrough::admission;
use pullthrough::config::{Config, Overrides};
use pullthrough::metrics::Metrics;
use pullthrough::reference::Reference;
use pullthrough::rewrite::decide;
use pullthrough::rules::RuleSnapshot;
use pullthrough::server::{self, AppState, Limits, MUTATE_PATH};
use tower::ServiceExt as _;

/// One container, `nginx:1.27`.
const SIMPLE: &str = "pod-create-simple.json";
/// Two init containers (one a native sidecar) and two containers: four images to rewrite.
const FOUR_IMAGES: &str = "pod-create-initcontainers-native-sidecar-multi-container.json";

/// References as Pods spell them: short Docker Hub names, a namespaced Docker Hub name, another
/// registry with a deep path, and a tag pinned by digest.
const REFERENCES: &[(&str, &str)] = &[
    ("official", "nginx:1.27"),
    ("docker_hub_user", "fluent/fluent-bit:3.0"),
    ("quay", "quay.io/prometheus/node-exporter:v1.8.2"),
    (
        "tag_and_digest",
        "ghcr.io/org/app:1.2.3@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ),
];

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/admission")
        .join(name);
    std::fs::read(&path).expect("fixture readable")
}

fn config() -> Config {
    Config::embedded(&Overrides::default()).expect("embedded configuration is valid")
}

fn reference(c: &mut Criterion) {
    let mut group = c.benchmark_group("reference/parse");
    for (name, image) in REFERENCES {
        group.bench_function(*name, |b| b.iter(|| Reference::parse(black_box(image))));
    }
    group.finish();
}

fn rewrite(c: &mut Criterion) {
    let config = config();
    let rules = RuleSnapshot::unknown();
    let mut group = c.benchmark_group("rewrite/decide");
    for (name, image) in REFERENCES {
        group.bench_function(*name, |b| {
            b.iter(|| decide(&config, &rules, black_box(image)));
        });
    }
    group.finish();
}

fn review(c: &mut Criterion) {
    let config = config();
    let rules = RuleSnapshot::unknown();
    let mut group = c.benchmark_group("admission/review");
    for (name, file) in [("simple", SIMPLE), ("four_images", FOUR_IMAGES)] {
        let body = fixture(file);
        let reviewed = admission::review(&config, &rules, &body).expect("fixture is readable");
        assert_eq!(
            reviewed.outcome,
            admission::Outcome::Patched,
            "{file} must be patched for the benchmark to measure a rewrite"
        );
        group.throughput(Throughput::Bytes(body.len() as u64));
        // What the server does between reading the body and writing the response.
        group.bench_function(name, |b| {
            b.iter(|| {
                let reviewed = admission::review(&config, &rules, black_box(&body))
                    .expect("fixture is readable");
                reviewed.response.into_review().to_vec()
            });
        });
    }
    group.finish();
}

/// What the floor server (`examples/floor.rs`) does with a body: read the uid, answer
/// `allowed: true`. The difference with `admission/review` is what the rewrite costs in process.
fn floor(c: &mut Criterion) {
    #[derive(serde::Deserialize)]
    struct Review<'a> {
        #[serde(borrow)]
        request: Request<'a>,
    }
    #[derive(serde::Deserialize)]
    struct Request<'a> {
        #[serde(borrow)]
        uid: std::borrow::Cow<'a, str>,
    }
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Answer<'a> {
        api_version: &'static str,
        kind: &'static str,
        response: Allowed<'a>,
    }
    #[derive(serde::Serialize)]
    struct Allowed<'a> {
        uid: &'a str,
        allowed: bool,
    }
    let mut group = c.benchmark_group("floor/answer");
    for (name, file) in [("simple", SIMPLE), ("four_images", FOUR_IMAGES)] {
        let body = fixture(file);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let review: Review<'_> =
                    serde_json::from_slice(black_box(&body)).expect("fixture is readable");
                serde_json::to_vec(&Answer {
                    api_version: admission::ADMISSION_API_VERSION,
                    kind: "AdmissionReview",
                    response: Allowed {
                        uid: &review.request.uid,
                        allowed: true,
                    },
                })
                .expect("serialises")
            });
        });
    }
    group.finish();
}

/// The webhook's handler through its router, in process: body limit, deadline, review, metrics
/// and the log lines at the server's default level, written to `/dev/null` as the server writes
/// them to stderr.
fn handler(c: &mut Criterion) {
    let metrics = Metrics::new().expect("metrics register");
    // As the webhook runs: a digest checker to hand pinned digests to (none in these bodies).
    let digest_metrics = pullthrough::digests::run::DigestMetrics::register(metrics.registry())
        .expect("metrics register");
    let (requests, _pending) = pullthrough::digests::run::channel(&digest_metrics);
    let mut state = AppState::new(config(), metrics);
    state.digest_requests = Some(requests);
    let router = server::webhook_router(state, Limits::default());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime starts");
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .expect("/dev/null opens");
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(Arc::new(null))
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);
    let mut group = c.benchmark_group("server/mutate");
    for (name, file) in [("simple", SIMPLE), ("four_images", FOUR_IMAGES)] {
        let body = axum::body::Bytes::from(fixture(file));
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let request = Request::post(MUTATE_PATH)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body.clone()))
                    .expect("request builds");
                let response = runtime
                    .block_on(router.clone().oneshot(request))
                    .expect("the router is infallible");
                assert_eq!(response.status(), StatusCode::OK);
                runtime
                    .block_on(axum::body::to_bytes(response.into_body(), usize::MAX))
                    .expect("body reads")
            });
        });
    }
    group.finish();
}

criterion_group!(benches, reference, rewrite, review, floor, handler);
criterion_main!(benches);
