//! The properties the viewer may see, with search and core/non-core and PM filters.
use crate::api::{current_user, list_properties};
use crate::layout::{ErrorBox, Frame};
use crate::local::{use_local, Local};
use crate::property_form::{Editing, PropertyForm};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;
use std::collections::HashMap;
use turns::model::PropertySummary;
use turns::mutation::Change;
use turns::policy::PropertyFacts;
use turns::rows::PropertyRow;
use turns::Actor;
use uuid::Uuid;

/// Rows rendered at once; search narrows the rest.
const ROWS_SHOWN: usize = 200;

#[component]
pub fn PropertiesPage() -> impl IntoView {
    let local = use_local();
    // Browser: the device keeps the user's homes (the `properties` shape): the list follows them
    // live, and shows them when the server cannot be reached.
    Effect::new(move |_| {
        if let Some((id, _)) = local.account.get() {
            local.start_as(id);
        }
    });
    let properties = Resource::new(|| (), |_| list_properties());
    let me = Resource::new(|| (), |_| current_user());
    let query = use_query_map();
    let init =
        move |key: &str| RwSignal::new(query.with_untracked(|q| q.get(key).unwrap_or_default()));
    let (search, kind, pm) = (init("q"), init("kind"), init("pm"));
    // The page's own, not made anew (and left behind) each time the list below is drawn.
    let homes = local.homes();
    let server_list = RwSignal::new(Vec::<PropertySummary>::new());
    let list = Memo::new(move |_| summaries(local, &homes.read(), &server_list.read()));
    view! {
        <Title text="Properties · Turns"/>
        <Frame>
            <Suspense fallback=|| view! { <p class="loading">"Loading properties…"</p> }>
                {move || Suspend::new(async move {
                    let server = properties.await;
                    // Offline the server cannot say who this is: the device's copy can.
                    let by = match me.await {
                        Ok(user) => user.map(|u| u.actor()),
                        Err(_) => local.viewer(),
                    };
                    let kept = local.properties.with_untracked(|p| !p.is_empty());
                    match server {
                        Err(e) if !kept => view! { <ErrorBox error=e/> }.into_any(),
                        server => {
                            server_list.set(server.unwrap_or_default());
                            view! { <PropertyList local by homes list search kind pm/> }.into_any()
                        }
                    }
                })}
            </Suspense>
        </Frame>
    }
}

/// The homes listed: the device's copy once it has one (names of managers from what the
/// server sent, or from the board), otherwise the server's list as sent.
fn summaries(
    local: Local,
    rows: &[PropertyRow],
    server: &[PropertySummary],
) -> Vec<PropertySummary> {
    if rows.is_empty() {
        return server.to_vec();
    }
    let mut names: HashMap<Uuid, String> = HashMap::new();
    if let Some(board) = local.meta.read().as_ref() {
        names.extend(board.managers.iter().map(|n| (n.id, n.name.clone())));
    }
    for p in server {
        if let (Some(id), Some(name)) = (p.property_manager_id, &p.pm_name) {
            names.insert(id, name.clone());
        }
    }
    let sr_names: HashMap<Uuid, Option<String>> = server
        .iter()
        .map(|p| (p.id, p.sr_pm_name.clone()))
        .collect();
    let mut open: HashMap<Uuid, i64> = HashMap::new();
    for c in local.base.read().iter() {
        if c.turn_completion_date.is_none() {
            *open.entry(c.property_id).or_default() += 1;
        }
    }
    let mut list: Vec<PropertySummary> = rows
        .iter()
        .map(|r| PropertySummary {
            id: r.id,
            property_id: r.property_id.clone(),
            name: r.name.clone(),
            street_address: r.street_address.clone(),
            city: r.city.clone(),
            state: r.state.clone(),
            is_core: r.is_core.unwrap_or(true),
            is_active: r.is_active,
            property_manager_id: r.property_manager_id,
            pm_name: r.property_manager_id.and_then(|id| names.get(&id).cloned()),
            sr_pm_name: sr_names.get(&r.id).cloned().flatten(),
            open_turns: open.get(&r.id).copied().unwrap_or_default(),
        })
        .collect();
    list.sort_by(|a, b| a.name.cmp(&b.name).then(a.property_id.cmp(&b.property_id)));
    list
}

fn matches(p: &PropertySummary, q: &str, kind: &str, pm: &str) -> bool {
    let text = q.is_empty()
        || [
            Some(&p.name),
            Some(&p.property_id),
            Some(&p.street_address),
            p.city.as_ref(),
            p.pm_name.as_ref(),
        ]
        .into_iter()
        .flatten()
        .any(|f| f.to_lowercase().contains(q));
    let kind_ok = match kind {
        "core" => p.is_core,
        "non-core" => !p.is_core,
        _ => true,
    };
    let pm_ok = pm.is_empty() || p.property_manager_id.is_some_and(|id| id.to_string() == pm);
    text && kind_ok && pm_ok
}

#[component]
fn PropertyList(
    local: Local,
    /// The viewer (who may add and edit homes).
    by: Option<Actor>,
    homes: Memo<Vec<PropertyRow>>,
    list: Memo<Vec<PropertySummary>>,
    search: RwSignal<String>,
    kind: RwSignal<String>,
    pm: RwSignal<String>,
) -> impl IntoView {
    let total = move || list.with(Vec::len);
    let mut managers: Vec<(String, String)> = list.with_untracked(|l| {
        l.iter()
            .filter_map(|p| Some((p.property_manager_id?.to_string(), p.pm_name.clone()?)))
            .collect()
    });
    managers.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    managers.dedup();
    // The rows shown, themselves (not their places in `list`): the table below reads only this,
    // so a changed home redraws it even when the same homes match.
    let visible = Memo::new(move |_| {
        let q = search.with(|s| s.trim().to_lowercase());
        let (k, m) = (kind.get(), pm.get());
        list.with(|l| {
            l.iter()
                .filter(|p| matches(p, &q, &k, &m))
                .cloned()
                .collect::<Vec<_>>()
        })
    });
    let pm_selected = pm.get_untracked();
    let editing = RwSignal::new(None::<Editing>);
    // The home as the device has it, when this viewer may edit it.
    let editable = move |id: Uuid| {
        let by = by?;
        homes.with(|h| {
            h.iter()
                .find(|h| h.id == id)
                .filter(|h| {
                    by.can_manage_property(&PropertyFacts {
                        property_manager_id: h.property_manager_id,
                        sr_property_manager_id: h.sr_property_manager_id,
                    })
                })
                .cloned()
        })
    };
    let kind_selected = kind.get_untracked();
    view! {
        <div class="page-head">
            <h1>"Properties"</h1>
            <p class="count" data-testid="visible-count">{move || format!("{} of {} properties", visible.with(Vec::len), total())}</p>
            {by.filter(Actor::can_create_property).map(|_| view! {
                <button type="button" class="primary" data-testid="new-property"
                    on:click=move |_| editing.set(Some(Editing::New))>"New property"</button>
            })}
        </div>
        <form class="filters" method="get" action="/properties">
            <label class="filter grow">"Search"
                <input type="search" name="q" placeholder="Name, ID, address, city, PM…" data-testid="search"
                    prop:value=move || search.get()
                    on:input=move |ev| search.set(event_target_value(&ev))/>
            </label>
            <label class="filter">"Type"
                <select name="kind" data-testid="filter-kind" on:change=move |ev| kind.set(event_target_value(&ev))>
                    <option value="">"Core and non-core"</option>
                    <option value="core" selected=kind_selected == "core">"Core"</option>
                    <option value="non-core" selected=kind_selected == "non-core">"Non-core"</option>
                </select>
            </label>
            {(managers.len() > 1).then(|| view! {
                <label class="filter">"Property manager"
                    <select name="pm" data-testid="filter-pm" on:change=move |ev| pm.set(event_target_value(&ev))>
                        <option value="">"All managers"</option>
                        {managers.into_iter().map(|(id, name)| {
                            let selected = id == pm_selected;
                            view! { <option value=id selected=selected>{name}</option> }
                        }).collect_view()}
                    </select>
                </label>
            })}
            <button type="submit" class="apply">"Apply"</button>
        </form>
        {move || (total() == 0).then(|| view! { <p class="empty">"No properties are in your scope."</p> })}
        <table class="properties">
            <thead>
                <tr>
                    <th>"ID"</th><th>"Property"</th><th>"Address"</th><th>"Type"</th>
                    <th>"PM"</th><th>"Senior PM"</th><th class="num">"Open turns"</th><th></th>
                </tr>
            </thead>
            <tbody>
                {move || {
                    visible.with(|shown| {
                        shown.iter().take(ROWS_SHOWN).map(|p| {
                            let p = p.clone();
                            let address = [Some(p.street_address.clone()), p.city.clone(), p.state.clone()]
                                .into_iter().flatten().collect::<Vec<_>>().join(", ");
                            view! {
                                <tr data-testid="property-row" data-property=p.property_id.clone()>
                                    <td data-label="ID">{p.property_id.clone()}</td>
                                    <td data-label="Property" class="strong">{p.name.clone()}</td>
                                    <td data-label="Address">{address}</td>
                                    <td data-label="Type">
                                        <span class=if p.is_core { "badge core" } else { "badge non-core" }>
                                            {if p.is_core { "Core" } else { "Non-core" }}
                                        </span>
                                    </td>
                                    <td data-label="PM">{p.pm_name.clone().unwrap_or_default()}</td>
                                    <td data-label="Senior PM">{p.sr_pm_name.clone().unwrap_or_default()}</td>
                                    <td data-label="Open turns" class="num">{p.open_turns}</td>
                                    <td>
                                        {editable(p.id).map(|home| view! {
                                            <button type="button" class="link" data-testid="edit-property"
                                                aria-label=format!("Edit {}", home.name)
                                                on:click=move |_| editing.set(Some(Editing::Home(home.clone())))>"Edit"</button>
                                        })}
                                    </td>
                                </tr>
                            }
                        }).collect_view()
                    })
                }}
            </tbody>
        </table>
        <RefusedHomes local editing/>
        {by.map(|by| view! { <PropertyForm local by editing/> })}
        {move || {
            let more = visible.with(Vec::len).saturating_sub(ROWS_SHOWN);
            (more > 0).then(|| view! { <p class="more">{format!("+{more} more — search to narrow")}</p> })
        }}
    }
}

/// Homes this device added that the server refused, with why, to fix and send again.
#[component]
fn RefusedHomes(local: Local, editing: RwSignal<Option<Editing>>) -> impl IntoView {
    let refused = Memo::new(move |_| {
        local.failed.with(|failed| {
            failed
                .iter()
                .filter_map(|f| match &f.mutation.change {
                    Change::CreateProperty(home) => Some((
                        f.mutation.id,
                        home.clone(),
                        f.rejection.message().to_string(),
                    )),
                    _ => None,
                })
                .collect::<Vec<_>>()
        })
    });
    view! {
        <ul class="rejected" data-testid="refused-homes">
            {move || refused.get().into_iter().map(|(failed, home, reason)| {
                let what = Editing::Refused { failed, home: home.clone(), reason: reason.clone() };
                view! {
                    <li data-testid="refused-home">
                        <strong>{format!("Not saved: {} ({}). ", home.name, home.property_id)}</strong>
                        {reason}
                        <button type="button" data-testid="fix-property"
                            on:click=move |_| editing.set(Some(what.clone()))>"Fix"</button>
                    </li>
                }
            }).collect_view()}
        </ul>
    }
}
