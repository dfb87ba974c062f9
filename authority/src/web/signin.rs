//! `GET /signin`, `POST /signin` and `POST /logout`.
//!
//! The sign-in form is protected against login CSRF by a double-submit
//! token: a random `__Host-ts_signin` cookie set with the form, and in the
//! form an HMAC of it ([`super::csrf_token`]); a form posted from another
//! site has neither. A successful sign-in starts a browser session
//! ([`start_session`]) and returns to `return_to` (a path of this server
//! only), by default `/account`.

use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use subtle::ConstantTimeEq as _;
use token_repository::{Generation, Grant, Scopes, Token, TokenWriter as _};
use warp::reply::Response;
use zeroize::Zeroizing;

use super::login::{self, LoginFailure};
use super::{
    BROWSER_CLIENT, CookiePolicy, csrf_token, escape, hidden, html, local_path, page, problem_page,
    random_secret, see_other,
};
use crate::accounts::User;
use crate::form::Form;
use crate::problem::Problem;
use crate::state::AppState;

/// Where a sign-in returns by default.
pub const DEFAULT_RETURN: &str = "/account";

/// `GET /signin?return_to=…`
pub async fn form(state: AppState, headers: HeaderMap, query: String) -> Response {
    let return_to = Form::parse(query.as_bytes())
        .ok()
        .and_then(|form| form.get("return_to").map(str::to_owned))
        .filter(|target| local_path(target))
        .unwrap_or_else(|| DEFAULT_RETURN.to_owned());
    match super::session(&state, &headers).await {
        Ok(Some(_)) => return see_other(&return_to),
        Ok(None) => {}
        Err(problem) => return problem_page(&problem),
    }
    render(&state, &headers, &return_to, "", None, StatusCode::OK)
}

/// The sign-in page, with an optional error (already plain text).
fn render(
    state: &AppState,
    headers: &HeaderMap,
    return_to: &str,
    username: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let policy = CookiePolicy::for_issuer(state.issuer());
    // Keep the browser's form cookie when it has a well-formed one, so that
    // two open sign-in tabs both work.
    let existing = super::cookie(headers, policy.signin_name())
        .filter(|value| {
            value.len() == 43
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_owned);
    let secret = match existing {
        Some(secret) => secret,
        None => match random_secret() {
            Ok(secret) => secret,
            Err(problem) => return problem_page(&problem),
        },
    };
    let error = error.map_or_else(String::new, |error| {
        format!("<p class=\"error\" role=\"alert\">{}</p>", escape(error))
    });
    let body = format!(
        "<h1>Sign in</h1>{error}\
         <form class=\"card\" method=\"post\" action=\"/signin\">{csrf}{target}\
         <label for=\"username\">Username</label>\
         <input type=\"text\" id=\"username\" name=\"username\" value=\"{username}\" \
          autocomplete=\"username\" autocapitalize=\"none\" spellcheck=\"false\" required autofocus>\
         <label for=\"password\">Password</label>\
         <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Sign in</button></form>{providers}",
        csrf = hidden("csrf", &csrf_token(&secret, "signin")),
        target = hidden("return_to", return_to),
        username = escape(username),
        providers = provider_buttons(state, return_to),
    );
    let mut response = html(status, page("Sign in", &body));
    response.headers_mut().append(
        header::SET_COOKIE,
        policy.set(policy.signin_name(), &secret, 3600),
    );
    response
}

/// The "Sign in with …" buttons of the providers with `login = true`
/// (one per login option), as links to `/signin/federated`.
fn provider_buttons(state: &AppState, return_to: &str) -> String {
    use std::fmt::Write as _;
    let buttons = state.connect().login_buttons();
    if buttons.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<section aria-labelledby=\"with-provider\"><h2 id=\"with-provider\">Or sign in with</h2>",
    );
    for button in buttons {
        let mut href = format!(
            "/signin/federated?provider={}",
            super::query_encode(&button.provider)
        );
        let mut label = format!("Sign in with {}", button.display_name);
        if let Some(option) = &button.option {
            let _ = write!(href, "&option={}", super::query_encode(option));
            let _ = write!(label, ": {option}");
        }
        if return_to != DEFAULT_RETURN {
            let _ = write!(href, "&return_to={}", super::query_encode(return_to));
        }
        let _ = write!(
            out,
            "<a class=\"provider\" href=\"{}\">{}</a>",
            escape(&href),
            escape(&label)
        );
    }
    out.push_str("</section>");
    out
}

/// `POST /signin`
pub async fn submit(
    state: AppState,
    headers: HeaderMap,
    address: crate::address::ClientAddress,
    body: Bytes,
) -> Response {
    let Ok(form) = Form::from_request(&headers, &body) else {
        return render(
            &state,
            &headers,
            DEFAULT_RETURN,
            "",
            Some("The form could not be read. Please try again."),
            StatusCode::BAD_REQUEST,
        );
    };
    let return_to = form
        .get("return_to")
        .filter(|target| local_path(target))
        .unwrap_or(DEFAULT_RETURN)
        .to_owned();
    let username = form
        .get("username")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let policy = CookiePolicy::for_issuer(state.issuer());
    let csrf_ok = match (
        super::cookie(&headers, policy.signin_name()),
        form.get("csrf"),
    ) {
        (Some(secret), Some(presented)) => bool::from(
            presented
                .as_bytes()
                .ct_eq(csrf_token(secret, "signin").as_bytes()),
        ),
        _ => false,
    };
    if !csrf_ok {
        return render(
            &state,
            &headers,
            &return_to,
            &username,
            Some("The sign-in form expired. Please sign in again."),
            StatusCode::FORBIDDEN,
        );
    }
    let (Some(password), false) = (form.get("password"), username.is_empty()) else {
        return render(
            &state,
            &headers,
            &return_to,
            &username,
            Some("Enter your username and password."),
            StatusCode::BAD_REQUEST,
        );
    };
    let password = Zeroizing::new(password.to_owned());
    let (user, generation) = match login::verify(&state, &username, password, address).await {
        Ok(found) => found,
        Err(LoginFailure::Invalid) => {
            return render(
                &state,
                &headers,
                &return_to,
                &username,
                Some("Invalid username or password."),
                StatusCode::BAD_REQUEST,
            );
        }
        Err(LoginFailure::Throttled(wait)) => {
            let mut response = render(
                &state,
                &headers,
                &return_to,
                &username,
                Some("Too many failed sign-ins. Please wait a while and try again."),
                StatusCode::TOO_MANY_REQUESTS,
            );
            response.headers_mut().insert(
                header::RETRY_AFTER,
                http::HeaderValue::from(wait.as_secs().max(1)),
            );
            return response;
        }
        Err(LoginFailure::Unavailable(problem)) => return problem_page(&problem),
    };
    let token = match start_session(&state, &user, generation).await {
        Ok(token) => token,
        Err(problem) if problem.code() == "invalid_grant" => {
            return render(
                &state,
                &headers,
                &return_to,
                &username,
                Some("Your account changed while signing in. Please sign in again."),
                StatusCode::CONFLICT,
            );
        }
        Err(problem) => return problem_page(&problem),
    };
    tracing::info!(subject = %user.subject, %username, "browser signed in");
    let mut response = see_other(&return_to);
    let ttl = state.config().browser_session_ttl.as_secs();
    let cookies = response.headers_mut();
    cookies.append(
        header::SET_COOKIE,
        policy.set(policy.session_name(), token.expose_secret(), ttl),
    );
    cookies.append(header::SET_COOKIE, policy.set(policy.signin_name(), "", 0));
    response
}

/// Issues a browser session for `user`: a refresh-kind token of the user
/// for [`BROWSER_CLIENT`], no scopes, living `BROWSER_SESSION_TTL`, in a new
/// family (the session family). The access token minted with it is never
/// handed out and lives seconds.
///
/// # Errors
///
/// `invalid_grant` when the user's tokens were revoked since `generation`;
/// 503 when Redis is unavailable.
pub async fn start_session(
    state: &AppState,
    user: &User,
    generation: Generation,
) -> Result<Token, Problem> {
    let minted = Grant {
        holder: user.holder(Scopes::empty(), Some(BROWSER_CLIENT.to_owned())),
        access_ttl: std::time::Duration::from_secs(5),
        refresh_ttl: Some(state.config().browser_session_ttl),
        // The browser session is good at the authority only.
        audience: token_repository::Audience::of([state.resources().issuer().tag()])
            .map_err(|error| Problem::internal(&error))?,
    }
    .mint()
    .map_err(|error| Problem::internal(&error))?;
    crate::oauth::grant::store(state, &minted, Some(generation)).await?;
    minted
        .refresh
        .map(|refresh| refresh.token)
        .ok_or_else(|| Problem::internal(&"a browser session was minted without its token"))
}

/// `POST /logout`: ends the browser session (the applications' sessions
/// it approved are sessions of their own and stay).
pub async fn logout(state: AppState, headers: HeaderMap, body: Bytes) -> Response {
    let policy = CookiePolicy::for_issuer(state.issuer());
    let session = match super::session(&state, &headers).await {
        Ok(session) => session,
        Err(problem) => return problem_page(&problem),
    };
    if let Some(session) = session {
        let form = Form::from_request(&headers, &body).unwrap_or_default();
        if !session.csrf_ok(form.get("csrf")) {
            return super::error_page(
                StatusCode::FORBIDDEN,
                "Request refused",
                "The form expired. Go back, reload the page and try again.",
            );
        }
        match state
            .store()
            .revoke_family(&session.record.holder.subject, session.record.family)
            .await
        {
            Ok(revoked) => {
                tracing::info!(subject = %session.record.holder.subject, session = %session.record.family, revoked, "browser signed out");
                crate::metrics::revoked("browser_sign_out", revoked);
            }
            Err(error) => return problem_page(&Problem::from(error)),
        }
    }
    let mut response = see_other("/signin");
    response
        .headers_mut()
        .append(header::SET_COOKIE, policy.set(policy.session_name(), "", 0));
    response
}
