//! Generate a large data set for benchmarks.
//!
//! `cargo run --release -p turns-server --bin turns-generate -- --properties 10000 --turns 100000 --managers 10`
//! Uses `DATABASE_URL`, or the private cluster in `TURNS_DATA_DIR` like the app.
use turns_server::config::Config;
use turns_server::db::Database;
use turns_server::generate::{generate, GenerateOptions};
use turns_server::seed::seed_demo_if_empty;

fn arg(args: &[String], name: &str, default: usize) -> Result<usize, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{name} needs a number")),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    turns_server::init_tracing();
    let args: Vec<String> = std::env::args().collect();
    let opts = GenerateOptions {
        properties: arg(&args, "--properties", 10_000)?,
        turns: arg(&args, "--turns", 100_000)?,
        managers: arg(&args, "--managers", 10)?,
        seed: arg(&args, "--seed", 1)? as u64,
    };
    let config = Config::from_env()?;
    let db = Database::open(&config).await?;
    let today = chrono::Utc::now().date_naive();
    seed_demo_if_empty(&db.pool, today).await?;
    let report = generate(&db.pool, &opts, today).await;
    db.close().await;
    let report = report?;
    println!(
        "generated {} users, {} properties, {} turns ({} open) in {:.2} s: {:.0} rows/s",
        report.users,
        report.properties,
        report.turns,
        report.open_turns,
        report.elapsed.as_secs_f64(),
        report.rows_per_sec()
    );
    println!(
        "first generated PM: {} (password: {})",
        report.first_manager,
        turns_server::seed::DEMO_PASSWORD
    );
    Ok(())
}
