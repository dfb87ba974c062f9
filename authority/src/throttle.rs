//! Failed-login throttling, per username and per client address, in Redis
//! (so that every authority replica counts the same failures).
//!
//! A fixed window: the first failure starts a counter that expires after the
//! window; once a counter reaches its limit, logins for that username (or
//! from that address) are refused with 429 and `Retry-After` until it
//! expires, without checking the password at all. A successful login resets
//! the username's counter. Usernames are stored hashed: the counters reveal
//! no login names.

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};
use token_repository::{RedisStore, Result};

/// Counts failed logins and says when to refuse.
#[derive(Debug, Clone)]
pub struct Throttle {
    store: RedisStore,
    max_per_username: u32,
    max_per_address: u32,
    window: Duration,
}

impl Throttle {
    /// A throttle with these limits per `window`.
    #[must_use]
    pub fn new(
        store: RedisStore,
        max_per_username: u32,
        max_per_address: u32,
        window: Duration,
    ) -> Self {
        Self {
            store,
            max_per_username,
            max_per_address,
            window,
        }
    }

    fn keys(&self, username: &str, address: Option<IpAddr>) -> (String, Option<String>) {
        let prefix = self.store.prefix();
        let hashed = URL_SAFE_NO_PAD.encode(&Sha256::digest(username.as_bytes())[..16]);
        (
            prefix.throttle_username(&hashed),
            address.map(|address| prefix.throttle_address(&address.to_string())),
        )
    }

    /// `Some(wait)` when logins for `username` or from `address` are
    /// currently refused.
    ///
    /// # Errors
    ///
    /// Store failures (callers refuse the login: fail closed).
    pub async fn blocked(
        &self,
        username: &str,
        address: Option<IpAddr>,
    ) -> Result<Option<Duration>> {
        let (user_key, address_key) = self.keys(username, address);
        let mut checks = vec![(user_key, self.max_per_username)];
        checks.extend(address_key.map(|key| (key, self.max_per_address)));
        let keys: Vec<String> = checks.iter().map(|(key, _)| key.clone()).collect();
        let replies: Vec<redis::Value> = self
            .store
            .with_shared(|mut connection| async move {
                // One pipeline per key: on a Redis Cluster the two counters
                // live in different slots.
                let mut replies = Vec::with_capacity(keys.len() * 2);
                for key in &keys {
                    let pair: Vec<redis::Value> = redis::pipe()
                        .cmd("GET")
                        .arg(key)
                        .cmd("PTTL")
                        .arg(key)
                        .query_async(&mut connection)
                        .await?;
                    replies.extend(pair);
                }
                Ok(replies)
            })
            .await?;
        let wait = replies
            .chunks(2)
            .zip(&checks)
            .filter_map(|(pair, (_, limit))| {
                let count: Option<u64> = redis::from_redis_value(pair.first()?.clone()).ok()?;
                let ttl_ms: i64 = redis::from_redis_value(pair.get(1)?.clone()).ok()?;
                (count? >= u64::from(*limit))
                    .then(|| Duration::from_millis(u64::try_from(ttl_ms).unwrap_or(1000).max(1)))
            })
            .max();
        Ok(wait)
    }

    /// Counts one failed login.
    ///
    /// # Errors
    ///
    /// Store failures.
    pub async fn record_failure(&self, username: &str, address: Option<IpAddr>) -> Result<()> {
        let (user_key, address_key) = self.keys(username, address);
        let window = u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX);
        self.store
            .with_shared(|mut connection| async move {
                // One pipeline per key (different cluster slots). NX: the
                // window starts with the first failure and is not extended
                // by later ones.
                for key in std::iter::once(user_key).chain(address_key) {
                    let () = redis::pipe()
                        .cmd("INCR")
                        .arg(&key)
                        .ignore()
                        .cmd("PEXPIRE")
                        .arg(&key)
                        .arg(window)
                        .arg("NX")
                        .ignore()
                        .query_async(&mut connection)
                        .await?;
                }
                Ok(())
            })
            .await
    }

    /// Forgets the failures of `username` (after a successful login).
    ///
    /// # Errors
    ///
    /// Store failures.
    pub async fn reset(&self, username: &str) -> Result<()> {
        let (user_key, _) = self.keys(username, None);
        self.store
            .with_shared(|mut connection| async move {
                let _: i64 = redis::cmd("DEL")
                    .arg(&user_key)
                    .query_async(&mut connection)
                    .await?;
                Ok::<_, redis::RedisError>(())
            })
            .await
    }
}
