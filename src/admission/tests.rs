//! Tests of the whole admission path: reviews in, patches applied, warnings read.

use std::borrow::Cow;
use std::collections::BTreeMap;

use json_patch::jsonptr::Token;
use serde_json::Value;

use super::patch::{image_pointer, pointer, push_decimal, record_pointer};
use super::plan::truncate;
use super::*;
use crate::config::{Config, Overrides};
use crate::rewrite::{Decision, SkipReason};
use crate::rules::RuleSnapshot;
use base64::Engine as _;
use serde_json::json;

const HOST: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

fn config(extra: &str) -> Config {
    Config::load(
        &format!("accountId: \"123456789012\"\nregion: eu-west-1\n{extra}"),
        &Overrides::default(),
    )
    .unwrap()
}

fn review_json(operation: &str, kind: (&str, &str), object: Value, old: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "kind": {"group": kind.0, "version": "v1", "kind": kind.1},
            "resource": {"group": kind.0, "version": "v1", "resource": "x"},
            "namespace": "shop",
            "operation": operation,
            "object": object,
            "oldObject": old,
        }
    }))
    .unwrap()
}

fn pod(containers: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": containers}})
}

/// Applies the response's patch to `object` and returns the result.
fn patched(response: &AdmissionResponse, mut object: Value) -> Value {
    if let Some(p) = &response.patch {
        let bytes = base64::engine::general_purpose::STANDARD.decode(p).unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        json_patch::patch(&mut object, &patch).unwrap();
    }
    object
}

#[test]
fn object_text_is_what_serde_json_writes() {
    let cases: [&[(&str, &str)]; 4] = [
        &[],
        &[("app", "nginx:1.27")],
        &[
            ("b", "quay.io/x:1"),
            ("a", "ghcr.io/y@sha256:00"),
            ("c", "z"),
        ],
        &[
            ("q\"uote", "back\\slash"),
            ("ctl\u{1}", "tab\t"),
            ("é", "日本"),
        ],
    ];
    for pairs in cases {
        let map: serde_json::Map<String, Value> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
            .collect();
        let text = serde_json::to_string(&map).unwrap();
        assert_eq!(object_text(pairs), text);
        let mut literal = Vec::new();
        write_object_literal(&mut literal, pairs);
        assert_eq!(literal, serde_json::to_vec(&text).unwrap(), "{text}");
    }
}

#[test]
fn rewrites_pod_images_and_records_originals() {
    let c = config("");
    let object = pod(
        json!([{"name": "web", "image": "nginx:1.27"}, {"name": "x", "image": "registry.example/x:1"}]),
    );
    let body = review_json("CREATE", ("", "Pod"), object.clone(), Value::Null);
    let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
    assert_eq!(r.outcome, Outcome::Patched);
    assert_eq!(r.response.patch_type, Some("JSONPatch"));
    let after = patched(&r.response, object);
    assert_eq!(
        after["spec"]["containers"][0]["image"],
        format!("{HOST}/docker-hub/library/nginx:1.27")
    );
    assert_eq!(
        after["spec"]["containers"][1]["image"],
        "registry.example/x:1"
    );
    let record: Value = serde_json::from_str(
        after["metadata"]["annotations"][ORIGINAL_IMAGES_ANNOTATION]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(record, json!({"web": "nginx:1.27"}));
    assert_eq!(r.response.warnings.len(), 1);
    assert!(
        r.response.warnings[0].contains("\"x\""),
        "{:?}",
        r.response.warnings
    );
    assert!(r.response.warnings[0].contains("no pull-through cache rule"));
}

#[test]
fn second_pass_changes_nothing() {
    let c = config("");
    let object = pod(json!([{"name": "web", "image": "nginx:1.27"}]));
    let body = review_json("CREATE", ("", "Pod"), object.clone(), Value::Null);
    let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
    let once = patched(&r.response, object);
    let body = review_json("CREATE", ("", "Pod"), once, Value::Null);
    let again = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
    assert_eq!(again.outcome, Outcome::Allowed);
    assert!(again.response.patch.is_none());
    assert!(again.response.warnings.is_empty());
}

#[test]
fn skip_annotation_opts_a_pod_out() {
    let c = config("");
    let mut object = pod(json!([{"name": "web", "image": "nginx:1.27"}]));
    object["metadata"]["annotations"] = json!({SKIP_ANNOTATION: "true"});
    let body = review_json("CREATE", ("", "Pod"), object, Value::Null);
    let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
    assert!(r.response.patch.is_none());
    assert_eq!(r.plan.skipped, Some(PodSkip::OptedOut));
}

#[test]
fn excluded_labels_and_owner_kinds_leave_the_pod_alone() {
    let c = config("exclude:\n  podLabels: [\"cnpg.io/cluster\"]\n  ownerKinds: [postgresql]\n");
    let mut object = pod(json!([{"name": "db", "image": "postgres:16"}]));
    object["metadata"]["labels"] = json!({"cnpg.io/cluster": "main"});
    let body = review_json("CREATE", ("", "Pod"), object, Value::Null);
    let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
    assert_eq!(
        r.plan.skipped,
        Some(PodSkip::LabelExcluded("cnpg.io/cluster".into()))
    );

    let mut object = pod(json!([{"name": "db", "image": "postgres:16"}]));
    object["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "acid.zalan.do/v1", "kind": "postgresql", "name": "x", "uid": "1"}]);
    let body = review_json("CREATE", ("", "Pod"), object, Value::Null);
    let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
    assert_eq!(
        r.plan.skipped,
        Some(PodSkip::OwnerExcluded("postgresql".into()))
    );
    assert!(r.response.patch.is_none());
    assert_eq!(r.response.warnings.len(), 1);
}

#[test]
fn update_rewrites_only_images_the_update_changes() {
    let c = config("");
    let old = pod(json!([{"name": "a", "image": "nginx:1.27"}, {"name": "b", "image": "redis:7"}]));
    let new = pod(json!([{"name": "a", "image": "nginx:1.27"}, {"name": "b", "image": "redis:8"}]));
    let body = review_json("UPDATE", ("", "Pod"), new.clone(), old);
    let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
    let after = patched(&r.response, new);
    assert_eq!(after["spec"]["containers"][0]["image"], "nginx:1.27");
    assert_eq!(
        after["spec"]["containers"][1]["image"],
        format!("{HOST}/docker-hub/library/redis:8")
    );
    assert!(r.response.warnings.is_empty(), "{:?}", r.response.warnings);
}

#[test]
fn update_that_leaves_images_alone_is_silent() {
    let c = config("");
    let old = pod(json!([{"name": "a", "image": "registry.example/x:1"}]));
    let mut new = old.clone();
    new["metadata"]["labels"] = json!({"team": "shop"});
    let body = review_json("UPDATE", ("", "Pod"), new, old);
    let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
    assert!(r.response.patch.is_none());
    assert!(r.response.warnings.is_empty(), "{:?}", r.response.warnings);
}

#[test]
fn update_merges_the_original_images_record() {
    let c = config("");
    let mut old = pod(
        json!([{"name": "a", "image": format!("{HOST}/docker-hub/library/nginx:1.27")}, {"name": "b", "image": "redis:7"}]),
    );
    old["metadata"]["annotations"] = json!({ORIGINAL_IMAGES_ANNOTATION: "{\"a\":\"nginx:1.27\"}"});
    let mut new = old.clone();
    new["spec"]["containers"][1]["image"] = json!("redis:8");
    let body = review_json("UPDATE", ("", "Pod"), new.clone(), old);
    let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
    let after = patched(&r.response, new);
    let record: Value = serde_json::from_str(
        after["metadata"]["annotations"][ORIGINAL_IMAGES_ANNOTATION]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(record, json!({"a": "nginx:1.27", "b": "redis:8"}));
}

#[test]
fn workloads_get_a_preview_by_default_and_a_patch_when_asked() {
    let deploy = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}
    });
    let body = review_json(
        "CREATE",
        ("apps", "Deployment"),
        deploy.clone(),
        Value::Null,
    );
    let c = config("");
    let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
    assert!(r.response.patch.is_none());
    assert!(
        r.response
            .warnings
            .iter()
            .any(|w| w.contains(&format!("{HOST}/docker-hub/library/nginx:1.27"))),
        "{:?}",
        r.response.warnings
    );

    let c = config("workloads: rewrite\n");
    let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
    let after = patched(&r.response, deploy);
    assert_eq!(
        after["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("{HOST}/docker-hub/library/nginx:1.27")
    );
    assert!(
        after["spec"]["template"]["metadata"]["annotations"][ORIGINAL_IMAGES_ANNOTATION]
            .is_string()
    );
}

#[test]
fn cronjob_template_without_metadata_gets_one() {
    let cj = json!({
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
        "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "job", "image": "busybox:1.36"}]}}}}}
    });
    let body = review_json("CREATE", ("batch", "CronJob"), cj.clone(), Value::Null);
    let c = config("workloads: rewrite\n");
    let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
    let after = patched(&r.response, cj);
    let tpl = &after["spec"]["jobTemplate"]["spec"]["template"];
    assert_eq!(
        tpl["spec"]["containers"][0]["image"],
        format!("{HOST}/docker-hub/library/busybox:1.36")
    );
    assert!(tpl["metadata"]["annotations"][ORIGINAL_IMAGES_ANNOTATION].is_string());
}

#[test]
fn other_kinds_and_operations_are_allowed_untouched() {
    let c = config("");
    let body = review_json(
        "CREATE",
        ("", "Service"),
        json!({"metadata": {}}),
        Value::Null,
    );
    let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
    assert_eq!(r.outcome, Outcome::Allowed);
    let body = review_json("DELETE", ("", "Pod"), Value::Null, pod(json!([])));
    assert_eq!(
        review(&c, &RuleSnapshot::unknown(), &body).unwrap().outcome,
        Outcome::Allowed
    );
}

#[test]
fn unreadable_bodies() {
    let c = config("");
    assert!(review(&c, &RuleSnapshot::unknown(), b"not json").is_err());
    assert!(review(&c, &RuleSnapshot::unknown(), b"{}").is_err());
    // A uid can be read, but the object has the wrong shape: an invalid response.
    let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u-2", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": "CREATE",
            "object": {"spec": {"containers": 7}}}});
    let body = serde_json::to_vec(&body).unwrap();
    let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
    assert_eq!(r.outcome, Outcome::Invalid);
    assert_eq!(r.response.uid, "u-2");
    assert!(!r.response.allowed);
    assert_eq!(r.response.status.as_ref().unwrap().code, 400);
}

#[test]
fn v1beta1_reviews_are_refused() {
    let mut body: Value = serde_json::from_slice(&review_json(
        "CREATE",
        ("", "Pod"),
        pod(json!([])),
        Value::Null,
    ))
    .unwrap();
    body["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let c = config("");
    let body = serde_json::to_vec(&body).unwrap();
    let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
    assert_eq!(r.outcome, Outcome::Invalid);
}

#[test]
fn response_uses_the_documented_wire_form() {
    let c = config("");
    let body = review_json(
        "CREATE",
        ("", "Pod"),
        pod(json!([{"name": "a", "image": "nginx"}])),
        Value::Null,
    );
    let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
    let wire: Value = serde_json::from_slice(&r.response.into_review().to_vec()).unwrap();
    assert_eq!(wire["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(wire["kind"], "AdmissionReview");
    assert_eq!(wire["response"]["uid"], "u-1");
    assert_eq!(wire["response"]["allowed"], true);
    assert_eq!(wire["response"]["patchType"], "JSONPatch");
    assert!(wire["response"]["patch"].is_string());
}

#[test]
fn a_missing_rule_leaves_the_image_with_a_warning_until_it_appears() {
    use crate::ecr::CacheRule;
    use std::time::SystemTime;
    let c = config("registries:\n  docker.io: docker-hub\n");
    let body = review_json(
        "CREATE",
        ("", "Pod"),
        pod(json!([{"name": "web", "image": "nginx:1.27"}])),
        Value::Null,
    );
    let missing = crate::rules::snapshot(&c, &[], &BTreeMap::new(), SystemTime::now());
    let r = review(&c, &missing, &body).unwrap();
    assert!(r.response.patch.is_none());
    assert_eq!(r.response.warnings.len(), 1);
    assert!(
        r.response.warnings[0].contains("rule \"docker-hub\" is missing"),
        "{:?}",
        r.response.warnings
    );

    let present = crate::rules::snapshot(
        &c,
        &[CacheRule {
            prefix: "docker-hub".into(),
            upstream_url: "registry-1.docker.io".into(),
            upstream_registry: Some("docker-hub".into()),
            credential_arn: None,
            upstream_repository_prefix: None,
            created_at: None,
        }],
        &BTreeMap::new(),
        SystemTime::now(),
    );
    let r = review(&c, &present, &body).unwrap();
    assert_eq!(r.outcome, Outcome::Patched);
}

#[test]
fn refusals_never_echo_pod_env_or_annotation_values() {
    let c = config("");
    let secret = "s3cr3t-hunter2";
    let object = json!({"metadata": {"name": "p", "annotations": {"note": secret}},
        "spec": {"containers": [{"name": "a", "image": "nginx", "env": [{"name": "PASSWORD", "value": secret}]}]}});
    let mut broken: Vec<Value> = Vec::new();
    // uid readable: an invalid response; then no uid: HTTP 400. Each body is malformed
    // somewhere other than the secret.
    for (field, value) in [
        ("dryRun", json!("yes")),
        ("operation", json!(7)),
        ("kind", json!("Pod")),
        ("uid", json!(42)),
    ] {
        let mut body: Value = serde_json::from_slice(&review_json(
            "CREATE",
            ("", "Pod"),
            object.clone(),
            Value::Null,
        ))
        .unwrap();
        body["request"][field] = value;
        broken.push(body);
    }
    let mut wrong_image = object.clone();
    wrong_image["spec"]["containers"][0]["image"] = json!({"ref": secret});
    broken.push(
        serde_json::from_slice(&review_json(
            "CREATE",
            ("", "Pod"),
            wrong_image,
            Value::Null,
        ))
        .unwrap(),
    );
    for body in broken {
        let text = match review(
            &c,
            &RuleSnapshot::unknown(),
            &serde_json::to_vec(&body).unwrap(),
        ) {
            Ok(r) => {
                assert_eq!(r.outcome, Outcome::Invalid, "{body}");
                r.response.status.unwrap().message
            }
            Err(e) => e.to_string(),
        };
        assert!(!text.contains(secret), "{text}");
    }
}

#[test]
fn image_pointers_match_the_token_by_token_form() {
    for target in [TargetKind::Pod, TargetKind::Workload, TargetKind::CronJob] {
        for kind in [
            ContainerKind::Init,
            ContainerKind::Main,
            ContainerKind::Ephemeral,
        ] {
            for index in [0, 7, 12] {
                let tokens = [
                    Token::new("spec"),
                    Token::new(kind.field()),
                    Token::from(index),
                    Token::new("image"),
                ];
                assert_eq!(
                    image_pointer(target.pod_path(), kind, index),
                    pointer(target.pod_path(), &tokens)
                );
            }
        }
    }
}

#[test]
fn record_pointers_and_indexes_match_the_token_by_token_form() {
    for target in [TargetKind::Pod, TargetKind::Workload, TargetKind::CronJob] {
        let tokens = [
            Token::new("metadata"),
            Token::new("annotations"),
            Token::new(ORIGINAL_IMAGES_ANNOTATION),
        ];
        assert_eq!(
            record_pointer(target.pod_path()),
            pointer(target.pod_path(), &tokens)
        );
    }
    for n in [0, 1, 9, 10, 99, 100, 12_345, usize::MAX] {
        let mut s = String::new();
        push_decimal(&mut s, n);
        assert_eq!(s, n.to_string());
    }
}

#[test]
fn unread_fields_with_invalid_utf8_do_not_stop_the_rewrite() {
    // Found by fuzzing: serde skips the fields the handler does not read without checking
    // their UTF-8, so such a body is answered like any other (the API server never sends
    // one). A bad byte in a field that is read makes the request unreadable instead.
    let c = config("");
    let mut body = review_json(
        "CREATE",
        ("", "Pod"),
        json!({"metadata": {"name": "p", "managedFields": [{"manager": "XX"}]},
               "spec": {"containers": [{"name": "a", "image": "nginx"}]}}),
        Value::Null,
    );
    let at = body.windows(2).position(|w| w == b"XX").unwrap();
    body[at] = 0x92;
    let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
    assert_eq!(r.outcome, Outcome::Patched);

    let mut body = review_json(
        "CREATE",
        ("", "Pod"),
        pod(json!([{"name": "a", "image": "ngXnx"}])),
        Value::Null,
    );
    let at = body.windows(4).position(|w| w == b"ngXn").unwrap();
    body[at + 2] = 0x92;
    assert!(review(&c, &RuleSnapshot::unknown(), &body).is_err());
}

#[test]
fn hand_written_json_is_what_serde_writes() {
    let mut response = AdmissionResponse::allow("u-\"1\"\u{1}");
    let plain = response.clone().into_review();
    assert_eq!(plain.to_vec(), serde_json::to_vec(&plain).unwrap());
    response.patch_type = Some("JSONPatch");
    response.patch = Some("W3sib3AiOiJhZGQifV0=".to_owned());
    response.warnings = vec!["a \"quoted\" \\ warning\n".to_owned(), "é plain".to_owned()];
    response
        .audit_annotations
        .insert("rewritten-images".to_owned(), "4".to_owned());
    response
        .audit_annotations
        .insert("a\tb".to_owned(), "\u{7f}".to_owned());
    let full = response.into_review();
    let want = serde_json::to_vec(&full).unwrap();
    // The derived form writes the patch through a raw value: the same text.
    assert_eq!(full.to_vec(), want);
    let refused = AdmissionResponse::invalid("u", "bad \"body\"").into_review();
    assert_eq!(refused.to_vec(), serde_json::to_vec(&refused).unwrap());
}

#[test]
fn the_written_patch_is_what_serde_writes_for_the_operations() {
    let c = config("workloads: rewrite\ndigests: rewrite\n");
    let containers = json!([
        {"name": "a", "image": "nginx:1.27"},
        {"name": "we\"ird\\", "image": "quay.io/x/y:1"},
        {"name": "c", "image": "ghcr.io/o/p:2@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
    ]);
    let pods = [
        json!({"spec": {"containers": containers.clone()}}),
        json!({"metadata": {"name": "p"}, "spec": {"containers": containers.clone()}}),
        json!({"metadata": {"annotations": {"x": "y"}}, "spec": {"containers": containers.clone()}}),
        json!({"metadata": {"annotations": {ORIGINAL_IMAGES_ANNOTATION: "{\"old\":\"busybox\"}"}},
               "spec": {"initContainers": containers.clone(), "containers": containers.clone()}}),
        json!({"spec": {"containers": [{"name": "a", "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/x:1"}]}}),
    ];
    let mut planned = 0;
    for pod in pods {
        for (target, object) in [
            (TargetKind::Pod, pod.clone()),
            (
                TargetKind::Workload,
                json!({"spec": {"template": pod.clone()}}),
            ),
            (
                TargetKind::CronJob,
                json!({"spec": {"jobTemplate": {"spec": {"template": pod.clone()}}}}),
            ),
        ] {
            let text = object.to_string();
            let view: ObjectView<'_> = serde_json::from_str(&text).unwrap();
            for scope in [Scope::Create, Scope::EphemeralContainers] {
                let plan = plan_object(
                    &c,
                    &RuleSnapshot::unknown(),
                    &crate::digests::DigestSnapshot::EMPTY,
                    target,
                    &view,
                    None,
                    scope,
                );
                let operations = plan.operations();
                let mut bytes = Vec::new();
                plan.write_patch(&mut bytes);
                assert_eq!(
                    String::from_utf8(bytes).unwrap(),
                    serde_json::to_string(&operations).unwrap(),
                    "{target:?} {scope:?} {text}"
                );
                assert_eq!(plan.changes(), !operations.is_empty());
                planned += operations.len();
            }
        }
    }
    assert!(planned > 20, "the cases must rewrite: {planned} operations");
}

#[test]
fn patch_encoding_is_standard_base64() {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for len in 0..200 {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect();
        assert_eq!(
            base64_simd::STANDARD.encode_to_string(&bytes),
            base64::engine::general_purpose::STANDARD.encode(&bytes)
        );
    }
}

#[test]
fn optional_strings_are_borrowed_unless_escaped() {
    let meta: MetaView<'_> = serde_json::from_str(
        r#"{"name": "p", "generateName": "p-\u0041", "labels": {"a": "b"}, "annotations": {"k\n": "v"}}"#,
    )
    .unwrap();
    assert!(matches!(meta.name, Some(Cow::Borrowed("p"))));
    assert!(matches!(meta.generate_name.as_ref(), Some(Cow::Owned(s)) if s == "p-A"));
    let labels = meta.labels.unwrap();
    assert!(matches!(labels.get("a"), Some(Text(Cow::Borrowed("b")))));
    assert_eq!(
        meta.annotations.unwrap().get("k\n").map(|v| &*v.0),
        Some("v")
    );
    let err = serde_json::from_str::<MetaView<'_>>(r#"{"name": 7}"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid type: integer `7`, expected a string at line 1 column 10"
    );
}

#[test]
fn long_warnings_are_truncated() {
    let s = truncate("é".repeat(300));
    assert!(s.len() <= WARNING_MAX_LEN);
    assert!(s.ends_with("..."));
}

/// A captured AdmissionReview and the object it carries.
fn fixture(name: &str) -> (Vec<u8>, Value) {
    let path = format!(
        "{}/tests/fixtures/admission-1.36/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let body = std::fs::read(path).unwrap();
    let review: Value = serde_json::from_slice(&body).unwrap();
    (body, review["request"]["object"].clone())
}

/// The same request with `object` in place of the captured one.
fn with_object(body: &[u8], object: Value) -> Vec<u8> {
    let mut review: Value = serde_json::from_slice(body).unwrap();
    review["request"]["object"] = object;
    serde_json::to_vec(&review).unwrap()
}

#[test]
fn image_volumes_are_rewritten_recorded_and_reported_on_pod_create() {
    let c = config("");
    let (body, object) = fixture("pod-create-image-volumes");
    let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
    assert_eq!(r.outcome, Outcome::Patched);
    let after = patched(&r.response, object);
    let volumes = &after["spec"]["volumes"];
    assert_eq!(
        volumes[0]["image"]["reference"],
        format!("{HOST}/quay/example/models:v3")
    );
    // Pinned by digest: left on its upstream under the default `digests: skip`, and said so.
    assert_eq!(
        volumes[1]["image"]["reference"],
        "ghcr.io/example/tools:1.0@sha256:4f5c3e2a1b0d9c8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e"
    );
    assert_eq!(volumes[1]["image"]["pullPolicy"], "IfNotPresent");
    assert_eq!(volumes[2], json!({"name": "scratch", "emptyDir": {}}));
    assert_eq!(
        after["spec"]["containers"][0]["image"],
        format!("{HOST}/docker-hub/library/nginx:1.27")
    );
    let record: Value = serde_json::from_str(
        after["metadata"]["annotations"][ORIGINAL_IMAGES_ANNOTATION]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(record["volume/models"], "quay.io/example/models:v3");
    assert_eq!(record["app"], "nginx:1.27");
    assert!(record.get("volume/tools").is_none());
    assert!(
        r.response
            .warnings
            .iter()
            .any(|w| w.contains("image volume \"tools\"") && w.contains("pinned by digest")),
        "{:?}",
        r.response.warnings
    );
    let kinds: Vec<_> = r.plan.images.iter().map(|i| i.kind).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == ContainerKind::ImageVolume)
            .count(),
        2
    );

    // A second pass over its own output changes nothing.
    let second = with_object(&body, after);
    let again = review(&c, &RuleSnapshot::unknown(), &second).unwrap();
    assert_eq!(again.outcome, Outcome::Allowed);
    assert!(again.response.patch.is_none());
}

#[test]
fn image_volumes_follow_the_same_decisions_as_containers() {
    let (body, object) = fixture("pod-create-image-volumes");
    // `digests: rewrite` takes the pinned volume too; an exclusion keeps the other.
    let c = config("digests: rewrite\nexclude:\n  images: [\"quay.io/example/*\"]\n");
    let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
    let after = patched(&r.response, object);
    assert_eq!(
        after["spec"]["volumes"][0]["image"]["reference"],
        "quay.io/example/models:v3"
    );
    assert!(
        after["spec"]["volumes"][1]["image"]["reference"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{HOST}/github/example/tools:1.0@sha256:"))
    );
}

#[test]
fn image_volumes_of_a_dry_run_and_of_a_replicaset_pod_are_rewritten() {
    let c = config("");
    for (name, volume, want) in [
        (
            "pod-create-dryrun-image-volumes",
            0,
            "quay/example/models:v3",
        ),
        (
            "pod-create-by-replicaset-controller-image-volume",
            0,
            "docker-hub/example/assets:2026.11",
        ),
    ] {
        let (body, object) = fixture(name);
        let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
        let after = patched(&r.response, object);
        assert_eq!(
            after["spec"]["volumes"][volume]["image"]["reference"],
            format!("{HOST}/{want}"),
            "{name}"
        );
    }
}

#[test]
fn pod_updates_leave_image_volumes_alone() {
    let c = config("");
    for name in [
        "pod-update-label-image-volumes",
        "pod-update-dryrun-apply-image-volumes",
    ] {
        let (body, _) = fixture(name);
        let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
        assert!(r.response.patch.is_none(), "{name}");
        assert!(
            r.plan
                .images
                .iter()
                .all(|i| i.kind != ContainerKind::ImageVolume),
            "{name}"
        );
    }
}

#[test]
fn workload_templates_carry_image_volumes() {
    let (body, object) = fixture("deployment-create-image-volume");
    let (plain, rewriting) = (config(""), config("workloads: rewrite\n"));
    let preview = review(&plain, &RuleSnapshot::unknown(), &body).unwrap();
    assert!(preview.response.patch.is_none());
    assert!(
        preview
            .response
            .warnings
            .iter()
            .any(|w| w.contains("image volume \"assets\"")),
        "{:?}",
        preview.response.warnings
    );
    let r = review(&rewriting, &RuleSnapshot::unknown(), &body).unwrap();
    let after = patched(&r.response, object);
    let template = &after["spec"]["template"];
    assert_eq!(
        template["spec"]["volumes"][0]["image"]["reference"],
        format!("{HOST}/docker-hub/example/assets:2026.11")
    );
    let record: Value = serde_json::from_str(
        template["metadata"]["annotations"][ORIGINAL_IMAGES_ANNOTATION]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(record["volume/assets"], "docker.io/example/assets:2026.11");
}

#[test]
fn a_workload_update_rewrites_only_the_image_volume_it_changes() {
    let c = config("workloads: rewrite\n");
    let template = |reference: &str| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"template": {"metadata": {"labels": {"a": "b"}}, "spec": {
                "containers": [{"name": "app", "image": "registry.example/app:1"}],
                "volumes": [{"name": "data", "image": {"reference": reference}}]}}}})
    };
    let old = template("quay.io/x/data:1");
    let same = review_json("UPDATE", ("apps", "Deployment"), old.clone(), old.clone());
    let r = review(&c, &RuleSnapshot::unknown(), &same).unwrap();
    assert!(r.response.patch.is_none());
    let new = template("quay.io/x/data:2");
    let changed = review_json("UPDATE", ("apps", "Deployment"), new.clone(), old);
    let r = review(&c, &RuleSnapshot::unknown(), &changed).unwrap();
    let after = patched(&r.response, new);
    assert_eq!(
        after["spec"]["template"]["spec"]["volumes"][0]["image"]["reference"],
        format!("{HOST}/quay/x/data:2")
    );
}

#[test]
fn image_volume_pointers_match_the_token_by_token_form() {
    for base in [&[][..], &["spec", "template"][..]] {
        let tokens = [
            Token::new("spec"),
            Token::new("volumes"),
            Token::from(3usize),
            Token::new("image"),
            Token::new("reference"),
        ];
        assert_eq!(
            image_pointer(base, ContainerKind::ImageVolume, 3),
            pointer(base, &tokens)
        );
    }
}

#[test]
fn containers_fallen_back_keep_their_original_image_on_update_and_create() {
    let c = config("");
    // The reconciler's patch: a's image back to its original, and the annotation.
    let mut old = pod(json!([
        {"name": "a", "image": format!("{HOST}/docker-hub/library/nginx:1.27")},
        {"name": "b", "image": format!("{HOST}/docker-hub/library/redis:7")},
    ]));
    old["metadata"]["annotations"] = json!({
        ORIGINAL_IMAGES_ANNOTATION: "{\"a\":\"nginx:1.27\",\"b\":\"redis:7\"}"
    });
    let mut new = old.clone();
    new["spec"]["containers"][0]["image"] = json!("nginx:1.27");
    new["metadata"]["annotations"][FALLBACK_ANNOTATION] = json!("[\"a\"]");
    let body = review_json("UPDATE", ("", "Pod"), new.clone(), old.clone());
    let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
    assert!(r.response.patch.is_none(), "{:?}", r.response);
    assert_eq!(
        r.plan.images[0].decision,
        Decision::Skip(SkipReason::FallenBack)
    );
    assert!(
        r.response.warnings[0].contains("pullthrough.dev/fallback"),
        "{:?}",
        r.response.warnings
    );

    // A later update that changes b rewrites b and still leaves a alone.
    let mut later = new.clone();
    later["spec"]["containers"][1]["image"] = json!("redis:8");
    let body = review_json("UPDATE", ("", "Pod"), later.clone(), new.clone());
    let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
    let after = patched(&r.response, later);
    assert_eq!(after["spec"]["containers"][0]["image"], "nginx:1.27");
    assert_eq!(
        after["spec"]["containers"][1]["image"],
        format!("{HOST}/docker-hub/library/redis:8")
    );

    // A Pod created with the annotation (a copy of a fallen-back Pod) keeps it too.
    let body = review_json("CREATE", ("", "Pod"), new.clone(), Value::Null);
    let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
    assert_eq!(
        patched(&r.response, new)["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
}

#[test]
fn an_unreadable_fallback_annotation_leaves_every_image_alone() {
    let c = config("");
    let mut object = pod(json!([{"name": "a", "image": "nginx:1.27"}]));
    object["metadata"]["annotations"] = json!({FALLBACK_ANNOTATION: "a,b"});
    let body = review_json("CREATE", ("", "Pod"), object, Value::Null);
    let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
    assert!(r.response.patch.is_none());
    assert_eq!(
        r.plan.images[0].decision,
        Decision::Skip(SkipReason::FallbackUnreadable)
    );
    // Another container name in the list does not protect this one.
    let mut object = pod(json!([{"name": "a", "image": "nginx:1.27"}]));
    object["metadata"]["annotations"] = json!({FALLBACK_ANNOTATION: "[\"b\"]"});
    let body = review_json("CREATE", ("", "Pod"), object, Value::Null);
    let r = review(&c, &RuleSnapshot::unknown(), &body).unwrap();
    assert!(r.response.patch.is_some());
}
