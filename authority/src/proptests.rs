//! Property tests of the authority's parsers of untrusted input: the form
//! decoder, the `Authorization` header (Bearer and Basic), the connect
//! `state`, and the provider-token envelope stored in Redis. (The admin
//! API's JSON bodies are in `api::admin`'s own property tests: their types
//! are private there.)
//!
//! Each: arbitrary input never panics, and a decode–encode round trip where
//! one exists. Cases per property: `PROPTEST_CASES` (256 by default, what
//! CI runs); the README's "Property tests" section gives the long run.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderValue};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use proptest::prelude::*;
use token_repository::{SubjectTag, Timestamp, Token, TokenKind};

use crate::connect::crypto::Keyring;
use crate::connect::record::{Connection, Stored};
use crate::connect::state::StateSigner;
use crate::credentials::{ClientCredentials, bearer_token, client_credentials};
use crate::form::{Form, FormError};

const KEYS: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

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

fn connection() -> impl Strategy<Value = Connection> {
    (
        any::<String>(),
        any::<String>(),
        any::<String>(),
        any::<Option<String>>(),
        any::<u64>(),
        any::<Option<String>>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(
                username,
                access_token,
                token_type,
                refresh_token,
                expires_at,
                scope,
                connected_at,
                refreshed_at,
            )| Connection {
                username,
                access_token,
                token_type,
                refresh_token,
                expires_at,
                scope,
                connected_at,
                refreshed_at,
                provider_subject: None,
            },
        )
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

    /// Any `state` is refused or verified, never a panic; only states this
    /// signer issued verify.
    #[test]
    fn state_verification_never_panics(state in prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_-]{0,200}\\.[A-Za-z0-9_-]{0,60}",
    ]) {
        let signer = StateSigner::new(&[42; 32], Duration::from_secs(600));
        prop_assert!(signer.verify(&state, Timestamp::now()).is_err());
    }

    /// Issued states verify to the claims they were issued with, for any
    /// subject, username and provider; a change to any one character of the
    /// state is refused.
    #[test]
    fn state_round_trip(
        subject in any::<String>(),
        username in any::<String>(),
        provider in any::<String>(),
        at in any::<prop::sample::Index>(),
        replacement in "[A-Za-z0-9_.-]",
    ) {
        let signer = StateSigner::new(&[42; 32], Duration::from_secs(600));
        let now = Timestamp::now();
        let issued = signer.issue(&subject, &username, &provider, now).expect("issue");
        let claims = signer.verify(&issued.state, now).expect("an issued state verifies");
        prop_assert_eq!(&claims.subject, &subject);
        prop_assert_eq!(&claims.username, &username);
        prop_assert_eq!(&claims.provider, &provider);
        prop_assert_eq!(
            StateSigner::challenge(&signer.verifier(&claims.nonce)),
            issued.code_challenge
        );
        let at = at.index(issued.state.len());
        prop_assume!(issued.state[at..=at] != replacement);
        let tampered = format!("{}{replacement}{}", &issued.state[..at], &issued.state[at + 1..]);
        prop_assert!(signer.verify(&tampered, now).is_err(), "{tampered} verified");
    }

    /// Any stored text is an envelope or refused, never a panic; an
    /// envelope that parses prints back to itself, and opening anything not
    /// sealed by this keyring fails.
    #[test]
    fn envelope_parsing_never_panics(
        text in prop_oneof![
            any::<String>(),
            (any::<String>(), "[a-z0-9]{0,4}", "[A-Za-z0-9+/]{0,40}", "[A-Za-z0-9+/]{0,120}")
                .prop_map(|(sub, kid, nonce, ct)| serde_json::json!({
                    "t": "sealed", "sub": sub, "kid": kid, "nonce": nonce, "ct": ct,
                }).to_string()),
            (any::<String>(), any::<String>(), any::<u64>())
                .prop_map(|(sub, reason, at)| serde_json::json!({
                    "t": "reconnect", "sub": sub, "reason": reason, "at": at,
                }).to_string()),
        ],
        provider in "[a-z]{1,8}",
    ) {
        let keys = Keyring::parse(KEYS, "CONNECT_KEYS").expect("keys");
        if let Ok(stored) = Stored::parse(&text) {
            prop_assert_eq!(&Stored::parse(&stored.to_text()).expect("reparse"), &stored);
            let subject = stored.subject().to_owned();
            prop_assert!(stored.open(&keys, &subject, &provider).is_err());
        }
    }

    /// Sealed connections open to the same connection for their subject
    /// and provider (through the stored text), and for no other; the text
    /// holds neither provider token.
    #[test]
    fn envelope_round_trip(
        connection in connection(),
        subject in any::<String>(),
        provider in "[a-z]{1,8}",
        other in "[a-z]{1,8}",
    ) {
        let keys = Keyring::parse(KEYS, "CONNECT_KEYS").expect("keys");
        let stored = Stored::seal(&keys, &subject, &provider, &connection).expect("seal");
        let text = stored.to_text();
        if connection.access_token.len() >= 8 {
            prop_assert!(!text.contains(&connection.access_token));
        }
        let parsed = Stored::parse(&text).expect("the stored text parses");
        let opened = parsed.open(&keys, &subject, &provider).expect("opens");
        prop_assert_eq!(&opened, &connection);
        prop_assume!(other != provider);
        prop_assert!(parsed.open(&keys, &subject, &other).is_err());
        let someone_else = format!("{subject}x");
        prop_assert!(parsed.open(&keys, &someone_else, &provider).is_err());
    }
}
