//! [`Target`]: which servers to track for a [`Topology`] — the one server,
//! the current master behind Sentinel, or every master of a cluster (read
//! from `CLUSTER NODES`) — with clients that speak RESP3, which carries the
//! invalidation pushes.

use std::time::Duration;

use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::{AsyncConnectionConfig, ConnectionInfo, IntoConnectionInfo, ProtocolVersion};

use super::super::connector::{check_tls, install_crypto_provider, node_info, single_client};
use super::super::topology::{Topology, redact_url};
use crate::error::{Error, Result};

/// Where the tracking connections go.
pub(super) enum Target {
    /// One server.
    Single {
        client: redis::Client,
        /// For logs, without the password.
        url: String,
    },
    /// Every master of a Redis Cluster, found through these seeds.
    Cluster {
        seeds: Vec<ConnectionInfo>,
        /// For logs, without the password.
        first: String,
    },
    /// The current master behind Sentinel.
    Sentinel {
        client: tokio::sync::Mutex<SentinelClient>,
        master: String,
    },
}

/// `info` speaking RESP3.
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
    /// The servers of `topology`, reached with `tls`'s material (one
    /// server only, like the store).
    pub(super) fn new(topology: &Topology, tls: Option<&redis::TlsCertificates>) -> Result<Self> {
        check_tls(topology, tls)?;
        install_crypto_provider();
        Ok(match topology {
            Topology::Single { url } => {
                // The client's connection info carries the parsed TLS material.
                let info = single_client(url, tls)?.get_connection_info().clone();
                Self::Single {
                    client: redis::Client::open(resp3(info))
                        .map_err(|error| Error::Config(format!("invalid Redis URL: {error}")))?,
                    url: redact_url(url),
                }
            }
            Topology::Cluster { urls } => Self::Cluster {
                seeds: urls
                    .iter()
                    .map(|url| url.as_str().into_connection_info().map(resp3))
                    .collect::<redis::RedisResult<_>>()
                    .map_err(|error| invalid(&error))?,
                first: redact_url(urls.first().map_or("", String::as_str)),
            },
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
                Self::Sentinel {
                    client: tokio::sync::Mutex::new(client),
                    master: master.clone(),
                }
            }
        })
    }

    /// For logs, without passwords.
    pub(super) fn describe(&self) -> String {
        match self {
            Self::Single { url, .. } => url.clone(),
            Self::Cluster { first, .. } => format!("cluster via {first}"),
            Self::Sentinel { master, .. } => format!("sentinel master {master}"),
        }
    }

    /// Clients for every server to track now.
    pub(super) async fn clients(
        &self,
        timeout: Duration,
    ) -> redis::RedisResult<Vec<redis::Client>> {
        match self {
            Self::Single { client, .. } => Ok(vec![client.clone()]),
            Self::Sentinel { client, .. } => {
                Ok(vec![client.lock().await.async_get_client().await?])
            }
            Self::Cluster { seeds, .. } => {
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
    let masters = masters(&nodes);
    if masters.is_empty() {
        return Err(redis::RedisError::from((
            redis::ErrorKind::Client,
            "the cluster lists no master",
        )));
    }
    masters
        .into_iter()
        .map(|(host, port)| {
            redis::Client::open(
                seed.clone()
                    .set_addr(redis::ConnectionAddr::Tcp(host.to_owned(), port)),
            )
        })
        .collect()
}

/// The addresses of the healthy masters in a `CLUSTER NODES` reply: lines
/// of `<id> <host:port@cport[,hostname]> <flags> …`, skipping masters
/// flagged `fail` or `noaddr`.
fn masters(nodes: &str) -> Vec<(&str, u16)> {
    let mut masters = Vec::new();
    for line in nodes.lines() {
        let mut fields = line.split_whitespace().skip(1);
        let (Some(address), Some(flags)) = (fields.next(), fields.next()) else {
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
        masters.push((host, port));
    }
    masters
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Healthy masters are read from `CLUSTER NODES`; replicas, failed and
    /// address-less masters and garbage lines are skipped.
    #[test]
    fn cluster_nodes_masters() {
        let nodes = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host-4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master,fail - 0 1426238318243 3 connected 10923-16383
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 10.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460
9fd8800b31d569538917c0aaeaa5588e2f9c6edf :0@0 master,noaddr - 0 0 5 connected
garbage
824fe116063bc5fcf9f4ffd895bc17aee7731ac3 [::1]:6379@16379 master - 0 0 6 connected
824fe116063bc5fcf9f4ffd895bc17aee7731ac4 host:notaport@1 master - 0 0 6 connected
";
        assert_eq!(
            masters(nodes),
            vec![("127.0.0.1", 30002), ("10.0.0.1", 30001), ("[::1]", 6379)]
        );
    }

    /// TLS material is refused with a cluster or Sentinel, as by the store.
    #[test]
    fn tls_needs_one_server() {
        let tls = redis::TlsCertificates {
            client_tls: None,
            root_cert: None,
        };
        let cluster = Topology::Cluster {
            urls: vec!["redis://127.0.0.1:1".into()],
        };
        assert!(Target::new(&cluster, Some(&tls)).is_err());
        let single = Topology::Single {
            url: "not a url".into(),
        };
        let error = Target::new(&single, None).err().expect("bad url");
        assert!(error.to_string().contains("invalid Redis URL"), "{error}");
    }
}
