//! The turn drawer (edit a turn, decide an approval, record progress) and the sync status bar.
//!
//! Every action becomes a mutation in the local store: shown at once, sent when possible. Edits
//! carry the values the user saw when the drawer opened, so the server can merge them with other
//! people's changes or report a conflict.
use crate::field_notes::FieldNotes;
use crate::local::{ended_notice, now_ms, Ended, Failed, Local, ViewCard};
use crate::scope::TurnScope;
use crate::timeline::TurnTimeline;
use leptos::prelude::*;
use turns::model::{format_usd, TurnCard};
use turns::mutation::{field_label, Change, Edit, FieldError, Rejection, TurnEdit};
use turns::{ApprovalStatus, Decimal, Role};
use uuid::Uuid;

/// Money (or a quantity) as people type it: `$1,250.00`, `1250`, blank for none.
pub fn parse_money(text: &str, field: &str) -> Result<Option<Decimal>, FieldError> {
    let clean: String = text
        .chars()
        .filter(|c| !matches!(c, '$' | ',' | ' '))
        .collect();
    if clean.is_empty() {
        return Ok(None);
    }
    clean
        .parse::<Decimal>()
        .map(Some)
        .map_err(|_| FieldError::new(field, "Enter a number like 1250.00."))
}

#[derive(Clone, Copy)]
enum Input {
    Text,
    Money,
    Date,
}

/// A labelled input bound to a text signal.
fn field(
    label: &'static str,
    testid: &'static str,
    kind: Input,
    value: RwSignal<String>,
) -> impl IntoView {
    let (kind, mode) = match kind {
        Input::Text => ("text", None),
        Input::Money => ("text", Some("decimal")),
        Input::Date => ("date", None),
    };
    view! {
        <label>{label}
            <input type=kind inputmode=mode data-testid=testid prop:value=move || value.get()
                on:input=move |ev| value.set(event_target_value(&ev))/>
        </label>
    }
}

fn parse_date(text: &str) -> Option<chrono::NaiveDate> {
    text.parse().ok()
}

fn date_text(d: Option<chrono::NaiveDate>) -> String {
    d.map(|d| d.to_string()).unwrap_or_default()
}

fn today() -> chrono::NaiveDate {
    chrono::DateTime::from_timestamp_millis(now_ms() as i64)
        .unwrap_or_default()
        .date_naive()
}

/// The open turn's panel. It is a dialog: focus moves into it and stays there (Tab wraps),
/// Escape closes it, and focus goes back to the card that opened it. Its turn has a URL
/// (`/turns/<turn id>`): the address bar shows it while it is open, and the board's own
/// address again when it closes.
#[component]
pub fn TurnDrawer(
    local: Local,
    selected: RwSignal<Option<Uuid>>,
    cards: Memo<Vec<ViewCard>>,
) -> impl IntoView {
    let turn_id = move |id: Uuid| {
        cards.with_untracked(|cs| {
            cs.iter()
                .find(|c| c.card.id == id)
                .map(|c| c.card.turn_id.clone())
        })
    };
    // Effects run in the browser only.
    Effect::new(move |was: Option<Option<Uuid>>| {
        let now = selected.get();
        match (was.flatten(), now) {
            (_, Some(id)) => dialog::show_url(turn_id(id)),
            (Some(closed), None) => {
                dialog::show_url(None);
                if let Some(t) = turn_id(closed) {
                    dialog::focus_card(&t);
                }
            }
            (None, None) => {}
        }
        now
    });
    move || {
        selected.get().map(|id| {
            let close = move |_| selected.set(None);
            let panel = NodeRef::<leptos::html::Aside>::new();
            let first = NodeRef::<leptos::html::Button>::new();
            Effect::new(move |_| {
                if let Some(button) = first.get() {
                    let _ = button.focus();
                }
            });
            let keys = move |ev: leptos::ev::KeyboardEvent| match ev.key().as_str() {
                "Escape" => selected.set(None),
                "Tab" => {
                    #[cfg(feature = "hydrate")]
                    if let Some(panel) = panel.get_untracked() {
                        dialog::keep_focus_in(&panel, &ev);
                    }
                }
                _ => {}
            };
            view! {
                <div class="drawer-backdrop" on:click=close></div>
                <aside class="drawer" role="dialog" aria-modal="true" aria-label="Turn details"
                    data-testid="drawer" node_ref=panel on:keydown=keys>
                    <button type="button" class="close" aria-label="Close" node_ref=first on:click=close>"×"</button>
                    <DrawerBody local id selected cards/>
                </aside>
            }
        })
    }
}

/// The browser side of the panel as a dialog: its URL, focus kept inside, focus given back.
pub(crate) mod dialog {
    #[cfg(feature = "hydrate")]
    use wasm_bindgen::JsCast;

    /// Show `/turns/<turn id>` in the address bar, or the board's address (kept from when the
    /// panel opened) for `None`. Replaced, not pushed: Back leaves the board as it always did.
    #[cfg(feature = "hydrate")]
    pub fn show_url(turn: Option<String>) {
        thread_local! {
            static BOARD_URL: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
        }
        let Some(window) = web_sys::window() else {
            return;
        };
        let location = window.location();
        let here = format!(
            "{}{}",
            location.pathname().unwrap_or_default(),
            location.search().unwrap_or_default()
        );
        let to = match turn {
            Some(t) => {
                if !here.starts_with("/turns/") {
                    BOARD_URL.with(|b| *b.borrow_mut() = Some(here.clone()));
                }
                format!("/turns/{}", js_sys::encode_uri_component(&t))
            }
            None if here.starts_with("/turns/") => BOARD_URL
                .with(|b| b.borrow_mut().take())
                .unwrap_or_else(|| "/board".into()),
            None => return,
        };
        if to != here {
            if let Ok(history) = window.history() {
                let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&to));
            }
        }
    }

    /// Focus the open button of a turn's card (where the user was before the panel).
    #[cfg(feature = "hydrate")]
    pub fn focus_card(turn_id: &str) {
        let selector = format!("[data-turn=\"{turn_id}\"] [data-testid=open-turn]");
        let found = web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.query_selector(&selector).ok().flatten())
            .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok());
        if let Some(button) = found {
            let _ = button.focus();
        }
    }

    /// Tab from the panel's last control goes to its first, Shift+Tab from the first to the last.
    #[cfg(feature = "hydrate")]
    pub fn keep_focus_in(panel: &web_sys::HtmlElement, ev: &web_sys::KeyboardEvent) {
        const FOCUSABLE: &str = "a[href], button:not([disabled]), input:not([disabled]), \
                                 select:not([disabled]), textarea:not([disabled]), [tabindex=\"0\"]";
        let Ok(list) = panel.query_selector_all(FOCUSABLE) else {
            return;
        };
        let at = |i: u32| {
            list.item(i)
                .and_then(|n| n.dyn_into::<web_sys::HtmlElement>().ok())
        };
        let (Some(first), Some(last)) = (at(0), at(list.length().saturating_sub(1))) else {
            return;
        };
        let active = web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.active_element());
        let is = |e: &web_sys::HtmlElement| active.as_ref() == Some(e.unchecked_ref());
        let wrap_to = if ev.shift_key() && is(&first) {
            Some(last)
        } else if !ev.shift_key() && is(&last) {
            Some(first)
        } else {
            None
        };
        if let Some(target) = wrap_to {
            ev.prevent_default();
            let _ = target.focus();
        }
    }

    #[cfg(not(feature = "hydrate"))]
    pub fn show_url(_: Option<String>) {}

    #[cfg(not(feature = "hydrate"))]
    pub fn focus_card(_: &str) {}
}

#[component]
fn DrawerBody(
    local: Local,
    id: Uuid,
    selected: RwSignal<Option<Uuid>>,
    cards: Memo<Vec<ViewCard>>,
) -> impl IntoView {
    let current = move || cards.with(|cs| cs.iter().find(|c| c.card.id == id).cloned());
    let Some(opened) = current() else {
        return view! { <p>"This turn is no longer on your board."</p> }.into_any();
    };
    let Some(meta) = local.meta.get_untracked() else {
        return ().into_any();
    };
    let seen = opened.card.clone();
    let role = meta.role;
    let stage_name = move |s: Uuid| {
        local
            .meta
            .with_untracked(|m| {
                m.as_ref()
                    .and_then(|m| m.stages.iter().find(|x| x.id == s))
                    .map(|x| x.name.clone())
            })
            .unwrap_or_default()
    };
    let errors = RwSignal::new(Vec::<FieldError>::new());
    // Every change is checked before any is made, by its fields and then by the turn's rules as
    // this device knows the turn (the server's rules: dates in order, stage gates): a save is
    // made whole or not at all, and what is wrong shows here, where it can be fixed.
    let submit = move |changes: Vec<Change>, version: Option<i32>| {
        let invalid: Vec<FieldError> = changes
            .iter()
            .filter_map(|c| c.validate().err())
            .flatten()
            .collect();
        if !invalid.is_empty() {
            return errors.set(invalid);
        }
        if let Some(refused) = current().and_then(|c| refused_by_rules(local, c.card, &changes)) {
            return errors.set(match refused {
                Rejection::Invalid { fields, .. } if !fields.is_empty() => fields,
                other => vec![FieldError::new("", other.message())],
            });
        }
        for change in changes {
            local.make(change, version);
        }
        selected.set(None);
    };
    let status_line = move || {
        current().map(|c| {
            let TurnCard { approval_status, turn_amount, approved_turn_amount, stage_id, .. } = c.card;
            let money = [
                turn_amount.map(|a| format!("Amount {}", format_usd(a))),
                approved_turn_amount.map(|a| format!("approved {}", format_usd(a))),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" · ");
            view! {
                <p class="drawer-status">
                    <span data-testid="drawer-stage">{stage_name(stage_id)}</span>
                    {approval_status.map(|s| view! { <span class="badge" data-testid="drawer-approval">{s.label()}</span> })}
                    {c.card.qc_passed.then(|| view! { <span class="badge accepted" data-testid="drawer-qc-passed">"QC passed"</span> })}
                    {crate::board::sync_badge(local, c.sync)}
                </p>
                <p class="muted">{money}</p>
                {c.card.qc_failures.clone().map(|f| view! {
                    <p class="failure" data-testid="qc-failures">{format!("QC failed: {f}")}</p>
                })}
                {c.card.rejection_reason.clone()
                    .filter(|_| approval_status == Some(ApprovalStatus::Rejected))
                    .map(|why| view! {
                        <p class="failure" data-testid="drawer-rejection">{format!("Rejected by the approver: {why}")}</p>
                    })}
            }
        })
    };
    let failures = move || {
        local.failed.with(|f| {
            f.iter()
                .filter(|f| f.mutation.change.turn() == Some(id))
                .cloned()
                .collect::<Vec<_>>()
        })
    };
    let scopes = local.viewer().is_some_and(|v| v.is_manager());
    // Who writes in the field (the server checks the turn itself: `can_add_field_notes`).
    let field_notes = scopes || matches!(role, Role::Vendor | Role::Inspector);
    let form = match role {
        Role::Vendor => vendor_form(&seen, submit).into_any(),
        // Approvers decide in their queue (`crate::approvals`), where the decision has room.
        Role::DfoApprover | Role::HoApprover => ().into_any(),
        Role::Inspector => qc_form(local, &seen, submit).into_any(),
        Role::User => ().into_any(),
        _ => manager_form(local, &seen, submit, errors).into_any(),
    };
    // Where the work is (the vendor drives there): the home's address, from the device's copy.
    let home = seen.property_id;
    let address = move || {
        local.properties.with(|homes| {
            homes.iter().find(|p| p.id == home).map(|p| {
                [
                    Some(p.street_address.clone()),
                    p.city.clone(),
                    p.state.clone(),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", ")
            })
        })
    };
    view! {
        <h2 data-testid="drawer-title">{seen.turn_id.clone()} " · " {seen.property_name.clone()}</h2>
        {move || address().map(|a| view! { <p class="muted address" data-testid="drawer-address">{a}</p> })}
        {status_line}
        {crate::turn_facts::turn_facts(local, &seen, meta.today)}
        <For each=failures key=|f| f.mutation.id let:f>
            <FailureBox local failed=f selected/>
        </For>
        {form}
        <ul class="field-errors" role="alert" data-testid="field-errors">
            {move || errors.get().into_iter().map(|e| view! { <li>{e.message}</li> }).collect_view()}
        </ul>
        <TurnScope local turn=id home=seen.property_id editable=scopes money=role != Role::Vendor/>
        <FieldNotes local turn=id writes=field_notes/>
        <TurnTimeline turn=id/>
    }
    .into_any()
}

/// Why the core's rules would refuse `changes`, made in order to `card` with the facts the
/// board has (`None`: they would be taken).
pub(crate) fn refused_by_rules(
    local: Local,
    card: TurnCard,
    changes: &[Change],
) -> Option<Rejection> {
    let meta = local.meta.get_untracked()?;
    let rules = turns::rules::TurnRules {
        scoped: !local.scope_of(card.id).is_empty(),
        ..meta.rules_for(&card)
    };
    let mut card = card;
    for change in changes {
        match rules.apply(&card, change) {
            Ok(Some(after)) => card = after,
            Ok(None) => {}
            Err(refused) => return Some(refused),
        }
    }
    None
}

/// A refused change, with what the user can do about it.
#[component]
fn FailureBox(local: Local, failed: Failed, selected: RwSignal<Option<Uuid>>) -> impl IntoView {
    let id = failed.mutation.id;
    let turn = failed.mutation.change.turn();
    let conflict = matches!(failed.rejection, Rejection::Conflict { .. });
    let message = failed.rejection.message().to_string();
    let clashes = crate::conflict::clash_table(local, &failed);
    view! {
        <div class="failure" class:conflict=conflict data-testid=if conflict { "conflict" } else { "rejection" }>
            <p>{message}</p>
            {clashes}
            {if conflict {
                view! {
                    <div class="actions">
                        <button type="button" data-testid="keep-mine" on:click=move |_| local.retry(id)>"Keep mine"</button>
                        <button type="button" data-testid="take-theirs" on:click=move |_| local.discard(id)>"Take theirs"</button>
                        <button type="button" data-testid="edit-again" on:click=move |_| {
                            local.discard(id);
                            selected.set(None);
                            request_animation_frame(move || selected.set(turn));
                        }>"Edit"</button>
                    </div>
                }.into_any()
            } else {
                view! {
                    <div class="actions">
                        <button type="button" data-testid="discard" on:click=move |_| local.discard(id)>"Dismiss"</button>
                    </div>
                }.into_any()
            }}
        </div>
    }
}

fn manager_form(
    local: Local,
    seen: &TurnCard,
    submit: impl Fn(Vec<Change>, Option<i32>) + Copy + Send + Sync + 'static,
    errors: RwSignal<Vec<FieldError>>,
) -> impl IntoView {
    let meta = local.meta.get_untracked();
    let stages: Vec<(Uuid, String)> = meta
        .as_ref()
        .map(|m| m.stages.iter().map(|s| (s.id, s.name.clone())).collect())
        .unwrap_or_default();
    let vendors: Vec<(Uuid, String)> = meta
        .as_ref()
        .map(|m| {
            m.assignable_vendors
                .iter()
                .map(|v| (v.id, v.name.clone()))
                .collect()
        })
        .unwrap_or_default();
    let stage = RwSignal::new(seen.stage_id.to_string());
    let amount = RwSignal::new(seen.turn_amount.map(|a| a.to_string()).unwrap_or_default());
    let vendor = RwSignal::new(seen.vendor_id.map(|v| v.to_string()).unwrap_or_default());
    let wo = RwSignal::new(seen.wo_number.clone().unwrap_or_default());
    let move_out = RwSignal::new(date_text(seen.move_out_date));
    let expected = RwSignal::new(date_text(seen.expected_completion_date));
    let turn = seen.id;
    let seen = StoredValue::new(seen.clone());
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let s = seen.get_value();
        let mut edits = Vec::new();
        let amount = match parse_money(&amount.get_untracked(), "turn_amount") {
            Ok(a) => a,
            Err(e) => return errors.set(vec![e]),
        };
        // A scoped turn's amount is its scope's total, not typed.
        if amount != s.turn_amount && local.scope_of(turn).is_empty() {
            edits.push(TurnEdit::Amount(Edit {
                from: s.turn_amount,
                to: amount,
            }));
        }
        let v = vendor.get_untracked().parse::<Uuid>().ok();
        if v != s.vendor_id {
            edits.push(TurnEdit::Vendor(Edit {
                from: s.vendor_id,
                to: v,
            }));
        }
        let w = Some(wo.get_untracked().trim().to_string()).filter(|w| !w.is_empty());
        if w != s.wo_number {
            edits.push(TurnEdit::WoNumber(Edit {
                from: s.wo_number.clone(),
                to: w,
            }));
        }
        let m = parse_date(&move_out.get_untracked());
        if m != s.move_out_date {
            edits.push(TurnEdit::MoveOutDate(Edit {
                from: s.move_out_date,
                to: m,
            }));
        }
        let e = parse_date(&expected.get_untracked());
        if e != s.expected_completion_date {
            edits.push(TurnEdit::ExpectedCompletion(Edit {
                from: s.expected_completion_date,
                to: e,
            }));
        }
        if let Ok(st) = stage.get_untracked().parse::<Uuid>() {
            if st != s.stage_id {
                edits.push(TurnEdit::Stage(Edit {
                    from: s.stage_id,
                    to: st,
                }));
            }
        }
        // One mutation per field, the stage last (its gates look at the others): a field someone
        // else changed meanwhile raises its own conflict, and the user's other fields still apply.
        let changes: Vec<Change> = edits
            .into_iter()
            .map(|e| Change::EditTurn {
                turn: s.id,
                edits: vec![e],
            })
            .collect();
        submit(changes, Some(s.version));
    };
    let s = seen.get_value();
    let can_submit = s.turn_amount.is_some()
        && matches!(
            s.approval_status,
            Some(ApprovalStatus::Pending | ApprovalStatus::Rejected)
        )
        && !(s.approval_status == Some(ApprovalStatus::Pending)
            && s.approved_turn_amount.is_some());
    let choose = |list: Vec<(Uuid, String)>, value: RwSignal<String>| {
        list.into_iter()
            .map(|(id, name)| {
                let v = id.to_string();
                let sel = v == value.get_untracked();
                view! { <option value=v selected=sel>{name}</option> }
            })
            .collect_view()
    };
    view! {
        <form class="drawer-form" on:submit=save>
            <label>"Stage"
                <select data-testid="edit-stage" on:change=move |ev| stage.set(event_target_value(&ev))>
                    {choose(stages, stage)}
                </select>
            </label>
            {move || if local.scope_of(turn).is_empty() {
                field("Turn amount (USD)", "edit-amount", Input::Money, amount).into_any()
            } else {
                view! {
                    <p class="muted" data-testid="amount-from-scope">
                        "Turn amount: the scope's total (below)."
                    </p>
                }
                .into_any()
            }}
            <label>"Vendor"
                <select data-testid="edit-vendor" on:change=move |ev| vendor.set(event_target_value(&ev))>
                    <option value="">"No vendor"</option>
                    {choose(vendors, vendor)}
                </select>
            </label>
            {field("Work order", "edit-wo", Input::Text, wo)}
            {field("Move-out date", "edit-move-out", Input::Date, move_out)}
            {field("Expected completion", "edit-expected", Input::Date, expected)}
            <div class="actions">
                <button type="submit" class="primary" data-testid="save-turn">"Save"</button>
                {can_submit.then(|| view! {
                    <button type="button" data-testid="submit-approval"
                        on:click=move |_| submit(vec![Change::SubmitForApproval { turn: s.id }], Some(s.version))>
                        "Submit for approval"
                    </button>
                })}
            </div>
            {can_submit.then(|| own_limit(local, s.clone()))}
        </form>
        {turns::rules::may_cancel(&s).is_ok().then(|| cancel_form(&s, submit))}
    }
}

/// What the manager approves alone for this turn's home, by the limits as they are now (an
/// admin's change reaches an open board).
fn own_limit(local: Local, card: TurnCard) -> impl IntoView {
    move || {
        local.meta.with(|m| {
            m.as_ref().map(|m| {
                let limit = format_usd(m.thresholds.own_limit(m.rules_for(&card).is_core));
                view! {
                    <p class="muted" data-testid="own-limit">
                        {format!("Up to {limit} you approve it yourself; above that, the DFO decides.")}
                    </p>
                }
            })
        })
    }
}

/// Cancelling a turn: asked for a reason first, then kept off the board (and in History).
fn cancel_form(
    seen: &TurnCard,
    submit: impl Fn(Vec<Change>, Option<i32>) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let turn = seen.id;
    reason_form(
        ReasonForm {
            key: "cancel-turn",
            opens: "Cancel turn…",
            prompt: "Why is this turn cancelled?",
            confirm: "Cancel this turn",
            keep: "Keep it",
        },
        move |reason| Change::CancelTurn { turn, reason },
        seen.version,
        submit,
    )
}

/// The words of a change that needs a reason (cancelling a turn, declining a job); `key` names
/// its controls for tests (`{key}`, `{key}-reason`, `confirm-{key}`).
struct ReasonForm {
    key: &'static str,
    opens: &'static str,
    prompt: &'static str,
    confirm: &'static str,
    keep: &'static str,
}

/// A button that asks for the reason, then makes the change with it.
fn reason_form(
    words: ReasonForm,
    make: impl Fn(String) -> Change + Copy + Send + Sync + 'static,
    version: i32,
    submit: impl Fn(Vec<Change>, Option<i32>) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let ReasonForm {
        key,
        opens,
        prompt,
        confirm,
        keep,
    } = words;
    let asking = RwSignal::new(false);
    let reason = RwSignal::new(String::new());
    move || {
        if !asking.get() {
            return view! {
                <div class="actions with-reason">
                    <button type="button" class="danger" data-testid=key
                        on:click=move |_| asking.set(true)>{opens}</button>
                </div>
            }
            .into_any();
        }
        view! {
            <div class="drawer-form with-reason">
                <label>{prompt}
                    <textarea data-testid=format!("{key}-reason") prop:value=move || reason.get()
                        on:input=move |ev| reason.set(event_target_value(&ev))></textarea>
                </label>
                <div class="actions">
                    <button type="button" class="danger" data-testid=format!("confirm-{key}")
                        on:click=move |_| submit(vec![make(reason.get_untracked())], Some(version))>
                        {confirm}
                    </button>
                    <button type="button" on:click=move |_| asking.set(false)>{keep}</button>
                </div>
            </div>
        }
        .into_any()
    }
}

fn vendor_form(
    seen: &TurnCard,
    submit: impl Fn(Vec<Change>, Option<i32>) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let turn = seen.id;
    let answer = match (seen.vendor_accepted, seen.turn_completion_date) {
        (true, _) => view! { <p class="muted" data-testid="accepted">"You accepted this job."</p> }
            .into_any(),
        // Finished work is neither accepted nor declined any more.
        (false, Some(_)) => ().into_any(),
        (false, None) => {
            let version = seen.version;
            view! {
                <div class="actions">
                    <button type="button" class="primary" data-testid="accept-work"
                        on:click=move |_| submit(vec![Change::AcceptWork { turn }], Some(version))>
                        "Accept job"
                    </button>
                </div>
                {reason_form(
                    ReasonForm {
                        key: "decline-work",
                        opens: "Decline…",
                        prompt: "Why do you decline this job? The property manager sees this.",
                        confirm: "Decline this job",
                        keep: "Keep it",
                    },
                    move |reason| Change::DeclineWork { turn, reason },
                    version,
                    submit,
                )}
            }
            .into_any()
        }
    };
    let expected = RwSignal::new(date_text(seen.expected_completion_date));
    let s = StoredValue::new(seen.clone());
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let s = s.get_value();
        let to = parse_date(&expected.get_untracked());
        let edits = if to != s.expected_completion_date {
            vec![TurnEdit::ExpectedCompletion(Edit {
                from: s.expected_completion_date,
                to,
            })]
        } else {
            vec![]
        };
        submit(
            vec![Change::EditTurn { turn: s.id, edits }],
            Some(s.version),
        );
    };
    let complete = move |_| {
        let s = s.get_value();
        let edits = vec![TurnEdit::Completion(Edit {
            from: s.turn_completion_date,
            to: Some(today()),
        })];
        submit(
            vec![Change::EditTurn { turn: s.id, edits }],
            Some(s.version),
        );
    };
    let done = seen.turn_completion_date;
    view! {
        {answer}
        <form class="drawer-form" on:submit=save>
            {field("Expected completion", "edit-expected", Input::Date, expected)}
            <div class="actions">
                <button type="submit" class="primary" data-testid="save-progress">"Save progress"</button>
                {match done {
                    Some(d) => view! { <span class="muted">{format!("Completed {d}")}</span> }.into_any(),
                    None => view! {
                        <button type="button" data-testid="mark-complete" on:click=complete>"Mark work complete"</button>
                    }.into_any(),
                }}
            </div>
        </form>
    }
}

/// The inspector's QC of the turn's stage: every checklist item passed or failed (with what is
/// wrong), recorded in one change.
fn qc_form(
    local: Local,
    seen: &TurnCard,
    submit: impl Fn(Vec<Change>, Option<i32>) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let (turn, version, stage) = (seen.id, seen.version, seen.stage_id);
    // The checklists may arrive after the drawer opens (a first sync): follow them.
    move || {
        let checklist = local
            .qc_items
            .with(|items| turns::qc::checklist(items, stage));
        qc_checklist(local, checklist, turn, version, submit)
    }
}

fn qc_checklist(
    local: Local,
    checklist: Vec<turns::qc::QcItem>,
    turn: Uuid,
    version: i32,
    submit: impl Fn(Vec<Change>, Option<i32>) + Copy + Send + Sync + 'static,
) -> AnyView {
    if checklist.is_empty() {
        return view! { <p class="muted" data-testid="no-qc">"No QC checklist for this stage."</p> }
            .into_any();
    }
    // Every item starts as passed: the inspector marks what fails and says why.
    let answers: Vec<(turns::qc::QcItem, RwSignal<bool>, RwSignal<String>)> = checklist
        .into_iter()
        .map(|item| (item, RwSignal::new(true), RwSignal::new(String::new())))
        .collect();
    let kept = StoredValue::new(answers.clone());
    let record = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let results = kept.with_value(|answers| {
            answers
                .iter()
                .map(|(item, passed, note)| turns::qc::QcResult {
                    item: item.id,
                    passed: passed.get_untracked(),
                    note: Some(note.get_untracked()).filter(|n| !n.trim().is_empty()),
                })
                .collect()
        });
        submit(vec![Change::RecordQc { turn, results }], Some(version));
    };
    view! {
        <form class="drawer-form qc" on:submit=record data-testid="qc-form">
            <h3>"QC inspection"</h3>
            {answers.into_iter().map(|(item, passed, note)| {
                let name = item.id.to_string();
                view! {
                    <fieldset class="qc-item" data-testid="qc-item">
                        <legend>{item.label.clone()}</legend>
                        <label class="check">
                            <input type="radio" name=name.clone() data-testid="qc-pass"
                                prop:checked=move || passed.get() on:change=move |_| passed.set(true)/>
                            "Pass"
                        </label>
                        <label class="check">
                            <input type="radio" name=name data-testid="qc-fail"
                                prop:checked=move || !passed.get() on:change=move |_| passed.set(false)/>
                            "Fail"
                        </label>
                        <input type="text" aria-label=format!("Note on {}", item.label) data-testid="qc-note"
                            placeholder=move || if passed.get() { "Note (optional)" } else { "What is wrong?" }
                            prop:value=move || note.get() on:input=move |ev| note.set(event_target_value(&ev))/>
                        {qc_item_photos(local, turn, item.id)}
                    </fieldset>
                }
            }).collect_view()}
            <div class="actions">
                <button type="submit" class="primary" data-testid="record-qc">"Record QC"</button>
            </div>
        </form>
    }
    .into_any()
}

/// The photos taken for one checklist item (what failed, or proof it passed), and a button to
/// take more: kept on the device and uploaded like any photo.
fn qc_item_photos(local: Local, turn: Uuid, item: Uuid) -> impl IntoView {
    let (photos, queued) = crate::field_notes::turn_photos(local, turn, Some(item));
    let problem = RwSignal::new(None::<String>);
    view! {
        <ul class="photo-grid small" data-testid="qc-photos">
            {crate::field_notes::photo_list(local, photos, queued)}
        </ul>
        {crate::field_notes::photo_picker(local, turn, Some(item), problem, "Photo", "qc-photo")}
        {move || problem.get().map(|p| view! { <p class="failure" role="alert">{p}</p> })}
    }
}

/// Online state, unsent changes, last sync, first-sync progress, and refused changes.
#[component]
pub fn SyncStatus(local: Local) -> impl IntoView {
    let waiting = move || local.outbox.with(Vec::len);
    // Changes held back behind a home the server refused: they wait for the user, not the network.
    let held = move || {
        local
            .outbox
            .with(|o| local.failed.with(|f| crate::local::held(o, f).len()))
    };
    let synced = move || {
        local
            .synced_at
            .get()
            .map(|ms| format!("Synced {}", crate::clock::time_of_day(ms)))
    };
    // Online as far as the browser knows, yet the server does not answer: since when.
    let unanswered = move || {
        local
            .unanswered
            .get()
            .filter(|_| local.online.get() && local.ended.with(Option::is_none))
    };
    let failed = move || local.failed.get();
    view! {
        <div class="sync-bar" data-testid="sync-status" data-leader=move || local.leader.get().to_string()>
            <span class="badge" class:offline=move || !local.online.get() || unanswered().is_some()
                data-testid="online-status">
                {move || match (local.online.get(), unanswered().is_some()) {
                    (false, _) => "Offline",
                    (true, true) => "No answer",
                    (true, false) => "Online",
                }}
            </span>
            // Never "all saved" while a change waits or was refused.
            <span data-testid="pending-count">
                {move || match (waiting(), local.failed.with(Vec::len)) {
                    (0, 0) => "All changes saved".to_string(),
                    (0, 1) => "1 change not saved".to_string(),
                    (0, n) => format!("{n} changes not saved"),
                    (1, _) => "1 change waiting to sync".to_string(),
                    (n, _) => format!("{n} changes waiting to sync"),
                }}
            </span>
            {move || unanswered().map(|since| view! {
                <span class="notice" role="alert" data-testid="server-notice">
                    {format!(
                        "The server has not answered since {}. Your changes are kept on this device \
                         and sent when it answers.",
                        crate::clock::time_of_day(since),
                    )}
                </span>
            })}
            {move || match held() {
                0 => None,
                n => Some(view! {
                    <span class="notice" data-testid="held-notice">
                        {format!(
                            "{n} of them wait{} for a home that was not saved: fix it on the ",
                            if n == 1 { "s" } else { "" },
                        )}
                        <a href="/properties">"Properties"</a>" page."
                    </span>
                }),
            }}
            <span class="muted" data-testid="last-synced">{synced}</span>
            {move || local.first_sync.get().map(|(got, of)| view! {
                <span data-testid="first-sync">{format!("Loading turns: {got} of about {of}")}</span>
            })}
            {move || local.notice.get().map(|n| view! { <span class="notice" data-testid="sync-notice">{n}</span> })}
            // The session this tab synced for is over: say so, what waits, and whom to log in as.
            {move || local.ended.get().map(|why| view! {
                <span class="notice" role="alert" data-testid="session-notice" data-reason=why.as_str()>
                    {ended_notice(why, local.email().as_deref(), local.unsent())}
                    {(why != Ended::LoggedOut).then(|| view! {
                        " " <a href="/login?next=/board" data-testid="session-login">"Log in"</a>
                    })}
                </span>
            })}
        </div>
        <ul class="rejected" data-testid="rejected-list">
            <For each=failed key=|f| f.mutation.id let:f>
                {
                    let id = f.mutation.id;
                    let label = refused_subject(local, &f);
                    view! {
                        <li data-testid="rejected">
                            <strong>{format!("Not saved — {label}: ")}</strong>
                            {f.rejection.message().to_string()}
                            <button type="button" data-testid="retry" on:click=move |_| local.retry(id)>"Retry"</button>
                            <button type="button" data-testid="discard" on:click=move |_| local.discard(id)>"Discard"</button>
                        </li>
                    }
                }
            </For>
        </ul>
    }
}

/// What a refused change was, as the user knows it: the turn (or home) and the field, e.g.
/// "T-20020, stage".
fn refused_subject(local: Local, f: &Failed) -> String {
    let change = &f.mutation.change;
    let subject = match change {
        Change::CreateTurn(t) => Some(format!("new turn {}", t.turn_id)),
        Change::CreateProperty(p) => Some(format!("new home {}", p.property_id)),
        _ => change.turn().and_then(|turn| {
            local.base.with_untracked(|cards| {
                cards
                    .iter()
                    .find(|c| c.id == turn)
                    .map(|c| c.turn_id.clone())
            })
        }),
    }
    .unwrap_or_else(|| change.action().replace('_', " "));
    let fields: Vec<String> = match (&f.rejection, change) {
        (Rejection::Invalid { fields, .. }, _) if !fields.is_empty() => {
            fields.iter().map(|e| field_label(&e.field)).collect()
        }
        (Rejection::Conflict { fields, .. }, _) if !fields.is_empty() => {
            fields.iter().map(|name| field_label(name)).collect()
        }
        (_, Change::EditTurn { edits, .. }) => {
            edits.iter().map(|e| field_label(e.column())).collect()
        }
        _ => Vec::new(),
    };
    if fields.is_empty() {
        subject
    } else {
        format!("{subject}, {}", fields.join(", ").to_lowercase())
    }
}
