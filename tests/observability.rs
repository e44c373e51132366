//! The chart's Grafana dashboard and PrometheusRule against the metrics the program exports:
//! the dashboard parses, every panel queries something, and every `pullthrough_*` name in a
//! query or an alert is one the webhook or the reconciler registers. `.ci/alerts.sh` runs
//! `promtool check rules` and `promtool test rules` on the rendered PrometheusRule.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use prometheus::core::Collector;
use pullthrough::cache::metrics::CacheMetrics;
use pullthrough::metrics::Metrics;
use pullthrough::reconciler::run::ReconcilerMetrics;
use serde_json::Value;

/// Metrics registered elsewhere than the registries built here; none today.
const FROM_OTHER_CHECKS: [&str; 0] = [];

fn chart(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("charts/pullthrough")
        .join(path)
}

/// Every metric name the program registers, as scraped (`pullthrough_` prefix, histogram
/// series included).
fn exported() -> BTreeSet<String> {
    let m = Metrics::new().unwrap();
    let r = ReconcilerMetrics::register(m.registry()).unwrap();
    let c = CacheMetrics::register(m.registry()).unwrap();
    let warm = pullthrough::warm::run::WarmMetrics::register(m.registry()).unwrap();
    let digests = pullthrough::digests::run::DigestMetrics::register(m.registry()).unwrap();
    let collectors: Vec<&dyn Collector> = vec![
        &m.admission.requests,
        &m.admission.duration,
        &m.admission.images,
        &m.config.reloads,
        &m.config.last_success_seconds,
        &m.tls.reloads,
        &m.tls.cert_not_after_seconds,
        &m.rules.status,
        &m.rules.refreshes,
        &m.rules.failures,
        &m.rules.last_success_seconds,
        &r.runs,
        &r.failures,
        &r.events,
        &r.leader,
        &r.pods,
        &r.standing,
        &r.rate_limited,
        &r.bypassing,
        &r.containers,
        &r.pulls.failures,
        &r.pulls.fallbacks,
        &warm.warms,
        &digests.known,
        &digests.checks,
        &digests.dropped,
        &c.repositories,
        &c.images,
        &c.bytes,
        &c.template_present,
        &c.refreshes,
        &c.last_success_seconds,
    ];
    let mut names = BTreeSet::new();
    for collector in collectors {
        for desc in collector.desc() {
            let name = format!("pullthrough_{}", desc.fq_name);
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
            names.insert(name);
        }
    }
    // Every registered family is in the list above: gather() shows those with a sample.
    m.admission.duration.observe(0.001);
    for family in m.registry().gather() {
        assert!(
            names.contains(family.name()),
            "{} is registered but not checked here",
            family.name()
        );
    }
    names
}

/// The `pullthrough_*` names in a query.
fn metric_names(query: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = query;
    while let Some(at) = rest.find("pullthrough_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        // Skip names inside a longer identifier.
        let before = rest[..at].chars().last();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            names.push(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

fn known(name: &str, exported: &BTreeSet<String>) -> bool {
    exported.contains(name) || FROM_OTHER_CHECKS.contains(&name)
}

#[test]
fn every_dashboard_panel_queries_metrics_the_program_exports() {
    let exported = exported();
    let text = std::fs::read_to_string(chart("dashboards/pullthrough.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(dashboard["uid"], "pullthrough");
    let panels = dashboard["panels"].as_array().unwrap();
    let mut queried = BTreeSet::new();
    let mut titles = BTreeSet::new();
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().unwrap();
        assert!(titles.insert(title.to_owned()), "two panels titled {title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title} has no query");
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            let names = metric_names(expr);
            assert!(
                !names.is_empty(),
                "{title}: {expr} names no pullthrough metric"
            );
            for name in names {
                assert!(known(&name, &exported), "{title}: {name} is not exported");
                queried.insert(name);
            }
        }
    }
    // What the dashboard promises to show.
    for name in [
        "pullthrough_admission_requests_total",
        "pullthrough_admission_duration_seconds_bucket",
        "pullthrough_images_total",
        "pullthrough_rule_status",
        "pullthrough_cache_bytes",
        "pullthrough_bypassing_containers",
        "pullthrough_containers",
        "pullthrough_pull_failures_total",
    ] {
        assert!(queried.contains(name), "no panel shows {name}");
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(q) = variable["definition"].as_str() {
            for name in metric_names(q) {
                assert!(known(&name, &exported), "variable: {name} is not exported");
            }
        }
    }
}

#[test]
fn every_alert_queries_metrics_the_program_exports() {
    let exported = exported();
    let text = std::fs::read_to_string(chart("templates/prometheusrule.yaml")).unwrap();
    let alerts = text
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count();
    assert!(alerts >= 10, "{alerts} alerts");
    // Every name anywhere in the template: expressions, and annotations that quote one.
    let mut seen = BTreeSet::new();
    for name in metric_names(&text) {
        assert!(known(&name, &exported), "{name} is not exported");
        seen.insert(name);
    }
    for name in [
        "pullthrough_tls_cert_not_after_seconds",
        "pullthrough_config_reloads_total",
        "pullthrough_rule_status",
        "pullthrough_rule_last_refresh_success_timestamp_seconds",
        "pullthrough_cache_template_present",
    ] {
        assert!(seen.contains(name), "no alert on {name}");
    }
}

#[test]
fn names_are_found_in_queries() {
    assert_eq!(
        metric_names("sum(rate(pullthrough_a_total{x=\"y\"}[5m])) / pullthrough_b"),
        ["pullthrough_a_total", "pullthrough_b"]
    );
    assert!(metric_names("not_pullthrough_x").is_empty());
}
