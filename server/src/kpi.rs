//! The dashboard's numbers, computed in SQL over the viewer's portfolio (the policy's scope,
//! narrowed by the filters; never widened). Each number is one aggregate query on indexed
//! columns, so 100,000 turns are summed in the database, not shipped to the server.
use crate::queries::scope_sql;
use chrono::NaiveDate;
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use sqlx::{PgPool, Postgres};
use turns::kpi::{
    Cost, Cycle, Dashboard, KpiFilter, Spread, StageCount, VendorOnTime, Week, BUCKETS,
};
use turns::model::{Named, OVERDUE_AFTER_DAYS};
use turns::{Actor, ApprovalLevel, Decimal};
use uuid::Uuid;

/// The viewer's turns after the filters (`mine`), and the range (`r`): `$1`/`$2` the scope's,
/// `$3` PM, `$4` senior PM, `$5` core, `$6`..`$8` from, to, today. Every query starts with it so
/// every parameter has a type, whichever the query reads.
fn with_mine(turn_filter: &str) -> String {
    format!(
        "WITH r AS (SELECT $6::date AS lo, $7::date AS hi, $8::date AS today),
              mine AS (
                SELECT t.* FROM turns t JOIN properties p ON p.id = t.property_id
                 WHERE t.is_active AND {turn_filter}
                   AND ($1::uuid IS NULL OR true) AND ($2::approval_status IS NULL OR true)
                   AND ($3::uuid IS NULL OR p.property_manager_id = $3)
                   AND ($4::uuid IS NULL OR p.sr_property_manager_id = $4)
                   AND ($5::bool IS NULL OR p.is_core = $5))"
    )
}

/// Counts per bucket, median and average of `days` (an expression) over `rows`.
fn spread_sql(days: &str) -> String {
    let counts: Vec<String> = BUCKETS
        .iter()
        .map(|(lo, hi, _)| match hi {
            Some(hi) => format!("count(*) FILTER (WHERE {days} BETWEEN {lo} AND {hi})"),
            None => format!("count(*) FILTER (WHERE {days} >= {lo})"),
        })
        .collect();
    format!(
        "{}, percentile_cont(0.5) WITHIN GROUP (ORDER BY {days}), avg({days})::float8",
        counts.join(", ")
    )
}

type SpreadRow = (i64, i64, i64, i64, i64, Option<f64>, Option<f64>);

fn spread(row: SpreadRow) -> Spread {
    let (a, b, c, d, e, median, average) = row;
    Spread {
        counts: vec![a, b, c, d, e],
        median,
        average,
    }
}

/// The dashboard for `actor`, or `None` when their role has no portfolio to measure.
pub async fn dashboard(
    pool: &PgPool,
    actor: &Actor,
    filter: KpiFilter,
    today: NaiveDate,
) -> Result<Option<Dashboard>, sqlx::Error> {
    if !actor.sees_dashboard() {
        return Ok(None);
    }
    let (from, to) = filter.range(today);
    let s = scope_sql(actor.scope());
    let mine = with_mine(s.turn_filter);
    // Binds the shared parameters to a query.
    macro_rules! bound {
        ($sql:expr) => {
            bind(sqlx::query_as($sql), &s, &filter, from, to, today)
        };
    }

    let completed = "t.turn_completion_date BETWEEN r.lo AND r.hi";
    let turn_days = "greatest(t.turn_completion_date - t.move_out_date, 0)";
    let sql = format!(
        "{mine} SELECT {} FROM mine t, r WHERE {completed} AND t.move_out_date IS NOT NULL",
        spread_sql(turn_days)
    );
    let turn_days_spread = spread(bound!(&sql).fetch_one(pool).await?);

    let sql = format!(
        "{mine} SELECT date_trunc('week', t.turn_completion_date)::date, count(*),
                       avg({turn_days})::float8
           FROM mine t, r WHERE {completed} AND t.move_out_date IS NOT NULL
          GROUP BY 1 ORDER BY 1"
    );
    let trend: Vec<(NaiveDate, i64, f64)> = bound!(&sql).fetch_all(pool).await?;

    // Open: not completed. Vacant: moved out by today.
    let vacant_days = "(r.today - t.move_out_date)";
    let sql = format!(
        "{mine} SELECT {} FROM mine t, r
          WHERE t.turn_completion_date IS NULL AND t.move_out_date <= r.today",
        spread_sql(vacant_days)
    );
    let vacant = spread(bound!(&sql).fetch_one(pool).await?);
    let sql = format!(
        "{mine} SELECT count(*) FROM mine t, r
          WHERE t.turn_completion_date IS NULL
            AND ((r.today - t.move_out_date) > {OVERDUE_AFTER_DAYS}
                 OR t.expected_completion_date < r.today)"
    );
    let (overdue,): (i64,) = bound!(&sql).fetch_one(pool).await?;

    let sql = format!(
        "{mine} SELECT count(*), coalesce(sum(t.turn_amount), 0),
                       coalesce(sum(t.approved_turn_amount), 0),
                       coalesce(sum(t.turn_amount - t.approved_turn_amount), 0)
           FROM mine t, r WHERE {completed} AND t.turn_amount IS NOT NULL"
    );
    let (turns, amount, approved, variance): (i64, Decimal, Decimal, Decimal) =
        bound!(&sql).fetch_one(pool).await?;

    let hours = "extract(epoch FROM d.decided_at - d.asked_at) / 3600";
    let sql = format!(
        "{mine} SELECT d.level, count(*),
                       percentile_cont(0.5) WITHIN GROUP (ORDER BY {hours})
                         FILTER (WHERE d.asked_at IS NOT NULL),
                       (avg({hours}) FILTER (WHERE d.asked_at IS NOT NULL))::float8
           FROM approval_decisions d JOIN mine t ON t.id = d.turn_id, r
          WHERE (d.decided_at AT TIME ZONE 'UTC')::date BETWEEN r.lo AND r.hi
          GROUP BY d.level ORDER BY d.level"
    );
    let cycles: Vec<(ApprovalLevel, i64, Option<f64>, Option<f64>)> =
        bound!(&sql).fetch_all(pool).await?;

    let sql = format!(
        "{mine} SELECT s.name::text, coalesce(s.color, '#64748b')::text, count(t.id)
           FROM turn_stages s LEFT JOIN mine t
                ON t.stage_id = s.id AND t.turn_completion_date IS NULL, r
          WHERE s.is_active AND NOT s.is_complete_stage
          GROUP BY s.id ORDER BY s.display_order"
    );
    let stages: Vec<(String, String, i64)> = bound!(&sql).fetch_all(pool).await?;

    let sql = format!(
        "{mine} SELECT v.name::text, count(*),
                       count(*) FILTER (WHERE t.turn_completion_date <= t.expected_completion_date)
           FROM mine t JOIN vendors v ON v.id = t.vendor_id, r
          WHERE {completed} AND t.expected_completion_date IS NOT NULL
          GROUP BY v.name ORDER BY v.name"
    );
    let vendors: Vec<(String, i64, i64)> = bound!(&sql).fetch_all(pool).await?;

    // Whom the viewer may filter by: the managers of homes they see.
    let people = |column: &str| {
        format!(
            "SELECT DISTINCT u.id,
                    coalesce(nullif(concat_ws(' ', u.first_name, u.last_name), ''), u.email)::text
               FROM properties p JOIN users u ON u.id = p.{column}
              WHERE {} AND ($1::uuid IS NULL OR true) AND ($2::approval_status IS NULL OR true)
              ORDER BY 2, 1",
            s.property_filter
        )
    };
    let named = |rows: Vec<(Uuid, String)>| {
        rows.into_iter()
            .map(|(id, name)| Named { id, name })
            .collect()
    };
    let managers = sqlx::query_as(&people("property_manager_id"))
        .bind(s.id)
        .bind(s.status)
        .fetch_all(pool)
        .await?;
    let seniors = sqlx::query_as(&people("sr_property_manager_id"))
        .bind(s.id)
        .bind(s.status)
        .fetch_all(pool)
        .await?;

    Ok(Some(Dashboard {
        filter,
        from,
        to,
        turn_days: turn_days_spread,
        trend: trend
            .into_iter()
            .map(|(start, turns, average_days)| Week {
                start,
                turns,
                average_days,
            })
            .collect(),
        vacant,
        overdue,
        cost: Cost {
            turns,
            amount,
            approved,
            variance,
        },
        cycles: cycles
            .into_iter()
            .map(|(level, decisions, median_hours, average_hours)| Cycle {
                level,
                decisions,
                median_hours,
                average_hours,
            })
            .collect(),
        stages: stages
            .into_iter()
            .map(|(stage, color, turns)| StageCount {
                stage,
                color,
                turns,
            })
            .collect(),
        vendors: vendors
            .into_iter()
            .map(|(vendor, completed, on_time)| VendorOnTime {
                vendor,
                completed,
                on_time,
            })
            .collect(),
        managers: named(managers),
        seniors: named(seniors),
    }))
}

fn bind<'q, O>(
    q: QueryAs<'q, Postgres, O, PgArguments>,
    s: &crate::queries::ScopeSql,
    f: &KpiFilter,
    from: NaiveDate,
    to: NaiveDate,
    today: NaiveDate,
) -> QueryAs<'q, Postgres, O, PgArguments> {
    q.bind(s.id)
        .bind(s.status)
        .bind(f.pm)
        .bind(f.senior)
        .bind(f.core)
        .bind(from)
        .bind(to)
        .bind(today)
}
