//! `POST /oauth/token` (RFC 6749): the `password`, `client_credentials`,
//! `refresh_token` and `authorization_code` ([`super::code`]) grants.

use http::{HeaderMap, StatusCode};
use serde::Serialize;
use token_repository::{
    Error as StoreError, Generation, Grant, Holder, Minted, RefreshRefusal, RefreshState, Rotation,
    Scopes, Timestamp, Token, TokenKind, TokenWriter as _,
};
use warp::reply::Response;
use zeroize::Zeroizing;

use crate::accounts::{Client, User, client_subject};
use crate::address::ClientAddress;
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
    address: ClientAddress,
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
    address: ClientAddress,
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
            let minted = super::code::exchange(state, form, credentials, address).await?;
            log_issue("authorization_code", &minted);
            Ok(minted)
        }
        Some("client_credentials") => {
            client_credentials_grant(state, credentials, requested, address).await
        }
        Some("refresh_token") => refresh(state, form, credentials, requested, address).await,
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
            scope: access.record.holder.scopes.to_string(),
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
pub(crate) async fn store(
    state: &AppState,
    minted: &Minted,
    guard: Option<Generation>,
) -> Result<(), Problem> {
    match state.store().issue(minted, guard).await {
        Ok(issued) => {
            if !issued.evicted.is_empty() {
                tracing::info!(
                    subject = %minted.subject(),
                    evicted = ?issued.evicted,
                    cap = state.config().max_sessions_per_subject,
                    "session cap reached: the subject's oldest sessions were revoked"
                );
                metrics::sessions_evicted(issued.evicted.len());
            }
            Ok(())
        }
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
    address: ClientAddress,
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
    let client = authenticate::client(state, credentials, address).await?;
    // Counted before the password is checked: concurrent guesses each get
    // a count of their own, so no more than the limit are ever checked.
    if let Some(wait) = state
        .throttle()
        .begin_login(&username, address)
        .await
        .map_err(|error| Problem::from_store(&error))?
    {
        tracing::info!(username = ?username, %address, "login throttled");
        metrics::throttled();
        return Err(Problem::throttled(wait));
    }
    let checked = check_password(state, &username, password.clone()).await;
    let (user, needs_rehash) = match checked {
        Ok(Some(found)) => found,
        Ok(None) => {
            tracing::info!(username = ?username, %address, "login failed");
            return Err(Problem::invalid_grant("invalid username or password"));
        }
        Err(problem) => {
            // Not decided (the store or the hashing pool failed): the
            // attempt does not count.
            if let Err(error) = state.throttle().login_undecided(&username, address).await {
                tracing::warn!(%error, "a failed login attempt stays counted");
            }
            return Err(problem);
        }
    };
    let (user, generation) = user;
    state
        .throttle()
        .login_succeeded(&username, address)
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
        holder: Holder {
            subject: user.subject,
            username: user.username,
            name: user.name,
            email: user.email,
            scopes,
            client_id: client.map(|client| client.client_id),
        },
        access_ttl,
        refresh_ttl,
    }
    .mint()
    .map_err(|error| Problem::internal(&error))?;
    store(state, &minted, Some(generation)).await?;
    log_issue("password", &minted);
    Ok(minted)
}

/// The user `username` and the revocation generation read before the
/// check, when `password` is right; `None` for a wrong password, an
/// unknown or a disabled user.
pub(crate) async fn check_password(
    state: &AppState,
    username: &str,
    password: Zeroizing<String>,
) -> Result<Option<((User, Generation), bool)>, Problem> {
    // The first read only names the subject. Its revocation generation is
    // read next, and the record whose password is checked after that: a
    // password change or disabling that lands anywhere in between is either
    // seen by the second read or bumps the generation, which refuses the
    // issue. (Checking the first read's hash would let the old password
    // succeed after a change: the generation read after the change's
    // revocation no longer guards anything.) Unknown users take the same
    // path, so that both cost the same.
    let subject = state
        .accounts()
        .user(username)
        .await
        .map_err(|error| Problem::from_accounts(&error))?
        .map_or_else(|| format!("unknown:{username}"), |user| user.subject);
    let generation = state
        .store()
        .generation(&subject)
        .await
        .map_err(|error| Problem::from_store(&error))?;
    let user = state
        .accounts()
        .user(username)
        .await
        .map_err(|error| Problem::from_accounts(&error))?;
    if user.as_ref().is_some_and(|user| user.subject != subject) {
        // Removed and created again between the reads.
        return Err(Problem::invalid_grant(
            "the credentials changed while the request was processed; try again",
        ));
    }
    let verification = state
        .hasher()
        .verify(
            password,
            user.as_ref().map(|user| user.password_hash.as_str()),
        )
        .await
        .map_err(|error| Problem::from_hash(&error))?;
    Ok(match (user, verification) {
        (Some(user), Verification::Match { needs_rehash }) if !user.disabled => {
            Some(((user, generation), needs_rehash))
        }
        _ => None,
    })
}

/// Replaces a hash made with old parameters, in the background, unless the
/// password changed meanwhile.
pub(crate) fn upgrade_hash(
    state: AppState,
    username: String,
    old_hash: String,
    password: Zeroizing<String>,
) {
    tokio::spawn(async move {
        let new_hash = match state.hasher().hash(password).await {
            Ok(hash) => hash,
            Err(error) => {
                tracing::warn!(%error, username = ?username, "could not upgrade a password hash");
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
                tracing::info!(username = ?username, "password hash upgraded to the configured parameters");
            }
            Ok(_) => {
                tracing::debug!(username = ?username, "password changed meanwhile; hash not upgraded");
            }
            Err(error) => {
                tracing::warn!(%error, username = ?username, "could not upgrade a password hash");
            }
        }
    });
}

/// RFC 6749 §4.4: an application obtains a token for itself.
async fn client_credentials_grant(
    state: &AppState,
    credentials: ClientCredentials,
    requested: Option<Scopes>,
    address: ClientAddress,
) -> Result<Minted, Problem> {
    let ClientCredentials::Secret { client_id, .. } = &credentials else {
        return Err(Problem::invalid_client());
    };
    let generation = state
        .store()
        .generation(&client_subject(client_id))
        .await
        .map_err(|error| Problem::from_store(&error))?;
    let client: Client = authenticate::required_client(state, credentials, address).await?;
    let scopes = narrow(requested, &client.scopes)?;
    let (access_ttl, _) = lifetimes(state, false);
    let minted = Grant {
        holder: Holder {
            subject: client.subject(),
            username: client.client_id.clone(),
            name: None,
            email: None,
            scopes,
            client_id: Some(client.client_id),
        },
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
    address: ClientAddress,
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
        credentials => authenticate::client(state, credentials, address).await?,
    };
    let record = match state
        .store()
        .inspect_refresh(&presented)
        .await
        .map_err(|error| Problem::from_store(&error))?
    {
        RefreshState::Live(record) => record,
        RefreshState::Refused(refusal) => return Err(refused(&presented, refusal)),
    };
    let client_id = client.map(|client| client.client_id);
    if record.holder.client_id != client_id {
        return Err(if client_id.is_none() {
            Problem::invalid_client()
        } else {
            Problem::invalid_grant("the refresh token was issued to another client")
        });
    }
    let scopes = narrow(requested, &record.holder.scopes)?;
    let user = state
        .accounts()
        .user(&record.holder.username)
        .await
        .map_err(|error| Problem::from_accounts(&error))?;
    let Some(user) = user.filter(|user| user.subject == record.holder.subject && !user.disabled)
    else {
        let _ = state
            .store()
            .revoke_family(&record.holder.subject, record.family)
            .await;
        return Err(invalid());
    };
    // Scopes the user has lost since the login are dropped.
    let scopes = Scopes::from_tokens(scopes.iter().filter(|scope| user.scopes.contains(scope)))
        .map_err(|error| Problem::internal(&error))?;
    let (access_ttl, refresh_ttl) = lifetimes(state, true);
    let minted = Grant {
        holder: Holder {
            subject: user.subject,
            username: user.username,
            name: user.name,
            email: user.email,
            scopes,
            client_id,
        },
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
        Ok(Rotation::Refused(refusal)) => Err(refused(&presented, refusal)),
        Err(error) => Err(Problem::from_store(&error)),
    }
}

/// The answer to a refused refresh token, whether the refusal came from
/// inspecting it or from rotating it (used meanwhile); reuse is logged and
/// counted here, once.
fn refused(presented: &Token, refusal: RefreshRefusal) -> Problem {
    if let RefreshRefusal::Reused { revoked } = refusal {
        tracing::warn!(token_id = %presented.id(), revoked, "rotated refresh token presented again: its family is revoked");
        metrics::revoked("refresh_reuse", revoked);
    }
    Problem::invalid_grant("the refresh token is invalid, expired or revoked")
}

fn log_issue(grant: &'static str, minted: &Minted) {
    let record = &minted.access.record;
    tracing::info!(
        grant,
        subject = %record.holder.subject,
        client_id = record.holder.client_id.as_deref().unwrap_or("-"),
        token_id = %record.id,
        family = %record.family,
        "tokens issued"
    );
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use token_test_harness::RedisServer;
    use zeroize::Zeroizing;

    use crate::admin::{self, NewUser, UserChange};
    use crate::test_support::{login, state};

    /// A password change that lands after a login read the user record
    /// (paused there by the store) leaves the old password without a token:
    /// the login checks the record it reads after the revocation generation.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn password_change_between_the_reads_refuses_the_old_password() {
        let redis = RedisServer::start();
        let state = state(&redis);
        admin::create_user(
            &state,
            NewUser {
                username: "alice".into(),
                password: Zeroizing::new("old-password".into()),
                name: None,
                email: None,
                scopes: token_repository::Scopes::empty(),
            },
        )
        .await
        .expect("user");
        assert_eq!(login(&state, "alice", "old-password").await.0, 200);

        let (reached, release) = state.accounts().faults().after_user_read.arm();
        let racing = tokio::spawn({
            let state = state.clone();
            async move { login(&state, "alice", "old-password").await }
        });
        tokio::time::timeout(Duration::from_secs(30), reached)
            .await
            .expect("the login reads the user in time")
            .expect("pause reached");
        let change = UserChange {
            password: Some(Zeroizing::new("new-password".into())),
            ..UserChange::default()
        };
        admin::change_user(&state, "alice", change)
            .await
            .expect("password changed");
        release.send(()).expect("login still waiting");
        let (status, body) = racing.await.expect("login task");
        assert_eq!(status, 400, "the old password yielded tokens");
        assert_eq!(body["error"], "invalid_grant");
        assert!(body.get("access_token").is_none());

        let (status, body) = login(&state, "alice", "new-password").await;
        assert_eq!(status, 200, "{body}");
    }
}
