//! End to end: throttling, client authentication and key names, against
//! the real `token-authority` binary and a private redis-server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use token_service_tests::Authority;
use token_test_harness::{RedisServer, wait_until_async};

const BIN: &str = env!("CARGO_BIN_EXE_e2e-token-authority");
const PASSWORD: &str = "correct horse battery";

fn basic(client_id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}"))
    )
}

async fn status_and_error(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

async fn introspect(
    authority: &Authority,
    client_id: &str,
    secret: &str,
    token: &str,
) -> reqwest::Response {
    authority
        .http
        .post(authority.url("/oauth/introspect"))
        .header("authorization", basic(client_id, secret))
        .form(&[("token", token)])
        .send()
        .await
        .expect("introspect")
}

/// Every key name in the Redis.
fn key_names(redis: &RedisServer) -> Vec<String> {
    redis.cli(&["--scan"]).lines().map(str::to_owned).collect()
}

async fn connection(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

/// 100 concurrent wrong passwords for one user: no more than
/// `LOGIN_MAX_FAILURES` are checked (400 `invalid_grant`), every other one
/// is refused with 429 — the count is taken before the password is checked,
/// not after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_get_only_the_limit() {
    let redis = RedisServer::start();
    let authority = Authority::start(
        BIN,
        &redis,
        &[
            ("LOGIN_MAX_FAILURES", "5"),
            ("ADDRESS_MAX_FAILURES", "100000"),
            ("HASH_QUEUE", "1000"),
            // A hash long enough that all guesses arrive while the first
            // ones are still being checked.
            ("ARGON2_MEMORY_KIB", "2048"),
        ],
    );
    authority.add_user("alice", PASSWORD, &[]);
    let guesses = (0..100).map(|index| {
        let authority = &authority;
        async move {
            let guess = format!("wrong guess {index}");
            status_and_error(
                authority
                    .token(&[
                        ("grant_type", "password"),
                        ("username", "alice"),
                        ("password", guess.as_str()),
                    ])
                    .await,
            )
            .await
        }
    });
    let answers = futures_util::future::join_all(guesses).await;
    let checked = answers
        .iter()
        .filter(|answer| **answer == (400, "invalid_grant".to_owned()))
        .count();
    let throttled = answers
        .iter()
        .filter(|answer| **answer == (429, "temporarily_unavailable".to_owned()))
        .count();
    assert!(checked <= 5, "{checked} guesses were checked: {answers:?}");
    assert_eq!(checked + throttled, 100, "{answers:?}");
    // The right password is refused too until the window ends.
    let (status, _) = status_and_error(
        authority
            .token(&[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", PASSWORD),
            ])
            .await,
    )
    .await;
    assert_eq!(status, 429);
}

/// The `q`-quantile of `samples` (nearest rank).
fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((samples.len() as f64) * q).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

async fn login_latencies(authority: &Authority, count: usize) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let _ = authority.login("alice", PASSWORD).await;
        samples.push(started.elapsed());
    }
    samples
}

/// A flood of introspection requests with wrong client secrets (64
/// connections, more than 50 a second, no valid credential) costs the
/// logins of everyone else (almost) nothing: wrong client secrets are
/// checked against a keyed digest, not with argon2 on the threads logins
/// wait for. Login p99 under the flood stays within twice the idle p99
/// measured in the same run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_client_secrets_do_not_slow_logins() {
    let redis = RedisServer::start();
    // A hash that costs something even in this build, and counters that
    // never throttle: this measures cost, not throttling.
    let authority = Authority::start(
        BIN,
        &redis,
        &[
            ("ARGON2_MEMORY_KIB", "2048"),
            ("ARGON2_ITERATIONS", "1"),
            ("LOGIN_MAX_FAILURES", "1000000"),
            ("ADDRESS_MAX_FAILURES", "1000000"),
        ],
    );
    authority.add_user("alice", PASSWORD, &["read"]);
    let _secret = authority.add_client("gateway", &[], true);
    let access = authority.login("alice", PASSWORD).await["access_token"]
        .as_str()
        .expect("access")
        .to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let active = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut flood = Vec::new();
    for connection in 0..64_u64 {
        let (stop, active, answered) = (stop.clone(), active.clone(), answered.clone());
        let url = authority.url("/oauth/introspect");
        let access = access.clone();
        flood.push(tokio::spawn(async move {
            // One connection each.
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client");
            // 64 connections, one request each every 1.1 s: 58 a second.
            let mut tick = tokio::time::interval(Duration::from_millis(1100));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tokio::time::sleep(Duration::from_millis(connection * 17)).await;
            let mut attempt = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                if !active.load(Ordering::Relaxed) {
                    continue;
                }
                attempt += 1;
                let client = if attempt.is_multiple_of(2) {
                    "gateway"
                } else {
                    "nobody"
                };
                let secret = format!("tsc_wrong_{connection}_{attempt}");
                if let Ok(response) = http
                    .post(&url)
                    .header("authorization", basic(client, &secret))
                    .form(&[("token", access.as_str())])
                    .send()
                    .await
                {
                    assert_eq!(response.status(), 401, "a wrong secret is refused");
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // Idle and flooded phases alternate, so that a change of the machine's
    // load (other processes) affects both alike.
    let (mut idle, mut loaded) = (Vec::new(), Vec::new());
    let (mut flooded, mut elapsed) = (0, Duration::ZERO);
    // 100 samples of each: the p99 is not just the slowest one.
    for _ in 0..5 {
        idle.extend(login_latencies(&authority, 20).await);
        active.store(true, Ordering::Relaxed);
        // Let the flood reach its pace, then measure under it.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let before = answered.load(Ordering::Relaxed);
        let started = Instant::now();
        loaded.extend(login_latencies(&authority, 20).await);
        elapsed += started.elapsed();
        flooded += answered.load(Ordering::Relaxed) - before;
        active.store(false, Ordering::Relaxed);
        // Requests in flight finish.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in flood {
        task.await.expect("flood task");
    }
    let rate = f64::from(u32::try_from(flooded).unwrap_or(u32::MAX)) / elapsed.as_secs_f64();
    let (idle_median, idle_p99) = (quantile(&mut idle, 0.5), quantile(&mut idle, 0.99));
    let (loaded_median, loaded_p99) = (quantile(&mut loaded, 0.5), quantile(&mut loaded, 0.99));
    eprintln!(
        "flood {rate:.0} req/s; login idle median {idle_median:?} p99 {idle_p99:?}; \
         under the flood median {loaded_median:?} p99 {loaded_p99:?}"
    );
    assert!(rate >= 45.0, "the flood ran at only {rate:.0} requests/s");
    assert!(
        loaded_p99 <= idle_p99 * 2,
        "login p99 {loaded_p99:?} under the flood, {idle_p99:?} idle"
    );
}

/// Failed client authentication is throttled per client id and per
/// address: past the limit, wrong secrets answer 429 with Retry-After
/// (never 500), while the right secret still authenticates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_client_authentication_is_throttled() {
    let redis = RedisServer::start();
    let authority = Authority::start(
        BIN,
        &redis,
        &[("LOGIN_MAX_FAILURES", "3"), ("ADDRESS_MAX_FAILURES", "8")],
    );
    authority.add_user("alice", PASSWORD, &[]);
    let secret = authority.add_client("gateway", &[], true);
    let access = authority.login("alice", PASSWORD).await["access_token"]
        .as_str()
        .expect("access")
        .to_owned();
    for _ in 0..3 {
        assert_eq!(
            status_and_error(introspect(&authority, "gateway", "tsc_wrong", &access).await).await,
            (401, "invalid_client".into())
        );
    }
    let throttled = introspect(&authority, "gateway", "tsc_wrong", &access).await;
    assert_eq!(throttled.status(), 429);
    assert!(throttled.headers().contains_key("retry-after"));
    assert_eq!(
        status_and_error(throttled).await,
        (429, "temporarily_unavailable".into())
    );
    // The right secret is never locked out by someone else's guesses.
    let answer: Value = introspect(&authority, "gateway", &secret, &access)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(answer["active"], true);
    // Per address: unknown client ids from one address, 8 failures in all.
    let mut statuses = Vec::new();
    for index in 0..6 {
        let id = format!("unknown-{index}");
        statuses.push(introspect(&authority, &id, "tsc_x", &access).await.status());
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|status| status.as_u16() == 401)
            .count(),
        4,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|status| status.as_u16() == 429)
            .count(),
        2,
        "{statuses:?}"
    );
}

/// `client rotate-secret` and `POST /v1/admin/clients/{id}/secret` give a
/// new secret; with a grace period the old one verifies until it ends,
/// without it the old one stops at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_secrets_rotate_with_a_grace_period() {
    let redis = RedisServer::start();
    let authority = Authority::start(BIN, &redis, &[]);
    authority.add_user("root", PASSWORD, &["admin"]);
    let first = authority.add_client("gateway", &[], true);
    let admin = authority.login("root", PASSWORD).await["access_token"]
        .as_str()
        .expect("access")
        .to_owned();
    let active = |secret: String| {
        let (authority, admin) = (&authority, admin.clone());
        async move {
            let response = introspect(authority, "gateway", &secret, &admin).await;
            response.status() == 200
        }
    };
    // CLI, with a grace period: both verify.
    let output = authority.cli(
        &["client", "rotate-secret", "gateway", "--grace", "3600"],
        None,
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let second = String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("client_secret: "))
        .expect("the new secret is printed")
        .to_owned();
    assert_ne!(first, second);
    assert!(
        active(first.clone()).await,
        "the old secret in its grace period"
    );
    assert!(active(second.clone()).await, "the new secret");
    // CLI without a grace period: the old one stops at once, and the one
    // rotated out before is gone too.
    let output = authority.cli(&["client", "rotate-secret", "gateway"], None);
    assert!(output.status.success());
    let third = String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("client_secret: "))
        .expect("the new secret is printed")
        .to_owned();
    assert!(!active(second.clone()).await);
    assert!(!active(first.clone()).await);
    assert!(active(third.clone()).await);
    // HTTP, with a one-second grace period that runs out.
    let rotate = |body: Option<Value>| {
        let request = authority
            .http
            .post(authority.url("/v1/admin/clients/gateway/secret"))
            .bearer_auth(&admin);
        match body {
            Some(body) => request.json(&body),
            None => request,
        }
        .send()
    };
    let response = rotate(Some(json!({ "grace_seconds": 1 })))
        .await
        .expect("rotate");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    let fourth = body["client_secret"].as_str().expect("secret").to_owned();
    assert!(body["previous_secret_expires_at"].is_u64(), "{body}");
    assert!(active(fourth.clone()).await);
    let expired = wait_until_async(Duration::from_secs(10), tokio::time::sleep, || {
        let third = third.clone();
        let active = &active;
        async move { (!active(third).await).then_some(()) }
    })
    .await;
    assert!(expired.is_some(), "the grace period did not end");
    assert!(active(fourth).await);
    // Bad input: the right errors, nothing changed.
    let response = rotate(Some(json!({ "grace_seconds": -1 })))
        .await
        .expect("rotate");
    assert_eq!(
        status_and_error(response).await,
        (400, "invalid_request".into())
    );
    let response = rotate(Some(json!({ "grace": 5 }))).await.expect("rotate");
    assert_eq!(
        status_and_error(response).await,
        (400, "invalid_request".into())
    );
    let response = rotate(Some(json!({ "grace_seconds": 99_999_999 })))
        .await
        .expect("rotate");
    assert_eq!(
        status_and_error(response).await,
        (400, "invalid_request".into())
    );
    let response = authority
        .http
        .post(authority.url("/v1/admin/clients/nobody/secret"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("rotate");
    assert_eq!(status_and_error(response).await, (404, "not_found".into()));
    let response = authority
        .http
        .post(authority.url("/v1/admin/clients/gateway/secret"))
        .send()
        .await
        .expect("rotate");
    assert_eq!(response.status(), 401);
}

/// No key name carries a username, client id or address, and a deployment
/// of the older schema (plaintext `user:<name>` and `client:<id>` keys,
/// argon2-hashed client secrets) is migrated when an authority starts: its
/// users log in, its clients authenticate, and their secrets are stored as
/// keyed digests afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_names_hold_no_names_and_old_keys_migrate() {
    let redis = RedisServer::start();
    let legacy_secret = "tsc_legacy-secret-of-a-client-made-by-an-older-version";
    {
        let authority = Authority::start(BIN, &redis, &[]);
        authority.add_user("alice", PASSWORD, &["read"]);
        // An argon2 hash of the legacy secret, made by the authority.
        authority.add_user("hash-source", legacy_secret, &[]);
    }
    // Rewrite the store into the older schema.
    let mut redis_connection = connection(&redis).await;
    let mut hash = None;
    for key in key_names(&redis)
        .into_iter()
        .filter(|key| key.starts_with("ts:user:"))
    {
        let record: String = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut redis_connection)
            .await
            .expect("GET");
        let user: Value = serde_json::from_str(&record).expect("json");
        let username = user["username"].as_str().expect("username");
        if username == "hash-source" {
            hash = Some(user["password_hash"].as_str().expect("hash").to_owned());
            let _: () = redis::cmd("DEL")
                .arg(&key)
                .query_async(&mut redis_connection)
                .await
                .expect("DEL");
            let _: () = redis::cmd("SREM")
                .arg("ts:users")
                .arg(username)
                .query_async(&mut redis_connection)
                .await
                .expect("SREM");
        } else {
            let _: () = redis::cmd("RENAME")
                .arg(&key)
                .arg(format!("ts:user:{username}"))
                .query_async(&mut redis_connection)
                .await
                .expect("RENAME");
        }
    }
    let hash = hash.expect("the hash source");
    assert!(hash.starts_with("$argon2"));
    let legacy_client = json!({
        "client_id": "legacy-app",
        "secret_hash": hash,
        "scopes": [],
        "introspect": true,
        "disabled": false,
        "created_at": 1,
        "updated_at": 1,
    });
    let _: () = redis::cmd("SET")
        .arg("ts:client:legacy-app")
        .arg(legacy_client.to_string())
        .query_async(&mut redis_connection)
        .await
        .expect("SET");
    let _: () = redis::cmd("SADD")
        .arg("ts:clients")
        .arg("legacy-app")
        .query_async(&mut redis_connection)
        .await
        .expect("SADD");
    let _: () = redis::cmd("DEL")
        .arg("ts:keynames-v2")
        .query_async(&mut redis_connection)
        .await
        .expect("DEL");

    let authority = Authority::start(BIN, &redis, &[]);
    let access = authority.login("alice", PASSWORD).await["access_token"]
        .as_str()
        .expect("access")
        .to_owned();
    let answer: Value = introspect(&authority, "legacy-app", legacy_secret, &access)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(answer["active"], true, "the migrated client authenticates");
    // A failed login and a failed client authentication leave counters.
    let failed = authority
        .token(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "wrong"),
        ])
        .await;
    assert_eq!(failed.status(), 400);
    assert_eq!(
        introspect(&authority, "legacy-app", "tsc_wrong", &access)
            .await
            .status(),
        401
    );
    let names = key_names(&redis);
    assert!(
        names.iter().any(|key| key.starts_with("ts:thr:u:")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|key| key.starts_with("ts:thr:c:")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|key| key.starts_with("ts:thr:a:")),
        "{names:?}"
    );
    for needle in ["alice", "legacy", "127.0.0.1", "example.com"] {
        assert!(
            !names.iter().any(|key| key.contains(needle)),
            "a key name holds {needle:?}: {names:?}"
        );
    }
    // The client's secret is a keyed digest now, and still verifies.
    let mut stored = None;
    for key in names.iter().filter(|key| key.starts_with("ts:client:")) {
        let record: String = redis::cmd("GET")
            .arg(key)
            .query_async(&mut redis_connection)
            .await
            .expect("GET");
        stored = Some(record);
    }
    let stored: Value = serde_json::from_str(&stored.expect("the client record")).expect("json");
    let digest = stored["secret_hash"].as_str().expect("secret_hash");
    assert!(digest.starts_with("$hmac-sha256$"), "{digest}");
    let answer: Value = introspect(&authority, "legacy-app", legacy_secret, &access)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(answer["active"], true);
    // Listing still finds everyone by name.
    let output = authority.cli(&["client", "list"], None);
    assert!(String::from_utf8_lossy(&output.stdout).contains("legacy-app"));
}

/// Client ids from requests are logged escaped: a newline in one (HTTP
/// Basic carries it percent-encoded; form fields refuse control
/// characters) cannot forge a log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_supplied_names_cannot_forge_log_lines() {
    let redis = RedisServer::start();
    let authority = Authority::start(BIN, &redis, &[("RUST_LOG", "info")]);
    let response = authority
        .http
        .post(authority.url("/oauth/token"))
        .header(
            "authorization",
            basic("x%0Aforged-line level=error", "tsc_x"),
        )
        .form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "whatever"),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(response.status(), 401);
    let response = authority
        .http
        .post(authority.url("/oauth/introspect"))
        .header("authorization", basic("y%0Aforged-client-line", "tsc_x"))
        .form(&[("token", "t")])
        .send()
        .await
        .expect("introspect");
    assert_eq!(response.status(), 401);
    let logged = wait_until_async(Duration::from_secs(10), tokio::time::sleep, || async {
        let logs = authority.logs();
        (logs.contains("forged-line") && logs.contains("forged-client-line")).then_some(logs)
    })
    .await
    .map(|(logs, _)| logs)
    .expect("both failures are logged");
    assert!(
        !logged.lines().any(|line| line.starts_with("forged")),
        "a forged log line: {logged}"
    );
    assert!(logged.contains(r"x\nforged-line"), "{logged}");
    assert!(logged.contains(r"y\nforged-client-line"), "{logged}");
}
