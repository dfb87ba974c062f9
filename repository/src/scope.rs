//! OAuth 2.0 scopes (RFC 6749 §3.3).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A set of scope tokens, in the order first given, without duplicates.
///
/// Serialises as a list; [`fmt::Display`] gives the space-delimited form used
/// on the wire (`"read write"`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct Scopes(Vec<String>);

/// A scope string that RFC 6749 §3.3 does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// Empty scope token (leading, trailing or doubled space).
    #[error("scope contains an empty entry (leading, trailing or doubled space)")]
    Empty,
    /// A character outside `%x21 / %x23-5B / %x5D-7E`.
    #[error("scope contains a character that RFC 6749 does not allow")]
    Character,
    /// More entries or longer entries than any sane deployment uses.
    #[error("scope is too long")]
    TooLong,
}

/// At most this many scope tokens per token.
pub const MAX_SCOPES: usize = 64;
/// At most this many bytes per scope token.
pub const MAX_SCOPE_LEN: usize = 128;

impl Scopes {
    /// No scopes.
    #[must_use]
    pub const fn empty() -> Self {
        Self(Vec::new())
    }

    /// Parses the space-delimited wire form. The empty string is no scopes.
    ///
    /// # Errors
    ///
    /// [`ScopeError`] for empty entries, forbidden characters or excess length.
    pub fn parse(text: &str) -> Result<Self, ScopeError> {
        if text.is_empty() {
            return Ok(Self::empty());
        }
        Self::from_tokens(text.split(' ').map(str::to_owned))
    }

    /// Builds a set from individual scope tokens, checking each.
    ///
    /// # Errors
    ///
    /// See [`Self::parse`].
    pub fn from_tokens<I, S>(tokens: I) -> Result<Self, ScopeError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut scopes: Vec<String> = Vec::new();
        for token in tokens {
            let token = token.into();
            if token.is_empty() {
                return Err(ScopeError::Empty);
            }
            if token.len() > MAX_SCOPE_LEN {
                return Err(ScopeError::TooLong);
            }
            if !token.bytes().all(is_scope_char) {
                return Err(ScopeError::Character);
            }
            if !scopes.contains(&token) {
                if scopes.len() == MAX_SCOPES {
                    return Err(ScopeError::TooLong);
                }
                scopes.push(token);
            }
        }
        Ok(Self(scopes))
    }

    /// Whether `scope` is in the set.
    #[must_use]
    pub fn contains(&self, scope: &str) -> bool {
        self.0.iter().any(|own| own == scope)
    }

    /// Whether every scope of `self` is in `other`.
    #[must_use]
    pub fn is_subset_of(&self, other: &Self) -> bool {
        self.0.iter().all(|scope| other.contains(scope))
    }

    /// Whether there are no scopes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The scope tokens.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl fmt::Display for Scopes {
    /// Space-separated, written piece by piece (no joined copy).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut tokens = self.0.iter();
        if let Some(first) = tokens.next() {
            f.write_str(first)?;
            for token in tokens {
                f.write_str(" ")?;
                f.write_str(token)?;
            }
        }
        Ok(())
    }
}

impl TryFrom<Vec<String>> for Scopes {
    type Error = ScopeError;

    fn try_from(tokens: Vec<String>) -> Result<Self, ScopeError> {
        Self::from_tokens(tokens)
    }
}

impl From<Scopes> for Vec<String> {
    fn from(scopes: Scopes) -> Self {
        scopes.0
    }
}

/// `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`
const fn is_scope_char(byte: u8) -> bool {
    matches!(byte, 0x21 | 0x23..=0x5B | 0x5D..=0x7E)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire form round-trips and duplicates collapse.
    #[test]
    fn parses_and_prints() {
        let scopes = Scopes::parse("read write read").expect("valid");
        assert_eq!(scopes.to_string(), "read write");
        assert!(scopes.contains("write"));
        assert!(!scopes.contains("admin"));
        assert!(Scopes::parse("").expect("empty").is_empty());
    }

    /// RFC 6749 §3.3 syntax is enforced.
    #[test]
    fn rejects_bad_syntax() {
        assert_eq!(Scopes::parse(" read"), Err(ScopeError::Empty));
        assert_eq!(Scopes::parse("read  write"), Err(ScopeError::Empty));
        assert_eq!(Scopes::parse("re\"ad"), Err(ScopeError::Character));
        assert_eq!(Scopes::parse("re\\ad"), Err(ScopeError::Character));
        assert_eq!(Scopes::parse("réad"), Err(ScopeError::Character));
        assert_eq!(
            Scopes::parse(&"a".repeat(MAX_SCOPE_LEN + 1)),
            Err(ScopeError::TooLong)
        );
    }

    /// Subset checks drive "requested scope must be granted scope".
    #[test]
    fn subset() {
        let granted = Scopes::parse("read write admin").expect("valid");
        assert!(
            Scopes::parse("read admin")
                .expect("valid")
                .is_subset_of(&granted)
        );
        assert!(
            !Scopes::parse("read delete")
                .expect("valid")
                .is_subset_of(&granted)
        );
        assert!(Scopes::empty().is_subset_of(&granted));
    }
}
