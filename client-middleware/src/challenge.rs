//! Every refusal the middleware answers, built in one place: RFC 6750 §3
//! challenges for HTTP (written by [`token_bearer::Challenge`]),
//! trailers-only gRPC statuses for gRPC.
//!
//! | refusal              | HTTP | `WWW-Authenticate` (after `Bearer realm="…"`)  | gRPC status             |
//! |----------------------|------|------------------------------------------------|-------------------------|
//! | no credentials       | 401  | nothing else (§3.1: no error code)             | 16 `UNAUTHENTICATED`    |
//! | malformed request    | 400  | `error="invalid_request"`                      | 16 `UNAUTHENTICATED`    |
//! | bad token            | 401  | `error="invalid_token"`                        | 16 `UNAUTHENTICATED`    |
//! | missing scope        | 403  | `error="insufficient_scope"`, `scope="…"`      | 7 `PERMISSION_DENIED`   |
//! | repository down/slow | 503  | none; `Retry-After` instead                    | 14 `UNAVAILABLE`        |
//!
//! Bodies are empty: the status and the header say everything (RFC 6750
//! defines no body), and an empty body is the one every response body type
//! can make (`Default`). Nothing here ever quotes the request, so a token
//! can never be echoed. Building a response records nothing: the `edge`
//! logs and counts each refusal once.

use std::sync::Arc;
use std::time::Duration;

use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use token_bearer::{Challenge, ErrorCode};
use token_repository::Scopes;
use uuid::Uuid;

/// The `error_description` of a token whose audience does not include this
/// service (the same words as the authority's own endpoints use).
pub(crate) const WRONG_AUDIENCE: &str = "the token's audience does not include this service";

/// Why a request is refused, with what its log line needs.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The request carries no bearer token.
    Missing,
    /// The request is malformed (`invalid_request`).
    InvalidRequest(&'static str),
    /// The token is malformed, of the wrong kind, unknown, expired or
    /// revoked (`invalid_token`).
    InvalidToken {
        /// The `error_description`.
        description: &'static str,
        /// The token's public id, when it parsed.
        token_id: Option<Uuid>,
    },
    /// A live token whose audience does not include this service
    /// (`invalid_token`; the description never names the token's audience).
    WrongAudience {
        /// The token's public id.
        token_id: Uuid,
    },
    /// The token lacks a required scope (`insufficient_scope`).
    InsufficientScope {
        /// The scopes that would do (space-delimited on the wire).
        scope: Scopes,
        /// Whether one of them suffices or all are needed.
        description: &'static str,
        /// The token's public id.
        token_id: Uuid,
    },
    /// The repository failed or did not answer in time.
    Unavailable {
        /// The token looked up.
        token_id: Uuid,
        /// What happened.
        cause: Unavailable,
    },
}

/// Why the repository could not answer.
#[derive(Debug)]
pub(crate) enum Unavailable {
    /// It failed.
    Failed(token_repository::Error),
    /// It did not answer within the layer's timeout.
    TimedOut(Duration),
}

impl Refusal {
    /// The `outcome` label of the request metric.
    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidToken { .. } => "invalid_token",
            Self::WrongAudience { .. } => "wrong_audience",
            Self::InsufficientScope { .. } => "insufficient_scope",
            Self::Unavailable { .. } => "unavailable",
        }
    }

    /// The RFC 6750 error code; `None` for no credentials and for 503.
    fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Missing | Self::Unavailable { .. } => None,
            Self::InvalidRequest(_) => Some(ErrorCode::InvalidRequest),
            Self::InvalidToken { .. } | Self::WrongAudience { .. } => Some(ErrorCode::InvalidToken),
            Self::InsufficientScope { .. } => Some(ErrorCode::InsufficientScope),
        }
    }
}

/// `content-type` values starting with this are gRPC requests.
const GRPC_CONTENT_TYPE: &str = "application/grpc";

/// gRPC status codes used here (gRPC's `statuscodes.md`).
const GRPC_UNAUTHENTICATED: &str = "16";
const GRPC_PERMISSION_DENIED: &str = "7";
const GRPC_UNAVAILABLE: &str = "14";

/// Whether a request is gRPC, and must be refused with a gRPC status.
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with(GRPC_CONTENT_TYPE))
}

/// Turns refusals into responses; holds what every challenge shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenger {
    /// The realm of every challenge (printable ASCII).
    realm: String,
    /// The `Retry-After` of 503 answers (whole seconds, at least 1).
    retry_after: Duration,
}

/// Put into request extensions by [`TokenAuth`](crate::TokenAuth), so that
/// later refusals (the scope guard, the axum extractor) name the same realm.
#[derive(Debug, Clone)]
pub(crate) struct ChallengeContext(pub(crate) Arc<Challenger>);

impl ChallengeContext {
    /// The challenger a layer put here when it let the request through
    /// without a principal, or replaced an outer layer's with
    /// (see [`crate::principal::challenger_of`]).
    pub(crate) fn get(extensions: &http::Extensions) -> Option<Arc<Challenger>> {
        extensions
            .get::<Self>()
            .map(|context| Arc::clone(&context.0))
    }

    /// Puts `challenger` into `extensions`, for a request let through
    /// without a principal (an optional layer).
    pub(crate) fn insert(extensions: &mut http::Extensions, challenger: &Arc<Challenger>) {
        extensions.insert(Self(Arc::clone(challenger)));
    }
}

impl Default for Challenger {
    fn default() -> Self {
        Self::new(DEFAULT_REALM, DEFAULT_RETRY_AFTER)
    }
}

impl Challenger {
    /// The default challenger, one for the process: every layer starts
    /// with it, and [`crate::principal::challenger_of`] answers it when a
    /// request carries none (without allocating one per refusal).
    pub(crate) fn shared_default() -> &'static Arc<Self> {
        static DEFAULT: std::sync::LazyLock<Arc<Challenger>> =
            std::sync::LazyLock::new(|| Arc::new(Challenger::default()));
        &DEFAULT
    }
}

/// The realm when none is configured.
pub(crate) const DEFAULT_REALM: &str = "api";
/// The `Retry-After` of 503 answers when none is configured.
pub(crate) const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

impl Challenger {
    /// A challenger for `realm`.
    ///
    /// # Panics
    ///
    /// When `realm` holds characters a header cannot carry (controls,
    /// non-ASCII).
    pub(crate) fn new(realm: &str, retry_after: Duration) -> Self {
        assert!(
            realm.bytes().all(|byte| (0x20..0x7f).contains(&byte)),
            "the realm must be printable ASCII"
        );
        Self {
            realm: realm.to_owned(),
            retry_after: whole_seconds(retry_after),
        }
    }

    /// The same challenger with another `Retry-After`.
    pub(crate) fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = whole_seconds(retry_after);
        self
    }

    /// The `Retry-After` of 503 answers.
    pub(crate) fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// The `WWW-Authenticate` value for `refusal`; `None` for 503.
    fn www_authenticate(&self, refusal: &Refusal) -> Option<HeaderValue> {
        let mut challenge = Challenge::new(&self.realm);
        if let Some(code) = refusal.code() {
            challenge = challenge.error(code);
        }
        let scope;
        match refusal {
            Refusal::Missing => {}
            Refusal::InvalidRequest(description) | Refusal::InvalidToken { description, .. } => {
                challenge = challenge.description(description);
            }
            Refusal::WrongAudience { .. } => {
                challenge = challenge.description(WRONG_AUDIENCE);
            }
            Refusal::InsufficientScope {
                scope: scopes,
                description,
                ..
            } => {
                scope = scopes.to_string();
                challenge = challenge.description(description).scope(&scope);
            }
            Refusal::Unavailable { .. } => return None,
        }
        Some(challenge.to_header_value())
    }

    /// The response refusing a request: HTTP, or gRPC when `grpc`.
    pub(crate) fn respond<B: Default>(&self, refusal: &Refusal, grpc: bool) -> Response<B> {
        let mut response = Response::new(B::default());
        let headers = response.headers_mut();
        if let Some(challenge) = self.www_authenticate(refusal) {
            headers.insert(WWW_AUTHENTICATE, challenge);
        }
        if matches!(refusal, Refusal::Unavailable { .. }) {
            headers.insert(RETRY_AFTER, HeaderValue::from(self.retry_after.as_secs()));
        }
        if grpc {
            // A trailers-only response: HTTP 200 with the status in the
            // headers (gRPC over HTTP/2 spec, "Responses").
            let (code, message) = grpc_status(refusal);
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(GRPC_CONTENT_TYPE));
            headers.insert("grpc-status", HeaderValue::from_static(code));
            headers.insert("grpc-message", HeaderValue::from_static(message));
        } else {
            *response.status_mut() = http_status(refusal);
        }
        response
    }
}

/// `Retry-After` carries whole seconds; less than one second is one.
fn whole_seconds(duration: Duration) -> Duration {
    Duration::from_secs(duration.as_secs().max(1))
}

fn http_status(refusal: &Refusal) -> StatusCode {
    match (refusal, refusal.code()) {
        (Refusal::Unavailable { .. }, _) => StatusCode::SERVICE_UNAVAILABLE,
        (_, Some(code)) => code.status(),
        (_, None) => StatusCode::UNAUTHORIZED,
    }
}

/// The gRPC status code and message (`grpc-message` is percent-encoded on
/// the wire; these constants need no encoding).
fn grpc_status(refusal: &Refusal) -> (&'static str, &'static str) {
    match refusal {
        Refusal::Missing => (GRPC_UNAUTHENTICATED, "missing bearer token"),
        Refusal::InvalidRequest(_) => (GRPC_UNAUTHENTICATED, "malformed authorization metadata"),
        Refusal::InvalidToken { .. } | Refusal::WrongAudience { .. } => {
            (GRPC_UNAUTHENTICATED, "invalid bearer token")
        }
        Refusal::InsufficientScope { .. } => (GRPC_PERMISSION_DENIED, "insufficient scope"),
        Refusal::Unavailable { .. } => (GRPC_UNAVAILABLE, "token repository unavailable"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid_token(description: &'static str) -> Refusal {
        Refusal::InvalidToken {
            description,
            token_id: None,
        }
    }

    fn unavailable() -> Refusal {
        Refusal::Unavailable {
            token_id: Uuid::nil(),
            cause: Unavailable::TimedOut(Duration::from_millis(250)),
        }
    }

    fn header(response: &Response<()>, name: &str) -> Option<String> {
        response
            .headers()
            .get(name)
            .map(|value| value.to_str().expect("ascii").to_owned())
    }

    /// Each refusal has the RFC 6750 §3 status and challenge; only the
    /// missing-credentials challenge carries no error code.
    #[test]
    fn http_refusals_follow_rfc_6750() {
        let challenger = Challenger::new("orders", Duration::from_secs(3));
        let missing: Response<()> = challenger.respond(&Refusal::Missing, false);
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            header(&missing, "www-authenticate").as_deref(),
            Some("Bearer realm=\"orders\"")
        );

        let invalid: Response<()> =
            challenger.respond(&invalid_token("the token is revoked"), false);
        assert_eq!(invalid.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            header(&invalid, "www-authenticate").as_deref(),
            Some(
                "Bearer realm=\"orders\", error=\"invalid_token\", \
                 error_description=\"the token is revoked\""
            )
        );

        let malformed: Response<()> =
            challenger.respond(&Refusal::InvalidRequest("two credentials"), false);
        assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
        assert!(
            header(&malformed, "www-authenticate")
                .expect("challenge")
                .contains("error=\"invalid_request\"")
        );

        let scope = Refusal::InsufficientScope {
            scope: Scopes::parse("admin ops").expect("scopes"),
            description: "requires one of the scopes",
            token_id: Uuid::nil(),
        };
        let forbidden: Response<()> = challenger.respond(&scope, false);
        assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
        let challenge = header(&forbidden, "www-authenticate").expect("challenge");
        assert!(
            challenge.contains("error=\"insufficient_scope\""),
            "{challenge}"
        );
        assert!(challenge.contains("scope=\"admin ops\""), "{challenge}");

        let unavailable: Response<()> = challenger.respond(&unavailable(), false);
        assert_eq!(unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(header(&unavailable, "retry-after").as_deref(), Some("3"));
        assert_eq!(header(&unavailable, "www-authenticate"), None);
    }

    /// gRPC requests get HTTP 200 with `grpc-status` (trailers-only), and
    /// keep the challenge header.
    #[test]
    fn grpc_refusals_carry_grpc_status() {
        let challenger = Challenger::default();
        let cases = [
            (Refusal::Missing, "16"),
            (invalid_token("x"), "16"),
            (Refusal::InvalidRequest("x"), "16"),
            (
                Refusal::InsufficientScope {
                    scope: Scopes::parse("admin").expect("scopes"),
                    description: "x",
                    token_id: Uuid::nil(),
                },
                "7",
            ),
            (unavailable(), "14"),
        ];
        for (refusal, code) in cases {
            let response: Response<()> = challenger.respond(&refusal, true);
            assert_eq!(response.status(), StatusCode::OK, "{refusal:?}");
            assert_eq!(header(&response, "grpc-status").as_deref(), Some(code));
            assert_eq!(
                header(&response, "content-type").as_deref(),
                Some("application/grpc")
            );
            assert!(header(&response, "grpc-message").is_some());
        }
        let denied: Response<()> = challenger.respond(&Refusal::Missing, true);
        assert!(header(&denied, "www-authenticate").is_some());
    }

    /// Quotes and backslashes in the realm are escaped, so the realm cannot
    /// inject challenge parameters.
    #[test]
    fn realm_is_quoted() {
        let challenger = Challenger::new(r#"a"b\c"#, DEFAULT_RETRY_AFTER);
        let response: Response<()> = challenger.respond(&Refusal::Missing, false);
        assert_eq!(
            header(&response, "www-authenticate").as_deref(),
            Some(r#"Bearer realm="a\"b\\c""#)
        );
    }

    /// `application/grpc` and its `+proto` / `+json` variants are gRPC;
    /// other content types are not.
    #[test]
    fn detects_grpc() {
        let mut headers = HeaderMap::new();
        assert!(!is_grpc(&headers));
        for (value, grpc) in [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("application/json", false),
            ("application/grpc-web", true),
        ] {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(value));
            assert_eq!(is_grpc(&headers), grpc, "{value}");
        }
    }
}
