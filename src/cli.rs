//! Command line: subcommands, flags (each with an environment variable), and their dispatch.

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use kube::runtime::events::Reporter;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use crate::config::{Config, Overrides};
use crate::digests::{self, run::DigestMetrics};
use crate::ecr::AwsEcr;
use crate::metrics::Metrics;
use crate::preview;
use crate::reconciler;
use crate::reconciler::run::{
    LeaseOptions, Options as ReconcileOptions, Reconciler, ReconcilerMetrics,
};
use crate::refresh;
use crate::reload::ConfigReloader;
use crate::rules::{self, RuleState};
use crate::server::{self, AppState, Limits, ServeOptions};
use crate::telemetry::LogFormat;
use crate::tls::{self, CertPaths, CertReloader, CertResolver};

/// Routes container images through AWS ECR pull-through cache rules.
#[derive(Debug, Parser)]
#[command(name = "pullthrough", version = crate::version::LONG, about, long_about = None)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the mutating admission webhook.
    Webhook(Box<WebhookArgs>),
    /// Show offline what the webhook would do to manifests.
    Preview(PreviewArgs),
    /// List the ECR pull-through cache rules the map needs, and check them with --check.
    Rules(RulesArgs),
    /// Watch opted-in Pods and publish Kubernetes Events when the rules they need are missing.
    Reconciler(Box<ReconcilerArgs>),
    /// Show what the pull-through cache holds and costs, per mapped prefix.
    Cache(crate::cache::run::CacheArgs),
    /// List the containers that run upstream images the webhook would rewrite; exit 1 if any.
    Audit(Box<crate::audit::command::AuditArgs>),
    /// Fill the pull-through cache by tag for the images of manifests, and confirm pinned digests.
    Warm(crate::warm::run::WarmArgs),
}

/// `pullthrough reconciler`.
#[derive(Debug, Args)]
pub struct ReconcilerArgs {
    /// Configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Address of the plain-HTTP admin endpoint (/healthz, /readyz, /metrics).
    #[arg(long, env = "PULLTHROUGH_ADMIN_LISTEN", default_value = "0.0.0.0:8080")]
    pub admin_listen: SocketAddr,
    /// Label selector of the opted-in namespaces.
    #[arg(
        long,
        env = "PULLTHROUGH_NAMESPACE_SELECTOR",
        default_value = "pullthrough.dev/enabled=true"
    )]
    pub namespace_selector: String,
    /// Name of the Lease that elects the one replica publishing Events.
    #[arg(
        long,
        env = "PULLTHROUGH_LEASE_NAME",
        default_value = "pullthrough-reconciler"
    )]
    pub lease_name: String,
    /// How long the Lease holds without renewal.
    #[arg(long, env = "PULLTHROUGH_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,
    /// The reconciler's own Deployment, which gets the summary Events.
    #[arg(long, env = "PULLTHROUGH_DEPLOYMENT_NAME")]
    pub deployment_name: Option<String>,
    /// This replica's Pod name: its Lease identity and the Events' reporting instance
    /// (default: the host name).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// The reconciler's namespace, home of the Lease (default: the client's namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    pub pod_namespace: Option<String>,
    /// How often a Warning that still stands is published again.
    #[arg(long, env = "PULLTHROUGH_EVENT_RESEND_INTERVAL", default_value = "30m", value_parser = humantime::parse_duration)]
    pub event_resend_interval: Duration,
    /// Events published per second, on average: what is held back goes out on later passes,
    /// so that no rollout or outage becomes an Event storm.
    #[arg(long, env = "PULLTHROUGH_EVENT_RATE", default_value_t = 10.0)]
    pub event_rate: f64,
    /// Events published at once before `--event-rate` applies.
    #[arg(long, env = "PULLTHROUGH_EVENT_BURST", default_value_t = 50)]
    pub event_burst: u32,
    /// How often the configuration file is checked for changes.
    #[arg(long, env = "PULLTHROUGH_RELOAD_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub reload_interval: Duration,
}

/// `pullthrough rules`.
#[derive(Debug, Args)]
pub struct RulesArgs {
    /// Configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Read the rules from ECR and show their status; exit 1 when one is missing or broken.
    #[arg(long)]
    pub check: bool,
    /// Form: AWS CLI commands, or everything the map needs as Terraform, Pulumi (Python) or
    /// CloudFormation.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = crate::iac::RulesOutput::Aws)]
    pub output: crate::iac::RulesOutput,
}

/// Logging flags.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log line format; the level comes from RUST_LOG (default info).
    #[arg(long, env = "PULLTHROUGH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain, global = true)]
    pub log_format: LogFormat,
}

/// Where the configuration comes from.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// YAML configuration file; without it the embedded default map is used.
    #[arg(long, env = "PULLTHROUGH_CONFIG")]
    pub config: Option<PathBuf>,
    /// AWS account that owns the pull-through cache rules (overrides the file).
    #[arg(long, env = "PULLTHROUGH_ACCOUNT_ID")]
    pub account_id: Option<String>,
    /// AWS region of the private registry (overrides the file; falls back to AWS_REGION).
    #[arg(long, env = "PULLTHROUGH_REGION")]
    pub region: Option<String>,
}

impl ConfigArgs {
    /// Flag and environment values that win over the file. `AWS_REGION` only fills a region
    /// that neither the flag nor the file gives.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            account_id: self.account_id.clone(),
            region: self.region.clone(),
            fallback_region: std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()),
        }
    }

    /// Loads the configuration, with errors that name the file and line. Returns the raw
    /// content too, for the reloader.
    pub fn load(&self) -> anyhow::Result<(Config, Option<Vec<u8>>)> {
        let overrides = self.overrides();
        match &self.config {
            None => Ok((Config::embedded(&overrides)?, None)),
            Some(path) => {
                let raw = std::fs::read(path).with_context(|| {
                    format!("cannot read configuration file {}", path.display())
                })?;
                let text = std::str::from_utf8(&raw)
                    .with_context(|| format!("{} is not UTF-8", path.display()))?;
                let config = Config::load(text, &overrides)
                    .with_context(|| format!("invalid configuration file {}", path.display()))?;
                Ok((config, Some(raw)))
            }
        }
    }
}

/// `pullthrough webhook`.
#[derive(Debug, Args)]
pub struct WebhookArgs {
    /// Configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// PEM certificate chain served on --listen; without it a self-signed pair is made.
    #[arg(long, env = "PULLTHROUGH_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file.
    #[arg(long, env = "PULLTHROUGH_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// Address of the HTTPS admission endpoint (POST /mutate).
    #[arg(long, env = "PULLTHROUGH_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Address of the plain-HTTP admin endpoint (/healthz, /readyz, /metrics).
    #[arg(long, env = "PULLTHROUGH_ADMIN_LISTEN", default_value = "0.0.0.0:8080")]
    pub admin_listen: SocketAddr,
    /// Where the self-signed CA and certificate are written when no certificate is given.
    #[arg(long, env = "PULLTHROUGH_SELF_SIGNED_DIR")]
    pub self_signed_dir: Option<PathBuf>,
    /// Extra DNS names for the self-signed certificate (localhost is always included).
    #[arg(long, env = "PULLTHROUGH_SELF_SIGNED_SANS", value_delimiter = ',')]
    pub self_signed_san: Vec<String>,
    /// How often the configuration and certificate files are checked for changes.
    #[arg(long, env = "PULLTHROUGH_RELOAD_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub reload_interval: Duration,
    /// Deadline for one admission request; keep it below the webhook's timeoutSeconds.
    #[arg(long, env = "PULLTHROUGH_REQUEST_TIMEOUT", default_value = "8s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// Time allowed for an HTTP/1 request head, and for an idle keep-alive connection.
    #[arg(long, env = "PULLTHROUGH_HEADER_READ_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,
    /// Time allowed for a client to finish its TLS handshake.
    #[arg(long, env = "PULLTHROUGH_HANDSHAKE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,
    /// Largest admission request body, in bytes.
    #[arg(long, env = "PULLTHROUGH_BODY_LIMIT", default_value_t = 8 * 1024 * 1024)]
    pub body_limit: usize,
    /// Most connections served at once.
    #[arg(long, env = "PULLTHROUGH_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// After SIGTERM, how long to keep serving with readiness failing, so endpoints update.
    #[arg(long, env = "PULLTHROUGH_SHUTDOWN_DELAY", default_value = "5s", value_parser = humantime::parse_duration)]
    pub shutdown_delay: Duration,
    /// After the shutdown delay, how long in-flight requests get to finish.
    #[arg(long, env = "PULLTHROUGH_DRAIN_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
}

/// Output format of `preview`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum PreviewOutput {
    /// The manifests, rewritten in place: only image fields (and the record of originals)
    /// change.
    #[default]
    Yaml,
    /// One row per image: namespace, object, container, image, new image, reason.
    Table,
    /// A unified diff of the manifests and their rewritten form.
    Diff,
}

/// `pullthrough preview`.
#[derive(Debug, Args)]
pub struct PreviewArgs {
    /// Manifest files (YAML or JSON, several documents allowed); `-` or none reads stdin.
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<PathBuf>,
    /// Configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = PreviewOutput::Yaml)]
    pub output: PreviewOutput,
}

/// Runs `preview`, writing to stdout.
pub fn run_preview(args: &PreviewArgs) -> anyhow::Result<()> {
    let (config, _) = args.config.load()?;
    let mut inputs = Vec::new();
    if args.files.is_empty() || args.files.iter().any(|f| f == Path::new("-")) {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read manifests from standard input")?;
        inputs.push(("-".to_owned(), text));
    }
    for file in args.files.iter().filter(|f| *f != Path::new("-")) {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        inputs.push((file.display().to_string(), text));
    }
    let mut previews = Vec::new();
    for (name, text) in &inputs {
        let p = preview::preview(&config, text, name)?;
        for note in &p.notes {
            eprintln!("preview: {note}");
        }
        previews.push(p);
    }
    let out = match args.output {
        PreviewOutput::Yaml => preview::render_yaml(previews.iter().map(|p| p.text.as_str())),
        PreviewOutput::Table => preview::render_table(
            &previews
                .iter()
                .flat_map(|p| p.rows.iter().cloned())
                .collect::<Vec<_>>(),
        ),
        PreviewOutput::Diff => inputs
            .iter()
            .zip(&previews)
            .map(|((name, text), p)| preview::render_diff(name, text, &p.text))
            .collect(),
    };
    std::io::stdout()
        .write_all(out.as_bytes())
        .context("cannot write to standard output")?;
    Ok(())
}

/// Runs `rules`: prints the rules the map needs, their status with `--check`, and the commands
/// that create the missing ones. Returns whether every needed rule is usable (always true
/// without `--check`).
pub async fn run_rules(args: &RulesArgs) -> anyhow::Result<bool> {
    let (config, _) = args.config.load()?;
    if let Some(code) = crate::iac::render(&config, args.output) {
        if args.check {
            bail!("--check reads ECR and prints AWS CLI commands: use it without -o");
        }
        std::io::stdout()
            .write_all(code.as_bytes())
            .context("cannot write to standard output")?;
        return Ok(true);
    }
    let mut templates = None;
    let snapshot = if args.check {
        let ecr = AwsEcr::from_env(&config.region, Some(config.account_id.clone())).await;
        templates = Some(crate::cache::run::read_templates(&ecr).await);
        Some(
            refresh::fetch(&ecr, &config)
                .await
                .context("cannot read the pull-through cache rules from ECR")?,
        )
    } else {
        None
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Pull-through cache rules for {} (account {}, region {}):\n",
        config.registry_host, config.account_id, config.region
    );
    let mut rows = vec![[
        "REGISTRY".to_owned(),
        "ALIASES".to_owned(),
        "PREFIX".to_owned(),
        "UPSTREAM URL".to_owned(),
        "UPSTREAM REGISTRY".to_owned(),
        "CREDENTIALS".to_owned(),
        "STATUS".to_owned(),
    ]];
    let mut to_create = Vec::new();
    for m in config.registries.values() {
        let state = snapshot.as_ref().and_then(|s| s.state(&m.registry));
        let status = match state {
            Some(s) => s.to_string(),
            None => "not checked".to_owned(),
        };
        if state.is_none_or(|s| *s == RuleState::Missing) {
            to_create.push(m);
        }
        rows.push([
            m.registry.clone(),
            if m.aliases.is_empty() {
                "-".to_owned()
            } else {
                m.aliases.join(",")
            },
            m.ecr_prefix().to_owned(),
            m.upstream_url.clone(),
            m.upstream_registry.clone(),
            if m.needs_credentials {
                "Secrets Manager"
            } else {
                "none"
            }
            .to_owned(),
            status,
        ]);
    }
    out.push_str(&align(&rows));
    let usable = snapshot
        .as_ref()
        .is_none_or(|s| s.iter().all(|(_, state)| state.is_usable()));
    if !to_create.is_empty() {
        let _ = writeln!(
            out,
            "\n{}:\n",
            if args.check {
                "Create the missing rules"
            } else {
                "Commands that create them"
            }
        );
        for m in to_create {
            if let Some(secret) = rules::secret_command(&config, m) {
                let _ = writeln!(
                    out,
                    "# {}: store a read-only access token in Secrets Manager first\n{secret}",
                    m.registry
                );
            }
            let _ = writeln!(out, "{}\n", rules::create_command(&config, m));
        }
    }
    out.push_str(&crate::cache::template::render_section(
        &config,
        templates
            .as_ref()
            .map(|t| t.as_ref().map_err(ToString::to_string)),
    ));
    if let Some(s) = &snapshot {
        for (registry, state) in s.iter() {
            match state {
                RuleState::WrongUpstream { .. } => {
                    let _ = writeln!(
                        out,
                        "{registry}: the rule caches another upstream; delete it (aws ecr delete-pull-through-cache-rule) and create it again as above."
                    );
                }
                RuleState::CredentialsFailing { .. } => {
                    let _ = writeln!(
                        out,
                        "{registry}: update the rule's Secrets Manager secret with a valid username and accessToken (aws secretsmanager put-secret-value), then aws ecr validate-pull-through-cache-rule."
                    );
                }
                _ => {}
            }
        }
    }
    std::io::stdout()
        .write_all(out.as_bytes())
        .context("cannot write to standard output")?;
    Ok(usable)
}

fn align(rows: &[[String; 7]]) -> String {
    let mut widths = [0usize; 7];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(widths) {
            let _ = write!(line, "{cell:<w$}   ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Runs the webhook until SIGTERM, or until a critical task ends.
pub async fn run_webhook(args: Box<WebhookArgs>) -> anyhow::Result<()> {
    let (mut config, raw_config) = args.config.load()?;
    if args.config.config.is_none() && args.config.account_id.is_none() {
        // The example account is nobody's: reading its rules would only fail, and the AWS
        // SDK would warn about missing credentials at every retry.
        config.rule_check.enabled = false;
        warn!(
            account = %config.account_id,
            "no --config and no --account-id: using the example account, with the ECR rule check off; images will point at a registry that is not yours"
        );
    }
    let metrics = Metrics::new().context("cannot register metrics")?;

    // Certificates: validated before anything binds.
    let paths = if let (Some(cert), Some(key)) = (&args.tls_cert_file, &args.tls_key_file) {
        CertPaths {
            cert: cert.clone(),
            key: key.clone(),
        }
    } else {
        {
            let dir = args
                .self_signed_dir
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join("pullthrough-tls"));
            let pair = tls::write_self_signed(&dir, &args.self_signed_san).with_context(|| {
                format!(
                    "cannot write a self-signed certificate to {}",
                    dir.display()
                )
            })?;
            info!(
                ca = %pair.ca_path.display(),
                cert = %pair.cert.cert.display(),
                "no --tls-cert-file: serving a self-signed certificate; trust its CA with curl --cacert {}",
                pair.ca_path.display()
            );
            pair.cert
        }
    };
    let (loaded, cert_content) = tls::read_cert_files(&paths).with_context(|| {
        format!(
            "cannot load TLS certificate {} and key {}",
            paths.cert.display(),
            paths.key.display()
        )
    })?;
    metrics.tls.cert_not_after_seconds.set(loaded.not_after);
    let resolver = Arc::new(CertResolver::new(loaded.key));
    let tls_config = tls::server_config(resolver.clone())?;

    let mut state = AppState::new(config, metrics.clone());
    let digest_metrics =
        DigestMetrics::register(metrics.registry()).context("cannot register metrics")?;
    let (digest_requests, digest_rx) = digests::run::channel(&digest_metrics);
    state.digest_requests = Some(digest_requests);
    let limits = Limits {
        body_limit: args.body_limit,
        request_timeout: args.request_timeout,
    };
    let options = ServeOptions {
        handshake_timeout: args.handshake_timeout,
        header_read_timeout: args.header_read_timeout,
        max_connections: args.max_connections,
        drain_timeout: args.drain_timeout,
    };
    let webhook_listener = server::bind(args.listen).await?;
    let admin_listener = server::bind(args.admin_listen).await?;
    info!(
        listen = %webhook_listener.local_addr()?,
        admin = %admin_listener.local_addr()?,
        registry_host = %state.config.load().registry_host,
        "webhook serving"
    );

    // Two stages of shutdown: the webhook stops first, the admin port last.
    let (stop_webhook, webhook_stopped) = watch::channel(false);
    let (stop_admin, admin_stopped) = watch::channel(false);
    let mut critical = JoinSet::new();
    critical.spawn(server::serve(
        webhook_listener,
        Some(TlsAcceptor::from(tls_config)),
        server::webhook_router(state.clone(), limits),
        options,
        wait_for(webhook_stopped.clone()),
    ));
    let admin = tokio::spawn(server::serve(
        admin_listener,
        None,
        server::admin_router(state.clone()),
        options,
        wait_for(admin_stopped),
    ));
    critical.spawn(
        CertReloader::new(paths, resolver, metrics.tls.clone(), cert_content)
            .run(args.reload_interval, wait_for(webhook_stopped.clone())),
    );
    spawn_background(
        &mut critical,
        &state,
        &args.config,
        raw_config,
        args.reload_interval,
        &webhook_stopped,
    )
    .await;
    // Pinned digests are checked off the request path, with the webhook's read-only role.
    let ecr = AwsEcr::from_env(
        &state.config.load().region,
        Some(state.config.load().account_id.clone()),
    )
    .await;
    critical.spawn(digests::run::run(
        ecr,
        state.config.clone(),
        state.digests.clone(),
        digest_metrics,
        digest_rx,
        wait_for(webhook_stopped.clone()),
    ));
    let terminated = server::termination_signal();
    state.ready.store(true, Ordering::Release);

    let result = tokio::select! {
        () = terminated => Ok(()),
        ended = critical.join_next() => {
            Err(anyhow::anyhow!("a critical task ended unexpectedly: {ended:?}"))
        }
    };

    // Readiness fails first; requests keep being served while endpoints catch up.
    state.ready.store(false, Ordering::Release);
    if result.is_ok() && !args.shutdown_delay.is_zero() {
        info!(delay = ?args.shutdown_delay, "readiness off; serving until endpoints update");
        tokio::time::sleep(args.shutdown_delay).await;
    }
    let _ = stop_webhook.send(true);
    while critical.join_next().await.is_some() {}
    let _ = stop_admin.send(true);
    if let Err(e) = admin.await {
        warn!(error = %e, "admin server task failed");
    }
    info!("stopped");
    result
}

/// Runs the reconciler until SIGTERM, or until a critical task ends.
pub async fn run_reconciler(args: Box<ReconcilerArgs>) -> anyhow::Result<()> {
    let (config, raw_config) = args.config.load()?;
    let metrics = Metrics::new().context("cannot register metrics")?;
    let reconciler_metrics =
        ReconcilerMetrics::register(metrics.registry()).context("cannot register metrics")?;
    let client = kube::Client::try_default()
        .await
        .context("cannot configure the Kubernetes client")?;
    let namespace = args
        .pod_namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let identity = args
        .pod_name
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "pullthrough-reconciler".to_owned());
    let state = AppState::new(config, metrics.clone());
    let admin_listener = server::bind(args.admin_listen).await?;
    info!(
        admin = %admin_listener.local_addr()?,
        namespace = %namespace,
        identity = %identity,
        selector = %args.namespace_selector,
        "reconciler starting"
    );

    let (stop_tx, stop) = watch::channel(false);
    let mut critical = JoinSet::new();
    let admin = tokio::spawn(server::serve(
        admin_listener,
        None,
        server::admin_router(state.clone()),
        ServeOptions::default(),
        wait_for(stop.clone()),
    ));
    spawn_background(
        &mut critical,
        &state,
        &args.config,
        raw_config,
        args.reload_interval,
        &stop,
    )
    .await;
    crate::cache::run::spawn_metrics(
        &mut critical,
        metrics.registry(),
        state.config.clone(),
        wait_for(stop.clone()),
    )
    .await?;
    // Warming pulls pinned images by tag through the cache, with the reconciler's role; it
    // follows `digests` as reloaded, and does nothing unless it is `whenCached`.
    let warm_metrics = crate::warm::run::WarmMetrics::register(metrics.registry())
        .context("cannot register metrics")?;
    let ecr = AwsEcr::from_env(
        &state.config.load().region,
        Some(state.config.load().account_id.clone()),
    )
    .await;
    let warmer = Some(crate::warm::run::Warmer::new(ecr, warm_metrics));
    let (leader, election) = reconciler::run::elect(
        client.clone(),
        LeaseOptions {
            name: args.lease_name.clone(),
            namespace: namespace.clone(),
            identity: identity.clone(),
            duration: args.lease_duration,
        },
        reconciler_metrics.clone(),
        stop.clone(),
    );
    let reconciler = Reconciler {
        client,
        config: state.config.clone(),
        rules: state.rules.clone(),
        metrics: reconciler_metrics,
        options: ReconcileOptions {
            namespace_selector: args.namespace_selector.clone(),
            own_namespace: namespace,
            deployment: args.deployment_name.clone(),
            resend_interval: args.event_resend_interval,
            tick: Duration::from_secs(2),
            event_rate: args.event_rate,
            event_burst: args.event_burst,
        },
        reporter: Reporter {
            controller: "pullthrough".to_owned(),
            instance: Some(identity),
        },
        ready: state.ready.clone(),
        warmer,
    };
    critical.spawn(reconciler.run(leader, stop.clone()));
    let terminated = server::termination_signal();

    let result = tokio::select! {
        () = terminated => Ok(()),
        ended = critical.join_next() => {
            Err(anyhow::anyhow!("a critical task ended unexpectedly: {ended:?}"))
        }
    };
    state.ready.store(false, Ordering::Release);
    let _ = stop_tx.send(true);
    while critical.join_next().await.is_some() {}
    if let Err(e) = election.await {
        warn!(error = %e, "Lease task failed");
    }
    if let Err(e) = admin.await {
        warn!(error = %e, "admin server task failed");
    }
    info!("stopped");
    result
}

/// Spawns what the webhook and the reconciler both run in the background: the ECR rule
/// refresh, and the configuration reloader when the configuration comes from a file.
async fn spawn_background(
    critical: &mut JoinSet<()>,
    state: &AppState,
    config: &ConfigArgs,
    raw_config: Option<Vec<u8>>,
    reload_interval: Duration,
    stop: &watch::Receiver<bool>,
) {
    let ecr = AwsEcr::from_env(
        &state.config.load().region,
        Some(state.config.load().account_id.clone()),
    )
    .await;
    critical.spawn(refresh::run(
        ecr,
        state.config.clone(),
        state.rules.clone(),
        state.metrics.rules.clone(),
        wait_for(stop.clone()),
    ));
    if let (Some(path), Some(raw)) = (&config.config, raw_config) {
        critical.spawn(
            ConfigReloader::new(
                path.clone(),
                config.overrides(),
                state.config.clone(),
                state.metrics.config.clone(),
                raw,
            )
            .run(reload_interval, wait_for(stop.clone())),
        );
    }
}

async fn wait_for(mut rx: watch::Receiver<bool>) {
    // A dropped sender also means stop.
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Checks that `args` can run; used before starting a runtime so usage errors exit early.
pub fn validate(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Webhook(args) => {
            for (flag, value) in [
                ("--request-timeout", args.request_timeout),
                ("--header-read-timeout", args.header_read_timeout),
                ("--handshake-timeout", args.handshake_timeout),
                ("--reload-interval", args.reload_interval),
            ] {
                if value.is_zero() {
                    bail!("{flag} must be more than zero");
                }
            }
            if args.max_connections == 0 {
                bail!("--max-connections must be at least 1");
            }
            if args.body_limit == 0 {
                bail!("--body-limit must be at least 1 byte");
            }
        }
        Command::Reconciler(args) => {
            for (flag, value) in [
                ("--lease-duration", args.lease_duration),
                ("--event-resend-interval", args.event_resend_interval),
                ("--reload-interval", args.reload_interval),
            ] {
                if value.is_zero() {
                    bail!("{flag} must be more than zero");
                }
            }
            if args.lease_duration < Duration::from_secs(3) {
                bail!("--lease-duration must be at least 3s, to leave time to renew it");
            }
            if !(args.event_rate.is_finite() && args.event_rate > 0.0) {
                bail!("--event-rate must be a number of Events per second above zero");
            }
            if args.event_burst == 0 {
                bail!("--event-burst must be at least 1");
            }
        }
        Command::Preview(_)
        | Command::Rules(_)
        | Command::Cache(_)
        | Command::Audit(_)
        | Command::Warm(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("pullthrough").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn defaults_are_valid() {
        validate(&parse(&["webhook"])).unwrap();
        validate(&parse(&["reconciler"])).unwrap();
        validate(&parse(&["rules"])).unwrap();
    }

    #[test]
    fn values_that_cannot_work_are_refused_before_anything_starts() {
        for (args, message) in [
            (
                &["webhook", "--max-connections", "0"][..],
                "--max-connections must be at least 1",
            ),
            (&["webhook", "--body-limit", "0"], "--body-limit"),
            (&["webhook", "--request-timeout", "0s"], "--request-timeout"),
            (
                &["webhook", "--handshake-timeout", "0s"],
                "--handshake-timeout",
            ),
            (
                &["webhook", "--header-read-timeout", "0s"],
                "--header-read-timeout",
            ),
            (
                &["reconciler", "--lease-duration", "1s"],
                "--lease-duration",
            ),
            (
                &["reconciler", "--event-resend-interval", "0s"],
                "--event-resend-interval",
            ),
            (&["reconciler", "--event-rate", "0"], "--event-rate"),
            (&["reconciler", "--event-rate", "NaN"], "--event-rate"),
            (&["reconciler", "--event-burst", "0"], "--event-burst"),
        ] {
            let err = validate(&parse(args)).unwrap_err().to_string();
            assert!(err.contains(message), "{args:?}: {err}");
        }
    }

    #[test]
    fn the_handshake_timeout_reaches_the_server_options() {
        let Command::Webhook(args) = parse(&["webhook", "--handshake-timeout", "750ms"]).command
        else {
            panic!("not the webhook");
        };
        assert_eq!(args.handshake_timeout, Duration::from_millis(750));
    }
}
