//! The turn board: one column per active stage, cards for the turns the viewer may see, and
//! filters (stage, PM, vendor, search). Filters are URL query parameters, so the server renders a
//! filtered board without JavaScript; after hydration they apply instantly in the browser.
//!
//! The server renders the board from the board server function; in the browser the same cards
//! come from the local store (`crate::local`), which keeps them offline, applies the user's edits
//! at once and follows the server's stream. Managers move cards by dragging them or with the
//! arrow buttons, and edit a turn in its drawer; vendors record progress there. An approver's
//! board is their queue (`crate::approvals`).
use crate::api::{turn_board, AppError};
use crate::drawer::{SyncStatus, TurnDrawer};
use crate::layout::{ErrorBox, Frame};
use crate::local::{use_local, Local, SyncState, ViewCard};
use crate::new_turn::NewTurnButton;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};
use std::collections::HashMap;
use turns::model::{format_usd, Board, Stage, TurnCard};
use turns::mutation::{Change, Edit, TurnEdit};
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
        _ => "Turn board",
    }
}

#[component]
pub fn BoardPage() -> impl IntoView {
    let board = Resource::new(|| (), |_| turn_board());
    let local = use_local();
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
                        Ok(b) => {
                            local.attach(b);
                            view! { <BoardView local filters/> }.into_any()
                        }
                        // Offline after a client-side navigation: the device's copy will do.
                        Err(AppError::Network) if local.meta.get_untracked().is_some() => {
                            view! { <BoardView local filters/> }.into_any()
                        }
                        Err(e) => view! { <ErrorBox error=e/> }.into_any(),
                    }
                })}
            </Suspense>
        </Frame>
    }
}

#[component]
fn BoardView(local: Local, filters: Filters) -> impl IntoView {
    // The browser takes over from the server's paint: local storage, then the stream.
    Effect::new(move |_| local.start());
    let Some(Board { role, today, .. }) = local.meta.get_untracked() else {
        return ().into_any();
    };
    // The stages as the device knows them now: renamed, recoloured or reordered live.
    let live_stages = Memo::new(move |_| {
        local
            .meta
            .with(|m| m.as_ref().map(|m| m.stages.clone()).unwrap_or_default())
    });
    let cards = local.view();
    // `/turns/<turn id or uuid>` opens that turn (the inbox links to it), as does `/board?turn=<uuid>`.
    let by_path = use_params_map().with_untracked(|p| p.get("id"));
    let opened = use_query_map()
        .with_untracked(|q| q.get("turn").and_then(|t| t.parse().ok()))
        .or_else(|| {
            let wanted = by_path.clone()?;
            cards.with_untracked(|cs| {
                cs.iter()
                    .find(|c| c.card.turn_id == wanted || c.card.id.to_string() == wanted)
                    .map(|c| c.card.id)
            })
        });
    // Opened once hydrated: the page itself is the board's (the service worker keeps one copy
    // of it for every turn's URL), so the server renders it closed.
    let selected = RwSignal::new(None);
    // A turn's URL whose turn is not on this user's board: said, not silently ignored.
    let not_found = RwSignal::new(None::<String>);
    Effect::new(move |_| {
        if opened.is_some() {
            selected.set(opened);
        } else if by_path.is_some() {
            not_found.set(by_path.clone());
        }
    });
    let missing = move || {
        not_found.get().map(|id| view! {
            <p class="failure" role="alert" data-testid="turn-not-found">
                {format!("Turn {id} is not on your board: it may be finished, cancelled or no longer yours.")}
            </p>
        })
    };
    // An approver's board is their queue, with room beside it to decide.
    if turns::decision::level_of(role).is_some() {
        return view! { {missing} <crate::approvals::ApprovalQueue local cards opened/> }
            .into_any();
    }
    let dragging = RwSignal::new(None::<Uuid>);
    let manages = !matches!(
        role,
        Role::Vendor | Role::DfoApprover | Role::HoApprover | Role::Inspector | Role::User
    );
    // The cards that pass the filters, grouped by stage.
    let visible = Memo::new(move |_| {
        let mut by_stage: HashMap<Uuid, Vec<ViewCard>> = HashMap::new();
        cards.with(|cs| {
            for c in cs {
                if filters.matches(&c.card) {
                    by_stage.entry(c.card.stage_id).or_default().push(c.clone());
                }
            }
        });
        by_stage
    });
    let total = move || cards.with(Vec::len);
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
    // Options follow the device's tables: a stage renamed, a vendor added shows in the filters.
    let select = move |name: &'static str,
                       label: &'static str,
                       all: &'static str,
                       signal: RwSignal<String>,
                       options: fn(&Board) -> Vec<(Uuid, String)>| {
        let options = move || {
            local
                .meta
                .with(|m| m.as_ref().map(options).unwrap_or_default())
        };
        view! {
            <label class="filter">{label}
                <select name=name data-testid=format!("filter-{name}")
                    prop:value=move || signal.get()
                    on:change=move |ev| signal.set(event_target_value(&ev))>
                    <option value="">{all}</option>
                    {move || options().into_iter().map(|(id, n)| option(id, n, signal)).collect_view()}
                </select>
            </label>
        }
    };
    let show_pm = !matches!(role, Role::PropertyManager | Role::Vendor);
    let neighbours = move |stage: Uuid| {
        live_stages.with_untracked(|o| {
            let i = o.iter().position(|s| s.id == stage);
            let at = |i: Option<usize>| i.and_then(|i| o.get(i)).map(|s| (s.id, s.name.clone()));
            (at(i.and_then(|i| i.checked_sub(1))), at(i.map(|i| i + 1)))
        })
    };
    let move_card = move |card: &TurnCard, to: Uuid| {
        if card.stage_id != to {
            local.make(
                Change::EditTurn {
                    turn: card.id,
                    edits: vec![TurnEdit::Stage(Edit {
                        from: card.stage_id,
                        to,
                    })],
                },
                Some(card.version),
            );
        }
    };
    let column = move |stage: Stage| {
        let id = stage.id;
        let complete_stage = stage.is_complete_stage;
        let style = format!("--stage-color: {}", stage.color);
        let hidden = move || {
            filters
                .stage
                .with(|s| !s.is_empty() && *s != id.to_string())
        };
        let count = move || visible.with(|v| v.get(&id).map_or(0, Vec::len));
        let shown_cards = move || {
            visible.with(|v| {
                v.get(&id)
                    .map(|cs| {
                        cs.iter()
                            .take(CARDS_PER_COLUMN)
                            .cloned()
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            })
        };
        let drop = move |ev: leptos::ev::DragEvent| {
            ev.prevent_default();
            if let Some(turn) = dragging.get_untracked() {
                dragging.set(None);
                if let Some(c) =
                    cards.with_untracked(|cs| cs.iter().find(|c| c.card.id == turn).cloned())
                {
                    move_card(&c.card, id);
                }
            }
        };
        view! {
            <section class="column" style=style data-stage=stage.name.clone() class:hidden=hidden
                class:empty=move || count() == 0
                on:dragover=move |ev| if manages { ev.prevent_default() }
                on:drop=drop>
                <h2>
                    <span class="dot"></span>
                    <span class="stage-name">{stage.name.clone()}</span>
                    <span class="n" data-testid="column-count">{count}</span>
                </h2>
                <ul class="cards">
                    <For each=shown_cards key=|c| c.clone() let:c>
                        {
                            let card = c.card.clone();
                            let (prev, next) = neighbours(card.stage_id);
                            let mover = manages.then(|| {
                                let (back, fwd) = (card.clone(), card.clone());
                                view! {
                                    <div class="movers">
                                        {prev.map(|(s, name)| view! {
                                            <button type="button" class="move back" data-testid="move-back"
                                                aria-label=format!("Move {} back to {name}", back.turn_id)
                                                title=format!("Back to {name}")
                                                on:click=move |ev| { ev.stop_propagation(); move_card(&back, s) }>"◀"</button>
                                        })}
                                        {next.map(|(s, name)| view! {
                                            <button type="button" class="move forward" data-testid="move-forward"
                                                aria-label=format!("Move {} to {name}", fwd.turn_id)
                                                title=format!("On to {name}")
                                                on:click=move |ev| { ev.stop_propagation(); move_card(&fwd, s) }>"▶"</button>
                                        })}
                                    </div>
                                }
                                .into_any()
                            });
                            view! { <Card c today manages complete_stage selected dragging mover/> }
                        }
                    </For>
                </ul>
                {move || {
                    let more = count().saturating_sub(CARDS_PER_COLUMN);
                    (more > 0).then(|| view! { <p class="more">{format!("+{more} more — search or filter to narrow")}</p> })
                }}
            </section>
        }
    };
    // A column is remade when its stage's name, colour or place changes.
    let columns = view! {
        <For each=move || live_stages.get()
            key=|s| (s.id, s.name.clone(), s.color.clone(), s.display_order)
            children=column/>
    };

    view! {
        <div class="page-head">
            <h1>{heading(role)}</h1>
            <p class="count" data-testid="visible-count">{move || format!("{} of {} turns", shown(), total())}</p>
            {manages.then(|| view! { <NewTurnButton local selected/> })}
        </div>
        <SyncStatus local/>
        {missing}
        <form class="filters" method="get" action="/board">
            <label class="filter grow">"Search"
                <input type="search" name="q" placeholder="Turn, property, WO, vendor…"
                    data-testid="search"
                    // The attribute for the server's page (a search without JavaScript comes
                    // back filled in), the property for typing after hydration.
                    value=filters.search.get_untracked()
                    prop:value=move || filters.search.get()
                    on:input=move |ev| filters.search.set(event_target_value(&ev))/>
            </label>
            {select("stage", "Stage", "All stages", filters.stage,
                |b| b.stages.iter().map(|s| (s.id, s.name.clone())).collect())}
            {show_pm.then(|| select("pm", "Property manager", "All managers", filters.pm,
                |b| b.managers.iter().map(|m| (m.id, m.name.clone())).collect()))}
            {(role != Role::Vendor).then(|| select("vendor", "Vendor", "All vendors", filters.vendor,
                |b| b.vendors.iter().map(|v| (v.id, v.name.clone())).collect()))}
            <button type="submit" class="apply">"Apply"</button>
        </form>
        // After the session ended the board is empty on purpose (the sync bar says why).
        {move || (total() == 0 && local.ended.with(Option::is_none)).then(|| view! { <p class="empty">"Nothing here yet: no turns are in your scope."</p> })}
        {move || (total() > 0 && shown() == 0).then(|| view! {
            <p class="empty" data-testid="no-match">
                "No turns match these filters. "
                <a href="/board" on:click=move |ev| {
                    ev.prevent_default();
                    for f in [filters.search, filters.stage, filters.pm, filters.vendor] {
                        f.set(String::new());
                    }
                }>"Show all turns"</a>
            </p>
        })}
        <div class="board">{columns}</div>
        <TurnDrawer local selected cards/>
    }
    .into_any()
}

#[component]
fn Card(
    c: ViewCard,
    today: chrono::NaiveDate,
    manages: bool,
    /// The card is in the stage that completes a turn (its work is done by definition there).
    complete_stage: bool,
    selected: RwSignal<Option<Uuid>>,
    dragging: RwSignal<Option<Uuid>>,
    mover: Option<AnyView>,
) -> impl IntoView {
    let ViewCard { card: turn, sync } = c;
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
    let sync_badge = sync_badge(use_local(), sync);
    // The vendor's answer: accepted, or declined with why (until another vendor is given it).
    let accepted = (turn.vendor_id.is_some() && turn.vendor_accepted).then(
        || view! { <span class="badge accepted" data-testid="accepted-badge">"Accepted"</span> },
    );
    let qc = match (turn.qc_passed, turn.qc_failures.is_some()) {
        (true, _) => Some(("QC passed", "badge accepted")),
        (false, true) => Some(("QC failed", "badge sync-error")),
        (false, false) => None,
    }
    .map(|(label, class)| view! { <span class=class data-testid="qc-badge">{label}</span> });
    let declined = turn
        .decline_reason
        .clone()
        .filter(|_| turn.vendor_id.is_none())
        .map(|why| view! { <p class="declined" data-testid="declined">{format!("Declined by the vendor: {why}")}</p> });
    let rejected = turn
        .rejection_reason
        .clone()
        .filter(|_| turn.approval_status == Some(ApprovalStatus::Rejected))
        .map(|why| view! { <p class="declined" data-testid="rejection-reason">{format!("Rejected: {why}")}</p> });
    // The vendor marked the work complete: done, whatever stage the manager has it in.
    let done = turn.turn_completion_date.filter(|_| !complete_stage).map(
        |_| view! { <span class="badge accepted" data-testid="done-badge">"Work done"</span> },
    );
    let id = turn.id;
    view! {
        // The whole card opens the turn (a phone's thumb); its id button is the keyboard's way.
        <li class="card" class:overdue=overdue data-testid="turn-card" data-turn=turn.turn_id.clone()
            on:click=move |_| selected.set(Some(id))
            data-sync=sync.as_str() draggable=if manages { "true" } else { "false" }
            on:dragstart=move |_ev: leptos::ev::DragEvent| {
                #[cfg(feature = "hydrate")]
                if let Some(dt) = _ev.data_transfer() {
                    dt.set_effect_allowed("move");
                    let _ = dt.set_data("text/plain", &id.to_string());
                }
                dragging.set(Some(id));
            }>
            <div class="card-top">
                <button type="button" class="turn-id" data-testid="open-turn"
                    aria-label=format!("Open turn {}", turn.turn_id)
                    on:click=move |_| selected.set(Some(id))>{turn.turn_id.clone()}</button>
                {status}
                {accepted}
                {qc}
                {done}
                {sync_badge}
            </div>
            <div class="prop">
                {turn.property_name.clone()} " " <span class="muted">{turn.property_code.clone()}</span>
            </div>
            {money.map(|m| view! { <div class="money" data-testid="money">{m}</div> })}
            <div class="meta">
                {turn.wo_number.clone().map(|w| view! { <span class="wo" data-testid="wo">{w}</span> })}
                <span class="vendor" data-testid="vendor">{turn.vendor_name.clone().unwrap_or_else(|| "No vendor yet".into())}</span>
                {days.map(|d| view! {
                    <span class="days">{if turn.turn_completion_date.is_some() { format!("{d} turn days") } else { format!("{d} days vacant") }}</span>
                })}
                {overdue.then(|| view! { <span class="badge overdue-badge" data-testid="overdue">"Overdue"</span> })}
            </div>
            {declined}
            {rejected}
            {mover}
        </li>
    }
}

/// A card's unsaved state, as it is: saving, waiting for signal (offline nothing is being
/// saved), in conflict, or refused.
pub fn sync_badge(local: Local, sync: SyncState) -> Option<impl IntoView> {
    let (label, class): (Signal<&'static str>, &'static str) = match sync {
        SyncState::Synced => return None,
        SyncState::Pending => (
            Signal::derive(move || {
                if local.online.get() {
                    "Saving…"
                } else {
                    "Waiting for signal"
                }
            }),
            "badge sync-pending",
        ),
        SyncState::Conflict => (Signal::stored("Conflict"), "badge sync-conflict"),
        SyncState::Error => (Signal::stored("Not saved"), "badge sync-error"),
    };
    Some(view! { <span class=class data-testid="sync-badge">{label}</span> })
}
