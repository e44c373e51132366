//! Container image references, parsed and normalised the way container runtimes resolve them.
//!
//! The grammar is the one of `distribution/reference` (used by containerd, Docker and CRI-O):
//!
//! ```text
//! reference  := name [ ":" tag ] [ "@" digest ]
//! name       := [ domain "/" ] path-component ( "/" path-component )*
//! domain     := host [ ":" port ]
//! tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
//! digest     := algorithm ":" hex
//! ```
//!
//! Normalisation follows the runtimes too: the first path component is a registry host only if
//! it contains a `.` or a `:`, is `localhost`, or has an upper-case letter; otherwise the
//! registry is `docker.io`. `index.docker.io` is `docker.io`, and single-component Docker Hub
//! repositories live under `library/`. A reference without tag and digest stays that way:
//! `:latest` is never invented.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// The registry host of Docker Hub, as normalised references spell it.
pub const DOCKER_HUB: &str = "docker.io";
const LEGACY_DOCKER_HUB: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
/// Longest name (registry, `/` and repository) the grammar accepts; container runtimes refuse
/// longer ones.
pub const NAME_MAX_LEN: usize = 255;
/// Longest tag the grammar accepts.
const TAG_MAX_LEN: usize = 128;

/// A parsed, normalised image reference.
///
/// `Display` prints the fully qualified form (`docker.io/library/nginx:1.27`), and parsing that
/// form gives back an equal value.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    // The fully qualified form, `registry/repository[:tag][@digest]`, in one allocation: parsing
    // sits on the admission path, once per container.
    full: String,
    /// End of the registry (the `/` after it).
    registry_end: usize,
    /// End of the repository.
    repository_end: usize,
    /// End of the tag; `repository_end` when there is none.
    tag_end: usize,
}

/// Why a string is not a valid image reference. One variant per grammar rule.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReferenceError {
    /// The string is empty.
    #[error("image reference is empty")]
    Empty,
    /// Leading or trailing white space, or white space inside.
    #[error("image reference contains white space")]
    WhiteSpace,
    /// A bare 64-character hex string, which runtimes reserve for image IDs.
    #[error("image reference is a bare 64-character hex string, which names an image ID")]
    BareImageId,
    /// The registry host or port is not well formed.
    #[error("invalid registry host {0:?}")]
    InvalidHost(String),
    /// The repository path has upper-case letters.
    #[error("repository name must be lowercase")]
    UppercaseRepository,
    /// A path component is empty or not of the form `[a-z0-9]+([._]|__|-+)[a-z0-9]+...`.
    #[error("invalid repository path component {0:?}")]
    InvalidPathComponent(String),
    /// Registry and repository together are longer than 255 characters.
    #[error("repository name is longer than {NAME_MAX_LEN} characters")]
    NameTooLong,
    /// The tag has a character outside `[A-Za-z0-9_.-]`, starts with `.` or `-`, or is empty.
    #[error("invalid tag {0:?}")]
    InvalidTag(String),
    /// The tag is longer than 128 characters.
    #[error("tag is longer than {TAG_MAX_LEN} characters")]
    TagTooLong,
    /// The digest is not `algorithm:hex`.
    #[error("invalid digest {0:?}")]
    InvalidDigest(String),
    /// The digest algorithm is not one runtimes can verify (sha256, sha384, sha512).
    #[error("unsupported digest algorithm {0:?}")]
    UnsupportedDigest(String),
}

impl ReferenceError {
    /// A short, bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::WhiteSpace => "white_space",
            Self::BareImageId => "bare_image_id",
            Self::InvalidHost(_) => "invalid_host",
            Self::UppercaseRepository => "uppercase_repository",
            Self::InvalidPathComponent(_) => "invalid_path_component",
            Self::NameTooLong => "name_too_long",
            Self::InvalidTag(_) => "invalid_tag",
            Self::TagTooLong => "tag_too_long",
            Self::InvalidDigest(_) => "invalid_digest",
            Self::UnsupportedDigest(_) => "unsupported_digest",
        }
    }
}

/// A reference parsed and normalised without copying it: the pieces of the text. The rewrite
/// decision reads these; [`Reference`] is the owned form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts<'a> {
    registry: &'a str,
    /// `library/` for a single-component Docker Hub repository, otherwise empty.
    official: &'static str,
    path: &'a str,
    tag: Option<&'a str>,
    digest: Option<&'a str>,
}

impl<'a> Parts<'a> {
    /// Parses and normalises an image reference as a container runtime would.
    pub fn parse(s: &'a str) -> Result<Self, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        // All white space is below `!` or outside ASCII: most references need no char decoding.
        if s.bytes().any(|b| b <= b' ' || !b.is_ascii()) && s.chars().any(char::is_whitespace) {
            return Err(ReferenceError::WhiteSpace);
        }
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ReferenceError::BareImageId);
        }

        // The digest is everything after the first `@`; a `:` before it but after the last
        // `/` separates the tag (a `:` before the last `/` is a registry port).
        let (name_and_tag, digest) = match split_at_byte(s, b'@') {
            Some((head, digest)) => (head, Some(parse_digest(digest)?)),
            None => (s, None),
        };
        let last_slash = rfind_byte(name_and_tag, b'/').map_or(0, |i| i + 1);
        let (name, tag) = match rfind_byte(&name_and_tag[last_slash..], b':') {
            Some(i) => {
                let at = last_slash + i;
                (
                    &name_and_tag[..at],
                    Some(parse_tag(&name_and_tag[at + 1..])?),
                )
            }
            None => (name_and_tag, None),
        };
        if name.len() > NAME_MAX_LEN {
            return Err(ReferenceError::NameTooLong);
        }

        let (registry, path) = split_registry(name);
        validate_host(registry)?;
        validate_path(path)?;

        let registry = if registry == LEGACY_DOCKER_HUB {
            DOCKER_HUB
        } else {
            registry
        };
        let official = if registry == DOCKER_HUB && find_byte(path, b'/').is_none() {
            OFFICIAL_REPO_PREFIX
        } else {
            ""
        };
        if registry.len() + 1 + official.len() + path.len() > NAME_MAX_LEN {
            return Err(ReferenceError::NameTooLong);
        }
        Ok(Self {
            registry,
            official,
            path,
            tag,
            digest,
        })
    }

    /// The registry host, with its port if any (`docker.io`, `localhost:5000`).
    pub fn registry(&self) -> &'a str {
        self.registry
    }

    /// The repository path inside the registry in two pieces, to be joined: `library/` or
    /// nothing, then the path as written (`library/` and `nginx`, or `` and `fluent/fluent-bit`).
    pub fn repository(&self) -> (&'static str, &'a str) {
        (self.official, self.path)
    }

    /// Length of the repository path.
    pub fn repository_len(&self) -> usize {
        self.official.len() + self.path.len()
    }

    /// The tag, without its `:`.
    pub fn tag(&self) -> Option<&'a str> {
        self.tag
    }

    /// The digest, `algorithm:hex`.
    pub fn digest(&self) -> Option<&'a str> {
        self.digest
    }

    /// The owned form.
    pub fn to_reference(&self) -> Reference {
        let suffix_len =
            self.tag.map_or(0, |t| t.len() + 1) + self.digest.map_or(0, |d| d.len() + 1);
        let mut full =
            String::with_capacity(self.registry.len() + 1 + self.repository_len() + suffix_len);
        full.push_str(self.registry);
        let registry_end = full.len();
        full.push('/');
        full.push_str(self.official);
        full.push_str(self.path);
        let repository_end = full.len();
        if let Some(tag) = self.tag {
            full.push(':');
            full.push_str(tag);
        }
        let tag_end = full.len();
        if let Some(digest) = self.digest {
            full.push('@');
            full.push_str(digest);
        }
        Reference {
            full,
            registry_end,
            repository_end,
            tag_end,
        }
    }
}

impl Reference {
    /// Parses and normalises an image reference as a container runtime would.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        Parts::parse(s).map(|p| p.to_reference())
    }

    /// The registry host, with its port if any (`docker.io`, `localhost:5000`).
    pub fn registry(&self) -> &str {
        &self.full[..self.registry_end]
    }

    /// The repository path inside the registry (`library/nginx`).
    pub fn repository(&self) -> &str {
        &self.full[self.registry_end + 1..self.repository_end]
    }

    /// The tag, without its `:`.
    pub fn tag(&self) -> Option<&str> {
        (self.tag_end > self.repository_end)
            .then(|| &self.full[self.repository_end + 1..self.tag_end])
    }

    /// The digest, `algorithm:hex`.
    pub fn digest(&self) -> Option<&str> {
        (self.full.len() > self.tag_end).then(|| &self.full[self.tag_end + 1..])
    }

    /// The tag and digest suffix as written after the name (`:1.27`, `@sha256:…`, both, or empty).
    pub fn suffix(&self) -> String {
        self.full[self.repository_end..].to_owned()
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reference")
            .field("registry", &self.registry())
            .field("repository", &self.repository())
            .field("tag", &self.tag())
            .field("digest", &self.digest())
            .finish()
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

// Byte searches for the ASCII separators of the grammar. A reference is short, and these plain
// loops cost less than the general `char` pattern machinery of `str`, which sits on the
// admission path several times per image. A byte below 0x80 is never inside a multi-byte
// character, so the positions they return are character boundaries.

fn find_byte(s: &str, c: u8) -> Option<usize> {
    s.bytes().position(|b| b == c)
}

fn rfind_byte(s: &str, c: u8) -> Option<usize> {
    s.bytes().rposition(|b| b == c)
}

/// `s` around the first `c`, without it.
fn split_at_byte(s: &str, c: u8) -> Option<(&str, &str)> {
    let i = find_byte(s, c)?;
    Some((&s[..i], &s[i + 1..]))
}

/// Splits a name into registry host and repository path, as `splitDockerDomain` does.
fn split_registry(name: &str) -> (&str, &str) {
    match split_at_byte(name, b'/') {
        Some((first, rest))
            if first.bytes().any(|b| b == b'.' || b == b':')
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DOCKER_HUB, name),
    }
}

fn validate_host(host: &str) -> Result<(), ReferenceError> {
    let invalid = || ReferenceError::InvalidHost(host.to_owned());
    // An IPv6 literal is bracketed; the port, if any, follows the closing bracket.
    let (hostname, port) = if let Some(rest) = host.strip_prefix('[') {
        let (addr, after) = split_at_byte(rest, b']').ok_or_else(invalid)?;
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(invalid());
        }
        match after {
            "" => (None, None),
            _ => (None, Some(after.strip_prefix(':').ok_or_else(invalid)?)),
        }
    } else {
        match split_at_byte(host, b':') {
            Some((name, port)) => (Some(name), Some(port)),
            None => (Some(host), None),
        }
    };
    if let Some(name) = hostname {
        let ok = !name.is_empty()
            && name.as_bytes().split(|&b| b == b'.').all(|label| {
                !label.is_empty()
                    && label
                        .iter()
                        .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
                    && label.first() != Some(&b'-')
                    && label.last() != Some(&b'-')
            });
        if !ok {
            return Err(invalid());
        }
    }
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(invalid());
    }
    Ok(())
}

fn validate_path(path: &str) -> Result<(), ReferenceError> {
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ReferenceError::UppercaseRepository);
    }
    for component in path.as_bytes().split(|&b| b == b'/') {
        if !is_path_component(component) {
            let text = String::from_utf8_lossy(component).into_owned();
            return Err(ReferenceError::InvalidPathComponent(text));
        }
    }
    Ok(())
}

/// `[a-z0-9]+ ( ( [._] | __ | -+ ) [a-z0-9]+ )*`
fn is_path_component(b: &[u8]) -> bool {
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        match b[i] {
            b'.' => i += 1,
            b'_' => i += if b.get(i + 1) == Some(&b'_') { 2 } else { 1 },
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

fn parse_tag(tag: &str) -> Result<&str, ReferenceError> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    match bytes.first() {
        Some(&first) if word(first) => {}
        _ => return Err(ReferenceError::InvalidTag(tag.to_owned())),
    }
    if !bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-') {
        return Err(ReferenceError::InvalidTag(tag.to_owned()));
    }
    if tag.len() > TAG_MAX_LEN {
        return Err(ReferenceError::TagTooLong);
    }
    Ok(tag)
}

fn parse_digest(digest: &str) -> Result<&str, ReferenceError> {
    let invalid = || ReferenceError::InvalidDigest(digest.to_owned());
    let (algorithm, hex) = split_at_byte(digest, b':').ok_or_else(invalid)?;
    // algorithm := component ( [+._-] component )*, component := [A-Za-z][A-Za-z0-9]*
    let algorithm_ok = algorithm.split(['+', '.', '_', '-']).all(|c| {
        c.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
            && c.bytes().all(|b| b.is_ascii_alphanumeric())
    });
    if !algorithm_ok || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    let expected_len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(ReferenceError::UnsupportedDigest(algorithm.to_owned())),
    };
    if hex.len() != expected_len || hex.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(invalid());
    }
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rstest::rstest;

    const SHA: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn parts(r: &Reference) -> (&str, &str, Option<&str>, Option<&str>) {
        (r.registry(), r.repository(), r.tag(), r.digest())
    }

    #[rstest]
    #[case::official_image("nginx", "docker.io", "library/nginx", None)]
    #[case::official_image_with_tag("nginx:1.27", "docker.io", "library/nginx", Some("1.27"))]
    #[case::hub_user_repo("bitnami/redis:7", "docker.io", "bitnami/redis", Some("7"))]
    #[case::explicit_hub("docker.io/nginx", "docker.io", "library/nginx", None)]
    #[case::legacy_hub("index.docker.io/nginx:1", "docker.io", "library/nginx", Some("1"))]
    #[case::legacy_hub_user("index.docker.io/grafana/loki", "docker.io", "grafana/loki", None)]
    #[case::quay(
        "quay.io/prometheus/node-exporter:v1.8.2",
        "quay.io",
        "prometheus/node-exporter",
        Some("v1.8.2")
    )]
    #[case::registry_with_port("host:5000/a/b:tag", "host:5000", "a/b", Some("tag"))]
    #[case::localhost("localhost/app", "localhost", "app", None)]
    #[case::localhost_port("localhost:5000/app:1", "localhost:5000", "app", Some("1"))]
    #[case::ipv6("[::1]:5000/app:1", "[::1]:5000", "app", Some("1"))]
    #[case::ipv6_no_port("[fe80::1]/app", "[fe80::1]", "app", None)]
    #[case::evil_lookalike("docker.io.evil.com/x", "docker.io.evil.com", "x", None)]
    #[case::deep_path("registry.k8s.io/a/b/c/d:v1", "registry.k8s.io", "a/b/c/d", Some("v1"))]
    #[case::separators("ghcr.io/a__b/c-d--e/f.g_h", "ghcr.io", "a__b/c-d--e/f.g_h", None)]
    #[case::uppercase_host("Example/app", "Example", "app", None)]
    #[case::tag_with_underscore("nginx:_x.Y-1", "docker.io", "library/nginx", Some("_x.Y-1"))]
    fn parses_and_normalises(
        #[case] input: &str,
        #[case] registry: &str,
        #[case] repository: &str,
        #[case] tag: Option<&str>,
    ) {
        let r = Reference::parse(input).unwrap();
        assert_eq!(parts(&r), (registry, repository, tag, None));
    }

    #[test]
    fn keeps_tag_and_digest_together() {
        let r = Reference::parse(&format!("nginx:1.27@{SHA}")).unwrap();
        assert_eq!(
            parts(&r),
            ("docker.io", "library/nginx", Some("1.27"), Some(SHA))
        );
        assert_eq!(r.suffix(), format!(":1.27@{SHA}"));
    }

    #[test]
    fn digest_only_has_no_tag() {
        let r = Reference::parse(&format!("ghcr.io/a/b@{SHA}")).unwrap();
        assert_eq!(parts(&r), ("ghcr.io", "a/b", None, Some(SHA)));
    }

    #[test]
    fn port_is_not_mistaken_for_a_tag() {
        let r = Reference::parse("registry.local:5000/team/app").unwrap();
        assert_eq!(parts(&r), ("registry.local:5000", "team/app", None, None));
    }

    #[test]
    fn never_invents_latest() {
        let r = Reference::parse("quay.io/coreos/etcd").unwrap();
        assert_eq!(r.to_string(), "quay.io/coreos/etcd");
    }

    #[rstest]
    #[case::empty("", ReferenceError::Empty)]
    #[case::space("nginx 1", ReferenceError::WhiteSpace)]
    #[case::uppercase_repo("docker.io/Nginx", ReferenceError::UppercaseRepository)]
    #[case::uppercase_hub_repo("nginx/Web", ReferenceError::UppercaseRepository)]
    #[case::empty_component("quay.io//a", ReferenceError::InvalidPathComponent(String::new()))]
    #[case::trailing_slash("quay.io/a/", ReferenceError::InvalidPathComponent(String::new()))]
    #[case::bad_separator("quay.io/a..b", ReferenceError::InvalidPathComponent("a..b".into()))]
    #[case::triple_underscore("quay.io/a___b", ReferenceError::InvalidPathComponent("a___b".into()))]
    #[case::leading_dash("quay.io/-a", ReferenceError::InvalidPathComponent("-a".into()))]
    #[case::empty_tag("nginx:", ReferenceError::InvalidTag(String::new()))]
    #[case::dot_tag("nginx:.1", ReferenceError::InvalidTag(".1".into()))]
    #[case::bad_tag_char("nginx:1+2", ReferenceError::InvalidTag("1+2".into()))]
    #[case::bad_digest("nginx@sha256:xyz", ReferenceError::InvalidDigest("sha256:xyz".into()))]
    #[case::no_algorithm("nginx@0123456789abcdef0123456789abcdef", ReferenceError::InvalidDigest("0123456789abcdef0123456789abcdef".into()))]
    #[case::unknown_algorithm("nginx@md5:0123456789abcdef0123456789abcdef", ReferenceError::UnsupportedDigest("md5".into()))]
    #[case::bad_port("host:port/app", ReferenceError::InvalidHost("host:port".into()))]
    #[case::bad_host("-bad.example/app", ReferenceError::InvalidHost("-bad.example".into()))]
    #[case::unclosed_ipv6("[::1/app", ReferenceError::InvalidHost("[::1".into()))]
    #[case::image_id(
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ReferenceError::BareImageId
    )]
    fn rejects_invalid_references(#[case] input: &str, #[case] err: ReferenceError) {
        assert_eq!(Reference::parse(input), Err(err));
    }

    #[test]
    fn rejects_short_sha256_digest() {
        let short = &SHA[..SHA.len() - 1];
        assert!(matches!(
            Reference::parse(&format!("nginx@{short}")),
            Err(ReferenceError::InvalidDigest(_))
        ));
    }

    #[test]
    fn rejects_overlong_tag_and_name() {
        let tag = "a".repeat(129);
        assert_eq!(
            Reference::parse(&format!("nginx:{tag}")),
            Err(ReferenceError::TagTooLong)
        );
        let name = format!("quay.io/{}", "a".repeat(250));
        assert_eq!(Reference::parse(&name), Err(ReferenceError::NameTooLong));
        // 128 characters is the longest tag allowed.
        assert!(Reference::parse(&format!("nginx:{}", "a".repeat(128))).is_ok());
    }

    #[test]
    fn display_is_fully_qualified() {
        let r = Reference::parse(&format!("nginx:1.27@{SHA}")).unwrap();
        assert_eq!(r.to_string(), format!("docker.io/library/nginx:1.27@{SHA}"));
    }

    fn reference_strategy() -> impl Strategy<Value = String> {
        let component = "[a-z0-9]{1,6}([._-][a-z0-9]{1,4})?";
        let host = prop_oneof![
            Just(String::new()),
            Just("docker.io/".to_owned()),
            Just("index.docker.io/".to_owned()),
            Just("localhost:5000/".to_owned()),
            "[a-z]{1,8}\\.[a-z]{2,4}(:[0-9]{1,5})?/",
        ];
        let path = prop::collection::vec(component, 1..4).prop_map(|c| c.join("/"));
        let tag = prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}");
        let digest = prop::option::of("[a-f0-9]{64}");
        (host, path, tag, digest).prop_map(|(h, p, t, d)| {
            let mut s = format!("{h}{p}");
            if let Some(t) = t {
                s.push(':');
                s.push_str(&t);
            }
            if let Some(d) = d {
                s.push_str("@sha256:");
                s.push_str(&d);
            }
            s
        })
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,80}") {
            let _ = Reference::parse(&s);
        }

        #[test]
        fn parse_never_panics_on_reference_like_input(s in "[a-zA-Z0-9:/@._\\[\\]-]{0,80}") {
            let _ = Reference::parse(&s);
        }

        #[test]
        fn display_then_parse_round_trips(s in reference_strategy()) {
            let r = Reference::parse(&s).unwrap();
            let again = Reference::parse(&r.to_string()).unwrap();
            prop_assert_eq!(&again, &r);
            prop_assert_eq!(again.to_string(), r.to_string());
        }

        #[test]
        fn parts_are_the_pieces_of_the_owned_form(s in reference_strategy()) {
            let parts = Parts::parse(&s).unwrap();
            let r = Reference::parse(&s).unwrap();
            let (official, path) = parts.repository();
            prop_assert_eq!(parts.registry(), r.registry());
            prop_assert_eq!(format!("{official}{path}"), r.repository());
            prop_assert_eq!(parts.repository_len(), r.repository().len());
            prop_assert_eq!(parts.tag(), r.tag());
            prop_assert_eq!(parts.digest(), r.digest());
            // The borrowed pieces come from the text itself.
            prop_assert!(s.contains(path));
        }
    }
}
