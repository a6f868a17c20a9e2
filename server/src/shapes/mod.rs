//! The shape server: Electric v1 HTTP shapes over a change log fed by logical replication.
//!
//! Data flow: Postgres WAL → [`wal`] (pgoutput, one transaction at a time) → an in-memory tail
//! (appended in commit order; live requests wake) → [`durable`] writes `sync_log` in batches, and
//! only then is the replication slot acknowledged. With several app instances, one [`leader`]
//! does this and the others [`follow`] `sync_log` into their own tails. [`http`] serves each shape by filtering that
//! one global log with the shape's where clause. A shape's initial rows come from a snapshot query; the snapshot's `pg_current_snapshot()` tells
//! which logged transactions it already contains, so snapshot and stream join without gaps or
//! doubles. Offsets are global log positions `{commit_lsn}_{op}`.
//!
//! Modules, one job each: [`log`] (transactions, tail, `sync_log` reads), [`durable`]
//! (`sync_log` writes), [`catalog`] (tables),
//! [`shape`] (definitions resolved), [`snapshot`] (what initial rows contain), [`registry`]
//! (handles), [`view`] (a handle's messages after an offset), [`index`] (which shapes a change
//! affects), [`live`] (waiting requests), [`shape_log`] (a live shape's own changes),
//! [`encode`] (the protocol's JSON), [`metrics`]; the protocol's types (offsets, handles,
//! operations, control messages, header names) are `turns::shape_protocol`. [`wal`] (on the leader) or
//! [`follow`] (elsewhere) feeds the log, [`leader`] decides which, and [`http`] serves it.
mod catalog;
mod durable;
mod encode;
pub mod filter;
mod follow;
pub mod http;
mod index;
pub mod leader;
mod live;
mod log;
mod metrics;
mod moved;
pub mod pgoutput;
mod registry;
mod shape;
mod shape_log;
mod snapshot;
mod view;
pub mod wal;

pub use catalog::{quote_ident, ColumnInfo, TableInfo};
pub use encode::SnapshotBody;
pub use live::Waiter;
pub use log::{Change, Operation, Row, Tx};
pub use metrics::Metrics;
pub use registry::{new_handle_id, Handle};
pub use shape::{Shape, ShapeDef};
pub use snapshot::Snapshot;
pub use turns::shape_protocol::Offset;

use sqlx::PgPool;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    /// 400 with the field and reason.
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// 409: the handle is unknown, from another log epoch, or its offset was trimmed.
    #[error("shape must be refetched")]
    MustRefetch,
    /// 503: the change log is behind (replication not running); retry shortly.
    #[error("the change stream is not ready")]
    NotReady,
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl ShapeError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        ShapeError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

pub struct ShapeServer {
    pub pool: PgPool,
    pub long_poll: Duration,
    epoch: RwLock<Uuid>,
    tail: RwLock<VecDeque<Arc<Tx>>>,
    /// Every logged transaction above this LSN is in `tail` (older ones only in `sync_log`).
    tail_from: AtomicU64,
    /// Every logged transaction up to this LSN is in `sync_log`.
    durable: AtomicU64,
    /// The newest logged position.
    head: watch::Sender<Offset>,
    /// How far the WAL consumer has read (commits, keepalives, barrier messages).
    seen: watch::Sender<u64>,
    handles: RwLock<HashMap<String, Arc<Handle>>>,
    tables: RwLock<HashMap<(String, String), Arc<TableInfo>>>,
    /// Recent initial snapshots by definition, shared by every client asking for the same one.
    shared: std::sync::Mutex<HashMap<String, Arc<registry::SharedSnapshot>>>,
    /// The latest read of each handle, shared by the requests at the same offset.
    reads: std::sync::Mutex<HashMap<String, view::SharedRead>>,
    consumer: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Shapes that have had live requests, to find the ones a new transaction wakes.
    live: RwLock<index::Index>,
    pub metrics: Metrics,
}

impl ShapeServer {
    /// Load the log's epoch and head from the database.
    pub async fn open(pool: PgPool, long_poll: Duration) -> Result<Arc<Self>, ShapeError> {
        let (epoch, last_lsn): (Uuid, i64) =
            sqlx::query_as("SELECT epoch, last_lsn FROM sync_state")
                .fetch_one(&pool)
                .await?;
        let last_op: Option<i32> =
            sqlx::query_scalar("SELECT max(op) FROM sync_log WHERE lsn = $1")
                .bind(last_lsn)
                .fetch_one(&pool)
                .await?;
        let head = Offset {
            lsn: last_lsn as u64,
            op: last_op.map_or(u64::MAX, |o| o as u64),
        };
        Ok(Arc::new(ShapeServer {
            pool,
            long_poll,
            epoch: RwLock::new(epoch),
            tail: RwLock::new(VecDeque::new()),
            tail_from: AtomicU64::new(last_lsn as u64),
            durable: AtomicU64::new(last_lsn as u64),
            head: watch::channel(head).0,
            seen: watch::channel(last_lsn as u64).0,
            handles: RwLock::new(HashMap::new()),
            tables: RwLock::new(HashMap::new()),
            shared: std::sync::Mutex::new(HashMap::new()),
            reads: std::sync::Mutex::new(HashMap::new()),
            consumer: std::sync::Mutex::new(None),
            live: RwLock::new(index::Index::default()),
            metrics: Metrics::default(),
        }))
    }

    /// Run the change stream's task for this server (see [`leader::spawn`]).
    pub fn set_consumer(&self, task: tokio::task::JoinHandle<()>) {
        if let Some(old) = self
            .consumer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(task)
        {
            old.abort();
        }
    }

    /// Stop the change stream (its connections close, the leader's lock with them; the slot
    /// keeps its position).
    pub fn stop(&self) {
        if let Some(task) = self
            .consumer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
    }

    fn epoch(&self) -> Uuid {
        *self.epoch.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The log was reset (slot lost): forget everything; every handle now answers 409.
    pub fn reset(&self, epoch: Uuid) {
        *self.epoch.write().unwrap_or_else(|e| e.into_inner()) = epoch;
        self.tail.write().unwrap_or_else(|e| e.into_inner()).clear();
        self.tail_from.store(0, Ordering::Release);
        self.handles
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.reads.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}
