//! The authorization matrix: every demo user × every kind of change × every turn and property
//! of the demo data, with the expected answer taken from the policy module (on the row's facts
//! as they are just before the attempt) and the actual one from the server's write path. A
//! change the policy forbids must never apply; one it allows must never be refused for scope
//! (it may still be refused by a domain rule: a gate, a missing amount, a conflict). Then the
//! session edge cases: forged and expired cookies, another user's mutation id and shape handle.
use chrono::Utc;
use sqlx::PgPool;
use turns::mutation::{
    Change, Edit, Mutation, NewTurn, Outcome, PropertyEdit, Rejection, TurnEdit,
};
use turns::policy::{PropertyFacts, TurnFacts};
use turns::{Actor, ApprovalStatus};
use turns_server::mutations::apply;
use turns_server::testing::{actor, demo_state, login, plain_router, send};
use uuid::Uuid;

fn mutation(change: Change) -> Mutation {
    Mutation {
        id: Uuid::new_v4(),
        base_version: None,
        device_time: Utc::now(),
        change,
    }
}

async fn property_facts(pool: &PgPool, id: Uuid) -> (PropertyFacts, String) {
    let (pm, sr, name): (Option<Uuid>, Option<Uuid>, String) = sqlx::query_as(
        "SELECT property_manager_id, sr_property_manager_id, name FROM properties WHERE id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .expect("property");
    (
        PropertyFacts {
            property_manager_id: pm,
            sr_property_manager_id: sr,
        },
        name,
    )
}

/// A turn's facts as the policy sees them, and the fields the probes edit.
async fn turn_facts(
    pool: &PgPool,
    id: Uuid,
) -> (TurnFacts, Option<String>, Option<chrono::NaiveDate>) {
    let (property, vendor_id, approval_status, wo, expected): (
        Uuid,
        Option<Uuid>,
        ApprovalStatus,
        Option<String>,
        Option<chrono::NaiveDate>,
    ) = sqlx::query_as(
        "SELECT property_id, vendor_id, approval_status, wo_number, expected_completion_date
           FROM turns WHERE id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .expect("turn");
    let (property, _) = property_facts(pool, property).await;
    (
        TurnFacts {
            property,
            vendor_id,
            approval_status,
        },
        wo,
        expected,
    )
}

/// What the server did, as far as authorization goes.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Written.
    Applied,
    /// Refused for scope: forbidden, or not found (out of scope looks like missing).
    Refused,
    /// Past authorization, stopped by a domain rule (gate, validation, conflict).
    Ruled,
}

fn verdict(o: &Outcome) -> Verdict {
    match o {
        Outcome::Applied { .. } => Verdict::Applied,
        Outcome::Rejected(Rejection::Forbidden { .. } | Rejection::NotFound { .. }) => {
            Verdict::Refused
        }
        Outcome::Rejected(_) => Verdict::Ruled,
    }
}

#[derive(Default)]
struct Matrix {
    cells: usize,
    differences: Vec<String>,
}

impl Matrix {
    fn check(&mut self, who: &str, what: &str, allowed: bool, outcome: &Outcome) {
        self.cells += 1;
        let v = verdict(outcome);
        let wrong = if allowed {
            v == Verdict::Refused
        } else {
            v != Verdict::Refused
        };
        if wrong {
            self.differences.push(format!(
                "{who}: {what}: policy allows={allowed}, server: {outcome:?}"
            ));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_user_every_change_every_row_agrees_with_the_policy() {
    let state = demo_state().await;
    let pool = &state.pool;
    let emails: Vec<String> = sqlx::query_scalar(
        "SELECT email FROM users WHERE email LIKE '%@turns.demo' ORDER BY email",
    )
    .fetch_all(pool)
    .await
    .expect("users");
    let mut actors: Vec<(String, Actor)> = Vec::new();
    for e in &emails {
        actors.push((e.clone(), actor(pool, e).await));
    }
    let turns: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM turns WHERE is_active ORDER BY turn_id")
            .fetch_all(pool)
            .await
            .expect("turns");
    let properties: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM properties ORDER BY property_id")
            .fetch_all(pool)
            .await
            .expect("properties");
    let mut m = Matrix::default();

    for (email, a) in &actors {
        for &turn in &turns {
            // A field only managers edit.
            let (facts, wo, expected) = turn_facts(pool, turn).await;
            let o = apply(
                pool,
                a,
                &mutation(Change::EditTurn {
                    turn,
                    edits: vec![TurnEdit::WoNumber(Edit {
                        from: wo,
                        to: Some(format!("WO-{}", &Uuid::new_v4().simple().to_string()[..6])),
                    })],
                }),
            )
            .await
            .expect("ran");
            m.check(email, "edit work order", a.can_manage_turn(&facts), &o);

            // A progress field: managers, and the vendor doing the work.
            let (facts, _, _) = turn_facts(pool, turn).await;
            let o = apply(
                pool,
                a,
                &mutation(Change::EditTurn {
                    turn,
                    edits: vec![TurnEdit::ExpectedCompletion(Edit {
                        from: expected,
                        to: Some(Utc::now().date_naive() + chrono::Days::new(30)),
                    })],
                }),
            )
            .await
            .expect("ran");
            let allowed = a.can_manage_turn(&facts) || a.can_record_progress(&facts);
            m.check(email, "edit expected completion", allowed, &o);

            let (facts, _, _) = turn_facts(pool, turn).await;
            let o = apply(pool, a, &mutation(Change::SubmitForApproval { turn }))
                .await
                .expect("ran");
            m.check(email, "submit for approval", a.can_manage_turn(&facts), &o);

            let (facts, _, _) = turn_facts(pool, turn).await;
            let note = Change::AddNote {
                turn,
                note: Uuid::new_v4(),
                body: "matrix".into(),
            };
            let o = apply(pool, a, &mutation(note)).await.expect("ran");
            m.check(email, "add a note", a.can_add_field_notes(&facts), &o);

            let (facts, _, _) = turn_facts(pool, turn).await;
            let o = apply(
                pool,
                a,
                &mutation(Change::DecideApproval {
                    turn,
                    approve: false,
                    amount: None,
                    reason: Some("matrix".into()),
                }),
            )
            .await
            .expect("ran");
            // Deciding a turn that waits for nobody is a conflict for those who may read it.
            let allowed = a.can_decide_approval(&facts)
                || (facts.approval_status.awaiting().is_none() && a.can_read_turn(&facts));
            m.check(email, "decide approval", allowed, &o);
        }
        for &property in &properties {
            let (facts, name) = property_facts(pool, property).await;
            let o = apply(
                pool,
                a,
                &mutation(Change::UpdateProperty {
                    property,
                    edits: vec![PropertyEdit::Name(Edit {
                        from: name.clone(),
                        to: format!("{name} ·"),
                    })],
                }),
            )
            .await
            .expect("ran");
            m.check(email, "rename property", a.can_manage_property(&facts), &o);

            let id = Uuid::new_v4();
            let o = apply(
                pool,
                a,
                &mutation(Change::CreateTurn(NewTurn {
                    id,
                    turn_id: format!("T-{}", id.simple()),
                    property_id: property,
                    move_out_date: Some(Utc::now().date_naive()),
                    wo_number: None,
                })),
            )
            .await
            .expect("ran");
            m.check(email, "open a turn", a.can_manage_property(&facts), &o);
        }
    }
    println!(
        "authorization matrix: {} cells ({} users × {} turns × 5 + {} properties × 2), {} differences",
        m.cells,
        actors.len(),
        turns.len(),
        properties.len(),
        m.differences.len()
    );
    assert!(m.cells > 1000, "the matrix covers the demo data");
    assert!(
        m.differences.is_empty(),
        "{} differences:\n{}",
        m.differences.len(),
        m.differences.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_and_borrowed_credentials_get_nothing() {
    let state = demo_state().await;
    let url = state.config.database_url.clone().expect("url");
    let state = state.start_shapes(&url).await.expect("shapes");
    let app = plain_router(state.clone());
    let pool = &state.pool;

    let shape = "/api/shapes/turns?offset=-1";
    let forged = format!(
        "{}=forged-{}",
        turns_server::auth::SESSION_COOKIE,
        Uuid::new_v4()
    );
    assert_eq!(
        send(&app, "GET", shape, Some(&forged), None).await.status,
        401
    );

    let expired = login(&app, "pm@turns.demo").await;
    sqlx::query("UPDATE sessions SET expires_at = now() - interval '1 second'")
        .execute(pool)
        .await
        .expect("expire");
    let r = send(&app, "GET", shape, Some(&expired), None).await;
    assert_eq!(r.status, 401);

    // Another user's mutation id: refused, and the first user's outcome is not revealed.
    let pm = actor(pool, "pm@turns.demo").await;
    let pm3 = actor(pool, "pm3@turns.demo").await;
    let turn: Uuid = sqlx::query_scalar(
        "SELECT id FROM turns WHERE is_active AND property_manager_id = $1 LIMIT 1",
    )
    .bind(pm.user_id)
    .fetch_one(pool)
    .await
    .expect("turn");
    let first = mutation(Change::EditTurn {
        turn,
        edits: vec![TurnEdit::WoNumber(Edit {
            from: sqlx::query_scalar("SELECT wo_number FROM turns WHERE id = $1")
                .bind(turn)
                .fetch_one(pool)
                .await
                .expect("wo"),
            to: Some("MINE".into()),
        })],
    });
    assert!(matches!(
        apply(pool, &pm, &first).await.expect("ran"),
        Outcome::Applied { .. }
    ));
    let replayed = apply(pool, &pm3, &first).await.expect("ran");
    assert!(
        matches!(replayed, Outcome::Rejected(Rejection::Forbidden { .. })),
        "{replayed:?}"
    );

    // Another user's shape handle: the server never serves one session's shape to another.
    let a = login(&app, "pm@turns.demo").await;
    let b = login(&app, "pm3@turns.demo").await;
    let mine = send(&app, "GET", shape, Some(&a), None).await;
    let handle = mine.headers["electric-handle"]
        .to_str()
        .expect("handle")
        .to_string();
    let offset = mine.headers["electric-offset"]
        .to_str()
        .expect("offset")
        .to_string();
    let borrowed = send(
        &app,
        "GET",
        &format!("/api/shapes/turns?handle={handle}&offset={offset}"),
        Some(&b),
        None,
    )
    .await;
    assert_eq!(
        borrowed.status, 409,
        "must refetch its own shape: {}",
        borrowed.body
    );
    assert!(
        !borrowed.body.contains("\"value\""),
        "no rows: {}",
        borrowed.body
    );
}
