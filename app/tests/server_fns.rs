//! The whole app in-process (pages, server functions, plain routes) against a real database:
//! every server function checks the session and the role's scope; pages redirect or explain.
use leptos::config::LeptosOptions;
use std::collections::BTreeSet;
use turns::model::{Board, PropertySummary};
use turns_server::testing::{demo_state, login, send};

fn app(state: turns_server::AppState) -> axum::Router {
    turns_app::server::router(state, LeptosOptions::builder().output_name("turns").build())
}

async fn call<T: serde::de::DeserializeOwned>(
    router: &axum::Router,
    cookie: &str,
    endpoint: &str,
) -> T {
    let r = send(
        router,
        "POST",
        &format!("/api/{endpoint}"),
        Some(cookie),
        Some(("application/x-www-form-urlencoded", String::new())),
    )
    .await;
    assert_eq!(r.status, 200, "{endpoint}: {}", r.body);
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{endpoint} ({e}): {}", r.body))
}

#[tokio::test]
async fn server_functions_refuse_calls_without_a_session() {
    let router = app(demo_state().await);
    for endpoint in ["board", "properties"] {
        let r = send(
            &router,
            "POST",
            &format!("/api/{endpoint}"),
            None,
            Some(("application/x-www-form-urlencoded", String::new())),
        )
        .await;
        assert_eq!(r.status, 401, "{endpoint}: {}", r.body);
        assert!(r.body.contains("Unauthorized"), "{}", r.body);
        let bogus = send(
            &router,
            "POST",
            &format!("/api/{endpoint}"),
            Some("turns_session=forged"),
            Some(("application/x-www-form-urlencoded", String::new())),
        )
        .await;
        assert_eq!(bogus.status, 401);
    }
    let me = send(
        &router,
        "POST",
        "/api/me",
        None,
        Some(("application/x-www-form-urlencoded", String::new())),
    )
    .await;
    assert_eq!((me.status.as_u16(), me.body.as_str()), (200, "null"));
}

#[tokio::test]
async fn a_vendor_never_reads_another_vendors_turns() {
    let state = demo_state().await;
    let router = app(state.clone());
    let mut seen = Vec::new();
    for email in ["vendor@turns.demo", "vendor2@turns.demo"] {
        let cookie = login(&router, email).await;
        let board: Board = call(&router, &cookie, "board").await;
        let vendor_id: Option<uuid::Uuid> =
            sqlx::query_scalar("SELECT vendor_id FROM users WHERE email = $1")
                .bind(email)
                .fetch_one(&state.pool)
                .await
                .expect("vendor id");
        assert!(!board.turns.is_empty(), "{email} has work");
        assert!(
            board.turns.iter().all(|t| t.vendor_id == vendor_id),
            "{email} saw another vendor's turn"
        );
        assert!(
            board.turns.iter().all(|t| t.turn_amount.is_none()),
            "vendors see no scope amounts"
        );
        let props: Vec<PropertySummary> = call(&router, &cookie, "properties").await;
        let turn_props: BTreeSet<_> = board.turns.iter().map(|t| t.property_id).collect();
        assert!(props
            .iter()
            .all(|p| turn_props.contains(&p.id) || p.open_turns == 0));
        seen.push(board.turns.iter().map(|t| t.id).collect::<BTreeSet<_>>());
    }
    assert!(seen[0].is_disjoint(&seen[1]));
}

#[tokio::test]
async fn a_pm_never_reads_another_pms_properties() {
    let state = demo_state().await;
    let router = app(state.clone());
    let cookie = login(&router, "pm@turns.demo").await;
    let me: turns::model::SessionUser = call::<Option<_>>(&router, &cookie, "me")
        .await
        .expect("signed in");
    let props: Vec<PropertySummary> = call(&router, &cookie, "properties").await;
    assert_eq!(props.len(), 15);
    assert!(props.iter().all(|p| p.property_manager_id == Some(me.id)));
    let board: Board = call(&router, &cookie, "board").await;
    assert!(board.turns.iter().all(|t| t.pm_id == Some(me.id)));
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM properties")
        .fetch_one(&state.pool)
        .await
        .expect("count");
    assert!(total > 15, "others' properties exist and stay hidden");
}

#[tokio::test]
async fn approvers_see_their_queue_and_admins_everything() {
    let router = app(demo_state().await);
    for (email, status) in [
        ("dfo@turns.demo", "DFO_APPROVAL_NEEDED"),
        ("ho@turns.demo", "HO_APPROVAL_NEEDED"),
    ] {
        let cookie = login(&router, email).await;
        let board: Board = call(&router, &cookie, "board").await;
        assert!(!board.turns.is_empty());
        for t in &board.turns {
            assert_eq!(
                serde_json::to_value(t.approval_status).expect("json"),
                status
            );
        }
    }
    let cookie = login(&router, "admin@turns.demo").await;
    let props: Vec<PropertySummary> = call(&router, &cookie, "properties").await;
    assert_eq!(props.len(), 40);
}

#[tokio::test]
async fn pages_redirect_to_login_and_explain_errors() {
    let router = app(demo_state().await);
    let board = send(&router, "GET", "/board", None, None).await;
    assert_eq!(board.status, 303);
    assert_eq!(
        board.location(),
        Some("/login?error=required&next=%2Fboard")
    );

    let login_page = send(&router, "GET", "/login?error=invalid", None, None).await;
    assert_eq!(login_page.status, 401);
    assert!(login_page.body.contains("Wrong email or password."));

    let missing = send(&router, "GET", "/no/such/page", None, None).await;
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("Page not found"));

    let cookie = login(&router, "pm@turns.demo").await;
    let page = send(&router, "GET", "/board", Some(&cookie), None).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Turn board"), "server-rendered board");
    assert!(page.body.contains("data-testid=\"turn-card\""));
    assert_eq!(page.headers["x-frame-options"], "DENY");
}

#[tokio::test]
async fn the_mutate_endpoint_checks_the_session_and_its_input() {
    let state = demo_state().await;
    let router = app(state.clone());
    let json = |body: String| Some(("application/json", body));
    let no_session = send(
        &router,
        "POST",
        "/api/mutate",
        None,
        json(r#"{"batch":[]}"#.into()),
    )
    .await;
    assert_eq!(no_session.status, 401);
    let cookie = login(&router, "pm@turns.demo").await;
    let garbage = send(
        &router,
        "POST",
        "/api/mutate",
        Some(&cookie),
        json("{\"batch\":[{\"id\":1}]}".into()),
    )
    .await;
    assert_eq!(garbage.status, 400, "{}", garbage.body);
    assert!(
        !garbage.body.contains("serde"),
        "no internal text: {}",
        garbage.body
    );
    // A real edit on one of the PM's turns, sent twice: applied once.
    let (turn, wo): (uuid::Uuid, Option<String>) = sqlx::query_as(
        "SELECT t.id, t.wo_number FROM turns t JOIN users u ON u.id = t.property_manager_id
          WHERE u.email = 'pm@turns.demo' AND t.is_active LIMIT 1",
    )
    .fetch_one(&state.pool)
    .await
    .expect("a PM turn");
    let m = serde_json::json!({
        "id": uuid::Uuid::new_v4(),
        "base_version": null,
        "device_time": "2026-11-27T08:00:00Z",
        "change": {"kind": "edit_turn", "turn": turn,
                   "edits": [{"field": "wo_number", "from": wo, "to": "WO-API-1"}]}
    });
    let body = serde_json::json!({ "batch": [m.clone(), m] }).to_string();
    let r = send(&router, "POST", "/api/mutate", Some(&cookie), json(body)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Sent in the older dialect (as a device on an older app does): answered in it.
    let outcomes: Vec<turns::wire::Answer> = serde_json::from_str(&r.body).expect("outcomes");
    assert_eq!(outcomes.len(), 2);
    assert_eq!(outcomes[0], outcomes[1]);
    assert_eq!(outcomes[0].dialect, turns::wire::Dialect::V1);
    assert!(r.body.contains(r#""outcome":"applied""#), "{}", r.body);
    // And in today's: answered in today's.
    let now = serde_json::json!({
        "id": uuid::Uuid::new_v4(),
        "base_version": null,
        "device_time": "2026-11-27T08:00:00Z",
        "change": {"edit_turn": {"turn": turn,
                   "edits": [{"wo_number": {"from": "WO-API-1", "to": "WO-API-2"}}]}}
    });
    let body = serde_json::json!({ "batch": [now] }).to_string();
    let r = send(&router, "POST", "/api/mutate", Some(&cookie), json(body)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let outcomes: Vec<turns::mutation::Outcome> = serde_json::from_str(&r.body).expect("v2");
    assert!(matches!(
        outcomes[..],
        [turns::mutation::Outcome::Applied { txid: Some(_) }]
    ));
    let audits: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_logs WHERE row_id = $1")
        .bind(turn)
        .fetch_one(&state.pool)
        .await
        .expect("count");
    assert_eq!(audits, 2);
    let too_many = serde_json::json!({ "batch": vec![serde_json::Value::Null; 51] }).to_string();
    let r = send(
        &router,
        "POST",
        "/api/mutate",
        Some(&cookie),
        json(too_many),
    )
    .await;
    assert_eq!(r.status, 400);
}
