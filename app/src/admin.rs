//! The admin page: users (add, deactivate, reactivate, and a link to set their password, shown
//! once), vendor companies (add, approve, deactivate), stages, the approval thresholds, and (in
//! `admin_scope`) cost templates and QC checklists. Every change goes through the one write path
//! (`api::admin_change`: authorized, validated, audited) and the lists are read again after it. Admin work is desk work: online, not queued on the device.
use crate::admin_scope::{ChecklistsSection, TemplatesSection};
use crate::api::{
    admin_change, admin_overview, admin_password_link, AdminAnswer, AppError, PasswordLink,
};
use crate::clock::when;
use crate::drawer::parse_money;
use crate::layout::{ErrorBox, Frame};
use leptos::prelude::*;
use leptos_meta::Title;
use turns::admin::{AdminChange, NewUser, NewVendor, Overview, UserRow, VendorRow};
use turns::mutation::{FieldError, Outcome, Rejection};
use turns::{Role, Thresholds};
use uuid::Uuid;

#[component]
pub fn AdminPage() -> impl IntoView {
    let version = RwSignal::new(0_u32);
    let overview = Resource::new(move || version.get(), |_| admin_overview());
    // The last change's answer: a refusal with its fields, or a new user's password.
    let answer = RwSignal::new(None::<Result<AdminAnswer, AppError>>);
    let change = Action::new(move |c: &AdminChange| {
        let c = c.clone();
        async move { admin_change(c).await }
    });
    Effect::new(move |_| {
        if let Some(result) = change.value().get() {
            // Read again only after a change: a refusal leaves what was typed in place.
            let applied = matches!(
                result,
                Ok(AdminAnswer {
                    outcome: Outcome::Applied { .. },
                    ..
                })
            );
            answer.set(Some(result));
            if applied {
                version.update(|v| *v += 1);
            }
        }
    });
    let send = move |c: AdminChange| {
        change.dispatch(c);
    };
    // A password reset answers with a link, shown like a new user's.
    let reset = Action::new(move |user: &Uuid| admin_password_link(*user));
    Effect::new(move |_| {
        if let Some(result) = reset.value().get() {
            answer.set(Some(result.map(|link| AdminAnswer {
                outcome: Outcome::Applied { txid: None },
                link: Some(link),
            })));
        }
    });
    let reset = move |user: Uuid| {
        reset.dispatch(user);
    };
    view! {
        <Title text="Admin · Turns"/>
        <Frame>
            <div class="page-head">
                <h1>"Admin"</h1>
                <a class="button" href="/api/export/audit.csv" data-testid="export-audit">"Download the audit log (CSV)"</a>
            </div>
            {move || answer.get().map(answer_box)}
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match overview.await {
                        Ok(o) => view! { <AdminView o send reset/> }.into_any(),
                        Err(e) => view! { <ErrorBox error=e/> }.into_any(),
                    }
                })}
            </Suspense>
        </Frame>
    }
}

/// What the last change came to.
fn answer_box(answer: Result<AdminAnswer, AppError>) -> AnyView {
    match answer {
        Err(e) => view! { <ErrorBox error=e/> }.into_any(),
        Ok(AdminAnswer {
            outcome: Outcome::Rejected(r),
            ..
        }) => {
            let fields = match &r {
                Rejection::Invalid { fields, .. } => fields.clone(),
                _ => Vec::new(),
            };
            view! {
                <div class="failure" role="alert" data-testid="admin-refused">
                    <p>{r.message().to_string()}</p>
                    <ul>{fields.into_iter().map(|f: FieldError| view! { <li>{f.message}</li> }).collect_view()}</ul>
                </div>
            }
            .into_any()
        }
        Ok(AdminAnswer {
            link: Some(link), ..
        }) => link_box(link).into_any(),
        Ok(_) => {
            view! { <p class="notice-box" role="status" data-testid="admin-saved">"Saved."</p> }
                .into_any()
        }
    }
}

/// A password link for the admin to give the user (it is shown only now).
fn link_box(link: PasswordLink) -> impl IntoView {
    let url = site_url(&link.path);
    view! {
        <div class="notice-box" role="status" data-testid="password-link">
            <p>{format!("Give {} this link to set their password. It works once, until {}:", link.email, when(link.expires_at))}</p>
            <p><code data-testid="link">{url}</code></p>
        </div>
    }
}

/// `path` on this site as the admin's browser reaches it (the link goes to the same place).
fn site_url(path: &str) -> String {
    #[cfg(feature = "hydrate")]
    if let Ok(origin) = window().location().origin() {
        return format!("{origin}{path}");
    }
    path.to_string()
}

#[component]
fn AdminView(
    o: Overview,
    send: impl Fn(AdminChange) + Copy + Send + Sync + 'static,
    reset: impl Fn(Uuid) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let Overview {
        users,
        vendors,
        thresholds,
        stages,
        templates,
        qc_items,
    } = o;
    let vendor_options: Vec<(Uuid, String)> = vendors
        .iter()
        .filter(|v| v.is_active)
        .map(|v| (v.id, v.name.clone()))
        .collect();
    view! {
        <section class="admin-section" aria-labelledby="users-h">
            <h2 id="users-h">"Users"</h2>
            <p class="muted">"A new user sets their own password with a link. So does one who forgot theirs: “Password link” makes one, for a day; until it is used, their password and sessions stay. To shut someone out at once, deactivate them."</p>
            {new_user_form(vendor_options, send)}
            <table class="properties" data-testid="users">
                <thead><tr><th>"Email"</th><th>"Name"</th><th>"Role"</th><th>"Vendor"</th><th>"Status"</th><th></th></tr></thead>
                <tbody>{users.into_iter().map(|u| user_row(u, send, reset)).collect_view()}</tbody>
            </table>
        </section>
        <section class="admin-section" aria-labelledby="vendors-h">
            <h2 id="vendors-h">"Vendors"</h2>
            {new_vendor_form(send)}
            <table class="properties" data-testid="vendors">
                <thead><tr><th>"Company"</th><th>"Trade"</th><th>"Status"</th><th></th></tr></thead>
                <tbody>{vendors.into_iter().map(|v| vendor_row(v, send)).collect_view()}</tbody>
            </table>
        </section>
        <section class="admin-section" aria-labelledby="stages-h">
            <h2 id="stages-h">"Stages"</h2>
            <p class="muted">"In board order. Changes show on every open board."</p>
            <ul class="stage-list" data-testid="stages">
                {stages.iter().cloned().map(|s| stage_row(s, send)).collect_view()}
            </ul>
        </section>
        <ChecklistsSection stages qc_items send/>
        <TemplatesSection templates send/>
        <section class="admin-section" aria-labelledby="thresholds-h">
            <h2 id="thresholds-h">"Approval thresholds"</h2>
            {thresholds_form(thresholds, send)}
        </section>
    }
}

fn user_row(
    u: UserRow,
    send: impl Fn(AdminChange) + Copy + Send + Sync + 'static,
    reset: impl Fn(Uuid) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let (id, active) = (u.id, u.is_active);
    view! {
        <tr data-testid="user-row" data-email=u.email.clone()>
            <td data-label="Email">{u.email.clone()}</td>
            <td data-label="Name">{u.name.unwrap_or_default()}</td>
            <td data-label="Role">{u.role.label()}</td>
            <td data-label="Vendor">{u.vendor.unwrap_or_default()}</td>
            <td data-label="Status">{if active { "Active" } else { "Deactivated" }}</td>
            <td class="actions">
                <button type="button" data-testid=if active { "deactivate-user" } else { "reactivate-user" }
                    on:click=move |_| send(AdminChange::SetUserActive { user: id, active: !active })>
                    {if active { "Deactivate" } else { "Reactivate" }}
                </button>
                <button type="button" data-testid="reset-password" on:click=move |_| reset(id)>"Password link"</button>
            </td>
        </tr>
    }
}

fn vendor_row(
    v: VendorRow,
    send: impl Fn(AdminChange) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let (id, approved, active) = (v.id, v.is_approved, v.is_active);
    let status = match (active, approved) {
        (false, _) => "Deactivated",
        (true, true) => "Approved",
        (true, false) => "Waiting for approval",
    };
    view! {
        <tr data-testid="vendor-row" data-vendor=v.name.clone()>
            <td data-label="Company">{v.name.clone()}</td>
            <td data-label="Trade">{v.trade.unwrap_or_default()}</td>
            <td data-label="Status">{status}</td>
            <td class="actions">
                <button type="button" data-testid=if approved { "unapprove-vendor" } else { "approve-vendor" }
                    on:click=move |_| send(AdminChange::SetVendor { vendor: id, approved: !approved, active })>
                    {if approved { "Withdraw approval" } else { "Approve" }}
                </button>
                <button type="button" data-testid=if active { "deactivate-vendor" } else { "reactivate-vendor" }
                    on:click=move |_| send(AdminChange::SetVendor { vendor: id, approved, active: !active })>
                    {if active { "Deactivate" } else { "Reactivate" }}
                </button>
            </td>
        </tr>
    }
}

pub(crate) fn text_input(
    label: &'static str,
    testid: &'static str,
    kind: &'static str,
    value: RwSignal<String>,
) -> impl IntoView {
    view! {
        <label>{label}
            <input type=kind data-testid=testid prop:value=move || value.get()
                on:input=move |ev| value.set(event_target_value(&ev))/>
        </label>
    }
}

pub(crate) fn optional(s: RwSignal<String>) -> Option<String> {
    Some(s.get_untracked().trim().to_string()).filter(|v| !v.is_empty())
}

fn new_user_form(
    vendors: Vec<(Uuid, String)>,
    send: impl Fn(AdminChange) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let email = RwSignal::new(String::new());
    let first = RwSignal::new(String::new());
    let last = RwSignal::new(String::new());
    let role = RwSignal::new(Role::PropertyManager.as_str().to_string());
    let vendor = RwSignal::new(String::new());
    let add = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let role = Role::ALL
            .into_iter()
            .find(|r| r.as_str() == role.get_untracked())
            .unwrap_or(Role::User);
        send(AdminChange::CreateUser(NewUser {
            id: Uuid::new_v4(),
            email: email.get_untracked(),
            first_name: optional(first),
            last_name: optional(last),
            role,
            vendor_id: vendor
                .get_untracked()
                .parse()
                .ok()
                .filter(|_| role == Role::Vendor),
        }));
    };
    view! {
        <form class="drawer-form admin-form" on:submit=add data-testid="new-user">
            <div class="field-row">
                {text_input("Email", "user-email", "email", email)}
                {text_input("First name", "user-first", "text", first)}
                {text_input("Last name", "user-last", "text", last)}
            </div>
            <div class="field-row">
                <label>"Role"
                    <select data-testid="user-role-select" on:change=move |ev| role.set(event_target_value(&ev))>
                        {Role::ALL.into_iter().map(|r| view! {
                            <option value=r.as_str() selected=r == Role::PropertyManager>{r.label()}</option>
                        }).collect_view()}
                    </select>
                </label>
                <label>"Vendor company (vendor users)"
                    <select data-testid="user-vendor" on:change=move |ev| vendor.set(event_target_value(&ev))>
                        <option value="">"—"</option>
                        {vendors.into_iter().map(|(id, name)| view! {
                            <option value=id.to_string()>{name}</option>
                        }).collect_view()}
                    </select>
                </label>
            </div>
            <div class="actions"><button type="submit" class="primary" data-testid="add-user">"Add user"</button></div>
        </form>
    }
}

fn new_vendor_form(send: impl Fn(AdminChange) + Copy + Send + Sync + 'static) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let trade = RwSignal::new(String::new());
    let email = RwSignal::new(String::new());
    let phone = RwSignal::new(String::new());
    let add = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        send(AdminChange::CreateVendor(NewVendor {
            id: Uuid::new_v4(),
            name: name.get_untracked(),
            trade: optional(trade),
            contact_email: optional(email),
            contact_phone: optional(phone),
        }));
    };
    view! {
        <form class="drawer-form admin-form" on:submit=add data-testid="new-vendor">
            <div class="field-row">
                {text_input("Company name", "vendor-name", "text", name)}
                {text_input("Trade", "vendor-trade", "text", trade)}
                {text_input("Contact email", "vendor-email", "email", email)}
                {text_input("Contact phone", "vendor-phone", "tel", phone)}
            </div>
            <div class="actions"><button type="submit" class="primary" data-testid="add-vendor">"Add vendor"</button></div>
        </form>
    }
}

fn thresholds_form(
    t: Thresholds,
    send: impl Fn(AdminChange) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let pm = RwSignal::new(t.pm_self_approve_limit.to_string());
    let ho = RwSignal::new(t.ho_threshold.to_string());
    let non_core = RwSignal::new(t.non_core_threshold.to_string());
    let tolerance = RwSignal::new(t.change_tolerance_pct.to_string());
    let errors = RwSignal::new(Vec::<FieldError>::new());
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let read = |s: RwSignal<String>, field: &str| {
            parse_money(&s.get_untracked(), field)
                .and_then(|v| v.ok_or_else(|| FieldError::new(field, "Enter a number.")))
        };
        match (
            read(pm, "pm_self_approve_limit"),
            read(ho, "ho_threshold"),
            read(non_core, "non_core_threshold"),
            read(tolerance, "change_tolerance_pct"),
        ) {
            (Ok(a), Ok(b), Ok(c), Ok(d)) => {
                errors.set(Vec::new());
                send(AdminChange::SetThresholds(Thresholds {
                    pm_self_approve_limit: a,
                    ho_threshold: b,
                    non_core_threshold: c,
                    change_tolerance_pct: d,
                }));
            }
            (a, b, c, d) => errors.set(
                [a.err(), b.err(), c.err(), d.err()]
                    .into_iter()
                    .flatten()
                    .collect(),
            ),
        }
    };
    view! {
        <form class="drawer-form admin-form" on:submit=save data-testid="thresholds">
            <div class="field-row">
                {text_input("A PM approves alone up to (USD)", "pm-limit", "text", pm)}
                {text_input("Head office approves above (USD)", "ho-threshold", "text", ho)}
                {text_input("Non-core homes: head office above (USD)", "non-core-threshold", "text", non_core)}
                {text_input("Approval restarts when the amount rises by more than (%)", "tolerance", "text", tolerance)}
            </div>
            <ul class="field-errors" role="alert">
                {move || errors.get().into_iter().map(|e| view! { <li>{e.message}</li> }).collect_view()}
            </ul>
            <div class="actions"><button type="submit" class="primary" data-testid="save-thresholds">"Save thresholds"</button></div>
        </form>
    }
}

/// A stage: its name, colour and gates, saved together; moved earlier or later by its buttons
/// (the keyboard's way too).
fn stage_row(
    stage: turns::model::Stage,
    send: impl Fn(AdminChange) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let id = stage.id;
    let name = RwSignal::new(stage.name.clone());
    let color = RwSignal::new(stage.color.clone());
    let gates = [
        ("Amount required", RwSignal::new(stage.is_amount_required)),
        ("Vendor required", RwSignal::new(stage.is_vendor_required)),
        ("Starts approval", RwSignal::new(stage.requires_approval)),
        ("QC must pass", RwSignal::new(stage.requires_qc)),
    ];
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        send(AdminChange::EditStage {
            stage: id,
            settings: turns::admin::StageSettings {
                name: name.get_untracked(),
                color: color.get_untracked(),
                is_amount_required: gates[0].1.get_untracked(),
                is_vendor_required: gates[1].1.get_untracked(),
                requires_approval: gates[2].1.get_untracked(),
                requires_qc: gates[3].1.get_untracked(),
            },
        });
    };
    let label = stage.name.clone();
    view! {
        <li class="stage-item" data-testid="stage-row" data-stage=stage.name.clone()>
            <form class="stage-form" on:submit=save>
                <div class="movers">
                    <button type="button" data-testid="stage-earlier" aria-label=format!("Move {label} earlier")
                        on:click=move |_| send(AdminChange::MoveStage { stage: id, earlier: true })>"▲"</button>
                    <button type="button" data-testid="stage-later" aria-label=format!("Move {} later", stage.name)
                        on:click=move |_| send(AdminChange::MoveStage { stage: id, earlier: false })>"▼"</button>
                </div>
                <label>"Name"
                    <input type="text" data-testid="stage-name" prop:value=move || name.get()
                        on:input=move |ev| name.set(event_target_value(&ev))/>
                </label>
                <label>"Colour"
                    <input type="color" data-testid="stage-color" prop:value=move || color.get()
                        on:input=move |ev| color.set(event_target_value(&ev))/>
                </label>
                {gates.into_iter().map(|(text, on)| view! {
                    <label class="check">
                        <input type="checkbox" prop:checked=move || on.get()
                            on:change=move |ev| on.set(event_target_checked(&ev))/>
                        {text}
                    </label>
                }).collect_view()}
                <button type="submit" data-testid="save-stage">"Save"</button>
            </form>
        </li>
    }
}
