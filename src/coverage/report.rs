//! What `pullthrough coverage` prints: the share through the cache, per registry and state, as a table or as JSON of a stable shape.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::{Image, State};
pub use crate::audit::report::RuleSource;
use crate::audit::report::{align, plural};

/// `apiVersion` of the JSON output.
pub const API_VERSION: &str = "pullthrough.dev/v1alpha1";
/// `kind` of the JSON output.
pub const KIND: &str = "Coverage";

/// Images per state; every state is present, zero or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct States(BTreeMap<State, usize>);

impl Default for States {
    fn default() -> Self {
        Self(State::ALL.iter().map(|s| (*s, 0)).collect())
    }
}

impl States {
    fn add(&mut self, state: State) {
        *self.0.entry(state).or_default() += 1;
    }

    /// Images in `state`.
    pub fn get(&self, state: State) -> usize {
        self.0.get(&state).copied().unwrap_or_default()
    }

    /// Images in every state.
    pub fn total(&self) -> usize {
        self.0.values().sum()
    }

    /// `cached 12, bypassing 1`: the states that have images, in report order.
    fn text(&self) -> String {
        State::ALL
            .iter()
            .filter(|s| self.get(**s) > 0)
            .map(|s| format!("{s} {}", self.get(*s)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The share through the cache, as a percentage to one decimal: cached images among all the
/// images counted. Nothing counted is nothing missed: 100.
pub fn share(cached: usize, total: usize) -> f64 {
    if total == 0 {
        return 100.0;
    }
    let permille = (cached.saturating_mul(1000) + total / 2) / total;
    f64::from(u32::try_from(permille).unwrap_or(1000)) / 10.0
}

/// One registry's images.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegistryCoverage {
    /// The registry (`null` for images that do not parse).
    pub registry: Option<String>,
    /// Its images.
    pub containers: usize,
    /// Those on the cache.
    pub cached: usize,
    /// `cached / containers`, as a percentage.
    pub share: f64,
    /// Its images per state.
    pub states: States,
}

/// The whole answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Always [`API_VERSION`].
    pub api_version: &'static str,
    /// Always [`KIND`].
    pub kind: &'static str,
    /// Where the rule status came from.
    pub rules: RuleSource,
    /// Namespaces looked at.
    pub namespaces: usize,
    /// Pods looked at (running or pending).
    pub pods: usize,
    /// Images counted: containers, init containers, ephemeral containers and image volumes.
    pub containers: usize,
    /// Those on the cache.
    pub cached: usize,
    /// `cached / containers`, as a percentage to one decimal.
    pub share: f64,
    /// Images per state.
    pub states: States,
    /// Per registry, most images first.
    pub registries: Vec<RegistryCoverage>,
    /// With `--details`: every image, by namespace, Pod and container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<Image>>,
    /// Every image, for the table's details and the summary.
    #[serde(skip)]
    all: Vec<Image>,
}

impl Report {
    /// An empty report.
    pub fn new(rules: RuleSource) -> Self {
        Self {
            api_version: API_VERSION,
            kind: KIND,
            rules,
            namespaces: 0,
            pods: 0,
            containers: 0,
            cached: 0,
            share: share(0, 0),
            states: States::default(),
            registries: Vec::new(),
            images: None,
            all: Vec::new(),
        }
    }

    /// Adds one Pod's classified images.
    pub fn add(&mut self, images: Vec<Image>) {
        self.pods += 1;
        self.all.extend(images);
    }

    /// Counts, sorts and sums up; `details` keeps the rows for the output.
    pub fn finish(&mut self, details: bool) {
        self.all.sort_by(|a, b| {
            (&a.namespace, &a.pod, &a.container).cmp(&(&b.namespace, &b.pod, &b.container))
        });
        let mut states = States::default();
        let mut by_registry: BTreeMap<Option<&str>, States> = BTreeMap::new();
        for i in &self.all {
            states.add(i.state);
            by_registry
                .entry(i.registry.as_deref())
                .or_default()
                .add(i.state);
        }
        let mut registries: Vec<RegistryCoverage> = by_registry
            .into_iter()
            .map(|(registry, states)| RegistryCoverage {
                registry: registry.map(str::to_owned),
                containers: states.total(),
                cached: states.get(State::Cached),
                share: share(states.get(State::Cached), states.total()),
                states,
            })
            .collect();
        registries.sort_by(|a, b| {
            b.containers
                .cmp(&a.containers)
                .then_with(|| a.registry.cmp(&b.registry))
        });
        self.containers = states.total();
        self.cached = states.get(State::Cached);
        self.share = share(self.cached, self.containers);
        self.states = states;
        self.registries = registries;
        self.images = details.then(|| self.all.clone());
    }

    /// Whether the share reaches `min` percent (unrounded, so 94.96 does not pass 95).
    pub fn reaches(&self, min: f64) -> bool {
        if self.containers == 0 {
            return true;
        }
        let cached = f64::from(u32::try_from(self.cached).unwrap_or(u32::MAX));
        let total = f64::from(u32::try_from(self.containers).unwrap_or(u32::MAX));
        cached * 100.0 >= min * total
    }

    /// The report as indented JSON, with a final newline.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        let mut out = serde_json::to_string_pretty(self)?;
        out.push('\n');
        Ok(out)
    }

    /// The report as a table per registry, the share, what to do about the rest, and with
    /// `--details` one row per image.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        if self.containers == 0 {
            let _ = writeln!(
                out,
                "No container to count ({} Pod{} in {} namespace{} checked).",
                self.pods,
                plural(self.pods),
                self.namespaces,
                plural(self.namespaces)
            );
            return out;
        }
        let mut rows =
            vec![["REGISTRY", "CONTAINERS", "CACHED", "SHARE", "STATES"].map(str::to_owned)];
        for r in &self.registries {
            rows.push([
                r.registry.clone().unwrap_or_else(|| "-".to_owned()),
                r.containers.to_string(),
                r.cached.to_string(),
                format!("{:.1}%", r.share),
                r.states.text(),
            ]);
        }
        rows.push([
            "total".to_owned(),
            self.containers.to_string(),
            self.cached.to_string(),
            format!("{:.1}%", self.share),
            self.states.text(),
        ]);
        out.push_str(&align(&rows));
        let _ = writeln!(
            out,
            "\n{} of {} container{} ({:.1}%) pull through the cache, in {} Pod{} of {} namespace{}.",
            self.cached,
            self.containers,
            plural(self.containers),
            self.share,
            self.pods,
            plural(self.pods),
            self.namespaces,
            plural(self.namespaces)
        );
        let todo = self.todo();
        if !todo.is_empty() {
            out.push_str("The rest:\n");
            for line in todo {
                let _ = writeln!(out, "  {line}");
            }
        }
        if let Some(images) = &self.images {
            let mut rows = vec![
                [
                    "NAMESPACE",
                    "POD",
                    "CONTAINER",
                    "IMAGE",
                    "REGISTRY",
                    "STATE",
                    "DETAIL",
                ]
                .map(str::to_owned),
            ];
            for i in images {
                rows.push([
                    i.namespace.clone(),
                    i.pod.clone(),
                    i.container.clone(),
                    i.image.clone(),
                    i.registry.clone().unwrap_or_else(|| "-".to_owned()),
                    i.state.to_string(),
                    i.detail.clone(),
                ]);
            }
            out.push('\n');
            out.push_str(&align(&rows));
        }
        out
    }

    /// One line per state and registry that is not on the cache: how many, and what to do.
    fn todo(&self) -> Vec<String> {
        let mut out = Vec::new();
        for state in State::ALL {
            if state == State::Cached {
                continue;
            }
            for r in &self.registries {
                let n = r.states.get(state);
                if n == 0 {
                    continue;
                }
                let registry = r.registry.as_deref().unwrap_or("-");
                // Every image of a registry in one state gets the same advice: say it once.
                let advice = self
                    .all
                    .iter()
                    .find(|i| i.state == state && i.registry.as_deref() == r.registry.as_deref())
                    .map(|i| advice(state, &i.detail))
                    .unwrap_or_default();
                out.push(format!("{state} {registry} ({n}): {advice}"));
            }
        }
        out
    }
}

/// What to do about a state, in a few words; the row's detail where it is the registry's.
fn advice(state: State, detail: &str) -> String {
    match state {
        State::Bypassing => {
            "restart them onto the cache; pullthrough audit lists them with the commands".to_owned()
        }
        State::PinnedNotCached => {
            "pinned digests the cache is not known to hold; pullthrough warm fills and confirms them"
                .to_owned()
        }
        State::Excluded => "left alone on purpose (--details says by what)".to_owned(),
        State::Invalid => "cannot go through the cache (--details says why)".to_owned(),
        State::Cached
        | State::RuleMissing
        | State::Unmapped
        | State::Uncacheable
        | State::PrivateEcr => detail.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(ns: &str, pod: &str, container: &str, registry: &str, state: State) -> Image {
        Image {
            namespace: ns.into(),
            pod: pod.into(),
            container: container.into(),
            image: format!("{registry}/x/{container}:1"),
            registry: Some(registry.into()),
            state,
            detail: format!("{state} detail"),
        }
    }

    fn report(details: bool) -> Report {
        let mut r = Report::new(RuleSource::Live);
        r.namespaces = 2;
        r.add(vec![
            image("shop", "web-1", "app", "docker.io", State::Cached),
            image("shop", "web-1", "sidecar", "docker.io", State::Cached),
            image("shop", "web-1", "init", "docker.io", State::Bypassing),
        ]);
        r.add(vec![
            image("ml", "train", "cuda", "nvcr.io", State::Uncacheable),
            image("ml", "train", "app", "quay.io", State::Cached),
        ]);
        r.finish(details);
        r
    }

    #[test]
    fn the_share_is_cached_among_all_images() {
        assert!((share(3, 5) - 60.0).abs() < f64::EPSILON);
        assert!((share(1180, 1240) - 95.2).abs() < f64::EPSILON);
        assert!((share(2, 3) - 66.7).abs() < f64::EPSILON);
        assert!((share(0, 0) - 100.0).abs() < f64::EPSILON);
        let r = report(false);
        assert_eq!((r.cached, r.containers, r.pods), (3, 5, 2));
        assert!(r.reaches(60.0));
        assert!(!r.reaches(60.1));
        assert!(Report::new(RuleSource::Live).reaches(100.0));
    }

    #[test]
    fn the_json_has_the_share_per_registry_and_state() {
        let json: serde_json::Value =
            serde_json::from_str(&report(false).to_json().unwrap()).unwrap();
        assert_eq!(json["apiVersion"], API_VERSION);
        assert_eq!(json["kind"], KIND);
        assert_eq!(json["rules"], "live");
        assert_eq!(json["containers"], 5);
        assert_eq!(json["cached"], 3);
        assert_eq!(json["share"], 60.0);
        assert_eq!(json["states"]["cached"], 3);
        assert_eq!(json["states"]["bypassing"], 1);
        assert_eq!(json["states"]["uncacheable"], 1);
        assert_eq!(json["states"]["pinned-not-cached"], 0);
        assert_eq!(json["states"].as_object().unwrap().len(), 9);
        assert_eq!(json["registries"][0]["registry"], "docker.io");
        assert_eq!(json["registries"][0]["containers"], 3);
        assert_eq!(json["registries"][0]["share"], 66.7);
        assert_eq!(json["registries"][1]["registry"], "nvcr.io");
        assert_eq!(json.get("images"), None, "rows only with --details");

        let detailed: serde_json::Value =
            serde_json::from_str(&report(true).to_json().unwrap()).unwrap();
        let rows = detailed["images"].as_array().unwrap();
        assert_eq!(rows.len(), 5);
        assert_eq!(
            rows[0],
            serde_json::json!({
                "namespace": "ml", "pod": "train", "container": "app",
                "image": "quay.io/x/app:1", "registry": "quay.io",
                "state": "cached", "detail": "cached detail"
            })
        );
    }

    #[test]
    fn the_table_sums_up_per_registry_and_says_what_to_do() {
        let table = report(false).to_table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0], "REGISTRY   CONTAINERS  CACHED  SHARE   STATES",
            "{table}"
        );
        assert_eq!(
            lines[1],
            "docker.io  3           2       66.7%   cached 2, bypassing 1"
        );
        assert_eq!(
            lines[4],
            "total      5           3       60.0%   cached 3, bypassing 1, uncacheable 1"
        );
        assert!(
            table.contains(
                "\n3 of 5 containers (60.0%) pull through the cache, in 2 Pods of 2 namespaces.\n"
            ),
            "{table}"
        );
        assert!(table.contains("\n  bypassing docker.io (1): restart them onto the cache"));
        assert!(table.contains("\n  uncacheable nvcr.io (1): uncacheable detail\n"));
        assert!(!table.contains("NAMESPACE"));
        let detailed = report(true).to_table();
        assert!(
            detailed.contains("\nNAMESPACE  POD    CONTAINER  IMAGE"),
            "{detailed}"
        );
        assert!(detailed.contains("\nshop       web-1  init       docker.io/x/init:1     docker.io  bypassing    bypassing detail\n"), "{detailed}");
    }

    #[test]
    fn an_empty_report_says_what_was_checked() {
        let mut r = Report::new(RuleSource::Unavailable);
        r.namespaces = 1;
        r.finish(false);
        assert_eq!(
            r.to_table(),
            "No container to count (0 Pods in 1 namespace checked).\n"
        );
    }
}
