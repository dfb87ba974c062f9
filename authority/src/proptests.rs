//! Property tests of the authority's parsers of untrusted input: the form
//! decoder and the `Authorization` header (Bearer and Basic). (The admin
//! API's JSON bodies are in `api::admin`'s own property tests: their types
//! are private there; the connect `state` and the provider-token envelope
//! are the broker's, in `broker/src/proptests.rs`.)
//!
//! Each: arbitrary input never panics, and a decode–encode round trip where
//! one exists. Cases per property: `PROPTEST_CASES` (256 by default, what
//! CI runs); the README's "Property tests" section gives the long run.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderValue};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use proptest::prelude::*;
use token_repository::{SubjectTag, Token, TokenKind};

use crate::credentials::{ClientCredentials, bearer_token, client_credentials};
use crate::form::{Form, FormError};

/// Text without control characters (which the form decoder refuses).
fn printable(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("\\PC{{0,{max}}}")).expect("regex")
}

/// Form-encodes `text`: every byte but letters and digits escaped, and
/// spaces as `+` when `plus` says so.
fn form_encode(text: &str, plus: bool) -> String {
    let encoded = utf8_percent_encode(text, NON_ALPHANUMERIC).to_string();
    if plus {
        encoded.replace("%20", "+")
    } else {
        encoded
    }
}

fn headers_with_authorization(value: &[u8]) -> Option<HeaderMap> {
    let value = HeaderValue::from_bytes(value).ok()?;
    let mut headers = HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, value);
    Some(headers)
}

fn token() -> impl Strategy<Value = Token> {
    (
        prop_oneof![Just(TokenKind::Access), Just(TokenKind::Refresh)],
        any::<String>(),
    )
        .prop_map(|(kind, subject)| {
            Token::generate(kind, &SubjectTag::of(&subject)).expect("the OS generator")
        })
}

proptest! {
    /// Any body is a form or a `FormError`, never a panic; a body that
    /// parses has only valid percent escapes (no silent misreading) and
    /// parses the same way again.
    #[test]
    fn form_parsing_never_panics(body in prop_oneof![
        any::<Vec<u8>>(),
        "([a-z_%+=&]|%[0-9A-Fa-f]{2}|[^&=]){0,80}".prop_map(String::into_bytes),
    ]) {
        if Form::parse(&body).is_ok() {
            for (at, _) in body.iter().enumerate().filter(|(_, byte)| **byte == b'%') {
                let escape = body.get(at + 1..at + 3);
                prop_assert!(escape.is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)));
            }
            prop_assert!(Form::parse(&body).is_ok());
        }
    }

    /// Encoding distinct parameters (percent escapes, spaces as `+` or
    /// `%20`) and decoding gives them back; empty values read as absent;
    /// a repeated name is refused.
    #[test]
    fn form_round_trip(
        pairs in prop::collection::btree_map(printable(12).prop_filter("named", |n| !n.is_empty()), printable(24), 0..16),
        plus in any::<bool>(),
    ) {
        let body = pairs
            .iter()
            .map(|(name, value)| format!("{}={}", form_encode(name, plus), form_encode(value, plus)))
            .collect::<Vec<_>>()
            .join("&");
        let form = Form::parse(body.as_bytes()).expect("an encoded form parses");
        for (name, value) in &pairs {
            let expected = (!value.is_empty()).then_some(value.as_str());
            prop_assert_eq!(form.get(name), expected);
        }
        if let Some((name, value)) = pairs.iter().next() {
            let repeated = format!("{body}&{}={}", form_encode(name, plus), form_encode(value, plus));
            prop_assert_eq!(
                Form::parse(repeated.as_bytes()).err(),
                Some(FormError::Duplicate(name.clone()))
            );
        }
    }

    /// Any `Authorization` value is a token, a bare challenge or a 4xx
    /// problem, never a panic; an accepted token is the one in the header.
    #[test]
    fn authorization_parsing_never_panics(value in prop_oneof![
        any::<Vec<u8>>(),
        "(?i:bearer|basic)[ \t]{0,2}[ -~]{0,120}".prop_map(String::into_bytes),
    ]) {
        let Some(headers) = headers_with_authorization(&value) else {
            return Ok(());
        };
        match bearer_token(&headers) {
            Ok(token) => {
                let text = String::from_utf8_lossy(&value);
                prop_assert!(text.contains(token.expose_secret()));
            }
            Err(problem) => prop_assert!(problem.status().is_client_error()),
        }
        let form = Form::parse(b"").expect("empty form");
        if let Err(problem) = client_credentials(&headers, &form) {
            prop_assert!(problem.status().is_client_error());
        }
    }

    /// `Bearer <token>` with the scheme in any case gives the token back.
    #[test]
    fn bearer_round_trip(token in token(), scheme in "[bB][eE][aA][rR][eE][rR]", spaces in " {1,3}") {
        let header = format!("{scheme}{spaces}{}", token.expose_secret());
        let headers = headers_with_authorization(header.as_bytes()).expect("header");
        prop_assert_eq!(bearer_token(&headers).expect("a bearer token"), token);
    }

    /// HTTP Basic credentials (RFC 6749 §2.3.1: the id and secret
    /// form-encoded, then base64) decode to the id and secret given.
    #[test]
    fn basic_round_trip(
        client_id in printable(20).prop_filter("non-empty", |id| !id.is_empty()),
        secret in any::<String>(),
        plus in any::<bool>(),
        scheme in "[bB][aA][sS][iI][cC]",
    ) {
        let encoded = STANDARD.encode(format!(
            "{}:{}",
            form_encode(&client_id, plus),
            form_encode(&secret, plus)
        ));
        let headers = headers_with_authorization(format!("{scheme} {encoded}").as_bytes())
            .expect("header");
        let form = Form::parse(b"").expect("empty form");
        let ClientCredentials::Secret { client_id: id, secret: got, basic } =
            client_credentials(&headers, &form).expect("valid credentials")
        else {
            return Err(TestCaseError::fail("not read as a secret"));
        };
        prop_assert_eq!(id, client_id);
        prop_assert_eq!(got.as_str(), secret.as_str());
        prop_assert!(basic);
    }
}
