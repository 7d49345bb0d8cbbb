//! argon2id password hashing. Hashing is deliberately slow and memory-hungry (19 MiB each
//! by default), so it runs on blocking threads behind [`PasswordWork`], which allows about
//! one hash per core at a time and a bounded line of waiting requests; past that, callers
//! are told to come back ([`PasswordError::Busy`]) instead of queueing without end.
//! Verification of an unknown account still costs one hash so that response times do not
//! reveal which e-mail addresses have accounts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

#[derive(Debug, Clone, Copy)]
pub struct PasswordParams {
    pub memory_kib: u32,
    pub iterations: u32,
}

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    /// A hash of a random password, verified against when the account does not exist.
    decoy: String,
}

impl PasswordHasher {
    pub fn new(p: PasswordParams) -> Result<PasswordHasher, PasswordError> {
        let params = Params::new(p.memory_kib, p.iterations, 1, None)
            .map_err(|e| PasswordError::Failed(e.to_string()))?;
        let mut hasher = PasswordHasher {
            params,
            decoy: String::new(),
        };
        hasher.decoy = hasher.hash(&super::random_token(16))?;
        Ok(hasher)
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// A PHC string (`$argon2id$v=19$m=…`) with a fresh random salt.
    pub fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        self.argon2()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| PasswordError::Failed(e.to_string()))
    }

    /// Whether `password` matches `phc`; `None` checks against the decoy and returns false.
    pub fn verify(&self, password: &str, phc: Option<&str>) -> bool {
        // An account without a password (one made for a product's user) costs the same
        // time as a wrong password: the decoy is checked instead.
        let usable = phc.and_then(|p| PasswordHash::new(p).ok().map(|_| p));
        let target = usable.unwrap_or(&self.decoy);
        let Ok(parsed) = PasswordHash::new(target) else {
            return false;
        };
        // The parameters stored in the hash are used, so old hashes keep verifying after a
        // cost change.
        let ok = self
            .argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        ok && usable.is_some()
    }
}

/// Why a hash was not computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// Every slot is busy and the line of waiting requests is full.
    #[error("password hashing is busy")]
    Busy,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// Runs hashes on blocking threads, `slots` at a time, with at most `max_waiting` more
/// requests waiting for a slot.
pub struct PasswordWork {
    hasher: PasswordHasher,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
}

impl PasswordWork {
    pub fn new(hasher: PasswordHasher, slots: usize, max_waiting: usize) -> PasswordWork {
        PasswordWork {
            hasher,
            slots: Arc::new(Semaphore::new(slots.max(1))),
            waiting: AtomicUsize::new(0),
            max_waiting,
        }
    }

    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let hasher = self.hasher.clone();
        self.run(move || hasher.hash(&password)).await?
    }

    /// Whether `password` matches `phc` (`None`: checks a decoy and answers false).
    pub async fn verify(
        &self,
        password: String,
        phc: Option<String>,
    ) -> Result<bool, PasswordError> {
        let hasher = self.hasher.clone();
        self.run(move || hasher.verify(&password, phc.as_deref()))
            .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                // A place in line, given back however the wait ends: with a slot, or with
                // the request dropped (its client went away) while waiting.
                let place =
                    InLine::join(&self.waiting, self.max_waiting).ok_or(PasswordError::Busy)?;
                let permit = self.slots.clone().acquire_owned().await;
                drop(place);
                permit.map_err(|_| PasswordError::Busy)?
            }
        };
        actix_web::web::block(move || {
            let _slot = permit;
            work()
        })
        .await
        .map_err(|e| PasswordError::Failed(e.to_string()))
    }
}

/// One request waiting for a hashing slot.
struct InLine<'a>(&'a AtomicUsize);

impl<'a> InLine<'a> {
    fn join(waiting: &'a AtomicUsize, max: usize) -> Option<InLine<'a>> {
        let place = InLine(waiting);
        (waiting.fetch_add(1, Ordering::AcqRel) < max).then_some(place)
    }
}

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> PasswordHasher {
        PasswordHasher::new(PasswordParams {
            memory_kib: 1024,
            iterations: 1,
        })
        .unwrap()
    }

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let h = hasher();
        let a = h.hash("correct horse").unwrap();
        let b = h.hash("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b);
        assert!(h.verify("correct horse", Some(&a)));
        assert!(!h.verify("wrong horse", Some(&a)));
        assert!(!h.verify("correct horse", None));
        assert!(!h.verify("x", Some("not a hash")));
    }

    /// An unknown account costs one hash of the same cost as a real one: the decoy carries
    /// the configured parameters, and checking it takes as long as checking a real hash.
    #[test]
    fn an_unknown_account_costs_what_a_known_one_does() {
        let h = PasswordHasher::new(PasswordParams {
            memory_kib: 8 * 1024,
            iterations: 2,
        })
        .unwrap();
        let real = h.hash("correct horse").unwrap();
        let params = |phc: &str| {
            let parsed = PasswordHash::new(phc).unwrap();
            (
                parsed.algorithm.to_string(),
                Params::try_from(&parsed).unwrap(),
            )
        };
        assert_eq!(params(&h.decoy), params(&real));
        let once = |phc: Option<&str>| {
            let started = std::time::Instant::now();
            assert!(!h.verify("wrong horse", phc));
            started.elapsed()
        };
        // Taken in turns, so that whatever else the machine does weighs on both alike.
        let (mut known, mut unknown) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            known.push(once(Some(&real)));
            unknown.push(once(None));
        }
        known.sort();
        unknown.sort();
        let (known, unknown) = (known[2], unknown[2]);
        assert!(
            unknown * 2 > known && known * 2 > unknown,
            "a known account's wrong password took {known:?}, an unknown account {unknown:?}"
        );
    }

    #[actix_web::test]
    async fn a_full_line_is_refused_not_queued() {
        let work = Arc::new(PasswordWork::new(
            PasswordHasher::new(PasswordParams {
                memory_kib: 8 * 1024,
                iterations: 2,
            })
            .unwrap(),
            1,
            2,
        ));
        let attempts = (0..12).map(|_| {
            let work = work.clone();
            async move { work.hash("correct horse".into()).await }
        });
        let outcomes = futures_util::future::join_all(attempts).await;
        let busy = outcomes
            .iter()
            .filter(|o| **o == Err(PasswordError::Busy))
            .count();
        let done = outcomes.iter().filter(|o| o.is_ok()).count();
        assert_eq!(busy + done, 12);
        assert!(
            done >= 3,
            "one running and two waiting always complete: {done}"
        );
        assert!(busy >= 1, "the rest are refused: {busy}");
    }

    #[actix_web::test]
    async fn a_request_that_goes_away_while_waiting_gives_its_place_back() {
        let work = Arc::new(PasswordWork::new(
            PasswordHasher::new(PasswordParams {
                memory_kib: 8 * 1024,
                iterations: 4,
            })
            .unwrap(),
            1,
            1,
        ));
        let running = actix_web::rt::spawn({
            let work = work.clone();
            async move { work.hash("one".into()).await }
        });
        // Let it take the slot, then queue a second request and abandon it.
        while work.slots.available_permits() > 0 {
            actix_web::rt::task::yield_now().await;
        }
        let waiting = actix_web::rt::spawn({
            let work = work.clone();
            async move { work.hash("two".into()).await }
        });
        while work.waiting.load(Ordering::Acquire) == 0 {
            actix_web::rt::task::yield_now().await;
        }
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(
            work.waiting.load(Ordering::Acquire),
            0,
            "the place was given back"
        );
        assert!(running.await.unwrap().is_ok());
        assert!(work.hash("three".into()).await.is_ok());
    }
}
