//! The real webhook server over TLS, driven with the captured AdmissionReview requests over
//! HTTP/1.1 and HTTP/2: patches, warnings, keep-alive, bad input, configuration reload,
//! certificate rotation and the admin endpoints.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::Ordering;

use common::http::{self, Client, Proto};
use common::{
    BODY_LIMIT, HOST, Images, TestCa, TestServer, check_envelope, create_review, dns_sans, ecr,
    fixture, fixture_json, fixture_names, images, pairs, patch_of, patched_object, patched_pod,
    warnings,
};
use k8s_openapi::api::core::v1::Pod;
use pullthrough::admission::ORIGINAL_IMAGES_ANNOTATION;
use pullthrough::reload::Outcome;
use pullthrough::server::MUTATE_PATH;
use serde_json::{Value, json};

/// The unmapped image an earlier webhook left in the UPDATE fixtures.
const ECHO_IMAGE: &str = "registry.example/patched-by-echo-webhook:1";

/// What one fixture must come out as.
struct Expected {
    fixture: &'static str,
    images: Images,
    /// Whether a patch is expected.
    patched: bool,
    /// The `pullthrough.dev/original-images` record expected after the patch, if any.
    originals: Option<Value>,
    /// A text the only warning must contain; `None` when no warning is expected.
    warning: Option<&'static str>,
}

fn expectations() -> Vec<Expected> {
    let nginx = ecr("docker-hub/library/nginx:1.27");
    let busybox = ecr("docker-hub/library/busybox:1.36");
    let one_nginx = |fixture, name: &'static str| Expected {
        fixture,
        images: Images {
            main: pairs(&[(name, &nginx)]),
            ..Images::default()
        },
        patched: true,
        originals: Some(json!({ name: "nginx:1.27" })),
        warning: None,
    };
    vec![
        Expected {
            fixture: "pod-create-by-replicaset-controller-deployment-with-sidecar.json",
            images: Images {
                init: pairs(&[("sidecar-proxy", &ecr("docker-hub/envoyproxy/envoy:v1.31.0"))]),
                main: pairs(&[("web", &nginx)]),
                ephemeral: vec![],
            },
            patched: true,
            originals: Some(json!({
                "sidecar-proxy": "envoyproxy/envoy:v1.31.0",
                "web": "nginx:1.27",
            })),
            warning: None,
        },
        one_nginx("pod-create-dryrun-apply.json", "app"),
        one_nginx("pod-create-dryrun-server-side-apply.json", "app"),
        one_nginx("pod-create-generatename-ownerref-direct.json", "web"),
        Expected {
            fixture: "pod-create-initcontainers-native-sidecar-multi-container.json",
            images: Images {
                init: pairs(&[
                    ("init-migrate", &busybox),
                    ("log-shipper", &ecr("docker-hub/fluent/fluent-bit:3.0")),
                ]),
                main: pairs(&[
                    ("app", &nginx),
                    ("second", &ecr("docker-hub/library/redis:7")),
                ]),
                ephemeral: vec![],
            },
            patched: true,
            originals: Some(json!({
                "init-migrate": "busybox:1.36",
                "log-shipper": "fluent/fluent-bit:3.0",
                "app": "nginx:1.27",
                "second": "redis:7",
            })),
            warning: None,
        },
        Expected {
            fixture: "pod-create-kubectl-run.json",
            images: Images {
                main: pairs(&[("kubectl-run-pod", &busybox)]),
                ..Images::default()
            },
            patched: true,
            originals: Some(json!({ "kubectl-run-pod": "busybox:1.36" })),
            warning: None,
        },
        one_nginx("pod-create-simple.json", "app"),
        // An annotation change: nothing the update changes, the unmapped image is reported. The
        // ephemeral container is not in scope of a plain Pod update.
        Expected {
            fixture: "pod-update-dryrun-annotate.json",
            images: Images {
                main: pairs(&[("app", ECHO_IMAGE)]),
                ephemeral: pairs(&[("debugger", "busybox:1.36")]),
                ..Images::default()
            },
            patched: false,
            originals: None,
            // The update leaves the image as it was: nothing to report again.
            warning: None,
        },
        // A new ephemeral container: only it is rewritten, and no annotation is added (the
        // subresource would drop it).
        Expected {
            fixture: "pod-update-ephemeralcontainers-kubectl-debug.json",
            images: Images {
                main: pairs(&[("app", ECHO_IMAGE)]),
                ephemeral: pairs(&[("debugger", &busybox)]),
                ..Images::default()
            },
            patched: true,
            originals: None,
            warning: None,
        },
        // Same on a Pod whose other containers were never rewritten: they stay as they are.
        Expected {
            fixture: "pod-update-ephemeralcontainers-raw-put.json",
            images: Images {
                init: pairs(&[
                    ("init-migrate", "busybox:1.36"),
                    ("log-shipper", "fluent/fluent-bit:3.0"),
                ]),
                main: pairs(&[("app", ECHO_IMAGE), ("second", "redis:7")]),
                ephemeral: pairs(&[("raw-put-debugger", &busybox)]),
            },
            patched: true,
            originals: None,
            warning: None,
        },
        Expected {
            fixture: "pod-update-label.json",
            images: Images {
                main: pairs(&[("app", ECHO_IMAGE)]),
                ..Images::default()
            },
            patched: false,
            originals: None,
            // The update leaves the image as it was: nothing to report again.
            warning: None,
        },
    ]
}

/// The patched object with images and the originals record put back, to compare with the
/// request's object: the patch must change nothing else.
fn undo_rewrite(patched: &Value, original: &Value) -> Value {
    let mut undone = patched.clone();
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        let containers = undone
            .get_mut("spec")
            .and_then(|s| s.get_mut(list))
            .and_then(Value::as_array_mut);
        if let Some(containers) = containers {
            for (i, c) in containers.iter_mut().enumerate() {
                c["image"] = original["spec"][list][i]["image"].clone();
            }
        }
    }
    let annotations = undone
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut);
    if let Some(annotations) = annotations {
        annotations.remove(ORIGINAL_IMAGES_ANNOTATION);
        if annotations.is_empty() && original["metadata"].get("annotations").is_none() {
            undone["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("annotations");
        }
    }
    undone
}

fn originals_record(pod: &Pod) -> Option<Value> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(ORIGINAL_IMAGES_ANNOTATION)
        .map(|s| serde_json::from_str(s).expect("the originals record is JSON"))
}

/// Checks one fixture's response against its expectation.
fn check_fixture(expected: &Expected, request: &Value, resp: &http::Response, proto: Proto) {
    let ctx = format!("{} over {proto:?}", expected.fixture);
    let response = check_envelope(request, resp);
    assert_eq!(response["allowed"], true, "{ctx}: {response}");
    let patch = patch_of(&response);
    assert_eq!(patch.is_some(), expected.patched, "{ctx}: {response}");
    if let Some(patch) = &patch {
        assert!(!patch.0.is_empty(), "{ctx}: empty patch");
    }

    let pod = patched_pod(request, &response);
    assert_eq!(images(&pod), expected.images, "{ctx}");
    assert_eq!(originals_record(&pod), expected.originals, "{ctx}");

    let object = &request["request"]["object"];
    let patched = patched_object(request, &response);
    assert_eq!(
        &undo_rewrite(&patched, object),
        object,
        "{ctx}: the patch changes more than images and the originals record"
    );
    let before: Pod = serde_json::from_value(object.clone()).unwrap();
    let before = images(&before);
    let changed = [
        (&before.init, &expected.images.init),
        (&before.main, &expected.images.main),
        (&before.ephemeral, &expected.images.ephemeral),
    ]
    .iter()
    .map(|(a, b)| a.iter().zip(b.iter()).filter(|(x, y)| x != y).count())
    .sum::<usize>();
    if expected.patched {
        assert_eq!(
            response["auditAnnotations"]["rewritten-images"],
            json!(changed.to_string()),
            "{ctx}: {response}"
        );
    }

    let warnings = warnings(&response);
    match expected.warning {
        None => assert!(
            warnings.is_empty(),
            "{ctx}: unexpected warnings {warnings:?}"
        ),
        Some(text) => {
            assert_eq!(warnings.len(), 1, "{ctx}: {warnings:?}");
            assert!(warnings[0].contains(text), "{ctx}: {warnings:?}");
            assert!(
                warnings[0].contains("no pull-through cache rule"),
                "{ctx}: {warnings:?}"
            );
        }
    }
}

async fn assert_good_request(server: &TestServer, proto: Proto) {
    let request = fixture_json("pod-create-simple.json");
    let mut client = server.client(proto).await;
    let resp = client
        .post(MUTATE_PATH, &fixture("pod-create-simple.json"))
        .await;
    let response = check_envelope(&request, &resp);
    let pod = patched_pod(&request, &response);
    assert_eq!(
        images(&pod).main,
        pairs(&[("app", &ecr("docker-hub/library/nginx:1.27"))])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_is_answered_with_the_expected_images_over_http1_and_http2() {
    let server = TestServer::start().await;
    let table = expectations();
    let covered: Vec<&str> = table.iter().map(|e| e.fixture).collect();
    assert_eq!(
        covered,
        fixture_names(),
        "every fixture needs an expectation (sorted by file name)"
    );
    for proto in Proto::ALL {
        for expected in &table {
            // A new connection per fixture: each answer stands on its own.
            let mut client = server.client(proto).await;
            let request = fixture_json(expected.fixture);
            let resp = client.post(MUTATE_PATH, &fixture(expected.fixture)).await;
            check_fixture(expected, &request, &resp, proto);
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_fixtures_are_rewritten_exactly_like_the_same_request_without_dry_run() {
    let server = TestServer::start().await;
    let mut client = server.client(Proto::Http2).await;
    let mut dry_runs = 0;
    for name in fixture_names() {
        let request = fixture_json(&name);
        if request["request"]["dryRun"] != true {
            continue;
        }
        dry_runs += 1;
        let mut real = request.clone();
        real["request"]["dryRun"] = json!(false);
        real["request"]["uid"] = json!("not-a-dry-run");
        let dry = check_envelope(&request, &client.post(MUTATE_PATH, &fixture(&name)).await);
        let wet = check_envelope(
            &real,
            &client
                .post(MUTATE_PATH, &serde_json::to_vec(&real).unwrap())
                .await,
        );
        assert_eq!(patch_of(&dry), patch_of(&wet), "{name}");
        assert_eq!(warnings(&dry), warnings(&wet), "{name}");
    }
    assert_eq!(dry_runs, 3, "the three dry-run fixtures");
    drop(client);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patched_pod_sent_again_as_a_new_create_gets_no_patch_and_no_warning() {
    let server = TestServer::start().await;
    let mut client = server.client(Proto::Http2).await;
    let mut creates = 0;
    for name in fixture_names() {
        let request = fixture_json(&name);
        if request["request"]["operation"] != "CREATE" {
            continue;
        }
        creates += 1;
        let first = check_envelope(&request, &client.post(MUTATE_PATH, &fixture(&name)).await);
        assert!(patch_of(&first).is_some(), "{name}: first pass rewrites");
        let again = create_review(&request, patched_object(&request, &first), "second-pass");
        let second = check_envelope(
            &again,
            &client
                .post(MUTATE_PATH, &serde_json::to_vec(&again).unwrap())
                .await,
        );
        assert_eq!(second["allowed"], true, "{name}");
        assert!(
            patch_of(&second).is_none(),
            "{name}: second pass patched: {second}"
        );
        assert!(warnings(&second).is_empty(), "{name}: {second}");
    }
    assert_eq!(creates, 7);
    drop(client);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_requests_share_one_kept_alive_connection_over_http1_and_http2() {
    let server = TestServer::start().await;
    let table = expectations();
    for proto in Proto::ALL {
        let mut client = server.client(proto).await;
        for round in 0..3 {
            for expected in &table {
                let request = fixture_json(expected.fixture);
                let resp = client.post(MUTATE_PATH, &fixture(expected.fixture)).await;
                check_fixture(expected, &request, &resp, proto);
                assert_ne!(
                    resp.header("connection"),
                    Some("close"),
                    "{proto:?} round {round}: the server asked to close"
                );
            }
        }
        if let Client::H2(h2) = &client {
            assert!(!h2.is_closed(), "no GOAWAY on a healthy connection");
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_right_status_and_the_server_keeps_serving() {
    let server = TestServer::start().await;
    let invalid_shape = serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "bad-shape",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": "CREATE",
            "object": {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": 7}},
        },
    }))
    .unwrap();
    let mut oversized = fixture_json("pod-create-simple.json");
    oversized["request"]["object"]["metadata"]["annotations"] =
        json!({ "padding": "x".repeat(BODY_LIMIT + 1024) });
    let oversized = serde_json::to_vec(&oversized).unwrap();
    assert!(oversized.len() > BODY_LIMIT);

    for proto in Proto::ALL {
        let mut client = server.client(proto).await;
        let resp = client.post(MUTATE_PATH, b"\x00garbage{{{").await;
        assert_eq!(resp.status, 400, "{proto:?} garbage: {}", resp.text());
        assert_good_request(&server, proto).await;

        let mut client = server.client(proto).await;
        let resp = client.post(MUTATE_PATH, b"{}").await;
        assert_eq!(resp.status, 400, "{proto:?} {{}}: {}", resp.text());
        assert_good_request(&server, proto).await;

        let mut client = server.client(proto).await;
        let resp = client.post(MUTATE_PATH, &invalid_shape).await;
        assert_eq!(resp.status, 200, "{proto:?} bad shape: {}", resp.text());
        let review = resp.json();
        assert_eq!(review["kind"], "AdmissionReview");
        assert_eq!(review["response"]["uid"], "bad-shape");
        assert_eq!(review["response"]["allowed"], false, "{review}");
        assert_eq!(review["response"]["status"]["code"], 400, "{review}");
        assert!(review["response"].get("patch").is_none(), "{review}");
        assert_good_request(&server, proto).await;

        let mut client = server.client(proto).await;
        let resp = client.post(MUTATE_PATH, &oversized).await;
        assert_eq!(resp.status, 413, "{proto:?} oversized: {}", resp.text());
        assert_good_request(&server, proto).await;

        let mut client = server.client(proto).await;
        let resp = client
            .post("/validate", &fixture("pod-create-simple.json"))
            .await;
        assert_eq!(resp.status, 404, "{proto:?} wrong path");
        assert_good_request(&server, proto).await;

        let mut client = server.client(proto).await;
        let resp = client.request("GET", MUTATE_PATH, &[], &[]).await.unwrap();
        assert_eq!(resp.status, 405, "{proto:?} GET");
        assert!(
            resp.header("allow").is_some_and(|a| a.contains("POST")),
            "{:?}",
            resp.headers
        );
        assert_good_request(&server, proto).await;
    }

    let metrics = server.admin_get("/metrics").await.text();
    assert!(
        metrics.contains("pullthrough_admission_requests_total{outcome=\"invalid\"} 6"),
        "two unreadable bodies and one invalid review per protocol:\n{metrics}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_review_gets_warnings_listing_the_rewritten_image_and_no_patch() {
    let server = TestServer::start().await;
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0d6b1b1e-6a0c-4c55-9d55-2f1d1a4f2c10",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "requestKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "requestResource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": "web",
            "namespace": "lab-demo",
            "operation": "CREATE",
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters"]},
            "object": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "lab-demo"},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {
                            "containers": [
                                {"name": "web", "image": "nginx:1.27"},
                                {"name": "internal", "image": "registry.example/team/app:2"},
                            ],
                        },
                    },
                },
            },
            "oldObject": null,
            "dryRun": true,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions", "dryRun": ["All"]},
        },
    });
    for proto in Proto::ALL {
        let mut client = server.client(proto).await;
        let resp = client
            .post(MUTATE_PATH, &serde_json::to_vec(&review).unwrap())
            .await;
        let response = check_envelope(&review, &resp);
        assert_eq!(response["allowed"], true);
        assert!(
            patch_of(&response).is_none(),
            "workloads are previewed, not patched"
        );
        let warnings = warnings(&response);
        let nginx = ecr("docker-hub/library/nginx:1.27");
        assert!(
            warnings.iter().any(|w| w.contains("\"web\"")
                && w.contains("\"nginx:1.27\"")
                && w.contains(&format!("\"{nginx}\""))),
            "{warnings:?}"
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("registry.example/team/app:2")),
            "the unmapped image is reported too: {warnings:?}"
        );
        assert_eq!(warnings.len(), 2, "{warnings:?}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_config_is_used_and_an_invalid_file_keeps_the_previous_one() {
    let mut server = TestServer::start().await;
    let request = fixture_json("pod-create-simple.json");
    let body = fixture("pod-create-simple.json");
    let image = |client_resp: &http::Response| {
        let response = check_envelope(&request, client_resp);
        images(&patched_pod(&request, &response)).main[0].1.clone()
    };
    let mut kept = server.client(Proto::Http2).await;
    assert_eq!(
        image(&kept.post(MUTATE_PATH, &body).await),
        format!("{HOST}/docker-hub/library/nginx:1.27")
    );
    assert_eq!(server.config_reloader.poll_once(), Outcome::Unchanged);

    let other = "210987654321.dkr.ecr.eu-west-1.amazonaws.com/docker-hub/library/nginx:1.27";
    server.write_config("accountId: \"210987654321\"\nregion: eu-west-1\n");
    assert_eq!(server.config_reloader.poll_once(), Outcome::Reloaded);
    assert_eq!(image(&kept.post(MUTATE_PATH, &body).await), other);
    let mut fresh = server.client(Proto::Http1).await;
    assert_eq!(image(&fresh.post(MUTATE_PATH, &body).await), other);

    server.write_config("accountId: \"333333333333\"\nregion: eu-west-1\nnotAKey: true\n");
    assert_eq!(server.config_reloader.poll_once(), Outcome::Refused);
    assert_eq!(server.config_reloader.poll_once(), Outcome::Unchanged);
    assert_eq!(image(&kept.post(MUTATE_PATH, &body).await), other);
    assert_eq!(image(&fresh.post(MUTATE_PATH, &body).await), other);
    assert_eq!(server.state.config.load().account_id, "210987654321");

    let metrics = server.admin_get("/metrics").await.text();
    assert!(
        metrics.contains("pullthrough_config_reloads_total{result=\"success\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pullthrough_config_reloads_total{result=\"failure\"} 1"),
        "{metrics}"
    );
    drop((kept, fresh));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_served_to_new_connections_while_old_ones_keep_working() {
    let mut server = TestServer::start().await;
    let body = fixture("pod-create-simple.json");
    let request = fixture_json("pod-create-simple.json");
    let ok = |resp: &http::Response| {
        let response = check_envelope(&request, resp);
        assert!(patch_of(&response).is_some());
    };

    // Old connections, one per protocol, made with the first certificate.
    let mut old_h1 = server.client(Proto::Http1).await;
    let mut old_h2 = server.client(Proto::Http2).await;
    let first_leaf = old_h1.peer_leaf();
    assert_eq!(old_h2.peer_leaf(), first_leaf);
    assert!(dns_sans(&first_leaf).contains(&"localhost".to_owned()));
    ok(&old_h1.post(MUTATE_PATH, &body).await);
    ok(&old_h2.post(MUTATE_PATH, &body).await);

    // Kubelet swaps `..data` to a pair from another CA with another SAN.
    let ca = TestCa::new("rotated CA");
    let (chain, key, new_leaf) = ca.leaf(&["localhost", "rotated.test"]);
    server.volume.update(chain.as_bytes(), key.as_bytes());
    assert_eq!(server.cert_reloader.poll_once(), Outcome::Reloaded);

    for proto in Proto::ALL {
        // The old CA no longer verifies what new connections get.
        let refused = Client::connect(&server.connector(proto), server.webhook_addr, proto).await;
        assert!(refused.is_err(), "{proto:?}: old CA still accepted");

        let connector = http::connector(ca.der(), &[proto.alpn()]);
        let mut fresh = Client::connect(&connector, server.webhook_addr, proto)
            .await
            .unwrap();
        assert_eq!(fresh.peer_leaf(), new_leaf, "{proto:?}");
        assert_eq!(
            dns_sans(&fresh.peer_leaf()),
            vec!["localhost".to_owned(), "rotated.test".to_owned()]
        );
        ok(&fresh.post(MUTATE_PATH, &body).await);
    }

    // The connections made before the swap keep their certificate and keep being answered.
    ok(&old_h1.post(MUTATE_PATH, &body).await);
    ok(&old_h2.post(MUTATE_PATH, &body).await);
    assert_eq!(old_h1.peer_leaf(), first_leaf);
    assert_eq!(old_h2.peer_leaf(), first_leaf);

    // A malformed certificate, then a certificate with a key that is not its own: both
    // refused, the rotated certificate stays.
    server.volume.update(
        b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
        key.as_bytes(),
    );
    assert_eq!(server.cert_reloader.poll_once(), Outcome::Refused);
    let (other_chain, _, _) = ca.leaf(&["localhost", "mismatch.test"]);
    server.volume.update(other_chain.as_bytes(), key.as_bytes());
    assert_eq!(server.cert_reloader.poll_once(), Outcome::Refused);
    assert_eq!(server.cert_reloader.poll_once(), Outcome::Unchanged);
    for proto in Proto::ALL {
        let connector = http::connector(ca.der(), &[proto.alpn()]);
        let mut fresh = Client::connect(&connector, server.webhook_addr, proto)
            .await
            .unwrap();
        assert_eq!(
            fresh.peer_leaf(),
            new_leaf,
            "{proto:?}: a refused pair was served"
        );
        ok(&fresh.post(MUTATE_PATH, &body).await);
    }

    let metrics = server.admin_get("/metrics").await.text();
    assert!(
        metrics.contains("pullthrough_tls_reloads_total{result=\"success\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pullthrough_tls_reloads_total{result=\"failure\"} 2"),
        "{metrics}"
    );
    drop((old_h1, old_h2));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_report_health_readiness_and_metrics() {
    let server = TestServer::start().await;

    let healthz = server.admin_get("/healthz").await;
    assert_eq!(healthz.status, 200);
    assert_eq!(healthz.text(), "ok");
    assert_eq!(server.admin_get("/readyz").await.status, 200);

    server.state.ready.store(false, Ordering::Release);
    assert_eq!(server.admin_get("/readyz").await.status, 503);
    assert_eq!(
        server.admin_get("/healthz").await.status,
        200,
        "liveness does not follow readiness"
    );
    server.state.ready.store(true, Ordering::Release);
    assert_eq!(server.admin_get("/readyz").await.status, 200);

    let before = server.admin_get("/metrics").await.text();
    assert!(
        !before.contains("pullthrough_images_total{decision=\"rewritten\",registry=\"docker.io\"}"),
        "{before}"
    );

    let mut client = server.client(Proto::Http2).await;
    let name = "pod-create-initcontainers-native-sidecar-multi-container.json";
    check_envelope(
        &fixture_json(name),
        &client.post(MUTATE_PATH, &fixture(name)).await,
    );

    let metrics = server.admin_get("/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/plain")),
        "{:?}",
        metrics.headers
    );
    let text = metrics.text();
    assert!(
        text.contains("pullthrough_admission_requests_total{outcome=\"patched\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("pullthrough_images_total{decision=\"rewritten\",registry=\"docker.io\"} 4"),
        "{text}"
    );
    assert!(
        text.contains("pullthrough_admission_duration_seconds_count 1"),
        "{text}"
    );
    assert_eq!(server.admin_get("/nope").await.status, 404);
    drop(client);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_36_pod_with_image_volumes_comes_back_on_the_cache_recorded_and_idempotent() {
    let server = TestServer::start().await;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/admission-1.36/pod-create-image-volumes.json");
    let body = std::fs::read(path).unwrap();
    let request: Value = serde_json::from_slice(&body).unwrap();
    for proto in Proto::ALL {
        let mut client = server.client(proto).await;
        let first = check_envelope(&request, &client.post(MUTATE_PATH, &body).await);
        let pod = patched_object(&request, &first);
        assert_eq!(
            pod["spec"]["volumes"][0]["image"]["reference"],
            ecr("quay/example/models:v3"),
            "{proto:?}"
        );
        let record: Value = serde_json::from_str(
            pod["metadata"]["annotations"][ORIGINAL_IMAGES_ANNOTATION]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(record["volume/models"], "quay.io/example/models:v3");
        let again = create_review(&request, pod, "second-pass");
        let second = check_envelope(
            &again,
            &client
                .post(MUTATE_PATH, &serde_json::to_vec(&again).unwrap())
                .await,
        );
        assert!(patch_of(&second).is_none(), "{proto:?}: {second}");
    }
    server.stop().await;
}

/// The reconciler's fallback, end to end on the webhook's side: a Pod rewritten at CREATE,
/// then the UPDATE that the reconciler's own fallback patch makes of it, then a later UPDATE.
/// The container listed in `pullthrough.dev/fallback` keeps its original image throughout,
/// though the webhook's configuration has fallback disabled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_listed_in_the_fallback_annotation_keeps_its_original_image_on_update() {
    use pullthrough::config::{Config, Fallback, Overrides};
    use pullthrough::pullfail::{failures, fallback};
    use pullthrough::reconciler::PodRecord;
    use pullthrough::rules::RuleSnapshot;

    let server = TestServer::start().await;
    let create = fixture_json("pod-create-simple.json");
    for proto in Proto::ALL {
        let mut client = server.client(proto).await;
        let created = check_envelope(
            &create,
            &client
                .post(MUTATE_PATH, &fixture("pod-create-simple.json"))
                .await,
        );
        let mut running = patched_object(&create, &created);
        let rewritten = ecr("docker-hub/library/nginx:1.27");
        assert_eq!(running["spec"]["containers"][0]["image"], rewritten);
        running["metadata"]["uid"] = json!("uid-simple");
        running["status"] = json!({"containerStatuses": [{
            "name": "app", "image": rewritten, "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image: 403 Forbidden"}},
        }]});

        // The patch the reconciler sends once the pull has failed long enough.
        let config = Config::load(
            "accountId: \"123456789012\"\nregion: eu-west-1\nfallback:\n  enabled: true\n",
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(config.fallback.after, Fallback::default().after);
        let record =
            PodRecord::from_pod(&serde_json::from_value(running.clone()).unwrap()).unwrap();
        let rules = RuleSnapshot::unknown();
        let found = failures(&config, &rules, &record);
        let plan = fallback::plan(
            &config.fallback,
            &record,
            &found,
            |_| Some(config.fallback.after),
            |_| false,
        )
        .expect("the container is due to fall back");
        let mut fallen = running.clone();
        json_patch::patch(&mut fallen, &plan.patch()).unwrap();
        assert_eq!(fallen["spec"]["containers"][0]["image"], "nginx:1.27");

        let mut update = create.clone();
        update["request"]["uid"] = json!("fallback-update");
        update["request"]["operation"] = json!("UPDATE");
        update["request"]["object"] = fallen.clone();
        update["request"]["oldObject"] = running.clone();
        let answered = check_envelope(
            &update,
            &client
                .post(MUTATE_PATH, &serde_json::to_vec(&update).unwrap())
                .await,
        );
        assert_eq!(answered["allowed"], true, "{answered}");
        assert!(patch_of(&answered).is_none(), "{proto:?}: {answered}");
        let pod = patched_pod(&update, &answered);
        assert_eq!(images(&pod).main, pairs(&[("app", "nginx:1.27")]));
        let said = warnings(&answered);
        assert!(
            said.len() == 1 && said[0].contains("pullthrough.dev/fallback"),
            "{said:?}"
        );

        // A later update (a label) leaves it there too.
        let mut labelled = fallen.clone();
        labelled["metadata"]["labels"] = json!({"tier": "backend"});
        let mut later = update.clone();
        later["request"]["uid"] = json!("later-update");
        later["request"]["object"] = labelled;
        later["request"]["oldObject"] = fallen;
        let answered = check_envelope(
            &later,
            &client
                .post(MUTATE_PATH, &serde_json::to_vec(&later).unwrap())
                .await,
        );
        assert!(patch_of(&answered).is_none(), "{answered}");
        assert_eq!(
            images(&patched_pod(&later, &answered)).main,
            pairs(&[("app", "nginx:1.27")])
        );
    }
    server.stop().await;
}
