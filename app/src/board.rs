//! The turn board: one column per active stage, cards for the turns the viewer may see, and
//! filters (stage, PM, vendor, search). Filters are URL query parameters, so the server renders a
//! filtered board without JavaScript; after hydration they apply instantly in the browser.
use crate::api::turn_board;
use crate::layout::{ErrorBox, Frame};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;
use std::collections::HashMap;
use turns::model::{format_usd, Board, TurnCard};
use turns::{ApprovalStatus, Role};
use uuid::Uuid;

/// Cards rendered per column; the rest are counted (search narrows them down).
const CARDS_PER_COLUMN: usize = 100;

#[derive(Clone, Copy)]
struct Filters {
    search: RwSignal<String>,
    stage: RwSignal<String>,
    pm: RwSignal<String>,
    vendor: RwSignal<String>,
}

impl Filters {
    fn matches(&self, t: &TurnCard) -> bool {
        let is = |filter: RwSignal<String>, id: Option<Uuid>| {
            filter.with(|f| f.is_empty() || id.is_some_and(|id| id.to_string() == *f))
        };
        let q = self.search.with(|s| s.trim().to_lowercase());
        let text_matches = q.is_empty()
            || [
                Some(&t.turn_id),
                Some(&t.property_name),
                Some(&t.property_code),
                t.vendor_name.as_ref(),
                t.wo_number.as_ref(),
                t.pm_name.as_ref(),
            ]
            .into_iter()
            .flatten()
            .any(|field| field.to_lowercase().contains(&q));
        text_matches && is(self.pm, t.pm_id) && is(self.vendor, t.vendor_id)
    }
}

fn heading(role: Role) -> &'static str {
    match role {
        Role::Vendor => "My work orders",
        Role::DfoApprover | Role::HoApprover => "Approval queue",
        _ => "Turn board",
    }
}

#[component]
pub fn BoardPage() -> impl IntoView {
    let board = Resource::new(|| (), |_| turn_board());
    let query = use_query_map();
    let init =
        move |key: &str| RwSignal::new(query.with_untracked(|q| q.get(key).unwrap_or_default()));
    let filters = Filters {
        search: init("q"),
        stage: init("stage"),
        pm: init("pm"),
        vendor: init("vendor"),
    };
    view! {
        <Title text="Board · Turns"/>
        <Frame>
            <Suspense fallback=|| view! { <p class="loading">"Loading the board…"</p> }>
                {move || Suspend::new(async move {
                    match board.await {
                        Ok(b) => view! { <BoardView board=b filters/> }.into_any(),
                        Err(e) => view! { <ErrorBox error=e/> }.into_any(),
                    }
                })}
            </Suspense>
        </Frame>
    }
}

#[component]
fn BoardView(board: Board, filters: Filters) -> impl IntoView {
    let Board {
        role,
        stages,
        turns,
        managers,
        vendors,
        today,
        ..
    } = board;
    let total = turns.len();
    let turns = StoredValue::new(turns);
    // Indices of the cards that pass the filters, grouped by stage.
    let visible = Memo::new(move |_| {
        let mut by_stage: HashMap<Uuid, Vec<usize>> = HashMap::new();
        turns.with_value(|ts| {
            for (i, t) in ts.iter().enumerate() {
                if filters.matches(t) {
                    by_stage.entry(t.stage_id).or_default().push(i);
                }
            }
        });
        by_stage
    });
    let shown = move || {
        let stage = filters.stage.get();
        visible.with(|v| {
            v.iter()
                .filter(|(id, _)| stage.is_empty() || id.to_string() == stage)
                .map(|(_, ids)| ids.len())
                .sum::<usize>()
        })
    };
    let option = |id: Uuid, name: String, selected: RwSignal<String>| {
        let value = id.to_string();
        let is_selected = value == selected.get_untracked();
        view! { <option value=value selected=is_selected>{name}</option> }
    };
    let select = |name: &'static str,
                  label: &'static str,
                  all: &'static str,
                  signal: RwSignal<String>,
                  options: Vec<(Uuid, String)>| {
        view! {
            <label class="filter">{label}
                <select name=name data-testid=format!("filter-{name}")
                    on:change=move |ev| signal.set(event_target_value(&ev))>
                    <option value="">{all}</option>
                    {options.into_iter().map(|(id, n)| option(id, n, signal)).collect_view()}
                </select>
            </label>
        }
    };
    let stage_options = stages.iter().map(|s| (s.id, s.name.clone())).collect();
    let show_pm = !matches!(role, Role::PropertyManager | Role::Vendor);
    let columns = stages
        .into_iter()
        .map(|stage| {
            let id = stage.id;
            let style = format!("--stage-color: {}", stage.color);
            let hidden = move || filters.stage.with(|s| !s.is_empty() && *s != id.to_string());
            let ids = move || visible.with(|v| v.get(&id).cloned().unwrap_or_default());
            view! {
                <section class="column" style=style data-stage=stage.name.clone() class:hidden=hidden
                    class:empty=move || ids().is_empty()>
                    <h2>
                        <span class="dot"></span>
                        <span class="stage-name">{stage.name.clone()}</span>
                        <span class="n" data-testid="column-count">{move || ids().len()}</span>
                    </h2>
                    <ul class="cards">
                        {move || {
                            let ids = ids();
                            turns.with_value(|ts| {
                                ids.iter()
                                    .take(CARDS_PER_COLUMN)
                                    .map(|&i| view! { <Card turn=ts[i].clone() today/> })
                                    .collect_view()
                            })
                        }}
                    </ul>
                    {move || {
                        let more = ids().len().saturating_sub(CARDS_PER_COLUMN);
                        (more > 0).then(|| view! { <p class="more">{format!("+{more} more — search or filter to narrow")}</p> })
                    }}
                </section>
            }
        })
        .collect_view();

    view! {
        <div class="page-head">
            <h1>{heading(role)}</h1>
            <p class="count" data-testid="visible-count">{move || format!("{} of {total} turns", shown())}</p>
        </div>
        <form class="filters" method="get" action="/board">
            <label class="filter grow">"Search"
                <input type="search" name="q" placeholder="Turn, property, WO, vendor…"
                    data-testid="search"
                    prop:value=move || filters.search.get()
                    on:input=move |ev| filters.search.set(event_target_value(&ev))/>
            </label>
            {select("stage", "Stage", "All stages", filters.stage, stage_options)}
            {show_pm.then(|| select("pm", "Property manager", "All managers", filters.pm,
                managers.into_iter().map(|m| (m.id, m.name)).collect()))}
            {(role != Role::Vendor).then(|| select("vendor", "Vendor", "All vendors", filters.vendor,
                vendors.into_iter().map(|v| (v.id, v.name)).collect()))}
            <button type="submit" class="apply">"Apply"</button>
        </form>
        {(total == 0).then(|| view! { <p class="empty">"Nothing here yet: no turns are in your scope."</p> })}
        <div class="board">{columns}</div>
    }
}

#[component]
fn Card(turn: TurnCard, today: chrono::NaiveDate) -> impl IntoView {
    let overdue = turn.is_overdue(today);
    let days = turn.days_vacant(today);
    let money = match (turn.turn_amount, turn.approved_turn_amount) {
        (Some(a), Some(ap)) if a != ap => {
            Some(format!("{} · approved {}", format_usd(a), format_usd(ap)))
        }
        (Some(a), Some(_)) => Some(format!("{} approved", format_usd(a))),
        (Some(a), None) => Some(format_usd(a)),
        (None, Some(ap)) => Some(format!("{} approved", format_usd(ap))),
        (None, None) => None,
    };
    let status = turn.approval_status.map(|s| {
        let class = format!(
            "badge status-{}",
            s.as_str().to_lowercase().replace('_', "-")
        );
        // Within the PM's limit no level approves: an approved amount means self-approved.
        let label = match (s, turn.approved_turn_amount) {
            (ApprovalStatus::Pending, Some(_)) => "PM approved",
            _ => s.label(),
        };
        view! { <span class=class data-testid="approval-status">{label}</span> }
    });
    view! {
        <li class="card" class:overdue=overdue data-testid="turn-card" data-turn=turn.turn_id.clone()>
            <div class="card-top">
                <span class="turn-id">{turn.turn_id.clone()}</span>
                {status}
            </div>
            <div class="prop">
                {turn.property_name.clone()} " " <span class="muted">{turn.property_code.clone()}</span>
            </div>
            {money.map(|m| view! { <div class="money">{m}</div> })}
            <div class="meta">
                <span class="vendor">{turn.vendor_name.clone().unwrap_or_else(|| "No vendor yet".into())}</span>
                {days.map(|d| view! {
                    <span class="days">{if turn.turn_completion_date.is_some() { format!("{d} turn days") } else { format!("{d} days vacant") }}</span>
                })}
                {overdue.then(|| view! { <span class="badge overdue-badge" data-testid="overdue">"Overdue"</span> })}
            </div>
        </li>
    }
}
