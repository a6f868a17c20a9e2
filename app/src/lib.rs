//! Turns web app: routes, screens and server functions (SSR + hydration).
#![recursion_limit = "256"]

mod account;
mod admin;
mod admin_scope;
pub mod api;
mod approvals;
mod board;
mod charts;
mod clock;
mod conflict;
mod dashboard;
mod drawer;
mod field_notes;
mod history;
mod inbox;
mod layout;
pub mod local;
mod login;
mod new_turn;
mod password_link;
mod properties;
mod property_form;
mod scope;
#[cfg(feature = "ssr")]
pub mod server;
mod timeline;
mod turn_facts;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{path, SsrMode};

/// Pages that need a signed-in user (the server redirects to /login without one).
pub const PROTECTED_PAGES: [&str; 8] = [
    "/account",
    "/admin",
    "/board",
    "/turns",
    "/properties",
    "/history",
    "/inbox",
    "/dashboard",
];

pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light"/>
                <link rel="icon" href="/favicon.ico"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <script src="/offline.js" defer></script>
                <MetaTags/>
                // Without JavaScript nothing syncs: no sync status to claim otherwise.
                <noscript><style>".sync-bar { display: none; }"</style></noscript>
            </head>
            <body>
                <App/>
                // Without JavaScript the page is the server's copy, as it was when it loaded.
                // (After the app, which hydration walks from the body's first child.)
                <noscript>
                    <p class="noscript" data-testid="noscript">
                        "JavaScript is off, so this page shows what the server had when it loaded. \
                         Editing, live updates and working offline need JavaScript: turn it on and reload."
                    </p>
                </noscript>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    provide_context(local::Local::new());
    // Effects run only in the browser: this flips once the wasm has hydrated the page.
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    view! {
        <Stylesheet id="leptos" href="/pkg/turns.css"/>
        <Title text="Turns"/>
        <div id="app" data-hydrated=move || hydrated.get().to_string()>
            <Router>
                <Routes fallback=layout::NotFound>
                    <Route path=path!("/login") view=login::LoginPage/>
                    <Route path=path!("/password/:token") view=password_link::PasswordLinkPage ssr=SsrMode::Async/>
                    // Async: the whole page (and its status code) is ready before the first byte,
                    // so it works without JavaScript; streaming out of order needs a script.
                    <Route path=path!("/board") view=board::BoardPage ssr=SsrMode::Async/>
                    <Route path=path!("/turns/:id") view=board::BoardPage ssr=SsrMode::Async/>
                    <Route path=path!("/properties") view=properties::PropertiesPage ssr=SsrMode::Async/>
                    <Route path=path!("/history") view=history::HistoryPage ssr=SsrMode::Async/>
                    <Route path=path!("/dashboard") view=dashboard::DashboardPage ssr=SsrMode::Async/>
                    <Route path=path!("/admin") view=admin::AdminPage ssr=SsrMode::Async/>
                    <Route path=path!("/account") view=account::AccountPage ssr=SsrMode::Async/>
                    <Route path=path!("/inbox") view=inbox::InboxPage/>
                </Routes>
            </Router>
        </div>
    }
}

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(App);
}
