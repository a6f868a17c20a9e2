//! A live shape's own log: the changes that concern it, appended when each transaction is
//! published (the shape is found through the live index), so that reading a shape at the head
//! costs its own changes, not a scan of every change to every table since the reader's offset.
//! Shapes without live requests have no entries; their reads scan the global log.
use super::{Offset, Tx};
use std::collections::VecDeque;
use std::sync::Arc;

/// Entries kept per shape, at most (a reader further behind scans the global log).
const ENTRIES: usize = 1_000;

/// A change in a shape's log: its offset and its transaction.
pub(super) type LoggedChange = (Offset, Arc<Tx>);

/// One change that concerns the shape: its offset (the change's index in the transaction) and
/// the transaction.
struct Entry {
    pub at: Offset,
    pub tx: Arc<Tx>,
}

#[derive(Default)]
pub struct ShapeLog {
    /// Every change after this LSN that concerns the shape is in `entries` (`None`: not live, no
    /// entries kept).
    complete_after: Option<u64>,
    entries: VecDeque<Entry>,
}

impl ShapeLog {
    /// Start keeping entries: everything published after `head` will be appended.
    pub(super) fn start(&mut self, head: u64) {
        if self.complete_after.is_none() {
            self.complete_after = Some(head);
        }
    }

    pub(super) fn last_at(&self) -> Option<Offset> {
        self.entries.back().map(|e| e.at)
    }

    pub(super) fn push(&mut self, at: Offset, tx: &Arc<Tx>) {
        if self.complete_after.is_none() {
            return;
        }
        self.entries.push_back(Entry { at, tx: tx.clone() });
        while self.entries.len() > ENTRIES {
            if let Some(old) = self.entries.pop_front() {
                self.complete_after = Some(old.at.lsn);
            }
        }
    }

    /// The entries after `after` (whole transactions, about `limit` entries) and whether that is
    /// all of them, if this log holds everything after `after`.
    pub(super) fn after(&self, after: Offset, limit: usize) -> Option<(Vec<LoggedChange>, bool)> {
        if self.complete_after? > after.lsn {
            return None;
        }
        let first = self.entries.partition_point(|e| e.at.lsn <= after.lsn);
        let mut out: Vec<LoggedChange> = Vec::new();
        for e in self.entries.range(first..) {
            // Never end inside a transaction.
            if out.len() >= limit && out.last().is_some_and(|(o, _)| o.lsn != e.at.lsn) {
                return Some((out, false));
            }
            out.push((e.at, e.tx.clone()));
        }
        Some((out, true))
    }
}
