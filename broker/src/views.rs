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
