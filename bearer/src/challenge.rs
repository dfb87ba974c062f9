//! The `WWW-Authenticate` challenge of the Bearer scheme (RFC 6750 §3):
//!
//! ```text
//! Bearer realm="…"[, error="…"][, error_description="…"][, scope="…"]
//! ```
//!
//! Every value is a quoted string. The realm may hold any printable ASCII:
//! `"` and `\` are escaped. `error_description` and `scope` are restricted by
//! RFC 6750 §3 to printable ASCII without `"` and `\` (scope tokens are
//! RFC 6749 `NQCHAR`s anyway). A character a value may not carry is written
//! as `?`, so the challenge is always a valid header value and a value can
//! never inject parameters.

use std::fmt::{self, Write as _};

use http::{HeaderValue, StatusCode};

/// The error codes of RFC 6750 §3.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request is malformed: 400.
    InvalidRequest,
    /// The token is expired, revoked, malformed or invalid: 401.
    InvalidToken,
    /// The token lacks the scope the resource needs: 403.
    InsufficientScope,
}

impl ErrorCode {
    /// The code as written in the challenge (and in an RFC 6749 §5.2 body).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
        }
    }

    /// The HTTP status RFC 6750 §3.1 gives the code.
    #[must_use]
    pub const fn status(self) -> StatusCode {
        match self {
            Self::InvalidRequest => StatusCode::BAD_REQUEST,
            Self::InvalidToken => StatusCode::UNAUTHORIZED,
            Self::InsufficientScope => StatusCode::FORBIDDEN,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Bearer challenge: the realm, and what went wrong. Its `Display` is the
/// header's value; [`Challenge::to_header_value`] makes the header.
///
/// Without an error code it is the bare challenge RFC 6750 §3.1 asks for a
/// request that carried no credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Challenge<'a> {
    realm: &'a str,
    error: Option<ErrorCode>,
    description: Option<&'a str>,
    scope: Option<&'a str>,
}

impl<'a> Challenge<'a> {
    /// The bare challenge of `realm`.
    pub const fn new(realm: &'a str) -> Self {
        Self {
            realm,
            error: None,
            description: None,
            scope: None,
        }
    }

    /// With the error code `code`.
    pub const fn error(mut self, code: ErrorCode) -> Self {
        self.error = Some(code);
        self
    }

    /// With an `error_description`: human-readable, never a secret.
    pub const fn description(mut self, description: &'a str) -> Self {
        self.description = Some(description);
        self
    }

    /// With the `scope` the resource needs (space-delimited scope tokens).
    pub const fn scope(mut self, scope: &'a str) -> Self {
        self.scope = Some(scope);
        self
    }

    /// The `WWW-Authenticate` header value.
    #[must_use]
    pub fn to_header_value(&self) -> HeaderValue {
        // Every character written is printable ASCII (see the module docs),
        // so the conversion cannot fail; the bare scheme is a safe fallback.
        HeaderValue::try_from(self.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }
}

impl fmt::Display for Challenge<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Bearer realm=\"")?;
        escaped(f, self.realm)?;
        f.write_char('"')?;
        if let Some(code) = self.error {
            write!(f, ", error=\"{code}\"")?;
        }
        if let Some(description) = self.description {
            f.write_str(", error_description=\"")?;
            restricted(f, description)?;
            f.write_char('"')?;
        }
        if let Some(scope) = self.scope {
            f.write_str(", scope=\"")?;
            restricted(f, scope)?;
            f.write_char('"')?;
        }
        Ok(())
    }
}

/// A quoted string's content: printable ASCII, `"` and `\` escaped.
fn escaped(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                f.write_char('\\')?;
                f.write_char(c)?;
            }
            ' '..='~' => f.write_char(c)?,
            _ => f.write_char('?')?,
        }
    }
    Ok(())
}

/// RFC 6750 §3's `error_description` / `scope` characters: printable ASCII
/// without `"` and `\`.
fn restricted(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    for c in text.chars() {
        match c {
            '"' | '\\' => f.write_char('?')?,
            ' '..='~' => f.write_char(c)?,
            _ => f.write_char('?')?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each RFC 6750 §3.1 case, as both crates answer it.
    #[test]
    fn rfc_6750_challenges() {
        assert_eq!(
            Challenge::new("example").to_string(),
            r#"Bearer realm="example""#
        );
        assert_eq!(
            Challenge::new("example")
                .error(ErrorCode::InvalidRequest)
                .description("the bearer token is empty")
                .to_string(),
            r#"Bearer realm="example", error="invalid_request", error_description="the bearer token is empty""#
        );
        assert_eq!(
            Challenge::new("example")
                .error(ErrorCode::InsufficientScope)
                .description("needs admin")
                .scope("admin ops")
                .to_string(),
            r#"Bearer realm="example", error="insufficient_scope", error_description="needs admin", scope="admin ops""#
        );
        assert_eq!(
            Challenge::new("example")
                .error(ErrorCode::InsufficientScope)
                .scope("admin")
                .to_string(),
            r#"Bearer realm="example", error="insufficient_scope", scope="admin""#
        );
    }

    /// Quotes and backslashes in the realm are escaped, so the realm cannot
    /// inject parameters; in a description they are replaced.
    #[test]
    fn values_cannot_inject_parameters() {
        let challenge = Challenge::new(r#"a"b\c"#)
            .error(ErrorCode::InvalidToken)
            .description(r#"x", scope="all"#);
        assert_eq!(
            challenge.to_string(),
            r#"Bearer realm="a\"b\\c", error="invalid_token", error_description="x?, scope=?all""#
        );
    }

    /// Characters a header cannot carry become `?`: the header value is
    /// always valid.
    #[test]
    fn header_value_is_always_valid() {
        let challenge = Challenge::new("caf\u{e9}\r\n").description("tab\there\u{7f}");
        let value = challenge.to_header_value();
        assert_eq!(
            value.to_str().expect("visible ASCII"),
            r#"Bearer realm="caf???", error_description="tab?here?""#
        );
    }

    /// Codes, their wire names and statuses.
    #[test]
    fn error_codes() {
        assert_eq!(ErrorCode::InvalidRequest.to_string(), "invalid_request");
        assert_eq!(ErrorCode::InvalidToken.as_str(), "invalid_token");
        assert_eq!(ErrorCode::InsufficientScope.as_str(), "insufficient_scope");
        assert_eq!(ErrorCode::InvalidRequest.status(), StatusCode::BAD_REQUEST);
        assert_eq!(ErrorCode::InvalidToken.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(ErrorCode::InsufficientScope.status(), StatusCode::FORBIDDEN);
    }
}
