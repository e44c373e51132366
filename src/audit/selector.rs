//! Kubernetes label selectors in their text form (`a=b,c!=d,e in (f,g),!h`), parsed and matched.
//!
//! The audit reads namespaces one at a time and needs to tell, without the API server's help,
//! whether a namespace is opted in, and which labels opted it in.

use std::collections::BTreeMap;
use std::fmt;

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `key`: the label is present.
    Exists(String),
    /// `!key`: the label is absent.
    NotExists(String),
    /// `key=value`, `key==value`, `key in (a,b)`: the label has one of the values.
    In(String, Vec<String>),
    /// `key!=value`, `key notin (a,b)`: the label is absent or has none of the values.
    NotIn(String, Vec<String>),
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Self::Exists(k) => labels.contains_key(k),
            Self::NotExists(k) => !labels.contains_key(k),
            Self::In(k, values) => labels.get(k).is_some_and(|v| values.contains(v)),
            Self::NotIn(k, values) => labels.get(k).is_none_or(|v| !values.contains(v)),
        }
    }
}

/// A parsed label selector; the empty selector selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

/// A selector that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorError(String);

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SelectorError {}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 317
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
}

fn valid_value(value: &str) -> bool {
    value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Splits on commas outside parentheses.
fn terms(text: &str) -> Result<Vec<&str>, SelectorError> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| SelectorError(format!("unbalanced ')' in {text:?}")))?;
            }
            ',' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(SelectorError(format!("unbalanced '(' in {text:?}")));
    }
    out.push(&text[start..]);
    Ok(out)
}

fn set_of(rest: &str, term: &str) -> Result<Vec<String>, SelectorError> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| SelectorError(format!("expected a list in parentheses in {term:?}")))?;
    let values: Vec<String> = inner.split(',').map(|v| v.trim().to_owned()).collect();
    if let Some(bad) = values.iter().find(|v| !valid_value(v)) {
        return Err(SelectorError(format!(
            "invalid label value {bad:?} in {term:?}"
        )));
    }
    Ok(values)
}

fn requirement(term: &str) -> Result<Requirement, SelectorError> {
    let t = term.trim();
    let checked_key = |k: &str| {
        let k = k.trim();
        if valid_key(k) {
            Ok(k.to_owned())
        } else {
            Err(SelectorError(format!(
                "invalid label key {k:?} in {term:?}"
            )))
        }
    };
    let checked_value = |v: &str| {
        let v = v.trim();
        if valid_value(v) {
            Ok(v.to_owned())
        } else {
            Err(SelectorError(format!(
                "invalid label value {v:?} in {term:?}"
            )))
        }
    };
    if let Some((k, v)) = t.split_once("!=") {
        return Ok(Requirement::NotIn(checked_key(k)?, vec![checked_value(v)?]));
    }
    if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
        return Ok(Requirement::In(checked_key(k)?, vec![checked_value(v)?]));
    }
    if let Some((k, rest)) = t.split_once(" notin ") {
        return Ok(Requirement::NotIn(checked_key(k)?, set_of(rest, term)?));
    }
    if let Some((k, rest)) = t.split_once(" in ") {
        return Ok(Requirement::In(checked_key(k)?, set_of(rest, term)?));
    }
    if let Some(k) = t.strip_prefix('!') {
        return Ok(Requirement::NotExists(checked_key(k)?));
    }
    if t.contains(['<', '>', '(', ')', ' ']) {
        return Err(SelectorError(format!(
            "unsupported label selector term {term:?}"
        )));
    }
    Ok(Requirement::Exists(checked_key(t)?))
}

impl Selector {
    /// Parses a selector as `kubectl -l` takes it.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let requirements = terms(text)?
            .into_iter()
            .map(requirement)
            .collect::<Result<_, _>>()?;
        Ok(Self { requirements })
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// The labels whose presence selects an object: setting them is what opts it in.
    pub fn selecting_keys(&self) -> impl Iterator<Item = &str> {
        self.requirements.iter().filter_map(|r| match r {
            Requirement::Exists(k) | Requirement::In(k, _) => Some(k.as_str()),
            Requirement::NotExists(_) | Requirement::NotIn(..) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_default_selector_matches_the_opt_in_label_only() {
        let s = Selector::parse("pullthrough.dev/enabled=true").unwrap();
        assert!(s.matches(&labels(&[("pullthrough.dev/enabled", "true")])));
        assert!(!s.matches(&labels(&[("pullthrough.dev/enabled", "false")])));
        assert!(!s.matches(&labels(&[])));
        assert_eq!(
            s.selecting_keys().collect::<Vec<_>>(),
            ["pullthrough.dev/enabled"]
        );
    }

    #[test]
    fn every_operator_of_kubectl_is_read() {
        let s = Selector::parse("team in (a, b),tier!=db,env==prod,mesh,!legacy,zone notin (x)")
            .unwrap();
        let ok = labels(&[("team", "b"), ("env", "prod"), ("mesh", ""), ("zone", "y")]);
        assert!(s.matches(&ok));
        let mut db = ok.clone();
        db.insert("tier".into(), "db".into());
        assert!(!s.matches(&db));
        let mut legacy = ok.clone();
        legacy.insert("legacy".into(), "1".into());
        assert!(!s.matches(&legacy));
        let mut other_team = ok;
        other_team.insert("team".into(), "c".into());
        assert!(!s.matches(&other_team));
        assert_eq!(
            s.selecting_keys().collect::<Vec<_>>(),
            ["team", "env", "mesh"]
        );
    }

    #[test]
    fn an_empty_selector_selects_everything() {
        assert!(Selector::parse(" ").unwrap().matches(&labels(&[])));
    }

    #[test]
    fn bad_selectors_are_refused_with_the_term() {
        for bad in ["a in (b", "a)", "a=b c", "a in b", "=x", "a>1", "a=b=c"] {
            let err = Selector::parse(bad).unwrap_err();
            assert!(!err.to_string().is_empty(), "{bad}");
        }
    }
}
