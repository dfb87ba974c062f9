//! [`Envelope`]: what every HTTP request to the authority gets, in one
//! service.
//!
//! - A request id: the caller's `X-Request-Id`, or a fresh (version 4)
//!   UUID, echoed in the response and recorded on the request's span, so
//!   one id follows a request through the logs of the authority and the
//!   services it calls.
//! - The span `request{method path request_id}` around the handler, and,
//!   once the response is ready, one `authority_http_requests_total` count
//!   and one access-log line (`request status=… elapsed_ms=…`) in it.
//! - The request timeout: past `HTTP_REQUEST_TIMEOUT_MS`, 408
//!   `invalid_request` when the request's body had not fully arrived (the
//!   client is slow), otherwise 503 `temporarily_unavailable` (the server
//!   is). The handler is dropped, so its work stops at its next await.
//! - Panic catching: a panicking handler answers a generic 500 instead of
//!   dropping the connection.
//! - `X-Content-Type-Options: nosniff` on every response, and
//!   `Strict-Transport-Security` when the issuer is an `https://` URL.
//!
//! These were six layers — tower-http's `SetRequestId`,
//! `PropagateRequestId`, `Trace` and `CatchPanic`, a timeout and a
//! `map_response` — each wrapping the future of the one inside, two of them
//! wrapping the response body again (one in a box), and the id passed
//! between them in the request's extensions. Here the same work is one
//! future around the handler's, [`Enveloped`] (bench/README.md, "One
//! envelope instead of six layers").

use std::convert::Infallible;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::header::{STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS};
use http::{HeaderName, HeaderValue, Request};
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Instant;
use tower::{Layer, Service};
use warp::reply::Response;

use crate::metrics;
use crate::problem::Problem;

/// The target of the span and of the lines written here: the server's,
/// where they were written before this module existed, so that filters
/// such as `RUST_LOG=token_authority::server=info` keep finding them.
const TARGET: &str = "token_authority::server";

/// The request id's header.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// HSTS for one year (no `includeSubDomains`: the authority cannot speak
/// for its parent domain's other hosts).
const HSTS: HeaderValue = HeaderValue::from_static("max-age=31536000");

/// Puts every request in an [`Envelope`].
#[derive(Debug, Clone, Copy)]
pub struct EnvelopeLayer {
    /// The request timeout.
    pub limit: Duration,
    /// Whether the issuer is `https://` (HSTS on every response).
    pub https: bool,
}

impl<S> Layer<S> for EnvelopeLayer {
    type Service = Envelope<S>;

    fn layer(&self, inner: S) -> Envelope<S> {
        Envelope {
            inner,
            limit: self.limit,
            https: self.https,
        }
    }
}

/// See the [module](self).
#[derive(Debug, Clone)]
pub struct Envelope<S> {
    inner: S,
    limit: Duration,
    https: bool,
}

impl<S, B> Service<Request<B>> for Envelope<S>
where
    S: Service<Request<B>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Enveloped<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Enveloped<S::Future> {
        let started = Instant::now();
        let id = request
            .headers()
            .get(X_REQUEST_ID)
            .cloned()
            .unwrap_or_else(fresh_id);
        let span = tracing::info_span!(
            target: TARGET,
            "request",
            method = %request.method(),
            path = request.uri().path(),
            request_id = id.to_str().unwrap_or("-"),
        );
        let done = request.extensions().get::<BodyDone>().cloned();
        let handler = {
            let _entered = span.enter();
            panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(request)))
        };
        Enveloped {
            // `None`: the service panicked in `call`, before it had a future.
            handler: handler.ok(),
            timer: None,
            span,
            id: Some(id),
            done,
            started,
            limit: self.limit,
            https: self.https,
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of an [`Envelope`]d request: the handler's, within the
    /// request timeout, polled in the request's span with panics caught;
    /// then the response's headers, the count and the access line. A
    /// future of its own rather than a boxed `async` block, which cost an
    /// allocation and two copies of the handler's future per request.
    ///
    /// The timer is armed only when the handler does not answer on its
    /// first poll, so the answers that need no I/O (`/healthz`, discovery,
    /// an introspection answered from memory) never touch the runtime's
    /// timer wheel.
    pub struct Enveloped<F> {
        #[pin]
        handler: Option<F>,
        timer: Option<Pin<Box<tokio::time::Sleep>>>,
        span: tracing::Span,
        id: Option<HeaderValue>,
        done: Option<BodyDone>,
        started: Instant,
        limit: Duration,
        https: bool,
    }
}

impl<F> Future for Enveloped<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let outcome = match this.handler.as_pin_mut() {
            Some(handler) => match panic::catch_unwind(AssertUnwindSafe(|| handler.poll(cx))) {
                Ok(Poll::Ready(outcome)) => Outcome::Answered(outcome),
                Ok(Poll::Pending) => {
                    let (started, limit) = (*this.started, *this.limit);
                    let timer = this
                        .timer
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(started + limit)));
                    ready!(timer.as_mut().poll(cx));
                    Outcome::TimedOut
                }
                Err(_panic) => Outcome::Panicked,
            },
            None => Outcome::Panicked,
        };
        let mut response = match outcome {
            Outcome::Answered(Ok(response)) => response,
            Outcome::Answered(Err(infallible)) => match infallible {},
            Outcome::TimedOut => timed_out(this.done.as_ref(), *this.limit),
            Outcome::Panicked => panicked(),
        };
        let headers = response.headers_mut();
        if let Some(id) = this.id.take() {
            headers.entry(X_REQUEST_ID).or_insert(id);
        }
        headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        if *this.https {
            headers.insert(STRICT_TRANSPORT_SECURITY, HSTS);
        }
        metrics::response(response.status());
        tracing::info!(
            target: TARGET,
            status = response.status().as_u16(),
            elapsed_ms = this.started.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
        Poll::Ready(Ok(response))
    }
}

/// How an [`Enveloped`] handler ended.
enum Outcome {
    Answered(Result<Response, Infallible>),
    TimedOut,
    Panicked,
}

/// A fresh request id: a random (version 4) UUID, written straight into
/// the header value.
fn fresh_id() -> HeaderValue {
    let mut text = uuid::Uuid::encode_buffer();
    let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
    // Hex digits and hyphens.
    HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static("-"))
}

/// The answer past the request timeout.
fn timed_out(done: Option<&BodyDone>, limit: Duration) -> Response {
    if done.is_some_and(|done| !done.is_done()) {
        tracing::info!(target: TARGET, ?limit, "request body not received in time");
        Problem::request_timeout().into_response()
    } else {
        tracing::warn!(target: TARGET, ?limit, "request not answered in time");
        Problem::unavailable_because("the request took too long; retry later").into_response()
    }
}

/// The answer of a handler that panicked: the standard 500, logged; what
/// it panicked with is not shown (it may hold request data).
fn panicked() -> Response {
    Problem::internal(&"a request handler panicked").into_response()
}

/// Whether a request's body has been read to its end, in the request's
/// extensions: tells a client too slow to send its body (408) from a
/// server too slow to answer (503).
#[derive(Debug, Clone, Default)]
pub struct BodyDone(Arc<AtomicBool>);

impl BodyDone {
    /// Whether the body has been read to its end.
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A request body that sets its [`BodyDone`] when read to the end.
#[derive(Debug)]
pub struct Tracked<B> {
    inner: B,
    /// `None` for a body that was empty from the start.
    done: Option<BodyDone>,
}

impl<B: Body> Tracked<B> {
    /// Wraps `inner`, with the flag to put in the request's extensions;
    /// none for an empty body (a `GET`, most often), which has nothing
    /// left to arrive: the request costs no flag and no extension.
    pub fn new(inner: B) -> (Self, Option<BodyDone>) {
        let done = (!inner.is_end_stream()).then(BodyDone::default);
        (
            Self {
                inner,
                done: done.clone(),
            },
            done,
        )
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if let Some(done) = &self.done
            && (matches!(frame, Poll::Ready(None)) || self.inner.is_end_stream())
        {
            done.0.store(true, Ordering::Relaxed);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http::StatusCode;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;

    /// The span and the access line keep the server's target and shape,
    /// the line inside the span: `RUST_LOG` filters and log readers that
    /// knew them before the envelope still find them.
    #[tokio::test]
    async fn the_access_line_is_the_servers() {
        let out = crate::test_support::Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(out.clone())
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let service = tower::service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new("ok".into()))
        });
        let request = Request::post("/oauth/token")
            .header(X_REQUEST_ID, "line-1")
            .body(())
            .expect("request");
        let response = EnvelopeLayer {
            limit: Duration::from_secs(5),
            https: false,
        }
        .layer(service)
        .oneshot(request)
        .await
        .expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
        let text = out.text();
        assert!(
            text.contains(
                r#" INFO request{method=POST path="/oauth/token" request_id="line-1"}: token_authority::server: request status=200 elapsed_ms="#
            ),
            "{text}"
        );
    }

    /// A service that panics in `call` itself, before it has a future.
    #[tokio::test]
    async fn a_panic_before_the_future_answers_500() {
        let service = tower::service_fn(
            |_: Request<()>| -> std::future::Ready<Result<Response, Infallible>> {
                panic!("in call")
            },
        );
        let response = EnvelopeLayer {
            limit: Duration::from_secs(5),
            https: true,
        }
        .layer(service)
        .oneshot(Request::new(()))
        .await
        .expect("infallible");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        assert_eq!(
            response.headers()["strict-transport-security"],
            "max-age=31536000"
        );
        assert_eq!(response.headers()[X_REQUEST_ID].len(), 36);
    }

    /// The body flag is set once the body has been read to its end.
    #[tokio::test]
    async fn tracked_bodies_report_their_end() {
        let (body, done) = Tracked::new(String::new());
        assert!(done.is_none(), "an empty body has nothing left to track");
        drop(body);
        let (body, done) = Tracked::new("grant_type=password".to_owned());
        let done = done.expect("a body with content is tracked");
        assert!(!done.is_done());
        let bytes = body.collect().await.expect("body").to_bytes();
        assert_eq!(&bytes[..], b"grant_type=password");
        assert!(done.is_done());
    }
}
