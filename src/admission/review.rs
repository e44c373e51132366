//! One AdmissionReview body in, one answer out: reading, routing and answering a request.

use crate::digests::DigestSnapshot;
use serde::Deserialize;
use serde_json::Value;

use super::ADMISSION_API_VERSION;
use super::kind::{Scope, TargetKind};
use super::plan::{PodPlan, plan_object, truncate};
use super::read;
use super::response::AdmissionResponse;
use super::view::{RequestView, ReviewView};
use crate::config::{Config, WorkloadPolicy};
use crate::rewrite::Decision;
use crate::rules::RuleSnapshot;

/// How the request ended, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed with a patch.
    Patched,
    /// Allowed without a patch.
    Allowed,
    /// Refused as unreadable.
    Invalid,
}

impl Outcome {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Patched => "patched",
            Self::Allowed => "allowed",
            Self::Invalid => "invalid",
        }
    }
}

/// What the webhook made of one request: the response and what to count and log.
#[derive(Debug)]
pub struct Reviewed<'c> {
    /// The response to send.
    pub response: AdmissionResponse,
    /// How it ended.
    pub outcome: Outcome,
    /// The plan, when the request was about a pod or pod template.
    pub plan: PodPlan<'c>,
    /// Namespace of the object.
    pub namespace: String,
    /// Name (or generateName) of the object.
    pub name: String,
    /// Whether the request is a dry run.
    pub dry_run: bool,
}

/// The answer to a body that is not an AdmissionReview at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unreadable(pub String);

/// Reviews a raw AdmissionReview body. `Err` means no uid could be read, so no AdmissionReview
/// answer is possible (the server replies HTTP 400). The answer borrows container names and
/// images from `body`.
pub fn review<'c>(
    config: &'c Config,
    rules: &RuleSnapshot,
    body: &'c [u8],
) -> Result<Reviewed<'c>, Unreadable> {
    review_with(config, rules, &DigestSnapshot::EMPTY, body)
}

/// [`review`], given what is known of the pinned digests the cache holds.
pub fn review_with<'c>(
    config: &'c Config,
    rules: &RuleSnapshot,
    digests: &DigestSnapshot,
    body: &'c [u8],
) -> Result<Reviewed<'c>, Unreadable> {
    // Checking the whole body as UTF-8 once is cheaper than checking every string as it is read;
    // a body that is not UTF-8 is read as bytes, for the same error as before.
    let parsed = match std::str::from_utf8(body) {
        // The reader leaves to serde_json what it does not read, and serde_json then answers.
        Ok(text) => read::review(text).map_or_else(|| serde_json::from_str(text), Ok),
        Err(_) => serde_json::from_slice(body),
    };
    let parsed: ReviewView<'_> = match parsed {
        Ok(v) => v,
        Err(e) => {
            return match read_uid(body) {
                Some(uid) => Ok(invalid(
                    &uid,
                    format!("cannot read the AdmissionReview: {e}"),
                )),
                None => Err(Unreadable(format!("body is not an AdmissionReview: {e}"))),
            };
        }
    };
    let Some(request) = parsed.request else {
        return Err(Unreadable("AdmissionReview has no request".to_owned()));
    };
    if parsed.api_version.as_deref() != Some(ADMISSION_API_VERSION)
        || parsed.kind.as_deref() != Some("AdmissionReview")
    {
        return Ok(invalid(
            &request.uid,
            format!(
                "expected an {ADMISSION_API_VERSION} AdmissionReview, got {} {}",
                parsed.api_version.as_deref().unwrap_or("no apiVersion"),
                parsed.kind.as_deref().unwrap_or("no kind"),
            ),
        ));
    }
    Ok(review_request(config, rules, digests, &request))
}

fn invalid(uid: &str, message: String) -> Reviewed<'static> {
    Reviewed {
        response: AdmissionResponse::invalid(uid, message),
        outcome: Outcome::Invalid,
        plan: PodPlan::default(),
        namespace: String::new(),
        name: String::new(),
        dry_run: false,
    }
}

fn read_uid(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Outer {
        request: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        uid: String,
    }
    // Only a syntactically valid document with a string uid is answered with a review.
    let value: Value = serde_json::from_slice(body).ok()?;
    let outer: Outer = serde_json::from_value(value).ok()?;
    Some(outer.request.uid)
}

fn review_request<'c>(
    config: &'c Config,
    rules: &RuleSnapshot,
    digests: &DigestSnapshot,
    request: &RequestView<'c>,
) -> Reviewed<'c> {
    let object_name = request
        .object
        .as_ref()
        .and_then(|o| o.metadata.as_ref())
        .and_then(|m| m.name.as_deref().or(m.generate_name.as_deref()));
    let name = request
        .name
        .as_deref()
        .or(object_name)
        .unwrap_or_default()
        .to_owned();
    let mut reviewed = Reviewed {
        response: AdmissionResponse::allow(&request.uid),
        outcome: Outcome::Allowed,
        plan: PodPlan::default(),
        namespace: request.namespace.as_deref().unwrap_or_default().to_owned(),
        name,
        dry_run: request.dry_run.unwrap_or(false),
    };

    let target = TargetKind::from_group_kind(&request.kind.group, &request.kind.kind)
        .filter(|_| request.kind.version == "v1");
    let scope = match (request.operation.as_ref(), request.sub_resource.as_deref()) {
        ("CREATE", None | Some("")) => Scope::Create,
        ("UPDATE", None | Some("")) => Scope::Update,
        ("UPDATE", Some("ephemeralcontainers")) if target == Some(TargetKind::Pod) => {
            Scope::EphemeralContainers
        }
        _ => return reviewed,
    };
    let (Some(target), Some(object)) = (target, request.object.as_ref()) else {
        return reviewed;
    };

    let plan = plan_object(
        config,
        rules,
        digests,
        target,
        object,
        request.old_object.as_ref(),
        scope,
    );
    let response = &mut reviewed.response;
    let preview_only = target != TargetKind::Pod && config.workloads == WorkloadPolicy::Preview;
    if preview_only {
        response.warnings = workload_preview_warnings(&plan);
    } else {
        response.warnings = plan.warnings("");
        if plan.changes() {
            // An empty patch would be a no-op.
            let mut bytes = Vec::with_capacity(160 * (plan.images.len() + 1));
            plan.write_patch(&mut bytes);
            response.patch_type = Some("JSONPatch");
            response.patch = Some(base64_simd::STANDARD.encode_to_string(&bytes));
            response
                .audit_annotations
                .insert("rewritten-images".to_owned(), plan.rewritten().to_string());
            reviewed.outcome = Outcome::Patched;
        }
    }
    reviewed.plan = plan;
    reviewed
}

fn workload_preview_warnings(plan: &PodPlan<'_>) -> Vec<String> {
    let mut out = plan.warnings("pod template ");
    for i in &plan.images {
        if let Decision::Rewrite(new) = &i.decision {
            out.push(truncate(format!(
                "pullthrough: pod template {} {:?}: Pods will pull {:?} as {:?}",
                i.kind.noun(),
                i.container,
                i.image,
                new
            )));
        }
    }
    out
}
