//! [`SharedConnection`]: one multiplexed connection that every lookup
//! shares, replaced when it breaks (on a cluster, one cluster connection;
//! behind Sentinel, one connection to the current master).
//!
//! Lookups are the hot path of every token client: one `GET` per request.
//! Taking a connection from the deadpool pool for each of them costs a
//! second round trip, because deadpool-redis checks every connection it
//! hands out with `UNWATCH` + `PING`; and with the read-only ACL user of the
//! README, which may not run `UNWATCH`, that check fails and the pool opens
//! a new connection (TCP, `HELLO`, `AUTH`) for every lookup. A
//! `MultiplexedConnection` is made to be shared: concurrent commands are
//! pipelined on it, so one connection carries every lookup with a single
//! round trip each.
//!
//! It recovers by itself: a command that fails at the connection level
//! (I/O error, dropped connection, timeout) discards the connection it ran
//! on, and the next command connects afresh. Connecting is bounded by the
//! connection timeout and the caller's overall timeout, so while Redis is
//! down every lookup fails fast (callers fail closed) and the first one
//! after Redis is back succeeds.

use std::sync::{Mutex, MutexGuard, PoisonError};

use redis::{AsyncConnectionConfig, RedisError};

use super::connector::{Connector, SharedConn};

/// A lazily connected, self-replacing multiplexed connection.
pub(super) struct SharedConnection {
    connector: Connector,
    config: AsyncConnectionConfig,
    current: Mutex<Option<Current>>,
    /// Only one task connects at a time; the others wait for its result.
    connecting: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
struct Current {
    /// Which connection this is, so that a failure on an old one never
    /// discards its replacement.
    generation: u64,
    connection: SharedConn,
}

/// A connection lent to one operation; report failures with
/// [`SharedConnection::failed`].
pub(super) struct Lent {
    generation: u64,
    pub(super) connection: SharedConn,
}

impl SharedConnection {
    pub(super) fn new(connector: Connector, config: AsyncConnectionConfig) -> Self {
        Self {
            connector,
            config,
            current: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    fn current(&self) -> MutexGuard<'_, Option<Current>> {
        // The critical sections only clone or replace an `Option`.
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current connection, connecting first when there is none.
    pub(super) async fn get(&self) -> Result<Lent, RedisError> {
        if let Some(lent) = self.lend() {
            return Ok(lent);
        }
        let _connecting = self.connecting.lock().await;
        // Someone else may have connected while this task waited.
        if let Some(lent) = self.lend() {
            return Ok(lent);
        }
        // Boxed: connecting is rare, and its future (about 3 KiB) inline
        // would make every operation's future that large, copied whole into
        // its box on every call (bench/README.md, "Futures copied per
        // rotation").
        let connection = Box::pin(self.connector.connect(&self.config)).await?;
        let mut current = self.current();
        let generation = current.as_ref().map_or(0, |c| c.generation).wrapping_add(1);
        *current = Some(Current {
            generation,
            connection: connection.clone(),
        });
        Ok(Lent {
            generation,
            connection,
        })
    }

    fn lend(&self) -> Option<Lent> {
        self.current().as_ref().map(|current| Lent {
            generation: current.generation,
            connection: current.connection.clone(),
        })
    }

    /// Discards the connection `lent` came from when `error` says the
    /// connection itself is broken (not for a command Redis refused).
    pub(super) fn failed(&self, lent: &Lent, error: &RedisError) {
        let broken = super::pool::condemns(error);
        if broken {
            self.discard(lent.generation);
        }
    }

    /// Discards connection `generation` (an operation on it did not finish
    /// in time: it may be half-open).
    pub(super) fn discard(&self, generation: u64) {
        let mut current = self.current();
        if current.as_ref().is_some_and(|c| c.generation == generation) {
            *current = None;
        }
    }
}

impl Lent {
    pub(super) fn generation(&self) -> u64 {
        self.generation
    }
}
