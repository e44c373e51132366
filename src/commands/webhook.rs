//! `pullthrough webhook`: the admission server, its reloaders and its background ECR reads.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use super::{spawn_background, wait_for};
use crate::cli::WebhookArgs;
use crate::digests::{self, run::DigestMetrics};
use crate::ecr::AwsEcr;
use crate::metrics::Metrics;
use crate::server::{self, AppState, Limits, ServeOptions};
use crate::tls::{self, CertPaths, CertReloader, CertResolver};

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
