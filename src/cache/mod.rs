//! What the pull-through cache holds and costs, per mapped prefix: the pure aggregation of
//! repositories and images into a [`Report`], and its table and JSON renderings.
//!
//! The ECR reads are in [`run`]; [`template`] decides whether a repository creation template
//! covers a rule and proposes one; [`metrics`] exports the per-prefix gauges.

pub mod metrics;
pub mod run;
pub use crate::config::cache as settings;
pub mod template;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::config::{Config, Mapping};
use crate::ecr::{ImageStorage, ImageSummary, Repository};

/// AWS bills storage per GB of 10^9 bytes.
pub const BYTES_PER_GB: f64 = 1e9;
/// The ECR private registry's standard storage price in most regions, USD per GB-month.
pub const DEFAULT_PRICE_PER_GB: f64 = 0.10;
/// Seconds in a day.
const DAY: i64 = 86_400;

/// The repositories under one mapped prefix, each with its images.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrefixContents {
    /// Repository name to its images.
    pub repositories: BTreeMap<String, Vec<ImageSummary>>,
}

/// What was read from ECR: the contents of every mapped prefix, by ECR prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// ECR prefix (`docker-hub`, `ROOT`) to its contents.
    pub prefixes: BTreeMap<String, PrefixContents>,
    /// Whether the listing stopped at the repository limit before its last page.
    pub truncated: bool,
}

/// The ECR prefix a repository belongs to among the mapped ones: the longest prefix it sits
/// under (`docker-hub/library/nginx` is under `docker-hub`), or the `ROOT` mapping when there
/// is one and no prefix matches.
pub fn prefix_of<'c>(config: &'c Config, repository: &str) -> Option<&'c Mapping> {
    let mut best: Option<&Mapping> = None;
    for m in config.registries.values() {
        let Some(prefix) = &m.prefix else { continue };
        let under = repository
            .strip_prefix(prefix.as_str())
            .is_some_and(|rest| rest.starts_with('/'));
        if under && best.is_none_or(|b| b.ecr_prefix().len() < prefix.len()) {
            best = Some(m);
        }
    }
    best.or_else(|| config.registries.values().find(|m| m.prefix.is_none()))
}

/// Sorts repositories into the mapped prefixes; repositories under no mapped prefix are left
/// out. Every mapped prefix gets an entry, empty when ECR created nothing under it.
pub fn sort_repositories<'r>(
    config: &Config,
    repositories: &'r [Repository],
) -> BTreeMap<String, Vec<&'r str>> {
    let mut sorted: BTreeMap<String, Vec<&str>> = config
        .registries
        .values()
        .map(|m| (m.ecr_prefix().to_owned(), Vec::new()))
        .collect();
    for r in repositories {
        if let Some(m) = prefix_of(config, &r.name)
            && let Some(list) = sorted.get_mut(m.ecr_prefix())
        {
            list.push(&r.name);
        }
    }
    sorted
}

/// How the report prices and ages what it counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pricing {
    /// USD per GB-month of standard storage.
    pub price_per_gb: f64,
    /// An image not pulled for this long is stale.
    pub stale_after: Duration,
}

impl Default for Pricing {
    fn default() -> Self {
        Self {
            price_per_gb: DEFAULT_PRICE_PER_GB,
            stale_after: Duration::from_hours(30 * 24),
        }
    }
}

/// One mapped prefix in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrefixReport {
    /// ECR repository prefix.
    pub prefix: String,
    /// Upstream registry host, as in image references.
    pub registry: String,
    /// Cache repositories under the prefix.
    pub repositories: u64,
    /// Images in standard storage.
    pub images: u64,
    /// Their total size.
    pub bytes: u64,
    /// Estimated monthly storage cost of `bytes`, USD.
    pub monthly_cost: f64,
    /// Images not pulled for the staleness period.
    pub stale_images: u64,
    /// Their total size.
    pub stale_bytes: u64,
    /// Estimated monthly storage cost of `stale_bytes`, USD: what expiring them would save.
    pub stale_monthly_cost: f64,
}

/// Every prefix together.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Total {
    /// Cache repositories.
    pub repositories: u64,
    /// Images in standard storage.
    pub images: u64,
    /// Their total size.
    pub bytes: u64,
    /// Estimated monthly storage cost of `bytes`, USD.
    pub monthly_cost: f64,
    /// Images not pulled for the staleness period.
    pub stale_images: u64,
    /// Their total size.
    pub stale_bytes: u64,
    /// Estimated monthly storage cost of `stale_bytes`, USD.
    pub stale_monthly_cost: f64,
}

/// The whole report: `pullthrough cache -o json` prints it as it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// One entry per mapped prefix, in prefix order.
    pub prefixes: Vec<PrefixReport>,
    /// Every prefix together; costs are of the summed sizes, not sums of rounded costs.
    pub total: Total,
    /// USD per GB-month used for `monthlyCost`.
    pub price_per_gb: f64,
    /// Days without a pull after which an image is stale.
    pub stale_after_days: u64,
    /// Whether the repository limit was reached (reported on standard error, not in JSON).
    #[serde(skip)]
    pub truncated: bool,
}

/// The monthly cost of `bytes` at `price_per_gb`, rounded to a hundredth of a cent so that
/// float noise never shows.
pub fn monthly_cost(bytes: u64, price_per_gb: f64) -> f64 {
    #[allow(clippy::cast_precision_loss)] // exact below 2^53 bytes (9 PB)
    let gb = bytes as f64 / BYTES_PER_GB;
    (gb * price_per_gb * 10_000.0).round() / 10_000.0
}

/// Whether an image has gone unpulled for `stale_after` at `now` (Unix seconds). ECR records
/// pulls only since it started to; an image with no recorded pull counts from when it was
/// pushed (for a cache repository, its first pull through the rule).
pub fn is_stale(image: &ImageSummary, now: i64, stale_after: Duration) -> bool {
    let limit = i64::try_from(stale_after.as_secs()).unwrap_or(i64::MAX);
    match image.last_pulled_at.or(image.pushed_at) {
        Some(t) => now.saturating_sub(t) >= limit,
        // Nothing says when it was last used: not enough to call it stale.
        None => false,
    }
}

/// Aggregates an inventory into the report, at `now` (Unix seconds). Archived images are not
/// counted: they are billed at the archive rate and are not served until restored.
pub fn report(config: &Config, inventory: &Inventory, pricing: Pricing, now: i64) -> Report {
    let mut prefixes: Vec<PrefixReport> = config
        .registries
        .values()
        .map(|m| {
            let mut p = PrefixReport {
                prefix: m.ecr_prefix().to_owned(),
                registry: m.registry.clone(),
                repositories: 0,
                images: 0,
                bytes: 0,
                monthly_cost: 0.0,
                stale_images: 0,
                stale_bytes: 0,
                stale_monthly_cost: 0.0,
            };
            if let Some(contents) = inventory.prefixes.get(m.ecr_prefix()) {
                p.repositories = contents.repositories.len() as u64;
                for image in contents
                    .repositories
                    .values()
                    .flatten()
                    .filter(|i| i.storage == ImageStorage::Standard)
                {
                    p.images += 1;
                    p.bytes = p.bytes.saturating_add(image.bytes);
                    if is_stale(image, now, pricing.stale_after) {
                        p.stale_images += 1;
                        p.stale_bytes = p.stale_bytes.saturating_add(image.bytes);
                    }
                }
            }
            p.monthly_cost = monthly_cost(p.bytes, pricing.price_per_gb);
            p.stale_monthly_cost = monthly_cost(p.stale_bytes, pricing.price_per_gb);
            p
        })
        .collect();
    prefixes.sort_by(|a, b| a.prefix.cmp(&b.prefix));
    let mut total = Total::default();
    for p in &prefixes {
        total.repositories += p.repositories;
        total.images += p.images;
        total.bytes = total.bytes.saturating_add(p.bytes);
        total.stale_images += p.stale_images;
        total.stale_bytes = total.stale_bytes.saturating_add(p.stale_bytes);
    }
    total.monthly_cost = monthly_cost(total.bytes, pricing.price_per_gb);
    total.stale_monthly_cost = monthly_cost(total.stale_bytes, pricing.price_per_gb);
    Report {
        prefixes,
        total,
        price_per_gb: pricing.price_per_gb,
        stale_after_days: pricing.stale_after.as_secs() / 86_400,
        truncated: inventory.truncated,
    }
}

/// Bytes as GB (10^9) with two decimals.
pub fn gigabytes(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss)] // display only
    let gb = bytes as f64 / BYTES_PER_GB;
    format!("{gb:.2}")
}

/// The report as an aligned table, with a total line.
pub fn render_table(report: &Report) -> String {
    let header = [
        "PREFIX",
        "REGISTRY",
        "REPOSITORIES",
        "IMAGES",
        "SIZE (GB)",
        "USD/MONTH",
        "STALE IMAGES",
        "STALE (GB)",
        "STALE USD/MONTH",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    let total = &report.total;
    let total = PrefixReport {
        prefix: "TOTAL".to_owned(),
        registry: String::new(),
        repositories: total.repositories,
        images: total.images,
        bytes: total.bytes,
        monthly_cost: total.monthly_cost,
        stale_images: total.stale_images,
        stale_bytes: total.stale_bytes,
        stale_monthly_cost: total.stale_monthly_cost,
    };
    let row = |p: &PrefixReport| {
        vec![
            p.prefix.clone(),
            p.registry.clone(),
            p.repositories.to_string(),
            p.images.to_string(),
            gigabytes(p.bytes),
            format!("{:.2}", monthly_cost(p.bytes, report.price_per_gb)),
            p.stale_images.to_string(),
            gigabytes(p.stale_bytes),
            format!("{:.2}", monthly_cost(p.stale_bytes, report.price_per_gb)),
        ]
    };
    for p in &report.prefixes {
        rows.push(row(p));
    }
    rows.push(row(&total));
    let mut widths = vec![0usize; header.len()];
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in r.iter().zip(&widths).enumerate() {
            // Text left, numbers right.
            if i < 2 {
                let _ = write!(line, "{cell:<w$}   ");
            } else {
                let _ = write!(line, "{cell:>w$}   ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "\nStorage at {} USD per GB-month (1 GB = 10^9 bytes); stale: not pulled for {} days. Archived images are not counted.",
        report.price_per_gb, report.stale_after_days
    );
    out
}

/// The report as JSON (`{"prefixes": [...], "total", "pricePerGb", "staleAfterDays"}`), newline-ended.
pub fn render_json(report: &Report) -> String {
    let mut out = serde_json::to_string_pretty(report).unwrap_or_default();
    out.push('\n');
    out
}

/// Days as a duration, for `--stale-after 30d` style values.
pub fn days(n: u64) -> Duration {
    Duration::from_secs(n.saturating_mul(u64::try_from(DAY).unwrap_or(86_400)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;

    fn config() -> Config {
        Config::load(
            "accountId: \"123456789012\"\nregion: eu-west-1\nregistries:\n  docker.io: docker-hub\n  quay.io: quay\n  ghcr.io: github\n  registry.k8s.io: k8s/upstream\n",
            &Overrides::default(),
        )
        .unwrap()
    }

    const NOW: i64 = 1_800_000_000;

    fn image(bytes: u64, last_pulled_days_ago: Option<i64>) -> ImageSummary {
        ImageSummary {
            digest: format!("sha256:{bytes:064x}"),
            bytes,
            pushed_at: Some(NOW - 400 * DAY),
            last_pulled_at: last_pulled_days_ago.map(|d| NOW - d * DAY),
            storage: ImageStorage::Standard,
        }
    }

    fn repo(name: &str) -> Repository {
        Repository {
            name: name.to_owned(),
        }
    }

    #[test]
    fn repositories_sort_into_the_longest_mapped_prefix() {
        let c = config();
        let repos = [
            repo("docker-hub/library/nginx"),
            repo("docker-hub/bitnami/redis"),
            repo("docker-hubx/other"),
            repo("quay/prometheus/node-exporter"),
            repo("quay"),
            repo("k8s/upstream/pause"),
            repo("k8s/other"),
            repo("team/app"),
        ];
        let sorted = sort_repositories(&c, &repos);
        assert_eq!(
            sorted["docker-hub"],
            vec!["docker-hub/library/nginx", "docker-hub/bitnami/redis"]
        );
        assert_eq!(sorted["quay"], vec!["quay/prometheus/node-exporter"]);
        assert_eq!(sorted["k8s/upstream"], vec!["k8s/upstream/pause"]);
        assert!(sorted["github"].is_empty());
        assert_eq!(sorted.len(), 4);
    }

    #[test]
    fn a_root_mapping_takes_what_no_prefix_claims() {
        let c = Config::load(
            "registries:\n  docker.io: docker-hub\n  quay.io: ROOT\n",
            &Overrides::default(),
        )
        .unwrap();
        let repos = [repo("docker-hub/library/nginx"), repo("prometheus/node")];
        let sorted = sort_repositories(&c, &repos);
        assert_eq!(sorted["docker-hub"], vec!["docker-hub/library/nginx"]);
        assert_eq!(sorted["ROOT"], vec!["prometheus/node"]);
    }

    #[test]
    fn cost_is_bytes_in_decimal_gigabytes_times_the_price() {
        assert!((monthly_cost(1_000_000_000, 0.10) - 0.10).abs() < 1e-12);
        assert!((monthly_cost(3_000_000_000, 0.10) - 0.30).abs() < 1e-12);
        // 1 GiB is 1.073741824 GB.
        assert!((monthly_cost(1 << 30, 0.10) - 0.1074).abs() < 1e-12);
        assert!((monthly_cost(250_000_000_000, 0.11) - 27.5).abs() < 1e-12);
        assert!(monthly_cost(0, 0.10).abs() < f64::EPSILON);
    }

    #[test]
    fn staleness_counts_from_the_last_pull_or_else_the_push() {
        let thirty = days(30);
        assert!(!is_stale(&image(1, Some(29)), NOW, thirty));
        assert!(is_stale(&image(1, Some(30)), NOW, thirty));
        assert!(is_stale(&image(1, Some(31)), NOW, thirty));
        // Never pulled since ECR started recording: its push (400 days ago) decides.
        assert!(is_stale(&image(1, None), NOW, thirty));
        let fresh_push = ImageSummary {
            pushed_at: Some(NOW - 2 * DAY),
            ..image(1, None)
        };
        assert!(!is_stale(&fresh_push, NOW, thirty));
        let unknown = ImageSummary {
            pushed_at: None,
            ..image(1, None)
        };
        assert!(!is_stale(&unknown, NOW, thirty));
    }

    #[test]
    fn the_report_sums_each_prefix_and_leaves_archived_images_out() {
        let c = config();
        let mut inventory = Inventory::default();
        let mut hub = PrefixContents::default();
        hub.repositories.insert(
            "docker-hub/library/nginx".into(),
            vec![
                image(2_000_000_000, Some(1)),
                image(500_000_000, Some(45)),
                ImageSummary {
                    storage: ImageStorage::Archive,
                    ..image(9_000_000_000, Some(200))
                },
            ],
        );
        hub.repositories.insert(
            "docker-hub/library/redis".into(),
            vec![image(1_500_000_000, None)],
        );
        inventory.prefixes.insert("docker-hub".into(), hub);
        let mut quay = PrefixContents::default();
        quay.repositories
            .insert("quay/prometheus/node-exporter".into(), vec![]);
        inventory.prefixes.insert("quay".into(), quay);

        let r = report(&c, &inventory, Pricing::default(), NOW);
        assert_eq!(r.stale_after_days, 30);
        let hub = r
            .prefixes
            .iter()
            .find(|p| p.prefix == "docker-hub")
            .unwrap();
        assert_eq!(hub.registry, "docker.io");
        assert_eq!(hub.repositories, 2);
        assert_eq!(hub.images, 3);
        assert_eq!(hub.bytes, 4_000_000_000);
        assert!((hub.monthly_cost - 0.40).abs() < 1e-12);
        assert_eq!(hub.stale_images, 2);
        assert_eq!(hub.stale_bytes, 2_000_000_000);
        let quay = r.prefixes.iter().find(|p| p.prefix == "quay").unwrap();
        assert_eq!((quay.repositories, quay.images, quay.bytes), (1, 0, 0));
        let github = r.prefixes.iter().find(|p| p.prefix == "github").unwrap();
        assert_eq!(github.repositories, 0);
        let names: Vec<_> = r.prefixes.iter().map(|p| p.prefix.as_str()).collect();
        assert_eq!(names, ["docker-hub", "github", "k8s/upstream", "quay"]);
    }

    #[test]
    fn the_json_has_exactly_the_documented_shape() {
        let c = config();
        let r = report(
            &c,
            &Inventory::default(),
            Pricing {
                price_per_gb: 0.11,
                stale_after: days(14),
            },
            NOW,
        );
        let v: serde_json::Value = serde_json::from_str(&render_json(&r)).unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["prefixes", "total", "pricePerGb", "staleAfterDays"]);
        assert_eq!(v["pricePerGb"], 0.11);
        assert_eq!(v["staleAfterDays"], 14);
        let first = v["prefixes"][0].as_object().unwrap();
        let keys: Vec<_> = first.keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "prefix",
                "registry",
                "repositories",
                "images",
                "bytes",
                "monthlyCost",
                "staleImages",
                "staleBytes",
                "staleMonthlyCost"
            ]
        );
        let keys: Vec<_> = v["total"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "repositories",
                "images",
                "bytes",
                "monthlyCost",
                "staleImages",
                "staleBytes",
                "staleMonthlyCost"
            ]
        );
    }

    #[test]
    fn the_table_totals_every_prefix() {
        let c = config();
        let mut inventory = Inventory::default();
        let mut hub = PrefixContents::default();
        hub.repositories.insert(
            "docker-hub/library/nginx".into(),
            vec![image(2_500_000_000, Some(60))],
        );
        inventory.prefixes.insert("docker-hub".into(), hub);
        let r = report(&c, &inventory, Pricing::default(), NOW);
        let hub_report = r
            .prefixes
            .iter()
            .find(|p| p.prefix == "docker-hub")
            .unwrap();
        assert!((hub_report.stale_monthly_cost - 0.25).abs() < 1e-12);
        assert_eq!((r.total.images, r.total.stale_bytes), (1, 2_500_000_000));
        assert!((r.total.stale_monthly_cost - 0.25).abs() < 1e-12);
        let table = render_table(&r);
        let lines: Vec<_> = table.lines().collect();
        assert!(lines[0].starts_with("PREFIX"));
        let hub = lines.iter().find(|l| l.starts_with("docker-hub")).unwrap();
        let cells: Vec<_> = hub.split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "docker-hub",
                "docker.io",
                "1",
                "1",
                "2.50",
                "0.25",
                "1",
                "2.50",
                "0.25"
            ]
        );
        let total = lines.iter().find(|l| l.starts_with("TOTAL")).unwrap();
        assert!(total.split_whitespace().any(|c| c == "2.50"));
        assert!(table.contains("0.1 USD per GB-month"));
    }
}
