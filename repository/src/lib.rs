//! The token service's shared data model and stores.
//!
//! The authority issues opaque [`Token`]s and records them here; every token
//! client (the middleware in downstream services) looks them up here,
//! read-only. A token is 256 random bits with a kind prefix and a checksum
//! ([`token`]); the store never sees the token itself, only its SHA-256
//! digest (truncated to 128 bits in session records), so a copy of the data
//! grants nothing.
//!
//! Two capabilities, two traits: [`TokenReader`] looks tokens up;
//! [`TokenWriter`] (the authority's) issues, rotates and revokes them. Two
//! implementations: [`RedisStore`] / [`RedisTokenReader`] (the product,
//! feature `redis`, on by default) and [`MemoryStore`] (for tests).
//!
//! ```
//! use std::time::Duration;
//! use token_repository::{Grant, Holder, MemoryStore, Scopes, Token, TokenReader, TokenWriter};
//!
//! # let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! # runtime.block_on(async {
//! let store = MemoryStore::new();
//! let grant = Grant {
//!     holder: Holder {
//!         subject: "7d1c1d5e-5b8a-4a8e-9d9e-3c1f0b1f7f00".into(),
//!         username: "alice".into(),
//!         name: Some("Alice".into()),
//!         email: None,
//!         scopes: Scopes::parse("read write").unwrap(),
//!         client_id: Some("web".into()),
//!     },
//!     access_ttl: Duration::from_secs(900),
//!     refresh_ttl: Some(Duration::from_secs(86_400)),
//!     audience: token_repository::Audience::unrestricted(),
//! };
//! let minted = grant.mint().unwrap();
//! store.issue(&minted, None).await.unwrap();
//!
//! // A resource server receives the text and checks it.
//! let text = minted.access.token.expose_secret().to_owned();
//! let token = Token::parse(&text).unwrap(); // format and checksum, no I/O
//! let record = store.lookup(&token).await.unwrap().expect("live");
//! assert!(record.holder.scopes.contains("write"));
//!
//! store.revoke_all(&record.holder.subject).await.unwrap();
//! assert!(store.lookup(&token).await.unwrap().is_none());
//! # });
//! ```
//!
//! # Bounded cost and the session format
//!
//! Tokens issued today (format 2) name their session: one Redis key per
//! session holds the holder and the current pair, so every per-token
//! operation is one `GET` or one O(1) script whatever the subject holds, and
//! a forged token costs one `GET` and never a script. A subject holds at
//! most a configurable number of sessions
//! ([`DEFAULT_MAX_SESSIONS_PER_SUBJECT`]); issuing beyond it revokes the one
//! that expires soonest ([`Issued::evicted`]). A rotation retires the
//! session's previous access token.
//!
//! **Migration from format 1** (one key per token): upgrade the readers (the
//! middleware, whose ACL user also needs `%R~P s:*`) first, then the
//! authority. Format-1 access tokens validate until they expire, and are
//! revoked by sign-out-everywhere; format-1 refresh tokens are refused, so
//! their holders sign in once more.
//!
//! # Layout
//!
//! - [`token`]: generating, formatting, parsing and digesting tokens.
//! - [`scope`]: RFC 6749 scope sets.
//! - [`audience`]: RFC 8707 audiences: resource URIs, their 4-byte tags.
//! - [`holder`]: [`Holder`], who a token was issued to and what it grants.
//! - [`record`]: [`TokenRecord`], what is known about a token, and [`Timestamp`].
//! - [`codec`]: the compact, versioned stored forms (sessions; format-1
//!   records).
//! - [`keys`]: the Redis key schema (prefix, hash tags, index members).
//! - [`store`]: the [`TokenReader`] / [`TokenWriter`] traits and what they
//!   take and answer ([`Grant`], [`Minted`], [`Rotation`], [`RefreshRefusal`], …).
//! - [`memory`]: the in-memory store, [`MemoryStore`].
//! - `redis` (feature `redis`): [`RedisStore`], [`RedisTokenReader`],
//!   [`RedisConfig`].
//! - `cas` (feature `redis`): compare-and-set on single string keys, for
//!   the authority's own records (accounts, connections).
//! - [`error`]: [`Error`] and [`Result`].

pub mod audience;
#[cfg(feature = "redis")]
pub mod cas;
pub mod codec;
pub mod error;
pub mod holder;
pub mod keys;
pub mod memory;
pub mod record;
#[cfg(feature = "redis")]
pub mod redis;
pub mod scope;
pub mod store;
pub mod token;

pub use audience::{Audience, MAX_AUDIENCE, ResourceError, ResourceTag, ResourceUri};
pub use error::{Error, Result};
pub use holder::Holder;
pub use keys::KeyPrefix;
pub use memory::MemoryStore;
pub use record::{Timestamp, TokenRecord};
#[cfg(feature = "redis")]
pub use redis::{RedisConfig, RedisStore, RedisTls, RedisTokenReader};
pub use scope::{ScopeError, Scopes};
pub use store::{
    DEFAULT_MAX_SESSIONS_PER_SUBJECT, Generation, Grant, Issued, Minted, NewToken, RefreshRefusal,
    RefreshState, Rotation, TokenReader, TokenWriter,
};
pub use token::{FormatError, SubjectTag, Token, TokenDigest, TokenKind, constant_time_eq};
