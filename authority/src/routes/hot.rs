//! [`HotRoutes`]: the hottest routes answered before the warp filter tree.
//!
//! `GET /healthz` is probed by every load balancer and orchestrator, often
//! many times a second, and `POST /oauth/introspect` and `POST /oauth/token`
//! carry every gateway's introspection and every refresh. Walking the
//! filter tree to them (the tree tries its routes in order, each `or` a
//! level of futures polled on every poll) and cloning the request's
//! headers for the handler cost more than some of the answers. They are
//! answered here by the very handlers the tree's routes call
//! ([`health::healthz`], [`introspect::handle`], [`token::handle`]), with
//! the body read by the same [`extract::collect`] under the same limit;
//! every other request — another method, another spelling of the path
//! (a trailing slash) — goes to the tree, which answers it as before.
//! It sits inside the same tower stack, so request ids, the span, the
//! access log line, metrics, panic catching, the request timeout and the
//! security headers apply unchanged.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::future::Either;
use http::{Method, Request};
use http_body_util::BodyDataStream;
use hyper::body::Body;
use tower::Service;
use warp::reply::Response;

use super::extract;
use crate::address::PeerAddr;
use crate::api::health;
use crate::oauth::{introspect, token};
use crate::state::AppState;

/// What [`HotRoutes`] answers itself.
#[derive(Clone, Default)]
pub struct Hot {
    healthz: bool,
    forms: Option<AppState>,
}

impl Hot {
    /// Nothing: every request goes to the tree (the metrics listener).
    #[must_use]
    pub fn none() -> Self {
        Self::default()
    }

    /// `GET /healthz` only.
    #[must_use]
    pub fn healthz() -> Self {
        Self {
            healthz: true,
            forms: None,
        }
    }

    /// The API listener: `GET /healthz`, and the token and introspection
    /// endpoints' `POST`s with `state`.
    #[must_use]
    pub fn api(state: AppState) -> Self {
        Self {
            healthz: true,
            forms: Some(state),
        }
    }
}

impl std::fmt::Debug for Hot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hot")
            .field("healthz", &self.healthz)
            .field("forms", &self.forms.is_some())
            .finish()
    }
}

/// The OAuth endpoints answered here.
#[derive(Debug, Clone, Copy)]
enum Form {
    Token,
    Introspect,
}

impl Form {
    fn of<B>(request: &Request<B>) -> Option<Self> {
        if request.method() != Method::POST {
            return None;
        }
        match request.uri().path() {
            "/oauth/token" => Some(Self::Token),
            "/oauth/introspect" => Some(Self::Introspect),
            _ => None,
        }
    }
}

/// A hot form's answer, boxed like the tree's routes.
type FormFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// Answers the [`Hot`] routes itself and hands every other request to
/// `inner`.
#[derive(Debug, Clone)]
pub struct HotRoutes<S> {
    inner: S,
    hot: Hot,
}

impl<S> HotRoutes<S> {
    /// `inner` behind the `hot` routes.
    pub fn new(inner: S, hot: Hot) -> Self {
        Self { inner, hot }
    }
}

impl<S, B> Service<Request<B>> for HotRoutes<S>
where
    S: Service<Request<B>, Response = Response, Error = Infallible>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Send,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, Either<FormFuture, S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if self.hot.healthz && request.method() == Method::GET && request.uri().path() == "/healthz"
        {
            return Either::Left(ready(Ok(health::healthz())));
        }
        if let Some(state) = &self.hot.forms
            && let Some(form) = Form::of(&request)
        {
            // Boxed as it is: a wrapping `async` block would copy the
            // answer's future into itself once more.
            return Either::Right(Either::Left(Box::pin(answer(state.clone(), form, request))));
        }
        Either::Right(Either::Right(self.inner.call(request)))
    }
}

/// What the tree's `form_post` route does for `form`, without the tree.
///
/// The handler's future (about 1 KiB) is boxed where it is created: held
/// in this future's state instead, it was copied three times on the way
/// in, and this future (boxed itself) was as large as it.
async fn answer<B>(state: AppState, form: Form, request: Request<B>) -> Result<Response, Infallible>
where
    B: Body + Send + 'static,
    B::Data: Send,
{
    let (parts, body) = request.into_parts();
    let limit = state.config().max_body_bytes;
    let body = extract::collect(BodyDataStream::new(body), limit).await;
    let peer = parts
        .extensions
        .get::<PeerAddr>()
        .map(|PeerAddr(addr)| *addr);
    let handler: Pin<Box<dyn Future<Output = Response> + Send>> = match form {
        Form::Token => Box::pin(extract::answer_form(
            state,
            parts.headers,
            peer,
            body,
            token::handle,
        )),
        Form::Introspect => Box::pin(extract::answer_form(
            state,
            parts.headers,
            peer,
            body,
            introspect::handle,
        )),
    };
    Ok(handler.await)
}
