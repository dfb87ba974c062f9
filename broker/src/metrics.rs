//! The broker's Prometheus series, through the `metrics` facade (the
//! authority installs the recorder and describes them):
//!
//! | series | type | labels |
//! |---|---|---|
//! | `authority_connect_callbacks_total` | counter | `provider` (configured names, `-`), `outcome` (`connected` or the failure reason) |
//! | `authority_connect_tokens_served_total` | counter | `provider`, `source` (`stored`, `refreshed`) |
//! | `authority_connect_refreshes_total` | counter | `provider`, `outcome` (`refreshed`, `rejected`, `failed`) |
//! | `authority_connect_refresh_duration_seconds` | histogram | `provider` |
//! | `authority_signin_callbacks_total` | counter | `provider` (configured names, `-`), `outcome` (`signed_in` or the failure reason) |
//!
//! Provider names come from the configuration, so they are a bounded set.

use std::time::Duration;

/// One connect callback for `provider` ended with `outcome`.
pub fn connect_callback(provider: &str, outcome: &'static str) {
    metrics::counter!("authority_connect_callbacks_total", "provider" => provider.to_owned(), "outcome" => outcome)
        .increment(1);
}

/// One provider access token handed out from `source`.
pub fn connect_token(provider: &str, source: &'static str) {
    metrics::counter!("authority_connect_tokens_served_total", "provider" => provider.to_owned(), "source" => source)
        .increment(1);
}

/// One refresh at `provider` ended with `outcome` after `elapsed`.
pub fn connect_refresh(provider: &str, outcome: &'static str, elapsed: Duration) {
    metrics::counter!("authority_connect_refreshes_total", "provider" => provider.to_owned(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!("authority_connect_refresh_duration_seconds", "provider" => provider.to_owned())
        .record(elapsed.as_secs_f64());
}

/// One sign-in callback for `provider` ended with `outcome`.
pub fn signin_callback(provider: &str, outcome: &'static str) {
    metrics::counter!("authority_signin_callbacks_total", "provider" => provider.to_owned(), "outcome" => outcome)
        .increment(1);
}
