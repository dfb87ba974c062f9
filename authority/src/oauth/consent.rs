//! The user's consents (RFC 6749 §4.1: the scopes a user approved for a
//! client), remembered per user and client in `P consent:{T}` until
//! revoked on the account page.

use token_repository::{Scopes, SubjectTag};

use crate::problem::Problem;
use crate::state::AppState;

/// The scopes the user consented to for `client_id`, if ever.
pub(crate) async fn consented(
    state: &AppState,
    subject: &str,
    client_id: &str,
) -> Result<Option<Scopes>, Problem> {
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
    Ok(stored.map(|text| Scopes::parse(&text).unwrap_or_else(|_| Scopes::empty())))
}

/// Every consent of the user: client id → scope.
///
/// # Errors
///
/// 503 when Redis is unavailable.
pub async fn consents(state: &AppState, subject: &str) -> Result<Vec<(String, String)>, Problem> {
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
    Ok(all)
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

/// Adds `scopes` to what the user consented to for `client_id`.
///
/// # Errors
///
/// 503 when Redis is unavailable.
pub(crate) async fn remember_consent(
    state: &AppState,
    subject: &str,
    client_id: &str,
    scopes: &Scopes,
) -> Result<(), Problem> {
    let previous = consented(state, subject, client_id)
        .await?
        .unwrap_or_else(Scopes::empty);
    let all = Scopes::from_tokens(previous.iter().chain(scopes.iter()))
        .unwrap_or_else(|_| scopes.clone());
    let key = state.store().prefix().consents(&SubjectTag::of(subject));
    let (client_id, value) = (client_id.to_owned(), all.to_string());
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
