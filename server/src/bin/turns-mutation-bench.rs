//! Outbox drain throughput: authorized, audited, idempotent mutations per second through the
//! server's write path (`turns_server::mutations::apply`: receipt, row lock, policy, field check,
//! update, audit row, stored outcome, txid), against `pgbench` running single-row updates on the
//! same table with the same number of clients, in the same run, on a private durable cluster.
//!
//! `turns-mutation-bench [--quick]` prints one Markdown table row per measurement.
use chrono::Utc;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use turns::mutation::{Change, Edit, Mutation, Outcome, TurnEdit};
use turns::{Actor, Role};
use turns_server::generate::{generate, GenerateOptions};
use turns_server::mutations::{apply, apply_batch};
use turns_server::testing::{bench_database, BenchDatabase};
use uuid::Uuid;

type Error = Box<dyn std::error::Error + Send + Sync>;

const CLIENTS: usize = 4;
/// As the browser's outbox sends them.
const BATCH: usize = 50;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Error> {
    let quick = std::env::args().any(|a| a == "--quick");
    let secs = if quick { 5 } else { 10 };
    let dir = std::path::absolute("target/mutation-bench")?;
    let BenchDatabase { cluster, url, pool } = bench_database(&dir, (CLIENTS * 2) as u32).await?;
    let today = Utc::now().date_naive();
    generate(
        &pool,
        &GenerateOptions {
            properties: 400,
            turns: 4000,
            managers: 1,
            seed: 11,
        },
        today,
    )
    .await
    .map_err(|e| e.to_string())?;
    // The PM with the most turns edits their own turns, as their outbox would.
    let pm: Uuid = sqlx::query_scalar(
        "SELECT property_manager_id FROM turns WHERE is_active
          GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await?;
    let actor = Actor {
        user_id: pm,
        role: Role::PropertyManager,
        vendor_id: None,
    };
    let turns: Vec<(Uuid, Option<String>)> = sqlx::query_as(
        "SELECT id, wo_number FROM turns WHERE is_active AND property_manager_id = $1 ORDER BY id",
    )
    .bind(pm)
    .fetch_all(&pool)
    .await?;
    sqlx::query(
        "CREATE TABLE bench_ids AS
         SELECT row_number() OVER (ORDER BY id) AS n, id FROM turns
          WHERE is_active AND property_manager_id = $1",
    )
    .bind(pm)
    .execute(&pool)
    .await?;
    sqlx::query("CREATE UNIQUE INDEX ON bench_ids (n)")
        .execute(&pool)
        .await?;

    // Baseline: pgbench, single-row updates of the same turns, same clients.
    let script = dir.join("update.sql");
    std::fs::write(
        &script,
        format!(
            "\\set i random(1, {})\nUPDATE turns SET wo_number = 'P-' || :i WHERE id = (SELECT id FROM bench_ids WHERE n = :i);\n",
            turns.len()
        ),
    )?;
    let out = Command::new("pgbench")
        .args([
            "-n",
            "-c",
            &CLIENTS.to_string(),
            "-j",
            "2",
            "-T",
            &secs.to_string(),
            "-f",
        ])
        .arg(&script)
        .arg(&url)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let tps: f64 = text
        .lines()
        .find(|l| l.starts_with("tps"))
        .and_then(|l| l.split('=').nth(1)?.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("pgbench: {text}{}", String::from_utf8_lossy(&out.stderr)))?;
    // pgbench changed work orders: start from what is there now.
    let turns: Vec<(Uuid, Option<String>)> = sqlx::query_as(
        "SELECT id, wo_number FROM turns WHERE is_active AND property_manager_id = $1 ORDER BY id",
    )
    .bind(pm)
    .fetch_all(&pool)
    .await?;

    // Ours: each client drains its own share of the turns (no two clients edit one row).
    let applied = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let mut mine: Vec<(Uuid, Option<String>)> =
            turns.iter().skip(c).step_by(CLIENTS).cloned().collect();
        let (pool, applied) = (pool.clone(), applied.clone());
        tasks.push(tokio::spawn(async move {
            // Batches of the outbox's size, each edit on another of this client's turns.
            let mut n = 0usize;
            let mut last = None;
            while Instant::now() < deadline {
                let mut batch = Vec::with_capacity(BATCH);
                for _ in 0..BATCH {
                    let i = n % mine.len();
                    let to = Some(format!("M-{c}-{n}"));
                    batch.push(Mutation {
                        id: Uuid::new_v4(),
                        base_version: None,
                        device_time: Utc::now(),
                        change: Change::EditTurn {
                            turn: mine[i].0,
                            edits: vec![TurnEdit::WoNumber(Edit {
                                from: mine[i].1.clone(),
                                to: to.clone(),
                            })],
                        },
                    });
                    mine[i].1 = to;
                    n += 1;
                }
                for outcome in apply_batch(&pool, &actor, &batch).await? {
                    match outcome {
                        Outcome::Applied { txid: Some(_) } => {
                            applied.fetch_add(1, Ordering::Relaxed);
                        }
                        other => return Err(format!("not applied: {other:?}").into()),
                    }
                }
                last = batch.pop();
            }
            Ok::<_, Error>(last)
        }));
    }
    let mut replays = Vec::new();
    for t in tasks {
        replays.extend(t.await??);
    }
    let secs_taken = t0.elapsed().as_secs_f64();
    let done = applied.load(Ordering::Relaxed);
    let rate = done as f64 / secs_taken;
    // Sanity: replaying applies nothing, and every applied mutation left one audit row.
    for m in &replays {
        apply(&pool, &actor, m).await?;
    }
    let audits: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_logs WHERE actor_id = $1")
        .bind(pm)
        .fetch_one(&pool)
        .await?;
    if audits as usize != done {
        return Err(format!("{done} applied but {audits} audit rows").into());
    }
    let ratio = rate / tps;
    println!(
        "| outbox drain: authorized, audited, idempotent edits in batches of {BATCH} ({CLIENTS} clients, {secs} s, {done} applied, replays checked) vs pgbench single-row updates ({CLIENTS} clients) | {rate:.0}/s vs {tps:.0} TPS | {ratio:.2}× | ≥ 0.5× | {} |",
        if ratio >= 0.5 { "yes" } else { "no" }
    );
    drop(pool);
    drop(cluster);
    Ok(())
}
