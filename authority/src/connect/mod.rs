//! Connected services: the authority as an OAuth 2.0 / OpenID Connect
//! client of external providers, on behalf of its users.
//!
//! A user connects a provider once in the browser (authorization code with
//! PKCE S256 and a signed, expiring, single-use `state`); the authority
//! keeps the provider's access and refresh tokens encrypted in Redis and
//! from then on hands a fresh access token to the user's workers and to
//! trusted service clients, refreshing it when needed, with one refresh in
//! flight per (user, provider) across all replicas.
//!
//! ```text
//! browser ──GET /v1/connect (bearer)──▶ authority: authorize URLs (state, PKCE)
//! browser ──authorize URL──▶ provider ──303 callback?code&state──▶ authority
//! authority ──code + verifier──▶ provider token endpoint ──▶ tokens, sealed in Redis
//! worker ──GET /v1/connect/{p}/token?expires=N (bearer)──▶ stored token, or refresh under the lock
//! ```
//!
//! # Layout
//!
//! - [`config`]: the `CONNECT_*` variables and `[[providers]]` tables.
//! - [`providers`]: the registry, endpoints (explicit or discovered).
//! - [`state`]: signed state and the PKCE pair.
//! - [`crypto`]: AEAD with key ids (rotation).
//! - [`record`]: the plaintext connection and its stored envelope.
//! - [`store`]: records, the refresh lock, used states, the index, in Redis.
//! - [`oauth_client`]: discovery, code exchange, refresh, revocation.
//! - [`handlers`]: the HTTP endpoints.
//! - [`keepalive`]: refreshing idle connections in the background.
//!
//! This module holds [`Connect`], the operations the handlers, the CLI and
//! the keep-alive share; its methods live by topic in `flow` (authorize
//! URLs, callback), `refresh` (handing out tokens, disconnecting),
//! [`keepalive`] and `reencrypt`.

pub mod config;
pub mod crypto;
mod flow;
pub mod handlers;
pub mod keepalive;
pub mod oauth_client;
pub mod providers;
pub mod record;
mod reencrypt;
mod refresh;
pub mod state;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use token_repository::{RedisStore, Timestamp};
use zeroize::Zeroizing;

use self::config::ConnectConfig;
use self::crypto::Keyring;
use self::oauth_client::{ProviderClient, ProviderError, TokenResponse};
use self::providers::{Endpoints, Provider, Registry};
use self::record::{Connection, Stored};
use self::state::StateSigner;
use self::store::ConnectionStore;

/// How long a "reconnect" tombstone is kept.
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(30 * 86_400);
/// How often a request waiting for another replica's refresh looks again.
const POLL_INTERVAL: Duration = Duration::from_millis(25);
/// Extra lifetime of the refresh lock beyond the provider timeout.
const LOCK_MARGIN: Duration = Duration::from_secs(5);
/// Default `expires` of the token endpoints, seconds.
pub const DEFAULT_MIN_VALIDITY: u64 = 60;
/// Largest `expires` accepted, seconds.
pub const MAX_MIN_VALIDITY: u64 = 86_400;

/// Why a connected-services operation failed; the handlers map it to a
/// [`crate::problem::Problem`].
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No provider of that name is configured.
    #[error("no such provider")]
    UnknownProvider,
    /// The user has no connection to the provider.
    #[error("not connected")]
    NotConnected,
    /// The connection cannot give a token any more; the user must connect
    /// again.
    #[error("{0}")]
    Reconnect(&'static str),
    /// More validity was asked for than a token fresh from the provider
    /// can still have when it is handed out.
    #[error("the provider's tokens live {lifetime_secs} seconds; ask for expires <= {max_secs}")]
    TooLong {
        /// The provider's token lifetime, whole seconds.
        lifetime_secs: u64,
        /// The largest `expires` a refresh can satisfy: whole seconds
        /// strictly less than the lifetime (a token is never handed out
        /// at the instant it was issued).
        max_secs: u64,
    },
    /// Another replica's refresh did not finish within the wait bound.
    #[error("a refresh of this connection is in progress")]
    Busy,
    /// The provider failed or refused.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// Redis failed.
    #[error(transparent)]
    Store(#[from] token_repository::Error),
    /// Connected services are not configured (keys missing).
    #[error("connected services are not configured")]
    NotConfigured,
    /// Something that should not fail did (randomness, a stored value).
    #[error("{0}")]
    Internal(String),
}

/// A provider as offered to a user: where to send the browser.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Offer {
    /// The provider's name.
    pub name: String,
    /// Its display name.
    pub display_name: String,
    /// Its logo.
    pub logo_url: Option<String>,
    /// The authorization URL with a fresh state; `null` while the provider
    /// cannot be reached (discovery failed).
    pub authorize_url: Option<String>,
}

/// What a user's connection to one provider is like (never the tokens).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnectionView {
    /// The provider.
    pub provider: String,
    /// `connected`, `needs_reconnect` or `not_connected`.
    pub status: &'static str,
    /// Why a reconnect is needed (`invalid_grant`, `expired`, `unreadable`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The granted scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// When the stored access token expires (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// Whether the authority holds a refresh token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refreshable: Option<bool>,
    /// When the user connected (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connected_at: Option<u64>,
    /// When the tokens were last obtained (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refreshed_at: Option<u64>,
    /// The provider account connected (the ID token's `sub`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

/// A provider access token handed out.
#[derive(Debug)]
pub struct ServedToken {
    /// The token.
    pub access_token: Zeroizing<String>,
    /// Its type.
    pub token_type: String,
    /// Whole seconds it stays valid.
    pub expires_in: u64,
    /// Its scope.
    pub scope: Option<String>,
    /// The user it belongs to (from the record).
    pub username: String,
    /// Whether serving it took a refresh.
    pub refreshed: bool,
}

/// What happened at the provider when a connection was forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Revocation {
    /// The provider accepted the revocation (RFC 7009).
    Revoked,
    /// The provider has no revocation endpoint.
    Unsupported,
    /// There was nothing to revoke (a reconnect tombstone).
    NotNeeded,
    /// The provider could not be reached or refused, or the record could
    /// not be decrypted; the tokens were forgotten anyway and expire at the
    /// provider.
    Failed,
}

/// Why a callback did not connect (the `reason` of the failure page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The user refused at the provider.
    AccessDenied,
    /// The provider redirected with another error.
    ProviderError,
    /// Missing, malformed or forged state, or one naming no provider.
    InvalidState,
    /// A genuine but expired state.
    ExpiredState,
    /// A state that was already used.
    ReplayedState,
    /// The provider is disabled.
    ProviderDisabled,
    /// `iss` is missing or names another issuer (RFC 9207).
    IssuerMismatch,
    /// No code in the callback, or the provider refused it.
    ExchangeFailed,
    /// The provider could not be reached.
    ProviderUnavailable,
    /// Redis or another internal failure.
    ServerError,
    /// The state is bound to another browser session than the one that
    /// presented it (or to none: an unbound state).
    SessionMismatch,
    /// The user signed in at the provider as another account than the one
    /// connected; the existing connection is kept.
    AccountMismatch,
}

impl Failure {
    /// The reason code sent to the failure page.
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::AccessDenied => "access_denied",
            Self::ProviderError => "provider_error",
            Self::InvalidState => "invalid_state",
            Self::ExpiredState => "expired_state",
            Self::ReplayedState => "replayed_state",
            Self::ProviderDisabled => "provider_disabled",
            Self::IssuerMismatch => "issuer_mismatch",
            Self::ExchangeFailed => "exchange_failed",
            Self::ProviderUnavailable => "provider_unavailable",
            Self::ServerError => "server_error",
            Self::SessionMismatch => "session_mismatch",
            Self::AccountMismatch => "account_mismatch",
        }
    }
}

/// Why a callback did not connect, as the failure page is told:
/// `reason=<failure>`, `provider=<name>` when the state named one, and
/// `error=<code>` with the provider's own OAuth error code when the
/// provider refused the authorization request or the code exchange with
/// one (never its free-text description).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The reason.
    pub failure: Failure,
    /// The provider the state named, if genuine.
    pub provider: Option<String>,
    /// The provider's RFC 6749 error code (`invalid_scope`, …): only
    /// `[a-z_]{1,64}`, see [`oauth_client::error_code`].
    pub error: Option<String>,
}

impl Refusal {
    /// A refusal for `failure`, naming `provider` (none: the state named
    /// none, or was not genuine).
    #[must_use]
    pub fn new(failure: Failure, provider: Option<String>) -> Self {
        Self {
            failure,
            provider,
            error: None,
        }
    }

    /// The same, with the provider's error code when it is one.
    #[must_use]
    pub fn with_error(mut self, code: Option<&str>) -> Self {
        self.error = code.and_then(oauth_client::error_code).map(str::to_owned);
        self
    }
}

/// The query of a callback.
#[derive(Debug, Default)]
pub struct Callback {
    /// `code`.
    pub code: Option<Zeroizing<String>>,
    /// `state`.
    pub state: Option<String>,
    /// `error`.
    pub error: Option<String>,
    /// `iss` (RFC 9207).
    pub iss: Option<String>,
    /// The binding of the browser session that presented it
    /// ([`crate::web::BrowserSession::binding`]), if signed in.
    pub browser: Option<String>,
}

/// Counts of a re-encryption run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReencryptReport {
    /// Records re-encrypted with the current key.
    pub reencrypted: usize,
    /// Records already under the current key.
    pub current: usize,
    /// Reconnect tombstones (nothing encrypted).
    pub tombstones: usize,
    /// Records no configured key opens.
    pub unreadable: usize,
    /// Records locked by a refresh the whole time (run again).
    pub busy: usize,
}

/// Counts of one keep-alive pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KeepAliveReport {
    /// Connections refreshed.
    pub refreshed: usize,
    /// Connections the provider refused (now "needs reconnect").
    pub rejected: usize,
    /// Refreshes that failed for now (retried next pass).
    pub failed: usize,
}

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
    registry: Registry,
    signer: Option<StateSigner>,
    keys: Option<Keyring>,
    store: ConnectionStore,
    client: ProviderClient,
    success_url: Option<String>,
    failure_url: Option<String>,
    lock_ttl: Duration,
    keepalive_interval: Duration,
    /// Where the next keep-alive pass goes on in the index (this
    /// replica's; `None`: from the oldest).
    keepalive_cursor: std::sync::Mutex<Option<store::IndexEntry>>,
    /// `ISSUER/connect/start`: where `GET /v1/connect`'s links point.
    start_url: String,
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
    /// When the HTTP client cannot be built.
    pub fn new(config: &ConnectConfig, store: RedisStore, issuer: &str) -> Result<Self, String> {
        let client = ProviderClient::with_roots(config.provider_timeout, &config.extra_roots)
            .map_err(|error| format!("cannot build the HTTP client for providers: {error}"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                registry: Registry::new(
                    &config.providers,
                    &format!("{issuer}/v1/connect/callback"),
                ),
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
                keepalive_cursor: std::sync::Mutex::new(None),
                start_url: format!("{issuer}/connect/start"),
            }),
        })
    }

    /// The provider registry.
    #[must_use]
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
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
        self.inner
            .registry
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
        for provider in self.inner.registry.all() {
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

    fn view(provider: &str, current: Current) -> ConnectionView {
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
                let usable = connection.usable(Timestamp::now());
                view.status = if usable {
                    "connected"
                } else {
                    "needs_reconnect"
                };
                view.reason = (!usable).then(|| "expired".to_owned());
                view.scope.clone_from(&connection.scope);
                view.expires_at = Some(secs(connection.expires_at));
                view.refreshable = Some(connection.refresh_token.is_some());
                view.connected_at = Some(secs(connection.connected_at));
                view.refreshed_at = Some(secs(connection.refreshed_at));
                view.account.clone_from(&connection.provider_subject);
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
        Ok(Self::view(&provider.config.name, current))
    }

    /// `subject`'s connections (usable or needing a reconnect), in
    /// configuration order.
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn connections(&self, subject: &str) -> Result<Vec<ConnectionView>, ConnectError> {
        let names: Vec<&str> = self
            .inner
            .registry
            .all()
            .map(|provider| provider.config.name.as_str())
            .collect();
        let values = self.inner.store.get_many(subject, &names).await?;
        Ok(names
            .iter()
            .zip(values)
            .filter(|(_, raw)| raw.is_some())
            .map(|(name, raw)| Self::view(name, self.decode(subject, name, raw)))
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
