//! Which objects, container lists and operations the rewrite covers.

/// The list a container sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ContainerKind {
    /// `initContainers` (native sidecars included).
    Init,
    /// `containers`.
    Main,
    /// `ephemeralContainers`.
    Ephemeral,
}

impl ContainerKind {
    /// The field name in a pod spec.
    pub fn field(self) -> &'static str {
        match self {
            Self::Init => "initContainers",
            Self::Main => "containers",
            Self::Ephemeral => "ephemeralContainers",
        }
    }

    /// How the kind is named to people.
    pub fn noun(self) -> &'static str {
        match self {
            Self::Init => "init container",
            Self::Main => "container",
            Self::Ephemeral => "ephemeral container",
        }
    }
}

/// The kinds of object whose pods the webhook and `preview` understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// `v1/Pod`.
    Pod,
    /// Deployment, StatefulSet, DaemonSet, ReplicaSet or Job: `spec.template`.
    Workload,
    /// CronJob: `spec.jobTemplate.spec.template`.
    CronJob,
}

impl TargetKind {
    /// Classifies an API group and kind.
    pub fn from_group_kind(group: &str, kind: &str) -> Option<Self> {
        match (group, kind) {
            ("" | "core", "Pod") => Some(Self::Pod),
            ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
            | ("batch", "Job") => Some(Self::Workload),
            ("batch", "CronJob") => Some(Self::CronJob),
            _ => None,
        }
    }

    /// Classifies an `apiVersion` (`apps/v1`) and kind.
    pub fn from_api_version_kind(api_version: &str, kind: &str) -> Option<Self> {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        Self::from_group_kind(group, kind)
    }

    /// JSON Pointer tokens from the object to its pod (template).
    pub(super) fn pod_path(self) -> &'static [&'static str] {
        match self {
            Self::Pod => &[],
            Self::Workload => &["spec", "template"],
            Self::CronJob => &["spec", "jobTemplate", "spec", "template"],
        }
    }
}

/// Which containers of a pod may be changed by this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A new Pod or pod template: every container list.
    Create,
    /// A Pod or template update: images that the update changes, in `containers` and
    /// `initContainers`.
    Update,
    /// An update of the `pods/ephemeralcontainers` subresource: new ephemeral containers only.
    EphemeralContainers,
}

impl Scope {
    pub(super) fn kinds(self) -> &'static [ContainerKind] {
        match self {
            Self::Create => &[
                ContainerKind::Init,
                ContainerKind::Main,
                ContainerKind::Ephemeral,
            ],
            Self::Update => &[ContainerKind::Init, ContainerKind::Main],
            Self::EphemeralContainers => &[ContainerKind::Ephemeral],
        }
    }
}
