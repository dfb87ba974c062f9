//! Throttling of failed logins and failed client authentication, in Redis
//! (so that every authority replica counts the same failures).
//!
//! Fixed windows: the first counted attempt starts a counter that expires
//! after the window (`PEXPIRE … NX`: later ones do not extend it).
//!
//! - **Logins** are counted *before* the password is checked (`INCR`), per
//!   username and per client address: the attempt that makes a counter
//!   exceed its limit, and every later one, is refused with 429 and
//!   `Retry-After` without checking the password. A burst of concurrent
//!   guesses therefore gets exactly the limit checked, not one each. A
//!   successful login deletes the username's counter and takes its own
//!   attempt back from the address's.
//! - **Client authentication** failures are counted after the (cheap)
//!   check, per client id and per address; once a counter passes its
//!   limit, failures answer 429 instead of 401, and secrets still stored
//!   as argon2 hashes are not hashed at all. A correct secret stored as a
//!   keyed digest always authenticates: a flood of wrong secrets cannot
//!   lock a client out.
//!
//! Logins and client authentication share the per-address counter. IPv6
//! clients are counted per network (`IPV6_THROTTLE_PREFIX`, a /64 by
//! default: one subscriber's whole allocation); requests whose forwarded
//! address is unknown share one counter of their own. Key names hold keyed
//! digests, never a username, client id or address.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use token_repository::{RedisStore, Result};

use crate::address::ClientAddress;
use crate::keynames::{DeploymentKey, NameKind};

/// Takes one counted attempt back, if its counter still exists (a counter
/// that expired meanwhile is not brought back without a TTL).
static UNCOUNT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('DECR', KEYS[1]) end \
         return 0",
    )
});

/// Counts failures and says when to refuse.
#[derive(Debug, Clone)]
pub struct Throttle {
    store: RedisStore,
    key: Arc<DeploymentKey>,
    max_per_username: u32,
    max_per_address: u32,
    window: Duration,
    ipv6_prefix: u8,
}

/// The limits of a [`Throttle`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Failed logins per username (and failed authentications per client
    /// id) per window.
    pub per_name: u32,
    /// Failures per address (or IPv6 network) per window.
    pub per_address: u32,
    /// The window.
    pub window: Duration,
    /// IPv6 addresses are counted per network of this prefix length.
    pub ipv6_prefix: u8,
}

impl Throttle {
    /// A throttle with these limits; key names are digests under `key`.
    #[must_use]
    pub fn new(store: RedisStore, key: Arc<DeploymentKey>, limits: Limits) -> Self {
        Self {
            store,
            key,
            max_per_username: limits.per_name,
            max_per_address: limits.per_address,
            window: limits.window,
            ipv6_prefix: limits.ipv6_prefix,
        }
    }

    async fn address_key(&self, address: ClientAddress) -> Result<String> {
        let bucket = address
            .throttle_network(self.ipv6_prefix)
            .map_or_else(|| "unknown".to_owned(), |network| network.to_string());
        let name = self.key.name(NameKind::Address, &bucket).await?;
        Ok(self.store.prefix().throttle_address(&name))
    }

    async fn username_key(&self, username: &str) -> Result<String> {
        let name = self.key.name(NameKind::User, username).await?;
        Ok(self.store.prefix().throttle_username(&name))
    }

    async fn client_key(&self, client_id: &str) -> Result<String> {
        let name = self.key.name(NameKind::Client, client_id).await?;
        Ok(self.store.prefix().throttle_client(&name))
    }

    /// Counts one attempt on each of `counters`; `Some(wait)` when one of
    /// them is now past its limit.
    async fn count(&self, counters: Vec<(String, u32)>) -> Result<Option<Duration>> {
        let window = u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX);
        let keys: Vec<String> = counters.iter().map(|(key, _)| key.clone()).collect();
        let replies: Vec<(u64, i64)> = self
            .store
            .with_shared(|mut connection| async move {
                // One pipeline per key: on a Redis Cluster the counters live
                // in different slots. INCR hands every concurrent attempt a
                // count of its own.
                let mut replies = Vec::with_capacity(keys.len());
                for key in &keys {
                    let (count, ttl): (u64, i64) = redis::pipe()
                        .cmd("INCR")
                        .arg(key)
                        .cmd("PEXPIRE")
                        .arg(key)
                        .arg(window)
                        .arg("NX")
                        .ignore()
                        .cmd("PTTL")
                        .arg(key)
                        .query_async(&mut connection)
                        .await?;
                    replies.push((count, ttl));
                }
                Ok(replies)
            })
            .await?;
        Ok(replies
            .iter()
            .zip(&counters)
            .filter(|((count, _), (_, limit))| *count > u64::from(*limit))
            .map(|((_, ttl), _)| Duration::from_millis(u64::try_from(*ttl).unwrap_or(1000).max(1)))
            .max())
    }

    /// `Some(wait)` when one of `counters` is past its limit (nothing is
    /// counted).
    async fn check(&self, counters: Vec<(String, u32)>) -> Result<Option<Duration>> {
        let keys: Vec<String> = counters.iter().map(|(key, _)| key.clone()).collect();
        let replies: Vec<(Option<u64>, i64)> = self
            .store
            .with_shared(|mut connection| async move {
                let mut replies = Vec::with_capacity(keys.len());
                for key in &keys {
                    let pair: (Option<u64>, i64) = redis::pipe()
                        .cmd("GET")
                        .arg(key)
                        .cmd("PTTL")
                        .arg(key)
                        .query_async(&mut connection)
                        .await?;
                    replies.push(pair);
                }
                Ok(replies)
            })
            .await?;
        Ok(replies
            .iter()
            .zip(&counters)
            .filter(|((count, _), (_, limit))| {
                count.is_some_and(|count| count >= u64::from(*limit))
            })
            .map(|((_, ttl), _)| Duration::from_millis(u64::try_from(*ttl).unwrap_or(1000).max(1)))
            .max())
    }

    /// Counts a login attempt of `username` from `address` before its
    /// password is checked; `Some(wait)` when it must be refused.
    ///
    /// # Errors
    ///
    /// Store failures (callers refuse the login: fail closed).
    pub async fn begin_login(
        &self,
        username: &str,
        address: ClientAddress,
    ) -> Result<Option<Duration>> {
        let counters = vec![
            (self.username_key(username).await?, self.max_per_username),
            (self.address_key(address).await?, self.max_per_address),
        ];
        self.count(counters).await
    }

    /// After a successful login: forgets the failures of `username`, and
    /// takes the attempt back from `address`'s count.
    ///
    /// # Errors
    ///
    /// Store failures.
    pub async fn login_succeeded(&self, username: &str, address: ClientAddress) -> Result<()> {
        let user_key = self.username_key(username).await?;
        let address_key = self.address_key(address).await?;
        self.store
            .with_shared(|mut connection| async move {
                let _: i64 = redis::cmd("DEL")
                    .arg(&user_key)
                    .query_async(&mut connection)
                    .await?;
                let _: i64 = UNCOUNT
                    .key(&address_key)
                    .invoke_async(&mut connection)
                    .await?;
                Ok::<_, redis::RedisError>(())
            })
            .await
    }

    /// Takes back a login attempt that was counted but not decided (the
    /// hashing pool refused it, or the store failed).
    ///
    /// # Errors
    ///
    /// Store failures.
    pub async fn login_undecided(&self, username: &str, address: ClientAddress) -> Result<()> {
        let keys = [
            self.username_key(username).await?,
            self.address_key(address).await?,
        ];
        self.store
            .with_shared(|mut connection| async move {
                for key in &keys {
                    let _: i64 = UNCOUNT.key(key).invoke_async(&mut connection).await?;
                }
                Ok::<_, redis::RedisError>(())
            })
            .await
    }

    /// `Some(wait)` when failed authentications of `client_id` or from
    /// `address` are past their limit (checked before an expensive hash).
    ///
    /// # Errors
    ///
    /// Store failures.
    pub async fn client_blocked(
        &self,
        client_id: &str,
        address: ClientAddress,
    ) -> Result<Option<Duration>> {
        let counters = vec![
            (self.client_key(client_id).await?, self.max_per_username),
            (self.address_key(address).await?, self.max_per_address),
        ];
        self.check(counters).await
    }

    /// Counts a failed authentication of `client_id` from `address`;
    /// `Some(wait)` when a counter is now past its limit.
    ///
    /// # Errors
    ///
    /// Store failures.
    pub async fn client_failed(
        &self,
        client_id: &str,
        address: ClientAddress,
    ) -> Result<Option<Duration>> {
        let counters = vec![
            (self.client_key(client_id).await?, self.max_per_username),
            (self.address_key(address).await?, self.max_per_address),
        ];
        self.count(counters).await
    }
}
