//! The authority's own pages: sign-in, consent, the account page, and the
//! browser session they share.
//!
//! Pages are server-rendered HTML built with [`escape`]d strings: no
//! JavaScript, no external assets, one inline style sheet. Every
//! state-changing form is a POST carrying a CSRF token ([`csrf_token`]).
//!
//! # The browser session
//!
//! Signing in issues a token of the user in the repository: a
//! refresh-kind token for the reserved client [`BROWSER_CLIENT`], with no
//! scopes and the lifetime `BROWSER_SESSION_TTL`. Its text is the session
//! cookie (HttpOnly, SameSite=Lax; `__Host-` and Secure when the issuer is
//! https or a loopback address); Redis holds its digest only. Because it is
//! a token of the user, it is listed in `/v1/sessions` (kind `browser`),
//! ended by sign-out-everywhere and by every account change. The tokens an
//! application gets through this browser session (the authorization code
//! flow) are a session of their own (the repository keeps one token pair
//! per session), so signing the browser out (`POST /logout`, or signing out
//! that session on the account page) ends the browser session only; the
//! application's session is listed beside it and ends with
//! sign-out-everywhere, its own sign-out, a replayed code or a reused
//! refresh token. It cannot be used as
//! a bearer token (wrong kind) nor refreshed (no client can authenticate
//! as `#browser`).
//!
//! # Layout
//!
//! - [`signin`]: `GET` / `POST /signin`, `POST /logout`.
//! - [`federated`]: sign-in with an external identity provider.
//! - [`account`]: `/account` and its forms.
//! - [`login`]: the password check shared with the password grant's rules.

pub mod account;
mod credentials;
pub mod federated;
pub mod login;
pub mod signin;
mod when;

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit as _, Mac as _};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use subtle::ConstantTimeEq as _;
use token_repository::{Token, TokenKind, TokenReader as _, TokenRecord};
use warp::reply::Response;

use crate::problem::Problem;
use crate::state::AppState;

/// The reserved client id of browser sessions (not a valid client id, so
/// no registered client can ever be it).
pub const BROWSER_CLIENT: &str = "#browser";

/// Escapes text for HTML element content and double-quoted attributes.
#[must_use]
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "\
*{box-sizing:border-box}\
body{font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}\
main{max-width:34rem;margin:0 auto;padding:1.5rem 1rem}\
h1{font-size:1.5rem;margin:.5rem 0 1rem}h2{font-size:1.15rem;margin:1.5rem 0 .5rem}\
section,form.card{background:#fff;border:1px solid #d9dce3;border-radius:.5rem;padding:1rem;margin:0 0 1rem}\
label{display:block;font-weight:600;margin:.75rem 0 .25rem}\
input[type=text],input[type=password],input[type=email]{width:100%;padding:.6rem;font-size:1rem;border:1px solid #9aa1ae;border-radius:.35rem}\
input:focus,button:focus{outline:3px solid #7aa7ff;outline-offset:1px}\
button{font-size:1rem;padding:.55rem 1rem;border-radius:.35rem;border:1px solid #1f4fd1;background:#2357e6;color:#fff;cursor:pointer;margin-top:.75rem}\
button.secondary{background:#fff;color:#1f4fd1}button.danger{background:#fff;color:#b3261e;border-color:#b3261e}\
.error{background:#fdecea;border:1px solid #f5c2bd;color:#8c1d18;padding:.75rem;border-radius:.35rem}\
.notice{background:#e8f3ec;border:1px solid #b7dec5;color:#1e5631;padding:.75rem;border-radius:.35rem}\
ul.plain{list-style:none;padding:0;margin:0}ul.plain li{padding:.6rem 0;border-top:1px solid #eceef2}ul.plain li:first-child{border-top:0}\
.muted{color:#5b6373;font-size:.9rem}.row{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center;justify-content:space-between}\
.inline{display:inline;margin:0}code{word-break:break-all}\
a.provider{display:block;text-align:center;text-decoration:none;font-size:1rem;padding:.55rem 1rem;border-radius:.35rem;border:1px solid #1f4fd1;color:#1f4fd1;background:#fff;margin-top:.75rem}\
a.provider:focus{outline:3px solid #7aa7ff;outline-offset:1px}\
header.bar{display:flex;justify-content:space-between;align-items:center;flex-wrap:wrap;gap:.5rem}";

/// A whole HTML page around `body` (already escaped HTML).
#[must_use]
pub fn page(title: &str, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + STYLE.len() + 400);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{title}</title><style>{STYLE}</style></head>\
         <body><main>{body}</main></body></html>\n",
        title = escape(title),
    );
    out
}

/// An HTML response: never cached, never framed, no scripts.
#[must_use]
pub fn html(status: StatusCode, document: String) -> Response {
    let mut response = Response::new(document.into());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' https: data:; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    response
}

/// An error page with `status`: a title and one explanatory sentence.
#[must_use]
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    html(
        status,
        page(
            title,
            &format!(
                "<h1>{}</h1><p class=\"error\" role=\"alert\">{}</p>",
                escape(title),
                escape(message)
            ),
        ),
    )
}

/// The page for a [`Problem`] met while serving a page (503 for an
/// unreachable Redis, with `Retry-After`), after
/// [reporting](Problem::report) its cause: the HTML counterpart of
/// [`Problem::into_response`].
#[must_use]
pub fn problem_page(problem: &Problem) -> Response {
    problem.report();
    let status = problem.status();
    let mut response = if status == StatusCode::SERVICE_UNAVAILABLE {
        error_page(
            status,
            "Temporarily unavailable",
            "The service cannot answer right now. Please try again in a moment.",
        )
    } else if status.is_server_error() {
        error_page(
            status,
            "Something went wrong",
            "The request could not be completed.",
        )
    } else {
        error_page(status, "Request refused", problem.description())
    };
    if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    response
}

/// A 303 to `location` (a path of this server or an absolute URL).
#[must_use]
pub fn see_other(location: &str) -> Response {
    let mut response = Response::new(Vec::<u8>::new().into());
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// How cookies are named and flagged for this issuer.
#[derive(Debug, Clone, Copy)]
pub struct CookiePolicy {
    /// `Secure` and the `__Host-` prefix: the issuer is https, or a
    /// loopback address (which browsers treat as a secure context).
    pub secure: bool,
}

impl CookiePolicy {
    /// The policy for `issuer`.
    #[must_use]
    pub fn for_issuer(issuer: &str) -> Self {
        let secure = issuer.starts_with("https://")
            || ["http://127.0.0.1", "http://localhost", "http://[::1]"]
                .iter()
                .any(|prefix| {
                    issuer
                        .strip_prefix(prefix)
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
                });
        Self { secure }
    }

    /// The session cookie's name.
    #[must_use]
    pub fn session_name(self) -> &'static str {
        if self.secure {
            "__Host-ts_session"
        } else {
            "ts_session"
        }
    }

    /// The sign-in form's CSRF cookie's name.
    #[must_use]
    pub fn signin_name(self) -> &'static str {
        if self.secure {
            "__Host-ts_signin"
        } else {
            "ts_signin"
        }
    }

    /// The cookie binding a sign-in with a provider to this browser.
    #[must_use]
    pub fn federated_name(self) -> &'static str {
        if self.secure {
            "__Host-ts_federated"
        } else {
            "ts_federated"
        }
    }

    /// A `Set-Cookie` value for `name=value` living `max_age` seconds
    /// (0: delete it).
    #[must_use]
    pub fn set(self, name: &str, value: &str, max_age: u64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
        ))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// The value of cookie `name` in the request, if sent once. A cookie sent
/// twice (another path or a non-prefixed twin) counts as absent.
#[must_use]
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut found = None;
    for value in headers.get_all(header::COOKIE) {
        let Ok(text) = value.to_str() else {
            continue;
        };
        for pair in text.split(';') {
            if let Some((key, value)) = pair.trim().split_once('=')
                && key == name
            {
                if found.is_some() {
                    return None;
                }
                found = Some(value);
            }
        }
    }
    found
}

/// A signed-in browser: its session token and record.
#[derive(Debug, Clone)]
pub struct BrowserSession {
    /// The session token (the cookie's value).
    pub token: Token,
    /// Its record: subject, username, family, expiry.
    pub record: TokenRecord,
}

impl BrowserSession {
    /// The CSRF token of this session's forms: an HMAC of a fixed label
    /// under the session token, so it needs no storage, differs per session
    /// and cannot be made without the (HttpOnly) cookie.
    #[must_use]
    pub fn csrf_token(&self) -> String {
        csrf_token(self.token.expose_secret(), "session")
    }

    /// What a flow started from this session is bound to: the base64url
    /// SHA-256 of the session token (what Redis keys it by; not the
    /// token).
    #[must_use]
    pub fn binding(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.token.digest().as_bytes())
    }

    /// Whether `presented` is this session's CSRF token (constant time).
    #[must_use]
    pub fn csrf_ok(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|presented| {
            bool::from(presented.as_bytes().ct_eq(self.csrf_token().as_bytes()))
        })
    }
}

/// `base64url(HMAC-SHA256(secret, label))`.
#[must_use]
pub fn csrf_token(secret: &str, label: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(label.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// The browser session the request's cookie names, if live.
///
/// # Errors
///
/// The store's failure (fail closed: the caller shows 503).
pub async fn session(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<BrowserSession>, Problem> {
    let policy = CookiePolicy::for_issuer(state.issuer());
    let Some(value) = cookie(headers, policy.session_name()) else {
        return Ok(None);
    };
    let Ok(token) = Token::parse(value) else {
        return Ok(None);
    };
    if token.kind() != TokenKind::Refresh {
        return Ok(None);
    }
    let record = state.store().lookup(&token).await?;
    Ok(record
        .filter(|record| record.holder.client_id.as_deref() == Some(BROWSER_CLIENT))
        .map(|record| BrowserSession { token, record }))
}

/// 256 random bits from the OS generator, base64url (43 characters).
///
/// # Errors
///
/// 500 when the generator fails (nothing is issued then).
pub fn random_secret() -> Result<String, Problem> {
    use rand::TryRng as _;
    let mut bytes = zeroize::Zeroizing::new([0_u8; 32]);
    rand::rngs::SysRng
        .try_fill_bytes(&mut bytes[..])
        .map_err(|error| Problem::internal(&error))?;
    Ok(URL_SAFE_NO_PAD.encode(&bytes[..]))
}

/// Whether `target` is a path of this server that a sign-in may return to:
/// absolute path, not `//host` or `/\host`, no control characters.
#[must_use]
pub fn local_path(target: &str) -> bool {
    target.starts_with('/')
        && !target.starts_with("//")
        && !target.starts_with("/\\")
        && target.len() <= 8192
        && !target.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// Percent-encodes `text` for a query component (everything but
/// unreserved characters).
#[must_use]
pub fn query_encode(text: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(text, SET).to_string()
}

/// A hidden form field.
#[must_use]
pub fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        escape(name),
        escape(value)
    )
}

/// A small POST form with a CSRF token, hidden fields and one button.
#[must_use]
pub fn button_form(
    action: &str,
    csrf: &str,
    fields: &[(&str, &str)],
    label: &str,
    class: &str,
) -> String {
    let mut out = format!(
        "<form class=\"inline\" method=\"post\" action=\"{}\">{}",
        escape(action),
        hidden("csrf", csrf)
    );
    for (name, value) in fields {
        out.push_str(&hidden(name, value));
    }
    let _ = write!(
        out,
        "<button type=\"submit\" class=\"{}\">{}</button></form>",
        escape(class),
        escape(label)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything that could end an element or an attribute is escaped.
    #[test]
    fn escaping() {
        assert_eq!(
            escape(r#"<script>alert("x") & 'y'</script>"#),
            "&lt;script&gt;alert(&quot;x&quot;) &amp; &#39;y&#39;&lt;/script&gt;"
        );
        assert_eq!(escape("plain ü"), "plain ü");
        let document = page("<t>", "<p>ok</p>");
        assert!(document.contains("<title>&lt;t&gt;</title>"));
        assert!(!document.contains("<script"));
    }

    /// Only local paths are return targets.
    #[test]
    fn return_targets() {
        assert!(local_path("/account"));
        assert!(local_path("/oauth/authorize?client_id=a&state=b"));
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "account",
            "/a b",
            "/a\nb",
        ] {
            assert!(!local_path(bad), "{bad}");
        }
    }

    /// Cookies: found by exact name, absent when sent twice.
    #[test]
    fn cookies() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-ts_session=v; b=2"),
        );
        assert_eq!(cookie(&headers, "__Host-ts_session"), Some("v"));
        assert_eq!(cookie(&headers, "ts_session"), None);
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("__Host-ts_session=w"),
        );
        assert_eq!(cookie(&headers, "__Host-ts_session"), None);
    }

    /// `__Host-` and Secure on https and loopback issuers only.
    #[test]
    fn cookie_policy() {
        assert!(CookiePolicy::for_issuer("https://auth.example.org").secure);
        assert!(CookiePolicy::for_issuer("http://127.0.0.1:8080").secure);
        assert!(CookiePolicy::for_issuer("http://localhost").secure);
        assert!(!CookiePolicy::for_issuer("http://auth.internal:8080").secure);
        assert!(!CookiePolicy::for_issuer("http://127.0.0.1.example.com").secure);
        let set = CookiePolicy { secure: true }.set("__Host-ts_session", "v", 60);
        assert_eq!(
            set.to_str().expect("ascii"),
            "__Host-ts_session=v; Path=/; Max-Age=60; HttpOnly; SameSite=Lax; Secure"
        );
    }

    /// CSRF tokens differ per secret and label.
    #[test]
    fn csrf_tokens() {
        assert_eq!(csrf_token("s", "l"), csrf_token("s", "l"));
        assert_ne!(csrf_token("s", "l"), csrf_token("t", "l"));
        assert_ne!(csrf_token("s", "l"), csrf_token("s", "m"));
        assert_eq!(csrf_token("s", "l").len(), 43);
    }
}
