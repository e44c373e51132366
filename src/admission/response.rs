//! The AdmissionReview answer, written in the documented wire form.

use std::collections::BTreeMap;

use serde::Serialize;

use super::ADMISSION_API_VERSION;
use crate::json;

/// An `admission.k8s.io/v1` AdmissionReview carrying a response, in the documented wire form
/// (`patch` as a base64 string).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewResponse {
    api_version: &'static str,
    kind: &'static str,
    /// The response.
    pub response: AdmissionResponse,
}

/// The `response` of an AdmissionReview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionResponse {
    /// The request's uid.
    pub uid: String,
    /// Whether the request is admitted.
    pub allowed: bool,
    /// `JSONPatch` when a patch is present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
    /// The base64-encoded JSON Patch.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_base64"
    )]
    pub patch: Option<String>,
    /// Why the request was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Messages shown to the client.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Audit annotations (the API server prefixes the webhook name).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub audit_annotations: BTreeMap<String, String>,
}

/// Writes a base64 string as it is: its alphabet never needs JSON escaping, and checking the
/// largest field of the response byte by byte for characters to escape is measurable.
#[allow(
    clippy::ref_option,
    reason = "serde's serialize_with hands the field over by reference"
)]
fn serialize_base64<S: serde::Serializer>(patch: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::Error as _;
    match patch {
        Some(p) => serde_json::value::RawValue::from_string(format!("\"{p}\""))
            .map_err(S::Error::custom)?
            .serialize(s),
        None => s.serialize_none(),
    }
}

/// A `metav1.Status` for refused requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    #[serde(rename = "status")]
    state: &'static str,
    /// Human-readable reason.
    pub message: String,
    reason: &'static str,
    /// HTTP-like code.
    pub code: u16,
}

impl AdmissionResponse {
    pub(super) fn allow(uid: &str) -> Self {
        Self {
            uid: uid.to_owned(),
            allowed: true,
            patch_type: None,
            patch: None,
            status: None,
            warnings: Vec::new(),
            audit_annotations: BTreeMap::new(),
        }
    }

    /// A refusal of a request that cannot be read (kube's "invalid" response).
    pub fn invalid(uid: &str, message: impl Into<String>) -> Self {
        Self {
            allowed: false,
            status: Some(Status {
                state: "Failure",
                message: message.into(),
                reason: "BadRequest",
                code: 400,
            }),
            ..Self::allow(uid)
        }
    }

    /// Wraps the response in an AdmissionReview.
    pub fn into_review(self) -> ReviewResponse {
        ReviewResponse {
            api_version: ADMISSION_API_VERSION,
            kind: "AdmissionReview",
            response: self,
        }
    }
}

impl ReviewResponse {
    /// Serialises the review: the same bytes as its `Serialize` form, written field by field.
    pub fn to_vec(&self) -> Vec<u8> {
        let r = &self.response;
        let patch = r.patch.as_ref().map_or(0, String::len);
        let mut out = Vec::with_capacity(512 + patch);
        out.extend_from_slice(b"{\"apiVersion\":");
        json::write_string(&mut out, self.api_version);
        out.extend_from_slice(b",\"kind\":");
        json::write_string(&mut out, self.kind);
        out.extend_from_slice(b",\"response\":{\"uid\":");
        json::write_string(&mut out, &r.uid);
        out.extend_from_slice(if r.allowed {
            b",\"allowed\":true"
        } else {
            b",\"allowed\":false"
        });
        if let Some(patch_type) = r.patch_type {
            out.extend_from_slice(b",\"patchType\":");
            json::write_string(&mut out, patch_type);
        }
        if let Some(patch) = &r.patch {
            out.extend_from_slice(b",\"patch\":");
            json::write_string(&mut out, patch);
        }
        if let Some(status) = &r.status {
            out.extend_from_slice(b",\"status\":");
            write_json(&mut out, status);
        }
        if !r.warnings.is_empty() {
            out.extend_from_slice(b",\"warnings\":[");
            for (n, warning) in r.warnings.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                json::write_string(&mut out, warning);
            }
            out.push(b']');
        }
        if !r.audit_annotations.is_empty() {
            out.extend_from_slice(b",\"auditAnnotations\":");
            json::write_object(
                &mut out,
                r.audit_annotations
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            );
        }
        out.extend_from_slice(b"}}");
        out
    }
}

/// Writes a value with serde_json. Strings, numbers and maps of them cannot fail to serialise.
fn write_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let _ = serde_json::to_writer(out, value);
}
