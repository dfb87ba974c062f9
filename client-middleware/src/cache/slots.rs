//! [`Slots`]: the cache's entries, and the ticket protocol that keeps an
//! answer read before an invalidation from being stored after it. Fed by
//! the repository's invalidations as an [`InvalidationSink`]; knows nothing
//! of Redis connections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use token_repository::redis::{Epoch, Invalidation, InvalidationSink, TrackedKey};
use token_repository::{Timestamp, Token, TokenDigest, TokenKind, TokenRecord};
use tokio::time::Instant;

use super::{CacheConfig, CacheStats};
use crate::metrics;

/// One lookup: where it is cached and which token it is for (a session's
/// slot answers only for the token it was filled for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry {
    key: TrackedKey,
    digest: TokenDigest,
}

impl Entry {
    pub(super) fn of(token: &Token) -> Self {
        Self {
            key: TrackedKey::of(token),
            digest: *token.digest(),
        }
    }
}

/// What the cache holds for one key, for the token of `digest`.
#[derive(Debug)]
struct Slot {
    digest: TokenDigest,
    state: SlotState,
}

#[derive(Debug)]
// A record (its audience inline) is held by value: boxing it would cost the
// cache-hit path an allocation.
#[allow(clippy::large_enum_variant)]
enum SlotState {
    /// A lookup is under way; only the holder of this ticket may fill it.
    Pending(u64),
    /// A live token, trusted until `until`.
    Known { record: TokenRecord, until: Instant },
    /// An unknown, expired or revoked token, trusted until `until`.
    Unknown { until: Instant },
}

#[derive(Debug)]
struct State {
    entries: HashMap<TrackedKey, Slot>,
    /// Whether lookups may be answered (and stored).
    active: bool,
    next_ticket: u64,
    /// Which tracking connection is current, and whether it has been lost.
    connection: Epoch,
    connection_lost: bool,
    last_sweep: Instant,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    bypassed: AtomicU64,
    invalidations: AtomicU64,
}

/// The entries and counters of one cache, shared by its handles.
#[derive(Debug)]
pub(super) struct Slots {
    config: CacheConfig,
    state: Mutex<State>,
    counters: Counters,
}

/// What [`Slots::begin`] decided.
// A record (its audience inline) is held by value: boxing it would cost the
// cache-hit path an allocation.
#[allow(clippy::large_enum_variant)]
pub(super) enum Begin {
    /// The cached answer.
    Hit(Option<TokenRecord>),
    /// Ask the reader; with a ticket when the answer may be stored.
    Miss(Option<u64>),
}

/// How often a full cache may sweep its expired entries.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

impl Slots {
    /// Empty slots; `active` when lookups may be answered at once (a cache
    /// without invalidations), else once tracking is on.
    pub(super) fn new(config: CacheConfig, active: bool) -> Self {
        Self {
            config,
            state: Mutex::new(State {
                entries: HashMap::new(),
                active,
                next_ticket: 0,
                connection: Epoch(0),
                connection_lost: false,
                last_sweep: Instant::now(),
            }),
            counters: Counters::default(),
        }
    }

    pub(super) fn config(&self) -> &CacheConfig {
        &self.config
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every critical section is a few infallible map operations, so a
        // poisoned lock still guards consistent data.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Answers `entry` from the cache, or leaves a pending marker and hands
    /// out its ticket.
    pub(super) fn begin(&self, entry: &Entry) -> Begin {
        let now = Instant::now();
        let mut state = self.state();
        if !state.active {
            Self::count(&self.counters.bypassed);
            metrics::cache_bypass();
            return Begin::Miss(None);
        }
        let slot = state.entries.get(&entry.key);
        let ticket = match slot.map(|slot| (slot.digest.ct_eq(&entry.digest), &slot.state)) {
            Some((true, SlotState::Known { record, until }))
                if now < *until && record.is_live_at(Timestamp::now()) =>
            {
                Self::count(&self.counters.hits);
                metrics::cache_hit();
                return Begin::Hit(Some(record.clone()));
            }
            Some((true, SlotState::Unknown { until })) if now < *until => {
                Self::count(&self.counters.hits);
                metrics::cache_hit();
                return Begin::Hit(None);
            }
            // Join the lookup under way: any invalidation since it began
            // would have removed its marker.
            Some((true, SlotState::Pending(ticket))) => *ticket,
            // Another token of the same session is being looked up: ask
            // without disturbing it.
            Some((false, SlotState::Pending(_))) => {
                Self::count(&self.counters.misses);
                metrics::cache_miss();
                return Begin::Miss(None);
            }
            _ => {
                let ticket = state.next_ticket;
                state.next_ticket += 1;
                if !state.entries.contains_key(&entry.key) {
                    self.make_room(&mut state, now);
                }
                state.entries.insert(
                    entry.key,
                    Slot {
                        digest: entry.digest,
                        state: SlotState::Pending(ticket),
                    },
                );
                ticket
            }
        };
        Self::count(&self.counters.misses);
        metrics::cache_miss();
        Begin::Miss(Some(ticket))
    }

    /// The record of a live access token held for `key` and filled for the
    /// token whose digest is `digest` (compared in constant time), live at
    /// `now`;
    /// counted as a hit. `None` for everything else, uncounted: the caller
    /// then takes the full path ([`Self::begin`]), which counts.
    pub(super) fn recall(
        &self,
        key: &TrackedKey,
        digest: &TokenDigest,
        now: Timestamp,
    ) -> Option<TokenRecord> {
        let instant = Instant::now();
        let state = self.state();
        if !state.active {
            return None;
        }
        let slot = state.entries.get(key)?;
        if let SlotState::Known { record, .. } = &slot.state {
            // The clone below writes the holder's reference count: with many
            // tokens that line is rarely in the CPU's cache. Reading it now
            // starts the fetch while the checks run, rather than stalling the
            // atomic increment on it.
            std::hint::black_box(Arc::strong_count(&record.holder));
        }
        match &slot.state {
            SlotState::Known { record, until }
                if slot.digest.ct_eq(digest)
                    && record.kind == TokenKind::Access
                    && instant < *until
                    && record.is_live_at(now) =>
            {
                let record = record.clone();
                drop(state);
                Self::count(&self.counters.hits);
                metrics::cache_hit();
                Some(record)
            }
            _ => None,
        }
    }

    fn make_room(&self, state: &mut State, now: Instant) {
        if state.entries.len() < self.config.capacity {
            return;
        }
        if now.duration_since(state.last_sweep) >= SWEEP_INTERVAL {
            state.last_sweep = now;
            state.entries.retain(|_, slot| match &slot.state {
                SlotState::Pending(_) => true,
                SlotState::Known { until, .. } | SlotState::Unknown { until } => now < *until,
            });
        }
        while state.entries.len() >= self.config.capacity {
            let Some(victim) = state.entries.keys().next().copied() else {
                break;
            };
            state.entries.remove(&victim);
        }
    }

    /// The marker of the lookup holding `ticket`: filled by
    /// [`Pending::complete`], removed if the lookup fails or is dropped.
    pub(super) fn pending(&self, entry: Entry, ticket: u64) -> Pending<'_> {
        Pending {
            slots: self,
            entry,
            ticket,
            done: false,
        }
    }

    /// Stores the answer of the lookup holding `ticket`, unless its marker
    /// was removed meanwhile.
    fn complete(&self, entry: &Entry, ticket: u64, answer: &Option<TokenRecord>) {
        let now = Instant::now();
        let slot = match answer {
            Some(record) => {
                let left = Timestamp::now().until(record.expires_at);
                let ttl = left.min(self.config.staleness);
                (!ttl.is_zero()).then(|| SlotState::Known {
                    record: record.clone(),
                    until: now + ttl,
                })
            }
            None => (!self.config.negative_ttl.is_zero()).then(|| SlotState::Unknown {
                until: now + self.config.negative_ttl,
            }),
        };
        let mut state = self.state();
        if !Self::holds(&state, entry, ticket) {
            return;
        }
        match slot {
            Some(slot) if state.active => {
                state.entries.insert(
                    entry.key,
                    Slot {
                        digest: entry.digest,
                        state: slot,
                    },
                );
            }
            _ => {
                state.entries.remove(&entry.key);
            }
        }
    }

    /// Whether `entry`'s marker is still that of the lookup holding `ticket`.
    fn holds(state: &State, entry: &Entry, ticket: u64) -> bool {
        matches!(
            state.entries.get(&entry.key),
            Some(Slot { digest, state: SlotState::Pending(own) })
                if *own == ticket && *digest == entry.digest
        )
    }

    /// Removes the marker of a lookup that failed or was cancelled.
    fn abandon(&self, entry: &Entry, ticket: u64) {
        let mut state = self.state();
        if Self::holds(&state, entry, ticket) {
            state.entries.remove(&entry.key);
        }
    }

    /// Drops the entries of `keys`.
    pub(super) fn invalidate(&self, keys: &[TrackedKey]) {
        let mut state = self.state();
        for key in keys {
            state.entries.remove(key);
        }
        drop(state);
        self.invalidated(u64::try_from(keys.len()).unwrap_or(u64::MAX));
    }

    /// Drops every entry (`FLUSHALL`, `FLUSHDB`).
    fn flush(&self) {
        self.clear();
        self.invalidated(1);
    }

    fn invalidated(&self, count: u64) {
        self.counters
            .invalidations
            .fetch_add(count, Ordering::Relaxed);
        metrics::invalidated(count);
    }

    /// A new tracking connection is being set up: stop answering from the
    /// cache and forget the previous connection.
    fn begin_connection(&self, epoch: Epoch) {
        let mut state = self.state();
        state.connection = epoch;
        state.connection_lost = false;
        state.active = false;
        state.entries.clear();
    }

    /// Tracking is on for `epoch`: start answering from an empty cache,
    /// unless its connection was lost already. Answers whether it did.
    fn activate(&self, epoch: Epoch) -> bool {
        let mut state = self.state();
        if state.connection != epoch || state.connection_lost {
            return false;
        }
        state.entries.clear();
        state.active = true;
        true
    }

    /// `epoch`'s connection is lost: clear and bypass the cache until
    /// tracking is back.
    fn deactivate(&self, epoch: Epoch) {
        let mut state = self.state();
        if state.connection != epoch {
            return;
        }
        state.connection_lost = true;
        state.active = false;
        state.entries.clear();
    }

    /// Drops every entry (they will be looked up again).
    pub(super) fn clear(&self) {
        self.state().entries.clear();
    }

    pub(super) fn is_active(&self) -> bool {
        self.state().active
    }

    pub(super) fn stats(&self) -> CacheStats {
        let (entries, active) = {
            let state = self.state();
            (state.entries.len(), state.active)
        };
        let counters = &self.counters;
        CacheStats {
            hits: counters.hits.load(Ordering::Relaxed),
            misses: counters.misses.load(Ordering::Relaxed),
            bypassed: counters.bypassed.load(Ordering::Relaxed),
            invalidations: counters.invalidations.load(Ordering::Relaxed),
            entries,
            active,
        }
    }
}

impl InvalidationSink for Slots {
    fn on_event(&self, event: Invalidation<'_>) {
        match event {
            Invalidation::Connecting(epoch) => self.begin_connection(epoch),
            Invalidation::Tracking(epoch) => {
                self.activate(epoch);
            }
            Invalidation::Keys(keys) => self.invalidate(keys),
            // Not a token key: a cache of tokens tracks none of these.
            Invalidation::Names(_) => {}
            Invalidation::Flushed => self.flush(),
            Invalidation::Lost(epoch) => self.deactivate(epoch),
        }
    }
}

/// A lookup's marker: filled by [`Pending::complete`], removed when the
/// lookup fails or its future is dropped (a timeout, a client gone).
pub(super) struct Pending<'a> {
    slots: &'a Slots,
    entry: Entry,
    ticket: u64,
    done: bool,
}

impl Pending<'_> {
    pub(super) fn complete(mut self, answer: &Option<TokenRecord>) {
        self.slots.complete(&self.entry, self.ticket, answer);
        self.done = true;
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.slots.abandon(&self.entry, self.ticket);
        }
    }
}

#[cfg(test)]
mod tests {
    use token_repository::Holder;
    use uuid::Uuid;

    use super::*;

    fn config() -> CacheConfig {
        CacheConfig::new()
            .staleness(Duration::from_secs(30))
            .negative_ttl(Duration::from_secs(1))
    }

    fn record() -> TokenRecord {
        let now = Timestamp::now();
        TokenRecord {
            id: Uuid::nil(),
            kind: TokenKind::Access,
            holder: Arc::new(Holder {
                subject: "s".into(),
                username: "u".into(),
                name: None,
                email: None,
                scopes: token_repository::Scopes::empty(),
                client_id: None,
            }),
            issued_at: now,
            expires_at: now.saturating_add(Duration::from_secs(600)),
            family: Uuid::nil(),
            audience: token_repository::Audience::unrestricted(),
        }
    }

    fn v1(digest: TokenDigest) -> Entry {
        Entry {
            key: TrackedKey::Token(digest),
            digest,
        }
    }

    /// An invalidation that arrives between the repository's answer and the
    /// insert wins: the stale answer is not stored.
    #[test]
    fn invalidation_during_a_lookup_prevents_the_insert() {
        let slots = Slots::new(config(), true);
        let family = Uuid::from_u128(7);
        let entry = Entry {
            key: TrackedKey::Session(family),
            digest: TokenDigest::of("t"),
        };
        let Begin::Miss(Some(ticket)) = slots.begin(&entry) else {
            panic!("first lookup must miss with a ticket");
        };
        slots.on_event(Invalidation::Keys(&[TrackedKey::Session(family)]));
        slots.complete(&entry, ticket, &Some(record()));
        assert!(slots.state().entries.is_empty(), "stale answer stored");
        assert!(matches!(slots.begin(&entry), Begin::Miss(Some(_))));
    }

    /// A session's slot answers only for the token it was filled for:
    /// another token naming the same session is looked up.
    #[test]
    fn a_session_slot_answers_for_its_own_token_only() {
        let slots = Slots::new(config(), true);
        let family = Uuid::from_u128(7);
        let own = Entry {
            key: TrackedKey::Session(family),
            digest: TokenDigest::of("own"),
        };
        let other = Entry {
            key: TrackedKey::Session(family),
            digest: TokenDigest::of("forged"),
        };
        let Begin::Miss(Some(ticket)) = slots.begin(&own) else {
            panic!("miss");
        };
        assert!(matches!(slots.begin(&other), Begin::Miss(None)));
        slots.complete(&own, ticket, &Some(record()));
        assert!(matches!(slots.begin(&own), Begin::Hit(Some(_))));
        assert!(matches!(slots.begin(&other), Begin::Miss(Some(_))));
    }

    /// A clear (reconnection, `FLUSHALL`) between answer and insert wins
    /// too, and a flush clears everything.
    #[test]
    fn clear_during_a_lookup_prevents_the_insert() {
        let slots = Slots::new(config(), true);
        let a = v1(TokenDigest::of("a"));
        let b = v1(TokenDigest::of("b"));
        let Begin::Miss(Some(ticket_a)) = slots.begin(&a) else {
            panic!("miss");
        };
        let Begin::Miss(Some(ticket_b)) = slots.begin(&b) else {
            panic!("miss");
        };
        slots.complete(&b, ticket_b, &Some(record()));
        slots.on_event(Invalidation::Flushed);
        slots.complete(&a, ticket_a, &Some(record()));
        assert!(slots.state().entries.is_empty());
        assert_eq!(slots.stats().invalidations, 1);
    }

    /// While the tracking connection is down lookups bypass the cache and
    /// nothing is stored; a lost connection clears it.
    #[test]
    fn inactive_cache_is_bypassed_and_cleared() {
        let slots = Slots::new(config(), false);
        let digest = v1(TokenDigest::of("t"));
        assert!(matches!(slots.begin(&digest), Begin::Miss(None)));
        let connection = Epoch(1);
        slots.on_event(Invalidation::Connecting(connection));
        assert!(slots.activate(connection));
        let Begin::Miss(Some(ticket)) = slots.begin(&digest) else {
            panic!("miss");
        };
        slots.complete(&digest, ticket, &Some(record()));
        assert!(matches!(slots.begin(&digest), Begin::Hit(Some(_))));
        slots.on_event(Invalidation::Lost(connection));
        assert!(slots.state().entries.is_empty());
        assert!(matches!(slots.begin(&digest), Begin::Miss(None)));
        // A connection lost before tracking was confirmed never activates,
        // and a stale connection's loss does not touch the current one.
        let next = Epoch(2);
        slots.on_event(Invalidation::Connecting(next));
        slots.on_event(Invalidation::Lost(next));
        assert!(!slots.activate(next));
        slots.on_event(Invalidation::Tracking(next));
        assert!(!slots.is_active());
        let last = Epoch(3);
        slots.on_event(Invalidation::Connecting(last));
        slots.on_event(Invalidation::Tracking(last));
        assert!(slots.is_active());
        slots.on_event(Invalidation::Lost(next));
        assert!(slots.state().active);
    }
}
