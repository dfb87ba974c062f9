//! [`MemoryStore`]: the store contract in process memory, for tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use uuid::Uuid;

use crate::codec::SessionRecord;
use crate::error::{Error, Result};
use crate::keys::GENERATION_TTL;
use crate::record::{Timestamp, TokenRecord};
use crate::store::{
    DEFAULT_MAX_SESSIONS_PER_SUBJECT, Generation, Issued, MAX_EVICTIONS_PER_ISSUE, Minted,
    RefreshRefusal, RefreshState, Rotation, TokenReader, TokenWriter, USED_REFRESH_MEMORY,
};
use crate::token::{SubjectTag, Token, TokenKind};

/// A token store in process memory, with expiry: **for tests only** — unit
/// tests of this workspace and your own handler tests. It behaves like the
/// Redis store (the same contract suite runs against both) but is not shared
/// between processes and forgets everything on exit.
///
/// ```
/// use std::time::Duration;
/// use token_repository::{Grant, Holder, MemoryStore, Scopes, TokenReader, TokenWriter};
///
/// # tokio_test();
/// # fn tokio_test() {
/// # let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # runtime.block_on(async {
/// let store = MemoryStore::new();
/// let minted = Grant {
///     holder: Holder {
///         subject: "user-1".into(),
///         username: "alice".into(),
///         name: None,
///         email: None,
///         scopes: Scopes::parse("read").unwrap(),
///         client_id: None,
///     },
///     access_ttl: Duration::from_secs(60),
///     refresh_ttl: None,
///     audience: token_repository::Audience::unrestricted(),
/// }
/// .mint()
/// .unwrap();
/// store.issue(&minted, None).await.unwrap();
/// let record = store.lookup(&minted.access.token).await.unwrap().unwrap();
/// assert_eq!(record.holder.username, "alice");
/// # });
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    max_sessions: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            state: Arc::default(),
            max_sessions: DEFAULT_MAX_SESSIONS_PER_SUBJECT,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    sessions: HashMap<(SubjectTag, Uuid), Stored>,
    /// Each subject's sessions with the expiry of their key, like the
    /// Redis index.
    index: HashMap<SubjectTag, Vec<(Uuid, Timestamp)>>,
    generations: HashMap<SubjectTag, (Generation, Timestamp)>,
}

#[derive(Debug, Clone)]
struct Stored {
    session: SessionRecord,
    expires_at: Timestamp,
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store holding at most `cap` sessions per subject (at least
    /// 1), like [`crate::RedisConfig::max_sessions_per_subject`].
    #[must_use]
    pub fn with_max_sessions_per_subject(cap: usize) -> Self {
        Self {
            state: Arc::default(),
            max_sessions: cap.max(1),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (every
        // mutation is a few infallible steps), so poisoning is ignored.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl State {
    fn prune(&mut self, tag: &SubjectTag, now: Timestamp) {
        self.sessions.retain(|_, stored| now < stored.expires_at);
        if let Some(entries) = self.index.get_mut(tag) {
            entries.retain(|(_, expires_at)| now < *expires_at);
            if entries.is_empty() {
                self.index.remove(tag);
            }
        }
    }

    fn session(&self, tag: &SubjectTag, family: Uuid, now: Timestamp) -> Option<&SessionRecord> {
        self.sessions
            .get(&(tag.clone(), family))
            .filter(|stored| now < stored.expires_at)
            .filter(|stored| &SubjectTag::of(&stored.session.holder.subject) == tag)
            .map(|stored| &stored.session)
    }

    fn generation(&self, tag: &SubjectTag, now: Timestamp) -> Generation {
        self.generations
            .get(tag)
            .filter(|(_, expires_at)| now < *expires_at)
            .map(|(generation, _)| *generation)
            .unwrap_or_default()
    }

    fn put(
        &mut self,
        tag: &SubjectTag,
        family: Uuid,
        session: SessionRecord,
        expires_at: Timestamp,
    ) {
        self.sessions.insert(
            (tag.clone(), family),
            Stored {
                session,
                expires_at,
            },
        );
        let entries = self.index.entry(tag.clone()).or_default();
        entries.retain(|(id, _)| *id != family);
        entries.push((family, expires_at));
    }

    /// Removes one session; answers how many live tokens went with it.
    fn remove(&mut self, tag: &SubjectTag, family: Uuid, now: Timestamp) -> usize {
        if let Some(entries) = self.index.get_mut(tag) {
            entries.retain(|(id, _)| *id != family);
            if entries.is_empty() {
                self.index.remove(tag);
            }
        }
        self.sessions
            .remove(&(tag.clone(), family))
            .filter(|stored| now < stored.expires_at)
            .map_or(0, |stored| stored.session.live_tokens(family, now).len())
    }
}

#[async_trait]
impl TokenReader for MemoryStore {
    async fn lookup(&self, token: &Token) -> Result<Option<TokenRecord>> {
        let now = Timestamp::now();
        let Some(family) = token.family() else {
            return Ok(None);
        };
        let state = self.state();
        Ok(state
            .session(token.tag(), family, now)
            .and_then(|session| session.token(token.kind(), token.digest(), family, now)))
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

#[async_trait]
impl TokenWriter for MemoryStore {
    async fn issue(&self, minted: &Minted, guard: Option<Generation>) -> Result<Issued> {
        let now = Timestamp::now();
        minted.validate(now)?;
        let tag = minted.access.token.tag().clone();
        let family = minted.family();
        let mut state = self.state();
        if guard.is_some_and(|guard| guard != state.generation(&tag, now)) {
            return Err(Error::Superseded);
        }
        state.prune(&tag, now);
        if state.sessions.contains_key(&(tag.clone(), family)) {
            return Err(Error::Collision);
        }
        let mut evicted = Vec::new();
        while evicted.len() < MAX_EVICTIONS_PER_ISSUE
            && state.index.get(&tag).map_or(0, Vec::len) >= self.max_sessions
        {
            let oldest = state.index.get(&tag).and_then(|entries| {
                entries
                    .iter()
                    .min_by_key(|(_, expires_at)| *expires_at)
                    .map(|(id, _)| *id)
            });
            let Some(oldest) = oldest else { break };
            state.remove(&tag, oldest, now);
            evicted.push(oldest);
        }
        state.put(
            &tag,
            family,
            minted.session(Vec::new()),
            minted.expires_at(),
        );
        Ok(Issued { evicted })
    }

    async fn inspect_refresh(&self, presented: &Token) -> Result<RefreshState> {
        if presented.kind() != TokenKind::Refresh {
            return Err(Error::InvalidRequest("not a refresh token"));
        }
        let Some(family) = presented.family() else {
            return Ok(RefreshState::Refused(RefreshRefusal::Unknown));
        };
        let now = Timestamp::now();
        let mut state = self.state();
        let Some(session) = state.session(presented.tag(), family, now) else {
            return Ok(RefreshState::Refused(RefreshRefusal::Unknown));
        };
        if let Some(record) = session.token(TokenKind::Refresh, presented.digest(), family, now) {
            return Ok(RefreshState::Live(record));
        }
        if session.was_used(presented.digest()) {
            let revoked = state.remove(presented.tag(), family, now);
            return Ok(RefreshState::Refused(RefreshRefusal::Reused { revoked }));
        }
        Ok(RefreshState::Refused(RefreshRefusal::Unknown))
    }

    async fn rotate(&self, presented: &Token, next: &Minted) -> Result<Rotation> {
        let now = Timestamp::now();
        next.validate(now)?;
        if presented.kind() != TokenKind::Refresh
            || next.refresh.is_none()
            || next.access.token.tag() != presented.tag()
        {
            return Err(Error::InvalidRequest(
                "rotation needs a refresh token and a new pair for the same subject",
            ));
        }
        let Some(family) = presented.family() else {
            return Ok(Rotation::Refused(RefreshRefusal::Unknown));
        };
        if next.family() != family {
            return Err(Error::InvalidRequest(
                "the new pair must continue the old family",
            ));
        }
        let tag = presented.tag().clone();
        let mut state = self.state();
        state.prune(&tag, now);
        let Some(session) = state.session(&tag, family, now) else {
            return Ok(Rotation::Refused(RefreshRefusal::Unknown));
        };
        if session
            .token(TokenKind::Refresh, presented.digest(), family, now)
            .is_some()
        {
            if next.subject() != session.holder.subject {
                return Err(Error::InvalidRequest(
                    "the new pair must be for the same subject",
                ));
            }
            let used: Vec<[u8; 16]> = std::iter::once(presented.digest().short())
                .chain(session.used.iter().copied())
                .take(USED_REFRESH_MEMORY)
                .collect();
            state.put(&tag, family, next.session(used), next.expires_at());
            return Ok(Rotation::Rotated);
        }
        if session.was_used(presented.digest()) {
            let revoked = state.remove(&tag, family, now);
            return Ok(Rotation::Refused(RefreshRefusal::Reused { revoked }));
        }
        Ok(Rotation::Refused(RefreshRefusal::Unknown))
    }

    async fn revoke(&self, token: &Token) -> Result<usize> {
        let Some(family) = token.family() else {
            return Ok(0);
        };
        let now = Timestamp::now();
        let tag = token.tag().clone();
        let mut state = self.state();
        let Some(session) = state.session(&tag, family, now) else {
            return Ok(0);
        };
        if session
            .token(token.kind(), token.digest(), family, now)
            .is_none()
        {
            return Ok(0);
        }
        Ok(match token.kind() {
            TokenKind::Refresh => state.remove(&tag, family, now),
            TokenKind::Access => {
                if session.refresh.is_none() {
                    state.remove(&tag, family, now);
                } else if let Some(stored) = state.sessions.get_mut(&(tag, family)) {
                    stored.session.access = None;
                }
                1
            }
        })
    }

    async fn revoke_family(&self, subject: &str, family: Uuid) -> Result<usize> {
        let tag = SubjectTag::of(subject);
        Ok(self.state().remove(&tag, family, Timestamp::now()))
    }

    async fn revoke_all(&self, subject: &str) -> Result<usize> {
        let now = Timestamp::now();
        let tag = SubjectTag::of(subject);
        let mut state = self.state();
        let families: Vec<Uuid> = state
            .index
            .get(&tag)
            .into_iter()
            .flatten()
            .map(|(id, _)| *id)
            .collect();
        let revoked = families
            .into_iter()
            .map(|family| state.remove(&tag, family, now))
            .sum();
        state.generations.insert(
            tag,
            (
                Generation::next_random(),
                now.saturating_add(GENERATION_TTL),
            ),
        );
        Ok(revoked)
    }

    async fn list(&self, subject: &str) -> Result<Vec<TokenRecord>> {
        let now = Timestamp::now();
        let tag = SubjectTag::of(subject);
        let state = self.state();
        let mut records: Vec<TokenRecord> = state
            .index
            .get(&tag)
            .into_iter()
            .flatten()
            .filter_map(|(family, _)| {
                state
                    .session(&tag, *family, now)
                    .filter(|session| session.holder.subject == subject)
                    .map(|session| session.live_tokens(*family, now))
            })
            .flatten()
            .collect();
        records.sort_by_key(|record| record.issued_at);
        Ok(records)
    }

    async fn generation(&self, subject: &str) -> Result<Generation> {
        Ok(self
            .state()
            .generation(&SubjectTag::of(subject), Timestamp::now()))
    }
}
