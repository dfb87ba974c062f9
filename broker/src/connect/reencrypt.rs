//! Key rotation: re-encrypting every stored connection with the current
//! key (`token-authority connect reencrypt`), so that older keys can be
//! removed from `CONNECT_KEYS`. Refreshes re-encrypt as they write, so this
//! is only needed for connections nobody used since the rotation.

use token_repository::Timestamp;

use super::Connect;
use crate::crypto::Keyring;
use crate::error::ConnectError;
use crate::record::{RecordError, Stored};
use crate::views::ReencryptReport;

impl Connect {
    /// Re-encrypts every connection record not under the current key
    /// (`token-authority connect reencrypt`), under each record's lock.
    ///
    /// # Errors
    ///
    /// Not configured; Redis failures.
    pub async fn reencrypt(&self) -> Result<ReencryptReport, ConnectError> {
        let keys = self.keys()?;
        let mut report = ReencryptReport::default();
        for key in self.inner.store.keys().await? {
            let Some((_, provider)) = key.rsplit_once(':') else {
                continue;
            };
            let Some(raw) = self.inner.store.get_key(&key).await? else {
                continue;
            };
            let Ok(stored) = Stored::parse(&raw) else {
                report.unreadable += 1;
                continue;
            };
            let subject = stored.subject().to_owned();
            if matches!(stored, Stored::Reconnect { .. }) {
                report.tombstones += 1;
                continue;
            }
            if stored.sealed().is_ok_and(|sealed| keys.is_current(&sealed)) {
                report.current += 1;
                continue;
            }
            let lock = match self.lock(&subject, provider).await {
                Ok(lock) => lock,
                Err(ConnectError::Busy) => {
                    report.busy += 1;
                    continue;
                }
                Err(error) => return Err(error),
            };
            let result = self.reencrypt_one(keys, &key, &subject, provider).await;
            if let Err(error) = self.inner.store.unlock(lock).await {
                tracing::warn!(%error, "cannot release a refresh lock; it expires by itself");
            }
            match result? {
                Some(true) => report.reencrypted += 1,
                Some(false) => report.current += 1,
                None => report.unreadable += 1,
            }
        }
        Ok(report)
    }

    /// Re-encrypts one record (lock held): `Some(true)` done,
    /// `Some(false)` nothing to do, `None` unreadable.
    async fn reencrypt_one(
        &self,
        keys: &Keyring,
        key: &str,
        subject: &str,
        provider: &str,
    ) -> Result<Option<bool>, ConnectError> {
        let Some(raw) = self.inner.store.get_key(key).await? else {
            return Ok(Some(false));
        };
        let stored = match Stored::parse(&raw) {
            Ok(stored @ Stored::Sealed { .. }) => stored,
            Ok(Stored::Reconnect { .. }) => return Ok(Some(false)),
            Err(_) => return Ok(None),
        };
        if stored.sealed().is_ok_and(|sealed| keys.is_current(&sealed)) {
            return Ok(Some(false));
        }
        let connection = match stored.open(keys, subject, provider) {
            Ok(connection) => connection,
            Err(RecordError::Crypto(_) | RecordError::Malformed | RecordError::WrongSubject) => {
                return Ok(None);
            }
        };
        let sealed = Stored::seal(keys, subject, provider, &connection)
            .map_err(|error| ConnectError::Internal(error.to_string()))?;
        let replaced = self
            .inner
            .store
            .replace(key, &raw, &sealed.to_text(), None)
            .await?;
        if replaced && connection.refresh_token.is_some() {
            self.inner
                .store
                .index(
                    subject,
                    provider,
                    Timestamp::from_unix_millis(connection.refreshed_at),
                )
                .await?;
        }
        Ok(Some(replaced))
    }
}
