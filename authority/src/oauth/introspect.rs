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
use token_repository::{Token, TokenKind, TokenRecord};
use warp::reply::Response;

use super::resource::Aud;
use crate::address::ClientAddress;
use crate::authenticate;
use crate::credentials::client_credentials;
use crate::form::Form;
use crate::json_object::JsonObject;
use crate::problem::{Problem, json_bytes};
use crate::state::AppState;

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
    // A live access token in the cache is found by its text alone; every
    // other token is parsed and looked up.
    let record = match state.recall(text) {
        Some(record) => record,
        None => {
            let Ok(token) = Token::parse(text) else {
                return Ok(inactive());
            };
            let Some(record) = state.lookup(&token).await? else {
                return Ok(inactive());
            };
            record
        }
    };
    if record.kind == TokenKind::Refresh
        && record.holder.client_id.as_deref() != Some(client.client_id.as_str())
    {
        return Ok(inactive());
    }
    let aud = super::resource::aud(state, &record.audience).await?;
    Ok(active(&record, state.issuer(), aud.as_ref()))
}

/// The answer for an active token (RFC 7662 §2.2), written field by field
/// ([`JsonObject`]): `token_type` for access tokens only, `aud` absent for
/// tokens issued before audiences, `name` and `email` when the user has
/// them.
fn active(record: &TokenRecord, issuer: &str, aud: Option<&Aud<'_>>) -> Response {
    let holder = &record.holder;
    let mut body = JsonObject::with_capacity(512);
    body.boolean("active", true);
    if record.kind == TokenKind::Access {
        body.string("token_type", "Bearer");
    }
    // Space-separated (RFC 7662 §2.2), written straight into the body.
    body.words("scope", holder.scopes.iter())
        .optional_string("client_id", holder.client_id.as_deref())
        .string("username", &holder.username)
        .string("sub", &holder.subject)
        .number("exp", record.expires_at.as_unix_secs())
        .number("iat", record.issued_at.as_unix_secs())
        .uuid("jti", record.id)
        .string("iss", issuer);
    if let Some(aud) = aud {
        aud.write(&mut body);
    }
    body.optional_string("name", holder.name.as_deref())
        .optional_string("email", holder.email.as_deref());
    json_bytes(StatusCode::OK, body.finish())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use token_repository::{Audience, Holder, Scopes, Timestamp};
    use uuid::Uuid;

    use super::*;
    use crate::test_support::json_body as body;

    fn record(kind: TokenKind, holder: Holder) -> TokenRecord {
        TokenRecord {
            id: Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            kind,
            holder: Arc::new(holder),
            issued_at: Timestamp::from_unix_millis(1_700_000_000_000),
            expires_at: Timestamp::from_unix_millis(1_700_000_600_000),
            family: Uuid::nil(),
            audience: Audience::unrestricted(),
        }
    }

    /// Every field of RFC 7662 §2.2 the authority answers, with strings a
    /// user chose (quotes, backslashes, control characters, non-ASCII)
    /// escaped into valid JSON that reads back as they were.
    #[tokio::test]
    async fn an_active_access_token_answers_every_field() {
        let holder = Holder {
            subject: "3862eb57-af84-4da8-9cbc-fbee1929257a".into(),
            username: "al\"ice\\".into(),
            name: Some("Alice\n\u{1}Ünïcode 👩".into()),
            email: Some("alice@example.com".into()),
            scopes: Scopes::parse("read write").expect("scopes"),
            client_id: Some("gw".into()),
        };
        let aud = Aud::Listed(vec!["https://a.example".into(), "https://b.example".into()]);
        let response = active(
            &record(TokenKind::Access, holder),
            "https://issuer.example",
            Some(&aud),
        );
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(response.headers()["cache-control"], "no-store");
        assert_eq!(
            body(response).await,
            serde_json::json!({
                "active": true,
                "token_type": "Bearer",
                "scope": "read write",
                "client_id": "gw",
                "username": "al\"ice\\",
                "sub": "3862eb57-af84-4da8-9cbc-fbee1929257a",
                "exp": 1_700_000_600,
                "iat": 1_700_000_000,
                "jti": "01234567-89ab-cdef-0123-456789abcdef",
                "iss": "https://issuer.example",
                "aud": ["https://a.example", "https://b.example"],
                "name": "Alice\n\u{1}Ünïcode 👩",
                "email": "alice@example.com",
            })
        );
    }

    /// A refresh token has no `token_type`; what its holder lacks (a
    /// client, a name, an email) and an unrestricted audience are absent,
    /// not null.
    #[tokio::test]
    async fn absent_fields_are_left_out() {
        let holder = Holder {
            subject: "s".into(),
            username: "u".into(),
            name: None,
            email: None,
            scopes: Scopes::empty(),
            client_id: None,
        };
        let response = active(
            &record(TokenKind::Refresh, holder),
            "https://i.example",
            None,
        );
        assert_eq!(
            body(response).await,
            serde_json::json!({
                "active": true,
                "scope": "",
                "username": "u",
                "sub": "s",
                "exp": 1_700_000_600,
                "iat": 1_700_000_000,
                "jti": "01234567-89ab-cdef-0123-456789abcdef",
                "iss": "https://i.example",
            })
        );
    }
}
