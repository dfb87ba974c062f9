//! The registry of resource servers: the audiences tokens may name (RFC
//! 8707).
//!
//! One Redis hash, `P resources`, maps a resource's tag (hex, see
//! [`token_repository::audience`]) to its URI and declared scopes. A
//! registration is `HSETNX`: a URI whose tag is already taken — by the same
//! URI, or by another one (one chance in 2³²) — is refused, so registered
//! resources never share a tag. The authority itself is a resource, named
//! by its issuer; it is registered implicitly (never stored, never
//! removable) and declares no scopes.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use token_repository::{RedisStore, ResourceTag, ResourceUri, Scopes};

use crate::accounts::TrackedAccounts;

/// Errors of the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Redis failed.
    #[error(transparent)]
    Store(#[from] token_repository::Error),
    /// A stored entry could not be read.
    #[error("stored resource {0} is unreadable")]
    Corrupt(String),
}

/// A registered resource server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// Its URI, as registered.
    pub uri: ResourceUri,
    /// The scopes that mean something to it; empty: it declares none, and
    /// any scope may be requested with it.
    pub scopes: Scopes,
}

impl Resource {
    /// Its tag.
    #[must_use]
    pub fn tag(&self) -> ResourceTag {
        self.uri.tag()
    }
}

/// What a registration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// The resource is now registered.
    Added,
    /// The same resource (the same normalized URI) was registered already;
    /// nothing changed.
    Exists,
    /// Another registered resource has the same tag; nothing changed.
    Collision(String),
}

#[derive(Serialize, Deserialize)]
struct Stored {
    uri: String,
    #[serde(default)]
    scopes: Scopes,
}

/// The registry. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Resources {
    store: RedisStore,
    issuer: Resource,
    /// Registered resources in memory (`INTROSPECTION_CACHE`).
    tracked: Option<Arc<TrackedAccounts>>,
}

impl Resources {
    /// The registry in the Redis of `store`; `issuer` is the authority's
    /// own resource.
    #[must_use]
    pub fn new(store: RedisStore, issuer: ResourceUri) -> Self {
        Self {
            store,
            issuer: Resource {
                uri: issuer,
                scopes: Scopes::empty(),
            },
            tracked: None,
        }
    }

    /// This registry, answering [`get_many`](Self::get_many) from
    /// `tracked` when it holds every resource asked for. A tag's URI
    /// never changes (the tag is the URI's digest, and registration is
    /// `HSETNX`); a removal here or anywhere drops them all.
    #[must_use]
    pub fn with_tracked(mut self, tracked: Arc<TrackedAccounts>) -> Self {
        self.tracked = Some(tracked);
        self
    }

    /// The registry changed here: drop what memory holds.
    fn changed(&self) {
        if let Some(tracked) = &self.tracked {
            tracked.forget_resources();
        }
    }

    /// The authority's own resource.
    #[must_use]
    pub fn issuer(&self) -> &Resource {
        &self.issuer
    }

    fn key(&self) -> String {
        self.store.prefix().resources()
    }

    /// Registers `uri` with its declared `scopes`.
    ///
    /// # Errors
    ///
    /// Store failures.
    pub async fn add(
        &self,
        uri: &ResourceUri,
        scopes: &Scopes,
    ) -> Result<Registered, RegistryError> {
        if uri.tag() == self.issuer.tag() {
            return Ok(if same(uri, &self.issuer.uri) {
                Registered::Exists
            } else {
                Registered::Collision(self.issuer.uri.to_string())
            });
        }
        let value = serde_json::to_string(&Stored {
            uri: uri.as_str().to_owned(),
            scopes: scopes.clone(),
        })
        .map_err(|error| RegistryError::Corrupt(error.to_string()))?;
        let (key, field) = (self.key(), uri.tag().to_hex());
        let added: bool = self
            .store
            .with_shared(|mut connection| async move {
                redis::cmd("HSETNX")
                    .arg(&key)
                    .arg(&field)
                    .arg(&value)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        if added {
            self.changed();
            tracing::info!(resource = %uri, tag = %uri.tag(), "resource registered");
            return Ok(Registered::Added);
        }
        match self.get(uri.tag()).await? {
            Some(existing) if same(&existing.uri, uri) => Ok(Registered::Exists),
            Some(existing) => Ok(Registered::Collision(existing.uri.to_string())),
            // Removed in between: the caller may try again.
            None => Ok(Registered::Exists),
        }
    }

    /// Removes the resource whose tag is `tag`; answers it. The authority's
    /// own resource is never removed (`None`).
    ///
    /// # Errors
    ///
    /// Store failures.
    pub async fn remove(&self, tag: ResourceTag) -> Result<Option<Resource>, RegistryError> {
        if tag == self.issuer.tag() {
            return Ok(None);
        }
        let Some(resource) = self.get(tag).await? else {
            return Ok(None);
        };
        let (key, field) = (self.key(), tag.to_hex());
        let removed: bool = self
            .store
            .with_shared(|mut connection| async move {
                redis::cmd("HDEL")
                    .arg(&key)
                    .arg(&field)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        if removed {
            self.changed();
            tracing::info!(resource = %resource.uri, %tag, "resource removed");
        }
        Ok(removed.then_some(resource))
    }

    /// The resource whose tag is `tag`, if registered.
    ///
    /// # Errors
    ///
    /// Store failures, unreadable entries.
    pub async fn get(&self, tag: ResourceTag) -> Result<Option<Resource>, RegistryError> {
        Ok(self.get_many(&[tag]).await?.pop().flatten())
    }

    /// The resources of `tags`, in order (`None` for unregistered ones):
    /// one round trip, none when only the authority is asked for.
    ///
    /// # Errors
    ///
    /// Store failures, unreadable entries.
    pub async fn get_many(
        &self,
        tags: &[ResourceTag],
    ) -> Result<Vec<Option<Resource>>, RegistryError> {
        let stored: Vec<ResourceTag> = tags
            .iter()
            .copied()
            .filter(|tag| *tag != self.issuer.tag())
            .collect();
        let ticket = match (&self.tracked, stored.is_empty()) {
            (Some(tracked), false) => {
                if let Some(held) = tracked.resources(&stored) {
                    let held = held
                        .into_iter()
                        .map(|(uri, scopes)| Some(Resource { uri, scopes }));
                    return Ok(self.in_order(tags, held));
                }
                tracked.ticket()
            }
            _ => None,
        };
        let found = if stored.is_empty() {
            Vec::new()
        } else {
            let key = self.key();
            let fields: Vec<String> = stored.iter().map(ResourceTag::to_hex).collect();
            // Boxed: a lookup answered from memory returns above and
            // should not carry the Redis call's future.
            let values: Vec<Option<String>> =
                Box::pin(self.store.with_shared(|mut connection| async move {
                    redis::cmd("HMGET")
                        .arg(&key)
                        .arg(&fields)
                        .query_async(&mut connection)
                        .await
                }))
                .await?;
            values
                .into_iter()
                .zip(&stored)
                .map(|(value, tag)| value.map(|value| decode(*tag, &value)).transpose())
                .collect::<Result<Vec<_>, _>>()?
        };
        if let (Some(tracked), Some(ticket)) = (&self.tracked, ticket) {
            let registered = found
                .iter()
                .flatten()
                .map(|resource| (resource.uri.clone(), resource.scopes.clone()));
            tracked.remember_resources(ticket, registered);
        }
        Ok(self.in_order(tags, found.into_iter()))
    }

    /// `tags`' resources: the authority's own, the others from `found`
    /// (the stored ones, in order).
    fn in_order(
        &self,
        tags: &[ResourceTag],
        mut found: impl Iterator<Item = Option<Resource>>,
    ) -> Vec<Option<Resource>> {
        tags.iter()
            .map(|tag| {
                if *tag == self.issuer.tag() {
                    Some(self.issuer.clone())
                } else {
                    found.next().flatten()
                }
            })
            .collect()
    }

    /// Every resource, the authority's first, then by URI.
    ///
    /// # Errors
    ///
    /// Store failures, unreadable entries.
    pub async fn list(&self) -> Result<Vec<Resource>, RegistryError> {
        let key = self.key();
        let entries: Vec<(String, String)> = self
            .store
            .with_shared(|mut connection| async move {
                redis::cmd("HGETALL")
                    .arg(&key)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        let mut resources = entries
            .into_iter()
            .map(|(field, value)| {
                let tag = ResourceTag::from_hex(&field)
                    .ok_or_else(|| RegistryError::Corrupt(field.clone()))?;
                decode(tag, &value)
            })
            .collect::<Result<Vec<_>, _>>()?;
        resources.sort_by(|a, b| a.uri.as_str().cmp(b.uri.as_str()));
        resources.insert(0, self.issuer.clone());
        Ok(resources)
    }
}

/// Whether two URIs name the same resource (the same normalized form).
fn same(a: &ResourceUri, b: &ResourceUri) -> bool {
    a.normalized() == b.normalized()
}

fn decode(tag: ResourceTag, value: &str) -> Result<Resource, RegistryError> {
    let stored: Stored =
        serde_json::from_str(value).map_err(|_| RegistryError::Corrupt(tag.to_hex()))?;
    let uri = ResourceUri::parse(&stored.uri).map_err(|_| RegistryError::Corrupt(tag.to_hex()))?;
    if uri.tag() != tag {
        return Err(RegistryError::Corrupt(tag.to_hex()));
    }
    Ok(Resource {
        uri,
        scopes: stored.scopes,
    })
}
