//! A Kubernetes API server and an ECR endpoint on loopback for `bench/reconciler-memory.sh`: the test suite's mocked API server holding many opted-in Pods of many Deployments, and the ECR stand-in with the Docker Hub rule missing, so that every Pod has something to report.
//!
//! ```sh
//! cargo run --release --example apiserver_mock -- 15000 50
//! ```
//!
//! prints `kube=http://127.0.0.1:PORT ecr=http://127.0.0.1:PORT` and serves until killed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/ecr_support/mod.rs"]
mod ecr_support;
#[path = "../tests/kube_support/mod.rs"]
mod kube_support;

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use kube_support::{Cluster, OWN_NAMESPACE, namespace};
use serde_json::{Value, json};

const CACHE: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

/// A Pod as the API server stores it for a Deployment's ReplicaSet: metadata with labels,
/// annotations, owner reference and managed fields, a spec with a sidecar, probes, resources
/// and volumes, and a running status. About 5 kB of JSON, like Pods of real charts.
fn pod(ns: &str, deployment: &str, index: usize) -> Value {
    let hash = "6b7f9c8d5";
    let name = format!("{deployment}-{hash}-{index:05x}");
    let uid = format!(
        "{:08x}-0000-4000-8000-{index:012x}",
        deployment.len() * 7919 + index
    );
    let app_image = format!("{CACHE}/docker-hub/library/nginx:1.27.{}", index % 3);
    let containers = json!([
        {"name": "app", "image": app_image, "imagePullPolicy": "IfNotPresent",
         "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
         "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}],
         "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
         "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http", "scheme": "HTTP"}, "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
         "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"}, "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
         "volumeMounts": [{"name": "config", "mountPath": "/etc/app"}, {"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}],
         "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"},
        {"name": "metrics", "image": format!("{CACHE}/quay/prometheus/statsd-exporter:v0.27.1"),
         "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
         "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}
    ]);
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": ns, "uid": uid, "resourceVersion": format!("{}", 100_000 + index),
            "generateName": format!("{deployment}-{hash}-"), "creationTimestamp": "2026-11-30T10:00:00Z",
            "labels": {"app.kubernetes.io/name": deployment, "app.kubernetes.io/instance": "prod", "pod-template-hash": hash},
            "annotations": {
                "pullthrough.dev/original-images": format!("{{\"app\":\"nginx:1.27.{}\",\"metrics\":\"quay.io/prometheus/statsd-exporter:v0.27.1\"}}", index % 3),
                "kubectl.kubernetes.io/restartedAt": "2026-11-30T09:59:00Z"
            },
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{deployment}-{hash}"),
                                 "uid": format!("rs-{deployment}"), "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [
                {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "time": "2026-11-30T10:00:00Z", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:app.kubernetes.io/name": {}, "f:pod-template-hash": {}}, "f:ownerReferences": {".": {}, "k:{\"uid\":\"rs\"}": {}}},
                              "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:image": {}, "f:name": {}, "f:ports": {}, "f:resources": {}}, "k:{\"name\":\"metrics\"}": {".": {}, "f:image": {}, "f:name": {}}}}}},
                {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": "2026-11-30T10:00:09Z", "fieldsType": "FieldsV1", "subresource": "status",
                 "fieldsV1": {"f:status": {"f:conditions": {}, "f:containerStatuses": {}, "f:hostIP": {}, "f:phase": {}, "f:podIP": {}, "f:podIPs": {}, "f:startTime": {}}}}
            ]
        },
        "spec": {
            "containers": containers,
            "volumes": [{"name": "config", "configMap": {"name": format!("{deployment}-config"), "defaultMode": 420}},
                        {"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}, {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}}],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default", "serviceAccount": "default", "nodeName": format!("ip-10-0-{}-{}.eu-west-1.compute.internal", index % 16, index % 200),
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "schedulerName": "default-scheduler", "priority": 0, "enableServiceLinks": true, "preemptionPolicy": "PreemptLowerPriority",
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]
        },
        "status": {
            "phase": "Running", "hostIP": "10.0.1.23", "podIP": format!("10.1.{}.{}", index / 250, index % 250), "startTime": "2026-11-30T10:00:01Z", "qosClass": "Burstable",
            "conditions": [{"type": "Initialized", "status": "True", "lastTransitionTime": "2026-11-30T10:00:01Z"},
                           {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-30T10:00:09Z"},
                           {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-11-30T10:00:09Z"},
                           {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-30T10:00:00Z"}],
            "containerStatuses": [
                {"name": "app", "ready": true, "restartCount": 0, "image": app_image, "imageID": format!("{CACHE}/docker-hub/library/nginx@sha256:{:064x}", index % 3), "containerID": format!("containerd://{:064x}", index), "started": true, "state": {"running": {"startedAt": "2026-11-30T10:00:05Z"}}},
                {"name": "metrics", "ready": true, "restartCount": 0, "image": format!("{CACHE}/quay/prometheus/statsd-exporter:v0.27.1"), "imageID": "", "containerID": format!("containerd://{:064x}", index + 1), "started": true, "state": {"running": {"startedAt": "2026-11-30T10:00:06Z"}}}
            ]
        }
    })
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let pods: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(15_000);
    let per_workload: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(50)
        .max(1);
    let namespaces = 20;
    let mut cluster = Cluster {
        namespaces: (0..namespaces)
            .map(|i| namespace(&format!("team-{i}")))
            .chain([namespace(OWN_NAMESPACE)])
            .collect(),
        deployment_uid: Some("uid-reconciler".into()),
        ..Cluster::default()
    };
    cluster.pods = (0..pods)
        .map(|i| {
            let workload = i / per_workload;
            pod(
                &format!("team-{}", workload % namespaces),
                &format!("service-{workload}"),
                i,
            )
        })
        .collect();
    let ecr = ecr_support::StandIn::start(ecr_support::Script {
        rules: vec![ecr_support::rule_json("quay", "quay.io")],
        ..ecr_support::Script::default()
    })
    .await;
    let kube = kube_support::serve_http(Arc::new(Mutex::new(cluster))).await;
    println!("kube=http://{kube} ecr={}", ecr.url());
    std::io::stdout().flush().unwrap();
    std::future::pending::<()>().await;
}
