//! The whole system: the real authority binary issues and revokes, two real
//! protected services (the middleware's example) validate, all on one
//! private redis-server.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use token_service_tests::Authority;
use token_service_tests::protected::{Options, ProtectedService};
use token_test_harness::RedisServer;

const AUTHORITY: &str = env!("CARGO_BIN_EXE_e2e-token-authority");
const SERVICE: &str = env!("CARGO_BIN_EXE_protected-service");
const PASSWORD: &str = "a long enough password";

/// How soon a revocation at the authority must be honoured everywhere with
/// the cache on (issue 4).
const REVOCATION_BOUND: Duration = Duration::from_millis(100);

fn token(response: &serde_json::Value) -> String {
    response["access_token"]
        .as_str()
        .expect("access token")
        .to_owned()
}

/// A login at the authority is accepted by a downstream service, which
/// sees the same holder the authority describes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_at_the_authority_opens_the_service() {
    let redis = RedisServer::start();
    let authority = Authority::start(AUTHORITY, &redis, &[]);
    authority.add_user("alice", PASSWORD, &["read", "admin"]);
    authority.add_user("bob", PASSWORD, &["read"]);
    let service = ProtectedService::start(SERVICE, &Options::new(redis.url()));

    let alice = token(&authority.login("alice", PASSWORD).await);
    let me = authority
        .get_with("/v1/me", &alice)
        .await
        .json::<serde_json::Value>()
        .await
        .expect("json");
    let whoami = service.get("/whoami", Some(&alice)).await;
    assert_eq!(whoami.status, StatusCode::OK);
    assert_eq!(
        whoami.json,
        json!({
            "sub": me["sub"],
            "username": "alice",
            "name": "Test User",
            "email": "alice@example.com",
            "scope": "read admin",
            "exp": me["exp"],
        })
    );
    assert_eq!(
        service.get("/admin", Some(&alice)).await.status,
        StatusCode::OK
    );
    let bob = token(&authority.login("bob", PASSWORD).await);
    let forbidden = service.get("/admin", Some(&bob)).await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    assert!(
        forbidden
            .challenge()
            .unwrap_or_default()
            .contains("insufficient_scope")
    );
    assert_eq!(
        service.get("/public", Some(&bob)).await.json["greeting"],
        "hello, bob"
    );
    assert_eq!(
        service.get("/whoami", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    // A refreshed pair works too; the refresh token itself does not.
    let pair = authority.login("bob", PASSWORD).await;
    let refresh = pair["refresh_token"].as_str().expect("refresh");
    assert_eq!(
        service.get("/whoami", Some(refresh)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let rotated = authority
        .token(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
        .await
        .json::<serde_json::Value>()
        .await
        .expect("json");
    assert_eq!(
        service.get("/whoami", Some(&token(&rotated))).await.status,
        StatusCode::OK
    );
}

/// Sign-out-everywhere at the authority stops the tokens in every service
/// within 100 ms, with their caches on and warm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_out_everywhere_reaches_every_service_within_100_ms() {
    let redis = RedisServer::start();
    let authority = Authority::start(AUTHORITY, &redis, &[]);
    authority.add_user("alice", PASSWORD, &["read"]);
    // A staleness bound far above the goal: only the pushed invalidation
    // can make the services refuse in time.
    let options = Options::new(redis.url()).cached(Duration::from_secs(600));
    let first = ProtectedService::start(SERVICE, &options);
    let second = ProtectedService::start(SERVICE, &options);
    let laptop = token(&authority.login("alice", PASSWORD).await);
    let phone = token(&authority.login("alice", PASSWORD).await);
    for service in [&first, &second] {
        for access in [&laptop, &phone] {
            service.wait_until_cached(&redis.admin_url(), access).await;
        }
    }
    let response = authority
        .http
        .delete(authority.url("/v1/sessions"))
        .bearer_auth(&laptop)
        .send()
        .await
        .expect("sign out everywhere");
    let returned = Instant::now();
    assert_eq!(response.status(), 200);
    for service in [&first, &second] {
        for access in [&laptop, &phone] {
            let took = service.time_until_refused(access, returned).await;
            assert!(took < REVOCATION_BOUND, "refused only after {took:?}");
        }
    }
}

/// Disabling a user and changing a password at the authority are
/// revocations too: the service refuses the old tokens at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_changes_revoke_in_the_service() {
    let redis = RedisServer::start();
    let authority = Authority::start(AUTHORITY, &redis, &[]);
    authority.add_user("root", PASSWORD, &["admin"]);
    authority.add_user("alice", PASSWORD, &["read"]);
    let service = ProtectedService::start(
        SERVICE,
        &Options::new(redis.url()).cached(Duration::from_secs(600)),
    );
    let admin = token(&authority.login("root", PASSWORD).await);
    let alice = token(&authority.login("alice", PASSWORD).await);
    service.wait_until_cached(&redis.admin_url(), &alice).await;
    let changed = authority
        .http
        .patch(authority.url("/v1/admin/users/alice"))
        .bearer_auth(&admin)
        .json(&json!({ "password": "a brand new password" }))
        .send()
        .await
        .expect("patch");
    let returned = Instant::now();
    assert_eq!(changed.status(), 200);
    let took = service.time_until_refused(&alice, returned).await;
    assert!(took < REVOCATION_BOUND, "refused only after {took:?}");
    let again = token(&authority.login("alice", "a brand new password").await);
    assert_eq!(
        service.get("/whoami", Some(&again)).await.status,
        StatusCode::OK
    );
}

/// The service exposes the middleware's metrics after real traffic (request
/// outcomes, cache hits and misses, repository latency), with no token or
/// username in them; and it keeps the caller's request id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_metrics_and_request_ids() {
    let redis = RedisServer::start();
    let authority = Authority::start(AUTHORITY, &redis, &[]);
    authority.add_user("alice", PASSWORD, &["read"]);
    let mut service = ProtectedService::start(
        SERVICE,
        &Options::new(redis.url()).cached(Duration::from_secs(600)),
    );
    let alice = token(&authority.login("alice", PASSWORD).await);
    service.wait_until_cached(&redis.admin_url(), &alice).await;
    assert_eq!(
        service.get("/whoami", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        service.get("/whoami", Some("tsa_garbage")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        service.get("/admin", Some(&alice)).await.status,
        StatusCode::FORBIDDEN
    );
    let traced = service
        .get_with_headers(
            "/whoami",
            &[
                ("authorization", &format!("Bearer {alice}")),
                ("x-request-id", "trace-me-7"),
            ],
        )
        .await;
    assert_eq!(traced.headers["x-request-id"], "trace-me-7");

    let metrics = service.get("/metrics", None).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.text;
    for series in [
        r#"token_client_requests_total{outcome="authenticated"}"#,
        r#"token_client_requests_total{outcome="missing"} 1"#,
        r#"token_client_requests_total{outcome="invalid_token"} 1"#,
        r#"token_client_requests_total{outcome="insufficient_scope"} 1"#,
        r#"token_client_cache_lookups_total{result="hit"}"#,
        r#"token_client_cache_lookups_total{result="miss"}"#,
        r#"token_client_repository_duration_seconds{result="ok",quantile="0.5"}"#,
    ] {
        assert!(text.contains(series), "missing {series} in\n{text}");
    }
    for secret_or_unbounded in ["alice", "tsa_", &alice] {
        assert!(
            !text.contains(secret_or_unbounded),
            "{secret_or_unbounded} in /metrics"
        );
    }
    let logged = token_test_harness::wait_until(Duration::from_secs(5), || {
        service
            .process()
            .stderr()
            .contains("request_id=\"trace-me-7\"")
            .then_some(())
    });
    assert!(logged.is_some(), "{}", service.process().stderr());
}
