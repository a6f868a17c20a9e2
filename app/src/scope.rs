//! A turn's scope in its drawer: the line items, their total (the turn amount), and for the
//! turn's managers adding lines by hand or from a cost template, editing and removing them.
//! The total follows what is typed before it is saved. Every change is a mutation in the local
//! store (offline too); the drawer stays open while the scope is built.
use crate::drawer::parse_money;
use crate::local::Local;
use leptos::prelude::*;
use turns::line_items::{self, LineItem, LineItemEdit, NewLineItem, CATEGORIES};
use turns::model::format_usd;
use turns::mutation::{Change, Edit, FieldError};
use turns::Decimal;
use uuid::Uuid;

/// What the user is typing for a line (a new one, or one being edited).
#[derive(Clone, Copy)]
struct Draft {
    category: RwSignal<String>,
    description: RwSignal<String>,
    quantity: RwSignal<String>,
    unit_cost: RwSignal<String>,
}

impl Draft {
    fn new() -> Draft {
        Draft {
            category: RwSignal::new(String::new()),
            description: RwSignal::new(String::new()),
            quantity: RwSignal::new("1".into()),
            unit_cost: RwSignal::new(String::new()),
        }
    }

    /// Start from a line as it is (to edit it).
    fn fill(&self, line: &LineItem) {
        self.category.set(line.category.clone());
        self.description.set(line.description.clone());
        self.quantity.set(line.quantity.normalize().to_string());
        self.unit_cost
            .set(line.unit_cost.map(|c| c.to_string()).unwrap_or_default());
    }

    /// The numbers typed so far (`None` where nothing readable is typed yet).
    fn numbers(&self) -> (Option<Decimal>, Option<Decimal>) {
        let read = |s: RwSignal<String>, field| parse_money(&s.get(), field).ok().flatten();
        (
            read(self.quantity, "quantity"),
            read(self.unit_cost, "unit_cost"),
        )
    }

    /// The line as typed, or what is wrong with it.
    fn line(&self, id: Uuid) -> Result<NewLineItem, Vec<FieldError>> {
        let number = |s: RwSignal<String>, field: &str, what: &str| {
            parse_money(&s.get_untracked(), field)?
                .ok_or_else(|| FieldError::new(field, format!("Enter the {what}.")))
        };
        let quantity = number(self.quantity, "quantity", "quantity");
        let unit_cost = number(self.unit_cost, "unit_cost", "unit cost");
        match (quantity, unit_cost) {
            (Ok(quantity), Ok(unit_cost)) => Ok(NewLineItem {
                id,
                category: self.category.get_untracked(),
                description: self.description.get_untracked(),
                quantity,
                unit_cost,
                vendor_id: None,
            }),
            (q, c) => Err([q.err(), c.err()].into_iter().flatten().collect()),
        }
    }
}

/// The scope section of a turn's drawer. `editable`: the viewer manages the turn; `money`: the
/// viewer sees what the work costs (vendors do not).
#[component]
pub fn TurnScope(
    local: Local,
    turn: Uuid,
    /// The turn's home (templates are matched to its size).
    home: Uuid,
    editable: bool,
    money: bool,
) -> impl IntoView {
    let scope = Memo::new(move |_| local.scope_of(turn));
    let errors = RwSignal::new(Vec::<FieldError>::new());
    let draft = Draft::new();
    // The line being edited, if any (one at a time), and what is typed for it. The draft's
    // signals belong to this section, not to the row, which is redrawn when editing starts.
    let editing = RwSignal::new(None::<Uuid>);
    let edit = Draft::new();
    // The total as it will be once what is being typed is saved.
    let total = move || {
        let mut lines = scope.get();
        if let Some(id) = editing.get() {
            if let ((Some(q), Some(c)), Some(line)) =
                (edit.numbers(), lines.iter_mut().find(|l| l.id == id))
            {
                line.quantity = q;
                line.unit_cost = Some(c);
            }
        }
        let typed = match draft.numbers() {
            (Some(q), Some(c)) => line_items::line_amount(q, c),
            _ => None,
        };
        match (line_items::total(&lines), typed) {
            (Some(t), Some(n)) => Some(t + n),
            (t, n) => t.or(n),
        }
    };
    // Checked whole before it is made, against the scope as the user sees it (a scope the
    // server would refuse, too many lines or a sum too large, is said here); the drawer stays
    // open.
    let make = move |change: Change| {
        let checked = change.validate().and_then(|()| {
            scope
                .with_untracked(|lines| line_items::apply(lines, &change))
                .map_err(|refused| vec![FieldError::new("items", refused.message())])
        });
        match checked {
            Err(e) => errors.set(e),
            Ok(_) => {
                errors.set(Vec::new());
                local.make(change, None);
            }
        }
    };
    let add = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        match draft.line(Uuid::new_v4()) {
            Err(e) => errors.set(e),
            Ok(line) => {
                make(Change::AddLineItems {
                    turn,
                    template: None,
                    items: vec![line],
                });
                if errors.with_untracked(Vec::is_empty) {
                    draft.description.set(String::new());
                    draft.quantity.set("1".into());
                    draft.unit_cost.set(String::new());
                }
            }
        }
    };
    let save_edit = move |line: LineItem| {
        let typed = match edit.line(line.id) {
            Err(e) => return errors.set(e),
            Ok(t) => t,
        };
        let mut edits = Vec::new();
        if typed.category.trim() != line.category {
            edits.push(LineItemEdit::Category(Edit {
                from: line.category.clone(),
                to: typed.category,
            }));
        }
        if typed.description.trim() != line.description {
            edits.push(LineItemEdit::Description(Edit {
                from: line.description.clone(),
                to: typed.description,
            }));
        }
        if typed.quantity != line.quantity {
            edits.push(LineItemEdit::Quantity(Edit {
                from: line.quantity,
                to: typed.quantity,
            }));
        }
        if Some(typed.unit_cost) != line.unit_cost {
            edits.push(LineItemEdit::UnitCost(Edit {
                from: line.unit_cost.unwrap_or_default(),
                to: typed.unit_cost,
            }));
        }
        if !edits.is_empty() {
            make(Change::EditLineItem {
                turn,
                item: line.id,
                edits,
            });
        }
        if errors.with_untracked(Vec::is_empty) {
            editing.set(None);
        }
    };
    let row = move |line: LineItem| {
        let id = line.id;
        let amount = line.amount().map(format_usd).unwrap_or_default();
        let quantity = line.quantity.normalize().to_string();
        let cost = line.unit_cost.map(format_usd).unwrap_or_default();
        let kept = line.clone();
        move || {
            match editing.get().filter(|e| *e == id) {
            Some(_) => {
                let (line, d) = (kept.clone(), edit);
                view! {
                    <tr class="editing" data-testid="line-item-editing">
                        <td><input aria-label="Category" list="line-categories" data-testid="edit-line-category"
                            prop:value=move || d.category.get() on:input=move |ev| d.category.set(event_target_value(&ev))/></td>
                        <td><input aria-label="Description" data-testid="edit-line-description"
                            prop:value=move || d.description.get() on:input=move |ev| d.description.set(event_target_value(&ev))/></td>
                        <td><input aria-label="Quantity" inputmode="decimal" class="num" data-testid="edit-line-quantity"
                            prop:value=move || d.quantity.get() on:input=move |ev| d.quantity.set(event_target_value(&ev))/></td>
                        <td><input aria-label="Unit cost" inputmode="decimal" class="num" data-testid="edit-line-cost"
                            prop:value=move || d.unit_cost.get() on:input=move |ev| d.unit_cost.set(event_target_value(&ev))/></td>
                        <td class="actions" colspan="2">
                            <button type="button" class="primary" data-testid="save-line"
                                on:click=move |_| save_edit(line.clone())>"Save"</button>
                            <button type="button" on:click=move |_| editing.set(None)>"Cancel"</button>
                        </td>
                    </tr>
                }
                .into_any()
            }
            None => view! {
                <tr data-testid="line-item">
                    <td>{kept.category.clone()}</td>
                    <td>{kept.description.clone()}</td>
                    <td class="num">{quantity.clone()}</td>
                    {money.then(|| view! { <td class="num">{cost.clone()}</td> })}
                    {money.then(|| view! { <td class="num" data-testid="line-amount">{amount.clone()}</td> })}
                    {editable.then(|| {
                        let line = kept.clone();
                        view! {
                            <td class="actions">
                                <button type="button" data-testid="edit-line"
                                    on:click=move |_| {
                                        edit.fill(&line);
                                        editing.set(Some(id));
                                    }>"Edit"</button>
                                <button type="button" class="danger" data-testid="remove-line"
                                    aria-label=format!("Remove {}", kept.description)
                                    on:click=move |_| make(Change::RemoveLineItem { turn, item: id })>"Remove"</button>
                            </td>
                        }
                    })}
                </tr>
            }
            .into_any(),
        }
        }
    };
    let lines = move || scope.get();
    view! {
        <section class="scope" data-testid="scope">
            <h3>"Scope"</h3>
            {move || scope.with(Vec::is_empty).then(|| view! {
                <p class="muted" data-testid="scope-empty">"No line items yet."</p>
            })}
            <table class="scope-lines" class:empty=move || scope.with(Vec::is_empty)>
                <thead>
                    <tr>
                        <th>"Category"</th><th>"Description"</th><th class="num">"Qty"</th>
                        {money.then(|| view! { <th class="num">"Unit cost"</th><th class="num">"Amount"</th> })}
                        {editable.then(|| view! { <th><span class="visually-hidden">"Actions"</span></th> })}
                    </tr>
                </thead>
                <tbody>
                    <For each=lines key=|l| (l.id, l.category.clone(), l.description.clone(), l.quantity, l.unit_cost) let:line>
                        {row(line)}
                    </For>
                </tbody>
            </table>
            {money.then(|| view! {
                <p class="scope-total">"Total " <strong data-testid="scope-total">
                    {move || total().map(format_usd).unwrap_or_else(|| "—".into())}
                </strong></p>
            })}
            {editable.then(|| view! {
                <datalist id="line-categories">
                    {CATEGORIES.iter().map(|c| view! { <option value=*c></option> }).collect_view()}
                </datalist>
                <form class="scope-add" on:submit=add data-testid="add-line-form">
                    <label>"Category"
                        <input list="line-categories" data-testid="line-category"
                            prop:value=move || draft.category.get() on:input=move |ev| draft.category.set(event_target_value(&ev))/>
                    </label>
                    <label class="wide">"Description"
                        <input data-testid="line-description"
                            prop:value=move || draft.description.get() on:input=move |ev| draft.description.set(event_target_value(&ev))/>
                    </label>
                    <label>"Qty"
                        <input inputmode="decimal" class="num" data-testid="line-quantity"
                            prop:value=move || draft.quantity.get() on:input=move |ev| draft.quantity.set(event_target_value(&ev))/>
                    </label>
                    <label>"Unit cost"
                        <input inputmode="decimal" class="num" data-testid="line-cost"
                            prop:value=move || draft.unit_cost.get() on:input=move |ev| draft.unit_cost.set(event_target_value(&ev))/>
                    </label>
                    <button type="submit" data-testid="add-line">"Add line"</button>
                </form>
                <Templates local turn home make/>
            })}
            <ul class="field-errors" role="alert" data-testid="scope-errors">
                {move || errors.get().into_iter().map(|e| view! { <li>{e.message}</li> }).collect_view()}
            </ul>
        </section>
    }
}

/// Cost templates for the turn's home, those that fit its size first: one tap copies the lines.
#[component]
fn Templates(
    local: Local,
    turn: Uuid,
    home: Uuid,
    make: impl Fn(Change) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let homes = local.homes();
    let chosen = RwSignal::new(String::new());
    let offered = Memo::new(move |_| {
        let size = homes.with(|homes| {
            homes
                .iter()
                .find(|h| h.id == home)
                .map(|h| h.size())
                .unwrap_or_default()
        });
        local.templates.with(|all| {
            line_items::templates_for(all, &size)
                .into_iter()
                .map(|t| (t.clone(), t.fits(&size)))
                .collect::<Vec<_>>()
        })
    });
    let apply = move |_| {
        let Ok(id) = chosen.get_untracked().parse::<Uuid>() else {
            return;
        };
        let template = offered.with_untracked(|o| o.iter().find(|(t, _)| t.id == id).cloned());
        if let Some((t, _)) = template {
            make(Change::AddLineItems {
                turn,
                template: Some(t.id),
                items: t.lines(Uuid::new_v4),
            });
        }
    };
    move || {
        let list = offered.get();
        (!list.is_empty()).then(|| {
            let first = list[0].0.id.to_string();
            if chosen.get_untracked().is_empty() {
                chosen.set(first);
            }
            view! {
                <div class="scope-template">
                    <label>"Cost template"
                        <select data-testid="template" on:change=move |ev| chosen.set(event_target_value(&ev))>
                            {list.into_iter().map(|(t, fits)| {
                                let label = format!(
                                    "{}{} · {}",
                                    t.name,
                                    if fits { " (fits this home)" } else { "" },
                                    t.total().map(format_usd).unwrap_or_default(),
                                );
                                let value = t.id.to_string();
                                let selected = value == chosen.get_untracked();
                                view! { <option value=value selected=selected>{label}</option> }
                            }).collect_view()}
                        </select>
                    </label>
                    <button type="button" data-testid="apply-template" on:click=apply>"Add its lines"</button>
                </div>
            }
        })
    }
}
