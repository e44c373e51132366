//! Command line: subcommands, flags (each with an environment variable), and their dispatch.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand, ValueEnum};

pub use crate::args::{ConfigArgs, LogArgs};

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

/// The name kubectl looks for on the PATH: installed so, the binary runs as `kubectl pullthrough`.
pub const KUBECTL_PLUGIN: &str = "kubectl-pullthrough";

impl Cli {
    /// Parses `args`, the first being the program's path: run as [`KUBECTL_PLUGIN`], usage and
    /// errors name the command `kubectl pullthrough`, as the user typed it. Exits on `--help`,
    /// `--version` and usage errors, as clap does.
    pub fn parse_args<I, T>(args: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let matches = command_for(args.first()).get_matches_from(args);
        Self::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}

/// The clap command, named after how it was invoked.
fn command_for(program: Option<&OsString>) -> clap::Command {
    let command = Cli::command();
    let plugin = program
        .and_then(|p| Path::new(p).file_stem())
        .is_some_and(|stem| stem == KUBECTL_PLUGIN);
    if plugin {
        command
            .bin_name("kubectl pullthrough")
            .display_name(KUBECTL_PLUGIN)
    } else {
        command
    }
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
    /// Show how much of what the Pods run pulls through the cache, and why the rest does not.
    Coverage(Box<crate::coverage::command::CoverageArgs>),
    /// Fill the pull-through cache by tag for the images of manifests, and confirm pinned digests.
    Warm(crate::warm::run::WarmArgs),
    /// Print the MutatingAdmissionPolicy that makes the API server rewrite as the webhook does.
    Policy(Box<crate::policy::command::PolicyArgs>),
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
    /// Keep the MutatingAdmissionPolicy (Kubernetes 1.36+) applied and in step with the
    /// configuration, the rule status and the confirmed digests, while holding the Lease.
    #[arg(long, env = "PULLTHROUGH_MANAGE_POLICY")]
    pub manage_policy: bool,
    /// Name of the MutatingAdmissionPolicy (the binding, which the chart owns, names it).
    #[arg(long, env = "PULLTHROUGH_POLICY_NAME", default_value = crate::policy::DEFAULT_NAME)]
    pub policy_name: String,
    /// What the API server does when the policy cannot be evaluated.
    #[arg(long, env = "PULLTHROUGH_POLICY_FAILURE_POLICY", value_enum, default_value_t = crate::policy::FailurePolicy::Ignore)]
    pub policy_failure_policy: crate::policy::FailurePolicy,
    /// Most confirmed digests the policy carries; past it, the webhook rewrites the others.
    #[arg(long, env = "PULLTHROUGH_POLICY_MAX_DIGESTS", default_value_t = crate::policy::DEFAULT_MAX_DIGESTS)]
    pub policy_max_digests: usize,
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

pub use crate::commands::preview::run_preview;
pub use crate::commands::reconciler::run_reconciler;
pub use crate::commands::rules::run_rules;
pub use crate::commands::webhook::run_webhook;

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
            if args.manage_policy {
                crate::policy::check_selector(&args.namespace_selector)?;
            }
        }
        Command::Preview(_)
        | Command::Rules(_)
        | Command::Cache(_)
        | Command::Audit(_)
        | Command::Coverage(_)
        | Command::Warm(_)
        | Command::Policy(_) => {}
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
    fn run_as_kubectl_pullthrough_it_parses_alike_and_names_itself_so() {
        let cli = Cli::parse_args([
            "/usr/local/bin/kubectl-pullthrough",
            "coverage",
            "--kubeconfig",
            "/tmp/kc",
            "-n",
            "shop",
            "-o",
            "json",
        ]);
        let Command::Coverage(args) = cli.command else {
            panic!("not coverage");
        };
        assert_eq!(args.cluster.namespace.as_deref(), Some("shop"));
        assert_eq!(
            args.cluster.kubeconfig.as_deref(),
            Some(std::path::Path::new("/tmp/kc"))
        );
        let plugin = OsString::from("kubectl-pullthrough");
        let help = command_for(Some(&plugin))
            .try_get_matches_from(["kubectl-pullthrough", "coverage", "--help"])
            .unwrap_err()
            .to_string();
        assert!(
            help.contains("Usage: kubectl pullthrough coverage"),
            "{help}"
        );
        let plain = OsString::from("/usr/bin/pullthrough");
        let help = command_for(Some(&plain))
            .try_get_matches_from(["pullthrough", "audit", "--help"])
            .unwrap_err()
            .to_string();
        assert!(help.contains("Usage: pullthrough audit"), "{help}");
        assert!(help.contains("--kubeconfig"), "{help}");
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
