//! What the device keeps, per user. In IndexedDB (`cache`), the large and droppable caches the
//! stream can rebuild, written by the leading tab only:
//! - `snapshot`: the board (stages, names, cards — compact, see `compact`) with the turns
//!   shape's position (handle and offset);
//! - `shape.<name>`: a reference shape (stages, vendors, properties): its position and rows.
//!
//! In local storage (`turns.v1.<user>.…`), what must be written before the page goes on
//! (synchronously) and what the tabs coordinate with (`storage` events):
//! - `out.<seq>.<mutation id>`: one key per queued mutation, so tabs never overwrite each
//!   other's edits; never dropped to make room;
//! - `failed.<mutation id>`: refused mutations until the user retries or discards them;
//! - `leader`: which tab talks to the server, and until when; only a logout deletes it;
//! - `signal`: never kept: written and removed at once to tell the user's other tabs that syncing
//!   ended (`Ended`), through their `storage` events;
//! - `cache`: when the caches last changed (other tabs read them again).
use super::cache;
use super::compact::Cards;
use super::{Ended, Failed, Pending};
use gloo_storage::{LocalStorage, Storage};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use turns::model::Board;
use turns::shape_follower::{Columns, Position};
use turns::shape_protocol::{HandleId, Offset};
use uuid::Uuid;

/// What survives a reload: the board and where the stream stands.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Snapshot {
    pub board: Board,
    /// Where the turns shape stands (none: it starts from its snapshot).
    pub position: Option<Position>,
    pub synced_at: Option<u64>,
}

const ROOT: &str = "turns.v1";

pub fn prefix(user: Uuid) -> String {
    format!("{ROOT}.{}.", user.simple())
}

fn key(user: Uuid, name: &str) -> String {
    format!("{}{name}", prefix(user))
}

fn keys_with(prefix: &str) -> Vec<String> {
    let raw = LocalStorage::raw();
    let n = raw.length().unwrap_or(0);
    (0..n)
        .filter_map(|i| raw.key(i).ok().flatten())
        .filter(|k| k.starts_with(prefix))
        .collect()
}

/// The stored cards' form (`compact`): raised when a card gains a field. Cards stored in an
/// older form (perhaps by a tab still running the previous app) are shown, but the stream starts
/// again from a snapshot instead of resuming after them: their missing fields would stay empty
/// until each row happened to change.
/// 2: cards carry their QC state.
/// 3: cards carry the reason for a rejection.
/// 4: cards carry since when they wait for their approver.
const CARDS_FORMAT: u32 = 4;

/// The snapshot as stored: the board without its cards, and the cards in compact form.
#[derive(Serialize, Deserialize)]
struct Stored {
    board: Board,
    cards: Cards,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    position: Option<Position>,
    /// Before the typed position, the handle and offset as strings: still read, so that the
    /// first start after an update (perhaps offline) keeps the board and resumes the stream.
    #[serde(default, skip_serializing)]
    handle: Option<String>,
    #[serde(default, skip_serializing)]
    offset: Option<String>,
    synced_at: Option<u64>,
    /// `CARDS_FORMAT` when written (absent before it existed: 0).
    #[serde(default)]
    format: u32,
}

pub async fn load_snapshot(user: Uuid) -> Option<Snapshot> {
    let s: Stored = serde_json::from_str(&cache::get(user, "snapshot").await?).ok()?;
    let legacy = || {
        Some(Position {
            handle: HandleId::parse(s.handle.as_deref()?)?,
            offset: Offset::parse(s.offset.as_deref()?)?,
        })
    };
    let current = s.format >= CARDS_FORMAT;
    Some(Snapshot {
        position: s.position.clone().or_else(legacy).filter(|_| current),
        board: Board {
            turns: s.cards.decode(),
            ..s.board
        },
        synced_at: s.synced_at,
    })
}

/// Save the cache (in IndexedDB, after the writes before it).
pub fn save_snapshot(user: Uuid, snapshot: &Snapshot) {
    let stored = Stored {
        board: Board {
            turns: Vec::new(),
            ..snapshot.board.clone()
        },
        cards: Cards::encode(&snapshot.board.turns),
        position: snapshot.position.clone(),
        handle: None,
        offset: None,
        synced_at: snapshot.synced_at,
        format: CARDS_FORMAT,
    };
    if let Ok(json) = serde_json::to_string(&stored) {
        cache::put(user, "snapshot", json);
    }
}

/// A reference shape as kept (`shape.<name>`): where it stands and its rows' columns. A cache,
/// like the snapshot: dropped when storage is full, rebuilt by the stream.
#[derive(Serialize, Deserialize)]
pub struct Table {
    pub position: Position,
    pub columns: BTreeMap<String, Columns>,
}

pub async fn load_table(user: Uuid, name: &str) -> Option<Table> {
    serde_json::from_str(&cache::get(user, &format!("shape.{name}")).await?).ok()
}

pub fn save_table(
    user: Uuid,
    name: &str,
    position: &Position,
    columns: &BTreeMap<String, Columns>,
) {
    #[derive(Serialize)]
    struct Borrowed<'a> {
        position: &'a Position,
        columns: &'a BTreeMap<String, Columns>,
    }
    if let Ok(json) = serde_json::to_string(&Borrowed { position, columns }) {
        cache::put(user, &format!("shape.{name}"), json);
    }
}

pub fn load_outbox(user: Uuid) -> Vec<Pending> {
    let mut list: Vec<Pending> = keys_with(&key(user, "out."))
        .into_iter()
        .filter_map(|k| LocalStorage::get(k).ok())
        .collect();
    list.sort_by_key(|p| p.seq);
    list
}

/// Queued entries this app cannot read (written by another version, or damaged): never sent,
/// never deleted (only a logout clears them), and counted so the user is told.
pub fn unreadable_outbox(user: Uuid) -> usize {
    keys_with(&key(user, "out."))
        .into_iter()
        .filter(|k| LocalStorage::get::<Pending>(k).is_err())
        .count()
}

fn pending_key(user: Uuid, p: &Pending) -> String {
    key(user, &format!("out.{:020}.{}", p.seq, p.mutation.id))
}

/// Queue a mutation durably.
pub fn save_pending(user: Uuid, p: &Pending) -> Result<(), String> {
    LocalStorage::set(pending_key(user, p), p).map_err(|_| {
        "This device's storage is full: this change is kept only until the page closes.".to_string()
    })
}

pub fn remove_pending(user: Uuid, p: &Pending) {
    LocalStorage::delete(pending_key(user, p));
}

pub fn load_failed(user: Uuid) -> Vec<Failed> {
    let mut list: Vec<Failed> = keys_with(&key(user, "failed."))
        .into_iter()
        .filter_map(|k| LocalStorage::get(k).ok())
        .collect();
    list.sort_by_key(|f| f.seq);
    list
}

pub fn save_failed(user: Uuid, f: &Failed) {
    let _ = LocalStorage::set(key(user, &format!("failed.{}", f.mutation.id)), f);
}

pub fn remove_failed(user: Uuid, id: Uuid) {
    LocalStorage::delete(key(user, &format!("failed.{id}")));
}

/// When the stream was last up to date. Kept apart from the snapshot (rewritten only when rows
/// change) so that a reload shows the time of the last poll, not of the last change: an idle
/// poll confirms the stored rows as much as a busy one.
pub fn save_synced(user: Uuid, ms: u64) {
    let _ = LocalStorage::set(key(user, "synced"), ms);
}

pub fn load_synced(user: Uuid) -> Option<u64> {
    LocalStorage::get(key(user, "synced")).ok()
}

/// The leader lease: (tab id, valid until ms).
pub fn leader(user: Uuid) -> Option<(String, u64)> {
    LocalStorage::get(key(user, "leader")).ok()
}

pub fn set_leader(user: Uuid, tab: &str, until: u64) {
    let _ = LocalStorage::set(key(user, "leader"), (tab, until));
}

/// The key of the one-shot signal to the user's other tabs.
pub fn signal_key(user: Uuid) -> String {
    key(user, "signal")
}

/// Tell the user's other tabs that syncing ended (they see the write as a `storage` event).
/// Nothing stays behind.
pub fn announce(user: Uuid, why: Ended) {
    let k = signal_key(user);
    let _ = LocalStorage::raw().set_item(&k, why.as_str());
    LocalStorage::delete(k);
}

/// The user's session ended on this device: the cached board goes, the outbox and refused
/// changes stay (edits are never dropped; they go out when the user logs in again).
pub fn forget_reads(user: Uuid) {
    cache::clear(user);
    LocalStorage::delete(key(user, "synced"));
}

pub fn clear_user(user: Uuid) {
    for k in keys_with(&prefix(user)) {
        LocalStorage::delete(k);
    }
    cache::delete(user);
    // The user was asked before: photos not uploaded go with the rest.
    super::uploads::delete(user);
}
