//! Keyed rate limits for the authentication endpoints, on governor's GCRA (one atomic word
//! of state per key in a sharded map). Keys are bounded values — an IP address (IPv6 by its
//! /64, which one client usually holds whole) or a validated, normalised e-mail address —
//! never raw request text, and a keyed limiter only holds keys it has seen within its
//! window: [`KeyedLimiter::sweep`], run every minute, drops the rest.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::Quota;

type Gcra<K> = governor::RateLimiter<
    K,
    DashMapStateStore<K>,
    MonotonicClock,
    NoOpMiddleware<<MonotonicClock as Clock>::Instant>,
>;

/// `per_minute` attempts per key per minute, in bursts of up to `per_minute`.
pub struct KeyedLimiter<K: Hash + Eq + Clone> {
    gcra: Gcra<K>,
    clock: MonotonicClock,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    pub fn per_minute(per_minute: u32) -> KeyedLimiter<K> {
        let n = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        KeyedLimiter {
            gcra: Gcra::dashmap_with_clock(Quota::per_minute(n), MonotonicClock),
            clock: MonotonicClock,
        }
    }

    /// Takes one attempt for `key`, or says how long until the next one is allowed.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        self.gcra
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets keys whose allowance is whole again (they would be admitted as if new).
    pub fn sweep(&self) {
        self.gcra.retain_recent();
        self.gcra.shrink_to_fit();
    }

    /// Keys currently held.
    pub fn len(&self) -> usize {
        self.gcra.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The key a client address is limited under: IPv4 as it is, IPv6 by its /64 prefix, so
/// that one client cannot walk through its own subnet to get a fresh allowance per address.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Every limiter of the authentication endpoints.
pub struct AuthLimits {
    /// Logins per client address.
    pub login_by_address: KeyedLimiter<IpAddr>,
    /// Logins per account (the normalised e-mail).
    pub login_by_account: KeyedLimiter<String>,
    /// Registrations per client address.
    pub register_by_address: KeyedLimiter<IpAddr>,
    /// Refreshes and logouts per client address.
    pub tokens_by_address: KeyedLimiter<IpAddr>,
}

impl AuthLimits {
    pub fn new(login_per_minute: u32, tokens_per_minute: u32) -> AuthLimits {
        AuthLimits {
            login_by_address: KeyedLimiter::per_minute(login_per_minute),
            login_by_account: KeyedLimiter::per_minute(login_per_minute),
            register_by_address: KeyedLimiter::per_minute(login_per_minute),
            tokens_by_address: KeyedLimiter::per_minute(tokens_per_minute),
        }
    }

    pub fn sweep(&self) {
        self.login_by_address.sweep();
        self.login_by_account.sweep();
        self.register_by_address.sweep();
        self.tokens_by_address.sweep();
    }

    /// Keys held over all limiters.
    pub fn keys(&self) -> usize {
        self.login_by_address.len()
            + self.login_by_account.len()
            + self.register_by_address.len()
            + self.tokens_by_address.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_refuses_with_a_wait() {
        let rl = KeyedLimiter::per_minute(3);
        for _ in 0..3 {
            assert!(rl.check(&"a").is_ok());
        }
        let wait = rl.check(&"a").unwrap_err();
        assert!(wait > Duration::from_secs(15) && wait <= Duration::from_secs(20));
        assert!(rl.check(&"b").is_ok(), "keys are independent");
    }

    #[test]
    fn sweeping_keeps_only_keys_still_limited() {
        let rl = KeyedLimiter::per_minute(2);
        rl.check(&1).unwrap();
        rl.check(&1).unwrap();
        assert_eq!(rl.len(), 1);
        rl.sweep();
        assert_eq!(rl.len(), 1, "a key without allowance left is kept");
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(address_key(mapped), "10.1.2.3".parse::<IpAddr>().unwrap());
    }
}
