//! The reconciler: tells people, through Kubernetes Events, what its checks find about the Pods of opted-in namespaces.
//!
//! This module is the pure part: what the reconciler keeps of a Pod ([`PodRecord`]), the checks
//! that turn a Pod into [`notice::Notice`]s ([`CHECKS`]), and the Event layer that groups them by
//! workload and decides what to publish ([`plan::Tracker`]). The watchers, the Lease and the
//! Events API live in [`run`] and [`writer`].

pub mod check;
#[cfg(test)]
mod fixtures;
pub mod plan;
pub mod rate;
pub mod rule_check;
pub mod run;
pub mod standing;
pub mod target;
pub mod world;
pub mod writer;

pub use crate::notice::{self, ACTION, NOTE_MAX_LEN, Severity, bounded};
pub use crate::pod::{ContainerImage, Containers, Interner, PodRecord};
pub use check::{CHECKS, Check};
pub use plan::{Publish, Tracker};
pub use rule_check::{
    Cause, Finding, REASON_CREDENTIALS_FAILING, REASON_MISSING, REASON_RESTORED, REASON_SUMMARY,
    REASON_SUMMARY_READY, REASON_WRONG_UPSTREAM, findings, pod_note,
};
pub use target::{PodRef, Target, WorkloadRef};
pub use world::World;
