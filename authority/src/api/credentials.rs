//! Providers of a credentials kind (`kind = "password"` or `"api_key"`,
//! [`token_broker::credentials`]): what users store instead of an OAuth
//! connection, and service clients read back.
//!
//! | route | who |
//! |---|---|
//! | `PUT /v1/connect/{provider}/credentials` | the user (bearer): stores `{"username","password"}` or `{"api_key"}` |
//! | `DELETE /v1/connect/{provider}/credentials` | the user: removes them |
//! | `GET /v1/connect/credentials` | the user: every such provider and whether something is stored (never the secret) |
//! | `GET /v1/users/{subject}/connect/{provider}/credentials` | a service client, as for provider tokens ([`super::connect::service_client`]) |
//!
//! The body is strict JSON (`application/json`, unknown fields refused);
//! the secret is checked against the provider's kind and the caps before
//! anything is stored, and never appears in a log line or an error.

use std::net::IpAddr;

use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use token_broker::credentials::Secret;
use warp::reply::Response;
use zeroize::Zeroize as _;

use super::connect::{owner_is_active, service_client, user};
use crate::api::json::parse;
use crate::problem::{Problem, json};
use crate::state::AppState;

/// The body of `PUT …/credentials`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CredentialsBody {
    username: Option<String>,
    password: Option<String>,
    api_key: Option<String>,
}

impl Drop for CredentialsBody {
    fn drop(&mut self) {
        for field in [&mut self.username, &mut self.password, &mut self.api_key] {
            if let Some(value) = field.as_mut() {
                value.zeroize();
            }
        }
    }
}

impl CredentialsBody {
    /// The secret the body describes: a username and a password, or a key.
    fn secret(&mut self) -> Result<Secret, Problem> {
        match (
            self.username.take(),
            self.password.take(),
            self.api_key.take(),
        ) {
            (Some(username), Some(password), None) => Ok(Secret::Password { username, password }),
            (None, None, Some(api_key)) => Ok(Secret::ApiKey { api_key }),
            (username, password, api_key) => {
                for mut value in [username, password, api_key].into_iter().flatten() {
                    value.zeroize();
                }
                Err(Problem::invalid_request(
                    "give username and password, or api_key",
                ))
            }
        }
    }
}

/// `PUT /v1/connect/{provider}/credentials`: stores the bearer's
/// credentials for `provider`, replacing earlier ones.
pub async fn store(
    state: AppState,
    headers: HeaderMap,
    provider: String,
    body: bytes::Bytes,
) -> Response {
    let result = async {
        let caller = user(&state, &headers).await?;
        let connect = state.connect();
        // Unknown providers are 404 before the body is looked at.
        connect.credential_provider(&provider)?;
        let mut body: CredentialsBody = parse(&headers, &body)?;
        let secret = body.secret()?;
        let view = connect
            .store_credentials(
                &caller.holder.subject,
                &caller.holder.username,
                &provider,
                secret,
            )
            .await?;
        Ok::<_, Problem>(json(StatusCode::OK, &view))
    };
    result.await.unwrap_or_else(Problem::into_response)
}

/// `DELETE /v1/connect/{provider}/credentials`: removes them (404
/// `not_connected` when nothing was stored).
pub async fn remove(state: AppState, headers: HeaderMap, provider: String) -> Response {
    let result = async {
        let caller = user(&state, &headers).await?;
        state
            .connect()
            .remove_credentials(&caller.holder.subject, &provider)
            .await?;
        Ok::<_, Problem>(json(
            StatusCode::OK,
            &serde_json::json!({ "provider": provider, "removed": true }),
        ))
    };
    result.await.unwrap_or_else(Problem::into_response)
}

/// `GET /v1/connect/credentials`: every provider of a credentials kind and
/// whether the bearer stored something there.
pub async fn list(state: AppState, headers: HeaderMap) -> Response {
    let result = async {
        let caller = user(&state, &headers).await?;
        let views = state
            .connect()
            .credential_views(&caller.holder.subject)
            .await?;
        Ok::<_, Problem>(json(
            StatusCode::OK,
            &serde_json::json!({ "credentials": views }),
        ))
    };
    result.await.unwrap_or_else(Problem::into_response)
}

/// What a service client reads.
#[derive(Serialize)]
struct ServedCredentials<'a> {
    provider: &'a str,
    #[serde(flatten)]
    secret: &'a Secret,
    stored_at: u64,
}

/// `GET /v1/users/{subject}/connect/{provider}/credentials`: a user's
/// stored credentials for a service client allowed to read `provider`'s
/// (the checks of provider tokens); logged without the secret.
pub async fn service_read(
    state: AppState,
    headers: HeaderMap,
    address: Option<IpAddr>,
    subject: String,
    provider: String,
) -> Response {
    let address = address.map(|address| address.to_canonical());
    let result = async {
        let client_id = service_client(&state, &headers, address, &subject, &provider).await?;
        let record = state.connect().credentials(&subject, &provider).await?;
        owner_is_active(&state, &client_id, &subject, &provider, &record.owner).await?;
        tracing::info!(
            %client_id,
            user_subject = ?subject,
            provider = ?provider,
            address = ?address,
            "provider credentials handed to a service client"
        );
        Ok::<_, Problem>(json(
            StatusCode::OK,
            &ServedCredentials {
                provider: &provider,
                secret: &record.secret,
                stored_at: record.stored_at / 1000,
            },
        ))
    };
    result.await.unwrap_or_else(Problem::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> Result<Secret, u16> {
        let mut body: CredentialsBody = serde_json::from_str(json).map_err(|_| 0_u16)?;
        body.secret().map_err(|problem| problem.status().as_u16())
    }

    /// A username with a password, or a key: nothing else, nothing mixed.
    #[test]
    fn bodies() {
        assert!(matches!(
            body(r#"{"username":"a","password":"b"}"#),
            Ok(Secret::Password { .. })
        ));
        assert!(matches!(
            body(r#"{"api_key":"k"}"#),
            Ok(Secret::ApiKey { .. })
        ));
        for bad in [
            r#"{}"#,
            r#"{"username":"a"}"#,
            r#"{"password":"b"}"#,
            r#"{"username":"a","password":"b","api_key":"k"}"#,
            r#"{"password":"b","api_key":"k"}"#,
        ] {
            assert_eq!(body(bad).unwrap_err(), 400, "{bad}");
        }
        assert_eq!(body(r#"{"token":"x"}"#).unwrap_err(), 0, "unknown fields");
    }
}
