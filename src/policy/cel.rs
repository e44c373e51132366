//! The CEL of the MutatingAdmissionPolicy: the engine's rewrite, compiled for the API server.
//!
//! CEL has no image-reference parser and the API server's environment has no `cel.bind`, so the
//! reference is taken apart in steps, each step a variable holding one list over all of the
//! Pod's images (the API server evaluates a variable once per request and estimates each
//! expression on its own, so no expression nests comprehensions). Every step only narrows: an
//! image the steps cannot be sure of ends as `''`, "leave it alone", and the webhook, where it
//! runs, decides. What the steps accept is a strict subset of the engine's grammar (lowercase
//! paths, `sha256` digests only, hosts named exactly in the map), and for that subset they
//! compute what `rewrite::decide_with` computes.

use crate::admission::{FALLBACK_ANNOTATION, ORIGINAL_IMAGES_ANNOTATION, SKIP_ANNOTATION};
use crate::config::{DigestPolicy, LabelMatch};
use crate::reference::NAME_MAX_LEN;

/// One registry name the policy rewrites, and where its images go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The host as it appears in references (a mapped registry or one of its aliases), already
    /// normalised the way the engine does (`index.docker.io` is `docker.io`).
    pub host: String,
    /// Whether the mapping behind it is Docker Hub's, whose one-component paths gain
    /// `library/`.
    pub docker_hub: bool,
    /// The ECR repository prefix with its `/` (`docker-hub/`), or empty for `ROOT`.
    pub prefix: String,
    /// The rule's upstream repository prefix with its `/`, which the repository must start
    /// with and loses; empty when the rule has none.
    pub upstream: String,
}

/// What the expressions are compiled from.
#[derive(Debug, Clone)]
pub struct Knowledge {
    /// The private registry images are rewritten to.
    pub registry_host: String,
    /// Every reference host the policy rewrites, sorted by host.
    pub routes: Vec<Route>,
    /// `exclude.images`, as written.
    pub exclude_images: Vec<String>,
    /// `exclude.podLabels`.
    pub exclude_labels: Vec<LabelMatch>,
    /// `exclude.ownerKinds`.
    pub exclude_owner_kinds: Vec<String>,
    /// `digests`.
    pub digests: DigestPolicy,
    /// Under [`DigestPolicy::WhenCached`]: `repository@digest` of every digest confirmed in the
    /// cache that the policy carries, sorted.
    pub cached: Vec<String>,
}

/// A named CEL expression (a variable or a match condition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// Its name.
    pub name: &'static str,
    /// Its CEL.
    pub expression: String,
}

/// The compiled policy body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    /// Conditions every admitted request must meet before anything is evaluated.
    pub match_conditions: Vec<Named>,
    /// The variables, in the order they must be declared (each uses only earlier ones).
    pub variables: Vec<Named>,
    /// The JSONPatch mutation.
    pub patch: String,
}

/// A path component of the reference grammar, lowercase only, as `reference` validates it.
const COMPONENT: &str = "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
/// A tag.
const TAG: &str = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}";
/// The only digest the policy handles: others stay with the webhook.
const DIGEST: &str = "sha256:[a-f0-9]{64}";
/// A container or volume name: a DNS label, which needs no escape in the record's JSON and
/// holds no `"` or `,` for the string searches below.
const NAME: &str = "^(?:volume/)?[a-z0-9](?:[-a-z0-9]*[a-z0-9])?$";
/// The record of originals as the webhook writes it: compact JSON of plain printable ASCII,
/// which the policy can extend by text. Any other value is left to the webhook.
const RECORD: &str =
    r#"^\{(?:"[ !#-\[\]-~]*":"[ !#-\[\]-~]*"(?:,"[ !#-\[\]-~]*":"[ !#-\[\]-~]*")*)?\}$"#;
/// The fallback list as the reconciler writes it: compact JSON of DNS labels.
const FALLBACK: &str =
    r#"^\[(?:"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"(?:,"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?")*)?\]$"#;

/// The JSON Pointer of the record, for an `add` into existing annotations.
fn record_pointer() -> String {
    format!(
        "/metadata/annotations/{}",
        ORIGINAL_IMAGES_ANNOTATION
            .replace('~', "~0")
            .replace('/', "~1")
    )
}

/// A CEL string literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A regular expression matching `s` literally (RE2 and Rust's `regex` agree on these escapes).
fn regex_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An `exclude.images` glob as an anchored regular expression: `*` any run, `?` one character.
pub fn glob_regex(glob: &str) -> String {
    let mut out = String::from("^");
    for c in glob.chars() {
        match c {
            '*' => out.push_str("(?s:.*)"),
            '?' => out.push_str("(?s:.)"),
            c => out.push_str(&regex_literal(&c.to_string())),
        }
    }
    out.push('$');
    out
}

/// A JSONPatch operation, written the one way the API server's CEL types it.
fn json_patch(op: &str, path: &str, value: &str) -> String {
    format!(
        "JSONPatch{{op: {}, path: {path}, value: {value}}}",
        quote(op)
    )
}

fn map_literal<'a>(entries: impl IntoIterator<Item = (&'a str, String)>) -> String {
    let body: Vec<String> = entries
        .into_iter()
        .map(|(k, v)| format!("{}: {v}", quote(k)))
        .collect();
    format!("{{{}}}", body.join(", "))
}

/// `object.metadata.annotations[key]` is there.
fn has_annotation(key: &str) -> String {
    format!(
        "has(object.metadata.annotations) && {} in object.metadata.annotations",
        quote(key)
    )
}

impl Knowledge {
    /// Compiles the policy body.
    pub fn compile(&self) -> Compiled {
        Compiled {
            match_conditions: self.match_conditions(),
            variables: self.variables(),
            patch: Self::patch(),
        }
    }

    fn match_conditions(&self) -> Vec<Named> {
        let mut out = vec![Named {
            name: "not-opted-out",
            expression: format!(
                "!({} && object.metadata.annotations[{}].lowerAscii() == 'true')",
                has_annotation(SKIP_ANNOTATION),
                quote(SKIP_ANNOTATION)
            ),
        }];
        if !self.exclude_labels.is_empty() {
            let any: Vec<String> = self
                .exclude_labels
                .iter()
                .map(|l| {
                    let key = quote(&l.key);
                    match &l.value {
                        None => format!("{key} in object.metadata.labels"),
                        Some(v) => format!(
                            "({key} in object.metadata.labels && object.metadata.labels[{key}] == {})",
                            quote(v)
                        ),
                    }
                })
                .collect();
            out.push(Named {
                name: "not-excluded-by-label",
                expression: format!("!(has(object.metadata.labels) && ({}))", any.join(" || ")),
            });
        }
        if !self.exclude_owner_kinds.is_empty() {
            let kinds: Vec<String> = self.exclude_owner_kinds.iter().map(|k| quote(k)).collect();
            out.push(Named {
                name: "not-excluded-by-owner",
                expression: format!(
                    "!(has(object.metadata.ownerReferences) && object.metadata.ownerReferences.exists(o, o.kind in [{}]))",
                    kinds.join(", ")
                ),
            });
        }
        out
    }

    fn variables(&self) -> Vec<Named> {
        let var = |name, expression| Named { name, expression };
        vec![
            var("scope", SCOPE.to_owned()),
            var("oldEphemeralNames", OLD_EPHEMERAL_NAMES.to_owned()),
            var("entries", entries()),
            var("fallbackSet", has_annotation(FALLBACK_ANNOTATION)),
            var(
                "fallback",
                format!(
                    "variables.fallbackSet ? string(object.metadata.annotations[{}]) : ''",
                    quote(FALLBACK_ANNOTATION)
                ),
            ),
            var(
                "fallbackListed",
                format!("variables.fallback.matches({})", quote(FALLBACK)),
            ),
            var("recordSet", has_annotation(ORIGINAL_IMAGES_ANNOTATION)),
            var(
                "record",
                format!(
                    "variables.recordSet ? string(object.metadata.annotations[{}]) : ''",
                    quote(ORIGINAL_IMAGES_ANNOTATION)
                ),
            ),
            var(
                "recordOk",
                format!(
                    "variables.scope == 'ephemeral' || !variables.recordSet || variables.record.matches({})",
                    quote(RECORD)
                ),
            ),
            var("split", SPLIT.to_owned()),
            var("named", NAMED.to_owned()),
            var("hosted", HOSTED.to_owned()),
            var("routes", self.routes()),
            var("mapped", MAPPED.to_owned()),
            var("cached", self.cached_literal()),
            var("rewritten", self.rewritten()),
            var("recorded", RECORDED.to_owned()),
            var("newRecord", NEW_RECORD.to_owned()),
        ]
    }

    /// Host to `[prefix, upstream prefix, docker hub?]`.
    fn routes(&self) -> String {
        map_literal(self.routes.iter().map(|r| {
            (
                r.host.as_str(),
                format!(
                    "[{}, {}, {}]",
                    quote(&r.prefix),
                    quote(&r.upstream),
                    quote(if r.docker_hub { "y" } else { "" })
                ),
            )
        }))
    }

    fn cached_literal(&self) -> String {
        if self.digests != DigestPolicy::WhenCached || self.cached.is_empty() {
            return "{'': true}".to_owned();
        }
        map_literal(self.cached.iter().map(|k| (k.as_str(), "true".to_owned())))
    }

    /// The rewritten image per entry, or `''`.
    fn rewritten(&self) -> String {
        const E: &str = "variables.entries[j]";
        const H: &str = "variables.hosted[j]";
        const M: &str = "variables.mapped[j]";
        let digest = match self.digests {
            DigestPolicy::Skip => String::new(),
            DigestPolicy::Rewrite | DigestPolicy::WhenCached => format!("(?:@{DIGEST})?"),
        };
        let rest = format!("^{COMPONENT}(?:/{COMPONENT})*(?::{TAG})?{digest}$");
        let host = quote(&self.registry_host);
        let mut checks = vec![
            "variables.recordOk".to_owned(),
            format!("{M}.key != ''"),
            format!("{E}.n.matches({})", quote(NAME)),
            format!("({H}.path + {H}.rest).matches({})", quote(&rest)),
            format!("!{E}.i.matches('^[0-9A-Fa-f]{{64}}$')"),
            format!("size({H}.name) <= {NAME_MAX_LEN}"),
            format!("size({M}.norm) <= {NAME_MAX_LEN}"),
            format!("({M}.up == '' || {M}.repo.startsWith({M}.up))"),
            format!(
                "size({host}) + 1 + size({M}.prefix) + size({M}.repo) - size({M}.up) <= {NAME_MAX_LEN}"
            ),
            format!(
                "({E}.v == 'y' || !variables.fallbackSet || (variables.fallbackListed && !variables.fallback.contains('\"' + {E}.n + '\"')))"
            ),
        ];
        for glob in &self.exclude_images {
            let re = quote(&glob_regex(glob));
            checks.push(format!(
                "!{M}.norm.matches({re}) && !({M}.norm + {H}.rest).matches({re})"
            ));
        }
        if self.digests == DigestPolicy::WhenCached {
            checks.push(format!(
                "({H}.dg == '' || ({M}.prefix + {M}.repo.substring(size({M}.up)) + {H}.dg) in variables.cached)"
            ));
        }
        format!(
            "lists.range(size(variables.entries)).map(j,\n  {}\n  ? string({host} + '/' + {M}.prefix + {M}.repo.substring(size({M}.up)) + {H}.rest)\n  : '')",
            checks.join(" &&\n  ")
        )
    }

    fn patch() -> String {
        let replace = json_patch(
            "replace",
            "string(variables.entries[j].p)",
            "variables.rewritten[j]",
        );
        let record = "variables.newRecord";
        let key = quote(ORIGINAL_IMAGES_ANNOTATION);
        let add_one = json_patch("add", &quote(&record_pointer()), record);
        let add_map = json_patch(
            "add",
            "'/metadata/annotations'",
            &format!("{{{key}: {record}}}"),
        );
        let add_meta = json_patch(
            "add",
            "'/metadata'",
            &format!("{{'annotations': {{{key}: {record}}}}}"),
        );
        format!(
            "lists.range(size(variables.entries)).filter(j, variables.rewritten[j] != '').map(j, {replace})\n\
             + (variables.scope == 'ephemeral' || variables.recorded == '' ? [] : [\n\
             has(object.metadata) ? (has(object.metadata.annotations)\n  \
             ? {add_one}\n  \
             : {add_map})\n\
             : {add_meta}])"
        )
    }
}

/// `create`, `update` (the Pod itself) or `ephemeral` (the ephemeral containers subresource).
const SCOPE: &str = "request.operation == 'CREATE' ? 'create' : (has(request.subResource) && request.subResource == 'ephemeralcontainers' ? 'ephemeral' : (has(request.subResource) && request.subResource != '' ? 'other' : 'update'))";

/// The names of the ephemeral containers before the request, between commas.
const OLD_EPHEMERAL_NAMES: &str = "variables.scope == 'ephemeral' && has(oldObject.spec.ephemeralContainers) ? string(',' + oldObject.spec.ephemeralContainers.map(c, string(c.name)).join(',') + ',') : ','";

/// One entry per image the request may change: `n` its record key, `p` its JSON Pointer, `i`
/// the image, `v` `y` for an image volume. An update covers only the images it changes, a
/// container's at the same index and with the same name as before (a Pod's lists keep their
/// order; anything else is left to the webhook); the ephemeral containers subresource covers
/// the ephemeral containers it adds.
fn entries() -> String {
    let list = |field: &str, scopes: &str, changed: &str| {
        let c = format!("object.spec.{field}[i]");
        format!(
            "({scopes} && has(object.spec.{field}) ? lists.range(size(object.spec.{field})).filter(i, has({c}.image) && ({changed})).map(i, {{'n': string({c}.name), 'p': '/spec/{field}/' + string(i) + '/image', 'i': string({c}.image), 'v': ''}}) : [])"
        )
    };
    let changed = |field: &str| {
        let (c, o) = (
            format!("object.spec.{field}[i]"),
            format!("oldObject.spec.{field}"),
        );
        format!(
            "variables.scope == 'create' || (has({o}) && size({o}) > i && {o}[i].name == {c}.name && !(has({o}[i].image) && {o}[i].image == {c}.image))"
        )
    };
    let ephemeral_changed = {
        let (c, o) = (
            "object.spec.ephemeralContainers[i]",
            "oldObject.spec.ephemeralContainers",
        );
        format!(
            "variables.scope == 'create' || (has({o}) && size({o}) > i ? ({o}[i].name == {c}.name && !(has({o}[i].image) && {o}[i].image == {c}.image)) : !variables.oldEphemeralNames.contains(',' + {c}.name + ','))"
        )
    };
    let volumes = "(variables.scope == 'create' && has(object.spec.volumes) ? lists.range(size(object.spec.volumes)).filter(i, has(object.spec.volumes[i].image) && has(object.spec.volumes[i].image.reference)).map(i, {'n': 'volume/' + string(object.spec.volumes[i].name), 'p': '/spec/volumes/' + string(i) + '/image/reference', 'i': string(object.spec.volumes[i].image.reference), 'v': 'y'}) : [])";
    [
        list(
            "initContainers",
            "(variables.scope == 'create' || variables.scope == 'update')",
            &changed("initContainers"),
        ),
        list(
            "containers",
            "(variables.scope == 'create' || variables.scope == 'update')",
            &changed("containers"),
        ),
        list(
            "ephemeralContainers",
            "(variables.scope == 'create' || variables.scope == 'ephemeral')",
            &ephemeral_changed,
        ),
        volumes.to_owned(),
    ]
    .join("\n+ ")
}

/// Digest: everything from the first `@` (`dg`, with its `@`), and what is before it (`nt`).
const SPLIT: &str = "variables.entries.map(e, e.i.indexOf('@') < 0 ? {'nt': string(e.i), 'dg': ''} : {'nt': string(e.i.substring(0, e.i.indexOf('@'))), 'dg': string(e.i.substring(e.i.indexOf('@')))})";

/// Tag: from a `:` after the last `/`. `name` is the reference's name as written, `rest` the
/// tag and digest with their separators.
const NAMED: &str = "variables.split.map(x, x.nt.lastIndexOf(':') > x.nt.lastIndexOf('/') ? {'name': string(x.nt.substring(0, x.nt.lastIndexOf(':'))), 'rest': string(x.nt.substring(x.nt.lastIndexOf(':')) + x.dg), 'dg': string(x.dg)} : {'name': string(x.nt), 'rest': string(x.dg), 'dg': string(x.dg)})";

/// Host: the first component when it has a `.` or a `:` or is `localhost` (an upper-case
/// first component is a host to the engine, and never a mapped one, and as a path it fails the
/// lowercase grammar: either way the image is left alone), else Docker Hub.
const HOSTED: &str = "variables.named.map(x, x.name.indexOf('/') > 0 && (x.name.substring(0, x.name.indexOf('/')).contains('.') || x.name.substring(0, x.name.indexOf('/')).contains(':') || x.name.substring(0, x.name.indexOf('/')) == 'localhost') ? {'host': x.name.substring(0, x.name.indexOf('/')) == 'index.docker.io' ? 'docker.io' : string(x.name.substring(0, x.name.indexOf('/'))), 'path': string(x.name.substring(x.name.indexOf('/') + 1)), 'name': string(x.name), 'rest': string(x.rest), 'dg': string(x.dg)} : {'host': 'docker.io', 'path': string(x.name), 'name': string(x.name), 'rest': string(x.rest), 'dg': string(x.dg)})";

/// The route of each entry's host: `key` the host when the policy rewrites it (else `''`),
/// `norm` the normalised name the exclusion patterns see, `repo` the repository path with
/// Docker Hub's `library/`, `prefix` and `up` the route's prefixes.
const MAPPED: &str = "variables.hosted.map(h, h.host in variables.routes ? {'key': string(h.host), 'norm': string(h.host + '/' + (h.host == 'docker.io' && !h.path.contains('/') ? 'library/' : '') + h.path), 'repo': string((variables.routes[h.host][2] == 'y' && !h.path.contains('/') ? 'library/' : '') + h.path), 'prefix': string(variables.routes[h.host][0]), 'up': string(variables.routes[h.host][1])} : {'key': '', 'norm': '', 'repo': '', 'prefix': '', 'up': ''})";

/// The new entries of the record of originals, in the Pod's order, as JSON object members;
/// names the record already holds keep what it says, as in the webhook.
const RECORDED: &str = "lists.range(size(variables.entries)).filter(j, variables.rewritten[j] != '' && !variables.record.contains('\"' + variables.entries[j].n + '\":')).map(j, string('\"' + variables.entries[j].n + '\":\"' + variables.entries[j].i + '\"')).join(',')";

/// The record after this request: the new members appended to what is there (only read when
/// something is rewritten, which needs a record the policy can extend).
const NEW_RECORD: &str = "variables.recordSet && variables.scope != 'ephemeral' && variables.recordOk && variables.record != '{}' ? string(variables.record.substring(0, size(variables.record) - 1) + ',' + variables.recorded + '}') : string('{' + variables.recorded + '}')";
