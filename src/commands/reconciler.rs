//! `pullthrough reconciler`: the watchers, the Lease, the Event layer and the background tasks it runs.

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use kube::runtime::events::Reporter;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::{spawn_background, wait_for};
use crate::cli::ReconcilerArgs;
use crate::ecr::AwsEcr;
use crate::metrics::Metrics;
use crate::policy::Options as PolicyOptions;
use crate::policy::apply::{PolicyMetrics, PolicyTask};
use crate::reconciler;
use crate::reconciler::run::{
    LeaseOptions, Options as ReconcileOptions, Reconciler, ReconcilerMetrics,
};
use crate::reconciler::writer::EventWriter;
use crate::server::{self, AppState, ServeOptions};

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
    let warmer = crate::warm::run::Warmer::new(ecr, warm_metrics);
    let confirmed = warmer.confirmed.clone();
    let warmer = Some(warmer);
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
    if args.manage_policy {
        let task = PolicyTask {
            client: client.clone(),
            config: state.config.clone(),
            rules: state.rules.clone(),
            digests: confirmed,
            options: PolicyOptions {
                name: args.policy_name.clone(),
                namespace_selector: args.namespace_selector.clone(),
                excluded_namespaces: vec![namespace.clone()],
                failure_policy: args.policy_failure_policy,
                max_digests: args.policy_max_digests,
            },
            events: EventWriter::new(
                client.clone(),
                Reporter {
                    controller: "pullthrough".to_owned(),
                    instance: Some(identity.clone()),
                },
            ),
            deployment: args.deployment_name.clone().map(|d| (namespace.clone(), d)),
            metrics: PolicyMetrics::register(metrics.registry())
                .context("cannot register metrics")?,
            tick: crate::policy::apply::TICK,
            min_interval: crate::policy::keep::MIN_INTERVAL,
        };
        critical.spawn(task.run(leader.clone(), stop.clone()));
    }
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
