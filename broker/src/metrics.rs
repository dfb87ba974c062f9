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
//! | `authority_connect_providers` | gauge | `source` (`file`, `api`, `removing`) |
//!
//! Provider names come from the configuration file and the admin API (at
//! most [`crate::catalog::MAX_API_PROVIDERS`]), so they are a bounded set.

use std::time::Duration;

use crate::registry::{Origin, Registry};

/// How many providers `registry` has, by where they come from.
pub fn providers(registry: &Registry) {
    let names = registry
        .all()
        .map(|provider| provider.config.name.as_str())
        .chain(
            registry
                .credentials()
                .map(|provider| provider.name.as_str()),
        );
    let (mut file, mut api) = (0_u32, 0_u32);
    for name in names {
        match registry.origin(name) {
            Some(Origin::Api) => api += 1,
            _ => file += 1,
        }
    }
    metrics::gauge!("authority_connect_providers", "source" => "file").set(f64::from(file));
    metrics::gauge!("authority_connect_providers", "source" => "api").set(f64::from(api));
    let removing = u32::try_from(registry.removing().len()).unwrap_or(u32::MAX);
    metrics::gauge!("authority_connect_providers", "source" => "removing").set(f64::from(removing));
}

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
