//! [`Pool`]: the deadpool-redis pools of the three topologies behind one
//! type whose connections all speak [`ConnectionLike`]; the key schema needs
//! nothing else, because every multi-key script touches one subject's hash
//! tag only.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool_redis::{PoolConfig, Runtime, Timeouts};
use redis::aio::ConnectionLike;
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, Value};

use super::connector::{check_tls, install_crypto_provider, single_client};
use super::topology::Topology;
use crate::error::{Error, Result};

/// A pool of connections to any [`Topology`].
pub(crate) enum Pool {
    Single(deadpool_redis::Pool),
    Cluster(deadpool_redis::cluster::Pool),
    Sentinel(deadpool_redis::sentinel::Pool),
}

/// A pooled connection of any [`Topology`], lent to
/// [`RedisStore::with_connection`](super::RedisStore::with_connection).
///
/// A command that fails at the connection level, or finds the server no
/// longer a master (`READONLY` after a failover), marks it broken: it is then
/// dropped instead of returned to the pool, so the next operation connects
/// afresh (to the new master, behind Sentinel).
pub struct PooledConnection {
    connection: Option<Pooled>,
    broken: Arc<AtomicBool>,
}

enum Pooled {
    Single(deadpool_redis::Connection),
    Cluster(deadpool_redis::cluster::Connection),
    Sentinel(deadpool_redis::sentinel::Connection),
}

impl fmt::Debug for PooledConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledConnection")
            .field("broken", &self.broken.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl PooledConnection {
    fn new(connection: Pooled) -> Self {
        Self {
            connection: Some(connection),
            broken: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Watches a command's outcome for errors that condemn the connection.
    fn watch<'a, T: Send + 'a>(
        broken: Arc<AtomicBool>,
        future: RedisFuture<'a, T>,
    ) -> RedisFuture<'a, T> {
        Box::pin(async move {
            let result = future.await;
            if let Err(error) = &result
                && condemns(error)
            {
                broken.store(true, Ordering::Relaxed);
            }
            result
        })
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        if !self.broken.load(Ordering::Relaxed) {
            return;
        }
        match self.connection.take() {
            Some(Pooled::Single(connection)) => drop(deadpool_redis::Connection::take(connection)),
            Some(Pooled::Cluster(connection)) => {
                drop(deadpool_redis::cluster::Connection::take(connection));
            }
            Some(Pooled::Sentinel(connection)) => {
                drop(deadpool_redis::sentinel::Connection::take(connection));
            }
            None => {}
        }
    }
}

/// Whether `error` means the connection should not be used again: broken
/// at the connection level, or talking to a server that is no longer the
/// master (`READONLY` / `MASTERDOWN` after a failover).
pub(crate) fn condemns(error: &redis::RedisError) -> bool {
    let moved = matches!(
        error.kind(),
        redis::ErrorKind::Server(
            redis::ServerErrorKind::ReadOnly | redis::ServerErrorKind::MasterDown
        )
    );
    moved
        || error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
}

fn pool_config(size: usize, timeout: Duration) -> PoolConfig {
    let mut config = PoolConfig::new(size);
    config.timeouts = Timeouts {
        wait: Some(timeout),
        create: Some(timeout),
        recycle: Some(timeout),
    };
    config
}

fn build_error(error: impl fmt::Display) -> Error {
    Error::Config(error.to_string())
}

impl Pool {
    /// A pool for `topology`; connects lazily. `timeout` bounds connecting
    /// and taking a connection, `response_timeout` each reply.
    pub(crate) fn new(
        topology: &Topology,
        tls: Option<&redis::TlsCertificates>,
        size: usize,
        timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Self> {
        check_tls(topology, tls)?;
        install_crypto_provider();
        let config = pool_config(size, timeout);
        Ok(match topology {
            Topology::Single { url } => {
                let connection = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(response_timeout));
                // The client's connection info carries the parsed TLS material.
                let info = single_client(url, tls)?.get_connection_info().clone();
                let manager = deadpool_redis::Manager::new_with_config(info, connection)
                    .map_err(|error| Error::Config(format!("invalid Redis URL: {error}")))?;
                Self::Single(
                    deadpool_redis::Pool::builder(manager)
                        .config(config)
                        .runtime(Runtime::Tokio1)
                        .build()
                        .map_err(build_error)?,
                )
            }
            Topology::Cluster { urls } => {
                let mut cluster = deadpool_redis::cluster::Config::from_urls(urls.clone());
                cluster.pool = Some(config);
                Self::Cluster(
                    cluster
                        .create_pool(Some(Runtime::Tokio1))
                        .map_err(|error| {
                            Error::Config(format!("invalid Redis Cluster URLs: {error}"))
                        })?,
                )
            }
            Topology::Sentinel {
                urls,
                master,
                username,
                password,
            } => {
                let mut sentinel = deadpool_redis::sentinel::Config::from_urls(
                    urls.clone(),
                    master.clone(),
                    deadpool_redis::sentinel::SentinelServerType::Master,
                );
                if username.is_some() || password.is_some() {
                    sentinel = sentinel.with_node_connection_info(Some(
                        deadpool_redis::sentinel::SentinelNodeConnectionInfo {
                            tls_mode: None,
                            redis_connection_info: Some(deadpool_redis::RedisConnectionInfo {
                                username: username.clone(),
                                password: password.clone(),
                                ..deadpool_redis::RedisConnectionInfo::default()
                            }),
                        },
                    ));
                }
                sentinel.pool = Some(config);
                Self::Sentinel(
                    sentinel
                        .create_pool(Some(Runtime::Tokio1))
                        .map_err(|error| {
                            Error::Config(format!("invalid Sentinel configuration: {error}"))
                        })?,
                )
            }
        })
    }

    /// A connection; recycled ones are checked with a PING first.
    pub(crate) async fn get(&self) -> Result<PooledConnection> {
        Ok(match self {
            Self::Single(pool) => PooledConnection::new(Pooled::Single(pool.get().await?)),
            Self::Cluster(pool) => PooledConnection::new(Pooled::Cluster(pool.get().await?)),
            Self::Sentinel(pool) => PooledConnection::new(Pooled::Sentinel(pool.get().await?)),
        })
    }

    /// (open, idle, waiting) connections.
    pub(crate) fn status(&self) -> (usize, usize, usize) {
        let status = match self {
            Self::Single(pool) => pool.status(),
            Self::Cluster(pool) => pool.status(),
            Self::Sentinel(pool) => pool.status(),
        };
        (status.size, status.available, status.waiting)
    }
}

fn released<'a, T: Send + 'a>() -> RedisFuture<'a, T> {
    Box::pin(async {
        Err(redis::RedisError::from((
            redis::ErrorKind::Client,
            "the pooled connection was already released",
        )))
    })
}

impl ConnectionLike for PooledConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let broken = Arc::clone(&self.broken);
        let future = match self.connection.as_mut() {
            Some(Pooled::Single(connection)) => connection.req_packed_command(cmd),
            Some(Pooled::Cluster(connection)) => connection.req_packed_command(cmd),
            Some(Pooled::Sentinel(connection)) => connection.req_packed_command(cmd),
            None => return released(),
        };
        Self::watch(broken, future)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let broken = Arc::clone(&self.broken);
        let future = match self.connection.as_mut() {
            Some(Pooled::Single(connection)) => connection.req_packed_commands(cmd, offset, count),
            Some(Pooled::Cluster(connection)) => connection.req_packed_commands(cmd, offset, count),
            Some(Pooled::Sentinel(connection)) => {
                connection.req_packed_commands(cmd, offset, count)
            }
            None => return released(),
        };
        Self::watch(broken, future)
    }

    fn get_db(&self) -> i64 {
        match &self.connection {
            Some(Pooled::Single(connection)) => connection.get_db(),
            Some(Pooled::Cluster(connection)) => connection.get_db(),
            Some(Pooled::Sentinel(connection)) => connection.get_db(),
            None => 0,
        }
    }
}
