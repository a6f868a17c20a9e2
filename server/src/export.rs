//! Exports a spreadsheet opens: `GET /api/export/turns.csv` with the dashboard's filters
//! (`pm`, `senior`, `core`, `from`, `to`), the viewer's turns as the policy scopes them; and
//! `GET /api/export/audit.csv`, the audit log, for admins.
//!
//! Streamed: rows are read from a database cursor and sent in chunks through a small bounded
//! channel, so 100,000 turns never sit in memory and a slow download slows the reading. Dates are
//! ISO (`2026-12-03`), money plain decimals (`1250.00`), and a cell that starts like a formula is
//! quoted with `'` so a spreadsheet shows it instead of running it. A vendor's file has no money.
use crate::error::ApiError;
use crate::http::signed_in;
use crate::queries::scope_sql;
use crate::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use chrono::NaiveDate;
use futures_util::{StreamExt, TryStreamExt};
use serde::Deserialize;
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use sqlx::Postgres;
use turns::{ApprovalStatus, Decimal};
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/export/turns.csv", get(turns_csv))
        .route("/api/export/audit.csv", get(audit_csv))
}

/// The query as typed in a URL: empty values mean "any".
#[derive(Deserialize, Default)]
struct Query {
    pm: Option<String>,
    senior: Option<String>,
    core: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// What the export is narrowed to (completion in `from..=to`, or still open, when given).
#[derive(Clone, Debug, Default)]
pub struct ExportFilter {
    pub pm: Option<Uuid>,
    pub senior: Option<Uuid>,
    pub core: Option<bool>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
}

impl Query {
    fn parse(self) -> Result<ExportFilter, ApiError> {
        fn some(v: Option<String>) -> Option<String> {
            v.filter(|v| !v.trim().is_empty())
        }
        fn value<T: std::str::FromStr>(
            v: Option<String>,
            what: &str,
        ) -> Result<Option<T>, ApiError> {
            some(v)
                .map(|v| {
                    v.trim()
                        .parse()
                        .map_err(|_| ApiError::BadRequest(format!("{what} is not valid: {v:?}.")))
                })
                .transpose()
        }
        let core = match some(self.core).as_deref() {
            None => None,
            Some("core") => Some(true),
            Some("non-core") => Some(false),
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "core must be \"core\" or \"non-core\", not {other:?}."
                )))
            }
        };
        Ok(ExportFilter {
            pm: value(self.pm, "pm")?,
            senior: value(self.senior, "senior")?,
            core,
            from: value(self.from, "from (a date like 2026-12-01)")?,
            to: value(self.to, "to (a date like 2026-12-31)")?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ExportRow {
    turn_id: String,
    property_code: String,
    property_name: String,
    street_address: String,
    city: Option<String>,
    state: Option<String>,
    is_core: bool,
    property_manager: Option<String>,
    stage: String,
    vendor: Option<String>,
    wo_number: Option<String>,
    move_out_date: Option<NaiveDate>,
    expected_completion_date: Option<NaiveDate>,
    turn_completion_date: Option<NaiveDate>,
    days: Option<i32>,
    turn_amount: Option<Decimal>,
    approved_turn_amount: Option<Decimal>,
    approval_status: Option<ApprovalStatus>,
    rejection_reason: Option<String>,
}

const HEADER: &[&str] = &[
    "Turn ID",
    "Property ID",
    "Property",
    "Street address",
    "City",
    "State",
    "Core",
    "Property manager",
    "Stage",
    "Vendor",
    "Work order",
    "Move-out",
    "Expected completion",
    "Completed",
    "Turn days or days vacant",
];
const MONEY_HEADER: &[&str] = &["Amount", "Approved amount", "Approval", "Rejection reason"];

/// One CSV cell: quoted when it holds a comma, quote or line break; text that a spreadsheet
/// would read as a formula is prefixed with `'`.
fn cell(out: &mut String, text: &str, free_text: bool) {
    let formula = free_text && text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = formula || text.contains([',', '"', '\n', '\r']);
    if quote {
        out.push('"');
    }
    if formula {
        out.push('\'');
    }
    for ch in text.chars() {
        if ch == '"' {
            out.push('"');
        }
        out.push(ch);
    }
    if quote {
        out.push('"');
    }
}

fn line(out: &mut String, cells: &[(String, bool)]) {
    for (i, (text, free)) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        cell(out, text, *free);
    }
    out.push_str("\r\n");
}

fn text(v: &Option<String>) -> (String, bool) {
    (v.clone().unwrap_or_default(), true)
}

fn plain<T: ToString>(v: Option<T>) -> (String, bool) {
    (v.map(|v| v.to_string()).unwrap_or_default(), false)
}

impl ExportRow {
    fn write(&self, out: &mut String, money: bool) {
        let mut cells = vec![
            (self.turn_id.clone(), true),
            (self.property_code.clone(), true),
            (self.property_name.clone(), true),
            (self.street_address.clone(), true),
            text(&self.city),
            text(&self.state),
            ((if self.is_core { "yes" } else { "no" }).to_string(), false),
            text(&self.property_manager),
            (self.stage.clone(), true),
            text(&self.vendor),
            text(&self.wo_number),
            plain(self.move_out_date),
            plain(self.expected_completion_date),
            plain(self.turn_completion_date),
            plain(self.days),
        ];
        if money {
            cells.extend([
                plain(self.turn_amount.map(|a| a.round_dp(2))),
                plain(self.approved_turn_amount.map(|a| a.round_dp(2))),
                plain(self.approval_status.map(ApprovalStatus::label)),
                text(&self.rejection_reason),
            ]);
        }
        line(out, &cells);
    }
}

/// Send the buffer on once it is this big.
const CHUNK: usize = 64 * 1024;

async fn turns_csv(State(state): State<AppState>, req: Request) -> Response {
    match export(state, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn export(state: AppState, req: Request) -> Result<Response, ApiError> {
    let actor = signed_in(&req)?;
    let query: Query = serde_urlencoded::from_str(req.uri().query().unwrap_or(""))
        .map_err(|_| ApiError::BadRequest("The export's filters could not be read.".into()))?;
    let filter = query.parse()?;
    let money = actor.sees_turn_financials();
    let s = scope_sql(actor.scope());
    let sql = format!(
        "SELECT t.turn_id, p.property_id AS property_code, p.name AS property_name,
                p.street_address, p.city, p.state, p.is_core,
                nullif(concat_ws(' ', pm.first_name, pm.last_name), '') AS property_manager,
                st.name AS stage, v.name AS vendor, t.wo_number, t.move_out_date,
                t.expected_completion_date, t.turn_completion_date,
                greatest(coalesce(t.turn_completion_date, current_date) - t.move_out_date, 0)
                  AS days,
                t.turn_amount, t.approved_turn_amount, t.approval_status, t.rejection_reason
           FROM turns t JOIN properties p ON p.id = t.property_id
           JOIN turn_stages st ON st.id = t.stage_id
           LEFT JOIN users pm ON pm.id = p.property_manager_id
           LEFT JOIN vendors v ON v.id = t.vendor_id
          WHERE t.is_active AND {turn}
            AND ($1::uuid IS NULL OR true) AND ($2::approval_status IS NULL OR true)
            AND ($3::uuid IS NULL OR p.property_manager_id = $3)
            AND ($4::uuid IS NULL OR p.sr_property_manager_id = $4)
            AND ($5::bool IS NULL OR p.is_core = $5)
            AND (t.turn_completion_date IS NULL
                 OR t.turn_completion_date >= coalesce($6::date, '-infinity')
                    AND t.turn_completion_date <= coalesce($7::date, 'infinity'))
          ORDER BY t.turn_id",
        turn = s.turn_filter
    );
    let mut head: Vec<String> = HEADER.iter().map(|h| h.to_string()).collect();
    if money {
        head.extend(MONEY_HEADER.iter().map(|h| h.to_string()));
    }
    let (id, status) = (s.id, s.status);
    let body = stream_csv(
        state.pool.clone(),
        sql,
        move |q: QueryAs<'_, Postgres, ExportRow, PgArguments>| {
            q.bind(id)
                .bind(status)
                .bind(filter.pm)
                .bind(filter.senior)
                .bind(filter.core)
                .bind(filter.from)
                .bind(filter.to)
        },
        head,
        move |row: &ExportRow, out: &mut String| row.write(out, money),
    );
    Ok(attachment("turns", body))
}

/// The audit log, newest first (admins only): who did what to which row, when (on the server,
/// and on the device when it was done offline), and the row before and after as JSON.
async fn audit_csv(State(state): State<AppState>, req: Request) -> Response {
    let actor = match signed_in(&req) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    if !actor.role.is_admin() {
        return ApiError::Forbidden.into_response();
    }
    let sql = "SELECT a.created_at, a.device_time, u.email AS actor, a.action, a.table_name,
                      a.row_id, a.before::text AS before, a.after::text AS after
                 FROM audit_logs a LEFT JOIN users u ON u.id = a.actor_id
                ORDER BY a.created_at DESC, a.id DESC"
        .to_string();
    let head = [
        "When",
        "Done on the device",
        "Who",
        "Action",
        "Table",
        "Row",
        "Before",
        "After",
    ]
    .iter()
    .map(|h| h.to_string())
    .collect();
    let body = stream_csv(
        state.pool.clone(),
        sql,
        |q: QueryAs<'_, Postgres, AuditRow, PgArguments>| q,
        head,
        |r: &AuditRow, out: &mut String| {
            let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
                plain(t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()))
            };
            line(
                out,
                &[
                    time(Some(r.created_at)),
                    time(r.device_time),
                    text(&r.actor),
                    (r.action.clone(), false),
                    (r.table_name.clone(), false),
                    plain(r.row_id),
                    text(&r.before),
                    text(&r.after),
                ],
            )
        },
    );
    attachment("audit-log", body)
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    created_at: chrono::DateTime<chrono::Utc>,
    device_time: Option<chrono::DateTime<chrono::Utc>>,
    actor: Option<String>,
    action: String,
    table_name: String,
    row_id: Option<Uuid>,
    before: Option<String>,
    after: Option<String>,
}

/// Rows of `sql` (with `bind`'s parameters) as a CSV body with `head`: read from a cursor by a
/// task and sent in chunks through a small bounded channel, so a slow download slows the reading
/// and the rows never all sit in memory.
fn stream_csv<R, B, W>(
    pool: sqlx::PgPool,
    sql: String,
    bind: B,
    head: Vec<String>,
    write: W,
) -> Body
where
    R: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin + 'static,
    B: for<'q> FnOnce(
            QueryAs<'q, Postgres, R, PgArguments>,
        ) -> QueryAs<'q, Postgres, R, PgArguments>
        + Send
        + 'static,
    W: Fn(&R, &mut String) + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        // The byte-order mark tells a spreadsheet the file is UTF-8.
        let mut out = String::from("\u{feff}");
        let head: Vec<(String, bool)> = head.into_iter().map(|h| (h, false)).collect();
        line(&mut out, &head);
        let mut rows = bind(sqlx::query_as::<_, R>(&sql)).fetch(&pool);
        loop {
            match rows.try_next().await {
                Ok(Some(row)) => {
                    write(&row, &mut out);
                    if out.len() >= CHUNK
                        && tx
                            .send(Ok(Bytes::from(std::mem::take(&mut out))))
                            .await
                            .is_err()
                    {
                        return; // the download was abandoned
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // The download fails visibly (cut short with an error), never a silent half.
                    tracing::error!(error = %e, "export failed");
                    let _ = tx
                        .send(Err(std::io::Error::other("the export failed")))
                        .await;
                    return;
                }
            }
        }
        if !out.is_empty() {
            let _ = tx.send(Ok(Bytes::from(out))).await;
        }
    });
    // Fused: the compression layer may poll once more after the end, which `unfold` alone
    // answers with a panic (and a panic aborts the server).
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    })
    .fuse();
    Body::from_stream(chunks)
}

/// A CSV download named `<what>-<date>.csv`.
fn attachment(what: &str, body: Body) -> Response {
    let name = format!(
        "attachment; filename=\"{what}-{}.csv\"",
        chrono::Utc::now().date_naive()
    );
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, name),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_and_formulas_defused() {
        let mut out = String::new();
        line(
            &mut out,
            &[
                ("plain".into(), true),
                ("a, b".into(), true),
                ("say \"hi\"".into(), true),
                ("=HYPERLINK(\"x\")".into(), true),
                ("-12.50".into(), false),
            ],
        );
        assert_eq!(
            out,
            "plain,\"a, b\",\"say \"\"hi\"\"\",\"'=HYPERLINK(\"\"x\"\")\",-12.50\r\n"
        );
    }
}
