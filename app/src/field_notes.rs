//! A turn's notes and photos in its drawer: what the vendor, the managers and the inspector wrote
//! and photographed in the home. Adding one works offline: a note is a mutation in the outbox, a
//! photo is kept on the device (`local::uploads`) and uploaded when the signal returns; both show
//! at once, marked until the server has them.
use crate::clock::when;
use crate::local::{Local, QueuedPhoto};
use leptos::prelude::*;
use turns::field::{self, Note, Photo};
use turns::mutation::Change;
use uuid::Uuid;

#[component]
pub fn FieldNotes(local: Local, turn: Uuid, writes: bool) -> impl IntoView {
    let notes = Memo::new(move |_| local.notes_of(turn));
    let (photos, queued) = turn_photos(local, turn, None);
    let empty = move || {
        notes.with(Vec::is_empty) && photos.with(Vec::is_empty) && queued.with(Vec::is_empty)
    };
    view! {
        <section class="field-notes" data-testid="field-notes">
            <h3>"Notes and photos"</h3>
            {move || (empty() && !writes).then(|| view! { <p class="muted">"Nothing yet."</p> })}
            <ul class="photo-grid" data-testid="photos">{photo_list(local, photos, queued)}</ul>
            <ul class="notes">
                <For each=move || notes.get() key=|(n, pending)| (n.id, *pending) let:note>
                    {note_item(local, note.0, note.1)}
                </For>
            </ul>
            {writes.then(|| add_form(local, turn))}
        </section>
    }
}

/// A turn's photos, saved and still on this device: all of them, or those taken for one QC
/// checklist item.
pub fn turn_photos(
    local: Local,
    turn: Uuid,
    item: Option<Uuid>,
) -> (Memo<Vec<Photo>>, Memo<Vec<QueuedPhoto>>) {
    let wanted = move |of: Option<Uuid>| item.is_none() || of == item;
    let photos = Memo::new(move |_| {
        let mut list = local.photos.with(|p| field::photos_of(p, turn));
        list.retain(|p| wanted(p.qc_item_id));
        list
    });
    let queued = Memo::new(move |_| {
        local.photo_queue.with(|q| {
            q.iter()
                .filter(|p| p.turn == turn && wanted(p.qc_item))
                .cloned()
                .collect()
        })
    });
    (photos, queued)
}

/// The items of a photo grid: the saved photos, then those waiting on this device.
pub fn photo_list(
    local: Local,
    photos: Memo<Vec<Photo>>,
    queued: Memo<Vec<QueuedPhoto>>,
) -> impl IntoView {
    view! {
        <For each=move || photos.get() key=|p| p.id let:photo>
            {saved_photo(local, photo)}
        </For>
        <For each=move || queued.get() key=|p| (p.id, p.attached, p.refused.clone(), p.sending) let:photo>
            {queued_photo(local, photo)}
        </For>
    }
}

fn saved_photo(local: Local, photo: Photo) -> impl IntoView {
    let alt = photo
        .caption
        .clone()
        .unwrap_or_else(|| format!("Photo by {}", photo.author_name));
    let taken = photo.taken_at().map(when).unwrap_or_default();
    // Taken for a QC checklist item: say which.
    let item = photo.qc_item_id.and_then(|id| {
        local
            .qc_items
            .with_untracked(|items| items.iter().find(|i| i.id == id).map(|i| i.label.clone()))
    });
    view! {
        <li>
            <a href=field::photo_url(photo.id) target="_blank" rel="noopener">
                <img src=field::thumb_url(photo.id) alt=alt loading="lazy" data-testid="photo"/>
            </a>
            <span class="muted small">
                {item.map(|label| format!("QC: {label} · "))}{photo.author_name} " · " {taken}
            </span>
        </li>
    }
}

fn queued_photo(local: Local, photo: QueuedPhoto) -> impl IntoView {
    let online = local.online.get_untracked();
    let status = match (&photo.refused, photo.attached, photo.sending) {
        (Some(why), _, _) => format!("Not saved — {why}"),
        (None, true, _) => "Saved".to_string(),
        (None, false, Some((sent, of))) if online => format!("Uploading {sent} of {of}…"),
        (None, false, _) if online => "Waiting to upload".to_string(),
        (None, false, _) => "Waiting for signal".to_string(),
    };
    let id = photo.id;
    let refused = photo.refused.is_some();
    view! {
        <li class="queued" data-testid="queued-photo">
            <img src=photo.preview alt="A photo taken on this device"/>
            <span class=if refused { "badge failure small" } else { "badge sync-pending small" }
                data-testid="queued-photo-status">{status}</span>
            {refused.then(|| view! {
                <button type="button" class="link" on:click=move |_| discard(local, id)>"Discard"</button>
            })}
        </li>
    }
}

fn discard(local: Local, id: Uuid) {
    #[cfg(feature = "hydrate")]
    crate::local::uploads::discard(local, id);
    #[cfg(not(feature = "hydrate"))]
    let _ = (local, id);
}

fn note_item(local: Local, note: Note, pending: bool) -> impl IntoView {
    let written = note.written_at().map(when).unwrap_or_default();
    let status = pending.then(|| {
        if local.online.get_untracked() {
            "Saving…"
        } else {
            "Waiting for signal"
        }
    });
    view! {
        <li data-testid="note">
            <p class="note-body">{note.body}</p>
            <p class="muted small">
                {note.author_name} " · " {written}
                {status.map(|s| view! { " · " <span class="badge sync-pending">{s}</span> })}
            </p>
        </li>
    }
}

fn add_form(local: Local, turn: Uuid) -> impl IntoView {
    let body = RwSignal::new(String::new());
    let problem = RwSignal::new(None::<String>);
    let add_note = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let change = Change::AddNote {
            turn,
            note: Uuid::new_v4(),
            body: body.get_untracked(),
        };
        match change.validate() {
            Err(errors) => problem.set(errors.into_iter().next().map(|e| e.message)),
            Ok(()) => {
                local.make(change, None);
                body.set(String::new());
                problem.set(None);
            }
        }
    };
    view! {
        <form class="drawer-form note-form" on:submit=add_note>
            <label>
                <span>"Note"</span>
                <textarea rows="2" data-testid="note-body" maxlength=field::MAX_NOTE
                    placeholder="What you found or did"
                    prop:value=move || body.get()
                    on:input=move |ev| body.set(event_target_value(&ev))></textarea>
            </label>
            <div class="actions">
                <button type="submit" data-testid="add-note">"Add note"</button>
                {photo_picker(local, turn, None, problem, "Add photos", "add-photos")}
            </div>
            {move || problem.get().map(|p| view! { <p class="failure" role="alert">{p}</p> })}
        </form>
    }
}

/// A button that opens the camera on a phone (`capture`) and files elsewhere; what is picked is
/// kept on the device and queued (`uploads::take`), for the turn or one QC checklist item.
pub fn photo_picker(
    local: Local,
    turn: Uuid,
    qc_item: Option<Uuid>,
    problem: RwSignal<Option<String>>,
    text: &'static str,
    test_id: &'static str,
) -> impl IntoView {
    let pick = move |ev: leptos::ev::Event| {
        problem.set(None);
        #[cfg(feature = "hydrate")]
        {
            use wasm_bindgen::JsCast;
            let input = ev
                .target()
                .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok());
            if let Some(input) = input {
                if let Some(files) = input.files() {
                    crate::local::uploads::take(local, turn, qc_item, files, problem);
                }
                // The same photo may be picked again.
                input.set_value("");
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (ev, local, turn, qc_item);
    };
    view! {
        <label class="button file-button">
            {text}
            <input type="file" accept="image/jpeg,image/png,image/webp" capture="environment"
                multiple data-testid=test_id on:change=pick/>
        </label>
    }
}
