//! A connection's watcher: [`Activity`] records when a connection last
//! read or wrote ([`Watched`] wraps its stream) and how long it has been
//! waiting for a request header (its responses' bodies, [`Answering`],
//! say when each ended); [`Activity::expired`] completes when the
//! connection should be closed. One sleep per connection keeps both the
//! header and the idle deadline, so that no request arms a timer of its
//! own ([`crate::server`] turns hyper's per-request header timer off).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Body;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// When a connection last read or wrote, and how long it has been waiting
/// for a request header: what [`Activity::expired`] closes it by.
#[derive(Debug)]
pub(crate) struct Activity {
    opened: Instant,
    /// Milliseconds since `opened` of the last read or write.
    last: AtomicU64,
    /// Requests dispatched whose responses are not yet written to the end.
    in_flight: AtomicU32,
    /// Milliseconds since `opened` when the last response was written to
    /// the end (0: none yet): where the wait for the next header began.
    waiting_since: AtomicU64,
    /// An HTTP/2 connection past its first request, or an upgraded one:
    /// no header deadline any more (streams come and go; the idle timeout
    /// still applies).
    no_header_deadline: AtomicBool,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            last: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            waiting_since: AtomicU64::new(0),
            no_header_deadline: AtomicBool::new(false),
        })
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn at(&self, millis: u64) -> Instant {
        self.opened + Duration::from_millis(millis)
    }

    fn touch(&self) {
        self.last.store(self.millis(), Ordering::Relaxed);
    }

    /// A request's header is complete and the request dispatched.
    pub(crate) fn request(&self, version: http::Version) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        if version == http::Version::HTTP_2 {
            self.stop_waiting_for_headers();
        }
    }

    /// A response has been written to the end (or dropped): the wait for
    /// the next header begins.
    fn answered(&self) {
        self.waiting_since.store(self.millis(), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    pub(crate) fn stop_waiting_for_headers(&self) {
        self.no_header_deadline.store(true, Ordering::Relaxed);
    }

    /// When the connection must have sent a complete request header:
    /// `header_timeout` after it opened or after its last response ended,
    /// while no request is in flight (a slow sender that keeps trickling
    /// bytes does not move it). `None` while one is, or once the
    /// connection has no header deadline.
    fn header_deadline(&self, header_timeout: Duration) -> Option<Instant> {
        if self.no_header_deadline.load(Ordering::Relaxed)
            || self.in_flight.load(Ordering::Acquire) > 0
        {
            return None;
        }
        Some(self.at(self.waiting_since.load(Ordering::Relaxed)) + header_timeout)
    }

    /// Completes when the connection should be closed: no complete request
    /// header within `header_timeout` of opening or of the end of the last
    /// response (HTTP/1; for HTTP/2, of opening), or nothing read or
    /// written for `idle_timeout`. It wakes at the nearest deadline, and
    /// while a request is in flight at least every `header_timeout`, so a
    /// response that ends meanwhile starts a deadline it will not miss
    /// (that deadline is at least `header_timeout` after it looked).
    pub(crate) async fn expired(&self, header_timeout: Duration, idle_timeout: Duration) {
        loop {
            let now = Instant::now();
            let idle_deadline = self.at(self.last.load(Ordering::Relaxed)) + idle_timeout;
            let header_deadline = self.header_deadline(header_timeout);
            if now >= idle_deadline || header_deadline.is_some_and(|deadline| now >= deadline) {
                return;
            }
            let next = match header_deadline {
                Some(deadline) => deadline,
                None if self.no_header_deadline.load(Ordering::Relaxed) => idle_deadline,
                None => now + header_timeout,
            };
            tokio::time::sleep_until(next.min(idle_deadline).into()).await;
        }
    }
}

/// A response body that tells its connection's [`Activity`] when it has
/// been written to the end: hyper drops it then (or when the connection
/// goes).
#[derive(Debug)]
pub(crate) struct Answering<B> {
    inner: B,
    activity: Arc<Activity>,
}

impl<B> Answering<B> {
    pub(crate) fn new(inner: B, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<B> Drop for Answering<B> {
    fn drop(&mut self) {
        self.activity.answered();
    }
}

impl<B: Body + Unpin> Body for Answering<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A TCP stream that records its reads and writes in an [`Activity`].
#[derive(Debug)]
pub(crate) struct Watched {
    pub(crate) stream: TcpStream,
    pub(crate) activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
