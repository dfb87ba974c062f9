//! Account administration, shared by the admin HTTP API and the CLI.
//!
//! Whatever weakens an account's existing tokens revokes them: disabling or
//! removing a user, changing its password or scopes; disabling or removing a
//! client, or changing its scopes. The change is written first and the
//! revocation second, so a login racing with the change either sees the new
//! account or has its tokens revoked (the store's revocation generation
//! refuses a grant that checked the old password).
//!
//! Every change is safe to retry: when the revocation fails (503), the
//! account is already changed, and a retry of the same request finds nothing
//! left to change. So revocation follows from what the request asks for, not
//! from what it changed: a request that sets a password, disables, or sets
//! scopes revokes every time. Removal first disables the account, then
//! revokes, forgets the connected services and deletes the record last: a
//! removal that failed half-way leaves a disabled account that a retry
//! finds and finishes.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ipnet::IpNet;
use rand::TryRng as _;
use serde::Serialize;
use token_repository::{Scopes, Timestamp, TokenWriter as _};
use zeroize::Zeroizing;

use crate::accounts::{
    Client, PreviousSecret, User, client_subject, valid_client_id, valid_username,
};
use crate::problem::Problem;
use crate::state::AppState;

/// Passwords shorter than this are refused.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Passwords longer than this are refused (hashing cost stays bounded).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// A user to create.
#[derive(Debug)]
pub struct NewUser {
    /// Login name (lower-cased before use).
    pub username: String,
    /// The password.
    pub password: Zeroizing<String>,
    /// Display name.
    pub name: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Scopes the user may be granted.
    pub scopes: Scopes,
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct UserChange {
    /// New display name (`Some(None)` clears it).
    pub name: Option<Option<String>>,
    /// New email (`Some(None)` clears it).
    pub email: Option<Option<String>>,
    /// New scopes (revokes the user's tokens).
    pub scopes: Option<Scopes>,
    /// Disable (revokes the user's tokens) or enable.
    pub disabled: Option<bool>,
    /// New password (revokes the user's tokens).
    pub password: Option<Zeroizing<String>>,
}

/// A client to register.
#[derive(Debug, Default)]
pub struct NewClient {
    /// Scopes it may request for itself.
    pub scopes: Scopes,
    /// May introspect.
    pub introspect: bool,
    /// May fetch users' provider tokens (connected services).
    pub view_access_tokens: bool,
    /// Of these providers only (`None`: of every provider; checked with
    /// [`check_view_providers`]).
    pub view_providers: Option<Vec<String>>,
    /// Networks it may fetch them from (empty: any).
    pub allowed_ips: Vec<IpNet>,
    /// Redirect URIs of the authorization code flow (checked with
    /// [`crate::oauth::redirect::check_registration`]).
    pub redirect_uris: Vec<String>,
    /// A public client: no secret, PKCE only.
    pub public: bool,
    /// A first-party application: no consent page.
    pub first_party: bool,
    /// Registered resources its tokens may name (empty: any).
    pub resources: Vec<String>,
}

/// Changes to a client; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct ClientChange {
    /// New scopes (revokes the client's own tokens).
    pub scopes: Option<Scopes>,
    /// Allow or forbid introspection.
    pub introspect: Option<bool>,
    /// Allow or forbid fetching users' provider tokens.
    pub view_access_tokens: Option<bool>,
    /// New provider list (`Some(None)`: every provider again).
    pub view_providers: Option<Option<Vec<String>>>,
    /// New address allow-list (empty: any).
    pub allowed_ips: Option<Vec<IpNet>>,
    /// New resource list (empty: any registered resource).
    pub resources: Option<Vec<String>>,
    /// Disable (revokes the client's own tokens) or enable.
    pub disabled: Option<bool>,
}

/// What the API shows of a user: never the hash.
///
/// Not a [`token_repository::Holder`]: the admin API's JSON names the
/// user's grantable scopes `scope` (one space-delimited string, as in
/// OAuth), has no client and adds account state; it is a published format.
#[derive(Debug, Serialize)]
pub struct UserView {
    /// Stable id.
    pub subject: String,
    /// Login name.
    pub username: String,
    /// Display name.
    pub name: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Space-delimited scopes.
    pub scope: String,
    /// Whether logins are refused.
    pub disabled: bool,
    /// Creation time, Unix seconds.
    pub created_at: u64,
    /// Last change, Unix seconds.
    pub updated_at: u64,
    /// The identity provider a federated account signs in with: the
    /// configured provider, the issuer and the subject there; absent for
    /// password accounts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_provider: Option<crate::accounts::Identity>,
}

impl From<&User> for UserView {
    fn from(user: &User) -> Self {
        Self {
            subject: user.subject.clone(),
            username: user.username.clone(),
            name: user.name.clone(),
            email: user.email.clone(),
            scope: user.scopes.to_string(),
            disabled: user.disabled,
            created_at: user.created_at.as_unix_secs(),
            updated_at: user.updated_at.as_unix_secs(),
            identity_provider: user.identity.clone(),
        }
    }
}

/// What the API shows of a client: never the hash.
#[derive(Debug, Serialize)]
pub struct ClientView {
    /// Public id.
    pub client_id: String,
    /// Space-delimited scopes.
    pub scope: String,
    /// May introspect.
    pub introspect: bool,
    /// May fetch users' provider tokens.
    pub view_access_tokens: bool,
    /// Of these providers only; `None` (JSON `null`): of every provider.
    pub view_providers: Option<Vec<String>>,
    /// Networks it may fetch them from (empty: any).
    pub allowed_ips: Vec<String>,
    /// Redirect URIs of the authorization code flow.
    pub redirect_uris: Vec<String>,
    /// A public client (no secret, PKCE only).
    pub public: bool,
    /// A first-party application (no consent page).
    pub first_party: bool,
    /// Resources its tokens may name (empty: any registered resource).
    pub resources: Vec<String>,
    /// Whether authentication is refused.
    pub disabled: bool,
    /// Registration time, Unix seconds.
    pub created_at: u64,
}

impl From<&Client> for ClientView {
    fn from(client: &Client) -> Self {
        Self {
            client_id: client.client_id.clone(),
            scope: client.scopes.to_string(),
            introspect: client.introspect,
            view_access_tokens: client.view_access_tokens,
            view_providers: client.view_providers.clone(),
            allowed_ips: client.allowed_ips.iter().map(ToString::to_string).collect(),
            redirect_uris: client.redirect_uris.clone(),
            public: client.public,
            first_party: client.first_party,
            resources: client.resources.clone(),
            disabled: client.disabled,
            created_at: client.created_at.as_unix_secs(),
        }
    }
}

fn check_password(password: &str) -> Result<(), Problem> {
    let length = password.chars().count();
    if length < MIN_PASSWORD_LEN || password.len() > MAX_PASSWORD_LEN {
        return Err(Problem::invalid_request(format!(
            "the password must have {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters"
        )));
    }
    if password.chars().any(char::is_control) {
        return Err(Problem::invalid_request(
            "the password contains control characters",
        ));
    }
    Ok(())
}

fn check_text(field: &'static str, value: Option<&str>) -> Result<(), Problem> {
    match value {
        Some(text) if text.len() > 256 || text.chars().any(char::is_control) => {
            Err(Problem::invalid_request(format!(
                "{field} must be at most 256 characters without control characters"
            )))
        }
        _ => Ok(()),
    }
}

async fn hash(state: &AppState, secret: Zeroizing<String>) -> Result<String, Problem> {
    state.hasher().hash(secret).await.map_err(Problem::from)
}

async fn revoke_all(state: &AppState, subject: &str) -> Result<usize, Problem> {
    #[cfg(test)]
    if state.accounts().faults().revocation_fails() {
        return Err(Problem::from(token_repository::Error::Timeout(
            std::time::Duration::ZERO,
        )));
    }
    let revoked = state.store().revoke_all(subject).await?;
    tracing::info!(%subject, revoked, "all tokens of the subject revoked");
    crate::metrics::revoked("account_change", revoked);
    Ok(revoked)
}

/// Creates a user.
///
/// # Errors
///
/// 400 for invalid fields, 409 when the username is taken, 503 when Redis
/// or the hashing pool is unavailable.
pub async fn create_user(state: &AppState, new: NewUser) -> Result<User, Problem> {
    let username = new.username.to_ascii_lowercase();
    if !valid_username(&username) {
        return Err(Problem::invalid_request(
            "username must be 1 to 64 characters of a-z 0-9 . _ @ + -",
        ));
    }
    check_password(&new.password)?;
    check_text("name", new.name.as_deref())?;
    check_text("email", new.email.as_deref())?;
    let now = Timestamp::now();
    let user = User {
        subject: uuid::Uuid::new_v4().to_string(),
        username,
        name: new.name,
        email: new.email,
        scopes: new.scopes,
        password_hash: hash(state, new.password).await?,
        disabled: false,
        created_at: now,
        updated_at: now,
        identity: None,
    };
    let created = state.accounts().create_user(&user).await?;
    if !created {
        return Err(Problem::conflict("a user with this username exists"));
    }
    tracing::info!(username = ?user.username, subject = %user.subject, "user created");
    Ok(user)
}

/// Changes a user; answers the new record and how many tokens were revoked.
///
/// # Errors
///
/// 400 for invalid fields, 404 for an unknown user, 503 when unavailable.
pub async fn change_user(
    state: &AppState,
    username: &str,
    change: UserChange,
) -> Result<(User, usize), Problem> {
    if let Some(password) = &change.password {
        check_password(password)?;
    }
    check_text("name", change.name.as_ref().and_then(Option::as_deref))?;
    check_text("email", change.email.as_ref().and_then(Option::as_deref))?;
    let new_hash = match change.password {
        Some(password) => Some(hash(state, password).await?),
        None => None,
    };
    let Some((old, new)) = state
        .accounts()
        .update_user(username, |user| {
            if let Some(name) = &change.name {
                user.name.clone_from(name);
            }
            if let Some(email) = &change.email {
                user.email.clone_from(email);
            }
            if let Some(scopes) = &change.scopes {
                user.scopes = scopes.clone();
            }
            if let Some(disabled) = change.disabled {
                user.disabled = disabled;
            }
            if let Some(hash) = &new_hash {
                user.password_hash.clone_from(hash);
            }
        })
        .await?
    else {
        return Err(Problem::not_found("no such user"));
    };
    // What the request asks for, not what it changed: a retry after a failed
    // revocation changes nothing and must still revoke.
    let weakening = new_hash.is_some() || change.disabled == Some(true) || change.scopes.is_some();
    let weakened = new.password_hash != old.password_hash
        || (new.disabled && !old.disabled)
        || new.scopes != old.scopes;
    let revoked = if weakening || weakened {
        revoke_all(state, &new.subject).await?
    } else {
        0
    };
    tracing::info!(username = ?username, revoked, "user changed");
    Ok((new, revoked))
}

/// Removes a user and revokes its tokens; answers how many. Its connected
/// services are forgotten too (and revoked at the providers).
///
/// Retry-safe: the user is disabled first, its tokens revoked and its
/// connections forgotten next, and the record deleted last, so a removal
/// that failed with 503 left a disabled user that the retry finds and
/// finishes. Once the record is gone the removal is complete, and another
/// one answers 404.
///
/// # Errors
///
/// 404 for an unknown user, 503 when unavailable.
pub async fn remove_user(state: &AppState, username: &str) -> Result<usize, Problem> {
    let Some((_, user)) = state
        .accounts()
        .update_user(username, |user| user.disabled = true)
        .await?
    else {
        return Err(Problem::not_found("no such user"));
    };
    let revoked = revoke_all(state, &user.subject).await?;
    state
        .connect()
        .forget_all(&user.subject)
        .await
        .map_err(|error| match error {
            token_broker::ConnectError::Store(error) => Problem::from(error),
            _ => Problem::unavailable_because(
                "the user's connected services could not all be forgotten; try again",
            ),
        })?;
    // Only the record we disabled: a user created again under the name
    // meanwhile (another subject) is not removed.
    let removed = state
        .accounts()
        .delete_user_if(username, |current| current.subject == user.subject)
        .await?;
    if !removed {
        tracing::info!(username = ?username, "user removed meanwhile by another request");
    }
    tracing::info!(username = ?username, revoked, "user removed");
    Ok(revoked)
}

/// One user.
///
/// # Errors
///
/// 404 for an unknown user, 503 when unavailable.
pub async fn user(state: &AppState, username: &str) -> Result<User, Problem> {
    state
        .accounts()
        .user(username)
        .await?
        .ok_or_else(|| Problem::not_found("no such user"))
}

/// All users.
///
/// # Errors
///
/// 503 when unavailable.
pub async fn users(state: &AppState) -> Result<Vec<User>, Problem> {
    state.accounts().users().await.map_err(Problem::from)
}

/// Registers a client; answers it and its secret (shown this once; none
/// for a public client).
///
/// # Errors
///
/// 400 for an invalid id or redirect URI, 409 when taken, 503 when
/// unavailable.
pub async fn create_client(
    state: &AppState,
    client_id: &str,
    new: NewClient,
) -> Result<(Client, Option<Zeroizing<String>>), Problem> {
    if !valid_client_id(client_id) {
        return Err(Problem::invalid_request(
            "client_id must be 1 to 64 characters of A-Z a-z 0-9 . _ -",
        ));
    }
    crate::oauth::redirect::check_registration(&new.redirect_uris)
        .map_err(Problem::invalid_request)?;
    let resources = crate::oauth::resource::check_client_resources(state, &new.resources).await?;
    if new.public && new.redirect_uris.is_empty() {
        return Err(Problem::invalid_request(
            "a public client needs at least one redirect URI",
        ));
    }
    // A public client gets a secret too, hashed and never shown: nobody can
    // authenticate with it, and every client record has the same shape.
    let secret = new_secret()?;
    let now = Timestamp::now();
    let client = Client {
        client_id: client_id.to_owned(),
        secret_hash: secret_digest(state, client_id, &secret).await?,
        previous_secret: None,
        scopes: new.scopes,
        introspect: new.introspect,
        view_access_tokens: new.view_access_tokens,
        view_providers: new.view_providers.map(check_view_providers).transpose()?,
        allowed_ips: new.allowed_ips,
        redirect_uris: new.redirect_uris,
        public: new.public,
        first_party: new.first_party,
        resources,
        disabled: false,
        created_at: now,
        updated_at: now,
    };
    let created = state.accounts().create_client(&client).await?;
    if !created {
        return Err(Problem::conflict("a client with this id exists"));
    }
    tracing::info!(client_id = ?client_id, public = client.public, "client registered");
    let secret = (!client.public).then_some(secret);
    Ok((client, secret))
}

/// The stored form of a client secret: its keyed SHA-256 digest.
async fn secret_digest(state: &AppState, client_id: &str, secret: &str) -> Result<String, Problem> {
    state
        .accounts()
        .deployment_key()
        .secret_digest(client_id, secret)
        .await
        .map_err(Problem::from)
}

/// The longest grace period of a rotated-out client secret (30 days).
pub const MAX_SECRET_GRACE: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// Gives a client a new generated secret; answers the client and the
/// secret (shown this once). For `grace`, the old secret keeps verifying
/// too (a secret rotated out earlier stops at once); without, it stops at
/// once. The client's tokens stay valid.
///
/// # Errors
///
/// 400 for a grace period over [`MAX_SECRET_GRACE`], 404 for an unknown
/// client, 503 when unavailable.
pub async fn rotate_secret(
    state: &AppState,
    client_id: &str,
    grace: std::time::Duration,
) -> Result<(Client, Zeroizing<String>), Problem> {
    if grace > MAX_SECRET_GRACE {
        return Err(Problem::invalid_request(
            "the grace period is at most 2592000 seconds (30 days)",
        ));
    }
    let secret = new_secret()?;
    let digest = secret_digest(state, client_id, &secret).await?;
    let expires_at = Timestamp::now().saturating_add(grace);
    let Some((_, client)) = state
        .accounts()
        .update_client(client_id, |client| {
            client.previous_secret = (!grace.is_zero()).then(|| PreviousSecret {
                secret_hash: client.secret_hash.clone(),
                expires_at,
            });
            client.secret_hash.clone_from(&digest);
        })
        .await?
    else {
        return Err(Problem::not_found("no such client"));
    };
    tracing::info!(
        client_id = ?client_id,
        grace_seconds = grace.as_secs(),
        "client secret rotated"
    );
    Ok((client, secret))
}

/// Parses address allow-list entries: CIDR networks, or single addresses
/// (taken as /32 or /128).
///
/// # Errors
///
/// 400 `invalid_request` naming the entry.
pub fn parse_networks(entries: &[String]) -> Result<Vec<IpNet>, Problem> {
    entries
        .iter()
        .map(|entry| {
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(IpNet::from))
                .map(|network| network.trunc())
                .map_err(|_| {
                    Problem::invalid_request(format!(
                        "{entry:?} is not an IP network (like 10.0.0.0/8) or address"
                    ))
                })
        })
        .collect()
}

/// The most providers one client's `view_providers` may name.
pub const MAX_VIEW_PROVIDERS: usize = 64;

/// Checks a `view_providers` list: provider names (`a-z 0-9 _ -`, see
/// [`token_broker::providers::valid_name`]), at most
/// [`MAX_VIEW_PROVIDERS`]; answers it sorted without duplicates. Names
/// need not be configured yet (a provider added later is then allowed).
///
/// # Errors
///
/// 400 `invalid_request` naming the bad entry or the cap.
pub fn check_view_providers(mut names: Vec<String>) -> Result<Vec<String>, Problem> {
    if names.len() > MAX_VIEW_PROVIDERS {
        return Err(Problem::invalid_request(format!(
            "view_providers may name at most {MAX_VIEW_PROVIDERS} providers"
        )));
    }
    if let Some(index) = names
        .iter()
        .position(|name| !token_broker::providers::valid_name(name))
    {
        return Err(Problem::invalid_request(format!(
            "view_providers[{index}] is not a provider name (1 to 32 of a-z 0-9 _ -)"
        )));
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// A client secret: `tsc_` and 256 random bits, base64url.
fn new_secret() -> Result<Zeroizing<String>, Problem> {
    let mut bytes = Zeroizing::new([0_u8; 32]);
    rand::rngs::SysRng
        .try_fill_bytes(&mut bytes[..])
        .map_err(|error| Problem::internal(&error))?;
    let mut secret = Zeroizing::new(String::from("tsc_"));
    URL_SAFE_NO_PAD.encode_string(&bytes[..], &mut secret);
    Ok(secret)
}

/// Changes a client; answers the new record and how many of its own tokens
/// were revoked.
///
/// # Errors
///
/// 404 for an unknown client, 503 when unavailable.
pub async fn change_client(
    state: &AppState,
    client_id: &str,
    change: ClientChange,
) -> Result<(Client, usize), Problem> {
    let view_providers = change
        .view_providers
        .map(|list| list.map(check_view_providers).transpose())
        .transpose()?;
    let resources = match &change.resources {
        Some(resources) => {
            Some(crate::oauth::resource::check_client_resources(state, resources).await?)
        }
        None => None,
    };
    let Some((old, new)) = state
        .accounts()
        .update_client(client_id, |client| {
            if let Some(scopes) = &change.scopes {
                client.scopes = scopes.clone();
            }
            if let Some(introspect) = change.introspect {
                client.introspect = introspect;
            }
            if let Some(view) = change.view_access_tokens {
                client.view_access_tokens = view;
            }
            if let Some(list) = &view_providers {
                client.view_providers.clone_from(list);
            }
            if let Some(networks) = &change.allowed_ips {
                client.allowed_ips.clone_from(networks);
            }
            if let Some(resources) = &resources {
                client.resources.clone_from(resources);
            }
            if let Some(disabled) = change.disabled {
                client.disabled = disabled;
            }
        })
        .await?
    else {
        return Err(Problem::not_found("no such client"));
    };
    // What the request asks for, not what it changed (see the module).
    let weakening =
        change.disabled == Some(true) || change.scopes.is_some() || change.resources.is_some();
    let weakened = (new.disabled && !old.disabled)
        || new.scopes != old.scopes
        || new.resources != old.resources;
    let revoked = if weakening || weakened {
        revoke_all(state, &new.subject()).await?
    } else {
        0
    };
    Ok((new, revoked))
}

/// Removes a client and revokes its own tokens.
///
/// Retry-safe like [`remove_user`]: disabled first, revoked next, the
/// record deleted last.
///
/// # Errors
///
/// 404 for an unknown client, 503 when unavailable.
pub async fn remove_client(state: &AppState, client_id: &str) -> Result<usize, Problem> {
    if state
        .accounts()
        .update_client(client_id, |client| client.disabled = true)
        .await?
        .is_none()
    {
        return Err(Problem::not_found("no such client"));
    }
    let revoked = revoke_all(state, &client_subject(client_id)).await?;
    state.accounts().delete_client(client_id).await?;
    tracing::info!(client_id = ?client_id, revoked, "client removed");
    Ok(revoked)
}

/// One client.
///
/// # Errors
///
/// 404 for an unknown client, 503 when unavailable.
pub async fn client(state: &AppState, client_id: &str) -> Result<Client, Problem> {
    state
        .accounts()
        .client(client_id)
        .await?
        .ok_or_else(|| Problem::not_found("no such client"))
}

/// All clients.
///
/// # Errors
///
/// 503 when unavailable.
pub async fn clients(state: &AppState) -> Result<Vec<Client>, Problem> {
    state.accounts().clients().await.map_err(Problem::from)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use http::StatusCode;
    use token_test_harness::RedisServer;

    use super::*;
    use crate::test_support::{live, login, state, token};

    const PASSWORD: &str = "a-long-password";

    async fn alice(state: &AppState) {
        create_user(
            state,
            NewUser {
                username: "alice".into(),
                password: Zeroizing::new(PASSWORD.into()),
                name: None,
                email: None,
                scopes: Scopes::parse("read write").expect("scopes"),
            },
        )
        .await
        .expect("user");
    }

    async fn access_token(state: &AppState) -> String {
        let (status, body) = login(state, "alice", PASSWORD).await;
        assert_eq!(status, 200, "{body}");
        let access = body["access_token"].as_str().expect("access").to_owned();
        assert!(live(state, &access).await);
        access
    }

    fn fail_next_revocation(state: &AppState) {
        state
            .accounts()
            .faults()
            .failing_revocations
            .store(1, Ordering::SeqCst);
    }

    /// A disable or scope change whose revocation failed (503) revokes when
    /// retried, although the retry finds nothing left to change.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retried_user_changes_revoke() {
        let redis = RedisServer::start();
        let state = state(&redis);
        alice(&state).await;

        let access = access_token(&state).await;
        let disable = || UserChange {
            disabled: Some(true),
            ..UserChange::default()
        };
        fail_next_revocation(&state);
        let failed = change_user(&state, "alice", disable())
            .await
            .expect_err("revocation fails");
        assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(user(&state, "alice").await.expect("user").disabled);
        assert!(live(&state, &access).await, "nothing revoked yet");
        let (_, revoked) = change_user(&state, "alice", disable())
            .await
            .expect("retry");
        assert!(revoked >= 2, "{revoked}");
        assert!(!live(&state, &access).await, "the retry revoked");

        let enable = UserChange {
            disabled: Some(false),
            ..UserChange::default()
        };
        let (_, revoked) = change_user(&state, "alice", enable).await.expect("enable");
        assert_eq!(revoked, 0, "enabling weakens nothing");
        let access = access_token(&state).await;
        let narrow = || UserChange {
            scopes: Some(Scopes::parse("read").expect("scopes")),
            ..UserChange::default()
        };
        fail_next_revocation(&state);
        let failed = change_user(&state, "alice", narrow())
            .await
            .expect_err("revocation fails");
        assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(live(&state, &access).await);
        change_user(&state, "alice", narrow()).await.expect("retry");
        assert!(!live(&state, &access).await, "the retry revoked");
    }

    /// A removal whose revocation failed leaves a disabled user that the
    /// retry finds and removes, revoking its tokens; after that, 404.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retried_user_removal_completes() {
        let redis = RedisServer::start();
        let state = state(&redis);
        alice(&state).await;
        let access = access_token(&state).await;

        fail_next_revocation(&state);
        let failed = remove_user(&state, "alice")
            .await
            .expect_err("revocation fails");
        assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(live(&state, &access).await);
        assert!(user(&state, "alice").await.expect("kept").disabled);
        let (status, _) = login(&state, "alice", PASSWORD).await;
        assert_eq!(status, 400, "a half-removed user cannot log in");

        let revoked = remove_user(&state, "alice").await.expect("retry");
        assert!(revoked >= 2, "{revoked}");
        assert!(!live(&state, &access).await);
        assert_eq!(
            user(&state, "alice").await.expect_err("gone").status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            remove_user(&state, "alice")
                .await
                .expect_err("gone")
                .status(),
            StatusCode::NOT_FOUND
        );
    }

    /// The same for clients: a retried disable or removal revokes the
    /// client's own tokens.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retried_client_changes_revoke() {
        let redis = RedisServer::start();
        let state = state(&redis);
        let new = NewClient {
            scopes: Scopes::parse("jobs").expect("scopes"),
            ..NewClient::default()
        };
        let (_, secret) = create_client(&state, "worker", new).await.expect("client");
        let client_token = |state: AppState, secret: Zeroizing<String>| async move {
            let (status, body) = token(
                &state,
                &format!(
                    "grant_type=client_credentials&client_id=worker&client_secret={}",
                    secret.as_str()
                ),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            body["access_token"].as_str().expect("access").to_owned()
        };

        let secret = secret.expect("a confidential client has a secret");
        let access = client_token(state.clone(), secret.clone()).await;
        let disable = || ClientChange {
            disabled: Some(true),
            ..ClientChange::default()
        };
        fail_next_revocation(&state);
        let failed = change_client(&state, "worker", disable())
            .await
            .expect_err("revocation fails");
        assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(live(&state, &access).await);
        change_client(&state, "worker", disable())
            .await
            .expect("retry");
        assert!(!live(&state, &access).await, "the retry revoked");

        let enable = ClientChange {
            disabled: Some(false),
            ..ClientChange::default()
        };
        change_client(&state, "worker", enable)
            .await
            .expect("enable");
        let access = client_token(state.clone(), secret).await;
        fail_next_revocation(&state);
        let failed = remove_client(&state, "worker")
            .await
            .expect_err("revocation fails");
        assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(live(&state, &access).await);
        remove_client(&state, "worker").await.expect("retry");
        assert!(!live(&state, &access).await, "the retry revoked");
        assert_eq!(
            remove_client(&state, "worker")
                .await
                .expect_err("gone")
                .status(),
            StatusCode::NOT_FOUND
        );
    }
}

/// What the API shows of a registered resource server.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceView {
    /// Its URI, as registered.
    pub uri: String,
    /// Its tag in records (8 hex characters).
    pub tag: String,
    /// Its declared scopes, space-delimited (empty: any scope).
    pub scope: String,
    /// Whether it is the authority itself (registered implicitly, never
    /// removed).
    pub authority: bool,
}

impl ResourceView {
    fn of(state: &AppState, resource: &crate::resources::Resource) -> Self {
        Self {
            uri: resource.uri.as_str().to_owned(),
            tag: resource.tag().to_hex(),
            scope: resource.scopes.to_string(),
            authority: resource.tag() == state.resources().issuer().tag(),
        }
    }
}

/// Registers a resource server (an audience) with its declared scopes.
///
/// # Errors
///
/// 400 for a malformed URI, 409 when it is registered or its tag is taken
/// by another resource (one chance in 2³²: register it under another
/// URI), 503 when unavailable.
pub async fn add_resource(
    state: &AppState,
    uri: &str,
    scopes: &Scopes,
) -> Result<ResourceView, Problem> {
    let uri = token_repository::ResourceUri::parse(uri)
        .map_err(|error| Problem::invalid_request(error.to_string()))?;
    match state.resources().add(&uri, scopes).await? {
        crate::resources::Registered::Added => Ok(ResourceView::of(
            state,
            &crate::resources::Resource {
                uri,
                scopes: scopes.clone(),
            },
        )),
        crate::resources::Registered::Exists => {
            Err(Problem::conflict("this resource is registered"))
        }
        crate::resources::Registered::Collision(other) => Err(Problem::conflict(format!(
            "the tag of this URI is that of the registered resource {other:?}; \
             register the service under another URI"
        ))),
    }
}

/// Removes a resource server, named by its URI or its hex tag. Tokens
/// already issued for it keep their audience until they expire.
///
/// # Errors
///
/// 400 for the authority's own resource, 404 for an unknown one, 503 when
/// unavailable.
pub async fn remove_resource(state: &AppState, name: &str) -> Result<ResourceView, Problem> {
    let tag = token_repository::ResourceTag::from_hex(name)
        .or_else(|| {
            token_repository::ResourceUri::parse(name)
                .ok()
                .map(|uri| uri.tag())
        })
        .ok_or_else(|| Problem::not_found("no such resource"))?;
    if tag == state.resources().issuer().tag() {
        return Err(Problem::invalid_request(
            "the authority's own resource cannot be removed",
        ));
    }
    let removed = state
        .resources()
        .remove(tag)
        .await?
        .ok_or_else(|| Problem::not_found("no such resource"))?;
    Ok(ResourceView::of(state, &removed))
}

/// Every resource server, the authority first.
///
/// # Errors
///
/// 503 when unavailable.
pub async fn resources(state: &AppState) -> Result<Vec<ResourceView>, Problem> {
    Ok(state
        .resources()
        .list()
        .await?
        .iter()
        .map(|resource| ResourceView::of(state, resource))
        .collect())
}
