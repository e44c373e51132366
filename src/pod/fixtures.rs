//! Builders of Pod records for the unit tests of the reconciler and of every check.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use super::{ContainerImage, Owner, PodRecord};

/// A bare Pod `pod-<uid>` in `shop` with containers `c0`, `c1`, … running `images`.
pub fn record(uid: &str, images: &[&str]) -> PodRecord {
    PodRecord {
        namespace: "shop".into(),
        name: format!("pod-{uid}"),
        uid: uid.into(),
        labels: Arc::default(),
        owner_kinds: Arc::from(Vec::new()),
        owner: None,
        owner_uid: None,
        opted_out: false,
        created: None,
        pull: crate::pod::PullRecord::default(),
        containers: images
            .iter()
            .enumerate()
            .map(|(i, image)| ContainerImage {
                container: format!("c{i}"),
                image: (*image).to_owned(),
                original: None,
            })
            .collect(),
    }
}

impl PodRecord {
    /// Owned by the workload `kind`/`name`, and named after it.
    #[must_use]
    pub fn owned_by(mut self, kind: &str, name: &str) -> Self {
        self.owner = Some(Arc::new(Owner {
            kind: kind.into(),
            name: name.into(),
        }));
        self.owner_kinds = Arc::from(vec![kind.to_owned()]);
        self.name = format!("{name}-{}", self.uid);
        self
    }

    /// With a label.
    #[must_use]
    pub fn labelled(mut self, key: &str, value: &str) -> Self {
        Arc::make_mut(&mut self.labels).insert(key.into(), value.into());
        self
    }

    /// With container `index` rewritten from `original`.
    #[must_use]
    pub fn rewritten_from(mut self, index: usize, original: &str) -> Self {
        let mut containers = self.containers.to_vec();
        containers[index].original = Some(original.into());
        self.containers = containers.into();
        self
    }
}
