//! The connected-services endpoints (routed in [`crate::routes`]), over
//! the broker ([`token_broker::Connect`]):
//!
//! | route | who |
//! |---|---|
//! | `GET /v1/connect` | the user (bearer): providers and authorize URLs |
//! | `GET /v1/connect/callback` | the provider's redirect (no credentials: the state) |
//! | `GET /v1/connect/tokens` | the user: their connections, never tokens |
//! | `GET /v1/connect/{provider}` | the user: connected / needs reconnect / not connected |
//! | `GET /v1/connect/{provider}/offer?return_to=URL` | the user: that provider's offer, returning to an allowed URL |
//! | `DELETE /v1/connect/{provider}` | the user: forget (and revoke at the provider) |
//! | `GET /v1/connect/{provider}/token?expires=N` | the user: a provider access token |
//! | `GET /v1/users/{subject}/connect/{provider}/token?expires=N` | a service client with `view_access_tokens` (and `provider` on its `view_providers`, when it has that list) |
//!
//! The routes of providers of a credentials kind are in
//! [`crate::api::credentials`].
//!
//! Users are token holders whose subject is a user's (tokens a client got
//! for itself are refused: connections belong to people). Service clients
//! authenticate with an access token they obtained by `client_credentials`
//! (subject `client:<id>`); the permission and the address allow-list are
//! read from the client's record on every request, so changing them takes
//! effect at once. Every refusal of a service client is logged.
//!
//! The broker's errors become responses here ([`From<ConnectError>`] for
//! [`Problem`]); the browser glue (`/connect/start`, the callback's
//! browser session and pages) is here too, since it needs the authority's
//! sign-in.

use std::net::IpAddr;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Serialize;
use token_broker::oauth_client::ProviderError;
use token_broker::{
    Callback, ConnectError, ConnectionView, Failure, Offer, Refusal, Revocation, ServedToken,
};
use token_repository::TokenRecord;
use warp::reply::Response;
use zeroize::Zeroizing;

use crate::accounts::client_subject;
use crate::authenticate;
use crate::form::Form;
use crate::metrics;
use crate::problem::{Problem, json};
use crate::state::AppState;

/// Default `expires` of the token endpoints, seconds.
pub const DEFAULT_MIN_VALIDITY: u64 = 60;
/// Largest `expires` accepted, seconds.
pub const MAX_MIN_VALIDITY: u64 = 86_400;

/// A connected-services failure as its answer.
impl From<ConnectError> for Problem {
    fn from(error: ConnectError) -> Self {
        match error {
            ConnectError::UnknownProvider => Problem::not_found("no such provider"),
            ConnectError::NotConnected => Problem::not_connected(),
            ConnectError::Reconnect(description) => Problem::reconnect_required(description),
            error @ ConnectError::TooLong { .. } => Problem::invalid_request(error.to_string()),
            ConnectError::Busy => {
                Problem::unavailable_because("a refresh of this connection is in progress; retry")
            }
            ConnectError::Provider(ProviderError::Unavailable(cause)) => {
                tracing::warn!(%cause, "provider unavailable");
                Problem::unavailable_because("the provider is unreachable; retry later")
            }
            ConnectError::Provider(error) => {
                tracing::warn!(%error, "provider failure");
                Problem::provider_error("the provider refused the request or answered unusably")
            }
            error @ ConnectError::ReturnUrl(_) => Problem::invalid_request(error.to_string()),
            ConnectError::Credential(token_broker::credentials::CredentialError::Disabled) => {
                Problem::conflict("the provider is disabled and takes no new credentials")
            }
            error @ ConnectError::Credential(_) => Problem::invalid_request(error.to_string()),
            ConnectError::Store(error) => Problem::from(error),
            ConnectError::NotConfigured => {
                Problem::not_found("connected services are not configured")
            }
            ConnectError::Internal(cause) => Problem::internal(&cause),
        }
    }
}

/// The bearer, who must be a user (not a client acting for itself).
pub(crate) async fn user(state: &AppState, headers: &HeaderMap) -> Result<TokenRecord, Problem> {
    let record = authenticate::bearer(state, headers).await?;
    if is_client_token(&record) {
        return Err(Problem::forbidden(
            "connected services belong to users; this token was issued to a client for itself",
        ));
    }
    Ok(record)
}

/// Whether a token was issued to a client for itself (`client_credentials`).
fn is_client_token(record: &TokenRecord) -> bool {
    record
        .holder
        .client_id
        .as_deref()
        .is_some_and(|id| record.holder.subject == client_subject(id))
}

/// `expires=N` from a query: 0–86400 seconds, default 60.
fn min_validity(query: &str) -> Result<Duration, Problem> {
    let form = Form::parse(query.as_bytes())
        .map_err(|error| Problem::invalid_request(format!("query: {error}")))?;
    let seconds = match form.get("expires") {
        None => DEFAULT_MIN_VALIDITY,
        Some(text) => text
            .parse::<u64>()
            .ok()
            .filter(|seconds| *seconds <= MAX_MIN_VALIDITY)
            .ok_or_else(|| {
                Problem::invalid_request(format!(
                    "expires must be a whole number of seconds from 0 to {MAX_MIN_VALIDITY}"
                ))
            })?,
    };
    Ok(Duration::from_secs(seconds))
}

#[derive(Serialize)]
struct TokenBody<'a> {
    access_token: &'a str,
    token_type: &'a str,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
    provider: &'a str,
}

fn token_response(token: &ServedToken, provider: &str) -> Response {
    json(
        StatusCode::OK,
        &TokenBody {
            access_token: &token.access_token,
            token_type: &token.token_type,
            expires_in: token.expires_in,
            scope: token.scope.as_deref(),
            provider,
        },
    )
}

/// `GET /v1/connect`: the enabled providers, each with an authorize URL
/// (fresh state and PKCE challenge) for the bearer.
pub async fn offers(state: AppState, headers: HeaderMap) -> Response {
    let result = async {
        let caller = user(&state, &headers).await?;
        let offers: Vec<Offer> = state
            .connect()
            .offers(&caller.holder.subject, &caller.holder.username)
            .await?;
        Ok::<_, Problem>(json(
            StatusCode::OK,
            &serde_json::json!({ "providers": offers }),
        ))
    };
    result.await.unwrap_or_else(Problem::into_response)
}

/// `GET /v1/connect/{provider}/offer?return_to=URL`: that enabled
/// provider's offer for the bearer (an element of `GET /v1/connect`'s
/// list); after the callback the browser goes to `return_to` (which
/// `CONNECT_RETURN_URLS` must allow: 400 otherwise) instead of the success
/// page.
pub async fn offer(
    state: AppState,
    headers: HeaderMap,
    provider: String,
    query: String,
) -> Response {
    let result = async {
        let caller = user(&state, &headers).await?;
        let form = Form::parse(query.as_bytes())
            .map_err(|error| Problem::invalid_request(format!("query: {error}")))?;
        let offer: Offer = state
            .connect()
            .offer(
                &caller.holder.subject,
                &caller.holder.username,
                &provider,
                form.get("return_to"),
            )
            .await?;
        Ok::<_, Problem>(json(StatusCode::OK, &offer))
    };
    result.await.unwrap_or_else(Problem::into_response)
}

/// `GET /v1/connect/callback?code&state` (or `?error&state`): completes a
/// connection and sends the browser to the success or failure page (303),
/// or, for flows started on the account page, back there. A state
/// presented by a browser without the session that started the flow gets
/// an error page (403) and connects nothing.
pub async fn callback(state: AppState, headers: HeaderMap, query: String) -> Response {
    let mut callback = Form::parse(query.as_bytes()).map_or_else(
        |_| Callback::default(),
        |form| Callback {
            code: form.get("code").map(|code| Zeroizing::new(code.to_owned())),
            state: form.get("state").map(str::to_owned),
            error: form.get("error").map(str::to_owned),
            iss: form.get("iss").map(str::to_owned),
            browser: None,
        },
    );
    let connect = state.connect();
    if connect.registry().is_empty() {
        return Problem::not_found("connected services are not configured").into_response();
    }
    if connect.is_signin_state(callback.state.as_deref()) {
        // One redirect URI per provider: a sign-in's state ends a sign-in.
        return crate::web::federated::finish(state, headers, callback).await;
    }
    callback.browser = match crate::web::session(&state, &headers).await {
        Ok(session) => session.map(|session| session.binding()),
        Err(problem) => return crate::web::problem_page(&problem),
    };
    let outcome = connect.complete(&callback).await;
    if let Err(Refusal {
        failure: Failure::SessionMismatch,
        ..
    }) = &outcome
    {
        return crate::web::error_page(
            StatusCode::FORBIDDEN,
            "Connection refused",
            "This connection was started in another browser session, so nothing was connected. \
             If you want to connect a service, start from your own account page.",
        );
    }
    let to_account = connect.returns_to_account(callback.state.as_deref());
    let page = if to_account {
        Some(match &outcome {
            Ok(provider) => format!(
                "/account?done=connected&provider={}",
                crate::web::query_encode(provider)
            ),
            Err(refusal) => format!(
                "/account?failed={}&provider={}",
                refusal.failure.code(),
                crate::web::query_encode(refusal.provider.as_deref().unwrap_or_default())
            ),
        })
    } else {
        connect.return_page(callback.state.as_deref(), &outcome)
    };
    let Some(location) = page.and_then(|page| HeaderValue::from_str(&page).ok()) else {
        return Problem::internal(&"the connect result pages are not configured").into_response();
    };
    let mut response = Response::new(Vec::<u8>::new().into());
    *response.status_mut() = StatusCode::SEE_OTHER;
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, location);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// `GET /connect/start?ticket=…`: the link `GET /v1/connect` hands out.
/// Opened in a browser signed in as the user it was made for, it starts
/// the provider's flow bound to that browser session; not signed in, the
/// sign-in page comes first; signed in as someone else, an error page.
pub async fn start(state: AppState, headers: HeaderMap, query: String) -> Response {
    use crate::web::{error_page, problem_page, query_encode, see_other};
    let connect = state.connect();
    let ticket = Form::parse(query.as_bytes())
        .ok()
        .and_then(|form| form.get("ticket").map(str::to_owned));
    let Some(claims) = ticket
        .as_deref()
        .and_then(|ticket| connect.ticket(ticket).ok())
    else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Link not valid",
            "This connect link is malformed or has expired. Ask for a new one.",
        );
    };
    let session = match crate::web::session(&state, &headers).await {
        Ok(Some(session)) => session,
        Ok(None) => {
            return see_other(&format!(
                "/signin?return_to={}",
                query_encode(&format!("/connect/start?{query}"))
            ));
        }
        Err(problem) => return problem_page(&problem),
    };
    let (subject, provider) = (&claims.subject, &claims.provider);
    if session.record.holder.subject != *subject {
        tracing::warn!(signed_in = %session.record.holder.subject, link_for = %subject, %provider, "connect link opened by another user; refused");
        return error_page(
            StatusCode::FORBIDDEN,
            "Connection refused",
            "This connect link was made for another account than the one signed in here (session_mismatch). Nothing was connected.",
        );
    }
    match connect
        .start_in_browser_to(
            provider,
            &session.record.holder.subject,
            &session.record.holder.username,
            &session.binding(),
            claims.return_to.as_deref(),
        )
        .await
    {
        Ok(url) => see_other(&url),
        Err(error) => problem_page(&Problem::from(error)),
    }
}

/// `GET /v1/connect/tokens`: the bearer's connections, without tokens.
pub async fn connections(state: AppState, headers: HeaderMap) -> Response {
    let result = async {
        let caller = user(&state, &headers).await?;
        let connections: Vec<ConnectionView> =
            state.connect().connections(&caller.holder.subject).await?;
        Ok::<_, Problem>(json(
            StatusCode::OK,
            &serde_json::json!({ "connections": connections }),
        ))
    };
    result.await.unwrap_or_else(Problem::into_response)
}

/// `GET /v1/connect/{provider}`: whether the bearer has a usable
/// connection.
pub async fn status(state: AppState, headers: HeaderMap, provider: String) -> Response {
    let result = async {
        let caller = user(&state, &headers).await?;
        let view = state
            .connect()
            .status(&caller.holder.subject, &provider)
            .await?;
        Ok::<_, Problem>(json(StatusCode::OK, &view))
    };
    result.await.unwrap_or_else(Problem::into_response)
}

/// `DELETE /v1/connect/{provider}`: forget the connection, revoking at the
/// provider (RFC 7009) when it can.
pub async fn disconnect(state: AppState, headers: HeaderMap, provider: String) -> Response {
    let result = async {
        let caller = user(&state, &headers).await?;
        let revocation: Revocation = state
            .connect()
            .disconnect(&caller.holder.subject, &provider)
            .await?;
        Ok::<_, Problem>(json(
            StatusCode::OK,
            &serde_json::json!({ "provider": provider, "provider_revocation": revocation }),
        ))
    };
    result.await.unwrap_or_else(Problem::into_response)
}

/// `GET /v1/connect/{provider}/token?expires=N`: a provider access token
/// for the bearer, valid for at least N seconds.
pub async fn token(
    state: AppState,
    headers: HeaderMap,
    provider: String,
    query: String,
) -> Response {
    let result = async {
        let caller = user(&state, &headers).await?;
        let at_least = min_validity(&query)?;
        let token = state
            .connect()
            .token(&caller.holder.subject, &provider, at_least)
            .await?;
        Ok::<_, Problem>(token_response(&token, &provider))
    };
    result.await.unwrap_or_else(Problem::into_response)
}

/// Refuses a service client's request: 403 and a log line.
fn deny(
    reason: &'static str,
    description: &'static str,
    client_id: Option<&str>,
    subject: &str,
    provider: &str,
    address: Option<IpAddr>,
) -> Problem {
    // Subject and provider come from the path: Debug-quoted in the log.
    tracing::warn!(
        client_id = %client_id.unwrap_or("-"),
        user_subject = ?subject,
        provider = ?provider,
        address = ?address,
        %reason,
        "service client denied a provider token"
    );
    metrics::connect_denied(reason);
    Problem::forbidden(description)
}

/// Checks that the bearer of `headers` is a service client that may read
/// `subject`'s tokens or credentials of `provider` from `address`:
/// a client's own token, an enabled client with `view_access_tokens`,
/// `provider` on its `view_providers` when it has that list, `address` in
/// its allow-list when it has one. Answers the client id; every refusal
/// is a logged 403.
///
/// # Errors
///
/// 401 for a bad bearer token, 403 as above, 503 when unavailable.
pub(crate) async fn service_client(
    state: &AppState,
    headers: &HeaderMap,
    address: Option<IpAddr>,
    subject: &str,
    provider: &str,
) -> Result<String, Problem> {
    let caller = authenticate::bearer(state, headers).await?;
    let deny = |reason, description, client_id: Option<&str>| {
        deny(reason, description, client_id, subject, provider, address)
    };
    if !is_client_token(&caller) {
        return Err(deny(
            "not_a_client",
            "only service clients (client_credentials tokens) may fetch a user's provider token",
            caller.holder.client_id.as_deref(),
        ));
    }
    let client_id = caller.holder.client_id.clone().unwrap_or_default();
    let client = state.accounts().client(&client_id).await?;
    let Some(client) = client.filter(|client| !client.disabled) else {
        return Err(deny(
            "unknown_client",
            "the client is unknown or disabled",
            Some(&client_id),
        ));
    };
    if !client.view_access_tokens {
        return Err(deny(
            "permission",
            "the client lacks the view_access_tokens permission",
            Some(&client_id),
        ));
    }
    if !client.may_view(provider) {
        return Err(deny(
            "provider",
            "the client may not fetch tokens of this provider",
            Some(&client_id),
        ));
    }
    if !client.allowed_ips.is_empty()
        && !address.is_some_and(|address| {
            client
                .allowed_ips
                .iter()
                .any(|network| network.contains(&address))
        })
    {
        return Err(deny(
            "address",
            "the client may not fetch tokens from this address",
            Some(&client_id),
        ));
    }
    Ok(client_id)
}

/// Whether the user who connected (or stored credentials) as `username`
/// still exists as `subject` and is enabled; logs a refusal.
///
/// # Errors
///
/// 404 `not_connected` when not; 503 when unavailable.
pub(crate) async fn owner_is_active(
    state: &AppState,
    client_id: &str,
    subject: &str,
    provider: &str,
    username: &str,
) -> Result<(), Problem> {
    let user = state.accounts().user(username).await?;
    if user.is_some_and(|user| user.subject == subject && !user.disabled) {
        return Ok(());
    }
    tracing::info!(%client_id, user_subject = ?subject, provider = ?provider, "refused to a service client: the user is removed or disabled");
    Err(Problem::not_connected())
}

/// `GET /v1/users/{subject}/connect/{provider}/token?expires=N`: a user's
/// provider token for a service client with `view_access_tokens` (of this
/// provider), from an allowed address.
pub async fn service_token(
    state: AppState,
    headers: HeaderMap,
    address: Option<IpAddr>,
    subject: String,
    provider: String,
    query: String,
) -> Response {
    let address = address.map(|address| address.to_canonical());
    let result = async {
        let client_id = service_client(&state, &headers, address, &subject, &provider).await?;
        let at_least = min_validity(&query)?;
        let token = state.connect().token(&subject, &provider, at_least).await?;
        owner_is_active(&state, &client_id, &subject, &provider, &token.username).await?;
        tracing::info!(
            %client_id,
            user_subject = ?subject,
            provider = ?provider,
            address = ?address,
            refreshed = token.refreshed,
            "provider token handed to a service client"
        );
        Ok(token_response(&token, &provider))
    };
    result.await.unwrap_or_else(Problem::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `expires` defaults to 60 s and is bounded.
    #[test]
    fn expires_parameter() {
        assert_eq!(min_validity("").expect("default"), Duration::from_secs(60));
        assert_eq!(min_validity("expires=0").expect("zero"), Duration::ZERO);
        assert_eq!(
            min_validity("expires=3600&x=1").expect("valid"),
            Duration::from_secs(3600)
        );
        for bad in [
            "expires=-1",
            "expires=soon",
            "expires=86401",
            "expires=1&expires=2",
        ] {
            assert_eq!(min_validity(bad).unwrap_err().status(), 400, "{bad}");
        }
    }
}
