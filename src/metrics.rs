//! Prometheus metrics, owned by a registry this crate creates (never the global default).
//!
//! Every label has a bounded set of values: outcomes and decisions are closed enums, and the
//! registry label is a configured upstream host or `other`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// All metrics of one process.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Admission webhook metrics.
    pub admission: AdmissionMetrics,
    /// Configuration reload metrics.
    pub config: ConfigMetrics,
    /// TLS certificate metrics.
    pub tls: TlsMetrics,
    /// ECR rule status metrics.
    pub rules: RuleMetrics,
}

/// Metrics of the ECR rule checks.
#[derive(Clone)]
pub struct RuleMetrics {
    /// 1 for the current state of each mapped registry's rule, 0 for the other states.
    pub status: IntGaugeVec,
    /// Rule reads from ECR by result (`success`, `failure`).
    pub refreshes: IntCounterVec,
    /// Failed rule reads by kind (`throttled`, `access_denied`, `credentials`, `service`, `network`).
    pub failures: IntCounterVec,
    /// Unix time of the last successful read.
    pub last_success_seconds: IntGauge,
}

/// Metrics of the admission path.
#[derive(Clone)]
pub struct AdmissionMetrics {
    /// Admission requests by outcome (`patched`, `allowed`, `invalid`).
    pub requests: IntCounterVec,
    /// Time spent answering one admission request, body read included.
    pub duration: Histogram,
    /// Images seen, by upstream registry and decision.
    pub images: IntCounterVec,
}

/// Metrics of configuration reloads.
#[derive(Clone)]
pub struct ConfigMetrics {
    /// Reload attempts by result (`success`, `failure`).
    pub reloads: IntCounterVec,
    /// Unix time of the configuration in force.
    pub last_success_seconds: IntGauge,
}

/// Metrics of the serving certificate.
#[derive(Clone)]
pub struct TlsMetrics {
    /// Certificate reload attempts by result (`success`, `failure`).
    pub reloads: IntCounterVec,
    /// `notAfter` of the certificate being served, as Unix time.
    pub cert_not_after_seconds: IntGauge,
}

impl Metrics {
    /// Creates the registry and registers every metric in it.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("pullthrough".into()), None)?;
        let admission = AdmissionMetrics {
            requests: IntCounterVec::new(
                Opts::new(
                    "admission_requests_total",
                    "Admission requests answered, by outcome",
                ),
                &["outcome"],
            )?,
            duration: Histogram::with_opts(
                HistogramOpts::new(
                    "admission_duration_seconds",
                    "Time to answer one admission request, body read included",
                )
                .buckets(vec![
                    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                    0.1, 0.25, 1.0,
                ]),
            )?,
            images: IntCounterVec::new(
                Opts::new(
                    "images_total",
                    "Container images seen by the webhook, by upstream registry and decision",
                ),
                &["registry", "decision"],
            )?,
        };
        let config = ConfigMetrics {
            reloads: IntCounterVec::new(
                Opts::new(
                    "config_reloads_total",
                    "Configuration file reloads, by result",
                ),
                &["result"],
            )?,
            last_success_seconds: IntGauge::new(
                "config_last_reload_success_timestamp_seconds",
                "Unix time at which the configuration in force was loaded",
            )?,
        };
        let tls = TlsMetrics {
            reloads: IntCounterVec::new(
                Opts::new(
                    "tls_reloads_total",
                    "Serving certificate reloads, by result",
                ),
                &["result"],
            )?,
            cert_not_after_seconds: IntGauge::new(
                "tls_cert_not_after_seconds",
                "Expiry (notAfter) of the serving certificate, as Unix time",
            )?,
        };
        let rules = RuleMetrics {
            status: IntGaugeVec::new(
                Opts::new(
                    "rule_status",
                    "State of the ECR pull-through cache rule each mapped registry needs (1 = current state)",
                ),
                &["registry", "prefix", "state"],
            )?,
            refreshes: IntCounterVec::new(
                Opts::new("rule_refreshes_total", "Reads of the ECR rules, by result"),
                &["result"],
            )?,
            failures: IntCounterVec::new(
                Opts::new(
                    "rule_refresh_failures_total",
                    "Failed reads of the ECR rules, by kind",
                ),
                &["kind"],
            )?,
            last_success_seconds: IntGauge::new(
                "rule_last_refresh_success_timestamp_seconds",
                "Unix time of the last successful read of the ECR rules",
            )?,
        };
        registry.register(Box::new(rules.status.clone()))?;
        registry.register(Box::new(rules.refreshes.clone()))?;
        registry.register(Box::new(rules.failures.clone()))?;
        registry.register(Box::new(rules.last_success_seconds.clone()))?;
        registry.register(Box::new(admission.requests.clone()))?;
        registry.register(Box::new(admission.duration.clone()))?;
        registry.register(Box::new(admission.images.clone()))?;
        registry.register(Box::new(config.reloads.clone()))?;
        registry.register(Box::new(config.last_success_seconds.clone()))?;
        registry.register(Box::new(tls.reloads.clone()))?;
        registry.register(Box::new(tls.cert_not_after_seconds.clone()))?;
        Ok(Self {
            registry,
            admission,
            config,
            tls,
            rules,
        })
    }

    /// The registry, for subsystems that register metrics of their own.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Renders every metric in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail on I/O; a metric family error would be a bug in
        // registration, and an empty scrape is the right answer then.
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            buf.clear();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Result label for reload counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    /// The new content was loaded and is in force.
    Success,
    /// The new content was refused; the previous one stays in force.
    Failure,
}

impl ReloadResult {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

impl TlsMetrics {
    /// Counts one reload attempt.
    pub fn reload(&self, result: ReloadResult) {
        self.reloads.with_label_values(&[result.as_str()]).inc();
    }
}

impl ConfigMetrics {
    /// Counts one reload attempt.
    pub fn reload(&self, result: ReloadResult) {
        self.reloads.with_label_values(&[result.as_str()]).inc();
    }
}

/// The current Unix time in seconds, for timestamp gauges.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
