//! What the repository knows about a token: [`TokenRecord`] and time.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::audience::Audience;
use crate::holder::Holder;
use crate::token::TokenKind;

/// Milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The current time by the system clock.
    #[must_use]
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// From milliseconds since the epoch.
    #[must_use]
    pub const fn from_unix_millis(millis: u64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the epoch.
    #[must_use]
    pub const fn as_unix_millis(self) -> u64 {
        self.0
    }

    /// Whole seconds since the epoch (for `exp` / `iat` claims).
    #[must_use]
    pub const fn as_unix_secs(self) -> u64 {
        self.0 / 1000
    }

    /// `self + duration`, saturating.
    #[must_use]
    pub fn saturating_add(self, duration: Duration) -> Self {
        let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        Self(self.0.saturating_add(millis))
    }

    /// How long from `self` until `later`; zero when `later` is not later.
    #[must_use]
    pub const fn until(self, later: Self) -> Duration {
        Duration::from_millis(later.0.saturating_sub(self.0))
    }
}

impl From<SystemTime> for Timestamp {
    fn from(time: SystemTime) -> Self {
        let millis = time
            .duration_since(UNIX_EPOCH)
            .map(|since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Self(millis)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

/// Everything the repository records about one token.
///
/// This is what a resource server learns when it validates a token: who holds
/// it (subject, username, display name, email), what it may do (scopes), on
/// behalf of which client, and when it was issued and expires. It never
/// contains the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public id of the token (derived from its digest); safe to log.
    pub id: Uuid,
    /// Access or refresh.
    pub kind: TokenKind,
    /// Who holds it, what it grants, for which client. Flattened: the JSON
    /// form names the holder's fields beside the others. Shared: a record
    /// and its clones (a cache entry, the middleware's principals, the
    /// session's other token) hold one copy of its strings.
    #[serde(flatten)]
    pub holder: Arc<Holder>,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// When it stops being valid.
    pub expires_at: Timestamp,
    /// The grant this token belongs to: a login and every pair refreshed
    /// from it share one family, which is revoked as a unit (sign out of one
    /// session, or reuse of a rotated refresh token).
    pub family: Uuid,
    /// The resource servers the token may be presented to (RFC 8707);
    /// unrestricted for records written before audiences existed.
    #[serde(default)]
    pub audience: Audience,
}

impl TokenRecord {
    /// Whether the token is still valid at `now`.
    #[must_use]
    pub fn is_live_at(&self, now: Timestamp) -> bool {
        now < self.expires_at
    }

    /// Seconds left at `now` (for `expires_in`), zero once expired.
    #[must_use]
    pub fn seconds_left_at(&self, now: Timestamp) -> u64 {
        now.until(self.expires_at).as_secs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::Scopes;

    /// Expiry is exclusive: a token is dead at its expiry instant.
    #[test]
    fn liveness_is_exclusive_of_expiry() {
        let issued = Timestamp::from_unix_millis(1_000_000);
        let record = TokenRecord {
            id: Uuid::nil(),
            kind: TokenKind::Access,
            holder: Arc::new(Holder {
                subject: "s".into(),
                username: "u".into(),
                name: None,
                email: None,
                scopes: Scopes::empty(),
                client_id: None,
            }),
            issued_at: issued,
            expires_at: issued.saturating_add(Duration::from_secs(60)),
            family: Uuid::nil(),
            audience: Audience::unrestricted(),
        };
        assert!(record.is_live_at(issued));
        assert_eq!(record.seconds_left_at(issued), 60);
        assert!(!record.is_live_at(record.expires_at));
        assert_eq!(
            record.seconds_left_at(Timestamp::from_unix_millis(u64::MAX)),
            0
        );
    }
}
