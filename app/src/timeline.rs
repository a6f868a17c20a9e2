//! A turn's timeline in its drawer: every write to it, who made it, when (on the device, and when
//! the server got it if that was later), and what changed. Read from the server on demand: the
//! device keeps turns, not their history.
use crate::api::turn_timeline;
use crate::clock::when;
use leptos::prelude::*;
use turns::timeline::Entry;
use uuid::Uuid;

#[component]
pub fn TurnTimeline(
    turn: Uuid,
    /// Shown at once (where the history is part of the decision), not on demand.
    #[prop(optional)]
    shown: bool,
) -> impl IntoView {
    let open = RwSignal::new(shown);
    view! {
        <section class="timeline" data-testid="timeline">
            {move || if open.get() {
                view! { <Entries turn/> }.into_any()
            } else {
                view! {
                    <button type="button" class="link" data-testid="show-timeline"
                        on:click=move |_| open.set(true)>"Show history"</button>
                }
                .into_any()
            }}
        </section>
    }
}

#[component]
fn Entries(turn: Uuid) -> impl IntoView {
    let entries = LocalResource::new(move || turn_timeline(turn));
    move || match entries.get() {
        None => view! { <p class="muted">"Loading history…"</p> }.into_any(),
        Some(Err(e)) => view! { <p class="muted" role="alert">{e.to_string()}</p> }.into_any(),
        Some(Ok(list)) if list.is_empty() => view! {
            <h3>"History"</h3>
            <p class="muted">"No changes recorded yet."</p>
        }
        .into_any(),
        Some(Ok(list)) => view! {
            <h3>"History"</h3>
            <ol class="entries">
                {list.into_iter().map(entry).collect_view()}
            </ol>
        }
        .into_any(),
    }
}

fn entry(e: Entry) -> impl IntoView {
    let saved = e
        .written_later()
        .then(|| format!(" · saved {}", when(e.at)));
    view! {
        <li data-testid="timeline-entry">
            <p class="what">
                <strong>{e.action.clone()}</strong>
                {e.who.clone().map(|w| format!(" by {w}"))}
            </p>
            <p class="muted">{when(e.done_at())}{saved}</p>
            <ul class="changes">
                {e.changes.into_iter().map(|c| view! {
                    <li data-testid="timeline-change">
                        {c.label} ": " {c.before.unwrap_or_else(|| "—".into())} " → " {c.after.unwrap_or_else(|| "—".into())}
                    </li>
                }).collect_view()}
            </ul>
            {e.note.map(|n| view! { <p class="note">"“" {n} "”"</p> })}
        </li>
    }
}
