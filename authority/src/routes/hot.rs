//! [`HotRoutes`]: the hottest route answered before the warp filter tree.
//!
//! `GET /healthz` is probed by every load balancer and orchestrator, often
//! many times a second; walking the filter tree to its route (the tree
//! tries the routes in order) cost more than the answer. It is answered
//! here with the very response the tree's route gives
//! ([`health::healthz`]); every other request, `/healthz` with another
//! method included (405 from the tree), goes to the tree. It sits inside
//! the same tower stack, so request ids, the span, the access log line,
//! metrics, panic catching and the security headers apply unchanged.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use futures_util::future::Either;
use http::{Method, Request};
use tower::Service;
use warp::reply::Response;

use crate::api::health;

/// Answers `GET /healthz` itself (when `enabled`: the API listener, not the
/// metrics one) and hands every other request to `inner`.
#[derive(Debug, Clone)]
pub struct HotRoutes<S> {
    inner: S,
    enabled: bool,
}

impl<S> HotRoutes<S> {
    /// `inner` behind the hot routes, which answer only when `enabled`.
    pub fn new(inner: S, enabled: bool) -> Self {
        Self { inner, enabled }
    }
}

impl<S, B> Service<Request<B>> for HotRoutes<S>
where
    S: Service<Request<B>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if self.enabled && request.method() == Method::GET && request.uri().path() == "/healthz" {
            return Either::Left(ready(Ok(health::healthz())));
        }
        Either::Right(self.inner.call(request))
    }
}
