//! The generated MutatingAdmissionPolicy against the engine, offline: its CEL evaluated with
//! Kubernetes' CEL libraries over the captured AdmissionReviews, a table of references that
//! covers the grammar, and generated references and Pods. The safety rule holds throughout:
//! every image comes out as the webhook rewrites it or unchanged, never anything else; and
//! ordinary references come out exactly as the webhook makes them, record included.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cel_support;

use std::time::SystemTime;

use base64::Engine as _;
use cel_support::{Compiled, Request};
use proptest::prelude::*;
use pullthrough::config::{Config, Overrides};
use pullthrough::digests::{DigestKey, DigestSnapshot};
use pullthrough::ecr::CacheRule;
use pullthrough::policy::{self, Options};
use pullthrough::rules::{self, RuleSnapshot};
use serde_json::{Value, json};

const HOST: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
const SHA: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn config(extra: &str) -> Config {
    Config::load(
        &format!("accountId: \"123456789012\"\nregion: eu-west-1\n{extra}"),
        &Overrides::default(),
    )
    .unwrap()
}

/// The webhook and the policy, planned from the same knowledge.
struct Pair {
    config: Config,
    rules: RuleSnapshot,
    digests: DigestSnapshot,
    policy: Compiled,
    plan: policy::Plan,
}

impl Pair {
    fn new(config: Config, rules: RuleSnapshot, digests: DigestSnapshot) -> Self {
        let plan = policy::plan(&config, &rules, &digests, &Options::default()).unwrap();
        let policy = Compiled::mutating(&plan.policy);
        Self {
            config,
            rules,
            digests,
            policy,
            plan,
        }
    }

    fn of(extra: &str) -> Self {
        Self::new(
            config(extra),
            RuleSnapshot::unknown(),
            DigestSnapshot::EMPTY,
        )
    }

    /// The object after the webhook alone.
    fn webhook(&self, request: &Request) -> Value {
        let mut review = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "0",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": request.namespace,
                "operation": request.operation,
                "object": request.object,
            },
        });
        if let Some(old) = &request.old_object {
            review["request"]["oldObject"] = old.clone();
        }
        if let Some(sub) = &request.sub_resource {
            review["request"]["subResource"] = json!(sub);
        }
        let body = serde_json::to_vec(&review).unwrap();
        let reviewed =
            pullthrough::admission::review_with(&self.config, &self.rules, &self.digests, &body)
                .unwrap();
        let review: Value =
            serde_json::from_slice(&reviewed.response.into_review().to_vec()).unwrap();
        let response = &review["response"];
        let mut object = request.object.clone();
        if let Some(b64) = response["patch"].as_str() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
            json_patch::patch(&mut object, &patch).unwrap();
        }
        object
    }

    /// The object after the policy alone; an expression that fails leaves it unchanged
    /// (`failurePolicy: Ignore`), and the test says so.
    fn policy(&self, request: &Request) -> Value {
        self.policy
            .apply(request)
            .unwrap_or_else(|e| panic!("the policy failed on {}: {e}", request.object))
    }

    /// The object after the policy, then the webhook on what the policy made.
    fn both(&self, request: &Request) -> Value {
        let mut after = request.clone();
        after.object = self.policy(request);
        self.webhook(&after)
    }
}

/// Every image of a Pod, by where it is.
fn images(pod: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for field in ["initContainers", "containers", "ephemeralContainers"] {
        for (i, c) in pod["spec"][field]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            out.push((
                format!("{field}/{i}"),
                c["image"].as_str().unwrap_or_default().to_owned(),
            ));
        }
    }
    for (i, v) in pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(r) = v["image"]["reference"].as_str() {
            out.push((format!("volumes/{i}"), r.to_owned()));
        }
    }
    out
}

const RECORD: &str = "pullthrough.dev/original-images";

/// The record, parsed where it is JSON (its text otherwise).
fn record(pod: &Value) -> Option<Value> {
    pod["metadata"]["annotations"][RECORD]
        .as_str()
        .map(|s| serde_json::from_str(s).unwrap_or_else(|_| json!(s)))
}

/// The safety rule for one request: each image the engine's or unchanged; the record is the
/// webhook's for what the policy rewrote; and the webhook after the policy ends where the
/// webhook alone does.
fn check_safe(pair: &Pair, request: &Request) -> (Value, Value) {
    let before = images(&request.object);
    let by_webhook = pair.webhook(request);
    let by_policy = pair.policy(request);
    let (want, got) = (images(&by_webhook), images(&by_policy));
    assert_eq!(before.len(), got.len());
    for ((at, original), ((_, webhook), (_, policy))) in
        before.iter().zip(want.iter().zip(got.iter()))
    {
        assert!(
            policy == original || policy == webhook,
            "{at}: {original:?} became {policy:?}; the webhook makes {webhook:?}"
        );
    }
    // Outside images and the record, the policy changes nothing.
    let strip = |pod: &Value| {
        let mut pod = pod.clone();
        if let Some(a) = pod
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
        {
            a.remove(RECORD);
            if a.is_empty() {
                pod["metadata"]
                    .as_object_mut()
                    .unwrap()
                    .remove("annotations");
            }
        }
        for (at, _) in images(&pod) {
            let (field, i) = at.split_once('/').unwrap();
            let i: usize = i.parse().unwrap();
            if field == "volumes" {
                pod["spec"][field][i]["image"]["reference"] = json!("");
            } else {
                pod["spec"][field][i]["image"] = json!("");
            }
        }
        pod
    };
    assert_eq!(strip(&by_policy), strip(&request.object), "beyond images");
    if got != before && request.sub_resource.is_none() {
        // What the policy rewrote, as the webhook records it.
        let rewritten: Vec<String> = before
            .iter()
            .zip(&got)
            .filter(|(a, b)| a.1 != b.1)
            .map(|(a, _)| a.0.clone())
            .collect();
        let rec = record(&by_policy).expect("a record with every rewrite");
        let rec = rec.as_object().expect("the record is a JSON object");
        assert!(rec.len() >= rewritten.len(), "{rec:?} for {rewritten:?}");
    } else {
        assert_eq!(
            record(&by_policy),
            record(&request.object),
            "no rewrite, no new record"
        );
    }
    // Policy first, webhook second, as the API server calls them: the webhook alone's result.
    let both = pair.both(request);
    assert_eq!(images(&both), want, "policy then webhook");
    assert_eq!(
        record(&both),
        record(&by_webhook),
        "policy then webhook: the record"
    );
    (by_webhook, by_policy)
}

fn pod_of(containers: &[&str]) -> Value {
    let list: Vec<Value> = containers
        .iter()
        .enumerate()
        .map(|(i, image)| json!({"name": format!("c{i}"), "image": image}))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "shop"},
        "spec": {"containers": list},
    })
}

fn pod_fixtures() -> Vec<(String, Value)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in ["tests/fixtures/admission", "tests/fixtures/admission-1.36"] {
        let mut names: Vec<_> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        for path in names {
            let review: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            if review["request"]["kind"]["kind"] == "Pod" {
                out.push((path.display().to_string(), review));
            }
        }
    }
    out
}

#[test]
fn every_captured_pod_comes_out_as_the_webhook_makes_it() {
    let pair = Pair::of("");
    let fixtures = pod_fixtures();
    assert!(fixtures.len() >= 15, "{}", fixtures.len());
    let mut rewritten = 0;
    for (name, review) in fixtures {
        let request = Request::from_review(&review);
        let (by_webhook, by_policy) = check_safe(&pair, &request);
        assert_eq!(by_policy, by_webhook, "{name}");
        if by_policy != request.object {
            rewritten += 1;
        }
    }
    assert!(rewritten >= 8, "only {rewritten} fixtures rewritten");
}

/// References over every branch of the grammar, ordinary and odd.
const TABLE: &[&str] = &[
    "nginx",
    "nginx:1.27",
    "nginx:1.27-alpine",
    "library/nginx:1.27",
    "docker.io/nginx",
    "docker.io/library/nginx:latest",
    "index.docker.io/library/busybox:1.36",
    "index.docker.io/busybox",
    "registry-1.docker.io/nginx:1.27",
    "registry-1.docker.io/bitnami/redis:7",
    "bitnami/redis:7.2.4-debian-12-r0",
    "grafana/loki:3.1.0",
    "quay.io/prometheus/node-exporter",
    "quay.io/prometheus/node-exporter:v1.8.2",
    "quay.io/coreos/etcd:v3.5.15",
    "ghcr.io/fluxcd/source-controller:v1.4.1",
    "ghcr.io/a/b/c/d:e",
    "registry.k8s.io/pause:3.10",
    "registry.k8s.io/ingress-nginx/controller:v1.11.2",
    "public.ecr.aws/eks/aws-load-balancer-controller:v2.8.0",
    "ecr-public.aws.com/argoproj/argocd:v3.1.0",
    "registry.gitlab.com/group/project/image:1",
    "nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "nginx:1.27@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "quay.io/a/b@sha512:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "nginx@sha256:0123",
    "123456789012.dkr.ecr.eu-west-1.amazonaws.com/docker-hub/library/nginx:1.27",
    "123456789012.dkr-ecr.eu-west-1.on.aws/quay/a/b:1",
    "210987654321.dkr.ecr.eu-west-1.amazonaws.com/app:1",
    "registry.example/app:1",
    "docker.io.evil.example/x:1",
    "localhost/x",
    "localhost:5000/app",
    "quay.io:443/a/b",
    "QUAY.IO/a/b",
    "Quay.io/a/b",
    "quay.io/A/b",
    "NGINX",
    "Nginx:1",
    "nginx:",
    "nginx:-x",
    "nginx:a/b",
    ":1.27",
    "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "",
    " nginx",
    "nginx ",
    "ngi nx",
    "/nginx",
    "nginx/",
    "a//b",
    "a..b",
    "a__b",
    "a___b",
    "a--b",
    "a-",
    "_a",
    "a.b/c",
    "[::1]:5000/app",
    "127.0.0.1:5000/app",
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef:1",
    "nginx:\u{e9}t\u{e9}",
    "ngin\u{e9}x",
    "quay.io/a/b:1@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
    "quay.io/a@b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
];

/// References the policy must rewrite exactly as the webhook (under `digests: rewrite` for the
/// pinned ones).
const ORDINARY: &[&str] = &[
    "nginx",
    "nginx:1.27",
    "library/nginx:1.27",
    "docker.io/nginx",
    "index.docker.io/library/busybox:1.36",
    "registry-1.docker.io/nginx:1.27",
    "registry-1.docker.io/bitnami/redis:7",
    "bitnami/redis:7.2.4-debian-12-r0",
    "quay.io/prometheus/node-exporter",
    "ghcr.io/fluxcd/source-controller:v1.4.1",
    "registry.k8s.io/pause:3.10",
    "registry.k8s.io/ingress-nginx/controller:v1.11.2",
    "public.ecr.aws/eks/aws-load-balancer-controller:v2.8.0",
    "ecr-public.aws.com/argoproj/argocd:v3.1.0",
    "registry.gitlab.com/group/project/image:1",
    "nginx:1.27@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "quay.io/a/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
];

#[test]
fn the_grammar_table_is_rewritten_as_the_engine_does_or_left_alone() {
    for extra in [
        "",
        "digests: rewrite\n",
        "digests: skip\n",
        "exclude:\n  images: [\"docker.io/library/busybox*\", \"quay.io/coreos/*\"]\n",
    ] {
        let pair = Pair::of(extra);
        for chunk in TABLE.chunks(9) {
            check_safe(&pair, &Request::create(pod_of(chunk)));
        }
    }
}

#[test]
fn ordinary_references_are_rewritten_exactly_as_the_webhook_rewrites_them() {
    let pair = Pair::of("digests: rewrite\n");
    for image in ORDINARY {
        let request = Request::create(pod_of(&[image]));
        let (by_webhook, by_policy) = check_safe(&pair, &request);
        assert_ne!(
            by_webhook, request.object,
            "{image}: the webhook rewrites it"
        );
        assert_eq!(by_policy, by_webhook, "{image}");
    }
    // All at once, with the record in the Pod's order.
    let request = Request::create(pod_of(ORDINARY));
    let (by_webhook, by_policy) = check_safe(&pair, &request);
    assert_eq!(by_policy, by_webhook);
    assert_eq!(
        by_policy["spec"]["containers"][0]["image"],
        format!("{HOST}/docker-hub/library/nginx")
    );
}

#[test]
fn every_list_and_image_volumes_are_covered_on_create_and_only_changes_on_update() {
    let pair = Pair::of("");
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "annotations": {"a": "b"}},
        "spec": {
            "initContainers": [{"name": "init", "image": "busybox:1.36"}, {"name": "sidecar", "image": "quay.io/a/b:1", "restartPolicy": "Always"}],
            "containers": [{"name": "app", "image": "nginx:1.27"}, {"name": "other", "image": "registry.example/x:1"}],
            "ephemeralContainers": [{"name": "debug", "image": "busybox"}],
            "volumes": [{"name": "models", "image": {"reference": "ghcr.io/org/models:v1"}}, {"name": "data", "emptyDir": {}}],
        },
    });
    let (by_webhook, by_policy) = check_safe(&pair, &Request::create(pod.clone()));
    assert_eq!(by_policy, by_webhook);
    assert_eq!(
        by_policy["metadata"]["annotations"][RECORD],
        "{\"init\":\"busybox:1.36\",\"sidecar\":\"quay.io/a/b:1\",\"app\":\"nginx:1.27\",\"debug\":\"busybox\",\"volume/models\":\"ghcr.io/org/models:v1\"}"
    );

    // An update that changes one image rewrites that one and adds it to the record.
    let old = by_policy.clone();
    let mut new = old.clone();
    new["spec"]["containers"][1]["image"] = json!("ghcr.io/org/other:2");
    new["metadata"]["labels"] = json!({"x": "y"});
    let (by_webhook, by_policy) = check_safe(&pair, &Request::update(old.clone(), new.clone()));
    assert_eq!(by_policy, by_webhook);
    assert_eq!(
        by_policy["spec"]["containers"][1]["image"],
        format!("{HOST}/github/org/other:2")
    );
    assert!(
        by_policy["metadata"]["annotations"][RECORD]
            .as_str()
            .unwrap()
            .ends_with(",\"other\":\"ghcr.io/org/other:2\"}")
    );

    // An update that leaves images alone changes nothing, even upstream ones.
    let mut upstream = pod.clone();
    upstream["metadata"]["labels"] = json!({"x": "y"});
    let (_, by_policy) = check_safe(&pair, &Request::update(pod.clone(), upstream.clone()));
    assert_eq!(by_policy, upstream);
}

#[test]
fn kubectl_debug_rewrites_the_new_ephemeral_container_without_a_record() {
    let pair = Pair::of("");
    let old = pod_of(&["nginx"]);
    let mut new = old.clone();
    new["spec"]["ephemeralContainers"] = json!([{"name": "debugger-x", "image": "busybox:1.36"}]);
    let request = Request::update(old, new.clone()).on("ephemeralcontainers");
    let (by_webhook, by_policy) = check_safe(&pair, &request);
    assert_eq!(by_policy, by_webhook);
    assert_eq!(
        by_policy["spec"]["ephemeralContainers"][0]["image"],
        format!("{HOST}/docker-hub/library/busybox:1.36")
    );
    assert_eq!(by_policy["spec"]["containers"][0]["image"], "nginx");
    assert!(record(&by_policy).is_none());
}

#[test]
fn opt_outs_exclusions_and_fallbacks_are_honoured() {
    let pair = Pair::of(
        "exclude:\n  podLabels: [\"cnpg.io/cluster\", \"team=db\"]\n  ownerKinds: [\"Cluster\"]\n",
    );
    let with = |meta: Value| {
        let mut pod = pod_of(&["nginx", "quay.io/a/b"]);
        for (k, v) in meta.as_object().unwrap() {
            pod["metadata"][k] = v.clone();
        }
        pod
    };
    for meta in [
        json!({"annotations": {"pullthrough.dev/skip": "true"}}),
        json!({"annotations": {"pullthrough.dev/skip": "TRUE"}}),
        json!({"labels": {"cnpg.io/cluster": "x"}}),
        json!({"labels": {"team": "db"}}),
        json!({"ownerReferences": [{"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "name": "c", "uid": "1"}]}),
        json!({"annotations": {"pullthrough.dev/fallback": "[\"c0\",\"c1\"]"}}),
        json!({"annotations": {"pullthrough.dev/fallback": "not json"}}),
    ] {
        let request = Request::create(with(meta.clone()));
        let (by_webhook, by_policy) = check_safe(&pair, &request);
        assert_eq!(by_policy, request.object, "{meta}");
        assert_eq!(by_webhook, request.object, "{meta}");
    }
    for meta in [
        json!({"annotations": {"pullthrough.dev/skip": "false"}}),
        json!({"labels": {"team": "web"}}),
        json!({"annotations": {"pullthrough.dev/fallback": "[\"c1\"]"}}),
        json!({"annotations": {"pullthrough.dev/fallback": "[]"}}),
    ] {
        let request = Request::create(with(meta.clone()));
        let (by_webhook, by_policy) = check_safe(&pair, &request);
        assert_eq!(by_policy, by_webhook, "{meta}");
        assert_ne!(by_policy, request.object, "{meta}");
    }
}

#[test]
fn a_record_already_there_is_extended_as_the_webhook_extends_it() {
    let pair = Pair::of("");
    for earlier in [
        "{}",
        "{\"c0\":\"nginx:1.26\"}",
        "{\"other\":\"quay.io/x/y\"}",
        "{\"z\":\"a\",\"y\":\"b\"}",
    ] {
        let mut pod = pod_of(&["nginx:1.27", "quay.io/a/b"]);
        pod["metadata"]["annotations"] = json!({RECORD: earlier});
        let request = Request::create(pod);
        let (by_webhook, by_policy) = check_safe(&pair, &request);
        assert_eq!(by_policy, by_webhook, "{earlier}");
    }
    // A record the policy cannot extend by text is left to the webhook, with every image.
    for odd in ["", "{ \"a\": \"b\" }", "[1]", "{\"a\":\"\\u00e9\"}"] {
        let mut pod = pod_of(&["nginx:1.27"]);
        pod["metadata"]["annotations"] = json!({RECORD: odd});
        let request = Request::create(pod);
        let (_, by_policy) = check_safe(&pair, &request);
        assert_eq!(by_policy, request.object, "{odd:?}");
    }
}

fn rule(prefix: &str, upstream: &str) -> CacheRule {
    CacheRule {
        prefix: prefix.to_owned(),
        upstream_url: upstream.to_owned(),
        upstream_registry: None,
        credential_arn: None,
        upstream_repository_prefix: None,
        created_at: None,
    }
}

#[test]
fn only_registries_whose_rule_is_usable_are_rewritten() {
    let c = config("");
    let present = [
        rule("quay", "quay.io"),
        rule("docker-hub", "registry-1.docker.io"),
    ];
    let snapshot = rules::snapshot(
        &c,
        &present,
        &std::collections::BTreeMap::new(),
        SystemTime::now(),
    );
    let pair = Pair::new(c, snapshot, DigestSnapshot::EMPTY);
    assert_eq!(pair.plan.registries, ["docker.io", "quay.io"]);
    let request = Request::create(pod_of(&[
        "nginx",
        "quay.io/a/b",
        "ghcr.io/c/d",
        "registry.k8s.io/pause",
    ]));
    let (by_webhook, by_policy) = check_safe(&pair, &request);
    assert_eq!(by_policy, by_webhook);
    assert_eq!(by_policy["spec"]["containers"][2]["image"], "ghcr.io/c/d");

    // Before the rules are known, `ruleCheck.whenUnknown: skip` rewrites nothing.
    let pair = Pair::of("ruleCheck:\n  whenUnknown: skip\n");
    assert!(pair.plan.registries.is_empty());
    let (_, by_policy) = check_safe(&pair, &request);
    assert_eq!(by_policy, request.object);
}

#[test]
fn pinned_digests_follow_the_digest_policy_and_what_the_cache_is_known_to_hold() {
    let image = format!("nginx:1.27@{SHA}");
    let other = format!("quay.io/a/b@{SHA}");
    let request = Request::create(pod_of(&[&image, &other]));

    let pair = Pair::of("digests: skip\n");
    let (_, by_policy) = check_safe(&pair, &request);
    assert_eq!(by_policy, request.object);

    // whenCached: only the digest confirmed in its repository.
    let key = DigestKey::new("docker-hub/library/nginx", SHA);
    let digests = DigestSnapshot::from_answers([(&key, true)]);
    let pair = Pair::new(config(""), RuleSnapshot::unknown(), digests);
    assert_eq!(pair.plan.digests, 1);
    let (by_webhook, by_policy) = check_safe(&pair, &request);
    assert_eq!(by_policy, by_webhook);
    assert_eq!(
        by_policy["spec"]["containers"][0]["image"],
        format!("{HOST}/docker-hub/library/nginx:1.27@{SHA}")
    );
    assert_eq!(by_policy["spec"]["containers"][1]["image"], other);
}

#[test]
fn the_digest_bound_leaves_the_rest_to_the_webhook() {
    let keys: Vec<DigestKey> = (0..5)
        .map(|i| DigestKey::new(format!("quay/a/b{i}"), SHA))
        .collect();
    let digests = DigestSnapshot::from_answers(keys.iter().map(|k| (k, true)));
    let options = Options {
        max_digests: 3,
        ..Options::default()
    };
    let plan = policy::plan(&config(""), &RuleSnapshot::unknown(), &digests, &options).unwrap();
    assert_eq!((plan.digests, plan.digests_left_out), (3, 2));
    let policy = Compiled::mutating(&plan.policy);
    let pod = pod_of(&[
        &format!("quay.io/a/b0@{SHA}"),
        &format!("quay.io/a/b4@{SHA}"),
    ]);
    let out = policy.apply(&Request::create(pod)).unwrap();
    assert_eq!(
        out["spec"]["containers"][0]["image"],
        format!("{HOST}/quay/a/b0@{SHA}")
    );
    assert_eq!(
        out["spec"]["containers"][1]["image"],
        format!("quay.io/a/b4@{SHA}")
    );
}

#[test]
fn aliases_roots_and_upstream_prefixes_route_as_the_engine_does() {
    let pair = Pair::of(
        "registries:\n  docker.io: {prefix: dh, aliases: [mirror.gcr.io]}\n  quay.io: ROOT\n  \
         210987654321.dkr.ecr.us-east-1.amazonaws.com:\n    prefix: team\n    upstreamRepositoryPrefix: shared\n",
    );
    let request = Request::create(pod_of(&[
        "mirror.gcr.io/nginx:1",
        "mirror.gcr.io/bitnami/redis",
        "quay.io/a/b:1",
        "210987654321.dkr.ecr.us-east-1.amazonaws.com/shared/app:1",
        "210987654321.dkr.ecr.us-east-1.amazonaws.com/other/app:1",
        "ghcr.io/x/y",
    ]));
    let (by_webhook, by_policy) = check_safe(&pair, &request);
    assert_eq!(by_policy, by_webhook);
    let got = images(&by_policy);
    assert_eq!(got[0].1, format!("{HOST}/dh/library/nginx:1"));
    assert_eq!(got[2].1, format!("{HOST}/a/b:1"));
    assert_eq!(got[3].1, format!("{HOST}/team/app:1"));
}

#[test]
fn lengths_near_the_limit_are_left_alone_or_rewritten_as_the_engine_does() {
    let pair = Pair::of("");
    for n in [
        150, 180, 190, 195, 196, 197, 198, 199, 200, 210, 240, 250, 254, 255, 256, 300,
    ] {
        let path = format!("a/{}", "b".repeat(n - 2));
        check_safe(
            &pair,
            &Request::create(pod_of(&[&path, &format!("quay.io/{path}:1")])),
        );
    }
}

// === Generated ===

fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-z0-9]{1,8}",
        2 => "[a-z0-9]{1,4}[._-][a-z0-9]{1,4}",
        1 => "[a-z0-9]{1,3}(__|--|---|\\.\\.|_-)[a-z0-9]{1,3}",
        1 => "[A-Za-z0-9._-]{0,6}",
    ]
}

fn host() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        4 => Just(None),
        1 => Just(Some("docker.io".to_owned())),
        1 => Just(Some("index.docker.io".to_owned())),
        1 => Just(Some("registry-1.docker.io".to_owned())),
        2 => Just(Some("quay.io".to_owned())),
        1 => Just(Some("ghcr.io".to_owned())),
        1 => Just(Some("registry.k8s.io".to_owned())),
        1 => Just(Some("public.ecr.aws".to_owned())),
        1 => Just(Some("ecr-public.aws.com".to_owned())),
        1 => Just(Some(HOST.to_owned())),
        1 => Just(Some("localhost:5000".to_owned())),
        1 => Just(Some("quay.io:443".to_owned())),
        1 => Just(Some("Quay.io".to_owned())),
        1 => "[a-z]{1,5}\\.[a-z]{2,3}".prop_map(Some),
    ]
}

fn reference() -> impl Strategy<Value = String> {
    let tag = prop_oneof![
        3 => Just(String::new()),
        3 => "[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}".prop_map(|t| format!(":{t}")),
        1 => "[ -~]{0,4}".prop_map(|t| format!(":{t}")),
    ];
    let digest = prop_oneof![
        4 => Just(String::new()),
        2 => Just(format!("@{SHA}")),
        1 => "[a-f0-9]{60,66}".prop_map(|h| format!("@sha256:{h}")),
        1 => "[ -~]{0,6}".prop_map(|d| format!("@{d}")),
    ];
    (
        host(),
        prop::collection::vec(component(), 1..4),
        tag,
        digest,
    )
        .prop_map(|(host, path, tag, digest)| {
            let mut s = host.map(|h| format!("{h}/")).unwrap_or_default();
            s.push_str(&path.join("/"));
            s.push_str(&tag);
            s.push_str(&digest);
            s
        })
}

fn pod_strategy() -> impl Strategy<Value = Value> {
    let annotations = (
        prop::option::of(prop_oneof![Just("true"), Just("false")]),
        prop::option::of(prop_oneof![Just("[\"c0\"]"), Just("[]"), Just("x")]),
        prop::option::of(prop_oneof![
            Just("{}"),
            Just("{\"c1\":\"busybox\"}"),
            Just("oops")
        ]),
    );
    (
        prop::collection::vec(reference(), 0..3),
        prop::collection::vec(reference(), 1..5),
        prop::collection::vec(reference(), 0..2),
        prop::collection::vec(reference(), 0..2),
        annotations,
    )
        .prop_map(|(init, main, ephemeral, volumes, (skip, fallback, rec))| {
            let list = |prefix: &str, images: &[String]| -> Vec<Value> {
                images
                    .iter()
                    .enumerate()
                    .map(|(i, image)| json!({"name": format!("{prefix}{i}"), "image": image}))
                    .collect()
            };
            let mut spec = json!({"containers": list("c", &main)});
            if !init.is_empty() {
                spec["initContainers"] = json!(list("i", &init));
            }
            if !ephemeral.is_empty() {
                spec["ephemeralContainers"] = json!(list("e", &ephemeral));
            }
            if !volumes.is_empty() {
                let v: Vec<Value> = volumes
                    .iter()
                    .enumerate()
                    .map(|(i, r)| json!({"name": format!("v{i}"), "image": {"reference": r}}))
                    .collect();
                spec["volumes"] = json!(v);
            }
            let mut a = serde_json::Map::new();
            if let Some(s) = skip {
                a.insert("pullthrough.dev/skip".into(), json!(s));
            }
            if let Some(f) = fallback {
                a.insert("pullthrough.dev/fallback".into(), json!(f));
            }
            if let Some(r) = rec {
                a.insert(RECORD.into(), json!(r));
            }
            let mut metadata = json!({"name": "p"});
            if !a.is_empty() {
                metadata["annotations"] = Value::Object(a);
            }
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn generated_pods_are_rewritten_as_the_engine_does_or_left_alone(
        pod in pod_strategy(),
        digests in prop_oneof![Just(""), Just("digests: rewrite\n"), Just("digests: skip\n")],
    ) {
        let pair = Pair::of(digests);
        check_safe(&pair, &Request::create(pod));
    }

    #[test]
    fn generated_updates_touch_only_what_they_change(
        pod in pod_strategy(),
        changed in prop::collection::vec((0usize..5, reference()), 0..3),
    ) {
        let pair = Pair::of("digests: rewrite\n");
        let mut old = pod;
        if let Some(s) = old["spec"].as_object_mut() {
            s.remove("ephemeralContainers");
        }
        let mut new = old.clone();
        for (i, image) in changed {
            let n = new["spec"]["containers"].as_array().map_or(0, Vec::len);
            new["spec"]["containers"][i % n]["image"] = json!(image);
        }
        check_safe(&pair, &Request::update(old, new));
    }
}
