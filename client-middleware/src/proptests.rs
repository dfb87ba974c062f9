//! Property tests of the middleware's token finder: any `Authorization`
//! headers and cookies are a token, no credentials or `invalid_request`,
//! never a panic; a token cookie gives the token back. The header grammar's
//! own properties (`Bearer <b64token>` in any case and spacing round-trips,
//! two credentials are refused) are `token_bearer`'s.
//! Cases per property: `PROPTEST_CASES` (256 by default, what CI runs).

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;

use crate::bearer::find;

const COOKIE_NAME: &str = "session";

fn b64token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._~+/-]{1,80}={0,2}"
}

fn is_b64token(text: &str) -> bool {
    let body = text.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-._~+/".contains(&byte))
}

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<Vec<u8>>(),
        "(?i:bearer|basic|token)[ \t]{0,3}[ -~\t]{0,100}".prop_map(String::into_bytes),
    ]
}

proptest! {
    /// Any `Authorization` values (zero, one or two) and cookies: the
    /// parser answers, never panics; a token it returns is a b64token taken
    /// from the request.
    #[test]
    fn parsing_never_panics(
        authorization in prop::collection::vec(header_value(), 0..3),
        cookies in prop::collection::vec(header_value(), 0..3),
        use_cookie in any::<bool>(),
    ) {
        let mut headers = HeaderMap::new();
        for value in &authorization {
            if let Ok(value) = HeaderValue::from_bytes(value) {
                headers.append(AUTHORIZATION, value);
            }
        }
        for value in &cookies {
            if let Ok(value) = HeaderValue::from_bytes(value) {
                headers.append(COOKIE, value);
            }
        }
        let cookie = use_cookie.then_some(COOKIE_NAME);
        if let Ok(Some(token)) = find(&headers, cookie) {
            prop_assert!(is_b64token(token), "{token:?}");
            let sent = headers
                .iter()
                .any(|(_, value)| value.as_bytes().windows(token.len()).any(|w| w == token.as_bytes()));
            prop_assert!(sent);
        }
    }

    /// A token cookie (quoted or not, among other cookies) gives the token
    /// back when no `Authorization` header is sent.
    #[test]
    fn cookie_round_trip(
        token in b64token(),
        quoted in any::<bool>(),
        others in prop::collection::vec(("[a-z]{1,8}", "[A-Za-z0-9]{0,12}"), 0..4),
    ) {
        let value = if quoted { format!("\"{token}\"") } else { token.clone() };
        let mut pairs: Vec<String> = others
            .iter()
            .filter(|(name, _)| name != COOKIE_NAME)
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        pairs.insert(pairs.len() / 2, format!("{COOKIE_NAME}={value}"));
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(&pairs.join("; ")).expect("header"));
        prop_assert_eq!(find(&headers, Some(COOKIE_NAME)), Ok(Some(token.as_str())));
    }
}
