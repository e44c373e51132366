//! The runtime of each subcommand; `cli` parses the command line and dispatches here.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::args::ConfigArgs;
use crate::ecr::AwsEcr;
use crate::refresh;
use crate::reload::ConfigReloader;
use crate::server::AppState;

pub mod preview;
pub mod reconciler;
pub mod rules;
pub mod webhook;

/// Spawns what the webhook and the reconciler both run in the background: the ECR rule
/// refresh, and the configuration reloader when the configuration comes from a file.
pub(crate) async fn spawn_background(
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

pub(crate) async fn wait_for(mut rx: watch::Receiver<bool>) {
    // A dropped sender also means stop.
    let _ = rx.wait_for(|stop| *stop).await;
}
