//! Issuing tokens for tests, straight into a harness Redis.

use std::time::Duration;

use token_repository::{Grant, Holder, Minted, RedisConfig, RedisStore, Scopes, TokenWriter as _};

/// A grant for `username` (subject `user-<username>`) with `scopes`, a
/// 10-minute access token and a refresh token.
#[must_use]
pub fn grant(username: &str, scopes: &str) -> Grant {
    Grant {
        holder: Holder {
            subject: format!("user-{username}"),
            username: username.to_owned(),
            name: Some(format!("{username} (display)")),
            email: Some(format!("{username}@example.com")),
            scopes: Scopes::parse(scopes).expect("valid scopes"),
            client_id: Some("e2e".to_owned()),
        },
        access_ttl: Duration::from_secs(600),
        refresh_ttl: Some(Duration::from_secs(3600)),
        audience: token_repository::Audience::unrestricted(),
    }
}

/// The authority's store on `redis_url` with the default prefix.
///
/// # Panics
///
/// On an unparseable URL.
#[must_use]
pub fn store(redis_url: &str) -> RedisStore {
    RedisStore::new(RedisConfig::new(redis_url).timeout(Duration::from_secs(2))).expect("store")
}

/// Mints and stores the tokens of `grant`.
///
/// # Panics
///
/// When the store refuses.
pub async fn issue(store: &RedisStore, grant: &Grant) -> Minted {
    let minted = grant.mint().expect("mint");
    store.issue(&minted, None).await.expect("issue");
    minted
}
