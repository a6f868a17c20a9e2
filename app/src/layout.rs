//! The frame around signed-in pages, the error box and the 404 page.
use crate::api::{current_user, AppError};
use leptos::prelude::*;
use leptos_meta::Title;

/// Header with navigation, the signed-in user and logout, around a page's content.
#[component]
pub fn Frame(children: Children) -> impl IntoView {
    let me = Resource::new(|| (), |_| current_user());
    let local = crate::local::use_local();
    // Browser only: who is signed in now tells the local store whether its session still holds,
    // whom its notice names, and whose logout in another tab ends this one.
    Effect::new(move |_| {
        if let Some(Ok(Some(u))) = me.get() {
            local.signed_in(u.id, u.email);
        }
    });
    view! {
        <header class="topbar">
            <a class="brand" href="/board">"Turns"</a>
            <nav class="nav">
                <a href="/board">"Board"</a>
                // Homes are the managers' list; a vendor's jobs carry their addresses.
                <Suspense fallback=|| ()>
                    {move || Suspend::new(async move {
                        me.await.ok().flatten()
                            .filter(|u| u.role != turns::Role::Vendor)
                            .map(|_| view! { <a href="/properties">"Properties"</a> })
                    })}
                </Suspense>
                // The numbers of a portfolio, for those who have one.
                <Suspense fallback=|| ()>
                    {move || Suspend::new(async move {
                        me.await.ok().flatten()
                            .filter(|u| u.actor().sees_dashboard())
                            .map(|u| view! {
                                <a href="/dashboard">"Dashboard"</a>
                                {u.role.is_admin().then(|| view! { <a href="/admin">"Admin"</a> })}
                            })
                    })}
                </Suspense>
                <a href="/history">"History"</a>
                // What waits for this user, on every screen, live.
                // One badge, its number changed in place: a count that moves while notices
                // arrive does not redraw the element.
                <a href="/inbox" data-testid="inbox-link">
                    "Inbox"
                    <span class="badge unread" data-testid="inbox-count"
                        hidden=move || local.unread() == 0
                        aria-label=move || format!("{} unread", local.unread())>
                        {move || local.unread()}
                    </span>
                </a>
            </nav>
            // Photos taken on this device and not uploaded yet, on every screen.
            {move || match local.photos_waiting() {
                0 => None,
                n => Some(view! {
                    <span class="badge photos-waiting" data-testid="photos-waiting"
                        title="Photos on this device, uploaded when the signal returns">
                        {format!("{n} photo{} waiting", if n == 1 { "" } else { "s" })}
                    </span>
                }),
            }}
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    me.await.ok().flatten().map(|u| {
                        let id = u.id;
                        view! {
                            <div class="who">
                                <a class="who-name" href="/account" data-testid="user-name"
                                    title="Your account: password and devices">{u.display_name()}</a>
                                <span class="who-role" data-testid="user-role">{u.role.label()}</span>
                                // Logging out forgets this user's data on the device (from any page)
                                // and ends their other tabs.
                                <form method="post" action="/auth/logout" class="logout"
                                    on:submit=move |ev| {
                                        if confirm_log_out(local) {
                                            local.log_out(id);
                                        } else {
                                            ev.prevent_default();
                                        }
                                    }>
                                    <button type="submit">"Log out"</button>
                                </form>
                            </div>
                        }
                    })
                })}
            </Suspense>
        </header>
        <main class="page">{children()}</main>
    }
}

/// Logging out forgets what this device keeps for the user: with changes or photos that have not
/// reached the server, ask first.
fn confirm_log_out(local: crate::local::Local) -> bool {
    let (changes, photos) = (local.unsent(), local.photos_waiting());
    if changes + photos == 0 {
        return true;
    }
    let what = [(changes, "change"), (photos, "photo")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, w)| format!("{n} {w}{}", if n == 1 { "" } else { "s" }))
        .collect::<Vec<_>>()
        .join(" and ");
    let question = format!(
        "{what} on this device have not reached the server yet. Logging out deletes them. \
         Log out anyway?"
    );
    #[cfg(feature = "hydrate")]
    {
        web_sys::window()
            .and_then(|w| w.confirm_with_message(&question).ok())
            .unwrap_or(true)
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = question;
        true
    }
}

#[component]
pub fn ErrorBox(error: AppError) -> impl IntoView {
    let login = matches!(error, AppError::Unauthorized);
    view! {
        <div class="error-box" role="alert">
            <p>{error.to_string()}</p>
            {login.then(|| view! { <a href="/login">"Go to the login page"</a> })}
        </div>
    }
}

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(res) = use_context::<leptos_axum::ResponseOptions>() {
        res.set_status(axum::http::StatusCode::NOT_FOUND);
    }
    view! {
        <Title text="Not found · Turns"/>
        <Frame>
            <div class="narrow">
                <h1>"Page not found"</h1>
                <p>"There is nothing at this address. It may have moved, or the link may be wrong."</p>
                <p><a href="/board">"Back to your board"</a></p>
            </div>
        </Frame>
    }
}
