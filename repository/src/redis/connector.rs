//! Connecting to any [`Topology`]: clients for one server (with its TLS
//! material) or the data nodes behind Sentinel, and [`Connector`], which
//! opens the multiplexed connection lookups share.

use std::fmt;
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, Value};

use super::topology::Topology;
use crate::error::{Error, Result};

/// Connection details for the data nodes behind Sentinel: `base` (for a
/// protocol, say) with the configured credentials: for the shared
/// connection and for the invalidation tracking.
#[must_use]
pub(crate) fn node_info(
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
/// certificate when given (the URL must then be `rediss://`): for the
/// pool, the shared connection and the invalidation tracking.
///
/// # Errors
///
/// [`Error::Config`] for an unparseable URL, or TLS material with a URL
/// that is not `rediss://`.
pub(crate) fn single_client(
    url: &str,
    tls: Option<&redis::TlsCertificates>,
) -> Result<redis::Client> {
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
