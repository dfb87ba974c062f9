//! `GET /healthz` (the process is up) and `GET /readyz` (Redis answers).

use http::StatusCode;
use token_repository::TokenReader as _;
use warp::reply::Response;

use crate::problem::{Problem, json};
use crate::state::AppState;

/// Liveness: answers as long as the process serves HTTP.
#[must_use]
pub fn healthz() -> Response {
    json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
}

/// Readiness: 200 when the repository answers, 503 otherwise.
pub async fn readyz(state: AppState) -> Response {
    match state.store().ping().await {
        Ok(()) => json(StatusCode::OK, &serde_json::json!({ "status": "ready" })),
        Err(error) => Problem::from_store(&error).into_response(),
    }
}
