//! The plan for one pod or pod template: a decision per image, or a reason to leave it all.

use super::kind::{ContainerKind, Scope, TargetKind};
use super::outcome::ImageOutcome;
use super::record::{Record, record};
use super::view::ObjectView;
use super::{FALLBACK_ANNOTATION, SKIP_ANNOTATION};
use crate::config::{Config, DigestPolicy};
use crate::digests::DigestSnapshot;
use crate::rewrite::{Decision, SkipReason, Verdict, decide_with};
use crate::rules::RuleSnapshot;

/// Longest warning the API server passes on untruncated.
pub(super) const WARNING_MAX_LEN: usize = 256;

/// Why a whole pod is left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodSkip {
    /// The pod (or its template, or the workload) carries `pullthrough.dev/skip: "true"`.
    OptedOut,
    /// An `exclude.podLabels` selector matches.
    LabelExcluded(String),
    /// An owner reference's kind is in `exclude.ownerKinds`.
    OwnerExcluded(String),
}

impl PodSkip {
    /// A short, bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::OptedOut => "opted_out",
            Self::LabelExcluded(_) => "label_excluded",
            Self::OwnerExcluded(_) => "owner_excluded",
        }
    }
}

impl std::fmt::Display for PodSkip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OptedOut => write!(f, "the pod opts out with {SKIP_ANNOTATION}"),
            Self::LabelExcluded(sel) => write!(f, "the pod label selector {sel:?} is excluded"),
            Self::OwnerExcluded(kind) => write!(f, "pods owned by a {kind} are excluded"),
        }
    }
}

/// What a request does to one pod (or pod template).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodPlan<'c> {
    /// Set when the whole pod is left alone.
    pub skipped: Option<PodSkip>,
    /// One entry per container considered.
    pub images: Vec<ImageOutcome<'c>>,
    /// JSON Pointer tokens from the object to its pod (template).
    pub(super) base: &'static [&'static str],
    /// The record of original images to write, when images are rewritten and it is kept.
    pub(super) record: Option<Record>,
    /// The digest policy the plan was made under, for the warnings.
    pub(super) digests: DigestPolicy,
}

impl PodPlan<'_> {
    /// Whether the plan changes anything.
    pub fn changes(&self) -> bool {
        self.images
            .iter()
            .any(|i| matches!(i.decision, Decision::Rewrite(_)))
    }

    /// Number of images rewritten.
    pub fn rewritten(&self) -> usize {
        self.images
            .iter()
            .filter(|i| matches!(i.decision, Decision::Rewrite(_)))
            .count()
    }

    /// Warnings for people: one per image left alone for a reason they should know, one per
    /// digest-pinned image rewritten anyway, and one when the whole pod is skipped.
    pub fn warnings(&self, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(skip) = &self.skipped {
            out.push(truncate(format!(
                "pullthrough: {prefix}images left unchanged: {skip}"
            )));
        }
        for i in &self.images {
            let text = match &i.decision {
                Decision::Skip(reason) if reason.is_notable() => format!(
                    "pullthrough: {prefix}{} {:?} image {:?} left unchanged: {reason}",
                    i.kind.noun(),
                    i.container,
                    i.image
                ),
                Decision::Rewrite(_) if i.image.contains('@') => format!(
                    "pullthrough: {prefix}{} {:?} image {:?} is pinned by digest and rewritten: {}",
                    i.kind.noun(),
                    i.container,
                    i.image,
                    if self.digests == DigestPolicy::WhenCached {
                        "the pull-through cache holds its digest"
                    } else {
                        "the cache must already hold it"
                    }
                ),
                _ => continue,
            };
            out.push(truncate(text));
        }
        out
    }
}

pub(super) fn truncate(mut s: String) -> String {
    if s.len() > WARNING_MAX_LEN {
        let mut cut = WARNING_MAX_LEN - 3;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// Plans the rewrite of one object of a known kind. `old` is the object before an update.
pub fn plan_object<'c>(
    config: &'c Config,
    rules: &RuleSnapshot,
    digests: &DigestSnapshot,
    target: TargetKind,
    object: &ObjectView<'c>,
    old: Option<&ObjectView<'c>>,
    scope: Scope,
) -> PodPlan<'c> {
    let (pod, old_pod) = match target {
        TargetKind::Pod => (Some(object), old),
        TargetKind::Workload => (template(object), old.and_then(template)),
        TargetKind::CronJob => (job_template(object), old.and_then(job_template)),
    };
    let Some(pod) = pod else {
        return PodPlan::default();
    };

    if let Some(skip) = pod_skip(config, object, pod) {
        return PodPlan {
            skipped: Some(skip),
            ..PodPlan::default()
        };
    }
    let Some(spec) = pod.spec() else {
        return PodPlan::default();
    };
    let old_spec = old_pod.and_then(ObjectView::spec);
    // Pods without the annotation pay one map lookup.
    let fallen_back = pod.annotation(FALLBACK_ANNOTATION).map(FallenBack::read);

    let kinds = scope.kinds(target);
    let mut images = Vec::with_capacity(kinds.iter().map(|&k| spec.len(k)).sum());
    for (kind, index, name, image_text) in spec.all_images(kinds) {
        let Some(image_text) = image_text else {
            continue;
        };
        let image = &**image_text;
        let Verdict {
            mut decision,
            mapping,
        } = decide_with(config, rules, digests, image);
        // An update is about what it changes: an image it leaves as it was is neither
        // rewritten (that would restart the container) nor reported again.
        if scope != Scope::Create {
            let unchanged = old_spec.is_some_and(|old| {
                old.images(kind)
                    .any(|(n, i)| n == name && i.map(|i| &**i) == Some(image))
            });
            if unchanged {
                decision = Decision::Skip(SkipReason::UnchangedOnUpdate);
            }
        }
        if kind != ContainerKind::ImageVolume
            && let Some(reason) = fallen_back
                .as_ref()
                .filter(|_| matches!(decision, Decision::Rewrite(_)))
                .and_then(|f| f.keeps(name))
        {
            decision = Decision::Skip(reason);
        }
        images.push(ImageOutcome {
            kind,
            index,
            container: name.clone(),
            image: image_text.clone(),
            decision,
            registry: mapping.map_or("other", |m| m.registry.as_str()),
        });
    }

    // The ephemeral containers subresource ignores metadata changes, so the record of
    // originals is only written where it will be kept.
    let annotate = scope != Scope::EphemeralContainers;
    let record = if annotate { record(pod, &images) } else { None };
    PodPlan {
        skipped: None,
        images,
        base: target.pod_path(),
        record,
        digests: config.digests,
    }
}

/// The containers of a Pod's [`FALLBACK_ANNOTATION`].
enum FallenBack {
    Listed(Vec<String>),
    /// Not a list of names: no container can be told safe to rewrite.
    Unreadable,
}

impl FallenBack {
    fn read(text: &str) -> Self {
        serde_json::from_str(text).map_or(Self::Unreadable, Self::Listed)
    }

    /// Why `container` keeps its image, or `None` when it may be rewritten.
    fn keeps(&self, container: &str) -> Option<SkipReason> {
        match self {
            Self::Listed(names) => names
                .iter()
                .any(|n| n == container)
                .then_some(SkipReason::FallenBack),
            Self::Unreadable => Some(SkipReason::FallbackUnreadable),
        }
    }
}

fn template<'o, 'a>(object: &'o ObjectView<'a>) -> Option<&'o ObjectView<'a>> {
    object.spec.as_ref()?.template.as_deref()
}

fn job_template<'o, 'a>(object: &'o ObjectView<'a>) -> Option<&'o ObjectView<'a>> {
    template(object.spec.as_ref()?.job_template.as_deref()?)
}

fn pod_skip(config: &Config, object: &ObjectView<'_>, pod: &ObjectView<'_>) -> Option<PodSkip> {
    let opted_out = |o: &ObjectView<'_>| {
        o.annotation(SKIP_ANNOTATION)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    };
    let labels = pod
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref())
        .into_iter()
        .flatten()
        .map(|(k, v)| (&*k.0, &*v.0));
    let owners = object
        .metadata
        .as_ref()
        .and_then(|m| m.owner_references.as_deref())
        .unwrap_or_default();
    pod_exclusion(
        config,
        opted_out(pod) || opted_out(object),
        &labels,
        owners.iter().map(|o| &*o.kind),
    )
}

/// Why a Pod is left alone as a whole, from what decides it: the skip annotation, its labels
/// and its owners' kinds. The webhook and the checks that ask what the webhook would do (the
/// bypass audit) share it, so they cannot disagree.
pub fn pod_exclusion<'l>(
    config: &Config,
    opted_out: bool,
    labels: &(impl Iterator<Item = (&'l str, &'l str)> + Clone),
    mut owner_kinds: impl Iterator<Item = &'l str>,
) -> Option<PodSkip> {
    if opted_out {
        return Some(PodSkip::OptedOut);
    }
    if let Some(sel) = config
        .exclude
        .pod_labels
        .iter()
        .find(|sel| sel.matches(labels.clone()))
    {
        let text = match &sel.value {
            Some(v) => format!("{}={v}", sel.key),
            None => sel.key.clone(),
        };
        return Some(PodSkip::LabelExcluded(text));
    }
    owner_kinds
        .find(|kind| config.exclude.owner_kinds.iter().any(|k| k == kind))
        .map(|kind| PodSkip::OwnerExcluded(kind.to_owned()))
}
