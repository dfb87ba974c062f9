//! [`TokenAuthLayer`] and the [`TokenAuth`] service it makes.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderMap, Request, Response};
use token_repository::redis::Invalidations;
use token_repository::{
    RedisConfig, RedisTokenReader, ResourceTag, ResourceUri, Result as RepositoryResult, Timestamp,
    Token, TokenKind, TokenReader, TokenRecord,
};
use tower::{Layer, Service};

use crate::bearer::{self, Malformed};
use crate::cache::{CacheConfig, CachingReader, TokenCache};
use crate::challenge::{ChallengeContext, Challenger, Refusal, Unavailable, is_grpc};
use crate::edge;
use crate::future::ResponseFuture;
use crate::lookup::{Answer, Lookup, Measured};
use crate::principal::{self, Principal};

/// What the layer answers for a well-formed token the repository does not
/// know: unknown, expired and revoked are indistinguishable on purpose.
const UNKNOWN_TOKEN: &str = "the access token is unknown, expired or revoked";

/// Authenticates requests by their bearer token; see the
/// [crate documentation](crate) for what it answers when.
///
/// Cheap to clone (one `Arc`); every clone shares the reader and the cache.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use token_client::{CacheConfig, KeyPrefix, RedisConfig, TokenAuthLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), token_client::RepositoryError> {
/// // A Redis user that may only read token keys (see the README's ACL).
/// let redis = RedisConfig::new("redis://token-client:secret@127.0.0.1:6379/")
///     .prefix(KeyPrefix::new("ts:").expect("valid prefix"))
///     .timeout(Duration::from_millis(250));
/// let auth = TokenAuthLayer::connect(redis)?
///     .with_realm("orders")
///     .with_timeout(Duration::from_millis(250))
///     .with_cache(CacheConfig::default());
///
/// let service = tower::ServiceBuilder::new()
///     .layer(auth)
///     .service_fn(|_request: http::Request<String>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
///     });
/// # drop(service);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct TokenAuthLayer {
    auth: Arc<Authenticator>,
}

/// Everything a [`TokenAuth`] needs, shared by the layer and its services.
#[derive(Clone)]
struct Authenticator {
    /// Where lookups go: the reader, measured, behind the cache when there
    /// is one. Composed by the builders; the hot path does not branch on it.
    lookup: Arc<dyn Lookup>,
    /// The measured reader, which [`TokenAuthLayer::with_cache`] puts a
    /// cache in front of.
    reader: Measured,
    /// The invalidations of the Redis the reader reads, when the layer was
    /// made by [`TokenAuthLayer::connect`].
    invalidations: Option<Invalidations>,
    /// The cache in the chain, for its statistics.
    cache: Option<TokenCache>,
    challenger: Arc<Challenger>,
    cookie: Option<String>,
    timeout: Duration,
    optional: bool,
    /// This service's resource (RFC 8707): its URI and tag. `None` accepts
    /// tokens of any audience (development only).
    audience: Option<(String, ResourceTag)>,
    /// Whether the missing audience has been warned about (once per layer).
    warned: Arc<std::sync::Once>,
}

impl TokenAuthLayer {
    /// Default bound on one repository lookup: 250 ms.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);

    /// A layer that looks tokens up through `reader`, with realm `api`, no
    /// cookie, no cache and a 250 ms lookup timeout.
    #[must_use]
    pub fn new(reader: impl TokenReader + 'static) -> Self {
        Self::from_shared(Arc::new(reader))
    }

    /// [`Self::new`] for a reader that is already shared.
    #[must_use]
    pub fn from_shared(reader: Arc<dyn TokenReader>) -> Self {
        Self::with_reader(reader, None)
    }

    fn with_reader(reader: Arc<dyn TokenReader>, invalidations: Option<Invalidations>) -> Self {
        let reader = Measured(reader);
        Self {
            auth: Arc::new(Authenticator {
                lookup: Arc::new(reader.clone()),
                reader,
                invalidations,
                cache: None,
                challenger: Arc::clone(Challenger::shared_default()),
                cookie: None,
                timeout: Self::DEFAULT_TIMEOUT,
                optional: false,
                audience: None,
                warned: Arc::new(std::sync::Once::new()),
            }),
        }
    }

    /// A layer reading from the Redis of `config` (one server, a cluster or
    /// Sentinel; its key prefix and timeout) with a [`RedisTokenReader`]:
    /// connect as a user that may only read token keys
    /// (`redis://token-client:secret@host:6379/`). Nothing is connected yet;
    /// the reader connects on the first lookup and reconnects by itself.
    /// [`with_cache`](Self::with_cache) tracks the same Redis.
    ///
    /// # Errors
    ///
    /// [`token_repository::Error::Config`] for an unparseable URL, or TLS
    /// material with a topology other than one `rediss://` server.
    pub fn connect(config: RedisConfig) -> RepositoryResult<Self> {
        let invalidations = Invalidations::new(&config)?;
        let reader = RedisTokenReader::new(config)?;
        Ok(Self::with_reader(Arc::new(reader), Some(invalidations)))
    }

    fn update(mut self, change: impl FnOnce(&mut Authenticator)) -> Self {
        change(Arc::make_mut(&mut self.auth));
        self
    }

    /// The realm named in every challenge (`WWW-Authenticate: Bearer
    /// realm="…"`).
    ///
    /// # Panics
    ///
    /// When `realm` is not printable ASCII.
    #[must_use]
    pub fn with_realm(self, realm: &str) -> Self {
        self.update(|auth| {
            let retry_after = auth.challenger.retry_after();
            auth.challenger = Arc::new(Challenger::new(realm, retry_after));
        })
    }

    /// Also accepts the token from the cookie `name` when the request has no
    /// `Authorization: Bearer` header (for browser front ends).
    #[must_use]
    pub fn with_cookie(self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.update(|auth| auth.cookie = Some(name))
    }

    /// The longest one repository lookup may take, whatever the reader's own
    /// timeout; past it the request is answered 503.
    #[must_use]
    pub fn with_timeout(self, timeout: Duration) -> Self {
        self.update(|auth| auth.timeout = timeout)
    }

    /// The `Retry-After` of 503 answers (whole seconds, at least 1).
    #[must_use]
    pub fn with_retry_after(self, retry_after: Duration) -> Self {
        self.update(|auth| {
            auth.challenger = Arc::new((*auth.challenger).clone().with_retry_after(retry_after));
        })
    }

    /// Answers lookups from a local cache when it can (a
    /// [`CachingReader`] in front of the reader; see [`TokenCache`] for how
    /// it stays correct). On a layer made by [`connect`](Self::connect) the
    /// cache tracks the same Redis, which pushes every revocation; on a
    /// layer made by [`new`](Self::new) nothing pushes invalidations, and an
    /// entry is trusted for its whole [`CacheConfig::staleness`] (for
    /// tests). Calling it again replaces the cache.
    ///
    /// # Panics
    ///
    /// On a layer made by [`connect`](Self::connect), when called outside a
    /// Tokio runtime (the tracking task needs one).
    #[must_use]
    pub fn with_cache(self, config: CacheConfig) -> Self {
        let cache = match &self.auth.invalidations {
            Some(invalidations) => TokenCache::subscribed(invalidations, config)
                .unwrap_or_else(|error| panic!("TokenAuthLayer::with_cache: {error}")),
            None => TokenCache::local(config),
        };
        self.update(|auth| {
            auth.lookup = Arc::new(CachingReader::new(auth.reader.clone(), cache.clone()));
            auth.cache = Some(cache);
        })
    }

    /// The same layer, but requests without a valid token go through
    /// anonymously (no [`Principal`] in their extensions) instead of being
    /// refused: for public routes that greet a signed-in user. A repository
    /// failure makes the request anonymous too.
    #[must_use]
    pub fn optional(self) -> Self {
        self.update(|auth| auth.optional = true)
    }

    /// This service's resource URI (RFC 8707), as registered at the
    /// authority (`token-authority resource add URI`): tokens whose
    /// audience does not include it are refused with 401 `invalid_token`
    /// ("the token's audience does not include this service"). The URI's
    /// tag is computed once, here; each request compares 4-byte tags.
    ///
    /// Without it the layer accepts tokens of any audience, and says so in
    /// a warning when it is first applied: for development only — any
    /// service could then replay the tokens it receives to this one.
    ///
    /// # Panics
    ///
    /// When `uri` is not an acceptable resource URI (absolute, no
    /// fragment; see [`ResourceUri::parse`]).
    #[must_use]
    pub fn audience(self, uri: &str) -> Self {
        let resource = ResourceUri::parse(uri)
            .unwrap_or_else(|error| panic!("TokenAuthLayer::audience({uri:?}): {error}"));
        self.update(|auth| auth.audience = Some((resource.as_str().to_owned(), resource.tag())))
    }

    /// The cache, when one is configured (for its statistics).
    #[must_use]
    pub fn cache(&self) -> Option<&TokenCache> {
        self.auth.cache.as_ref()
    }
}

impl fmt::Debug for TokenAuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.auth.fmt(f)
    }
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenAuthLayer")
            .field("lookup", &self.lookup)
            .field("challenger", &self.challenger)
            .field("cookie", &self.cookie)
            .field("timeout", &self.timeout)
            .field("optional", &self.optional)
            .field("audience", &self.audience.as_ref().map(|(uri, _)| uri))
            .finish()
    }
}

impl<S> Layer<S> for TokenAuthLayer {
    type Service = TokenAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        if self.auth.audience.is_none() {
            self.auth.warned.call_once(|| {
                tracing::warn!(
                    "TokenAuthLayer without .audience(…): tokens of any audience are accepted \
                     (development only; set this service's resource URI)"
                );
            });
        }
        TokenAuth {
            inner,
            auth: Arc::clone(&self.auth),
        }
    }
}

/// The service made by [`TokenAuthLayer`]: authenticates each request, then
/// calls the inner service with the [`Principal`] in the request's
/// extensions, or answers the refusal itself.
#[derive(Clone)]
pub struct TokenAuth<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S> TokenAuth<S> {
    /// Wraps `inner` with the defaults of [`TokenAuthLayer::new`].
    #[must_use]
    pub fn new(inner: S, reader: impl TokenReader + 'static) -> Self {
        TokenAuthLayer::new(reader).layer(inner)
    }

    /// [`TokenAuthLayer::new`].
    #[must_use]
    pub fn layer(reader: impl TokenReader + 'static) -> TokenAuthLayer {
        TokenAuthLayer::new(reader)
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

impl<S: fmt::Debug> fmt::Debug for TokenAuth<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenAuth")
            .field("inner", &self.inner)
            .field("auth", &self.auth)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for TokenAuth<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let auth = &self.auth;
        let grpc = is_grpc(request.headers());
        let now = Timestamp::now();
        let token = match auth.credential(request.headers(), now) {
            // A cache hit by the text: decided here, the handler called now,
            // by the service that was ready (no clone, no box).
            Ok(Credential::Known(record)) => match auth.admit(record, now) {
                Ok(principal) => {
                    edge::authenticated();
                    principal::insert(request.extensions_mut(), &auth.challenger, principal);
                    return ResponseFuture::inner(self.inner.call(request));
                }
                Err(refusal) => return auth.refuse(refusal, grpc, &mut self.inner, request),
            },
            Ok(Credential::Token(token)) => token,
            Err(refusal) => return auth.refuse(refusal, grpc, &mut self.inner, request),
        };
        // The lookup awaits: the ready service goes with the request, its
        // clone (maybe not ready) stays for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = Arc::clone(auth);
        ResponseFuture::waiting(async move {
            match auth.authenticate(&token).await {
                Ok(principal) => {
                    edge::authenticated();
                    principal::insert(request.extensions_mut(), &auth.challenger, principal);
                    inner.call(request).await
                }
                Err(refusal) if auth.optional => {
                    edge::let_through(&refusal);
                    ChallengeContext::insert(request.extensions_mut(), &auth.challenger);
                    inner.call(request).await
                }
                Err(refusal) => Ok(edge::refuse(&auth.challenger, &refusal, grpc)),
            }
        })
    }
}

/// What a request's credentials lead to before any await.
enum Credential {
    /// The record of the very token the request carries, recalled from the
    /// cache by its text.
    Known(TokenRecord),
    /// A well-formed access token, to look up.
    Token(Token),
}

impl Authenticator {
    /// The request's access token: its record when the cache recalls it by
    /// the text (no parsing), else the token, checked without I/O.
    fn credential(&self, headers: &HeaderMap, now: Timestamp) -> Result<Credential, Refusal> {
        let text = match bearer::find(headers, self.cookie.as_deref()) {
            Ok(Some(text)) => text,
            Ok(None) => return Err(Refusal::Missing),
            Err(Malformed(why)) => return Err(Refusal::InvalidRequest(why)),
        };
        if let Some(record) = self.lookup.recall(text, now) {
            return Ok(Credential::Known(record));
        }
        let token = Token::parse(text).map_err(|_| Refusal::InvalidToken {
            description: "the access token is malformed",
            token_id: None,
        })?;
        if token.kind() != TokenKind::Access {
            return Err(Refusal::InvalidToken {
                description: "a refresh token is not an access token",
                token_id: Some(token.id()),
            });
        }
        Ok(Credential::Token(token))
    }

    /// A request refused before any await: answered here, or let through
    /// anonymously (to the service that was ready) by an optional layer.
    fn refuse<S, ReqBody, ResBody>(
        &self,
        refusal: Refusal,
        grpc: bool,
        inner: &mut S,
        mut request: Request<ReqBody>,
    ) -> ResponseFuture<S::Future, ResBody, S::Error>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
        ResBody: Default,
    {
        if self.optional {
            edge::let_through(&refusal);
            ChallengeContext::insert(request.extensions_mut(), &self.challenger);
            ResponseFuture::inner(inner.call(request))
        } else {
            ResponseFuture::ready(edge::refuse(&self.challenger, &refusal, grpc))
        }
    }

    /// The principal of `record` if it is live at `now` and for this
    /// service's audience.
    fn admit(&self, record: TokenRecord, now: Timestamp) -> Result<Principal, Refusal> {
        if !record.is_live_at(now) {
            return Err(Refusal::InvalidToken {
                description: UNKNOWN_TOKEN,
                token_id: Some(record.id),
            });
        }
        match self.audience {
            Some((_, tag)) if !record.audience.permits(tag) => Err(Refusal::WrongAudience {
                token_id: record.id,
            }),
            _ => Ok(Principal::from(record)),
        }
    }

    /// The principal of a live token, through the lookup chain, within the
    /// timeout.
    async fn authenticate(&self, token: &Token) -> Result<Principal, Refusal> {
        let token_id = token.id();
        // An answer at hand (a cache hit) needs no deadline: no timer, no clock.
        let reply = match self.lookup.lookup(token) {
            Answer::Ready(Some(reply)) => Ok(reply),
            pending => tokio::time::timeout(self.timeout, pending).await,
        };
        match reply {
            Ok(Ok(Some(record))) => self.admit(record, Timestamp::now()),
            Ok(Ok(None)) => Err(Refusal::InvalidToken {
                description: UNKNOWN_TOKEN,
                token_id: Some(token_id),
            }),
            Ok(Err(error)) => Err(Refusal::Unavailable {
                token_id,
                cause: Unavailable::Failed(error),
            }),
            Err(_) => Err(Refusal::Unavailable {
                token_id,
                cause: Unavailable::TimedOut(self.timeout),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use http::StatusCode;
    use http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, RETRY_AFTER, WWW_AUTHENTICATE};
    use token_repository::{
        Error, Grant, Holder, MemoryStore, Minted, Scopes, TokenRecord, TokenWriter,
    };
    use tower::{ServiceBuilder, ServiceExt as _};

    use super::*;
    use crate::CacheConfig;

    /// How the test reader answers.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Behaviour {
        /// From the memory store.
        Store,
        /// With a store failure.
        Fail,
        /// Never.
        Hang,
        /// With the store's record, made to look expired.
        Expired,
    }

    /// A reader that counts lookups and behaves as told.
    #[derive(Debug)]
    struct TestReader {
        store: MemoryStore,
        behaviour: Behaviour,
        lookups: AtomicUsize,
    }

    #[async_trait]
    impl TokenReader for TestReader {
        async fn lookup(&self, token: &Token) -> RepositoryResult<Option<TokenRecord>> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            match self.behaviour {
                Behaviour::Store => self.store.lookup(token).await,
                Behaviour::Fail => Err(Error::Timeout(Duration::from_millis(1))),
                Behaviour::Hang => std::future::pending().await,
                Behaviour::Expired => Ok(self.store.lookup(token).await?.map(|mut record| {
                    record.expires_at = Timestamp::from_unix_millis(1);
                    record
                })),
            }
        }

        async fn ping(&self) -> RepositoryResult<()> {
            Ok(())
        }
    }

    struct Fixture {
        reader: Arc<TestReader>,
        minted: Minted,
    }

    impl Fixture {
        async fn new(behaviour: Behaviour) -> Self {
            Self::with_audience(behaviour, token_repository::Audience::unrestricted()).await
        }

        async fn with_audience(behaviour: Behaviour, audience: token_repository::Audience) -> Self {
            let store = MemoryStore::new();
            let minted = Grant {
                holder: Holder {
                    subject: "user-1".into(),
                    username: "alice".into(),
                    name: Some("Alice".into()),
                    email: Some("alice@example.com".into()),
                    scopes: Scopes::parse("read write").expect("scopes"),
                    client_id: Some("web".into()),
                },
                access_ttl: Duration::from_secs(600),
                refresh_ttl: Some(Duration::from_secs(3600)),
                audience,
            }
            .mint()
            .expect("mint");
            store.issue(&minted, None).await.expect("issue");
            Self {
                reader: Arc::new(TestReader {
                    store,
                    behaviour,
                    lookups: AtomicUsize::new(0),
                }),
                minted,
            }
        }

        fn layer(&self) -> TokenAuthLayer {
            TokenAuthLayer::from_shared(Arc::clone(&self.reader) as Arc<dyn TokenReader>)
                .with_realm("test")
        }

        fn access(&self) -> &str {
            self.minted.access.token.expose_secret()
        }

        fn refresh(&self) -> &str {
            self.minted
                .refresh
                .as_ref()
                .expect("refresh token")
                .token
                .expose_secret()
        }

        fn lookups(&self) -> usize {
            self.reader.lookups.load(Ordering::SeqCst)
        }
    }

    /// The inner service: answers 200 with the principal's username, or
    /// `anonymous`.
    async fn echo(request: Request<()>) -> Result<Response<String>, Infallible> {
        let who = request.extensions().get::<Principal>().map_or_else(
            || "anonymous".to_owned(),
            |principal| principal.holder.username.clone(),
        );
        Ok(Response::new(who))
    }

    async fn send(layer: TokenAuthLayer, request: Request<()>) -> Response<String> {
        ServiceBuilder::new()
            .layer(layer)
            .service_fn(echo)
            .oneshot(request)
            .await
            .expect("infallible")
    }

    fn bearer(token: &str) -> Request<()> {
        Request::get("/")
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .body(())
            .expect("request")
    }

    fn challenge(response: &Response<String>) -> &str {
        response
            .headers()
            .get(WWW_AUTHENTICATE)
            .expect("a challenge")
            .to_str()
            .expect("ascii")
    }

    /// Asserts an RFC 6750 `invalid_token` answer that never reached the
    /// handler.
    fn assert_invalid_token(response: &Response<String>) {
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.body().is_empty(), "the handler ran");
        let challenge = challenge(response);
        assert!(
            challenge.starts_with("Bearer realm=\"test\", "),
            "{challenge}"
        );
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    }

    /// A live access token reaches the inner service with its principal.
    #[tokio::test]
    async fn valid_token_reaches_the_service_with_its_principal() {
        let fixture = Fixture::new(Behaviour::Store).await;
        let service = ServiceBuilder::new().layer(fixture.layer()).service_fn(
            |request: Request<()>| async move {
                let principal = request.extensions().get::<Principal>().cloned();
                Ok::<_, Infallible>(Response::new(principal))
            },
        );
        let response = service
            .oneshot(bearer(fixture.access()))
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
        let principal = response.into_body().expect("a principal");
        let record = &fixture.minted.access.record;
        assert_eq!(principal.holder.subject, "user-1");
        assert_eq!(principal.holder.username, "alice");
        assert_eq!(principal.holder.name.as_deref(), Some("Alice"));
        assert_eq!(principal.holder.email.as_deref(), Some("alice@example.com"));
        assert!(principal.has_scope("write"));
        assert_eq!(principal.token_id, record.id);
        assert_eq!(principal.holder.client_id.as_deref(), Some("web"));
        assert_eq!(principal.expires_at, record.expires_at);
    }

    /// No credentials (or another scheme) is a bare challenge without an
    /// error code (RFC 6750 §3.1), and costs no lookup.
    #[tokio::test]
    async fn missing_token_gets_a_bare_challenge() {
        let fixture = Fixture::new(Behaviour::Store).await;
        let basic = Request::get("/")
            .header(AUTHORIZATION, "Basic dXNlcjpwYXNz")
            .body(())
            .expect("request");
        for request in [Request::new(()), basic] {
            let response = send(fixture.layer(), request).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(challenge(&response), "Bearer realm=\"test\"");
            assert!(response.body().is_empty());
        }
        assert_eq!(fixture.lookups(), 0);
    }

    /// Garbage, a wrong checksum and a refresh token are `invalid_token`,
    /// decided locally without a repository lookup; the token is never
    /// echoed.
    #[tokio::test]
    async fn malformed_tokens_are_refused_locally() {
        let fixture = Fixture::new(Behaviour::Store).await;
        let access = fixture.access().to_owned();
        let mut typo = access.clone().into_bytes();
        typo[20] = if typo[20] == b'A' { b'B' } else { b'A' };
        let typo = String::from_utf8(typo).expect("ascii");
        for presented in [
            "garbage".to_owned(),
            typo,
            access[..access.len() - 1].to_owned(),
            fixture.refresh().to_owned(),
        ] {
            let response = send(fixture.layer(), bearer(&presented)).await;
            assert_invalid_token(&response);
            for value in response.headers().values() {
                let value = value.to_str().expect("ascii");
                assert!(!value.contains(&presented), "echoed the token: {value}");
            }
        }
        assert_eq!(fixture.lookups(), 0, "no lookup for a malformed token");
    }

    /// Two credentials, two headers and an empty token are malformed
    /// requests: 400 `invalid_request`.
    #[tokio::test]
    async fn malformed_requests_are_400() {
        let fixture = Fixture::new(Behaviour::Store).await;
        let token = fixture.access();
        let two_headers = Request::get("/")
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .body(())
            .expect("request");
        let two_credentials = bearer(&format!("{token} {token}"));
        let empty = Request::get("/")
            .header(AUTHORIZATION, "Bearer ")
            .body(())
            .expect("request");
        for request in [two_headers, two_credentials, empty] {
            let response = send(fixture.layer(), request).await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
            assert!(challenge(&response).contains("error=\"invalid_request\""));
            assert!(!challenge(&response).contains(token));
        }
    }

    /// Revoked (unknown) tokens and records that have expired by this
    /// host's clock are `invalid_token`.
    #[tokio::test]
    async fn revoked_and_expired_tokens_are_invalid() {
        let fixture = Fixture::new(Behaviour::Store).await;
        assert_eq!(
            send(fixture.layer(), bearer(fixture.access()))
                .await
                .status(),
            StatusCode::OK
        );
        fixture
            .reader
            .store
            .revoke(&fixture.minted.access.token)
            .await
            .expect("revoke");
        assert_invalid_token(&send(fixture.layer(), bearer(fixture.access())).await);

        let expired = Fixture::new(Behaviour::Expired).await;
        assert_invalid_token(&send(expired.layer(), bearer(expired.access())).await);
    }

    /// A failing repository is a 503 with `Retry-After`, never a pass.
    #[tokio::test]
    async fn repository_failure_is_503() {
        let fixture = Fixture::new(Behaviour::Fail).await;
        let layer = fixture.layer().with_retry_after(Duration::from_secs(7));
        let response = send(layer, bearer(fixture.access())).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[RETRY_AFTER], "7");
        assert!(response.body().is_empty(), "the handler ran");
    }

    /// A repository that never answers is a 503 after the configured
    /// timeout, not an unbounded wait.
    #[tokio::test(start_paused = true)]
    async fn slow_repository_is_503_after_the_timeout() {
        let fixture = Fixture::new(Behaviour::Hang).await;
        let layer = fixture.layer().with_timeout(Duration::from_millis(250));
        let started = tokio::time::Instant::now();
        let response = send(layer, bearer(fixture.access())).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(started.elapsed(), Duration::from_millis(250));
    }

    /// The configured cookie carries the token when there is no
    /// `Authorization` header; unconfigured cookies are ignored.
    #[tokio::test]
    async fn cookie_when_configured() {
        let fixture = Fixture::new(Behaviour::Store).await;
        let request = || {
            Request::get("/")
                .header(COOKIE, format!("theme=dark; session={}", fixture.access()))
                .body(())
                .expect("request")
        };
        let with_cookie = fixture.layer().with_cookie("session");
        assert_eq!(send(with_cookie, request()).await.body(), "alice");
        assert_eq!(
            send(fixture.layer(), request()).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }

    /// An optional layer lets anonymous, invalid and unverifiable requests
    /// through without a principal, and still authenticates valid ones.
    #[tokio::test]
    async fn optional_layer_passes_anonymous_requests() {
        let fixture = Fixture::new(Behaviour::Store).await;
        let optional = fixture.layer().optional();
        assert_eq!(
            send(optional.clone(), bearer(fixture.access()))
                .await
                .body(),
            "alice"
        );
        assert_eq!(
            send(optional.clone(), Request::new(())).await.body(),
            "anonymous"
        );
        assert_eq!(
            send(optional.clone(), bearer("garbage")).await.body(),
            "anonymous"
        );
        assert_eq!(send(optional, bearer("a b")).await.body(), "anonymous");
        let failing = Fixture::new(Behaviour::Fail).await;
        let response = send(failing.layer().optional(), bearer(failing.access())).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.body(), "anonymous");
    }

    /// A refusal after the layer (the scope guard) names the realm of the
    /// layer that passed the request: carried by the principal on a miss
    /// and on a cache hit, by a context of its own when an optional layer
    /// let the request through anonymously, and the inner layer's when an
    /// outer one let it through first.
    #[tokio::test]
    async fn refusals_after_the_layer_name_its_realm() {
        let fixture = Fixture::new(Behaviour::Store).await;
        let guarded = |layer: TokenAuthLayer, request: Request<()>| {
            ServiceBuilder::new()
                .layer(layer)
                .layer(crate::RequireScopeLayer::any_of(["admin"]))
                .service_fn(echo)
                .oneshot(request)
        };
        let cached = fixture.layer().with_cache(CacheConfig::default());
        for round in ["miss", "hit"] {
            let response = guarded(cached.clone(), bearer(fixture.access()))
                .await
                .expect("infallible");
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{round}");
            assert!(
                challenge(&response)
                    .starts_with("Bearer realm=\"test\", error=\"insufficient_scope\""),
                "{round}: {}",
                challenge(&response)
            );
        }
        assert_eq!(fixture.lookups(), 1, "the second request was a hit");

        let anonymous = guarded(fixture.layer().optional(), Request::new(()))
            .await
            .expect("infallible");
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(challenge(&anonymous), "Bearer realm=\"test\"");

        let failing = Fixture::new(Behaviour::Fail).await;
        let outer = failing.layer().optional().with_realm("outer");
        let response = ServiceBuilder::new()
            .layer(outer)
            .layer(fixture.layer())
            .layer(crate::RequireScopeLayer::any_of(["admin"]))
            .service_fn(echo)
            .oneshot(bearer(fixture.access()))
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(
            challenge(&response).starts_with("Bearer realm=\"test\", "),
            "{}",
            challenge(&response)
        );
    }

    /// gRPC requests are refused with gRPC statuses in a trailers-only
    /// response.
    #[tokio::test]
    async fn grpc_requests_get_grpc_statuses() {
        let grpc = |token: Option<&str>| {
            let mut request =
                Request::post("/pkg.Service/Method").header(CONTENT_TYPE, "application/grpc");
            if let Some(token) = token {
                request = request.header(AUTHORIZATION, format!("Bearer {token}"));
            }
            request.body(()).expect("request")
        };
        let fixture = Fixture::new(Behaviour::Store).await;
        let missing = send(fixture.layer(), grpc(None)).await;
        assert_eq!(missing.status(), StatusCode::OK);
        assert_eq!(missing.headers()["grpc-status"], "16");
        assert_eq!(
            send(fixture.layer(), grpc(Some("garbage"))).await.headers()["grpc-status"],
            "16"
        );
        assert_eq!(
            send(fixture.layer(), grpc(Some(fixture.access())))
                .await
                .body(),
            "alice"
        );
        let failing = Fixture::new(Behaviour::Fail).await;
        let unavailable = send(failing.layer(), grpc(Some(failing.access()))).await;
        assert_eq!(unavailable.headers()["grpc-status"], "14");
    }

    /// With a cache, repeated requests cost one lookup.
    #[tokio::test]
    async fn cache_spares_the_repository() {
        let fixture = Fixture::new(Behaviour::Store).await;
        let layer = fixture.layer().with_cache(CacheConfig::new());
        for _ in 0..5 {
            assert_eq!(
                send(layer.clone(), bearer(fixture.access())).await.body(),
                "alice"
            );
        }
        assert_eq!(fixture.lookups(), 1);
        assert_eq!(layer.cache().expect("cache").stats().hits, 4);
    }

    /// A hit by the text alone answers only for the very token the entry
    /// was filled for: a forged token naming the same session (a valid
    /// checksum, another secret) is looked up and refused, a copy with one
    /// character changed is refused as malformed without a lookup, the
    /// session's refresh token is still refused, and a cleared cache asks
    /// again.
    #[tokio::test]
    async fn a_hit_by_the_text_answers_only_its_own_token() {
        let fixture = Fixture::new(Behaviour::Store).await;
        let layer = fixture.layer().with_cache(CacheConfig::new());
        let cache = layer.cache().expect("cache").clone();
        for _ in 0..2 {
            assert_eq!(
                send(layer.clone(), bearer(fixture.access())).await.body(),
                "alice"
            );
        }
        assert_eq!((fixture.lookups(), cache.stats().hits), (1, 1));

        let family = fixture.minted.access.token.family().expect("format 2");
        let forged = Token::forge(
            TokenKind::Access,
            &token_repository::SubjectTag::of("user-1"),
            family,
            &[9; 32],
        );
        let response = send(layer.clone(), bearer(forged.expose_secret())).await;
        assert_invalid_token(&response);
        assert_eq!(fixture.lookups(), 2, "the forged token was looked up");

        let mut altered = fixture.access().to_owned();
        let last = altered.pop().expect("text");
        altered.push(if last == 'A' { 'B' } else { 'A' });
        let response = send(layer.clone(), bearer(&altered)).await;
        assert_invalid_token(&response);
        assert!(
            challenge(&response).contains("malformed"),
            "{}",
            challenge(&response)
        );
        assert_eq!(fixture.lookups(), 2, "refused without a lookup");

        let response = send(layer.clone(), bearer(fixture.refresh())).await;
        assert_invalid_token(&response);
        assert_eq!(fixture.lookups(), 2);

        assert_eq!(cache.stats().hits, 1, "none of them was a hit");
        cache.clear();
        assert_eq!(
            send(layer.clone(), bearer(fixture.access())).await.body(),
            "alice"
        );
        assert_eq!(fixture.lookups(), 3, "a cleared cache asks again");
    }

    /// The request goes to the inner service instance that was polled
    /// ready, not to a fresh clone (tower's `call` contract).
    #[tokio::test]
    async fn calls_the_service_that_was_ready() {
        #[derive(Debug)]
        struct NeedsReady {
            ready: bool,
        }
        impl Clone for NeedsReady {
            fn clone(&self) -> Self {
                Self { ready: false }
            }
        }
        impl Service<Request<()>> for NeedsReady {
            type Response = Response<String>;
            type Error = Infallible;
            type Future = std::future::Ready<Result<Response<String>, Infallible>>;

            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
                self.ready = true;
                Poll::Ready(Ok(()))
            }

            fn call(&mut self, _: Request<()>) -> Self::Future {
                assert!(self.ready, "called without poll_ready");
                std::future::ready(Ok(Response::new("ok".to_owned())))
            }
        }
        let fixture = Fixture::new(Behaviour::Store).await;
        let service = fixture.layer().layer(NeedsReady { ready: false });
        let response = service
            .oneshot(bearer(fixture.access()))
            .await
            .expect("infallible");
        assert_eq!(response.body(), "ok");
    }

    /// A request decided before any await (a cache hit, a refusal) goes to
    /// the ready service itself: the inner service is not cloned (an axum
    /// route allocates a clone) and nothing is boxed. Only a lookup takes
    /// the ready instance along and leaves a clone behind.
    #[tokio::test]
    async fn a_request_decided_at_once_clones_no_service() {
        #[derive(Debug)]
        struct CountsClones(Arc<AtomicUsize>);
        impl Clone for CountsClones {
            fn clone(&self) -> Self {
                self.0.fetch_add(1, Ordering::SeqCst);
                Self(Arc::clone(&self.0))
            }
        }
        impl Service<Request<()>> for CountsClones {
            type Response = Response<String>;
            type Error = Infallible;
            type Future = std::future::Ready<Result<Response<String>, Infallible>>;

            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
                Poll::Ready(Ok(()))
            }

            fn call(&mut self, _: Request<()>) -> Self::Future {
                std::future::ready(Ok(Response::new("ok".to_owned())))
            }
        }
        let fixture = Fixture::new(Behaviour::Store).await;
        let clones = Arc::new(AtomicUsize::new(0));
        let mut service = fixture
            .layer()
            .with_cache(CacheConfig::default())
            .layer(CountsClones(Arc::clone(&clones)));
        let mut send = async |request| {
            let ready = service.ready().await.expect("infallible");
            ready.call(request).await.expect("infallible").status()
        };
        assert_eq!(send(bearer(fixture.access())).await, StatusCode::OK);
        assert_eq!(
            clones.load(Ordering::SeqCst),
            1,
            "the lookup leaves a clone"
        );
        assert_eq!(send(bearer(fixture.access())).await, StatusCode::OK);
        assert_eq!(send(Request::new(())).await, StatusCode::UNAUTHORIZED);
        assert_eq!(send(bearer("garbage")).await, StatusCode::UNAUTHORIZED);
        assert_eq!(fixture.lookups(), 1, "the second request was a cache hit");
        assert_eq!(
            clones.load(Ordering::SeqCst),
            1,
            "a hit and two refusals cloned nothing"
        );
    }

    /// The layer and its service can be shared across threads and cloned,
    /// as axum and tonic require.
    #[test]
    fn layer_and_service_are_send_sync_clone() {
        fn assert_bounds<T: Send + Sync + Clone + 'static>() {}
        assert_bounds::<TokenAuthLayer>();
        assert_bounds::<
            TokenAuth<tower::util::BoxCloneSyncService<Request<()>, Response<String>, Infallible>>,
        >();
    }

    /// A layer with an audience lets through tokens for it (cached or not)
    /// and refuses others with `invalid_token` and a description that
    /// names no audience; tokens from before audiences pass everywhere.
    #[tokio::test]
    async fn audience_is_checked_on_every_path() {
        let orders = ResourceUri::parse("https://orders.example").expect("valid");
        let billing = "https://billing.example/";
        let audience = token_repository::Audience::of([orders.tag()]).expect("small");
        let fixture = Fixture::with_audience(Behaviour::Store, audience).await;
        let cached = fixture
            .layer()
            .audience("https://ORDERS.example:443/")
            .with_cache(CacheConfig::default());
        for _ in 0..2 {
            let response = send(cached.clone(), bearer(fixture.access())).await;
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.body(), "alice");
        }
        assert_eq!(fixture.lookups(), 1, "the second request was a cache hit");
        let elsewhere = fixture
            .layer()
            .audience(billing)
            .with_cache(CacheConfig::default());
        for _ in 0..2 {
            let response = send(elsewhere.clone(), bearer(fixture.access())).await;
            assert_invalid_token(&response);
            let challenge = challenge(&response);
            assert!(
                challenge.contains("the token's audience does not include this service"),
                "{challenge}"
            );
            assert!(!challenge.contains("orders"), "{challenge}");
        }
        assert_eq!(fixture.lookups(), 2, "the refused token was cached too");
        let response = send(fixture.layer(), bearer(fixture.access())).await;
        assert_eq!(response.status(), StatusCode::OK, "no audience: any token");
        let legacy = Fixture::new(Behaviour::Store).await;
        let response = send(legacy.layer().audience(billing), bearer(legacy.access())).await;
        assert_eq!(response.status(), StatusCode::OK, "unrestricted record");
    }

    /// An unacceptable resource URI is a configuration error, caught when
    /// the layer is built.
    #[test]
    #[should_panic(expected = "must not have a fragment")]
    fn audience_must_be_a_resource_uri() {
        let reader = TestReader {
            store: MemoryStore::new(),
            behaviour: Behaviour::Store,
            lookups: AtomicUsize::new(0),
        };
        let _ = TokenAuthLayer::new(reader).audience("https://orders.example/#x");
    }
}
