//! Soak: the release app under steady load for a while, watched for what only time shows —
//! memory that grows, replication that falls behind, errors.
//!
//! `turns-soak <path to turns-app> [--minutes N] [--clients N]` (default 3 minutes after
//! warm-up, 1,000 live clients; `tools/test` runs the default, `--minutes 30` is the long run). It starts a private
//! PostgreSQL cluster with the demo data plus 20,000 generated turns, the app as a separate
//! process, and from this process:
//! - `--clients` live long-poll clients following per-manager turn shapes;
//! - steady writes: turns updated by plain SQL, 20 per second;
//! - a login burst every 20 s: 60 logins at once (right passwords, and wrong ones the limiter
//!   must refuse);
//! - every 5 s: the server's RSS and the replication slot's lag behind the WAL.
//!
//! It prints a table (the figures in BENCHMARKS.md come from it) and fails when any request
//! failed unexpectedly, when memory grew by more than half after warm-up (every client live,
//! plus 10 s), or when the clients missed changes.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use turns_server::generate::{generate, GenerateOptions};
use turns_server::testing::{bench_database, BenchDatabase};

use turns::shape_follower::{ShapeFollower, Step};
use turns_server::testing::http::{follow, rss_kb, start_app, Client, Error};

const SECRET: &str = "soak-secret";

#[derive(Default)]
struct Counters {
    /// What went wrong, by kind (status or error), for the report.
    failures: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    live_responses: AtomicU64,
    /// Clients that have taken their snapshot and are following live.
    clients_live: AtomicU64,
    shed: AtomicU64,
    changes_seen: AtomicU64,
    client_errors: AtomicU64,
    logins_ok: AtomicU64,
    logins_refused: AtomicU64,
    login_errors: AtomicU64,
    writes: AtomicU64,
}

impl Counters {
    fn failed(&self, kind: String) {
        *self
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(kind)
            .or_default() += 1;
    }
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(default)
}

/// Follow one shape live until `stop`; counts responses, changes and failures.
async fn live_client(addr: String, base: String, stop: Arc<AtomicBool>, c: Arc<Counters>) {
    let mut client = Client::new(&addr);
    let mut follower = ShapeFollower::new();
    let mut counted = false;
    while !stop.load(Ordering::Relaxed) {
        let live = follower.is_live();
        match follow(&mut client, &base, &mut follower).await {
            Ok((Step::Changes(batch), _)) => {
                if live {
                    if !counted {
                        counted = true;
                        c.clients_live.fetch_add(1, Ordering::Relaxed);
                    }
                    c.live_responses.fetch_add(1, Ordering::Relaxed);
                    c.changes_seen
                        .fetch_add(batch.changes.len() as u64, Ordering::Relaxed);
                }
            }
            // Must-refetch is part of the protocol, not an error.
            Ok((Step::Refetch, _)) => {}
            // Load shed with Retry-After: counted, retried, not a failure.
            Ok((_, r)) if r.status == 503 => {
                c.shed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            other => {
                c.failed(match other {
                    Ok((step, r)) => format!("shape {} ({step:?})", r.status),
                    Err(e) => format!("shape: {e}"),
                });
                c.client_errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let app = args
        .get(1)
        .ok_or("usage: turns-soak <turns-app binary> [--minutes N] [--clients N]")?
        .clone();
    let minutes = arg(&args, "--minutes", 3);
    let clients = arg(&args, "--clients", 1000) as usize;
    let dir = std::path::absolute("target/soak")?;
    let BenchDatabase { cluster, url, pool } = bench_database(&dir, 10).await?;
    let today = chrono::Utc::now().date_naive();
    generate(
        &pool,
        &GenerateOptions {
            properties: 2_000,
            turns: 20_000,
            managers: 10,
            seed: 11,
        },
        today,
    )
    .await
    .map_err(|e| e.to_string())?;
    let managers: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM users WHERE role = 'PROPERTY_MANAGER' ORDER BY email")
            .fetch_all(&pool)
            .await?;
    let emails: Vec<String> = sqlx::query_scalar(
        "SELECT email FROM users WHERE role = 'PROPERTY_MANAGER' ORDER BY email",
    )
    .fetch_all(&pool)
    .await?;

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut server = start_app(
        &app,
        &url,
        &addr,
        &[
            ("SHAPE_SECRET", SECRET),
            ("SHAPE_LONG_POLL_SECS", "20"),
            ("TRUST_PROXY", "true"),
        ],
        &dir.join("server.log"),
    )
    .await?;
    let pid = server.id();
    let rss_start = rss_kb(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let c = Arc::new(Counters::default());
    let started = Instant::now();

    let mut tasks = Vec::new();
    for i in 0..clients {
        let pm = managers[i % managers.len()];
        let base = format!(
            "/v1/shape?secret={SECRET}&table=turns&where=property_manager_id%20%3D%20%27{pm}%27"
        );
        tasks.push(tokio::spawn(live_client(
            addr.clone(),
            base,
            stop.clone(),
            c.clone(),
        )));
        // Clients arrive over ~20 s (50 a second), as a morning's logins would; a thundering
        // herd of first snapshots is the shape engine's issue, not this soak's.
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    // Steady writes.
    let writer = {
        let (pool, stop, c) = (pool.clone(), stop.clone(), c.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                n += 1;
                let done = sqlx::query(
                    "UPDATE turns SET wo_number = $1
                      WHERE id = (SELECT id FROM turns WHERE is_active
                                   ORDER BY id OFFSET $2 % 500 LIMIT 1)",
                )
                .bind(format!("SOAK-{n}"))
                .bind(n as i64)
                .execute(&pool)
                .await;
                if done.is_ok() {
                    c.writes.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    // Login bursts, and the samples.
    let mut rss_samples: Vec<(u64, u64)> = Vec::new();
    // Warm-up ends 10 s after the last client went live (every first snapshot taken).
    let mut all_live_at: Option<u64> = None;
    let mut max_lag = 0i64;
    // The soak proper runs `minutes` after warm-up; warm-up may take at most 5 minutes.
    let warm_up_limit = 300;
    let mut next_burst = Instant::now() + Duration::from_secs(10);
    let mut round = 0usize;
    loop {
        let now = started.elapsed().as_secs();
        let done = match all_live_at {
            Some(t) => now >= t + minutes * 60,
            None => now >= warm_up_limit,
        };
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        rss_samples.push((started.elapsed().as_secs(), rss_kb(pid)));
        if all_live_at.is_none() && c.clients_live.load(Ordering::Relaxed) >= clients as u64 {
            all_live_at = Some(started.elapsed().as_secs());
        }
        let lag: Option<i64> = sqlx::query_scalar(
            "SELECT max(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn))::bigint
               FROM pg_replication_slots",
        )
        .fetch_one(&pool)
        .await?;
        max_lag = max_lag.max(lag.unwrap_or(0));
        if Instant::now() >= next_burst {
            next_burst += Duration::from_secs(20);
            round += 1;
            let mut burst = Vec::new();
            for i in 0..60usize {
                let (addr, c) = (addr.clone(), c.clone());
                let email = emails[i % emails.len()].clone();
                let password = if i % 4 == 3 { "wrong" } else { "turns-demo" };
                burst.push(tokio::spawn(async move {
                    let body = format!(r#"{{"email":"{email}","password":"{password}"}}"#);
                    // Each login from its own address (the app trusts X-Forwarded-For here),
                    // as users behind their own connections would be.
                    let from = format!("10.{}.{}.{}", round % 250, i / 250, i % 250);
                    let r = Client::new(&addr)
                        .request(
                            "POST",
                            "/auth/login",
                            &[
                                ("Content-Type", "application/json"),
                                ("X-Forwarded-For", &from),
                            ],
                            &body,
                        )
                        .await;
                    let counter = match r.map(|r| r.status) {
                        Ok(200) => &c.logins_ok,
                        // Wrong passwords (and the limiter, were it to refuse).
                        Ok(401 | 429) => &c.logins_refused,
                        Ok(503) => &c.shed,
                        Ok(other) => {
                            c.failed(format!("login {other}"));
                            &c.login_errors
                        }
                        Err(e) => {
                            c.failed(format!("login: {e}"));
                            &c.login_errors
                        }
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }));
            }
            for b in burst {
                b.await?;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.abort();
    for t in tasks {
        t.abort();
    }
    let rss_end = rss_kb(pid);
    let _ = server.kill();
    let _ = server.wait();
    tokio::task::spawn_blocking(move || cluster.stop()).await?;

    let warm_at = all_live_at.map(|t| t + 10);
    let rss_warm = warm_at
        .and_then(|w| rss_samples.iter().find(|(t, _)| *t >= w))
        .map_or(rss_end, |(_, r)| *r);
    let rss_max = rss_samples.iter().map(|(_, r)| *r).max().unwrap_or(0);
    // The memory curve, every 30 s (what "flat" is judged from).
    let curve: Vec<String> = rss_samples
        .iter()
        .filter(|(t, _)| t % 30 < 5)
        .map(|(t, r)| format!("{t} s: {} MB", r / 1024))
        .collect();
    eprintln!("server RSS every 30 s: {}", curve.join(", "));
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!("| what | value |\n|---|---|");
    println!("| duration after warm-up, live clients | {minutes} min, {clients} |");
    println!(
        "| writes committed / changes delivered to live clients | {} / {} |",
        load(&c.writes),
        load(&c.changes_seen)
    );
    println!("| live responses | {} |", load(&c.live_responses));
    println!(
        "| logins: accepted / refused (wrong password or limiter) / failed | {} / {} / {} |",
        load(&c.logins_ok),
        load(&c.logins_refused),
        load(&c.login_errors)
    );
    let warm = warm_at.map_or("never".into(), |w| format!("{w} s"));
    println!(
        "| server RSS: start / after warm-up (every client live + 10 s: {warm}) / max / end | {} / {} / {} / {} MB |",
        rss_start / 1024,
        rss_warm / 1024,
        rss_max / 1024,
        rss_end / 1024
    );
    println!(
        "| max replication lag (slot behind WAL) | {} KB |",
        max_lag / 1024
    );
    println!(
        "| requests shed with 503 + Retry-After (retried) | {} |",
        load(&c.shed)
    );
    println!("| client errors | {} |", load(&c.client_errors));
    for (kind, n) in c.failures.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        println!("| failure: {kind} | {n} |");
    }

    let mut failures = Vec::new();
    if load(&c.client_errors) > 0 || load(&c.login_errors) > 0 {
        failures.push("requests failed");
    }
    if warm_at.is_none() {
        failures.push("the clients were not all live within 5 minutes");
    } else if rss_end > rss_warm + rss_warm / 2 {
        failures.push("memory grew by more than half after warm-up");
    }
    if load(&c.changes_seen) == 0 || load(&c.logins_ok) == 0 {
        failures.push("the clients saw no changes or nobody logged in");
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; ").into())
    }
}
