//! Running the HTTP server: [`run`] on a bound listener until a shutdown
//! signal, then draining open connections.
//!
//! The warp filter tree ([`crate::routes`]) is served as a tower service
//! inside the [`Envelope`](crate::envelope) every request gets: an
//! `X-Request-Id` (the caller's, or a fresh UUID), echoed in the response
//! and recorded on the request's log span, so one id follows a request
//! through the logs of the authority and the services it calls; a panic in
//! a handler becomes a generic 500 instead of a dropped connection.

//! Every response carries `X-Content-Type-Options: nosniff`, and
//! `Strict-Transport-Security` when the issuer is an `https://` URL.
//!
//! Connections are bounded against slow and idle clients (slowloris):
//! a client must send a request's header within `HTTP_HEADER_TIMEOUT_MS`
//! (also the keep-alive wait for the next one), get its response within
//! `HTTP_REQUEST_TIMEOUT_MS` (408 when its body was still arriving, 503
//! otherwise), and a connection that reads and writes nothing for
//! `HTTP_IDLE_TIMEOUT_MS` is closed. At most `MAX_CONNECTIONS` are open at
//! once: past it, new connections wait in the listen backlog until one
//! closes. HTTP/2 connections carry at most `HTTP2_MAX_STREAMS` streams.

use std::future::Future;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Request;
use hyper::body::Body;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::{Service, ServiceBuilder};
use warp::filters::BoxedFilter;

use crate::config::HttpLimits;
use crate::connection::Connection;
use crate::envelope::EnvelopeLayer;
use crate::metrics;
use crate::routes::{Hot, HotRoutes, metrics_routes, routes};
use crate::state::AppState;
use crate::watch::{Activity, Watched};

/// How long open connections may take to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the API on `listener` until `shutdown` completes, then finishes
/// the requests in flight (up to 30 s) and returns.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let _ = metrics::install();
    let hot = Hot::api(state.clone());
    serve(listener, routes(state.clone()), &state, shutdown, hot).await;
}

/// Serves `/metrics` alone on `listener` (`METRICS_ADDR`) until
/// `shutdown` completes; with the same limits and headers as the API.
pub async fn run_metrics(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let _ = metrics::install();
    serve(
        listener,
        metrics_routes(state.clone()),
        &state,
        shutdown,
        Hot::none(),
    )
    .await;
}

/// The tower stack around a warp filter tree: the [`Envelope`](crate::envelope::Envelope)
/// (request ids, the span, the access log and metrics, panic catching, the
/// request timeout, security headers), then the [`HotRoutes`] of `hot` in
/// front of the tree.
/// Requests are expected to carry their [`PeerAddr`] (optional) and
/// [`BodyDone`](crate::envelope::BodyDone) (optional) extensions.
pub fn stack<B>(
    filter: BoxedFilter<(warp::reply::Response,)>,
    limits: HttpLimits,
    https: bool,
    hot: Hot,
) -> impl Service<
    Request<B>,
    Response = warp::reply::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<warp::reply::Response, std::convert::Infallible>> + Send,
> + Clone
+ Send
where
    B: Body + Send + Sync + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + Sync,
{
    ServiceBuilder::new()
        .layer(EnvelopeLayer {
            limit: limits.request_timeout,
            https,
        })
        .service(HotRoutes::new(warp::service(filter), hot))
}

/// The accept loop: bounded connections, timeouts, graceful shutdown.
async fn serve(
    listener: TcpListener,
    filter: BoxedFilter<(warp::reply::Response,)>,
    state: &AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    hot: Hot,
) {
    let limits = state.config().http;
    let https = state.issuer().starts_with("https://");
    let service = stack(filter, limits, https, hot);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The header timeout is the connection watcher's ([`Activity`]), not
    // hyper's: hyper's arms a timer for every request (an allocation, and
    // the timer wheel's lock twice), about 5 % of a `/healthz`.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        // hyper otherwise reads the socket once more while each request is
        // answered, to notice a client gone mid-request; the reserve before
        // that read copies the read buffer into a new 8 KiB one every
        // request (the parsed request still holds the old one). A client
        // that leaves mid-request is noticed when its answer is written,
        // and every handler ends within the request timeout anyway.
        .half_close(true)
        // One buffer per response, head and body copied together, written
        // with one `write`: the answers here are small, and hyper's queue
        // of buffers for `writev` cost more than the copy (6 % of the
        // instructions of a `/healthz`).
        .writev(false);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_streams);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut last_warning = None;
    loop {
        let permit = match Arc::clone(&connections).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                // At most one line per 10 s while saturated.
                if last_warning.is_none_or(|at: Instant| at.elapsed() >= Duration::from_secs(10)) {
                    last_warning = Some(Instant::now());
                    tracing::warn!(
                        limit = limits.max_connections,
                        "connection limit reached; new connections wait"
                    );
                }
                tokio::select! {
                    permit = Arc::clone(&connections).acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off briefly.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let activity = Activity::new();
        let io = TokioIo::new(Watched {
            stream,
            activity: Arc::clone(&activity),
        });
        let service = Connection::new(service.clone(), Arc::clone(&activity), peer);
        let connection = builder
            .serve_connection_with_upgrades(io, service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _permit = permit;
            metrics::connection_opened();
            tokio::select! {
                result = connection => if let Err(error) = result {
                    tracing::debug!(%error, "connection closed with an error");
                },
                () = activity.expired(limits.header_timeout, limits.idle_timeout) => {
                    tracing::debug!(%peer, "closing a silent connection");
                }
            }
            metrics::connection_closed();
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
    }
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
///
/// The handlers are installed when this is called, not when the future is
/// first polled, so a signal that arrives while the first connections are
/// being accepted still drains the server instead of killing it.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        let (mut interrupt, mut terminate) = match (interrupt, terminate) {
            (Ok(interrupt), Ok(terminate)) => (interrupt, terminate),
            (Err(error), _) | (_, Err(error)) => {
                tracing::error!(%error, "cannot listen for shutdown signals");
                return std::future::pending().await;
            }
        };
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down: finishing requests in flight");
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::StatusCode;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    use warp::Filter as _;

    use super::*;
    use crate::envelope::BodyDone;
    use crate::problem::Problem;

    fn limits(request_timeout: Duration) -> HttpLimits {
        HttpLimits {
            request_timeout,
            ..HttpLimits::default()
        }
    }

    fn filter() -> BoxedFilter<(warp::reply::Response,)> {
        let slow = warp::path!("slow").then(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            warp::reply::Response::new("late".into())
        });
        let fast = warp::path!("fast").map(|| warp::reply::Response::new("ok".into()));
        let panics = warp::path!("panic").then(|| async {
            tokio::task::yield_now().await;
            panic!("a handler bug");
        });
        slow.or(fast)
            .unify()
            .or(panics)
            .unify()
            .or(warp::any().map(|| Problem::not_found("no such endpoint").into_response()))
            .unify()
            .boxed()
    }

    async fn call(
        https: bool,
        timeout: Duration,
        request: Request<String>,
    ) -> (http::response::Parts, String) {
        let response = stack(filter(), limits(timeout), https, Hot::healthz())
            .oneshot(request)
            .await
            .expect("infallible");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        (parts, String::from_utf8_lossy(&body).into_owned())
    }

    fn get(path: &str) -> Request<String> {
        Request::get(path).body(String::new()).expect("request")
    }

    fn get_with_id(path: &str, id: &'static str) -> Request<String> {
        let mut request = get(path);
        request
            .headers_mut()
            .insert("x-request-id", http::HeaderValue::from_static(id));
        request
    }

    /// Every response, errors included, has `nosniff`; HSTS only when the
    /// issuer is https.
    #[tokio::test]
    async fn security_headers_on_every_response() {
        for path in ["/fast", "/nowhere"] {
            let (parts, _) = call(false, Duration::from_secs(5), get(path)).await;
            assert_eq!(parts.headers["x-content-type-options"], "nosniff", "{path}");
            assert!(
                !parts.headers.contains_key("strict-transport-security"),
                "{path}"
            );
            let (parts, _) = call(true, Duration::from_secs(5), get(path)).await;
            assert_eq!(parts.headers["x-content-type-options"], "nosniff", "{path}");
            assert_eq!(
                parts.headers["strict-transport-security"], "max-age=31536000",
                "{path}"
            );
        }
        let (parts, body) = call(false, Duration::from_secs(5), get("/nowhere")).await;
        assert_eq!(parts.status, StatusCode::NOT_FOUND);
        assert!(body.contains("not_found"), "{body}");
    }

    /// A handler that panics answers a generic 500 (the standard error
    /// body, `nosniff`, the request id) and the service answers the next
    /// request as before.
    #[tokio::test]
    async fn a_panicking_handler_answers_500() {
        let request = get_with_id("/panic", "panic-1");
        let (parts, body) = call(false, Duration::from_secs(5), request).await;
        assert_eq!(parts.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body,
            r#"{"error":"server_error","error_description":"internal error"}"#
        );
        assert!(!body.contains("a handler bug"), "the panic is not shown");
        assert_eq!(parts.headers["content-type"], "application/json");
        assert_eq!(parts.headers["x-content-type-options"], "nosniff");
        assert_eq!(parts.headers["x-request-id"], "panic-1");
        let (parts, body) = call(false, Duration::from_secs(5), get("/fast")).await;
        assert_eq!(parts.status, StatusCode::OK);
        assert_eq!(body, "ok");
    }

    /// The caller's request id is echoed; without one, each response gets
    /// a fresh random UUID.
    #[tokio::test]
    async fn request_ids_are_the_callers_or_fresh_uuids() {
        let request = get_with_id("/nowhere", "given-7");
        let (parts, _) = call(false, Duration::from_secs(5), request).await;
        assert_eq!(parts.headers["x-request-id"], "given-7");
        let mut fresh = Vec::new();
        for _ in 0..2 {
            let (parts, _) = call(false, Duration::from_secs(5), get("/fast")).await;
            let id = parts.headers["x-request-id"].to_str().expect("ASCII");
            let uuid = uuid::Uuid::parse_str(id).expect("a UUID");
            assert_eq!(uuid.get_version_num(), 4, "{id}");
            assert_eq!(id, uuid.hyphenated().to_string(), "lower-case, hyphenated");
            fresh.push(uuid);
        }
        assert_ne!(fresh[0], fresh[1]);
    }

    /// A handler slower than the request timeout: 503
    /// `temporarily_unavailable` when the body had arrived, 408 when it
    /// had not; both with the standard error body and `nosniff`.
    #[tokio::test]
    async fn request_timeout_answers_503_or_408() {
        let started = Instant::now();
        let (parts, body) = call(false, Duration::from_millis(100), get("/slow")).await;
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(parts.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("\"temporarily_unavailable\""), "{body}");
        assert_eq!(parts.headers["x-content-type-options"], "nosniff");

        let mut request = get("/slow");
        request.extensions_mut().insert(BodyDone::default());
        let (parts, body) = call(false, Duration::from_millis(100), request).await;
        assert_eq!(parts.status, StatusCode::REQUEST_TIMEOUT);
        assert!(body.contains("\"invalid_request\""), "{body}");

        let (parts, body) = call(false, Duration::from_millis(100), get("/fast")).await;
        assert_eq!(parts.status, StatusCode::OK);
        assert_eq!(body, "ok");
    }

    /// `GET /healthz` is answered before the filter tree (the test tree has
    /// no such route) with the health route's own response, inside the
    /// stack (security headers, request id); not on a listener without hot
    /// routes, and not for another method, which the tree answers.
    #[tokio::test]
    async fn healthz_is_answered_before_the_tree_inside_the_stack() {
        let request = || {
            Request::get("/healthz")
                .header("x-request-id", "probe-1")
                .body(String::new())
                .expect("request")
        };
        let (parts, body) = call_with(true, request()).await;
        assert_eq!(parts.status, StatusCode::OK);
        assert_eq!(body, r#"{"status":"ok"}"#);
        assert_eq!(parts.headers["content-type"], "application/json");
        assert_eq!(parts.headers["cache-control"], "no-store");
        assert_eq!(parts.headers["x-content-type-options"], "nosniff");
        assert_eq!(parts.headers["x-request-id"], "probe-1");
        let expected = crate::api::health::healthz();
        assert_eq!(parts.headers.len(), expected.headers().len() + 2);

        let (parts, _) = call_with(false, request()).await;
        assert_eq!(parts.status, StatusCode::NOT_FOUND, "metrics listener");
        let post = Request::post("/healthz")
            .body(String::new())
            .expect("request");
        let (parts, _) = call_with(true, post).await;
        assert_eq!(
            parts.status,
            StatusCode::NOT_FOUND,
            "other methods: the tree"
        );
    }

    /// `POST /oauth/token` and `POST /oauth/introspect` are answered
    /// before the tree (the test tree has no such routes: it would say
    /// 404) with exactly what the real tree's routes answer — status, body
    /// and headers but the request id — for good and bad requests alike;
    /// other methods and spellings of the paths go to the tree.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn token_and_introspection_are_answered_before_the_tree() {
        use http_body_util::Full;

        use crate::admin::{self, NewUser};

        let redis = token_test_harness::RedisServer::start();
        let state = crate::test_support::state(&redis);
        admin::create_user(
            &state,
            NewUser {
                username: "alice".into(),
                password: zeroize::Zeroizing::new("password-1".into()),
                name: None,
                email: None,
                scopes: token_repository::Scopes::empty(),
            },
        )
        .await
        .expect("user");
        let limit = usize::try_from(state.config().max_body_bytes).expect("limit");
        let form = "application/x-www-form-urlencoded";
        let cases: Vec<(&str, &str, Bytes)> = vec![
            (
                "/oauth/token",
                form,
                "grant_type=password&username=alice&password=password-1".into(),
            ),
            (
                "/oauth/token",
                form,
                "grant_type=password&username=alice&password=wrong".into(),
            ),
            ("/oauth/token", form, "grant_type=bogus".into()),
            (
                "/oauth/token",
                form,
                "grant_type=password&grant_type=password".into(),
            ),
            (
                "/oauth/token",
                "text/plain",
                "grant_type=client_credentials".into(),
            ),
            (
                "/oauth/token",
                form,
                Bytes::from_static(b"grant_type=\xff\xfe"),
            ),
            ("/oauth/token", form, vec![b'a'; limit + 1].into()),
            ("/oauth/introspect", form, "token=garbage".into()),
            ("/oauth/introspect", form, vec![b'a'; limit + 1].into()),
        ];
        let send = |hot: Hot, filter, path: &str, content_type: &str, body: Bytes| {
            let request = Request::post(path)
                .header(http::header::CONTENT_TYPE, content_type)
                .body(Full::new(body))
                .expect("request");
            async move {
                let response = stack(filter, limits(Duration::from_secs(5)), false, hot)
                    .oneshot(request)
                    .await
                    .expect("infallible");
                let (mut parts, body) = response.into_parts();
                parts.headers.remove("x-request-id");
                let body = body.collect().await.expect("body");
                (parts, body.to_bytes())
            }
        };
        for (path, content_type, body) in cases {
            let (hot, hot_body) = send(
                Hot::api(state.clone()),
                filter(),
                path,
                content_type,
                body.clone(),
            )
            .await;
            let (tree, tree_body) =
                send(Hot::none(), routes(state.clone()), path, content_type, body).await;
            let case = format!(
                "{path} {content_type}: {}",
                String::from_utf8_lossy(&tree_body)
            );
            assert_ne!(
                hot.status,
                StatusCode::NOT_FOUND,
                "{case}: not answered hot"
            );
            assert_eq!(hot.status, tree.status, "{case}");
            assert_eq!(hot.headers, tree.headers, "{case}");
            if tree.status == StatusCode::OK {
                // New tokens each time: the same fields.
                let fields = |body: &Bytes| {
                    let value: serde_json::Value = serde_json::from_slice(body).expect("json");
                    let mut keys: Vec<String> =
                        value.as_object().expect("object").keys().cloned().collect();
                    keys.sort();
                    keys
                };
                assert_eq!(fields(&hot_body), fields(&tree_body), "{case}");
            } else {
                assert_eq!(hot_body, tree_body, "{case}");
            }
        }
        // Another method, another spelling: the (test) tree answers.
        for (method, path) in [
            (http::Method::GET, "/oauth/token"),
            (http::Method::POST, "/oauth/token/"),
            (http::Method::PUT, "/oauth/introspect"),
        ] {
            let request = Request::builder()
                .method(method.clone())
                .uri(path)
                .body(Full::new(Bytes::new()))
                .expect("request");
            let response = stack(
                filter(),
                limits(Duration::from_secs(5)),
                false,
                Hot::api(state.clone()),
            )
            .oneshot(request)
            .await
            .expect("infallible");
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method} {path}");
        }
    }

    async fn call_with(hot: bool, request: Request<String>) -> (http::response::Parts, String) {
        let hot = if hot { Hot::healthz() } else { Hot::none() };
        let response = stack(filter(), limits(Duration::from_secs(5)), false, hot)
            .oneshot(request)
            .await
            .expect("infallible");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        (parts, String::from_utf8_lossy(&body).into_owned())
    }
}
