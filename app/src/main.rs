//! The Turns server: start (or connect to) Postgres, migrate, load demo data once, serve.
use leptos::config::get_configuration;
use std::process::ExitCode;
use turns_app::server::router;
use turns_server::config::{bind_addr, Config};
use turns_server::db::Database;
use turns_server::seed::{seed_demo_if_empty, DEMO_LOGINS, DEMO_PASSWORD};
use turns_server::serve::Limits;
use turns_server::AppState;

/// mimalloc rather than glibc's malloc: under the soak (1,000 live clients, responses built on
/// one worker thread and freed on another, password checks on blocking threads) glibc's arenas
/// fragmented and the server's memory kept growing; mimalloc returns freed memory to the thread
/// that owns it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    turns_server::init_tracing();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("turns: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_env()?;
    let leptos_options = get_configuration(None)?.leptos_options;
    let addr = bind_addr(leptos_options.site_addr);

    if config.database_url.is_none() {
        tracing::info!(dir = %config.data_dir.display(), "DATABASE_URL unset: starting the private PostgreSQL cluster");
    }
    let db = Database::open(&config).await?;
    let today = chrono::Utc::now().date_naive();
    let demo = config.seed_demo;
    if demo && seed_demo_if_empty(&db.pool, today).await? {
        tracing::info!("loaded the demo data");
    }

    let state = AppState::new(db.pool.clone(), config);
    // A misconfigured file store stops the server now, not at the first photo.
    state.files.check().await?;
    let state = state.start_shapes(&db.url).await?;
    turns_server::inbox::spawn(
        state.pool.clone(),
        turns_server::inbox::Jobs {
            remind_every: state.config.remind_every,
            smtp_url: state.config.smtp_url.clone(),
            mail_from: state.config.mail_from.clone(),
        },
    )?;
    let shapes = state.shapes.clone();
    let live = state.live.clone();
    let app = router(state, leptos_options);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("\nTurns is running at http://{addr}");
    if demo {
        println!("Demo logins (password for all: {DEMO_PASSWORD}):");
        for (email, role) in DEMO_LOGINS {
            println!("  {:<24} {}", email, role.label());
        }
    }
    println!("Press Ctrl-C to stop.\n");

    turns_server::serve::serve(listener, app, Limits::default(), shutdown_signal()).await;
    tracing::info!("shutting down");
    if let Some(shapes) = shapes {
        shapes.stop();
    }
    live.stop();
    db.close().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
