//! [`Principal`]: who holds the token of an authenticated request.

use std::sync::Arc;

use token_repository::{Audience, Holder, Timestamp, TokenRecord};
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
    /// Who holds the token, what it grants and for which client:
    /// `principal.holder.subject` is the stable id to key your own data by
    /// (a user id, or a client id for tokens issued to an application
    /// itself); see also [`Principal::has_scope`]. Shared with the record
    /// it came from (a cache hit copies no string); read it through the
    /// `Arc` as a `Holder`.
    pub holder: Arc<Holder>,
    /// Public id of the token (safe to log, shown in session lists).
    pub token_id: Uuid,
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
        self.holder.has_scope(scope)
    }

    /// The holder, owned: without a copy when this is its last reference
    /// (as for a principal taken out of the request), else cloned.
    #[must_use]
    pub fn into_holder(self) -> Holder {
        Arc::unwrap_or_clone(self.holder)
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
            holder: record.holder,
            token_id: record.id,
            expires_at: record.expires_at,
            audience: record.audience,
        }
    }
}
