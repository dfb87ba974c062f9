//! RFC 6749 §4.1.3: the `authorization_code` grant, a code (from
//! [`crate::oauth::code`]) exchanged for tokens, with PKCE (RFC 7636).

use std::sync::Arc;

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use token_repository::{Minted, ResourceUri, Scopes, TokenKind, TokenWriter as _};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{grant as issue, store};
use crate::address::ClientAddress;
use crate::authenticate;
use crate::credentials::ClientCredentials;
use crate::form::Form;
use crate::oauth::code::{Redeemed, public_client, redeem, s256, valid_verifier};
use crate::oauth::resource;
use crate::problem::Problem;
use crate::state::AppState;
use crate::web::BROWSER_CLIENT;

/// The grant's parameters.
pub struct Request {
    code: Zeroizing<String>,
    verifier: Zeroizing<String>,
    redirect_uri: Option<String>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

impl Request {
    /// Reads `code`, `code_verifier` and the optional `redirect_uri`.
    ///
    /// # Errors
    ///
    /// `invalid_request` when the code or the verifier is missing.
    pub fn parse(form: &Form) -> Result<Self, Problem> {
        let code = form
            .get("code")
            .ok_or_else(|| Problem::invalid_request("code is required"))?;
        let verifier = form
            .get("code_verifier")
            .ok_or_else(|| Problem::invalid_request("code_verifier is required (PKCE)"))?;
        Ok(Self {
            code: Zeroizing::new(code.to_owned()),
            verifier: Zeroizing::new(verifier.to_owned()),
            redirect_uri: form.get("redirect_uri").map(ToOwned::to_owned),
        })
    }
}

/// RFC 6749 §4.1.3: exchange a code for tokens.
///
/// # Errors
///
/// RFC 6749 §5.2 answers: `invalid_request` for missing parameters,
/// `invalid_client`, `invalid_grant` for an unknown, expired, used or
/// mismatched code (a used one also revokes what it issued), 503.
pub(super) async fn grant(
    state: &AppState,
    request: Request,
    credentials: ClientCredentials,
    narrowed: &[ResourceUri],
    address: ClientAddress,
) -> Result<Minted, Problem> {
    let Request {
        code,
        verifier,
        redirect_uri,
    } = request;
    let (code, verifier) = (code.as_str(), verifier.as_str());
    let client = match credentials {
        ClientCredentials::IdOnly(client_id) => Arc::new(public_client(state, &client_id).await?),
        ClientCredentials::None => return Err(Problem::invalid_client()),
        credentials @ ClientCredentials::Secret { .. } => {
            authenticate::required_client(state, credentials, address).await?
        }
    };
    let invalid = || Problem::invalid_grant("the code is invalid, expired or used");
    if code.len() != 43
        || !code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(invalid());
    }
    let grant = match redeem(state, code).await? {
        Redeemed::Fresh(grant) => grant,
        Redeemed::Used(grant) => {
            let revoked = state
                .store()
                .revoke_family(&grant.subject, issued_family(code))
                .await?;
            tracing::warn!(client_id = %grant.client_id, subject = %grant.subject, revoked, "authorization code used twice: the tokens issued from it are revoked");
            crate::metrics::revoked("code_reuse", revoked);
            return Err(invalid());
        }
        Redeemed::Unknown => return Err(invalid()),
    };
    if grant.client_id != client.client_id {
        tracing::info!(client_id = %client.client_id, "code presented by another client");
        return Err(invalid());
    }
    let redirect_ok = match redirect_uri.as_deref() {
        Some(presented) => presented == grant.redirect_uri,
        None => !grant.redirect_given,
    };
    if !redirect_ok {
        return Err(Problem::invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    if !valid_verifier(verifier)
        || !bool::from(s256(verifier).as_bytes().ct_eq(grant.challenge.as_bytes()))
    {
        return Err(Problem::invalid_grant("the code_verifier does not match"));
    }
    let generation = state.store().generation(&grant.subject).await?;
    // The browser session that approved must still be signed in.
    let signed_in = state
        .store()
        .list(&grant.subject)
        .await?
        .iter()
        .any(|record| {
            record.family == grant.family
                && record.kind == TokenKind::Refresh
                && record.holder.client_id.as_deref() == Some(BROWSER_CLIENT)
        });
    if !signed_in {
        return Err(Problem::invalid_grant(
            "the browser session that approved this code has ended",
        ));
    }
    let user = state
        .accounts()
        .user(&grant.username)
        .await?
        .filter(|user| user.subject == grant.subject && !user.disabled)
        .ok_or_else(invalid)?;
    let requested = Scopes::parse(&grant.scope).map_err(|error| Problem::internal(&error))?;
    let scopes = Scopes::from_tokens(requested.iter().filter(|scope| user.scopes.contains(scope)))
        .map_err(|error| Problem::internal(&error))?;
    // The token request may narrow the resources the user approved (or,
    // when the authorization request named none, DEFAULT_AUDIENCE).
    let approved = resource::parse_all(grant.resources.iter().map(String::as_str))?;
    let approved = if approved.is_empty() {
        state.default_audience().to_vec()
    } else {
        approved
    };
    if narrowed
        .iter()
        .any(|uri| !approved.iter().any(|own| own.tag() == uri.tag()))
    {
        return Err(Problem::invalid_target(
            "the token request may narrow the authorized resources, never widen them",
        ));
    }
    let uris = if narrowed.is_empty() {
        approved
    } else {
        narrowed.to_vec()
    };
    let target = resource::resolve(state, &uris, Some(&client)).await?;
    let scopes = target.fit(scopes, false)?;
    let holder = user.holder(scopes, Some(client.client_id.clone()));
    let minted = issue(state.config(), holder, target.audience, true)
        .mint_in_family(issued_family(code))
        .map_err(|error| Problem::internal(&error))?;
    store(state, &minted, Some(generation)).await?;
    Ok(minted)
}

/// The session family of the tokens a code issues: derived from the code,
/// so that a second use finds and revokes them without storing more. Each
/// code's tokens are a session of their own (the repository keeps one token
/// pair per session), apart from the browser session that approved it.
fn issued_family(code: &str) -> Uuid {
    let digest = Sha256::new()
        .chain_update(b"token-service code family\0")
        .chain_update(code.as_bytes())
        .finalize();
    let mut bytes = [0_u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::from_bytes(bytes)
}
