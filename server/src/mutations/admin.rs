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
