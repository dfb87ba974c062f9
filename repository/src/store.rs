//! The capabilities of a token store: [`TokenReader`] for everyone,
//! [`TokenWriter`] for the authority alone.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::audience::Audience;
use crate::codec::{SessionRecord, Slot};
use crate::error::{Error, Result};
use crate::holder::Holder;
use crate::record::{Timestamp, TokenRecord};
use crate::token::{SubjectTag, Token, TokenKind};

/// Looks tokens up. This is all a token client (the middleware) can do: a
/// reader has no method that writes, and in deployment its Redis user has no
/// permission that writes either.
#[async_trait]
pub trait TokenReader: Send + Sync + fmt::Debug {
    /// The record of a live token; `None` when the token is unknown, expired
    /// or revoked (indistinguishable on purpose).
    ///
    /// # Errors
    ///
    /// Only when the store itself fails (see [`Error::is_unavailable`]);
    /// callers must then fail closed.
    async fn lookup(&self, token: &Token) -> Result<Option<TokenRecord>>;

    /// Checks that the store answers (for readiness probes).
    ///
    /// # Errors
    ///
    /// When it does not.
    async fn ping(&self) -> Result<()>;
}

/// Issues, rotates, lists and revokes tokens: the authority's capability.
///
/// Every operation on one subject is atomic with respect to the others: a
/// [`revoke_all`](Self::revoke_all) racing with [`issue`](Self::issue) either
/// revokes the new tokens or happens entirely before them, and never leaves a
/// token that is live but missing from the subject's index.
#[async_trait]
pub trait TokenWriter: TokenReader {
    /// Stores freshly minted tokens, a new session, with their TTLs and
    /// indexes the session under its subject.
    ///
    /// A subject holds at most the store's session cap
    /// ([`DEFAULT_MAX_SESSIONS_PER_SUBJECT`] unless configured): issuing
    /// beyond it first revokes the subject's sessions that expire soonest
    /// (the least recently refreshed), which [`Issued::evicted`] names.
    ///
    /// With `guard`, refuses with [`Error::Superseded`] when the subject's
    /// tokens were revoked since `guard` was read (see
    /// [`generation`](Self::generation)).
    ///
    /// # Errors
    ///
    /// [`Error::Collision`] when the session already exists (nothing is
    /// written, nothing is overwritten), [`Error::Superseded`], or a store
    /// failure.
    async fn issue(&self, minted: &Minted, guard: Option<Generation>) -> Result<Issued>;

    /// What a presented refresh token is: live (with its record), a reused
    /// one (its family has just been revoked), or unknown. Call it before
    /// minting the next pair with [`rotate`](Self::rotate).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`] for an access token, or a store failure.
    async fn inspect_refresh(&self, presented: &Token) -> Result<RefreshState>;

    /// Atomically retires a live refresh token and stores `next` (minted in
    /// the same family) in its place. The family's previous access token is
    /// retired too: a session holds one access token at a time. If the
    /// presented token has been used in the meantime, this is reuse and the
    /// whole family is revoked.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`] when `next` belongs to another subject or
    /// family, [`Error::Collision`], or a store failure.
    async fn rotate(&self, presented: &Token, next: &Minted) -> Result<Rotation>;

    /// Revokes one token. A refresh token takes its whole family with it
    /// (RFC 7009 §2.1: the access tokens of the same grant go too). Answers
    /// how many live tokens were removed (0 for an unknown token).
    ///
    /// # Errors
    ///
    /// Store failures.
    async fn revoke(&self, token: &Token) -> Result<usize>;

    /// Revokes every token of one family of `subject` (sign out of one
    /// session). Answers how many live tokens were removed.
    ///
    /// # Errors
    ///
    /// Store failures.
    async fn revoke_family(&self, subject: &str, family: Uuid) -> Result<usize>;

    /// Revokes every token of `subject` (sign out everywhere) and starts a
    /// new revocation generation, so that grants which checked credentials
    /// before this call cannot issue after it. Answers how many live tokens
    /// were removed.
    ///
    /// # Errors
    ///
    /// Store failures.
    async fn revoke_all(&self, subject: &str) -> Result<usize>;

    /// The live tokens of `subject`, oldest first.
    ///
    /// # Errors
    ///
    /// Store failures.
    async fn list(&self, subject: &str) -> Result<Vec<TokenRecord>>;

    /// The subject's current revocation generation. Read it before checking
    /// credentials and pass it to [`issue`](Self::issue): if a
    /// sign-out-everywhere happens in between, the issue is refused.
    ///
    /// # Errors
    ///
    /// Store failures.
    async fn generation(&self, subject: &str) -> Result<Generation>;
}

pub use crate::codec::USED_REFRESH_MEMORY;

/// How many live sessions (families) one subject may hold unless
/// configured otherwise: far more than any real user, small enough that
/// sign-out-everywhere and listing stay cheap.
pub const DEFAULT_MAX_SESSIONS_PER_SUBJECT: usize = 100;

/// At most this many sessions are evicted by one issue (only reached when
/// the cap was lowered below what a subject already holds; later issues
/// continue), so that one issue stays bounded.
pub const MAX_EVICTIONS_PER_ISSUE: usize = 16;

/// What [`TokenWriter::issue`] did besides storing the new session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Issued {
    /// Sessions of the subject revoked to stay within the session cap,
    /// oldest first (empty almost always).
    pub evicted: Vec<Uuid>,
}

/// A subject's revocation generation: changes with every
/// [`TokenWriter::revoke_all`]. Opaque.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Generation(pub(crate) u64);

impl Generation {
    /// A fresh random generation (never the initial one).
    pub(crate) fn next_random() -> Self {
        use rand::Rng as _;
        Self(rand::rng().next_u64().max(1))
    }
}

/// Why a presented refresh token gives no tokens: the one refusal of the
/// refresh path, answered both by [`TokenWriter::inspect_refresh`] and, when
/// the token was used or revoked in between, by [`TokenWriter::rotate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshRefusal {
    /// A refresh token that had already been rotated: presented again, it
    /// may have been stolen. Its family (this many live tokens) has been
    /// revoked.
    Reused {
        /// Live tokens removed with the family.
        revoked: usize,
    },
    /// Unknown, expired, or revoked.
    Unknown,
}

/// What [`TokenWriter::inspect_refresh`] found.
// The live record carries its audience inline (no heap, so a cached record
// is copied without allocating); one answer per refresh, not stored.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshState {
    /// A live refresh token.
    Live(TokenRecord),
    /// A token that gives nothing, and why.
    Refused(RefreshRefusal),
}

/// What [`TokenWriter::rotate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The old refresh token is retired and the new tokens are stored.
    Rotated,
    /// Nothing was issued: the old token was used meanwhile (its family is
    /// now revoked) or is no longer known (expired or revoked meanwhile).
    Refused(RefreshRefusal),
}

/// What to issue: the holder (details, scopes, client) and lifetimes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Who the tokens are issued to, what they grant, for which client.
    pub holder: Holder,
    /// Lifetime of the access token.
    pub access_ttl: Duration,
    /// Lifetime of the refresh token; `None` issues no refresh token.
    pub refresh_ttl: Option<Duration>,
    /// The resource servers the tokens may be presented to (RFC 8707). The
    /// authority always names at least one;
    /// [`Audience::unrestricted`] is for tests and tools.
    pub audience: Audience,
}

impl Grant {
    /// Mints a new access token (and refresh token when configured) in a new
    /// family, with fresh randomness. Nothing is stored yet.
    ///
    /// # Errors
    ///
    /// [`Error::Randomness`] when the OS generator fails.
    pub fn mint(&self) -> Result<Minted> {
        self.mint_in_family(Uuid::new_v4())
    }

    /// Mints the next pair of an existing family (refresh rotation).
    ///
    /// # Errors
    ///
    /// [`Error::Randomness`] when the OS generator fails.
    pub fn mint_in_family(&self, family: Uuid) -> Result<Minted> {
        if self.access_ttl.is_zero() || self.refresh_ttl.is_some_and(|ttl| ttl.is_zero()) {
            return Err(Error::InvalidRequest("token lifetimes must be positive"));
        }
        let now = Timestamp::now();
        let tag = SubjectTag::of(&self.holder.subject);
        // One copy of the holder for both records.
        let holder = Arc::new(self.holder.clone());
        let new = |token: Token, ttl| self.new_token(token, &holder, family, now, ttl);
        Ok(match self.refresh_ttl {
            Some(refresh_ttl) => {
                let (access, refresh) = Token::generate_pair_in_family(&tag, family)?;
                Minted {
                    access: new(access, self.access_ttl),
                    refresh: Some(new(refresh, refresh_ttl)),
                }
            }
            None => Minted {
                access: new(
                    Token::generate_in_family(TokenKind::Access, &tag, family)?,
                    self.access_ttl,
                ),
                refresh: None,
            },
        })
    }

    fn new_token(
        &self,
        token: Token,
        holder: &Arc<Holder>,
        family: Uuid,
        now: Timestamp,
        ttl: Duration,
    ) -> NewToken {
        let record = TokenRecord {
            id: token.id(),
            kind: token.kind(),
            holder: Arc::clone(holder),
            issued_at: now,
            expires_at: now.saturating_add(ttl),
            family,
            audience: self.audience,
        };
        NewToken { token, record }
    }
}

/// A token and its record, minted but not yet stored.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// The token, to hand to its holder once stored.
    pub token: Token,
    /// Its record.
    pub record: TokenRecord,
}

impl NewToken {
    /// Builds a new token from parts (for tests that need a specific token,
    /// such as a deliberate collision).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`] when the token and record disagree on kind,
    /// subject or id.
    pub fn from_parts(token: Token, record: TokenRecord) -> Result<Self> {
        if token.kind() != record.kind
            || token.tag() != &SubjectTag::of(&record.holder.subject)
            || token.id() != record.id
        {
            return Err(Error::InvalidRequest(
                "token and record disagree on kind, subject or id",
            ));
        }
        Ok(Self { token, record })
    }
}

/// The tokens of one grant, minted together: an access token and, for
/// grants that allow refreshing, a refresh token of the same family.
#[derive(Debug, Clone)]
pub struct Minted {
    /// The access token.
    pub access: NewToken,
    /// The refresh token, when the grant has one.
    pub refresh: Option<NewToken>,
}

impl Minted {
    /// The subject both tokens belong to.
    #[must_use]
    pub fn subject(&self) -> &str {
        &self.access.record.holder.subject
    }

    /// The family both tokens belong to.
    #[must_use]
    pub fn family(&self) -> Uuid {
        self.access.record.family
    }

    /// The tokens, access first.
    pub fn tokens(&self) -> impl Iterator<Item = &NewToken> {
        std::iter::once(&self.access).chain(self.refresh.as_ref())
    }

    /// The session record these tokens make, with `used` rotated refresh
    /// tokens remembered.
    #[must_use]
    pub fn session(&self, used: Vec<[u8; 16]>) -> SessionRecord {
        let record = &self.access.record;
        let slot = |new: &NewToken| Slot {
            digest: new.token.digest().short(),
            expires_at: new.record.expires_at,
        };
        SessionRecord {
            holder: record.holder.clone(),
            audience: record.audience,
            issued_at: record.issued_at,
            access: Some(slot(&self.access)),
            refresh: self.refresh.as_ref().map(slot),
            used,
        }
    }

    /// When the session's longest-lived token expires.
    #[must_use]
    pub fn expires_at(&self) -> Timestamp {
        self.tokens()
            .map(|new| new.record.expires_at)
            .max()
            .unwrap_or(self.access.record.expires_at)
    }

    /// Checks that the tokens are consistent (one subject, one family named
    /// by both tokens, the right kinds, not already expired). A session's
    /// tokens share holder, scopes and issue time; the access token's are
    /// what is stored.
    pub(crate) fn validate(&self, now: Timestamp) -> Result<()> {
        let access = &self.access.record;
        let consistent = access.kind == TokenKind::Access
            && self.access.token.family() == Some(access.family)
            && self.refresh.as_ref().is_none_or(|refresh| {
                refresh.record.kind == TokenKind::Refresh
                    && refresh.record.holder.subject == access.holder.subject
                    && refresh.record.family == access.family
                    && refresh.token.family() == Some(access.family)
            });
        if !consistent {
            return Err(Error::InvalidRequest(
                "minted tokens must be one access token and an optional refresh token \
                 of the same subject and family",
            ));
        }
        if self.tokens().any(|new| !new.record.is_live_at(now)) {
            return Err(Error::InvalidRequest("minted token is already expired"));
        }
        Ok(())
    }
}
