//! [`MemoryStore`]: the store contract in process memory, for tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::keys::{EntryKind, GENERATION_TTL, IndexMember};
use crate::record::{Timestamp, TokenRecord};
use crate::store::{
    Generation, Minted, RefreshState, Rotation, TokenReader, TokenWriter, USED_REFRESH_MEMORY,
};
use crate::token::{SubjectTag, Token, TokenDigest, TokenKind};

/// A token store in process memory, with expiry: **for tests only** — unit
/// tests of this workspace and your own handler tests. It behaves like the
/// Redis store (the same contract suite runs against both) but is not shared
/// between processes and forgets everything on exit.
///
/// ```
/// use std::time::Duration;
/// use token_repository::{Grant, MemoryStore, Scopes, TokenReader, TokenWriter};
///
/// # tokio_test();
/// # fn tokio_test() {
/// # let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # runtime.block_on(async {
/// let store = MemoryStore::new();
/// let minted = Grant {
///     subject: "user-1".into(),
///     username: "alice".into(),
///     name: None,
///     email: None,
///     scopes: Scopes::parse("read").unwrap(),
///     client_id: None,
///     access_ttl: Duration::from_secs(60),
///     refresh_ttl: None,
/// }
/// .mint()
/// .unwrap();
/// store.issue(&minted, None).await.unwrap();
/// let record = store.lookup(&minted.access.token).await.unwrap().unwrap();
/// assert_eq!(record.username, "alice");
/// # });
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    tokens: HashMap<TokenDigest, TokenRecord>,
    index: HashMap<SubjectTag, Vec<Entry>>,
    generations: HashMap<SubjectTag, (Generation, Timestamp)>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    member: IndexMember,
    expires_at: Timestamp,
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
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
        self.tokens.retain(|_, record| record.is_live_at(now));
        if let Some(entries) = self.index.get_mut(tag) {
            entries.retain(|entry| now < entry.expires_at);
            if entries.is_empty() {
                self.index.remove(tag);
            }
        }
    }

    fn live(&self, digest: &TokenDigest, now: Timestamp) -> Option<&TokenRecord> {
        self.tokens
            .get(digest)
            .filter(|record| record.is_live_at(now))
    }

    fn generation(&self, tag: &SubjectTag, now: Timestamp) -> Generation {
        self.generations
            .get(tag)
            .filter(|(_, expires_at)| now < *expires_at)
            .map(|(generation, _)| *generation)
            .unwrap_or_default()
    }

    fn find(&self, tag: &SubjectTag, digest: &TokenDigest) -> Option<IndexMember> {
        self.index.get(tag).and_then(|entries| {
            entries
                .iter()
                .map(|entry| entry.member)
                .find(|member| &member.digest == digest)
        })
    }

    fn insert(&mut self, minted: &Minted, now: Timestamp) -> Result<()> {
        if minted
            .tokens()
            .any(|new| self.live(new.token.digest(), now).is_some())
        {
            return Err(Error::Collision);
        }
        let tag = minted.access.token.tag().clone();
        for new in minted.tokens() {
            self.tokens.insert(*new.token.digest(), new.record.clone());
            self.index.entry(tag.clone()).or_default().push(Entry {
                member: IndexMember {
                    family: new.record.family,
                    kind: EntryKind::live(new.record.kind),
                    digest: *new.token.digest(),
                },
                expires_at: new.record.expires_at,
            });
        }
        Ok(())
    }

    /// Removes the entries matching `which` from a subject's index, and the
    /// tokens of the live ones; answers how many live tokens went.
    fn remove_entries(&mut self, tag: &SubjectTag, which: impl Fn(&IndexMember) -> bool) -> usize {
        let Some(entries) = self.index.get_mut(tag) else {
            return 0;
        };
        let mut removed = Vec::new();
        entries.retain(|entry| {
            let matches = which(&entry.member);
            if matches {
                removed.push(entry.member);
            }
            !matches
        });
        if entries.is_empty() {
            self.index.remove(tag);
        }
        removed
            .iter()
            .filter(|member| member.kind != EntryKind::UsedRefresh)
            .filter(|member| self.tokens.remove(&member.digest).is_some())
            .count()
    }

    fn remove_family(&mut self, tag: &SubjectTag, family: Uuid) -> usize {
        self.remove_entries(tag, |member| member.family == family)
    }
}

#[async_trait]
impl TokenReader for MemoryStore {
    async fn lookup(&self, token: &Token) -> Result<Option<TokenRecord>> {
        let now = Timestamp::now();
        let state = self.state();
        Ok(state
            .live(token.digest(), now)
            .filter(|record| {
                record.kind == token.kind() && &SubjectTag::of(&record.subject) == token.tag()
            })
            .cloned())
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

#[async_trait]
impl TokenWriter for MemoryStore {
    async fn issue(&self, minted: &Minted, guard: Option<Generation>) -> Result<()> {
        let now = Timestamp::now();
        minted.validate(now)?;
        let tag = minted.access.token.tag().clone();
        let mut state = self.state();
        if guard.is_some_and(|guard| guard != state.generation(&tag, now)) {
            return Err(Error::Superseded);
        }
        state.prune(&tag, now);
        state.insert(minted, now)
    }

    async fn inspect_refresh(&self, presented: &Token) -> Result<RefreshState> {
        if presented.kind() != TokenKind::Refresh {
            return Err(Error::InvalidRequest("not a refresh token"));
        }
        if let Some(record) = self.lookup(presented).await? {
            return Ok(RefreshState::Live(record));
        }
        let now = Timestamp::now();
        let mut state = self.state();
        state.prune(presented.tag(), now);
        match state.find(presented.tag(), presented.digest()) {
            Some(member) if member.kind == EntryKind::UsedRefresh => {
                let revoked = state.remove_family(presented.tag(), member.family);
                Ok(RefreshState::Reused { revoked })
            }
            _ => Ok(RefreshState::Unknown),
        }
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
        let tag = presented.tag().clone();
        let mut state = self.state();
        state.prune(&tag, now);
        let Some(member) = state.find(&tag, presented.digest()) else {
            return Ok(Rotation::Unknown);
        };
        if member.kind == EntryKind::UsedRefresh {
            let revoked = state.remove_family(&tag, member.family);
            return Ok(Rotation::Reused { revoked });
        }
        let Some((old_expiry, old_subject)) = state
            .live(presented.digest(), now)
            .map(|record| (record.expires_at, record.subject.clone()))
        else {
            return Ok(Rotation::Unknown);
        };
        if next.subject() != old_subject {
            return Err(Error::InvalidRequest(
                "the new pair must be for the same subject",
            ));
        }
        if next.family() != member.family {
            return Err(Error::InvalidRequest(
                "the new pair must continue the old family",
            ));
        }
        if next
            .tokens()
            .any(|new| state.live(new.token.digest(), now).is_some())
        {
            return Err(Error::Collision);
        }
        state.tokens.remove(presented.digest());
        let entries = state.index.entry(tag).or_default();
        let same_family_used = |entry: &Entry| {
            entry.member.family == member.family && entry.member.kind == EntryKind::UsedRefresh
        };
        // Scored by the retired token's expiry, but always after the
        // family's previous used tokens, as the Redis script does.
        let newest = entries
            .iter()
            .filter(|entry| same_family_used(entry))
            .map(|entry| entry.expires_at)
            .max();
        let score = newest.map_or(old_expiry, |newest| {
            old_expiry.max(newest.saturating_add(std::time::Duration::from_millis(1)))
        });
        for entry in entries.iter_mut() {
            if entry.member == member {
                entry.member.kind = EntryKind::UsedRefresh;
                entry.expires_at = score;
            }
        }
        let mut used: Vec<(Timestamp, IndexMember)> = entries
            .iter()
            .filter(|entry| same_family_used(entry))
            .map(|entry| (entry.expires_at, entry.member))
            .collect();
        if used.len() > USED_REFRESH_MEMORY {
            used.sort_by_key(|(expires_at, _)| *expires_at);
            let forget: Vec<IndexMember> = used[..used.len() - USED_REFRESH_MEMORY]
                .iter()
                .map(|(_, member)| *member)
                .collect();
            entries.retain(|entry| !forget.contains(&entry.member));
        }
        state.insert(next, now)?;
        Ok(Rotation::Rotated)
    }

    async fn revoke(&self, token: &Token) -> Result<usize> {
        let Some(record) = self.lookup(token).await? else {
            return Ok(0);
        };
        let mut state = self.state();
        Ok(match record.kind {
            TokenKind::Refresh => state.remove_family(token.tag(), record.family),
            TokenKind::Access => {
                state.remove_entries(token.tag(), |member| &member.digest == token.digest())
            }
        })
    }

    async fn revoke_family(&self, subject: &str, family: Uuid) -> Result<usize> {
        let tag = SubjectTag::of(subject);
        Ok(self.state().remove_family(&tag, family))
    }

    async fn revoke_all(&self, subject: &str) -> Result<usize> {
        let now = Timestamp::now();
        let tag = SubjectTag::of(subject);
        let mut state = self.state();
        let revoked = state.remove_entries(&tag, |_| true);
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
            .filter(|entry| entry.member.kind != EntryKind::UsedRefresh)
            .filter_map(|entry| state.live(&entry.member.digest, now))
            .filter(|record| record.subject == subject)
            .cloned()
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
