//! Every role's queries return exactly what the policy module allows, compared row by row with
//! the policy's own predicates over the whole demo data set.
use std::collections::{BTreeSet, HashMap};
use turns::policy::{PropertyFacts, TurnFacts};
use turns::{ApprovalStatus, Role};
use turns_server::queries;
use turns_server::testing::{actor, demo_state, property_facts};
use uuid::Uuid;

#[tokio::test]
async fn every_role_sees_exactly_its_turns_and_properties() {
    let state = demo_state().await;
    let pool = &state.pool;
    let props: HashMap<Uuid, PropertyFacts> = property_facts(pool).await.into_iter().collect();
    let turns: Vec<(Uuid, Uuid, TurnFacts)> =
        sqlx::query_as::<_, (Uuid, Uuid, Option<Uuid>, ApprovalStatus)>(
            "SELECT id, property_id, vendor_id, approval_status FROM turns WHERE is_active",
        )
        .fetch_all(pool)
        .await
        .expect("turns")
        .into_iter()
        .map(|(id, p, vendor_id, approval_status)| {
            (
                id,
                p,
                TurnFacts {
                    property: props[&p],
                    vendor_id,
                    approval_status,
                },
            )
        })
        .collect();

    let mut emails: Vec<String> = sqlx::query_scalar("SELECT email FROM users ORDER BY email")
        .fetch_all(pool)
        .await
        .expect("users");
    emails.retain(|e| e.ends_with("@turns.demo"));
    assert!(emails.len() >= 9);
    for email in &emails {
        let a = actor(pool, email).await;
        let expected_turns: BTreeSet<Uuid> = turns
            .iter()
            .filter(|(_, _, f)| a.can_read_turn(f))
            .map(|(id, _, _)| *id)
            .collect();
        let got_turns: BTreeSet<Uuid> = queries::turns_in_scope(pool, &a, None)
            .await
            .expect("turns query")
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(got_turns, expected_turns, "{email} ({}) turns", a.role);

        let expected_props: BTreeSet<Uuid> = props
            .iter()
            .filter(|(id, facts)| {
                let of_property: Vec<TurnFacts> = turns
                    .iter()
                    .filter(|(_, p, _)| p == *id)
                    .map(|(_, _, f)| *f)
                    .collect();
                a.can_read_property(facts, &of_property)
            })
            .map(|(id, _)| *id)
            .collect();
        let got_props: BTreeSet<Uuid> = queries::properties(pool, &a)
            .await
            .expect("properties query")
            .into_iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(got_props, expected_props, "{email} ({}) properties", a.role);
    }
}

#[tokio::test]
async fn the_demo_data_gives_every_scoped_role_something_and_keeps_others_out() {
    let state = demo_state().await;
    let pool = &state.pool;
    let today = chrono::Utc::now().date_naive();
    for (email, at_least) in [
        ("pm@turns.demo", 10),
        ("srpm@turns.demo", 20),
        ("vendor@turns.demo", 3),
        ("dfo@turns.demo", 2),
        ("ho@turns.demo", 1),
    ] {
        let a = actor(pool, email).await;
        let board = queries::board(pool, &a, today).await.expect("board");
        assert!(
            board.turns.len() >= at_least,
            "{email} sees {} turns",
            board.turns.len()
        );
        assert_eq!(board.stages.len(), 7);
        if a.role == Role::Vendor {
            assert!(board.turns.iter().all(|t| t.vendor_id == a.vendor_id));
            assert!(board
                .turns
                .iter()
                .all(|t| t.turn_amount.is_none() && t.approval_status.is_none()));
        }
    }
    let pm = actor(pool, "pm@turns.demo").await;
    let board = queries::board(pool, &pm, today).await.expect("board");
    assert!(
        board.turns.iter().any(|t| t.is_overdue(today)),
        "a few demo turns are overdue"
    );
    let managers: BTreeSet<_> = board.turns.iter().map(|t| t.pm_id).collect();
    assert_eq!(managers, BTreeSet::from([Some(pm.user_id)]));
}
