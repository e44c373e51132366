//! Fallback planning: which containers go back to their original image, and the one JSON Patch that does it.
//!
//! A container qualifies when `fallback.enabled` is set, its rewritten image has failed to pull
//! for at least `fallback.after` (measured from when the reconciler first saw the failure), it
//! is not an ephemeral container (their images cannot be changed), and it never fell back
//! before (the Pod's `pullthrough.dev/fallback` annotation does not list it). The patch tests
//! the Pod's UID and each current image first, so that a Pod recreated under the same name or
//! a concurrent change of the image is never overwritten.

use std::time::Duration;

use json_patch::jsonptr::{PointerBuf, Token};
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation, TestOperation};
use serde_json::Value;

use super::{Cause, Failure};
use crate::admission::{ContainerKind, FALLBACK_ANNOTATION};
use crate::config::Fallback;
use crate::pod::PodRecord;

/// One container to put back on its original image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    /// Container name.
    pub container: String,
    /// The list it is in.
    pub kind: ContainerKind,
    /// Its index in that list.
    pub index: usize,
    /// The image it fails to pull (tested before it is replaced).
    pub from: String,
    /// Its original image.
    pub to: String,
    /// The likely cause of the failures.
    pub cause: Cause,
    /// How long the reconciler has seen it fail.
    pub failing_for: Duration,
}

/// A fallback of some containers of one Pod: one patch, one Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallbackPlan {
    /// Namespace of the Pod.
    pub namespace: String,
    /// Name of the Pod.
    pub name: String,
    /// UID of the Pod (tested by the patch).
    pub uid: String,
    /// The containers to switch.
    pub switches: Vec<Switch>,
    /// The annotation as the Pod has it, if it has one (tested by the patch).
    existing: Option<String>,
    /// The containers it lists.
    listed: Vec<String>,
}

/// Whether a failing container may fall back, whatever the time: not ephemeral, not listed in
/// the Pod's annotation, and the annotation readable.
pub fn eligible(pod: &PodRecord, failure: &Failure<'_>) -> bool {
    failure.pending.kind != ContainerKind::Ephemeral
        && pod
            .pull
            .fallen_back()
            .is_some_and(|listed| !listed.contains(&failure.pending.container))
}

/// The fallback of `pod`'s failing containers that are due: those for which `failing_for`
/// (how long the reconciler has seen the container fail; `None` if it has not) reaches
/// `policy.after`, and that `done` does not know to have fallen back already. `None` when
/// there is nothing to do.
pub fn plan(
    policy: &Fallback,
    pod: &PodRecord,
    failures: &[Failure<'_>],
    failing_for: impl Fn(&str) -> Option<Duration>,
    done: impl Fn(&str) -> bool,
) -> Option<FallbackPlan> {
    if !policy.enabled {
        return None;
    }
    let switches: Vec<Switch> = failures
        .iter()
        .filter(|f| eligible(pod, f) && !done(&f.pending.container))
        .filter_map(|f| {
            let failing_for = failing_for(&f.pending.container)?;
            (failing_for >= policy.after).then(|| Switch {
                container: f.pending.container.clone(),
                kind: f.pending.kind,
                index: f.pending.index,
                from: f.image.to_owned(),
                to: f.original.to_owned(),
                cause: f.cause.clone(),
                failing_for,
            })
        })
        .collect();
    if switches.is_empty() {
        return None;
    }
    Some(FallbackPlan {
        namespace: pod.namespace.to_string(),
        name: pod.name.clone(),
        uid: pod.uid.clone(),
        switches,
        existing: pod.pull.fallback.clone(),
        listed: pod.pull.fallen_back().unwrap_or_default(),
    })
}

fn pointer(tokens: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(tokens.iter().map(|t| Token::new(*t)))
}

fn image_pointer(kind: ContainerKind, index: usize) -> PointerBuf {
    let index = index.to_string();
    pointer(&["spec", kind.field(), &index, "image"])
}

impl FallbackPlan {
    /// The annotation's new value: the containers listed before and the ones switched now.
    pub fn annotation(&self) -> String {
        let mut names = self.listed.clone();
        for s in &self.switches {
            if !names.contains(&s.container) {
                names.push(s.container.clone());
            }
        }
        Value::from(names).to_string()
    }

    /// The JSON Patch: tests of the UID and of each current image, the image replacements, and
    /// the annotation (its old value tested when there was one).
    pub fn patch(&self) -> Patch {
        let mut ops = vec![PatchOperation::Test(TestOperation {
            path: pointer(&["metadata", "uid"]),
            value: Value::from(self.uid.as_str()),
        })];
        for s in &self.switches {
            ops.push(PatchOperation::Test(TestOperation {
                path: image_pointer(s.kind, s.index),
                value: Value::from(s.from.as_str()),
            }));
            ops.push(PatchOperation::Replace(ReplaceOperation {
                path: image_pointer(s.kind, s.index),
                value: Value::from(s.to.as_str()),
            }));
        }
        let annotation = pointer(&["metadata", "annotations", FALLBACK_ANNOTATION]);
        let value = Value::from(self.annotation());
        match &self.existing {
            Some(old) => {
                ops.push(PatchOperation::Test(TestOperation {
                    path: annotation.clone(),
                    value: Value::from(old.as_str()),
                }));
                ops.push(PatchOperation::Replace(ReplaceOperation {
                    path: annotation,
                    value,
                }));
            }
            // The Pod has annotations: its record of original images is one of them.
            None => ops.push(PatchOperation::Add(AddOperation {
                path: annotation,
                value,
            })),
        }
        Patch(ops)
    }

    /// The note of the `PullThroughCacheFallback` Event.
    pub fn note(&self) -> String {
        let mut parts = Vec::with_capacity(self.switches.len());
        for s in &self.switches {
            parts.push(format!(
                "{} {} from {} back to {} after {} of failed pulls ({})",
                s.kind.noun(),
                s.container,
                s.from,
                s.to,
                humantime::format_duration(Duration::from_secs(s.failing_for.as_secs())),
                s.cause
            ));
        }
        format!(
            "Switched {}. The Pod now pulls from the upstream registry and is marked {FALLBACK_ANNOTATION}, so pullthrough leaves these containers alone; fix the cause, then restart the workload to use the cache again.",
            parts.join("; ")
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::failures;
    use super::super::fixtures::*;
    use super::*;

    fn enabled() -> Fallback {
        Fallback {
            enabled: true,
            after: Duration::from_mins(2),
        }
    }

    fn failing_pod() -> serde_json::Value {
        let mut pod = pod_json(&json!([
            waiting("app", "ImagePullBackOff", DENIED),
            waiting("side", "ErrImagePull", DENIED),
        ]));
        pod["status"]["ephemeralContainerStatuses"] =
            json!([waiting("debug", "ErrImagePull", DENIED)]);
        pod["metadata"]["annotations"]["pullthrough.dev/original-images"] = json!(
            "{\"app\":\"nginx:1.27\",\"side\":\"quay.io/org/side:2\",\"debug\":\"busybox:1\"}"
        );
        pod
    }

    #[test]
    fn falls_back_only_after_the_configured_time_and_never_for_ephemeral_containers() {
        let c = config("");
        let rules = all_rules(&c);
        let r = record(&failing_pod());
        let found = failures(&c, &rules, &r);
        assert_eq!(found.len(), 3, "{found:#?}");

        let at = |secs: u64| move |_: &str| Some(Duration::from_secs(secs));
        assert_eq!(plan(&enabled(), &r, &found, at(119), |_| false), None);
        let p = plan(&enabled(), &r, &found, at(120), |_| false).unwrap();
        let names: Vec<_> = p.switches.iter().map(|s| s.container.as_str()).collect();
        assert_eq!(names, ["app", "side"], "never the ephemeral container");
        assert_eq!(p.switches[0].to, "nginx:1.27");
        assert_eq!(p.switches[1].to, "quay.io/org/side:2");

        // Not seen failing: no time known, no fallback.
        assert_eq!(plan(&enabled(), &r, &found, |_| None, |_| false), None);
        // Disabled: nothing, whatever the time.
        assert_eq!(
            plan(&Fallback::default(), &r, &found, at(86_400), |_| false),
            None
        );
    }

    #[test]
    fn never_twice_for_the_same_container() {
        let c = config("");
        let rules = all_rules(&c);
        let mut pod = failing_pod();
        pod["metadata"]["annotations"]["pullthrough.dev/fallback"] = json!("[\"app\"]");
        let r = record(&pod);
        let found = failures(&c, &rules, &r);
        let long = |_: &str| Some(Duration::from_mins(10));
        let p = plan(&enabled(), &r, &found, long, |_| false).unwrap();
        let names: Vec<_> = p.switches.iter().map(|s| s.container.as_str()).collect();
        assert_eq!(names, ["side"]);
        assert_eq!(p.annotation(), "[\"app\",\"side\"]");
        // Done already (the watch has not shown the annotation yet): nothing.
        assert_eq!(plan(&enabled(), &r, &found, long, |n| n == "side"), None);
        // An annotation that cannot be read stops every fallback of the Pod.
        pod["metadata"]["annotations"]["pullthrough.dev/fallback"] = json!("app");
        let r = record(&pod);
        let found = failures(&c, &rules, &r);
        assert_eq!(plan(&enabled(), &r, &found, long, |_| false), None);
    }

    #[test]
    fn one_patch_switches_images_and_writes_the_annotation() {
        let c = config("");
        let rules = all_rules(&c);
        let pod = failing_pod();
        let r = record(&pod);
        let found = failures(&c, &rules, &r);
        let p = plan(
            &enabled(),
            &r,
            &found,
            |_| Some(Duration::from_secs(150)),
            |_| false,
        )
        .unwrap();
        let mut after = pod.clone();
        json_patch::patch(&mut after, &p.patch()).unwrap();
        assert_eq!(after["spec"]["containers"][0]["image"], "nginx:1.27");
        assert_eq!(
            after["spec"]["containers"][1]["image"],
            "quay.io/org/side:2"
        );
        assert_eq!(
            after["spec"]["ephemeralContainers"][0]["image"],
            format!("{CACHE}/docker-hub/library/busybox:1")
        );
        assert_eq!(
            after["metadata"]["annotations"]["pullthrough.dev/fallback"],
            "[\"app\",\"side\"]"
        );
        // The record of originals stays: it says what the webhook did.
        assert!(after["metadata"]["annotations"]["pullthrough.dev/original-images"].is_string());

        // A concurrent change of an image makes the whole patch fail, changing nothing.
        let mut changed = pod.clone();
        changed["spec"]["containers"][1]["image"] = json!("quay.io/org/side:3");
        let before = changed.clone();
        assert!(json_patch::patch(&mut changed, &p.patch()).is_err());
        assert_eq!(changed, before);
        // So does a Pod recreated under the same name.
        let mut recreated = pod.clone();
        recreated["metadata"]["uid"] = json!("u2");
        assert!(json_patch::patch(&mut recreated, &p.patch()).is_err());

        let note = p.note();
        assert!(
            note.starts_with(&format!(
                "Switched container app from {CACHE}/docker-hub/library/nginx:1.27 back to nginx:1.27 after 2m 30s of failed pulls (the node's IAM role is not allowed ecr:BatchImportUpstreamImage)"
            )),
            "{note}"
        );
        assert!(note.contains("pullthrough.dev/fallback"));
    }

    #[test]
    fn an_existing_annotation_is_tested_and_extended() {
        let c = config("");
        let rules = all_rules(&c);
        let mut pod = failing_pod();
        pod["metadata"]["annotations"]["pullthrough.dev/fallback"] = json!("[ \"app\" ]");
        let r = record(&pod);
        let found = failures(&c, &rules, &r);
        let p = plan(
            &enabled(),
            &r,
            &found,
            |_| Some(Duration::from_mins(3)),
            |_| false,
        )
        .unwrap();
        let mut after = pod.clone();
        json_patch::patch(&mut after, &p.patch()).unwrap();
        assert_eq!(
            after["metadata"]["annotations"]["pullthrough.dev/fallback"],
            "[\"app\",\"side\"]"
        );
        // Someone rewrote the annotation meanwhile: the patch fails.
        let mut raced = pod.clone();
        raced["metadata"]["annotations"]["pullthrough.dev/fallback"] = json!("[\"app\"]");
        assert!(json_patch::patch(&mut raced, &p.patch()).is_err());
    }
}
