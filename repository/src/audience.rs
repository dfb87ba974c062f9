//! Audiences (RFC 8707): which resource servers a token may be presented
//! to.
//!
//! A resource server is named by an absolute URI ([`ResourceUri`]). Records
//! do not repeat URIs: a token's [`Audience`] is a short list of
//! [`ResourceTag`]s, the first [`RESOURCE_TAG_LEN`] bytes of the SHA-256 of
//! the normalized URI, so that checking it is a comparison of 4-byte values
//! and a session record grows by 1 + 4·n bytes.
//!
//! A tag is not unique by construction: two URIs collide with probability
//! 2⁻³². The authority's registry refuses to register a URI whose tag is
//! taken, so registered resources never collide; the residual risk is an
//! *unregistered* URI (a service configured with a resource the authority
//! does not know) whose tag equals a registered one, which would accept
//! that resource's tokens — one chance in 2³² per such service.
//!
//! An empty audience means *unrestricted*: it is what records written
//! before audiences existed decode to, and they are accepted everywhere
//! until they expire. The authority always issues a non-empty audience.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Bytes of a [`ResourceTag`].
pub const RESOURCE_TAG_LEN: usize = 4;
/// Most resources one token may name.
pub const MAX_AUDIENCE: usize = 8;
/// Longest resource URI accepted.
pub const MAX_RESOURCE_URI_LEN: usize = 512;

/// Why a string is not an acceptable resource URI, or a list of them not an
/// acceptable audience.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    /// Not an absolute URI.
    #[error("a resource must be an absolute URI")]
    NotAbsolute,
    /// RFC 8707 §2: the resource must not carry a fragment.
    #[error("a resource URI must not have a fragment")]
    Fragment,
    /// Credentials in the URI.
    #[error("a resource URI must not carry credentials")]
    Credentials,
    /// Longer than [`MAX_RESOURCE_URI_LEN`].
    #[error("a resource URI is at most 512 characters")]
    TooLong,
    /// More than [`MAX_AUDIENCE`] resources.
    #[error("at most 8 resources per token")]
    TooMany,
}

/// A resource server's URI, checked (absolute, no fragment, no
/// credentials, at most [`MAX_RESOURCE_URI_LEN`] characters), with its tag.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ResourceUri {
    text: String,
    normalized: String,
    tag: ResourceTag,
}

impl ResourceUri {
    /// Checks `text` and computes its tag from the normalized form (scheme
    /// and host in lower case, default port dropped, an empty path written
    /// `/`), so `https://API.example` and `https://api.example:443/` name
    /// the same resource.
    ///
    /// # Errors
    ///
    /// [`ResourceError`] for anything unacceptable.
    pub fn parse(text: &str) -> Result<Self, ResourceError> {
        if text.len() > MAX_RESOURCE_URI_LEN {
            return Err(ResourceError::TooLong);
        }
        if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ResourceError::NotAbsolute);
        }
        let parsed = url::Url::parse(text).map_err(|_| ResourceError::NotAbsolute)?;
        if parsed.fragment().is_some() || text.contains('#') {
            return Err(ResourceError::Fragment);
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(ResourceError::Credentials);
        }
        Ok(Self {
            text: text.to_owned(),
            tag: ResourceTag::of_normalized(parsed.as_str()),
            normalized: parsed.into(),
        })
    }

    /// The URI as given.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The normalized form its tag is computed from.
    #[must_use]
    pub fn normalized(&self) -> &str {
        &self.normalized
    }

    /// Its tag.
    #[must_use]
    pub fn tag(&self) -> ResourceTag {
        self.tag
    }
}

impl fmt::Debug for ResourceUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResourceUri({:?}, {})", self.text, self.tag)
    }
}

impl fmt::Display for ResourceUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The compact name of a resource in records: the first
/// [`RESOURCE_TAG_LEN`] bytes of the SHA-256 of its normalized URI.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ResourceTag([u8; RESOURCE_TAG_LEN]);

impl ResourceTag {
    fn of_normalized(normalized: &str) -> Self {
        let digest = Sha256::digest(normalized.as_bytes());
        let mut tag = [0_u8; RESOURCE_TAG_LEN];
        tag.copy_from_slice(&digest[..RESOURCE_TAG_LEN]);
        Self(tag)
    }

    /// Wraps raw tag bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; RESOURCE_TAG_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; RESOURCE_TAG_LEN] {
        &self.0
    }

    /// Lower-case hex (8 characters): the tag's name in the registry and
    /// the admin API.
    #[must_use]
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// Parses [`to_hex`](Self::to_hex)'s form (either case).
    #[must_use]
    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 2 * RESOURCE_TAG_LEN || !text.is_ascii() {
            return None;
        }
        let mut tag = [0_u8; RESOURCE_TAG_LEN];
        for (index, byte) in tag.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * index..2 * index + 2], 16).ok()?;
        }
        Some(Self(tag))
    }
}

impl fmt::Debug for ResourceTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResourceTag({})", self.to_hex())
    }
}

impl fmt::Display for ResourceTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The resources a token may be presented to: at most [`MAX_AUDIENCE`]
/// tags, sorted, without duplicates; empty means unrestricted (records
/// written before audiences existed).
///
/// Held inline (no heap), so copying a cached record's audience and
/// checking it allocate nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Audience {
    len: u8,
    tags: [ResourceTag; MAX_AUDIENCE],
}

impl Default for Audience {
    fn default() -> Self {
        Self::unrestricted()
    }
}

impl Audience {
    /// The audience of records written before audiences existed: any
    /// resource accepts them.
    #[must_use]
    pub const fn unrestricted() -> Self {
        Self {
            len: 0,
            tags: [ResourceTag([0; RESOURCE_TAG_LEN]); MAX_AUDIENCE],
        }
    }

    /// The audience of these resources (sorted, duplicates dropped).
    ///
    /// # Errors
    ///
    /// [`ResourceError::TooMany`] beyond [`MAX_AUDIENCE`] distinct tags.
    pub fn of(tags: impl IntoIterator<Item = ResourceTag>) -> Result<Self, ResourceError> {
        let mut tags: Vec<ResourceTag> = tags.into_iter().collect();
        tags.sort_unstable();
        tags.dedup();
        if tags.len() > MAX_AUDIENCE {
            return Err(ResourceError::TooMany);
        }
        let mut audience = Self::unrestricted();
        audience.tags[..tags.len()].copy_from_slice(&tags);
        audience.len = u8::try_from(tags.len()).map_err(|_| ResourceError::TooMany)?;
        Ok(audience)
    }

    /// Whether this is the unrestricted (legacy) audience.
    #[must_use]
    pub fn is_unrestricted(&self) -> bool {
        self.len == 0
    }

    /// Whether a resource whose tag is `tag` accepts the token: the tag is
    /// in the audience, or the audience is unrestricted. Allocation-free.
    #[must_use]
    pub fn permits(&self, tag: ResourceTag) -> bool {
        self.is_unrestricted() || self.tags().contains(&tag)
    }

    /// Whether every resource of `self` is in `other` (an unrestricted
    /// `other` contains everything; an unrestricted `self` is contained
    /// only in an unrestricted `other`).
    #[must_use]
    pub fn is_subset_of(&self, other: &Self) -> bool {
        other.is_unrestricted()
            || (!self.is_unrestricted() && self.tags().iter().all(|tag| other.tags().contains(tag)))
    }

    /// The tags, sorted.
    #[must_use]
    pub fn tags(&self) -> &[ResourceTag] {
        &self.tags[..usize::from(self.len)]
    }
}

impl fmt::Debug for Audience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.tags()).finish()
    }
}

/// A sequence of tags (postcard: a length byte, then 4 bytes per tag).
impl Serialize for Audience {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.tags())
    }
}

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let tags = Vec::<ResourceTag>::deserialize(deserializer)?;
        Self::of(tags).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Equivalent spellings of one URI share a tag; different URIs do not;
    /// the tag is stable (it is stored in records).
    #[test]
    fn tags_follow_the_normalized_uri() {
        let a = ResourceUri::parse("https://API.example").expect("valid");
        let b = ResourceUri::parse("https://api.example:443/").expect("valid");
        assert_eq!(a.tag(), b.tag());
        assert_eq!(a.as_str(), "https://API.example");
        let c = ResourceUri::parse("https://api.example/orders").expect("valid");
        assert_ne!(a.tag(), c.tag());
        let d = ResourceUri::parse("http://127.0.0.1:8080").expect("valid");
        let e = ResourceUri::parse("http://127.0.0.1:8080/").expect("valid");
        assert_eq!(d.tag(), e.tag());
        // SHA-256("https://api.example/") begins with these 4 bytes.
        let expected = Sha256::digest(b"https://api.example/");
        assert_eq!(a.tag().as_bytes()[..], expected[..4]);
        assert_eq!(ResourceTag::from_hex(&a.tag().to_hex()), Some(a.tag()));
        assert_eq!(
            ResourceTag::from_hex(&a.tag().to_hex().to_uppercase()),
            Some(a.tag())
        );
    }

    /// Relative URIs, fragments, credentials, spaces and overlong URIs are
    /// refused; a bad hex tag is not a tag.
    #[test]
    fn refuses_bad_uris() {
        for (text, error) in [
            ("", ResourceError::NotAbsolute),
            ("/orders", ResourceError::NotAbsolute),
            ("orders", ResourceError::NotAbsolute),
            ("https://a.example/ x", ResourceError::NotAbsolute),
            ("https://a.example/#f", ResourceError::Fragment),
            ("https://a.example/#", ResourceError::Fragment),
            ("https://u:p@a.example/", ResourceError::Credentials),
        ] {
            assert_eq!(ResourceUri::parse(text), Err(error), "{text:?}");
        }
        let long = format!("https://a.example/{}", "x".repeat(MAX_RESOURCE_URI_LEN));
        assert_eq!(ResourceUri::parse(&long), Err(ResourceError::TooLong));
        assert_eq!(ResourceTag::from_hex("abc"), None);
        assert_eq!(ResourceTag::from_hex("zzzzzzzz"), None);
        assert_eq!(ResourceTag::from_hex("ééééé"), None);
    }

    /// An audience is sorted and deduplicated, bounded, and permits only
    /// its own tags unless it is unrestricted.
    #[test]
    fn audience_membership_and_bounds() {
        let tag = |n: u8| ResourceTag::from_bytes([n, 0, 0, 0]);
        let audience = Audience::of([tag(3), tag(1), tag(3)]).expect("small");
        assert_eq!(audience.tags(), &[tag(1), tag(3)]);
        assert!(audience.permits(tag(1)));
        assert!(!audience.permits(tag(2)));
        assert!(Audience::unrestricted().permits(tag(2)));
        assert!(
            Audience::of([tag(1)])
                .expect("small")
                .is_subset_of(&audience)
        );
        assert!(
            !Audience::of([tag(2)])
                .expect("small")
                .is_subset_of(&audience)
        );
        assert!(!Audience::unrestricted().is_subset_of(&audience));
        assert!(audience.is_subset_of(&Audience::unrestricted()));
        assert!(Audience::of((0..8).map(tag)).is_ok());
        assert_eq!(Audience::of((0..9).map(tag)), Err(ResourceError::TooMany));
    }
}
