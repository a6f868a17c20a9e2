//! The browser side of sync: one leading tab per user follows the `turns` shape and sends the
//! outbox; every tab follows local storage. Retries back off with jitter and never give up, and
//! time offline is not a failure: nothing is sent while the browser says it is offline.
//!
//! Every request says whose store it serves (`X-Turns-User`); the server answers 401 unless the
//! session is that user's. A 401 ends syncing in every tab of that user (`Local::end`): nothing is
//! sent or followed under someone else's cookie.
use super::cache;
use super::reach::{self, Patience};
use super::reference;
use super::storage::{self, Snapshot};
use super::uploads;
use super::{now_ms, Ended, Failed, Local, Pending, Sent};
use crate::api::MAX_BATCH;
use futures::channel::mpsc;
use futures::{FutureExt, StreamExt};
use gloo_net::http::{Request, RequestBuilder, Response};
use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::de::DeserializeOwned;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use turns::model::TurnCard;
use turns::mutation::{Change, Mutation, Outcome, Rejection};
use turns::shape_follower::{
    Backoff, Columns, Position, ResponseHead, ShapeFollower, Step, MAX_BACKOFF_MS,
};
use turns::shape_protocol::{Operation, Txid};
use uuid::Uuid;
use wasm_bindgen::prelude::*;

/// The leader's lease; renewed every second, taken over by another tab when it lapses.
const LEASE_MS: u64 = 3000;
/// A sent mutation whose transaction the stream never showed (its row left our scope): dropped
/// from the outbox after this long while the stream is live.
const UNSEEN_MS: u64 = 30_000;
/// Whose store a request serves; the server refuses it (401) unless the session is this user's.
const USER_HEADER: &str = "X-Turns-User";
/// On that 401, `other-user` says a different user's session is valid on this device.
const SESSION_HEADER: &str = "X-Turns-Session";
/// The service worker's cache of signed-in pages (see `public/sw.js`).
const SHELL_CACHE: &str = "turns-shell-v1";
/// The service worker's cache of photo thumbnails.
const THUMB_CACHE: &str = "turns-thumbs-v1";

thread_local! {
    static WAKERS: RefCell<Vec<mpsc::UnboundedSender<()>>> = const { RefCell::new(Vec::new()) };
    /// This page's id in the leader lease.
    static TAB: String = Uuid::new_v4().to_string();
    /// Users whose logout this page listens for (one listener each).
    static WATCHED: RefCell<HashSet<Uuid>> = RefCell::new(HashSet::new());
    /// This page has seen its user's lease: from then on a missing lease means a logout cleared
    /// the user's keys (only a logout deletes it).
    static LEASE_SEEN: Cell<bool> = const { Cell::new(false) };
}

fn tab() -> String {
    TAB.with(Clone::clone)
}

#[wasm_bindgen]
extern "C" {
    // `caches` exists only in secure contexts: `catch` turns its absence into an error.
    #[wasm_bindgen(catch, js_namespace = caches, js_name = delete)]
    fn delete_cache(name: &str) -> Result<js_sys::Promise, JsValue>;
}

/// Something changed (new mutation, back online, storage event): loops waiting for work run now.
pub fn wake() {
    WAKERS.with(|w| w.borrow_mut().retain(|tx| tx.unbounded_send(()).is_ok()));
}

pub(super) fn waker() -> mpsc::UnboundedReceiver<()> {
    let (tx, rx) = mpsc::unbounded();
    WAKERS.with(|w| w.borrow_mut().push(tx));
    rx
}

/// Sleep for `ms`, or less if woken.
pub(super) async fn nap(rx: &mut mpsc::UnboundedReceiver<()>, ms: u64) {
    let timer = TimeoutFuture::new(ms.min(u32::MAX as u64) as u32).fuse();
    let woken = rx.next().fuse();
    futures::pin_mut!(timer, woken);
    futures::select! {
        _ = timer => {},
        _ = woken => {},
    }
}

pub(super) fn random() -> f64 {
    js_sys::Math::random()
}

fn navigator_online() -> bool {
    web_sys::window().is_none_or(|w| w.navigator().on_line())
}

/// Listen (once per page and user) for the user's other tabs saying syncing ended: a logout
/// there sends this page to the login page; a session that ended there ends here too.
pub fn watch(local: Local, user: Uuid) {
    if !WATCHED.with(|w| w.borrow_mut().insert(user)) {
        return;
    }
    let signal = storage::signal_key(user);
    window_event_listener(leptos::ev::storage, move |ev| {
        if ev.key().as_deref() != Some(signal.as_str()) {
            return;
        }
        // The write carries the reason; the removal right after it carries nothing.
        let Some(why) = ev.new_value().as_deref().and_then(Ended::parse) else {
            return;
        };
        let mine = local.user.get_untracked() == Some(user)
            || local
                .account
                .with_untracked(|a| a.as_ref().is_some_and(|(id, _)| *id == user));
        if mine && local.finish(why) {
            ended(local, why, false);
        }
    });
}

/// The storage and page side of `Local::end`. `announce`: this tab learned it from the server
/// (so the other tabs hear it from us), not from another tab.
pub fn ended(local: Local, why: Ended, announce: bool) {
    wake();
    // The signed-in pages the service worker kept hold this user's board, and the thumbnails
    // their photos.
    let _ = delete_cache(SHELL_CACHE);
    let _ = delete_cache(THUMB_CACHE);
    let user = local.user.get_untracked().or_else(|| {
        local
            .account
            .with_untracked(|a| a.as_ref().map(|(id, _)| *id))
    });
    match why {
        Ended::Session | Ended::OtherUser => {
            let Some(user) = user else {
                return;
            };
            // The board goes; the outbox and refused changes stay for the user's next login.
            storage::forget_reads(user);
            let tab = tab();
            if storage::leader(user).is_some_and(|(t, _)| t == tab) {
                // Let another tab (after the user logs in again) lead at once.
                storage::set_leader(user, &tab, 0);
            }
            if announce {
                storage::announce(user, why);
                if why == Ended::Session {
                    spawn_local(probe(local, user));
                }
            }
        }
        Ended::LoggedOut => {
            // The tab that logged out cleared this user's storage. Clear once more: a lease
            // renewal or a snapshot save here may have read before that clear and written
            // after it. Then write nothing and leave.
            if let Some(user) = user {
                storage::clear_user(user);
            }
            local.meta.set(None);
            let _ = location().set_href("/login?notice=logged_out");
        }
    }
}

pub fn start(local: Local) {
    let Some(user) = local.user.get_untracked() else {
        return;
    };
    watch(local, user);
    local.outbox.set(storage::load_outbox(user));
    local.failed.set(storage::load_failed(user));
    local.online.set(navigator_online());
    cache::on_failure(move || {
        local.notice.set(Some(
            "This device could not keep the board for offline use (its storage is full or \
             unavailable). Your changes are still kept and sent."
                .to_string(),
        ))
    });
    match storage::unreadable_outbox(user) {
        0 => {}
        n => local.notice.set(Some(format!(
            "{n} change{} saved on this device by another version of the app could not be read: \
             kept here, not sent.",
            if n == 1 { "" } else { "s" }
        ))),
    }

    let set_online = move |on: bool| {
        local.online.set(on);
        wake();
    };
    window_event_listener(leptos::ev::online, move |_| set_online(true));
    window_event_listener(leptos::ev::offline, move |_| set_online(false));
    // Other tabs' writes: follow them.
    let mine = storage::prefix(user);
    let signal = storage::signal_key(user);
    let cache_changed = cache::changed_key(user);
    let photos_changed = uploads::changed_key(user);
    window_event_listener(leptos::ev::storage, move |ev| {
        if !ev
            .key()
            .is_some_and(|k| k.starts_with(&mine) && k != signal)
        {
            return;
        }
        match local.ended.get_untracked() {
            // Keys are being cleared by a logout: nothing to follow.
            Some(Ended::LoggedOut) => return,
            // Only the count of waiting changes is still shown.
            Some(_) => {
                local.outbox.set(storage::load_outbox(user));
                local.failed.set(storage::load_failed(user));
                return;
            }
            None => {}
        }
        local.outbox.set(storage::load_outbox(user));
        local.failed.set(storage::load_failed(user));
        if ev.key().as_deref() == Some(photos_changed.as_str()) {
            spawn_local(uploads::reload(local, user));
        }
        if !local.leader.get_untracked() && ev.key().as_deref() == Some(cache_changed.as_str()) {
            spawn_local(load_caches(local, user));
        }
        wake();
    });
    let tab = tab();
    {
        let tab = tab.clone();
        window_event_listener(leptos::ev::pagehide, move |_| {
            // After a logout the lease is gone: `leader` is None and nothing is written.
            if storage::leader(user).is_some_and(|(t, _)| t == tab) {
                storage::set_leader(user, &tab, 0);
            }
        });
    }
    spawn_local(async move {
        // What this device kept of the board: shown before anything else happens.
        load_caches(local, user).await;
        uploads::reload(local, user).await;
        while local.ended.get_untracked().is_none() {
            let now = now_ms();
            let lease = storage::leader(user);
            if lease.is_none() && LEASE_SEEN.get() {
                // Only a logout deletes the lease: another tab logged this user out and its
                // signal has not reached us yet. Stop before writing anything.
                if local.finish(Ended::LoggedOut) {
                    ended(local, Ended::LoggedOut, false);
                }
                break;
            }
            if lease.is_some() {
                LEASE_SEEN.set(true);
            }
            let free = lease.is_none_or(|(t, until)| t == tab || until < now);
            if free {
                storage::set_leader(user, &tab, now + LEASE_MS);
                if !local.leader.get_untracked() {
                    local.leader.set(true);
                    // Resume where the last leader (maybe another tab) left the stream.
                    let position = match storage::load_snapshot(user).await {
                        Some(s) if s.board.viewer == user && active(local) => {
                            local.base.set(s.board.turns);
                            s.position
                        }
                        _ => None,
                    };
                    spawn_local(send_loop(local, user));
                    spawn_local(uploads::upload_loop(local, user));
                    spawn_local(reference::follow(local, user));
                    spawn_local(shape_loop(local, user, position));
                }
            } else if local.leader.get_untracked() {
                local.leader.set(false);
                wake();
            }
            TimeoutFuture::new(1000).await;
        }
    });
}

/// How many times an ended session asks whether another user is signed in (at 1, 2, 4, 8, 16 s).
const PROBES: u32 = 5;

/// A plain 401 often comes on a request already in flight when another user's login (in another
/// tab) ended this session, with the old cookie: it cannot say who is signed in now. Ask a few
/// more times with an empty batch (which applies nothing) so the notice names the right reason.
async fn probe(local: Local, user: Uuid) {
    let mut rx = waker();
    let mut tries = 0;
    let mut delay = 1000;
    let mut retry = Backoff::default();
    while tries < PROBES && local.ended.get_untracked() == Some(Ended::Session) {
        nap(&mut rx, delay).await;
        if !local.online.get_untracked() {
            continue;
        }
        match send_batch(local, user, Vec::new()).await {
            Reply::Ended(Ended::OtherUser) => local.end(Ended::OtherUser),
            Reply::Ended(_) => {
                tries += 1;
                delay = (delay * 2).min(MAX_BACKOFF_MS);
            }
            Reply::Retry => delay = retry.next(random()),
            // The user's session holds again (they logged in elsewhere): nothing more to learn.
            Reply::Done(_) | Reply::Refused(_) => return,
        }
    }
}

/// This tab leads and its user's session has not ended here.
pub(super) fn active(local: Local) -> bool {
    local.leader.get_untracked() && local.ended.get_untracked().is_none()
}

/// How the server answered a request made for the store's user.
enum Reply<T> {
    Done(T),
    /// 401: the user's session is over on this device.
    Ended(Ended),
    /// 400: the request itself was refused, with the server's message.
    Refused(String),
    /// No answer, or one worth trying again later.
    Retry,
}

/// Why a 401 came: the server says when another user's session is the valid one.
pub(super) fn ended_by(response: &Response) -> Ended {
    match response.headers().get(SESSION_HEADER).as_deref() {
        Some("other-user") => Ended::OtherUser,
        _ => Ended::Session,
    }
}

/// Send a request carrying the user header and read its JSON answer.
async fn call<T: DeserializeOwned>(
    local: Local,
    request: Result<Request, gloo_net::Error>,
) -> Reply<T> {
    let Ok(request) = request else {
        return Reply::Retry;
    };
    let Ok(response) = reach::send(local, request, Patience::Quick).await else {
        return Reply::Retry;
    };
    match response.status() {
        200..=299 => match response.json().await {
            Ok(value) => Reply::Done(value),
            Err(_) => Reply::Retry,
        },
        401 => Reply::Ended(ended_by(&response)),
        400 => {
            // A server function's error (`{"BadRequest": …}`) or a plain `{"message": …}`.
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            let message = body
                .get("BadRequest")
                .or_else(|| body.get("message"))
                .and_then(|m| m.as_str())
                .unwrap_or("The request was malformed.");
            Reply::Refused(message.to_string())
        }
        _ => Reply::Retry,
    }
}

/// `POST /api/mutate` (the `mutate` server function's fixed endpoint) for the user: called
/// directly, not through the server function's client, to carry the user header and to tell a
/// 401's reason apart.
async fn send_batch(local: Local, user: Uuid, batch: Vec<Mutation>) -> Reply<Vec<Outcome>> {
    #[derive(serde::Serialize)]
    struct Args {
        batch: Vec<Mutation>,
    }
    call(
        local,
        Request::post("/api/mutate")
            .header(USER_HEADER, &user.to_string())
            .json(&Args { batch }),
    )
    .await
}

/// Send queued mutations in order, in batches; settle each by its outcome.
async fn send_loop(local: Local, user: Uuid) {
    let mut rx = waker();
    let mut backoff = Backoff::default();
    while active(local) {
        let batch: Vec<Pending> = local.outbox.with_untracked(|o| {
            let held = local.failed.with_untracked(|f| super::held(o, f));
            let mut unsent: Vec<Pending> = o
                .iter()
                .filter(|p| p.sent.is_none() && !held.contains(&p.mutation.id))
                .cloned()
                .collect();
            unsent.sort_by_key(|p| p.seq);
            // A new home ends its batch: what is started on it waits for its answer (and is
            // held back if it was refused, rather than refused with it).
            let home = unsent
                .iter()
                .position(|p| matches!(p.mutation.change, Change::CreateProperty(_)));
            unsent.truncate(home.map_or(MAX_BATCH, |i| (i + 1).min(MAX_BATCH)));
            unsent
        });
        if batch.is_empty() || !local.online.get_untracked() {
            nap(&mut rx, 5000).await;
            continue;
        }
        let mutations = batch.iter().map(|p| p.mutation.clone()).collect();
        match send_batch(local, user, mutations).await {
            Reply::Done(outcomes) => {
                backoff.reset();
                for (p, outcome) in batch.into_iter().zip(outcomes) {
                    settle(local, user, p, outcome);
                }
            }
            // Kept in storage, unsent, until the user logs in again on this device.
            Reply::Ended(why) => local.end(why),
            Reply::Refused(message) => {
                // The whole batch was refused as malformed: show it rather than retry forever.
                for p in batch {
                    let rejection = Rejection::Invalid {
                        message: message.clone(),
                        fields: vec![],
                    };
                    settle(local, user, p, Outcome::Rejected(rejection));
                }
            }
            Reply::Retry => {
                nap(&mut rx, backoff.next(random())).await;
            }
        }
    }
}

/// Transactions one stream delivered recently, and the order to forget them in.
type Delivered = (HashSet<String>, VecDeque<String>);

thread_local! {
    /// Transactions each stream delivered recently (a reply may arrive after its change did).
    static SEEN: RefCell<HashMap<&'static str, Delivered>> = RefCell::new(HashMap::new());
}

fn seen(stream: &str, txid: &str) -> bool {
    SEEN.with(|s| {
        s.borrow()
            .get(stream)
            .is_some_and(|(set, _)| set.contains(txid))
    })
}

/// `stream` delivered these transactions.
pub(super) fn remember(stream: &'static str, txids: impl IntoIterator<Item = String>) {
    SEEN.with(|s| {
        let mut s = s.borrow_mut();
        let (set, order) = s.entry(stream).or_default();
        for t in txids {
            if set.insert(t.clone()) {
                order.push_back(t);
            }
        }
        while order.len() > 5000 {
            if let Some(old) = order.pop_front() {
                set.remove(&old);
            }
        }
    });
}

/// The stream whose rows show a change: the device keeps the change in its view until that
/// stream delivered the change's transaction.
fn carried_by(change: &Change) -> &'static str {
    match change {
        Change::CreateProperty(_) | Change::UpdateProperty { .. } => "properties",
        Change::AddLineItems { .. }
        | Change::EditLineItem { .. }
        | Change::RemoveLineItem { .. } => "line_items",
        Change::AddNote { .. } => "notes",
        Change::AddPhoto { .. } => "photos",
        Change::MarkRead { .. } => "inbox",
        _ => "turns",
    }
}

/// An edit the device's turns already show (after a snapshot, which carries rows, not the
/// transactions that wrote them).
fn in_base(local: Local, change: &Change) -> bool {
    match change {
        Change::EditTurn { turn, edits } => local.base.with_untracked(|base| {
            base.iter()
                .find(|c| c.id == *turn)
                .is_some_and(|c| edits.iter().all(|e| e.is_noop(c)))
        }),
        _ => false,
    }
}

/// Whether the device's rows now show what `change`, applied in transaction `txid`, did.
fn shown(local: Local, change: &Change, txid: &str) -> bool {
    let stream = carried_by(change);
    if !seen(stream, txid) {
        return false;
    }
    // A scope change also writes its turn's amount (unless the sum stayed the same): until the
    // turns stream shows that too, the card would show the old amount.
    let Some(turn) = change.turn().filter(|_| stream == "line_items") else {
        return true;
    };
    let total = local.line_items.with_untracked(|items| {
        turns::line_items::total(items.iter().filter(|i| i.turn_id == turn))
    });
    seen("turns", txid)
        || local.base.with_untracked(|cards| {
            cards
                .iter()
                .find(|c| c.id == turn)
                .is_none_or(|c| c.turn_amount == total)
        })
}

fn settle(local: Local, user: Uuid, p: Pending, outcome: Outcome) {
    if storage_cleared(local, user) {
        // Logged out while the batch was in flight: its keys are gone and stay gone.
        return;
    }
    match outcome {
        // Not shown yet: kept until it is. A snapshot taken after the change holds it without
        // its transaction id, and may have arrived before this reply: then the rows show it.
        Outcome::Applied { txid: Some(txid) }
            if !shown(local, &p.mutation.change, &txid) && !in_base(local, &p.mutation.change) =>
        {
            let sent = Pending {
                sent: Some(Sent {
                    txid: Some(txid),
                    at_ms: now_ms(),
                }),
                ..p
            };
            let _ = storage::save_pending(user, &sent);
            local.outbox.update(|o| {
                if let Some(slot) = o.iter_mut().find(|q| q.mutation.id == sent.mutation.id) {
                    *slot = sent;
                }
            });
        }
        Outcome::Applied { .. } => drop_pending(local, user, &p),
        Outcome::Rejected(rejection) => {
            // A conflict brings the row as it is now: show it at once, before the stream does.
            if let Rejection::Conflict {
                current: Some(current),
                ..
            } = &rejection
            {
                local.base.update(|base| {
                    if let Some(c) = base.iter_mut().find(|c| c.id == current.id) {
                        if current.version > c.version {
                            *c = (**current).clone();
                        }
                    }
                });
            }
            let failed = Failed {
                seq: p.seq,
                mutation: p.mutation.clone(),
                rejection,
            };
            storage::save_failed(user, &failed);
            drop_pending(local, user, &p);
            local.failed.update(|f| f.push(failed));
        }
    }
}

/// A logout (here or in another tab) cleared the user's keys: write none of them again. Checked
/// before each write, as another tab's logout signal may still be on its way.
pub(super) fn storage_cleared(local: Local, user: Uuid) -> bool {
    local.ended.get_untracked() == Some(Ended::LoggedOut)
        || (LEASE_SEEN.get() && storage::leader(user).is_none())
}

fn drop_pending(local: Local, user: Uuid, p: &Pending) {
    storage::remove_pending(user, p);
    local
        .outbox
        .update(|o| o.retain(|q| q.mutation.id != p.mutation.id));
}

/// One change from the stream, buffered until the next up-to-date.
enum RowChange {
    Upsert(Uuid, Columns),
    Delete(Uuid),
}

/// What a GET made for the store's user brought back.
pub(super) enum Answer {
    /// Stop: the session ended here (a 401), or this tab no longer leads.
    Stop,
    /// No answer (offline, the server unreachable, the body cut).
    Failed,
    Got(Response, String),
}

/// Send a GET made for `user`. A 401 ends syncing here: never follow another user's rows.
pub(super) async fn get(
    local: Local,
    user: Uuid,
    request: RequestBuilder,
    patience: Patience,
) -> Answer {
    let Ok(request) = request.header(USER_HEADER, &user.to_string()).build() else {
        return Answer::Failed;
    };
    let answer = match reach::send(local, request, patience).await {
        Ok(response) if response.status() == 401 => {
            if active(local) {
                local.end(ended_by(&response));
            }
            return Answer::Stop;
        }
        Ok(response) => match response.text().await {
            Ok(body) => Answer::Got(response, body),
            Err(_) => Answer::Failed,
        },
        Err(_) => Answer::Failed,
    };
    if active(local) {
        answer
    } else {
        // Ended (or lost the lead) while waiting: nothing of this answer goes anywhere.
        Answer::Stop
    }
}

/// One request of `follower` for the user's shape `name` (`wait`: a live request, once the
/// follower is live): what the answer meant, or `None` to stop (the session ended here, or this
/// tab no longer leads). Waits out its backoff after a failed request (and then says `Retry`);
/// tells the other loops when the server is back.
pub(super) async fn shape_request(
    local: Local,
    user: Uuid,
    name: &str,
    follower: &mut ShapeFollower,
    rx: &mut mpsc::UnboundedReceiver<()>,
    wait: bool,
) -> Option<Step> {
    let mut request = follower.request();
    request.live &= wait;
    let url = format!("/api/shapes/{name}?{}", request.query(Some(now_ms())));
    let mut builder = Request::get(&url);
    if !request.live {
        // A catch-up's URL repeats (same handle and offset) while its answer changes: the
        // browser may keep an answer for a minute (by its cache headers), so it asks the server.
        builder = builder.cache(web_sys::RequestCache::NoCache);
    }
    let patience = if request.live {
        Patience::LongPoll
    } else {
        Patience::Quick
    };
    let answer = match get(local, user, builder, patience).await {
        Answer::Stop => return None,
        Answer::Failed => None,
        Answer::Got(response, body) => Some((response, body)),
    };
    let was_backing_off = follower.is_backing_off();
    let step = match answer {
        Some((response, body)) => {
            let head = ResponseHead::read(response.status(), |h| response.headers().get(h));
            follower.receive(&head, &body)
        }
        None => Step::Retry,
    };
    match step {
        // 403/404 too: the server may see it differently after a deploy; keep trying.
        Step::Retry | Step::Refused { .. } => {
            nap(rx, follower.backoff(random())).await;
            Some(Step::Retry)
        }
        Step::Changes(_) if was_backing_off => {
            // The server is back: whatever else was backing off may go now.
            wake();
            Some(step)
        }
        step => Some(step),
    }
}

/// The board and the reference tables as this device kept them (at start, and when another
/// tab wrote them).
async fn load_caches(local: Local, user: Uuid) {
    let snapshot = storage::load_snapshot(user)
        .await
        .filter(|s| s.board.viewer == user);
    // A tab that began to lead meanwhile has newer rows than these.
    if local.ended.get_untracked().is_some()
        || local.user.get_untracked() != Some(user)
        || local.leader.get_untracked()
    {
        return;
    }
    if let Some(s) = snapshot {
        local.base.set(s.board.turns.clone());
        // The last poll's time when it is later than the rows' (it found nothing new); never
        // earlier than what this page showed.
        let stored = s.synced_at.max(storage::load_synced(user));
        local
            .synced_at
            .update(|shown| *shown = (*shown).max(stored));
        if local.meta.get_untracked().is_none() {
            // A page without a board (Properties): names and stages as last seen.
            local.meta.set(Some(turns::model::Board {
                turns: Vec::new(),
                ..s.board
            }));
        }
    }
    reference::show_kept(local, user).await;
}

/// Follow `/api/shapes/turns` (long-poll, with the core's follower): apply changes at
/// up-to-date boundaries, persist, and retire outbox entries whose transaction arrived.
async fn shape_loop(local: Local, user: Uuid, position: Option<Position>) {
    let mut rx = waker();
    let mut follower = position.map_or_else(ShapeFollower::new, ShapeFollower::resume);
    let mut replace = follower.wants_snapshot();
    let mut buffer: Vec<RowChange> = Vec::new();
    let mut txids: HashSet<String> = HashSet::new();
    let mut persisted = follower.position();
    // When the current snapshot was asked for: it holds every write acknowledged before then.
    let mut snapshot_asked_at = 0;
    let expected = local.base.with_untracked(Vec::len);
    while active(local) {
        if !local.online.get_untracked() {
            nap(&mut rx, 5000).await;
            continue;
        }
        if follower.wants_snapshot() {
            snapshot_asked_at = now_ms();
        }
        let Some(step) = shape_request(local, user, "turns", &mut follower, &mut rx, true).await
        else {
            break;
        };
        let batch = match step {
            Step::Changes(batch) => batch,
            Step::Refetch => {
                // The shape was rotated: start again from a fresh snapshot.
                buffer.clear();
                replace = true;
                continue;
            }
            Step::Retry | Step::Refused { .. } => continue,
        };
        if batch.starts_snapshot {
            buffer.clear();
            replace = true;
        }
        for change in batch.changes {
            txids.extend(change.txids.iter().map(Txid::to_string));
            let id = change
                .value
                .get("id")
                .and_then(|v| v.as_str()?.parse().ok());
            let Some(id) = id else {
                continue;
            };
            buffer.push(match change.operation {
                Operation::Delete => RowChange::Delete(id),
                Operation::Insert | Operation::Update => RowChange::Upsert(id, change.value),
            });
        }
        if replace && !batch.up_to_date {
            local.first_sync.set(Some((buffer.len(), expected)));
        }
        if batch.up_to_date {
            let changed = !buffer.is_empty() || replace;
            let was_snapshot = replace;
            commit(local, std::mem::take(&mut buffer), replace);
            replace = false;
            local.first_sync.set(None);
            let now = now_ms();
            local.synced_at.set(Some(now));
            remember("turns", txids.drain());
            retire(local, user, was_snapshot.then_some(snapshot_asked_at));
            // Idle polls change nothing: do not rewrite the store (other tabs reread it).
            let position = follower.position();
            if changed || position != persisted {
                persist(local, user, &position);
                persisted = position;
            }
            storage::save_synced(user, now);
        }
    }
}

/// Apply a batch of row changes to the base cards, with names from the local reference tables
/// (a name not there yet arrives with its table's stream, which renames the cards then).
fn commit(local: Local, changes: Vec<RowChange>, replace: bool) {
    let meta = local.meta.get_untracked();
    local.base.update(|base| {
        let previous: HashMap<Uuid, TurnCard> = base.iter().map(|c| (c.id, c.clone())).collect();
        let mut props: HashMap<Uuid, (String, String)> = HashMap::new();
        for c in base.iter() {
            props.insert(
                c.property_id,
                (c.property_code.clone(), c.property_name.clone()),
            );
        }
        local.properties.with_untracked(|list| {
            for p in list {
                props.insert(p.id, (p.property_id.clone(), p.name.clone()));
            }
        });
        let mut cards: Vec<TurnCard> = if replace {
            Vec::new()
        } else {
            std::mem::take(base)
        };
        let mut index: HashMap<Uuid, usize> =
            cards.iter().enumerate().map(|(i, c)| (c.id, i)).collect();
        for change in changes {
            match change {
                RowChange::Delete(id) => {
                    if let Some(i) = index.remove(&id) {
                        cards.remove(i);
                        index = cards.iter().enumerate().map(|(i, c)| (c.id, i)).collect();
                    }
                }
                RowChange::Upsert(id, value) => {
                    if value.get("is_active").and_then(|v| v.as_str()) == Some("f") {
                        if let Some(i) = index.remove(&id) {
                            cards.remove(i);
                            index = cards.iter().enumerate().map(|(i, c)| (c.id, i)).collect();
                        }
                        continue;
                    }
                    let i = match index.get(&id) {
                        Some(&i) => i,
                        None => {
                            let card = previous.get(&id).cloned().unwrap_or_else(|| TurnCard {
                                id,
                                ..TurnCard::default()
                            });
                            cards.push(card);
                            index.insert(id, cards.len() - 1);
                            cards.len() - 1
                        }
                    };
                    let card = &mut cards[i];
                    merge_row(card, &value);
                    if let Some((code, name)) = props.get(&card.property_id) {
                        card.property_code = code.clone();
                        card.property_name = name.clone();
                    }
                    card.vendor_name = card.vendor_id.and_then(|v| {
                        super::vendor_name(meta.as_ref(), v).or(card.vendor_name.clone())
                    });
                    card.pm_name = card.pm_id.and_then(|pm| {
                        meta.as_ref()
                            .and_then(|m| m.managers.iter().find(|n| n.id == pm))
                            .map(|n| n.name.clone())
                            .or(card.pm_name.clone())
                    });
                }
            }
        }
        cards.sort_by(|a, b| {
            (a.move_out_date.is_none(), a.move_out_date, &a.turn_id).cmp(&(
                b.move_out_date.is_none(),
                b.move_out_date,
                &b.turn_id,
            ))
        });
        *base = cards;
    });
}

/// Shape values are Postgres text; columns absent from an update are unchanged.
fn merge_row(card: &mut TurnCard, value: &Columns) {
    for (column, v) in value {
        let text = v.as_str();
        let uuid = || text.and_then(|s| s.parse::<Uuid>().ok());
        let date = || text.and_then(|s| s.parse::<chrono::NaiveDate>().ok());
        let money = || text.and_then(|s| s.parse::<turns::Decimal>().ok());
        match column.as_str() {
            "turn_id" => card.turn_id = text.unwrap_or_default().to_string(),
            "property_id" => card.property_id = uuid().unwrap_or_default(),
            "stage_id" => card.stage_id = uuid().unwrap_or_default(),
            "property_manager_id" => card.pm_id = uuid(),
            "vendor_id" => card.vendor_id = uuid(),
            "wo_number" => card.wo_number = text.map(str::to_string),
            "move_out_date" => card.move_out_date = date(),
            "expected_completion_date" => card.expected_completion_date = date(),
            "turn_completion_date" => card.turn_completion_date = date(),
            "turn_amount" => card.turn_amount = money(),
            "approved_turn_amount" => card.approved_turn_amount = money(),
            "approval_status" => {
                card.approval_status = turns::ApprovalStatus::ALL
                    .into_iter()
                    .find(|s| Some(s.as_str()) == text);
            }
            "version" => card.version = text.and_then(|s| s.parse().ok()).unwrap_or(card.version),
            "vendor_accepted_at" => card.vendor_accepted = text.is_some(),
            "declined_vendor_id" => card.declined_vendor_id = uuid(),
            "decline_reason" => card.decline_reason = text.map(str::to_string),
            "qc_passed_at" => card.qc_passed = text.is_some(),
            "qc_failures" => card.qc_failures = text.map(str::to_string),
            "rejection_reason" => card.rejection_reason = text.map(str::to_string),
            "awaiting_since" => card.awaiting_since = text.and_then(turns::pg_text::timestamp),
            _ => {}
        }
    }
}

/// Outbox entries the streams have now delivered leave the outbox (and so the optimistic layer):
/// their rows arrived (`shown`), or a fresh turns snapshot asked for after the server
/// acknowledged them holds their effect (a snapshot carries rows, not transactions).
pub(super) fn retire(local: Local, user: Uuid, snapshot_asked_at: Option<u64>) {
    let now = now_ms();
    let done: Vec<Pending> = local.outbox.with_untracked(|o| {
        o.iter()
            .filter(|p| {
                p.sent.as_ref().is_some_and(|s| {
                    s.txid
                        .as_ref()
                        .is_some_and(|t| shown(local, &p.mutation.change, t))
                        || snapshot_asked_at.is_some_and(|asked| {
                            s.at_ms <= asked || in_base(local, &p.mutation.change)
                        })
                        || now.saturating_sub(s.at_ms) > UNSEEN_MS
                })
            })
            .cloned()
            .collect()
    });
    for p in &done {
        drop_pending(local, user, p);
    }
}

fn persist(local: Local, user: Uuid, position: &Option<Position>) {
    // Only while syncing for a signed-in user: an ended session's board is deleted, not kept.
    if local.ended.get_untracked().is_some() || storage_cleared(local, user) {
        return;
    }
    let Some(meta) = local.meta.get_untracked() else {
        return;
    };
    let snapshot = Snapshot {
        board: turns::model::Board {
            turns: local.base.get_untracked(),
            ..meta
        },
        position: position.clone(),
        synced_at: local.synced_at.get_untracked(),
    };
    storage::save_snapshot(user, &snapshot);
}
