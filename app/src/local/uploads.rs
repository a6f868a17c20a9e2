//! Photos taken on this device, from the camera to the server, never lost on the way.
//!
//! A photo is kept in IndexedDB the moment it is taken (its own database, `turns-photos-<user>`:
//! not a cache, so nothing drops it to make room), with what it is for. The leading tab uploads
//! the queue in order, in chunks (`turns::field::CHUNK_BYTES`), asking the server first which
//! chunks it already has: an upload cut off by a lost signal, a reload or a closed tab resumes
//! where it stopped. The last request attaches the photo to its turn; the photo leaves the device
//! when the turn's `photos` shape shows it. A photo the server refuses (not a photo, too large,
//! the turn is no longer the user's) stays, with the reason, until the user discards it.
use super::cache::done;
use super::net::{active, ended_by, nap, random, wake, waker};
use super::{now_ms, storage, Local, QueuedPhoto};
use gloo_net::http::{Request, Response};
use gloo_storage::{LocalStorage, Storage};
use leptos::prelude::*;
use leptos::task::spawn_local;
use std::collections::HashSet;
use turns::field::{self, CHUNK_BYTES, MAX_PHOTO_BYTES, PHOTO_TYPES};
use turns::mutation::Outcome;
use turns::shape_follower::Backoff;
use uuid::Uuid;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{Blob, IdbDatabase, IdbOpenDbRequest, IdbTransactionMode};

const VERSION: u32 = 1;
const STORE: &str = "photos";
const USER_HEADER: &str = "X-Turns-User";
/// An attached photo its shape has not shown after this long (its turn left the user's scope)
/// leaves the queue anyway.
const ATTACHED_MS: u64 = 120_000;

fn db_name(user: Uuid) -> String {
    format!("turns-photos-{}", user.simple())
}

/// The local-storage key whose change tells the user's other tabs the queue changed.
pub fn changed_key(user: Uuid) -> String {
    format!("{}photos", storage::prefix(user))
}

/// The user logged out: their queue goes (they were asked first, if it held anything).
pub(super) fn delete(user: Uuid) {
    if let Some(factory) = web_sys::window().and_then(|w| w.indexed_db().ok().flatten()) {
        let _ = factory.delete_database(&db_name(user));
    }
}

async fn open(user: Uuid) -> Result<IdbDatabase, JsValue> {
    let factory = web_sys::window()
        .ok_or("no window")?
        .indexed_db()?
        .ok_or("IndexedDB is not available")?;
    let request: IdbOpenDbRequest = factory.open_with_u32(&db_name(user), VERSION)?;
    let opening = request.clone();
    request.set_onupgradeneeded(Some(
        Closure::once_into_js(move |_: web_sys::IdbVersionChangeEvent| {
            if let Ok(db) = opening.result().and_then(|r| r.dyn_into::<IdbDatabase>()) {
                let _ = db.create_object_store(STORE);
            }
        })
        .unchecked_ref(),
    ));
    done(&request).await?.dyn_into::<IdbDatabase>()
}

/// Run one request on the store (`write`: read-write) and close the database.
async fn with_store(
    user: Uuid,
    write: bool,
    run: impl FnOnce(&web_sys::IdbObjectStore) -> Result<web_sys::IdbRequest, JsValue>,
) -> Result<JsValue, JsValue> {
    let db = open(user).await?;
    let mode = if write {
        IdbTransactionMode::Readwrite
    } else {
        IdbTransactionMode::Readonly
    };
    let result = async {
        let store = db
            .transaction_with_str_and_mode(STORE, mode)?
            .object_store(STORE)?;
        done(&run(&store)?).await
    }
    .await;
    db.close();
    result
}

/// Keep a photo (what it is for, and its bytes) on the device.
async fn keep(user: Uuid, photo: &QueuedPhoto, blob: &Blob) -> Result<(), JsValue> {
    let meta = serde_json::to_string(photo).map_err(|e| JsValue::from_str(&e.to_string()))?;
    let value = js_sys::Object::new();
    js_sys::Reflect::set(&value, &"meta".into(), &meta.into())?;
    js_sys::Reflect::set(&value, &"blob".into(), blob)?;
    let key = JsValue::from_str(&photo.id.to_string());
    with_store(user, true, |s| s.put_with_key(&value, &key)).await?;
    Ok(())
}

async fn blob_of(user: Uuid, id: Uuid) -> Option<Blob> {
    let key = JsValue::from_str(&id.to_string());
    let value = with_store(user, false, |s| s.get(&key)).await.ok()?;
    js_sys::Reflect::get(&value, &"blob".into())
        .ok()?
        .dyn_into::<Blob>()
        .ok()
}

async fn forget(user: Uuid, id: Uuid) {
    let key = JsValue::from_str(&id.to_string());
    let _ = with_store(user, true, |s| s.delete(&key)).await;
    told_other_tabs(user);
}

fn told_other_tabs(user: Uuid) {
    let _ = LocalStorage::raw().set_item(&changed_key(user), &now_ms().to_string());
}

fn preview(blob: &Blob) -> String {
    web_sys::Url::create_object_url_with_blob(blob).unwrap_or_default()
}

/// Read the queue as this device keeps it (at start, and when another tab changed it), keeping
/// what this page knows of photos it already shows.
pub async fn reload(local: Local, user: Uuid) {
    let Ok(all) = with_store(user, false, |s| s.get_all()).await else {
        return;
    };
    let mut kept: Vec<QueuedPhoto> = Vec::new();
    for value in js_sys::Array::from(&all).iter() {
        let meta = js_sys::Reflect::get(&value, &"meta".into())
            .ok()
            .and_then(|m| m.as_string())
            .and_then(|m| serde_json::from_str::<QueuedPhoto>(&m).ok());
        let blob = js_sys::Reflect::get(&value, &"blob".into())
            .ok()
            .and_then(|b| b.dyn_into::<Blob>().ok());
        if let (Some(mut photo), Some(blob)) = (meta, blob) {
            match local
                .photo_queue
                .with_untracked(|q| q.iter().find(|p| p.id == photo.id).cloned())
            {
                Some(shown) => {
                    photo.preview = shown.preview;
                    photo.sending = shown.sending;
                    photo.attached |= shown.attached;
                }
                None => photo.preview = preview(&blob),
            }
            kept.push(photo);
        }
    }
    kept.sort_by_key(|p| (p.taken_at, p.id));
    // Those the `photos` shape shows already are done (it may have shown them before this read).
    let shown: HashSet<Uuid> = local
        .photos
        .with_untracked(|p| p.iter().map(|p| p.id).collect());
    let (done, kept): (Vec<QueuedPhoto>, Vec<QueuedPhoto>) =
        kept.into_iter().partition(|p| shown.contains(&p.id));
    for photo in done {
        let _ = web_sys::Url::revoke_object_url(&photo.preview);
        forget(user, photo.id).await;
    }
    let gone: Vec<String> = local.photo_queue.with_untracked(|q| {
        q.iter()
            .filter(|p| !kept.iter().any(|k| k.id == p.id))
            .map(|p| p.preview.clone())
            .collect()
    });
    for url in gone {
        let _ = web_sys::Url::revoke_object_url(&url);
    }
    local.photo_queue.set(kept);
    wake();
}

/// Photos picked or taken for `turn`: each is kept on the device first, then queued. A file
/// that is not a photo or too large is refused here, with the reason in `refused`.
pub fn take(
    local: Local,
    turn: Uuid,
    qc_item: Option<Uuid>,
    files: web_sys::FileList,
    refused: RwSignal<Option<String>>,
) {
    let Some(user) = local.user.get_untracked() else {
        return;
    };
    let files: Vec<web_sys::File> = (0..files.length()).filter_map(|i| files.get(i)).collect();
    spawn_local(async move {
        for file in files {
            if !PHOTO_TYPES.contains(&file.type_().as_str()) {
                refused.set(Some(format!(
                    "{} is not a photo we can take (JPEG, PNG or WebP).",
                    file.name()
                )));
                continue;
            }
            let bytes = file.size() as usize;
            if bytes > MAX_PHOTO_BYTES {
                refused.set(Some(format!(
                    "{} is larger than {} MB.",
                    file.name(),
                    MAX_PHOTO_BYTES / (1024 * 1024)
                )));
                continue;
            }
            // A camera's file is made when the photo is taken; a picked one may be older.
            let taken_ms = (file.last_modified() as i64).min(now_ms() as i64);
            let mut photo = QueuedPhoto {
                id: Uuid::new_v4(),
                turn,
                caption: None,
                qc_item,
                taken_at: chrono::DateTime::from_timestamp_millis(taken_ms).unwrap_or_default(),
                bytes,
                refused: None,
                attached: false,
                preview: String::new(),
                sending: None,
            };
            if keep(user, &photo, &file).await.is_err() {
                refused.set(Some(
                    "This device's storage is full: the photo could not be kept. Free some \
                     space and take it again."
                        .into(),
                ));
                continue;
            }
            photo.preview = preview(&file);
            local.photo_queue.update(|q| q.push(photo));
            told_other_tabs(user);
            wake();
        }
    });
}

/// The user gives up on a refused photo.
pub fn discard(local: Local, id: Uuid) {
    let Some(user) = local.user.get_untracked() else {
        return;
    };
    drop_photos(local, user, &[id].into_iter().collect());
}

fn drop_photos(local: Local, user: Uuid, ids: &HashSet<Uuid>) {
    let urls: Vec<String> = local.photo_queue.with_untracked(|q| {
        q.iter()
            .filter(|p| ids.contains(&p.id))
            .map(|p| p.preview.clone())
            .collect()
    });
    if urls.is_empty() {
        return;
    }
    for url in urls {
        let _ = web_sys::Url::revoke_object_url(&url);
    }
    local
        .photo_queue
        .update(|q| q.retain(|p| !ids.contains(&p.id)));
    for &id in ids {
        spawn_local(forget(user, id));
    }
}

/// The `photos` shape shows these photos: they leave the device.
pub(super) fn delivered(local: Local, user: Uuid, shown: &HashSet<Uuid>) {
    let ids: HashSet<Uuid> = local.photo_queue.with_untracked(|q| {
        q.iter()
            .filter(|p| shown.contains(&p.id))
            .map(|p| p.id)
            .collect()
    });
    drop_photos(local, user, &ids);
}

/// How an upload step ended.
enum Step {
    Done,
    /// The server will not take this photo: why.
    Refused(String),
    /// The user's session is over on this device.
    Ended(super::Ended),
    Retry,
}

/// Upload the queue while this tab leads: one photo at a time, oldest first.
pub(super) async fn upload_loop(local: Local, user: Uuid) {
    let mut rx = waker();
    let mut backoff = Backoff::default();
    let mut attached_at: Vec<(Uuid, u64)> = Vec::new();
    while active(local) {
        // Attached photos their shape never showed (their turn is no longer this user's).
        let now = now_ms();
        let stale: HashSet<Uuid> = attached_at
            .iter()
            .filter(|(_, at)| now.saturating_sub(*at) > ATTACHED_MS)
            .map(|(id, _)| *id)
            .collect();
        if !stale.is_empty() {
            attached_at.retain(|(id, _)| !stale.contains(id));
            drop_photos(local, user, &stale);
        }
        let next = local
            .photo_queue
            .with_untracked(|q| q.iter().find(|p| p.waiting()).cloned());
        let Some(photo) = next.filter(|_| local.online.get_untracked()) else {
            nap(&mut rx, 5000).await;
            continue;
        };
        match upload(local, user, &photo).await {
            Step::Done => {
                backoff.reset();
                attached_at.push((photo.id, now_ms()));
                // In memory only: written back, it could outlive its deletion once the shape
                // shows the photo (after a reload the server says again that it has it).
                local.photo_queue.update(|q| {
                    if let Some(p) = q.iter_mut().find(|p| p.id == photo.id) {
                        p.attached = true;
                        p.sending = None;
                    }
                });
            }
            Step::Refused(why) => update(local, user, photo.id, |p| {
                p.refused = Some(why);
                p.sending = None;
            }),
            Step::Ended(why) => {
                local.end(why);
                return;
            }
            Step::Retry => nap(&mut rx, backoff.next(random())).await,
        }
    }
}

/// Change a queued photo here and on the device (only while it waits: a photo that leaves the
/// queue is never written back).
fn update(local: Local, user: Uuid, id: Uuid, change: impl FnOnce(&mut QueuedPhoto)) {
    let mut changed = None;
    local.photo_queue.update(|q| {
        if let Some(p) = q.iter_mut().find(|p| p.id == id) {
            change(p);
            changed = Some(p.clone());
        }
    });
    if let Some(photo) = changed {
        spawn_local(async move {
            if let Some(blob) = blob_of(user, photo.id).await {
                let _ = keep(user, &photo, &blob).await;
                told_other_tabs(user);
            }
        });
    }
}

/// What a request's answer means for the upload.
async fn answer(response: Result<Response, gloo_net::Error>) -> Result<Response, Step> {
    let Ok(response) = response else {
        return Err(Step::Retry);
    };
    match response.status() {
        200..=299 => Ok(response),
        401 => Err(Step::Ended(ended_by(&response))),
        400 | 403 | 404 | 413 | 415 => {
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            let why = body
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("The server did not take this photo.");
            Err(Step::Refused(why.to_string()))
        }
        _ => Err(Step::Retry),
    }
}

async fn upload(local: Local, user: Uuid, photo: &QueuedPhoto) -> Step {
    match send(local, user, photo).await {
        Ok(step) | Err(step) => step,
    }
}

async fn send(local: Local, user: Uuid, photo: &QueuedPhoto) -> Result<Step, Step> {
    let Some(blob) = blob_of(user, photo.id).await else {
        // Another tab finished or discarded it meanwhile.
        return Ok(Step::Done);
    };
    let base = format!("/api/turns/{}/photos/{}", photo.turn, photo.id);
    let user_header = user.to_string();
    #[derive(serde::Deserialize)]
    struct Received {
        chunks: Vec<usize>,
        attached: bool,
    }
    let have: Received = answer(
        Request::get(&format!("{base}/chunks"))
            .header(USER_HEADER, &user_header)
            .send()
            .await,
    )
    .await?
    .json()
    .await
    .map_err(|_| Step::Retry)?;
    if have.attached {
        return Ok(Step::Done);
    }
    let size = blob.size();
    let count = field::chunks(photo.bytes);
    let missing: Vec<usize> = (0..count).filter(|i| !have.chunks.contains(i)).collect();
    let already = count - missing.len();
    for (n, &index) in missing.iter().enumerate() {
        if !active(local) || !local.online.get_untracked() {
            return Err(Step::Retry);
        }
        local.photo_queue.update(|q| {
            if let Some(p) = q.iter_mut().find(|p| p.id == photo.id) {
                p.sending = Some((already + n, count));
            }
        });
        let start = (index * CHUNK_BYTES) as f64;
        let end = (start + CHUNK_BYTES as f64).min(size);
        let chunk = blob
            .slice_with_f64_and_f64(start, end)
            .map_err(|_| Step::Retry)?;
        answer(
            Request::put(&format!("{base}/chunks/{index}"))
                .header(USER_HEADER, &user_header)
                .header("Content-Type", "application/octet-stream")
                .body(chunk)
                .map_err(|_| Step::Retry)?
                .send()
                .await,
        )
        .await?;
    }
    local.photo_queue.update(|q| {
        if let Some(p) = q.iter_mut().find(|p| p.id == photo.id) {
            p.sending = Some((count, count));
        }
    });
    let finish = serde_json::json!({
        "chunks": count,
        "caption": photo.caption,
        "qc_item": photo.qc_item,
        "taken_at": photo.taken_at,
    });
    let outcome: Outcome = answer(
        Request::post(&base)
            .header(USER_HEADER, &user_header)
            .json(&finish)
            .map_err(|_| Step::Retry)?
            .send()
            .await,
    )
    .await?
    .json()
    .await
    .map_err(|_| Step::Retry)?;
    Ok(match outcome {
        Outcome::Applied { .. } => Step::Done,
        Outcome::Rejected(r) => Step::Refused(r.message().to_string()),
    })
}
