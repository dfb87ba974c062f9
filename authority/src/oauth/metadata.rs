//! `GET /.well-known/oauth-authorization-server` (RFC 8414).

use http::StatusCode;
use warp::reply::Response;

use crate::problem::json;
use crate::state::AppState;

/// The server's metadata document.
pub fn handle(state: &AppState) -> Response {
    let issuer = state.issuer();
    let auth_methods = ["client_secret_basic", "client_secret_post"];
    json(
        StatusCode::OK,
        &serde_json::json!({
            "issuer": issuer,
            "token_endpoint": format!("{issuer}/oauth/token"),
            "revocation_endpoint": format!("{issuer}/oauth/revoke"),
            "introspection_endpoint": format!("{issuer}/oauth/introspect"),
            "grant_types_supported": ["password", "client_credentials", "refresh_token"],
            "response_types_supported": [],
            "token_endpoint_auth_methods_supported": auth_methods,
            "revocation_endpoint_auth_methods_supported": auth_methods,
            "introspection_endpoint_auth_methods_supported": auth_methods,
            "service_documentation": format!("{issuer}/openapi.yaml"),
        }),
    )
}
