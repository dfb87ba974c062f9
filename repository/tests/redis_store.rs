//! Properties of the Redis store that the memory store has no equivalent
//! for: what lands in Redis, and behaviour when Redis fails.

use std::time::{Duration, Instant};

use redis::AsyncCommands as _;
use token_repository::codec::{decode_session, encode_session_wide};
use token_repository::{
    Grant, Holder, KeyPrefix, RedisConfig, RedisStore, RedisTokenReader, RefreshRefusal,
    RefreshState, Rotation, Scopes, SubjectTag, Token, TokenReader, TokenWriter,
};
use token_test_harness::{RedisServer, wait_until_async};

const TIMEOUT: Duration = Duration::from_millis(400);

fn store(redis: &RedisServer) -> RedisStore {
    RedisStore::new(RedisConfig::new(redis.url()).timeout(TIMEOUT)).expect("store")
}

fn grant(subject: &str) -> Grant {
    Grant {
        holder: Holder {
            subject: subject.into(),
            username: "alice".into(),
            name: Some("Alice".into()),
            email: Some("alice@example.com".into()),
            scopes: Scopes::parse("read").expect("scopes"),
            client_id: Some("web".into()),
        },
        access_ttl: Duration::from_secs(300),
        refresh_ttl: Some(Duration::from_secs(3600)),
        audience: token_repository::Audience::unrestricted(),
    }
}

async fn admin(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.admin_url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("admin connection")
}

async fn all_keys(connection: &mut redis::aio::MultiplexedConnection) -> Vec<Vec<u8>> {
    connection.keys("*").await.expect("KEYS")
}

/// Redis holds digests, never tokens: no key and no value contains a
/// token's text or its secret part.
#[tokio::test]
async fn redis_never_sees_the_token() {
    let redis = RedisServer::start();
    let store = store(&redis);
    let minted = grant("subject-1").mint().expect("mint");
    store.issue(&minted, None).await.expect("issue");
    let mut admin = admin(&redis).await;
    let keys = all_keys(&mut admin).await;
    assert_eq!(keys.len(), 2, "the session and the subject's index");
    for new in minted.tokens() {
        let text = new.token.expose_secret().as_bytes();
        // The characters that encode the secret alone (after tag and
        // session id).
        let secret = &text[4 + 36..4 + 76];
        for key in &keys {
            assert!(!contains(key, secret), "a key holds a token secret");
            let dump: Vec<u8> = redis::cmd("DUMP")
                .arg(key)
                .query_async(&mut admin)
                .await
                .expect("DUMP");
            assert!(!contains(&dump, secret), "a value holds a token secret");
            assert!(!contains(&dump, text));
        }
    }
}

/// Rewrites the session of `token` in format 3 (8-byte times), as the
/// previous version wrote it, keeping its TTL; answers the key.
async fn downgrade_session(
    store: &RedisStore,
    admin: &mut redis::aio::MultiplexedConnection,
    token: &Token,
) -> Vec<u8> {
    let key = store
        .prefix()
        .session(token.tag(), token.family().expect("a session token"));
    let value: Vec<u8> = admin.get(&key).await.expect("GET");
    let session = decode_session(&value).expect("decodes");
    let wide = encode_session_wide(&session);
    assert_eq!(wide[0], 3);
    let () = redis::cmd("SET")
        .arg(&key)
        .arg(wide)
        .arg("KEEPTTL")
        .query_async(admin)
        .await
        .expect("SET");
    key
}

async fn format_of(admin: &mut redis::aio::MultiplexedConnection, key: &[u8]) -> u8 {
    let value: Vec<u8> = admin.get(key).await.expect("GET");
    value[0]
}

/// Sessions written by the previous version (format 3, 8-byte times) keep
/// working after the upgrade, in Redis's scripts as in the readers: their
/// tokens are found, an access token is revoked in place, a rotation
/// rewrites the session in format 4, and a rotated refresh token presented
/// again is still detected as reuse.
#[tokio::test]
async fn format_3_sessions_are_served_and_migrate_on_rotation() {
    let redis = RedisServer::start();
    let store = store(&redis);
    let mut admin = admin(&redis).await;
    let first = grant("subject-3").mint().expect("mint");
    store.issue(&first, None).await.expect("issue");
    let refresh =
        |minted: &token_repository::Minted| minted.refresh.as_ref().expect("refresh").token.clone();
    let key = downgrade_session(&store, &mut admin, &first.access.token).await;

    assert!(
        store
            .lookup(&first.access.token)
            .await
            .expect("lookup")
            .is_some()
    );
    assert!(matches!(
        store
            .inspect_refresh(&refresh(&first))
            .await
            .expect("inspect"),
        RefreshState::Live(_)
    ));
    assert_eq!(store.revoke(&first.access.token).await.expect("revoke"), 1);
    assert!(
        store
            .lookup(&first.access.token)
            .await
            .expect("lookup")
            .is_none()
    );
    assert_eq!(format_of(&mut admin, &key).await, 3, "revoked in place");
    assert!(matches!(
        store
            .inspect_refresh(&refresh(&first))
            .await
            .expect("inspect"),
        RefreshState::Live(_)
    ));

    let second = grant("subject-3")
        .mint_in_family(first.family())
        .expect("mint");
    assert_eq!(
        store
            .rotate(&refresh(&first), &second)
            .await
            .expect("rotate"),
        Rotation::Rotated
    );
    assert_eq!(
        format_of(&mut admin, &key).await,
        4,
        "rewritten on rotation"
    );
    assert!(
        store
            .lookup(&second.access.token)
            .await
            .expect("lookup")
            .is_some()
    );

    downgrade_session(&store, &mut admin, &second.access.token).await;
    assert!(matches!(
        store
            .inspect_refresh(&refresh(&first))
            .await
            .expect("inspect"),
        RefreshState::Refused(RefreshRefusal::Reused { .. })
    ));
    assert!(
        store
            .lookup(&second.access.token)
            .await
            .expect("lookup")
            .is_none()
    );
    let exists: bool = admin.exists(&key).await.expect("EXISTS");
    assert!(!exists, "the reused session is gone");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Every key of one subject carries the same hash tag (one cluster slot),
/// under the configured prefix, and token keys carry their TTL.
#[tokio::test]
async fn keys_share_the_subject_hash_tag_and_carry_ttls() {
    let redis = RedisServer::start();
    let prefix = KeyPrefix::new("deploy-a:").expect("prefix");
    let store = RedisStore::new(RedisConfig::new(redis.url()).prefix(prefix)).expect("store");
    let minted = grant("subject-1").mint().expect("mint");
    store.issue(&minted, None).await.expect("issue");
    store
        .revoke_all("subject-2")
        .await
        .expect("creates a generation key");
    let tag = format!("{{{}}}", SubjectTag::of("subject-1").to_key_text());
    let mut admin = admin(&redis).await;
    let keys = all_keys(&mut admin).await;
    let subject_keys: Vec<&Vec<u8>> = keys
        .iter()
        .filter(|key| contains(key, tag.as_bytes()))
        .collect();
    assert_eq!(subject_keys.len(), 2, "the session and the index");
    for key in &keys {
        assert!(key.starts_with(b"deploy-a:"), "key outside the prefix");
        let ttl: i64 = admin.pttl(key).await.expect("PTTL");
        assert!(ttl > 0, "every key expires by itself");
    }
    // The index expires exactly with the longest-lived session (absolute
    // expiry times: no race between two relative reads), and its entry is
    // scored by the session key's expiry.
    let index_expiry: i64 = redis::cmd("PEXPIRETIME")
        .arg(format!("deploy-a:sidx:{tag}"))
        .query_async(&mut admin)
        .await
        .expect("PEXPIRETIME");
    let session_key = store
        .prefix()
        .session(minted.access.token.tag(), minted.family());
    let session_expiry: i64 = redis::cmd("PEXPIRETIME")
        .arg(&session_key)
        .query_async(&mut admin)
        .await
        .expect("PEXPIRETIME");
    let entries: Vec<(Vec<u8>, i64)> = redis::cmd("ZRANGE")
        .arg(format!("deploy-a:sidx:{tag}"))
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut admin)
        .await
        .expect("ZRANGE");
    assert_eq!(
        entries,
        vec![(minted.family().as_bytes().to_vec(), session_expiry)],
        "the entry names the session and expires with it"
    );
    assert_eq!(index_expiry, session_expiry);

    // A rotation moves both to the new pair's expiry, whether the index
    // was there (its entry's score grows) or gone (it is made again).
    let mut presented = minted;
    for drop_index in [false, true] {
        if drop_index {
            let _: i64 = admin
                .del(format!("deploy-a:sidx:{tag}"))
                .await
                .expect("DEL");
        }
        let next = grant("subject-1")
            .mint_in_family(presented.family())
            .expect("mint");
        let refresh = &presented.refresh.as_ref().expect("refresh").token;
        assert_eq!(
            store.rotate(refresh, &next).await.expect("rotate"),
            Rotation::Rotated
        );
        let expiry = |key: Vec<u8>| {
            let mut admin = admin.clone();
            async move {
                redis::cmd("PEXPIRETIME")
                    .arg(key)
                    .query_async::<i64>(&mut admin)
                    .await
                    .expect("PEXPIRETIME")
            }
        };
        let session_expiry = expiry(session_key.clone()).await;
        assert!(session_expiry > 0);
        assert_eq!(
            expiry(format!("deploy-a:sidx:{tag}").into_bytes()).await,
            session_expiry,
            "index dropped before: {drop_index}"
        );
        let score: Option<f64> = admin
            .zscore(
                format!("deploy-a:sidx:{tag}"),
                presented.family().as_bytes().as_slice(),
            )
            .await
            .expect("ZSCORE");
        #[allow(clippy::cast_precision_loss)]
        let expected = session_expiry as f64;
        assert_eq!(score, Some(expected));
        presented = next;
    }
}

/// A stopped Redis makes every operation fail fast with an "unavailable"
/// error, never hang and never answer "unknown token"; after a restart the
/// same store works again without being recreated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_fails_closed_and_recovers_after_restart() {
    let mut redis = RedisServer::start();
    let store = store(&redis);
    let minted = grant("subject-1").mint().expect("mint");
    store.issue(&minted, None).await.expect("issue");
    assert!(
        store
            .lookup(&minted.access.token)
            .await
            .expect("lookup")
            .is_some()
    );

    redis.stop();
    let started = Instant::now();
    let error = store
        .lookup(&minted.access.token)
        .await
        .expect_err("a lookup must not succeed while Redis is down");
    assert!(error.is_unavailable(), "{error:?}");
    assert!(
        started.elapsed() < TIMEOUT * 3,
        "took {:?}",
        started.elapsed()
    );
    let fresh = grant("subject-1").mint().expect("mint");
    assert!(
        store
            .issue(&fresh, None)
            .await
            .expect_err("issue")
            .is_unavailable()
    );
    assert!(store.ping().await.is_err());

    redis.restart();
    let recovered = wait_until_async(Duration::from_secs(10), tokio::time::sleep, || {
        let store = store.clone();
        async move { store.ping().await.ok() }
    })
    .await;
    assert!(
        recovered.is_some(),
        "store did not recover after Redis came back"
    );
    // Nothing persisted across the restart; issuing works again.
    assert!(
        store
            .lookup(&minted.access.token)
            .await
            .expect("lookup")
            .is_none()
    );
    store
        .issue(&fresh, None)
        .await
        .expect("issue after recovery");
    assert!(
        store
            .lookup(&fresh.access.token)
            .await
            .expect("lookup")
            .is_some()
    );
}

/// A Redis that accepts connections but never answers (frozen, partitioned)
/// gives a timeout within the configured bound, not an unbounded wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_redis_times_out() {
    let redis = RedisServer::start();
    let reader =
        RedisTokenReader::new(RedisConfig::new(redis.url()).timeout(TIMEOUT)).expect("reader");
    let minted = grant("subject-1").mint().expect("mint");
    reader.ping().await.expect("ping before the freeze");
    redis.pause();
    let started = Instant::now();
    let error = reader
        .lookup(&minted.access.token)
        .await
        .expect_err("must fail");
    let elapsed = started.elapsed();
    redis.resume();
    assert!(error.is_unavailable(), "{error:?}");
    assert!(
        elapsed >= TIMEOUT / 2 && elapsed < TIMEOUT * 3,
        "took {elapsed:?}"
    );
    let recovered = wait_until_async(Duration::from_secs(10), tokio::time::sleep, || {
        let reader = reader.clone();
        async move { reader.ping().await.ok() }
    })
    .await;
    assert!(
        recovered.is_some(),
        "reader did not recover after the freeze"
    );
}

/// Two deployments with different prefixes share one Redis without seeing
/// each other's tokens.
#[tokio::test]
async fn prefixes_isolate_deployments() {
    let redis = RedisServer::start();
    let a = RedisStore::new(RedisConfig::new(redis.url()).prefix(KeyPrefix::new("a:").expect("p")))
        .expect("store");
    let b = RedisStore::new(RedisConfig::new(redis.url()).prefix(KeyPrefix::new("b:").expect("p")))
        .expect("store");
    let minted = grant("subject-1").mint().expect("mint");
    a.issue(&minted, None).await.expect("issue");
    assert!(
        a.lookup(&minted.access.token)
            .await
            .expect("lookup")
            .is_some()
    );
    assert!(
        b.lookup(&minted.access.token)
            .await
            .expect("lookup")
            .is_none()
    );
    assert_eq!(b.revoke_all("subject-1").await.expect("revoke all"), 0);
    assert!(
        a.lookup(&minted.access.token)
            .await
            .expect("lookup")
            .is_some()
    );
}

/// One `INFO` field as a number.
fn info_number(info: &str, field: &str) -> u64 {
    info.lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| {
            rest.trim()
                .trim_start_matches("calls=")
                .split(',')
                .next()
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Lookups, the hot path of every token client, cost one round trip each
/// on one shared connection: no pool check (`UNWATCH` + `PING`) before each
/// `GET`, and no new connection per lookup for a user that may not run
/// `UNWATCH` (the README's read-only ACL user), however many run at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_cost_one_round_trip_on_one_connection() {
    let redis = RedisServer::start();
    let _ = redis.cli(&[
        "ACL",
        "SETUSER",
        "reader",
        "on",
        ">reader-pw",
        "resetkeys",
        "%R~ts:s:*",
        "-@all",
        "+get",
        "+ping",
    ]);
    let minted = grant("subject-1").mint().expect("mint");
    store(&redis).issue(&minted, None).await.expect("issue");
    let reader = RedisTokenReader::new(
        RedisConfig::new(redis.url_as("reader", "reader-pw")).timeout(TIMEOUT),
    )
    .expect("reader");
    reader.ping().await.expect("ping");
    let _ = redis.cli(&["CONFIG", "RESETSTAT"]);
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let reader = reader.clone();
            let token = minted.access.token.clone();
            tokio::spawn(async move {
                for _ in 0..10 {
                    assert!(reader.lookup(&token).await.expect("lookup").is_some());
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let stats = redis.cli(&["INFO", "stats"]);
    let commands = redis.cli(&["INFO", "commandstats"]);
    // The one connection since the reset is redis-cli's, asking.
    assert_eq!(
        info_number(&stats, "total_connections_received:"),
        1,
        "lookups opened connections"
    );
    assert_eq!(info_number(&commands, "cmdstat_get:"), 640);
    assert_eq!(info_number(&commands, "cmdstat_ping:"), 0, "{commands}");
    assert_eq!(info_number(&commands, "cmdstat_unwatch:"), 0, "{commands}");
}

/// With durability on and no replica to acknowledge, an issue fails with
/// `NotDurable` within the WAIT timeout and leaves no live token behind;
/// with a replica that acknowledges, it succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_issues_are_revoked() {
    let redis = RedisServer::start();
    let store = RedisStore::new(
        RedisConfig::new(redis.url())
            .timeout(TIMEOUT)
            .wait_for_replicas(1, Duration::from_millis(150)),
    )
    .expect("store");
    let minted = grant("subject-1").mint().expect("mint");
    let started = Instant::now();
    let error = store
        .issue(&minted, None)
        .await
        .expect_err("no replica acknowledges");
    assert!(
        matches!(
            error,
            token_repository::Error::NotDurable {
                acknowledged: 0,
                required: 1
            }
        ),
        "{error:?}"
    );
    assert!(error.is_unavailable());
    assert!(started.elapsed() < Duration::from_secs(2));
    for new in minted.tokens() {
        assert!(
            store.lookup(&new.token).await.expect("lookup").is_none(),
            "a token survived"
        );
    }

    // Sync the replica at once instead of Redis's default 5 s delay.
    let _ = redis.cli(&["CONFIG", "SET", "repl-diskless-sync-delay", "0"]);
    let replica = RedisServer::builder()
        .config_line(format!("replicaof 127.0.0.1 {}", redis.port()))
        .start();
    // WAIT counts replicas the master sees online.
    let synced = token_test_harness::wait_until(Duration::from_secs(10), || {
        redis
            .cli(&["INFO", "replication"])
            .contains("state=online")
            .then_some(())
    });
    assert!(synced.is_some(), "the replica did not sync");
    let store = RedisStore::new(
        RedisConfig::new(redis.url())
            .timeout(TIMEOUT)
            .wait_for_replicas(1, Duration::from_secs(2)),
    )
    .expect("store");
    let minted = grant("subject-1").mint().expect("mint");
    store
        .issue(&minted, None)
        .await
        .expect("acknowledged by the replica");
    let mut on_replica = redis::Client::open(replica.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("replica");
    let key = store
        .prefix()
        .session(minted.access.token.tag(), minted.family());
    let exists: bool = on_replica.exists(key).await.expect("EXISTS");
    assert!(exists, "an acknowledged token is on the replica");
}
