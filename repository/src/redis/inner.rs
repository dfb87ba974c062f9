//! [`Inner`]: the connection machinery the store and the reader share —
//! the pool, the shared multiplexed connection, their timeouts — and the
//! lookups both answer.

use std::future::Future;
use std::time::Duration;

use redis::AsyncConnectionConfig;
use uuid::Uuid;

use super::config::{Durability, RedisConfig};
use super::connector::{Connector, SharedConn};
use super::pool::{Pool, PooledConnection};
use super::shared::SharedConnection;
use crate::codec::{self, SessionRecord};
use crate::error::{Error, Result};
use crate::keys::KeyPrefix;
use crate::record::{Timestamp, TokenRecord};
use crate::token::{SubjectTag, Token};

/// The shared connection machinery of the store and the reader.
pub(super) struct Inner {
    pub(super) pool: Pool,
    /// Lookups, pings and the store's scripts: one multiplexed connection,
    /// no pool check.
    shared: SharedConnection,
    pub(super) prefix: KeyPrefix,
    timeout: Duration,
    pub(super) durability: Option<Durability>,
    pub(super) max_sessions: usize,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (open, idle, waiting) = self.pool.status();
        f.debug_struct("Inner")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("durability", &self.durability)
            .field("pool_open", &open)
            .field("pool_idle", &idle)
            .field("pool_waiting", &waiting)
            .finish()
    }
}

impl Inner {
    pub(super) fn new(config: &RedisConfig) -> Result<Self> {
        let timeout = config.timeout;
        let connection = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let shared = SharedConnection::new(
            Connector::new(&config.topology, config.tls.as_ref(), timeout)?,
            connection,
        );
        Ok(Self {
            // A pooled connection may carry a WAIT: its replies may take the
            // WAIT timeout on top of the operation timeout.
            pool: Pool::new(
                &config.topology,
                config.tls.as_ref(),
                config.pool_size,
                timeout,
                timeout
                    + config
                        .durability
                        .map_or(Duration::ZERO, |durability| durability.timeout),
            )?,
            shared,
            prefix: config.prefix.clone(),
            timeout,
            durability: config.durability,
            max_sessions: config.max_sessions,
        })
    }

    /// Runs `operation` with a pooled connection, bounded by the timeout
    /// (and, with durability on, its `WAIT` timeout). A connection whose
    /// operation failed at the connection level, or pointed at a replica,
    /// is discarded rather than returned to the pool.
    pub(super) async fn with_connection<T, F, Fut>(&self, operation: F) -> Result<T>
    where
        F: FnOnce(PooledConnection) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let bound = self.timeout
            + self
                .durability
                .map_or(Duration::ZERO, |durability| durability.timeout);
        let attempt = async {
            let connection = self.pool.get().await?;
            operation(connection).await
        };
        tokio::time::timeout(bound, attempt)
            .await
            .map_err(|_| Error::Timeout(bound))?
    }

    /// Runs one command on the shared connection, bounded by the timeout;
    /// a connection that fails or does not answer in time is replaced.
    pub(super) async fn on_shared<T: redis::FromRedisValue>(
        &self,
        command: redis::Cmd,
    ) -> Result<T> {
        self.with_shared(|mut connection| async move { command.query_async(&mut connection).await })
            .await
    }

    /// Runs `operation` on the shared connection, bounded by the timeout; a
    /// connection on which it fails at the connection level, or that does
    /// not answer in time, is replaced.
    pub(super) async fn with_shared<T, F, Fut>(&self, operation: F) -> Result<T>
    where
        F: FnOnce(SharedConn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let mut generation = None;
        let attempt = async {
            let lent = self.shared.get().await?;
            generation = Some(lent.generation());
            let result = operation(lent.connection.clone()).await;
            if let Err(error) = &result {
                self.shared.failed(&lent, error);
            }
            Ok(result?)
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => {
                if let Some(generation) = generation {
                    self.shared.discard(generation);
                }
                Err(Error::Timeout(self.timeout))
            }
        }
    }

    /// One `GET`: of the token's session (format 4, 3 or 2) or of its own record
    /// (format 1).
    pub(super) async fn lookup(&self, token: &Token) -> Result<Option<TokenRecord>> {
        let Some(family) = token.family() else {
            return self.lookup_v1(token).await;
        };
        Ok(self
            .session(token.tag(), family)
            .await?
            .and_then(|session| {
                session.token(token.kind(), token.digest(), family, Timestamp::now())
            }))
    }

    /// The session `family` of the subject tagged `tag`, if it is there
    /// and belongs to that subject. One `GET`.
    pub(super) async fn session(
        &self,
        tag: &SubjectTag,
        family: Uuid,
    ) -> Result<Option<SessionRecord>> {
        let mut command = redis::cmd("GET");
        command.arg(self.prefix.session(tag, family));
        let value: Option<Vec<u8>> = self.on_shared(command).await?;
        let Some(bytes) = value else {
            return Ok(None);
        };
        let session = codec::decode_session(&bytes)?;
        Ok((&SubjectTag::of(&session.holder.subject) == tag).then_some(session))
    }

    pub(super) async fn lookup_v1(&self, token: &Token) -> Result<Option<TokenRecord>> {
        let key = self.prefix.token(token.tag(), token.digest());
        let mut command = redis::cmd("GET");
        command.arg(&key);
        let value: Option<Vec<u8>> = self.on_shared(command).await?;
        value
            .map(|bytes| decode_for(token, &bytes))
            .transpose()
            .map(Option::flatten)
    }

    pub(super) async fn ping(&self) -> Result<()> {
        let _: String = self.on_shared(redis::cmd("PING")).await?;
        Ok(())
    }
}

/// Decodes the format-1 record stored for `token` and checks it belongs to it: the
/// kind matches, the subject matches the token's tag, and it has not expired
/// by this host's clock either.
fn decode_for(token: &Token, bytes: &[u8]) -> Result<Option<TokenRecord>> {
    let record = codec::decode(bytes, token.digest())?;
    let belongs = record.kind == token.kind()
        && &SubjectTag::of(&record.holder.subject) == token.tag()
        && record.is_live_at(Timestamp::now());
    Ok(belongs.then_some(record))
}
