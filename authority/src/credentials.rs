//! Reading credentials out of requests: client credentials (HTTP Basic or
//! the body, RFC 6749 §2.3.1) and bearer tokens (RFC 6750 §2.1).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use percent_encoding::percent_decode_str;
use token_repository::Token;
use zeroize::Zeroizing;

use crate::form::Form;
use crate::problem::Problem;

/// Client credentials as presented.
pub enum ClientCredentials {
    /// None at all.
    None,
    /// A secret, by HTTP Basic (`basic`) or in the body.
    Secret {
        /// The client id.
        client_id: String,
        /// The secret.
        secret: Zeroizing<String>,
        /// Whether it came by HTTP Basic.
        basic: bool,
    },
    /// Only a `client_id` in the body (a public client naming itself).
    IdOnly(String),
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Secret {
                client_id, basic, ..
            } => f
                .debug_struct("Secret")
                .field("client_id", client_id)
                .field("basic", basic)
                .finish_non_exhaustive(),
            Self::IdOnly(id) => f.debug_tuple("IdOnly").field(id).finish(),
        }
    }
}

/// Reads client credentials from `Authorization: Basic` or the form.
///
/// # Errors
///
/// 400 `invalid_request` when both methods are used (RFC 6749 §2.3: one
/// method per request); 401 `invalid_client` for a malformed Basic header.
pub fn client_credentials(headers: &HeaderMap, form: &Form) -> Result<ClientCredentials, Problem> {
    let basic = match authorization(headers)? {
        Some((scheme, value)) if scheme.eq_ignore_ascii_case("basic") => Some(parse_basic(value)?),
        _ => None,
    };
    let body_id = form.get("client_id");
    let body_secret = form.get("client_secret");
    match (basic, body_id, body_secret) {
        (Some(_), _, Some(_)) => Err(Problem::invalid_request(
            "use one client authentication method: HTTP Basic or client_secret, not both",
        )),
        (Some((client_id, secret)), body_id, None) => {
            if body_id.is_some_and(|id| id != client_id) {
                return Err(Problem::invalid_request(
                    "client_id does not match the authenticated client",
                ));
            }
            Ok(ClientCredentials::Secret {
                client_id,
                secret,
                basic: true,
            })
        }
        (None, Some(client_id), Some(secret)) => Ok(ClientCredentials::Secret {
            client_id: client_id.to_owned(),
            secret: Zeroizing::new(secret.to_owned()),
            basic: false,
        }),
        (None, None, Some(_)) => Err(Problem::invalid_request("client_secret without client_id")),
        (None, Some(client_id), None) => Ok(ClientCredentials::IdOnly(client_id.to_owned())),
        (None, None, None) => Ok(ClientCredentials::None),
    }
}

/// The `Authorization` header split into scheme and the rest; `None` when
/// absent.
///
/// # Errors
///
/// 400 when the header is repeated or not visible ASCII.
fn authorization(headers: &HeaderMap) -> Result<Option<(&str, &str)>, Problem> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Problem::bearer_malformed(
            "more than one Authorization header",
        ));
    }
    let value = value
        .to_str()
        .map_err(|_| Problem::bearer_malformed("the Authorization header is not ASCII"))?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    Ok(Some((scheme, rest)))
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 §2.3.1).
fn parse_basic(value: &str) -> Result<(String, Zeroizing<String>), Problem> {
    let decoded = Zeroizing::new(
        STANDARD
            .decode(value.trim())
            .map_err(|_| Problem::invalid_client())?,
    );
    let text = std::str::from_utf8(&decoded).map_err(|_| Problem::invalid_client())?;
    // The first colon: a plain scan (client ids are short), not the
    // general searcher's set-up.
    let colon = text
        .bytes()
        .position(|byte| byte == b':')
        .ok_or_else(Problem::invalid_client)?;
    let (id, secret) = (&text[..colon], &text[colon + 1..]);
    let unescape = |part: &str| {
        let escaped = part.bytes().fold(false, |escaped, byte| {
            escaped | (byte == b'+') | (byte == b'%')
        });
        if !escaped {
            // Nothing escaped (generated ids and secrets): one copy.
            return Ok(part.to_owned());
        }
        // May hold the secret: the spaced copy is wiped too.
        let spaced = Zeroizing::new(part.replace('+', " "));
        percent_decode_str(&spaced)
            .decode_utf8()
            .map(std::borrow::Cow::into_owned)
            .map_err(|_| Problem::invalid_client())
    };
    let id = unescape(id)?;
    let secret = Zeroizing::new(unescape(secret)?);
    if id.is_empty() {
        return Err(Problem::invalid_client());
    }
    Ok((id, secret))
}

/// The bearer token of a request (RFC 6750 §2.1, the grammar of
/// [`token_bearer`]: `Bearer <b64token>`, scheme case-insensitive, spaces or
/// tabs, exactly one).
///
/// # Errors
///
/// 401 with a bare `Bearer realm` challenge when there are no bearer
/// credentials; 400 `invalid_request` for a malformed header; 401
/// `invalid_token` for a token that fails the local format and checksum
/// check.
pub fn bearer_token(headers: &HeaderMap) -> Result<Token, Problem> {
    match token_bearer::from_headers(headers) {
        Ok(Some(token)) => Token::parse(token).map_err(|_| Problem::invalid_token()),
        Ok(None) => Err(Problem::bearer_required()),
        Err(malformed) => Err(Problem::bearer_malformed(malformed.description())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            authorization.parse().expect("header"),
        );
        headers
    }

    /// Basic credentials are form-urlencoded inside the base64.
    #[test]
    fn basic_credentials() {
        let encoded = STANDARD.encode("my%20app:s%3Acret+x");
        let form = Form::parse(b"").expect("form");
        let ClientCredentials::Secret {
            client_id,
            secret,
            basic,
        } = client_credentials(&headers(&format!("basic {encoded}")), &form).expect("valid")
        else {
            panic!("expected a secret");
        };
        assert_eq!(client_id, "my app");
        assert_eq!(secret.as_str(), "s:cret x");
        assert!(basic);
    }

    /// One authentication method per request; mismatched ids refused.
    #[test]
    fn one_method_only() {
        let encoded = STANDARD.encode("app:secret");
        let both = Form::parse(b"client_secret=other").expect("form");
        let error = client_credentials(&headers(&format!("Basic {encoded}")), &both).unwrap_err();
        assert_eq!(error.code(), "invalid_request");
        let other_id = Form::parse(b"client_id=other").expect("form");
        let error =
            client_credentials(&headers(&format!("Basic {encoded}")), &other_id).unwrap_err();
        assert_eq!(error.code(), "invalid_request");
        let garbage = client_credentials(&headers("Basic !!!"), &Form::default()).unwrap_err();
        assert_eq!(garbage.code(), "invalid_client");
    }

    /// Bearer extraction per RFC 6750 §2.1.
    #[test]
    fn bearer() {
        assert_eq!(bearer_token(&HeaderMap::new()).unwrap_err().status(), 401);
        assert_eq!(
            bearer_token(&headers("Basic abc")).unwrap_err().status(),
            401
        );
        assert_eq!(bearer_token(&headers("Bearer")).unwrap_err().status(), 400);
        assert_eq!(
            bearer_token(&headers("Bearer a b")).unwrap_err().status(),
            400
        );
        let invalid = bearer_token(&headers("bearer tsa_garbage")).unwrap_err();
        assert_eq!(invalid.code(), "invalid_token");
        let token = Token::generate(
            token_repository::TokenKind::Access,
            &token_repository::SubjectTag::of("s"),
        )
        .expect("token");
        let parsed =
            bearer_token(&headers(&format!("BEARER {}", token.expose_secret()))).expect("valid");
        assert_eq!(parsed, token);
        // The grammar the middleware accepts too: tabs separate, and a
        // token outside the b64token syntax is a malformed request.
        let tabbed =
            bearer_token(&headers(&format!("Bearer\t{}", token.expose_secret()))).expect("valid");
        assert_eq!(tabbed, token);
        let quoted = bearer_token(&headers("Bearer tsa_\"x\"")).unwrap_err();
        assert_eq!(quoted.status(), 400);
        assert_eq!(quoted.code(), "invalid_request");
    }
}
