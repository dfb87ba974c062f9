//! RFC 6749 §4.4: the `client_credentials` grant, an application obtains a
//! token for itself.

use token_repository::{Minted, ResourceUri, Scopes, TokenWriter as _};

use super::{grant as issue, narrow, store};
use crate::accounts::client_subject;
use crate::address::ClientAddress;
use crate::authenticate;
use crate::credentials::ClientCredentials;
use crate::oauth::resource;
use crate::problem::Problem;
use crate::state::AppState;

/// Checks the client's secret; mints and stores an access token (no refresh
/// token) for the client itself.
pub(super) async fn grant(
    state: &AppState,
    credentials: ClientCredentials,
    (requested, resources): (Option<Scopes>, &[ResourceUri]),
    address: ClientAddress,
) -> Result<Minted, Problem> {
    let ClientCredentials::Secret { client_id, .. } = &credentials else {
        return Err(Problem::invalid_client());
    };
    let generation = state.store().generation(&client_subject(client_id)).await?;
    let client = authenticate::required_client(state, credentials, address).await?;
    let target = resource::resolve(state, resources, Some(&client)).await?;
    let explicit = requested.is_some();
    let scopes = target.fit(narrow(requested, &client.scopes)?, explicit)?;
    let minted = issue(
        state.config(),
        client.holder(scopes),
        target.audience,
        false,
    )
    .mint()
    .map_err(|error| Problem::internal(&error))?;
    store(state, &minted, Some(generation)).await?;
    Ok(minted)
}
