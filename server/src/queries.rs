//! Read queries, each filtered by the policy's [`Scope`] for the acting user.
//!
//! The client never supplies a filter: each scope variant maps to one fixed SQL predicate with
//! bound parameters, and the tests compare the results with the policy's own predicates.
use chrono::NaiveDate;
use sqlx::{PgExecutor, PgPool};
use turns::model::{Board, Contact, Named, PropertySummary, Stage, TurnCard};
use turns::policy::Scope;
use turns::{Actor, ApprovalStatus, Decimal, Thresholds};
use uuid::Uuid;

/// A predicate on `turns t JOIN properties p` for a scope, using `$1` (uuid) and `$2` (status).
pub(crate) struct ScopeSql {
    pub turn_filter: &'static str,
    pub property_filter: &'static str,
    pub id: Option<Uuid>,
    pub status: Option<ApprovalStatus>,
}

pub(crate) fn scope_sql(scope: Scope) -> ScopeSql {
    let (turn_filter, property_filter, id, status) = match scope {
        Scope::All => ("true", "true", None, None),
        Scope::ManagedBy(u) => ("p.property_manager_id = $1", "p.property_manager_id = $1", Some(u), None),
        Scope::OverseenBy(u) => (
            "(p.property_manager_id = $1 OR p.sr_property_manager_id = $1)",
            "(p.property_manager_id = $1 OR p.sr_property_manager_id = $1)",
            Some(u),
            None,
        ),
        // Vendors and approvers see a property through the turns they may read.
        Scope::Vendor(v) => (
            "t.vendor_id = $1",
            "EXISTS (SELECT 1 FROM turns t WHERE t.property_id = p.id AND t.is_active AND t.vendor_id = $1)",
            Some(v),
            None,
        ),
        Scope::Awaiting(level) => (
            "t.approval_status = $2",
            "EXISTS (SELECT 1 FROM turns t WHERE t.property_id = p.id AND t.is_active AND t.approval_status = $2)",
            None,
            Some(level.needed_status()),
        ),
        Scope::Nothing => ("false", "false", None, None),
    };
    ScopeSql {
        turn_filter,
        property_filter,
        id,
        status,
    }
}

pub async fn active_stages<'e>(db: impl PgExecutor<'e>) -> Result<Vec<Stage>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, display_order, coalesce(color, '#000000') AS color, is_amount_required,
                is_vendor_required, requires_approval, is_complete_stage, requires_qc
           FROM turn_stages WHERE is_active ORDER BY display_order",
    )
    .fetch_all(db)
    .await
}

/// The approval thresholds (one row, admin-edited).
pub async fn thresholds<'e>(db: impl PgExecutor<'e>) -> Result<Thresholds, sqlx::Error> {
    let (pm, ho, non_core, tolerance): (Decimal, Decimal, Decimal, Decimal) = sqlx::query_as(
        "SELECT pm_self_approve_limit, ho_threshold, non_core_threshold, change_tolerance_pct
           FROM approval_thresholds",
    )
    .fetch_one(db)
    .await?;
    Ok(Thresholds {
        pm_self_approve_limit: pm,
        ho_threshold: ho,
        non_core_threshold: non_core,
        change_tolerance_pct: tolerance,
    })
}

/// The properties this actor may read, with the count of their open turns.
pub async fn properties(pool: &PgPool, actor: &Actor) -> Result<Vec<PropertySummary>, sqlx::Error> {
    let s = scope_sql(actor.scope());
    let sql = format!(
        "SELECT p.id, p.property_id, p.name, p.street_address, p.city, p.state, p.is_core,
                p.is_active, p.property_manager_id,
                nullif(concat_ws(' ', pm.first_name, pm.last_name), '') AS pm_name,
                nullif(concat_ws(' ', sr.first_name, sr.last_name), '') AS sr_pm_name,
                (SELECT count(*) FROM turns t JOIN turn_stages st ON st.id = t.stage_id
                  WHERE t.property_id = p.id AND t.is_active AND NOT st.is_complete_stage
                    AND {turn}) AS open_turns
           FROM properties p
           LEFT JOIN users pm ON pm.id = p.property_manager_id
           LEFT JOIN users sr ON sr.id = p.sr_property_manager_id
          WHERE {prop}
          ORDER BY p.name, p.property_id",
        turn = s.turn_filter,
        prop = s.property_filter,
    );
    sqlx::query_as(&sql)
        .bind(s.id)
        .bind(s.status)
        .fetch_all(pool)
        .await
}

/// The turn board: active stages, and the active turns this actor may read that are open or
/// completed recently, with money redacted where the policy says so.
pub async fn board(pool: &PgPool, actor: &Actor, today: NaiveDate) -> Result<Board, sqlx::Error> {
    let stages = active_stages(pool).await?;
    let turns = turns_in_scope(pool, actor, Some(turns::rules::board_cutoff(today))).await?;
    let mut managers = Vec::new();
    let mut vendors = Vec::new();
    for t in &turns {
        if let (Some(id), Some(name)) = (t.pm_id, &t.pm_name) {
            managers.push(Named {
                id,
                name: name.clone(),
            });
        }
        if let (Some(id), Some(name)) = (t.vendor_id, &t.vendor_name) {
            vendors.push(Named {
                id,
                name: name.clone(),
            });
        }
    }
    for list in [&mut managers, &mut vendors] {
        list.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        list.dedup();
    }
    let assignable_vendors = if actor.is_manager() {
        sqlx::query_as::<_, (Uuid, String)>(
            "SELECT id, name FROM vendors WHERE is_active AND is_approved ORDER BY name",
        )
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|(id, name)| Named { id, name })
        .collect()
    } else {
        Vec::new()
    };
    // What the browser's rules need to show approval routing as the server will decide it.
    let (thresholds, non_core_properties) = if actor.sees_turn_financials() {
        let ids: Vec<Uuid> = turns.iter().map(|t| t.property_id).collect();
        let non_core = sqlx::query_scalar(
            "SELECT id FROM properties WHERE NOT is_core AND id = ANY($1) ORDER BY id",
        )
        .bind(&ids)
        .fetch_all(pool)
        .await?;
        (thresholds(pool).await?, non_core)
    } else {
        (Thresholds::default(), Vec::new())
    };
    let managing: Vec<Uuid> = managers.iter().map(|m| m.id).collect();
    let contacts = sqlx::query_as::<_, Contact>(
        "SELECT id, coalesce(nullif(concat_ws(' ', first_name, last_name), ''), email) AS name,
                phone, email
           FROM users WHERE id = ANY($1) AND is_active ORDER BY name, id",
    )
    .bind(&managing)
    .fetch_all(pool)
    .await?;
    Ok(Board {
        viewer: actor.user_id,
        role: actor.role,
        stages,
        turns,
        managers,
        vendors,
        assignable_vendors,
        thresholds,
        non_core_properties,
        today,
        contacts,
    })
}

/// A turn as a board card, unredacted (the caller redacts for its viewer): columns, then tables.
pub const CARD_COLUMNS: &str = "t.id, t.turn_id, t.property_id, p.property_id AS property_code,
     p.name AS property_name, t.stage_id, p.property_manager_id AS pm_id,
     nullif(concat_ws(' ', pm.first_name, pm.last_name), '') AS pm_name,
     t.vendor_id, v.name AS vendor_name, t.wo_number, t.move_out_date,
     t.expected_completion_date, t.turn_completion_date, t.turn_amount,
     t.approved_turn_amount, t.approval_status, t.version,
     t.vendor_accepted_at IS NOT NULL AS vendor_accepted, t.declined_vendor_id, t.decline_reason,
     t.qc_passed_at IS NOT NULL AS qc_passed, t.qc_failures, t.rejection_reason,
     t.awaiting_since";
pub const CARD_FROM: &str = "FROM turns t
       JOIN properties p ON p.id = t.property_id
       JOIN turn_stages st ON st.id = t.stage_id
       LEFT JOIN users pm ON pm.id = p.property_manager_id
       LEFT JOIN vendors v ON v.id = t.vendor_id";

/// Active turns in the actor's scope; with `completed_since`, completed ones only from that date
/// (the core's `rules::on_board`, in SQL).
pub async fn turns_in_scope(
    pool: &PgPool,
    actor: &Actor,
    completed_since: Option<NaiveDate>,
) -> Result<Vec<TurnCard>, sqlx::Error> {
    scoped_cards(
        pool,
        actor,
        "($3::date IS NULL OR NOT st.is_complete_stage
          OR t.turn_completion_date IS NULL OR t.turn_completion_date >= $3)",
        "t.move_out_date NULLS LAST, t.turn_id",
        completed_since,
        None,
    )
    .await
}

/// History: the actor's turns completed before `before` (off the board: `rules::board_cutoff`),
/// most recent first, at most `limit`.
pub async fn history(
    pool: &PgPool,
    actor: &Actor,
    before: NaiveDate,
    limit: i64,
) -> Result<Vec<TurnCard>, sqlx::Error> {
    scoped_cards(
        pool,
        actor,
        "st.is_complete_stage AND t.turn_completion_date < $3",
        "t.turn_completion_date DESC, t.turn_id",
        Some(before),
        Some(limit),
    )
    .await
}

/// A cancelled turn as the History page lists it.
#[derive(sqlx::FromRow)]
pub struct CancelledTurn {
    #[sqlx(flatten)]
    pub card: TurnCard,
    pub cancelled_at: chrono::DateTime<chrono::Utc>,
    pub cancel_reason: String,
}

/// The actor's cancelled turns (managers only), most recent first, at most `limit`.
pub async fn cancelled(
    pool: &PgPool,
    actor: &Actor,
    limit: i64,
) -> Result<Vec<CancelledTurn>, sqlx::Error> {
    // Why a turn was cancelled is the managers' business, not its vendor's or approvers'.
    if !actor.is_manager() {
        return Ok(Vec::new());
    }
    let rows: Vec<CancelledTurn> = scoped(
        pool,
        actor,
        ", t.cancelled_at, t.cancel_reason",
        "t.cancelled_at IS NOT NULL",
        "t.cancelled_at DESC, t.turn_id",
        None,
        Some(limit),
    )
    .await?;
    Ok(rows
        .into_iter()
        .map(|c| CancelledTurn {
            card: c.card.redact_for(actor),
            ..c
        })
        .collect())
}

/// Active turns in the actor's scope that meet `condition` (on `$3`, a date), as cards redacted
/// for the actor, in `order`, at most `limit` (`$4`; none: all).
async fn scoped_cards(
    pool: &PgPool,
    actor: &Actor,
    condition: &str,
    order: &str,
    date: Option<NaiveDate>,
    limit: Option<i64>,
) -> Result<Vec<TurnCard>, sqlx::Error> {
    let condition = format!("t.is_active AND {condition}");
    let rows: Vec<TurnCard> = scoped(pool, actor, "", &condition, order, date, limit).await?;
    Ok(rows.into_iter().map(|t| t.redact_for(actor)).collect())
}

/// Rows of turns in the actor's scope: the card's columns and `more`, where `condition` (on
/// `$3`, a date) holds, in `order`, at most `limit` (`$4`; none: all). Not redacted.
async fn scoped<T>(
    pool: &PgPool,
    actor: &Actor,
    more: &str,
    condition: &str,
    order: &str,
    date: Option<NaiveDate>,
    limit: Option<i64>,
) -> Result<Vec<T>, sqlx::Error>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let s = scope_sql(actor.scope());
    let sql = format!(
        "SELECT {CARD_COLUMNS}{more} {CARD_FROM}
          WHERE {turn} AND {condition}
          ORDER BY {order}
          LIMIT $4",
        turn = s.turn_filter,
    );
    sqlx::query_as(&sql)
        .bind(s.id)
        .bind(s.status)
        .bind(date)
        .bind(limit)
        .fetch_all(pool)
        .await
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    created_at: chrono::DateTime<chrono::Utc>,
    device_time: Option<chrono::DateTime<chrono::Utc>>,
    action: String,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
    who: Option<String>,
    decision_reason: Option<String>,
    table_name: String,
    client_mutation_id: Option<Uuid>,
}

/// A photo's turn and type, if `actor` may see that turn (`None` also when there is no such
/// photo: the two answer alike).
pub async fn photo(
    pool: &PgPool,
    actor: &Actor,
    photo: Uuid,
) -> Result<Option<(Uuid, String)>, sqlx::Error> {
    let s = scope_sql(actor.scope());
    sqlx::query_as(&format!(
        "SELECT ph.turn_id, ph.content_type
           FROM turn_photos ph
           JOIN turns t ON t.id = ph.turn_id
           JOIN properties p ON p.id = t.property_id
          WHERE ph.id = $3 AND {}",
        s.turn_filter
    ))
    .bind(s.id)
    .bind(s.status)
    .bind(photo)
    .fetch_optional(pool)
    .await
}

/// The most entries a turn's timeline shows.
const TIMELINE_ENTRIES: i64 = 500;

/// A turn's timeline for `actor`, in the order the work was done (`None`: not a turn they may
/// see, whether or not it exists). Cancelled turns keep theirs.
pub async fn timeline(
    pool: &PgPool,
    actor: &Actor,
    turn: Uuid,
) -> Result<Option<Vec<turns::timeline::Entry>>, sqlx::Error> {
    let s = scope_sql(actor.scope());
    let visible: bool = sqlx::query_scalar(&format!(
        "SELECT EXISTS (SELECT 1 FROM turns t JOIN properties p ON p.id = t.property_id
                         WHERE t.id = $3 AND {})",
        s.turn_filter
    ))
    .bind(s.id)
    .bind(s.status)
    .bind(turn)
    .fetch_one(pool)
    .await?;
    if !visible {
        return Ok(None);
    }
    // A decision's reason is in its own row, written in the same transaction as its audit row.
    // The newest entries when there are more than the limit, in the order the work was done.
    let rows: Vec<AuditRow> = sqlx::query_as(
        "SELECT * FROM (
           SELECT a.created_at, a.device_time, a.action, a.before, a.after,
                  nullif(concat_ws(' ', u.first_name, u.last_name), '') AS who,
                  d.reason AS decision_reason, a.table_name, a.client_mutation_id
             FROM audit_logs a
             LEFT JOIN users u ON u.id = a.actor_id
             LEFT JOIN approval_decisions d
                    ON a.action IN ('approve', 'reject') AND d.turn_id = a.row_id
                   AND d.actor_id = a.actor_id AND d.created_at = a.created_at
            WHERE (a.table_name = 'turns' AND a.row_id = $1)
               OR (a.table_name = 'turn_line_items'
                   AND coalesce(a.after, a.before) ->> 'turn_id' = $1::text)
               OR (a.table_name IN ('turn_notes', 'turn_photos')
                   AND coalesce(a.after, a.before) ->> 'turn_id' = $1::text)
            ORDER BY coalesce(a.device_time, a.created_at) DESC, a.created_at DESC
            LIMIT $2) newest
          ORDER BY coalesce(device_time, created_at), created_at",
    )
    .bind(turn)
    .bind(TIMELINE_ENTRIES)
    .fetch_all(pool)
    .await?;
    let names: std::collections::HashMap<String, String> = sqlx::query_as(
        "SELECT id::text, name FROM turn_stages UNION ALL SELECT id::text, name FROM vendors",
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();
    let financials = actor.sees_turn_financials();
    let mut entries: Vec<(Option<Uuid>, turns::timeline::Entry)> = Vec::new();
    for r in rows {
        if !turns::timeline::shows(&r.action, r.before.as_ref(), r.after.as_ref(), actor) {
            continue;
        }
        let changes = if matches!(r.table_name.as_str(), "turn_notes" | "turn_photos") {
            Vec::new()
        } else if r.table_name == "turn_line_items" {
            turns::timeline::line_change(r.before.as_ref(), r.after.as_ref(), financials)
                .into_iter()
                .collect()
        } else {
            turns::timeline::changes(r.before.as_ref(), r.after.as_ref(), financials, |_, id| {
                names.get(id).cloned()
            })
        };
        // One change wrote the turn and its lines: one entry.
        if let Some((Some(last), entry)) = entries.last_mut() {
            if Some(*last) == r.client_mutation_id {
                entry.changes.extend(changes);
                continue;
            }
        }
        let after = |column: &str| {
            r.after
                .as_ref()
                .and_then(|a| Some(a.get(column)?.as_str()?.to_string()))
        };
        let note = match r.action.as_str() {
            "record_qc" => after("qc_failures").map(|f| format!("Failed: {f}")),
            "cancel_turn" => after("cancel_reason"),
            "decline_work" => after("decline_reason"),
            "add_note" => after("body"),
            "add_photo" => after("caption"),
            _ => r.decision_reason.clone(),
        };
        let entry = turns::timeline::Entry {
            at: r.created_at,
            device_time: r.device_time,
            who: r.who,
            action: turns::timeline::action_label(&r.action).to_string(),
            changes,
            note,
        };
        entries.push((r.client_mutation_id, entry));
    }
    let mut entries: Vec<turns::timeline::Entry> = entries.into_iter().map(|(_, e)| e).collect();
    entries.extend(refusals(pool, actor, turn).await?);
    entries.sort_by_key(|e| (e.done_at(), e.at));
    Ok(Some(entries))
}

#[derive(sqlx::FromRow)]
struct RefusalRow {
    created_at: chrono::DateTime<chrono::Utc>,
    device_time: Option<chrono::DateTime<chrono::Utc>>,
    action: Option<String>,
    outcome: sqlx::types::Json<turns::wire::Answer>,
    user_id: Uuid,
    who: Option<String>,
}

/// The most refused changes a turn's timeline shows.
const TIMELINE_REFUSALS: i64 = 100;

/// The changes to a turn the server refused, as `actor` may see them (`timeline::shows_refusal`).
async fn refusals(
    pool: &PgPool,
    actor: &Actor,
    turn: Uuid,
) -> Result<Vec<turns::timeline::Entry>, sqlx::Error> {
    let rows: Vec<RefusalRow> = sqlx::query_as(
        "SELECT r.created_at, r.device_time, r.action, r.outcome, r.user_id,
                nullif(concat_ws(' ', u.first_name, u.last_name), '') AS who
           FROM mutation_receipts r LEFT JOIN users u ON u.id = r.user_id
          WHERE r.turn_id = $1 AND r.outcome ? 'rejected'
          ORDER BY r.created_at DESC LIMIT $2",
    )
    .bind(turn)
    .bind(TIMELINE_REFUSALS)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter(|r| turns::timeline::shows_refusal(actor, r.user_id))
        .filter_map(|r| {
            let turns::mutation::Outcome::Rejected(why) = &r.outcome.0.outcome else {
                return None;
            };
            Some(turns::timeline::refusal(
                r.created_at,
                r.device_time,
                r.who.clone(),
                r.action.as_deref().unwrap_or_default(),
                why.message(),
            ))
        })
        .collect())
}

/// The admin page's lists: every user and vendor, and the thresholds (`None`: not an admin).
pub async fn admin_overview(
    pool: &PgPool,
    actor: &Actor,
) -> Result<Option<turns::admin::Overview>, sqlx::Error> {
    if !actor.role.is_admin() {
        return Ok(None);
    }
    let users = sqlx::query_as(
        "SELECT u.id, u.email, nullif(concat_ws(' ', u.first_name, u.last_name), '') AS name,
                u.role, v.name AS vendor, u.is_active, u.last_login
           FROM users u LEFT JOIN vendors v ON v.id = u.vendor_id
          ORDER BY u.is_active DESC, u.email",
    )
    .fetch_all(pool)
    .await?;
    let vendors =
        sqlx::query_as("SELECT id, name, trade, is_approved, is_active FROM vendors ORDER BY name")
            .fetch_all(pool)
            .await?;
    type TemplateColumns = (
        Uuid,
        String,
        Option<Decimal>,
        Option<Decimal>,
        Option<i32>,
        Option<i32>,
        sqlx::types::Json<Vec<turns::line_items::TemplateLine>>,
        bool,
    );
    let templates: Vec<TemplateColumns> = sqlx::query_as(
        "SELECT id, name, bedrooms, bathrooms, min_sqft, max_sqft, items, is_active
           FROM cost_templates ORDER BY is_active DESC, name, id",
    )
    .fetch_all(pool)
    .await?;
    let templates = templates
        .into_iter()
        .map(
            |(id, name, bedrooms, bathrooms, min_sqft, max_sqft, items, is_active)| {
                turns::admin::TemplateRow {
                    id,
                    settings: turns::admin::TemplateSettings {
                        name,
                        bedrooms,
                        bathrooms,
                        min_sqft,
                        max_sqft,
                        items: items.0,
                        is_active,
                    },
                }
            },
        )
        .collect();
    let qc_items = sqlx::query_as(
        "SELECT id, stage_id, label FROM qc_checklist_items WHERE is_active
          ORDER BY stage_id, position, id",
    )
    .fetch_all(pool)
    .await?;
    Ok(Some(turns::admin::Overview {
        users,
        vendors,
        thresholds: thresholds(pool).await?,
        stages: active_stages(pool).await?,
        templates,
        qc_items,
    }))
}
