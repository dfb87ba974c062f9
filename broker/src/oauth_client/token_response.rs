//! A token endpoint's answer (RFC 6749 §5.1) as read from a provider:
//! lenient where providers differ (`expires_in` as a number, a float or
//! text; Keycloak's `refresh_expires_in`), strict about what the authority
//! relies on (an access token), and an error answer reduced to its OAuth
//! code.

use std::fmt;

use serde::Deserialize;
use zeroize::Zeroizing;

use super::{ProviderError, sanitize_code};

/// A token endpoint answer (RFC 6749 §5.1).
pub struct TokenResponse {
    /// The access token.
    pub access_token: Zeroizing<String>,
    /// Its type (`Bearer`).
    pub token_type: String,
    /// Its lifetime, if the provider said.
    pub expires_in: Option<u64>,
    /// A (new) refresh token, if any.
    pub refresh_token: Option<Zeroizing<String>>,
    /// The refresh token's lifetime, when the provider says (Keycloak's
    /// `refresh_expires_in`; its `0`, an offline token without a maximum
    /// lifetime, is read as unknown).
    pub refresh_expires_in: Option<u64>,
    /// The granted scope, if the provider said.
    pub scope: Option<String>,
    /// The `sub` of the ID token, when the provider sent one (OpenID
    /// Connect). Read from the token endpoint's own TLS answer (OpenID
    /// Connect Core §3.1.3.7 lets the code flow skip the signature), and
    /// only used to tell provider accounts apart.
    pub id_token_subject: Option<String>,
    /// The ID token itself, when sent: sign-in verifies it
    /// ([`crate::id_token`]).
    pub id_token: Option<Zeroizing<String>>,
}

/// The `sub` claim of a JWT's payload, without checking the signature.
fn jwt_subject(jwt: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&json).ok()?;
    claims["sub"]
        .as_str()
        .filter(|sub| !sub.is_empty() && sub.len() <= 255)
        .map(str::to_owned)
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("has_refresh_token", &self.refresh_token.is_some())
            .field("refresh_expires_in", &self.refresh_expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Seconds {
    Number(u64),
    Float(f64),
    Text(String),
}

impl Seconds {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn value(&self) -> Option<u64> {
        match self {
            Self::Number(n) => Some(*n),
            Self::Float(f) if f.is_finite() && *f >= 0.0 => Some(f.trunc() as u64),
            Self::Float(_) => None,
            Self::Text(text) => text.trim().parse().ok(),
        }
    }
}

#[derive(Deserialize)]
struct RawTokenResponse {
    access_token: Option<String>,
    token_type: Option<String>,
    expires_in: Option<Seconds>,
    refresh_token: Option<String>,
    refresh_expires_in: Option<Seconds>,
    scope: Option<String>,
    id_token: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct RawError {
    pub(super) error: Option<String>,
}

/// Reads a token endpoint answer: 200 with an access token, or an
/// OAuth error.
pub(super) fn read(status: u16, body: &[u8]) -> Result<TokenResponse, ProviderError> {
    if status >= 500 || status == 429 {
        return Err(ProviderError::Unavailable(format!(
            "the token endpoint answered {status}"
        )));
    }
    if status != 200 {
        let error = serde_json::from_slice::<RawError>(body)
            .ok()
            .and_then(|raw| raw.error)
            .map_or_else(
                || "invalid_response".to_owned(),
                |code| sanitize_code(&code),
            );
        return Err(ProviderError::Rejected { error });
    }
    let raw: RawTokenResponse = serde_json::from_slice(body)
        .map_err(|_| ProviderError::Invalid("the token response is not JSON"))?;
    let access_token = raw
        .access_token
        .filter(|token| !token.is_empty())
        .map(Zeroizing::new)
        .ok_or(ProviderError::Invalid(
            "the token response has no access_token",
        ))?;
    Ok(TokenResponse {
        access_token,
        token_type: raw.token_type.unwrap_or_else(|| "Bearer".to_owned()),
        expires_in: raw.expires_in.as_ref().and_then(Seconds::value),
        refresh_token: raw
            .refresh_token
            .filter(|token| !token.is_empty())
            .map(Zeroizing::new),
        refresh_expires_in: raw
            .refresh_expires_in
            .as_ref()
            .and_then(Seconds::value)
            .filter(|seconds| *seconds > 0),
        scope: raw.scope,
        id_token_subject: raw.id_token.as_deref().and_then(jwt_subject),
        id_token: raw.id_token.map(Zeroizing::new),
    })
}
