//! Sign-in with an external identity provider (federated sign-in):
//! `GET /signin/federated` starts it, the provider's redirect to the
//! connect callback (`GET /v1/connect/callback`, one registered redirect
//! URI per provider) finishes it ([`finish`]).
//!
//! The flow is bound to the browser that started it: a random cookie
//! (`__Host-ts_federated`, HttpOnly, SameSite=Lax, 10 minutes; reused by
//! the browser's next sign-in while it lives)
//! whose SHA-256 the signed state carries; a callback URL finished in
//! another browser signs nobody in (login CSRF). The OpenID Connect part
//! (state, PKCE, nonce, the ID token's signature and claims) is
//! [`token_broker::Connect::complete_signin`]'s. Here the verified
//! identity becomes an account: found by (issuer, subject), created at
//! the first sign-in when the provider has `provision = true`, never
//! linked to a local account by e-mail; its name and e-mail follow the
//! claims; a disabled account stays signed out. The browser session is the
//! one a password sign-in starts ([`super::signin::start_session`]).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, StatusCode, header};
use sha2::{Digest as _, Sha256};
use token_broker::connect::SignedIn;
use token_broker::{Callback, ConnectError, Failure, Refusal};
use token_repository::{Generation, Scopes, Timestamp, TokenWriter as _};
use warp::reply::Response;

use super::signin::{DEFAULT_RETURN, start_session};
use super::{CookiePolicy, error_page, local_path, problem_page, random_secret, see_other};
use crate::accounts::{Identity, NO_PASSWORD, User, federated_username};
use crate::form::Form;
use crate::problem::Problem;
use crate::state::AppState;

/// The longest `return_to` a sign-in carries through the provider (it
/// travels in the state); a longer one returns to `/account`.
const MAX_RETURN_TO: usize = 1024;

fn binding(secret: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(secret.as_bytes()))
}

/// `GET /signin/federated?provider=…[&option=…][&return_to=…]`: sends the
/// browser to the provider, with the binding cookie.
pub async fn start(state: AppState, headers: HeaderMap, query: String) -> Response {
    let form = Form::parse(query.as_bytes()).unwrap_or_default();
    let return_to = form
        .get("return_to")
        .filter(|target| local_path(target) && target.len() <= MAX_RETURN_TO)
        .unwrap_or(DEFAULT_RETURN)
        .to_owned();
    match super::session(&state, &headers).await {
        Ok(Some(_)) => return see_other(&return_to),
        Ok(None) => {}
        Err(problem) => return problem_page(&problem),
    }
    let Some(provider) = form.get("provider") else {
        return unavailable();
    };
    let policy = CookiePolicy::for_issuer(state.issuer());
    // Keep the browser's binding cookie when it has a well-formed one, so
    // that two sign-ins started in two tabs both work.
    let existing = super::cookie(&headers, policy.federated_name())
        .filter(|value| {
            value.len() == 43
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_owned);
    let secret = match existing.map_or_else(random_secret, Ok) {
        Ok(secret) => secret,
        Err(problem) => return problem_page(&problem),
    };
    let started = state
        .connect()
        .start_signin(provider, form.get("option"), &binding(&secret), &return_to)
        .await;
    match started {
        Ok(url) => {
            let mut response = see_other(&url);
            response.headers_mut().append(
                header::SET_COOKIE,
                policy.set(policy.federated_name(), &secret, 600),
            );
            response
        }
        Err(ConnectError::UnknownProvider | ConnectError::NotConfigured) => unavailable(),
        Err(error) => problem_page(&Problem::from(error)),
    }
}

fn unavailable() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "Sign-in not available",
        "There is no such way to sign in here. Go back to the sign-in page and choose another.",
    )
}

/// Why a verified identity is not signed in.
enum Refused {
    /// No account, and the provider does not create them.
    NotProvisioned,
    /// The account is disabled.
    Disabled,
    /// The derived username belongs to another account.
    NameTaken,
    /// The account changed while signing in.
    Changed,
}

/// The provider's redirect of a sign-in (a callback whose state is a
/// sign-in's): the identity is verified, then signed in.
pub async fn finish(state: AppState, headers: HeaderMap, mut callback: Callback) -> Response {
    let policy = CookiePolicy::for_issuer(state.issuer());
    callback.browser = super::cookie(&headers, policy.federated_name()).map(binding);
    // The binding cookie is left to expire: states are single use by
    // themselves, and another tab's sign-in may still need it.
    match state.connect().complete_signin(&callback).await {
        Ok(signed_in) => signed_in_response(&state, &signed_in).await,
        Err(refusal) => refused_page(&refusal),
    }
}

async fn signed_in_response(state: &AppState, signed_in: &SignedIn) -> Response {
    let (user, generation) = match account(state, signed_in).await {
        Ok(Ok(found)) => found,
        Ok(Err(refused)) => return account_page(&refused),
        Err(problem) => return problem_page(&problem),
    };
    if let Err(failure) = state
        .connect()
        .keep_signin_tokens(&user.subject, &user.username, signed_in)
        .await
    {
        // Signed in all the same; the account page offers Connect.
        tracing::warn!(subject = %user.subject, provider = %signed_in.provider, reason = failure.code(), "the sign-in's provider tokens were not kept");
    }
    let token = match start_session(state, &user, generation).await {
        Ok(token) => token,
        Err(problem) if problem.code() == "invalid_grant" => {
            return account_page(&Refused::Changed);
        }
        Err(problem) => return problem_page(&problem),
    };
    tracing::info!(subject = %user.subject, username = %user.username, provider = %signed_in.provider, "browser signed in with a provider");
    let policy = CookiePolicy::for_issuer(state.issuer());
    let return_to = Some(signed_in.return_to.as_str())
        .filter(|target| local_path(target))
        .unwrap_or(DEFAULT_RETURN);
    let mut response = see_other(return_to);
    let ttl = state.config().browser_session_ttl.as_secs();
    response.headers_mut().append(
        header::SET_COOKIE,
        policy.set(policy.session_name(), token.expose_secret(), ttl),
    );
    response
}

/// The account of a verified identity, created when allowed, with its
/// name and e-mail from the claims, and the revocation generation read
/// before its final read (the guard for issuing, as for a password).
async fn account(
    state: &AppState,
    signed_in: &SignedIn,
) -> Result<Result<(User, Generation), Refused>, Problem> {
    let identity = Identity {
        provider: signed_in.provider.clone(),
        issuer: signed_in.issuer.clone(),
        subject: signed_in.identity.subject.clone(),
    };
    let accounts = state.accounts();
    let name = signed_in.identity.text("name").map(str::to_owned);
    let email = signed_in.identity.verified_email().map(str::to_owned);
    let user = match accounts.federated_user(&identity).await? {
        Some(user) => user,
        None if !signed_in.login.provision => {
            tracing::info!(provider = %identity.provider, "sign-in by an identity without an account; provisioning is off");
            return Ok(Err(Refused::NotProvisioned));
        }
        None => match provision(state, signed_in, &identity, name.clone(), email.clone()).await? {
            Some(user) => user,
            None => return Ok(Err(Refused::NameTaken)),
        },
    };
    if user.name != name || user.email != email {
        accounts
            .update_user(&user.username, |record| {
                record.name.clone_from(&name);
                record.email.clone_from(&email);
            })
            .await?;
    }
    let generation = state.store().generation(&user.subject).await?;
    let Some(current) = accounts.user(&user.username).await? else {
        return Ok(Err(Refused::Changed));
    };
    if current.subject != user.subject {
        return Ok(Err(Refused::Changed));
    }
    if current.disabled {
        tracing::info!(subject = %current.subject, provider = %identity.provider, "sign-in with a provider refused: the account is disabled");
        return Ok(Err(Refused::Disabled));
    }
    Ok(Ok((current, generation)))
}

/// Creates the account of `identity` (just in time); `None` when its
/// username is another account's.
async fn provision(
    state: &AppState,
    signed_in: &SignedIn,
    identity: &Identity,
    name: Option<String>,
    email: Option<String>,
) -> Result<Option<User>, Problem> {
    let scopes = Scopes::from_tokens(
        signed_in
            .login
            .provisioned_scopes(&signed_in.identity.claims),
    )
    .map_err(|error| Problem::internal(&error))?;
    let username = federated_username(&identity.provider, &identity.issuer, &identity.subject);
    let now = Timestamp::now();
    let user = User {
        subject: uuid::Uuid::new_v4().to_string(),
        username: username.clone(),
        name,
        email,
        scopes,
        password_hash: NO_PASSWORD.to_owned(),
        disabled: false,
        created_at: now,
        updated_at: now,
        identity: Some(identity.clone()),
    };
    let accounts = state.accounts();
    let user = if accounts.create_user(&user).await? {
        tracing::info!(subject = %user.subject, username = %user.username, provider = %identity.provider, "account created at its first sign-in");
        user
    } else {
        // A concurrent first sign-in of the same identity made it, or the
        // name is another account's (never taken over).
        match accounts.user(&username).await? {
            Some(existing) if existing.identity.as_ref() == Some(identity) => existing,
            _ => {
                tracing::warn!(username = %username, provider = %identity.provider, "a federated account's username is taken by another account; not signed in");
                return Ok(None);
            }
        }
    };
    accounts.link_identity(identity, &user.username).await?;
    Ok(Some(user))
}

fn account_page(refused: &Refused) -> Response {
    let (status, message) = match refused {
        Refused::NotProvisioned => (
            StatusCode::FORBIDDEN,
            "There is no account here for the identity you signed in with, and this provider \
             does not create accounts. Ask an administrator.",
        ),
        Refused::Disabled => (StatusCode::FORBIDDEN, "This account is disabled."),
        Refused::NameTaken => (
            StatusCode::CONFLICT,
            "An account for this identity cannot be created. Ask an administrator.",
        ),
        Refused::Changed => (
            StatusCode::CONFLICT,
            "Your account changed while signing in. Please sign in again.",
        ),
    };
    error_page(status, "Not signed in", message)
}

fn refused_page(refusal: &Refusal) -> Response {
    let (status, message) = match refusal.failure {
        Failure::SessionMismatch => (
            StatusCode::FORBIDDEN,
            "This sign-in was started in another browser, so nobody was signed in. \
             To sign in, start from the sign-in page.",
        ),
        Failure::ReplayedState | Failure::ExpiredState | Failure::InvalidState => (
            StatusCode::BAD_REQUEST,
            "This sign-in link is not valid any more. Start again from the sign-in page.",
        ),
        Failure::AccessDenied => (
            StatusCode::FORBIDDEN,
            "The sign-in was cancelled at the provider.",
        ),
        Failure::ProviderUnavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "The provider cannot be reached right now. Please try again in a moment.",
        ),
        Failure::ServerError => (
            StatusCode::SERVICE_UNAVAILABLE,
            "The service cannot answer right now. Please try again in a moment.",
        ),
        Failure::ProviderDisabled => (
            StatusCode::BAD_REQUEST,
            "Sign-in with this provider is not available any more.",
        ),
        _ => (
            StatusCode::BAD_GATEWAY,
            "The provider's answer could not be accepted, so nobody was signed in.",
        ),
    };
    let mut response = error_page(status, "Not signed in", message);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, http::HeaderValue::from_static("5"));
    }
    response
}
