//! Starting a turn: a manager picks one of their homes and (when known) the move-out date. The
//! turn is made on the device, offline too, with a readable id (`NewTurn::readable_id`); it shows
//! at once in the first stage, opens for editing, and is sent like every other change.
use crate::local::Local;
use leptos::prelude::*;
use turns::mutation::{Change, FieldError, NewTurn};
use uuid::Uuid;

/// The "New turn" button and its form.
#[component]
pub fn NewTurnButton(local: Local, selected: RwSignal<Option<Uuid>>) -> impl IntoView {
    let open = RwSignal::new(false);
    view! {
        <button type="button" class="primary new-turn" data-testid="new-turn"
            on:click=move |_| open.set(true)>"New turn"</button>
        {move || open.get().then(|| view! { <NewTurnForm local open selected/> })}
    }
}

#[component]
fn NewTurnForm(
    local: Local,
    open: RwSignal<bool>,
    selected: RwSignal<Option<Uuid>>,
) -> impl IntoView {
    // The homes the device holds are the user's (the server scoped them), with those they added
    // and have not sent yet; active ones, by name.
    let all = local.homes();
    let homes = Memo::new(move |_| {
        let mut homes: Vec<(Uuid, String, String)> = all.with(|list| {
            list.iter()
                .filter(|p| p.is_active)
                .map(|p| (p.id, p.property_id.clone(), p.name.clone()))
                .collect()
        });
        homes.sort_by(|a, b| (&a.2, &a.1).cmp(&(&b.2, &b.1)));
        homes
    });
    // One id per form: the turn id shown is the one the turn gets.
    let id = Uuid::new_v4();
    let home = RwSignal::new(String::new());
    let move_out = RwSignal::new(String::new());
    let wo = RwSignal::new(String::new());
    let errors = RwSignal::new(Vec::<FieldError>::new());
    let chosen = move || {
        let home = home.get().parse::<Uuid>().ok()?;
        homes.with(|h| h.iter().find(|(id, ..)| *id == home).cloned())
    };
    let turn_id = move || chosen().map(|(_, code, _)| NewTurn::readable_id(&code, id));
    let close = move |_| open.set(false);
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some((property_id, code, _)) = chosen() else {
            return errors.set(vec![FieldError::new("property_id", "Choose the home.")]);
        };
        let move_out_date = match move_out.get_untracked().trim() {
            "" => None,
            text => match text.parse() {
                Ok(d) => Some(d),
                Err(_) => {
                    return errors.set(vec![FieldError::new(
                        "move_out_date",
                        "Enter the move-out date as a date.",
                    )])
                }
            },
        };
        let change = Change::CreateTurn(NewTurn {
            id,
            turn_id: NewTurn::readable_id(&code, id),
            property_id,
            move_out_date,
            wo_number: Some(wo.get_untracked().trim().to_string()).filter(|w| !w.is_empty()),
        });
        if let Err(invalid) = change.validate() {
            return errors.set(invalid);
        }
        local.make(change, None);
        open.set(false);
        // Straight on to the rest of it (vendor, amount, dates) in the turn's drawer.
        selected.set(Some(id));
    };
    view! {
        <div class="drawer-backdrop" on:click=close></div>
        <aside class="drawer" role="dialog" aria-label="New turn" data-testid="new-turn-form">
            <button type="button" class="close" aria-label="Close" on:click=close>"×"</button>
            <h2>"New turn"</h2>
            <form class="drawer-form" on:submit=save>
                <label>"Home"
                    <select data-testid="new-turn-home" on:change=move |ev| {
                            home.set(event_target_value(&ev));
                            errors.set(Vec::new());
                        }>
                        <option value="">"Choose a home"</option>
                        {move || homes.get().into_iter().map(|(id, code, name)| view! {
                            <option value=id.to_string()>{format!("{name} ({code})")}</option>
                        }).collect_view()}
                    </select>
                </label>
                <label>"Move-out date"
                    <input type="date" data-testid="new-turn-move-out"
                        on:input=move |ev| move_out.set(event_target_value(&ev))/>
                </label>
                <label>"Work order (optional)"
                    <input type="text" data-testid="new-turn-wo"
                        on:input=move |ev| wo.set(event_target_value(&ev))/>
                </label>
                {move || turn_id().map(|t| view! {
                    <p class="muted">"Turn id " <strong data-testid="new-turn-id">{t}</strong></p>
                })}
                <ul class="field-errors" role="alert" data-testid="field-errors">
                    {move || errors.get().into_iter().map(|e| view! { <li>{e.message}</li> }).collect_view()}
                </ul>
                <div class="actions">
                    <button type="submit" class="primary" data-testid="create-turn">"Start turn"</button>
                </div>
            </form>
        </aside>
    }
}
