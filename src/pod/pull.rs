//! What the reconciler keeps of a Pod for pull failures: its containers that have not started, and the fallback annotation.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use crate::admission::{ContainerKind, FALLBACK_ANNOTATION};

/// The waiting reasons of a container whose image cannot be pulled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullWait {
    /// The last pull failed.
    ErrImagePull,
    /// The kubelet waits before pulling again.
    ImagePullBackOff,
}

impl PullWait {
    fn of(reason: &str) -> Option<Self> {
        match reason {
            "ErrImagePull" => Some(Self::ErrImagePull),
            "ImagePullBackOff" => Some(Self::ImagePullBackOff),
            _ => None,
        }
    }
}

/// A container of a Pod that has not started yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Container name.
    pub container: String,
    /// The list it is in.
    pub kind: ContainerKind,
    /// Its index in that list, for the fallback patch.
    pub index: usize,
    /// Set while it waits on a failed pull: the waiting reason and the kubelet's message.
    pub pull: Option<(PullWait, String)>,
}

/// What the reconciler keeps of a Pod for pull failures: nothing for a Pod whose containers
/// all run and that never fell back, which is nearly every Pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullRecord {
    /// Containers that have not started (no status, or waiting).
    pub pending: Vec<Pending>,
    /// The Pod's `pullthrough.dev/fallback` annotation, as written.
    pub fallback: Option<String>,
}

impl PullRecord {
    /// Reads the container statuses and the fallback annotation of `pod`.
    pub fn from_pod(pod: &Pod) -> Self {
        let fallback = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(FALLBACK_ANNOTATION))
            .cloned();
        let Some(spec) = &pod.spec else {
            return Self {
                pending: Vec::new(),
                fallback,
            };
        };
        let status = pod.status.as_ref();
        let mut pending = Vec::new();
        collect_pending(
            &mut pending,
            ContainerKind::Init,
            spec.init_containers
                .iter()
                .flatten()
                .map(|c| c.name.as_str()),
            status.and_then(|s| s.init_container_statuses.as_deref()),
        );
        collect_pending(
            &mut pending,
            ContainerKind::Main,
            spec.containers.iter().map(|c| c.name.as_str()),
            status.and_then(|s| s.container_statuses.as_deref()),
        );
        collect_pending(
            &mut pending,
            ContainerKind::Ephemeral,
            spec.ephemeral_containers
                .iter()
                .flatten()
                .map(|c| c.name.as_str()),
            status.and_then(|s| s.ephemeral_container_statuses.as_deref()),
        );
        Self { pending, fallback }
    }

    /// The containers the fallback annotation lists; `None` when it cannot be read (then no
    /// container of the Pod is touched).
    pub fn fallen_back(&self) -> Option<Vec<String>> {
        match &self.fallback {
            None => Some(Vec::new()),
            Some(text) => serde_json::from_str(text).ok(),
        }
    }

    /// Whether `container` has started (it is not pending).
    pub fn started(&self, container: &str) -> bool {
        !self.pending.iter().any(|p| p.container == container)
    }
}

/// Adds the containers of one list (`names`, in spec order) that have not started.
fn collect_pending<'a>(
    out: &mut Vec<Pending>,
    kind: ContainerKind,
    names: impl Iterator<Item = &'a str>,
    statuses: Option<&[ContainerStatus]>,
) {
    let statuses = statuses.unwrap_or_default();
    for (index, name) in names.enumerate() {
        let status = statuses.iter().find(|s| s.name == name);
        if status.is_some_and(started) {
            continue;
        }
        let pull = status
            .and_then(|s| s.state.as_ref()?.waiting.as_ref())
            .and_then(|w| {
                let wait = PullWait::of(w.reason.as_deref()?)?;
                Some((wait, w.message.clone().unwrap_or_default()))
            });
        out.push(Pending {
            container: name.to_owned(),
            kind,
            index,
            pull,
        });
    }
}

/// A container that ran, or runs, has pulled its image.
fn started(status: &ContainerStatus) -> bool {
    status.started == Some(true)
        || status
            .state
            .as_ref()
            .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
}

#[cfg(test)]
pub(crate) mod fixtures {
    use serde_json::{Value, json};

    pub fn waiting(name: &str, reason: &str, message: &str) -> Value {
        json!({"name": name, "image": "x", "imageID": "", "ready": false, "restartCount": 0,
               "state": {"waiting": {"reason": reason, "message": message}}})
    }

    pub fn running(name: &str) -> Value {
        json!({"name": name, "image": "x", "imageID": "", "ready": true, "restartCount": 0,
               "started": true, "state": {"running": {"startedAt": "2026-12-02T06:00:00Z"}}})
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::fixtures::*;
    use super::*;

    /// `app` and `side` with the statuses given, and an ephemeral `debug` container.
    fn pod_json(statuses: &Value) -> Value {
        json!({
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "u1"},
            "spec": {
                "containers": [{"name": "app", "image": "nginx:1.27"}, {"name": "side", "image": "quay.io/org/side:2"}],
                "ephemeralContainers": [{"name": "debug", "image": "busybox:1"}]
            },
            "status": {"containerStatuses": statuses}
        })
    }

    fn record(pod: &Value) -> PullRecord {
        PullRecord::from_pod(&serde_json::from_value(pod.clone()).unwrap())
    }

    #[test]
    fn records_keep_only_containers_that_have_not_started() {
        let pod = pod_json(&json!([
            waiting("app", "ImagePullBackOff", "Back-off pulling image"),
            running("side"),
        ]));
        let r = record(&pod);
        assert_eq!(r.pending.len(), 2, "{r:#?}");
        assert_eq!(r.pending[0].container, "app");
        assert_eq!(r.pending[0].kind, ContainerKind::Main);
        assert_eq!(
            r.pending[0].pull,
            Some((PullWait::ImagePullBackOff, "Back-off pulling image".into()))
        );
        // The ephemeral container has no status yet: pending, not failing.
        assert_eq!(r.pending[1].container, "debug");
        assert_eq!(r.pending[1].kind, ContainerKind::Ephemeral);
        assert_eq!(r.pending[1].pull, None);
        assert!(r.started("side"));
        assert!(!r.started("app"));

        let mut all_running = pod_json(&json!([running("app"), running("side")]));
        all_running["spec"]
            .as_object_mut()
            .unwrap()
            .remove("ephemeralContainers");
        assert_eq!(record(&all_running), PullRecord::default());

        let mut fell = pod.clone();
        fell["metadata"]["annotations"] = json!({"pullthrough.dev/fallback": "[\"app\"]"});
        let r = record(&fell);
        assert_eq!(r.fallen_back(), Some(vec!["app".to_owned()]));
        fell["metadata"]["annotations"]["pullthrough.dev/fallback"] = json!("app");
        assert_eq!(record(&fell).fallen_back(), None);
    }
}
