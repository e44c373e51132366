//! What `pullthrough audit` prints: the bypassing containers as a table or as JSON of a stable shape.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::Serialize;

use super::{Facts, LikelyCause, bypasses, fix, rfc3339};
use crate::config::Config;
use crate::pod::Owner;
use crate::pod::PodRecord;
use crate::rules::RuleSnapshot;

/// `apiVersion` of the JSON output.
pub const API_VERSION: &str = "pullthrough.dev/v1alpha1";
/// `kind` of the JSON output.
pub const KIND: &str = "BypassAudit";

/// Where the rule status came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RuleSource {
    /// Read from ECR just now.
    Live,
    /// ECR could not be read: the map alone decided.
    Unavailable,
    /// `ruleCheck.enabled: false`: the webhook does not read the rules either.
    Disabled,
}

/// A workload, in the output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnerRef {
    /// Kind (Deployment, StatefulSet, DaemonSet, CronJob, Job, or another controller's).
    pub kind: String,
    /// Name.
    pub name: String,
}

/// One bypassing container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// Namespace.
    pub namespace: String,
    /// The Pod's top-level owner; `null` for a bare Pod.
    pub owner: Option<OwnerRef>,
    /// Pod name.
    pub pod: String,
    /// Container name (containers, init containers and ephemeral containers alike).
    pub container: String,
    /// The upstream image it runs.
    pub image: String,
    /// The image the webhook would give it.
    pub would_be: String,
    /// Upstream registry, as in the map.
    pub registry: String,
    /// ECR repository prefix of the rule.
    pub prefix: String,
    /// The likely cause: `beforeNamespaceOptIn`, `beforeRule`, `webhookUnreachable` or
    /// `namespaceNotOptedIn`.
    pub reason: &'static str,
    /// When the namespace was opted in or the rule became usable, for the causes that have
    /// such a time (RFC 3339).
    pub since: Option<String>,
    /// The cause in a sentence.
    pub explanation: String,
    /// The command that moves the container onto the cache.
    pub fix: String,
    /// The likely cause itself, for the table.
    #[serde(skip)]
    pub cause: LikelyCause,
}

/// The whole answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    /// The bypassing containers, by namespace, owner, Pod and container.
    pub bypassing: Vec<Row>,
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
            bypassing: Vec::new(),
        }
    }

    /// Adds the bypassing containers of one Pod, whose top-level owner is `owner`.
    pub fn add(
        &mut self,
        config: &Config,
        rules: &RuleSnapshot,
        facts: &Facts,
        pod: &PodRecord,
        owner: Option<&Owner>,
    ) {
        self.pods += 1;
        for b in bypasses(config, rules, pod) {
            let cause = LikelyCause::infer(facts, pod, &b.registry);
            self.bypassing.push(Row {
                namespace: pod.namespace.to_string(),
                owner: owner.map(|o| OwnerRef {
                    kind: o.kind.clone(),
                    name: o.name.clone(),
                }),
                pod: pod.name.clone(),
                container: b.container,
                image: b.image,
                would_be: b.would_be,
                registry: b.registry,
                prefix: b.prefix,
                reason: cause.name(),
                since: cause.since().map(rfc3339),
                explanation: cause.to_string(),
                fix: fix(&pod.namespace, &pod.name, owner, cause),
                cause,
            });
        }
    }

    /// Sorts the rows so that the output does not depend on the API server's order.
    pub fn sort(&mut self) {
        self.bypassing.sort_by(|a, b| {
            (&a.namespace, &a.owner_text(), &a.pod, &a.container).cmp(&(
                &b.namespace,
                &b.owner_text(),
                &b.pod,
                &b.container,
            ))
        });
    }

    /// The report as indented JSON, with a final newline.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        let mut out = serde_json::to_string_pretty(self)?;
        out.push('\n');
        Ok(out)
    }

    /// The report as a table, then the fixes, one per workload.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        if self.bypassing.is_empty() {
            let _ = writeln!(
                out,
                "No container bypasses the pull-through cache ({} Pod{} in {} namespace{} checked).",
                self.pods,
                plural(self.pods),
                self.namespaces,
                plural(self.namespaces)
            );
            return out;
        }
        let mut rows = vec![
            [
                "NAMESPACE",
                "OWNER",
                "POD",
                "CONTAINER",
                "IMAGE",
                "WOULD BE",
                "REASON",
            ]
            .map(str::to_owned),
        ];
        for r in &self.bypassing {
            rows.push([
                r.namespace.clone(),
                r.owner_text(),
                r.pod.clone(),
                r.container.clone(),
                r.image.clone(),
                r.would_be.clone(),
                r.cause.short(),
            ]);
        }
        out.push_str(&align(&rows));
        let pods: BTreeSet<(&str, &str)> = self
            .bypassing
            .iter()
            .map(|r| (r.namespace.as_str(), r.pod.as_str()))
            .collect();
        let _ = writeln!(
            out,
            "\n{} container{} in {} of {} Pod{} bypass the pull-through cache. To fix (pullthrough restarts nothing itself):",
            self.bypassing.len(),
            plural(self.bypassing.len()),
            pods.len(),
            self.pods,
            plural(self.pods)
        );
        let fixes: BTreeSet<&str> = self.bypassing.iter().map(|r| r.fix.as_str()).collect();
        for f in fixes {
            let _ = writeln!(out, "  {f}");
        }
        out
    }
}

impl Row {
    fn owner_text(&self) -> String {
        self.owner
            .as_ref()
            .map_or_else(|| "-".to_owned(), |o| format!("{}/{}", o.kind, o.name))
    }
}

pub(crate) fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Columns padded to their widest cell, two spaces apart; the last column is not padded.
pub(crate) fn align<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::config::Overrides;
    use crate::pod::fixtures::record;

    fn config() -> Config {
        Config::load(
            "accountId: \"123456789012\"\nregion: eu-west-1\n",
            &Overrides::default(),
        )
        .unwrap()
    }

    fn pod(ns: &str, name: &str, images: &[&str]) -> PodRecord {
        PodRecord {
            namespace: ns.into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            created: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000)),
            ..record("", images)
        }
    }

    fn report() -> Report {
        let c = config();
        let rules = RuleSnapshot::unknown();
        let mut facts = Facts::default();
        facts.opted_in_at.insert(
            "shop".into(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(2_000),
        );
        let mut r = Report::new(RuleSource::Live);
        r.namespaces = 2;
        let web = Owner {
            kind: "Deployment".into(),
            name: "web".into(),
        };
        r.add(
            &c,
            &rules,
            &facts,
            &pod("shop", "web-1", &["nginx:1.27"]),
            Some(&web),
        );
        r.add(
            &c,
            &rules,
            &facts,
            &pod("api", "debug", &["quay.io/org/tool:2"]),
            None,
        );
        r.add(
            &c,
            &rules,
            &facts,
            &pod(
                "api",
                "fine",
                &["123456789012.dkr.ecr.eu-west-1.amazonaws.com/quay/org/tool:2"],
            ),
            None,
        );
        r.sort();
        r
    }

    #[test]
    fn the_table_lists_each_container_and_the_fixes() {
        let table = report().to_table();
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].starts_with(
                "NAMESPACE  OWNER           POD    CONTAINER  IMAGE               WOULD BE"
            ),
            "{table}"
        );
        assert!(lines[1].starts_with("api        -               debug  c0         quay.io/org/tool:2  123456789012.dkr.ecr.eu-west-1.amazonaws.com/quay/org/tool:2                admitted"), "{table}");
        assert!(
            lines[1].ends_with("admitted without the webhook"),
            "{table}"
        );
        assert!(
            lines[2].starts_with("shop       Deployment/web  web-1  c0         nginx:1.27"),
            "{table}"
        );
        assert!(
            lines[2].ends_with("created before namespace opt-in (1970-01-01T00:33:20Z)"),
            "{table}"
        );
        assert!(table.contains("2 containers in 2 of 3 Pods bypass the pull-through cache"));
        assert!(table.contains("\n  kubectl rollout restart deployment/web -n shop\n"));
        assert!(table.contains("\n  delete the Pod and create it again from its manifest (kubectl delete pod debug -n api)\n"));
    }

    #[test]
    fn the_json_shape_is_stable() {
        let json: serde_json::Value = serde_json::from_str(&report().to_json().unwrap()).unwrap();
        assert_eq!(json["apiVersion"], API_VERSION);
        assert_eq!(json["kind"], KIND);
        assert_eq!(json["rules"], "live");
        assert_eq!(json["namespaces"], 2);
        assert_eq!(json["pods"], 3);
        let rows = json["bypassing"].as_array().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["owner"], serde_json::Value::Null);
        assert_eq!(rows[0]["reason"], "webhookUnreachable");
        assert_eq!(rows[0]["since"], serde_json::Value::Null);
        assert_eq!(
            rows[1],
            serde_json::json!({
                "namespace": "shop",
                "owner": {"kind": "Deployment", "name": "web"},
                "pod": "web-1",
                "container": "c0",
                "image": "nginx:1.27",
                "wouldBe": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/docker-hub/library/nginx:1.27",
                "registry": "docker.io",
                "prefix": "docker-hub",
                "reason": "beforeNamespaceOptIn",
                "since": "1970-01-01T00:33:20Z",
                "explanation": "it was created before its namespace was opted in (1970-01-01T00:33:20Z)",
                "fix": "kubectl rollout restart deployment/web -n shop"
            })
        );
    }

    #[test]
    fn an_empty_report_says_what_was_checked() {
        let mut r = Report::new(RuleSource::Unavailable);
        r.pods = 1;
        r.namespaces = 3;
        assert_eq!(
            r.to_table(),
            "No container bypasses the pull-through cache (1 Pod in 3 namespaces checked).\n"
        );
    }
}
