//! One connection's service: what hyper calls for each request it reads
//! on a connection. It tells the connection's watcher ([`Activity`]) that
//! a request is in flight and, through the response's body
//! ([`Answering`]), when it ended; it gives the request its peer address
//! and, when the body has content, the flag the request timeout reads
//! ([`BodyDone`](crate::envelope::BodyDone)); then it calls the
//! [`stack`](crate::server::stack).
//!
//! hyper's own `Service` takes `&self`. hyper-util's `TowerToHyperService`
//! bridges it to tower's by cloning the whole stack for every request and
//! passing the request through a `Oneshot` (into it, and out of it again
//! once the clone is ready), with each per-connection step a layer of its
//! own (`MapRequest`, `MapResponse`). Here the steps are one service, and
//! only the stack is cloned (its one reference count).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tower::Service;

use crate::address::PeerAddr;
use crate::envelope::Tracked;
use crate::watch::{Activity, Answering};

/// See the [module](self).
#[derive(Debug)]
pub(crate) struct Connection<S> {
    stack: S,
    activity: Arc<Activity>,
    peer: SocketAddr,
}

impl<S> Connection<S> {
    /// The service of the connection from `peer` that `activity` watches.
    ///
    /// `stack` must always be ready, as every layer of
    /// [`stack`](crate::server::stack) is (none of them applies
    /// backpressure: the connection limit and the timeouts do): it is
    /// called without waiting for readiness. Debug builds check it.
    pub(crate) fn new(stack: S, activity: Arc<Activity>, peer: SocketAddr) -> Self {
        Self {
            stack,
            activity,
            peer,
        }
    }
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Connection<S>
where
    S: Service<Request<Tracked<Incoming>>, Response = Response<B>, Error = Infallible> + Clone,
{
    type Response = Response<Answering<B>>;
    type Error = Infallible;
    type Future = Counted<S::Future>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        self.activity.request(request.version());
        let (mut parts, body) = request.into_parts();
        let (body, done) = Tracked::new(body);
        parts.extensions.insert(PeerAddr(self.peer));
        if let Some(done) = done {
            parts.extensions.insert(done);
        }
        let mut stack = self.stack.clone();
        debug_assert!(
            matches!(
                stack.poll_ready(&mut Context::from_waker(Waker::noop())),
                Poll::Ready(Ok(()))
            ),
            "the connection's stack must always be ready"
        );
        Counted {
            response: stack.call(Request::from_parts(parts, body)),
            activity: Some(Arc::clone(&self.activity)),
        }
    }
}

pin_project_lite::pin_project! {
    /// A [`Connection`]'s response: the stack's, its body then wrapped in
    /// [`Answering`] (and, for a `101`, the watcher told that no more
    /// HTTP/1 requests follow).
    pub(crate) struct Counted<F> {
        #[pin]
        response: F,
        activity: Option<Arc<Activity>>,
    }
}

impl<F, B> Future for Counted<F>
where
    F: Future<Output = Result<Response<B>, Infallible>>,
{
    type Output = Result<Response<Answering<B>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = ready!(this.response.poll(cx));
        let Some(activity) = this.activity.take() else {
            // Polled again after it completed.
            return Poll::Pending;
        };
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            // No more HTTP/1 requests follow an upgrade.
            activity.stop_waiting_for_headers();
        }
        Poll::Ready(Ok(response.map(|body| Answering::new(body, activity))))
    }
}
