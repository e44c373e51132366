//! The request read into narrow views borrowed from the body: only what the rewrite needs.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::kind::ContainerKind;

/// A string of the request, borrowed from the body unless it holds escapes.
///
/// serde borrows a `Cow<str>` field only when the field is exactly that type: inside an
/// `Option` or a map it copies every string into a new `String`. This type borrows wherever it
/// sits, and reads as a `String` does otherwise (same accepted input, same errors).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Text<'a>(pub(super) Cow<'a, str>);

impl std::borrow::Borrow<str> for Text<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a str>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = Text<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }

            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                match std::str::from_utf8(v) {
                    Ok(s) => Ok(Text(Cow::Owned(s.to_owned()))),
                    Err(_) => Err(E::invalid_value(serde::de::Unexpected::Bytes(v), &self)),
                }
            }
        }
        deserializer.deserialize_string(Visitor(std::marker::PhantomData))
    }
}

/// An optional string, borrowed from the body where it can be (see [`Text`]).
pub(super) fn borrowed<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Cow<'de, str>>, D::Error> {
    Ok(Option::<Text<'de>>::deserialize(deserializer)?.map(|t| t.0))
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ReviewView<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub(super) api_version: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub(super) kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) request: Option<RequestView<'a>>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RequestView<'a> {
    #[serde(borrow)]
    pub(super) uid: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) kind: GroupVersionKind<'a>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub(super) sub_resource: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub(super) name: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub(super) namespace: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) operation: Cow<'a, str>,
    #[serde(default)]
    pub(super) dry_run: Option<bool>,
    #[serde(borrow, default)]
    pub(super) object: Option<ObjectView<'a>>,
    #[serde(borrow, default)]
    pub(super) old_object: Option<ObjectView<'a>>,
}

#[derive(Debug, PartialEq, Deserialize)]
pub(super) struct GroupVersionKind<'a> {
    #[serde(borrow, default)]
    pub(super) group: Cow<'a, str>,
    #[serde(borrow, default)]
    pub(super) version: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) kind: Cow<'a, str>,
}

/// The parts of a Kubernetes object the rewrite reads: metadata and the pod spec or template.
#[derive(Debug, Default, PartialEq, Deserialize)]
pub struct ObjectView<'a> {
    #[serde(borrow, default)]
    pub(super) metadata: Option<MetaView<'a>>,
    #[serde(borrow, default)]
    pub(super) spec: Option<SpecView<'a>>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct MetaView<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub(super) name: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub(super) generate_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) labels: Option<BTreeMap<Text<'a>, Text<'a>>>,
    #[serde(borrow, default)]
    pub(super) annotations: Option<BTreeMap<Text<'a>, Text<'a>>>,
    #[serde(borrow, default)]
    pub(super) owner_references: Option<Vec<OwnerView<'a>>>,
}

#[derive(Debug, PartialEq, Deserialize)]
pub(super) struct OwnerView<'a> {
    #[serde(borrow)]
    pub(super) kind: Cow<'a, str>,
}

/// A pod spec, or a workload spec holding a pod template (or a job template).
#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SpecView<'a> {
    #[serde(borrow, default)]
    pub(super) containers: Option<Vec<ContainerView<'a>>>,
    #[serde(borrow, default)]
    pub(super) init_containers: Option<Vec<ContainerView<'a>>>,
    #[serde(borrow, default)]
    pub(super) ephemeral_containers: Option<Vec<ContainerView<'a>>>,
    #[serde(borrow, default)]
    pub(super) template: Option<Box<ObjectView<'a>>>,
    #[serde(borrow, default)]
    pub(super) job_template: Option<Box<ObjectView<'a>>>,
}

#[derive(Debug, PartialEq, Deserialize)]
pub(super) struct ContainerView<'a> {
    #[serde(borrow)]
    pub(super) name: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub(super) image: Option<Cow<'a, str>>,
}

impl<'a> ObjectView<'a> {
    /// Reads the view out of a parsed document (used by `preview`).
    pub fn from_value(value: &'a Value) -> Result<Self, serde_json::Error> {
        Self::deserialize(value)
    }

    pub(super) fn spec(&self) -> Option<&SpecView<'a>> {
        self.spec.as_ref()
    }

    pub(super) fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata
            .as_ref()?
            .annotations
            .as_ref()?
            .get(key)
            .map(|v| &*v.0)
    }
}

impl<'a> SpecView<'a> {
    pub(super) fn list(&self, kind: ContainerKind) -> &[ContainerView<'a>] {
        let list = match kind {
            ContainerKind::Init => &self.init_containers,
            ContainerKind::Main => &self.containers,
            ContainerKind::Ephemeral => &self.ephemeral_containers,
        };
        list.as_deref().unwrap_or_default()
    }

    /// Every container of the given kinds, with its list and index.
    pub(super) fn containers<'s>(
        &'s self,
        kinds: &'s [ContainerKind],
    ) -> impl Iterator<Item = (ContainerKind, usize, &'s ContainerView<'a>)> + 's {
        kinds.iter().flat_map(move |&kind| {
            self.list(kind)
                .iter()
                .enumerate()
                .map(move |(i, c)| (kind, i, c))
        })
    }
}
