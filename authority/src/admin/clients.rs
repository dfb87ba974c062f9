//! Clients: register, change (scopes, redirect URIs, limits, disabled),
//! rotate the secret, remove, read.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ipnet::IpNet;
use rand::TryRng as _;
use serde::Serialize;
use token_repository::{Scopes, Timestamp};
use zeroize::Zeroizing;

use super::revoke_all;
use crate::accounts::{Client, PreviousSecret, client_subject, valid_client_id};
use crate::problem::Problem;
use crate::state::AppState;

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
        .map(|digest| digest.to_text())
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
