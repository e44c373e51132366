//! `exclude:` in the file: the images (by pattern) and the Pods (by label, by owner kind) the webhook and the reconciler leave alone.

use serde::Deserialize;

use crate::reference::Reference;

/// `exclude:` in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExcludeFile {
    /// Glob patterns over normalised references (`ghcr.io/cloudnative-pg/*`).
    #[serde(default)]
    pub images: Vec<String>,
    /// Pod label selectors, `key` (exists) or `key=value`.
    #[serde(default)]
    pub pod_labels: Vec<String>,
    /// Owner reference kinds whose Pods are left alone (`Cluster`, `postgresql`).
    #[serde(default)]
    pub owner_kinds: Vec<String>,
}

/// Images and Pods left alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exclusions {
    /// Glob patterns over normalised references.
    pub images: Vec<ImagePattern>,
    /// Pod label selectors.
    pub pod_labels: Vec<LabelMatch>,
    /// Owner reference kinds.
    pub owner_kinds: Vec<String>,
}

impl ExcludeFile {
    /// Validates the exclusions; an error names the field, what is wrong and the value, to
    /// find its line.
    pub(super) fn validate(self) -> Result<Exclusions, (&'static str, String, String)> {
        let images = self
            .images
            .iter()
            .map(|p| ImagePattern::new(p).map_err(|m| ("exclude.images", m, p.clone())))
            .collect::<Result<_, _>>()?;
        let pod_labels = self
            .pod_labels
            .iter()
            .map(|s| LabelMatch::parse(s).map_err(|m| ("exclude.podLabels", m, s.clone())))
            .collect::<Result<_, _>>()?;
        for kind in &self.owner_kinds {
            if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err((
                    "exclude.ownerKinds",
                    format!("{kind:?} is not a Kubernetes kind such as Cluster"),
                    kind.clone(),
                ));
            }
        }
        Ok(Exclusions {
            images,
            pod_labels,
            owner_kinds: self.owner_kinds,
        })
    }
}

/// A glob over normalised references: `*` matches any run of characters (`/` included), `?`
/// one character. A pattern matches a reference when it matches its name
/// (`docker.io/library/nginx`) or its full form (`docker.io/library/nginx:1.27`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePattern(String);

impl ImagePattern {
    /// Checks and keeps a pattern.
    pub fn new(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() || pattern.chars().any(char::is_whitespace) {
            return Err(format!("{pattern:?} is not an image pattern"));
        }
        Ok(Self(pattern.to_owned()))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the pattern matches this reference.
    pub fn matches(&self, reference: &Reference) -> bool {
        let name = format!("{}/{}", reference.registry(), reference.repository());
        if glob(self.0.as_bytes(), name.as_bytes()) {
            return true;
        }
        let full = format!("{name}{}", reference.suffix());
        glob(self.0.as_bytes(), full.as_bytes())
    }
}

/// Iterative glob matching with single-star backtracking: linear in practice, never exponential.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// A Pod label selector: `key` (the label exists) or `key=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMatch {
    /// Label key.
    pub key: String,
    /// Required value; `None` means any value.
    pub value: Option<String>,
}

impl LabelMatch {
    /// Parses `key` or `key=value`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (key, value) = match s.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim().to_owned())),
            None => (s.trim(), None),
        };
        let key_ok = !key.is_empty()
            && key.len() <= 317
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
        if !key_ok {
            return Err(format!("{s:?} is not a label selector (key or key=value)"));
        }
        Ok(Self {
            key: key.to_owned(),
            value,
        })
    }

    /// Whether a label set matches.
    pub fn matches<'a>(&self, mut labels: impl Iterator<Item = (&'a str, &'a str)>) -> bool {
        labels.any(|(k, v)| k == self.key && self.value.as_deref().is_none_or(|want| want == v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fixtures::load;
    use rstest::rstest;

    #[test]
    fn exclusions_are_parsed() {
        let c = load(
            "exclude:\n  images: [\"ghcr.io/cloudnative-pg/*\"]\n  podLabels: [\"cnpg.io/cluster\", \"app=db\"]\n  ownerKinds: [Cluster]\n",
        )
        .unwrap();
        assert_eq!(c.exclude.images.len(), 1);
        assert_eq!(c.exclude.pod_labels[1].value.as_deref(), Some("db"));
        assert!(load("exclude:\n  podLabels: [\"bad key\"]\n").is_err());
        assert!(load("exclude:\n  ownerKinds: [\"apps/v1\"]\n").is_err());
    }

    #[rstest]
    #[case::star_matches_all(
        "ghcr.io/cloudnative-pg/*",
        "ghcr.io/cloudnative-pg/postgresql:16",
        true
    )]
    #[case::name_only("docker.io/library/nginx", "nginx:1.27", true)]
    #[case::tag_pattern("docker.io/library/nginx:1.*", "nginx:1.27", true)]
    #[case::other_repo("ghcr.io/cloudnative-pg/*", "ghcr.io/other/x", false)]
    #[case::question("quay.io/?/x", "quay.io/a/x", true)]
    #[case::star_middle("*/bitnami/*", "bitnami/redis:7", true)]
    fn image_patterns(#[case] pattern: &str, #[case] image: &str, #[case] want: bool) {
        let p = ImagePattern::new(pattern).unwrap();
        assert_eq!(p.matches(&Reference::parse(image).unwrap()), want);
    }

    #[test]
    fn glob_is_not_exponential() {
        let text = "a".repeat(200);
        assert!(!glob(b"*a*a*a*a*a*a*a*a*b", text.as_bytes()));
    }

    #[test]
    fn label_match() {
        let exists = LabelMatch::parse("cnpg.io/cluster").unwrap();
        let eq = LabelMatch::parse("app=db").unwrap();
        let labels = [("cnpg.io/cluster", "pg"), ("app", "web")];
        assert!(exists.matches(labels.iter().copied()));
        assert!(!eq.matches(labels.iter().copied()));
    }
}
