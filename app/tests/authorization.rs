//! The server functions' part of the authorization matrix (the write path, shapes and endpoints
//! are in `server/tests/authorization.rs`): every demo user × every server function, the
//! expected answer computed from the policy module on the demo data's facts, the actual one from
//! the whole app in-process; then each function with no session, a forged one, an expired one,
//! another user's header and from another origin.
use chrono::{Days, NaiveDate, Utc};
use leptos::config::LeptosOptions;
use std::collections::{BTreeMap, BTreeSet};
use turns::model::{Board, PropertySummary, COMPLETED_VISIBLE_DAYS};
use turns::policy::{PropertyFacts, TurnFacts};
use turns::ApprovalStatus;
use turns_server::seed::DEMO_LOGINS;
use turns_server::testing::{actor, demo_state, login, property_facts, send_with, Reply};
use uuid::Uuid;

fn app(state: turns_server::AppState) -> axum::Router {
    turns_app::server::router(state, LeptosOptions::builder().output_name("turns").build())
}

/// The server functions: endpoint and the body an empty call sends.
const FUNCTIONS: [(&str, &str, &str); 4] = [
    ("me", "application/x-www-form-urlencoded", ""),
    ("board", "application/x-www-form-urlencoded", ""),
    ("properties", "application/x-www-form-urlencoded", ""),
    ("mutate", "application/json", r#"{"batch":[]}"#),
];

async fn call(router: &axum::Router, endpoint: &str, headers: &[(&str, &str)]) -> Reply {
    let (_, content_type, body) = FUNCTIONS
        .iter()
        .find(|(e, ..)| *e == endpoint)
        .expect("a server function");
    send_with(
        router,
        "POST",
        &format!("/api/{endpoint}"),
        headers,
        Some((content_type, body.to_string())),
    )
    .await
}

/// One active turn's facts, and whether the board shows it (open, or completed recently).
struct TurnRow {
    id: Uuid,
    property_id: Uuid,
    facts: TurnFacts,
    on_board: bool,
}

#[tokio::test]
async fn every_user_gets_exactly_what_the_policy_allows_from_every_server_function() {
    let state = demo_state().await;
    let pool = state.pool.clone();
    let router = app(state);
    let today = Utc::now().date_naive();
    let since = today - Days::new(COMPLETED_VISIBLE_DAYS as u64);

    type Row = (
        Uuid,
        Uuid,
        Option<Uuid>,
        Option<Uuid>,
        Option<Uuid>,
        ApprovalStatus,
        bool,
        Option<NaiveDate>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT t.id, t.property_id, p.property_manager_id, p.sr_property_manager_id,
                t.vendor_id, t.approval_status, st.is_complete_stage,
                coalesce(t.turn_completion_date, t.updated_at::date)
           FROM turns t JOIN properties p ON p.id = t.property_id
           JOIN turn_stages st ON st.id = t.stage_id
          WHERE t.is_active",
    )
    .fetch_all(&pool)
    .await
    .expect("turns");
    let turns: Vec<TurnRow> = rows
        .into_iter()
        .map(
            |(id, property_id, pm, sr, vendor_id, status, complete, done)| TurnRow {
                id,
                property_id,
                facts: TurnFacts {
                    property: PropertyFacts {
                        property_manager_id: pm,
                        sr_property_manager_id: sr,
                    },
                    vendor_id,
                    approval_status: status,
                },
                on_board: !complete || done.is_some_and(|d| d >= since),
            },
        )
        .collect();
    let properties: BTreeMap<Uuid, PropertyFacts> =
        property_facts(&pool).await.into_iter().collect();

    let mut cells = 0;
    for (email, role) in DEMO_LOGINS {
        let me = actor(&pool, email).await;
        let cookie = login(&router, email).await;
        let user = me.user_id.to_string();
        let headers = [("cookie", cookie.as_str()), ("x-turns-user", user.as_str())];

        // me: who the session belongs to.
        let r = call(&router, "me", &headers).await;
        assert_eq!(r.status, 200, "{email} me: {}", r.body);
        assert_eq!(r.json()["id"], user.as_str(), "{email} me");
        assert_eq!(r.json()["role"], serde_json::to_value(role).expect("role"));

        // board: exactly the readable turns that are open or completed recently; the scope
        // amount and approval state only where the role sees them (a vendor sees just the
        // approved amount it works to).
        let r = call(&router, "board", &headers).await;
        assert_eq!(r.status, 200, "{email} board: {}", r.body);
        let board: Board = serde_json::from_str(&r.body).expect("board");
        let got: BTreeSet<Uuid> = board.turns.iter().map(|t| t.id).collect();
        let want: BTreeSet<Uuid> = turns
            .iter()
            .filter(|t| t.on_board && me.can_read_turn(&t.facts))
            .map(|t| t.id)
            .collect();
        assert_eq!(got, want, "{email} board");
        if !me.sees_turn_financials() {
            assert!(
                board
                    .turns
                    .iter()
                    .all(|t| t.turn_amount.is_none() && t.approval_status.is_none()),
                "{email} sees no scope amount or approval state"
            );
        }
        assert_eq!(
            board.assignable_vendors.is_empty(),
            !me.is_manager(),
            "{email} assignable vendors"
        );
        cells += turns.len();

        // properties: exactly the readable ones.
        let r = call(&router, "properties", &headers).await;
        assert_eq!(r.status, 200, "{email} properties: {}", r.body);
        let listed: Vec<PropertySummary> = serde_json::from_str(&r.body).expect("properties");
        let got: BTreeSet<Uuid> = listed.iter().map(|p| p.id).collect();
        let want: BTreeSet<Uuid> = properties
            .iter()
            .filter(|(id, facts)| {
                let its_turns: Vec<TurnFacts> = turns
                    .iter()
                    .filter(|t| t.property_id == **id)
                    .map(|t| t.facts)
                    .collect();
                me.can_read_property(facts, &its_turns)
            })
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(got, want, "{email} properties");
        cells += properties.len();

        // mutate: an empty batch is answered for everyone signed in (each mutation's scope is
        // the write path's matrix).
        let r = call(&router, "mutate", &headers).await;
        assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "[]"), "{email}");
        cells += 1;

        // Every function, with this session but another user's header (a tab left signed in
        // as someone else): refused, and nothing read.
        let other = Uuid::new_v4().to_string();
        let wrong = [
            ("cookie", cookie.as_str()),
            ("x-turns-user", other.as_str()),
        ];
        for (endpoint, ..) in FUNCTIONS {
            let r = call(&router, endpoint, &wrong).await;
            assert_eq!(r.status, 401, "{email} {endpoint} as another user");
            cells += 1;
        }
    }
    println!("server functions: {cells} authorization cells, 0 differences");
}

#[tokio::test]
async fn server_functions_refuse_forged_expired_and_cross_origin_calls() {
    let state = demo_state().await;
    let pool = state.pool.clone();
    let router = app(state);
    let expired = login(&router, "admin@turns.demo").await;
    sqlx::query("UPDATE sessions SET expires_at = now() - interval '1 second'")
        .execute(&pool)
        .await
        .expect("expire");
    let forged = format!("{}=forged-token", turns_server::auth::SESSION_COOKIE);
    let valid = login(&router, "admin@turns.demo").await;

    for (endpoint, ..) in FUNCTIONS {
        for (what, cookie) in [
            ("no", None),
            ("a forged", Some(&forged)),
            ("an expired", Some(&expired)),
        ] {
            let headers: Vec<(&str, &str)> =
                cookie.map(|c| ("cookie", c.as_str())).into_iter().collect();
            let r = call(&router, endpoint, &headers).await;
            if endpoint == "me" {
                // Asking who is signed in is allowed; the answer is nobody.
                assert_eq!(
                    (r.status.as_u16(), r.body.as_str()),
                    (200, "null"),
                    "{what} session"
                );
            } else {
                assert_eq!(r.status, 401, "{endpoint} with {what} session: {}", r.body);
            }
        }
        // A page on another site posting with the user's cookie.
        let cross = [
            ("cookie", valid.as_str()),
            ("origin", "https://evil.example"),
            ("host", "turns.example"),
        ];
        let r = call(&router, endpoint, &cross).await;
        assert_eq!(r.status, 403, "{endpoint} cross-origin: {}", r.body);
        let cross = [("cookie", valid.as_str()), ("sec-fetch-site", "cross-site")];
        let r = call(&router, endpoint, &cross).await;
        assert_eq!(r.status, 403, "{endpoint} cross-site: {}", r.body);
    }
}
