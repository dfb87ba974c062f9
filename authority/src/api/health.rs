//! `GET /healthz` (the process is up) and `GET /readyz` (Redis answers and
//! will not evict keys).

use http::StatusCode;
use token_repository::TokenReader as _;
use warp::reply::Response;

use crate::eviction::{self, EvictionError};
use crate::problem::{Problem, json, json_bytes};
use crate::state::AppState;

/// Liveness: answers as long as the process serves HTTP.
#[must_use]
pub fn healthz() -> Response {
    json_bytes(
        StatusCode::OK,
        bytes::Bytes::from_static(br#"{"status":"ok"}"#),
    )
}

/// Readiness: 200 when the repository answers and its `maxmemory-policy`
/// is `noeviction` (or `ALLOW_REDIS_EVICTION` is set), 503 otherwise.
pub async fn readyz(state: AppState) -> Response {
    let ready = || json(StatusCode::OK, &serde_json::json!({ "status": "ready" }));
    if state.config().allow_redis_eviction {
        return match state.store().ping().await {
            Ok(()) => ready(),
            Err(error) => Problem::from(error).into_response(),
        };
    }
    match eviction::check(state.store()).await {
        Ok(()) => ready(),
        Err(EvictionError::Unreachable(error)) => Problem::from(error).into_response(),
        Err(error) => {
            tracing::warn!(%error, "not ready");
            Problem::unavailable_because(
                "Redis may evict keys or its maxmemory-policy cannot be read",
            )
            .into_response()
        }
    }
}
