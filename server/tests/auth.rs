//! Login, logout, expiry and the failed-login rate limit, over HTTP against a real database.
use turns_server::testing::{demo_state, login, plain_router, send};

fn json(email: &str, password: &str) -> Option<(&'static str, String)> {
    Some((
        "application/json",
        serde_json::json!({"email": email, "password": password}).to_string(),
    ))
}

#[tokio::test]
async fn login_sets_a_hardened_cookie_and_stores_only_a_hash() {
    let state = demo_state().await;
    let app = plain_router(state.clone());
    let reply = send(
        &app,
        "POST",
        "/auth/login",
        None,
        json(" PM@turns.demo ", "turns-demo"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["role"], "PROPERTY_MANAGER");
    let set_cookie = reply.headers["set-cookie"].to_str().expect("ascii");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="] {
        assert!(set_cookie.contains(attr), "{attr} missing in {set_cookie}");
    }
    let token = reply
        .session_cookie()
        .expect("cookie")
        .split_once('=')
        .expect("pair")
        .1
        .to_string();
    assert_eq!(base64_len(&token), 32, "32 random bytes");
    let stored: Vec<String> = sqlx::query_scalar("SELECT token FROM sessions")
        .fetch_all(&state.pool)
        .await
        .expect("sessions");
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], token, "the raw token is never stored");
    assert_eq!(stored[0].len(), 64, "sha-256 hex");
}

fn base64_len(token: &str) -> usize {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map(|b| b.len())
        .unwrap_or(0)
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_answer() {
    let app = plain_router(demo_state().await);
    let a = send(
        &app,
        "POST",
        "/auth/login",
        None,
        json("pm@turns.demo", "nope"),
    )
    .await;
    let b = send(
        &app,
        "POST",
        "/auth/login",
        None,
        json("ghost@turns.demo", "nope"),
    )
    .await;
    assert_eq!((a.status.as_u16(), b.status.as_u16()), (401, 401));
    assert_eq!(a.body, b.body);
    assert!(a.session_cookie().is_none());
}

#[tokio::test]
async fn malformed_login_is_a_400_and_creates_nothing() {
    let state = demo_state().await;
    let app = plain_router(state.clone());
    for body in ["{", "{\"email\": 5}", "{\"email\":\"pm@turns.demo\"}"] {
        let r = send(
            &app,
            "POST",
            "/auth/login",
            None,
            Some(("application/json", body.into())),
        )
        .await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(r.json()["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let r = send(&app, "POST", "/auth/login", None, json("not-an-email", "x")).await;
    assert_eq!(r.status, 400);
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&state.pool)
        .await
        .expect("count");
    assert_eq!(sessions, 0);
}

#[tokio::test]
async fn html_form_login_redirects_and_failures_come_back_with_a_reason() {
    let app = plain_router(demo_state().await);
    let form = |pw: &str, next: &str| {
        Some((
            "application/x-www-form-urlencoded",
            format!("email=pm%40turns.demo&password={pw}&next={next}"),
        ))
    };
    let ok = send(
        &app,
        "POST",
        "/auth/login",
        None,
        form("turns-demo", "%2Fproperties"),
    )
    .await;
    assert_eq!(ok.status, 303);
    assert_eq!(ok.location(), Some("/properties"));
    assert!(ok.session_cookie().is_some());
    let offsite = send(
        &app,
        "POST",
        "/auth/login",
        None,
        form("turns-demo", "%2F%2Fevil.example"),
    )
    .await;
    assert_eq!(offsite.location(), Some("/"), "no open redirect");
    let bad = send(&app, "POST", "/auth/login", None, form("wrong", "")).await;
    assert_eq!(bad.status, 303);
    assert_eq!(bad.location(), Some("/login?error=invalid"));
}

#[tokio::test]
async fn logout_deletes_the_session() {
    let state = demo_state().await;
    let app = plain_router(state.clone());
    let cookie = login(&app, "vendor@turns.demo").await;
    let home = send(&app, "GET", "/", Some(&cookie), None).await;
    assert_eq!(home.location(), Some("/board"));
    let out = send(&app, "POST", "/auth/logout", Some(&cookie), None).await;
    assert_eq!(out.status, 303);
    assert!(out.headers["set-cookie"]
        .to_str()
        .expect("ascii")
        .contains("Max-Age=0"));
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&state.pool)
        .await
        .expect("count");
    assert_eq!(sessions, 0);
    let home = send(&app, "GET", "/", Some(&cookie), None).await;
    assert_eq!(
        home.location(),
        Some("/login"),
        "the old cookie is worthless"
    );
}

#[tokio::test]
async fn an_expired_session_is_refused_removed_and_explained() {
    let state = demo_state().await;
    let app = plain_router(state.clone());
    let cookie = login(&app, "dfo@turns.demo").await;
    sqlx::query("UPDATE sessions SET expires_at = now() - interval '1 second'")
        .execute(&state.pool)
        .await
        .expect("expire");
    let home = send(&app, "GET", "/", Some(&cookie), None).await;
    assert_eq!(home.location(), Some("/login?error=expired"));
    assert!(home.headers["set-cookie"]
        .to_str()
        .expect("ascii")
        .contains("Max-Age=0"));
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&state.pool)
        .await
        .expect("count");
    assert_eq!(left, 0, "expired sessions are deleted when seen");
    // Logging in again from a browser whose session just expired: the new session is the only
    // one the answer sets (the expired one's clearing would come after it and undo it).
    let stale = login(&app, "dfo@turns.demo").await;
    sqlx::query("UPDATE sessions SET expires_at = now() - interval '1 second'")
        .execute(&state.pool)
        .await
        .expect("expire");
    let again = send(
        &app,
        "POST",
        "/auth/login",
        Some(&stale),
        json("dfo@turns.demo", "turns-demo"),
    )
    .await;
    let set: Vec<&str> = again
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| v.starts_with("turns_session="))
        .collect();
    assert_eq!(set.len(), 1, "{set:?}");
    assert!(!set[0].contains("Max-Age=0"), "{set:?}");
}

#[tokio::test]
async fn repeated_failures_for_an_email_are_rate_limited() {
    let app = plain_router(demo_state().await);
    for _ in 0..5 {
        let r = send(
            &app,
            "POST",
            "/auth/login",
            None,
            json("ho@turns.demo", "guess"),
        )
        .await;
        assert_eq!(r.status, 401);
    }
    let limited = send(
        &app,
        "POST",
        "/auth/login",
        None,
        json("ho@turns.demo", "turns-demo"),
    )
    .await;
    assert_eq!(
        limited.status, 429,
        "even the right password waits: {}",
        limited.body
    );
    assert!(limited.headers.contains_key("retry-after"));
    let other = send(
        &app,
        "POST",
        "/auth/login",
        None,
        json("pm@turns.demo", "turns-demo"),
    )
    .await;
    assert_eq!(other.status, 200, "other accounts are unaffected");
}

#[tokio::test]
async fn inactive_users_cannot_log_in_and_lose_their_sessions() {
    let state = demo_state().await;
    let app = plain_router(state.clone());
    let cookie = login(&app, "user@turns.demo").await;
    sqlx::query("UPDATE users SET is_active = false WHERE email = 'user@turns.demo'")
        .execute(&state.pool)
        .await
        .expect("deactivate");
    assert_eq!(
        send(&app, "GET", "/", Some(&cookie), None).await.location(),
        Some("/login")
    );
    let r = send(
        &app,
        "POST",
        "/auth/login",
        None,
        json("user@turns.demo", "turns-demo"),
    )
    .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn health_reports_the_database() {
    let app = plain_router(demo_state().await);
    let r = send(&app, "GET", "/health", None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["database"], "ok");
}
