//! The layer's own cost per cache hit (issue 17): one request through a
//! handler that does nothing, bare and behind `TokenAuthLayer` with a warm
//! cache. The difference between the two is what the layer adds to every
//! authenticated request of a service that caches: header scan, token
//! parsing (base64, CRC-32), the digest, the cache lookup, the `Principal`
//! and the extensions.
//!
//! Run with `cargo bench -p token-client --bench hit_path`; the figures are
//! recorded in `bench/README.md`. The token is held by a [`MemoryStore`]:
//! after the first request every lookup is a hit, so the store is never
//! asked again and its kind does not matter here.

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request, Response, StatusCode, header};
use token_client::{CacheConfig, Principal, TokenAuthLayer};
use token_repository::{Grant, MemoryStore, Scopes, TokenWriter as _};
use tower::{Layer as _, Service, ServiceExt as _, service_fn};

/// The handler both variants run: reads the principal as a real handler
/// would (absent in the bare variant) and answers 200 with no body.
async fn handler(request: Request<()>) -> Result<Response<()>, Infallible> {
    black_box(request.extensions().get::<Principal>());
    Ok(Response::new(()))
}

/// A request carrying `authorization` (the same header in both variants, so
/// building it costs both the same).
fn request(authorization: &HeaderValue) -> Request<()> {
    let mut request = Request::new(());
    request
        .headers_mut()
        .insert(header::AUTHORIZATION, authorization.clone());
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

fn hit_path(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = MemoryStore::new();
    let minted = Grant {
        subject: "1f0c6d3e-8b9a-4c2d-9e7f-5a4b3c2d1e0f".into(),
        username: "alice".into(),
        name: Some("Alice Example".into()),
        email: Some("alice@example.com".into()),
        scopes: Scopes::parse("read write").expect("scopes"),
        client_id: Some("web".into()),
        access_ttl: Duration::from_secs(3600),
        refresh_ttl: None,
    }
    .mint()
    .expect("mint");
    runtime.block_on(store.issue(&minted, None)).expect("issue");
    let authorization =
        HeaderValue::try_from(format!("Bearer {}", minted.access.token.expose_secret()))
            .expect("header");

    let bare = service_fn(handler);
    let layer = TokenAuthLayer::new(store).with_cache(CacheConfig::default());
    let cached = layer.layer(service_fn(handler));
    // Warm the cache: the first request is the one miss.
    runtime.block_on(one(&cached, &authorization));
    let misses = layer.cache().expect("cache").stats().misses;

    let mut group = c.benchmark_group("hit_path");
    group.bench_function("bare handler", |b| {
        b.to_async(&runtime).iter(|| one(&bare, &authorization));
    });
    group.bench_function("TokenAuthLayer, cache hit", |b| {
        b.to_async(&runtime).iter(|| one(&cached, &authorization));
    });
    group.finish();

    // Every measured request was a hit: the figures are the hit path's.
    assert_eq!(layer.cache().expect("cache").stats().misses, misses);
}

criterion_group!(benches, hit_path);
criterion_main!(benches);
