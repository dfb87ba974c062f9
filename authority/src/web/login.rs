//! The sign-in page's password check: the password grant's rules, on the
//! same throttling counters and the same hashing pool.
//!
//! Throttled first (without hashing), then the user is read, then the
//! subject's revocation generation (before the hash, so a password change
//! racing with the sign-in refuses the session), then the password is
//! verified; unknown users are verified against the dummy hash, so unknown
//! names, wrong passwords and disabled accounts take as long and get the
//! same answer. A failure counts for the username and the address; a
//! success resets the username's counter.

use std::net::IpAddr;
use std::time::Duration;

use token_repository::{Generation, TokenWriter as _};
use zeroize::Zeroizing;

use crate::accounts::User;
use crate::metrics;
use crate::password::Verification;
use crate::problem::Problem;
use crate::state::AppState;

/// Why a sign-in failed.
#[derive(Debug)]
pub enum LoginFailure {
    /// Unknown user, wrong password or disabled account: one answer.
    Invalid,
    /// Too many failures: wait this long.
    Throttled(Duration),
    /// Redis or the hashing pool is unavailable, or an internal failure.
    Unavailable(Problem),
}

/// Checks `username` and `password`; answers the user and the revocation
/// generation read before the check (the guard for issuing).
///
/// # Errors
///
/// [`LoginFailure`].
pub async fn verify(
    state: &AppState,
    username: &str,
    password: Zeroizing<String>,
    address: Option<IpAddr>,
) -> Result<(User, Generation), LoginFailure> {
    let started = std::time::Instant::now();
    let result = check(state, username, password, address).await;
    if !matches!(result, Err(LoginFailure::Throttled(_))) {
        metrics::login(started.elapsed(), result.is_ok());
    }
    result
}

async fn check(
    state: &AppState,
    username: &str,
    password: Zeroizing<String>,
    address: Option<IpAddr>,
) -> Result<(User, Generation), LoginFailure> {
    let unavailable = |problem: Problem| LoginFailure::Unavailable(problem);
    if let Some(wait) = state
        .throttle()
        .blocked(username, address)
        .await
        .map_err(|error| unavailable(Problem::from_store(&error)))?
    {
        tracing::info!(%username, ?address, "browser sign-in throttled");
        metrics::throttled();
        return Err(LoginFailure::Throttled(wait));
    }
    let user = state
        .accounts()
        .user(username)
        .await
        .map_err(|error| unavailable(Problem::from_accounts(&error)))?;
    let subject = user.as_ref().map_or_else(
        || format!("unknown:{username}"),
        |user| user.subject.clone(),
    );
    let generation = state
        .store()
        .generation(&subject)
        .await
        .map_err(|error| unavailable(Problem::from_store(&error)))?;
    let verification = state
        .hasher()
        .verify(
            password,
            user.as_ref().map(|user| user.password_hash.as_str()),
        )
        .await
        .map_err(|error| unavailable(Problem::from_hash(&error)))?;
    match (user, verification) {
        (Some(user), Verification::Match { .. }) if !user.disabled => {
            state
                .throttle()
                .reset(username)
                .await
                .map_err(|error| unavailable(Problem::from_store(&error)))?;
            Ok((user, generation))
        }
        _ => {
            tracing::info!(%username, ?address, "browser sign-in failed");
            state
                .throttle()
                .record_failure(username, address)
                .await
                .map_err(|error| unavailable(Problem::from_store(&error)))?;
            Err(LoginFailure::Invalid)
        }
    }
}
