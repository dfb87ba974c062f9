//! What the operations answer: offers, connection views, tokens handed
//! out, revocation outcomes and the counts of the background passes.

use zeroize::Zeroizing;

/// A provider as offered to a user: where to send the browser.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Offer {
    /// The provider's name.
    pub name: String,
    /// Its display name.
    pub display_name: String,
    /// Its logo.
    pub logo_url: Option<String>,
    /// The authorization URL with a fresh state; `null` while the provider
    /// cannot be reached (discovery failed).
    pub authorize_url: Option<String>,
}

/// What a user's connection to one provider is like (never the tokens).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnectionView {
    /// The provider.
    pub provider: String,
    /// `connected`, `needs_reconnect` or `not_connected`.
    pub status: &'static str,
    /// Why a reconnect is needed (`invalid_grant`, `expired`, `unreadable`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The granted scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// When the stored access token expires (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// Whether the authority holds a refresh token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refreshable: Option<bool>,
    /// When the user connected (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connected_at: Option<u64>,
    /// When the tokens were last obtained (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refreshed_at: Option<u64>,
    /// The provider account connected (the ID token's `sub`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// When the stored refresh token expires (Unix seconds), when known
    /// (the provider's `refresh_expires_in` or `refresh_token_expires_in`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_expires_at: Option<u64>,
    /// Less than `CONNECT_EXPIRING_MARGIN` is left before the connection
    /// stops working without the user (its refresh token expires, or its
    /// access token when there is no refresh token): ask the user to
    /// connect again before a long run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiring: Option<bool>,
}

/// A provider access token handed out.
#[derive(Debug)]
pub struct ServedToken {
    /// The token.
    pub access_token: Zeroizing<String>,
    /// Its type.
    pub token_type: String,
    /// Whole seconds it stays valid.
    pub expires_in: u64,
    /// Its scope.
    pub scope: Option<String>,
    /// The user it belongs to (from the record).
    pub username: String,
    /// Whether serving it took a refresh.
    pub refreshed: bool,
}

/// What happened at the provider when a connection was forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Revocation {
    /// The provider accepted the revocation (RFC 7009).
    Revoked,
    /// The provider has no revocation endpoint.
    Unsupported,
    /// There was nothing to revoke (a reconnect tombstone).
    NotNeeded,
    /// The provider could not be reached or refused, or the record could
    /// not be decrypted; the tokens were forgotten anyway and expire at the
    /// provider.
    Failed,
}

/// Counts of a re-encryption run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReencryptReport {
    /// Records re-encrypted with the current key.
    pub reencrypted: usize,
    /// Records already under the current key.
    pub current: usize,
    /// Reconnect tombstones (nothing encrypted).
    pub tombstones: usize,
    /// Records no configured key opens.
    pub unreadable: usize,
    /// Records locked by a refresh the whole time (run again).
    pub busy: usize,
}

/// Counts of one keep-alive pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KeepAliveReport {
    /// Connections refreshed.
    pub refreshed: usize,
    /// Connections the provider refused (now "needs reconnect").
    pub rejected: usize,
    /// Refreshes that failed for now (retried next pass).
    pub failed: usize,
    /// Connections whose refresh token had expired (not tried; now "needs
    /// reconnect" once the access token expires too).
    pub expired: usize,
}

/// A provider of a credentials kind as the user sees it: whether they
/// stored something, and when (never the secret, nor the username).
#[derive(Debug, Clone, serde::Serialize)]
pub struct CredentialView {
    /// The provider.
    pub provider: String,
    /// `password` or `api_key`.
    pub kind: &'static str,
    /// `stored`, `unreadable` (stored under a retired key: store it again)
    /// or `not_stored`.
    pub status: &'static str,
    /// When it was stored (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored_at: Option<u64>,
}

/// A provider as the admin API shows it (never its client secret).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProviderView {
    /// Its name.
    pub name: String,
    /// `oauth`, `password` or `api_key`.
    pub kind: &'static str,
    /// Where it comes from: `file` (read-only through the API) or `api`.
    pub source: &'static str,
    /// `active`, or `removing` while its connections are being deleted.
    pub status: &'static str,
    /// Its display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Offered to users.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// A sign-in provider.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login: Option<bool>,
    /// A connected service (`false`: sign-in only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<bool>,
    /// Its issuer (OAuth).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The authority's client id there (OAuth).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The scopes asked for (OAuth).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// A provider of the API: its table as stored, without the client
    /// secret (what `PUT` replaces and `PATCH` changes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settings: Option<serde_json::Map<String, serde_json::Value>>,
}

impl ProviderView {
    /// An OAuth provider of the file (the caller marks the API's).
    #[must_use]
    pub fn of_oauth(config: &crate::providers::ProviderConfig) -> Self {
        Self {
            name: config.name.clone(),
            kind: "oauth",
            source: "file",
            status: "active",
            display_name: Some(config.display_name.clone()),
            enabled: Some(config.enabled),
            login: Some(config.login.is_some()),
            connect: Some(config.connect),
            issuer: config.issuer.clone(),
            client_id: Some(config.client_id.clone()),
            scopes: Some(config.scopes.clone()),
            settings: None,
        }
    }

    /// A provider of a credentials kind of the file.
    #[must_use]
    pub fn of_credentials(provider: &crate::credentials::CredentialProvider) -> Self {
        Self {
            name: provider.name.clone(),
            kind: provider.kind.as_str(),
            source: "file",
            status: "active",
            display_name: Some(provider.display_name.clone()),
            enabled: Some(provider.enabled),
            login: None,
            connect: None,
            issuer: None,
            client_id: None,
            scopes: None,
            settings: None,
        }
    }

    /// A provider of the API that is not in the registry: being removed
    /// (or left out, its entry invalid).
    #[must_use]
    pub fn of_record(name: &str, record: crate::catalog::Record) -> Self {
        Self {
            name: name.to_owned(),
            kind: match record.table.get("kind").and_then(serde_json::Value::as_str) {
                Some("password") => "password",
                Some("api_key") => "api_key",
                _ => "oauth",
            },
            source: "api",
            status: if record.removing {
                "removing"
            } else {
                "invalid"
            },
            display_name: None,
            enabled: None,
            login: None,
            connect: None,
            issuer: None,
            client_id: None,
            scopes: None,
            settings: Some(record.table),
        }
    }
}
