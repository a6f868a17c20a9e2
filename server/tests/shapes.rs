//! The shape server against a real PostgreSQL with logical replication: snapshot + stream join,
//! live changes (also from plain SQL), rows moving in and out of shapes, authorized shapes per
//! role, and bad input.
use std::collections::BTreeMap;
use std::time::Duration;
use turns::shape_follower::{ResponseHead, Step};
use turns_server::testing::{demo_state, login, plain_router, send, Follower};

const SECRET: &str = "test-secret";

async fn app() -> (turns_server::AppState, axum::Router) {
    let mut state = demo_state().await;
    let mut config = (*state.config).clone();
    config.shape_secret = Some(SECRET.into());
    config.long_poll = Duration::from_secs(3);
    state.config = std::sync::Arc::new(config);
    let url = state.config.database_url.clone().expect("url");
    let state = state.start_shapes(&url).await.expect("shapes");
    let router = plain_router(state.clone());
    (state, router)
}

fn generic(table: &str, extra: &str) -> String {
    format!("/v1/shape?secret={SECRET}&table={table}{extra}&")
}

async fn count(pool: &sqlx::PgPool, sql: &str) -> usize {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(pool)
        .await
        .expect("count") as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_then_live_changes_from_any_writer() {
    let (state, router) = app().await;
    let pool = &state.pool;
    let mut f = Follower::start(&router, &generic("vendors", ""), None).await;
    f.catch_up(&state, &router).await;
    assert_eq!(
        f.rows().len(),
        count(pool, "SELECT count(*) FROM vendors").await
    );

    // A write by plain SQL (as psql would) reaches a live request.
    let writer = {
        let pool = pool.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            sqlx::query("INSERT INTO vendors (name, trade) VALUES ('Live Insert Co', 'Roofing')")
                .execute(&pool)
                .await
                .expect("insert");
        })
    };
    f.poll(&router, true).await;
    writer.await.expect("writer");
    while !f.rows().values().any(|r| r["name"] == "Live Insert Co") {
        f.poll(&router, true).await;
    }
    let row = f
        .rows()
        .values()
        .find(|r| r["name"] == "Live Insert Co")
        .expect("row")
        .clone();
    assert_eq!(row["trade"], "Roofing");
    assert_eq!(row["is_active"], "t", "values are Postgres text");

    sqlx::query("UPDATE vendors SET trade = 'Roofs' WHERE name = 'Live Insert Co'")
        .execute(pool)
        .await
        .expect("update");
    f.catch_up(&state, &router).await;
    assert!(f.rows().values().any(|r| r["trade"] == "Roofs"));
    sqlx::query("DELETE FROM vendors WHERE name = 'Live Insert Co'")
        .execute(pool)
        .await
        .expect("delete");
    f.catch_up(&state, &router).await;
    assert!(!f.rows().values().any(|r| r["name"] == "Live Insert Co"));
    assert_eq!(
        f.rows().len(),
        count(pool, "SELECT count(*) FROM vendors").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_move_in_and_out_of_a_where_shape_and_resume_after_restart() {
    let (state, router) = app().await;
    let pool = &state.pool;
    let shape = generic(
        "turns",
        "&where=turn_amount%20%3E%20%241&params[1]=3000&columns=id,turn_id,turn_amount",
    );
    let mut f = Follower::start(&router, &shape, None).await;
    f.catch_up(&state, &router).await;
    let expected = "SELECT count(*) FROM turns WHERE turn_amount > 3000";
    assert_eq!(f.rows().len(), count(pool, expected).await);
    assert!(
        f.rows().values().all(|r| r.len() == 3),
        "only the selected columns"
    );

    // Many transactions, including moves across the boundary, in one go.
    for i in 0..20 {
        let amount = if i % 2 == 0 { 100 } else { 9000 };
        sqlx::query("UPDATE turns SET turn_amount = $1 WHERE turn_id = $2")
            .bind(rust_decimal::Decimal::from(amount))
            .bind(format!("T-{:05}", 20001 + i * 3))
            .execute(pool)
            .await
            .expect("update");
    }
    f.catch_up(&state, &router).await;
    assert_eq!(f.rows().len(), count(pool, expected).await);

    // Stop this server's stream; a new server on the same database (as after a restart) resumes
    // the slot and serves the stored handle and log: nothing lost, nothing doubled.
    state.shapes.as_ref().expect("shapes").stop();
    sqlx::query("UPDATE turns SET turn_amount = 9999 WHERE turn_id = 'T-20002'")
        .execute(pool)
        .await
        .expect("update");
    let fresh = turns_server::AppState::new(state.pool.clone(), (*state.config).clone());
    let again = fresh
        .start_shapes(state.config.database_url.as_deref().expect("url"))
        .await
        .expect("shapes");
    let again_router = plain_router(again.clone());
    f.catch_up(&again, &again_router).await;
    assert_eq!(f.rows().len(), count(pool, expected).await);
    assert!(
        f.rows().values().any(|r| r["turn_id"] == "T-20002"),
        "the change made while stopped arrived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorized_shapes_hold_exactly_the_policy_and_follow_reassignment() {
    let (state, router) = app().await;
    let pool = &state.pool;
    let pm = login(&router, "pm@turns.demo").await;
    let pm2 = login(&router, "pm2@turns.demo").await;
    let vendor = login(&router, "vendor@turns.demo").await;
    let mut a = Follower::start(&router, "/api/shapes/turns?", Some(&pm)).await;
    let mut b = Follower::start(&router, "/api/shapes/turns?", Some(&pm2)).await;
    let mut v = Follower::start(&router, "/api/shapes/turns?", Some(&vendor)).await;
    for f in [&mut a, &mut b, &mut v] {
        f.catch_up(&state, &router).await;
    }
    let of = |email: &str| {
        format!(
            "SELECT count(*) FROM turns t JOIN properties p ON p.id = t.property_id JOIN users u ON u.id = p.property_manager_id
              WHERE t.is_active AND u.email = '{email}'"
        )
    };
    assert_eq!(a.rows().len(), count(pool, &of("pm@turns.demo")).await);
    assert_eq!(b.rows().len(), count(pool, &of("pm2@turns.demo")).await);
    let vendor_turns = "SELECT count(*) FROM turns t JOIN users u ON u.vendor_id = t.vendor_id WHERE t.is_active AND u.email = 'vendor@turns.demo'";
    assert_eq!(v.rows().len(), count(pool, vendor_turns).await);
    assert!(v
        .rows()
        .values()
        .all(|r| !r.contains_key("turn_amount") && !r.contains_key("approval_status")));

    // Reassign one of pm's properties (with turns) to pm2: its turns move across, live.
    sqlx::query(
        "UPDATE properties SET property_manager_id = (SELECT id FROM users WHERE email = 'pm2@turns.demo')
          WHERE id = (SELECT t.property_id FROM turns t JOIN properties p ON p.id = t.property_id
                       JOIN users u ON u.id = p.property_manager_id WHERE u.email = 'pm@turns.demo' LIMIT 1)",
    )
    .execute(pool)
    .await
    .expect("reassign");
    a.catch_up(&state, &router).await;
    b.catch_up(&state, &router).await;
    assert_eq!(a.rows().len(), count(pool, &of("pm@turns.demo")).await);
    assert_eq!(b.rows().len(), count(pool, &of("pm2@turns.demo")).await);
    assert!(a.rows().keys().all(|k| !b.rows().contains_key(k)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_cleanly() {
    let (_state, router) = app().await;
    let pm = login(&router, "pm@turns.demo").await;
    let bad = [
        ("/v1/shape?table=turns&offset=-1", 401),
        ("/v1/shape?secret=wrong&table=turns&offset=-1", 401),
        (&*generic("turns", "&where=1%3D1)%20OR%20(1%3D1"), 400),
        (
            &*generic("users", "&where=password_hash%20LIKE%20'%25'"),
            400,
        ),
        (&*generic("users", "&columns=id,password_hash"), 400),
        (&*generic("sessions", ""), 400),
        (&*generic("user_credentials", ""), 400),
        (&*generic("turns", "&offset=banana"), 400),
        (&*generic("turns", "&offset=5_1"), 400),
        (&*generic("turns", "&columns=turn_id"), 400),
        (&*generic("turns", "&offset=5_1&handle=nope"), 409),
        ("/api/shapes/turns?offset=-1", 401),
    ];
    for (url, status) in bad {
        let url = if url.ends_with('&') {
            format!("{url}offset=-1")
        } else {
            url.to_string()
        };
        let r = send(&router, "GET", &url, None, None).await;
        assert_eq!(r.status.as_u16(), status, "{url}: {}", r.body);
    }
    for param in [
        "table=users",
        "where=true",
        "columns=id",
        "params[1]=x",
        "replica=full",
    ] {
        let r = send(
            &router,
            "GET",
            &format!("/api/shapes/turns?offset=-1&{param}"),
            Some(&pm),
            None,
        )
        .await;
        assert_eq!(r.status, 400, "{param}: {}", r.body);
    }
    let r = send(
        &router,
        "GET",
        "/api/shapes/users?offset=-1",
        Some(&pm),
        None,
    )
    .await;
    assert_eq!(r.status, 403);
    let ok = send(
        &router,
        "GET",
        "/api/shapes/stages?offset=-1",
        Some(&pm),
        None,
    )
    .await;
    assert_eq!(ok.status, 200, "the server keeps serving");
    assert_eq!(ok.headers["vary"], "Cookie");
    // One user's rows: never stored by a shared cache.
    let cache = ok.headers["cache-control"].to_str().unwrap_or_default();
    assert!(
        cache.starts_with("private") && !cache.contains("s-maxage"),
        "{cache}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_in_commit_order_under_concurrent_writers_and_a_restart() {
    let (state, router) = app().await;
    let pool = state.pool.clone();
    let all = generic("turns", "&columns=id,turn_id,turn_amount,version");
    let moving = generic(
        "turns",
        "&where=turn_amount%20%3E%3D%202500&columns=id,turn_amount,version",
    );
    let mut whole = Follower::start(&router, &all, None).await;
    let mut part = Follower::start(&router, &moving, None).await;
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM turns ORDER BY turn_id")
        .fetch_all(&pool)
        .await
        .expect("ids");
    let (property, stage): (uuid::Uuid, uuid::Uuid) = sqlx::query_as(
        "SELECT (SELECT id FROM properties LIMIT 1), (SELECT id FROM turn_stages ORDER BY display_order LIMIT 1)",
    )
    .fetch_one(&pool)
    .await
    .expect("refs");

    let writers = |round: usize| {
        (0..6)
            .map(|w| {
                let (pool, ids) = (pool.clone(), ids.clone());
                tokio::spawn(async move {
                    for i in 0..25usize {
                        let mut tx = pool.begin().await.expect("begin");
                        // Multi-row transactions over overlapping rows, crossing the 2500 line.
                        for k in 0..3 {
                            let id = ids[(w * 7 + i * 3 + k + round * 11) % ids.len()];
                            let amount = rust_decimal::Decimal::from(((w * 997 + i * 389 + k * 131 + round) % 50) as i64 * 100);
                            sqlx::query("UPDATE turns SET turn_amount = $1 WHERE id = $2")
                                .bind(amount)
                                .bind(id)
                                .execute(&mut *tx)
                                .await
                                .expect("update");
                        }
                        let turn_id = format!("X-{round}-{w}-{i}");
                        sqlx::query("INSERT INTO turns (turn_id, property_id, stage_id, turn_amount) VALUES ($1, $2, $3, 3000)")
                            .bind(&turn_id)
                            .bind(property)
                            .bind(stage)
                            .execute(&mut *tx)
                            .await
                            .expect("insert");
                        if i % 3 == 0 {
                            sqlx::query("DELETE FROM turns WHERE turn_id = $1").bind(&turn_id).execute(&mut *tx).await.expect("delete");
                        }
                        tx.commit().await.expect("commit");
                    }
                })
            })
            .collect::<Vec<_>>()
    };

    // Round one while the followers read live.
    let round = writers(0);
    for _ in 0..5 {
        whole.poll(&router, false).await;
        part.poll(&router, false).await;
    }
    for w in round {
        w.await.expect("writer");
    }
    // Restart the shape server mid-stream: writers keep going while it is down and after.
    state.shapes.as_ref().expect("shapes").stop();
    let round = writers(1);
    let fresh = turns_server::AppState::new(state.pool.clone(), (*state.config).clone());
    let again = fresh
        .start_shapes(state.config.database_url.as_deref().expect("url"))
        .await
        .expect("shapes");
    let router = plain_router(again.clone());
    for w in round {
        w.await.expect("writer");
    }
    whole.catch_up(&again, &router).await;
    part.catch_up(&again, &router).await;

    let truth: BTreeMap<String, String> = sqlx::query_as::<_, (uuid::Uuid, Option<String>)>(
        "SELECT id, turn_amount::text FROM turns",
    )
    .fetch_all(&pool)
    .await
    .expect("truth")
    .into_iter()
    .map(|(id, a)| {
        (
            format!("\"public\".\"turns\"/\"{id}\""),
            a.unwrap_or_default(),
        )
    })
    .collect();
    let seen = |f: &Follower| -> BTreeMap<String, String> {
        f.rows()
            .iter()
            .map(|(k, r)| {
                (
                    k.clone(),
                    r["turn_amount"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    assert_same(
        &seen(&whole),
        &truth,
        "the whole-table shape equals the table",
    );
    let expected_part: BTreeMap<String, String> = truth
        .iter()
        .filter(|(_, a)| {
            a.parse::<rust_decimal::Decimal>()
                .is_ok_and(|a| a >= rust_decimal::Decimal::from(2500))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_same(
        &seen(&part),
        &expected_part,
        "the where shape equals its query",
    );

    let anonymous = send(&router, "GET", "/metrics", None, None).await;
    assert_eq!(anonymous.status, 404, "metrics are for operators");
    let metrics = send(
        &router,
        "GET",
        &format!("/metrics?secret={SECRET}"),
        None,
        None,
    )
    .await;
    assert!(
        metrics.body.contains("turns_shape_changes_total"),
        "{}",
        metrics.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trimmed_log_sends_lagging_clients_to_refetch() {
    let (state, router) = app().await;
    let server = state.shapes.clone().expect("shapes");
    let mut f = Follower::start(&router, &generic("vendors", ""), None).await;
    f.catch_up(&state, &router).await;
    let old_offset = f.offset();
    for i in 0..5 {
        sqlx::query("UPDATE vendors SET trade = $1 WHERE name = 'Brightline Painting'")
            .bind(format!("Painting {i}"))
            .execute(&state.pool)
            .await
            .expect("update");
    }
    server.caught_up().await.expect("caught up");
    // Read is not yet stored: wait until the log table holds the five updates, so that the trim
    // below cuts among them (under load the writer may still be a batch behind).
    let after: i64 = turns::shape_protocol::Offset::parse(&old_offset)
        .expect("offset")
        .lsn as i64;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sync_log WHERE lsn > $1")
        .bind(after)
        .fetch_one(&state.pool)
        .await
        .expect("stored")
        < 5
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the log was not stored"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server
        .maintain(Duration::from_secs(3600), 1)
        .await
        .expect("maintain");
    // A fresh server (no in-memory tail) must refuse the trimmed offset.
    let fresh = turns_server::AppState::new(state.pool.clone(), (*state.config).clone());
    server.stop();
    let again = plain_router(
        fresh
            .start_shapes(state.config.database_url.as_deref().expect("url"))
            .await
            .expect("shapes"),
    );
    let r = send(
        &again,
        "GET",
        &format!(
            "{}handle={}&offset={old_offset}",
            generic("vendors", ""),
            f.handle()
        ),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.headers.contains_key("electric-handle"));
}

fn assert_same(got: &BTreeMap<String, String>, want: &BTreeMap<String, String>, what: &str) {
    let wrong: Vec<_> = want
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: want {v:?}, got {:?}", got.get(k)))
        .chain(
            got.keys()
                .filter(|k| !want.contains_key(*k))
                .map(|k| format!("{k}: should not be there")),
        )
        .collect();
    assert!(
        wrong.is_empty(),
        "{what}: {} differences, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
}

/// The rows each role may read, written independently of the server's code, as SQL.
fn expected_sql(shape: &str, role: &str) -> Option<String> {
    let scoped_turns = match role {
        "PROPERTY_MANAGER" => "SELECT t.id FROM turns t JOIN properties p ON p.id = t.property_id WHERE t.is_active AND p.property_manager_id = $1",
        "SR_PROPERTY_MANAGER" => "SELECT t.id FROM turns t JOIN properties p ON p.id = t.property_id WHERE t.is_active AND (p.property_manager_id = $1 OR p.sr_property_manager_id = $1)",
        "VENDOR" => "SELECT t.id FROM turns t WHERE t.is_active AND t.vendor_id = (SELECT vendor_id FROM users WHERE id = $1)",
        "DFO_APPROVER" => "SELECT id FROM turns WHERE is_active AND approval_status = 'DFO_APPROVAL_NEEDED' AND $1::uuid IS NOT NULL",
        "HO_APPROVER" => "SELECT id FROM turns WHERE is_active AND approval_status = 'HO_APPROVAL_NEEDED' AND $1::uuid IS NOT NULL",
        _ => "SELECT id FROM turns WHERE is_active AND $1::uuid IS NOT NULL",
    };
    let admin = matches!(role, "ADMIN" | "SUPER_ADMIN");
    Some(String::from(match shape {
        // Open, or completed since the Monday of the week 90 days ago (the sync bound).
        "turns" => {
            return Some(format!(
                "SELECT s.id FROM ({scoped_turns}) s WHERE s.id IN (SELECT id FROM turns
                  WHERE turn_completion_date IS NULL
                     OR turn_completion_date >= date_trunc('week', current_date - 90)::date)"
            ))
        }
        // The lines of exactly those turns.
        "line_items" => {
            return Some(format!(
                "SELECT l.id FROM turn_line_items l WHERE l.turn_id IN ({scoped_turns})
                    AND l.turn_id IN (SELECT id FROM turns
                  WHERE turn_completion_date IS NULL
                     OR turn_completion_date >= date_trunc('week', current_date - 90)::date)"
            ))
        }
        // Notes and photos follow their turns the same way.
        "notes" | "photos" => {
            let table = if shape == "notes" { "turn_notes" } else { "turn_photos" };
            return Some(format!(
                "SELECT f.id FROM {table} f WHERE f.turn_id IN ({scoped_turns})
                    AND f.turn_id IN (SELECT id FROM turns
                  WHERE turn_completion_date IS NULL
                     OR turn_completion_date >= date_trunc('week', current_date - 90)::date)"
            ));
        }
        "cost_templates" if role == "VENDOR" => "SELECT id FROM cost_templates WHERE false AND $1::uuid IS NOT NULL",
        "cost_templates" => "SELECT id FROM cost_templates WHERE is_active AND $1::uuid IS NOT NULL",
        "properties" => match role {
            "PROPERTY_MANAGER" => "SELECT id FROM properties WHERE property_manager_id = $1",
            "SR_PROPERTY_MANAGER" => "SELECT id FROM properties WHERE property_manager_id = $1 OR sr_property_manager_id = $1",
            // The homes of the turns they may read.
            "VENDOR" => "SELECT p.id FROM properties p WHERE EXISTS (SELECT 1 FROM turns t WHERE t.property_id = p.id AND t.is_active AND t.vendor_id = (SELECT vendor_id FROM users WHERE id = $1))",
            "DFO_APPROVER" => "SELECT p.id FROM properties p WHERE EXISTS (SELECT 1 FROM turns t WHERE t.property_id = p.id AND t.is_active AND t.approval_status = 'DFO_APPROVAL_NEEDED') AND $1::uuid IS NOT NULL",
            "HO_APPROVER" => "SELECT p.id FROM properties p WHERE EXISTS (SELECT 1 FROM turns t WHERE t.property_id = p.id AND t.is_active AND t.approval_status = 'HO_APPROVAL_NEEDED') AND $1::uuid IS NOT NULL",
            _ => "SELECT id FROM properties WHERE $1::uuid IS NOT NULL",
        },
        "stages" => "SELECT id FROM turn_stages WHERE is_active AND $1::uuid IS NOT NULL",
        "thresholds" if role == "VENDOR" => "SELECT id FROM approval_thresholds WHERE false AND $1::uuid IS NOT NULL",
        "thresholds" => "SELECT id FROM approval_thresholds WHERE $1::uuid IS NOT NULL",
        "inbox" => "SELECT id FROM notifications WHERE user_id = $1",
        "qc_items" => "SELECT id FROM qc_checklist_items WHERE is_active AND $1::uuid IS NOT NULL",
        "vendors" if admin => "SELECT id FROM vendors WHERE $1::uuid IS NOT NULL",
        "vendors" => "SELECT id FROM vendors WHERE is_active AND is_approved AND $1::uuid IS NOT NULL",
        "users" if admin => "SELECT id FROM users WHERE $1::uuid IS NOT NULL",
        "managers" => "SELECT id FROM users WHERE is_active AND role IN ('PROPERTY_MANAGER', 'SR_PROPERTY_MANAGER') AND $1::uuid IS NOT NULL",
        _ => return None,
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_s_authorized_shapes_hold_exactly_what_sql_says() {
    let (state, router) = app().await;
    let pool = &state.pool;
    // A note and a photo on every turn, before the turns change below: their copies of the
    // turn's scope must follow.
    for table in ["turn_notes", "turn_photos"] {
        let (columns, values) = if table == "turn_notes" {
            ("body", "'oracle'")
        } else {
            (
                "content_type, bytes, width, height",
                "'image/jpeg', 1, 1, 1",
            )
        };
        sqlx::query(&format!(
            "INSERT INTO {table} (id, turn_id, author_id, author_name, {columns})
             SELECT gen_random_uuid(), t.id, (SELECT min(id::text)::uuid FROM users), 'Oracle',
                    {values}
               FROM turns t"
        ))
        .execute(pool)
        .await
        .expect("notes and photos");
    }
    // A notification for every user.
    sqlx::query(
        "INSERT INTO notifications (user_id, kind, message)
         SELECT id, 'assigned', 'oracle' FROM users",
    )
    .execute(pool)
    .await
    .expect("notifications");
    // History beyond the sync bound: a turn of every manager's, completed long ago.
    sqlx::query(
        "UPDATE turns SET move_out_date = current_date - 230, turn_completion_date = current_date - 200
          WHERE id IN (SELECT DISTINCT ON (property_manager_id) id FROM turns
                        WHERE is_active ORDER BY property_manager_id, turn_id)",
    )
    .execute(pool)
    .await
    .expect("old turns");
    // A cancelled turn: its lines leave every shape with it.
    sqlx::query(
        "UPDATE turns SET is_active = false
          WHERE id = (SELECT turn_id FROM turn_line_items ORDER BY turn_id LIMIT 1)",
    )
    .execute(pool)
    .await
    .expect("a cancelled turn");
    let users: Vec<(uuid::Uuid, String, String)> = sqlx::query_as(
        "SELECT id, email, role::text FROM users WHERE email LIKE '%@turns.demo' ORDER BY email",
    )
    .fetch_all(pool)
    .await
    .expect("users");
    for (id, email, role) in users {
        let cookie = login(&router, &email).await;
        for shape in [
            "turns",
            "properties",
            "stages",
            "thresholds",
            "vendors",
            "users",
            "managers",
            "line_items",
            "cost_templates",
            "qc_items",
            "notes",
            "photos",
            "inbox",
        ] {
            let url = format!("/api/shapes/{shape}?");
            let Some(sql) = expected_sql(shape, &role) else {
                let r = send(
                    &router,
                    "GET",
                    &format!("{url}offset=-1"),
                    Some(&cookie),
                    None,
                )
                .await;
                assert_eq!(r.status, 403, "{email} {shape}");
                continue;
            };
            let mut f = Follower::start(&router, &url, Some(&cookie)).await;
            f.catch_up(&state, &router).await;
            let got: std::collections::BTreeSet<String> = f
                .rows()
                .values()
                .map(|r| r["id"].as_str().expect("id").to_string())
                .collect();
            let want: std::collections::BTreeSet<String> =
                sqlx::query_scalar::<_, uuid::Uuid>(&sql)
                    .bind(id)
                    .fetch_all(pool)
                    .await
                    .expect("expected rows")
                    .into_iter()
                    .map(|u| u.to_string())
                    .collect();
            assert_eq!(got, want, "{email} ({role}) shape {shape}");
            for row in f.rows().values() {
                if shape == "managers" {
                    assert!(!row.contains_key("email") && !row.contains_key("phone"));
                }
                assert!(
                    !row.contains_key("password_hash"),
                    "{email} {shape}: password hashes never leave"
                );
                if role == "VENDOR" && shape == "turns" {
                    assert!(
                        !row.contains_key("turn_amount") && !row.contains_key("approval_status")
                    );
                }
                if role == "VENDOR" && shape == "line_items" {
                    assert!(!row.contains_key("unit_cost") && row.contains_key("description"));
                }
                if role == "VENDOR" && matches!(shape, "notes" | "photos") {
                    assert!(
                        !row.contains_key("property_manager_id") && row.contains_key("turn_id")
                    );
                }
                if role == "VENDOR" && shape == "properties" {
                    assert!(!row.contains_key("is_core") && row.contains_key("street_address"));
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_asking_for_one_definition_together_share_one_snapshot() {
    let (state, router) = app().await;
    let shapes = state.shapes.clone().expect("shapes");
    let before = shapes
        .metrics
        .snapshots
        .load(std::sync::atomic::Ordering::Relaxed);
    let url = format!("{}offset=-1", generic("turns", "&where=is_active"));
    let replies =
        futures_util::future::join_all((0..20).map(|_| send(&router, "GET", &url, None, None)))
            .await;
    let handles: std::collections::BTreeSet<String> = replies
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{}", r.body);
            r.headers["electric-handle"]
                .to_str()
                .expect("h")
                .to_string()
        })
        .collect();
    assert_eq!(handles.len(), 1, "one handle for one definition");
    assert!(
        replies.iter().all(|r| r.body == replies[0].body),
        "the same rows"
    );
    let taken = shapes
        .metrics
        .snapshots
        .load(std::sync::atomic::Ordering::Relaxed)
        - before;
    assert_eq!(taken, 1, "one snapshot query for 20 clients");

    // Another definition is another shape; and every sharer follows the log from the snapshot.
    let other = send(
        &router,
        "GET",
        &format!("{}offset=-1", generic("turns", "&where=NOT%20is_active")),
        None,
        None,
    )
    .await;
    assert_ne!(
        other.headers["electric-handle"].to_str().expect("h"),
        handles.first().expect("handle").as_str()
    );
    let mut followers = Vec::new();
    for _ in 0..2 {
        let mut f = Follower::start(&router, &generic("turns", "&where=is_active"), None).await;
        f.catch_up(&state, &router).await;
        followers.push(f);
    }
    sqlx::query("UPDATE turns SET wo_number = 'SHARED-1' WHERE id = (SELECT id FROM turns WHERE is_active LIMIT 1)")
        .execute(&state.pool)
        .await
        .expect("update");
    for f in followers.iter_mut() {
        f.catch_up(&state, &router).await;
        assert!(f.rows().values().any(|r| r["wo_number"] == "SHARED-1"));
        assert_eq!(
            f.rows().len(),
            count(&state.pool, "SELECT count(*) FROM turns WHERE is_active").await
        );
    }
    assert_eq!(followers[0].handle(), followers[1].handle());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_requests_woken_by_one_transaction_share_one_encoded_read() {
    use std::sync::atomic::Ordering::Relaxed;
    let (state, router) = app().await;
    let shapes = state.shapes.clone().expect("shapes");
    let base = generic("vendors", "&where=trade%20=%20'Roofing'");
    let mut first = Follower::start(&router, &base, None).await;
    first.catch_up(&state, &router).await;
    let url = first.url(true);
    let (encoded, shared) = (
        shapes.metrics.reads_encoded.load(Relaxed),
        shapes.metrics.reads_shared.load(Relaxed),
    );
    let waiting: Vec<_> = (0..20)
        .map(|_| {
            let (router, url) = (router.clone(), url.clone());
            tokio::spawn(async move { send(&router, "GET", &url, None, None).await })
        })
        .collect();
    while shapes.metrics.live_waiting.load(Relaxed) < 20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sqlx::query("INSERT INTO vendors (name, trade) VALUES ('Shared Read Co', 'Roofing')")
        .execute(&state.pool)
        .await
        .expect("insert");
    let mut bodies = std::collections::BTreeSet::new();
    for w in waiting {
        let r = w.await.expect("join");
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.contains("Shared Read Co"), "{}", r.body);
        bodies.insert(r.body);
    }
    assert_eq!(bodies.len(), 1, "every request got the same bytes");
    let encoded = shapes.metrics.reads_encoded.load(Relaxed) - encoded;
    let shared = shapes.metrics.reads_shared.load(Relaxed) - shared;
    // Each request reads once when it parks and once when woken: 40 reads, nearly all shared
    // (two workers may encode the same read at the same moment).
    assert!(encoded <= 6, "{encoded} reads encoded for 20 requests");
    assert!(shared >= 34, "{shared} reads shared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_many_pieces_arrives_whole() {
    let (state, router) = app().await;
    // About 1 MB of messages: the body is built and sent in several pieces.
    let rows = 2500;
    sqlx::query(
        "INSERT INTO vendors (name, trade)
         SELECT 'Bulk ' || n || ' ' || repeat('x', 240), repeat('y', 100)
           FROM generate_series(1, $1) AS n",
    )
    .bind(rows as i32)
    .execute(&state.pool)
    .await
    .expect("insert");
    let r = send(
        &router,
        "GET",
        &format!(
            "{}offset=-1",
            generic("vendors", "&where=name%20LIKE%20%27Bulk%20%25%27")
        ),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let messages = r.json();
    let names: Vec<&str> = messages
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|m| m["value"]["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names.len(), rows);
    let mut unique = names.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), rows, "every row once");
    assert!(r.body.len() > 900_000, "{} bytes", r.body.len());
}

/// The backend holding the leader's advisory lock on this database.
async fn lock_holder(pool: &sqlx::PgPool) -> Option<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_locks
          WHERE locktype = 'advisory' AND granted AND objsubid = 1
            AND ((classid::bigint << 32) | objid::bigint) = $1
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .bind(turns_server::shapes::leader::LOCK_KEY)
    .fetch_optional(pool)
    .await
    .expect("pg_locks")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_from_its_lock_stops_and_both_instances_keep_every_change_once() {
    // Two instances in one process, on one database: the first leads.
    let (a, router_a) = app().await;
    let url = a.config.database_url.clone().expect("url");
    let b = turns_server::AppState::new(a.pool.clone(), (*a.config).clone())
        .start_shapes(&url)
        .await
        .expect("shapes");
    let router_b = plain_router(b.clone());
    let pool = &a.pool;
    let term = || async {
        sqlx::query_scalar::<_, i64>("SELECT leader_term FROM sync_state")
            .fetch_one(pool)
            .await
            .expect("term")
    };
    let first_term = term().await;
    let shape = generic("vendors", "");
    let mut fa = Follower::start(&router_a, &shape, None).await;
    let mut fb = Follower::start(&router_b, &shape, None).await;
    fa.catch_up(&a, &router_a).await;
    fb.catch_up(&b, &router_b).await;

    for i in 0..60 {
        sqlx::query("UPDATE vendors SET contact_phone = $1")
            .bind(format!("cut-{i}"))
            .execute(pool)
            .await
            .expect("update");
        if i == 20 {
            // Only the lock's connection goes (a network cut, say): the process lives on, its
            // replication stream too, until it notices; its writes are fenced by the next term.
            let pid = lock_holder(pool).await.expect("a leader holds the lock");
            sqlx::query("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .execute(pool)
                .await
                .expect("terminate");
        }
        if i % 10 == 0 {
            fa.poll(&router_a, false).await;
            fb.poll(&router_b, false).await;
        }
    }
    // Some instance leads again, under a newer term.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while lock_holder(pool).await.is_none() {
        assert!(std::time::Instant::now() < deadline, "nobody leads");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(term().await > first_term, "a new term began");
    // Both instances' clients hold exactly the table (the follower fails on a change seen twice
    // or a version going backwards).
    fa.catch_up(&a, &router_a).await;
    fb.catch_up(&b, &router_b).await;
    let want: Vec<(String, String)> =
        sqlx::query_as("SELECT id::text, contact_phone FROM vendors ORDER BY id")
            .fetch_all(pool)
            .await
            .expect("vendors");
    for f in [&fa, &fb] {
        let got: Vec<(String, String)> = f
            .rows()
            .values()
            .map(|r| {
                (
                    r["id"].as_str().expect("id").to_string(),
                    r["contact_phone"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let mut got = got;
        got.sort();
        assert_eq!(got, want);
    }
    a.shapes.as_ref().expect("shapes").stop();
    b.shapes.as_ref().expect("shapes").stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_s_homes_follow_their_assignments() {
    let (state, router) = app().await;
    let pool = &state.pool;
    let cookie = login(&router, "vendor@turns.demo").await;
    let mut f = Follower::start(&router, "/api/shapes/properties?", Some(&cookie)).await;
    f.catch_up(&state, &router).await;
    let before = f.rows().len();
    assert!(before > 0, "the demo vendor works in some homes");
    // The vendor is given a turn in a home they had no work in.
    let mine = "(SELECT vendor_id FROM users WHERE email = 'vendor@turns.demo')";
    sqlx::query(&format!(
        "UPDATE turns SET vendor_id = {mine}
          WHERE id = (SELECT id FROM turns WHERE is_active AND property_id NOT IN
                        (SELECT property_id FROM turns WHERE is_active AND vendor_id = {mine})
                      ORDER BY turn_id LIMIT 1)"
    ))
    .execute(pool)
    .await
    .expect("assign");
    // The shape it followed is not the vendor's any more: refetch, then the new home is there.
    let r = send(&router, "GET", &f.url(false), Some(&cookie), None).await;
    assert_eq!(r.status, 409, "{}", r.body);
    let head = ResponseHead::read(r.status.as_u16(), |name| {
        r.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    });
    assert!(matches!(f.read(&head, &r.body), Err(Step::Refetch)));
    f.catch_up(&state, &router).await;
    assert_eq!(f.rows().len(), before + 1);
}

/// One request watches several of the user's shapes (a device's reference tables share one held
/// connection): it answers when one of them changes and names only that one, names at once a
/// shape that moved before it was asked or whose handle is not the user's shape, and refuses
/// what is not the user's to watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_waits_for_any_of_the_user_s_shapes() {
    use turns::shape_watch::{query, Moved, PATH};
    let (state, router) = app().await;
    let pm = login(&router, "pm@turns.demo").await;
    let mut stages = Follower::start(&router, "/api/shapes/stages?", Some(&pm)).await;
    let mut vendors = Follower::start(&router, "/api/shapes/vendors?", Some(&pm)).await;
    stages.catch_up(&state, &router).await;
    vendors.catch_up(&state, &router).await;
    let (s0, v0) = (
        stages.position().expect("stages"),
        vendors.position().expect("vendors"),
    );
    let url = format!("{PATH}?{}", query([("stages", &s0), ("vendors", &v0)]));
    let moved = |r: &turns_server::testing::Reply| -> Vec<String> {
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.headers["cache-control"], "no-store");
        serde_json::from_str::<Moved>(&r.body)
            .expect("answer")
            .moved
    };

    // Nothing moves: the long-poll ends with nobody named.
    let r = send(&router, "GET", &url, Some(&pm), None).await;
    assert_eq!(moved(&r), Vec::<String>::new());

    // A stage renamed while the request waits: it answers, naming stages only.
    let waiting = {
        let (router, pm, url) = (router.clone(), pm.clone(), url.clone());
        tokio::spawn(async move { send(&router, "GET", &url, Some(&pm), None).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "it waits while nothing moves");
    sqlx::query(
        "UPDATE turn_stages SET name = name || ' (renamed)'
          WHERE display_order = (SELECT min(display_order) FROM turn_stages)",
    )
    .execute(&state.pool)
    .await
    .expect("rename");
    let r = waiting.await.expect("request");
    assert_eq!(moved(&r), vec!["stages".to_string()]);
    // Asked again from the same positions: stages has moved since, so at once.
    let r = send(&router, "GET", &url, Some(&pm), None).await;
    assert_eq!(moved(&r), vec!["stages".to_string()]);
    stages.catch_up(&state, &router).await;
    assert!(stages
        .rows()
        .values()
        .any(|r| r["name"].as_str().is_some_and(|n| n.ends_with("(renamed)"))));

    // Another user's handle for this name is not this user's shape: named at once (the
    // client's own request for it then gets its 409).
    let vendor = login(&router, "vendor@turns.demo").await;
    let mut theirs = Follower::start(&router, "/api/shapes/properties?", Some(&vendor)).await;
    theirs.catch_up(&state, &router).await;
    let s1 = stages.position().expect("stages");
    let other = theirs.position().expect("properties");
    let r = send(
        &router,
        "GET",
        &format!(
            "{PATH}?{}",
            query([("stages", &s1), ("properties", &other)])
        ),
        Some(&pm),
        None,
    )
    .await;
    assert_eq!(moved(&r), vec!["properties".to_string()]);

    let p = format!("{}:{}", s1.handle, s1.offset);
    let too_many: Vec<String> = (0..=turns::shape_watch::MAX_SHAPES)
        .map(|i| format!("s{i}={p}"))
        .collect();
    for (url, cookie, status) in [
        (format!("{PATH}?stages={p}"), None, 401),
        (format!("{PATH}?users={p}"), Some(&pm), 403),
        (format!("{PATH}?nothing={p}"), Some(&pm), 404),
        (format!("{PATH}?stages=h-1"), Some(&pm), 400),
        (format!("{PATH}?stages={p}&stages={p}"), Some(&pm), 400),
        (format!("{PATH}?{}", too_many.join("&")), Some(&pm), 400),
        (PATH.to_string(), Some(&pm), 400),
    ] {
        let r = send(&router, "GET", &url, cookie.map(String::as_str), None).await;
        assert_eq!(r.status.as_u16(), status, "{url}: {}", r.body);
    }
}
