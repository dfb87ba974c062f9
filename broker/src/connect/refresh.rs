//! Handing out provider tokens: from storage while they are valid long
//! enough, otherwise refreshed under the connection's lock (one refresh in
//! flight per connection across every replica; the others poll the record
//! until the new tokens are there), and forgetting connections.

use std::time::{Duration, Instant};

use token_repository::Timestamp;
use zeroize::Zeroizing;

use super::{
    Connect, Current, Need, POLL_INTERVAL, Refreshed, TOMBSTONE_TTL, expiry, refresh_expiry,
};
use crate::error::ConnectError;
use crate::metrics;
use crate::record::{Connection, Stored};
use crate::registry::Provider;
use crate::store;
use crate::views::{Revocation, ServedToken};

impl Connect {
    /// A provider access token for `subject` valid for at least
    /// `at_least`: the stored one while it is, otherwise a refreshed one
    /// (one refresh at a time per connection across replicas; the others
    /// wait for its result).
    ///
    /// # Errors
    ///
    /// [`ConnectError`]: not connected, reconnect needed (the provider
    /// refused the refresh token), too long, busy, provider or Redis down.
    pub async fn token(
        &self,
        subject: &str,
        provider: &str,
        at_least: Duration,
    ) -> Result<ServedToken, ConnectError> {
        let provider = self.provider(provider)?;
        let name = provider.config.name.as_str();
        let deadline = Instant::now() + self.inner.lock_ttl + Duration::from_secs(1);
        loop {
            match self.read(subject, name).await? {
                Current::Absent => return Err(ConnectError::NotConnected),
                Current::Tombstone(_) => {
                    return Err(ConnectError::Reconnect(
                        "the provider refused the stored refresh token; connect the service again",
                    ));
                }
                Current::Unreadable => {
                    return Err(ConnectError::Reconnect(
                        "the stored connection cannot be read; connect the service again",
                    ));
                }
                Current::Live { connection, .. } => {
                    let now = Timestamp::now();
                    if connection.valid_for(now, at_least) {
                        metrics::connect_token(name, "stored");
                        return Ok(serve(&connection, now, false));
                    }
                    refreshable(&connection, now, at_least)?;
                }
            }
            if let Some(lock) = self
                .inner
                .store
                .try_lock(subject, name, self.inner.lock_ttl)
                .await?
            {
                let result = self
                    .refresh_locked(subject, &provider, Need::ValidFor(at_least))
                    .await;
                if let Err(error) = self.inner.store.unlock(lock).await {
                    tracing::warn!(%error, "cannot release a refresh lock; it expires by itself");
                }
                match result? {
                    Refreshed::Served(connection, refreshed) => {
                        let now = Timestamp::now();
                        if !connection.valid_for(now, at_least) {
                            // Only when the provider shortened its tokens
                            // since the last refresh: `refreshable` let
                            // through only what a fresh token satisfies.
                            return Err(too_long(connection.lifetime()));
                        }
                        metrics::connect_token(
                            name,
                            if refreshed { "refreshed" } else { "stored" },
                        );
                        return Ok(serve(&connection, now, refreshed));
                    }
                    Refreshed::Expired => return Err(expired()),
                    Refreshed::Skipped(_) | Refreshed::Changed => {}
                }
            }
            if Instant::now() >= deadline {
                tracing::warn!(%subject, provider = %name, "gave up waiting for a refresh in progress");
                return Err(ConnectError::Busy);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Refreshes a connection while holding its lock, unless `need` is
    /// already met by what is stored (another replica refreshed first).
    pub(super) async fn refresh_locked(
        &self,
        subject: &str,
        provider: &Provider,
        need: Need,
    ) -> Result<Refreshed, ConnectError> {
        let name = provider.config.name.as_str();
        let keys = self.keys()?;
        let key = self.inner.store.key(subject, name);
        let raw = self.inner.store.get_key(&key).await?;
        let (raw, connection) = match self.decode(subject, name, raw) {
            Current::Absent => return Err(ConnectError::NotConnected),
            Current::Tombstone(_) => {
                return Err(ConnectError::Reconnect(
                    "the provider refused the stored refresh token; connect the service again",
                ));
            }
            Current::Unreadable => {
                return Err(ConnectError::Reconnect(
                    "the stored connection cannot be read; connect the service again",
                ));
            }
            Current::Live { raw, connection } => (raw, connection),
        };
        let now = Timestamp::now();
        match need {
            Need::ValidFor(at_least) if connection.valid_for(now, at_least) => {
                return Ok(Refreshed::Served(connection, false));
            }
            Need::RefreshedSince(since) if connection.refreshed_at >= since.as_unix_millis() => {
                return Ok(Refreshed::Skipped(connection));
            }
            _ => {}
        }
        if connection.refresh_expired(now) {
            // Past its known lifetime: the provider is not asked.
            return Ok(Refreshed::Expired);
        }
        let Some(refresh_token) = connection.refresh_token.clone().map(Zeroizing::new) else {
            return Err(ConnectError::Reconnect(
                "the provider issued no refresh token and the access token has expired; connect the service again",
            ));
        };
        let endpoints = self.endpoints(provider).await?;
        let started = Instant::now();
        match self
            .inner
            .client
            .refresh(&provider.config, &endpoints, &refresh_token)
            .await
        {
            Ok(tokens) => {
                let now = Timestamp::now();
                let rotated = tokens.refresh_token.is_some();
                let next = Connection {
                    username: connection.username.clone(),
                    access_token: tokens.access_token.to_string(),
                    token_type: tokens.token_type.clone(),
                    refresh_token: tokens
                        .refresh_token
                        .as_ref()
                        .map(|token| token.to_string())
                        .or_else(|| connection.refresh_token.clone()),
                    expires_at: expiry(now, &tokens, provider.config.default_expires_in),
                    scope: tokens.scope.clone().or_else(|| connection.scope.clone()),
                    connected_at: connection.connected_at,
                    refreshed_at: now.as_unix_millis(),
                    provider_subject: connection.provider_subject.clone(),
                    refresh_expires_at: refresh_expiry(
                        now,
                        &tokens,
                        provider.config.refresh_token_expires_in,
                        connection.refresh_expires_at,
                    ),
                };
                // Re-encrypting on every write is the key-rotation path.
                let sealed = Stored::seal(keys, subject, name, &next)
                    .map_err(|error| ConnectError::Internal(error.to_string()))?;
                if !self
                    .inner
                    .store
                    .replace(&key, &raw, &sealed.to_text(), None)
                    .await?
                {
                    tracing::warn!(%subject, provider = %name, "the connection changed during a refresh; the refreshed tokens are dropped");
                    return Ok(Refreshed::Changed);
                }
                if let Err(error) = self.inner.store.index(subject, name, now).await {
                    tracing::warn!(%error, "cannot update the keep-alive index");
                }
                metrics::connect_refresh(name, "refreshed", started.elapsed());
                tracing::info!(%subject, provider = %name, rotated, "provider token refreshed");
                Ok(Refreshed::Served(next, true))
            }
            Err(error) if error.is_invalid_grant() => {
                metrics::connect_refresh(name, "rejected", started.elapsed());
                let tombstone = Stored::Reconnect {
                    sub: subject.to_owned(),
                    reason: "invalid_grant".to_owned(),
                    at: Timestamp::now().as_unix_millis(),
                };
                if self
                    .inner
                    .store
                    .replace(&key, &raw, &tombstone.to_text(), Some(TOMBSTONE_TTL))
                    .await?
                {
                    if let Err(error) = self.inner.store.unindex(subject, name).await {
                        tracing::warn!(%error, "cannot update the keep-alive index");
                    }
                    tracing::warn!(%subject, provider = %name, "the provider refused the refresh token; connection removed, the user must reconnect");
                }
                Err(ConnectError::Reconnect(
                    "the provider refused the stored refresh token; connect the service again",
                ))
            }
            Err(error) => {
                metrics::connect_refresh(name, "failed", started.elapsed());
                tracing::warn!(%subject, provider = %name, %error, "refresh failed");
                Err(ConnectError::Provider(error))
            }
        }
    }

    /// Takes a connection's lock, waiting for a refresh in progress.
    pub(super) async fn lock(
        &self,
        subject: &str,
        provider: &str,
    ) -> Result<store::Lock, ConnectError> {
        let deadline = Instant::now() + self.inner.lock_ttl + Duration::from_secs(1);
        loop {
            if let Some(lock) = self
                .inner
                .store
                .try_lock(subject, provider, self.inner.lock_ttl)
                .await?
            {
                return Ok(lock);
            }
            if Instant::now() >= deadline {
                return Err(ConnectError::Busy);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Forgets `subject`'s connection to `provider` and revokes its tokens
    /// at the provider when it has a revocation endpoint (RFC 7009). The
    /// tokens are forgotten first, so the authority stops handing them out
    /// even when the provider cannot be reached.
    ///
    /// # Errors
    ///
    /// Unknown provider, not connected, busy, Redis failures.
    pub async fn disconnect(
        &self,
        subject: &str,
        provider: &str,
    ) -> Result<Revocation, ConnectError> {
        let provider = self.provider(provider)?;
        let name = provider.config.name.as_str();
        let lock = self.lock(subject, name).await?;
        let removed = async {
            let key = self.inner.store.key(subject, name);
            let raw = self
                .inner
                .store
                .get_key(&key)
                .await?
                .ok_or(ConnectError::NotConnected)?;
            if !self.inner.store.delete_if(&key, &raw).await? {
                return Err(ConnectError::Busy);
            }
            if let Err(error) = self.inner.store.unindex(subject, name).await {
                tracing::warn!(%error, "cannot update the keep-alive index");
            }
            Ok(raw)
        }
        .await;
        if let Err(error) = self.inner.store.unlock(lock).await {
            tracing::warn!(%error, "cannot release a refresh lock; it expires by itself");
        }
        let raw = removed?;
        let revocation = match self.decode(subject, name, Some(raw)) {
            Current::Live { connection, .. } => self.revoke(&provider, &connection).await,
            // Tokens we cannot read cannot be revoked: they expire there.
            Current::Unreadable => Revocation::Failed,
            Current::Absent | Current::Tombstone(_) => Revocation::NotNeeded,
        };
        tracing::info!(%subject, provider = %name, ?revocation, "service disconnected");
        Ok(revocation)
    }

    async fn revoke(&self, provider: &Provider, connection: &Connection) -> Revocation {
        let endpoints = match self.endpoints(provider).await {
            Ok(endpoints) => endpoints,
            Err(error) => {
                tracing::warn!(provider = %provider.config.name, %error, "cannot revoke: provider unavailable");
                return Revocation::Failed;
            }
        };
        let Some(url) = &endpoints.revocation else {
            return Revocation::Unsupported;
        };
        // Revoking the refresh token revokes the grant (RFC 7009 §2.1).
        let (token, hint) = match &connection.refresh_token {
            Some(refresh) => (refresh.as_str(), "refresh_token"),
            None => (connection.access_token.as_str(), "access_token"),
        };
        match self
            .inner
            .client
            .revoke(&provider.config, url, token, hint)
            .await
        {
            Ok(()) => Revocation::Revoked,
            Err(error) => {
                tracing::warn!(provider = %provider.config.name, %error, "revocation at the provider failed");
                Revocation::Failed
            }
        }
    }

    /// Forgets every connection and stored credentials of `subject` (the
    /// user was removed),
    /// revoking at the providers (a provider that cannot be reached keeps
    /// its grant: logged). Tries every provider and answers the first
    /// failure to forget one, so that the removal is retried.
    ///
    /// # Errors
    ///
    /// Redis failures, a refresh in progress ([`ConnectError::Busy`]).
    pub async fn forget_all(&self, subject: &str) -> Result<(), ConnectError> {
        let mut failed = None;
        if let Err(error) = self.forget_credentials(subject).await {
            tracing::warn!(%subject, %error, "cannot forget stored credentials");
            failed = Some(error);
        }
        for provider in self.registry().all() {
            match self.disconnect(subject, &provider.config.name).await {
                Ok(_) | Err(ConnectError::NotConnected) => {}
                Err(error) => {
                    tracing::warn!(%subject, provider = %provider.config.name, %error, "cannot forget a connection");
                    failed.get_or_insert(error);
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

/// Checks that a refresh can give a token valid for `at_least`, before
/// the provider is asked: a token lives `lifetime` from the moment the
/// authority receives it and is handed out some milliseconds later, so
/// only `at_least < lifetime` can be met. This is the same comparison the
/// answer is checked with after the refresh (`valid_for`), so a request
/// at the boundary is refused here instead of costing a refresh first.
fn refreshable(
    connection: &Connection,
    now: Timestamp,
    at_least: Duration,
) -> Result<(), ConnectError> {
    if connection.refresh_token.is_none() {
        return Err(ConnectError::Reconnect(
            "the provider issued no refresh token and the access token expires too soon; connect the service again",
        ));
    }
    if connection.refresh_expired(now) {
        return Err(expired());
    }
    let lifetime = connection.lifetime();
    if !lifetime.is_zero() && at_least >= lifetime {
        return Err(too_long(lifetime));
    }
    Ok(())
}

/// The refusal when the refresh token is past its known lifetime.
fn expired() -> ConnectError {
    ConnectError::Reconnect(
        "the refresh token has expired (its lifetime at the provider is over); connect the service again",
    )
}

/// The refusal of an `expires` a token of `lifetime` cannot satisfy: the
/// largest whole number of seconds strictly less than the lifetime is
/// what may be asked for.
fn too_long(lifetime: Duration) -> ConnectError {
    let millis = u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX);
    ConnectError::TooLong {
        lifetime_secs: lifetime.as_secs(),
        max_secs: millis.saturating_sub(1) / 1000,
    }
}

fn serve(connection: &Connection, now: Timestamp, refreshed: bool) -> ServedToken {
    ServedToken {
        access_token: Zeroizing::new(connection.access_token.clone()),
        token_type: connection.token_type.clone(),
        expires_in: connection.remaining(now).as_secs(),
        scope: connection.scope.clone(),
        username: connection.username.clone(),
        refreshed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refresh that could not satisfy the request is refused before the
    /// provider is called.
    #[test]
    fn refreshable_checks() {
        let connection = Connection {
            username: "u".into(),
            access_token: "a".into(),
            token_type: "Bearer".into(),
            refresh_token: Some("r".into()),
            expires_at: 61_000,
            scope: None,
            connected_at: 1_000,
            refreshed_at: 1_000,
            provider_subject: None,
            refresh_expires_at: Some(100_000),
        };
        let now = Timestamp::from_unix_millis(2_000);
        assert!(refreshable(&connection, now, Duration::from_secs(59)).is_ok());
        // A fresh 60 s token is already some milliseconds old when handed
        // out: 60 s is refused before the provider is called, as the
        // check after a refresh would refuse it (after the refresh).
        for asked in [60, 61] {
            assert!(matches!(
                refreshable(&connection, now, Duration::from_secs(asked)),
                Err(ConnectError::TooLong {
                    lifetime_secs: 60,
                    max_secs: 59
                })
            ));
        }
        let fresh = Timestamp::from_unix_millis(connection.refreshed_at + 1);
        assert!(!connection.valid_for(fresh, Duration::from_secs(60)));
        assert!(connection.valid_for(fresh, Duration::from_secs(59)));
        assert!(matches!(
            too_long(Duration::from_millis(60_500)),
            ConnectError::TooLong {
                lifetime_secs: 60,
                max_secs: 60
            }
        ));
        assert_eq!(
            too_long(Duration::from_secs(60)).to_string(),
            "the provider's tokens live 60 seconds; ask for expires <= 59"
        );
        // Past the refresh token's known expiry nothing is tried.
        assert!(matches!(
            refreshable(
                &connection,
                Timestamp::from_unix_millis(100_000),
                Duration::from_secs(1)
            ),
            Err(ConnectError::Reconnect(_))
        ));
        let mut no_refresh = connection;
        no_refresh.refresh_token = None;
        assert!(matches!(
            refreshable(&no_refresh, now, Duration::from_secs(1)),
            Err(ConnectError::Reconnect(_))
        ));
    }
}
