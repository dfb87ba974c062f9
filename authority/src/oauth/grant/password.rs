//! RFC 6749 §4.3: the `password` grant, a user's username and password.

use token_repository::{Generation, ResourceUri, Scopes, TokenWriter as _};
use zeroize::Zeroizing;

use super::{grant as issue, narrow, store};
use crate::accounts::User;
use crate::address::ClientAddress;
use crate::authenticate;
use crate::credentials::ClientCredentials;
use crate::form::Form;
use crate::metrics;
use crate::oauth::resource;
use crate::password::Verification;
use crate::problem::Problem;
use crate::state::AppState;

/// The grant's parameters.
pub struct Request {
    /// Lower-cased.
    username: String,
    password: Zeroizing<String>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Request {
    /// Reads `username` and `password`.
    ///
    /// # Errors
    ///
    /// `invalid_request` when either is missing.
    pub fn parse(form: &Form) -> Result<Self, Problem> {
        let username = form
            .get("username")
            .ok_or_else(|| Problem::invalid_request("username is required"))?
            .to_ascii_lowercase();
        let password = Zeroizing::new(
            form.get("password")
                .ok_or_else(|| Problem::invalid_request("password is required"))?
                .to_owned(),
        );
        Ok(Self { username, password })
    }
}

/// Checks the client (when it presents credentials), the throttle and the
/// password; mints and stores the user's tokens.
pub(super) async fn grant(
    state: &AppState,
    request: Request,
    credentials: ClientCredentials,
    (requested, resources): (Option<Scopes>, &[ResourceUri]),
    address: ClientAddress,
) -> Result<token_repository::Minted, Problem> {
    let Request { username, password } = request;
    let client = authenticate::client(state, credentials, address).await?;
    let target = resource::resolve(state, resources, client.as_deref()).await?;
    // Counted before the password is checked: concurrent guesses each get
    // a count of their own, so no more than the limit are ever checked.
    if let Some(wait) = state.throttle().begin_login(&username, address).await? {
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
    state.throttle().login_succeeded(&username, address).await?;
    if needs_rehash {
        upgrade_hash(
            state.clone(),
            username.clone(),
            user.password_hash.clone(),
            password,
        );
    }
    let explicit = requested.is_some();
    let scopes = target.fit(narrow(requested, &user.scopes)?, explicit)?;
    let holder = user.holder(scopes, client.map(|client| client.client_id.clone()));
    let minted = issue(state.config(), holder, target.audience, true)
        .mint()
        .map_err(|error| Problem::internal(&error))?;
    store(state, &minted, Some(generation)).await?;
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
        .await?
        .map_or_else(|| format!("unknown:{username}"), |user| user.subject);
    let generation = state.store().generation(&subject).await?;
    let user = state.accounts().user(username).await?;
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
        .await?;
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
