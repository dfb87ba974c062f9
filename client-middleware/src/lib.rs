//! Tower middleware that authenticates requests by the token service's
//! opaque bearer tokens, checking them read-only against the shared token
//! repository.
//!
//! [`TokenAuthLayer`] wraps any `tower::Service<http::Request<B>>` — an axum
//! router or route, a tonic server, a hyper service. For each request it
//!
//! 1. finds the bearer token: `Authorization: Bearer …` (RFC 6750 §2.1),
//!    or a configured cookie;
//! 2. checks its format and checksum locally, so garbage, typos and refresh
//!    tokens never cost a Redis round trip;
//! 3. looks it up through a [`TokenReader`] (optionally behind a
//!    [`CachingReader`] whose entries Redis invalidates), bounded by a
//!    timeout;
//! 4. calls the inner service with the token's [`Principal`] in the request
//!    extensions, or answers the refusal itself:
//!
//! | request                                   | HTTP answer                                              | gRPC status         |
//! |-------------------------------------------|----------------------------------------------------------|---------------------|
//! | no token                                  | 401 `WWW-Authenticate: Bearer realm="…"`                 | `UNAUTHENTICATED`   |
//! | two credentials, empty or non-b64 token   | 400 `… error="invalid_request"`                          | `UNAUTHENTICATED`   |
//! | malformed, refresh, unknown, expired, revoked | 401 `… error="invalid_token"`                        | `UNAUTHENTICATED`   |
//! | live, but for another service (audience set with [`TokenAuthLayer::audience`]) | 401 `… error="invalid_token"` | `UNAUTHENTICATED` |
//! | lacking a scope ([`RequireScopeLayer`])   | 403 `… error="insufficient_scope", scope="…"`            | `PERMISSION_DENIED` |
//! | repository down or slower than the timeout | 503 `Retry-After: 1`: never a pass, never a hang        | `UNAVAILABLE`       |
//!
//! Set the service's resource URI with [`TokenAuthLayer::audience`] (RFC
//! 8707): a token issued for another service is then refused, so a service
//! that receives users' tokens cannot replay them here. Without it every
//! audience is accepted (development only; the layer logs a warning).
//!
//! A request is gRPC when its `content-type` starts with `application/grpc`;
//! it is answered with a trailers-only gRPC response (HTTP 200,
//! `grpc-status`). Refusal bodies are empty. Tokens never appear in
//! responses, logs or `Debug` output; logs name the token id.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//!
//! use http::{Request, Response, StatusCode};
//! use token_client::repository::{Grant, Holder, TokenWriter};
//! use token_client::{MemoryStore, Principal, Scopes, TokenAuthLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // The repository; in production
//! // `TokenAuthLayer::connect(RedisConfig::new(url))?.with_cache(CacheConfig::default())`.
//! let store = MemoryStore::new();
//! let minted = Grant {
//!     holder: Holder {
//!         subject: "user-1".into(),
//!         username: "alice".into(),
//!         name: Some("Alice".into()),
//!         email: None,
//!         scopes: Scopes::parse("read").unwrap(),
//!         client_id: None,
//!     },
//!     access_ttl: Duration::from_secs(900),
//!     refresh_ttl: None,
//!     audience: token_repository::Audience::unrestricted(),
//! }
//! .mint()
//! .unwrap();
//! store.issue(&minted, None).await.unwrap();
//!
//! let service = ServiceBuilder::new()
//!     .layer(TokenAuthLayer::new(store).with_realm("example"))
//!     .service_fn(|request: Request<()>| async move {
//!         let principal = request.extensions().get::<Principal>().unwrap();
//!         Ok::<_, Infallible>(Response::new(format!("hello, {}", principal.holder.username)))
//!     });
//!
//! let token = minted.access.token.expose_secret();
//! let request = Request::get("/").header("authorization", format!("Bearer {token}"));
//! let response = service.clone().oneshot(request.body(()).unwrap()).await.unwrap();
//! assert_eq!(response.body(), "hello, alice");
//!
//! let anonymous = service.oneshot(Request::new(())).await.unwrap();
//! assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(anonymous.headers()["www-authenticate"], "Bearer realm=\"example\"");
//! # }
//! ```
//!
//! With axum (feature `axum`), handlers take [`Principal`] or
//! `Option<Principal>` as extractors; `examples/protected_service.rs` is a
//! complete service.
//!
//! One dependency suffices: the repository types a service needs
//! ([`RedisConfig`], [`KeyPrefix`], [`Topology`], [`RedisTls`],
//! [`MemoryStore`], …) are re-exported here, and the whole repository crate
//! as [`repository`].
//!
//! # Layout
//!
//! - `layer`: [`TokenAuthLayer`] and [`TokenAuth`]: the middleware itself,
//!   which composes the lookup chain once.
//! - `future`: [`ResponseFuture`], which boxes nothing for a request decided
//!   before any await (a cache hit, a refusal).
//! - `lookup`: the chain's steps — the reader, measured, behind the cache —
//!   and the answer a cache hit gives without an allocation.
//! - `cache`: [`CachingReader`], the cache as a reader in front of another,
//!   with [`TokenCache`] (its entries, kept correct by the repository's
//!   invalidations) and [`CacheConfig`].
//! - `principal`: [`Principal`], what a handler learns about the holder.
//! - `bearer`: finding the token in a request (the `Authorization` header by
//!   [`token_bearer`]'s RFC 6750 grammar, or a cookie).
//! - `challenge`: every refusal, HTTP and gRPC, built in one place.
//! - `edge`: where a refusal becomes a response, logged and counted once.
//! - `scope`: [`RequireScopeLayer`] / [`RequireScope`], the scope guard.
//! - `extract` (feature `axum`): the extractors and [`MissingPrincipal`].
//! - `metrics`: request outcomes, cache results and repository latency
//!   through the `metrics` facade (see the crate README for the series).

mod bearer;
mod cache;
mod challenge;
mod edge;
#[cfg(feature = "axum")]
mod extract;
mod future;
mod layer;
mod lookup;
mod metrics;
mod principal;
#[cfg(test)]
mod proptests;
mod scope;

pub use cache::{CacheConfig, CacheStats, CachingReader, TokenCache};
#[cfg(feature = "axum")]
pub use extract::MissingPrincipal;
pub use future::ResponseFuture;
pub use layer::{TokenAuth, TokenAuthLayer};
pub use principal::Principal;
pub use scope::{RequireScope, RequireScopeLayer};
/// The token repository crate, for what the re-exports below leave out
/// (minting tokens in tests, say).
pub use token_repository as repository;
pub use token_repository::redis::Topology;
pub use token_repository::{
    Error as RepositoryError, Holder, KeyPrefix, MemoryStore, RedisConfig, RedisTls, Scopes,
    Timestamp, TokenReader, TokenRecord,
};
