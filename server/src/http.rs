//! Plain HTTP routes (health, login, logout, home) and the session middleware every request
//! passes through. Login and logout are ordinary form posts so they work without JavaScript;
//! JSON callers get JSON answers.
use crate::auth::{self, SessionState, SESSION_COOKIE};
use crate::error::ApiError;
use crate::AppState;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::net::SocketAddr;

/// Routes that are not Leptos pages.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
        .route("/", get(home))
}

async fn health(State(state): State<AppState>) -> Response {
    match sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(&state.pool)
        .await
    {
        Ok(_) => Json(serde_json::json!({"status": "ok", "database": "ok"})).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({"status": "degraded", "database": "unreachable"})),
            )
                .into_response()
        }
    }
}

/// Home sends each signed-in role to its board (the board shows each role its own scope).
async fn home(req: Request) -> Redirect {
    match session_of(&req) {
        SessionState::Valid(_) => Redirect::to("/board"),
        SessionState::Expired => Redirect::to("/login?error=expired"),
        SessionState::Anonymous => Redirect::to("/login"),
    }
}

/// The session the middleware resolved for this request.
pub fn session_of<B>(req: &axum::http::Request<B>) -> SessionState {
    req.extensions()
        .get::<SessionState>()
        .cloned()
        .unwrap_or(SessionState::Anonymous)
}

/// The signed-in actor of a plain HTTP route, or 401.
pub fn signed_in<B>(req: &axum::http::Request<B>) -> Result<turns::Actor, ApiError> {
    match session_of(req) {
        SessionState::Valid(user) => Ok(user.actor()),
        _ => Err(ApiError::Unauthorized("Please log in to continue.".into())),
    }
}

pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    cookie(headers, SESSION_COOKIE)
}

fn cookie(headers: &HeaderMap, wanted: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| value.to_string())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// The request header by which the local-first client says whose local data it acts for.
pub const CLIENT_USER_HEADER: &str = "x-turns-user";

/// The hash of the session token a request came with (set beside a valid `SessionState`), so
/// long-lived responses can end when that session ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionKey(pub String);

/// A request's session, resolved from its cookie.
pub struct RequestSession {
    pub state: SessionState,
    /// Set beside a valid session.
    pub key: Option<SessionKey>,
}

/// Resolve the session cookie, refusing a client that acts for another local user
/// (`X-Turns-User`). With `recent`, a session confirmed valid in the last few seconds is taken
/// from memory (live shape requests come back every cycle; see [`LiveSessions::recent_user`]).
///
/// [`LiveSessions::recent_user`]: crate::live_sessions::LiveSessions::recent_user
pub async fn resolve_session(
    state: &AppState,
    headers: &HeaderMap,
    recent: bool,
) -> Result<RequestSession, Response> {
    let Some(token) = cookie_token(headers) else {
        let anonymous = SessionState::Anonymous;
        if let Some(refusal) = client_user_mismatch(headers, &anonymous) {
            return Err(refusal);
        }
        return Ok(RequestSession {
            state: anonymous,
            key: None,
        });
    };
    let hash = auth::token_hash(&token);
    let cached = recent.then(|| state.live.recent_user(&hash)).flatten();
    let session = match cached {
        Some(user) => SessionState::Valid(user),
        None => {
            let session = auth::lookup_session(&state.pool, &token)
                .await
                .map_err(IntoResponse::into_response)?;
            if let (true, Some(user)) = (recent, session.user()) {
                state.live.remember_user(&hash, user);
            }
            session
        }
    };
    if let Some(refusal) = client_user_mismatch(headers, &session) {
        return Err(refusal);
    }
    let key = session.user().is_some().then_some(SessionKey(hash));
    Ok(RequestSession {
        state: session,
        key,
    })
}

/// Resolve the session cookie once per request and store the result in the request extensions.
///
/// Also: a client acting for a local user (`X-Turns-User`) is refused unless the session is that
/// user's, so a stale tab can never send one user's queued edits, or pull rows, under another
/// user's cookie; and answers to signed-in requests are not stored by any cache unless the
/// handler says otherwise (they hold one user's data).
pub async fn session_layer(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    let is_asset = path.starts_with("/pkg/") || path == "/favicon.ico" || path == "/health";
    let RequestSession {
        state: session,
        key,
    } = if is_asset {
        if let Some(refusal) = client_user_mismatch(req.headers(), &SessionState::Anonymous) {
            return refusal;
        }
        RequestSession {
            state: SessionState::Anonymous,
            key: None,
        }
    } else {
        match resolve_session(&state, req.headers(), false).await {
            Ok(s) => s,
            Err(refusal) => return refusal,
        }
    };
    let clear_cookie = session == SessionState::Expired;
    let signed_in = session.user().is_some();
    if let Some(key) = key {
        req.extensions_mut().insert(key);
    }
    req.extensions_mut().insert(session);
    let mut res = next.run(req).await;
    // An expired cookie is cleared, unless the answer sets a new session (a login, a password
    // link): clearing after it would undo it.
    let sets_session = res
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .any(|v| v.as_bytes().starts_with(SESSION_COOKIE.as_bytes()));
    if clear_cookie && !sets_session {
        res.headers_mut().append(
            header::SET_COOKIE,
            session_cookie("", 0, state.config.secure_cookies),
        );
    }
    if signed_in && !res.headers().contains_key(header::CACHE_CONTROL) {
        res.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        );
    }
    res
}

/// 401 when the client acts for a local user the session does not belong to.
fn client_user_mismatch(headers: &HeaderMap, session: &SessionState) -> Option<Response> {
    let claimed = headers.get(CLIENT_USER_HEADER)?;
    let claimed = claimed
        .to_str()
        .ok()
        .and_then(|v| uuid::Uuid::parse_str(v.trim()).ok());
    let message = match (claimed, session.user()) {
        (Some(claimed), Some(user)) if claimed == user.id => return None,
        (_, Some(_)) => "You are signed in as another user on this device. Log in again to send this user's changes.",
        (_, None) => "Please log in to continue.",
    };
    tracing::warn!(
        signed_in = session.user().is_some(),
        "refused a request made for another local user"
    );
    let mut res = ApiError::Unauthorized(message.into()).into_response();
    if session.user().is_some() {
        res.headers_mut().insert(
            HeaderName::from_static("x-turns-session"),
            HeaderValue::from_static("other-user"),
        );
    }
    Some(res)
}

/// Refuse state-changing requests that a browser sent from another site (CSRF). Browsers send
/// `Sec-Fetch-Site` and `Origin` with every such request, and a page cannot forge them; callers
/// that are not browsers send neither and cannot carry a victim's cookie anyway. The JSON write
/// endpoint also takes only JSON: a cross-site form or `text/plain` body is refused outright.
pub async fn same_origin_writes(req: Request, next: Next) -> Response {
    use axum::http::Method;
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let headers = req.headers();
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    let cross_site = match fetch_site {
        Some(site) => !matches!(site, "same-origin" | "none"),
        None => headers.get(header::ORIGIN).is_some_and(|origin| {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
            origin_authority(origin.to_str().unwrap_or("")) != host
        }),
    };
    if cross_site {
        tracing::warn!(path = %req.uri().path(), "refused a cross-site request");
        return (
            StatusCode::FORBIDDEN,
            Json(serde_json::json!({"message": "Cross-site requests are not accepted."})),
        )
            .into_response();
    }
    if req.uri().path() == "/api/mutate" && !is_json(req.headers()) {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Json(serde_json::json!({"message": "Send changes as application/json."})),
        )
            .into_response();
    }
    next.run(req).await
}

/// `host[:port]` of an `Origin` value (`None` for `null` or anything that is not one).
fn origin_authority(origin: &str) -> Option<&str> {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))?;
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

/// Pages that need a signed-in user redirect to the login page (saying why) without one.
pub async fn require_login_for_pages(req: Request, next: Next, pages: &[&str]) -> Response {
    let path = req.uri().path();
    let protected = pages.iter().any(|p| {
        path == *p
            || path
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('/'))
    });
    if protected && req.method() == axum::http::Method::GET {
        let reason = match session_of(&req) {
            SessionState::Valid(_) => None,
            SessionState::Expired => Some("expired"),
            SessionState::Anonymous => Some("required"),
        };
        if let Some(reason) = reason {
            let next_path = serde_urlencoded::to_string([("next", path)]).unwrap_or_default();
            return Redirect::to(&format!("/login?error={reason}&{next_path}")).into_response();
        }
    }
    next.run(req).await
}

pub fn session_cookie(token: &str, max_age_secs: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let cookie = format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}"
    );
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[derive(Deserialize)]
struct LoginInput {
    email: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

fn client_address(req: &Request, trust_proxy: bool) -> String {
    if trust_proxy {
        if let Some(first) = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
        {
            return first.trim().to_string();
        }
    }
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".into(), |c| c.0.ip().to_string())
}

/// Only plain same-site paths, so a crafted link cannot bounce a fresh login to another site:
/// one leading `/`, then visible ASCII only. Browsers drop tabs and newlines from URLs (so
/// `/\t/evil.example` becomes `//evil.example`) and read `\` as `/`; none of those pass.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            n
        }
        _ => "/",
    }
}

/// The cookie that marks a device an account has logged in from (see `auth::LoginLimiter`).
const DEVICE_COOKIE: &str = "turns_device";

async fn login(State(state): State<AppState>, req: Request) -> Response {
    let json = is_json(req.headers());
    let address = client_address(&req, state.config.trust_proxy);
    let device = cookie(req.headers(), DEVICE_COOKIE);
    let previous = cookie_token(req.headers());
    let result = async {
        let bytes = axum::body::to_bytes(req.into_body(), 16 * 1024)
            .await
            .map_err(|_| ApiError::BadRequest("The login request is too large.".into()))?;
        let input: LoginInput = if json {
            serde_json::from_slice(&bytes).ok()
        } else {
            serde_urlencoded::from_bytes(&bytes).ok()
        }
        .ok_or_else(|| ApiError::BadRequest("Enter your email and password.".into()))?;
        let client = auth::LoginClient {
            address: &address,
            device: device.as_deref(),
        };
        let user = auth::authenticate(
            &state.pool,
            &state.limiter,
            &input.email,
            &input.password,
            &client,
        )
        .await?;
        // Logging in again ends the session this browser had (whoever's it was).
        if let Some(previous) = &previous {
            auth::delete_session(&state.pool, previous).await?;
        }
        let (token, _) =
            auth::create_session(&state.pool, user.id, state.config.session_ttl).await?;
        Ok::<_, ApiError>((user, token, input.next))
    }
    .await;

    match result {
        Ok((user, token, next)) => {
            let cookie = session_cookie(
                &token,
                state.config.session_ttl.as_secs(),
                state.config.secure_cookies,
            );
            let device = state.limiter.device_tag(&user.email);
            let mut res = if json {
                Json(user).into_response()
            } else {
                Redirect::to(safe_next(next.as_deref())).into_response()
            };
            res.headers_mut().append(header::SET_COOKIE, cookie);
            let secure = if state.config.secure_cookies {
                "; Secure"
            } else {
                ""
            };
            if let Ok(v) = HeaderValue::from_str(&format!(
                "{DEVICE_COOKIE}={device}; Path=/auth/login; HttpOnly; SameSite=Strict; Max-Age=31536000{secure}"
            )) {
                res.headers_mut().append(header::SET_COOKIE, v);
            }
            res
        }
        Err(e) if json => e.into_response(),
        Err(e) => {
            e.log();
            let reason = match e {
                ApiError::RateLimited { .. } | ApiError::Busy => "locked",
                ApiError::Unauthorized(_) => "invalid",
                ApiError::BadRequest(_) => "input",
                _ => "server",
            };
            Redirect::to(&format!("/login?error={reason}")).into_response()
        }
    }
}

async fn logout(State(state): State<AppState>, req: Request<Body>) -> Response {
    let json = is_json(req.headers())
        || req
            .headers()
            .get(header::ACCEPT)
            .is_some_and(|v| v == "application/json");
    if let Some(token) = cookie_token(req.headers()) {
        if let Err(e) = auth::delete_session(&state.pool, &token).await {
            return e.into_response();
        }
        // At once here (other instances hear of it through the database's announcement).
        state.live.end(&auth::token_hash(&token));
    }
    let mut res = if json {
        StatusCode::NO_CONTENT.into_response()
    } else {
        Redirect::to("/login?notice=logged_out").into_response()
    };
    res.headers_mut().append(
        header::SET_COOKIE,
        session_cookie("", 0, state.config.secure_cookies),
    );
    // Pages this browser cached for the user go too. Local storage is the client's to clear: it
    // may hold another user's unsent edits (see the README's security section).
    res.headers_mut().insert(
        HeaderName::from_static("clear-site-data"),
        HeaderValue::from_static("\"cache\""),
    );
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
