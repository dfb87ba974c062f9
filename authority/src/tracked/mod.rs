//! [`Tracked`]: verified client records, user records and registered
//! resources held in memory, kept exact by Redis client-side caching — what
//! lets `/oauth/introspect` authenticate its caller and name a token's
//! audience, and a refresh rotation check its user, without a round trip.
//!
//! The invalidations come from the repository's tracking task
//! ([`Invalidations::named`] on `P client:`, `P user:` and `P resources`: one RESP3
//! connection per master in `BCAST` mode, reconnection, epochs), the same
//! machinery the token cache uses for session keys. The rules:
//!
//! - **Only while tracking.** Nothing is answered from memory until
//!   tracking is on for the current connection attempt; `Connecting`,
//!   `Lost` and `Flushed` clear everything, so a push missed while the
//!   connection was down can never leave a stale record behind.
//! - **Pushes drop entries.** A pushed `P client:<name>` or `P user:<name>`
//!   drops the record stored under it; a pushed `P resources` drops every
//!   resource.
//! - **Own writes drop entries at once** ([`Tracked::forget_client`],
//!   [`Tracked::forget_user`], [`Tracked::forget_resources`], called by the
//!   stores after a write), so
//!   the replica that made an admin change never answers from the record
//!   before it, even before Redis's push arrives.
//! - **No stale inserts.** A reader takes a [`Ticket`] before it reads
//!   Redis and inserts with it; any invalidation, clear or epoch change in
//!   between (a generation counter) makes the insert a no-op.
//! - **Only verified clients enter**, so a caller cannot fill the cache
//!   with made-up ids; it is bounded anyway
//!   (`INTROSPECTION_CACHE_CLIENTS`). Verification itself happens on every
//!   call ([`crate::authenticate`]): the cache holds records, not verdicts.
//! - **Users enter only from a refresh rotation** (a live refresh token
//!   named them), bounded by `INTROSPECTION_CACHE_USERS` (0: none). Sign-in
//!   and every account change read Redis, never this cache.
//!
//! - `entries`: the bounded map of records by id and key name (no I/O).

mod entries;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use token_repository::redis::{Epoch, Invalidation, InvalidationSink, Invalidations, Subscription};
use token_repository::{KeyPrefix, RedisConfig, ResourceTag, ResourceUri, Scopes};

use self::entries::Entries;

/// The generation a reader saw before reading Redis; an insert with it is
/// kept only if nothing was invalidated since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

/// A registered resource as held: its URI and declared scopes.
pub type HeldResource = (ResourceUri, Scopes);

/// Client records (of type `C`, the accounts' `Client`), user records (of
/// type `U`, the accounts' `User`) and resources in memory, invalidated by
/// Redis. Shared (`Arc`) by the stores that use it.
pub struct Tracked<C, U> {
    state: Mutex<State<C, U>>,
    /// `P client:`
    client_prefix: Vec<u8>,
    /// `P user:`
    user_prefix: Vec<u8>,
    /// Whether users are held at all (fixed at construction, read without
    /// the lock on every rotation).
    holds_users: bool,
    /// `P resources`
    resources_key: Vec<u8>,
    /// Stops the tracking task when the cache is dropped.
    subscription: Mutex<Option<Subscription>>,
}

struct State<C, U> {
    /// The current connection attempt.
    connection: Epoch,
    /// Whether that attempt's connection was lost.
    connection_lost: bool,
    /// Whether entries are answered (tracking is on for `connection`).
    active: bool,
    /// Bumped by every invalidation, clear and epoch change.
    generation: u64,
    clients: Entries<C>,
    users: Entries<U>,
    resources: HashMap<ResourceTag, HeldResource>,
}

/// How many records of each kind a [`Tracked`] holds at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Verified clients (at least 1 is held).
    pub clients: usize,
    /// Users (0: none).
    pub users: usize,
}

impl<C: Send + Sync + 'static, U: Send + Sync + 'static> Tracked<C, U> {
    /// A cache for the keys of `prefix`, inactive until tracking.
    #[must_use]
    pub fn new(prefix: &KeyPrefix, capacity: Capacity) -> Self {
        Self {
            state: Mutex::new(State {
                connection: Epoch(0),
                connection_lost: false,
                active: false,
                generation: 0,
                clients: Entries::new(capacity.clients.max(1)),
                users: Entries::new(capacity.users),
                resources: HashMap::new(),
            }),
            client_prefix: prefix.client_tracking_prefix().into_bytes(),
            user_prefix: prefix.user_tracking_prefix().into_bytes(),
            holds_users: capacity.users > 0,
            resources_key: prefix.resources().into_bytes(),
            subscription: Mutex::new(None),
        }
    }

    /// A cache kept by tracking `redis`'s client, user and resource keys
    /// (a background task on the current runtime).
    ///
    /// # Errors
    ///
    /// An unusable Redis configuration, or no Tokio runtime.
    pub fn tracking(
        redis: &RedisConfig,
        capacity: Capacity,
    ) -> token_repository::Result<Arc<Self>> {
        let prefix = redis.key_prefix();
        let tracked = Arc::new(Self::new(prefix, capacity));
        let mut names = vec![prefix.client_tracking_prefix(), prefix.resources()];
        if capacity.users > 0 {
            names.push(prefix.user_tracking_prefix());
        }
        let invalidations = Invalidations::named(redis, names)?;
        let sink = WeakSink(Arc::downgrade(&tracked));
        let subscription = invalidations.subscribe(Arc::new(sink))?;
        *tracked
            .subscription
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(subscription);
        Ok(tracked)
    }

    fn state(&self) -> MutexGuard<'_, State<C, U>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops tracking (the task ends, the cache is cleared and inactive),
    /// as dropping the last `Arc` does.
    pub fn stop(&self) {
        drop(
            self.subscription
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let mut state = self.state();
        state.active = false;
        state.clear();
    }

    /// A ticket for a read of Redis, when entries are answered now.
    #[must_use]
    pub fn ticket(&self) -> Option<Ticket> {
        let state = self.state();
        state.active.then_some(Ticket(state.generation))
    }

    /// Whether entries are answered now.
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.state().active
    }

    /// The verified client `id`, when held and the cache is active.
    #[must_use]
    pub fn client(&self, id: &str) -> Option<Arc<C>> {
        self.find(&Self::CLIENTS, id)
    }

    /// Holds client `id`, just verified, stored under key `key` — unless
    /// anything was invalidated since `ticket`.
    pub fn remember_client(&self, ticket: Ticket, id: &str, key: &str, client: C) {
        self.keep(ticket, &Self::CLIENTS, id, key, Arc::new(client));
    }

    /// Drops the client `id` (this replica changed it).
    pub fn forget_client(&self, id: &str) {
        self.drop_id(&Self::CLIENTS, id);
    }

    /// Whether users are held at all (`users` capacity above 0).
    #[must_use]
    pub fn holds_users(&self) -> bool {
        self.holds_users
    }

    /// The user `username`, when held and the cache is active.
    #[must_use]
    pub fn user(&self, username: &str) -> Option<Arc<U>> {
        self.find(&Self::USERS, username)
    }

    /// Holds user `username`, just read from key `key` — unless anything
    /// was invalidated since `ticket`.
    pub fn remember_user(&self, ticket: Ticket, username: &str, key: &str, user: Arc<U>) {
        self.keep(ticket, &Self::USERS, username, key, user);
    }

    /// Drops the user `username` (this replica changed it).
    pub fn forget_user(&self, username: &str) {
        self.drop_id(&Self::USERS, username);
    }

    /// The record `id` of `map`, when held and the cache is active; the
    /// lookup is counted.
    fn find<R>(&self, map: &RecordMap<C, U, R>, id: &str) -> Option<Arc<R>> {
        let mut state = self.state();
        let found = if state.active {
            (map.entries)(&mut state).get(id).cloned()
        } else {
            None
        };
        drop(state);
        count_lookup(map.kind, found.is_some());
        found
    }

    /// Holds `record` as `id` in `map` unless anything was invalidated
    /// since `ticket`.
    fn keep<R>(
        &self,
        ticket: Ticket,
        map: &RecordMap<C, U, R>,
        id: &str,
        key: &str,
        record: Arc<R>,
    ) {
        let mut state = self.state();
        if state.active && state.generation == ticket.0 {
            let entries = (map.entries)(&mut state);
            entries.insert(id, key.as_bytes().to_vec(), record);
            (map.gauge)(entries.len());
        }
    }

    /// Drops `id` from `map` and makes every ticket taken before stale.
    fn drop_id<R>(&self, map: &RecordMap<C, U, R>, id: &str) {
        let mut state = self.state();
        state.generation += 1;
        let entries = (map.entries)(&mut state);
        entries.remove_id(id);
        (map.gauge)(entries.len());
    }

    /// The resources of `tags`, when every one is held and the cache is
    /// active.
    #[must_use]
    pub fn resources(&self, tags: &[ResourceTag]) -> Option<Vec<HeldResource>> {
        let state = self.state();
        let found = if state.active {
            tags.iter()
                .map(|tag| state.resources.get(tag).cloned())
                .collect::<Option<Vec<_>>>()
        } else {
            None
        };
        drop(state);
        count_lookup(LookupKind::Resource, found.is_some());
        found
    }

    /// Holds `resources`, just read — unless anything was invalidated since
    /// `ticket`.
    pub fn remember_resources(
        &self,
        ticket: Ticket,
        resources: impl IntoIterator<Item = HeldResource>,
    ) {
        let mut state = self.state();
        if state.active && state.generation == ticket.0 {
            for (uri, scopes) in resources {
                state.resources.insert(uri.tag(), (uri, scopes));
            }
        }
    }

    /// Drops every resource (this replica changed the registry).
    pub fn forget_resources(&self) {
        let mut state = self.state();
        state.generation += 1;
        state.resources.clear();
    }

    /// How many clients are held (tests, metrics).
    #[must_use]
    pub fn clients_held(&self) -> usize {
        self.state().clients.len()
    }

    /// How many users are held (tests, metrics).
    #[must_use]
    pub fn users_held(&self) -> usize {
        self.state().users.len()
    }

    fn pushed(&self, names: &[Vec<u8>]) {
        let mut state = self.state();
        state.generation += 1;
        for name in names {
            if *name == self.resources_key {
                state.resources.clear();
            } else if name.starts_with(&self.client_prefix) {
                state.clients.remove_key(name);
            } else if name.starts_with(&self.user_prefix) {
                state.users.remove_key(name);
            }
        }
        clients_gauge(state.clients.len());
        users_gauge(state.users.len());
    }
}

/// One record map of a [`State`]: where it is, the name its lookups are
/// counted under, and the gauge of its size.
struct RecordMap<C, U, R> {
    entries: fn(&mut State<C, U>) -> &mut Entries<R>,
    kind: LookupKind,
    gauge: fn(usize),
}

impl<C: Send + Sync + 'static, U: Send + Sync + 'static> Tracked<C, U> {
    const CLIENTS: RecordMap<C, U, C> = RecordMap {
        entries: |state| &mut state.clients,
        kind: LookupKind::Client,
        gauge: clients_gauge,
    };
    const USERS: RecordMap<C, U, U> = RecordMap {
        entries: |state| &mut state.users,
        kind: LookupKind::User,
        gauge: users_gauge,
    };
}

impl<C, U> State<C, U> {
    fn clear(&mut self) {
        self.generation += 1;
        self.clients.clear();
        self.users.clear();
        self.resources.clear();
        clients_gauge(0);
        users_gauge(0);
    }
}

impl<C: Send + Sync + 'static, U: Send + Sync + 'static> InvalidationSink for Tracked<C, U> {
    fn on_event(&self, event: Invalidation<'_>) {
        match event {
            Invalidation::Connecting(epoch) => {
                let mut state = self.state();
                state.connection = epoch;
                state.connection_lost = false;
                state.active = false;
                state.clear();
            }
            Invalidation::Tracking(epoch) => {
                let mut state = self.state();
                if state.connection == epoch && !state.connection_lost {
                    state.clear();
                    state.active = true;
                }
            }
            Invalidation::Names(names) => self.pushed(names),
            // Token keys are the token cache's; none are tracked here.
            Invalidation::Keys(_) => {}
            Invalidation::Flushed => self.state().clear(),
            Invalidation::Lost(epoch) => {
                let mut state = self.state();
                if state.connection == epoch {
                    state.connection_lost = true;
                    state.active = false;
                    state.clear();
                }
            }
        }
    }
}

/// The task's handle on the cache: weak, so that dropping the cache stops
/// the task (its subscription lives in the cache).
struct WeakSink<C, U>(Weak<Tracked<C, U>>);

impl<C: Send + Sync + 'static, U: Send + Sync + 'static> InvalidationSink for WeakSink<C, U> {
    fn on_event(&self, event: Invalidation<'_>) {
        if let Some(tracked) = self.0.upgrade() {
            tracked.on_event(event);
        }
    }
}

impl<C, U> fmt::Debug for Tracked<C, U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Tracked")
            .field("active", &state.active)
            .field("clients", &state.clients.len())
            .field("users", &state.users.len())
            .field("resources", &state.resources.len())
            .finish_non_exhaustive()
    }
}

/// What a lookup in memory was for: the `kind` label of
/// `authority_introspection_cache_lookups_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LookupKind {
    /// A verified client.
    Client,
    /// A user held for refresh rotations.
    User,
    /// Resources (audiences).
    Resource,
}

/// Lookups in memory by [`LookupKind`], then miss (0) or hit (1):
/// process-wide, like the recorder they are published to. Counted here
/// and published by [`crate::metrics`] at each scrape instead of through
/// `counter!`, whose registry lookup (with labels allocated, as the kind
/// was not a literal) cost more than the lookup it counted.
static LOOKUPS: [[AtomicU64; 2]; 3] = [const { [const { AtomicU64::new(0) }; 2] }; 3];

/// One lookup in memory.
pub(crate) fn count_lookup(kind: LookupKind, hit: bool) {
    LOOKUPS[kind as usize][usize::from(hit)].fetch_add(1, Ordering::Relaxed);
}

/// The lookups so far: each kind's label with its misses and hits.
pub(crate) fn lookups() -> [(&'static str, [u64; 2]); 3] {
    let counts = |kind: LookupKind| {
        LOOKUPS[kind as usize]
            .each_ref()
            .map(|count| count.load(Ordering::Relaxed))
    };
    [
        ("client", counts(LookupKind::Client)),
        ("user", counts(LookupKind::User)),
        ("resource", counts(LookupKind::Resource)),
    ]
}

/// The verified clients held now.
fn clients_gauge(count: usize) {
    #[allow(clippy::cast_precision_loss)]
    metrics::gauge!("authority_introspection_cache_clients").set(count as f64);
}

/// The users held now.
fn users_gauge(count: usize) {
    #[allow(clippy::cast_precision_loss)]
    metrics::gauge!("authority_introspection_cache_users").set(count as f64);
}

#[cfg(test)]
mod tests;
