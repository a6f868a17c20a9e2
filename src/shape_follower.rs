//! One shape follower for every client: the browser, the server's tests, the benches and the
//! soak. A state machine with no I/O of its own: it says what to ask for next (`query`), reads
//! what came back (`receive`, or `receive_event` for Server-Sent Events) and says what it means
//! (`Step`); the caller sends the request (fetch, reqwest, an in-process router) and sleeps for the
//! backoff it is told.
//!
//! The cycle is the protocol's: a snapshot from `offset=-1`, catch-up requests until up to date,
//! then live requests (long-poll, with the server's cursor); a 409 or `must-refetch` starts again
//! from a fresh snapshot; errors back off with jitter, and the backoff resets on the first answer.
use crate::shape_protocol::{
    header, param, Control, HandleId, Offset, Operation, RequestOffset, Txid,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The longest wait between retries.
pub const MAX_BACKOFF_MS: u64 = 30_000;
/// The first retry's wait (before jitter).
pub const FIRST_BACKOFF_MS: u64 = 500;

/// Where a follower stands in a shape, as a client stores it to resume after a restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub handle: HandleId,
    pub offset: Offset,
}

/// A shape row's columns as the protocol sends them: Postgres text, or null. An update carries
/// the key and the changed columns only.
pub type Columns = Map<String, Value>;

/// One change message.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeMessage {
    pub key: String,
    pub operation: Operation,
    pub value: Columns,
    pub txids: Vec<Txid>,
}

/// What one answer brought.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    /// The changes, in log order.
    pub changes: Vec<ChangeMessage>,
    /// These changes start a fresh snapshot: rows held from before are replaced by it (at its
    /// up-to-date), not merged into.
    pub starts_snapshot: bool,
    /// The follower now holds the whole shape up to the log's head.
    pub up_to_date: bool,
}

/// What an answer means for the caller.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Apply these (and ask again at once).
    Changes(Batch),
    /// The shape must be read again from its snapshot (409, or `must-refetch`): what is held
    /// stays until the new snapshot is up to date, then is replaced. Ask again at once.
    Refetch,
    /// No usable answer (network, 5xx, unreadable body): ask again after `backoff`.
    Retry,
    /// The server refused the request (a 4xx other than 409): asking again will not help.
    Refused { status: u16 },
}

/// The response head, as the follower reads it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResponseHead {
    pub status: u16,
    pub handle: Option<String>,
    pub offset: Option<String>,
    pub cursor: Option<String>,
    pub up_to_date: bool,
}

impl ResponseHead {
    /// Read the protocol's headers with `get` (case-insensitive names, as every HTTP client has).
    pub fn read(status: u16, get: impl Fn(&str) -> Option<String>) -> ResponseHead {
        ResponseHead {
            status,
            handle: get(header::HANDLE),
            offset: get(header::OFFSET),
            cursor: get(header::CURSOR),
            up_to_date: get(header::UP_TO_DATE).is_some(),
        }
    }
}

/// A message as it arrives: a change (key, value, operation) or a control message.
#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    value: Option<Columns>,
    headers: WireHeaders,
}

#[derive(Deserialize)]
struct WireHeaders {
    #[serde(default)]
    operation: Option<Operation>,
    #[serde(default)]
    control: Option<Control>,
    #[serde(default)]
    txids: Vec<Txid>,
    /// On SSE up-to-date: the position to continue from (`{lsn}_0`).
    #[serde(default)]
    global_last_seen_lsn: Option<String>,
}

/// A request's protocol parameters. A caller may change `live` (to read what is there now,
/// without waiting for more).
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub offset: RequestOffset,
    pub handle: Option<HandleId>,
    pub live: bool,
    pub cursor: Option<String>,
}

impl Request {
    /// The parameters (`offset`, `handle`, `live`, `cursor`) to append to the shape's URL.
    /// `cache_buster` goes on snapshot requests only: a browser may keep a snapshot answer for
    /// days (by its cache headers), and after a 409 would hand back the old one with its dead
    /// handle.
    pub fn query(&self, cache_buster: Option<u64>) -> String {
        let mut q = format!("{}={}", param::OFFSET, self.offset);
        if let Some(h) = &self.handle {
            q.push_str(&format!("&{}={h}", param::HANDLE));
        }
        if self.live {
            q.push_str(&format!("&{}=true", param::LIVE));
            if let Some(c) = &self.cursor {
                q.push_str(&format!("&{}={c}", param::CURSOR));
            }
        }
        if let (Some(n), RequestOffset::Snapshot) = (cache_buster, self.offset) {
            q.push_str(&format!("&{}={n}", param::CACHE_BUSTER));
        }
        q
    }
}

/// Waits between retries: doubling up to `MAX_BACKOFF_MS`, half of each wait random so that
/// many clients coming back together do not arrive in step; reset by the first success.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backoff {
    ms: u64,
}

impl Backoff {
    /// The next wait in ms (`random` in [0, 1), from the caller: the core has no randomness).
    pub fn next(&mut self, random: f64) -> u64 {
        let base = (self.ms * 2).clamp(FIRST_BACKOFF_MS, MAX_BACKOFF_MS);
        self.ms = base;
        base / 2 + (random.clamp(0.0, 1.0) * (base / 2) as f64) as u64
    }

    pub fn reset(&mut self) {
        self.ms = 0;
    }

    /// The last attempts failed.
    pub fn is_active(&self) -> bool {
        self.ms > 0
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ShapeFollower {
    handle: Option<HandleId>,
    offset: RequestOffset,
    cursor: Option<String>,
    live: bool,
    /// The next answer's changes start a snapshot.
    snapshot_pending: bool,
    backoff: Backoff,
}

impl Default for ShapeFollower {
    fn default() -> Self {
        ShapeFollower::new()
    }
}

impl ShapeFollower {
    /// A follower that starts with the snapshot.
    pub fn new() -> ShapeFollower {
        ShapeFollower {
            handle: None,
            offset: RequestOffset::Snapshot,
            cursor: None,
            live: false,
            snapshot_pending: true,
            backoff: Backoff::default(),
        }
    }

    /// A follower that goes on from a stored position (catching up before going live).
    pub fn resume(position: Position) -> ShapeFollower {
        ShapeFollower {
            handle: Some(position.handle),
            offset: RequestOffset::After(position.offset),
            snapshot_pending: false,
            ..ShapeFollower::new()
        }
    }

    /// Where it stands, once the server has named the shape.
    pub fn position(&self) -> Option<Position> {
        match (&self.handle, self.offset) {
            (Some(handle), RequestOffset::After(offset)) => Some(Position {
                handle: handle.clone(),
                offset,
            }),
            _ => None,
        }
    }

    /// It has been up to date once since its (re)start: its requests wait for changes.
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// The next request asks for the snapshot.
    pub fn wants_snapshot(&self) -> bool {
        self.offset == RequestOffset::Snapshot
    }

    /// The next request: what to ask for.
    pub fn request(&self) -> Request {
        Request {
            offset: self.offset,
            handle: self.handle.clone(),
            live: self.live,
            cursor: self.cursor.clone().filter(|_| self.live),
        }
    }

    /// The next request's query (`request().query(..)`).
    pub fn query(&self, cache_buster: Option<u64>) -> String {
        self.request().query(cache_buster)
    }

    /// As `query`, for a live Server-Sent Events stream (after the first up-to-date).
    pub fn sse_query(&self) -> String {
        format!("{}&{}=true", self.query(None), param::LIVE_SSE)
    }

    /// Read an answer to the request `query` described.
    pub fn receive(&mut self, head: &ResponseHead, body: &str) -> Step {
        match head.status {
            200..=299 => {}
            409 => return self.refetch(),
            // Timed out, or over the session's budget (with Retry-After): later, not never.
            408 | 429 => return Step::Retry,
            400..=499 => {
                return Step::Refused {
                    status: head.status,
                }
            }
            _ => return Step::Retry,
        }
        let (Some(handle), Some(offset)) = (
            head.handle.as_deref().and_then(HandleId::parse),
            head.offset.as_deref().and_then(Offset::parse),
        ) else {
            return Step::Retry;
        };
        let Ok(messages) = serde_json::from_str::<Vec<WireMessage>>(body) else {
            return Step::Retry;
        };
        let starts_snapshot = std::mem::take(&mut self.snapshot_pending);
        let mut batch = Batch {
            starts_snapshot,
            up_to_date: head.up_to_date,
            ..Batch::default()
        };
        for m in messages {
            match m.headers.control {
                Some(Control::UpToDate) => batch.up_to_date = true,
                Some(Control::MustRefetch) => return self.refetch(),
                Some(Control::Other) => {}
                None => batch.changes.extend(change(m)),
            }
        }
        self.backoff.reset();
        self.handle = Some(handle);
        self.offset = RequestOffset::After(offset);
        if let Some(c) = head.cursor.as_deref().filter(|c| is_token(c)) {
            self.cursor = Some(c.to_string());
        }
        if batch.up_to_date {
            self.live = true;
        }
        Step::Changes(batch)
    }

    /// Read one Server-Sent Event's `data` (one message) of a live stream opened with
    /// `sse_query`. Changes come one event each; an up-to-date event ends a batch and moves the
    /// position (the server resumes after whole transactions).
    pub fn receive_event(&mut self, data: &str) -> Step {
        let Ok(m) = serde_json::from_str::<WireMessage>(data) else {
            return Step::Retry;
        };
        self.backoff.reset();
        let mut batch = Batch::default();
        match m.headers.control {
            Some(Control::UpToDate) => {
                batch.up_to_date = true;
                let lsn = m.headers.global_last_seen_lsn.as_deref();
                if let Some(lsn) = lsn.and_then(|l| l.parse().ok()) {
                    self.offset = RequestOffset::After(Offset { lsn, op: 0 });
                }
            }
            Some(Control::MustRefetch) => return self.refetch(),
            Some(Control::Other) => {}
            // The position moves only at up-to-date: the server resumes after whole
            // transactions, so a stream cut inside one must resume before it.
            None => batch.changes.extend(change(m)),
        }
        Step::Changes(batch)
    }

    /// The request got no answer (or `receive` said `Retry`): how long to wait before the next,
    /// in ms (see `Backoff`).
    pub fn backoff(&mut self, random: f64) -> u64 {
        self.backoff.next(random)
    }

    /// Whether the last answers were failures (the caller may tell its other loops the server
    /// is back once this turns false).
    pub fn is_backing_off(&self) -> bool {
        self.backoff.is_active()
    }

    fn refetch(&mut self) -> Step {
        *self = ShapeFollower {
            backoff: self.backoff,
            ..ShapeFollower::new()
        };
        Step::Refetch
    }
}

fn change(m: WireMessage) -> Option<ChangeMessage> {
    Some(ChangeMessage {
        key: m.key?,
        operation: m.headers.operation?,
        value: m.value.unwrap_or_default(),
        txids: m.headers.txids,
    })
}

/// A cursor goes back into a URL as it came: only plain tokens.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape_rows::ShapeRows;

    /// A response as our server (and Electric's) writes it.
    fn answer(
        status: u16,
        handle: &str,
        offset: &str,
        cursor: Option<&str>,
        body: &str,
    ) -> (ResponseHead, String) {
        let head = ResponseHead::read(status, |name| match name {
            header::HANDLE => Some(handle.to_string()),
            header::OFFSET => Some(offset.to_string()),
            header::CURSOR => cursor.map(str::to_string),
            header::UP_TO_DATE => body.contains("up-to-date").then(String::new),
            _ => None,
        });
        (head, body.to_string())
    }

    fn insert(id: &str, name: &str, txid: u64) -> String {
        format!(
            r#"{{"key":"\"public\".\"stages\"/\"{id}\"","value":{{"id":"{id}","name":"{name}","version":"1"}},"headers":{{"operation":"insert","relation":["public","stages"],"txids":[{txid}],"lsn":"100","op_position":0}}}}"#
        )
    }

    const UP_TO_DATE: &str = r#"{"headers":{"control":"up-to-date","global_last_seen_lsn":"200"}}"#;

    fn changes(step: Step) -> Batch {
        match step {
            Step::Changes(b) => b,
            other => panic!("expected changes, got {other:?}"),
        }
    }

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Stage {
        id: String,
        name: String,
        #[serde(with = "crate::pg_text::int")]
        version: i32,
    }

    #[test]
    fn snapshot_then_catch_up_then_live_with_the_cursor() {
        let mut f = ShapeFollower::new();
        let mut rows = ShapeRows::<Stage>::default();
        assert_eq!(f.query(Some(9)), "offset=-1&cache-buster=9");
        let (h, b) = answer(
            200,
            "h-1",
            "0_inf",
            None,
            &format!("[{}]", insert("a", "Notice", 5)),
        );
        let batch = changes(f.receive(&h, &b));
        assert!(batch.starts_snapshot && !batch.up_to_date);
        assert_eq!(rows.add(batch), None, "nothing shows before up-to-date");
        assert_eq!(rows.pending(), 1);
        assert!(!f.is_live());
        assert_eq!(f.query(Some(9)), "offset=0_inf&handle=h-1");

        let (h, b) = answer(
            200,
            "h-1",
            "120_0",
            Some("77"),
            &format!("[{}]", UP_TO_DATE),
        );
        let applied = rows.add(changes(f.receive(&h, &b))).expect("up to date");
        assert!(applied.replaced);
        assert_eq!(applied.txids.into_iter().collect::<Vec<_>>(), vec![Txid(5)]);
        assert_eq!(rows.rows().len(), 1);
        assert!(f.is_live());
        assert_eq!(f.query(None), "offset=120_0&handle=h-1&live=true&cursor=77");
        assert_eq!(
            f.position(),
            Some(Position {
                handle: HandleId::parse("h-1").expect("handle"),
                offset: Offset { lsn: 120, op: 0 }
            })
        );

        // A live update carries the key and the changed columns only.
        let update = r#"[{"key":"\"public\".\"stages\"/\"a\"","value":{"id":"a","name":"Notice given","version":"2"},"headers":{"operation":"update","txids":[6]}},{"headers":{"control":"up-to-date"}}]"#;
        let (h, b) = answer(200, "h-1", "130_0", Some("78"), update);
        let applied = rows.add(changes(f.receive(&h, &b))).expect("up to date");
        assert!(!applied.replaced && applied.anomalies.is_empty());
        let all = rows.rows();
        let stage = all.values().next().expect("row");
        assert_eq!((stage.name.as_str(), stage.version), ("Notice given", 2));
        assert_eq!(f.query(None), "offset=130_0&handle=h-1&live=true&cursor=78");
    }

    #[test]
    fn a_409_refetches_and_the_old_rows_stay_until_the_new_snapshot_is_whole() {
        let mut f = ShapeFollower::new();
        let mut rows = ShapeRows::<Stage>::default();
        let first = format!("[{},{}]", insert("a", "Notice", 5), UP_TO_DATE);
        let (h, b) = answer(200, "h-1", "100_0", None, &first);
        rows.add(changes(f.receive(&h, &b)));
        assert_eq!(rows.rows().len(), 1);

        let (h, b) = answer(
            409,
            "h-2",
            "-1",
            None,
            r#"[{"headers":{"control":"must-refetch"}}]"#,
        );
        assert_eq!(f.receive(&h, &b), Step::Refetch);
        assert!(f.wants_snapshot() && !f.is_live() && f.position().is_none());
        assert_eq!(f.query(Some(3)), "offset=-1&cache-buster=3");

        let (h, b) = answer(
            200,
            "h-2",
            "0_inf",
            None,
            &format!("[{}]", insert("b", "Move-out", 9)),
        );
        let batch = changes(f.receive(&h, &b));
        assert!(batch.starts_snapshot);
        rows.add(batch);
        assert_eq!(rows.rows().keys().count(), 1, "still the old snapshot");
        assert!(rows.rows().values().all(|s| s.id == "a"));
        let (h, b) = answer(200, "h-2", "140_0", None, &format!("[{UP_TO_DATE}]"));
        let applied = rows.add(changes(f.receive(&h, &b))).expect("up to date");
        assert!(applied.replaced);
        assert!(
            applied.changed.iter().any(|k| k.contains("\"a\"")),
            "a went"
        );
        assert!(rows.rows().values().all(|s| s.id == "b"));
    }

    #[test]
    fn must_refetch_inside_an_answer_drops_the_rest_of_it() {
        let mut f = ShapeFollower::resume(Position {
            handle: HandleId::parse("h-1").expect("handle"),
            offset: Offset { lsn: 50, op: 2 },
        });
        let body = format!(
            r#"[{},{{"headers":{{"control":"must-refetch"}}}}]"#,
            insert("a", "x", 1)
        );
        let (h, b) = answer(200, "h-1", "60_0", None, &body);
        assert_eq!(f.receive(&h, &b), Step::Refetch);
        assert!(f.wants_snapshot());
    }

    #[test]
    fn a_stored_position_resumes_by_catching_up_first() {
        let stored = serde_json::to_string(&Position {
            handle: HandleId::parse("h-7").expect("handle"),
            offset: Offset {
                lsn: 42,
                op: u64::MAX,
            },
        })
        .expect("json");
        assert_eq!(stored, r#"{"handle":"h-7","offset":"42_inf"}"#);
        let position: Position = serde_json::from_str(&stored).expect("position");
        let mut f = ShapeFollower::resume(position);
        let mut rows = ShapeRows::<Stage>::default();
        assert_eq!(f.query(Some(1)), "offset=42_inf&handle=h-7");
        let (h, b) = answer(200, "h-7", "42_inf", Some("5"), &format!("[{UP_TO_DATE}]"));
        let batch = changes(f.receive(&h, &b));
        assert!(!batch.starts_snapshot, "a resumed follower merges");
        assert!(!rows.add(batch).expect("up to date").replaced);
        assert_eq!(f.query(None), "offset=42_inf&handle=h-7&live=true&cursor=5");
        assert!(serde_json::from_str::<Position>(r#"{"handle":"a b","offset":"1_1"}"#).is_err());
        assert!(serde_json::from_str::<Position>(r#"{"handle":"a","offset":"-1"}"#).is_err());
    }

    #[test]
    fn server_sent_events_move_the_offset_at_up_to_date() {
        let mut f = ShapeFollower::resume(Position {
            handle: HandleId::parse("h-1").expect("handle"),
            offset: Offset { lsn: 10, op: 0 },
        });
        let (h, b) = answer(200, "h-1", "10_0", None, &format!("[{UP_TO_DATE}]"));
        changes(f.receive(&h, &b));
        assert_eq!(
            f.sse_query(),
            "offset=10_0&handle=h-1&live=true&live_sse=true"
        );
        let batch = changes(f.receive_event(&insert("c", "QC", 11)));
        assert_eq!(batch.changes.len(), 1);
        assert!(!batch.up_to_date);
        // Cut here, the stream resumes before the transaction, not inside it.
        assert_eq!(
            f.position().map(|p| p.offset),
            Some(Offset { lsn: 10, op: 0 })
        );
        let batch = changes(f.receive_event(UP_TO_DATE));
        assert!(batch.up_to_date && batch.changes.is_empty());
        assert_eq!(
            f.position().map(|p| p.offset),
            Some(Offset { lsn: 200, op: 0 })
        );
        assert_eq!(f.receive_event("data: not json"), Step::Retry);
    }

    #[test]
    fn failures_back_off_with_jitter_and_reset_on_an_answer() {
        let mut f = ShapeFollower::new();
        let (h, b) = answer(503, "", "", None, "");
        assert_eq!(f.receive(&h, &b), Step::Retry);
        let waits: Vec<u64> = (0..8).map(|_| f.backoff(0.999)).collect();
        assert_eq!(waits[0], 499);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        assert!(*waits.last().expect("wait") <= MAX_BACKOFF_MS);
        assert!(f.backoff(0.0) >= MAX_BACKOFF_MS / 2);
        assert!(f.is_backing_off());
        // An unreadable answer changes nothing but the backoff.
        let (h, b) = answer(200, "h-1", "0_inf", None, "<html>proxy error</html>");
        assert_eq!(f.receive(&h, &b), Step::Retry);
        assert!(f.wants_snapshot());
        let (h, b) = answer(200, "h-1", "0_inf", None, "[]");
        changes(f.receive(&h, &b));
        assert!(!f.is_backing_off());
        assert_eq!(f.backoff(0.0), FIRST_BACKOFF_MS / 2);
        let (h, b) = answer(429, "", "", None, r#"{"message":"too many"}"#);
        assert_eq!(f.receive(&h, &b), Step::Retry);
        for status in [400, 401, 403, 404] {
            let (h, b) = answer(status, "", "", None, r#"{"message":"no"}"#);
            assert_eq!(f.receive(&h, &b), Step::Refused { status });
        }
        // A cursor that is not a plain token never goes back into a URL.
        let (h, b) = answer(
            200,
            "h-1",
            "1_0",
            Some("7&table=users"),
            &format!("[{UP_TO_DATE}]"),
        );
        changes(f.receive(&h, &b));
        assert_eq!(f.query(None), "offset=1_0&handle=h-1&live=true");
    }

    #[test]
    fn anomalies_are_reported_and_undecodable_rows_kept_as_columns() {
        let mut f = ShapeFollower::new();
        let mut rows = ShapeRows::<Stage>::default();
        let body = format!(
            r#"[{},{},{{"key":"k","value":{{"id":"k"}},"headers":{{"operation":"update"}}}},{{"key":"z","value":{{}},"headers":{{"operation":"delete"}}}},{{"key":"bad","value":{{"id":"bad","name":"x","version":"one"}},"headers":{{"operation":"insert"}}}},{UP_TO_DATE}]"#,
            insert("a", "x", 1),
            insert("a", "y", 2)
        );
        let (h, b) = answer(200, "h-1", "1_0", None, &body);
        let applied = rows.add(changes(f.receive(&h, &b))).expect("up to date");
        let kinds: Vec<String> = applied
            .anomalies
            .iter()
            .map(|a| {
                format!("{a:?}")
                    .split(['(', ' '])
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "InsertOfPresentKey",
                "UpdateOfMissingKey",
                "DeleteOfMissingKey",
                "Undecodable",
                "Undecodable"
            ]
        );
        assert_eq!(rows.columns().len(), 3);
        assert_eq!(rows.rows().len(), 1, "only the whole, readable row");
    }
}
