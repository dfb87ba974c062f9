//! The lookup chain of [`TokenAuth`](crate::TokenAuth): where a token's
//! record comes from. The layer composes it once — the reader,
//! [`Measured`], behind a [`CachingReader`](crate::CachingReader) when a
//! cache is configured — and bounds every lookup by its timeout; the hot
//! path has no branch on whether there is a cache.
//!
//! A [`Lookup`] answers at once when it can ([`Answer::Ready`]: a cache
//! hit costs no allocation and no await), and otherwise with the future of
//! the reader it asks.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use token_repository::{Result, Timestamp, Token, TokenReader, TokenRecord};

/// What a lookup answers: the record of a live token, `None`, or the
/// repository's failure.
pub(crate) type Reply = Result<Option<TokenRecord>>;

/// One step of the chain.
pub(crate) trait Lookup: Send + Sync + fmt::Debug {
    /// The record of `token`.
    fn lookup<'a>(&'a self, token: &'a Token) -> Answer<'a>;

    /// The record of the live access token whose text is `text`, when it
    /// is at hand without parsing the text (a cache entry filled for
    /// exactly this text); `None` sends the caller down the full path
    /// (parse, then [`lookup`](Self::lookup)).
    fn recall(&self, _text: &str, _now: Timestamp) -> Option<TokenRecord> {
        None
    }
}

/// The future of a [`Lookup`].
// A record (its audience inline) is held by value: boxing it would cost the
// cache-hit path an allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Answer<'a> {
    /// Answered without I/O (taken on the first poll).
    Ready(Option<Reply>),
    /// A reader's lookup under way.
    Pending(Pin<Box<dyn Future<Output = Reply> + Send + 'a>>),
}

impl Future for Answer<'_> {
    type Output = Reply;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reply> {
        match self.get_mut() {
            Self::Ready(reply) => match reply.take() {
                Some(reply) => Poll::Ready(reply),
                None => panic!("lookup answer polled after completion"),
            },
            Self::Pending(future) => future.as_mut().poll(cx),
        }
    }
}

/// A reader that times every lookup it forwards (the repository latency
/// histogram of [`metrics`](crate::metrics)). Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Measured(pub(crate) Arc<dyn TokenReader>);

#[async_trait]
impl TokenReader for Measured {
    async fn lookup(&self, token: &Token) -> Result<Option<TokenRecord>> {
        let started = std::time::Instant::now();
        let result = self.0.lookup(token).await;
        crate::metrics::repository(started.elapsed(), result.is_ok());
        result
    }

    async fn ping(&self) -> Result<()> {
        self.0.ping().await
    }
}

impl Lookup for Measured {
    fn lookup<'a>(&'a self, token: &'a Token) -> Answer<'a> {
        Answer::Pending(TokenReader::lookup(self, token))
    }
}
