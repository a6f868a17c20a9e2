//! Plain HTTP routes (health, login, logout, home) and the session middleware every request
//! passes through. Login and logout are ordinary form posts so they work without JavaScript;
//! JSON callers get JSON answers.
use crate::auth::{self, SessionState, SESSION_COOKIE};
use crate::error::ApiError;
use crate::AppState;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
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
        .merge(crate::shapes::http::routes())
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

pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_string())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// Resolve the session cookie once per request and store the result in the request extensions.
pub async fn session_layer(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    let is_asset = path.starts_with("/pkg/") || path == "/favicon.ico" || path == "/health";
    let session = match cookie_token(req.headers()) {
        Some(token) if !is_asset => match auth::lookup_session(&state.pool, &token).await {
            Ok(s) => s,
            Err(e) => return e.into_response(),
        },
        _ => SessionState::Anonymous,
    };
    let clear_cookie = session == SessionState::Expired;
    req.extensions_mut().insert(session);
    let mut res = next.run(req).await;
    if clear_cookie {
        res.headers_mut().append(
            header::SET_COOKIE,
            session_cookie("", 0, state.config.secure_cookies),
        );
    }
    res
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

fn session_cookie(token: &str, max_age_secs: u64, secure: bool) -> HeaderValue {
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

fn wants_json(headers: &HeaderMap) -> bool {
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

/// Only same-site paths, so a crafted link cannot bounce a fresh login to another site.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/",
    }
}

async fn login(State(state): State<AppState>, req: Request) -> Response {
    let json = wants_json(req.headers());
    let client = client_address(&req, state.config.trust_proxy);
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
        let user = auth::authenticate(
            &state.pool,
            &state.limiter,
            &input.email,
            &input.password,
            &client,
        )
        .await?;
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
            let mut res = if json {
                Json(user).into_response()
            } else {
                Redirect::to(safe_next(next.as_deref())).into_response()
            };
            res.headers_mut().append(header::SET_COOKIE, cookie);
            res
        }
        Err(e) if json => e.into_response(),
        Err(e) => {
            e.log();
            let reason = match e {
                ApiError::RateLimited { .. } => "locked",
                ApiError::Unauthorized(_) => "invalid",
                ApiError::BadRequest(_) => "input",
                _ => "server",
            };
            Redirect::to(&format!("/login?error={reason}")).into_response()
        }
    }
}

async fn logout(State(state): State<AppState>, req: Request<Body>) -> Response {
    let json = wants_json(req.headers())
        || req
            .headers()
            .get(header::ACCEPT)
            .is_some_and(|v| v == "application/json");
    if let Some(token) = cookie_token(req.headers()) {
        if let Err(e) = auth::delete_session(&state.pool, &token).await {
            return e.into_response();
        }
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
    res
}
