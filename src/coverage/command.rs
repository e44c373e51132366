//! `pullthrough coverage`: the share through the cache from a shell, against the current kubeconfig context.
//!
//! Reads namespaces and Pods as the audit does, and the ECR rules when AWS can be reached.
//! Writes nothing anywhere.

use clap::{Args, ValueEnum};

use super::classify;
use super::report::Report;
use crate::audit::command::{Cluster, ClusterArgs};
use crate::digests::DigestSnapshot;
use crate::pod::PodRecord;

/// Output format of `pullthrough coverage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CoverageOutput {
    /// A summary per registry and state, the share, what to do about the rest.
    Table,
    /// A `Coverage` object (documented in docs/coverage.md).
    Json,
}

/// `pullthrough coverage`.
#[derive(Debug, Args)]
pub struct CoverageArgs {
    /// The cluster to count.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = CoverageOutput::Table)]
    pub output: CoverageOutput,
    /// One row per image too, with its state and why.
    #[arg(long)]
    pub details: bool,
    /// Exit 1 when less than this percentage of the images pulls through the cache.
    #[arg(long, value_name = "PERCENT", value_parser = percent)]
    pub min_share: Option<f64>,
}

fn percent(s: &str) -> Result<f64, String> {
    let value: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{s:?} is not a percentage"))?;
    if (0.0..=100.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{s} is not between 0 and 100"))
    }
}

/// Counts the images of the Pods in scope: `Ok(false)` when the share is below `--min-share`,
/// an error when the cluster cannot be read.
pub async fn run(args: &CoverageArgs) -> anyhow::Result<bool> {
    let Cluster {
        config,
        scope,
        rules,
        source,
        pods,
        ..
    } = args.cluster.read().await?;
    let mut report = Report::new(source);
    report.namespaces = scope.len();
    for pod in &pods {
        let Some(record) = PodRecord::from_pod(pod) else {
            continue;
        };
        if !scope.contains(&*record.namespace) {
            continue;
        }
        // Which pinned digests the cache holds is not asked: they count as not known.
        report.add(classify(&config, &rules, &DigestSnapshot::EMPTY, &record));
    }
    report.finish(args.details);
    let text = match args.output {
        CoverageOutput::Table => report.to_table(),
        CoverageOutput::Json => report.to_json()?,
    };
    print!("{text}");
    Ok(args.min_share.is_none_or(|min| report.reaches(min)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_share_is_a_percentage() {
        assert!((percent("95").unwrap() - 95.0).abs() < f64::EPSILON);
        assert!((percent("99.5%").unwrap() - 99.5).abs() < f64::EPSILON);
        assert!(percent("101").is_err());
        assert!(percent("-1").is_err());
        assert!(percent("most").is_err());
    }
}
