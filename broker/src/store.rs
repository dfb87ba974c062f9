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

use std::sync::LazyLock;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRng as _;
use token_repository::{Error, KeyPrefix, RedisStore, Result, SubjectTag, Timestamp};

/// A page of the keep-alive index after a cursor, in one round trip.
/// `ARGV`: the cursor's member (empty: from the start) and score, the
/// exclusive upper score, the page size. Every entry ranked before the
/// cursor scores at most the cursor's score, which was below an earlier
/// bound and so is below this one: the cursor's rank is the offset within
/// the range. A cursor that moved (refreshed) starts the page at the
/// first entry of its old score.
static DUE_AFTER: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local offset = 0 \
         if ARGV[1] ~= '' then \
           local score = redis.call('ZSCORE', KEYS[1], ARGV[1]) \
           if score and tonumber(score) == tonumber(ARGV[2]) then \
             offset = redis.call('ZRANK', KEYS[1], ARGV[1]) + 1 \
           else \
             offset = redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. ARGV[2]) \
           end \
         end \
         return redis.call('ZRANGE', KEYS[1], '-inf', '(' .. ARGV[3], 'BYSCORE', \
           'LIMIT', offset, ARGV[4], 'WITHSCORES')",
    )
});

/// A held refresh lock.
#[derive(Debug)]
pub struct Lock {
    key: String,
    owner: String,
}

/// One entry of the connection index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// The provider.
    pub provider: String,
    /// The subject.
    pub subject: String,
    /// Last refresh (Unix ms).
    pub refreshed_at: u64,
}

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
        let key = self.key(subject, provider);
        let value = value.to_owned();
        self.store
            .with_connection(|mut connection| async move {
                let () = redis::cmd("SET")
                    .arg(&key)
                    .arg(&value)
                    .query_async(&mut connection)
                    .await?;
                Ok(())
            })
            .await?;
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

    fn member(subject: &str, provider: &str) -> String {
        format!("{provider}:{subject}")
    }

    /// Records (or moves) a connection in the keep-alive index.
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn index(
        &self,
        subject: &str,
        provider: &str,
        refreshed_at: Timestamp,
    ) -> Result<()> {
        let index = self.prefix().connections();
        let member = Self::member(subject, provider);
        self.store
            .with_connection(|mut connection| async move {
                let _: i64 = redis::cmd("ZADD")
                    .arg(&index)
                    .arg(refreshed_at.as_unix_millis())
                    .arg(&member)
                    .query_async(&mut connection)
                    .await?;
                Ok(())
            })
            .await
    }

    /// Removes a connection from the keep-alive index.
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn unindex(&self, subject: &str, provider: &str) -> Result<()> {
        let index = self.prefix().connections();
        let member = Self::member(subject, provider);
        self.store
            .with_connection(|mut connection| async move {
                let _: i64 = redis::cmd("ZREM")
                    .arg(&index)
                    .arg(&member)
                    .query_async(&mut connection)
                    .await?;
                Ok(())
            })
            .await
    }

    /// When the connection was last refreshed according to the keep-alive
    /// index (`None`: not indexed).
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn indexed_at(&self, subject: &str, provider: &str) -> Result<Option<Timestamp>> {
        let index = self.prefix().connections();
        let member = Self::member(subject, provider);
        let score: Option<f64> = self
            .store
            .with_connection(|mut connection| async move {
                Ok(redis::cmd("ZSCORE")
                    .arg(&index)
                    .arg(&member)
                    .query_async(&mut connection)
                    .await?)
            })
            .await?;
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "scores are Unix milliseconds written by `index`"
        )]
        let millis = score.map(|millis| millis.max(0.0) as u64);
        Ok(millis.map(Timestamp::from_unix_millis))
    }

    /// Up to `limit` indexed connections last refreshed before `before`,
    /// oldest first.
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn due(&self, before: Timestamp, limit: usize) -> Result<Vec<IndexEntry>> {
        let index = self.prefix().connections();
        let found: Vec<(String, u64)> = self
            .store
            .with_connection(|mut connection| async move {
                Ok(redis::cmd("ZRANGE")
                    .arg(&index)
                    .arg("-inf")
                    .arg(format!("({}", before.as_unix_millis()))
                    .arg("BYSCORE")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit)
                    .arg("WITHSCORES")
                    .query_async(&mut connection)
                    .await?)
            })
            .await?;
        Ok(found
            .into_iter()
            .filter_map(|(member, score)| {
                let (provider, subject) = member.split_once(':')?;
                Some(IndexEntry {
                    provider: provider.to_owned(),
                    subject: subject.to_owned(),
                    refreshed_at: score,
                })
            })
            .collect())
    }

    /// Up to `limit` indexed connections last refreshed before `before`,
    /// in index order (oldest first), starting after `after` (none: from
    /// the oldest). When `after` has moved since (refreshed meanwhile),
    /// the page starts at the first entry of its old score, so nothing is
    /// passed over; some may be seen twice.
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn due_after(
        &self,
        before: Timestamp,
        after: Option<&IndexEntry>,
        limit: usize,
    ) -> Result<Vec<IndexEntry>> {
        let index = self.prefix().connections();
        let (member, score) = after.map_or((String::new(), 0), |entry| {
            (
                Self::member(&entry.subject, &entry.provider),
                entry.refreshed_at,
            )
        });
        let found: Vec<(String, u64)> = self
            .store
            .with_connection(|mut connection| async move {
                Ok(DUE_AFTER
                    .key(&index)
                    .arg(&member)
                    .arg(score)
                    .arg(before.as_unix_millis())
                    .arg(limit)
                    .invoke_async(&mut connection)
                    .await?)
            })
            .await?;
        Ok(found
            .into_iter()
            .filter_map(|(member, score)| {
                let (provider, subject) = member.split_once(':')?;
                Some(IndexEntry {
                    provider: provider.to_owned(),
                    subject: subject.to_owned(),
                    refreshed_at: score,
                })
            })
            .collect())
    }

    /// Takes the refresh lock of a connection for `ttl`, unless someone
    /// holds it.
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn try_lock(
        &self,
        subject: &str,
        provider: &str,
        ttl: Duration,
    ) -> Result<Option<Lock>> {
        let key = self
            .prefix()
            .connection_lock(&SubjectTag::of(subject), provider);
        self.try_lock_key(key, ttl).await
    }

    /// Takes the lock at `key` for `ttl`, unless someone holds it.
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn try_lock_key(&self, key: String, ttl: Duration) -> Result<Option<Lock>> {
        let owner = random_text()?;
        let (lock_key, lock_owner) = (key.clone(), owner.clone());
        let taken: Option<String> = self
            .store
            .with_connection(|mut connection| async move {
                Ok(redis::cmd("SET")
                    .arg(&lock_key)
                    .arg(&lock_owner)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(ttl))
                    .query_async(&mut connection)
                    .await?)
            })
            .await?;
        Ok(taken.map(|_| Lock { key, owner }))
    }

    /// Releases a lock if it is still ours (it may have expired and been
    /// taken by another replica meanwhile).
    ///
    /// # Errors
    ///
    /// Redis failures (the lock then expires by itself).
    pub async fn unlock(&self, lock: Lock) -> Result<()> {
        self.delete_if(&lock.key, &lock.owner).await.map(drop)
    }

    /// Marks the state with `nonce` as used until it would expire anyway;
    /// answers `false` when it already was (a replay).
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn use_state(&self, nonce: &str, remaining: Duration) -> Result<bool> {
        let key = self.prefix().connect_state(nonce);
        let set: Option<String> = self
            .store
            .with_connection(|mut connection| async move {
                Ok(redis::cmd("SET")
                    .arg(&key)
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(remaining))
                    .query_async(&mut connection)
                    .await?)
            })
            .await?;
        Ok(set.is_some())
    }

    /// Deletes every key matching `pattern` (`SCAN` in batches, one `DEL`
    /// per key, so keys of any slot); answers how many it deleted. Its
    /// cost grows with the keyspace: for an administrator's removal of a
    /// provider, in the background, never for a user's request.
    ///
    /// # Errors
    ///
    /// Redis failures (what was deleted stays deleted; run it again).
    pub async fn delete_matching(&self, pattern: &str) -> Result<usize> {
        let mut deleted = 0;
        for key in self.scan(pattern.to_owned()).await? {
            let removed: usize = self
                .store
                .with_connection(|mut connection| async move {
                    Ok(redis::cmd("DEL")
                        .arg(&key)
                        .query_async(&mut connection)
                        .await?)
                })
                .await?;
            deleted += removed;
        }
        Ok(deleted)
    }

    /// Removes every keep-alive index entry of `provider` (`ZSCAN` in
    /// batches); answers how many. Like [`Self::delete_matching`], for the
    /// removal of a provider.
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn unindex_provider(&self, provider: &str) -> Result<usize> {
        let index = self.prefix().connections();
        // ZSCAN answers member, score, member, score, …
        let members: Vec<String> = self
            .scan_with(Some(&index), format!("{provider}:*"))
            .await?
            .into_iter()
            .step_by(2)
            .collect();
        let mut removed = 0;
        for batch in members.chunks(500) {
            let (index, batch) = (index.clone(), batch.to_vec());
            let count: usize = self
                .store
                .with_connection(|mut connection| async move {
                    Ok(redis::cmd("ZREM")
                        .arg(&index)
                        .arg(&batch)
                        .query_async(&mut connection)
                        .await?)
                })
                .await?;
            removed += count;
        }
        Ok(removed)
    }

    /// Every connection key (`SCAN`; for re-encryption).
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn keys(&self) -> Result<Vec<String>> {
        self.scan(self.prefix().connection_pattern()).await
    }

    /// Every stored credentials key (`P cred:`; `SCAN`, for re-encryption
    /// and export).
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn credential_keys(&self) -> Result<Vec<String>> {
        self.scan(self.prefix().credential_pattern()).await
    }

    /// The keys matching `pattern`, sorted (`SCAN` in batches of 500).
    async fn scan(&self, pattern: String) -> Result<Vec<String>> {
        let mut keys = self.scan_with(None, pattern).await?;
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// Everything `SCAN` (no `key`) or `ZSCAN key` answers for `pattern`,
    /// in batches of 500, one round trip each within the store's timeout.
    async fn scan_with(&self, key: Option<&str>, pattern: String) -> Result<Vec<String>> {
        let mut cursor: u64 = 0;
        let mut found = Vec::new();
        loop {
            let (key, pattern) = (key.map(str::to_owned), pattern.clone());
            let (next, batch): (u64, Vec<String>) = self
                .store
                .with_connection(|mut connection| async move {
                    let mut command = match &key {
                        Some(key) => {
                            let mut command = redis::cmd("ZSCAN");
                            command.arg(key);
                            command
                        }
                        None => redis::cmd("SCAN"),
                    };
                    Ok(command
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(500)
                        .query_async(&mut connection)
                        .await?)
                })
                .await?;
            found.extend(batch);
            if next == 0 {
                return Ok(found);
            }
            cursor = next;
        }
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
