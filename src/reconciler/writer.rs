//! Writes the reconciler's Events through the `events.k8s.io/v1` API, and lists those already published.
//!
//! kube's `Recorder` continues only series it created itself (it keeps them in memory for six
//! minutes), so a replica that takes over the Lease, or a restarted one, could only create new
//! objects. This writer keeps the Recorder's conventions (reporting controller and instance,
//! action, `<regarding>.<nanoseconds in hex>` names, series from a count of 2) and continues any
//! series it is given by name.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::Reporter;
use kube::{Api, Client};

use super::plan::Publish;
use super::standing::{
    CAUSE_ANNOTATION, RESOLUTION_ANNOTATION, RESOLUTION_NOTE_ANNOTATION, RESOLVES_ANNOTATION,
};
use super::target::Target;
use super::{ACTION, Severity};

/// Events listed per request.
const PAGE: u32 = 500;

/// What the API server accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The Event object's name.
    pub name: String,
    /// Its series count (1 for a new Event).
    pub count: i32,
}

/// Publishes Events as one reporting controller and instance.
#[derive(Clone)]
pub struct EventWriter {
    client: Client,
    reporter: Reporter,
}

impl EventWriter {
    /// A writer publishing as `reporter`.
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self { client, reporter }
    }

    /// The reporting controller.
    pub fn controller(&self) -> &str {
        &self.reporter.controller
    }

    /// Every Event this controller reported, in all namespaces (the caller keeps those in
    /// scope): one paged list, whatever the number of namespaces.
    pub async fn list(&self) -> Result<Vec<K8sEvent>, kube::Error> {
        let api: Api<K8sEvent> = Api::all(self.client.clone());
        let mut params = ListParams::default()
            .fields(&format!("reportingController={}", self.reporter.controller))
            .limit(PAGE);
        let mut out = Vec::new();
        loop {
            let page = api.list(&params).await?;
            out.extend(page.items);
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(out),
            }
        }
    }

    /// Publishes `event`: a series repeat patches the existing object (a new one if it is
    /// gone, as Events expire), anything else creates one. `Ok(None)` when there is nothing to
    /// publish it on (the summary without a Deployment).
    pub async fn write(
        &self,
        event: &Publish,
        deployment: Option<&ObjectReference>,
    ) -> Result<Option<Written>, kube::Error> {
        let Some(regarding) = reference(&event.target, deployment) else {
            return Ok(None);
        };
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        let now = Timestamp::now();
        if let Some(series) = &event.series {
            // Only the series changes: the Events API keeps the rest of an Event immutable,
            // the reporting instance of the replica that created it included.
            let patch = serde_json::json!({
                "series": {"count": series.count, "lastObservedTime": MicroTime(now)}
            });
            match api
                .patch(&series.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    return Ok(Some(Written {
                        name: series.name.clone(),
                        count: series.count,
                    }));
                }
                Err(kube::Error::Api(status)) if status.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        let name = format!(
            "{}.{:x}",
            regarding
                .name
                .as_deref()
                .unwrap_or(&self.reporter.controller),
            now.as_nanosecond()
        );
        let mut annotations = BTreeMap::new();
        annotations.insert(CAUSE_ANNOTATION.to_owned(), event.cause.clone());
        if let Some(r) = &event.resolution {
            annotations.insert(RESOLUTION_ANNOTATION.to_owned(), r.reason.to_owned());
            annotations.insert(RESOLUTION_NOTE_ANNOTATION.to_owned(), r.note.clone());
        }
        if let Some(resolves) = event.resolves {
            annotations.insert(RESOLVES_ANNOTATION.to_owned(), resolves.to_owned());
        }
        let object = K8sEvent {
            action: Some(ACTION.to_owned()),
            reason: Some(event.reason.to_owned()),
            note: Some(event.note.clone()),
            type_: Some(
                match event.severity {
                    Severity::Normal => "Normal",
                    Severity::Warning => "Warning",
                }
                .to_owned(),
            ),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: regarding.namespace.clone(),
                annotations: Some(annotations),
                ..ObjectMeta::default()
            },
            ..K8sEvent::default()
        };
        api.create(&PostParams::default(), &object).await?;
        Ok(Some(Written { name, count: 1 }))
    }
}

/// The object an Event is about.
fn reference(target: &Target, deployment: Option<&ObjectReference>) -> Option<ObjectReference> {
    Some(match target {
        Target::Pod(p) => ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(p.name.clone()),
            namespace: Some(p.namespace.clone()),
            uid: Some(p.uid.clone()),
            ..ObjectReference::default()
        },
        Target::Workload(w) => ObjectReference {
            api_version: api_version(&w.kind).map(str::to_owned),
            kind: Some(w.kind.clone()),
            name: Some(w.name.clone()),
            namespace: Some(w.namespace.clone()),
            uid: w.uid.clone(),
            ..ObjectReference::default()
        },
        Target::Deployment => deployment?.clone(),
    })
}

fn api_version(kind: &str) -> Option<&'static str> {
    match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => Some("apps/v1"),
        "Job" | "CronJob" => Some("batch/v1"),
        "ReplicationController" => Some("v1"),
        _ => None,
    }
}
