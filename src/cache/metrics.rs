//! The per-prefix cache gauges the reconciler exports, refreshed on a slow interval.
//!
//! Labels are the mapped registry and its ECR prefix: bounded by the configuration.

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::Report;
use super::template::Coverage;
use crate::config::Config;

/// Gauges of what the cache holds, per mapped prefix.
#[derive(Clone)]
pub struct CacheMetrics {
    /// Cache repositories under each prefix.
    pub repositories: IntGaugeVec,
    /// Images in standard storage under each prefix.
    pub images: IntGaugeVec,
    /// Their total size in bytes.
    pub bytes: IntGaugeVec,
    /// 1 when a repository creation template applies to the prefix's rule.
    pub template_present: IntGaugeVec,
    /// Reads of the cache from ECR by result (`success`, `failure`).
    pub refreshes: IntCounterVec,
    /// Unix time of the last successful read.
    pub last_success_seconds: IntGauge,
}

impl CacheMetrics {
    /// Creates the metrics and registers them in `registry` (whose prefix is `pullthrough`).
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let labels = &["registry", "prefix"];
        let m = Self {
            repositories: IntGaugeVec::new(
                Opts::new(
                    "cache_repositories",
                    "Pull-through cache repositories ECR created under each mapped prefix",
                ),
                labels,
            )?,
            images: IntGaugeVec::new(
                Opts::new(
                    "cache_images",
                    "Images in standard storage in the cache repositories of each mapped prefix",
                ),
                labels,
            )?,
            bytes: IntGaugeVec::new(
                Opts::new(
                    "cache_bytes",
                    "Total size of the images in the cache repositories of each mapped prefix",
                ),
                labels,
            )?,
            template_present: IntGaugeVec::new(
                Opts::new(
                    "cache_template_present",
                    "1 when a repository creation template applies to the prefix's cache repositories",
                ),
                labels,
            )?,
            refreshes: IntCounterVec::new(
                Opts::new(
                    "cache_refreshes_total",
                    "Reads of the cache contents from ECR, by result",
                ),
                &["result"],
            )?,
            last_success_seconds: IntGauge::new(
                "cache_last_refresh_success_timestamp_seconds",
                "Unix time of the last successful read of the cache contents",
            )?,
        };
        registry.register(Box::new(m.repositories.clone()))?;
        registry.register(Box::new(m.images.clone()))?;
        registry.register(Box::new(m.bytes.clone()))?;
        registry.register(Box::new(m.template_present.clone()))?;
        registry.register(Box::new(m.refreshes.clone()))?;
        registry.register(Box::new(m.last_success_seconds.clone()))?;
        Ok(m)
    }

    /// Replaces every gauge with one read's figures; prefixes no longer mapped disappear.
    pub fn record(&self, config: &Config, report: &Report, coverage: &[(String, Coverage)]) {
        self.repositories.reset();
        self.images.reset();
        self.bytes.reset();
        self.template_present.reset();
        for p in &report.prefixes {
            let labels = [p.registry.as_str(), p.prefix.as_str()];
            self.repositories
                .with_label_values(&labels)
                .set(i64::try_from(p.repositories).unwrap_or(i64::MAX));
            self.images
                .with_label_values(&labels)
                .set(i64::try_from(p.images).unwrap_or(i64::MAX));
            self.bytes
                .with_label_values(&labels)
                .set(i64::try_from(p.bytes).unwrap_or(i64::MAX));
        }
        for (registry, c) in coverage {
            if let Some(m) = config.mapping(registry) {
                self.template_present
                    .with_label_values(&[registry.as_str(), m.ecr_prefix()])
                    .set(i64::from(c.is_present()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{Inventory, Pricing, report};
    use crate::config::Overrides;

    #[test]
    fn a_read_sets_one_series_per_mapped_prefix() {
        let config = Config::load(
            "registries:\n  docker.io: docker-hub\n  quay.io: quay\n",
            &Overrides::default(),
        )
        .unwrap();
        let registry = Registry::new_custom(Some("pullthrough".into()), None).unwrap();
        let m = CacheMetrics::register(&registry).unwrap();
        let r = report(&config, &Inventory::default(), Pricing::default(), 0);
        m.record(
            &config,
            &r,
            &[
                ("docker.io".into(), Coverage::Missing),
                (
                    "quay.io".into(),
                    Coverage::Covered {
                        template: "ROOT".into(),
                        lifecycle: false,
                    },
                ),
            ],
        );
        assert_eq!(
            m.template_present
                .with_label_values(&["docker.io", "docker-hub"])
                .get(),
            0
        );
        assert_eq!(
            m.template_present
                .with_label_values(&["quay.io", "quay"])
                .get(),
            1
        );
        let names: Vec<_> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        for name in [
            "pullthrough_cache_repositories",
            "pullthrough_cache_images",
            "pullthrough_cache_bytes",
            "pullthrough_cache_template_present",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
        }
    }
}
