//! The inbox against a real Postgres: each change tells whose turn it now is, in the same
//! transaction; reminders and escalations go once per wait; overdue turns once per date; users
//! mark only their own as read; emails go out once through a real SMTP server (a local sink).
use chrono::{Duration, Utc};
use sqlx::PgPool;
use turns::mutation::{Change, Edit, Mutation, Outcome, TurnEdit};
use turns::Actor;
use turns_server::inbox;
use turns_server::mutations::apply;
use turns_server::testing::{actor, demo_state};
use uuid::Uuid;

async fn run(pool: &PgPool, who: &Actor, change: Change) -> Outcome {
    let m = Mutation {
        id: Uuid::new_v4(),
        base_version: None,
        device_time: Utc::now(),
        change,
    };
    apply(pool, who, &m).await.expect("ran")
}

/// (email, kind) of every notification about `turn`, sorted.
async fn told(pool: &PgPool, turn: Uuid) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT u.email, n.kind FROM notifications n JOIN users u ON u.id = n.user_id
          WHERE n.turn_id = $1 ORDER BY 1, 2",
    )
    .bind(turn)
    .fetch_all(pool)
    .await
    .expect("notifications")
}

/// A turn of pm@'s, open and unassigned, with no approval asked yet.
async fn fresh_turn(pool: &PgPool) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO turns (turn_id, property_id, stage_id, move_out_date)
         SELECT 'INBOX-' || substr(md5(random()::text), 1, 8), p.id, s.id, current_date - 3
           FROM properties p JOIN users u ON u.id = p.property_manager_id, turn_stages s
          WHERE u.email = 'pm@turns.demo' AND p.is_core AND s.name = 'Scope & bid'
          ORDER BY p.property_id LIMIT 1
         RETURNING id",
    )
    .fetch_one(pool)
    .await
    .expect("turn")
}

fn pair(email: &str, kind: &str) -> (String, String) {
    (email.to_string(), kind.to_string())
}

#[tokio::test]
async fn each_change_tells_whose_turn_it_now_is_and_nobody_else() {
    let state = demo_state().await;
    let pool = &state.pool;
    let pm = actor(pool, "pm@turns.demo").await;
    let turn = fresh_turn(pool).await;
    let brightline: Uuid =
        sqlx::query_scalar("SELECT id FROM vendors WHERE name = 'Brightline Painting'")
            .fetch_one(pool)
            .await
            .expect("vendor");
    // The PM gives the work and an amount that needs the DFO.
    let o = run(
        pool,
        &pm,
        Change::EditTurn {
            turn,
            edits: vec![
                TurnEdit::Vendor(Edit {
                    from: None,
                    to: Some(brightline),
                }),
                TurnEdit::Amount(Edit {
                    from: None,
                    to: Some(turns::Decimal::new(4000, 0)),
                }),
            ],
        },
    )
    .await;
    assert!(matches!(o, Outcome::Applied { .. }), "{o:?}");
    run(pool, &pm, Change::SubmitForApproval { turn }).await;
    let vendors: Vec<String> =
        sqlx::query_scalar("SELECT email FROM users WHERE vendor_id = $1 AND is_active ORDER BY 1")
            .bind(brightline)
            .fetch_all(pool)
            .await
            .expect("vendor users");
    let mut want: Vec<(String, String)> = vendors.iter().map(|v| pair(v, "assigned")).collect();
    want.push(pair("dfo@turns.demo", "approval_needed"));
    want.sort();
    assert_eq!(
        told(pool, turn).await,
        want,
        "the vendor's users and the DFO; not the PM who did it"
    );

    // The DFO approves: the managers hear it (the PM and their senior PM), the DFO does not.
    let dfo = actor(pool, "dfo@turns.demo").await;
    let o = run(
        pool,
        &dfo,
        Change::DecideApproval {
            turn,
            approve: true,
            amount: None,
            reason: None,
        },
    )
    .await;
    assert!(matches!(o, Outcome::Applied { .. }), "{o:?}");
    let approved: Vec<String> = sqlx::query_scalar(
        "SELECT u.email FROM notifications n JOIN users u ON u.id = n.user_id
          WHERE n.turn_id = $1 AND n.kind = 'approved' ORDER BY 1",
    )
    .bind(turn)
    .fetch_all(pool)
    .await
    .expect("approved");
    assert_eq!(
        approved,
        vec!["pm@turns.demo".to_string(), "srpm@turns.demo".to_string()]
    );

    // The vendor declines: back to the managers, with the reason.
    let vendor = actor(pool, "vendor@turns.demo").await;
    let o = run(
        pool,
        &vendor,
        Change::DeclineWork {
            turn,
            reason: "Booked solid".into(),
        },
    )
    .await;
    assert!(matches!(o, Outcome::Applied { .. }), "{o:?}");
    let message: String = sqlx::query_scalar(
        "SELECT message FROM notifications n JOIN users u ON u.id = n.user_id
          WHERE n.turn_id = $1 AND n.kind = 'declined' AND u.email = 'pm@turns.demo'",
    )
    .bind(turn)
    .fetch_one(pool)
    .await
    .expect("declined");
    assert!(message.ends_with("Booked solid"), "{message}");

    // Each user marks only their own as read.
    let mine: Vec<Uuid> = sqlx::query_scalar(
        "SELECT n.id FROM notifications n JOIN users u ON u.id = n.user_id
          WHERE n.turn_id = $1 AND u.email = 'pm@turns.demo'",
    )
    .bind(turn)
    .fetch_all(pool)
    .await
    .expect("mine");
    let theirs: Uuid = sqlx::query_scalar(
        "SELECT n.id FROM notifications n JOIN users u ON u.id = n.user_id
          WHERE n.turn_id = $1 AND u.email = 'srpm@turns.demo' LIMIT 1",
    )
    .bind(turn)
    .fetch_one(pool)
    .await
    .expect("theirs");
    let o = run(
        pool,
        &pm,
        Change::MarkRead {
            notifications: [mine.clone(), vec![theirs]].concat(),
        },
    )
    .await;
    assert!(matches!(o, Outcome::Applied { txid: Some(_) }), "{o:?}");
    let unread: Vec<String> = sqlx::query_scalar(
        "SELECT u.email FROM notifications n JOIN users u ON u.id = n.user_id
          WHERE n.turn_id = $1 AND n.read_at IS NULL AND u.email LIKE '%pm@turns.demo' ORDER BY 1",
    )
    .bind(turn)
    .fetch_all(pool)
    .await
    .expect("unread");
    assert!(
        unread.iter().all(|e| e == "srpm@turns.demo") && !unread.is_empty(),
        "{unread:?}"
    );
}

#[tokio::test]
async fn waiting_approvals_are_reminded_then_escalated_and_late_turns_flagged_once() {
    let state = demo_state().await;
    let pool = &state.pool;
    let pm = actor(pool, "pm@turns.demo").await;
    let turn = fresh_turn(pool).await;
    run(
        pool,
        &pm,
        Change::EditTurn {
            turn,
            edits: vec![TurnEdit::Amount(Edit {
                from: None,
                to: Some(turns::Decimal::new(4000, 0)),
            })],
        },
    )
    .await;
    run(pool, &pm, Change::SubmitForApproval { turn }).await;
    // The approval was asked for 50 hours ago; and the work was due yesterday.
    sqlx::query("UPDATE turns SET awaiting_since = now() - interval '50 hours' WHERE id = $1")
        .bind(turn)
        .execute(pool)
        .await
        .expect("backdate");
    // Another turn set waiting by hand (an import, psql): no notice asked for its approval, and
    // it is reminded all the same.
    let imported = fresh_turn(pool).await;
    sqlx::query(
        "UPDATE turns SET turn_amount = 3000, approval_status = 'DFO_APPROVAL_NEEDED' WHERE id = $1",
    )
    .bind(imported)
    .execute(pool)
    .await
    .expect("imported");
    sqlx::query("UPDATE turns SET awaiting_since = now() - interval '30 hours' WHERE id = $1")
        .bind(imported)
        .execute(pool)
        .await
        .expect("backdate");
    sqlx::query("UPDATE turns SET expected_completion_date = current_date - 1 WHERE id = $1")
        .bind(turn)
        .execute(pool)
        .await
        .expect("late");
    inbox::remind(pool, Utc::now()).await.expect("remind");
    let after_one = told(pool, turn).await;
    for want in [
        pair("dfo@turns.demo", "approval_waiting"),
        pair("ho@turns.demo", "escalated"),
        pair("pm@turns.demo", "overdue"),
        pair("srpm@turns.demo", "overdue"),
    ] {
        assert!(after_one.contains(&want), "{want:?} in {after_one:?}");
    }
    let imported_told = told(pool, imported).await;
    assert!(
        imported_told.contains(&pair("dfo@turns.demo", "approval_waiting")),
        "{imported_told:?}"
    );
    assert!(
        !imported_told.contains(&pair("ho@turns.demo", "escalated")),
        "30 hours: reminded, not yet escalated"
    );
    // Every instance runs the job: nothing is told twice.
    inbox::remind(pool, Utc::now()).await.expect("remind");
    inbox::remind(pool, Utc::now() + Duration::minutes(5))
        .await
        .expect("remind");
    assert_eq!(told(pool, turn).await, after_one);
}

#[tokio::test]
async fn notifications_are_emailed_once_through_smtp() {
    let state = demo_state().await;
    let pool = &state.pool;
    let pm = actor(pool, "pm@turns.demo").await;
    let turn = fresh_turn(pool).await;
    run(
        pool,
        &pm,
        Change::EditTurn {
            turn,
            edits: vec![TurnEdit::Amount(Edit {
                from: None,
                to: Some(turns::Decimal::new(4000, 0)),
            })],
        },
    )
    .await;
    run(pool, &pm, Change::SubmitForApproval { turn }).await;
    // Only this test's notification is due (the demo data has none).
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("mail.jsonl");
    let port = turns_server::testing::free_addr()
        .rsplit(':')
        .next()
        .expect("port")
        .to_string();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut sink = tokio::process::Command::new("node")
        .arg(root.join("tools/smtp-sink.mjs"))
        .arg(&port)
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node tools/smtp-sink.mjs (run tools/setup)");
    {
        use tokio::io::AsyncBufReadExt;
        let out = sink.stdout.take().expect("stdout");
        let mut lines = tokio::io::BufReader::new(out).lines();
        let first = tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line())
            .await
            .expect("the sink starts")
            .expect("read");
        assert_eq!(first.as_deref(), Some("listening"));
    }
    let mailer = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(&format!(
        "smtp://127.0.0.1:{port}"
    ))
    .expect("url")
    .build();
    let from: lettre::message::Mailbox = "Turns <turns@localhost>".parse().expect("from");
    let sent = inbox::send_emails(pool, &mailer, &from)
        .await
        .expect("send");
    assert_eq!(sent, 1);
    assert_eq!(
        inbox::send_emails(pool, &mailer, &from)
            .await
            .expect("again"),
        0,
        "once"
    );
    let mail = std::fs::read_to_string(&file).expect("the sink got mail");
    let lines: Vec<serde_json::Value> = mail
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["to"], serde_json::json!(["dfo@turns.demo"]));
    let data = lines[0]["data"].as_str().expect("data");
    assert!(
        data.contains("Subject: Turns: INBOX-") && data.contains("approval needed"),
        "{data}"
    );
    let _ = sink.kill().await;
}
