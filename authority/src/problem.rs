//! Every error response of the authority, built in one place.
//!
//! The body is always the RFC 6749 §5.2 shape, `{"error": "...",
//! "error_description": "..."}`, with the RFC 6749 code on the token,
//! revocation and introspection endpoints and the RFC 6750 code (plus the
//! `WWW-Authenticate: Bearer …` challenge) on bearer-protected endpoints.
//! Descriptions never contain secrets or hints about which half of a
//! credential was wrong; internal failures are answered with a generic
//! message.
//!
//! Errors become problems by `From` (`?` on a store, account or hashing
//! result); the cause rides along, and is logged and counted once, by
//! [`Problem::report`], where the problem becomes a response
//! ([`Problem::into_response`], or an HTML page through
//! [`crate::web::problem_page`]), never where it is converted.

use std::borrow::Cow;
use std::time::Duration;

use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use token_bearer::{Challenge, ErrorCode};
use warp::reply::Response;

use crate::accounts::AccountError;
use crate::password::HashError;
use crate::resources::RegistryError;

/// The realm named in challenges.
pub const REALM: &str = "token-authority";

/// An error answer: status, RFC error code, description and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    status: StatusCode,
    error: &'static str,
    description: Cow<'static, str>,
    challenge: Option<String>,
    retry_after: Option<u64>,
    allow: Option<String>,
    cause: Option<Box<Cause>>,
}

/// Why a problem happened, when that is the server's business: logged and
/// counted by [`Problem::report`], never sent.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cause {
    /// The token repository (Redis) failed; `unavailable` when unreachable
    /// or slow rather than refusing.
    Store { message: String, unavailable: bool },
    /// The password hashing pool is saturated.
    HashBusy,
    /// Anything else that went wrong inside.
    Internal(String),
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    error_description: &'a str,
}

impl Problem {
    fn new(
        status: StatusCode,
        error: &'static str,
        description: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            error,
            description: description.into(),
            challenge: None,
            retry_after: None,
            allow: None,
            cause: None,
        }
    }

    /// 400 `invalid_request`: malformed, missing or repeated parameters.
    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// 401 `invalid_client` with a `Basic` challenge (RFC 6749 §5.2).
    pub fn invalid_client() -> Self {
        let mut problem = Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
        problem.challenge = Some(format!("Basic realm=\"{REALM}\", charset=\"UTF-8\""));
        problem
    }

    /// 400 `invalid_grant`: bad credentials or an unusable refresh token.
    pub fn invalid_grant(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    /// 400 `unauthorized_client`: this client may not do this.
    pub fn unauthorized_client(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unauthorized_client", description)
    }

    /// 400 `unsupported_grant_type`.
    pub fn unsupported_grant_type() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be password, client_credentials or refresh_token",
        )
    }

    /// 400 `invalid_target` (RFC 8707 §2): a `resource` that is malformed,
    /// unknown, not allowed to the client, or wider than the refreshed
    /// token's audience.
    pub fn invalid_target(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_target", description)
    }

    /// 401 `invalid_token`: a live token issued for other resources than
    /// this authority (never naming them).
    pub fn wrong_audience() -> Self {
        Self::invalid_token_because("the token's audience does not include this service")
    }

    /// 400 `invalid_scope`.
    pub fn invalid_scope(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", description)
    }

    /// 429 `temporarily_unavailable` with `Retry-After`: too many failed
    /// logins.
    pub fn throttled(wait: Duration) -> Self {
        let mut problem = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "temporarily_unavailable",
            "too many failed attempts; retry later",
        );
        problem.retry_after = Some(
            wait.as_millis()
                .div_ceil(1000)
                .max(1)
                .try_into()
                .unwrap_or(u64::MAX),
        );
        problem
    }

    /// 503 `temporarily_unavailable` with `Retry-After: 1`: the repository
    /// is unreachable or the hashing pool is saturated. Fail closed.
    pub fn unavailable() -> Self {
        let mut problem = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the service is temporarily unavailable; retry later",
        );
        problem.retry_after = Some(1);
        problem
    }

    /// 503 `temporarily_unavailable` with `Retry-After: 1` and a specific
    /// description (a provider down, a refresh in progress elsewhere).
    pub fn unavailable_because(description: &'static str) -> Self {
        let mut problem = Self::unavailable();
        problem.description = Cow::Borrowed(description);
        problem
    }

    /// 404 `not_connected`: the user has not connected this service.
    pub fn not_connected() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_connected",
            "the user has not connected this service",
        )
    }

    /// 409 `reconnect_required`: the stored connection can no longer give
    /// tokens (the provider refused the refresh token); the user must
    /// connect the service again.
    pub fn reconnect_required(description: &'static str) -> Self {
        Self::new(StatusCode::CONFLICT, "reconnect_required", description)
    }

    /// 502 `provider_error`: the external provider refused or answered
    /// something unusable (its configuration, not the user's doing).
    pub fn provider_error(description: &'static str) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "provider_error", description)
    }

    /// 500 `server_error`; `cause` is logged when the problem is reported.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        let mut problem = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal error",
        );
        problem.cause = Some(Box::new(Cause::Internal(cause.to_string())));
        problem
    }

    /// 401 with `WWW-Authenticate: Bearer realm=…` and no error code: no
    /// credentials were sent (RFC 6750 §3.1).
    pub fn bearer_required() -> Self {
        let mut problem = Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request",
            "a bearer token is required",
        );
        problem.challenge = Some(Challenge::new(REALM).to_string());
        problem
    }

    /// 400 with a Bearer `invalid_request` challenge: a malformed
    /// `Authorization` header.
    pub fn bearer_malformed(description: &'static str) -> Self {
        let mut problem = Self::invalid_request(description);
        problem.challenge = Some(
            Challenge::new(REALM)
                .error(ErrorCode::InvalidRequest)
                .description(description)
                .to_string(),
        );
        problem
    }

    /// 401 with a Bearer `invalid_token` challenge: unknown, expired,
    /// revoked or malformed token.
    pub fn invalid_token() -> Self {
        Self::invalid_token_because("the access token is invalid, expired or revoked")
    }

    /// 401 `invalid_token` with `description`, in the body and the Bearer
    /// challenge.
    fn invalid_token_because(description: &'static str) -> Self {
        let mut problem = Self::new(StatusCode::UNAUTHORIZED, "invalid_token", description);
        problem.challenge = Some(
            Challenge::new(REALM)
                .error(ErrorCode::InvalidToken)
                .description(description)
                .to_string(),
        );
        problem
    }

    /// 403 with a Bearer `insufficient_scope` challenge naming `scope`.
    pub fn insufficient_scope(scope: &'static str) -> Self {
        let mut problem = Self::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("this requires the {scope:?} scope"),
        );
        problem.challenge = Some(
            Challenge::new(REALM)
                .error(ErrorCode::InsufficientScope)
                .scope(scope)
                .to_string(),
        );
        problem
    }

    /// 403 `access_denied`: authenticated but not allowed.
    pub fn forbidden(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "access_denied", description)
    }

    /// 404 `not_found`.
    pub fn not_found(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", description)
    }

    /// 405 `invalid_request`: the path exists, the method does not;
    /// `allow` lists the path's methods.
    pub fn method_not_allowed(allow: &str) -> Self {
        let mut problem = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            "method not allowed on this path",
        );
        problem.allow = Some(allow.to_owned());
        problem
    }

    /// 409 `conflict`: the name is taken.
    pub fn conflict(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", description)
    }

    /// 408 `invalid_request`: the client did not send its request body
    /// within the request timeout.
    #[must_use]
    pub fn request_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request",
            "the request body was not received in time",
        )
    }

    /// 413 `invalid_request`: the body exceeds the limit.
    pub fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            "request body too large",
        )
    }

    /// Logs and counts the cause of this problem, if it has one: a store
    /// failure (counted in `authority_redis_errors_total`), a saturated
    /// hashing pool, an internal error. Called once per answer, where the
    /// problem becomes a response.
    pub fn report(&self) {
        match self.cause.as_deref() {
            None => {}
            Some(Cause::Store {
                message,
                unavailable,
            }) => {
                crate::metrics::redis_error();
                if *unavailable {
                    tracing::warn!(error = %message, "token repository unavailable");
                } else {
                    tracing::error!(cause = %message, "internal error");
                }
            }
            Some(Cause::HashBusy) => {
                tracing::warn!("password hashing saturated; refusing a request");
            }
            Some(Cause::Internal(cause)) => tracing::error!(%cause, "internal error"),
        }
    }

    /// The status code.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The RFC error code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        self.error
    }

    /// The human-readable description.
    #[must_use]
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The HTTP response, after [reporting](Self::report) the cause.
    #[must_use]
    pub fn into_response(self) -> Response {
        self.report();
        let body = serde_json::to_vec(&Body {
            error: self.error,
            error_description: &self.description,
        })
        .unwrap_or_default();
        let mut response = Response::new(body.into());
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if let Some(challenge) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(allow) = self
            .allow
            .and_then(|allow| HeaderValue::from_str(&allow).ok())
        {
            headers.insert(header::ALLOW, allow);
        }
        response
    }
}

/// A repository failure: 503 when Redis is unreachable or slow (fail
/// closed), 500 otherwise.
impl From<token_repository::Error> for Problem {
    fn from(error: token_repository::Error) -> Self {
        let unavailable = error.is_unavailable();
        let mut problem = if unavailable {
            Self::unavailable()
        } else {
            Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "internal error",
            )
        };
        problem.cause = Some(Box::new(Cause::Store {
            message: error.to_string(),
            unavailable,
        }));
        problem
    }
}

/// An account store failure: the repository's, contention (503), or a
/// corrupt record (500).
impl From<AccountError> for Problem {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::Store(error) => error.into(),
            AccountError::Contended(_) => Self::unavailable(),
            AccountError::Corrupt(_) => Self::internal(&error),
        }
    }
}

/// A resource registry failure: the repository's, or a corrupt entry (500).
impl From<RegistryError> for Problem {
    fn from(error: RegistryError) -> Self {
        match error {
            RegistryError::Store(error) => error.into(),
            RegistryError::Corrupt(_) => Self::internal(&error),
        }
    }
}

/// A hashing failure: saturation is 503, the rest 500.
impl From<HashError> for Problem {
    fn from(error: HashError) -> Self {
        match error {
            HashError::Busy => {
                let mut problem = Self::unavailable();
                problem.cause = Some(Box::new(Cause::HashBusy));
                problem
            }
            HashError::Internal(_) => Self::internal(&error),
        }
    }
}

/// A JSON response with `status` and the no-store headers every token
/// response needs (RFC 6749 §5.1).
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    // Room for an introspection or token response at once: `to_vec`
    // starts at 128 bytes and grew (copying) twice for those.
    let mut body = Vec::with_capacity(512);
    match serde_json::to_writer(&mut body, value) {
        Ok(()) => json_bytes(status, body.into()),
        Err(error) => Problem::internal(&error).into_response(),
    }
}

/// [`json`] for a body already serialized (a constant answer).
#[must_use]
pub fn json_bytes(status: StatusCode, body: bytes::Bytes) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::json_body as body;

    /// Token endpoint errors follow RFC 6749 §5.2, with no-store headers.
    #[tokio::test]
    async fn rfc6749_shape() {
        let response = Problem::invalid_grant("bad").into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(
            body(response).await,
            serde_json::json!({"error": "invalid_grant", "error_description": "bad"})
        );
        let response = Problem::invalid_client().into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(
            response.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .expect("ascii")
                .starts_with("Basic realm=")
        );
    }

    /// Bearer errors carry the RFC 6750 §3 challenges.
    #[test]
    fn rfc6750_challenges() {
        let missing = Problem::bearer_required().into_response();
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            missing.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"token-authority\""
        );
        let invalid = Problem::invalid_token().into_response();
        assert!(
            invalid.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .expect("ascii")
                .contains("error=\"invalid_token\"")
        );
        let scope = Problem::insufficient_scope("admin").into_response();
        assert_eq!(scope.status(), StatusCode::FORBIDDEN);
        assert!(
            scope.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .expect("ascii")
                .contains("error=\"insufficient_scope\", scope=\"admin\"")
        );
    }

    /// Errors convert by `From`: an unreachable store and a saturated
    /// hashing pool are 503 (fail closed), a refusing store or a corrupt
    /// account 500 with a generic description; the cause is kept for the
    /// report and never sent.
    #[tokio::test]
    async fn conversions_at_the_edge() {
        let down = Problem::from(token_repository::Error::Timeout(Duration::from_secs(1)));
        assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(matches!(
            down.cause.as_deref(),
            Some(Cause::Store {
                unavailable: true,
                ..
            })
        ));
        let refused = Problem::from(AccountError::Store(token_repository::Error::Config(
            "secret-looking detail".into(),
        )));
        assert_eq!(refused.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(refused.description(), "internal error");
        let body = body(refused.into_response()).await;
        assert!(!body.to_string().contains("secret-looking"), "{body}");
        let corrupt = Problem::from(AccountError::Corrupt("alice".into()));
        assert_eq!(corrupt.code(), "server_error");
        let busy = Problem::from(HashError::Busy);
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.cause.as_deref(), Some(&Cause::HashBusy));
        assert_eq!(
            Problem::from(AccountError::Contended("alice".into())).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    /// Unavailability answers 503 with Retry-After; throttling 429.
    #[test]
    fn retry_after() {
        let response = Problem::unavailable().into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let response = Problem::throttled(Duration::from_millis(2500)).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
    }
}
