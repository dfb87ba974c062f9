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

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use token_repository::{Holder, KeyPrefix, RedisStore, Scopes, Timestamp};
use tokio::sync::OnceCell;

use crate::keynames::{DeploymentKey, NameKind};
use crate::tracked::{Ticket, Tracked};

#[path = "accounts_identity.rs"]
mod identity;
pub use identity::{Identity, federated_username};

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

/// A user who logs in with a password.
///
/// Not a [`Holder`]: this is the stored account (JSON in Redis, whose form
/// must not change), where `scopes` are what the user *may* be granted and
/// there is no client; [`User::holder`] makes the holder of one grant.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Stable id (a UUID), the `sub` of the user's tokens.
    pub subject: String,
    /// Login name: lower-case, unique, never changes.
    pub username: String,
    /// Display name.
    pub name: Option<String>,
    /// Email address.
    pub email: Option<String>,
    /// Scopes the user may be granted.
    pub scopes: Scopes,
    /// argon2id hash of the password (PHC string).
    pub password_hash: String,
    /// A disabled user cannot log in or refresh.
    pub disabled: bool,
    /// When the account was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// The external identity it signs in with (federated sign-in); such
    /// an account has no password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
}

/// The password hash of accounts without a password (federated sign-in):
/// not a PHC string, so no password ever verifies against it.
pub const NO_PASSWORD: &str = "!federated";

impl User {
    /// Whether the account has a password (a federated account has none,
    /// unless an administrator set one).
    #[must_use]
    pub fn has_password(&self) -> bool {
        self.password_hash != NO_PASSWORD
    }

    /// The holder of tokens issued to this user with `scopes` (narrowed from
    /// the user's) for `client_id`.
    #[must_use]
    pub fn holder(&self, scopes: Scopes, client_id: Option<String>) -> Holder {
        Holder {
            subject: self.subject.clone(),
            username: self.username.clone(),
            name: self.name.clone(),
            email: self.email.clone(),
            scopes,
            client_id,
        }
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("subject", &self.subject)
            .field("username", &self.username)
            .field("scopes", &self.scopes)
            .field("disabled", &self.disabled)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// A registered client (an application).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    /// Public id.
    pub client_id: String,
    /// The secret's keyed SHA-256 digest (`$hmac-sha256$…`, see
    /// [`crate::keynames`]); older records hold an argon2id hash (PHC
    /// string), replaced by a digest at its next successful use.
    pub secret_hash: String,
    /// The secret before the last rotation, valid until its grace period
    /// ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<PreviousSecret>,
    /// Scopes the client may request for itself (`client_credentials`).
    pub scopes: Scopes,
    /// May call the introspection endpoint.
    pub introspect: bool,
    /// May fetch users' provider access tokens (connected services,
    /// `GET /v1/users/{subject}/connect/{provider}/token`).
    #[serde(default)]
    pub view_access_tokens: bool,
    /// The providers whose tokens it may fetch with `view_access_tokens`;
    /// `None`: every provider (the behaviour before the list existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view_providers: Option<Vec<String>>,
    /// Networks it may fetch provider tokens from; empty: any address.
    #[serde(default)]
    pub allowed_ips: Vec<ipnet::IpNet>,
    /// Where `/oauth/authorize` may send the browser back (authorization
    /// code flow); matched exactly, loopback ones on any port
    /// ([`crate::oauth::redirect`]). Empty: no code flow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirect_uris: Vec<String>,
    /// A public client (a native or single-page app): it has no secret
    /// (the stored hash is of a secret nobody was given), names itself with
    /// `client_id` and proves itself with PKCE.
    #[serde(default)]
    pub public: bool,
    /// A first-party application: the user is not asked for consent.
    #[serde(default)]
    pub first_party: bool,
    /// The resource servers (RFC 8707 audiences) its tokens may name, as
    /// registered URIs; empty: any registered resource.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// A disabled client cannot authenticate.
    pub disabled: bool,
    /// When it was registered.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

/// A rotated-out client secret that still verifies for a while.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousSecret {
    /// Its digest (or hash), like [`Client::secret_hash`].
    pub secret_hash: String,
    /// When it stops verifying.
    pub expires_at: Timestamp,
}

impl fmt::Debug for PreviousSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreviousSecret")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Whether the client may fetch users' tokens for `provider`: it has
    /// `view_access_tokens`, and `provider` is on its list when it has one.
    #[must_use]
    pub fn may_view(&self, provider: &str) -> bool {
        self.view_access_tokens
            && self
                .view_providers
                .as_ref()
                .is_none_or(|list| list.iter().any(|name| name == provider))
    }

    /// The subject of tokens issued to the client itself: `client:<id>`, so
    /// that no client id can ever equal a user's subject.
    #[must_use]
    pub fn subject(&self) -> String {
        client_subject(&self.client_id)
    }

    /// The holder of tokens issued to this client itself
    /// (`client_credentials`) with `scopes`: its subject, its id as the
    /// username and the client.
    #[must_use]
    pub fn holder(&self, scopes: Scopes) -> Holder {
        Holder {
            subject: self.subject(),
            username: self.client_id.clone(),
            name: None,
            email: None,
            scopes,
            client_id: Some(self.client_id.clone()),
        }
    }
}

/// The subject of tokens issued to client `client_id` itself.
#[must_use]
pub fn client_subject(client_id: &str) -> String {
    format!("client:{client_id}")
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field("introspect", &self.introspect)
            .field("view_access_tokens", &self.view_access_tokens)
            .field("view_providers", &self.view_providers)
            .field("allowed_ips", &self.allowed_ips)
            .field("redirect_uris", &self.redirect_uris)
            .field("public", &self.public)
            .field("first_party", &self.first_party)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

/// Whether `username` is acceptable: 1–64 of `a-z 0-9 . _ @ + -`.
#[must_use]
pub fn valid_username(username: &str) -> bool {
    (1..=64).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._@+-".contains(&b))
}

/// Whether `client_id` is acceptable: 1–64 of `A-Z a-z 0-9 . _ -`.
#[must_use]
pub fn valid_client_id(client_id: &str) -> bool {
    (1..=64).contains(&client_id.len())
        && client_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// One kind of account record: where it lives and what it is.
trait Record: Serialize + DeserializeOwned + Send + Sync {
    const KIND: NameKind;
    /// The key of the record named `name` (a digest, or a legacy id).
    fn key(prefix: &KeyPrefix, name: &str) -> String;
    fn set(prefix: &KeyPrefix) -> String;
    fn id(&self) -> &str;
}

impl Record for User {
    const KIND: NameKind = NameKind::User;
    fn key(prefix: &KeyPrefix, name: &str) -> String {
        prefix.user(name)
    }
    fn set(prefix: &KeyPrefix) -> String {
        prefix.users()
    }
    fn id(&self) -> &str {
        &self.username
    }
}

impl Record for Client {
    const KIND: NameKind = NameKind::Client;
    fn key(prefix: &KeyPrefix, name: &str) -> String {
        prefix.client(name)
    }
    fn set(prefix: &KeyPrefix) -> String {
        prefix.clients()
    }
    fn id(&self) -> &str {
        &self.client_id
    }
}

/// How often an update is retried when it collides with another one.
const UPDATE_ATTEMPTS: usize = 8;

/// Users and clients in Redis.
#[derive(Debug, Clone)]
pub struct Accounts {
    store: RedisStore,
    key: Arc<DeploymentKey>,
    migrated: Arc<OnceCell<()>>,
    /// Verified clients in memory (`INTROSPECTION_CACHE`).
    tracked: Option<Arc<Tracked<Client>>>,
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

    /// These accounts, keeping verified clients in `tracked` (and dropping
    /// them from it on every change made here).
    #[must_use]
    pub fn with_tracked(mut self, tracked: Arc<Tracked<Client>>) -> Self {
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
        if let (Some(tracked), NameKind::Client) = (&self.tracked, T::KIND) {
            tracked.forget_client(id);
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

    /// Moves the records of older versions from `P user:<name>` and
    /// `P client:<id>` to their hashed names, unless `P keynames-v2` says
    /// this was done. Safe to run by several authorities at once: a record
    /// is copied with `SET NX` and its old key deleted only while it still
    /// holds what was copied.
    ///
    /// # Errors
    ///
    /// Store failures (the next operation tries again).
    pub async fn migrate_key_names(&self) -> Result<(), AccountError> {
        let marker = self.store.prefix().keynames_migrated();
        let done: bool = {
            let marker = marker.clone();
            self.store
                .with_shared(|mut connection| async move {
                    redis::cmd("EXISTS")
                        .arg(&marker)
                        .query_async(&mut connection)
                        .await
                })
                .await?
        };
        if done {
            return Ok(());
        }
        let users = self.migrate_kind::<User>().await?;
        let clients = self.migrate_kind::<Client>().await?;
        if users + clients > 0 {
            tracing::info!(
                users,
                clients,
                "migrated account key names to keyed digests"
            );
        }
        self.store
            .with_shared(|mut connection| async move {
                redis::cmd("SET")
                    .arg(&marker)
                    .arg(1)
                    .query_async::<()>(&mut connection)
                    .await
            })
            .await?;
        Ok(())
    }

    async fn migrate_kind<T: Record>(&self) -> Result<usize, AccountError> {
        let prefix = self.store.prefix().clone();
        let set = T::set(&prefix);
        let ids: Vec<String> = self
            .store
            .with_shared(|mut connection| async move {
                redis::cmd("SMEMBERS")
                    .arg(&set)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        let mut moved = 0;
        for id in ids {
            let legacy = T::key(&prefix, &id);
            let hashed = T::key(&prefix, &self.key.name(T::KIND, &id).await?);
            let raw: Option<String> = {
                let legacy = legacy.clone();
                self.store
                    .with_shared(|mut connection| async move {
                        redis::cmd("GET")
                            .arg(&legacy)
                            .query_async(&mut connection)
                            .await
                    })
                    .await?
            };
            let Some(json) = raw else { continue };
            {
                let json = json.clone();
                self.store
                    .with_shared(|mut connection| async move {
                        redis::cmd("SET")
                            .arg(&hashed)
                            .arg(&json)
                            .arg("NX")
                            .query_async::<Option<String>>(&mut connection)
                            .await
                    })
                    .await?;
            }
            if token_repository::cas::delete_if(&self.store, &legacy, &json).await? {
                moved += 1;
            }
        }
        Ok(moved)
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
        let mut raw = self.get_raw(self.key_of::<T>(id).await?).await?;
        if raw.is_none() && self.key.reload().await?.1 {
            // The deployment key changed under us: look again by the new name.
            raw = self.get_raw(self.key_of::<T>(id).await?).await?;
        }
        raw.map(|text| {
            serde_json::from_str(&text)
                .map(|record| (record, text))
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
