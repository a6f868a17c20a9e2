//! The login page: a plain form post to /auth/login, so it works before (or without) the wasm.
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

/// The message and HTTP status for the `error`/`notice` the login handler redirected with.
fn message(error: Option<&str>, notice: Option<&str>) -> Option<(&'static str, u16, bool)> {
    let m = match (error, notice) {
        (Some("invalid"), _) => ("Wrong email or password.", 401, true),
        (Some("locked"), _) => (
            "Too many failed attempts. Wait a few minutes, then try again.",
            429,
            true,
        ),
        (Some("input"), _) => ("Enter your email address and password.", 400, true),
        (Some("expired"), _) => ("Your session expired. Please log in again.", 401, true),
        (Some("required"), _) => ("Please log in to continue.", 200, false),
        (Some("server"), _) => (
            "Something went wrong on our side. Please try again.",
            500,
            true,
        ),
        (_, Some("logged_out")) => ("You have been logged out.", 200, false),
        _ => return None,
    };
    Some(m)
}

#[component]
pub fn LoginPage() -> impl IntoView {
    let query = use_query_map();
    let (error, notice, next) =
        query.with_untracked(|q| (q.get("error"), q.get("notice"), q.get("next")));
    let msg = message(error.as_deref(), notice.as_deref());
    #[cfg(feature = "ssr")]
    if let (Some((_, status, _)), Some(res)) = (msg, use_context::<leptos_axum::ResponseOptions>())
    {
        if let Ok(code) = axum::http::StatusCode::from_u16(status) {
            res.set_status(code);
        }
    }
    view! {
        <Title text="Log in · Turns"/>
        <main class="login">
            <form class="login-card" method="post" action="/auth/login">
                <h1>"Turns"</h1>
                <p class="muted">"Make-ready boards for managers, approvers and vendors."</p>
                {msg.map(|(text, _, is_error)| view! {
                    <p class=if is_error { "flash error" } else { "flash" } role="status" data-testid="login-message">{text}</p>
                })}
                <label>"Email"
                    <input type="email" name="email" autocomplete="username" required autofocus/>
                </label>
                <label>"Password"
                    <input type="password" name="password" autocomplete="current-password" required/>
                </label>
                <input type="hidden" name="next" value=next.unwrap_or_default()/>
                <button type="submit" class="primary">"Log in"</button>
                <p class="muted small">"Forgot your password? Your admin can give you a link to set a new one."</p>
            </form>
        </main>
    }
}
