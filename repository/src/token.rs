//! Opaque tokens: generation, the textual form, parsing and digests.
//!
//! A token's text is (format 2, what the authority issues)
//!
//! ```text
//! tsa_<78 base64url chars: 10-byte subject tag ‖ 16-byte session id ‖ 32 random bytes><6 chars: CRC-32>
//! ```
//!
//! and, for tokens issued before the bounded schema (format 1, still parsed
//! so that they validate until they expire; told apart by their length)
//!
//! ```text
//! tsa_<56 base64url chars: 10-byte subject tag ‖ 32 random bytes><6 chars: CRC-32>
//! ```
//!
//! - the prefix names the kind (`tsa_` access, `tsr_` refresh), so a refresh
//!   token presented as a bearer token is refused before any lookup, and
//!   secret scanners can recognise leaked tokens;
//! - the 32 random bytes (256 bits) come from the operating system's CSPRNG
//!   and are the secret;
//! - the subject tag ([`SubjectTag`]) places every key of one subject in the
//!   same Redis Cluster slot, so the store can touch a token and its
//!   subject's index in one atomic script; it is derived from the subject
//!   and is not secret;
//! - the session id (format 2; the token's family, [`Token::family`]) names
//!   the one Redis key that holds the session, so every lookup of a token,
//!   live, retired or forged, is one `GET` of that key; it is not secret
//!   either (a session list shows it) — the 32 random bytes are;
//! - the CRC-32 over everything before it rejects a mistyped, truncated or
//!   corrupted token locally: any single changed character is caught (a
//!   change inside the data is a burst of at most 6 bits, which CRC-32 always
//!   detects; a change inside the checksum changes the checksum or breaks
//!   its canonical encoding).
//!
//! Only the SHA-256 [`TokenDigest`] of the text is ever used as a key, so a
//! copy of the Redis data grants nothing. `Debug` and `Display` of a
//! [`Token`] never print the secret; [`Token::expose_secret`] is the one way
//! to get the text, for the response that hands it to its holder.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRng as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

/// Bytes of randomness in a token: the secret.
pub const SECRET_LEN: usize = 32;
/// Bytes of the subject tag carried in every token.
pub const TAG_LEN: usize = 10;
/// Bytes of the session (family) id carried in format-2 tokens.
pub const FAMILY_LEN: usize = 16;
const DATA_LEN: usize = TAG_LEN + SECRET_LEN;
const DATA_LEN_V2: usize = TAG_LEN + FAMILY_LEN + SECRET_LEN;
const PREFIX_LEN: usize = 4;
/// 42 bytes of data are exactly 56 base64 characters (no padding bits).
const DATA_CHARS: usize = DATA_LEN / 3 * 4;
/// 58 bytes of data are 78 base64 characters, the last carrying 4 zero
/// bits (a non-zero padding bit is a non-canonical encoding, refused).
const DATA_CHARS_V2: usize = (DATA_LEN_V2 * 4).div_ceil(3);
/// The whole 3-byte base64 groups of the data that hold the session id
/// (bytes 10..26): bytes 9..27.
const FAMILY_GROUP_START: usize = TAG_LEN / 3 * 3;
const FAMILY_GROUP_LEN: usize = (TAG_LEN + FAMILY_LEN).div_ceil(3) * 3 - FAMILY_GROUP_START;
/// 4 bytes of CRC are 6 base64 characters, the last carrying 4 zero bits.
const CHECKSUM_CHARS: usize = 6;
/// Length of a format-1 token's text (issued before the bounded schema).
pub const TOKEN_LEN_V1: usize = PREFIX_LEN + DATA_CHARS + CHECKSUM_CHARS;
/// Length of the text of a token issued today (format 2).
pub const TOKEN_LEN: usize = PREFIX_LEN + DATA_CHARS_V2 + CHECKSUM_CHARS;

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// Presented to resource servers as a bearer token; short-lived.
    Access,
    /// Presented only to the authority to obtain a new pair; long-lived,
    /// rotated on every use.
    Refresh,
}

impl TokenKind {
    /// The textual prefix of tokens of this kind.
    #[must_use]
    pub const fn prefix(self) -> &'static str {
        match self {
            Self::Access => "tsa_",
            Self::Refresh => "tsr_",
        }
    }

    /// The name used in APIs (`access_token`, `refresh_token` hints, logs).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Refresh => "refresh",
        }
    }

    fn from_prefix(prefix: &[u8]) -> Option<Self> {
        match prefix {
            b"tsa_" => Some(Self::Access),
            b"tsr_" => Some(Self::Refresh),
            _ => None,
        }
    }
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a token. Deliberately says nothing about the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Wrong length: truncated, padded or not a token at all.
    #[error("token has the wrong length")]
    Length,
    /// The prefix names no known kind.
    #[error("token has an unknown prefix")]
    Prefix,
    /// A character outside the base64url alphabet, or a non-canonical encoding.
    #[error("token is not validly encoded")]
    Encoding,
    /// The checksum does not match: a typo or a corrupted token.
    #[error("token checksum does not match")]
    Checksum,
}

/// The operating system could not provide randomness.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomnessError(String);

/// An opaque bearer token.
///
/// Holds the text (zeroed on drop), its kind, its subject tag, its session
/// (format 2) and its digest. Equality compares digests.
#[derive(Clone)]
pub struct Token {
    text: Zeroizing<String>,
    kind: TokenKind,
    tag: SubjectTag,
    family: Option<Uuid>,
    digest: TokenDigest,
}

impl Token {
    /// Generates a new token of `kind` for the subject whose tag is `tag`,
    /// in a new random session, with 256 bits from the operating system's
    /// CSPRNG. (The authority mints through [`crate::Grant`], which uses
    /// [`generate_in_family`](Self::generate_in_family).)
    ///
    /// # Errors
    ///
    /// [`RandomnessError`] when the OS generator fails (it practically never
    /// does; callers must refuse to issue rather than fall back).
    pub fn generate(kind: TokenKind, tag: &SubjectTag) -> Result<Self, RandomnessError> {
        Self::generate_in_family(kind, tag, Uuid::new_v4())
    }

    /// Generates a new (format 2) token of `kind` for the subject whose tag
    /// is `tag`, naming session `family`, with 256 bits from the operating
    /// system's CSPRNG.
    ///
    /// # Errors
    ///
    /// [`RandomnessError`] when the OS generator fails.
    pub fn generate_in_family(
        kind: TokenKind,
        tag: &SubjectTag,
        family: Uuid,
    ) -> Result<Self, RandomnessError> {
        let mut secret = Zeroizing::new([0_u8; SECRET_LEN]);
        rand::rngs::SysRng
            .try_fill_bytes(&mut secret[..])
            .map_err(|error| RandomnessError(error.to_string()))?;
        Ok(Self::with_secret(kind, tag, family, &secret[..]))
    }

    /// Generates an access token and a refresh token (format 2) for the
    /// subject whose tag is `tag`, naming session `family`, with 256 bits
    /// each from one call to the operating system's CSPRNG (a rotation
    /// mints both: one system call instead of two).
    ///
    /// # Errors
    ///
    /// [`RandomnessError`] when the OS generator fails.
    pub fn generate_pair_in_family(
        tag: &SubjectTag,
        family: Uuid,
    ) -> Result<(Self, Self), RandomnessError> {
        let mut secrets = Zeroizing::new([0_u8; 2 * SECRET_LEN]);
        rand::rngs::SysRng
            .try_fill_bytes(&mut secrets[..])
            .map_err(|error| RandomnessError(error.to_string()))?;
        let (access, refresh) = secrets.split_at(SECRET_LEN);
        Ok((
            Self::with_secret(TokenKind::Access, tag, family, access),
            Self::with_secret(TokenKind::Refresh, tag, family, refresh),
        ))
    }

    /// Generates a token in the format issued before the bounded schema
    /// (format 1: no session id), which the authority no longer issues.
    /// Only for tests of the migration path.
    ///
    /// # Errors
    ///
    /// [`RandomnessError`] when the OS generator fails.
    pub fn generate_v1(kind: TokenKind, tag: &SubjectTag) -> Result<Self, RandomnessError> {
        let mut data = Zeroizing::new([0_u8; DATA_LEN]);
        data[..TAG_LEN].copy_from_slice(&tag.0);
        rand::rngs::SysRng
            .try_fill_bytes(&mut data[TAG_LEN..])
            .map_err(|error| RandomnessError(error.to_string()))?;
        Ok(Self::assemble(kind, tag, None, &data[..]))
    }

    /// Builds a token from a checksum-valid text of random bytes that were
    /// never issued — what an attacker can forge for a known subject tag
    /// and session id. Only for tests and benchmarks of forged-token cost.
    #[must_use]
    pub fn forge(kind: TokenKind, tag: &SubjectTag, family: Uuid, secret: &[u8; 32]) -> Self {
        Self::with_secret(kind, tag, family, secret)
    }

    /// A format-2 token of `secret` (`SECRET_LEN` bytes).
    fn with_secret(kind: TokenKind, tag: &SubjectTag, family: Uuid, secret: &[u8]) -> Self {
        let mut data = Zeroizing::new([0_u8; DATA_LEN_V2]);
        data[..TAG_LEN].copy_from_slice(&tag.0);
        data[TAG_LEN..TAG_LEN + FAMILY_LEN].copy_from_slice(family.as_bytes());
        data[TAG_LEN + FAMILY_LEN..].copy_from_slice(secret);
        Self::assemble(kind, tag, Some(family), &data[..])
    }

    fn assemble(kind: TokenKind, tag: &SubjectTag, family: Option<Uuid>, data: &[u8]) -> Self {
        let mut text = Zeroizing::new(String::with_capacity(TOKEN_LEN));
        text.push_str(kind.prefix());
        URL_SAFE_NO_PAD.encode_string(data, &mut text);
        let checksum = checksum(kind.prefix().as_bytes(), data);
        URL_SAFE_NO_PAD.encode_string(checksum, &mut text);
        let digest = TokenDigest::of(&text);
        Self {
            text,
            kind,
            tag: tag.clone(),
            family,
            digest,
        }
    }

    /// Parses and checks a token's text without any I/O.
    ///
    /// # Errors
    ///
    /// A [`FormatError`] for anything that is not a well-formed token with a
    /// matching checksum.
    pub fn parse(text: &str) -> Result<Self, FormatError> {
        let bytes = text.as_bytes();
        let (data_chars, data_len) = match bytes.len() {
            TOKEN_LEN => (DATA_CHARS_V2, DATA_LEN_V2),
            TOKEN_LEN_V1 => (DATA_CHARS, DATA_LEN),
            _ => return Err(FormatError::Length),
        };
        let (prefix, rest) = bytes.split_at(PREFIX_LEN);
        let kind = TokenKind::from_prefix(prefix).ok_or(FormatError::Prefix)?;
        let (data_text, checksum_text) = rest.split_at(data_chars);
        let mut buffer = Zeroizing::new([0_u8; DATA_LEN_V2 + 2]);
        let written = URL_SAFE_NO_PAD
            .decode_slice(data_text, &mut buffer[..])
            .map_err(|_| FormatError::Encoding)?;
        let mut claimed = [0_u8; 4];
        let checksum_len = URL_SAFE_NO_PAD
            .decode_slice(checksum_text, &mut claimed)
            .map_err(|_| FormatError::Encoding)?;
        if written != data_len || checksum_len != claimed.len() {
            return Err(FormatError::Encoding);
        }
        let data = &buffer[..data_len];
        if checksum(prefix, data) != claimed {
            return Err(FormatError::Checksum);
        }
        let mut tag = [0_u8; TAG_LEN];
        tag.copy_from_slice(&data[..TAG_LEN]);
        let family = (data_len == DATA_LEN_V2).then(|| {
            let mut id = [0_u8; FAMILY_LEN];
            id.copy_from_slice(&data[TAG_LEN..TAG_LEN + FAMILY_LEN]);
            Uuid::from_bytes(id)
        });
        Ok(Self {
            text: Zeroizing::new(text.to_owned()),
            kind,
            tag: SubjectTag(tag),
            family,
            digest: TokenDigest::of(text),
        })
    }

    /// The session a format-2 access token's text names, read from the
    /// text alone: its length, its prefix and the 24 characters that hold
    /// the session id — no checksum, no check of the rest. For finding a
    /// cache entry by the text (the middleware's cache-hit path); never a
    /// proof of anything: the entry found must be compared with the text's
    /// [`TokenDigest`] in constant time, and answer only for the token it
    /// was filled for after a full [`parse`](Self::parse). `None` for
    /// anything else (refresh and format-1 tokens included).
    #[must_use]
    pub fn claimed_access_family(text: &str) -> Option<Uuid> {
        let bytes = text.as_bytes();
        if bytes.len() != TOKEN_LEN || !bytes.starts_with(TokenKind::Access.prefix().as_bytes()) {
            return None;
        }
        // Data bytes 9..27 are base64 characters 12..36 of the data (whole
        // 3-byte groups); the session id is bytes 10..26.
        let start = PREFIX_LEN + FAMILY_GROUP_START / 3 * 4;
        let chars = bytes.get(start..start + FAMILY_GROUP_LEN / 3 * 4)?;
        let mut group = [0_u8; FAMILY_GROUP_LEN];
        decode_groups(chars, &mut group)?;
        let offset = TAG_LEN - FAMILY_GROUP_START;
        let id: [u8; FAMILY_LEN] = group.get(offset..offset + FAMILY_LEN)?.try_into().ok()?;
        Some(Uuid::from_bytes(id))
    }

    /// The session (family) the token names: `None` for a format-1 token
    /// (issued before the bounded schema).
    #[must_use]
    pub fn family(&self) -> Option<Uuid> {
        self.family
    }

    /// The token's kind.
    #[must_use]
    pub fn kind(&self) -> TokenKind {
        self.kind
    }

    /// The tag of the subject the token was issued to.
    #[must_use]
    pub fn tag(&self) -> &SubjectTag {
        &self.tag
    }

    /// The SHA-256 digest of the text: the only form ever stored.
    #[must_use]
    pub fn digest(&self) -> &TokenDigest {
        &self.digest
    }

    /// The token's public id (safe to log and to show in session lists).
    #[must_use]
    pub fn id(&self) -> Uuid {
        self.digest.token_id()
    }

    /// The token's text, for the one response that hands it to its holder.
    #[must_use]
    pub fn expose_secret(&self) -> &str {
        &self.text
    }
}

impl FromStr for Token {
    type Err = FormatError;

    fn from_str(text: &str) -> Result<Self, FormatError> {
        Self::parse(text)
    }
}

impl PartialEq for Token {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}

impl Eq for Token {}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("kind", &self.kind)
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

/// Prints `tsa_…` and the token id: enough to correlate, nothing to replay.
impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}…(id {})", self.kind.prefix(), self.id())
    }
}

fn checksum(prefix: &[u8], data: &[u8]) -> [u8; 4] {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(prefix);
    hasher.update(data);
    hasher.finalize().to_be_bytes()
}

/// The SHA-256 digest of a token's text.
///
/// Not secret: it cannot be turned back into the token. It is what the store
/// keys records by, and the source of the token's public id.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    /// Digests a token's text.
    #[must_use]
    pub fn of(text: &str) -> Self {
        Self(Sha256::digest(text.as_bytes()).into())
    }

    /// Wraps raw digest bytes (as read back from the store).
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The token's public id: a UUID (version 8) made of the first 16 bytes
    /// of the digest, so it needs no storage and leads to no secret.
    #[must_use]
    pub fn token_id(&self) -> Uuid {
        Self::id_of_short(&self.short())
    }

    /// The public id of the token whose truncated digest
    /// ([`short`](Self::short)) is `short`.
    #[must_use]
    pub fn id_of_short(short: &[u8; 16]) -> Uuid {
        uuid::Builder::from_custom_bytes(*short).into_uuid()
    }

    /// The first 16 bytes: what a session record stores (128 bits are
    /// ample for a comparison that costs an attacker one lookup per guess),
    /// and the bytes of [`token_id`](Self::token_id).
    #[must_use]
    pub fn short(&self) -> [u8; 16] {
        let mut bytes = [0_u8; 16];
        bytes.copy_from_slice(&self.0[..16]);
        bytes
    }

    /// Constant-time comparison of [`short`](Self::short) with a stored
    /// truncated digest.
    #[must_use]
    pub fn ct_eq_short(&self, stored: &[u8; 16]) -> bool {
        constant_time_eq(&self.0[..16], stored)
    }

    /// Constant-time comparison, for checking a presented token against a
    /// stored digest.
    #[must_use]
    pub fn ct_eq(&self, other: &Self) -> bool {
        constant_time_eq(&self.0, &other.0)
    }
}

/// Whether `a` and `b` hold the same bytes, in time that depends on their
/// lengths but not on their contents or where they differ: the XOR of
/// every 8-byte word (then of every byte left) is ORed together, with no
/// branch on the data, and only the total is compared. The barrier on the
/// running total keeps the compiler from stopping early. For secrets and
/// their digests, whose length is public (`subtle`'s `ct_eq` does the
/// same a byte at a time, each behind a barrier: about eleven instructions
/// a byte, on every request that presents a token or a client secret).
#[must_use]
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let word = |bytes: &[u8]| u64::from_ne_bytes(bytes.try_into().unwrap_or([0; 8]));
    let mut difference = 0_u64;
    let (words_a, words_b) = (a.chunks_exact(8), b.chunks_exact(8));
    let (rest_a, rest_b) = (words_a.remainder(), words_b.remainder());
    for (a, b) in words_a.zip(words_b) {
        difference = std::hint::black_box(difference | (word(a) ^ word(b)));
    }
    for (a, b) in rest_a.iter().zip(rest_b) {
        difference = std::hint::black_box(difference | u64::from(a ^ b));
    }
    difference == 0
}

/// The values of the URL-safe base64 alphabet (RFC 4648 §5), `INVALID`
/// for every other byte.
static BASE64_URL: [u8; 256] = {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut values = [INVALID; 256];
    let mut value: u8 = 0;
    while value < 64 {
        values[alphabet[value as usize] as usize] = value;
        value += 1;
    }
    values
};
const INVALID: u8 = 0xFF;

/// Decodes whole base64url groups (4 characters each) into `out` (3 bytes
/// each): what [`Token::claimed_access_family`] reads on every cache hit,
/// without the general decoder's set-up. `None` for a character outside
/// the alphabet or lengths that do not match.
fn decode_groups(chars: &[u8], out: &mut [u8]) -> Option<()> {
    if !chars.len().is_multiple_of(4) || chars.len() / 4 * 3 != out.len() {
        return None;
    }
    for (group, bytes) in chars.chunks_exact(4).zip(out.chunks_exact_mut(3)) {
        let mut bits = 0_u32;
        let mut invalid = 0_u8;
        for &byte in group {
            let value = BASE64_URL[usize::from(byte)];
            invalid |= value & 0x80;
            bits = bits << 6 | u32::from(value & 0x3F);
        }
        if invalid != 0 {
            return None;
        }
        bytes.copy_from_slice(&bits.to_be_bytes()[1..]);
    }
    Some(())
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenDigest({})", hex_prefix(&self.0, 8))
    }
}

/// Derived from a subject id; puts every key of that subject in one Redis
/// Cluster slot (it is the hash tag) and lets the store find the subject's
/// index from a token alone.
///
/// 80 bits of SHA-256: two subjects share a tag with probability about
/// n²/2⁸¹ for n subjects (below one in a million for a billion subjects);
/// records carry the full subject and every read checks it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SubjectTag([u8; TAG_LEN]);

impl SubjectTag {
    /// The tag of `subject`.
    #[must_use]
    pub fn of(subject: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"token-service/subject-tag/v1\0");
        hasher.update(subject.as_bytes());
        let digest = hasher.finalize();
        let mut tag = [0_u8; TAG_LEN];
        tag.copy_from_slice(&digest[..TAG_LEN]);
        Self(tag)
    }

    /// The tag as it appears inside keys: base64url, 14 characters, never
    /// containing `{` or `}`.
    #[must_use]
    pub fn to_key_text(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }
}

impl fmt::Debug for SubjectTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubjectTag({})", self.to_key_text())
    }
}

fn hex_prefix(bytes: &[u8], n: usize) -> String {
    use fmt::Write as _;
    let mut out = String::with_capacity(n * 2 + 1);
    for byte in bytes.iter().take(n) {
        let _ = write!(out, "{byte:02x}");
    }
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    fn token(kind: TokenKind) -> Token {
        Token::generate(kind, &SubjectTag::of("user-1")).expect("randomness")
    }

    /// A pair from one draw: an access and a refresh token of the same
    /// subject and session, with different secrets, each parsing back.
    #[test]
    fn a_pair_shares_its_session_but_not_its_secret() {
        let tag = SubjectTag::of("user-1");
        let family = Uuid::new_v4();
        let (access, refresh) = Token::generate_pair_in_family(&tag, family).expect("randomness");
        assert_eq!(
            (access.kind(), refresh.kind()),
            (TokenKind::Access, TokenKind::Refresh)
        );
        for token in [&access, &refresh] {
            assert_eq!(token.family(), Some(family));
            assert_eq!(token.tag(), &tag);
            let parsed = Token::parse(token.expose_secret()).expect("well-formed");
            assert_eq!(parsed.digest(), token.digest());
        }
        // The secrets differ (the texts would differ anyway: the kind is
        // in the checksum).
        let secret = |token: &Token| {
            let start = token.kind().prefix().len();
            let data_chars = (DATA_LEN_V2 * 4).div_ceil(3);
            let data = URL_SAFE_NO_PAD
                .decode(&token.expose_secret()[start..start + data_chars])
                .expect("base64");
            data[TAG_LEN + FAMILY_LEN..].to_vec()
        };
        assert_eq!(secret(&access).len(), SECRET_LEN);
        assert_ne!(secret(&access), secret(&refresh));
        let (again, _) = Token::generate_pair_in_family(&tag, family).expect("randomness");
        assert_ne!(again.digest(), access.digest());
    }

    /// The text parses back to the same kind, tag and digest.
    #[test]
    fn round_trip() {
        for kind in [TokenKind::Access, TokenKind::Refresh] {
            let original = token(kind);
            let text = original.expose_secret();
            assert_eq!(text.len(), TOKEN_LEN);
            assert!(text.starts_with(kind.prefix()));
            let parsed = Token::parse(text).expect("own tokens parse");
            assert_eq!(parsed.kind(), kind);
            assert_eq!(parsed.tag(), &SubjectTag::of("user-1"));
            assert_eq!(parsed.digest(), original.digest());
            assert_eq!(parsed.family(), original.family());
            assert!(parsed.family().is_some());
            assert_eq!(parsed, original);
        }
    }

    /// Tokens of the format issued before the bounded schema keep parsing
    /// (they validate until they expire), and name no session.
    #[test]
    fn format_1_tokens_still_parse() {
        let tag = SubjectTag::of("user-1");
        let old = Token::generate_v1(TokenKind::Refresh, &tag).expect("randomness");
        assert_eq!(old.expose_secret().len(), TOKEN_LEN_V1);
        let parsed = Token::parse(old.expose_secret()).expect("v1 parses");
        assert_eq!(parsed.family(), None);
        assert_eq!(parsed.tag(), &tag);
        assert_eq!(parsed.kind(), TokenKind::Refresh);
        let family = Uuid::from_u128(42);
        let new = Token::generate_in_family(TokenKind::Access, &tag, family).expect("randomness");
        assert_eq!(new.family(), Some(family));
        let forged = Token::forge(TokenKind::Refresh, &tag, family, &[7; 32]);
        let forged = Token::parse(forged.expose_secret()).expect("forged tokens are well-formed");
        assert_eq!(forged.family(), Some(family));
    }

    /// The session an access token's text claims is the one its parse
    /// names; refresh tokens, format-1 tokens and texts that are not
    /// base64 where the session id sits claim none.
    #[test]
    fn claimed_access_family_reads_the_session_id() {
        let tag = SubjectTag::of("user-1");
        for family in [Uuid::nil(), Uuid::from_u128(u128::MAX), Uuid::new_v4()] {
            let access = Token::generate_in_family(TokenKind::Access, &tag, family).expect("rng");
            assert_eq!(
                Token::claimed_access_family(access.expose_secret()),
                Some(family)
            );
            let refresh = Token::generate_in_family(TokenKind::Refresh, &tag, family).expect("rng");
            assert_eq!(Token::claimed_access_family(refresh.expose_secret()), None);
        }
        let old = Token::generate_v1(TokenKind::Access, &tag).expect("randomness");
        assert_eq!(Token::claimed_access_family(old.expose_secret()), None);
        let access = token(TokenKind::Access);
        let mut text = access.expose_secret().to_owned();
        text.replace_range(20..21, "!");
        assert_eq!(Token::claimed_access_family(&text), None);
        assert_eq!(Token::claimed_access_family("tsa_"), None);
    }

    /// The hand-written group decoder agrees with the `base64` crate on
    /// every byte value in every position, and rejects every character
    /// outside the URL-safe alphabet wherever it sits (padding included).
    #[test]
    fn group_decoding_agrees_with_the_base64_crate() {
        let data: Vec<u8> = (0..=255_u8).chain((0..=255_u8).rev()).take(510).collect();
        for start in 0..3 {
            let data = &data[start..start + 504];
            let text = URL_SAFE_NO_PAD.encode(data);
            let mut out = vec![0_u8; data.len()];
            assert_eq!(decode_groups(text.as_bytes(), &mut out), Some(()));
            assert_eq!(out, data);
        }
        let good = URL_SAFE_NO_PAD.encode([0xA5_u8; 18]).into_bytes();
        let mut out = [0_u8; 18];
        for position in 0..good.len() {
            for byte in 0..=255_u8 {
                let mut text = good.clone();
                text[position] = byte;
                let valid = byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_';
                assert_eq!(
                    decode_groups(&text, &mut out).is_some(),
                    valid,
                    "byte {byte} at {position}"
                );
            }
        }
        assert_eq!(
            decode_groups(&good[..23], &mut out),
            None,
            "a partial group"
        );
        assert_eq!(
            decode_groups(&good, &mut [0_u8; 17]),
            None,
            "a short output"
        );
    }

    /// The word-wise comparison answers as `==` does for every length
    /// (whole words and the bytes left over) and a difference in any bit
    /// of any byte; texts of different lengths are unequal.
    #[test]
    fn constant_time_eq_answers_as_eq() {
        let text: Vec<u8> = (0..=70_u8).collect();
        for len in 0..text.len() {
            let a = &text[..len];
            assert!(constant_time_eq(a, a));
            assert!(!constant_time_eq(a, &text[..len + 1]));
            for byte in 0..len {
                for bit in 0..8 {
                    let mut b = a.to_vec();
                    b[byte] ^= 1 << bit;
                    assert!(!constant_time_eq(a, &b), "len {len} byte {byte} bit {bit}");
                }
            }
        }
    }

    /// The word-wise comparison answers as `==` does, for a difference in
    /// any bit of any byte, for full and truncated digests.
    #[test]
    fn digests_compare_equal_only_when_equal() {
        let digest = TokenDigest::of("tsa_some-token");
        assert!(digest.ct_eq(&TokenDigest::from_bytes(*digest.as_bytes())));
        assert!(digest.ct_eq_short(&digest.short()));
        for byte in 0..32 {
            for bit in 0..8 {
                let mut bytes = *digest.as_bytes();
                bytes[byte] ^= 1 << bit;
                let other = TokenDigest::from_bytes(bytes);
                assert!(!digest.ct_eq(&other), "byte {byte} bit {bit}");
                if byte < 16 {
                    assert!(!digest.ct_eq_short(&other.short()), "byte {byte} bit {bit}");
                } else {
                    assert!(digest.ct_eq_short(&other.short()));
                }
            }
        }
    }

    /// Two generated tokens differ (the secret is random, not derived).
    #[test]
    fn tokens_are_unique() {
        let a = token(TokenKind::Access);
        let b = token(TokenKind::Access);
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_ne!(a.digest(), b.digest());
    }

    /// Every single-character change anywhere in the text is rejected: each
    /// position, each other character of the alphabet, on several tokens.
    #[test]
    fn checksum_rejects_every_single_character_change() {
        for _ in 0..8 {
            let text = token(TokenKind::Access).expose_secret().to_owned();
            let bytes = text.as_bytes();
            for position in 0..bytes.len() {
                for &replacement in ALPHABET {
                    if replacement == bytes[position] {
                        continue;
                    }
                    let mut changed = bytes.to_vec();
                    changed[position] = replacement;
                    let changed = String::from_utf8(changed).expect("ascii");
                    assert!(
                        Token::parse(&changed).is_err(),
                        "accepted a change at position {position}"
                    );
                }
            }
        }
    }

    /// Turning an access token into a refresh token by editing its prefix is
    /// caught by the checksum, which covers the prefix.
    #[test]
    fn checksum_covers_the_prefix() {
        let access = token(TokenKind::Access);
        let forged = access.expose_secret().replacen("tsa_", "tsr_", 1);
        assert_eq!(Token::parse(&forged), Err(FormatError::Checksum));
    }

    /// Truncated, extended, empty and foreign strings are refused with the
    /// right reason.
    #[test]
    fn malformed_inputs() {
        let text = token(TokenKind::Access).expose_secret().to_owned();
        assert_eq!(Token::parse(""), Err(FormatError::Length));
        assert_eq!(
            Token::parse(&text[..TOKEN_LEN - 1]),
            Err(FormatError::Length)
        );
        assert!(Token::parse(&text[..TOKEN_LEN_V1]).is_err());
        assert_eq!(Token::parse(&format!("{text}A")), Err(FormatError::Length));
        let foreign = format!("ghp_{}", &text[4..]);
        assert_eq!(Token::parse(&foreign), Err(FormatError::Prefix));
        let spaced = format!("{} {}", &text[..10], &text[11..]);
        assert_eq!(Token::parse(&spaced), Err(FormatError::Encoding));
        let unicode = format!("{}é{}", &text[..10], &text[12..]);
        assert!(Token::parse(&unicode).is_err());
    }

    /// The digest is SHA-256 of the text, stable across versions: stored
    /// keys must keep matching after an upgrade.
    #[test]
    fn digest_is_stable_sha256() {
        let digest = TokenDigest::of("abc");
        assert_eq!(
            hex_prefix(digest.as_bytes(), 32),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad…"
        );
        let token = token(TokenKind::Refresh);
        assert_eq!(token.digest(), &TokenDigest::of(token.expose_secret()));
    }

    /// The subject tag is stable: it is part of every stored key.
    #[test]
    fn subject_tag_is_stable() {
        assert_eq!(SubjectTag::of("alice"), SubjectTag::of("alice"));
        assert_ne!(SubjectTag::of("alice"), SubjectTag::of("bob"));
        let text = SubjectTag::of("alice").to_key_text();
        assert_eq!(text.len(), 14);
        assert!(!text.contains(['{', '}']));
    }

    /// Debug and Display never contain the secret.
    #[test]
    fn formatting_hides_the_secret() {
        let token = token(TokenKind::Access);
        let secret_part = &token.expose_secret()[PREFIX_LEN + 16..PREFIX_LEN + 40];
        for shown in [
            format!("{token:?}"),
            format!("{token}"),
            format!("{token:#?}"),
        ] {
            assert!(!shown.contains(secret_part), "{shown}");
            assert!(!shown.contains(token.expose_secret()), "{shown}");
        }
        assert!(format!("{token}").contains(&token.id().to_string()));
    }

    /// The public id is derived from the digest and is a valid UUID.
    #[test]
    fn token_id_follows_the_digest() {
        let token = token(TokenKind::Access);
        assert_eq!(token.id(), token.digest().token_id());
        assert_eq!(token.id().get_version_num(), 8);
    }
}
