//! [`TokenCache`]: an optional local cache of lookups, with revocations
//! pushed by Redis.
//!
//! See [`TokenCache`] for how it stays correct.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::{
    AsyncConnectionConfig, ConnectionInfo, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind,
    Value,
};
use token_repository::redis::{Topology, node_info, redact_url, single_client};
use token_repository::{
    Error, KeyPrefix, RedisConfig, Result, Timestamp, Token, TokenDigest, TokenReader,
};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;
use uuid::Uuid;

use crate::principal::Principal;

/// How long a cache may trust its entries, and how many it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    staleness: Duration,
    negative_ttl: Duration,
    capacity: usize,
    health_interval: Duration,
}

impl CacheConfig {
    /// Default [`staleness`](Self::staleness): 30 s.
    pub const DEFAULT_STALENESS: Duration = Duration::from_secs(30);
    /// Default [`negative_ttl`](Self::negative_ttl): 1 s.
    pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(1);
    /// Default [`capacity`](Self::capacity): 100 000 entries.
    pub const DEFAULT_CAPACITY: usize = 100_000;
    /// Default [`health_interval`](Self::health_interval): 1 s.
    pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(1);

    /// The defaults.
    #[must_use]
    pub fn new() -> Self {
        Self {
            staleness: Self::DEFAULT_STALENESS,
            negative_ttl: Self::DEFAULT_NEGATIVE_TTL,
            capacity: Self::DEFAULT_CAPACITY,
            health_interval: Self::DEFAULT_HEALTH_INTERVAL,
        }
    }

    /// The longest a valid token is answered from the cache without asking
    /// Redis: the bound on how late a revocation takes effect if its push
    /// is lost. Entries never outlive the token's expiry either.
    #[must_use]
    pub fn staleness(mut self, staleness: Duration) -> Self {
        self.staleness = staleness;
        self
    }

    /// How long an unknown, expired or revoked token is answered from the
    /// cache (zero: never). Short: it only absorbs floods of one bad token.
    #[must_use]
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// The most entries kept (at least 1).
    #[must_use]
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// How often the tracking connection is checked with a `PING`, and how
    /// long the `PING` (and a reconnection) may take. A connection that
    /// fails the check is treated as lost: the cache is cleared and bypassed
    /// until tracking is back.
    #[must_use]
    pub fn health_interval(mut self, interval: Duration) -> Self {
        self.health_interval = interval.max(Duration::from_millis(10));
        self
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// Counters of a [`TokenCache`], for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that went to the repository while the cache was active.
    pub misses: u64,
    /// Lookups that went to the repository because the cache was inactive
    /// (tracking connection down).
    pub bypassed: u64,
    /// Keys invalidated by pushes from Redis.
    pub invalidations: u64,
    /// Entries held now (pending lookups included).
    pub entries: usize,
    /// Whether the cache is answering lookups now.
    pub active: bool,
}

/// A local cache of token lookups, shared by every clone. Give it to
/// [`TokenAuthLayer::with_cache`](crate::TokenAuthLayer::with_cache).
///
/// # How it stays correct
///
/// - **Pushed invalidations.** [`TokenCache::tracking`] keeps one dedicated
///   RESP3 connection in Redis's client-side-caching broadcast mode
///   (`CLIENT TRACKING ON BCAST PREFIX <prefix>s: PREFIX <prefix>tok:`).
///   Whenever any client changes or deletes a session key (or, for tokens
///   issued before the bounded schema, a token key) — the authority
///   revoking or rotating, Redis expiring one — Redis pushes the key's name
///   to every tracking service, and the entries of that session (or
///   digest) are dropped. The authority does
///   nothing special: a revocation is a `DEL`. Lookups themselves still go
///   through the [`TokenReader`] (its pool, its timeouts).
/// - **Bounded staleness.** A positive entry lives at most
///   [`CacheConfig::staleness`] and never past the token's own expiry; a
///   negative entry (unknown, expired or revoked token) lives
///   [`CacheConfig::negative_ttl`], enough to blunt a flood of one bad token.
///   A lost push therefore costs at most the staleness bound.
/// - **No invalidations, no cache.** Until the tracking connection is up the
///   cache is bypassed. When it drops (Redis restarted, network cut, a
///   health-check `PING` unanswered) every entry is cleared and the cache is
///   bypassed again until tracking is re-established, because pushes sent
///   meanwhile are lost.
/// - **No stale inserts.** A miss first leaves a *pending* marker with a
///   ticket, then asks the reader; the answer is stored only if the marker
///   with the same ticket is still there. An invalidation (or a clear) that
///   lands between the read and the insert removes the marker, so a value
///   read before a revocation is never stored after it.
/// - **Bounded size.** At most [`CacheConfig::capacity`] entries; expired
///   ones are swept when the cache is full, then an arbitrary entry makes
///   room.
///
/// Broadcast mode was chosen over the default tracking mode and over a
/// revocation channel; the crate README records the measurement.
#[derive(Clone)]
pub struct TokenCache {
    shared: Arc<Shared>,
    /// Stops the tracking task when the last clone is dropped.
    tracker: Option<Arc<StopOnDrop>>,
}

impl TokenCache {
    /// A cache kept correct by Redis: it connects to `redis_url` (the same
    /// URL and user as the reader; RESP3 is switched on here) in a
    /// background task, enables broadcast tracking of `prefix`'s token keys,
    /// and answers lookups only while that connection is up. It reconnects
    /// by itself, with backoff.
    ///
    /// The Redis user needs `+client|tracking` (see the README's ACL).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an unparseable URL, or when called outside a
    /// Tokio runtime (the task needs one).
    pub fn tracking(redis_url: &str, prefix: &KeyPrefix, config: CacheConfig) -> Result<Self> {
        Self::tracking_for(&RedisConfig::new(redis_url).prefix(prefix.clone()), config)
    }

    /// [`Self::tracking`] for any topology of `redis` (its key prefix
    /// included): on a Redis Cluster the cache tracks every master (each
    /// pushes the changes of its own slots); behind Sentinel it tracks the
    /// current master and follows failovers (the cache is cleared whenever
    /// the tracking connection changes).
    ///
    /// # Errors
    ///
    /// As [`Self::tracking`].
    pub fn tracking_for(redis: &RedisConfig, config: CacheConfig) -> Result<Self> {
        let target = Target::new(redis.topology(), redis.tls_certificates())?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Config("TokenCache::tracking must be called within a Tokio runtime".into())
        })?;
        let mut shared = Shared::new(config, false);
        shared.prefix = redis.key_prefix().clone();
        let shared = Arc::new(shared);
        let (stop, stopped) = oneshot::channel();
        let tracker = Tracker {
            shared: Arc::clone(&shared),
            url: target.describe(redis.topology()),
            target,
            prefixes: [
                redis.key_prefix().session_tracking_prefix(),
                redis.key_prefix().token_tracking_prefix(),
            ],
        };
        runtime.spawn(tracker.run(stopped));
        Ok(Self {
            shared,
            tracker: Some(Arc::new(StopOnDrop(Some(stop)))),
        })
    }

    /// A cache without any invalidation: a revoked token keeps working
    /// until its entry is older than [`CacheConfig::staleness`]. For tests,
    /// and for deployments that accept that bound.
    #[must_use]
    pub fn local(config: CacheConfig) -> Self {
        Self {
            shared: Arc::new(Shared::new(config, true)),
            tracker: None,
        }
    }

    /// The principal for `token`, from the cache or from `reader`.
    ///
    /// # Errors
    ///
    /// The reader's errors (nothing is cached then).
    pub(crate) async fn lookup(
        &self,
        reader: &dyn TokenReader,
        token: &Token,
    ) -> Result<Option<Principal>> {
        let entry = Entry::of(token);
        let ticket = match self.shared.begin(&entry) {
            Begin::Hit(answer) => return Ok(answer),
            Begin::Miss(ticket) => ticket,
        };
        let pending = ticket.map(|ticket| Pending {
            shared: &self.shared,
            entry,
            ticket,
            done: false,
        });
        let answer = reader.lookup(token).await?.map(Principal::from);
        if let Some(pending) = pending {
            pending.complete(&answer);
        }
        Ok(answer)
    }

    /// Drops every entry (they will be looked up again).
    pub fn clear(&self) {
        self.shared.state().entries.clear();
    }

    /// Whether lookups are answered from the cache now (for a tracking
    /// cache: whether its connection is up and tracking).
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.shared.state().active
    }

    /// The counters so far.
    #[must_use]
    pub fn stats(&self) -> CacheStats {
        let (entries, active) = {
            let state = self.shared.state();
            (state.entries.len(), state.active)
        };
        let counters = &self.shared.counters;
        CacheStats {
            hits: counters.hits.load(Ordering::Relaxed),
            misses: counters.misses.load(Ordering::Relaxed),
            bypassed: counters.bypassed.load(Ordering::Relaxed),
            invalidations: counters.invalidations.load(Ordering::Relaxed),
            entries,
            active,
        }
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &CacheConfig {
        &self.shared.config
    }
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("config", &self.shared.config)
            .field("tracking", &self.tracker.is_some())
            .field("stats", &self.stats())
            .finish()
    }
}

/// Closes the tracking task's stop channel when dropped.
struct StopOnDrop(Option<oneshot::Sender<()>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            let _ = stop.send(());
        }
    }
}

/// What the cache keys a token's answer by: what invalidation pushes name.
/// A token issued today is cached under its session (one Redis key per
/// session); one from before the bounded schema under its digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum CacheKey {
    Session(Uuid),
    Token(TokenDigest),
}

/// One lookup: where it is cached and which token it is for (a session's
/// slot answers only for the token it was filled for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    key: CacheKey,
    digest: TokenDigest,
}

impl Entry {
    fn of(token: &Token) -> Self {
        let digest = *token.digest();
        Self {
            key: token
                .family()
                .map_or(CacheKey::Token(digest), CacheKey::Session),
            digest,
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
enum SlotState {
    /// A lookup is under way; only the holder of this ticket may fill it.
    Pending(u64),
    /// A live token, trusted until `until`.
    Known {
        principal: Principal,
        until: Instant,
    },
    /// An unknown, expired or revoked token, trusted until `until`.
    Unknown { until: Instant },
}

#[derive(Debug)]
struct State {
    entries: HashMap<CacheKey, Slot>,
    /// Whether lookups may be answered (and stored).
    active: bool,
    next_ticket: u64,
    /// Which tracking connection is current, and whether it has been lost.
    connection: u64,
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

#[derive(Debug)]
struct Shared {
    config: CacheConfig,
    state: Mutex<State>,
    counters: Counters,
    /// The key prefix whose session and token keys invalidations name.
    prefix: KeyPrefix,
}

enum Begin {
    /// The cached answer.
    Hit(Option<Principal>),
    /// Ask the repository; with a ticket when the answer may be stored.
    Miss(Option<u64>),
}

/// How often a full cache may sweep its expired entries.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

impl Shared {
    fn new(config: CacheConfig, active: bool) -> Self {
        Self {
            config,
            state: Mutex::new(State {
                entries: HashMap::new(),
                active,
                next_ticket: 0,
                connection: 0,
                connection_lost: false,
                last_sweep: Instant::now(),
            }),
            counters: Counters::default(),
            prefix: KeyPrefix::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every critical section is a few infallible map operations, so a
        // poisoned lock still guards consistent data.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn begin(&self, entry: &Entry) -> Begin {
        let now = Instant::now();
        let mut state = self.state();
        if !state.active {
            Self::count(&self.counters.bypassed);
            crate::metrics::cache("bypass");
            return Begin::Miss(None);
        }
        let slot = state.entries.get(&entry.key);
        let ticket = match slot.map(|slot| (slot.digest == entry.digest, &slot.state)) {
            Some((true, SlotState::Known { principal, until }))
                if now < *until && principal.is_live_at(Timestamp::now()) =>
            {
                Self::count(&self.counters.hits);
                crate::metrics::cache("hit");
                return Begin::Hit(Some(principal.clone()));
            }
            Some((true, SlotState::Unknown { until })) if now < *until => {
                Self::count(&self.counters.hits);
                crate::metrics::cache("hit");
                return Begin::Hit(None);
            }
            // Join the lookup under way: any invalidation since it began
            // would have removed its marker.
            Some((true, SlotState::Pending(ticket))) => *ticket,
            // Another token of the same session is being looked up: ask
            // without disturbing it.
            Some((false, SlotState::Pending(_))) => {
                Self::count(&self.counters.misses);
                crate::metrics::cache("miss");
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
        crate::metrics::cache("miss");
        Begin::Miss(Some(ticket))
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

    /// Stores the answer of the lookup holding `ticket`, unless its marker
    /// was removed meanwhile.
    fn complete(&self, entry: &Entry, ticket: u64, answer: &Option<Principal>) {
        let now = Instant::now();
        let slot = match answer {
            Some(principal) => {
                let left = Timestamp::now().until(principal.expires_at);
                let ttl = left.min(self.config.staleness);
                (!ttl.is_zero()).then(|| SlotState::Known {
                    principal: principal.clone(),
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

    /// Drops the entries of the session and token keys in an `invalidate`
    /// push; a nil payload (`FLUSHALL`, `FLUSHDB`) drops everything.
    fn invalidate(&self, data: &[Value]) {
        let mut digests = Vec::new();
        let mut everything = false;
        for value in data {
            match value {
                Value::Array(keys) | Value::Set(keys) => {
                    digests.extend(keys.iter().filter_map(|key| self.key_of(key)));
                }
                Value::Nil => everything = true,
                _ => {}
            }
        }
        let mut state = self.state();
        if everything {
            state.entries.clear();
        }
        for digest in &digests {
            state.entries.remove(digest);
        }
        drop(state);
        let invalidated = if everything {
            1
        } else {
            u64::try_from(digests.len()).unwrap_or(u64::MAX)
        };
        self.counters
            .invalidations
            .fetch_add(invalidated, Ordering::Relaxed);
        crate::metrics::invalidated(invalidated);
    }

    /// A new tracking connection is being set up: stop answering from the
    /// cache and forget the previous connection.
    fn begin_connection(&self) -> u64 {
        let mut state = self.state();
        state.connection += 1;
        state.connection_lost = false;
        state.active = false;
        state.entries.clear();
        state.connection
    }

    /// Tracking is on for `connection`: start answering from an empty
    /// cache, unless the connection was lost already. Answers whether it
    /// did.
    fn activate(&self, connection: u64) -> bool {
        let mut state = self.state();
        if state.connection != connection || state.connection_lost {
            return false;
        }
        state.entries.clear();
        state.active = true;
        true
    }

    /// `connection` is lost: clear and bypass the cache until tracking is
    /// back.
    fn deactivate(&self, connection: u64) {
        let mut state = self.state();
        if state.connection != connection {
            return;
        }
        state.connection_lost = true;
        state.active = false;
        state.entries.clear();
    }
}

impl Shared {
    /// The cache key an invalidated Redis key stands for: the session id at
    /// the end of a session key (`<prefix>s:{<tag>}:<16 bytes>`), or the
    /// digest at the end of a format-1 token key
    /// (`<prefix>tok:{<tag>}:<32 bytes>`).
    fn key_of(&self, key: &Value) -> Option<CacheKey> {
        let bytes = match key {
            Value::BulkString(bytes) => bytes.as_slice(),
            Value::SimpleString(text) => text.as_bytes(),
            _ => return None,
        };
        if bytes.starts_with(self.prefix.session_tracking_prefix().as_bytes()) {
            let start = bytes.len().checked_sub(16)?;
            return Uuid::from_slice(&bytes[start..])
                .ok()
                .map(CacheKey::Session);
        }
        if bytes.starts_with(self.prefix.token_tracking_prefix().as_bytes()) {
            let start = bytes.len().checked_sub(32)?;
            let mut digest = [0_u8; 32];
            digest.copy_from_slice(&bytes[start..]);
            return Some(CacheKey::Token(TokenDigest::from_bytes(digest)));
        }
        None
    }
}

/// A lookup's marker: filled by [`Pending::complete`], removed when the
/// lookup fails or its future is dropped (a timeout, a client gone).
struct Pending<'a> {
    shared: &'a Shared,
    entry: Entry,
    ticket: u64,
    done: bool,
}

impl Pending<'_> {
    fn complete(mut self, answer: &Option<Principal>) {
        self.shared.complete(&self.entry, self.ticket, answer);
        self.done = true;
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.shared.abandon(&self.entry, self.ticket);
        }
    }
}

/// Shortest and longest wait between reconnection attempts.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Where the tracking connections go.
enum Target {
    /// One server.
    Single(redis::Client),
    /// Every master of a Redis Cluster, found through these seeds.
    Cluster(Vec<ConnectionInfo>),
    /// The current master behind Sentinel.
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

/// `info` speaking RESP3, which carries the invalidation pushes.
fn resp3(info: ConnectionInfo) -> ConnectionInfo {
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3)
        .set_skip_set_lib_name();
    info.set_redis_settings(settings)
}

fn invalid(error: &redis::RedisError) -> Error {
    Error::Config(format!("invalid Redis configuration: {error}"))
}

impl Target {
    fn new(topology: &Topology, tls: Option<&redis::TlsCertificates>) -> Result<Self> {
        if tls.is_some() && !matches!(topology, Topology::Single { .. }) {
            return Err(Error::Config(
                "REDIS_CA_FILE / REDIS_CLIENT_CERT_FILE are supported with REDIS_URL only".into(),
            ));
        }
        Ok(match topology {
            Topology::Single { url } => {
                let invalid_url =
                    |error: redis::RedisError| Error::Config(format!("invalid Redis URL: {error}"));
                // The client's connection info carries the parsed TLS material.
                let info = single_client(url, tls)?.get_connection_info().clone();
                Self::Single(redis::Client::open(resp3(info)).map_err(invalid_url)?)
            }
            Topology::Cluster { urls } => Self::Cluster(
                urls.iter()
                    .map(|url| url.as_str().into_connection_info().map(resp3))
                    .collect::<redis::RedisResult<_>>()
                    .map_err(|error| invalid(&error))?,
            ),
            Topology::Sentinel {
                urls,
                master,
                username,
                password,
            } => {
                let node = node_info(
                    username.as_ref(),
                    password.as_ref(),
                    redis::RedisConnectionInfo::default()
                        .set_protocol(ProtocolVersion::RESP3)
                        .set_skip_set_lib_name(),
                );
                let client = SentinelClient::build(
                    urls.clone(),
                    master.clone(),
                    Some(node),
                    SentinelServerType::Master,
                )
                .map_err(|error| invalid(&error))?;
                Self::Sentinel(tokio::sync::Mutex::new(client))
            }
        })
    }

    /// For logs, without passwords.
    fn describe(&self, topology: &Topology) -> String {
        match topology {
            Topology::Single { url } => redact_url(url),
            Topology::Cluster { urls } => format!(
                "cluster via {}",
                redact_url(urls.first().map_or("", String::as_str))
            ),
            Topology::Sentinel { master, .. } => format!("sentinel master {master}"),
        }
    }

    /// Clients for every server to track: the one server, the current
    /// master behind Sentinel, or every master of the cluster.
    async fn clients(&self, timeout: Duration) -> redis::RedisResult<Vec<redis::Client>> {
        match self {
            Self::Single(client) => Ok(vec![client.clone()]),
            Self::Sentinel(sentinel) => Ok(vec![sentinel.lock().await.async_get_client().await?]),
            Self::Cluster(seeds) => {
                let mut last_error = None;
                for seed in seeds {
                    match cluster_masters(seed, timeout).await {
                        Ok(masters) => return Ok(masters),
                        Err(error) => last_error = Some(error),
                    }
                }
                Err(last_error.unwrap_or_else(|| {
                    redis::RedisError::from((redis::ErrorKind::Client, "no cluster seed given"))
                }))
            }
        }
    }
}

/// Clients for the masters a cluster node lists (`CLUSTER NODES`), with the
/// seed's credentials.
async fn cluster_masters(
    seed: &ConnectionInfo,
    timeout: Duration,
) -> redis::RedisResult<Vec<redis::Client>> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let mut connection = redis::Client::open(seed.clone())?
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut connection)
        .await?;
    let mut masters = Vec::new();
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(address), Some(flags)) = (fields.get(1), fields.get(2)) else {
            continue;
        };
        if !flags.split(',').any(|flag| flag == "master")
            || flags.contains("fail")
            || flags.contains("noaddr")
        {
            continue;
        }
        let host_port = address.split(['@', ',']).next().unwrap_or_default();
        let Some((host, port)) = host_port.rsplit_once(':') else {
            continue;
        };
        let Ok(port) = port.parse() else { continue };
        let info = seed
            .clone()
            .set_addr(redis::ConnectionAddr::Tcp(host.to_owned(), port));
        masters.push(redis::Client::open(info)?);
    }
    if masters.is_empty() {
        return Err(redis::RedisError::from((
            redis::ErrorKind::Client,
            "the cluster lists no master",
        )));
    }
    Ok(masters)
}

/// The background task that keeps the tracking connection(s).
struct Tracker {
    shared: Arc<Shared>,
    target: Target,
    /// `<prefix>s:` and `<prefix>tok:`
    prefixes: [String; 2],
    /// For logs, without the password.
    url: String,
}

impl Tracker {
    async fn run(self, mut stop: oneshot::Receiver<()>) {
        let mut backoff = MIN_BACKOFF;
        let mut reported = false;
        loop {
            let connection = self.shared.begin_connection();
            let lost = Arc::new(Notify::new());
            let connected = tokio::select! {
                _ = &mut stop => return,
                connected = self.connect(connection, &lost) => connected,
            };
            match connected {
                Ok(mut connections) if self.shared.activate(connection) => {
                    tracing::info!(url = %self.url, prefixes = ?self.prefixes, "token cache: tracking invalidations");
                    backoff = MIN_BACKOFF;
                    reported = false;
                    let reason = tokio::select! {
                        _ = &mut stop => return,
                        reason = self.supervise(&mut connections, &lost) => reason,
                    };
                    self.shared.deactivate(connection);
                    tracing::warn!(url = %self.url, %reason, "token cache: tracking connection lost; cache cleared and bypassed until it is back");
                }
                Ok(_) => self.shared.deactivate(connection),
                Err(error) => {
                    self.shared.deactivate(connection);
                    if !reported {
                        tracing::warn!(url = %self.url, %error, "token cache: cannot enable tracking; cache bypassed");
                        reported = true;
                    }
                }
            }
            tokio::select! {
                _ = &mut stop => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Opens RESP3 connections whose pushes feed the cache, one per server
    /// to track, and enables broadcast tracking on each.
    async fn connect(
        &self,
        connection: u64,
        lost: &Arc<Notify>,
    ) -> redis::RedisResult<Vec<MultiplexedConnection>> {
        let timeout = self.shared.config.health_interval;
        let mut connections = Vec::new();
        for client in self.target.clients(timeout).await? {
            let shared = Arc::clone(&self.shared);
            let lost = Arc::clone(lost);
            let on_push = move |push: PushInfo| -> std::result::Result<(), Infallible> {
                match push.kind {
                    PushKind::Invalidate => shared.invalidate(&push.data),
                    PushKind::Disconnection => {
                        shared.deactivate(connection);
                        lost.notify_one();
                    }
                    _ => {}
                }
                Ok(())
            };
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_push_sender(on_push);
            let mut redis = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            redis::cmd("CLIENT")
                .arg("TRACKING")
                .arg("ON")
                .arg("BCAST")
                .arg("PREFIX")
                .arg(&self.prefixes[0])
                .arg("PREFIX")
                .arg(&self.prefixes[1])
                .exec_async(&mut redis)
                .await?;
            connections.push(redis);
        }
        Ok(connections)
    }

    /// Waits until the connection is lost or fails a health check; answers
    /// why.
    async fn supervise(&self, connections: &mut [MultiplexedConnection], lost: &Notify) -> String {
        let interval = self.shared.config.health_interval;
        loop {
            tokio::select! {
                () = lost.notified() => return "disconnected".to_owned(),
                () = tokio::time::sleep(interval) => {
                    for redis in connections.iter_mut() {
                        let command = redis::cmd("PING");
                        let ping = command.query_async::<Value>(redis);
                        match tokio::time::timeout(interval, ping).await {
                            Ok(Ok(_)) => {}
                            Ok(Err(error)) => return format!("health check failed: {error}"),
                            Err(_) => return format!("health check unanswered within {interval:?}"),
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use async_trait::async_trait;
    use token_repository::{Grant, MemoryStore, Scopes, TokenRecord, TokenWriter};

    use super::*;

    /// A reader that counts lookups and answers from a memory store.
    #[derive(Debug, Default)]
    struct Counting {
        store: MemoryStore,
        lookups: AtomicUsize,
    }

    #[async_trait]
    impl TokenReader for Counting {
        async fn lookup(&self, token: &Token) -> Result<Option<TokenRecord>> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            self.store.lookup(token).await
        }

        async fn ping(&self) -> Result<()> {
            Ok(())
        }
    }

    impl Counting {
        fn lookups(&self) -> usize {
            self.lookups.load(Ordering::SeqCst)
        }

        async fn issue(&self, ttl: Duration) -> Token {
            let minted = Grant {
                subject: "user-1".into(),
                username: "alice".into(),
                name: None,
                email: None,
                scopes: Scopes::parse("read").expect("scopes"),
                client_id: None,
                access_ttl: ttl,
                refresh_ttl: None,
            }
            .mint()
            .expect("mint");
            self.store.issue(&minted, None).await.expect("issue");
            minted.access.token
        }
    }

    fn config() -> CacheConfig {
        CacheConfig::new()
            .staleness(Duration::from_secs(30))
            .negative_ttl(Duration::from_secs(1))
    }

    /// A second lookup of a live token is answered without the reader.
    #[tokio::test(start_paused = true)]
    async fn hits_spare_the_reader() {
        let reader = Counting::default();
        let token = reader.issue(Duration::from_secs(600)).await;
        let cache = TokenCache::local(config());
        let first = cache.lookup(&reader, &token).await.expect("lookup");
        let second = cache.lookup(&reader, &token).await.expect("lookup");
        assert_eq!(first, second);
        assert_eq!(first.expect("live").username, "alice");
        assert_eq!(reader.lookups(), 1);
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses), (1, 1));
    }

    /// Positive entries expire after the staleness bound: a revocation that
    /// was never pushed takes effect then.
    #[tokio::test(start_paused = true)]
    async fn positive_entries_expire_after_the_staleness_bound() {
        let reader = Counting::default();
        let token = reader.issue(Duration::from_secs(600)).await;
        let cache = TokenCache::local(config().staleness(Duration::from_secs(5)));
        assert!(
            cache
                .lookup(&reader, &token)
                .await
                .expect("lookup")
                .is_some()
        );
        reader.store.revoke(&token).await.expect("revoke");
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(
            cache
                .lookup(&reader, &token)
                .await
                .expect("lookup")
                .is_some(),
            "within the bound the (unpushed) revocation is not seen yet"
        );
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert!(
            cache
                .lookup(&reader, &token)
                .await
                .expect("lookup")
                .is_none(),
            "past the bound the revocation is seen"
        );
    }

    /// A positive entry never outlives the token: with a 30 s bound, a
    /// token expiring in 2 s is looked up again after 2 s.
    #[tokio::test(start_paused = true)]
    async fn positive_entries_never_outlive_the_token() {
        let reader = Counting::default();
        let token = reader.issue(Duration::from_secs(2)).await;
        let cache = TokenCache::local(config());
        assert!(
            cache
                .lookup(&reader, &token)
                .await
                .expect("lookup")
                .is_some()
        );
        tokio::time::advance(Duration::from_millis(2100)).await;
        let _ = cache.lookup(&reader, &token).await.expect("lookup");
        assert_eq!(reader.lookups(), 2, "the entry expired with the token");
    }

    /// Unknown tokens are remembered briefly (a flood costs one lookup per
    /// negative TTL), then asked again.
    #[tokio::test(start_paused = true)]
    async fn negative_entries_are_brief() {
        let reader = Counting::default();
        let token = Counting::default().issue(Duration::from_secs(60)).await;
        let cache = TokenCache::local(config());
        for _ in 0..100 {
            assert!(
                cache
                    .lookup(&reader, &token)
                    .await
                    .expect("lookup")
                    .is_none()
            );
        }
        assert_eq!(reader.lookups(), 1);
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert!(
            cache
                .lookup(&reader, &token)
                .await
                .expect("lookup")
                .is_none()
        );
        assert_eq!(reader.lookups(), 2);
    }

    /// An invalidation that arrives between the repository's answer and the
    /// insert wins: the stale answer is not stored.
    #[test]
    fn invalidation_during_a_lookup_prevents_the_insert() {
        let shared = Shared::new(config(), true);
        let family = Uuid::from_u128(7);
        let entry = Entry {
            key: CacheKey::Session(family),
            digest: TokenDigest::of("t"),
        };
        let Begin::Miss(Some(ticket)) = shared.begin(&entry) else {
            panic!("first lookup must miss with a ticket");
        };
        let key = Value::BulkString([b"ts:s:{tag}:".as_slice(), family.as_bytes()].concat());
        shared.invalidate(&[Value::Array(vec![key])]);
        shared.complete(&entry, ticket, &Some(principal()));
        assert!(shared.state().entries.is_empty(), "stale answer stored");
        assert!(matches!(shared.begin(&entry), Begin::Miss(Some(_))));
    }

    /// A session's slot answers only for the token it was filled for:
    /// another token naming the same session is looked up.
    #[test]
    fn a_session_slot_answers_for_its_own_token_only() {
        let shared = Shared::new(config(), true);
        let family = Uuid::from_u128(7);
        let own = Entry {
            key: CacheKey::Session(family),
            digest: TokenDigest::of("own"),
        };
        let other = Entry {
            key: CacheKey::Session(family),
            digest: TokenDigest::of("forged"),
        };
        let Begin::Miss(Some(ticket)) = shared.begin(&own) else {
            panic!("miss");
        };
        assert!(matches!(shared.begin(&other), Begin::Miss(None)));
        shared.complete(&own, ticket, &Some(principal()));
        assert!(matches!(shared.begin(&own), Begin::Hit(Some(_))));
        assert!(matches!(shared.begin(&other), Begin::Miss(Some(_))));
    }

    /// A clear (reconnection, `FLUSHALL`) between answer and insert wins
    /// too, and a nil invalidation clears everything.
    #[test]
    fn clear_during_a_lookup_prevents_the_insert() {
        let shared = Shared::new(config(), true);
        let a = v1(TokenDigest::of("a"));
        let b = v1(TokenDigest::of("b"));
        let Begin::Miss(Some(ticket_a)) = shared.begin(&a) else {
            panic!("miss");
        };
        let Begin::Miss(Some(ticket_b)) = shared.begin(&b) else {
            panic!("miss");
        };
        shared.complete(&b, ticket_b, &Some(principal()));
        shared.invalidate(&[Value::Nil]);
        shared.complete(&a, ticket_a, &Some(principal()));
        assert!(shared.state().entries.is_empty());
    }

    /// While the tracking connection is down lookups bypass the cache and
    /// nothing is stored; a lost connection clears it.
    #[test]
    fn inactive_cache_is_bypassed_and_cleared() {
        let shared = Shared::new(config(), false);
        let digest = v1(TokenDigest::of("t"));
        assert!(matches!(shared.begin(&digest), Begin::Miss(None)));
        let connection = shared.begin_connection();
        assert!(shared.activate(connection));
        let Begin::Miss(Some(ticket)) = shared.begin(&digest) else {
            panic!("miss");
        };
        shared.complete(&digest, ticket, &Some(principal()));
        assert!(matches!(shared.begin(&digest), Begin::Hit(Some(_))));
        shared.deactivate(connection);
        assert!(shared.state().entries.is_empty());
        assert!(matches!(shared.begin(&digest), Begin::Miss(None)));
        // A connection lost before tracking was confirmed never activates,
        // and a stale connection's loss does not touch the current one.
        let next = shared.begin_connection();
        shared.deactivate(next);
        assert!(!shared.activate(next));
        let last = shared.begin_connection();
        assert!(shared.activate(last));
        shared.deactivate(next);
        assert!(shared.state().active);
    }

    /// A lookup whose future is dropped (timeout) leaves no marker behind.
    #[tokio::test(start_paused = true)]
    async fn cancelled_lookups_leave_nothing() {
        #[derive(Debug)]
        struct Hangs;
        #[async_trait]
        impl TokenReader for Hangs {
            async fn lookup(&self, _: &Token) -> Result<Option<TokenRecord>> {
                std::future::pending().await
            }
            async fn ping(&self) -> Result<()> {
                Ok(())
            }
        }
        let token = Counting::default().issue(Duration::from_secs(60)).await;
        let cache = TokenCache::local(config());
        let lookup = cache.lookup(&Hangs, &token);
        assert!(
            tokio::time::timeout(Duration::from_millis(10), lookup)
                .await
                .is_err()
        );
        assert_eq!(cache.stats().entries, 0);
    }

    /// The cache never holds more than its capacity.
    #[tokio::test(start_paused = true)]
    async fn size_is_bounded() {
        let reader = Counting::default();
        let cache = TokenCache::local(config().capacity(8));
        for _ in 0..50 {
            let token = reader.issue(Duration::from_secs(60)).await;
            let _ = cache.lookup(&reader, &token).await.expect("lookup");
            assert!(cache.stats().entries <= 8);
        }
        assert_eq!(cache.stats().entries, 8);
    }

    /// Keys of an invalidation push map to the session id or digest at
    /// their end.
    #[test]
    fn cache_key_from_key() {
        let shared = Shared::new(config(), true);
        let digest = TokenDigest::of("t");
        let key = [b"ts:tok:{abcdefghijklmn}:".as_slice(), digest.as_bytes()].concat();
        assert_eq!(
            shared.key_of(&Value::BulkString(key)),
            Some(CacheKey::Token(digest))
        );
        let family = Uuid::from_u128(3);
        let key = [b"ts:s:{abcdefghijklmn}:".as_slice(), family.as_bytes()].concat();
        assert_eq!(
            shared.key_of(&Value::BulkString(key)),
            Some(CacheKey::Session(family))
        );
        assert_eq!(shared.key_of(&Value::BulkString(b"short".to_vec())), None);
        assert_eq!(
            shared.key_of(&Value::BulkString(b"ts:user:x".to_vec())),
            None
        );
        assert_eq!(shared.key_of(&Value::Int(1)), None);
    }

    fn v1(digest: TokenDigest) -> Entry {
        Entry {
            key: CacheKey::Token(digest),
            digest,
        }
    }

    fn principal() -> Principal {
        Principal {
            subject: "s".into(),
            username: "u".into(),
            name: None,
            email: None,
            scopes: Scopes::empty(),
            token_id: Uuid::nil(),
            client_id: None,
            expires_at: Timestamp::now().saturating_add(Duration::from_secs(600)),
        }
    }
}
