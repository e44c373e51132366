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

use std::fmt::Write as _;

use crate::admission::{FALLBACK_ANNOTATION, ORIGINAL_IMAGES_ANNOTATION, SKIP_ANNOTATION};
use crate::config::{DigestPolicy, LabelMatch};
use crate::reference::{DOCKER_HUB, NAME_MAX_LEN};

/// Docker Hub's legacy name, which the engine reads as `docker.io`.
const LEGACY_DOCKER_HUB: &str = "index.docker.io";

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
        let mut out = vec![
            var("scope", SCOPE.to_owned()),
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
                format!(
                    "variables.fallbackSet && variables.fallback.matches({})",
                    quote(FALLBACK)
                ),
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
            var("cached", self.cached_literal()),
            var("oldEphemeralNames", OLD_EPHEMERAL_NAMES.to_owned()),
        ];
        for list in &LISTS {
            out.push(var(list.variable, self.list_rewrites(list)));
        }
        out.push(var("recorded", recorded()));
        out.push(var("newRecord", NEW_RECORD.to_owned()));
        out
    }

    fn cached_literal(&self) -> String {
        if self.digests != DigestPolicy::WhenCached || self.cached.is_empty() {
            return "{'': true}".to_owned();
        }
        map_literal(self.cached.iter().map(|k| (k.as_str(), "true".to_owned())))
    }

    /// The grammar of what follows a mapped host (`implicit`: of a whole reference on Docker
    /// Hub's implicit host): the lowercase path, a tag, and a `sha256` digest unless digests are
    /// skipped.
    fn grammar(&self, implicit: bool) -> String {
        let digest = match self.digests {
            DigestPolicy::Skip => String::new(),
            DigestPolicy::Rewrite | DigestPolicy::WhenCached => format!("(?:@{DIGEST})?"),
        };
        let path = if implicit {
            format!("(?:{UNDOTTED}(?:/{COMPONENT})+|{COMPONENT})")
        } else {
            format!("{COMPONENT}(?:/{COMPONENT})*")
        };
        format!("^{path}(?::{TAG})?{digest}$")
    }

    /// The rewrite of the image `x` (a CEL expression), or `''` to leave it alone.
    fn rewrite(&self, x: &str, volume: bool, name: &str) -> String {
        let registry = &self.registry_host;
        // The host decides by a prefix of the reference: one `startsWith` per mapped name,
        // with the lengths known here, and Docker Hub's implicit host last.
        let chain = |each: &dyn Fn(&Route, &str) -> String| -> String {
            let mut out = String::new();
            for r in &self.routes {
                let _ = write!(
                    out,
                    "{x}.startsWith({}) ? {} : ",
                    quote(&format!("{}/", r.host)),
                    each(r, &format!("{x}.substring({})", r.host.len() + 1))
                );
            }
            match self.routes.iter().find(|r| r.host == DOCKER_HUB) {
                Some(hub) => out.push_str(&each(hub, x)),
                None => out.push_str("''"),
            }
            format!("({out})")
        };
        let library = |r: &Route, rest: &str| {
            if r.docker_hub {
                format!("({rest}.contains('/') ? '' : 'library/')")
            } else {
                "''".to_owned()
            }
        };
        let (explicit_re, implicit_re) = (quote(&self.grammar(false)), quote(&self.grammar(true)));
        // Where the name ends in a valid reference's rest: a tag's `:` comes before any `@`,
        // a digest's after.
        let name_end = |r: &str| {
            format!(
                "({r}.indexOf('@') >= 0 && ({r}.indexOf(':') < 0 || {r}.indexOf('@') < {r}.indexOf(':')) ? {r}.indexOf('@') : ({r}.indexOf(':') >= 0 ? {r}.indexOf(':') : size({r})))"
            )
        };
        let patterns: Vec<String> = self
            .exclude_images
            .iter()
            .map(|g| quote(&glob_regex(g)))
            .collect();
        let out = chain(&|r, rest| {
            let repo = format!("{} + {rest}", library(r, rest));
            let head = quote(&format!("{registry}/{}", r.prefix));
            let built = if r.upstream.is_empty() {
                format!("{head} + {repo}")
            } else {
                format!(
                    "(({repo}).startsWith({}) ? {head} + ({repo}).substring({}) : '')",
                    quote(&r.upstream),
                    r.upstream.len()
                )
            };
            // What follows the host must be the grammar's path, tag and digest; without a
            // host, a first component before a `/` has no `.` (else it is a host).
            let grammar = if rest == x {
                &implicit_re
            } else {
                &explicit_re
            };
            let mut valid = format!("{rest}.matches({grammar})");
            if !patterns.is_empty() {
                // The names the patterns see: the normalised registry (docker.io for
                // index.docker.io, aliases as written), `library/` for Docker Hub's own.
                let host = if r.host == LEGACY_DOCKER_HUB {
                    DOCKER_HUB
                } else {
                    r.host.as_str()
                };
                let official = if host == DOCKER_HUB {
                    format!("({rest}.contains('/') ? '' : 'library/')")
                } else {
                    "''".to_owned()
                };
                let host = quote(&format!("{host}/"));
                let full = format!("{host} + {official} + {rest}");
                let name = format!(
                    "{host} + {official} + {rest}.substring(0, {})",
                    name_end(rest)
                );
                let tests: Vec<String> = patterns
                    .iter()
                    .map(|re| format!("n.matches({re})"))
                    .collect();
                let _ = write!(
                    valid,
                    " && ![{full}, {name}].exists(n, {})",
                    tests.join(" || ")
                );
            }
            format!("({valid} ? {built} : '')")
        });
        let mut checks = vec![
            "variables.recordOk".to_owned(),
            format!("!{x}.startsWith('localhost/')"),
            format!("!(size({x}) == 64 && {x}.matches('^[0-9a-f]+$'))"),
            format!("size({x}) <= {NAME_MAX_LEN}"),
        ];
        if !volume {
            checks.push(format!(
                "(!variables.fallbackSet || (variables.fallbackListed && !variables.fallback.contains('\"' + {name} + '\"')))"
            ));
        }
        if self.digests == DigestPolicy::WhenCached && self.cached.is_empty() {
            checks.push(format!("!{x}.contains('@')"));
        }
        // The rewritten name is built once; its length, and under `whenCached` its digest, are
        // checked on it.
        let head = registry.len() + 1;
        let mut keep = format!("size(o) <= {NAME_MAX_LEN}");
        if self.digests == DigestPolicy::WhenCached && !self.cached.is_empty() {
            let r = format!("o.substring({head})");
            let _ = write!(
                keep,
                " && (!o.contains('@') || {r}.substring(0, {}) + {r}.substring({r}.indexOf('@')) in variables.cached)",
                name_end(&r)
            );
        }
        format!(
            "{}\n  ? [{out}].map(o, o != '' && {keep} ? o : '')[0]\n  : ''",
            checks.join(" &&\n  ")
        )
    }

    /// One list's rewrites, index by index, `''` where the image stays.
    fn list_rewrites(&self, list: &List) -> String {
        let field = list.field;
        let item = format!("object.spec.{field}[i]");
        let old = format!("oldObject.spec.{field}");
        let (image, name) = if list.volume {
            (
                format!("{item}.image.reference"),
                format!("'volume/' + string({item}.name)"),
            )
        } else {
            (format!("{item}.image"), format!("string({item}.name)"))
        };
        let present = if list.volume {
            format!("has({item}.image) && has({item}.image.reference)")
        } else {
            format!("has({item}.image)")
        };
        let same_as_before = if list.volume {
            "false".to_owned()
        } else {
            format!(
                "{old}[i].name == {item}.name && has({old}[i].image) && {old}[i].image == {item}.image"
            )
        };
        let changed = match field {
            "ephemeralContainers" => format!(
                "(has({old}) && size({old}) > i ? ({old}[i].name == {item}.name && !({same_as_before})) : !variables.oldEphemeralNames.contains(',' + {item}.name + ','))"
            ),
            _ => format!(
                "(has({old}) && size({old}) > i && {old}[i].name == {item}.name && !({same_as_before}))"
            ),
        };
        let x = format!("string({image})");
        format!(
            "({scopes}) && has(object.spec.{field}) ? lists.range(size(object.spec.{field})).map(i,\n  {present} && (variables.scope == 'create' || {changed}) &&\n  {}) : []",
            self.rewrite(&x, list.volume, &name),
            scopes = list.scopes,
        )
    }

    fn patch() -> String {
        let mut replaces = Vec::new();
        for list in &LISTS {
            let (v, field) = (list.variable, list.field);
            let path = if list.volume {
                format!("'/spec/{field}/' + string(i) + '/image/reference'")
            } else {
                format!("'/spec/{field}/' + string(i) + '/image'")
            };
            replaces.push(format!(
                "lists.range(size(variables.{v})).filter(i, variables.{v}[i] != '').map(i, {})",
                json_patch("replace", &path, &format!("variables.{v}[i]"))
            ));
        }
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
            "{}\n\
             + (variables.scope == 'ephemeral' || variables.recorded == '' ? [] : [\n\
             has(object.metadata) ? (has(object.metadata.annotations)\n  \
             ? {add_one}\n  \
             : {add_map})\n\
             : {add_meta}])",
            replaces.join("\n+ ")
        )
    }
}

/// One image list of a Pod: its field, the variable of its rewrites, the scopes it is
/// rewritten in, and whether its images are volumes.
struct List {
    field: &'static str,
    variable: &'static str,
    scopes: &'static str,
    volume: bool,
}

/// The lists in the webhook's order, which is the record's order too.
const LISTS: [List; 4] = [
    List {
        field: "initContainers",
        variable: "init",
        scopes: "variables.scope == 'create' || variables.scope == 'update'",
        volume: false,
    },
    List {
        field: "containers",
        variable: "main",
        scopes: "variables.scope == 'create' || variables.scope == 'update'",
        volume: false,
    },
    List {
        field: "ephemeralContainers",
        variable: "ephemeral",
        scopes: "variables.scope == 'create' || variables.scope == 'ephemeral'",
        volume: false,
    },
    List {
        field: "volumes",
        variable: "volumes",
        scopes: "variables.scope == 'create'",
        volume: true,
    },
];

/// A first path component that Docker Hub's implicit host allows before a `/`: without a `.`
/// (with one, the engine reads it as a registry host).
const UNDOTTED: &str = "[a-z0-9]+(?:(?:_|__|-+)[a-z0-9]+)*";

/// The new members of the record of originals, in the Pod's order, as JSON object members;
/// names the record already holds keep what it says, as in the webhook.
fn recorded() -> String {
    let parts: Vec<String> = LISTS
        .iter()
        .map(|list| {
            let (v, field) = (list.variable, list.field);
            let (name, image) = if list.volume {
                (
                    format!("'volume/' + string(object.spec.{field}[i].name)"),
                    format!("string(object.spec.{field}[i].image.reference)"),
                )
            } else {
                (
                    format!("string(object.spec.{field}[i].name)"),
                    format!("string(object.spec.{field}[i].image)"),
                )
            };
            format!(
                "lists.range(size(variables.{v})).filter(i, variables.{v}[i] != '' && !variables.record.contains('\"' + {name} + '\":')).map(i, '\"' + {name} + '\":\"' + {image} + '\"')"
            )
        })
        .collect();
    format!("({}).join(',')", parts.join("\n+ "))
}

/// `create`, `update` (the Pod itself) or `ephemeral` (the ephemeral containers subresource).
const SCOPE: &str = "request.operation == 'CREATE' ? 'create' : (has(request.subResource) && request.subResource == 'ephemeralcontainers' ? 'ephemeral' : (has(request.subResource) && request.subResource != '' ? 'other' : 'update'))";

/// The names of the ephemeral containers before the request, between commas.
const OLD_EPHEMERAL_NAMES: &str = "variables.scope == 'ephemeral' && has(oldObject.spec.ephemeralContainers) ? string(',' + oldObject.spec.ephemeralContainers.map(c, string(c.name)).join(',') + ',') : ','";

/// The record after this request: the new members appended to what is there (only read when
/// something is rewritten, which needs a record the policy can extend).
const NEW_RECORD: &str = "variables.recordSet && variables.scope != 'ephemeral' && variables.recordOk && variables.record != '{}' ? string(variables.record.substring(0, size(variables.record) - 1) + ',' + variables.recorded + '}') : string('{' + variables.recorded + '}')";
