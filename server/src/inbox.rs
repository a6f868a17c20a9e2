//! The inbox on the server: notices (`turns::inbox`) become `notifications` rows for the users
//! they are for; a job sends reminders, escalations and overdue notices, and emails what is new
//! when `SMTP_URL` is set.
use crate::queries::{CARD_COLUMNS, CARD_FROM};
use chrono::{DateTime, Utc};
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{json, Value};
use sqlx::PgPool;
use std::time::Duration;
use turns::inbox::{self, Notice, To, Waiting};
use turns::model::TurnCard;
use turns::ApprovalLevel;
use uuid::Uuid;

/// The notices as rows for `jsonb_to_recordset` in [`insert_for_turn`]: what, and who by vendor,
/// by the turn's managers, or by role.
pub fn recipients(notices: &[Notice]) -> Value {
    Value::Array(
        notices
            .iter()
            .map(|n| {
                let (vendor, managers, roles) = match n.to {
                    To::Vendor(v) => (Some(v), false, ""),
                    To::Managers => (None, true, ""),
                    To::Approvers(ApprovalLevel::Dfo) => (None, false, "DFO_APPROVER"),
                    To::Approvers(ApprovalLevel::Ho) => (None, false, "HO_APPROVER"),
                    To::Admins => (None, false, "ADMIN,SUPER_ADMIN"),
                };
                json!({"kind": n.kind.as_str(), "message": n.message, "key": n.key,
                       "vendor_id": vendor, "managers": managers, "roles": roles})
            })
            .collect(),
    )
}

/// The statement that inserts notices about one turn for their users (not for `actor`, who
/// caused them): `turn` is its id, `notices` the [`recipients`] JSON, `actor` the acting user (or
/// null) — each a placeholder (`$1`). The query it ends must have the turn's `property_id` in a
/// relation named `t`.
pub fn insert_for_turn(turn: &str, notices: &str, actor: &str) -> String {
    format!(
        "INSERT INTO notifications (user_id, turn_id, kind, message, dedupe_key)
         SELECT u.id, {turn}, n.kind, n.message, n.key
           FROM properties p
          CROSS JOIN jsonb_to_recordset({notices}::jsonb)
                AS n(kind text, message text, key text, vendor_id uuid, managers boolean, roles text)
           JOIN users u ON u.is_active AND u.id IS DISTINCT FROM {actor} AND (
                (u.role = 'VENDOR' AND u.vendor_id = n.vendor_id)
             OR (n.managers AND u.id IN (p.property_manager_id, p.sr_property_manager_id))
             OR u.role::text = ANY (string_to_array(n.roles, ',')))
          WHERE p.id = (SELECT property_id FROM t)
         ON CONFLICT (user_id, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING"
    )
}

async fn insert(pool: &PgPool, turn: Uuid, notices: &[Notice]) -> Result<u64, sqlx::Error> {
    if notices.is_empty() {
        return Ok(0);
    }
    Ok(sqlx::query(&format!(
        "WITH t AS (SELECT property_id FROM turns WHERE id = $1) {}",
        insert_for_turn("$1", "$2", "$3")
    ))
    .bind(turn)
    .bind(recipients(notices))
    .bind(None::<Uuid>)
    .execute(pool)
    .await?
    .rows_affected())
}

/// Reminders for approvals that wait (since their approval was asked of the level it waits for:
/// `awaiting_since`, which every writer keeps), and overdue turns: each sent once. Safe on every
/// instance at once (the keys make them once).
pub async fn remind(pool: &PgPool, now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let waiting: Vec<Waiting> = sqlx::query_as(
        "SELECT t.id, t.turn_id, p.name AS property_name, t.approval_status,
                t.awaiting_since AS since
           FROM turns t
           JOIN properties p ON p.id = t.property_id
          WHERE t.is_active AND t.approval_status IN ('DFO_APPROVAL_NEEDED', 'HO_APPROVAL_NEEDED')
            AND t.awaiting_since < $1",
    )
    .bind(now - inbox::REMIND_AFTER)
    .fetch_all(pool)
    .await?;
    let mut sent = 0;
    for w in &waiting {
        sent += insert(pool, w.id, &inbox::reminders(w, now)).await?;
    }
    let late: Vec<TurnCard> = sqlx::query_as(&format!(
        "SELECT {CARD_COLUMNS} {CARD_FROM}
          WHERE t.is_active AND t.turn_completion_date IS NULL
            AND t.expected_completion_date < $1"
    ))
    .bind(now.date_naive())
    .fetch_all(pool)
    .await?;
    for t in &late {
        sent += insert(pool, t.id, &inbox::overdue(t, now.date_naive())).await?;
    }
    Ok(sent)
}

/// Email what is new (from the last day) through `mailer`, each once: rows are claimed in a
/// transaction (`SKIP LOCKED`: instances share the work) and marked when sent. A failed send is
/// tried again next time.
pub async fn send_emails(
    pool: &PgPool,
    mailer: &AsyncSmtpTransport<Tokio1Executor>,
    from: &Mailbox,
) -> Result<usize, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let due: Vec<(Uuid, String, String, String)> = sqlx::query_as(
        "SELECT n.id, u.email, concat_ws(' ', u.first_name, u.last_name), n.message
           FROM notifications n JOIN users u ON u.id = n.user_id
          WHERE n.emailed_at IS NULL AND n.created_at > now() - interval '1 day'
          ORDER BY n.created_at LIMIT 50
            FOR UPDATE OF n SKIP LOCKED",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut sent = Vec::new();
    for (id, email, name, message) in due {
        let Ok(to) = format!("{name} <{email}>").parse::<Mailbox>() else {
            tracing::warn!(%id, "a notification's address is not one email can go to");
            sent.push(id);
            continue;
        };
        let mail = Message::builder()
            .from(from.clone())
            .to(to)
            .subject(format!("Turns: {message}"))
            .body(format!("{message}\n\nOpen Turns to see it.\n"));
        match mail {
            Ok(mail) => match mailer.send(mail).await {
                Ok(_) => sent.push(id),
                Err(e) => {
                    tracing::warn!(error = %e, "could not send a notification email; trying later");
                    break;
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, %id, "could not build a notification email");
                sent.push(id);
            }
        }
    }
    sqlx::query("UPDATE notifications SET emailed_at = now() WHERE id = ANY($1)")
        .bind(&sent)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(sent.len())
}

/// How the inbox jobs run.
#[derive(Clone, Debug)]
pub struct Jobs {
    /// How often reminders are looked for.
    pub remind_every: Duration,
    /// `smtp://host:port` (or `smtps://user:pass@host`); no email without it.
    pub smtp_url: Option<String>,
    pub mail_from: String,
}

/// Run the reminder job, and the mailer when SMTP is configured, until the process ends.
pub fn spawn(pool: PgPool, jobs: Jobs) -> Result<(), String> {
    let mailer = match &jobs.smtp_url {
        Some(url) => Some((
            AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                .map_err(|e| format!("SMTP_URL: {e}"))?
                .build(),
            jobs.mail_from
                .parse::<Mailbox>()
                .map_err(|e| format!("MAIL_FROM: {e}"))?,
        )),
        None => None,
    };
    let reminders = pool.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(jobs.remind_every);
        loop {
            every.tick().await;
            if let Err(e) = remind(&reminders, Utc::now()).await {
                tracing::warn!(error = %e, "inbox reminders failed");
            }
        }
    });
    if let Some((mailer, from)) = mailer {
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                every.tick().await;
                if let Err(e) = send_emails(&pool, &mailer, &from).await {
                    tracing::warn!(error = %e, "notification emails failed");
                }
            }
        });
    }
    Ok(())
}
