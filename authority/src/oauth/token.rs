//! `POST /oauth/token` (RFC 6749): the `password`, `client_credentials`,
//! `refresh_token` and `authorization_code` ([`super::code`]) grants.

use std::net::IpAddr;

use http::{HeaderMap, StatusCode};
use serde::Serialize;
use token_repository::{
    Error as StoreError, Generation, Grant, Minted, RefreshState, Rotation, Scopes, Timestamp,
    Token, TokenKind, TokenWriter as _,
};
use warp::reply::Response;
use zeroize::Zeroizing;

use crate::accounts::{Client, client_subject};
use crate::authenticate;
use crate::credentials::{ClientCredentials, client_credentials};
use crate::form::Form;
use crate::metrics;
use crate::password::Verification;
use crate::problem::{Problem, json};
use crate::state::AppState;

/// The success body (RFC 6749 §5.1).
#[derive(Serialize)]
struct TokenResponse<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    scope: String,
}

/// Handles one token request; every outcome is a response.
pub async fn handle(
    state: AppState,
    headers: HeaderMap,
    address: Option<IpAddr>,
    body: bytes::Bytes,
) -> Response {
    let started = std::time::Instant::now();
    let (grant_type, result) = match Form::from_request(&headers, &body) {
        Ok(form) => {
            let grant_type = metrics::grant_label(form.get("grant_type"));
            (grant_type, grant(&state, &headers, address, &form).await)
        }
        Err(error) => ("none", Err(Problem::invalid_request(error.to_string()))),
    };
    if grant_type == "password" {
        metrics::login(started.elapsed(), result.is_ok());
    }
    match result {
        Ok(minted) => {
            metrics::issued(grant_type);
            respond(&minted)
        }
        Err(problem) => {
            metrics::refused(grant_type, problem.code());
            problem.into_response()
        }
    }
}

async fn grant(
    state: &AppState,
    headers: &HeaderMap,
    address: Option<IpAddr>,
    form: &Form,
) -> Result<Minted, Problem> {
    let credentials = client_credentials(headers, form)?;
    if matches!(credentials, ClientCredentials::IdOnly(_))
        && !matches!(
            form.get("grant_type"),
            Some("authorization_code" | "refresh_token")
        )
    {
        // Only public clients name themselves without a secret, and only
        // for the code and refresh grants.
        return Err(Problem::invalid_client());
    }
    let requested = form
        .get("scope")
        .map(Scopes::parse)
        .transpose()
        .map_err(|error| Problem::invalid_scope(error.to_string()))?;
    match form.get("grant_type") {
        None => Err(Problem::invalid_request("grant_type is required")),
        Some("password") if !state.config().password_grant => {
            Err(Problem::unsupported_grant_type())
        }
        Some("password") => password(state, form, credentials, requested, address).await,
        Some("authorization_code") => {
            let minted = super::code::exchange(state, form, credentials).await?;
            log_issue("authorization_code", &minted);
            Ok(minted)
        }
        Some("client_credentials") => client_credentials_grant(state, credentials, requested).await,
        Some("refresh_token") => refresh(state, form, credentials, requested).await,
        Some(_) => Err(Problem::unsupported_grant_type()),
    }
}

fn respond(minted: &Minted) -> Response {
    let access = &minted.access;
    let now = Timestamp::now();
    json(
        StatusCode::OK,
        &TokenResponse {
            access_token: access.token.expose_secret(),
            token_type: "Bearer",
            expires_in: access.record.seconds_left_at(now),
            refresh_token: minted
                .refresh
                .as_ref()
                .map(|refresh| refresh.token.expose_secret()),
            scope: access.record.scopes.to_string(),
        },
    )
}

/// The requested scope must be granted scope; without a request, all of it.
fn narrow(requested: Option<Scopes>, granted: &Scopes) -> Result<Scopes, Problem> {
    match requested {
        None => Ok(granted.clone()),
        Some(requested) if requested.is_subset_of(granted) => Ok(requested),
        Some(_) => Err(Problem::invalid_scope(
            "the requested scope exceeds what may be granted",
        )),
    }
}

/// Stores minted tokens; maps the store's refusals to OAuth answers.
async fn store(
    state: &AppState,
    minted: &Minted,
    guard: Option<Generation>,
) -> Result<(), Problem> {
    match state.store().issue(minted, guard).await {
        Ok(()) => Ok(()),
        Err(StoreError::Superseded) => Err(Problem::invalid_grant(
            "the credentials changed while the request was processed; try again",
        )),
        Err(error) => Err(Problem::from_store(&error)),
    }
}

fn lifetimes(
    state: &AppState,
    with_refresh: bool,
) -> (std::time::Duration, Option<std::time::Duration>) {
    let config = state.config();
    (
        config.access_token_ttl,
        with_refresh.then_some(config.refresh_token_ttl),
    )
}

/// RFC 6749 §4.3: a user's username and password.
async fn password(
    state: &AppState,
    form: &Form,
    credentials: ClientCredentials,
    requested: Option<Scopes>,
    address: Option<IpAddr>,
) -> Result<Minted, Problem> {
    let username = form
        .get("username")
        .ok_or_else(|| Problem::invalid_request("username is required"))?
        .to_ascii_lowercase();
    let password = Zeroizing::new(
        form.get("password")
            .ok_or_else(|| Problem::invalid_request("password is required"))?
            .to_owned(),
    );
    let client = authenticate::client(state, credentials).await?;
    if let Some(wait) = state
        .throttle()
        .blocked(&username, address)
        .await
        .map_err(|error| Problem::from_store(&error))?
    {
        tracing::info!(%username, ?address, "login throttled");
        metrics::throttled();
        return Err(Problem::throttled(wait));
    }
    let user = state
        .accounts()
        .user(&username)
        .await
        .map_err(|error| Problem::from_accounts(&error))?;
    // Read before checking the password: a sign-out-everywhere (password
    // change, disabling) between the check and the issue refuses the issue.
    // Unknown users read one too, so that both paths cost the same.
    let subject = user.as_ref().map_or_else(
        || format!("unknown:{username}"),
        |user| user.subject.clone(),
    );
    let generation = state
        .store()
        .generation(&subject)
        .await
        .map_err(|error| Problem::from_store(&error))?;
    let verification = state
        .hasher()
        .verify(
            password.clone(),
            user.as_ref().map(|user| user.password_hash.as_str()),
        )
        .await
        .map_err(|error| Problem::from_hash(&error))?;
    let (user, needs_rehash) = match (user, verification) {
        (Some(user), Verification::Match { needs_rehash }) if !user.disabled => {
            (user, needs_rehash)
        }
        _ => {
            tracing::info!(%username, ?address, "login failed");
            state
                .throttle()
                .record_failure(&username, address)
                .await
                .map_err(|error| Problem::from_store(&error))?;
            return Err(Problem::invalid_grant("invalid username or password"));
        }
    };
    state
        .throttle()
        .reset(&username)
        .await
        .map_err(|error| Problem::from_store(&error))?;
    if needs_rehash {
        upgrade_hash(
            state.clone(),
            username.clone(),
            user.password_hash.clone(),
            password,
        );
    }
    let scopes = narrow(requested, &user.scopes)?;
    let (access_ttl, refresh_ttl) = lifetimes(state, true);
    let minted = Grant {
        subject: user.subject,
        username: user.username,
        name: user.name,
        email: user.email,
        scopes,
        client_id: client.map(|client| client.client_id),
        access_ttl,
        refresh_ttl,
    }
    .mint()
    .map_err(|error| Problem::internal(&error))?;
    store(state, &minted, Some(generation)).await?;
    log_issue("password", &minted);
    Ok(minted)
}

/// Replaces a hash made with old parameters, in the background, unless the
/// password changed meanwhile.
fn upgrade_hash(state: AppState, username: String, old_hash: String, password: Zeroizing<String>) {
    tokio::spawn(async move {
        let new_hash = match state.hasher().hash(password).await {
            Ok(hash) => hash,
            Err(error) => {
                tracing::warn!(%error, %username, "could not upgrade a password hash");
                return;
            }
        };
        let result = state
            .accounts()
            .update_user(&username, |user| {
                if user.password_hash == old_hash {
                    user.password_hash.clone_from(&new_hash);
                }
            })
            .await;
        match result {
            Ok(Some((old, new))) if old.password_hash != new.password_hash => {
                tracing::info!(%username, "password hash upgraded to the configured parameters");
            }
            Ok(_) => tracing::debug!(%username, "password changed meanwhile; hash not upgraded"),
            Err(error) => tracing::warn!(%error, %username, "could not upgrade a password hash"),
        }
    });
}

/// RFC 6749 §4.4: an application obtains a token for itself.
async fn client_credentials_grant(
    state: &AppState,
    credentials: ClientCredentials,
    requested: Option<Scopes>,
) -> Result<Minted, Problem> {
    let ClientCredentials::Secret { client_id, .. } = &credentials else {
        return Err(Problem::invalid_client());
    };
    let generation = state
        .store()
        .generation(&client_subject(client_id))
        .await
        .map_err(|error| Problem::from_store(&error))?;
    let client: Client = authenticate::required_client(state, credentials).await?;
    let scopes = narrow(requested, &client.scopes)?;
    let (access_ttl, _) = lifetimes(state, false);
    let minted = Grant {
        subject: client.subject(),
        username: client.client_id.clone(),
        name: None,
        email: None,
        scopes,
        client_id: Some(client.client_id),
        access_ttl,
        refresh_ttl: None,
    }
    .mint()
    .map_err(|error| Problem::internal(&error))?;
    store(state, &minted, Some(generation)).await?;
    log_issue("client_credentials", &minted);
    Ok(minted)
}

/// RFC 6749 §6: rotate a refresh token. Reuse of a rotated one revokes its
/// family.
async fn refresh(
    state: &AppState,
    form: &Form,
    credentials: ClientCredentials,
    requested: Option<Scopes>,
) -> Result<Minted, Problem> {
    let text = form
        .get("refresh_token")
        .ok_or_else(|| Problem::invalid_request("refresh_token is required"))?;
    let invalid = || Problem::invalid_grant("the refresh token is invalid, expired or revoked");
    let presented = Token::parse(text).map_err(|_| invalid())?;
    if presented.kind() != TokenKind::Refresh {
        return Err(invalid());
    }
    let client = match credentials {
        ClientCredentials::IdOnly(client_id) => {
            Some(super::code::public_client(state, &client_id).await?)
        }
        credentials => authenticate::client(state, credentials).await?,
    };
    let record = match state
        .store()
        .inspect_refresh(&presented)
        .await
        .map_err(|error| Problem::from_store(&error))?
    {
        RefreshState::Live(record) => record,
        RefreshState::Reused { revoked } => {
            tracing::warn!(token_id = %presented.id(), revoked, "rotated refresh token presented again: its family is revoked");
            metrics::revoked("refresh_reuse", revoked);
            return Err(invalid());
        }
        RefreshState::Unknown => return Err(invalid()),
    };
    let client_id = client.map(|client| client.client_id);
    if record.client_id != client_id {
        return Err(if client_id.is_none() {
            Problem::invalid_client()
        } else {
            Problem::invalid_grant("the refresh token was issued to another client")
        });
    }
    let scopes = narrow(requested, &record.scopes)?;
    let user = state
        .accounts()
        .user(&record.username)
        .await
        .map_err(|error| Problem::from_accounts(&error))?;
    let Some(user) = user.filter(|user| user.subject == record.subject && !user.disabled) else {
        let _ = state
            .store()
            .revoke_family(&record.subject, record.family)
            .await;
        return Err(invalid());
    };
    // Scopes the user has lost since the login are dropped.
    let scopes = Scopes::from_tokens(scopes.iter().filter(|scope| user.scopes.contains(scope)))
        .map_err(|error| Problem::internal(&error))?;
    let (access_ttl, refresh_ttl) = lifetimes(state, true);
    let minted = Grant {
        subject: user.subject,
        username: user.username,
        name: user.name,
        email: user.email,
        scopes,
        client_id,
        access_ttl,
        refresh_ttl,
    }
    .mint_in_family(record.family)
    .map_err(|error| Problem::internal(&error))?;
    match state.store().rotate(&presented, &minted).await {
        Ok(Rotation::Rotated) => {
            log_issue("refresh_token", &minted);
            Ok(minted)
        }
        Ok(Rotation::Reused { revoked }) => {
            tracing::warn!(token_id = %presented.id(), revoked, "refresh token used twice: its family is revoked");
            metrics::revoked("refresh_reuse", revoked);
            Err(invalid())
        }
        Ok(Rotation::Unknown) => Err(invalid()),
        Err(error) => Err(Problem::from_store(&error)),
    }
}

fn log_issue(grant: &'static str, minted: &Minted) {
    let record = &minted.access.record;
    tracing::info!(
        grant,
        subject = %record.subject,
        client_id = record.client_id.as_deref().unwrap_or("-"),
        token_id = %record.id,
        family = %record.family,
        "tokens issued"
    );
}
