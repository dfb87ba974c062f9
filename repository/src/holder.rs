//! [`Holder`]: who a token was issued to and what it may do.

use serde::{Deserialize, Serialize};

use crate::scope::Scopes;

/// The identity a token carries: who holds it, what it grants and on behalf
/// of which client. One type for every place that names a holder: the
/// [`TokenRecord`](crate::TokenRecord) a reader finds, the
/// [`Grant`](crate::Grant) the authority issues, the stored session, and
/// the middleware's principal.
///
/// Its serialized form is its fields in this order (embedded with
/// `#[serde(flatten)]` in JSON; positionally in the binary formats of
/// [`crate::codec`]), so wrapping the fields in this type changed no stored
/// byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Stable id of the holder: a user id, or a client id for tokens issued
    /// to an application itself. What a resource server keys its data by.
    pub subject: String,
    /// Login name of the holder (the client id for client tokens).
    pub username: String,
    /// Display name, when known.
    pub name: Option<String>,
    /// Email address, when known.
    pub email: Option<String>,
    /// What the token grants.
    pub scopes: Scopes,
    /// The client the token was issued to, when any.
    pub client_id: Option<String>,
}

impl Holder {
    /// Whether the holder's scopes include `scope`.
    #[must_use]
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }
}
