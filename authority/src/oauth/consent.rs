//! The user's consents (RFC 6749 §4.1: the scopes a user approved for a
//! client, and the resources its tokens may be for), remembered per user
//! and client in `P consent:{T}` until revoked on the account page.
//!
//! A stored value is the scope string, then `"` (a byte no scope token may
//! hold, RFC 6749 §3.3) and the approved resources' tags in hex, separated
//! by spaces: `read write"0a1b2c3d 4e5f6a7b`. A value without `"` predates
//! audiences and approves no resource: the user is asked again.

use token_repository::{Audience, ResourceTag, Scopes, SubjectTag};

use crate::problem::Problem;
use crate::state::AppState;

/// Separates the scopes from the resource tags in a stored consent.
const SEPARATOR: char = '"';

/// What a user approved for one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    /// The scopes approved.
    pub scopes: Scopes,
    /// The resources (audiences) approved, by tag.
    pub resources: Vec<ResourceTag>,
}

impl Consent {
    fn decode(text: &str) -> Self {
        let (scopes, tags) = text.split_once(SEPARATOR).unwrap_or((text, ""));
        Self {
            scopes: Scopes::parse(scopes).unwrap_or_else(|_| Scopes::empty()),
            resources: tags.split(' ').filter_map(ResourceTag::from_hex).collect(),
        }
    }

    fn encode(&self) -> String {
        let tags: Vec<String> = self.resources.iter().map(ResourceTag::to_hex).collect();
        format!("{}{SEPARATOR}{}", self.scopes, tags.join(" "))
    }

    /// Whether this consent covers a request for `scopes` and `audience`.
    #[must_use]
    pub fn covers(&self, scopes: &Scopes, audience: &Audience) -> bool {
        scopes.is_subset_of(&self.scopes)
            && audience
                .tags()
                .iter()
                .all(|tag| self.resources.contains(tag))
    }

    /// This consent with `scopes` and `audience` added.
    fn with(mut self, scopes: &Scopes, audience: &Audience) -> Self {
        self.scopes = Scopes::from_tokens(self.scopes.iter().chain(scopes.iter()))
            .unwrap_or_else(|_| scopes.clone());
        for tag in audience.tags() {
            if !self.resources.contains(tag) {
                self.resources.push(*tag);
            }
        }
        self
    }
}

/// What the user consented to for `client_id`, if ever.
pub(crate) async fn consented(
    state: &AppState,
    subject: &str,
    client_id: &str,
) -> Result<Option<Consent>, Problem> {
    let key = state.store().prefix().consents(&SubjectTag::of(subject));
    let client_id = client_id.to_owned();
    let stored: Option<String> = state
        .store()
        .with_shared(|mut connection| async move {
            redis::cmd("HGET")
                .arg(&key)
                .arg(&client_id)
                .query_async(&mut connection)
                .await
        })
        .await?;
    Ok(stored.as_deref().map(Consent::decode))
}

/// Every consent of the user: client id → what was approved.
///
/// # Errors
///
/// 503 when Redis is unavailable.
pub async fn consents(state: &AppState, subject: &str) -> Result<Vec<(String, Consent)>, Problem> {
    let key = state.store().prefix().consents(&SubjectTag::of(subject));
    let mut all: Vec<(String, String)> = state
        .store()
        .with_shared(|mut connection| async move {
            redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut connection)
                .await
        })
        .await?;
    all.sort();
    Ok(all
        .into_iter()
        .map(|(client_id, text)| (client_id, Consent::decode(&text)))
        .collect())
}

/// Forgets the user's consent for `client_id`.
///
/// # Errors
///
/// 503 when Redis is unavailable.
pub async fn revoke_consent(
    state: &AppState,
    subject: &str,
    client_id: &str,
) -> Result<(), Problem> {
    let key = state.store().prefix().consents(&SubjectTag::of(subject));
    let client_id = client_id.to_owned();
    let _: i64 = state
        .store()
        .with_shared(|mut connection| async move {
            redis::cmd("HDEL")
                .arg(&key)
                .arg(&client_id)
                .query_async(&mut connection)
                .await
        })
        .await?;
    Ok(())
}

/// Adds `scopes` and the resources of `audience` to what the user
/// consented to for `client_id`.
///
/// # Errors
///
/// 503 when Redis is unavailable.
pub(crate) async fn remember_consent(
    state: &AppState,
    subject: &str,
    client_id: &str,
    scopes: &Scopes,
    audience: &Audience,
) -> Result<(), Problem> {
    let previous = consented(state, subject, client_id)
        .await?
        .unwrap_or(Consent {
            scopes: Scopes::empty(),
            resources: Vec::new(),
        });
    let all = previous.with(scopes, audience);
    let key = state.store().prefix().consents(&SubjectTag::of(subject));
    let (client_id, value) = (client_id.to_owned(), all.encode());
    let _: i64 = state
        .store()
        .with_shared(|mut connection| async move {
            redis::cmd("HSET")
                .arg(&key)
                .arg(&client_id)
                .arg(&value)
                .query_async(&mut connection)
                .await
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(byte: u8) -> ResourceTag {
        ResourceTag::from_bytes([byte; 4])
    }

    fn scopes(text: &str) -> Scopes {
        Scopes::parse(text).expect("scopes")
    }

    /// The stored form round-trips, and covers what was approved only.
    #[test]
    fn covers_scopes_and_resources() {
        let orders = Audience::of([tag(1)]).expect("audience");
        let both = Audience::of([tag(1), tag(2)]).expect("audience");
        let consent = Consent {
            scopes: Scopes::empty(),
            resources: Vec::new(),
        }
        .with(&scopes("read"), &orders);
        let stored = consent.encode();
        assert_eq!(stored, "read\"01010101");
        let read = Consent::decode(&stored);
        assert_eq!(read, consent);
        assert!(read.covers(&scopes("read"), &orders));
        assert!(!read.covers(&scopes("read write"), &orders), "a new scope");
        assert!(!read.covers(&scopes("read"), &both), "a new resource");
        let wider = read.with(&scopes("write"), &both);
        assert!(wider.covers(&scopes("read write"), &both));
    }

    /// A consent stored before audiences approves its scopes but no
    /// resource: the user is asked again.
    #[test]
    fn a_consent_from_before_audiences_covers_no_resource() {
        let legacy = Consent::decode("read write");
        assert_eq!(legacy.scopes, scopes("read write"));
        assert!(legacy.resources.is_empty());
        let orders = Audience::of([tag(1)]).expect("audience");
        assert!(!legacy.covers(&scopes("read"), &orders));
    }
}
