//! axum extractors (feature `axum`): [`Principal`] and `Option<Principal>`.
//!
//! ```
//! use axum::{Router, routing::get};
//! use token_client::{Principal, TokenAuthLayer};
//! use token_repository::MemoryStore;
//!
//! async fn whoami(principal: Principal) -> String {
//!     principal.holder.username.clone()
//! }
//!
//! async fn greet(principal: Option<Principal>) -> String {
//!     let name = principal.map_or_else(|| "stranger".to_owned(), |p| p.holder.username.clone());
//!     format!("hello, {name}")
//! }
//!
//! let auth = TokenAuthLayer::new(MemoryStore::new());
//! let app: Router = Router::new()
//!     .route("/whoami", get(whoami))
//!     .route_layer(auth.clone())
//!     .route("/greet", get(greet).route_layer(auth.optional()));
//! # drop(app);
//! ```

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;

use crate::challenge::{Challenger, Refusal, is_grpc};
use crate::edge;
use crate::principal::Principal;

/// Taking `Principal` in a handler requires an authenticated request: behind
/// a required [`TokenAuthLayer`](crate::TokenAuthLayer) it is always there;
/// otherwise (no layer, or an optional one and an anonymous request) the
/// handler is not called and the client gets the 401 challenge
/// ([`MissingPrincipal`]).
impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = MissingPrincipal;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .ok_or_else(|| MissingPrincipal {
                challenger: crate::principal::challenger_of(&parts.extensions),
                grpc: is_grpc(&parts.headers),
            })
    }
}

/// `Option<Principal>`: the principal when the request is authenticated,
/// `None` when it is anonymous (use it behind an
/// [optional](crate::TokenAuthLayer::optional) layer).
impl<S: Send + Sync> OptionalFromRequestParts<S> for Principal {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().cloned())
    }
}

/// The rejection of the [`Principal`] extractor: answers 401 with the
/// `WWW-Authenticate: Bearer realm="…"` challenge of the request's layer.
#[derive(Debug)]
pub struct MissingPrincipal {
    challenger: Arc<Challenger>,
    grpc: bool,
}

impl IntoResponse for MissingPrincipal {
    fn into_response(self) -> Response {
        edge::refuse(&self.challenger, &Refusal::Missing, self.grpc)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use http::{Request, StatusCode};
    use http_body_util::BodyExt as _;
    use token_repository::{Grant, Holder, MemoryStore, Scopes, TokenWriter};
    use tower::ServiceExt as _;

    use super::*;
    use crate::TokenAuthLayer;

    async fn whoami(principal: Principal) -> String {
        principal.holder.username.clone()
    }

    async fn greet(principal: Option<Principal>) -> String {
        let name = principal.map_or_else(|| "stranger".to_owned(), |p| p.into_holder().username);
        format!("hello, {name}")
    }

    async fn get_text(app: &Router, path: &str, token: Option<&str>) -> (StatusCode, String) {
        let mut request = Request::get(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, String::from_utf8(body.to_vec()).expect("utf-8"))
    }

    /// Handlers get the principal behind the layer and `None` for anonymous
    /// requests behind an optional one; a required extractor without a
    /// principal answers the 401 challenge.
    #[tokio::test]
    async fn extractors_in_an_axum_router() {
        let store = MemoryStore::new();
        let minted = Grant {
            holder: Holder {
                subject: "user-1".into(),
                username: "alice".into(),
                name: None,
                email: None,
                scopes: Scopes::parse("read").expect("scopes"),
                client_id: None,
            },
            access_ttl: Duration::from_secs(60),
            refresh_ttl: None,
            audience: token_repository::Audience::unrestricted(),
        }
        .mint()
        .expect("mint");
        store.issue(&minted, None).await.expect("issue");
        let token = minted.access.token.expose_secret();

        let auth = TokenAuthLayer::new(store).with_realm("demo");
        let app = Router::new()
            .route("/whoami", get(whoami))
            .route_layer(auth.clone())
            .route("/greet", get(greet).route_layer(auth.optional()))
            .route("/unprotected", get(whoami));

        assert_eq!(
            get_text(&app, "/whoami", Some(token)).await,
            (StatusCode::OK, "alice".to_owned())
        );
        assert_eq!(
            get_text(&app, "/whoami", None).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            get_text(&app, "/greet", Some(token)).await,
            (StatusCode::OK, "hello, alice".to_owned())
        );
        assert_eq!(
            get_text(&app, "/greet", None).await,
            (StatusCode::OK, "hello, stranger".to_owned())
        );
        assert_eq!(
            get_text(&app, "/greet", Some("not-a-token")).await,
            (StatusCode::OK, "hello, stranger".to_owned())
        );
        let (status, body) = get_text(&app, "/unprotected", Some(token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "no layer, no principal");
        assert!(body.is_empty());
    }
}
