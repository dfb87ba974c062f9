//! Introspection answered from memory (`INTROSPECTION_CACHE`, on by
//! default): two authority processes sharing one Redis and one `ISSUER`.
//! A change made at one replica (a revocation, a client's secret rotated or
//! the client disabled) is refused at once by that replica and, as soon as
//! Redis pushes the change, by the other; a wrong secret is refused even
//! for a client held in memory; with Redis gone, nothing is answered from
//! memory (503). A refresh rotation reads its user from the same cache,
//! and a change to the user's record reaches it by the same push.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use token_service_tests::Authority;
use token_test_harness::{RedisServer, wait_until_async};

const BIN: &str = env!("CARGO_BIN_EXE_e2e-token-authority");
const PASSWORD: &str = "correct horse battery";
/// The bound on waiting for Redis's push to reach the other replica (it
/// takes milliseconds; the bound only keeps a broken build from hanging).
const PUSH: Duration = Duration::from_secs(5);

fn basic(client_id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}"))
    )
}

/// Failed client authentications are throttled; these tests fail some on
/// purpose, and poll until refusals come.
const NO_THROTTLE: [(&str, &str); 2] = [
    ("LOGIN_MAX_FAILURES", "1000000"),
    ("ADDRESS_MAX_FAILURES", "1000000"),
];

/// Two replicas of one deployment.
fn replicas(redis: &RedisServer) -> (Authority, Authority) {
    let one = Authority::start(BIN, redis, &NO_THROTTLE);
    let issuer = one.url("");
    let mut env = NO_THROTTLE.to_vec();
    env.push(("ISSUER", issuer.as_str()));
    let two = Authority::start(BIN, redis, &env);
    (one, two)
}

/// `POST /oauth/introspect` at `authority`: the status and the body.
async fn introspect(
    authority: &Authority,
    client: &str,
    secret: &str,
    token: &str,
) -> (u16, Value) {
    let response = authority
        .http
        .post(authority.url("/oauth/introspect"))
        .header("authorization", basic(client, secret))
        .form(&[("token", token)])
        .send()
        .await
        .expect("introspect");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Introspects `token` at `authority` until both the token and the client
/// were answered from memory (tracking is on at that replica), and
/// answers the last body.
async fn warm(authority: &Authority, client: &str, secret: &str, token: &str) -> Value {
    let warmed = wait_until_async(PUSH, tokio::time::sleep, || async {
        let (status, body) = introspect(authority, client, secret, token).await;
        assert_eq!(status, 200, "{body}");
        let tokens = authority
            .metric("token_client_cache_lookups_total", "result=\"hit\"")
            .await;
        let clients = authority
            .metric(
                "authority_introspection_cache_lookups_total",
                "kind=\"client\",result=\"hit\"",
            )
            .await;
        (tokens > 0.0 && clients > 0.0).then_some(body)
    })
    .await;
    warmed
        .unwrap_or_else(|| panic!("never answered from memory:\n{}", authority.logs()))
        .0
}

/// A token revoked at one replica is inactive there at once, and at the
/// other as soon as Redis pushes the change, though both held it in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reaches_the_other_replica() {
    let redis = RedisServer::start();
    let (one, two) = replicas(&redis);
    one.add_user("alice", PASSWORD, &["read"]);
    let secret = one.add_client("gateway", &[], true);
    let tokens = one.login("alice", PASSWORD).await;
    let access = tokens["access_token"].as_str().expect("access");
    let refresh = tokens["refresh_token"].as_str().expect("refresh");
    for replica in [&one, &two] {
        let body = warm(replica, "gateway", &secret, access).await;
        assert_eq!(body["active"], true);
        assert_eq!(body["username"], "alice");
    }

    let revoked = one
        .http
        .post(one.url("/oauth/revoke"))
        .form(&[("token", refresh)])
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), 200);
    assert_eq!(
        introspect(&one, "gateway", &secret, access).await,
        (200, json!({ "active": false })),
        "the replica that revoked answers from Redis at once"
    );
    let inactive = wait_until_async(PUSH, tokio::time::sleep, || async {
        let (_, body) = introspect(&two, "gateway", &secret, access).await;
        (body == json!({ "active": false })).then_some(())
    })
    .await;
    assert!(
        inactive.is_some(),
        "the other replica kept the revoked token"
    );
    assert_eq!(two.get_with("/v1/me", access).await.status(), 401);
}

/// A client held in memory is still verified on every call: a wrong
/// secret is refused. A secret rotated, then the client disabled, through
/// one replica's admin API are refused by that replica at once and by the
/// other once Redis pushes the change; the new secret works on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_changes_reach_the_other_replica() {
    let redis = RedisServer::start();
    let (one, two) = replicas(&redis);
    one.add_user("alice", PASSWORD, &["read"]);
    one.add_user("root", PASSWORD, &["admin"]);
    let old = one.add_client("gateway", &[], true);
    let access = one.login("alice", PASSWORD).await["access_token"]
        .as_str()
        .expect("access")
        .to_owned();
    for replica in [&one, &two] {
        warm(replica, "gateway", &old, &access).await;
        let (status, _) = introspect(replica, "gateway", "not-the-secret", &access).await;
        assert_eq!(status, 401, "a wrong secret for a client held in memory");
        let (status, _) = introspect(replica, "gateway", &old[1..], &access).await;
        assert_eq!(status, 401);
    }

    let admin = one.login("root", PASSWORD).await;
    let admin_token = admin["access_token"].as_str().expect("admin token");
    let rotated: Value = one
        .http
        .post(one.url("/v1/admin/clients/gateway/secret"))
        .bearer_auth(admin_token)
        .send()
        .await
        .expect("rotate")
        .json()
        .await
        .expect("rotate json");
    let new = rotated["client_secret"].as_str().expect("new secret");
    assert_eq!(introspect(&one, "gateway", &old, &access).await.0, 401);
    let refused = wait_until_async(PUSH, tokio::time::sleep, || async {
        (introspect(&two, "gateway", &old, &access).await.0 == 401).then_some(())
    })
    .await;
    assert!(refused.is_some(), "the other replica kept the old secret");
    for replica in [&one, &two] {
        let (status, body) = introspect(replica, "gateway", new, &access).await;
        assert_eq!((status, &body["active"]), (200, &json!(true)), "{body}");
    }
    // Held in memory again with the new secret at both.
    warm(&two, "gateway", new, &access).await;

    let disabled = one
        .http
        .patch(one.url("/v1/admin/clients/gateway"))
        .bearer_auth(admin_token)
        .json(&json!({ "disabled": true }))
        .send()
        .await
        .expect("disable");
    assert_eq!(disabled.status(), 200);
    assert_eq!(introspect(&one, "gateway", new, &access).await.0, 401);
    let refused = wait_until_async(PUSH, tokio::time::sleep, || async {
        (introspect(&two, "gateway", new, &access).await.0 == 401).then_some(())
    })
    .await;
    assert!(
        refused.is_some(),
        "the other replica kept the disabled client"
    );
}

/// With Redis gone, introspection fails closed: the tracking connection is
/// lost, memory is cleared, and every answer is a 503 — never an answer
/// from memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_gone_fails_closed() {
    let mut redis = RedisServer::start();
    let authority = Authority::start(BIN, &redis, &[]);
    authority.add_user("alice", PASSWORD, &["read"]);
    let secret = authority.add_client("gateway", &[], true);
    let access = authority.login("alice", PASSWORD).await["access_token"]
        .as_str()
        .expect("access")
        .to_owned();
    warm(&authority, "gateway", &secret, &access).await;

    redis.stop();
    let closed = wait_until_async(PUSH, tokio::time::sleep, || async {
        (introspect(&authority, "gateway", &secret, &access).await.0 == 503).then_some(())
    })
    .await;
    assert!(
        closed.is_some(),
        "introspection kept answering without Redis"
    );
    for _ in 0..5 {
        let (status, body) = introspect(&authority, "gateway", &secret, &access).await;
        assert_eq!(status, 503, "answered from memory without Redis: {body}");
    }
    assert_eq!(authority.get_with("/v1/me", &access).await.status(), 503);
}

/// A resource removed (by the CLI, another process) leaves the audience
/// that both replicas held in memory: Redis pushes the registry's change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_removal_reaches_both_replicas() {
    const ORDERS: &str = "https://orders.example";
    let redis = RedisServer::start();
    let (one, two) = replicas(&redis);
    one.add_user("alice", PASSWORD, &["read"]);
    let secret = one.add_client("gateway", &[], true);
    let added = one.cli(&["resource", "add", ORDERS], None);
    assert!(added.status.success(), "{added:?}");
    let tokens = one
        .token(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
            ("resource", ORDERS),
        ])
        .await;
    assert_eq!(tokens.status(), 200);
    let tokens: Value = tokens.json().await.expect("json");
    let access = tokens["access_token"].as_str().expect("access");
    for replica in [&one, &two] {
        let body = warm(replica, "gateway", &secret, access).await;
        assert!(
            body["aud"]
                .as_str()
                .is_some_and(|aud| aud.starts_with(ORDERS)),
            "{body}"
        );
        let held = replica
            .metric(
                "authority_introspection_cache_lookups_total",
                "kind=\"resource\",result=\"hit\"",
            )
            .await;
        assert!(held > 0.0, "the resource was not answered from memory");
    }

    let removed = one.cli(&["resource", "remove", ORDERS], None);
    assert!(removed.status.success(), "{removed:?}");
    for replica in [&one, &two] {
        let gone = wait_until_async(PUSH, tokio::time::sleep, || async {
            let (_, body) = introspect(replica, "gateway", &secret, access).await;
            (body["active"] == true && body["aud"] == json!([])).then_some(())
        })
        .await;
        assert!(gone.is_some(), "a replica kept the removed resource");
    }
}

/// A token of a token response.
fn token(body: &Value, name: &str) -> String {
    body[name].as_str().expect("token").to_owned()
}

/// A refresh rotation reads its user from memory once the user is held:
/// a rotation reads only its session from Redis, where
/// `INTROSPECTION_CACHE_USERS=0` also reads the user. A
/// change to the user's record made anywhere — here a raw write, as
/// another replica's admin change leaves it when revoking the sessions
/// failed after disabling the user — reaches the rotation as soon as
/// Redis pushes it: the next rotation is refused and revokes the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_reads_its_user_from_memory_until_the_record_changes() {
    let redis = RedisServer::start();
    // Every rotation inspects its session in Redis (no session held after
    // a rotation, tests/tests/rotation_cache.rs): the reads counted here
    // are the session's and the user's.
    let mut env = NO_THROTTLE.to_vec();
    env.push(("ROTATION_CACHE_SESSIONS", "0"));
    let cached = Authority::start(BIN, &redis, &env);
    let issuer = cached.url("");
    let uncached = Authority::start(
        BIN,
        &redis,
        &[
            ("ISSUER", issuer.as_str()),
            ("INTROSPECTION_CACHE_USERS", "0"),
            ("ROTATION_CACHE_SESSIONS", "0"),
        ],
    );
    cached.add_user("alice", PASSWORD, &["read"]);

    // Without the user cache: two reads per rotation.
    let tokens = uncached.login("alice", PASSWORD).await;
    let (_, gets) = uncached
        .rotations(&redis, token(&tokens, "refresh_token"), 10)
        .await;
    // Each rotation reads the session (its inspection, and again inside
    // the rotation script, which INFO commandstats counts too) and the user.
    assert_eq!(gets, 30, "the session twice and the user, each rotation");

    // With it: once a rotation has held the user, one read per rotation.
    let tokens = cached.login("alice", PASSWORD).await;
    let refresh = std::sync::Mutex::new(token(&tokens, "refresh_token"));
    let hit = "kind=\"user\",result=\"hit\"";
    let warmed = wait_until_async(PUSH, tokio::time::sleep, || async {
        let presented = refresh.lock().expect("lock").clone();
        let (last, _) = cached.rotations(&redis, presented, 1).await;
        *refresh.lock().expect("lock") = token(&last, "refresh_token");
        let hits = cached
            .metric("authority_introspection_cache_lookups_total", hit)
            .await;
        (hits > 0.0).then_some(())
    })
    .await;
    assert!(
        warmed.is_some(),
        "never read from memory:\n{}",
        cached.logs()
    );
    let refresh = refresh.into_inner().expect("lock");
    let (last, gets) = cached.rotations(&redis, refresh, 10).await;
    assert_eq!(gets, 20, "the session twice, each rotation: not the user");
    assert!(
        cached
            .metrics()
            .await
            .contains("\nauthority_introspection_cache_users 1\n"),
        "one user held"
    );

    // The record changes behind the replica's back.
    let keys = redis.cli(&["--scan", "--pattern", "ts:user:*"]);
    let keys: Vec<&str> = keys.lines().filter(|key| !key.is_empty()).collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let record = redis.cli(&["GET", keys[0]]);
    let disabled = record
        .trim()
        .replace("\"disabled\":false", "\"disabled\":true");
    assert_ne!(disabled, record.trim(), "{record}");
    assert_eq!(redis.cli(&["SET", keys[0], &disabled]).trim(), "OK");

    // (refresh token, its session's access token)
    let session =
        std::sync::Mutex::new((token(&last, "refresh_token"), token(&last, "access_token")));
    let refused = wait_until_async(PUSH, tokio::time::sleep, || async {
        let presented = session.lock().expect("lock").0.clone();
        let (status, body) = cached.rotate(&presented).await;
        if status == 200 {
            *session.lock().expect("lock") =
                (token(&body, "refresh_token"), token(&body, "access_token"));
            return None;
        }
        Some((status, body))
    })
    .await;
    let ((status, body), _) = refused.expect("the disabled user's rotations went on");
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let access = session.into_inner().expect("lock").1;
    assert_eq!(
        cached.get_with("/v1/me", &access).await.status(),
        401,
        "the refusal revoked the session"
    );
}
