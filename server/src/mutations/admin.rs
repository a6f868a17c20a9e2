//! An admin's changes: users, vendor companies, stages, approval thresholds, cost templates and
//! QC checklists. Each is checked against the policy here, written with its audit row (before and
//! after) in the mutation's transaction, and announced like any write (these tables are in the
//! shapes' publication, so open boards follow). Deactivating a user deletes their sessions, which ends
//! their open shape streams at once (the `users_deactivated` and `sessions_ended` triggers).
use super::{audit, Step};
use serde_json::Value;
use sqlx::PgConnection;
use turns::admin::{may_grant, AdminChange, NewUser, NewVendor, StageSettings, TemplateSettings};
use turns::mutation::{Mutation, Rejection};
use turns::{Actor, Thresholds};
use uuid::Uuid;

/// Apply an admin's change (admins only, every one of them).
pub(super) async fn apply(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    change: &AdminChange,
) -> Step<Option<String>> {
    if !actor.role.is_admin() {
        return Err(Rejection::forbidden("Only an admin changes this.").into());
    }
    match change {
        AdminChange::CreateUser(u) => create_user(conn, actor, m, u).await,
        AdminChange::SetUserActive { user, active } => {
            set_user_active(conn, actor, m, *user, *active).await
        }
        AdminChange::CreateVendor(v) => create_vendor(conn, actor, m, v).await,
        AdminChange::SetVendor {
            vendor,
            approved,
            active,
        } => set_vendor(conn, actor, m, *vendor, *approved, *active).await,
        AdminChange::SetThresholds(t) => set_thresholds(conn, actor, m, t).await,
        AdminChange::EditStage { stage, settings } => {
            edit_stage(conn, actor, m, *stage, settings).await
        }
        AdminChange::MoveStage { stage, earlier } => {
            move_stage(conn, actor, m, *stage, *earlier).await
        }
        AdminChange::SaveCostTemplate { template, settings } => {
            save_cost_template(conn, actor, m, *template, settings).await
        }
        AdminChange::SaveQcItem { item, stage, label } => {
            save_qc_item(conn, actor, m, *item, *stage, label).await
        }
        AdminChange::RemoveQcItem { item } => remove_qc_item(conn, actor, m, *item).await,
        AdminChange::MoveQcItem { item, earlier } => {
            move_qc_item(conn, actor, m, *item, *earlier).await
        }
    }
}

/// A row as JSON, locked for the change (`select` takes its id as `$1`), or "not found".
async fn locked(conn: &mut PgConnection, select: &str, id: Uuid, missing: &str) -> Step<Value> {
    let row: Option<Value> = sqlx::query_scalar(select)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    row.ok_or_else(|| {
        Rejection::NotFound {
            message: missing.into(),
        }
        .into()
    })
}

async fn create_user(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    u: &NewUser,
) -> Step<Option<String>> {
    if !may_grant(actor, u.role) {
        return Err(Rejection::forbidden("Only a super admin adds admins.").into());
    }
    if let Some(vendor) = u.vendor_id {
        let known: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM vendors WHERE id = $1)")
            .bind(vendor)
            .fetch_one(&mut *conn)
            .await?;
        if !known {
            return Err(Rejection::invalid_field("vendor_id", "Unknown vendor company.").into());
        }
    }
    let trim = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let after: Value = sqlx::query_scalar(
        "INSERT INTO users (id, email, first_name, last_name, role, vendor_id, created_by,
                            updated_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
      RETURNING to_jsonb(users.*) - 'password_hash'",
    )
    .bind(u.id)
    .bind(u.normalized_email())
    .bind(trim(&u.first_name))
    .bind(trim(&u.last_name))
    .bind(u.role)
    .bind(u.vendor_id)
    .bind(actor.user_id)
    .fetch_one(&mut *conn)
    .await?;
    audit(conn, actor, m, "users", u.id, None, Some(&after))
        .await
        .map(Some)
}

async fn set_user_active(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    user: Uuid,
    active: bool,
) -> Step<Option<String>> {
    if user == actor.user_id && !active {
        return Err(Rejection::invalid_field("user", "You cannot deactivate yourself.").into());
    }
    let row: Option<(Value, turns::Role)> = sqlx::query_as(
        "SELECT to_jsonb(users.*) - 'password_hash', role FROM users WHERE id = $1 FOR UPDATE",
    )
    .bind(user)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((before, role)) = row else {
        return Err(Rejection::NotFound {
            message: "This user does not exist.".into(),
        }
        .into());
    };
    if !may_grant(actor, role) {
        return Err(Rejection::forbidden("Only a super admin changes an admin.").into());
    }
    if before.get("is_active") == Some(&Value::Bool(active)) {
        return Ok(None);
    }
    let after: Value = sqlx::query_scalar(
        "UPDATE users SET is_active = $2, updated_by = $3 WHERE id = $1
      RETURNING to_jsonb(users.*) - 'password_hash'",
    )
    .bind(user)
    .bind(active)
    .bind(actor.user_id)
    .fetch_one(&mut *conn)
    .await?;
    if !active {
        // Their unused password links go too: bringing them back does not revive one.
        sqlx::query("DELETE FROM password_links WHERE user_id = $1 AND used_at IS NULL")
            .bind(user)
            .execute(&mut *conn)
            .await?;
    }
    audit(conn, actor, m, "users", user, Some(&before), Some(&after))
        .await
        .map(Some)
}

async fn create_vendor(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    v: &NewVendor,
) -> Step<Option<String>> {
    let after: Value = sqlx::query_scalar(
        "INSERT INTO vendors (id, name, trade, contact_email, contact_phone, is_approved,
                              created_by, updated_by)
         VALUES ($1, btrim($2), nullif(btrim($3), ''), nullif(lower(btrim($4)), ''),
                 nullif(btrim($5), ''), false, $6, $6)
      RETURNING to_jsonb(vendors.*)",
    )
    .bind(v.id)
    .bind(&v.name)
    .bind(&v.trade)
    .bind(&v.contact_email)
    .bind(&v.contact_phone)
    .bind(actor.user_id)
    .fetch_one(&mut *conn)
    .await?;
    audit(conn, actor, m, "vendors", v.id, None, Some(&after))
        .await
        .map(Some)
}

async fn set_vendor(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    vendor: Uuid,
    approved: bool,
    active: bool,
) -> Step<Option<String>> {
    let before = locked(
        conn,
        "SELECT to_jsonb(vendors.*) FROM vendors WHERE id = $1 FOR UPDATE",
        vendor,
        "This vendor does not exist.",
    )
    .await?;
    let after: Value = sqlx::query_scalar(
        "UPDATE vendors SET is_approved = $2, is_active = $3, updated_by = $4 WHERE id = $1
      RETURNING to_jsonb(vendors.*)",
    )
    .bind(vendor)
    .bind(approved)
    .bind(active)
    .bind(actor.user_id)
    .fetch_one(&mut *conn)
    .await?;
    audit(
        conn,
        actor,
        m,
        "vendors",
        vendor,
        Some(&before),
        Some(&after),
    )
    .await
    .map(Some)
}

async fn set_thresholds(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    t: &Thresholds,
) -> Step<Option<String>> {
    let before: (Uuid, Value) = sqlx::query_as(
        "SELECT id, to_jsonb(approval_thresholds.*) FROM approval_thresholds FOR UPDATE",
    )
    .fetch_one(&mut *conn)
    .await?;
    let after: Value = sqlx::query_scalar(
        "UPDATE approval_thresholds SET pm_self_approve_limit = $2, ho_threshold = $3,
                non_core_threshold = $4, change_tolerance_pct = $5, updated_by = $6
          WHERE id = $1 RETURNING to_jsonb(approval_thresholds.*)",
    )
    .bind(before.0)
    .bind(t.pm_self_approve_limit)
    .bind(t.ho_threshold)
    .bind(t.non_core_threshold)
    .bind(t.change_tolerance_pct)
    .bind(actor.user_id)
    .fetch_one(&mut *conn)
    .await?;
    audit(
        conn,
        actor,
        m,
        "approval_thresholds",
        before.0,
        Some(&before.1),
        Some(&after),
    )
    .await
    .map(Some)
}

async fn edit_stage(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    stage: Uuid,
    s: &StageSettings,
) -> Step<Option<String>> {
    let before = locked(
        conn,
        "SELECT to_jsonb(turn_stages.*) FROM turn_stages WHERE id = $1 FOR UPDATE",
        stage,
        "This stage does not exist.",
    )
    .await?;
    let after: Value = sqlx::query_scalar(
        "UPDATE turn_stages SET name = btrim($2), color = lower($3), is_amount_required = $4,
                is_vendor_required = $5, requires_approval = $6, requires_qc = $7, updated_by = $8
          WHERE id = $1 RETURNING to_jsonb(turn_stages.*)",
    )
    .bind(stage)
    .bind(&s.name)
    .bind(&s.color)
    .bind(s.is_amount_required)
    .bind(s.is_vendor_required)
    .bind(s.requires_approval)
    .bind(s.requires_qc)
    .bind(actor.user_id)
    .fetch_one(&mut *conn)
    .await?;
    audit(
        conn,
        actor,
        m,
        "turn_stages",
        stage,
        Some(&before),
        Some(&after),
    )
    .await
    .map(Some)
}

/// Swap a stage with its neighbour among the active stages. `display_order` is unique and not
/// deferrable, so the swap goes through a free number.
async fn move_stage(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    stage: Uuid,
    earlier: bool,
) -> Step<Option<String>> {
    // Every stage is locked: two admins reordering at once queue up instead of clashing.
    let order: Vec<(Uuid, i32)> = sqlx::query_as(
        "SELECT id, display_order FROM turn_stages WHERE is_active ORDER BY display_order FOR UPDATE",
    )
    .fetch_all(&mut *conn)
    .await?;
    let Some(((a, a_order), (b, b_order))) =
        neighbours(&order, stage, earlier, "This stage does not exist.")?
    else {
        return Ok(None);
    };
    let before: Value = sqlx::query_scalar(
        "SELECT jsonb_object_agg(id, display_order) FROM turn_stages WHERE id IN ($1, $2)",
    )
    .bind(a)
    .bind(b)
    .fetch_one(&mut *conn)
    .await?;
    for (id, to) in [(a, -1 - a_order.abs()), (b, a_order), (a, b_order)] {
        sqlx::query("UPDATE turn_stages SET display_order = $2, updated_by = $3 WHERE id = $1")
            .bind(id)
            .bind(to)
            .bind(actor.user_id)
            .execute(&mut *conn)
            .await?;
    }
    let after = serde_json::json!({ a.to_string(): b_order, b.to_string(): a_order });
    audit(
        conn,
        actor,
        m,
        "turn_stages",
        stage,
        Some(&before),
        Some(&after),
    )
    .await
    .map(Some)
}

/// Add a cost template (an id not yet used) or replace one whole.
async fn save_cost_template(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    template: Uuid,
    t: &TemplateSettings,
) -> Step<Option<String>> {
    let before: Option<Value> = sqlx::query_scalar(
        "SELECT to_jsonb(cost_templates.*) FROM cost_templates WHERE id = $1 FOR UPDATE",
    )
    .bind(template)
    .fetch_optional(&mut *conn)
    .await?;
    let after: Value = sqlx::query_scalar(
        "INSERT INTO cost_templates (id, name, bedrooms, bathrooms, min_sqft, max_sqft, items,
                                     is_active, created_by, updated_by)
         VALUES ($1, btrim($2), $3, $4, $5, $6, $7, $8, $9, $9)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, bedrooms = excluded.bedrooms,
                bathrooms = excluded.bathrooms, min_sqft = excluded.min_sqft,
                max_sqft = excluded.max_sqft, items = excluded.items,
                is_active = excluded.is_active, updated_by = excluded.updated_by
      RETURNING to_jsonb(cost_templates.*)",
    )
    .bind(template)
    .bind(&t.name)
    .bind(t.bedrooms)
    .bind(t.bathrooms)
    .bind(t.min_sqft)
    .bind(t.max_sqft)
    .bind(sqlx::types::Json(&t.items))
    .bind(t.is_active)
    .bind(actor.user_id)
    .fetch_one(&mut *conn)
    .await?;
    audit(
        conn,
        actor,
        m,
        "cost_templates",
        template,
        before.as_ref(),
        Some(&after),
    )
    .await
    .map(Some)
}

/// Add an item at the end of a stage's checklist (an id not yet used), or reword one (its
/// stage stays).
async fn save_qc_item(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    item: Uuid,
    stage: Uuid,
    label: &str,
) -> Step<Option<String>> {
    let before: Option<Value> = sqlx::query_scalar(
        "SELECT to_jsonb(qc_checklist_items.*) FROM qc_checklist_items WHERE id = $1 FOR UPDATE",
    )
    .bind(item)
    .fetch_optional(&mut *conn)
    .await?;
    let after: Value = match &before {
        Some(row) => {
            // An item stays on its stage's list, and a removed one stays removed.
            if row.get("stage_id").and_then(Value::as_str) != Some(stage.to_string().as_str()) {
                return Err(Rejection::invalid_field(
                    "stage",
                    "This item belongs to another stage's checklist.",
                )
                .into());
            }
            if row.get("is_active") != Some(&Value::Bool(true)) {
                return Err(Rejection::NotFound {
                    message: "This checklist item was removed.".into(),
                }
                .into());
            }
            sqlx::query_scalar(
                "UPDATE qc_checklist_items SET label = btrim($2), updated_by = $3 WHERE id = $1
              RETURNING to_jsonb(qc_checklist_items.*)",
            )
            .bind(item)
            .bind(label)
            .bind(actor.user_id)
            .fetch_one(&mut *conn)
            .await?
        }
        None => {
            // The stage's row lock keeps two admins adding at once from taking one position.
            let known: Option<Uuid> =
                sqlx::query_scalar("SELECT id FROM turn_stages WHERE id = $1 FOR UPDATE")
                    .bind(stage)
                    .fetch_optional(&mut *conn)
                    .await?;
            if known.is_none() {
                return Err(Rejection::invalid_field("stage", "Unknown stage.").into());
            }
            sqlx::query_scalar(
                "INSERT INTO qc_checklist_items (id, stage_id, position, label, created_by,
                                                 updated_by)
                 SELECT $1, $2, coalesce(max(position), 0) + 1, btrim($3), $4, $4
                   FROM qc_checklist_items WHERE stage_id = $2
              RETURNING to_jsonb(qc_checklist_items.*)",
            )
            .bind(item)
            .bind(stage)
            .bind(label)
            .bind(actor.user_id)
            .fetch_one(&mut *conn)
            .await?
        }
    };
    audit(
        conn,
        actor,
        m,
        "qc_checklist_items",
        item,
        before.as_ref(),
        Some(&after),
    )
    .await
    .map(Some)
}

/// Take an item off its checklist. It is kept (inactive): recorded inspections and QC photos
/// name it.
async fn remove_qc_item(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    item: Uuid,
) -> Step<Option<String>> {
    let before = locked(
        conn,
        "SELECT to_jsonb(qc_checklist_items.*) FROM qc_checklist_items WHERE id = $1 FOR UPDATE",
        item,
        "This checklist item does not exist.",
    )
    .await?;
    if before.get("is_active") == Some(&Value::Bool(false)) {
        return Ok(None);
    }
    // The last item goes only while no stage requires QC: without a checklist no inspection can
    // be recorded, and turns could not enter that stage.
    let stranding: bool = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM qc_checklist_items
                  WHERE is_active AND stage_id = (SELECT stage_id FROM qc_checklist_items
                                                   WHERE id = $1)) = 1
            AND EXISTS (SELECT 1 FROM turn_stages WHERE is_active AND requires_qc)",
    )
    .bind(item)
    .fetch_one(&mut *conn)
    .await?;
    if stranding {
        return Err(Rejection::invalid_field(
            "item",
            "A stage requires QC to pass: keep at least one item on this checklist (or turn that gate off first).",
        )
        .into());
    }
    let after: Value = sqlx::query_scalar(
        "UPDATE qc_checklist_items SET is_active = false, updated_by = $2 WHERE id = $1
      RETURNING to_jsonb(qc_checklist_items.*)",
    )
    .bind(item)
    .bind(actor.user_id)
    .fetch_one(&mut *conn)
    .await?;
    audit(
        conn,
        actor,
        m,
        "qc_checklist_items",
        item,
        Some(&before),
        Some(&after),
    )
    .await
    .map(Some)
}

/// Swap a checklist item with its neighbour among its stage's active items.
async fn move_qc_item(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    item: Uuid,
    earlier: bool,
) -> Step<Option<String>> {
    let order: Vec<(Uuid, i32)> = sqlx::query_as(
        "SELECT id, position FROM qc_checklist_items
          WHERE is_active AND stage_id = (SELECT stage_id FROM qc_checklist_items WHERE id = $1)
          ORDER BY position, id FOR UPDATE",
    )
    .bind(item)
    .fetch_all(&mut *conn)
    .await?;
    let Some((a, b)) = neighbours(&order, item, earlier, "This checklist item does not exist.")?
    else {
        return Ok(None);
    };
    let before = serde_json::json!({ a.0.to_string(): a.1, b.0.to_string(): b.1 });
    // Positions need not be unique, so the two swap directly (equal ones are split apart).
    let (to_a, to_b) = if a.1 == b.1 {
        if earlier {
            (a.1 - 1, b.1)
        } else {
            (a.1 + 1, b.1)
        }
    } else {
        (b.1, a.1)
    };
    for (id, to) in [(a.0, to_a), (b.0, to_b)] {
        sqlx::query("UPDATE qc_checklist_items SET position = $2, updated_by = $3 WHERE id = $1")
            .bind(id)
            .bind(to)
            .bind(actor.user_id)
            .execute(&mut *conn)
            .await?;
    }
    let after = serde_json::json!({ a.0.to_string(): to_a, b.0.to_string(): to_b });
    audit(
        conn,
        actor,
        m,
        "qc_checklist_items",
        item,
        Some(&before),
        Some(&after),
    )
    .await
    .map(Some)
}

/// A row's id and its place (`display_order`, `position`).
type Placed = (Uuid, i32);

/// The row to move and the neighbour it swaps with (`None`: already first or last), from rows
/// in order.
fn neighbours(
    order: &[Placed],
    id: Uuid,
    earlier: bool,
    missing: &str,
) -> Step<Option<(Placed, Placed)>> {
    let Some(at) = order.iter().position(|(row, _)| *row == id) else {
        return Err(Rejection::NotFound {
            message: missing.into(),
        }
        .into());
    };
    let other = if earlier {
        at.checked_sub(1)
    } else {
        Some(at + 1).filter(|i| *i < order.len())
    };
    Ok(other.map(|other| (order[at], order[other])))
}
