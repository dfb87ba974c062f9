//! The services under test: one minimal axum handler, behind each way of
//! authenticating a request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http::{Request, Response, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use token_client::{CacheConfig, KeyPrefix, RedisConfig, TokenAuthLayer};
use tower::{Layer, Service};
use tower_sessions::{Session, SessionManagerLayer};

/// Bound on one token lookup, as in the middleware's example service.
pub(crate) const LOOKUP_TIMEOUT: Duration = Duration::from_millis(250);

/// The handler every variant serves: as little work as a handler can do.
async fn handler() -> &'static str {
    "ok"
}

/// No authentication at all: the ceiling.
pub(crate) fn unprotected() -> Router {
    Router::new().route("/", get(handler))
}

/// The unprotected handler behind a layer that passes every request on
/// unchanged (boxed future, like `TokenAuthLayer`): what a route layer costs
/// in axum by itself.
pub(crate) fn empty_layer() -> Router {
    Router::new()
        .route("/", get(handler))
        .route_layer(tower::layer::layer_fn(|inner| PassThrough { inner }))
}

#[derive(Clone)]
struct PassThrough<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for PassThrough<S>
where
    S: Service<Request<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move { inner.call(request).await })
    }
}

/// The resource (audience) of every fixture token, which the opaque
/// services check (`TokenAuthLayer::audience`), as a deployment does.
pub(crate) const RESOURCE: &str = "https://bench.example";

/// The cached variants' staleness bound: longer than any round of rows 1–3.
const CACHE_STALENESS: Duration = Duration::from_secs(3600);

/// `TokenAuthLayer` on a `RedisTokenReader`, with or without the tracking
/// cache; configured like the middleware's example service, checking the
/// audience of the fixture tokens.
pub(crate) async fn opaque(
    redis_url: &str,
    prefix: &KeyPrefix,
    cached: bool,
) -> Result<Router, String> {
    let config = RedisConfig::new(redis_url)
        .prefix(prefix.clone())
        .timeout(LOOKUP_TIMEOUT);
    let mut auth = TokenAuthLayer::connect(config)
        .map_err(|error| error.to_string())?
        .with_realm("bench")
        .with_timeout(LOOKUP_TIMEOUT)
        .audience(RESOURCE);
    if cached {
        // The cached rows measure hits. A round keeps its servers up for
        // longer than the default staleness bound (30 s), after which every
        // entry would be asked of Redis again in the middle of a
        // measurement; the hit path itself does not depend on the bound.
        auth = auth.with_cache(CacheConfig::default().staleness(CACHE_STALENESS));
        let cache = auth.cache().ok_or("the layer has no cache")?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !cache.is_active() {
            if tokio::time::Instant::now() > deadline {
                return Err("the token cache did not start tracking within 10 s".into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    Ok(Router::new().route("/", get(handler)).route_layer(auth))
}

/// What the session holds: who is signed in.
pub(crate) const SESSION_USER_KEY: &str = "user";

/// `tower-sessions` with its Redis store (fred): the handler reads the
/// signed-in user from the session, which loads the session from Redis by
/// the id in the cookie; no session, 401.
pub(crate) async fn sessions(redis_url: &str, pool_size: usize) -> Result<Router, String> {
    let store = session_store(redis_url, pool_size).await?;
    let layer = SessionManagerLayer::new(store).with_secure(false);
    Ok(Router::new()
        .route(
            "/",
            get(|session: Session| async move {
                match session.get::<SessionUser>(SESSION_USER_KEY).await {
                    Ok(Some(_)) => (StatusCode::OK, "ok"),
                    Ok(None) => (StatusCode::UNAUTHORIZED, ""),
                    Err(_) => (StatusCode::SERVICE_UNAVAILABLE, ""),
                }
            }),
        )
        .layer(layer))
}

/// The session store on `redis_url` (a fred pool of `pool_size` clients).
pub(crate) async fn session_store(
    redis_url: &str,
    pool_size: usize,
) -> Result<tower_sessions_redis_store::RedisStore<fred::clients::Pool>, String> {
    use fred::interfaces::ClientLike as _;
    let config =
        fred::types::config::Config::from_url(redis_url).map_err(|error| error.to_string())?;
    let pool = fred::clients::Pool::new(config, None, None, None, pool_size.max(1))
        .map_err(|error| error.to_string())?;
    let _connection = pool.connect();
    pool.wait_for_connect()
        .await
        .map_err(|error| error.to_string())?;
    Ok(tower_sessions_redis_store::RedisStore::new(pool))
}

/// The user a session names (what a login handler would store).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SessionUser {
    pub(crate) subject: String,
    pub(crate) username: String,
    pub(crate) name: String,
    pub(crate) email: String,
    pub(crate) scope: String,
}

/// The claims of the benchmark's JWTs: what our token record holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub(crate) iss: String,
    pub(crate) aud: String,
    pub(crate) sub: String,
    pub(crate) exp: u64,
    pub(crate) iat: u64,
    pub(crate) jti: String,
    pub(crate) scope: String,
    pub(crate) client_id: String,
    pub(crate) username: String,
    pub(crate) name: String,
    pub(crate) email: String,
}

/// The issuer and audience the JWT variants check.
pub(crate) const JWT_ISSUER: &str = "http://127.0.0.1:8080";
pub(crate) const JWT_AUDIENCE: &str = "bench";

/// Stateless JWT validation (`jsonwebtoken`) in a tower layer of the same
/// shape as `TokenAuthLayer`: bearer header, signature, `exp`, `iss`, `aud`;
/// the claims go to the request extensions; 401 otherwise.
pub(crate) fn jwt(key: DecodingKey, algorithm: Algorithm) -> Router {
    let mut validation = Validation::new(algorithm);
    validation.set_issuer(&[JWT_ISSUER]);
    validation.set_audience(&[JWT_AUDIENCE]);
    let layer = JwtLayer {
        verifier: Arc::new((key, validation)),
    };
    Router::new().route("/", get(handler)).route_layer(layer)
}

#[derive(Clone)]
struct JwtLayer {
    verifier: Arc<(DecodingKey, Validation)>,
}

impl<S> Layer<S> for JwtLayer {
    type Service = JwtAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        JwtAuth {
            inner,
            verifier: Arc::clone(&self.verifier),
        }
    }
}

#[derive(Clone)]
struct JwtAuth<S> {
    inner: S,
    verifier: Arc<(DecodingKey, Validation)>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<Request<B>> for JwtAuth<S>
where
    S: Service<Request<B>, Response = Response<axum::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<axum::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let claims = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .and_then(|token| {
                let (key, validation) = &*self.verifier;
                jsonwebtoken::decode::<Claims>(token, key, validation).ok()
            });
        match claims {
            Some(data) => {
                request.extensions_mut().insert(data.claims);
                Box::pin(async move { inner.call(request).await })
            }
            None => Box::pin(async move {
                let mut response = Response::new(axum::body::Body::empty());
                *response.status_mut() = StatusCode::UNAUTHORIZED;
                Ok(response)
            }),
        }
    }
}
