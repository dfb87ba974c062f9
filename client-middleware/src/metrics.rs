//! Metrics through the [`metrics`](https://docs.rs/metrics) facade: the host
//! service installs the recorder it exposes (for example
//! `metrics-exporter-prometheus`, as `examples/protected_service.rs` does at
//! `/metrics`); without one, recording costs next to nothing.
//!
//! | series | type | labels |
//! |---|---|---|
//! | `token_client_requests_total` | counter | `outcome`: `authenticated`, `anonymous` (optional routes), `missing`, `invalid_request`, `invalid_token`, `insufficient_scope`, `unavailable` |
//! | `token_client_cache_lookups_total` | counter | `result`: `hit`, `miss`, `bypass` (cache inactive) |
//! | `token_client_cache_invalidations_total` | counter | — |
//! | `token_client_repository_duration_seconds` | histogram | `result`: `ok`, `error` |
//!
//! Labels take only these fixed values: never a token, subject or path.

use std::time::Duration;

use async_trait::async_trait;
use token_repository::{Result as RepositoryResult, Token, TokenReader, TokenRecord};

use crate::challenge::Refusal;

/// One request authenticated, or let through anonymously.
pub(crate) fn passed(authenticated: bool) {
    let outcome = if authenticated {
        "authenticated"
    } else {
        "anonymous"
    };
    metrics::counter!("token_client_requests_total", "outcome" => outcome).increment(1);
}

/// One request refused.
pub(crate) fn refused(refusal: &Refusal) {
    let outcome = match refusal {
        Refusal::Missing => "missing",
        Refusal::InvalidRequest(_) => "invalid_request",
        Refusal::InvalidToken(_) => "invalid_token",
        Refusal::InsufficientScope { .. } => "insufficient_scope",
        Refusal::Unavailable => "unavailable",
    };
    metrics::counter!("token_client_requests_total", "outcome" => outcome).increment(1);
}

/// One cache lookup: `hit`, `miss` or `bypass`.
pub(crate) fn cache(result: &'static str) {
    metrics::counter!("token_client_cache_lookups_total", "result" => result).increment(1);
}

/// Keys invalidated by Redis.
pub(crate) fn invalidated(count: u64) {
    metrics::counter!("token_client_cache_invalidations_total").increment(count);
}

fn repository(elapsed: Duration, ok: bool) {
    let result = if ok { "ok" } else { "error" };
    metrics::histogram!("token_client_repository_duration_seconds", "result" => result)
        .record(elapsed.as_secs_f64());
}

/// A reader that times every lookup it forwards.
#[derive(Debug)]
pub(crate) struct TimedReader<R: ?Sized>(pub(crate) std::sync::Arc<R>);

#[async_trait]
impl<R: TokenReader + ?Sized> TokenReader for TimedReader<R> {
    async fn lookup(&self, token: &Token) -> RepositoryResult<Option<TokenRecord>> {
        let started = std::time::Instant::now();
        let result = self.0.lookup(token).await;
        repository(started.elapsed(), result.is_ok());
        result
    }

    async fn ping(&self) -> RepositoryResult<()> {
        self.0.ping().await
    }
}
