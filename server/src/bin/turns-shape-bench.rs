//! Shape server benchmarks, run by `tools/bench` (numbers go to BENCHMARKS.md).
//!
//! `turns-shape-bench <path to turns-app> [--quick]` starts a private PostgreSQL cluster with the
//! demo data plus 100,000 generated turns, starts the release app against it as a separate
//! process, and measures from this process (the load generator shares the 2 cores):
//! write → change received by waiting live clients (1/100/1,000), change throughput with 1,000
//! `col = const` shapes against `pgbench` in the same run, a 100,000-row snapshot against `COPY`,
//! and server memory per waiting live request (10,000 held).
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use turns_server::generate::{generate, GenerateOptions};
use turns_server::testing::{bench_database, BenchDatabase};

use turns_server::testing::http::{get, rss_kb, start_app, Client, Error};

const SECRET: &str = "bench-secret";

fn shape_url(table: &str, where_clause: Option<&str>, rest: &str) -> String {
    let w = where_clause
        .map(|w| {
            format!(
                "&where={}",
                w.replace(' ', "%20")
                    .replace('\'', "%27")
                    .replace('=', "%3D")
            )
        })
        .unwrap_or_default();
    format!("/v1/shape?secret={SECRET}&table={table}{w}{rest}")
}

/// Follow a shape to up-to-date; returns (handle, offset).
async fn follow_to_now(client: &mut Client, base: &str) -> Result<(String, String), Error> {
    let r = client.get(&format!("{base}&offset=-1")).await?;
    let mut handle = r.headers.get("electric-handle").cloned().ok_or("handle")?;
    let mut offset = r.headers.get("electric-offset").cloned().ok_or("offset")?;
    loop {
        let r = client
            .get(&format!("{base}&handle={handle}&offset={offset}"))
            .await?;
        if r.status != 200 {
            return Err(format!("catch-up status {}: {}", r.status, r.body).into());
        }
        handle = r.headers.get("electric-handle").cloned().ok_or("handle")?;
        offset = r.headers.get("electric-offset").cloned().ok_or("offset")?;
        if r.headers.contains_key("electric-up-to-date") {
            return Ok((handle, offset));
        }
    }
}

fn met(ok: bool) -> &'static str {
    if ok {
        "yes"
    } else {
        "no"
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The server's count of live requests held open (its `/metrics` gauge).
async fn live_waiting(addr: &str) -> Result<i64, Error> {
    let r = get(addr, &format!("/metrics?secret={SECRET}")).await?;
    r.body
        .lines()
        .find_map(|l| l.strip_prefix("turns_shape_live_requests_waiting "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "no live-waiting gauge in /metrics".into())
}

/// The rounds a response carries: the bench writes round `r` as `contact_phone = 'r'`.
fn rounds_in(body: &str) -> Vec<usize> {
    let Ok(serde_json::Value::Array(messages)) = serde_json::from_str(body) else {
        return Vec::new();
    };
    messages
        .iter()
        .filter(|m| m["headers"]["operation"].is_string())
        .filter_map(|m| m["value"]["contact_phone"].as_str()?.parse().ok())
        .collect()
}

/// Write → received latency (ms) for `n` clients waiting live on one shape. Each round's write
/// is made only once every client has its live request parked at the server (the clients have
/// all sent one, and the server's waiting gauge counts them), and each sample is measured from
/// the moment just before the write of the round the message carries: client set-up and a
/// client still busy with an earlier round never count.
async fn latency(
    addr: &str,
    pool: &sqlx::PgPool,
    n: usize,
    rounds: usize,
) -> Result<Vec<f64>, Error> {
    // The row exists before anyone follows: it is in every client's snapshot, not a change.
    sqlx::query(
        "INSERT INTO vendors (name, trade, is_approved, contact_phone)
         VALUES ('Bench Latency Co', 'bench-latency', true, 'start')
         ON CONFLICT (name) DO UPDATE SET trade = 'bench-latency', contact_phone = 'start'",
    )
    .execute(pool)
    .await?;
    let base = shape_url("vendors", Some("trade = 'bench-latency'"), "");
    let start = Instant::now();
    let written_at: Arc<Vec<AtomicU64>> =
        Arc::new((0..rounds).map(|_| AtomicU64::new(u64::MAX)).collect());
    let received = Arc::new(AtomicUsize::new(0));
    let asking = Arc::new(AtomicUsize::new(0));
    let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let mut client = Client::new(addr);
        let (handle, mut offset) = follow_to_now(&mut client, &base).await?;
        let base = base.clone();
        let (written_at, received, asking, samples) = (
            written_at.clone(),
            received.clone(),
            asking.clone(),
            samples.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut next_round = 0;
            while next_round < rounds {
                asking.fetch_add(1, Ordering::SeqCst);
                let reply = client
                    .get(&format!("{base}&handle={handle}&offset={offset}&live=true"))
                    .await;
                asking.fetch_sub(1, Ordering::SeqCst);
                let Ok(r) = reply else { return };
                let now = start.elapsed().as_nanos() as u64;
                if let Some(o) = r.headers.get("electric-offset") {
                    offset = o.clone();
                }
                for round in rounds_in(&r.body) {
                    if round < next_round || round >= rounds {
                        continue;
                    }
                    let at = written_at[round].load(Ordering::SeqCst);
                    samples
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(now.saturating_sub(at) as f64 / 1e6);
                    received.fetch_add(1, Ordering::SeqCst);
                    next_round = round + 1;
                }
            }
        }));
    }
    for round in 0..rounds {
        // Every client parked in a live request, as the server counts them (other phases'
        // requests are gone: their connections closed).
        let deadline = Instant::now() + Duration::from_secs(30);
        while asking.load(Ordering::SeqCst) < n || live_waiting(addr).await? < n as i64 {
            if Instant::now() > deadline {
                return Err(format!("round {round}: not every client is waiting").into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        written_at[round].store(start.elapsed().as_nanos() as u64, Ordering::SeqCst);
        sqlx::query("UPDATE vendors SET contact_phone = $1 WHERE trade = 'bench-latency'")
            .bind(round.to_string())
            .execute(pool)
            .await?;
        let target = (round + 1) * n;
        let deadline = Instant::now() + Duration::from_secs(30);
        while received.load(Ordering::SeqCst) < target && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    for t in tasks {
        t.abort();
    }
    sqlx::query("DELETE FROM vendors WHERE trade = 'bench-latency'")
        .execute(pool)
        .await?;
    let mut v = samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
    v.sort_by(|a, b| a.total_cmp(b));
    Ok(v)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let app = args
        .get(1)
        .ok_or("usage: turns-shape-bench <turns-app binary>")?
        .clone();
    let quick = args.iter().any(|a| a == "--quick");
    let dir = std::path::absolute("target/shape-bench")?;
    let BenchDatabase { cluster, url, pool } = bench_database(&dir, 10).await?;
    let today = chrono::Utc::now().date_naive();
    let turns = if quick { 10_000 } else { 100_000 };
    generate(
        &pool,
        &GenerateOptions {
            properties: turns / 10,
            turns,
            managers: 10,
            seed: 7,
        },
        today,
    )
    .await
    .map_err(|e| e.to_string())?;

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut server = start_app(
        &app,
        &url,
        &addr,
        &[("SHAPE_SECRET", SECRET), ("SHAPE_LONG_POLL_SECS", "60")],
        &dir.join("server.log"),
    )
    .await?;
    let pid = server.id();
    let mut out = String::new();

    // Snapshot of the whole turns table against COPY of the same rows.
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM turns")
        .fetch_one(&pool)
        .await?;
    // Each run a fresh snapshot: clients asking for one definition within 30 s share one, so
    // the three runs ask for three definitions (an always-true filter on a NOT NULL column, which
    // costs a little: the figure errs low). A shared snapshot is measured apart.
    let mut snap_s = f64::MAX;
    let mut copy_s = f64::MAX;
    let mut shared_s = f64::MAX;
    for column in ["turn_id", "stage_id", "property_id"] {
        let shape = shape_url(
            "turns",
            Some(&format!("{column} IS NOT NULL")),
            "&offset=-1",
        );
        let t = Instant::now();
        let r = get(&addr, &shape).await?;
        snap_s = snap_s.min(t.elapsed().as_secs_f64());
        assert_eq!(
            r.body.matches("\"key\"").count() as i64,
            rows,
            "snapshot row count"
        );
        let t = Instant::now();
        let again = get(&addr, &shape).await?;
        shared_s = shared_s.min(t.elapsed().as_secs_f64());
        assert_eq!(again.body.len(), r.body.len(), "shared snapshot");
        let t = Instant::now();
        let status = Command::new("psql")
            .arg(&url)
            .args(["-qAt", "-c", "COPY (SELECT * FROM turns) TO STDOUT"])
            .stdout(Stdio::null())
            .status()?;
        copy_s = copy_s.min(t.elapsed().as_secs_f64());
        assert!(status.success());
    }
    out.push_str(&format!(
        "| snapshot of {rows} rows, fresh (`/v1/shape?offset=-1`, JSON) vs `COPY (SELECT * FROM turns) TO STDOUT` (psql) | {:.0} rows/s vs {:.0} rows/s | {:.2}× | ≥ 0.8× | {} |\n",
        rows as f64 / snap_s,
        rows as f64 / copy_s,
        copy_s / snap_s,
        met(copy_s / snap_s >= 0.8)
    ));
    out.push_str(&format!(
        "| the same snapshot for another client within 30 s (shared) | {:.0} rows/s | {:.2}× COPY | | |\n",
        rows as f64 / shared_s,
        copy_s / shared_s,
    ));

    // Write → received, every client waiting live before each write.
    for n in [1usize, 100, 1000] {
        let rounds = if n >= 1000 { 10 } else { 30 };
        let v = latency(&addr, &pool, n, rounds).await?;
        let (p50, p99) = (percentile(&v, 0.5), percentile(&v, 0.99));
        out.push_str(&format!(
            "| write → change received, {n} live client(s) ({} of {} samples) | p50 {p50:.1} ms, p99 {p99:.1} ms | | p50 ≤ 10 ms, p99 ≤ 25 ms (at 1,000) | {} |\n",
            v.len(),
            n * rounds,
            met(v.len() == n * rounds && p50 <= 10.0 && p99 <= 25.0)
        ));
    }

    // Throughput: 1,000 shapes `wo_number = const`, pgbench single-row updates committing.
    let shapes = 1000usize;
    sqlx::query("UPDATE turns SET wo_number = 'B-' || n FROM (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM turns LIMIT 1000) x WHERE turns.id = x.id")
        .execute(&pool)
        .await?;
    let delivered = Arc::new(AtomicUsize::new(0));
    let mut followers = Vec::new();
    for i in 0..shapes {
        let base = shape_url(
            "turns",
            Some(&format!("wo_number = 'B-{i}'")),
            "&columns=id,turn_amount",
        );
        let mut client = Client::new(&addr);
        let (handle, mut offset) = follow_to_now(&mut client, &base).await?;
        let delivered = delivered.clone();
        followers.push(tokio::spawn(async move {
            loop {
                let Ok(r) = client
                    .get(&format!("{base}&handle={handle}&offset={offset}&live=true"))
                    .await
                else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                if let Some(o) = r.headers.get("electric-offset") {
                    offset = o.clone();
                }
                delivered.fetch_add(r.body.matches("\"operation\"").count(), Ordering::SeqCst);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // pgbench finds its row by work order number: index it, as a real lookup would be.
    sqlx::query("CREATE INDEX bench_turns_wo ON turns (wo_number)")
        .execute(&pool)
        .await?;
    let script = dir.join("update.sql");
    std::fs::write(
        &script,
        "\\set i random(0, 999)\nUPDATE turns SET turn_amount = :i WHERE wo_number = 'B-' || :i;\n",
    )?;
    let secs = if quick { 5 } else { 10 };
    let t0 = Instant::now();
    let bench = Command::new("pgbench")
        .args(["-n", "-c", "4", "-j", "2", "-T", &secs.to_string(), "-f"])
        .arg(&script)
        .arg(&url)
        .output()?;
    let text = String::from_utf8_lossy(&bench.stdout);
    let committed: usize = text
        .lines()
        .find(|l| l.contains("number of transactions actually processed"))
        .and_then(|l| {
            l.split(':')
                .nth(1)?
                .trim()
                .split('/')
                .next()?
                .trim()
                .parse()
                .ok()
        })
        .ok_or_else(|| {
            format!(
                "pgbench output: {text}{}",
                String::from_utf8_lossy(&bench.stderr)
            )
        })?;
    let pgbench_secs = t0.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(120);
    while delivered.load(Ordering::SeqCst) < committed && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let done_secs = t0.elapsed().as_secs_f64();
    let got = delivered.load(Ordering::SeqCst);
    for f in followers {
        f.abort();
    }
    let commit_rate = committed as f64 / pgbench_secs;
    let deliver_rate = got as f64 / done_secs;
    out.push_str(&format!(
        "| change throughput, {shapes} shapes `wo_number = const`, pgbench committing single-row updates ({committed} in {pgbench_secs:.1} s) | {deliver_rate:.0} changes/s delivered ({got} of {committed} in {done_secs:.1} s) vs {commit_rate:.0} commits/s | {:.2}× | ≥ 10,000/s and ≥ 0.9× | {} |\n",
        deliver_rate / commit_rate,
        met(deliver_rate >= 10_000.0 && deliver_rate / commit_rate >= 0.9)
    ));

    // Memory per waiting live request.
    let held = if quick { 2000 } else { 10_000 };
    let base = shape_url("vendors", None, "");
    let (handle, offset) = follow_to_now(&mut Client::new(&addr), &base).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_kb(pid);
    let mut conns = Vec::with_capacity(held);
    for _ in 0..held {
        let mut s = tokio::net::TcpStream::connect(&addr).await?;
        tokio::io::AsyncWriteExt::write_all(&mut s, format!("GET {base}&handle={handle}&offset={offset}&live=true HTTP/1.1\r\nHost: bench\r\n\r\n").as_bytes())
            .await?;
        conns.push(s);
    }
    let metrics = loop {
        let m = get(&addr, &format!("/metrics?secret={SECRET}")).await?;
        let waiting: usize = m
            .body
            .lines()
            .find(|l| l.starts_with("turns_shape_live_requests_waiting "))
            .and_then(|l| l.split(' ').nth(1)?.parse().ok())
            .unwrap_or(0);
        if waiting >= held {
            break waiting;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kb(pid);
    drop(conns);
    let per_request_kb = (after.saturating_sub(before)) as f64 / held as f64;
    out.push_str(&format!(
        "| server memory per waiting live request ({metrics} held; RSS {} MB → {} MB) | {:.1} KB | | ≤ 16 KB | {} |\n",
        before / 1024,
        after / 1024,
        per_request_kb,
        met(per_request_kb <= 16.0)
    ));

    let _ = server.kill();
    let _ = server.wait();
    pool.close().await;
    tokio::task::spawn_blocking(move || cluster.stop()).await?;
    print!("{out}");
    Ok(())
}
