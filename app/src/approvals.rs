//! The approver's queue (tablet first): what waits for this approver, oldest request first, and
//! beside it the decision view with what the decision needs (the home, the scope and its photos,
//! the vendor and work order, the turn's history and earlier decisions, the request against the
//! cost template). Approve, approve a different amount, or reject with a reason; a decision
//! waits a few seconds with an undo before it is made, and the next turn opens.
use crate::drawer::{dialog, parse_money, refused_by_rules};
use crate::field_notes::FieldNotes;
use crate::local::{Local, ViewCard};
use crate::scope::TurnScope;
use crate::timeline::TurnTimeline;
use leptos::prelude::*;
use std::collections::HashMap;
use std::time::Duration;
use turns::decision::{cautions, days_waiting, level_of, queue};
use turns::line_items::templates_for;
use turns::model::{format_usd, TurnCard};
use turns::mutation::{Change, FieldError, Rejection};
use turns::{ApprovalLevel, Decimal};
use uuid::Uuid;

/// How long a decision can be taken back before it is made.
const UNDO_FOR: Duration = Duration::from_secs(6);

/// Reasons approvers give most, one tap each (the approver may write their own).
const COMMON_REASONS: [&str; 3] = [
    "Over budget for this home",
    "Scope needs more detail",
    "Get a second quote",
];

/// A decision taken, waiting out its undo window.
#[derive(Clone)]
struct Held {
    turn: Uuid,
    change: Change,
    version: i32,
    /// What the confirmation says, e.g. "Approved T-1 for $3,000.00".
    said: String,
}

/// The decision waiting to be made, and its timer. Made when the timer ends, when another
/// decision is taken, or when the page is left; dropped by Undo.
#[derive(Clone, Copy)]
struct Pending {
    local: Local,
    held: RwSignal<Option<Held>>,
    timer: StoredValue<Option<TimeoutHandle>>,
}

impl Pending {
    fn hold(self, decision: Held) {
        self.make_now();
        self.held.set(Some(decision));
        let handle = set_timeout_with_handle(move || self.make_now(), UNDO_FOR).ok();
        self.timer.set_value(handle);
    }

    fn make_now(self) {
        self.stop_timer();
        if let Some(h) = self.held.try_get_untracked().flatten() {
            self.held.set(None);
            self.local.make(h.change, Some(h.version));
        }
    }

    /// Take the decision back: the turn it was for.
    fn undo(self) -> Option<Uuid> {
        self.stop_timer();
        let turn = self.held.get_untracked().map(|h| h.turn);
        self.held.set(None);
        turn
    }

    fn stop_timer(self) {
        if let Some(Some(t)) = self.timer.try_get_value() {
            t.clear();
            self.timer.set_value(None);
        }
    }
}

#[component]
pub fn ApprovalQueue(
    local: Local,
    cards: Memo<Vec<ViewCard>>,
    opened: Option<Uuid>,
) -> impl IntoView {
    let Some(meta) = local.meta.get_untracked() else {
        return ().into_any();
    };
    let Some(level) = level_of(meta.role) else {
        return ().into_any();
    };
    let today = meta.today;
    let pending = Pending {
        local,
        held: RwSignal::new(None),
        timer: StoredValue::new(None),
    };
    // Leaving the page makes the waiting decision (it was taken; the window only allowed undo).
    // (Effects run in the browser only.)
    Effect::new(move |_| {
        let left = window_event_listener(leptos::ev::pagehide, move |_| pending.make_now());
        on_cleanup(move || {
            left.remove();
            pending.make_now();
        });
    });
    let held_turn = move || pending.held.with(|h| h.as_ref().map(|h| h.turn));
    let list = Memo::new(move |_| {
        let held = held_turn();
        cards.with(|cs| {
            let by_id: HashMap<Uuid, &ViewCard> = cs.iter().map(|c| (c.card.id, c)).collect();
            queue(
                cs.iter().map(|c| &c.card).filter(|c| Some(c.id) != held),
                level,
                today,
            )
            .into_iter()
            .filter_map(|c| by_id.get(&c.id).map(|v| (*v).clone()))
            .collect::<Vec<_>>()
        })
    });
    // Opened once hydrated, as the board's panel is: the page is the board's either way (the
    // service worker keeps one copy of it for every turn's URL).
    let selected = RwSignal::new(None);
    Effect::new(move |_| {
        if opened.is_some() {
            selected.set(opened);
        }
    });
    // The address bar names the open turn (`/turns/<id>`), as the board's panel does.
    Effect::new(move |_| {
        let turn = selected.get().and_then(|id| {
            cards.with_untracked(|cs| {
                cs.iter()
                    .find(|c| c.card.id == id)
                    .map(|c| c.card.turn_id.clone())
            })
        });
        dialog::show_url(turn);
    });
    // After a decision the next turn in the queue opens (the one that took its place).
    let decided = move |decision: Held| {
        let at = list.with_untracked(|l| l.iter().position(|c| c.card.id == decision.turn));
        pending.hold(decision);
        let next = list.with_untracked(|l| {
            at.and_then(|i| l.get(i).or_else(|| l.last()))
                .map(|c| c.card.id)
        });
        selected.set(next);
    };
    let undo = move |_| {
        if let Some(turn) = pending.undo() {
            selected.set(Some(turn));
        }
    };
    let count = move || list.with(Vec::len);
    view! {
        <div class="page-head">
            <h1>"Approval queue"</h1>
            <p class="count" data-testid="visible-count">{move || match count() {
                0 => "Nothing waits for you".to_string(),
                1 => "1 turn waits for you".to_string(),
                n => format!("{n} turns wait for you"),
            }}</p>
        </div>
        <crate::drawer::SyncStatus local/>
        {move || pending.held.get().map(|h| view! {
            <div class="toast" role="status" data-testid="decided">
                <span>{h.said}</span>
                <button type="button" data-testid="undo" on:click=undo>"Undo"</button>
            </div>
        })}
        <div class="queue" class:deciding=move || selected.with(Option::is_some)>
            <section class="queue-list" aria-label="Waiting for your decision">
                {move || (count() == 0).then(|| view! {
                    <p class="empty" data-testid="queue-empty">"Nothing waits for your decision."</p>
                })}
                <ul data-testid="queue">
                    <For each=move || list.get() key=|c| c.clone() let:c>
                        {queue_row(c, today, selected)}
                    </For>
                </ul>
            </section>
            <section class="decision-pane" aria-label="Decision">
                {move || match selected.get() {
                    None => view! {
                        <p class="muted pick">"Choose a turn to see everything about it and decide."</p>
                    }.into_any(),
                    Some(id) => view! {
                        <Decision local id level cards selected decided/>
                    }.into_any(),
                }}
            </section>
        </div>
    }
    .into_any()
}

/// One waiting turn: the home, the amount asked, how long it has waited. The whole row opens it.
fn queue_row(
    c: ViewCard,
    today: chrono::NaiveDate,
    selected: RwSignal<Option<Uuid>>,
) -> impl IntoView {
    let turn = c.card;
    let id = turn.id;
    let waited = match days_waiting(&turn, today) {
        Some(0) => "Asked today".to_string(),
        Some(1) => "Waiting 1 day".to_string(),
        Some(n) => format!("Waiting {n} days"),
        None => "Just asked".to_string(),
    };
    let vacant = turn.days_vacant(today).map(|d| format!("{d} days vacant"));
    let overdue = turn.is_overdue(today);
    view! {
        <li class="queue-item" class:current=move || selected.get() == Some(id)
            data-testid="queue-item" data-turn=turn.turn_id.clone()>
            <button type="button" data-testid="open-turn" on:click=move |_| selected.set(Some(id))
                aria-label=format!("{}, {}: decide", turn.property_name, turn.turn_id)>
                <span class="q-top">
                    <span class="q-prop">{turn.property_name.clone()}</span>
                    <span class="q-amount" data-testid="queue-amount">
                        {turn.turn_amount.map(format_usd).unwrap_or_else(|| "No amount".into())}
                    </span>
                </span>
                <span class="q-meta">
                    <span>{turn.turn_id.clone()}</span>
                    <span data-testid="waiting">{waited}</span>
                    {vacant.map(|v| view! { <span>{v}</span> })}
                    {overdue.then(|| view! { <span class="badge overdue-badge">"Overdue"</span> })}
                </span>
            </button>
        </li>
    }
}

/// Everything about one waiting turn, and the decision.
#[component]
fn Decision(
    local: Local,
    id: Uuid,
    level: ApprovalLevel,
    cards: Memo<Vec<ViewCard>>,
    selected: RwSignal<Option<Uuid>>,
    decided: impl Fn(Held) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let Some(turn) = cards.with_untracked(|cs| cs.iter().find(|c| c.card.id == id).cloned()) else {
        return view! { <p data-testid="not-waiting">"This turn no longer waits for you."</p> }
            .into_any();
    };
    let turn = turn.card;
    let Some(meta) = local.meta.get_untracked() else {
        return ().into_any();
    };
    let today = meta.today;
    let is_core = !meta.non_core_properties.contains(&turn.property_id);
    let home = local
        .properties
        .with_untracked(|homes| homes.iter().find(|p| p.id == turn.property_id).cloned());
    let requested = turn.turn_amount;
    // The cost template for a home of this size, if one fits: what such a turn usually costs.
    let typical = home.as_ref().and_then(|h| {
        local.templates.with_untracked(|all| {
            templates_for(all, &h.size())
                .into_iter()
                .find(|t| t.fits(&h.size()))
                .and_then(|t| Some((t.name.clone(), t.total()?)))
        })
    });
    let facts = crate::turn_facts::turn_facts(local, &turn, today);
    let versus = typical.map(|(name, total)| {
        let gap = requested.map(|r| compare(r, total)).unwrap_or_default();
        view! {
            <p class="template" data-testid="template-compare">
                {format!("Cost template “{name}”: {}", format_usd(total))}
                <span class="muted">{gap}</span>
            </p>
        }
    });
    let earlier = turn
        .approved_turn_amount
        .filter(|_| level == ApprovalLevel::Ho)
        .map(|a| view! { <p data-testid="dfo-approved">{format!("The DFO approved {}", format_usd(a))}</p> });
    view! {
        <article class="decision" data-testid="decision">
            <button type="button" class="back link" data-testid="back-to-queue"
                on:click=move |_| selected.set(None)>"← Queue"</button>
            <h2 data-testid="decision-title">{turn.property_name.clone()} " · " {turn.turn_id.clone()}</h2>
            {home.as_ref().map(|h| view! {
                <p class="muted address">{[Some(h.street_address.clone()), h.city.clone(), h.state.clone()]
                    .into_iter().flatten().collect::<Vec<_>>().join(", ")}</p>
            })}
            <div class="ask">
                <p class="asked">"Requested " <strong data-testid="requested">
                    {requested.map(format_usd).unwrap_or_else(|| "—".into())}</strong></p>
                {earlier}
                {versus}
            </div>
            <DecisionForm local turn=turn.clone() level is_core decided/>
            {facts}
            <TurnScope local turn=id home=turn.property_id editable=false money=true/>
            <FieldNotes local turn=id writes=false/>
            <TurnTimeline turn=id shown=true/>
        </article>
    }
    .into_any()
}

/// How the request compares with the template: "12% above", "5% below", "the same".
fn compare(requested: Decimal, typical: Decimal) -> String {
    if typical.is_zero() {
        return String::new();
    }
    let pct = ((requested - typical) / typical * Decimal::ONE_HUNDRED).round();
    match pct {
        p if p.is_zero() => " · the request is about the same".into(),
        p if p.is_sign_positive() => format!(" · the request is {p}% above"),
        p => format!(" · the request is {}% below", -p),
    }
}

/// Approve (what was asked, or another amount) or reject with a reason, warned first of an
/// amount above the request or above this approver's level.
#[component]
fn DecisionForm(
    local: Local,
    turn: TurnCard,
    level: ApprovalLevel,
    is_core: bool,
    decided: impl Fn(Held) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let thresholds = local
        .meta
        .with_untracked(|m| m.as_ref().map(|m| m.thresholds.clone()))
        .unwrap_or_default();
    let requested = turn.turn_amount;
    // What the approver is doing: approving what was asked, another amount, or rejecting.
    let other = RwSignal::new(false);
    let rejecting = RwSignal::new(false);
    let amount_text = RwSignal::new(requested.map(|a| a.to_string()).unwrap_or_default());
    let reason = RwSignal::new(String::new());
    let errors = RwSignal::new(Vec::<FieldError>::new());
    let typed = move || parse_money(&amount_text.get(), "amount").ok().flatten();
    let warnings = {
        let thresholds = thresholds.clone();
        move || {
            let amount = if other.get() { typed() } else { requested };
            amount
                .map(|a| cautions(level, a, requested, &thresholds, is_core))
                .unwrap_or_default()
        }
    };
    let card = StoredValue::new(turn);
    let make = move |approve: bool, amount: Option<Decimal>, said: String| {
        let c = card.get_value();
        let change = Change::DecideApproval {
            turn: c.id,
            approve,
            amount,
            reason: (!approve).then(|| reason.get_untracked().trim().to_string()),
        };
        let mut refused: Vec<FieldError> = change.validate().err().unwrap_or_default();
        if refused.is_empty() {
            if let Some(r) = refused_by_rules(local, c.clone(), std::slice::from_ref(&change)) {
                refused = match r {
                    Rejection::Invalid { fields, .. } if !fields.is_empty() => fields,
                    other => vec![FieldError::new("", other.message())],
                };
            }
        }
        if !refused.is_empty() {
            return errors.set(refused);
        }
        decided(Held {
            turn: c.id,
            change,
            version: c.version,
            said,
        });
    };
    let turn_id = card.with_value(|c| c.turn_id.clone());
    let approve_asked = {
        let turn_id = turn_id.clone();
        move |_| {
            let said = format!(
                "Approved {turn_id} for {}.",
                requested.map(format_usd).unwrap_or_default()
            );
            make(true, None, said)
        }
    };
    let approve_other = {
        let turn_id = turn_id.clone();
        move |_| match parse_money(&amount_text.get_untracked(), "amount") {
            Ok(Some(a)) => make(
                true,
                Some(a),
                format!("Approved {turn_id} for {}.", format_usd(a)),
            ),
            Ok(None) => errors.set(vec![FieldError::new(
                "amount",
                "Enter the amount to approve.",
            )]),
            Err(e) => errors.set(vec![e]),
        }
    };
    let reject = move |_| make(false, None, format!("Rejected {turn_id}."));
    view! {
        <div class="decide" data-testid="decide">
            <ul class="cautions" aria-live="polite" data-testid="cautions">
                {move || warnings().into_iter().map(|w| view! {
                    <li class="caution" data-testid="caution">{w.message()}</li>
                }).collect_view()}
            </ul>
            {move || match (other.get(), rejecting.get()) {
                (false, false) => view! {
                    <div class="actions big">
                        <button type="button" class="primary" data-testid="approve" on:click=approve_asked.clone()>
                            {format!("Approve {}", requested.map(format_usd).unwrap_or_default())}
                        </button>
                        <button type="button" data-testid="approve-other" on:click=move |_| other.set(true)>
                            "Approve a different amount"
                        </button>
                        <button type="button" class="danger" data-testid="reject" on:click=move |_| rejecting.set(true)>
                            "Reject…"
                        </button>
                    </div>
                }.into_any(),
                (true, _) => view! {
                    <div class="drawer-form">
                        <label>"Amount to approve (USD)"
                            <input type="text" inputmode="decimal" data-testid="approve-amount"
                                prop:value=move || amount_text.get()
                                on:input=move |ev| amount_text.set(event_target_value(&ev))/>
                        </label>
                        <div class="actions big">
                            <button type="button" class="primary" data-testid="confirm-approve" on:click=approve_other.clone()>
                                {move || format!("Approve {}", typed().map(format_usd).unwrap_or_default())}
                            </button>
                            <button type="button" on:click=move |_| other.set(false)>"Cancel"</button>
                        </div>
                    </div>
                }.into_any(),
                (false, true) => view! {
                    <div class="drawer-form">
                        <p class="reasons" role="group" aria-label="Common reasons">
                            {COMMON_REASONS.into_iter().map(|r| view! {
                                <button type="button" class="chip" data-testid="reason-chip"
                                    aria-pressed=move || (reason.get() == r).to_string()
                                    on:click=move |_| reason.set(r.to_string())>{r}</button>
                            }).collect_view()}
                        </p>
                        <label>"Why is it rejected? The property manager sees this."
                            <textarea data-testid="reason" prop:value=move || reason.get()
                                on:input=move |ev| reason.set(event_target_value(&ev))></textarea>
                        </label>
                        <div class="actions big">
                            <button type="button" class="danger" data-testid="confirm-reject" on:click=reject.clone()>"Reject"</button>
                            <button type="button" on:click=move |_| rejecting.set(false)>"Cancel"</button>
                        </div>
                    </div>
                }.into_any(),
            }}
            <ul class="field-errors" role="alert" data-testid="field-errors">
                {move || errors.get().into_iter().map(|e| view! { <li>{e.message}</li> }).collect_view()}
            </ul>
        </div>
    }
}
