//! The write path: one client mutation, one transaction.
//!
//! In that transaction: the row is locked, the policy and the domain rules are checked, edited
//! fields are compared with the values the user started from (merge or conflict), the change and
//! its audit row are written (one statement), and the outcome is stored under the mutation id
//! together with the transaction id the shape stream will carry. The receipt is inserted last: if
//! a replay of the same id committed first, the insert finds it (waiting for it if it is still in
//! flight), this transaction rolls back, and the stored outcome is returned — so a mutation
//! applies once however its replays race. A rejection writes nothing but its receipt, so every
//! replay gets the same answer.
use crate::queries::{self, CARD_COLUMNS, CARD_FROM};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool};
use turns::line_items::{self, LineItem};
use turns::model::{Stage, TurnCard};
use turns::mutation::{
    Change, Edit, Mutation, NewProperty, NewTurn, Outcome, PropertyEdit, Rejection, TurnEdit,
};
use turns::policy::{AssigneeFacts, PropertyFacts, TurnFacts};
use turns::qc::{QcItem, QcResult};
use turns::rules::{self, TurnRules};
use turns::{Actor, ApprovalStatus, Decimal, Role, Thresholds};
use uuid::Uuid;

mod admin;

/// Why a change stopped: a rejection for the user, or a database failure for the logs.
enum Stop {
    Reject(Rejection),
    Db(sqlx::Error),
}

impl From<sqlx::Error> for Stop {
    fn from(e: sqlx::Error) -> Self {
        if let Some((field, message)) = constraint_message(&e) {
            return Stop::Reject(Rejection::invalid_field(field, message));
        }
        // Class 22, data exception: a value Postgres cannot take (out of range, bad encoding).
        // That is the input's fault and final: refuse it, or the device would retry it forever
        // and every edit queued behind it would wait.
        let data_exception = e
            .as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|c| c.starts_with("22"));
        if data_exception {
            tracing::warn!(error = %e, "refused a value the database cannot store");
            return Stop::Reject(Rejection::invalid_field(
                "value",
                "A value in this change cannot be saved. Check it and try again.",
            ));
        }
        Stop::Db(e)
    }
}

impl From<Rejection> for Stop {
    fn from(r: Rejection) -> Self {
        Stop::Reject(r)
    }
}

type Step<T> = Result<T, Stop>;

/// Database constraints a user's input can break, as field messages.
fn constraint_message(e: &sqlx::Error) -> Option<(&'static str, &'static str)> {
    let constraint = e.as_database_error()?.constraint()?;
    Some(match constraint {
        "turns_turn_id_idx" => ("turn_id", "Another turn already has this turn id."),
        // Ids are made on devices; a collision says nothing about whose row holds it.
        "turns_pkey"
        | "properties_pkey"
        | "turn_line_items_pkey"
        | "turn_notes_pkey"
        | "turn_photos_pkey" => ("id", "This id is already in use; try again."),
        "turns_completion_after_move_out" => (
            "turn_completion_date",
            "Completion cannot be before the move-out date.",
        ),
        "turns_amount_non_negative" => ("turn_amount", "The amount cannot be negative."),
        "properties_property_id_idx" => ("property_id", "Another property already has this id."),
        "properties_name_not_blank" => ("name", "Name is required."),
        "properties_year_built_range" => {
            ("year_built", "Year built must be between 1700 and 2200.")
        }
        "properties_property_manager_id_fkey" => {
            ("property_manager_id", "Unknown property manager.")
        }
        "users_email_idx" => ("email", "Another user already has this email."),
        "users_pkey" | "vendors_pkey" => ("id", "This id is already in use; try again."),
        "vendors_name_key" => ("name", "Another vendor already has this name."),
        "turn_stages_color_hex" => ("color", "Choose a colour like #1f5fbf."),
        _ => return None,
    })
}

/// Apply one mutation for `actor`, exactly once per mutation id.
pub async fn apply(pool: &PgPool, actor: &Actor, m: &Mutation) -> Result<Outcome, sqlx::Error> {
    if let Change::EditTurn { turn, edits } = &m.change {
        return apply_edit(&mut *pool.acquire().await?, actor, m, *turn, edits).await;
    }
    let mut tx = pool.begin().await?;
    let outcome = match execute(&mut tx, actor, m).await {
        Ok(txid) => Outcome::Applied { txid },
        Err(Stop::Reject(r)) => {
            tx.rollback().await?;
            let mut conn = pool.acquire().await?;
            let outcome = Outcome::Rejected(r);
            return if store_receipt(&mut conn, actor, m, &outcome).await? {
                Ok(outcome)
            } else {
                stored_outcome(&mut conn, actor, m.id).await
            };
        }
        Err(Stop::Db(e)) => return Err(e),
    };
    if store_receipt(&mut tx, actor, m, &outcome).await? {
        tx.commit().await?;
        Ok(outcome)
    } else {
        // A replay of this id committed first: undo ours, answer as it did.
        tx.rollback().await?;
        stored_outcome(&mut *pool.acquire().await?, actor, m.id).await
    }
}

/// Apply a device's batch in order. A batch of edits (the usual outbox drain) shares one
/// transaction, so it costs one commit; anything unusual in it — another kind of change, a
/// constraint error, a racing replay — rolls that transaction back and the batch is applied one
/// mutation at a time instead, with the same outcomes.
pub async fn apply_batch(
    pool: &PgPool,
    actor: &Actor,
    batch: &[Mutation],
) -> Result<Vec<Outcome>, sqlx::Error> {
    let edits_only = batch
        .iter()
        .all(|m| matches!(m.change, Change::EditTurn { .. }));
    if batch.len() > 1 && edits_only {
        let mut tx = pool.begin().await?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for m in batch {
            let Change::EditTurn { turn, edits } = &m.change else {
                break;
            };
            match apply_edit(&mut tx, actor, m, *turn, edits).await {
                Ok(o) => outcomes.push(o),
                Err(_) => break,
            }
        }
        // A failed statement aborts the transaction (and COMMIT would then roll back quietly):
        // make sure it is healthy before committing.
        if outcomes.len() == batch.len()
            && sqlx::query("SELECT 1").execute(&mut *tx).await.is_ok()
            && tx.commit().await.is_ok()
        {
            log_refusals(actor, batch, &outcomes);
            return Ok(outcomes);
        }
    }
    let mut outcomes = Vec::with_capacity(batch.len());
    for m in batch {
        outcomes.push(apply(pool, actor, m).await?);
    }
    log_refusals(actor, batch, &outcomes);
    Ok(outcomes)
}

/// Refusals of scope (forbidden, not found) are what probing looks like: log each one.
fn log_refusals(actor: &Actor, batch: &[Mutation], outcomes: &[Outcome]) {
    for (m, o) in batch.iter().zip(outcomes) {
        if let Outcome::Rejected(r @ (Rejection::Forbidden { .. } | Rejection::NotFound { .. })) = o
        {
            tracing::warn!(
                user = %actor.user_id,
                role = ?actor.role,
                mutation = %m.id,
                action = m.change.action(),
                reason = r.message(),
                "refused a change out of the user's scope"
            );
        }
    }
}

/// Store the outcome under the mutation id; false when the id has an outcome already.
async fn store_receipt(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    outcome: &Outcome,
) -> Result<bool, sqlx::Error> {
    let txid = match outcome {
        Outcome::Applied { txid: Some(t) } => t.parse::<i64>().ok(),
        _ => None,
    };
    let inserted = sqlx::query(
        "INSERT INTO mutation_receipts (mutation_id, user_id, outcome, txid, turn_id, action,
                                        device_time)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (mutation_id) DO NOTHING",
    )
    .bind(m.id)
    .bind(actor.user_id)
    .bind(sqlx::types::Json(outcome))
    .bind(txid)
    .bind(m.change.turn())
    .bind(m.change.action())
    .bind(device_time(m))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

async fn stored_outcome(
    conn: &mut PgConnection,
    actor: &Actor,
    id: Uuid,
) -> Result<Outcome, sqlx::Error> {
    // Receipts stored before December 2026 are in the older dialect: both read.
    let (user, outcome): (Uuid, sqlx::types::Json<turns::wire::Answer>) =
        sqlx::query_as("SELECT user_id, outcome FROM mutation_receipts WHERE mutation_id = $1")
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
    if user != actor.user_id {
        return Ok(Outcome::Rejected(Rejection::forbidden(
            "This change id was used by another user.",
        )));
    }
    Ok(outcome.0.outcome)
}

/// Run the change; the writing transaction's id when it wrote something.
async fn execute(conn: &mut PgConnection, actor: &Actor, m: &Mutation) -> Step<Option<String>> {
    m.change.validate().map_err(Rejection::invalid)?;
    match &m.change {
        Change::EditTurn { .. } => {
            Err(Rejection::invalid_field("kind", "Edits take the edit path.").into())
        }
        Change::SubmitForApproval { turn } => {
            let refusal = "Only the turn's managers submit it for approval.";
            ruled_change(conn, actor, m, *turn, Actor::can_manage_turn, refusal).await
        }
        Change::CancelTurn { turn, reason } => cancel(conn, actor, m, *turn, reason).await,
        // The vendor answers for the work they were given.
        Change::AcceptWork { turn } | Change::DeclineWork { turn, .. } => {
            let refusal = "Only the vendor given the work (or an admin) answers for it.";
            ruled_change(conn, actor, m, *turn, Actor::can_record_progress, refusal).await
        }
        Change::DecideApproval {
            turn,
            approve,
            amount,
            reason,
        } => decide(conn, actor, m, *turn, *approve, *amount, reason.as_deref()).await,
        Change::AddLineItems { turn, .. }
        | Change::EditLineItem { turn, .. }
        | Change::RemoveLineItem { turn, .. } => rescope(conn, actor, m, *turn).await,
        Change::RecordQc { turn, results } => inspect(conn, actor, m, *turn, results).await,
        Change::AddNote { turn, note, body } => add_note(conn, actor, m, *turn, *note, body).await,
        Change::MarkRead { notifications } => mark_read(conn, actor, notifications).await,
        Change::Admin(change) => admin::apply(conn, actor, m, change).await,
        Change::AddPhoto {
            turn,
            photo,
            caption,
            qc_item,
        } => add_photo(conn, actor, m, *turn, *photo, caption.as_deref(), *qc_item).await,
        Change::CreateTurn(t) => create_turn(conn, actor, m, t).await,
        Change::CreateProperty(p) => create_property(conn, actor, m, p).await,
        Change::UpdateProperty { property, edits } => {
            update_property(conn, actor, m, *property, edits).await
        }
    }
}

/// A turn locked for update, with what the policy and the rules need.
struct LockedTurn {
    card: TurnCard,
    facts: TurnFacts,
    is_core: bool,
    before: Value,
}

#[derive(sqlx::FromRow)]
struct LockedRow {
    #[sqlx(flatten)]
    card: TurnCard,
    before: Value,
    is_core: bool,
    sr_pm: Option<Uuid>,
}

/// Read a turn with what the policy and rules need; `lock` holds it until the transaction ends.
async fn read_turn(
    conn: &mut PgConnection,
    actor: &Actor,
    id: Uuid,
    lock: bool,
) -> Step<LockedTurn> {
    let row: Option<LockedRow> = sqlx::query_as(&format!(
        "SELECT {CARD_COLUMNS}, to_jsonb(t) AS before, p.is_core,
                p.sr_property_manager_id AS sr_pm
         {CARD_FROM}
          WHERE t.id = $1 AND t.is_active {}",
        if lock { "FOR UPDATE OF t" } else { "" }
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let not_found = || Rejection::NotFound {
        message: "This turn no longer exists or is no longer yours to see.".into(),
    };
    let Some(LockedRow {
        card,
        before,
        is_core,
        sr_pm,
    }) = row
    else {
        return Err(not_found().into());
    };
    let facts = TurnFacts {
        property: PropertyFacts {
            property_manager_id: card.pm_id,
            sr_property_manager_id: sr_pm,
        },
        vendor_id: card.vendor_id,
        approval_status: card.approval_status.unwrap_or(ApprovalStatus::Pending),
    };
    if !actor.can_read_turn(&facts) {
        return Err(not_found().into());
    }
    Ok(LockedTurn {
        card,
        facts,
        is_core,
        before,
    })
}

/// What the rules need to know about a turn, read from the database.
struct Facts {
    thresholds: Thresholds,
    stages: Vec<Stage>,
    is_core: bool,
    /// The server's day, never the device's clock (which may be anything).
    today: chrono::NaiveDate,
    /// The turn has line items (read only when an amount is typed).
    scoped: bool,
}

impl Facts {
    async fn read(conn: &mut PgConnection, is_core: bool) -> Step<Facts> {
        Ok(Facts {
            thresholds: queries::thresholds(&mut *conn).await?,
            stages: queries::active_stages(&mut *conn).await?,
            is_core,
            today: Utc::now().date_naive(),
            scoped: false,
        })
    }

    fn rules(&self) -> TurnRules<'_> {
        TurnRules {
            thresholds: &self.thresholds,
            stages: &self.stages,
            is_core: self.is_core,
            today: self.today,
            scoped: self.scoped,
        }
    }
}

/// Edits are the bulk of the traffic, so they skip the explicit transaction: read the turn, check
/// and plan the change, then write it in one statement (turn, audit row and receipt) only if the
/// turn's version is still the one read; if it moved, read again. Two round trips per edit.
async fn apply_edit(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    id: Uuid,
    edits: &[TurnEdit],
) -> Result<Outcome, sqlx::Error> {
    for _ in 0..20 {
        let planned = async {
            m.change.validate().map_err(Rejection::invalid)?;
            let turn = read_turn(conn, actor, id, false).await?;
            let after = plan_edit(conn, actor, &turn, edits).await?;
            Ok::<_, Stop>((turn, after))
        }
        .await;
        let outcome = match planned {
            Ok((turn, Some(after))) => {
                match write_turn(
                    conn,
                    actor,
                    m,
                    &after,
                    &turn.before,
                    Some(turn.card.version),
                )
                .await
                {
                    Ok(Some(txid)) => return Ok(Outcome::Applied { txid: Some(txid) }),
                    // Changed since we read it: plan again on the new version.
                    Ok(None) => continue,
                    Err(Stop::Reject(r)) => Outcome::Rejected(r),
                    Err(Stop::Db(e)) if is_receipt_conflict(&e) => {
                        return stored_outcome(conn, actor, m.id).await
                    }
                    Err(Stop::Db(e)) => return Err(e),
                }
            }
            Ok((_, None)) => Outcome::Applied { txid: None },
            Err(Stop::Reject(r)) => Outcome::Rejected(r),
            Err(Stop::Db(e)) => return Err(e),
        };
        return if store_receipt(conn, actor, m, &outcome).await? {
            Ok(outcome)
        } else {
            stored_outcome(conn, actor, m.id).await
        };
    }
    Err(sqlx::Error::Protocol(format!(
        "turn {id} kept changing under edit {}",
        m.id
    )))
}

/// The device's clock when the change was made, kept as information for the audit trail only
/// when it is plausible (not before 2000, not more than a day ahead of ours); business dates
/// never come from it.
fn device_time(m: &Mutation) -> Option<DateTime<Utc>> {
    let now = Utc::now();
    let earliest = DateTime::from_timestamp(946_684_800, 0).unwrap_or(now);
    (earliest..=now + chrono::Duration::days(1))
        .contains(&m.device_time)
        .then_some(m.device_time)
}

fn is_receipt_conflict(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.constraint())
        .is_some_and(|c| c == "mutation_receipts_pkey")
}

/// Check an edit against the turn as read and work out the turn after it (`None`: no change).
async fn plan_edit(
    conn: &mut PgConnection,
    actor: &Actor,
    locked: &LockedTurn,
    edits: &[TurnEdit],
) -> Step<Option<TurnCard>> {
    for e in edits {
        rules::may_edit(actor, &locked.facts, e)?;
    }
    let stale: Vec<String> = edits
        .iter()
        .filter(|e| !e.base_holds(&locked.card))
        .map(|e| e.column().to_string())
        .collect();
    if !stale.is_empty() {
        return Err(conflict(actor, &locked.card, stale).into());
    }
    let mut preview = locked.card.clone();
    for e in edits {
        e.apply(&mut preview);
    }
    if preview == locked.card {
        return Ok(None);
    }
    // Only an amount or a stage brings approval and gates in: only then read what they depend
    // on (edits are the bulk of the traffic).
    let stage_changed = preview.stage_id != locked.card.stage_id;
    let amount_changed = preview.turn_amount != locked.card.turn_amount;
    let mut facts = if amount_changed || stage_changed {
        Facts::read(conn, locked.is_core).await?
    } else {
        Facts {
            thresholds: Thresholds::default(),
            stages: Vec::new(),
            is_core: locked.is_core,
            today: Utc::now().date_naive(),
            scoped: false,
        }
    };
    if amount_changed {
        facts.scoped =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM turn_line_items WHERE turn_id = $1)")
                .bind(locked.card.id)
                .fetch_one(&mut *conn)
                .await?;
    }
    let after = facts.rules().edit(&locked.card, edits)?;
    if after.vendor_id != locked.card.vendor_id {
        if let Some(vendor) = after.vendor_id {
            check_vendor(conn, vendor, "vendor_id").await?;
        }
    }
    // A stage that needs a vendor needs one still active and approved.
    let vendor_gate = facts
        .stages
        .iter()
        .any(|s| stage_changed && s.id == after.stage_id && s.is_vendor_required);
    if let (true, Some(vendor)) = (vendor_gate, after.vendor_id) {
        check_vendor(conn, vendor, "stage_id").await?;
    }
    Ok(Some(after))
}

fn conflict(actor: &Actor, current: &TurnCard, fields: Vec<String>) -> Rejection {
    Rejection::Conflict {
        message: "Someone else changed this turn while you were editing it.".into(),
        fields,
        current: Some(Box::new(current.clone().redact_for(actor))),
    }
}

async fn check_vendor(conn: &mut PgConnection, vendor: Uuid, field: &str) -> Step<()> {
    let ok: Option<bool> =
        sqlx::query_scalar("SELECT is_active AND is_approved FROM vendors WHERE id = $1")
            .bind(vendor)
            .fetch_optional(&mut *conn)
            .await?;
    match ok {
        Some(true) => Ok(()),
        Some(false) => {
            Err(Rejection::invalid_field(field, "This vendor is not active and approved.").into())
        }
        None => Err(Rejection::invalid_field(field, "Unknown vendor.").into()),
    }
}

/// Write the turn and its audit row in one statement; returns the transaction id. With
/// `if_version`, only if the turn still has that version (`None` returned otherwise), and the
/// applied receipt is stored in the same statement.
async fn write_turn(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    t: &TurnCard,
    before: &Value,
    if_version: Option<i32>,
) -> Step<Option<String>> {
    let (check, receipt) = match if_version {
        Some(_) => (
            "AND version = $16",
            ", receipt AS (
               INSERT INTO mutation_receipts (mutation_id, user_id, outcome, txid, turn_id, action,
                                              device_time)
               SELECT $15, $11, jsonb_build_object('applied', jsonb_build_object(
                                                   'txid', pg_current_xact_id()::xid::text)),
                      pg_current_xact_id()::xid::text::bigint, $1, $12, $14
                 FROM after)",
        ),
        None => ("AND $16::int IS NULL", ""),
    };
    // Whose turn it now is is told in the same statement (the inbox).
    let notices = turns::inbox::on_turn_change(before, t);
    let notify = if notices.is_empty() {
        String::new()
    } else {
        format!(
            ", t AS (SELECT (row ->> 'property_id')::uuid AS property_id FROM after),
             notified AS ({})",
            crate::inbox::insert_for_turn("$1", "$23", "$11")
        )
    };
    let sql = format!(
        "WITH after AS (
           UPDATE turns SET stage_id = $2, vendor_id = $3, turn_amount = $4,
                  approved_turn_amount = $5, approval_status = $6, wo_number = $7,
                  move_out_date = $8, expected_completion_date = $9, turn_completion_date = $10,
                  updated_by = $11,
                  vendor_accepted_at = CASE WHEN $17 THEN coalesce(vendor_accepted_at, now()) END,
                  declined_vendor_id = $18, decline_reason = $19,
                  qc_passed_at = CASE WHEN $20 THEN coalesce(qc_passed_at, now()) END,
                  qc_failures = $21, rejection_reason = $22
            WHERE id = $1 {check}
        RETURNING to_jsonb(turns.*) AS row){receipt}{notify}
         INSERT INTO audit_logs (actor_id, action, table_name, row_id, before, after, device_time,
                                 client_mutation_id)
         SELECT $11, $12, 'turns', $1, $13, after.row, $14, $15 FROM after
      RETURNING pg_current_xact_id()::xid::text"
    );
    let query = sqlx::query_scalar(&sql)
        .bind(t.id)
        .bind(t.stage_id)
        .bind(t.vendor_id)
        .bind(t.turn_amount)
        .bind(t.approved_turn_amount)
        .bind(t.approval_status.unwrap_or(ApprovalStatus::Pending))
        .bind(&t.wo_number)
        .bind(t.move_out_date)
        .bind(t.expected_completion_date)
        .bind(t.turn_completion_date)
        .bind(actor.user_id)
        .bind(m.change.action())
        .bind(before)
        .bind(device_time(m))
        .bind(m.id)
        .bind(if_version)
        .bind(t.vendor_accepted)
        .bind(t.declined_vendor_id)
        .bind(&t.decline_reason)
        .bind(t.qc_passed)
        .bind(&t.qc_failures)
        .bind(&t.rejection_reason);
    let query = if notices.is_empty() {
        query
    } else {
        query.bind(crate::inbox::recipients(&notices))
    };
    let txid: Option<String> = query.fetch_optional(&mut *conn).await?;
    Ok(txid)
}

/// Write a turn the transaction holds locked.
async fn write_locked_turn(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    t: &TurnCard,
    before: &Value,
) -> Step<Option<String>> {
    let txid = write_turn(conn, actor, m, t, before, None).await?;
    txid.map(Some)
        .ok_or_else(|| Stop::Db(sqlx::Error::RowNotFound))
}

async fn audit(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    table: &str,
    row: Uuid,
    before: Option<&Value>,
    after: Option<&Value>,
) -> Step<String> {
    let txid = sqlx::query_scalar(
        "INSERT INTO audit_logs (actor_id, action, table_name, row_id, before, after, device_time,
                                 client_mutation_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
      RETURNING pg_current_xact_id()::xid::text",
    )
    .bind(actor.user_id)
    .bind(m.change.action())
    .bind(table)
    .bind(row)
    .bind(before)
    .bind(after)
    .bind(device_time(m))
    .bind(m.id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(txid)
}

/// A change to one turn that the rules decide (`TurnRules::apply`), made by those `may` allows.
async fn ruled_change(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    id: Uuid,
    may: fn(&Actor, &TurnFacts) -> bool,
    refusal: &str,
) -> Step<Option<String>> {
    let locked = read_turn(conn, actor, id, true).await?;
    if !may(actor, &locked.facts) {
        return Err(Rejection::forbidden(refusal).into());
    }
    let facts = Facts::read(conn, locked.is_core).await?;
    let Some(after) = facts.rules().apply(&locked.card, &m.change)? else {
        return Ok(None);
    };
    write_locked_turn(conn, actor, m, &after, &locked.before).await
}

/// Cancel a turn: kept with the reason, no longer active (off the board, out of the shapes).
async fn cancel(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    id: Uuid,
    reason: &str,
) -> Step<Option<String>> {
    let locked = read_turn(conn, actor, id, true).await?;
    if !actor.can_manage_turn(&locked.facts) {
        return Err(Rejection::forbidden("Only the turn's managers cancel it.").into());
    }
    turns::rules::may_cancel(&locked.card)?;
    let after: Value = sqlx::query_scalar(
        "UPDATE turns SET is_active = false, cancelled_at = now(), cancelled_by = $2,
                          cancel_reason = btrim($3), updated_by = $2
          WHERE id = $1
      RETURNING to_jsonb(turns.*)",
    )
    .bind(id)
    .bind(actor.user_id)
    .bind(reason)
    .fetch_one(&mut *conn)
    .await?;
    audit(
        conn,
        actor,
        m,
        "turns",
        id,
        Some(&locked.before),
        Some(&after),
    )
    .await
    .map(Some)
}

async fn decide(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    id: Uuid,
    approve: bool,
    amount: Option<Decimal>,
    reason: Option<&str>,
) -> Step<Option<String>> {
    let locked = read_turn(conn, actor, id, true).await?;
    let Some(level) = locked.facts.approval_status.awaiting() else {
        // Decided by someone else meanwhile (or never submitted).
        return Err(conflict(actor, &locked.card, vec!["approval_status".into()]).into());
    };
    if !actor.can_decide_approval(&locked.facts) {
        return Err(
            Rejection::forbidden("Only the waiting approval level decides this turn.").into(),
        );
    }
    if m.base_version.is_some_and(|v| v != locked.card.version) {
        // An approver decides on what they saw; if the turn changed, they look again.
        return Err(conflict(actor, &locked.card, vec!["version".into()]).into());
    }
    let facts = Facts::read(conn, locked.is_core).await?;
    let after = facts
        .rules()
        .decide(&locked.card, level, approve, amount, reason)?;
    let decided_amount = if approve {
        after.approved_turn_amount
    } else {
        None
    };
    sqlx::query(
        "INSERT INTO approval_decisions (turn_id, level, decision, amount, reason, actor_id,
                                         actor_role, device_time, created_by)
         VALUES ($1, $2, $3::approval_decision, $4, $5, $6, $7, $8, $6)",
    )
    .bind(id)
    .bind(level)
    .bind(if approve { "APPROVED" } else { "REJECTED" })
    .bind(decided_amount)
    .bind(reason.map(str::trim).filter(|r| !r.is_empty()))
    .bind(actor.user_id)
    .bind(actor.role)
    .bind(device_time(m))
    .execute(&mut *conn)
    .await?;
    write_locked_turn(conn, actor, m, &after, &locked.before).await
}

#[derive(sqlx::FromRow)]
struct LineRow {
    #[sqlx(flatten)]
    item: LineItem,
    row: Value,
}

/// A change to a turn's scope: its lines written as `line_items::apply` says and its amount as
/// `TurnRules::rescope` says, with an audit row for each line written and one for the turn.
async fn rescope(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    id: Uuid,
) -> Step<Option<String>> {
    let locked = read_turn(conn, actor, id, true).await?;
    if !actor.can_manage_turn(&locked.facts) {
        return Err(Rejection::forbidden("Only the turn's managers change its scope.").into());
    }
    let lines: Vec<LineRow> = sqlx::query_as(
        "SELECT id, turn_id, position, category, description, quantity, unit_cost, vendor_id,
                to_jsonb(l) AS row
           FROM turn_line_items l WHERE turn_id = $1 ORDER BY position, id FOR UPDATE",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let items: Vec<LineItem> = lines.iter().map(|l| l.item.clone()).collect();
    let Some(after) = line_items::apply(&items, &m.change)? else {
        return Ok(None);
    };
    for line in &after {
        let was = items.iter().find(|i| i.id == line.id);
        if let Some(vendor) = line
            .vendor_id
            .filter(|v| was.and_then(|w| w.vendor_id) != Some(*v))
        {
            check_vendor(conn, vendor, "vendor_id").await?;
        }
    }
    let mut txid = None;
    for old in lines
        .iter()
        .filter(|l| !after.iter().any(|a| a.id == l.item.id))
    {
        sqlx::query("DELETE FROM turn_line_items WHERE id = $1")
            .bind(old.item.id)
            .execute(&mut *conn)
            .await?;
        txid = Some(
            audit(
                conn,
                actor,
                m,
                "turn_line_items",
                old.item.id,
                Some(&old.row),
                None,
            )
            .await?,
        );
    }
    for line in &after {
        let old = lines.iter().find(|l| l.item.id == line.id);
        if old.is_some_and(|o| o.item == *line) {
            continue;
        }
        let row: Value = sqlx::query_scalar(
            "INSERT INTO turn_line_items (id, turn_id, position, category, description, quantity,
                                          unit_cost, vendor_id, created_by, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
             ON CONFLICT (id) DO UPDATE
                SET category = EXCLUDED.category, description = EXCLUDED.description,
                    quantity = EXCLUDED.quantity, unit_cost = EXCLUDED.unit_cost,
                    vendor_id = EXCLUDED.vendor_id, updated_by = EXCLUDED.updated_by
              WHERE turn_line_items.turn_id = EXCLUDED.turn_id
          RETURNING to_jsonb(turn_line_items.*)",
        )
        .bind(line.id)
        .bind(id)
        .bind(line.position)
        .bind(&line.category)
        .bind(&line.description)
        .bind(line.quantity)
        .bind(line.unit_cost)
        .bind(line.vendor_id)
        .bind(actor.user_id)
        .fetch_optional(&mut *conn)
        .await?
        // The id is another turn's line.
        .ok_or_else(|| Rejection::invalid_field("id", "This id is already in use; try again."))?;
        let before = old.map(|o| &o.row);
        txid = Some(
            audit(
                conn,
                actor,
                m,
                "turn_line_items",
                line.id,
                before,
                Some(&row),
            )
            .await?,
        );
    }
    // Thresholds and stages matter only when the sum moves (editing a description does not).
    if line_items::total(&after) != locked.card.turn_amount {
        let facts = Facts::read(conn, locked.is_core).await?;
        if let Some(card) = facts.rules().rescope(&locked.card, &after)? {
            txid = write_locked_turn(conn, actor, m, &card, &locked.before).await?;
        }
    }
    Ok(txid)
}

/// The inspector's QC of a turn's stage: kept whole (every item, its label then, the note) and
/// written to the turn as `TurnRules::inspect` says.
async fn inspect(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    id: Uuid,
    results: &[QcResult],
) -> Step<Option<String>> {
    let locked = read_turn(conn, actor, id, true).await?;
    if !actor.can_inspect() {
        return Err(Rejection::forbidden("Only inspectors record QC.").into());
    }
    // Removed items too: an inspection recorded offline before a removal keeps its answers.
    let checklist: Vec<QcItem> = sqlx::query_as(
        "SELECT id, stage_id, position, label, is_active FROM qc_checklist_items
          WHERE stage_id = $1 ORDER BY position, id",
    )
    .bind(locked.card.stage_id)
    .fetch_all(&mut *conn)
    .await?;
    let facts = Facts::read(conn, locked.is_core).await?;
    let after = facts.rules().inspect(&locked.card, &checklist, results)?;
    let recorded: Vec<Value> = checklist
        .iter()
        .filter_map(|item| {
            let r = results.iter().find(|r| r.item == item.id)?;
            Some(
                json!({"item": item.id, "label": item.label, "passed": r.passed,
                        "note": r.note.as_deref().map(str::trim).filter(|n| !n.is_empty())}),
            )
        })
        .collect();
    sqlx::query(
        "INSERT INTO qc_inspections (turn_id, stage_id, inspector_id, passed, results, device_time)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(locked.card.stage_id)
    .bind(actor.user_id)
    .bind(after.qc_passed)
    .bind(Value::Array(recorded))
    .bind(device_time(m))
    .execute(&mut *conn)
    .await?;
    write_locked_turn(conn, actor, m, &after, &locked.before).await
}

/// Whether `actor` may add notes and photos to the turn (`Actor::can_add_field_notes`): the
/// refusal to give when not. Uploads ask before taking any bytes.
pub async fn may_add_field_notes(
    pool: &PgPool,
    actor: &Actor,
    turn: Uuid,
) -> Result<Result<(), Rejection>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    match field_turn(&mut conn, actor, turn, false).await {
        Ok(_) => Ok(Ok(())),
        Err(Stop::Reject(r)) => Ok(Err(r)),
        Err(Stop::Db(e)) => Err(e),
    }
}

/// The turn a note or photo goes on, if `actor` may add one.
async fn field_turn(
    conn: &mut PgConnection,
    actor: &Actor,
    id: Uuid,
    lock: bool,
) -> Step<LockedTurn> {
    let turn = read_turn(conn, actor, id, lock).await?;
    if !actor.can_add_field_notes(&turn.facts) {
        return Err(Rejection::forbidden(
            "Only the turn's managers, its vendor and inspectors add notes and photos.",
        )
        .into());
    }
    Ok(turn)
}

/// The user read these notifications (only their own are marked; already read ones stay as
/// they were). Not audited: reading is not a change to the work.
async fn mark_read(conn: &mut PgConnection, actor: &Actor, ids: &[Uuid]) -> Step<Option<String>> {
    let txid: Option<String> = sqlx::query_scalar(
        "WITH read AS (
           UPDATE notifications SET read_at = now()
            WHERE id = ANY($1) AND user_id = $2 AND read_at IS NULL RETURNING id)
         SELECT pg_current_xact_id()::xid::text FROM read LIMIT 1",
    )
    .bind(ids)
    .bind(actor.user_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(txid)
}

/// The author's name as rows keep it (shapes cannot join users).
async fn author_name(conn: &mut PgConnection, actor: &Actor) -> Step<String> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce(nullif(concat_ws(' ', first_name, last_name), ''), email)
           FROM users WHERE id = $1",
    )
    .bind(actor.user_id)
    .fetch_one(&mut *conn)
    .await?)
}

async fn add_note(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    turn: Uuid,
    note: Uuid,
    body: &str,
) -> Step<Option<String>> {
    field_turn(conn, actor, turn, false).await?;
    let author = author_name(conn, actor).await?;
    let row: Value = sqlx::query_scalar(
        "INSERT INTO turn_notes (id, turn_id, body, author_id, author_name, device_time)
         VALUES ($1, $2, btrim($3), $4, $5, $6)
      RETURNING to_jsonb(turn_notes.*)",
    )
    .bind(note)
    .bind(turn)
    .bind(body)
    .bind(actor.user_id)
    .bind(author)
    .bind(device_time(m))
    .fetch_one(&mut *conn)
    .await?;
    audit(conn, actor, m, "turn_notes", note, None, Some(&row))
        .await
        .map(Some)
}

/// Attach an uploaded photo (`photo_uploads`: stored and checked, by this user, for this turn),
/// to a QC checklist item when it was taken for one.
async fn add_photo(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    turn: Uuid,
    photo: Uuid,
    caption: Option<&str>,
    qc_item: Option<Uuid>,
) -> Step<Option<String>> {
    field_turn(conn, actor, turn, false).await?;
    if let Some(item) = qc_item {
        let known: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM qc_checklist_items WHERE id = $1)")
                .bind(item)
                .fetch_one(&mut *conn)
                .await?;
        if !known {
            return Err(Rejection::invalid_field(
                "qc_item",
                "That QC checklist item does not exist.",
            )
            .into());
        }
    }
    let author = author_name(conn, actor).await?;
    let row: Option<Value> = sqlx::query_scalar(
        "INSERT INTO turn_photos (id, turn_id, caption, content_type, bytes, width, height,
                                  author_id, author_name, device_time, qc_item_id)
         SELECT u.id, u.turn_id, nullif(btrim($4), ''), u.content_type, u.bytes, u.width,
                u.height, u.uploaded_by, $5, $6, $7
           FROM photo_uploads u WHERE u.id = $1 AND u.turn_id = $2 AND u.uploaded_by = $3
      RETURNING to_jsonb(turn_photos.*)",
    )
    .bind(photo)
    .bind(turn)
    .bind(actor.user_id)
    .bind(caption)
    .bind(author)
    .bind(device_time(m))
    .bind(qc_item)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Err(Rejection::invalid_field("photo", "This photo has not been uploaded.").into());
    };
    audit(conn, actor, m, "turn_photos", photo, None, Some(&row))
        .await
        .map(Some)
}

async fn create_turn(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    t: &NewTurn,
) -> Step<Option<String>> {
    let facts: Option<(Option<Uuid>, Option<Uuid>)> = sqlx::query_as(
        "SELECT property_manager_id, sr_property_manager_id FROM properties
          WHERE id = $1 AND is_active FOR SHARE",
    )
    .bind(t.property_id)
    .fetch_optional(&mut *conn)
    .await?;
    // A property outside the actor's scope answers as one that does not exist: the refusal must
    // not tell which ids exist elsewhere.
    let manageable = facts.is_some_and(|(pm, sr)| {
        actor.can_manage_property(&PropertyFacts {
            property_manager_id: pm,
            sr_property_manager_id: sr,
        })
    });
    if !manageable {
        return Err(Rejection::NotFound {
            message: "This property no longer exists or is no longer yours to manage.".into(),
        }
        .into());
    }
    // Turn ids are made on devices, offline too (`NewTurn::readable_id`): one another device
    // took first is numbered (`-2`, `-3`, …) rather than refused. The stream brings the id to
    // the device that made it.
    let first_stage: Option<Uuid> = sqlx::query_scalar(
        // The device picks the same one (`rows::stages` orders by order, then id).
        "SELECT id FROM turn_stages WHERE is_active ORDER BY display_order, id LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(first_stage) = first_stage else {
        return Err(
            Rejection::invalid_field("stage", "There is no stage to start a turn in.").into(),
        );
    };
    let wanted = t.turn_id.trim();
    for n in 1..=TURN_ID_TRIES {
        let turn_id = match n {
            1 => wanted.to_string(),
            // Numbered within the column's 50 characters.
            n => {
                let suffix = format!("-{n}");
                let base: String = wanted.chars().take(50 - suffix.len()).collect();
                format!("{base}{suffix}")
            }
        };
        let after: Option<Value> = sqlx::query_scalar(
            "INSERT INTO turns (id, turn_id, property_id, stage_id, move_out_date, wo_number,
                                created_by, updated_by)
             VALUES ($1, $2, $3, $7, $4, nullif(btrim($5), ''), $6, $6)
             ON CONFLICT (turn_id) DO NOTHING
          RETURNING to_jsonb(turns.*)",
        )
        .bind(t.id)
        .bind(&turn_id)
        .bind(t.property_id)
        .bind(t.move_out_date)
        .bind(&t.wo_number)
        .bind(actor.user_id)
        .bind(first_stage)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(after) = after {
            return audit(conn, actor, m, "turns", t.id, None, Some(&after))
                .await
                .map(Some);
        }
    }
    Err(Rejection::invalid_field("turn_id", "Another turn already has this turn id.").into())
}

/// How many numbered turn ids a create tries before refusing.
const TURN_ID_TRIES: u32 = 20;

async fn create_property(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    p: &NewProperty,
) -> Step<Option<String>> {
    if !actor.can_create_property() {
        return Err(Rejection::forbidden("Only managers and admins add properties.").into());
    }
    let (pm, mut sr) = p.managers(actor)?;
    if sr.is_none() {
        if let Some(pm) = pm {
            // Teams are not a table: a PM's senior is whoever oversees most of their homes. A new
            // home joins that senior's oversight, so the senior sees it (and may reassign it).
            sr = sqlx::query_scalar(
                "SELECT p.sr_property_manager_id FROM properties p
                   JOIN users s ON s.id = p.sr_property_manager_id
                  WHERE p.property_manager_id = $1 AND s.is_active
                    AND s.role = 'SR_PROPERTY_MANAGER'
                  GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1",
            )
            .bind(pm)
            .fetch_optional(&mut *conn)
            .await?;
        }
    }
    if let Some(pm) = pm {
        check_assignee(conn, actor, pm).await?;
    }
    let after: Value = sqlx::query_scalar(
        "INSERT INTO properties (id, property_id, name, street_address, city, state, zip_code,
                                 year_built, is_core, property_manager_id, sr_property_manager_id,
                                 created_by, updated_by, bedrooms, bathrooms, area_sqft,
                                 access_notes)
         VALUES ($1, btrim($2), btrim($3), btrim($4), nullif(btrim($5), ''), nullif(btrim($6), ''),
                 nullif(btrim($7), ''), $8, $9, $10, $11, $12, $12, $13, $14, $15,
                 nullif(btrim($16), ''))
      RETURNING to_jsonb(properties.*)",
    )
    .bind(p.id)
    .bind(&p.property_id)
    .bind(&p.name)
    .bind(&p.street_address)
    .bind(&p.city)
    .bind(&p.state)
    .bind(&p.zip_code)
    .bind(p.year_built)
    .bind(p.is_core)
    .bind(pm)
    .bind(sr)
    .bind(actor.user_id)
    .bind(p.bedrooms)
    .bind(p.bathrooms)
    .bind(p.area_sqft)
    .bind(&p.access_notes)
    .fetch_one(&mut *conn)
    .await?;
    audit(conn, actor, m, "properties", p.id, None, Some(&after))
        .await
        .map(Some)
}

/// Whether `actor` may make `user` a property's manager (the rule is the policy's).
async fn check_assignee(conn: &mut PgConnection, actor: &Actor, user: Uuid) -> Step<()> {
    let facts: Option<(Role, bool, bool)> = sqlx::query_as(
        "SELECT u.role, u.is_active,
                EXISTS (SELECT 1 FROM properties p
                         WHERE p.property_manager_id = u.id AND p.sr_property_manager_id = $2)
           FROM users u WHERE u.id = $1",
    )
    .bind(user)
    .bind(actor.user_id)
    .fetch_optional(&mut *conn)
    .await?;
    let allowed = facts.is_some_and(|(role, is_active, in_actors_team)| {
        actor.can_assign_property_to(&AssigneeFacts {
            user_id: user,
            role,
            is_active,
            in_actors_team,
        })
    });
    if allowed {
        Ok(())
    } else {
        // The same answer for unknown users and for users outside the actor's reach.
        Err(Rejection::invalid_field(
            "property_manager_id",
            "Choose an active property manager on your team.",
        )
        .into())
    }
}

/// The JSON (as `to_jsonb` spells it) of an edit's starting and new values.
fn property_values(e: &PropertyEdit) -> (Value, Value) {
    match e {
        PropertyEdit::Name(e) | PropertyEdit::StreetAddress(e) => {
            (json!(e.from), json!(e.to.trim()))
        }
        PropertyEdit::City(e)
        | PropertyEdit::State(e)
        | PropertyEdit::ZipCode(e)
        | PropertyEdit::AccessNotes(e) => (
            json!(e.from),
            json!(e.to.as_deref().map(str::trim).filter(|v| !v.is_empty())),
        ),
        PropertyEdit::IsCore(e) | PropertyEdit::IsActive(e) => (json!(e.from), json!(e.to)),
        PropertyEdit::PropertyManager(e) => (json!(e.from), json!(e.to)),
        PropertyEdit::Bedrooms(e) | PropertyEdit::Bathrooms(e) => (json!(e.from), json!(e.to)),
        PropertyEdit::AreaSqft(e) => (json!(e.from), json!(e.to)),
    }
}

/// The same value, whether JSON spells a number as a number (`to_jsonb`: `2.0`) or as the
/// string a decimal is sent as (`"2"`).
fn same_value(a: Option<&Value>, b: &Value) -> bool {
    let number = |v: &Value| match v {
        Value::Number(n) => n.to_string().parse::<Decimal>().ok(),
        Value::String(s) => s.parse::<Decimal>().ok(),
        _ => None,
    };
    match a {
        Some(a) if a == b => true,
        Some(a) => number(a).is_some_and(|x| number(b) == Some(x)),
        None => b.is_null(),
    }
}

async fn update_property(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    id: Uuid,
    edits: &[PropertyEdit],
) -> Step<Option<String>> {
    let row: Option<(Value, Option<Uuid>, Option<Uuid>)> = sqlx::query_as(
        "SELECT to_jsonb(p), property_manager_id, sr_property_manager_id
           FROM properties p WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let facts = row.as_ref().map(|(_, pm, sr)| PropertyFacts {
        property_manager_id: *pm,
        sr_property_manager_id: *sr,
    });
    let (Some((before, _, _)), Some(facts)) = (row.clone(), facts) else {
        return Err(Rejection::NotFound {
            message: "This property no longer exists.".into(),
        }
        .into());
    };
    if !actor.can_read_property(&facts, &[]) {
        return Err(Rejection::NotFound {
            message: "This property no longer exists.".into(),
        }
        .into());
    }
    if !actor.can_manage_property(&facts) {
        return Err(Rejection::forbidden("Only the property's managers edit it.").into());
    }
    let reassigns = edits
        .iter()
        .any(|e| matches!(e, PropertyEdit::PropertyManager(_)));
    if reassigns && actor.role == Role::PropertyManager {
        return Err(Rejection::forbidden(
            "A senior property manager or an admin reassigns properties.",
        )
        .into());
    }
    for e in edits {
        if let PropertyEdit::PropertyManager(Edit { to: Some(pm), .. }) = e {
            check_assignee(conn, actor, *pm).await?;
        }
    }
    let mut patch = serde_json::Map::new();
    let mut stale = Vec::new();
    for e in edits {
        let (from, to) = property_values(e);
        if !same_value(before.get(e.column()), &from) {
            stale.push(e.column().to_string());
        }
        patch.insert(e.column().to_string(), to);
    }
    if !stale.is_empty() {
        return Err(Rejection::Conflict {
            message: "Someone else changed this property while you were editing it.".into(),
            fields: stale,
            current: None,
        }
        .into());
    }
    if patch.iter().all(|(k, v)| same_value(before.get(k), v)) {
        return Ok(None);
    }
    // Columns come from the fixed edit enum; values are typed by the table's own row type.
    let assignments = patch
        .keys()
        .map(|c| format!("{c} = r.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let after: Value = sqlx::query_scalar(&format!(
        "UPDATE properties SET {assignments}, updated_by = $3
           FROM jsonb_populate_record(NULL::properties, $2) r
          WHERE properties.id = $1
      RETURNING to_jsonb(properties.*)"
    ))
    .bind(id)
    .bind(Value::Object(patch))
    .bind(actor.user_id)
    .fetch_one(&mut *conn)
    .await?;
    audit(
        conn,
        actor,
        m,
        "properties",
        id,
        Some(&before),
        Some(&after),
    )
    .await
    .map(Some)
}
