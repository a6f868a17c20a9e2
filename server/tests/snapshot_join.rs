//! Where a shape's snapshot meets its log, nothing falls between them.
//!
//! A transaction that has written its commit record but is not yet visible when the snapshot is
//! taken is in neither the snapshot's rows nor (when its xid is at or past the snapshot's `xmax`,
//! as when no transaction completed after it was assigned) the snapshot's in-progress list. Its
//! commit is at or below the position read before the snapshot, so the log after that position
//! does not carry it either: its rows were lost to that shape for good. Under load this failed
//! the failover test now and then; here it is made to happen every time, with synchronous
//! replication to a standby that does not exist: a commit then writes its record and waits,
//! invisible, until the setting is reset.
use std::time::Duration;
use turns_server::config::Config;
use turns_server::testing::{plain_router, private_database, Follower};
use turns_server::AppState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_not_yet_visible_to_the_snapshot_reaches_the_shape_from_the_log() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_cluster, pool, url) = private_database(tmp.path(), "join").await;
    let config = Config {
        database_url: Some(url.clone()),
        shape_secret: Some("s".into()),
        ..Config::for_tests()
    };
    let state = AppState::new(pool.clone(), config)
        .start_shapes(&url)
        .await
        .expect("shapes");
    let shapes = state.shapes.clone().expect("shape server");
    let router = plain_router(state.clone());
    let base = "/v1/shape?secret=s&table=vendors&";
    for i in 0..3 {
        sqlx::query("INSERT INTO vendors (name) VALUES ($1)")
            .bind(format!("before-{i}"))
            .execute(&pool)
            .await
            .expect("insert");
    }
    shapes.caught_up().await.expect("caught up");

    let set_standby = |names: &'static str| {
        let pool = pool.clone();
        async move {
            let statement = match names {
                "" => "ALTER SYSTEM RESET synchronous_standby_names".to_string(),
                n => format!("ALTER SYSTEM SET synchronous_standby_names = '{n}'"),
            };
            sqlx::query(&statement).execute(&pool).await.expect("alter");
            sqlx::query("SELECT pg_reload_conf()")
                .execute(&pool)
                .await
                .expect("reload");
            // Every backend reads the new setting at its next command; give them a moment.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    set_standby("nobody").await;
    let committing = {
        let pool = pool.clone();
        tokio::spawn(async move {
            sqlx::query("INSERT INTO vendors (name) VALUES ('in-commit')")
                .execute(&pool)
                .await
                .expect("insert")
        })
    };
    // Its commit record is written, and it waits for the standby.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
              WHERE wait_event = 'SyncRep' AND query LIKE 'INSERT INTO vendors%'",
        )
        .fetch_one(&pool)
        .await
        .expect("activity");
        if waiting == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the insert never waited"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A new client's snapshot now: the insert is invisible to it. (Its handle's own commit waits
    // for the standby too, so the first answer comes once the setting is reset.)
    let first = {
        let router = router.clone();
        tokio::spawn(async move { Follower::start(&router, base, None).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    set_standby("").await;
    committing.await.expect("insert done");
    let mut follower = first.await.expect("first answer");
    follower.catch_up(&state, &router).await;
    let names: std::collections::BTreeSet<String> = follower
        .rows()
        .values()
        .filter_map(|r| r.get("name").and_then(|n| n.as_str()).map(str::to_string))
        .collect();
    for want in ["before-0", "before-1", "before-2", "in-commit"] {
        assert!(names.contains(want), "{want} missing from {names:?}");
    }
}
