//! `GET /oauth/authorize` (RFC 6749 §4.1.1) and `POST /oauth/consent`.
//!
//! The request is checked in the order RFC 6749 §4.1.2.1 demands: until
//! the client and its redirect URI are known to be right, every problem is
//! an HTML error page and nothing redirects; after that, problems go back
//! to the client as an error redirect (`error`, `error_description`,
//! `state`, `iss`). Then the browser must be signed in (the sign-in page
//! comes first), and, for clients that are not first-party, the user must
//! have consented to the scopes (remembered per user and client in
//! `P consent:{T}` until revoked on the account page). The answer is a
//! redirect with `code`, `state` and `iss` (RFC 9207).
//!
//! PKCE with `S256` is required of every client; `plain` is refused.

use std::fmt::Write as _;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use percent_encoding::percent_decode;
use token_repository::{Audience, Scopes};
use warp::reply::Response;

use super::code::{self, CodeGrant};
use super::consent::{consented, remember_consent};
use super::redirect;
use super::resource;
use crate::accounts::{Client, User, valid_client_id};
use crate::form::Form;
use crate::problem::Problem;
use crate::state::AppState;
use crate::web::{
    self, BrowserSession, error_page, escape, hidden, page, problem_page, query_encode, see_other,
};

/// Longest authorization request accepted (the query string).
pub const MAX_QUERY_LEN: usize = 8192;
/// Longest single parameter value.
pub const MAX_VALUE_LEN: usize = 2048;
/// Longest `state` echoed back.
pub const MAX_STATE_LEN: usize = 1024;
const MAX_PARAMETERS: usize = 64;

/// Why a request is refused.
#[derive(Debug)]
enum Refusal {
    /// Before the redirect URI is trusted: an error page.
    Page(StatusCode, String),
    /// Store trouble while checking: a 503 page.
    Unavailable(Problem),
    /// After: back to the client.
    Redirect {
        uri: String,
        error: &'static str,
        description: String,
        state: Option<String>,
    },
}

/// A checked authorization request.
#[derive(Debug)]
struct Request {
    client: Client,
    redirect_uri: String,
    redirect_given: bool,
    scopes: Option<Scopes>,
    /// The `resource` parameters (RFC 8707), checked; empty: the default
    /// audience at the token request.
    resources: Vec<String>,
    /// The audience the tokens will have (the default one when no
    /// `resource` was given), for consent.
    audience: Audience,
    /// Its resources' URIs, shown on the consent page.
    audience_uris: Vec<String>,
    state: Option<String>,
    challenge: String,
}

/// One query parameter; `None` where the name or value is not valid
/// percent-encoded UTF-8.
type Pair = (Option<String>, Option<String>);

fn decode(part: &[u8]) -> Option<String> {
    let spaced: Vec<u8> = part
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    // Invalid escapes (`%zz`, a trailing `%`) are errors, not literals.
    let mut i = 0;
    while i < spaced.len() {
        if spaced[i] == b'%' {
            let valid = spaced
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit));
            if !valid {
                return None;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    percent_decode(&spaced)
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}

fn parse_pairs(raw: &str) -> Vec<Pair> {
    raw.as_bytes()
        .split(|&b| b == b'&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, value) = match part.iter().position(|&b| b == b'=') {
                Some(at) => (&part[..at], &part[at + 1..]),
                None => (part, &[][..]),
            };
            (decode(name), decode(value))
        })
        .collect()
}

/// A parameter given at most once: `Err` when repeated or undecodable;
/// empty values count as absent (RFC 6749 §3.1).
fn single<'a>(pairs: &'a [Pair], name: &str) -> Result<Option<&'a str>, String> {
    let mut found: Option<&Option<String>> = None;
    for (key, value) in pairs {
        if key.as_deref() == Some(name) {
            if found.is_some() {
                return Err(format!("parameter {name} is repeated"));
            }
            found = Some(value);
        }
    }
    match found {
        None => Ok(None),
        Some(None) => Err(format!(
            "parameter {name} is not valid UTF-8 or percent-encoding"
        )),
        Some(Some(value)) if value.is_empty() => Ok(None),
        Some(Some(value)) => Ok(Some(value.as_str())),
    }
}

async fn check(state: &AppState, raw: &str) -> Result<Request, Refusal> {
    let page = |message: &str| Refusal::Page(StatusCode::BAD_REQUEST, message.to_owned());
    if raw.len() > MAX_QUERY_LEN {
        return Err(page("The authorization request is too long."));
    }
    let pairs = parse_pairs(raw);
    if pairs.len() > MAX_PARAMETERS {
        return Err(page("The authorization request has too many parameters."));
    }
    let client_id = single(&pairs, "client_id")
        .map_err(|_| page("The client_id parameter is repeated or malformed."))?
        .ok_or_else(|| page("The client_id parameter is missing."))?;
    if !valid_client_id(client_id) {
        return Err(page("No application is registered with this client_id."));
    }
    let client = state
        .accounts()
        .client(client_id)
        .await
        .map_err(|error| Refusal::Unavailable(Problem::from(error)))?
        .filter(|client| !client.disabled)
        .ok_or_else(|| page("No application is registered with this client_id."))?;
    if client.redirect_uris.is_empty() {
        return Err(page(
            "This application has no redirect URI registered, so it cannot ask you to sign in.",
        ));
    }
    let presented = single(&pairs, "redirect_uri")
        .map_err(|_| page("The redirect_uri parameter is repeated or malformed."))?;
    let (redirect_uri, redirect_given) = match presented {
        Some(uri) if uri.len() > redirect::MAX_REDIRECT_URI_LEN => {
            return Err(page("The redirect_uri parameter is too long."));
        }
        Some(uri) => match redirect::find(&client.redirect_uris, uri) {
            Some(_) => (uri.to_owned(), true),
            None => {
                return Err(page(
                    "The redirect_uri is not registered for this application.",
                ));
            }
        },
        None if client.redirect_uris.len() == 1 => (client.redirect_uris[0].clone(), false),
        None => {
            return Err(page(
                "The redirect_uri parameter is required: this application has several.",
            ));
        }
    };
    // From here on, errors go back to the client.
    let state_param = single(&pairs, "state").ok().flatten();
    let echoed = state_param
        .filter(|value| value.len() <= MAX_STATE_LEN)
        .map(str::to_owned);
    let back = |error: &'static str, description: String| Refusal::Redirect {
        uri: redirect_uri.clone(),
        error,
        description,
        state: echoed.clone(),
    };
    for (name, value) in &pairs {
        let Some(name) = name else {
            return Err(back(
                "invalid_request",
                "a parameter name is not valid UTF-8".into(),
            ));
        };
        if name != resource::PARAMETER
            && pairs
                .iter()
                .filter(|(other, _)| other.as_deref() == Some(name))
                .count()
                > 1
        {
            return Err(back(
                "invalid_request",
                format!("parameter {name} is repeated"),
            ));
        }
        match value {
            None => {
                return Err(back(
                    "invalid_request",
                    format!("parameter {name} is not valid UTF-8 or percent-encoding"),
                ));
            }
            Some(value) if value.len() > MAX_VALUE_LEN => {
                return Err(back(
                    "invalid_request",
                    format!("parameter {name} is too long"),
                ));
            }
            Some(_) => {}
        }
    }
    if state_param.is_some_and(|value| value.len() > MAX_STATE_LEN) {
        return Err(back(
            "invalid_request",
            format!("state is longer than {MAX_STATE_LEN} characters"),
        ));
    }
    let get = |name: &str| single(&pairs, name).ok().flatten();
    match get("response_type") {
        None => return Err(back("invalid_request", "response_type is required".into())),
        Some("code") => {}
        Some(_) => {
            return Err(back(
                "unsupported_response_type",
                "only response_type=code is supported".into(),
            ));
        }
    }
    let challenge = get("code_challenge").ok_or_else(|| {
        back(
            "invalid_request",
            "code_challenge is required (PKCE with S256)".into(),
        )
    })?;
    match get("code_challenge_method") {
        Some("S256") => {}
        Some("plain") | None => {
            return Err(back(
                "invalid_request",
                "code_challenge_method must be S256 (plain is not supported)".into(),
            ));
        }
        Some(_) => {
            return Err(back(
                "invalid_request",
                "code_challenge_method must be S256".into(),
            ));
        }
    }
    if challenge.len() != 43
        || !challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(back(
            "invalid_request",
            "code_challenge must be a base64url SHA-256 (43 characters)".into(),
        ));
    }
    let scopes = get("scope")
        .map(Scopes::parse)
        .transpose()
        .map_err(|error| back("invalid_scope", error.to_string()))?;
    let resources = resource::parse_all(
        pairs
            .iter()
            .filter(|(name, _)| name.as_deref() == Some(resource::PARAMETER))
            .filter_map(|(_, value)| value.as_deref())
            .filter(|value| !value.is_empty()),
    )
    .map_err(|problem| back("invalid_target", problem.description().to_owned()))?;
    let target = resource::resolve(state, &resources, Some(&client))
        .await
        .map_err(|problem| match problem.code() {
            "invalid_target" => back("invalid_target", problem.description().to_owned()),
            _ => Refusal::Unavailable(problem),
        })?;
    if let Some(requested) = &scopes {
        target
            .fit(requested.clone(), true)
            .map_err(|problem| back("invalid_scope", problem.description().to_owned()))?;
    }
    Ok(Request {
        client,
        redirect_uri: redirect_uri.clone(),
        redirect_given,
        scopes,
        audience_uris: if resources.is_empty() {
            state.default_audience()
        } else {
            &resources
        }
        .iter()
        .map(|uri| uri.as_str().to_owned())
        .collect(),
        resources: resources
            .iter()
            .map(|uri| uri.as_str().to_owned())
            .collect(),
        audience: target.audience,
        state: echoed.clone(),
        challenge: challenge.to_owned(),
    })
}

/// `uri` with `params` appended to its query.
fn redirect_to(uri: &str, params: &[(&str, &str)]) -> Response {
    let mut location = uri.to_owned();
    let mut separator = if uri.contains('?') { '&' } else { '?' };
    for (name, value) in params {
        let _ = write!(location, "{separator}{name}={}", query_encode(value));
        separator = '&';
    }
    see_other(&location)
}

fn refuse(state: &AppState, refusal: Refusal) -> Response {
    match refusal {
        Refusal::Page(status, message) => {
            tracing::info!(%message, "authorization request refused (error page)");
            error_page(status, "Sign-in request refused", &message)
        }
        Refusal::Unavailable(problem) => problem_page(&problem),
        Refusal::Redirect {
            uri,
            error,
            description,
            state: client_state,
        } => {
            tracing::info!(error, %description, "authorization request refused (error redirect)");
            let mut params = vec![
                ("error", error),
                ("error_description", description.as_str()),
            ];
            if let Some(client_state) = client_state.as_deref() {
                params.push(("state", client_state));
            }
            params.push(("iss", state.issuer()));
            redirect_to(&uri, &params)
        }
    }
}

/// The signed-in user of `session`, if the account is still usable.
async fn user_of(state: &AppState, session: &BrowserSession) -> Result<Option<User>, Problem> {
    Ok(state
        .accounts()
        .user(&session.record.holder.username)
        .await?
        .filter(|user| user.subject == session.record.holder.subject && !user.disabled))
}

/// The scopes granted: the requested ones the user has, or all of the
/// user's when none are requested.
fn granted(request: &Request, user: &User) -> Scopes {
    match &request.scopes {
        None => user.scopes.clone(),
        Some(requested) => {
            Scopes::from_tokens(requested.iter().filter(|scope| user.scopes.contains(scope)))
                .unwrap_or_else(|_| Scopes::empty())
        }
    }
}

fn to_signin(raw: &str) -> Response {
    see_other(&format!(
        "/signin?return_to={}",
        query_encode(&format!("/oauth/authorize?{raw}"))
    ))
}

/// Issues the code and sends the browser back to the client.
async fn approve(
    state: &AppState,
    request: &Request,
    session: &BrowserSession,
    scopes: &Scopes,
) -> Response {
    let grant = CodeGrant {
        client_id: request.client.client_id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        redirect_given: request.redirect_given,
        scope: scopes.to_string(),
        challenge: request.challenge.clone(),
        resources: request.resources.clone(),
        subject: session.record.holder.subject.clone(),
        username: session.record.holder.username.clone(),
        family: session.record.family,
    };
    match code::issue(state, &grant).await {
        Ok(code) => {
            tracing::info!(client_id = %grant.client_id, subject = %grant.subject, "authorization code issued");
            let mut params = vec![("code", code.as_str())];
            if let Some(client_state) = request.state.as_deref() {
                params.push(("state", client_state));
            }
            params.push(("iss", state.issuer()));
            redirect_to(&request.redirect_uri, &params)
        }
        Err(problem) => refuse(
            state,
            Refusal::Redirect {
                uri: request.redirect_uri.clone(),
                error: if problem.status() == StatusCode::SERVICE_UNAVAILABLE {
                    "temporarily_unavailable"
                } else {
                    "server_error"
                },
                description: "the authorization server could not issue a code".into(),
                state: request.state.clone(),
            },
        ),
    }
}

/// `GET /oauth/authorize`
pub async fn authorize(state: AppState, headers: HeaderMap, raw: String) -> Response {
    let request = match check(&state, &raw).await {
        Ok(request) => request,
        Err(refusal) => return refuse(&state, refusal),
    };
    let session = match web::session(&state, &headers).await {
        Ok(Some(session)) => session,
        Ok(None) => return to_signin(&raw),
        Err(problem) => return problem_page(&problem),
    };
    let user = match user_of(&state, &session).await {
        Ok(Some(user)) => user,
        Ok(None) => return to_signin(&raw),
        Err(problem) => return problem_page(&problem),
    };
    let scopes = granted(&request, &user);
    if !request.client.first_party {
        match consented(&state, &user.subject, &request.client.client_id).await {
            Ok(Some(previous)) if previous.covers(&scopes, &request.audience) => {}
            Ok(_) => return consent_page(&request, &session, &scopes, &raw),
            Err(problem) => return problem_page(&problem),
        }
    }
    approve(&state, &request, &session, &scopes).await
}

fn consent_page(
    request: &Request,
    session: &BrowserSession,
    scopes: &Scopes,
    raw: &str,
) -> Response {
    let client = escape(&request.client.client_id);
    let mut list = String::new();
    for scope in scopes.iter() {
        let _ = write!(list, "<li><code>{}</code></li>", escape(scope));
    }
    if list.is_empty() {
        list.push_str("<li>your name and username (no other access)</li>");
    }
    let mut services = String::new();
    for uri in &request.audience_uris {
        let _ = write!(services, "<li><code>{}</code></li>", escape(uri));
    }
    let csrf = session.csrf_token();
    let body = format!(
        "<h1>Allow {client}?</h1>\
         <section><p>The application <strong>{client}</strong> asks to act as \
         <strong>{user}</strong> with this access:</p><ul>{list}</ul>\
         <p>at these services:</p><ul>{services}</ul>\
         <p class=\"muted\">It will be sent back to <code>{target}</code>. You can withdraw this \
         permission on your account page.</p></section>\
         <form class=\"card\" method=\"post\" action=\"/oauth/consent\">{csrf}{request}\
         <button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button> \
         <button type=\"submit\" name=\"decision\" value=\"deny\" class=\"secondary\">Deny</button>\
         </form>",
        user = escape(&session.record.holder.username),
        target = escape(&request.redirect_uri),
        csrf = hidden("csrf", &csrf),
        request = hidden("request", raw),
    );
    web::html(StatusCode::OK, page("Allow access", &body))
}

/// `POST /oauth/consent`: the user's answer on the consent page.
pub async fn consent(state: AppState, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(form) = Form::from_request(&headers, &body) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Request refused",
            "The form could not be read.",
        );
    };
    let raw = form.get("request").unwrap_or_default().to_owned();
    let request = match check(&state, &raw).await {
        Ok(request) => request,
        Err(refusal) => return refuse(&state, refusal),
    };
    let session = match web::session(&state, &headers).await {
        Ok(Some(session)) => session,
        Ok(None) => return to_signin(&raw),
        Err(problem) => return problem_page(&problem),
    };
    if !session.csrf_ok(form.get("csrf")) {
        return error_page(
            StatusCode::FORBIDDEN,
            "Request refused",
            "The form expired. Go back to the application and start again.",
        );
    }
    let user = match user_of(&state, &session).await {
        Ok(Some(user)) => user,
        Ok(None) => return to_signin(&raw),
        Err(problem) => return problem_page(&problem),
    };
    match form.get("decision") {
        Some("allow") => {}
        Some("deny") => {
            tracing::info!(client_id = %request.client.client_id, subject = %user.subject, "consent denied");
            return refuse(
                &state,
                Refusal::Redirect {
                    uri: request.redirect_uri.clone(),
                    error: "access_denied",
                    description: "the user denied the request".into(),
                    state: request.state.clone(),
                },
            );
        }
        _ => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Request refused",
                "Choose Allow or Deny.",
            );
        }
    }
    let scopes = granted(&request, &user);
    if let Err(problem) = remember_consent(
        &state,
        &user.subject,
        &request.client.client_id,
        &scopes,
        &request.audience,
    )
    .await
    {
        return problem_page(&problem);
    }
    tracing::info!(client_id = %request.client.client_id, subject = %user.subject, scope = %scopes, "consent given");
    approve(&state, &request, &session, &scopes).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Repeats and undecodable values are told apart from absent ones.
    #[test]
    fn parameters() {
        let pairs = parse_pairs("a=1&b=&c=%ff&d=x%20y+z&a=2&e=%zz");
        assert!(single(&pairs, "a").is_err());
        assert_eq!(single(&pairs, "b"), Ok(None));
        assert!(single(&pairs, "c").is_err());
        assert_eq!(single(&pairs, "d"), Ok(Some("x y z")));
        assert!(single(&pairs, "e").is_err());
        assert_eq!(single(&pairs, "f"), Ok(None));
    }
}
