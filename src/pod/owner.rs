//! The top-level owner of a Pod, as far as the Pod itself tells: the workload its Events go on.

/// The top-level owner of a Pod: the workload its Events go on. A bare Pod has none.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    /// Kind: Deployment, StatefulSet, DaemonSet, CronJob, Job, ReplicaSet, or another
    /// controller's kind.
    pub kind: String,
    /// Name, in the Pod's namespace.
    pub name: String,
}

impl Owner {
    /// The Pod's top-level owner as far as the Pod itself tells: its controller, and for a
    /// ReplicaSet named `<deployment>-<pod-template-hash>` (as the Deployment controller names
    /// them) that Deployment.
    pub fn of_pod(
        owners: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference],
        labels: Option<&std::collections::BTreeMap<String, String>>,
    ) -> Option<Self> {
        let controller = owners
            .iter()
            .find(|o| o.controller == Some(true))
            .or_else(|| owners.first())?;
        if controller.kind == "ReplicaSet"
            && let Some(hash) = labels.and_then(|l| l.get("pod-template-hash"))
            && let Some(deployment) = controller
                .name
                .strip_suffix(hash.as_str())
                .and_then(|n| n.strip_suffix('-'))
            && !deployment.is_empty()
        {
            return Some(Self {
                kind: "Deployment".to_owned(),
                name: deployment.to_owned(),
            });
        }
        Some(Self {
            kind: controller.kind.clone(),
            name: controller.name.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;

    fn owner(kind: &str, name: &str, controller: bool) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: kind.into(),
            name: name.into(),
            uid: "u".into(),
            controller: Some(controller),
            block_owner_deletion: None,
        }
    }

    fn labels(hash: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("pod-template-hash".to_owned(), hash.to_owned())])
    }

    #[test]
    fn a_deployment_is_read_from_its_replica_set_name() {
        let got = Owner::of_pod(
            &[owner("ReplicaSet", "web-7d4b9c8f6", true)],
            Some(&labels("7d4b9c8f6")),
        );
        assert_eq!(
            got,
            Some(Owner {
                kind: "Deployment".into(),
                name: "web".into()
            })
        );
    }

    #[test]
    fn a_replica_set_not_named_after_the_hash_stays_itself() {
        let got = Owner::of_pod(&[owner("ReplicaSet", "web", true)], Some(&labels("abc")));
        assert_eq!(got.map(|o| o.kind), Some("ReplicaSet".to_owned()));
    }

    #[test]
    fn the_controller_wins_and_a_bare_pod_has_no_owner() {
        let got = Owner::of_pod(
            &[owner("Node", "n1", false), owner("StatefulSet", "db", true)],
            None,
        );
        assert_eq!(got.map(|o| o.name), Some("db".to_owned()));
        assert_eq!(Owner::of_pod(&[], None), None);
    }
}
