//! The page a password link opens (`/password/<token>`): a new user sets their first password,
//! or one who forgot sets a new one. No session needed (the link is the credential); the policy
//! (`turns::password`) is checked as typed and again on the server. Once set, the user is logged
//! in here and every other session of theirs has ended.
use crate::api::{password_link_owner, use_password_link, AppError};
use crate::layout::ErrorBox;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

#[component]
pub fn PasswordLinkPage() -> impl IntoView {
    let token = use_params_map().with_untracked(|p| p.get("token").unwrap_or_default());
    // The token is a credential: kept out of caches and out of any other site's referrer.
    #[cfg(feature = "ssr")]
    if let Some(res) = use_context::<leptos_axum::ResponseOptions>() {
        use http::header::{HeaderValue, CACHE_CONTROL, REFERRER_POLICY};
        res.insert_header(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res.insert_header(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    }
    let owner = Resource::new(|| (), {
        let token = token.clone();
        move |_| password_link_owner(token.clone())
    });
    view! {
        <Title text="Set your password · Turns"/>
        <main class="login">
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || {
                    let token = token.clone();
                    Suspend::new(async move {
                        match owner.await {
                            Ok(email) => view! { <SetPassword token email/> }.into_any(),
                            Err(e) => view! {
                                <div class="login-card" data-testid="link-gone">
                                    <h1>"Turns"</h1>
                                    <ErrorBox error=e/>
                                    <p><a href="/login">"Go to the login page"</a></p>
                                </div>
                            }.into_any(),
                        }
                    })
                }}
            </Suspense>
        </main>
    }
}

#[component]
fn SetPassword(token: String, email: String) -> impl IntoView {
    let new = RwSignal::new(String::new());
    let again = RwSignal::new(String::new());
    let problem = RwSignal::new(None::<AppError>);
    let set = Action::new(move |(token, password): &(String, String)| {
        let (token, password) = (token.clone(), password.clone());
        async move { use_password_link(token, password).await }
    });
    Effect::new(move |_| match set.value().get() {
        // A full load: the board starts with the new session's cookie.
        #[cfg(feature = "hydrate")]
        Some(Ok(())) => {
            let _ = window().location().set_href("/board");
        }
        Some(Err(e)) => problem.set(Some(e)),
        _ => {}
    });
    let submit = {
        let email = email.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            let password = new.get_untracked();
            if password != again.get_untracked() {
                return problem.set(Some(AppError::BadRequest(
                    "The password and its repetition differ.".into(),
                )));
            }
            if let Some(p) = turns::password::problem(&password, &email) {
                return problem.set(Some(AppError::BadRequest(p)));
            }
            problem.set(None);
            set.dispatch((token.clone(), password));
        }
    };
    let input = |label: &'static str, testid: &'static str, value: RwSignal<String>| {
        view! {
            <label>{label}
                <input type="password" autocomplete="new-password" required data-testid=testid
                    prop:value=move || value.get() on:input=move |ev| value.set(event_target_value(&ev))/>
            </label>
        }
    };
    view! {
        <form class="login-card" on:submit=submit data-testid="set-password">
            <h1>"Set your password"</h1>
            <p class="muted">{format!("For {email}. At least 12 characters; a few words you will remember work well.")}</p>
            // For password managers: whose password this is.
            <input type="email" name="username" autocomplete="username" value=email hidden readonly/>
            {move || problem.get().map(|e| view! { <ErrorBox error=e/> })}
            {input("New password", "link-password", new)}
            {input("New password again", "link-password-again", again)}
            <button type="submit" class="primary" data-testid="link-save" disabled=move || set.pending().get()>
                "Set password and log in"
            </button>
        </form>
    }
}
