//! Authenticating callers: clients by their secret, token holders by their
//! bearer token.
//!
//! Client secrets are always generated (256 random bits, never chosen by a
//! person), so a slow hash adds nothing to them: they are stored as a keyed
//! SHA-256 digest ([`crate::keynames::DeploymentKey::secret_digest`]) and
//! compared in constant time, which costs microseconds. (argon2 hashing
//! them made every wrong or unknown client secret a full hash on the
//! threads logins wait for: `/oauth/introspect` with wrong secrets at 54
//! requests/s raised every login from 40 ms to 1.2 s.) Records of older
//! versions hold an argon2 hash; it is checked once more, and replaced by
//! the digest when the secret matches. Failed client authentication is
//! throttled per client id and per address ([`crate::throttle`]).

use std::sync::Arc;

use http::HeaderMap;
use token_repository::{Timestamp, TokenKind, TokenRecord, constant_time_eq};
use zeroize::Zeroizing;

use crate::accounts::Client;
use crate::address::ClientAddress;
use crate::credentials::{ClientCredentials, bearer_token};
use crate::keynames::{SECRET_DIGEST_PREFIX, SecretDigest};
use crate::metrics;
use crate::password::Verification;
use crate::problem::Problem;
use crate::state::AppState;

/// The client a request authenticated as, if it presented a secret.
///
/// Unknown clients are checked against a digest too, so they take as long
/// as a wrong secret. A disabled client fails like a wrong secret.
///
/// # Errors
///
/// 401 `invalid_client` for wrong, unknown or disabled clients, 429 once
/// the failures of the client id or the address pass their limit; 503 when
/// the stores or the hashing pool are unavailable.
pub async fn client(
    state: &AppState,
    credentials: ClientCredentials,
    address: ClientAddress,
) -> Result<Option<Arc<Client>>, Problem> {
    let ClientCredentials::Secret {
        client_id, secret, ..
    } = credentials
    else {
        return Ok(None);
    };
    let key = state.accounts().deployment_key();
    let digest = key.secret_digest(&client_id, &secret).await?;
    let now = Timestamp::now();
    if let Some(cached) = state.accounts().verified_client(&client_id) {
        // The record from memory; the secret is verified all the same. A
        // failure rereads Redis below (a secret rotated elsewhere a moment
        // ago, a legacy hash), so only a success is answered from memory.
        if !cached.disabled && compare(&cached, &digest, now).0 {
            tracing::debug!(client_id = ?cached.client_id, "client authenticated (record in memory)");
            return Ok(Some(cached));
        }
    }
    // Boxed: the way through Redis (and the throttle, and argon2 for
    // legacy hashes) is a large future that a hit never needs, and every
    // future awaiting this one would otherwise carry and move it.
    Box::pin(client_from_store(
        state, &client_id, &secret, &digest, now, address,
    ))
    .await
}

/// [`client`] when the verified record is not in memory: reads it from
/// Redis, checks it, remembers it when it verified, throttles failures.
async fn client_from_store(
    state: &AppState,
    client_id: &str,
    secret: &Zeroizing<String>,
    digest: &SecretDigest,
    now: Timestamp,
    address: ClientAddress,
) -> Result<Option<Arc<Client>>, Problem> {
    let ticket = state.accounts().verified_ticket();
    let client = state.accounts().client(client_id).await?;
    let (mut matched, legacy) = client
        .as_ref()
        .map_or((false, Vec::new()), |client| compare(client, digest, now));
    if !matched && !legacy.is_empty() {
        matched = verify_legacy(state, client_id, secret, &legacy, digest, address).await?;
    }
    match client {
        Some(client) if matched && !client.disabled => {
            tracing::debug!(client_id = ?client.client_id, "client authenticated");
            if let Some(ticket) = ticket {
                // A legacy hash just upgraded changed the record, which
                // voids the ticket: only digests are kept.
                if let Err(error) = state.accounts().remember_verified(ticket, &client).await {
                    tracing::debug!(%error, "verified client not kept in memory");
                }
            }
            Ok(Some(Arc::new(client)))
        }
        _ => {
            tracing::info!(client_id = ?client_id, %address, "client authentication failed");
            let throttled = state.throttle().client_failed(client_id, address).await?;
            match throttled {
                Some(wait) => {
                    metrics::client_auth_throttled();
                    Err(Problem::throttled(wait))
                }
                None => Err(Problem::invalid_client()),
            }
        }
    }
}

/// Compares `digest` with the client's current secret and its previous one
/// (while it is valid), in constant time; answers whether one matched, and
/// the stored argon2 hashes of older versions, to be checked the slow way.
fn compare(client: &Client, digest: &SecretDigest, now: Timestamp) -> (bool, Vec<String>) {
    let previous = client
        .previous_secret
        .as_ref()
        .filter(|previous| now < previous.expires_at)
        .map(|previous| previous.secret_hash.as_str());
    let mut matched = false;
    let mut legacy = Vec::new();
    for stored in std::iter::once(client.secret_hash.as_str()).chain(previous) {
        if stored.starts_with(SECRET_DIGEST_PREFIX) {
            matched |= constant_time_eq(stored.as_bytes(), digest.as_bytes());
        } else {
            legacy.push(stored.to_owned());
        }
    }
    (matched, legacy)
}

/// Checks `secret` against argon2 hashes of older versions (unless the
/// client's failures are past their limit), and on a match stores the
/// digest instead of the hash that matched.
async fn verify_legacy(
    state: &AppState,
    client_id: &str,
    secret: &Zeroizing<String>,
    hashes: &[String],
    digest: &SecretDigest,
    address: ClientAddress,
) -> Result<bool, Problem> {
    if let Some(wait) = state.throttle().client_blocked(client_id, address).await? {
        metrics::client_auth_throttled();
        return Err(Problem::throttled(wait));
    }
    for hash in hashes {
        let verification = state.hasher().verify(secret.clone(), Some(hash)).await?;
        if matches!(verification, Verification::Match { .. }) {
            let upgraded = state
                .accounts()
                .update_client(client_id, |client| {
                    if client.secret_hash == *hash {
                        client.secret_hash = digest.to_text();
                    }
                    if let Some(previous) = client
                        .previous_secret
                        .as_mut()
                        .filter(|previous| previous.secret_hash == *hash)
                    {
                        previous.secret_hash = digest.to_text();
                    }
                })
                .await;
            if let Err(error) = upgraded {
                tracing::warn!(%error, client_id = ?client_id, "client secret hash not upgraded");
            }
            return Ok(true);
        }
    }
    Ok(false)
}

/// Like [`client`], but a secret is required.
///
/// # Errors
///
/// As [`client`], and 401 `invalid_client` when no secret was presented.
pub async fn required_client(
    state: &AppState,
    credentials: ClientCredentials,
    address: ClientAddress,
) -> Result<Arc<Client>, Problem> {
    client(state, credentials, address)
        .await?
        .ok_or_else(Problem::invalid_client)
}

/// The record of the live access token a request bears, issued for this
/// authority: its audience must include the authority's own resource (the
/// issuer), so that a token given to another service cannot be replayed
/// here. Tokens issued before audiences existed (unrestricted) pass until
/// they expire.
///
/// # Errors
///
/// RFC 6750 answers: 401 without or with an invalid token, or one for
/// other resources (`invalid_token`, never naming them), 400 for a
/// malformed header; 503 when the repository is unavailable (fail closed).
pub async fn bearer(state: &AppState, headers: &HeaderMap) -> Result<TokenRecord, Problem> {
    let token = bearer_token(headers)?;
    if token.kind() != TokenKind::Access {
        return Err(Problem::invalid_token());
    }
    match state.lookup(&token).await {
        Ok(Some(record)) if !record.audience.permits(state.resources().issuer().tag()) => {
            tracing::debug!(token_id = %record.id, "refused a token for another audience");
            Err(Problem::wrong_audience())
        }
        Ok(Some(record)) => Ok(record),
        Ok(None) => Err(Problem::invalid_token()),
        Err(error) => Err(Problem::from(error)),
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
    if record.holder.scopes.contains(scope) {
        Ok(record)
    } else {
        Err(Problem::insufficient_scope(scope))
    }
}
