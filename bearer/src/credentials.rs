//! The bearer token of a request's `Authorization` header (RFC 6750 §2.1),
//! and nothing more: whether the token is well formed for the token service
//! and live is decided elsewhere.
//!
//! ```text
//! credentials = "Bearer" 1*( SP / HTAB ) b64token   ; scheme case-insensitive
//! b64token    = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
//! ```
//!
//! Optional whitespace (spaces and tabs, RFC 7230 `OWS`) around the value is
//! ignored, and tabs separate the scheme from the token as spaces do. Query
//! and form parameters (RFC 6750 §2.2, §2.3) are not supported: tokens in
//! URLs end up in logs.

use http::HeaderMap;
use http::header::AUTHORIZATION;

/// Why an `Authorization` header is a malformed request (RFC 6750 §3.1
/// `invalid_request`). The text never quotes the request, so a token is
/// never echoed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Malformed {
    /// The request has several `Authorization` headers.
    #[error("{}", self.description())]
    RepeatedHeader,
    /// The header holds bytes that are not visible ASCII.
    #[error("{}", self.description())]
    NotVisibleAscii,
    /// `Bearer` without a token.
    #[error("{}", self.description())]
    EmptyToken,
    /// More than one credential after `Bearer` (a space or comma inside).
    #[error("{}", self.description())]
    SeveralCredentials,
    /// The token holds characters outside the `b64token` syntax.
    #[error("{}", self.description())]
    NotB64Token,
}

impl Malformed {
    /// The `error_description` of the refusal: what is wrong, in a few
    /// words that a challenge can carry.
    #[must_use]
    pub const fn description(self) -> &'static str {
        match self {
            Self::RepeatedHeader => "more than one Authorization header",
            Self::NotVisibleAscii => "the Authorization header is not visible ASCII",
            Self::EmptyToken => "the bearer token is empty",
            Self::SeveralCredentials => "more than one credential in the Authorization header",
            Self::NotB64Token => "the bearer token is not a b64token",
        }
    }
}

/// The bearer token of the request: `Ok(None)` when it carries none (no
/// `Authorization` header, or another scheme: RFC 6750 §3.1 answers those
/// with a bare challenge), `Err` when it tries and gets the syntax wrong or
/// sends more than one header.
///
/// # Errors
///
/// [`Malformed`], for a `400 invalid_request`.
pub fn from_headers(headers: &HeaderMap) -> Result<Option<&str>, Malformed> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(_), Some(_)) => Err(Malformed::RepeatedHeader),
        (Some(value), None) => {
            let value = value.to_str().map_err(|_| Malformed::NotVisibleAscii)?;
            parse_authorization(value)
        }
    }
}

/// One `Authorization` value: `Bearer <b64token>` gives the token; another
/// scheme gives `None`.
///
/// # Errors
///
/// [`Malformed`] for a `Bearer` value without exactly one `b64token`.
pub fn parse_authorization(value: &str) -> Result<Option<&str>, Malformed> {
    const WHITESPACE: [char; 2] = [' ', '\t'];
    let value = value.trim_matches(WHITESPACE);
    let (scheme, rest) = value.split_once(WHITESPACE).unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = rest.trim_start_matches(WHITESPACE);
    match classify(token) {
        Shape::Empty => Err(Malformed::EmptyToken),
        Shape::Several => Err(Malformed::SeveralCredentials),
        Shape::NotB64Token => Err(Malformed::NotB64Token),
        Shape::B64Token => Ok(Some(token)),
    }
}

/// Whether `text` is a `b64token`: at least one of `A–Z a–z 0–9 - . _ ~ + /`,
/// then any number of `=`.
#[must_use]
pub fn is_b64token(text: &str) -> bool {
    classify(text) == Shape::B64Token
}

/// What the text after `Bearer` is, in the order a refusal names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Empty,
    /// A space, tab or comma inside: several credentials, whatever else.
    Several,
    NotB64Token,
    B64Token,
}

/// The class of each byte for [`classify`], as bits to OR together.
const TOKEN_CHAR: u8 = 1;
const PADDING: u8 = 2;
const SEPARATOR: u8 = 4;
const OTHER: u8 = 8;

/// [`TOKEN_CHAR`], [`PADDING`], [`SEPARATOR`] or [`OTHER`] for every byte.
static CLASSES: [u8; 256] = {
    let mut classes = [OTHER; 256];
    let mut byte: u8 = 0;
    loop {
        classes[byte as usize] = match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'+' | b'/' => {
                TOKEN_CHAR
            }
            b'=' => PADDING,
            b' ' | b'\t' | b',' => SEPARATOR,
            _ => OTHER,
        };
        if byte == u8::MAX {
            break classes;
        }
        byte += 1;
    }
};

/// One pass over the bytes without a branch per byte (this runs on every
/// authenticated request): the classes of the body (what precedes the
/// trailing `=`) ORed together must be token characters only.
fn classify(text: &str) -> Shape {
    if text.is_empty() {
        return Shape::Empty;
    }
    let bytes = text.as_bytes();
    let body_len = bytes.len() - bytes.iter().rev().take_while(|&&b| b == b'=').count();
    let body = bytes[..body_len]
        .iter()
        .fold(0, |seen, &byte| seen | CLASSES[usize::from(byte)]);
    if body & SEPARATOR != 0 {
        Shape::Several
    } else if body == TOKEN_CHAR {
        Shape::B64Token
    } else {
        // Empty before the `=`, an `=` inside, or a character outside the set.
        Shape::NotB64Token
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn authorization(value: &str) -> Result<Option<&str>, Malformed> {
        parse_authorization(value)
    }

    /// The scheme is case-insensitive, and any run of spaces or tabs
    /// separates it from the token (RFC 7235 §2.1; RFC 7230 `OWS`).
    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for value in [
            "Bearer abc.DEF-_~+/==",
            "bearer abc.DEF-_~+/==",
            "BEARER   abc.DEF-_~+/==",
            " Bearer abc.DEF-_~+/== ",
            "Bearer\tabc.DEF-_~+/==",
            "\tbearer \t abc.DEF-_~+/==\t",
        ] {
            assert_eq!(
                authorization(value),
                Ok(Some("abc.DEF-_~+/==")),
                "{value:?}"
            );
        }
    }

    /// Another scheme is "no bearer credentials", which RFC 6750 §3.1
    /// answers without an error code.
    #[test]
    fn other_schemes_are_no_credentials() {
        assert_eq!(authorization("Basic dXNlcjpwYXNz"), Ok(None));
        assert_eq!(authorization("Bearertoken"), Ok(None));
        assert_eq!(authorization(""), Ok(None));
        assert_eq!(from_headers(&HeaderMap::new()), Ok(None));
    }

    /// Empty tokens, two credentials and characters outside b64token are
    /// malformed requests, each with its own reason.
    #[test]
    fn malformed_credentials_are_invalid_requests() {
        for (value, why) in [
            ("Bearer", Malformed::EmptyToken),
            ("Bearer   ", Malformed::EmptyToken),
            ("Bearer\t", Malformed::EmptyToken),
            ("Bearer a b", Malformed::SeveralCredentials),
            ("Bearer a\tb", Malformed::SeveralCredentials),
            ("Bearer a,b", Malformed::SeveralCredentials),
            ("Bearer a\"b", Malformed::NotB64Token),
            ("Bearer ===", Malformed::NotB64Token),
            ("Bearer tok=en", Malformed::NotB64Token),
        ] {
            assert_eq!(authorization(value), Err(why), "{value:?}");
        }
    }

    /// Two headers, and bytes that are not visible ASCII, are refused at
    /// the header level.
    #[test]
    fn header_level_errors() {
        let mut two = HeaderMap::new();
        two.append(AUTHORIZATION, HeaderValue::from_static("Bearer a"));
        two.append(AUTHORIZATION, HeaderValue::from_static("Bearer b"));
        assert_eq!(from_headers(&two), Err(Malformed::RepeatedHeader));
        let mut binary = HeaderMap::new();
        binary.insert(
            AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer \xffabc").expect("opaque bytes"),
        );
        assert_eq!(from_headers(&binary), Err(Malformed::NotVisibleAscii));
    }

    /// The error's text is its description, which never holds a quote or
    /// a backslash (a challenge carries it as is).
    #[test]
    fn descriptions_are_plain() {
        for why in [
            Malformed::RepeatedHeader,
            Malformed::NotVisibleAscii,
            Malformed::EmptyToken,
            Malformed::SeveralCredentials,
            Malformed::NotB64Token,
        ] {
            assert_eq!(why.to_string(), why.description());
            assert!(!why.description().contains(['"', '\\']));
        }
    }

    /// b64token: a body of the allowed characters, then padding only.
    #[test]
    fn b64token_syntax() {
        assert!(is_b64token("a"));
        assert!(is_b64token("tsa_AbC-9.~+/=="));
        assert!(!is_b64token(""));
        assert!(!is_b64token("=="));
        assert!(!is_b64token("a=b"));
        assert!(!is_b64token("a b"));
        assert!(!is_b64token("é"));
    }
}
