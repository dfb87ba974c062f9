//! The token broker of connected services: the authority as an OAuth 2.0 /
//! OpenID Connect *client* of external providers, on behalf of its users.
//!
//! A user connects a provider once in the browser (authorization code with
//! PKCE S256 and a signed, expiring, single-use `state`); the broker keeps
//! the provider's access and refresh tokens encrypted in Redis and from
//! then on hands a fresh access token to the user's workers and to trusted
//! service clients, refreshing it when needed, with one refresh in flight
//! per (user, provider) across all replicas.
//!
//! ```text
//! browser ──GET /v1/connect (bearer)──▶ authority: authorize URLs (state, PKCE)
//! browser ──authorize URL──▶ provider ──303 callback?code&state──▶ authority
//! authority ──code + verifier──▶ provider token endpoint ──▶ tokens, sealed in Redis
//! worker ──GET /v1/connect/{p}/token?expires=N (bearer)──▶ stored token, or refresh under the lock
//! ```
//!
//! This crate has no HTTP server: the authority routes those requests
//! (`authority/src/api/connect.rs`), authenticates the caller, and calls
//! [`Connect`]; its errors ([`ConnectError`], [`Refusal`]) become responses
//! there.
//!
//! ```no_run
//! use std::time::Duration;
//! use token_broker::{Connect, ConnectConfig};
//! use token_repository::{RedisConfig, RedisStore};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ConnectConfig::default(); // or ConnectConfig::load(…) from CONNECT_* and [[providers]]
//! let store = RedisStore::new(RedisConfig::new("redis://127.0.0.1:6379"))?;
//! let connect = Connect::new(&config, store, "https://auth.example.org")?;
//! let token = connect
//!     .token("user-subject", "orcid", Duration::from_secs(60))
//!     .await?;
//! println!("{} seconds left", token.expires_in);
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - [`settings`]: the `CONNECT_*` settings (name, default, bounds, help).
//! - [`config`]: [`ConnectConfig`], from those settings and the
//!   `[[providers]]` tables.
//! - [`providers`]: the `[[providers]]` file format, validated, and where
//!   a provider's endpoints are.
//! - [`credentials`]: providers of kind `password` or `api_key`, what
//!   users store for them, sealed.
//! - [`oauth_client`]: discovery, code exchange, refresh, revocation.
//! - [`login`]: a provider's sign-in fields (`login`, `login_options`,
//!   `provision`, `default_scopes`, `scope_map`).
//! - [`id_token`]: ID token verification for sign-in, with the providers'
//!   key sets cached.
//! - [`registry`]: the providers now (the file's and the API's) and their
//!   endpoints (explicit or discovered once).
//! - [`catalog`]: providers added at run time through the admin API,
//!   stored in Redis with sealed secrets and a change counter.
//! - [`state`]: signed state and the PKCE pair.
//! - [`return_url`]: the `CONNECT_RETURN_URLS` allow-list of `return_to`.
//! - [`crypto`]: AEAD with key ids (rotation).
//! - [`record`]: the plaintext connection and its stored envelope.
//! - [`store`]: records, the refresh lock, used states, the index, in Redis.
//! - [`connect`]: [`Connect`], the operations: authorize URLs and the
//!   callback, sign-in with a provider, handing out tokens (refresh under the lock), disconnecting,
//!   the keep-alive ([`connect::keepalive`]), re-encryption, and the
//!   run-time providers ([`connect::catalog`]: the admin API's operations,
//!   the reload every replica runs, removals).
//! - [`callback`]: what a callback brings and why it may not connect.
//! - [`views`]: what the operations answer.
//! - [`error`]: [`ConnectError`] and [`SetupError`].
//! - [`metrics`]: the broker's Prometheus series.

pub mod callback;
pub mod catalog;
pub mod config;
pub mod connect;
pub mod credentials;
pub mod crypto;
pub mod error;
pub mod id_token;
pub mod login;
pub mod metrics;
pub mod oauth_client;
pub mod providers;
pub mod record;
pub mod registry;
pub mod return_url;
pub mod settings;
pub mod state;
pub mod store;
pub mod views;

pub use callback::{Callback, Failure, Refusal};
pub use catalog::CatalogError;
pub use config::ConnectConfig;
pub use connect::{Connect, TOMBSTONE_TTL, keepalive};
pub use error::{ConnectError, SetupError};
pub use views::{
    ConnectionView, CredentialView, KeepAliveReport, Offer, ProviderView, ReencryptReport,
    Revocation, ServedToken,
};

#[cfg(test)]
mod proptests;
