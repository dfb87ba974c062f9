//! Registered resource servers (RFC 8707 audiences): add, remove, list.

use serde::Serialize;
use token_repository::Scopes;

use crate::problem::Problem;
use crate::state::AppState;

/// What the API shows of a registered resource server.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceView {
    /// Its URI, as registered.
    pub uri: String,
    /// Its tag in records (8 hex characters).
    pub tag: String,
    /// Its declared scopes, space-delimited (empty: any scope).
    pub scope: String,
    /// Whether it is the authority itself (registered implicitly, never
    /// removed).
    pub authority: bool,
}

impl ResourceView {
    fn of(state: &AppState, resource: &crate::resources::Resource) -> Self {
        Self {
            uri: resource.uri.as_str().to_owned(),
            tag: resource.tag().to_hex(),
            scope: resource.scopes.to_string(),
            authority: resource.tag() == state.resources().issuer().tag(),
        }
    }
}

/// Registers a resource server (an audience) with its declared scopes.
///
/// # Errors
///
/// 400 for a malformed URI, 409 when it is registered or its tag is taken
/// by another resource (one chance in 2³²: register it under another
/// URI), 503 when unavailable.
pub async fn add_resource(
    state: &AppState,
    uri: &str,
    scopes: &Scopes,
) -> Result<ResourceView, Problem> {
    let uri = token_repository::ResourceUri::parse(uri)
        .map_err(|error| Problem::invalid_request(error.to_string()))?;
    match state.resources().add(&uri, scopes).await? {
        crate::resources::Registered::Added => Ok(ResourceView::of(
            state,
            &crate::resources::Resource {
                uri,
                scopes: scopes.clone(),
            },
        )),
        crate::resources::Registered::Exists => {
            Err(Problem::conflict("this resource is registered"))
        }
        crate::resources::Registered::Collision(other) => Err(Problem::conflict(format!(
            "the tag of this URI is that of the registered resource {other:?}; \
             register the service under another URI"
        ))),
    }
}

/// Removes a resource server, named by its URI or its hex tag. Tokens
/// already issued for it keep their audience until they expire.
///
/// # Errors
///
/// 400 for the authority's own resource, 404 for an unknown one, 503 when
/// unavailable.
pub async fn remove_resource(state: &AppState, name: &str) -> Result<ResourceView, Problem> {
    let tag = token_repository::ResourceTag::from_hex(name)
        .or_else(|| {
            token_repository::ResourceUri::parse(name)
                .ok()
                .map(|uri| uri.tag())
        })
        .ok_or_else(|| Problem::not_found("no such resource"))?;
    if tag == state.resources().issuer().tag() {
        return Err(Problem::invalid_request(
            "the authority's own resource cannot be removed",
        ));
    }
    let removed = state
        .resources()
        .remove(tag)
        .await?
        .ok_or_else(|| Problem::not_found("no such resource"))?;
    Ok(ResourceView::of(state, &removed))
}

/// Every resource server, the authority first.
///
/// # Errors
///
/// 503 when unavailable.
pub async fn resources(state: &AppState) -> Result<Vec<ResourceView>, Problem> {
    Ok(state
        .resources()
        .list()
        .await?
        .iter()
        .map(|resource| ResourceView::of(state, resource))
        .collect())
}
