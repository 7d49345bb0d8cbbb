//! Sessions ended before their access tokens expire: what this node knows of them, so that
//! every token check (REST, socket upgrades, a channel's new token) refuses the tokens they
//! name, and the sockets opened with such tokens are closed. Each end is kept for as long
//! as a token issued before it can live (`Limits::token_lifetime`), then forgotten: the
//! tokens it names have expired by then.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use stoa_protocol::bus::SessionEnd;

#[derive(Default)]
pub(crate) struct Ended {
    /// Every end still in force, by user, with when it was recorded here: a token check
    /// looks at its user's ends only.
    ends: dashmap::DashMap<i64, Vec<(Arc<SessionEnd>, Instant)>>,
    /// How many users have ends in force, read without a lock by every token check.
    users: AtomicI64,
    /// The highest id read from the database's record (the poll's cursor).
    read_through: AtomicI64,
}

impl Ended {
    /// Records an end; false if it was known already (by the bus and then the poll, say).
    pub(crate) fn record(&self, end: Arc<SessionEnd>) -> bool {
        let mut ends = self.ends.entry(end.user).or_insert_with(|| {
            self.users.fetch_add(1, Ordering::Relaxed);
            Vec::new()
        });
        if ends.iter().any(|(e, _)| e.id == end.id) {
            return false;
        }
        ends.push((end, Instant::now()));
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
        if self.users.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let ends = self.ends.get(&user)?;
        ends.iter()
            .find(|(e, _)| e.covers(user, session, issued_at_ms))
            .map(|(e, _)| e.clone())
    }

    /// Forgets ends older than `lifetime`.
    pub(crate) fn sweep(&self, lifetime: std::time::Duration) {
        self.ends.retain(|_, ends| {
            ends.retain(|(_, at)| at.elapsed() < lifetime);
            if ends.is_empty() {
                self.users.fetch_sub(1, Ordering::Relaxed);
            }
            !ends.is_empty()
        });
        self.ends.shrink_to_fit();
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
        "password_reset" => "password_reset",
        "account_disabled" => "account_disabled",
        "account_deleted" => "account_deleted",
        "refresh_token_reused" => "refresh_token_reused",
        "token_revoked" => "token_revoked",
        "sso_required" => "sso_required",
        "account_claimed" => "account_claimed",
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

#[cfg(test)]
mod tests {
    use super::*;

    fn end(id: i64, user: i64, session: Option<&str>, before_ms: Option<i64>) -> Arc<SessionEnd> {
        Arc::new(SessionEnd {
            id,
            user,
            session: session.map(str::to_string),
            before_ms,
            except: None,
            reason: "logged_out".into(),
        })
    }

    #[test]
    fn ends_are_kept_per_user_once_and_forgotten_after_a_token_lifetime() {
        let ended = Ended::default();
        assert!(ended.ended(7, Some("a"), 1).is_none());
        assert!(ended.record(end(1, 7, Some("a"), None)));
        assert!(!ended.record(end(1, 7, Some("a"), None)), "known already");
        assert!(ended.record(end(2, 8, None, Some(1_000))));
        assert_eq!(ended.ended(7, Some("a"), 5).map(|e| e.id), Some(1));
        assert!(ended.ended(7, Some("b"), 5).is_none());
        assert_eq!(ended.ended(8, Some("x"), 999).map(|e| e.id), Some(2));
        assert!(
            ended.ended(8, Some("x"), 1_001).is_none(),
            "issued after it"
        );
        ended.sweep(std::time::Duration::from_secs(60));
        assert!(ended.ended(7, Some("a"), 5).is_some(), "still in force");
        ended.sweep(std::time::Duration::ZERO);
        assert!(ended.ended(7, Some("a"), 5).is_none());
        assert_eq!(ended.users.load(Ordering::Relaxed), 0);
    }
}
