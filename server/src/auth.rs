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

/// Keep `hash` as the user's password and end their sessions (all, or all but `keep`).
async fn store_password(
    tx: &mut sqlx::PgConnection,
    user: uuid::Uuid,
    hash: &str,
    keep: Option<&str>,
) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT INTO user_credentials (user_id, password_hash) VALUES ($1, $2)
         ON CONFLICT (user_id) DO UPDATE SET password_hash = EXCLUDED.password_hash, updated_at = now()",
    )
    .bind(user)
    .bind(hash)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token IS DISTINCT FROM $2")
        .bind(user)
        .bind(keep)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// How long a password link works.
pub const PASSWORD_LINK_TTL: chrono::Duration = chrono::Duration::hours(24);

/// A link an admin gives a user to set their own password (`/password/<token>`).
#[derive(Clone, Debug)]
pub struct PasswordLink {
    pub token: String,
    pub email: String,
    pub expires_at: DateTime<Utc>,
}

/// An admin makes a password link for `user` (an admin's only by a super admin): a new user's
/// first password, or a reset. It replaces any earlier link of theirs; audited. Until it is
/// used, the user's password and sessions stay as they are.
pub async fn password_link(
    pool: &PgPool,
    actor: &turns::Actor,
    user: uuid::Uuid,
) -> Result<PasswordLink, ApiError> {
    let row: Option<(turns::Role, String, bool)> =
        sqlx::query_as("SELECT role, email, is_active FROM users WHERE id = $1")
            .bind(user)
            .fetch_optional(pool)
            .await?;
    let (role, email, active) = row.ok_or(ApiError::NotFound)?;
    if !actor.role.is_admin() || !turns::admin::may_grant(actor, role) {
        return Err(ApiError::Forbidden);
    }
    if !active {
        return Err(ApiError::BadRequest(
            "This user is deactivated: reactivate them first.".into(),
        ));
    }
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let expires_at = Utc::now() + PASSWORD_LINK_TTL;
    let mut tx = pool.begin().await?;
    // The user's row lock: two admins making a link at once leave one link, not two.
    sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
        .bind(user)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM password_links WHERE user_id = $1 AND used_at IS NULL")
        .bind(user)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO password_links (token_hash, user_id, created_by, expires_at)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(token_hash(&token))
    .bind(user)
    .bind(actor.user_id)
    .bind(expires_at)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO audit_logs (actor_id, action, table_name, row_id) VALUES ($1, 'password_link', 'users', $2)",
    )
    .bind(actor.user_id)
    .bind(user)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(PasswordLink {
        token,
        email,
        expires_at,
    })
}

/// What a link that no longer works says (unknown, used, expired or its user deactivated: the
/// same words, so a link reveals nothing about anyone).
const LINK_GONE: &str = "This link has expired or was already used. Ask your admin for a new one.";

/// Whose password a link sets, while it works: (user, email).
pub async fn password_link_owner(
    pool: &PgPool,
    token: &str,
) -> Result<(uuid::Uuid, String), ApiError> {
    let row: Option<(uuid::Uuid, String)> = sqlx::query_as(
        "SELECT u.id, u.email FROM password_links l JOIN users u ON u.id = l.user_id
          WHERE l.token_hash = $1 AND l.used_at IS NULL AND l.expires_at > now() AND u.is_active",
    )
    .bind(token_hash(token))
    .fetch_optional(pool)
    .await?;
    row.ok_or_else(|| ApiError::BadRequest(LINK_GONE.into()))
}

/// Set a password with a link: the policy holds, the link is spent, every session of the user
/// ends (whoever had the old password is out). Returns the user, for a fresh session.
pub async fn use_password_link(
    pool: &PgPool,
    token: &str,
    new: &str,
) -> Result<uuid::Uuid, ApiError> {
    let (user, email) = password_link_owner(pool, token).await?;
    if let Some(problem) = turns::password::problem(new, &email) {
        return Err(ApiError::BadRequest(problem));
    }
    let hash = hash_password(new).await?;
    let mut tx = pool.begin().await?;
    // Spent here, once: a second use racing this one finds it used.
    let spent = sqlx::query(
        "UPDATE password_links SET used_at = now()
          WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()
            AND user_id IN (SELECT id FROM users WHERE is_active)",
    )
    .bind(token_hash(token))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if spent != 1 {
        return Err(ApiError::BadRequest(LINK_GONE.into()));
    }
    store_password(&mut tx, user, &hash, None).await?;
    sqlx::query(
        "INSERT INTO audit_logs (actor_id, action, table_name, row_id) VALUES ($1, 'use_password_link', 'users', $1)",
    )
    .bind(user)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(user)
}

/// Change one's own password: the current one must be right and the new one must pass the
/// policy (`turns::password`); every other session of the user ends (a stolen session is cut
/// off by the change), this one (`keep`, its token's hash) stays.
pub async fn change_password(
    pool: &PgPool,
    user: uuid::Uuid,
    current: &str,
    new: &str,
    keep: &str,
) -> Result<(), ApiError> {
    let row: Option<(String, Option<String>)> = sqlx::query_as(
        "SELECT u.email, c.password_hash FROM users u
           LEFT JOIN user_credentials c ON c.user_id = u.id WHERE u.id = $1",
    )
    .bind(user)
    .fetch_optional(pool)
    .await?;
    let Some((email, stored)) = row else {
        return Err(ApiError::Unauthorized("Please log in to continue.".into()));
    };
    if current.is_empty() || current.len() > 1024 || !verify_password(current, stored).await? {
        return Err(ApiError::BadRequest(
            "Your current password is not right.".into(),
        ));
    }
    if let Some(problem) = turns::password::problem(new, &email) {
        return Err(ApiError::BadRequest(problem));
    }
    if new == current {
        return Err(ApiError::BadRequest(
            "Choose a password you have not been using.".into(),
        ));
    }
    let hash = hash_password(new).await?;
    let mut tx = pool.begin().await?;
    store_password(&mut tx, user, &hash, Some(keep)).await?;
    sqlx::query(
        "INSERT INTO audit_logs (actor_id, action, table_name, row_id) VALUES ($1, 'change_password', 'users', $1)",
    )
    .bind(user)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The user's sessions, newest first (`this`: the current token's hash).
pub async fn sessions_of(
    pool: &PgPool,
    user: uuid::Uuid,
    this: &str,
) -> Result<Vec<turns::model::AccountSession>, ApiError> {
    Ok(sqlx::query_as(
        "SELECT id, created_at, expires_at, token = $2 AS this_one FROM sessions
          WHERE user_id = $1 AND expires_at > now() ORDER BY created_at DESC",
    )
    .bind(user)
    .bind(this)
    .fetch_all(pool)
    .await?)
}

/// End every session of the user but this one; how many ended. Their open streams stop at once
/// (the `sessions_ended` trigger).
pub async fn end_other_sessions(
    pool: &PgPool,
    user: uuid::Uuid,
    this: &str,
) -> Result<u64, ApiError> {
    Ok(
        sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token <> $2")
            .bind(user)
            .bind(this)
            .execute(pool)
            .await?
            .rows_affected(),
    )
}

pub fn token_hash(token: &str) -> String {
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

/// Failed logins in a sliding window, so that password guessing is slow whoever tries it and a
/// legitimate user is not locked out by someone else's guessing.
///
/// An attempt reserves its place *before* the slow password check (the check and the record are
/// one step under the lock), so parallel guesses cannot all slip past the count; a success gives
/// its place back. Three counts:
/// - one email from one client address (`per_pair`): the guessing limit;
/// - one client address, any emails (`per_client`): a spray over many accounts;
/// - one email from every client it has never logged in from (`per_email`): guessing spread over
///   many addresses. A device that has logged in to this account before (it carries the
///   account's device cookie) is not counted here, so an attacker hammering an email from
///   elsewhere does not lock its owner out of their own device.
///
/// Password hashing itself is bounded too (`hashing`): at most a few argon2 runs in flight, each
/// ~19 MB, so a burst of logins queues instead of growing the server's memory.
pub struct LoginLimiter {
    window: Duration,
    per_pair: usize,
    per_client: usize,
    per_email: usize,
    failures: Mutex<HashMap<String, Vec<Instant>>>,
    /// Signs device cookies (random per process: after a restart a device is new again).
    device_key: [u8; 32],
    hashing: tokio::sync::Semaphore,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        LoginLimiter::new(Duration::from_secs(15 * 60), 5, 20, 100)
    }
}

/// A login attempt counted in advance; `succeeded` gives its place back.
pub struct Attempt {
    keys: Vec<String>,
    at: Instant,
}

/// How many password checks may run at once.
const HASHING_SLOTS: usize = 4;

impl LoginLimiter {
    pub fn new(window: Duration, per_pair: usize, per_client: usize, per_email: usize) -> Self {
        LoginLimiter {
            window,
            per_pair,
            per_client,
            per_email,
            failures: Mutex::new(HashMap::new()),
            device_key: rand::random(),
            hashing: tokio::sync::Semaphore::new(HASHING_SLOTS),
        }
    }

    /// Count an attempt now, or `Err(retry_after_secs)` when one of its keys is used up.
    pub fn begin(&self, email: &str, client: &str, known_device: bool) -> Result<Attempt, u64> {
        let now = Instant::now();
        let mut keys = vec![
            (format!("pair:{email}\n{client}"), self.per_pair),
            (format!("client:{client}"), self.per_client),
        ];
        if !known_device {
            keys.push((format!("email:{email}"), self.per_email));
        }
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
        let mut retry = 0;
        for (key, limit) in &keys {
            if let Some(times) = map.get_mut(key) {
                times.retain(|t| now.duration_since(*t) < self.window);
                if times.len() >= *limit {
                    let oldest = times.first().copied().unwrap_or(now);
                    let wait = self.window.saturating_sub(now.duration_since(oldest));
                    retry = u64::max(retry, wait.as_secs().max(1));
                }
            }
        }
        if retry > 0 {
            return Err(retry);
        }
        for (key, _) in &keys {
            map.entry(key.clone()).or_default().push(now);
        }
        Ok(Attempt {
            keys: keys.into_iter().map(|(k, _)| k).collect(),
            at: now,
        })
    }

    /// The attempt was right: it was not a failure, and its email and client start afresh.
    pub fn succeeded(&self, attempt: Attempt) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for key in attempt.keys {
            if key.starts_with("pair:") {
                map.remove(&key);
            } else if let Some(times) = map.get_mut(&key) {
                if let Some(i) = times.iter().position(|t| *t == attempt.at) {
                    times.remove(i);
                }
            }
        }
    }

    /// The device cookie value that marks a device this email has logged in from.
    pub fn device_tag(&self, email: &str) -> String {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<Sha256>>::new_from_slice(&self.device_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(email.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    fn is_known_device(&self, email: &str, device: Option<&str>) -> bool {
        use subtle::ConstantTimeEq;
        device.is_some_and(|d| bool::from(d.as_bytes().ct_eq(self.device_tag(email).as_bytes())))
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

/// Who is trying to log in, as far as the limiter is concerned.
pub struct LoginClient<'a> {
    /// The client address (the proxy's `X-Forwarded-For` only when configured to trust it).
    pub address: &'a str,
    /// The device cookie, if the browser sent one.
    pub device: Option<&'a str>,
}

/// Check credentials; on success record the login and return the user. Every failure and every
/// refusal by the limiter is logged (email and client address; never the password).
pub async fn authenticate(
    pool: &PgPool,
    limiter: &LoginLimiter,
    raw_email: &str,
    password: &str,
    client: &LoginClient<'_>,
) -> Result<SessionUser, ApiError> {
    let email = normalize_email(raw_email)?;
    if password.is_empty() || password.len() > 1024 {
        return Err(ApiError::BadRequest("Enter your password.".into()));
    }
    let known = limiter.is_known_device(&email, client.device);
    let attempt = limiter
        .begin(&email, client.address, known)
        .map_err(|retry_after_secs| {
            tracing::warn!(%email, client = client.address, retry_after_secs, "login refused: too many failures");
            ApiError::RateLimited { retry_after_secs }
        })?;

    #[derive(sqlx::FromRow)]
    struct Row {
        password_hash: Option<String>,
        is_active: bool,
        #[sqlx(flatten)]
        user: SessionUser,
    }
    let row: Option<Row> = sqlx::query_as(
        "SELECT c.password_hash, u.is_active,
                u.id, u.email, u.first_name, u.last_name, u.role, u.vendor_id, v.name AS vendor_name
           FROM users u
           LEFT JOIN user_credentials c ON c.user_id = u.id
           LEFT JOIN vendors v ON v.id = u.vendor_id
          WHERE u.email = $1",
    )
    .bind(&email)
    .fetch_optional(pool)
    .await?;
    let (stored, active) = match &row {
        Some(r) => (r.password_hash.clone(), r.is_active),
        None => (None, false),
    };
    let verified = {
        let _slot = tokio::time::timeout(Duration::from_secs(10), limiter.hashing.acquire())
            .await
            .map_err(|_| ApiError::Busy)?
            .map_err(ApiError::internal)?;
        verify_password(password, stored).await?
    };
    match row {
        Some(r) if verified && active => {
            limiter.succeeded(attempt);
            sqlx::query("UPDATE users SET last_login = now() WHERE id = $1")
                .bind(r.user.id)
                .execute(pool)
                .await?;
            Ok(r.user)
        }
        _ => {
            tracing::warn!(%email, client = client.address, known_device = known, "login failed");
            Err(ApiError::Unauthorized(INVALID_LOGIN.into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_counts_an_attempt_before_it_is_checked_and_a_success_gives_it_back() {
        let l = LoginLimiter::new(Duration::from_secs(60), 3, 100, 100);
        let first = l.begin("a@x", "c1", false).expect("room");
        for _ in 0..2 {
            l.begin("a@x", "c1", false).expect("room");
        }
        assert!(
            l.begin("a@x", "c1", false).is_err(),
            "in-flight attempts count"
        );
        assert!(
            l.begin("a@x", "c2", false).is_ok(),
            "another client has its own count"
        );
        assert!(
            l.begin("b@x", "c1", false).is_ok(),
            "other emails unaffected"
        );
        l.succeeded(first);
        assert!(
            l.begin("a@x", "c1", false).is_ok(),
            "a success starts afresh"
        );
    }

    #[test]
    fn limiter_blocks_a_client_spraying_many_emails() {
        let l = LoginLimiter::new(Duration::from_secs(60), 100, 4, 100);
        for i in 0..4 {
            l.begin(&format!("u{i}@x"), "10.0.0.1", false)
                .expect("room");
        }
        let retry = l
            .begin("fresh@x", "10.0.0.1", false)
            .err()
            .expect("blocked");
        assert!((1..=60).contains(&retry));
        assert!(l.begin("fresh@x", "10.0.0.2", false).is_ok());
    }

    #[test]
    fn guessing_from_many_addresses_spares_the_owners_known_device() {
        let l = LoginLimiter::new(Duration::from_secs(60), 5, 100, 10);
        for i in 0..10 {
            l.begin("a@x", &format!("10.0.0.{i}"), false).expect("room");
        }
        assert!(
            l.begin("a@x", "10.9.9.9", false).is_err(),
            "unknown devices wait"
        );
        let tag = l.device_tag("a@x");
        assert!(l.is_known_device("a@x", Some(&tag)));
        assert!(!l.is_known_device("b@x", Some(&tag)), "a tag is per email");
        assert!(
            l.begin("a@x", "10.9.9.9", true).is_ok(),
            "the owner's device logs in"
        );
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
