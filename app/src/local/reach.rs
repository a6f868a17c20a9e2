//! Is the server answering? The browser's `online` flag only says a network is there: a server
//! that is down (connection refused), hung (accepts and never answers) or behind a network that
//! swallows requests looks "online" forever. Every request of the sync loops goes through
//! `send`, which tells the sync bar (`Local::unanswered`) when one failed without an answer or
//! had none within its patience, and clears it at the next answer of any kind.
use super::{now_ms, Local};
use futures::FutureExt;
use gloo_net::http::{Request, Response};
use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;

/// A request with no answer after this long: the server is not answering.
const PATIENCE_MS: u32 = 10_000;
/// A live long-poll is answered when something changes or after the server's wait (20 s by
/// default, `SHAPE_LONG_POLL_SECS`): only past that does its silence count.
const LONG_POLL_MS: u32 = 20_000;
/// Past this the request is dropped and made again (every write is idempotent; a read repeats).
const GIVE_UP_MS: u32 = 60_000;

/// How long a request may take before its silence means something.
#[derive(Clone, Copy)]
pub(super) enum Patience {
    /// Answered at once by a working server.
    Quick,
    /// Held by the server until something changes (a live shape request, the shape watch).
    LongPoll,
}

impl Patience {
    fn ms(self) -> u32 {
        match self {
            Patience::Quick => PATIENCE_MS,
            Patience::LongPoll => LONG_POLL_MS + PATIENCE_MS,
        }
    }
}

/// Send `request`; `Err` when it failed without an answer or was given up on.
pub(super) async fn send(
    local: Local,
    request: Request,
    patience: Patience,
) -> Result<Response, ()> {
    let answer = request.send().fuse();
    futures::pin_mut!(answer);
    let waited = TimeoutFuture::new(patience.ms()).fuse();
    futures::pin_mut!(waited);
    let answered = futures::select! {
        a = answer => Some(a),
        _ = waited => None,
    };
    let answered = match answered {
        Some(a) => Some(a),
        None => {
            not_answering(local, patience.ms());
            let give_up = TimeoutFuture::new(GIVE_UP_MS).fuse();
            futures::pin_mut!(give_up);
            futures::select! {
                a = answer => Some(a),
                _ = give_up => None,
            }
        }
    };
    match answered {
        Some(Ok(response)) => {
            if local.unanswered.get_untracked().is_some() {
                local.unanswered.set(None);
            }
            Ok(response)
        }
        // Offline, a failed request says nothing about the server.
        Some(Err(_)) if !local.online.get_untracked() => Err(()),
        Some(Err(_)) => {
            not_answering(local, 0);
            Err(())
        }
        None => Err(()),
    }
}

/// The server has not answered since `waited_ms` ago (kept from the first silence).
fn not_answering(local: Local, waited_ms: u32) {
    if local.unanswered.get_untracked().is_none() {
        local
            .unanswered
            .set(Some(now_ms().saturating_sub(u64::from(waited_ms))));
    }
}
