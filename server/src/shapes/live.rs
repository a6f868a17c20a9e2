//! Live requests waiting for a change to their shape, and waking them.
//!
//! Each shape carries a watch channel holding the newest LSN that touched it; a waiting request
//! holds a receiver (no lock, no allocation of its own). A new transaction is matched once per
//! affected shape, found through the [`index`](super::index) of shapes that have had waiters, and the shape's
//! channel wakes every request waiting on it at once.
use super::{Shape, ShapeServer, Tx};
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
    /// Wake the live requests whose shape this transaction touches.
    pub(super) fn wake(&self, tx: &Tx) {
        let dead = {
            let index = self.live.read().unwrap_or_else(|e| e.into_inner());
            let mut dead = 0;
            for change in &tx.changes {
                dead += index.candidates(change, |shape| {
                    let changed = &shape.changed.sender;
                    // Nobody waiting, or already woken by this transaction.
                    if changed.receiver_count() == 0 || *changed.borrow() >= tx.lsn {
                        return;
                    }
                    let hit = change.new.as_ref().is_some_and(|r| shape.matches(r))
                        || change.old.as_ref().is_some_and(|r| shape.matches(r));
                    if hit {
                        changed.send_replace(tx.lsn);
                    }
                });
            }
            dead
        };
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
            self.live
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(shape);
        }
        Waiter { changed }
    }
}
