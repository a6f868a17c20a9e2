//! The durable writer: stores logged transactions in `sync_log` in batches, off the path that
//! wakes live requests, and reports how far the log is durable, so that the replication slot is
//! acknowledged only up to there. Live clients may have seen a transaction before it is durable:
//! after a crash the slot replays from the last durable position with the same commit LSNs, so
//! the offsets they hold stay valid and nothing is delivered twice.
use super::{Op, ShapeServer, Tx};
use serde_json::Value;
use sqlx::PgPool;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// What the writer must make durable, in log order: a transaction (`tx`) and the WAL position
/// (`end`) that may be acknowledged once it and everything before it is stored. A position
/// without a transaction (a keepalive, an empty commit) is acknowledged after what precedes it.
pub(super) struct Pending {
    pub tx: Option<Arc<Tx>>,
    pub end: u64,
}

/// Transactions and changes per `sync_log` write, at most.
const BATCH_TRANSACTIONS: usize = 1000;
const BATCH_CHANGES: usize = 20_000;
/// Pending entries the WAL consumer may run ahead of the writer (then it waits: backpressure).
pub(super) const QUEUE: usize = 8192;

/// Store what arrives on `queue` until it closes; `durable` tells the WAL position up to which
/// everything is stored. Ends with the first database error (the consumer then reconnects and
/// the slot replays from the last durable position).
pub(super) async fn write(
    server: Arc<ShapeServer>,
    mut queue: mpsc::Receiver<Pending>,
    durable: watch::Sender<u64>,
) -> Result<(), sqlx::Error> {
    let mut batch: Vec<Arc<Tx>> = Vec::new();
    while let Some(first) = queue.recv().await {
        let mut end = first.end;
        let mut changes = 0;
        let mut next = Some(first);
        // Everything already waiting joins this write (one fsync for many transactions).
        while let Some(p) = next.take() {
            end = end.max(p.end);
            if let Some(tx) = p.tx {
                changes += tx.changes.len();
                batch.push(tx);
            }
            if batch.len() < BATCH_TRANSACTIONS && changes < BATCH_CHANGES {
                next = queue.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            store(&server.pool, &batch).await?;
            let last = batch.last().map_or(0, |t| t.lsn);
            batch.clear();
            server.mark_durable(last);
        }
        durable.send_if_modified(|d| {
            let moved = end > *d;
            *d = (*d).max(end);
            moved
        });
    }
    Ok(())
}

/// Store transactions and the new position in one database transaction. Idempotent: a
/// transaction stored by a writer that was being replaced is skipped, not doubled.
async fn store(pool: &PgPool, txs: &[Arc<Tx>]) -> Result<(), sqlx::Error> {
    let n: usize = txs.iter().map(|t| t.changes.len()).sum();
    let mut lsns = Vec::with_capacity(n);
    let mut xids = Vec::with_capacity(n);
    let mut ops = Vec::with_capacity(n);
    let mut relations = Vec::with_capacity(n);
    let mut operations = Vec::with_capacity(n);
    let mut news = Vec::with_capacity(n);
    let mut olds = Vec::with_capacity(n);
    for tx in txs {
        for (i, c) in tx.changes.iter().enumerate() {
            lsns.push(tx.lsn as i64);
            xids.push(i64::from(tx.xid));
            ops.push(i as i32);
            relations.push(c.relation.clone());
            operations.push(match c.op {
                Op::Insert => "insert",
                Op::Update => "update",
                Op::Delete => "delete",
            });
            news.push(c.new.clone().map(Value::Object));
            olds.push(c.old.clone().map(Value::Object));
        }
    }
    let last = txs.last().map_or(0, |t| t.lsn as i64);
    let mut db = pool.begin().await?;
    sqlx::query(
        "INSERT INTO sync_log (lsn, op, xid, relation, operation, new_row, old_row)
         SELECT * FROM unnest($1::bigint[], $2::int[], $3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[])
         ON CONFLICT (lsn, op) DO NOTHING",
    )
    .bind(lsns)
    .bind(ops)
    .bind(xids)
    .bind(relations)
    .bind(operations)
    .bind(news)
    .bind(olds)
    .execute(&mut *db)
    .await?;
    sqlx::query("UPDATE sync_state SET last_lsn = greatest(last_lsn, $1), updated_at = now()")
        .bind(last)
        .execute(&mut *db)
        .await?;
    db.commit().await
}
