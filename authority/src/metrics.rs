//! Prometheus metrics, served at `GET /metrics`.
//!
//! Every label has a small, fixed set of values (grant types, RFC error
//! codes, revocation reasons): never a token, username, client id or path,
//! so the series count stays bounded whatever clients send.
//!
//! | series | type | labels |
//! |---|---|---|
//! | `authority_tokens_issued_total` | counter | `grant` |
//! | `authority_token_requests_refused_total` | counter | `grant`, `reason` (the RFC 6749 error code) |
//! | `authority_tokens_revoked_total` | counter | `reason` (`revocation_endpoint`, `session`, `sign_out_everywhere`, `account_change`, `refresh_reuse`, `code_reuse`, `browser_sign_out`) |
//! | `authority_logins_throttled_total` | counter | — |
//! | `authority_client_auth_throttled_total` | counter | — |
//! | `authority_login_duration_seconds` | histogram | `outcome` (`success`, `failure`) |
//! | `authority_redis_errors_total` | counter | — |
//! | `authority_redis_pool_connections` | gauge | `state` (`open`, `idle`, `waiting`) |
//! | `authority_http_requests_total` | counter | `status` (the status class: `2xx` … `5xx`) |
//! | `authority_http_connections` | gauge | — (open HTTP connections, both listeners) |
//! | `authority_connect_callbacks_total` | counter | `provider` (configured names, `-`), `outcome` (`connected` or the failure reason) |
//! | `authority_connect_tokens_served_total` | counter | `provider`, `source` (`stored`, `refreshed`) |
//! | `authority_connect_refreshes_total` | counter | `provider`, `outcome` (`refreshed`, `rejected`, `failed`) |
//! | `authority_connect_refresh_duration_seconds` | histogram | `provider` |
//! | `authority_connect_denied_total` | counter | `reason` (`not_a_client`, `unknown_client`, `permission`, `provider`, `address`) |
//! | `authority_connect_providers` | gauge | `source` (`file`, `api`, `removing`) |
//! | `authority_introspection_cache_lookups_total` | counter | `kind` (`client`, `user`, `resource`), `result` (`hit`, `miss`) |
//! | `authority_introspection_cache_clients` | gauge | — (verified clients held, at most `INTROSPECTION_CACHE_CLIENTS`) |
//! | `authority_introspection_cache_users` | gauge | — (users held for refresh rotations, at most `INTROSPECTION_CACHE_USERS`) |
//! | `authority_rotation_cache_lookups_total` | counter | `result` (`hit`: the refresh token's session was held after this process rotated it; `miss`: read from Redis) |
//! | `authority_rotation_cache_sessions` | gauge | — (sessions held after a rotation, at most `ROTATION_CACHE_SESSIONS`) |
//! | `authority_signin_callbacks_total` | counter | `provider`, `outcome` (`signed_in` or the failure reason) |
//!
//! Provider names come from the configuration file and the admin API (at
//! most 100 of those), so they are a bounded set too. The broker records the `authority_connect_*` series but the last
//! (`token_broker::metrics`); they are described here with the others.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::state::AppState;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

const LOGIN_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Installs the process-wide Prometheus recorder (once; later calls reuse
/// it). Answers `None` when another recorder was installed first.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("authority_login_duration_seconds".into()),
                    LOGIN_BUCKETS,
                )
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => {
                    describe();
                    Some(handle)
                }
                Err(error) => {
                    tracing::warn!(%error, "metrics recorder not installed");
                    None
                }
            }
        })
        .as_ref()
}

fn describe() {
    metrics::describe_counter!(
        "authority_sessions_evicted_total",
        "Sessions revoked because their subject issued past MAX_SESSIONS_PER_SUBJECT."
    );
    metrics::describe_counter!(
        "authority_tokens_issued_total",
        "Token responses issued, by grant type."
    );
    metrics::describe_counter!(
        "authority_token_requests_refused_total",
        "Token requests refused, by grant type and RFC 6749 error code."
    );
    metrics::describe_counter!(
        "authority_tokens_revoked_total",
        "Tokens revoked, by reason."
    );
    metrics::describe_counter!(
        "authority_logins_throttled_total",
        "Logins refused by failed-login throttling."
    );
    metrics::describe_counter!(
        "authority_client_auth_throttled_total",
        "Client authentications refused by failed-authentication throttling."
    );
    metrics::describe_histogram!(
        "authority_login_duration_seconds",
        metrics::Unit::Seconds,
        "Password grant duration, hashing included."
    );
    metrics::describe_counter!(
        "authority_introspection_cache_lookups_total",
        "Lookups of verified clients, users and resources in memory (INTROSPECTION_CACHE), by kind and result."
    );
    metrics::describe_gauge!(
        "authority_introspection_cache_clients",
        "Verified clients held in memory (INTROSPECTION_CACHE_CLIENTS bounds them)."
    );
    metrics::describe_gauge!(
        "authority_introspection_cache_users",
        "Users held in memory for refresh rotations (INTROSPECTION_CACHE_USERS bounds them)."
    );
    metrics::describe_counter!(
        "authority_rotation_cache_lookups_total",
        "Refresh rotations by whether the session was held after this process rotated it (hit) or read from Redis (miss)."
    );
    metrics::describe_gauge!(
        "authority_rotation_cache_sessions",
        "Sessions held after a rotation here (ROTATION_CACHE_SESSIONS bounds them)."
    );
    metrics::describe_counter!(
        "authority_redis_errors_total",
        "Requests failed because Redis was unavailable or erred."
    );
    metrics::describe_gauge!(
        "authority_redis_pool_connections",
        "Redis pool connections by state."
    );
    metrics::describe_counter!(
        "authority_http_requests_total",
        "HTTP responses by status class."
    );
    metrics::describe_gauge!(
        "authority_http_connections",
        "Open HTTP connections (MAX_CONNECTIONS bounds them per listener)."
    );
    metrics::describe_counter!(
        "authority_connect_callbacks_total",
        "Connected-services callbacks by provider and outcome."
    );
    metrics::describe_counter!(
        "authority_connect_tokens_served_total",
        "Provider access tokens handed out, from storage or after a refresh."
    );
    metrics::describe_counter!(
        "authority_connect_refreshes_total",
        "Refreshes at providers by outcome."
    );
    metrics::describe_histogram!(
        "authority_connect_refresh_duration_seconds",
        metrics::Unit::Seconds,
        "Duration of refresh calls to providers."
    );
    metrics::describe_gauge!(
        "authority_connect_providers",
        "Providers by where they come from (the file, the admin API, being removed)."
    );
    metrics::describe_counter!(
        "authority_connect_denied_total",
        "Service clients refused a user's provider token, by reason."
    );
    metrics::describe_counter!(
        "authority_signin_callbacks_total",
        "Sign-in callbacks from external identity providers by outcome."
    );
}

/// The Prometheus text exposition of every series.
#[must_use]
pub fn render(state: &AppState) -> String {
    let (open, idle, waiting) = state.store().pool_status();
    for (label, value) in [("open", open), ("idle", idle), ("waiting", waiting)] {
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!("authority_redis_pool_connections", "state" => label).set(value as f64);
    }
    // Counted in the state (no registry lookup per rotation), published here.
    let rotated = state.rotated().statistics();
    for (label, value) in [("hit", rotated.hits), ("miss", rotated.misses)] {
        metrics::counter!("authority_rotation_cache_lookups_total", "result" => label)
            .absolute(value);
    }
    #[allow(clippy::cast_precision_loss)]
    metrics::gauge!("authority_rotation_cache_sessions").set(rotated.held as f64);
    publish_counted();
    install().map_or_else(String::new, |handle| {
        handle.run_upkeep();
        handle.render()
    })
}

/// A bounded label for a `grant_type` value.
#[must_use]
pub fn grant_label(grant_type: Option<&str>) -> &'static str {
    match grant_type {
        Some("password") => "password",
        Some("client_credentials") => "client_credentials",
        Some("refresh_token") => "refresh_token",
        Some("authorization_code") => "authorization_code",
        Some(_) => "other",
        None => "none",
    }
}

/// One token response issued.
pub fn issued(grant: &'static str) {
    metrics::counter!("authority_tokens_issued_total", "grant" => grant).increment(1);
}

/// One token request refused with RFC 6749 error `reason`.
pub fn refused(grant: &'static str, reason: &'static str) {
    metrics::counter!("authority_token_requests_refused_total", "grant" => grant, "reason" => reason)
        .increment(1);
}

/// `count` tokens revoked for `reason`.
pub fn revoked(reason: &'static str, count: usize) {
    metrics::counter!("authority_tokens_revoked_total", "reason" => reason)
        .increment(u64::try_from(count).unwrap_or(u64::MAX));
}

/// `count` sessions revoked to keep a subject within its session cap.
pub fn sessions_evicted(count: usize) {
    metrics::counter!("authority_sessions_evicted_total")
        .increment(u64::try_from(count).unwrap_or(u64::MAX));
}

/// One login refused by throttling.
pub fn throttled() {
    metrics::counter!("authority_logins_throttled_total").increment(1);
}

/// One client authentication refused by throttling.
pub fn client_auth_throttled() {
    metrics::counter!("authority_client_auth_throttled_total").increment(1);
}

/// One password grant took `elapsed`.
pub fn login(elapsed: Duration, success: bool) {
    let outcome = if success { "success" } else { "failure" };
    metrics::histogram!("authority_login_duration_seconds", "outcome" => outcome)
        .record(elapsed.as_secs_f64());
}

/// One request failed on Redis.
pub fn redis_error() {
    metrics::counter!("authority_redis_errors_total").increment(1);
}

/// One HTTP response with `status`: counted in [`RESPONSES`], published at
/// each scrape.
pub fn response(status: http::StatusCode) {
    let class = usize::from(status.as_u16() / 100).clamp(1, STATUS_CLASSES.len()) - 1;
    RESPONSES[class].fetch_add(1, Ordering::Relaxed);
}

/// The `status` labels of `authority_http_requests_total`.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Responses by status class, in the order of [`STATUS_CLASSES`].
///
/// The two series recorded on the request path (this one, and
/// `authority_introspection_cache_lookups_total`, kept by
/// [`crate::tracked`]) are counted in plain atomics and handed to the
/// recorder when `/metrics` is scraped, as the rotation cache's are. A
/// `counter!` looks its series up in the recorder's registry (a lock, a
/// hash lookup, a key comparison and a reference count) every time: 1 % of
/// the server thread on `/healthz`, 2.4 % on introspection, where one
/// lookup's labels were also allocated (bench/README.md, "Counted, then
/// published"). Like the recorder, they are process-wide.
static RESPONSES: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

/// Hands the counts kept in atomics to the recorder. A series appears
/// once it has counted something, as it did when it was recorded
/// directly.
fn publish_counted() {
    for (label, count) in STATUS_CLASSES.iter().zip(&RESPONSES) {
        let count = count.load(Ordering::Relaxed);
        if count > 0 {
            metrics::counter!("authority_http_requests_total", "status" => *label).absolute(count);
        }
    }
    for (kind, [misses, hits]) in crate::tracked::lookups() {
        for (result, count) in [("miss", misses), ("hit", hits)] {
            if count > 0 {
                metrics::counter!(
                    "authority_introspection_cache_lookups_total",
                    "kind" => kind,
                    "result" => result
                )
                .absolute(count);
            }
        }
    }
}

/// An HTTP connection was accepted.
pub fn connection_opened() {
    metrics::gauge!("authority_http_connections").increment(1.0);
}

/// An HTTP connection was closed.
pub fn connection_closed() {
    metrics::gauge!("authority_http_connections").decrement(1.0);
}

/// One service client refused for `reason`.
pub fn connect_denied(reason: &'static str) {
    metrics::counter!("authority_connect_denied_total", "reason" => reason).increment(1);
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;

    /// nextest runs each test in a process of its own: the recorder and
    /// the counts are this test's alone.
    #[test]
    fn counts_kept_in_atomics_reach_the_exposition() {
        let handle = install().expect("the first recorder of this process");
        for status in [
            StatusCode::OK,
            StatusCode::NO_CONTENT,
            StatusCode::NOT_FOUND,
        ] {
            response(status);
        }
        response(StatusCode::SERVICE_UNAVAILABLE);
        crate::tracked::count_lookup(crate::tracked::LookupKind::Client, true);
        crate::tracked::count_lookup(crate::tracked::LookupKind::Client, true);
        crate::tracked::count_lookup(crate::tracked::LookupKind::Resource, false);
        let before = handle.render();
        assert!(
            !before.contains("authority_http_requests_total"),
            "{before}"
        );

        publish_counted();
        let text = handle.render();
        for line in [
            r#"authority_http_requests_total{status="2xx"} 2"#,
            r#"authority_http_requests_total{status="4xx"} 1"#,
            r#"authority_http_requests_total{status="5xx"} 1"#,
            r#"authority_introspection_cache_lookups_total{kind="client",result="hit"} 2"#,
            r#"authority_introspection_cache_lookups_total{kind="resource",result="miss"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        // Nothing counted, nothing shown.
        assert!(!text.contains(r#"status="1xx""#), "{text}");
        assert!(!text.contains(r#"kind="user""#), "{text}");

        // A later scrape shows the counts since, not twice the old ones.
        response(StatusCode::OK);
        publish_counted();
        let text = handle.render();
        assert!(
            text.contains(r#"authority_http_requests_total{status="2xx"} 3"#),
            "{text}"
        );
    }
}
