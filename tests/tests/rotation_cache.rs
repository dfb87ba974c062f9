//! Sessions held after a rotation (`ROTATION_CACHE_SESSIONS`, on by
//! default): the next rotation of a session at the replica that rotated it
//! last skips reading the session from Redis. The rotation script still
//! decides, so what a replica holds cannot outlive a change made
//! elsewhere: a held session revoked at another replica is refused, and
//! one rotated at another replica is refused as reuse, which revokes it.
//! A held session stays bound to its client.

use serde_json::Value;
use token_service_tests::Authority;
use token_test_harness::RedisServer;

const BIN: &str = env!("CARGO_BIN_EXE_e2e-token-authority");
const PASSWORD: &str = "correct horse battery";
const LOOKUPS: &str = "authority_rotation_cache_lookups_total";
const HELD: &str = "authority_rotation_cache_sessions";

/// A token of a token response.
fn token(body: &Value, name: &str) -> String {
    body[name].as_str().expect("token").to_owned()
}

/// Two replicas of one deployment, `extra` set on both.
fn replicas(redis: &RedisServer, extra: &[(&'static str, &'static str)]) -> (Authority, Authority) {
    let one = Authority::start(BIN, redis, extra);
    let issuer = one.url("");
    let mut env = extra.to_vec();
    env.push(("ISSUER", issuer.as_str()));
    let two = Authority::start(BIN, redis, &env);
    (one, two)
}

/// The refresh token of a login at `at`, rotated once there (so that `at`
/// holds the session): the rotation's answer.
async fn rotated_once_at(at: &Authority) -> Value {
    let login = at.login("alice", PASSWORD).await;
    let (status, body) = at.rotate(&token(&login, "refresh_token")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// `held`, presented at `here`, which holds its session: taken from
/// memory (the first hit there) and refused by the rotation script.
async fn refused_from_memory(here: &Authority, held: &str) {
    let (status, body) = here.rotate(held).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(
        here.metric(LOOKUPS, "result=\"hit\"").await,
        1.0,
        "answered from memory, refused by the rotation"
    );
}

/// Counted in Redis: without the held session a rotation reads the session,
/// the user (`INTROSPECTION_CACHE_USERS=0` here) and, inside the rotation
/// script, the session again; with it, the first of the three is gone
/// from the second rotation on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_rotated_here_is_not_read_again() {
    let redis = RedisServer::start();
    let held = Authority::start(BIN, &redis, &[("INTROSPECTION_CACHE_USERS", "0")]);
    let issuer = held.url("");
    let unheld = Authority::start(
        BIN,
        &redis,
        &[
            ("ISSUER", issuer.as_str()),
            ("INTROSPECTION_CACHE_USERS", "0"),
            ("ROTATION_CACHE_SESSIONS", "0"),
        ],
    );
    held.add_user("alice", PASSWORD, &["read"]);

    let login = unheld.login("alice", PASSWORD).await;
    let (_, gets) = unheld
        .rotations(&redis, token(&login, "refresh_token"), 10)
        .await;
    assert_eq!(gets, 30, "the session twice and the user, each rotation");

    let login = held.login("alice", PASSWORD).await;
    let (last, gets) = held
        .rotations(&redis, token(&login, "refresh_token"), 11)
        .await;
    assert_eq!(
        gets,
        3 + 10 * 2,
        "the first rotation after the login reads the session; the next ten do not"
    );
    assert_eq!(held.metric(LOOKUPS, "result=\"hit\"").await, 10.0);
    assert_eq!(held.metric(LOOKUPS, "result=\"miss\"").await, 1.0);
    assert_eq!(held.metric(HELD, "").await, 1.0, "one session held");
    let me = held.get_with("/v1/me", &token(&last, "access_token")).await;
    assert_eq!(me.status(), 200, "the last rotation's access token works");
}

/// The attack on a held session: its refresh token is rotated at another
/// replica (a thief and the owner racing, or a client retrying elsewhere),
/// then the old token comes back to the replica that holds it. That
/// replica answers from memory, the rotation script finds the token
/// already used, and the session is revoked as on any reuse: neither
/// party keeps tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_token_rotated_elsewhere_is_reuse() {
    let redis = RedisServer::start();
    let (here, elsewhere) = replicas(&redis, &[]);
    here.add_user("alice", PASSWORD, &["read"]);
    let first = rotated_once_at(&here).await;
    let held = token(&first, "refresh_token");
    assert_eq!(here.metric(HELD, "").await, 1.0);

    let (status, body) = elsewhere.rotate(&held).await;
    assert_eq!(status, 200, "{body}");
    let (refresh, access) = (token(&body, "refresh_token"), token(&body, "access_token"));

    refused_from_memory(&here, &held).await;
    assert!(
        here.logged(&["rotated refresh token presented again"]),
        "{}",
        here.logs()
    );
    let (status, _) = elsewhere.rotate(&refresh).await;
    assert_eq!(status, 400, "the session was revoked");
    assert_eq!(elsewhere.get_with("/v1/me", &access).await.status(), 401);
}

/// A held session revoked at another replica is refused by the one that
/// holds it; revoked at the replica that holds it, it is held no longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_session_revoked_anywhere_is_refused() {
    let redis = RedisServer::start();
    let (here, elsewhere) = replicas(&redis, &[]);
    here.add_user("alice", PASSWORD, &["read"]);
    let revoke = |at: &Authority, refresh: String| {
        let request = at
            .http
            .post(at.url("/oauth/revoke"))
            .form(&[("token", refresh)]);
        async move { request.send().await.expect("revoke").status() }
    };

    let held = token(&rotated_once_at(&here).await, "refresh_token");
    assert_eq!(revoke(&elsewhere, held.clone()).await, 200);
    refused_from_memory(&here, &held).await;

    let held = token(&rotated_once_at(&here).await, "refresh_token");
    assert_eq!(here.metric(HELD, "").await, 1.0);
    assert_eq!(revoke(&here, held.clone()).await, 200);
    assert_eq!(here.metric(HELD, "").await, 0.0, "forgotten on revocation");
    let (status, _) = here.rotate(&held).await;
    assert_eq!(status, 400);
}

/// A held session is still bound to its client: its refresh token
/// presented by another client (with that client's own valid secret) is
/// refused like any token of another client's session, though the record
/// came from memory; the session itself is not revoked, and its holder
/// rotates it on (read from Redis again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_session_is_refused_to_another_client() {
    let redis = RedisServer::start();
    let here = Authority::start(BIN, &redis, &[]);
    here.add_user("alice", PASSWORD, &["read"]);
    let secret = here.add_client("intruder", &["read"], false);
    let held = token(&rotated_once_at(&here).await, "refresh_token");

    let response = here
        .http
        .post(here.url("/oauth/token"))
        .basic_auth("intruder", Some(&secret))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", &held)])
        .send()
        .await
        .expect("token request");
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("json body");
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert_eq!(here.metric(LOOKUPS, "result=\"hit\"").await, 1.0);

    let (status, body) = here.rotate(&held).await;
    assert_eq!(status, 200, "the holder rotates on: {body}");
    assert_eq!(here.metric(LOOKUPS, "result=\"miss\"").await, 2.0);
}
