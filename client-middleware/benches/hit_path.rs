//! The layer's own cost per cache hit (issue 17): one request through a
//! handler that does nothing, bare and behind `TokenAuthLayer` with a warm
//! cache. The difference between the two is what the layer adds to every
//! authenticated request of a service that caches: header scan, the
//! session id decoded from the text, the digest, the cache lookup, the
//! `Principal` and the extensions.
//!
//! Two groups: `hit_path` sends one token (everything stays in the CPU's
//! caches), `hit_path_10k_tokens` cycles through 10 000 (the cache's
//! entries and holders come from memory, as in a service with many users).
//!
//! Run with `cargo bench -p token-client --bench hit_path`; the figures are
//! recorded in `bench/README.md`. The tokens are held by a [`MemoryStore`]:
//! after each token's first request every lookup is a hit, so the store is
//! never asked again and its kind does not matter here.

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request, Response, StatusCode, header};
use token_client::{CacheConfig, Principal, TokenAuthLayer};
use token_repository::{
    Audience, Grant, Holder, MemoryStore, ResourceUri, Scopes, TokenWriter as _,
};
use tower::{Layer as _, Service, ServiceExt as _, service_fn};

/// The handler both variants run: reads the principal as a real handler
/// would (absent in the bare variant) and answers 200 with no body.
async fn handler(request: Request<()>) -> Result<Response<()>, Infallible> {
    black_box(request.extensions().get::<Principal>());
    Ok(Response::new(()))
}

/// A request carrying `authorization` (the same header in both variants, so
/// building it costs both the same). The value is copied, as a server
/// copies it out of the bytes it read: the layer then reads it from the
/// CPU's cache, where a server's freshly read request would be too.
fn request(authorization: &HeaderValue) -> Request<()> {
    let mut request = Request::new(());
    request.headers_mut().insert(
        header::AUTHORIZATION,
        HeaderValue::from_bytes(authorization.as_bytes()).expect("a valid header"),
    );
    request
}

/// One request through a clone of `service` (as hyper-util and axum call
/// a service: a clone per request), which must answer 200.
async fn one<S>(service: &S, authorization: &HeaderValue)
where
    S: Service<Request<()>, Response = Response<()>, Error = Infallible> + Clone,
{
    let response = service
        .clone()
        .oneshot(request(authorization))
        .await
        .unwrap_or_else(|never| match never {});
    assert_eq!(response.status(), StatusCode::OK);
}

/// The service's resource URI, and the audience of the token.
const RESOURCE: &str = "https://orders.example";

/// A token of its own for `username`, issued into `store`, as the
/// `Authorization` header that carries it.
fn issue(runtime: &tokio::runtime::Runtime, store: &MemoryStore, username: &str) -> HeaderValue {
    let minted = Grant {
        holder: Holder {
            subject: format!("1f0c6d3e-8b9a-4c2d-9e7f-{username}"),
            username: username.into(),
            name: Some("Alice Example".into()),
            email: Some("alice@example.com".into()),
            scopes: Scopes::parse("read write").expect("scopes"),
            client_id: Some("web".into()),
        },
        access_ttl: Duration::from_secs(3600),
        refresh_ttl: None,
        audience: Audience::of([ResourceUri::parse(RESOURCE).expect("uri").tag()])
            .expect("one resource"),
    }
    .mint()
    .expect("mint");
    runtime.block_on(store.issue(&minted, None)).expect("issue");
    HeaderValue::try_from(format!("Bearer {}", minted.access.token.expose_secret()))
        .expect("header")
}

/// Tokens the second group cycles through: as many as the bench's rows 1–3
/// (`bench/run validation`), so that entries and holders come from memory
/// rather than the CPU's caches, as they do in a service with many users.
const MANY: usize = 10_000;

fn hit_path(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = MemoryStore::new();
    let authorization = issue(&runtime, &store, "alice");
    let many: Vec<HeaderValue> = (0..MANY)
        .map(|user| issue(&runtime, &store, &format!("user{user}")))
        .collect();

    let bare = service_fn(handler);
    // As a deployment: the service's audience checked on every hit.
    // The staleness bound is raised above the benchmark's length (a minute
    // or more): past the default 30 s every entry would miss once more.
    let layer = TokenAuthLayer::new(store)
        .audience(RESOURCE)
        .with_cache(CacheConfig::default().staleness(Duration::from_secs(3600)));
    let cached = layer.layer(service_fn(handler));
    // Warm the cache: the first request of each token is its one miss.
    runtime.block_on(async {
        one(&cached, &authorization).await;
        for authorization in &many {
            one(&cached, authorization).await;
        }
    });
    let misses = layer.cache().expect("cache").stats().misses;

    let mut group = c.benchmark_group("hit_path");
    group.bench_function("bare handler", |b| {
        b.to_async(&runtime).iter(|| one(&bare, &authorization));
    });
    group.bench_function("TokenAuthLayer, cache hit", |b| {
        b.to_async(&runtime).iter(|| one(&cached, &authorization));
    });
    group.finish();

    let mut group = c.benchmark_group("hit_path_10k_tokens");
    let mut next = 0;
    let mut cycle = || {
        // A stride through the tokens, as 32 clients each walking the list
        // from its own offset would visit them.
        next = (next + 7919) % MANY;
        &many[next]
    };
    group.bench_function("bare handler", |b| {
        b.to_async(&runtime).iter(|| one(&bare, cycle()));
    });
    group.bench_function("TokenAuthLayer, cache hit", |b| {
        b.to_async(&runtime).iter(|| one(&cached, cycle()));
    });
    group.finish();

    // Every measured request was a hit: the figures are the hit path's.
    assert_eq!(layer.cache().expect("cache").stats().misses, misses);
}

criterion_group!(benches, hit_path);
criterion_main!(benches);
