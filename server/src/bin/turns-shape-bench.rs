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

use turns::shape_follower::Step;
use turns_server::testing::http::{follow, follow_to_now, get, rss_kb, start_app, Client, Error};
use turns_server::testing::nginx::Nginx;

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

/// The rounds a response carries: run `run` writes its round `r` as the turn's
/// `wo_number = '{run}-{r}'` (a client that starts from a cached snapshot replays earlier runs'
/// writes: those are not this run's rounds).
fn rounds_in(body: &str, run: usize) -> Vec<usize> {
    let Ok(serde_json::Value::Array(messages)) = serde_json::from_str(body) else {
        return Vec::new();
    };
    let prefix = format!("{run}-");
    messages
        .iter()
        .filter(|m| m["headers"]["operation"].is_string())
        .filter_map(|m| {
            m["value"]["wo_number"]
                .as_str()?
                .strip_prefix(&prefix)?
                .parse()
                .ok()
        })
        .collect()
}

/// A results-table row, printed as soon as it is measured (a later phase's failure keeps the
/// earlier rows).
fn emit(row: &str) {
    use std::io::Write;
    print!("{row}");
    let _ = std::io::stdout().flush();
}

/// Latency runs so far (each writes its own round markers).
static RUNS: AtomicUsize = AtomicUsize::new(0);

/// The app, stopped however the benchmark ends (an orphan would hold the terminal's pipes).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The naive reference server (`tools/naive-baseline.mjs`): Postgres LISTEN/NOTIFY straight to
/// every waiting long-poll, no shapes, no auth, no log. Its trigger is on `turns` while it runs.
struct NaiveServer {
    child: std::process::Child,
    addr: &'static str,
}

impl NaiveServer {
    async fn start(url: &str, pool: &sqlx::PgPool) -> Result<NaiveServer, Error> {
        sqlx::raw_sql(
            "CREATE FUNCTION bench_notify() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
               PERFORM pg_notify('turns', json_build_object('id', NEW.id, 'turn_id', NEW.turn_id,
                 'wo_number', NEW.wo_number)::text); RETURN NEW; END $$;
             CREATE TRIGGER bench_notify AFTER UPDATE ON turns
               FOR EACH ROW EXECUTE FUNCTION bench_notify();",
        )
        .execute(pool)
        .await?;
        let child = Command::new("node")
            .arg("tools/naive-baseline.mjs")
            .arg(url)
            .stdout(Stdio::null())
            .spawn()?;
        let server = NaiveServer {
            child,
            addr: "127.0.0.1:3999",
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(server.addr).await.is_err() {
            if Instant::now() > deadline {
                return Err("the naive server did not start (npm ci in tools/?)".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(server)
    }

    async fn stop(mut self, pool: &sqlx::PgPool) -> Result<(), Error> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        sqlx::raw_sql("DROP TRIGGER bench_notify ON turns; DROP FUNCTION bench_notify();")
            .execute(pool)
            .await?;
        Ok(())
    }
}

/// Who serves the clients of a latency run.
struct Target<'a> {
    /// Where the clients connect.
    addr: &'a str,
    /// The shape's URL without protocol position (`offset`, `handle`, …).
    base: String,
    /// A server whose waiting gauge counts the parked requests; without one (the naive server,
    /// or a proxy that holds most requests itself), a write waits for every client to have sent
    /// its request and then a settling time.
    gauge: Option<&'a str>,
}

/// Write → received latency (ms) for `n` clients waiting live on one turn. Each round's write
/// is made only once every client has its live request parked (see [`Target::gauge`]), and
/// each sample is measured from the moment just before the write of the round the message
/// carries: client set-up and a client still busy with an earlier round never count.
async fn latency(
    target: &Target<'_>,
    pool: &sqlx::PgPool,
    turn: uuid::Uuid,
    n: usize,
    rounds: usize,
) -> Result<Vec<f64>, Error> {
    let run = RUNS.fetch_add(1, Ordering::SeqCst);
    // The row exists before anyone follows: it is in every client's snapshot, not a change.
    sqlx::query("UPDATE turns SET wo_number = 'start' WHERE id = $1")
        .bind(turn)
        .execute(pool)
        .await?;
    let start = Instant::now();
    let written_at: Arc<Vec<AtomicU64>> =
        Arc::new((0..rounds).map(|_| AtomicU64::new(u64::MAX)).collect());
    let received = Arc::new(AtomicUsize::new(0));
    let asking = Arc::new(AtomicUsize::new(0));
    let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let mut client = Client::new(target.addr);
        let mut follower = follow_to_now(&mut client, &target.base).await?;
        let base = target.base.clone();
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
                // Live, with the server's cursor (as the Electric client does: a proxy then sees
                // one URL for everyone).
                let reply = follow(&mut client, &base, &mut follower).await;
                asking.fetch_sub(1, Ordering::SeqCst);
                let r = match reply {
                    Ok((Step::Changes(_), r)) => r,
                    Ok((step, r)) => {
                        eprintln!("live request: {step:?} (status {}): {}", r.status, r.body);
                        return;
                    }
                    Err(e) => {
                        eprintln!("live request: {e}");
                        return;
                    }
                };
                let now = start.elapsed().as_nanos() as u64;
                for round in rounds_in(&r.body, run) {
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
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if Instant::now() > deadline {
                return Err(format!(
                    "{}: round {round}: {} of {n} clients asking",
                    target.addr,
                    asking.load(Ordering::SeqCst)
                )
                .into());
            }
            if asking.load(Ordering::SeqCst) == n {
                match target.gauge {
                    // Every client parked in a live request, as the server counts them (other
                    // phases' requests are gone: their connections closed).
                    Some(server) if live_waiting(server).await? >= n as i64 => break,
                    Some(_) => {}
                    None => {
                        tokio::time::sleep(Duration::from_millis(20 + n as u64 / 50)).await;
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        written_at[round].store(start.elapsed().as_nanos() as u64, Ordering::SeqCst);
        sqlx::query("UPDATE turns SET wo_number = $1 WHERE id = $2")
            .bind(format!("{run}-{round}"))
            .bind(turn)
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
    let mut v = samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
    v.sort_by(|a, b| a.total_cmp(b));
    Ok(v)
}

/// One latency row of the results table.
fn latency_row(who: &str, n: usize, rounds: usize, v: &[f64], goal: bool) -> String {
    eprintln!(
        "{who}, {n} clients: p50 {:.1} ms, p99 {:.1} ms",
        percentile(v, 0.5),
        percentile(v, 0.99)
    );
    let (p50, p99) = (percentile(v, 0.5), percentile(v, 0.99));
    let (goal_text, ok) = if goal {
        (
            "p50 ≤ 10 ms, p99 ≤ 25 ms (at 1,000)",
            met(v.len() == n * rounds && p50 <= 10.0 && p99 <= 25.0),
        )
    } else {
        ("", "")
    };
    format!(
        "| write → change received, {n} live client(s), {who} ({} of {} samples) | p50 {p50:.1} ms, p99 {p99:.1} ms | | {goal_text} | {ok} |\n",
        v.len(),
        n * rounds,
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let app = args
        .get(1)
        .ok_or("usage: turns-shape-bench <turns-app binary>")?
        .clone();
    let quick = args.iter().any(|a| a == "--quick");
    // `--only latency,throughput,…` runs some phases (for profiling one); `--clients 1000,5000`
    // sets the live-client counts of the latency phase.
    let value_of = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let only = value_of("--only");
    let phase = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|p| p == name))
    };
    let client_counts: Vec<usize> = match value_of("--clients") {
        Some(list) => list
            .split(',')
            .map(|n| n.trim().parse().map_err(|_| format!("--clients: {n:?}")))
            .collect::<Result<_, _>>()?,
        None if quick => vec![1, 100, 1000],
        None => vec![1, 100, 1000, 5000],
    };
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
    let server = KillOnDrop(
        start_app(
            &app,
            &url,
            &addr,
            &[("SHAPE_SECRET", SECRET), ("SHAPE_LONG_POLL_SECS", "60")],
            &dir.join("server.log"),
        )
        .await?,
    );
    let pid = server.0.id();

    if phase("snapshot") {
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
        emit(&format!(
            "| snapshot of {rows} rows, fresh (`/v1/shape?offset=-1`, JSON) vs `COPY (SELECT * FROM turns) TO STDOUT` (psql) | {:.0} rows/s vs {:.0} rows/s | {:.2}× | ≥ 0.8× | {} |\n",
            rows as f64 / snap_s,
            rows as f64 / copy_s,
            copy_s / snap_s,
            met(copy_s / snap_s >= 0.8)
        ));
        emit(&format!(
            "| the same snapshot for another client within 30 s (shared) | {:.0} rows/s | {:.2}× COPY | | |\n",
            rows as f64 / shared_s,
            copy_s / shared_s,
        ));
    }

    // The turn every latency run writes to, followed by one shape (`id = …`).
    let turn: uuid::Uuid = sqlx::query_scalar("SELECT id FROM turns ORDER BY id LIMIT 1")
        .fetch_one(&pool)
        .await?;
    let one_turn = shape_url("turns", Some(&format!("id = '{turn}'")), "");
    // `--rounds N` sets the writes per latency run (more for profiling the live path).
    let rounds: Option<usize> = value_of("--rounds").and_then(|r| r.parse().ok());
    let rounds_for = |n: usize| rounds.unwrap_or(if n >= 1000 { 10 } else { 30 });
    if phase("latency") {
        // Write → received, every client waiting live before each write.
        for &n in &client_counts {
            let target = Target {
                addr: &addr,
                base: one_turn.clone(),
                gauge: Some(&addr),
            };
            let v = latency(&target, &pool, turn, n, rounds_for(n)).await?;
            emit(&latency_row("direct", n, rounds_for(n), &v, n == 1000));
        }
    }
    if phase("nginx") {
        // The same through the caching proxy of deploy/nginx.conf.
        let nginx = Nginx::start(&dir.join("nginx"), &addr).await?;
        for &n in &client_counts {
            let target = Target {
                addr: nginx.addr(),
                base: one_turn.clone(),
                gauge: None,
            };
            let v = latency(&target, &pool, turn, n, rounds_for(n)).await?;
            emit(&latency_row("through nginx", n, rounds_for(n), &v, false));
        }
    }
    if phase("follower") {
        // Two more instances on the same database (three in all): they follow the first's stored
        // log (the first leads: it holds the replication slot), so their clients wait for the
        // durable write too. The clients are on one follower.
        let mut followers = Vec::new();
        for i in 0..2 {
            let addr = format!(
                "127.0.0.1:{}",
                std::net::TcpListener::bind("127.0.0.1:0")?
                    .local_addr()?
                    .port()
            );
            let child = start_app(
                &app,
                &url,
                &addr,
                &[("SHAPE_SECRET", SECRET), ("SHAPE_LONG_POLL_SECS", "60")],
                &dir.join(format!("follower-{i}.log")),
            )
            .await?;
            followers.push((KillOnDrop(child), addr));
        }
        let follower_addr = followers[0].1.clone();
        let health = get(&follower_addr, "/v1/health").await?;
        if !health.body.contains("\"follower\"") {
            return Err(format!("the second instance is not a follower: {}", health.body).into());
        }
        for &n in &client_counts {
            let target = Target {
                addr: &follower_addr,
                base: one_turn.clone(),
                gauge: Some(&follower_addr),
            };
            let v = latency(&target, &pool, turn, n, rounds_for(n)).await?;
            emit(&latency_row(
                "on a follower (3 instances)",
                n,
                rounds_for(n),
                &v,
                false,
            ));
        }
    }
    if phase("naive") {
        // The naive LISTEN/NOTIFY server (tools/naive-baseline.mjs) on the same row and writes.
        let naive = NaiveServer::start(&url, &pool).await?;
        let base = format!("/v1/shape?table=turns&where=id%20%3D%20%27{turn}%27");
        for &n in &client_counts {
            let target = Target {
                addr: naive.addr,
                base: base.clone(),
                gauge: None,
            };
            let v = latency(&target, &pool, turn, n, rounds_for(n)).await?;
            emit(&latency_row(
                "naive Node server",
                n,
                rounds_for(n),
                &v,
                false,
            ));
        }
        naive.stop(&pool).await?;
    }

    if phase("throughput") {
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
            let mut follower = follow_to_now(&mut client, &base).await?;
            let delivered = delivered.clone();
            followers.push(tokio::spawn(async move {
                loop {
                    match follow(&mut client, &base, &mut follower).await {
                        Ok((Step::Changes(b), _)) => {
                            delivered.fetch_add(b.changes.len(), Ordering::SeqCst);
                        }
                        _ => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        // pgbench finds its row by work order number: index it, as a real lookup would be.
        sqlx::query("CREATE INDEX bench_turns_wo ON turns (wo_number)")
            .execute(&pool)
            .await?;
        // Single-row transactions, then ten rows (ten shapes) per transaction.
        let ten: Vec<String> = (0..10)
            .map(|k| format!("'B-' || (:i * 10 + {k})"))
            .collect();
        let scripts = [
            (
                "single-row updates",
                1usize,
                "\\set i random(0, 999)\nUPDATE turns SET turn_amount = :i WHERE wo_number = 'B-' || :i;\n".to_string(),
            ),
            (
                "10-row updates",
                10,
                format!(
                    "\\set i random(0, 99)\nUPDATE turns SET turn_amount = :i WHERE wo_number IN ({});\n",
                    ten.join(", ")
                ),
            ),
        ];
        let secs = if quick { 5 } else { 10 };
        for (what, rows_per_tx, script_text) in scripts {
            let script = dir.join("update.sql");
            std::fs::write(&script, script_text)?;
            delivered.store(0, Ordering::SeqCst);
            let t0 = Instant::now();
            let bench = Command::new("pgbench")
                .args(["-n", "-c", "4", "-j", "2", "-T", &secs.to_string(), "-f"])
                .arg(&script)
                .arg(&url)
                .output()?;
            let text = String::from_utf8_lossy(&bench.stdout);
            let transactions: usize = text
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
            let committed = transactions * rows_per_tx;
            let pgbench_secs = t0.elapsed().as_secs_f64();
            let deadline = Instant::now() + Duration::from_secs(120);
            while delivered.load(Ordering::SeqCst) < committed && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let done_secs = t0.elapsed().as_secs_f64();
            let got = delivered.load(Ordering::SeqCst);
            let commit_rate = committed as f64 / pgbench_secs;
            let deliver_rate = got as f64 / done_secs;
            let ratio = deliver_rate / commit_rate;
            eprintln!(
                "throughput, {what}: {deliver_rate:.0} rows/s delivered, {ratio:.2}× pgbench"
            );
            let (goal, ok) = if rows_per_tx == 1 {
                ("≥ 0.95×", ratio >= 0.95)
            } else {
                (
                    "≥ 0.95× and ≥ 10,000 rows/s",
                    ratio >= 0.95 && deliver_rate >= 10_000.0,
                )
            };
            emit(&format!(
                "| change throughput, {shapes} shapes `wo_number = const`, pgbench committing {what} ({transactions} transactions, {committed} rows in {pgbench_secs:.1} s) | {deliver_rate:.0} row changes/s delivered ({got} of {committed} in {done_secs:.1} s) vs {commit_rate:.0} rows/s committed | {ratio:.2}× | {goal} | {} |\n",
                met(ok)
            ));
        }
        for f in followers {
            f.abort();
        }
    }

    if phase("memory") {
        // Memory per waiting live request: the RSS a second batch of `held` parked requests adds
        // on top of a first (so that one-time costs — the allocator's and the runtime's first
        // growth, the shape's handle — are not counted per request).
        // 10,000 held in all (full run): two batches of 5,000, which keeps the load generator
        // and the server each under this machine's 20,000 open files.
        let held = if quick { 2000 } else { 5_000 };
        let base = shape_url("vendors", None, "");
        let live = follow_to_now(&mut Client::new(&addr), &base)
            .await?
            .query(None);
        let mut conns = Vec::with_capacity(2 * held);
        let mut rss = Vec::new();
        for batch in 1..=2 {
            for _ in 0..held {
                let mut s = tokio::net::TcpStream::connect(&addr).await?;
                tokio::io::AsyncWriteExt::write_all(
                    &mut s,
                    format!("GET {base}&{live} HTTP/1.1\r\nHost: bench\r\n\r\n").as_bytes(),
                )
                .await?;
                conns.push(s);
            }
            while live_waiting(&addr).await? < (batch * held) as i64 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            rss.push(rss_kb(pid));
        }
        drop(conns);
        let per_request_kb = rss[1].saturating_sub(rss[0]) as f64 / held as f64;
        let metrics = get(&addr, &format!("/metrics?secret={SECRET}")).await?;
        let future_bytes = metrics
            .body
            .lines()
            .find_map(|l| l.strip_prefix("turns_shape_request_future_bytes "))
            .unwrap_or("?")
            .trim()
            .to_string();
        emit(&format!(
            "| server memory per waiting live request (RSS with {held} parked {} MB, with {} parked {} MB; the request's future: {future_bytes} bytes) | {:.1} KB | | ≤ 8 KB | {} |\n",
            rss[0] / 1024,
            2 * held,
            rss[1] / 1024,
            per_request_kb,
            met(per_request_kb <= 8.0)
        ));
    }

    drop(server);
    pool.close().await;
    tokio::task::spawn_blocking(move || cluster.stop()).await?;
    Ok(())
}
