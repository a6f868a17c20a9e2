//! Pool, migrations, and the database behind it (managed, or our private cluster).
use crate::config::Config;
use crate::pg::{ClusterOptions, LocalPostgres, PgError};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use std::str::FromStr;
use std::time::Duration;

/// Migrations from `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Cluster(#[from] PgError),
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// The database the app runs on; owns the private cluster if we started one.
pub struct Database {
    pub pool: PgPool,
    pub url: String,
    pub cluster: Option<LocalPostgres>,
}

impl Database {
    /// Connect to `DATABASE_URL`, or start the private cluster and create its `turns` database.
    pub async fn open(config: &Config) -> Result<Self, DbError> {
        let (url, cluster) = match &config.database_url {
            Some(url) => (url.clone(), None),
            None => {
                let opts = ClusterOptions {
                    dir: config.data_dir.join("postgres"),
                    port: config.pg_port,
                    durable: true,
                };
                let cluster = tokio::task::spawn_blocking(move || LocalPostgres::start(&opts))
                    .await
                    .map_err(|e| PgError::Failed(format!("start task: {e}")))??;
                create_database_if_missing(&cluster.url("postgres"), "turns").await?;
                (cluster.url("turns"), Some(cluster))
            }
        };
        let pool = connect(&url, config.max_db_connections).await?;
        MIGRATOR.run(&pool).await?;
        Ok(Database { pool, url, cluster })
    }

    /// Close the pool, then stop the private cluster (if any) cleanly.
    pub async fn close(self) {
        self.pool.close().await;
        if let Some(cluster) = self.cluster {
            let _ = tokio::task::spawn_blocking(move || cluster.stop()).await;
        }
    }
}

pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let opts = PgConnectOptions::from_str(url)?
        .log_statements(log::LevelFilter::Trace)
        .log_slow_statements(log::LevelFilter::Warn, Duration::from_millis(500));
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(opts)
        .await
}

pub async fn create_database_if_missing(admin_url: &str, name: &str) -> Result<(), sqlx::Error> {
    let mut conn = PgConnectOptions::from_str(admin_url)?.connect().await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        // Identifiers cannot be bound; `name` comes from our code, quoted all the same.
        sqlx::query(&format!(
            "CREATE DATABASE \"{}\"",
            name.replace('"', "\"\"")
        ))
        .execute(&mut conn)
        .await?;
    }
    Ok(())
}
