//! The durable writer: stores logged transactions in `sync_log` in batches, off the path that
//! wakes live requests, and reports how far the log is durable, so that the replication slot is
//! acknowledged only up to there. Live clients may have seen a transaction before it is durable:
//! after a crash the slot replays from the last durable position with the same commit LSNs, so
//! the offsets they hold stay valid and nothing is delivered twice.
//!
//! Every write is fenced by the leader's term (see [`super::leader`]) and announced on
//! [`LOG_CHANNEL`], which the other instances follow.
use super::{ShapeServer, Tx};
use serde_json::Value;
use sqlx::PgPool;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// What the writer must make durable, in log order: a transaction (`tx`) and the WAL position
/// (`end`) that may be acknowledged once it and everything before it is stored. A position
/// without a transaction (a keepalive, an empty commit) is acknowledged after what precedes it;
/// it is written (and announced to the followers) only when `announce` asks for it: a barrier
/// that a follower may be waiting for. (Writing every keepalive's position would itself make WAL,
/// and so another keepalive: a write a second on an idle database.)
pub(super) struct Pending {
    pub tx: Option<Arc<Tx>>,
    pub end: u64,
    pub announce: bool,
}

/// Transactions and changes per `sync_log` write, at most.
const BATCH_TRANSACTIONS: usize = 1000;
const BATCH_CHANGES: usize = 20_000;
/// Pending entries the WAL consumer may run ahead of the writer (then it waits: backpressure).
pub(super) const QUEUE: usize = 8192;

/// The channel on which each durable write is announced (payload: the position now durable).
pub const LOG_CHANNEL: &str = "turns_sync_log";

/// The write was refused: another instance became the leader (its term is newer).
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("another instance leads the change log now")]
    Deposed,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Store what arrives on `queue` until it closes; `durable` tells the WAL position up to which
/// everything is stored. Ends with the first database error (the consumer then reconnects and
/// the slot replays from the last durable position), or when `term` is no longer the leader's.
pub(super) async fn write(
    server: Arc<ShapeServer>,
    term: i64,
    mut queue: mpsc::Receiver<Pending>,
    durable: watch::Sender<u64>,
) -> Result<(), WriteError> {
    let mut batch: Vec<Arc<Tx>> = Vec::new();
    while let Some(first) = queue.recv().await {
        let mut end = first.end;
        let mut announce = false;
        let mut changes = 0;
        let mut next = Some(first);
        // Everything already waiting joins this write (one fsync for many transactions).
        while let Some(p) = next.take() {
            end = end.max(p.end);
            announce |= p.announce;
            if let Some(tx) = p.tx {
                changes += tx.changes.len();
                batch.push(tx);
            }
            if batch.len() < BATCH_TRANSACTIONS && changes < BATCH_CHANGES {
                next = queue.try_recv().ok();
            }
        }
        if !batch.is_empty() || announce {
            store(&server.pool, term, &batch, end).await?;
        }
        if let Some(last) = batch.last() {
            server.mark_durable(last.lsn);
        }
        batch.clear();
        durable.send_if_modified(|d| {
            let moved = end > *d;
            *d = (*d).max(end);
            moved
        });
    }
    Ok(())
}

/// Store transactions and the new positions (the last transaction's, and `seen`: how far the
/// WAL has been read) in one database transaction, announced to the followers at its commit.
/// Idempotent: a transaction stored by a writer that was being replaced is skipped, not
/// doubled; a writer whose term has passed stores nothing.
async fn store(pool: &PgPool, term: i64, txs: &[Arc<Tx>], seen: u64) -> Result<(), WriteError> {
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
            operations.push(c.op.as_str());
            news.push(c.new.clone().map(Value::Object));
            olds.push(c.old.clone().map(Value::Object));
        }
    }
    let last = txs.last().map_or(0, |t| t.lsn as i64);
    let mut db = pool.begin().await?;
    // First the fence: this row lock also orders us after a new leader's term change.
    let ours = sqlx::query(
        "UPDATE sync_state SET last_lsn = greatest(last_lsn, $1), seen_lsn = greatest(seen_lsn, $2),
                updated_at = now()
          WHERE leader_term = $3",
    )
    .bind(last)
    .bind(seen as i64)
    .bind(term)
    .execute(&mut *db)
    .await?
    .rows_affected();
    if ours == 0 {
        return Err(WriteError::Deposed);
    }
    if n > 0 {
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
    }
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(LOG_CHANNEL)
        .bind(seen.to_string())
        .execute(&mut *db)
        .await?;
    db.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shapes::{Change, Operation};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_whose_term_has_passed_stores_nothing() {
        let (pool, _) = crate::testing::fresh_database().await;
        let state = || async {
            sqlx::query_as::<_, (i64, i64)>("SELECT leader_term, seen_lsn FROM sync_state")
                .fetch_one(&pool)
                .await
                .expect("state")
        };
        let (term, _) = state().await;
        // The current term stores (here, only a position).
        store(&pool, term, &[], 1000).await.expect("stored");
        assert_eq!(state().await, (term, 1000));
        // A newer leader began: the old term's write is refused and changes nothing.
        sqlx::query("UPDATE sync_state SET leader_term = leader_term + 1")
            .execute(&pool)
            .await
            .expect("new term");
        let tx = Arc::new(Tx {
            lsn: 1500,
            xid: 7,
            changes: vec![Change {
                relation: "public.vendors".into(),
                op: Operation::Insert,
                new: Some(serde_json::Map::new()),
                old: None,
            }],
        });
        let refused = store(&pool, term, &[tx], 2000).await;
        assert!(matches!(refused, Err(WriteError::Deposed)), "{refused:?}");
        assert_eq!(state().await, (term + 1, 1000));
        let logged: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_log")
            .fetch_one(&pool)
            .await
            .expect("count");
        assert_eq!(logged, 0, "the refused batch wrote nothing");
        store(&pool, term + 1, &[], 2000).await.expect("stored");
        assert_eq!(state().await, (term + 1, 2000));
    }
}
