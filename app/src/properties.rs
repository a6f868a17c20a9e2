//! The properties the viewer may see, with search and core/non-core and PM filters.
use crate::api::list_properties;
use crate::layout::{ErrorBox, Frame};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;
use turns::model::PropertySummary;

/// Rows rendered at once; search narrows the rest.
const ROWS_SHOWN: usize = 200;

#[component]
pub fn PropertiesPage() -> impl IntoView {
    let properties = Resource::new(|| (), |_| list_properties());
    let query = use_query_map();
    let init =
        move |key: &str| RwSignal::new(query.with_untracked(|q| q.get(key).unwrap_or_default()));
    let (search, kind, pm) = (init("q"), init("kind"), init("pm"));
    view! {
        <Title text="Properties · Turns"/>
        <Frame>
            <Suspense fallback=|| view! { <p class="loading">"Loading properties…"</p> }>
                {move || Suspend::new(async move {
                    match properties.await {
                        Ok(list) => view! { <PropertyList list search kind pm/> }.into_any(),
                        Err(e) => view! { <ErrorBox error=e/> }.into_any(),
                    }
                })}
            </Suspense>
        </Frame>
    }
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
    list: Vec<PropertySummary>,
    search: RwSignal<String>,
    kind: RwSignal<String>,
    pm: RwSignal<String>,
) -> impl IntoView {
    let total = list.len();
    let mut managers: Vec<(String, String)> = list
        .iter()
        .filter_map(|p| Some((p.property_manager_id?.to_string(), p.pm_name.clone()?)))
        .collect();
    managers.sort_by(|a, b| a.1.cmp(&b.1));
    managers.dedup();
    let list = StoredValue::new(list);
    let visible = Memo::new(move |_| {
        let q = search.with(|s| s.trim().to_lowercase());
        let (k, m) = (kind.get(), pm.get());
        list.with_value(|l| {
            l.iter()
                .enumerate()
                .filter(|(_, p)| matches(p, &q, &k, &m))
                .map(|(i, _)| i)
                .collect::<Vec<_>>()
        })
    });
    let pm_selected = pm.get_untracked();
    let kind_selected = kind.get_untracked();
    view! {
        <div class="page-head">
            <h1>"Properties"</h1>
            <p class="count" data-testid="visible-count">{move || format!("{} of {total} properties", visible.with(Vec::len))}</p>
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
        {(total == 0).then(|| view! { <p class="empty">"No properties are in your scope."</p> })}
        <table class="properties">
            <thead>
                <tr>
                    <th>"ID"</th><th>"Property"</th><th>"Address"</th><th>"Type"</th>
                    <th>"PM"</th><th>"Senior PM"</th><th class="num">"Open turns"</th>
                </tr>
            </thead>
            <tbody>
                {move || {
                    let ids = visible.get();
                    list.with_value(|l| {
                        ids.iter().take(ROWS_SHOWN).map(|&i| {
                            let p = l[i].clone();
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
                                </tr>
                            }
                        }).collect_view()
                    })
                }}
            </tbody>
        </table>
        {move || {
            let more = visible.with(Vec::len).saturating_sub(ROWS_SHOWN);
            (more > 0).then(|| view! { <p class="more">{format!("+{more} more — search to narrow")}</p> })
        }}
    }
}
