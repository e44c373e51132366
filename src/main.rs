//! The `pullthrough` binary.

use std::process::ExitCode;

use clap::Parser as _;
use pullthrough::cli::{self, Cli, Command};
use pullthrough::telemetry;

fn main() -> ExitCode {
    // kube and the AWS SDK can both pull in a rustls provider; pick one before anything uses TLS.
    if rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .is_err()
    {
        eprintln!("pullthrough: a TLS crypto provider was already installed");
    }
    let cli = Cli::parse();
    telemetry::init(cli.log.log_format, "info");
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pullthrough: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    cli::validate(&cli)?;
    match cli.command {
        Command::Preview(args) => cli::run_preview(&args),
        Command::Webhook(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(cli::run_webhook(args)),
    }
}
