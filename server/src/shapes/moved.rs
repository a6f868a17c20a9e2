//! `GET /api/shapes?{name}={handle}:{offset}&…`: one long-poll for several of the user's shapes
//! (see `turns::shape_watch`). It answers with the names of those that moved past the given
//! offsets (or whose handle is no longer served), at once or when a change to one of them is
//! logged; with none after the long-poll timeout. The client then reads those shapes itself.
use super::http::{
    has_ended, invalid, over_budget, session_end, session_ended, shape_error, signed_in,
    user_shape, Waiting, CHANGES_PER_RESPONSE,
};
use super::{Handle, ShapeError, ShapeServer};
use crate::AppState;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use turns::shape_protocol::Offset;
use turns::shape_watch::{parse_position, Moved, MAX_SHAPES};

/// A shape the request watches: its handle, unless that is no longer served (it has moved).
struct Watched {
    name: String,
    handle: Option<Arc<Handle>>,
    after: Offset,
}

pub(super) async fn moved_shapes(
    State(state): State<AppState>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let Some(server) = state.shapes.clone() else {
        return shape_error(ShapeError::NotReady);
    };
    let (user, key) = match signed_in(&state, &headers).await {
        Ok(s) => s,
        Err(refusal) => return refusal,
    };
    if params.is_empty() || params.len() > MAX_SHAPES {
        return invalid("shapes", format!("name 1 to {MAX_SHAPES} shapes")).into_response();
    }
    let mut watched: Vec<Watched> = Vec::with_capacity(params.len());
    for (name, value) in &params {
        if watched.iter().any(|w| w.name == *name) {
            return invalid(name, "named twice").into_response();
        }
        let Some(position) = parse_position(value) else {
            return invalid(name, "expected {handle}:{offset}").into_response();
        };
        // The same check as the shape's own request: the user's definition, now.
        let def = match user_shape(&state, name, &user).await {
            Ok(def) => def,
            Err(refusal) => return refusal,
        };
        let handle = match server.handle(position.handle.as_str()).await {
            Ok(h) if h.shape.def == def => Some(h),
            Ok(_) | Err(ShapeError::MustRefetch) => None,
            Err(e) => return shape_error(e),
        };
        watched.push(Watched {
            name: name.clone(),
            handle,
            after: position.offset,
        });
    }
    let mut live = match state.live.hold_live(&key.0) {
        Ok(guard) => Some(guard),
        Err(over) => return over_budget(over),
    };
    let _waiting = Waiting::new(&server.metrics.live_waiting);
    let deadline = tokio::time::Instant::now() + server.long_poll;
    // Registered before reading, so a change logged in between is not missed.
    let mut waiters: Vec<super::Waiter> = watched
        .iter()
        .filter_map(|w| w.handle.as_ref())
        .map(|h| server.wait_for_shape(&h.shape))
        .collect();
    loop {
        let moved = match moved(&server, &watched).await {
            Ok(moved) => moved,
            Err(e) => return shape_error(e),
        };
        if !moved.is_empty() || waiters.is_empty() {
            return answer(moved);
        }
        let any =
            futures_util::future::select_all(waiters.iter_mut().map(|w| Box::pin(w.changed())));
        let woke = tokio::select! {
            woke = tokio::time::timeout_at(deadline, any) => woke.is_ok(),
            () = session_end(&mut live) => return session_ended(),
        };
        if has_ended(&live) {
            return session_ended();
        }
        if !woke {
            return answer(Vec::new());
        }
    }
}

/// The names of the watched shapes with changes after their offset, or no longer served.
async fn moved(server: &ShapeServer, watched: &[Watched]) -> Result<Vec<String>, ShapeError> {
    let mut moved = Vec::new();
    for w in watched {
        let has_moved = match &w.handle {
            None => true,
            Some(handle) => match server.read(handle, w.after, CHANGES_PER_RESPONSE).await {
                Ok(read) => !(read.empty && read.up_to_date),
                Err(ShapeError::MustRefetch) => true,
                Err(e) => return Err(e),
            },
        };
        if has_moved {
            moved.push(w.name.clone());
        }
    }
    Ok(moved)
}

fn answer(moved: Vec<String>) -> Response {
    let mut res = axum::Json(Moved { moved }).into_response();
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::VARY, HeaderValue::from_static("Cookie"));
    res
}
