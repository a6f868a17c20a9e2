//! Live requests waiting for a change to their shape, and waking them.
use super::{Shape, ShapeServer, Tx};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A waiting live request's shape and its wake-up.
pub(super) type Parked = (Arc<Shape>, Arc<tokio::sync::Notify>);

/// A registered live request; deregisters when dropped.
pub struct Waiter {
    server: Arc<ShapeServer>,
    id: u64,
    pub notify: Arc<tokio::sync::Notify>,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.server
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

impl ShapeServer {
    /// Wake the live requests whose shape this transaction touches.
    pub(super) fn wake(&self, tx: &Tx) {
        let waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        let mut decided: HashMap<*const Shape, bool> = HashMap::new();
        for (shape, notify) in waiters.values() {
            let hit = *decided.entry(Arc::as_ptr(shape)).or_insert_with(|| {
                tx.changes.iter().any(|c| {
                    c.relation == shape.relation
                        && (c.new.as_ref().is_some_and(|r| shape.matches(r))
                            || c.old.as_ref().is_some_and(|r| shape.matches(r)))
                })
            });
            if hit {
                notify.notify_one();
            }
        }
    }

    /// Register a live request for `shape`: its `notify` fires when a logged transaction
    /// concerns the shape (a permit is kept if it fires before anyone waits).
    pub fn wait_for_shape(self: &Arc<Self>, shape: &Arc<Shape>) -> Waiter {
        let id = self.next_waiter.fetch_add(1, Ordering::Relaxed);
        let notify = Arc::new(tokio::sync::Notify::new());
        self.waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, (shape.clone(), notify.clone()));
        Waiter {
            server: self.clone(),
            id,
            notify,
        }
    }
}
