//! A mocked Kubernetes API server for the reconciler's tests: just enough of the core, apps,
//! events.k8s.io and coordination.k8s.io APIs, answering from a [`Cluster`] and recording every
//! request. Reached through a `tower-test` service behind a real `kube::Client`, or over
//! plain HTTP on loopback for the binary.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::channel::mpsc;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// The reconciler's namespace in every scenario.
pub const OWN_NAMESPACE: &str = "pullthrough";
/// The reconciler's Deployment.
pub const DEPLOYMENT: &str = "pullthrough-reconciler";
/// The Lease.
pub const LEASE: &str = "pullthrough-reconciler";

pub fn pod(namespace: &str, name: &str, uid: &str, images: &[&str]) -> Value {
    let containers: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, image)| json!({"name": format!("c{i}"), "image": image}))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": uid, "resourceVersion": "5"},
        "spec": {"containers": containers},
    })
}

pub fn namespace(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "uid": format!("ns-{name}"), "resourceVersion": "3",
                     "labels": {"pullthrough.dev/enabled": "true"}},
    })
}

/// One request the mocked API server received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub body: Value,
}

/// What the mocked API server holds.
#[derive(Default)]
pub struct Cluster {
    pub pods: Vec<Value>,
    pub namespaces: Vec<Value>,
    pub lease: Option<Value>,
    pub deployment_uid: Option<String>,
    /// Workload Deployments, answered by GET.
    pub deployments: Vec<Value>,
    /// Answer event writes with this status instead of accepting them.
    pub reject_events: Option<u16>,
    /// Events as stored: created by POST, their series patched by PATCH, listed by GET.
    pub events: Vec<Value>,
    /// Answer this many event lists with a 500 first.
    pub failing_event_lists: usize,
    /// Answer this many Pod lists with a 500 first.
    pub failing_pod_lists: usize,
    /// End every watch at once instead of keeping it open.
    pub close_watches: bool,
    /// MutatingAdmissionPolicies as stored (server-side applies replace them).
    pub policies: Vec<Value>,
    /// Answer policy applies with this status and message instead of accepting them.
    pub refuse_policy: Option<(u16, String)>,
    pub seen: Vec<Seen>,
    /// Open watch streams, kept so that watches stay open.
    pub watches: Vec<mpsc::UnboundedSender<Result<Frame<Bytes>, Infallible>>>,
    /// The open Pod watch streams among them, which hear of changed Pods.
    pub pod_watches: Vec<mpsc::UnboundedSender<Result<Frame<Bytes>, Infallible>>>,
}

impl Cluster {
    /// Replaces the Pod with `pod`'s namespace and name (bumping its resourceVersion) and
    /// tells the open Pod watches.
    pub fn update_pod(&mut self, mut pod: Value) {
        let at = self
            .pods
            .iter()
            .position(|p| {
                p["metadata"]["namespace"] == pod["metadata"]["namespace"]
                    && p["metadata"]["name"] == pod["metadata"]["name"]
            })
            .expect("the Pod exists");
        let version: u64 = self.pods[at]["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10);
        pod["metadata"]["resourceVersion"] = json!((version.max(10) + 1).to_string());
        self.pods[at] = pod.clone();
        let line = format!("{}\n", json!({"type": "MODIFIED", "object": pod}));
        self.pod_watches.retain(|w| {
            w.unbounded_send(Ok(Frame::data(Bytes::from(line.clone()))))
                .is_ok()
        });
    }

    /// Applies a JSON Patch to a Pod the way the API server does: all or nothing, 422 when a
    /// `test` fails.
    fn patch_pod(&mut self, namespace: &str, name: &str, body: &Value) -> Reply {
        let Some(pod) = self
            .pods
            .iter()
            .find(|p| p["metadata"]["namespace"] == namespace && p["metadata"]["name"] == name)
        else {
            return not_found("pod");
        };
        let mut pod = pod.clone();
        let applied = serde_json::from_value::<json_patch::Patch>(body.clone())
            .map_err(|e| e.to_string())
            .and_then(|patch| json_patch::patch(&mut pod, &patch).map_err(|e| e.to_string()));
        match applied {
            Ok(()) => {
                self.update_pod(pod.clone());
                let stored = self
                    .pods
                    .iter()
                    .find(|p| p["metadata"]["name"] == name)
                    .unwrap();
                reply(200, stored)
            }
            Err(message) => reply(
                422,
                &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "reason": "Invalid", "code": 422, "message": message}),
            ),
        }
    }
}

pub type Reply = Response<BoxBody<Bytes, Infallible>>;

pub fn reply(status: u16, body: &Value) -> Reply {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .unwrap()
}

pub fn not_found(what: &str) -> Reply {
    reply(
        404,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "NotFound", "code": 404, "message": format!("{what} not found")}),
    )
}

pub fn list(kind: &str, items: &[Value]) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "10"}, "items": items})
}

/// Merges `patch` into `target` the JSON-merge way (null removes a key).
pub fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

pub fn answer(
    cluster: &Arc<Mutex<Cluster>>,
    method: &Method,
    path: &str,
    query: &str,
    body: &Value,
) -> Reply {
    let mut c = cluster.lock().unwrap();
    let watch = query.split('&').any(|kv| kv == "watch=true");
    if watch {
        let (tx, rx) = mpsc::unbounded();
        if !c.close_watches {
            if path == "/api/v1/pods" {
                c.pod_watches.push(tx.clone());
            }
            c.watches.push(tx);
        }
        return Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(StreamBody::new(rx).boxed())
            .unwrap();
    }
    let lease_path = format!("/apis/coordination.k8s.io/v1/namespaces/{OWN_NAMESPACE}/leases");
    match (method.as_str(), path) {
        ("GET", "/api/v1/pods") if c.failing_pod_lists > 0 => {
            c.failing_pod_lists -= 1;
            reply(
                500,
                &json!({"kind": "Status", "apiVersion": "v1", "code": 500, "message": "etcd timeout"}),
            )
        }
        ("GET", "/api/v1/pods") => {
            // Paged as the API server pages a list read from etcd: `limit` items from the
            // offset that `continue` carries.
            let param = |name: &str| {
                query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            };
            let from: usize = param("continue").and_then(|c| c.parse().ok()).unwrap_or(0);
            // A list at resourceVersion 0 is served whole from the API server's cache, whatever
            // its limit.
            let cached = param("resourceVersion") == Some("0");
            let limit: usize = param("limit")
                .filter(|_| !cached)
                .and_then(|l| l.parse().ok())
                .filter(|l| *l > 0)
                .unwrap_or(usize::MAX);
            let end = from.saturating_add(limit).min(c.pods.len());
            let mut page = list("PodList", &c.pods[from.min(end)..end]);
            if end < c.pods.len() {
                page["metadata"]["continue"] = json!(end.to_string());
            }
            reply(200, &page)
        }
        ("GET", "/api/v1/namespaces") => reply(200, &list("NamespaceList", &c.namespaces)),
        ("GET", p)
            if p.starts_with("/apis/apps/v1/namespaces/")
                && p != format!(
                    "/apis/apps/v1/namespaces/{OWN_NAMESPACE}/deployments/{DEPLOYMENT}"
                ) =>
        {
            let found = c.deployments.iter().find(|d| {
                p == format!(
                    "/apis/apps/v1/namespaces/{}/deployments/{}",
                    d["metadata"]["namespace"].as_str().unwrap_or_default(),
                    d["metadata"]["name"].as_str().unwrap_or_default()
                )
            });
            match found {
                Some(d) => reply(200, d),
                None => not_found("deployment"),
            }
        }
        ("GET", p)
            if p == format!(
                "/apis/apps/v1/namespaces/{OWN_NAMESPACE}/deployments/{DEPLOYMENT}"
            ) =>
        {
            match &c.deployment_uid {
                Some(uid) => reply(
                    200,
                    &json!({"apiVersion": "apps/v1", "kind": "Deployment",
                            "metadata": {"name": DEPLOYMENT, "namespace": OWN_NAMESPACE, "uid": uid}}),
                ),
                None => not_found("deployment"),
            }
        }
        ("GET", "/apis/events.k8s.io/v1/events") if c.failing_event_lists > 0 => {
            c.failing_event_lists -= 1;
            reply(
                500,
                &json!({"kind": "Status", "apiVersion": "v1", "code": 500, "message": "etcd timeout"}),
            )
        }
        ("GET", "/apis/events.k8s.io/v1/events") => {
            let controller = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("fieldSelector=reportingController%3D"));
            let items: Vec<Value> = c
                .events
                .iter()
                .filter(|e| controller.is_none_or(|want| e["reportingController"] == want))
                .cloned()
                .collect();
            reply(
                200,
                &json!({"apiVersion": "events.k8s.io/v1", "kind": "EventList",
                                "metadata": {"resourceVersion": "10"}, "items": items}),
            )
        }
        ("POST", p) if p.starts_with("/apis/events.k8s.io/v1/namespaces/") => {
            if let Some(status) = c.reject_events {
                return reply(
                    status,
                    &json!({"kind": "Status", "apiVersion": "v1", "code": status}),
                );
            }
            c.events.push(body.clone());
            reply(201, body)
        }
        ("PATCH", p) if p.starts_with("/apis/events.k8s.io/v1/namespaces/") => {
            if let Some(status) = c.reject_events {
                return reply(
                    status,
                    &json!({"kind": "Status", "apiVersion": "v1", "code": status}),
                );
            }
            let name = p.rsplit('/').next().unwrap_or_default();
            match c.events.iter_mut().find(|e| e["metadata"]["name"] == name) {
                Some(event) => {
                    merge(event, body);
                    reply(200, event)
                }
                None => not_found("event"),
            }
        }
        ("PATCH", p) if p.starts_with("/api/v1/namespaces/") && p.contains("/pods/") => {
            let parts: Vec<&str> = p.split('/').collect();
            match parts.as_slice() {
                ["", "api", "v1", "namespaces", ns, "pods", name] => c.patch_pod(ns, name, body),
                _ => not_found(path),
            }
        }
        ("GET", p) if p == format!("{lease_path}/{LEASE}") => match &c.lease {
            Some(l) => reply(200, l),
            None => not_found("lease"),
        },
        ("POST", p) if p == lease_path => {
            let mut lease = body.clone();
            lease["metadata"]["resourceVersion"] = json!("1");
            c.lease = Some(lease.clone());
            reply(201, &lease)
        }
        ("PATCH", p) if p == format!("{lease_path}/{LEASE}") => match c.lease.as_mut() {
            Some(lease) => {
                merge(&mut lease["spec"], &body["spec"]);
                reply(200, lease)
            }
            None => not_found("lease"),
        },
        (method, p) if p.starts_with(POLICIES) => {
            let name = p.trim_start_matches(POLICIES).trim_start_matches('/');
            let at = c
                .policies
                .iter()
                .position(|o| o["metadata"]["name"] == name);
            match (method, at) {
                ("GET", Some(at)) => reply(200, &c.policies[at]),
                ("GET", None) => not_found("mutatingadmissionpolicy"),
                ("PATCH", _) => {
                    if let Some((code, message)) = c.refuse_policy.clone() {
                        return reply(
                            code,
                            &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                    "reason": "Invalid", "code": code, "message": message}),
                        );
                    }
                    let mut stored = body.clone();
                    stored["metadata"]["uid"] = json!(format!("map-{name}"));
                    match at {
                        Some(at) => c.policies[at] = stored.clone(),
                        None => c.policies.push(stored.clone()),
                    }
                    reply(200, &stored)
                }
                _ => not_found(path),
            }
        }
        _ => not_found(path),
    }
}

/// Where MutatingAdmissionPolicies live.
pub const POLICIES: &str = "/apis/admissionregistration.k8s.io/v1/mutatingadmissionpolicies";

/// A `kube::Client` over the mocked API server.
pub fn tower_client(cluster: Arc<Mutex<Cluster>>) -> kube::Client {
    let (service, requests) = tower_test::mock::pair::<Request<Body>, Reply>();
    tokio::spawn(async move {
        let mut requests = std::pin::pin!(requests);
        while let Some((request, send)) = requests.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            send.send_response(handle(&cluster, parts.method, &parts.uri, &bytes));
        }
    });
    kube::Client::new(service, "default")
}

/// Serves `cluster` over plain HTTP/1.1 on a loopback port, for a real binary to reach through
/// a kubeconfig.
pub async fn serve_http(cluster: Arc<Mutex<Cluster>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let cluster = cluster.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let cluster = cluster.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let bytes = body
                                .collect()
                                .await
                                .map(http_body_util::Collected::to_bytes)
                                .unwrap_or_default();
                            Ok::<_, Infallible>(handle(&cluster, parts.method, &parts.uri, &bytes))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Answers one request and records it.
fn handle(cluster: &Arc<Mutex<Cluster>>, method: Method, uri: &http::Uri, bytes: &[u8]) -> Reply {
    let body: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or_default().to_owned();
    let response = answer(cluster, &method, &path, &query, &body);
    cluster.lock().unwrap().seen.push(Seen {
        method,
        path,
        query,
        body,
    });
    response
}
