//! The whole HTTP app: plain routes from `turns-server`, Leptos pages and server functions, and
//! the layers they pass (session, login guard for pages, security headers, compression,
//! tracing); beside them the shape routes, which stay lean (see `turns_server::shapes::http`).
use crate::{shell, App, PROTECTED_PAGES};
use axum::http::{header, HeaderValue};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::Router;
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};
use tower_http::compression::CompressionLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use turns_server::http::{require_login_for_pages, same_origin_writes, session_layer};
use turns_server::AppState;

pub fn router(state: AppState, options: LeptosOptions) -> Router {
    let routes = generate_route_list(App);
    let context_state = state.clone();
    let state_for_shapes = state.clone();
    let pages = Router::new()
        .leptos_routes_with_context(
            &options,
            routes,
            move || provide_context(context_state.clone()),
            {
                let options = options.clone();
                move || shell(options.clone())
            },
        )
        .fallback(leptos_axum::file_and_error_handler(shell))
        .with_state(options);

    let rest = Router::new()
        .merge(turns_server::http::routes().with_state(state.clone()))
        .merge(turns_server::photos::routes().with_state(state.clone()))
        .merge(turns_server::export::routes().with_state(state.clone()))
        .merge(pages)
        .layer(from_fn(|req, next| {
            require_login_for_pages(req, next, &PROTECTED_PAGES)
        }))
        .layer(from_fn_with_state(state, session_layer))
        .layer(from_fn(same_origin_writes))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(CompressionLayer::new())
        .layer(TraceLayer::new_for_http());
    turns_server::shapes::http::beside(state_for_shapes, rest)
}
