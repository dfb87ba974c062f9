//! The keep-alive: refreshes connections whose refresh token would
//! otherwise lapse from disuse.
//!
//! Many providers expire a refresh token that is not used for a while
//! (Keycloak's offline session idle timeout, for one), so a user who stays
//! away for weeks would find their jobs failing. For providers with
//! `keepalive_after`, a background task looks every
//! `CONNECT_KEEPALIVE_INTERVAL` for connections whose tokens were obtained
//! longer ago than that and refreshes them, under the same per-connection
//! lock as any other refresh, so replicas running the same task never
//! refresh one connection twice. A refresh the provider refuses turns the
//! connection into "needs reconnect", as a user's request would.

use std::future::Future;

use token_repository::Timestamp;

use super::{Connect, ConnectError, KeepAliveReport, Need, Refreshed, minus};

impl Connect {
    /// One keep-alive pass: refreshes connections of providers with a
    /// `keepalive_after` whose tokens were last obtained longer ago than
    /// that (at most 100 per pass), under the same lock as every refresh.
    ///
    /// # Errors
    ///
    /// Redis failures reading the index.
    pub async fn keep_alive(&self) -> Result<KeepAliveReport, ConnectError> {
        let mut report = KeepAliveReport::default();
        let Some(shortest) = self
            .inner
            .registry
            .all()
            .filter_map(|provider| provider.config.keepalive_after)
            .min()
        else {
            return Ok(report);
        };
        let now = Timestamp::now();
        for entry in self.inner.store.due(minus(now, shortest), 100).await? {
            let Some(provider) = self.inner.registry.get(&entry.provider).cloned() else {
                continue;
            };
            let Some(after) = provider.config.keepalive_after else {
                continue;
            };
            let since = minus(now, after);
            if entry.refreshed_at >= since.as_unix_millis() {
                continue;
            }
            let Some(lock) = self
                .inner
                .store
                .try_lock(&entry.subject, &entry.provider, self.inner.lock_ttl)
                .await?
            else {
                continue; // a refresh is in progress right now
            };
            let result = self
                .refresh_locked(&entry.subject, &provider, Need::RefreshedSince(since))
                .await;
            if let Err(error) = self.inner.store.unlock(lock).await {
                tracing::warn!(%error, "cannot release a refresh lock; it expires by itself");
            }
            match result {
                Ok(Refreshed::Served(_, true)) => report.refreshed += 1,
                Ok(Refreshed::Skipped(connection) | Refreshed::Served(connection, false)) => {
                    // Refreshed elsewhere: correct the index.
                    let refreshed = Timestamp::from_unix_millis(connection.refreshed_at);
                    self.inner
                        .store
                        .index(&entry.subject, &entry.provider, refreshed)
                        .await?;
                }
                Ok(Refreshed::Changed) => {}
                Err(ConnectError::NotConnected) => {
                    self.inner
                        .store
                        .unindex(&entry.subject, &entry.provider)
                        .await?;
                }
                Err(ConnectError::Reconnect(_)) => {
                    report.rejected += 1;
                    self.inner
                        .store
                        .unindex(&entry.subject, &entry.provider)
                        .await?;
                }
                Err(error) => {
                    report.failed += 1;
                    tracing::warn!(subject = %entry.subject, provider = %entry.provider, %error, "keep-alive refresh failed; retried next pass");
                }
            }
        }
        Ok(report)
    }
}

/// Whether any provider asks for keep-alive.
#[must_use]
pub fn wanted(connect: &Connect) -> bool {
    connect
        .registry()
        .all()
        .any(|provider| provider.config.keepalive_after.is_some())
}

/// Runs keep-alive passes every interval until `shutdown` completes.
pub async fn run(connect: Connect, shutdown: impl Future<Output = ()>) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut ticker = tokio::time::interval(connect.keepalive_interval());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = &mut shutdown => return,
        }
        match connect.keep_alive().await {
            Ok(report) if report.refreshed + report.rejected + report.failed > 0 => {
                tracing::info!(
                    refreshed = report.refreshed,
                    rejected = report.rejected,
                    failed = report.failed,
                    "keep-alive pass"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "keep-alive pass failed; retried next interval"),
        }
    }
}
