//! Live requests waiting for a change to their shape, and waking them.
//!
//! Each shape carries a watch channel holding the newest LSN that touched it; a waiting request
//! holds a receiver (no lock, no allocation of its own). A new transaction is matched against
//! the shapes it may concern, found through the [`index`](super::index) of shapes that have had
//! waiters; its changes go to those shapes' own logs ([`super::shape_log`]), and each shape's
//! channel wakes every request waiting on it at once.
use super::{Offset, Shape, ShapeServer, Tx};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::watch;

/// A registered live request: `changed` resolves when a transaction concerning its shape is
/// logged after the registration.
pub struct Waiter {
    changed: watch::Receiver<u64>,
}

impl Waiter {
    pub async fn changed(&mut self) {
        if self.changed.changed().await.is_err() {
            // The shape is gone (it cannot be while the request holds it): wait for the timeout.
            std::future::pending::<()>().await;
        }
    }
}

/// The wake-up side of a shape: its channel, and whether it is in the live index.
pub struct Changed {
    sender: watch::Sender<u64>,
    indexed: std::sync::atomic::AtomicBool,
}

impl Default for Changed {
    fn default() -> Self {
        Changed {
            sender: watch::Sender::new(0),
            indexed: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl ShapeServer {
    /// Append a published transaction's changes to the logs of the live shapes they concern,
    /// then move the log's head to `head`, then wake those shapes' waiting requests. Head moves
    /// under the same lock that adds shapes to the index: a shape added after this transaction
    /// starts its log at a head that includes it, one added before gets its changes.
    pub(super) fn append_and_wake(&self, tx: &Arc<Tx>, head: Offset) {
        let mut woken: Vec<Arc<Shape>> = Vec::new();
        let dead = {
            let index = self.live.read().unwrap_or_else(|e| e.into_inner());
            let mut dead = 0;
            for (i, change) in tx.changes.iter().enumerate() {
                dead += index.candidates(change, |shape| {
                    let hit = change.new.as_ref().is_some_and(|r| shape.matches(r))
                        || change.old.as_ref().is_some_and(|r| shape.matches(r));
                    if !hit {
                        return;
                    }
                    let at = Offset {
                        lsn: tx.lsn,
                        op: i as u64,
                    };
                    let mut log = shape.log.lock().unwrap_or_else(|e| e.into_inner());
                    // The same row found twice (its old and new values) is one change.
                    if log.last_at() != Some(at) {
                        log.push(at, tx);
                    }
                    drop(log);
                    if !woken.iter().any(|w| Arc::ptr_eq(w, shape)) {
                        woken.push(shape.clone());
                    }
                });
            }
            self.head.send_replace(head);
            dead
        };
        for shape in woken {
            shape.changed.sender.send_replace(tx.lsn);
        }
        if dead > 0 {
            self.prune_live();
        }
    }

    /// Forget shapes that no longer exist from the live index.
    pub(super) fn prune_live(&self) {
        self.live.write().unwrap_or_else(|e| e.into_inner()).prune();
    }

    /// Register a live request for `shape` before reading it, so that a change logged in between
    /// is not missed: the change is either in the read or wakes the waiter.
    pub fn wait_for_shape(&self, shape: &Arc<Shape>) -> Waiter {
        let changed = shape.changed.sender.subscribe();
        if !shape.changed.indexed.swap(true, Ordering::AcqRel) {
            let mut index = self.live.write().unwrap_or_else(|e| e.into_inner());
            // From here on its changes are appended to its own log (see `append_and_wake`).
            shape
                .log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .start(self.head().lsn);
            index.insert(shape);
        }
        Waiter { changed }
    }
}
