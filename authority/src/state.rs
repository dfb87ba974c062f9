//! What every handler shares: configuration, stores, the hasher.

use std::net::SocketAddr;
use std::sync::Arc;

use http::HeaderMap;
use token_broker::Connect;
use token_client::{CacheConfig, CachingReader, TokenCache};
use token_repository::{RedisStore, ResourceUri, Timestamp, Token, TokenReader as _, TokenRecord};

use crate::accounts::{Accounts, TrackedAccounts};
use crate::address::{self, ClientAddress};
use crate::config::Config;
use crate::password::{HashError, Hasher};
use crate::resources::Resources;
use crate::rotated::RotatedSessions;
use crate::throttle::{Limits, Throttle};
use crate::tracked::{Capacity, Tracked};

/// The authority's shared state. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    issuer: String,
    store: RedisStore,
    accounts: Accounts,
    hasher: Hasher,
    throttle: Throttle,
    connect: Connect,
    resources: Resources,
    default_audience: Vec<ResourceUri>,
    /// Token lookups through the middleware's tracking cache
    /// (`INTROSPECTION_CACHE`, serving processes only).
    tokens: Option<CachingReader<RedisStore>>,
    /// Verified clients and resources in memory (shared with `accounts`
    /// and `resources`).
    tracked: Option<Arc<TrackedAccounts>>,
    /// The sessions this process rotated last (`ROTATION_CACHE_SESSIONS`).
    rotated: RotatedSessions,
}

/// Why the authority could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The store could not be configured.
    #[error(transparent)]
    Store(#[from] token_repository::Error),
    /// The hashing parameters are unusable.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// Connected services could not be set up.
    #[error("connected services: {0}")]
    Connect(String),
    /// The issuer is not usable as a resource URI.
    #[error("ISSUER: {0}")]
    Issuer(token_repository::ResourceError),
}

impl AppState {
    /// Builds the state for `config` (does not contact Redis yet), without
    /// the caches of `INTROSPECTION_CACHE`: for admin commands, which run
    /// once and must see every record as stored.
    ///
    /// # Errors
    ///
    /// [`SetupError`] for an unusable Redis URL or argon2 parameters.
    pub fn new(config: Config) -> Result<Self, SetupError> {
        Self::build(config, false)
    }

    /// [`Self::new`] for a serving process: with `INTROSPECTION_CACHE` on,
    /// token lookups go through the middleware's tracking cache
    /// ([`TokenCache::tracking_for`]) and verified clients and resources
    /// are kept in [`Tracked`]; both start tracking in the background on
    /// the current runtime and read through until tracking is on.
    ///
    /// # Errors
    ///
    /// As [`Self::new`], and [`SetupError::Store`] outside a Tokio runtime.
    pub fn serving(config: Config) -> Result<Self, SetupError> {
        let cached = config.introspection_cache;
        Self::build(config, cached)
    }

    fn build(config: Config, cached: bool) -> Result<Self, SetupError> {
        let issuer = config
            .issuer
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.listen_addr));
        let store = RedisStore::new(config.redis())?;
        let hasher = Hasher::new(config.argon2, config.hash_workers, config.hash_queue)?;
        let (tokens, tracked) = if cached {
            let redis = config.redis();
            let cache = TokenCache::tracking_for(&redis, CacheConfig::new())?;
            (
                Some(CachingReader::new(store.clone(), cache)),
                Some(Tracked::tracking(
                    &redis,
                    Capacity {
                        clients: config.introspection_cache_clients,
                        users: config.introspection_cache_users,
                    },
                )?),
            )
        } else {
            (None, None)
        };
        let mut accounts = Accounts::new(store.clone());
        if let Some(tracked) = &tracked {
            accounts = accounts.with_tracked(Arc::clone(tracked));
        }
        let throttle = Throttle::new(
            store.clone(),
            accounts.deployment_key().clone(),
            Limits {
                per_name: config.login_max_failures,
                per_address: config.address_max_failures,
                window: config.login_failure_window,
                ipv6_prefix: config.ipv6_throttle_prefix,
            },
        );
        let connect = Connect::new(&config.connect, store.clone(), &issuer)
            .map_err(|error| SetupError::Connect(error.to_string()))?;
        let own = ResourceUri::parse(&issuer).map_err(SetupError::Issuer)?;
        let default_audience = config
            .default_audience
            .clone()
            .unwrap_or_else(|| vec![own.clone()]);
        let mut resources = Resources::new(store.clone(), own);
        if let Some(tracked) = &tracked {
            resources = resources.with_tracked(Arc::clone(tracked));
        }
        let rotated = RotatedSessions::new(config.rotation_cache_sessions);
        Ok(Self {
            inner: Arc::new(Inner {
                accounts,
                connect,
                resources,
                default_audience,
                config,
                issuer,
                store,
                hasher,
                throttle,
                tokens,
                tracked,
                rotated,
            }),
        })
    }

    /// The record of `token`: from the tracking cache when it is on and
    /// holds it, else from the store. For reads only; the store's writes
    /// (issue, rotate, revoke) never go through a cache.
    ///
    /// # Errors
    ///
    /// Store failures (callers fail closed).
    pub async fn lookup(&self, token: &Token) -> token_repository::Result<Option<TokenRecord>> {
        match &self.inner.tokens {
            Some(reader) => reader.lookup(token).await,
            None => self.inner.store.lookup(token).await,
        }
    }

    /// The record of the live access token `text`, when the token cache
    /// holds it for exactly this text ([`CachingReader::recall`]): no parse,
    /// no lookup. `None` sends the caller down [`Token::parse`] and
    /// [`Self::lookup`], which answer everything else.
    #[must_use]
    pub fn recall(&self, text: &str) -> Option<TokenRecord> {
        self.inner.tokens.as_ref()?.recall(text, Timestamp::now())
    }

    /// `token`'s session was revoked here: drops it from the token cache
    /// at once, without waiting for Redis's push, and from the sessions
    /// held after a rotation.
    pub fn forget(&self, token: &Token) {
        self.forget_cached(token);
        self.inner.rotated.forget(token);
    }

    /// `token`'s session was rotated here: drops it from the token cache at
    /// once (the rotation took it from the sessions held already).
    pub fn forget_cached(&self, token: &Token) {
        if let Some(reader) = &self.inner.tokens {
            reader.cache().forget(token);
        }
    }

    /// The sessions this process rotated last, by their new refresh token
    /// ([`crate::rotated`]).
    #[must_use]
    pub fn rotated(&self) -> &RotatedSessions {
        &self.inner.rotated
    }

    /// The token cache, when `INTROSPECTION_CACHE` is on (statistics).
    #[must_use]
    pub fn token_cache(&self) -> Option<&TokenCache> {
        self.inner.tokens.as_ref().map(CachingReader::cache)
    }

    /// Verified clients and resources in memory, when
    /// `INTROSPECTION_CACHE` is on.
    #[must_use]
    pub fn tracked(&self) -> Option<&Arc<TrackedAccounts>> {
        self.inner.tracked.as_ref()
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// This authority's public base URL: `ISSUER`, or `http://` and the
    /// listen address (build the state with the bound address when
    /// listening on port 0).
    #[must_use]
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The registry of resource servers (audiences); the authority itself
    /// is [`Resources::issuer`].
    #[must_use]
    pub fn resources(&self) -> &Resources {
        &self.inner.resources
    }

    /// The audience of tokens requested without `resource`
    /// (`DEFAULT_AUDIENCE`, or the authority itself).
    #[must_use]
    pub fn default_audience(&self) -> &[ResourceUri] {
        &self.inner.default_audience
    }

    /// The token repository.
    #[must_use]
    pub fn store(&self) -> &RedisStore {
        &self.inner.store
    }

    /// Users and clients.
    #[must_use]
    pub fn accounts(&self) -> &Accounts {
        &self.inner.accounts
    }

    /// The password hasher.
    #[must_use]
    pub fn hasher(&self) -> &Hasher {
        &self.inner.hasher
    }

    /// Connected services.
    #[must_use]
    pub fn connect(&self) -> &Connect {
        &self.inner.connect
    }

    /// Failed-login throttling.
    #[must_use]
    pub fn throttle(&self) -> &Throttle {
        &self.inner.throttle
    }

    /// The client's address: the peer, or the `X-Forwarded-For` entry our
    /// own proxies appended when configured to trust them (see
    /// [`crate::address`]).
    #[must_use]
    pub fn client_address(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> ClientAddress {
        let config = &self.inner.config;
        address::client_address(
            peer,
            headers,
            config
                .trust_forwarded_for
                .then_some(config.trusted_proxy_hops),
        )
    }
}
