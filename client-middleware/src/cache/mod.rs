//! [`CachingReader`]: a [`TokenReader`] in front of another, answering
//! from a local cache whose entries Redis invalidates; [`TokenCache`], the
//! view of its entries and counters; [`CacheConfig`].
//!
//! The layer builds one for you
//! ([`TokenAuthLayer::with_cache`](crate::TokenAuthLayer::with_cache)); the
//! type is public for readers composed by hand, as tower-sessions'
//! `CachingSessionStore` is.
//!
//! - `slots`: the entries and the ticket protocol (no I/O).
//! - the invalidations come from the repository
//!   ([`Invalidations`](token_repository::redis::Invalidations)): client
//!   tracking, topology, reconnection.

mod slots;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use token_repository::redis::{Invalidations, Subscription, TrackedKey};
use token_repository::{
    KeyPrefix, RedisConfig, Result, Timestamp, Token, TokenDigest, TokenReader, TokenRecord,
};

use self::slots::{Begin, Entry, Slots};
use crate::lookup::{Answer, Lookup, Reply};

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
    pub const DEFAULT_HEALTH_INTERVAL: Duration = Invalidations::DEFAULT_HEALTH_INTERVAL;

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

/// The entries of a cache and what keeps them correct, shared by every
/// clone: give it to a [`CachingReader`], read its [`stats`](Self::stats).
/// Dropping the last clone stops its tracking.
///
/// # How it stays correct
///
/// - **Pushed invalidations.** A tracking cache subscribes to the
///   repository's [`Invalidations`]: one dedicated RESP3 connection (per
///   cluster master) in Redis's client-side-caching broadcast mode on the
///   session and token keys of the prefix. Whenever any client changes or
///   deletes one — the authority revoking or rotating, Redis expiring one —
///   Redis pushes the key's name and the entries of that session (or
///   digest) are dropped. The authority does nothing special: a revocation
///   is a `DEL`. Lookups themselves still go through the reader (its
///   connection, its timeouts).
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
    slots: Arc<Slots>,
    /// Stops the tracking task when the last clone is dropped.
    subscription: Option<Arc<Subscription>>,
}

impl TokenCache {
    /// A cache kept correct by the Redis of `redis` (its topology, TLS
    /// material and key prefix; the same user as the reader, which needs
    /// `+client|tracking`, see the README's ACL): a background task tracks
    /// the token keys, reconnecting by itself with backoff, and the cache
    /// answers lookups only while tracking is on. On a Redis Cluster every
    /// master is tracked; behind Sentinel the current master, through
    /// failovers.
    ///
    /// # Errors
    ///
    /// [`token_repository::Error::Config`] for an unusable configuration,
    /// or when called outside a Tokio runtime (the task needs one).
    pub fn tracking_for(redis: &RedisConfig, config: CacheConfig) -> Result<Self> {
        Self::subscribed(&Invalidations::new(redis)?, config)
    }

    /// [`Self::tracking_for`] a single server at `redis_url` with `prefix`.
    ///
    /// # Errors
    ///
    /// As [`Self::tracking_for`].
    #[deprecated(
        note = "use `TokenAuthLayer::connect(config).with_cache(CacheConfig)`, or `TokenCache::tracking_for`"
    )]
    pub fn tracking(redis_url: &str, prefix: &KeyPrefix, config: CacheConfig) -> Result<Self> {
        Self::tracking_for(&RedisConfig::new(redis_url).prefix(prefix.clone()), config)
    }

    /// A cache subscribed to `invalidations`.
    pub(crate) fn subscribed(invalidations: &Invalidations, config: CacheConfig) -> Result<Self> {
        let interval = config.health_interval;
        let slots = Arc::new(Slots::new(config, false));
        let subscription = invalidations
            .clone()
            .health_interval(interval)
            .subscribe(Arc::clone(&slots) as _)?;
        Ok(Self {
            slots,
            subscription: Some(Arc::new(subscription)),
        })
    }

    /// A cache without any invalidation: a revoked token keeps working
    /// until its entry is older than [`CacheConfig::staleness`]. For tests,
    /// and for deployments that accept that bound.
    #[must_use]
    pub fn local(config: CacheConfig) -> Self {
        Self {
            slots: Arc::new(Slots::new(config, true)),
            subscription: None,
        }
    }

    /// Drops every entry (they will be looked up again).
    pub fn clear(&self) {
        self.slots.clear();
    }

    /// Drops the entries of `token`'s key (its whole session): for a writer
    /// that shares the cache (the authority after a revocation or a
    /// rotation), so that its own next lookup does not wait for Redis's
    /// push. A lookup of that key in flight is not stored.
    pub fn forget(&self, token: &Token) {
        self.slots.invalidate(&[TrackedKey::of(token)]);
    }

    /// Whether lookups are answered from the cache now (for a tracking
    /// cache: whether its connection is up and tracking).
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.slots.is_active()
    }

    /// The counters so far.
    #[must_use]
    pub fn stats(&self) -> CacheStats {
        self.slots.stats()
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &CacheConfig {
        self.slots.config()
    }
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("config", self.config())
            .field("tracking", &self.subscription.is_some())
            .field("stats", &self.stats())
            .finish()
    }
}

/// A [`TokenReader`] that answers from a [`TokenCache`] when it can and
/// asks `R` otherwise (storing the answer): the cache as a step of the
/// reader chain, not a branch beside it.
///
/// ```
/// use std::time::Duration;
/// use token_client::{CacheConfig, CachingReader, MemoryStore, TokenCache};
/// use token_client::repository::{Grant, Holder, Scopes, TokenReader as _, TokenWriter as _};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = MemoryStore::new();
/// let minted = Grant {
///     holder: Holder {
///         subject: "user-1".into(),
///         username: "alice".into(),
///         name: None,
///         email: None,
///         scopes: Scopes::parse("read").unwrap(),
///         client_id: None,
///     },
///     access_ttl: Duration::from_secs(900),
///     refresh_ttl: None,
///     audience: token_repository::Audience::unrestricted(),
/// }
/// .mint()
/// .unwrap();
/// store.issue(&minted, None).await.unwrap();
///
/// // Without invalidations: for tests. In production the layer's
/// // `with_cache` tracks the reader's Redis.
/// let reader = CachingReader::new(store, TokenCache::local(CacheConfig::default()));
/// let token = &minted.access.token;
/// assert!(reader.lookup(token).await.unwrap().is_some());
/// assert!(reader.lookup(token).await.unwrap().is_some());
/// assert_eq!(reader.cache().stats().hits, 1);
/// # }
/// ```
pub struct CachingReader<R> {
    inner: R,
    cache: TokenCache,
}

impl<R: TokenReader> CachingReader<R> {
    /// `inner` behind `cache`.
    #[must_use]
    pub fn new(inner: R, cache: TokenCache) -> Self {
        Self { inner, cache }
    }

    /// The cache (for its statistics).
    #[must_use]
    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }

    /// The reader behind the cache.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Unwraps the reader behind the cache.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The record of `token`: [`TokenReader::lookup`] without the trait's
    /// boxed future, so that a hit is answered on the first poll without
    /// an allocation (the authority's introspection calls this).
    ///
    /// # Errors
    ///
    /// As the reader's, on a miss.
    pub fn lookup<'a>(
        &'a self,
        token: &'a Token,
    ) -> impl Future<Output = Result<Option<TokenRecord>>> + Send + 'a {
        Lookup::lookup(self, token)
    }

    /// The record of the live access token whose text is `text`, from the
    /// cache alone and without parsing the text: the entry of the session
    /// the text claims, when it was filled for the token whose SHA-256
    /// digest the text has (compared in constant time). Equal digests mean
    /// the very text that was parsed, checked and looked up when the entry
    /// was filled. `None` (refresh tokens, misses, an inactive cache) sends
    /// the caller down [`Self::lookup`] after a full [`Token::parse`]; only
    /// a hit is counted.
    #[must_use]
    pub fn recall(&self, text: &str, now: Timestamp) -> Option<TokenRecord> {
        Lookup::recall(self, text, now)
    }

    /// A lookup the cache could not answer: asks the reader, and stores the
    /// answer when `ticket` still holds the entry's marker then.
    async fn miss(&self, token: &Token, entry: Entry, ticket: Option<u64>) -> Reply {
        let pending = ticket.map(|ticket| self.cache.slots.pending(entry, ticket));
        let answer = self.inner.lookup(token).await?;
        if let Some(pending) = pending {
            pending.complete(&answer);
        }
        Ok(answer)
    }
}

impl<R: TokenReader> Lookup for CachingReader<R> {
    /// A hit by the text alone: the entry of the session the text claims,
    /// if it was filled for the token whose SHA-256 digest the text has
    /// (the digest compared in constant time). Equal digests mean the very
    /// text that was parsed, checked and looked up when the entry was
    /// filled, so its form needs no second check.
    fn recall(&self, text: &str, now: Timestamp) -> Option<TokenRecord> {
        let family = Token::claimed_access_family(text)?;
        self.cache
            .slots
            .recall(&TrackedKey::Session(family), &TokenDigest::of(text), now)
    }

    fn lookup<'a>(&'a self, token: &'a Token) -> Answer<'a> {
        let entry = Entry::of(token);
        match self.cache.slots.begin(&entry) {
            Begin::Hit(answer) => Answer::Ready(Some(Ok(answer))),
            Begin::Miss(ticket) => Answer::Pending(Box::pin(self.miss(token, entry, ticket))),
        }
    }
}

#[async_trait]
impl<R: TokenReader> TokenReader for CachingReader<R> {
    async fn lookup(&self, token: &Token) -> Result<Option<TokenRecord>> {
        Lookup::lookup(self, token).await
    }

    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
}

impl<R: fmt::Debug> fmt::Debug for CachingReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachingReader")
            .field("inner", &self.inner)
            .field("cache", &self.cache)
            .finish()
    }
}

#[cfg(test)]
mod tests;
