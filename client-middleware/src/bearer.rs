//! Finding the bearer token of a request, and nothing more: the
//! `Authorization` header by the RFC 6750 grammar of [`token_bearer`] (the
//! authority's too), or a configured cookie. Whether the token is well
//! formed and live is decided elsewhere.
//!
//! The `Authorization` header wins; a configured cookie is consulted only
//! when the request has no `Authorization: Bearer` credentials. Query and
//! form parameters (RFC 6750 §2.2, §2.3) are not supported: tokens in URLs
//! end up in logs.

use http::HeaderMap;
use http::header::COOKIE;
use token_bearer::is_b64token;

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
    let from_header =
        token_bearer::from_headers(headers).map_err(|why| Malformed(why.description()))?;
    match (from_header, cookie) {
        (Some(token), _) => Ok(Some(token)),
        (None, Some(name)) => find_cookie(headers, name),
        (None, None) => Ok(None),
    }
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
    use http::header::AUTHORIZATION;

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

    /// The header is read by `token_bearer`'s grammar (whose own tests
    /// cover it: schemes, spacing, tabs, b64token); its reasons reach the
    /// refusal unchanged.
    #[test]
    fn header_grammar_is_token_bearers() {
        assert_eq!(
            authorization("bearer\tabc.DEF-_~+/=="),
            Ok(Some("abc.DEF-_~+/==".to_owned()))
        );
        assert_eq!(authorization("Basic dXNlcjpwYXNz"), Ok(None));
        assert_eq!(
            authorization("Bearer a b"),
            Err(Malformed(
                "more than one credential in the Authorization header"
            ))
        );
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
