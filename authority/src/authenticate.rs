//! Authenticating callers: clients by their secret, token holders by their
//! bearer token.
//!
//! Client secrets are argon2id hashes like passwords, but a client presents
//! its secret on every call (introspection, revocation), and `token-bench`
//! (row 5) measured what that costs: each introspection waited for a
//! hashing thread behind the logins, 18 ms idle and 200–350 ms (p99) while
//! logins were saturated. A secret that verified is therefore remembered
//! ([`VerifiedClients`]): the next call with the same secret, against the
//! same stored hash, is accepted without hashing. This is safe because
//! client secrets are always generated (256 random bits, never chosen by a
//! person): remembering a keyed SHA-256 fingerprint of one gives nothing a
//! guess could be checked against faster than the secret itself. The client
//! record is still read on every call, so disabling, removing or changing a
//! client takes effect at once; wrong secrets always pay the full hash.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::HeaderMap;
use rand::TryRng as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use token_repository::{TokenKind, TokenReader as _, TokenRecord};
use zeroize::Zeroizing;

use crate::accounts::Client;
use crate::credentials::{ClientCredentials, bearer_token};
use crate::password::Verification;
use crate::problem::Problem;
use crate::state::AppState;

/// The client a request authenticated as, if it presented a secret.
///
/// Unknown clients are verified against the dummy hash, so they take as
/// long as a wrong secret. A disabled client fails like a wrong secret.
///
/// # Errors
///
/// 401 `invalid_client` for wrong, unknown or disabled clients; 503 when
/// the stores or the hashing pool are unavailable.
pub async fn client(
    state: &AppState,
    credentials: ClientCredentials,
) -> Result<Option<Client>, Problem> {
    let ClientCredentials::Secret {
        client_id, secret, ..
    } = credentials
    else {
        return Ok(None);
    };
    let client = state
        .accounts()
        .client(&client_id)
        .await
        .map_err(|error| Problem::from_accounts(&error))?;
    if let Some(client) = client.as_ref().filter(|client| !client.disabled)
        && state
            .verified_clients()
            .recalls(&client.client_id, &client.secret_hash, &secret)
    {
        tracing::debug!(client_id = %client.client_id, "client authenticated (remembered secret)");
        return Ok(Some(client.clone()));
    }
    let remembered = client.as_ref().map(|client| {
        (
            client.secret_hash.clone(),
            Zeroizing::new(secret.to_string()),
        )
    });
    let verification = state
        .hasher()
        .verify(
            secret,
            client.as_ref().map(|client| client.secret_hash.as_str()),
        )
        .await
        .map_err(|error| Problem::from_hash(&error))?;
    match (client, verification) {
        (Some(client), Verification::Match { .. }) if !client.disabled => {
            tracing::debug!(client_id = %client.client_id, "client authenticated");
            if let Some((secret_hash, secret)) = remembered {
                state
                    .verified_clients()
                    .remember(&client.client_id, &secret_hash, &secret);
            }
            Ok(Some(client))
        }
        _ => {
            tracing::info!(%client_id, "client authentication failed");
            Err(Problem::invalid_client())
        }
    }
}

/// Like [`client`], but a secret is required.
///
/// # Errors
///
/// As [`client`], and 401 `invalid_client` when no secret was presented.
pub async fn required_client(
    state: &AppState,
    credentials: ClientCredentials,
) -> Result<Client, Problem> {
    client(state, credentials)
        .await?
        .ok_or_else(Problem::invalid_client)
}

/// The record of the live access token a request bears.
///
/// # Errors
///
/// RFC 6750 answers: 401 without or with an invalid token, 400 for a
/// malformed header; 503 when the repository is unavailable (fail closed).
pub async fn bearer(state: &AppState, headers: &HeaderMap) -> Result<TokenRecord, Problem> {
    let token = bearer_token(headers)?;
    if token.kind() != TokenKind::Access {
        return Err(Problem::invalid_token());
    }
    match state.store().lookup(&token).await {
        Ok(Some(record)) => Ok(record),
        Ok(None) => Err(Problem::invalid_token()),
        Err(error) => Err(Problem::from_store(&error)),
    }
}

/// [`bearer`], and the token must carry `scope`.
///
/// # Errors
///
/// As [`bearer`], and 403 `insufficient_scope`.
pub async fn bearer_with_scope(
    state: &AppState,
    headers: &HeaderMap,
    scope: &'static str,
) -> Result<TokenRecord, Problem> {
    let record = bearer(state, headers).await?;
    if record.scopes.contains(scope) {
        Ok(record)
    } else {
        Err(Problem::insufficient_scope(scope))
    }
}

/// How long a verified client secret is remembered.
const REMEMBER_FOR: Duration = Duration::from_secs(3600);
/// How many clients are remembered at most.
const REMEMBERED_CLIENTS: usize = 4096;

/// Client secrets that verified recently, as keyed fingerprints (see the
/// module documentation). Shared by every request of one authority.
pub struct VerifiedClients {
    /// A random key of this process: fingerprints mean nothing elsewhere.
    key: Zeroizing<[u8; 32]>,
    entries: Mutex<HashMap<String, Remembered>>,
}

struct Remembered {
    /// The stored hash the secret verified against: a new secret (a new
    /// hash) is never recalled.
    secret_hash: String,
    fingerprint: [u8; 32],
    at: Instant,
}

impl std::fmt::Debug for VerifiedClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries = self.entries.lock().map_or(0, |entries| entries.len());
        f.debug_struct("VerifiedClients")
            .field("entries", &entries)
            .finish_non_exhaustive()
    }
}

impl VerifiedClients {
    /// An empty set with a fresh random key.
    ///
    /// # Errors
    ///
    /// When the OS random generator fails.
    pub fn new() -> Result<Self, rand::rngs::SysError> {
        let mut key = Zeroizing::new([0_u8; 32]);
        rand::rngs::SysRng.try_fill_bytes(&mut key[..])?;
        Ok(Self {
            key,
            entries: Mutex::new(HashMap::new()),
        })
    }

    fn fingerprint(&self, client_id: &str, secret: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.key.as_slice());
        hasher.update(client_id.as_bytes());
        hasher.update([0]);
        hasher.update(secret.as_bytes());
        hasher.finalize().into()
    }

    /// Whether `secret` verified for `client_id` against `secret_hash`
    /// within the last hour.
    #[must_use]
    pub fn recalls(&self, client_id: &str, secret_hash: &str, secret: &str) -> bool {
        let fingerprint = self.fingerprint(client_id, secret);
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.get(client_id).is_some_and(|entry| {
            entry.at.elapsed() < REMEMBER_FOR
                && entry.secret_hash == secret_hash
                && bool::from(entry.fingerprint.ct_eq(&fingerprint))
        })
    }

    /// Remembers that `secret` verified for `client_id` against
    /// `secret_hash`.
    pub fn remember(&self, client_id: &str, secret_hash: &str, secret: &str) {
        let fingerprint = self.fingerprint(client_id, secret);
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= REMEMBERED_CLIENTS && !entries.contains_key(client_id) {
            entries.retain(|_, entry| entry.at.elapsed() < REMEMBER_FOR);
            if entries.len() >= REMEMBERED_CLIENTS {
                entries.clear();
            }
        }
        entries.insert(
            client_id.to_owned(),
            Remembered {
                secret_hash: secret_hash.to_owned(),
                fingerprint,
                at: Instant::now(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A remembered secret is recalled only for the same client, the same
    /// stored hash and the same secret.
    #[test]
    fn recalls_only_the_same_secret_and_hash() -> Result<(), rand::rngs::SysError> {
        let verified = VerifiedClients::new()?;
        assert!(!verified.recalls("web", "$hash-1", "tsc_secret"));
        verified.remember("web", "$hash-1", "tsc_secret");
        assert!(verified.recalls("web", "$hash-1", "tsc_secret"));
        assert!(
            !verified.recalls("web", "$hash-1", "tsc_secreT"),
            "another secret"
        );
        assert!(
            !verified.recalls("web", "$hash-2", "tsc_secret"),
            "a changed secret hash"
        );
        assert!(
            !verified.recalls("other", "$hash-1", "tsc_secret"),
            "another client"
        );
        Ok(())
    }
}
