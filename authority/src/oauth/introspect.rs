//! `POST /oauth/introspect` (RFC 7662), for services that cannot use the
//! Rust middleware. Callers authenticate as a client allowed to introspect.
//! Unknown, expired, revoked and malformed tokens all answer
//! `{"active": false}` and nothing else.
//!
//! Refresh tokens are active only to the client they were issued to
//! (RFC 7662 §2.2 leaves this to the server): a resource server that checks
//! nothing but `active` must never accept a long-lived refresh token as if it
//! were an access token. Refresh tokens issued without a client are inactive
//! to every caller.

use http::{HeaderMap, StatusCode};
use serde::Serialize;
use token_repository::{Scopes, Token, TokenKind};
use uuid::Uuid;
use warp::reply::Response;

use super::resource::Aud;
use crate::address::ClientAddress;
use crate::authenticate;
use crate::credentials::client_credentials;
use crate::form::Form;
use crate::problem::{Problem, json, json_bytes};
use crate::state::AppState;

#[derive(Serialize)]
struct Active<'a> {
    active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<&'static str>,
    /// Written straight into the body, space-separated (RFC 7662 §2.2).
    #[serde(serialize_with = "space_separated")]
    scope: &'a Scopes,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
    username: &'a str,
    sub: &'a str,
    exp: u64,
    iat: u64,
    jti: Uuid,
    iss: &'a str,
    /// The token's audience (RFC 8707 resources): a string for one, an
    /// array for several; absent for tokens issued before audiences.
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<Aud<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
}

/// `scopes` as one JSON string, without a copy joined first.
fn space_separated<S: serde::Serializer>(
    scopes: &Scopes,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(scopes)
}

/// Handles one introspection request.
pub async fn handle(
    state: AppState,
    headers: HeaderMap,
    address: ClientAddress,
    body: bytes::Bytes,
) -> Response {
    match introspect(&state, &headers, address, &body).await {
        Ok(response) => response,
        Err(problem) => problem.into_response(),
    }
}

/// The answer for every token that is not active: a constant body, not a
/// JSON map built and serialized per call (garbage tokens take this path).
fn inactive() -> Response {
    json_bytes(
        StatusCode::OK,
        bytes::Bytes::from_static(br#"{"active":false}"#),
    )
}

async fn introspect(
    state: &AppState,
    headers: &HeaderMap,
    address: ClientAddress,
    body: &[u8],
) -> Result<Response, Problem> {
    let form = Form::from_request(headers, body)
        .map_err(|error| Problem::invalid_request(error.to_string()))?;
    let credentials = client_credentials(headers, &form)?;
    let client = authenticate::required_client(state, credentials, address).await?;
    if !client.introspect {
        tracing::info!(client_id = ?client.client_id, "introspection refused: not permitted");
        return Err(Problem::forbidden("this client may not introspect tokens"));
    }
    let text = form
        .get("token")
        .ok_or_else(|| Problem::invalid_request("token is required"))?;
    let Ok(token) = Token::parse(text) else {
        return Ok(inactive());
    };
    let Some(record) = state.lookup(&token).await? else {
        return Ok(inactive());
    };
    if record.kind == TokenKind::Refresh
        && record.holder.client_id.as_deref() != Some(client.client_id.as_str())
    {
        return Ok(inactive());
    }
    let aud = super::resource::aud(state, &record.audience).await?;
    Ok(json(
        StatusCode::OK,
        &Active {
            active: true,
            token_type: (record.kind == TokenKind::Access).then_some("Bearer"),
            scope: &record.holder.scopes,
            client_id: record.holder.client_id.as_deref(),
            username: &record.holder.username,
            sub: &record.holder.subject,
            exp: record.expires_at.as_unix_secs(),
            iat: record.issued_at.as_unix_secs(),
            jti: record.id,
            iss: state.issuer(),
            aud,
            name: record.holder.name.as_deref(),
            email: record.holder.email.as_deref(),
        },
    ))
}
