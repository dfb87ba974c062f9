//! [`Principal`]: who holds the token of an authenticated request.

use token_repository::{Audience, Scopes, Timestamp, TokenRecord};
use uuid::Uuid;

/// The holder of a valid access token, as the repository recorded it.
///
/// [`TokenAuth`](crate::TokenAuth) inserts it into the request's extensions
/// when a request carries a live access token; handlers read it from there
/// (`request.extensions().get::<Principal>()`) or, with the `axum` feature,
/// take it as an extractor (`Principal` or `Option<Principal>`).
///
/// It never holds the token itself, so it is safe to log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Principal {
    /// Stable id of the holder (a user id, or a client id for tokens issued
    /// to an application itself): what to key your own data by.
    pub subject: String,
    /// Login name of the holder.
    pub username: String,
    /// Display name, when known.
    pub name: Option<String>,
    /// Email address, when known.
    pub email: Option<String>,
    /// What the token grants; see [`Principal::has_scope`].
    pub scopes: Scopes,
    /// Public id of the token (safe to log, shown in session lists).
    pub token_id: Uuid,
    /// The client the token was issued to, when any.
    pub client_id: Option<String>,
    /// When the token stops being valid.
    pub expires_at: Timestamp,
    /// The resources the token may be presented to (RFC 8707 tags; empty:
    /// a token issued before audiences existed, accepted anywhere).
    pub audience: Audience,
}

impl Principal {
    /// Whether the token grants `scope`.
    #[must_use]
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }

    /// Whether the token is still valid at `now`.
    #[must_use]
    pub fn is_live_at(&self, now: Timestamp) -> bool {
        now < self.expires_at
    }
}

impl From<TokenRecord> for Principal {
    fn from(record: TokenRecord) -> Self {
        Self {
            subject: record.subject,
            username: record.username,
            name: record.name,
            email: record.email,
            scopes: record.scopes,
            token_id: record.id,
            client_id: record.client_id,
            expires_at: record.expires_at,
            audience: record.audience,
        }
    }
}
