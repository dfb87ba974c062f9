//! `POST /account`: the page's forms, each an `action` checked against the
//! session's CSRF token; each answers a redirect back to the page with a
//! notice, or an error page.

use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use token_repository::TokenWriter as _;
use uuid::Uuid;
use warp::reply::Response;
use zeroize::Zeroizing;

use super::to_signin;
use crate::admin::{self, UserChange};
use crate::form::Form;
use crate::oauth::consent;
use crate::problem::Problem;
use crate::state::AppState;
use crate::web::login::{self, LoginFailure};
use crate::web::{BrowserSession, CookiePolicy, error_page, problem_page, query_encode, see_other};

/// `POST /account`: one of the page's forms.
pub async fn submit(
    state: AppState,
    headers: HeaderMap,
    address: crate::address::ClientAddress,
    body: Bytes,
) -> Response {
    let Ok(form) = Form::from_request(&headers, &body) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Request refused",
            "The form could not be read.",
        );
    };
    let session = match crate::web::session(&state, &headers).await {
        Ok(Some(session)) => session,
        Ok(None) => return to_signin(),
        Err(problem) => return problem_page(&problem),
    };
    if !session.csrf_ok(form.get("csrf")) {
        return error_page(
            StatusCode::FORBIDDEN,
            "Request refused",
            "The form expired. Go back, reload the page and try again.",
        );
    }
    let result = match form.get("action") {
        Some("profile") => profile(&state, &session, &form).await,
        Some("password") => return password(&state, &session, &form, address).await,
        Some("sign_out") => sign_out(&state, &session, &form).await,
        Some("sign_out_everywhere") => return sign_out_everywhere(&state, &session).await,
        Some("revoke_consent") => revoke_consent(&state, &session, &form).await,
        Some("connect") => return connect(&state, &session, &form).await,
        Some("disconnect") => disconnect(&state, &session, &form).await,
        Some("store_credentials") => crate::web::credentials::store(&state, &session, &form).await,
        Some("remove_credentials") => {
            crate::web::credentials::remove(&state, &session, &form).await
        }
        _ => Err(Problem::invalid_request("unknown action")),
    };
    match result {
        Ok(target) => see_other(&target),
        Err(problem) => problem_page(&problem),
    }
}

async fn profile(
    state: &AppState,
    session: &BrowserSession,
    form: &Form,
) -> Result<String, Problem> {
    let field = |name: &str| {
        Some(
            form.get(name)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty()),
        )
    };
    let change = UserChange {
        name: field("name"),
        email: field("email"),
        ..UserChange::default()
    };
    match admin::change_user(state, &session.record.holder.username, change).await {
        Ok(_) => Ok("/account?done=profile".to_owned()),
        Err(problem) if problem.status() == StatusCode::BAD_REQUEST => {
            Ok("/account?failed=profile".to_owned())
        }
        Err(problem) => Err(problem),
    }
}

/// Changes the password (the current one verified like a sign-in); every
/// session ends, and this browser gets a new one.
async fn password(
    state: &AppState,
    session: &BrowserSession,
    form: &Form,
    address: crate::address::ClientAddress,
) -> Response {
    let (Some(current), Some(new), Some(confirm)) = (
        form.get("current_password"),
        form.get("new_password"),
        form.get("confirm_password"),
    ) else {
        return see_other("/account?failed=password");
    };
    if new != confirm || new.chars().count() < 8 {
        return see_other("/account?failed=password");
    }
    let username = session.record.holder.username.clone();
    // An account without a password (federated sign-in) has none to
    // change: refused before anything is checked or counted.
    match state.accounts().user(&username).await {
        Ok(Some(user)) if !user.has_password() => {
            tracing::info!(%username, "password change refused: the account signs in with a provider");
            return see_other("/account?failed=no_password");
        }
        Ok(_) => {}
        Err(error) => return problem_page(&Problem::from(error)),
    }
    match login::verify(
        state,
        &username,
        Zeroizing::new(current.to_owned()),
        address,
    )
    .await
    {
        Ok(_) => {}
        Err(LoginFailure::Invalid) => return see_other("/account?failed=password"),
        Err(LoginFailure::Throttled(_)) => return see_other("/account?failed=throttled"),
        Err(LoginFailure::Unavailable(problem)) => return problem_page(&problem),
    }
    let change = UserChange {
        password: Some(Zeroizing::new(new.to_owned())),
        ..UserChange::default()
    };
    let user = match admin::change_user(state, &username, change).await {
        Ok((user, revoked)) => {
            tracing::info!(%username, revoked, "password changed on the account page");
            user
        }
        Err(problem) if problem.status() == StatusCode::BAD_REQUEST => {
            return see_other("/account?failed=password");
        }
        Err(problem) => return problem_page(&problem),
    };
    // Every session ended with the change; this browser signs in anew.
    let generation = match state.store().generation(&user.subject).await {
        Ok(generation) => generation,
        Err(error) => return problem_page(&Problem::from(error)),
    };
    match crate::web::signin::start_session(state, &user, generation).await {
        Ok(token) => {
            let policy = CookiePolicy::for_issuer(state.issuer());
            let mut response = see_other("/account?done=password");
            response.headers_mut().append(
                header::SET_COOKIE,
                policy.set(
                    policy.session_name(),
                    token.expose_secret(),
                    state.config().browser_session_ttl.as_secs(),
                ),
            );
            response
        }
        Err(_) => see_other("/signin"),
    }
}

async fn sign_out(
    state: &AppState,
    session: &BrowserSession,
    form: &Form,
) -> Result<String, Problem> {
    let family: Uuid = form
        .get("session")
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| Problem::invalid_request("no such session"))?;
    let subject = &session.record.holder.subject;
    let revoked = state.store().revoke_family(subject, family).await?;
    tracing::info!(%subject, session = %family, revoked, "session signed out on the account page");
    crate::metrics::revoked("session", revoked);
    Ok(if family == session.record.family {
        "/signin".to_owned()
    } else {
        "/account?done=signed_out".to_owned()
    })
}

async fn sign_out_everywhere(state: &AppState, session: &BrowserSession) -> Response {
    let subject = &session.record.holder.subject;
    match state.store().revoke_all(subject).await {
        Ok(revoked) => {
            tracing::info!(%subject, revoked, "signed out everywhere on the account page");
            crate::metrics::revoked("sign_out_everywhere", revoked);
            let policy = CookiePolicy::for_issuer(state.issuer());
            let mut response = see_other("/signin");
            response
                .headers_mut()
                .append(header::SET_COOKIE, policy.set(policy.session_name(), "", 0));
            response
        }
        Err(error) => problem_page(&Problem::from(error)),
    }
}

async fn revoke_consent(
    state: &AppState,
    session: &BrowserSession,
    form: &Form,
) -> Result<String, Problem> {
    let client_id = form
        .get("client_id")
        .ok_or_else(|| Problem::invalid_request("client_id is required"))?;
    consent::revoke_consent(state, &session.record.holder.subject, client_id).await?;
    tracing::info!(subject = %session.record.holder.subject, %client_id, "consent withdrawn");
    Ok("/account?done=consent_revoked".to_owned())
}

/// Starts connecting a provider from this browser session: the state is
/// bound to it, and the callback comes back here.
async fn connect(state: &AppState, session: &BrowserSession, form: &Form) -> Response {
    let Some(provider) = form.get("provider") else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Request refused",
            "No provider named.",
        );
    };
    match state
        .connect()
        .start_in_browser(
            provider,
            &session.record.holder.subject,
            &session.record.holder.username,
            &session.binding(),
            true,
        )
        .await
    {
        Ok(url) => see_other(&url),
        Err(token_broker::ConnectError::Provider(_)) => see_other(&format!(
            "/account?failed=unavailable&provider={}",
            query_encode(provider)
        )),
        Err(error) => problem_page(&Problem::from(error)),
    }
}

async fn disconnect(
    state: &AppState,
    session: &BrowserSession,
    form: &Form,
) -> Result<String, Problem> {
    let provider = form
        .get("provider")
        .ok_or_else(|| Problem::invalid_request("no provider named"))?;
    match state
        .connect()
        .disconnect(&session.record.holder.subject, provider)
        .await
    {
        Ok(_) | Err(token_broker::ConnectError::NotConnected) => Ok(format!(
            "/account?done=disconnected&provider={}",
            query_encode(provider)
        )),
        Err(token_broker::ConnectError::Busy) => Ok(format!(
            "/account?failed=busy&provider={}",
            query_encode(provider)
        )),
        Err(error) => Err(Problem::from(error)),
    }
}
