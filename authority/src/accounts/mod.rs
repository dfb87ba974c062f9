//! User accounts and registered clients, stored in Redis next to the tokens.
//!
//! Each account is one JSON string key (`P user:H(name)`, `P client:H(id)`,
//! named by a keyed digest: see [`crate::keynames`]) plus a membership in a
//! set used for listing. Key names of older versions (`P user:<name>`) are
//! migrated once, before the first account operation of a process, until
//! `P keynames-v2` says it is done. Updates are
//! compare-and-set on the whole record, so two admins changing one account
//! never lose a write, and no request can leave half an account behind: a
//! record is written whole or not at all.
//!
//! - `records`: what a user and a client are;
//! - `migration`: the one-time move to keyed-digest key names;
//! - `identity`: federated accounts by issuer and subject;
//! - this module: the store (read, create, compare-and-set, delete, list).

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use token_repository::{KeyPrefix, RedisStore, Timestamp};
use tokio::sync::OnceCell;

use crate::keynames::{DeploymentKey, NameKind};
use crate::tracked::{Ticket, Tracked};

mod identity;
mod migration;
mod records;

pub use self::identity::{Identity, federated_username};
pub use self::records::{
    Client, NO_PASSWORD, PreviousSecret, User, client_subject, valid_client_id, valid_username,
};

/// Errors of the account store.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Redis failed (see [`token_repository::Error::is_unavailable`]).
    #[error(transparent)]
    Store(#[from] token_repository::Error),
    /// A stored account could not be read.
    #[error("stored account {0:?} is unreadable")]
    Corrupt(String),
    /// An update kept colliding with concurrent updates.
    #[error("account {0:?} is being changed concurrently; try again")]
    Contended(String),
}

impl From<redis::RedisError> for AccountError {
    fn from(error: redis::RedisError) -> Self {
        Self::Store(error.into())
    }
}

/// One kind of account record: where it lives and what it is.
trait Record: Serialize + DeserializeOwned + Send + Sync {
    const KIND: NameKind;
    /// The key of the record named `name` (a digest, or a legacy id).
    fn key(prefix: &KeyPrefix, name: &str) -> String;
    fn set(prefix: &KeyPrefix) -> String;
    fn id(&self) -> &str;
}

/// Verified clients and users in memory, kept exact by Redis tracking.
pub type TrackedAccounts = Tracked<Client, User>;

/// How often an update is retried when it collides with another one.
const UPDATE_ATTEMPTS: usize = 8;

/// Users and clients in Redis.
#[derive(Debug, Clone)]
pub struct Accounts {
    store: RedisStore,
    key: Arc<DeploymentKey>,
    migrated: Arc<OnceCell<()>>,
    /// Verified clients and users in memory (`INTROSPECTION_CACHE`).
    tracked: Option<Arc<TrackedAccounts>>,
    #[cfg(test)]
    faults: Arc<crate::faults::Faults>,
}

impl Accounts {
    /// Accounts in the Redis of `store`, under its prefix.
    #[must_use]
    pub fn new(store: RedisStore) -> Self {
        Self {
            key: Arc::new(DeploymentKey::new(store.clone())),
            store,
            migrated: Arc::new(OnceCell::new()),
            tracked: None,
            #[cfg(test)]
            faults: Arc::default(),
        }
    }

    /// These accounts, keeping verified clients and the users of refresh
    /// rotations in `tracked` (and dropping them from it on every change
    /// made here).
    #[must_use]
    pub fn with_tracked(mut self, tracked: Arc<TrackedAccounts>) -> Self {
        self.tracked = Some(tracked);
        self
    }

    /// The client `client_id` as last verified, from memory: only while
    /// the cache is tracking, never an unknown or unverified id. Its
    /// secret must still be checked.
    #[must_use]
    pub fn verified_client(&self, client_id: &str) -> Option<Arc<Client>> {
        self.tracked.as_ref()?.client(client_id)
    }

    /// A ticket to [`remember_verified`](Self::remember_verified) a client
    /// about to be read from Redis; `None` without a tracking cache.
    #[must_use]
    pub fn verified_ticket(&self) -> Option<Ticket> {
        self.tracked.as_ref()?.ticket()
    }

    /// Keeps `client`, read after `ticket` was taken and just verified,
    /// unless anything changed since.
    ///
    /// # Errors
    ///
    /// Store failures naming its key (the deployment key).
    pub async fn remember_verified(
        &self,
        ticket: Ticket,
        client: &Client,
    ) -> Result<(), AccountError> {
        if let Some(tracked) = &self.tracked {
            let key = self.key_of::<Client>(&client.client_id).await?;
            tracked.remember_client(ticket, &client.client_id, &key, client.clone());
        }
        Ok(())
    }

    /// Drops the record `id` of kind `T` from memory (it changed here).
    fn changed<T: Record>(&self, id: &str) {
        match (&self.tracked, T::KIND) {
            (Some(tracked), NameKind::Client) => tracked.forget_client(id),
            (Some(tracked), NameKind::User) => tracked.forget_user(id),
            _ => {}
        }
    }

    /// The injected faults (tests only).
    #[cfg(test)]
    pub(crate) fn faults(&self) -> &crate::faults::Faults {
        &self.faults
    }

    /// The deployment key that names the account keys.
    #[must_use]
    pub fn deployment_key(&self) -> &Arc<DeploymentKey> {
        &self.key
    }

    /// The key of record `id` of kind `T`, after the one-time migration of
    /// plaintext key names.
    async fn key_of<T: Record>(&self, id: &str) -> Result<String, AccountError> {
        self.migrated
            // Boxed: it runs once per process, and inlined it would make
            // every account read's future (and every caller's) as large as
            // the migration's.
            .get_or_try_init(|| Box::pin(self.migrate_key_names()))
            .await?;
        let name = self.key.name(T::KIND, id).await?;
        Ok(T::key(self.store.prefix(), &name))
    }

    /// The user `username`, if any.
    ///
    /// # Errors
    ///
    /// Store failures, unreadable records.
    pub async fn user(&self, username: &str) -> Result<Option<User>, AccountError> {
        let user = self.get::<User>(username).await?.map(|(user, _)| user);
        #[cfg(test)]
        self.faults.after_user_read.point().await;
        Ok(user)
    }

    /// The user `username` for a refresh rotation: from memory while the
    /// cache tracks it (`INTROSPECTION_CACHE_USERS`), otherwise read from
    /// Redis and kept — unless it changed meanwhile. Only a rotation reads
    /// through here: the caller has just found a live refresh token naming
    /// this user, so nobody can fill the cache with made-up names.
    ///
    /// # Errors
    ///
    /// As [`Self::user`].
    pub async fn user_for_rotation(
        &self,
        username: &str,
    ) -> Result<Option<Arc<User>>, AccountError> {
        let Some(tracked) = self
            .tracked
            .as_ref()
            .filter(|tracked| tracked.holds_users())
        else {
            return Ok(self.user(username).await?.map(Arc::new));
        };
        if let Some(user) = tracked.user(username) {
            return Ok(Some(user));
        }
        // Boxed: the miss reads Redis; the hit above should not carry it.
        Box::pin(async move {
            let ticket = tracked.ticket();
            let Some((user, _, key)) = self.get_keyed::<User>(username).await? else {
                return Ok(None);
            };
            #[cfg(test)]
            self.faults.after_user_read.point().await;
            let user = Arc::new(user);
            if let Some(ticket) = ticket {
                tracked.remember_user(ticket, username, &key, Arc::clone(&user));
            }
            Ok(Some(user))
        })
        .await
    }

    /// The client `client_id`, if any.
    ///
    /// # Errors
    ///
    /// Store failures, unreadable records.
    pub async fn client(&self, client_id: &str) -> Result<Option<Client>, AccountError> {
        Ok(self
            .get::<Client>(client_id)
            .await?
            .map(|(client, _)| client))
    }

    /// Creates a user; `false` when the username is taken (nothing written).
    ///
    /// # Errors
    ///
    /// Store failures.
    pub async fn create_user(&self, user: &User) -> Result<bool, AccountError> {
        self.create(user).await
    }

    /// Registers a client; `false` when the id is taken (nothing written).
    ///
    /// # Errors
    ///
    /// Store failures.
    pub async fn create_client(&self, client: &Client) -> Result<bool, AccountError> {
        self.create(client).await
    }

    /// Applies `change` to the user atomically (compare-and-set, retried on
    /// collision); answers the old and new record, `None` when there is no
    /// such user.
    ///
    /// # Errors
    ///
    /// Store failures, [`AccountError::Contended`].
    pub async fn update_user(
        &self,
        username: &str,
        change: impl Fn(&mut User) + Send + Sync,
    ) -> Result<Option<(User, User)>, AccountError> {
        self.update(username, |user: &mut User| {
            change(user);
            user.updated_at = Timestamp::now();
        })
        .await
    }

    /// Applies `change` to the client atomically, like [`Self::update_user`].
    ///
    /// # Errors
    ///
    /// Store failures, [`AccountError::Contended`].
    pub async fn update_client(
        &self,
        client_id: &str,
        change: impl Fn(&mut Client) + Send + Sync,
    ) -> Result<Option<(Client, Client)>, AccountError> {
        self.update(client_id, |client: &mut Client| {
            change(client);
            client.updated_at = Timestamp::now();
        })
        .await
    }

    /// Deletes a user; answers the deleted record.
    ///
    /// # Errors
    ///
    /// Store failures, [`AccountError::Contended`].
    pub async fn delete_user(&self, username: &str) -> Result<Option<User>, AccountError> {
        self.delete(username, |_: &User| true).await
    }

    /// Deletes the user if `condition` holds for its current record;
    /// answers whether it deleted.
    ///
    /// # Errors
    ///
    /// Store failures, [`AccountError::Contended`].
    pub async fn delete_user_if(
        &self,
        username: &str,
        condition: impl Fn(&User) -> bool + Send + Sync,
    ) -> Result<bool, AccountError> {
        Ok(self.delete(username, condition).await?.is_some())
    }

    /// Deletes a client; answers the deleted record.
    ///
    /// # Errors
    ///
    /// Store failures, [`AccountError::Contended`].
    pub async fn delete_client(&self, client_id: &str) -> Result<Option<Client>, AccountError> {
        self.delete(client_id, |_: &Client| true).await
    }

    /// All users, by username.
    ///
    /// # Errors
    ///
    /// Store failures, unreadable records.
    pub async fn users(&self) -> Result<Vec<User>, AccountError> {
        self.list().await
    }

    /// All clients, by id.
    ///
    /// # Errors
    ///
    /// Store failures, unreadable records.
    pub async fn clients(&self) -> Result<Vec<Client>, AccountError> {
        self.list().await
    }

    async fn get<T: Record>(&self, id: &str) -> Result<Option<(T, String)>, AccountError> {
        Ok(self
            .get_keyed::<T>(id)
            .await?
            .map(|(record, text, _)| (record, text)))
    }

    /// As [`Self::get`], with the key the record was read from.
    async fn get_keyed<T: Record>(
        &self,
        id: &str,
    ) -> Result<Option<(T, String, String)>, AccountError> {
        let mut key = self.key_of::<T>(id).await?;
        let mut raw = self.get_raw(key.clone()).await?;
        if raw.is_none() && self.key.reload().await?.1 {
            // The deployment key changed under us: look again by the new name.
            key = self.key_of::<T>(id).await?;
            raw = self.get_raw(key.clone()).await?;
        }
        raw.map(|text| {
            serde_json::from_str(&text)
                .map(|record| (record, text, key))
                .map_err(|_| AccountError::Corrupt(id.to_owned()))
        })
        .transpose()
    }

    async fn get_raw(&self, key: String) -> Result<Option<String>, AccountError> {
        Ok(self
            .store
            .with_shared(|mut connection| async move {
                redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut connection)
                    .await
            })
            .await?)
    }

    async fn create<T: Record>(&self, record: &T) -> Result<bool, AccountError> {
        // Never create a record under a name only this process would find.
        self.key.reload().await?;
        let key = self.key_of::<T>(record.id()).await?;
        let set = T::set(self.store.prefix());
        let id = record.id().to_owned();
        let json = serde_json::to_string(record).map_err(|_| AccountError::Corrupt(id.clone()))?;
        Ok(self
            .store
            .with_shared(|mut connection| async move {
                let created: bool = redis::cmd("SET")
                    .arg(&key)
                    .arg(&json)
                    .arg("NX")
                    .query_async::<Option<String>>(&mut connection)
                    .await?
                    .is_some();
                if created {
                    let _: i64 = redis::cmd("SADD")
                        .arg(&set)
                        .arg(&id)
                        .query_async(&mut connection)
                        .await?;
                }
                Ok(created)
            })
            .await?)
    }

    async fn update<T: Record + Clone>(
        &self,
        id: &str,
        change: impl Fn(&mut T) + Send + Sync,
    ) -> Result<Option<(T, T)>, AccountError> {
        for _ in 0..UPDATE_ATTEMPTS {
            let Some((old, old_json)) = self.get::<T>(id).await? else {
                return Ok(None);
            };
            let mut new = old.clone();
            change(&mut new);
            let new_json =
                serde_json::to_string(&new).map_err(|_| AccountError::Corrupt(id.to_owned()))?;
            let key = self.key_of::<T>(id).await?;
            let swapped =
                token_repository::cas::replace(&self.store, &key, &old_json, &new_json, None)
                    .await?;
            if swapped {
                self.changed::<T>(id);
                return Ok(Some((old, new)));
            }
        }
        Err(AccountError::Contended(id.to_owned()))
    }

    async fn delete<T: Record>(
        &self,
        id: &str,
        condition: impl Fn(&T) -> bool + Send + Sync,
    ) -> Result<Option<T>, AccountError> {
        for _ in 0..UPDATE_ATTEMPTS {
            let Some((old, old_json)) = self.get::<T>(id).await? else {
                return Ok(None);
            };
            if !condition(&old) {
                return Ok(None);
            }
            let key = self.key_of::<T>(id).await?;
            if token_repository::cas::delete_if(&self.store, &key, &old_json).await? {
                self.changed::<T>(id);
                let set = T::set(self.store.prefix());
                let owned_id = id.to_owned();
                let _: i64 = self
                    .store
                    .with_shared(|mut connection| async move {
                        redis::cmd("SREM")
                            .arg(&set)
                            .arg(&owned_id)
                            .query_async(&mut connection)
                            .await
                    })
                    .await?;
                return Ok(Some(old));
            }
        }
        Err(AccountError::Contended(id.to_owned()))
    }

    async fn list<T: Record>(&self) -> Result<Vec<T>, AccountError> {
        let set = T::set(self.store.prefix());
        let mut ids: Vec<String> = self
            .store
            .with_shared(|mut connection| async move {
                redis::cmd("SMEMBERS")
                    .arg(&set)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        ids.sort();
        let mut keyed = Vec::with_capacity(ids.len());
        for id in ids {
            let key = self.key_of::<T>(&id).await?;
            keyed.push((id, key));
        }
        let raw: Vec<(String, Option<String>)> = self
            .store
            .with_shared(|mut connection| async move {
                let mut found = Vec::with_capacity(keyed.len());
                // One key at a time keeps this cluster-safe; lists are admin
                // operations, not a hot path.
                for (id, key) in keyed {
                    let value: Option<String> = redis::cmd("GET")
                        .arg(&key)
                        .query_async(&mut connection)
                        .await?;
                    found.push((id, value));
                }
                Ok(found)
            })
            .await?;
        raw.into_iter()
            .filter_map(|(id, value)| value.map(|text| (id, text)))
            .map(|(id, text)| serde_json::from_str(&text).map_err(|_| AccountError::Corrupt(id)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use token_repository::Scopes;

    use super::*;

    /// Names that would break keys or confuse people are refused.
    #[test]
    fn identifiers() {
        assert!(valid_username("alice"));
        assert!(valid_username("a.b-c_d+e@example.com"));
        for bad in ["", "Alice", "a b", "a{b}", "ümlaut", "a:b", &"x".repeat(65)] {
            assert!(!valid_username(bad), "{bad:?}");
        }
        assert!(valid_client_id("Web-App_1.0"));
        for bad in ["", "a b", "a:b", "a{b", &"x".repeat(65)] {
            assert!(!valid_client_id(bad), "{bad:?}");
        }
    }

    /// Debug output of accounts never contains the hashes.
    #[test]
    fn debug_hides_hashes() {
        let user = User {
            subject: "s".into(),
            username: "u".into(),
            name: None,
            email: None,
            scopes: Scopes::empty(),
            password_hash: "$argon2id$secret-hash".into(),
            disabled: false,
            created_at: Timestamp::now(),
            updated_at: Timestamp::now(),
            identity: None,
        };
        assert!(!format!("{user:?}").contains("secret-hash"));
        let client = Client {
            client_id: "c".into(),
            secret_hash: "$argon2id$secret-hash".into(),
            scopes: Scopes::empty(),
            introspect: false,
            view_access_tokens: false,
            view_providers: None,
            allowed_ips: Vec::new(),
            previous_secret: None,
            redirect_uris: Vec::new(),
            public: false,
            first_party: false,
            resources: Vec::new(),
            disabled: false,
            created_at: Timestamp::now(),
            updated_at: Timestamp::now(),
        };
        assert!(!format!("{client:?}").contains("secret-hash"));
    }

    /// Clients stored before connected services existed still read, without
    /// the permission; the allow-list is kept as CIDR text.
    #[test]
    fn older_client_records() {
        let old = r#"{"client_id":"c","secret_hash":"h","scopes":[],"introspect":true,"disabled":false,"created_at":1,"updated_at":1}"#;
        let client: Client = serde_json::from_str(old).expect("old record");
        assert!(!client.view_access_tokens);
        assert!(client.allowed_ips.is_empty());
        let mut client = client;
        client.allowed_ips = vec!["10.0.0.0/8".parse().expect("cidr")];
        let text = serde_json::to_string(&client).expect("json");
        assert!(text.contains(r#""allowed_ips":["10.0.0.0/8"]"#), "{text}");
    }
}
