//! Key rotation: re-encrypting every stored connection and every stored
//! credentials record (`P cred:`, [`crate::credentials`]) with the current
//! key (`token-authority connect reencrypt`), so that older keys can be
//! removed from `CONNECT_KEYS`. Refreshes re-encrypt as they write, so this
//! is only needed for connections nobody used since the rotation; stored
//! credentials change only when their user stores them again. The client
//! secrets of providers added through the admin API ([`crate::catalog`])
//! are re-sealed too.

use token_repository::Timestamp;

use super::Connect;
use crate::credentials::StoredCredential;
use crate::crypto::Keyring;
use crate::error::ConnectError;
use crate::record::{RecordError, Stored};
use crate::views::ReencryptReport;

impl Connect {
    /// Re-encrypts every connection record not under the current key
    /// (`token-authority connect reencrypt`), under each record's lock,
    /// then every stored credentials record (compare-and-set: a record its
    /// user replaced meanwhile is sealed under the current key already).
    /// The report counts both kinds together.
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
        for key in self.inner.store.credential_keys().await? {
            self.reencrypt_credential(keys, &key, &mut report).await?;
        }
        self.reencrypt_provider_secrets(keys, &mut report).await?;
        Ok(report)
    }

    /// Re-encrypts one credentials record (`P cred:{T}:<provider>`) if it
    /// is not under the current key, counting the outcome in `report`. A
    /// record replaced between the read and the write is read again (a
    /// few times, then counted busy).
    async fn reencrypt_credential(
        &self,
        keys: &Keyring,
        key: &str,
        report: &mut ReencryptReport,
    ) -> Result<(), ConnectError> {
        const ATTEMPTS: usize = 3;
        let Some((_, provider)) = key.rsplit_once(':') else {
            return Ok(());
        };
        for _ in 0..ATTEMPTS {
            let Some(raw) = self.inner.store.get_key(key).await? else {
                return Ok(()); // removed meanwhile
            };
            let stored = match Stored::parse(&raw) {
                Ok(stored @ Stored::Sealed { .. }) => stored,
                Ok(Stored::Reconnect { .. }) | Err(_) => {
                    report.unreadable += 1;
                    return Ok(());
                }
            };
            if stored.sealed().is_ok_and(|sealed| keys.is_current(&sealed)) {
                report.current += 1;
                return Ok(());
            }
            let subject = stored.subject().to_owned();
            let Ok(record) = StoredCredential::open(&stored, keys, &subject, provider) else {
                tracing::warn!(%subject, %provider, "stored credentials no configured key opens");
                report.unreadable += 1;
                return Ok(());
            };
            let sealed = record
                .seal(keys, &subject, provider)
                .map_err(|error| ConnectError::Internal(error.to_string()))?;
            if self
                .inner
                .store
                .replace(key, &raw, &sealed.to_text(), None)
                .await?
            {
                report.reencrypted += 1;
                return Ok(());
            }
        }
        report.busy += 1;
        Ok(())
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
