//! Email + password login, sessions, and the failed-login rate limit.
//!
//! Passwords: argon2id, hashed off the async runtime. Sessions: 32 random bytes given to the
//! browser once (HttpOnly cookie); only their SHA-256 is stored, so a database leak yields no
//! usable tokens. Failed logins are counted per email and per client address.
use crate::error::ApiError;
use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use base64::Engine;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use turns::model::SessionUser;
use uuid::Uuid;

pub const SESSION_COOKIE: &str = "turns_session";
/// The one message for every failed login, so it never tells which part was wrong.
pub const INVALID_LOGIN: &str = "Wrong email or password.";

pub async fn hash_password(password: &str) -> Result<String, ApiError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ApiError::internal(std::io::Error::other(e.to_string())))
    })
    .await
    .map_err(ApiError::internal)?
}

/// Verify off the runtime. With no stored hash we still spend the same work (no timing oracle
/// for which emails exist).
async fn verify_password(password: &str, stored: Option<String>) -> Result<bool, ApiError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let stored = stored.unwrap_or_else(|| dummy_hash().to_owned());
        let parsed = PasswordHash::new(&stored)
            .map_err(|e| ApiError::internal(std::io::Error::other(e.to_string())))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(ApiError::internal)?
}

fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(b"no such user", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh session for `user_id`; returns the token for the cookie and its expiry.
pub async fn create_session(
    pool: &PgPool,
    user_id: Uuid,
    ttl: Duration,
) -> Result<(String, DateTime<Utc>), ApiError> {
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let ttl = chrono::Duration::from_std(ttl).map_err(ApiError::internal)?;
    let expires_at = Utc::now() + ttl;
    sqlx::query("INSERT INTO sessions (user_id, token, expires_at) VALUES ($1, $2, $3)")
        .bind(user_id)
        .bind(token_hash(&token))
        .bind(expires_at)
        .execute(pool)
        .await?;
    Ok((token, expires_at))
}

/// What a request's cookie amounts to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionState {
    Anonymous,
    /// There was a session, and it ran out (the user is told so, and logs in again).
    Expired,
    Valid(SessionUser),
}

impl SessionState {
    pub fn user(&self) -> Option<&SessionUser> {
        match self {
            SessionState::Valid(u) => Some(u),
            _ => None,
        }
    }
}

pub async fn lookup_session(pool: &PgPool, token: &str) -> Result<SessionState, ApiError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        expired: bool,
        is_active: bool,
        #[sqlx(flatten)]
        user: SessionUser,
    }
    let row: Option<Row> = sqlx::query_as(
        "SELECT s.expires_at <= now() AS expired, u.is_active,
                u.id, u.email, u.first_name, u.last_name, u.role, u.vendor_id, v.name AS vendor_name
           FROM sessions s
           JOIN users u ON u.id = s.user_id
           LEFT JOIN vendors v ON v.id = u.vendor_id
          WHERE s.token = $1",
    )
    .bind(token_hash(token))
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        None => SessionState::Anonymous,
        Some(r) if r.expired => {
            delete_session(pool, token).await?;
            SessionState::Expired
        }
        Some(r) if !r.is_active => SessionState::Anonymous,
        Some(r) => SessionState::Valid(r.user),
    })
}

pub async fn delete_session(pool: &PgPool, token: &str) -> Result<(), ApiError> {
    sqlx::query("DELETE FROM sessions WHERE token = $1")
        .bind(token_hash(token))
        .execute(pool)
        .await?;
    Ok(())
}

/// Counts failed logins in a sliding window, per email and per client address.
pub struct LoginLimiter {
    window: Duration,
    per_email: usize,
    per_client: usize,
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        LoginLimiter::new(Duration::from_secs(15 * 60), 5, 20)
    }
}

impl LoginLimiter {
    pub fn new(window: Duration, per_email: usize, per_client: usize) -> Self {
        LoginLimiter {
            window,
            per_email,
            per_client,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn keys(email: &str, client: &str) -> [String; 2] {
        [format!("email:{email}"), format!("client:{client}")]
    }

    /// `Err(retry_after_secs)` when either key has used up its failures.
    fn check(&self, email: &str, client: &str) -> Result<(), u64> {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let [ek, ck] = Self::keys(email, client);
        let mut retry = 0;
        for (key, limit) in [(ek, self.per_email), (ck, self.per_client)] {
            if let Some(times) = map.get_mut(&key) {
                times.retain(|t| now.duration_since(*t) < self.window);
                if times.len() >= limit {
                    let oldest = times.first().copied().unwrap_or(now);
                    let wait = self.window.saturating_sub(now.duration_since(oldest));
                    retry = retry.max(wait.as_secs().max(1));
                }
            }
        }
        if retry > 0 {
            Err(retry)
        } else {
            Ok(())
        }
    }

    fn record_failure(&self, email: &str, client: &str) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 100_000 {
            // Bound memory under a spray of distinct keys: forget windows that have passed.
            let window = self.window;
            map.retain(|_, times| {
                times
                    .last()
                    .is_some_and(|t| now.duration_since(*t) < window)
            });
        }
        for key in Self::keys(email, client) {
            map.entry(key).or_default().push(now);
        }
    }

    fn record_success(&self, email: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&format!("email:{email}"));
    }
}

/// Normalise an email as stored (trimmed, lower-case) and reject what cannot be one.
pub fn normalize_email(raw: &str) -> Result<String, ApiError> {
    let email = raw.trim().to_lowercase();
    let valid = email.len() <= 255
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty());
    if valid {
        Ok(email)
    } else {
        Err(ApiError::BadRequest("Enter a valid email address.".into()))
    }
}

/// Check credentials; on success record the login and return the user.
pub async fn authenticate(
    pool: &PgPool,
    limiter: &LoginLimiter,
    raw_email: &str,
    password: &str,
    client: &str,
) -> Result<SessionUser, ApiError> {
    let email = normalize_email(raw_email)?;
    if password.is_empty() || password.len() > 1024 {
        return Err(ApiError::BadRequest("Enter your password.".into()));
    }
    limiter
        .check(&email, client)
        .map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs })?;

    #[derive(sqlx::FromRow)]
    struct Row {
        password_hash: Option<String>,
        is_active: bool,
        #[sqlx(flatten)]
        user: SessionUser,
    }
    let row: Option<Row> = sqlx::query_as(
        "SELECT u.password_hash, u.is_active,
                u.id, u.email, u.first_name, u.last_name, u.role, u.vendor_id, v.name AS vendor_name
           FROM users u LEFT JOIN vendors v ON v.id = u.vendor_id
          WHERE u.email = $1",
    )
    .bind(&email)
    .fetch_optional(pool)
    .await?;
    let (stored, active) = match &row {
        Some(r) => (r.password_hash.clone(), r.is_active),
        None => (None, false),
    };
    let ok = verify_password(password, stored).await? && active;
    match row {
        Some(r) if ok => {
            limiter.record_success(&email);
            sqlx::query("UPDATE users SET last_login = now() WHERE id = $1")
                .bind(r.user.id)
                .execute(pool)
                .await?;
            Ok(r.user)
        }
        _ => {
            limiter.record_failure(&email, client);
            Err(ApiError::Unauthorized(INVALID_LOGIN.into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_blocks_an_email_after_its_failures_and_a_success_resets_it() {
        let l = LoginLimiter::new(Duration::from_secs(60), 3, 100);
        for _ in 0..3 {
            assert!(l.check("a@x", "c1").is_ok());
            l.record_failure("a@x", "c1");
        }
        assert!(
            l.check("a@x", "c2").is_err(),
            "email key blocks from any client"
        );
        assert!(l.check("b@x", "c1").is_ok(), "other emails unaffected");
        l.record_success("a@x");
        assert!(l.check("a@x", "c1").is_ok());
    }

    #[test]
    fn limiter_blocks_a_client_spraying_many_emails() {
        let l = LoginLimiter::new(Duration::from_secs(60), 100, 4);
        for i in 0..4 {
            l.record_failure(&format!("u{i}@x"), "10.0.0.1");
        }
        let retry = l.check("fresh@x", "10.0.0.1").expect_err("blocked");
        assert!((1..=60).contains(&retry));
        assert!(l.check("fresh@x", "10.0.0.2").is_ok());
    }

    #[test]
    fn emails_are_normalised_and_nonsense_refused() {
        assert_eq!(
            normalize_email("  PM@Turns.Demo ").ok().as_deref(),
            Some("pm@turns.demo")
        );
        assert!(normalize_email("nobody").is_err());
        assert!(normalize_email("@x").is_err());
    }
}
