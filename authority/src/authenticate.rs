//! Authenticating callers: clients by their secret, token holders by their
//! bearer token.

use http::HeaderMap;
use token_repository::{TokenKind, TokenReader as _, TokenRecord};

use crate::accounts::Client;
use crate::credentials::{ClientCredentials, bearer_token};
use crate::password::Verification;
use crate::problem::Problem;
use crate::state::AppState;

/// The client a request authenticated as, if it presented a secret.
///
/// Unknown clients are verified against the dummy hash, so they take as
/// long as a wrong secret. A disabled client fails like a wrong secret.
///
/// # Errors
///
/// 401 `invalid_client` for wrong, unknown or disabled clients; 503 when
/// the stores or the hashing pool are unavailable.
pub async fn client(
    state: &AppState,
    credentials: ClientCredentials,
) -> Result<Option<Client>, Problem> {
    let ClientCredentials::Secret {
        client_id, secret, ..
    } = credentials
    else {
        return Ok(None);
    };
    let client = state
        .accounts()
        .client(&client_id)
        .await
        .map_err(|error| Problem::from_accounts(&error))?;
    let verification = state
        .hasher()
        .verify(
            secret,
            client.as_ref().map(|client| client.secret_hash.as_str()),
        )
        .await
        .map_err(|error| Problem::from_hash(&error))?;
    match (client, verification) {
        (Some(client), Verification::Match { .. }) if !client.disabled => {
            tracing::debug!(client_id = %client.client_id, "client authenticated");
            Ok(Some(client))
        }
        _ => {
            tracing::info!(%client_id, "client authentication failed");
            Err(Problem::invalid_client())
        }
    }
}

/// Like [`client`], but a secret is required.
///
/// # Errors
///
/// As [`client`], and 401 `invalid_client` when no secret was presented.
pub async fn required_client(
    state: &AppState,
    credentials: ClientCredentials,
) -> Result<Client, Problem> {
    client(state, credentials)
        .await?
        .ok_or_else(Problem::invalid_client)
}

/// The record of the live access token a request bears.
///
/// # Errors
///
/// RFC 6750 answers: 401 without or with an invalid token, 400 for a
/// malformed header; 503 when the repository is unavailable (fail closed).
pub async fn bearer(state: &AppState, headers: &HeaderMap) -> Result<TokenRecord, Problem> {
    let token = bearer_token(headers)?;
    if token.kind() != TokenKind::Access {
        return Err(Problem::invalid_token());
    }
    match state.store().lookup(&token).await {
        Ok(Some(record)) => Ok(record),
        Ok(None) => Err(Problem::invalid_token()),
        Err(error) => Err(Problem::from_store(&error)),
    }
}

/// [`bearer`], and the token must carry `scope`.
///
/// # Errors
///
/// As [`bearer`], and 403 `insufficient_scope`.
pub async fn bearer_with_scope(
    state: &AppState,
    headers: &HeaderMap,
    scope: &'static str,
) -> Result<TokenRecord, Problem> {
    let record = bearer(state, headers).await?;
    if record.scopes.contains(scope) {
        Ok(record)
    } else {
        Err(Problem::insufficient_scope(scope))
    }
}
