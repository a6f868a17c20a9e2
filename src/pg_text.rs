//! Reading shape columns (Postgres text) into typed rows: `#[serde(with = "pg_text::int")]` and
//! `pg_text::boolean` for the columns JSON does not already read from a string. Uuids, dates,
//! decimals and text read from their strings as they are.
use serde::de::{Deserializer, Error};
use serde::Deserialize;
use std::str::FromStr;

/// An integer column (`"42"`), or a JSON number.
pub mod int {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>, N>(d: D) -> Result<N, D::Error>
    where
        N: FromStr + Deserialize<'de>,
    {
        match Text::<N>::deserialize(d)? {
            Text::Plain(n) => Ok(n),
            Text::Text(s) => s
                .parse()
                .map_err(|_| D::Error::custom(format!("not an integer: {s:?}"))),
        }
    }
}

/// A nullable integer column.
pub mod opt_int {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>, N>(d: D) -> Result<Option<N>, D::Error>
    where
        N: FromStr + Deserialize<'de>,
    {
        match Option::<Text<N>>::deserialize(d)? {
            None => Ok(None),
            Some(Text::Plain(n)) => Ok(Some(n)),
            Some(Text::Text(s)) => s
                .parse()
                .map(Some)
                .map_err(|_| D::Error::custom(format!("not an integer: {s:?}"))),
        }
    }
}

/// A boolean column (`"t"`/`"f"`, as Postgres writes it), or a JSON boolean.
pub mod boolean {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        match Text::<bool>::deserialize(d)? {
            Text::Plain(b) => Ok(b),
            Text::Text(s) => match s.as_str() {
                "t" | "true" => Ok(true),
                "f" | "false" => Ok(false),
                _ => Err(D::Error::custom(format!("not a boolean: {s:?}"))),
            },
        }
    }
}

/// A nullable boolean column, or one a shape may leave out (with `#[serde(default)]`).
pub mod opt_boolean {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        match Option::<Text<bool>>::deserialize(d)? {
            None => Ok(None),
            Some(Text::Plain(b)) => Ok(Some(b)),
            Some(Text::Text(s)) => match s.as_str() {
                "t" | "true" => Ok(Some(true)),
                "f" | "false" => Ok(Some(false)),
                _ => Err(D::Error::custom(format!("not a boolean: {s:?}"))),
            },
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Text<T> {
    Plain(T),
    Text(String),
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
                bedrooms: None
            }
        );
        let row: Row =
            serde_json::from_str(r#"{"version":8,"is_active":false,"bedrooms":"3"}"#).expect("row");
        assert_eq!(row.bedrooms, Some(3));
        assert!(serde_json::from_str::<Row>(r#"{"version":"x","is_active":"t"}"#).is_err());
        assert!(serde_json::from_str::<Row>(r#"{"version":"1","is_active":"yes"}"#).is_err());
    }
}
