//! Counters and gauges, and their Prometheus text for `/metrics`.
use super::ShapeServer;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

pub(super) fn unix_now() -> u64 {
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
    /// The size of a shape request's future (the latest measured), in bytes.
    pub request_future_bytes: AtomicU64,
    /// Live requests answered (with changes, or at the end of the long-poll).
    pub live_answered: AtomicU64,
    pub snapshots: AtomicU64,
    pub snapshot_rows: AtomicU64,
    /// Reads of a handle's log encoded, and reads answered with one already encoded.
    pub reads_encoded: AtomicU64,
    pub reads_shared: AtomicU64,
    /// Reads served from a live shape's own log instead of a scan of the global log.
    pub reads_from_shape_log: AtomicU64,
    /// Commit time (unix ms) of the newest logged transaction, for the lag in ms.
    pub last_commit_ms: AtomicU64,
    /// Unix ms when it was logged.
    pub last_logged_ms: AtomicU64,
    /// Whether this instance reads the replication slot (else it follows `sync_log`).
    pub leader: AtomicBool,
}

impl ShapeServer {
    /// Prometheus text for `/metrics`.
    pub async fn metrics_text(&self) -> String {
        let m = &self.metrics;
        let lag_bytes: Option<i64> =
            sqlx::query_scalar("SELECT (pg_current_wal_lsn() - '0/0')::bigint")
                .fetch_one(&self.pool)
                .await
                .ok()
                .map(|wal: i64| wal - *self.seen.borrow() as i64);
        // Commit times come with the WAL: only the leader knows them.
        let lag_ms = match m.last_commit_ms.load(Ordering::Relaxed) {
            0 => 0,
            commit => m.last_logged_ms.load(Ordering::Relaxed) as i64 - commit as i64,
        };
        let handles = self.handles.read().unwrap_or_else(|e| e.into_inner()).len();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
        let rows: [(&str, &str, &str, String); 16] = [
            (
                "turns_replication_lag_bytes",
                "gauge",
                "WAL bytes not yet read by the shape log",
                lag_bytes.unwrap_or(-1).to_string(),
            ),
            (
                "turns_replication_lag_ms",
                "gauge",
                "Commit to logged delay of the newest transaction (on the leader)",
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
                "turns_shape_live_requests_answered_total",
                "counter",
                "Live requests answered (a caching proxy in front makes this about one per shape and change)",
                load(&m.live_answered),
            ),
            (
                "turns_shape_request_future_bytes",
                "gauge",
                "Size of a shape request's future, what a parked live request holds besides its connection",
                load(&m.request_future_bytes),
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
                "turns_shape_reads_encoded_total",
                "counter",
                "Reads of a shape's log encoded to JSON",
                load(&m.reads_encoded),
            ),
            (
                "turns_shape_reads_shared_total",
                "counter",
                "Reads answered with the same bytes as another request at the same offset",
                load(&m.reads_shared),
            ),
            (
                "turns_shape_reads_from_shape_log_total",
                "counter",
                "Reads served from a live shape's own log (the rest scan the global log)",
                load(&m.reads_from_shape_log),
            ),
            (
                "turns_shape_leader",
                "gauge",
                "1 if this instance reads the replication slot, 0 if it follows the stored log",
                u8::from(m.leader.load(Ordering::Relaxed)).to_string(),
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
}
