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
//!
//! The store belongs to one user, and so does every request it makes (`X-Turns-User`). When the
//! server says that user's session is over here (expired, deactivated, logged out elsewhere, or
//! another user signed in on this device), the tab stops syncing for good (`Ended`): the unsent
//! outbox stays in storage until that user logs in again, the cached board goes. A logout in one
//! tab ends every tab of that user.
#[cfg(feature = "hydrate")]
mod cache;
#[cfg(any(feature = "hydrate", test))]
mod compact;
#[cfg(feature = "hydrate")]
mod net;
#[cfg(feature = "hydrate")]
mod reach;
#[cfg(feature = "hydrate")]
mod reference;
#[cfg(feature = "hydrate")]
mod storage;
#[cfg(feature = "hydrate")]
pub mod uploads;

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use turns::field::{Note, Photo};
use turns::inbox::Notification;
use turns::line_items::{self, CostTemplate, LineItem};
use turns::model::{Board, TurnCard};
use turns::mutation::{Change, Mutation, NewProperty, Rejection, TurnEdit};
use turns::qc::QcItem;
use turns::rows::PropertyRow;
use turns::rules;
use turns::ApprovalStatus;
use uuid::Uuid;

/// A photo taken on this device, kept (in IndexedDB, see `uploads`) from the moment it is taken
/// until the turn's `photos` shape shows it: offline, across reloads, through failed uploads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedPhoto {
    pub id: Uuid,
    pub turn: Uuid,
    pub caption: Option<String>,
    /// The QC checklist item it was taken for.
    #[serde(default)]
    pub qc_item: Option<Uuid>,
    /// When it was taken, by the device's clock.
    pub taken_at: chrono::DateTime<chrono::Utc>,
    pub bytes: usize,
    /// Why the server will not take it (shown until the user discards it).
    #[serde(default)]
    pub refused: Option<String>,
    /// The server attached it; it leaves the queue when the `photos` shape shows it.
    #[serde(default)]
    pub attached: bool,
    /// This page's object URL for the photo, shown until the server's thumbnail is there.
    #[serde(skip)]
    pub preview: String,
    /// Chunks sent of all, while it uploads.
    #[serde(skip)]
    pub sending: Option<(usize, usize)>,
}

impl QueuedPhoto {
    /// Still to be sent (neither attached nor refused).
    pub fn waiting(&self) -> bool {
        !self.attached && self.refused.is_none()
    }
}

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
    /// Stored by earlier app versions in the older dialect too (`turns::wire`).
    #[serde(deserialize_with = "turns::wire::rejection")]
    pub rejection: Rejection,
}

/// Why a tab stopped syncing for its user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The server no longer takes the user's session: expired, deactivated, logged out elsewhere.
    Session,
    /// A different user is signed in on this device (cookies are shared by every tab).
    OtherUser,
    /// The user logged out, in this tab or another: their storage is cleared.
    LoggedOut,
}

impl Ended {
    pub fn as_str(self) -> &'static str {
        match self {
            Ended::Session => "session",
            Ended::OtherUser => "other-user",
            Ended::LoggedOut => "logged-out",
        }
    }

    pub fn parse(text: &str) -> Option<Ended> {
        [Ended::Session, Ended::OtherUser, Ended::LoggedOut]
            .into_iter()
            .find(|e| e.as_str() == text)
    }
}

/// What the sync bar says once the tab stopped syncing: whom to log in as, and what waits.
pub fn ended_notice(why: Ended, email: Option<&str>, waiting: usize) -> String {
    let log_in = |verb: &str| match email {
        Some(e) => format!("{verb} in as {e}"),
        None => format!("{verb} in again"),
    };
    let what = match waiting {
        0 => "to continue".to_string(),
        1 => "to send 1 waiting change".to_string(),
        n => format!("to send {n} waiting changes"),
    };
    match why {
        Ended::Session => format!("Your session ended — {} {what}.", log_in("log")),
        Ended::OtherUser => format!(
            "Another user is signed in on this device. {} {what}.",
            log_in("Log")
        ),
        Ended::LoggedOut => "You have been logged out.".to_string(),
    }
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
    /// The homes the user may see (the `properties` shape), once synced or loaded from storage.
    pub properties: RwSignal<Vec<PropertyRow>>,
    /// The scopes of the user's turns (the `line_items` shape), by turn and position.
    pub line_items: RwSignal<Vec<LineItem>>,
    /// The cost templates a scope may start from (managers and approvers).
    pub templates: RwSignal<Vec<CostTemplate>>,
    /// What inspectors check, per stage (the `qc_items` shape).
    pub qc_items: RwSignal<Vec<QcItem>>,
    /// Notes on the user's turns (the `notes` shape).
    pub notes: RwSignal<Vec<Note>>,
    /// Photos on the user's turns (the `photos` shape): their rows; the bytes are fetched by URL.
    pub photos: RwSignal<Vec<Photo>>,
    /// Photos taken on this device that the `photos` shape does not show yet.
    pub photo_queue: RwSignal<Vec<QueuedPhoto>>,
    /// The user's notifications (the `inbox` shape).
    pub inbox: RwSignal<Vec<Notification>>,
    pub outbox: RwSignal<Vec<Pending>>,
    pub failed: RwSignal<Vec<Failed>>,
    pub online: RwSignal<bool>,
    /// Since when (ms since the epoch) the server has not answered this tab's requests, while
    /// the browser says it is online (see `reach`).
    pub unanswered: RwSignal<Option<u64>>,
    /// When the stream was last up to date (ms since the epoch).
    pub synced_at: RwSignal<Option<u64>>,
    /// First sync of a large shape: rows received so far, of about this many.
    pub first_sync: RwSignal<Option<(usize, usize)>>,
    /// This tab sends the outbox and follows the stream.
    pub leader: RwSignal<bool>,
    /// Something the user should know about syncing (storage full).
    pub notice: RwSignal<Option<String>>,
    /// Set once this tab stopped syncing for `user`; never cleared (a new login is a new page).
    pub ended: RwSignal<Option<Ended>>,
    /// The signed-in user's id and email, from the page header: the notice names whom to log in as.
    pub account: RwSignal<Option<(Uuid, String)>>,
    started: StoredValue<bool>,
}

impl Local {
    pub fn new() -> Self {
        Local {
            user: RwSignal::new(None),
            meta: RwSignal::new(None),
            base: RwSignal::new(Vec::new()),
            properties: RwSignal::new(Vec::new()),
            line_items: RwSignal::new(Vec::new()),
            templates: RwSignal::new(Vec::new()),
            qc_items: RwSignal::new(Vec::new()),
            notes: RwSignal::new(Vec::new()),
            photos: RwSignal::new(Vec::new()),
            photo_queue: RwSignal::new(Vec::new()),
            inbox: RwSignal::new(Vec::new()),
            outbox: RwSignal::new(Vec::new()),
            failed: RwSignal::new(Vec::new()),
            online: RwSignal::new(true),
            unanswered: RwSignal::new(None),
            synced_at: RwSignal::new(None),
            first_sync: RwSignal::new(None),
            leader: RwSignal::new(false),
            notice: RwSignal::new(None),
            ended: RwSignal::new(None),
            account: RwSignal::new(None),
            started: StoredValue::new(false),
        }
    }

    /// Bind to the board's viewer. The first board seeds the view (the server-rendered paint);
    /// once the stream runs, later boards only refresh names and stages.
    pub fn attach(&self, board: Board) {
        if self.ended.get_untracked().is_some() {
            // Whoever's board this is, it is not for this store any more.
            return;
        }
        if self.started.get_value() && self.user.get_untracked() != Some(board.viewer) {
            // A board fetched without our header (a client-side navigation) for someone else:
            // another user signed in on this device. Never mix their rows into this store.
            self.end(Ended::OtherUser);
            return;
        }
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

    /// The reference tables changed (a home, a vendor or a manager renamed): the names on the
    /// cards follow.
    pub fn refresh_names(&self) {
        let meta = self.meta.get_untracked();
        let homes: HashMap<Uuid, (String, String)> = self.properties.with_untracked(|list| {
            list.iter()
                .map(|p| (p.id, (p.property_id.clone(), p.name.clone())))
                .collect()
        });
        self.base.update(|cards| {
            for c in cards {
                if let Some((code, name)) = homes.get(&c.property_id) {
                    c.property_code = code.clone();
                    c.property_name = name.clone();
                }
                if let Some(v) = c.vendor_id {
                    c.vendor_name = vendor_name(meta.as_ref(), v).or(c.vendor_name.take());
                }
                if let Some(pm) = c.pm_id {
                    let named = meta
                        .as_ref()
                        .and_then(|m| m.managers.iter().find(|n| n.id == pm));
                    c.pm_name = named.map(|n| n.name.clone()).or(c.pm_name.take());
                }
            }
        });
    }

    /// The page header learned who is signed in. A different user than this store's means the
    /// store's session is over; otherwise remember the email for the notice, and (browser) end
    /// this tab when that user logs out in another tab.
    pub fn signed_in(&self, id: Uuid, email: String) {
        if self.ended.get_untracked().is_some() {
            return;
        }
        if self.user.get_untracked().is_some_and(|u| u != id) {
            self.end(Ended::OtherUser);
            return;
        }
        self.account.set(Some((id, email)));
        #[cfg(feature = "hydrate")]
        net::watch(*self, id);
    }

    /// The email of this store's user, if the page header told us.
    pub fn email(&self) -> Option<String> {
        let user = self.user.get()?;
        self.account.with(|a| {
            a.as_ref()
                .filter(|(id, _)| *id == user)
                .map(|(_, e)| e.clone())
        })
    }

    /// Queued changes not yet sent (what the user would lose if they never logged in again).
    pub fn unsent(&self) -> usize {
        self.outbox
            .with(|o| o.iter().filter(|p| p.sent.is_none()).count())
    }

    /// The user's notifications, newest first, as this device shows them: `true` for unread
    /// (read on the device counts at once, before the server has it).
    pub fn notifications(&self) -> Vec<(Notification, bool)> {
        let read_here: HashSet<Uuid> = self.outbox.with(|o| {
            o.iter()
                .filter_map(|p| match &p.mutation.change {
                    Change::MarkRead { notifications } => Some(notifications.clone()),
                    _ => None,
                })
                .flatten()
                .collect()
        });
        turns::inbox::newest_first(self.inbox.get())
            .into_iter()
            .map(|n| {
                let unread = n.read_at.is_none() && !read_here.contains(&n.id);
                (n, unread)
            })
            .collect()
    }

    /// How many notifications the user has not read.
    pub fn unread(&self) -> usize {
        self.notifications().iter().filter(|(_, u)| *u).count()
    }

    /// Photos taken on this device that have not reached the server yet.
    pub fn photos_waiting(&self) -> usize {
        self.photo_queue
            .with(|q| q.iter().filter(|p| p.waiting()).count())
    }

    /// A turn's notes as this device shows them: the server's, then those still in the outbox
    /// (`true`: not saved yet), in the order they were written.
    pub fn notes_of(&self, turn: Uuid) -> Vec<(Note, bool)> {
        let saved = self.notes.with(|n| turns::field::notes_of(n, turn));
        let unsaved: Vec<(Note, bool)> = self.outbox.with(|o| {
            o.iter()
                .filter_map(|p| match &p.mutation.change {
                    Change::AddNote {
                        turn: t,
                        note,
                        body,
                    } if *t == turn && !saved.iter().any(|n| n.id == *note) => Some((
                        Note {
                            id: *note,
                            turn_id: turn,
                            body: body.trim().to_string(),
                            author_id: self.user.get_untracked().unwrap_or_default(),
                            author_name: "You".into(),
                            device_time: Some(p.mutation.device_time),
                            created_at: None,
                        },
                        true,
                    )),
                    _ => None,
                })
                .collect()
        });
        saved
            .into_iter()
            .map(|n| (n, false))
            .chain(unsaved)
            .collect()
    }

    /// Stop syncing for this store's user, for good, and tell the other tabs. After a session
    /// ends the unsent outbox stays in storage (sent when the user logs in again on this device)
    /// but the cached board is deleted; after a logout nothing is written again and the tab goes
    /// to the login page.
    pub fn end(&self, why: Ended) {
        if self.finish(why) {
            #[cfg(feature = "hydrate")]
            net::ended(*self, why, true);
        }
    }

    /// The in-memory part of `end`; false if the tab had already ended as (or worse than) `why`.
    fn finish(&self, why: Ended) -> bool {
        let was = self.ended.get_untracked();
        let worse = match (was, why) {
            (None, _) => true,
            (Some(Ended::LoggedOut), _) => false,
            (Some(_), Ended::LoggedOut) => true,
            // "Another user" says more than "session ended": the server knows which.
            (Some(Ended::Session), Ended::OtherUser) => true,
            _ => false,
        };
        if !worse {
            return false;
        }
        self.ended.set(Some(why));
        self.leader.set(false);
        // Another user's device must not keep showing this user's turns.
        self.base.set(Vec::new());
        self.properties.set(Vec::new());
        self.line_items.set(Vec::new());
        self.templates.set(Vec::new());
        self.qc_items.set(Vec::new());
        self.notes.set(Vec::new());
        self.photos.set(Vec::new());
        self.inbox.set(Vec::new());
        self.synced_at.set(None);
        self.first_sync.set(None);
        if why == Ended::LoggedOut {
            self.outbox.set(Vec::new());
            self.failed.set(Vec::new());
        }
        true
    }

    /// Start for the signed-in user on a page without a board (the first board of a page binds
    /// the store itself). Nothing if the store is someone else's.
    pub fn start_as(&self, user: Uuid) {
        match self.user.get_untracked() {
            None => self.user.set(Some(user)),
            Some(u) if u != user => return,
            Some(_) => {}
        }
        self.start();
    }

    /// Start following local storage and (in the leading tab) the server. Browser only; once.
    pub fn start(&self) {
        if self.started.get_value() || self.ended.get_untracked().is_some() {
            return;
        }
        self.started.set_value(true);
        #[cfg(feature = "hydrate")]
        net::start(*self);
    }

    /// The user as the device last saw them (offline too): their id and role, from the board.
    /// Enough for the screens to offer what the role may do; the server checks everything.
    pub fn viewer(&self) -> Option<turns::Actor> {
        self.meta.with(|m| {
            m.as_ref().map(|m| turns::Actor {
                user_id: m.viewer,
                role: m.role,
                vendor_id: None,
            })
        })
    }

    /// The homes as the user sees them: the device's copy with their own queued changes to
    /// homes applied (a home added offline is there at once, and can have turns).
    pub fn homes(&self) -> Memo<Vec<PropertyRow>> {
        let this = *self;
        Memo::new(move |_| {
            let mut homes = this.properties.get();
            let by = this.viewer().unwrap_or(turns::Actor {
                user_id: Uuid::nil(),
                role: turns::Role::User,
                vendor_id: None,
            });
            let mut queued: Vec<Pending> = this.outbox.get();
            queued.sort_by_key(|p| p.seq);
            for p in &queued {
                match &p.mutation.change {
                    Change::CreateProperty(new) if !homes.iter().any(|h| h.id == new.id) => {
                        homes.push(PropertyRow::made(new, &by));
                    }
                    Change::UpdateProperty { property, edits } => {
                        if let Some(home) = homes.iter_mut().find(|h| h.id == *property) {
                            edits.iter().for_each(|e| home.apply(e));
                        }
                    }
                    _ => {}
                }
            }
            homes
        })
    }

    /// The optimistic view the board renders.
    pub fn view(&self) -> Memo<Vec<ViewCard>> {
        let this = *self;
        let homes = self.homes();
        Memo::new(move |_| {
            let meta = this.meta.read();
            let base = this.base.read();
            let outbox = this.outbox.read();
            let failed = this.failed.read();
            let homes = homes.read();
            let items = this.line_items.read();
            let qc = this.qc_items.read();
            optimistic(&base, &outbox, &failed, meta.as_ref(), &homes, &items, &qc)
        })
    }

    /// A turn's scope as the user sees it: the device's copy with their queued changes to it
    /// applied, in order.
    pub fn scope_of(&self, turn: Uuid) -> Vec<LineItem> {
        let base = self.line_items.with(|items| scope_in(items, turn));
        self.outbox.with(|outbox| {
            let mut queued: Vec<&Pending> = outbox
                .iter()
                .filter(|p| p.mutation.change.turn() == Some(turn))
                .collect();
            queued.sort_by_key(|p| p.seq);
            queued.into_iter().fold(base, |scope, p| {
                match line_items::apply(&scope, &p.mutation.change) {
                    Ok(Some(after)) => after,
                    _ => scope,
                }
            })
        })
    }

    /// Make a mutation: stored in the outbox first, then shown, then sent by the leader. After a
    /// session ended it is still kept (for the user's next login); after a logout nothing is.
    pub fn make(&self, change: Change, base_version: Option<i32>) {
        self.queue(change, base_version, next_seq());
    }

    /// Queue a mutation at `seq` in the device's order of changes.
    fn queue(&self, change: Change, base_version: Option<i32>, seq: u64) {
        if self.ended.get_untracked() == Some(Ended::LoggedOut) {
            return;
        }
        let mutation = Mutation {
            id: Uuid::new_v4(),
            base_version,
            device_time: now(),
            change,
        };
        let pending = Pending {
            seq,
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
            (Change::EditLineItem { turn, item, edits }, card) => {
                let scope = self
                    .line_items
                    .with_untracked(|items| scope_in(items, turn));
                let edits = match scope.iter().find(|i| i.id == item) {
                    Some(line) => edits.iter().map(|e| e.rebased(line)).collect(),
                    None => edits,
                };
                (
                    Change::EditLineItem { turn, item, edits },
                    card.map(|c| c.version),
                )
            }
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

    /// Send again a home the server refused to add, as the user fixed it (same id), then the
    /// refused changes that needed it (its new turns and their edits), in the order they were
    /// made: work done offline on a home that could not be saved is not lost.
    pub fn resend_home(&self, refused: Uuid, fixed: NewProperty) {
        let home = fixed.id;
        let mut waiting: Vec<Failed> = self.failed.with_untracked(|failed| {
            let needed = needs_home(failed.iter().map(|f| (f.seq, &f.mutation)), home);
            failed
                .iter()
                .filter(|f| needed.contains(&f.mutation.id))
                .cloned()
                .collect()
        });
        waiting.sort_by_key(|f| f.seq);
        // In the refused one's place, before the changes still queued that need it.
        let seq = self.failed.with_untracked(|failed| {
            failed
                .iter()
                .find(|f| f.mutation.id == refused)
                .map_or_else(next_seq, |f| f.seq)
        });
        self.discard(refused);
        self.queue(Change::CreateProperty(fixed), None, seq);
        for f in waiting {
            self.retry(f.mutation.id);
        }
    }

    /// Drop a refused mutation ("take theirs" for a conflict).
    pub fn discard(&self, id: Uuid) {
        #[cfg(feature = "hydrate")]
        if let Some(user) = self.user.get_untracked() {
            storage::remove_failed(user, id);
        }
        self.failed.update(|l| l.retain(|f| f.mutation.id != id));
    }

    /// Logging out in this tab: stop syncing first (so nothing writes the keys again), then forget
    /// the user's data on this device; their other tabs hear of it and go to the login page. The
    /// form post that follows ends the session and navigates.
    pub fn log_out(&self, user: Uuid) {
        self.ended.set(Some(Ended::LoggedOut));
        self.leader.set(false);
        #[cfg(feature = "hydrate")]
        {
            net::wake();
            storage::announce(user, Ended::LoggedOut);
            storage::clear_user(user);
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = user;
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

/// The changes among `changes` (with their order) that need the home `home` to exist: turns
/// started on it, and every later change to those turns.
pub fn needs_home<'a>(
    changes: impl IntoIterator<Item = (u64, &'a Mutation)>,
    home: Uuid,
) -> HashSet<Uuid> {
    let mut ordered: Vec<(u64, &Mutation)> = changes.into_iter().collect();
    ordered.sort_by_key(|(seq, _)| *seq);
    let mut turns: HashSet<Uuid> = HashSet::new();
    let mut needed = HashSet::new();
    for (_, m) in ordered {
        let on_home = match &m.change {
            Change::CreateTurn(t) if t.property_id == home => {
                turns.insert(t.id);
                true
            }
            Change::UpdateProperty { property, .. } => *property == home,
            change => change.turn().is_some_and(|t| turns.contains(&t)),
        };
        if on_home {
            needed.insert(m.id);
        }
    }
    needed
}

/// Queued changes held back while a home they need was refused (until the user fixes it):
/// sent, they would be refused too.
pub fn held(outbox: &[Pending], failed: &[Failed]) -> HashSet<Uuid> {
    failed
        .iter()
        .filter_map(|f| match &f.mutation.change {
            Change::CreateProperty(p) => Some(p.id),
            _ => None,
        })
        .flat_map(|home| needs_home(outbox.iter().map(|p| (p.seq, &p.mutation)), home))
        .collect()
}

/// One turn's lines among the device's, in order.
pub fn scope_in(items: &[LineItem], turn: Uuid) -> Vec<LineItem> {
    let mut scope: Vec<LineItem> = items
        .iter()
        .filter(|i| i.turn_id == turn)
        .cloned()
        .collect();
    scope.sort_by_key(|i| (i.position, i.id));
    scope
}

/// Base cards with the outbox applied in order, marked with their sync state. `items`: the
/// device's line items (a queued scope change sets its turn's amount, as on the server); `qc`:
/// the QC checklists (a queued inspection passes or sends back its turn).
pub fn optimistic(
    base: &[TurnCard],
    outbox: &[Pending],
    failed: &[Failed],
    meta: Option<&Board>,
    homes: &[PropertyRow],
    items: &[LineItem],
    qc: &[QcItem],
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
    // Turns cancelled (or work declined) on this device leave the board at once (the server
    // will agree unless the work was completed meanwhile).
    let mut cancelled: HashSet<Uuid> = HashSet::new();
    // The scopes queued changes touch, as they stand after each one.
    let mut scopes: HashMap<Uuid, Vec<LineItem>> = HashMap::new();
    for p in ordered {
        let change = &p.mutation.change;
        if let Change::CreateTurn(t) = change {
            if let std::collections::hash_map::Entry::Vacant(slot) = index.entry(t.id) {
                let home = homes.iter().find(|h| h.id == t.property_id);
                if let Some(card) = new_card(t, home, &cards, meta) {
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
        if matches!(change, Change::CancelTurn { .. }) {
            if rules::may_cancel(&cards[i].card).is_ok() {
                cancelled.insert(cards[i].card.id);
            }
            continue;
        }
        if let (Change::DeclineWork { .. }, Some(m)) = (change, meta) {
            // Declined work is no longer the vendor's: it leaves their board.
            let card = &cards[i].card;
            if m.role == turns::Role::Vendor && m.rules_for(card).apply(card, change).is_ok() {
                cancelled.insert(card.id);
                continue;
            }
        }
        if let (Change::RecordQc { results, .. }, Some(m)) = (change, meta) {
            let card = &mut cards[i].card;
            let checklist = turns::qc::checklist(qc, card.stage_id);
            if let Ok(after) = m.rules_for(card).inspect(card, &checklist, results) {
                *card = after;
            }
            cards[i].sync = SyncState::Pending;
            continue;
        }
        // Only scope changes and typed amounts depend on the scope: only they look it up.
        let rescopes = matches!(
            change,
            Change::AddLineItems { .. }
                | Change::EditLineItem { .. }
                | Change::RemoveLineItem { .. }
        );
        let types_amount = matches!(change, Change::EditTurn { edits, .. }
            if edits.iter().any(|e| matches!(e, TurnEdit::Amount(_))));
        let mut scoped = false;
        if rescopes || types_amount {
            let turn = cards[i].card.id;
            let scope = scopes.entry(turn).or_insert_with(|| scope_in(items, turn));
            if let (true, Ok(Some(after))) = (rescopes, line_items::apply(scope, change)) {
                let card = &mut cards[i].card;
                if let Some(m) = meta {
                    if let Ok(Some(rescoped)) = m.rules_for(card).rescope(card, &after) {
                        *card = rescoped;
                    }
                }
                *scope = after;
                cards[i].sync = SyncState::Pending;
                continue;
            }
            scoped = !scope.is_empty();
        }
        apply_optimistic(&mut cards[i].card, change, meta, scoped);
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
    cards.retain(|c| !cancelled.contains(&c.card.id));
    if let Some(meta) = meta {
        // Completed turns leave the board after a while, as on the server.
        cards.retain(|c| rules::on_board(&c.card, &meta.stages, meta.today));
    }
    cards
}

/// A turn made on this device, as the server will make it: in the first stage, named from the
/// device's copy of its home (or from another turn of that home).
fn new_card(
    t: &turns::mutation::NewTurn,
    home: Option<&PropertyRow>,
    cards: &[ViewCard],
    meta: Option<&Board>,
) -> Option<TurnCard> {
    let meta = meta?;
    let stage = meta.stages.first()?.id;
    let sibling = cards
        .iter()
        .find(|c| c.card.property_id == t.property_id)
        .map(|c| &c.card);
    let pm_id = home
        .and_then(|h| h.property_manager_id)
        .or(sibling.and_then(|c| c.pm_id));
    let pm_name = pm_id
        .and_then(|pm| meta.managers.iter().find(|m| m.id == pm))
        .map(|m| m.name.clone())
        .or(sibling.and_then(|c| c.pm_name.clone()));
    Some(TurnCard {
        id: t.id,
        turn_id: t.turn_id.clone(),
        property_id: t.property_id,
        property_code: home
            .map(|h| h.property_id.clone())
            .or(sibling.map(|c| c.property_code.clone()))
            .unwrap_or_default(),
        property_name: home
            .map(|h| h.name.clone())
            .or(sibling.map(|c| c.property_name.clone()))
            .unwrap_or_else(|| "New turn".into()),
        stage_id: stage,
        pm_id,
        pm_name,
        wo_number: t.wo_number.clone(),
        move_out_date: t.move_out_date,
        approval_status: Some(ApprovalStatus::Pending),
        version: 1,
        ..TurnCard::default()
    })
}

/// What the server will do, shown at once: the core's rules, with the facts the board has (the
/// server decides with the same rules; the stream corrects anything that changed meanwhile). A
/// change the rules refuse leaves the card as it is: the server will refuse it too.
fn apply_optimistic(card: &mut TurnCard, change: &Change, meta: Option<&Board>, scoped: bool) {
    let Some(meta) = meta else {
        return;
    };
    let rules = rules::TurnRules {
        scoped,
        ..meta.rules_for(card)
    };
    if let Ok(Some(after)) = rules.apply(card, change) {
        *card = after;
        card.vendor_name = card
            .vendor_id
            .and_then(|v| vendor_name(Some(meta), v).or(card.vendor_name.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notice_names_the_user_and_what_waits() {
        assert_eq!(
            ended_notice(Ended::Session, Some("pm@turns.demo"), 3),
            "Your session ended — log in as pm@turns.demo to send 3 waiting changes."
        );
        assert_eq!(
            ended_notice(Ended::OtherUser, Some("pm@turns.demo"), 1),
            "Another user is signed in on this device. Log in as pm@turns.demo to send 1 \
             waiting change."
        );
        assert_eq!(
            ended_notice(Ended::Session, None, 0),
            "Your session ended — log in again to continue."
        );
    }

    #[test]
    fn reasons_round_trip_through_their_names() {
        for e in [Ended::Session, Ended::OtherUser, Ended::LoggedOut] {
            assert_eq!(Ended::parse(e.as_str()), Some(e));
        }
        assert_eq!(Ended::parse("nonsense"), None);
    }

    #[test]
    fn an_ended_store_only_gets_worse_and_forgets_the_board() {
        let owner = leptos::prelude::Owner::new();
        owner.with(|| {
            let local = Local::new();
            local.base.set(vec![TurnCard::default()]);
            local.outbox.set(vec![Pending {
                seq: 1,
                mutation: Mutation {
                    id: Uuid::new_v4(),
                    base_version: None,
                    device_time: chrono::Utc::now(),
                    change: Change::SubmitForApproval {
                        turn: Uuid::new_v4(),
                    },
                },
                sent: None,
            }]);
            assert!(local.finish(Ended::Session));
            assert!(local.base.get_untracked().is_empty());
            // The unsent edit is kept for the user's next login.
            assert_eq!(local.outbox.get_untracked().len(), 1);
            assert!(local.finish(Ended::OtherUser));
            assert!(!local.finish(Ended::Session));
            assert!(local.finish(Ended::LoggedOut));
            assert!(local.outbox.get_untracked().is_empty());
            assert!(!local.finish(Ended::OtherUser));
            assert_eq!(local.ended.get_untracked(), Some(Ended::LoggedOut));
        });
    }

    #[test]
    fn a_refused_home_holds_back_its_new_turns_and_their_edits_only() {
        use turns::mutation::{Edit, NewTurn, TurnEdit};
        let (home, other) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mutation = |n: u128, change: Change| Mutation {
            id: Uuid::from_u128(100 + n),
            base_version: None,
            device_time: chrono::DateTime::from_timestamp(0, 0).expect("time"),
            change,
        };
        let start = |turn: u128, property: Uuid| {
            Change::CreateTurn(NewTurn {
                id: Uuid::from_u128(turn),
                turn_id: format!("T-{turn}"),
                property_id: property,
                move_out_date: None,
                wo_number: None,
            })
        };
        let wo = |turn: u128| Change::EditTurn {
            turn: Uuid::from_u128(turn),
            edits: vec![TurnEdit::WoNumber(Edit {
                from: None,
                to: Some("WO".into()),
            })],
        };
        let queued: Vec<Pending> = [
            (1, start(10, home)),
            (2, start(20, other)),
            (3, wo(10)),
            (4, wo(20)),
        ]
        .into_iter()
        .map(|(n, change)| Pending {
            seq: n as u64,
            mutation: mutation(n, change),
            sent: None,
        })
        .collect();
        let refused = Failed {
            seq: 0,
            mutation: mutation(
                0,
                Change::CreateProperty(turns::mutation::NewProperty {
                    id: home,
                    property_id: "P-1".into(),
                    name: "Home".into(),
                    street_address: "1 St".into(),
                    city: None,
                    state: None,
                    zip_code: None,
                    year_built: None,
                    is_core: true,
                    property_manager_id: None,
                    bedrooms: None,
                    bathrooms: None,
                    area_sqft: None,
                    access_notes: None,
                }),
            ),
            rejection: Rejection::invalid_field("property_id", "Taken."),
        };
        let ids = |ns: &[u128]| {
            ns.iter()
                .map(|n| Uuid::from_u128(100 + n))
                .collect::<HashSet<_>>()
        };
        assert_eq!(held(&queued, std::slice::from_ref(&refused)), ids(&[1, 3]));
        assert!(held(&queued, &[]).is_empty());
    }
}
