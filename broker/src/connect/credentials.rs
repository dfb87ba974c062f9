//! What users store for providers of a credentials kind
//! ([`crate::credentials`]): storing (sealed under the connect keys),
//! reading back for a service client, removing, and what the account page
//! shows. One record per (user, provider), `P cred:{T}:<p>`, so a user
//! holds at most as many as there are such providers.

use token_repository::Timestamp;

use super::Connect;
use crate::credentials::{CredentialError, CredentialProvider, Secret, StoredCredential};
use crate::error::ConnectError;
use crate::record::Stored;
use crate::views::CredentialView;

impl Connect {
    /// The provider of a credentials kind called `name`.
    ///
    /// # Errors
    ///
    /// [`ConnectError::UnknownProvider`] (also for an OAuth provider).
    pub fn credential_provider(&self, name: &str) -> Result<CredentialProvider, ConnectError> {
        self.registry()
            .credential(name)
            .cloned()
            .ok_or(ConnectError::UnknownProvider)
    }

    /// Stores `secret` as `subject`'s (username `username`) credentials
    /// for `provider`, replacing what was there.
    ///
    /// # Errors
    ///
    /// Unknown provider; [`ConnectError::Credential`] for a secret of the
    /// wrong kind or size, or a disabled provider; not configured; Redis
    /// failures. Nothing is stored then.
    pub async fn store_credentials(
        &self,
        subject: &str,
        username: &str,
        provider: &str,
        secret: Secret,
    ) -> Result<CredentialView, ConnectError> {
        let config = self.credential_provider(provider)?;
        if !config.enabled {
            return Err(CredentialError::Disabled.into());
        }
        secret.check(config.kind)?;
        let keys = self.keys()?;
        let stored_at = Timestamp::now().as_unix_millis();
        let record = StoredCredential {
            owner: username.to_owned(),
            stored_at,
            secret,
        };
        let sealed = record
            .seal(keys, subject, provider)
            .map_err(|error| ConnectError::Internal(error.to_string()))?;
        let key = self.inner.store.credential_key(subject, provider);
        self.inner.store.set_key(&key, &sealed.to_text()).await?;
        tracing::info!(%subject, %provider, kind = config.kind.as_str(), "credentials stored");
        Ok(CredentialView {
            provider: provider.to_owned(),
            kind: config.kind.as_str(),
            status: "stored",
            stored_at: Some(stored_at / 1000),
        })
    }

    /// `subject`'s credentials for `provider`, decrypted.
    ///
    /// # Errors
    ///
    /// Unknown provider; [`ConnectError::NotConnected`] when nothing is
    /// stored; [`ConnectError::Reconnect`] when the record cannot be read
    /// (a retired key: the user must store it again); Redis failures.
    pub async fn credentials(
        &self,
        subject: &str,
        provider: &str,
    ) -> Result<StoredCredential, ConnectError> {
        self.credential_provider(provider)?;
        let key = self.inner.store.credential_key(subject, provider);
        let raw = self
            .inner
            .store
            .get_key(&key)
            .await?
            .ok_or(ConnectError::NotConnected)?;
        self.open_credentials(subject, provider, &raw)
            .ok_or(ConnectError::Reconnect(
                "the stored credentials cannot be read; the user must store them again",
            ))
    }

    fn open_credentials(
        &self,
        subject: &str,
        provider: &str,
        raw: &str,
    ) -> Option<StoredCredential> {
        let keys = self.inner.keys.as_ref()?;
        let opened = Stored::parse(raw)
            .and_then(|stored| StoredCredential::open(&stored, keys, subject, provider));
        match opened {
            Ok(record) => Some(record),
            Err(error) => {
                tracing::error!(%subject, %provider, %error, "stored credentials cannot be read");
                None
            }
        }
    }

    /// Removes `subject`'s credentials for `provider`.
    ///
    /// # Errors
    ///
    /// Unknown provider; [`ConnectError::NotConnected`] when nothing was
    /// stored; Redis failures.
    pub async fn remove_credentials(
        &self,
        subject: &str,
        provider: &str,
    ) -> Result<(), ConnectError> {
        self.credential_provider(provider)?;
        let key = self.inner.store.credential_key(subject, provider);
        if self.inner.store.delete_keys(vec![key]).await? == 0 {
            return Err(ConnectError::NotConnected);
        }
        tracing::info!(%subject, %provider, "credentials removed");
        Ok(())
    }

    /// Removes every credentials record of `subject` (the user was
    /// removed): one `DEL` of one key per provider of a credentials kind.
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn forget_credentials(&self, subject: &str) -> Result<usize, ConnectError> {
        let keys = self
            .registry()
            .credentials()
            .map(|provider| self.inner.store.credential_key(subject, &provider.name))
            .collect();
        Ok(self.inner.store.delete_keys(keys).await?)
    }

    /// Every provider of a credentials kind with what `subject` stored
    /// there (one `MGET`), in configuration order.
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn credential_views(
        &self,
        subject: &str,
    ) -> Result<Vec<CredentialView>, ConnectError> {
        let registry = self.registry();
        let providers: Vec<&CredentialProvider> = registry.credentials().collect();
        let keys = providers
            .iter()
            .map(|provider| self.inner.store.credential_key(subject, &provider.name))
            .collect();
        let values = self.inner.store.get_keys(keys).await?;
        Ok(providers
            .iter()
            .zip(values)
            .map(|(provider, raw)| {
                let opened = raw
                    .as_deref()
                    .map(|raw| self.open_credentials(subject, &provider.name, raw));
                let (status, stored_at) = match opened {
                    None => ("not_stored", None),
                    Some(None) => ("unreadable", None),
                    Some(Some(record)) => ("stored", Some(record.stored_at / 1000)),
                };
                CredentialView {
                    provider: provider.name.clone(),
                    kind: provider.kind.as_str(),
                    status,
                    stored_at,
                }
            })
            .collect())
    }
}
