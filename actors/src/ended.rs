//! Sessions ended before their access tokens expire: what this node knows of them, so that
//! every token check (REST, socket upgrades, a channel's new token) refuses the tokens they
//! name, and the sockets opened with such tokens are closed. Each end is kept for as long
//! as a token issued before it can live (`Limits::token_lifetime`), then forgotten: the
//! tokens it names have expired by then.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use stoa_protocol::bus::SessionEnd;

#[derive(Default)]
pub(crate) struct Ended {
    /// Every end still in force, with when it was recorded here.
    ends: Mutex<Vec<(Arc<SessionEnd>, Instant)>>,
    /// How many there are, read without the lock by every token check.
    count: AtomicI64,
    /// The highest id read from the database's record (the poll's cursor).
    read_through: AtomicI64,
}

impl Ended {
    /// Records an end; false if it was known already (by the bus and then the poll, say).
    pub(crate) fn record(&self, end: Arc<SessionEnd>) -> bool {
        let mut ends = self.ends.lock().unwrap_or_else(PoisonError::into_inner);
        if ends.iter().any(|(e, _)| e.id == end.id) {
            return false;
        }
        ends.push((end, Instant::now()));
        self.count.store(ends.len() as i64, Ordering::Relaxed);
        true
    }

    /// Why a token of `user` from login `session` issued at `issued_at_ms` no longer counts,
    /// if it does not.
    pub(crate) fn ended(
        &self,
        user: i64,
        session: Option<&str>,
        issued_at_ms: i64,
    ) -> Option<Arc<SessionEnd>> {
        if self.count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let ends = self.ends.lock().unwrap_or_else(PoisonError::into_inner);
        ends.iter()
            .find(|(e, _)| e.covers(user, session, issued_at_ms))
            .map(|(e, _)| e.clone())
    }

    /// Forgets ends older than `lifetime`.
    pub(crate) fn sweep(&self, lifetime: std::time::Duration) {
        let mut ends = self.ends.lock().unwrap_or_else(PoisonError::into_inner);
        ends.retain(|(_, at)| at.elapsed() < lifetime);
        ends.shrink_to_fit();
        self.count.store(ends.len() as i64, Ordering::Relaxed);
    }

    pub(crate) fn read_through(&self) -> i64 {
        self.read_through.load(Ordering::Relaxed)
    }

    pub(crate) fn advance(&self, id: i64) {
        self.read_through.fetch_max(id, Ordering::Relaxed);
    }
}

/// The close reason a session end gives the sockets it closes.
pub(crate) fn close_reason(end: &SessionEnd) -> &'static str {
    match end.reason.as_str() {
        "logged_out" => "logged_out",
        "password_changed" => "password_changed",
        "account_disabled" => "account_disabled",
        "refresh_token_reused" => "refresh_token_reused",
        _ => "session_ended",
    }
}

/// What a socket's access token says of its login: checked against session ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenTag {
    /// The login (refresh family) the token belongs to.
    pub session: Option<Arc<str>>,
    /// When it was issued (milliseconds since the Unix epoch).
    pub issued_at_ms: i64,
}

impl TokenTag {
    pub(crate) fn ended_by(&self, user: i64, end: &SessionEnd) -> bool {
        end.covers(user, self.session.as_deref(), self.issued_at_ms)
    }
}
