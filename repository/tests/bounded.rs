//! The bounded repository (issue 12): what one subject's size and one
//! attacker's forged tokens may cost Redis.
//!
//! - every per-token and per-session operation costs a subject with 100 000
//!   live sessions at most 3× what it costs a subject with one;
//! - forged, checksum-valid refresh tokens for a real subject cost one `GET`
//!   each and never a script.
//!
//! Costs are Redis's own CPU time per command (`INFO commandstats`), not
//! wall-clock time, so a loaded test machine does not decide the outcome.

use std::time::Duration;

use rand::RngExt as _;
use token_repository::codec::{SessionRecord, Slot, encode_session};
use token_repository::{
    Grant, Holder, KeyPrefix, Minted, RedisConfig, RedisStore, RefreshRefusal, RefreshState,
    Rotation, Scopes, SubjectTag, Timestamp, Token, TokenKind, TokenReader as _, TokenWriter as _,
};
use token_test_harness::RedisServer;
use uuid::Uuid;

const BIG: &str = "big-subject";
const SMALL: &str = "small-subject";
/// Live sessions of the big subject, written straight into Redis.
const BIG_SESSIONS: usize = 100_000;
/// Calls per measured operation (per-call averages are compared).
const CALLS: usize = 40;

fn grant(subject: &str) -> Grant {
    Grant {
        holder: Holder {
            subject: subject.into(),
            username: "someone".into(),
            name: Some("Some One".into()),
            email: Some("someone@example.com".into()),
            scopes: Scopes::parse("read write").expect("scopes"),
            client_id: Some("web".into()),
        },
        access_ttl: Duration::from_secs(600),
        refresh_ttl: Some(Duration::from_secs(3600)),
        audience: token_repository::Audience::unrestricted(),
    }
}

/// `(calls, usec)` of every command since the last `CONFIG RESETSTAT`,
/// summed, leaving out the measuring commands themselves.
fn command_stats(redis: &RedisServer) -> Vec<(String, u64, u64)> {
    redis
        .cli(&["INFO", "commandstats"])
        .lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let field = |key: &str| {
                rest.split(',')
                    .find_map(|part| part.strip_prefix(key))
                    .and_then(|value| value.parse::<u64>().ok())
            };
            Some((name.to_owned(), field("calls=")?, field("usec=")?))
        })
        .filter(|(name, _, _)| {
            !(name == "info" || name.starts_with("config") || name.starts_with("script"))
        })
        .collect()
}

/// Redis CPU microseconds per call of `operation`, run `CALLS` times.
async fn cost<F, Fut>(redis: &RedisServer, mut operation: F) -> f64
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let _ = redis.cli(&["CONFIG", "RESETSTAT"]);
    for call in 0..CALLS {
        operation(call).await;
    }
    let usec: u64 = command_stats(redis).iter().map(|(_, _, usec)| usec).sum();
    #[allow(clippy::cast_precision_loss)]
    let per_call = usec as f64 / CALLS as f64;
    per_call
}

/// Writes `count` live sessions of `subject` directly (the cap would evict
/// them if they were issued), indexed like issued ones.
async fn write_sessions(redis: &RedisServer, prefix: &KeyPrefix, subject: &str, count: usize) {
    let tag = SubjectTag::of(subject);
    let now = Timestamp::now();
    let expires_at = now.saturating_add(Duration::from_secs(3600));
    let mut connection = redis::Client::open(redis.admin_url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let index = prefix.sessions(&tag);
    let mut rng = rand::rng();
    for chunk in 0..count.div_ceil(5_000) {
        let mut pipe = redis::pipe();
        for _ in 0..5_000.min(count - chunk * 5_000) {
            let family = Uuid::new_v4();
            let session = SessionRecord {
                holder: std::sync::Arc::new(Holder {
                    subject: subject.into(),
                    username: "someone".into(),
                    name: None,
                    email: None,
                    scopes: Scopes::parse("read").expect("scopes"),
                    client_id: Some("web".into()),
                }),
                audience: token_repository::Audience::unrestricted(),
                issued_at: now,
                access: Some(Slot {
                    digest: rng.random(),
                    expires_at,
                }),
                refresh: Some(Slot {
                    digest: rng.random(),
                    expires_at,
                }),
                used: vec![rng.random(), rng.random()],
            };
            pipe.cmd("SET")
                .arg(prefix.session(&tag, family))
                .arg(encode_session(&session))
                .arg("PX")
                .arg(3_600_000)
                .ignore();
            pipe.cmd("ZADD")
                .arg(&index)
                .arg(expires_at.as_unix_millis())
                .arg(family.as_bytes().as_slice())
                .ignore();
        }
        let () = pipe
            .query_async(&mut connection)
            .await
            .expect("write sessions");
    }
    let held: usize = redis::cmd("ZCARD")
        .arg(&index)
        .query_async(&mut connection)
        .await
        .expect("ZCARD");
    assert!(held >= count, "{held} sessions indexed");
}

fn refresh(minted: &Minted) -> &Token {
    &minted.refresh.as_ref().expect("refresh token").token
}

/// Issues `n` sessions of `subject`.
async fn sessions(store: &RedisStore, subject: &str, n: usize) -> Vec<Minted> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let minted = grant(subject).mint().expect("mint");
        store.issue(&minted, None).await.expect("issue");
        out.push(minted);
    }
    out
}

fn forged_refresh(subject: &str, family: Uuid) -> Token {
    let secret: [u8; 32] = rand::rng().random();
    Token::forge(
        TokenKind::Refresh,
        &SubjectTag::of(subject),
        family,
        &secret,
    )
}

/// Rotation, inspecting an unknown refresh token, revoking an access token,
/// a refresh token and a session: for a subject with 100 000 live sessions
/// each costs Redis at most 3× what it costs for a subject with one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_token_operations_do_not_grow_with_the_subject() {
    let redis = RedisServer::start();
    // A cap above the big subject's sessions, so that issuing the sessions
    // the operations below consume evicts nothing.
    let store = RedisStore::new(
        RedisConfig::new(redis.url())
            .timeout(Duration::from_secs(5))
            .max_sessions_per_subject(10 * BIG_SESSIONS),
    )
    .expect("store");
    write_sessions(&redis, store.prefix(), BIG, BIG_SESSIONS).await;
    write_sessions(&redis, store.prefix(), SMALL, 1).await;
    store.ping().await.expect("ping");

    let mut report = Vec::new();
    for subject in [SMALL, BIG] {
        let pool = sessions(&store, subject, 4 * CALLS).await;
        let (rotating, rest) = pool.split_at(CALLS);
        let (access, rest) = rest.split_at(CALLS);
        let (refreshing, families) = rest.split_at(CALLS);
        let rotating = rotating.to_vec();
        let rotate = cost(&redis, |call| {
            let store = store.clone();
            let current = rotating[call].clone();
            async move {
                let next = grant(subject)
                    .mint_in_family(current.family())
                    .expect("mint");
                assert_eq!(
                    store
                        .rotate(refresh(&current), &next)
                        .await
                        .expect("rotate"),
                    Rotation::Rotated
                );
            }
        })
        .await;
        let inspect_unknown = cost(&redis, |call| {
            let store = store.clone();
            // A live session's id with a wrong secret, and a made-up id.
            let family = if call % 2 == 0 {
                rotating[call].family()
            } else {
                Uuid::new_v4()
            };
            async move {
                let forged = forged_refresh(subject, family);
                assert_eq!(
                    store.inspect_refresh(&forged).await.expect("inspect"),
                    RefreshState::Refused(RefreshRefusal::Unknown)
                );
            }
        })
        .await;
        let revoke_access = cost(&redis, |call| {
            let store = store.clone();
            let token = access[call].access.token.clone();
            async move {
                assert_eq!(store.revoke(&token).await.expect("revoke"), 1);
            }
        })
        .await;
        let revoke_refresh = cost(&redis, |call| {
            let store = store.clone();
            let token = refresh(&refreshing[call]).clone();
            async move {
                assert_eq!(store.revoke(&token).await.expect("revoke"), 2);
            }
        })
        .await;
        let revoke_session = cost(&redis, |call| {
            let store = store.clone();
            let family = families[call].family();
            async move {
                assert_eq!(
                    store
                        .revoke_family(subject, family)
                        .await
                        .expect("revoke session"),
                    2
                );
            }
        })
        .await;
        report.push([
            ("rotate", rotate),
            ("inspect unknown refresh token", inspect_unknown),
            ("revoke access token", revoke_access),
            ("revoke refresh token", revoke_refresh),
            ("revoke session", revoke_session),
        ]);
    }
    let (small, big) = (&report[0], &report[1]);
    for ((name, small), (_, big)) in small.iter().zip(big) {
        eprintln!(
            "{name}: {small:.1} µs/call (1 session), {big:.1} µs/call ({BIG_SESSIONS} sessions)"
        );
    }
    for ((name, small), (_, big)) in small.iter().zip(big) {
        // A floor of 5 µs keeps a near-zero small figure from making noise
        // look like growth.
        assert!(
            *big <= 3.0 * small.max(5.0),
            "{name}: {big:.1} µs/call with {BIG_SESSIONS} sessions against {small:.1} µs/call with one"
        );
    }
}

/// 1 000 forged, checksum-valid refresh tokens for a real subject — half
/// naming its live session, half made-up sessions — are all unknown, cost
/// one `GET` each and run no script; the real session is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_refresh_tokens_cost_one_get_and_no_script() {
    let redis = RedisServer::start();
    let store = RedisStore::new(RedisConfig::new(redis.url()).timeout(Duration::from_secs(2)))
        .expect("store");
    let real = sessions(&store, "victim", 1).await.remove(0);
    let _ = redis.cli(&["CONFIG", "RESETSTAT"]);
    for attempt in 0..1_000 {
        let family = if attempt % 2 == 0 {
            real.family()
        } else {
            Uuid::new_v4()
        };
        let forged = forged_refresh("victim", family);
        assert_eq!(
            store.inspect_refresh(&forged).await.expect("inspect"),
            RefreshState::Refused(RefreshRefusal::Unknown)
        );
    }
    let stats = command_stats(&redis);
    let calls = |name: &str| {
        stats
            .iter()
            .find(|(command, _, _)| command == name)
            .map_or(0, |(_, calls, _)| *calls)
    };
    assert_eq!(calls("get"), 1_000, "{stats:?}");
    for script in ["evalsha", "eval", "evalsha_ro", "eval_ro", "fcall"] {
        assert_eq!(calls(script), 0, "{script}: {stats:?}");
    }
    assert_eq!(
        stats.iter().map(|(_, calls, _)| calls).sum::<u64>(),
        1_000,
        "nothing but GETs: {stats:?}"
    );
    assert!(
        store
            .lookup(refresh(&real))
            .await
            .expect("lookup")
            .is_some(),
        "the real session survives"
    );
}

/// Issuing past the session cap revokes the subject's session that expires
/// soonest, names it, and leaves the others; other subjects are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuing_past_the_cap_evicts_the_oldest_session() {
    let redis = RedisServer::start();
    let store = RedisStore::new(
        RedisConfig::new(redis.url())
            .timeout(Duration::from_secs(2))
            .max_sessions_per_subject(3),
    )
    .expect("store");
    let mut oldest = grant("alice");
    oldest.refresh_ttl = Some(Duration::from_secs(1800));
    let oldest = oldest.mint().expect("mint");
    assert!(
        store
            .issue(&oldest, None)
            .await
            .expect("issue")
            .evicted
            .is_empty()
    );
    let kept = sessions(&store, "alice", 2).await;
    let bob = sessions(&store, "bob", 3).await;
    let newest = grant("alice").mint().expect("mint");
    let issued = store.issue(&newest, None).await.expect("issue");
    assert_eq!(issued.evicted, vec![oldest.family()]);
    for token in [&oldest.access.token, refresh(&oldest)] {
        assert!(store.lookup(token).await.expect("lookup").is_none());
    }
    for minted in kept.iter().chain([&newest]).chain(&bob) {
        assert!(
            store
                .lookup(&minted.access.token)
                .await
                .expect("lookup")
                .is_some()
        );
    }
    assert_eq!(store.list("alice").await.expect("list").len(), 6);
}

/// Tokens issued before the bounded schema (format 1, one key per token),
/// written as that version wrote them: access tokens validate and are
/// revoked (alone, or by sign-out-everywhere); refresh tokens are refused
/// without being looked up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_1_tokens_validate_until_they_expire_and_refresh_is_refused() {
    use token_repository::codec;
    use token_repository::keys::{EntryKind, IndexMember};

    let redis = RedisServer::start();
    let store = RedisStore::new(RedisConfig::new(redis.url()).timeout(Duration::from_secs(2)))
        .expect("store");
    let prefix = store.prefix().clone();
    let mut connection = redis::Client::open(redis.admin_url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let tag = SubjectTag::of("legacy");
    let minted = grant("legacy").mint().expect("mint");
    let family = minted.family();
    let mut old = Vec::new();
    for kind in [TokenKind::Access, TokenKind::Refresh, TokenKind::Access] {
        let token = Token::generate_v1(kind, &tag).expect("randomness");
        let mut record = minted.access.record.clone();
        record.kind = kind;
        record.id = token.id();
        let member = IndexMember {
            family,
            kind: EntryKind::live(kind),
            digest: *token.digest(),
        };
        let () = redis::pipe()
            .cmd("SET")
            .arg(prefix.token(&tag, token.digest()))
            .arg(codec::encode(&record))
            .arg("PX")
            .arg(600_000)
            .ignore()
            .cmd("ZADD")
            .arg(prefix.index(&tag))
            .arg(record.expires_at.as_unix_millis())
            .arg(member.encode())
            .ignore()
            .query_async(&mut connection)
            .await
            .expect("write format-1 token");
        old.push(token);
    }
    let parsed = Token::parse(old[0].expose_secret()).expect("format-1 text parses");
    assert_eq!(parsed.family(), None);
    let record = store.lookup(&parsed).await.expect("lookup").expect("live");
    assert_eq!(record.holder.subject, "legacy");
    assert_eq!(store.list("legacy").await.expect("list").len(), 3);
    assert_eq!(
        store.inspect_refresh(&old[1]).await.expect("inspect"),
        RefreshState::Refused(RefreshRefusal::Unknown),
        "format-1 refresh tokens are refused"
    );
    assert_eq!(store.revoke(&old[0]).await.expect("revoke"), 1);
    assert!(store.lookup(&old[0]).await.expect("lookup").is_none());
    // A new session beside the old tokens; sign-out-everywhere takes both.
    store.issue(&minted, None).await.expect("issue");
    assert_eq!(store.revoke_all("legacy").await.expect("revoke all"), 4);
    for token in old.iter().chain([&minted.access.token]) {
        assert!(store.lookup(token).await.expect("lookup").is_none());
    }
}

/// Redis `used_memory` per live access + refresh pair stays under 400 B
/// (bench row 7a's goal), with the bench's method and record contents: ten
/// sessions per user, UUID subjects, everyday names. 20 000 pairs here
/// (`BOUNDED_PAIRS` overrides, e.g. 1000000 as in the bench); prints the
/// `MEMORY USAGE` breakdown of one session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pair_costs_less_than_400_bytes() {
    let pairs: usize = std::env::var("BOUNDED_PAIRS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let redis = RedisServer::start();
    let store = RedisStore::new(
        RedisConfig::new(redis.url())
            .timeout(Duration::from_secs(5))
            .pool_size(32),
    )
    .expect("store");
    store.ping().await.expect("ping");
    let used = |redis: &RedisServer| -> f64 {
        redis
            .cli(&["INFO", "memory"])
            .lines()
            .find_map(|line| line.strip_prefix("used_memory:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("used_memory")
    };
    let before = used(&redis);
    let users: Vec<Grant> = (0..pairs / 10)
        .map(|index| Grant {
            holder: Holder {
                subject: Uuid::new_v4().to_string(),
                username: format!("user{index:06}"),
                name: Some(format!("Firstname Lastname {index}")),
                email: Some(format!("user{index:06}@example.com")),
                scopes: Scopes::parse("read write").expect("scopes"),
                client_id: Some("web".into()),
            },
            access_ttl: Duration::from_secs(900),
            refresh_ttl: Some(Duration::from_secs(1_209_600)),
            audience: token_repository::Audience::unrestricted(),
        })
        .collect();
    let users = std::sync::Arc::new(users);
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..32 {
        let store = store.clone();
        let users = users.clone();
        tasks.spawn(async move {
            for index in (worker..users.len() * 10).step_by(32) {
                let minted = users[index % users.len()].mint().expect("mint");
                store.issue(&minted, None).await.expect("issue");
            }
        });
    }
    while let Some(task) = tasks.join_next().await {
        task.expect("issuer");
    }
    let after = used(&redis);
    #[allow(clippy::cast_precision_loss)]
    let per_pair = (after - before) / (users.len() * 10) as f64;
    let sample = users[0].mint().expect("mint");
    store.issue(&sample, None).await.expect("issue");
    let tag = SubjectTag::of(&users[0].holder.subject);
    let key = store.prefix().session(&tag, sample.family());
    let index = store.prefix().sessions(&tag);
    let mut connection = redis::Client::open(redis.admin_url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let usage = |key: Vec<u8>| {
        let mut connection = connection.clone();
        async move {
            let usage: u64 = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(&key)
                .arg("SAMPLES")
                .arg(0)
                .query_async(&mut connection)
                .await
                .expect("MEMORY USAGE");
            usage
        }
    };
    let session_usage = usage(key.clone()).await;
    let index_usage = usage(index.clone()).await;
    let value_len: usize = redis::cmd("STRLEN")
        .arg(&key)
        .query_async(&mut connection)
        .await
        .expect("STRLEN");
    eprintln!(
        "{} pairs: {per_pair:.0} B/pair of used_memory; MEMORY USAGE: session key {session_usage} B \
         (key name {} B, value {value_len} B), index {index_usage} B for 11 sessions",
        users.len() * 10,
        key.len(),
    );
    assert!(per_pair < 400.0, "{per_pair:.0} B per pair");
}
