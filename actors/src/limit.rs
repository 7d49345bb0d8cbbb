//! Rate limits on governor's GCRA: one atomic word of state per limiter, no locks, no timer.

use std::num::NonZeroU32;

use governor::clock::MonotonicClock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::Quota;

type Gcra = governor::RateLimiter<
    NotKeyed,
    InMemoryState,
    MonotonicClock,
    NoOpMiddleware<<MonotonicClock as governor::clock::Clock>::Instant>,
>;

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN)
}

/// `rate` per second sustained, `burst` at once.
pub(crate) struct Limiter(Gcra);

impl Limiter {
    pub(crate) fn new(rate: u32, burst: u32) -> Limiter {
        let quota = Quota::per_second(nonzero(rate)).allow_burst(nonzero(burst));
        Limiter(Gcra::direct_with_clock(quota, MonotonicClock))
    }

    /// Takes one; false when over the limit.
    pub(crate) fn take(&self) -> bool {
        self.0.check().is_ok()
    }

    /// Takes `n` at once; false when over the limit (or `n` exceeds the burst).
    pub(crate) fn take_n(&self, n: u32) -> bool {
        matches!(self.0.check_n(nonzero(n)), Ok(Ok(())))
    }
}

/// `rate` per second sustained, `burst` at once, per key (a user id, a topic); keys whose
/// allowance is whole again are dropped by [`KeyedLimiter::sweep`].
pub(crate) struct KeyedLimiter<K: std::hash::Hash + Eq + Clone>(
    governor::RateLimiter<
        K,
        governor::state::keyed::DashMapStateStore<K>,
        MonotonicClock,
        NoOpMiddleware<<MonotonicClock as governor::clock::Clock>::Instant>,
    >,
);

impl<K: std::hash::Hash + Eq + Clone> KeyedLimiter<K> {
    pub(crate) fn new(rate: u32, burst: u32) -> KeyedLimiter<K> {
        let quota = Quota::per_second(nonzero(rate)).allow_burst(nonzero(burst));
        KeyedLimiter(governor::RateLimiter::dashmap_with_clock(
            quota,
            MonotonicClock,
        ))
    }

    pub(crate) fn take(&self, key: &K) -> bool {
        self.0.check_key(key).is_ok()
    }

    /// Takes `n` at once; false when over the limit (or `n` exceeds the burst).
    pub(crate) fn take_n(&self, key: &K, n: u32) -> bool {
        matches!(self.0.check_key_n(key, nonzero(n)), Ok(Ok(())))
    }

    pub(crate) fn sweep(&self) {
        self.0.retain_recent();
        self.0.shrink_to_fit();
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Limiter")
    }
}

#[cfg(test)]
mod tests {
    use super::Limiter;

    #[test]
    fn allows_the_burst_then_refuses() {
        let l = Limiter::new(1, 5);
        assert_eq!((0..10).filter(|_| l.take()).count(), 5);
    }

    #[test]
    fn weighs_by_size() {
        let bytes = Limiter::new(1000, 1000);
        assert!(bytes.take_n(600));
        assert!(!bytes.take_n(600), "only 400 left");
        assert!(bytes.take_n(400));
        assert!(
            !Limiter::new(10, 10).take_n(11),
            "more than the burst never passes"
        );
    }
}
