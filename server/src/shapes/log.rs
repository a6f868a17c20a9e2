//! The change log: committed transactions in commit order, the newest in an in-memory tail,
//! all of them in `sync_log`; the head, how far the WAL consumer has read, and barriers that
//! tell when everything committed before a moment is logged.
use super::metrics::unix_now;
use super::{Offset, ShapeError, ShapeServer, Snapshot};
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
pub use turns::shape_protocol::Operation;

/// A row as column → Postgres text value (JSON string) or NULL.
pub type Row = Map<String, Value>;

#[derive(Clone, Debug)]
pub struct Change {
    /// `schema.table`
    pub relation: String,
    pub op: Operation,
    pub new: Option<Row>,
    pub old: Option<Row>,
}

/// One committed transaction, as logged.
#[derive(Clone, Debug)]
pub struct Tx {
    pub lsn: u64,
    pub xid: u32,
    pub changes: Vec<Change>,
}

/// How many recent transactions stay in memory (older ones are read from `sync_log`).
const TAIL_TRANSACTIONS: usize = 20_000;

impl ShapeServer {
    pub fn head(&self) -> Offset {
        *self.head.borrow()
    }

    /// The WAL consumer has read everything up to `lsn`.
    pub fn mark_seen(&self, lsn: u64) {
        self.seen.send_if_modified(|s| {
            let moved = lsn > *s;
            *s = (*s).max(lsn);
            moved
        });
    }

    /// Append a decoded transaction to the tail and wake the live requests it concerns, before
    /// it is durable (see [`super::durable`]). A transaction already in the tail (a replay after
    /// the replication stream reconnected) is not appended twice. Returns it, for the writer.
    pub fn publish(&self, tx: Arc<Tx>) -> Arc<Tx> {
        if tx.lsn <= self.head().lsn {
            return tx;
        }
        self.metrics.transactions.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .changes
            .fetch_add(tx.changes.len() as u64, Ordering::Relaxed);
        self.metrics
            .last_logged_ms
            .store(unix_now() * 1000, Ordering::Relaxed);
        let head = Offset {
            lsn: tx.lsn,
            op: tx.changes.len().saturating_sub(1) as u64,
        };
        {
            let mut tail = self.tail.write().unwrap_or_else(|e| e.into_inner());
            tail.push_back(tx.clone());
            self.trim_tail(&mut tail);
        }
        self.append_and_wake(&tx, head);
        tx
    }

    /// Everything up to `lsn` is in `sync_log`.
    pub(super) fn mark_durable(&self, lsn: u64) {
        self.durable.fetch_max(lsn, Ordering::AcqRel);
        let mut tail = self.tail.write().unwrap_or_else(|e| e.into_inner());
        self.trim_tail(&mut tail);
    }

    /// Keep the tail to its size, but never drop a transaction that is not durable yet: readers
    /// behind the tail read `sync_log`, which must then hold everything up to the tail.
    fn trim_tail(&self, tail: &mut VecDeque<Arc<Tx>>) {
        let durable = self.durable.load(Ordering::Acquire);
        while tail.len() > TAIL_TRANSACTIONS && tail.front().is_some_and(|t| t.lsn <= durable) {
            if let Some(old) = tail.pop_front() {
                self.tail_from.store(old.lsn, Ordering::Release);
            }
        }
    }

    /// A non-transactional logical message: once the consumer has seen it, every commit before
    /// it is in the log. Returns its LSN.
    pub(super) async fn emit_barrier(&self) -> Result<u64, ShapeError> {
        let lsn: i64 = sqlx::query_scalar(
            "SELECT (pg_logical_emit_message(false, 'turns.barrier', '') - '0/0')::bigint",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(lsn as u64)
    }

    /// Wait until every transaction committed before this call is in the log (tests, benchmarks).
    pub async fn caught_up(&self) -> Result<(), ShapeError> {
        let barrier = self.emit_barrier().await?;
        let mut seen = self.seen.subscribe();
        tokio::time::timeout(Duration::from_secs(30), seen.wait_for(|s| *s >= barrier))
            .await
            .map_err(|_| ShapeError::NotReady)?
            .map_err(|_| ShapeError::NotReady)?;
        Ok(())
    }

    /// Logged transactions with changes after `after`, oldest first, about `limit` changes.
    pub(super) async fn transactions_after(
        &self,
        after: Offset,
        limit: usize,
    ) -> Result<Vec<Arc<Tx>>, ShapeError> {
        if self.head().lsn <= after.lsn {
            return Ok(Vec::new());
        }
        {
            let tail = self.tail.read().unwrap_or_else(|e| e.into_inner());
            if after.lsn >= self.tail_from.load(Ordering::Acquire) {
                let mut out = Vec::new();
                let mut n = 0;
                // The tail is in commit (LSN) order: find the first newer transaction by bisection.
                let first = tail.partition_point(|t| t.lsn <= after.lsn);
                for tx in tail.range(first..) {
                    if n >= limit {
                        break;
                    }
                    n += tx.changes.len();
                    out.push(tx.clone());
                }
                return Ok(out);
            }
        }
        let floor: i64 = sqlx::query_scalar("SELECT floor_lsn FROM sync_state")
            .fetch_one(&self.pool)
            .await?;
        if (after.lsn as i64) < floor {
            return Err(ShapeError::MustRefetch);
        }
        Ok(stored_after(&self.pool, after.lsn, limit).await?)
    }

    /// Transactions at or below `lsn` that `snapshot` does not show: those in progress when it
    /// was taken (its `xip`), and those at or past its `xmax`. The second kind is easy to miss:
    /// a transaction that has written its commit record (at or below `lsn`, read before the
    /// snapshot) but has not yet become visible has an xid at or past `xmax` when no transaction
    /// completed after it was assigned, and `xip` lists only xids below `xmax`. Without it such a
    /// transaction was in neither the snapshot nor the log a client read after it: its rows were
    /// lost to that shape for good (seen under load in the failover test).
    pub(super) async fn in_progress_at(
        &self,
        snapshot: &Snapshot,
        lsn: u64,
    ) -> Result<Vec<Arc<Tx>>, ShapeError> {
        let xids: Vec<i64> = snapshot
            .xip
            .iter()
            .map(|x| (x & 0xFFFF_FFFF) as i64)
            .collect();
        // The log keeps 32-bit xids: "at or past xmax" is the wraparound-aware distance from it.
        let xmax = (snapshot.xmax & 0xFFFF_FFFF) as i64;
        let rows = sqlx::query_as(
            "SELECT lsn, op, xid, relation, operation, new_row, old_row FROM sync_log
              WHERE lsn <= $1
                AND (xid = ANY($2) OR ((xid - $3) % 4294967296 + 4294967296) % 4294967296 < 2147483648)
              ORDER BY lsn, op",
        )
        .bind(lsn as i64)
        .bind(xids)
        .bind(xmax)
        .fetch_all(&self.pool)
        .await?;
        let mut txs: Vec<Arc<Tx>> = group_log_rows(rows)
            .into_iter()
            .filter(|tx| !snapshot.contains(tx.xid))
            .collect();
        // The leader keeps a transaction in its tail (and serves it) before `sync_log` has it.
        {
            let tail = self.tail.read().unwrap_or_else(|e| e.into_inner());
            let stored: std::collections::HashSet<u64> = txs.iter().map(|t| t.lsn).collect();
            txs.extend(
                tail.iter()
                    .filter(|t| {
                        t.lsn <= lsn && !stored.contains(&t.lsn) && !snapshot.contains(t.xid)
                    })
                    .cloned(),
            );
        }
        txs.sort_by_key(|t| t.lsn);
        Ok(txs)
    }
}

/// Transactions stored in `sync_log` after `lsn`, oldest first, whole, about `limit` changes.
pub(super) async fn stored_after(
    db: impl sqlx::PgExecutor<'_>,
    lsn: u64,
    limit: usize,
) -> Result<Vec<Arc<Tx>>, sqlx::Error> {
    // Whole transactions only: a response never ends inside one.
    let rows = sqlx::query_as(
        "SELECT lsn, op, xid, relation, operation, new_row, old_row FROM sync_log
          WHERE lsn > $1
            AND lsn <= (SELECT max(lsn) FROM (SELECT lsn FROM sync_log WHERE lsn > $1 ORDER BY lsn, op LIMIT $2) AS page)
          ORDER BY lsn, op",
    )
    .bind(lsn as i64)
    .bind(limit as i64)
    .fetch_all(db)
    .await?;
    Ok(group_log_rows(rows))
}

type LogRow = (i64, i32, i64, String, String, Option<Value>, Option<Value>);

fn group_log_rows(rows: Vec<LogRow>) -> Vec<Arc<Tx>> {
    let mut out: Vec<Tx> = Vec::new();
    for (lsn, _op, xid, relation, operation, new, old) in rows {
        // The writer stores only the three; anything else reads as before, as a delete.
        let op = Operation::parse(&operation).unwrap_or(Operation::Delete);
        let as_row = |v: Option<Value>| match v {
            Some(Value::Object(m)) => Some(m),
            _ => None,
        };
        let change = Change {
            relation,
            op,
            new: as_row(new),
            old: as_row(old),
        };
        match out.last_mut() {
            Some(tx) if tx.lsn == lsn as u64 => tx.changes.push(change),
            _ => out.push(Tx {
                lsn: lsn as u64,
                xid: xid as u32,
                changes: vec![change],
            }),
        }
    }
    out.into_iter().map(Arc::new).collect()
}
