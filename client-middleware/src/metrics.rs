//! Metrics through the [`metrics`](https://docs.rs/metrics) facade: the host
//! service installs the recorder it exposes (for example
//! `metrics-exporter-prometheus`, as `examples/protected_service.rs` does at
//! `/metrics`); without one, recording costs next to nothing.
//!
//! | series | type | labels |
//! |---|---|---|
//! | `token_client_requests_total` | counter | `outcome`: `authenticated`, `anonymous` (optional routes), `missing`, `invalid_request`, `invalid_token`, `wrong_audience` (a live token for another service), `insufficient_scope`, `unavailable` |
//! | `token_client_cache_lookups_total` | counter | `result`: `hit`, `miss`, `bypass` (cache inactive) |
//! | `token_client_cache_invalidations_total` | counter | — |
//! | `token_client_repository_duration_seconds` | histogram | `result`: `ok`, `error` |
//!
//! Labels take only these fixed values: never a token, subject or path.
//! Request outcomes are recorded once, where a request is let through or
//! refused (`edge`).

use std::time::Duration;

/// One request authenticated, or let through anonymously. (Literal labels:
/// a static key, no allocation per request.)
pub(crate) fn passed(authenticated: bool) {
    if authenticated {
        metrics::counter!("token_client_requests_total", "outcome" => "authenticated").increment(1);
    } else {
        metrics::counter!("token_client_requests_total", "outcome" => "anonymous").increment(1);
    }
}

/// One request refused, with the refusal's `outcome` label.
pub(crate) fn refused(outcome: &'static str) {
    metrics::counter!("token_client_requests_total", "outcome" => outcome).increment(1);
}

/// One cache lookup answered from the cache.
pub(crate) fn cache_hit() {
    metrics::counter!("token_client_cache_lookups_total", "result" => "hit").increment(1);
}

/// One cache lookup that went to the repository.
pub(crate) fn cache_miss() {
    metrics::counter!("token_client_cache_lookups_total", "result" => "miss").increment(1);
}

/// One lookup that bypassed the inactive cache.
pub(crate) fn cache_bypass() {
    metrics::counter!("token_client_cache_lookups_total", "result" => "bypass").increment(1);
}

/// Keys invalidated by Redis.
pub(crate) fn invalidated(count: u64) {
    metrics::counter!("token_client_cache_invalidations_total").increment(count);
}

/// One repository lookup, and whether it succeeded.
pub(crate) fn repository(elapsed: Duration, ok: bool) {
    let result = if ok { "ok" } else { "error" };
    metrics::histogram!("token_client_repository_duration_seconds", "result" => result)
        .record(elapsed.as_secs_f64());
}
