//! What the server keeps about the sessions behind live shape requests: how many live requests
//! each has open and how many shapes each started lately (both bounded, so one session cannot
//! take the server's memory or the database's time), and which sessions have ended, so their
//! open long-polls and streams stop at once rather than at their next poll.
//!
//! Sessions end in the database (logout, expiry, a new login, deactivation); a trigger announces
//! each on the `turns_session_ended` channel, which every server instance listens to.
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use turns::model::SessionUser;

/// The channel the `sessions_ended` trigger notifies, with the ended token's hash.
pub const CHANNEL: &str = "turns_session_ended";

#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Live requests (long-polls, SSE streams) one session may have open at once.
    pub live: usize,
    /// New shapes (`offset=-1` or `now`: each a snapshot query and a stored handle) one session
    /// may start per `window`.
    pub new_shapes: usize,
    pub window: Duration,
}

impl Default for Budget {
    fn default() -> Self {
        // A device follows a handful of shapes; a reload starts each again.
        Budget {
            live: 16,
            new_shapes: 60,
            window: Duration::from_secs(300),
        }
    }
}

pub struct LiveSessions {
    budget: Budget,
    use_by: Mutex<HashMap<String, Use>>,
    /// Ended sessions seen lately (a request woken at the same moment checks here), and the
    /// announcement for those waiting.
    ended: Mutex<HashSet<String>>,
    announce: broadcast::Sender<Arc<str>>,
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Sessions confirmed valid in the last `RECENT` (live shape requests skip the database).
    recent: Mutex<HashMap<String, (SessionUser, Instant)>>,
}

/// How long a confirmed session is taken from memory by live shape requests. An ended session
/// (logout, a new login, expiry's deletion) is forgotten at once through the channel; what is
/// not announced (a role changed, a user deactivated, an expiry passing) reaches live shape
/// requests within this time.
const RECENT: Duration = Duration::from_secs(5);
/// Sessions kept in memory at most (beyond that the map starts over).
const RECENT_MAX: usize = 100_000;

#[derive(Default)]
struct Use {
    live: usize,
    started: VecDeque<Instant>,
}

/// Why a session may not start another request now.
#[derive(Debug, PartialEq, Eq)]
pub enum OverBudget {
    TooManyLive,
    TooManyShapes { retry_after_secs: u64 },
}

impl Default for LiveSessions {
    fn default() -> Self {
        LiveSessions::new(Budget::default())
    }
}

impl LiveSessions {
    pub fn new(budget: Budget) -> Self {
        LiveSessions {
            budget,
            use_by: Mutex::new(HashMap::new()),
            ended: Mutex::new(HashSet::new()),
            announce: broadcast::channel(1024).0,
            listener: Mutex::new(None),
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// Follow the `turns_session_ended` channel until `stop` (reconnecting as needed).
    pub fn listen(self: &Arc<Self>, pool: sqlx::PgPool) {
        let sessions = self.clone();
        let task = tokio::spawn(async move {
            loop {
                let result: Result<(), sqlx::Error> = async {
                    let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
                    listener.listen(CHANNEL).await?;
                    loop {
                        let n = listener.recv().await?;
                        sessions.end(n.payload());
                    }
                }
                .await;
                if let Err(e) = result {
                    tracing::warn!(error = %e, "session-end listener stopped; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        });
        let old = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(task);
        if let Some(old) = old {
            old.abort();
        }
    }

    /// Stop listening (before the pool closes: the listener holds one of its connections).
    pub fn stop(&self) {
        if let Some(task) = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
    }

    /// Count a new shape for the session, or refuse it.
    pub fn start_shape(&self, session: &str) -> Result<(), OverBudget> {
        let now = Instant::now();
        let mut map = self.use_by.lock().unwrap_or_else(|e| e.into_inner());
        let u = map.entry(session.to_string()).or_default();
        while u
            .started
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.budget.window)
        {
            u.started.pop_front();
        }
        if u.started.len() >= self.budget.new_shapes {
            let oldest = u.started.front().copied().unwrap_or(now);
            let wait = self
                .budget
                .window
                .saturating_sub(now.duration_since(oldest));
            return Err(OverBudget::TooManyShapes {
                retry_after_secs: wait.as_secs().max(1),
            });
        }
        u.started.push_back(now);
        Ok(())
    }

    /// Hold a live request for the session while the guard lives, or refuse it.
    pub fn hold_live(self: &Arc<Self>, session: &str) -> Result<LiveGuard, OverBudget> {
        let mut map = self.use_by.lock().unwrap_or_else(|e| e.into_inner());
        let u = map.entry(session.to_string()).or_default();
        if u.live >= self.budget.live {
            return Err(OverBudget::TooManyLive);
        }
        u.live += 1;
        Ok(LiveGuard {
            sessions: self.clone(),
            session: session.to_string(),
            ended: self.announce.subscribe(),
        })
    }

    /// The user of a session confirmed valid within the last few seconds (`RECENT`).
    pub fn recent_user(&self, session: &str) -> Option<SessionUser> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let (user, at) = recent.get(session)?;
        (at.elapsed() < RECENT && !self.has_ended(session)).then(|| user.clone())
    }

    /// The database confirmed this session valid just now.
    pub fn remember_user(&self, session: &str, user: &SessionUser) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() >= RECENT_MAX {
            recent.retain(|_, (_, at)| at.elapsed() < RECENT);
        }
        if recent.len() < RECENT_MAX {
            recent.insert(session.to_string(), (user.clone(), Instant::now()));
        }
    }

    /// A session ended: forget it and wake its live requests.
    pub fn end(&self, session: &str) {
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(session);
        let mut ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        if ended.len() > 10_000 {
            // Old entries only matter for a moment (a request woken as its session ended).
            ended.clear();
        }
        ended.insert(session.to_string());
        let _ = self.announce.send(session.into());
    }

    fn has_ended(&self, session: &str) -> bool {
        self.ended
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(session)
    }

    fn release(&self, session: &str) {
        let mut map = self.use_by.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(u) = map.get_mut(session) {
            u.live = u.live.saturating_sub(1);
            if u.live == 0 && u.started.is_empty() {
                map.remove(session);
            }
        }
    }
}

/// One live request of a session; ends its count when dropped.
pub struct LiveGuard {
    sessions: Arc<LiveSessions>,
    session: String,
    ended: broadcast::Receiver<Arc<str>>,
}

impl LiveGuard {
    /// Whether the session has ended (checked before answering with data).
    pub fn has_ended(&self) -> bool {
        self.sessions.has_ended(&self.session)
    }

    /// Resolves when the session ends (never, if nobody announces it).
    pub async fn ended(&mut self) {
        // Announced before this wait began (the receiver holds everything since the guard was
        // made, but a caller may have consumed it already).
        if self.has_ended() {
            return;
        }
        loop {
            match self.ended.recv().await {
                Ok(s) if *s == *self.session => return,
                Ok(_) => {}
                // Missed announcements: look at the set instead.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if self.has_ended() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.sessions.release(&self.session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_gets_a_bounded_number_of_live_requests_and_new_shapes() {
        let s = Arc::new(LiveSessions::new(Budget {
            live: 2,
            new_shapes: 3,
            window: Duration::from_secs(60),
        }));
        let a = s.hold_live("a").expect("room");
        let _b = s.hold_live("a").expect("room");
        assert_eq!(s.hold_live("a").err(), Some(OverBudget::TooManyLive));
        assert!(s.hold_live("other").is_ok(), "per session");
        drop(a);
        assert!(
            s.hold_live("a").is_ok(),
            "a finished request gives its place back"
        );
        for _ in 0..3 {
            s.start_shape("a").expect("room");
        }
        assert!(matches!(
            s.start_shape("a"),
            Err(OverBudget::TooManyShapes { .. })
        ));
    }

    #[tokio::test]
    async fn an_ended_session_wakes_its_live_requests() {
        let s = Arc::new(LiveSessions::default());
        let mut live = s.hold_live("a").expect("room");
        let other = s.hold_live("b").expect("room");
        s.end("a");
        live.ended().await;
        assert!(live.has_ended());
        assert!(!other.has_ended());
    }
}
