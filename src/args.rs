//! Command-line argument groups that more than one subcommand flattens in: where the configuration comes from, and logging.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use crate::config::{Config, Overrides};
use crate::telemetry::LogFormat;

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
