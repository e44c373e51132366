//! The `pullthrough` binary.

use std::process::ExitCode;

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
    let cli = Cli::parse_args(std::env::args_os());
    telemetry::init(cli.log.log_format, "info");
    // Exit 1: the command ran and found a problem (a missing rule); 2: it could not run.
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("pullthrough: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the command; `Ok(false)` is a clean run whose answer is "not all is well".
fn run(cli: Cli) -> anyhow::Result<bool> {
    cli::validate(&cli)?;
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    match cli.command {
        Command::Preview(args) => cli::run_preview(&args).map(|()| true),
        Command::Webhook(args) => runtime()?.block_on(cli::run_webhook(args)).map(|()| true),
        Command::Rules(args) => runtime()?.block_on(cli::run_rules(&args)),
        Command::Cache(args) => runtime()?.block_on(pullthrough::cache::run::run_cache(&args)),
        Command::Warm(args) => runtime()?.block_on(pullthrough::warm::run::run_warm(&args)),
        Command::Reconciler(args) => runtime()?
            .block_on(cli::run_reconciler(args))
            .map(|()| true),
        Command::Audit(args) => runtime()?.block_on(pullthrough::audit::command::run(&args)),
        Command::Coverage(args) => runtime()?.block_on(pullthrough::coverage::command::run(&args)),
        Command::Policy(args) => runtime()?.block_on(pullthrough::policy::command::run(&args)),
    }
}
