//! An admin's changes: users, vendor companies, approval thresholds. Each is checked against the
//! policy here, written with its audit row (before and after) in the mutation's transaction, and
//! announced like any write (the `vendors` and `approval_thresholds` tables are in the shapes'
//! publication, so open boards follow). Deactivating a user deletes their sessions, which ends
//! their open shape streams at once (the `users_deactivated` and `sessions_ended` triggers).
use super::{audit, Step};
use serde_json::Value;
use sqlx::PgConnection;
use turns::admin::{may_grant, NewUser, NewVendor};
use turns::mutation::{Mutation, Rejection};
use turns::{Actor, Thresholds};
use uuid::Uuid;

fn admins_only(actor: &Actor) -> Step<()> {
    if actor.role.is_admin() {
        Ok(())
    } else {
        Err(Rejection::forbidden("Only an admin changes this.").into())
    }
}

pub(super) async fn create_user(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    u: &NewUser,
) -> Step<Option<String>> {
    admins_only(actor)?;
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

pub(super) async fn set_user_active(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    user: Uuid,
    active: bool,
) -> Step<Option<String>> {
    admins_only(actor)?;
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
    audit(conn, actor, m, "users", user, Some(&before), Some(&after))
        .await
        .map(Some)
}

pub(super) async fn create_vendor(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    v: &NewVendor,
) -> Step<Option<String>> {
    admins_only(actor)?;
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

pub(super) async fn set_vendor(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    vendor: Uuid,
    approved: bool,
    active: bool,
) -> Step<Option<String>> {
    admins_only(actor)?;
    let before: Option<Value> =
        sqlx::query_scalar("SELECT to_jsonb(vendors.*) FROM vendors WHERE id = $1 FOR UPDATE")
            .bind(vendor)
            .fetch_optional(&mut *conn)
            .await?;
    let Some(before) = before else {
        return Err(Rejection::NotFound {
            message: "This vendor does not exist.".into(),
        }
        .into());
    };
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

pub(super) async fn set_thresholds(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    t: &Thresholds,
) -> Step<Option<String>> {
    admins_only(actor)?;
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

pub(super) async fn edit_stage(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    stage: Uuid,
    s: &turns::admin::StageSettings,
) -> Step<Option<String>> {
    admins_only(actor)?;
    let before: Option<Value> = sqlx::query_scalar(
        "SELECT to_jsonb(turn_stages.*) FROM turn_stages WHERE id = $1 FOR UPDATE",
    )
    .bind(stage)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(before) = before else {
        return Err(Rejection::NotFound {
            message: "This stage does not exist.".into(),
        }
        .into());
    };
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
pub(super) async fn move_stage(
    conn: &mut PgConnection,
    actor: &Actor,
    m: &Mutation,
    stage: Uuid,
    earlier: bool,
) -> Step<Option<String>> {
    admins_only(actor)?;
    // Every stage is locked: two admins reordering at once queue up instead of clashing.
    let order: Vec<(Uuid, i32)> = sqlx::query_as(
        "SELECT id, display_order FROM turn_stages WHERE is_active ORDER BY display_order FOR UPDATE",
    )
    .fetch_all(&mut *conn)
    .await?;
    let Some(at) = order.iter().position(|(id, _)| *id == stage) else {
        return Err(Rejection::NotFound {
            message: "This stage does not exist.".into(),
        }
        .into());
    };
    let other = if earlier {
        at.checked_sub(1)
    } else {
        Some(at + 1).filter(|i| *i < order.len())
    };
    let Some(other) = other else {
        return Ok(None); // already first (or last)
    };
    let ((a, a_order), (b, b_order)) = (order[at], order[other]);
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
