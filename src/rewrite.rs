//! The decision for one image: rewritten to what, or left alone and why.

use std::borrow::Cow;
use std::fmt;

use crate::config::{
    Config, DigestPolicy, ECR_REPOSITORY_MAX_LEN, Mapping, UnknownRules, is_private_ecr_host,
};
use crate::digests::{self, DigestKey, DigestSnapshot, DigestState};
use crate::reference::{DOCKER_HUB, NAME_MAX_LEN, Parts, ReferenceError};
use crate::rules::{RuleSnapshot, RuleState};

/// What happens to one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Rewrite the image to this reference.
    Rewrite(String),
    /// Leave the image as it is.
    Skip(SkipReason),
}

/// Why an image is left alone. These feed metrics, logs, warnings and Events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// The image already points at the registry images are rewritten to.
    AlreadyRewritten,
    /// The image is in another private ECR registry (another account or region), which needs
    /// no cache.
    AlreadyInEcr,
    /// No pull-through cache rule is configured for the image's registry.
    NotMapped {
        /// The image's registry host.
        registry: String,
    },
    /// An `exclude.images` pattern matches the image.
    Excluded {
        /// The pattern that matched.
        pattern: String,
    },
    /// The image is pinned by digest and `digests: skip` is in force.
    DigestPinned,
    /// The image is not a valid reference.
    InvalidReference(ReferenceError),
    /// The rewritten ECR repository name would exceed 256 characters.
    RepositoryTooLong {
        /// Length the repository name would have.
        len: usize,
    },
    /// The rewritten image name (registry host and repository) would exceed the 255
    /// characters container runtimes accept, so the Pod could not pull it.
    NameTooLong {
        /// Length the name would have.
        len: usize,
    },
    /// ECR-to-ECR rule: the repository is outside the rule's upstream repository prefix.
    OutsideUpstreamPrefix,
    /// A Pod update that leaves this image as it was: rewriting it would restart the container.
    UnchangedOnUpdate,
    /// The ECR rule the image needs is known to be missing or broken.
    RuleUnusable {
        /// The rule's ECR prefix.
        prefix: String,
        /// What is wrong with it.
        state: RuleState,
    },
    /// The rules are not known yet and `ruleCheck.whenUnknown: skip` is in force.
    RuleUnknown,
    /// The Pod's `pullthrough.dev/fallback` annotation lists the container: the reconciler
    /// put it back on its original image after pulls through the cache failed.
    FallenBack,
    /// The Pod's `pullthrough.dev/fallback` annotation is not a JSON list of container names,
    /// so no container of the Pod is rewritten.
    FallbackUnreadable,
    /// The image is pinned by digest, `digests: whenCached` is in force, and the cache is not
    /// known to hold the digest.
    DigestNotCached {
        /// The cache repository and the digest.
        key: DigestKey,
        /// [`DigestState::Unknown`] (not checked yet) or [`DigestState::NotCached`].
        state: DigestState,
        /// Pinned by digest alone: there is no tag to fill the cache by.
        bare: bool,
    },
}

impl SkipReason {
    /// A short, bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::AlreadyRewritten => "already_rewritten",
            Self::AlreadyInEcr => "already_in_ecr",
            Self::NotMapped { .. } => "not_mapped",
            Self::Excluded { .. } => "excluded",
            Self::DigestPinned => "digest_pinned",
            Self::InvalidReference(_) => "invalid_reference",
            Self::RepositoryTooLong { .. } => "repository_too_long",
            Self::NameTooLong { .. } => "name_too_long",
            Self::OutsideUpstreamPrefix => "outside_upstream_prefix",
            Self::UnchangedOnUpdate => "unchanged_on_update",
            Self::RuleUnusable { state, .. } => match state {
                RuleState::Missing | RuleState::Present => "rule_missing",
                RuleState::WrongUpstream { .. } => "rule_wrong_upstream",
                RuleState::CredentialsFailing { .. } => "rule_credentials_failing",
            },
            Self::RuleUnknown => "rule_unknown",
            Self::FallenBack => "fallback",
            Self::FallbackUnreadable => "fallback_unreadable",
            Self::DigestNotCached { state, .. } => match state {
                DigestState::NotCached => "digest_not_cached",
                DigestState::Cached | DigestState::Unknown => "digest_unknown",
            },
        }
    }

    /// Whether a user should be told about this skip in admission warnings. Images that are
    /// already rewritten, or untouched by an update, are not news.
    pub fn is_notable(&self) -> bool {
        !matches!(
            self,
            Self::AlreadyRewritten | Self::AlreadyInEcr | Self::UnchangedOnUpdate
        )
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyRewritten => f.write_str("already uses the pull-through cache registry"),
            Self::AlreadyInEcr => f.write_str("already in ECR"),
            Self::NotMapped { registry } => write!(
                f,
                "no pull-through cache rule is configured for its registry {registry}"
            ),
            Self::Excluded { pattern } => write!(f, "excluded by pattern {pattern:?}"),
            Self::DigestPinned => f.write_str(
                "pinned by digest: ECR pull-through cache cannot fill its cache from a first pull by digest (set digests: rewrite to change this)",
            ),
            Self::InvalidReference(e) => write!(f, "not a valid image reference: {e}"),
            Self::RepositoryTooLong { len } => write!(
                f,
                "the ECR repository name would be {len} characters, over ECR's {ECR_REPOSITORY_MAX_LEN}"
            ),
            Self::NameTooLong { len } => write!(
                f,
                "the rewritten image name would be {len} characters, over the {NAME_MAX_LEN} container runtimes accept"
            ),
            Self::OutsideUpstreamPrefix => {
                f.write_str("outside the upstream repository prefix of its cache rule")
            }
            Self::UnchangedOnUpdate => f.write_str("unchanged by this update"),
            Self::RuleUnusable { prefix, state } => {
                write!(f, "the ECR pull-through cache rule {prefix:?} is {state}")
            }
            Self::RuleUnknown => {
                f.write_str("the ECR pull-through cache rules are not known yet")
            }
            Self::FallenBack => f.write_str(
                "put back on its original image after failed pulls through the cache (pullthrough.dev/fallback)",
            ),
            Self::FallbackUnreadable => f.write_str(
                "the pod's pullthrough.dev/fallback annotation is not a JSON list of container names",
            ),
            Self::DigestNotCached { key, state, bare } => {
                // Warnings are capped at 256 characters and carry the whole image: stay short.
                let digest = digests::short(&key.digest);
                match (state, bare) {
                    (_, true) => write!(
                        f,
                        "pinned by digest alone, which cannot be warmed; rewritten once the cache holds {digest} (pull it by tag)"
                    ),
                    (DigestState::NotCached, false) => write!(
                        f,
                        "pinned by digest; the cache does not hold {digest} yet (warmed by tag, later Pods use it)"
                    ),
                    (DigestState::Cached | DigestState::Unknown, false) => write!(
                        f,
                        "pinned by digest; not known yet whether the cache holds {digest} (checked in the background)"
                    ),
                }
            }
        }
    }
}

impl SkipReason {
    /// The reason as said offline (`pullthrough preview`), where nothing is known of what the
    /// cache holds: the [`Display`](fmt::Display) text but for a pinned digest, whose state only
    /// the webhook learns.
    pub fn offline(&self) -> Offline<'_> {
        Offline(self)
    }
}

/// [`SkipReason::offline`].
#[derive(Debug, Clone, Copy)]
pub struct Offline<'r>(&'r SkipReason);

impl fmt::Display for Offline<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let SkipReason::DigestNotCached { key, bare, .. } = self.0 else {
            return self.0.fmt(f);
        };
        let digest = digests::short(&key.digest);
        let pinned = if *bare {
            "pinned by digest alone, which cannot be warmed"
        } else {
            "pinned by digest"
        };
        write!(
            f,
            "{pinned}; rewritten once the cache holds {digest}, which preview does not know (ask pullthrough warm --check)"
        )
    }
}

/// A decision and the mapping it was made under, if the image's registry is mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict<'c> {
    /// The decision.
    pub decision: Decision,
    /// The mapping of the image's registry.
    pub mapping: Option<&'c Mapping>,
}

impl Verdict<'_> {
    /// The registry label for metrics: a configured upstream host, or `other`.
    pub fn registry_label(&self) -> &str {
        self.mapping.map_or("other", |m| m.registry.as_str())
    }

    /// The decision label for metrics.
    pub fn decision_label(&self) -> &'static str {
        match &self.decision {
            Decision::Rewrite(_) => "rewritten",
            Decision::Skip(reason) => reason.kind(),
        }
    }
}

/// Decides what to do with one image under `config`, given what is known of the ECR rules and
/// nothing of the digests in the cache.
pub fn decide<'c>(config: &'c Config, rules: &RuleSnapshot, image: &str) -> Verdict<'c> {
    decide_with(config, rules, &DigestSnapshot::EMPTY, image)
}

/// Decides what to do with one image under `config`, given what is known of the ECR rules and
/// of the pinned digests the cache holds.
pub fn decide_with<'c>(
    config: &'c Config,
    rules: &RuleSnapshot,
    digests: &DigestSnapshot,
    image: &str,
) -> Verdict<'c> {
    let skip = |reason, mapping| Verdict {
        decision: Decision::Skip(reason),
        mapping,
    };
    // Parsed without copying: the image is copied once, into its rewritten name.
    let parts = match Parts::parse(image) {
        Ok(p) => p,
        Err(e) => return skip(SkipReason::InvalidReference(e), None),
    };
    if config.is_own_registry(parts.registry()) {
        return skip(SkipReason::AlreadyRewritten, None);
    }
    let mapping = config.mapping(parts.registry());
    if !config.exclude.images.is_empty() {
        let reference = parts.to_reference();
        if let Some(pattern) = config.exclude.images.iter().find(|p| p.matches(&reference)) {
            return skip(
                SkipReason::Excluded {
                    pattern: pattern.as_str().to_owned(),
                },
                mapping,
            );
        }
    }
    let Some(mapping) = mapping else {
        if is_private_ecr_host(parts.registry()) {
            return skip(SkipReason::AlreadyInEcr, None);
        }
        return skip(
            SkipReason::NotMapped {
                registry: parts.registry().to_owned(),
            },
            None,
        );
    };
    if parts.digest().is_some() && config.digests == DigestPolicy::Skip {
        return skip(SkipReason::DigestPinned, Some(mapping));
    }

    match rules.state(&mapping.registry) {
        Some(state) if !state.is_usable() => {
            return skip(
                SkipReason::RuleUnusable {
                    prefix: mapping.ecr_prefix().to_owned(),
                    state: state.clone(),
                },
                Some(mapping),
            );
        }
        None if config.rule_check.when_unknown == UnknownRules::Skip => {
            return skip(SkipReason::RuleUnknown, Some(mapping));
        }
        _ => {}
    }

    // The repository in the cache: the upstream one, less the rule's upstream prefix.
    let (mut official, path) = parts.repository();
    // An alias of Docker Hub is Docker Hub: its one-component repositories are official ones.
    if official.is_empty()
        && mapping.registry == DOCKER_HUB
        && parts.registry() != DOCKER_HUB
        && !path.contains('/')
    {
        official = "library/";
    }
    let (head, path): (&str, Cow<'_, str>) = match &mapping.upstream_repository_prefix {
        None => (official, Cow::Borrowed(path)),
        Some(upstream) => {
            let mut repository = format!("{official}{path}");
            let Some(rest) = repository
                .strip_prefix(upstream.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
            else {
                return skip(SkipReason::OutsideUpstreamPrefix, Some(mapping));
            };
            repository.drain(..repository.len() - rest.len());
            ("", Cow::Owned(repository))
        }
    };
    let repository_len =
        mapping.prefix.as_ref().map_or(0, |p| p.len() + 1) + head.len() + path.len();
    if repository_len > ECR_REPOSITORY_MAX_LEN {
        return skip(
            SkipReason::RepositoryTooLong {
                len: repository_len,
            },
            Some(mapping),
        );
    }

    // The runtime parses the rewritten name with the same grammar: past 255 characters the
    // Pod would fail with InvalidImageName, so the image stays on its upstream.
    let name_len = config.registry_host.len() + 1 + repository_len;
    if name_len > NAME_MAX_LEN {
        return skip(SkipReason::NameTooLong { len: name_len }, Some(mapping));
    }

    let mut out = String::with_capacity(config.registry_host.len() + repository_len + 80);
    out.push_str(&config.registry_host);
    out.push('/');
    if let Some(prefix) = &mapping.prefix {
        out.push_str(prefix);
        out.push('/');
    }
    out.push_str(head);
    out.push_str(&path);
    if let Some(digest) = parts.digest()
        && config.digests == DigestPolicy::WhenCached
    {
        // A pull by digest from a cold cache fails: rewrite only what the cache is known to hold.
        let repository = &out[config.registry_host.len() + 1..];
        let state = digests.state(repository, digest);
        if state != DigestState::Cached {
            return skip(
                SkipReason::DigestNotCached {
                    key: DigestKey::new(repository, digest),
                    state,
                    bare: parts.tag().is_none(),
                },
                Some(mapping),
            );
        }
    }
    // Tag and digest are carried over byte for byte; a reference without either stays so.
    if let Some(tag) = parts.tag() {
        out.push(':');
        out.push_str(tag);
    }
    if let Some(digest) = parts.digest() {
        out.push('@');
        out.push_str(digest);
    }
    Verdict {
        decision: Decision::Rewrite(out),
        mapping: Some(mapping),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;
    use crate::reference::Reference;
    use proptest::prelude::*;
    use rstest::rstest;

    const HOST: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
    const SHA: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn config(extra: &str) -> Config {
        Config::load(
            &format!("accountId: \"123456789012\"\nregion: eu-west-1\n{extra}"),
            &Overrides::default(),
        )
        .unwrap()
    }

    fn decision(config: &Config, image: &str) -> Decision {
        decide(config, &RuleSnapshot::unknown(), image).decision
    }

    #[rstest]
    #[case::official_docker_hub_image_gains_library("nginx:1.27", "docker-hub/library/nginx:1.27")]
    #[case::docker_hub_user_repo_has_no_library("bitnami/redis:7", "docker-hub/bitnami/redis:7")]
    #[case::legacy_hub_host(
        "index.docker.io/library/busybox:1.36",
        "docker-hub/library/busybox:1.36"
    )]
    #[case::no_tag_stays_without_tag("quay.io/coreos/etcd", "quay/coreos/etcd")]
    #[case::ghcr(
        "ghcr.io/fluxcd/source-controller:v1.4.1",
        "github/fluxcd/source-controller:v1.4.1"
    )]
    #[case::k8s("registry.k8s.io/pause:3.10", "k8s/pause:3.10")]
    #[case::ecr_public(
        "public.ecr.aws/eks/aws-load-balancer-controller:v2.8.0",
        "ecr-public/eks/aws-load-balancer-controller:v2.8.0"
    )]
    #[case::gitlab(
        "registry.gitlab.com/group/project/image:1",
        "gitlab/group/project/image:1"
    )]
    #[case::ecr_public_dual_stack_alias(
        "ecr-public.aws.com/argoproj/argocd:v3.1.0",
        "ecr-public/argoproj/argocd:v3.1.0"
    )]
    #[case::docker_hub_registry_alias_official(
        "registry-1.docker.io/nginx:1.27",
        "docker-hub/library/nginx:1.27"
    )]
    #[case::docker_hub_registry_alias_user(
        "registry-1.docker.io/bitnami/redis:7",
        "docker-hub/bitnami/redis:7"
    )]
    fn rewrites_mapped_registries(#[case] image: &str, #[case] want: &str) {
        let c = config("");
        assert_eq!(
            decision(&c, image),
            Decision::Rewrite(format!("{HOST}/{want}"))
        );
    }

    #[rstest]
    #[case::already_on_ecr(&format!("{HOST}/docker-hub/library/nginx:1.27"), SkipReason::AlreadyRewritten)]
    #[case::unknown_registry("registry.example/app:1", SkipReason::NotMapped { registry: "registry.example".into() })]
    #[case::lookalike_host("docker.io.evil.example/x:1", SkipReason::NotMapped { registry: "docker.io.evil.example".into() })]
    #[case::localhost("localhost:5000/app", SkipReason::NotMapped { registry: "localhost:5000".into() })]
    #[case::own_dual_stack(
        "123456789012.dkr-ecr.eu-west-1.on.aws/docker-hub/library/nginx:1",
        SkipReason::AlreadyRewritten
    )]
    #[case::own_fips(
        "123456789012.dkr.ecr-fips.eu-west-1.amazonaws.com/quay/a/b:1",
        SkipReason::AlreadyRewritten
    )]
    #[case::own_fips_dual_stack(
        "123456789012.dkr-ecr-fips.eu-west-1.on.aws/quay/a/b:1",
        SkipReason::AlreadyRewritten
    )]
    #[case::other_account(
        "210987654321.dkr.ecr.eu-west-1.amazonaws.com/app:1",
        SkipReason::AlreadyInEcr
    )]
    #[case::other_region_dual_stack(
        "123456789012.dkr-ecr.us-east-1.on.aws/app:1",
        SkipReason::AlreadyInEcr
    )]
    #[case::china_elsewhere(
        "123456789012.dkr-ecr.cn-north-1.on.amazonwebservices.com.cn/app:1",
        SkipReason::AlreadyInEcr
    )]
    #[case::invalid(
        "Nginx:1",
        SkipReason::InvalidReference(ReferenceError::UppercaseRepository)
    )]
    fn leaves_images_alone_with_a_reason(#[case] image: &str, #[case] reason: SkipReason) {
        assert_eq!(decision(&config(""), image), Decision::Skip(reason));
    }

    #[test]
    fn digests_skip_leaves_every_pinned_image_alone() {
        let c = config("digests: skip\n");
        for image in [format!("nginx@{SHA}"), format!("nginx:1.27@{SHA}")] {
            assert_eq!(
                decision(&c, &image),
                Decision::Skip(SkipReason::DigestPinned)
            );
        }
    }

    #[test]
    fn when_cached_is_the_default_and_rewrites_only_known_cached_digests() {
        let c = config("");
        let repo = "docker-hub/library/nginx";
        let image = format!("nginx:1.27@{SHA}");
        let key = DigestKey::new(repo, SHA);
        let with = |snapshot: &DigestSnapshot, image: &str| {
            decide_with(&c, &RuleSnapshot::unknown(), snapshot, image).decision
        };
        // Nothing known: left alone, and the reason names what is to be checked.
        let unknown = with(&DigestSnapshot::EMPTY, &image);
        assert_eq!(
            unknown,
            Decision::Skip(SkipReason::DigestNotCached {
                key: key.clone(),
                state: DigestState::Unknown,
                bare: false
            })
        );
        let Decision::Skip(reason) = unknown else {
            unreachable!()
        };
        assert_eq!(reason.kind(), "digest_unknown");
        let text = reason.to_string();
        assert!(
            text.contains("the cache holds sha256:0123456789ab"),
            "{text}"
        );
        assert!(!text.contains(SHA), "digests are shortened: {text}");

        let not_cached = DigestSnapshot::from_answers([(&key, false)]);
        let Decision::Skip(reason) = with(&not_cached, &image) else {
            panic!("rewritten without the digest in the cache");
        };
        assert_eq!(reason.kind(), "digest_not_cached");
        assert!(reason.to_string().contains("warmed by tag"), "{reason}");

        // Known cached: rewritten with tag and digest byte for byte.
        let cached = DigestSnapshot::from_answers([(&key, true)]);
        assert_eq!(
            with(&cached, &image),
            Decision::Rewrite(format!("{HOST}/{repo}:1.27@{SHA}"))
        );
        // The same digest in another repository is another question.
        assert!(matches!(
            with(&cached, &format!("quay.io/a/b:1@{SHA}")),
            Decision::Skip(SkipReason::DigestNotCached { .. })
        ));
        // Images without a digest do not depend on it.
        assert_eq!(
            with(&DigestSnapshot::EMPTY, "nginx:1.27"),
            Decision::Rewrite(format!("{HOST}/{repo}:1.27"))
        );
    }

    #[test]
    fn offline_a_pinned_digest_is_said_to_be_unknown_and_other_reasons_read_as_ever() {
        let key = DigestKey::new("docker-hub/library/nginx", SHA);
        for bare in [false, true] {
            let reason = SkipReason::DigestNotCached {
                key: key.clone(),
                state: DigestState::Unknown,
                bare,
            };
            let offline = reason.offline().to_string();
            assert!(
                offline.contains("which preview does not know (ask pullthrough warm --check)")
                    && offline.contains("sha256:0123456789ab")
                    && !offline.contains("background"),
                "{offline}"
            );
            assert_ne!(offline, reason.to_string());
        }
        let webhook = SkipReason::DigestNotCached {
            key,
            state: DigestState::Unknown,
            bare: false,
        };
        assert!(
            webhook.to_string().ends_with("(checked in the background)"),
            "{webhook}"
        );
        let other = SkipReason::NotMapped {
            registry: "registry.example".to_owned(),
        };
        assert_eq!(other.offline().to_string(), other.to_string());
    }

    #[test]
    fn a_bare_digest_is_rewritten_once_cached_and_otherwise_said_to_be_unwarmable() {
        let c = config("");
        let image = format!("nginx@{SHA}");
        let Decision::Skip(reason) = decide(&c, &RuleSnapshot::unknown(), &image).decision else {
            panic!("rewritten without knowledge");
        };
        assert!(matches!(
            reason,
            SkipReason::DigestNotCached { bare: true, .. }
        ));
        assert!(reason.to_string().contains("cannot be warmed"), "{reason}");
        let cached = DigestSnapshot::from_answers([(
            &DigestKey::new("docker-hub/library/nginx", SHA),
            true,
        )]);
        assert_eq!(
            decide_with(&c, &RuleSnapshot::unknown(), &cached, &image).decision,
            Decision::Rewrite(format!("{HOST}/docker-hub/library/nginx@{SHA}"))
        );
    }

    #[test]
    fn digests_rewrite_keeps_tag_and_digest_exactly() {
        let c = config("digests: rewrite\n");
        assert_eq!(
            decision(&c, &format!("nginx:1.27@{SHA}")),
            Decision::Rewrite(format!("{HOST}/docker-hub/library/nginx:1.27@{SHA}"))
        );
        assert_eq!(
            decision(&c, &format!("quay.io/a/b@{SHA}")),
            Decision::Rewrite(format!("{HOST}/quay/a/b@{SHA}"))
        );
    }

    #[test]
    fn exclusion_pattern_wins_over_mapping() {
        let c = config("exclude:\n  images: [\"ghcr.io/cloudnative-pg/*\"]\n");
        let v = decide(
            &c,
            &RuleSnapshot::unknown(),
            "ghcr.io/cloudnative-pg/postgresql:16",
        );
        assert_eq!(
            v.decision,
            Decision::Skip(SkipReason::Excluded {
                pattern: "ghcr.io/cloudnative-pg/*".into()
            })
        );
        assert_eq!(v.registry_label(), "ghcr.io");
    }

    #[test]
    fn root_prefix_and_ecr_upstream_prefix() {
        let c = config(
            "registries:\n  111122223333.dkr.ecr.us-east-1.amazonaws.com:\n    prefix: ROOT\n    upstreamRepositoryPrefix: team\n",
        );
        assert_eq!(
            decision(
                &c,
                "111122223333.dkr.ecr.us-east-1.amazonaws.com/team/app:1"
            ),
            Decision::Rewrite(format!("{HOST}/app:1"))
        );
        assert_eq!(
            decision(
                &c,
                "111122223333.dkr.ecr.us-east-1.amazonaws.com/other/app:1"
            ),
            Decision::Skip(SkipReason::OutsideUpstreamPrefix)
        );
    }

    #[test]
    fn repository_longer_than_ecr_allows_is_left_alone() {
        // The name is within the reference grammar's 255 characters, but with a 30-character
        // prefix the ECR repository name would exceed 256.
        let c = config("registries:\n  ghcr.io: abcdefghijklmnopqrstuvwxyz0123\n");
        let path = format!("{}/{}", "a".repeat(120), "b".repeat(126));
        let image = format!("ghcr.io/{path}");
        assert_eq!(image.len(), 255);
        assert_eq!(
            decision(&c, &image),
            Decision::Skip(SkipReason::RepositoryTooLong { len: 31 + 247 })
        );
        // With the short default prefix the ECR repository fits, but the whole name would not.
        assert_eq!(
            decision(&config(""), &image),
            Decision::Skip(SkipReason::NameTooLong {
                len: HOST.len() + 1 + 7 + 247
            })
        );
    }

    #[test]
    fn rewritten_name_longer_than_runtimes_accept_is_left_alone() {
        // Found by fuzzing: the rewrite kept the ECR repository within 256 characters, but with
        // the 45-character registry host the image name passed the 255 characters container
        // runtimes accept, and the Pod would have failed with InvalidImageName.
        let c = config("registries:\n  ghcr.io: abcdefghijklmnopqrstuvwxyz0123\n");
        let image = CRASH_LONG_NAME;
        let Decision::Skip(SkipReason::NameTooLong { len }) = decision(&c, image) else {
            panic!("{:?}", decision(&c, image));
        };
        assert!(len > NAME_MAX_LEN);

        // The longest name that fits is rewritten, one character more is not.
        let fits = NAME_MAX_LEN - HOST.len() - 1 - "github/".len();
        let path = |n: usize| format!("ghcr.io/{}/{}", "a".repeat(100), "b".repeat(n - 101));
        let Decision::Rewrite(out) = decision(&config(""), &path(fits)) else {
            panic!("{fits} characters should fit");
        };
        assert_eq!(out.len(), NAME_MAX_LEN);
        assert!(Reference::parse(&out).is_ok());
        assert_eq!(
            decision(&config(""), &path(fits + 1)),
            Decision::Skip(SkipReason::NameTooLong {
                len: NAME_MAX_LEN + 1
            })
        );
    }

    const CRASH_LONG_NAME: &str = "ghcr.io/4r.io/a__b/c-d--e/f.gnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn_hcr/i_io/c__b/c-d--e-e/f.g_hcr/i_o/a__b/c-d--e/f";

    #[test]
    fn known_missing_or_broken_rules_are_not_used() {
        use crate::ecr::CacheRule;
        use std::collections::BTreeMap;
        let c = config("registries:\n  docker.io: docker-hub\n  quay.io: quay\n");
        let rules = vec![CacheRule {
            prefix: "quay".into(),
            upstream_url: "quay.io".into(),
            upstream_registry: None,
            credential_arn: None,
            upstream_repository_prefix: None,
            created_at: None,
        }];
        let snapshot =
            crate::rules::snapshot(&c, &rules, &BTreeMap::new(), std::time::SystemTime::now());
        let v = decide(&c, &snapshot, "nginx:1.27");
        assert_eq!(
            v.decision,
            Decision::Skip(SkipReason::RuleUnusable {
                prefix: "docker-hub".into(),
                state: RuleState::Missing
            })
        );
        assert_eq!(v.decision_label(), "rule_missing");
        assert_eq!(
            decide(&c, &snapshot, "quay.io/a/b:1").decision,
            Decision::Rewrite(format!("{HOST}/quay/a/b:1"))
        );
    }

    #[test]
    fn unknown_rules_follow_the_configured_choice() {
        let trust = config("");
        assert!(matches!(decision(&trust, "nginx"), Decision::Rewrite(_)));
        let skip = config("ruleCheck:\n  whenUnknown: skip\n");
        assert_eq!(
            decision(&skip, "nginx"),
            Decision::Skip(SkipReason::RuleUnknown)
        );
    }

    #[test]
    fn labels_are_bounded() {
        let c = config("");
        assert_eq!(
            decide(&c, &RuleSnapshot::unknown(), "registry.example/app").registry_label(),
            "other"
        );
        assert_eq!(
            decide(&c, &RuleSnapshot::unknown(), "nginx").registry_label(),
            "docker.io"
        );
        assert_eq!(
            decide(&c, &RuleSnapshot::unknown(), "nginx").decision_label(),
            "rewritten"
        );
        assert_eq!(
            decide(&c, &RuleSnapshot::unknown(), "registry.example/app").decision_label(),
            "not_mapped"
        );
    }

    fn image_strategy() -> impl Strategy<Value = String> {
        let host = prop_oneof![
            Just(""),
            Just("docker.io/"),
            Just("quay.io/"),
            Just("ghcr.io/"),
            Just("registry.k8s.io/"),
            Just("public.ecr.aws/"),
            Just("registry.example:5000/"),
            Just("123456789012.dkr.ecr.eu-west-1.amazonaws.com/"),
        ];
        let path = prop::collection::vec("[a-z0-9]{1,8}([._-][a-z0-9]{1,3})?", 1..4)
            .prop_map(|c| c.join("/"));
        let tag = prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,12}");
        let digest = prop::option::of("[a-f0-9]{64}");
        (host, path, tag, digest).prop_map(|(h, p, t, d)| {
            let mut s = format!("{h}{p}");
            if let Some(t) = t {
                s = format!("{s}:{t}");
            }
            if let Some(d) = d {
                s = format!("{s}@sha256:{d}");
            }
            s
        })
    }

    proptest! {
        #[test]
        fn rewriting_is_idempotent(image in image_strategy(), rewrite_digests in any::<bool>()) {
            let c = config(if rewrite_digests { "digests: rewrite\n" } else { "" });
            if let Decision::Rewrite(once) = decision(&c, &image) {
                prop_assert_eq!(decision(&c, &once), Decision::Skip(SkipReason::AlreadyRewritten));
                // The result is itself a valid reference with the same tag and digest.
                let original = Reference::parse(&image).unwrap();
                let rewritten = Reference::parse(&once).unwrap();
                prop_assert_eq!(rewritten.registry(), HOST);
                prop_assert_eq!(rewritten.tag(), original.tag());
                prop_assert_eq!(rewritten.digest(), original.digest());
                prop_assert!(rewritten.repository().len() <= ECR_REPOSITORY_MAX_LEN);
                prop_assert!(rewritten.repository().ends_with(original.repository()));
            }
        }

        #[test]
        fn decide_never_panics(image in "\\PC{0,100}") {
            let _ = decide(&config(""), &RuleSnapshot::unknown(), &image);
        }
    }

    #[test]
    fn configured_aliases_use_their_mapping() {
        let c = config(
            "registries:\n  ghcr.io:\n    prefix: github\n    aliases: [images.example.com]\n  docker.io: docker-hub\n",
        );
        assert_eq!(
            decision(&c, "images.example.com/team/app:1"),
            Decision::Rewrite(format!("{HOST}/github/team/app:1"))
        );
        let verdict = decide(
            &c,
            &RuleSnapshot::unknown(),
            "images.example.com/team/app:1",
        );
        assert_eq!(verdict.registry_label(), "ghcr.io");
        // Built-in aliases stay with a user map that keeps their registry.
        assert_eq!(
            decision(&c, "registry-1.docker.io/nginx"),
            Decision::Rewrite(format!("{HOST}/docker-hub/library/nginx"))
        );
    }

    #[test]
    fn the_private_registry_is_known_by_every_endpoint_name_in_china_too() {
        let c = Config::load(
            "accountId: \"123456789012\"\nregion: cn-north-1\n",
            &Overrides::default(),
        )
        .unwrap();
        for host in [
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
            "123456789012.dkr-ecr.cn-north-1.on.amazonwebservices.com.cn",
        ] {
            assert_eq!(
                decision(&c, &format!("{host}/quay/a/b:1")),
                Decision::Skip(SkipReason::AlreadyRewritten),
                "{host}"
            );
        }
        assert_eq!(
            decision(&c, "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:1"),
            Decision::Skip(SkipReason::AlreadyInEcr)
        );
    }

    #[test]
    fn the_not_mapped_reason_names_the_registry() {
        let reason = SkipReason::NotMapped {
            registry: "registry.example".into(),
        };
        assert_eq!(
            reason.to_string(),
            "no pull-through cache rule is configured for its registry registry.example"
        );
    }
}
