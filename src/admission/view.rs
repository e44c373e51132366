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
    pub(super) volumes: Option<Vec<VolumeView<'a>>>,
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

/// A pod volume: only its name and, for an image volume, the image.
#[derive(Debug, PartialEq, Deserialize)]
pub(super) struct VolumeView<'a> {
    #[serde(borrow)]
    pub(super) name: Cow<'a, str>,
    #[serde(borrow, default)]
    pub(super) image: Option<ImageVolumeView<'a>>,
}

/// `volumes[].image`: the image mounted.
#[derive(Debug, Default, PartialEq, Deserialize)]
pub(super) struct ImageVolumeView<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub(super) reference: Option<Cow<'a, str>>,
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
    /// The name and image of every entry of one list; an image volume's image is its reference,
    /// and a volume of another type has none.
    pub(super) fn images(
        &self,
        kind: ContainerKind,
    ) -> impl Iterator<Item = (&Cow<'a, str>, Option<&Cow<'a, str>>)> {
        let (containers, volumes) = match kind {
            ContainerKind::Init => (self.init_containers.as_deref(), None),
            ContainerKind::Main => (self.containers.as_deref(), None),
            ContainerKind::Ephemeral => (self.ephemeral_containers.as_deref(), None),
            ContainerKind::ImageVolume => (None, self.volumes.as_deref()),
        };
        let containers = containers
            .unwrap_or_default()
            .iter()
            .map(|c| (&c.name, c.image.as_ref()));
        let volumes = volumes.unwrap_or_default().iter().map(|v| {
            let image = v.image.as_ref().and_then(|i| i.reference.as_ref());
            (&v.name, image)
        });
        containers.chain(volumes)
    }

    /// The number of entries of one list.
    pub(super) fn len(&self, kind: ContainerKind) -> usize {
        match kind {
            ContainerKind::Init => self.init_containers.as_ref().map_or(0, Vec::len),
            ContainerKind::Main => self.containers.as_ref().map_or(0, Vec::len),
            ContainerKind::Ephemeral => self.ephemeral_containers.as_ref().map_or(0, Vec::len),
            ContainerKind::ImageVolume => self.volumes.as_ref().map_or(0, Vec::len),
        }
    }

    /// Every image of the given lists, with its list, index and entry name.
    pub(super) fn all_images<'s>(
        &'s self,
        kinds: &'s [ContainerKind],
    ) -> impl Iterator<
        Item = (
            ContainerKind,
            usize,
            &'s Cow<'a, str>,
            Option<&'s Cow<'a, str>>,
        ),
    > + 's {
        kinds.iter().flat_map(move |&kind| {
            self.images(kind)
                .enumerate()
                .map(move |(i, (name, image))| (kind, i, name, image))
        })
    }
}
