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

fn non_zero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN)
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    fn with(quota: Quota) -> KeyedLimiter<K> {
        KeyedLimiter {
            gcra: Gcra::dashmap_with_clock(quota, MonotonicClock),
            clock: MonotonicClock,
        }
    }

    pub fn per_minute(per_minute: u32) -> KeyedLimiter<K> {
        KeyedLimiter::with(Quota::per_minute(non_zero(per_minute)))
    }

    pub fn per_hour(per_hour: u32) -> KeyedLimiter<K> {
        KeyedLimiter::with(Quota::per_hour(non_zero(per_hour)))
    }

    /// `per_sec` a second, in bursts of up to `burst`.
    pub fn per_second(per_sec: u32, burst: u32) -> KeyedLimiter<K> {
        KeyedLimiter::with(Quota::per_second(non_zero(per_sec)).allow_burst(non_zero(burst)))
    }

    /// Takes one attempt for `key`, or says how long until the next one is allowed.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        self.check_n(key, 1)
    }

    /// Takes `n` units for `key` at once, or says how long until they are there (a cost
    /// beyond the whole burst waits a second: it is refused, never held forever).
    pub fn check_n(&self, key: &K, n: u32) -> Result<(), Duration> {
        match self.gcra.check_key_n(key, non_zero(n)) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(self.clock.now())),
            Err(_) => Err(Duration::from_secs(1)),
        }
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

/// How long an address that signed in to an account is trusted by that account's
/// all-addresses limit.
const KNOWN_ADDRESS_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Addresses remembered per account (the most recent).
const KNOWN_ADDRESSES: usize = 8;

/// Mails one address may be sent on request (reset, verification again) in an hour.
pub const MAILS_PER_RECIPIENT_PER_HOUR: u32 = 5;

/// Every limiter of the authentication endpoints.
///
/// Logins are limited three ways. Per client address, over all accounts (credential
/// stuffing from one place). Per account *and* address: wrong passwords from one address
/// lock that address out of that account, never the owner at another address. Per account
/// over every address that has not signed in to it within 30 days: guessing spread over
/// many addresses is bounded per account (`auth.account_login_attempts_per_hour`), while the
/// owner, signing in from an address they used before, is not held back by it.
pub struct AuthLimits {
    /// Logins per client address.
    pub login_by_address: KeyedLimiter<IpAddr>,
    /// Logins per account (the normalised e-mail) and client address.
    pub login_by_account: KeyedLimiter<(String, IpAddr)>,
    /// Logins per account from addresses it does not know.
    pub login_by_account_anywhere: KeyedLimiter<String>,
    /// Addresses that signed in to each account, with when they last did.
    known: dashmap::DashMap<String, Vec<(IpAddr, std::time::Instant)>>,
    /// Registrations per client address.
    pub register_by_address: KeyedLimiter<IpAddr>,
    /// Refreshes and logouts per client address.
    pub tokens_by_address: KeyedLimiter<IpAddr>,
    /// Mail asked for (password reset, verification again) per client address.
    pub mail_by_address: KeyedLimiter<IpAddr>,
    /// Mail asked for per address it goes to: 5 an hour.
    pub mail_by_recipient: KeyedLimiter<String>,
}

impl AuthLimits {
    pub fn new(
        login_per_minute: u32,
        account_logins_per_hour: u32,
        tokens_per_minute: u32,
    ) -> AuthLimits {
        AuthLimits {
            login_by_address: KeyedLimiter::per_minute(login_per_minute),
            login_by_account: KeyedLimiter::per_minute(login_per_minute),
            login_by_account_anywhere: KeyedLimiter::per_hour(account_logins_per_hour),
            known: dashmap::DashMap::new(),
            register_by_address: KeyedLimiter::per_minute(login_per_minute),
            tokens_by_address: KeyedLimiter::per_minute(tokens_per_minute),
            mail_by_address: KeyedLimiter::per_minute(login_per_minute),
            mail_by_recipient: KeyedLimiter::per_hour(MAILS_PER_RECIPIENT_PER_HOUR),
        }
    }

    /// Whether `address` signed in to `account` within the last 30 days.
    pub fn knows(&self, account: &str, address: IpAddr) -> bool {
        self.known.get(account).is_some_and(|list| {
            list.iter()
                .any(|(a, at)| *a == address && at.elapsed() < KNOWN_ADDRESS_TTL)
        })
    }

    /// Remembers that `address` signed in to `account`.
    pub fn signed_in(&self, account: &str, address: IpAddr) {
        let mut list = self.known.entry(account.to_string()).or_default();
        list.retain(|(a, _)| *a != address);
        list.push((address, std::time::Instant::now()));
        if list.len() > KNOWN_ADDRESSES {
            list.remove(0);
        }
    }

    pub fn sweep(&self) {
        self.login_by_address.sweep();
        self.login_by_account.sweep();
        self.login_by_account_anywhere.sweep();
        self.register_by_address.sweep();
        self.tokens_by_address.sweep();
        self.mail_by_address.sweep();
        self.mail_by_recipient.sweep();
        self.known.retain(|_, list| {
            list.retain(|(_, at)| at.elapsed() < KNOWN_ADDRESS_TTL);
            !list.is_empty()
        });
        self.known.shrink_to_fit();
    }

    /// Keys held over all limiters.
    pub fn keys(&self) -> usize {
        self.login_by_address.len()
            + self.login_by_account.len()
            + self.login_by_account_anywhere.len()
            + self.register_by_address.len()
            + self.tokens_by_address.len()
            + self.mail_by_address.len()
            + self.mail_by_recipient.len()
            + self.known.len()
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
    fn a_cost_takes_several_units_and_a_cost_beyond_the_burst_is_refused() {
        let rl = KeyedLimiter::per_second(10, 20);
        assert!(rl.check_n(&"a", 10).is_ok());
        assert!(rl.check_n(&"a", 10).is_ok());
        assert!(rl.check_n(&"a", 10).is_err(), "the burst is spent");
        assert!(rl.check(&"b").is_ok());
        assert!(rl.check_n(&"c", 21).is_err(), "more than a whole burst");
    }

    #[test]
    fn addresses_an_account_signed_in_from_are_known_for_a_while() {
        let limits = AuthLimits::new(10, 100, 10);
        let home: IpAddr = "10.0.0.1".parse().unwrap();
        let away: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(!limits.knows("ada@example.com", home));
        limits.signed_in("ada@example.com", home);
        assert!(limits.knows("ada@example.com", home));
        assert!(!limits.knows("ada@example.com", away));
        assert!(!limits.knows("bob@example.com", home));
        for i in 0..20u8 {
            limits.signed_in("ada@example.com", IpAddr::from([10, 1, 0, i]));
        }
        assert!(
            !limits.knows("ada@example.com", home),
            "only the last 8 are kept"
        );
        limits.sweep();
        assert!(limits.knows("ada@example.com", IpAddr::from([10, 1, 0, 19])));
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
