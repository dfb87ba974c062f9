//! The providers added at run time ([`crate::catalog`]) as [`Connect`]
//! serves them: the admin API's operations (list, add, replace, change,
//! remove), the reload every replica runs when the change counter moves,
//! and the removal of a removed provider's connections.
//!
//! Removing a provider is two steps. The entry is marked `removing` and
//! the counter moves: within `CONNECT_PROVIDERS_POLL_MS` no replica offers
//! it, serves its tokens or credentials, or accepts its callbacks (they
//! answer as for an unknown provider). Then one replica (under a lock)
//! deletes its connections, stored credentials and keep-alive entries and
//! drops the entry; until then the name cannot be taken again, so a new
//! provider never inherits the old one's connections.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use token_repository::Timestamp;

use super::Connect;
use crate::catalog::{CatalogError, Parsed, Record, validate};
use crate::error::ConnectError;
use crate::registry::{ApiProvider, Origin, Provider, Registry};
use crate::views::ProviderView;

/// How long one replica may hold a removal before another takes over.
const SWEEP_LOCK: Duration = Duration::from_secs(60);
/// The shortest poll period (a zero setting would spin).
const MIN_POLL: Duration = Duration::from_millis(100);

fn now_millis() -> u64 {
    Timestamp::now().as_unix_millis()
}

impl Connect {
    /// Every provider: the file's, then the API's, then those being
    /// removed.
    ///
    /// # Errors
    ///
    /// Redis failures reading the API's entries.
    pub async fn provider_views(&self) -> Result<Vec<ProviderView>, CatalogError> {
        let registry = self.registry();
        let (_, entries) = self.inner.catalog.all().await?;
        let stored: std::collections::BTreeMap<String, String> = entries.into_iter().collect();
        let mut views: Vec<ProviderView> = registry
            .all()
            .map(|provider| ProviderView::of_oauth(&provider.config))
            .chain(registry.credentials().map(ProviderView::of_credentials))
            .collect();
        for view in &mut views {
            if registry.origin(&view.name) == Some(Origin::Api) {
                view.source = Origin::Api.as_str();
                view.settings = stored
                    .get(&view.name)
                    .and_then(|text| Record::parse(text).ok())
                    .map(|record| record.table);
            }
        }
        for (name, text) in &stored {
            if registry.contains(name) {
                continue;
            }
            if let Ok(record) = Record::parse(text) {
                views.push(ProviderView::of_record(name, record));
            }
        }
        Ok(views)
    }

    /// One provider.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Unknown`]; Redis failures.
    pub async fn provider_view(&self, name: &str) -> Result<ProviderView, CatalogError> {
        self.provider_views()
            .await?
            .into_iter()
            .find(|view| view.name == name)
            .ok_or(CatalogError::Unknown)
    }

    /// Adds a provider (`table`: the fields of a `[[providers]]` table,
    /// `client_secret` among them for a confidential OAuth client).
    ///
    /// # Errors
    ///
    /// [`CatalogError`]: invalid, exists (in the file too), being removed,
    /// full, not configured; Redis failures.
    pub async fn add_provider(
        &self,
        table: Map<String, Value>,
    ) -> Result<ProviderView, CatalogError> {
        let parsed = validate(&table)?;
        self.check_configured(&parsed)?;
        let name = parsed.name().to_owned();
        if self.inner.files.contains(&name) {
            return Err(CatalogError::Exists(name));
        }
        if let Some(text) = self.inner.catalog.get(&name).await? {
            return Err(
                if Record::parse(&text).is_ok_and(|record| record.removing) {
                    CatalogError::Removing(name)
                } else {
                    CatalogError::Exists(name)
                },
            );
        }
        let record = Record::seal(table, self.inner.keys.as_ref(), now_millis())?;
        self.inner.catalog.add(&name, &record.to_text()).await?;
        tracing::info!(provider = %name, "provider added through the API");
        self.changed().await;
        self.provider_view(&name).await
    }

    /// Replaces provider `name`'s table by `table`; without a
    /// `client_secret`, the stored one is kept.
    ///
    /// # Errors
    ///
    /// Like [`Self::add_provider`]; [`CatalogError::ReadOnly`] for a
    /// provider of the file, [`CatalogError::Unknown`],
    /// [`CatalogError::Conflict`] when it changed meanwhile.
    pub async fn replace_provider(
        &self,
        name: &str,
        mut table: Map<String, Value>,
    ) -> Result<ProviderView, CatalogError> {
        let (text, record) = self.stored_provider(name).await?;
        match table.get("name") {
            None => {
                table.insert("name".into(), Value::String(name.to_owned()));
            }
            Some(Value::String(given)) if given == name => {}
            Some(_) => return Err(renamed()),
        }
        let oauth = table
            .get("kind")
            .and_then(Value::as_str)
            .is_none_or(|kind| kind == "oauth");
        let public = table
            .get("token_endpoint_auth_method")
            .and_then(Value::as_str)
            == Some("none");
        if oauth
            && !public
            && !table.contains_key("client_secret")
            && let Some(secret) = record
                .opened(self.inner.keys.as_ref())?
                .remove("client_secret")
        {
            table.insert("client_secret".into(), secret);
        }
        self.write(name, &text, table).await
    }

    /// Changes some fields of provider `name`: each field of `patch`
    /// replaces the stored one, `null` removes it (`{"enabled": false}`
    /// disables it; `{"client_secret": "…"}` rotates its secret).
    ///
    /// # Errors
    ///
    /// Like [`Self::replace_provider`].
    pub async fn change_provider(
        &self,
        name: &str,
        patch: Map<String, Value>,
    ) -> Result<ProviderView, CatalogError> {
        let (text, record) = self.stored_provider(name).await?;
        let mut table = record.opened(self.inner.keys.as_ref())?;
        for (field, value) in patch {
            if field == "name" && value.as_str() != Some(name) {
                return Err(renamed());
            }
            if value.is_null() {
                table.remove(&field);
            } else {
                table.insert(field, value);
            }
        }
        self.write(name, &text, table).await
    }

    /// Removes provider `name`: it is no longer offered or served at once
    /// (every replica within the poll period), and its connections,
    /// stored credentials and keep-alive entries are deleted in the
    /// background. Removing one being removed again is no error.
    ///
    /// # Errors
    ///
    /// [`CatalogError::ReadOnly`], [`CatalogError::Unknown`],
    /// [`CatalogError::Conflict`]; Redis failures.
    pub async fn remove_provider(&self, name: &str) -> Result<(), CatalogError> {
        let (text, mut record) = self.entry(name).await?;
        if record.removing {
            return Ok(());
        }
        record.removing = true;
        record.at = now_millis();
        self.inner
            .catalog
            .swap(name, &text, Some(&record.to_text()))
            .await?;
        tracing::info!(provider = %name, "provider removed through the API; deleting its connections");
        self.changed().await;
        Ok(())
    }

    /// The stored entry of API provider `name` (being removed or not).
    async fn entry(&self, name: &str) -> Result<(String, Record), CatalogError> {
        if self.inner.files.contains(name) {
            return Err(CatalogError::ReadOnly(name.to_owned()));
        }
        let text = self
            .inner
            .catalog
            .get(name)
            .await?
            .ok_or(CatalogError::Unknown)?;
        let record = Record::parse(&text)?;
        Ok((text, record))
    }

    /// The stored entry of API provider `name`, not being removed.
    async fn stored_provider(&self, name: &str) -> Result<(String, Record), CatalogError> {
        let (text, record) = self.entry(name).await?;
        if record.removing {
            return Err(CatalogError::Removing(name.to_owned()));
        }
        Ok((text, record))
    }

    /// Validates `table` and stores it over `old` (`name`'s entry).
    async fn write(
        &self,
        name: &str,
        old: &str,
        table: Map<String, Value>,
    ) -> Result<ProviderView, CatalogError> {
        let parsed = validate(&table)?;
        self.check_configured(&parsed)?;
        let record = Record::seal(table, self.inner.keys.as_ref(), now_millis())?;
        self.inner
            .catalog
            .swap(name, old, Some(&record.to_text()))
            .await?;
        tracing::info!(provider = %name, "provider changed through the API");
        self.changed().await;
        self.provider_view(name).await
    }

    /// Refuses a provider the configuration cannot serve: an OAuth one
    /// needs the state key, the sealing keys and both result pages; one
    /// of a credentials kind the sealing keys.
    fn check_configured(&self, parsed: &Parsed) -> Result<(), CatalogError> {
        let inner = &self.inner;
        match parsed {
            Parsed::OAuth(_)
                if inner.signer.is_none()
                    || inner.keys.is_none()
                    || inner.success_url.is_none()
                    || inner.failure_url.is_none() =>
            {
                Err(CatalogError::NotConfigured(
                    "set CONNECT_STATE_KEY, CONNECT_KEYS, CONNECT_SUCCESS_URL and \
                     CONNECT_FAILURE_URL to add OAuth providers",
                ))
            }
            Parsed::Credentials(_) if inner.keys.is_none() => Err(CatalogError::NotConfigured(
                "set CONNECT_KEYS to add providers of a credentials kind",
            )),
            _ => Ok(()),
        }
    }

    /// After a change made here: this replica reloads at once (the caller
    /// reads its own write), and its watcher looks for removals.
    async fn changed(&self) {
        if let Err(error) = self.reload_providers(true).await {
            tracing::warn!(%error, "cannot reload the providers; the next poll will");
        }
        self.inner.catalog_changed.notify_one();
    }

    /// Reloads the providers added through the API when their change
    /// counter moved since this replica last read them (always with
    /// `force`); answers whether it reloaded. An entry that does not
    /// validate or whose secret does not open is left out and logged.
    ///
    /// # Errors
    ///
    /// Redis failures (the registry stays as it was).
    pub async fn reload_providers(&self, force: bool) -> Result<bool, ConnectError> {
        let known = *self
            .inner
            .catalog_version
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !force && Some(self.inner.catalog.version().await?) == known {
            return Ok(false);
        }
        let (version, entries) = self.inner.catalog.all().await?;
        let old = self.registry();
        let mut next = self.inner.files.files_only();
        for (name, text) in entries {
            match self.build(&old, &name, &text) {
                Ok(Some(provider)) => next.add_api(provider, text),
                Ok(None) => next.add_removing(name),
                Err(error) => {
                    tracing::error!(provider = %name, %error, "a provider added through the API is left out");
                }
            }
        }
        let mut seen = self
            .inner
            .catalog_version
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A reload that read an older counter than another's installs
        // nothing.
        if seen.is_some_and(|seen| seen > version) {
            return Ok(false);
        }
        *seen = Some(version);
        *self
            .inner
            .registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(next);
        drop(seen);
        let registry = self.registry();
        tracing::info!(
            version,
            providers = registry.all().count() + registry.credentials().count(),
            removing = registry.removing().len(),
            "providers reloaded"
        );
        crate::metrics::providers(&registry);
        Ok(true)
    }

    /// The provider of entry `name` (`None`: being removed); an unchanged
    /// entry keeps its provider from `old` (and the endpoints it
    /// discovered).
    fn build(
        &self,
        old: &Registry,
        name: &str,
        text: &str,
    ) -> Result<Option<ApiProvider>, CatalogError> {
        let record = Record::parse(text)?;
        if record.removing {
            return Ok(None);
        }
        if self.inner.files.contains(name) {
            return Err(CatalogError::Exists(name.to_owned()));
        }
        if let Some(provider) = old.unchanged_api(name, text) {
            return Ok(Some(provider));
        }
        let table = record.opened(self.inner.keys.as_ref())?;
        Ok(Some(match validate(&table)? {
            Parsed::OAuth(config) => ApiProvider::OAuth(Arc::new(Provider::new(
                *config,
                &self.inner.default_redirect,
            ))),
            Parsed::Credentials(provider) => ApiProvider::Credentials(provider),
        }))
    }

    /// Deletes removed provider `name`'s connections, stored credentials
    /// and keep-alive entries, then its entry, unless another replica is
    /// at it; answers how many records it deleted.
    ///
    /// # Errors
    ///
    /// Redis failures (the next pass goes on).
    pub async fn finish_removal(&self, name: &str) -> Result<usize, CatalogError> {
        let store = &self.inner.store;
        let prefix = store.store_prefix();
        let Some(lock) = store
            .try_lock_key(prefix.provider_sweep(name), SWEEP_LOCK)
            .await?
        else {
            return Ok(0);
        };
        let result = async {
            let mut deleted = 0;
            for pattern in prefix.provider_records(name) {
                deleted += store.delete_matching(&pattern).await?;
            }
            store.unindex_provider(name).await?;
            if let Some(text) = self.inner.catalog.get(name).await?
                && Record::parse(&text).is_ok_and(|record| record.removing)
            {
                self.inner.catalog.swap(name, &text, None).await?;
            }
            Ok::<_, CatalogError>(deleted)
        }
        .await;
        if let Err(error) = store.unlock(lock).await {
            tracing::warn!(%error, "cannot release the removal lock; it expires by itself");
        }
        let deleted = result?;
        tracing::info!(provider = %name, records = deleted, "provider removed with its connections");
        self.reload_providers(true).await?;
        Ok(deleted)
    }
}

impl Connect {
    /// Re-seals the client secrets of the providers added through the API
    /// under the current key (compare-and-set: an entry changed meanwhile
    /// was sealed under it already); counted in `report` with the other
    /// records.
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub(super) async fn reencrypt_provider_secrets(
        &self,
        keys: &crate::crypto::Keyring,
        report: &mut crate::views::ReencryptReport,
    ) -> Result<(), ConnectError> {
        let (_, entries) = self.inner.catalog.all().await?;
        for (name, text) in entries {
            let Ok(record) = Record::parse(&text) else {
                report.unreadable += 1;
                continue;
            };
            let Some(secret) = &record.secret else {
                continue;
            };
            if secret.sealed().is_ok_and(|sealed| keys.is_current(&sealed)) {
                report.current += 1;
                continue;
            }
            let resealed = record
                .opened(Some(keys))
                .and_then(|table| Record::seal(table, Some(keys), record.at));
            let Ok(mut resealed) = resealed else {
                tracing::warn!(provider = %name, "a provider's client secret no configured key opens");
                report.unreadable += 1;
                continue;
            };
            resealed.removing = record.removing;
            match self
                .inner
                .catalog
                .swap(&name, &text, Some(&resealed.to_text()))
                .await
            {
                Ok(()) => report.reencrypted += 1,
                Err(CatalogError::Conflict) => report.current += 1,
                Err(CatalogError::Store(error)) => return Err(error.into()),
                Err(error) => return Err(ConnectError::Internal(error.to_string())),
            }
        }
        self.reload_providers(true).await?;
        Ok(())
    }
}

impl Connect {
    /// The stored entries of the providers added through the API (name,
    /// stored text; the client secret sealed), those being removed left
    /// out: what `export` writes.
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn stored_providers(&self) -> Result<Vec<(String, String)>, CatalogError> {
        let (_, entries) = self.inner.catalog.all().await?;
        Ok(entries
            .into_iter()
            .filter(|(_, text)| Record::parse(text).is_ok_and(|record| !record.removing))
            .collect())
    }

    /// How many providers were added through the API (removals under way
    /// included): `import` wants none.
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn stored_provider_count(&self) -> Result<usize, CatalogError> {
        Ok(self.inner.catalog.all().await?.1.len())
    }

    /// Writes an exported entry back as it was (`import`): the record must
    /// read, not be a removal, and not take a name of the file. Its secret
    /// stays sealed; it opens with the same `CONNECT_KEYS`.
    ///
    /// # Errors
    ///
    /// [`CatalogError`]: unreadable, a file's name, exists, full; Redis
    /// failures.
    pub async fn import_provider(&self, name: &str, text: &str) -> Result<(), CatalogError> {
        check_exported(name, text)?;
        if self.inner.files.contains(name) {
            return Err(CatalogError::Exists(name.to_owned()));
        }
        self.inner.catalog.add(name, text).await?;
        self.changed().await;
        Ok(())
    }
}

/// Checks an exported provider entry: a valid name, a readable record
/// naming it, not a removal.
///
/// # Errors
///
/// [`CatalogError::Invalid`].
pub fn check_exported(name: &str, text: &str) -> Result<(), CatalogError> {
    let invalid = |problem: &str| CatalogError::Invalid {
        field: "provider".into(),
        problem: problem.to_owned(),
    };
    if !crate::providers::valid_name(name) {
        return Err(invalid("an invalid provider name"));
    }
    let record = Record::parse(text).map_err(|_| invalid("an unreadable provider entry"))?;
    if record.removing || record.table.get("name").and_then(Value::as_str) != Some(name) {
        return Err(invalid(
            "a provider entry of another name, or one being removed",
        ));
    }
    Ok(())
}

fn renamed() -> CatalogError {
    CatalogError::Invalid {
        field: "name".into(),
        problem: "a provider cannot be renamed; remove it and add one with the new name".into(),
    }
}

/// Keeps this replica's providers in step with the API's: checks the
/// change counter every `CONNECT_PROVIDERS_POLL_MS` (and at once after a
/// change made here), reloads when it moved, and finishes removals, until
/// `shutdown` completes.
pub async fn watch(connect: Connect, shutdown: impl Future<Output = ()>) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut ticker = tokio::time::interval(connect.inner.catalog_poll.max(MIN_POLL));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = connect.inner.catalog_changed.notified() => {}
            () = &mut shutdown => return,
        }
        let mut result = connect
            .reload_providers(false)
            .await
            .map(drop)
            .map_err(|error| error.to_string());
        for name in connect.registry().removing().to_vec() {
            if result.is_err() {
                break;
            }
            result = connect
                .finish_removal(&name)
                .await
                .map(drop)
                .map_err(|error| error.to_string());
        }
        match result {
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "cannot read the providers added through the API; retrying");
            }
            Ok(()) if failing => {
                failing = false;
                tracing::info!("the providers added through the API are readable again");
            }
            _ => {}
        }
    }
}

impl From<ConnectError> for CatalogError {
    fn from(error: ConnectError) -> Self {
        match error {
            ConnectError::Store(error) => Self::Store(error),
            other => Self::Internal(other.to_string()),
        }
    }
}
