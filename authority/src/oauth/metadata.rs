//! `GET /.well-known/oauth-authorization-server` (RFC 8414).

use http::StatusCode;
use warp::reply::Response;

use crate::problem::json;
use crate::state::AppState;

/// The server's metadata document.
pub fn handle(state: &AppState) -> Response {
    let issuer = state.issuer();
    let auth_methods = ["client_secret_basic", "client_secret_post"];
    let token_auth_methods = ["client_secret_basic", "client_secret_post", "none"];
    let grant_types: &[&str] = if state.config().password_grant {
        &[
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "password",
        ]
    } else {
        &["authorization_code", "refresh_token", "client_credentials"]
    };
    json(
        StatusCode::OK,
        &serde_json::json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/oauth/authorize"),
            "token_endpoint": format!("{issuer}/oauth/token"),
            "revocation_endpoint": format!("{issuer}/oauth/revoke"),
            "introspection_endpoint": format!("{issuer}/oauth/introspect"),
            "grant_types_supported": grant_types,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": true,
            "token_endpoint_auth_methods_supported": token_auth_methods,
            "revocation_endpoint_auth_methods_supported": auth_methods,
            "introspection_endpoint_auth_methods_supported": auth_methods,
            "service_documentation": format!("{issuer}/openapi.yaml"),
        }),
    )
}
