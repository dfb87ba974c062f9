//! RFC 6750 on the wire, once for the whole token service: reading the
//! bearer token of an `Authorization` header and writing the
//! `WWW-Authenticate: Bearer …` challenge of a refusal. The token authority
//! (its bearer-protected endpoints) and the token client (the middleware)
//! both use it, so a header one accepts the other accepts too.
//!
//! ```
//! use http::header::AUTHORIZATION;
//! use http::{HeaderMap, HeaderValue, StatusCode};
//! use token_bearer::{Challenge, ErrorCode, Malformed};
//!
//! let mut headers = HeaderMap::new();
//! headers.insert(AUTHORIZATION, HeaderValue::from_static("bearer\tmF_9.B5f-4.1JqM"));
//! assert_eq!(token_bearer::from_headers(&headers), Ok(Some("mF_9.B5f-4.1JqM")));
//!
//! headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer a b"));
//! assert_eq!(token_bearer::from_headers(&headers), Err(Malformed::SeveralCredentials));
//!
//! let challenge = Challenge::new("example")
//!     .error(ErrorCode::InvalidToken)
//!     .description("the access token expired");
//! assert_eq!(
//!     challenge.to_string(),
//!     r#"Bearer realm="example", error="invalid_token", error_description="the access token expired""#
//! );
//! assert_eq!(ErrorCode::InvalidToken.status(), StatusCode::UNAUTHORIZED);
//! ```
//!
//! # Layout
//!
//! - `credentials`: the `Authorization` header grammar ([`from_headers`],
//!   [`parse_authorization`], [`is_b64token`]) and [`Malformed`].
//! - `challenge`: [`Challenge`] and [`ErrorCode`], the `WWW-Authenticate`
//!   value with its quoting.

mod challenge;
mod credentials;
#[cfg(test)]
mod proptests;

pub use challenge::{Challenge, ErrorCode};
pub use credentials::{Malformed, from_headers, is_b64token, parse_authorization};
