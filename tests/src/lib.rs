//! End-to-end tests of the token service, and the helpers they share.
//!
//! Every test starts its own private `redis-server` through
//! `token_test_harness` and its own processes on free loopback ports.
//!
//! # Layout
//!
//! - [`acl`]: the compose demo's Redis ACL template rendered with fresh
//!   passwords.
//! - [`process`]: run one of the workspace's binaries as a child process,
//!   learn its address from its `listening on` line, kill it on drop.
//! - [`authority`]: the real `token-authority` binary as a process, its CLI,
//!   and a client for its endpoints.
//! - [`browser`]: a cookie-keeping HTTP browser for the authority's pages.
//! - [`oidc`]: the local OpenID Connect provider (`tests/oidc-provider`) as
//!   a process, and a cookie-jar "browser" for its authorization flow.
//! - [`connected`]: a connected-services setup (Redis, provider, the
//!   authority's configuration file) and the steps tests share.
//! - [`protected`]: the middleware's example service (`protected-service`)
//!   as a process, and a client for its routes.
//! - [`redis_admin`]: what the tests ask Redis directly (command counters,
//!   clients).
//! - [`snapshot`]: the complete contents of a Redis, for "nothing changed".
//! - [`tokens`]: issue tokens straight into a harness Redis with the
//!   repository's writer.

pub mod acl;
pub mod authority;
pub mod browser;
pub mod connected;
pub mod oidc;
pub mod process;
pub mod protected;
pub mod redis_admin;
pub mod snapshot;
pub mod tokens;

/// The password of the authority's test users (set by [`connected`]'s
/// setup; typed by [`oidc`]'s browser at the authority's sign-in page).
pub const PASSWORD: &str = "correct horse battery";

pub use authority::Authority;
