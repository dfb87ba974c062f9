//! Providers added at run time (`/v1/admin/providers`; Sciebo RDS's
//! `addService` / `removeService`): their stored form, validation and the
//! Redis hash that holds them.
//!
//! One hash, `P providers`, maps a provider's name to a [`Record`]: the
//! provider's table as the admin API took it (the fields of a
//! `[[providers]]` table, validated by the same code as the file), the
//! client secret sealed with the connect keys (`CONNECT_KEYS`, bound to the
//! provider's name), and whether it is being removed. Its field
//! [`VERSION_FIELD`] counts changes: every write is a script that changes
//! one entry and increments it, and every replica polls it (one `HGET`
//! per `CONNECT_PROVIDERS_POLL_MS`) and reloads the hash when it moved
//! ([`crate::connect::catalog`]). Everything is one key, so it works on
//! Redis Cluster as it does on one server.
//!
//! What the API may not set: `client_secret_file` (a path on the
//! authority's disk). The environment's `CONNECT_PROVIDER_<NAME>_CLIENT_SECRET`
//! is not read for these providers either: their secret is the one given
//! to the API.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use token_repository::RedisStore;

use crate::credentials::CredentialProvider;
use crate::crypto::Keyring;
use crate::providers::{self, ProviderConfig};
use crate::record::Stored;

/// The most providers the API may add (the file's are not counted).
pub const MAX_API_PROVIDERS: usize = 100;
/// The hash field that counts changes (not a valid provider name).
pub const VERSION_FIELD: &str = "~version";
/// Fields the admin API refuses.
const REFUSED_FIELDS: &[(&str, &str)] = &[(
    "client_secret_file",
    "a path on the authority's disk cannot be given through the API; send client_secret",
)];

/// Why a change to the run-time providers was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A field is invalid (the message names it; never a secret).
    #[error("{field}: {problem}")]
    Invalid {
        /// The field (`client_id`, `scopes`, …), or `body`.
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// The provider comes from the configuration file.
    #[error("provider {0:?} is configured in the file and cannot be changed through the API")]
    ReadOnly(String),
    /// A provider of that name exists.
    #[error("a provider named {0:?} exists")]
    Exists(String),
    /// No provider of that name was added through the API.
    #[error("no such provider")]
    Unknown,
    /// The provider's removal is still under way.
    #[error("provider {0:?} is being removed; try again once its connections are gone")]
    Removing(String),
    /// [`MAX_API_PROVIDERS`] are there already.
    #[error("at most {MAX_API_PROVIDERS} providers can be added through the API")]
    Full,
    /// Connected services lack a setting the provider needs.
    #[error("{0}")]
    NotConfigured(&'static str),
    /// The entry changed while this request read it; nothing was written.
    #[error("the provider changed meanwhile; read it again and retry")]
    Conflict,
    /// Redis failed.
    #[error(transparent)]
    Store(#[from] token_repository::Error),
    /// A stored entry cannot be read, or sealing failed.
    #[error("{0}")]
    Internal(String),
}

/// A provider as stored in `P providers`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Its table, without the client secret.
    pub table: Map<String, Value>,
    /// The client secret, sealed for the provider's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Stored>,
    /// Being removed: no longer offered; its connections are being
    /// deleted.
    #[serde(default)]
    pub removing: bool,
    /// When it was last changed (Unix ms).
    pub at: u64,
}

/// A validated provider table.
#[derive(Debug, Clone)]
pub enum Parsed {
    /// An OAuth provider.
    OAuth(Box<ProviderConfig>),
    /// A provider of a credentials kind.
    Credentials(CredentialProvider),
}

impl Parsed {
    /// Its name.
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            Self::OAuth(config) => &config.name,
            Self::Credentials(provider) => &provider.name,
        }
    }
}

/// The owner recorded in a sealed secret's envelope.
fn owner(name: &str) -> String {
    format!("provider:{name}")
}

/// The associated data of `name`'s sealed client secret.
fn secret_aad(name: &str) -> Vec<u8> {
    let mut aad = b"token-service/provider-secret/v1\0".to_vec();
    aad.extend_from_slice(name.as_bytes());
    aad
}

impl Record {
    /// The record of `table` (its `client_secret` taken out and sealed
    /// with `keys`).
    ///
    /// # Errors
    ///
    /// [`CatalogError::NotConfigured`] for a secret without keys;
    /// [`CatalogError::Internal`] when sealing fails.
    pub fn seal(
        mut table: Map<String, Value>,
        keys: Option<&Keyring>,
        at: u64,
    ) -> Result<Self, CatalogError> {
        let name = table
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let secret = match table.remove("client_secret") {
            Some(Value::String(secret)) => {
                let secret = zeroize::Zeroizing::new(secret);
                let keys = keys.ok_or(CatalogError::NotConfigured(
                    "CONNECT_KEYS is required to store a client secret",
                ))?;
                let sealed = keys
                    .seal(secret.as_bytes(), &secret_aad(&name))
                    .map_err(|error| CatalogError::Internal(error.to_string()))?;
                Some(Stored::envelope(&owner(&name), sealed))
            }
            _ => None,
        };
        Ok(Self {
            table,
            secret,
            removing: false,
            at,
        })
    }

    /// Its table with the client secret opened (for validation).
    ///
    /// # Errors
    ///
    /// [`CatalogError::Internal`] when the secret does not open.
    pub fn opened(&self, keys: Option<&Keyring>) -> Result<Map<String, Value>, CatalogError> {
        let mut table = self.table.clone();
        if let Some(stored) = &self.secret {
            let name = table
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let unreadable = || {
                CatalogError::Internal(format!(
                    "the client secret of {name:?} does not open with CONNECT_KEYS"
                ))
            };
            if stored.subject() != owner(name) {
                return Err(unreadable());
            }
            let keys = keys.ok_or_else(unreadable)?;
            let sealed = stored.sealed().map_err(|_| unreadable())?;
            let plaintext = keys
                .open(&sealed, &secret_aad(name))
                .map_err(|_| unreadable())?;
            let secret = String::from_utf8(plaintext.to_vec()).map_err(|_| unreadable())?;
            table.insert("client_secret".into(), Value::String(secret));
        }
        Ok(table)
    }

    /// The stored text.
    #[must_use]
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a stored text.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Internal`] when it is not a record.
    pub fn parse(text: &str) -> Result<Self, CatalogError> {
        serde_json::from_str(text)
            .map_err(|_| CatalogError::Internal("a stored provider is unreadable".into()))
    }
}

/// Validates a provider table given to the API (with its client secret,
/// if any), by the rules of the file's `[[providers]]` tables.
///
/// # Errors
///
/// [`CatalogError::Invalid`] naming the field.
pub fn validate(table: &Map<String, Value>) -> Result<Parsed, CatalogError> {
    for (field, problem) in REFUSED_FIELDS {
        if table.contains_key(*field) {
            return Err(CatalogError::Invalid {
                field: (*field).to_owned(),
                problem: (*problem).to_owned(),
            });
        }
    }
    let toml =
        toml::Value::try_from(Value::Object(table.clone())).map_err(|_| CatalogError::Invalid {
            field: "body".into(),
            problem:
                "expected an object of strings, numbers, booleans, lists and objects (no null)"
                    .into(),
        })?;
    let toml::Value::Table(toml) = toml else {
        return Err(CatalogError::Invalid {
            field: "body".into(),
            problem: "expected an object".into(),
        });
    };
    // The environment is not read: the API gives the secret.
    let set = providers::parse_all(&[toml], &|_| None).map_err(|error| {
        let field = error
            .variable
            .strip_prefix("providers[0]")
            .unwrap_or(&error.variable)
            .trim_start_matches('.');
        CatalogError::Invalid {
            field: if field.is_empty() { "body" } else { field }.to_owned(),
            problem: error.problem.clone(),
        }
    })?;
    if let Some(config) = set.oauth.into_iter().next() {
        return Ok(Parsed::OAuth(Box::new(config)));
    }
    set.credentials
        .into_iter()
        .next()
        .map(Parsed::Credentials)
        .ok_or(CatalogError::Invalid {
            field: "body".into(),
            problem: "expected one provider".into(),
        })
}

/// Adds `name` if absent and fewer than `ARGV[3]` entries exist:
/// 1 added, 0 exists, -1 full.
static ADD: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end \
         local count = redis.call('HLEN', KEYS[1]) \
         if redis.call('HEXISTS', KEYS[1], ARGV[4]) == 1 then count = count - 1 end \
         if count >= tonumber(ARGV[3]) then return -1 end \
         redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) \
         redis.call('HINCRBY', KEYS[1], ARGV[4], 1) \
         return 1",
    )
});

/// Replaces (`ARGV[3]` non-empty) or deletes entry `ARGV[1]` if it still
/// holds `ARGV[2]`: 1 done, 0 changed meanwhile.
static SWAP: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end \
         if ARGV[3] == '' then redis.call('HDEL', KEYS[1], ARGV[1]) \
         else redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end \
         redis.call('HINCRBY', KEYS[1], ARGV[4], 1) \
         return 1",
    )
});

/// The `P providers` hash.
#[derive(Debug, Clone)]
pub struct CatalogStore {
    store: RedisStore,
}

impl CatalogStore {
    /// The hash in the Redis of `store`.
    #[must_use]
    pub fn new(store: RedisStore) -> Self {
        Self { store }
    }

    fn key(&self) -> String {
        self.store.prefix().providers()
    }

    /// The change counter (0 before the first change).
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn version(&self) -> token_repository::Result<i64> {
        let key = self.key();
        let version: Option<i64> = self
            .store
            .with_shared(|mut connection| async move {
                redis::cmd("HGET")
                    .arg(&key)
                    .arg(VERSION_FIELD)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        Ok(version.unwrap_or(0))
    }

    /// Every entry, by name, and the change counter they are at (one
    /// `HGETALL`, so both agree).
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn all(&self) -> token_repository::Result<(i64, Vec<(String, String)>)> {
        let key = self.key();
        let mut entries: Vec<(String, String)> = self
            .store
            .with_shared(|mut connection| async move {
                redis::cmd("HGETALL")
                    .arg(&key)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        let mut version = 0;
        entries.retain(|(name, value)| {
            if name == VERSION_FIELD {
                version = value.parse().unwrap_or(0);
                false
            } else {
                true
            }
        });
        entries.sort();
        Ok((version, entries))
    }

    /// The stored text of `name`.
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn get(&self, name: &str) -> token_repository::Result<Option<String>> {
        let (key, name) = (self.key(), name.to_owned());
        self.store
            .with_shared(|mut connection| async move {
                redis::cmd("HGET")
                    .arg(&key)
                    .arg(&name)
                    .query_async(&mut connection)
                    .await
            })
            .await
    }

    /// Adds `name`.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Exists`], [`CatalogError::Full`], Redis failures.
    pub async fn add(&self, name: &str, text: &str) -> Result<(), CatalogError> {
        let (key, name_arg, text) = (self.key(), name.to_owned(), text.to_owned());
        let outcome: i64 = self
            .store
            .with_shared(|mut connection| async move {
                ADD.key(&key)
                    .arg(&name_arg)
                    .arg(&text)
                    .arg(MAX_API_PROVIDERS)
                    .arg(VERSION_FIELD)
                    .invoke_async(&mut connection)
                    .await
            })
            .await?;
        match outcome {
            1 => Ok(()),
            0 => Err(CatalogError::Exists(name.to_owned())),
            _ => Err(CatalogError::Full),
        }
    }

    /// Replaces `name`'s `old` text by `new` (`None`: deletes it).
    ///
    /// # Errors
    ///
    /// [`CatalogError::Conflict`] when it changed meanwhile; Redis
    /// failures.
    pub async fn swap(&self, name: &str, old: &str, new: Option<&str>) -> Result<(), CatalogError> {
        let (key, name, old, new) = (
            self.key(),
            name.to_owned(),
            old.to_owned(),
            new.unwrap_or_default().to_owned(),
        );
        let swapped: i64 = self
            .store
            .with_shared(|mut connection| async move {
                SWAP.key(&key)
                    .arg(&name)
                    .arg(&old)
                    .arg(&new)
                    .arg(VERSION_FIELD)
                    .invoke_async(&mut connection)
                    .await
            })
            .await?;
        if swapped == 1 {
            Ok(())
        } else {
            Err(CatalogError::Conflict)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("an object"),
        }
    }

    /// The client secret leaves the table sealed, bound to the name: it
    /// opens for its own record only, and is never in the stored text.
    #[test]
    fn the_secret_is_sealed_for_its_provider() {
        let keys = Keyring::parse(KEYS, "CONNECT_KEYS").expect("keys");
        let table = object(serde_json::json!({
            "name": "orcid", "issuer": "https://orcid.org",
            "client_id": "app", "client_secret": "s3cret-value",
        }));
        let record = Record::seal(table, Some(&keys), 1).expect("sealed");
        let text = record.to_text();
        assert!(!text.contains("s3cret-value"), "{text}");
        assert!(!record.table.contains_key("client_secret"));
        let opened = Record::parse(&text)
            .expect("parse")
            .opened(Some(&keys))
            .expect("opens");
        assert_eq!(opened["client_secret"], "s3cret-value");
        let mut moved = Record::parse(&text).expect("parse");
        moved.table.insert("name".into(), "other".into());
        assert!(moved.opened(Some(&keys)).is_err(), "bound to the name");
        assert!(matches!(
            Record::seal(
                object(serde_json::json!({"name": "x", "client_secret": "s"})),
                None,
                1
            ),
            Err(CatalogError::NotConfigured(_))
        ));
    }

    /// The file's rules apply, errors name the field without the
    /// `providers[0].` of the file; a path on disk and nulls are refused.
    #[test]
    fn tables_are_validated_like_the_file() {
        let oauth = validate(&object(serde_json::json!({
            "name": "orcid", "issuer": "https://orcid.org",
            "client_id": "app", "client_secret": "s", "scopes": ["openid"],
            "default_expires_in": 60,
        })))
        .expect("valid");
        assert!(matches!(&oauth, Parsed::OAuth(config) if config.scopes == ["openid"]));
        let webdav = validate(&object(
            serde_json::json!({"name": "webdav", "kind": "password"}),
        ))
        .expect("valid");
        assert_eq!(webdav.name(), "webdav");
        let cases = [
            (
                serde_json::json!({"name": "o", "issuer": "https://x", "client_id": "c"}),
                "client_secret",
            ),
            (
                serde_json::json!({"name": "o", "issuer": "http://idp.example", "client_id": "c", "client_secret": "s"}),
                "issuer",
            ),
            (serde_json::json!({"name": "O", "kind": "api_key"}), "name"),
            (
                serde_json::json!({"name": "o", "kind": "api_key", "extra": 1}),
                "body",
            ),
            (
                serde_json::json!({"name": "o", "kind": "api_key", "logo_url": null}),
                "body",
            ),
            (
                serde_json::json!({"name": "o", "issuer": "https://x", "client_id": "c", "client_secret_file": "/etc/shadow"}),
                "client_secret_file",
            ),
        ];
        for (table, field) in cases {
            match validate(&object(table.clone())) {
                Err(CatalogError::Invalid {
                    field: named,
                    problem,
                }) => {
                    assert_eq!(named, field, "{table}: {problem}");
                    assert!(!problem.contains("/etc/shadow"));
                }
                other => panic!("{table}: {other:?}"),
            }
        }
    }
}
