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
//! connection into "needs reconnect", as a user's request would. A
//! connection whose refresh token is past its known lifetime
//! (`refresh_expires_in`, `refresh_token_expires_in`) is not tried: it
//! leaves the index, and is reported "needs reconnect" (`expired`) once its
//! access token has expired too.

use std::future::Future;

use token_repository::Timestamp;

use super::{Connect, Need, Refreshed, minus};
use crate::error::ConnectError;
use crate::store::IndexEntry;
use crate::views::KeepAliveReport;

/// The most refreshes one keep-alive pass attempts.
pub const PASS_REFRESHES: usize = 100;
/// The most index entries one keep-alive pass reads, skipped ones included.
pub const PASS_SCAN: usize = 1_000;
/// Index entries read per round trip.
const PAGE: usize = 100;

impl Connect {
    /// One keep-alive pass: refreshes connections of providers with a
    /// `keepalive_after` whose tokens were last obtained longer ago than
    /// that, under the same lock as every refresh.
    ///
    /// A pass attempts at most [`PASS_REFRESHES`] refreshes and reads at
    /// most [`PASS_SCAN`] index entries, oldest first, and the next pass
    /// goes on after the last entry this one read, back at the oldest once
    /// it reaches the end. Entries it skips (a provider with a longer
    /// `keepalive_after`, a lock taken) and entries whose refresh keeps
    /// failing (they stay the oldest) so never hold up the rest: every due
    /// connection is tried within `due / PASS_REFRESHES + 1` passes.
    ///
    /// # Errors
    ///
    /// Redis failures reading the index.
    pub async fn keep_alive(&self) -> Result<KeepAliveReport, ConnectError> {
        let mut report = KeepAliveReport::default();
        let Some(shortest) = self
            .registry()
            .all()
            .filter_map(|provider| provider.config.keepalive_after)
            .min()
        else {
            return Ok(report);
        };
        let now = Timestamp::now();
        let mut cursor = self
            .inner
            .keepalive_cursor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let result = self
            .keep_alive_pass(now, minus(now, shortest), &mut cursor, &mut report)
            .await;
        // Kept even after a failure: the next pass goes on from there.
        *self
            .inner
            .keepalive_cursor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = cursor;
        result.map(|()| report)
    }

    /// Reads the index after `cursor` and refreshes what is due, within the
    /// pass bounds; leaves `cursor` at the last entry read, or `None` at
    /// the end of the index.
    async fn keep_alive_pass(
        &self,
        now: Timestamp,
        before: Timestamp,
        cursor: &mut Option<IndexEntry>,
        report: &mut KeepAliveReport,
    ) -> Result<(), ConnectError> {
        let (mut attempts, mut scanned) = (0, 0);
        loop {
            let page = self
                .inner
                .store
                .due_after(before, cursor.as_ref(), PAGE)
                .await?;
            let last_page = page.len() < PAGE;
            for entry in page {
                scanned += 1;
                if self.keep_alive_entry(&entry, now, report).await? {
                    attempts += 1;
                }
                *cursor = Some(entry);
                if attempts >= PASS_REFRESHES || scanned >= PASS_SCAN {
                    return Ok(());
                }
            }
            if last_page {
                *cursor = None;
                return Ok(());
            }
        }
    }

    /// Refreshes one index entry if its provider's `keepalive_after` says
    /// it is due; answers whether a refresh was attempted.
    async fn keep_alive_entry(
        &self,
        entry: &IndexEntry,
        now: Timestamp,
        report: &mut KeepAliveReport,
    ) -> Result<bool, ConnectError> {
        let registry = self.registry();
        let Some(provider) = registry.get(&entry.provider).cloned() else {
            // A provider removed through the API: its entries go (the
            // removal deletes them too; this catches one it missed).
            if registry.removing().contains(&entry.provider) {
                self.inner
                    .store
                    .unindex(&entry.subject, &entry.provider)
                    .await?;
            }
            return Ok(false);
        };
        let Some(after) = provider.config.keepalive_after else {
            return Ok(false);
        };
        let since = minus(now, after);
        if entry.refreshed_at >= since.as_unix_millis() {
            return Ok(false);
        }
        let Some(lock) = self
            .inner
            .store
            .try_lock(&entry.subject, &entry.provider, self.inner.lock_ttl)
            .await?
        else {
            return Ok(false); // a refresh is in progress right now
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
            Ok(Refreshed::Expired) => {
                // Not tried: the next pass need not look at it again.
                report.expired += 1;
                self.inner
                    .store
                    .unindex(&entry.subject, &entry.provider)
                    .await?;
            }
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
                tracing::warn!(subject = %entry.subject, provider = %entry.provider, %error, "keep-alive refresh failed; retried next round");
            }
        }
        Ok(true)
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
            Ok(report)
                if report.refreshed + report.rejected + report.failed + report.expired > 0 =>
            {
                tracing::info!(
                    refreshed = report.refreshed,
                    rejected = report.rejected,
                    failed = report.failed,
                    expired = report.expired,
                    "keep-alive pass"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "keep-alive pass failed; retried next interval"),
        }
    }
}
