//! What an Event is about: a Pod, a workload or the reconciler's own Deployment, and the identity the Event layer keys it by.

use crate::pod::PodRecord;

/// A Pod an Event is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
}

impl PodRef {
    pub(super) fn of(pod: &PodRecord) -> Self {
        Self {
            namespace: pod.namespace.to_string(),
            name: pod.name.clone(),
            uid: pod.uid.clone(),
        }
    }
}

/// A workload an Event is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadRef {
    /// Namespace.
    pub namespace: String,
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
    /// UID, when known: `kubectl describe` shows only Events that carry it.
    pub uid: Option<String>,
}

/// What an Event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A Pod.
    Pod(PodRef),
    /// A workload.
    Workload(WorkloadRef),
    /// The reconciler's own Deployment.
    Deployment,
}

impl Target {
    /// The identity part of the target.
    pub fn about(&self) -> About {
        match self {
            Self::Pod(p) => About::Pod(p.uid.clone()),
            Self::Workload(w) => About::Workload {
                namespace: w.namespace.clone(),
                kind: w.kind.clone(),
                name: w.name.clone(),
            },
            Self::Deployment => About::Reconciler,
        }
    }
}

/// What an Event is about, as far as its identity goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum About {
    /// A workload, by namespace, kind and name.
    Workload {
        /// Namespace.
        namespace: String,
        /// Kind.
        kind: String,
        /// Name.
        name: String,
    },
    /// A Pod, by UID.
    Pod(String),
    /// The reconciler's own Deployment.
    Reconciler,
}
