//! A handle's view of the log: its messages after an offset.
use super::encode::message_for;
use super::{Handle, Offset, ShapeError, ShapeServer};
use serde_json::Value;
use std::time::Duration;

impl ShapeServer {
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
        let mut txs = Vec::new();
        let mut from = after;
        // Offsets are transaction-granular: `{lsn}_{op}` means transaction `lsn` was delivered
        // whole (responses never split one), which also makes SSE's `{global_last_seen_lsn}_0` exact.
        if after.lsn < handle.start_lsn || after == Offset::BEFORE_ALL {
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
}
