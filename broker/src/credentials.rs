//! Providers that are not OAuth: services that only take a username and
//! password, or an API key (Sciebo RDS's "token that represents a simple
//! password"). The user stores the secret once; trusted service clients
//! read it back.
//!
//! A `[[providers]]` table with `kind = "password"` or `kind = "api_key"`
//! is a [`CredentialProvider`]: a name, a display name, a logo, `enabled`,
//! and nothing of OAuth (no endpoints, no client, no scopes):
//!
//! ```toml
//! [[providers]]
//! name = "webdav"
//! kind = "password"            # or "api_key"
//! display_name = "Institute WebDAV"
//! logo_url = "https://webdav.example/logo.svg"
//! enabled = true               # false: no new credentials (stored ones are still handed out)
//! ```
//!
//! What the user stores is a [`Secret`], checked against the provider's
//! [`CredentialKind`] and the caps ([`MAX_USERNAME_LEN`],
//! [`MAX_PASSWORD_LEN`], [`MAX_API_KEY_LEN`]). In Redis it is a
//! [`StoredCredential`] sealed like provider tokens (the same envelope,
//! under `P cred:{T}:<p>`, with its own associated data so that a
//! connection record copied there does not open). Secrets are zeroized on
//! drop and never in `Debug` output or errors.

use std::fmt;

use serde::{Deserialize, Serialize};
use token_settings::ConfigError;
use zeroize::Zeroize as _;

use crate::crypto::Keyring;
use crate::record::{RecordError, Stored};

/// Longest username accepted, in bytes.
pub const MAX_USERNAME_LEN: usize = 256;
/// Longest password accepted, in bytes.
pub const MAX_PASSWORD_LEN: usize = 1024;
/// Longest API key accepted, in bytes.
pub const MAX_API_KEY_LEN: usize = 4096;

/// What users store for a credentials provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// A username and a password.
    Password,
    /// One key (a token that is not OAuth).
    ApiKey,
}

impl CredentialKind {
    /// Its name in the configuration and the API (`password`, `api_key`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::ApiKey => "api_key",
        }
    }

    /// Whether `kind` (a table's `kind` field) names a credentials kind.
    #[must_use]
    pub fn is_credentials(kind: &str) -> bool {
        matches!(kind, "password" | "api_key")
    }
}

/// A configured provider of a credentials kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialProvider {
    /// Unique name (among every provider), used in URLs and keys.
    pub name: String,
    /// Name shown to users.
    pub display_name: String,
    /// Logo shown to users.
    pub logo_url: Option<String>,
    /// What users store.
    pub kind: CredentialKind,
    /// Whether users may store new credentials (stored ones are handed
    /// out either way, like the connections of a disabled OAuth
    /// provider).
    pub enabled: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredentialProvider {
    name: String,
    kind: CredentialKind,
    display_name: Option<String>,
    logo_url: Option<String>,
    enabled: Option<bool>,
}

/// Reads table `index` of the `[[providers]]`, whose `kind` is a
/// credentials kind; the name is checked by the caller.
pub(crate) fn parse_provider(
    index: usize,
    table: &toml::Table,
) -> Result<CredentialProvider, ConfigError> {
    let raw: RawCredentialProvider =
        toml::Value::Table(table.clone())
            .try_into()
            .map_err(|error: toml::de::Error| {
                ConfigError::new(
                    &format!("providers[{index}]"),
                    format!(
                        "{} (a provider of kind password or api_key has only name, kind, \
                     display_name, logo_url and enabled)",
                        error.message()
                    ),
                )
            })?;
    if let Some(url) = &raw.logo_url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        return Err(ConfigError::new(
            &format!("providers[{index}].logo_url"),
            "expected an http:// or https:// URL",
        ));
    }
    Ok(CredentialProvider {
        display_name: raw.display_name.unwrap_or_else(|| raw.name.clone()),
        name: raw.name,
        logo_url: raw.logo_url,
        kind: raw.kind,
        enabled: raw.enabled.unwrap_or(true),
    })
}

/// What a user stores: a username and password, or a key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Secret {
    /// For a provider of kind `password`.
    Password {
        /// The username at the service.
        username: String,
        /// The password.
        password: String,
    },
    /// For a provider of kind `api_key`.
    ApiKey {
        /// The key.
        api_key: String,
    },
}

impl Drop for Secret {
    fn drop(&mut self) {
        match self {
            Self::Password { username, password } => {
                username.zeroize();
                password.zeroize();
            }
            Self::ApiKey { api_key } => api_key.zeroize(),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("kind", &self.kind())
            .finish_non_exhaustive()
    }
}

/// Why a secret was refused (never naming its value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// A password for a key provider, or the other way round.
    #[error("this provider takes {0}")]
    WrongKind(&'static str),
    /// Empty or over its cap.
    #[error("{field} must be 1 to {max} bytes")]
    Length {
        /// The field.
        field: &'static str,
        /// Its cap.
        max: usize,
    },
    /// Control characters (a NUL, a line break, …).
    #[error("{0} must not contain control characters")]
    Control(&'static str),
    /// The provider is disabled: no new credentials.
    #[error("the provider is disabled and takes no new credentials")]
    Disabled,
}

fn check_field(field: &'static str, value: &str, max: usize) -> Result<(), CredentialError> {
    if value.is_empty() || value.len() > max {
        return Err(CredentialError::Length { field, max });
    }
    if value.chars().any(char::is_control) {
        return Err(CredentialError::Control(field));
    }
    Ok(())
}

impl Secret {
    /// Its kind.
    #[must_use]
    pub fn kind(&self) -> CredentialKind {
        match self {
            Self::Password { .. } => CredentialKind::Password,
            Self::ApiKey { .. } => CredentialKind::ApiKey,
        }
    }

    /// Checks it for a provider of `kind`: the right kind, every field 1
    /// byte up to its cap, no control characters.
    ///
    /// # Errors
    ///
    /// [`CredentialError`] naming the field and the rule.
    pub fn check(&self, kind: CredentialKind) -> Result<(), CredentialError> {
        match (self, kind) {
            (Self::Password { username, password }, CredentialKind::Password) => {
                check_field("username", username, MAX_USERNAME_LEN)?;
                check_field("password", password, MAX_PASSWORD_LEN)
            }
            (Self::ApiKey { api_key }, CredentialKind::ApiKey) => {
                check_field("api_key", api_key, MAX_API_KEY_LEN)
            }
            (_, CredentialKind::Password) => {
                Err(CredentialError::WrongKind("a username and a password"))
            }
            (_, CredentialKind::ApiKey) => Err(CredentialError::WrongKind("an api_key")),
        }
    }
}

/// The plaintext of a `cred:` record.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCredential {
    /// The user's username at the authority when they stored it (to check
    /// the account when a service client reads it).
    pub owner: String,
    /// When it was stored, Unix milliseconds.
    pub stored_at: u64,
    /// The secret.
    pub secret: Secret,
}

impl fmt::Debug for StoredCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredCredential")
            .field("owner", &self.owner)
            .field("stored_at", &self.stored_at)
            .field("secret", &self.secret)
            .finish()
    }
}

/// The associated data of a credentials record: binds the ciphertext to
/// one subject and one provider, in another domain than connection
/// records ([`crate::crypto::associated_data`]).
#[must_use]
pub fn associated_data(subject: &str, provider: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(32 + subject.len() + provider.len());
    aad.extend_from_slice(b"token-service/credential/v1\0");
    aad.extend_from_slice(subject.as_bytes());
    aad.push(0);
    aad.extend_from_slice(provider.as_bytes());
    aad
}

impl StoredCredential {
    /// Seals it for `subject` / `provider` with the current key.
    ///
    /// # Errors
    ///
    /// [`RecordError::Crypto`] when no randomness is available.
    pub fn seal(
        &self,
        keys: &Keyring,
        subject: &str,
        provider: &str,
    ) -> Result<Stored, RecordError> {
        let plaintext = zeroize::Zeroizing::new(serde_json::to_vec(self).unwrap_or_default());
        let sealed = keys.seal(&plaintext, &associated_data(subject, provider))?;
        Ok(Stored::envelope(subject, sealed))
    }

    /// Opens a sealed record found under `subject` / `provider`.
    ///
    /// # Errors
    ///
    /// [`RecordError`] when it belongs to someone else, does not decrypt
    /// or does not parse.
    pub fn open(
        stored: &Stored,
        keys: &Keyring,
        subject: &str,
        provider: &str,
    ) -> Result<Self, RecordError> {
        if stored.subject() != subject {
            return Err(RecordError::WrongSubject);
        }
        let plaintext = keys.open(&stored.sealed()?, &associated_data(subject, provider))?;
        serde_json::from_slice(&plaintext).map_err(|_| RecordError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

    fn password(username: &str, password: &str) -> Secret {
        Secret::Password {
            username: username.into(),
            password: password.into(),
        }
    }

    /// Kinds must match; every field is 1 byte up to its cap, without
    /// control characters; errors never hold the value.
    #[test]
    fn secrets_are_checked() {
        assert!(
            password("alice", "hunter22")
                .check(CredentialKind::Password)
                .is_ok()
        );
        let key = Secret::ApiKey {
            api_key: "k".repeat(MAX_API_KEY_LEN),
        };
        assert!(key.check(CredentialKind::ApiKey).is_ok());
        assert_eq!(
            key.check(CredentialKind::Password),
            Err(CredentialError::WrongKind("a username and a password"))
        );
        let long = Secret::ApiKey {
            api_key: "k".repeat(MAX_API_KEY_LEN + 1),
        };
        assert_eq!(
            long.check(CredentialKind::ApiKey),
            Err(CredentialError::Length {
                field: "api_key",
                max: MAX_API_KEY_LEN
            })
        );
        let cases = [
            (password("", "x"), "username"),
            (password(&"u".repeat(MAX_USERNAME_LEN + 1), "x"), "username"),
            (password("alice", ""), "password"),
            (
                password("alice", &"p".repeat(MAX_PASSWORD_LEN + 1)),
                "password",
            ),
        ];
        for (secret, field) in cases {
            let error = secret.check(CredentialKind::Password).unwrap_err();
            assert!(matches!(error, CredentialError::Length { field: f, .. } if f == field));
        }
        let error = password("alice", "line\nbreak-secret")
            .check(CredentialKind::Password)
            .unwrap_err();
        assert_eq!(error, CredentialError::Control("password"));
        assert!(!error.to_string().contains("break-secret"));
        assert!(
            password(&"u".repeat(MAX_USERNAME_LEN), &"p".repeat(MAX_PASSWORD_LEN))
                .check(CredentialKind::Password)
                .is_ok()
        );
    }

    /// Sealed and opened for one subject and provider only; a connection
    /// record's associated data does not open it; Debug shows no secret.
    #[test]
    fn sealing_binds_subject_and_provider() {
        let keys = Keyring::parse(KEYS, "keys").expect("keys");
        let stored = StoredCredential {
            owner: "alice".into(),
            stored_at: 1,
            secret: password("alice-at-webdav", "the-webdav-password"),
        };
        let sealed = stored.seal(&keys, "sub-1", "webdav").expect("sealed");
        let text = sealed.to_text();
        assert!(!text.contains("the-webdav-password") && !text.contains("alice-at-webdav"));
        let opened = StoredCredential::open(
            &Stored::parse(&text).expect("parse"),
            &keys,
            "sub-1",
            "webdav",
        )
        .expect("opens");
        assert_eq!(opened, stored);
        assert!(StoredCredential::open(&sealed, &keys, "sub-2", "webdav").is_err());
        assert!(StoredCredential::open(&sealed, &keys, "sub-1", "other").is_err());
        let as_connection = sealed.open(&keys, "sub-1", "webdav");
        assert!(as_connection.is_err(), "another domain of associated data");
        let debug = format!("{stored:?}");
        assert!(!debug.contains("the-webdav-password") && !debug.contains("alice-at-webdav"));
    }
}
