//! Authorization codes (RFC 6749 §4.1): issuing and redeeming them, PKCE
//! (the grant that exchanges them is
//! [`crate::oauth::grant::authorization_code`]).
//!
//! A code is 256 random bits (base64url, 43 characters). Redis holds its
//! grant under the code's SHA-256 (`P code:{C}`) for 60 seconds. Redeeming
//! is one script: it takes the grant and leaves a "used" copy
//! (`P code:{C}:used`, 10 minutes), so two concurrent redemptions cannot
//! both succeed, and a second use of a code revokes the tokens issued from
//! it (RFC 6749 §4.1.2): they are one session whose family is derived from
//! the code. The browser session that approved the code must still be
//! signed in when it is exchanged.
//!
//! PKCE (RFC 7636) with `S256` is required of every client; the verifier
//! is compared in constant time.

use std::sync::LazyLock;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::accounts::Client;
use crate::problem::Problem;
use crate::state::AppState;

/// How long a code may be redeemed.
pub const CODE_TTL: Duration = Duration::from_secs(60);
/// How long a redeemed code is remembered (for revoking on reuse).
pub const USED_CODE_TTL: Duration = Duration::from_secs(600);

/// What a code grants: kept in Redis under the code's digest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeGrant {
    /// The client it was issued to.
    pub client_id: String,
    /// The redirect URI the code was sent to.
    pub redirect_uri: String,
    /// Whether the authorization request named it (then the token request
    /// must name it too, RFC 6749 §4.1.3).
    pub redirect_given: bool,
    /// The granted scope.
    pub scope: String,
    /// The PKCE challenge, `S256`.
    pub challenge: String,
    /// The `resource` parameters of the authorization request (RFC 8707);
    /// empty: `DEFAULT_AUDIENCE`. The token request may narrow them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// The user.
    pub subject: String,
    /// The user's login name.
    pub username: String,
    /// The browser session's family: the tokens join it.
    pub family: Uuid,
}

/// Take the grant, leave a used copy; or report a used code.
static REDEEM: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local grant = redis.call('GET', KEYS[1]) \
         if grant then \
           redis.call('DEL', KEYS[1]) \
           redis.call('SET', KEYS[2], grant, 'PX', ARGV[1]) \
           return {1, grant} \
         end \
         local used = redis.call('GET', KEYS[2]) \
         if used then return {2, used} end \
         return {0, ''}",
    )
});

fn digest(code: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(code.as_bytes()))
}

/// Stores `grant` and answers a fresh code for it.
///
/// # Errors
///
/// 503 when Redis is unavailable; 500 when the random generator fails.
pub async fn issue(state: &AppState, grant: &CodeGrant) -> Result<String, Problem> {
    let code = crate::web::random_secret()?;
    let key = state.store().prefix().authorization_code(&digest(&code));
    let value = serde_json::to_string(grant).map_err(|error| Problem::internal(&error))?;
    let ttl = u64::try_from(CODE_TTL.as_millis()).unwrap_or(60_000);
    let created: Option<String> = state
        .store()
        .with_shared(|mut connection| async move {
            redis::cmd("SET")
                .arg(&key)
                .arg(&value)
                .arg("NX")
                .arg("PX")
                .arg(ttl)
                .query_async(&mut connection)
                .await
        })
        .await?;
    if created.is_none() {
        return Err(Problem::internal(&"authorization code collision"));
    }
    Ok(code)
}

/// What redeeming a code found.
pub(crate) enum Redeemed {
    /// Not redeemed before: its grant, now taken.
    Fresh(CodeGrant),
    /// Redeemed before: the grant it had.
    Used(CodeGrant),
    /// Unknown or expired.
    Unknown,
}

/// Takes the code's grant, leaving a used copy; or reports a used code.
pub(crate) async fn redeem(state: &AppState, code: &str) -> Result<Redeemed, Problem> {
    let code_digest = digest(code);
    let prefix = state.store().prefix();
    let key = prefix.authorization_code(&code_digest);
    let used = prefix.used_authorization_code(&code_digest);
    let ttl = u64::try_from(USED_CODE_TTL.as_millis()).unwrap_or(600_000);
    let (status, grant): (i64, String) = state
        .store()
        .with_connection(|mut connection| async move {
            Ok(REDEEM
                .key(&key)
                .key(&used)
                .arg(ttl)
                .invoke_async(&mut connection)
                .await?)
        })
        .await?;
    let parse = |text: &str| {
        serde_json::from_str::<CodeGrant>(text).map_err(|error| Problem::internal(&error))
    };
    Ok(match status {
        1 => Redeemed::Fresh(parse(&grant)?),
        2 => Redeemed::Used(parse(&grant)?),
        _ => Redeemed::Unknown,
    })
}

/// A public client naming itself with `client_id` (no secret).
///
/// # Errors
///
/// 401 `invalid_client` for an unknown, disabled or confidential client;
/// 503 when Redis is unavailable.
pub async fn public_client(state: &AppState, client_id: &str) -> Result<Client, Problem> {
    let client = state.accounts().client(client_id).await?;
    match client {
        Some(client) if client.public && !client.disabled => Ok(client),
        _ => {
            tracing::info!(%client_id, "public client authentication failed");
            Err(Problem::invalid_client())
        }
    }
}

/// Whether `verifier` is a well-formed PKCE verifier (RFC 7636 §4.1).
pub(crate) fn valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// `BASE64URL(SHA256(verifier))` (RFC 7636 §4.2).
#[must_use]
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 appendix B's example.
    #[test]
    fn s256_matches_rfc_7636() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(valid_verifier(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        ));
        assert!(!valid_verifier("short"));
        assert!(!valid_verifier(&"a".repeat(129)));
        assert!(!valid_verifier(&format!("{}+", "a".repeat(43))));
    }
}
