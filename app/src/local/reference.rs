//! The user's tables other than the turns (stages, vendors, properties, managers, the turns'
//! line items, cost templates, checklists, notes, photos, the inbox, the approval thresholds), followed by the leading tab into rows kept on the device. Each
//! is one shape name, one row type and what it shows.
//!
//! They are read without waiting (`live=false`), and one request (`turns::shape_watch`) waits
//! for any of them to change: together they hold one connection. A browser has six per host over
//! HTTP/1.1; one long-poll per table, beside the turns stream, would leave one for the outbox,
//! the pages and every other tab of the app.
use super::net::{
    active, get, nap, random, remember, retire, shape_request, storage_cleared, waker, Answer,
};
use super::reach::Patience;
use super::storage;
use super::{now_ms, Local};
use gloo_net::http::Request;
use leptos::prelude::*;
use serde::de::DeserializeOwned;
use std::collections::HashSet;
use turns::field::{Note, Photo};
use turns::inbox::Notification;
use turns::line_items::{CostTemplate, LineItem};
use turns::model::Named;
use turns::qc::QcItem;
use turns::rows::{ManagerRow, PropertyRow, StageRow, ThresholdsRow, VendorRow};
use turns::shape_follower::{Backoff, Batch, Position, ShapeFollower, Step};
use turns::shape_rows::ShapeRows;
use turns::shape_watch::{self, Moved};
use uuid::Uuid;

/// The least time between two waits that found nothing.
const MIN_WAIT_MS: u64 = 1000;

/// One followed table: its rows, where its stream stands, and how the page shows it.
struct Table<T> {
    name: &'static str,
    rows: ShapeRows<T>,
    follower: ShapeFollower,
    persisted: Option<Position>,
    show: fn(Local, &ShapeRows<T>),
    /// Read up to date since the watch last named it.
    current: bool,
}

/// What the loop needs of a table, whatever its row type.
trait Followed {
    fn name(&self) -> &'static str;
    fn follower(&mut self) -> &mut ShapeFollower;
    fn position(&self) -> Option<Position>;
    fn is_current(&self) -> bool;
    fn moved(&mut self);
    /// Show the rows as this device kept them, if it kept any.
    fn show_kept(&self, local: Local);
    /// Apply an answer's changes; at up-to-date show them and keep them on the device.
    fn take(&mut self, local: Local, user: Uuid, batch: Batch);
}

impl<T: DeserializeOwned + 'static> Table<T> {
    /// The table as this device kept it (or empty, to start from its snapshot).
    async fn kept(user: Uuid, name: &'static str, show: fn(Local, &ShapeRows<T>)) -> Table<T> {
        let (rows, follower) = match storage::load_table(user, name).await {
            Some(t) => (
                ShapeRows::from_columns(t.columns).0,
                ShapeFollower::resume(t.position),
            ),
            None => (ShapeRows::default(), ShapeFollower::new()),
        };
        Table {
            name,
            persisted: follower.position(),
            rows,
            follower,
            show,
            current: false,
        }
    }

    fn boxed(self) -> Box<dyn Followed> {
        Box::new(self)
    }
}

impl<T: DeserializeOwned> Followed for Table<T> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn follower(&mut self) -> &mut ShapeFollower {
        &mut self.follower
    }

    fn position(&self) -> Option<Position> {
        self.follower.position()
    }

    fn is_current(&self) -> bool {
        self.current
    }

    fn moved(&mut self) {
        self.current = false;
    }

    fn show_kept(&self, local: Local) {
        if self.persisted.is_some() {
            (self.show)(local, &self.rows);
        }
    }

    fn take(&mut self, local: Local, user: Uuid, batch: Batch) {
        let up_to_date = batch.up_to_date;
        let Some(applied) = self.rows.add(batch) else {
            return;
        };
        self.current = up_to_date;
        let position = self.follower.position();
        let changed = applied.replaced || !applied.changed.is_empty();
        if changed {
            (self.show)(local, &self.rows);
        }
        // Changes made on this device whose rows this table now shows leave the outbox.
        if !applied.txids.is_empty() {
            remember(self.name, applied.txids.iter().map(ToString::to_string));
            retire(local, user, None);
        }
        if (changed || position != self.persisted) && !storage_cleared(local, user) {
            if let Some(position) = &position {
                storage::save_table(user, self.name, position, self.rows.columns());
            }
            self.persisted = position;
        }
    }
}

/// How many tables `tables` follows. One watch request names them all: a list the server
/// refuses would leave every table waiting out a backoff between reads (it did, at 9 of 8).
const FOLLOWED: usize = 11;
const _: () = assert!(FOLLOWED <= turns::shape_watch::MAX_SHAPES);

async fn tables(user: Uuid) -> Vec<Box<dyn Followed>> {
    let tables = vec![
        Table::kept(user, "stages", show_stages).await.boxed(),
        Table::kept(user, "vendors", show_vendors).await.boxed(),
        Table::kept(user, "properties", show_properties)
            .await
            .boxed(),
        Table::kept(user, "managers", show_managers).await.boxed(),
        Table::kept(user, "line_items", show_line_items)
            .await
            .boxed(),
        Table::kept(user, "cost_templates", show_templates)
            .await
            .boxed(),
        Table::kept(user, "qc_items", show_qc_items).await.boxed(),
        Table::kept(user, "thresholds", show_thresholds)
            .await
            .boxed(),
        Table::kept(user, "notes", show_notes).await.boxed(),
        Table::kept(user, "photos", show_photos).await.boxed(),
        Table::kept(user, "inbox", show_inbox).await.boxed(),
    ];
    debug_assert_eq!(tables.len(), FOLLOWED);
    tables
}

/// Follow the reference tables while this tab leads: read those not known to be current, then
/// wait (one request) for any of them to move.
pub(super) async fn follow(local: Local, user: Uuid) {
    let mut rx = waker();
    let mut tables = tables(user).await;
    let mut backoff = Backoff::default();
    // Where the tables stood when the last wait named some of them as moved.
    let mut named_at: Option<Vec<(&str, Position)>> = None;
    while active(local) {
        if !local.online.get_untracked() {
            nap(&mut rx, 5000).await;
            continue;
        }
        let mut behind = false;
        for table in tables.iter_mut().filter(|t| !t.is_current()) {
            let name = table.name();
            let Some(step) =
                shape_request(local, user, name, table.follower(), &mut rx, false).await
            else {
                return;
            };
            if let Step::Changes(batch) = step {
                table.take(local, user, batch);
            }
            behind |= !table.is_current();
        }
        if behind {
            continue;
        }
        let positions: Vec<(&str, Position)> = tables
            .iter()
            .filter_map(|t| Some((t.name(), t.position()?)))
            .collect();
        // Named as moved, yet reading them moved nothing: do not ask again at once.
        let stalled = named_at.take().as_ref() == Some(&positions);
        if stalled {
            nap(&mut rx, backoff.next(random())).await;
        }
        let url = format!(
            "{}?{}",
            shape_watch::PATH,
            shape_watch::query(positions.iter().map(|(name, p)| (*name, p)))
        );
        let asked_at = now_ms();
        // Held until one of the shapes moves.
        let moved = match get(local, user, Request::get(&url), Patience::LongPoll).await {
            Answer::Stop => return,
            Answer::Got(response, body) if response.ok() => {
                serde_json::from_str::<Moved>(&body).ok().map(|m| m.moved)
            }
            Answer::Got(..) | Answer::Failed => None,
        };
        match moved {
            Some(moved) => {
                if !stalled {
                    backoff.reset();
                }
                if moved.is_empty() && now_ms().saturating_sub(asked_at) < MIN_WAIT_MS {
                    // A server whose wait is (mis)configured to answer at once is not asked in
                    // a tight loop.
                    nap(&mut rx, MIN_WAIT_MS).await;
                }
                if !moved.is_empty() {
                    named_at = Some(positions);
                }
                for table in tables.iter_mut() {
                    if moved.iter().any(|n| n == table.name()) {
                        table.moved();
                    }
                }
            }
            None => {
                // Read each table itself after the wait: its own answer says what is wrong
                // (gone, refused), and a server without the watch is still followed.
                nap(&mut rx, backoff.next(random())).await;
                for table in tables.iter_mut() {
                    table.moved();
                }
            }
        }
    }
}

/// Show the tables as this device kept them (at start, and when another tab wrote them).
pub(super) async fn show_kept(local: Local, user: Uuid) {
    for table in tables(user).await {
        table.show_kept(local);
    }
}

fn show_stages(local: Local, rows: &ShapeRows<StageRow>) {
    let stages = turns::rows::stages(rows.rows().values());
    local.meta.update(|m| {
        if let Some(m) = m {
            m.stages = stages;
        }
    });
}

/// The approval limits as the server has them now (an admin's change reaches an open board, so
/// its optimistic routing and the approver's cautions follow).
fn show_thresholds(local: Local, rows: &ShapeRows<ThresholdsRow>) {
    let Some(row) = rows.rows().into_values().next() else {
        return;
    };
    local.meta.update(|m| {
        if let Some(m) = m {
            m.thresholds = row.thresholds();
        }
    });
}

fn show_vendors(local: Local, rows: &ShapeRows<VendorRow>) {
    let rows = rows.rows();
    let named = |r: &VendorRow| Named {
        id: r.id,
        name: r.name.clone(),
    };
    let mut all: Vec<Named> = rows.values().map(named).collect();
    all.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    let assignable: HashSet<Uuid> = rows
        .values()
        .filter(|r| r.is_assignable())
        .map(|r| r.id)
        .collect();
    local.meta.update(|m| {
        let Some(m) = m else {
            return;
        };
        // Only those who assign work are offered vendors to assign (in the same order).
        let viewer = turns::Actor {
            user_id: m.viewer,
            role: m.role,
            vendor_id: None,
        };
        if viewer.is_manager() {
            m.assignable_vendors = all
                .iter()
                .filter(|n| assignable.contains(&n.id))
                .cloned()
                .collect();
        }
        m.vendors = all;
    });
    local.refresh_names();
}

fn show_managers(local: Local, rows: &ShapeRows<ManagerRow>) {
    let mut managers: Vec<Named> = rows.rows().values().filter_map(ManagerRow::named).collect();
    managers.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    local.meta.update(|m| {
        if let Some(m) = m {
            m.managers = managers;
        }
    });
    local.refresh_names();
}

fn show_properties(local: Local, rows: &ShapeRows<PropertyRow>) {
    let list: Vec<PropertyRow> = rows.rows().into_values().collect();
    local.meta.update(|m| {
        if let Some(m) = m {
            m.non_core_properties = list
                .iter()
                .filter(|p| p.is_core == Some(false))
                .map(|p| p.id)
                .collect();
        }
    });
    local.properties.set(list);
    local.refresh_names();
}

fn show_line_items(local: Local, rows: &ShapeRows<LineItem>) {
    let mut items: Vec<LineItem> = rows.rows().into_values().collect();
    items.sort_by_key(|i| (i.turn_id, i.position, i.id));
    local.line_items.set(items);
}

fn show_templates(local: Local, rows: &ShapeRows<CostTemplate>) {
    local.templates.set(rows.rows().into_values().collect());
}

fn show_qc_items(local: Local, rows: &ShapeRows<QcItem>) {
    local.qc_items.set(rows.rows().into_values().collect());
}

fn show_notes(local: Local, rows: &ShapeRows<Note>) {
    local.notes.set(rows.rows().into_values().collect());
}

fn show_photos(local: Local, rows: &ShapeRows<Photo>) {
    let photos: Vec<Photo> = rows.rows().into_values().collect();
    // Photos taken here that the server now shows leave the device.
    if let Some(user) = local.user.get_untracked() {
        let shown: HashSet<Uuid> = photos.iter().map(|p| p.id).collect();
        super::uploads::delivered(local, user, &shown);
    }
    local.photos.set(photos);
}

fn show_inbox(local: Local, rows: &ShapeRows<Notification>) {
    local.inbox.set(rows.rows().into_values().collect());
}
