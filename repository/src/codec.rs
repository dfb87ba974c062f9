//! The stored forms: a session ([`SessionRecord`], format 2, what the
//! authority writes) and, for tokens issued before the bounded schema, one
//! [`TokenRecord`] per token (format 1, still read until those tokens
//! expire).
//!
//! Records are read on every request by every service, and a deployment holds
//! millions of them, so the format is binary and small. The leading version
//! byte lets a reader refuse a format it does not know instead of misreading
//! it; a new format means upgrading the readers (every token client) before
//! the writer (the authority).
//!
//! # Format 4: one record per session
//!
//! A fixed header the Lua scripts slice by position, then the holder's
//! details and the token's audience in `postcard`:
//!
//! | offset      | bytes | field                                                    |
//! |-------------|-------|----------------------------------------------------------|
//! | 0           | 1     | version, `4`                                             |
//! | 1           | 16    | current access token: first 16 bytes of its digest (zero: none) |
//! | 17          | 6     | its expiry, ms since the epoch, 48-bit big-endian (zero: none) |
//! | 23          | 16    | current refresh token's truncated digest (zero: none)    |
//! | 39          | 6     | its expiry (zero: none, e.g. `client_credentials`)       |
//! | 45          | 6     | when the current pair was issued                         |
//! | 51          | 1     | `n`, how many rotated refresh tokens are remembered (≤ [`USED_REFRESH_MEMORY`]) |
//! | 52          | 16·n  | their truncated digests, newest first                    |
//! | 52 + 16·n   | …     | holder: subject (16 raw bytes when it is a UUID), username, name, email, scopes, client id |
//! | …           | 1 + 4·k | audience: `k` ≤ [`crate::MAX_AUDIENCE`] resource tags ([`crate::audience`]) |
//!
//! 48 bits of milliseconds reach the year 10889. Six bytes instead of
//! eight for each of the three times keep a typical session's record
//! (about 150 bytes) one allocator size class lower in Redis: 32 bytes
//! less per session, about 8 % of a token pair's memory.
//!
//! Older formats are still read, until the tokens they hold expire:
//!
//! - **Format 3** is the same with 8-byte times (header 57 bytes, the used
//!   list's count at 57). Rotating a format-3 session rewrites it in
//!   format 4 (the scripts read either layout).
//! - **Format 2** (written before audiences existed) is format 3 without
//!   the audience: its records decode with the unrestricted audience, so
//!   the tokens they hold are accepted by every resource until they expire
//!   (at most the refresh token lifetime; a refresh rewrites the session
//!   with the authority's `DEFAULT_AUDIENCE`).
//!
//! Readers that do not know a format refuse it (fail closed), which is why
//! every token client is upgraded before the authority.
//!
//! Digests are truncated to 128 bits: a guess costs one lookup, so 2¹²⁸
//! is far beyond reach; they are compared in constant time. Token ids are
//! derived from the same 16 bytes, so the session list needs nothing more.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::audience::Audience;
use crate::holder::Holder;
use crate::record::{Timestamp, TokenRecord};
use crate::scope::Scopes;
use crate::token::{TokenDigest, TokenKind};

/// The per-token format (format 1), read for tokens issued before the
/// bounded schema.
const VERSION: u8 = 1;
/// The per-session format written by this version (6-byte times).
pub const SESSION_VERSION: u8 = 4;
/// The per-session format with 8-byte times, still read.
pub const SESSION_VERSION_WIDE: u8 = 3;
/// The per-session format written before audiences existed, still read.
pub const SESSION_VERSION_UNRESTRICTED: u8 = 2;
/// Bytes of the part of a session header the writer supplies whole on
/// issue and rotation: version, both token slots, issued-at.
pub const SESSION_HEADER_LEN: usize = Layout::CURRENT.used_count();

/// How many rotated refresh tokens per family are remembered for reuse
/// detection (the session format holds at most this many). Presenting one
/// of them revokes the family; older ones are merely unknown (and refused).
pub const USED_REFRESH_MEMORY: usize = 4;

/// Format 1 as written. postcard writes a nested struct as its fields in
/// order, so the embedded [`Holder`] takes the bytes its six fields took
/// when they were written out here one by one.
#[derive(Serialize)]
struct StoredRef<'a> {
    kind: TokenKind,
    holder: &'a Holder,
    issued_at: Timestamp,
    expires_at: Timestamp,
    family: Uuid,
}

/// Format 1 as read.
#[derive(Deserialize)]
struct Stored {
    kind: TokenKind,
    holder: Holder,
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

/// Encodes a record in format 1 (per token; the authority no longer writes
/// it — for migration tests).
#[must_use]
pub fn encode(record: &TokenRecord) -> Vec<u8> {
    let stored = StoredRef {
        kind: record.kind,
        holder: &record.holder,
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
        holder: Arc::new(stored.holder),
        issued_at: stored.issued_at,
        expires_at: stored.expires_at,
        family: stored.family,
        audience: Audience::unrestricted(),
    })
}

/// One token of a session: its truncated digest and expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// The first 16 bytes of the token's digest ([`TokenDigest::short`]).
    pub digest: [u8; 16],
    /// When it expires.
    pub expires_at: Timestamp,
}

/// Everything stored about one session (family): the holder, the current
/// access and refresh tokens, and the recently rotated refresh tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Who holds the session's tokens, what they grant, for which client
    /// (shared with the records made from it).
    pub holder: Arc<Holder>,
    /// Where the tokens may be presented (unrestricted for format 2).
    pub audience: Audience,
    /// When the current pair was issued.
    pub issued_at: Timestamp,
    /// The current access token (`None` once revoked).
    pub access: Option<Slot>,
    /// The current refresh token (`None` for grants without one).
    pub refresh: Option<Slot>,
    /// Truncated digests of rotated refresh tokens, newest first: presenting
    /// one of them again is reuse.
    pub used: Vec<[u8; 16]>,
}

impl SessionRecord {
    /// The record of the session's token whose digest is `digest`, if it is
    /// the current token of `kind` and live at `now` (constant-time
    /// comparison).
    #[must_use]
    pub fn token(
        &self,
        kind: TokenKind,
        digest: &TokenDigest,
        family: Uuid,
        now: Timestamp,
    ) -> Option<TokenRecord> {
        let slot = match kind {
            TokenKind::Access => self.access?,
            TokenKind::Refresh => self.refresh?,
        };
        (digest.ct_eq_short(&slot.digest) && now < slot.expires_at)
            .then(|| self.record(kind, digest.token_id(), slot.expires_at, family))
    }

    /// Whether `digest` is one of the remembered rotated refresh tokens
    /// (constant-time per comparison).
    #[must_use]
    pub fn was_used(&self, digest: &TokenDigest) -> bool {
        self.used
            .iter()
            .fold(false, |found, used| found | digest.ct_eq_short(used))
    }

    /// The records of the session's live tokens at `now`, access first.
    #[must_use]
    pub fn live_tokens(&self, family: Uuid, now: Timestamp) -> Vec<TokenRecord> {
        [
            (TokenKind::Access, self.access),
            (TokenKind::Refresh, self.refresh),
        ]
        .into_iter()
        .filter_map(|(kind, slot)| Some((kind, slot?)))
        .filter(|(_, slot)| now < slot.expires_at)
        .map(|(kind, slot)| {
            self.record(
                kind,
                TokenDigest::id_of_short(&slot.digest),
                slot.expires_at,
                family,
            )
        })
        .collect()
    }

    fn record(
        &self,
        kind: TokenKind,
        id: Uuid,
        expires_at: Timestamp,
        family: Uuid,
    ) -> TokenRecord {
        TokenRecord {
            id,
            kind,
            holder: self.holder.clone(),
            issued_at: self.issued_at,
            expires_at,
            family,
            audience: self.audience,
        }
    }

    /// The header (first [`SESSION_HEADER_LEN`] bytes) of this session.
    #[must_use]
    pub fn header(&self) -> Vec<u8> {
        self.header_as(SESSION_VERSION, Layout::CURRENT)
    }

    fn header_as(&self, version: u8, layout: Layout) -> Vec<u8> {
        let mut out = Vec::with_capacity(layout.used_count());
        out.push(version);
        for slot in [self.access, self.refresh] {
            match slot {
                Some(slot) => {
                    out.extend_from_slice(&slot.digest);
                    layout.put_time(&mut out, slot.expires_at);
                }
                None => out.resize(out.len() + layout.slot_len(), 0),
            }
        }
        layout.put_time(&mut out, self.issued_at);
        out
    }

    /// The encoded holder part (after the used list), audience included.
    #[must_use]
    pub fn encoded_holder(&self) -> Vec<u8> {
        let holder = &self.holder;
        let holder = HolderRef {
            subject: CompactSubject::of(&holder.subject),
            username: &holder.username,
            name: holder.name.as_deref(),
            email: holder.email.as_deref(),
            scopes: &holder.scopes,
            client_id: holder.client_id.as_deref(),
            audience: &self.audience,
        };
        // Serialising plain data into a Vec cannot fail.
        postcard::to_allocvec(&holder).unwrap_or_default()
    }
}

/// A subject that is a UUID in canonical text is stored as its 16 bytes.
#[derive(Serialize, Deserialize)]
enum CompactSubject<'a> {
    Uuid([u8; 16]),
    Text(#[serde(borrow)] std::borrow::Cow<'a, str>),
}

impl<'a> CompactSubject<'a> {
    fn of(subject: &'a str) -> Self {
        match Uuid::parse_str(subject) {
            Ok(uuid) if uuid.hyphenated().to_string() == subject => Self::Uuid(*uuid.as_bytes()),
            _ => Self::Text(std::borrow::Cow::Borrowed(subject)),
        }
    }

    fn into_string(self) -> String {
        match self {
            Self::Uuid(bytes) => Uuid::from_bytes(bytes).hyphenated().to_string(),
            Self::Text(text) => text.into_owned(),
        }
    }
}

/// The holder as written in a session (see [`StoredHolder`]).
#[derive(Serialize)]
struct HolderRef<'a> {
    subject: CompactSubject<'a>,
    username: &'a str,
    name: Option<&'a str>,
    email: Option<&'a str>,
    scopes: &'a Scopes,
    client_id: Option<&'a str>,
    audience: &'a Audience,
}

/// The holder as stored in a session: [`Holder`] with a compact subject;
/// the audience (format 3) follows it.
#[derive(Deserialize)]
struct StoredHolder<'a> {
    #[serde(borrow)]
    subject: CompactSubject<'a>,
    username: String,
    name: Option<String>,
    email: Option<String>,
    scopes: Scopes,
    client_id: Option<String>,
}

/// Encodes a session for storage (format 4).
#[must_use]
pub fn encode_session(session: &SessionRecord) -> Vec<u8> {
    encode_session_as(session, SESSION_VERSION, Layout::CURRENT)
}

/// Encodes a session in format 3 (8-byte times) as the previous version
/// wrote it: for tests of the migration.
#[must_use]
pub fn encode_session_wide(session: &SessionRecord) -> Vec<u8> {
    encode_session_as(session, SESSION_VERSION_WIDE, Layout::WIDE)
}

fn encode_session_as(session: &SessionRecord, version: u8, layout: Layout) -> Vec<u8> {
    let mut out = session.header_as(version, layout);
    let used = session
        .used
        .iter()
        .take(USED_REFRESH_MEMORY)
        .collect::<Vec<_>>();
    out.push(u8::try_from(used.len()).unwrap_or(0));
    for digest in used {
        out.extend_from_slice(digest);
    }
    out.extend(session.encoded_holder());
    out
}

/// Where a session format keeps its fields (offsets from 0): the formats
/// differ only in how wide the three times are.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// Bytes of each time (big-endian milliseconds since the epoch).
    time: usize,
}

impl Layout {
    /// Format 4.
    const CURRENT: Self = Self { time: 6 };
    /// Formats 3 and 2.
    const WIDE: Self = Self { time: 8 };

    const fn of(version: u8) -> Result<Self, CodecError> {
        match version {
            SESSION_VERSION => Ok(Self::CURRENT),
            SESSION_VERSION_WIDE | SESSION_VERSION_UNRESTRICTED => Ok(Self::WIDE),
            other => Err(CodecError::Version(other)),
        }
    }

    /// A token slot: truncated digest, then expiry.
    const fn slot_len(self) -> usize {
        16 + self.time
    }

    const fn refresh(self) -> usize {
        1 + self.slot_len()
    }

    const fn issued(self) -> usize {
        1 + 2 * self.slot_len()
    }

    /// Where the used list's count is (the header's length).
    const fn used_count(self) -> usize {
        self.issued() + self.time
    }

    /// Appends `time` in this layout's width, saturating (48 bits of
    /// milliseconds reach the year 10889).
    fn put_time(self, out: &mut Vec<u8>, time: Timestamp) {
        let max = u64::MAX >> (64 - 8 * self.time);
        let bytes = time.as_unix_millis().min(max).to_be_bytes();
        out.extend_from_slice(&bytes[8 - self.time..]);
    }

    fn time_at(self, bytes: &[u8], at: usize) -> Result<u64, CodecError> {
        let field = bytes.get(at..at + self.time).ok_or(CodecError::Malformed)?;
        Ok(field
            .iter()
            .fold(0_u64, |value, &byte| value << 8 | u64::from(byte)))
    }

    fn slot_at(self, bytes: &[u8], at: usize) -> Result<Option<Slot>, CodecError> {
        let expires = self.time_at(bytes, at + 16)?;
        Ok((expires != 0).then_some(Slot {
            digest: digest_at(bytes, at)?,
            expires_at: Timestamp::from_unix_millis(expires),
        }))
    }
}

fn digest_at(bytes: &[u8], at: usize) -> Result<[u8; 16], CodecError> {
    bytes
        .get(at..at + 16)
        .and_then(|field| field.try_into().ok())
        .ok_or(CodecError::Malformed)
}

/// Decodes a stored session (format 4 or 3, or format 2 with the
/// unrestricted audience).
///
/// # Errors
///
/// [`CodecError`] for another version or malformed bytes.
pub fn decode_session(bytes: &[u8]) -> Result<SessionRecord, CodecError> {
    let &version = bytes.first().ok_or(CodecError::Malformed)?;
    let layout = Layout::of(version)?;
    let access = layout.slot_at(bytes, 1)?;
    let refresh = layout.slot_at(bytes, layout.refresh())?;
    let issued_at = Timestamp::from_unix_millis(layout.time_at(bytes, layout.issued())?);
    let at = layout.used_count();
    let count = usize::from(*bytes.get(at).ok_or(CodecError::Malformed)?);
    let used = (0..count)
        .map(|i| digest_at(bytes, at + 1 + 16 * i))
        .collect::<Result<Vec<_>, _>>()?;
    let body = bytes
        .get(at + 1 + 16 * count..)
        .ok_or(CodecError::Malformed)?;
    let (holder, rest): (StoredHolder<'_>, _) =
        postcard::take_from_bytes(body).map_err(|_| CodecError::Malformed)?;
    let audience = if version == SESSION_VERSION_UNRESTRICTED {
        Audience::unrestricted()
    } else {
        // At most MAX_AUDIENCE tags, or it does not deserialize.
        postcard::from_bytes(rest).map_err(|_| CodecError::Malformed)?
    };
    Ok(SessionRecord {
        holder: Arc::new(Holder {
            subject: holder.subject.into_string(),
            username: holder.username,
            name: holder.name,
            email: holder.email,
            scopes: holder.scopes,
            client_id: holder.client_id,
        }),
        audience,
        issued_at,
        access,
        refresh,
        used,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audience() -> Audience {
        Audience::of(
            ["https://orders.example", "https://a.example/"]
                .map(|uri| crate::ResourceUri::parse(uri).expect("valid").tag()),
        )
        .expect("small")
    }

    fn holder() -> Holder {
        Holder {
            subject: "0b6f1c9e-8a57-4d43-9d0e-3f1f5f4f2a10".into(),
            username: "alice".into(),
            name: Some("Alice Example".into()),
            email: Some("alice@example.com".into()),
            scopes: Scopes::parse("read write").expect("valid"),
            client_id: Some("web".into()),
        }
    }

    fn session() -> SessionRecord {
        SessionRecord {
            holder: Arc::new(holder()),
            audience: audience(),
            issued_at: Timestamp::from_unix_millis(1_763_900_000_000),
            access: Some(Slot {
                digest: TokenDigest::of("a").short(),
                expires_at: Timestamp::from_unix_millis(1_763_900_900_000),
            }),
            refresh: Some(Slot {
                digest: TokenDigest::of("r").short(),
                expires_at: Timestamp::from_unix_millis(1_764_900_900_000),
            }),
            used: vec![TokenDigest::of("u").short()],
        }
    }

    /// Sessions round-trip, UUID and non-UUID subjects alike, with and
    /// without slots; the header is where the scripts look for it.
    #[test]
    fn session_round_trip_and_layout() {
        let mut record = session();
        let bytes = encode_session(&record);
        assert_eq!(decode_session(&bytes), Ok(record.clone()));
        assert_eq!(bytes[0], SESSION_VERSION);
        assert_eq!(SESSION_HEADER_LEN, 51);
        assert_eq!(&bytes[1..17], &TokenDigest::of("a").short());
        assert_eq!(&bytes[23..39], &TokenDigest::of("r").short());
        assert_eq!(bytes[39..45], 1_764_900_900_000_u64.to_be_bytes()[2..]);
        assert_eq!(bytes[51], 1);
        assert_eq!(&bytes[52..68], &TokenDigest::of("u").short());
        // The audience adds 1 + 4 bytes per resource; the rest stays small.
        let audience = 1 + 4 * record.audience.tags().len();
        assert!(
            bytes.len() - audience < 150,
            "session record is {} bytes",
            bytes.len()
        );
        Arc::make_mut(&mut record.holder).subject = "client:reporting".into();
        record.refresh = None;
        record.used.clear();
        let bytes = encode_session(&record);
        assert_eq!(decode_session(&bytes), Ok(record));
        assert_eq!(decode_session(&bytes[..40]), Err(CodecError::Malformed));
        assert!(matches!(
            decode(&bytes, &TokenDigest::of("x")),
            Err(CodecError::Version(4))
        ));
    }

    /// The audience is the last thing in the record (1 + 4 bytes per
    /// resource), survives rotation's holder rewrite, and a damaged or
    /// oversized one is refused.
    #[test]
    fn audience_round_trip_and_size() {
        let record = session();
        let bytes = encode_session(&record);
        let mut without = record.clone();
        without.audience = Audience::unrestricted();
        let smaller = encode_session(&without);
        assert_eq!(
            bytes.len(),
            smaller.len() + 2 * crate::audience::RESOURCE_TAG_LEN
        );
        assert_eq!(
            decode_session(&bytes).expect("decodes").audience,
            audience()
        );
        let mut tail = vec![2_u8];
        for tag in audience().tags() {
            tail.extend_from_slice(tag.as_bytes());
        }
        assert!(record.encoded_holder().ends_with(&tail));
        assert_eq!(
            decode_session(&bytes[..bytes.len() - 1]),
            Err(CodecError::Malformed)
        );
        let mut oversized = smaller[..smaller.len() - 1].to_vec();
        oversized.push(9);
        oversized.extend((0..9_u8).flat_map(|n| [n, 0, 0, 0]));
        assert_eq!(decode_session(&oversized), Err(CodecError::Malformed));
    }

    /// Sessions written before audiences existed (format 2: no audience
    /// after the holder) decode as unrestricted; unknown versions are
    /// refused.
    #[test]
    fn format_2_sessions_are_unrestricted() {
        let mut record = session();
        record.audience = Audience::unrestricted();
        let mut bytes = encode_session_wide(&record);
        assert_eq!(bytes.pop(), Some(0), "an empty audience is one byte");
        bytes[0] = SESSION_VERSION_UNRESTRICTED;
        let decoded = decode_session(&bytes).expect("format 2 decodes");
        assert!(decoded.audience.is_unrestricted());
        assert_eq!(decoded, record);
        bytes[0] = 5;
        assert_eq!(decode_session(&bytes), Err(CodecError::Version(5)));
    }

    /// Sessions written with 8-byte times (format 3) still decode, to the
    /// same record; format 4 is six bytes shorter; a time past 48 bits
    /// saturates instead of wrapping into the past.
    #[test]
    fn format_3_sessions_still_decode() {
        let record = session();
        let wide = encode_session_wide(&record);
        assert_eq!(wide[0], SESSION_VERSION_WIDE);
        assert_eq!(&wide[25..41], &TokenDigest::of("r").short());
        assert_eq!(wide[57], 1);
        assert_eq!(decode_session(&wide), Ok(record.clone()));
        assert_eq!(wide.len(), encode_session(&record).len() + 6);
        let mut far = record;
        far.issued_at = Timestamp::from_unix_millis(u64::MAX);
        let decoded = decode_session(&encode_session(&far)).expect("decodes");
        assert_eq!(decoded.issued_at.as_unix_millis(), (1 << 48) - 1);
    }

    /// A token is found only as the current token of its kind, live, with
    /// the exact digest; rotated ones are recognised as used.
    #[test]
    fn session_token_matching() {
        let record = session();
        let family = Uuid::from_u128(9);
        let now = Timestamp::from_unix_millis(1_763_900_000_001);
        let access = record
            .token(TokenKind::Access, &TokenDigest::of("a"), family, now)
            .expect("live");
        assert_eq!(access.id, TokenDigest::of("a").token_id());
        assert_eq!(access.family, family);
        assert!(
            record
                .token(TokenKind::Refresh, &TokenDigest::of("a"), family, now)
                .is_none()
        );
        assert!(
            record
                .token(TokenKind::Access, &TokenDigest::of("b"), family, now)
                .is_none()
        );
        let late = Timestamp::from_unix_millis(1_763_900_900_000);
        assert!(
            record
                .token(TokenKind::Access, &TokenDigest::of("a"), family, late)
                .is_none()
        );
        assert!(record.was_used(&TokenDigest::of("u")));
        assert!(!record.was_used(&TokenDigest::of("r")));
        assert_eq!(record.live_tokens(family, late).len(), 1);
    }

    fn sample(digest: &TokenDigest) -> TokenRecord {
        TokenRecord {
            id: digest.token_id(),
            kind: TokenKind::Access,
            holder: Arc::new(holder()),
            issued_at: Timestamp::from_unix_millis(1_763_900_000_000),
            expires_at: Timestamp::from_unix_millis(1_763_900_900_000),
            family: Uuid::from_u128(7),
            audience: Audience::unrestricted(),
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

    /// The stored bytes of both formats are pinned: a refactoring of the
    /// types must not change what readers of other versions find in Redis.
    #[test]
    fn stored_bytes_are_pinned() {
        let session = encode_session(&session());
        assert_eq!(
            hex(&session),
            PINNED_SESSION,
            "format-4 session bytes changed"
        );
        assert_eq!(decode_session(&session), Ok(self::session()));
        // Format 3 (8-byte times) as the previous version wrote it: still
        // read, and written the same by `encode_session_wide`.
        assert_eq!(
            decode_session(&unhex(PINNED_SESSION_V3)),
            Ok(self::session())
        );
        assert_eq!(
            hex(&encode_session_wide(&self::session())),
            PINNED_SESSION_V3
        );
        // Format 3 is format 2 with its version byte and the audience after
        // the holder; format-2 bytes still read, unrestricted.
        assert_eq!(PINNED_SESSION_V3[..2], *"03");
        assert!(PINNED_SESSION_V3[2..].starts_with(&PINNED_SESSION_V2[2..]));
        let mut legacy = self::session();
        legacy.audience = Audience::unrestricted();
        assert_eq!(decode_session(&unhex(PINNED_SESSION_V2)), Ok(legacy));
        let digest = TokenDigest::of("x");
        let token = encode(&sample(&digest));
        assert_eq!(hex(&token), PINNED_TOKEN, "format-1 record bytes changed");
        let mut client = sample(&digest);
        let holder = Arc::make_mut(&mut client.holder);
        holder.subject = "client:reporting".into();
        holder.name = None;
        holder.email = None;
        holder.client_id = None;
        client.kind = TokenKind::Refresh;
        let bytes = encode(&client);
        assert_eq!(
            hex(&bytes),
            PINNED_CLIENT_TOKEN,
            "format-1 record bytes changed"
        );
        assert_eq!(decode(&bytes, &digest), Ok(client));
    }

    /// `encode_session(&session())`, format 3.
    const PINNED_SESSION: &str = concat!(
        "04ca978112ca1bbdcafac231b39a23dc4d019ab0afc2a0454349e422f0529719",
        "1ead13e21d3db5019aec4a8ca0019ab0a20700010bfe935e70c321c7ca3afc75",
        "ce0d0ca2000b6f1c9e8a574d439d0e3f1f5f4f2a1005616c696365010d416c69",
        "6365204578616d706c650111616c696365406578616d706c652e636f6d020472",
        "6561640577726974650103776562028c0baecebefde498",
    );
    const PINNED_SESSION_V3: &str = concat!(
        "03ca978112ca1bbdcafac231b39a23dc4d0000019ab0afc2a0454349e422f052",
        "97191ead13e21d3db50000019aec4a8ca00000019ab0a20700010bfe935e70c3",
        "21c7ca3afc75ce0d0ca2000b6f1c9e8a574d439d0e3f1f5f4f2a1005616c6963",
        "65010d416c696365204578616d706c650111616c696365406578616d706c652e",
        "636f6d0204726561640577726974650103776562028c0baecebefde498",
    );
    /// `encode_session(&session())` without its audience, as format 2
    /// wrote it.
    const PINNED_SESSION_V2: &str = concat!(
        "02ca978112ca1bbdcafac231b39a23dc4d0000019ab0afc2a0454349e422f052",
        "97191ead13e21d3db50000019aec4a8ca00000019ab0a20700010bfe935e70c3",
        "21c7ca3afc75ce0d0ca2000b6f1c9e8a574d439d0e3f1f5f4f2a1005616c6963",
        "65010d416c696365204578616d706c650111616c696365406578616d706c652e",
        "636f6d0204726561640577726974650103776562",
    );
    /// `encode(&sample(..))`, as written by format 1.
    const PINNED_TOKEN: &str = concat!(
        "01002430623666316339652d386135372d346434332d396430652d3366316635",
        "6634663261313005616c696365010d416c696365204578616d706c650111616c",
        "696365406578616d706c652e636f6d0204726561640577726974650103776562",
        "808e8885ab33a085bf85ab331000000000000000000000000000000007",
    );
    /// A client's refresh token without name, email or client, format 1.
    const PINNED_CLIENT_TOKEN: &str = concat!(
        "010110636c69656e743a7265706f7274696e6705616c69636500000204726561",
        "6405777269746500808e8885ab33a085bf85ab33100000000000000000000000",
        "0000000007",
    );

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&text[at..at + 2], 16).expect("hex"))
            .collect()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
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
