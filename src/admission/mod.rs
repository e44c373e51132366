//! AdmissionReview in, AdmissionReview out: pure, given a configuration snapshot.
//!
//! The request is read into narrow borrowed views (only uid, kind, operation, metadata and the
//! container lists), so a large Pod costs little more than the bytes it takes to skip it. The
//! answer is one RFC 6902 JSON Patch that replaces only the images that change and records the
//! originals in the [`ORIGINAL_IMAGES_ANNOTATION`], plus a warning per image left alone.

mod kind;
mod outcome;
mod patch;
mod plan;
mod read;
mod record;
mod response;
mod review;
mod view;

#[cfg(test)]
#[allow(clippy::needless_pass_by_value)]
mod tests;

#[doc(hidden)]
pub use read::check as check_reader;

pub use kind::{ContainerKind, Scope, TargetKind};
pub use outcome::ImageOutcome;
pub use plan::{PodPlan, PodSkip, plan_object, pod_exclusion};
pub use response::{AdmissionResponse, ReviewResponse, Status};
pub use review::{Outcome, Reviewed, Unreadable, review, review_with};
pub use view::ObjectView;

#[cfg(test)]
use plan::WARNING_MAX_LEN;
#[cfg(test)]
use record::{object_text, write_object_literal};
use view::{
    ContainerView, GroupVersionKind, ImageVolumeView, MetaView, OwnerView, RequestView, ReviewView,
    SpecView, Text, VolumeView,
};

/// The only AdmissionReview version served.
pub const ADMISSION_API_VERSION: &str = "admission.k8s.io/v1";
/// Pod annotation that opts a Pod (or pod template) out: `pullthrough.dev/skip: "true"`.
pub const SKIP_ANNOTATION: &str = "pullthrough.dev/skip";
/// Pod annotation recording replaced images: JSON, container name to original image.
pub const ORIGINAL_IMAGES_ANNOTATION: &str = "pullthrough.dev/original-images";
/// Pod annotation listing the containers the reconciler put back on their original image
/// (JSON list of container names): the webhook leaves their images alone from then on.
pub const FALLBACK_ANNOTATION: &str = "pullthrough.dev/fallback";
