//! A handle's view of the log: its messages after an offset — and, for requests at the same
//! offset of the same handle, one read encoded once and shared.
use super::encode::{message_for, up_to_date};
use super::{Handle, Offset, ShapeError, ShapeServer};
use bytes::Bytes;
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// One response's worth of a shape's log, encoded.
pub struct Read {
    /// The JSON array: the messages, then `up-to-date` when the offset is the head.
    pub body: Bytes,
    /// Where the next read continues.
    pub offset: Offset,
    pub up_to_date: bool,
    /// Whether it carries no change (a live request then waits).
    pub empty: bool,
    /// The response headers of every live request answered with this read, built by the first
    /// (see `shapes::http`): the others clone them.
    pub live_headers: std::sync::OnceLock<axum::http::HeaderMap>,
}

/// A handle's latest read: valid for requests from `from` while the log's head is `head`.
pub(super) struct SharedRead {
    from: Offset,
    head: Offset,
    read: Arc<Read>,
}

/// Handles whose latest read is kept, at most (beyond that the map starts over).
const SHARED_READS: usize = 10_000;
/// The largest read kept for sharing.
const SHARED_READ_BYTES: usize = 64 * 1024;

impl ShapeServer {
    /// The handle's log after `after`, encoded. The requests on one handle woken by one
    /// transaction are all at the same offset: they share one read (the first encodes it, the
    /// rest get the same bytes). Clients share handles (see `shared_snapshot`), so 1,000 clients
    /// of one shape cost about one read per transaction. (The key is the handle, not the
    /// definition: which logged transactions a read skips depends on the handle's snapshot.)
    pub async fn read(
        &self,
        handle: &Handle,
        after: Offset,
        limit: usize,
    ) -> Result<Arc<Read>, ShapeError> {
        let past_snapshot = handle.past_snapshot(after);
        let head = self.head();
        let key = &handle.id;
        if past_snapshot {
            let reads = self.reads.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(r) = reads.get(key).filter(|r| r.from == after && r.head == head) {
                self.metrics.reads_shared.fetch_add(1, Ordering::Relaxed);
                return Ok(r.read.clone());
            }
        }
        let (messages, offset, up_to_date_now) = self.changes(handle, after, limit).await?;
        self.metrics.reads_encoded.fetch_add(1, Ordering::Relaxed);
        let empty = messages.is_empty();
        let mut all = messages;
        if up_to_date_now {
            all.push(up_to_date(offset));
        }
        let body = serde_json::to_vec(&Value::Array(all)).unwrap_or_else(|_| b"[]".to_vec());
        let read = Arc::new(Read {
            body: Bytes::from(body),
            offset,
            up_to_date: up_to_date_now,
            empty,
            live_headers: std::sync::OnceLock::new(),
        });
        // Kept only for what many requests read at once: small reads at the head (a catching-up
        // client's large page is its own, and would only hold memory).
        if past_snapshot && read.up_to_date && read.body.len() <= SHARED_READ_BYTES {
            let mut reads = self.reads.lock().unwrap_or_else(|e| e.into_inner());
            if reads.len() >= SHARED_READS {
                reads.clear();
            }
            reads.insert(
                key.clone(),
                SharedRead {
                    from: after,
                    head,
                    read: read.clone(),
                },
            );
        }
        Ok(read)
    }

    /// The shape's messages after `after`, the offset to continue from, and whether that offset
    /// is the head of the log (the client is up to date).
    pub async fn changes(
        &self,
        handle: &Handle,
        after: Offset,
        limit: usize,
    ) -> Result<(Vec<Value>, Offset, bool), ShapeError> {
        let start = Offset {
            lsn: handle.start_lsn,
            op: u64::MAX,
        };
        if handle.past_snapshot(after) {
            if let Some(read) = self.changes_from_shape_log(handle, after, limit) {
                return Ok(read);
            }
        }
        let mut txs = Vec::new();
        let mut from = after;
        // Offsets are transaction-granular: `{lsn}_{op}` means transaction `lsn` was delivered
        // whole (responses never split one), which also makes SSE's `{global_last_seen_lsn}_0` exact.
        if !handle.past_snapshot(after) {
            // First read after the snapshot: wait until the log holds every commit up to the
            // snapshot's WAL position, then add the snapshot's in-progress transactions that
            // committed before that position.
            let mut seen = self.seen.subscribe();
            let caught_up = tokio::time::timeout(
                Duration::from_secs(30),
                seen.wait_for(|s| *s >= handle.barrier),
            )
            .await
            .is_ok_and(|r| r.is_ok());
            if !caught_up {
                return Err(ShapeError::NotReady);
            }
            if let Some(snapshot) = &handle.snapshot {
                txs = self.in_progress_at(snapshot, handle.start_lsn).await?;
            }
            from = start;
        }
        let head = self.head();
        txs.extend(self.transactions_after(from, limit).await?);
        let shape = &handle.shape;
        let relation = &shape.relation;
        let mut messages = Vec::new();
        let mut last = after.max(start);
        for tx in txs {
            let in_snapshot = handle.snapshot.as_ref().is_some_and(|s| s.contains(tx.xid));
            if tx.lsn <= after.lsn {
                continue;
            }
            for (i, change) in tx.changes.iter().enumerate() {
                let at = Offset {
                    lsn: tx.lsn,
                    op: i as u64,
                };
                last = last.max(at);
                if in_snapshot || change.relation != *relation {
                    continue;
                }
                if let Some(m) = message_for(shape, change, &tx, at) {
                    messages.push(m);
                }
            }
        }
        let up_to_date = last.lsn >= head.lsn;
        let offset = if up_to_date { last.max(head) } else { last };
        Ok((messages, offset, up_to_date))
    }

    /// A live shape's changes after `after` from its own log (see [`super::shape_log`]), if the
    /// log holds everything after `after`: the same messages and offset as scanning the global
    /// log, at the cost of the shape's own changes.
    fn changes_from_shape_log(
        &self,
        handle: &Handle,
        after: Offset,
        limit: usize,
    ) -> Option<(Vec<Value>, Offset, bool)> {
        // The head first: everything up to it is already in the shape's log (a transaction goes
        // to the shapes' logs before the head moves past it).
        let head = self.head();
        let (entries, all) = handle
            .shape
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .after(after, limit)?;
        let shape = &handle.shape;
        let mut messages = Vec::new();
        let mut last = after;
        for (at, tx) in entries {
            last = last.max(at);
            if handle.snapshot.as_ref().is_some_and(|s| s.contains(tx.xid)) {
                continue;
            }
            let change = tx.changes.get(at.op as usize)?;
            if let Some(m) = message_for(shape, change, &tx, at) {
                messages.push(m);
            }
        }
        let offset = if all { last.max(head) } else { last };
        self.metrics
            .reads_from_shape_log
            .fetch_add(1, Ordering::Relaxed);
        Some((messages, offset, all))
    }
}
