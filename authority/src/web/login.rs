//! The sign-in page's password check: the password grant's rules, on the
//! same throttling counters and the same hashing pool.
//!
//! Counted first (`INCR`, without hashing), then checked exactly as the
//! password grant checks (`oauth::grant::password::check_password`: the
//! subject's revocation generation is read before the record whose hash is
//! verified; unknown users are verified against the dummy hash, so unknown
//! names, wrong passwords and disabled accounts take as long and get the
//! same answer). A success resets the username's counter.

use std::time::Duration;

use token_repository::Generation;
use zeroize::Zeroizing;

use crate::accounts::User;
use crate::address::ClientAddress;
use crate::metrics;
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
    address: ClientAddress,
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
    address: ClientAddress,
) -> Result<(User, Generation), LoginFailure> {
    let unavailable = |problem: Problem| LoginFailure::Unavailable(problem);
    // Counted before the password is checked, as the password grant does.
    if let Some(wait) = state
        .throttle()
        .begin_login(username, address)
        .await
        .map_err(|error| unavailable(Problem::from(error)))?
    {
        tracing::info!(username = ?username, %address, "browser sign-in throttled");
        metrics::throttled();
        return Err(LoginFailure::Throttled(wait));
    }
    match crate::oauth::grant::password::check_password(state, username, password.clone()).await {
        Ok(Some(((user, generation), needs_rehash))) => {
            state
                .throttle()
                .login_succeeded(username, address)
                .await
                .map_err(|error| unavailable(Problem::from(error)))?;
            if needs_rehash {
                // As the password grant does: a hash made with other
                // parameters is replaced in the background.
                crate::oauth::grant::password::upgrade_hash(
                    state.clone(),
                    username.to_owned(),
                    user.password_hash.clone(),
                    password,
                );
            }
            Ok((user, generation))
        }
        Ok(None) => {
            tracing::info!(username = ?username, %address, "browser sign-in failed");
            Err(LoginFailure::Invalid)
        }
        Err(problem) => {
            if let Err(error) = state.throttle().login_undecided(username, address).await {
                tracing::warn!(%error, "a failed sign-in attempt stays counted");
            }
            Err(unavailable(problem))
        }
    }
}
