//! The Turns server library: configuration, the database (and the private cluster for
//! development), authentication, policy-scoped queries, demo and benchmark data, and the plain
//! HTTP routes. No Leptos here: the `turns-app` crate adds the pages and server functions on top.
pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod generate;
pub mod http;
pub mod pg;
pub mod queries;
pub mod seed;
pub mod testing;

use std::sync::Arc;

/// What every handler and server function can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: sqlx::PgPool,
    pub config: Arc<config::Config>,
    pub limiter: Arc<auth::LoginLimiter>,
}

impl AppState {
    pub fn new(pool: sqlx::PgPool, config: config::Config) -> Self {
        AppState {
            pool,
            config: Arc::new(config),
            limiter: Arc::new(auth::LoginLimiter::default()),
        }
    }
}

/// `tracing` to stderr, filtered by `RUST_LOG` (default: info for our crates).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,sqlx=warn,tower_http=info".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}
