//! [`RedisTokenReader`]: token lookups on Redis, and nothing else.

use std::sync::Arc;

use async_trait::async_trait;

use super::config::RedisConfig;
use super::inner::Inner;
use crate::error::Result;
use crate::record::TokenRecord;
use crate::store::TokenReader;
use crate::token::Token;

/// Token lookups on Redis, and nothing else: what a token client holds.
///
/// There is no way to write through it. Give it a Redis user that can only
/// read token keys (see the README's ACL section) so Redis enforces the same.
///
/// ```no_run
/// use token_repository::{RedisConfig, RedisTokenReader, TokenReader};
///
/// # async fn example() -> token_repository::Result<()> {
/// let reader = RedisTokenReader::new(RedisConfig::new(
///     "redis://token-client:secret@127.0.0.1:6379/",
/// ))?;
/// reader.ping().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RedisTokenReader {
    inner: Arc<Inner>,
}

impl RedisTokenReader {
    /// A reader for `config`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`](crate::Error::Config) for an unparseable URL.
    pub fn new(config: RedisConfig) -> Result<Self> {
        Ok(Self {
            inner: Arc::new(Inner::new(&config)?),
        })
    }
}

#[async_trait]
impl TokenReader for RedisTokenReader {
    async fn lookup(&self, token: &Token) -> Result<Option<TokenRecord>> {
        self.inner.lookup(token).await
    }

    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
}
