//! The stored form of a [`TokenRecord`]: a version byte and a compact
//! `postcard` body.
//!
//! Records are read on every request by every service, and a deployment holds
//! millions of them, so the format is binary and small (a typical access
//! record is about 120 bytes, a third of its JSON). The token id is not
//! stored: it is derived from the key's digest. The leading version byte
//! lets a reader refuse a format it does not know instead of misreading it;
//! a new format means upgrading the readers (every token client) before the
//! writer (the authority).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::record::{Timestamp, TokenRecord};
use crate::scope::Scopes;
use crate::token::{TokenDigest, TokenKind};

/// The format written by this version.
const VERSION: u8 = 1;

#[derive(Serialize)]
struct StoredRef<'a> {
    kind: TokenKind,
    subject: &'a str,
    username: &'a str,
    name: Option<&'a str>,
    email: Option<&'a str>,
    scopes: &'a Scopes,
    client_id: Option<&'a str>,
    issued_at: Timestamp,
    expires_at: Timestamp,
    family: Uuid,
}

#[derive(Deserialize)]
struct Stored {
    kind: TokenKind,
    subject: String,
    username: String,
    name: Option<String>,
    email: Option<String>,
    scopes: Scopes,
    client_id: Option<String>,
    issued_at: Timestamp,
    expires_at: Timestamp,
    family: Uuid,
}

/// A stored value that this version cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Written by a newer (or unknown) format version.
    #[error("stored record has unknown format version {0}")]
    Version(u8),
    /// Not a record at all, or damaged.
    #[error("stored record is malformed")]
    Malformed,
}

/// Encodes a record for storage.
#[must_use]
pub fn encode(record: &TokenRecord) -> Vec<u8> {
    let stored = StoredRef {
        kind: record.kind,
        subject: &record.subject,
        username: &record.username,
        name: record.name.as_deref(),
        email: record.email.as_deref(),
        scopes: &record.scopes,
        client_id: record.client_id.as_deref(),
        issued_at: record.issued_at,
        expires_at: record.expires_at,
        family: record.family,
    };
    let mut out = vec![VERSION];
    // Serialising plain data into a Vec cannot fail.
    out.extend(postcard::to_allocvec(&stored).unwrap_or_default());
    out
}

/// Decodes a stored record; `digest` is the key it was found under.
///
/// # Errors
///
/// [`CodecError`] for an unknown version or malformed bytes.
pub fn decode(bytes: &[u8], digest: &TokenDigest) -> Result<TokenRecord, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Malformed)?;
    if version != VERSION {
        return Err(CodecError::Version(version));
    }
    let stored: Stored = postcard::from_bytes(body).map_err(|_| CodecError::Malformed)?;
    Ok(TokenRecord {
        id: digest.token_id(),
        kind: stored.kind,
        subject: stored.subject,
        username: stored.username,
        name: stored.name,
        email: stored.email,
        scopes: stored.scopes,
        client_id: stored.client_id,
        issued_at: stored.issued_at,
        expires_at: stored.expires_at,
        family: stored.family,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(digest: &TokenDigest) -> TokenRecord {
        TokenRecord {
            id: digest.token_id(),
            kind: TokenKind::Access,
            subject: "0b6f1c9e-8a57-4d43-9d0e-3f1f5f4f2a10".into(),
            username: "alice".into(),
            name: Some("Alice Example".into()),
            email: Some("alice@example.com".into()),
            scopes: Scopes::parse("read write").expect("valid"),
            client_id: Some("web".into()),
            issued_at: Timestamp::from_unix_millis(1_763_900_000_000),
            expires_at: Timestamp::from_unix_millis(1_763_900_900_000),
            family: Uuid::from_u128(7),
        }
    }

    /// Encoding then decoding gives back the same record, id included.
    #[test]
    fn round_trip() {
        let digest = TokenDigest::of("x");
        let record = sample(&digest);
        let bytes = encode(&record);
        assert_eq!(decode(&bytes, &digest), Ok(record));
    }

    /// The stored form is compact (it is multiplied by millions of tokens).
    #[test]
    fn is_compact() {
        let digest = TokenDigest::of("x");
        let record = sample(&digest);
        let stored = encode(&record).len();
        let json = serde_json::to_vec(&record).expect("json").len();
        assert!(stored < 140, "stored record is {stored} bytes");
        assert!(stored * 2 < json, "{stored} vs JSON {json}");
    }

    /// Unknown versions and garbage are refused, not misread.
    #[test]
    fn refuses_unknown_versions_and_garbage() {
        let digest = TokenDigest::of("x");
        let mut bytes = encode(&sample(&digest));
        bytes[0] = 2;
        assert_eq!(decode(&bytes, &digest), Err(CodecError::Version(2)));
        assert_eq!(decode(&[], &digest), Err(CodecError::Malformed));
        assert_eq!(
            decode(&[VERSION, 9, 9], &digest),
            Err(CodecError::Malformed)
        );
    }
}
