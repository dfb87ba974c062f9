//! Verifying an OpenID Connect ID token for sign-in (OpenID Connect Core
//! §3.1.3.7): the signature against the provider's JSON Web Key Set
//! (`jwks_uri` of discovery), `iss`, `aud` (and `azp` when there are
//! several audiences), `exp` and the `nonce` the authority sent.
//!
//! Key sets are cached per URL ([`KeySets`]); a token signed with a key id
//! the cached set lacks (the provider rotated its keys) fetches the set
//! again, at most once per [`REFETCH_INTERVAL`] per URL, so a flood of
//! tokens with made-up key ids cannot make the authority hammer the
//! provider. Only asymmetric algorithms are accepted (RSA, RSA-PSS, ECDSA,
//! EdDSA): never `none` nor an HMAC keyed with something public.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::Url;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq as _;

use crate::oauth_client::{ProviderClient, ProviderError};

/// Least time between two fetches of one key set for unknown key ids.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// A cached key set older than this is fetched again before use.
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// The most key sets cached (one per sign-in provider's URL).
const MAX_SETS: usize = 64;
/// Clock skew allowed on `exp`.
const LEEWAY_SECS: u64 = 60;

/// The asymmetric algorithms accepted.
const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Why an ID token is refused. Never carries the token or a claim value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    /// The token response had no ID token.
    #[error("no ID token")]
    Missing,
    /// Not a JWT, or its claims are not what OpenID Connect prescribes.
    #[error("the ID token is malformed")]
    Malformed,
    /// An algorithm other than the asymmetric ones, or one the key is not
    /// for.
    #[error("the ID token's algorithm is not accepted")]
    Algorithm,
    /// No key of the provider's set has the token's key id (after
    /// fetching the set again when allowed).
    #[error("the ID token was signed with an unknown key")]
    UnknownKey,
    /// The signature does not verify: tampered with, or forged.
    #[error("the ID token's signature does not verify")]
    Signature,
    /// `iss` is not the provider's issuer.
    #[error("the ID token names another issuer")]
    Issuer,
    /// `aud` does not name the authority's client id (or `azp` another
    /// party).
    #[error("the ID token is for another audience")]
    Audience,
    /// Past `exp` (beyond the leeway).
    #[error("the ID token has expired")]
    Expired,
    /// `nonce` is missing or not the one this sign-in sent (a replayed or
    /// injected token).
    #[error("the ID token's nonce does not match")]
    Nonce,
    /// The provider publishes no key set.
    #[error("the provider publishes no key set (jwks_uri)")]
    NoKeySet,
    /// The key set could not be fetched.
    #[error("the key set: {0}")]
    Keys(#[from] ProviderError),
}

/// What the authority expects of an ID token.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The provider's issuer.
    pub issuer: &'a str,
    /// The authority's client id at the provider.
    pub client_id: &'a str,
    /// The nonce sent with the authorization request.
    pub nonce: &'a str,
}

/// A verified ID token's claims.
#[derive(Clone)]
pub struct IdClaims {
    /// `sub`: with the issuer, the account's key.
    pub subject: String,
    /// Every claim (for `name`, `email`, the `scope_map` claim).
    pub claims: Map<String, Value>,
}

impl std::fmt::Debug for IdClaims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdClaims")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl IdClaims {
    /// A string claim, when present and not empty (at most 256 bytes).
    #[must_use]
    pub fn text(&self, name: &str) -> Option<&str> {
        self.claims
            .get(name)
            .and_then(Value::as_str)
            .filter(|value| !value.is_empty() && value.len() <= 256)
    }

    /// `email`, only when the provider says it is verified
    /// (`email_verified`, OpenID Connect Core §5.1).
    #[must_use]
    pub fn verified_email(&self) -> Option<&str> {
        let verified = self
            .claims
            .get("email_verified")
            .is_some_and(|value| value.as_bool() == Some(true) || value.as_str() == Some("true"));
        self.text("email").filter(|_| verified)
    }
}

struct Cached {
    set: Arc<JwkSet>,
    fetched: Instant,
}

/// Key sets by URL, fetched on first use, again for an unknown key id
/// (rate-limited) and after a day. One fetch at a time: concurrent
/// sign-ins wait for it rather than fetch again.
#[derive(Default)]
pub struct KeySets {
    sets: tokio::sync::Mutex<HashMap<String, Cached>>,
}

impl std::fmt::Debug for KeySets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySets").finish_non_exhaustive()
    }
}

impl KeySets {
    /// The set at `url`: cached, or fetched when absent, older than a day,
    /// or when `kid` is not in it and the last fetch is older than
    /// [`REFETCH_INTERVAL`].
    async fn get(
        &self,
        client: &ProviderClient,
        url: &Url,
        kid: Option<&str>,
    ) -> Result<Arc<JwkSet>, ProviderError> {
        let mut sets = self.sets.lock().await;
        if let Some(cached) = sets.get(url.as_str()) {
            let fresh = cached.fetched.elapsed() < MAX_AGE;
            let known = kid.is_none_or(|kid| cached.set.find(kid).is_some());
            let may_refetch = cached.fetched.elapsed() >= REFETCH_INTERVAL;
            if fresh && (known || !may_refetch) {
                return Ok(cached.set.clone());
            }
        }
        let set = Arc::new(fetch(client, url).await?);
        tracing::info!(keys = set.keys.len(), "provider key set fetched");
        if sets.len() >= MAX_SETS {
            sets.clear();
        }
        sets.insert(
            url.as_str().to_owned(),
            Cached {
                set: set.clone(),
                fetched: Instant::now(),
            },
        );
        Ok(set)
    }
}

/// Fetches the JSON Web Key Set (RFC 7517) at `url`; keys of kinds this
/// crate cannot read are skipped, not fatal.
async fn fetch(client: &ProviderClient, url: &Url) -> Result<JwkSet, ProviderError> {
    let (status, body) = client.get_json(url).await?;
    if status >= 500 || status == 429 {
        return Err(ProviderError::Unavailable(format!(
            "the key set answered {status}"
        )));
    }
    if status != 200 {
        return Err(ProviderError::Invalid("the key set is not published"));
    }
    let raw: Value = serde_json::from_slice(&body)
        .map_err(|_| ProviderError::Invalid("the key set is not JSON"))?;
    let keys = raw
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(ProviderError::Invalid("the key set has no keys"))?
        .iter()
        .filter_map(|key| serde_json::from_value(key.clone()).ok())
        .collect();
    Ok(JwkSet { keys })
}

/// The key of `set` for a token with `kid` and `alg`: by key id, or the
/// only signing key when the token names none.
fn pick<'a>(set: &'a JwkSet, kid: Option<&str>) -> Option<&'a Jwk> {
    let signing = |key: &&Jwk| !matches!(key.common.public_key_use, Some(PublicKeyUse::Encryption));
    match kid {
        Some(kid) => set.find(kid).filter(signing),
        None => {
            let mut keys = set.keys.iter().filter(signing);
            match (keys.next(), keys.next()) {
                (Some(only), None) => Some(only),
                _ => None,
            }
        }
    }
}

/// Verifies `token` (an ID token from `jwks_url`'s provider) against
/// `expected`; answers its claims.
///
/// # Errors
///
/// [`IdTokenError`]: each check that fails has its own.
pub async fn verify(
    sets: &KeySets,
    client: &ProviderClient,
    jwks_url: &Url,
    token: &str,
    expected: Expected<'_>,
) -> Result<IdClaims, IdTokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| IdTokenError::Malformed)?;
    if !ALGORITHMS.contains(&header.alg) {
        return Err(IdTokenError::Algorithm);
    }
    let kid = header.kid.as_deref();
    let set = sets.get(client, jwks_url, kid).await?;
    let jwk = pick(&set, kid).ok_or(IdTokenError::UnknownKey)?;
    if let Some(declared) = jwk.common.key_algorithm {
        // A key that declares its algorithm is used with that one only.
        if format!("{declared:?}") != format!("{:?}", header.alg) {
            return Err(IdTokenError::Algorithm);
        }
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| IdTokenError::UnknownKey)?;
    let mut validation = Validation::new(header.alg);
    validation.leeway = LEEWAY_SECS;
    // The configured issuer has no trailing slash; some providers' has.
    validation.set_issuer(&[expected.issuer.to_owned(), format!("{}/", expected.issuer)]);
    validation.set_audience(&[expected.client_id]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let data =
        jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map_err(|error| {
            use jsonwebtoken::errors::ErrorKind;
            match error.kind() {
                ErrorKind::InvalidSignature => IdTokenError::Signature,
                ErrorKind::ExpiredSignature => IdTokenError::Expired,
                ErrorKind::InvalidIssuer => IdTokenError::Issuer,
                ErrorKind::InvalidAudience => IdTokenError::Audience,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    IdTokenError::Algorithm
                }
                _ => IdTokenError::Malformed,
            }
        })?;
    let claims = data.claims;
    // Several audiences: the authorized party must be this client (OpenID
    // Connect Core §3.1.3.7, 4 and 5).
    if let Some(Value::Array(audiences)) = claims.get("aud")
        && audiences.len() > 1
        && claims.get("azp").and_then(Value::as_str) != Some(expected.client_id)
    {
        return Err(IdTokenError::Audience);
    }
    let nonce_ok = claims
        .get("nonce")
        .and_then(Value::as_str)
        .is_some_and(|nonce| bool::from(nonce.as_bytes().ct_eq(expected.nonce.as_bytes())));
    if !nonce_ok {
        return Err(IdTokenError::Nonce);
    }
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|sub| !sub.is_empty() && sub.len() <= 255)
        .ok_or(IdTokenError::Malformed)?
        .to_owned();
    Ok(IdClaims { subject, claims })
}

#[cfg(test)]
#[path = "id_token_tests.rs"]
mod tests;
