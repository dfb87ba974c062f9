//! Redis's `maxmemory-policy` must be `noeviction`: under any other policy
//! Redis silently drops keys when it is full, and with them single-use
//! state (authorization states, refresh rotation), failed-login counters,
//! reuse detection and the revocation generation — all of which fail open
//! when their key vanishes.
//!
//! The policy is read with `INFO memory` (`maxmemory_policy`), which the
//! authority's ACL user may run (`+info`; `CONFIG GET` is `@admin`). On a
//! Redis Cluster `INFO` goes to every master, so every master is checked.
//! The check runs at start-up (the authority refuses to start unless
//! `ALLOW_REDIS_EVICTION=true`) and on every `GET /readyz`.

use token_repository::RedisStore;

/// The only policy under which Redis never drops the authority's keys.
pub const REQUIRED_POLICY: &str = "noeviction";

/// Why the eviction policy check failed.
#[derive(Debug, thiserror::Error)]
pub enum EvictionError {
    /// Redis did not answer (down, timed out): nothing is known yet.
    #[error("cannot check Redis's maxmemory-policy: {0}")]
    Unreachable(token_repository::Error),
    /// Redis answered with an error, typically `NOPERM` (the ACL user may
    /// not run `INFO`).
    #[error(
        "cannot read Redis's maxmemory-policy with INFO (grant the authority's Redis user +info): {0}"
    )]
    Unreadable(token_repository::Error),
    /// The answer had no `maxmemory_policy` line.
    #[error("Redis's INFO memory has no maxmemory_policy")]
    Missing,
    /// A node evicts keys.
    #[error(
        "Redis may evict the authority's keys: maxmemory-policy is {policy:?} on {node} \
         (set it to noeviction)"
    )]
    Evicting {
        /// The node (`-` on a single server).
        node: String,
        /// Its policy.
        policy: String,
    },
}

/// Reads the policy of every node the store writes to: `(node, policy)`,
/// node `-` when there is one.
///
/// # Errors
///
/// [`EvictionError::Unreachable`], [`EvictionError::Unreadable`] or
/// [`EvictionError::Missing`].
pub async fn policies(store: &RedisStore) -> Result<Vec<(String, String)>, EvictionError> {
    let reply: redis::Value = store
        .with_shared(|mut connection| async move {
            redis::cmd("INFO")
                .arg("memory")
                .query_async(&mut connection)
                .await
        })
        .await
        .map_err(|error| {
            if error.is_unavailable() {
                EvictionError::Unreachable(error)
            } else {
                EvictionError::Unreadable(error)
            }
        })?;
    let mut found = Vec::new();
    match reply {
        // A cluster: one INFO text per master.
        redis::Value::Map(nodes) => {
            for (node, info) in nodes {
                let node = text(&node).unwrap_or_else(|| "?".to_owned());
                let policy = text(&info)
                    .as_deref()
                    .and_then(policy_of)
                    .ok_or(EvictionError::Missing)?;
                found.push((node, policy));
            }
        }
        reply => {
            let policy = text(&reply)
                .as_deref()
                .and_then(policy_of)
                .ok_or(EvictionError::Missing)?;
            found.push(("-".to_owned(), policy));
        }
    }
    if found.is_empty() {
        return Err(EvictionError::Missing);
    }
    Ok(found)
}

/// Checks that no node may evict keys.
///
/// # Errors
///
/// As [`policies`], and [`EvictionError::Evicting`] naming the first node
/// with another policy.
pub async fn check(store: &RedisStore) -> Result<(), EvictionError> {
    match policies(store)
        .await?
        .into_iter()
        .find(|(_, policy)| policy != REQUIRED_POLICY)
    {
        Some((node, policy)) => Err(EvictionError::Evicting { node, policy }),
        None => Ok(()),
    }
}

/// A reply as text.
fn text(value: &redis::Value) -> Option<String> {
    match value {
        redis::Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        redis::Value::SimpleString(text) => Some(text.clone()),
        redis::Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

/// The `maxmemory_policy` field of an `INFO` text.
fn policy_of(info: &str) -> Option<String> {
    info.lines()
        .find_map(|line| line.strip_prefix("maxmemory_policy:"))
        .map(|policy| policy.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use token_repository::RedisConfig;
    use token_test_harness::RedisServer;

    use super::*;

    /// The field is found among INFO's lines.
    #[test]
    fn reads_the_policy_line() {
        let info = "# Memory\r\nused_memory:1\r\nmaxmemory_policy:allkeys-lru\r\nx:y\r\n";
        assert_eq!(policy_of(info).as_deref(), Some("allkeys-lru"));
        assert_eq!(policy_of("# Memory\r\n"), None);
    }

    /// A real Redis: noeviction passes; after `CONFIG SET maxmemory-policy
    /// allkeys-lru` the check fails and names the policy.
    #[tokio::test]
    async fn real_redis_policy() {
        let redis = RedisServer::start();
        let store = RedisStore::new(RedisConfig::new(redis.url()).timeout(Duration::from_secs(2)))
            .expect("store");
        check(&store)
            .await
            .expect("the default policy is noeviction");
        let reply = redis.cli(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
        assert_eq!(reply.trim(), "OK");
        match check(&store).await {
            Err(EvictionError::Evicting { policy, .. }) => assert_eq!(policy, "allkeys-lru"),
            other => panic!("expected Evicting, got {other:?}"),
        }
    }

    /// On a Redis Cluster every master is checked: one evicting master
    /// out of three fails the check, and is named.
    #[tokio::test]
    async fn every_cluster_master_is_checked() {
        let cluster = token_test_harness::RedisCluster::start();
        let store =
            RedisStore::new(RedisConfig::cluster(cluster.urls()).timeout(Duration::from_secs(2)))
                .expect("store");
        let found = policies(&store).await.expect("policies");
        assert_eq!(found.len(), cluster.nodes().len(), "{found:?}");
        check(&store).await.expect("noeviction everywhere");
        let last = &cluster.nodes()[cluster.nodes().len() - 1];
        let reply = last.cli(&["CONFIG", "SET", "maxmemory-policy", "allkeys-random"]);
        assert_eq!(reply.trim(), "OK");
        match check(&store).await {
            Err(EvictionError::Evicting { node, policy }) => {
                assert_eq!(policy, "allkeys-random");
                assert!(node.contains(&last.port().to_string()), "{node}");
            }
            other => panic!("expected Evicting, got {other:?}"),
        }
    }
}
