//! The holes a security review reproduced, each as the attack it was, against the real server
//! and database: login limits under concurrency and from elsewhere, redirects, CSRF, sessions
//! that end (deactivation, a new login, another user on the device), per-session budgets for
//! live shapes, secrets in the change log, vendor contacts, caching, and slow clients.
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use turns_server::auth::LoginLimiter;
use turns_server::testing::{demo_state, login, plain_router, send, send_with, Reply};
use turns_server::AppState;

const PASSWORD: &str = turns_server::seed::DEMO_PASSWORD;

fn json_login(email: &str, password: &str) -> Option<(&'static str, String)> {
    Some((
        "application/json",
        serde_json::json!({"email": email, "password": password}).to_string(),
    ))
}

/// A state whose client addresses come from `X-Forwarded-For` (so a test can be many clients).
fn behind_proxy(mut state: AppState, limiter: LoginLimiter) -> AppState {
    let mut config = (*state.config).clone();
    config.trust_proxy = true;
    config.long_poll = Duration::from_secs(3);
    state.config = Arc::new(config);
    state.limiter = Arc::new(limiter);
    state
}

async fn login_from(
    app: &axum::Router,
    address: &str,
    device: Option<&str>,
    email: &str,
    password: &str,
) -> Reply {
    let mut headers = vec![("x-forwarded-for", address)];
    if let Some(d) = device {
        headers.push(("cookie", d));
    }
    send_with(
        app,
        "POST",
        "/auth/login",
        &headers,
        json_login(email, password),
    )
    .await
}

/// The `name=value` of a cookie a response sets.
fn set_cookie(r: &Reply, name: &str) -> Option<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_limit_holds_under_concurrent_guesses() {
    let app = plain_router(demo_state().await);
    let guesses = (0..30).map(|i| {
        let app = app.clone();
        tokio::spawn(async move {
            send(
                &app,
                "POST",
                "/auth/login",
                None,
                json_login("pm@turns.demo", &format!("guess-{i}")),
            )
            .await
            .status
            .as_u16()
        })
    });
    let mut statuses = Vec::new();
    for g in guesses {
        statuses.push(g.await.expect("guess"));
    }
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert!(checked <= 5, "at most 5 guesses checked, got {statuses:?}");
    assert_eq!(checked + refused, 30, "{statuses:?}");
}

#[tokio::test]
async fn guessing_from_elsewhere_does_not_lock_the_owner_out_of_their_device() {
    let limiter = LoginLimiter::new(Duration::from_secs(900), 5, 20, 10);
    let app = plain_router(behind_proxy(demo_state().await, limiter));
    let owner = login_from(&app, "10.0.0.1", None, "pm@turns.demo", PASSWORD).await;
    assert_eq!(owner.status, 200, "{}", owner.body);
    let device = set_cookie(&owner, "turns_device").expect("device cookie");

    // Someone else guesses from two addresses until the email is closed to unknown devices.
    for address in ["192.0.2.1", "192.0.2.2"] {
        for i in 0..5 {
            let r = login_from(&app, address, None, "pm@turns.demo", &format!("x{i}")).await;
            assert_eq!(r.status, 401, "{}", r.body);
        }
        let sixth = login_from(&app, address, None, "pm@turns.demo", PASSWORD).await;
        assert_eq!(sixth.status, 429, "that address is done guessing");
    }
    let stranger = login_from(&app, "192.0.2.3", None, "pm@turns.demo", PASSWORD).await;
    assert_eq!(
        stranger.status, 429,
        "a new device waits while the email is under attack"
    );

    // The owner, on their own device (even from a new network), gets in.
    let back = login_from(&app, "10.0.0.7", Some(&device), "pm@turns.demo", PASSWORD).await;
    assert_eq!(back.status, 200, "{}", back.body);
    // Another account's device cookie does not count.
    let other = login_from(&app, "10.0.0.8", None, "pm2@turns.demo", PASSWORD).await;
    let other_device = set_cookie(&other, "turns_device").expect("device cookie");
    let borrowed = login_from(
        &app,
        "10.0.0.8",
        Some(&other_device),
        "pm@turns.demo",
        PASSWORD,
    )
    .await;
    assert_eq!(borrowed.status, 429);
}

#[tokio::test]
async fn after_login_the_browser_goes_only_to_a_path_on_this_site() {
    let app = plain_router(demo_state().await);
    for next in [
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r\nSet-Cookie: x=1",
        "//evil.example",
        "/\\evil.example",
        "https://evil.example",
        "/ /evil.example",
    ] {
        let body = serde_urlencoded::to_string([
            ("email", "pm@turns.demo"),
            ("password", PASSWORD),
            ("next", next),
        ])
        .expect("form");
        let r = send(
            &app,
            "POST",
            "/auth/login",
            None,
            Some(("application/x-www-form-urlencoded", body)),
        )
        .await;
        assert_eq!(r.status, 303, "{next:?}: {}", r.body);
        assert_eq!(r.location(), Some("/"), "{next:?}");
    }
    let body = serde_urlencoded::to_string([
        ("email", "pm@turns.demo"),
        ("password", PASSWORD),
        ("next", "/board?stage=QC"),
    ])
    .expect("form");
    let r = send(
        &app,
        "POST",
        "/auth/login",
        None,
        Some(("application/x-www-form-urlencoded", body)),
    )
    .await;
    assert_eq!(
        r.location(),
        Some("/board?stage=QC"),
        "same-site paths stay"
    );
}

#[tokio::test]
async fn another_site_cannot_log_in_out_or_write_for_the_user() {
    let state = demo_state().await;
    let app = plain_router(state.clone());
    let cookie = login(&app, "pm@turns.demo").await;
    let form = serde_urlencoded::to_string([("email", "pm@turns.demo"), ("password", PASSWORD)])
        .expect("form");
    let cross = [
        vec![
            ("origin", "https://evil.example"),
            ("host", "turns.example"),
        ],
        vec![("sec-fetch-site", "cross-site"), ("host", "turns.example")],
        vec![("sec-fetch-site", "same-site"), ("host", "turns.example")],
        vec![("origin", "null"), ("host", "turns.example")],
    ];
    for headers in &cross {
        let login = send_with(
            &app,
            "POST",
            "/auth/login",
            headers,
            Some(("application/x-www-form-urlencoded", form.clone())),
        )
        .await;
        assert_eq!(login.status, 403, "{headers:?}");
        assert!(login.session_cookie().is_none());
        let mut with_cookie = headers.clone();
        with_cookie.push(("cookie", &cookie));
        let logout = send_with(&app, "POST", "/auth/logout", &with_cookie, None).await;
        assert_eq!(logout.status, 403, "{headers:?}");
        let write = send_with(
            &app,
            "POST",
            "/api/mutate",
            &with_cookie,
            Some(("text/plain", "[]".into())),
        )
        .await;
        assert_eq!(write.status, 403, "{headers:?}");
    }
    // The session survived every attempt, and the same origin is served.
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&state.pool)
        .await
        .expect("sessions");
    assert_eq!(sessions, 1);
    let same = [
        ("origin", "http://turns.example"),
        ("host", "turns.example"),
        ("sec-fetch-site", "same-origin"),
    ];
    let login = send_with(
        &app,
        "POST",
        "/auth/login",
        &same,
        Some(("application/x-www-form-urlencoded", form)),
    )
    .await;
    assert_eq!(login.status, 303, "{}", login.body);
    // The write endpoint takes JSON only, whoever sends it.
    let plain = send_with(
        &app,
        "POST",
        "/api/mutate",
        &[("cookie", &cookie), ("sec-fetch-site", "same-origin")],
        Some(("text/plain", "[]".into())),
    )
    .await;
    assert_eq!(plain.status, 415);
}

#[tokio::test]
async fn logging_in_again_ends_the_previous_session_and_logout_clears_cached_pages() {
    let state = demo_state().await;
    let app = plain_router(state.clone());
    let first = login(&app, "pm@turns.demo").await;
    let again = send_with(
        &app,
        "POST",
        "/auth/login",
        &[("cookie", &first)],
        json_login("pm2@turns.demo", PASSWORD),
    )
    .await;
    assert_eq!(again.status, 200);
    let second = again.session_cookie().expect("new session");
    let old = send(
        &app,
        "GET",
        "/api/shapes/turns?offset=-1",
        Some(&first),
        None,
    )
    .await;
    assert_eq!(old.status, 401, "the first session ended");
    // Signed-in answers are not stored by caches unless a handler says otherwise.
    let home = send(&app, "GET", "/", Some(&second), None).await;
    assert_eq!(home.headers["cache-control"], "private, no-store");
    let out = send(&app, "POST", "/auth/logout", Some(&second), None).await;
    assert_eq!(out.headers["clear-site-data"], "\"cache\"");
}

#[tokio::test]
async fn a_client_acting_for_one_user_is_refused_under_another_users_session() {
    let state = demo_state().await;
    let app = plain_router(state.clone());
    let cookie = login(&app, "pm2@turns.demo").await;
    let ids: Vec<(String, uuid::Uuid)> = sqlx::query_as(
        "SELECT email, id FROM users WHERE email IN ('pm@turns.demo', 'pm2@turns.demo')",
    )
    .fetch_all(&state.pool)
    .await
    .expect("users");
    let id = |email: &str| {
        ids.iter()
            .find(|(e, _)| e == email)
            .map(|(_, id)| id.to_string())
            .expect("user")
    };
    let (a, b) = (id("pm@turns.demo"), id("pm2@turns.demo"));
    let url = "/api/shapes/turns?offset=-1";
    let stale = send_with(
        &app,
        "GET",
        url,
        &[("cookie", &cookie), ("x-turns-user", &a)],
        None,
    )
    .await;
    assert_eq!(stale.status, 401);
    assert_eq!(stale.headers["x-turns-session"], "other-user");
    let body = serde_json::json!({"batch": []}).to_string();
    let write = send_with(
        &app,
        "POST",
        "/api/mutate",
        &[("cookie", &cookie), ("x-turns-user", &a)],
        Some(("application/json", body)),
    )
    .await;
    assert_eq!(write.status, 401, "never applied under another user");
    let own = send_with(
        &app,
        "GET",
        "/",
        &[("cookie", &cookie), ("x-turns-user", &b)],
        None,
    )
    .await;
    assert_eq!(
        own.location(),
        Some("/board"),
        "the user's own requests go through"
    );
    let signed_out = send_with(&app, "GET", url, &[("x-turns-user", &b)], None).await;
    assert_eq!(signed_out.status, 401);
    assert!(!signed_out.headers.contains_key("x-turns-session"));
}

/// Follow a session's shape to up-to-date; the (handle, offset) to go live from.
async fn caught_up(app: &axum::Router, shape: &str, cookie: &str) -> (String, String) {
    let header = |r: &Reply, name: &str| {
        r.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no {name}: {}", r.body))
    };
    let r = send(
        app,
        "GET",
        &format!("{shape}?offset=-1"),
        Some(cookie),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (mut handle, mut offset) = (header(&r, "electric-handle"), header(&r, "electric-offset"));
    loop {
        let r = send(
            app,
            "GET",
            &format!("{shape}?handle={handle}&offset={offset}"),
            Some(cookie),
            None,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        handle = header(&r, "electric-handle");
        offset = header(&r, "electric-offset");
        if r.headers.contains_key("electric-up-to-date") {
            return (handle, offset);
        }
    }
}

async fn with_shapes(state: AppState) -> (AppState, axum::Router) {
    let url = state.config.database_url.clone().expect("url");
    let state = state.start_shapes(&url).await.expect("shapes");
    let app = plain_router(state.clone());
    (state, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deactivated_user_stops_receiving_at_once_and_stays_out_after_reactivation() {
    let limiter = LoginLimiter::default();
    let (state, app) = with_shapes(behind_proxy(demo_state().await, limiter)).await;
    let pool = state.pool.clone();
    let cookie = login(&app, "pm@turns.demo").await;
    let (handle, offset) = caught_up(&app, "/api/shapes/turns", &cookie).await;
    let live = |sse: bool| {
        let (app, cookie) = (app.clone(), cookie.clone());
        let url = format!(
            "/api/shapes/turns?handle={handle}&offset={offset}&live=true{}",
            if sse { "&live_sse=true" } else { "" }
        );
        tokio::spawn(async move { send(&app, "GET", &url, Some(&cookie), None).await })
    };
    let (poll, stream) = (live(false), live(true));
    tokio::time::sleep(Duration::from_millis(500)).await;

    sqlx::query("UPDATE users SET is_active = false WHERE email = 'pm@turns.demo'")
        .execute(&pool)
        .await
        .expect("deactivate");
    // A change the user would have seen.
    sqlx::query(
        "UPDATE turns SET wo_number = 'AFTER-DEACTIVATION'
          WHERE id = (SELECT t.id FROM turns t JOIN users u ON u.id = t.property_manager_id
                       WHERE u.email = 'pm@turns.demo' AND t.is_active LIMIT 1)",
    )
    .execute(&pool)
    .await
    .expect("change");

    let poll = poll.await.expect("long-poll");
    assert_eq!(poll.status, 401, "{}", poll.body);
    let stream = stream.await.expect("stream");
    assert!(
        !stream.body.contains("AFTER-DEACTIVATION"),
        "the stream ended without the change: {}",
        stream.body
    );
    let sessions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sessions s JOIN users u ON u.id = s.user_id
          WHERE u.email = 'pm@turns.demo'",
    )
    .fetch_one(&pool)
    .await
    .expect("sessions");
    assert_eq!(sessions, 0, "deactivation ends every session");
    sqlx::query("UPDATE users SET is_active = true WHERE email = 'pm@turns.demo'")
        .execute(&pool)
        .await
        .expect("reactivate");
    let after = send(
        &app,
        "GET",
        "/api/shapes/turns?offset=-1",
        Some(&cookie),
        None,
    )
    .await;
    assert_eq!(
        after.status, 401,
        "an old cookie does not come back to life"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_out_session_gets_no_more_shape_data_at_once() {
    // Live shape requests take a session confirmed in the last few seconds from memory: a
    // logout must not leave that window open.
    let (state, app) = with_shapes(demo_state().await).await;
    let cookie = login(&app, "pm@turns.demo").await;
    let (handle, offset) = caught_up(&app, "/api/shapes/turns", &cookie).await;
    // Without the database's announcement (it takes a moment, and this must not depend on it).
    state.live.stop();
    let out = send(&app, "POST", "/auth/logout", Some(&cookie), None).await;
    assert!(out.status.is_redirection(), "{}", out.status);
    for url in [
        "/api/shapes/turns?offset=-1".to_string(),
        format!("/api/shapes/turns?handle={handle}&offset={offset}"),
    ] {
        let r = send(&app, "GET", &url, Some(&cookie), None).await;
        assert_eq!(r.status, 401, "{url}: {:.200}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_gets_a_bounded_number_of_live_requests_and_new_shapes() {
    let state = behind_proxy(demo_state().await, LoginLimiter::default());
    let (_state, app) = with_shapes(state).await;
    let cookie = login(&app, "pm@turns.demo").await;
    let (handle, offset) = caught_up(&app, "/api/shapes/stages", &cookie).await;
    let url = format!("/api/shapes/stages?handle={handle}&offset={offset}&live=true");
    let mut parked = Vec::new();
    for _ in 0..16 {
        let (app, cookie, url) = (app.clone(), cookie.clone(), url.clone());
        parked.push(tokio::spawn(async move {
            send(&app, "GET", &url, Some(&cookie), None).await.status
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let one_more = send(&app, "GET", &url, Some(&cookie), None).await;
    assert_eq!(one_more.status, 429, "{}", one_more.body);
    assert!(one_more.headers.contains_key("retry-after"));
    for p in parked {
        assert_eq!(p.await.expect("live"), 200);
    }
    // Each new shape is a snapshot query and a stored handle: bounded per session too. (One
    // was started by `caught_up`.)
    let mut statuses = Vec::new();
    for _ in 0..60 {
        statuses.push(
            send(
                &app,
                "GET",
                "/api/shapes/stages?offset=-1",
                Some(&cookie),
                None,
            )
            .await
            .status
            .as_u16(),
        );
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 59);
    assert_eq!(statuses.last(), Some(&429));
    let other = login(&app, "pm2@turns.demo").await;
    let fresh = send(
        &app,
        "GET",
        "/api/shapes/stages?offset=-1",
        Some(&other),
        None,
    )
    .await;
    assert_eq!(fresh.status, 200, "another session has its own budget");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_hash_reaches_the_change_log() {
    let (state, app) = with_shapes(demo_state().await).await;
    login(&app, "pm@turns.demo").await; // writes last_login: a change to `users`
    let mut logged = 0i64;
    for _ in 0..300 {
        logged = sqlx::query_scalar(
            "SELECT count(*) FROM sync_log WHERE new_row ? 'last_login' AND new_row->>'last_login' IS NOT NULL",
        )
        .fetch_one(&state.pool)
        .await
        .expect("log");
        if logged > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(logged > 0, "the login reached the change log");
    let leaked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sync_log WHERE new_row::text LIKE '%argon2%' OR old_row::text LIKE '%argon2%'")
            .fetch_one(&state.pool)
            .await
            .expect("log");
    assert_eq!(leaked, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendors_do_not_see_each_others_contact_details() {
    let (_state, app) = with_shapes(demo_state().await).await;
    let rows = |r: Reply| -> Vec<Value> {
        r.json()
            .as_array()
            .expect("messages")
            .iter()
            .filter_map(|m| m.get("value").cloned())
            .collect()
    };
    let vendor = login(&app, "vendor@turns.demo").await;
    let seen = rows(
        send(
            &app,
            "GET",
            "/api/shapes/vendors?offset=-1",
            Some(&vendor),
            None,
        )
        .await,
    );
    assert!(seen.len() > 1, "vendors see who the others are");
    for v in &seen {
        assert!(
            v.get("contact_email").is_none() && v.get("contact_phone").is_none(),
            "{v}"
        );
    }
    let pm = login(&app, "pm@turns.demo").await;
    let seen = rows(
        send(
            &app,
            "GET",
            "/api/shapes/vendors?offset=-1",
            Some(&pm),
            None,
        )
        .await,
    );
    assert!(
        seen.iter().any(|v| v.get("contact_email").is_some()),
        "PMs hire vendors"
    );
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = plain_router(demo_state().await);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let limits = turns_server::serve::Limits {
        header_read: Duration::from_secs(1),
        ..Default::default()
    };
    let server = tokio::spawn(turns_server::serve::serve(
        listener,
        app,
        limits,
        std::future::pending(),
    ));
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    conn.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("write");
    let mut buf = Vec::new();
    // The server, not this guard, must end it.
    let read = tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the half-sent request was still open after 30 s"
    );
    let answered = String::from_utf8_lossy(&buf);
    assert!(
        answered.is_empty() || answered.starts_with("HTTP/1.1 408"),
        "{answered}"
    );
    // A complete request on a new connection is served.
    let mut ok = tokio::net::TcpStream::connect(addr).await.expect("connect");
    ok.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    ok.read_to_end(&mut buf).await.expect("read");
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
    server.abort();
}
