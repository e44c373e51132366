//! Properties of the admission pipeline over generated input: references round-trip, a
//! rewrite is a valid ECR image within every length limit or the image is left alone, a
//! second pass changes nothing, and the patch applied to a Pod changes only container images
//! and the `pullthrough.dev/original-images` annotation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use base64::Engine as _;
use proptest::prelude::*;
use pullthrough::admission::{self, ORIGINAL_IMAGES_ANNOTATION, Outcome};
use pullthrough::config::{Config, ECR_REPOSITORY_MAX_LEN, Overrides};
use pullthrough::reference::{NAME_MAX_LEN, Reference};
use pullthrough::rewrite::{Decision, SkipReason, decide};
use pullthrough::rules::RuleSnapshot;
use serde_json::{Map, Value, json};

const HOST: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

/// The default map, and one with every option on and the longest prefix ECR allows.
fn configs() -> Vec<Config> {
    [
        "accountId: \"123456789012\"\nregion: eu-west-1\n",
        "accountId: \"123456789012\"\nregion: eu-west-1\ndigests: rewrite\nworkloads: rewrite\n\
         registries:\n  docker.io: docker-hub\n  quay.io: quay\n  ghcr.io: abcdefghijklmnopqrstuvwxyz0123\n\
         \x20 111122223333.dkr.ecr.us-east-1.amazonaws.com:\n    prefix: ROOT\n    upstreamRepositoryPrefix: team\n\
         exclude:\n  images: [\"ghcr.io/cloudnative-pg/*\"]\n",
    ]
    .iter()
    .map(|y| Config::load(y, &Overrides::default()).unwrap())
    .collect()
}

/// Image references: mostly valid, with registries of the map, the target registry, ports,
/// long paths near every length limit, tags and digests; sometimes plain noise.
fn image() -> impl Strategy<Value = String> {
    let registry = prop_oneof![
        Just(String::new()),
        Just("docker.io/".to_owned()),
        Just("index.docker.io/".to_owned()),
        Just("quay.io/".to_owned()),
        Just("ghcr.io/".to_owned()),
        Just("registry.k8s.io/".to_owned()),
        Just("111122223333.dkr.ecr.us-east-1.amazonaws.com/".to_owned()),
        Just(format!("{HOST}/")),
        Just("localhost:5000/".to_owned()),
        "[a-z]{1,8}\\.[a-z]{2,4}(:[0-9]{1,5})?/",
    ];
    let component = prop_oneof![
        4 => "[a-z0-9]{1,8}([._-][a-z0-9]{1,4})?",
        1 => (1usize..=120).prop_map(|n| "a".repeat(n)),
        1 => Just("team".to_owned()),
    ];
    let path = prop::collection::vec(component, 1..5).prop_map(|c| c.join("/"));
    let tag = prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}");
    let digest = prop::option::of("[a-f0-9]{64}");
    let built = (registry, path, tag, digest).prop_map(|(r, p, t, d)| {
        let mut s = format!("{r}{p}");
        if let Some(t) = t {
            s = format!("{s}:{t}");
        }
        if let Some(d) = d {
            s = format!("{s}@sha256:{d}");
        }
        s
    });
    prop_oneof![8 => built, 1 => "[a-zA-Z0-9:/@._\\[\\]-]{0,60}", 1 => "\\PC{0,30}"]
}

proptest! {
    #[test]
    fn any_parsed_reference_prints_and_parses_back_to_itself(s in image()) {
        if let Ok(r) = Reference::parse(&s) {
            let printed = r.to_string();
            let again = Reference::parse(&printed).unwrap();
            prop_assert_eq!(&again, &r);
            prop_assert_eq!(again.to_string(), printed);
        }
    }

    #[test]
    fn a_rewrite_is_a_valid_ecr_image_within_every_limit_or_the_image_is_left_alone(
        s in image(),
    ) {
        for config in configs() {
            let rules = RuleSnapshot::unknown();
            match decide(&config, &rules, &s).decision {
                Decision::Rewrite(new) => {
                    let original = Reference::parse(&s).unwrap();
                    let rewritten = Reference::parse(&new)
                        .unwrap_or_else(|e| panic!("{s:?} rewritten to invalid {new:?}: {e}"));
                    prop_assert_eq!(rewritten.registry(), HOST);
                    prop_assert!(rewritten.repository().len() <= ECR_REPOSITORY_MAX_LEN);
                    prop_assert!(HOST.len() + 1 + rewritten.repository().len() <= NAME_MAX_LEN);
                    prop_assert_eq!(rewritten.tag(), original.tag());
                    prop_assert_eq!(rewritten.digest(), original.digest());
                    // Idempotent: the rewritten image is left as it is.
                    prop_assert_eq!(
                        decide(&config, &rules, &new).decision,
                        Decision::Skip(SkipReason::AlreadyRewritten)
                    );
                }
                Decision::Skip(_) => {}
            }
        }
    }
}

// === Whole Pods ===

#[derive(Debug, Clone)]
enum Meta {
    Absent,
    NoAnnotations,
    WithAnnotations(Vec<(String, String)>),
}

fn meta() -> impl Strategy<Value = Meta> {
    let annotation = prop_oneof![
        ("[a-z./-]{1,20}", "[ -~]{0,20}"),
        Just((
            ORIGINAL_IMAGES_ANNOTATION.to_owned(),
            "{\"old\":\"busybox\"}".to_owned()
        )),
        Just((ORIGINAL_IMAGES_ANNOTATION.to_owned(), "not json".to_owned())),
    ];
    prop_oneof![
        Just(Meta::Absent),
        Just(Meta::NoAnnotations),
        prop::collection::vec(annotation, 0..4).prop_map(Meta::WithAnnotations),
    ]
}

fn containers() -> impl Strategy<Value = Vec<(String, Option<String>)>> {
    prop::collection::vec(("[a-z]{1,6}", prop::option::weighted(0.9, image())), 0..4)
}

fn pod(
    meta: &Meta,
    init: &[(String, Option<String>)],
    main: &[(String, Option<String>)],
    ephemeral: &[(String, Option<String>)],
) -> Value {
    let list = |prefix: &str, items: &[(String, Option<String>)]| {
        Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, (name, image))| {
                    let mut c = json!({
                        "name": format!("{prefix}{i}-{name}"),
                        "env": [{"name": "PASSWORD", "value": "hunter2"}],
                        "resources": {},
                    });
                    if let Some(image) = image {
                        c["image"] = json!(image);
                    }
                    c
                })
                .collect(),
        )
    };
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "spec": {
            "containers": list("c", main),
            "restartPolicy": "Always",
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
        "status": {},
    });
    if !init.is_empty() {
        pod["spec"]["initContainers"] = list("i", init);
    }
    if !ephemeral.is_empty() {
        pod["spec"]["ephemeralContainers"] = list("e", ephemeral);
    }
    match meta {
        Meta::Absent => {}
        Meta::NoAnnotations => pod["metadata"] = json!({"name": "p", "labels": {"app": "x"}}),
        Meta::WithAnnotations(a) => {
            let annotations: Map<String, Value> =
                a.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            pod["metadata"] = json!({"name": "p", "annotations": annotations});
        }
    }
    pod
}

fn review_body(object: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "prop",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "operation": "CREATE",
            "object": object,
        }
    }))
    .unwrap()
}

/// Applies the response's patch, if any, to `object`.
fn apply(response: &admission::AdmissionResponse, object: &Value) -> Value {
    let mut out = object.clone();
    if let Some(b64) = &response.patch {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        json_patch::patch(&mut out, &patch).unwrap();
    }
    out
}

/// `object` with every container image and the originals annotation taken out, and empty
/// `annotations`/`metadata` left by that removal dropped.
fn without_images_and_record(object: &Value, had: &Value) -> Value {
    let mut v = object.clone();
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        if let Some(items) = v["spec"].get_mut(list).and_then(Value::as_array_mut) {
            for c in items {
                c.as_object_mut().unwrap().remove("image");
            }
        }
    }
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove(ORIGINAL_IMAGES_ANNOTATION);
            if a.is_empty() && had["metadata"].get("annotations").is_none() {
                meta.remove("annotations");
            }
        }
        if meta.is_empty() && had.get("metadata").is_none() {
            v.as_object_mut().unwrap().remove("metadata");
        }
    }
    v
}

fn images_of(object: &Value) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in object["spec"][list].as_array().into_iter().flatten() {
            out.push((
                c["name"].as_str().unwrap().to_owned(),
                c["image"].as_str().map(str::to_owned),
            ));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn the_patch_changes_only_images_and_the_record_and_a_second_pass_changes_nothing(
        meta in meta(),
        init in containers(),
        main in containers(),
        ephemeral in containers(),
        which in 0usize..2,
    ) {
        let config = &configs()[which];
        let rules = RuleSnapshot::unknown();
        let object = pod(&meta, &init, &main, &ephemeral);
        let body = review_body(&object);
        let reviewed = admission::review(config, &rules, &body).unwrap();
        prop_assert!(reviewed.response.allowed);
        let after = apply(&reviewed.response, &object);

        // Nothing but images and the record changed.
        prop_assert_eq!(
            without_images_and_record(&after, &object),
            without_images_and_record(&object, &object)
        );

        // Each image is either unchanged, or the decision's rewrite of the original, which
        // the record then names.
        let record: Map<String, Value> = after["metadata"]["annotations"][ORIGINAL_IMAGES_ANNOTATION]
            .as_str()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        let mut changed = BTreeSet::new();
        for ((name, old), (_, new)) in images_of(&object).iter().zip(images_of(&after)) {
            if *old == new {
                continue;
            }
            let old = old.as_deref().unwrap();
            let want = decide(config, &rules, old).decision;
            prop_assert_eq!(want, Decision::Rewrite(new.clone().unwrap()));
            prop_assert!(record.contains_key(name), "{} not recorded: {:?}", name, record);
            changed.insert(name.clone());
        }
        prop_assert_eq!(reviewed.outcome == Outcome::Patched, !changed.is_empty());
        prop_assert_eq!(reviewed.plan.rewritten(), changed.len());

        // A second pass over the patched Pod changes nothing.
        let body = review_body(&after);
        let again = admission::review(config, &rules, &body).unwrap();
        prop_assert!(again.response.patch.is_none(), "second pass patched {:?}", again.plan.operations());
    }
}
