//! Server functions: thin adapters that take the session and pool from the request context and
//! call the policy-scoped queries in `turns-server`. Fixed endpoints (`/api/<name>`), so clients
//! that replay calls after a deploy still reach them.
use leptos::prelude::*;
use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};
use turns::model::{Board, PropertySummary, SessionUser};
use turns::wire::{Answer, Received};

/// Errors a page can show. Internal details never get here: the server logs them and sends
/// `Internal`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    #[error("Please log in to continue.")]
    Unauthorized,
    #[error("You do not have access to this.")]
    Forbidden,
    #[error("{0}")]
    BadRequest(String),
    #[error("We could not reach the server. Check your connection and try again.")]
    Network,
    /// The server cannot serve this now (its database is unreachable or every connection is
    /// busy): nothing was done; try again shortly.
    #[error("The server is busy. Please try again in a moment.")]
    Unavailable,
    #[error("Something went wrong on our side. Please try again.")]
    Internal,
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(e: ServerFnErrorErr) -> Self {
        match e {
            ServerFnErrorErr::Request(_) => AppError::Network,
            ServerFnErrorErr::Args(_) | ServerFnErrorErr::MissingArg(_) => {
                AppError::BadRequest("The request was malformed.".into())
            }
            // On the server this is the request body failing to parse: the caller's fault (400).
            #[cfg(feature = "ssr")]
            ServerFnErrorErr::Deserialization(_) => {
                ssr::fail(AppError::BadRequest("The request was malformed.".into()))
            }
            _ => AppError::Internal,
        }
    }
}

#[cfg(feature = "ssr")]
pub mod ssr {
    use super::AppError;
    use axum::http::StatusCode;
    use leptos::prelude::*;
    use turns::model::SessionUser;
    use turns_server::auth::SessionState;
    use turns_server::AppState;

    /// Set the HTTP status for an error and hand it back (server side only).
    pub fn fail(e: AppError) -> AppError {
        let status = match e {
            AppError::Unauthorized => StatusCode::UNAUTHORIZED,
            AppError::Forbidden => StatusCode::FORBIDDEN,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Network | AppError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if let Some(res) = use_context::<leptos_axum::ResponseOptions>() {
            res.set_status(status);
        }
        e
    }

    pub fn state() -> Result<AppState, AppError> {
        use_context::<AppState>().ok_or_else(|| {
            tracing::error!("AppState missing from the server function context");
            fail(AppError::Internal)
        })
    }

    /// The signed-in user, if any. The session middleware resolved the cookie already.
    pub fn session_user() -> Option<SessionUser> {
        use_context::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<SessionState>().cloned())
            .and_then(|s| s.user().cloned())
    }

    /// The hash of this request's session token (as `sessions.token` keeps it).
    pub fn this_session() -> Result<String, AppError> {
        use_context::<http::request::Parts>()
            .and_then(|parts| turns_server::http::cookie_token(&parts.headers))
            .map(|t| turns_server::auth::token_hash(&t))
            .ok_or_else(|| fail(AppError::Unauthorized))
    }

    /// A plain route's error as a page's: its own words for a bad request, nothing internal.
    pub fn api_error(e: turns_server::error::ApiError) -> AppError {
        use turns_server::error::ApiError;
        match e {
            ApiError::BadRequest(m) => fail(AppError::BadRequest(m)),
            ApiError::Unauthorized(_) => fail(AppError::Unauthorized),
            ApiError::Forbidden => fail(AppError::Forbidden),
            ApiError::NotFound => fail(AppError::BadRequest("That no longer exists.".into())),
            other => {
                tracing::error!(error = %other, "account change failed");
                fail(AppError::Internal)
            }
        }
    }

    /// The signed-in user, or 401.
    pub fn require_user() -> Result<SessionUser, AppError> {
        session_user().ok_or_else(|| fail(AppError::Unauthorized))
    }

    /// Log a database error with its cause; the client sees only `Unavailable` (503, when the
    /// database cannot be reached or is busy) or `Internal`.
    pub fn internal(e: sqlx::Error) -> AppError {
        if turns_server::error::database_unavailable(&e) {
            tracing::warn!(error = %e, "server function: database unavailable");
            return fail(AppError::Unavailable);
        }
        tracing::error!(error = %e, "server function failed");
        fail(AppError::Internal)
    }
}

/// The signed-in user, if any (pages use it for the header).
#[server(endpoint = "me")]
pub async fn current_user() -> Result<Option<SessionUser>, AppError> {
    Ok(ssr::session_user())
}

/// The turn board for the signed-in user: their scope, as the policy says.
#[server(endpoint = "board")]
pub async fn turn_board() -> Result<Board, AppError> {
    let user = ssr::require_user()?;
    let state = ssr::state()?;
    let today = chrono::Utc::now().date_naive();
    turns_server::queries::board(&state.pool, &user.actor(), today)
        .await
        .map_err(ssr::internal)
}

/// The properties the signed-in user may see.
#[server(endpoint = "properties")]
pub async fn list_properties() -> Result<Vec<PropertySummary>, AppError> {
    let user = ssr::require_user()?;
    let state = ssr::state()?;
    turns_server::queries::properties(&state.pool, &user.actor())
        .await
        .map_err(ssr::internal)
}

/// Turns completed before the board's horizon, and cancelled turns: the History page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Turns completed before this day are no longer on the board.
    pub before: chrono::NaiveDate,
    pub turns: Vec<turns::model::TurnCard>,
    /// More than `turns` exist (the oldest are not listed).
    pub more: bool,
    /// Cancelled turns, most recent first (at most `HISTORY_ROWS`).
    pub cancelled: Vec<Cancelled>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cancelled {
    pub card: turns::model::TurnCard,
    pub at: chrono::DateTime<chrono::Utc>,
    pub reason: String,
}

/// The most history one call returns.
pub const HISTORY_ROWS: usize = 500;

/// The signed-in user's history (off the board): read on demand from the server.
#[server(endpoint = "history")]
pub async fn turn_history() -> Result<History, AppError> {
    let user = ssr::require_user()?;
    let state = ssr::state()?;
    // Every completed turn that left the board (those the device still keeps, too).
    let before = turns::rules::board_cutoff(chrono::Utc::now().date_naive());
    let mut turns =
        turns_server::queries::history(&state.pool, &user.actor(), before, HISTORY_ROWS as i64 + 1)
            .await
            .map_err(ssr::internal)?;
    let more = turns.len() > HISTORY_ROWS;
    turns.truncate(HISTORY_ROWS);
    let cancelled =
        turns_server::queries::cancelled(&state.pool, &user.actor(), HISTORY_ROWS as i64)
            .await
            .map_err(ssr::internal)?
            .into_iter()
            .map(|c| Cancelled {
                card: c.card,
                at: c.cancelled_at,
                reason: c.cancel_reason,
            })
            .collect();
    Ok(History {
        before,
        turns,
        more,
        cancelled,
    })
}

/// A turn's timeline (every write, who, when, before → after), read on demand.
#[server(endpoint = "timeline")]
pub async fn turn_timeline(turn: uuid::Uuid) -> Result<Vec<turns::timeline::Entry>, AppError> {
    let user = ssr::require_user()?;
    let state = ssr::state()?;
    turns_server::queries::timeline(&state.pool, &user.actor(), turn)
        .await
        .map_err(ssr::internal)?
        .ok_or_else(|| ssr::fail(AppError::Forbidden))
}

/// The most mutations one call carries; the outbox sends in batches of this size.
pub const MAX_BATCH: usize = 50;

/// The one write endpoint: a batch of the device's queued mutations, applied in order, each at
/// most once (a batch of edits shares one transaction: `mutations::apply_batch`). Every outcome is
/// final for its mutation (applied, or rejected for good); a transport or server failure leaves
/// the batch queued for a retry.
#[server(endpoint = "mutate", input = leptos::server_fn::codec::Json)]
pub async fn mutate(batch: Vec<Received>) -> Result<Vec<Answer>, AppError> {
    let user = ssr::require_user()?;
    let state = ssr::state()?;
    if batch.len() > MAX_BATCH {
        return Err(ssr::fail(AppError::BadRequest(format!(
            "Send at most {MAX_BATCH} changes at once."
        ))));
    }
    // A device running an older app speaks the older dialect: it is answered in it.
    use turns::wire::Dialect;
    let dialect = batch
        .iter()
        .map(|r| r.dialect)
        .find(|d| *d == Dialect::V1)
        .unwrap_or(Dialect::V2);
    let batch: Vec<turns::mutation::Mutation> = batch.into_iter().map(|r| r.mutation).collect();
    let outcomes = turns_server::mutations::apply_batch(&state.pool, &user.actor(), &batch)
        .await
        .map_err(ssr::internal)?;
    Ok(outcomes
        .into_iter()
        .map(|outcome| Answer { outcome, dialect })
        .collect())
}

/// The dashboard's numbers for the signed-in user's portfolio, narrowed by `filter`.
#[server(endpoint = "dashboard", input = leptos::server_fn::codec::Json)]
pub async fn kpi_dashboard(
    filter: turns::kpi::KpiFilter,
) -> Result<turns::kpi::Dashboard, AppError> {
    let user = ssr::require_user()?;
    let state = ssr::state()?;
    let today = chrono::Utc::now().date_naive();
    turns_server::kpi::dashboard(&state.pool, &user.actor(), filter, today)
        .await
        .map_err(ssr::internal)?
        .ok_or_else(|| ssr::fail(AppError::Forbidden))
}

/// What an admin's change came to, and for a new user the link that sets their password.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdminAnswer {
    pub outcome: turns::mutation::Outcome,
    pub link: Option<PasswordLink>,
}

/// A link that sets a user's password, for the admin to give them (shown once: only its hash is
/// kept). `path` is on this site (`/password/<token>`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PasswordLink {
    pub path: String,
    pub email: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

#[cfg(feature = "ssr")]
impl From<turns_server::auth::PasswordLink> for PasswordLink {
    fn from(l: turns_server::auth::PasswordLink) -> Self {
        PasswordLink {
            path: format!("/password/{}", l.token),
            email: l.email,
            expires_at: l.expires_at,
        }
    }
}

/// Users, vendors and thresholds, for the admin page (admins only).
#[server(endpoint = "admin/overview")]
pub async fn admin_overview() -> Result<turns::admin::Overview, AppError> {
    let user = ssr::require_user()?;
    let state = ssr::state()?;
    turns_server::queries::admin_overview(&state.pool, &user.actor())
        .await
        .map_err(ssr::internal)?
        .ok_or_else(|| ssr::fail(AppError::Forbidden))
}

/// An admin's change, through the one write path (authorized, validated, audited). Admin work
/// is done online at a desk: it is sent now, not queued on the device.
#[server(endpoint = "admin/change", input = leptos::server_fn::codec::Json)]
pub async fn admin_change(change: turns::admin::AdminChange) -> Result<AdminAnswer, AppError> {
    use turns::admin::AdminChange;
    use turns::mutation::{Change, Mutation, Outcome};
    let user = ssr::require_user()?;
    let state = ssr::state()?;
    if !user.role.is_admin() {
        return Err(ssr::fail(AppError::Forbidden));
    }
    let new_user = match &change {
        AdminChange::CreateUser(u) => Some(u.id),
        _ => None,
    };
    let m = Mutation {
        id: uuid::Uuid::new_v4(),
        base_version: None,
        device_time: chrono::Utc::now(),
        change: Change::Admin(change),
    };
    let outcome = turns_server::mutations::apply(&state.pool, &user.actor(), &m)
        .await
        .map_err(ssr::internal)?;
    // The user exists whatever happens here: without a link, the admin makes one from the list.
    let link = match (&outcome, new_user) {
        (Outcome::Applied { .. }, Some(id)) => {
            match turns_server::auth::password_link(&state.pool, &user.actor(), id).await {
                Ok(link) => Some(link.into()),
                Err(e) => {
                    tracing::error!(error = %e, "a new user's password link");
                    None
                }
            }
        }
        _ => None,
    };
    Ok(AdminAnswer { outcome, link })
}

/// The signed-in user's sessions (this device's marked).
#[server(endpoint = "account/sessions")]
pub async fn my_sessions() -> Result<Vec<turns::model::AccountSession>, AppError> {
    let user = ssr::require_user()?;
    let state = ssr::state()?;
    turns_server::auth::sessions_of(&state.pool, user.id, &ssr::this_session()?)
        .await
        .map_err(ssr::api_error)
}

/// Change one's own password (the current one is asked for); other sessions end.
#[server(endpoint = "account/password", input = leptos::server_fn::codec::Json)]
pub async fn change_my_password(current: String, new: String) -> Result<(), AppError> {
    let user = ssr::require_user()?;
    let state = ssr::state()?;
    turns_server::auth::change_password(&state.pool, user.id, &current, &new, &ssr::this_session()?)
        .await
        .map_err(ssr::api_error)
}

/// Log out every other device; how many sessions ended.
#[server(endpoint = "account/log-out-elsewhere")]
pub async fn log_out_elsewhere() -> Result<u64, AppError> {
    let user = ssr::require_user()?;
    let state = ssr::state()?;
    turns_server::auth::end_other_sessions(&state.pool, user.id, &ssr::this_session()?)
        .await
        .map_err(ssr::api_error)
}

/// An admin makes a link for a user to set a new password (it works once, for a day; until
/// it is used, their password and sessions stay).
#[server(endpoint = "admin/password-link")]
pub async fn admin_password_link(user: uuid::Uuid) -> Result<PasswordLink, AppError> {
    let me = ssr::require_user()?;
    let state = ssr::state()?;
    turns_server::auth::password_link(&state.pool, &me.actor(), user)
        .await
        .map(PasswordLink::from)
        .map_err(ssr::api_error)
}

/// Whose password a link sets (their email), while it works. No session needed: the link is
/// the credential.
#[server(endpoint = "password-link/owner")]
pub async fn password_link_owner(token: String) -> Result<String, AppError> {
    let state = ssr::state()?;
    turns_server::auth::password_link_owner(&state.pool, &token)
        .await
        .map(|(_, email)| email)
        .map_err(ssr::api_error)
}

/// Set one's password with a link; the answer carries a fresh session's cookie (every other
/// session of the user has ended).
#[server(endpoint = "password-link/use", input = leptos::server_fn::codec::Json)]
pub async fn use_password_link(token: String, password: String) -> Result<(), AppError> {
    let state = ssr::state()?;
    let user = turns_server::auth::use_password_link(&state.pool, &token, &password)
        .await
        .map_err(ssr::api_error)?;
    // As a login does: the session this browser had (whoever's it was) ends.
    let previous = use_context::<http::request::Parts>()
        .and_then(|parts| turns_server::http::cookie_token(&parts.headers));
    if let Some(previous) = previous {
        turns_server::auth::delete_session(&state.pool, &previous)
            .await
            .map_err(ssr::api_error)?;
    }
    let ttl = state.config.session_ttl;
    let (session, _) = turns_server::auth::create_session(&state.pool, user, ttl)
        .await
        .map_err(ssr::api_error)?;
    let cookie =
        turns_server::http::session_cookie(&session, ttl.as_secs(), state.config.secure_cookies);
    if let Some(res) = use_context::<leptos_axum::ResponseOptions>() {
        res.append_header(http::header::SET_COOKIE, cookie);
    }
    Ok(())
}
