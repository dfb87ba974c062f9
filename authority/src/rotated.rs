//! [`RotatedSessions`]: the sessions this process rotated last, held by
//! their new refresh token, so that the next rotation of such a session
//! skips the store's inspection — one Redis round trip of a rotation's two.
//!
//! Holding them is safe because the rotation that follows is a
//! check-and-set ([`TokenWriter::rotate`](token_repository::TokenWriter::rotate)):
//! the store's rotate script refuses a refresh token that is no longer its
//! session's current one — revoked, expired, or rotated meanwhile by
//! another replica (then as reuse, revoking the session). What a held
//! record answers before that script runs — the session's client,
//! audience, scopes and family — changes only with a rotation, which
//! replaces the refresh token too; the user behind the session and the
//! client are read as before, on every rotation.
//!
//! Bounded by `ROTATION_CACHE_SESSIONS` (0: off): two generations of at
//! most half of it each; when the young one is full the old one is
//! dropped. A record is handed out once (taken), and dropped when its
//! token is revoked here or has expired. It helps when a session's next
//! rotation reaches the same replica while its record is still held: a
//! replica holds its last `ROTATION_CACHE_SESSIONS / 2` to
//! `ROTATION_CACHE_SESSIONS` rotations.

use std::collections::HashMap;
use std::mem;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use token_repository::{Minted, Timestamp, Token, TokenRecord};

/// The sessions this process rotated last (see the module).
///
/// ```
/// use token_authority::rotated::RotatedSessions;
///
/// let held = RotatedSessions::new(1_000);
/// assert_eq!(held.len(), 0);
/// ```
#[derive(Debug)]
pub struct RotatedSessions {
    /// The most records of one generation (half the capacity; 0: off).
    per_generation: usize,
    held: Mutex<Generations>,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Debug, Default)]
struct Generations {
    young: HashMap<[u8; 32], TokenRecord>,
    old: HashMap<[u8; 32], TokenRecord>,
}

/// How the held records were used, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Statistics {
    /// Rotations answered from memory.
    pub hits: u64,
    /// Rotations that inspected the store.
    pub misses: u64,
    /// Records held now.
    pub held: usize,
}

impl RotatedSessions {
    /// Holds up to `capacity` sessions (0: none; every rotation reads the
    /// store first).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            per_generation: capacity.div_ceil(2),
            held: Mutex::new(Generations::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn held(&self) -> MutexGuard<'_, Generations> {
        // The critical sections only insert into or remove from maps.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The record of refresh token `presented` when this process minted it
    /// by a rotation and still holds it, live at `now`; it is held no
    /// longer.
    pub fn take(&self, presented: &Token, now: Timestamp) -> Option<TokenRecord> {
        if self.per_generation == 0 {
            return None;
        }
        let key = presented.digest().as_bytes();
        let record = {
            let mut held = self.held();
            held.young.remove(key).or_else(|| held.old.remove(key))
        };
        let live = record.filter(|record| record.is_live_at(now));
        let counter = if live.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        live
    }

    /// Holds the refresh token of `minted`, just stored by a rotation.
    pub fn hold(&self, minted: &Minted) {
        let Some(refresh) = minted.refresh.as_ref().filter(|_| self.per_generation > 0) else {
            return;
        };
        let key = *refresh.token.digest().as_bytes();
        let dropped = {
            let mut held = self.held();
            held.young.insert(key, refresh.record.clone());
            (held.young.len() >= self.per_generation).then(|| {
                let young = mem::take(&mut held.young);
                mem::replace(&mut held.old, young)
            })
        };
        // The dropped generation is freed outside the lock.
        drop(dropped);
    }

    /// `token` was revoked or rotated: its record is held no longer.
    pub fn forget(&self, token: &Token) {
        if self.per_generation == 0 {
            return;
        }
        let key = token.digest().as_bytes();
        let mut held = self.held();
        if held.young.remove(key).is_none() {
            held.old.remove(key);
        }
    }

    /// How many records are held.
    #[must_use]
    pub fn len(&self) -> usize {
        let held = self.held();
        held.young.len() + held.old.len()
    }

    /// Whether none is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hits, misses and records held.
    #[must_use]
    pub fn statistics(&self) -> Statistics {
        Statistics {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            held: self.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use token_repository::{Audience, Grant, Holder, Scopes};

    use super::*;

    fn minted(lifetime: Duration) -> Minted {
        let grant = Grant {
            holder: Holder {
                subject: "subject-1".to_owned(),
                username: "alice".to_owned(),
                name: None,
                email: None,
                scopes: Scopes::parse("read").unwrap_or_else(|error| panic!("{error}")),
                client_id: None,
            },
            access_ttl: Duration::from_secs(60),
            refresh_ttl: Some(lifetime),
            audience: Audience::unrestricted(),
        };
        grant.mint().unwrap_or_else(|error| panic!("mint: {error}"))
    }

    fn refresh(minted: &Minted) -> &Token {
        &minted
            .refresh
            .as_ref()
            .unwrap_or_else(|| panic!("a refresh token"))
            .token
    }

    #[test]
    fn a_held_record_is_taken_once() {
        let held = RotatedSessions::new(10);
        let minted = minted(Duration::from_secs(600));
        held.hold(&minted);
        let record = held.take(refresh(&minted), Timestamp::now());
        assert_eq!(
            record.as_ref().map(|record| record.family),
            Some(minted.family())
        );
        assert_eq!(held.take(refresh(&minted), Timestamp::now()), None);
        assert_eq!(
            held.statistics(),
            Statistics {
                hits: 1,
                misses: 1,
                held: 0
            }
        );
    }

    #[test]
    fn the_access_token_and_unknown_tokens_find_nothing() {
        let held = RotatedSessions::new(10);
        let minted = minted(Duration::from_secs(600));
        held.hold(&minted);
        assert_eq!(held.take(&minted.access.token, Timestamp::now()), None);
        let other = self::minted(Duration::from_secs(600));
        assert_eq!(held.take(refresh(&other), Timestamp::now()), None);
        assert_eq!(held.len(), 1);
    }

    #[test]
    fn an_expired_record_is_not_answered() {
        let held = RotatedSessions::new(10);
        let minted = minted(Duration::from_secs(600));
        held.hold(&minted);
        let later = Timestamp::now().saturating_add(Duration::from_secs(601));
        assert_eq!(held.take(refresh(&minted), later), None);
        assert!(held.is_empty());
    }

    #[test]
    fn forgotten_records_are_gone() {
        let held = RotatedSessions::new(10);
        let minted = minted(Duration::from_secs(600));
        held.hold(&minted);
        held.forget(refresh(&minted));
        assert!(held.is_empty());
        assert_eq!(held.take(refresh(&minted), Timestamp::now()), None);
    }

    #[test]
    fn capacity_bounds_what_is_held_and_keeps_the_newest() {
        let held = RotatedSessions::new(1_000);
        let all: Vec<Minted> = (0..10_000)
            .map(|_| minted(Duration::from_secs(600)))
            .collect();
        for minted in &all {
            held.hold(minted);
            assert!(held.len() <= 1_000);
        }
        assert!(held.len() >= 500);
        let newest = all.last().map(refresh);
        assert!(newest.is_some_and(|token| held.take(token, Timestamp::now()).is_some()));
        let oldest = all.first().map(refresh);
        assert!(oldest.is_some_and(|token| held.take(token, Timestamp::now()).is_none()));
    }

    #[test]
    fn capacity_zero_holds_nothing() {
        let held = RotatedSessions::new(0);
        let minted = minted(Duration::from_secs(600));
        held.hold(&minted);
        assert!(held.is_empty());
        assert_eq!(held.take(refresh(&minted), Timestamp::now()), None);
        assert_eq!(held.statistics().misses, 0);
    }
}
