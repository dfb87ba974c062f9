//! A small axum service protected by `token_client::TokenAuthLayer`: the
//! middleware's end-to-end tests and the compose demo run it.
//!
//! Its interface is a contract (tests and the demo depend on it):
//!
//! | variable                   | default                  | meaning                                               |
//! |----------------------------|--------------------------|-------------------------------------------------------|
//! | `REDIS_URL`                | `redis://127.0.0.1:6379` | the token repository; use the read-only ACL user      |
//! | `REDIS_URL_FILE`           | —                        | a file holding `REDIS_URL` (a secret); wins over it   |
//! | `REDIS_CLUSTER_URLS`       | —                        | a Redis Cluster instead: seeds, comma-separated       |
//! | `REDIS_SENTINEL_URLS`      | —                        | Sentinel instead (with `REDIS_SENTINEL_MASTER`)       |
//! | `REDIS_CA_FILE`            | webpki roots             | PEM CA of a `rediss://` server's certificate          |
//! | `REDIS_CLIENT_CERT_FILE`   | —                        | PEM client certificate (`tls-auth-clients`)           |
//! | `REDIS_CLIENT_KEY_FILE`    | —                        | its PEM private key                                   |
//! | `LISTEN_ADDR`              | `127.0.0.1:8081`         | where to listen (`127.0.0.1:0`: any free port)        |
//! | `KEY_PREFIX`               | `ts:`                    | the key namespace, as configured at the authority     |
//! | `AUDIENCE`                 | —                        | this service's resource URI, registered at the authority (`token-authority resource add`): tokens for other resources are refused. Unset: any audience (development only; warns) |
//! | `TOKEN_CACHE`              | `on`                     | `on` / `off`: the local cache with Redis invalidation |
//! | `TOKEN_CACHE_STALENESS_MS` | `30000`                  | the cache's staleness bound                           |
//! | `LOG_FORMAT`               | `text`                   | `text` or `json` (one object per line) on stderr      |
//! | `HTTP_HEADER_TIMEOUT_MS`   | `10000`                  | time to send a request header (also keep-alive idle)  |
//! | `HTTP_REQUEST_TIMEOUT_MS`  | `30000`                  | time from a request header to its response, then 503  |
//! | `MAX_CONNECTIONS`          | `10000`                  | open connections; further ones wait to be accepted    |
//! | `TOKIO_WORKER_THREADS`     | CPU count                | request-serving threads (Tokio's own variable)        |
//!
//! Once listening it prints exactly one line to stdout,
//! `listening on http://<addr>`; logs go to stderr (`RUST_LOG`). It stops
//! gracefully on SIGTERM or Ctrl-C.
//!
//! | route          | needs                     | answers                                                         |
//! |----------------|---------------------------|-----------------------------------------------------------------|
//! | `GET /whoami`  | a valid token             | `{"sub","username","name","email","scope","exp"}`               |
//! | `GET /admin`   | a valid token with `admin`| `{"sub","admin":true}`                                          |
//! | `GET /public`  | nothing                   | `{"greeting":"hello, <username>"}` or `"hello, stranger"`       |
//! | `GET /healthz` | nothing                   | `{"status":"ok"}`                                               |
//! | `GET /metrics` | nothing                   | Prometheus text: the middleware's series (`token_client_…`)     |
//!
//! Every request gets an `X-Request-Id` (the caller's, or a fresh UUID),
//! echoed in the response and recorded on its log span, so a request
//! traced through the authority keeps one id here too. Every response
//! carries `X-Content-Type-Options: nosniff`.
//!
//! It is served by [`serve`] rather than `axum::serve`, which has no
//! timeouts: copy that function to protect your service against clients
//! that open connections and send slowly or nothing (slowloris).
//!
//! ```sh
//! REDIS_URL=redis://token-client:secret@127.0.0.1:6379/ \
//!   cargo run -p token-client --features axum --example protected_service
//! ```

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::http::header::X_CONTENT_TYPE_OPTIONS;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{Value, json};
use token_client::{
    CacheConfig, KeyPrefix, Principal, RedisConfig, RedisTls, RequireScopeLayer, TokenAuthLayer,
    Topology,
};
use tower::Service;

/// The request id's header.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Bound on one token lookup (and on the reader's Redis operations).
const LOOKUP_TIMEOUT: Duration = Duration::from_millis(250);

/// The service's configuration, from the environment.
#[derive(Debug)]
struct Config {
    topology: Topology,
    tls: Option<RedisTls>,
    listen_addr: SocketAddr,
    prefix: KeyPrefix,
    audience: Option<String>,
    cache: bool,
    staleness: Duration,
    limits: Limits,
}

/// Connection limits of [`serve`].
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// A client must send a request's whole header within this (and, on a
    /// kept-alive connection, the next one); else the connection is closed.
    header_timeout: Duration,
    /// A request not answered within this gets 503.
    request_timeout: Duration,
    /// Open connections at most; past it new ones wait to be accepted.
    max_connections: usize,
}

impl Config {
    fn from_env() -> Result<Self, String> {
        let var =
            |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
        let listen_addr = var("LISTEN_ADDR", "127.0.0.1:8081");
        let listen_addr = listen_addr.parse().map_err(|_| {
            format!("LISTEN_ADDR must be an address like 127.0.0.1:8081, not {listen_addr:?}")
        })?;
        let prefix = KeyPrefix::new(var("KEY_PREFIX", "ts:"))
            .map_err(|error| format!("KEY_PREFIX: {error}"))?;
        let audience = std::env::var("AUDIENCE")
            .ok()
            .filter(|uri| !uri.is_empty())
            .map(|uri| {
                token_client::repository::ResourceUri::parse(&uri)
                    .map(|_| uri.clone())
                    .map_err(|error| format!("AUDIENCE {uri:?}: {error}"))
            })
            .transpose()?;
        let cache = match var("TOKEN_CACHE", "on").as_str() {
            "on" | "true" | "1" => true,
            "off" | "false" | "0" => false,
            other => return Err(format!("TOKEN_CACHE must be on or off, not {other:?}")),
        };
        let staleness = var("TOKEN_CACHE_STALENESS_MS", "30000");
        let staleness = staleness.parse().map(Duration::from_millis).map_err(|_| {
            format!("TOKEN_CACHE_STALENESS_MS must be milliseconds, not {staleness:?}")
        })?;
        let millis = |name: &str, default: &str| {
            let text = var(name, default);
            match text.parse::<u64>() {
                Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
                _ => Err(format!("{name} must be milliseconds, not {text:?}")),
            }
        };
        let max_connections = var("MAX_CONNECTIONS", "10000");
        let limits = Limits {
            header_timeout: millis("HTTP_HEADER_TIMEOUT_MS", "10000")?,
            request_timeout: millis("HTTP_REQUEST_TIMEOUT_MS", "30000")?,
            max_connections: match max_connections.parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(format!(
                        "MAX_CONNECTIONS must be a positive number, not {max_connections:?}"
                    ));
                }
            },
        };
        // REDIS_URL_FILE: the URL (with its password) in a secret file.
        let mut settings: Vec<(&str, String)> = Vec::new();
        if let Some(path) = std::env::var_os("REDIS_URL_FILE") {
            let url = std::fs::read_to_string(&path)
                .map_err(|error| format!("REDIS_URL_FILE: cannot read {path:?}: {error}"))?;
            settings.push(("REDIS_URL", url.trim_end().to_owned()));
        }
        for name in [
            "REDIS_URL",
            "REDIS_CLUSTER_URLS",
            "REDIS_SENTINEL_URLS",
            "REDIS_SENTINEL_MASTER",
            "REDIS_SENTINEL_USERNAME",
            "REDIS_SENTINEL_PASSWORD",
            "REDIS_CA_FILE",
            "REDIS_CLIENT_CERT_FILE",
            "REDIS_CLIENT_KEY_FILE",
        ] {
            if let Ok(value) = std::env::var(name)
                && !settings.iter().any(|(set, _)| *set == name)
            {
                settings.push((name, value));
            }
        }
        let get = |name: &str| {
            settings
                .iter()
                .find(|(set, value)| *set == name && !value.is_empty())
                .map(|(_, value)| value.as_str())
        };
        let topology = Topology::from_settings(get).map_err(|error| error.to_string())?;
        let tls = RedisTls::from_settings(get).map_err(|error| error.to_string())?;
        if let Some(tls) = &tls {
            tls.check_topology(&topology)
                .map_err(|error| error.to_string())?;
        }
        Ok(Self {
            topology,
            tls,
            listen_addr,
            prefix,
            audience,
            cache,
            staleness,
            limits,
        })
    }
}

/// The routes: `/whoami` and `/admin` behind the required layer (`/admin`
/// also behind the scope guard), `/public` behind the optional one; the
/// [`Envelope`] around everything.
///
/// The envelope wraps the router once rather than through `Router::layer`,
/// which would wrap (and box) every route again; and `with_state(())`
/// builds each handler's service once here, where a router served without
/// it builds it again for every request (`axum::serve` calls it too).
fn app(auth: TokenAuthLayer, metrics: PrometheusHandle, request_timeout: Duration) -> App {
    let router = Router::new()
        .route("/whoami", get(whoami))
        .route(
            "/admin",
            get(admin).route_layer(RequireScopeLayer::any_of(["admin"])),
        )
        .route_layer(auth.clone())
        .route("/public", get(public).route_layer(auth.optional()))
        .route("/healthz", get(healthz))
        .route("/metrics", get(move || async move { metrics.render() }))
        .with_state(());
    Envelope {
        inner: router,
        limit: request_timeout,
    }
}

/// The service [`serve`] runs.
type App = Envelope<Router>;

/// `GET /healthz`: a constant answer, no JSON value built per request,
/// its headers set directly (with its length written as a constant, which
/// axum would otherwise format into a new buffer for every response).
async fn healthz() -> Response {
    const BODY: &str = r#"{"status":"ok"}"#;
    const LENGTH: &str = "15";
    const _: () = assert!(BODY.len() == 15);
    let mut response = Response::new(axum::body::Body::from(BODY));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        http::header::CONTENT_LENGTH,
        HeaderValue::from_static(LENGTH),
    );
    response
}

/// `axum::serve` with limits: HTTP/1.1 with a header timeout (the
/// connection's [`HeaderDeadline`]), at most `max_connections` open (a
/// semaphore around `accept`: excess clients wait in the listen backlog),
/// and a graceful drain (up to 30 s) once `shutdown` completes.
async fn serve(
    listener: tokio::net::TcpListener,
    app: App,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    use hyper_util::rt::TokioIo;
    use hyper_util::server::graceful::GracefulShutdown;

    let mut http = hyper::server::conn::http1::Builder::new();
    // Not hyper's header timeout: it arms a timer for every request (an
    // allocation, and the timer wheel's lock twice), 8 % of a `/healthz`.
    http.header_read_timeout(None);
    // A client that closes its side after the request still gets the
    // answer; and hyper does not read the socket once more while each
    // request is answered (to notice a client gone), which copied its read
    // buffer into a new 8 KiB one every request. Handlers end within the
    // request timeout anyway.
    http.half_close(true);
    // Head and body copied into one buffer and written with one `write`:
    // for answers this small, cheaper than hyper's queue of buffers for
    // `writev`.
    http.writev(false);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = async {
                let slot = slots.clone().acquire_owned().await;
                (slot, listener.accept().await)
            } => accepted,
        };
        let (stream, slot) = match accepted {
            (Ok(slot), Ok((stream, _))) => (stream, slot),
            (_, Err(error)) => {
                // Out of file descriptors, say: back off briefly.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            (Err(_), _) => break,
        };
        let deadline = HeaderDeadline::new();
        let service = Connection {
            app: app.clone(),
            deadline: Arc::clone(&deadline),
        };
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _slot = slot;
            tokio::select! {
                result = connection => if let Err(error) = result {
                    tracing::debug!(%error, "connection closed with an error");
                },
                () = deadline.passed(limits.header_timeout) => {
                    tracing::debug!("closed a connection that sent no request header in time");
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 30 s; closing them");
    }
}

/// One connection's service, which hyper calls for each request: the
/// request counted in the connection's [`HeaderDeadline`], the response's
/// body wrapped to count its end ([`Answering`]).
///
/// hyper's own `Service` takes `&self`, so this needs neither the clone of
/// the whole stack nor the readiness step that hyper-util's
/// `TowerToHyperService` takes for every request (and the copies of the
/// request into and out of its `Oneshot`); axum's router is always ready
/// (its `poll_ready` answers at once), so calling a clone of it directly
/// keeps tower's contract.
struct Connection {
    app: App,
    deadline: Arc<HeaderDeadline>,
}

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for Connection {
    type Response = http::Response<Answering<axum::body::Body>>;
    type Error = Infallible;
    type Future = Counted<Enveloped<axum::routing::future::RouteFuture<Infallible>>>;

    fn call(&self, request: http::Request<hyper::body::Incoming>) -> Self::Future {
        self.deadline.request();
        Counted {
            response: self.app.clone().call(request),
            deadline: Some(Arc::clone(&self.deadline)),
        }
    }
}

pin_project_lite::pin_project! {
    /// A [`Connection`]'s response: the envelope's, its body then wrapped
    /// in [`Answering`].
    struct Counted<F> {
        #[pin]
        response: F,
        deadline: Option<Arc<HeaderDeadline>>,
    }
}

impl<F> Future for Counted<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<http::Response<Answering<axum::body::Body>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = std::task::ready!(this.response.poll(cx));
        match this.deadline.take() {
            Some(deadline) => Poll::Ready(Ok(response.map(|body| Answering(body, deadline)))),
            // Polled again after it completed.
            None => Poll::Pending,
        }
    }
}

/// When a connection must have sent a complete request header:
/// `header_timeout` after it opened, or after its last response was
/// written to the end (keep-alive), whatever it sent meanwhile; never
/// while a request is being answered (the request timeout applies then).
/// One per connection, watched by one sleep per connection rather than a
/// timer armed for every request.
#[derive(Debug)]
struct HeaderDeadline {
    opened: Instant,
    /// Requests dispatched whose responses are not yet written to the end.
    in_flight: AtomicU32,
    /// Milliseconds after `opened` at which the last response ended.
    waiting_since: AtomicU64,
}

impl HeaderDeadline {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            in_flight: AtomicU32::new(0),
            waiting_since: AtomicU64::new(0),
        })
    }

    fn request(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    fn answered(&self) {
        let millis = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.waiting_since.store(millis, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Completes once the deadline has passed. While a request is in flight
    /// it looks again every `header_timeout`: a response that ends
    /// meanwhile starts a deadline at least that far away.
    async fn passed(&self, header_timeout: Duration) {
        loop {
            let now = Instant::now();
            let next = if self.in_flight.load(Ordering::Acquire) > 0 {
                now + header_timeout
            } else {
                let since = Duration::from_millis(self.waiting_since.load(Ordering::Relaxed));
                let deadline = self.opened + since + header_timeout;
                if now >= deadline {
                    return;
                }
                deadline
            };
            tokio::time::sleep_until(next.into()).await;
        }
    }
}

/// A response body that tells its connection's [`HeaderDeadline`] when
/// hyper drops it: written to the end, or the connection gone.
struct Answering<B>(B, Arc<HeaderDeadline>);

impl<B> Drop for Answering<B> {
    fn drop(&mut self) {
        self.1.answered();
    }
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Answering<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.0.size_hint()
    }
}

/// What every request gets, in one service: a request id (the caller's
/// `X-Request-Id`, or a fresh UUID) echoed in the response and recorded on
/// the request's span `request{method path request_id}`; the request
/// timeout (503 in RFC 6750's shape past it); `X-Content-Type-Options:
/// nosniff`; and, once answered, one log line (`finished processing
/// request latency=… status=…`, plus an error line for a 5xx).
///
/// tower-http's `SetRequestId`, `Trace` and `PropagateRequestId`, a
/// `map_future` timeout and a `map_response` do the same as five layers,
/// each wrapping the future of the one inside, `Trace` wrapping the
/// response body too, and the id passed between them in the request's
/// extensions; here it is one future around the router's ([`Enveloped`];
/// bench/README.md, "The example service's envelope").
#[derive(Debug, Clone)]
struct Envelope<S> {
    inner: S,
    limit: Duration,
}

impl<S, B> Service<http::Request<B>> for Envelope<S>
where
    S: Service<http::Request<B>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Enveloped<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        let id = request
            .headers()
            .get(X_REQUEST_ID)
            .cloned()
            .unwrap_or_else(fresh_id);
        let span = tracing::info_span!(
            "request",
            method = %request.method(),
            path = request.uri().path(),
            request_id = id.to_str().unwrap_or("-"),
        );
        let handler = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        Enveloped {
            handler,
            timer: None,
            limit: self.limit,
            span,
            id: Some(id),
            started,
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of an [`Envelope`]d request: the router's, within the
    /// request timeout, polled in the request's span; then the response's
    /// headers and the log line. A future of its own rather than a boxed
    /// `async` block, which cost an allocation and two copies of the
    /// router's future per request.
    ///
    /// The timer is armed only when the router does not answer on its
    /// first poll: most answers (`/healthz`, a cached token) never touch
    /// the runtime's timer wheel.
    struct Enveloped<F> {
        #[pin]
        handler: F,
        timer: Option<Pin<Box<tokio::time::Sleep>>>,
        limit: Duration,
        span: tracing::Span,
        id: Option<HeaderValue>,
        started: Instant,
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
        let mut response = match this.handler.poll(cx) {
            Poll::Ready(Ok(response)) => response,
            Poll::Ready(Err(infallible)) => match infallible {},
            Poll::Pending => {
                let (started, limit) = (*this.started, *this.limit);
                let timer = this.timer.get_or_insert_with(|| {
                    Box::pin(tokio::time::sleep_until((started + limit).into()))
                });
                std::task::ready!(timer.as_mut().poll(cx));
                too_long()
            }
        };
        let headers = response.headers_mut();
        if let Some(id) = this.id.take() {
            headers.entry(X_REQUEST_ID).or_insert(id);
        }
        headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        let status = response.status();
        // Inside the macros: the clock is read only when the line is written.
        tracing::info!(
            latency = %format_args!("{} ms", this.started.elapsed().as_millis()),
            status = status.as_u16(),
            "finished processing request"
        );
        if status.is_server_error() {
            tracing::error!(
                classification = %format_args!("Status code: {status}"),
                latency = %format_args!("{} ms", this.started.elapsed().as_millis()),
                "response failed"
            );
        }
        Poll::Ready(Ok(response))
    }
}

/// A fresh request id: a random (version 4) UUID.
fn fresh_id() -> HeaderValue {
    let mut text = uuid::Uuid::encode_buffer();
    let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
    HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static("-"))
}

/// The answer past the request timeout (RFC 6750's error shape).
fn too_long() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({
            "error": "temporarily_unavailable",
            "error_description": "the request took too long; retry later",
        })),
    )
        .into_response()
}

async fn whoami(principal: Principal) -> Json<Value> {
    Json(json!({
        "sub": principal.holder.subject,
        "username": principal.holder.username,
        "name": principal.holder.name,
        "email": principal.holder.email,
        "scope": principal.holder.scopes.to_string(),
        "exp": principal.expires_at.as_unix_secs(),
    }))
}

async fn admin(principal: Principal) -> Json<Value> {
    Json(json!({ "sub": principal.holder.subject, "admin": true }))
}

async fn public(principal: Option<Principal>) -> Json<Value> {
    let name = principal.map_or_else(|| "stranger".to_owned(), |p| p.holder.username.clone());
    Json(json!({ "greeting": format!("hello, {name}") }))
}

async fn run(config: Config) -> Result<(), String> {
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|error| format!("cannot install the metrics recorder: {error}"))?;
    let shutdown = shutdown();
    let mut redis = RedisConfig::with_topology(config.topology.clone())
        .prefix(config.prefix.clone())
        .timeout(LOOKUP_TIMEOUT);
    if let Some(tls) = &config.tls {
        redis = redis.tls(tls.clone());
    }
    let mut auth = TokenAuthLayer::connect(redis)
        .map_err(|error| format!("Redis: {error}"))?
        .with_realm("protected-service")
        .with_timeout(LOOKUP_TIMEOUT);
    if let Some(audience) = &config.audience {
        auth = auth.audience(audience);
    }
    if config.cache {
        auth = auth.with_cache(CacheConfig::new().staleness(config.staleness));
    }
    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .map_err(|error| format!("cannot listen on {}: {error}", config.listen_addr))?;
    let addr = listener
        .local_addr()
        .map_err(|error| format!("cannot read the bound address: {error}"))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{addr}")
        .and_then(|()| stdout.flush())
        .map_err(|error| format!("cannot write to stdout: {error}"))?;
    drop(stdout);
    tracing::info!(%addr, cache = config.cache, staleness = ?config.staleness, "protected service started");
    let limits = config.limits;
    serve(
        listener,
        app(auth, metrics, limits.request_timeout),
        limits,
        shutdown,
    )
    .await;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are installed at the call,
/// not at the first poll, so an early signal still shuts down gracefully.
fn shutdown() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        match (interrupt, terminate) {
            (Ok(mut interrupt), Ok(mut terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            _ => std::future::pending().await,
        }
        tracing::info!("shutting down");
    }
}

/// mimalloc, as the authority: glibc's `malloc` and `free` were 15 % of
/// this service's instructions per `/healthz` (bench/README.md, "The
/// example service's allocator"). Any service can do the same.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if std::env::var("LOG_FORMAT").is_ok_and(|format| format == "json") {
        subscriber.json().flatten_event(true).init();
    } else {
        subscriber.init();
    }
    let result = match Config::from_env() {
        Ok(config) => run(config).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("protected-service: {error}");
            ExitCode::FAILURE
        }
    }
}
