//! [`RequireScopeLayer`] and [`RequireScope`]: a scope guard behind
//! [`TokenAuth`](crate::TokenAuth).
//!
//! ```
//! use token_client::{RequireScopeLayer, TokenAuthLayer};
//! use token_repository::MemoryStore;
//!
//! let service = tower::ServiceBuilder::new()
//!     .layer(TokenAuthLayer::new(MemoryStore::new()))
//!     // Inside the authentication: the principal is known by now.
//!     .layer(RequireScopeLayer::any_of(["admin", "ops"]))
//!     .service_fn(|_request: http::Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
//!     });
//! # drop(service);
//! ```

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use token_repository::Scopes;
use tower::{Layer, Service};

use crate::challenge::{Refusal, is_grpc};
use crate::edge;
use crate::future::ResponseFuture;
use crate::principal::Principal;

/// Which scopes a route requires.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    scopes: Scopes,
    all: bool,
}

impl Requirement {
    fn new<I, T>(scopes: I, all: bool) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let scopes = match Scopes::from_tokens(scopes) {
            Ok(scopes) => scopes,
            Err(error) => panic!("invalid required scope: {error}"),
        };
        Self { scopes, all }
    }

    fn is_met_by(&self, principal: &Principal) -> bool {
        let mut required = self.scopes.iter();
        if self.all {
            required.all(|scope| principal.has_scope(scope))
        } else {
            required.any(|scope| principal.has_scope(scope))
        }
    }

    fn refusal(&self, principal: &Principal) -> Refusal {
        Refusal::InsufficientScope {
            scope: self.scopes.clone(),
            description: if self.all {
                "the access token lacks a required scope"
            } else {
                "the access token has none of the accepted scopes"
            },
            token_id: principal.token_id,
        }
    }
}

/// Refuses requests whose [`Principal`] lacks the required scopes: 403 with
/// `WWW-Authenticate: Bearer error="insufficient_scope", scope="…"` (RFC 6750
/// §3.1), or gRPC `PERMISSION_DENIED`. A request without a principal (no
/// [`TokenAuth`](crate::TokenAuth) in front, or an anonymous request let
/// through by an [optional](crate::TokenAuthLayer::optional) one) gets the
/// 401 challenge.
#[derive(Debug, Clone)]
pub struct RequireScopeLayer {
    requirement: Arc<Requirement>,
}

impl RequireScopeLayer {
    /// Requires at least one of `scopes` (an empty list is never met).
    ///
    /// # Panics
    ///
    /// When a scope is not an RFC 6749 scope token.
    #[must_use]
    pub fn any_of<I, T>(scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Self {
            requirement: Arc::new(Requirement::new(scopes, false)),
        }
    }

    /// Requires every one of `scopes`.
    ///
    /// # Panics
    ///
    /// When a scope is not an RFC 6749 scope token.
    #[must_use]
    pub fn all_of<I, T>(scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Self {
            requirement: Arc::new(Requirement::new(scopes, true)),
        }
    }
}

impl<S> Layer<S> for RequireScopeLayer {
    type Service = RequireScope<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireScope {
            inner,
            requirement: Arc::clone(&self.requirement),
        }
    }
}

/// The service made by [`RequireScopeLayer`].
#[derive(Debug, Clone)]
pub struct RequireScope<S> {
    inner: S,
    requirement: Arc<Requirement>,
}

impl<S> RequireScope<S> {
    /// Wraps `inner`, requiring at least one of `scopes`.
    ///
    /// # Panics
    ///
    /// When a scope is not an RFC 6749 scope token.
    #[must_use]
    pub fn any_of<I, T>(inner: S, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        RequireScopeLayer::any_of(scopes).layer(inner)
    }

    /// Wraps `inner`, requiring every one of `scopes`.
    ///
    /// # Panics
    ///
    /// When a scope is not an RFC 6749 scope token.
    #[must_use]
    pub fn all_of<I, T>(inner: S, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        RequireScopeLayer::all_of(scopes).layer(inner)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireScope<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let refusal = match request.extensions().get::<Principal>() {
            Some(principal) if self.requirement.is_met_by(principal) => None,
            Some(principal) => Some(self.requirement.refusal(principal)),
            None => Some(Refusal::Missing),
        };
        match refusal {
            None => ResponseFuture::inner(self.inner.call(request)),
            Some(refusal) => {
                let challenger = crate::principal::challenger_of(request.extensions());
                let response = edge::refuse(&challenger, &refusal, is_grpc(request.headers()));
                ResponseFuture::ready(response)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::time::Duration;

    use http::StatusCode;
    use token_repository::Timestamp;
    use tower::{ServiceBuilder, ServiceExt as _};

    use super::*;

    fn principal(scopes: &str) -> Principal {
        Principal {
            holder: Arc::new(token_repository::Holder {
                subject: "s".into(),
                username: "u".into(),
                name: None,
                email: None,
                scopes: Scopes::parse(scopes).expect("scopes"),
                client_id: None,
            }),
            token_id: uuid::Uuid::nil(),
            expires_at: Timestamp::now().saturating_add(Duration::from_secs(60)),
            audience: token_repository::Audience::unrestricted(),
            challenger: None,
        }
    }

    async fn status(layer: RequireScopeLayer, principal: Option<Principal>) -> Response<String> {
        let service = ServiceBuilder::new()
            .layer(layer)
            .service_fn(|_: Request<()>| async {
                Ok::<_, Infallible>(Response::new("handled".to_owned()))
            });
        let mut request = Request::new(());
        if let Some(principal) = principal {
            request.extensions_mut().insert(principal);
        }
        service.oneshot(request).await.expect("infallible")
    }

    /// Any-of passes with one matching scope; all-of needs every scope.
    #[tokio::test]
    async fn any_of_and_all_of() {
        let any = RequireScopeLayer::any_of(["admin", "ops"]);
        let all = RequireScopeLayer::all_of(["read", "write"]);
        assert_eq!(
            status(any.clone(), Some(principal("read ops")))
                .await
                .status(),
            StatusCode::OK
        );
        assert_eq!(
            status(any, Some(principal("read write"))).await.status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            status(all.clone(), Some(principal("write read admin")))
                .await
                .status(),
            StatusCode::OK
        );
        let refused = status(all, Some(principal("read"))).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert!(refused.body().is_empty(), "the handler must not run");
        let challenge = refused.headers()["www-authenticate"]
            .to_str()
            .expect("ascii");
        assert!(
            challenge.contains("error=\"insufficient_scope\""),
            "{challenge}"
        );
        assert!(challenge.contains("scope=\"read write\""), "{challenge}");
    }

    /// Without a principal the guard answers the 401 challenge, never the
    /// handler.
    #[tokio::test]
    async fn no_principal_is_unauthenticated() {
        let response = status(RequireScopeLayer::all_of(["read"]), None).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer realm=\"api\""
        );
    }

    /// Required scopes are validated when the guard is built.
    #[test]
    #[should_panic(expected = "invalid required scope")]
    fn invalid_scope_panics() {
        let _ = RequireScopeLayer::any_of(["has space"]);
    }
}
