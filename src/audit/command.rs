//! `pullthrough audit`: the bypass audit from a shell, against the current kubeconfig context.
//!
//! Reads namespaces, Pods, and the ReplicaSets and Jobs between Pods and their workloads; reads
//! the ECR rules when AWS can be reached. Writes nothing anywhere.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use super::report::{Report, RuleSource};
use super::selector::Selector;
use super::{Facts, RuleHistory, opted_in_at};
use crate::args::ConfigArgs;
use crate::config::{Config, UnknownRules};
use crate::ecr::AwsEcr;
use crate::pod::Owner;
use crate::pod::PodRecord;
use crate::refresh;
use crate::rules::RuleSnapshot;

/// Never audited unless named with `--namespace`: the chart keeps the webhook away from it.
const KUBE_SYSTEM: &str = "kube-system";
/// How long ECR gets to answer before the audit goes on with the map alone.
const RULES_TIMEOUT: Duration = Duration::from_secs(20);
/// Pods and namespaces are listed in pages of this many.
const PAGE: u32 = 500;

/// Output format of `pullthrough audit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuditOutput {
    /// One line per bypassing container, then the fixes.
    Table,
    /// A `BypassAudit` object (documented in the README).
    Json,
}

/// The flags of the subcommands that read the cluster (`audit`, `coverage`), with kubectl's
/// habits.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Configuration, as the webhook has it.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Kubeconfig file to use (default: $KUBECONFIG or ~/.kube/config, as kubectl).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use (default: the current context).
    #[arg(long)]
    pub context: Option<String>,
    /// Only this namespace.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Namespaces that are not opted in too, as if they were.
    #[arg(long, short = 'A')]
    pub all_namespaces: bool,
    /// Label selector of the opted-in namespaces, as the webhook and the reconciler have it.
    #[arg(
        long,
        env = "PULLTHROUGH_NAMESPACE_SELECTOR",
        default_value = "pullthrough.dev/enabled=true"
    )]
    pub namespace_selector: String,
}

/// What a cluster-reading subcommand starts from.
pub struct Cluster {
    /// The configuration.
    pub config: Config,
    /// The client.
    pub client: Client,
    /// The namespaces in scope.
    pub scope: BTreeSet<String>,
    /// What the namespaces tell of their opt-in.
    pub facts: Facts,
    /// The rules.
    pub rules: RuleSnapshot,
    /// Where the rules came from.
    pub source: RuleSource,
    /// The Pods of the namespaces in scope.
    pub pods: Vec<Pod>,
}

impl ClusterArgs {
    /// Loads the configuration, then reads the namespaces in scope, the rules (when ECR can be
    /// reached) and the Pods.
    pub async fn read(&self) -> anyhow::Result<Cluster> {
        let (mut config, _) = self.config.load()?;
        let selector = Selector::parse(&self.namespace_selector).with_context(|| {
            format!("invalid --namespace-selector {:?}", self.namespace_selector)
        })?;
        let client = client(self.context.as_deref(), self.kubeconfig.as_deref()).await?;
        let (scope, facts) = scope(
            &client,
            self.namespace.as_deref(),
            self.all_namespaces,
            &selector,
            &self.namespace_selector,
        )
        .await?;
        let (rules, source) = rule_snapshot(&mut config).await;
        let pods = pods(&client, self.namespace.as_deref(), &scope).await?;
        Ok(Cluster {
            config,
            client,
            scope,
            facts,
            rules,
            source,
            pods,
        })
    }
}

/// `pullthrough audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The cluster to audit.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = AuditOutput::Table)]
    pub output: AuditOutput,
}

/// Runs the audit: `Ok(true)` when nothing bypasses the cache, `Ok(false)` when something
/// does, an error when the cluster cannot be read.
pub async fn run(args: &AuditArgs) -> anyhow::Result<bool> {
    let Cluster {
        config,
        client,
        scope,
        mut facts,
        rules,
        source,
        pods,
    } = args.cluster.read().await?;
    facts.rule_usable_since = RuleHistory::default().usable_since(&rules);

    let mut report = Report::new(source);
    report.namespaces = scope.len();
    let mut owners = Owners::new(client);
    for pod in &pods {
        let Some(record) = PodRecord::from_pod(pod) else {
            continue;
        };
        if !scope.contains(&*record.namespace) {
            continue;
        }
        // Owners are read only for Pods that appear in the output.
        let owner = if super::bypasses(&config, &rules, &record).is_empty() {
            None
        } else {
            owners.top_level(pod, &record).await
        };
        report.add(&config, &rules, &facts, &record, owner.as_ref());
    }
    report.sort();
    let text = match args.output {
        AuditOutput::Table => report.to_table(),
        AuditOutput::Json => report.to_json()?,
    };
    print!("{text}");
    Ok(report.bypassing.is_empty())
}

/// The namespaces in scope: opted in (or every one with `all_namespaces`), kube-system only
/// when named; with when each was opted in, and which are not.
pub async fn scope(
    client: &Client,
    namespace: Option<&str>,
    all_namespaces: bool,
    selector: &Selector,
    selector_text: &str,
) -> anyhow::Result<(BTreeSet<String>, Facts)> {
    let namespaces: Vec<Namespace> = match namespace {
        Some(name) => vec![
            Api::<Namespace>::all(client.clone())
                .get(name)
                .await
                .with_context(|| format!("cannot read namespace {name}"))?,
        ],
        None => list(&Api::all(client.clone()), ListParams::default())
            .await
            .context("cannot list namespaces")?,
    };
    let mut facts = Facts::default();
    let mut scope = BTreeSet::new();
    for ns in &namespaces {
        let Some(name) = ns.metadata.name.clone() else {
            continue;
        };
        if namespace.is_none() && name == KUBE_SYSTEM {
            continue;
        }
        let labels = ns.metadata.labels.clone().unwrap_or_default();
        if selector.matches(&labels) {
            if let Some(t) = opted_in_at(ns, selector) {
                facts.opted_in_at.insert(name.clone(), t);
            }
        } else if all_namespaces {
            facts.not_opted_in.insert(name.clone());
        } else {
            if namespace.is_some() {
                eprintln!(
                    "pullthrough: namespace {name} does not match {selector_text:?}, so the webhook leaves its Pods alone; --all-namespaces looks at it as if it were opted in"
                );
            }
            continue;
        }
        scope.insert(name);
    }
    Ok((scope, facts))
}

/// The rules as the webhook would know them: read from ECR when the rule check is on and ECR
/// answers; otherwise the map alone decides, as if every rule existed.
pub async fn rule_snapshot(config: &mut Config) -> (RuleSnapshot, RuleSource) {
    if !config.rule_check.enabled {
        return (RuleSnapshot::unknown(), RuleSource::Disabled);
    }
    match rules(config).await {
        Ok(s) => (s, RuleSource::Live),
        Err(e) => {
            eprintln!(
                "pullthrough: cannot read the pull-through cache rules from ECR ({e:#}); going on with the map alone, as if every rule existed"
            );
            config.rule_check.when_unknown = UnknownRules::Trust;
            (RuleSnapshot::unknown(), RuleSource::Unavailable)
        }
    }
}

/// The Pods of `scope` still to run or running: finished Pods pull nothing more.
pub async fn pods(
    client: &Client,
    namespace: Option<&str>,
    scope: &BTreeSet<String>,
) -> anyhow::Result<Vec<Pod>> {
    let params = ListParams::default().fields("status.phase!=Succeeded,status.phase!=Failed");
    Ok(match namespace {
        Some(name) if scope.contains(name) => list(&Api::namespaced(client.clone(), name), params)
            .await
            .with_context(|| format!("cannot list Pods in namespace {name}"))?,
        Some(_) => Vec::new(),
        None if scope.is_empty() => Vec::new(),
        None => list(&Api::all(client.clone()), params)
            .await
            .context("cannot list Pods")?,
    })
}

/// A client for `context` of the kubeconfig at `kubeconfig` (or of the one kubectl would use),
/// or for the current context, or the in-cluster configuration.
pub async fn client(context: Option<&str>, kubeconfig: Option<&Path>) -> anyhow::Result<Client> {
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..KubeConfigOptions::default()
    };
    let mut settings = match (kubeconfig, context) {
        (Some(path), _) => {
            let file = Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .with_context(|| format!("cannot use kubeconfig {}", path.display()))?
        }
        (None, Some(name)) => kube::Config::from_kubeconfig(&options)
            .await
            .with_context(|| format!("cannot use kubeconfig context {name}"))?,
        (None, None) => kube::Config::infer()
            .await
            .context("cannot find a kubeconfig or an in-cluster configuration")?,
    };
    // A one-shot command: no list is worth waiting minutes for.
    settings.connect_timeout = Some(Duration::from_secs(10));
    settings.read_timeout = Some(Duration::from_mins(1));
    Client::try_from(settings).context("cannot configure the Kubernetes client")
}

/// Every object of a list, page by page.
async fn list<K>(api: &Api<K>, params: ListParams) -> Result<Vec<K>, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut params = params.limit(PAGE);
    let mut out = Vec::new();
    loop {
        let page = api.list(&params).await?;
        out.extend(page.items);
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(out),
        }
    }
}

async fn rules(config: &Config) -> anyhow::Result<RuleSnapshot> {
    let ecr = AwsEcr::from_env(&config.region, Some(config.account_id.clone())).await;
    match tokio::time::timeout(RULES_TIMEOUT, refresh::fetch(&ecr, config)).await {
        Ok(fetched) => Ok(fetched?),
        Err(_) => anyhow::bail!("no answer within {}s", RULES_TIMEOUT.as_secs()),
    }
}

fn controller(owners: &[OwnerReference]) -> Option<&OwnerReference> {
    owners
        .iter()
        .find(|o| o.controller == Some(true))
        .or_else(|| owners.first())
}

/// Finds the workload at the top of a Pod's owners: a ReplicaSet's Deployment, a Job's
/// CronJob. Each ReplicaSet and Job is read once.
struct Owners {
    client: Client,
    seen: HashMap<(String, String, String), Option<Owner>>,
    warned: bool,
}

impl Owners {
    fn new(client: Client) -> Self {
        Self {
            client,
            seen: HashMap::new(),
            warned: false,
        }
    }

    async fn top_level(&mut self, pod: &Pod, record: &PodRecord) -> Option<Owner> {
        let direct = controller(pod.metadata.owner_references.as_deref().unwrap_or_default())?;
        let middle = matches!(
            (direct.kind.as_str(), direct.api_version.as_str()),
            ("ReplicaSet", "apps/v1") | ("Job", "batch/v1")
        );
        if !middle {
            return Some(Owner {
                kind: direct.kind.clone(),
                name: direct.name.clone(),
            });
        }
        let key = (
            record.namespace.to_string(),
            direct.kind.clone(),
            direct.name.clone(),
        );
        if let Some(known) = self.seen.get(&key) {
            return known.clone().or_else(|| record.owner.as_deref().cloned());
        }
        let read = if direct.kind == "ReplicaSet" {
            self.owner_of::<ReplicaSet>(&record.namespace, &direct.name)
                .await
        } else {
            self.owner_of::<Job>(&record.namespace, &direct.name).await
        };
        let found = match read {
            Ok(Some(top)) => Some(top),
            Ok(None) => Some(Owner {
                kind: direct.kind.clone(),
                name: direct.name.clone(),
            }),
            Err(e) => {
                if !std::mem::replace(&mut self.warned, true) {
                    eprintln!(
                        "pullthrough: cannot read {} {}/{} ({e}); owners are guessed from Pod names where they cannot be read",
                        direct.kind, record.namespace, direct.name
                    );
                }
                None
            }
        };
        self.seen.insert(key, found.clone());
        found.or_else(|| record.owner.as_deref().cloned())
    }

    /// The controller of a namespaced object, `None` when it has none.
    async fn owner_of<K>(&self, namespace: &str, name: &str) -> Result<Option<Owner>, kube::Error>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let object = Api::<K>::namespaced(self.client.clone(), namespace)
            .get_metadata(name)
            .await?;
        Ok(controller(
            object
                .metadata
                .owner_references
                .as_deref()
                .unwrap_or_default(),
        )
        .map(|o| Owner {
            kind: o.kind.clone(),
            name: o.name.clone(),
        }))
    }
}
