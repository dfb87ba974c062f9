//! RFC 6749 §6: the `refresh_token` grant. The presented token is rotated:
//! the next pair joins its family, and reuse of a rotated token revokes
//! the family. A token this process minted by its last rotation of the
//! session is found in memory ([`crate::rotated`]); any other is inspected
//! in the store first.

use std::sync::Arc;

use token_repository::{
    Minted, RefreshRefusal, RefreshState, ResourceUri, Rotation, Scopes, Timestamp, Token,
    TokenKind, TokenWriter as _,
};

use super::{grant as issue, narrow};
use crate::address::ClientAddress;
use crate::authenticate;
use crate::credentials::ClientCredentials;
use crate::form::Form;
use crate::metrics;
use crate::oauth::code::public_client;
use crate::oauth::resource;
use crate::problem::Problem;
use crate::state::AppState;

/// The grant's parameters.
#[derive(Debug)]
pub struct Request {
    /// The presented refresh token, well-formed.
    presented: Token,
}

impl Request {
    /// Reads `refresh_token` and checks its format and kind (no I/O).
    ///
    /// # Errors
    ///
    /// `invalid_request` when missing, `invalid_grant` when it is not a
    /// refresh token.
    pub fn parse(form: &Form) -> Result<Self, Problem> {
        let text = form
            .get("refresh_token")
            .ok_or_else(|| Problem::invalid_request("refresh_token is required"))?;
        let presented = Token::parse(text).map_err(|_| invalid())?;
        if presented.kind() != TokenKind::Refresh {
            return Err(invalid());
        }
        Ok(Self { presented })
    }
}

fn invalid() -> Problem {
    Problem::invalid_grant("the refresh token is invalid, expired or revoked")
}

/// Checks the client, the token and its holder; rotates the token.
pub(super) async fn grant(
    state: &AppState,
    request: Request,
    credentials: ClientCredentials,
    (requested, resources): (Option<Scopes>, &[ResourceUri]),
    address: ClientAddress,
) -> Result<Minted, Problem> {
    let Request { presented } = request;
    let client = match credentials {
        ClientCredentials::IdOnly(client_id) => {
            Some(Arc::new(public_client(state, &client_id).await?))
        }
        credentials => authenticate::client(state, credentials, address).await?,
    };
    let record = match state.rotated().take(&presented, Timestamp::now()) {
        // Rotated here last: the rotation below re-checks that the token is
        // still its session's current one (crate::rotated).
        Some(record) => record,
        None => match state.store().inspect_refresh(&presented).await? {
            RefreshState::Live(record) => record,
            RefreshState::Refused(refusal) => return Err(refused(&presented, refusal)),
        },
    };
    let client_id = client.as_ref().map(|client| client.client_id.clone());
    if record.holder.client_id != client_id {
        return Err(if client_id.is_none() {
            Problem::invalid_client()
        } else {
            Problem::invalid_grant("the refresh token was issued to another client")
        });
    }
    let target = resource::refreshed(state, resources, &record.audience, client.as_deref()).await?;
    let explicit = requested.is_some();
    let scopes = target.fit(narrow(requested, &record.holder.scopes)?, explicit)?;
    let user = state
        .accounts()
        .user_for_rotation(&record.holder.username)
        .await?;
    let Some(user) = user.filter(|user| user.subject == record.holder.subject && !user.disabled)
    else {
        let _ = state
            .store()
            .revoke_family(&record.holder.subject, record.family)
            .await;
        return Err(invalid());
    };
    // Scopes the user has lost since the login are dropped.
    let scopes = Scopes::from_tokens(scopes.iter().filter(|scope| user.scopes.contains(scope)))
        .map_err(|error| Problem::internal(&error))?;
    let minted = issue(
        state.config(),
        user.holder(scopes, client_id),
        target.audience,
        true,
    )
    .mint_in_family(record.family)
    .map_err(|error| Problem::internal(&error))?;
    let rotated = state.store().rotate(&presented, &minted).await;
    // The session changed (rotated, or revoked on reuse): this replica's
    // cache forgets it at once.
    state.forget_cached(&presented);
    match rotated {
        Ok(Rotation::Rotated) => {
            state.rotated().hold(&minted);
            Ok(minted)
        }
        Ok(Rotation::Refused(refusal)) => Err(refused(&presented, refusal)),
        Err(error) => Err(Problem::from(error)),
    }
}

/// The answer to a refused refresh token, whether the refusal came from
/// inspecting it or from rotating it (used meanwhile); reuse is logged and
/// counted here, once.
fn refused(presented: &Token, refusal: RefreshRefusal) -> Problem {
    if let RefreshRefusal::Reused { revoked } = refusal {
        tracing::warn!(token_id = %presented.id(), revoked, "rotated refresh token presented again: its family is revoked");
        metrics::revoked("refresh_reuse", revoked);
    }
    invalid()
}
