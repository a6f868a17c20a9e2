//! The replication consumer: reads the `turns_sync` publication through a logical replication
//! slot (pgoutput), assembles each transaction at its Commit, stores it — together with any that
//! arrived right behind it — in `sync_log` with the new position (one database transaction), and
//! only then acknowledges the slot and wakes shape readers. After a restart the slot replays from its acknowledged position and any
//! commit at or below the stored position is skipped: nothing lost, nothing doubled.
use super::pgoutput::{decode, Datum, Message, Relation};
use super::{Change, Op, Row, ShapeServer, Tx};
use pgwire_replication::{ReplicationClient, ReplicationConfig, ReplicationEvent, TlsConfig};
use serde_json::Value;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
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

/// A replication connection that lasted this long was healthy: its failure starts the backoff
/// over.
const HEALTHY_RUN: Duration = Duration::from_secs(5);

/// Run the consumer until the process ends, reconnecting with backoff after errors.
pub fn spawn(server: Arc<ShapeServer>, database_url: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        const FIRST_RETRY: Duration = Duration::from_millis(200);
        let mut backoff = FIRST_RETRY;
        loop {
            let started = tokio::time::Instant::now();
            match run(&server, &database_url).await {
                Ok(()) => return,
                Err(e) => {
                    // A stream that ran for a while was healthy: this is a new outage, retried
                    // quickly (else one cut a day after a few earlier ones waits 10 s).
                    if started.elapsed() >= HEALTHY_RUN {
                        backoff = FIRST_RETRY;
                    }
                    tracing::warn!(error = %e, retry_in = ?backoff, "replication stream stopped; reconnecting");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    })
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Create the slot if it is missing. A missing slot after we had logged changes means the slot
/// was lost (dropped, or removed by a managed service): changes may have been missed, so the log
/// starts a new epoch and every shape must refetch.
pub async fn ensure_slot(server: &ShapeServer, slot: &str) -> Result<(), BoxError> {
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

async fn run(server: &Arc<ShapeServer>, database_url: &str) -> Result<(), BoxError> {
    let slot = slot_name(&server.pool).await?;
    ensure_slot(server, &slot).await?;
    let mut client = ReplicationClient::connect(replication_config(database_url, &slot)?).await?;
    let mut last_stored: u64 = sqlx::query_scalar::<_, i64>("SELECT last_lsn FROM sync_state")
        .fetch_one(&server.pool)
        .await? as u64;
    let mut relations: HashMap<u32, Relation> = HashMap::new();
    let mut open: Option<(u32, Vec<Change>)> = None;
    // A quiet database still moves the slot: an empty logical message every few seconds.
    let mut heartbeat = tokio::time::interval(Duration::from_secs(5));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Transactions that arrive back to back are stored together (one durable write for many),
    // then acknowledged and published in commit order.
    let mut batch: Vec<Tx> = Vec::new();
    let mut batch_end = None;
    loop {
        let event = if batch.is_empty() {
            tokio::select! {
                ev = client.recv() => ev?,
                _ = heartbeat.tick() => {
                    sqlx::query("SELECT pg_logical_emit_message(false, 'turns.heartbeat', '')")
                        .execute(&server.pool)
                        .await?;
                    continue;
                }
            }
        } else {
            match tokio::time::timeout(Duration::ZERO, client.recv()).await {
                Ok(ev) => ev?,
                Err(_) => {
                    flush(server, &client, &mut batch, &mut batch_end).await?;
                    continue;
                }
            }
        };
        let Some(event) = event else { return Ok(()) };
        match event {
            ReplicationEvent::Begin { xid, .. } => open = Some((xid, Vec::new())),
            ReplicationEvent::XLogData { data, .. } => match decode(&data)? {
                Message::Relation(r) => {
                    relations.insert(r.id, r);
                }
                Message::Insert { relation, new } => {
                    push(&mut open, &relations, relation, Op::Insert, None, Some(new))?
                }
                Message::Update { relation, old, new } => {
                    push(&mut open, &relations, relation, Op::Update, old, Some(new))?
                }
                Message::Delete { relation, old } => {
                    push(&mut open, &relations, relation, Op::Delete, Some(old), None)?
                }
                Message::Truncate { .. } => {
                    // Rows vanished without per-row deletes: shapes cannot follow; start over.
                    tracing::warn!("TRUNCATE on a synced table: every shape must refetch");
                    flush(server, &client, &mut batch, &mut batch_end).await?;
                    rotate(server).await?;
                    last_stored = 0;
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
                if lsn > last_stored && !changes.is_empty() {
                    batch.push(Tx { lsn, xid, changes });
                    last_stored = lsn;
                }
                batch_end = Some(end_lsn);
                if batch.len() >= 1000
                    || batch.iter().map(|t| t.changes.len()).sum::<usize>() >= 20_000
                {
                    flush(server, &client, &mut batch, &mut batch_end).await?;
                } else if batch.is_empty() {
                    client.update_applied_lsn(end_lsn);
                    server.mark_seen(end_lsn.as_u64());
                }
            }
            ReplicationEvent::KeepAlive { wal_end, .. } => {
                if open.is_none() && batch.is_empty() {
                    // Everything before wal_end that concerns us has been stored.
                    client.update_applied_lsn(wal_end);
                    server.mark_seen(wal_end.as_u64());
                }
            }
            ReplicationEvent::Message {
                lsn,
                transactional: false,
                ..
            } => {
                if open.is_none() && batch.is_empty() {
                    client.update_applied_lsn(lsn);
                    server.mark_seen(lsn.as_u64());
                }
            }
            ReplicationEvent::Message { .. } => {}
            ReplicationEvent::StoppedAt { .. } => return Ok(()),
        }
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
    op: Op,
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

/// Store a batch of transactions and the new position in one database transaction, then (and
/// only then) acknowledge the slot and wake readers.
async fn flush(
    server: &ShapeServer,
    client: &ReplicationClient,
    batch: &mut Vec<Tx>,
    end: &mut Option<pgwire_replication::Lsn>,
) -> Result<(), BoxError> {
    if !batch.is_empty() {
        store(&server.pool, batch).await?;
    }
    if let Some(end) = end.take() {
        client.update_applied_lsn(end);
        for tx in batch.drain(..) {
            server.publish(tx);
        }
        server.mark_seen(end.as_u64());
    }
    Ok(())
}

async fn store(pool: &PgPool, txs: &[Tx]) -> Result<(), sqlx::Error> {
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
         SELECT * FROM unnest($1::bigint[], $2::int[], $3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[])",
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
    sqlx::query("UPDATE sync_state SET last_lsn = $1, updated_at = now()")
        .bind(last)
        .execute(&mut *db)
        .await?;
    db.commit().await
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
