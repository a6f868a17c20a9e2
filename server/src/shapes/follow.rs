//! Following the change log from `sync_log`, as every instance but the leader does (see
//! [`super::leader`]). Each durable write is announced on [`LOG_CHANNEL`]; a follower then reads
//! what is new and publishes it to its own in-memory log, which wakes its live requests as the
//! WAL consumer does on the leader. A missed announcement (the listener reconnecting) costs at
//! most [`TRY_EVERY`], when the follower reads again anyway.
use super::durable::LOG_CHANNEL;
use super::leader::{LeaderLock, TRY_EVERY};
use super::log::stored_after;
use super::wal::BoxError;
use super::{ShapeError, ShapeServer};
use sqlx::postgres::PgListener;
use std::sync::atomic::Ordering;
use uuid::Uuid;

/// Changes read from `sync_log` per query, about.
const PAGE: usize = 10_000;

impl ShapeServer {
    /// Follow the stored log until this instance takes the leader's lock, and return it.
    pub(super) async fn follow_until_leader(&self) -> Result<LeaderLock, BoxError> {
        let mut lock = LeaderLock::connect(&self.pool).await?;
        if lock.try_take().await? {
            return Ok(lock);
        }
        tracing::info!("following the change log (another instance leads it)");
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(LOG_CHANNEL).await?;
        self.read_stored_log().await?;
        let mut tick = tokio::time::interval(TRY_EVERY);
        loop {
            tokio::select! {
                note = listener.recv() => {
                    note?;
                }
                _ = tick.tick() => {
                    if lock.try_take().await? {
                        return Ok(lock);
                    }
                }
            }
            self.read_stored_log().await?;
        }
    }

    /// Publish what `sync_log` holds beyond this instance's head, and move how far the log is
    /// known complete (`seen`) to the leader's durable position.
    pub(super) async fn read_stored_log(&self) -> Result<(), ShapeError> {
        // One snapshot for the state and the log: a new epoch's log is never read as the old
        // one's.
        let mut db = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *db)
            .await?;
        let (epoch, seen, floor): (Uuid, i64, i64) =
            sqlx::query_as("SELECT epoch, seen_lsn, floor_lsn FROM sync_state")
                .fetch_one(&mut *db)
                .await?;
        if epoch != self.epoch() {
            // The leader started a new epoch (slot lost, TRUNCATE): every handle refetches.
            self.reset(epoch);
        }
        // Below the floor the log was trimmed: offsets there refetch, as on the leader.
        self.tail_from
            .fetch_max((floor as u64).saturating_sub(1), Ordering::AcqRel);
        loop {
            let txs = stored_after(&mut *db, self.head().lsn, PAGE).await?;
            let Some(last) = txs.last().map(|t| t.lsn) else {
                break;
            };
            for tx in txs {
                self.publish(tx);
            }
            self.mark_durable(last);
        }
        db.commit().await?;
        // Every commit at or below `seen` was stored by the time of our snapshot.
        self.mark_seen(seen as u64);
        Ok(())
    }
}
