//! Reading shape columns (Postgres text) into typed rows: `#[serde(with = "pg_text::int")]`,
//! `pg_text::boolean` and their nullable forms for the columns JSON does not already read from a
//! string. Uuids, dates, decimals and text read from their strings as they are. Each reads a
//! string and parses it (no untagged enums: serde buffers those, at a cost in code size the
//! browser pays).
use serde::de::{Deserializer, Error};
use serde::Deserialize;
use std::str::FromStr;

fn parse<'de, D: Deserializer<'de>, T: FromStr>(text: &str, what: &str) -> Result<T, D::Error> {
    text.parse()
        .map_err(|_| D::Error::custom(format!("not {what}: {text:?}")))
}

fn truth<'de, D: Deserializer<'de>>(text: &str) -> Result<bool, D::Error> {
    match text {
        "t" | "true" => Ok(true),
        "f" | "false" => Ok(false),
        _ => Err(D::Error::custom(format!("not a boolean: {text:?}"))),
    }
}

/// An integer column (`"42"`).
pub mod int {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>, N: FromStr>(d: D) -> Result<N, D::Error> {
        parse::<D, N>(&String::deserialize(d)?, "an integer")
    }
}

/// A nullable integer column.
pub mod opt_int {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>, N: FromStr>(d: D) -> Result<Option<N>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| parse::<D, N>(&t, "an integer"))
            .transpose()
    }
}

/// A boolean column (`"t"`/`"f"`, as Postgres writes it).
pub mod boolean {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        truth::<D>(&String::deserialize(d)?)
    }
}

/// A nullable boolean column, or one a shape may leave out (with `#[serde(default)]`).
pub mod opt_boolean {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| truth::<D>(&t))
            .transpose()
    }
}

/// A `jsonb` column (its JSON, as text), read as `T`.
pub mod json {
    use super::*;
    use serde::de::DeserializeOwned;

    pub fn deserialize<'de, D: Deserializer<'de>, T: DeserializeOwned>(
        d: D,
    ) -> Result<T, D::Error> {
        let text = String::deserialize(d)?;
        serde_json::from_str(&text)
            .map_err(|e| D::Error::custom(format!("not the JSON expected: {e}")))
    }
}

/// A number inside a JSON document, written as a JSON number or as a string (`2`, `"2.50"`).
pub mod number {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>, N: FromStr>(d: D) -> Result<N, D::Error> {
        let text = match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            other => return Err(D::Error::custom(format!("not a number: {other}"))),
        };
        parse::<D, N>(&text, "a number")
    }
}

/// A `timestamptz` as Postgres writes it (`2026-12-01 10:00:00.5+00`), or in RFC 3339.
pub fn timestamp(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z")
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(text))
        .ok()
        .map(|d| d.with_timezone(&chrono::Utc))
}

/// A nullable `timestamptz` column (see [`timestamp`]).
pub mod opt_timestamp {
    use super::*;
    use chrono::{DateTime, Utc};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| {
                timestamp(&t).ok_or_else(|| D::Error::custom(format!("not a timestamp: {t:?}")))
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Row {
        #[serde(with = "super::int")]
        version: i32,
        #[serde(with = "super::boolean")]
        is_active: bool,
        #[serde(default, with = "super::opt_int")]
        bedrooms: Option<i16>,
        #[serde(default, with = "super::opt_boolean")]
        is_core: Option<bool>,
    }

    #[test]
    fn postgres_text_reads_as_numbers_and_booleans() {
        let row: Row = serde_json::from_str(r#"{"version":"7","is_active":"t","bedrooms":null}"#)
            .expect("row");
        assert_eq!(
            row,
            Row {
                version: 7,
                is_active: true,
                bedrooms: None,
                is_core: None,
            }
        );
        let row: Row =
            serde_json::from_str(r#"{"version":"8","is_active":"f","bedrooms":"3","is_core":"f"}"#)
                .expect("row");
        assert_eq!((row.bedrooms, row.is_core), (Some(3), Some(false)));
        assert!(serde_json::from_str::<Row>(r#"{"version":"x","is_active":"t"}"#).is_err());
        assert!(serde_json::from_str::<Row>(r#"{"version":"1","is_active":"yes"}"#).is_err());
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct Stamped {
        #[serde(default, with = "super::opt_timestamp")]
        at: Option<chrono::DateTime<chrono::Utc>>,
    }

    #[test]
    fn timestamps_read_as_postgres_writes_them() {
        let read = |json: &str| serde_json::from_str::<Stamped>(json).map(|s| s.at);
        let at = read(r#"{"at":"2026-12-01 10:00:00.25+00"}"#).expect("at");
        assert_eq!(
            at.map(|a| a.to_rfc3339()).as_deref(),
            Some("2026-12-01T10:00:00.250+00:00")
        );
        let at = read(r#"{"at":"2026-12-01 11:30:00+01:30"}"#).expect("offset");
        assert_eq!(
            at.map(|a| a.to_rfc3339()).as_deref(),
            Some("2026-12-01T10:00:00+00:00")
        );
        assert_eq!(read(r#"{"at":null}"#).expect("null"), None);
        assert_eq!(read("{}").expect("absent"), None);
        assert!(read(r#"{"at":"yesterday"}"#).is_err());
    }
}
