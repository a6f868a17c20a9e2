//! One request that waits for any of several of the user's shapes to move past where the caller
//! stands: `GET /api/shapes?stages={handle}:{offset}&vendors=…`. A browser allows six connections
//! per host over HTTP/1.1; a tab that held one long-poll per shape would leave one for everything
//! else. So a device long-polls its busy shape (`turns`) on its own, and its small reference
//! shapes through one of these: when it answers, the client reads the shapes it names without
//! waiting (`live=false`) and asks again.
//!
//! The answer names the shapes that have changes after the given offset, and those whose handle
//! is no longer served (their own request then gets its 409); an empty list after the long-poll
//! timeout means nothing moved.
use crate::shape_follower::Position;
use crate::shape_protocol::{HandleId, Offset};
use serde::{Deserialize, Serialize};

pub const PATH: &str = "/api/shapes";
/// The most shapes one request may watch (the app follows 10 tables beside its turns).
pub const MAX_SHAPES: usize = 16;

/// The answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moved {
    pub moved: Vec<String>,
}

/// The query for shapes `name` at `position`.
pub fn query<'a>(positions: impl IntoIterator<Item = (&'a str, &'a Position)>) -> String {
    positions
        .into_iter()
        .map(|(name, p)| format!("{name}={}:{}", p.handle, p.offset))
        .collect::<Vec<_>>()
        .join("&")
}

/// One shape's position as `query` writes it.
pub fn parse_position(value: &str) -> Option<Position> {
    let (handle, offset) = value.split_once(':')?;
    Some(Position {
        handle: HandleId::parse(handle)?,
        offset: Offset::parse(offset)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_reads_back() {
        let stages = Position {
            handle: HandleId::parse("h-1").expect("handle"),
            offset: Offset { lsn: 120, op: 3 },
        };
        let vendors = Position {
            handle: HandleId::parse("h-2").expect("handle"),
            offset: Offset {
                lsn: 7,
                op: u64::MAX,
            },
        };
        let q = query([("stages", &stages), ("vendors", &vendors)]);
        assert_eq!(q, "stages=h-1:120_3&vendors=h-2:7_inf");
        let read: Vec<Option<Position>> = q
            .split('&')
            .map(|kv| parse_position(kv.split_once('=').expect("pair").1))
            .collect();
        assert_eq!(read, vec![Some(stages), Some(vendors)]);
        for bad in ["", "h-1", "h 1:1_0", "h-1:1", "h-1:x_0", ":1_0"] {
            assert_eq!(parse_position(bad), None, "{bad:?}");
        }
    }
}
