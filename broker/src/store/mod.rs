//! Connection records, the refresh lock and used states, in Redis.
//!
//! Keys (see `token_repository::keys`): `P conn:{T}:<p>` holds a
//! connection's stored value, `P clock:{T}:<p>` its refresh lock (same
//! slot), `P cstate:<nonce>` marks a state as used, `P conns` indexes every
//! connection by its last refresh for the keep-alive. Every command touches
//! one key, or several keys of one subject's slot, so all of it works on
//! Redis Cluster.
//!
//! Writes that follow a read are compare-and-set scripts: a refresh that
//! raced with a disconnect or a reconnect never resurrects or overwrites
//! the newer state. The lock is `SET NX PX` with a random owner token,
//! released only by its owner (compare-and-delete).
//!
//! - this module: the records (get, put, compare-and-set);
//! - `index`: the keep-alive index;
//! - `locks`: refresh locks and single-use states;
//! - `scan`: walks of the keyspace (provider removal, re-encryption).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRng as _;
use token_repository::{Error, KeyPrefix, RedisStore, Result, SubjectTag, Timestamp};

pub use self::index::IndexEntry;
pub use self::locks::Lock;

mod index;
mod locks;
mod scan;

/// The connection keys of the authority's Redis.
#[derive(Debug, Clone)]
pub struct ConnectionStore {
    store: RedisStore,
}

fn random_text() -> Result<String> {
    let mut bytes = [0_u8; 16];
    rand::rngs::SysRng
        .try_fill_bytes(&mut bytes)
        .map_err(|error| Error::Config(format!("random generator: {error}")))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl ConnectionStore {
    /// Connections in the Redis of `store`, under its prefix.
    #[must_use]
    pub fn new(store: RedisStore) -> Self {
        Self { store }
    }

    fn prefix(&self) -> &KeyPrefix {
        self.store.prefix()
    }

    /// The key prefix of the store.
    #[must_use]
    pub fn store_prefix(&self) -> &KeyPrefix {
        self.store.prefix()
    }

    /// The key of `subject`'s connection to `provider`.
    #[must_use]
    pub fn key(&self, subject: &str, provider: &str) -> String {
        self.prefix().connection(&SubjectTag::of(subject), provider)
    }

    /// The key of `subject`'s credentials for `provider` (a provider of a
    /// credentials kind; same slot as the subject's connections).
    #[must_use]
    pub fn credential_key(&self, subject: &str, provider: &str) -> String {
        self.prefix().credential(&SubjectTag::of(subject), provider)
    }

    /// Sets `key` to `value`.
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn set_key(&self, key: &str, value: &str) -> Result<()> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.store
            .with_connection(|mut connection| async move {
                let () = redis::cmd("SET")
                    .arg(&key)
                    .arg(&value)
                    .query_async(&mut connection)
                    .await?;
                Ok(())
            })
            .await
    }

    /// The values at `keys`, in order (one `MGET`: the keys must share a
    /// slot, as one subject's do).
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn get_keys(&self, keys: Vec<String>) -> Result<Vec<Option<String>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.store
            .with_connection(|mut connection| async move {
                Ok(redis::cmd("MGET")
                    .arg(&keys)
                    .query_async(&mut connection)
                    .await?)
            })
            .await
    }

    /// Deletes `keys` (one `DEL`: the keys must share a slot); answers how
    /// many existed.
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn delete_keys(&self, keys: Vec<String>) -> Result<usize> {
        if keys.is_empty() {
            return Ok(0);
        }
        self.store
            .with_connection(|mut connection| async move {
                Ok(redis::cmd("DEL")
                    .arg(&keys)
                    .query_async(&mut connection)
                    .await?)
            })
            .await
    }

    /// The stored value of a connection.
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn get(&self, subject: &str, provider: &str) -> Result<Option<String>> {
        self.get_key(&self.key(subject, provider)).await
    }

    /// The stored value at `key`.
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn get_key(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_owned();
        self.store
            .with_connection(|mut connection| async move {
                Ok(redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut connection)
                    .await?)
            })
            .await
    }

    /// The stored values of `subject`'s connections to `providers`, in
    /// order (one `MGET`: the keys share the subject's slot).
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn get_many(&self, subject: &str, providers: &[&str]) -> Result<Vec<Option<String>>> {
        if providers.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = providers
            .iter()
            .map(|provider| self.key(subject, provider))
            .collect();
        self.store
            .with_connection(|mut connection| async move {
                Ok(redis::cmd("MGET")
                    .arg(&keys)
                    .query_async(&mut connection)
                    .await?)
            })
            .await
    }

    /// Stores a new connection (replacing whatever was there) and indexes
    /// it for the keep-alive when it is `refreshable_since` some time (it
    /// has a refresh token), or takes it out of the index.
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn put(
        &self,
        subject: &str,
        provider: &str,
        value: &str,
        refreshable_since: Option<Timestamp>,
    ) -> Result<()> {
        self.set_key(&self.key(subject, provider), value).await?;
        match refreshable_since {
            Some(refreshed_at) => self.index(subject, provider, refreshed_at).await,
            None => self.unindex(subject, provider).await,
        }
    }

    /// Replaces `old` by `new` at `key` if it is still `old`; `ttl` gives
    /// the new value an expiry. Answers whether it was replaced.
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn replace(
        &self,
        key: &str,
        old: &str,
        new: &str,
        ttl: Option<Duration>,
    ) -> Result<bool> {
        token_repository::cas::replace(&self.store, key, old, new, ttl).await
    }

    /// Deletes `key` if it still holds `old`; answers whether it did.
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn delete_if(&self, key: &str, old: &str) -> Result<bool> {
        token_repository::cas::delete_if(&self.store, key, old).await
    }
}

#[cfg(test)]
mod tests {
    use token_repository::RedisConfig;
    use token_test_harness::{RedisServer, wait_until_async};

    use super::*;

    fn store(redis: &RedisServer) -> ConnectionStore {
        ConnectionStore::new(RedisStore::new(RedisConfig::new(redis.url())).expect("store"))
    }

    /// The refresh lock is exclusive per connection, expires by itself,
    /// and is released only by its owner: a holder whose lock expired and
    /// was taken by another replica does not release the new owner's.
    #[tokio::test]
    async fn lock_is_exclusive_and_released_only_by_its_owner() {
        let redis = RedisServer::start();
        let store = store(&redis);
        let ttl = Duration::from_millis(150);
        let first = store.try_lock("s", "p", ttl).await.expect("redis");
        let first = first.expect("free");
        assert!(
            store
                .try_lock("s", "p", ttl)
                .await
                .expect("redis")
                .is_none()
        );
        let other = store.try_lock("s", "q", ttl).await.expect("redis");
        assert!(other.is_some(), "another provider's lock is independent");
        let (second, _) = wait_until_async(Duration::from_secs(5), tokio::time::sleep, || async {
            store
                .try_lock("s", "p", Duration::from_secs(30))
                .await
                .expect("redis")
        })
        .await
        .expect("the lock expires by itself");
        store.unlock(first).await.expect("redis");
        assert!(
            store
                .try_lock("s", "p", ttl)
                .await
                .expect("redis")
                .is_none(),
            "a stale owner released another's lock"
        );
        store.unlock(second).await.expect("redis");
        assert!(
            store
                .try_lock("s", "p", ttl)
                .await
                .expect("redis")
                .is_some()
        );
    }

    /// A state nonce can be used once; compare-and-set and
    /// compare-and-delete act only on the value that was read.
    #[tokio::test]
    async fn single_use_and_compare_and_set() {
        let redis = RedisServer::start();
        let store = store(&redis);
        let minute = Duration::from_secs(60);
        assert!(store.use_state("nonce", minute).await.expect("redis"));
        assert!(!store.use_state("nonce", minute).await.expect("redis"));
        store.put("s", "p", "v1", None).await.expect("redis");
        let key = store.key("s", "p");
        assert!(!store.replace(&key, "v0", "v2", None).await.expect("redis"));
        assert!(store.replace(&key, "v1", "v2", None).await.expect("redis"));
        assert_eq!(
            store.get("s", "p").await.expect("redis").as_deref(),
            Some("v2")
        );
        assert!(!store.delete_if(&key, "v1").await.expect("redis"));
        assert!(store.delete_if(&key, "v2").await.expect("redis"));
        assert_eq!(store.get("s", "p").await.expect("redis"), None);
    }

    /// The keep-alive index answers connections refreshed before a time,
    /// oldest first; unindexing removes them.
    #[tokio::test]
    async fn keepalive_index() {
        let redis = RedisServer::start();
        let store = store(&redis);
        let at = Timestamp::from_unix_millis;
        store
            .index("client:x", "p", at(3_000))
            .await
            .expect("redis");
        store.index("alice", "p", at(1_000)).await.expect("redis");
        store.index("bob", "q", at(2_000)).await.expect("redis");
        let due = store.due(at(3_000), 10).await.expect("redis");
        let names: Vec<(&str, &str)> = due
            .iter()
            .map(|entry| (entry.provider.as_str(), entry.subject.as_str()))
            .collect();
        assert_eq!(names, [("p", "alice"), ("q", "bob")]);
        store.unindex("alice", "p").await.expect("redis");
        let due = store.due(at(10_000), 1).await.expect("redis");
        assert_eq!(due[0].subject, "bob");
        assert_eq!(store.due(at(10_000), 10).await.expect("redis").len(), 2);
        assert_eq!(
            store.due(at(10_000), 10).await.expect("redis")[1].subject,
            "client:x",
            "subjects with a colon survive"
        );
    }
}
