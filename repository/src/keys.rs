//! The Redis key schema, in one screen.
//!
//! `P` is the configured prefix (namespace), `T` a subject's tag
//! ([`SubjectTag`], 14 base64url characters), `F` a session (family) id (16
//! raw bytes, carried inside every token issued today), `D` a token digest
//! (32 raw bytes, SHA-256 of the token text):
//!
//! | key               | type   | holds                                     | TTL                        |
//! |-------------------|--------|-------------------------------------------|----------------------------|
//! | `P s:{T}:F`       | string | one session: holder, current access and refresh tokens (truncated digests, expiries), the last [`crate::store::USED_REFRESH_MEMORY`] rotated refresh tokens, the tokens' audience ([`crate::codec::SessionRecord`], format 4) | its longest-lived token |
//! | `P sidx:{T}`      | zset   | the subject's session ids, score = the session key's expiry (ms); at most the session cap ([`crate::DEFAULT_MAX_SESSIONS_PER_SUBJECT`] by default) | its longest-lived entry |
//! | `P gen:{T}`       | string | revocation generation of the subject      | [`GENERATION_TTL`]         |
//! | `P tok:{T}:D`     | string | format 1 (before the bounded schema): one token's record; read and revoked, never written | the token's lifetime |
//! | `P idx:{T}`       | zset   | format 1: the subject's tokens ([`IndexMember`]); only shrinks | its longest-lived entry |
//!
//! Costs: a token names its session, so a lookup, a refresh inspection
//! (live, rotated or forged) and reuse detection are one `GET` of `P s:{T}:F`;
//! rotation and every revocation but sign-out-everywhere touch that key and
//! one `sidx` entry. Nothing per token is O(subject).
//!
//! The authority's own keys (one key per object; none is ever touched
//! together with another in one command). `H(…)` is a keyed digest (22
//! base64url characters of an HMAC-SHA256 under the deployment key, which
//! is stored in `P keyname-secret`): Redis broadcasts key names to every
//! client that tracks keys, so names carry no username, client id or
//! address.
//!
//! | key                 | type   | holds                                           | TTL                  |
//! |---------------------|--------|-------------------------------------------------|----------------------|
//! | `P keyname-secret`  | string | the deployment key (32 random bytes, base64url; `SET NX` by the first authority) | none |
//! | `P keynames-v2`     | string | marks the migration of plaintext account key names as done | none |
//! | `P user:H(name)`    | string | a user account (JSON, password as argon2id hash) | none                 |
//! | `P users`           | set    | all usernames (members are never broadcast)      | none                 |
//! | `P client:H(id)`    | string | a client (JSON, secret as a keyed SHA-256 digest) | none                |
//! | `P clients`         | set    | all client ids                                   | none                 |
//! | `P thr:u:H(name)`   | string | failed logins of one username                    | the throttling window |
//! | `P thr:c:H(id)`     | string | failed authentications of one client id         | the throttling window |
//! | `P thr:a:H(net)`    | string | failed logins and client authentications from one address (IPv4) or network (IPv6, a /64 by default), or of requests whose forwarded address is unknown | the throttling window |
//!
//! Connected services (the authority's OAuth client side; `<p>` is a
//! configured provider name, `N` a state nonce):
//!
//! | key                 | type   | holds                                           | TTL                  |
//! |---------------------|--------|-------------------------------------------------|----------------------|
//! | `P conn:{T}:<p>`    | string | the subject's connection to provider `p`: JSON envelope of key id, nonce and AEAD ciphertext (or a "reconnect" tombstone, no secrets) | none (tombstones: 30 days) |
//! | `P cred:{T}:<p>`    | string | the subject's stored credentials for a provider of kind `password` or `api_key`: the same sealed JSON envelope (its own associated data) | none |
//! | `P clock:{T}:<p>`   | string | the refresh lock of that connection (random owner token) | the lock lifetime (`SET NX PX`) |
//! | `P cstate:<N>`      | string | marks a `state` as used (single use)             | the state's remaining lifetime (`SET NX PX`) |
//! | `P conns`           | zset   | every connection (`<p>:<subject>`), scored by its last refresh (ms), for the keep-alive | none |
//!
//! Browser sign-in and the authorization code flow (`C` is the base64url
//! SHA-256 of an authorization code; never the code itself, never a name):
//!
//! | key                 | type   | holds                                           | TTL                  |
//! |---------------------|--------|-------------------------------------------------|----------------------|
//! | `P code:{C}`        | string | an authorization code's grant (JSON: client, redirect URI, scope, PKCE challenge, subject, session family) | 60 s |
//! | `P code:{C}:used`   | string | the same, once redeemed: a second use revokes what the first issued | 10 minutes |
//! | `P consent:{T}`     | hash   | the subject's consents: client id → granted scope | none (until revoked) |
//!
//! A browser session is itself a session of the subject (a refresh-kind
//! token issued to the reserved client `#browser`, its text the cookie),
//! so it lives in `P s:{T}:F` and `P sidx:{T}` like any other, and
//! sign-out-everywhere ends it.
//!
//! (written without the space: `ts:s:{T}:F`.) `{T}` is a Redis Cluster
//! hash tag: all keys of one subject live in one slot, so every script that
//! touches a session and its subject's index runs on one node. A token
//! carries `T` and `F`, so a token client finds the key from the token alone,
//! with one `GET`, and its read-only ACL user needs nothing but `%R~P s:*`
//! (and `%R~P tok:*` while format-1 tokens live).

use std::fmt;

use uuid::Uuid;

use crate::token::{SubjectTag, TokenDigest, TokenKind};

/// How long a subject's revocation generation is remembered after a
/// sign-out-everywhere: longer than any grant takes from checking
/// credentials to issuing (see [`crate::TokenWriter::generation`]).
pub const GENERATION_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// The namespace in front of every key, so one Redis can serve several
/// deployments.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPrefix(String);

/// A prefix that would break the key schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "key prefix must be 1 to 64 printable ASCII characters without spaces, `{{`, `}}` or `*` \
     (for example `ts:`)"
)]
pub struct KeyPrefixError;

impl KeyPrefix {
    /// Checks and wraps a prefix: 1–64 printable ASCII characters without
    /// space, braces (they would become the cluster hash tag) or `*` (it
    /// would widen ACL patterns).
    ///
    /// # Errors
    ///
    /// [`KeyPrefixError`] otherwise.
    pub fn new(prefix: impl Into<String>) -> Result<Self, KeyPrefixError> {
        let prefix = prefix.into();
        let valid = (1..=64).contains(&prefix.len())
            && prefix
                .bytes()
                .all(|byte| byte.is_ascii_graphic() && !matches!(byte, b'{' | b'}' | b'*'));
        if valid {
            Ok(Self(prefix))
        } else {
            Err(KeyPrefixError)
        }
    }

    /// The prefix text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `P tok:{T}:` — everything of a format-1 token key but the digest.
    #[must_use]
    pub fn token_key_prefix(&self, tag: &SubjectTag) -> Vec<u8> {
        format!("{}tok:{{{}}}:", self.0, tag.to_key_text()).into_bytes()
    }

    /// `P tok:{T}:D` — a format-1 token's record (tokens issued before the
    /// bounded schema; read until they expire, never written).
    #[must_use]
    pub fn token(&self, tag: &SubjectTag, digest: &TokenDigest) -> Vec<u8> {
        let mut key = self.token_key_prefix(tag);
        key.extend_from_slice(digest.as_bytes());
        key
    }

    /// `P s:{T}:` — everything of a session key but the session id.
    #[must_use]
    pub fn session_key_prefix(&self, tag: &SubjectTag) -> Vec<u8> {
        format!("{}s:{{{}}}:", self.0, tag.to_key_text()).into_bytes()
    }

    /// `P s:{T}:F` — one session (family `F`, 16 raw bytes): its holder and
    /// its tokens ([`crate::codec::SessionRecord`]).
    #[must_use]
    pub fn session(&self, tag: &SubjectTag, family: Uuid) -> Vec<u8> {
        let mut key = self.session_key_prefix(tag);
        key.extend_from_slice(family.as_bytes());
        key
    }

    /// `P sidx:{T}` — a subject's live sessions (zset of session ids scored
    /// by the session key's expiry, ms).
    #[must_use]
    pub fn sessions(&self, tag: &SubjectTag) -> Vec<u8> {
        format!("{}sidx:{{{}}}", self.0, tag.to_key_text()).into_bytes()
    }

    /// `P s:` — the key prefix of every session (for client-side caching's
    /// `CLIENT TRACKING … BCAST PREFIX`).
    #[must_use]
    pub fn session_tracking_prefix(&self) -> String {
        format!("{}s:", self.0)
    }

    /// `P s:*` — the ACL key pattern a token client's read-only user needs
    /// for tokens issued today (with [`token_pattern`](Self::token_pattern)
    /// for tokens issued before the bounded schema, until they expire).
    #[must_use]
    pub fn session_pattern(&self) -> String {
        format!("{}s:*", self.0)
    }

    /// `P tok:` — the key prefix of format-1 token records.
    #[must_use]
    pub fn token_tracking_prefix(&self) -> String {
        format!("{}tok:", self.0)
    }

    /// `P idx:{T}` — a subject's index of live format-1 tokens.
    #[must_use]
    pub fn index(&self, tag: &SubjectTag) -> Vec<u8> {
        format!("{}idx:{{{}}}", self.0, tag.to_key_text()).into_bytes()
    }

    /// `P gen:{T}` — a subject's revocation generation.
    #[must_use]
    pub fn generation(&self, tag: &SubjectTag) -> Vec<u8> {
        format!("{}gen:{{{}}}", self.0, tag.to_key_text()).into_bytes()
    }

    /// `P user:<name>` — a user account, by the keyed digest of its
    /// username (or, before migration, the username itself).
    #[must_use]
    pub fn user(&self, name: &str) -> String {
        format!("{}user:{name}", self.0)
    }

    /// `P user:` — the key prefix of every user record (for client-side
    /// caching's `CLIENT TRACKING … BCAST PREFIX`; it does not cover
    /// `P users`).
    #[must_use]
    pub fn user_tracking_prefix(&self) -> String {
        format!("{}user:", self.0)
    }

    /// `P fid:<name>` — a federated identity's account (its username),
    /// `name` being a keyed digest of (issuer, subject).
    #[must_use]
    pub fn identity(&self, name: &str) -> String {
        format!("{}fid:{name}", self.0)
    }

    /// `P resources` — the registry of resource servers (audiences): a hash
    /// from hex tag to the resource's URI and declared scopes.
    #[must_use]
    pub fn resources(&self) -> String {
        format!("{}resources", self.0)
    }

    /// `P providers` — the providers added at run time: a hash from a
    /// provider's name to its stored table, with a change counter.
    #[must_use]
    pub fn providers(&self) -> String {
        format!("{}providers", self.0)
    }

    /// `P provsweep:<provider>` — held by the replica deleting a removed
    /// provider's connections.
    #[must_use]
    pub fn provider_sweep(&self, provider: &str) -> String {
        format!("{}provsweep:{provider}", self.0)
    }

    /// `P conn:*:<provider>` and `P cred:*:<provider>` — match every
    /// connection and stored credential of one provider (`SCAN`, when a
    /// provider is removed; names are of `a-z 0-9 _ -`, nothing a pattern
    /// reads specially).
    #[must_use]
    pub fn provider_records(&self, provider: &str) -> [String; 2] {
        [
            format!("{}conn:*:{provider}", self.0),
            format!("{}cred:*:{provider}", self.0),
        ]
    }

    /// `P users` — the set of all usernames.
    #[must_use]
    pub fn users(&self) -> String {
        format!("{}users", self.0)
    }

    /// `P client:<name>` — a registered client, by the keyed digest of
    /// its id (or, before migration, the id itself).
    #[must_use]
    pub fn client(&self, name: &str) -> String {
        format!("{}client:{name}", self.0)
    }

    /// `P client:` — the key prefix of every client record (for
    /// client-side caching's `CLIENT TRACKING … BCAST PREFIX`; it does not
    /// cover `P clients`).
    #[must_use]
    pub fn client_tracking_prefix(&self) -> String {
        format!("{}client:", self.0)
    }

    /// `P clients` — the set of all client ids.
    #[must_use]
    pub fn clients(&self) -> String {
        format!("{}clients", self.0)
    }

    /// `P thr:u:<hash>` — failed-login counter of one username.
    #[must_use]
    pub fn throttle_username(&self, username_hash: &str) -> String {
        format!("{}thr:u:{username_hash}", self.0)
    }

    /// `P thr:a:<hash>` — failure counter of one client address or
    /// network (hashed).
    #[must_use]
    pub fn throttle_address(&self, address_hash: &str) -> String {
        format!("{}thr:a:{address_hash}", self.0)
    }

    /// `P thr:c:<hash>` — failed-authentication counter of one client id
    /// (hashed).
    #[must_use]
    pub fn throttle_client(&self, client_hash: &str) -> String {
        format!("{}thr:c:{client_hash}", self.0)
    }

    /// `P keyname-secret` — the deployment key that names account and
    /// throttling keys.
    #[must_use]
    pub fn keyname_secret(&self) -> String {
        format!("{}keyname-secret", self.0)
    }

    /// `P keynames-v2` — set once plaintext account key names have been
    /// migrated to keyed digests.
    #[must_use]
    pub fn keynames_migrated(&self) -> String {
        format!("{}keynames-v2", self.0)
    }

    /// `P conn:{T}:<provider>` — a subject's connection to an external
    /// provider (encrypted; in the subject's slot).
    #[must_use]
    pub fn connection(&self, tag: &SubjectTag, provider: &str) -> String {
        format!("{}conn:{{{}}}:{provider}", self.0, tag.to_key_text())
    }

    /// `P cred:{T}:<provider>` — a subject's stored credentials (a
    /// username and password, or a key) for a provider of a credentials
    /// kind, sealed; in the subject's slot.
    #[must_use]
    pub fn credential(&self, tag: &SubjectTag, provider: &str) -> String {
        format!("{}cred:{{{}}}:{provider}", self.0, tag.to_key_text())
    }

    /// `P clock:{T}:<provider>` — the refresh lock of one connection (in the
    /// same slot as the connection).
    #[must_use]
    pub fn connection_lock(&self, tag: &SubjectTag, provider: &str) -> String {
        format!("{}clock:{{{}}}:{provider}", self.0, tag.to_key_text())
    }

    /// `P conn:*` — every connection record (for re-encryption scans).
    #[must_use]
    pub fn connection_pattern(&self) -> String {
        format!("{}conn:*", self.0)
    }

    /// `P cred:*` — every stored credentials record (for re-encryption
    /// and export scans).
    #[must_use]
    pub fn credential_pattern(&self) -> String {
        format!("{}cred:*", self.0)
    }

    /// `P cstate:<nonce>` — marks a connect `state` as used.
    #[must_use]
    pub fn connect_state(&self, nonce: &str) -> String {
        format!("{}cstate:{nonce}", self.0)
    }

    /// `P conns` — every connection, scored by its last refresh.
    #[must_use]
    pub fn connections(&self) -> String {
        format!("{}conns", self.0)
    }

    /// `P code:{C}` — an authorization code's grant, by the code's digest
    /// (base64url SHA-256).
    #[must_use]
    pub fn authorization_code(&self, code_digest: &str) -> String {
        format!("{}code:{{{code_digest}}}", self.0)
    }

    /// `P code:{C}:used` — a redeemed code (same slot as the code).
    #[must_use]
    pub fn used_authorization_code(&self, code_digest: &str) -> String {
        format!("{}code:{{{code_digest}}}:used", self.0)
    }

    /// `P consent:{T}` — a subject's remembered consents, client id → scope.
    #[must_use]
    pub fn consents(&self, tag: &SubjectTag) -> String {
        format!("{}consent:{{{}}}", self.0, tag.to_key_text())
    }

    /// `P tok:*` — the ACL key pattern a token client's read-only user needs
    /// for format-1 tokens (see [`session_pattern`](Self::session_pattern)).
    #[must_use]
    pub fn token_pattern(&self) -> String {
        format!("{}tok:*", self.0)
    }
}

impl Default for KeyPrefix {
    /// `ts:`
    fn default() -> Self {
        Self("ts:".to_owned())
    }
}

impl fmt::Debug for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPrefix({:?})", self.0)
    }
}

impl fmt::Display for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an index entry says about a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A live access token.
    Access,
    /// A live refresh token (the current one of its family).
    Refresh,
    /// A refresh token that was already rotated: presenting it again is
    /// reuse, and revokes its family.
    UsedRefresh,
}

impl EntryKind {
    const fn byte(self) -> u8 {
        match self {
            Self::Access => b'a',
            Self::Refresh => b'r',
            Self::UsedRefresh => b'u',
        }
    }

    /// The entry kind of a live token of `kind`.
    #[must_use]
    pub const fn live(kind: TokenKind) -> Self {
        match kind {
            TokenKind::Access => Self::Access,
            TokenKind::Refresh => Self::Refresh,
        }
    }
}

/// One member of a subject's index: `family (16) ‖ kind (1) ‖ digest (32)`,
/// 49 raw bytes, short enough for Redis's compact listpack encoding.
///
/// The layout is shared with the Lua scripts, which slice it by position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexMember {
    /// The token's family.
    pub family: Uuid,
    /// What kind of entry.
    pub kind: EntryKind,
    /// The token's digest.
    pub digest: TokenDigest,
}

/// Length of an encoded [`IndexMember`].
pub const INDEX_MEMBER_LEN: usize = 49;

impl IndexMember {
    /// The member's bytes.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(INDEX_MEMBER_LEN);
        out.extend_from_slice(self.family.as_bytes());
        out.push(self.kind.byte());
        out.extend_from_slice(self.digest.as_bytes());
        out
    }

    /// Reads a member back; `None` for anything that is not one.
    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != INDEX_MEMBER_LEN {
            return None;
        }
        let family = Uuid::from_slice(&bytes[..16]).ok()?;
        let kind = match bytes[16] {
            b'a' => EntryKind::Access,
            b'r' => EntryKind::Refresh,
            b'u' => EntryKind::UsedRefresh,
            _ => return None,
        };
        let mut digest = [0_u8; 32];
        digest.copy_from_slice(&bytes[17..]);
        Some(Self {
            family,
            kind,
            digest: TokenDigest::from_bytes(digest),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys of one subject share one hash tag; the schema is what the module
    /// documentation says.
    #[test]
    fn keys_share_the_subject_hash_tag() {
        let prefix = KeyPrefix::new("app1:").expect("valid");
        let tag = SubjectTag::of("alice");
        let digest = TokenDigest::of("t");
        let tag_text = tag.to_key_text();
        let token = prefix.token(&tag, &digest);
        assert!(token.starts_with(format!("app1:tok:{{{tag_text}}}:").as_bytes()));
        assert!(token.ends_with(digest.as_bytes()));
        assert_eq!(
            prefix.index(&tag),
            format!("app1:idx:{{{tag_text}}}").into_bytes()
        );
        assert_eq!(
            prefix.generation(&tag),
            format!("app1:gen:{{{tag_text}}}").into_bytes()
        );
        assert_eq!(prefix.token_pattern(), "app1:tok:*");
        assert_eq!(
            prefix.connection(&tag, "orcid"),
            format!("app1:conn:{{{tag_text}}}:orcid")
        );
        assert_eq!(
            prefix.connection_lock(&tag, "orcid"),
            format!("app1:clock:{{{tag_text}}}:orcid")
        );
        assert_eq!(
            prefix.credential(&tag, "webdav"),
            format!("app1:cred:{{{tag_text}}}:webdav")
        );
        assert_eq!(prefix.connect_state("n"), "app1:cstate:n");
        assert_eq!(prefix.connections(), "app1:conns");
        // A token client's read-only pattern never covers connections.
        assert!(!prefix.connection(&tag, "p").starts_with("app1:tok:"));
    }

    /// Prefixes that would break hash tags, ACL patterns or the protocol are
    /// refused.
    #[test]
    fn prefix_validation() {
        for bad in [
            "",
            "a{b",
            "a}b",
            "a*",
            "has space",
            "new\nline",
            &"x".repeat(65),
        ] {
            assert_eq!(KeyPrefix::new(bad), Err(KeyPrefixError), "{bad:?}");
        }
        assert!(KeyPrefix::new("tenant-a/tokens:").is_ok());
        assert_eq!(KeyPrefix::default().as_str(), "ts:");
    }

    /// Members round-trip and have the fixed layout the scripts rely on.
    #[test]
    fn index_member_layout() {
        let member = IndexMember {
            family: Uuid::from_u128(0x0102),
            kind: EntryKind::UsedRefresh,
            digest: TokenDigest::of("t"),
        };
        let bytes = member.encode();
        assert_eq!(bytes.len(), INDEX_MEMBER_LEN);
        assert_eq!(&bytes[..16], Uuid::from_u128(0x0102).as_bytes());
        assert_eq!(bytes[16], b'u');
        assert_eq!(&bytes[17..], TokenDigest::of("t").as_bytes());
        assert_eq!(IndexMember::decode(&bytes), Some(member));
        assert_eq!(IndexMember::decode(&bytes[1..]), None);
    }
}
