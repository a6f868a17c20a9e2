//! Configuration from the environment (see `.env.example` for every variable).
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Config {
    /// A managed or existing Postgres; when unset a private cluster is started in `data_dir`.
    pub database_url: Option<String>,
    /// Where the private cluster and other local state live (git-ignored).
    pub data_dir: PathBuf,
    /// Fixed port for the private cluster (default: any free port).
    pub pg_port: Option<u16>,
    /// How long a session lasts after login.
    pub session_ttl: Duration,
    /// Mark the cookie `Secure` (set when served over https).
    pub secure_cookies: bool,
    /// Trust `X-Forwarded-For` for the client address (only behind a proxy you control).
    pub trust_proxy: bool,
    /// Load the demo data set (public passwords!) on start when the database has no users. Only
    /// the private development cluster does so by default; a real database needs `SEED_DEMO=true`.
    pub seed_demo: bool,
    pub max_db_connections: u32,
    /// Enables `GET /v1/shape` (any table/where) for trusted callers that send it; unset = off.
    pub shape_secret: Option<String>,
    /// How long a live shape request waits for changes.
    pub long_poll: Duration,
    /// A device keeps open turns and those completed in about this many days (at least this
    /// many; the bound moves weekly). Older history is read on demand.
    pub sync_completed_days: u32,
    /// Where photos are kept (`s3://bucket/prefix` or `file:///dir`); unset, `data_dir/files`.
    pub file_store: Option<String>,
    /// Notification emails go through this SMTP server (`smtp://host:port`,
    /// `smtps://user:pass@host`); unset, no email (the inbox still works).
    pub smtp_url: Option<String>,
    /// The sender of notification emails.
    pub mail_from: String,
    /// How often the inbox looks for approvals that wait and turns that are late.
    pub remind_every: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid {name}: {reason}")]
pub struct ConfigError {
    name: &'static str,
    reason: String,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Config::from_vars(|name| std::env::var(name).ok())
    }

    /// Configuration from named variables (`from_env` reads the process environment).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let database_url = var("DATABASE_URL");
        let ttl_hours: u64 = parse(var("SESSION_TTL_HOURS"), "SESSION_TTL_HOURS", 24 * 14)?;
        Ok(Config {
            seed_demo: parse(var("SEED_DEMO"), "SEED_DEMO", database_url.is_none())?,
            database_url,
            data_dir: var("TURNS_DATA_DIR").map_or_else(|| PathBuf::from(".data"), PathBuf::from),
            pg_port: var("TURNS_PG_PORT")
                .map(|v| parse(Some(v), "TURNS_PG_PORT", 0u16))
                .transpose()?,
            session_ttl: Duration::from_secs(ttl_hours * 3600),
            secure_cookies: parse(var("SECURE_COOKIES"), "SECURE_COOKIES", false)?,
            trust_proxy: parse(var("TRUST_PROXY"), "TRUST_PROXY", false)?,
            max_db_connections: parse(var("DB_MAX_CONNECTIONS"), "DB_MAX_CONNECTIONS", 20)?,
            shape_secret: var("SHAPE_SECRET"),
            long_poll: Duration::from_secs(parse(
                var("SHAPE_LONG_POLL_SECS"),
                "SHAPE_LONG_POLL_SECS",
                20,
            )?),
            sync_completed_days: parse(var("SYNC_COMPLETED_DAYS"), "SYNC_COMPLETED_DAYS", 90)?,
            file_store: var("FILE_STORE"),
            smtp_url: var("SMTP_URL"),
            mail_from: var("MAIL_FROM").unwrap_or_else(|| "Turns <turns@localhost>".into()),
            remind_every: Duration::from_secs(parse(
                var("REMIND_EVERY_SECS"),
                "REMIND_EVERY_SECS",
                300,
            )?),
        })
    }

    /// Defaults for tests: nothing from the environment.
    pub fn for_tests() -> Self {
        Config {
            database_url: None,
            data_dir: PathBuf::from(".data"),
            pg_port: None,
            session_ttl: Duration::from_secs(3600),
            secure_cookies: false,
            trust_proxy: false,
            seed_demo: false,
            max_db_connections: 5,
            shape_secret: None,
            long_poll: Duration::from_secs(20),
            sync_completed_days: 90,
            // Tests' photos go to the system's temporary directory, not the checkout.
            file_store: Some(format!(
                "file://{}",
                std::env::temp_dir().join("turns-test-files").display()
            )),
            smtp_url: None,
            mail_from: "Turns <turns@localhost>".into(),
            remind_every: Duration::from_secs(300),
        }
    }
}

fn parse<T: std::str::FromStr>(
    value: Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match value {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|e: T::Err| ConfigError {
            name,
            reason: format!("{v:?}: {e}"),
        }),
    }
}

/// The address to serve on: `LEPTOS_SITE_ADDR` (set by cargo-leptos) or `BIND_ADDR`.
pub fn bind_addr(default: SocketAddr) -> SocketAddr {
    std::env::var("BIND_ADDR")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Config {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_vars(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
            .expect("valid")
    }

    #[test]
    fn demo_accounts_load_by_default_only_on_the_private_cluster() {
        assert!(config(&[]).seed_demo, "embedded default: demo data");
        let real = [("DATABASE_URL", "postgres://db.example/turns")];
        assert!(
            !config(&real).seed_demo,
            "a real database gets no demo users"
        );
        let asked = [real[0], ("SEED_DEMO", "true")];
        assert!(config(&asked).seed_demo, "unless asked for");
    }
}
