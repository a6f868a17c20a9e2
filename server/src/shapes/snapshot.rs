//! A shape's initial rows, read in one snapshot, and which logged transactions that snapshot
//! already contains (`pg_current_snapshot()`).
use super::encode::SnapshotBody;
use super::filter::ColType;
use super::{quote_ident, Shape, ShapeError, ShapeServer};

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

    pub(super) fn parse(text: &str) -> Option<Snapshot> {
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

impl ShapeServer {
    /// A shape's initial rows (in table order), the snapshot they were read in, and the WAL
    /// position read just before it.
    pub(super) async fn take_snapshot(
        &self,
        shape: &Shape,
    ) -> Result<(Snapshot, u64, SnapshotBody), ShapeError> {
        let mut body = SnapshotBody::default();
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
            // Every column is selected as text: the per-value type check can be skipped.
            let values = (0..cols.len())
                .map(|i| r.try_get_unchecked::<Option<&str>, _>(i))
                .collect::<Result<Vec<_>, _>>()?;
            if shape.filter.matches(&values, &shape.types) {
                body.push(shape, &values);
            }
        }
        drop(stream);
        tx.commit().await?;
        let snapshot = Snapshot::parse(&snap)
            .ok_or_else(|| ShapeError::Db(sqlx::Error::Protocol(format!("snapshot {snap:?}"))))?;
        Ok((snapshot, start as u64, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
