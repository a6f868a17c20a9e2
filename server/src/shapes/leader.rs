//! Which instance reads the replication slot. Any number of app instances serve shapes on one
//! database. One of them, the leader, holds a session advisory lock and runs the WAL consumer
//! ([`super::wal`]), which writes `sync_log`; the others follow `sync_log` ([`super::follow`])
//! and try the lock every [`TRY_EVERY`]. A leader that dies takes its connection and so its lock
//! with it, and another instance leads within about a second.
//!
//! Each leader raises `sync_state.leader_term`, and the log writer stores only under its own
//! term: a leader that lost its lock without noticing (a cut connection) cannot write after its
//! successor began. Offsets are commit LSNs and handles live in the database, so a client may
//! move between instances with its handle and offset.
use super::durable::WriteError;
use super::wal::{self, BoxError};
use super::ShapeServer;
use sqlx::{Connection, PgConnection, PgPool};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The advisory lock key of the slot's reader ("turns_wa").
pub const LOCK_KEY: i64 = 0x7475_726e_735f_7761;
/// How often a follower tries the lock, and a leader checks that its lock connection lives.
pub(super) const TRY_EVERY: Duration = Duration::from_millis(500);
/// A lock connection that does not answer within this is treated as lost.
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// A replication connection that lasted this long was healthy: its failure starts the backoff
/// over.
const HEALTHY_RUN: Duration = Duration::from_secs(5);

/// Follow or lead, whichever this instance may, until the process ends.
pub fn spawn(server: Arc<ShapeServer>, database_url: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            server.metrics.leader.store(false, Ordering::Relaxed);
            let lock = match server.follow_until_leader().await {
                Ok(lock) => lock,
                Err(e) => {
                    tracing::warn!(error = %e, "following the change log failed; retrying");
                    tokio::time::sleep(TRY_EVERY).await;
                    continue;
                }
            };
            server.metrics.leader.store(true, Ordering::Relaxed);
            match lead(&server, &database_url, lock).await {
                Ok(()) => tracing::info!("no longer the change log's leader"),
                Err(e) => tracing::warn!(error = %e, "leading the change log failed"),
            }
        }
    })
}

/// A connection that holds, or tries to take, the leader's advisory lock. The lock lives as long
/// as the connection's session: closing it (or the process dying) hands the lead on.
pub(super) struct LeaderLock {
    conn: PgConnection,
}

impl LeaderLock {
    pub(super) async fn connect(pool: &PgPool) -> Result<Self, sqlx::Error> {
        let conn = PgConnection::connect_with(&pool.connect_options()).await?;
        Ok(LeaderLock { conn })
    }

    /// Take the lock if no other session holds it.
    pub(super) async fn try_take(&mut self) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LOCK_KEY)
            .fetch_one(&mut self.conn)
            .await
    }

    /// Resolves when the lock's session is gone or stops answering.
    async fn lost(&mut self) -> BoxError {
        loop {
            tokio::time::sleep(TRY_EVERY).await;
            let ping = sqlx::query("SELECT 1").execute(&mut self.conn);
            match tokio::time::timeout(PING_TIMEOUT, ping).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return format!("the leader lock's connection failed: {e}").into(),
                Err(_) => return "the leader lock's connection stopped answering".into(),
            }
        }
    }
}

/// Lead: start a new term, load what the previous leader stored, then consume the slot
/// (reconnecting with backoff) until the lock is lost or a newer term fences our writes.
async fn lead(
    server: &Arc<ShapeServer>,
    database_url: &str,
    mut lock: LeaderLock,
) -> Result<(), BoxError> {
    let term: i64 = sqlx::query_scalar(
        "UPDATE sync_state SET leader_term = leader_term + 1 RETURNING leader_term",
    )
    .fetch_one(&server.pool)
    .await?;
    // Whatever the previous leader stored (and published on its own instance) is in memory here
    // before anything newer is published from the slot.
    server.read_stored_log().await?;
    if let Err(e) = end_stale_slot_readers(&server.pool).await {
        // Not fatal: the stale reader times out, and the consumer retries until then.
        tracing::warn!(error = %e, "could not end the slot's previous reader");
    }
    tracing::info!(term, "leading the change log");
    const FIRST_RETRY: Duration = Duration::from_millis(200);
    let mut backoff = FIRST_RETRY;
    loop {
        let started = tokio::time::Instant::now();
        let stopped = tokio::select! {
            stopped = wal::run(server, database_url, term) => stopped,
            lost = lock.lost() => return Err(lost),
        };
        match stopped {
            Err(e) if deposed(&e) => return Ok(()),
            Err(e) => {
                // A stream that ran for a while was healthy: this is a new outage, retried
                // quickly (else one cut a day after a few earlier ones waits 10 s).
                if started.elapsed() >= HEALTHY_RUN {
                    backoff = FIRST_RETRY;
                }
                tracing::warn!(error = %e, retry_in = ?backoff, "replication stream stopped; reconnecting");
            }
            Ok(()) => tracing::info!("the replication stream ended; reconnecting"),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            lost = lock.lost() => return Err(lost),
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// Whether the writer stopped because a newer leader's term fenced it.
fn deposed(e: &BoxError) -> bool {
    matches!(e.downcast_ref(), Some(WriteError::Deposed))
}

/// A previous leader's replication connection may outlive its lock for a moment (or, cut off,
/// for the server's timeout): as the lock's holder we end it, so the slot is ours at once.
async fn end_stale_slot_readers(pool: &PgPool) -> Result<(), sqlx::Error> {
    let slot = wal::slot_name(pool).await?;
    sqlx::query(
        "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
          WHERE slot_name = $1 AND active_pid IS NOT NULL",
    )
    .bind(slot)
    .execute(pool)
    .await?;
    Ok(())
}
