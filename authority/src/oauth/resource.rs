//! The `resource` parameter (RFC 8707) of token and authorization
//! requests: which resource servers a token is for, checked against the
//! registry ([`crate::resources`]) and the client's allowed resources.
//!
//! Every refusal is 400 `invalid_target`: a malformed URI (relative, with a
//! fragment, …), more than [`MAX_AUDIENCE`] resources, an unregistered
//! resource, one the client may not use, or — on refresh — one the
//! refreshed token was not issued for. Without `resource` a new token's
//! audience is `DEFAULT_AUDIENCE`; a refreshed token keeps its own.

use token_repository::{Audience, MAX_AUDIENCE, ResourceTag, ResourceUri, Scopes};

use crate::accounts::Client;
use crate::form::Form;
use crate::json_object::JsonObject;
use crate::problem::Problem;
use crate::resources::Resource;
use crate::state::AppState;

/// The name of the parameter.
pub const PARAMETER: &str = "resource";

/// A token's audience, decided, and the scopes that mean something to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The audience to issue.
    pub audience: Audience,
    /// The union of the resources' declared scopes; `None` when one of
    /// them declares none (then any scope may be granted).
    pub declared: Option<Scopes>,
}

impl Target {
    /// Fits `scopes` (what the grant would give) to the audience: when
    /// every resource declares scopes, a scope none of them declares is
    /// refused if it was `explicit`ly requested (`invalid_scope`) and
    /// dropped otherwise.
    ///
    /// # Errors
    ///
    /// 400 `invalid_scope`.
    pub fn fit(&self, scopes: Scopes, explicit: bool) -> Result<Scopes, Problem> {
        let Some(declared) = &self.declared else {
            return Ok(scopes);
        };
        if scopes.is_subset_of(declared) {
            return Ok(scopes);
        }
        if explicit {
            return Err(Problem::invalid_scope(
                "the requested scope is not valid for the requested resources",
            ));
        }
        Scopes::from_tokens(scopes.iter().filter(|scope| declared.contains(scope)))
            .map_err(|error| Problem::internal(&error))
    }
}

/// The `resource` parameters of `form`, checked for form only.
///
/// # Errors
///
/// 400 `invalid_target` for a malformed URI or too many.
pub fn requested(form: &Form) -> Result<Vec<ResourceUri>, Problem> {
    parse_all(form.get_all(PARAMETER))
}

/// Checks resource URIs given as text (the `resource` parameters, or those
/// carried in an authorization code).
///
/// # Errors
///
/// 400 `invalid_target` for a malformed URI or more than
/// [`MAX_AUDIENCE`].
pub fn parse_all<'a>(
    texts: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<ResourceUri>, Problem> {
    let mut resources: Vec<ResourceUri> = Vec::new();
    for text in texts {
        let resource = ResourceUri::parse(text)
            .map_err(|error| Problem::invalid_target(format!("resource: {error}")))?;
        if !resources.iter().any(|seen| seen.tag() == resource.tag()) {
            resources.push(resource);
        }
        if resources.len() > MAX_AUDIENCE {
            return Err(Problem::invalid_target(format!(
                "at most {MAX_AUDIENCE} resources per token"
            )));
        }
    }
    Ok(resources)
}

/// The registered resources of `uris` (`DEFAULT_AUDIENCE` when empty), which
/// `client` (when any) may use.
///
/// # Errors
///
/// 400 `invalid_target` for an unregistered or forbidden resource; 503
/// when the registry is unavailable.
pub async fn resolve(
    state: &AppState,
    uris: &[ResourceUri],
    client: Option<&Client>,
) -> Result<Target, Problem> {
    let uris = if uris.is_empty() {
        state.default_audience()
    } else {
        uris
    };
    let tags: Vec<ResourceTag> = uris.iter().map(ResourceUri::tag).collect();
    let found = state.resources().get_many(&tags).await?;
    let mut resources = Vec::with_capacity(found.len());
    for resource in found {
        resources.push(resource.ok_or_else(|| Problem::invalid_target("unknown resource"))?);
    }
    if let Some(client) = client.filter(|client| !client.resources.is_empty()) {
        let allowed: Vec<ResourceTag> = client
            .resources
            .iter()
            .filter_map(|uri| ResourceUri::parse(uri).ok())
            .map(|uri| uri.tag())
            .collect();
        if resources
            .iter()
            .any(|resource| !allowed.contains(&resource.tag()))
        {
            return Err(Problem::invalid_target(
                "the client may not request tokens for this resource",
            ));
        }
    }
    target(&resources)
}

fn target(resources: &[Resource]) -> Result<Target, Problem> {
    let audience = Audience::of(resources.iter().map(Resource::tag))
        .map_err(|error| Problem::invalid_target(error.to_string()))?;
    let declared = if resources.iter().any(|resource| resource.scopes.is_empty()) {
        None
    } else {
        Some(
            Scopes::from_tokens(resources.iter().flat_map(|resource| resource.scopes.iter()))
                .map_err(|error| Problem::internal(&error))?,
        )
    };
    Ok(Target { audience, declared })
}

/// The audience of a refreshed token: the presented one's (`current`,
/// its scopes already fitted) without `resource`, or the requested
/// resources, which must be within it. A token issued before audiences existed (unrestricted) gets
/// `DEFAULT_AUDIENCE`, or the requested resources.
///
/// # Errors
///
/// 400 `invalid_target` for a widening, an unregistered or forbidden
/// resource; 503 when the registry is unavailable.
pub async fn refreshed(
    state: &AppState,
    uris: &[ResourceUri],
    current: &Audience,
    client: Option<&Client>,
) -> Result<Target, Problem> {
    if uris.is_empty() && !current.is_unrestricted() {
        return Ok(Target {
            audience: *current,
            declared: None,
        });
    }
    let target = resolve(state, uris, client).await?;
    if !target.audience.is_subset_of(current) {
        return Err(Problem::invalid_target(
            "a refresh may narrow the audience, never widen it",
        ));
    }
    Ok(target)
}

/// Checks the resources a client is limited to: each a registered
/// resource URI (answered as given).
///
/// # Errors
///
/// 400 `invalid_request` for a malformed or unregistered one; 503 when the
/// registry is unavailable.
pub async fn check_client_resources(
    state: &AppState,
    uris: &[String],
) -> Result<Vec<String>, Problem> {
    let parsed = parse_all(uris.iter().map(String::as_str))
        .map_err(|problem| Problem::invalid_request(problem.description().to_owned()))?;
    let tags: Vec<ResourceTag> = parsed.iter().map(ResourceUri::tag).collect();
    let found = state.resources().get_many(&tags).await?;
    if let Some((uri, _)) = parsed.iter().zip(&found).find(|(_, found)| found.is_none()) {
        return Err(Problem::invalid_request(format!(
            "resource {:?} is not registered (token-authority resource add)",
            uri.as_str()
        )));
    }
    Ok(parsed.iter().map(|uri| uri.as_str().to_owned()).collect())
}

/// The URIs of the registered resources of `audience`, for `aud` claims
/// (RFC 7662, RFC 9068): removed resources are left out; `None` for an
/// unrestricted audience.
///
/// # Errors
///
/// 503 when the registry is unavailable.
pub async fn audience_uris(
    state: &AppState,
    audience: &Audience,
) -> Result<Option<Vec<String>>, Problem> {
    if audience.is_unrestricted() {
        return Ok(None);
    }
    let found = state.resources().get_many(audience.tags()).await?;
    Ok(Some(
        found
            .into_iter()
            .flatten()
            .map(|resource| resource.uri.as_str().to_owned())
            .collect(),
    ))
}

/// `aud` as RFC 7662 shows it ([`aud`]): a string for one resource, an
/// array otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Aud<'a> {
    /// Only the authority's own resource (the default audience): its URI,
    /// borrowed from the registry rather than copied for every answer.
    Issuer(&'a str),
    /// The URIs of the registered resources (removed ones left out).
    Listed(Vec<String>),
}

impl Aud<'_> {
    /// Writes `"aud":…` into `object`: one URI as a string, any other
    /// number as an array.
    pub fn write(&self, object: &mut JsonObject) {
        match self {
            Self::Issuer(uri) => object.string("aud", uri),
            Self::Listed(uris) => match uris.as_slice() {
                [uri] => object.string("aud", uri),
                uris => object.strings("aud", uris),
            },
        };
    }
}

/// The `aud` claim of `audience` ([`aud_claim`] of its [`audience_uris`]),
/// without a lookup or a copy when it is the authority's own resource
/// alone; `None` for an unrestricted audience.
///
/// # Errors
///
/// 503 when the registry is unavailable.
pub async fn aud<'a>(state: &'a AppState, audience: &Audience) -> Result<Option<Aud<'a>>, Problem> {
    let issuer = state.resources().issuer();
    if audience.tags() == [issuer.tag()] {
        return Ok(Some(Aud::Issuer(issuer.uri.as_str())));
    }
    Ok(audience_uris(state, audience).await?.map(Aud::Listed))
}

/// `aud` as RFC 7662 shows it: a string for one resource, an array for
/// several; absent for an unrestricted audience.
#[must_use]
pub fn aud_claim(uris: Option<Vec<String>>) -> Option<serde_json::Value> {
    let mut uris = uris?;
    Some(if uris.len() == 1 {
        serde_json::Value::String(uris.remove(0))
    } else {
        uris.into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `aud` as [`Aud::write`] writes it.
    fn written(aud: &Aud<'_>) -> serde_json::Value {
        let mut object = JsonObject::with_capacity(64);
        aud.write(&mut object);
        let mut value: serde_json::Value = serde_json::from_slice(&object.finish()).expect("JSON");
        value["aud"].take()
    }

    /// `Aud` writes what `aud_claim` builds, for every shape: one URI a
    /// string (the issuer's, borrowed, the same), several an array, none
    /// (every resource removed) an empty array.
    #[test]
    fn aud_is_written_as_aud_claim_builds_it() {
        let uris = |list: &[&str]| list.iter().map(|uri| (*uri).to_owned()).collect::<Vec<_>>();
        for list in [
            &[][..],
            &["https://api.example"][..],
            &["https://a.example", "https://b.example"][..],
        ] {
            let written = written(&Aud::Listed(uris(list)));
            assert_eq!(Some(written), aud_claim(Some(uris(list))), "{list:?}");
        }
        assert_eq!(
            written(&Aud::Issuer("https://issuer.example")),
            aud_claim(Some(uris(&["https://issuer.example"]))).expect("one URI"),
        );
    }
}
