//! The replication consumer: reads the `turns_sync` publication through a logical replication
//! slot (pgoutput), assembles each transaction at its Commit, publishes it to the in-memory log
//! at once (live requests wake), and hands it to the [`durable`] writer; the slot is acknowledged
//! only up to what that writer has stored. After a restart the slot replays from its acknowledged
//! position and any commit at or below the stored position is skipped: nothing lost, nothing
//! doubled. Only the leader instance runs it (see [`super::leader`]).
use super::durable;
use super::pgoutput::{decode, Datum, Message, Relation};
use super::{Change, Operation, Row, ShapeServer, Tx};
use pgwire_replication::{Lsn, ReplicationClient, ReplicationConfig, ReplicationEvent, TlsConfig};
use serde_json::Value;
use sqlx::{Connection, PgConnection, PgPool};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

pub const PUBLICATION: &str = "turns_sync";
/// Session settings for both the replication stream and snapshot queries, so a value reads the
/// same whichever way it arrives.
pub const SESSION_OPTIONS: &str =
    "-c TimeZone=UTC -c DateStyle=ISO,MDY -c IntervalStyle=postgres -c extra_float_digits=1";

/// A slot name for this database (slots are per cluster; one per database keeps tests apart).
pub async fn slot_name(pool: &PgPool) -> Result<String, sqlx::Error> {
    let db: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(pool)
        .await?;
    let clean: String = db
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    Ok(format!("turns_shapes_{}", &clean[..clean.len().min(40)]))
}

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The advisory lock key that makes instances starting together check the slot one at a time.
const SLOT_SETUP_KEY: i64 = 0x7475_726e_735f_736c;

/// Create the slot if it is missing. A missing slot after we had logged changes means the slot
/// was lost (dropped, or removed by a managed service): changes may have been missed, so the log
/// starts a new epoch and every shape must refetch. Instances check one at a time, so only one
/// creates the slot and starts the new epoch.
pub async fn ensure_slot(server: &ShapeServer, slot: &str) -> Result<(), BoxError> {
    let mut guard = PgConnection::connect_with(&server.pool.connect_options()).await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(SLOT_SETUP_KEY)
        .execute(&mut guard)
        .await?;
    let result = create_slot_if_missing(server, slot).await;
    // The lock ends with the session.
    let _ = guard.close().await;
    result
}

async fn create_slot_if_missing(server: &ShapeServer, slot: &str) -> Result<(), BoxError> {
    let pool = &server.pool;
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
    )
    .bind(slot)
    .fetch_one(pool)
    .await?;
    if exists {
        return Ok(());
    }
    sqlx::query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')")
        .bind(slot)
        .execute(pool)
        .await?;
    let had_log: bool = sqlx::query_scalar(
        "SELECT last_lsn > 0 OR EXISTS (SELECT 1 FROM shape_handles) FROM sync_state",
    )
    .fetch_one(pool)
    .await?;
    if had_log {
        tracing::warn!(
            slot,
            "replication slot was lost and recreated: every shape must refetch"
        );
        rotate(server).await?;
    }
    Ok(())
}

/// Start a new log epoch: drop the log and every handle; clients get 409 and refetch.
pub async fn rotate(server: &ShapeServer) -> Result<(), sqlx::Error> {
    let mut tx = server.pool.begin().await?;
    sqlx::query("DELETE FROM sync_log")
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM shape_handles")
        .execute(&mut *tx)
        .await?;
    let epoch: Uuid = sqlx::query_scalar(
        "UPDATE sync_state SET epoch = gen_random_uuid(), last_lsn = 0,
                floor_lsn = (pg_current_wal_lsn() - '0/0')::bigint, updated_at = now()
          RETURNING epoch",
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    server.reset(epoch);
    Ok(())
}

fn replication_config(database_url: &str, slot: &str) -> Result<ReplicationConfig, BoxError> {
    let url = url::Url::parse(database_url)?;
    let decode = |s: &str| percent_decode(s);
    let mut cfg = ReplicationConfig::new(
        url.host_str().unwrap_or("127.0.0.1"),
        decode(url.username()),
        decode(url.password().unwrap_or("")),
        decode(url.path().trim_start_matches('/')),
        slot,
        PUBLICATION,
    );
    cfg.port = url.port().unwrap_or(5432);
    let sslmode = url
        .query_pairs()
        .find(|(k, _)| k == "sslmode")
        .map(|(_, v)| v.to_string());
    cfg.tls = match sslmode.as_deref() {
        Some("require") | Some("verify-ca") | Some("verify-full") => TlsConfig::require(),
        _ => TlsConfig::disabled(),
    };
    // Render values exactly as the snapshot query does (ISO dates, UTC).
    cfg.options = Some(SESSION_OPTIONS.into());
    cfg.status_interval = Duration::from_secs(1);
    cfg.idle_wakeup_interval = Duration::from_secs(5);
    Ok(cfg)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Consume the slot as the leader of `term` until the stream or the writer fails (or, rarely,
/// the server ends the stream).
pub(super) async fn run(
    server: &Arc<ShapeServer>,
    database_url: &str,
    term: i64,
) -> Result<(), BoxError> {
    let slot = slot_name(&server.pool).await?;
    ensure_slot(server, &slot).await?;
    let client = ReplicationClient::connect(replication_config(database_url, &slot)?).await?;
    let last_stored: u64 = sqlx::query_scalar::<_, i64>("SELECT last_lsn FROM sync_state")
        .fetch_one(&server.pool)
        .await? as u64;
    let (queue, pending) = mpsc::channel(durable::QUEUE);
    let (durable_tx, durable) = watch::channel(0);
    let mut writer = tokio::spawn(durable::write(server.clone(), term, pending, durable_tx));
    let mut consumer = Consumer {
        server,
        client,
        queue,
        durable,
        last_stored,
        queued: 0,
    };
    let result = consumer.consume(&mut writer).await;
    // The writer stores what it was given, then ends (its queue closes with the consumer).
    drop(consumer);
    if !writer.is_finished() {
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut writer).await;
    }
    result
}

/// One replication connection's consumer: decodes transactions, publishes each to the in-memory
/// log at once (live requests wake without waiting for a disk), and queues it for the durable
/// writer, whose progress is what the slot is acknowledged with.
struct Consumer<'a> {
    server: &'a Arc<ShapeServer>,
    client: ReplicationClient,
    queue: mpsc::Sender<durable::Pending>,
    /// How far `sync_log` is durable (the writer's report).
    durable: watch::Receiver<u64>,
    /// Commits at or below this position are already in `sync_log` (a replay after a restart).
    last_stored: u64,
    /// The newest position queued for the writer.
    queued: u64,
}

impl Consumer<'_> {
    async fn consume(
        &mut self,
        writer: &mut tokio::task::JoinHandle<Result<(), durable::WriteError>>,
    ) -> Result<(), BoxError> {
        let server = self.server;
        let mut relations: HashMap<u32, Relation> = HashMap::new();
        let mut open: Option<(u32, Vec<Change>)> = None;
        // A quiet database still moves the slot: an empty logical message every few seconds.
        let mut heartbeat = tokio::time::interval(Duration::from_secs(5));
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let event = tokio::select! {
                ev = self.client.recv() => ev?,
                Ok(()) = self.durable.changed() => {
                    let durable = *self.durable.borrow_and_update();
                    self.client.update_applied_lsn(Lsn::from(durable));
                    continue;
                }
                stored = &mut *writer => {
                    return Err(match stored {
                        Ok(Err(e)) => e.into(),
                        _ => "the change log writer stopped".into(),
                    });
                }
                _ = heartbeat.tick() => {
                    sqlx::query("SELECT pg_logical_emit_message(false, 'turns.heartbeat', '')")
                        .execute(&server.pool)
                        .await?;
                    continue;
                }
            };
            let Some(event) = event else { return Ok(()) };
            match event {
                ReplicationEvent::Begin { xid, .. } => open = Some((xid, Vec::new())),
                ReplicationEvent::XLogData { data, .. } => match decode(&data)? {
                    Message::Relation(r) => {
                        relations.insert(r.id, r);
                    }
                    Message::Insert { relation, new } => push(
                        &mut open,
                        &relations,
                        relation,
                        Operation::Insert,
                        None,
                        Some(new),
                    )?,
                    Message::Update { relation, old, new } => push(
                        &mut open,
                        &relations,
                        relation,
                        Operation::Update,
                        old,
                        Some(new),
                    )?,
                    Message::Delete { relation, old } => push(
                        &mut open,
                        &relations,
                        relation,
                        Operation::Delete,
                        Some(old),
                        None,
                    )?,
                    Message::Truncate { .. } => {
                        // Rows vanished without per-row deletes: shapes cannot follow; start over
                        // (once what came before is durable, so that the new epoch starts clean).
                        tracing::warn!("TRUNCATE on a synced table: every shape must refetch");
                        let queued = self.queued;
                        self.durable.wait_for(|d| *d >= queued).await?;
                        rotate(server).await?;
                        self.last_stored = 0;
                    }
                    _ => {}
                },
                ReplicationEvent::Commit {
                    lsn,
                    end_lsn,
                    commit_time_micros,
                } => {
                    // Postgres epoch (2000-01-01) microseconds → unix milliseconds.
                    let commit_ms = (commit_time_micros / 1000 + 946_684_800_000).max(0) as u64;
                    server
                        .metrics
                        .last_commit_ms
                        .store(commit_ms, std::sync::atomic::Ordering::Relaxed);
                    let (xid, changes) = open.take().unwrap_or_default();
                    let lsn = lsn.as_u64();
                    let tx = (lsn > self.last_stored && !changes.is_empty()).then(|| {
                        self.last_stored = lsn;
                        server.publish(Arc::new(Tx { lsn, xid, changes }))
                    });
                    server.mark_seen(end_lsn.as_u64());
                    self.enqueue(tx, end_lsn.as_u64(), false).await?;
                }
                ReplicationEvent::KeepAlive { wal_end, .. } => {
                    if open.is_none() {
                        // Everything before wal_end that concerns us is logged.
                        server.mark_seen(wal_end.as_u64());
                        self.enqueue(None, wal_end.as_u64(), false).await?;
                    }
                }
                ReplicationEvent::Message {
                    lsn,
                    transactional: false,
                    ..
                } => {
                    if open.is_none() {
                        server.mark_seen(lsn.as_u64());
                        // A barrier (or the heartbeat): followers may wait for it.
                        self.enqueue(None, lsn.as_u64(), true).await?;
                    }
                }
                ReplicationEvent::Message { .. } => {}
                ReplicationEvent::StoppedAt { .. } => return Ok(()),
            }
        }
    }

    /// Hand a position (and its transaction, if it still needs storing) to the durable writer.
    async fn enqueue(
        &mut self,
        tx: Option<Arc<Tx>>,
        end: u64,
        announce: bool,
    ) -> Result<(), BoxError> {
        if tx.is_none() && !announce && end <= self.queued {
            return Ok(());
        }
        self.queued = self.queued.max(end);
        self.queue
            .send(durable::Pending { tx, end, announce })
            .await
            .map_err(|_| "the change log writer stopped".into())
    }
}

fn to_row(relation: &Relation, values: Vec<Datum>, fallback: Option<&Row>) -> Row {
    relation
        .columns
        .iter()
        .zip(values)
        .map(|(c, d)| {
            let v = match d {
                Datum::Null => Value::Null,
                Datum::Text(t) => Value::String(t),
                // Unchanged TOAST: the old row (REPLICA IDENTITY FULL) has the value.
                Datum::Unchanged => fallback
                    .and_then(|o| o.get(&c.name).cloned())
                    .unwrap_or(Value::Null),
            };
            (c.name.clone(), v)
        })
        .collect()
}

fn push(
    open: &mut Option<(u32, Vec<Change>)>,
    relations: &HashMap<u32, Relation>,
    relation: u32,
    op: Operation,
    old: Option<Vec<Datum>>,
    new: Option<Vec<Datum>>,
) -> Result<(), BoxError> {
    let rel = relations
        .get(&relation)
        .ok_or("change for an unknown relation")?;
    let (_, changes) = open.as_mut().ok_or("change outside a transaction")?;
    let old = old.map(|o| to_row(rel, o, None));
    let new = new.map(|n| to_row(rel, n, old.as_ref()));
    changes.push(Change {
        relation: format!("{}.{}", rel.schema, rel.name),
        op,
        new,
        old,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_decoding_of_url_parts() {
        assert_eq!(super::percent_decode("p%40ss%2Fw"), "p@ss/w");
        assert_eq!(super::percent_decode("plain"), "plain");
        assert_eq!(super::percent_decode("bad%zz"), "bad%zz");
    }
}
