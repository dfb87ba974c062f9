//! Where Redis is: one server, a Redis Cluster, or a master behind
//! Sentinel — the same store on each, chosen by configuration alone.
//!
//! [`Pool`] hides the three deadpool-redis pools behind one type whose
//! connections all speak [`ConnectionLike`]; the key schema needs nothing
//! else, because every multi-key script touches one subject's hash tag only.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool_redis::{PoolConfig, Runtime, Timeouts};
use redis::aio::ConnectionLike;
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, Value};

use crate::error::{Error, Result};

/// The shape of the Redis deployment.
#[derive(Clone, PartialEq, Eq)]
pub enum Topology {
    /// One server (or a proxy in front of several).
    Single {
        /// `redis://[user:password@]host[:port][/db]`, `rediss://` for TLS.
        url: String,
    },
    /// A Redis Cluster, found through any of its nodes.
    Cluster {
        /// Seed node URLs (credentials, if any, in each).
        urls: Vec<String>,
    },
    /// A master and its replicas, watched by Sentinel.
    Sentinel {
        /// Sentinel URLs.
        urls: Vec<String>,
        /// The master's name in the sentinels' configuration.
        master: String,
        /// ACL user for the data nodes (the sentinels' own credentials go in
        /// their URLs).
        username: Option<String>,
        /// Password for the data nodes.
        password: Option<String>,
    },
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use super::config::redact_url;
        match self {
            Self::Single { url } => f
                .debug_struct("Single")
                .field("url", &redact_url(url))
                .finish(),
            Self::Cluster { urls } => f
                .debug_struct("Cluster")
                .field(
                    "urls",
                    &urls.iter().map(|url| redact_url(url)).collect::<Vec<_>>(),
                )
                .finish(),
            Self::Sentinel {
                urls,
                master,
                username,
                password,
            } => f
                .debug_struct("Sentinel")
                .field(
                    "urls",
                    &urls.iter().map(|url| redact_url(url)).collect::<Vec<_>>(),
                )
                .field("master", master)
                .field("username", username)
                .field("password", &password.as_ref().map(|_| "***"))
                .finish(),
        }
    }
}

/// A topology setting that cannot be used; names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct TopologyError {
    /// The setting at fault (`REDIS_URL`, `REDIS_CLUSTER_URLS`, …).
    pub variable: &'static str,
    /// What is wrong.
    pub problem: &'static str,
}

impl Topology {
    /// The topology named by the settings every component of the token
    /// service reads (from the environment, usually): `REDIS_URL` (one
    /// server, default `redis://127.0.0.1:6379`), or `REDIS_CLUSTER_URLS`
    /// (comma-separated seeds), or `REDIS_SENTINEL_URLS` (comma-separated)
    /// with `REDIS_SENTINEL_MASTER` and optionally `REDIS_SENTINEL_USERNAME`
    /// / `REDIS_SENTINEL_PASSWORD` for the data nodes. `get` answers a
    /// setting's value, `None` when unset (or empty).
    ///
    /// # Errors
    ///
    /// [`TopologyError`] for a URL that is not `redis://`, `rediss://` or
    /// `unix://`, several topologies at once, or a Sentinel set-up without
    /// its master name.
    pub fn from_settings<'a>(
        get: impl Fn(&str) -> Option<&'a str>,
    ) -> std::result::Result<Self, TopologyError> {
        let single = get("REDIS_URL");
        let cluster = get("REDIS_CLUSTER_URLS");
        let sentinel = get("REDIS_SENTINEL_URLS");
        let exclusive = "set only one of REDIS_URL, REDIS_CLUSTER_URLS and REDIS_SENTINEL_URLS";
        match (single, cluster, sentinel) {
            (_, Some(_), Some(_)) | (Some(_), None, Some(_)) => Err(TopologyError {
                variable: "REDIS_SENTINEL_URLS",
                problem: exclusive,
            }),
            (Some(_), Some(_), None) => Err(TopologyError {
                variable: "REDIS_CLUSTER_URLS",
                problem: exclusive,
            }),
            (_, Some(urls), None) => Ok(Self::Cluster {
                urls: redis_urls("REDIS_CLUSTER_URLS", urls)?,
            }),
            (_, None, Some(urls)) => Ok(Self::Sentinel {
                urls: redis_urls("REDIS_SENTINEL_URLS", urls)?,
                master: get("REDIS_SENTINEL_MASTER")
                    .ok_or(TopologyError {
                        variable: "REDIS_SENTINEL_MASTER",
                        problem: "required with REDIS_SENTINEL_URLS: the master's name in the sentinels' configuration",
                    })?
                    .to_owned(),
                username: get("REDIS_SENTINEL_USERNAME").map(str::to_owned),
                password: get("REDIS_SENTINEL_PASSWORD").map(str::to_owned),
            }),
            (url, None, None) => Ok(Self::Single {
                url: redis_url("REDIS_URL", url.unwrap_or("redis://127.0.0.1:6379"))?,
            }),
        }
    }
}

/// Connection details for the data nodes behind Sentinel: `base` (for a
/// protocol, say) with the configured credentials. For clients that open
/// their own connections to the master, such as a token client's cache.
#[must_use]
pub fn node_info(
    username: Option<&String>,
    password: Option<&String>,
    base: redis::RedisConnectionInfo,
) -> redis::sentinel::SentinelNodeConnectionInfo {
    let mut info = base;
    if let Some(username) = username {
        info = info.set_username(username);
    }
    if let Some(password) = password {
        info = info.set_password(password);
    }
    redis::sentinel::SentinelNodeConnectionInfo::default().set_redis_connection_info(info)
}

/// Makes ring the process's rustls crypto provider unless one is installed
/// already; every TLS connection of the token service uses it. Idempotent.
pub fn install_crypto_provider() {
    // An error only means a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client for the one server at `url`, with `tls`'s CA and client
/// certificate when given (the URL must then be `rediss://`). For clients
/// that open their own connections, such as a token client's cache.
///
/// # Errors
///
/// [`Error::Config`] for an unparseable URL, or TLS material with a URL
/// that is not `rediss://`.
pub fn single_client(url: &str, tls: Option<&redis::TlsCertificates>) -> Result<redis::Client> {
    install_crypto_provider();
    match tls {
        None => redis::Client::open(url)
            .map_err(|error| Error::Config(format!("invalid Redis URL: {error}"))),
        Some(_) if !url.trim_start().starts_with("rediss://") => Err(Error::Config(
            "REDIS_CA_FILE / REDIS_CLIENT_CERT_FILE need a rediss:// REDIS_URL".to_owned(),
        )),
        Some(tls) => redis::Client::build_with_tls(url, tls.clone())
            .map_err(|error| Error::Config(format!("REDIS_CA_FILE: {error}"))),
    }
}

/// Refuses TLS material with a topology that cannot use it yet.
pub(crate) fn check_tls(topology: &Topology, tls: Option<&redis::TlsCertificates>) -> Result<()> {
    match (topology, tls) {
        (Topology::Cluster { .. } | Topology::Sentinel { .. }, Some(_)) => Err(Error::Config(
            "REDIS_CA_FILE / REDIS_CLIENT_CERT_FILE are supported with REDIS_URL only \
             (a cluster or Sentinel over rediss:// trusts the webpki roots)"
                .to_owned(),
        )),
        _ => Ok(()),
    }
}

/// Checks the scheme of a Redis URL.
fn redis_url(variable: &'static str, url: &str) -> std::result::Result<String, TopologyError> {
    let url = url.trim();
    if ["redis://", "rediss://", "unix://", "redis+unix://"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
    {
        Ok(url.to_owned())
    } else {
        Err(TopologyError {
            variable,
            problem: "expected redis://[user:password@]host[:port][/db] (or rediss://, unix://)",
        })
    }
}

/// A comma-separated list of Redis URLs.
fn redis_urls(
    variable: &'static str,
    list: &str,
) -> std::result::Result<Vec<String>, TopologyError> {
    let urls = list
        .split(',')
        .filter(|url| !url.trim().is_empty())
        .map(|url| redis_url(variable, url))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if urls.is_empty() {
        return Err(TopologyError {
            variable,
            problem: "expected at least one redis:// URL",
        });
    }
    Ok(urls)
}

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

/// Opens the store's shared multiplexed connection for any [`Topology`].
pub(crate) enum Connector {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
    /// `SentinelClient` asks the sentinels for the current master each time
    /// it connects; it needs `&mut`, and connecting happens one task at a
    /// time anyway.
    Sentinel(tokio::sync::Mutex<redis::sentinel::SentinelClient>),
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "Connector::Single",
            Self::Cluster(_) => "Connector::Cluster",
            Self::Sentinel(_) => "Connector::Sentinel",
        })
    }
}

impl Connector {
    pub(crate) fn new(
        topology: &Topology,
        tls: Option<&redis::TlsCertificates>,
        timeout: Duration,
    ) -> Result<Self> {
        check_tls(topology, tls)?;
        install_crypto_provider();
        let invalid = |error: redis::RedisError| {
            Error::Config(format!("invalid Redis configuration: {error}"))
        };
        Ok(match topology {
            Topology::Single { url } => Self::Single(single_client(url, tls)?),
            Topology::Cluster { urls } => Self::Cluster(
                redis::cluster::ClusterClientBuilder::new(urls.clone())
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .build()
                    .map_err(invalid)?,
            ),
            Topology::Sentinel {
                urls,
                master,
                username,
                password,
            } => Self::Sentinel(tokio::sync::Mutex::new(
                redis::sentinel::SentinelClient::build(
                    urls.clone(),
                    master.clone(),
                    Some(node_info(
                        username.as_ref(),
                        password.as_ref(),
                        redis::RedisConnectionInfo::default(),
                    )),
                    redis::sentinel::SentinelServerType::Master,
                )
                .map_err(invalid)?,
            )),
        })
    }

    /// A new connection (to the current master, behind Sentinel).
    pub(crate) async fn connect(
        &self,
        config: &AsyncConnectionConfig,
    ) -> redis::RedisResult<SharedConn> {
        Ok(match self {
            Self::Single(client) => SharedConn::Plain(
                client
                    .get_multiplexed_async_connection_with_config(config)
                    .await?,
            ),
            Self::Cluster(client) => SharedConn::Cluster(client.get_async_connection().await?),
            Self::Sentinel(client) => SharedConn::Plain(
                client
                    .lock()
                    .await
                    .get_async_connection_with_config(config)
                    .await?,
            ),
        })
    }
}

/// The store's multiplexed connection, of any topology; clones share it
/// (see [`RedisStore::with_shared`](super::RedisStore::with_shared)).
#[derive(Clone)]
pub enum SharedConn {
    /// One server, or the current master behind Sentinel.
    Plain(redis::aio::MultiplexedConnection),
    /// A cluster connection routes each command to the node of its slot.
    Cluster(redis::cluster_async::ClusterConnection),
}

impl fmt::Debug for SharedConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Plain(_) => "SharedConn::Plain",
            Self::Cluster(_) => "SharedConn::Cluster",
        })
    }
}

impl ConnectionLike for SharedConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Plain(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Plain(connection) => connection.req_packed_commands(cmd, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Plain(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}
