//! The Electric v1 HTTP shape protocol, typed: what the shape server writes and every follower
//! (the browser, the server's tests and benchmarks) reads. Names and formats live here once; no
//! I/O. See `shared/docs/shape-protocol.md`.
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Response header names.
pub mod header {
    pub const HANDLE: &str = "electric-handle";
    pub const OFFSET: &str = "electric-offset";
    pub const SCHEMA: &str = "electric-schema";
    pub const CURSOR: &str = "electric-cursor";
    pub const UP_TO_DATE: &str = "electric-up-to-date";
}

/// Query parameter names.
pub mod param {
    pub const TABLE: &str = "table";
    pub const WHERE: &str = "where";
    pub const COLUMNS: &str = "columns";
    pub const REPLICA: &str = "replica";
    pub const OFFSET: &str = "offset";
    pub const HANDLE: &str = "handle";
    pub const LIVE: &str = "live";
    pub const LIVE_SSE: &str = "live_sse";
    pub const EXPERIMENTAL_LIVE_SSE: &str = "experimental_live_sse";
    pub const CURSOR: &str = "cursor";
    pub const LOG: &str = "log";
    pub const EXPIRED_HANDLE: &str = "expired_handle";
    pub const CACHE_BUSTER: &str = "cache-buster";
    /// The parameters of a position in a stream; a browser may send only these.
    pub const PROTOCOL: [&str; 9] = [
        OFFSET,
        HANDLE,
        LIVE,
        LIVE_SSE,
        EXPERIMENTAL_LIVE_SSE,
        CURSOR,
        LOG,
        EXPIRED_HANDLE,
        CACHE_BUSTER,
    ];
}

/// A position in a shape's log, `{lsn}_{op}`: the commit LSN of a transaction and the index of a
/// change in it. `0_inf` sits after a snapshot, before the first change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset {
    pub lsn: u64,
    pub op: u64,
}

impl Offset {
    pub const BEFORE_ALL: Offset = Offset {
        lsn: 0,
        op: u64::MAX,
    };

    pub fn parse(s: &str) -> Option<Offset> {
        let (lsn, op) = s.split_once('_')?;
        let lsn = lsn.parse().ok()?;
        let op = if op == "inf" {
            u64::MAX
        } else {
            op.parse().ok()?
        };
        Some(Offset { lsn, op })
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.op == u64::MAX {
            write!(f, "{}_inf", self.lsn)
        } else {
            write!(f, "{}_{}", self.lsn, self.op)
        }
    }
}

/// Where a request starts: `-1` (the snapshot, then the log), `now` (the head, no rows) or after
/// a position the client holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestOffset {
    Snapshot,
    Now,
    After(Offset),
}

#[derive(Debug, PartialEq, Eq)]
pub struct BadOffset;

impl fmt::Display for BadOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not -1, now or {lsn}_{op}")
    }
}

impl FromStr for RequestOffset {
    type Err = BadOffset;
    fn from_str(s: &str) -> Result<Self, BadOffset> {
        match s {
            "-1" => Ok(RequestOffset::Snapshot),
            "now" => Ok(RequestOffset::Now),
            other => Offset::parse(other)
                .map(RequestOffset::After)
                .ok_or(BadOffset),
        }
    }
}

impl fmt::Display for RequestOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestOffset::Snapshot => f.write_str("-1"),
            RequestOffset::Now => f.write_str("now"),
            RequestOffset::After(o) => o.fmt(f),
        }
    }
}

/// A shape handle as the server names it: at most 100 ASCII letters, digits and dashes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HandleId(String);

impl HandleId {
    pub fn parse(s: &str) -> Option<HandleId> {
        let ok = !s.is_empty()
            && s.len() <= 100
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        ok.then(|| HandleId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HandleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a change message does to its row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Insert,
    Update,
    Delete,
}

impl Operation {
    /// As the protocol (and the server's stored log) writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Insert => "insert",
            Operation::Update => "update",
            Operation::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<Operation> {
        [Operation::Insert, Operation::Update, Operation::Delete]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// A control message's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Control {
    /// The response reaches the head of the log: the client holds everything there is.
    UpToDate,
    /// The handle is gone (rotated, expired or trimmed): start again from `offset=-1`.
    MustRefetch,
    /// Anything a newer server sends that this client does not know: ignored.
    #[serde(other)]
    Other,
}

/// A Postgres transaction id, as change messages carry it (the client matches its writes by it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Txid(pub u64);

impl fmt::Display for Txid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The headers of a message, as a follower reads them: a change has an operation (and the
/// transaction ids it came from), a control message a control.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageHeaders {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<Control>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub txids: Vec<Txid>,
}

/// Offsets and handles are stored (by clients resuming a shape) as the protocol writes them.
macro_rules! serde_as_text {
    ($t:ty, $what:literal) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                <$t>::parse(&text)
                    .ok_or_else(|| serde::de::Error::custom(format!("not {}: {text:?}", $what)))
            }
        }
    };
}

serde_as_text!(Offset, "an offset");
serde_as_text!(HandleId, "a shape handle");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_order_and_print_like_the_protocol() {
        let a = Offset::parse("0_inf").expect("0_inf");
        let b = Offset::parse("100_0").expect("100_0");
        let c = Offset::parse("100_3").expect("100_3");
        assert!(a < b && b < c);
        assert_eq!(a, Offset::BEFORE_ALL);
        assert_eq!(a.to_string(), "0_inf");
        assert_eq!(c.to_string(), "100_3");
        for bad in ["", "x_1", "1", "1_", "-1_0", "1_-2"] {
            assert!(Offset::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn request_offsets_round_trip() {
        for s in ["-1", "now", "0_inf", "42_7"] {
            let o: RequestOffset = s.parse().expect(s);
            assert_eq!(o.to_string(), s);
        }
        assert_eq!("-2".parse::<RequestOffset>(), Err(BadOffset));
        assert_eq!("".parse::<RequestOffset>(), Err(BadOffset));
    }

    #[test]
    fn operations_read_as_they_are_written() {
        for o in [Operation::Insert, Operation::Update, Operation::Delete] {
            assert_eq!(Operation::parse(o.as_str()), Some(o));
            assert_eq!(
                serde_json::to_string(&o).expect("json"),
                format!("\"{}\"", o.as_str())
            );
        }
        assert_eq!(Operation::parse("upsert"), None);
    }

    #[test]
    fn handles_are_checked() {
        assert!(HandleId::parse("3f2a9c-0123abcd").is_some());
        for bad in ["", "a b", "a/b", "x'--", &"a".repeat(101)] {
            assert!(HandleId::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn message_headers_read_changes_and_controls() {
        let change: MessageHeaders = serde_json::from_str(
            r#"{"operation":"update","txids":[7],"lsn":"9","relation":["public","turns"]}"#,
        )
        .expect("change");
        assert_eq!(change.operation, Some(Operation::Update));
        assert_eq!(change.txids, vec![Txid(7)]);
        let control: MessageHeaders =
            serde_json::from_str(r#"{"control":"up-to-date","global_last_seen_lsn":"9"}"#)
                .expect("control");
        assert_eq!(control.control, Some(Control::UpToDate));
        let refetch: MessageHeaders =
            serde_json::from_str(r#"{"control":"must-refetch"}"#).expect("refetch");
        assert_eq!(refetch.control, Some(Control::MustRefetch));
        let newer: MessageHeaders =
            serde_json::from_str(r#"{"control":"snapshot-end"}"#).expect("unknown control");
        assert_eq!(newer.control, Some(Control::Other));
        assert_eq!(
            serde_json::to_string(&Control::MustRefetch).expect("json"),
            r#""must-refetch""#
        );
    }
}
