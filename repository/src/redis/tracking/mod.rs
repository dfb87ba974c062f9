//! [`Invalidations`]: which token keys changed, pushed by Redis — what keeps
//! a token client's cache correct. See the type for the protocol.
//!
//! - `keys`: [`TrackedKey`], and reading pushed key names.
//! - `target`: which servers to track for a topology.
//! - `task`: the task that connects, tracks, supervises and reconnects.

mod keys;
mod target;
mod task;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use self::keys::KeyNames;
pub use self::keys::TrackedKey;
use self::target::Target;
use self::task::Tracker;
use super::config::RedisConfig;
use crate::error::{Error, Result};

/// One connection attempt of the tracking task, so that a late event of an
/// old connection is told apart from the current one's. Increases with each
/// attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Epoch(pub u64);

/// What the tracking task reports (see [`Invalidations`] for the order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalidation<'a> {
    /// A connection attempt begins: nothing is tracked now.
    Connecting(Epoch),
    /// Tracking is on for this attempt: every change is pushed from now on.
    Tracking(Epoch),
    /// These keys changed or were deleted.
    Keys(&'a [TrackedKey]),
    /// These keys under the named prefixes of
    /// [`Invalidations::named`] changed or were deleted (their full names).
    Names(&'a [Vec<u8>]),
    /// Every key may have changed (`FLUSHALL`, `FLUSHDB`).
    Flushed,
    /// The connection of this attempt is lost: pushes may be missed.
    Lost(Epoch),
}

/// Where the tracking task delivers [`Invalidation`]s.
///
/// Called on the connections' tasks as each push arrives, so it must be
/// quick and must not block (a short lock is fine).
pub trait InvalidationSink: Send + Sync + 'static {
    /// One event.
    fn on_event(&self, event: Invalidation<'_>);
}

/// The invalidation stream of one Redis deployment's token keys, as a
/// [`RedisConfig`] names them (topology, TLS material, key prefix): which
/// token keys changed, pushed by Redis — what keeps a token client's cache
/// correct. Building it checks the configuration and connects nothing;
/// [`subscribe`](Self::subscribe) starts the task that tracks. Cheap to
/// clone; clones share the topology's clients.
///
/// One dedicated RESP3 connection per tracked server in Redis's
/// client-side-caching broadcast mode (`CLIENT TRACKING ON BCAST PREFIX
/// <prefix>s: PREFIX <prefix>tok:`): whenever any client changes or deletes
/// a session key (or, for tokens issued before the bounded schema, a token
/// key) — the authority revoking or rotating, Redis expiring one — Redis
/// pushes the key's name. The authority does nothing special: a revocation
/// is a `DEL`. On a Redis Cluster every master is tracked (each pushes the
/// changes of its own slots; they are found with `CLUSTER NODES`); behind
/// Sentinel, the current master, followed through failovers.
///
/// A subscriber hears, through its [`InvalidationSink`], in this order for
/// each connection attempt (an [`Epoch`]):
///
/// 1. [`Invalidation::Connecting`]: nothing is tracked now; whatever was
///    learnt before may have missed a push.
/// 2. [`Invalidation::Tracking`]: every change from now on is pushed.
/// 3. [`Invalidation::Keys`] (or [`Invalidation::Names`] for the
///    prefixes of [`Invalidations::named`]) and [`Invalidation::Flushed`],
///    as Redis pushes them.
/// 4. [`Invalidation::Lost`]: the connection dropped or failed a health
///    check (a `PING` every health interval, answered within it); pushes
///    may be missed from now on. A new attempt follows, with backoff (50 ms
///    doubling to 2 s).
///
/// `Lost` may come for an epoch that is not the current one (a late push of
/// a closed connection), and before `Tracking` (a connection that dropped
/// while tracking was being enabled): a subscriber compares epochs.
///
/// The Redis user needs `+client|tracking` (see the README's ACL).
#[derive(Clone)]
pub struct Invalidations {
    target: Arc<Target>,
    keys: Arc<KeyNames>,
    health_interval: Duration,
}

impl Invalidations {
    /// Default [`health_interval`](Self::health_interval): 1 s.
    pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(1);

    /// The invalidations of `config`'s token keys.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an unparseable URL, or TLS material with a
    /// topology other than one `rediss://` server.
    pub fn new(config: &RedisConfig) -> Result<Self> {
        Self::of_keys(config, KeyNames::new(config.key_prefix()))
    }

    /// The invalidations of the keys under `prefixes` (full key names'
    /// prefixes, such as [`KeyPrefix::client_tracking_prefix`](crate::KeyPrefix::client_tracking_prefix)),
    /// reported by name ([`Invalidation::Names`]) on the same protocol
    /// (epochs, reconnection, topologies) as the token keys of
    /// [`Self::new`]. Prefixes must not overlap one another (Redis refuses
    /// it).
    ///
    /// # Errors
    ///
    /// As [`Self::new`].
    pub fn named(config: &RedisConfig, prefixes: Vec<String>) -> Result<Self> {
        Self::of_keys(config, KeyNames::named(prefixes))
    }

    fn of_keys(config: &RedisConfig, keys: KeyNames) -> Result<Self> {
        Ok(Self {
            target: Arc::new(Target::new(config.topology(), config.tls_certificates())?),
            keys: Arc::new(keys),
            health_interval: Self::DEFAULT_HEALTH_INTERVAL,
        })
    }

    /// How often each tracking connection is checked with a `PING`, and how
    /// long the `PING` (and connecting) may take (at least 10 ms).
    #[must_use]
    pub fn health_interval(mut self, interval: Duration) -> Self {
        self.health_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Starts tracking on the current Tokio runtime, delivering events to
    /// `sink` until the [`Subscription`] is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when called outside a Tokio runtime.
    pub fn subscribe(&self, sink: Arc<dyn InvalidationSink>) -> Result<Subscription> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Config("Invalidations::subscribe must be called within a Tokio runtime".into())
        })?;
        let (stop, stopped) = oneshot::channel();
        let tracker = Tracker {
            target: Arc::clone(&self.target),
            keys: Arc::clone(&self.keys),
            health_interval: self.health_interval,
            sink,
        };
        runtime.spawn(tracker.run(stopped));
        Ok(Subscription { stop: Some(stop) })
    }
}

impl fmt::Debug for Invalidations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invalidations")
            .field("target", &self.target.describe())
            .field("prefixes", &self.keys.prefixes())
            .field("health_interval", &self.health_interval)
            .finish()
    }
}

/// A running tracking task; dropping it stops the task and closes its
/// connections.
#[derive(Debug)]
pub struct Subscription {
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
