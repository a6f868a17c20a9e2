//! The device's copy of the user's turns, and the edits waiting to reach the server.
//!
//! Three parts, combined into the view the board renders:
//! - `base`: the turns as the server last told us (the board server function for the first
//!   paint, then the `turns` shape stream), persisted in local storage;
//! - `outbox`: the user's mutations, persisted one storage key each *before* they are sent, kept
//!   until the shape stream delivers the transaction that applied them;
//! - `failed`: mutations the server refused for good (forbidden, invalid, conflict), shown with
//!   their reason until the user retries or discards them.
//!
//! The view is `base` with every outbox mutation applied in order (the optimistic state), so a
//! rejected or delivered mutation leaves the view simply by leaving the outbox.
//!
//! Only one tab per user talks to the server (the leader, see `net`); the others follow the same
//! storage keys. Everything about the network lives in `net`, storage in `storage` (browser only).
#[cfg(any(feature = "hydrate", test))]
mod compact;
#[cfg(feature = "hydrate")]
mod net;
#[cfg(feature = "hydrate")]
mod storage;

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use turns::model::{Board, TurnCard, COMPLETED_VISIBLE_DAYS};
use turns::mutation::{Change, Mutation, Rejection};
use turns::{ApprovalLevel, ApprovalStatus};
use uuid::Uuid;

/// A mutation waiting in the outbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// Order made on this device (all tabs): sent and applied in this order.
    pub seq: u64,
    pub mutation: Mutation,
    /// Set once the server applied it: the view keeps it until the stream shows `txid`.
    pub sent: Option<Sent>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    pub txid: Option<String>,
    /// When the server answered (ms since the epoch).
    pub at_ms: u64,
}

/// A mutation the server refused for good.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failed {
    pub seq: u64,
    pub mutation: Mutation,
    pub rejection: Rejection,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SyncState {
    Synced,
    Pending,
    Conflict,
    Error,
}

impl SyncState {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Synced => "synced",
            SyncState::Pending => "pending",
            SyncState::Conflict => "conflict",
            SyncState::Error => "error",
        }
    }
}

/// A card as the board shows it: optimistic values and their sync state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ViewCard {
    pub card: TurnCard,
    pub sync: SyncState,
}

/// The local store. One per page (provided by `App`); bound to a user by the board.
#[derive(Clone, Copy)]
pub struct Local {
    pub user: RwSignal<Option<Uuid>>,
    /// Stages, names and the viewer's role (a board without its turns).
    pub meta: RwSignal<Option<Board>>,
    pub base: RwSignal<Vec<TurnCard>>,
    pub outbox: RwSignal<Vec<Pending>>,
    pub failed: RwSignal<Vec<Failed>>,
    pub online: RwSignal<bool>,
    /// When the stream was last up to date (ms since the epoch).
    pub synced_at: RwSignal<Option<u64>>,
    /// First sync of a large shape: rows received so far, of about this many.
    pub first_sync: RwSignal<Option<(usize, usize)>>,
    /// This tab sends the outbox and follows the stream.
    pub leader: RwSignal<bool>,
    /// Something the user should know about syncing (storage full, session expired).
    pub notice: RwSignal<Option<String>>,
    started: StoredValue<bool>,
}

impl Local {
    pub fn new() -> Self {
        Local {
            user: RwSignal::new(None),
            meta: RwSignal::new(None),
            base: RwSignal::new(Vec::new()),
            outbox: RwSignal::new(Vec::new()),
            failed: RwSignal::new(Vec::new()),
            online: RwSignal::new(true),
            synced_at: RwSignal::new(None),
            first_sync: RwSignal::new(None),
            leader: RwSignal::new(false),
            notice: RwSignal::new(None),
            started: StoredValue::new(false),
        }
    }

    /// Bind to the board's viewer. The first board seeds the view (the server-rendered paint);
    /// once the stream runs, later boards only refresh names and stages.
    pub fn attach(&self, board: Board) {
        let Board { turns, .. } = board.clone();
        let meta = Board {
            turns: Vec::new(),
            ..board
        };
        if self.user.get_untracked() != Some(meta.viewer) {
            self.user.set(Some(meta.viewer));
            self.base.set(turns);
        } else if !self.started.get_value() {
            self.base.set(turns);
        } else {
            self.base
                .update(|cards| refresh_names(cards, &meta, &turns));
        }
        self.meta.set(Some(meta));
    }

    /// Start following local storage and (in the leading tab) the server. Browser only; once.
    pub fn start(&self) {
        if self.started.get_value() {
            return;
        }
        self.started.set_value(true);
        #[cfg(feature = "hydrate")]
        net::start(*self);
    }

    /// The optimistic view the board renders.
    pub fn view(&self) -> Memo<Vec<ViewCard>> {
        let this = *self;
        Memo::new(move |_| {
            let meta = this.meta.read();
            let base = this.base.read();
            let outbox = this.outbox.read();
            let failed = this.failed.read();
            optimistic(&base, &outbox, &failed, meta.as_ref())
        })
    }

    /// Make a mutation: stored in the outbox first, then shown, then sent by the leader.
    pub fn make(&self, change: Change, base_version: Option<i32>) {
        let mutation = Mutation {
            id: Uuid::new_v4(),
            base_version,
            device_time: now(),
            change,
        };
        let pending = Pending {
            seq: next_seq(),
            mutation,
            sent: None,
        };
        #[cfg(feature = "hydrate")]
        if let Some(user) = self.user.get_untracked() {
            if let Err(e) = storage::save_pending(user, &pending) {
                self.notice.set(Some(e));
            }
        }
        self.outbox.update(|o| o.push(pending));
        #[cfg(feature = "hydrate")]
        net::wake();
    }

    /// Send a refused mutation again: a conflict's edits rebased on the current values ("keep
    /// mine"), anything else as it was.
    pub fn retry(&self, id: Uuid) {
        let Some(f) = self
            .failed
            .with_untracked(|l| l.iter().find(|f| f.mutation.id == id).cloned())
        else {
            return;
        };
        self.discard(id);
        let current = f.mutation.change.turn().and_then(|t| {
            self.base
                .with_untracked(|b| b.iter().find(|c| c.id == t).cloned())
        });
        let (change, version) = match (f.mutation.change, current) {
            (Change::EditTurn { turn, edits }, Some(card)) => (
                Change::EditTurn {
                    turn,
                    edits: edits.iter().map(|e| e.rebased(&card)).collect(),
                },
                Some(card.version),
            ),
            (change, card) => (change, card.map(|c| c.version)),
        };
        self.make(change, version);
    }

    /// Drop a refused mutation ("take theirs" for a conflict).
    pub fn discard(&self, id: Uuid) {
        #[cfg(feature = "hydrate")]
        if let Some(user) = self.user.get_untracked() {
            storage::remove_failed(user, id);
        }
        self.failed.update(|l| l.retain(|f| f.mutation.id != id));
    }

    /// Forget this user's data on this device (logout).
    pub fn clear(&self) {
        #[cfg(feature = "hydrate")]
        if let Some(user) = self.user.get_untracked() {
            storage::clear_user(user);
        }
    }
}

impl Default for Local {
    fn default() -> Self {
        Self::new()
    }
}

pub fn use_local() -> Local {
    use_context::<Local>().unwrap_or_default()
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    #[cfg(feature = "hydrate")]
    {
        js_sys::Date::now() as u64
    }
    #[cfg(not(feature = "hydrate"))]
    {
        chrono::Utc::now().timestamp_millis() as u64
    }
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(now_ms() as i64).unwrap_or_default()
}

/// Device-wide increasing sequence: milliseconds × 1000 plus a counter, so tabs interleave by time.
fn next_seq() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let candidate = now_ms() * 1000;
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = candidate.max(last + 1);
        match LAST.compare_exchange(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

/// A vendor's name, from the board's lists.
pub fn vendor_name(meta: Option<&Board>, id: Uuid) -> Option<String> {
    let meta = meta?;
    meta.assignable_vendors
        .iter()
        .chain(&meta.vendors)
        .find(|v| v.id == id)
        .map(|v| v.name.clone())
}

/// A fresh board refreshes the names shown on cards the stream already holds.
fn refresh_names(cards: &mut [TurnCard], meta: &Board, fresh: &[TurnCard]) {
    let by_id: HashMap<Uuid, &TurnCard> = fresh.iter().map(|c| (c.id, c)).collect();
    for c in cards {
        if let Some(f) = by_id.get(&c.id) {
            c.property_code = f.property_code.clone();
            c.property_name = f.property_name.clone();
            c.pm_name = f.pm_name.clone();
        }
        if let Some(v) = c.vendor_id {
            c.vendor_name = vendor_name(Some(meta), v).or(c.vendor_name.take());
        }
    }
}

/// Base cards with the outbox applied in order, marked with their sync state.
pub fn optimistic(
    base: &[TurnCard],
    outbox: &[Pending],
    failed: &[Failed],
    meta: Option<&Board>,
) -> Vec<ViewCard> {
    let mut cards: Vec<ViewCard> = base
        .iter()
        .map(|c| ViewCard {
            card: c.clone(),
            sync: SyncState::Synced,
        })
        .collect();
    let mut index: HashMap<Uuid, usize> = cards
        .iter()
        .enumerate()
        .map(|(i, c)| (c.card.id, i))
        .collect();
    let mut ordered: Vec<&Pending> = outbox.iter().collect();
    ordered.sort_by_key(|p| p.seq);
    for p in ordered {
        let change = &p.mutation.change;
        if let Change::CreateTurn(t) = change {
            if let std::collections::hash_map::Entry::Vacant(slot) = index.entry(t.id) {
                if let Some(card) = new_card(t, &cards, meta) {
                    slot.insert(cards.len());
                    cards.push(ViewCard {
                        card,
                        sync: SyncState::Pending,
                    });
                }
            }
            continue;
        }
        let Some(&i) = change.turn().as_ref().and_then(|t| index.get(t)) else {
            continue;
        };
        apply_optimistic(&mut cards[i].card, change, meta);
        cards[i].sync = SyncState::Pending;
    }
    for f in failed {
        if let Some(&i) = f.mutation.change.turn().as_ref().and_then(|t| index.get(t)) {
            cards[i].sync = match f.rejection {
                Rejection::Conflict { .. } => SyncState::Conflict,
                _ => SyncState::Error,
            };
        }
    }
    if let Some(meta) = meta {
        // Completed turns leave the board after a while, as on the server.
        let complete: Vec<Uuid> = meta
            .stages
            .iter()
            .filter(|s| s.is_complete_stage)
            .map(|s| s.id)
            .collect();
        let cutoff = meta.today - chrono::Days::new(COMPLETED_VISIBLE_DAYS as u64);
        cards.retain(|c| {
            !complete.contains(&c.card.stage_id)
                || c.card.turn_completion_date.is_none_or(|d| d >= cutoff)
        });
    }
    cards
}

fn new_card(
    t: &turns::mutation::NewTurn,
    cards: &[ViewCard],
    meta: Option<&Board>,
) -> Option<TurnCard> {
    let stage = meta?.stages.first()?.id;
    let sibling = cards
        .iter()
        .find(|c| c.card.property_id == t.property_id)
        .map(|c| &c.card);
    Some(TurnCard {
        id: t.id,
        turn_id: t.turn_id.clone(),
        property_id: t.property_id,
        property_code: sibling.map(|c| c.property_code.clone()).unwrap_or_default(),
        property_name: sibling
            .map(|c| c.property_name.clone())
            .unwrap_or_else(|| "New turn".into()),
        stage_id: stage,
        pm_id: sibling.and_then(|c| c.pm_id),
        pm_name: sibling.and_then(|c| c.pm_name.clone()),
        wo_number: t.wo_number.clone(),
        move_out_date: t.move_out_date,
        approval_status: Some(ApprovalStatus::Pending),
        version: 1,
        ..TurnCard::default()
    })
}

/// What the server will (most likely) do, shown at once. The stream corrects any difference.
fn apply_optimistic(card: &mut TurnCard, change: &Change, meta: Option<&Board>) {
    match change {
        Change::EditTurn { edits, .. } => {
            for e in edits {
                e.apply(card);
            }
            card.vendor_name = card
                .vendor_id
                .and_then(|v| vendor_name(meta, v).or(card.vendor_name.clone()));
        }
        Change::DecideApproval {
            approve, amount, ..
        } => {
            let level = card.approval_status.and_then(ApprovalStatus::awaiting);
            if *approve {
                card.approved_turn_amount =
                    amount.or(card.turn_amount).or(card.approved_turn_amount);
                card.approval_status = match level {
                    Some(ApprovalLevel::Ho) => Some(ApprovalStatus::HoApproved),
                    _ => Some(ApprovalStatus::DfoApproved),
                };
            } else {
                card.approval_status = Some(ApprovalStatus::Rejected);
            }
        }
        Change::SubmitForApproval { .. }
        | Change::CreateTurn(_)
        | Change::CreateProperty(_)
        | Change::UpdateProperty { .. } => {}
    }
}
