//! What the reconciler and its checks keep of a Pod ([`PodRecord`]): little, and shared between the Pods of a workload.

#[cfg(test)]
pub(crate) mod fixtures;
pub mod owner;
pub mod pull;

use std::collections::{BTreeMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::admission::{ORIGINAL_IMAGES_ANNOTATION, PodSkip, SKIP_ANNOTATION};
use crate::config::Config;

pub use owner::Owner;
pub use pull::{Pending, PullRecord, PullWait};

/// One container image of a Pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerImage {
    /// Container name.
    pub container: String,
    /// The image the Pod runs.
    pub image: String,
    /// The image before the webhook rewrote it, from the Pod's annotation.
    pub original: Option<String>,
}

/// What the reconciler keeps of a Pod: little, so that watching every Pod stays cheap. What
/// the Pods of one workload have in common (namespace, labels, owner, containers and images) is
/// shared between their records through an [`Interner`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRecord {
    /// Namespace.
    pub namespace: Arc<str>,
    /// Name.
    pub name: String,
    /// UID, which Events reference.
    pub uid: String,
    /// Labels, for the configured Pod-label exclusions.
    pub labels: Arc<BTreeMap<String, String>>,
    /// Kinds of the Pod's owners, for the owner-kind exclusions.
    pub owner_kinds: Arc<[String]>,
    /// The workload the Pod belongs to; `None` for a bare Pod.
    pub owner: Option<Arc<Owner>>,
    /// The workload's UID, when the Pod's own owner reference names it (not for a Deployment,
    /// which the Pod names only through its ReplicaSet).
    pub owner_uid: Option<Arc<str>>,
    /// Whether the Pod opts out with the skip annotation.
    pub opted_out: bool,
    /// Every container, init container and ephemeral container.
    pub containers: Containers,
    /// When the Pod was created, to tell why it bypasses the cache.
    pub created: Option<SystemTime>,
    /// Containers that have not started, and the fallback annotation: for pull failures.
    pub pull: PullRecord,
}

/// The containers of a Pod, shared with the other Pods of its workload; reads like a slice.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Containers(Arc<[ContainerImage]>);

impl std::ops::Deref for Containers {
    type Target = [ContainerImage];
    fn deref(&self) -> &[ContainerImage] {
        &self.0
    }
}

impl<'a> IntoIterator for &'a Containers {
    type Item = &'a ContainerImage;
    type IntoIter = std::slice::Iter<'a, ContainerImage>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl FromIterator<ContainerImage> for Containers {
    fn from_iter<I: IntoIterator<Item = ContainerImage>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl From<Vec<ContainerImage>> for Containers {
    fn from(v: Vec<ContainerImage>) -> Self {
        Self(v.into())
    }
}

/// Shares equal parts of Pod records: the Pods of a workload differ in name and UID only, so
/// 15,000 Pods of 300 workloads hold 300 copies of their images, labels and owner, not 15,000.
#[derive(Debug, Default)]
pub struct Interner {
    strs: HashSet<Arc<str>>,
    labels: HashSet<Arc<BTreeMap<String, String>>>,
    kinds: HashSet<Arc<[String]>>,
    owners: HashSet<Arc<Owner>>,
    containers: HashSet<Arc<[ContainerImage]>>,
}

fn intern<T: ?Sized + Hash + Eq>(
    set: &mut HashSet<Arc<T>>,
    value: &T,
    make: impl FnOnce() -> Arc<T>,
) -> Arc<T> {
    if let Some(v) = set.get(value) {
        return v.clone();
    }
    let v = make();
    set.insert(v.clone());
    v
}

impl Interner {
    fn str(&mut self, s: &str) -> Arc<str> {
        intern(&mut self.strs, s, || Arc::from(s))
    }

    /// Drops what no record uses any more.
    pub fn prune(&mut self) {
        self.strs.retain(|v| Arc::strong_count(v) > 1);
        self.labels.retain(|v| Arc::strong_count(v) > 1);
        self.kinds.retain(|v| Arc::strong_count(v) > 1);
        self.owners.retain(|v| Arc::strong_count(v) > 1);
        self.containers.retain(|v| Arc::strong_count(v) > 1);
    }
}

impl PodRecord {
    /// Keeps what the reconciler needs of a Pod; `None` when it has no namespace, name or UID.
    pub fn from_pod(pod: &Pod) -> Option<Self> {
        Self::interned(pod, &mut Interner::default())
    }

    /// [`PodRecord::from_pod`], sharing equal parts with earlier records through `interner`.
    pub fn interned(pod: &Pod, interner: &mut Interner) -> Option<Self> {
        let meta = &pod.metadata;
        let annotations = meta.annotations.as_ref();
        let originals: BTreeMap<String, String> = annotations
            .and_then(|a| a.get(ORIGINAL_IMAGES_ANNOTATION))
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        let mut containers = Vec::new();
        if let Some(spec) = &pod.spec {
            let plain = spec
                .init_containers
                .iter()
                .flatten()
                .chain(&spec.containers)
                .map(|c: &Container| (&c.name, c.image.as_ref()));
            let ephemeral = spec
                .ephemeral_containers
                .iter()
                .flatten()
                .map(|c| (&c.name, c.image.as_ref()));
            for (name, image) in plain.chain(ephemeral) {
                let Some(image) = image else { continue };
                containers.push(ContainerImage {
                    container: name.clone(),
                    image: image.clone(),
                    original: originals.get(name).filter(|o| *o != image).cloned(),
                });
            }
            // Image volumes are pulled like container images; they are recorded as
            // `volume/<name>`, which no container name can be.
            for volume in spec.volumes.iter().flatten() {
                let Some(image) = volume.image.as_ref().and_then(|i| i.reference.as_ref()) else {
                    continue;
                };
                let key = format!("volume/{}", volume.name);
                containers.push(ContainerImage {
                    original: originals.get(&key).filter(|o| *o != image).cloned(),
                    container: key,
                    image: image.clone(),
                });
            }
        }
        let owners = meta.owner_references.as_deref().unwrap_or_default();
        let kinds: Vec<String> = owners.iter().map(|o| o.kind.clone()).collect();
        let owner = Owner::of_pod(owners, meta.labels.as_ref());
        let owner_uid = owner.as_ref().and_then(|o| {
            owners
                .iter()
                .find(|r| r.kind == o.kind && r.name == o.name)
                .map(|r| interner.str(&r.uid))
        });
        let labels = meta.labels.clone().unwrap_or_default();
        Some(Self {
            namespace: interner.str(meta.namespace.as_deref()?),
            name: meta.name.clone()?,
            uid: meta.uid.clone()?,
            labels: intern(&mut interner.labels, &labels, || Arc::new(labels.clone())),
            owner_kinds: intern(&mut interner.kinds, kinds.as_slice(), || {
                Arc::from(kinds.clone())
            }),
            owner: owner.map(|o| intern(&mut interner.owners, &o, || Arc::new(o.clone()))),
            owner_uid,
            opted_out: annotations
                .and_then(|a| a.get(SKIP_ANNOTATION))
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
            containers: Containers(intern(
                &mut interner.containers,
                containers.as_slice(),
                || Arc::from(containers.clone()),
            )),
            created: meta
                .creation_timestamp
                .as_ref()
                .map(|t| SystemTime::from(t.0)),
            pull: PullRecord::from_pod(pod),
        })
    }

    /// Why the webhook leaves this whole Pod alone under `config`, if it does: the skip
    /// annotation, the skip label (the chart's objectSelector keeps such Pods from reaching the
    /// webhook), an excluded label or owner kind.
    pub fn webhook_skip(&self, config: &Config) -> Option<PodSkip> {
        let skip_label = self
            .labels
            .get(SKIP_ANNOTATION)
            .is_some_and(|v| v == "true");
        crate::admission::pod_exclusion(
            config,
            self.opted_out || skip_label,
            &self.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            self.owner_kinds.iter().map(String::as_str),
        )
    }

    /// Whether the webhook leaves this Pod alone under `config`.
    pub fn exempt(&self, config: &Config) -> bool {
        // The webhook's own rule, so that the two cannot disagree.
        crate::admission::pod_exclusion(
            config,
            self.opted_out,
            &self.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            self.owner_kinds.iter().map(String::as_str),
        )
        .is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CACHE: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

    fn pod(name: &str, uid: &str, rs: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": name, "namespace": "shop", "uid": uid,
                "labels": {"app": "web", "pod-template-hash": "5d8f9"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "uid": "rs", "controller": true}]
            },
            "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}
        }))
        .unwrap()
    }

    #[test]
    fn pod_records_keep_images_originals_and_exclusion_inputs() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "web", "namespace": "shop", "uid": "u1",
                "labels": {"app": "web"},
                "annotations": {
                    "pullthrough.dev/original-images": "{\"app\":\"nginx:1.27\",\"init\":\"busybox\"}",
                    "pullthrough.dev/skip": "TRUE"
                },
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "sts", "controller": true}]
            },
            "spec": {
                "initContainers": [{"name": "init", "image": "busybox"}],
                "containers": [{"name": "app", "image": format!("{CACHE}/docker-hub/library/nginx:1.27")}],
                "ephemeralContainers": [{"name": "debug", "image": "quay.io/x/y:1"}]
            }
        }))
        .unwrap();
        let r = PodRecord::from_pod(&pod).unwrap();
        assert_eq!(r.uid, "u1");
        assert!(r.opted_out);
        assert_eq!(&*r.owner_kinds, ["StatefulSet".to_owned()]);
        assert_eq!(
            r.owner.as_deref().map(|o| o.kind.as_str()),
            Some("StatefulSet")
        );
        assert_eq!(r.owner_uid.as_deref(), Some("sts"));
        let names: Vec<_> = r.containers.iter().map(|c| c.container.as_str()).collect();
        assert_eq!(names, ["init", "app", "debug"]);
        assert_eq!(r.containers[1].original.as_deref(), Some("nginx:1.27"));
        // An original equal to the current image was not rewritten.
        assert_eq!(r.containers[0].original, None);
        let mut no_uid = pod;
        no_uid.metadata.uid = None;
        assert!(PodRecord::from_pod(&no_uid).is_none());
    }

    #[test]
    fn pod_records_keep_image_volumes_under_their_record_keys() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "web", "namespace": "shop", "uid": "u1",
                "annotations": {"pullthrough.dev/original-images": "{\"volume/models\":\"quay.io/x/models:v3\"}"}
            },
            "spec": {
                "containers": [{"name": "app", "image": "registry.example/app:1"}],
                "volumes": [
                    {"name": "models", "image": {"reference": format!("{CACHE}/quay/x/models:v3")}},
                    {"name": "scratch", "emptyDir": {}}
                ]
            }
        }))
        .unwrap();
        let r = PodRecord::from_pod(&pod).unwrap();
        let names: Vec<_> = r.containers.iter().map(|c| c.container.as_str()).collect();
        assert_eq!(names, ["app", "volume/models"]);
        assert_eq!(
            r.containers[1].original.as_deref(),
            Some("quay.io/x/models:v3")
        );
    }

    #[test]
    fn pods_of_one_workload_share_what_they_have_in_common() {
        let mut interner = Interner::default();
        let a = PodRecord::interned(&pod("web-5d8f9-a", "a", "web-5d8f9"), &mut interner).unwrap();
        let b = PodRecord::interned(&pod("web-5d8f9-b", "b", "web-5d8f9"), &mut interner).unwrap();
        assert!(Arc::ptr_eq(&a.namespace, &b.namespace));
        assert!(Arc::ptr_eq(&a.labels, &b.labels));
        assert!(Arc::ptr_eq(&a.containers.0, &b.containers.0));
        assert!(Arc::ptr_eq(
            a.owner.as_ref().unwrap(),
            b.owner.as_ref().unwrap()
        ));
        // The Deployment is guessed from its ReplicaSet; its UID is not on the Pod.
        assert_eq!(a.owner.as_deref().unwrap().name, "web");
        assert_eq!(a.owner_uid, None);
        assert_ne!(a, b);
        drop(a);
        drop(b);
        interner.prune();
        assert!(interner.containers.is_empty() && interner.strs.is_empty());
    }
}
