//! The ECR side of the cache report: paging through repositories, images and creation
//! templates with back-off and limits, the `pullthrough cache` command, and the reconciler's
//! slow refresh of the cache metrics.

use std::future::Future;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use clap::{Args, ValueEnum};
use futures::StreamExt as _;
use tracing::{debug, info, warn};

use super::metrics::CacheMetrics;
use super::template::{self, Coverage};
use super::{Inventory, PrefixContents, Pricing, days, render_json, render_table, report};
use crate::args::ConfigArgs;
use crate::config::Config;
use crate::ecr::{
    AwsEcr, Backoff, CacheContentSource, CreationTemplate, EcrError, ErrorKind, Page, Repository,
};
use crate::metrics::{ReloadResult, unix_now};

/// Attempts per page before a throttled or unanswered read gives up.
const PAGE_ATTEMPTS: u32 = 5;
/// Most `DescribeImages` pages read for one repository (1000 images each).
const MAX_IMAGE_PAGES: usize = 20;
/// Repositories whose images are read at once: enough to finish hundreds of repositories in
/// seconds, few enough to stay under ECR's request rate.
const CONCURRENCY: usize = 4;

/// Output of `cache`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum CacheOutput {
    /// One row per mapped prefix, with a total.
    #[default]
    Table,
    /// `{"prefixes": [...], "pricePerGb", "staleAfterDays"}`.
    Json,
}

/// `pullthrough cache`.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// Configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = CacheOutput::Table)]
    pub output: CacheOutput,
    /// Storage price in USD per GB-month (10^9 bytes); 0.10 in most regions.
    #[arg(long, default_value_t = super::DEFAULT_PRICE_PER_GB, value_parser = parse_price)]
    pub price_per_gb: f64,
    /// Images not pulled for this long are stale (whole days: 30d, 720h).
    #[arg(long, default_value = "30d", value_parser = parse_days)]
    pub stale_after: u64,
    /// Most repositories read (default: cache.maxRepositories, 10000); the report says so
    /// when there were more.
    #[arg(long)]
    pub max_repositories: Option<usize>,
}

fn parse_price(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if p.is_finite() && p >= 0.0 => Ok(p),
        _ => Err(format!(
            "{s:?} is not a price in USD per GB-month, such as 0.10"
        )),
    }
}

fn parse_days(s: &str) -> Result<u64, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    let n = d.as_secs() / 86_400;
    if n == 0 || d.as_secs() % 86_400 != 0 {
        return Err(format!("{s:?} is not a whole number of days, such as 30d"));
    }
    Ok(n)
}

/// Calls `read` until it succeeds, retrying throttling and network failures with back-off.
async fn with_retry<T, F, Fut>(backoff: &mut Backoff, mut read: F) -> Result<T, EcrError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, EcrError>>,
{
    let mut attempt = 1;
    loop {
        match read().await {
            Ok(v) => {
                backoff.reset();
                return Ok(v);
            }
            Err(e)
                if attempt < PAGE_ATTEMPTS
                    && matches!(e.kind(), ErrorKind::Throttled | ErrorKind::Network) =>
            {
                attempt += 1;
                let delay = backoff.next_delay();
                debug!(error = %e, ?delay, "ECR read failed; retrying");
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn page_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(200), Duration::from_secs(10))
}

/// Every repository creation template of the registry.
pub async fn read_templates<S: CacheContentSource>(
    source: &S,
) -> Result<Vec<CreationTemplate>, EcrError> {
    let mut backoff = page_backoff();
    let mut templates = Vec::new();
    let mut token = None;
    loop {
        let page: Page<CreationTemplate> = with_retry(&mut backoff, || {
            source.creation_templates_page(token.clone())
        })
        .await?;
        templates.extend(page.items);
        match page.next_token {
            Some(t) => token = Some(t),
            None => return Ok(templates),
        }
    }
}

/// Lists the registry's repositories (at most `max_repositories`), keeps those under a mapped
/// prefix, and reads their images.
pub async fn read_inventory<S: CacheContentSource>(
    source: &S,
    config: &Config,
    max_repositories: usize,
) -> Result<Inventory, EcrError> {
    let mut backoff = page_backoff();
    let mut repositories: Vec<Repository> = Vec::new();
    let mut token = None;
    let mut truncated = false;
    loop {
        let page = with_retry(&mut backoff, || source.repositories_page(token.clone())).await?;
        repositories.extend(page.items);
        if repositories.len() >= max_repositories {
            truncated = page.next_token.is_some() || repositories.len() > max_repositories;
            repositories.truncate(max_repositories);
            break;
        }
        match page.next_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    let sorted = super::sort_repositories(config, &repositories);
    let wanted: Vec<(String, String)> = sorted
        .iter()
        .flat_map(|(prefix, names)| names.iter().map(|n| (prefix.clone(), (*n).to_owned())))
        .collect();
    let mut inventory = Inventory {
        prefixes: sorted
            .keys()
            .map(|p| (p.clone(), PrefixContents::default()))
            .collect(),
        truncated,
    };
    let mut reads = futures::stream::iter(wanted)
        .map(|(prefix, name)| async move {
            let images = read_images(source, &name).await;
            (prefix, name, images)
        })
        .buffer_unordered(CONCURRENCY);
    while let Some((prefix, name, images)) = reads.next().await {
        let (images, complete) = images?;
        inventory.truncated |= !complete;
        if let Some(contents) = inventory.prefixes.get_mut(&prefix) {
            contents.repositories.insert(name, images);
        }
    }
    Ok(inventory)
}

/// The images of one repository, and whether all of them were read.
async fn read_images<S: CacheContentSource>(
    source: &S,
    repository: &str,
) -> Result<(Vec<crate::ecr::ImageSummary>, bool), EcrError> {
    let mut backoff = page_backoff();
    let mut images = Vec::new();
    let mut token = None;
    for _ in 0..MAX_IMAGE_PAGES {
        let page = with_retry(&mut backoff, || {
            source.images_page(repository, token.clone())
        })
        .await?;
        images.extend(page.items);
        match page.next_token {
            Some(t) => token = Some(t),
            None => return Ok((images, true)),
        }
    }
    Ok((images, false))
}

/// Builds the report `pullthrough cache` prints.
pub async fn cache_report<S: CacheContentSource>(
    source: &S,
    config: &Config,
    pricing: Pricing,
    max_repositories: usize,
) -> Result<super::Report, EcrError> {
    let inventory = read_inventory(source, config, max_repositories).await?;
    Ok(report(config, &inventory, pricing, unix_now()))
}

/// Runs `pullthrough cache`: prints what the cache holds and costs. Any ECR failure is an
/// error (exit 2); reaching the repository limit is said on standard error.
pub async fn run_cache(args: &CacheArgs) -> anyhow::Result<bool> {
    let (config, _) = args.config.load()?;
    let ecr = AwsEcr::from_env(&config.region, Some(config.account_id.clone())).await;
    let max = args
        .max_repositories
        .unwrap_or(config.cache.max_repositories)
        .max(1);
    let pricing = Pricing {
        price_per_gb: args.price_per_gb,
        stale_after: days(args.stale_after),
    };
    let report = cache_report(&ecr, &config, pricing, max)
        .await
        .context("cannot read the cache repositories from ECR")?;
    let out = match args.output {
        CacheOutput::Table => render_table(&report),
        CacheOutput::Json => render_json(&report),
    };
    std::io::stdout()
        .write_all(out.as_bytes())
        .context("cannot write to standard output")?;
    if report.truncated {
        eprintln!(
            "pullthrough: stopped at {max} repositories (or 20000 images in one repository): the figures cover part of the cache; raise --max-repositories to read more"
        );
    }
    Ok(true)
}

/// Coverage of every mapped registry's rule by the creation templates.
pub fn coverage_of(config: &Config, templates: &[CreationTemplate]) -> Vec<(String, Coverage)> {
    config
        .registries
        .values()
        .map(|m| (m.registry.clone(), template::coverage(m, templates)))
        .collect()
}

/// One read for the metrics: templates and contents.
async fn refresh_once<S: CacheContentSource>(
    source: &S,
    config: &Config,
    metrics: &CacheMetrics,
) -> Result<(), EcrError> {
    let templates = read_templates(source).await?;
    let inventory = read_inventory(source, config, config.cache.max_repositories).await?;
    if inventory.truncated {
        warn!(
            limit = config.cache.max_repositories,
            "cache.maxRepositories reached: the cache metrics cover part of the registry"
        );
    }
    let r = report(config, &inventory, Pricing::default(), unix_now());
    metrics.record(config, &r, &coverage_of(config, &templates));
    Ok(())
}

/// The reconciler's cache metrics loop: reads the cache every `cache.refreshInterval` (as
/// configured at each round) until `shutdown` resolves. Failures back off and never end it.
pub async fn run_metrics<S: CacheContentSource>(
    source: S,
    config: Arc<ArcSwap<Config>>,
    metrics: CacheMetrics,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut backoff = Backoff::new(Duration::from_secs(30), Duration::from_mins(30));
    let mut failing = false;
    loop {
        let cfg = config.load_full();
        let delay = match cfg.cache.refresh_interval {
            None => Duration::from_mins(1),
            // A read of a large registry takes a while: shutdown must not wait for it.
            Some(interval) => match tokio::select! {
                result = refresh_once(&source, &cfg, &metrics) => result,
                () = &mut shutdown => break,
            } {
                Ok(()) => {
                    metrics
                        .refreshes
                        .with_label_values(&[ReloadResult::Success.as_str()])
                        .inc();
                    metrics.last_success_seconds.set(unix_now());
                    if std::mem::take(&mut failing) {
                        info!("cache contents readable again");
                    }
                    backoff.reset();
                    interval
                }
                Err(e) => {
                    metrics
                        .refreshes
                        .with_label_values(&[ReloadResult::Failure.as_str()])
                        .inc();
                    if failing {
                        debug!(error = %e, "cannot read the cache contents");
                    } else {
                        warn!(error = %e, kind = e.kind().as_str(), "cannot read the cache contents from ECR; retrying with back-off (the reconciler's role needs ecr:DescribeRepositories, ecr:DescribeImages and ecr:DescribeRepositoryCreationTemplates)");
                        failing = true;
                    }
                    backoff
                        .next_delay()
                        .max(Duration::from_secs(30))
                        .min(interval)
                }
            },
        };
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Starts the reconciler's cache metrics loop in `tasks`, on the ECR client of the configured
/// account and region. It runs apart from the reconcile loop: a slow, hourly read.
pub async fn spawn_metrics(
    tasks: &mut tokio::task::JoinSet<()>,
    registry: &prometheus::Registry,
    config: Arc<ArcSwap<Config>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let metrics = CacheMetrics::register(registry).context("cannot register cache metrics")?;
    let (region, account) = {
        let c = config.load();
        (c.region.clone(), c.account_id.clone())
    };
    let ecr = AwsEcr::from_env(&region, Some(account)).await;
    tasks.spawn(run_metrics(ecr, config, metrics, shutdown));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;
    use crate::ecr::{ImageStorage, ImageSummary};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Repositories in pages of `page`, each with one 1 GB image; the first `throttle` calls
    /// are throttled.
    struct Scripted {
        repositories: Vec<String>,
        page: usize,
        throttle: AtomicUsize,
        calls: Mutex<Vec<String>>,
    }

    fn throttled() -> EcrError {
        EcrError::ReadCache {
            operation: "Scripted",
            code: "ThrottlingException".into(),
            kind: ErrorKind::Throttled,
            source: "throttled".into(),
        }
    }

    impl CacheContentSource for Scripted {
        async fn repositories_page(
            &self,
            next_token: Option<String>,
        ) -> Result<Page<Repository>, EcrError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("repositories {next_token:?}"));
            if self
                .throttle
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(throttled());
            }
            let start: usize = next_token.map_or(0, |t| t.parse().unwrap());
            let end = (start + self.page).min(self.repositories.len());
            Ok(Page {
                items: self.repositories[start..end]
                    .iter()
                    .map(|n| Repository { name: n.clone() })
                    .collect(),
                next_token: (end < self.repositories.len()).then(|| end.to_string()),
            })
        }
        async fn images_page(
            &self,
            repository: &str,
            _next_token: Option<String>,
        ) -> Result<Page<ImageSummary>, EcrError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("images {repository}"));
            Ok(Page {
                items: vec![ImageSummary {
                    digest: "sha256:0".into(),
                    bytes: 1_000_000_000,
                    pushed_at: Some(0),
                    last_pulled_at: None,
                    storage: ImageStorage::Standard,
                }],
                next_token: None,
            })
        }
        async fn creation_templates_page(
            &self,
            _next_token: Option<String>,
        ) -> Result<Page<CreationTemplate>, EcrError> {
            Ok(Page {
                items: vec![],
                next_token: None,
            })
        }
    }

    fn config() -> Config {
        Config::load(
            "registries:\n  docker.io: docker-hub\n  quay.io: quay\n",
            &Overrides::default(),
        )
        .unwrap()
    }

    fn source(n: usize, page: usize, throttle: usize) -> Scripted {
        Scripted {
            repositories: (0..n)
                .map(|i| match i % 3 {
                    0 => format!("docker-hub/library/app{i}"),
                    1 => format!("quay/org/app{i}"),
                    _ => format!("team/own{i}"),
                })
                .collect(),
            page,
            throttle: AtomicUsize::new(throttle),
            calls: Mutex::new(Vec::new()),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn every_page_is_read_through_throttling_and_only_mapped_repositories_are_described() {
        let s = source(30, 7, 2);
        let inv = read_inventory(&s, &config(), 10_000).await.unwrap();
        assert!(!inv.truncated);
        assert_eq!(inv.prefixes["docker-hub"].repositories.len(), 10);
        assert_eq!(inv.prefixes["quay"].repositories.len(), 10);
        let calls = s.calls.lock().unwrap();
        // 2 throttled + 5 pages.
        assert_eq!(
            calls
                .iter()
                .filter(|c| c.starts_with("repositories"))
                .count(),
            7
        );
        assert_eq!(calls.iter().filter(|c| c.starts_with("images")).count(), 20);
        assert!(!calls.iter().any(|c| c.contains("team/")));
    }

    #[tokio::test(start_paused = true)]
    async fn the_repository_limit_stops_the_listing_and_says_so() {
        let s = source(30, 7, 0);
        let inv = read_inventory(&s, &config(), 10).await.unwrap();
        assert!(inv.truncated);
        let described: usize = inv.prefixes.values().map(|p| p.repositories.len()).sum();
        assert!(described <= 10);
        let pages = s
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.starts_with("repositories"))
            .count();
        assert_eq!(pages, 2);
        // Exactly at the limit with nothing more: not truncated.
        let all = read_inventory(&source(14, 7, 0), &config(), 14)
            .await
            .unwrap();
        assert!(!all.truncated);
    }

    #[tokio::test(start_paused = true)]
    async fn persistent_throttling_is_an_error_after_a_few_attempts() {
        let s = source(3, 7, 100);
        let err = read_inventory(&s, &config(), 10).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Throttled);
        assert_eq!(s.calls.lock().unwrap().len(), PAGE_ATTEMPTS as usize);
    }

    #[tokio::test(start_paused = true)]
    async fn the_metrics_loop_sets_the_gauges_and_stops_on_shutdown() {
        let registry = prometheus::Registry::new_custom(Some("pullthrough".into()), None).unwrap();
        let metrics = CacheMetrics::register(&registry).unwrap();
        let config = Arc::new(ArcSwap::from_pointee(config()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run_metrics(
            source(9, 4, 0),
            config,
            metrics.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            metrics
                .repositories
                .with_label_values(&["docker.io", "docker-hub"])
                .get(),
            3
        );
        assert_eq!(
            metrics.bytes.with_label_values(&["quay.io", "quay"]).get(),
            3_000_000_000
        );
        assert_eq!(
            metrics
                .template_present
                .with_label_values(&["quay.io", "quay"])
                .get(),
            0
        );
        stop.send(()).unwrap();
        task.await.unwrap();
    }

    /// A registry that never answers.
    struct Silent;

    impl CacheContentSource for Silent {
        async fn repositories_page(&self, _: Option<String>) -> Result<Page<Repository>, EcrError> {
            std::future::pending().await
        }
        async fn images_page(
            &self,
            _: &str,
            _: Option<String>,
        ) -> Result<Page<ImageSummary>, EcrError> {
            std::future::pending().await
        }
        async fn creation_templates_page(
            &self,
            _: Option<String>,
        ) -> Result<Page<CreationTemplate>, EcrError> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn shutdown_does_not_wait_for_a_read_in_flight() {
        let registry = prometheus::Registry::new_custom(Some("pullthrough".into()), None).unwrap();
        let metrics = CacheMetrics::register(&registry).unwrap();
        let config = Arc::new(ArcSwap::from_pointee(config()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run_metrics(Silent, config, metrics, async move {
            let _ = stopped.await;
        }));
        tokio::task::yield_now().await;
        stop.send(()).unwrap();
        task.await.unwrap();
    }

    #[test]
    fn flags_refuse_what_cannot_be_priced_or_aged() {
        assert_eq!(parse_days("30d").unwrap(), 30);
        assert_eq!(parse_days("720h").unwrap(), 30);
        assert!(parse_days("36h").is_err());
        assert!(parse_days("0d").is_err());
        assert!(parse_price("-1").is_err());
        assert!(parse_price("NaN").is_err());
        assert!((parse_price("0.11").unwrap() - 0.11).abs() < f64::EPSILON);
    }
}
