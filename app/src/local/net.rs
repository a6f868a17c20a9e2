//! The browser side of sync: one leading tab per user follows the `turns` shape and sends the
//! outbox; every tab follows local storage. Retries back off with jitter and never give up, and
//! time offline is not a failure: nothing is sent while the browser says it is offline.
use super::storage::{self, Snapshot};
use super::{now_ms, Failed, Local, Pending, Sent};
use crate::api::{mutate, turn_board, AppError, MAX_BATCH};
use futures::channel::mpsc;
use futures::{FutureExt, StreamExt};
use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use turns::model::TurnCard;
use turns::mutation::{Change, Outcome, Rejection};
use uuid::Uuid;

/// The leader's lease; renewed every second, taken over by another tab when it lapses.
const LEASE_MS: u64 = 3000;
/// A sent mutation whose transaction the stream never showed (its row left our scope): dropped
/// from the outbox after this long while the stream is live.
const UNSEEN_MS: u64 = 30_000;
const MAX_BACKOFF_MS: u64 = 30_000;
const SESSION_ENDED: &str =
    "Your session has ended. Log in again to sync — your changes are kept on this device.";

thread_local! {
    static WAKERS: RefCell<Vec<mpsc::UnboundedSender<()>>> = const { RefCell::new(Vec::new()) };
}

/// Something changed (new mutation, back online, storage event): loops waiting for work run now.
pub fn wake() {
    WAKERS.with(|w| w.borrow_mut().retain(|tx| tx.unbounded_send(()).is_ok()));
}

fn waker() -> mpsc::UnboundedReceiver<()> {
    let (tx, rx) = mpsc::unbounded();
    WAKERS.with(|w| w.borrow_mut().push(tx));
    rx
}

/// Sleep for `ms`, or less if woken.
async fn nap(rx: &mut mpsc::UnboundedReceiver<()>, ms: u64) {
    let timer = TimeoutFuture::new(ms.min(u32::MAX as u64) as u32).fuse();
    let woken = rx.next().fuse();
    futures::pin_mut!(timer, woken);
    futures::select! {
        _ = timer => {},
        _ = woken => {},
    }
}

fn backoff(previous: u64) -> u64 {
    let base = (previous * 2).clamp(500, MAX_BACKOFF_MS);
    // Full jitter on half the delay, so many devices coming back online do not arrive in step.
    base / 2 + (js_sys::Math::random() * (base / 2) as f64) as u64
}

fn navigator_online() -> bool {
    web_sys::window().is_none_or(|w| w.navigator().on_line())
}

pub fn start(local: Local) {
    let Some(user) = local.user.get_untracked() else {
        return;
    };
    let snapshot = storage::load_snapshot(user).filter(|s| s.board.viewer == user);
    if let Some(s) = &snapshot {
        local.base.set(s.board.turns.clone());
        local.synced_at.set(s.synced_at);
    }
    local.outbox.set(storage::load_outbox(user));
    local.failed.set(storage::load_failed(user));
    local.online.set(navigator_online());

    let set_online = move |on: bool| {
        local.online.set(on);
        wake();
    };
    window_event_listener(leptos::ev::online, move |_| set_online(true));
    window_event_listener(leptos::ev::offline, move |_| set_online(false));
    // Other tabs' writes: follow them.
    let mine = storage::prefix(user);
    window_event_listener(leptos::ev::storage, move |ev| {
        if !ev.key().is_some_and(|k| k.starts_with(&mine)) {
            return;
        }
        local.outbox.set(storage::load_outbox(user));
        local.failed.set(storage::load_failed(user));
        if !local.leader.get_untracked() {
            if let Some(s) = storage::load_snapshot(user) {
                local.base.set(s.board.turns);
                local.synced_at.set(s.synced_at);
            }
        }
        wake();
    });
    let tab = Uuid::new_v4().to_string();
    {
        let tab = tab.clone();
        window_event_listener(leptos::ev::pagehide, move |_| {
            if storage::leader(user).is_some_and(|(t, _)| t == tab) {
                storage::set_leader(user, &tab, 0);
            }
        });
    }
    spawn_local(async move {
        loop {
            let now = now_ms();
            let free = storage::leader(user).is_none_or(|(t, until)| t == tab || until < now);
            if free {
                storage::set_leader(user, &tab, now + LEASE_MS);
                if !local.leader.get_untracked() {
                    local.leader.set(true);
                    // Resume where the last leader (maybe another tab) left the stream.
                    let (handle, offset) = match storage::load_snapshot(user) {
                        Some(s) if s.board.viewer == user => {
                            local.base.set(s.board.turns);
                            (s.handle, s.offset)
                        }
                        _ => (None, "-1".to_string()),
                    };
                    spawn_local(send_loop(local, user));
                    spawn_local(shape_loop(local, user, handle, offset));
                }
            } else if local.leader.get_untracked() {
                local.leader.set(false);
                wake();
            }
            TimeoutFuture::new(1000).await;
        }
    });
}

/// Send queued mutations in order, in batches; settle each by its outcome.
async fn send_loop(local: Local, user: Uuid) {
    let mut rx = waker();
    let mut delay = 0;
    while local.leader.get_untracked() {
        let batch: Vec<Pending> = local.outbox.with_untracked(|o| {
            let mut unsent: Vec<Pending> = o.iter().filter(|p| p.sent.is_none()).cloned().collect();
            unsent.sort_by_key(|p| p.seq);
            unsent.truncate(MAX_BATCH);
            unsent
        });
        if batch.is_empty() || !local.online.get_untracked() {
            nap(&mut rx, 5000).await;
            continue;
        }
        let mutations = batch.iter().map(|p| p.mutation.clone()).collect();
        match mutate(mutations).await {
            Ok(outcomes) => {
                delay = 0;
                // Sending works again: a session notice is over (a storage notice is not).
                if local
                    .notice
                    .with_untracked(|n| n.as_deref() == Some(SESSION_ENDED))
                {
                    local.notice.set(None);
                }
                for (p, outcome) in batch.into_iter().zip(outcomes) {
                    settle(local, user, p, outcome);
                }
            }
            Err(AppError::Unauthorized) => {
                local.notice.set(Some(SESSION_ENDED.into()));
                nap(&mut rx, 15_000).await;
            }
            Err(AppError::BadRequest(message)) => {
                // The whole batch was refused as malformed: show it rather than retry forever.
                for p in batch {
                    let rejection = Rejection::Invalid {
                        message: message.clone(),
                        fields: vec![],
                    };
                    settle(local, user, p, Outcome::Rejected(rejection));
                }
            }
            Err(_) => {
                delay = backoff(delay);
                nap(&mut rx, delay).await;
            }
        }
    }
}

thread_local! {
    /// Transactions the stream delivered recently (a reply may arrive after its change did).
    static SEEN: RefCell<(HashSet<String>, VecDeque<String>)> = RefCell::new(Default::default());
}

fn seen(txid: &str) -> bool {
    SEEN.with(|s| s.borrow().0.contains(txid))
}

fn remember(txids: &HashSet<String>) {
    SEEN.with(|s| {
        let (set, order) = &mut *s.borrow_mut();
        for t in txids {
            if set.insert(t.clone()) {
                order.push_back(t.clone());
            }
        }
        while order.len() > 5000 {
            if let Some(old) = order.pop_front() {
                set.remove(&old);
            }
        }
    });
}

fn settle(local: Local, user: Uuid, p: Pending, outcome: Outcome) {
    match outcome {
        Outcome::Applied { txid: Some(txid) } if !seen(&txid) => {
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

fn drop_pending(local: Local, user: Uuid, p: &Pending) {
    storage::remove_pending(user, p);
    local
        .outbox
        .update(|o| o.retain(|q| q.mutation.id != p.mutation.id));
}

/// A shape message: a change or a control message. Values are Postgres text (or null).
#[derive(Deserialize)]
struct Message {
    headers: MessageHeaders,
    #[serde(default)]
    value: Row,
}

#[derive(Deserialize)]
struct MessageHeaders {
    control: Option<String>,
    operation: Option<String>,
    #[serde(default)]
    txids: Vec<u64>,
}

type Row = HashMap<String, Option<String>>;

/// One change from the stream, buffered until the next up-to-date.
enum RowChange {
    Upsert(Uuid, Row),
    Delete(Uuid),
}

/// Follow `/api/shapes/turns` (long-poll): apply changes at up-to-date boundaries, persist, and
/// retire outbox entries whose transaction arrived.
async fn shape_loop(local: Local, user: Uuid, mut handle: Option<String>, mut offset: String) {
    let mut rx = waker();
    let mut delay = 0;
    let mut live = false;
    let mut replace = handle.is_none();
    let mut buffer: Vec<RowChange> = Vec::new();
    let mut txids: HashSet<String> = HashSet::new();
    let mut persisted = offset.clone();
    // When the current snapshot was asked for: it holds every write acknowledged before then.
    let mut snapshot_asked_at = 0;
    let expected = local.base.with_untracked(Vec::len);
    while local.leader.get_untracked() {
        if !local.online.get_untracked() {
            nap(&mut rx, 5000).await;
            continue;
        }
        let mut url = format!("/api/shapes/turns?offset={offset}");
        if let Some(h) = &handle {
            url.push_str(&format!("&handle={h}"));
        }
        if live {
            url.push_str("&live=true");
        }
        if offset == "-1" {
            // Snapshot responses may be cached for days (by the protocol's cache headers): after
            // a 409 the browser would hand back the stale one with its dead handle.
            url.push_str(&format!("&cache-buster={}", now_ms()));
        }
        if offset == "-1" {
            snapshot_asked_at = now_ms();
        }
        let response = match gloo_net::http::Request::get(&url).send().await {
            Ok(r) => r,
            Err(_) => {
                delay = backoff(delay);
                nap(&mut rx, delay).await;
                continue;
            }
        };
        match response.status() {
            200 => {}
            409 => {
                // The shape was rotated: start again from a fresh snapshot.
                (handle, offset, live, replace) = (None, "-1".into(), false, true);
                buffer.clear();
                continue;
            }
            401 => {
                local.notice.set(Some(SESSION_ENDED.into()));
                nap(&mut rx, 15_000).await;
                continue;
            }
            _ => {
                delay = backoff(delay);
                nap(&mut rx, delay).await;
                continue;
            }
        }
        let headers = response.headers();
        let messages: Vec<Message> = match response.json().await {
            Ok(m) => m,
            Err(_) => {
                delay = backoff(delay);
                nap(&mut rx, delay).await;
                continue;
            }
        };
        if delay > 0 {
            // The server is back: whatever else was backing off may go now.
            wake();
        }
        delay = 0;
        if let Some(h) = headers.get("electric-handle") {
            handle = Some(h);
        }
        if let Some(o) = headers.get("electric-offset") {
            offset = o;
        }
        let mut up_to_date = false;
        for m in messages {
            let h = m.headers;
            if let Some(control) = h.control.as_deref() {
                if control == "up-to-date" {
                    up_to_date = true;
                } else if control == "must-refetch" {
                    (handle, offset, live, replace) = (None, "-1".into(), false, true);
                    buffer.clear();
                }
                continue;
            }
            txids.extend(h.txids.iter().map(u64::to_string));
            let Some(id) = m
                .value
                .get("id")
                .cloned()
                .flatten()
                .and_then(|s| s.parse().ok())
            else {
                continue;
            };
            match h.operation.as_deref() {
                Some("delete") => buffer.push(RowChange::Delete(id)),
                Some(_) => buffer.push(RowChange::Upsert(id, m.value)),
                None => {}
            }
        }
        if replace && !up_to_date {
            local.first_sync.set(Some((buffer.len(), expected)));
        }
        if up_to_date {
            let changed = !buffer.is_empty() || replace;
            let was_snapshot = replace;
            let unknown = commit(local, std::mem::take(&mut buffer), replace);
            replace = false;
            live = true;
            local.first_sync.set(None);
            local.synced_at.set(Some(now_ms()));
            remember(&txids);
            retire(
                local,
                user,
                &txids,
                was_snapshot.then_some(snapshot_asked_at),
            );
            txids.clear();
            // Idle polls change nothing: do not rewrite the store (other tabs reread it).
            if changed || offset != persisted {
                persist(local, user, &handle, &offset);
                persisted = offset.clone();
            }
            if unknown && local.online.get_untracked() {
                if let Ok(board) = turn_board().await {
                    local.attach(board);
                }
            }
        }
    }
}

/// Apply a batch of row changes to the base cards. Returns whether a row named something we
/// have no name for (then the caller refreshes the board's names).
fn commit(local: Local, changes: Vec<RowChange>, replace: bool) -> bool {
    let meta = local.meta.get_untracked();
    let mut unknown = false;
    local.base.update(|base| {
        let previous: HashMap<Uuid, TurnCard> = base.iter().map(|c| (c.id, c.clone())).collect();
        let mut props: HashMap<Uuid, (String, String)> = HashMap::new();
        for c in base.iter() {
            props.insert(
                c.property_id,
                (c.property_code.clone(), c.property_name.clone()),
            );
        }
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
                    if value.get("is_active").cloned().flatten().as_deref() == Some("f") {
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
                    match props.get(&card.property_id) {
                        Some((code, name)) if card.property_name.is_empty() => {
                            card.property_code = code.clone();
                            card.property_name = name.clone();
                        }
                        None => unknown = true,
                        _ => {}
                    }
                    card.vendor_name = match card.vendor_id {
                        Some(v) => super::vendor_name(meta.as_ref(), v).or_else(|| {
                            unknown = true;
                            card.vendor_name.clone()
                        }),
                        None => None,
                    };
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
    unknown
}

/// Shape values are Postgres text; columns absent from an update are unchanged.
fn merge_row(card: &mut TurnCard, value: &Row) {
    for (column, v) in value {
        let text = v.as_deref();
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
            _ => {}
        }
    }
}

/// Outbox entries the stream has now delivered leave the outbox (and so the optimistic layer):
/// their transaction arrived, or a fresh snapshot asked for after the server acknowledged them
/// holds their effect (a snapshot carries rows, not transactions).
fn retire(local: Local, user: Uuid, txids: &HashSet<String>, snapshot_asked_at: Option<u64>) {
    let now = now_ms();
    let base = local.base.get_untracked();
    // After a snapshot, an edit the rows already show is in it, whenever it was acknowledged.
    let shown = |p: &Pending| match &p.mutation.change {
        Change::EditTurn { turn, edits } => base
            .iter()
            .find(|c| c.id == *turn)
            .is_some_and(|c| edits.iter().all(|e| e.is_noop(c))),
        _ => false,
    };
    let done: Vec<Pending> = local.outbox.with_untracked(|o| {
        o.iter()
            .filter(|p| {
                p.sent.as_ref().is_some_and(|s| {
                    s.txid.as_ref().is_some_and(|t| txids.contains(t))
                        || snapshot_asked_at.is_some_and(|asked| s.at_ms <= asked || shown(p))
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

fn persist(local: Local, user: Uuid, handle: &Option<String>, offset: &str) {
    let Some(meta) = local.meta.get_untracked() else {
        return;
    };
    let snapshot = Snapshot {
        board: turns::model::Board {
            turns: local.base.get_untracked(),
            ..meta
        },
        handle: handle.clone(),
        offset: offset.to_string(),
        synced_at: local.synced_at.get_untracked(),
    };
    if let Err(message) = storage::save_snapshot(user, &snapshot) {
        local.notice.set(Some(message));
    }
}
