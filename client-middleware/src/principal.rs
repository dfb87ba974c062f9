//! [`Principal`]: who holds the token of an authenticated request.

use std::fmt;
use std::sync::Arc;

use token_repository::{Audience, Holder, Timestamp, TokenRecord};
use uuid::Uuid;

use crate::challenge::{ChallengeContext, Challenger};

/// The holder of a valid access token, as the repository recorded it.
///
/// [`TokenAuth`](crate::TokenAuth) inserts it into the request's extensions
/// when a request carries a live access token; handlers read it from there
/// (`request.extensions().get::<Principal>()`) or, with the `axum` feature,
/// take it as an extractor (`Principal` or `Option<Principal>`).
///
/// It never holds the token itself, so it is safe to log.
#[derive(Clone)]
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
    /// The challenger of the layer that authenticated the request: what a
    /// later refusal of it (the scope guard) names. Carried here rather
    /// than in an extension of its own, which would cost every
    /// authenticated request an allocation and a map insert. Not part of
    /// what a principal is: equality and `Debug` leave it out.
    pub(crate) challenger: Option<Arc<Challenger>>,
}

impl PartialEq for Principal {
    fn eq(&self, other: &Self) -> bool {
        self.holder == other.holder
            && self.token_id == other.token_id
            && self.expires_at == other.expires_at
            && self.audience == other.audience
    }
}

impl Eq for Principal {}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("holder", &self.holder)
            .field("token_id", &self.token_id)
            .field("expires_at", &self.expires_at)
            .field("audience", &self.audience)
            .finish()
    }
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
            challenger: None,
        }
    }
}

/// The challenger a refusal of this request names: the one a layer put in
/// its extensions when it let the request through without a principal,
/// else the one of the layer that authenticated it (carried by the
/// [`Principal`]), else the default one.
pub(crate) fn challenger_of(extensions: &http::Extensions) -> Arc<Challenger> {
    ChallengeContext::get(extensions)
        .or_else(|| {
            extensions
                .get::<Principal>()
                .and_then(|principal| principal.challenger.clone())
        })
        .unwrap_or_else(|| Arc::clone(Challenger::shared_default()))
}

/// Puts `principal`, carrying `challenger`, into `extensions`. An outer
/// layer's context is replaced by this layer's: the last layer to pass the
/// request decides what a later refusal names, as when every layer put a
/// context of its own there.
pub(crate) fn insert(
    extensions: &mut http::Extensions,
    challenger: &Arc<Challenger>,
    mut principal: Principal,
) {
    principal.challenger = Some(Arc::clone(challenger));
    if ChallengeContext::get(extensions).is_some() {
        ChallengeContext::insert(extensions, challenger);
    }
    extensions.insert(principal);
}
