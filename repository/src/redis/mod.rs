//! The Redis store: [`RedisStore`] (the authority's reader and writer) and
//! [`RedisTokenReader`] (what token clients get: lookups only).
//!
//! Lookups and pings, the hot path of every token client, and the token
//! store's own operations (its scripts, listing, generations) share one
//! multiplexed connection (`shared`): concurrent commands are pipelined on
//! it, one round trip each, and a connection that breaks is replaced by the
//! next command. [`RedisStore::with_connection`] (the authority's account
//! and throttling keys) takes a connection from a deadpool-redis pool whose wait,
//! create and recycle timeouts are the configured operation timeout; a
//! broken pooled connection is discarded when the pool recycles it (a
//! PING). The connections' connect and response timeouts are the operation
//! timeout too, and every operation as a whole is bounded by it, so the
//! store fails fast while Redis is down and recovers by itself when it
//! comes back.
//!
//! # Layout
//!
//! - `config`: [`RedisConfig`] and its TLS material ([`RedisTls`]).
//! - `topology`: [`Topology`], where Redis is, from the shared settings.
//! - `connector`: clients for a topology, and the connector of the shared
//!   connection.
//! - `pool`: the deadpool-redis pools behind one type ([`PooledConnection`]).
//! - `shared`: the one multiplexed connection lookups share.
//! - `inner`: what the store and the reader share, and the lookups.
//! - `store`: [`RedisStore`], the authority's reader and writer.
//! - `reader`: [`RedisTokenReader`], a token client's lookups.
//! - `scripts`: the Lua scripts of the writer.
//! - `tracking`: [`Invalidations`], Redis's pushes of changed token keys
//!   (client-side caching) for a token client's cache.

mod config;
mod connector;
mod inner;
mod pool;
mod reader;
mod scripts;
mod shared;
mod store;
mod topology;
mod tracking;

pub use self::config::{Durability, RedisConfig, RedisTls, TlsSettingsError};
pub use self::connector::{SharedConn, install_crypto_provider};
pub use self::pool::PooledConnection;
pub use self::reader::RedisTokenReader;
pub use self::store::RedisStore;
pub use self::topology::{Topology, TopologyError, redact_url};
pub use self::tracking::{
    Epoch, Invalidation, InvalidationSink, Invalidations, Subscription, TrackedKey,
};
