//! Exactly once across a PostgreSQL restart: the cluster stops mid-stream and comes back on the
//! same port; the replication stream reconnects and resumes from its slot.
use std::time::Duration;
use turns_server::config::Config;
use turns_server::pg::{ClusterOptions, LocalPostgres};
use turns_server::testing::{plain_router, private_database, Follower};
use turns_server::AppState;

async fn start(dir: std::path::PathBuf, port: Option<u16>) -> LocalPostgres {
    tokio::task::spawn_blocking(move || {
        LocalPostgres::start(&ClusterOptions {
            dir,
            port,
            durable: false,
        })
    })
    .await
    .expect("join")
    .expect("cluster")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_across_a_postgres_restart_arrive_exactly_once() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (cluster, pool, url) = private_database(tmp.path(), "restart").await;
    let dir = tmp.path().join("pg");
    let port = cluster.port();
    let config = Config {
        database_url: Some(url.clone()),
        shape_secret: Some("s".into()),
        ..Config::for_tests()
    };
    let state = AppState::new(pool.clone(), config)
        .start_shapes(&url)
        .await
        .expect("shapes");
    let router = plain_router(state.clone());
    let base = "/v1/shape?secret=s&table=vendors&";

    let insert = |name: String| {
        let pool = pool.clone();
        async move {
            sqlx::query("INSERT INTO vendors (name) VALUES ($1)")
                .bind(name)
                .execute(&pool)
                .await
                .expect("insert");
        }
    };
    for i in 0..10 {
        insert(format!("before-{i}")).await;
    }
    let mut follower = Follower::start(&router, base, None).await;
    for i in 0..10 {
        insert(format!("during-{i}")).await;
    }

    // Restart PostgreSQL (fast shutdown, same data and port) while changes are in flight.
    tokio::task::spawn_blocking(move || cluster.stop())
        .await
        .expect("stop");
    let cluster = start(dir, Some(port)).await;
    for i in 0..10 {
        // The pool reconnects; the first attempts may meet the restart.
        let mut tries = 0;
        while sqlx::query("INSERT INTO vendors (name) VALUES ($1)")
            .bind(format!("after-{i}"))
            .execute(&pool)
            .await
            .is_err()
        {
            tries += 1;
            assert!(tries < 50, "database did not come back");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let shapes = state.shapes.clone().expect("shapes");
    let mut tries = 0;
    while shapes.caught_up().await.is_err() {
        tries += 1;
        assert!(tries < 5, "the change stream did not resume");
    }
    // The follower fails on a change seen twice (an insert of a key it holds).
    while !follower.poll(&router, false).await {}
    let mut names: Vec<String> = follower
        .rows()
        .values()
        .map(|r| r["name"].as_str().expect("name").to_string())
        .collect();
    let mut want: Vec<String> = sqlx::query_scalar("SELECT name FROM vendors")
        .fetch_all(&pool)
        .await
        .expect("names");
    names.sort();
    want.sort();
    assert_eq!(names, want, "every row once, none twice");
    shapes.stop();
    pool.close().await;
    tokio::task::spawn_blocking(move || cluster.stop())
        .await
        .expect("stop");
}
