//! What the watchers know, shared with the publishing loop and the warmer: the Pods of the cluster, the opted-in namespaces, and what changed since the loop last looked.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::runtime::watcher;

use crate::audit::{self, selector::Selector};
use crate::pod::{Interner, PodRecord};

/// Namespaces whose Pods are never looked at, whatever their labels say (the webhook's
/// configuration excludes them too).
const ALWAYS_EXCLUDED: &str = "kube-system";
/// The interner drops what no Pod uses any more after this many deletions.
const PRUNE_EVERY: u64 = 1024;

#[derive(Default)]
pub(super) struct Inventory {
    pub(super) pods: HashMap<String, PodRecord>,
    interner: Interner,
    pub(super) pods_synced: bool,
    pub(super) namespaces: BTreeSet<String>,
    pub(super) namespaces_synced: bool,
    /// Bumped on every change, so the loop knows when to look again.
    pub(super) generation: u64,
    /// UIDs of Pods deleted since the loop last looked.
    pub(super) deleted: Vec<String>,
    /// Pods deleted since the start, to prune the interner now and then.
    removed: u64,
    /// When each opted-in namespace was opted in, where its managed fields tell.
    pub(super) opted_in_at: BTreeMap<String, SystemTime>,
}

pub(super) type Shared = Arc<Mutex<Inventory>>;

pub(super) fn lock(inventory: &Shared) -> std::sync::MutexGuard<'_, Inventory> {
    // The inventory is plain data: a panic elsewhere cannot leave it half-updated in a way
    // that matters more than stopping would.
    inventory.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inventory {
    /// Whether the reconciler looks at `pod`: in an opted-in namespace, neither its own nor
    /// kube-system.
    pub(super) fn in_scope(&self, pod: &PodRecord, own_namespace: &str) -> bool {
        self.namespaces.contains(&*pod.namespace)
            && *pod.namespace != *own_namespace
            && &*pod.namespace != ALWAYS_EXCLUDED
    }

    /// The Pods the reconciler looks at.
    pub(super) fn pods_in_scope(&self, own_namespace: &str) -> Vec<&PodRecord> {
        self.pods
            .values()
            .filter(|p| self.in_scope(p, own_namespace))
            .collect()
    }
}

/// Applies the Pod watcher's events; a relist is gathered aside and replaces the Pods once it
/// is complete, so that the Pods it no longer holds count as deleted.
#[derive(Default)]
pub(super) struct PodFeed {
    fresh: Option<HashMap<String, PodRecord>>,
}

impl PodFeed {
    pub(super) fn apply(&mut self, inv: &mut Inventory, event: watcher::Event<Pod>) {
        match event {
            watcher::Event::Init => self.fresh = Some(HashMap::new()),
            watcher::Event::InitApply(pod) => {
                if let Some(fresh) = self.fresh.as_mut()
                    && let Some(record) = PodRecord::interned(&pod, &mut inv.interner)
                {
                    fresh.insert(record.uid.clone(), record);
                }
            }
            watcher::Event::InitDone => {
                let fresh = self.fresh.take().unwrap_or_default();
                let gone: Vec<String> = inv
                    .pods
                    .keys()
                    .filter(|uid| !fresh.contains_key(*uid))
                    .cloned()
                    .collect();
                inv.deleted.extend(gone);
                inv.pods = fresh;
                inv.interner.prune();
                inv.pods_synced = true;
                inv.generation += 1;
            }
            watcher::Event::Apply(pod) => {
                if let Some(record) = PodRecord::interned(&pod, &mut inv.interner)
                    && inv.pods.get(&record.uid) != Some(&record)
                {
                    inv.pods.insert(record.uid.clone(), record);
                    inv.generation += 1;
                }
            }
            watcher::Event::Delete(pod) => {
                if let Some(uid) = pod.metadata.uid
                    && inv.pods.remove(&uid).is_some()
                {
                    inv.deleted.push(uid);
                    inv.generation += 1;
                    inv.removed += 1;
                    if inv.removed.is_multiple_of(PRUNE_EVERY) {
                        inv.interner.prune();
                    }
                }
            }
        }
    }
}

/// Applies the namespace watcher's events, and finds when each namespace was opted in.
pub(super) struct NamespaceFeed {
    /// The API server checks the selector; this copy only finds when its labels were set.
    selector: Selector,
    fresh: Option<BTreeSet<String>>,
    fresh_opted_in: BTreeMap<String, SystemTime>,
}

impl NamespaceFeed {
    pub(super) fn new(selector: &str) -> Self {
        Self {
            selector: Selector::parse(selector).unwrap_or_default(),
            fresh: None,
            fresh_opted_in: BTreeMap::new(),
        }
    }

    pub(super) fn apply(&mut self, inv: &mut Inventory, event: watcher::Event<Namespace>) {
        match event {
            watcher::Event::Init => {
                self.fresh = Some(BTreeSet::new());
                self.fresh_opted_in.clear();
            }
            watcher::Event::InitApply(ns) => {
                let opted_in = audit::opted_in_at(&ns, &self.selector);
                if let (Some(fresh), Some(name)) = (self.fresh.as_mut(), ns.metadata.name) {
                    if let Some(t) = opted_in {
                        self.fresh_opted_in.insert(name.clone(), t);
                    }
                    fresh.insert(name);
                }
            }
            watcher::Event::InitDone => {
                inv.namespaces = self.fresh.take().unwrap_or_default();
                inv.opted_in_at = std::mem::take(&mut self.fresh_opted_in);
                inv.namespaces_synced = true;
                inv.generation += 1;
            }
            watcher::Event::Apply(ns) => {
                let opted_in = audit::opted_in_at(&ns, &self.selector);
                if let Some(name) = ns.metadata.name {
                    let changed = match opted_in {
                        Some(t) => inv.opted_in_at.insert(name.clone(), t) != Some(t),
                        None => inv.opted_in_at.remove(&name).is_some(),
                    };
                    if inv.namespaces.insert(name) || changed {
                        inv.generation += 1;
                    }
                }
            }
            watcher::Event::Delete(ns) => {
                if let Some(name) = ns.metadata.name
                    && inv.namespaces.remove(&name)
                {
                    inv.opted_in_at.remove(&name);
                    inv.generation += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(namespace: &str, name: &str, image: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace, "uid": format!("{namespace}/{name}")},
            "spec": {"containers": [{"name": "app", "image": image}]}
        }))
        .unwrap()
    }

    fn namespace(name: &str) -> Namespace {
        serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()
    }

    #[test]
    fn a_relist_replaces_the_pods_and_counts_the_missing_ones_as_deleted() {
        let mut inv = Inventory::default();
        let mut feed = PodFeed::default();
        feed.apply(&mut inv, watcher::Event::Apply(pod("shop", "old", "nginx")));
        assert_eq!(inv.generation, 1);
        assert!(!inv.pods_synced);
        feed.apply(&mut inv, watcher::Event::Init);
        feed.apply(
            &mut inv,
            watcher::Event::InitApply(pod("shop", "web", "nginx")),
        );
        // Until the relist is done, the Pods known stay as they were.
        assert!(inv.pods.contains_key("shop/old"));
        feed.apply(&mut inv, watcher::Event::InitDone);
        assert!(inv.pods_synced);
        assert_eq!(inv.generation, 2);
        assert_eq!(inv.pods.keys().collect::<Vec<_>>(), ["shop/web"]);
        assert_eq!(inv.deleted, ["shop/old"]);
    }

    #[test]
    fn only_a_changed_pod_bumps_the_generation_and_a_delete_is_remembered() {
        let mut inv = Inventory::default();
        let mut feed = PodFeed::default();
        feed.apply(&mut inv, watcher::Event::Apply(pod("shop", "web", "nginx")));
        feed.apply(&mut inv, watcher::Event::Apply(pod("shop", "web", "nginx")));
        assert_eq!(inv.generation, 1);
        feed.apply(
            &mut inv,
            watcher::Event::Apply(pod("shop", "web", "nginx:1.27")),
        );
        assert_eq!(inv.generation, 2);
        feed.apply(
            &mut inv,
            watcher::Event::Delete(pod("shop", "web", "nginx:1.27")),
        );
        assert_eq!(inv.generation, 3);
        assert!(inv.pods.is_empty());
        assert_eq!(inv.deleted, ["shop/web"]);
        // A Pod never seen is not a change.
        feed.apply(&mut inv, watcher::Event::Delete(pod("shop", "other", "x")));
        assert_eq!(inv.generation, 3);
    }

    #[test]
    fn namespaces_come_and_go_and_scope_leaves_out_kube_system_and_our_own() {
        let mut inv = Inventory::default();
        let mut feed = NamespaceFeed::new("pullthrough.dev/enabled=true");
        feed.apply(&mut inv, watcher::Event::Init);
        for name in ["shop", "kube-system", "pullthrough"] {
            feed.apply(&mut inv, watcher::Event::InitApply(namespace(name)));
        }
        feed.apply(&mut inv, watcher::Event::InitDone);
        assert!(inv.namespaces_synced);
        let mut pods = PodFeed::default();
        for ns in ["shop", "kube-system", "pullthrough", "elsewhere"] {
            pods.apply(&mut inv, watcher::Event::Apply(pod(ns, "web", "nginx")));
        }
        let uids: Vec<&str> = inv
            .pods_in_scope("pullthrough")
            .iter()
            .map(|p| p.uid.as_str())
            .collect();
        assert_eq!(uids, ["shop/web"]);

        let generation = inv.generation;
        feed.apply(&mut inv, watcher::Event::Apply(namespace("shop")));
        assert_eq!(inv.generation, generation, "nothing changed");
        feed.apply(&mut inv, watcher::Event::Delete(namespace("shop")));
        assert_eq!(inv.generation, generation + 1);
        assert!(inv.pods_in_scope("pullthrough").is_empty());
    }
}
