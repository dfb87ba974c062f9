//! [`RedisStore`]: the authority's reader and writer on Redis.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use redis::Value;
use uuid::Uuid;

use super::config::RedisConfig;
use super::connector::SharedConn;
use super::inner::Inner;
use super::pool::PooledConnection;
use super::scripts;
use crate::codec;
use crate::error::{Error, Result};
use crate::keys::{EntryKind, GENERATION_TTL, IndexMember, KeyPrefix};
use crate::record::{Timestamp, TokenRecord};
use crate::store::{
    Generation, Issued, MAX_EVICTIONS_PER_ISSUE, Minted, RefreshRefusal, RefreshState, Rotation,
    TokenReader, TokenWriter, USED_REFRESH_MEMORY,
};
use crate::token::{SubjectTag, Token, TokenDigest, TokenKind};

/// The token store on Redis, for the authority: reads and writes.
///
/// Creating it does not connect; the first operation does (use
/// [`TokenReader::ping`] to check at start-up). Cloning is cheap and shares
/// the pool.
///
/// ```no_run
/// use std::time::Duration;
/// use token_repository::{KeyPrefix, RedisConfig, RedisStore, TokenReader};
///
/// # async fn example() -> token_repository::Result<()> {
/// let store = RedisStore::new(
///     RedisConfig::new("redis://authority:secret@127.0.0.1:6379/")
///         .prefix(KeyPrefix::new("ts:").expect("valid prefix"))
///         .timeout(Duration::from_millis(500)),
/// )?;
/// store.ping().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

impl RedisStore {
    /// A store for `config`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an unparseable URL.
    pub fn new(config: RedisConfig) -> Result<Self> {
        Ok(Self {
            inner: Arc::new(Inner::new(&config)?),
        })
    }

    /// The key prefix in use.
    #[must_use]
    pub fn prefix(&self) -> &KeyPrefix {
        &self.inner.prefix
    }

    /// Connection pool figures: (connections open, connections idle, tasks
    /// waiting), for metrics.
    #[must_use]
    pub fn pool_status(&self) -> (usize, usize, usize) {
        self.inner.pool.status()
    }

    /// Runs `operation` on a pooled connection of this store, bounded by
    /// its timeout like every store operation: for the authority's own keys
    /// (accounts, throttling), so that they share the pool and its
    /// fail-fast behaviour.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], pool errors, or whatever `operation` returns.
    pub async fn with_connection<T, F, Fut>(&self, operation: F) -> Result<T>
    where
        F: FnOnce(PooledConnection) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.inner.with_connection(operation).await
    }

    /// Runs `operation` on the store's one multiplexed connection, the one
    /// token lookups and scripts use: no pool check before it, so one
    /// round trip per command. For commands and pipelines that need no
    /// connection state of their own (never `WATCH`, `MULTI` or
    /// `SELECT`: other tasks' commands interleave with these); use
    /// [`with_connection`](Self::with_connection) for those. Bounded by the
    /// store's timeout; a connection that fails or does not answer in time
    /// is replaced.
    ///
    /// ```no_run
    /// use token_repository::{RedisConfig, RedisStore};
    ///
    /// # async fn example() -> token_repository::Result<()> {
    /// let store = RedisStore::new(RedisConfig::new("redis://127.0.0.1:6379"))?;
    /// let value: Option<String> = store
    ///     .with_shared(|mut connection| async move {
    ///         redis::cmd("GET").arg("app:setting").query_async(&mut connection).await
    ///     })
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], connection errors, or the command's own error.
    pub async fn with_shared<T, F, Fut>(&self, operation: F) -> Result<T>
    where
        F: FnOnce(SharedConn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.inner.with_shared(operation).await
    }

    /// Runs one of the store's scripts on the shared connection (no pool
    /// check before it: one round trip).
    async fn script<T: redis::FromRedisValue>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T> {
        self.inner
            .with_shared(
                |mut connection| async move { invocation.invoke_async(&mut connection).await },
            )
            .await
    }

    /// Runs a script that issues tokens. With durability on it runs on a
    /// pooled connection of its own, followed by `WAIT` on the same
    /// connection (which counts this connection's writes; on the shared
    /// connection it would also hold up every lookup pipelined behind it);
    /// answers the reply and how many replicas acknowledged.
    ///
    /// The durable path is boxed: a pooled connection's future is about
    /// 11 KiB, and inline it made every issue's and rotation's future that
    /// large, copied whole into its box on every call (bench/README.md,
    /// "Futures copied per rotation").
    async fn issuing_script<T: redis::FromRedisValue + Send + 'static>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<(T, Option<u32>)> {
        let Some(durability) = self.inner.durability else {
            return Ok((self.script(invocation).await?, None));
        };
        Box::pin(self.inner.with_connection(|mut connection| async move {
            let reply: T = invocation.invoke_async(&mut connection).await?;
            let timeout_ms = u64::try_from(durability.timeout.as_millis()).unwrap_or(u64::MAX);
            let acknowledged: i64 = redis::cmd("WAIT")
                .arg(durability.replicas)
                .arg(timeout_ms)
                .query_async(&mut connection)
                .await?;
            Ok((reply, Some(u32::try_from(acknowledged).unwrap_or(0))))
        }))
        .await
    }

    /// After an issue that replicas did not acknowledge in time: revoke
    /// what was written (best effort; the write may be lost anyway) and
    /// refuse.
    async fn not_durable(&self, minted: &Minted, acknowledged: u32) -> Error {
        let required = self
            .inner
            .durability
            .map_or(0, |durability| durability.replicas);
        let revoked = self
            .revoke_session(minted.access.token.tag(), minted.family())
            .await;
        tracing::warn!(
            acknowledged,
            required,
            revoked = ?revoked.as_ref().ok(),
            "replicas did not acknowledge issued tokens in time; revoked them"
        );
        Error::NotDurable {
            acknowledged,
            required,
        }
    }

    /// Revokes one session: O(1). Answers how many live tokens went.
    async fn revoke_session(&self, tag: &SubjectTag, family: Uuid) -> Result<usize> {
        let prefix = &self.inner.prefix;
        let mut invocation = scripts::REVOKE_SESSION.prepare_invoke();
        invocation
            .key(prefix.session(tag, family))
            .key(prefix.sessions(tag))
            .arg(family.as_bytes().as_slice());
        let value: Option<Vec<u8>> = self.script(invocation).await?;
        live_in(value.as_deref())
    }

    /// Revokes one format-1 family (a scan of the subject's format-1
    /// index, which only shrinks now).
    async fn revoke_family_v1(&self, tag: &SubjectTag, family: Uuid) -> Result<usize> {
        let prefix = &self.inner.prefix;
        let mut invocation = scripts::REVOKE_FAMILY_V1.prepare_invoke();
        invocation
            .key(prefix.index(tag))
            .arg(prefix.token_key_prefix(tag))
            .arg(family.as_bytes().as_slice());
        self.script(invocation).await
    }

    async fn revoke_v1(&self, token: &Token) -> Result<usize> {
        let Some(record) = self.inner.lookup_v1(token).await? else {
            return Ok(0);
        };
        match record.kind {
            TokenKind::Refresh => self.revoke_family_v1(token.tag(), record.family).await,
            TokenKind::Access => {
                let prefix = &self.inner.prefix;
                let member = IndexMember {
                    family: record.family,
                    kind: EntryKind::Access,
                    digest: *token.digest(),
                };
                let mut invocation = scripts::REVOKE_TOKEN_V1.prepare_invoke();
                invocation
                    .key(prefix.index(token.tag()))
                    .key(prefix.token(token.tag(), token.digest()))
                    .arg(member.encode());
                self.script(invocation).await
            }
        }
    }

    /// The format-1 tokens of a subject (issued before the bounded schema,
    /// until they expire).
    async fn list_v1(&self, subject: &str) -> Result<Vec<TokenRecord>> {
        let prefix = self.inner.prefix.clone();
        let tag = SubjectTag::of(subject);
        let index = prefix.index(&tag);
        let found: Vec<(TokenDigest, Option<Vec<u8>>)> = self
            .inner
            .with_shared(|mut connection| async move {
                let members: Vec<Vec<u8>> = redis::cmd("ZRANGE")
                    .arg(&index)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut connection)
                    .await?;
                let digests: Vec<TokenDigest> = members
                    .iter()
                    .filter_map(|bytes| IndexMember::decode(bytes))
                    .filter(|member| member.kind != EntryKind::UsedRefresh)
                    .map(|member| member.digest)
                    .collect();
                if digests.is_empty() {
                    return Ok(Vec::new());
                }
                let keys: Vec<Vec<u8>> = digests
                    .iter()
                    .map(|digest| prefix.token(&tag, digest))
                    .collect();
                let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
                    .arg(&keys)
                    .query_async(&mut connection)
                    .await?;
                Ok(digests.into_iter().zip(values).collect())
            })
            .await?;
        let now = Timestamp::now();
        let mut records = Vec::with_capacity(found.len());
        for (digest, value) in found {
            let Some(bytes) = value else { continue };
            let record = codec::decode(&bytes, &digest)?;
            if record.holder.subject == subject && record.is_live_at(now) {
                records.push(record);
            }
        }
        Ok(records)
    }
}

/// How many live tokens a revoked session's value held (by this host's
/// clock, like every expiry check of a reader).
fn live_in(value: Option<&[u8]>) -> Result<usize> {
    let Some(bytes) = value else {
        return Ok(0);
    };
    let session = codec::decode_session(bytes)?;
    Ok(session.live_tokens(Uuid::nil(), Timestamp::now()).len())
}

/// Milliseconds until `at` (at least 1), for a key's TTL.
fn ttl_ms(now: Timestamp, at: Timestamp) -> u64 {
    u64::try_from(now.until(at).as_millis().max(1)).unwrap_or(u64::MAX)
}

/// Converts a reply value, reporting a mismatch as a Redis error.
fn from_value<T: redis::FromRedisValue>(value: Value) -> Result<T> {
    redis::from_redis_value(value).map_err(|error| Error::Redis(error.into()))
}

/// Reads a `{status, n}` script reply.
fn status_and_count(value: Value) -> Result<(String, Value)> {
    let mut items: Vec<Value> = from_value(value)?;
    if items.len() != 2 {
        return Err(Error::InvalidRequest("unexpected script reply"));
    }
    let payload = items.pop().unwrap_or(Value::Nil);
    let status: String = from_value(items.pop().unwrap_or(Value::Nil))?;
    Ok((status, payload))
}

#[async_trait]
impl TokenReader for RedisStore {
    async fn lookup(&self, token: &Token) -> Result<Option<TokenRecord>> {
        self.inner.lookup(token).await
    }

    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
}

#[async_trait]
impl TokenWriter for RedisStore {
    async fn issue(&self, minted: &Minted, guard: Option<Generation>) -> Result<Issued> {
        let now = Timestamp::now();
        minted.validate(now)?;
        let prefix = &self.inner.prefix;
        let tag = minted.access.token.tag();
        let family = minted.family();
        let mut invocation = scripts::ISSUE.prepare_invoke();
        invocation
            .key(prefix.session(tag, family))
            .key(prefix.sessions(tag))
            .key(prefix.generation(tag))
            .arg(
                guard
                    .map(|generation| generation.0.to_string())
                    .unwrap_or_default(),
            )
            .arg(family.as_bytes().as_slice())
            .arg(codec::encode_session(&minted.session(Vec::new())))
            .arg(ttl_ms(now, minted.expires_at()))
            .arg(self.inner.max_sessions)
            .arg(prefix.session_key_prefix(tag))
            .arg(MAX_EVICTIONS_PER_ISSUE);
        let (reply, acknowledged): (Value, _) = self.issuing_script(invocation).await?;
        let (status, payload) = status_and_count(reply)?;
        match status.as_str() {
            "ok" => {
                let evicted: Vec<Vec<u8>> = from_value(payload)?;
                let evicted = evicted
                    .iter()
                    .filter_map(|id| Uuid::from_slice(id).ok())
                    .collect();
                match acknowledged {
                    Some(acknowledged)
                        if self
                            .inner
                            .durability
                            .is_some_and(|d| acknowledged < d.replicas) =>
                    {
                        Err(Box::pin(self.not_durable(minted, acknowledged)).await)
                    }
                    _ => Ok(Issued { evicted }),
                }
            }
            "superseded" => Err(Error::Superseded),
            "collision" => Err(Error::Collision),
            _ => Err(Error::InvalidRequest("unexpected script reply")),
        }
    }

    async fn inspect_refresh(&self, presented: &Token) -> Result<RefreshState> {
        if presented.kind() != TokenKind::Refresh {
            return Err(Error::InvalidRequest("not a refresh token"));
        }
        // Format-1 refresh tokens (issued before the bounded schema) are
        // refused: their holders sign in again. Nothing is looked up.
        let Some(family) = presented.family() else {
            return Ok(RefreshState::Refused(RefreshRefusal::Unknown));
        };
        // One GET for every token, live, retired or forged: a script runs
        // only to revoke a session whose rotated token came back.
        let tag = presented.tag();
        let Some(session) = self.inner.session(tag, family).await? else {
            return Ok(RefreshState::Refused(RefreshRefusal::Unknown));
        };
        if let Some(record) = session.token(
            TokenKind::Refresh,
            presented.digest(),
            family,
            Timestamp::now(),
        ) {
            return Ok(RefreshState::Live(record));
        }
        if session.was_used(presented.digest()) {
            let revoked = self.revoke_session(tag, family).await?;
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
        let prefix = &self.inner.prefix;
        let tag = presented.tag();
        let session = next.session(Vec::new());
        let mut invocation = scripts::ROTATE.prepare_invoke();
        invocation
            .key(prefix.session(tag, family))
            .key(prefix.sessions(tag))
            .arg(presented.digest().short().as_slice())
            .arg(session.header())
            .arg(session.encoded_holder())
            .arg(ttl_ms(now, next.expires_at()))
            .arg(USED_REFRESH_MEMORY)
            .arg(family.as_bytes().as_slice())
            .arg(now.as_unix_millis());
        let (reply, acknowledged): (Value, _) = self.issuing_script(invocation).await?;
        let (status, payload) = status_and_count(reply)?;
        match status.as_str() {
            "rotated" => match acknowledged {
                Some(acknowledged)
                    if self
                        .inner
                        .durability
                        .is_some_and(|d| acknowledged < d.replicas) =>
                {
                    Err(Box::pin(self.not_durable(next, acknowledged)).await)
                }
                _ => Ok(Rotation::Rotated),
            },
            "reused" => {
                let value: Option<Vec<u8>> = from_value(payload)?;
                Ok(Rotation::Refused(RefreshRefusal::Reused {
                    revoked: live_in(value.as_deref())?,
                }))
            }
            "unknown" => Ok(Rotation::Refused(RefreshRefusal::Unknown)),
            _ => Err(Error::InvalidRequest("unexpected script reply")),
        }
    }

    async fn revoke(&self, token: &Token) -> Result<usize> {
        let Some(family) = token.family() else {
            return self.revoke_v1(token).await;
        };
        let Some(record) = self.inner.lookup(token).await? else {
            return Ok(0);
        };
        match record.kind {
            TokenKind::Refresh => self.revoke_session(token.tag(), family).await,
            TokenKind::Access => {
                let prefix = &self.inner.prefix;
                let mut invocation = scripts::REVOKE_ACCESS.prepare_invoke();
                invocation
                    .key(prefix.session(token.tag(), family))
                    .key(prefix.sessions(token.tag()))
                    .arg(token.digest().short().as_slice())
                    .arg(family.as_bytes().as_slice());
                self.script(invocation).await
            }
        }
    }

    async fn revoke_family(&self, subject: &str, family: Uuid) -> Result<usize> {
        let tag = SubjectTag::of(subject);
        let revoked = self.revoke_session(&tag, family).await?;
        if revoked > 0 {
            return Ok(revoked);
        }
        // A session from before the bounded schema, until those expire.
        self.revoke_family_v1(&tag, family).await
    }

    async fn revoke_all(&self, subject: &str) -> Result<usize> {
        let prefix = &self.inner.prefix;
        let tag = SubjectTag::of(subject);
        let mut invocation = scripts::REVOKE_ALL.prepare_invoke();
        invocation
            .key(prefix.sessions(&tag))
            .key(prefix.generation(&tag))
            .key(prefix.index(&tag))
            .arg(prefix.session_key_prefix(&tag))
            .arg(Generation::next_random().0.to_string())
            .arg(u64::try_from(GENERATION_TTL.as_millis()).unwrap_or(u64::MAX))
            .arg(prefix.token_key_prefix(&tag));
        let (values, legacy): (Vec<Vec<u8>>, i64) = self.script(invocation).await?;
        let mut revoked = usize::try_from(legacy).unwrap_or(0);
        for value in values {
            revoked += live_in(Some(&value))?;
        }
        Ok(revoked)
    }

    async fn list(&self, subject: &str) -> Result<Vec<TokenRecord>> {
        let prefix = self.inner.prefix.clone();
        let tag = SubjectTag::of(subject);
        let index = prefix.sessions(&tag);
        let session_prefix = prefix.session_key_prefix(&tag);
        // O(sessions), bounded by the cap.
        let found: Vec<(Vec<u8>, Option<Vec<u8>>)> = self
            .inner
            .with_shared(|mut connection| async move {
                let ids: Vec<Vec<u8>> = redis::cmd("ZRANGE")
                    .arg(&index)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut connection)
                    .await?;
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let keys: Vec<Vec<u8>> = ids
                    .iter()
                    .map(|id| [session_prefix.as_slice(), id].concat())
                    .collect();
                let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
                    .arg(&keys)
                    .query_async(&mut connection)
                    .await?;
                Ok(ids.into_iter().zip(values).collect())
            })
            .await?;
        let now = Timestamp::now();
        let mut records = Vec::new();
        for (id, value) in found {
            let (Ok(family), Some(bytes)) = (Uuid::from_slice(&id), value) else {
                continue;
            };
            let session = codec::decode_session(&bytes)?;
            if session.holder.subject == subject {
                records.extend(session.live_tokens(family, now));
            }
        }
        records.extend(self.list_v1(subject).await?);
        records.sort_by_key(|record| record.issued_at);
        Ok(records)
    }

    async fn generation(&self, subject: &str) -> Result<Generation> {
        let key = self.inner.prefix.generation(&SubjectTag::of(subject));
        let mut command = redis::cmd("GET");
        command.arg(&key);
        let value: Option<String> = self.inner.on_shared(command).await?;
        Ok(Generation(
            value.and_then(|text| text.parse().ok()).unwrap_or_default(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every operation's future is copied whole into its box on every call
    /// (`async_trait`), so what only a rare path awaits (connecting, the
    /// durable path's pooled connection: 3 and 11 KiB in a release build)
    /// is boxed where it is awaited. In this (test) build the futures below
    /// are 0.7 to 1 KiB; with the reconnect inline the issuing script's
    /// was 3.7 KiB, so the bound catches either coming back.
    #[test]
    fn operation_futures_stay_small() {
        const BOUND: usize = 3 * 1024;
        let store = RedisStore::new(RedisConfig::new("redis://127.0.0.1:1")).expect("a store");
        let token = Token::generate(TokenKind::Access, &SubjectTag::of("user-1")).expect("random");
        let sizes = [
            ("lookup", size_of_val(&store.inner.lookup(&token))),
            (
                "issuing script",
                size_of_val(&store.issuing_script::<Value>(scripts::ROTATE.prepare_invoke())),
            ),
            (
                "script",
                size_of_val(&store.script::<Value>(scripts::ROTATE.prepare_invoke())),
            ),
            (
                "shared command",
                size_of_val(&store.inner.on_shared::<Value>(redis::cmd("PING"))),
            ),
        ];
        for (operation, size) in sizes {
            assert!(size < BOUND, "the {operation} future is {size} bytes");
        }
    }
}
