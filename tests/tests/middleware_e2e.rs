//! End to end: the middleware's example service (`protected-service`) as a
//! real process, in front of a private redis-server, over HTTP. Tokens are
//! issued straight into Redis with the repository's writer, as the
//! authority does.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use token_repository::{KeyPrefix, Minted, Timestamp, TokenReader as _, TokenWriter as _, codec};
use token_service_tests::protected::{Options, ProtectedService, Reply};
use token_service_tests::{redis_admin, tokens};
use token_test_harness::{RedisServer, wait_until_async};

const SERVICE: &str = env!("CARGO_BIN_EXE_protected-service");
/// The realm the example service names in its challenges.
const CHALLENGE: &str = "Bearer realm=\"protected-service\"";
/// The service's bound on one lookup.
const LOOKUP_TIMEOUT: Duration = Duration::from_millis(250);
/// The revocation bound the issue sets for the cache.
const REVOCATION_BOUND: Duration = Duration::from_millis(100);
/// A staleness bound far beyond every wait in these tests: only a pushed
/// invalidation can explain a revocation seen in time.
const LONG_STALENESS: Duration = Duration::from_secs(600);

fn access(minted: &Minted) -> &str {
    minted.access.token.expose_secret()
}

fn assert_invalid_token(reply: &Reply, what: &str) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}");
    let challenge = reply.challenge().unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer realm=\"protected-service\", error=\"invalid_token\""),
        "{what}: {challenge}"
    );
}

/// A valid token reaches the protected route, which answers the principal
/// as JSON with exactly the contract's fields.
#[tokio::test]
async fn valid_token_gets_the_principal() {
    let redis = RedisServer::start();
    let store = tokens::store(&redis.url());
    let minted = tokens::issue(&store, &tokens::grant("alice", "read write")).await;
    let service = ProtectedService::start(SERVICE, &Options::new(redis.url()));

    let reply = service.get("/whoami", Some(access(&minted))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.json,
        json!({
            "sub": "user-alice",
            "username": "alice",
            "name": "alice (display)",
            "email": "alice@example.com",
            "scope": "read write",
            "exp": minted.access.record.expires_at.as_unix_secs(),
        })
    );
}

/// Every refusal has the exact RFC 6750 status and challenge: no token,
/// another scheme, garbage, a wrong checksum, a refresh token, an expired
/// record, a revoked token, and a malformed header — with the cache off and
/// on.
#[tokio::test]
async fn refusals_follow_rfc_6750() {
    let redis = RedisServer::start();
    let store = tokens::store(&redis.url());
    for options in [
        Options::new(redis.url()),
        Options::new(redis.url()).cached(LONG_STALENESS),
    ] {
        let service = ProtectedService::start(SERVICE, &options);
        let what = |case: &str| format!("{case} (cache {})", options.cache);

        let missing = service.get("/whoami", None).await;
        assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
        assert_eq!(missing.challenge(), Some(CHALLENGE), "{}", what("no token"));
        let basic = service
            .get_with_authorization("/whoami", "Basic dXNlcjpwYXNz")
            .await;
        assert_eq!(basic.status, StatusCode::UNAUTHORIZED);
        assert_eq!(basic.challenge(), Some(CHALLENGE), "{}", what("Basic"));

        assert_invalid_token(
            &service.get("/whoami", Some("garbage")).await,
            &what("garbage"),
        );
        let minted = tokens::issue(&store, &tokens::grant("alice", "read")).await;
        let mut typo = access(&minted).as_bytes().to_vec();
        typo[30] = if typo[30] == b'x' { b'y' } else { b'x' };
        let typo = String::from_utf8(typo).expect("ascii");
        assert_invalid_token(
            &service.get("/whoami", Some(&typo)).await,
            &what("checksum"),
        );
        let refresh = minted.refresh.as_ref().expect("refresh token");
        assert_invalid_token(
            &service
                .get("/whoami", Some(refresh.token.expose_secret()))
                .await,
            &what("refresh token"),
        );

        let expired = expired_token(&redis).await;
        assert_invalid_token(
            &service.get("/whoami", Some(&expired)).await,
            &what("expired"),
        );

        assert_eq!(
            service.get("/whoami", Some(access(&minted))).await.status,
            StatusCode::OK
        );
        store.revoke(&minted.access.token).await.expect("revoke");
        let revoked = service
            .time_until_refused(access(&minted), Instant::now())
            .await;
        assert!(revoked < Duration::from_secs(1), "{}", what("revoked"));

        let token = access(&minted);
        let two = service
            .get_with_authorization("/whoami", &format!("Bearer {token} {token}"))
            .await;
        assert_eq!(two.status, StatusCode::BAD_REQUEST, "{}", what("two"));
        let challenge = two.challenge().unwrap_or_default();
        assert!(
            challenge.contains("error=\"invalid_request\""),
            "{challenge}"
        );
        assert!(!challenge.contains(token), "the token was echoed");
    }
}

/// Stores the session of a fresh token that expired a second ago (by the
/// record) but whose key still lives: only the service's own expiry check
/// can refuse it.
async fn expired_token(redis: &RedisServer) -> String {
    let minted = tokens::grant("old", "read").mint().expect("mint");
    let mut session = minted.session(Vec::new());
    if let Some(access) = session.access.as_mut() {
        access.expires_at = Timestamp::from_unix_millis(Timestamp::now().as_unix_millis() - 1000);
    }
    let token = &minted.access.token;
    let key = KeyPrefix::default().session(token.tag(), minted.family());
    let mut admin = redis_admin::connect(&redis.admin_url()).await;
    redis::cmd("SET")
        .arg(key)
        .arg(codec::encode_session(&session))
        .arg("PX")
        .arg(60_000)
        .exec_async(&mut admin)
        .await
        .expect("SET");
    token.expose_secret().to_owned()
}

/// The scope guard answers 403 `insufficient_scope` naming the scope to a
/// token without it, 401 to no token, and lets an admin through.
#[tokio::test]
async fn missing_scope_is_403() {
    let redis = RedisServer::start();
    let store = tokens::store(&redis.url());
    let reader = tokens::issue(&store, &tokens::grant("alice", "read write")).await;
    let admin = tokens::issue(&store, &tokens::grant("root", "read admin")).await;
    let service = ProtectedService::start(SERVICE, &Options::new(redis.url()));

    let refused = service.get("/admin", Some(access(&reader))).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let challenge = refused.challenge().unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer realm=\"protected-service\", error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.ends_with("scope=\"admin\""), "{challenge}");

    let anonymous = service.get("/admin", None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.challenge(), Some(CHALLENGE));

    let allowed = service.get("/admin", Some(access(&admin))).await;
    assert_eq!(allowed.status, StatusCode::OK);
    assert_eq!(allowed.json, json!({ "sub": "user-root", "admin": true }));
}

/// The public route needs no token, greets the holder of a valid one, and
/// treats an invalid one as anonymous rather than refusing.
#[tokio::test]
async fn public_route_personalises() {
    let redis = RedisServer::start();
    let store = tokens::store(&redis.url());
    let minted = tokens::issue(&store, &tokens::grant("alice", "read")).await;
    let service = ProtectedService::start(SERVICE, &Options::new(redis.url()));

    let greeting = |reply: Reply| {
        assert_eq!(reply.status, StatusCode::OK);
        reply.json["greeting"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        greeting(service.get("/public", None).await),
        "hello, stranger"
    );
    assert_eq!(
        greeting(service.get("/public", Some(access(&minted))).await),
        "hello, alice"
    );
    assert_eq!(
        greeting(service.get("/public", Some("garbage")).await),
        "hello, stranger"
    );
    assert_eq!(
        service.get("/healthz", None).await.json,
        json!({ "status": "ok" })
    );
}

/// With the cache on, repeated requests with one token cost Redis no
/// further `GET`; with it off, every request costs one.
#[tokio::test]
async fn cache_spares_redis_round_trips() {
    let redis = RedisServer::start();
    let store = tokens::store(&redis.url());
    let minted = tokens::issue(&store, &tokens::grant("alice", "read")).await;
    let mut admin = redis_admin::connect(&redis.admin_url()).await;

    let uncached = ProtectedService::start(SERVICE, &Options::new(redis.url()));
    let before = redis_admin::command_calls(&mut admin, "get").await;
    for _ in 0..10 {
        assert_eq!(
            uncached.get("/whoami", Some(access(&minted))).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        redis_admin::command_calls(&mut admin, "get").await - before,
        10
    );

    let cached =
        ProtectedService::start(SERVICE, &Options::new(redis.url()).cached(LONG_STALENESS));
    cached
        .wait_until_cached(&redis.admin_url(), access(&minted))
        .await;
    let before = redis_admin::command_calls(&mut admin, "get").await;
    for _ in 0..20 {
        assert_eq!(
            cached.get("/whoami", Some(access(&minted))).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(redis_admin::command_calls(&mut admin, "get").await, before);
}

/// A token revoked at the repository stops working in every caching service
/// within 100 ms, although each had it cached with a 10-minute staleness
/// bound: the invalidation is pushed. Both one token (`revoke`) and a whole
/// subject (`revoke_all`, sign out everywhere).
#[tokio::test]
async fn revocation_reaches_every_cached_service_within_100_ms() {
    let redis = RedisServer::start();
    let store = tokens::store(&redis.url());
    let options = Options::new(redis.url()).cached(LONG_STALENESS);
    let services = [
        ProtectedService::start(SERVICE, &options),
        ProtectedService::start(SERVICE, &options),
    ];
    let one = tokens::issue(&store, &tokens::grant("alice", "read")).await;
    let everywhere = [
        tokens::issue(&store, &tokens::grant("bob", "read")).await,
        tokens::issue(&store, &tokens::grant("bob", "read")).await,
    ];
    for service in &services {
        for minted in std::iter::once(&one).chain(&everywhere) {
            service
                .wait_until_cached(&redis.admin_url(), access(minted))
                .await;
        }
    }

    assert_eq!(store.revoke(&one.access.token).await.expect("revoke"), 1);
    let revoked_at = Instant::now();
    for (index, service) in services.iter().enumerate() {
        let latency = service.time_until_refused(access(&one), revoked_at).await;
        println!("revoke: service {index} refused the token after {latency:?}");
        assert!(latency < REVOCATION_BOUND, "service {index}: {latency:?}");
    }

    assert_eq!(store.revoke_all("user-bob").await.expect("revoke_all"), 4);
    let revoked_at = Instant::now();
    for (index, service) in services.iter().enumerate() {
        for minted in &everywhere {
            let latency = service.time_until_refused(access(minted), revoked_at).await;
            println!("revoke_all: service {index} refused a token after {latency:?}");
            assert!(latency < REVOCATION_BOUND, "service {index}: {latency:?}");
        }
    }
}

/// Redis killed: the service answers 503 with `Retry-After` — never a
/// cached pass, never a hang — and serves again once Redis is back, without
/// a restart of the service; its cache comes back too.
#[tokio::test]
async fn redis_outage_is_503_and_the_service_recovers() {
    let mut redis = RedisServer::start();
    let store = tokens::store(&redis.url());
    let minted = tokens::issue(&store, &tokens::grant("alice", "read")).await;
    let mut service =
        ProtectedService::start(SERVICE, &Options::new(redis.url()).cached(LONG_STALENESS));
    service
        .wait_until_cached(&redis.admin_url(), access(&minted))
        .await;

    redis.stop();
    let stopped = Instant::now();
    let unavailable = loop {
        let reply = service.get("/whoami", Some(access(&minted))).await;
        assert!(
            reply.elapsed < LOOKUP_TIMEOUT * 3,
            "an answer took {:?}",
            reply.elapsed
        );
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            break reply;
        }
        assert_eq!(reply.status, StatusCode::OK);
        assert!(
            stopped.elapsed() < Duration::from_secs(1),
            "still answered from the cache 1 s after Redis died"
        );
    };
    assert_eq!(unavailable.retry_after(), Some("1"));
    for _ in 0..3 {
        let reply = service.get("/whoami", Some(access(&minted))).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(reply.elapsed < LOOKUP_TIMEOUT * 3, "{:?}", reply.elapsed);
    }
    let public = service.get("/public", Some(access(&minted))).await;
    assert_eq!(
        public.status,
        StatusCode::OK,
        "public routes degrade to anonymous"
    );

    redis.restart(); // an empty data set: tokens must be issued again
    let issued = wait_until_async(Duration::from_secs(10), tokio::time::sleep, || async {
        let minted = tokens::grant("alice", "read").mint().expect("mint");
        store.issue(&minted, None).await.ok().map(|_| minted)
    })
    .await;
    let (fresh, _) = issued.expect("the authority's store recovers");
    let recovered = wait_until_async(Duration::from_secs(10), tokio::time::sleep, || async {
        (service.get("/whoami", Some(access(&fresh))).await.status == StatusCode::OK).then_some(())
    })
    .await;
    let (_, after) = recovered.expect("the service serves again after Redis returns");
    println!("served again {after:?} after Redis came back");
    assert!(
        service.process().is_running(),
        "the service was not restarted"
    );
    service
        .wait_until_cached(&redis.admin_url(), access(&fresh))
        .await;
}

/// A frozen Redis (accepting connections, answering nothing) costs a
/// request at most the lookup timeout, then 503.
#[tokio::test]
async fn frozen_redis_is_503_within_the_timeout() {
    let redis = RedisServer::start();
    let store = tokens::store(&redis.url());
    let minted = tokens::issue(&store, &tokens::grant("alice", "read")).await;
    store.ping().await.expect("ping");
    let service = ProtectedService::start(SERVICE, &Options::new(redis.url()));
    assert_eq!(
        service.get("/whoami", Some(access(&minted))).await.status,
        StatusCode::OK
    );

    redis.pause();
    for _ in 0..3 {
        let reply = service.get("/whoami", Some(access(&minted))).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(reply.retry_after(), Some("1"));
        assert!(
            reply.elapsed >= LOOKUP_TIMEOUT && reply.elapsed < LOOKUP_TIMEOUT * 3,
            "answered after {:?}",
            reply.elapsed
        );
    }
    redis.resume();
    let recovered = wait_until_async(Duration::from_secs(10), tokio::time::sleep, || async {
        (service.get("/whoami", Some(access(&minted))).await.status == StatusCode::OK).then_some(())
    })
    .await;
    assert!(
        recovered.is_some(),
        "the service serves again once Redis thaws"
    );
}

/// The example answers a client that half-closes after its request
/// (`shutdown(SHUT_WR)`), even when the answer waits: here on a paused
/// Redis, so the answer is the request timeout's 503, written to a client
/// whose side of the connection closed long before (the lookup's 503 or
/// the envelope's, whichever comes first).
#[tokio::test]
async fn the_example_answers_a_half_closed_request() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let redis = RedisServer::start();
    let store = tokens::store(&redis.url());
    let minted = tokens::issue(&store, &tokens::grant("alice", "read")).await;
    let mut service = ProtectedService::start(
        SERVICE,
        &Options::new(redis.url()).env("HTTP_REQUEST_TIMEOUT_MS", "300"),
    );
    let request = format!(
        "GET /whoami HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {}\r\n\r\n",
        access(&minted)
    );
    let mut stream = tokio::net::TcpStream::connect(service.process().addr())
        .await
        .expect("connect");
    redis.pause();
    stream.write_all(request.as_bytes()).await.expect("write");
    stream.shutdown().await.expect("half-close");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer)).await;
    redis.resume();
    read.expect("the service closes the connection after answering")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
}

/// The example's envelope: every answer (200, 401, 404, and the 503 of
/// the request timeout) carries `nosniff` and a request id, the caller's or
/// a fresh lower-case version-4 UUID, a new one each time; a request not
/// answered within `HTTP_REQUEST_TIMEOUT_MS` gets the envelope's 503 with
/// the standard body (the lookup's own, later, has none); and each request
/// leaves its log line, with an error line for the 503.
#[tokio::test]
async fn the_envelope_ids_bounds_and_logs_every_request() {
    const REQUEST_TIMEOUT: Duration = Duration::from_millis(150);
    let redis = RedisServer::start();
    let store = tokens::store(&redis.url());
    let minted = tokens::issue(&store, &tokens::grant("alice", "read")).await;
    let mut service = ProtectedService::start(
        SERVICE,
        &Options::new(redis.url()).env(
            "HTTP_REQUEST_TIMEOUT_MS",
            REQUEST_TIMEOUT.as_millis().to_string(),
        ),
    );
    let assert_enveloped = |reply: &Reply, ids: &mut Vec<String>| {
        assert_eq!(reply.headers["x-content-type-options"], "nosniff");
        let id = reply.headers["x-request-id"].to_str().expect("an ASCII id");
        let uuid = uuid::Uuid::parse_str(id).expect("a UUID");
        assert_eq!(uuid.get_version_num(), 4, "{id}");
        assert_eq!(id, uuid.hyphenated().to_string(), "lower case, hyphenated");
        assert!(!ids.iter().any(|seen| seen == id), "{id} twice");
        ids.push(id.to_owned());
    };
    let mut ids = Vec::new();
    for (path, token, status) in [
        ("/healthz", None, StatusCode::OK),
        ("/whoami", Some(access(&minted)), StatusCode::OK),
        ("/whoami", None, StatusCode::UNAUTHORIZED),
        ("/nowhere", None, StatusCode::NOT_FOUND),
    ] {
        let reply = service.get(path, token).await;
        assert_eq!(reply.status, status, "{path}");
        assert_enveloped(&reply, &mut ids);
    }
    let given = service
        .get_with_headers("/healthz", &[("x-request-id", "trace-me-8")])
        .await;
    assert_eq!(given.headers["x-request-id"], "trace-me-8");

    redis.pause();
    let late = service.get("/whoami", Some(access(&minted))).await;
    redis.resume();
    assert_eq!(late.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(late.json["error"], "temporarily_unavailable");
    assert_eq!(
        late.json["error_description"], "the request took too long; retry later",
        "the envelope's answer, not the lookup's"
    );
    // The lookup's own 503 (at LOOKUP_TIMEOUT) has no body: the JSON
    // above is the envelope's, so no upper bound on a loaded machine.
    assert!(
        late.elapsed >= REQUEST_TIMEOUT,
        "answered after {:?}",
        late.elapsed
    );
    assert_enveloped(&late, &mut ids);

    let late_id = ids.last().cloned().unwrap_or_default();
    let logged = token_test_harness::wait_until(Duration::from_secs(5), || {
        let log = service.process().stderr();
        let lines: Vec<&str> = log
            .lines()
            .filter(|line| line.contains(&format!("request_id=\"{late_id}\"")))
            .collect();
        let finished = lines.iter().any(|line| {
            line.contains(" INFO ")
                && line.contains("finished processing request")
                && line.contains("status=503")
        });
        let failed = lines
            .iter()
            .any(|line| line.contains(" ERROR ") && line.contains("response failed"));
        (finished && failed).then_some(())
    });
    assert!(logged.is_some(), "{}", service.process().stderr());
    let log = service.process().stderr();
    for id in &ids[..ids.len() - 1] {
        assert_eq!(
            log.lines()
                .filter(|line| line.contains(&format!("request_id=\"{id}\""))
                    && line.contains("finished processing request"))
                .count(),
            1,
            "one line for {id} in\n{log}"
        );
    }
}

/// SIGTERM stops the service gracefully: it exits with success.
#[tokio::test]
async fn sigterm_stops_the_service_cleanly() {
    let redis = RedisServer::start();
    let mut service =
        ProtectedService::start(SERVICE, &Options::new(redis.url()).cached(LONG_STALENESS));
    assert_eq!(service.get("/healthz", None).await.status, StatusCode::OK);
    let status = service
        .process()
        .terminate(Duration::from_secs(10))
        .expect("the service exits within 10 s of SIGTERM");
    assert!(status.success(), "{status}");
}
