//! Property tests of the grammar and the challenge: any header is a token,
//! no credentials or a [`Malformed`] reason, never a panic; `Bearer
//! <b64token>` (scheme in any case, spaces or tabs) gives the token back;
//! any challenge is a valid header value whose realm reads back unchanged.
//! Cases per property: `PROPTEST_CASES` (256 by default, what CI runs).

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;

use crate::{Challenge, ErrorCode, Malformed, from_headers, is_b64token, parse_authorization};

fn b64token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._~+/-]{1,80}={0,2}"
}

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<Vec<u8>>(),
        "(?i:bearer|basic|token)[ \t]{0,3}[ -~\t]{0,100}".prop_map(String::into_bytes),
    ]
}

/// The realm inside `Bearer realm="…"`, unescaped, and what follows its
/// closing quote.
fn realm_of(challenge: &str) -> Option<(String, &str)> {
    let quoted = challenge.strip_prefix("Bearer realm=\"")?;
    let mut chars = quoted.char_indices();
    let mut realm = String::new();
    while let Some((at, c)) = chars.next() {
        match c {
            '\\' => realm.push(chars.next()?.1),
            '"' => return Some((realm, &quoted[at + 1..])),
            c => realm.push(c),
        }
    }
    None
}

proptest! {
    /// Any `Authorization` values (zero, one or two): an answer, never a
    /// panic; a token it returns is a b64token taken from the header.
    #[test]
    fn parsing_never_panics(values in prop::collection::vec(header_value(), 0..3)) {
        let mut headers = HeaderMap::new();
        for value in &values {
            if let Ok(value) = HeaderValue::from_bytes(value) {
                headers.append(AUTHORIZATION, value);
            }
        }
        match from_headers(&headers) {
            Ok(Some(token)) => {
                prop_assert!(is_b64token(token), "{token:?}");
                let sent = headers.iter().any(|(_, value)| {
                    value.as_bytes().windows(token.len()).any(|w| w == token.as_bytes())
                });
                prop_assert!(sent);
            }
            Ok(None) => {}
            Err(why) => prop_assert!(!why.description().is_empty()),
        }
    }

    /// `Bearer <b64token>` with the scheme in any case and spaces or tabs
    /// around gives the token back.
    #[test]
    fn bearer_round_trip(
        token in b64token(),
        scheme in "[bB][eE][aA][rR][eE][rR]",
        before in "[ \t]{0,2}",
        between in "[ \t]{1,3}",
        after in "[ \t]{0,2}",
    ) {
        let value = format!("{before}{scheme}{between}{token}{after}");
        prop_assert_eq!(parse_authorization(&value), Ok(Some(token.as_str())));
    }

    /// Two credentials in one header are refused, not one of them taken.
    #[test]
    fn two_credentials_are_refused(first in b64token(), second in b64token(), sep in "[ ,\t]{1,2}") {
        let value = format!("Bearer {first}{sep}{second}");
        prop_assert_eq!(parse_authorization(&value), Err(Malformed::SeveralCredentials));
    }

    /// Any realm, description and scope make a valid header value; a
    /// printable ASCII realm reads back unchanged, and nothing the values
    /// hold adds a parameter.
    #[test]
    fn challenges_are_valid_headers(
        realm in any::<String>(),
        printable in "[ -~]{0,40}",
        description in any::<String>(),
        scope in "[ -~]{0,40}",
    ) {
        for realm in [realm.as_str(), printable.as_str()] {
            let challenge = Challenge::new(realm)
                .error(ErrorCode::InsufficientScope)
                .description(&description)
                .scope(&scope);
            let text = challenge.to_string();
            prop_assert!(HeaderValue::from_str(&text).is_ok(), "{text:?}");
            let value = challenge.to_header_value();
            prop_assert_eq!(value.as_bytes(), text.as_bytes());
            let (read, rest) = realm_of(&text).expect("a quoted realm");
            if realm.bytes().all(|byte| (0x20..0x7f).contains(&byte)) {
                prop_assert_eq!(read.as_str(), realm);
            }
            prop_assert!(rest.starts_with(", error=\"insufficient_scope\""), "{}", rest);
            prop_assert_eq!(rest.matches('"').count(), 6, "{}", rest);
        }
    }

    /// The one-pass classifier agrees with the grammar read literally, for
    /// any text (mostly near-tokens: token characters, `=`, separators and
    /// a few others in any order).
    #[test]
    fn the_classifier_is_the_grammar(text in "[A-Za-z0-9._~+/=, \t\"!é-]{0,24}") {
        let literal = |text: &str| {
            let body = text.trim_end_matches('=');
            !body.is_empty()
                && body
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"-._~+/".contains(&byte))
        };
        prop_assert_eq!(is_b64token(&text), literal(&text), "{:?}", text);
        let token = text.trim_matches([' ', '\t']);
        let expected = if token.is_empty() {
            Err(Malformed::EmptyToken)
        } else if token.contains([' ', '\t', ',']) {
            Err(Malformed::SeveralCredentials)
        } else if literal(token) {
            Ok(Some(token))
        } else {
            Err(Malformed::NotB64Token)
        };
        let value = format!("Bearer {text}");
        prop_assert_eq!(parse_authorization(&value), expected, "{:?}", text);
    }
}
