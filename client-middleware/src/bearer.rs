//! Finding the bearer token of a request (RFC 6750 §2.1), and nothing more:
//! whether the token is well formed and live is decided elsewhere.
//!
//! ```text
//! credentials = "Bearer" 1*SP b64token          ; scheme case-insensitive
//! b64token    = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
//! ```
//!
//! The `Authorization` header wins; a configured cookie is consulted only
//! when the request has no `Authorization: Bearer` credentials. Query and
//! form parameters (RFC 6750 §2.2, §2.3) are not supported: tokens in URLs
//! end up in logs.

use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE};

/// The request is malformed (RFC 6750 §3.1 `invalid_request`); the text
/// says why, without quoting the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) &'static str);

/// The bearer token the request carries: `Ok(None)` when it carries none (no
/// `Authorization` header, another scheme, no cookie), `Err` when it tries
/// and gets the syntax wrong or sends more than one.
pub(crate) fn find<'a>(
    headers: &'a HeaderMap,
    cookie: Option<&str>,
) -> Result<Option<&'a str>, Malformed> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let from_header = match (values.next(), values.next()) {
        (Some(_), Some(_)) => return Err(Malformed("more than one Authorization header")),
        (Some(value), None) => {
            let value = value
                .to_str()
                .map_err(|_| Malformed("the Authorization header is not visible ASCII"))?;
            parse_authorization(value)?
        }
        (None, _) => None,
    };
    match (from_header, cookie) {
        (Some(token), _) => Ok(Some(token)),
        (None, Some(name)) => find_cookie(headers, name),
        (None, None) => Ok(None),
    }
}

/// `Bearer <b64token>` → the token; another scheme → `None`.
fn parse_authorization(value: &str) -> Result<Option<&str>, Malformed> {
    let value = value.trim_matches([' ', '\t']);
    let (scheme, rest) = value.split_once([' ', '\t']).unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        // RFC 6750 §3.1: an unsupported method is "no authentication
        // information": answered with a bare challenge, not an error.
        return Ok(None);
    }
    let token = rest.trim_start_matches([' ', '\t']);
    if token.is_empty() {
        return Err(Malformed("the bearer token is empty"));
    }
    if token.contains([' ', '\t', ',']) {
        return Err(Malformed(
            "more than one credential in the Authorization header",
        ));
    }
    if !is_b64token(token) {
        return Err(Malformed("the bearer token is not a b64token"));
    }
    Ok(Some(token))
}

fn is_b64token(text: &str) -> bool {
    let body = text.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-._~+/".contains(&byte))
}

/// The value of the cookie `name`; empty values count as absent (a
/// signed-out browser often keeps an emptied cookie).
fn find_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, Malformed> {
    let mut found = None;
    for header in headers.get_all(COOKIE) {
        let Ok(header) = header.to_str() else {
            continue;
        };
        for pair in header.split(';') {
            let Some((key, value)) = pair.trim().split_once('=') else {
                continue;
            };
            if key.trim() != name {
                continue;
            }
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|inner| inner.strip_suffix('"'))
                .unwrap_or(value);
            if value.is_empty() {
                continue;
            }
            if found.is_some() {
                return Err(Malformed("more than one token cookie"));
            }
            found = Some(value);
        }
    }
    match found {
        Some(token) if !is_b64token(token) => Err(Malformed("the token cookie is not a b64token")),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        map
    }

    fn authorization(value: &str) -> Result<Option<String>, Malformed> {
        let map = headers(&[("authorization", value)]);
        find(&map, None).map(|found| found.map(str::to_owned))
    }

    /// The scheme is case-insensitive and any run of spaces separates it from
    /// the token (RFC 6750 §2.1 `1*SP`; RFC 7235 §2.1 schemes).
    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for value in [
            "Bearer abc.DEF-_~+/==",
            "bearer abc.DEF-_~+/==",
            "BEARER   abc.DEF-_~+/==",
            " Bearer abc.DEF-_~+/== ",
        ] {
            assert_eq!(
                authorization(value),
                Ok(Some("abc.DEF-_~+/==".to_owned())),
                "{value:?}"
            );
        }
    }

    /// Another scheme is "no bearer credentials", which RFC 6750 §3.1 answers
    /// without an error code.
    #[test]
    fn other_schemes_are_no_credentials() {
        assert_eq!(authorization("Basic dXNlcjpwYXNz"), Ok(None));
        assert_eq!(authorization("Bearertoken"), Ok(None));
        assert_eq!(find(&HeaderMap::new(), None), Ok(None));
    }

    /// Empty tokens, two credentials, two headers and characters outside
    /// b64token are malformed requests (RFC 6750 §3.1 `invalid_request`).
    #[test]
    fn malformed_credentials_are_invalid_requests() {
        for value in [
            "Bearer",
            "Bearer   ",
            "Bearer a b",
            "Bearer a,b",
            "Bearer a\"b",
            "Bearer ===",
            "Bearer tok=en",
        ] {
            assert!(authorization(value).is_err(), "{value:?} was accepted");
        }
        let two = headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert_eq!(
            find(&two, None),
            Err(Malformed("more than one Authorization header"))
        );
        let mut binary = HeaderMap::new();
        binary.insert(
            AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer \xffabc").expect("opaque bytes"),
        );
        assert!(find(&binary, None).is_err());
    }

    /// The cookie is read only when configured and only without bearer
    /// credentials in the header; duplicates are refused, empty values are
    /// absent.
    #[test]
    fn cookie_is_a_fallback() {
        let map = headers(&[("cookie", "theme=dark; session=\"tok-1\"; x=y")]);
        assert_eq!(find(&map, None), Ok(None), "cookie not configured");
        assert_eq!(find(&map, Some("session")), Ok(Some("tok-1")));
        assert_eq!(find(&map, Some("other")), Ok(None));

        let both = headers(&[
            ("authorization", "Bearer from-header"),
            ("cookie", "session=from-cookie"),
        ]);
        assert_eq!(find(&both, Some("session")), Ok(Some("from-header")));
        let basic = headers(&[
            ("authorization", "Basic dXNlcjpwYXNz"),
            ("cookie", "session=from-cookie"),
        ]);
        assert_eq!(find(&basic, Some("session")), Ok(Some("from-cookie")));

        let split = headers(&[("cookie", "session=a"), ("cookie", "session=b")]);
        assert!(find(&split, Some("session")).is_err());
        let emptied = headers(&[("cookie", "session=; theme=dark")]);
        assert_eq!(find(&emptied, Some("session")), Ok(None));
        let bad = headers(&[("cookie", "session=a b")]);
        assert!(find(&bad, Some("session")).is_err());
    }
}
