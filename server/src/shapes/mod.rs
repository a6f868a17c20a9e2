//! The shape server: Electric v1 HTTP shapes over a change log fed by logical replication.
//!
//! Data flow: Postgres WAL → [`wal`] (pgoutput, one transaction at a time) → the `sync_log` table
//! and an in-memory tail (appended in commit order, then the replication slot is acknowledged)
//! → [`http`] serves each shape by filtering that one global log with the shape's where clause.
//! A shape's initial rows come from a snapshot query; the snapshot's `pg_current_snapshot()` tells
//! which logged transactions it already contains, so snapshot and stream join without gaps or
//! doubles. Offsets are global log positions `{commit_lsn}_{op}`.
pub mod filter;
pub mod http;
pub mod pgoutput;
pub mod wal;

use crate::shapes::filter::{ColType, Columns, Filter};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::PgPool;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// A row as column → Postgres text value (JSON string) or NULL.
pub type Row = Map<String, Value>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Insert,
    Update,
    Delete,
}

#[derive(Clone, Debug)]
pub struct Change {
    /// `schema.table`
    pub relation: String,
    pub op: Op,
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

/// A position in the log: `{lsn}_{op}`; `0_inf` sits after a snapshot, before the first change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Offset {
    pub lsn: u64,
    pub op: u64,
}

impl Offset {
    pub const BEFORE_ALL: Offset = Offset {
        lsn: 0,
        op: u64::MAX,
    };

    pub fn parse(s: &str) -> Option<Offset> {
        let (lsn, op) = s.split_once('_')?;
        let lsn = lsn.parse().ok()?;
        let op = if op == "inf" {
            u64::MAX
        } else {
            op.parse().ok()?
        };
        Some(Offset { lsn, op })
    }
}

impl std::fmt::Display for Offset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.op == u64::MAX {
            write!(f, "{}_inf", self.lsn)
        } else {
            write!(f, "{}_{}", self.lsn, self.op)
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ColumnInfo {
    pub name: String,
    pub ty: String,
    #[serde(skip)]
    pub kind: Option<ColType>,
    pub not_null: bool,
    pub pk_index: Option<usize>,
    pub max_length: Option<i32>,
}

impl ColumnInfo {
    fn kind(&self) -> ColType {
        self.kind.unwrap_or(ColType::Other)
    }
}

#[derive(Clone, Debug)]
pub struct TableInfo {
    pub schema: String,
    pub name: String,
    pub columns: Vec<ColumnInfo>,
}

impl TableInfo {
    pub fn relation(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
    pub fn pk(&self) -> Vec<&ColumnInfo> {
        let mut pk: Vec<&ColumnInfo> = self
            .columns
            .iter()
            .filter(|c| c.pk_index.is_some())
            .collect();
        pk.sort_by_key(|c| c.pk_index);
        pk
    }
}

/// What a client asked for (validated), minus the protocol position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShapeDef {
    pub schema: String,
    pub table: String,
    pub where_clause: Option<String>,
    pub params: Vec<String>,
    /// Projection (always includes the primary key); `None` = every column.
    pub columns: Option<Vec<String>>,
    pub replica_full: bool,
}

/// A definition resolved against the table: its columns, compiled filter and projection.
pub struct Shape {
    pub def: ShapeDef,
    pub table: Arc<TableInfo>,
    pub filter: Filter,
    pub selected: Vec<usize>,
    types: Vec<ColType>,
    /// `schema.table`, as changes name their relation.
    relation: String,
}

impl Shape {
    fn matches(&self, row: &Row) -> bool {
        let columns = &self.table.columns;
        self.filter.matches_with(
            &|i| row.get(&columns[i].name).and_then(Value::as_str),
            &self.types,
        )
    }

    fn project(&self, row: &Row) -> Row {
        self.selected
            .iter()
            .map(|&i| {
                let name = &self.table.columns[i].name;
                (name.clone(), row.get(name).cloned().unwrap_or(Value::Null))
            })
            .collect()
    }

    /// `"schema"."table"/"pk1"/…` with `/` doubled and NULL as `_`.
    fn key(&self, row: &Row) -> String {
        self.key_with(|c| row.get(&c.name).and_then(Value::as_str))
    }

    fn key_with<'a>(&self, value_of: impl Fn(&ColumnInfo) -> Option<&'a str>) -> String {
        let mut key = format!("\"{}\".\"{}\"", self.table.schema, self.table.name);
        for c in self.table.pk() {
            match value_of(c) {
                Some(v) => {
                    key.push_str("/\"");
                    key.push_str(&v.replace('/', "//"));
                    key.push('"');
                }
                None => key.push_str("/_"),
            }
        }
        key
    }
}

/// `pg_current_snapshot()` of a shape's initial query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub xmin: u64,
    pub xmax: u64,
    pub xip: Vec<u64>,
}

impl Snapshot {
    /// Whether a logged transaction (32-bit xid from the WAL) is already in the snapshot.
    pub fn contains(&self, xid: u32) -> bool {
        // Widen to 64 bits relative to xmax, wraparound-aware: WAL xids are near the snapshot.
        let diff = xid.wrapping_sub(self.xmax as u32) as i32;
        let full = self.xmax.wrapping_add_signed(i64::from(diff));
        if full < self.xmin {
            return true;
        }
        full < self.xmax && !self.xip.contains(&full)
    }

    fn parse(text: &str) -> Option<Snapshot> {
        let mut parts = text.split(':');
        let xmin = parts.next()?.parse().ok()?;
        let xmax = parts.next()?.parse().ok()?;
        let xip = parts
            .next()
            .unwrap_or("")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().ok())
            .collect::<Option<_>>()?;
        Some(Snapshot { xmin, xmax, xip })
    }
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

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Counters and gauges for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub transactions: AtomicU64,
    pub changes: AtomicU64,
    pub errors: AtomicU64,
    pub live_waiting: AtomicI64,
    pub snapshots: AtomicU64,
    pub snapshot_rows: AtomicU64,
    /// Commit time (unix ms) of the newest logged transaction, for the lag in ms.
    pub last_commit_ms: AtomicU64,
    /// Unix ms when it was logged.
    pub last_logged_ms: AtomicU64,
}

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

/// How many recent transactions stay in memory (older ones are read from `sync_log`).
const TAIL_TRANSACTIONS: usize = 20_000;

pub struct ShapeServer {
    pub pool: PgPool,
    pub long_poll: Duration,
    epoch: RwLock<Uuid>,
    tail: RwLock<VecDeque<Arc<Tx>>>,
    /// Every logged transaction above this LSN is in `tail` (older ones only in `sync_log`).
    tail_from: AtomicU64,
    /// The newest logged position.
    head: watch::Sender<Offset>,
    /// How far the WAL consumer has read (commits, keepalives, barrier messages).
    seen: watch::Sender<u64>,
    handles: RwLock<HashMap<String, Arc<Handle>>>,
    tables: RwLock<HashMap<(String, String), Arc<TableInfo>>>,
    consumer: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Live requests waiting for a change to their shape; a new transaction wakes only the ones
    /// it concerns (evaluated once per shape), not every waiting request.
    waiters: std::sync::Mutex<HashMap<u64, Parked>>,
    next_waiter: AtomicU64,
    pub metrics: Metrics,
}

/// A waiting live request's shape and its wake-up.
type Parked = (Arc<Shape>, Arc<tokio::sync::Notify>);

/// A registered live request; deregisters when dropped.
pub struct Waiter {
    server: Arc<ShapeServer>,
    id: u64,
    pub notify: Arc<tokio::sync::Notify>,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.server
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
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
            head: watch::channel(head).0,
            seen: watch::channel(last_lsn as u64).0,
            handles: RwLock::new(HashMap::new()),
            tables: RwLock::new(HashMap::new()),
            consumer: std::sync::Mutex::new(None),
            waiters: std::sync::Mutex::new(HashMap::new()),
            next_waiter: AtomicU64::new(0),
            metrics: Metrics::default(),
        }))
    }

    /// Run the WAL consumer for this server (see [`wal::spawn`]).
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

    /// Stop the WAL consumer (its replication connection closes; the slot keeps its position).
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

    fn epoch(&self) -> Uuid {
        *self.epoch.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Append a stored transaction to the tail and wake waiters (called by the WAL consumer after
    /// the transaction is durable in `sync_log`).
    pub fn publish(&self, tx: Tx) {
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
        let tx = Arc::new(tx);
        {
            let mut tail = self.tail.write().unwrap_or_else(|e| e.into_inner());
            tail.push_back(tx.clone());
            while tail.len() > TAIL_TRANSACTIONS {
                if let Some(old) = tail.pop_front() {
                    self.tail_from.store(old.lsn, Ordering::Release);
                }
            }
        }
        self.head.send_replace(head);
        self.wake(&tx);
    }

    /// Wake the live requests whose shape this transaction touches.
    fn wake(&self, tx: &Tx) {
        let waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        let mut decided: HashMap<*const Shape, bool> = HashMap::new();
        for (shape, notify) in waiters.values() {
            let hit = *decided.entry(Arc::as_ptr(shape)).or_insert_with(|| {
                tx.changes.iter().any(|c| {
                    c.relation == shape.relation
                        && (c.new.as_ref().is_some_and(|r| shape.matches(r))
                            || c.old.as_ref().is_some_and(|r| shape.matches(r)))
                })
            });
            if hit {
                notify.notify_one();
            }
        }
    }

    /// Register a live request for `shape`: its `notify` fires when a logged transaction
    /// concerns the shape (a permit is kept if it fires before anyone waits).
    pub fn wait_for_shape(self: &Arc<Self>, shape: &Arc<Shape>) -> Waiter {
        let id = self.next_waiter.fetch_add(1, Ordering::Relaxed);
        let notify = Arc::new(tokio::sync::Notify::new());
        self.waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, (shape.clone(), notify.clone()));
        Waiter {
            server: self.clone(),
            id,
            notify,
        }
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
    }

    /// Column names, types, keys of a table we publish.
    async fn table(&self, schema: &str, name: &str) -> Result<Arc<TableInfo>, ShapeError> {
        let key = (schema.to_string(), name.to_string());
        if let Some(t) = self
            .tables
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(t.clone());
        }
        let published: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_publication_tables
                             WHERE pubname = 'turns_sync' AND schemaname = $1 AND tablename = $2)",
        )
        .bind(schema)
        .bind(name)
        .fetch_one(&self.pool)
        .await?;
        if !published {
            return Err(ShapeError::invalid(
                "table",
                format!("{schema}.{name} is not a synced table"),
            ));
        }
        let rows: Vec<(String, String, bool, bool, Option<i32>, i32)> = sqlx::query_as(
            "SELECT a.attname::text, format_type(a.atttypid, NULL), t.typtype = 'e', a.attnotnull,
                    array_position(i.indkey::int2[], a.attnum)::int - 1,
                    CASE WHEN a.atttypmod > 4 AND a.atttypid IN (1042, 1043) THEN a.atttypmod - 4 ELSE -1 END
               FROM pg_attribute a
               JOIN pg_class c ON c.oid = a.attrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_type t ON t.oid = a.atttypid
               LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
              WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum",
        )
        .bind(schema)
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        let columns = rows
            .into_iter()
            .map(
                |(name, ty, is_enum, not_null, pk_index, max_length)| ColumnInfo {
                    kind: Some(ColType::from_pg(&ty, is_enum)),
                    name,
                    ty,
                    not_null,
                    pk_index: pk_index.map(|i| i as usize),
                    max_length: (max_length > 0).then_some(max_length),
                },
            )
            .collect();
        let info = Arc::new(TableInfo {
            schema: schema.into(),
            name: name.into(),
            columns,
        });
        self.tables
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, info.clone());
        Ok(info)
    }

    /// Validate a definition against its table.
    pub async fn resolve(&self, def: ShapeDef) -> Result<Arc<Shape>, ShapeError> {
        // Postgres text cannot hold NUL, nor jsonb (where handles keep their definition) \u0000:
        // refuse it here, or the catalog lookup or the stored handle fails as a server error.
        let nul = |s: &str| s.contains('\0');
        if nul(&def.schema) || nul(&def.table) {
            let (schema, name) = (&def.schema, &def.table);
            return Err(ShapeError::invalid(
                "table",
                format!("{schema}.{name} is not a synced table"),
            ));
        }
        if def.where_clause.as_deref().is_some_and(nul) {
            return Err(ShapeError::invalid("where", "must not contain NUL"));
        }
        if def.params.iter().any(|p| nul(p)) {
            return Err(ShapeError::invalid("params", "must not contain NUL"));
        }
        let table = self.table(&def.schema, &def.table).await?;
        let named: Vec<(String, ColType)> = table
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.kind()))
            .collect();
        let filter = match &def.where_clause {
            Some(w) => filter::compile(w, &Columns(&named), &def.params)
                .map_err(|e| ShapeError::invalid("where", e))?,
            None => Filter::Const(true),
        };
        let selected = match &def.columns {
            None => (0..table.columns.len()).collect(),
            Some(cols) => {
                let mut idx = Vec::new();
                for c in cols {
                    let i = table
                        .columns
                        .iter()
                        .position(|x| &x.name == c)
                        .ok_or_else(|| {
                            ShapeError::invalid("columns", format!("unknown column {c:?}"))
                        })?;
                    if !idx.contains(&i) {
                        idx.push(i);
                    }
                }
                if table.pk().iter().any(|pk| !cols.contains(&pk.name)) {
                    return Err(ShapeError::invalid(
                        "columns",
                        "must include the primary key",
                    ));
                }
                idx.sort_unstable();
                idx
            }
        };
        let types = table.columns.iter().map(ColumnInfo::kind).collect();
        Ok(Arc::new(Shape {
            def,
            relation: table.relation(),
            table,
            filter,
            selected,
            types,
        }))
    }

    /// The `electric-schema` header value for a shape.
    pub fn schema_json(shape: &Shape) -> String {
        let mut out = Map::new();
        for &i in &shape.selected {
            let c = &shape.table.columns[i];
            let mut m = Map::new();
            let ty = match c.ty.as_str() {
                "integer" => "int4",
                "bigint" => "int8",
                "smallint" => "int2",
                "boolean" => "bool",
                "character varying" => "varchar",
                "character" => "bpchar",
                "timestamp with time zone" => "timestamptz",
                "timestamp without time zone" => "timestamp",
                other => other,
            };
            m.insert("type".into(), ty.into());
            if let Some(p) = c.pk_index {
                m.insert("pk_index".into(), p.into());
            }
            if c.not_null {
                m.insert("not_null".into(), true.into());
            }
            if let Some(l) = c.max_length {
                m.insert("max_length".into(), l.into());
            }
            out.insert(c.name.clone(), Value::Object(m));
        }
        Value::Object(out).to_string()
    }

    /// Create a handle with its initial snapshot rows (in table order).
    pub async fn create_handle(
        &self,
        shape: Arc<Shape>,
        with_snapshot: bool,
    ) -> Result<(Arc<Handle>, SnapshotBody), ShapeError> {
        let epoch = self.epoch();
        let mut body = SnapshotBody::default();
        let (snapshot, start_lsn) = if with_snapshot {
            // Read the WAL position *before* the snapshot: every transaction the snapshot misses
            // commits after it, so scanning the log from here (skipping what the snapshot has)
            // joins the two without gaps.
            let start: i64 = sqlx::query_scalar("SELECT (pg_current_wal_lsn() - '0/0')::bigint")
                .fetch_one(&self.pool)
                .await?;
            let mut tx = self.pool.begin().await?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
            // The same rendering settings as the replication stream (wal::SESSION_OPTIONS).
            sqlx::query(
                "SELECT set_config('TimeZone', 'UTC', true), set_config('DateStyle', 'ISO, MDY', true),
                        set_config('IntervalStyle', 'postgres', true), set_config('extra_float_digits', '1', true)",
            )
            .execute(&mut *tx)
            .await?;
            let snap: String = sqlx::query_scalar("SELECT pg_current_snapshot()::text")
                .fetch_one(&mut *tx)
                .await?;
            let cols = &shape.table.columns;
            let select = cols
                .iter()
                .map(|c| match c.kind() {
                    // boolout renders t/f (as the WAL does); a ::text cast would say true/false.
                    ColType::Bool => format!(
                        "CASE WHEN {0} THEN 't' WHEN NOT {0} THEN 'f' END",
                        quote_ident(&c.name)
                    ),
                    _ => format!("{}::text", quote_ident(&c.name)),
                })
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT {select} FROM {}.{}",
                quote_ident(&shape.table.schema),
                quote_ident(&shape.table.name)
            );
            let mut stream = sqlx::query(&sql).fetch(&mut *tx);
            use futures_util::TryStreamExt;
            use sqlx::Row as _;
            while let Some(r) = stream.try_next().await? {
                let values = (0..cols.len())
                    .map(|i| r.try_get::<Option<&str>, _>(i))
                    .collect::<Result<Vec<_>, _>>()?;
                if shape.filter.matches(&values, &shape.types) {
                    body.push(&shape, &values);
                }
            }
            drop(stream);
            tx.commit().await?;
            let snapshot = Snapshot::parse(&snap).ok_or_else(|| {
                ShapeError::Db(sqlx::Error::Protocol(format!("snapshot {snap:?}")))
            })?;
            (Some(snapshot), start as u64)
        } else {
            (None, self.head().lsn)
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

    /// A non-transactional logical message: once the consumer has seen it, every commit before
    /// it is in the log. Returns its LSN.
    async fn emit_barrier(&self) -> Result<u64, ShapeError> {
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

    /// Prometheus text for `/metrics`.
    pub async fn metrics_text(&self) -> String {
        let m = &self.metrics;
        let lag_bytes: Option<i64> =
            sqlx::query_scalar("SELECT (pg_current_wal_lsn() - '0/0')::bigint")
                .fetch_one(&self.pool)
                .await
                .ok()
                .map(|wal: i64| wal - *self.seen.borrow() as i64);
        let lag_ms = m.last_logged_ms.load(Ordering::Relaxed) as i64
            - m.last_commit_ms.load(Ordering::Relaxed) as i64;
        let handles = self.handles.read().unwrap_or_else(|e| e.into_inner()).len();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
        let rows: [(&str, &str, &str, String); 10] = [
            (
                "turns_replication_lag_bytes",
                "gauge",
                "WAL bytes not yet read by the shape log",
                lag_bytes.unwrap_or(-1).to_string(),
            ),
            (
                "turns_replication_lag_ms",
                "gauge",
                "Commit to logged delay of the newest transaction",
                lag_ms.max(0).to_string(),
            ),
            (
                "turns_shape_transactions_total",
                "counter",
                "Transactions logged",
                load(&m.transactions),
            ),
            (
                "turns_shape_changes_total",
                "counter",
                "Row changes logged",
                load(&m.changes),
            ),
            (
                "turns_shape_errors_total",
                "counter",
                "Shape requests that failed on our side",
                load(&m.errors),
            ),
            (
                "turns_shape_live_requests_waiting",
                "gauge",
                "Live requests held open",
                m.live_waiting.load(Ordering::Relaxed).to_string(),
            ),
            (
                "turns_shape_handles",
                "gauge",
                "Shape handles in memory",
                handles.to_string(),
            ),
            (
                "turns_shape_snapshots_total",
                "counter",
                "Initial snapshots served",
                load(&m.snapshots),
            ),
            (
                "turns_shape_snapshot_rows_total",
                "counter",
                "Rows in initial snapshots (rows per shape = this / snapshots)",
                load(&m.snapshot_rows),
            ),
            (
                "turns_shape_log_head_lsn",
                "gauge",
                "LSN of the newest logged transaction",
                self.head().lsn.to_string(),
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            ));
        }
        out
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

    /// Logged transactions with changes after `after`, oldest first, about `limit` changes.
    async fn transactions_after(
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
        // Whole transactions only: a response never ends inside one.
        let rows = sqlx::query_as(
            "SELECT lsn, op, xid, relation, operation, new_row, old_row FROM sync_log
              WHERE lsn > $1
                AND lsn <= (SELECT max(lsn) FROM (SELECT lsn FROM sync_log WHERE lsn > $1 ORDER BY lsn, op LIMIT $2) AS page)
              ORDER BY lsn, op",
        )
        .bind(after.lsn as i64)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(group_log_rows(rows))
    }

    /// Transactions at or below `lsn` that were in progress when `snapshot` was taken.
    async fn in_progress_at(
        &self,
        snapshot: &Snapshot,
        lsn: u64,
    ) -> Result<Vec<Arc<Tx>>, ShapeError> {
        if snapshot.xip.is_empty() {
            return Ok(Vec::new());
        }
        let xids: Vec<i64> = snapshot
            .xip
            .iter()
            .map(|x| (x & 0xFFFF_FFFF) as i64)
            .collect();
        let rows = sqlx::query_as(
            "SELECT lsn, op, xid, relation, operation, new_row, old_row FROM sync_log
              WHERE lsn <= $1 AND xid = ANY($2) ORDER BY lsn, op",
        )
        .bind(lsn as i64)
        .bind(xids)
        .fetch_all(&self.pool)
        .await?;
        Ok(group_log_rows(rows))
    }

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

type LogRow = (i64, i32, i64, String, String, Option<Value>, Option<Value>);

fn group_log_rows(rows: Vec<LogRow>) -> Vec<Arc<Tx>> {
    let mut out: Vec<Tx> = Vec::new();
    for (lsn, _op, xid, relation, operation, new, old) in rows {
        let op = match operation.as_str() {
            "insert" => Op::Insert,
            "update" => Op::Update,
            _ => Op::Delete,
        };
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

/// The shape-log message for one change, if it concerns the shape. An update that moves a row
/// into the shape is an insert for it; out of it, a delete.
fn message_for(shape: &Shape, change: &Change, tx: &Tx, at: Offset) -> Option<Value> {
    let was_in = change.old.as_ref().is_some_and(|o| shape.matches(o));
    let is_in = change.new.as_ref().is_some_and(|n| shape.matches(n));
    let (op, row, old_value) = match (change.op, was_in, is_in) {
        (Op::Insert, _, true) => (Op::Insert, shape.project(change.new.as_ref()?), None),
        (Op::Update, false, true) => (Op::Insert, shape.project(change.new.as_ref()?), None),
        (Op::Update, true, true) => {
            let new = change.new.as_ref()?;
            let old = change.old.as_ref()?;
            if shape.def.replica_full {
                (Op::Update, shape.project(new), Some(shape.project(old)))
            } else {
                // Changed columns and the key only.
                let full = shape.project(new);
                let pk: Vec<&str> = shape.table.pk().iter().map(|c| c.name.as_str()).collect();
                let changed = full
                    .into_iter()
                    .filter(|(k, v)| pk.contains(&k.as_str()) || old.get(k) != Some(v))
                    .collect();
                (Op::Update, changed, None)
            }
        }
        (Op::Update | Op::Delete, true, false) => {
            let old = change.old.as_ref()?;
            let row = if shape.def.replica_full {
                shape.project(old)
            } else {
                key_only(shape, old)
            };
            (Op::Delete, row, None)
        }
        _ => return None,
    };
    let key_source = change
        .new
        .as_ref()
        .filter(|_| op != Op::Delete)
        .or(change.old.as_ref())?;
    let mut headers = serde_json::json!({
        "operation": op,
        "relation": [shape.table.schema, shape.table.name],
        "txids": [tx.xid],
        "lsn": tx.lsn.to_string(),
        "op_position": at.op,
    });
    if at.op + 1 == tx.changes.len() as u64 {
        headers["last"] = true.into();
    }
    let mut msg =
        serde_json::json!({ "key": shape.key(key_source), "value": row, "headers": headers });
    if let Some(old) = old_value {
        msg["old_value"] = Value::Object(old);
    }
    Some(msg)
}

fn key_only(shape: &Shape, row: &Row) -> Row {
    shape
        .table
        .pk()
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                row.get(&c.name).cloned().unwrap_or(Value::Null),
            )
        })
        .collect()
}

pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
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

/// A snapshot's insert messages, serialised as they are read (comma-separated JSON objects),
/// so a large snapshot is one buffer rather than a map per row.
#[derive(Default)]
pub struct SnapshotBody {
    pub rows: usize,
    pub json: Vec<u8>,
}

impl SnapshotBody {
    fn push(&mut self, shape: &Shape, values: &[Option<&str>]) {
        let out = &mut self.json;
        if self.rows > 0 {
            out.push(b',');
        }
        self.rows += 1;
        let key = shape.key_with(|c| {
            let i = shape.table.columns.iter().position(|x| x.name == c.name)?;
            values[i]
        });
        out.extend_from_slice(b"{\"key\":");
        json_str(out, &key);
        out.extend_from_slice(b",\"value\":{");
        for (n, &i) in shape.selected.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            json_str(out, &shape.table.columns[i].name);
            out.push(b':');
            match values[i] {
                Some(v) => json_str(out, v),
                None => out.extend_from_slice(b"null"),
            }
        }
        out.extend_from_slice(b"},\"headers\":{\"operation\":\"insert\",\"relation\":[");
        json_str(out, &shape.table.schema);
        out.push(b',');
        json_str(out, &shape.table.name);
        out.extend_from_slice(b"]}}");
    }
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    // Serialising a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_order_and_print_like_the_protocol() {
        let a = Offset::parse("0_inf").expect("0_inf");
        let b = Offset::parse("100_0").expect("100_0");
        let c = Offset::parse("100_3").expect("100_3");
        assert!(a < b && b < c);
        assert_eq!(a.to_string(), "0_inf");
        assert_eq!(c.to_string(), "100_3");
        for bad in ["", "x_1", "1", "1_", "-1_0", "1_-2"] {
            assert!(Offset::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn snapshot_visibility_follows_pg_current_snapshot() {
        let s = Snapshot::parse("100:105:101,103").expect("snapshot");
        assert!(s.contains(99), "committed before xmin");
        assert!(s.contains(102), "committed between, not in progress");
        assert!(
            !s.contains(101) && !s.contains(103),
            "in progress at snapshot time"
        );
        assert!(!s.contains(105) && !s.contains(200), "started after");
        let epoch1 = Snapshot {
            xmin: (1 << 32) + 5,
            xmax: (1 << 32) + 10,
            xip: vec![],
        };
        assert!(epoch1.contains(7));
        assert!(!epoch1.contains(12));
        assert!(epoch1.contains(u32::MAX), "previous epoch's xid is old");
    }
}
