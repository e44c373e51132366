//! Durations in the file, written as humans write them (`30s`, `5m`, `24h`): the serde reader every setting with a duration uses.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// Reads an optional duration written as `30s`, `5m`, `2h`.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    s.map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
        .transpose()
}
