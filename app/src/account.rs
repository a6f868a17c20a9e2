//! The signed-in user's account: change the password (the current one asked for; the policy in
//! `turns::password`, checked here as typed and again on the server; other devices logged out),
//! and the sessions open on other devices, with "log out everywhere else".
use crate::api::{change_my_password, log_out_elsewhere, my_sessions, AppError};
use crate::clock::when;
use crate::layout::{ErrorBox, Frame};
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn AccountPage() -> impl IntoView {
    let version = RwSignal::new(0_u32);
    let sessions = Resource::new(move || version.get(), |_| my_sessions());
    let said = RwSignal::new(None::<Result<String, AppError>>);
    let current = RwSignal::new(String::new());
    let new = RwSignal::new(String::new());
    let again = RwSignal::new(String::new());
    let email = crate::local::use_local().email();
    let change = Action::new(move |(current, new): &(String, String)| {
        let (current, new) = (current.clone(), new.clone());
        async move { change_my_password(current, new).await }
    });
    let end_others = Action::new(move |_: &()| log_out_elsewhere());
    Effect::new(move |_| {
        if let Some(r) = change.value().get() {
            if r.is_ok() {
                for s in [current, new, again] {
                    s.set(String::new());
                }
            }
            said.set(Some(r.map(|()| {
                "Password changed. Your other devices are logged out.".to_string()
            })));
            version.update(|v| *v += 1);
        }
    });
    Effect::new(move |_| {
        if let Some(r) = end_others.value().get() {
            said.set(Some(r.map(|n| match n {
                0 => "No other device was logged in.".to_string(),
                1 => "1 other device is logged out.".to_string(),
                n => format!("{n} other devices are logged out."),
            })));
            version.update(|v| *v += 1);
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let (c, n) = (current.get_untracked(), new.get_untracked());
        if n != again.get_untracked() {
            return said.set(Some(Err(AppError::BadRequest(
                "The new password and its repetition differ.".into(),
            ))));
        }
        if let Some(problem) = turns::password::problem(&n, email.as_deref().unwrap_or("")) {
            return said.set(Some(Err(AppError::BadRequest(problem))));
        }
        change.dispatch((c, n));
    };
    let input = |label: &'static str,
                 testid: &'static str,
                 auto: &'static str,
                 value: RwSignal<String>| {
        view! {
            <label>{label}
                <input type="password" autocomplete=auto data-testid=testid prop:value=move || value.get()
                    on:input=move |ev| value.set(event_target_value(&ev))/>
            </label>
        }
    };
    view! {
        <Title text="Account · Turns"/>
        <Frame>
            <div class="page-head"><h1>"Your account"</h1></div>
            {move || said.get().map(|r| match r {
                Ok(m) => view! { <p class="notice-box" role="status" data-testid="account-saved">{m}</p> }.into_any(),
                Err(e) => view! { <ErrorBox error=e/> }.into_any(),
            })}
            <section class="admin-section" aria-labelledby="password-h">
                <h2 id="password-h">"Change your password"</h2>
                <form class="drawer-form admin-form narrow" on:submit=submit data-testid="change-password">
                    {input("Current password", "current-password", "current-password", current)}
                    {input("New password (at least 12 characters)", "new-password", "new-password", new)}
                    {input("New password again", "new-password-again", "new-password", again)}
                    <div class="actions">
                        <button type="submit" class="primary" data-testid="save-password">"Change password"</button>
                    </div>
                </form>
            </section>
            <section class="admin-section" aria-labelledby="sessions-h">
                <h2 id="sessions-h">"Where you are logged in"</h2>
                <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                    {move || Suspend::new(async move {
                        match sessions.await {
                            Ok(list) => view! {
                                <ul class="sessions" data-testid="sessions">
                                    {list.into_iter().map(|s| view! {
                                        <li data-testid="session">
                                            {format!("Logged in {}", when(s.created_at))}
                                            {s.this_one.then(|| view! { <strong>" · this device"</strong> })}
                                            <span class="muted">{format!(" · until {}", when(s.expires_at))}</span>
                                        </li>
                                    }).collect_view()}
                                </ul>
                            }.into_any(),
                            Err(e) => view! { <ErrorBox error=e/> }.into_any(),
                        }
                    })}
                </Suspense>
                <div class="actions">
                    <button type="button" data-testid="log-out-elsewhere"
                        on:click=move |_| { end_others.dispatch(()); }>"Log out everywhere else"</button>
                </div>
            </section>
        </Frame>
    }
}
