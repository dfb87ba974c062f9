//! Users: create, change (password, scopes, details, disabled), remove,
//! read.

use serde::Serialize;
use token_repository::{Scopes, Timestamp};
use zeroize::Zeroizing;

use super::{check_password, check_text, hash, revoke_all};
use crate::accounts::{User, valid_username};
use crate::problem::Problem;
use crate::state::AppState;

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
