//! Shared oracles of the fuzz targets: the configurations they run under, and the checks every
//! admission answer must pass whatever the input.
//!
//! A fuzz target that only waits for a panic finds little; these checks state what an answer
//! must be: the uid echoed, the documented wire form, a patch that applies to the object it
//! came with and changes nothing but image fields and the originals annotation, rewritten
//! images that are valid ECR references, and a second pass that changes nothing.

use std::collections::BTreeMap;
use std::time::SystemTime;

use base64::Engine as _;
use pullthrough::admission::{self, ORIGINAL_IMAGES_ANNOTATION, Outcome};
use pullthrough::config::{Config, ECR_REPOSITORY_MAX_LEN, Overrides};
use pullthrough::reference::Reference;
use pullthrough::rewrite::{Decision, SkipReason, decide};
use pullthrough::rules::{self, RuleSnapshot};
use serde_json::{Value, json};

/// Registry host of every fuzz configuration.
pub const HOST: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

/// The configurations the targets pick from: the default map, and one that turns on every
/// optional path (digests and workloads rewritten, exclusions, a 30-character prefix, ROOT
/// with an upstream repository prefix, rules unknown meaning skip).
pub const CONFIGS: &[&str] = &[
    "accountId: \"123456789012\"\nregion: eu-west-1\n",
    "accountId: \"123456789012\"\nregion: eu-west-1\ndigests: rewrite\nworkloads: rewrite\n\
     registries:\n  docker.io: docker-hub\n  quay.io: quay\n  ghcr.io: abcdefghijklmnopqrstuvwxyz0123\n\
     \x20 111122223333.dkr.ecr.us-east-1.amazonaws.com:\n    prefix: ROOT\n    upstreamRepositoryPrefix: team\n\
     exclude:\n  images: [\"ghcr.io/cloudnative-pg/*\", \"*:debug\"]\n  podLabels: [\"cnpg.io/cluster\", \"app=db\"]\n  ownerKinds: [postgresql]\n",
    "accountId: \"123456789012\"\nregion: eu-west-1\nruleCheck:\n  whenUnknown: skip\n",
];

/// Loads configuration `i` (modulo the number of configurations).
pub fn config(i: usize) -> Config {
    let yaml = CONFIGS[i % CONFIGS.len()];
    match Config::load(yaml, &Overrides::default()) {
        Ok(c) => c,
        Err(e) => panic!("fuzz configuration {i} does not load: {e}"),
    }
}

/// A rule snapshot: unknown, or known with every rule of `config` missing.
pub fn rules(config: &Config, known_missing: bool) -> RuleSnapshot {
    if known_missing {
        rules::snapshot(config, &[], &BTreeMap::new(), SystemTime::now())
    } else {
        RuleSnapshot::unknown()
    }
}

/// Checks a rewritten image: a valid reference on the target registry, an ECR-sized
/// repository, and left alone by a second decision.
pub fn check_rewritten(config: &Config, rules: &RuleSnapshot, image: &str) {
    let r = Reference::parse(image)
        .unwrap_or_else(|e| panic!("rewritten image {image:?} does not parse: {e}"));
    assert_eq!(r.registry(), config.registry_host, "{image}");
    assert!(
        r.repository().len() <= ECR_REPOSITORY_MAX_LEN,
        "repository of {image:?} is {} characters",
        r.repository().len()
    );
    assert_eq!(
        decide(config, rules, image).decision,
        Decision::Skip(SkipReason::AlreadyRewritten),
        "{image}"
    );
}

/// Checks one decision: a rewrite is valid and keeps the tag and digest of `image`.
pub fn check_decision(config: &Config, rules: &RuleSnapshot, image: &str) {
    if let Decision::Rewrite(new) = decide(config, rules, image).decision {
        check_rewritten(config, rules, &new);
        let (old, new) = match (Reference::parse(image), Reference::parse(&new)) {
            (Ok(old), Ok(new)) => (old, new),
            _ => panic!("{image:?} rewritten to {new:?}, but one of them does not parse"),
        };
        assert_eq!(old.tag(), new.tag(), "{image}");
        assert_eq!(old.digest(), new.digest(), "{image}");
        assert!(
            new.repository()
                .ends_with(old.repository().rsplit('/').next().unwrap_or(""))
        );
    }
}

/// The uid of a body, read the plain way.
fn uid_of(body: &Value) -> Option<&str> {
    body.get("request")?.get("uid")?.as_str()
}

/// Reviews `body` and checks the answer. Returns the patched object when a patch was sent.
pub fn check_review(config: &Config, rules: &RuleSnapshot, body: &[u8]) -> Option<Value> {
    // The admission reader reads exactly what serde_json reads, and refuses what it refuses.
    if let Ok(text) = std::str::from_utf8(body)
        && let Err(difference) = admission::check_reader(text)
    {
        panic!("{difference}");
    }
    // The handler skips fields it does not read without checking their UTF-8 (as the API
    // server never sends such bytes, that is harmless); read the body the same lenient way.
    let strict: Option<Value> = serde_json::from_slice(body).ok();
    let parsed = strict
        .clone()
        .or_else(|| serde_json::from_str(&String::from_utf8_lossy(body)).ok());
    let reviewed = match admission::review(config, rules, body) {
        Ok(r) => r,
        Err(e) => {
            // No answer is possible only when no uid can be read.
            let uid = strict.as_ref().and_then(uid_of);
            assert!(uid.is_none(), "uid {uid:?} readable, yet refused: {e}");
            return None;
        }
    };
    let response = reviewed.response.clone();
    if let Some(uid) = parsed.as_ref().and_then(uid_of) {
        assert_eq!(response.uid, uid, "the uid is echoed");
    }
    for w in &response.warnings {
        assert!(w.len() <= 256, "warning of {} bytes", w.len());
    }
    let wire: Value = serde_json::from_slice(&reviewed.response.into_review().to_vec())
        .unwrap_or_else(|e| panic!("response is not JSON: {e}"));
    assert_eq!(wire["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(wire["kind"], "AdmissionReview");
    assert_eq!(wire["response"]["uid"], json!(response.uid));

    if reviewed.outcome == Outcome::Invalid {
        assert!(!response.allowed);
        assert!(response.patch.is_none());
        return None;
    }
    assert!(response.allowed, "only unreadable requests are refused");
    let Some(b64) = &response.patch else {
        assert!(response.patch_type.is_none());
        assert_ne!(reviewed.outcome, Outcome::Patched);
        return None;
    };
    assert_eq!(response.patch_type, Some("JSONPatch"));
    assert_eq!(reviewed.outcome, Outcome::Patched);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap_or_else(|e| panic!("patch is not base64: {e}"));
    let patch: json_patch::Patch =
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("patch is not a JSON Patch: {e}"));
    assert!(!patch.0.is_empty(), "an empty patch is sent as no patch");

    let body = parsed.unwrap_or_else(|| panic!("a patch for a body that is not JSON"));
    let before = body["request"]["object"].clone();
    let mut after = before.clone();
    json_patch::patch(&mut after, &patch).unwrap_or_else(|e| {
        panic!("patch does not apply: {e}\npatch: {patch:?}\nobject: {before}")
    });
    check_only_images_and_record_changed(config, rules, &before, &after);

    // A second pass over a created Pod changes nothing (reinvocation is safe).
    let request = &body["request"];
    let is_pod_create = request["operation"] == "CREATE"
        && request["kind"]["kind"] == "Pod"
        && request
            .get("subResource")
            .is_none_or(|s| s.is_null() || s == "");
    if is_pod_create {
        let mut again = body.clone();
        again["request"]["object"] = after.clone();
        let again = serde_json::to_vec(&again).unwrap_or_default();
        let second = admission::review(config, rules, &again)
            .unwrap_or_else(|e| panic!("second pass unreadable: {e}"));
        assert!(
            second.response.patch.is_none(),
            "second pass patched again: {:?}\nafter first pass: {after}",
            second.plan.operations()
        );
    }
    Some(after)
}

const LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];
const POD_PATHS: [&[&str]; 3] = [
    &[],
    &["spec", "template"],
    &["spec", "jobTemplate", "spec", "template"],
];

type Diff = (Vec<String>, Option<Value>, Option<Value>);

fn diff(a: Option<&Value>, b: Option<&Value>, path: &mut Vec<String>, out: &mut Vec<Diff>) {
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                path.push(k.clone());
                diff(x.get(k), y.get(k), path, out);
                path.pop();
            }
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                path.push(i.to_string());
                diff(Some(p), Some(q), path, out);
                path.pop();
            }
        }
        _ if a == b => {}
        _ => out.push((path.clone(), a.cloned(), b.cloned())),
    }
}

fn is_record(v: &Value) -> bool {
    v.as_str()
        .and_then(|s| serde_json::from_str::<serde_json::Map<String, Value>>(s).ok())
        .is_some_and(|m| m.values().all(Value::is_string))
}

fn absent(v: Option<&Value>) -> bool {
    v.is_none_or(Value::is_null)
}

/// Every difference between `before` and `after` must be an image of a container, or the
/// originals record (created with its `metadata`/`annotations` parents when those were absent).
pub fn check_only_images_and_record_changed(
    config: &Config,
    rules: &RuleSnapshot,
    before: &Value,
    after: &Value,
) {
    let mut diffs = Vec::new();
    diff(Some(before), Some(after), &mut Vec::new(), &mut diffs);
    for (path, old, new) in &diffs {
        let allowed = POD_PATHS.iter().any(|pod| {
            let Some(rest) =
                path.strip_prefix(&pod.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()[..])
            else {
                return false;
            };
            let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
            match rest.as_slice() {
                ["spec", list, index, "image"]
                    if LISTS.contains(list) && index.parse::<usize>().is_ok() =>
                {
                    match (
                        old.as_ref().and_then(Value::as_str),
                        new.as_ref().and_then(Value::as_str),
                    ) {
                        (Some(_), Some(image)) => {
                            check_rewritten(config, rules, image);
                            true
                        }
                        _ => false,
                    }
                }
                ["metadata", "annotations", key] if *key == ORIGINAL_IMAGES_ANNOTATION => {
                    new.as_ref().is_some_and(is_record)
                }
                ["metadata", "annotations"] => {
                    absent(old.as_ref())
                        && new.as_ref().and_then(Value::as_object).is_some_and(|m| {
                            m.len() == 1 && m.get(ORIGINAL_IMAGES_ANNOTATION).is_some_and(is_record)
                        })
                }
                ["metadata"] => {
                    absent(old.as_ref())
                        && new.as_ref().and_then(Value::as_object).is_some_and(|m| {
                            m.len() == 1
                                && m.get("annotations").and_then(Value::as_object).is_some_and(
                                    |a| {
                                        a.len() == 1
                                            && a.get(ORIGINAL_IMAGES_ANNOTATION)
                                                .is_some_and(is_record)
                                    },
                                )
                        })
                }
                _ => false,
            }
        });
        assert!(
            allowed,
            "the patch changed {path:?} from {old:?} to {new:?}\nbefore: {before}\nafter: {after}"
        );
    }
}
