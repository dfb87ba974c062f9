//! Where Redis is: one server, a Redis Cluster, or a master behind
//! Sentinel — the same store on each, chosen by configuration alone.
//! [`Topology`] names it, read from the settings every component shares;
//! [`redact_url`] shows its URLs in logs without their passwords.

use std::fmt;

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
    pub fn from_settings<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Self, TopologyError> {
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
/// Checks the scheme of a Redis URL.
fn redis_url(variable: &'static str, url: &str) -> Result<String, TopologyError> {
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
fn redis_urls(variable: &'static str, list: &str) -> Result<Vec<String>, TopologyError> {
    let urls = list
        .split(',')
        .filter(|url| !url.trim().is_empty())
        .map(|url| redis_url(variable, url))
        .collect::<Result<Vec<_>, _>>()?;
    if urls.is_empty() {
        return Err(TopologyError {
            variable,
            problem: "expected at least one redis:// URL",
        });
    }
    Ok(urls)
}
/// `redis://user:secret@host/` → `redis://user:***@host/`, for logs.
#[must_use]
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<unparseable url>".to_owned();
    };
    // The last `@` ends the credentials, whatever an unencoded password holds.
    match rest.rsplit_once('@') {
        Some((credentials, host_and_path)) => {
            let user = credentials.split_once(':').map_or("", |(user, _)| user);
            format!("{scheme}://{user}:***@{host_and_path}")
        }
        None => url.to_owned(),
    }
}
