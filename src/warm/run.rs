//! The calls that warm the cache: one image at a time through [`ImageSource`], for
//! `pullthrough warm` and for the reconciler's background warming.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use clap::{Args, ValueEnum};
use futures::StreamExt as _;
use prometheus::{IntCounterVec, Opts, Registry};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::{Outcome, Report, Target, Unavailable, Warming, exit_code, plan, render_table};
use crate::args::ConfigArgs;
use crate::config::Config;
use crate::digests;
use crate::ecr::{AwsEcr, EcrError, ErrorKind, ImageSource};
use crate::preview;

/// Images `pullthrough warm` works on at once.
const CLI_CONCURRENCY: usize = 4;
/// How often the reconciler looks for images to warm.
const WARM_TICK: Duration = Duration::from_secs(5);
/// Answers the reconciler remembers.
const WARM_MEMORY: usize = 10_000;

fn failed(e: &EcrError) -> (Outcome, bool) {
    let kind = e.kind();
    (
        Outcome::Failed {
            reason: e.to_string(),
            unreadable: matches!(
                kind,
                ErrorKind::AccessDenied | ErrorKind::Credentials | ErrorKind::Network
            ),
        },
        kind == ErrorKind::Throttled,
    )
}

/// Warms one image (or with `check`, only looks): confirms a pinned digest the cache holds,
/// otherwise fetches the tag through the cache and compares. Returns what was found and
/// whether ECR or the upstream throttled.
pub async fn warm_one<S: ImageSource>(source: &S, target: &Target, check: bool) -> (Outcome, bool) {
    let repository = target.repository.as_str();
    if let Some(pinned) = &target.digest {
        match source.describe_digest(repository, pinned).await {
            Ok(Some(_)) => {
                return (
                    Outcome::DigestConfirmed {
                        digest: pinned.clone(),
                        warmed: false,
                    },
                    false,
                );
            }
            Ok(None) => {}
            Err(e) => return failed(&e),
        }
        if check {
            return (Outcome::NotCached, false);
        }
        let Some(tag) = target.fetch_tag() else {
            return (
                Outcome::Failed {
                    reason: format!(
                        "pinned by digest alone ({}): the cache fills by tag only; pin tag@digest, or pull it once by tag through the cache",
                        digests::short(pinned)
                    ),
                    unreadable: false,
                },
                false,
            );
        };
        let current = match source.fetch_tag(repository, tag).await {
            Ok(Some(d)) => d,
            Ok(None) => return (no_such_tag(tag), false),
            Err(e) => return failed(&e),
        };
        if current == *pinned {
            return (
                Outcome::DigestConfirmed {
                    digest: pinned.clone(),
                    warmed: true,
                },
                false,
            );
        }
        // The tag may name an index whose platform manifest was pinned: ask for the pin itself.
        return match source.describe_digest(repository, pinned).await {
            Ok(Some(_)) => (
                Outcome::DigestConfirmed {
                    digest: pinned.clone(),
                    warmed: true,
                },
                false,
            ),
            Ok(None) => (
                Outcome::DigestUnavailable {
                    tag: tag.to_owned(),
                    pinned: pinned.clone(),
                    current,
                },
                false,
            ),
            Err(e) => failed(&e),
        };
    }
    let Some(tag) = target.fetch_tag() else {
        return (no_such_tag(""), false);
    };
    match source.describe_tag(repository, tag).await {
        Ok(Some(image)) => {
            return (
                Outcome::AlreadyCached {
                    digest: image.digest,
                },
                false,
            );
        }
        Ok(None) => {}
        Err(e) => return failed(&e),
    }
    if check {
        return (Outcome::NotCached, false);
    }
    match source.fetch_tag(repository, tag).await {
        Ok(Some(digest)) => (Outcome::Warmed { digest }, false),
        Ok(None) => (no_such_tag(tag), false),
        Err(e) => failed(&e),
    }
}

fn no_such_tag(tag: &str) -> Outcome {
    Outcome::Failed {
        reason: format!("the upstream registry has no tag {tag:?}"),
        unreadable: false,
    }
}

/// Output format of `warm`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum WarmOutput {
    /// One row per image.
    #[default]
    Table,
    /// A JSON array of reports.
    Json,
}

/// `pullthrough warm`.
#[derive(Debug, Args)]
pub struct WarmArgs {
    /// Manifest files (YAML or JSON, several documents allowed); `-` or none reads stdin.
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<PathBuf>,
    /// Configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Only report what the cache holds, without warming; exit 1 when something is not cached.
    #[arg(long)]
    pub check: bool,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = WarmOutput::Table)]
    pub output: WarmOutput,
}

/// Reads the manifests of `files` (stdin for none or `-`) as `(name, text)`.
fn read_inputs(files: &[PathBuf]) -> anyhow::Result<Vec<(String, String)>> {
    let mut inputs = Vec::new();
    if files.is_empty() || files.iter().any(|f| f == Path::new("-")) {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read manifests from standard input")?;
        inputs.push(("-".to_owned(), text));
    }
    for file in files.iter().filter(|f| *f != Path::new("-")) {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        inputs.push((file.display().to_string(), text));
    }
    Ok(inputs)
}

/// Warms (or checks) every image of `inputs` the map routes through the cache.
pub async fn warm<S: ImageSource>(
    source: &S,
    config: &Config,
    inputs: &[(String, String)],
    check: bool,
) -> anyhow::Result<Vec<Report>> {
    let mut rows = Vec::new();
    for (name, text) in inputs {
        rows.extend(preview::preview(config, text, name)?.rows);
    }
    let targets = plan(
        config,
        rows.iter()
            .filter(|r| !r.image.is_empty())
            .map(|r| (r.object.as_str(), r.container.as_str(), r.image.as_str())),
    );
    let reports = futures::stream::iter(targets)
        .map(|(target, used_by)| async move {
            let (outcome, _) = warm_one(source, &target, check).await;
            Report {
                image: target.image,
                used_by,
                repository: target.repository,
                outcome,
            }
        })
        .buffered(CLI_CONCURRENCY)
        .collect()
        .await;
    Ok(reports)
}

/// Runs `warm`, writing to stdout; `Ok(false)` when an image is not warmed (or not cached with
/// `--check`), an error when ECR cannot be read.
pub async fn run_warm(args: &WarmArgs) -> anyhow::Result<bool> {
    let (config, _) = args.config.load()?;
    let inputs = read_inputs(&args.files)?;
    let ecr = AwsEcr::from_env(&config.region, Some(config.account_id.clone())).await;
    let reports = warm(&ecr, &config, &inputs, args.check).await?;
    let out = match args.output {
        WarmOutput::Table => render_table(&reports),
        WarmOutput::Json => {
            let mut text = serde_json::to_string_pretty(&reports).context("cannot render JSON")?;
            text.push('\n');
            text
        }
    };
    std::io::stdout()
        .write_all(out.as_bytes())
        .context("cannot write to standard output")?;
    let outcomes: Vec<Outcome> = reports.into_iter().map(|r| r.outcome).collect();
    match exit_code(&outcomes) {
        0 => Ok(true),
        1 => Ok(false),
        _ => anyhow::bail!(
            "ECR cannot be read (the role needs ecr:DescribeImages and ecr:BatchGetImage on the cache repositories)"
        ),
    }
}

/// Metrics of the reconciler's warming.
#[derive(Clone)]
pub struct WarmMetrics {
    /// Images warmed, by result (`warmed`, `already_cached`, `digest_confirmed`,
    /// `digest_unavailable`, `failed`).
    pub warms: IntCounterVec,
}

impl WarmMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            warms: IntCounterVec::new(
                Opts::new(
                    "digest_warms_total",
                    "Pinned images the reconciler warmed through the cache, by result",
                ),
                &["result"],
            )?,
        };
        registry.register(Box::new(m.warms.clone()))?;
        Ok(m)
    }
}

/// The reconciler's warming: the ECR client and what it found.
#[derive(Clone)]
pub struct Warmer {
    /// ECR, with the reconciler's role (`ecr:BatchGetImage`, `ecr:DescribeImages`,
    /// `ecr:BatchImportUpstreamImage`, `ecr:CreateRepository` on the cache repositories).
    pub source: AwsEcr,
    /// Images whose pinned digest cannot be had through the cache; read by the Event check.
    pub unavailable: Arc<ArcSwap<Unavailable>>,
    /// Pinned digests confirmed in the cache; read by the policy task.
    pub confirmed: Arc<ArcSwap<crate::digests::DigestSnapshot>>,
    /// Metrics.
    pub metrics: WarmMetrics,
}

impl Warmer {
    /// A warmer over `source`.
    pub fn new(source: AwsEcr, metrics: WarmMetrics) -> Self {
        Self {
            source,
            unavailable: Arc::new(ArcSwap::from_pointee(Unavailable::default())),
            confirmed: Arc::new(ArcSwap::from_pointee(crate::digests::DigestSnapshot::EMPTY)),
            metrics,
        }
    }

    /// Warms what `wanted` lists, while `leader` is true, until `stop`: a few at a time, each
    /// image once until its reference changes.
    pub async fn run(
        &self,
        config: Arc<ArcSwap<Config>>,
        wanted: impl Fn(&Config) -> Vec<Target>,
        leader: watch::Receiver<bool>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut warming = Warming::new(config.load().digest_check.warm_concurrency, WARM_MEMORY);
        let mut tasks: JoinSet<(Target, Outcome, bool)> = JoinSet::new();
        let mut ticker = tokio::time::interval(WARM_TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    let Ok((target, outcome, throttled)) = done else { continue };
                    self.metrics.warms.with_label_values(&[outcome.kind()]).inc();
                    match &outcome {
                        Outcome::Failed { reason, .. } => {
                            warn!(image = %target.image, %reason, "cannot warm a pinned image");
                        }
                        o => info!(image = %target.image, result = o.label(), detail = %o.detail(), "pinned image warmed"),
                    }
                    warming.finish(&target, outcome, throttled, Instant::now());
                    let unavailable = warming.unavailable();
                    if **self.unavailable.load() != unavailable {
                        self.unavailable.store(Arc::new(unavailable));
                    }
                    let confirmed = warming.confirmed();
                    if **self.confirmed.load() != confirmed {
                        self.confirmed.store(Arc::new(confirmed));
                    }
                    continue;
                }
                _ = ticker.tick() => {}
            }
            if !*leader.borrow() {
                continue;
            }
            let cfg = config.load_full();
            warming.set_concurrency(cfg.digest_check.warm_concurrency);
            let wanted = wanted(&cfg);
            warming.retain(&wanted);
            for target in warming.start(&wanted, Instant::now()) {
                let source = self.source.clone();
                tasks.spawn(async move {
                    let (outcome, throttled) = warm_one(&source, &target, false).await;
                    (target, outcome, throttled)
                });
            }
        }
        tasks.shutdown().await;
    }
}
