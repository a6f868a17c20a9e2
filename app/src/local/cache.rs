//! The device's large, droppable caches — the turns snapshot and the reference shapes — in
//! IndexedDB (local storage holds about 5 MB for everything; a manager's portfolio needs more).
//!
//! One database per user (`turns-<user>`), one object store `kv` of JSON strings by name
//! (`snapshot`, `shape.<name>`). Its schema is versioned: `upgrade` runs the steps from the
//! version a device has to `VERSION`. Version 1 moved these caches out of local storage, where
//! earlier app versions kept them (so the first start after the update, even offline, still has
//! the board).
//!
//! Writes go through one queue per page, in order, and only while the user's lease exists (a
//! logout deletes it, then the database). After each write the other tabs are told through a
//! small local-storage key (`cache`), whose `storage` event makes them read again.
use futures::channel::mpsc;
use futures::{FutureExt, StreamExt};
use gloo_storage::{LocalStorage, Storage};
use std::cell::RefCell;
use uuid::Uuid;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{IdbDatabase, IdbOpenDbRequest, IdbRequest, IdbTransactionMode};

const VERSION: u32 = 1;
/// How long a request may take before it counts as failed.
const TIMEOUT_MS: u32 = 10_000;
const STORE: &str = "kv";

fn db_name(user: Uuid) -> String {
    format!("turns-{}", user.simple())
}

/// Local-storage names of what version 0 (local storage) kept, for the move.
fn local_key(user: Uuid, name: &str) -> String {
    format!("{}{name}", super::storage::prefix(user))
}

/// The request's result, once it succeeds.
pub(super) async fn done(request: &IdbRequest) -> Result<JsValue, JsValue> {
    let promise = js_sys::Promise::new(&mut |resolve, reject| {
        let ok = request.clone();
        request.set_onsuccess(Some(
            Closure::once_into_js(move || {
                let _ = resolve.call1(&JsValue::NULL, &ok.result().unwrap_or(JsValue::UNDEFINED));
            })
            .unchecked_ref(),
        ));
        request.set_onerror(Some(
            Closure::once_into_js(move || {
                let _ = reject.call1(
                    &JsValue::NULL,
                    &JsValue::from_str("IndexedDB request failed"),
                );
            })
            .unchecked_ref(),
        ));
    });
    // A request that never settles (an open blocked by another tab's pending delete, say) must
    // not hold up syncing: after this long it counts as failed.
    let answer = JsFuture::from(promise).fuse();
    let timeout = gloo_timers::future::TimeoutFuture::new(TIMEOUT_MS).fuse();
    futures::pin_mut!(answer, timeout);
    futures::select! {
        result = answer => result,
        _ = timeout => Err(JsValue::from_str("IndexedDB did not answer")),
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
        Closure::once_into_js(move |event: web_sys::IdbVersionChangeEvent| {
            upgrade(&opening, user, event.old_version() as u32);
        })
        .unchecked_ref(),
    ));
    done(&request).await?.dyn_into::<IdbDatabase>()
}

/// Bring a device's database from `from` to `VERSION`, one step per version.
fn upgrade(request: &IdbOpenDbRequest, user: Uuid, from: u32) {
    let (Ok(db), Some(tx)) = (
        request.result().and_then(|r| r.dyn_into::<IdbDatabase>()),
        request.transaction(),
    ) else {
        return;
    };
    if from < 1 {
        // 0 → 1: the caches leave local storage for IndexedDB.
        if db.create_object_store(STORE).is_err() {
            return;
        }
        let Ok(store) = tx.object_store(STORE) else {
            return;
        };
        let prefix = local_key(user, "");
        let raw = LocalStorage::raw();
        let keys: Vec<String> = (0..raw.length().unwrap_or(0))
            .filter_map(|i| raw.key(i).ok().flatten())
            .filter(|k| {
                k.strip_prefix(&prefix)
                    .is_some_and(|name| name == "snapshot" || name.starts_with("shape."))
            })
            .collect();
        for k in keys {
            if let Ok(Some(value)) = raw.get_item(&k) {
                let name = &k[prefix.len()..];
                let _ = store.put_with_key(&JsValue::from_str(&value), &JsValue::from_str(name));
            }
            let _ = raw.remove_item(&k);
        }
    }
}

/// A cached value, if the device has it.
pub async fn get(user: Uuid, name: &str) -> Option<String> {
    let db = open(user).await.ok()?;
    let value = async {
        let store = db
            .transaction_with_str(STORE)
            .ok()?
            .object_store(STORE)
            .ok()?;
        done(&store.get(&JsValue::from_str(name)).ok()?)
            .await
            .ok()?
            .as_string()
    }
    .await;
    db.close();
    value
}

enum Write {
    Put(Uuid, String, String),
    /// Forget the user's cached reads (their session ended on this device).
    Clear(Uuid),
}

thread_local! {
    static QUEUE: RefCell<Option<mpsc::UnboundedSender<Write>>> = const { RefCell::new(None) };
    /// Told when a write fails (storage full, or IndexedDB unavailable): the user should know
    /// the board is not kept for offline use.
    static ON_FAILURE: RefCell<Option<Box<dyn Fn()>>> = const { RefCell::new(None) };
}

/// What to do when a write fails (the last one set counts).
pub fn on_failure(tell: impl Fn() + 'static) {
    ON_FAILURE.with(|f| *f.borrow_mut() = Some(Box::new(tell)));
}

fn failed() {
    ON_FAILURE.with(|f| {
        if let Some(tell) = f.borrow().as_ref() {
            tell();
        }
    });
}

fn queue(write: Write) {
    QUEUE.with(|q| {
        let mut q = q.borrow_mut();
        let tx = q.get_or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded();
            leptos::task::spawn_local(writer(rx));
            tx
        });
        let _ = tx.unbounded_send(write);
    });
}

/// Store a value (after the writes queued before it).
pub fn put(user: Uuid, name: &str, json: String) {
    queue(Write::Put(user, name.to_string(), json));
}

/// Forget every cached read of the user's (after the writes queued before it).
pub fn clear(user: Uuid) {
    queue(Write::Clear(user));
}

/// The user logged out: their database goes.
pub fn delete(user: Uuid) {
    if let Some(factory) = web_sys::window().and_then(|w| w.indexed_db().ok().flatten()) {
        let _ = factory.delete_database(&db_name(user));
    }
}

/// The name whose change tells the user's other tabs to read the caches again.
pub fn changed_key(user: Uuid) -> String {
    local_key(user, "cache")
}

async fn writer(mut rx: mpsc::UnboundedReceiver<Write>) {
    while let Some(write) = rx.next().await {
        let user = match &write {
            Write::Put(user, ..) | Write::Clear(user) => *user,
        };
        // Only a logout deletes the lease: after it nothing of the user's is written again.
        if super::storage::leader(user).is_none() {
            continue;
        }
        let Ok(db) = open(user).await else {
            failed();
            continue;
        };
        let written = async {
            let tx = db
                .transaction_with_str_and_mode(STORE, IdbTransactionMode::Readwrite)
                .ok()?;
            let store = tx.object_store(STORE).ok()?;
            let request = match &write {
                Write::Put(_, name, json) => store
                    .put_with_key(&JsValue::from_str(json), &JsValue::from_str(name))
                    .ok()?,
                Write::Clear(_) => store.clear().ok()?,
            };
            done(&request).await.ok()
        }
        .await;
        db.close();
        match written {
            // Unless the user logged out while it was being written (nothing is left behind).
            Some(_) if super::storage::leader(user).is_some() => {
                let _ =
                    LocalStorage::raw().set_item(&changed_key(user), &super::now_ms().to_string());
            }
            Some(_) => {}
            None => failed(),
        }
    }
}
