//! [`Connect`]: the connected-services operations the authority's
//! handlers, its CLI and the keep-alive share. This module holds the type,
//! reading and describing connections; the other operations live by topic
//! in `flow` (authorize URLs, callback), `refresh` (handing out tokens,
//! disconnecting), `credentials` (what users store for providers of a
//! credentials kind), [`keepalive`] and `reencrypt`.

pub mod catalog;
mod credentials;
mod flow;
pub mod keepalive;
mod reencrypt;
mod refresh;
mod signin;

pub use signin::{LoginButton, SignedIn};

use std::sync::Arc;
use std::time::Duration;

use token_repository::{RedisStore, Timestamp};

use crate::config::ConnectConfig;
use crate::crypto::Keyring;
use crate::error::{ConnectError, SetupError};
use crate::oauth_client::{ProviderClient, ProviderError, TokenResponse};
use crate::providers::Endpoints;
use crate::record::{Connection, Stored};
use crate::registry::{Provider, Registry};
use crate::state::StateSigner;
use crate::store::{self, ConnectionStore};
use crate::views::ConnectionView;

/// How long a "reconnect" tombstone is kept.
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(30 * 86_400);
/// How often a request waiting for another replica's refresh looks again.
const POLL_INTERVAL: Duration = Duration::from_millis(25);
/// Extra lifetime of the refresh lock beyond the provider timeout.
const LOCK_MARGIN: Duration = Duration::from_secs(5);

/// What the stored value of a connection is.
enum Current {
    Absent,
    Tombstone(String),
    Unreadable,
    Live { raw: String, connection: Connection },
}

/// What a refresh under the lock came to.
enum Refreshed {
    /// These tokens are good (refreshed now, or by someone else).
    Served(Connection, bool),
    /// Nothing to do (keep-alive: refreshed recently enough).
    Skipped(Connection),
    /// Not tried: the refresh token is past its known expiry.
    Expired,
    /// The record changed under us (reconnect, disconnect): look again.
    Changed,
}

/// When a refresh under the lock is due.
#[derive(Clone, Copy)]
enum Need {
    /// Unless the access token is valid this long.
    ValidFor(Duration),
    /// Unless the tokens were obtained at or after this time.
    RefreshedSince(Timestamp),
}

/// The connected-services operations. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct Connect {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The providers now: the file's and the API's (swapped when the
    /// API's change).
    registry: std::sync::RwLock<Arc<Registry>>,
    /// The file's providers alone, and the default callback URL: what a
    /// reload starts from.
    files: Registry,
    default_redirect: String,
    /// The providers added at run time, and the change counter this
    /// replica's registry reflects.
    catalog: crate::catalog::CatalogStore,
    catalog_version: std::sync::Mutex<Option<i64>>,
    /// `CONNECT_PROVIDERS_POLL_MS`.
    catalog_poll: Duration,
    /// Wakes the watcher after a change made here.
    catalog_changed: tokio::sync::Notify,
    signer: Option<StateSigner>,
    keys: Option<Keyring>,
    store: ConnectionStore,
    client: ProviderClient,
    success_url: Option<String>,
    failure_url: Option<String>,
    lock_ttl: Duration,
    keepalive_interval: Duration,
    /// `CONNECT_EXPIRING_MARGIN`.
    expiring_margin: Duration,
    /// `CONNECT_RETURN_URLS`.
    return_urls: crate::return_url::ReturnUrls,
    /// Where the next keep-alive pass goes on in the index (this
    /// replica's; `None`: from the oldest).
    keepalive_cursor: std::sync::Mutex<Option<store::IndexEntry>>,
    /// `ISSUER/connect/start`: where `GET /v1/connect`'s links point.
    start_url: String,
    /// Sign-in providers' key sets (ID token signatures).
    key_sets: crate::id_token::KeySets,
}

/// Unix milliseconds to seconds.
fn secs(millis: u64) -> u64 {
    millis / 1000
}

/// `time - duration`, saturating at the epoch.
fn minus(time: Timestamp, duration: Duration) -> Timestamp {
    let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    Timestamp::from_unix_millis(time.as_unix_millis().saturating_sub(millis))
}

impl Connect {
    /// The operations for `config`, on `store`; `issuer` is the authority's
    /// public base URL (the default callback is `issuer/v1/connect/callback`).
    ///
    /// # Errors
    ///
    /// [`SetupError`] when the HTTP client cannot be built.
    pub fn new(
        config: &ConnectConfig,
        store: RedisStore,
        issuer: &str,
    ) -> Result<Self, SetupError> {
        let client = ProviderClient::with_roots(config.provider_timeout, &config.extra_roots)?;
        let default_redirect = format!("{issuer}/v1/connect/callback");
        let files = Registry::new(&config.providers, &default_redirect)
            .with_credentials(&config.credential_providers);
        Ok(Self {
            inner: Arc::new(Inner {
                registry: std::sync::RwLock::new(Arc::new(files.files_only())),
                files,
                default_redirect,
                catalog: crate::catalog::CatalogStore::new(store.clone()),
                catalog_version: std::sync::Mutex::new(None),
                catalog_poll: config.providers_poll,
                catalog_changed: tokio::sync::Notify::new(),
                signer: config
                    .state_key
                    .as_ref()
                    .map(|key| StateSigner::new(key, config.state_ttl)),
                keys: config.keys.clone(),
                store: ConnectionStore::new(store),
                client,
                success_url: config.success_url.clone(),
                failure_url: config.failure_url.clone(),
                lock_ttl: config.provider_timeout + LOCK_MARGIN,
                keepalive_interval: config.keepalive_interval,
                expiring_margin: config.expiring_margin,
                return_urls: config.return_urls.clone(),
                keepalive_cursor: std::sync::Mutex::new(None),
                start_url: format!("{issuer}/connect/start"),
                key_sets: crate::id_token::KeySets::default(),
            }),
        })
    }

    /// The providers now (a snapshot: the file's, and those added through
    /// the admin API as this replica last read them).
    #[must_use]
    pub fn registry(&self) -> Arc<Registry> {
        Arc::clone(
            &self
                .inner
                .registry
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// The connection store.
    #[must_use]
    pub fn store(&self) -> &ConnectionStore {
        &self.inner.store
    }

    /// How often the keep-alive runs.
    #[must_use]
    pub fn keepalive_interval(&self) -> Duration {
        self.inner.keepalive_interval
    }

    fn provider(&self, name: &str) -> Result<Arc<Provider>, ConnectError> {
        self.registry()
            .get(name)
            .cloned()
            .ok_or(ConnectError::UnknownProvider)
    }

    fn keys(&self) -> Result<&Keyring, ConnectError> {
        self.inner.keys.as_ref().ok_or(ConnectError::NotConfigured)
    }

    async fn endpoints(&self, provider: &Provider) -> Result<Arc<Endpoints>, ProviderError> {
        provider.endpoints(&self.inner.client).await
    }

    /// Resolves every provider's endpoints now (at start-up), logging
    /// failures; they are retried on first use.
    pub async fn discover_all(&self) {
        for provider in self.registry().all() {
            if let Err(error) = self.endpoints(provider).await {
                tracing::warn!(provider = %provider.config.name, %error, "provider discovery failed; retried on first use");
            }
        }
    }

    async fn read(&self, subject: &str, provider: &str) -> Result<Current, ConnectError> {
        let raw = self.inner.store.get(subject, provider).await?;
        Ok(self.decode(subject, provider, raw))
    }

    fn decode(&self, subject: &str, provider: &str, raw: Option<String>) -> Current {
        let Some(raw) = raw else {
            return Current::Absent;
        };
        let Some(keys) = self.inner.keys.as_ref() else {
            return Current::Unreadable;
        };
        match Stored::parse(&raw) {
            Ok(Stored::Reconnect { reason, .. }) => Current::Tombstone(reason),
            Ok(stored) => match stored.open(keys, subject, provider) {
                Ok(connection) => Current::Live { raw, connection },
                Err(error) => {
                    tracing::error!(%subject, %provider, %error, "a stored connection cannot be decrypted");
                    Current::Unreadable
                }
            },
            Err(error) => {
                tracing::error!(%subject, %provider, %error, "a stored connection is unreadable");
                Current::Unreadable
            }
        }
    }

    fn view(&self, provider: &str, current: Current) -> ConnectionView {
        let mut view = ConnectionView {
            provider: provider.to_owned(),
            status: "not_connected",
            reason: None,
            scope: None,
            expires_at: None,
            refreshable: None,
            connected_at: None,
            refreshed_at: None,
            account: None,
            refresh_expires_at: None,
            expiring: None,
        };
        match current {
            Current::Absent => {}
            Current::Tombstone(reason) => {
                view.status = "needs_reconnect";
                view.reason = Some(reason);
            }
            Current::Unreadable => {
                view.status = "needs_reconnect";
                view.reason = Some("unreadable".to_owned());
            }
            Current::Live { connection, .. } => {
                let now = Timestamp::now();
                let usable = connection.usable(now);
                view.status = if usable {
                    "connected"
                } else {
                    "needs_reconnect"
                };
                view.reason = (!usable).then(|| "expired".to_owned());
                view.scope.clone_from(&connection.scope);
                view.expires_at = Some(secs(connection.expires_at));
                view.refreshable = Some(connection.refreshable(now));
                view.connected_at = Some(secs(connection.connected_at));
                view.refreshed_at = Some(secs(connection.refreshed_at));
                view.account.clone_from(&connection.provider_subject);
                view.refresh_expires_at = connection.refresh_expires_at.map(secs);
                view.expiring = Some(connection.ends_at().is_some_and(|end| {
                    now.until(Timestamp::from_unix_millis(end)) < self.inner.expiring_margin
                }));
            }
        }
        view
    }

    /// Whether `subject` has a usable connection to `provider`.
    ///
    /// # Errors
    ///
    /// Unknown provider, Redis failures.
    pub async fn status(
        &self,
        subject: &str,
        provider: &str,
    ) -> Result<ConnectionView, ConnectError> {
        let provider = self.provider(provider)?;
        let current = self.read(subject, &provider.config.name).await?;
        Ok(self.view(&provider.config.name, current))
    }

    /// `subject`'s connections (usable or needing a reconnect), in
    /// configuration order.
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn connections(&self, subject: &str) -> Result<Vec<ConnectionView>, ConnectError> {
        let registry = self.registry();
        let names: Vec<&str> = registry
            .all()
            .map(|provider| provider.config.name.as_str())
            .collect();
        let values = self.inner.store.get_many(subject, &names).await?;
        Ok(names
            .iter()
            .zip(values)
            .filter(|(_, raw)| raw.is_some())
            .map(|(name, raw)| self.view(name, self.decode(subject, name, raw)))
            .collect())
    }
}

/// When an access token from `tokens` expires (Unix ms): its `expires_in`
/// (capped at a year), or the provider's `default_expires_in`.
fn expiry(now: Timestamp, tokens: &TokenResponse, default: Duration) -> u64 {
    let lifetime = tokens.expires_in.map_or(default, |seconds| {
        Duration::from_secs(seconds.min(31_536_000))
    });
    now.saturating_add(lifetime).as_unix_millis()
}

/// When the refresh token after `tokens` expires (Unix ms), when known:
/// the response's `refresh_expires_in` (capped at ten years); for a new
/// refresh token without it, the provider's `refresh_token_expires_in`;
/// for a refresh token kept (not rotated), its `previous` expiry.
fn refresh_expiry(
    now: Timestamp,
    tokens: &TokenResponse,
    declared: Option<Duration>,
    previous: Option<u64>,
) -> Option<u64> {
    let lifetime = match tokens.refresh_expires_in {
        Some(seconds) => Some(Duration::from_secs(seconds.min(315_360_000))),
        None if tokens.refresh_token.is_some() => declared,
        None => return previous,
    };
    lifetime.map(|lifetime| now.saturating_add(lifetime).as_unix_millis())
}
