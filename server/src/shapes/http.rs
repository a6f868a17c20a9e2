//! HTTP for shapes, Electric v1 protocol: `GET /v1/shape` for trusted callers (with the
//! `SHAPE_SECRET`), `GET /api/shapes/{name}` for browsers (the server fixes table, where, params
//! and columns from the session's policy scope), `GET /api/shapes` (one long-poll for several of
//! them: `super::moved`), and `GET /v1/health`.
use super::encode::up_to_date;
use super::{view, Handle, Offset, ShapeDef, ShapeError, ShapeServer};
use crate::authorized_shapes::NotAllowed;
use crate::http::{resolve_session, RequestSession, SessionKey};
use crate::live_sessions::{LiveGuard, OverBudget};
use crate::AppState;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tower_http::compression::CompressionLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use turns::model::SessionUser;
use turns::shape_protocol::{header as protocol_header, param, Control, HandleId, RequestOffset};

/// The shape routes, and every other request through `rest`. The shape routes are lean: they do
/// not pass `rest`'s middleware (pages' sessions, compression, tracing: a parked live request
/// holds only what it needs), and resolve a session only where they need one.
pub fn beside(state: AppState, rest: Router) -> Router {
    Router::new()
        .route("/v1/shape", get(generic_shape))
        .route("/v1/health", get(health))
        .route("/metrics", get(metrics))
        .route("/api/shapes/{name}", get(authorized_shape))
        .route(turns::shape_watch::PATH, get(super::moved::moved_shapes))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        // A phone on a weak signal loads its snapshot gzipped (only when it asks for it).
        .layer(CompressionLayer::new())
        .with_state(state)
        .fallback_service(rest)
}

const EXPOSE: &str =
    "electric-handle, electric-offset, electric-schema, electric-cursor, electric-up-to-date, etag";
/// Changes scanned per response before answering (the client continues from the offset).
pub(super) const CHANGES_PER_RESPONSE: usize = 10_000;

async fn health(State(state): State<AppState>) -> Response {
    match &state.shapes {
        Some(shapes) => {
            let role = if shapes
                .metrics
                .leader
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                "leader"
            } else {
                "follower"
            };
            axum::Json(json!({"status": "active", "role": role})).into_response()
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "stopped"})),
        )
            .into_response(),
    }
}

/// Operators only: an admin's session, or the trusted callers' `SHAPE_SECRET` as `?secret=`
/// (what a scraper sends). Anyone else gets 404, as if there were nothing here.
async fn metrics(
    State(state): State<AppState>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let session = match resolve_session(&state, &headers, false).await {
        Ok(s) => s.state,
        Err(refusal) => return refusal,
    };
    let admin = session.user().is_some_and(|u| u.role.is_admin());
    let secret_ok = state.config.shape_secret.as_deref().is_some_and(|secret| {
        params
            .iter()
            .any(|(k, v)| k == "secret" && constant_time_eq(v.as_bytes(), secret.as_bytes()))
    });
    if !admin && !secret_ok {
        return StatusCode::NOT_FOUND.into_response();
    }
    match &state.shapes {
        Some(s) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            s.metrics_text().await,
        )
            .into_response(),
        None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// Counts a live request as waiting while it exists.
pub(super) struct Waiting<'a>(&'a std::sync::atomic::AtomicI64);

impl<'a> Waiting<'a> {
    pub(super) fn new(gauge: &'a std::sync::atomic::AtomicI64) -> Self {
        gauge.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Waiting(gauge)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The protocol parameters every caller may send.
struct Protocol {
    start: RequestOffset,
    handle: Option<HandleId>,
    live: bool,
    /// Live changes as Server-Sent Events on one long response.
    sse: bool,
    cursor: Option<String>,
    changes_only: bool,
}

/// Why a shape request is refused, before any shape work.
pub(super) enum Refusal {
    /// 400 with the field and reason, in Electric's error format.
    Invalid(String, String),
    Status(StatusCode, String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            Refusal::Invalid(field, reason) => (
                StatusCode::BAD_REQUEST,
                json!({"message": "Invalid request", "errors": {field: [reason]}}),
            ),
            Refusal::Status(status, message) => (status, json!({ "message": message })),
        };
        let mut res = (status, axum::Json(body)).into_response();
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

pub(super) fn invalid(field: &str, reason: impl Into<String>) -> Refusal {
    Refusal::Invalid(field.to_string(), reason.into())
}

fn protocol(params: &[(String, String)]) -> Result<Protocol, Refusal> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let flag = |k: &str| get(k).is_some_and(|v| v == "true");
    let start: RequestOffset = match get(param::OFFSET) {
        None => return Err(invalid(param::OFFSET, "required")),
        Some(o) => o
            .parse()
            .map_err(|e| invalid(param::OFFSET, format!("{o:?} is {e}")))?,
    };
    let handle = match get(param::HANDLE) {
        None => None,
        Some(h) => {
            Some(HandleId::parse(h).ok_or_else(|| invalid(param::HANDLE, "malformed handle"))?)
        }
    };
    if matches!(start, RequestOffset::After(_)) && handle.is_none() {
        return Err(invalid(
            param::HANDLE,
            "required unless offset is -1 or now",
        ));
    }
    let changes_only = match get(param::LOG) {
        None | Some("full") => false,
        Some("changes_only") => true,
        Some(other) => {
            return Err(invalid(
                param::LOG,
                format!("{other:?} is not full or changes_only"),
            ))
        }
    };
    Ok(Protocol {
        start,
        handle,
        live: flag(param::LIVE),
        sse: flag(param::LIVE) && (flag(param::LIVE_SSE) || flag(param::EXPERIMENTAL_LIVE_SSE)),
        cursor: get(param::CURSOR).map(str::to_string),
        changes_only,
    })
}

/// `GET /v1/shape`: any synced table, where, params and columns — for trusted callers only.
async fn generic_shape(
    State(state): State<AppState>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let Some(secret) = state.config.shape_secret.as_deref() else {
        return Refusal::Status(
            StatusCode::NOT_FOUND,
            "the generic shape endpoint is off (no SHAPE_SECRET)".into(),
        )
        .into_response();
    };
    let given = params
        .iter()
        .find(|(k, _)| k == "secret")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    if !constant_time_eq(given.as_bytes(), secret.as_bytes()) {
        return Refusal::Status(
            StatusCode::UNAUTHORIZED,
            "a valid secret is required".into(),
        )
        .into_response();
    }
    let def = match generic_definition(&params) {
        Ok(d) => d,
        Err(refusal) => return refusal.into_response(),
    };
    let mut res = measured(&state, serve(&state, def, &params, &headers, None)).await;
    res.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    res
}

fn generic_definition(params: &[(String, String)]) -> Result<ShapeDef, Refusal> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let table = get("table").ok_or_else(|| invalid("table", "required"))?;
    let (schema, name) = match table.split_once('.') {
        Some((s, n)) => (unquote(s), unquote(n)),
        None => ("public".to_string(), unquote(&table)),
    };
    let mut numbered: Vec<(usize, String)> = Vec::new();
    for (k, v) in params {
        if let Some(n) = k.strip_prefix("params[").and_then(|r| r.strip_suffix(']')) {
            let n: usize = n
                .parse()
                .map_err(|_| invalid("params", format!("bad parameter name {k:?}")))?;
            numbered.push((n, v.clone()));
        }
    }
    numbered.sort();
    if numbered.iter().enumerate().any(|(i, (n, _))| *n != i + 1) {
        return Err(invalid("params", "parameters must be numbered 1..n"));
    }
    let columns =
        get("columns").map(|c| c.split(',').map(|s| unquote(s.trim())).collect::<Vec<_>>());
    let replica_full = match get("replica").as_deref() {
        None | Some("default") => false,
        Some("full") => true,
        Some(other) => {
            return Err(invalid(
                "replica",
                format!("{other:?} is not default or full"),
            ))
        }
    };
    Ok(ShapeDef {
        schema,
        table: name,
        where_clause: get("where").filter(|w| !w.trim().is_empty()),
        params: numbered.into_iter().map(|(_, v)| v).collect(),
        columns,
        replica_full,
    })
}

fn unquote(s: &str) -> String {
    s.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .map_or_else(|| s.to_string(), |x| x.replace("\"\"", "\""))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `GET /api/shapes/{name}`: the session's own view; only protocol parameters are accepted.
async fn authorized_shape(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let (user, key) = match signed_in(&state, &headers).await {
        Ok(s) => s,
        Err(refusal) => return refusal,
    };
    if let Some((k, _)) = params
        .iter()
        .find(|(k, _)| !param::PROTOCOL.contains(&k.as_str()))
    {
        return invalid(
            k,
            "not allowed: this shape's table, filter and columns are fixed by the server",
        )
        .into_response();
    }
    let def = match user_shape(&state, &name, &user).await {
        Ok(def) => def,
        Err(refusal) => return refusal,
    };
    let mut res = measured(&state, serve(&state, def, &params, &headers, Some(&key))).await;
    let h = res.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static("Cookie"));
    // One user's rows: a browser may cache them, a shared cache must not.
    let private = h
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.replace("public", "private")
                .replace(", s-maxage=3600", "")
        });
    if let Some(v) = private {
        h.insert(header::CACHE_CONTROL, header_value(&v));
    }
    res
}

/// The signed-in user of a browser's request, and the session's key.
pub(super) async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(SessionUser, SessionKey), Response> {
    let login = || {
        Refusal::Status(
            StatusCode::UNAUTHORIZED,
            "Please log in to continue.".into(),
        )
        .into_response()
    };
    let RequestSession {
        state: session,
        key,
    } = resolve_session(state, headers, true).await?;
    match (session.user(), key) {
        (Some(user), Some(key)) => Ok((user.clone(), key)),
        _ => Err(login()),
    }
}

/// The user's shape `name`, from the policy's scope (403 or 404 when there is none for them).
pub(super) async fn user_shape(
    state: &AppState,
    name: &str,
    user: &SessionUser,
) -> Result<ShapeDef, Response> {
    let since = crate::authorized_shapes::synced_since(
        chrono::Utc::now().date_naive(),
        state.config.sync_completed_days,
    );
    match crate::authorized_shapes::definition(&state.pool, name, &user.actor(), since).await {
        Ok(Ok(d)) => Ok(d),
        Err(e) => {
            tracing::error!(error = %e, shape = %name, "could not read a shape's definition");
            Err(shape_error(ShapeError::NotReady))
        }
        Ok(Err(refused)) => {
            tracing::warn!(user = %user.id, role = ?user.role, shape = %name, "refused a shape");
            let status = match refused {
                NotAllowed::Forbidden => StatusCode::FORBIDDEN,
                NotAllowed::NoSuchShape => StatusCode::NOT_FOUND,
            };
            Err(Refusal::Status(status, refused.message(name)).into_response())
        }
    }
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub(super) fn shape_error(e: ShapeError) -> Response {
    match e {
        ShapeError::Invalid { field, reason } => invalid(field, reason).into_response(),
        ShapeError::MustRefetch => {
            let mut res = (
                StatusCode::CONFLICT,
                axum::Json(json!([{"headers": {"control": Control::MustRefetch}}])),
            )
                .into_response();
            res.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=60, must-revalidate"),
            );
            res
        }
        ShapeError::NotReady => {
            let mut res = (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"message": "the change stream is catching up; retry"})),
            )
                .into_response();
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            res
        }
        ShapeError::Db(e) => crate::error::ApiError::from(e).into_response(),
    }
}

/// Seconds since 2024-10-09, rounded up to a multiple of the long-poll timeout (cache busting
/// between long-polls, as Electric does); moved on if it equals the client's.
fn cursor(long_poll: Duration, previous: Option<&str>) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let interval = long_poll.as_secs().max(1);
    let mut c = (now.saturating_sub(1_728_432_000) / interval + 1) * interval;
    if previous == Some(c.to_string().as_str()) {
        c += interval;
    }
    c.to_string()
}

/// Run a shape request's future, noting its size (what a parked live request holds besides its
/// connection: `turns_shape_request_future_bytes`).
async fn measured(
    state: &AppState,
    request: impl std::future::Future<Output = Response>,
) -> Response {
    if let Some(server) = &state.shapes {
        server.metrics.request_future_bytes.store(
            std::mem::size_of_val(&request) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
    request.await
}

/// Serve a shape request; `session` (browsers' requests) is held to its budget, and its live
/// requests end when it does.
async fn serve(
    state: &AppState,
    def: ShapeDef,
    params: &[(String, String)],
    headers: &HeaderMap,
    session: Option<&SessionKey>,
) -> Response {
    let Some(server) = state.shapes.clone() else {
        return shape_error(ShapeError::NotReady);
    };
    let p = match protocol(params) {
        Ok(p) => p,
        Err(refusal) => return refusal.into_response(),
    };
    let mut live = None;
    if let Some(SessionKey(key)) = session {
        let budget = match p.start {
            RequestOffset::Snapshot | RequestOffset::Now => state.live.start_shape(key),
            RequestOffset::After(_) if p.live => state.live.hold_live(key).map(|g| live = Some(g)),
            RequestOffset::After(_) => Ok(()),
        };
        if let Err(over) = budget {
            return over_budget(over);
        }
    }
    match respond(&server, &def, &p, headers, live).await {
        Ok(res) => res,
        Err(e) => {
            let refetch = matches!(e, ShapeError::MustRefetch);
            if matches!(e, ShapeError::Db(_)) {
                server
                    .metrics
                    .errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let mut res = shape_error(e);
            if refetch {
                // Where to go next: a handle the client's refetch (offset -1) will replace.
                res.headers_mut().insert(
                    HeaderName::from_static(protocol_header::HANDLE),
                    header_value(&super::new_handle_id(&def)),
                );
                res.headers_mut().insert(
                    HeaderName::from_static("access-control-expose-headers"),
                    HeaderValue::from_static(EXPOSE),
                );
            }
            res
        }
    }
}

pub(super) fn over_budget(over: OverBudget) -> Response {
    tracing::warn!(?over, "refused a shape request over the session's budget");
    let (message, retry) = match over {
        OverBudget::TooManyLive => ("Too many live requests for this session.".to_string(), 5),
        OverBudget::TooManyShapes { retry_after_secs } => (
            "Too many new shapes for this session; try again later.".to_string(),
            retry_after_secs,
        ),
    };
    let mut res = Refusal::Status(StatusCode::TOO_MANY_REQUESTS, message).into_response();
    res.headers_mut()
        .insert(header::RETRY_AFTER, header_value(&retry.to_string()));
    res
}

/// The answer to a live request whose session ended while it waited.
pub(super) fn session_ended() -> Response {
    Refusal::Status(
        StatusCode::UNAUTHORIZED,
        "Your session has ended. Please log in again.".into(),
    )
    .into_response()
}

/// Resolves when the request's session ends (never for requests without one).
pub(super) async fn session_end(live: &mut Option<LiveGuard>) {
    match live {
        Some(g) => g.ended().await,
        None => std::future::pending().await,
    }
}

pub(super) fn has_ended(live: &Option<LiveGuard>) -> bool {
    live.as_ref().is_some_and(LiveGuard::has_ended)
}

/// Live changes as Server-Sent Events: each message an event, each batch ending in up-to-date,
/// until a few long-poll periods have passed (the client then reconnects from its offset).
fn sse(
    server: Arc<ShapeServer>,
    handle: Arc<Handle>,
    after: Offset,
    cursor: &str,
    live: Option<LiveGuard>,
) -> Response {
    let deadline = tokio::time::Instant::now() + server.long_poll * 3;
    let id = handle.id.clone();
    let events = futures_util::stream::unfold(Some((after, live)), move |state| {
        let (server, handle) = (server.clone(), handle.clone());
        async move {
            let (mut from, mut live) = state?;
            loop {
                let mut waiter = server.wait_for_shape(&handle.shape);
                let (messages, last, utd) =
                    match server.changes(&handle, from, CHANGES_PER_RESPONSE).await {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::warn!(error = %e, "shape SSE stream ended");
                            return None;
                        }
                    };
                from = last;
                if has_ended(&live) {
                    return None;
                }
                if !messages.is_empty() {
                    let mut chunk = String::new();
                    for m in messages.iter().chain(utd.then(|| up_to_date(last)).iter()) {
                        chunk.push_str("data: ");
                        chunk.push_str(&m.to_string());
                        chunk.push_str("\n\n");
                    }
                    return Some((
                        Ok::<_, std::convert::Infallible>(bytes::Bytes::from(chunk)),
                        Some((from, live)),
                    ));
                }
                tokio::select! {
                    woke = tokio::time::timeout_at(deadline, waiter.changed()) => {
                        if woke.is_err() {
                            return None;
                        }
                    }
                    () = session_end(&mut live) => return None,
                }
            }
        }
    });
    // Fused: a layer that polls once more after the end must not meet `unfold`'s panic.
    let events = futures_util::StreamExt::fuse(events);
    let mut res = axum::body::Body::from_stream(events).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    h.insert(
        HeaderName::from_static("access-control-expose-headers"),
        HeaderValue::from_static(EXPOSE),
    );
    h.insert(
        HeaderName::from_static(protocol_header::HANDLE),
        header_value(&id),
    );
    h.insert(
        HeaderName::from_static(protocol_header::OFFSET),
        header_value(&after.to_string()),
    );
    h.insert(
        HeaderName::from_static(protocol_header::CURSOR),
        header_value(cursor),
    );
    res
}

async fn respond(
    server: &Arc<ShapeServer>,
    def: &ShapeDef,
    p: &Protocol,
    req_headers: &HeaderMap,
    mut live: Option<LiveGuard>,
) -> Result<Response, ShapeError> {
    let mut h = HeaderMap::new();
    let set = |h: &mut HeaderMap, k: &'static str, v: &str| {
        h.insert(HeaderName::from_static(k), header_value(v));
    };
    set(&mut h, "access-control-expose-headers", EXPOSE);

    let (handle, body, offset, is_up_to_date): (Arc<Handle>, Body, Offset, bool) = match p.start {
        RequestOffset::Snapshot => {
            let shape = server.resolve(def.clone()).await?;
            let (handle, body) = if p.changes_only {
                let (handle, _) = server.create_handle(shape, false).await?;
                (handle, Body::from(Bytes::from_static(b"[]")))
            } else {
                let (handle, chunks) = server.shared_snapshot(shape).await?;
                (handle, chunks.body())
            };
            set(
                &mut h,
                "cache-control",
                "public, max-age=604800, s-maxage=3600, stale-while-revalidate=2629746",
            );
            (handle, body, Offset::BEFORE_ALL, false)
        }
        RequestOffset::Now => {
            let shape = server.resolve(def.clone()).await?;
            let (handle, _) = server.create_handle(shape, false).await?;
            let offset = Offset {
                lsn: handle.start_lsn,
                op: u64::MAX,
            };
            set(
                &mut h,
                "cache-control",
                "public, max-age=60, stale-while-revalidate=300",
            );
            (
                handle,
                Body::from(json_body(vec![up_to_date(offset)])),
                offset,
                true,
            )
        }
        RequestOffset::After(after) => {
            let id = p.handle.as_ref().map_or("", HandleId::as_str);
            let handle = server.handle(id).await?;
            if handle.shape.def != *def {
                return Err(ShapeError::MustRefetch);
            }
            if p.sse {
                let cursor = cursor(server.long_poll, p.cursor.as_deref());
                return Ok(sse(server.clone(), handle, after, &cursor, live));
            }
            let deadline = tokio::time::Instant::now() + server.long_poll;
            let _waiting = p.live.then(|| Waiting::new(&server.metrics.live_waiting));
            let mut from = after;
            // Registered before reading, so a change logged in between is not missed.
            let mut waiter = p.live.then(|| server.wait_for_shape(&handle.shape));
            let read = loop {
                let read = server.read(&handle, from, CHANGES_PER_RESPONSE).await?;
                let Some(waiter) = waiter.as_mut().filter(|_| read.empty && read.up_to_date) else {
                    break read;
                };
                from = read.offset;
                let woke = tokio::select! {
                    woke = tokio::time::timeout_at(deadline, waiter.changed()) => woke.is_ok(),
                    () = session_end(&mut live) => return Ok(session_ended()),
                };
                if !woke {
                    // Nothing for this shape within the long poll: answer from the newest offset
                    // (with whatever committed in the meantime: it must not be skipped).
                    break server.read(&handle, from, CHANGES_PER_RESPONSE).await?;
                }
            };
            if has_ended(&live) {
                return Ok(session_ended());
            }
            if p.live {
                server
                    .metrics
                    .live_answered
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Ok(live_response(server, &handle, from, &read, p, req_headers));
            } else {
                set(
                    &mut h,
                    "cache-control",
                    "public, max-age=60, stale-while-revalidate=300",
                );
            }
            (
                handle,
                Body::from(read.body.clone()),
                read.offset,
                read.up_to_date,
            )
        }
    };
    set(&mut h, protocol_header::HANDLE, &handle.id);
    set(&mut h, protocol_header::OFFSET, &offset.to_string());
    if !p.live {
        set(
            &mut h,
            protocol_header::SCHEMA,
            &ShapeServer::schema_json(&handle.shape),
        );
    }
    if is_up_to_date {
        set(&mut h, protocol_header::UP_TO_DATE, "");
    }
    let etag = format!("\"{}:{}:{}\"", handle.id, p.start, offset);
    if req_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str())
    {
        let mut res = StatusCode::NOT_MODIFIED.into_response();
        *res.headers_mut() = h;
        return Ok(res);
    }
    set(&mut h, "etag", &etag);
    let mut res = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    res.headers_mut().extend(h);
    Ok(res)
}

/// A live response: the headers every request answered with `read` shares (built once, then
/// cloned: their values are shared bytes), and this request's cursor.
fn live_response(
    server: &ShapeServer,
    handle: &Handle,
    from: Offset,
    read: &view::Read,
    p: &Protocol,
    req_headers: &HeaderMap,
) -> Response {
    let shared = read.live_headers.get_or_init(|| {
        let mut h = HeaderMap::new();
        let mut set = |k: &'static str, v: &str| {
            h.insert(HeaderName::from_static(k), header_value(v));
        };
        set("access-control-expose-headers", EXPOSE);
        set("content-type", "application/json");
        set(
            "cache-control",
            "public, max-age=5, stale-while-revalidate=5",
        );
        set(protocol_header::HANDLE, &handle.id);
        set(protocol_header::OFFSET, &read.offset.to_string());
        if read.up_to_date {
            set(protocol_header::UP_TO_DATE, "");
        }
        // What the body is: the handle's log from `from` to the read's offset.
        set(
            "etag",
            &format!("\"{}:{}:{}\"", handle.id, from, read.offset),
        );
        h
    });
    let not_modified = match (
        req_headers.get(header::IF_NONE_MATCH),
        shared.get(header::ETAG),
    ) {
        (Some(asked), Some(etag)) => asked == etag,
        _ => false,
    };
    let mut res = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Response::new(Body::from(read.body.clone()))
    };
    let h = res.headers_mut();
    h.clone_from(shared);
    h.insert(
        HeaderName::from_static(protocol_header::CURSOR),
        header_value(&cursor(server.long_poll, p.cursor.as_deref())),
    );
    if not_modified {
        h.remove(header::CONTENT_TYPE);
    }
    res
}

fn json_body(messages: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&Value::Array(messages)).unwrap_or_else(|_| b"[]".to_vec())
}
