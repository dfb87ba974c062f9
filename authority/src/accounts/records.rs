//! What the store holds: [`User`] and [`Client`] records (JSON), their
//! identifiers' rules, and where each kind lives.

use std::fmt;

use serde::{Deserialize, Serialize};
use token_repository::{Holder, KeyPrefix, Scopes, Timestamp};

use super::{Identity, Record};
use crate::keynames::NameKind;

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
