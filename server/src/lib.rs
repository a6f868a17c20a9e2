//! The Turns server library: configuration, the database (and the private cluster for
//! development), authentication, policy-scoped queries, demo and benchmark data, and the plain
//! HTTP routes. No Leptos here: the `turns-app` crate adds the pages and server functions on top.
pub mod auth;
pub mod authorized_shapes;
pub mod config;
pub mod db;
pub mod error;
pub mod export;
pub mod files;
pub mod generate;
pub mod http;
pub mod inbox;
pub mod kpi;
pub mod live_sessions;
pub mod mutations;
pub mod pg;
pub mod photos;
pub mod queries;
pub mod seed;
pub mod serve;
pub mod shapes;
pub mod testing;

use std::sync::Arc;

/// What every handler and server function can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: sqlx::PgPool,
    pub config: Arc<config::Config>,
    pub limiter: Arc<auth::LoginLimiter>,
    /// Per-session budgets of live shape requests, and sessions that ended.
    pub live: Arc<live_sessions::LiveSessions>,
    /// The shape server, once its change stream runs.
    pub shapes: Option<Arc<shapes::ShapeServer>>,
    /// Where photos are kept.
    pub files: Arc<files::Files>,
}

impl AppState {
    pub fn new(pool: sqlx::PgPool, config: config::Config) -> Self {
        let files = files::Files::new(config.file_store.clone(), config.data_dir.join("files"));
        AppState {
            files: Arc::new(files),
            pool,
            config: Arc::new(config),
            limiter: Arc::new(auth::LoginLimiter::default()),
            live: Arc::new(live_sessions::LiveSessions::default()),
            shapes: None,
        }
    }

    /// Open the shape server on this database and start its replication consumer.
    pub async fn start_shapes(mut self, database_url: &str) -> Result<Self, shapes::ShapeError> {
        let server = shapes::ShapeServer::open(self.pool.clone(), self.config.long_poll).await?;
        // The slot must exist before the first snapshot, or changes in between would be missed.
        let slot = shapes::wal::slot_name(&self.pool).await?;
        shapes::wal::ensure_slot(&server, &slot)
            .await
            .map_err(|e| shapes::ShapeError::Db(sqlx::Error::Protocol(e.to_string())))?;
        server.set_consumer(shapes::leader::spawn(
            server.clone(),
            database_url.to_string(),
        ));
        self.live.listen(self.pool.clone());
        let housekeeping = server.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(300));
            loop {
                every.tick().await;
                let week = std::time::Duration::from_secs(7 * 24 * 3600);
                if let Err(e) = housekeeping.maintain(week, 1_000_000).await {
                    tracing::warn!(error = %e, "shape housekeeping failed");
                }
            }
        });
        self.shapes = Some(server);
        Ok(self)
    }
}

/// `tracing` to stderr, filtered by `RUST_LOG` (default: info for our crates).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,sqlx=warn,tower_http=info".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}
