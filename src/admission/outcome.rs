//! What admission does to one image of a Pod: the outcome that the plan, the record of originals and the patch share.

use std::borrow::Cow;

use super::kind::ContainerKind;
use crate::rewrite::Decision;

/// The decision for one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageOutcome<'c> {
    /// Which list the container is in.
    pub kind: ContainerKind,
    /// Index in that list.
    pub index: usize,
    /// Container name (volume name for an image volume), borrowed from the request where it
    /// can be.
    pub container: Cow<'c, str>,
    /// The image as the request has it.
    pub image: Cow<'c, str>,
    /// What happens to it.
    pub decision: Decision,
    /// Metrics label: configured upstream registry or `other`.
    pub registry: &'c str,
}
