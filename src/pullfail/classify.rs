//! The likely cause of a failed pull through the cache, from the kubelet's message and the rule snapshot.
//!
//! The kubelet passes the container runtime's error on in the container's waiting message
//! (`ErrImagePull`, and since Kubernetes 1.30 `ImagePullBackOff` too). containerd quotes ECR's
//! answer when it has a body (`denied: User: … is not authorized to perform:
//! ecr:BatchImportUpstreamImage …`, `toomanyrequests: …`) and only the status line when it
//! has none (`… manifests/1.27: 403 Forbidden` on a HEAD request), so the classifier reads
//! both and adds what pullthrough knows of the rule the image was pulled through.

use std::fmt;

use crate::rules::RuleState;

/// Why a pull through the cache fails; a closed set, so that it can label a metric.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cause {
    /// No pull-through cache rule has the image's prefix.
    RuleMissing,
    /// The rule with the image's prefix caches another upstream registry.
    RuleWrongUpstream,
    /// ECR cannot log in to the upstream registry with the rule's Secrets Manager secret.
    UpstreamCredentials,
    /// The node's IAM role may not import upstream images or create the cache repository.
    NodeRolePermission {
        /// The action the message names (`ecr:BatchImportUpstreamImage`), when it does.
        action: Option<String>,
    },
    /// The upstream registry has no such repository or tag.
    ImageNotFound,
    /// The upstream registry refuses more pulls for now (`toomanyrequests`).
    UpstreamRateLimit,
    /// ECR throttles the account's requests.
    EcrThrottling,
    /// None of the above can be read from the message.
    Unknown,
}

impl Cause {
    /// Every metric label, in a fixed order.
    pub const LABELS: [&'static str; 8] = [
        "rule_missing",
        "rule_wrong_upstream",
        "upstream_credentials",
        "node_role_permission",
        "image_not_found",
        "upstream_rate_limit",
        "ecr_throttling",
        "unknown",
    ];

    /// The metric label and the Event's cause discriminator.
    pub fn label(&self) -> &'static str {
        match self {
            Self::RuleMissing => "rule_missing",
            Self::RuleWrongUpstream => "rule_wrong_upstream",
            Self::UpstreamCredentials => "upstream_credentials",
            Self::NodeRolePermission { .. } => "node_role_permission",
            Self::ImageNotFound => "image_not_found",
            Self::UpstreamRateLimit => "upstream_rate_limit",
            Self::EcrThrottling => "ecr_throttling",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RuleMissing => f.write_str("the pull-through cache rule does not exist"),
            Self::RuleWrongUpstream => {
                f.write_str("the pull-through cache rule caches another upstream registry")
            }
            Self::UpstreamCredentials => {
                f.write_str("ECR cannot log in to the upstream registry with the rule's credentials")
            }
            Self::NodeRolePermission { action: Some(a) } => {
                write!(f, "the node's IAM role is not allowed {a}")
            }
            Self::NodeRolePermission { action: None } => f.write_str(
                "ECR refuses the node (403): its IAM role likely lacks ecr:BatchImportUpstreamImage or ecr:CreateRepository",
            ),
            Self::ImageNotFound => f.write_str("the image or tag does not exist upstream"),
            Self::UpstreamRateLimit => f.write_str("the upstream registry rate-limits the pulls"),
            Self::EcrThrottling => f.write_str("ECR throttles the account's requests"),
            Self::Unknown => f.write_str("the kubelet's message does not tell"),
        }
    }
}

/// The action named in an IAM denial (`is not authorized to perform: ecr:CreateRepository on
/// resource …`).
fn denied_action(message: &str) -> Option<String> {
    const MARK: &str = "not authorized to perform: ";
    let at = find_ignore_case(message, MARK)? + MARK.len();
    let action: String = message[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == ':')
        .collect();
    action.contains(':').then_some(action)
}

/// Byte offset of `needle` (ASCII) in `haystack`, ignoring ASCII case.
fn find_ignore_case(haystack: &str, needle: &str) -> Option<usize> {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    if n.is_empty() || h.len() < n.len() {
        return None;
    }
    (0..=h.len() - n.len()).find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

fn has(message: &str, needles: &[&str]) -> bool {
    needles
        .iter()
        .any(|n| find_ignore_case(message, n).is_some())
}

/// The likely cause of a failed pull of an image in the cache, from the kubelet's waiting
/// `message` and the state of the rule the image is pulled through (`None` when unknown).
///
/// What the message says for certain (an IAM denial naming its action, throttling, a rate
/// limit) wins over the rule snapshot; the snapshot wins over what a message only suggests
/// (a bare 403 or "not found", which a missing rule also gives).
pub fn classify(message: &str, rule: Option<&RuleState>) -> Cause {
    if let Some(action) = denied_action(message) {
        return Cause::NodeRolePermission {
            action: Some(action),
        };
    }
    // A denial worded another way still names the action it lacks.
    for action in ["ecr:BatchImportUpstreamImage", "ecr:CreateRepository"] {
        if has(message, &[action]) {
            return Cause::NodeRolePermission {
                action: Some(action.to_owned()),
            };
        }
    }
    if has(message, &["ThrottlingException", "Rate exceeded"]) {
        return Cause::EcrThrottling;
    }
    if has(message, &["toomanyrequests", "429 Too Many Requests"]) {
        return Cause::UpstreamRateLimit;
    }
    match rule {
        Some(RuleState::Missing) => return Cause::RuleMissing,
        Some(RuleState::WrongUpstream { .. }) => return Cause::RuleWrongUpstream,
        Some(RuleState::CredentialsFailing { .. }) => return Cause::UpstreamCredentials,
        Some(RuleState::Present) | None => {}
    }
    if has(
        message,
        &[
            "authentication to the upstream registry failed",
            "UnableToAccessSecretException",
            "UnableToDecryptSecretValueException",
            "SecretNotFoundException",
        ],
    ) {
        return Cause::UpstreamCredentials;
    }
    if has(message, &["403 Forbidden", "AccessDenied"]) {
        return Cause::NodeRolePermission { action: None };
    }
    if has(
        message,
        &[
            ": not found",
            "code = NotFound",
            "manifest unknown",
            "404 Not Found",
        ],
    ) {
        return Cause::ImageNotFound;
    }
    Cause::Unknown
}

/// The part of a kubelet message that says what went wrong: the wrappers that only repeat the
/// image (`Back-off pulling image "…": ErrImagePull: rpc error: code = Unknown desc = failed to
/// pull and unpack image "…": failed to resolve reference "…": `) taken off the front.
pub fn essence(message: &str) -> &str {
    const QUOTED: [&str; 4] = [
        "Back-off pulling image \"",
        "Failed to pull image \"",
        "failed to pull and unpack image \"",
        "failed to resolve reference \"",
    ];
    let mut rest = message.trim();
    loop {
        let before = rest;
        for start in QUOTED {
            if let Some(tail) = rest.strip_prefix(start)
                && let Some(end) = tail.find("\": ")
            {
                rest = &tail[end + 3..];
            }
        }
        for plain in ["ErrImagePull: ", "ImagePullBackOff: "] {
            rest = rest.strip_prefix(plain).unwrap_or(rest);
        }
        if let Some(tail) = rest.strip_prefix("rpc error: code = ")
            && let Some(end) = tail.find(" desc = ")
        {
            rest = &tail[end + 8..];
        }
        if rest == before {
            return rest;
        }
    }
}

/// `message` cut to about `max` bytes on a character boundary, for quoting in a note.
pub fn shorten(message: &str, max: usize) -> String {
    let message = message.trim();
    if message.len() <= max {
        return message.to_owned();
    }
    let mut cut = max.saturating_sub(3);
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &message[..cut])
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    const IMAGE: &str =
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/docker-hub/library/nginx:1.27";

    /// A kubelet ErrImagePull message as containerd words it, around `tail`.
    fn err_image_pull(tail: &str) -> String {
        format!(
            "rpc error: code = Unknown desc = failed to pull and unpack image \"{IMAGE}\": failed to resolve reference \"{IMAGE}\": {tail}"
        )
    }

    /// The Kubernetes 1.30+ back-off message, which carries the last error.
    fn back_off(tail: &str) -> String {
        format!(
            "Back-off pulling image \"{IMAGE}\": ErrImagePull: {}",
            err_image_pull(tail)
        )
    }

    fn credentials_failing() -> RuleState {
        RuleState::CredentialsFailing {
            failure: "Secret not found".into(),
        }
    }

    #[rstest]
    #[case::import_denied_with_body(
        &err_image_pull("pull access denied, repository does not exist or may require authorization: server message: denied: User: arn:aws:sts::123456789012:assumed-role/eks-node-group-role/i-0abc12345def67890 is not authorized to perform: ecr:BatchImportUpstreamImage on resource: arn:aws:ecr:eu-west-1:123456789012:repository/docker-hub/library/nginx because no identity-based policy allows the ecr:BatchImportUpstreamImage action"),
        Cause::NodeRolePermission { action: Some("ecr:BatchImportUpstreamImage".into()) }
    )]
    #[case::create_repository_denied_in_back_off(
        &back_off("unexpected status from GET request to https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/v2/docker-hub/library/nginx/manifests/1.27: 403 Forbidden - Server message: denied: User: arn:aws:sts::123456789012:assumed-role/eks-node/i-0abc is not authorized to perform: ecr:CreateRepository on resource: arn:aws:ecr:eu-west-1:123456789012:repository/docker-hub/library/nginx"),
        Cause::NodeRolePermission { action: Some("ecr:CreateRepository".into()) }
    )]
    #[case::policy_wording(
        &err_image_pull("403 Forbidden - Server message: denied: because no identity-based policy allows the ecr:CreateRepository action"),
        Cause::NodeRolePermission { action: Some("ecr:CreateRepository".into()) }
    )]
    #[case::bare_head_403(
        &err_image_pull("unexpected status from HEAD request to https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/v2/docker-hub/library/nginx/manifests/1.27: 403 Forbidden"),
        Cause::NodeRolePermission { action: None }
    )]
    #[case::upstream_rate_limit(
        &err_image_pull("unexpected status from GET request to https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/v2/docker-hub/library/nginx/manifests/1.27: 429 Too Many Requests - Server message: toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit"),
        Cause::UpstreamRateLimit
    )]
    #[case::ecr_throttling(
        &err_image_pull("unexpected status from HEAD request to https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/v2/docker-hub/library/nginx/manifests/1.27: 429 Too Many Requests - Server message: toomanyrequests: Rate exceeded"),
        Cause::EcrThrottling
    )]
    #[case::ecr_throttling_exception(
        "failed to pull and unpack image: ThrottlingException: Rate exceeded for BatchImportUpstreamImage",
        Cause::EcrThrottling
    )]
    #[case::upstream_credentials(
        &err_image_pull("pull access denied, repository does not exist or may require authorization: server message: denied: The authentication to the upstream registry failed. Verify that the credentials are valid and try again."),
        Cause::UpstreamCredentials
    )]
    #[case::tag_not_found(
        &format!("rpc error: code = NotFound desc = failed to pull and unpack image \"{IMAGE}\": failed to resolve reference \"{IMAGE}\": {IMAGE}: not found"),
        Cause::ImageNotFound
    )]
    #[case::manifest_unknown(
        &back_off("unexpected status from GET request to https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/v2/docker-hub/library/nginx/manifests/1.99: 404 Not Found - Server message: manifest unknown: Requested image not found"),
        Cause::ImageNotFound
    )]
    #[case::timeout(
        &err_image_pull("failed to do request: Head \"https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/v2/docker-hub/library/nginx/manifests/1.27\": dial tcp 10.0.3.17:443: i/o timeout"),
        Cause::Unknown
    )]
    #[case::bare_back_off(&format!("Back-off pulling image \"{IMAGE}\""), Cause::Unknown)]
    fn reads_the_cause_from_a_kubelet_message(#[case] message: &str, #[case] cause: Cause) {
        assert_eq!(
            classify(message, Some(&RuleState::Present)),
            cause,
            "{message}"
        );
        assert_eq!(classify(message, None), cause, "{message}");
    }

    #[rstest]
    #[case::missing(RuleState::Missing, Cause::RuleMissing)]
    #[case::wrong(RuleState::WrongUpstream { actual: "quay.example.com".into() }, Cause::RuleWrongUpstream)]
    #[case::credentials(credentials_failing(), Cause::UpstreamCredentials)]
    fn the_rule_snapshot_explains_a_vague_message(#[case] state: RuleState, #[case] cause: Cause) {
        // A missing rule makes ECR answer "not found", like a missing tag.
        let message = format!(
            "rpc error: code = NotFound desc = failed to pull and unpack image \"{IMAGE}\": failed to resolve reference \"{IMAGE}\": {IMAGE}: not found"
        );
        assert_eq!(classify(&message, Some(&state)), cause);
        assert_eq!(classify("Back-off pulling image", Some(&state)), cause);
    }

    #[test]
    fn what_the_message_says_for_certain_wins_over_the_snapshot() {
        let denied = err_image_pull(
            "denied: User: arn:aws:sts::1:assumed-role/node/i-1 is not authorized to perform: ecr:BatchImportUpstreamImage on resource: x",
        );
        assert_eq!(
            classify(&denied, Some(&RuleState::Missing)),
            Cause::NodeRolePermission {
                action: Some("ecr:BatchImportUpstreamImage".into())
            }
        );
        assert_eq!(
            classify("toomanyrequests: slow down", Some(&RuleState::Missing)),
            Cause::UpstreamRateLimit
        );
    }

    #[test]
    fn labels_are_closed_and_match_the_causes() {
        let causes = [
            Cause::RuleMissing,
            Cause::RuleWrongUpstream,
            Cause::UpstreamCredentials,
            Cause::NodeRolePermission { action: None },
            Cause::ImageNotFound,
            Cause::UpstreamRateLimit,
            Cause::EcrThrottling,
            Cause::Unknown,
        ];
        let labels: Vec<_> = causes.iter().map(Cause::label).collect();
        assert_eq!(labels, Cause::LABELS);
        assert_eq!(
            Cause::NodeRolePermission {
                action: Some("ecr:CreateRepository".into())
            }
            .label(),
            "node_role_permission"
        );
    }

    #[test]
    fn shortened_messages_keep_whole_characters() {
        assert_eq!(shorten("  short  ", 10), "short");
        let long = "é".repeat(300);
        let cut = shorten(&long, 101);
        assert!(cut.len() <= 101, "{}", cut.len());
        assert!(cut.ends_with("..."));
        assert_eq!(denied_action("not authorized to perform: "), None);
    }

    #[test]
    fn the_essence_of_a_message_drops_the_wrappers_that_repeat_the_image() {
        let tail =
            "unexpected status from HEAD request to https://x/v2/y/manifests/1: 403 Forbidden";
        assert_eq!(essence(&err_image_pull(tail)), tail);
        assert_eq!(essence(&back_off(tail)), tail);
        assert_eq!(
            essence("Back-off pulling image \"nginx\""),
            "Back-off pulling image \"nginx\""
        );
        assert_eq!(essence("  dial tcp: i/o timeout "), "dial tcp: i/o timeout");
    }
}
