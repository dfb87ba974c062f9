//! `POST /oauth/revoke` (RFC 7009).
//!
//! A token issued to a client can only be revoked by that client,
//! authenticated. A token issued without a client (a plain password login)
//! can be revoked by whoever holds it. Unknown and malformed tokens answer
//! 200 like revoked ones (§2.2): the answer says nothing about the token.

use http::{HeaderMap, StatusCode};
use token_repository::{Token, TokenReader as _, TokenWriter as _};
use warp::reply::Response;

use crate::address::ClientAddress;
use crate::authenticate;
use crate::credentials::{ClientCredentials, client_credentials};
use crate::form::Form;
use crate::problem::{Problem, json};
use crate::state::AppState;

/// Handles one revocation request.
pub async fn handle(
    state: AppState,
    headers: HeaderMap,
    address: ClientAddress,
    body: bytes::Bytes,
) -> Response {
    match revoke(&state, &headers, address, &body).await {
        Ok(()) => json(StatusCode::OK, &serde_json::json!({})),
        Err(problem) => problem.into_response(),
    }
}

async fn revoke(
    state: &AppState,
    headers: &HeaderMap,
    address: ClientAddress,
    body: &[u8],
) -> Result<(), Problem> {
    let form = Form::from_request(headers, body)
        .map_err(|error| Problem::invalid_request(error.to_string()))?;
    let credentials = client_credentials(headers, &form)?;
    if matches!(credentials, ClientCredentials::IdOnly(_)) {
        return Err(Problem::invalid_client());
    }
    let text = form
        .get("token")
        .ok_or_else(|| Problem::invalid_request("token is required"))?;
    let client = authenticate::client(state, credentials, address).await?;
    let Ok(token) = Token::parse(text) else {
        return Ok(());
    };
    let Some(record) = state.store().lookup(&token).await? else {
        return Ok(());
    };
    if let Some(owner) = &record.holder.client_id {
        match &client {
            None => return Err(Problem::invalid_client()),
            Some(client) if &client.client_id != owner => {
                return Err(Problem::unauthorized_client(
                    "the token was issued to another client",
                ));
            }
            Some(_) => {}
        }
    }
    let revoked = state.store().revoke(&token).await;
    // This replica's cache forgets the session at once; the others hear
    // Redis's push.
    state.forget(&token);
    let revoked = revoked?;
    tracing::info!(token_id = %record.id, kind = %record.kind, subject = %record.holder.subject, revoked, "token revoked");
    crate::metrics::revoked("revocation_endpoint", revoked);
    Ok(())
}
