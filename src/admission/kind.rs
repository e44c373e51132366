//! Which objects, image lists and operations the rewrite covers.

/// The list an image sits in: a container list, or the pod's image volumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ContainerKind {
    /// `initContainers` (native sidecars included).
    Init,
    /// `containers`.
    Main,
    /// `ephemeralContainers`.
    Ephemeral,
    /// `volumes[].image`: an OCI image mounted as a volume (GA in Kubernetes 1.36).
    ImageVolume,
}

impl ContainerKind {
    /// The field name in a pod spec.
    pub fn field(self) -> &'static str {
        match self {
            Self::Init => "initContainers",
            Self::Main => "containers",
            Self::Ephemeral => "ephemeralContainers",
            Self::ImageVolume => "volumes",
        }
    }

    /// How the kind is named to people.
    pub fn noun(self) -> &'static str {
        match self {
            Self::Init => "init container",
            Self::Main => "container",
            Self::Ephemeral => "ephemeral container",
            Self::ImageVolume => "image volume",
        }
    }

    /// The key of an image of this kind in the record of originals: the container name, or
    /// `volume/<name>` for an image volume (container names cannot hold a `/`, so the two
    /// never clash).
    pub fn record_key(self, name: &str) -> std::borrow::Cow<'_, str> {
        match self {
            Self::ImageVolume => std::borrow::Cow::Owned(format!("volume/{name}")),
            _ => std::borrow::Cow::Borrowed(name),
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
    /// The lists this request may change in a pod of `target`. A Pod's volumes are immutable
    /// after creation, but a workload's template may change them on update.
    pub(super) fn kinds(self, target: TargetKind) -> &'static [ContainerKind] {
        match (self, target) {
            (Self::Create, _) => &[
                ContainerKind::Init,
                ContainerKind::Main,
                ContainerKind::Ephemeral,
                ContainerKind::ImageVolume,
            ],
            (Self::Update, TargetKind::Pod) => &[ContainerKind::Init, ContainerKind::Main],
            (Self::Update, _) => &[
                ContainerKind::Init,
                ContainerKind::Main,
                ContainerKind::ImageVolume,
            ],
            (Self::EphemeralContainers, _) => &[ContainerKind::Ephemeral],
        }
    }
}
