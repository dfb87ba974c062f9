//! The token authority: exchanges verified credentials for opaque tokens
//! (OAuth 2.0) and is the only writer of the token repository.
//!
//! ```no_run
//! use token_authority::{AppState, Config, server};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::load(None)?; // environment (and an optional TOML file)
//! let listener = tokio::net::TcpListener::bind(config.listen_addr).await?;
//! let state = AppState::new(config)?;
//! server::run(listener, state, server::shutdown_signal()).await;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - [`config`]: the typed configuration, from environment and TOML.
//! - [`state`]: [`AppState`], what every handler shares.
//! - [`routes`]: the warp filter tree, body limits, rejection handling.
//! - [`server`]: [`server::run`] with graceful shutdown.
//! - [`envelope`]: what every request gets: its id, span, access-log line
//!   and metric, the request timeout, panic catching, security headers.
//! - [`oauth`]: token (RFC 6749), revocation (RFC 7009), introspection
//!   (RFC 7662), metadata (RFC 8414), the authorization endpoint and codes.
//! - [`web`]: the sign-in, consent and account pages and the browser
//!   session.
//! - [`api`]: `/v1/me`, sessions, the admin API, health, and the
//!   connected-services endpoints over the broker ([`token_broker`]).
//! - [`admin`]: account administration shared by the admin API and the CLI.
//! - [`authenticate`]: client and bearer authentication.
//! - [`credentials`]: reading Basic / body client credentials and bearer
//!   tokens out of requests.
//! - [`eviction`]: Redis must not evict keys (`maxmemory-policy`).
//! - [`form`]: strict form-urlencoded parsing.
//! - [`json_object`]: JSON objects written field by field (hot answers).
//! - [`problem`]: every error response.
//! - [`accounts`]: users and clients in Redis.
//! - [`resources`]: the registry of resource servers (RFC 8707 audiences).
//! - [`backup`]: export and import of accounts and connections.
//! - [`password`]: argon2id on a bounded blocking pool.
//! - [`throttle`]: failed-login throttling.
//! - [`cli`]: the binary's command line.
//! - [`logging`]: log output.
//! - [`metrics`]: Prometheus metrics.
//! - [`tracked`]: verified clients and resources in memory, invalidated by
//!   Redis tracking (introspection without a round trip).

pub mod accounts;
pub mod address;
pub mod admin;
pub mod api;
pub mod authenticate;
pub mod backup;
pub mod cli;
pub mod config;
mod connection;
pub mod credentials;
pub mod envelope;
pub mod eviction;
#[cfg(test)]
pub(crate) mod faults;
pub mod form;
pub mod json_object;
pub mod keynames;
pub mod logging;
pub mod metrics;
pub mod oauth;
pub mod password;
pub mod problem;
pub mod resources;
pub mod rotated;
pub mod routes;
pub mod server;
pub mod state;
#[cfg(test)]
pub(crate) mod test_support;
pub mod throttle;
pub mod tracked;
mod watch;
pub mod web;

#[cfg(test)]
mod proptests;

pub use config::Config;
/// The binary's global allocator (`authority/src/main.rs`, and the test and
/// bench builds of it): mimalloc, cheaper than glibc's malloc for a
/// request's many small, short-lived allocations (bench README, "The
/// allocator").
pub use mimalloc::MiMalloc as Allocator;
pub use state::AppState;
