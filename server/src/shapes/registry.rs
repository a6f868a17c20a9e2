//! Shape handles: created with their snapshot, found again after a restart (they are stored),
//! expired when idle.
use super::encode::{JsonChunks, SnapshotBody};
use super::metrics::unix_now;
use super::{Offset, Shape, ShapeDef, ShapeError, ShapeServer, Snapshot};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;
use uuid::Uuid;

/// How long a definition's snapshot is served to further clients. Clients arriving together (a
/// deploy, a morning's logins, many tabs of one vendor) share one snapshot query and one body;
/// a later client gets a fresh one, so nobody starts far behind the log's head.
const SHARE_SNAPSHOT_FOR: Duration = Duration::from_secs(30);

/// One definition's shared snapshot: taken once (the first caller runs the query, the others
/// wait for it), then served as the same bytes.
pub(super) struct SharedSnapshot {
    taken: OnceCell<(Arc<Handle>, JsonChunks)>,
    created: Instant,
}

/// A shape handle: a definition plus the snapshot its initial rows came from.
pub struct Handle {
    pub id: String,
    pub epoch: Uuid,
    pub shape: Arc<Shape>,
    pub snapshot: Option<Snapshot>,
    /// WAL position read just before the snapshot: later commits may be missing from it.
    pub start_lsn: u64,
    /// The first read waits until the log has seen this position, so every commit at or below
    /// `start_lsn` (including the snapshot's in-progress ones) is in the log.
    pub barrier: u64,
    /// Unix seconds of the last request for this handle (idle handles expire).
    pub last_used: AtomicU64,
}

impl Handle {
    /// Whether a read from `after` follows the handle's snapshot (the first read joins the two,
    /// and is the handle's own).
    pub(super) fn past_snapshot(&self, after: Offset) -> bool {
        after.lsn >= self.start_lsn && after != Offset::BEFORE_ALL
    }
}

impl ShapeServer {
    /// A handle for `shape` and its initial rows as a JSON array: the same handle and bytes for
    /// every client that asks for this definition within [`SHARE_SNAPSHOT_FOR`].
    pub async fn shared_snapshot(
        &self,
        shape: Arc<Shape>,
    ) -> Result<(Arc<Handle>, JsonChunks), ShapeError> {
        // Only snapshot requests pay for the key (the definition as JSON), not live ones.
        let key = serde_json::to_string(&shape.def).unwrap_or_default();
        let entry = {
            let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            shared.retain(|_, e| e.created.elapsed() < SHARE_SNAPSHOT_FOR);
            shared
                .entry(key)
                .or_insert_with(|| {
                    Arc::new(SharedSnapshot {
                        taken: OnceCell::new(),
                        created: Instant::now(),
                    })
                })
                .clone()
        };
        // A failed attempt leaves the cell empty: the next waiter tries again.
        let (handle, body) = entry
            .taken
            .get_or_try_init(|| async {
                let (handle, snapshot) = self.create_handle(shape, true).await?;
                Ok::<_, ShapeError>((handle, snapshot.finish()))
            })
            .await?;
        handle.last_used.store(unix_now(), Ordering::Relaxed);
        Ok((handle.clone(), body.clone()))
    }

    /// Create a handle with its initial snapshot rows (in table order).
    pub async fn create_handle(
        &self,
        shape: Arc<Shape>,
        with_snapshot: bool,
    ) -> Result<(Arc<Handle>, SnapshotBody), ShapeError> {
        let epoch = self.epoch();
        let (snapshot, start_lsn, body) = if with_snapshot {
            let (snapshot, start_lsn, body) = self.take_snapshot(&shape).await?;
            (Some(snapshot), start_lsn, body)
        } else {
            (None, self.head().lsn, SnapshotBody::default())
        };
        let barrier = self.emit_barrier().await?;
        let id = new_handle_id(&shape.def);
        let snap = snapshot.clone().unwrap_or(Snapshot {
            xmin: 0,
            xmax: 0,
            xip: vec![],
        });
        sqlx::query(
            "INSERT INTO shape_handles (handle, epoch, definition, snapshot_xmin, snapshot_xmax, snapshot_xip, start_lsn)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(epoch)
        .bind(sqlx::types::Json(&shape.def))
        .bind(snap.xmin as i64)
        .bind(snap.xmax as i64)
        .bind(snap.xip.iter().map(|x| *x as i64).collect::<Vec<_>>())
        .bind(start_lsn as i64)
        .execute(&self.pool)
        .await?;
        self.metrics.snapshots.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .snapshot_rows
            .fetch_add(body.rows as u64, Ordering::Relaxed);
        let handle = Arc::new(Handle {
            id: id.clone(),
            epoch,
            shape,
            snapshot,
            start_lsn,
            barrier: barrier as u64,
            last_used: AtomicU64::new(unix_now()),
        });
        self.handles
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, handle.clone());
        Ok((handle, body))
    }

    /// Housekeeping: remember when in-memory handles were last used, forget idle ones, expire
    /// handles unused for `handle_ttl`, and bound the log to its newest `keep_changes` changes
    /// (clients behind the trimmed part get 409 and refetch).
    pub async fn maintain(
        &self,
        handle_ttl: Duration,
        keep_changes: i64,
    ) -> Result<(), ShapeError> {
        let now = unix_now();
        let (ids, times): (Vec<String>, Vec<i64>) = {
            let mut handles = self.handles.write().unwrap_or_else(|e| e.into_inner());
            let used: Vec<(String, i64)> = handles
                .values()
                .map(|h| (h.id.clone(), h.last_used.load(Ordering::Relaxed) as i64))
                .collect();
            handles.retain(|_, h| now.saturating_sub(h.last_used.load(Ordering::Relaxed)) < 3600);
            used.into_iter().unzip()
        };
        self.prune_live();
        sqlx::query(
            "UPDATE shape_handles h SET last_used_at = greatest(h.last_used_at, to_timestamp(u.t))
               FROM unnest($1::text[], $2::bigint[]) AS u(id, t) WHERE h.handle = u.id",
        )
        .bind(ids)
        .bind(times)
        .execute(&self.pool)
        .await?;
        sqlx::query("DELETE FROM shape_handles WHERE last_used_at < now() - $1::interval")
            .bind(format!("{} seconds", handle_ttl.as_secs()))
            .execute(&self.pool)
            .await?;
        let cut: Option<i64> = sqlx::query_scalar(
            "SELECT lsn FROM sync_log ORDER BY lsn DESC, op DESC OFFSET $1 LIMIT 1",
        )
        .bind(keep_changes)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(cut) = cut {
            let mut tx = self.pool.begin().await?;
            sqlx::query("DELETE FROM sync_log WHERE lsn <= $1")
                .bind(cut)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE sync_state SET floor_lsn = greatest(floor_lsn, $1 + 1)")
                .bind(cut)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            let mut tail = self.tail.write().unwrap_or_else(|e| e.into_inner());
            tail.retain(|t| t.lsn as i64 > cut);
            self.tail_from.fetch_max(cut as u64, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Find a handle (memory, then the database: handles survive restarts).
    pub async fn handle(&self, id: &str) -> Result<Arc<Handle>, ShapeError> {
        if let Some(h) = self
            .handles
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
        {
            h.last_used.store(unix_now(), Ordering::Relaxed);
            return if h.epoch == self.epoch() {
                Ok(h.clone())
            } else {
                Err(ShapeError::MustRefetch)
            };
        }
        type HandleRow = (Uuid, sqlx::types::Json<ShapeDef>, i64, i64, Vec<i64>, i64);
        let row: Option<HandleRow> = sqlx::query_as(
            "UPDATE shape_handles SET last_used_at = now() WHERE handle = $1
             RETURNING epoch, definition, snapshot_xmin, snapshot_xmax, snapshot_xip, start_lsn",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some((epoch, def, xmin, xmax, xip, start)) = row else {
            return Err(ShapeError::MustRefetch);
        };
        if epoch != self.epoch() {
            return Err(ShapeError::MustRefetch);
        }
        let shape = self.resolve(def.0).await?;
        let snapshot = (xmax > 0).then(|| Snapshot {
            xmin: xmin as u64,
            xmax: xmax as u64,
            xip: xip.into_iter().map(|x| x as u64).collect(),
        });
        let handle = Arc::new(Handle {
            id: id.to_string(),
            epoch,
            shape,
            snapshot,
            start_lsn: start as u64,
            barrier: start as u64,
            last_used: AtomicU64::new(unix_now()),
        });
        self.handles
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), handle.clone());
        Ok(handle)
    }
}

/// A fresh handle id: the definition's hash (readable in logs) and a random part.
pub fn new_handle_id(def: &ShapeDef) -> String {
    format!("{}-{}", short_hash(def), Uuid::new_v4().simple())
}

fn short_hash(def: &ShapeDef) -> String {
    use sha2::{Digest, Sha256};
    let json = serde_json::to_vec(def).unwrap_or_default();
    hex::encode(&Sha256::digest(&json)[..6])
}
