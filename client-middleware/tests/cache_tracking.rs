//! The tracking cache against a private redis-server: invalidations are
//! pushed by Redis, a lost or frozen connection clears and bypasses the
//! cache until tracking is back.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use token_client::{CacheConfig, TokenAuthLayer, TokenCache};
use token_repository::{Grant, Holder, Minted, RedisConfig, RedisStore, Scopes, TokenWriter as _};
use token_test_harness::{RedisServer, wait_until_async};
use tower::{ServiceBuilder, ServiceExt as _};

const TIMEOUT: Duration = Duration::from_millis(250);

struct Fixture {
    redis: RedisServer,
    store: RedisStore,
    cache: TokenCache,
    layer: TokenAuthLayer,
}

impl Fixture {
    /// A Redis, the authority's store, and a layer with a tracking cache
    /// whose staleness bound (10 min) no test waits for: the Redis settings
    /// written once, for the reader and the cache.
    async fn start(config: CacheConfig) -> Self {
        let redis = RedisServer::start();
        let store = RedisStore::new(RedisConfig::new(redis.url()).timeout(Duration::from_secs(2)))
            .expect("store");
        let layer = TokenAuthLayer::connect(RedisConfig::new(redis.url()).timeout(TIMEOUT))
            .expect("layer")
            .with_timeout(TIMEOUT)
            .with_cache(config.staleness(Duration::from_secs(600)));
        let cache = layer.cache().expect("a cache").clone();
        let fixture = Self {
            redis,
            store,
            cache,
            layer,
        };
        fixture.wait_until_active(true).await;
        fixture
    }

    async fn wait_until_active(&self, active: bool) -> Duration {
        let waited = wait_until_async(Duration::from_secs(5), tokio::time::sleep, || async {
            (self.cache.is_active() == active).then_some(())
        })
        .await;
        waited
            .unwrap_or_else(|| panic!("the cache never became {active}"))
            .1
    }

    async fn issue(&self) -> Minted {
        let minted = Grant {
            holder: Holder {
                subject: "user-1".into(),
                username: "alice".into(),
                name: None,
                email: None,
                scopes: Scopes::parse("read").expect("scopes"),
                client_id: None,
            },
            access_ttl: Duration::from_secs(600),
            refresh_ttl: None,
            audience: token_repository::Audience::unrestricted(),
        }
        .mint()
        .expect("mint");
        self.store.issue(&minted, None).await.expect("issue");
        minted
    }

    async fn status(&self, minted: &Minted) -> StatusCode {
        let token = minted.access.token.expose_secret();
        let request = Request::get("/")
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .expect("request");
        ServiceBuilder::new()
            .layer(self.layer.clone())
            .service_fn(|_: Request<()>| async {
                Ok::<_, Infallible>(Response::new(String::new()))
            })
            .oneshot(request)
            .await
            .expect("infallible")
            .status()
    }

    /// Looks the token up twice; the second answer must come from the cache.
    async fn warm(&self, minted: &Minted) {
        assert_eq!(self.status(minted).await, StatusCode::OK);
        let hits = self.cache.stats().hits;
        assert_eq!(self.status(minted).await, StatusCode::OK);
        assert_eq!(
            self.cache.stats().hits,
            hits + 1,
            "not answered from the cache"
        );
    }

    async fn admin(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.redis.admin_url())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("admin")
    }
}

/// A revocation at the repository is pushed: the entry is gone within
/// 100 ms and the token is refused, long before the staleness bound.
#[tokio::test]
async fn revocation_is_pushed_to_the_cache() {
    let fixture = Fixture::start(CacheConfig::new()).await;
    let minted = fixture.issue().await;
    fixture.warm(&minted).await;

    fixture
        .store
        .revoke(&minted.access.token)
        .await
        .expect("revoke");
    let revoked = Instant::now();
    let pushed = wait_until_async(Duration::from_secs(1), tokio::time::sleep, || async {
        (fixture.cache.stats().entries == 0).then_some(())
    })
    .await;
    assert!(pushed.is_some(), "the invalidation never arrived");
    let latency = revoked.elapsed();
    println!("invalidation applied {latency:?} after the revocation returned");
    assert!(latency < Duration::from_millis(100), "{latency:?}");
    assert!(fixture.cache.stats().invalidations >= 1);
    assert_eq!(fixture.status(&minted).await, StatusCode::UNAUTHORIZED);
}

/// `FLUSHALL` (a nil invalidation) clears the whole cache.
#[tokio::test]
async fn flushall_clears_the_cache() {
    let fixture = Fixture::start(CacheConfig::new()).await;
    let minted = fixture.issue().await;
    fixture.warm(&minted).await;
    let mut admin = fixture.admin().await;
    redis::cmd("FLUSHALL")
        .exec_async(&mut admin)
        .await
        .expect("FLUSHALL");
    // Wait without blocking the runtime: the push is handled on it.
    let cleared = wait_until_async(Duration::from_secs(1), tokio::time::sleep, || async {
        (fixture.cache.stats().entries == 0).then_some(())
    })
    .await;
    assert!(cleared.is_some(), "FLUSHALL did not clear the cache");
    assert_eq!(fixture.status(&minted).await, StatusCode::UNAUTHORIZED);
}

/// When the tracking connection is killed, the cache is cleared and
/// bypassed at once (invalidations sent meanwhile would be lost), then
/// comes back empty once tracking is re-established.
#[tokio::test]
async fn lost_connection_clears_and_bypasses_the_cache() {
    let fixture = Fixture::start(CacheConfig::new()).await;
    let minted = fixture.issue().await;
    fixture.warm(&minted).await;

    let mut admin = fixture.admin().await;
    let tracking = tracking_clients(&mut admin)
        .await
        .pop()
        .expect("a tracking client");
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(&tracking)
        .exec_async(&mut admin)
        .await
        .expect("CLIENT KILL");

    let lost = fixture.wait_until_active(false).await;
    println!("cache bypassed {lost:?} after its connection was killed");
    assert_eq!(
        fixture.cache.stats().entries,
        0,
        "entries survived the loss"
    );
    fixture.wait_until_active(true).await;
    let misses = fixture.cache.stats().misses;
    assert_eq!(fixture.status(&minted).await, StatusCode::OK);
    assert_eq!(
        fixture.cache.stats().misses,
        misses + 1,
        "the first lookup after reconnecting must go to Redis"
    );
}

/// A frozen Redis fails the health check: the cache is cleared and
/// bypassed (requests get 503 within the timeout), and comes back when
/// Redis thaws.
#[tokio::test]
async fn frozen_redis_deactivates_the_cache() {
    let fixture =
        Fixture::start(CacheConfig::new().health_interval(Duration::from_millis(100))).await;
    let minted = fixture.issue().await;
    fixture.warm(&minted).await;

    fixture.redis.pause();
    let waited = fixture.wait_until_active(false).await;
    println!("cache bypassed {waited:?} after Redis froze");
    let started = Instant::now();
    assert_eq!(
        fixture.status(&minted).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(started.elapsed() < TIMEOUT * 3, "{:?}", started.elapsed());

    fixture.redis.resume();
    fixture.wait_until_active(true).await;
    let back = wait_until_async(Duration::from_secs(5), tokio::time::sleep, || async {
        (fixture.status(&minted).await == StatusCode::OK).then_some(())
    })
    .await;
    assert!(back.is_some(), "no recovery after Redis thawed");
}

/// The tracking cache needs a Tokio runtime for its task, and says so
/// instead of panicking; an unusable URL is refused when the layer (or the
/// cache) is made, before any connection.
#[test]
fn tracking_needs_a_runtime() {
    let error = TokenCache::tracking_for(
        &RedisConfig::new("redis://127.0.0.1:1/"),
        CacheConfig::new(),
    )
    .expect_err("no runtime");
    assert!(error.to_string().contains("Tokio runtime"), "{error}");
    let error = TokenCache::tracking_for(&RedisConfig::new("not a url"), CacheConfig::new())
        .expect_err("bad url");
    assert!(error.to_string().contains("invalid Redis URL"), "{error}");
    let error = TokenAuthLayer::connect(RedisConfig::new("not a url")).expect_err("bad url");
    assert!(error.to_string().contains("invalid Redis URL"), "{error}");
}

/// `with_cache` on a Redis layer outside a Tokio runtime says why it
/// cannot track.
#[test]
#[should_panic(expected = "Tokio runtime")]
fn with_cache_outside_a_runtime_panics_clearly() {
    let layer = TokenAuthLayer::connect(RedisConfig::new("redis://127.0.0.1:1/")).expect("layer");
    let _ = layer.with_cache(CacheConfig::new());
}

/// Dropping the last handle of a tracking cache stops its task and closes
/// its connection: no leaked connection per discarded layer.
#[tokio::test]
async fn dropping_the_cache_closes_its_connection() {
    let fixture = Fixture::start(CacheConfig::new()).await;
    let admin = fixture.admin().await;
    assert_eq!(tracking_clients(&mut admin.clone()).await.len(), 1);
    let Fixture {
        redis,
        cache,
        layer,
        ..
    } = fixture;
    drop((cache, layer));
    let closed = wait_until_async(Duration::from_secs(5), tokio::time::sleep, || {
        let mut admin = admin.clone();
        async move { tracking_clients(&mut admin).await.is_empty().then_some(()) }
    })
    .await;
    assert!(
        closed.is_some(),
        "the tracking connection outlived the cache"
    );
    drop(redis);
}

/// The ids of the connections with tracking on (`CLIENT LIST` flag `t`).
async fn tracking_clients(admin: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(admin)
        .await
        .expect("CLIENT LIST");
    clients
        .lines()
        .filter(|line| {
            line.split(' ')
                .any(|field| field.starts_with("flags=") && field.contains('t'))
        })
        .filter_map(|line| line.split(' ').find_map(|field| field.strip_prefix("id=")))
        .map(str::to_owned)
        .collect()
}
