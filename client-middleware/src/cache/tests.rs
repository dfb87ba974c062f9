//! The cache as a reader: hits, staleness, negative entries, cancellation,
//! size. (The ticket protocol's own tests sit with `slots`.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use token_repository::{
    Grant, Holder, MemoryStore, Result, Scopes, Token, TokenReader, TokenRecord, TokenWriter,
};

use super::{CacheConfig, CachingReader, TokenCache};

/// A reader that counts lookups and answers from a memory store.
#[derive(Debug, Default)]
struct Counting {
    store: MemoryStore,
    lookups: AtomicUsize,
}

#[async_trait]
impl TokenReader for Counting {
    async fn lookup(&self, token: &Token) -> Result<Option<TokenRecord>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.store.lookup(token).await
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

impl Counting {
    fn lookups(&self) -> usize {
        self.lookups.load(Ordering::SeqCst)
    }

    async fn issue(&self, ttl: Duration) -> Token {
        let minted = Grant {
            holder: Holder {
                subject: "user-1".into(),
                username: "alice".into(),
                name: None,
                email: None,
                scopes: Scopes::parse("read").expect("scopes"),
                client_id: None,
            },
            access_ttl: ttl,
            refresh_ttl: None,
            audience: token_repository::Audience::unrestricted(),
        }
        .mint()
        .expect("mint");
        self.store.issue(&minted, None).await.expect("issue");
        minted.access.token
    }
}

fn config() -> CacheConfig {
    CacheConfig::new()
        .staleness(Duration::from_secs(30))
        .negative_ttl(Duration::from_secs(1))
}

fn cached(config: CacheConfig) -> CachingReader<Counting> {
    CachingReader::new(Counting::default(), TokenCache::local(config))
}

async fn lookup<R: TokenReader>(reader: &R, token: &Token) -> Option<TokenRecord> {
    TokenReader::lookup(reader, token).await.expect("lookup")
}

/// A second lookup of a live token is answered without the reader.
#[tokio::test(start_paused = true)]
async fn hits_spare_the_reader() {
    let reader = cached(config());
    let token = reader.get_ref().issue(Duration::from_secs(600)).await;
    let first = lookup(&reader, &token).await;
    let second = lookup(&reader, &token).await;
    assert_eq!(first, second);
    assert_eq!(first.expect("live").holder.username, "alice");
    assert_eq!(reader.get_ref().lookups(), 1);
    let stats = reader.cache().stats();
    assert_eq!((stats.hits, stats.misses), (1, 1));
}

/// Positive entries expire after the staleness bound: a revocation that
/// was never pushed takes effect then.
#[tokio::test(start_paused = true)]
async fn positive_entries_expire_after_the_staleness_bound() {
    let reader = cached(config().staleness(Duration::from_secs(5)));
    let token = reader.get_ref().issue(Duration::from_secs(600)).await;
    assert!(lookup(&reader, &token).await.is_some());
    reader.get_ref().store.revoke(&token).await.expect("revoke");
    tokio::time::advance(Duration::from_secs(4)).await;
    assert!(
        lookup(&reader, &token).await.is_some(),
        "within the bound the (unpushed) revocation is not seen yet"
    );
    tokio::time::advance(Duration::from_millis(1001)).await;
    assert!(
        lookup(&reader, &token).await.is_none(),
        "past the bound the revocation is seen"
    );
}

/// A positive entry never outlives the token: with a 30 s bound, a
/// token expiring in 2 s is looked up again after 2 s.
#[tokio::test(start_paused = true)]
async fn positive_entries_never_outlive_the_token() {
    let reader = cached(config());
    let token = reader.get_ref().issue(Duration::from_secs(2)).await;
    assert!(lookup(&reader, &token).await.is_some());
    tokio::time::advance(Duration::from_millis(2100)).await;
    let _ = lookup(&reader, &token).await;
    assert_eq!(
        reader.get_ref().lookups(),
        2,
        "the entry expired with the token"
    );
}

/// Unknown tokens are remembered briefly (a flood costs one lookup per
/// negative TTL), then asked again.
#[tokio::test(start_paused = true)]
async fn negative_entries_are_brief() {
    let reader = cached(config());
    let token = Counting::default().issue(Duration::from_secs(60)).await;
    for _ in 0..100 {
        assert!(lookup(&reader, &token).await.is_none());
    }
    assert_eq!(reader.get_ref().lookups(), 1);
    tokio::time::advance(Duration::from_millis(1001)).await;
    assert!(lookup(&reader, &token).await.is_none());
    assert_eq!(reader.get_ref().lookups(), 2);
}

/// A lookup whose future is dropped (timeout) leaves no marker behind.
#[tokio::test(start_paused = true)]
async fn cancelled_lookups_leave_nothing() {
    #[derive(Debug)]
    struct Hangs;
    #[async_trait]
    impl TokenReader for Hangs {
        async fn lookup(&self, _: &Token) -> Result<Option<TokenRecord>> {
            std::future::pending().await
        }
        async fn ping(&self) -> Result<()> {
            Ok(())
        }
    }
    let token = Counting::default().issue(Duration::from_secs(60)).await;
    let reader = CachingReader::new(Hangs, TokenCache::local(config()));
    let lookup = TokenReader::lookup(&reader, &token);
    assert!(
        tokio::time::timeout(Duration::from_millis(10), lookup)
            .await
            .is_err()
    );
    assert_eq!(reader.cache().stats().entries, 0);
}

/// The cache never holds more than its capacity.
#[tokio::test(start_paused = true)]
async fn size_is_bounded() {
    let reader = cached(config().capacity(8));
    for _ in 0..50 {
        let token = reader.get_ref().issue(Duration::from_secs(60)).await;
        let _ = lookup(&reader, &token).await;
        assert!(reader.cache().stats().entries <= 8);
    }
    assert_eq!(reader.cache().stats().entries, 8);
}
