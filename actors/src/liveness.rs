//! When a socket is to be closed for silence or for its token's expiry: one timer per
//! session, set for the earlier of the two moments, whatever the session speaks.

use std::time::{Duration, Instant};

/// What a session's client last did, and how long it may stay.
#[derive(Debug, Clone)]
pub(crate) struct Liveness {
    last_seen: Instant,
    /// The access token's expiry (Unix seconds).
    expires_at: i64,
    timeout: Duration,
}

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing heard for the heartbeat timeout.
    Silent,
    /// The token has expired.
    Expired,
    /// Alive: check again after this long (the earlier of the two deadlines).
    CheckIn(Duration),
}

impl Liveness {
    pub(crate) fn new(timeout: Duration, expires_at: i64) -> Liveness {
        Liveness {
            last_seen: Instant::now(),
            expires_at,
            timeout,
        }
    }

    /// The client was heard from.
    pub(crate) fn seen(&mut self) {
        self.last_seen = Instant::now();
    }

    /// A new token moved the expiry (never backwards); the expiry now.
    pub(crate) fn extend(&mut self, expires_at: i64) -> i64 {
        self.expires_at = self.expires_at.max(expires_at);
        self.expires_at
    }

    /// The verdict at `now` (`now_ms`: the same moment on the wall clock).
    pub(crate) fn check(&self, now: Instant, now_ms: i64) -> Verdict {
        let silent_for = now.saturating_duration_since(self.last_seen);
        if silent_for >= self.timeout {
            return Verdict::Silent;
        }
        let left_ms = self.expires_at.saturating_mul(1000).saturating_sub(now_ms);
        if left_ms <= 0 {
            return Verdict::Expired;
        }
        let expiry = Duration::from_millis(u64::try_from(left_ms).unwrap_or(u64::MAX));
        Verdict::CheckIn((self.timeout - silent_for).min(expiry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: i64 = 1_700_000_000_000;

    #[test]
    fn one_timer_for_the_earlier_deadline() {
        let live = Liveness::new(Duration::from_secs(60), NOW_MS / 1000 + 900);
        let now = live.last_seen;
        assert_eq!(
            live.check(now, NOW_MS),
            Verdict::CheckIn(Duration::from_secs(60))
        );
        // 50 s of silence: 10 s left before the heartbeat timeout.
        assert_eq!(
            live.check(now + Duration::from_secs(50), NOW_MS + 50_000),
            Verdict::CheckIn(Duration::from_secs(10))
        );
        // A token with 5 s left comes first.
        let short = Liveness::new(Duration::from_secs(60), NOW_MS / 1000 + 5);
        assert_eq!(
            short.check(now, NOW_MS),
            Verdict::CheckIn(Duration::from_secs(5))
        );
    }

    #[test]
    fn silence_then_expiry_end_the_socket() {
        let mut live = Liveness::new(Duration::from_secs(60), NOW_MS / 1000 + 900);
        let start = live.last_seen;
        assert_eq!(
            live.check(start + Duration::from_secs(60), NOW_MS + 60_000),
            Verdict::Silent
        );
        live.seen();
        let later = live.last_seen;
        assert!(matches!(
            live.check(later, NOW_MS + 60_000),
            Verdict::CheckIn(_)
        ));
        assert_eq!(
            live.check(later, NOW_MS + 900_000),
            Verdict::Expired,
            "a heartbeat does not outlive the token"
        );
        // A refreshed token moves the expiry forward, never back.
        assert_eq!(live.extend(NOW_MS / 1000 + 1800), NOW_MS / 1000 + 1800);
        assert_eq!(live.extend(NOW_MS / 1000 + 10), NOW_MS / 1000 + 1800);
        assert!(matches!(
            live.check(later, NOW_MS + 900_000),
            Verdict::CheckIn(_)
        ));
    }
}
