//! Scale-out and failover: two authority processes (clients alternate
//! between them, no balancer) and the example service, on a 3-master Redis
//! Cluster and on a Sentinel set-up whose master is killed mid-stream.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{StatusCode, Url};
use serde_json::{Value, json};
use token_repository::{SubjectTag, Timestamp};
use token_service_tests::Authority;
use token_service_tests::connected::{self, FAILURE_URL, PROVIDER, SECOND, SUCCESS_URL, Setup};
use token_service_tests::oidc::{Browser, CLIENT_ID, SECOND_CLIENT_ID};
use token_service_tests::protected::{Options, ProtectedService};
use token_test_harness::{RedisCluster, RedisSentinels, wait_until_async};

const AUTHORITY: &str = env!("CARGO_BIN_EXE_e2e-token-authority");
const SERVICE: &str = env!("CARGO_BIN_EXE_protected-service");
const PASSWORD: &str = "a long enough password";

fn access(response: &Value) -> String {
    response["access_token"]
        .as_str()
        .expect("access token")
        .to_owned()
}

async fn json(response: reqwest::Response) -> Value {
    response.json().await.expect("json")
}

/// On a Redis Cluster, with two authorities used in turn: every grant,
/// rotation with reuse detection, revocation, introspection,
/// sign-out-everywhere and revoke-all-on-password-change work, and are
/// honoured by the service (cache on); the keys of one subject share one
/// slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_with_two_authorities() {
    let cluster = RedisCluster::start();
    let seeds = cluster.urls().join(",");
    let topology = [("REDIS_CLUSTER_URLS", seeds.as_str())];
    let one = Authority::start_with_url(AUTHORITY, "", &topology);
    // Two replicas of one deployment share its ISSUER (the audience of the
    // tokens either issues).
    let issuer = one.url("");
    let two = Authority::start_with_url(AUTHORITY, "", &[topology[0], ("ISSUER", issuer.as_str())]);
    one.add_user("alice", PASSWORD, &["read"]);
    two.add_user("root", PASSWORD, &["admin"]);
    let secret = one.add_client("svc", &["jobs"], true);
    let service = ProtectedService::start(
        SERVICE,
        &Options::new("")
            .env("REDIS_CLUSTER_URLS", seeds.clone())
            .cached(Duration::from_secs(600)),
    );

    // Password grant at one, refresh at the other, reuse back at the first.
    let first = one.login("alice", PASSWORD).await;
    assert_eq!(
        service.get("/whoami", Some(&access(&first))).await.status,
        StatusCode::OK
    );
    let old_refresh = first["refresh_token"].as_str().expect("refresh");
    let rotated = json(
        two.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", old_refresh),
        ])
        .await,
    )
    .await;
    let rotated_access = access(&rotated);
    assert_eq!(
        service.get("/whoami", Some(&rotated_access)).await.status,
        StatusCode::OK
    );
    let reuse = one
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", old_refresh),
        ])
        .await;
    assert_eq!(reuse.status(), 400);
    let refused = service
        .time_until_refused(&rotated_access, Instant::now())
        .await;
    assert!(refused < Duration::from_millis(100), "{refused:?}");

    // client_credentials at the second, introspection and revocation at the first.
    let client = json(
        two.token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "svc"),
            ("client_secret", &secret),
        ])
        .await,
    )
    .await;
    let client_token = access(&client);
    assert_eq!(
        service.get("/whoami", Some(&client_token)).await.json["sub"],
        "client:svc"
    );
    let active = json(
        one.http
            .post(one.url("/oauth/introspect"))
            .basic_auth("svc", Some(&secret))
            .form(&[("token", client_token.as_str())])
            .send()
            .await
            .expect("introspect"),
    )
    .await;
    assert_eq!(active["active"], true);
    let revoked = one
        .http
        .post(one.url("/oauth/revoke"))
        .basic_auth("svc", Some(&secret))
        .form(&[("token", client_token.as_str())])
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), 200);
    let refused = service
        .time_until_refused(&client_token, Instant::now())
        .await;
    assert!(refused < Duration::from_millis(100), "{refused:?}");

    // Sign out everywhere at one; both sessions die in the service.
    let laptop = access(&two.login("alice", PASSWORD).await);
    let phone = access(&one.login("alice", PASSWORD).await);
    for token in [&laptop, &phone] {
        assert_eq!(
            service.get("/whoami", Some(token)).await.status,
            StatusCode::OK
        );
    }
    let everywhere = one
        .http
        .delete(one.url("/v1/sessions"))
        .bearer_auth(&laptop)
        .send()
        .await
        .expect("sign out");
    let returned = Instant::now();
    assert_eq!(json(everywhere).await["tokens_revoked"], 4);
    for token in [&laptop, &phone] {
        let took = service.time_until_refused(token, returned).await;
        assert!(took < Duration::from_millis(100), "{took:?}");
    }

    // A password change through the other authority revokes what remains.
    let alice = access(&one.login("alice", PASSWORD).await);
    let admin = access(&two.login("root", PASSWORD).await);
    let changed = two
        .http
        .patch(two.url("/v1/admin/users/alice"))
        .bearer_auth(&admin)
        .json(&json!({ "password": "another long password" }))
        .send()
        .await
        .expect("patch");
    let returned = Instant::now();
    assert_eq!(json(changed).await["tokens_revoked"], 2);
    let took = service.time_until_refused(&alice, returned).await;
    assert!(took < Duration::from_millis(100), "{took:?}");
    let _ = one.login("alice", "another long password").await;

    // Every key of one subject is in one slot.
    let mut by_tag: std::collections::BTreeMap<Vec<u8>, Vec<u16>> =
        std::collections::BTreeMap::new();
    for key in cluster_keys(&cluster).await {
        let Some(open) = key.iter().position(|&b| b == b'{') else {
            continue;
        };
        let Some(close) = key[open..].iter().position(|&b| b == b'}') else {
            continue;
        };
        let tag = key[open..=open + close].to_vec();
        by_tag.entry(tag).or_default().push(cluster.slot_of(&key));
    }
    assert!(
        by_tag.values().any(|slots| slots.len() >= 3),
        "token, index and generation keys"
    );
    for (tag, slots) in &by_tag {
        assert!(
            slots.iter().all(|slot| *slot == slots[0]),
            "keys of {} span slots {slots:?}",
            String::from_utf8_lossy(tag)
        );
    }
}

/// Every key of the authority's prefix (`ts:`) on every node of `cluster`.
async fn cluster_keys(cluster: &RedisCluster) -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    for url in cluster.urls() {
        let mut node = redis::Client::open(url)
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("node");
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
            .arg("ts:*")
            .query_async(&mut node)
            .await
            .expect("KEYS");
        all.extend(keys);
    }
    all
}

/// What a failover did to a stream of logins and validations.
#[derive(Debug, Default)]
struct Failover {
    /// Tokens acknowledged (200) before the master was killed.
    acknowledged: usize,
    /// Of those, how many no longer validate after the failover.
    lost: usize,
    /// From the first failed request after the kill to the first success.
    unavailable: Duration,
    /// Requests that failed (503 or a transport error) in that window.
    failed: usize,
    /// How long the sentinels took to promote a replica.
    promotion: Duration,
}

/// One login of the stream: when it ended, whether the token was issued and
/// validated, and the token.
type Attempt = (Instant, bool, Option<String>);

impl std::fmt::Display for Failover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "acknowledged={} lost={} unavailable_ms={} failed_requests={} promotion_ms={}",
            self.acknowledged,
            self.lost,
            self.unavailable.as_millis(),
            self.failed,
            self.promotion.as_millis()
        )
    }
}

/// Kills the Sentinel master during a stream of logins (alternating between
/// two authorities) and validations; reports what was lost.
async fn failover(wait_replicas: &str) -> Failover {
    let mut sentinels = RedisSentinels::start_with_replicas(2);
    let urls = sentinels.sentinel_urls().join(",");
    let topology = [
        ("REDIS_SENTINEL_URLS", urls.as_str()),
        (
            "REDIS_SENTINEL_MASTER",
            token_test_harness::sentinel::MASTER_NAME,
        ),
        ("REDIS_WAIT_REPLICAS", wait_replicas),
        ("REDIS_WAIT_TIMEOUT_MS", "500"),
    ];
    let one = Arc::new(Authority::start_with_url(AUTHORITY, "", &topology));
    let two = Arc::new(Authority::start_with_url(AUTHORITY, "", &topology));
    one.add_user("alice", PASSWORD, &["read"]);
    let service = Arc::new(ProtectedService::start(
        SERVICE,
        &Options::new("")
            .env("REDIS_SENTINEL_URLS", urls.clone())
            .env(
                "REDIS_SENTINEL_MASTER",
                token_test_harness::sentinel::MASTER_NAME,
            )
            .cached(Duration::from_secs(600)),
    ));

    let log: Arc<Mutex<Vec<Attempt>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let stream = tokio::spawn({
        let (one, two, service, log, stop) = (
            one.clone(),
            two.clone(),
            service.clone(),
            log.clone(),
            stop.clone(),
        );
        async move {
            let mut turn = 0_usize;
            while !stop.load(Ordering::SeqCst) {
                let authority = if turn.is_multiple_of(2) { &one } else { &two };
                turn += 1;
                let form = [
                    ("grant_type", "password"),
                    ("username", "alice"),
                    ("password", PASSWORD),
                ];
                let token = match authority
                    .http
                    .post(authority.url("/oauth/token"))
                    .form(&form)
                    .send()
                    .await
                {
                    Ok(response) if response.status() == 200 => Some(access(&json(response).await)),
                    _ => None,
                };
                let validated = match &token {
                    Some(token) => {
                        service.get("/whoami", Some(token)).await.status == StatusCode::OK
                    }
                    None => false,
                };
                log.lock().expect("log").push((
                    Instant::now(),
                    token.is_some() && validated,
                    token,
                ));
            }
        }
    });
    let warm = wait_until_async(Duration::from_secs(30), tokio::time::sleep, || async {
        (log.lock()
            .expect("log")
            .iter()
            .filter(|(_, ok, _)| *ok)
            .count()
            >= 20)
            .then_some(())
    })
    .await;
    assert!(warm.is_some(), "the stream never got going");

    let killed = Instant::now();
    sentinels.master_mut().stop();
    let sentinels = Arc::new(sentinels);
    let promotion = tokio::task::spawn_blocking({
        let sentinels = sentinels.clone();
        move || sentinels.wait_for_failover(Duration::from_secs(60))
    })
    .await
    .expect("join")
    .map(|(_, took)| took)
    .expect("the sentinels promoted no replica");
    let recovered = wait_until_async(Duration::from_secs(60), tokio::time::sleep, || async {
        log.lock()
            .expect("log")
            .iter()
            .rev()
            .take(5)
            .filter(|(at, ok, _)| *at > killed && *ok)
            .count()
            .eq(&5)
            .then_some(())
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    stream.await.expect("stream");
    assert!(
        recovered.is_some(),
        "service did not resume after the failover"
    );

    let log = log.lock().expect("log").clone();
    let before: Vec<&String> = log
        .iter()
        .filter(|(at, ok, _)| *at < killed && *ok)
        .filter_map(|(_, _, token)| token.as_ref())
        .collect();
    let mut lost = 0;
    for token in &before {
        if service.get("/whoami", Some(token)).await.status != StatusCode::OK {
            lost += 1;
        }
    }
    let after: Vec<&Attempt> = log.iter().filter(|(at, _, _)| *at > killed).collect();
    let first_failure = after.iter().find(|(_, ok, _)| !ok).map(|(at, _, _)| *at);
    let unavailable = first_failure.map_or(Duration::ZERO, |start| {
        let back = after
            .iter()
            .find(|(at, ok, _)| *at > start && *ok)
            .map_or(start, |(at, _, _)| *at);
        back - start
    });

    // Revocation still reaches the service's cache after the failover.
    let fresh = one.login("alice", PASSWORD).await;
    let token = access(&fresh);
    for _ in 0..2 {
        assert_eq!(
            service.get("/whoami", Some(&token)).await.status,
            StatusCode::OK
        );
    }
    let revoked = one
        .http
        .post(one.url("/oauth/revoke"))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .expect("revoke");
    let returned = Instant::now();
    assert_eq!(revoked.status(), 200);
    let took = service.time_until_refused(&token, returned).await;
    assert!(
        took < Duration::from_millis(100),
        "revocation after failover took {took:?}"
    );

    Failover {
        acknowledged: before.len(),
        lost,
        unavailable,
        failed: after.iter().filter(|(_, ok, _)| !ok).count(),
        promotion,
    }
}

/// With `REDIS_WAIT_REPLICAS=1`, killing the master loses no token that was
/// acknowledged to a client, 503s last a bounded window, and service
/// resumes on the promoted replica without restarting anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_with_wait_loses_nothing() {
    let report = failover("1").await;
    println!("FAILOVER wait=1 {report}");
    assert!(report.acknowledged >= 20);
    assert_eq!(report.lost, 0, "{report:?}");
    assert!(report.unavailable < Duration::from_secs(30), "{report:?}");
}

/// Without WAIT, the same failover is survived too; how many acknowledged
/// tokens were lost is reported (replication is asynchronous, so some may
/// be).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_without_wait_reports_losses() {
    let report = failover("0").await;
    println!("FAILOVER wait=0 {report}");
    assert!(report.acknowledged >= 20);
    assert!(report.unavailable < Duration::from_secs(30), "{report:?}");
}

/// Connected services on a Redis topology given by `topology` (the
/// authorities' extra environment), with two providers at once and two
/// authority replicas: a connection made at one, its single-use state
/// refused at the other, one refresh at the provider for concurrent
/// requests spread over both, the keep-alive (its index) refreshing the
/// second provider's connection, status and listing at either, and a
/// disconnect at one seen by the other. On a cluster, every key of the
/// user (connections, refresh locks) lies in one slot.
async fn connected_services_on(topology: &[(&str, &str)], cluster: Option<&RedisCluster>) {
    let setup = Setup::start_two(&[("OIDC_ACCESS_TOKEN_TTL", "4")], "", "keepalive_after = 2");
    let mut env = topology.to_vec();
    env.push(("CONNECT_KEEPALIVE_INTERVAL", "1"));
    let one = setup.authority_on(AUTHORITY, "", &env);
    // Replicas of one deployment share its ISSUER (alice's token is for it).
    let issuer = one.url("");
    env.push(("ISSUER", issuer.as_str()));
    let two = setup.authority_on(AUTHORITY, "", &env);
    let alice = connected::user(&one, "alice").await;

    // Connect at one; the same callback at the other is a replay.
    let browser = Browser::new();
    let link = connected::authorize_url_for(&one, &alice, PROVIDER).await;
    let callback = browser.authorize(&link, "alice").await;
    let (status, page) = browser.visit(callback.as_str()).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        page.as_deref(),
        Some(format!("{SUCCESS_URL}?provider={PROVIDER}").as_str())
    );
    let mut replay = callback.clone();
    replay
        .set_port(Url::parse(&two.url("/")).expect("url").port())
        .expect("port");
    let (_, page) = browser.visit(replay.as_str()).await;
    assert_eq!(
        page.as_deref(),
        Some(format!("{FAILURE_URL}?reason=replayed_state&provider={PROVIDER}").as_str())
    );
    let (_, page) = connected::connect_to(&two, &alice, SECOND).await;
    assert_eq!(page, format!("{SUCCESS_URL}?provider={SECOND}"));

    if let Some(cluster) = cluster {
        let tag = format!("{{{}}}", SubjectTag::of(&alice.subject).to_key_text());
        let mut slots = std::collections::BTreeSet::new();
        for key in cluster_keys(cluster).await {
            if String::from_utf8_lossy(&key).contains(&tag) {
                slots.insert(cluster.slot_of(&key));
            }
        }
        assert_eq!(slots.len(), 1, "alice's keys span slots {slots:?}");
    }

    // Concurrent requests for an expired token over both replicas: one
    // refresh at the provider, the same fresh token for everyone.
    let waited = wait_until_async(Duration::from_secs(20), tokio::time::sleep, || async {
        let view: Value = json(
            one.get_with(&format!("/v1/connect/{PROVIDER}"), &alice.bearer)
                .await,
        )
        .await;
        let expires_at = view["expires_at"].as_u64().unwrap_or(u64::MAX);
        (Timestamp::now().as_unix_millis() / 1000 > expires_at).then_some(())
    })
    .await;
    assert!(waited.is_some(), "the provider token never expired");
    let requests = [&one, &two].into_iter().flat_map(|authority| {
        (0..4).map(|_| async {
            let response = authority
                .get_with(
                    &format!("/v1/connect/{PROVIDER}/token?expires=1"),
                    &alice.bearer,
                )
                .await;
            assert_eq!(response.status(), StatusCode::OK);
            json(response).await["access_token"]
                .as_str()
                .expect("token")
                .to_owned()
        })
    });
    let tokens: std::collections::BTreeSet<String> = futures_util::future::join_all(requests)
        .await
        .into_iter()
        .collect();
    assert_eq!(tokens.len(), 1, "every request gets the same token");
    assert_eq!(
        setup.provider.grants_of(CLIENT_ID, "refresh_token").await,
        1,
        "exactly one refresh"
    );

    // The keep-alive (its index, read with the paging script) refreshes
    // the second provider's connection.
    let kept = wait_until_async(Duration::from_secs(20), tokio::time::sleep, || async {
        (setup
            .provider
            .grants_of(SECOND_CLIENT_ID, "refresh_token")
            .await
            >= 1)
            .then_some(())
    })
    .await;
    assert!(kept.is_some(), "no keep-alive refresh:\n{}", one.logs());

    // Status and listing at either replica; disconnect at one.
    let listed = json(two.get_with("/v1/connect/tokens", &alice.bearer).await).await;
    let listed = listed["connections"]
        .as_array()
        .expect("connections")
        .clone();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.iter().all(|view| view["status"] == "connected"));
    let removed = two
        .http
        .delete(two.url(&format!("/v1/connect/{PROVIDER}")))
        .bearer_auth(&alice.bearer)
        .send()
        .await
        .expect("disconnect");
    assert_eq!(removed.status(), StatusCode::OK);
    assert_eq!(json(removed).await["provider_revocation"], "revoked");
    let view = json(
        one.get_with(&format!("/v1/connect/{PROVIDER}"), &alice.bearer)
            .await,
    )
    .await;
    assert_eq!(view["status"], "not_connected");
    let gone = one
        .get_with(&format!("/v1/connect/{PROVIDER}/token"), &alice.bearer)
        .await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    let view = json(
        one.get_with(&format!("/v1/connect/{SECOND}"), &alice.bearer)
            .await,
    )
    .await;
    assert_eq!(view["status"], "connected");
}

/// Connected services on a 3-master Redis Cluster with two replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_services_on_a_cluster() {
    let cluster = RedisCluster::start();
    let seeds = cluster.urls().join(",");
    connected_services_on(&[("REDIS_CLUSTER_URLS", seeds.as_str())], Some(&cluster)).await;
}

/// Connected services through Sentinel with two replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_services_through_sentinel() {
    let sentinels = RedisSentinels::start_with_replicas(1);
    let urls = sentinels.sentinel_urls().join(",");
    connected_services_on(
        &[
            ("REDIS_SENTINEL_URLS", urls.as_str()),
            (
                "REDIS_SENTINEL_MASTER",
                token_test_harness::sentinel::MASTER_NAME,
            ),
        ],
        None,
    )
    .await;
}
