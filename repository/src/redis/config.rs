//! How to reach Redis: [`RedisConfig`].

use std::fmt;
use std::time::Duration;

use super::topology::Topology;
use crate::keys::KeyPrefix;

/// Where the store's Redis is and how patient to be with it.
///
/// One server ([`Self::new`]), a Redis Cluster ([`Self::cluster`]) or a
/// master behind Sentinel ([`Self::sentinel`]): the same store and the same
/// key schema on each. `Debug` hides passwords.
#[derive(Clone)]
pub struct RedisConfig {
    pub(crate) topology: Topology,
    pub(crate) prefix: KeyPrefix,
    pub(crate) pool_size: usize,
    pub(crate) timeout: Duration,
    pub(crate) durability: Option<Durability>,
    pub(crate) max_sessions: usize,
}

/// Wait for replicas to acknowledge every issued token (`WAIT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durability {
    /// How many replicas must acknowledge.
    pub replicas: u32,
    /// How long to wait for them.
    pub timeout: Duration,
}

impl RedisConfig {
    /// Default number of pooled connections.
    pub const DEFAULT_POOL_SIZE: usize = 16;
    /// Default bound on one store operation, connecting included.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

    /// A configuration for `url` (`redis://[user:password@]host[:port][/db]`,
    /// `rediss://` for TLS), with the default prefix `ts:`, pool size and
    /// timeout.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self::with_topology(Topology::Single { url: url.into() })
    }

    /// A configuration for a Redis Cluster reached through `urls` (any
    /// nodes; credentials in each URL).
    #[must_use]
    pub fn cluster<I, S>(urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::with_topology(Topology::Cluster {
            urls: urls.into_iter().map(Into::into).collect(),
        })
    }

    /// A configuration for the master named `master`, found through the
    /// sentinels at `urls`. Connections follow the master through failovers.
    #[must_use]
    pub fn sentinel<I, S>(urls: I, master: impl Into<String>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::with_topology(Topology::Sentinel {
            urls: urls.into_iter().map(Into::into).collect(),
            master: master.into(),
            username: None,
            password: None,
        })
    }

    /// A configuration for `topology`.
    #[must_use]
    pub fn with_topology(topology: Topology) -> Self {
        Self {
            topology,
            prefix: KeyPrefix::default(),
            pool_size: Self::DEFAULT_POOL_SIZE,
            timeout: Self::DEFAULT_TIMEOUT,
            durability: None,
            max_sessions: crate::DEFAULT_MAX_SESSIONS_PER_SUBJECT,
        }
    }

    /// The ACL user and password of the data nodes behind Sentinel (the
    /// sentinels' own credentials go in their URLs). Ignored otherwise.
    #[must_use]
    pub fn sentinel_credentials(
        mut self,
        username: Option<String>,
        password: Option<String>,
    ) -> Self {
        if let Topology::Sentinel {
            username: user,
            password: pass,
            ..
        } = &mut self.topology
        {
            *user = username;
            *pass = password;
        }
        self
    }

    /// After issuing tokens, wait until `replicas` replicas have
    /// acknowledged the write (`WAIT`), at most `timeout`; if they do not,
    /// the tokens are revoked and the issue fails with
    /// [`crate::Error::NotDurable`], so no token is handed out that a
    /// failover could lose. `replicas = 0` turns it off (the default).
    #[must_use]
    pub fn wait_for_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.durability = (replicas > 0).then_some(Durability { replicas, timeout });
        self
    }

    /// Where Redis is.
    #[must_use]
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The key prefix (namespace) shared by the authority and its clients.
    #[must_use]
    pub fn prefix(mut self, prefix: KeyPrefix) -> Self {
        self.prefix = prefix;
        self
    }

    /// The number of pooled connections (at least 1).
    #[must_use]
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// The longest any one operation may take, waiting for a connection and
    /// connecting included. Past it the operation fails with
    /// [`crate::Error::Timeout`]: callers fail closed instead of hanging.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many live sessions one subject may hold (at least 1; default
    /// [`crate::DEFAULT_MAX_SESSIONS_PER_SUBJECT`]). Issuing beyond it
    /// revokes the subject's soonest-expiring sessions.
    #[must_use]
    pub fn max_sessions_per_subject(mut self, cap: usize) -> Self {
        self.max_sessions = cap.max(1);
        self
    }

    /// The configured key prefix.
    #[must_use]
    pub fn key_prefix(&self) -> &KeyPrefix {
        &self.prefix
    }

    /// The configured timeout.
    #[must_use]
    pub fn operation_timeout(&self) -> Duration {
        self.timeout
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("topology", &self.topology)
            .field("durability", &self.durability)
            .field("prefix", &self.prefix)
            .field("pool_size", &self.pool_size)
            .field("timeout", &self.timeout)
            .field("max_sessions", &self.max_sessions)
            .finish()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Passwords in URLs never reach logs through Debug.
    #[test]
    fn debug_redacts_the_password() {
        let config = RedisConfig::new("redis://validator:s3cret-pass@10.0.0.1:6379/0");
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret-pass"), "{shown}");
        assert!(
            shown.contains("redis://validator:***@10.0.0.1:6379/0"),
            "{shown}"
        );
        assert_eq!(redact_url("redis://:pw@host/"), "redis://:***@host/");
        assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
        assert_eq!(redact_url("not a url"), "<unparseable url>");
        assert_eq!(redact_url("redis://u:p/w@d@host/1"), "redis://u:***@host/1");
    }
}
